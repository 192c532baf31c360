"""The registry's records, exactly as seed 002 names them, JSON-encoded in two KV collections.

=========================  =========  =================================================================
key                        collection value
=========================  =========  =================================================================
``plugin_<id>``            private    identity (id, name, kind, version, description, ext_points,
                                      build_time, source), ``secret`` (salted hash), ``register_time``
                                      (Unix seconds), ``active_tenant`` = [{tenant_id, tenant_name,
                                      expire_time (Unix seconds, 0 = never), extra?}]
``all_registered_plugin``  private    {id: "true"}
``plugin_route_<id>``      public     {status, register_addons: {addon: "<id>/<endpoint>"}, reason?}
``scrape_state``           public     the scrape lease: {owner, fence, expire_time, holder}
=========================  =========  =================================================================

Plugin ids are the plugin's manifest name: unique per host (the loader refuses duplicates),
stable across restarts and replicas without coordination, and readable in ``registry show ID``.
Addons: a RegisterJsonRpc plugin's namespace and each method (``"Greet"`` -> ``"greet/Greet"``,
``"Greet.Hello"`` -> ``"greet/Greet.Hello"``); for other kinds each exported extension point
(``"OnUpdate"`` -> ``"sqlsync/sync_on_update"``). ``reason`` is ours, present only when a status
carries one (ERR_REGISTER, FAILED).
"""

from __future__ import annotations

import enum
import json
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

import attrs

PUBLIC = "public"
PRIVATE = "private"
ALL_REGISTERED = b"all_registered_plugin"
SCRAPE_STATE = "scrape_state"


class Status(str, enum.Enum):
    """A route's status: the gateway serves a plugin only when it is RUNNING."""

    WAIT_RUNNING = "WAIT_RUNNING"  # registered, not yet seen healthy by a scrape
    RUNNING = "RUNNING"  # onInit done and Health passed at the last scrape
    ERR_REGISTER = "ERR_REGISTER"  # the plugin could not be registered (manifest, import, Handler)
    FAILED = "FAILED"  # onInit raised, Health failed, or not loaded on the scraping replica
    STOPPED = "STOPPED"  # disabled by an operator; only `plugins enable` clears it

    def __str__(self) -> str:
        return self.value


def plugin_id(name: str) -> str:
    """The registry id of the plugin named ``name`` (its manifest name; see module docs)."""
    return name


def plugin_key(pid: str) -> bytes:
    return f"plugin_{pid}".encode()


def route_key(pid: str) -> bytes:
    return f"plugin_route_{pid}".encode()


ROUTE_PREFIX = b"plugin_route_"


def encode(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, compact)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode(raw: Optional[bytes]) -> Any:
    """JSON value of ``raw`` (``None`` stays ``None``)."""
    return None if raw is None else json.loads(raw)


@attrs.frozen
class Tenant:
    """One tenant that has the plugin enabled (seed ``Tenant``)."""

    tenant_id: str
    tenant_name: str = ""
    expire_time: int = 0  # Unix seconds; 0 = never expires
    extra: Any = None

    def expired(self, now: float) -> bool:
        """True once ``expire_time`` (when set) has passed."""
        return bool(self.expire_time) and self.expire_time <= now

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "expire_time": self.expire_time,
        }
        if self.extra is not None:
            out["extra"] = self.extra
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Tenant:
        return cls(
            str(d["tenant_id"]), str(d.get("tenant_name", "")), int(d.get("expire_time") or 0), d.get("extra")
        )


@attrs.frozen
class Identity:
    """What a plugin registers as (the seed's ``openapi.IdentifyResp``)."""

    id: str
    name: str
    kind: str
    version: str = ""
    description: str = ""
    ext_points: Tuple[str, ...] = ()
    build_time: str = ""
    source: str = ""

    def to_json(self) -> Dict[str, Any]:
        d = attrs.asdict(self)
        d["ext_points"] = list(self.ext_points)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Identity:
        names = [f.name for f in attrs.fields(cls)]
        kw = {k: d[k] for k in names if k in d}
        kw["ext_points"] = tuple(kw.get("ext_points", ()))
        return cls(**kw)


@attrs.frozen
class PluginEntry:
    """A ``plugin_<id>`` record. ``secret`` is the salted hash; it never leaves this module's users."""

    identity: Identity
    secret: str = attrs.field(default="", repr=False)
    register_time: int = 0
    active_tenant: Tuple[Tenant, ...] = ()

    @property
    def id(self) -> str:
        return self.identity.id

    def to_json(self) -> Dict[str, Any]:
        d = self.identity.to_json()
        d.update(
            secret=self.secret,
            register_time=self.register_time,
            active_tenant=[t.to_json() for t in self.active_tenant],
        )
        return d

    def public_json(self) -> Dict[str, Any]:
        """For ``show``/``list``/``--json``: everything but the secret hash."""
        d = self.to_json()
        d["secret"] = "set (hidden)" if self.secret else "none"
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PluginEntry:
        return cls(
            Identity.from_json(d),
            str(d.get("secret", "")),
            int(d.get("register_time") or 0),
            tuple(Tenant.from_json(t) for t in d.get("active_tenant") or ()),
        )

    def tenant(self, tenant_id: str) -> Optional[Tenant]:
        """The entry of ``tenant_id``, or ``None``."""
        for t in self.active_tenant:
            if t.tenant_id == tenant_id:
                return t
        return None


@attrs.frozen
class Route:
    """A ``plugin_route_<id>`` record (seed ``PluginRoute``)."""

    status: Status
    register_addons: Mapping[str, str] = attrs.field(factory=dict)
    reason: str = ""

    def to_json(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"status": self.status.value, "register_addons": dict(self.register_addons)}
        if self.reason:
            d["reason"] = self.reason
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Route:
        return cls(Status(d["status"]), dict(d.get("register_addons") or {}), str(d.get("reason", "")))

    def namespaces(self, pid: str) -> List[str]:
        """JSON-RPC namespaces this route serves (addons whose endpoint is their own name)."""
        return sorted({k.split(".", 1)[0] for k, v in self.register_addons.items() if v == f"{pid}/{k}"})


class Generation:
    """In-process counter of registry writes over one store: :meth:`Registry.transact` bumps it,
    a ``RouteGate`` compares ``value`` (an attribute read) to drop its cache at once after a local
    change; other replicas' changes wait out the gate's TTL. It lives on the store object (see
    :func:`generation_of`), so every registry and gate over the same store share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def bump(self) -> None:
        """Mark every gate cache over the store in this process as stale."""
        with self._lock:
            self.value += 1


_attach_lock = threading.Lock()


def generation_of(store: object) -> Generation:
    """The :class:`Generation` of ``store``, kept on it as ``registry_generation`` (set on first
    use). A store object that takes no attributes gets a counter per caller: its gates then see
    this process's changes only after their TTL, as they see other replicas' changes."""
    with _attach_lock:
        gen = getattr(store, "registry_generation", None)
        if not isinstance(gen, Generation):
            gen = Generation()
            try:
                store.registry_generation = gen  # type: ignore[attr-defined]
            except AttributeError:  # __slots__: nowhere to keep it
                pass
    return gen
