"""Shared fixtures. Server fixtures give each test its own database / key prefix."""

from __future__ import annotations

from typing import Iterator, Tuple

import pytest

import servers


@pytest.fixture
def pg_database() -> Iterator[Tuple[str, str]]:
    """(SQLAlchemy URL, name) of a fresh, empty PostgreSQL database."""
    yield from servers.fresh_pg_database()


@pytest.fixture
def mysql_database() -> Iterator[Tuple[str, str]]:
    """(SQLAlchemy URL, name) of a fresh, empty MariaDB database."""
    yield from servers.fresh_mysql_database()


@pytest.fixture
def redis_prefix() -> Iterator[Tuple[str, str]]:
    """(redis URL, unique key prefix), keys removed afterwards."""
    yield from servers.fresh_redis_prefix()
