"""The change log's storage format: where entries live, how an entry is laid out, its JSON.

Layout in the KV (collection -> key -> value):

* ``sync/log``  ``<seq>`` (20 zero-padded digits, so byte order is seq order) -> one entry;
* ``sync/meta`` ``head`` (last seq written) and ``floor`` (first seq not trimmed), ASCII ints.

Sequence numbers are allocated inside the writer's transaction (``head`` is read and rewritten
there), so the log is gap-free between ``floor`` and ``head``: a reader knows every key it
wants and reads a range with a few prefix scans over aligned decimal blocks.

An entry is one line of JSON, the header (``e`` event, ``s`` [miner, number], ``v`` version,
``w`` workspace, ``t`` time; ``k`` the changed field names of an update, ``o`` override of an
import; ``a`` [[miner, number, proof type]...] and ``vs`` versions of an init), followed by one
line per state, each exactly ``codec.dumps(state)``. Sinks get that text as ``state_json``
without anything being parsed or serialized again. An ``init`` entry written since #20 has no
state lines: its fresh states are stored once, in the KV, and readers rebuild the same text
from the header (:func:`.events.fresh_states_json`); older entries with lines read as before.
The header builders below are the only place that spells the header's keys, and :func:`dumps`
the only place the log encodes JSON.

Headers go through the stdlib ``json``: msgspec for them (writer and readers) was measured
against it in alternating runs of ``benchmarks/bench_sync.py --quick`` and gained no consistent
10% in row (b) (FULL 0.97x, NORMAL 1.08x of this path, 8 pairs), so no fast path is kept.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sectorhooks_spec import SectorID, StoreTxn, Workspace

LOG = "sync/log"
META = "sync/meta"
HEAD = b"head"
FLOOR = b"floor"

#: Event name -> hook name.
HOOKS: Dict[str, str] = {
    "import": "sync_on_import",
    "init": "sync_on_init",
    "update": "sync_on_update",
    "finalize": "sync_on_finalize",
    "restore": "sync_on_restore",
}

Header = Dict[str, Any]


def seq_key(seq: int) -> bytes:
    """The log key of ``seq``."""
    return b"%020d" % seq


def read_int(txn: StoreTxn, key: bytes, default: int) -> int:
    """An ASCII int from ``sync/meta`` (``default`` when missing)."""
    raw = txn.collection(META).peek(key)
    return default if raw is None else int(raw)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """The log's JSON: compact, UTF-8 kept as it is."""
    return _ENCODER.encode(value)


def encode_entry(header: Header, states_json: Sequence[str]) -> bytes:
    """One log entry: the header line, then one line per state (each ``codec.dumps`` text)."""
    return "\n".join((dumps(header), *states_json)).encode("utf-8")


def split_entry(raw: bytes) -> Tuple[bytes, List[str]]:
    """``(header line, state lines)`` of an entry, the header not decoded."""
    cut = raw.find(b"\n")
    if cut < 0:
        return raw, []
    return raw[:cut], raw[cut + 1 :].decode("utf-8").split("\n")


def decode_header(line: bytes) -> Header:
    """The header of an entry as a dict; ``ValueError`` when it is not a JSON object."""
    header = json.loads(line.decode("utf-8"))
    if type(header) is not dict:
        raise ValueError("the header is not a JSON object")
    return header


def header_of(raw: bytes) -> Header:
    """The decoded header of the entry ``raw``."""
    return decode_header(split_entry(raw)[0])


# --- headers, one builder per event --------------------------------------------------------------


def _sector(sid: SectorID) -> List[int]:
    return [sid.miner, sid.number]


def import_header(
    sid: SectorID, version: int, ws: Workspace, override: bool, now: Optional[float] = None
) -> Header:
    """An import (``override``: it replaced a state that existed); no time for a replay."""
    header = {"e": "import", "s": _sector(sid), "v": version, "w": ws.value, "o": override}
    if now is not None:
        header["t"] = now
    return header


def init_header(allocated: Sequence[Tuple[SectorID, int]], ws: Workspace, now: float) -> Header:
    """An init of ``(sector, proof type)`` pairs, each at version 1."""
    return {
        "e": "init",
        "a": [[sid.miner, sid.number, proof] for sid, proof in allocated],
        "vs": [1] * len(allocated),
        "w": ws.value,
        "t": now,
    }


def update_header(sid: SectorID, version: int, ws: Workspace, names: Sequence[str], now: float) -> Header:
    """An update of the fields ``names`` (their values are in the state line)."""
    return {"e": "update", "s": _sector(sid), "v": version, "w": ws.value, "k": list(names), "t": now}


def move_header(event: str, sid: SectorID, version: int, ws: Workspace, now: float) -> Header:
    """A ``finalize`` or ``restore``: the sector moved to ``ws``."""
    return {"e": event, "s": _sector(sid), "v": version, "w": ws.value, "t": now}
