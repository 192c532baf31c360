"""Reading a sink back: the ``ReadBack`` extension point ``sync verify`` and the demo page through.

:func:`read_back` is the exported impl (``manifest.toml``: ``{ extPoint = "ReadBack", impl =
"read_back" }``): one page of ``<prefix>sectors`` in (miner, number) order, read with the
instance's own settings. :func:`read_rows` reads a whole table by URL, for tests and tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sectorhooks_spec import SectorID, SyncedRow, SyncerInstance

from .settings import PLUGIN, PREFIX_RE, settings_from_meta

Page = List[Tuple[int, int, int, str]]  # (miner, number, version, state_json)


def read_back(syncer: SyncerInstance, after: Optional[SectorID], limit: int) -> List[SyncedRow]:
    """``ReadBack``: at most ``limit`` rows of the instance's sink, ordered by (miner, number),
    strictly after ``after`` (``None``: from the first); ``[]`` when the table does not exist."""
    settings = settings_from_meta(syncer.name, syncer.meta or {})
    page = _select(settings["url"], settings["prefix"], after, limit)
    return [SyncedRow(SectorID(m, n), v, s) for m, n, v, s in page]


def read_rows(url: str, table_prefix: str = "") -> Dict[str, Tuple[int, str]]:
    """``str(SectorID) -> (version, state_json)`` as stored in ``<prefix>sectors`` ({} if absent)."""
    return {f"s-t0{m}-{n}": (v, s) for m, n, v, s in _select(url, table_prefix, None, None)}


def _select(url: str, table_prefix: str, after: Optional[SectorID], limit: Optional[int]) -> Page:
    import sqlalchemy as sa

    from .sink import create_engine

    if not PREFIX_RE.match(table_prefix):
        raise ValueError(f"{PLUGIN}: bad table_prefix {table_prefix!r}")
    u = sa.engine.make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and not Path(u.database).exists():
        return []  # do not create an empty file by looking
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            table = f"{table_prefix}sectors"
            if not sa.inspect(conn).has_table(table):
                return []
            quoted = engine.dialect.identifier_preparer.quote(table)
            sql = f"SELECT miner, number, version, state_json FROM {quoted}"
            params: Dict[str, Any] = {}
            if after is not None:
                sql += " WHERE miner > :m OR (miner = :m AND number > :n)"
                params.update(m=after.miner, n=after.number)
            sql += " ORDER BY miner, number"
            if limit is not None:
                sql += " LIMIT :limit"
                params["limit"] = int(limit)
            rows = conn.execute(sa.text(sql), params)
            return [(int(m), int(n), int(v), s) for m, n, v, s in rows]
    finally:
        engine.dispose()
