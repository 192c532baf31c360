"""Plugin JSON-RPC methods on bounded threads of their own: the limit, the timeout, the host's threads.

The pool's unit tests run it on an asyncio loop in this process; the last two run the real
``sectorhooks serve`` with a plugin whose method never returns (issue #16, failure 1).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import anyio.to_thread
import pytest

from rpc.rpckit import plugin_host, write_rpc_plugin
from rpc.servekit import Served, make_token, rpc, write_config
from sectorhooks.errors import PluginCallBusy, PluginCallTimeout
from sectorhooks.rpc import isolation
from sectorhooks.rpc.auth import CallContext
from sectorhooks.rpc.isolation import PluginCalls, PluginPool
from sectorhooks.rpc.methods import MethodRegistry
from sectorhooks.rpc.protocol import BUSY, INTERNAL_ERROR, INVALID_PARAMS, TIMED_OUT, Engine
from sectorhooks.rpc.server import SHUTDOWN_TIMEOUT
from support import wait_for

#: A RegisterJsonRpc plugin: ``Hang.Sleep`` never returns (a network call without a timeout).
HANG = """
import threading


class Hang:
    __sectorhooks_perms__ = {"Sleep": "read"}

    def Sleep(self):
        threading.Event().wait()


def handler():
    return "Hang", Hang()
"""


async def _until(pred: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not pred():
            await asyncio.sleep(0.005)


# --- the pool ---------------------------------------------------------------------------------------


def test_calls_beyond_the_limit_are_refused_at_once_naming_the_namespace_and_the_limit() -> None:
    pool = PluginPool("Hang", "hang", limit=2, timeout=30)
    gate = threading.Event()

    async def main() -> None:
        held = [
            asyncio.create_task(pool.run("Hang.Wait", lambda: gate.wait(10) and "done")) for _ in range(2)
        ]
        await _until(lambda: pool.in_flight == 2)
        started = time.monotonic()
        with pytest.raises(PluginCallBusy) as refused:
            await pool.run("Hang.Wait", lambda: "never run")
        assert time.monotonic() - started < 0.1  # refused, not queued
        assert "Hang.Wait refused" in str(refused.value)
        assert "'Hang'" in str(refused.value) and "limit is 2" in str(refused.value)
        assert "PluginConcurrency" in str(refused.value)
        gate.set()
        assert await asyncio.gather(*held) == ["done", "done"]
        assert await pool.run("Hang.Wait", lambda: "admitted again") == "admitted again"

    asyncio.run(main())
    stats = pool.stats()
    assert (stats["busy"], stats["timeouts"], stats["in_flight"], stats["hung"]) == (1, 0, 0, 0)
    assert stats["threads"] <= 2


def test_a_call_past_the_timeout_names_the_method_and_its_thread_keeps_its_place_until_it_returns() -> None:
    pool = PluginPool("Hang", "hang", limit=1, timeout=0.2)
    release = threading.Event()
    returned = threading.Event()

    def stuck() -> None:
        release.wait(30)
        returned.set()

    async def main() -> None:
        started = time.monotonic()
        with pytest.raises(PluginCallTimeout) as late:
            await pool.run("Hang.Sleep", stuck)
        assert 0.2 <= time.monotonic() - started < 1.0
        assert str(late.value).startswith("Hang.Sleep timed out after 0.2s ([Common.API] CallTimeout)")
        assert "'hang'" in str(late.value)
        # the abandoned thread still runs the plugin's function and holds the only place
        assert not returned.is_set()
        assert (pool.in_flight, pool.hung) == (1, 1)
        with pytest.raises(PluginCallBusy, match="1 of them timed out and still running"):
            await pool.run("Hang.Sleep", lambda: None)
        release.set()
        await _until(lambda: pool.in_flight == 0)
        assert returned.is_set() and pool.hung == 0
        assert await pool.run("Hang.Sleep", lambda: 42) == 42  # the place is free again

    asyncio.run(main())
    assert pool.stats()["timeouts"] == 1 and pool.threads == 1  # the same thread served the last call


def test_close_answers_waiting_calls_at_once_and_refuses_new_ones() -> None:
    pool = PluginPool("Hang", "hang", limit=4, timeout=60)
    release = threading.Event()

    async def main() -> None:
        waiting = [asyncio.create_task(pool.run("Hang.Sleep", lambda: release.wait(30))) for _ in range(3)]
        await _until(lambda: pool.in_flight == 3)
        started = time.monotonic()
        pool.close()
        answers = await asyncio.gather(*waiting, return_exceptions=True)
        assert time.monotonic() - started < 1.0
        for err in answers:
            assert isinstance(err, PluginCallTimeout) and err.shutdown, err
            assert str(err).startswith("Hang.Sleep abandoned after") and "shutting down" in str(err)
        with pytest.raises(PluginCallBusy, match="shutting down"):
            await pool.run("Hang.Sleep", lambda: None)

    try:
        asyncio.run(main())
    finally:
        release.set()
    assert wait_for(lambda: pool.in_flight == 0 and pool.hung == 0, 5, fail=False)


def test_async_methods_are_cancelled_at_the_timeout_and_give_back_their_place() -> None:
    pool = PluginPool("Slow", "slow", limit=1, timeout=0.1)
    cancelled = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        with pytest.raises(PluginCallTimeout, match=r"^Slow\.Nap timed out after 0\.1s"):
            await pool.run_async("Slow.Nap", forever)
        assert cancelled == [True] and pool.in_flight == 0
        assert await pool.run_async("Slow.Nap", lambda: asyncio.sleep(0, result="ok")) == "ok"

    asyncio.run(main())
    assert pool.threads == 0  # coroutines never take a thread


def test_idle_worker_threads_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "IDLE_SECONDS", 0.05)
    pool = PluginPool("Quick", "quick", limit=3, timeout=5)

    async def main() -> List[Any]:
        return await asyncio.gather(*(pool.run("Quick.Name", threading.current_thread) for _ in range(3)))

    threads = asyncio.run(main())
    assert all(t.name.startswith("rpc:Quick:") and t.daemon for t in threads)
    assert wait_for(lambda: pool.threads == 0, 5, fail=False)
    assert not any(t.is_alive() for t in threads)


# --- through the method table ---------------------------------------------------------------------

MIXED = """
import threading


class Mixed:
    __sectorhooks_perms__ = {"Where": "read", "Sleep": "read", "Add": "read", "Crash": "read"}

    def Where(self):
        return threading.current_thread().name

    def Sleep(self):
        threading.Event().wait()

    def Add(self, a: int, b: int = 0):
        return a + b

    def Crash(self):
        raise RuntimeError("boom")


def handler():
    return "Mixed", Mixed()
"""


class HostSide:
    """Stands in for a host namespace (Sector.*): where does it run?"""

    def Where(self) -> str:
        return threading.current_thread().name


def _table(tmp_path: Path, limit: int, timeout: float) -> Tuple[Engine, PluginCalls, Any]:
    write_rpc_plugin(tmp_path / "plugins", "mixed", MIXED)
    host = plugin_host(tmp_path / "plugins")
    registry = MethodRegistry()
    registry.add("Host", HostSide())
    registry.load_plugins(host)
    calls = PluginCalls(timeout, limit)
    calls.install(registry)
    return Engine(registry.dispatch), calls, host


async def _call(engine: Engine, method: str, params: Optional[list] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        body["params"] = params
    out = await engine.handle(json.dumps(body).encode(), CallContext("admin"))
    assert out is not None
    return json.loads(out)  # type: ignore[no-any-return]


def test_host_namespaces_never_run_on_plugin_threads_nor_wait_for_them(tmp_path: Path) -> None:
    engine, calls, host = _table(tmp_path, limit=4, timeout=30)
    limiter = anyio.to_thread.current_default_thread_limiter

    async def main() -> None:
        assert (await _call(engine, "Mixed.Where"))["result"].startswith("rpc:Mixed:")
        hung = [asyncio.create_task(_call(engine, "Mixed.Sleep")) for _ in range(6)]
        pool = calls.pools["Mixed"]
        await _until(lambda: pool.in_flight == 4 and sum(t.done() for t in hung) == 2)
        for t in [t for t in hung if t.done()]:
            assert t.result()["error"]["code"] == BUSY
        # four plugin threads are stuck, none of them borrowed from anyio's pool
        assert limiter().borrowed_tokens == 0
        for _ in range(50):
            where = (await _call(engine, "Host.Where"))["result"]
            assert not where.startswith("rpc:"), where
        assert pool.threads == 4
        for t in hung:
            t.cancel()

    try:
        asyncio.run(main())
    finally:
        host.shutdown()
    assert calls.pools["Mixed"].hung == 4  # the cancelled callers left their threads behind, counted


def test_results_params_and_errors_of_plugin_methods_are_unchanged(tmp_path: Path) -> None:
    engine, _, host = _table(tmp_path, limit=2, timeout=5)

    async def main() -> None:
        assert (await _call(engine, "Mixed.Add", [2, 3]))["result"] == 5
        assert (await _call(engine, "Mixed.Add", ["2"]))["error"]["code"] == INVALID_PARAMS
        crash = (await _call(engine, "Mixed.Crash"))["error"]
        assert crash["code"] == INTERNAL_ERROR and "boom" not in crash["message"]

    try:
        asyncio.run(main())
    finally:
        host.shutdown()


def test_a_timed_out_call_answers_the_timeout_code_with_the_method_in_the_message(tmp_path: Path) -> None:
    engine, calls, host = _table(tmp_path, limit=1, timeout=0.2)

    async def main() -> None:
        late = (await _call(engine, "Mixed.Sleep"))["error"]
        assert late["code"] == TIMED_OUT
        assert late["message"].startswith("Mixed.Sleep timed out after 0.2s"), late
        assert late["data"] == {"method": "Mixed.Sleep", "seconds": 0.2}
        busy = (await _call(engine, "Mixed.Add", [1]))["error"]  # the hung Sleep holds the only place
        assert busy["code"] == BUSY and "'Mixed'" in busy["message"]
        assert busy["data"] == {"namespace": "Mixed", "limit": 1, "in_flight": 1, "hung": 1}

    try:
        asyncio.run(main())
    finally:
        host.shutdown()
    assert calls.stats() == [
        {
            "namespace": "Mixed",
            "plugin": "mixed",
            "limit": 1,
            "timeout": 0.2,
            "in_flight": 1,
            "hung": 1,
            "threads": 1,
            "busy": 1,
            "timeouts": 1,
        }
    ]


# --- end to end: `sectorhooks serve` with a plugin that hangs ---------------------------------------


def _hang_server(tmp_path: Path, call_timeout: float, concurrency: int) -> Tuple[Served, str]:
    plugins = tmp_path / "plugins"
    write_rpc_plugin(plugins, "hang", HANG)
    cfg = write_config(
        tmp_path,
        f'[Common.Plugins]\nDir = ["{plugins}"]\nDisabled = ["sqlsync"]\n'
        f"[Common.API]\nCallTimeout = {call_timeout}\nPluginConcurrency = {concurrency}\n",
    )
    token = make_token(cfg, "write")
    return Served(cfg), token


def _hang_stats(server: Served, token: str) -> Dict[str, Any]:
    with server.client(token) as c:
        return next(s for s in rpc(c, "Plugins.Calls")["result"] if s["namespace"] == "Hang")


def _call_all(server: Served, token: str, n: int) -> Tuple[List[Any], List[threading.Thread]]:
    """``n`` concurrent ``Hang.Sleep`` calls, each on its own connection: ``(response, seconds)`` slots."""
    answers: List[Any] = [None] * n

    def one(i: int) -> None:
        with server.client(token) as c:
            started = time.monotonic()
            try:
                answers[i] = (rpc(c, "Hang.Sleep", id=i), time.monotonic() - started)
            except Exception as exc:  # reported by the asserts on answers
                answers[i] = (exc, time.monotonic() - started)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return answers, threads


def _sigterm(server: Served) -> Tuple[int, float]:
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        rc = server.proc.wait(timeout=SHUTDOWN_TIMEOUT + 30)
    except Exception:
        server.kill()
        raise
    return rc, time.monotonic() - started


def test_hung_plugin_calls_get_busy_or_timeout_while_host_namespaces_answer_and_sigterm_stops_serve(
    tmp_path: Path,
) -> None:
    server, token = _hang_server(tmp_path, call_timeout=2, concurrency=8)
    try:
        with server.client(token) as c:
            init = [{"id": {"miner": 1000, "number": n}, "proof_type": 8} for n in range(1, 5)]
            assert len(rpc(c, "Sector.Init", [init])["result"]) == 4
        answers, callers = _call_all(server, token, 64)
        assert wait_for(lambda: _hang_stats(server, token)["in_flight"] == 8, 30, fail=False)

        # meanwhile: 200 Sector.Get from 8 clients, each timed; Sync.Status and Plugins.List too
        latencies: List[float] = []
        failures: List[Any] = []

        def getter(k: int) -> None:
            with server.client(token) as c:
                for i in range(25):
                    sid = f"s-t01000-{1 + (k + i) % 4}"
                    started = time.monotonic()
                    resp = rpc(c, "Sector.Get", [sid], id=i)
                    latencies.append(time.monotonic() - started)
                    if resp.get("result", {}).get("id") != {"miner": 1000, "number": 1 + (k + i) % 4}:
                        failures.append(resp)
                for method in ("Sync.Status", "Plugins.List"):
                    if "result" not in rpc(c, method):
                        failures.append(method)

        getters = [threading.Thread(target=getter, args=(k,)) for k in range(8)]
        for t in getters:
            t.start()
        for t in getters:
            t.join(60)
        assert not failures, failures[:3]
        assert len(latencies) == 200
        print(f"\nSector.Get under a hung plugin: max {max(latencies) * 1000:.1f} ms over 200 calls")
        assert max(latencies) < 1.0

        for t in callers:
            t.join(30)
        busy = [
            a for a in answers if a and isinstance(a[0], dict) and a[0].get("error", {}).get("code") == BUSY
        ]
        late = [
            a
            for a in answers
            if a and isinstance(a[0], dict) and a[0].get("error", {}).get("code") == TIMED_OUT
        ]
        assert len(busy) + len(late) == 64, [a for a in answers if a not in busy and a not in late][:3]
        assert (len(busy), len(late)) == (56, 8)  # 8 admitted and never returned; the rest refused
        for resp, seconds in busy:
            err = resp["error"]
            assert "Hang.Sleep refused" in err["message"] and "'Hang'" in err["message"], err
            assert "limit is 8" in err["message"] and err["data"]["limit"] == 8, err
            assert seconds < 1.0, seconds  # at once, not queued
        for resp, seconds in late:
            assert resp["error"]["message"].startswith("Hang.Sleep timed out after 2s"), resp
            assert 2.0 <= seconds < 5.0, seconds

        stats = _hang_stats(server, token)
        assert (stats["in_flight"], stats["hung"], stats["threads"]) == (8, 8, 8), stats
        with server.client(token) as c:  # the abandoned threads keep their places
            again = rpc(c, "Hang.Sleep")["error"]
            assert again["code"] == BUSY and "8 of them timed out and still running" in again["message"]

        rc, stop_seconds = _sigterm(server)
        print(f"SIGTERM to exit with 8 hung plugin threads: {stop_seconds:.2f} s")
        assert rc == 0, server.output()
        assert stop_seconds < SHUTDOWN_TIMEOUT
        server.stop()
        assert "sectorhooks: stopped" in server.lines
        assert "8 plugin call(s) still running at exit" in server.output()
    finally:
        server.kill()


def test_sigterm_answers_plugin_calls_still_waiting_and_exits_before_the_shutdown_timeout(
    tmp_path: Path,
) -> None:
    # CallTimeout far beyond the shutdown timeout: only the shutdown itself can answer these calls
    server, token = _hang_server(tmp_path, call_timeout=300, concurrency=8)
    try:
        answers, callers = _call_all(server, token, 8)
        assert wait_for(lambda: _hang_stats(server, token)["in_flight"] == 8, 30, fail=False)
        rc, stop_seconds = _sigterm(server)
        print(f"\nSIGTERM to exit with 8 plugin calls waiting: {stop_seconds:.2f} s")
        assert rc == 0, server.output()
        assert stop_seconds < SHUTDOWN_TIMEOUT
        for t in callers:
            t.join(10)
        for resp, _ in answers:
            assert isinstance(resp, dict), resp
            err = resp["error"]
            assert err["code"] == TIMED_OUT and err["message"].startswith("Hang.Sleep abandoned after"), err
            assert "shutting down" in err["message"]
    finally:
        server.kill()
