"""Refused rows are isolated, transient failures retried, a down database fails the whole flush."""

from __future__ import annotations

import importlib
import threading
from typing import Any, List, Optional

import pytest

import servers
from sectorhooks.host import PluginHost
from sectorhooks_spec import RejectedChanges, SectorhooksError
from sqlsync.sqlsynckit import Feeder, evolve, expected, query, state
from support import wait_for


class FlushThread(threading.Thread):
    """Runs one Flush in the background and keeps its outcome."""

    def __init__(self, feeder: Feeder):
        super().__init__(daemon=True)
        self.feeder = feeder
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.feeder.flush()
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Optional[BaseException]:
        self.join(60)
        assert not self.is_alive(), "flush did not finish"
        return self.error


def pg_admin(sql: str) -> None:
    """Run a statement that cannot run in a transaction (CREATE/DROP/ALTER DATABASE)."""
    import psycopg

    with psycopg.connect(servers.pg_admin_dsn(), autocommit=True) as admin:
        admin.execute(sql)


def _backend(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0]


def _forbid_poison(url: str) -> None:
    if _backend(url) == "sqlite":
        for op in ("INSERT", "UPDATE"):
            query(
                url,
                f"CREATE TRIGGER no_poison_{op.lower()} BEFORE {op} ON sectors "
                "WHEN NEW.abort_reason = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned sector'); END",
            )
    else:
        query(url, "ALTER TABLE sectors ADD CONSTRAINT no_poison CHECK (abort_reason <> 'poison')")


def _allow_poison(url: str) -> None:
    if _backend(url) == "sqlite":
        query(url, "DROP TRIGGER no_poison_insert")
        query(url, "DROP TRIGGER no_poison_update")
    else:
        query(url, "ALTER TABLE sectors DROP CONSTRAINT no_poison")


# --- rows the database refuses ------------------------------------------------------------------


def test_a_refused_row_is_isolated_and_every_other_row_written(host: PluginHost, backend_url: str):
    f = Feeder(host, backend_url, batch_size=7)
    first = state(0, 1)
    f.write(first)
    _forbid_poison(backend_url)
    good = [state(n, 1) for n in range(1, 40) if n != 17]
    bad = [state(17, 1), state(17, 2, abort_reason="poison"), state(17, 3, abort_reason="poison")]
    for s in [*good[:10], *bad, *good[10:], evolve(first)]:
        f.update(s)
    with pytest.raises(RejectedChanges) as info:
        f.flush()
    refused = info.value.rejected
    assert [(r.sector, r.version) for r in refused] == [("s-t01000-17", v) for v in (1, 2, 3)]
    assert all("poison" in r.reason for r in refused), refused[0].reason
    assert f.rows() == expected([*good, evolve(first)])  # everything else is there
    assert ("s-t01000-17", 1) not in f.events() and ("s-t01000-5", 1) in f.events()

    _allow_poison(backend_url)  # fixed; the host re-delivers the dead letters (`sync retry`)
    for s in bad:
        f.update(s)
    f.flush()
    assert f.rows() == expected([*good, *bad, evolve(first)])
    assert {v for (sid, v) in f.events() if sid == "s-t01000-17"} == {1, 2, 3}


def test_mariadb_refuses_a_too_long_value_instead_of_truncating_it(host: PluginHost, mysql_database):
    url = mysql_database[0]
    f = Feeder(host, url)
    f.write(state(1, 1))
    query(url, "ALTER TABLE sectors MODIFY abort_reason VARCHAR(16)")
    with pytest.raises(RejectedChanges) as info:
        f.write(state(2, 1, abort_reason="x" * 17), state(3, 1, abort_reason="short enough"))
    assert [(r.sector, r.version) for r in info.value.rejected] == [("s-t01000-2", 1)]
    assert "too long" in info.value.rejected[0].reason.lower()
    assert f.rows() == expected([state(1, 1), state(3, 1, abort_reason="short enough")])


# --- transient failures -------------------------------------------------------------------------


def test_postgres_connection_killed_mid_flush_is_retried(host: PluginHost, pg_database, caplog):
    import psycopg

    url, name = pg_database
    f = Feeder(host, url, retries=3)
    f.write(state(0, 1))
    batch = [state(n, 1) for n in range(1, 20)]
    with psycopg.connect(servers.pg_admin_dsn(name)) as admin:
        admin.execute("LOCK TABLE sectors IN ACCESS EXCLUSIVE MODE")
        for s in batch:
            f.update(s)
        flusher = FlushThread(f)
        flusher.start()
        blocked = _lock_waiters(admin, name, "the flush to wait on the lock")
        admin.execute("SELECT pg_terminate_backend(%s)", (blocked[0][0],))
        admin.commit()  # releases the lock
    assert flusher.outcome() is None
    assert f.rows() == expected([state(0, 1), *batch])
    assert any("transient error" in r.getMessage() for r in caplog.records)


def test_mariadb_connection_killed_mid_flush_is_retried(host: PluginHost, mysql_database, caplog):
    import pymysql

    url, name = mysql_database
    f = Feeder(host, url, retries=3)
    f.write(state(0, 1))
    batch = [state(n, 1) for n in range(1, 20)]
    server = {"host": servers.MY_HOST, "port": servers.MY_PORT, "user": servers.MY_USER}
    locker = pymysql.connect(database=name, **server)
    watcher = pymysql.connect(autocommit=True, **server)
    try:
        locker.cursor().execute("LOCK TABLES sectors WRITE")
        for s in batch:
            f.update(s)
        flusher = FlushThread(f)
        flusher.start()

        def blocked() -> List[Any]:
            cur = watcher.cursor()
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST"
                " WHERE DB = %s AND STATE LIKE 'Waiting for table%%'",
                (name,),
            )
            return list(cur.fetchall())

        victim = wait_for(blocked, 30, "the flush to wait on the table lock")[0][0]
        watcher.cursor().execute(f"KILL {int(victim)}")
        locker.cursor().execute("UNLOCK TABLES")
    finally:
        locker.close()
        watcher.close()
    assert flusher.outcome() is None
    assert f.rows() == expected([state(0, 1), *batch])
    assert any("transient error" in r.getMessage() for r in caplog.records)


def _kill_all(url: str, name: str) -> int:
    if _backend(url) == "postgresql":
        import psycopg

        with psycopg.connect(servers.pg_admin_dsn(), autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
        return len(rows)
    import pymysql

    conn = pymysql.connect(host=servers.MY_HOST, port=servers.MY_PORT, user=servers.MY_USER, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s", (name,))
        ids = [r[0] for r in cur.fetchall()]
        for i in ids:
            cur.execute(f"KILL {int(i)}")
        return len(ids)
    finally:
        conn.close()


@pytest.fixture(params=["postgresql", "mariadb"])
def server_db(request: pytest.FixtureRequest):
    """(url, name) of a fresh database on each server backend."""
    return request.getfixturevalue("pg_database" if request.param == "postgresql" else "mysql_database")


def test_connections_killed_between_flushes_do_not_fail_the_next_flush(host: PluginHost, server_db):
    url, name = server_db
    f = Feeder(host, url)
    f.write(state(1, 1))
    assert _kill_all(url, name) >= 1  # the sink's pooled connection is among them
    f.write(state(1, 2), state(2, 1))
    assert f.rows() == expected([state(1, 2), state(2, 1)])


def test_database_dropped_and_recreated_gets_its_tables_back(host: PluginHost, server_db):
    url, name = server_db
    f = Feeder(host, url)
    f.write(state(1, 1))
    if _backend(url) == "postgresql":
        pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
        pg_admin(f'CREATE DATABASE "{name}"')
    else:
        query(servers.mysql_url(name), f"DROP DATABASE `{name}`")
        query(servers.mysql_url(""), f"CREATE DATABASE `{name}`")
    f.write(state(1, 2))  # host re-delivered from its cursor: the new tables start from here
    assert f.rows() == expected([state(1, 2)])


# --- the database is down: nothing of the batch is written --------------------------------------


def test_database_lost_mid_transaction_leaves_nothing_half_written(host: PluginHost, pg_database):
    import psycopg

    url, name = pg_database
    f = Feeder(host, url, retries=1)
    f.write(state(0, 1))
    batch = [state(n, 1) for n in range(1, 30)]
    with psycopg.connect(servers.pg_admin_dsn(name)) as admin:
        admin.execute("LOCK TABLE sector_events IN ACCESS EXCLUSIVE MODE")  # sectors gets written first
        for s in batch:
            f.update(s)
        flusher = FlushThread(f)
        flusher.start()
        blocked = _lock_waiters(admin, name, "the flush to wait on sector_events")
        pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(%s)", (blocked[0][0],))
        admin.commit()
    error = flusher.outcome()
    assert isinstance(error, SectorhooksError) and "unavailable after 1 attempt" in str(error)
    pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert f.rows() == expected([state(0, 1)])  # the upserts of the failed transaction were rolled back
    for s in batch:  # the host re-delivers the batch: cursor did not move
        f.update(s)
    f.flush()
    assert f.rows() == expected([state(0, 1), *batch])
    assert len(f.events()) == 1 + len(batch)


def test_unreachable_database_fails_the_flush_with_a_clear_error(host: PluginHost):
    f = Feeder(host, "postgresql+psycopg://sink:secret@127.0.0.1:1/nowhere", retries=2)
    f.update(state(1, 1))
    with pytest.raises(SectorhooksError) as info:
        f.flush()
    text = str(info.value)
    assert f.syncer.name in text and "2 attempt(s)" in text and "1 change(s) not written" in text
    assert "secret" not in text and "sink:***@" in text


# --- classification of driver errors ------------------------------------------------------------


def _classify(host: PluginHost, orig: BaseException, wrapper: Any = None) -> str:
    import sqlalchemy as sa

    assert host.records["sqlsync"].bound is not None  # the plugin package is loaded
    sink = importlib.import_module("sectorhooks_plugins.sqlsync.sink")
    wrapper = wrapper or sa.exc.OperationalError
    return sink.classify(wrapper("INSERT ...", {}, orig))  # type: ignore[no-any-return]


def test_driver_errors_are_sorted_into_row_transient_and_fatal(host: PluginHost):
    import sqlite3

    import psycopg.errors as pg
    import pymysql.err as my
    import sqlalchemy as sa

    check_failed = my.OperationalError(4025, "CONSTRAINT `no_poison` failed", sqlstate="23000")
    assert _classify(host, check_failed) == "row"  # pymysql calls it operational: the errno decides
    assert _classify(host, my.DataError(1406, "Data too long for column"), sa.exc.DataError) == "row"
    assert _classify(host, my.OperationalError(1213, "Deadlock found", sqlstate="40001")) == "transient"
    assert _classify(host, my.OperationalError(2013, "Lost connection to server")) == "transient"
    assert _classify(host, my.ProgrammingError(1064, "syntax error"), sa.exc.ProgrammingError) == "fatal"
    assert _classify(host, pg.SerializationFailure("could not serialize")) == "transient"
    assert _classify(host, pg.DeadlockDetected("deadlock detected")) == "transient"
    assert _classify(host, pg.CheckViolation("violates check"), sa.exc.IntegrityError) == "row"
    assert _classify(host, pg.StringDataRightTruncation("too long"), sa.exc.DataError) == "row"
    assert _classify(host, pg.SyntaxError("syntax"), sa.exc.ProgrammingError) == "fatal"
    assert _classify(host, sqlite3.IntegrityError("CHECK constraint failed"), sa.exc.IntegrityError) == "row"
    assert _classify(host, sqlite3.OperationalError("database is locked")) == "transient"


def _lock_waiters(admin: Any, name: str, what: str) -> List[Any]:
    """Wait until another session of database ``name`` waits on a lock; its (pid,) rows."""
    return wait_for(
        lambda: admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall(),
        timeout=30,
        what=what,
    )
