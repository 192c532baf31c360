"""``GET /metrics``: Prometheus text that parses, per-syncer lag that rises while a sink is down,
RPC calls by method and outcome, group commits, plugin health; and who may read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import attrs
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import servers
from rpc.rpckit import AsgiClient
from sectorhooks.config import parse_config
from sectorhooks.rpc import TokenStore, build_app
from sectorhooks.rpc.server import open_runtime
from sectorhooks.runtime import Runtime
from support import wait_for
from sync.helpers import FAST, make_config

Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


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


def create_pg_database(name: str) -> None:
    with psycopg.connect(servers.pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def scrape(client: AsgiClient, token: Optional[str] = None) -> Samples:
    """GET /metrics, parsed by prometheus_client's own parser: {(sample name, labels): value}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = client.request("GET", "/metrics", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def call(client: AsgiClient, token: str, method: str, params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode()
    resp = client.post(body, token)
    assert resp.status_code == 200
    return resp.json()


def alloc(number: int) -> Dict[str, Any]:
    return {"id": {"miner": 1000, "number": number}, "proof_type": 8}


def test_metrics_parse_and_the_lag_gauge_rises_while_the_postgres_sinks_database_is_missing(
    tmp_path: Path, missing_pg_database: Tuple[str, str]
) -> None:
    url, name = missing_pg_database
    config = make_config(
        tmp_path, syncers=[("pg", "sqlsync", {"url": url})], kv="sqlkv", plugins=("sqlsync",)
    )
    with Runtime.open(config, filestores=False) as rt:
        tokens = TokenStore(rt.kv)
        reader, writer = tokens.create("read")[0], tokens.create("write")[0]
        client = AsgiClient(build_app(rt, tokens=tokens))
        try:
            assert "result" in call(client, writer, "Sector.Init", [[alloc(1)]])
            assert call(client, writer, "Sector.Get", ["s-t01000-404"])["error"]["code"] == -32004
            assert call(client, writer, "Sector.Nope", [])["error"]["code"] == -32601
            wait_for(
                lambda: (
                    value(scrape(client, reader), "sectorhooks_sync_state", syncer="pg", state="retrying")
                    == 1
                ),
                60,
                "the pg syncer to retry",
            )
            first = scrape(client, reader)
            lag1 = value(first, "sectorhooks_sync_lag_seconds", syncer="pg")
            assert value(first, "sectorhooks_sync_lag_events", syncer="pg") == 1 and lag1 > 0
            assert value(first, "sectorhooks_sync_retries_total", syncer="pg") >= 1
            assert value(first, "sectorhooks_sync_events_delivered_total", syncer="pg") == 0
            assert (
                value(first, "sectorhooks_sync_dead_letters", syncer="pg") == 0
            )  # a down sink: no dead letters
            assert value(first, "sectorhooks_kv_up") == 1
            assert value(first, "sectorhooks_plugin_healthy", plugin="sqlsync", kind="SyncSectorState") == 1

            assert "result" in call(client, writer, "Sector.Init", [[alloc(2), alloc(3)]])
            wait_for(
                lambda: (
                    value(scrape(client, reader), "sectorhooks_sync_lag_seconds", syncer="pg") > lag1 + 0.5
                ),
                30,
                "the lag in seconds to rise",
            )
            later = scrape(client, reader)
            assert value(later, "sectorhooks_sync_lag_events", syncer="pg") == 2
            assert value(later, "sectorhooks_sync_log_head") == 2

            create_pg_database(name)
            wait_for(
                lambda: value(scrape(client, reader), "sectorhooks_sync_lag_events", syncer="pg") == 0,
                60,
                "the sink to catch up once its database exists",
            )
            back = scrape(client, reader)
            assert value(back, "sectorhooks_sync_lag_seconds", syncer="pg") == 0
            assert value(back, "sectorhooks_sync_events_delivered_total", syncer="pg") == 2
            assert value(back, "sectorhooks_sync_cursor", syncer="pg") == 2
            assert value(back, "sectorhooks_sync_worker_restarts_total", syncer="pg") == 0
            assert value(back, "sectorhooks_sync_worker_crashes_total", syncer="pg") == 0
            assert value(back, "sectorhooks_rpc_calls_total", method="Sector.Init", outcome="ok") == 2
            assert value(back, "sectorhooks_rpc_calls_total", method="Sector.Get", outcome="not_found") == 1
            assert (
                value(back, "sectorhooks_rpc_calls_total", method="(unknown)", outcome="method_not_found")
                == 1
            )
            assert value(back, "sectorhooks_rpc_call_seconds_count", method="Sector.Init") == 2
            assert value(back, "sectorhooks_state_group_commit_size_count") == 2  # one group per Init
            assert value(back, "sectorhooks_state_group_commit_size_sum") == 2
            assert value(back, "sectorhooks_state_group_commit_seconds_count") == 2
        finally:
            client.close()


def test_metrics_need_a_token_unless_metrics_open_or_a_dev_mode_loopback_caller(
    runtime: Any, tokens: TokenStore, tmp_path: Path
) -> None:
    app = build_app(runtime, tokens=tokens)
    remote = AsgiClient(app, client=("10.1.2.3", 40000))
    loopback_dev = AsgiClient(build_app(runtime, tokens=tokens, dev_mode=True))
    try:
        assert remote.request("GET", "/metrics").status_code == 401
        bad = {"Authorization": "Bearer sh1.000000000000.nope"}
        assert remote.request("GET", "/metrics", headers=bad).status_code == 401
        for perm in ("read", "write", "admin"):
            assert scrape(remote, tokens.create(perm)[0])  # read is enough; more is more
        assert value(scrape(loopback_dev), "sectorhooks_kv_up") == 1  # dev mode: loopback needs no token
    finally:
        remote.close()
        loopback_dev.close()
    cfg = parse_config(
        {"Common": {"DataDir": str(tmp_path / "open"), "API": {"MetricsOpen": True}}},
        str(tmp_path / "open.toml"),
        tmp_path,
    )
    with open_runtime(cfg) as rt:
        anyone = AsgiClient(build_app(rt, tokens=TokenStore(rt.kv)), client=("10.1.2.3", 40000))
        try:
            assert value(scrape(anyone), "sectorhooks_kv_up") == 1
            assert (
                anyone.post(b'{"jsonrpc":"2.0","method":"Sector.List","id":1}').status_code == 401
            )  # RPC still not
        finally:
            anyone.close()


def test_two_apps_in_one_process_keep_their_own_registries(runtime: Any, tokens: TokenStore) -> None:
    token = tokens.create("write")[0]
    one, two = AsgiClient(build_app(runtime, tokens=tokens)), AsgiClient(build_app(runtime, tokens=tokens))
    try:
        assert "result" in call(one, token, "Sector.StateCounts", [])
        assert (
            value(
                scrape(one, token), "sectorhooks_rpc_calls_total", method="Sector.StateCounts", outcome="ok"
            )
            == 1
        )
        assert (
            "sectorhooks_rpc_calls_total",
            (("method", "Sector.StateCounts"), ("outcome", "ok")),
        ) not in scrape(two, token)
    finally:
        one.close()
        two.close()


def test_metrics_without_syncers_or_with_a_dead_lettering_sink_still_parse(tmp_path: Path) -> None:
    settings = attrs.evolve(FAST, max_attempts=1)
    config = make_config(
        tmp_path, syncers=[("rec", "recorder", {"url": "rec"})], kv="sqlkv", settings=settings
    )
    with Runtime.open(config, filestores=False) as rt:
        tokens = TokenStore(rt.kv)
        token = tokens.create("write")[0]
        client = AsgiClient(build_app(rt, tokens=tokens))
        try:
            recorder = rt.host.records["recorder"].bound.module  # type: ignore[union-attr]
            recorder.POISON["rec"] = {"s-t01000-1"}
            try:
                assert "result" in call(client, token, "Sector.Init", [[alloc(1)]])
                assert "result" in call(client, token, "Sector.Init", [[alloc(2)]])
                wait_for(
                    lambda: value(scrape(client, token), "sectorhooks_sync_lag_events", syncer="rec") == 0,
                    30,
                    "delivery past the poisoned sector",
                )
            finally:
                recorder.reset()
            wait_for(
                lambda: (
                    value(scrape(client, token), "sectorhooks_sync_state", syncer="rec", state="idle") == 1
                ),
                10,
                "the syncer to go idle",
            )
            samples = scrape(client, token)
            assert value(samples, "sectorhooks_sync_dead_letters", syncer="rec") == 1
            assert value(samples, "sectorhooks_sync_events_dead_lettered_total", syncer="rec") == 1
            assert value(samples, "sectorhooks_sync_events_delivered_total", syncer="rec") == 1
            assert value(samples, "sectorhooks_sync_state", syncer="rec", state="running") == 0
        finally:
            client.close()
