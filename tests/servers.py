"""Real database servers for tests: reachability, fresh databases, clean-up.

A test that needs a server it cannot reach fails under ``CI=true`` and is skipped with the reason
elsewhere. Never replace a server with a fake in a test that claims to test that backend.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Iterator, Tuple

import pytest

PG_HOST = os.environ.get("SECTORHOOKS_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("SECTORHOOKS_PG_PORT", "5432"))
PG_USER = os.environ.get("SECTORHOOKS_PG_USER", "postgres")
MY_HOST = os.environ.get("SECTORHOOKS_MYSQL_HOST", "127.0.0.1")
MY_PORT = int(os.environ.get("SECTORHOOKS_MYSQL_PORT", "3306"))
MY_USER = os.environ.get("SECTORHOOKS_MYSQL_USER", "root")
REDIS_HOST = os.environ.get("SECTORHOOKS_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("SECTORHOOKS_REDIS_PORT", "6379"))

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Fail (in CI) or skip (elsewhere) unless ``host:port`` accepts connections."""
    if _reachable(host, port):
        return
    reason = (
        f"{name} is not reachable at {host}:{port}; start it (see .ci/run) or set SECTORHOOKS_*_HOST/PORT"
    )
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def unique_name(prefix: str = "sh") -> str:
    """A fresh lowercase identifier usable as a database / schema / key-prefix name."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def pg_admin_dsn(db: str = "test") -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={db}"


def pg_url(db: str) -> str:
    """SQLAlchemy URL (psycopg 3) for database ``db``."""
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}"


def mysql_url(db: str) -> str:
    """SQLAlchemy URL (pymysql) for database ``db``."""
    return f"mysql+pymysql://{MY_USER}@{MY_HOST}:{MY_PORT}/{db}"


def redis_url() -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def fresh_pg_database() -> Iterator[Tuple[str, str]]:
    """Create an empty PostgreSQL database; yield (sqlalchemy url, name); drop it afterwards."""
    require_server("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    name = unique_name("shpg")
    with psycopg.connect(pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name), name
    finally:
        with psycopg.connect(pg_admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_mysql_database() -> Iterator[Tuple[str, str]]:
    """Create an empty MariaDB database; yield (sqlalchemy url, name); drop it afterwards."""
    require_server("MariaDB", MY_HOST, MY_PORT)
    import pymysql

    name = unique_name("shmy")
    conn = pymysql.connect(host=MY_HOST, port=MY_PORT, user=MY_USER, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
    finally:
        conn.close()
    try:
        yield mysql_url(name), name
    finally:
        conn = pymysql.connect(host=MY_HOST, port=MY_PORT, user=MY_USER, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def fresh_redis_prefix() -> Iterator[Tuple[str, str]]:
    """Yield (redis url, unique key prefix); delete every key under the prefix afterwards."""
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    prefix = unique_name("shrd") + ":"
    try:
        yield redis_url(), prefix
    finally:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
        try:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()
