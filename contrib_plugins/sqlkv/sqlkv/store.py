"""SQLStore: the KVStore protocol over one SQL table, through SQLAlchemy Core.

Connections run in driver autocommit mode and the store issues ``BEGIN``/``COMMIT`` itself, so
each transaction gets exactly the isolation it asks for:

============  ==================================  =========================================
backend       ``update``                          ``view``
============  ==================================  =========================================
SQLite        ``BEGIN IMMEDIATE``: one writer at  ``BEGIN`` (WAL snapshot, never blocks
              a time, waits up to lock_timeout    the writer)
PostgreSQL    ``SERIALIZABLE`` (SSI): the loser   ``REPEATABLE READ, READ ONLY`` snapshot
              of a race gets SQLSTATE 40001
MariaDB       ``REPEATABLE READ`` with every      ``WITH CONSISTENT SNAPSHOT, READ ONLY``
              read ``FOR UPDATE`` (next-key
              locks): deadlocks are the conflicts
============  ==================================  =========================================

SQLite writers of one process also take a process-wide lock first (a queue, woken the moment the
previous writer commits): only writers of *other* processes meet SQLite's busy handler, which
sleeps 1, 2, 5, 10... ms between tries however soon the lock frees. Under a steady writer (the
state manager's group commit) a cursor save or a log trim would otherwise stall it for those
sleeps. The holder of that lock writes on one kept connection (out of the pool while the store
is open): SQLite keeps a connection's page cache only while no *other* connection wrote, so a
pooled writer would re-read from the WAL every page the last writer touched, and pay the pool's
checkout and reset on every transaction. A failed write transaction gives it back (or discards
it) and the next writer takes a fresh one.

Conflicts (40001/40P01/55P03, InnoDB 1213/1205, SQLite busy) become ``TransactionConflict``;
a lost connection ``StoreUnavailable`` before the commit and ``CommitOutcomeUnknown`` during it.

Writes inside a transaction are buffered and sent with one ``executemany`` per collection at
commit (or every ``FLUSH_AT`` writes, or before a scan), so a batch of puts costs what the
driver's executemany costs. Statements are compiled once per dialect by SQLAlchemy Core and run
on the pooled DBAPI connection's cursor: no per-row parameter processing and no per-execute
SQLAlchemy machinery on the hot path. A scan is a run of ``WHERE collection = ? AND key > ?
AND key < ? ORDER BY key LIMIT ?`` pages on the primary key (``SCAN_FIRST`` rows, doubling to
``SCAN_MAX``, never more than what is left of the scan's ``limit``): ``after`` is the first page's
lower bound. A lost connection retires the pool's older connections
too (as SQLAlchemy does), so a restarted server costs one failed call, not one per connection.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, TypeVar

import sqlalchemy as sa
import tenacity
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql as my

from sectorhooks_spec import CommitOutcomeUnknown, Guard, KVError, StoreUnavailable, TransactionConflict
from sectorhooks_spec.backend import (
    EXACT_UP_TO,
    MAX_KEY_SIZE,
    MAX_PARAMS,
    GetFromPeek,
    MultiRow,
    check_collection_name,
    check_key,
    check_value,
    scan_range,
)

from . import MMAP_SIZE

PLUGIN = "sqlkv"
#: Buffered writes are sent to the database once this many (or this many value bytes) are pending.
FLUSH_AT, FLUSH_BYTES = 5000, 16 << 20
#: First and largest page of a scan (pages double: early close stays cheap, long scans fast).
SCAN_FIRST, SCAN_MAX = 128, 4096
#: Plain (non-transaction) operations retry a conflict this many times, within lock_timeout,
#: waiting a random time of up to 2, 4, 8... ms (at most 100 ms) between tries.
PLAIN_ATTEMPTS = 5
_PLAIN_BACKOFF = tenacity.wait_random_exponential(multiplier=0.002, max=0.1)

T = TypeVar("T")
Item = Tuple[bytes, bytes]

_BEGIN = {
    "sqlite": {False: "BEGIN", True: "BEGIN IMMEDIATE"},
    "postgresql": {
        False: "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        True: "BEGIN ISOLATION LEVEL SERIALIZABLE",
    },
    "mysql": {False: "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", True: "START TRANSACTION"},
}
_PG_CONFLICT = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock timeout
_MY_CONFLICT = frozenset({1205, 1213})  # lock wait timeout, deadlock


def _b(value: Any) -> bytes:
    return value if type(value) is bytes else bytes(value)


class _Conn:
    """A pooled DBAPI connection and its cursor, for one operation or one transaction.

    Statements run on the driver's cursor directly: SQLAlchemy's per-execute machinery costs more
    than SQLite itself for a point read. SQLAlchemy still provides the engine, the pool, the
    dialects, the DDL and the compiled statements.
    """

    __slots__ = ("cur", "fairy")

    def __init__(self, fairy: Any):
        self.fairy = fairy
        self.cur = fairy.cursor()

    def invalidate(self) -> None:
        """Discard the connection instead of pooling it (its state is unknown)."""
        try:
            if self.fairy.is_valid:
                self.fairy.invalidate()
        except Exception:
            pass

    def release(self) -> None:
        """Back to the pool; a broken connection is discarded, never raised about."""
        try:
            self.cur.close()
        except Exception:
            self.invalidate()
        try:
            self.fairy.close()
        except Exception:
            self.invalidate()


def _execute(conn: _Conn, stmt: _Stmt, columns: Tuple[str, ...], rows: List[Tuple[Any, ...]]) -> None:
    """One row: execute (psycopg's executemany enters pipeline mode, slower for one); more:
    multi-row statements on SQLite (see ``sectorhooks_spec.backend.MultiRow``), else executemany."""
    params = stmt.bind_rows(columns, rows)
    if len(params) == 1:
        conn.cur.execute(stmt.sql, params[0])
    elif stmt.multi is not None:
        stmt.multi.execute(conn.cur, params)
    else:
        conn.cur.executemany(stmt.sql, params)


class _Stmt:
    """A Core statement compiled once for a dialect, bound by name, run as driver SQL."""

    __slots__ = ("defaults", "multi", "names", "positional", "sql")

    def __init__(self, stmt: Any, dialect: Any, multi_row: bool = False):
        compiled = stmt.compile(dialect=dialect)
        self.sql: str = compiled.string
        self.positional = bool(dialect.positional)
        self.names: Tuple[str, ...] = tuple(compiled.positiontup or ())
        self.defaults = {k: v for k, v in compiled.params.items() if v is not None}
        # SQLite inserts of many rows: a few multi-row statements instead of a step per row.
        self.multi = MultiRow(self.sql, len(self.names)) if multi_row and dialect.name == "sqlite" else None

    def bind(self, values: Dict[str, Any]) -> Any:
        if self.positional:
            return tuple(values[n] if n in values else self.defaults[n] for n in self.names)
        if self.defaults:
            return {**self.defaults, **values}
        return values

    def bind_rows(self, columns: Tuple[str, ...], rows: List[Tuple[Any, ...]]) -> List[Any]:
        """Parameters for executemany from tuples ordered as ``columns``."""
        if self.positional:
            if self.names == columns:
                return rows
            index = [columns.index(n) for n in self.names]
            return [tuple(r[i] for i in index) for r in rows]
        return [dict(zip(columns, r)) for r in rows]


def _make_table(name: str) -> sa.Table:
    blob = sa.LargeBinary()
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(
            "collection",
            sa.String(128).with_variant(
                my.VARCHAR(128, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
            ),
            primary_key=True,
        ),
        sa.Column("key", blob.with_variant(my.VARBINARY(MAX_KEY_SIZE), "mysql", "mariadb"), primary_key=True),
        sa.Column("value", blob.with_variant(my.LONGBLOB(), "mysql", "mariadb"), nullable=False),
        sqlite_with_rowid=False,
        mysql_engine="InnoDB",
    )


class _DeleteMany:
    """SQLite: many keys of one collection deleted by a few ``key IN (...)`` statements.

    ``executemany`` would run one step per key, releasing the GIL around each (two thread
    switches per key in a busy host: a log trim of 1000 entries held the write lock ~30 ms).
    Chunks of up to ``MAX_KEYS`` keys; a shorter chunk is padded to a power of two by repeating
    its last key (deleting a key twice is deleting it once), so few statement texts exist.
    """

    MAX_KEYS = 512

    def __init__(self, table: sa.Table, dialect: Any):
        q = dialect.identifier_preparer
        self._head = (
            f"DELETE FROM {q.format_table(table)} WHERE {q.quote('collection')} = ? AND {q.quote('key')} IN ("
        )
        self._sql: Dict[int, str] = {}

    def execute(self, cur: Any, name: str, keys: List[bytes]) -> None:
        for i in range(0, len(keys), self.MAX_KEYS):
            part = keys[i : i + self.MAX_KEYS]
            size = 1 << (len(part) - 1).bit_length()
            part = part + [part[-1]] * (size - len(part))
            sql = self._sql.get(size)
            if sql is None:
                sql = self._sql[size] = self._head + ", ".join(["?"] * size) + ")"
            cur.execute(sql, (name, *part))


class _Statements:
    """Every statement the store runs, compiled for one dialect."""

    def __init__(self, table: sa.Table, dialect: Any, kind: str):
        self._table, self._dialect, self._kind = table, dialect, kind
        c = table.c
        key_eq = (c.collection == sa.bindparam("c")) & (c.key == sa.bindparam("k"))
        get = sa.select(c.value).where(key_eq)
        self.get = _Stmt(get, dialect)
        self.get_lock = _Stmt(get.with_for_update(), dialect) if kind == "mysql" else self.get
        self.delete = _Stmt(sa.delete(table).where(key_eq), dialect)
        self.delete_many = _DeleteMany(table, dialect) if kind == "sqlite" else None
        self.upsert = _Stmt(self._upsert(), dialect, multi_row=True)
        self._scans: Dict[Tuple[bool, bool, bool], _Stmt] = {}
        # SQLite: rows upserted only while a guard row (the 3 parameters after them: collection,
        # key, expected value) holds that value; in autocommit one transaction, rowcount 0 if not.
        self.put_if: Optional[MultiRow] = None
        if kind == "sqlite":
            q = dialect.identifier_preparer.quote
            t, c, k, v = q(table.name), q("collection"), q("key"), q("value")
            self.put_if = MultiRow(
                f"INSERT INTO {t} ({c}, {k}, {v}) SELECT column1, column2, column3 FROM (VALUES (?, ?, ?)) "
                f"WHERE (SELECT {v} FROM {t} WHERE {c} = ? AND {k} = ?) IS ? "
                f"ON CONFLICT ({c}, {k}) DO UPDATE SET {v} = excluded.{v}",
                3,
                max_params=MAX_PARAMS - 3,
            )

    def _upsert(self) -> Any:
        t = self._table
        values: Dict[str, Any] = {
            "collection": sa.bindparam("c"),
            "key": sa.bindparam("k"),
            "value": sa.bindparam("v"),
        }
        if self._kind == "mysql":
            my_ins = my.insert(t).values(values)
            return my_ins.on_duplicate_key_update(value=my_ins.inserted.value)
        if self._kind == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            ins: Any = pg_insert(t).values(values)
        else:
            from sqlalchemy.dialects.sqlite import insert as lite_insert

            ins = lite_insert(t).values(values)
        return ins.on_conflict_do_update(
            index_elements=[t.c.collection, t.c.key], set_={"value": ins.excluded.value}
        )

    def scan(self, inclusive: bool, bounded: bool, lock: bool) -> _Stmt:
        """``key >= lo`` or ``key > lo``, optionally ``key < hi``, ``FOR UPDATE`` on MariaDB writes."""
        lock = lock and self._kind == "mysql"
        stmt = self._scans.get((inclusive, bounded, lock))
        if stmt is None:
            c = self._table.c
            lo: Any = sa.bindparam("lo")
            q = sa.select(c.key, c.value).where(
                c.collection == sa.bindparam("c"), c.key >= lo if inclusive else c.key > lo
            )
            if bounded:
                q = q.where(c.key < sa.bindparam("hi"))
            q = q.order_by(c.key).limit(sa.bindparam("n"))
            if lock:
                q = q.with_for_update()
            stmt = self._scans[(inclusive, bounded, lock)] = _Stmt(q, self._dialect)
        return stmt


#: Database driver modules of SQLAlchemy URLs, and the extra of ``sectorhooks`` that installs each.
DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql", "MySQLdb": "mysql"}


def _engine(url: Any, **kwargs: Any) -> sa.Engine:
    """``sa.create_engine``; a driver that is not installed is named with the command to install it."""
    try:
        return sa.create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        extra = DRIVER_EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        raise ModuleNotFoundError(
            f"{exc} (the database driver of {sa.engine.make_url(url).drivername} URLs is not installed: "
            f"pip install 'sectorhooks[{extra}]')",
            name=exc.name,
        ) from None


def _make_engine(
    url: str,
    pool_size: int,
    max_overflow: int,
    pool_timeout: float,
    connect_timeout: int,
    lock_timeout: float,
    synchronous: str,
    mmap_size: int,
) -> Tuple[sa.Engine, str]:
    u = sa.engine.make_url(url)
    kind = {"mariadb": "mysql"}.get(u.get_backend_name(), u.get_backend_name())
    kw: Dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",  # the store sends BEGIN/COMMIT/ROLLBACK itself
        "skip_autocommit_rollback": True,  # so no extra ROLLBACK round trip per checkout
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout,
    }
    if kind == "sqlite":
        kw["connect_args"] = {"timeout": lock_timeout, "check_same_thread": False}
    elif kind == "postgresql":
        kw["connect_args"] = {
            "connect_timeout": connect_timeout,
            "application_name": "sectorhooks-sqlkv",
            "options": f"-c lock_timeout={max(1, int(lock_timeout * 1000))}",
        }
    else:
        kw["connect_args"] = {"connect_timeout": connect_timeout}
    engine = _engine(u, **kw)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            if kind == "sqlite":
                mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise KVError(
                        f"plugin {PLUGIN!r}: SQLite refused WAL mode (got {mode!r}) for {u.database}"
                    )
                cur.execute(f"PRAGMA synchronous={synchronous}")
                cur.execute(f"PRAGMA mmap_size={int(mmap_size)}")
            elif kind == "mysql":
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute(f"SET SESSION innodb_lock_wait_timeout = {max(1, math.ceil(lock_timeout))}")
        finally:
            cur.close()

    return engine, kind


class SQLStore:
    """The store: one engine, one table ``(collection, key, value)``."""

    def __init__(
        self,
        url: str,
        table: str = "sectorhooks_kv",
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 10.0,
        connect_timeout: int = 10,
        lock_timeout: float = 10.0,
        synchronous: str = "NORMAL",
        mmap_size: int = MMAP_SIZE,
    ):
        self.engine, self.kind = _make_engine(
            url, pool_size, max_overflow, pool_timeout, connect_timeout, lock_timeout, synchronous, mmap_size
        )
        self.where = f"{self.engine.url.render_as_string(hide_password=True)} table {table}"
        self.lock_timeout = lock_timeout
        self.pool_timeout = pool_timeout
        self.table = _make_table(table)
        self._begin = _BEGIN[self.kind]
        # One SQLite writer at a time in this process, queued here (see the module doc).
        self._writer: Optional[threading.Lock] = threading.Lock() if self.kind == "sqlite" else None
        self._collections: Dict[str, SQLCollection] = {}
        self._kept: Optional[_Conn] = None  # SQLite: the writer's connection, between transactions
        self._closed = False
        self._create_table()
        self.sql = _Statements(self.table, self.engine.dialect, self.kind)  # dialect now initialised
        self._dbapi_error: Any = self.engine.dialect.loaded_dbapi.Error

    def __repr__(self) -> str:
        return f"<sqlkv {self.where}>"

    # --- plumbing -------------------------------------------------------------------

    def _create_table(self) -> None:
        try:
            with self._errors("create table"):
                try:
                    self.table.create(self.engine, checkfirst=True)
                except sa_exc.DBAPIError:  # another process created it in between: fine if it is there
                    if not sa.inspect(self.engine).has_table(self.table.name):
                        raise
        except BaseException:
            self.engine.dispose()
            raise

    def _map(self, orig: BaseException, phase: str, lost: bool) -> Exception:
        """The SPI error for a driver error ``orig`` raised during ``phase``."""
        if self.kind == "postgresql":
            conflict = getattr(orig, "sqlstate", None) in _PG_CONFLICT
        elif self.kind == "mysql":
            args: Sequence[Any] = getattr(orig, "args", ())
            conflict = bool(args) and args[0] in _MY_CONFLICT
        else:
            text = str(orig).lower()
            conflict = "database is locked" in text or "database table is locked" in text or "busy" in text
        detail = f"{type(orig).__name__}: {str(orig).strip()}"
        if conflict:
            return TransactionConflict(
                f"plugin {PLUGIN!r} ({self.where}): {phase} lost to a concurrent transaction ({detail}); "
                "nothing was written, retry"
            )
        dbapi = self.engine.dialect.loaded_dbapi
        if lost or isinstance(orig, (dbapi.OperationalError, dbapi.InterfaceError)):
            if phase == "commit":
                return CommitOutcomeUnknown(
                    f"plugin {PLUGIN!r} ({self.where}): connection lost during COMMIT ({detail}); "
                    "the transaction may or may not have been applied"
                )
            return StoreUnavailable(
                f"plugin {PLUGIN!r} ({self.where}): database unavailable during {phase} ({detail}); "
                "nothing was committed"
            )
        return KVError(f"plugin {PLUGIN!r} ({self.where}): {phase} failed ({detail})")

    def _lost(self, conn: _Conn, e: Any) -> bool:
        """Whether ``e`` means the connection is gone; if so, retire it and every older pooled one."""
        try:
            lost = bool(self.engine.dialect.is_disconnect(e, conn.fairy.dbapi_connection, conn.cur))
        except Exception:
            lost = True
        if lost:
            invalidate_pool = getattr(self.engine.pool, "_invalidate", None)  # what SQLAlchemy itself does
            try:
                if invalidate_pool is not None:
                    invalidate_pool(conn.fairy, e)
                else:  # pragma: no cover - other SQLAlchemy versions
                    conn.fairy.invalidate(e)
            except Exception:
                pass
        return lost

    @contextmanager
    def _errors(self, phase: str, conn: Optional[_Conn] = None) -> Iterator[None]:
        try:
            yield
        except sa_exc.DBAPIError as e:  # raised through SQLAlchemy: connecting, DDL
            raise self._map(e.orig or e, phase, e.connection_invalidated) from e
        except sa_exc.TimeoutError as e:
            raise StoreUnavailable(
                f"plugin {PLUGIN!r} ({self.where}): no free connection within "
                f"pool_timeout={self.pool_timeout}s; raise pool_size/max_overflow or pool_timeout"
            ) from e
        except self._dbapi_error as e:  # raised by the driver on our own cursor
            raise self._map(e, phase, conn is not None and self._lost(conn, e)) from e

    def _connect(self) -> _Conn:
        if self._closed:
            raise KVError(f"plugin {PLUGIN!r} ({self.where}): the store is closed")
        with self._errors("connect"):
            fairy = self.engine.raw_connection()
        try:
            return _Conn(fairy)
        except BaseException:
            fairy.invalidate()
            raise

    def _plain(self, phase: str, op: Callable[[_Conn], T]) -> T:
        """Run one idempotent single-statement operation in autocommit, retrying what is safe: a
        conflict up to ``PLAIN_ATTEMPTS`` times within lock_timeout (full-jitter backoff), a lost
        connection once, at once, on a fresh connection (the stale ones were retired)."""
        start = time.monotonic()
        try:
            return self._plain_once(phase, op)  # the usual call: no retry machinery
        except (TransactionConflict, StoreUnavailable) as exc:
            first: List[KVError] = [exc]

        def attempt() -> T:
            if first:  # tenacity's attempt 1 is the call above: hand it its error, do not run again
                raise first.pop()
            return self._plain_once(phase, op)

        def retry(state: tenacity.RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, TransactionConflict):
                return True
            return isinstance(exc, StoreUnavailable) and state.attempt_number < 2

        def conflict(state: tenacity.RetryCallState) -> bool:
            return state.outcome is not None and isinstance(state.outcome.exception(), TransactionConflict)

        def wait(state: tenacity.RetryCallState) -> float:
            return _PLAIN_BACKOFF(state) if conflict(state) else 0.0

        def stop(state: tenacity.RetryCallState) -> bool:
            out_of_budget = time.monotonic() - start > self.lock_timeout
            return conflict(state) and (state.attempt_number >= PLAIN_ATTEMPTS or out_of_budget)

        return tenacity.Retrying(retry=retry, wait=wait, stop=stop, reraise=True)(attempt)

    def _plain_once(self, phase: str, op: Callable[[_Conn], T]) -> T:
        conn = self._connect()
        try:
            with self._errors(phase, conn):
                return op(conn)
        finally:
            conn.release()

    @contextmanager
    def _write_slot(self) -> Iterator[None]:
        """Hold this process's SQLite write lock (no-op on servers); a wait past lock_timeout
        is a ``TransactionConflict``, as SQLite's own busy timeout would be."""
        lock = self._writer
        if lock is None:
            yield
            return
        if not lock.acquire(timeout=self.lock_timeout):
            raise TransactionConflict(
                f"plugin {PLUGIN!r} ({self.where}): waited lock_timeout={self.lock_timeout}s for "
                "another write transaction of this process; nothing was written, retry"
            )
        try:
            yield
        finally:
            lock.release()

    def _run(self, fn: Callable[[SQLStoreTxn], T], write: bool) -> T:
        if write and self._writer is not None:
            with self._write_slot():  # the kept writer connection is ours until we leave
                return self._run_txn(fn, write, keep=True)
        return self._run_txn(fn, write)

    def _run_txn(self, fn: Callable[[SQLStoreTxn], T], write: bool, keep: bool = False) -> T:
        """One transaction; ``keep``: SQLite's writer, on the kept connection (see the module doc)."""
        kept = None
        if keep:
            kept, self._kept = self._kept, None
        conn = self._begin_txn(write, kept)
        txn = SQLStoreTxn(self, conn, write)
        committed = False
        try:
            result = fn(txn)
            if write:
                txn.flush()
            txn.done = True
            with self._errors("commit", conn):
                conn.cur.execute("COMMIT")
            committed = True
            return result
        except BaseException:
            txn.done = True
            try:
                conn.cur.execute("ROLLBACK")
            except Exception:  # connection gone (the server rolls back by itself): never reuse it
                conn.invalidate()
            raise
        finally:
            if keep and committed and not self._closed:
                self._kept = conn
            else:
                conn.release()

    def _begin_txn(self, write: bool, kept: Optional[_Conn] = None) -> _Conn:
        sql = self._begin[write]
        if kept is not None:
            try:
                with self._errors("begin", kept):
                    kept.cur.execute(sql)
                return kept
            except BaseException as exc:  # its state is unknown: discard it
                kept.invalidate()
                kept.release()
                if not isinstance(exc, Exception):
                    raise  # interrupted: not a reason to try another connection
        for attempt in (1, 2):
            conn = self._connect()
            try:
                with self._errors("begin", conn):
                    conn.cur.execute(sql)
                return conn
            except StoreUnavailable:  # a stale pooled connection: nothing was sent, try a fresh one
                conn.release()
                if attempt == 2:
                    raise
            except BaseException as exc:
                if not isinstance(exc, KVError):  # interrupted mid-BEGIN: its state is unknown
                    conn.invalidate()
                conn.release()
                raise
        raise AssertionError("unreachable")

    def page(
        self,
        conn: _Conn,
        name: str,
        lo: bytes,
        inclusive: bool,
        hi: Optional[bytes],
        n: int,
        lock: bool,
    ) -> List[Item]:
        stmt = self.sql.scan(inclusive, hi is not None, lock)
        params: Dict[str, Any] = {"c": name, "lo": lo, "n": n}
        if hi is not None:
            params["hi"] = hi
        conn.cur.execute(stmt.sql, stmt.bind(params))
        return [(_b(k), _b(v)) for k, v in conn.cur.fetchall()]

    def read_one(self, conn: _Conn, name: str, key: bytes, lock: bool = False) -> Optional[bytes]:
        stmt = self.sql.get_lock if lock else self.sql.get
        conn.cur.execute(stmt.sql, stmt.bind({"c": name, "k": key}))
        row = conn.cur.fetchone()
        return None if row is None else _b(row[0])

    # --- the protocol ---------------------------------------------------------------

    def open_collection(self, name: str) -> SQLCollection:
        """The collection ``name`` (rows appear with its first put)."""
        check_collection_name(name, PLUGIN)
        coll = self._collections.get(name)
        if coll is None:
            coll = self._collections.setdefault(name, SQLCollection(self, name))
        return coll

    def view(self, fn: Callable[[SQLStoreTxn], T]) -> T:
        """Read-only snapshot transaction across collections."""
        return self._run(fn, write=False)

    def update(self, fn: Callable[[SQLStoreTxn], T]) -> T:
        """Read-write transaction across collections (see the module doc for isolation)."""
        return self._run(fn, write=True)

    def put_many_if(self, guard: Guard, items: Sequence[Tuple[str, bytes, bytes]]) -> bool:
        """The ``GuardedPut`` capability: write ``items`` only while the guard key holds its value.

        On SQLite it is one autocommit statement on the kept writer connection: one step, so one
        release of the GIL instead of the four of BEGIN, a read, the writes and COMMIT. Elsewhere
        (and for more rows than one statement takes) it is an ``update`` transaction.
        """
        name, key, expected = check_collection_name(guard[0], PLUGIN), check_key(guard[1]), guard[2]
        if expected is not None:
            expected = check_value(expected)
        last: Dict[Tuple[str, bytes], bytes] = {}
        names = set()
        for c, k, v in items:  # the checks of SQLTxn.put; each collection name once
            if c not in names:
                names.add(check_collection_name(c, PLUGIN))
            if type(k) is not bytes or len(k) > MAX_KEY_SIZE:
                k = check_key(k)
            last[(c, k)] = v if type(v) is bytes else check_value(v)
        multi = self.sql.put_if
        size = len(last) if len(last) <= EXACT_UP_TO else 1 << (len(last) - 1).bit_length()
        if not last or multi is None or size > multi.full:

            def fn(t: SQLStoreTxn) -> bool:
                if t.collection(name).peek(key) != expected:
                    return False
                for (c, k), v in last.items():
                    t.collection(c).put(k, v)
                return True

            return self.update(fn) if last else self.view(fn)
        rows = [(c, k, v) for (c, k), v in last.items()]
        rows += rows[-1:] * (size - len(rows))  # one of MultiRow's few sizes: the last row again
        params: List[Any] = [x for row in rows for x in row]
        params += (name, key, expected)
        sql = multi.sql(size)
        with self._write_slot():
            conn, self._kept = self._kept, None
            if conn is None:
                conn = self._connect()
            done = False
            try:
                with self._errors("commit", conn):  # the statement is its own transaction
                    conn.cur.execute(sql, params)
                    written = conn.cur.rowcount
                done = True
            finally:
                if done and not self._closed:
                    self._kept = conn
                else:
                    conn.release()
        return bool(written)

    def close(self) -> None:
        """Close every pooled connection."""
        self._closed = True
        lock = self._writer
        if lock is not None and lock.acquire(timeout=self.lock_timeout):  # not while a write runs
            try:
                kept, self._kept = self._kept, None
                if kept is not None:
                    kept.release()
            finally:
                lock.release()
        self.engine.dispose()

    def scan_plain(
        self, name: str, prefix: bytes, after: Optional[bytes], limit: Optional[int]
    ) -> Iterator[Item]:
        """Scan outside a transaction: each page is its own short read."""
        lo, inclusive, hi, left = scan_range(prefix, after, limit)
        n = SCAN_FIRST
        while left is None or left > 0:
            if left is not None:
                n = min(n, left)
            rows = self._plain("scan", functools.partial(self._page_plain, name, lo, inclusive, hi, n))
            yield from rows
            if len(rows) < n:
                return
            if left is not None:
                left -= n
            lo, inclusive, n = rows[-1][0], False, min(n * 2, SCAN_MAX)

    def _page_plain(
        self, name: str, lo: bytes, inclusive: bool, hi: Optional[bytes], n: int, conn: _Conn
    ) -> List[Item]:
        return self.page(conn, name, lo, inclusive, hi, n, lock=False)


class SQLStoreTxn:
    """A transaction over the store: buffered writes, reads that see them."""

    def __init__(self, store: SQLStore, conn: _Conn, writable: bool):
        self._store, self._conn, self.writable = store, conn, writable
        self.done = False
        self._buf: Dict[str, Dict[bytes, Optional[bytes]]] = {}
        self._pending = self._pending_bytes = 0
        self._views: Dict[str, SQLTxn] = {}
        self._lock_reads = writable and store.kind == "mysql"

    def check(self, write: bool = False) -> None:
        if self.done:
            raise KVError(f"plugin {PLUGIN!r}: transaction already finished; use the txn only inside fn")
        if write and not self.writable:
            raise KVError(f"plugin {PLUGIN!r}: view transactions are read-only; use update() to write")

    def collection(self, name: str) -> SQLTxn:
        self.check()
        view = self._views.get(name)
        if view is None:
            check_collection_name(name, PLUGIN)
            view = self._views[name] = SQLTxn(self, name)
        return view

    def read(self, name: str, key: bytes) -> Optional[bytes]:
        self.check()
        buf = self._buf.get(name)
        if buf is not None and key in buf:
            return buf[key]
        with self._store._errors("read", self._conn):
            return self._store.read_one(self._conn, name, key, self._lock_reads)

    def buffer(self, name: str) -> Dict[bytes, Optional[bytes]]:
        """The write buffer of collection ``name`` (kept across flushes)."""
        return self._buf.setdefault(name, {})

    def write(self, buf: Dict[bytes, Optional[bytes]], key: bytes, value: Optional[bytes]) -> None:
        if self.done or not self.writable:
            self.check(write=True)
        buf[key] = value
        self._pending += 1
        if value is not None:
            self._pending_bytes += len(value)
        if self._pending >= FLUSH_AT or self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send buffered writes: the upserts of every collection at once, then the deletes."""
        if not self._pending:
            return
        sql, conn = self._store.sql, self._conn
        with self._store._errors("write", conn):
            ups: List[Tuple[str, bytes, bytes]] = []
            dels: Dict[str, List[bytes]] = {}
            for name, buf in self._buf.items():
                for k, v in buf.items():
                    if v is None:
                        dels.setdefault(name, []).append(k)
                    else:
                        ups.append((name, k, v))
                buf.clear()
            if ups:
                _execute(conn, sql.upsert, ("c", "k", "v"), ups)
            for name, keys in dels.items():
                if sql.delete_many is not None:
                    sql.delete_many.execute(conn.cur, name, keys)
                else:
                    _execute(conn, sql.delete, ("c", "k"), [(name, k) for k in keys])
        self._pending = self._pending_bytes = 0

    def scan(self, name: str, prefix: bytes, after: Optional[bytes], limit: Optional[int]) -> Iterator[Item]:
        lo, inclusive, hi, left = scan_range(prefix, after, limit)
        n = SCAN_FIRST
        while left is None or left > 0:
            if left is not None:
                n = min(n, left)
            self.check()
            if self.writable:
                self.flush()  # the database then sees every write made so far
            with self._store._errors("scan", self._conn):
                rows = self._store.page(self._conn, name, lo, inclusive, hi, n, self._lock_reads)
            yield from rows
            if len(rows) < n:
                return
            if left is not None:
                left -= n
            lo, inclusive, n = rows[-1][0], False, min(n * 2, SCAN_MAX)


class SQLTxn(GetFromPeek):
    """One collection inside a :class:`SQLStoreTxn`."""

    def __init__(self, parent: SQLStoreTxn, name: str):
        self._parent, self.name = parent, name
        self._buf = parent.buffer(name)

    def peek(self, key: bytes) -> Optional[bytes]:
        return self._parent.read(self.name, check_key(key))

    def put(self, key: bytes, value: bytes) -> None:
        if type(key) is not bytes or len(key) > MAX_KEY_SIZE:
            key = check_key(key)
        if type(value) is not bytes:
            value = check_value(value)
        self._parent.write(self._buf, key, value)

    def delete(self, key: bytes) -> None:
        self._parent.write(self._buf, check_key(key), None)

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> Iterator[Item]:
        self._parent.check()
        return self._parent.scan(self.name, prefix, after, limit)


class SQLCollection(GetFromPeek):
    """A named collection; plain operations are single autocommit statements."""

    def __init__(self, store: SQLStore, name: str):
        self._store, self.name = store, name

    def __repr__(self) -> str:
        return f"<sqlkv collection {self.name!r} in {self._store.where}>"

    def peek(self, key: bytes) -> Optional[bytes]:
        key = check_key(key)
        return self._store._plain("read", lambda conn: self._store.read_one(conn, self.name, key))

    def put(self, key: bytes, value: bytes) -> None:
        key, value = check_key(key), check_value(value)
        self._exec(
            self._store.sql.upsert.sql, self._store.sql.upsert.bind({"c": self.name, "k": key, "v": value})
        )

    def delete(self, key: bytes) -> None:
        key = check_key(key)
        self._exec(self._store.sql.delete.sql, self._store.sql.delete.bind({"c": self.name, "k": key}))

    def _exec(self, sql: str, params: Sequence[Any]) -> None:
        with self._store._write_slot():
            self._store._plain("write", lambda conn: conn.cur.execute(sql, params))

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> Iterator[Item]:
        return self._store.scan_plain(self.name, prefix, after, limit)

    def view(self, fn: Callable[[SQLTxn], T]) -> T:
        return self._store.view(lambda st: fn(st.collection(self.name)))

    def update(self, fn: Callable[[SQLTxn], T]) -> T:
        return self._store.update(lambda st: fn(st.collection(self.name)))
