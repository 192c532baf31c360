"""The host's namespaces over the in-process gateway: Sector.*, Plugins.*, Sync.* on the real KV."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from rpc.rpckit import AsgiClient
from sectorhooks.rpc import TokenStore
from sectorhooks.rpc.protocol import INVALID_PARAMS, NOT_FOUND, SERVER_ERROR
from sectorhooks_spec import SectorID, SectorState, Ticket, Workspace, to_jsonable


class Rpc:
    """Call the gateway with one token; ``ok`` returns the result, ``err`` the error object."""

    def __init__(self, client: AsgiClient, token: str):
        self.client, self.token = client, token

    def raw(self, method: str, params: Any = None) -> Any:
        body: dict = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            body["params"] = params
        resp = self.client.post(json.dumps(body).encode(), self.token)
        assert resp.status_code == 200
        return resp.json()

    def ok(self, method: str, params: Any = None) -> Any:
        resp = self.raw(method, params)
        assert "result" in resp, resp
        return resp["result"]

    def err(self, method: str, params: Any = None) -> Any:
        resp = self.raw(method, params)
        assert "error" in resp, resp
        return resp["error"]


@pytest.fixture
def api(gateway: AsgiClient, tokens: TokenStore) -> Rpc:
    return Rpc(gateway, tokens.create("write")[0])


def alloc(miner: int, number: int) -> dict:
    return {"id": {"miner": miner, "number": number}, "proof_type": 8}


def test_sector_lifecycle_over_rpc_changes_the_state_in_the_kv(api: Rpc, runtime: Any) -> None:
    states = api.ok("Sector.Init", [[alloc(1000, 1), alloc(1000, 2)]])
    assert [s["version"] for s in states] == [1, 1]
    sid = SectorID(1000, 1)
    new = api.ok(
        "Sector.Update",
        ["s-t01000-1", {"latest_state": {"state": "PC1"}, "ticket": {"ticket": "ab", "epoch": 7}}],
    )
    assert new["version"] == 2 and new["latest_state"]["state"] == "PC1"
    stored = runtime.state.get(sid)  # straight from the KV, not through the gateway
    assert stored.version == 2 and stored.ticket == Ticket("ab", 7) and stored.state_name == "PC1"
    assert api.ok("Sector.Get", [{"miner": 1000, "number": 1}]) == to_jsonable(stored)
    assert api.ok("Sector.StateCounts") == dict(runtime.state.state_counts())
    assert api.ok("Sector.Finalize", ["s-t01000-1"])["finalized"] is True
    assert runtime.state.workspace_of(sid) is Workspace.OFFLINE
    assert api.ok("Sector.Workspace", ["s-t01000-1"]) == "offline"
    assert [s["id"]["number"] for s in api.ok("Sector.List", {"workspace": "offline"})["sectors"]] == [1]
    assert [
        s["id"]["number"] for s in api.ok("Sector.List", {"workspace": "online", "miner": 1000})["sectors"]
    ] == [2]
    assert api.ok("Sector.Restore", ["s-t01000-1"])["version"] == 4
    assert runtime.state.workspace_of(sid) is Workspace.ONLINE
    assert len(api.ok("Sector.List", {"limit": 1})["sectors"]) == 1


def test_sector_import_with_and_without_override(api: Rpc, runtime: Any) -> None:
    state = to_jsonable(SectorState(id=SectorID(7, 9), sector_type=3, imported=True))
    assert api.ok("Sector.Import", [state])["imported"] is True
    err = api.err("Sector.Import", [state])
    assert err["code"] == SERVER_ERROR and "already exists" in err["message"]
    assert api.ok("Sector.Import", {"state": state, "override": True})["version"] == 2
    assert runtime.state.get(SectorID(7, 9)).version == 2


@pytest.mark.parametrize(
    "method, params, code, fragment",
    [
        ("Sector.Get", ["s-t01000-404"], NOT_FOUND, "sector s-t01000-404 not found"),
        ("Sector.Finalize", ["s-t01000-404"], NOT_FOUND, "not found"),
        ("Sector.Get", ["t01000-1"], INVALID_PARAMS, "not like"),
        ("Sector.Get", [{"miner": -1, "number": 1}], INVALID_PARAMS, "miner"),
        ("Sector.Get", [{"miner": 1}], INVALID_PARAMS, "missing field"),
        ("Sector.Update", ["s-t01000-1", {"version": 9}], INVALID_PARAMS, "cannot be updated"),
        ("Sector.Update", ["s-t01000-1", {"ticket": "nope"}], INVALID_PARAMS, "ticket"),
        ("Sector.Update", ["s-t01000-1", {}], INVALID_PARAMS, "no fields"),
        ("Sector.Update", ["s-t01000-1", []], INVALID_PARAMS, "must be an object"),
        ("Sector.Init", [[{"id": {"miner": 1, "number": 1}}]], INVALID_PARAMS, "proof_type"),
        ("Sector.List", {"workspace": "attic"}, INVALID_PARAMS, "attic"),
    ],
)
def test_bad_sector_calls_get_precise_errors(
    api: Rpc, method: str, params: Any, code: int, fragment: str
) -> None:
    api.ok("Sector.Init", [[alloc(1000, 1)]])
    err = api.err(method, params)
    assert err["code"] == code and fragment in err["message"], err


def test_finalizing_twice_is_a_domain_error(api: Rpc) -> None:
    api.ok("Sector.Init", [[alloc(5, 5)]])
    api.ok("Sector.Finalize", ["s-t05-5"])
    err = api.err("Sector.Finalize", ["s-t05-5"])
    assert err["code"] == SERVER_ERROR and "offline" in err["message"]


def test_plugins_list_shows_the_counter_plugin_and_its_namespace(api: Rpc) -> None:
    plugins = {p["name"]: p for p in api.ok("Plugins.List")}
    assert plugins["atomic_counter"]["namespaces"] == ["AtomicCounter"]
    assert plugins["atomic_counter"]["status"] == "active"
    methods = {m["method"]: m for m in api.ok("Plugins.Methods")}
    assert methods["AtomicCounter.Get"]["perm"] == "read" and methods["Sector.Update"]["perm"] == "write"
    assert api.ok("Plugins.Problems") == []


def test_sync_status_is_the_sync_services(api: Rpc, runtime: Any) -> None:
    # Once the dispatchers settled (a fresh one goes "running" -> "idle"), both reads agree.
    deadline = time.monotonic() + 20
    while any(s["state"] != "idle" for s in runtime.sync.status()):
        assert time.monotonic() < deadline, runtime.sync.status()
        time.sleep(0.01)
    assert api.ok("Sync.Status") == json.loads(json.dumps(runtime.sync.status(), default=str))
