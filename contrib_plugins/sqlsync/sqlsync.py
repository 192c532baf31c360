"""sqlsync: mirror every sector-state change into SQL tables (SQLite, PostgreSQL, MariaDB/MySQL).

The reference SyncSectorState plugin. Its hooks only buffer each change as a :class:`Change`;
``Flush`` writes the buffer in one transaction, retried while the error is transient: the newest
state of each sector into ``<prefix>sectors`` by an upsert that never moves a row to a lower
``version`` (the host delivers at least once: a replay must change nothing), and every change
into the append-only ``<prefix>sector_events``. One plugin serves every instance (each
``[[Common.Syncers]]`` naming it), each with its own ``Meta`` and database.

Beside it, each named for what it does: ``settings.py`` (``Meta`` keys), ``instances.py`` (one
writer per instance, made from its ``Meta``), ``sink.py`` (the engine; what a driver's error
means), ``rows.py`` (a state's JSON as column values), ``refused_rows.py``,
``schema_evolution.py``, ``read_back.py`` and ``msgspec_rows.py`` (a measured speed-up of ``rows.py``).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import attrs

from sectorhooks_spec import (
    AllocatedSector,
    Rejected,
    RejectedChanges,
    SectorhooksError,
    SectorID,
    SyncerInstance,
    Workspace,
)

from .instances import INSTANCES as _INSTANCES  # noqa: F401  (the writers: tests, bench_sqlsync)
from .instances import close as close
from .instances import instance as _instance
from .instances import setup as setup

# read_back is the ReadBack extension point (``sync verify`` pages through the sink with it);
# read_rows(url, table_prefix) and default_url(name) are kept for tests and tools.
from .read_back import read_back as read_back
from .read_back import read_rows as read_rows
from .rows import NESTED, Row, row_builder, scalar_fields
from .settings import PLUGIN, masked
from .settings import default_url as default_url
from .settings import settings_from_meta as settings_from_meta

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger(__name__)


class SinkUnavailable(SectorhooksError):
    """The sink's database stayed unreachable through every retry; nothing of the batch was written."""


@attrs.define  # not frozen: its __init__ costs twice as much, x1.13 on bench_sqlsync's 10-each row
class Change:
    """One buffered change: the sector, its workspace, the event, the state as the host serialized it."""

    miner: int
    number: int
    workspace: str  # "online" or "offline" (hooks get a Workspace or its plain string)
    event: str  # import, init, update, finalize or restore
    state_json: str


# --- the tables and their upsert ----------------------------------------------------------------


class Schema:
    """The two tables of one sink (one ``table_prefix``), their SQL, and the ``sectors`` row builder."""

    def __init__(
        self, prefix: str = "", scalars: Optional[Sequence[Tuple[str, str]]] = None, decoder: str = "auto"
    ):
        import sqlalchemy as sa
        from sqlalchemy.dialects import mysql

        self.scalars = tuple(scalar_fields() if scalars is None else scalars)
        types = {"bool": sa.Boolean, "int": sa.BigInteger, "float": sa.Double, "str": sa.Text}
        text = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
        opts: Dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

        def key(*names: str) -> List[sa.Column[int]]:
            return [sa.Column(n, sa.BigInteger(), primary_key=True, autoincrement=False) for n in names]

        self.metadata = sa.MetaData()
        self.sectors = sa.Table(
            f"{prefix}sectors",
            self.metadata,
            *key("miner", "number"),
            sa.Column("workspace", sa.String(16)),
            *[sa.Column(column, sa.String(255)) for column in NESTED],
            *[sa.Column(n, types[kind](), nullable=n != "version") for n, kind in self.scalars],
            sa.Column("state_json", text, nullable=False),
            **opts,
        )
        self.events = sa.Table(
            f"{prefix}sector_events",
            self.metadata,
            *key("miner", "number", "version"),
            sa.Column("event", sa.String(16), nullable=False),
            sa.Column("workspace", sa.String(16)),
            sa.Column("updated_at", sa.Double()),
            sa.Column("state_json", text, nullable=False),
            **opts,
        )
        self.sector_columns = tuple(c.name for c in self.sectors.columns)
        self.event_columns = tuple(c.name for c in self.events.columns)
        self.row = row_builder(self.scalars, decoder)

    def ensure(self, conn: sa.Connection, events: bool) -> List[str]:
        """Create the missing tables, add the missing columns; returns what it did (for the log)."""
        from .schema_evolution import ensure_tables

        return ensure_tables(conn, self.metadata, [self.sectors, self.events] if events else [self.sectors])

    def upsert_sql(self, dialect: sa.Dialect) -> str:
        """Insert-or-update of ``sectors`` rows that never moves a row to a lower ``version``."""
        t, cols, insert = _insert(dialect, self.sectors.name, self.sector_columns)
        v = _q(dialect, "version")
        rest = [c for c in cols[2:] if c != v]
        if dialect.name in ("mysql", "mariadb"):
            # Assignments run left to right and see earlier ones: version must come last.
            sets = [f"{c} = IF(VALUES({v}) > {v}, VALUES({c}), {c})" for c in rest]
            sets.append(f"{v} = GREATEST({v}, VALUES({v}))")
            return f"{insert} ON DUPLICATE KEY UPDATE {', '.join(sets)}"
        sets = [f"{c} = excluded.{c}" for c in [*rest, v]]
        return (
            f"{insert} ON CONFLICT ({cols[0]}, {cols[1]}) DO UPDATE SET {', '.join(sets)}"
            f" WHERE {t}.{v} < excluded.{v}"
        )

    def events_sql(self, dialect: sa.Dialect) -> str:
        """Append to ``sector_events``, ignoring a (miner, number, version) already there."""
        _, cols, insert = _insert(dialect, self.events.name, self.event_columns)
        if dialect.name in ("mysql", "mariadb"):  # not INSERT IGNORE: that would also hide data errors
            return f"{insert} ON DUPLICATE KEY UPDATE {cols[2]} = {cols[2]}"
        return f"{insert} ON CONFLICT ({', '.join(cols[:3])}) DO NOTHING"


def _insert(dialect: sa.Dialect, table: str, columns: Sequence[str]) -> Tuple[str, List[str], str]:
    t, cols = _q(dialect, table), [_q(dialect, c) for c in columns]
    marks = ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * len(cols))
    return t, cols, f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({marks})"


def _q(dialect: sa.Dialect, name: str) -> str:
    return dialect.identifier_preparer.quote(name)


# --- writing a batch ------------------------------------------------------------------------------


@attrs.define
class SinkWriter:
    """One syncer instance: the changes its hooks buffered (``pending``), and its database, written
    one transaction per batch (the tables created on first use), retried while the error is transient."""

    label: str
    url: str
    prefix: str
    batch_size: int
    events: bool
    retries: int
    decoder: str = "auto"
    schema: Schema = attrs.field(init=False)
    _engine: Optional[sa.Engine] = attrs.field(init=False, default=None)
    _schema_ok: bool = attrs.field(init=False, default=False)
    pending: List[Change] = attrs.field(init=False, factory=list)
    lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)  # one flush at a time

    def __attrs_post_init__(self) -> None:
        self.schema = Schema(self.prefix, decoder=self.decoder)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            from .sink import create_engine

            self._engine = create_engine(self.url)
        return self._engine

    def close(self) -> None:
        """Dispose of the engine's connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def write(self, changes: Sequence[Change]) -> List[Rejected]:
        """Write a batch; returns the changes the database refused, with why (the rest is written).
        Raises what no change explains: a transient error after the retries, or a fatal one."""
        from .sink import classify, describe

        try:
            self.transaction(*self.rows(changes))
            return []
        except Exception as exc:
            if classify(exc) == "transient":
                raise
            log.warning("sqlsync %s: a batch failed, finding its bad changes: %s", self.label, describe(exc))
            from .refused_rows import write_around

            return write_around(self, changes, exc)

    def rows(self, changes: Sequence[Change]) -> Tuple[List[Row], List[Row]]:
        """The ``sectors`` rows (each sector's newest state, in first-seen order) and the
        ``sector_events`` rows (one per sector and version) of a batch."""
        build, columns = self.schema.row, self.schema.sector_columns
        v, t = columns.index("version"), columns.index("updated_at")
        newest: Dict[Tuple[int, int], Row] = {}
        events: Dict[Tuple[int, int, int], Row] = {}
        for c in changes:
            row = build(c.miner, c.number, c.workspace, c.state_json)
            sector, version = (c.miner, c.number), row[v]
            if sector not in newest or newest[sector][v] < version:
                newest[sector] = row
            if self.events:  # the first change of each (sector, version)
                key = (c.miner, c.number, version)
                events.setdefault(key, (*key, c.event, c.workspace, row[t], c.state_json))
        rows = list(newest.values())
        if self.engine.dialect.name == "postgresql":  # its text cannot hold NUL (state_json has it escaped)
            rows = [tuple(x.replace("\x00", "\ufffd") if type(x) is str else x for x in r) for r in rows]
        return rows, list(events.values())

    def transaction(self, rows: Sequence[Row], events: Sequence[Row]) -> None:
        """Upsert ``rows`` and append ``events`` in one transaction, retried while the error is transient."""
        from .sink import retrying

        retrying(self.label, self.retries)(self._transaction, rows, events)

    def _transaction(self, rows: Sequence[Row], events: Sequence[Row]) -> None:
        try:
            if not self._schema_ok:
                with self.engine.begin() as conn:
                    for what in self.schema.ensure(conn, self.events):
                        log.info("sqlsync %s: %s", self.label, what)
                self._schema_ok = True
            dialect = self.engine.dialect
            upsert, append = self.schema.upsert_sql(dialect), self.schema.events_sql(dialect)
            with self.engine.begin() as conn:
                for i in range(0, len(rows), self.batch_size):
                    conn.exec_driver_sql(upsert, rows[i : i + self.batch_size])
                for i in range(0, len(events), self.batch_size):
                    conn.exec_driver_sql(append, events[i : i + self.batch_size])
        except Exception as exc:
            from .sink import classify

            if classify(exc) != "row":
                self._schema_ok = False  # a dropped or recreated database needs its tables again
            raise


# --- hooks and Flush ---------------------------------------------------------------------------


def on_import(syncer: SyncerInstance, workspace: Workspace, state_json: str) -> None:
    """``OnImport``: buffer the imported state (an import carries no separate sector id)."""
    sid = json.loads(state_json)["id"]
    change = Change(int(sid["miner"]), int(sid["number"]), Workspace(workspace).value, "import", state_json)
    _instance(syncer).pending.append(change)


def on_init(
    syncer: SyncerInstance,
    sectors: Sequence[AllocatedSector],
    workspace: Workspace,
    states_json: Sequence[str],
) -> None:
    """``OnInit``: buffer the initial states of newly allocated sectors."""
    pending, ws = _instance(syncer).pending, Workspace(workspace).value
    pending.extend(Change(s.id.miner, s.id.number, ws, "init", js) for s, js in zip(sectors, states_json))


def on_update(syncer: SyncerInstance, sector_id: SectorID, workspace: Workspace, state_json: str) -> None:
    """``OnUpdate``: buffer the new state."""
    change = Change(sector_id.miner, sector_id.number, Workspace(workspace).value, "update", state_json)
    _instance(syncer).pending.append(change)


def on_finalize(syncer: SyncerInstance, sector_id: SectorID, state_json: str) -> None:
    """``OnFinalize``: buffer the state, now in the offline workspace."""
    change = Change(sector_id.miner, sector_id.number, "offline", "finalize", state_json)
    _instance(syncer).pending.append(change)


def on_restore(syncer: SyncerInstance, sector_id: SectorID, state_json: str) -> None:
    """``OnRestore``: buffer the state, back in the online workspace."""
    change = Change(sector_id.miner, sector_id.number, "online", "restore", state_json)
    _instance(syncer).pending.append(change)


def flush(syncer: SyncerInstance) -> None:
    """``Flush``: write what was buffered; raises ``RejectedChanges`` for rows the database refused."""
    inst = _instance(syncer)
    with inst.lock:
        batch, inst.pending = inst.pending, []
        if not batch:
            return
        try:
            rejected = inst.write(batch)
        except Exception as exc:
            from .sink import classify, describe

            if isinstance(exc, SectorhooksError) or classify(exc) != "transient":
                raise
            raise SinkUnavailable(
                f"{PLUGIN} instance {inst.label!r}: database {masked(inst.url)} unavailable after "
                f"{inst.retries} attempt(s), {len(batch)} change(s) not written: {describe(exc)}"
            ) from exc
    if rejected:
        raise RejectedChanges(rejected)
