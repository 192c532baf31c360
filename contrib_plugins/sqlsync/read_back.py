"""Reading a sink back: what ``sync verify`` and the demo compare with the KV, sector by sector."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from .settings import PLUGIN, PREFIX_RE


def read_rows(url: str, table_prefix: str = "") -> Dict[str, Tuple[int, str]]:
    """``str(SectorID) -> (version, state_json)`` as stored in ``<prefix>sectors`` ({} if absent)."""
    import sqlalchemy as sa

    from .sink import create_engine

    if not PREFIX_RE.match(table_prefix):
        raise ValueError(f"{PLUGIN}: bad table_prefix {table_prefix!r}")
    u = sa.engine.make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and not Path(u.database).exists():
        return {}  # do not create an empty file by looking
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            table = f"{table_prefix}sectors"
            if not sa.inspect(conn).has_table(table):
                return {}
            quoted = engine.dialect.identifier_preparer.quote(table)
            sql = f"SELECT miner, number, version, state_json FROM {quoted}"
            return {f"s-t0{m}-{n}": (int(v), s) for m, n, v, s in conn.exec_driver_sql(sql)}
    finally:
        engine.dispose()
