"""The SyncSectorState delivery suite over the bundled sqlsync, on SQLite, PostgreSQL and MariaDB:
the installed suite, :mod:`sectorhooks.testing.sync_contracts`, with sqlsync as the plugin under
test (what ``pytest --sectorhooks-plugin contrib_plugins/sqlsync --sectorhooks-meta url=...``
runs). Server backends fail under ``CI=true`` and are skipped elsewhere when the server is down."""

from __future__ import annotations

from pathlib import Path

import pytest

from sectorhooks.loader import bundled_plugins_dir
from sectorhooks.testing.sync_contracts import *  # noqa: F403  (the suite's tests, collected here)
from sectorhooks.testing.target import PluginUnderTest


@pytest.fixture(params=["sqlsync-sqlite", "sqlsync-postgresql", "sqlsync-mariadb"])
def sectorhooks_target(request: pytest.FixtureRequest, tmp_path: Path) -> PluginUnderTest:
    if request.param == "sqlsync-sqlite":
        url = f"sqlite:///{tmp_path / 'sink.sqlite3'}"
    elif request.param == "sqlsync-postgresql":
        url, _ = request.getfixturevalue("pg_database")
    else:
        url, _ = request.getfixturevalue("mysql_database")
    return PluginUnderTest(bundled_plugins_dir() / "sqlsync", {"url": url}, request.param)
