"""The access log: an ASGI middleware writing one line per JSON-RPC call (``serve --access-log``).

Mount it around the gateway app (``AccessLog(app)``, or ``app.add_middleware(AccessLog)``); it
costs one ``isEnabledFor`` a request while the access log is off. When it is on, it keeps a copy of
the request body as the app reads it and of the response body as the app sends it (up to
``MAX_CAPTURE`` bytes each) and, once the response is sent, writes through the logger
``sectorhooks.access`` (:data:`sectorhooks.logs.ACCESS_LOGGER`) one line per call of a JSON-RPC
request (a batch of N calls: N lines), and one line per request on other paths::

    127.0.0.1:50432 POST /rpc/v0 Sector.Get id=7 ok 200 1.8ms
    127.0.0.1:50432 POST /rpc/v0 Hang.Sleep id=8 error -32008 200 30001.2ms
    127.0.0.1:50433 GET /healthz 200 0.2ms

In JSON log format the same facts are keys: client, http_method, path, status, rpc_method,
rpc_id, outcome, error_code, ms. A line never holds params, results or tokens.
"""

from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable, Dict, Iterator, List, MutableMapping, Optional, Tuple

from ..logs import access, access_log_enabled

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Bytes of a request or response body kept to name the calls; past it the line says "-".
MAX_CAPTURE = 1 << 20
RPC_PATH = "/rpc/v0"


class _Capture:
    def __init__(self) -> None:
        self.chunks: List[bytes] = []
        self.size = 0

    def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size <= MAX_CAPTURE:
            self.chunks.append(chunk)

    def json(self) -> Any:
        if not self.chunks or self.size > MAX_CAPTURE:
            return None
        try:
            return json.loads(b"".join(self.chunks))
        except ValueError:
            return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _errors_by_id(response: Any) -> Tuple[Dict[str, int], Optional[int]]:
    """``json.dumps(id) -> error code`` of the response's error objects, and an error without id."""
    by_id: Dict[str, int] = {}
    anonymous = None
    for obj in response if isinstance(response, list) else [response]:
        if not isinstance(obj, dict) or not isinstance(obj.get("error"), dict):
            continue
        code = obj["error"].get("code")
        code = code if isinstance(code, int) else 0
        if obj.get("id") is None:
            anonymous = code
        else:
            by_id.setdefault(json.dumps(obj["id"]), code)
    return by_id, anonymous


def calls(request: Any, response: Any) -> Iterator[Tuple[str, str, str, Optional[int]]]:
    """``(method, id, outcome, error_code)`` per call of a JSON-RPC ``request`` and its ``response``."""
    errors, anonymous = _errors_by_id(response)
    items = request if isinstance(request, list) and request else [request]
    for call in items:
        if not isinstance(call, dict):
            bad = anonymous if anonymous is not None else -32600
            yield "-", "-", f"error {bad}", bad
            continue
        method = call.get("method")
        method = method if isinstance(method, str) else "-"
        if "id" not in call:
            yield method, "-", "notification", None
            continue
        key = json.dumps(call["id"])
        code = errors.get(key)
        if code is not None:
            yield method, key, f"error {code}", code
        elif response is None:
            yield method, key, "-", None  # no JSON answer (401, 413, a body past MAX_CAPTURE)
        else:
            yield method, key, "ok", None


class AccessLog:
    """ASGI middleware: the access log of the app it wraps (see the module doc)."""

    def __init__(self, app: ASGIApp, rpc_path: str = RPC_PATH):
        self.app, self.rpc_path = app, rpc_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or not access_log_enabled():
            await self.app(scope, receive, send)
            return
        rpc = scope.get("path") == self.rpc_path and scope.get("method") == "POST"
        body, answer = _Capture(), _Capture()
        status = 0
        start = time.perf_counter()

        async def receive_and_keep() -> Message:
            message = await receive()
            if rpc and message.get("type") == "http.request":
                body.add(message.get("body", b""))
            return message

        async def send_and_keep(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 0))
            elif rpc and message.get("type") == "http.response.body":
                answer.add(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_and_keep if rpc else receive, send_and_keep)
        finally:
            self._write(scope, rpc, body, answer, status or 500, time.perf_counter() - start)

    @staticmethod
    def _write(
        scope: Scope, rpc: bool, body: _Capture, answer: _Capture, status: int, seconds: float
    ) -> None:
        client, verb, path = _client(scope), scope.get("method", "-"), scope.get("path", "-")
        ms = round(seconds * 1000, 1)
        base = {"client": client, "http_method": verb, "path": path, "status": status, "ms": ms}
        if not rpc:
            access("%s %s %s %d %.1fms", client, verb, path, status, ms, **base)
            return
        for method, rpc_id, outcome, code in calls(body.json(), answer.json()):
            access(
                "%s %s %s %s id=%s %s %d %.1fms",
                client,
                verb,
                path,
                method,
                rpc_id,
                outcome,
                status,
                ms,
                rpc_method=method,
                rpc_id=rpc_id,
                outcome=outcome,
                error_code=code,
                **base,
            )
