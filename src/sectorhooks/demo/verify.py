"""Check that every sink holds exactly what the KV holds, and the counters match the sectors.

One pass over the KV's sectors (streamed in key order, raw JSON, no model decoding) checks every
sink at once: each sink is read through its syncer plugin's ``ReadBack`` extension point a page
at a time, in the same order, and merge-joined with the KV
(:func:`sectorhooks.sync.readback.compare_streams`): a missing row, an extra row, another
version or any changed field (JSON compared parsed) is a difference. The same pass counts the
sealed sectors per miner for the counters. Memory holds a page per sink and a few examples, not
the sectors. A sink whose plugin has no ``ReadBack`` is *unverifiable*: ``equal_to_kv`` is
``None`` and ``unverifiable`` says why; it is never counted as equal.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import msgspec

from sectorhooks_spec import JsonRpcNamespace, SectorID, SyncedRow, SyncerInstance

from ..state.scan import iter_sectors
from ..sync import compare
from ..sync.readback import Comparison, compare_streams, iter_rows, read_back_impl
from .pipeline import COUNTER_PREFIX

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

MAX_SHOWN = 5
Rows = Dict[str, bytes]


def kv_rows(rt: Runtime) -> Rows:
    """``str(sector id) -> stored state JSON`` for every sector in the KV (both workspaces): the
    whole KV in memory, for tests and small setups (:func:`check` streams)."""
    return {str(r.sector_id): r.raw for r in iter_sectors(rt.kv)}


def differences(kv: Rows, sink: Mapping[str, Tuple[int, Any]]) -> List[str]:
    """Every difference between the KV and a sink's rows, described (empty: equal)."""
    return compare(iter(kv.items()), dict(sink), limit=len(kv) + len(sink) + 1)


def _syncers(rt: Runtime) -> List[Tuple[str, str, Mapping[str, Any]]]:
    """(name, plugin, meta) of every syncer the sync service runs."""
    configured = {s.name: s for s in rt.config.syncers}
    out: List[Tuple[str, str, Mapping[str, Any]]] = []
    for st in rt.sync.status():
        cfg = configured.get(st["name"])
        out.append((st["name"], st["plugin"], dict(cfg.meta) if cfg else {}))
    return out


class _Sealed(msgspec.Struct):
    """The fields of a stored state the counters' check reads (the rest is skipped, not decoded)."""

    finalized: Any = None
    need_rebuild: Any = None
    imported: Any = None


_SEALED = msgspec.json.Decoder(_Sealed)


class SealedTally:
    """Per miner of ``miners``: sealed, non-imported sectors (finalized, or restored for a
    rebuild: ``need_rebuild``, since restore clears ``finalized``), counted one KV row at a time."""

    def __init__(self, miners: Sequence[int]):
        self.sealed: Dict[int, int] = {m: 0 for m in miners}

    def add(self, sid: SectorID, raw: Any) -> None:
        if sid.miner in self.sealed:
            try:
                s = _SEALED.decode(raw)
                sealed = (s.finalized or s.need_rebuild) and not s.imported
            except (msgspec.DecodeError, msgspec.ValidationError):
                data = json.loads(raw)
                sealed = (data.get("finalized") or data.get("need_rebuild")) and not data.get("imported")
            if sealed:
                self.sealed[sid.miner] += 1


def _counter_handler(rt: Runtime) -> Optional[Any]:
    impl = rt.host.impl("atomic_counter", "jsonrpc_handler")
    return None if impl is None else JsonRpcNamespace.of(impl()).handler


def _counter_report(handler: Any, tally: SealedTally) -> Dict[str, Dict[str, Any]]:
    out = {}
    for miner in sorted(tally.sealed):
        name = f"{COUNTER_PREFIX}t0{miner}"
        value = handler.Get(name)
        kv_sealed = tally.sealed[miner]
        out[name] = {"counter": value, "kv_sealed": kv_sealed, "equal": value == kv_sealed}
    return out


def _kv_stream(rt: Runtime, kv: Optional[Rows]) -> Iterator[Tuple[SectorID, Any]]:
    if kv is not None:
        for sector, raw in sorted(kv.items(), key=lambda item: _key(item[0])):
            yield SectorID(*_key(sector)), raw
        return
    with contextlib.closing(iter_sectors(rt.kv)) as records:
        for r in records:
            yield r.sector_id, r.raw


def _key(sector: str) -> Tuple[int, int]:
    _, miner, number = sector.split("-")
    return int(miner[2:]), int(number)


def check(rt: Runtime, miners: Sequence[int] = (), kv: Optional[Rows] = None) -> Dict[str, Any]:
    """Every sink and the counters of ``miners`` against the KV in one pass over the KV (``kv``:
    a dict of rows to use instead, see :func:`kv_rows`). Returns ``kv_sectors``, ``sinks`` (one
    dict per syncer, see :func:`verify_sinks`) and ``counters``."""
    status = {s["name"]: s for s in rt.sync.status()}
    entries: List[Dict[str, Any]] = []
    streams: Dict[str, Iterator[SyncedRow]] = {}
    for name, plugin, meta in _syncers(rt):
        st = status.get(name, {})
        entry: Dict[str, Any] = {
            "name": name,
            "plugin": plugin,
            "kv_rows": 0,
            "rows": None,
            "equal_to_kv": None,
            "differences": 0,
            "examples": [],
            "counts": None,
            "lag_events": st.get("lag_events"),
            "lag_seconds": st.get("lag_seconds"),
            "dead_letters": st.get("dead_letters", 0),
            "last_error": st.get("last_error"),
            "unverifiable": None,
        }
        impl = read_back_impl(rt.host, plugin)
        if impl is None:
            entry["unverifiable"] = f"plugin {plugin!r} has no ReadBack extension point: cannot compare"
            entry["examples"] = [entry["unverifiable"]]
        else:
            streams[name] = iter_rows(impl, SyncerInstance(name, plugin, dict(meta)))
        entries.append(entry)
    handler = _counter_handler(rt) if miners else None
    tally = SealedTally(miners if handler is not None else ())
    kv_count = 0

    def seen(sid: SectorID, raw: Any) -> None:
        nonlocal kv_count
        kv_count += 1
        tally.add(sid, raw)

    results = compare_streams(_kv_stream(rt, kv), streams, max_examples=MAX_SHOWN, on_kv_row=seen)
    for entry in entries:
        entry["kv_rows"] = kv_count
        cmp = results.get(entry["name"])
        if cmp is not None:
            _fill(entry, cmp)
    return {
        "kv_sectors": kv_count,
        "sinks": entries,
        "counters": _counter_report(handler, tally) if handler is not None else {},
    }


def _fill(entry: Dict[str, Any], cmp: Comparison) -> None:
    entry["counts"] = cmp.as_dict()
    if cmp.error is not None:
        entry.update(equal_to_kv=False, examples=[cmp.error])
        return
    entry.update(
        rows=cmp.sink_rows,
        equal_to_kv=cmp.ok,
        differences=cmp.differences,
        examples=cmp.lines(MAX_SHOWN)[:MAX_SHOWN],
    )


def verify_sinks(rt: Runtime, kv: Optional[Rows] = None) -> List[Dict[str, Any]]:
    """One dict per syncer: rows, equal_to_kv (None when it cannot be read back: then
    ``unverifiable`` says why), differences, examples, counts (per kind of difference)."""
    sinks: List[Dict[str, Any]] = check(rt, (), kv)["sinks"]
    return sinks


def verify_counters(rt: Runtime, kv: Rows, miners: List[int]) -> Dict[str, Dict[str, Any]]:
    """Per miner: the atomic counter of sealed sectors vs the KV's count of sealed, non-imported
    sectors (``kv``: rows as :func:`kv_rows` gives them)."""
    handler = _counter_handler(rt)
    if handler is None:
        return {}
    tally = SealedTally(miners)
    for sector, raw in kv.items():
        tally.add(SectorID(*_key(sector)), raw)
    return _counter_report(handler, tally)


__all__ = ["check", "differences", "kv_rows", "verify_counters", "verify_sinks"]
