"""sqlsync's two tables, how a state's JSON maps onto their columns, and the dialect SQL.

``sectors`` gets one column per top-level scalar field of :class:`SectorState` (derived from
its attrs fields, so a field added to ``SectorState`` becomes a column, added by
:func:`ensure_schema` with ``ALTER TABLE ... ADD COLUMN``), a few nested "main fields" (the
state name, CommR/CommD, the message CIDs), the workspace, and the full state as text exactly
as received. ``sector_events`` is the append-only history, keyed by (miner, number, version).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from .rows import NESTED, row_builder, scalar_fields

log = logging.getLogger(__name__)


def _sa_type(kind: str) -> Any:
    if kind == "bool":
        return sa.Boolean()
    if kind == "int":
        return sa.BigInteger()
    if kind == "float":
        return sa.Double()
    return sa.Text()


class Schema:
    """The tables of one sink (one ``table_prefix``), their SQL, and the ``sectors`` row builder."""

    def __init__(
        self, prefix: str = "", scalars: Optional[Sequence[Tuple[str, str]]] = None, decoder: str = "auto"
    ):
        self.prefix = prefix
        self.scalars = tuple(scalar_fields() if scalars is None else scalars)
        self.metadata = sa.MetaData()
        long_text = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
        opts: Dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
        cols: List[sa.Column] = [  # type: ignore[type-arg]
            sa.Column("miner", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("number", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("workspace", sa.String(16)),
        ]
        cols += [sa.Column(c, sa.String(255)) for c, *_ in NESTED]
        for name, kind in self.scalars:
            cols.append(sa.Column(name, _sa_type(kind), nullable=name != "version"))
        cols.append(sa.Column("state_json", long_text, nullable=False))
        self.sectors = sa.Table(f"{prefix}sectors", self.metadata, *cols, **opts)
        self.events = sa.Table(
            f"{prefix}sector_events",
            self.metadata,
            sa.Column("miner", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("number", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("event", sa.String(16), nullable=False),
            sa.Column("workspace", sa.String(16)),
            sa.Column("updated_at", sa.Double()),
            sa.Column("state_json", long_text, nullable=False),
            **opts,
        )
        self.sector_columns = tuple(c.name for c in self.sectors.columns)
        self.event_columns = tuple(c.name for c in self.events.columns)
        self.row = row_builder(self.scalars, decoder)

    # --- DDL -------------------------------------------------------------------------------

    def ensure(self, conn: sa.Connection, events: bool) -> List[str]:
        """Create missing tables, add missing columns; returns what it did (for the log)."""
        done: List[str] = []
        insp = sa.inspect(conn)
        existing = set(insp.get_table_names())
        for table in (self.sectors, self.events) if events else (self.sectors,):
            if table.name not in existing:
                table.create(conn, checkfirst=True)
                done.append(f"created table {table.name}")
                continue
            have = {c["name"] for c in insp.get_columns(table.name)}
            for col in table.columns:
                if col.name in have:
                    continue
                spec = sa.schema.CreateColumn(col).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {_q(conn, table.name)} ADD COLUMN {spec}")
                done.append(f"added column {table.name}.{col.name}")
        return done

    # --- DML, built once per dialect: the hot path runs it with exec_driver_sql ----------

    def upsert_sql(self, dialect: sa.Dialect) -> str:
        """Insert-or-update of ``sectors`` rows that never moves a row to a lower version."""
        t = _q(dialect, self.sectors.name)
        cols = [_q(dialect, c) for c in self.sector_columns]
        head = f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({_params(dialect, len(cols))})"
        v = _q(dialect, "version")
        rest = [c for c in cols[2:] if c != v]
        if _is_mysql(dialect):
            # Assignments run left to right and see earlier ones: version must come last.
            sets = [f"{c} = IF(VALUES({v}) > {v}, VALUES({c}), {c})" for c in rest]
            sets.append(f"{v} = GREATEST({v}, VALUES({v}))")
            return f"{head} ON DUPLICATE KEY UPDATE {', '.join(sets)}"
        sets = [f"{c} = excluded.{c}" for c in [*rest, v]]
        return (
            f"{head} ON CONFLICT ({cols[0]}, {cols[1]}) DO UPDATE SET {', '.join(sets)} "
            f"WHERE {t}.{v} < excluded.{v}"
        )

    def events_sql(self, dialect: sa.Dialect) -> str:
        """Append to ``sector_events``, ignoring (miner, number, version) already there."""
        t = _q(dialect, self.events.name)
        cols = [_q(dialect, c) for c in self.event_columns]
        head = f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({_params(dialect, len(cols))})"
        if _is_mysql(dialect):  # not INSERT IGNORE: that would also hide data errors
            return f"{head} ON DUPLICATE KEY UPDATE {cols[2]} = {cols[2]}"
        return f"{head} ON CONFLICT ({', '.join(cols[:3])}) DO NOTHING"


def _is_mysql(dialect: sa.Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


def _q(dialect_or_conn: Any, name: str) -> str:
    dialect = getattr(dialect_or_conn, "dialect", dialect_or_conn)
    return dialect.identifier_preparer.quote(name)  # type: ignore[no-any-return]


def _params(dialect: sa.Dialect, n: int) -> str:
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)
