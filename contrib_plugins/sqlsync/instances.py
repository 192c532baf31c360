"""The plugin's instances: one :class:`~.sqlsync.SinkWriter` per ``[[Common.Syncers]]`` entry
naming sqlsync, made from its ``Meta`` (checked by ``settings.py``) on its first event, and the
plugin's ``onInit`` / ``onShutdown``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Dict, Mapping

from sectorhooks_spec import SyncerInstance

from .settings import CONFIG, PLUGIN, masked, settings_from_meta

if TYPE_CHECKING:
    from .sqlsync import SinkWriter

log = logging.getLogger(__name__)

#: instance name -> its writer (tests and bench_sqlsync reach it as ``sqlsync._INSTANCES``)
INSTANCES: Dict[str, SinkWriter] = {}
_LOCK = threading.Lock()


def instance(syncer: SyncerInstance) -> SinkWriter:
    """The writer of the instance ``syncer`` names, created (its ``Meta`` checked) on first use."""
    inst = INSTANCES.get(syncer.name)
    if inst is not None:
        return inst
    from .sqlsync import SinkWriter

    with _LOCK:
        inst = INSTANCES.get(syncer.name)
        if inst is None:
            inst = SinkWriter(syncer.name, **settings_from_meta(syncer.name, syncer.meta or {}))
            INSTANCES[syncer.name] = inst
            log.info("%s instance %r writes to %s", PLUGIN, syncer.name, masked(inst.url))
    return inst


def setup(config: Mapping[str, Any]) -> None:
    """``onInit``: remember the plugin's config table (``DataDir`` for default SQLite sinks)."""
    CONFIG.clear()
    CONFIG.update(config or {})


def close() -> None:
    """``onShutdown``: dispose of every engine; unflushed changes are re-delivered by the host."""
    with _LOCK:
        for inst in INSTANCES.values():
            inst.close()
        INSTANCES.clear()
