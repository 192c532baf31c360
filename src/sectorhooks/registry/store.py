"""Registry: plugin records, routes and tenants in the KV's ``public`` and ``private`` collections.

Every write is one optimistic KV transaction: it reads the records it changes, modifies them and
writes them back; a concurrent writer makes the backend refuse the commit (Redis ``WATCH``,
PostgreSQL SERIALIZABLE, SQLite's single writer) and the whole read-modify-write is retried, so
no update is lost. Registration writes ``plugin_<id>``, ``all_registered_plugin`` and
``plugin_route_<id>`` in one transaction: all three or none.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

from sectorhooks_spec.kvstore import KVStore, StoreTxn

from ..errors import NotRegisteredError, SectorhooksError
from . import _kv, secret
from .records import (
    ALL_REGISTERED,
    PRIVATE,
    PUBLIC,
    ROUTE_PREFIX,
    Identity,
    PluginEntry,
    Route,
    Status,
    Tenant,
    decode,
    encode,
    generation_of,
    plugin_key,
    route_key,
)

log = logging.getLogger(__name__)


@attrs.frozen
class Registration:
    """Outcome of :meth:`Registry.register`. ``secret`` is set only when one was generated."""

    id: str
    created: bool
    status: Status
    secret: Optional[str] = attrs.field(default=None, repr=False)


def _read_all(txn: StoreTxn) -> Dict[str, str]:
    return decode(txn.collection(PRIVATE).peek(ALL_REGISTERED)) or {}


def _read_entry(txn: StoreTxn, pid: str) -> Optional[PluginEntry]:
    raw = txn.collection(PRIVATE).peek(plugin_key(pid))
    return None if raw is None else PluginEntry.from_json(decode(raw))


def _read_route(txn: StoreTxn, pid: str) -> Optional[Route]:
    raw = txn.collection(PUBLIC).peek(route_key(pid))
    return None if raw is None else Route.from_json(decode(raw))


class Registry:
    """Reads and optimistic writes of the registry records over one KVStore."""

    def __init__(self, store: KVStore, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        #: Bumped after every write; the route gates over ``store`` in this process compare it.
        self.generation = generation_of(store)
        # A KV transaction may touch only collections that exist on some backends.
        store.open_collection(PUBLIC)
        store.open_collection(PRIVATE)

    def transact(self, fn: Callable[[StoreTxn], Any], what: str) -> Any:
        """Run ``fn`` in one optimistic KV transaction (retried on conflict); gates see the change."""
        try:
            return _kv.update(self.store, fn, what)
        finally:
            self.generation.bump()

    # --- registration ---------------------------------------------------------------

    def register(
        self,
        identity: Identity,
        addons: Mapping[str, str],
        status: Status = Status.WAIT_RUNNING,
        reason: str = "",
    ) -> Registration:
        """Create or refresh ``plugin_<id>``, ``all_registered_plugin`` and the route, atomically.

        A new plugin gets a secret (returned once, stored hashed) and ``register_time``. A known
        one keeps its secret, register time and tenants. Its route gets ``status``, except that a
        STOPPED route stays stopped and a RUNNING/WAIT_RUNNING one with the same identity keeps
        its status (replicas restarting do not make routes flap); an error ``status`` always wins.
        """
        pid = identity.id
        fresh = secret.new_secret()
        hashed: Dict[str, str] = {}  # scrypt is slow on purpose: hash once, and only for a new plugin
        now = int(self.clock())

        def fn(txn: StoreTxn) -> Registration:
            priv, pub = txn.collection(PRIVATE), txn.collection(PUBLIC)
            old = _read_entry(txn, pid)
            old_route = _read_route(txn, pid)
            if old is None:
                if not hashed:
                    hashed["h"] = secret.hash_secret(fresh)
                entry = PluginEntry(identity, hashed["h"], now, ())
            else:
                entry = attrs.evolve(old, identity=identity)
            new_status, new_reason = status, reason
            if old_route is not None and status not in (Status.ERR_REGISTER, Status.FAILED):
                live = old_route.status in (Status.RUNNING, Status.WAIT_RUNNING)
                unchanged = live and old is not None and old.identity == identity
                if old_route.status is Status.STOPPED or unchanged:
                    new_status, new_reason = old_route.status, old_route.reason
            priv.put(plugin_key(pid), encode(entry.to_json()))
            registered = _read_all(txn)
            if registered.get(pid) != "true":
                registered[pid] = "true"
                priv.put(ALL_REGISTERED, encode(registered))
            pub.put(route_key(pid), encode(Route(new_status, dict(addons), new_reason).to_json()))
            return Registration(pid, old is None, new_status, fresh if old is None else None)

        result: Registration = self.transact(fn, f"register {pid}")
        log.info(
            "registered plugin %r (%s, route %s)",
            pid,
            "new" if result.created else "refreshed",
            result.status,
        )
        return result

    def unregister(self, pid: str) -> bool:
        """Remove the plugin's three records in one transaction; False if it was not registered."""

        def fn(txn: StoreTxn) -> bool:
            registered = _read_all(txn)
            existed = registered.pop(pid, None) is not None
            txn.collection(PRIVATE).put(ALL_REGISTERED, encode(registered))
            txn.collection(PRIVATE).delete(plugin_key(pid))
            txn.collection(PUBLIC).delete(route_key(pid))
            return existed

        return bool(self.transact(fn, f"unregister {pid}"))

    def rotate_secret(self, pid: str) -> str:
        """Replace the plugin's secret; returns the new one (the only time it is visible)."""
        fresh = secret.new_secret()
        hashed = secret.hash_secret(fresh)

        def fn(txn: StoreTxn) -> None:
            entry = self._need(txn, pid)
            txn.collection(PRIVATE).put(plugin_key(pid), encode(attrs.evolve(entry, secret=hashed).to_json()))

        self.transact(fn, f"rotate secret of {pid}")
        log.info("rotated the secret of plugin %r", pid)
        return fresh

    def verify_secret(self, pid: str, candidate: str) -> bool:
        """True when ``candidate`` is the plugin's current secret."""
        entry = self.get(pid)
        return bool(entry.secret) and secret.verify_secret(candidate, entry.secret)

    # --- reads ----------------------------------------------------------------------

    def _need(self, txn: StoreTxn, pid: str) -> PluginEntry:
        entry = _read_entry(txn, pid)
        if entry is None:
            raise NotRegisteredError(pid, list(_read_all(txn)))
        return entry

    def ids(self) -> List[str]:
        """Registered plugin ids, sorted."""
        return sorted(_kv.view(self.store, _read_all))

    def get(self, pid: str) -> PluginEntry:
        """The ``plugin_<id>`` record; raises :class:`NotRegisteredError`."""
        return _kv.view(self.store, lambda txn: self._need(txn, pid))

    def route(self, pid: str) -> Optional[Route]:
        """The ``plugin_route_<id>`` record, or ``None``."""
        return _kv.view(self.store, lambda txn: _read_route(txn, pid))

    def entries(self) -> List[Tuple[PluginEntry, Optional[Route]]]:
        """Every registered plugin with its route, by id, from one consistent read."""

        def fn(txn: StoreTxn) -> List[Tuple[PluginEntry, Optional[Route]]]:
            out = []
            for pid in sorted(_read_all(txn)):
                entry = _read_entry(txn, pid)
                if entry is not None:
                    out.append((entry, _read_route(txn, pid)))
            return out

        return _kv.view(self.store, fn)

    def routes(self) -> Dict[str, Route]:
        """Every route in ``public``, by plugin id."""

        def fn(txn: StoreTxn) -> Dict[str, Route]:
            items = txn.collection(PUBLIC).scan(ROUTE_PREFIX)
            try:
                return {k[len(ROUTE_PREFIX) :].decode(): Route.from_json(decode(v)) for k, v in items}
            finally:
                items.close()

        return _kv.view(self.store, fn)

    def tenants(self) -> Dict[str, List[Tuple[str, Tenant]]]:
        """tenant id -> [(plugin id, tenant entry)] over every registered plugin."""
        out: Dict[str, List[Tuple[str, Tenant]]] = {}
        for entry, _ in self.entries():
            for t in entry.active_tenant:
                out.setdefault(t.tenant_id, []).append((entry.id, t))
        return dict(sorted(out.items()))

    # --- writes ---------------------------------------------------------------------

    def set_status(self, pid: str, status: Status, reason: str = "") -> Route:
        """Set one route's status (operators: enable/disable); returns the new route."""

        def fn(txn: StoreTxn) -> Route:
            old = _read_route(txn, pid)
            if old is None:
                self._need(txn, pid)
                old = Route(status)
            new = Route(status, old.register_addons, reason)
            txn.collection(PUBLIC).put(route_key(pid), encode(new.to_json()))
            return new

        route: Route = self.transact(fn, f"set status of {pid}")
        log.info("route of plugin %r is now %s%s", pid, status, f" ({reason})" if reason else "")
        return route

    def enable_tenant(
        self, pid: str, tenant_id: str, tenant_name: str = "", expire_time: int = 0, extra: Any = None
    ) -> Tuple[Tenant, ...]:
        """Enable the plugin for a tenant (or update its name/expiry); returns ``active_tenant``."""
        if not tenant_id:
            raise SectorhooksError("a tenant id must not be empty")
        new = Tenant(tenant_id, tenant_name or tenant_id, int(expire_time or 0), extra)

        def fn(txn: StoreTxn) -> Tuple[Tenant, ...]:
            entry = self._need(txn, pid)
            tenants = list(entry.active_tenant)
            for i, t in enumerate(tenants):
                if t.tenant_id == tenant_id:
                    tenants[i] = new
                    break
            else:
                tenants.append(new)
            entry = attrs.evolve(entry, active_tenant=tuple(tenants))
            txn.collection(PRIVATE).put(plugin_key(pid), encode(entry.to_json()))
            return entry.active_tenant

        result: Tuple[Tenant, ...] = self.transact(fn, f"enable {pid} for tenant {tenant_id}")
        log.info("plugin %r enabled for tenant %r", pid, tenant_id)
        return result

    def disable_tenant(self, pid: str, tenant_id: str) -> bool:
        """Disable the plugin for a tenant; False if it was not enabled for it."""

        def fn(txn: StoreTxn) -> bool:
            entry = self._need(txn, pid)
            kept = tuple(t for t in entry.active_tenant if t.tenant_id != tenant_id)
            if len(kept) == len(entry.active_tenant):
                return False
            txn.collection(PRIVATE).put(
                plugin_key(pid), encode(attrs.evolve(entry, active_tenant=kept).to_json())
            )
            return True

        removed: bool = self.transact(fn, f"disable {pid} for tenant {tenant_id}")
        log.info(
            "plugin %r disabled for tenant %r%s", pid, tenant_id, "" if removed else " (was not enabled)"
        )
        return removed
