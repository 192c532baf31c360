"""One database sqlsync writes to: engine, schema check, batched upserts, retries, bisection.

A flush is one transaction: one ``executemany`` upsert of the last state per sector, guarded by
``version``, plus one ``executemany`` append to ``sector_events``. Transient errors (lost
connection, deadlock, serialization failure, busy database) are retried with backoff, then
raised: nothing was committed, the host keeps the batch and retries later. When the database
rejects a row (a constraint, a value too long), the batch is bisected by sector until the bad
sectors are isolated; the rest is written and the bad ones come back as :class:`Rejected`.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from sectorhooks_spec import Rejected

from .schema import Row, Schema, version_and_time

log = logging.getLogger(__name__)

# SQLSTATE classes: 22 data exception, 23 integrity violation -> the row is at fault.
ROW_SQLSTATE_CLASSES = ("22", "23")
# 08 connection, 40 rollback (40001 serialization, 40P01 deadlock), 53 resources, 57P0x shutdown.
TRANSIENT_SQLSTATES = ("08", "40", "53", "57P0", "55P03", "HYT00")
# MySQL/MariaDB error numbers (pymysql maps several row errors to OperationalError).
MYSQL_ROW_ERRNOS = frozenset({1048, 1062, 1263, 1264, 1265, 1292, 1366, 1406, 1452, 1690, 3819, 4025})
MYSQL_TRANSIENT_ERRNOS = frozenset({1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 2055, 4031})

# One pending change: (miner, number, workspace, event, state_json).
Change = Tuple[int, int, str, str, str]
# What one sector contributes to a flush: its key, its newest ``sectors`` row, its event rows.
Unit = Tuple[Tuple[int, int], Row, List[Row]]


class RowRejected(Exception):
    """Internal: the database refused the data of this batch (not a transient failure)."""


def classify(exc: BaseException) -> str:
    """``"row"`` (the data is refused), ``"transient"`` (retry) or ``"fatal"``."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return "transient" if isinstance(exc, (ConnectionError, TimeoutError)) else "fatal"
    if exc.connection_invalidated:
        return "transient"
    orig = exc.orig
    errno = orig.args[0] if getattr(orig, "args", None) and isinstance(orig.args[0], int) else None
    if errno is not None and type(orig).__module__.startswith("pymysql"):
        if errno in MYSQL_ROW_ERRNOS:
            return "row"
        if errno in MYSQL_TRANSIENT_ERRNOS or errno >= 2000:
            return "transient"
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str) and state:
        if state[:2] in ROW_SQLSTATE_CLASSES:
            return "row"
        if state.startswith(TRANSIENT_SQLSTATES):
            return "transient"
    if isinstance(exc, (sa.exc.IntegrityError, sa.exc.DataError)):
        return "row"
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return "transient"
    return "fatal"


def create_engine(url: str) -> sa.Engine:
    """An engine for one sink: pre-ping (a dead pooled connection is replaced), small pool."""
    u = sa.engine.make_url(url)
    kwargs: Dict[str, Any] = {"pool_pre_ping": True}
    if u.get_backend_name() != "sqlite":
        kwargs.update(pool_size=2, max_overflow=2, pool_recycle=3600)
    engine = sa.create_engine(u, **kwargs)
    backend = engine.dialect.name
    if backend == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 5000")
            if u.database and u.database != ":memory:":
                cur.execute("PRAGMA journal_mode = WAL")
            cur.close()

    elif backend in ("mysql", "mariadb"):

        @sa.event.listens_for(engine, "connect")
        def _mysql_strict(dbapi_conn: Any, _record: Any) -> None:
            # Never let the server truncate a value silently: a refused row is dead-lettered.
            cur = dbapi_conn.cursor()
            cur.execute(
                "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')"
            )
            cur.close()

    return engine


class Sink:
    """Writes batches of changes for one syncer instance into one database."""

    def __init__(
        self,
        label: str,
        url: str,
        prefix: str,
        batch_size: int,
        events: bool,
        retries: int,
        backoff: float = 0.1,
        loads: Callable[[str], Any] = json.loads,
    ):
        self.label = label
        self.url = url
        self.schema = Schema(prefix)
        self.batch_size = batch_size
        self.events = events
        self.retries = retries
        self.backoff = backoff
        self.loads = loads
        self._engine: Optional[sa.Engine] = None
        self._sql: Optional[Tuple[str, str]] = None
        self._schema_ok = False
        self._lock = threading.Lock()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_engine(self.url)
        return self._engine

    def close(self) -> None:
        """Dispose of the engine's connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # --- preparing a batch -------------------------------------------------------------------

    def prepare(self, changes: Sequence[Change]) -> List[Unit]:
        """Reduce to the last state per sector (first-seen order), each with its events."""
        loads = self.loads
        last: Dict[Tuple[int, int], int] = {}  # sector -> index of its newest change
        repeated = False
        for i, change in enumerate(changes):
            key = (change[0], change[1])
            if key in last:
                repeated = True
            last[key] = i
        versions: List[Tuple[int, Optional[float]]] = []
        if repeated or self.events:  # versions decide which change is newest, and key the events
            versions = [version_and_time(c[4], loads) for c in changes]
            if repeated:  # out-of-order or replayed changes: keep the highest version
                for i, change in enumerate(changes):
                    key = (change[0], change[1])
                    if versions[last[key]][0] < versions[i][0]:
                        last[key] = i
        events: Dict[Tuple[int, int], List[Row]] = {}
        if self.events:
            seen = set()
            for (miner, number, ws, ev, state_json), (version, updated_at) in zip(changes, versions):
                if (miner, number, version) not in seen:
                    seen.add((miner, number, version))
                    events.setdefault((miner, number), []).append(
                        (miner, number, version, ev, ws, updated_at, state_json)
                    )
        row = self.schema.row
        units = []
        for key, i in last.items():
            miner, number, ws, _ev, state_json = changes[i]
            units.append((key, row(miner, number, ws, loads(state_json), state_json), events.get(key, [])))
        return units

    # --- writing -------------------------------------------------------------------------------

    def write(self, changes: Sequence[Change]) -> List[Rejected]:
        """Write a batch; returns what the database refused (the rest is committed)."""
        if not changes:
            return []
        with self._lock:
            units = self.prepare(changes)
            rejected: List[Rejected] = []
            self._write_units(units, rejected)
            return rejected

    def _write_units(self, units: Sequence[Unit], rejected: List[Rejected]) -> None:
        try:
            self._with_retries(units)
            return
        except RowRejected as exc:
            reason = _reason(exc.__cause__ or exc)
            if len(units) == 1:
                (miner, number), row, evs = units[0]
                versions = sorted({e[2] for e in evs} | {row[self._version_index]})
                sid = f"s-t0{miner}-{number}"
                log.warning("sqlsync %s: database refused %s v%s: %s", self.label, sid, versions, reason)
                rejected.extend(Rejected(sid, v, reason) for v in versions)
                return
        mid = len(units) // 2
        self._write_units(units[:mid], rejected)
        self._write_units(units[mid:], rejected)

    @property
    def _version_index(self) -> int:
        return self.schema.sector_columns.index("version")

    def _with_retries(self, units: Sequence[Unit]) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.retries)),
            wait=wait_exponential(multiplier=self.backoff, max=max(self.backoff, 2.0)),
            retry=retry_if_exception(lambda e: classify(e) == "transient"),
            before_sleep=self._before_retry,
            reraise=True,
        )
        retrying(self._transaction, units)

    def _before_retry(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "sqlsync %s: transient error (attempt %d), retrying: %s", self.label, state.attempt_number, exc
        )
        self._schema_ok = False  # a dropped or recreated database needs its tables again

    def _transaction(self, units: Sequence[Unit]) -> None:
        engine = self.engine
        if not self._schema_ok:
            self.ensure_schema()
        upsert, append = self._statements(engine.dialect)
        rows = [u[1] for u in units]
        n = self.batch_size
        try:
            with engine.begin() as conn:
                for i in range(0, len(rows), n):
                    conn.exec_driver_sql(upsert, rows[i : i + n])
                if self.events:
                    evs = [e for u in units for e in u[2]]
                    for i in range(0, len(evs), n):
                        conn.exec_driver_sql(append, evs[i : i + n])
        except sa.exc.DBAPIError as exc:
            if classify(exc) == "row":
                raise RowRejected(str(exc.orig)) from exc
            if not isinstance(exc, sa.exc.OperationalError):
                self._schema_ok = False
            raise

    def _statements(self, dialect: sa.Dialect) -> Tuple[str, str]:
        if self._sql is None:
            self._sql = (self.schema.upsert_sql(dialect), self.schema.events_sql(dialect))
        return self._sql

    def ensure_schema(self) -> None:
        """Create the tables and add missing columns (first use, or after an error)."""
        with self.engine.begin() as conn:
            for what in self.schema.ensure(conn, self.events):
                log.info("sqlsync %s: %s", self.label, what)
        self._schema_ok = True


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def sector_key(state_json: str) -> Tuple[int, int]:
    """(miner, number) of a serialized state (imports carry no separate sector id)."""
    sid = json.loads(state_json)["id"]
    return int(sid["miner"]), int(sid["number"])
