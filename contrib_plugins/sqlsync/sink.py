"""One database sqlsync writes to: engine, schema check, batched upserts, retries, bisection.

A flush is one transaction: one ``executemany`` upsert of the last state per sector, guarded by
``version``, plus one ``executemany`` append to ``sector_events``. Transient errors (lost
connection, deadlock, serialization failure, busy database) are retried with backoff, then
raised: nothing was committed, the host keeps the batch and retries later.

Anything else that fails a batch is looked for in its changes, so that one bad change never
holds up the others (a sink never stalls on one event). First each change is screened: a
``state_json`` that is not a state document, or a value no column can hold on every dialect
(the SPI's bounds: an integer beyond signed 64-bit, which SQLite's driver refuses with
``OverflowError`` at bind time, a non-finite number, text with a lone surrogate; or not a
scalar) is refused with its reason. Then, when the database still refuses a row (a
constraint, a value too long), the batch is bisected by sector until the bad sectors are
isolated. The rest is written; the refused changes come back as :class:`Rejected`, which the
plugin raises from ``Flush`` as ``RejectedChanges`` for the host to dead-letter. An error no
change explains (say, a permission the sink's user lacks) is raised: the host retries the batch.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import re
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from sectorhooks_spec import Rejected
from sectorhooks_spec.sqlbatch import MultiRow

from .rows import Row, row_problem, version_and_time, versions_and_times
from .schema import Schema

log = logging.getLogger(__name__)

# SQLSTATE classes: 22 data exception, 23 integrity violation -> the row is at fault; so is
# 42804 datatype mismatch (a value of another type than its column's, e.g. a boolean for a bigint).
ROW_SQLSTATE_CLASSES = ("22", "23")
ROW_SQLSTATES = ("42804",)
# 08 connection, 40 rollback (40001 serialization, 40P01 deadlock), 53 resources, 57P0x shutdown,
# 42P01/42703 undefined table/column (dropped or recreated database: the schema is re-checked).
TRANSIENT_SQLSTATES = ("08", "40", "53", "57P0", "55P03", "HYT00", "42P01", "42703")
# MySQL/MariaDB error numbers (pymysql maps several row errors to OperationalError).
MYSQL_ROW_ERRNOS = frozenset({1048, 1062, 1263, 1264, 1265, 1292, 1366, 1406, 1452, 1690, 3819, 4025})
# ... and 1054/1146 (unknown column/table): the schema is re-checked before the retry.
MYSQL_TRANSIENT_ERRNOS = frozenset(
    {1040, 1049, 1053, 1054, 1146, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 2055, 4031}
)

# One pending change, stored as 5 consecutive items of a flat list: miner, number, workspace,
# event ("import", "init", "update", "finalize", "restore"), state_json.
Change = Tuple[int, int, str, str, str]


class RowRejected(Exception):
    """Internal: the database refused the data of this batch (not a transient failure)."""


#: Raised by drivers while binding a value they cannot send (before the database sees it):
#: sqlite3 and pymysql raise OverflowError / UnicodeEncodeError, psycopg UnicodeEncodeError.
BIND_ERRORS = (OverflowError, UnicodeError)


def classify(exc: BaseException) -> str:
    """``"row"`` (the data is refused), ``"transient"`` (retry) or ``"fatal"``."""
    if not isinstance(exc, sa.exc.DBAPIError):
        cause = exc.orig if isinstance(exc, sa.exc.StatementError) else exc
        if isinstance(cause, BIND_ERRORS):
            return "row"
        return "transient" if isinstance(exc, (ConnectionError, TimeoutError)) else "fatal"
    if exc.connection_invalidated:
        return "transient"
    orig: Any = exc.orig
    errno = orig.args[0] if getattr(orig, "args", None) and isinstance(orig.args[0], int) else None
    if errno is not None and type(orig).__module__.startswith("pymysql"):
        if errno in MYSQL_ROW_ERRNOS:
            return "row"
        if errno in MYSQL_TRANSIENT_ERRNOS or errno >= 2000:
            return "transient"
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(state, str) and state:
        if state[:2] in ROW_SQLSTATE_CLASSES or state in ROW_SQLSTATES:
            return "row"
        if state.startswith(TRANSIENT_SQLSTATES):
            return "transient"
    if isinstance(exc, (sa.exc.IntegrityError, sa.exc.DataError)):
        return "row"
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return "transient"
    return "fatal"


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


def create_engine(url: str) -> sa.Engine:
    """An engine for one sink: pre-ping (a dead pooled connection is replaced), small pool."""
    u = sa.engine.make_url(url)
    kwargs: Dict[str, Any] = {"pool_pre_ping": True}
    if u.get_backend_name() != "sqlite":
        kwargs.update(pool_size=1, max_overflow=2, pool_recycle=3600)  # one flush at a time
    engine = _engine(u, **kwargs)
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
        decoder: str = "auto",
    ):
        self.label = label
        self.url = url
        self.schema = Schema(prefix, decoder=decoder)
        self.batch_size = batch_size
        self.events = events
        self.retries = retries
        self.backoff = backoff
        self._engine: Optional[sa.Engine] = None
        self._sql: Optional[Tuple[str, str]] = None
        self._multi: Optional[Tuple[MultiRow, MultiRow]] = None
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

    def prepare(self, flat: Sequence[Any]) -> Tuple[List[Row], List[Row]]:
        """``sectors`` rows (the newest state per sector, in first-seen order) and event rows.

        ``flat`` holds 5 items per change (see :data:`Change`): appending them flat costs the
        hooks no allocation that lives, and nothing here builds more than the rows themselves.
        """
        miners, numbers, spaces, kinds, texts = (flat[i::5] for i in range(5))
        keys = [m << 64 | n for m, n in zip(miners, numbers)]  # ints: nothing for the GC to track
        last = dict(zip(keys, range(len(keys))))  # key -> index of its last change
        event_rows: List[Row] = []
        if self.events or len(last) < len(keys):  # versions key the events and pick the newest
            versions, times = versions_and_times(texts)
            if len(last) < len(keys):  # a sector changed twice: keep its highest version
                for i, k in enumerate(keys):
                    if versions[last[k]] < versions[i]:
                        last[k] = i
            if self.events:
                seen = set()
                for i, k in enumerate(keys):
                    if (k, versions[i]) not in seen:
                        seen.add((k, versions[i]))
                        row = (miners[i], numbers[i], versions[i], kinds[i], spaces[i], times[i], texts[i])
                        event_rows.append(row)
        build = self.schema.row
        rows = [build(miners[i], numbers[i], spaces[i], texts[i]) for i in last.values()]
        return rows, event_rows

    # --- writing -------------------------------------------------------------------------------

    def write(self, flat: Sequence[Any]) -> List[Rejected]:
        """Write a batch (flat, 5 items per change); returns the changes refused, with why.

        Raises only what no change explains: a transient error after the retries, or a fatal
        one (nothing of the batch is lost: the host delivers it again).
        """
        if not flat:
            return []
        with self._lock:
            refused: Optional[RowRejected] = None  # the database refused a row of the whole batch
            built: Optional[Tuple[List[Row], List[Row]]] = None
            try:
                built = rows, events = self._rows(flat)
            except Exception as exc:  # a change the host would never send: found below
                log.warning("sqlsync %s: cannot build the rows of a batch: %s", self.label, describe(exc))
            else:
                try:
                    self._with_retries(rows, events)
                    return []
                except RowRejected as exc:
                    refused = exc
                except Exception as exc:
                    if classify(exc) == "transient":
                        raise
                    log.warning("sqlsync %s: a batch failed: %s", self.label, describe(exc))
            # Refuse the changes no column can hold, then write the rest (bisected if refused).
            kept, rejected = self.screen(flat)
            if kept:
                rows, events = built if built is not None and not rejected else self._rows(kept)
                self._write_part(rows, events, rejected, None if rejected else refused)
            return rejected

    def _rows(self, flat: Sequence[Any]) -> Tuple[List[Row], List[Row]]:
        with _gc_paused():  # flat rows of scalars, no cycles: a full GC pass here is waste
            rows, events = self.prepare(flat)
            if self.engine.dialect.name == "postgresql":
                rows = [_without_nul(r) for r in rows]
        return rows, events

    def screen(self, flat: Sequence[Any]) -> Tuple[List[Any], List[Rejected]]:
        """Split a batch into the changes every dialect can store and the refused ones (why).

        A change is refused when its ``state_json`` is not a state document (no row can be
        built from it) or a value of its ``sectors`` or ``sector_events`` row is one no dialect
        can store (see :func:`.rows.value_problem`).
        """
        keep: List[Any] = []
        rejected: List[Rejected] = []
        columns, events = self.schema.sector_columns, self.schema.event_columns
        for i in range(0, len(flat), 5):
            miner, number, workspace, kind, text = flat[i : i + 5]
            sid = f"s-t0{miner}-{number}"
            try:
                version, updated_at = version_and_time(text)
                problem = row_problem(
                    events, (miner, number, version, kind, workspace, updated_at, text)
                ) or row_problem(columns, self.schema.row(miner, number, workspace, text))
            except Exception as exc:
                version = _version_in(text)
                problem = f"state_json is not a state document: {type(exc).__name__}: {exc}"[:300]
            if problem is None:
                keep.extend(flat[i : i + 5])
                continue
            log.warning("sqlsync %s: refused %s v%s: %s", self.label, sid, version, problem)
            rejected.append(Rejected(sid, version if type(version) is int else 0, problem))
        return keep, rejected

    def _write_part(
        self,
        rows: List[Row],
        events: List[Row],
        rejected: List[Rejected],
        refused: Optional[RowRejected] = None,
    ) -> None:
        """Write ``rows`` and ``events`` in one transaction or, when the database refuses a row,
        bisect them by sector; ``refused``: how it already refused these very rows (bisect now)."""
        try:
            if refused is not None:
                raise refused
            self._with_retries(rows, events)
            return
        except RowRejected as exc:
            if len(rows) > 1:  # bisect by sector: each half is its own transaction
                mid = len(rows) // 2
                for part in (rows[:mid], rows[mid:]):
                    keys = {(r[0], r[1]) for r in part}
                    self._write_part(part, [e for e in events if (e[0], e[1]) in keys], rejected)
                return
            reason = describe(exc.__cause__ or exc)
            row = rows[0]
            versions = sorted({e[2] for e in events} | {row[self._version_index]})
            sid = f"s-t0{row[0]}-{row[1]}"
            log.warning("sqlsync %s: database refused %s v%s: %s", self.label, sid, versions, reason)
            rejected.extend(Rejected(sid, v, reason) for v in versions)

    @property
    def _version_index(self) -> int:
        return self.schema.sector_columns.index("version")

    def _with_retries(self, rows: List[Row], events: List[Row]) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.retries)),
            wait=wait_exponential(multiplier=self.backoff, max=max(self.backoff, 2.0)),
            retry=retry_if_exception(lambda e: classify(e) == "transient"),
            before_sleep=self._before_retry,
            reraise=True,
        )
        retrying(self._transaction, rows, events)

    def _before_retry(self, state: Any) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "sqlsync %s: transient error (attempt %d), retrying: %s", self.label, state.attempt_number, exc
        )
        self._schema_ok = False  # a dropped or recreated database needs its tables again

    def _transaction(self, rows: List[Row], events: List[Row]) -> None:
        engine = self.engine
        if not self._schema_ok:
            self.ensure_schema()
        upsert, append = self._statements(engine.dialect)
        n = self.batch_size
        try:
            with engine.begin() as conn:
                if self._multi is not None:  # SQLite: a few multi-row statements (sqlbatch)
                    for multi, part in zip(self._multi, (rows, events)):
                        for sql, params in multi.chunks(part):
                            conn.exec_driver_sql(sql, params)
                    return
                for i in range(0, len(rows), n):
                    conn.exec_driver_sql(upsert, rows[i : i + n])
                for i in range(0, len(events), n):
                    conn.exec_driver_sql(append, events[i : i + n])
        except sa.exc.DBAPIError as exc:
            if classify(exc) == "row":
                raise RowRejected(str(exc.orig)) from exc
            self._schema_ok = False
            raise
        except BIND_ERRORS as exc:  # the driver could not send a value: nothing reached the database
            raise RowRejected(str(exc)) from exc

    def _statements(self, dialect: sa.Dialect) -> Tuple[str, str]:
        if self._sql is None:
            self._sql = (self.schema.upsert_sql(dialect), self.schema.events_sql(dialect))
            if dialect.name == "sqlite":
                self._multi = (
                    MultiRow(self._sql[0], len(self.schema.sector_columns)),
                    MultiRow(self._sql[1], len(self.schema.event_columns)),
                )
        return self._sql

    def ensure_schema(self) -> None:
        """Create the tables and add missing columns (first use, or after an error)."""
        with self.engine.begin() as conn:
            for what in self.schema.ensure(conn, self.events):
                log.info("sqlsync %s: %s", self.label, what)
        self._schema_ok = True


def _without_nul(row: Row) -> Row:
    """PostgreSQL text cannot hold NUL: columns get U+FFFD instead (state_json has it escaped)."""
    if not any(type(v) is str and "\x00" in v for v in row):
        return row
    return tuple(v.replace("\x00", "\ufffd") if type(v) is str else v for v in row)


_GC_LOCK = threading.Lock()
_gc_pausers = 0  # sinks building rows now
_gc_was_enabled = False  # the GC's state before the first of them paused it


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC (only if it runs) while a batch's rows are built; reference counting
    still frees everything. On a large host heap one full collection cost as much as the rows.

    Sinks build rows in several threads at once: the first one in pauses the GC, the last one out
    restores what the first found (so a GC the host turned off stays off).
    """
    global _gc_pausers, _gc_was_enabled
    with _GC_LOCK:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def describe(exc: BaseException) -> str:
    """The driver's own first line of an error (no SQL text, no parameters)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


_VERSION = re.compile(r'"version"\s*:\s*(-?\d{1,19})[,}\s]')


def _version_in(text: Any) -> int:
    """The version a text that is not a state document seems to hold (0 if none): for the
    host to match the refused change to its event."""
    m = _VERSION.search(text) if isinstance(text, str) else None
    return int(m.group(1)) if m else 0


def sector_key(state_json: str) -> Tuple[int, int]:
    """(miner, number) of a serialized state (imports carry no separate sector id)."""
    sid = json.loads(state_json)["id"]
    return int(sid["miner"]), int(sid["number"])
