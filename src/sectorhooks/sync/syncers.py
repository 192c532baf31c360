"""Syncer instances: what ``[[Common.Syncers]]`` and the loaded SyncSectorState plugins give.

Instances come from ``[[Common.Syncers]]`` (``Name``, ``PluginName``, ``Meta``); every active
SyncSectorState plugin that no entry names gets a default instance named after the plugin. An
instance whose plugin is missing, failed or of another kind is *unavailable*, with the reason.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Protocol

import attrs

from sectorhooks_spec import SyncerInstance
from sectorhooks_spec.kinds import Kind

from ..changelog import HOOKS
from ..config import HostConfig
from ..host import CALLABLE_STATUSES, PluginHost, PluginImpl

log = logging.getLogger(__name__)

FLUSH = "sync_flush"


class SyncerLease(Protocol):
    """Exclusive right to run one syncer's dispatcher across host replicas (see SyncService)."""

    fence: int

    def acquire(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> None: ...


@attrs.define
class Syncer:
    """A syncer instance resolved against the host: its impls, or why it cannot run."""

    instance: SyncerInstance
    impls: Dict[str, PluginImpl] = attrs.field(factory=dict)
    unavailable: str = ""  # reason, when the plugin is missing, failed or of another kind
    isolation: str = "process"  # where its hooks run: a worker process, or the dispatcher's thread

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def plugin(self) -> str:
        return self.instance.plugin_name


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for dead letters and status."""
    return f"{type(exc).__name__}: {exc}"


def resolve_syncers(host: PluginHost, config: HostConfig) -> List[Syncer]:
    """The syncer instances of ``config`` plus a default one per unconfigured syncer plugin."""
    out: List[Syncer] = []
    configured = {sc.plugin_name for sc in config.syncers}
    for i, sc in enumerate(config.syncers):
        inst = SyncerInstance(sc.name, sc.plugin_name, dict(sc.meta))
        syncer = bind_syncer(host, inst, f"{config.path}: [Common.Syncers[{i}]] (Name = {sc.name!r})")
        syncer.isolation = sc.isolation or config.sync.isolation
        out.append(syncer)
    names = {s.name for s in out}
    for rec in host.plugins(Kind.SYNC_SECTOR_STATE):
        if rec.name in configured or rec.status not in CALLABLE_STATUSES:
            continue
        if rec.name in names:
            log.error(
                "plugin %r gets no default syncer: a [[Common.Syncers]] entry of another plugin is named %r",
                rec.name,
                rec.name,
            )
            continue
        inst = SyncerInstance(rec.name, rec.name, {})
        syncer = bind_syncer(host, inst, f"default syncer of plugin {rec.name!r}")
        syncer.isolation = config.sync.isolation
        out.append(syncer)
    return out


def bind_syncer(host: PluginHost, inst: SyncerInstance, where: str) -> Syncer:
    """``inst`` bound to its plugin's impls in ``host``, or unavailable with the reason."""
    rec = host.records.get(inst.plugin_name)
    if rec is None or rec.kind is not Kind.SYNC_SECTOR_STATE:
        loaded = sorted(r.name for r in host.plugins(Kind.SYNC_SECTOR_STATE))
        why = (
            f"{where}: no SyncSectorState plugin named {inst.plugin_name!r}"
            + (f" (it is a {rec.kind} plugin)" if rec is not None and rec.kind else "")
            + f"; SyncSectorState plugins: {', '.join(map(repr, loaded)) or 'none'}"
        )
        log.error("%s", why)
        return Syncer(inst, unavailable=why)
    if rec.status not in CALLABLE_STATUSES:
        why = f"{where}: plugin {inst.plugin_name!r} is {rec.status}" + (
            f": {rec.error}" if rec.error else ""
        )
        log.error("%s", why)
        return Syncer(inst, unavailable=why)
    impls: Dict[str, PluginImpl] = {}
    for hook in (*HOOKS.values(), FLUSH):
        impl = host.impl(inst.plugin_name, hook)
        if impl is not None:
            impls[hook] = impl
    return Syncer(inst, impls)
