"""8 processes enabling and disabling tenants on one plugin at once lose no update."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List

import pytest

from registry.regkit import opened, start_worker, write_config
from sectorhooks.registry import Registry, register_host

PROCS, OPS = 8, 12
pytestmark = pytest.mark.slow


def replay(ops_by_process: List[List[Dict[str, Any]]]) -> Dict[str, tuple]:
    """The serial replay of every accepted operation (tenants are per process, so any order of
    processes gives the same result; within a process its own order is kept)."""
    state: Dict[str, tuple] = {}
    for ops in ops_by_process:
        for op in ops:
            if op["op"] == "enable":
                state[op["tenant"]] = (op["name"], op["expire"])
            else:
                state.pop(op["tenant"], None)
    return state


def test_concurrent_tenant_changes_equal_a_serial_replay(tmp_path, kv_backend):
    plugin, meta = kv_backend
    config = write_config(tmp_path, plugin, meta)
    with opened(config) as (host, kv):
        register_host(Registry(kv), host)
    go = tmp_path / "go"
    outs = [tmp_path / f"ops{i}.json" for i in range(PROCS)]
    procs = [
        start_worker("tenants", str(config), str(out), str(i), str(OPS), str(1000 + i), str(go))
        for i, out in enumerate(outs)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(out.with_name(out.name + ".ready").exists() for out in outs):
            assert all(p.poll() is None for p in procs), "a worker died while starting"
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.02)
        go.touch()
        for p in procs:
            assert p.wait(180) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = [json.loads(out.read_text()) for out in outs]
    accepted = [r["ops"] for r in results]
    assert sum(map(len, accepted)) == PROCS * OPS
    # They really ran at the same time (how many at once depends on the machine's load).
    busiest = max(sum(r["start"] <= t["start"] < r["end"] for r in results) for t in results)
    assert busiest >= 2
    with opened(config, start_all=False) as (_, kv):
        entry = Registry(kv).get("greet")
    final = {t.tenant_id: (t.tenant_name, t.expire_time) for t in entry.active_tenant}
    assert len(final) == len(entry.active_tenant), "a tenant is listed twice"
    assert final == replay(accepted)
