"""What a SyncSectorState plugin receives (:class:`SyncerInstance`) and reads back (:class:`SyncedRow`).

Read-back is the optional ``ReadBack`` extension point of the SyncSectorState kind::

    export = [ ..., { extPoint = "ReadBack", impl = "read_back" } ]

    def read_back(syncer, after, limit):
        # rows of this instance's sink, ordered by (miner, number), strictly after `after`
        # (None: from the first), at most `limit` of them
        return [SyncedRow(sid, version, state_json) for sid, version, state_json in page]

``sync verify`` and ``sectorhooks demo`` page through it (``after`` = the last row's
``sector_id`` of the previous page, until a page holds fewer than ``limit`` rows) and compare
every row with the KV: the sink's version, and its ``state_json`` as parsed JSON. A syncer whose
plugin does not export ``ReadBack`` is reported *unverifiable*: it is never called consistent.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

from .sector import SectorID


@attrs.frozen
class SyncerInstance:
    """One configured syncer (``[[Common.Syncers]]``): its name and its ``Meta`` table.

    A plugin serving several instances (fan-out to several databases) keys its state by ``name``.
    """

    name: str
    plugin_name: str
    meta: Mapping[str, Any] = attrs.field(factory=dict, hash=False)


@attrs.frozen
class SyncedRow:
    """One sector as a sink holds it: its id, the state version and the state JSON stored.

    ``state_json`` is what the sink stored for that version (the text a hook received as
    ``state_json``, or an equivalent JSON document: it is compared parsed, not byte for byte).
    """

    sector_id: SectorID
    version: int
    state_json: str


__all__ = ["SyncedRow", "SyncerInstance"]
