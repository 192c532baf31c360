"""rediskv: a KVStore on Redis (redis-py).

Meta keys (``[Common.DB.Plugin.Meta]``):

===================  =========================================================================
``url``              required. ``redis://[:password@]host:6379/0`` (``rediss://`` for TLS,
                     ``unix:///path.sock``)
``prefix``           key prefix of everything this store writes, default ``sectorhooks:``
``pool_size``        most connections open at once, default 16
``pool_timeout``     seconds to wait for a free connection, then ``StoreUnavailable``; default 10
``socket_timeout``   seconds a command may take, default 10
``connect_timeout``  seconds to connect, default 5
``client_name``      ``CLIENT SETNAME`` of every connection, default ``sectorhooks-rediskv``
===================  =========================================================================

Layout, for a collection ``C`` and prefix ``P``: the value of key ``K`` is the string
``P d:C:K``; the sorted set ``P i:C`` holds every ``K`` of ``C`` with score 0, so ``ZRANGEBYLEX``
gives keys in byte order (collection names cannot contain ``:``, so prefixes never overlap);
the counter ``P v:C`` changes with every write to ``C`` (scans in transactions watch it). A put
or delete changes all three in one ``MULTI``. See :mod:`.redis_store` for transactions.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from sectorhooks_spec import MetaReader

PLUGIN = "rediskv"
META_KEYS = ("url", "prefix", "pool_size", "pool_timeout", "socket_timeout", "connect_timeout", "client_name")


def parse_meta(meta: Mapping[str, Any]) -> Dict[str, Any]:
    """Validate meta; returns the options :class:`.redis_store.RedisStore` takes."""
    r = MetaReader(PLUGIN, meta, META_KEYS)
    url = r.text("url", example='"redis://127.0.0.1:6379/0"')
    if url.split("://", 1)[0].lower() not in ("redis", "rediss", "unix"):
        raise r.error("url", f"must start with redis://, rediss:// or unix://, got {url!r}")
    prefix = r.get("prefix", "sectorhooks:")
    if not isinstance(prefix, str):
        raise r.error("prefix", f"must be a string, got {prefix!r}")
    client_name = r.text("client_name", "sectorhooks-rediskv")
    if any(c.isspace() for c in client_name):
        raise r.error("client_name", f"cannot contain spaces: {client_name!r}")
    return {
        "url": url,
        "prefix": prefix,
        "pool_size": r.integer("pool_size", 16, minimum=1),
        "pool_timeout": r.real("pool_timeout", 10.0, minimum=0.001),
        "socket_timeout": r.real("socket_timeout", 10.0, minimum=0.001),
        "connect_timeout": r.real("connect_timeout", 5.0, minimum=0.001),
        "client_name": client_name,
    }


def open_store(meta: Mapping[str, Any]) -> Any:
    """``Constructor(meta)``: connect (``PING``) and return the store."""
    options = parse_meta(meta)
    from .redis_store import RedisStore  # redis-py is imported here, not at plugin load

    return RedisStore(**options)
