"""Route gating on real Redis and PostgreSQL, directly and through the JSON-RPC dispatcher."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from registry.regkit import opened, write_config
from sectorhooks.errors import RouteRefused
from sectorhooks.registry import Registry, RouteGate, Scraper, Status, register_host
from sectorhooks.registry.records import generation_of
from support import wait_for


@pytest.fixture
def env(tmp_path, kv_backend):
    plugin, meta = kv_backend
    config = write_config(tmp_path, plugin, meta)
    with opened(config) as (host, kv):
        yield config, host, kv


def refused(gate: Callable[..., None], namespace: str, token: Any) -> str:
    """The refusal reason, or "" when the call is allowed."""
    try:
        gate(namespace, token)
    except RouteRefused as exc:
        assert exc.code == -32010 and exc.message
        return exc.reason  # type: ignore[attr-defined,no-any-return]
    return ""


ACME = {"tenant": "acme"}


def test_gate_refuses_unknown_not_running_not_enabled_and_expired_and_allows_after_enable(env):
    _, host, kv = env
    registry = Registry(kv)
    gate = RouteGate(kv, cache_ttl=60)  # long: only local invalidation can explain what it sees
    assert refused(gate, "Greet", ACME) == "unknown"
    register_host(registry, host)
    assert refused(gate, "Greet", ACME) == "not_running"  # WAIT_RUNNING until a scrape
    Scraper(host, registry, ttl=30).scrape_once()
    assert refused(gate, "Greet", ACME) == "not_enabled"
    assert refused(gate, "Greet", None) == "no_tenant"
    assert refused(gate, "Nope", ACME) == "unknown"
    registry.enable_tenant("greet", "acme", "Acme Inc")
    assert refused(gate, "Greet", ACME) == ""
    assert refused(gate, "Greet", SimpleNamespace(tenant="other")) == "not_enabled"
    registry.disable_tenant("greet", "acme")
    assert refused(gate, "Greet", ACME) == "not_enabled"


def test_expiry_is_honoured_without_a_restart_or_a_reload(env):
    _, host, kv = env
    registry = Registry(kv)
    register_host(registry, host)
    Scraper(host, registry, ttl=30).scrape_once()
    registry.enable_tenant("greet", "acme", expire_time=int(time.time()) + 2)
    gate = RouteGate(kv, cache_ttl=3600)
    assert refused(gate, "Greet", ACME) == ""
    loaded = gate.snapshot()
    wait_for(lambda: refused(gate, "Greet", ACME) == "expired", 10, "the tenant to expire")
    assert gate.snapshot() is loaded  # same cached snapshot: expiry is checked per call
    with pytest.raises(RouteRefused, match=r"expired for tenant 'acme' at .*--expire DATE"):
        gate("Greet", ACME)
    registry.enable_tenant("greet", "acme", expire_time=0)
    assert refused(gate, "Greet", ACME) == ""


def test_stopped_plugin_is_refused_and_scrapes_do_not_revive_it(env):
    _, host, kv = env
    registry = Registry(kv)
    register_host(registry, host)
    scraper = Scraper(host, registry, ttl=30)
    scraper.scrape_once()
    registry.enable_tenant("greet", "acme")
    gate = RouteGate(kv)
    assert refused(gate, "Greet", ACME) == ""
    registry.set_status("greet", Status.STOPPED, "disabled by an operator")
    assert refused(gate, "Greet", ACME) == "not_running"
    with pytest.raises(RouteRefused, match="status STOPPED: disabled by an operator"):
        gate("Greet", ACME)
    scraper.scrape_once()
    assert refused(gate, "Greet", ACME) == "not_running"
    registry.set_status("greet", Status.WAIT_RUNNING)
    scraper.scrape_once()
    assert refused(gate, "Greet", ACME) == ""


def test_another_replicas_change_is_seen_within_the_cache_ttl(env):
    config, host, kv = env
    registry = Registry(kv)
    register_host(registry, host)
    Scraper(host, registry, ttl=30).scrape_once()
    with opened(config, start_all=False) as (_, other_kv):  # another connection, as a replica has
        gate = RouteGate(other_kv, cache_ttl=0.5)
        assert refused(gate, "Greet", ACME) == "not_enabled"
        registry.enable_tenant("greet", "acme")
        started = time.monotonic()
        wait_for(lambda: refused(gate, "Greet", ACME) == "", 10, "the other replica's gate to see the change")
        assert time.monotonic() - started < 5
        registry.disable_tenant("greet", "acme")
        wait_for(lambda: refused(gate, "Greet", ACME) == "not_enabled", 10, "the disable to be seen")


def test_without_tenants_only_the_route_status_matters(env):
    _, host, kv = env
    registry = Registry(kv)
    register_host(registry, host)
    gate = RouteGate(kv, tenants=False)
    assert refused(gate, "Greet", None) == "not_running"
    Scraper(host, registry, ttl=30).scrape_once()
    assert refused(gate, "Greet", None) == ""


def test_json_rpc_calls_are_gated_with_a_clear_error(env):
    from sectorhooks.rpc.auth import CallContext
    from sectorhooks.rpc.methods import MethodRegistry
    from sectorhooks.rpc.protocol import Engine

    _, host, kv = env
    registry = Registry(kv)
    register_host(registry, host)
    scraper = Scraper(host, registry, ttl=30)
    scraper.scrape_once()
    methods = MethodRegistry(RouteGate(kv))
    methods.load_plugins(host)
    engine = Engine(methods.dispatch)

    def call(tenant: str) -> dict:
        body = json.dumps({"jsonrpc": "2.0", "method": "Greet.Hello", "params": ["ann"], "id": 1}).encode()
        token = SimpleNamespace(id="t1", name="client", perm="write", tenant=tenant)
        return json.loads(asyncio.run(engine.handle(body, CallContext("write", token))))

    resp = call("acme")
    assert resp["error"]["code"] == -32010 and "not enabled for tenant 'acme'" in resp["error"]["message"]
    registry.enable_tenant("greet", "acme")
    assert call("acme")["result"] == "hello, ann"
    registry.set_status("greet", Status.STOPPED, "maintenance")
    resp = call("acme")
    assert resp["error"]["code"] == -32010 and "status STOPPED: maintenance" in resp["error"]["message"]


def test_a_registry_write_reaches_every_gate_over_the_same_store_object(env):
    """The write counter lives on the store object (no process-wide table keyed by ``id()``):
    registries and gates over one store share it; a gate over another store object keeps its own."""
    _, host, kv = env
    gate, registry = RouteGate(kv, cache_ttl=3600), Registry(kv)
    assert registry.generation is generation_of(kv) is generation_of(kv)
    before = registry.generation.value
    register_host(registry, host)
    assert registry.generation.value > before
    assert refused(gate, "Greet", ACME) == "not_running"
    assert generation_of(object.__new__(type(kv))) is not generation_of(kv)
