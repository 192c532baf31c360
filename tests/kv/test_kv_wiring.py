"""Host wiring: ``[Common.DB]`` opens the store through the named KVStore plugin (real PluginHost)."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest

from sectorhooks.config import parse_config
from sectorhooks.errors import PluginCallError, UnknownPluginError
from sectorhooks.host import PluginHost
from sectorhooks.kv import RetryingKVStore, open_kvstore
from sectorhooks_spec import KVStore
from sectorhooks_spec.errors import StoreUnavailable
from sectorhooks_spec.kinds import Kind


def make_host(tmp_path: Path, db: Optional[Dict[str, Any]] = None, extra: Tuple[Path, ...] = ()) -> tuple:
    common: Dict[str, Any] = {"DataDir": str(tmp_path / "data")}
    if db is not None:
        common["DB"] = db
    config = parse_config({"Common": common}, str(tmp_path / "sectorhooks.toml"), tmp_path)
    return PluginHost(config).load(extra_dirs=extra).start(), config


def plugin_db(name: str, meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"Driver": "plugin", "Plugin": {"PluginName": name, "Meta": meta or {}}}


def test_bundled_kvstore_plugins_load(tmp_path: Path) -> None:
    host, _ = make_host(tmp_path)
    with host:
        kv = {r.name: r.status.value for r in host.plugins(Kind.KV_STORE)}
    assert {"memdb", "sqlkv", "rediskv"} <= set(kv)
    assert all(kv[n] == "active" for n in ("memdb", "sqlkv", "rediskv")), kv


def test_no_db_section_means_sqlkv_on_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    host, config = make_host(tmp_path)
    with host:
        store = open_kvstore(host, config)
        try:
            assert isinstance(store, RetryingKVStore) and isinstance(store, KVStore)
            assert store.plugin == "sqlkv"
            store.open_collection("sectors").update(lambda t: t.put(b"s1", b"state"))
            with store.inner.engine.connect() as conn:  # the store's own connections: sqlkv's default map
                assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == 0
        finally:
            store.close()
    path = tmp_path / "data" / "kv.sqlite3"
    conn = sqlite3.connect(str(path))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT collection, key, value FROM sectorhooks_kv").fetchall() == [
            ("sectors", b"s1", b"state")
        ]
    finally:
        conn.close()


def test_plugin_driver_opens_the_named_plugin(tmp_path: Path) -> None:
    host, config = make_host(tmp_path, plugin_db("memdb"))
    with host:
        store = open_kvstore(host, config)
        assert store.plugin == "memdb" and type(store.inner).__name__ == "MemStore"
        coll = store.open_collection("c")
        coll.put(b"k", b"v")
        assert coll.update(lambda t: t.get(b"k")) == b"v"


def test_plugin_driver_passes_meta_to_rediskv(tmp_path: Path, redis_prefix: Any) -> None:
    import redis

    url, prefix = redis_prefix
    host, config = make_host(tmp_path, plugin_db("rediskv", {"url": url, "prefix": prefix}))
    with host:
        store = open_kvstore(host, config)
        try:
            store.open_collection("sectors").put(b"s1", b"x")
        finally:
            store.close()
    client = redis.Redis.from_url(url)
    try:
        assert client.get(prefix.encode() + b"d:sectors:s1") == b"x"
    finally:
        client.close()


def test_plugin_driver_passes_meta_to_sqlkv_on_postgresql(tmp_path: Path, pg_database: Any) -> None:
    url, _ = pg_database
    host, config = make_host(tmp_path, plugin_db("sqlkv", {"url": url, "table": "kv_wiring"}))
    with host:
        store = open_kvstore(host, config)
        try:
            store.update(lambda st: st.collection("a").put(b"k", b"v"))
            assert "kv_wiring" in repr(store.inner)
            assert store.open_collection("a").get(b"k") == b"v"
        finally:
            store.close()


def test_unknown_plugin_name_lists_the_loaded_kvstore_plugins(tmp_path: Path) -> None:
    host, config = make_host(tmp_path, plugin_db("mysqlkv"))
    with host, pytest.raises(UnknownPluginError) as err:
        open_kvstore(host, config)
    kv_names = {r.name for r in host.plugins(Kind.KV_STORE)}
    assert {"memdb", "rediskv", "sqlkv"} <= set(err.value.available) <= kv_names
    text = str(err.value)
    assert "'mysqlkv'" in text and "PluginName" in text and "sectorhooks.toml" in text
    assert "'memdb'" in text and "'rediskv'" in text and "'sqlkv'" in text


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ({}, ["'url'", "missing"]),
        ({"url": "sqlite:///kv.db", "pool_size": "lots"}, ["'pool_size'", "integer"]),
        ({"url": "sqlite:///kv.db", "poolsize": 3}, ["'poolsize'", "did you mean 'pool_size'"]),
    ],
)
def test_bad_meta_names_the_plugin_and_the_key(tmp_path: Path, meta: Dict[str, Any], words: list) -> None:
    host, config = make_host(tmp_path, plugin_db("sqlkv", meta))
    with host, pytest.raises(PluginCallError) as err:
        open_kvstore(host, config)
    text = str(err.value)
    assert "sqlkv" in text and all(w in text for w in words), text


def test_constructor_returning_something_else_is_reported(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins" / "notkv"
    plugins.mkdir(parents=True)
    (plugins / "manifest.toml").write_text(
        'name = "notkv"\nkind = "KVStore"\nexport = [{ extPoint = "Constructor", impl = "open" }]\n'
    )
    (plugins / "notkv.py").write_text("def open(meta):\n    return {'not': 'a store'}\n")
    host, config = make_host(tmp_path, plugin_db("notkv"), extra=(tmp_path / "plugins",))
    with host, pytest.raises(PluginCallError, match="not a KVStore") as err:
        open_kvstore(host, config)
    assert "notkv" in str(err.value)


def test_unreachable_server_fails_at_start(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    meta = {"url": f"redis://127.0.0.1:{port}/0", "connect_timeout": 1}
    host, config = make_host(tmp_path, plugin_db("rediskv", meta))
    with host, pytest.raises(StoreUnavailable) as err:
        open_kvstore(host, config)
    assert f"127.0.0.1:{port}" in str(err.value) and "rediskv" in str(err.value)
