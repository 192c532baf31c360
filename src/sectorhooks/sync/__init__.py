"""Durable fan-out of sector-state changes: cursors, dispatchers, dead letters.

``SectorStateManager`` (``sectorhooks.state``) writes each change and its entry in the change log
(``sectorhooks.changelog``) in one KV transaction; :class:`SyncService` delivers the log to every
syncer instance from its own cursor.

Modules: ``records`` (cursors, dead letters, operator requests), ``syncers`` (instances from the
config), ``dispatcher`` (one thread per syncer: lease, cursor, and each batch from the log through
hooks and ``Flush``, with retries and dead letters), ``runners`` and ``worker`` (where the hooks run),
``operator`` (``sync retry`` / ``backfill`` where the syncer may be delivered), ``service`` (all
of it).
"""

from ..errors import SyncLeaseLost
from .dispatcher import Dispatcher, DispatcherState
from .records import Records
from .service import SyncService, compare
from .syncers import Syncer, SyncerLease, resolve_syncers

__all__ = [
    "Dispatcher",
    "DispatcherState",
    "Records",
    "SyncLeaseLost",
    "SyncService",
    "Syncer",
    "SyncerLease",
    "compare",
    "resolve_syncers",
]
