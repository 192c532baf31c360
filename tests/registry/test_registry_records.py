"""Registry records on real Redis and PostgreSQL: shapes, atomic registration, secrets, statuses."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Optional

import pytest

from registry.faults import Crash, CrashingStore
from registry.regkit import opened, start_worker, write_config
from sectorhooks.registry import Identity, Registry, Status, register_host
from sectorhooks.registry.secret import verify_secret

GREET_ADDONS = {
    "Greet": "greet/Greet",
    "Greet.Count": "greet/Greet.Count",
    "Greet.Hello": "greet/Greet.Hello",
}
GHOST = Identity("ghost", "ghost", "RegisterJsonRpc", "1.0.0", "a ghost", ("Handler",), "", "dir:/x")


@pytest.fixture
def config(tmp_path, kv_backend):
    plugin, meta = kv_backend
    return write_config(tmp_path, plugin, meta)


@pytest.fixture
def env(config):
    with opened(config) as (host, kv):
        yield host, kv


def raw(kv: Any, collection: str, key: str) -> Optional[Any]:
    value = kv.view(lambda t: t.collection(collection).peek(key.encode()))
    return None if value is None else json.loads(value)


def test_registration_writes_the_seed_records_in_public_and_private(env):
    host, kv = env
    (reg,) = register_host(Registry(kv), host)[-1:]
    assert reg.id == "greet" and reg.created and reg.status is Status.WAIT_RUNNING
    record = raw(kv, "private", "plugin_greet")
    assert set(record) == {
        "id", "name", "kind", "version", "description", "ext_points", "build_time", "source",
        "secret", "register_time", "active_tenant",
    }  # fmt: skip
    assert (record["id"], record["kind"], record["version"]) == ("greet", "RegisterJsonRpc", "1.2.0")
    assert record["ext_points"] == ["Handler", "Health"] and record["active_tenant"] == []
    assert abs(record["register_time"] - time.time()) < 60
    assert record["secret"].startswith("scrypt$") and reg.secret not in json.dumps(record)
    assert verify_secret(reg.secret, record["secret"])
    assert raw(kv, "private", "all_registered_plugin") == {"greet": "true", host.plugins()[0].name: "true"}
    assert raw(kv, "public", "plugin_route_greet") == {
        "status": "WAIT_RUNNING",
        "register_addons": GREET_ADDONS,
    }
    # Routes are public, plugin records private: nothing crosses over.
    assert raw(kv, "public", "plugin_greet") is None and raw(kv, "private", "plugin_route_greet") is None


@pytest.mark.parametrize("after_puts", [1, 2])
def test_crash_between_the_writes_of_a_registration_leaves_none_of_it(env, after_puts):
    _, kv = env
    with pytest.raises(Crash):
        Registry(CrashingStore(kv, after_puts)).register(GHOST, {"Ghost": "ghost/Ghost"})
    assert raw(kv, "private", "plugin_ghost") is None
    assert "ghost" not in (raw(kv, "private", "all_registered_plugin") or {})
    assert raw(kv, "public", "plugin_route_ghost") is None
    Registry(kv).register(GHOST, {"Ghost": "ghost/Ghost"})
    assert raw(kv, "private", "plugin_ghost")["name"] == "ghost"
    assert raw(kv, "private", "all_registered_plugin") == {"ghost": "true"}
    assert raw(kv, "public", "plugin_route_ghost")["status"] == "WAIT_RUNNING"


def test_crash_while_re_registering_keeps_the_old_registration_whole(env):
    _, kv = env
    registry = Registry(kv)
    registry.register(GHOST, {"Ghost": "ghost/Ghost"})
    registry.enable_tenant("ghost", "acme")
    before = (raw(kv, "private", "plugin_ghost"), raw(kv, "public", "plugin_route_ghost"))
    import attrs

    with pytest.raises(Crash):
        Registry(CrashingStore(kv, 1)).register(
            attrs.evolve(GHOST, version="2.0.0"), {"Ghost2": "ghost/Ghost2"}
        )
    assert (raw(kv, "private", "plugin_ghost"), raw(kv, "public", "plugin_route_ghost")) == before


def test_killed_process_mid_registration_leaves_all_or_nothing(config, tmp_path):
    marker = tmp_path / "first-put-done"
    proc = start_worker("register-hang", str(config), str(marker))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "worker died before its first put"
            assert time.monotonic() < deadline, "worker never reached its first put"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with opened(config, start_all=False) as (_, kv):
        found = [
            raw(kv, "private", "plugin_ghost") is not None,
            "ghost" in (raw(kv, "private", "all_registered_plugin") or {}),
            raw(kv, "public", "plugin_route_ghost") is not None,
        ]
    assert found == [False, False, False]


def test_re_registration_keeps_secret_time_tenants_and_a_stopped_route(env):
    _, kv = env
    registry = Registry(kv)
    first = registry.register(GHOST, {"Ghost": "ghost/Ghost"})
    registry.enable_tenant("ghost", "acme", "Acme Inc", 0)
    registry.set_status("ghost", Status.RUNNING)
    again = registry.register(GHOST, {"Ghost": "ghost/Ghost"})
    assert not again.created and again.secret is None and again.status is Status.RUNNING
    entry = registry.get("ghost")
    assert registry.verify_secret("ghost", first.secret)
    assert [t.tenant_id for t in entry.active_tenant] == ["acme"]
    import attrs

    newer = registry.register(attrs.evolve(GHOST, version="2.0.0"), {"Ghost": "ghost/Ghost"})
    assert newer.status is Status.WAIT_RUNNING and registry.get("ghost").identity.version == "2.0.0"
    registry.set_status("ghost", Status.STOPPED, "disabled by an operator")
    assert registry.register(GHOST, {"Ghost": "ghost/Ghost"}).status is Status.STOPPED
    failed = registry.register(GHOST, {}, Status.ERR_REGISTER, "Handler raised")
    assert failed.status is Status.ERR_REGISTER and registry.route("ghost").reason == "Handler raised"


def test_rotate_secret_replaces_it_and_the_old_one_stops_verifying(env):
    _, kv = env
    registry = Registry(kv)
    old = registry.register(GHOST, {}).secret
    new = registry.rotate_secret("ghost")
    assert new != old and len(new) >= 40
    assert registry.verify_secret("ghost", new) and not registry.verify_secret("ghost", old)
    assert new not in json.dumps(raw(kv, "private", "plugin_ghost"))


def test_unknown_plugin_errors_name_the_registered_ones_and_the_fix(env):
    _, kv = env
    registry = Registry(kv)
    registry.register(GHOST, {})
    with pytest.raises(
        Exception, match=r"'nope' is not registered \(registered: 'ghost'\).*registry register"
    ):
        registry.enable_tenant("nope", "acme")


def test_unregister_removes_the_three_records_together(env):
    _, kv = env
    registry = Registry(kv)
    registry.register(GHOST, {})
    assert registry.unregister("ghost") and not registry.unregister("ghost")
    assert raw(kv, "private", "plugin_ghost") is None and raw(kv, "public", "plugin_route_ghost") is None
    assert registry.ids() == []
