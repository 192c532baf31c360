"""sqlkv: a KVStore on SQL databases through SQLAlchemy Core.

Backends: SQLite (the embedded default: one file, WAL mode), PostgreSQL (psycopg 3) and
MariaDB/MySQL (pymysql). Meta keys (``[Common.DB.Plugin.Meta]``):

==================  ==========================================================================
``url``             required. SQLAlchemy URL: ``sqlite:////abs/path/kv.sqlite3``,
                    ``postgresql+psycopg://user:pw@host:5432/db``, ``mysql+pymysql://user@host/db``
                    (``postgresql://`` / ``mysql://`` / ``mariadb://`` pick those drivers)
``table``           table name, default ``sectorhooks_kv``
``pool_size``       connections kept open, default 5 (SQLite too: one per thread)
``max_overflow``    extra connections under load, default 10
``pool_timeout``    seconds to wait for a free connection, then ``StoreUnavailable``; default 10
``connect_timeout`` seconds to connect to a server, default 10
``lock_timeout``    seconds a transaction waits for a lock (SQLite busy timeout, PostgreSQL
                    ``lock_timeout``, InnoDB ``innodb_lock_wait_timeout``), then
                    ``TransactionConflict``; default 10
``synchronous``     SQLite only: ``NORMAL`` (default; durable across crashes of the process, WAL)
                    or ``FULL`` (also across power loss, slower)
``mmap_size``       SQLite only: bytes of the database file read through a memory map instead of
                    ``read()`` calls; default 0 (off). An operator setting, not a speed default:
                    268435456 (256 MiB) measured x1.05 changes/s on ``benchmarks/bench_sync.py``
                    (b) (docs/SPEED.md), but the mapped pages count in the host's RSS once per
                    pooled connection (``sync verify`` of 10^6 sectors: 401 MB peak RSS with
                    256 MiB, 58 MB with 0, ``benchmarks/bench_scale.py``); with a map, a failing
                    disk is a ``SIGBUS``, not an error
==================  ==========================================================================

Layout: one table ``(collection, key, value)`` with primary key ``(collection, key)``; a
collection exists as soon as it is named. Byte order of keys is the database's: ``BLOB``,
``BYTEA`` and ``VARBINARY`` all compare bytewise. See :mod:`.store` for transactions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Mapping

from sectorhooks_spec import MetaReader

PLUGIN = "sqlkv"
META_KEYS = (
    "url",
    "table",
    "pool_size",
    "max_overflow",
    "pool_timeout",
    "connect_timeout",
    "lock_timeout",
    "synchronous",
    "mmap_size",
)
MMAP_SIZE = 0
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "mariadb+pymysql": "mariadb+pymysql",
}


def parse_meta(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """Validate meta; returns the options :class:`.store.SQLStore` takes (no heavy imports)."""
    r = MetaReader(PLUGIN, meta, META_KEYS)
    url = r.text("url", example='"sqlite:////var/lib/sectorhooks/kv.sqlite3"')
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _DRIVERS:
        raise r.error(
            "url",
            f"has an unsupported scheme {scheme!r}: use sqlite:///PATH, postgresql+psycopg://... "
            "or mysql+pymysql://...",
        )
    driver = _DRIVERS[scheme.lower()]
    if driver == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        path = path.split("?", 1)[0]
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            raise r.error("url", "names an in-memory SQLite database; use the memdb plugin for that")
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise r.error("url", f"points into {str(parent)!r}, which is not a directory; create it first")
    table = r.text("table", "sectorhooks_kv")
    if not _TABLE_RE.match(table):
        raise r.error("table", f"is not a plain SQL identifier: {table!r} (letters, digits, _)")
    return {
        "url": f"{driver}://{rest}",
        "table": table,
        "pool_size": r.integer("pool_size", 5, minimum=1),
        "max_overflow": r.integer("max_overflow", 10, minimum=0),
        "pool_timeout": r.real("pool_timeout", 10.0, minimum=0.001),
        "connect_timeout": r.integer("connect_timeout", 10, minimum=1),
        "lock_timeout": r.real("lock_timeout", 10.0, minimum=0.001),
        "synchronous": r.choice("synchronous", "NORMAL", ("NORMAL", "FULL")),
        "mmap_size": r.integer("mmap_size", MMAP_SIZE, minimum=0),
    }


def open_store(meta: Mapping[str, Any]) -> Any:
    """``Constructor(meta)``: connect, create the table if missing, return the store."""
    options = parse_meta(meta)
    from .store import SQLStore  # SQLAlchemy is imported here, not at plugin load

    return SQLStore(**options)
