"""A sink's database: the engine sqlsync opens for it, and what a driver's error means.

``classify`` sorts an error into ``"row"`` (the database refuses the data: find the changes at
fault, write the rest), ``"transient"`` (lost connection, deadlock, serialization failure, busy
database: retry, and if it lasts, fail the flush so the host delivers the batch again) or
``"fatal"`` (anything else, e.g. a permission the sink's user lacks: raised). ``retrying`` is
the policy for the transient ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict

import sqlalchemy as sa
import tenacity

log = logging.getLogger(__name__)
#: Seconds before the first retry of a transient error; doubled each time, at most 2 s.
BACKOFF = 0.1

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


def retrying(label: str, attempts: int) -> tenacity.Retrying:
    """Call a function up to ``attempts`` times while it raises a transient error, with backoff
    (:data:`BACKOFF`, doubled each time, at most 2 s), logging each retry; then its error is raised."""

    def warn(call: tenacity.RetryCallState) -> None:
        error = call.outcome.exception() if call.outcome else None
        log.warning(
            "sqlsync %s: transient error (attempt %d), retrying: %s", label, call.attempt_number, error
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=BACKOFF, max=2.0),
        retry=tenacity.retry_if_exception(lambda exc: classify(exc) == "transient"),
        before_sleep=warn,
        reraise=True,
    )


def describe(exc: BaseException) -> str:
    """The driver's own first line of an error (no SQL text, no parameters)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


#: Database driver modules of SQLAlchemy URLs, and the extra of ``sectorhooks`` that installs each.
DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql", "MySQLdb": "mysql"}


def create_engine(url: str) -> sa.Engine:
    """An engine for one sink: pre-ping (a dead pooled connection is replaced), a small pool,
    SQLite in WAL mode with a busy timeout (its directory created), MySQL/MariaDB in strict mode."""
    u = sa.engine.make_url(url)
    kwargs: Dict[str, Any] = {"pool_pre_ping": True}
    if u.get_backend_name() != "sqlite":
        kwargs.update(pool_size=1, max_overflow=2, pool_recycle=3600)  # one flush at a time
    try:
        engine = sa.create_engine(u, **kwargs)
    except ModuleNotFoundError as exc:
        extra = DRIVER_EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        raise ModuleNotFoundError(
            f"{exc} (the database driver of {u.drivername} URLs is not installed: "
            f"pip install 'sectorhooks[{extra}]')",
            name=exc.name,
        ) from None
    if engine.dialect.name == "sqlite":
        pragmas = ["PRAGMA busy_timeout = 5000"]
        if u.database and u.database != ":memory:":
            pragmas.append("PRAGMA journal_mode = WAL")
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    elif engine.dialect.name in ("mysql", "mariadb"):
        # Never let the server truncate a value silently: a refused row is dead-lettered.
        pragmas = [
            "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')"
        ]
    else:
        return engine

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for sql in pragmas:
            cur.execute(sql)
        cur.close()

    return engine
