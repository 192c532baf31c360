"""The change log (outbox): the state manager appends, the dispatchers read, in that direction.

Owned by :class:`~sectorhooks.runtime.Runtime`, which gives the same :class:`ChangeLog` to the
state manager (whose transactions append through :class:`LogWriter`) and to the sync service
(whose dispatchers read it), and tells the sync service of each commit.

Modules: ``format`` (layout in the KV, entry and header encoding), ``writer`` (appends inside a
transaction), ``events`` (an entry decoded, and the hook arguments built from it), ``recent``
(entries kept in memory for readers at the head), ``reader`` (ranges, bounds, trimming).
"""

from ..errors import LogTrimmed
from .events import ARG_NAMES, BrokenEvent, Event, RawEntry, caller, decoded, parse
from .format import HOOKS, encode_entry
from .reader import ChangeLog
from .writer import LogWriter

__all__ = [
    "ARG_NAMES",
    "HOOKS",
    "BrokenEvent",
    "ChangeLog",
    "Event",
    "LogTrimmed",
    "LogWriter",
    "RawEntry",
    "caller",
    "decoded",
    "encode_entry",
    "parse",
]
