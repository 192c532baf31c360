"""Reading a sink back: the ``ReadBack`` extension point ``sync verify`` and the demo page through.

:func:`read_back` is the exported impl (``manifest.toml``: ``{ extPoint = "ReadBack", impl =
"read_back" }``): one page of ``<prefix>sectors`` in (miner, number) order, read with the
instance's own settings and engine (keyset paging). :func:`read_rows` reads a whole table by
URL, for tests and tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sectorhooks_spec import SectorID, SyncedRow, SyncerInstance

from .settings import PLUGIN, PREFIX_RE, settings_from_meta

Page = List[Tuple[int, int, int, str]]  # (miner, number, version, state_json)


def read_back(syncer: SyncerInstance, after: Optional[SectorID], limit: int) -> List[SyncedRow]:
    """``ReadBack``: at most ``limit`` rows of the instance's sink, ordered by (miner, number),
    strictly after ``after`` (``None``: from the first); ``[]`` when the table does not exist.

    Keyset paging (an index range on the primary key, however deep the page) on the instance's
    engine, the one its writer uses, so the pages of a read share one connection pool."""
    from .instances import instance

    settings = settings_from_meta(syncer.name, syncer.meta or {})
    url, prefix = settings["url"], settings["prefix"]
    if not _may_exist(url, prefix):
        return []
    writer = instance(syncer)
    if writer.url == url:
        page = _select(writer.engine, prefix, after, limit)
    else:  # pragma: no cover - an instance name reused with another url in one process
        page = _select_once(url, prefix, after, limit)
    return [SyncedRow(SectorID(m, n), v, s) for m, n, v, s in page]


def read_rows(url: str, table_prefix: str = "") -> Dict[str, Tuple[int, str]]:
    """``str(SectorID) -> (version, state_json)`` as stored in ``<prefix>sectors`` ({} if absent)."""
    if not _may_exist(url, table_prefix):
        return {}
    return {f"s-t0{m}-{n}": (v, s) for m, n, v, s in _select_once(url, table_prefix, None, None)}


def _may_exist(url: str, table_prefix: str) -> bool:
    """False when the sink surely holds nothing: a SQLite file that does not exist (looking must
    not create it); a bad prefix is a ``ValueError``."""
    import sqlalchemy as sa

    if not PREFIX_RE.match(table_prefix):
        raise ValueError(f"{PLUGIN}: bad table_prefix {table_prefix!r}")
    u = sa.engine.make_url(url)
    return not (u.get_backend_name() == "sqlite" and u.database and not Path(u.database).exists())


def _select_once(url: str, table_prefix: str, after: Optional[SectorID], limit: Optional[int]) -> Page:
    from .sink import create_engine

    engine = create_engine(url)
    try:
        return _select(engine, table_prefix, after, limit)
    finally:
        engine.dispose()


def _select(engine: Any, table_prefix: str, after: Optional[SectorID], limit: Optional[int]) -> Page:
    """Rows after ``after`` in (miner, number) order, at most ``limit``: the rest of ``after``'s
    miner (``miner = m AND number > n``), then the next miners (``miner > m``); each is a range of
    the primary key's index, so a page costs the same at the start and at the end of a big sink."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        table = f"{table_prefix}sectors"
        if not sa.inspect(conn).has_table(table):
            return []
        quoted = engine.dialect.identifier_preparer.quote(table)
        head = f"SELECT miner, number, version, state_json FROM {quoted}"
        page: Page = []

        def run(where: str, order: str, params: Dict[str, Any]) -> None:
            sql = head + where + order
            if limit is not None:
                sql += " LIMIT :limit"
                params["limit"] = int(limit) - len(page)
            page.extend((int(m), int(n), int(v), s) for m, n, v, s in conn.execute(sa.text(sql), params))

        if after is None:
            run("", " ORDER BY miner, number", {})
            return page
        run(" WHERE miner = :m AND number > :n", " ORDER BY number", {"m": after.miner, "n": after.number})
        if limit is None or len(page) < limit:
            run(" WHERE miner > :m", " ORDER BY miner, number", {"m": after.miner})
        return page
