"""Fixtures for the sqlsync tests: a started host and an empty database on each backend."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost

BACKENDS = ("sqlite", "postgresql", "mariadb")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[PluginHost]:
    """A started host with the bundled plugins (sqlsync among them)."""
    h = PluginHost(HostConfig(data_dir=tmp_path, plugins=PluginsConfig(entry_points=False))).load().start()
    record = h.records.get("sqlsync")
    assert record is not None and record.bound is not None, record and record.error
    try:
        yield h
    finally:
        h.shutdown()


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLAlchemy URL of an empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sink.sqlite'}"
    if request.param == "postgresql":
        return request.getfixturevalue("pg_database")[0]  # type: ignore[no-any-return]
    return request.getfixturevalue("mysql_database")[0]  # type: ignore[no-any-return]
