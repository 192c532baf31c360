"""Where plugins come from: zip bundles, disabled plugins, modules using @hookimpl themselves."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from host.hostkit import KV_MANIFEST, SYNC_MODULE, load_host, sync_manifest, write_plugin, write_zip
from sectorhooks.host import PluginStatus, set_disabled
from sectorhooks.loader import argnames
from sectorhooks_spec import SectorID, SectorState, SyncerInstance, Workspace, dumps
from sectorhooks_spec.kinds import Kind

ZIP_MODULE = """
from .helpers import greet
from .sub.deep import VALUE

def open_store(meta):
    return greet(meta["who"]) + VALUE
"""
ZIP_FILES = {
    "manifest.toml": KV_MANIFEST.format(name="zipped"),
    "zipped.py": ZIP_MODULE,
    "helpers.py": "def greet(who):\n    return 'hello ' + who\n",
    "sub/__init__.py": "",
    "sub/deep.py": "from ..helpers import greet\nVALUE = greet('!')[-1]\n",
}


@pytest.mark.parametrize("top", ["", "zipped-1.0"], ids=["manifest-at-root", "single-top-directory"])
def test_zip_bundle_loads_and_its_relative_imports_work(tmp_path: Path, top: str) -> None:
    bundle = write_zip(tmp_path / "zipped-1.0.zip", ZIP_FILES, top=top)
    host = load_host(tmp_path).start()
    record = host.records["zipped"]
    assert record.status is PluginStatus.ACTIVE, record.error
    inner = f"{top}/manifest.toml" if top else "manifest.toml"
    assert record.manifest_path == f"{bundle}/{inner}"
    assert record.source.startswith("zip:")
    assert (
        host.call_driver(Kind.KV_STORE, "zipped", "kvstore_constructor", meta={"who": "zip"}) == "hello zip!"
    )


def test_zip_bundle_as_a_package_module(tmp_path: Path) -> None:
    files = {
        "manifest.toml": KV_MANIFEST.format(name="pkgzip") + 'module = "impl"\n',
        "impl/__init__.py": "from .store import open_store\n",
        "impl/store.py": "from ._version import V\n\ndef open_store(meta):\n    return V\n",
        "impl/_version.py": "V = 'v7'\n",
    }
    write_zip(tmp_path / "pkgzip.zip", files)
    host = load_host(tmp_path).start()
    assert host.call_driver(Kind.KV_STORE, "pkgzip", "kvstore_constructor", meta={}) == "v7"


def test_broken_zip_bundles_are_reported_and_the_rest_load(tmp_path: Path) -> None:
    (tmp_path / "garbage.zip").write_bytes(b"this is not a zip")
    write_zip(tmp_path / "empty.zip", {"README": "no manifest here"})
    write_zip(tmp_path / "bad.zip", {"manifest.toml": 'name = "bad"\nkind = "KVStore"\n', "bad.py": ""})
    write_plugin(tmp_path, "good", KV_MANIFEST.format(name="good"), "def open_store(meta):\n    return 1\n")
    host = load_host(tmp_path).start()
    assert host.records["good"].status is PluginStatus.ACTIVE
    texts = [str(p) for e in host.orphans for p in e.problems] + [
        str(p) for p in host.records["bad"].problems
    ]
    assert any(str(tmp_path / "garbage.zip") in t and "cannot read plugin" in t for t in texts), texts
    assert any(str(tmp_path / "empty.zip") in t and "no manifest.toml" in t for t in texts), texts
    assert any(
        f"{tmp_path / 'bad.zip'}/manifest.toml: [export]" in t and "Constructor" in t for t in texts
    ), texts


def test_missing_plugin_dir_is_reported_with_the_config_key(tmp_path: Path) -> None:
    host = load_host(tmp_path / "nope")
    (err,) = host.orphans
    (problem,) = err.problems
    assert problem.field == "Common.Plugins.Dir"
    assert str(tmp_path / "nope") in str(problem)


MARKER_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")

def open_store(meta):
    return meta
"""


def test_disabled_by_config_is_not_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported.txt"
    write_plugin(
        tmp_path / "p", "off", KV_MANIFEST.format(name="off"), MARKER_MODULE.format(marker=str(marker))
    )
    write_plugin(
        tmp_path / "p", "on", KV_MANIFEST.format(name="on"), "def open_store(meta):\n    return meta\n"
    )
    host = load_host(tmp_path / "p", disabled=["off"]).start()
    assert host.records["off"].status is PluginStatus.DISABLED
    assert not marker.exists()
    assert "sectorhooks_plugins.off.off" not in sys.modules
    assert host.records["on"].status is PluginStatus.ACTIVE
    assert [i.plugin for i in host.impls("kvstore_constructor")] == ["on"]


def test_disabled_by_plugins_disable_is_not_imported_until_enabled(tmp_path: Path) -> None:
    marker = tmp_path / "imported.txt"
    write_plugin(
        tmp_path / "p", "off", KV_MANIFEST.format(name="off"), MARKER_MODULE.format(marker=str(marker))
    )
    data = tmp_path / "data"
    first = load_host(tmp_path / "p", data_dir=data)
    assert first.records["off"].status is PluginStatus.LOADED and marker.exists()
    marker.unlink()
    set_disabled(first.config, "off", True)
    assert load_host(tmp_path / "p", data_dir=data).records["off"].status is PluginStatus.DISABLED
    assert not marker.exists()
    set_disabled(first.config, "off", False)
    assert load_host(tmp_path / "p", data_dir=data).records["off"].status is PluginStatus.LOADED
    assert marker.exists()


def test_unreadable_disabled_state_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "disabled-plugins.json").write_text("{not json")
    write_plugin(
        tmp_path / "p", "on", KV_MANIFEST.format(name="on"), "def open_store(meta):\n    return meta\n"
    )
    host = load_host(tmp_path / "p", data_dir=data)
    assert host.records["on"].status is PluginStatus.LOADED
    assert any("disabled-plugins.json" in r.getMessage() for r in caplog.records)


HOOKIMPL_MODULE = """
from sectorhooks_spec import hookimpl

CALLS = []

def on_import(state):
    CALLS.append("import")

def on_init(states):
    CALLS.append("init")

@hookimpl(tryfirst=True)
def on_update(state):
    CALLS.append("update")

def on_finalize(sector_id):
    CALLS.append("finalize")

def on_restore(sector_id):
    CALLS.append("restore")

@hookimpl
def sync_flush(syncer):
    CALLS.append("flush " + syncer.name)

@hookimpl
def plugin_init(config):
    CALLS.append("start " + config.get("greeting", "?"))

@hookimpl(specname="plugin_health")
def is_healthy():
    return "degraded"
"""


def test_module_using_hookimpl_itself_works(tmp_path: Path) -> None:
    write_plugin(tmp_path, "aa_plain", sync_manifest("aa_plain"), SYNC_MODULE)
    write_plugin(tmp_path, "zz_decorated", sync_manifest("zz_decorated"), HOOKIMPL_MODULE)
    host = load_host(tmp_path, plugin_config={"zz_decorated": {"greeting": "hi"}}).start()
    record = host.records["zz_decorated"]
    assert record.status is PluginStatus.ACTIVE, record.error
    module = record.bound.module  # type: ignore[union-attr]
    assert module.CALLS == ["start hi"]
    # tryfirst from the decorator wins over load order for that hook only
    assert [i.plugin for i in host.impls("sync_on_update")] == ["zz_decorated", "aa_plain"]
    assert [i.plugin for i in host.impls("sync_on_import")] == ["aa_plain", "zz_decorated"]
    state = SectorState(SectorID(1, 2), version=1)
    host.broadcast(
        "sync_on_update",
        syncer=SyncerInstance("s1", "zz_decorated"),
        sector_id=state.id,
        workspace=Workspace.ONLINE,
        fields={},
        state=state,
        state_json=dumps(state),
    )
    host.broadcast("sync_flush", syncer=SyncerInstance("s1", "zz_decorated"))
    assert module.CALLS == ["start hi", "update", "flush s1"]
    assert host.broadcast("plugin_health").results == [("zz_decorated", "degraded")]


def test_one_log_line_per_loaded_plugin_with_version_build_time_and_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = KV_MANIFEST.format(name="stamped") + 'version = "1.2.3"\nbuild_time = "2024-05-01T10:00:00Z"\n'
    module = "def open_store(meta):\n    return meta\n"
    write_plugin(tmp_path, "stamped", manifest, module)
    plain = write_plugin(tmp_path, "plain", KV_MANIFEST.format(name="plain"), module)
    # no build_time in its manifest: the newest file of its directory says when it was built
    os.utime(plain / "manifest.toml", (1714557600, 1714557600))  # 2024-05-01T10:00:00Z
    os.utime(plain / "plain.py", (1714561200, 1714561200))  # 2024-05-01T11:00:00Z
    with caplog.at_level("INFO", logger="sectorhooks.host"):
        load_host(tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded plugin")]
    assert lines == [
        f"loaded plugin 'KVStore/plain' version -, build time: 2024-05-01T11:00:00Z, from dir:{plain}",
        "loaded plugin 'KVStore/stamped' version 1.2.3, build time: 2024-05-01T10:00:00Z, "
        f"from dir:{tmp_path / 'stamped'}",
    ]


def _wrapped(fn):  # type: ignore[no-untyped-def]
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda: 0, ()),
        (lambda syncer, state=None: 0, ("syncer",)),
        (lambda a, /, b, *args, c, d=2, **kw: 0, ("a", "b", "c")),
        (lambda *, state: 0, ("state",)),
        (_wrapped(lambda syncer, state: 0), ("syncer", "state")),
    ],
    ids=["none", "default-is-optional", "all-kinds", "keyword-only", "functools-wraps"],
)
def test_impl_argument_names_are_the_required_ones(fn: Any, expected: tuple) -> None:
    # the host passes exactly these by name; pluggy agrees (defaults are never passed)
    assert argnames(fn) == expected
