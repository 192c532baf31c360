"""``Sector.List`` pages (#20 item 2): ``{"sectors", "next"}`` with an opaque cursor, the limit
applied in the KV scan, bounds and bad cursors as -32602 naming the param; and the Python
iterator :func:`sectorhooks.rpc.client.iter_sectors` over a real ``sectorhooks serve``."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest

from rpc.rpckit import AsgiClient
from rpc.servekit import Served, make_token, write_config
from rpc.test_rpc_values import Rpc
from sectorhooks.errors import RpcError
from sectorhooks.rpc.auth import TokenStore
from sectorhooks.rpc.client import call, iter_pages, iter_sectors
from sectorhooks.rpc.protocol import INVALID_PARAMS
from sectorhooks.state.scan import PAGE_DEFAULT, PAGE_MAX
from sectorhooks_spec import SectorID


def alloc(miner: int, number: int) -> Dict[str, Any]:
    return {"id": {"miner": miner, "number": number}, "proof_type": 8}


def init(api: Rpc, ids: List[Tuple[int, int]]) -> None:
    for i in range(0, len(ids), 500):
        api.ok("Sector.Init", [[alloc(m, n) for m, n in ids[i : i + 500]]])


def walk(api: Rpc, size: Optional[int] = None, **filters: Any) -> List[List[Tuple[int, int]]]:
    pages: List[List[Tuple[int, int]]] = []
    cursor = None
    while True:
        params: Dict[str, Any] = dict(filters)
        if size is not None:
            params["limit"] = size
        if cursor is not None:
            params["after"] = cursor
        page = api.ok("Sector.List", params)
        assert set(page) == {"sectors", "next"}
        pages.append([(s["id"]["miner"], s["id"]["number"]) for s in page["sectors"]])
        cursor = page["next"]
        if cursor is None:
            return pages


@pytest.fixture
def api(gateway: AsgiClient, tokens: TokenStore) -> Rpc:
    return Rpc(gateway, tokens.create("write")[0])


def test_pages_cover_every_sector_once_in_order_with_the_default_size(api: Rpc, runtime: Any) -> None:
    ids = [(m, n) for m in (7, 1000) for n in range(130)]
    init(api, ids)
    pages = walk(api)
    assert [len(p) for p in pages] == [PAGE_DEFAULT, PAGE_DEFAULT, 60]
    assert [sid for p in pages for sid in p] == sorted(ids)
    for size in (1, 7, 260, PAGE_MAX):
        assert [sid for p in walk(api, size) for sid in p] == sorted(ids), size
    assert walk(api, 260) == [sorted(ids)]  # an exact fit: no empty last page
    assert [sid for p in walk(api, 9, miner=7) for sid in p] == [(7, n) for n in range(130)]
    api.ok("Sector.Finalize", ["s-t07-3"])
    assert walk(api, 5, workspace="offline") == [[(7, 3)]]
    online = [sid for p in walk(api, 11, workspace="online", miner=7) for sid in p]
    assert online == [(7, n) for n in range(130) if n != 3]
    assert api.ok("Sector.List", {"miner": 5}) == {"sectors": [], "next": None}


def test_the_cursor_is_opaque_and_tied_to_its_filters(api: Rpc) -> None:
    init(api, [(1000, n) for n in range(5)])
    first = api.ok("Sector.List", {"limit": 2, "miner": 1000})
    cursor = first["next"]
    assert isinstance(cursor, str) and "/" not in cursor and "=" not in cursor
    again = api.ok("Sector.List", {"limit": 2, "miner": 1000, "after": cursor})
    assert [s["id"]["number"] for s in again["sectors"]] == [2, 3]
    for other in ({}, {"miner": 7}, {"miner": 1000, "workspace": "online"}):
        message = api.invalid("Sector.List", {**other, "after": cursor}, "Sector.List", "'after'")
        assert ("miner=1000" in message and "same" not in message.lower()) or "filters" in message


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({"limit": 0}, ("'limit' must be an integer from 1 to 1000", "got 0")),
        ({"limit": PAGE_MAX + 1}, ("'limit' must be an integer from 1 to 1000", "got 1001")),
        ({"after": "not a cursor"}, ("'after' is not a cursor",)),
        ({"after": ""}, ("'after' is not a cursor",)),
        ({"after": base64.urlsafe_b64encode(b"[1, 2]").decode()}, ("'after' is not a cursor",)),
        (
            {
                "after": base64.urlsafe_b64encode(
                    json.dumps({"w": None, "m": None, "k": "x/y"}).encode()
                ).decode()
            },
            ("'after' is a damaged cursor",),
        ),
        (
            {
                "after": base64.urlsafe_b64encode(
                    json.dumps({"w": None, "m": None, "k": "9" * 20 + "/" + "0" * 20}).encode()
                ).decode()
            },
            ("'after' is a damaged cursor",),
        ),
        ({"after": 12}, ("'after'",)),
        ({"limit": -1}, ("'limit'",)),
    ],
)
def test_a_bad_cursor_or_limit_is_invalid_params_naming_it(
    api: Rpc, params: Dict[str, Any], fragments: Tuple[str, ...]
) -> None:
    init(api, [(1000, 1)])
    assert api.err("Sector.List", params)["code"] == INVALID_PARAMS
    api.invalid("Sector.List", params, "Sector.List", *fragments)


def test_paging_while_sectors_are_written_skips_and_repeats_none(api: Rpc) -> None:
    init(api, [(1000, n) for n in range(0, 400, 2)])  # even numbers exist before the walk
    seen: List[int] = []
    cursor = None
    created: Set[int] = set()
    added_after: Set[int] = set()
    low, high = iter(range(1, 400, 2)), iter(range(399, 0, -2))
    while True:
        page = api.ok("Sector.List", {"limit": 13, **({"after": cursor} if cursor else {})})
        numbers = [s["id"]["number"] for s in page["sectors"]]
        seen += numbers
        cursor = page["next"]
        if cursor is None:
            break
        # between pages: new sectors before the cursor (never listed) and after it (listed later)
        for source in (low, high):
            n = next((x for x in source if x not in created), None)
            if n is not None:
                api.ok("Sector.Init", [[alloc(1000, n)]])
                created.add(n)
                if n > numbers[-1]:
                    added_after.add(n)
        api.ok("Sector.Finalize", [f"s-t01000-{numbers[0]}"])  # moves a listed sector to offline
    assert len(seen) == len(set(seen)), "a sector was listed twice"
    assert set(range(0, 400, 2)) <= set(seen), "a sector that existed before the walk was skipped"
    assert added_after and added_after <= set(seen), "a sector written after the cursor did not appear"
    assert set(seen) - set(range(0, 400, 2)) == added_after
    assert seen == sorted(seen)


# --- over a real `sectorhooks serve`, with the stdlib client ----------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Served, str]]:
    root = tmp_path_factory.mktemp("paging")
    cfg = write_config(root)
    token = make_token(cfg, "write", "pager")
    server = Served(cfg)
    try:
        yield server, token
    finally:
        server.stop()


def test_iter_sectors_over_serve_equals_the_full_set_while_writes_happen(served: Tuple[Served, str]) -> None:
    server, token = served
    url = server.url
    for start in range(0, 2400, 800):
        call(url, "Sector.Init", [[alloc(1000, n) for n in range(start, start + 800, 2)]], token)
        call(url, "Sector.Init", [[alloc(7, n) for n in range(start, start + 800, 2)]], token)
    before = {(m, n) for m in (7, 1000) for n in range(0, 2400, 2)}
    stop = threading.Event()
    written: List[Tuple[int, int]] = []

    def writer() -> None:  # odd numbers of miner 1000 while the client pages
        n = 1
        while not stop.is_set() and n < 2400:
            call(url, "Sector.Init", [[alloc(1000, n)]], token)
            written.append((1000, n))
            call(url, "Sector.Update", [f"s-t01000-{n - 1}", {"latest_state": {"state": "PC1"}}], token)
            n += 2

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        got = [(s.id.miner, s.id.number) for s in iter_sectors(url, token, page_size=50)]
    finally:
        stop.set()
        thread.join()
    assert len(got) == len(set(got)) and got == sorted(got)
    assert before <= set(got)
    assert set(got) <= before | set(written)
    full = [(s.id.miner, s.id.number) for s in iter_sectors(url, token, page_size=PAGE_MAX)]
    assert full == sorted(before | set(written))
    pages = list(iter_pages(url, token, miner=7, page_size=PAGE_MAX))
    assert [len(p) for p in pages] == [1000, 200]
    online = list(iter_sectors(url, token, workspace="online", miner=7))
    assert [s.id for s in online] == [SectorID(7, n) for n in range(0, 2400, 2)]


def test_the_client_raises_the_servers_error(served: Tuple[Served, str]) -> None:
    server, token = served
    with pytest.raises(RpcError) as err:
        list(iter_sectors(server.url, token, page_size=PAGE_MAX + 1))
    assert err.value.code == INVALID_PARAMS and "'limit'" in err.value.message
    with pytest.raises(RpcError) as err:
        call(server.url, "Sector.List", {"after": "bogus"}, token)
    assert err.value.code == INVALID_PARAMS and "'after'" in err.value.message
    with pytest.raises(RpcError) as err:
        call(server.url, "Sector.List", {}, "not-a-token")
    assert err.value.code != INVALID_PARAMS
