"""The one scan of all sectors: both workspace collections merged in key order, streamed; and
pages of sectors with an opaque cursor.

Everything that walks every stored sector goes through :func:`iter_sectors` (the state
manager's ``list``, the sync service's backfill and verify, the demo's checks): it reads the KV
collections with paged scans (``scan(prefix, after=, limit=)``, at most :data:`SCAN_PAGE` keys a
read), never a list of all sectors, and closes those scans however the consumer stops (exhausted,
``break``, an exception, or ``close()`` on the generator). Each :class:`SectorRecord` holds the
stored JSON bytes; :meth:`SectorRecord.state` decodes them only when asked.

A page (``SectorStateManager.page``, ``Sector.List``, ``sectors list``) is at most
:data:`PAGE_MAX` sectors (:data:`PAGE_DEFAULT` unless asked) read in one ``view``, and a
cursor: :func:`encode_cursor` of the filters and the page's last key, urlsafe base64 of a small
JSON, refused by :func:`decode_cursor` when given with other filters. The next page starts after
that key, so paging while sectors are written never returns a sector twice nor skips one that
existed before the walk began; a sector created after the cursor's key is on a later page.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import heapq
import json
import re
from typing import Any, Generator, Iterable, Iterator, List, Mapping, Optional, Tuple

import attrs

from sectorhooks_spec import KVStore, SectorID, SectorState, Workspace

from ..errors import PageCursorError
from ..kv import scan_page
from .txn import COLLECTIONS, decode

#: Keys a paged scan of :func:`iter_sectors` asks the KV for at a time.
SCAN_PAGE = 1000
#: Sectors in a page when the caller does not say, and the most a page may hold.
PAGE_DEFAULT, PAGE_MAX = 100, 1000
_KEY_RE = re.compile(r"^[0-9]{20}/[0-9]{20}$", re.ASCII)


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
    after: Optional[SectorID] = None,
    page_size: int = SCAN_PAGE,
) -> Generator[SectorRecord, None, None]:
    """Every stored sector of ``workspace`` (or both) and ``miner`` (or all), in key order (miner,
    then number), after the sector ``after`` when given, one :class:`SectorRecord` at a time.

    ``collections`` maps each workspace to the KV collection of its states (the default is where
    the state manager keeps them). The two collections are scanned side by side and merged, each
    by paged scans of ``page_size`` keys, so the memory used does not grow with the number of
    sectors. Each scan is a plain read outside a transaction: a sector moved between workspaces
    during the scan may be seen twice or not at all, as with any scan of a live KV.
    """
    if page_size < 1:
        raise ValueError(f"iter_sectors: page_size must be >= 1, got {page_size}")
    prefix = b"" if miner is None else b"%020d/" % miner
    start = None if after is None else after.key.encode()
    wanted = [
        (ws, name) for ws, name in collections.items() if workspace is None or ws is Workspace(workspace)
    ]
    with contextlib.ExitStack() as stack:
        streams: List[Iterator[Tuple[bytes, SectorRecord]]] = []
        for ws, name in wanted:
            pages = _paged(kv, name, prefix, start, page_size)
            stack.callback(pages.close)
            streams.append(_records(ws, pages))
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_order)
        for _, record in merged:
            yield record


def _paged(
    kv: KVStore, name: str, prefix: bytes, after: Optional[bytes], size: int
) -> Generator[Tuple[bytes, bytes], None, None]:
    """Every item of collection ``name`` with ``prefix`` after ``after``, ``size`` keys a scan."""
    coll = kv.open_collection(name)
    while True:
        n = 0
        with contextlib.closing(scan_page(coll, prefix, after=after, limit=size)) as items:
            for key, raw in items:
                n += 1
                after = key
                yield key, raw
        if n < size:
            return


def _order(item: Tuple[bytes, SectorRecord]) -> bytes:
    return item[0]


def _records(ws: Workspace, items: Iterable[Tuple[bytes, bytes]]) -> Iterator[Tuple[bytes, SectorRecord]]:
    for key, raw in items:
        key = bytes(key)
        yield key, SectorRecord(ws, sector_id_of(key), key, bytes(raw))


# --- pages and cursors ----------------------------------------------------------------------------


def read_page(
    kv: KVStore,
    workspace: Optional[Workspace] = None,
    miner: Optional[int] = None,
    after: Optional[str] = None,
    limit: int = PAGE_DEFAULT,
    collections: Mapping[Workspace, str] = COLLECTIONS,
) -> Tuple[List[SectorRecord], Optional[str]]:
    """At most ``limit`` stored sectors (1 to :data:`PAGE_MAX`) of ``workspace`` (or both) and
    ``miner`` (or all) in key order, after the cursor ``after`` (``None``: from the first); and
    the cursor of the next page, ``None`` after the last.

    One ``view`` reads ``limit + 1`` keys of each collection with a paged scan: a page is a
    snapshot (where the store has them), and nothing before ``after`` is read. A bad cursor or
    limit is :class:`~sectorhooks.errors.PageCursorError` naming it.
    """
    check_page_limit(limit)
    start = None if after is None else decode_cursor(after, workspace, miner).key.encode()
    prefix = b"" if miner is None else b"%020d/" % miner
    wanted = [(ws, n) for ws, n in collections.items() if workspace is None or ws is Workspace(workspace)]

    def read(t: Any) -> List[Tuple[bytes, Workspace, bytes]]:
        rows: List[Tuple[bytes, Workspace, bytes]] = []
        for ws, name in wanted:
            with contextlib.closing(
                scan_page(t.collection(name), prefix, after=start, limit=limit + 1)
            ) as items:
                rows.extend((bytes(k), ws, bytes(v)) for k, v in items)
        rows.sort(key=lambda row: row[0])
        return rows

    records: List[SectorRecord] = []
    last: Optional[bytes] = None
    for key, ws, raw in kv.view(read):
        if key == last:  # in both collections: a store without snapshots saw a move
            continue
        if len(records) == limit:
            return records, encode_cursor(workspace, miner, records[-1].sector_id)
        records.append(SectorRecord(ws, sector_id_of(key), key, raw))
        last = key
    return records, None


def check_page_limit(limit: object, what: str = "limit") -> int:
    """``limit`` if it is a page size (an int from 1 to :data:`PAGE_MAX`), else :class:`PageCursorError`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_MAX:
        raise PageCursorError(
            what, f"must be an integer from 1 to {PAGE_MAX} (the largest page), got {limit!r:.40}"
        )
    return limit


def _filters(workspace: Optional[Workspace], miner: Optional[int]) -> Tuple[Optional[str], Optional[int]]:
    return (None if workspace is None else Workspace(workspace).value), miner


def encode_cursor(workspace: Optional[Workspace], miner: Optional[int], last: SectorID) -> str:
    """The opaque cursor of the page that ended at ``last`` under these filters."""
    ws, m = _filters(workspace, miner)
    doc = json.dumps({"w": ws, "m": m, "k": last.key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")


def decode_cursor(
    cursor: object, workspace: Optional[Workspace], miner: Optional[int], what: str = "after"
) -> SectorID:
    """The last sector of the page ``cursor`` ended; :class:`PageCursorError` naming ``what``
    when it is not a cursor :func:`encode_cursor` made, or was made with other filters."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 512:
        raise PageCursorError(
            what, f"is not a cursor: give the 'next' of the previous page, got {cursor!r:.60}"
        )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        doc: Any = json.loads(raw)
    except (binascii.Error, ValueError):
        doc = None
    if not isinstance(doc, dict) or set(doc) != {"w", "m", "k"} or not isinstance(doc["k"], str):
        raise PageCursorError(
            what, f"is not a cursor: give the 'next' of the previous page, got {cursor[:60]!r}"
        )
    if not _KEY_RE.match(doc["k"]):
        raise PageCursorError(what, f"is a damaged cursor (no sector key in it): {cursor[:60]!r}")
    made = (doc["w"], doc["m"])
    if made != _filters(workspace, miner):
        raise PageCursorError(
            what,
            f"is a cursor of workspace={made[0]!r} miner={made[1]!r}, not of workspace="
            f"{_filters(workspace, miner)[0]!r} miner={miner!r}: page with the filters it was made "
            "with, or start again without it",
        )
    try:
        return sector_id_of(doc["k"].encode())
    except ValueError:  # a number past the 64-bit range
        raise PageCursorError(
            what, f"is a damaged cursor (not a sector key in it): {cursor[:60]!r}"
        ) from None
