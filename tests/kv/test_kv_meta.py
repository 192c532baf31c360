"""Bundled KVStore plugins: manifests, light imports, and meta errors that name plugin and key."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any, Dict

import pytest

from kv import kvplugins
from sectorhooks_spec.errors import StoreUnavailable
from sectorhooks_spec.kinds import Kind
from support import python_env

PLUGINS = ("memdb", "sqlkv", "rediskv")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", PLUGINS)
def test_manifest_is_valid(name: str) -> None:
    m = kvplugins.manifest(name)
    assert m.name == name and m.kind is Kind.KV_STORE and m.version
    assert [(e.ext_point, e.hook) for e in m.exports] == [("Constructor", "kvstore_constructor")]
    assert callable(kvplugins.constructor(name))


def test_manifests_declare_their_requirements() -> None:
    assert any(r.startswith("sqlalchemy") for r in kvplugins.manifest("sqlkv").requires)
    assert any(r.startswith("redis") for r in kvplugins.manifest("rediskv").requires)


def test_loading_a_plugin_does_not_import_its_driver() -> None:
    code = (
        "import sys; from kv import kvplugins\n"
        "for n in ('memdb', 'sqlkv', 'rediskv'): kvplugins.constructor(n)\n"
        "heavy = [m for m in ('sqlalchemy', 'redis', 'psycopg', 'pymysql') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=python_env()
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_plugins_import_only_the_spi() -> None:
    for path in (kvplugins.CONTRIB / n for n in PLUGINS):
        for source in path.rglob("*.py"):
            text = source.read_text()
            assert "import sectorhooks\n" not in text and "from sectorhooks " not in text, source
            assert "from sectorhooks." not in text, source


def error_of(plugin: str, meta: Dict[str, Any]) -> str:
    with pytest.raises(ValueError) as err:
        kvplugins.open_store(plugin, meta)
    return str(err.value)


@pytest.mark.parametrize(
    ("meta", "key", "words"),
    [
        ({}, "url", "is missing"),
        ({"url": "oracle://x/y"}, "url", "unsupported scheme"),
        ({"url": "sqlite:///:memory:"}, "url", "memdb"),
        ({"url": "sqlite:////no/such/dir/kv.db"}, "url", "not a directory"),
        ({"url": "sqlite:///kv.db", "table": "kv; drop"}, "table", "identifier"),
        ({"url": "sqlite:///kv.db", "pool_size": 0}, "pool_size", ">= 1"),
        ({"url": "sqlite:///kv.db", "pool_size": 1.5}, "pool_size", "integer"),
        ({"url": "sqlite:///kv.db", "pool_size": True}, "pool_size", "integer"),
        ({"url": "sqlite:///kv.db", "lock_timeout": "soon"}, "lock_timeout", "number"),
        ({"url": "sqlite:///kv.db", "synchronous": "OFF"}, "synchronous", "NORMAL, FULL"),
        ({"url": "sqlite:///kv.db", "mmap_size": -1}, "mmap_size", ">= 0"),
        ({"url": "sqlite:///kv.db", "mmap_size": "big"}, "mmap_size", "integer >= 0, got 'big'"),
        ({"url": "sqlite:///kv.db", "echo": True}, "echo", "known keys: url, table"),
        ({"url": "sqlite:///kv.db", "pool_sise": 3}, "pool_sise", "did you mean 'pool_size'"),
    ],
)
def test_sqlkv_meta_errors(meta: Dict[str, Any], key: str, words: str) -> None:
    text = error_of("sqlkv", meta)
    assert f"plugin 'sqlkv' meta key '{key}'" in text and words in text, text


@pytest.mark.parametrize(
    ("meta", "key", "words"),
    [
        ({}, "url", "is missing"),
        ({"url": "http://x"}, "url", "redis://"),
        ({"url": "redis://x", "prefix": 3}, "prefix", "string"),
        ({"url": "redis://x", "socket_timeout": -1}, "socket_timeout", ">= 0.001"),
        ({"url": "redis://x", "client_name": "a b"}, "client_name", "spaces"),
        ({"url": "redis://x", "prefixx": "p"}, "prefixx", "did you mean 'prefix'"),
    ],
)
def test_rediskv_meta_errors(meta: Dict[str, Any], key: str, words: str) -> None:
    text = error_of("rediskv", meta)
    assert f"plugin 'rediskv' meta key '{key}'" in text and words in text, text


def test_memdb_takes_no_meta() -> None:
    assert "plugin 'memdb'" in error_of("memdb", {"url": "x"}) and "'url'" in error_of("memdb", {"url": "x"})


def test_sqlkv_picks_the_bundled_drivers() -> None:
    from importlib import import_module

    parse = import_module(kvplugins.constructor("sqlkv").__module__).parse_meta
    assert parse({"url": "postgresql://u@h/db"})["url"] == "postgresql+psycopg://u@h/db"
    assert parse({"url": "mysql://u@h/db"})["url"] == "mysql+pymysql://u@h/db"
    assert parse({"url": "mariadb://u@h/db"})["url"] == "mariadb+pymysql://u@h/db"
    assert parse({"url": "sqlite:///kv.db", "pool_size": "7"})["pool_size"] == 7  # TOML strings are fine


def test_sqlkv_mmap_size_reaches_every_sqlite_connection(tmp_path) -> None:
    for meta, want in (({}, 0), ({"mmap_size": 0}, 0), ({"mmap_size": 4096 * 16}, 4096 * 16)):
        store = kvplugins.open_store("sqlkv", {"url": f"sqlite:///{tmp_path / f'kv{want}.db'}", **meta})
        try:
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == want
        finally:
            store.close()


@pytest.mark.parametrize("plugin", ["sqlkv-postgresql", "sqlkv-mariadb", "rediskv"])
def test_unreachable_server_is_store_unavailable_without_secrets(plugin: str) -> None:
    port = closed_port()
    urls = {
        "sqlkv-postgresql": f"postgresql+psycopg://u:s3cret@127.0.0.1:{port}/db",
        "sqlkv-mariadb": f"mysql+pymysql://u:s3cret@127.0.0.1:{port}/db",
        "rediskv": f"redis://:s3cret@127.0.0.1:{port}/0",
    }
    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as err:
        kvplugins.open_store(plugin.split("-")[0], {"url": urls[plugin], "connect_timeout": 2})
    assert time.monotonic() - start < 15
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "s3cret" not in text, text
