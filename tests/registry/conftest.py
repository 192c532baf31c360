"""Registry fixtures: ``kv_backend`` runs a test on real Redis and on real PostgreSQL."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import pytest


def backend_meta(request: pytest.FixtureRequest, backend: str) -> Tuple[str, Dict[str, Any]]:
    """``(KVStore plugin, meta)`` on a fresh Redis prefix or PostgreSQL database."""
    if backend == "rediskv":
        url, prefix = request.getfixturevalue("redis_prefix")
        return "rediskv", {"url": url, "prefix": prefix}
    if backend == "sqlkv-postgresql":
        url, _ = request.getfixturevalue("pg_database")
        return "sqlkv", {"url": url}
    raise ValueError(backend)


@pytest.fixture(params=["rediskv", "sqlkv-postgresql"])
def kv_backend(request: pytest.FixtureRequest) -> Tuple[str, Dict[str, Any]]:
    """Each server backend in turn."""
    return backend_meta(request, request.param)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> Tuple[str, Dict[str, Any]]:
    """rediskv on a fresh prefix (the multi-replica tests share one Redis)."""
    return backend_meta(request, "rediskv")
