"""End to end: `sectorhooks serve` as a subprocess on a free port, called over real HTTP with httpx."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

from rpc.fuzzkit import bodies, check_exchange
from rpc.rpckit import write_probe, write_rpc_plugin
from rpc.servekit import PATH, Served, cli, create_token, make_token, rpc, write_config
from support import wait_for

SINKS = ("sink_a", "sink_b")


def sink_url(root: Path, name: str) -> str:
    return f"sqlite:///{root / (name + '.sqlite')}"


def serve_config(root: Path) -> Path:
    """Probe plugin (marker on shutdown) + two sqlsync sinks on SQLite files + sqlkv (default)."""
    plugins = write_probe(root / "plugins")
    sinks = "".join(
        f'[[Common.Syncers]]\nName = "{n}"\nPluginName = "sqlsync"\n'
        f'Meta = {{ url = "{sink_url(root, n)}" }}\n'
        for n in SINKS
    )
    body = (
        f'[Common.Plugins]\nDir = ["{plugins}"]\n'
        f'[Common.Plugins.Config.probe]\nmarker = "{root / "shutdown.marker"}"\n'
        f"[Common.Sync]\nPollInterval = 0.02\n{sinks}"
    )
    return write_config(root, body)


@pytest.fixture(scope="module")
def served_with_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Served, Dict[str, str]]]:
    root = tmp_path_factory.mktemp("serve")
    cfg = serve_config(root)
    tokens = {perm: make_token(cfg, perm, f"{perm}-e2e") for perm in ("read", "write", "admin")}
    server = Served(cfg)
    yield server, tokens
    server.stop()


@pytest.fixture
def served(served_with_tokens: Tuple[Served, Dict[str, str]]) -> Served:
    return served_with_tokens[0]


@pytest.fixture
def tokens(served_with_tokens: Tuple[Served, Dict[str, str]]) -> Dict[str, str]:
    return served_with_tokens[1]


def test_counters_from_8_concurrent_clients_x_200_incr_end_exact(
    served: Served, tokens: Dict[str, str]
) -> None:
    seen: List[List[int]] = []
    errors: List[BaseException] = []

    def worker() -> None:
        mine = []
        try:
            with served.client(tokens["write"]) as c:
                for i in range(200):
                    resp = c.post(
                        PATH,
                        json={"jsonrpc": "2.0", "method": "AtomicCounter.Incr", "params": ["hits"], "id": i},
                    )
                    mine.append(resp.json()["result"])
        except BaseException as exc:  # reported below
            errors.append(exc)
        seen.append(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    values = sorted(v for mine in seen for v in mine)
    assert values == list(range(1, 1601))  # every increment saw a distinct value: none lost, none doubled
    with served.client(tokens["read"]) as c:
        assert rpc(c, "AtomicCounter.Get", ["hits"])["result"] == 1600


def test_permissions_are_enforced_over_http(served: Served, tokens: Dict[str, str]) -> None:
    with served.client() as anon:
        resp = anon.post(
            PATH, json={"jsonrpc": "2.0", "method": "AtomicCounter.Get", "params": ["p"], "id": 1}
        )
        assert resp.status_code == 401 and resp.json()["error"]["code"] == -32001
    with served.client(tokens["read"]) as ro:
        assert rpc(ro, "AtomicCounter.Get", ["p"])["result"] == 0
        assert rpc(ro, "AtomicCounter.Incr", ["p"])["error"]["code"] == -32002
        assert rpc(ro, "Sector.Finalize", ["s-t01-1"])["error"]["code"] == -32002
    with served.client(tokens["write"]) as rw:
        assert rpc(rw, "Auth.List")["error"]["code"] == -32002
    with served.client(tokens["admin"]) as adm:
        assert len(rpc(adm, "Auth.List")["result"]) >= 3


def test_revoked_token_is_refused(served: Served) -> None:
    made = create_token(served.config, "write", "short-lived")
    with served.client(made["token"]) as c:
        assert rpc(c, "AtomicCounter.Incr", ["r"])["result"] >= 1
        done = cli(served.config, "token", "revoke", made["id"])
        assert done.returncode == 0, done.stderr
        listed = json.loads(cli(served.config, "token", "list", "--json").stdout)["tokens"]
        assert made["id"] not in [t["id"] for t in listed]
        body = {"jsonrpc": "2.0", "method": "AtomicCounter.Incr", "params": ["r"], "id": 1}
        refused = wait_for(lambda: c.post(PATH, json=body).status_code == 401, timeout=10, fail=False)
        assert refused, "revoked token still accepted after the cache TTL"


MALFORMED = [
    (b"{not json", -32700),
    (b"", -32700),
    (b'{"jsonrpc":"2.0","method":"AtomicCounter.Get","params":["x"],"id":1', -32700),
    (b'{"jsonrpc":"1.0","method":"AtomicCounter.Get","params":["x"],"id":1}', -32600),
    (b'{"jsonrpc":"2.0","id":2}', -32600),
    (b'{"jsonrpc":"2.0","method":"AtomicCounter.Incr","params":{"nom":"x"},"id":3}', -32602),
    (b'{"jsonrpc":"2.0","method":"AtomicCounter.Incr","params":["x","1"],"id":3}', -32602),
    (b'{"jsonrpc":"2.0","method":"No.Such","id":4}', -32601),
    (b'{"jsonrpc":"2.0","method":"AtomicCounter.Get","params":"x","id":5}', -32600),
    (b"[]", -32600),
    (
        json.dumps(
            [{"jsonrpc": "2.0", "method": "AtomicCounter.Get", "params": ["x"], "id": i} for i in range(5000)]
        ).encode(),
        -32600,
    ),
    (b"[" * 100_000, -32600),
    (b'{"jsonrpc":"2.0","method":"Probe.Echo","params":' + b"[" * 5000 + b"]" * 5000 + b',"id":6}', -32600),
    (b'{"jsonrpc":"2.0","method":"\xff\xfe","id":7}', -32700),
    (b'{"jsonrpc":"2.0","method":"Probe.Echo","params":[NaN],"id":8}', -32700),
    (b'{"jsonrpc":"2.0","method":"Probe.Crash","params":["e2e"],"id":9}', -32603),
]


@pytest.mark.parametrize(
    "body, code", MALFORMED, ids=[f"{i}:{b[:24]!r}" for i, (b, _) in enumerate(MALFORMED)]
)
def test_malformed_requests_get_jsonrpc_errors_and_never_kill_the_server(
    served: Served, tokens: Dict[str, str], body: bytes, code: int
) -> None:
    with served.client(tokens["admin"]) as c:
        resp = c.post(PATH, content=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 200
        data = resp.json()
        assert data["jsonrpc"] == "2.0" and data["error"]["code"] == code, data
        assert "hunter2" not in resp.text and "Traceback" not in resp.text
        assert served.alive()
        assert rpc(c, "Probe.Echo", [1])["result"] == {"args": [1], "kwargs": {}}  # still answers


def test_batches_of_non_objects_and_oversized_bodies(served: Served, tokens: Dict[str, str]) -> None:
    with served.client(tokens["admin"]) as c:
        many = c.post(PATH, content=b'[1, "a", null]').json()
        assert [r["error"]["code"] for r in many] == [-32600] * 3 and [r["id"] for r in many] == [None] * 3
        big = c.post(
            PATH, content=b'{"jsonrpc":"2.0","method":"Probe.Echo","params":["' + b"x" * (2 << 20) + b'"]}'
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == -32600
        mixed = c.post(
            PATH,
            json=[
                {
                    "jsonrpc": "2.0",
                    "method": "AtomicCounter.Incr",
                    "params": {"name": "batch", "delta": 5},
                    "id": "a",
                },
                {"jsonrpc": "2.0", "method": "AtomicCounter.Incr", "params": ["batch"]},
                {"jsonrpc": "2.0", "method": "Probe.Async", "params": [7], "id": 2},
            ],
        ).json()
        assert [(r["id"], r.get("result")) for r in mixed] == [("a", 5), (2, 7)]
        assert rpc(c, "AtomicCounter.Get", ["batch"])["result"] == 6
        assert served.alive()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_fuzzed_bodies_over_real_http(served: Served, tokens: Dict[str, str], body: Any) -> None:
    with served.client(tokens["admin"]) as c:
        resp = c.post(PATH, content=json.dumps(body).encode())
        check_exchange(body, resp.status_code, resp.content)


def read_sink(url: str) -> Dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("sectors"):
                return {}
            rows = conn.exec_driver_sql("SELECT miner, number, version FROM sectors")
            return {f"s-t0{m}-{n}": int(v) for m, n, v in rows}
    finally:
        engine.dispose()


def test_sector_calls_change_state_that_reaches_the_sinks(served: Served, tokens: Dict[str, str]) -> None:
    with served.client(tokens["write"]) as c:
        init = [{"id": {"miner": 1000, "number": n}, "proof_type": 8} for n in range(1, 6)]
        assert len(rpc(c, "Sector.Init", [init])["result"]) == 5
        for n in range(1, 6):
            for st in ("PC1", "PC2", "C2"):
                assert "result" in rpc(c, "Sector.Update", [f"s-t01000-{n}", {"latest_state": {"state": st}}])
        for n in (1, 2, 3):
            assert rpc(c, "Sector.Finalize", [f"s-t01000-{n}"])["result"]["finalized"] is True
        assert rpc(c, "Sector.Restore", ["s-t01000-3"])["result"]["version"] == 6
        want = {
            s["id"]["number"]: s["version"]
            for s in rpc(c, "Sector.List", {"miner": 1000})["result"]["sectors"]
        }
        assert want == {1: 5, 2: 5, 3: 6, 4: 4, 5: 4}

        def drained() -> Any:
            status = rpc(c, "Sync.Status")["result"]
            mine = [s for s in status if s["name"] in SINKS]
            return len(mine) == 2 and all(s["lag_events"] == 0 and not s["dead_letters"] for s in mine)

        assert wait_for(drained, timeout=30, fail=False), rpc(c, "Sync.Status")
    root = served.config.parent
    for name in SINKS:
        rows = read_sink(sink_url(root, name))
        assert {k: v for k, v in rows.items() if k.startswith("s-t01000-")} == {
            f"s-t01000-{n}": v for n, v in want.items()
        }


def test_sigterm_runs_onshutdown_flushes_cursors_and_exits_zero(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path)
    marker = tmp_path / "shutdown.marker"
    token = make_token(cfg, "write")
    server = Served(cfg)
    try:
        with server.client(token) as c:
            init = [{"id": {"miner": 7, "number": n}, "proof_type": 8} for n in range(50)]
            assert len(rpc(c, "Sector.Init", [init])["result"]) == 50
            batch = [
                {
                    "jsonrpc": "2.0",
                    "method": "Sector.Update",
                    "params": [f"s-t07-{n}", {"latest_state": {"state": "PC1"}}],
                    "id": n,
                }
                for n in range(50)
            ]
            assert [r["result"]["version"] for r in c.post(PATH, json=batch).json()] == [2] * 50
        assert not marker.exists()
    finally:
        rc = server.stop(signal.SIGTERM)
    assert rc == 0, server.output()
    assert marker.read_text() == "shutdown\n"  # the probe's onShutdown ran, once
    assert "sectorhooks: stopped" in server.lines
    # Every change was delivered and the cursors saved before exit: the sinks hold version 2 of all 50.
    for name in SINKS:
        rows = read_sink(sink_url(tmp_path, name))
        assert {k: v for k, v in rows.items() if k.startswith("s-t07-")} == {
            f"s-t07-{n}": 2 for n in range(50)
        }
    status = cli(cfg, "sync", "status", "--json")  # a fresh process reads the cursors saved at exit
    assert status.returncode == 0, status.stderr
    saved = {s["name"]: s for s in json.loads(status.stdout)["syncers"]}
    for name in SINKS:
        assert saved[name]["lag_events"] == 0 and saved[name]["cursor"] == saved[name]["head"], saved[name]


def test_sigint_shuts_down_cleanly_too(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path)
    server = Served(cfg)
    rc = server.stop(signal.SIGINT)
    assert rc == 0, server.output()
    assert (tmp_path / "shutdown.marker").read_text() == "shutdown\n"


def test_dev_mode_serves_loopback_without_token_and_refuses_other_addresses(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "[Common.API]\nDevMode = true\n")
    refused = cli(cfg, "serve", "--listen", "0.0.0.0:0")
    assert refused.returncode == 1
    assert "loopback" in refused.stderr and "DevMode" in refused.stderr
    server = Served(cfg)
    try:
        assert "dev mode" in server.lines[-1]
        with httpx.Client(base_url=server.origin) as c:
            assert rpc(c, "AtomicCounter.Incr", ["dev"])["result"] == 1
    finally:
        assert server.stop() == 0


def test_namespace_conflict_is_reported_at_start_and_the_first_plugin_keeps_serving(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    for name, word in (("a_first", "first"), ("b_second", "second")):
        write_rpc_plugin(
            plugins,
            name,
            f'class H:\n    def Who(self):\n        return "{word}"\n\n'
            'def handler():\n    return "Dup", H()\n',
        )
    cfg = write_config(tmp_path, f'[Common.Plugins]\nDir = ["{plugins}"]\n')
    token = make_token(cfg, "write")
    server = Served(cfg)
    try:
        refused = server.wait_line(lambda s: "refused" in s, 10)
        assert (
            refused is not None and "'a_first'" in refused and "'b_second'" in refused and "'Dup'" in refused
        )
        with server.client(token) as c:
            assert rpc(c, "Dup.Who")["result"] == "first"
            assert "b_second" in rpc(c, "Plugins.Problems")["result"][0]
            plugins = {p["name"]: p for p in rpc(c, "Plugins.List")["result"]}
            assert plugins["a_first"]["namespaces"] == ["Dup"] and plugins["a_first"]["rpc_error"] == ""
            assert plugins["b_second"]["namespaces"] == [] and "'a_first'" in plugins["b_second"]["rpc_error"]
    finally:
        assert server.stop() == 0


def test_no_route_gate_flag_overrides_the_config_and_tenants_flag_needs_a_gate(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, '[Common.Plugins]\nDisabled = ["sqlsync"]\n[Common.API]\nRouteGate = true\nTenants = true\n'
    )
    plain = make_token(cfg, "write")  # no tenant: the configured gate would refuse it forever
    server = Served(cfg, args=["--no-route-gate"])
    try:
        with server.client(plain) as c:
            resp = rpc(c, "AtomicCounter.Incr", ["ungated"])
            assert "result" in resp, f"the config's gate was not turned off: {resp}"
    finally:
        assert server.stop() == 0, server.output()
    bare = write_config(tmp_path / "bare")
    refused = cli(bare, "serve", "--tenants")
    assert refused.returncode == 2 and "RouteGate = true" in refused.stderr, refused.stderr


def test_bad_listen_address_and_port_in_use_fail_with_a_clear_message(tmp_path: Path, served: Served) -> None:
    cfg = write_config(tmp_path)
    bad = cli(cfg, "serve", "--listen", "nowhere")
    assert bad.returncode == 1 and "HOST:PORT" in bad.stderr
    port = served.origin.rsplit(":", 1)[1]
    taken = cli(cfg, "serve", "--listen", f"127.0.0.1:{port}")
    assert taken.returncode == 1 and "cannot listen" in taken.stderr


def test_route_gate_serves_plugin_namespaces_once_running_and_never_gates_the_host(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[Common.Plugins]\nDisabled = ["sqlsync"]\n')
    token = make_token(cfg, "write")
    server = Served(cfg, args=["--route-gate"])
    try:
        with server.client(token) as c:
            assert "result" in rpc(c, "Sector.StateCounts")  # host namespaces are never gated
            seen: List[Any] = []

            def served_now() -> bool:
                resp = rpc(c, "AtomicCounter.Incr", ["gated"])
                seen.append(resp.get("error", {}).get("code"))
                return "result" in resp

            assert wait_for(served_now, timeout=60, fail=False), seen
            assert set(seen) <= {-32010, None}, seen  # refused only by the gate while not yet RUNNING
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.parametrize("source", ["flags", "config"])
def test_route_gate_with_tenants_needs_a_tenant_token_with_the_plugin_enabled(
    tmp_path: Path, source: str
) -> None:
    api = "[Common.API]\nRouteGate = true\nTenants = true\n" if source == "config" else ""
    cfg = write_config(tmp_path, f'[Common.Plugins]\nDisabled = ["sqlsync"]\n{api}')
    plain = make_token(cfg, "write")
    made = create_token(cfg, "write", "acme-bot", tenant="acme")
    assert made["tenant"] == "acme"
    server = Served(cfg, args=["--route-gate", "--tenants"] if source == "flags" else [])
    try:
        with server.client(plain) as c:
            assert "result" in rpc(c, "Sector.StateCounts")
            no_tenant = wait_for(
                lambda: "tenant" in str(rpc(c, "AtomicCounter.Get", ["t"]).get("error")), 60, fail=False
            )
            assert no_tenant, rpc(c, "AtomicCounter.Get", ["t"])
            assert rpc(c, "AtomicCounter.Get", ["t"])["error"]["code"] == -32010
        with server.client(made["token"]) as c:
            err = rpc(c, "AtomicCounter.Get", ["t"])["error"]
            assert err["code"] == -32010 and "'acme'" in err["message"], err
    finally:
        assert server.stop() == 0, server.output()
