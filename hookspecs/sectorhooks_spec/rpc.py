"""What a RegisterJsonRpc plugin's ``Handler()`` returns, and the permissions of its methods.

``Handler()`` returns a :class:`JsonRpcNamespace`: the namespace, the handler object (each public
routine of it, sync or ``async``, becomes ``Namespace.Method``) and the permission each method
needs. The old ``(namespace, handler)`` tuple is still accepted. Example::

    from sectorhooks_spec import JsonRpcNamespace

    class Greeter:
        def Hello(self, name: str = "world") -> str:
            return f"hello {name}"

        def Reset(self) -> None: ...

    def handler():
        return JsonRpcNamespace("Greeter", Greeter(), perms={"Hello": "read"})  # Reset: "write"

A method's permission is, first found:

1. ``perms`` of the returned :class:`JsonRpcNamespace`;
2. the manifest's ``perms`` table (``perms = { Hello = "read" }``, RegisterJsonRpc only);
3. the function's ``__sectorhooks_perm__`` or the handler's ``__sectorhooks_perms__`` mapping
   (older plain attributes, still accepted);
4. :data:`DEFAULT_RPC_PERM`, ``"write"``: a method nobody declared needs a write token.

A token of a higher permission may call a method of a lower one (``admin`` > ``write`` > ``read``).
A ``perms`` key naming no public method of the handler is refused with the namespace (a typo
would otherwise leave the method at ``write``).
"""

from __future__ import annotations

from typing import Any, Dict, Literal, Mapping, Tuple

import attrs

#: A method permission. ``read``: no state changes; ``write``: changes state; ``admin``: operator.
RpcPerm = Literal["read", "write", "admin"]

#: Every permission, lowest first (a token of one may call methods of those before it).
RPC_PERMS: Tuple[str, ...] = ("read", "write", "admin")

#: The permission of a method no one declared.
DEFAULT_RPC_PERM: RpcPerm = "write"

#: Older plain attributes, still accepted: on a method function, and on the handler object.
PERM_ATTR = "__sectorhooks_perm__"
PERMS_ATTR = "__sectorhooks_perms__"

#: The error-code contract (:class:`~sectorhooks_spec.errors.PluginRpcError` sets both): an
#: exception a method raises with an integer ``rpc_code`` is answered with that code, its
#: ``str()`` as the message and ``rpc_data`` (optional, JSON data) as the data.
RPC_CODE_ATTR = "rpc_code"
RPC_DATA_ATTR = "rpc_data"

#: Every attribute the host reads from a plugin's objects: the whole attribute contract.
PLUGIN_ATTRS = frozenset({PERM_ATTR, PERMS_ATTR, RPC_CODE_ATTR, RPC_DATA_ATTR})


def _perms(value: Any) -> Mapping[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"perms must be a mapping of method name -> permission, got {type(value).__name__}")
    out: Dict[str, str] = {}
    for method, perm in value.items():
        if not isinstance(method, str) or not method:
            raise TypeError(f"perms keys are method names (str), got {method!r}")
        if perm not in RPC_PERMS:
            raise ValueError(
                f"perms[{method!r}] must be one of {', '.join(map(repr, RPC_PERMS))}; got {perm!r}"
            )
        out[method] = perm
    return out


@attrs.frozen
class JsonRpcNamespace:
    """A RegisterJsonRpc plugin's registration: ``name``, ``handler``, and per-method ``perms``.

    ``name``: the namespace (a letter, then up to 63 letters, digits or ``_``). ``handler``: an
    instance (not a class) or a mapping of method name -> callable. ``perms``: method name ->
    ``"read"`` / ``"write"`` / ``"admin"``; a method left out gets the manifest's ``perms`` entry,
    else its ``__sectorhooks_perm(s)__`` attribute, else ``"write"`` (see the module doc).
    A bad permission is a ``ValueError`` when the registration is built.
    """

    name: str
    handler: Any = attrs.field(eq=False)
    perms: Mapping[str, str] = attrs.field(factory=dict, converter=_perms, hash=False)

    @classmethod
    def of(cls, value: Any) -> JsonRpcNamespace:
        """``value`` as a registration: a :class:`JsonRpcNamespace` as is, or the older
        ``(namespace, handler)`` tuple (or list); anything else is a ``TypeError``."""
        if isinstance(value, JsonRpcNamespace):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], value[1])
        raise TypeError(
            "Handler() must return (namespace, handler) or JsonRpcNamespace(name, handler, perms), "
            f"got {type(value).__name__}"
        )


__all__ = [
    "DEFAULT_RPC_PERM",
    "PERMS_ATTR",
    "PERM_ATTR",
    "PLUGIN_ATTRS",
    "RPC_CODE_ATTR",
    "RPC_DATA_ATTR",
    "RPC_PERMS",
    "JsonRpcNamespace",
    "RpcPerm",
]
