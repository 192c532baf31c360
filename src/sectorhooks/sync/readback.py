"""Reading a syncer's sink back through its plugin's ``ReadBack`` extension point, page by page.

The contract (declared in :mod:`sectorhooks_spec.sync`): ``read_back(syncer, after, limit)``
returns at most ``limit`` :class:`~sectorhooks_spec.SyncedRow` ordered by sector id, strictly
after ``after``. :func:`read_all` asks for pages until a short one and checks each page keeps
the contract (a page that does not would otherwise loop or hide rows). A plugin without
``ReadBack`` is *unverifiable*: :func:`read_back_impl` returns ``None``.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from sectorhooks_spec import SectorID, SyncedRow, SyncerInstance

from ..errors import SyncError
from ..host import PluginHost, PluginImpl

#: The hook behind the ``ReadBack`` extension point.
READ_BACK = "sync_read_back"
#: Rows asked for per call.
PAGE_SIZE = 1000

#: ``str(SectorID) -> (version, state_json)``: what :func:`sectorhooks.sync.compare` takes.
SinkRows = Dict[str, Tuple[int, str]]


def read_back_impl(host: PluginHost, plugin: str) -> Optional[PluginImpl]:
    """``plugin``'s ``ReadBack`` impl, or ``None`` when it has none (its sinks are unverifiable)."""
    return host.impl(plugin, READ_BACK)


def read_all(impl: PluginImpl, syncer: SyncerInstance, page_size: int = PAGE_SIZE) -> SinkRows:
    """Every row of ``syncer``'s sink, read a page at a time; :class:`SyncError` when a page
    breaks the contract (too many rows, not a ``SyncedRow``, out of order)."""
    where = f"syncer {syncer.name!r}: plugin {syncer.plugin_name!r} ReadBack"
    out: SinkRows = {}
    after: Optional[SectorID] = None
    while True:
        rows = list(impl(syncer=syncer, after=after, limit=page_size))
        if len(rows) > page_size:
            raise SyncError(f"{where} returned {len(rows)} rows for limit={page_size}; return at most limit")
        for row in rows:
            if not isinstance(row, SyncedRow):
                raise SyncError(
                    f"{where} returned a {type(row).__name__}; return sectorhooks_spec.SyncedRow"
                    "(sector_id, version, state_json)"
                )
            if after is not None and not row.sector_id > after:
                raise SyncError(
                    f"{where} returned {row.sector_id} after {after}: rows must be ordered by "
                    "(miner, number) and strictly after the 'after' argument"
                )
            out[str(row.sector_id)] = (row.version, row.state_json)
            after = row.sector_id
        if len(rows) < page_size:
            return out
