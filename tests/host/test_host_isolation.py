"""A bad plugin never stops the good ones: raising hooks, raising onInit, raising imports."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from host.hostkit import KV_MANIFEST, SYNC_MODULE, load_host, sync_manifest, write_plugin
from sectorhooks.errors import PluginCallError, PluginNotActiveError, UnknownPluginError
from sectorhooks.host import PluginHost, PluginStatus
from sectorhooks_spec import SectorID, SectorState, SyncerInstance, Workspace, dumps
from sectorhooks_spec.kinds import Kind

RAISING_SYNC = SYNC_MODULE.replace(
    'def on_update(syncer, state):\n    CALLS.append(("update", syncer.name, state.id))',
    'def on_update(syncer, state):\n    CALLS.append(("update", syncer.name, state.id))\n'
    '    raise ValueError("database on fire")',
)


def three_syncers(root: Path, raising: str = "two", init_fails: str = "") -> PluginHost:
    for name in ["one", "two", "three"]:
        module = RAISING_SYNC if name == raising else SYNC_MODULE
        if name == init_fails:
            module += "\ndef setup(config):\n    raise OSError('no database')\n"
        write_plugin(root, name, sync_manifest(name, on_init="setup" if name == init_fails else None), module)
    return load_host(root)


def update_kwargs() -> dict:
    state = SectorState(SectorID(1000, 7), version=3)
    return {
        "syncer": SyncerInstance("main", "x"),
        "sector_id": state.id,
        "workspace": Workspace.ONLINE,
        "fields": {"version": 3},
        "state": state,
        "state_json": dumps(state),
    }


def calls(host: PluginHost, name: str) -> list:
    return host.records[name].bound.module.CALLS  # type: ignore[union-attr, no-any-return]


def test_raising_plugin_among_three_does_not_stop_the_broadcast(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = three_syncers(tmp_path, raising="two").start()
    kwargs = update_kwargs()
    with caplog.at_level(logging.ERROR, logger="sectorhooks.host"):
        result = host.broadcast("sync_on_update", **kwargs)
    assert [name for name, _ in result.results] == ["one", "three"]
    assert not result.ok
    (failure,) = result.failures
    assert isinstance(failure, PluginCallError)
    assert (failure.plugin, failure.hook) == ("two", "sync_on_update")
    assert isinstance(failure.exc, ValueError)
    assert "plugin 'two' hook 'sync_on_update' raised ValueError: database on fire" in str(failure)
    for name in ["one", "two", "three"]:
        assert calls(host, name) == [("update", "main", SectorID(1000, 7))]
    logged = [r.getMessage() for r in caplog.records]
    assert any("'two'" in m and "database on fire" in m for m in logged), logged
    # a raising plugin stays active: the next event reaches it again
    assert host.records["two"].status is PluginStatus.ACTIVE


def test_bare_pluggy_would_stop_at_the_raising_plugin(tmp_path: Path) -> None:
    # the reason the host dispatches per plugin: pluggy alone aborts the whole call
    host = three_syncers(tmp_path, raising="two").start()
    with pytest.raises(ValueError):
        host.pm.hook.sync_on_update(**update_kwargs())
    reached = [n for n in ["one", "two", "three"] if calls(host, n)]
    assert "two" in reached and len(reached) < 3


def test_plugin_whose_on_init_raises_is_failed_and_never_called(tmp_path: Path) -> None:
    host = three_syncers(tmp_path, raising="", init_fails="two").start()
    record = host.records["two"]
    assert record.status is PluginStatus.FAILED
    assert "onInit raised OSError: no database" in record.error
    result = host.broadcast("sync_on_update", **update_kwargs())
    assert result.ok and [n for n, _ in result.results] == ["one", "three"]
    assert calls(host, "two") == []
    assert host.impl("two", "sync_on_update") is None
    assert [i.plugin for i in host.impls("sync_on_update")] == ["one", "three"]


def test_plugin_whose_import_raises_does_not_stop_the_others(tmp_path: Path) -> None:
    write_plugin(tmp_path, "aa_good", sync_manifest("aa_good"), SYNC_MODULE)
    write_plugin(
        tmp_path,
        "bb_broken",
        sync_manifest("bb_broken"),
        "import json\nraise RuntimeError('boom at import')\n",
    )
    write_plugin(tmp_path, "cc_exits", sync_manifest("cc_exits"), "import sys\nsys.exit(3)\n")
    write_plugin(tmp_path, "dd_good", sync_manifest("dd_good"), SYNC_MODULE)
    host = load_host(tmp_path).start()
    broken = host.records["bb_broken"]
    assert broken.status is PluginStatus.FAILED
    assert "import raised RuntimeError: boom at import" in broken.error
    assert str(tmp_path / "bb_broken" / "bb_broken.py") in broken.error  # where it raised
    assert str(tmp_path / "bb_broken" / "manifest.toml") in broken.error
    assert host.records["cc_exits"].status is PluginStatus.FAILED
    assert "SystemExit" in host.records["cc_exits"].error
    assert [i.plugin for i in host.impls("sync_on_update")] == ["aa_good", "dd_good"]
    assert host.broadcast("sync_on_update", **update_kwargs()).ok


def test_import_error_inside_plugin_is_not_mistaken_for_a_missing_module(tmp_path: Path) -> None:
    write_plugin(tmp_path, "needs", KV_MANIFEST.format(name="needs"), "import no_such_dependency_xyz\n")
    host = load_host(tmp_path)
    error = host.records["needs"].error
    assert "ModuleNotFoundError" in error and "no_such_dependency_xyz" in error
    assert "module 'needs' not found" not in error


KV_MODULE = "def open_store(meta):\n    return ('store', dict(meta))\n"


def test_driver_lookup_of_unknown_name_lists_available_names(tmp_path: Path) -> None:
    write_plugin(tmp_path, "kv_one", KV_MANIFEST.format(name="kv_one"), KV_MODULE)
    write_plugin(tmp_path, "kv_two", KV_MANIFEST.format(name="kv_two"), KV_MODULE)
    write_plugin(tmp_path, "syncer", sync_manifest("syncer"), SYNC_MODULE)
    host = load_host(tmp_path).start()
    with pytest.raises(UnknownPluginError) as info:
        host.require_driver(Kind.KV_STORE, "kv_three", where="cfg.toml: Common.DB.Plugin.PluginName")
    message = str(info.value)
    assert "no loaded KVStore plugin named 'kv_three'" in message
    assert "'kv_one', 'kv_two'" in message
    assert message.startswith("cfg.toml: Common.DB.Plugin.PluginName: ")
    assert info.value.available == ["kv_one", "kv_two"]
    # a plugin of another kind is not a driver of this one
    with pytest.raises(UnknownPluginError, match="loaded FileStore plugins: none"):
        host.require_driver(Kind.FILE_STORE, "syncer")
    assert host.call_driver(Kind.KV_STORE, "kv_two", "kvstore_constructor", meta={"a": "1"}) == (
        "store",
        {"a": "1"},
    )


def test_driver_that_failed_or_raises_gives_a_named_error(tmp_path: Path) -> None:
    write_plugin(
        tmp_path,
        "broken",
        KV_MANIFEST.format(name="broken") + 'onInit = "setup"\n',
        KV_MODULE + "\ndef setup(config):\n    raise RuntimeError('no disk')\n",
    )
    write_plugin(
        tmp_path,
        "picky",
        KV_MANIFEST.format(name="picky"),
        "def open_store(meta):\n    raise KeyError('url')\n",
    )
    host = load_host(tmp_path).start()
    with pytest.raises(PluginNotActiveError, match=r"plugin 'broken' is failed: .*no disk"):
        host.require_driver(Kind.KV_STORE, "broken")
    with pytest.raises(
        PluginCallError, match="plugin 'picky' hook 'kvstore_constructor' raised KeyError"
    ) as info:
        host.call_driver(Kind.KV_STORE, "picky", "kvstore_constructor", meta={})
    assert isinstance(info.value.exc, KeyError)
    # the failed driver is not offered as an alternative
    with pytest.raises(UnknownPluginError) as unknown:
        host.require_driver(Kind.KV_STORE, "nope")
    assert unknown.value.available == ["picky"]


def test_get_of_unknown_plugin_lists_loaded_ones(tmp_path: Path) -> None:
    write_plugin(tmp_path, "kv_one", KV_MANIFEST.format(name="kv_one"), KV_MODULE)
    host = load_host(tmp_path)
    with pytest.raises(UnknownPluginError, match="'kv_one'"):
        host.get("kv_on")


def test_plugin_modules_are_isolated_under_their_own_package(tmp_path: Path) -> None:
    # two plugins may each have a helper module of the same name
    for name, value in [("left", "L"), ("right", "R")]:
        write_plugin(
            tmp_path,
            name,
            KV_MANIFEST.format(name=name),
            "from .utils import VALUE\n\ndef open_store(meta):\n    return VALUE\n",
            files={"utils.py": f"VALUE = {value!r}\n"},
        )
    host = load_host(tmp_path).start()
    assert host.call_driver(Kind.KV_STORE, "left", "kvstore_constructor", meta={}) == "L"
    assert host.call_driver(Kind.KV_STORE, "right", "kvstore_constructor", meta={}) == "R"
    assert "utils" not in sys.modules or not hasattr(sys.modules["utils"], "VALUE")
