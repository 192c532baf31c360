"""The method table: ``Namespace.Method`` -> handler, permission, signature checks; and dispatch.

A namespace belongs to one owner (the host, or one RegisterJsonRpc plugin); a second claim is
refused with an error naming both. A plugin's ``Handler()`` returns a
:class:`~sectorhooks_spec.JsonRpcNamespace` (or the older ``(namespace, handler)`` tuple). Each
public routine (no leading ``_``) of the handler becomes a method. Its permission is, first found
(the contract is declared in :mod:`sectorhooks_spec.rpc`): the registration's ``perms``, the
manifest's ``perms`` table, the function's ``__sectorhooks_perm__`` attribute, the handler's
``__sectorhooks_perms__`` mapping (method name -> perm), else ``write``. A ``perms`` entry that
names no method of the handler refuses the namespace (a typo would leave the method at
``write``). A handler's error code: :class:`~sectorhooks_spec.PluginRpcError`, or any exception
with an integer ``rpc_code`` attribute (see :func:`map_exception`).

Params are bound to the signature with :mod:`inspect` before the call (-32602 on mismatch), and
checked against simple annotations (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``,
``Optional[...]`` of those); other annotations are the handler's business. Sync handlers run in
a worker thread (``anyio.to_thread``), async ones on the event loop.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import re
import typing
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

import anyio.to_thread
import attrs

from sectorhooks_spec import (
    DEFAULT_RPC_PERM,
    DecodeError,
    JsonRpcNamespace,
    KeyNotFound,
    PluginRpcError,
    SectorhooksError,
    StoreUnavailable,
    TransactionConflict,
)
from sectorhooks_spec.codec import to_jsonable
from sectorhooks_spec.rpc import PERM_ATTR, PERMS_ATTR, RPC_CODE_ATTR, RPC_DATA_ATTR

from ..errors import KVRetryExhausted, RouteRefused, RpcNamespaceError
from . import protocol as p
from .auth import PERMISSIONS, CallContext, check_perm

if TYPE_CHECKING:
    from ..host import PluginHost

log = logging.getLogger(__name__)

PERMS_MAP_ATTR = PERMS_ATTR
DEFAULT_PLUGIN_PERM: str = DEFAULT_RPC_PERM
HOST = "<host>"
NAMESPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
METHOD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")

#: ``gate(namespace, token_info)`` raises RouteRefused to refuse a call to a plugin namespace.
Gate = Callable[[str, Any], None]
Check = Callable[[Any], bool]

_NONE = type(None)
_SIMPLE: Dict[Any, Tuple[Check, str]] = {
    int: (lambda v: type(v) is int, "an integer"),
    float: (lambda v: type(v) in (int, float), "a number"),
    str: (lambda v: type(v) is str, "a string"),
    bool: (lambda v: type(v) is bool, "a boolean"),
    list: (lambda v: type(v) is list, "an array"),
    dict: (lambda v: type(v) is dict, "an object"),
}


def _check_for(hint: Any) -> Optional[Tuple[Check, str]]:
    """A checker for a simple annotation, or ``None`` when we leave the value to the handler."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        args = typing.get_args(hint)
        inner = [a for a in args if a is not _NONE]
        if len(inner) == 1 and len(args) == 2:
            sub = _check_for(inner[0])
            if sub is not None:
                check, what = sub
                return (lambda v: v is None or check(v)), f"{what} or null"
        return None
    return _SIMPLE.get(origin if origin in (list, dict) else hint)


@attrs.frozen
class Method:
    """One callable method and everything checked before calling it."""

    name: str
    namespace: str
    owner: str  # HOST or the plugin's name
    func: Callable[..., Any]
    perm: str
    is_async: bool
    signature: inspect.Signature
    checks: Mapping[str, Tuple[Check, str]]
    #: (names, required names) when every parameter is plain positional-or-keyword: bound without inspect
    simple: Optional[Tuple[Tuple[str, ...], FrozenSet[str]]] = None

    @property
    def plugin(self) -> Optional[str]:
        """The owning plugin, ``None`` for the host's own namespaces."""
        return None if self.owner == HOST else self.owner

    def bind(self, params: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        """``(args, kwargs)`` for the handler from JSON params, or -32602 saying what does not fit."""
        if params is None:
            params = []
        if self.simple is not None:  # fast path, same outcome as Signature.bind for such signatures
            names, required = self.simple
            if type(params) is list:
                if len(required) <= len(params) <= len(names):
                    self._check(zip(names, params))
                    return tuple(params), {}
            elif required <= params.keys() and params.keys() <= set(names):
                self._check(params.items())
                return (), params
        try:
            bound = self.signature.bind(*params) if type(params) is list else self.signature.bind(**params)
        except TypeError as exc:
            raise p.RpcError(p.INVALID_PARAMS, f"Invalid params for {self.name}: {exc}") from None
        self._check(bound.arguments.items())
        return bound.args, bound.kwargs

    def _check(self, items: Iterable[Tuple[str, Any]]) -> None:
        if not self.checks:
            return
        for name, value in items:
            rule = self.checks.get(name)
            if rule is not None and not rule[0](value):
                got = p._json_type(value)
                raise p.RpcError(
                    p.INVALID_PARAMS, f"Invalid params for {self.name}: {name!r} must be {rule[1]}, got {got}"
                )


def _routines(handler: Any) -> Dict[str, Callable[..., Any]]:
    if isinstance(handler, Mapping):
        return {str(k): v for k, v in handler.items() if not str(k).startswith("_") and callable(v)}
    out: Dict[str, Callable[..., Any]] = {}
    for name in dir(handler):
        if name.startswith("_"):
            continue
        try:
            value = getattr(handler, name)
        except Exception:  # a property that raises is not a method
            continue
        if inspect.isroutine(value):
            out[name] = value
    return out


def _make_method(namespace: str, name: str, func: Callable[..., Any], owner: str, perm: str) -> Method:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise RpcNamespaceError(
            owner, namespace, f"method {name!r} has no inspectable signature: {exc}"
        ) from None
    target = inspect.unwrap(getattr(func, "__func__", func))
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: leave checking to the handler
        hints = {}
    checks = {}
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or pname not in hints:
            continue
        rule = _check_for(hints[pname])
        if rule is not None:
            checks[pname] = rule
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(func)
    simple = None
    if all(q.kind is q.POSITIONAL_OR_KEYWORD for q in sig.parameters.values()):
        names = tuple(sig.parameters)
        simple = (names, frozenset(n for n, q in sig.parameters.items() if q.default is q.empty))
    return Method(f"{namespace}.{name}", namespace, owner, func, perm, is_async, sig, checks, simple)


def map_exception(method: Method, exc: BaseException) -> p.RpcError:
    """The error object for an exception a handler raised (domain errors keep their message).

    A :class:`~sectorhooks_spec.PluginRpcError` (or any exception with an integer ``rpc_code``
    attribute, and optionally ``rpc_data``) picks its code; the SPI's errors map to the host's.
    """
    code: Any = exc.rpc_code if isinstance(exc, PluginRpcError) else getattr(exc, RPC_CODE_ATTR, None)
    data: Any = exc.rpc_data if isinstance(exc, PluginRpcError) else getattr(exc, RPC_DATA_ATTR, None)
    if isinstance(code, int) and not isinstance(code, bool):
        try:
            data = to_jsonable(data)
        except TypeError:
            data = None
        return p.RpcError(code, str(exc) or type(exc).__name__, data)
    if isinstance(exc, RouteRefused):
        return p.RpcError(exc.code, exc.message)
    for kind, rpc_code in (
        (KeyNotFound, p.NOT_FOUND),
        (DecodeError, p.INVALID_PARAMS),
        (KVRetryExhausted, p.CONFLICT),
        (TransactionConflict, p.CONFLICT),
        (StoreUnavailable, p.STORE_UNAVAILABLE),
        (SectorhooksError, p.SERVER_ERROR),
    ):
        if isinstance(exc, kind):
            log.debug("%s (%s) raised %s: %s", method.name, method.owner, type(exc).__name__, exc)
            return p.RpcError(rpc_code, str(exc))
    return p.internal_error(f"plugin {method.owner!r} method {method.name!r}", exc)


def registration(plugin: str, value: Any) -> JsonRpcNamespace:
    """What a RegisterJsonRpc plugin's ``Handler()`` returned, as a :class:`JsonRpcNamespace`
    (the older ``(namespace, handler)`` tuple accepted); else :class:`RpcNamespaceError`."""
    try:
        return JsonRpcNamespace.of(value)
    except TypeError as exc:
        raise RpcNamespaceError(plugin, "?", str(exc)) from None


class MethodRegistry:
    """Every served method by full name; ``dispatch`` is the :class:`~.protocol.Engine`'s callback."""

    def __init__(self, gate: Optional[Gate] = None):
        self.gate = gate
        self.methods: Dict[str, Method] = {}
        self.owners: Dict[str, str] = {}  # namespace -> owner
        self.problems: List[str] = []
        self.refused: Dict[str, str] = {}  # plugin -> why its namespace was refused

    def add(
        self,
        namespace: Any,
        handler: Any,
        owner: str = HOST,
        default_perm: str = DEFAULT_PLUGIN_PERM,
        perms: Optional[Mapping[str, str]] = None,
        manifest_perms: Optional[Mapping[str, str]] = None,
    ) -> List[str]:
        """Serve ``handler``'s public methods as ``namespace.*``; returns their names.

        A method's permission: ``perms`` (the plugin's registration), else ``manifest_perms``
        (its manifest's ``perms`` table), else the function's ``__sectorhooks_perm__``, else the
        handler's ``__sectorhooks_perms__``, else ``default_perm``.
        Raises :class:`RpcNamespaceError` (nothing added) if the namespace is taken or invalid,
        the handler has no public method, a method declares an unknown permission, or ``perms``
        / ``manifest_perms`` names a method the handler does not have.
        """
        if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace):
            raise RpcNamespaceError(
                owner,
                str(namespace)[:80],
                "invalid namespace: use a letter then up to 63 letters, digits or _",
            )
        taken = self.owners.get(namespace)
        if taken is not None:
            first = "the host" if taken == HOST else f"plugin {taken!r}"
            raise RpcNamespaceError(
                owner,
                namespace,
                f"already served by {first}; refused (the first keeps it). "
                "Rename the namespace in one plugin's Handler() or disable one of the plugins",
            )
        if isinstance(handler, type):
            raise RpcNamespaceError(
                owner, namespace, f"Handler() returned the class {handler.__name__}; return an instance"
            )
        attr_perms = getattr(handler, PERMS_MAP_ATTR, None) or {}
        routines = _routines(handler)
        declared = [
            ("JsonRpcNamespace perms", perms or {}),
            ("manifest.toml perms", manifest_perms or {}),
        ]
        for where, table in declared:
            for name in table:
                if name not in routines:
                    close = difflib.get_close_matches(str(name), list(routines), n=1)
                    hint = (
                        f"did you mean {close[0]!r}?" if close else f"methods: {', '.join(sorted(routines))}"
                    )
                    raise RpcNamespaceError(
                        owner,
                        namespace,
                        f"{where} names method {name!r}, which handler {type(handler).__name__} "
                        f"does not have ({hint})",
                    )
        methods = []
        for name, func in sorted(routines.items()):
            if not METHOD_RE.match(name):
                raise RpcNamespaceError(owner, namespace, f"invalid method name {name!r}")
            perm = (
                (perms or {}).get(name)
                or (manifest_perms or {}).get(name)
                or getattr(func, PERM_ATTR, None)
                or attr_perms.get(name)
                or default_perm
            )
            try:
                check_perm(perm, f"permission of method {name!r}")
            except ValueError as exc:
                raise RpcNamespaceError(owner, namespace, str(exc)) from None
            methods.append(_make_method(namespace, name, func, owner, perm))
        if not methods:
            raise RpcNamespaceError(
                owner, namespace, f"handler {type(handler).__name__} has no public methods"
            )
        self.owners[namespace] = owner
        for m in methods:
            self.methods[m.name] = m
        return [m.name for m in methods]

    def load_plugins(self, host: PluginHost) -> None:
        """Call every RegisterJsonRpc plugin's ``Handler()`` and add its namespace; failures are logged."""
        for impl in host.impls("jsonrpc_handler"):
            record = host.records.get(impl.plugin)
            manifest = record.manifest if record is not None else None
            try:
                reg = registration(impl.plugin, impl())
                names = self.add(
                    reg.name,
                    reg.handler,
                    owner=impl.plugin,
                    perms=reg.perms,
                    manifest_perms=manifest.perms if manifest is not None else None,
                )
            except RpcNamespaceError as exc:
                self._problem(impl.plugin, str(exc))
            except Exception as exc:
                self._problem(
                    impl.plugin, f"plugin {impl.plugin!r} Handler() raised {type(exc).__name__}: {exc}"
                )
            else:
                log.info("plugin %r serves %d JSON-RPC method(s) under %r", impl.plugin, len(names), reg.name)

    def _problem(self, plugin: str, message: str) -> None:
        log.error("%s", message)
        self.problems.append(message)
        self.refused[plugin] = message

    def describe(self) -> List[Dict[str, Any]]:
        """Every method with its permission and owner (``Plugins.Methods``)."""
        return [
            {"method": m.name, "perm": m.perm, "owner": m.owner}
            for m in sorted(self.methods.values(), key=lambda m: m.name)
        ]

    def _not_found(self, name: str) -> p.RpcError:
        hint = ""
        if len(name) <= 128:
            close = difflib.get_close_matches(name, list(self.methods), n=1)
            if close:
                hint = f"; did you mean {close[0]!r}?"
        return p.RpcError(p.METHOD_NOT_FOUND, f"Method not found: {name[:128]!r}{hint}")

    async def dispatch(self, call: p.Call, ctx: CallContext) -> Any:
        """Check permission, gate and params, call the handler, return its result as JSON data."""
        m = self.methods.get(call.method)
        if m is None:
            raise self._not_found(call.method)
        if not ctx.allows(m.perm):
            who = f"token {ctx.token.id!r}" if ctx.token is not None else "this caller"
            raise p.RpcError(
                p.FORBIDDEN, f"Forbidden: {m.name} needs {m.perm!r} permission; {who} has {ctx.perm!r}"
            )
        args, kwargs = m.bind(call.params)
        gate = self.gate if m.owner != HOST else None
        try:
            if m.is_async:
                if gate is not None:
                    await anyio.to_thread.run_sync(self._pass_gate, m, ctx)
                result = await m.func(*args, **kwargs)
            else:
                result = await anyio.to_thread.run_sync(
                    functools.partial(self._call_sync, m, gate, ctx, args, kwargs)
                )
            if inspect.isawaitable(result):
                result = await result
        except p.RpcError:
            raise
        except Exception as exc:
            raise map_exception(m, exc) from None
        try:
            return to_jsonable(result)
        except (TypeError, RecursionError) as exc:
            raise p.internal_error(f"result of plugin {m.owner!r} method {m.name!r}", exc) from None

    def _pass_gate(self, m: Method, ctx: CallContext) -> None:
        try:
            self.gate(m.namespace, ctx.token)  # type: ignore[misc]
        except RouteRefused as exc:
            raise p.RpcError(exc.code, exc.message) from None
        except Exception as exc:
            raise p.internal_error(f"route gate for namespace {m.namespace!r}", exc) from None

    def _call_sync(
        self, m: Method, gate: Optional[Gate], ctx: CallContext, args: Tuple[Any, ...], kwargs: Dict[str, Any]
    ) -> Any:
        if gate is not None:
            self._pass_gate(m, ctx)
        return m.func(*args, **kwargs)


__all__ = ["PERMISSIONS", "Gate", "Method", "MethodRegistry", "map_exception", "registration"]
