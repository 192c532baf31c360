"""Durable fan-out of sector-state changes: change log, cursors, dispatchers, dead letters.

``SectorStateManager`` (``sectorhooks.state``) writes each change and its log entry in one KV
transaction; :class:`SyncService` delivers the log to every syncer instance from its own cursor.

Modules: ``log`` (the change log and its events), ``records`` (cursors, dead letters, operator
requests), ``syncers`` (instances from the config), ``dispatcher`` (one thread per syncer: lease,
cursor, rounds), ``delivery`` (one batch: hooks, ``Flush``, retries, dead letters), ``operator``
(``sync retry`` / ``backfill`` where the syncer may be delivered), ``service`` (all of it).
"""

from .dispatcher import Dispatcher
from .log import ChangeLog, Event
from .records import LeaseLost, Records
from .service import SyncService, compare
from .syncers import Lease, Syncer, resolve_syncers

__all__ = [
    "ChangeLog",
    "Dispatcher",
    "Event",
    "Lease",
    "LeaseLost",
    "Records",
    "SyncService",
    "Syncer",
    "compare",
    "resolve_syncers",
]
