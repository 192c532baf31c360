"""The host and pluggy agree: what pluggy registers is what the host calls, with the same options.

The host calls each plugin's impl on its own (isolation), never through pluggy's call chain, so
impls that need the chain (``wrapper``, ``hookwrapper``) are refused at load with a clear error;
``@hookimpl`` options apply to the function they decorate and to no other.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest

from host.hostkit import SYNC_MODULE, load_host, problems_of, sync_manifest, write_plugin
from sectorhooks.host import PluginStatus
from sectorhooks_spec import SectorID, SectorState, SyncerInstance, Workspace, dumps

WRAPPER_MODULE = """
from sectorhooks_spec import hookimpl

{module}

@hookimpl({option}=True)
def sync_flush(syncer):
    result = yield
    return result
"""

SYNCER = SyncerInstance("s1", "p")


def _update_args() -> dict:
    state = SectorState(SectorID(1, 2), version=1)
    return {
        "syncer": SYNCER,
        "sector_id": state.id,
        "workspace": Workspace.ONLINE,
        "fields": {},
        "state": state,
        "state_json": dumps(state),
    }


@pytest.mark.parametrize("option", ["wrapper", "hookwrapper"])
def test_a_wrapper_impl_is_refused_naming_file_function_and_fix(tmp_path: Path, option: str) -> None:
    write_plugin(tmp_path, "aa_good", sync_manifest("aa_good"), SYNC_MODULE)
    bad = write_plugin(
        tmp_path,
        "zz_wrap",
        sync_manifest("zz_wrap"),
        WRAPPER_MODULE.format(module=SYNC_MODULE, option=option),
    )
    host = load_host(tmp_path)
    record = host.records["zz_wrap"]
    assert record.status is PluginStatus.FAILED
    assert str(bad / "manifest.toml") in record.error
    assert "function 'sync_flush'" in record.error and "hook 'sync_flush'" in record.error
    assert f"@hookimpl({option}=True)" in record.error
    assert f"fix: remove {option}=True" in record.error
    # nothing of it reaches pluggy, and the good plugin goes on
    assert not host.pm.has_plugin("zz_wrap")
    assert host.records["aa_good"].status is PluginStatus.LOADED
    assert [i.plugin for i in host.impls("sync_on_update")] == ["aa_good"]


def test_a_broadcast_never_returns_a_generator(tmp_path: Path) -> None:
    """Before: the wrapper registered, and ``broadcast`` returned its unstarted generator."""
    write_plugin(
        tmp_path,
        "zz_wrap",
        sync_manifest("zz_wrap"),
        WRAPPER_MODULE.format(module=SYNC_MODULE, option="wrapper"),
    )
    host = load_host(tmp_path).start()
    result = host.broadcast("sync_flush", syncer=SYNCER)
    assert result.ok and not any(inspect.isgenerator(value) for _, value in result.results)
    assert result.results == []


def test_a_manifest_impl_marked_wrapper_is_refused_naming_its_field(tmp_path: Path) -> None:
    module = SYNC_MODULE.replace(
        "def on_update(syncer, state):\n    CALLS.append",
        "@hookimpl(wrapper=True)\ndef on_update(syncer, state):\n    yield\n    CALLS.append",
    )
    write_plugin(tmp_path, "p", sync_manifest("p"), "from sectorhooks_spec import hookimpl\n" + module)
    record = load_host(tmp_path).records["p"]
    assert record.status is PluginStatus.FAILED
    assert "function 'on_update'" in record.error and "[export[2].impl]" in record.error


def test_a_wrapper_next_to_other_problems_is_one_more_problem(tmp_path: Path) -> None:
    module = WRAPPER_MODULE.format(
        module=SYNC_MODULE.replace("def on_restore", "def on_restore_"), option="wrapper"
    )
    path = write_plugin(tmp_path, "p", sync_manifest("p"), module) / "manifest.toml"
    host = load_host(tmp_path)
    assert host.records["p"].status is PluginStatus.INVALID
    by_field = {p.field: p for p in problems_of(host, "p")}
    assert set(by_field) == {"export[4].impl", "<module>"}
    wrapper = by_field["<module>"]
    assert wrapper.path == str(path)
    assert "function 'sync_flush'" in wrapper.message and "wrapper=True" in wrapper.message
    assert "remove wrapper=True" in wrapper.hint


TWO_FUNCTIONS = """
from sectorhooks_spec import hookimpl

{module}

@hookimpl(tryfirst=True)
def sync_on_update(syncer, state):
    CALLS.append(("decorated update", syncer.name, state.id))
"""


def test_a_decorated_function_options_do_not_leak_to_the_manifest_impl(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The manifest binds OnUpdate to ``on_update``; ``sync_on_update`` is decorated tryfirst for
    the same hook. The manifest's binding stands, without the other function's tryfirst."""
    write_plugin(tmp_path, "aa_plain", sync_manifest("aa_plain"), SYNC_MODULE)
    write_plugin(tmp_path, "zz_two", sync_manifest("zz_two"), TWO_FUNCTIONS.format(module=SYNC_MODULE))
    with caplog.at_level(logging.WARNING, logger="sectorhooks.loader"):
        host = load_host(tmp_path)
    record = host.records["zz_two"]
    assert record.status is PluginStatus.LOADED, record.error
    assert record.bound is not None and record.bound.impls["sync_on_update"].__name__ == "on_update"
    assert "sync_on_update" not in record.bound.impl_opts
    (pluggy_impl,) = [i for i in host.pm.hook.sync_on_update.get_hookimpls() if i.plugin_name == "zz_two"]
    assert not pluggy_impl.tryfirst
    assert [i.plugin for i in host.impls("sync_on_update")] == ["aa_plain", "zz_two"]  # load order
    (warning,) = [r.getMessage() for r in caplog.records if "zz_two" in r.getMessage()]
    assert "'sync_on_update'" in warning and "'on_update'" in warning and "not used" in warning
    host.start().broadcast("sync_on_update", **_update_args())
    assert record.bound.module.CALLS == [("update", "s1", SectorID(1, 2))]


def test_tryfirst_on_one_of_two_manifest_functions_applies_to_that_one_only(tmp_path: Path) -> None:
    module = "from sectorhooks_spec import hookimpl\n" + SYNC_MODULE.replace(
        "def on_update(", "@hookimpl(tryfirst=True)\ndef on_update("
    )
    write_plugin(tmp_path, "aa_plain", sync_manifest("aa_plain"), SYNC_MODULE)
    write_plugin(tmp_path, "zz_one", sync_manifest("zz_one"), module)
    host = load_host(tmp_path)
    assert host.records["zz_one"].status is PluginStatus.LOADED, host.records["zz_one"].error
    assert [i.plugin for i in host.impls("sync_on_update")] == ["zz_one", "aa_plain"]
    assert [i.plugin for i in host.impls("sync_on_import")] == ["aa_plain", "zz_one"]
    opts = {i.plugin_name: i.tryfirst for i in host.pm.hook.sync_on_import.get_hookimpls()}
    assert opts == {"aa_plain": False, "zz_one": False}
