"""Reading a syncer's sink back through its plugin's ``ReadBack`` extension point, and comparing
it with the KV, page by page.

The contract (declared in :mod:`sectorhooks_spec.sync`): ``read_back(syncer, after, limit)``
returns at most ``limit`` :class:`~sectorhooks_spec.SyncedRow` ordered by sector id, strictly
after ``after``. :func:`iter_rows` asks for pages until a short one and checks each page keeps
the contract (a page that does not would otherwise loop or hide rows). A plugin without
``ReadBack`` is *unverifiable*: :func:`read_back_impl` returns ``None``.

:func:`compare_streams` is the check ``sync verify`` and the demo run: a merge-join of the KV's
sectors (streamed in key order, i.e. (miner, number)) against one or more sinks' rows (streamed
in the same order), one pass, holding one page of each side and a bounded list of examples, so
its memory does not grow with the number of sectors. Each sink gets a :class:`Comparison`:
counts of equal rows, rows missing in the sink, extra rows in the sink, rows at another version
and rows at the same version whose JSON differs.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import attrs
import msgspec

from sectorhooks_spec import SectorID, SyncedRow, SyncerInstance

from ..errors import SyncError
from ..host import PluginHost, PluginImpl

log = logging.getLogger(__name__)

#: The hook behind the ``ReadBack`` extension point.
READ_BACK = "sync_read_back"
#: Rows asked for per call.
PAGE_SIZE = 1000
#: Differences described in full per sink (the rest are counted).
MAX_EXAMPLES = 1000

#: ``str(SectorID) -> (version, state_json)``: what :func:`read_all` returns.
SinkRows = Dict[str, Tuple[int, str]]
#: One KV sector as :func:`compare_streams` reads it: its id and its stored JSON (bytes or text).
KVRow = Tuple[SectorID, Any]


def read_back_impl(host: PluginHost, plugin: str) -> Optional[PluginImpl]:
    """``plugin``'s ``ReadBack`` impl, or ``None`` when it has none (its sinks are unverifiable)."""
    return host.impl(plugin, READ_BACK)


def iter_rows(impl: PluginImpl, syncer: SyncerInstance, page_size: int = PAGE_SIZE) -> Iterator[SyncedRow]:
    """Every row of ``syncer``'s sink in sector order, read a page at a time (one page held);
    :class:`SyncError` when a page breaks the contract (too many rows, not a ``SyncedRow``, out
    of order)."""
    where = f"syncer {syncer.name!r}: plugin {syncer.plugin_name!r} ReadBack"
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
            after = row.sector_id
            yield row
        if len(rows) < page_size:
            return


def read_all(impl: PluginImpl, syncer: SyncerInstance, page_size: int = PAGE_SIZE) -> SinkRows:
    """Every row of ``syncer``'s sink as a dict (for tests and small sinks: a whole sink in
    memory; :func:`compare_streams` is the bounded way to check one)."""
    return {str(r.sector_id): (r.version, r.state_json) for r in iter_rows(impl, syncer, page_size)}


# --- comparing -----------------------------------------------------------------------------------


@attrs.define
class Comparison:
    """How one sink compares with the KV: counts per kind of difference and the first examples.

    ``examples`` lists the KV-side differences (missing, other version, other JSON) in key order,
    then the rows only in the sink; each part keeps at most ``max_examples`` lines. ``error`` is
    set when reading the sink failed part-way (the counts then cover what was read)."""

    name: str = ""
    max_examples: int = MAX_EXAMPLES
    kv_rows: int = 0
    sink_rows: int = 0
    equal: int = 0
    missing: int = 0  # in the KV, not in the sink
    extra: int = 0  # in the sink, not in the KV
    version: int = 0  # both, another version
    text: int = 0  # both, same version, different JSON
    error: Optional[str] = None
    exception: Optional[Exception] = attrs.field(default=None, repr=False)  # what set ``error``
    _kv_side: List[str] = attrs.field(factory=list, repr=False)
    _extras: List[str] = attrs.field(factory=list, repr=False)

    @property
    def differences(self) -> int:
        """How many sectors differ (every kind)."""
        return self.missing + self.extra + self.version + self.text

    @property
    def ok(self) -> bool:
        """The sink equals the KV (and was read to its end)."""
        return self.error is None and self.differences == 0

    def lines(self, limit: Optional[int] = None) -> List[str]:
        """The differences described (at most ``limit``, default ``max_examples``), then
        ``... and N more`` when some are only counted."""
        limit = self.max_examples if limit is None else limit
        shown = [*self._kv_side, *self._extras][:limit]
        if self.differences > len(shown):
            shown.append(f"... and {self.differences - len(shown)} more")
        return shown

    def as_dict(self) -> Dict[str, Any]:
        """The counts (JSON-ready)."""
        return {
            "kv_rows": self.kv_rows,
            "sink_rows": self.sink_rows,
            "equal": self.equal,
            "missing_in_sink": self.missing,
            "extra_in_sink": self.extra,
            "other_version": self.version,
            "other_json": self.text,
            "differences": self.differences,
            "error": self.error,
        }

    def note(self, line: str) -> None:
        """Keep ``line`` (a KV-side difference, already counted) while there is room."""
        if len(self._kv_side) < self.max_examples:
            self._kv_side.append(line)

    def note_extra(self, row: SyncedRow) -> None:
        """Count ``row``, which only the sink has, and describe it while there is room."""
        self.extra += 1
        if len(self._extras) < self.max_examples:
            self._extras.append(f"{row.sector_id}: in the sink (version {row.version}) but not in the KV")


class _Version(msgspec.Struct):
    version: int


_VERSION = msgspec.json.Decoder(_Version)


def stored_version(raw: Any) -> int:
    """The ``version`` of a stored state's JSON, read without decoding the rest of it."""
    try:
        return _VERSION.decode(raw).version
    except (msgspec.DecodeError, msgspec.ValidationError):
        return int(json.loads(raw)["version"])


def _as_text(value: Any) -> Any:
    return bytes(value).decode("utf-8") if isinstance(value, (bytes, bytearray, memoryview)) else value


class _Cursor:
    """One sink's rows as the merge-join walks them: the current row and its comparison."""

    __slots__ = ("cmp", "row", "rows")

    def __init__(self, cmp: Comparison, rows: Iterator[SyncedRow]):
        self.cmp, self.rows = cmp, rows
        self.row: Optional[SyncedRow] = None
        self.advance()

    def advance(self) -> Optional[SyncedRow]:
        """Move to the next row (``None`` at the end or after a read error) and return it."""
        if self.cmp.error is not None:
            self.row = None
            return None
        try:
            self.row = next(self.rows, None)
        except Exception as exc:
            self.cmp.error = f"cannot read the sink back: {type(exc).__name__}: {exc}"
            self.cmp.exception = exc
            log.error("reading sink %r back failed: %s", self.cmp.name, exc)
            self.row = None
        if self.row is not None:
            self.cmp.sink_rows += 1
        return self.row


def compare_row(cmp: Comparison, sid: SectorID, raw: Any, row: SyncedRow) -> None:
    """Compare one sector present on both sides: version, then the JSON (text first, parsed
    when the texts differ: an equivalent JSON document is equal)."""
    version = stored_version(raw)
    if row.version != version:
        cmp.version += 1
        cmp.note(f"{sid}: sink has version {row.version}, KV has {version}")
        return
    text = row.state_json
    if isinstance(text, (str, bytes)) and _as_text(text) == _as_text(raw):
        cmp.equal += 1
        return
    want = json.loads(raw)
    have = json.loads(text) if isinstance(text, (str, bytes)) else text
    if have == want:
        cmp.equal += 1
        return
    cmp.text += 1
    if isinstance(have, dict):
        fields = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        cmp.note(f"{sid}: version {version} differs in field(s) {', '.join(fields)}")
    else:
        cmp.note(f"{sid}: version {version}: the sink's JSON is not an object")


def compare_streams(
    kv: Iterable[KVRow],
    sinks: Mapping[str, Iterator[SyncedRow]],
    max_examples: int = MAX_EXAMPLES,
    on_kv_row: Optional[Callable[[SectorID, Any], None]] = None,
) -> Dict[str, Comparison]:
    """Compare every sink of ``sinks`` (name -> its rows in sector order) with the KV's sectors
    (``(sector id, stored JSON)`` in key order) in one pass over ``kv``; ``on_kv_row`` sees each
    KV row too (the demo counts sealed sectors with it). Memory: one row of each stream and at
    most ``2 * max_examples`` lines per sink."""
    cursors = [_Cursor(Comparison(name, max_examples), rows) for name, rows in sinks.items()]
    kv_count = 0
    for sid, raw in kv:
        kv_count += 1
        if on_kv_row is not None:
            on_kv_row(sid, raw)
        here = (sid.miner, sid.number)
        for c in cursors:
            cmp, row = c.cmp, c.row
            while row is not None and (row.sector_id.miner, row.sector_id.number) < here:
                cmp.note_extra(row)
                row = c.advance()
            if row is not None and (row.sector_id.miner, row.sector_id.number) == here:
                compare_row(cmp, sid, raw, row)
                c.advance()
            elif cmp.error is None:
                cmp.missing += 1
                cmp.note(f"{sid}: missing in the sink (KV has version {stored_version(raw)})")
    out: Dict[str, Comparison] = {}
    for c in cursors:
        row = c.row
        while row is not None:
            c.cmp.note_extra(row)
            row = c.advance()
        c.cmp.kv_rows = kv_count
        out[c.cmp.name] = c.cmp
    return out


def compare_one(
    kv: Iterable[KVRow], rows: Iterator[SyncedRow], max_examples: int = MAX_EXAMPLES
) -> Comparison:
    """:func:`compare_streams` of a single sink."""
    return compare_streams(kv, {"": rows}, max_examples)[""]
