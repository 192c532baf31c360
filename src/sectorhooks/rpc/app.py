"""The HTTP side of the gateway: a Starlette app serving JSON-RPC 2.0 at ``POST /rpc/v0``.

HTTP statuses: 200 for every JSON-RPC response (errors included), 204 when every request was a
notification, 401 (+ a -32001 error object) without a valid bearer token, 413 (+ -32600) for a
body over the limit, 405 (+ -32600) for anything but POST. ``GET /healthz`` (the process answers)
and ``GET /readyz`` (KV, syncers, plugins: see :mod:`.health`) need no token; ``GET /metrics``
(:mod:`.metrics`) needs one as JSON-RPC does, unless ``[Common.API] MetricsOpen = true``.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import APIConfig, SyncSettings
from . import protocol as p
from .access import AccessLog
from .auth import MISS, CallContext, TokenStore
from .health import Checks, healthz
from .host_api import register_host_namespaces
from .isolation import PluginCalls
from .methods import Gate, MethodRegistry
from .metrics import Metrics

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

RPC_PATH = "/rpc/v0"
_JSON = "application/json"


def is_loopback(host: Optional[str]) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(listen: str) -> Tuple[str, int]:
    """``"127.0.0.1:1789"`` / ``"[::1]:1789"`` -> ``(host, port)``; raises ``ValueError`` naming the fix."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {listen!r} must be HOST:PORT, e.g. 127.0.0.1:1789")
    return host.strip("[]"), int(port)


def _error(status: int, code: int, message: str, headers: Optional[Dict[str, str]] = None) -> Response:
    body = p.encode(p.error_response(p.RpcError(code, message)))
    return Response(body, status_code=status, media_type=_JSON, headers=headers)


class Gateway:
    """Authenticates, reads the body within limits and hands it to the engine."""

    def __init__(self, engine: p.Engine, tokens: Optional[TokenStore], dev_mode: bool):
        self.engine, self.tokens, self.dev_mode = engine, tokens, dev_mode
        self.max_body = engine.limits.max_body_bytes

    async def _context(self, request: Request) -> Any:
        client = request.client.host if request.client else ""
        header = request.headers.get("authorization")
        if header is None:
            if self.dev_mode and is_loopback(client):
                return CallContext("admin", None, client)
            return _error(
                401,
                p.UNAUTHORIZED,
                "Unauthorized: send Authorization: Bearer <token> "
                "(create one with `sectorhooks token create`)",
                {"WWW-Authenticate": "Bearer"},
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or self.tokens is None:
            return _error(
                401,
                p.UNAUTHORIZED,
                "Unauthorized: use Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
        info = self.tokens.cached(token)
        if info is MISS:
            info = await anyio.to_thread.run_sync(self.tokens.verify, token)
        if info is None:
            return _error(
                401,
                p.UNAUTHORIZED,
                "Unauthorized: unknown or revoked token",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return CallContext(info.perm, info, client)  # type: ignore[union-attr,arg-type]

    async def _body(self, request: Request) -> Optional[bytes]:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return None
        chunks = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_body:
                    return None
                chunks.append(chunk)
        except ClientDisconnect:
            return b""  # nobody is left to answer; an empty body ends it as a parse error
        return b"".join(chunks)

    async def rpc(self, request: Request) -> Response:
        """``POST /rpc/v0``."""
        if request.method != "POST":
            return _error(405, p.INVALID_REQUEST, "Invalid Request: use POST", {"Allow": "POST"})
        ctx = await self._context(request)
        if isinstance(ctx, Response):
            return ctx
        body = await self._body(request)
        if body is None:
            return _error(413, p.INVALID_REQUEST, f"Invalid Request: body exceeds {self.max_body} bytes")
        try:
            out = await self.engine.handle(body, ctx)
        except Exception as exc:  # the engine answers everything itself; this is a last resort
            err = p.internal_error("JSON-RPC engine", exc)
            return Response(p.encode(p.error_response(err)), media_type=_JSON)
        if out is None:
            return Response(status_code=204)
        return Response(out, media_type=_JSON)


def build_app(
    runtime: Runtime,
    *,
    tokens: Optional[TokenStore],
    gate: Optional[Gate] = None,
    limits: Optional[p.Limits] = None,
    dev_mode: Optional[bool] = None,
    call_timeout: Optional[float] = None,
    plugin_concurrency: Optional[int] = None,
) -> Starlette:
    """The gateway app for ``runtime`` (``.host``, ``.state``, ``.sync``; a :class:`Runtime`).

    ``tokens`` verifies bearer tokens; ``gate(namespace, token_info)`` may refuse plugin
    namespaces by raising ``RouteRefused``; ``dev_mode`` (default ``[Common.API] DevMode``) lets
    loopback clients call without a token, with admin rights. Plugin methods run through
    ``app.state.plugin_calls`` (:class:`~.isolation.PluginCalls`): ``call_timeout`` and
    ``plugin_concurrency`` default to ``[Common.API] CallTimeout`` and ``PluginConcurrency``.
    ``app.state.registry`` holds the method table (and ``.problems``: namespaces refused at start);
    ``app.state.metrics`` the app's :class:`~.metrics.Metrics`, ``app.state.checks`` what
    ``/readyz`` checks.
    """
    api = getattr(getattr(runtime, "config", None), "api", None) or APIConfig()
    sync_settings = getattr(getattr(runtime, "config", None), "sync", None) or SyncSettings()
    if dev_mode is None:
        dev_mode = bool(api.dev_mode)
    calls = PluginCalls(
        call_timeout if call_timeout is not None else api.call_timeout,
        plugin_concurrency if plugin_concurrency is not None else api.plugin_concurrency,
    )
    registry = MethodRegistry(gate)
    register_host_namespaces(registry, runtime, tokens, calls)
    registry.load_plugins(runtime.host)
    calls.install(registry)
    checks = Checks(runtime, sync_settings)
    metrics = Metrics(runtime, checks, metrics_open=api.metrics_open)
    engine = p.Engine(metrics.instrument(registry.dispatch, registry.methods.__contains__), limits)
    gateway = Gateway(engine, tokens, dev_mode)
    app = Starlette(
        routes=[
            Route(RPC_PATH, gateway.rpc, methods=["POST", "GET", "PUT", "DELETE", "PATCH"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", checks.readyz, methods=["GET"]),
            Route("/metrics", metrics.endpoint(gateway._context), methods=["GET"]),
        ]
    )
    app.add_middleware(AccessLog)  # one line per call with `serve --access-log`; one check while off
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.checks = checks
    app.state.plugin_calls = calls
    app.state.gateway = gateway
    return app
