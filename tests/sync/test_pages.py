"""Pages of sectors (#20 item 2): ``state.scan.read_page`` / ``SectorStateManager.page`` and
``iter_pages`` against the full list, ``iter_sectors(after=)``, and the cursors."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sectorhooks.errors import PageCursorError
from sectorhooks.state import SectorStateManager
from sectorhooks.state.scan import PAGE_MAX, decode_cursor, encode_cursor, iter_sectors, read_page
from sectorhooks_spec import AllocatedSector, SectorID, Workspace
from sync import test_scan
from sync.test_scan import MINERS, SECTORS, clear, write

kv = test_scan.kv  # the same KV fixture: memdb and sqlkv on SQLite


def walk(kv: Any, size: int, workspace: Optional[Workspace], miner: Optional[int]) -> List[List[bytes]]:
    pages, cursor = [], None
    while True:
        records, cursor = read_page(kv, workspace, miner, cursor, size)
        assert len(records) <= size
        pages.append([r.key for r in records])
        if cursor is None:
            return pages
        assert len(records) == size  # a page short of the limit is the last one


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sectors=SECTORS,
    workspace=st.one_of(st.none(), st.sampled_from(list(Workspace))),
    miner=st.one_of(st.none(), st.sampled_from((*MINERS, 1))),
    size=st.integers(1, 9),
)
def test_a_walk_of_pages_equals_the_full_scan(
    kv: Any,
    sectors: Dict[SectorID, Workspace],
    workspace: Optional[Workspace],
    miner: Optional[int],
    size: int,
) -> None:
    clear(kv)
    write(kv, sectors)
    full = [r.key for r in iter_sectors(kv, workspace, miner)]
    pages = walk(kv, size, workspace, miner)
    assert [k for p in pages for k in p] == full
    assert all(pages[:-1])  # no empty page but possibly the only one
    if full:
        middle = sector_of(full[len(full) // 2])
        assert [r.key for r in iter_sectors(kv, workspace, miner, after=middle, page_size=size)] == [
            k for k in full if k > full[len(full) // 2]
        ]


def sector_of(key: bytes) -> SectorID:
    m, _, n = key.partition(b"/")
    return SectorID(int(m), int(n))


def test_iter_sectors_reads_pages_of_the_size_asked(kv: Any) -> None:
    write(kv, {SectorID(5, n): Workspace.ONLINE for n in range(25)})
    got = [r.sector_id.number for r in iter_sectors(kv, page_size=4)]
    assert got == list(range(25))
    assert [r.sector_id.number for r in iter_sectors(kv, after=SectorID(5, 20), page_size=1)] == [
        21,
        22,
        23,
        24,
    ]
    with pytest.raises(ValueError, match="page_size"):
        next(iter_sectors(kv, page_size=0))


def test_the_manager_pages_states_and_iterates_pages(kv: Any) -> None:
    state = SectorStateManager(kv)
    state.init_sectors([AllocatedSector(SectorID(m, n), 8) for m in (3, 5) for n in range(12)])
    state.finalize(SectorID(3, 4))
    states, cursor = state.page(limit=5)
    assert [s.id for s in states] == [SectorID(3, n) for n in range(5)] and cursor is not None
    more, _ = state.page(after=cursor, limit=2)
    assert [s.id for s in more] == [SectorID(3, 5), SectorID(3, 6)]
    assert [s.id for p in state.iter_pages(page_size=7) for s in p] == [s.id for s in state.list()]
    assert [len(p) for p in state.iter_pages(Workspace.ONLINE, 3, page_size=4)] == [4, 4, 3]
    assert state.page(Workspace.OFFLINE) == ([state.get(SectorID(3, 4))], None)
    with pytest.raises(PageCursorError, match="'after'"):
        state.page(Workspace.ONLINE, after=cursor)  # made without the workspace filter
    for bad in (0, PAGE_MAX + 1, True):
        with pytest.raises(PageCursorError, match="'limit' must be an integer from 1 to 1000"):
            state.page(limit=bad)
    state.close()


def test_cursors_round_trip_and_refuse_other_filters() -> None:
    last = SectorID(2**63 - 1, 0)
    for ws in (None, Workspace.ONLINE, Workspace.OFFLINE):
        for miner in (None, 0, 7):
            cursor = encode_cursor(ws, miner, last)
            assert cursor.isascii() and "=" not in cursor
            assert decode_cursor(cursor, ws, miner) == last
            with pytest.raises(PageCursorError, match="filters"):
                decode_cursor(cursor, ws, 8)
    for bad in (None, 5, "", "x" * 600, "@@@", "e30"):  # e30 is {}
        with pytest.raises(PageCursorError, match="'after'"):
            decode_cursor(bad, None, None)
