"""A host SIGKILLed mid-run, restarted: every sink converges, no version ever goes down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import psycopg
import pymysql
import pytest
import sqlalchemy as sa

import servers
from sectorhooks.config import load_config
from sectorhooks.runtime import Runtime
from sync.helpers import sid, toml_config
from sync.sinks import event_gaps, field_differences

HERE = Path(__file__).resolve().parent
SECTORS = 60

SQLITE_TRIGGER = [
    "CREATE TABLE version_log (miner BIGINT, number BIGINT, old_v BIGINT, new_v BIGINT)",
    "CREATE TRIGGER sectors_vlog AFTER UPDATE ON sectors BEGIN "
    "INSERT INTO version_log VALUES (OLD.miner, OLD.number, OLD.version, NEW.version); END",
]
PG_TRIGGER = [
    "CREATE TABLE version_log (miner BIGINT, number BIGINT, old_v BIGINT, new_v BIGINT)",
    "CREATE FUNCTION vlog() RETURNS trigger AS $$ BEGIN "
    "INSERT INTO version_log VALUES (OLD.miner, OLD.number, OLD.version, NEW.version); RETURN NEW; END $$ "
    "LANGUAGE plpgsql",
    "CREATE TRIGGER sectors_vlog AFTER UPDATE ON sectors FOR EACH ROW EXECUTE FUNCTION vlog()",
]
MY_TRIGGER = [
    "CREATE TABLE version_log (miner BIGINT, number BIGINT, old_v BIGINT, new_v BIGINT)",
    "CREATE TRIGGER sectors_vlog AFTER UPDATE ON sectors FOR EACH ROW "
    "INSERT INTO version_log VALUES (OLD.miner, OLD.number, OLD.version, NEW.version)",
]


def host(config: Path, mode: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "crash_host.py"), str(config), mode, str(SECTORS)],
        stdout=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def install(url: str, statements: List[str]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def version_log(url: str) -> List[Tuple[int, int, int, int]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(map(int, r)) for r in conn.exec_driver_sql("SELECT * FROM version_log")]  # type: ignore[misc]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sigkilled_host_restarts_and_every_sink_converges_without_going_back(
    tmp_path: Path, pg_database: Tuple[str, str], mysql_database: Tuple[str, str]
) -> None:
    assert psycopg and pymysql and servers  # the drivers the sinks use
    urls = {"lite": f"sqlite:///{tmp_path / 'mirror.sqlite'}", "pg": pg_database[0], "my": mysql_database[0]}
    config = toml_config(
        tmp_path / "host.toml",
        tmp_path / "data",
        [(name, "sqlsync", {"url": url}) for name, url in urls.items()],
        plugins=("sqlsync",),
        sync={"BatchSize": 100},
    )
    assert host(config, "init").wait(120) == 0
    for name, statements in (("lite", SQLITE_TRIGGER), ("pg", PG_TRIGGER), ("my", MY_TRIGGER)):
        install(urls[name], statements)

    proc = host(config, "write")
    acknowledged: Dict[int, int] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            n, version = map(int, line.split())
            acknowledged[n] = version
            if sum(acknowledged.values()) - SECTORS >= 1500:  # ~1,500 changes returned to callers
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    with Runtime.open(load_config(config), start_sync=False, filestores=False) as rt:
        # every change a caller saw returned is in the KV (durable), maybe more
        for n, version in acknowledged.items():
            assert rt.state.get(sid(n)).version >= version
        # killed mid-run: the sinks are behind and must catch up from their cursors
        assert any(s["lag_events"] > 0 for s in rt.sync.status())
        rt.sync.start()
        assert rt.sync.wait_idle(120)
        assert all(s["dead_letters"] == 0 for s in rt.sync.status())
        for name, url in urls.items():
            assert field_differences(url, rt.state) == [], name
            assert event_gaps(url, rt.state) == [], name
            log = version_log(url)
            assert log, f"{name}: the audit trigger saw no updates"
            backwards = [row for row in log if row[3] < row[2]]
            assert backwards == [], f"{name}: versions went down: {backwards[:5]}"
