"""Bytes per sector (#20 item 4): the KV's collections added up, a SQLite KV's file, a sqlsync sink."""

from __future__ import annotations

from pathlib import Path

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
