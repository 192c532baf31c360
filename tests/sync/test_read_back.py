"""The ReadBack extension point (#19 item 2): ``sync verify`` pages through a sink with it, checks
each page keeps the contract, and reports a syncer without it as unverifiable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest

from sectorhooks.errors import SinkUnverifiable, SyncError
from sectorhooks.host import PluginImpl
from sectorhooks.runtime import Runtime
from sectorhooks.sync.readback import read_all, read_back_impl
from sectorhooks_spec import SectorID, SyncedRow, SyncerInstance
from sync.helpers import FAST, kv_rows, make_config, open_runtime, plugin_module, sealing_run


@pytest.fixture
def recorder() -> Iterator[None]:
    import importlib

    yield None
    try:
        importlib.import_module("sectorhooks_plugins.recorder.recorder").reset()
    except ImportError:
        pass


def runtime(tmp_path: Path) -> Runtime:
    syncers = [("a", "recorder", {"url": "a"})]
    return open_runtime(
        make_config(tmp_path, syncers=syncers, kv="memdb", settings=FAST, plugins=("recorder", "inline"))
    )


def test_verify_pages_through_read_back_and_a_page_size_changes_nothing(
    tmp_path: Path, recorder: Any
) -> None:
    with runtime(tmp_path) as rt:
        sealing_run(rt.state, sectors=23, updates=2)
        assert rt.sync.wait_idle(10)
        impl = read_back_impl(rt.host, "recorder")
        assert impl is not None
        inst = SyncerInstance("a", "recorder", {"url": "a"})
        calls: List[Any] = []

        def counted(syncer: SyncerInstance, after: Optional[SectorID], limit: int) -> Any:
            calls.append((after, limit))
            return impl(syncer=syncer, after=after, limit=limit)

        spy = PluginImpl(impl.plugin, impl.hook, counted, ("syncer", "after", "limit"))
        for size in (1, 5, 23, 1000):
            calls.clear()
            assert read_all(spy, inst, page_size=size) == kv_rows(rt.state)
            assert len(calls) == 23 // size + 1  # full pages, then one short (maybe empty) page
            assert calls[0][0] is None and all(after is not None for after, _ in calls[1:])
        assert rt.sync.verify("a") == []
        rows = plugin_module(rt, "recorder").ROWS["a"]
        rows.pop(next(iter(rows)))
        assert len(rt.sync.verify("a")) == 1


def test_a_syncer_without_read_back_is_unverifiable(tmp_path: Path, recorder: Any) -> None:
    with runtime(tmp_path) as rt:
        assert read_back_impl(rt.host, "inline") is None
        with pytest.raises(SinkUnverifiable, match="plugin 'inline' has no ReadBack extension point") as err:
            rt.sync.verify("inline")
        assert "unverifiable" in str(err.value) and 'extPoint = "ReadBack"' in str(err.value)


def _fixed(pages: List[List[SyncedRow]]) -> PluginImpl:
    def read_back(syncer: SyncerInstance, after: Optional[SectorID], limit: int) -> List[SyncedRow]:
        return pages.pop(0) if pages else []

    return PluginImpl("bad", "sync_read_back", read_back, ("syncer", "after", "limit"))


def row(n: int) -> SyncedRow:
    return SyncedRow(SectorID(1000, n), 1, "{}")


@pytest.mark.parametrize(
    "pages, message",
    [
        ([[row(1), row(2), row(3)]], "returned 3 rows for limit=2"),
        ([[row(2), row(1)]], "returned s-t01000-1 after s-t01000-2"),
        ([[row(1), row(2)], [row(2)]], "returned s-t01000-2 after s-t01000-2"),
        ([[("s-t01000-1", 1, "{}")]], "returned a tuple; return sectorhooks_spec.SyncedRow"),
    ],
    ids=["too-many", "out-of-order", "repeats-the-last", "not-a-row"],
)
def test_a_page_breaking_the_contract_is_an_error_naming_the_plugin(pages: Any, message: str) -> None:
    with pytest.raises(SyncError, match="syncer 's': plugin 'bad' ReadBack") as err:
        read_all(_fixed(pages), SyncerInstance("s", "bad"), page_size=2)
    assert message in str(err.value)
