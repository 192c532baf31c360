"""Sector.* params at the boundary: what no sink can store is -32602 naming the field, over the
real gateway on the real KV (sqlkv on SQLite). Issue #16 failures 4 and 5 and its minor items."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Tuple

import pytest

from rpc.rpckit import AsgiClient
from sectorhooks.rpc import RPC_PATH, TokenStore
from sectorhooks.rpc.protocol import INVALID_PARAMS
from sectorhooks_spec import INT64_MAX, SectorID, SectorState, to_jsonable


def body(method: str, params: Any, rid: Any = 1) -> bytes:
    """A request body; ``json.dumps`` escapes lone surrogates as ``\\udxxx``, as any client would."""
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid}).encode()


class Rpc:
    def __init__(self, client: AsgiClient, token: str):
        self.client, self.token = client, token

    def call(self, method: str, params: Any) -> Dict[str, Any]:
        resp = self.client.post(body(method, params), self.token)
        assert resp.status_code == 200
        return resp.json()  # type: ignore[no-any-return]

    def ok(self, method: str, params: Any) -> Any:
        resp = self.call(method, params)
        assert "result" in resp, resp
        return resp["result"]

    def err(self, method: str, params: Any) -> Dict[str, Any]:
        resp = self.call(method, params)
        assert "error" in resp, resp
        return resp["error"]  # type: ignore[no-any-return]

    def invalid(self, method: str, params: Any, *fragments: str) -> str:
        """The message of a -32602 answer holding every fragment."""
        err = self.err(method, params)
        assert err["code"] == INVALID_PARAMS, err
        for fragment in fragments:
            assert fragment in err["message"], err
        return err["message"]  # type: ignore[no-any-return]


@pytest.fixture
def api(gateway: AsgiClient, tokens: TokenStore) -> Rpc:
    return Rpc(gateway, tokens.create("write")[0])


def alloc(number: int, proof_type: Any = 8, miner: int = 1000) -> Dict[str, Any]:
    return {"id": {"miner": miner, "number": number}, "proof_type": proof_type}


UPDATES: List[Tuple[Dict[str, Any], str]] = [
    ({"sector_type": 2**63}, "SectorState.sector_type is above the signed 64-bit range"),
    ({"sector_type": 10**40}, "SectorState.sector_type is above the signed 64-bit range"),
    ({"sector_type": -1}, "SectorState.sector_type must be >= 0"),
    ({"upgrade_landed_epoch": 2**64}, "SectorState.upgrade_landed_epoch is above"),
    ({"ticket": {"ticket": "ab", "epoch": 2**63}}, "SectorState.ticket.epoch is above"),
    (
        {"pieces": [{"cid": "a", "size": 1}, {"cid": "b", "size": -1}]},
        "SectorState.pieces[1].size must be >= 0",
    ),
    ({"abort_reason": "x\ud800"}, "SectorState.abort_reason is not valid UTF-8: lone surrogate"),
    ({"latest_state": {"state": "PC1", "worker": "\udc00"}}, "SectorState.latest_state.worker is not valid"),
]


@pytest.mark.parametrize(
    ("fields", "fragment"), UPDATES, ids=[next(iter(f)) + str(i) for i, (f, _) in enumerate(UPDATES)]
)
def test_update_with_a_value_no_sink_can_store_is_invalid_params(
    api: Rpc, runtime: Any, fields: Dict[str, Any], fragment: str
) -> None:
    api.ok("Sector.Init", [[alloc(1)]])
    head = runtime.state.log.head()
    api.invalid("Sector.Update", ["s-t01000-1", fields], fragment)
    assert runtime.state.get(SectorID(1000, 1)).version == 1 and runtime.state.log.head() == head


def test_the_largest_storable_values_are_accepted(api: Rpc, runtime: Any) -> None:
    api.ok("Sector.Init", [[alloc(1)]])
    new = api.ok(
        "Sector.Update", ["s-t01000-1", {"sector_type": INT64_MAX, "abort_reason": "dépassé \U0001f600"}]
    )
    assert new["sector_type"] == INT64_MAX and runtime.state.get(SectorID(1000, 1)).sector_type == INT64_MAX


def test_lone_surrogates_among_320_concurrent_updates_fail_alone(
    gateway: AsgiClient, tokens: TokenStore, runtime: Any
) -> None:
    """Issue #16 failure 5 as written: 320 concurrent Sector.Update calls, every tenth with a lone
    surrogate. Each of those is -32602 naming the field; every other one succeeds (it used to
    fail with the bad one when they shared a group commit: -32603, 3 to 36 of 320)."""
    token = tokens.create("write")[0]
    sectors = 16
    Rpc(gateway, token).ok("Sector.Init", [[alloc(n) for n in range(sectors)]])
    calls = []
    for i in range(320):
        bad = i % 10 == 0
        reason = f"r{i}" + ("\ud800" if bad else "")
        params = [f"s-t01000-{i % sectors}", {"abort_reason": reason, "latest_state": {"state": f"S{i}"}}]
        calls.append((bad, body("Sector.Update", params, i)))

    async def all_at_once() -> List[Any]:
        headers = {"Authorization": f"Bearer {token}"}
        return await asyncio.gather(
            *(gateway.http.post(RPC_PATH, content=b, headers=headers) for _, b in calls)
        )

    answers = [r.json() for r in gateway.loop.run_until_complete(all_at_once())]
    assert [a["id"] for a in answers] == list(range(320))
    for (bad, _), answer in zip(calls, answers):
        if bad:
            assert answer["error"]["code"] == INVALID_PARAMS, answer
            assert "SectorState.abort_reason is not valid UTF-8" in answer["error"]["message"]
        else:
            assert "result" in answer, answer
    for n in range(sectors):
        good = sum(1 for i in range(n, 320, sectors) if i % 10 != 0)
        assert runtime.state.get(SectorID(1000, n)).version == 1 + good


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"limit": -1}, "'limit' must be an integer from 0 to 9223372036854775807, got -1"),
        ({"limit": -5}, "'limit' must be an integer from 0"),
        ({"limit": 2**63}, "'limit' must be an integer from 0"),
        ({"limit": 1.5}, "'limit' must be an integer or null"),
        ({"limit": "2"}, "'limit' must be an integer or null"),
        ({"limit": True}, "'limit' must be an integer or null"),
        ({"miner": -1}, "'miner' must be an integer from 0"),
        ({"miner": 2**63}, "'miner' must be an integer from 0"),
    ],
)
def test_list_refuses_a_negative_or_non_integer_limit_or_miner(
    api: Rpc, params: Dict[str, Any], fragment: str
) -> None:
    api.ok("Sector.Init", [[alloc(n) for n in range(3)]])
    api.invalid("Sector.List", params, "Sector.List", fragment)


def test_list_with_a_limit_returns_at_most_that_many(api: Rpc) -> None:
    api.ok("Sector.Init", [[alloc(n) for n in range(3)]])
    # a page holds 1 to PAGE_MAX sectors (#20 item 2): 0 and INT64_MAX were accepted before
    api.invalid("Sector.List", {"limit": 0}, "'limit' must be an integer from 1 to 1000")
    assert [s["id"]["number"] for s in api.ok("Sector.List", {"limit": 2})["sectors"]] == [0, 1]
    api.invalid("Sector.List", {"limit": INT64_MAX}, "'limit' must be an integer from 1 to 1000")
    assert len(api.ok("Sector.List", {})["sectors"]) == 3


def test_init_with_no_sectors_is_invalid_params_naming_the_param(api: Rpc) -> None:
    api.invalid("Sector.Init", [[]], "Sector.Init", "'sectors'", "at least one sector")
    api.invalid("Sector.Init", {"sectors": []}, "'sectors'")


def test_init_values_are_held_to_the_bounds(api: Rpc, runtime: Any) -> None:
    api.invalid(
        "Sector.Init", [[alloc(1), alloc(2, 2**63)]], "sectors[1]", "AllocatedSector.proof_type is above"
    )
    api.invalid("Sector.Init", [[alloc(1, miner=-1)]], "sectors[0]", "AllocatedSector.id.miner must be >= 0")
    api.invalid("Sector.Init", [[alloc(1, miner=2**63)]], "AllocatedSector.id.miner is above")
    api.invalid("Sector.Init", [[alloc(3), alloc(3)]], "same sector twice: s-t01000-3")
    assert runtime.state.list() == []


def test_sector_ids_beyond_64_bits_are_invalid_params(api: Rpc) -> None:
    api.invalid(
        "Sector.Get", ["s-t09999999999999999999-1"], "sector id", "miner is above the signed 64-bit range"
    )
    api.invalid("Sector.Get", [{"miner": 1, "number": 2**63}], "SectorID.number is above")
    api.invalid("Sector.Finalize", [{"miner": 10**40, "number": 1}], "SectorID.miner is above")
    arabic = "s-t0\u0661\u0660\u0660\u0660-1"  # digits, but not ASCII ones
    api.invalid("Sector.Get", [arabic], "is not like")


def test_import_values_are_held_to_the_bounds(api: Rpc, runtime: Any) -> None:
    good = to_jsonable(SectorState(id=SectorID(7, 9), sector_type=3, imported=True))
    api.invalid("Sector.Import", [{**good, "sector_type": 2**63}], "SectorState.sector_type is above")
    api.invalid(
        "Sector.Import", [{**good, "seed": {"seed": "s", "epoch": -1}}], "SectorState.seed.epoch must be >= 0"
    )
    api.invalid(
        "Sector.Import", [{**good, "abort_reason": "\ud800"}], "SectorState.abort_reason is not valid"
    )
    api.invalid("Sector.Import", [{**good, "version": INT64_MAX}], "leaves no room for the next version")
    assert runtime.state.list() == []
    assert api.ok("Sector.Import", [{**good, "version": INT64_MAX - 1}])["version"] == INT64_MAX


def test_restore_sets_finalized_back_to_false(api: Rpc, runtime: Any) -> None:
    api.ok("Sector.Init", [[alloc(1)]])
    assert api.ok("Sector.Finalize", ["s-t01000-1"])["finalized"] is True
    restored = api.ok("Sector.Restore", ["s-t01000-1"])
    assert restored["finalized"] is False and restored["version"] == 3
    assert runtime.state.get(SectorID(1000, 1)).finalized is False
