"""sqlsync's two tables, how a state's JSON maps onto their columns, and the dialect SQL.

``sectors`` gets one column per top-level scalar field of :class:`SectorState` (derived from
its attrs fields, so a field added to ``SectorState`` becomes a column, added by
:func:`ensure_schema` with ``ALTER TABLE ... ADD COLUMN``), a few nested "main fields" (the
state name, CommR/CommD, the message CIDs), the workspace, and the full state as text exactly
as received. ``sector_events`` is the append-only history, keyed by (miner, number, version).
"""

from __future__ import annotations

import logging
import re
import typing
from operator import itemgetter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from sectorhooks_spec import SectorState

log = logging.getLogger(__name__)

#: Nested main fields worth a column: (column, parent field, child key, value when parent is null).
NESTED: Tuple[Tuple[str, str, str, Any], ...] = (
    ("state_name", "latest_state", "state", ""),
    ("comm_r", "pre", "comm_r", None),
    ("comm_d", "pre", "comm_d", None),
    ("pre_commit_cid", "message_info", "pre_commit_cid", None),
    ("commit_cid", "message_info", "commit_cid", None),
)
_RESERVED = frozenset({"miner", "number", "workspace", "state_json"} | {n[0] for n in NESTED})
_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
_NONE = type(None)

Row = Tuple[Any, ...]


def scalar_fields(cls: type = SectorState) -> Tuple[Tuple[str, str], ...]:
    """(name, kind) of every top-level field of ``cls`` whose type is a (optional) scalar."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in attrs.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        if typing.get_origin(tp) is typing.Union and len(args) == 2 and _NONE in args:
            tp = args[0] if args[1] is _NONE else args[1]
        kind = _SCALARS.get(tp)
        if kind is not None and f.name not in _RESERVED:
            out.append((f.name, kind))
    return tuple(out)


def _sa_type(kind: str) -> Any:
    if kind == "bool":
        return sa.Boolean()
    if kind == "int":
        return sa.BigInteger()
    if kind == "float":
        return sa.Double()
    return sa.Text()


class Schema:
    """The tables of one sink (one ``table_prefix``) and the row builders for them."""

    def __init__(self, prefix: str = "", scalars: Optional[Sequence[Tuple[str, str]]] = None):
        self.prefix = prefix
        self.scalars = tuple(scalar_fields() if scalars is None else scalars)
        self.metadata = sa.MetaData()
        long_text = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
        opts = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
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
        self.row = self._row_builder()

    def _row_builder(self) -> Callable[[int, int, str, Dict[str, Any], str], Row]:
        names = tuple(n for n, _ in self.scalars)
        pick = itemgetter(*names) if len(names) > 1 else (lambda d: (d[names[0]],))
        assert [n[0] for n in NESTED] == ["state_name", "comm_r", "comm_d", "pre_commit_cid", "commit_cid"]

        def row(miner: int, number: int, workspace: str, d: Dict[str, Any], state_json: str) -> Row:
            """One ``sectors`` row, in column order, from the parsed state."""
            try:
                values = pick(d)
            except KeyError:  # a state written before a field existed
                values = tuple(d.get(n) for n in names)
            ls, pre, mi = d.get("latest_state"), d.get("pre"), d.get("message_info")
            return (
                miner,
                number,
                workspace,
                ls.get("state", "") if ls else "",
                pre.get("comm_r") if pre else None,
                pre.get("comm_d") if pre else None,
                mi.get("pre_commit_cid") if mi else None,
                mi.get("commit_cid") if mi else None,
                *values,
                state_json,
            )

        return row

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


# The codec writes ``..."version":N,"updated_at":F}`` last: read both from the tail without
# parsing the whole document (anchored at the end, so these are the top-level keys).
_TAIL = re.compile(r'"version":(\d+),"updated_at":(-?[0-9.eE+-]+)\}\s*$')


def version_and_time(state_json: str, loads: Callable[[str], Any]) -> Tuple[int, Optional[float]]:
    """(version, updated_at) of a serialized state; reads the tail, parses all only if needed."""
    m = _TAIL.search(state_json, max(0, len(state_json) - 96))
    if m is not None:
        return int(m.group(1)), float(m.group(2))
    d = loads(state_json)
    return int(d["version"]), d.get("updated_at")
