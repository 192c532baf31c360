"""``sectorhooks plugins ...`` and ``sectorhooks plugin check|new``: output, exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

import pytest
from click.testing import CliRunner, Result

from host.hostkit import KV_MANIFEST, SYNC_MODULE, load_host, write_plugin, write_zip
from sectorhooks.cli import main
from sectorhooks.host import PluginStatus
from sectorhooks.loader import bundled_plugins_dir
from sectorhooks_spec import JsonRpcNamespace, SectorID, SectorState, SyncerInstance, Workspace, dumps
from sectorhooks_spec.kinds import Kind
from sectorhooks_spec.manifest import parse_manifest


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A host config with its own data dir and plugin dir, no entry points."""
    (tmp_path / "plugins").mkdir()
    path = tmp_path / "host.toml"
    path.write_text(
        f'[Common]\nDataDir = "{tmp_path / "data"}"\n'
        f'[Common.Plugins]\nDir = "{tmp_path / "plugins"}"\nEntryPoints = false\n'
    )
    return path


def bundled_manifests() -> List[tuple]:
    out = []
    for d in sorted(bundled_plugins_dir().iterdir()):
        if (d / "manifest.toml").is_file():
            m = parse_manifest((d / "manifest.toml").read_text(), str(d / "manifest.toml"))
            out.append((m.name, m.kind.value))
    return out


def test_plugins_list_json_lists_every_bundled_plugin_with_kind_and_name(config: Path) -> None:
    result = run("plugins", "list", "--json", "--config", str(config))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    listed = {(p["name"], p["kind"]) for p in data["plugins"]}
    expected = bundled_manifests()
    assert ("memdb", "KVStore") in expected
    assert set(expected) <= listed
    memdb = next(p for p in data["plugins"] if p["name"] == "memdb")
    assert memdb["status"] == "loaded" and memdb["source"].startswith("bundled:")
    assert memdb["ext_points"] == ["Constructor"]


def test_plugins_list_table_shows_columns_and_errors(config: Path, tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "broken", 'name = "broken"\nkind = "KVStore"\n', "")
    result = run("plugins", "list", "--config", str(config))
    assert result.exit_code == 1, result.output  # a plugin with a problem fails the listing
    for column in ("kind", "name", "version", "status", "source"):
        assert column in result.output
    assert "memdb" in result.output and "invalid" in result.output
    assert "requires extPoint 'Constructor'" in result.output


def test_plugins_show_prints_one_plugin(config: Path) -> None:
    result = run("plugins", "show", "memdb", "--json", "--config", str(config))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["name"], data["kind"]) == ("memdb", "KVStore")
    table = run("plugins", "show", "memdb", "--config", str(config))
    assert table.exit_code == 0 and "KVStore/memdb" in table.output and "Constructor" in table.output


def test_plugins_show_unknown_name_exits_1_listing_names(config: Path) -> None:
    result = run("plugins", "show", "memdbb", "--config", str(config))
    assert result.exit_code == 1
    assert "no plugin named 'memdbb'" in result.output and "memdb" in result.output


def test_plugins_disable_keeps_a_plugin_from_being_imported(config: Path, tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    module = f"open({str(marker)!r}, 'a').write('x')\n\ndef open_store(meta):\n    return meta\n"
    write_plugin(tmp_path / "plugins", "sidecar", KV_MANIFEST.format(name="sidecar"), module)
    assert run("plugins", "disable", "sidecar", "--config", str(config)).exit_code == 0
    marker.unlink()
    listed = json.loads(run("plugins", "list", "--json", "--config", str(config)).output)
    assert next(p for p in listed["plugins"] if p["name"] == "sidecar")["status"] == "disabled"
    assert not marker.exists()
    assert json.loads((tmp_path / "data" / "disabled-plugins.json").read_text()) == ["sidecar"]
    assert run("plugins", "enable", "sidecar", "--config", str(config)).exit_code == 0
    listed = json.loads(run("plugins", "list", "--json", "--config", str(config)).output)
    assert next(p for p in listed["plugins"] if p["name"] == "sidecar")["status"] == "loaded"
    assert run("plugins", "disable", "nosuch", "--config", str(config)).exit_code == 1


BROKEN_MANIFEST = """
name = "broken"
kind = "SyncSectorState"
onInit = "on_init"
descriptoin = "typo"
export = [
  { extPoint = "OnImport", impl = "on_import" },
  { extPoint = "OnInit", impl = "on_init" },
  { extPoint = "OnUpdate", impl = "gone" },
  { extPoint = "OnFinalize", impl = "on_finalize" },
]
"""


def test_plugin_check_on_broken_manifest_exits_1_and_prints_every_problem(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path, "broken", BROKEN_MANIFEST, SYNC_MODULE)
    result = run("plugin", "check", str(plugin))
    assert result.exit_code == 1
    mpath = str(plugin / "manifest.toml")
    lines = [line.strip()[2:] for line in result.output.splitlines() if line.strip().startswith("- ")]
    # unknown key, missing extPoint, lifecycle clash, missing impl, onInit's wrong signature
    expected_fields = ["[descriptoin]", "[export]", "[onInit]", "[export[2].impl]", "[onInit]"]
    assert len(lines) == len(expected_fields), result.output
    for field in expected_fields:
        assert sum(line.startswith(f"{mpath}: {field}") for line in lines) == expected_fields.count(field), (
            field,
            result.output,
        )
    assert "5 problem(s)" in result.output


def test_plugin_check_on_toml_error_prints_line_and_column(tmp_path: Path) -> None:
    plugin = write_plugin(tmp_path, "broken", 'name = "broken"\nkind = = "KVStore"\n', "")
    result = run("plugin", "check", str(plugin))
    assert result.exit_code == 1
    assert result.output.count(f"- {plugin / 'manifest.toml'}:2:8: [<toml>]") == 1, result.output


def test_plugin_check_on_failing_import_exits_1(tmp_path: Path) -> None:
    plugin = write_plugin(
        tmp_path, "boom", KV_MANIFEST.format(name="boom"), "raise ImportError('needs libfoo')\n"
    )
    result = run("plugin", "check", str(plugin))
    assert result.exit_code == 1
    assert "plugin 'boom'" in result.output and "needs libfoo" in result.output


def test_plugin_check_accepts_good_dirs_and_zip_bundles(tmp_path: Path) -> None:
    plugin = write_plugin(
        tmp_path, "fine", KV_MANIFEST.format(name="fine"), "def open_store(meta):\n    return 1\n"
    )
    ok = run("plugin", "check", str(plugin))
    assert ok.exit_code == 0 and "ok" in ok.output
    bundle = write_zip(
        tmp_path / "fine.zip",
        {
            "manifest.toml": KV_MANIFEST.format(name="fine"),
            "fine.py": "def open_store(meta):\n    return 1\n",
        },
    )
    assert run("plugin", "check", str(bundle)).exit_code == 0
    broken = write_zip(tmp_path / "broken.zip", {"manifest.toml": 'name = "b"\nkind = "KVStore"\n'})
    result = run("plugin", "check", str(broken))
    assert result.exit_code == 1 and f"{broken}/manifest.toml: [export]" in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [("missing", "no such plugin directory"), ("empty", "no manifest.toml here")],
)
def test_plugin_check_on_a_path_without_plugin_exits_1(tmp_path: Path, target: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    result = run("plugin", "check", str(tmp_path / target))
    assert result.exit_code == 1 and message in result.output


@pytest.mark.parametrize("kind", list(Kind), ids=[k.value for k in Kind])
def test_plugin_new_scaffold_passes_check_and_loads(tmp_path: Path, kind: Kind) -> None:
    name = f"fresh{kind.value.lower()}"
    result = run("plugin", "new", name, "--kind", kind.value, "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    check = run("plugin", "check", str(tmp_path / name))
    assert check.exit_code == 0, check.output
    host = load_host(tmp_path, plugin_config={name: {"answer": 42}}).start()
    record = host.records[name]
    assert record.status is PluginStatus.ACTIVE, record.error
    assert record.kind is kind
    data_dir = str(host.config.data_dir)
    assert record.bound.module.CONFIG == {"DataDir": data_dir, "answer": 42}  # type: ignore[union-attr]
    if kind is Kind.SYNC_SECTOR_STATE:
        state = SectorState(SectorID(7, 1), version=2)
        syncer = SyncerInstance("s", name)
        assert host.broadcast(
            "sync_on_update",
            syncer=syncer,
            sector_id=state.id,
            workspace=Workspace.ONLINE,
            fields={},
            state=state,
            state_json=dumps(state),
        ).ok
        assert host.broadcast("sync_flush", syncer=syncer).ok
        assert record.bound.module.LATEST == {("s", state.id): state}  # type: ignore[union-attr]
    if kind is Kind.REGISTER_JSON_RPC:
        ((_, value),) = host.broadcast("jsonrpc_handler").results
        namespace, api = JsonRpcNamespace.of(value).name, JsonRpcNamespace.of(value).handler
        assert namespace == name[:1].upper() + name[1:] and api.Hello("you") == "hello you"
    host.shutdown()
    assert record.bound.module.CONFIG == {}  # type: ignore[union-attr]


def test_plugin_new_refuses_an_existing_directory(tmp_path: Path) -> None:
    assert run("plugin", "new", "twice", "--kind", "KVStore", "--dir", str(tmp_path)).exit_code == 0
    result = run("plugin", "new", "twice", "--kind", "KVStore", "--dir", str(tmp_path))
    assert result.exit_code == 1 and "already exists" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["plugins", "show"],
        ["plugin", "new", "x", "--kind", "Nope"],
        ["plugin", "new", "x"],
        ["plugin", "new", "9bad", "--kind", "KVStore"],
        ["plugins", "list", "--bogus"],
    ],
    ids=["unknown-command", "missing-argument", "bad-kind", "missing-kind", "bad-name", "unknown-option"],
)
def test_usage_errors_exit_2(tmp_path: Path, args: List[str]) -> None:
    result = CliRunner().invoke(main, [*args, *(["--dir", str(tmp_path)] if "new" in args else [])])
    assert result.exit_code == 2, result.output


def test_config_error_exits_1_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_text("[Common.Plugins]\nDisable = []\n")
    result = run("plugins", "list", "--config", str(path))
    assert result.exit_code == 1
    assert str(path) in result.output and "Common.Plugins.Disable" in result.output
    assert "did you mean 'Disabled'?" in result.output


def test_console_script_runs_as_a_process(config: Path) -> None:
    import subprocess

    script = Path(sys.executable).parent / "sectorhooks"
    cmd = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from sectorhooks.cli import main; main()"]
    )
    proc = subprocess.run(
        [*cmd, "plugins", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert any(p["name"] == "memdb" for p in json.loads(proc.stdout)["plugins"])
    usage = subprocess.run([*cmd, "plugins", "nope"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "No such command" in usage.stderr
