"""KV fixtures: ``kv_store`` runs a test once per bundled backend, each on a fresh database.

``sectorhooks_target`` does the same for the installed conformance suite
(:mod:`sectorhooks.testing.kv_contracts`, imported by ``test_kv_conformance.py``): each bundled
backend is the plugin under test, loaded through the host from its directory exactly as
``pytest --sectorhooks-plugin contrib_plugins/sqlkv --sectorhooks-meta url=...`` would.

Backends: ``memdb``, ``sqlkv-sqlite`` (a file in tmp_path), ``sqlkv-postgresql`` and
``sqlkv-mariadb`` (a fresh database each, dropped afterwards), ``rediskv`` (a unique key prefix,
deleted afterwards). Server backends fail under ``CI=true`` and are skipped elsewhere when the
server is down (see ``tests/servers.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator

import attrs
import pytest

from kv import kvplugins
from sectorhooks.testing.target import IN_MEMORY, KVTraits, PluginUnderTest

BACKENDS = ("memdb", "sqlkv-sqlite", "sqlkv-postgresql", "sqlkv-mariadb", "rediskv")
SERVER_BACKENDS = ("sqlkv-postgresql", "sqlkv-mariadb", "rediskv")


@attrs.frozen
class StoreSpec:
    """How to open one backend: plugin name and meta (what ``[Common.DB.Plugin]`` would say)."""

    backend: str
    plugin: str
    meta: Dict[str, Any]

    def open(self, **extra: Any) -> Any:
        return kvplugins.open_store(self.plugin, {**self.meta, **extra})


def make_spec(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> StoreSpec:
    """Provision a fresh database / prefix for ``backend`` (cleaned up by the server fixtures)."""
    if backend == "memdb":
        return StoreSpec(backend, "memdb", {})
    if backend == "sqlkv-sqlite":
        return StoreSpec(backend, "sqlkv", {"url": f"sqlite:///{tmp_path / 'kv.sqlite3'}"})
    if backend == "sqlkv-postgresql":
        url, _ = request.getfixturevalue("pg_database")
        return StoreSpec(backend, "sqlkv", {"url": url})
    if backend == "sqlkv-mariadb":
        url, _ = request.getfixturevalue("mysql_database")
        return StoreSpec(backend, "sqlkv", {"url": url})
    if backend == "rediskv":
        url, prefix = request.getfixturevalue("redis_prefix")
        return StoreSpec(backend, "rediskv", {"url": url, "prefix": prefix})
    raise ValueError(backend)


#: What each backend must show in the isolation contracts (see KVTraits).
TRAITS = {
    "memdb": KVTraits(locking=True, snapshots=True, view_blocks_writers=True, process_local=IN_MEMORY),
    "sqlkv-sqlite": KVTraits(locking=True, snapshots=True, view_blocks_writers=False),
    "sqlkv-mariadb": KVTraits(locking=True, snapshots=True, view_blocks_writers=False),
    "sqlkv-postgresql": KVTraits(locking=False, snapshots=True, view_blocks_writers=False),
    "rediskv": KVTraits(locking=False, snapshots=False, view_blocks_writers=False),
}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_spec(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> StoreSpec:
    return make_spec(request, backend, tmp_path)


@pytest.fixture
def sectorhooks_target(store_spec: StoreSpec) -> PluginUnderTest:
    """Each bundled backend as the conformance suite's plugin under test (a fresh database each)."""
    return PluginUnderTest(
        kvplugins.CONTRIB / store_spec.plugin, store_spec.meta, store_spec.backend, TRAITS[store_spec.backend]
    )


@pytest.fixture
def kv_store(store_spec: StoreSpec) -> Iterator[Any]:
    """An open store of each backend, closed afterwards (its database / prefix is dropped)."""
    store = store_spec.open()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(params=SERVER_BACKENDS)
def server_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """Only the backends with a server (for fault tests)."""
    return make_spec(request, request.param, tmp_path)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running (multi-process, large volumes)")
