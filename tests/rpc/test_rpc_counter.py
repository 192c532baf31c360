"""atomic_counter: the seed's RegisterJsonRpc example, on the host's real KV, alone and as replicas."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, List, Tuple

import pytest

from rpc.rpckit import AsgiClient
from rpc.servekit import PATH, Served, make_token, rpc, write_config
from sectorhooks.rpc import TokenStore
from sectorhooks.rpc.protocol import INVALID_PARAMS


class Counter:
    def __init__(self, client: AsgiClient, token: str):
        self.client, self.token = client, token

    def __call__(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "method": f"AtomicCounter.{method}", "params": list(params), "id": 1}
        return self.client.post(json.dumps(body).encode(), self.token).json()


@pytest.fixture
def counter(gateway: AsgiClient, tokens: TokenStore) -> Counter:
    return Counter(gateway, tokens.create("write")[0])


def test_incr_decr_get_reset(counter: Counter) -> None:
    assert counter("Get", "jobs")["result"] == 0
    assert counter("Incr", "jobs")["result"] == 1
    assert counter("Incr", "jobs", 10)["result"] == 11
    assert counter("Decr", "jobs")["result"] == 10
    assert counter("Decr", "jobs", 15)["result"] == -5
    assert counter("Get", "jobs")["result"] == -5
    assert counter("Get", "other")["result"] == 0  # counters are independent
    assert counter("Reset", "jobs")["result"] == -5  # returns the value it had
    assert counter("Get", "jobs")["result"] == 0
    assert counter("Incr", "naïve ✓")["result"] == 1


@pytest.mark.parametrize(
    "method, params, fragment",
    [
        ("Incr", ["", 1], "1-256 bytes"),
        ("Incr", ["x" * 257, 1], "1-256 bytes"),
        ("Incr", ["x", 1.5], "'delta' must be an integer"),
        ("Incr", [7], "'name' must be a string"),
        ("Get", [], "missing a required argument: 'name'"),
        ("Incr", ["big", 2**63], "overflow int64"),
    ],
)
def test_bad_names_and_deltas_are_invalid_params(
    counter: Counter, method: str, params: List[Any], fragment: str
) -> None:
    resp = counter(method, *params)
    assert resp["error"]["code"] == INVALID_PARAMS and fragment in resp["error"]["message"], resp


def test_overflow_leaves_the_counter_unchanged(counter: Counter) -> None:
    assert counter("Incr", "edge", 2**63 - 2)["result"] == 2**63 - 2
    assert counter("Incr", "edge", 5)["error"]["code"] == INVALID_PARAMS
    assert counter("Get", "edge")["result"] == 2**63 - 2


def _replica_config(root: Path, kv_url: str) -> Path:
    # sqlsync off: this is about the counter; every replica shares one KV through sqlkv
    body = (
        '[Common.Plugins]\nDisabled = ["sqlsync"]\n'
        '[Common.DB]\nDriver = "plugin"\n'
        f'[Common.DB.Plugin]\nPluginName = "sqlkv"\nMeta = {{ url = "{kv_url}" }}\n'
    )
    return write_config(root, body)


def _hammer(replicas: List[Tuple[Served, str]], clients_per_replica: int, calls: int) -> List[int]:
    seen: List[int] = []
    errors: List[BaseException] = []
    lock = threading.Lock()

    def worker(served: Served, token: str) -> None:
        try:
            with served.client(token) as c:
                mine = [rpc(c, "AtomicCounter.Incr", ["shared"], id=i)["result"] for i in range(calls)]
            with lock:
                seen.extend(mine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=r) for r in replicas for _ in range(clients_per_replica)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return sorted(seen)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_server_replicas_on_one_kv_count_exactly(tmp_path: Path, backend: str, request: Any) -> None:
    if backend == "postgresql":
        url, _ = request.getfixturevalue("pg_database")
        kv_url = url
    else:
        kv_url = f"sqlite:///{tmp_path / 'shared-kv.sqlite3'}"
    configs = [_replica_config(tmp_path / f"replica{i}", kv_url) for i in range(2)]
    token = make_token(configs[0], "write")  # one KV: a token made through one replica works on both
    replicas: List[Served] = []
    try:
        for cfg in configs:
            replicas.append(Served(cfg))
        values = _hammer([(r, token) for r in replicas], clients_per_replica=3, calls=60)
        assert values == list(range(1, 361))  # no lost update, no double count across processes
        with replicas[1].client(token) as c:
            assert rpc(c, "AtomicCounter.Get", ["shared"])["result"] == 360
        for r in replicas:
            with r.client(token) as c:
                resp = c.post(
                    PATH,
                    json={"jsonrpc": "2.0", "method": "AtomicCounter.Get", "params": ["shared"], "id": 1},
                )
                assert resp.json()["result"] == 360
    finally:
        codes = [r.stop() for r in replicas]  # stop every replica before judging any
    assert codes == [0] * len(configs), [r.output() for r in replicas]
