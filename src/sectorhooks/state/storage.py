"""What the sectors cost on disk: bytes per sector in the KV and in a SQL sink.

:func:`kv_usage` scans the KV collections the state manager writes (both workspaces' states, the
change log and its meta) a page at a time and adds up their keys and values: the *logical* bytes,
the same on every backend. When the KV is a SQLite file (sqlkv), :func:`sqlite_file_bytes` gives
the *physical* bytes (the database file and its WAL), which include the B-tree's overhead and
the free pages a trim left. :func:`sink_usage` gives a sqlsync sink's bytes: its tables' size as
the database reports it (SQLite ``dbstat`` or the file, PostgreSQL ``pg_total_relation_size``,
MariaDB/MySQL ``information_schema``). ``benchmarks/bench_scale.py`` prints them per sector.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Dict, Optional

import attrs

from sectorhooks_spec import KVStore

from ..changelog.format import LOG, META
from .txn import COLLECTIONS

#: The collections :func:`kv_usage` measures, in this order.
STATE_COLLECTIONS = tuple(COLLECTIONS.values())


@attrs.frozen
class CollectionUsage:
    """One KV collection: how many keys, and their keys' and values' bytes."""

    name: str
    keys: int
    key_bytes: int
    value_bytes: int

    @property
    def bytes(self) -> int:
        return self.key_bytes + self.value_bytes


@attrs.frozen
class KVUsage:
    """The KV's logical bytes per collection, the sectors stored, and the physical bytes when
    known (a SQLite file)."""

    collections: Dict[str, CollectionUsage]
    sectors: int
    physical_bytes: Optional[int] = None

    @property
    def logical_bytes(self) -> int:
        return sum(c.bytes for c in self.collections.values())

    def per_sector(self, total: Optional[int] = None) -> Optional[float]:
        """``total`` bytes (default the physical ones, else the logical) per stored sector."""
        if total is None:
            total = self.physical_bytes if self.physical_bytes is not None else self.logical_bytes
        return None if not self.sectors else total / self.sectors

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready: per collection keys and bytes, totals, and bytes per sector."""
        state = sum(self.collections[n].bytes for n in STATE_COLLECTIONS if n in self.collections)
        return {
            "sectors": self.sectors,
            "collections": {
                n: {"keys": c.keys, "key_bytes": c.key_bytes, "value_bytes": c.value_bytes}
                for n, c in self.collections.items()
            },
            "logical_bytes": self.logical_bytes,
            "physical_bytes": self.physical_bytes,
            "state_bytes_per_sector": _ratio(state, self.sectors),
            "logical_bytes_per_sector": _ratio(self.logical_bytes, self.sectors),
            "physical_bytes_per_sector": _ratio(self.physical_bytes, self.sectors),
        }


def _ratio(total: Optional[int], sectors: int) -> Optional[float]:
    return None if total is None or not sectors else round(total / sectors, 1)


def collection_usage(kv: KVStore, name: str) -> CollectionUsage:
    """Keys and bytes of collection ``name``, read by one streamed scan (nothing kept)."""
    keys = key_bytes = value_bytes = 0
    with contextlib.closing(kv.open_collection(name).scan(b"")) as items:
        for key, value in items:
            keys += 1
            key_bytes += len(key)
            value_bytes += len(value)
    return CollectionUsage(name, keys, key_bytes, value_bytes)


def kv_usage(kv: KVStore, url: Optional[str] = None) -> KVUsage:
    """The state collections', the change log's and its meta's bytes; ``url`` (the KV's
    SQLAlchemy URL, sqlkv's ``Meta.url``): a SQLite file's physical size too."""
    usage = {name: collection_usage(kv, name) for name in (*STATE_COLLECTIONS, LOG, META)}
    sectors = sum(usage[n].keys for n in STATE_COLLECTIONS)
    return KVUsage(usage, sectors, sqlite_file_bytes(url) if url else None)


def sqlite_path(url: str) -> Optional[Path]:
    """The file of a ``sqlite:///`` URL (``None`` for another database or an in-memory one)."""
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def sqlite_file_bytes(url: str) -> Optional[int]:
    """Bytes of a SQLite URL's database file and its ``-wal`` (``None``: not a SQLite file)."""
    path = sqlite_path(url)
    if path is None or not path.exists():
        return None
    wal = Path(f"{path}-wal")
    return os.path.getsize(path) + (os.path.getsize(wal) if wal.exists() else 0)


def sink_usage(url: str, table_prefix: str = "") -> Dict[str, Any]:
    """A sqlsync sink's size: ``{"rows", "bytes", "tables": {name: bytes}}`` of its
    ``<prefix>sectors`` and ``<prefix>sector_events`` tables (indexes included)."""
    import sqlalchemy as sa

    tables = [f"{table_prefix}sectors", f"{table_prefix}sector_events"]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            present = [t for t in tables if sa.inspect(conn).has_table(t)]
            q = engine.dialect.identifier_preparer.quote
            rows = (
                conn.execute(sa.text(f"SELECT COUNT(*) FROM {q(tables[0])}")).scalar()
                if tables[0] in present
                else 0
            )
            sizes = {t: _table_bytes(conn, engine.dialect.name, t, url) for t in present}
    finally:
        engine.dispose()
    known = [v for v in sizes.values() if v is not None]
    total = sum(known) if len(known) == len(sizes) else sqlite_file_bytes(url)
    return {"rows": int(rows or 0), "bytes": total, "tables": sizes}


def _table_bytes(conn: Any, dialect: str, table: str, url: str) -> Optional[int]:
    import sqlalchemy as sa

    if dialect == "postgresql":
        return int(conn.execute(sa.text("SELECT pg_total_relation_size(:t)"), {"t": table}).scalar() or 0)
    if dialect in ("mysql", "mariadb"):
        sql = (
            "SELECT data_length + index_length FROM information_schema.tables "
            "WHERE table_schema = DATABASE() AND table_name = :t"
        )
        return int(conn.execute(sa.text(sql), {"t": table}).scalar() or 0)
    if dialect == "sqlite":
        try:  # dbstat: the table's pages and its indexes' (an optional SQLite module)
            sql = (
                "SELECT SUM(pgsize) FROM dbstat WHERE name = :t "
                "OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t)"
            )
            return int(conn.execute(sa.text(sql), {"t": table}).scalar() or 0)
        except sa.exc.OperationalError:
            return None
    return None
