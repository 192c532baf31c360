"""The real thing: sqlsync sinks on SQLite, PostgreSQL and MariaDB, fed through the change log."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any, Tuple

import psycopg
import pytest

import servers
from sectorhooks_spec import AllocatedSector, LatestState, PreCommitInfo
from support import wait_for
from sync.helpers import make_config, open_runtime, sealing_run, sid
from sync.sinks import event_gaps, field_differences, sector_rows


def three_sinks(tmp_path: Path, pg: str, my: str) -> Any:
    lite = f"sqlite:///{tmp_path / 'mirror.sqlite'}"
    syncers = [
        ("lite", "sqlsync", {"url": lite}),
        ("pg", "sqlsync", {"url": pg}),
        ("my", "sqlsync", {"url": my}),
    ]
    return make_config(tmp_path, syncers=syncers, kv="sqlkv", plugins=("sqlsync",)), {
        "lite": lite,
        "pg": pg,
        "my": my,
    }


def test_fan_out_sqlite_postgres_mariadb_equal_the_kv_field_by_field(
    tmp_path: Path, pg_database: Tuple[str, str], mysql_database: Tuple[str, str]
) -> None:
    config, urls = three_sinks(tmp_path, pg_database[0], mysql_database[0])
    with open_runtime(config) as rt:
        sealing_run(rt.state, sectors=40, updates=4)
        rt.state.update(sid(3), pre=PreCommitInfo("bagboea4r", "baga6ea4s"), latest_state=LatestState("PC2"))
        rt.state.restore(sid(4))
        assert rt.sync.wait_idle(60)
        for name, url in urls.items():
            assert field_differences(url, rt.state) == [], name
            assert event_gaps(url, rt.state) == [], name
            assert rt.sync.verify(name) == []
        row = sector_rows(urls["pg"])[(1000, 3)]
        assert (row["comm_r"], row["comm_d"], row["state_name"], row["workspace"]) == (
            "bagboea4r",
            "baga6ea4s",
            "PC2",
            "online",
        )
        assert sector_rows(urls["my"])[(1000, 4)]["workspace"] == "online"  # finalized, then restored


def _block_pg(name: str, allow: bool) -> None:
    with psycopg.connect(servers.pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


@pytest.mark.slow
def test_postgres_down_during_5000_changes_others_keep_up_then_it_catches_up_exactly(
    tmp_path: Path, pg_database: Tuple[str, str], mysql_database: Tuple[str, str]
) -> None:
    config, urls = three_sinks(tmp_path, pg_database[0], mysql_database[0])
    sectors, writers = 200, 4
    with open_runtime(config) as rt:
        rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(sectors)])
        assert rt.sync.wait_idle(60)  # tables exist, connections open

        def write(k: int, rounds: range) -> None:
            for r in rounds:
                for n in range(k, sectors, writers):
                    rt.state.update(sid(n), latest_state=LatestState(f"R{r}", worker=f"w{k}"))

        def run(rounds: range) -> None:
            ts = [threading.Thread(target=write, args=(k, rounds)) for k in range(writers)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(300)

        run(range(0, 5))  # 1,000 changes with every sink up
        _block_pg(pg_database[1], allow=False)
        try:
            run(range(5, 25))  # 4,000 more while PostgreSQL refuses connections
            head = rt.state.log.head()
            assert head == 1 + 25 * sectors
            for name in ("lite", "my"):
                wait_for(lambda n=name: rt.sync.dispatcher(n).cursor == head, 120, f"{name} keeps up")
            pg = rt.sync.dispatcher("pg")
            assert pg.cursor < head and pg.state == "retrying"
            status = {s["name"]: s for s in rt.sync.status()}
            assert status["pg"]["lag_events"] > 0 and status["pg"]["dead_letters"] == 0
            assert "pg" in status and status["pg"]["last_error"]
        finally:
            _block_pg(pg_database[1], allow=True)
        assert rt.sync.wait_idle(120)
        for name, url in urls.items():
            assert rt.sync.records.count_dead(name) == 0
            assert field_differences(url, rt.state) == [], name
            assert event_gaps(url, rt.state) == [], name  # nothing lost, nothing doubled
            assert len(sector_rows(url)) == sectors


def test_a_sqlite_sinks_worker_process_killed_mid_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mirror.sqlite'}"
    config = make_config(
        tmp_path, syncers=[("lite", "sqlsync", {"url": url})], kv="sqlkv", plugins=("sqlsync",)
    )
    sectors, writers = 100, 4
    with open_runtime(config) as rt:
        rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(sectors)])
        assert rt.sync.wait_idle(60)
        runner = rt.sync.dispatcher("lite").runner
        assert rt.sync.wait_ready(60)
        first = runner.pid
        killed = threading.Event()

        def write(k: int) -> None:
            for r in range(10):
                for n in range(k, sectors, writers):
                    rt.state.update(sid(n), latest_state=LatestState(f"R{r}", worker=f"w{k}"))
                if k == 0 and r == 4:
                    os.kill(first, signal.SIGKILL)
                    killed.set()

        threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert killed.is_set()
        assert rt.sync.wait_idle(60)
        assert runner.pid not in (None, first)
        assert rt.sync.records.count_dead("lite") == 0
        assert field_differences(url, rt.state) == []
        assert event_gaps(url, rt.state) == []  # nothing lost, nothing doubled
