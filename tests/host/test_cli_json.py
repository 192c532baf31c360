"""``--json`` on every command that reports a result; ``plugins list`` reports every problem once
and fails when there is one; tables are not cut when stdout is not a terminal."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from host.hostkit import KV_MANIFEST, write_plugin
from sectorhooks.cli import run

GOOD_MODULE = "def open_store(meta):\n    return meta\n"


def cli(capsys: pytest.CaptureFixture, *args: str) -> Tuple[int, str, str]:
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture, *args: str, code: int = 0) -> Any:
    got, out, err = cli(capsys, *args, "--json")
    assert got == code, (args, out, err)
    return json.loads(out)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "plugins").mkdir()
    path = tmp_path / "host.toml"
    path.write_text('[Common]\nDataDir = "data"\n[Common.Plugins]\nDir = "plugins"\nEntryPoints = false\n')
    return path


def broken_plugins(root: Path) -> List[Path]:
    """An invalid plugin, a manifest that does not parse, a duplicate name: three problems."""
    invalid = write_plugin(root, "invalid", 'name = "invalid"\nkind = "KVStore"\n', "")
    unparsable = root / "unparsable"
    unparsable.mkdir()
    (unparsable / "manifest.toml").write_text('name = "unparsable\n')
    write_plugin(root, "first", KV_MANIFEST.format(name="twin"), GOOD_MODULE, module_name="twin")
    second = write_plugin(root, "second", KV_MANIFEST.format(name="twin"), GOOD_MODULE, module_name="twin")
    return [invalid / "manifest.toml", unparsable / "manifest.toml", second / "manifest.toml"]


def test_plugins_list_with_broken_plugins_exits_1_and_lists_each_in_json(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    manifests = broken_plugins(tmp_path / "plugins")
    data = cli_json(capsys, "plugins", "list", "--config", str(config), code=1)
    assert data["ok"] is False
    by_manifest = {p["manifest"]: p for p in data["plugins"]}
    for manifest in manifests:
        assert by_manifest[str(manifest)]["status"] == "invalid", manifest
        assert by_manifest[str(manifest)]["problems"], manifest
    assert by_manifest[str(manifests[2])]["name"] == "twin"  # the duplicate keeps its name
    assert {p["name"] for p in data["plugins"] if p["status"] == "loaded"} >= {"memdb", "twin"}
    assert len(data["problems"]) == 3
    for manifest, what in zip(manifests, ("requires extPoint 'Constructor'", "TOML syntax error", "twin")):
        (line,) = [p for p in data["problems"] if p.startswith(str(manifest))]
        assert what in line


def test_plugins_list_prints_each_problem_once_on_stdout_only(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken_plugins(tmp_path / "plugins")
    code, out, err = cli(capsys, "plugins", "list", "--config", str(config))
    assert code == 1
    assert err == ""
    assert "3 problem(s):" in out
    assert out.count("requires extPoint 'Constructor'") == 1
    assert out.count("TOML syntax error") == 1
    assert out.count("duplicate plugin name 'twin'") == 1


def test_plugins_list_of_good_plugins_exits_0(config: Path, capsys: pytest.CaptureFixture) -> None:
    data = cli_json(capsys, "plugins", "list", "--config", str(config))
    assert data["ok"] is True and data["problems"] == [] and data["errors"] == []


def test_tables_are_not_truncated_when_stdout_is_not_a_terminal(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    name = "dashboard_" + "x" * 50
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    config.write_text(config.read_text().replace('Dir = "plugins"', f'Dir = ["plugins", "{deep}"]'))
    write_plugin(deep, name, KV_MANIFEST.format(name=name), GOOD_MODULE)
    code, out, _ = cli(capsys, "plugins", "list", "--config", str(config))
    assert code == 0, out
    assert "…" not in out
    (row,) = [line for line in out.splitlines() if name in line]
    assert str(deep / name) in row  # name and path whole, on one line


def test_plugin_check_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = write_plugin(tmp_path, "good", KV_MANIFEST.format(name="good"), GOOD_MODULE)
    bad = write_plugin(tmp_path, "bad", 'name = "bad"\nkind = "KVStore"\n', "")
    assert cli_json(capsys, "plugin", "check", str(good)) == {"path": str(good), "ok": True, "problems": []}
    data = cli_json(capsys, "plugin", "check", str(bad), code=1)
    assert data["ok"] is False and "requires extPoint 'Constructor'" in data["problems"][0]


def test_plugin_new_build_and_check_dep_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    made = cli_json(capsys, "plugin", "new", "mine", "--kind", "KVStore", "--dir", str(tmp_path))
    assert made["path"] == str(tmp_path / "mine") and made["kind"] == "KVStore"
    assert sorted(Path(f).name for f in made["files"]) == ["manifest.toml", "mine.py"]
    out = tmp_path / "dist"
    built = cli_json(capsys, "plugin", "build", "--src-dir", made["path"], "--out-dir", str(out))
    assert Path(built["path"]).is_file() and built["name"] == "mine" and built["version"] == "0.1.0"
    assert built["build_time"].endswith("Z") and "manifest.toml" in built["files"]
    with zipfile.ZipFile(built["path"]) as z:
        assert "manifest.toml" in z.namelist()
    dep = cli_json(capsys, "plugin", "check-dep", made["path"])
    assert dep["ok"] is True and dep["conflicts"] == []
    manifest = Path(made["path"]) / "manifest.toml"
    manifest.write_text(manifest.read_text() + 'requires = ["click<1"]\n')
    dep = cli_json(capsys, "plugin", "check-dep", made["path"], code=1)
    assert dep["ok"] is False and dep["requires"] == ["click<1"] and len(dep["conflicts"]) == 1


def test_plugins_enable_disable_json(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_plugin(tmp_path / "plugins", "side", KV_MANIFEST.format(name="side"), GOOD_MODULE)
    off = cli_json(capsys, "plugins", "disable", "side", "--config", str(config))
    assert off == {"plugin": "side", "state": "disabled", "disabled": ["side"], "route": None}
    on = cli_json(capsys, "plugins", "enable", "side", "--config", str(config))
    assert on == {"plugin": "side", "state": "enabled", "disabled": [], "route": None}


def test_registry_token_and_tenant_commands_json(config: Path, capsys: pytest.CaptureFixture) -> None:
    registered = cli_json(capsys, "registry", "register", "--config", str(config))
    rows = {r["id"]: r for r in registered["plugins"]}
    assert rows["memdb"]["created"] is True and rows["memdb"]["secret"]
    again = cli_json(capsys, "registry", "register", "--config", str(config))
    assert all("secret" not in r and r["created"] is False for r in again["plugins"])

    rotated = cli_json(capsys, "registry", "rotate-secret", "memdb", "--config", str(config))
    assert rotated["id"] == "memdb" and rotated["secret"] and rotated["secret"] != rows["memdb"]["secret"]

    enabled = cli_json(capsys, "plugins", "enable", "memdb", "--tenant", "acme", "--config", str(config))
    assert enabled == {"plugin": "memdb", "tenant": "acme", "state": "enabled", "expire_time": 0}
    disabled = cli_json(capsys, "plugins", "disable", "memdb", "--tenant", "acme", "--config", str(config))
    assert disabled["state"] == "disabled"
    off = cli_json(capsys, "plugins", "disable", "memdb", "--config", str(config))
    assert off["route"] == "STOPPED"

    token = cli_json(capsys, "token", "create", "--perm", "read", "--config", str(config))
    revoked = cli_json(capsys, "token", "revoke", token["id"], "--config", str(config))
    assert revoked["id"] == token["id"] and revoked["revoked"] is True and "token" not in revoked
