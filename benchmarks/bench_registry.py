"""Route gating cost (issue 7): a JSON-RPC call through the gateway's dispatcher with the
registry's ``RouteGate`` (cached, and uncached) vs the same call with no gate.

Setup per KV backend (memdb in process, sqlkv on a SQLite file, rediskv on the local Redis when
it is up): a small RegisterJsonRpc plugin registered, scraped RUNNING and enabled for tenant
``acme``, among 49 other registered plugins with a tenant each (so a snapshot holds 50 routes).
Each call is one ``Engine.handle`` of ``Bench.Ping`` by an ``acme`` token, as the HTTP layer
makes it (sync handler in a worker thread, the gate in the same thread). Rounds alternate and the
best of each side counts (the machine is shared).

Rows: cached gate vs no gate (goal: >= 0.9, the gate costs under 10% of a call); uncached gate
(``cache_ttl=0``: one KV snapshot read per call) vs no gate, informational; and the gate check
alone, cached vs uncached (the cache's speed-up), informational.

Standalone: ``python benchmarks/bench_registry.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
CONTRIB = ROOT / "contrib_plugins"
GOAL_CACHED = 0.9
FILLER = 49

PLUGIN_MANIFEST = """name = "bench"
kind = "RegisterJsonRpc"
version = "1.0.0"
export = [{ extPoint = "Handler", impl = "handler" }]
"""
PLUGIN_MODULE = """
class Api:
    def Ping(self, n=0):
        return n + 1


def handler():
    return "Bench", Api()
"""


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _backends(tmp: Path) -> List[Tuple[str, str, Dict[str, Any]]]:
    out = [("memdb", "memdb", {}), ("sqlkv-sqlite", "sqlkv", {"url": f"sqlite:///{tmp / 'kv.sqlite3'}"})]
    if _redis_up():
        prefix = f"bench-reg-{uuid.uuid4().hex[:8]}:"
        out.append(("rediskv", "rediskv", {"url": "redis://127.0.0.1:6379/0", "prefix": prefix}))
    return out


def _drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def _open(tmp: Path, plugin: str, meta: Dict[str, Any]) -> Tuple[Any, Any]:
    from sectorhooks.config import DBConfig, HostConfig, PluginsConfig
    from sectorhooks.host import PluginHost
    from sectorhooks.kv import open_kvstore
    from sectorhooks_spec.kinds import Kind

    pdir = tmp / "plugins" / "bench"
    if not pdir.exists():
        pdir.mkdir(parents=True)
        (pdir / "manifest.toml").write_text(PLUGIN_MANIFEST)
        (pdir / "bench.py").write_text(PLUGIN_MODULE)
    config = HostConfig(
        data_dir=tmp / "data",
        plugins=PluginsConfig(dirs=(CONTRIB / plugin, pdir), bundled=False, entry_points=False),
        db=DBConfig(plugin_name=plugin, meta=meta),
    )
    host = PluginHost(config).load()
    host.start(kinds=[Kind.KV_STORE])
    kv = open_kvstore(host, config)
    host.start(kvstore=kv)
    return host, kv


def _populate(host: Any, kv: Any) -> None:
    from sectorhooks.registry import Identity, Registry, Scraper, Status, register_host

    registry = Registry(kv)
    register_host(registry, host)
    for i in range(FILLER):
        pid = f"filler{i:02d}"
        registry.register(
            Identity(pid, pid, "RegisterJsonRpc", "1.0.0"), {f"F{i}": f"{pid}/F{i}"}, Status.RUNNING
        )
        registry.enable_tenant(pid, f"tenant{i}")
    Scraper(host, registry, ttl=30).scrape_once()
    registry.enable_tenant("bench", "acme")


def _engine(host: Any, gate: Optional[Callable[..., None]]) -> Any:
    from sectorhooks.rpc.methods import MethodRegistry
    from sectorhooks.rpc.protocol import Engine

    methods = MethodRegistry(gate)
    methods.load_plugins(host)
    return Engine(methods.dispatch)


def _calls_per_second(engine: Any, n: int) -> float:
    from sectorhooks.rpc.auth import CallContext

    body = json.dumps({"jsonrpc": "2.0", "method": "Bench.Ping", "params": [1], "id": 1}).encode()
    ctx = CallContext("write", SimpleNamespace(id="t", name="bench", perm="write", tenant="acme"))

    async def batch() -> float:
        out = await engine.handle(body, ctx)
        assert b'"result":2' in out, out
        start = time.perf_counter()
        for _ in range(n):
            await engine.handle(body, ctx)
        return n / (time.perf_counter() - start)

    return asyncio.run(batch())


def _checks_per_second(gate: Callable[..., None], n: int) -> float:
    token = SimpleNamespace(tenant="acme")
    gate("Bench", token)
    start = time.perf_counter()
    for _ in range(n):
        gate("Bench", token)
    return n / (time.perf_counter() - start)


def bench_backend(
    tmp: Path, name: str, plugin: str, meta: Dict[str, Any], quick: bool
) -> List[Dict[str, Any]]:
    from sectorhooks.registry import RouteGate

    host, kv = _open(tmp, plugin, meta)
    try:
        _populate(host, kv)
        cached, uncached = RouteGate(kv, cache_ttl=60), RouteGate(kv, cache_ttl=0)
        engines = {
            "none": _engine(host, None),
            "cached": _engine(host, cached),
            "uncached": _engine(host, uncached),
        }
        # Many short alternating batches, best of each: the machine is shared and noisy.
        calls, rounds = (150, 4) if quick else (200, 12)
        slow_calls = 10 if quick else 20
        best = {k: 0.0 for k in engines}
        checks = {"cached": 0.0, "uncached": 0.0}
        for r in range(rounds):
            for key in ("none", "cached") if r % 2 else ("cached", "none"):
                best[key] = max(best[key], _calls_per_second(engines[key], calls))
            checks["cached"] = max(checks["cached"], _checks_per_second(cached, calls * 20))
            if r % 4 == 0:
                best["uncached"] = max(best["uncached"], _calls_per_second(engines["uncached"], slow_calls))
                checks["uncached"] = max(checks["uncached"], _checks_per_second(uncached, slow_calls))
    finally:
        kv.close()
        if plugin == "rediskv":
            _drop_redis_prefix(meta["prefix"])
        host.shutdown()
    no_gate = "same JSON-RPC call, no gate"
    return [
        _row(
            f"call with cached gate ({name})", best["cached"], best["none"], no_gate, "calls/s", GOAL_CACHED
        ),
        _row(f"call with uncached gate ({name})", best["uncached"], best["none"], no_gate, "calls/s", ""),
        _row(
            f"gate check alone, cached ({name})",
            checks["cached"],
            checks["uncached"],
            f"gate check, uncached ({FILLER + 1} routes)",
            "checks/s",
            "",
        ),
    ]


def _row(name: str, ours: float, baseline: float, baseline_name: str, unit: str, goal: Any) -> Dict[str, Any]:
    return {
        "group": "registry",
        "name": name,
        "ours": ours,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ours / baseline,
        "unit": unit,
        "goal": goal,
    }


def run(quick: bool = False) -> List[Dict[str, Any]]:
    """Benchmark rows (see module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    rows: List[Dict[str, Any]] = []
    try:
        for name, plugin, meta in _backends(tmp):
            sub = tmp / name
            sub.mkdir()
            rows += bench_backend(sub, name, plugin, meta, quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv), title="bench_registry")
