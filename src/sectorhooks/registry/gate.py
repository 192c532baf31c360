"""RouteGate: may this token call this plugin namespace? For the JSON-RPC gateway.

``gate(namespace, token_info)`` returns ``None`` to serve the call, or raises
:class:`~sectorhooks.errors.RouteRefused` (code ``-32010``) with a ``reason`` of
``unknown`` / ``not_running`` / ``no_tenant`` / ``not_enabled`` / ``expired`` and a message that
says what to do. It reads a snapshot of every route (``public``) and the tenants of each plugin
(``active_tenant`` of ``plugin_<id>`` in ``private``, read only) taken in one KV read and kept
for ``cache_ttl`` seconds; a registry write in this process drops it at once (the store's
registry generation counter, one attribute read per call), other replicas' writes are seen
within ``cache_ttl``. Expiry is compared with the clock on every call, so it needs no refresh and no restart.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from sectorhooks_spec.kvstore import KVStore, StoreTxn

from ..errors import RouteRefused
from . import _kv
from .records import PRIVATE, PUBLIC, ROUTE_PREFIX, Route, Status, Tenant, decode, generation_of, plugin_key

#: JSON-RPC error code of every refusal (the gateway's NAMESPACE_REFUSED).
ROUTE_REFUSED = -32010

# namespace -> (plugin id, route, tenants by id)
Snapshot = Dict[str, Tuple[str, Route, Dict[str, Tenant]]]


def tenant_of(token_info: Any) -> Optional[str]:
    """The tenant a token belongs to: ``token_info.tenant`` / ``["tenant"]`` (or ``tenant_id``)."""
    if token_info is None:
        return None
    if isinstance(token_info, str):
        return token_info or None
    for name in ("tenant", "tenant_id"):
        value = token_info.get(name) if isinstance(token_info, dict) else getattr(token_info, name, None)
        if value:
            return str(value)
    return None


def load_snapshot(store: KVStore) -> Snapshot:
    """Every served namespace with its plugin, route and tenants, from one consistent read."""

    def fn(txn: StoreTxn) -> Snapshot:
        routes = []
        items = txn.collection(PUBLIC).scan(ROUTE_PREFIX)
        try:
            for key, raw in items:
                routes.append((key[len(ROUTE_PREFIX) :].decode(), Route.from_json(decode(raw))))
        finally:
            items.close()
        out: Snapshot = {}
        private = txn.collection(PRIVATE)
        for pid, route in routes:
            namespaces = route.namespaces(pid)
            if not namespaces:
                continue  # not a JSON-RPC plugin: nothing to gate
            record = decode(private.peek(plugin_key(pid))) or {}
            tenants = {t["tenant_id"]: Tenant.from_json(t) for t in record.get("active_tenant") or ()}
            for ns in namespaces:
                out[ns] = (pid, route, tenants)
        return out

    return _kv.view(store, fn, "route gate snapshot")


def _refuse(message: str, reason: str) -> RouteRefused:
    exc = RouteRefused(ROUTE_REFUSED, message)
    exc.reason = reason  # type: ignore[attr-defined]  # unknown, not_running, no_tenant, ...
    return exc


class RouteGate:
    """The gateway's check; thread-safe, cheap when cached (see the module docs)."""

    def __init__(
        self,
        store: KVStore,
        cache_ttl: float = 1.0,
        tenants: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self.store, self.cache_ttl, self.tenants, self.clock = store, cache_ttl, tenants, clock
        self._snapshot: Optional[Snapshot] = None
        self._loaded_at = 0.0
        self._changes = generation_of(store)
        self._generation = -1
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Drop the cached snapshot; the next call reads the KV."""
        self._snapshot = None

    def snapshot(self) -> Snapshot:
        """The current snapshot, reloaded when stale."""
        snap = self._snapshot
        now = time.monotonic()
        gen = self._changes.value
        if snap is not None and now - self._loaded_at < self.cache_ttl and gen == self._generation:
            return snap
        with self._lock:
            if self._snapshot is not snap and self._snapshot is not None and self._generation == gen:
                return self._snapshot  # another thread reloaded it while we waited
            snap = load_snapshot(self.store)
            self._snapshot, self._loaded_at, self._generation = snap, now, gen
        return snap

    def __call__(self, namespace: str, token_info: Any = None) -> None:
        """Return if the call may proceed; else raise ``RouteRefused`` saying why and what to do."""
        found = self.snapshot().get(namespace)
        if found is None:
            raise _refuse(
                f"namespace {namespace!r} is not served by any registered plugin",
                "unknown",
            )
        pid, route, tenants = found
        if route.status is not Status.RUNNING:
            why = f": {route.reason}" if route.reason else ""
            raise _refuse(
                f"plugin {pid!r} (namespace {namespace!r}) is not running: status {route.status.value}{why}",
                "not_running",
            )
        if not self.tenants:
            return
        tenant = tenant_of(token_info)
        if tenant is None:
            raise _refuse(
                f"namespace {namespace!r} is served per tenant and this token has no tenant; "
                "use a token created for a tenant",
                "no_tenant",
            )
        entry = tenants.get(tenant)
        if entry is None:
            raise _refuse(
                f"plugin {pid!r} is not enabled for tenant {tenant!r}; "
                f"an operator can run `sectorhooks plugins enable {pid} --tenant {tenant}`",
                "not_enabled",
            )
        if entry.expired(self.clock()):
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.expire_time))
            raise _refuse(
                f"plugin {pid!r} expired for tenant {tenant!r} at {when}; "
                f"renew with `sectorhooks plugins enable {pid} --tenant {tenant} --expire DATE`",
                "expired",
            )
