"""Registering a host's plugins and scraping their status into the route table.

Every replica registers the plugins it loaded (:func:`register_host`) and runs a
:class:`Scraper`: every ``interval`` it tries to take the ``scrape_state`` lease; the holder
checks each registered plugin in its own host (lifecycle status, then the optional ``Health``
extension point) and writes the route statuses in one transaction guarded by its fence, so a
replica that paused past its lease cannot overwrite a newer scrape. Replicas are expected to load
the same plugins: one the scraping replica does not have is marked FAILED.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple, cast

from sectorhooks_spec import JsonRpcNamespace, KVStore, StoreTxn
from sectorhooks_spec.kinds import Kind

from ..config import HostConfig
from ..errors import LeaseLost
from ..host import PluginHost, PluginRecord, PluginStatus
from . import _kv
from .lease import Lease
from .records import PUBLIC, SCRAPE_STATE, Identity, Route, Status, decode, encode, plugin_id, route_key
from .store import Registration, Registry, _read_all, _read_route

log = logging.getLogger(__name__)


def identity_of(record: PluginRecord) -> Identity:
    """The registry identity of a host plugin record."""
    m = record.manifest
    assert m is not None
    return Identity(
        id=plugin_id(m.name),
        name=m.name,
        kind=m.kind.value,
        version=m.version,
        description=m.description,
        ext_points=tuple(e.ext_point for e in m.exports),
        build_time=m.build_time,
        source=record.source,
    )


def addons_of(host: PluginHost, record: PluginRecord) -> Dict[str, str]:
    """``register_addons``: JSON-RPC namespace and methods, or the exported extension points."""
    m = record.manifest
    assert m is not None
    pid = plugin_id(m.name)
    if m.kind is Kind.REGISTER_JSON_RPC:
        impl = host.impl(record.name, "jsonrpc_handler")
        if impl is None:
            return {}
        reg = JsonRpcNamespace.of(impl())  # or the older (namespace, handler) tuple
        namespace, handler = reg.name, reg.handler
        out = {namespace: f"{pid}/{namespace}"}
        for attr in dir(handler):
            if not attr.startswith("_") and callable(getattr(handler, attr, None)):
                out[f"{namespace}.{attr}"] = f"{pid}/{namespace}.{attr}"
        return out
    return {e.ext_point: f"{pid}/{e.hook}" for e in m.exports}


def host_status(host: PluginHost, record: PluginRecord) -> Tuple[Optional[Status], str]:
    """What a scrape writes for ``record``; ``None`` leaves the route as it is."""
    s = record.status
    if s is PluginStatus.INVALID or (s is PluginStatus.FAILED and record.bound is None):
        return Status.ERR_REGISTER, record.error
    if s is PluginStatus.FAILED:
        return Status.FAILED, record.error
    if s is PluginStatus.DISABLED:
        return Status.STOPPED, "disabled on the scraping replica"
    if s is PluginStatus.LOADED:
        return Status.WAIT_RUNNING, ""
    if s is PluginStatus.STOPPED:
        return None, ""  # this replica is shutting down: no news about the plugin
    health = host.impl(record.name, "plugin_health")
    if health is None:
        return Status.RUNNING, ""
    try:
        problem = health()
    except Exception as exc:
        return Status.FAILED, f"Health raised {type(exc).__name__}: {exc}"
    return (Status.RUNNING, "") if problem is None else (Status.FAILED, f"unhealthy: {problem}")


def register_host(registry: Registry, host: PluginHost) -> List[Registration]:
    """Register every named plugin of ``host`` (new secrets are returned, never logged)."""
    out = []
    for record in host.plugins():
        if record.manifest is None:
            continue
        status, reason = Status.WAIT_RUNNING, ""
        addons: Dict[str, str] = {}
        if record.status in (PluginStatus.INVALID, PluginStatus.FAILED):
            found, reason = host_status(host, record)
            status = found or Status.ERR_REGISTER
        elif record.status is not PluginStatus.DISABLED:
            try:
                addons = addons_of(host, record)
            except Exception as exc:
                status, reason = Status.ERR_REGISTER, f"Handler raised {type(exc).__name__}: {exc}"
        out.append(registry.register(identity_of(record), addons, status, reason))
    return out


class Scraper:
    """The scrape loop of one replica (see the module docs)."""

    def __init__(
        self,
        host: PluginHost,
        registry: Registry,
        ttl: float = 10.0,
        interval: Optional[float] = None,
        owner: Optional[str] = None,
    ):
        self.host, self.registry = host, registry
        self.lease = Lease(registry.store, SCRAPE_STATE, ttl, owner=owner, collection=PUBLIC)
        self.interval = interval if interval is not None else ttl / 3
        if self.interval >= ttl:
            raise ValueError(f"scrape interval {self.interval}s must be shorter than the lease ttl {ttl}s")
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def scrape_once(self) -> Optional[Dict[str, Status]]:
        """Take (or keep) the lease and scrape; the route statuses, ``None`` if another replica holds it."""
        if not self.lease.acquire():
            return None
        started = time.time()
        fence = self.lease.fence
        ids = _kv.view(self.registry.store, _read_all)
        found: Dict[str, Tuple[Optional[Status], str]] = {}
        for pid in ids:
            record = self.host.records.get(pid)
            if record is None or record.manifest is None:
                found[pid] = (Status.FAILED, f"not loaded on the scraping replica {self.lease.holder}")
            else:
                found[pid] = host_status(self.host, record)

        now: Dict[str, Status] = {}  # route statuses after this scrape

        def fn(txn: StoreTxn) -> Dict[str, Status]:
            self.lease.guard(txn)
            written: Dict[str, Status] = {}
            now.clear()
            for pid, (status, reason) in found.items():
                old = _read_route(txn, pid)
                if status is None or old is None:
                    continue
                now[pid] = old.status
                # STOPPED is an operator's decision (only `plugins enable` lifts it); ERR_REGISTER
                # is cleared only by a successful registration.
                if old.status is Status.STOPPED or (
                    old.status is Status.ERR_REGISTER and status is not old.status
                ):
                    continue
                if (old.status, old.reason) == (status, reason):
                    continue
                now[pid] = status
                txn.collection(PUBLIC).put(
                    route_key(pid), encode(Route(status, old.register_addons, reason).to_json())
                )
                written[pid] = status
            state = decode(txn.collection(PUBLIC).peek(SCRAPE_STATE.encode())) or {}
            state["last_scrape"] = started
            txn.collection(PUBLIC).put(SCRAPE_STATE.encode(), encode(state))
            return written

        try:
            written = self.registry.transact(fn, f"scrape with fence {fence}")
        except LeaseLost as exc:
            log.warning("scrape refused: %s", exc)
            return None
        self.scrapes += 1
        log.info(
            "scrape fence=%d holder=%s start=%.6f end=%.6f plugins=%d changed=%s",
            fence,
            self.lease.holder,
            started,
            time.time(),
            len(found),
            ",".join(f"{k}:{v.value}" for k, v in sorted(written.items())) or "-",
        )
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.scrape_once()
            except Exception as exc:  # a KV outage must not kill the loop
                log.error("scrape failed: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.interval)

    def start(self) -> Scraper:
        """Run the loop in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="registry-scraper", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and release the lease, so another replica takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.lease.release()
        except Exception as exc:
            log.warning("could not release the scrape lease: %s", exc)


@contextmanager
def open_registry(config: HostConfig, start_all: bool = False) -> Iterator[Tuple[PluginHost, Registry]]:
    """The host (KVStore plugins started; every plugin with ``start_all``) and a Registry on the
    configured KV, as ``serve`` opens them; both closed on exit. For the CLI and tools."""
    from ..kv import open_kvstore

    host = PluginHost(config).load()
    try:
        host.start(kinds=[Kind.KV_STORE])
        kv = open_kvstore(host, config)
        try:
            if start_all:
                host.start(kvstore=kv)
            yield host, Registry(cast(KVStore, kv))
        finally:
            kv.close()
    finally:
        host.shutdown()


class RegistryService:
    """What ``serve`` runs: register this host's plugins, then scrape in the background."""

    def __init__(self, host: PluginHost, store: KVStore, ttl: float = 10.0, interval: Optional[float] = None):
        self.host = host
        self.registry = Registry(store)
        self.scraper = Scraper(host, self.registry, ttl=ttl, interval=interval)

    def start(self) -> RegistryService:
        for reg in register_host(self.registry, self.host):
            if reg.created:
                log.info(
                    "plugin %r registered; its secret is not shown here: "
                    "run `sectorhooks registry rotate-secret %s` to get one",
                    reg.id,
                    reg.id,
                )
        self.scraper.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.scraper.stop(timeout)
