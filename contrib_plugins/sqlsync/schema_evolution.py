"""Tables only ever grow: a missing table is created, a column an older table lacks is added,
nothing is dropped or changed.

A field added to ``SectorState`` becomes a ``sectors`` column (see ``rows.scalar_fields``); a
sink created by an earlier version gets it with ``ALTER TABLE ... ADD COLUMN`` on first use.
Columns sqlsync does not map (an operator's own) are left alone.
"""

from __future__ import annotations

from typing import List, Sequence

import sqlalchemy as sa


def ensure_tables(conn: sa.Connection, metadata: sa.MetaData, tables: Sequence[sa.Table]) -> List[str]:
    """Create those of ``tables`` that do not exist, add the missing columns to the others;
    returns what it did (for the log)."""
    existing = set(sa.inspect(conn).get_table_names())
    new = [t for t in tables if t.name not in existing]
    metadata.create_all(conn, tables=new)
    old = [t for t in tables if t.name in existing]
    return [f"created table {t.name}" for t in new] + add_missing_columns(conn, old)


def add_missing_columns(conn: sa.Connection, tables: Sequence[sa.Table]) -> List[str]:
    """Add to each existing table the columns it lacks; returns what it did (for the log)."""
    done: List[str] = []
    insp = sa.inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    for table in tables:
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have:
                spec = sa.schema.CreateColumn(col).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {quote(table.name)} ADD COLUMN {spec}")
                done.append(f"added column {table.name}.{col.name}")
    return done
