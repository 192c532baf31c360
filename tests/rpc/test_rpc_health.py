"""``GET /healthz`` (the process answers) and ``GET /readyz`` (KV, syncers, plugins), on real servers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterator, Tuple

import attrs
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import servers
from rpc.rpckit import AsgiClient
from rpc.servekit import Served, make_token, write_config
from sectorhooks.config import HostConfig
from sectorhooks.rpc import TokenStore, build_app
from sectorhooks.runtime import Runtime
from sectorhooks_spec import AllocatedSector, SectorID
from support import wait_for
from sync.helpers import FAST, make_config

HEALTHY_PLUGIN = """
import threading

PROBLEM = {"why": None}
HANG = threading.Event()
HANG.set()


class Api:
    def Ping(self):
        return "pong"


def handler():
    return "Probe", Api()


def health():
    HANG.wait()
    return PROBLEM["why"]
"""


@pytest.fixture
def missing_pg_database() -> Iterator[Tuple[str, str]]:
    """(SQLAlchemy URL, name) of a PostgreSQL database that does not exist (yet); dropped after."""
    servers.require_server("PostgreSQL", servers.PG_HOST, servers.PG_PORT)
    name = servers.unique_name("shpg")
    try:
        yield servers.pg_url(name), name
    finally:
        with psycopg.connect(servers.pg_admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(sql: str, *args: Any) -> None:
    with psycopg.connect(servers.pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(sql, args or None)


def _ready(client: AsgiClient) -> Tuple[int, Any]:
    resp = client.request("GET", "/readyz")
    return resp.status_code, resp.json()


def test_readyz_is_503_naming_the_postgres_sink_while_its_database_is_missing_and_200_once_it_is_back(
    tmp_path: Path, missing_pg_database: Tuple[str, str]
) -> None:
    url, name = missing_pg_database
    settings = attrs.evolve(FAST, max_lag=1.0)
    config = make_config(
        tmp_path,
        syncers=[("pg", "sqlsync", {"url": url})],
        kv="sqlkv",
        plugins=("sqlsync",),
        settings=settings,
    )
    with Runtime.open(config, filestores=False) as rt:
        client = AsgiClient(build_app(rt, tokens=TokenStore(rt.kv)))  # no token: /readyz is for probes
        try:
            assert _ready(client) == (200, {"ready": True, "failing": []})  # nothing to deliver yet
            rt.state.init_sectors([AllocatedSector(SectorID(1000, 1), 8)])
            wait_for(lambda: _ready(client)[0] == 503, 30, "/readyz to fail once the lag passes MaxLag")
            status, body = _ready(client)
            assert status == 503 and body["ready"] is False
            [failing] = body["failing"]
            assert failing["part"] == "syncer pg"
            assert failing["why"].startswith("retrying: ")
            assert f'database "{name}" does not exist' in failing["why"]
            assert "1 event(s) behind" in failing["why"] and "(MaxLag 1s)" in failing["why"]

            _admin(f'CREATE DATABASE "{name}"')
            wait_for(lambda: _ready(client)[0] == 200, 60, "/readyz to pass once the database is back")
            assert _ready(client) == (200, {"ready": True, "failing": []})
            assert client.request("GET", "/healthz").json() == {"status": "ok"}
        finally:
            client.close()


def _with_plugin(config: HostConfig, plugin_dir: Path) -> HostConfig:
    return attrs.evolve(config, plugins=attrs.evolve(config.plugins, dirs=(*config.plugins.dirs, plugin_dir)))


def test_readyz_names_a_plugin_whose_health_gives_a_reason_raises_or_hangs(tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "probe"
    plugin.mkdir(parents=True)
    (plugin / "manifest.toml").write_text(
        'name = "probe"\nkind = "RegisterJsonRpc"\n'
        'export = [{ extPoint = "Handler", impl = "handler" }, { extPoint = "Health", impl = "health" }]\n',
        encoding="utf-8",
    )
    (plugin / "probe.py").write_text(HEALTHY_PLUGIN, encoding="utf-8")
    config = _with_plugin(make_config(tmp_path / "host", kv="sqlkv", plugins=()), plugin)
    with Runtime.open(config, filestores=False) as rt:
        module = rt.host.records["probe"].bound.module  # type: ignore[union-attr]
        app = build_app(rt, tokens=TokenStore(rt.kv), dev_mode=True)
        app.state.checks.timeout = 0.5
        client = AsgiClient(app)
        try:
            assert _ready(client)[0] == 200
            module.PROBLEM["why"] = "upstream API refuses our key"
            assert _ready(client) == (
                503,
                {
                    "ready": False,
                    "failing": [{"part": "plugin probe", "why": "unhealthy: upstream API refuses our key"}],
                },
            )
            metrics = client.request("GET", "/metrics").text
            healthy = {
                tuple(sorted(s.labels.items())): s.value
                for f in text_string_to_metric_families(metrics)
                for s in f.samples
                if s.name == "sectorhooks_plugin_healthy"
            }
            assert healthy[(("kind", "RegisterJsonRpc"), ("plugin", "probe"))] == 0
            assert healthy[(("kind", "KVStore"), ("plugin", "sqlkv"))] == 1
            module.PROBLEM["why"] = None
            module.HANG.clear()  # Health() now blocks: the answer must not
            code, body = _ready(client)
            assert code == 503
            assert body["failing"][0]["part"] == "plugin probe"
            assert "Health() has not answered for" in body["failing"][0]["why"]
            module.HANG.set()
            wait_for(lambda: _ready(client)[0] == 200, 10, "the plugin to answer again")
        finally:
            module.HANG.set()
            client.close()


def test_readyz_names_the_kv_when_its_postgresql_database_refuses_connections(
    tmp_path: Path, pg_database: Tuple[str, str]
) -> None:
    url, name = pg_database
    config = make_config(tmp_path, kv="sqlkv", kv_meta={"url": url}, plugins=())
    with Runtime.open(config, filestores=False) as rt:
        app = build_app(rt, tokens=TokenStore(rt.kv), dev_mode=True)
        app.state.checks.timeout = 1.0
        client = AsgiClient(app)
        try:
            assert _ready(client)[0] == 200
            _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", name)
            try:
                wait_for(lambda: _ready(client)[0] == 503, 30, "/readyz to see the KV gone")
                _, body = _ready(client)
                assert [f["part"] for f in body["failing"]] == ["kv"]
            finally:
                _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            wait_for(lambda: _ready(client)[0] == 200, 60, "/readyz to see the KV back")
        finally:
            client.close()


def test_a_served_host_answers_healthz_readyz_and_metrics_over_http(tmp_path: Path) -> None:
    config = write_config(tmp_path / "host")
    served = Served(config)
    try:
        token = make_token(config, "read")
        with served.client() as anonymous, served.client(token) as reader:
            assert anonymous.get("/healthz").json() == {"status": "ok"}
            ready = anonymous.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"ready": True, "failing": []})
            assert anonymous.get("/metrics").status_code == 401
            metrics = reader.get("/metrics")
            assert metrics.status_code == 200
            names = {f.name for f in text_string_to_metric_families(metrics.text)}
            assert {"sectorhooks_kv_up", "sectorhooks_sync_lag_events", "sectorhooks_rpc_calls"} <= names
        assert served.stop() == 0
    finally:
        served.kill()


def test_probes_answer_while_a_check_is_slow_and_never_start_it_twice() -> None:
    from sectorhooks.rpc.health import Probe, ProbeTimeout

    gate, calls = threading.Event(), []

    def slow() -> int:
        calls.append(1)
        gate.wait(10)
        return len(calls)

    probe: Probe[int] = Probe(slow, "the slow thing")
    call = probe.start()
    with pytest.raises(ProbeTimeout, match="the slow thing has not answered for"):
        probe(0.05)
    assert probe.start() is call  # still in flight: waited for again, not started twice
    gate.set()
    assert probe.wait(call, 5) == 1 and len(calls) == 1
    assert probe(5) == 2  # a finished call is not reused: the next check asks again
