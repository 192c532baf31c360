"""sqlsync's ReadBack: pages of ``<prefix>sectors`` in (miner, number) order on every backend."""

from __future__ import annotations

from sectorhooks.host import PluginHost
from sectorhooks.sync.readback import read_all
from sectorhooks_spec import SectorID, SyncedRow, dumps
from sqlsync.sqlsynckit import Feeder, expected, state


def test_pages_cover_the_sink_in_sector_order_across_miners(host: PluginHost, backend_url: str) -> None:
    states = [state(n, 1 + n % 3, miner=m) for m in (1001, 1000, 20) for n in (12, 3, 0, 7, 10)]
    with Feeder(host, backend_url, table_prefix="rb_") as f:
        f.write(*states)
        impl = host.impl("sqlsync", "sync_read_back")
        assert impl is not None
        first = impl(syncer=f.syncer, after=None, limit=4)
        assert [r.sector_id for r in first] == [SectorID(20, n) for n in (0, 3, 7, 10)]
        assert first[0] == SyncedRow(SectorID(20, 0), 1, dumps(states[12]))
        after = impl(syncer=f.syncer, after=SectorID(20, 12), limit=3)
        assert [r.sector_id for r in after] == [SectorID(1000, n) for n in (0, 3, 7)]
        assert impl(syncer=f.syncer, after=SectorID(1001, 12), limit=3) == []
        for size in (1, 4, 15, 100):
            assert read_all(impl, f.syncer, page_size=size) == expected(states) == f.rows()


def test_a_sink_never_written_reads_back_empty(host: PluginHost, backend_url: str) -> None:
    with Feeder(host, backend_url, table_prefix="never_") as f:
        impl = host.impl("sqlsync", "sync_read_back")
        assert impl is not None and impl(syncer=f.syncer, after=None, limit=10) == []
