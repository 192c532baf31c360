"""Tokens (stored hashed in the real KV) and how the gateway enforces them over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rpc.rpckit import AsgiClient
from sectorhooks.rpc import TokenStore, build_app
from sectorhooks.rpc.auth import COLLECTION, CallContext
from sectorhooks.rpc.protocol import FORBIDDEN, INVALID_REQUEST, UNAUTHORIZED
from sectorhooks_spec import KeyNotFound
from support import wait_for


def rpc(method: str, params: Any = None, id: Any = 1) -> bytes:
    body: dict = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


def test_token_secret_is_never_stored_only_its_hash(runtime: Any, tokens: TokenStore) -> None:
    token, info = tokens.create("read", "dash")
    secret = token.split(".")[2]
    raw = list(runtime.kv.open_collection(COLLECTION).scan())
    assert len(raw) == 1
    stored = raw[0][1].decode()
    assert secret not in stored and token not in stored
    assert json.loads(stored)["perm"] == "read" and len(json.loads(stored)["sha256"]) == 64
    assert tokens.verify(token) == info


@pytest.mark.parametrize("mangle", ["wrong-secret", "bad-prefix", "two-parts", "unknown-id", "empty"])
def test_forged_tokens_do_not_verify(tokens: TokenStore, mangle: str) -> None:
    token, _ = tokens.create("admin")
    prefix, tid, secret = token.split(".")
    forged = {
        "wrong-secret": f"{prefix}.{tid}.{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}",
        "bad-prefix": f"sh2.{tid}.{secret}",
        "two-parts": f"{prefix}.{tid}",
        "unknown-id": f"{prefix}.000000000000.{secret}",
        "empty": "",
    }[mangle]
    assert tokens.verify(forged) is None


def test_list_and_revoke(tokens: TokenStore) -> None:
    t1, i1 = tokens.create("read", "a")
    _, i2 = tokens.create("write", "b")
    assert [i.id for i in tokens.list()] == [i1.id, i2.id]
    assert tokens.verify(t1) == i1
    assert tokens.revoke(i1.id) == i1
    assert tokens.verify(t1) is None  # this process sees its own revocation at once
    assert [i.id for i in tokens.list()] == [i2.id]
    with pytest.raises(KeyNotFound):
        tokens.revoke(i1.id)


def test_revocation_by_another_process_takes_effect_within_the_cache_ttl(runtime: Any) -> None:
    server_side = TokenStore(runtime.kv, cache_ttl=0.2)
    cli_side = TokenStore(runtime.kv)  # as `sectorhooks token revoke` would, with its own cache
    token, info = cli_side.create("write")
    assert server_side.verify(token) == info
    cli_side.revoke(info.id)
    assert wait_for(
        lambda: server_side.cached(token) is None or server_side.verify(token) is None, 3.0, fail=False
    )


def test_bad_perm_or_name_is_refused(tokens: TokenStore) -> None:
    with pytest.raises(ValueError, match="read, write, admin"):
        tokens.create("root")
    with pytest.raises(ValueError, match="printable"):
        tokens.create("read", "a\nb")


def test_permissions_nest() -> None:
    assert CallContext("admin").allows("write") and CallContext("admin").allows("read")
    assert CallContext("write").allows("read") and not CallContext("write").allows("admin")
    assert not CallContext("read").allows("write")


# --- over HTTP (in-process app, real KV) -------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer sh1.nope.nope"])
def test_calls_without_a_valid_token_get_401_and_a_jsonrpc_error(gateway: AsgiClient, header: Any) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = gateway.post(rpc("Sector.StateCounts"), headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    body = resp.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["code"] == UNAUTHORIZED


def test_read_token_reads_but_cannot_write(gateway: AsgiClient, tokens: TokenStore) -> None:
    ro, _ = tokens.create("read")
    ok = gateway.post(rpc("AtomicCounter.Get", ["c"]), ro)
    assert ok.status_code == 200 and ok.json()["result"] == 0
    denied = gateway.post(rpc("AtomicCounter.Incr", ["c"]), ro).json()
    assert denied["error"]["code"] == FORBIDDEN
    denied = gateway.post(
        rpc("Sector.Init", [[{"id": {"miner": 1, "number": 1}, "proof_type": 8}]]), ro
    ).json()
    assert denied["error"]["code"] == FORBIDDEN
    rw, _ = tokens.create("write")
    assert gateway.post(rpc("AtomicCounter.Get", ["c"]), rw).json()["result"] == 0  # nothing was written
    assert gateway.post(rpc("AtomicCounter.Incr", ["c"]), rw).json()["result"] == 1
    assert gateway.post(rpc("Auth.List"), rw).json()["error"]["code"] == FORBIDDEN


def test_admin_token_manages_tokens_over_rpc(gateway: AsgiClient, tokens: TokenStore) -> None:
    admin, ai = tokens.create("admin", "ops")
    victim, vi = tokens.create("write", "ci")
    listed = gateway.post(rpc("Auth.List"), admin).json()["result"]
    assert [t["id"] for t in listed] == [ai.id, vi.id] and all("sha256" not in t for t in listed)
    assert gateway.post(rpc("Auth.Revoke", [vi.id]), admin).json()["result"]["id"] == vi.id
    assert gateway.post(rpc("AtomicCounter.Incr", ["c"]), victim).status_code == 401


def test_dev_mode_lets_loopback_callers_in_without_token_but_not_others(
    runtime: Any, tokens: TokenStore
) -> None:
    app = build_app(runtime, tokens=tokens, dev_mode=True)
    local, remote = AsgiClient(app, ("127.0.0.1", 5000)), AsgiClient(app, ("192.0.2.7", 5000))
    try:
        assert local.post(rpc("AtomicCounter.Incr", ["d"])).json()["result"] == 1
        assert remote.post(rpc("AtomicCounter.Incr", ["d"])).status_code == 401
        assert local.post(rpc("AtomicCounter.Incr", ["d"]), "sh1.bad.token").status_code == 401
    finally:
        local.close()
        remote.close()


def test_without_dev_mode_loopback_needs_a_token_too(gateway: AsgiClient) -> None:
    assert gateway.post(rpc("AtomicCounter.Get", ["d"])).status_code == 401


def test_http_edges_body_limit_method_and_health(runtime: Any, tokens: TokenStore) -> None:
    from sectorhooks.rpc import Limits

    token, _ = tokens.create("write")
    client = AsgiClient(build_app(runtime, tokens=tokens, limits=Limits(max_body_bytes=1000)))
    try:
        big = client.post(rpc("AtomicCounter.Incr", ["x" * 2000]), token)
        assert big.status_code == 413 and big.json()["error"]["code"] == INVALID_REQUEST
        get = client.request("GET", "/rpc/v0")
        assert get.status_code == 405 and get.json()["error"]["code"] == INVALID_REQUEST
        assert client.request("GET", "/healthz").json() == {"status": "ok"}
        note = client.post(b'[{"jsonrpc":"2.0","method":"AtomicCounter.Incr","params":["n"]}]', token)
        assert note.status_code == 204 and note.content == b""
        assert client.post(rpc("AtomicCounter.Get", ["n"]), token).json()["result"] == 1  # it did run
    finally:
        client.close()
