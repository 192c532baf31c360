"""A small JSON-RPC client for scripts (stdlib ``urllib`` only): one call, and every sector page by page.

::

    from sectorhooks.rpc.client import iter_sectors

    for state in iter_sectors("http://127.0.0.1:1789/rpc/v0", token, workspace="online"):
        print(state.id, state.state_name)

:func:`iter_sectors` follows ``Sector.List``'s ``next`` cursor, one page (``page_size`` sectors,
1 to 1,000) per request, so neither the client nor the server holds more than a page. A sector
written while it pages is seen if its id sorts after the page being read; none that existed
when the walk began is skipped or repeated.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Optional

from sectorhooks_spec import SectorState, from_jsonable

from ..errors import RpcError
from ..state.scan import PAGE_DEFAULT


def call(
    url: str, method: str, params: Any = None, token: Optional[str] = None, timeout: float = 30.0
) -> Any:
    """The ``result`` of ``method(params)`` at ``url``; an error answer raises :class:`RpcError`
    (its ``code``, ``message``, ``data``), an HTTP error without a JSON-RPC answer ``OSError``."""
    body: Dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        body["params"] = params
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # 401/403/429...: the body may still be a JSON-RPC answer
        try:
            answer = json.loads(exc.read())
        except ValueError:
            raise OSError(f"{method} at {url}: HTTP {exc.code} {exc.reason}") from None
    if not isinstance(answer, dict):
        raise OSError(f"{method} at {url}: not a JSON-RPC answer: {str(answer)[:120]}")
    error = answer.get("error")
    if error is not None:
        raise RpcError(int(error.get("code", 0)), str(error.get("message", "")), error.get("data"))
    return answer.get("result")


def iter_pages(
    url: str,
    token: Optional[str] = None,
    workspace: Optional[str] = None,
    miner: Optional[int] = None,
    page_size: int = PAGE_DEFAULT,
    timeout: float = 30.0,
) -> Iterator[List[Dict[str, Any]]]:
    """Each page of ``Sector.List`` (the sectors' JSON) until its ``next`` is null."""
    cursor: Optional[str] = None
    while True:
        params: Dict[str, Any] = {"workspace": workspace, "miner": miner, "limit": page_size}
        if cursor is not None:
            params["after"] = cursor
        page = call(url, "Sector.List", params, token, timeout)
        if page["sectors"]:
            yield page["sectors"]
        cursor = page["next"]
        if cursor is None:
            return


def iter_sectors(
    url: str,
    token: Optional[str] = None,
    workspace: Optional[str] = None,
    miner: Optional[int] = None,
    page_size: int = PAGE_DEFAULT,
    timeout: float = 30.0,
) -> Iterator[SectorState]:
    """Every sector (of ``workspace`` and ``miner`` when given) in sector id order, fetched a
    page of ``page_size`` at a time."""
    for page in iter_pages(url, token, workspace, miner, page_size, timeout):
        for item in page:
            yield from_jsonable(SectorState, item)
