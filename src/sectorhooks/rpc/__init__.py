"""JSON-RPC 2.0 gateway: the host's namespaces and every RegisterJsonRpc plugin's, over HTTP.

``build_app(runtime, tokens=TokenStore(rt.kv))`` gives a Starlette app (run it with uvicorn;
``sectorhooks serve`` does). Modules: ``protocol`` (the pure JSON-RPC engine), ``methods`` (the
namespace table and dispatch), ``auth`` (tokens, permissions), ``host_api`` (``Sector.*``,
``Plugins.*``, ``Sync.*``, ``Auth.*``), ``isolation`` (plugin methods on bounded threads of their
own, with a call timeout), ``app`` (HTTP).

Error codes (``error.code``):

======  ==================  =================================================================
code    name                when
======  ==================  =================================================================
-32700  Parse error         body is not UTF-8, not JSON, empty, or holds NaN/Infinity/huge numbers
-32600  Invalid Request     not a request object, wrong ``jsonrpc``, bad ``method``/``params``/
                            ``id`` type, empty or oversized batch, body too large (HTTP 413),
                            JSON nested deeper than the limit, HTTP method other than POST
-32601  Method not found    no such ``Namespace.Method`` (a close match is suggested)
-32602  Invalid params      params do not bind to the handler's signature or its simple
                            annotations; a model (SectorState ...) does not decode
-32603  Internal error      the handler raised something unexpected: the message carries only a
                            reference (``data.ref``); the traceback is in the server log
-32000  Server error        the handler raised a deliberate ``SectorhooksError``: its message
-32001  Unauthorized        no token, malformed header, unknown or revoked token (HTTP 401)
-32002  Forbidden           the token's permission is below the method's (read < write < admin)
-32004  Not found           ``KeyNotFound``: sector, counter, token ... does not exist
-32005  Store unavailable   the KV store cannot be reached; nothing was written, retry
-32008  Timed out           a plugin method ran past ``[Common.API] CallTimeout`` (or the server
                            shut down first): it started and may still be running, its outcome is
                            unknown; the message names the method (``Hello.Sleep timed out
                            after 30s ...``)
-32009  Conflict            an optimistic update kept conflicting past its retry budget
-32010  Namespace refused   route gating refused the plugin namespace (the gate may pick a code)
-32029  Busy                the plugin namespace already has ``[Common.API] PluginConcurrency``
                            calls in flight (timed-out ones count until they return), or the
                            server is shutting down: the call never started, retry later;
                            ``data``: ``namespace``, ``limit``, ``in_flight``, ``hung``
======  ==================  =================================================================

Plugin methods never run on the threads that serve the host's namespaces: see ``isolation``.
A plugin picks its own code by raising an exception with an integer ``rpc_code`` attribute (and
optionally ``rpc_data``); its ``str()`` is the message.
"""

from .app import RPC_PATH, build_app, is_loopback, parse_listen
from .auth import PERMISSIONS, CallContext, TokenInfo, TokenStore
from .isolation import PluginCalls
from .methods import MethodRegistry
from .protocol import ERROR_CODES, Engine, Limits, RpcError

__all__ = [
    "ERROR_CODES",
    "PERMISSIONS",
    "RPC_PATH",
    "CallContext",
    "Engine",
    "Limits",
    "MethodRegistry",
    "PluginCalls",
    "RpcError",
    "TokenInfo",
    "TokenStore",
    "build_app",
    "is_loopback",
    "parse_listen",
]
