"""iter_sectors: the one scan of all sectors (both workspaces merged in key order, streamed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv import kvplugins
from sectorhooks.state import COLLECTIONS, SectorStateManager
from sectorhooks.state.scan import SectorRecord, iter_sectors
from sectorhooks_spec import AllocatedSector, SectorID, SectorState, Workspace, dumps

MINERS = (0, 7, 1000, 10**12)


@pytest.fixture(params=["memdb", "sqlkv"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    meta: Dict[str, Any] = {"url": f"sqlite:///{tmp_path / 'kv.sqlite3'}"} if request.param == "sqlkv" else {}
    store = kvplugins.open_store(request.param, meta)
    try:
        yield store
    finally:
        store.close()


def clear(kv: Any) -> None:
    def fn(t: Any) -> None:
        for name in COLLECTIONS.values():
            coll = t.collection(name)
            for key in [k for k, _ in coll.scan(b"")]:
                coll.delete(key)

    kv.update(fn)


def write(kv: Any, sectors: Dict[SectorID, Workspace]) -> Dict[bytes, Tuple[Workspace, bytes]]:
    """Store a state for each sector in its workspace's collection; ``key -> (workspace, raw)``."""
    written: Dict[bytes, Tuple[Workspace, bytes]] = {}

    def fn(t: Any) -> None:
        for sid, ws in sectors.items():
            raw = dumps(SectorState(sid, sector_type=8, version=1 + sid.number % 5)).encode()
            t.collection(COLLECTIONS[ws]).put(sid.key.encode(), raw)
            written[sid.key.encode()] = (ws, raw)

    kv.update(fn)
    return written


SECTORS = st.dictionaries(
    st.builds(SectorID, st.sampled_from(MINERS), st.integers(0, 2**40)),
    st.sampled_from(list(Workspace)),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sectors=SECTORS,
    workspace=st.one_of(st.none(), st.sampled_from(list(Workspace))),
    miner=st.one_of(st.none(), st.sampled_from((*MINERS, 1))),
)
def test_yields_exactly_the_sectors_written_in_key_order_filtered(
    kv: Any, sectors: Dict[SectorID, Workspace], workspace: Optional[Workspace], miner: Optional[int]
) -> None:
    clear(kv)
    written = write(kv, sectors)
    want = sorted(
        (key, ws, raw)
        for key, (ws, raw) in written.items()
        if (workspace is None or ws is workspace) and (miner is None or key.startswith(b"%020d/" % miner))
    )
    got = list(iter_sectors(kv, workspace, miner))
    assert [(r.key, r.workspace, r.raw) for r in got] == want
    assert [r.sector_id.key.encode() for r in got] == [k for k, _, _ in want]
    for r in got:
        state = r.state()
        assert state.id == r.sector_id and dumps(state).encode() == r.raw


class Tracking:
    """A KV whose scan iterators record whether they were closed (the real store underneath)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.opened: List[str] = []
        self.closed: List[str] = []

    def open_collection(self, name: str) -> Any:
        tracker = self

        class Coll:
            def scan(self, prefix: bytes = b"") -> Any:
                it = tracker.inner.open_collection(name).scan(prefix)
                tracker.opened.append(name)

                class Closing:
                    def __iter__(self) -> Any:
                        return self

                    def __next__(self) -> Tuple[bytes, bytes]:
                        return next(it)  # type: ignore[no-any-return]

                    def close(self) -> None:
                        tracker.closed.append(name)
                        it.close()

                return Closing()

        return Coll()


@pytest.mark.parametrize("stop", ["break", "close", "raise", "exhaust"])
def test_the_kv_scans_are_closed_however_the_consumer_stops(kv: Any, stop: str) -> None:
    write(kv, {SectorID(1000, n): list(Workspace)[n % 2] for n in range(600)})
    tracking = Tracking(kv)
    records = iter_sectors(tracking, None, None)
    assert tracking.opened == []  # nothing is read before the first record is asked for
    seen: List[SectorRecord] = []
    if stop == "break":
        for r in records:
            seen.append(r)
            if len(seen) == 3:
                break
        del records  # the consumer drops it: CPython closes the generator at once
    elif stop == "close":
        seen.append(next(records))
        records.close()
    elif stop == "raise":
        with pytest.raises(RuntimeError):
            for r in records:
                seen.append(r)
                raise RuntimeError("consumer failed")
        del records
    else:
        seen.extend(records)
    assert sorted(tracking.opened) == sorted(COLLECTIONS.values())
    assert sorted(tracking.closed) == sorted(tracking.opened)
    assert [r.sector_id.number for r in seen] == list(range(len(seen)))


def test_the_state_manager_lists_through_it_with_the_workspace(kv: Any) -> None:
    state = SectorStateManager(kv)
    state.init_sectors([AllocatedSector(SectorID(m, n), 8) for m in (5, 3) for n in (2, 1)])
    state.finalize(SectorID(3, 2))
    got = [(ws, s.id) for ws, s in state.scan()]
    assert got == [
        (Workspace.ONLINE, SectorID(3, 1)),
        (Workspace.OFFLINE, SectorID(3, 2)),
        (Workspace.ONLINE, SectorID(5, 1)),
        (Workspace.ONLINE, SectorID(5, 2)),
    ]
    assert [s.id for s in state.list(Workspace.ONLINE, miner=5)] == [SectorID(5, 1), SectorID(5, 2)]
    assert state.state_counts() == {"": 4}
