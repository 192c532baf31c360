"""``sectorhooks plugin check-dep [--fix]``: a plugin's requires against the host's real packages."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement

from registry.regkit import GREET
from sectorhooks import bundle, deps
from sectorhooks.cli import run
from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost, PluginStatus
from sectorhooks_spec.manifest import load_toml

CLICK = importlib.metadata.version("click")  # installed in the host's environment
CLICK_MAJOR = int(CLICK.split(".")[0])


def _plugin(tmp_path: Path, requires: list, multiline: bool = False) -> Path:
    src = tmp_path / "greet"
    shutil.copytree(GREET, src)
    mpath = src / "manifest.toml"
    items = [json.dumps(r) for r in requires]
    value = (
        "[\n" + "".join(f"  {i},  # why\n" for i in items) + "]"
        if multiline
        else "[" + ", ".join(items) + "]"
    )
    mpath.write_text(mpath.read_text().replace('requires = ["packaging>=20"]', f"requires = {value}"))
    return src


def _requires(src: Path) -> list:
    data, _ = load_toml((src / "manifest.toml").read_text(), "m")
    assert data is not None
    return data["requires"]


def test_check_dep_reports_each_real_conflict_and_exits_1(tmp_path, capsys):
    src = _plugin(tmp_path, [f"click>={CLICK_MAJOR + 1}", "packaging>=20", "no-such-dist-h7>=1"])
    assert run(["plugin", "check-dep", str(src)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"click: plugin wants >={CLICK_MAJOR + 1}, host has {CLICK}",
        "no-such-dist-h7: plugin wants >=1, host has none (not installed)",
    ]


def test_check_dep_passes_when_the_host_satisfies_everything(tmp_path, capsys):
    src = _plugin(tmp_path, [f"click>={CLICK_MAJOR}", 'nothing-here; python_version < "3"'])
    assert run(["plugin", "check-dep", str(src)]) == 0
    assert "ok: 2 requirement(s) satisfied" in capsys.readouterr().out


@pytest.mark.parametrize("multiline", [False, True])
def test_fix_rewrites_conflicts_to_ranges_the_host_satisfies_and_keeps_a_backup(tmp_path, capsys, multiline):
    src = _plugin(tmp_path, [f"click>={CLICK_MAJOR + 1}", "packaging>=20"], multiline)
    before = (src / "manifest.toml").read_text()
    assert run(["plugin", "check-dep", "--fix", str(src)]) == 0
    out = capsys.readouterr().out
    minor = CLICK.split(".")[1]
    want = f"click>={CLICK_MAJOR}.{minor},<{CLICK_MAJOR + 1}"
    assert f"click>={CLICK_MAJOR + 1} -> {want}" in out
    assert _requires(src) == [want, "packaging>=20"]
    assert (src / "manifest.toml.bak").read_text() == before
    # Only the requires value changed; the rest of the file is as it was.
    after = (src / "manifest.toml").read_text()
    assert after.split("requires")[0] == before.split("requires")[0]
    assert after.split("export")[1] == before.split("export")[1]
    assert run(["plugin", "check-dep", str(src)]) == 0


def test_fix_restores_the_manifest_when_a_conflict_remains(tmp_path, capsys):
    src = _plugin(tmp_path, [f"click>={CLICK_MAJOR + 1}", "no-such-dist-h7>=1"])
    before = (src / "manifest.toml").read_text()
    assert run(["plugin", "check-dep", "--fix", str(src)]) == 1
    out = capsys.readouterr().out
    assert "no-such-dist-h7: plugin wants >=1, host has none (not installed)" in out
    assert "restored" in out
    assert (src / "manifest.toml").read_text() == before


def test_check_dep_reads_a_bundle_and_refuses_fix_on_it(tmp_path, capsys):
    src = _plugin(tmp_path, [f"click>={CLICK_MAJOR + 1}"])
    built = bundle.build(src, tmp_path / "out", epoch=1700000000)
    assert run(["plugin", "check-dep", str(built.path)]) == 1
    assert f"click: plugin wants >={CLICK_MAJOR + 1}, host has {CLICK}" in capsys.readouterr().out
    assert run(["plugin", "check-dep", "--fix", str(built.path)]) == 2


def test_invalid_requirement_is_reported_with_the_line():
    (line,) = deps.unsatisfied(["click >>> 3"])
    assert "'click >>> 3'" in line and "invalid requirement" in line and "\n" not in line


def test_prerelease_and_any_version_are_judged_by_the_installed_version():
    assert deps.unsatisfied(["click"]) == []
    assert deps.unsatisfied([f"click=={CLICK}"]) == []
    assert deps.compatible_range("2.1.0rc1") == "==2.1.0rc1"
    assert deps.compatible_range("0.4.2") == ">=0.4,<0.5"


def test_host_refuses_to_load_a_plugin_whose_requires_it_does_not_satisfy(tmp_path):
    src = _plugin(tmp_path, [f"click>={CLICK_MAJOR + 1}"])
    host = PluginHost(
        HostConfig(plugins=PluginsConfig(dirs=(src,), bundled=False, entry_points=False))
    ).load()
    record = host.records["greet"]
    assert record.status is PluginStatus.FAILED
    assert f"click: plugin wants >={CLICK_MAJOR + 1}, host has {CLICK}" in record.error


_names = st.sampled_from(["click", "packaging", "attrs", "no-such-dist-h7", "Pluggy", "rich"])
_specs = st.sampled_from(["", ">=1", "<1", ">=99", "==0.0.1", "~=1.0", "!=3.2,>=0.1"])
_markers = st.sampled_from(["", '; python_version >= "3"', '; sys_platform == "nonexistent"'])


@settings(max_examples=40, deadline=None)
@given(reqs=st.lists(st.tuples(_names, _specs, _markers).map("".join), max_size=5))
def test_fixing_only_ever_leaves_conflicts_that_cannot_be_fixed(tmp_path_factory, reqs):
    tmp = tmp_path_factory.mktemp("fix")
    src = _plugin(tmp, reqs)
    before = (src / "manifest.toml").read_text()
    result = deps.fix(src)
    missing = [
        r for r in reqs if deps.installed_version(Requirement(r).name) is None and deps.unsatisfied([r])
    ]
    assert result.fixed == (not missing)
    if result.fixed:
        assert deps.unsatisfied(_requires(src)) == []
        assert [Requirement(r).name for r in _requires(src)] == [Requirement(r).name for r in reqs]
    else:
        assert (src / "manifest.toml").read_text() == before
