"""Bytes per sector (#20 item 4): the KV's collections added up, a SQLite KV's file, a sqlsync sink;
an init's log entry holds no copy of the fresh states (its readers rebuild them byte for byte)."""

from __future__ import annotations

from pathlib import Path
from typing import List

from hypothesis import given
from hypothesis import strategies as st

from sectorhooks.state.scan import iter_sectors
from sectorhooks.state.storage import kv_usage, sink_usage, sqlite_file_bytes
from sync.helpers import make_config, open_runtime, sealing_run


def test_kv_and_sink_bytes_per_sector(tmp_path: Path) -> None:
    kv_url = f"sqlite:///{tmp_path / 'kv.sqlite3'}"
    sink = f"sqlite:///{tmp_path / 'sink.sqlite'}"
    config = make_config(
        tmp_path, syncers=[("s", "sqlsync", {"url": sink})], kv="sqlkv", plugins=("sqlsync",)
    )
    with open_runtime(config) as rt:
        sealing_run(rt.state, sectors=30, updates=1)
        assert rt.sync.wait_idle(60)
        usage = kv_usage(rt.kv, kv_url)
        records = list(iter_sectors(rt.kv))
        assert usage.sectors == 30 == len(records)
        online, offline = usage.collections["sectors/online"], usage.collections["sectors/offline"]
        assert (online.keys, offline.keys) == (15, 15)  # sealing_run finalizes every other sector
        assert online.bytes + offline.bytes == sum(len(r.key) + len(r.raw) for r in records)
        assert (
            usage.physical_bytes == sqlite_file_bytes(kv_url)
            and usage.physical_bytes > usage.logical_bytes > 0
        )
        report = usage.as_dict()
        assert report["state_bytes_per_sector"] == round((online.bytes + offline.bytes) / 30, 1)
        assert report["physical_bytes_per_sector"] == round(usage.physical_bytes / 30, 1)
        got = sink_usage(sink)
        assert got["rows"] == 30 and set(got["tables"]) == {"sectors", "sector_events"}
        assert got["bytes"] > 0
    assert sink_usage(f"sqlite:///{tmp_path / 'sink.sqlite'}", table_prefix="none_") == {
        "rows": 0,
        "bytes": 0,
        "tables": {},
    }


def test_an_init_entry_stores_the_fresh_states_once(tmp_path: Path) -> None:
    from sectorhooks.changelog import parse
    from sectorhooks.changelog.format import LOG
    from sectorhooks_spec import AllocatedSector, SectorID

    with open_runtime(make_config(tmp_path, kv="sqlkv", plugins=())) as rt:
        rt.state.init_sectors(
            [AllocatedSector(SectorID(1000 + n % 2, n), 8 if n % 3 else 9) for n in range(25)]
        )
        entries = list(rt.kv.open_collection(LOG).scan(b""))
        assert len(entries) == 1
        seq, raw = entries[0]
        assert b"\n" not in bytes(raw)  # the header only: the states are in the KV
        ev = parse(int(seq), bytes(raw))
        kv = {str(r.sector_id): r.text() for r in iter_sectors(rt.kv)}
        assert {str(a.id): sj for a, sj in zip(ev.allocated(), ev.states_json)} == kv  # byte for byte


@given(
    t=st.floats(min_value=0, max_value=1e18, allow_nan=False),
    proofs=st.lists(st.integers(0, 2**31), min_size=1, max_size=5),
    versions=st.lists(st.integers(1, 3), min_size=5, max_size=5),
)
def test_rebuilt_init_lines_equal_dumps_of_each_fresh_state(
    t: float, proofs: List[int], versions: List[int]
) -> None:
    from sectorhooks.changelog.events import fresh_states_json
    from sectorhooks_spec import SectorID, SectorState, dumps

    items = [(1000 + i, 10**12 + i, p) for i, p in enumerate(proofs)]
    vs = [versions[0]] * len(items) if versions[1] != 3 else versions[: len(items)]
    header = {"e": "init", "a": [list(it) for it in items], "vs": vs, "w": "online", "t": t}
    want = [
        dumps(SectorState(id=SectorID(m, n), sector_type=p, version=v, updated_at=t))
        for (m, n, p), v in zip(items, vs)
    ]
    assert fresh_states_json(header) == want
