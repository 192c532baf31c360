"""Check that every sink holds exactly what the KV holds, and the counters match the sectors.

The KV side is read straight from the state collections (raw JSON, no model decoding), the sink
side through the syncer plugin's ``ReadBack`` extension point, a page at a time (sqlsync has it);
:func:`sectorhooks.sync.compare` compares them sector by sector as parsed JSON plus version: a
missing row, an extra row, another version or any changed field is a difference. A sink whose
plugin has no ``ReadBack`` is *unverifiable*: ``equal_to_kv`` is ``None`` and ``unverifiable``
says why; it is never counted as equal.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

from sectorhooks_spec import JsonRpcNamespace, SyncerInstance

from ..state.scan import iter_sectors
from ..sync import compare
from ..sync.readback import read_all, read_back_impl
from .pipeline import COUNTER_PREFIX

log = logging.getLogger(__name__)

MAX_SHOWN = 5
Rows = Dict[str, bytes]


def kv_rows(rt: Any) -> Rows:
    """``str(sector id) -> stored state JSON`` for every sector in the KV (both workspaces)."""
    return {str(r.sector_id): r.raw for r in iter_sectors(rt.kv)}


def differences(kv: Rows, sink: Mapping[str, Tuple[int, Any]]) -> List[str]:
    """Every difference between the KV and a sink's rows, described (empty: equal)."""
    return compare(iter(kv.items()), dict(sink), limit=len(kv) + len(sink) + 1)


def _syncers(rt: Any) -> List[Tuple[str, str, Mapping[str, Any]]]:
    """(name, plugin, meta) of every syncer the sync service runs."""
    configured = {s.name: s for s in rt.config.syncers}
    out: List[Tuple[str, str, Mapping[str, Any]]] = []
    for st in rt.sync.status():
        cfg = configured.get(st["name"])
        out.append((st["name"], st["plugin"], dict(cfg.meta) if cfg else {}))
    return out


def verify_sinks(rt: Any, kv: Optional[Rows] = None) -> List[Dict[str, Any]]:
    """One dict per syncer: rows, equal_to_kv (None when it cannot be read back: then
    ``unverifiable`` says why), differences."""
    kv = kv_rows(rt) if kv is None else kv
    status = {s["name"]: s for s in rt.sync.status()}
    out = []
    for name, plugin, meta in _syncers(rt):
        st = status.get(name, {})
        entry: Dict[str, Any] = {
            "name": name,
            "plugin": plugin,
            "kv_rows": len(kv),
            "rows": None,
            "equal_to_kv": None,
            "differences": 0,
            "examples": [],
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
            try:
                rows = read_all(impl, SyncerInstance(name, plugin, dict(meta)))
            except Exception as exc:
                log.error("reading sink %r back failed: %s", name, exc)
                entry["equal_to_kv"] = False
                entry["examples"] = [f"cannot read the sink back: {type(exc).__name__}: {exc}"]
            else:
                diffs = differences(kv, rows)
                entry.update(
                    rows=len(rows), equal_to_kv=not diffs, differences=len(diffs), examples=diffs[:MAX_SHOWN]
                )
        out.append(entry)
    return out


def verify_counters(rt: Any, kv: Rows, miners: List[int]) -> Dict[str, Dict[str, Any]]:
    """Per miner: the atomic counter of sealed sectors vs the KV's count of sealed, non-imported
    sectors: finalized, or restored for a rebuild (``need_rebuild``: restore clears ``finalized``)."""
    impl = rt.host.impl("atomic_counter", "jsonrpc_handler")
    if impl is None:
        return {}
    handler = JsonRpcNamespace.of(impl()).handler
    sealed: Dict[int, int] = {m: 0 for m in miners}
    for sid, raw in kv.items():
        miner = int(sid.split("-")[1][2:])
        if miner in sealed:
            data = json.loads(raw)
            if (data.get("finalized") or data.get("need_rebuild")) and not data.get("imported"):
                sealed[miner] += 1
    out = {}
    for miner in sorted(sealed):
        name = f"{COUNTER_PREFIX}t0{miner}"
        value = handler.Get(name)
        out[name] = {"counter": value, "kv_sealed": sealed[miner], "equal": value == sealed[miner]}
    return out
