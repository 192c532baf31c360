"""The one scan of all sectors: both workspace collections merged in key order, streamed.

Everything that walks every stored sector goes through :func:`iter_sectors` (the state
manager's ``list``, the sync service's backfill and verify, the demo's checks): it reads the KV
collections a page at a time as the store's scan iterators give them, never a list of all
sectors, and closes those iterators however the consumer stops (exhausted, ``break``, an
exception, or ``close()`` on the generator). Each :class:`SectorRecord` holds the stored JSON
bytes; :meth:`SectorRecord.state` decodes them only when asked.
"""

from __future__ import annotations

import contextlib
import heapq
from typing import Generator, Iterable, Iterator, List, Mapping, Optional, Tuple

import attrs

from sectorhooks_spec import KVStore, SectorID, SectorState, Workspace

from .txn import COLLECTIONS, decode


@attrs.frozen
class SectorRecord:
    """One stored sector: where it lives, its id and KV key, and its state as stored (JSON bytes)."""

    workspace: Workspace
    sector_id: SectorID
    key: bytes
    raw: bytes

    def state(self) -> SectorState:
        """The stored state, decoded now; a ``DecodeError`` names the key and collection, a
        ``ValueError`` says the stored text is not JSON."""
        return decode(self.key, self.raw, self.workspace).state

    def text(self) -> str:
        """The stored JSON as text."""
        return self.raw.decode("utf-8")


def sector_id_of(key: bytes) -> SectorID:
    """The :class:`SectorID` of a state collection's key (``<miner>/<number>``, zero-padded)."""
    miner, _, number = bytes(key).partition(b"/")
    return SectorID(int(miner), int(number))


def iter_sectors(
    kv: KVStore,
    workspace: Optional[Workspace] = None,
    miner: Optional[int] = None,
    collections: Mapping[Workspace, str] = COLLECTIONS,
) -> Generator[SectorRecord, None, None]:
    """Every stored sector of ``workspace`` (or both) and ``miner`` (or all), in key order (miner,
    then number), one :class:`SectorRecord` at a time.

    ``collections`` maps each workspace to the KV collection of its states (the default is where
    the state manager keeps them). The two collections are scanned side by side and merged, so
    the memory used does not grow with the number of sectors. Each scan is a plain read outside
    a transaction: a sector moved between workspaces during the scan may be seen twice or not at
    all, as with any scan of a live KV.
    """
    prefix = b"" if miner is None else b"%020d/" % miner
    wanted = [
        (ws, name) for ws, name in collections.items() if workspace is None or ws is Workspace(workspace)
    ]
    with contextlib.ExitStack() as stack:
        streams: List[Iterator[Tuple[bytes, SectorRecord]]] = []
        for ws, name in wanted:
            it = kv.open_collection(name).scan(prefix)
            stack.callback(it.close)
            streams.append(_records(ws, it))
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_order)
        for _, record in merged:
            yield record


def _order(item: Tuple[bytes, SectorRecord]) -> bytes:
    return item[0]


def _records(ws: Workspace, items: Iterable[Tuple[bytes, bytes]]) -> Iterator[Tuple[bytes, SectorRecord]]:
    for key, raw in items:
        key = bytes(key)
        yield key, SectorRecord(ws, sector_id_of(key), key, bytes(raw))
