"""A pure JSON-RPC 2.0 engine: bytes in, bytes out, no HTTP and no method table.

:class:`Engine` decodes a request body (UTF-8 strictly, bounded size, bounded nesting depth, no
``NaN``/``Infinity``), validates every request object, calls ``dispatch(call, ctx)`` for each
valid one, in order, and encodes the responses: one object, a batch array, or ``None`` when every
request was a notification (the HTTP layer answers 204). It never raises: anything ``dispatch``
raises becomes an error object; an unexpected exception becomes ``-32603`` with a reference that
is logged together with the traceback, which never leaves the server.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from typing import Any, Awaitable, Callable, Dict, List, Optional, Union

import attrs

from ..errors import RpcError as RpcError  # re-exported: the rpc modules raise p.RpcError

log = logging.getLogger(__name__)

# --- error codes: the standard ones, then ours (-32000..-32099 is the server-error range) ------
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # a deliberate domain error (SectorhooksError) without a code of its own
UNAUTHORIZED = -32001  # no token, unknown or revoked token (HTTP 401)
FORBIDDEN = -32002  # the token lacks the permission the method needs
NOT_FOUND = -32004  # KeyNotFound: sector, counter, token ... does not exist
STORE_UNAVAILABLE = -32005  # the KV store cannot be reached; nothing was written, retry
TIMED_OUT = -32008  # a plugin method ran past CallTimeout (or shutdown came first); outcome unknown
CONFLICT = -32009  # optimistic update kept conflicting; retry later
NAMESPACE_REFUSED = -32010  # route gating refused this plugin namespace (or tenant)
BUSY = -32029  # the plugin namespace has PluginConcurrency calls in flight; this one never started

#: Code -> short description, as documented in the rpc package docstring.
ERROR_CODES: Dict[int, str] = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    SERVER_ERROR: "Server error",
    UNAUTHORIZED: "Unauthorized",
    FORBIDDEN: "Forbidden",
    NOT_FOUND: "Not found",
    STORE_UNAVAILABLE: "Store unavailable",
    TIMED_OUT: "Timed out",
    CONFLICT: "Conflict",
    NAMESPACE_REFUSED: "Namespace refused",
    BUSY: "Busy",
}

Id = Union[str, int, float, None]


@attrs.frozen
class Limits:
    """What one HTTP request may hold; beyond these a request is refused with an error object."""

    max_body_bytes: int = 1 << 20  # 1 MiB
    max_batch: int = 100
    max_depth: int = 32


@attrs.frozen
class Call:
    """One valid request: ``params`` is a list, a dict or ``None``; ``notification`` has no id."""

    method: str
    params: Union[List[Any], Dict[str, Any], None]
    id: Id = None
    notification: bool = False


Dispatch = Callable[[Call, Any], Awaitable[Any]]

_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)
_MISSING = object()


def exceeds_depth(text: str, limit: int) -> bool:
    """True if arrays/objects in ``text`` nest deeper than ``limit`` (brackets in strings ignored)."""
    if text.count("[") + text.count("{") <= limit:  # fast path: most bodies cannot be that deep
        return False
    depth = 0
    for m in _STRING_OR_BRACKET.finditer(text):
        c = m.group()
        if c == "[" or c == "{":
            depth += 1
            if depth > limit:
                return True
        elif c == "]" or c == "}":
            depth -= 1
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def decode_body(body: bytes, limits: Limits) -> Any:
    """Parse a request body into Python data, or raise :class:`RpcError` (-32700 / -32600)."""
    if len(body) > limits.max_body_bytes:
        raise RpcError(
            INVALID_REQUEST, f"Invalid Request: body of {len(body)} bytes exceeds {limits.max_body_bytes}"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RpcError(PARSE_ERROR, f"Parse error: body is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise RpcError(PARSE_ERROR, "Parse error: empty body")
    if exceeds_depth(text, limits.max_depth):
        raise RpcError(INVALID_REQUEST, f"Invalid Request: JSON nested deeper than {limits.max_depth} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise RpcError(PARSE_ERROR, f"Parse error: {exc}"[:300]) from None


def _valid_id(value: Any) -> bool:
    t = type(value)
    return value is None or t is str or t is int or t is float


def request_id(obj: Any) -> Id:
    """The id to echo for ``obj``: its ``id`` when present and of a valid type, else ``None``."""
    if type(obj) is dict:
        value = obj.get("id")
        if _valid_id(value):
            return value
    return None


def parse_call(obj: Any) -> Call:
    """Validate one request object; raise :class:`RpcError` -32600 naming what is wrong."""
    if type(obj) is not dict:
        raise RpcError(INVALID_REQUEST, f"Invalid Request: expected an object, got {_json_type(obj)}")
    if obj.get("jsonrpc") != "2.0":
        got = obj.get("jsonrpc", _MISSING)
        what = "missing" if got is _MISSING else f"{got!r:.40}"
        raise RpcError(INVALID_REQUEST, f'Invalid Request: "jsonrpc" must be "2.0", got {what}')
    method = obj.get("method")
    if type(method) is not str:
        what = "missing" if "method" not in obj else _json_type(method)
        raise RpcError(INVALID_REQUEST, f'Invalid Request: "method" must be a string, got {what}')
    params = obj.get("params", None)
    if params is not None and type(params) is not list and type(params) is not dict:
        raise RpcError(
            INVALID_REQUEST, f'Invalid Request: "params" must be an array or object, got {_json_type(params)}'
        )
    if "params" in obj and params is None:
        raise RpcError(INVALID_REQUEST, 'Invalid Request: "params" must be an array or object, got null')
    if "id" not in obj:
        return Call(method, params, None, True)
    rid = obj["id"]
    if not _valid_id(rid):
        raise RpcError(
            INVALID_REQUEST, f'Invalid Request: "id" must be a string, number or null, got {_json_type(rid)}'
        )
    return Call(method, params, rid, False)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def error_response(exc: RpcError, rid: Id = None) -> Dict[str, Any]:
    """A response object carrying ``exc``."""
    return {"jsonrpc": "2.0", "error": exc.to_dict(), "id": rid}


def encode(payload: Any) -> bytes:
    """Compact JSON bytes (ASCII-escaped, so ids holding lone surrogates still encode)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("ascii")


def internal_error(where: str, exc: BaseException) -> RpcError:
    """Log ``exc`` with its traceback under a fresh reference; return a -32603 naming only the ref."""
    ref = uuid.uuid4().hex[:12]
    log.error("%s raised %s (ref %s)", where, type(exc).__name__, ref, exc_info=exc)
    return RpcError(INTERNAL_ERROR, f"Internal error (ref {ref}; see the server log)", {"ref": ref})


class Engine:
    """Runs JSON-RPC 2.0 request bodies through ``dispatch``; see the module docstring."""

    def __init__(self, dispatch: Dispatch, limits: Optional[Limits] = None):
        self.dispatch = dispatch
        self.limits = limits or Limits()

    async def handle(self, body: bytes, ctx: Any = None) -> Optional[bytes]:
        """Response bytes for ``body``, or ``None`` when there is nothing to answer."""
        try:
            data = decode_body(body, self.limits)
        except RpcError as exc:
            return encode(error_response(exc))
        if type(data) is list:
            return await self.handle_batch(data, ctx)
        return await self.handle_one(data, ctx)

    async def handle_batch(self, items: List[Any], ctx: Any) -> Optional[bytes]:
        """Responses of a batch in request order; ``None`` when all were notifications."""
        if not items:
            return encode(error_response(RpcError(INVALID_REQUEST, "Invalid Request: empty batch")))
        if len(items) > self.limits.max_batch:
            msg = f"Invalid Request: batch of {len(items)} requests exceeds the limit {self.limits.max_batch}"
            return encode(error_response(RpcError(INVALID_REQUEST, msg)))
        out = []
        for item in items:
            resp = await self.handle_one(item, ctx)
            if resp is not None:
                out.append(resp)
        return b"[" + b",".join(out) + b"]" if out else None

    async def handle_one(self, obj: Any, ctx: Any) -> Optional[bytes]:
        """The encoded response to one request, ``None`` for a notification."""
        try:
            call = parse_call(obj)
        except RpcError as exc:
            return encode(error_response(exc, request_id(obj)))
        try:
            result = await self.dispatch(call, ctx)
        except RpcError as exc:
            return None if call.notification else encode(error_response(exc, call.id))
        except Exception as exc:
            err = internal_error(f"method {call.method[:100]!r}", exc)
            return None if call.notification else encode(error_response(err, call.id))
        if call.notification:
            return None
        try:  # a result that cannot be encoded is refused here, where the id is still known
            return encode({"jsonrpc": "2.0", "result": result, "id": call.id})
        except (TypeError, ValueError, RecursionError) as exc:
            return encode(error_response(internal_error(f"result of {call.method[:100]!r}", exc), call.id))
