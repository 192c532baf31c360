"""Kept sector counts: how many sectors each (workspace, miner, state name) holds.

The state manager keeps them in the KV collection ``sectors/counts``, written in the same
transaction (or guarded put) as the changes that move sectors between cells, so reading them
(``StateCounts``) is one scan of a few keys, not a decode of every sector:

* ``<workspace>/<miner, 20 digits>`` -> JSON ``{state name: sectors}``, one record per *row*
  (workspace and miner), so a group of changes writes one record per row it touched, however
  many state names they moved between. Counts per workspace, per miner or per state name are
  sums of cells. A row that fell to ``{}`` may stay (a guarded put cannot delete); a recount
  removes it.
* ``kept`` -> JSON ``{"format": 1, "at": <unix time of the last full count>}``: the *marker*. Its
  absence means the counts were never built (a KV written by a version that did not keep them):
  the manager then builds them from a full scan before its first change (logged), and
  ``sectors recount`` does the same on demand.

Only creating a sector or moving it to another cell changes counts; an update that keeps the
workspace and state name costs nothing here.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import attrs

from sectorhooks_spec import StoreTxn, Workspace

COUNTS = "sectors/counts"
MARKER = b"kept"
FORMAT = 1

log = logging.getLogger(__name__)

#: ``(workspace, miner, state name)``: what a count is kept for.
Cell = Tuple[Workspace, int, str]
#: ``(workspace, miner)``: the cells kept in one KV record.
Row = Tuple[Workspace, int]


def row_key(row: Row) -> bytes:
    """The KV key of ``row``."""
    return b"%s/%020d" % (row[0].value.encode(), row[1])


def row_of_key(key: bytes) -> Row:
    """The row a count key names (raises ``ValueError`` for any other key)."""
    ws, miner = bytes(key).split(b"/")
    return Workspace(ws.decode()), int(miner)


def encode_row(names: Mapping[str, int]) -> bytes:
    """A row's record: its non-zero counts by state name."""
    return json.dumps({k: v for k, v in sorted(names.items()) if v}, separators=(",", ":")).encode()


def decode_row(raw: bytes) -> Dict[str, int]:
    return {str(k): int(v) for k, v in json.loads(raw).items()}


def state_name_of(data: Mapping[str, Any]) -> str:
    """``SectorState.state_name`` read from the state's JSON data (``""`` before any report)."""
    latest = data.get("latest_state")
    return str(latest["state"]) if latest else ""


def _nonzero(cells: Mapping[Cell, int]) -> Dict[Cell, int]:
    return {k: v for k, v in cells.items() if v}


@attrs.frozen
class Counts:
    """Sectors per cell (zero cells left out), and the sums an operator asks for."""

    cells: Mapping[Cell, int] = attrs.field(factory=dict, converter=_nonzero)

    @classmethod
    def of_rows(cls, rows: Mapping[Row, Mapping[str, int]]) -> Counts:
        return cls({(ws, miner, name): n for (ws, miner), names in rows.items() for name, n in names.items()})

    def rows(self) -> Dict[Row, Dict[str, int]]:
        """The cells by row, as the KV keeps them."""
        out: Dict[Row, Dict[str, int]] = {}
        for (ws, miner, name), n in self.cells.items():
            out.setdefault((ws, miner), {})[name] = n
        return out

    @property
    def total(self) -> int:
        return sum(self.cells.values())

    def by_state(self) -> Dict[str, int]:
        """Sectors per state name (``""``: no state reported yet): ``StateCounts``'s result."""
        out: Dict[str, int] = {}
        for (_, _, name), n in sorted(self.cells.items(), key=_cell_order):
            out[name] = out.get(name, 0) + n
        return out

    def by_workspace(self) -> Dict[str, int]:
        """Sectors per workspace (``online``, ``offline``)."""
        out: Dict[str, int] = {}
        for (ws, _, _), n in sorted(self.cells.items(), key=_cell_order):
            out[ws.value] = out.get(ws.value, 0) + n
        return out

    def by_miner(self) -> Dict[int, int]:
        """Sectors per miner."""
        out: Dict[int, int] = {}
        for (_, miner, _), n in sorted(self.cells.items(), key=_cell_order):
            out[miner] = out.get(miner, 0) + n
        return out

    def as_json(self) -> Dict[str, Any]:
        """Total, sums per workspace, miner and state, and the cells, for ``--json``."""
        return {
            "total": self.total,
            "workspaces": self.by_workspace(),
            "miners": {str(m): n for m, n in self.by_miner().items()},
            "states": self.by_state(),
            "cells": [
                {"workspace": ws.value, "miner": m, "state": s, "count": n}
                for (ws, m, s), n in sorted(self.cells.items(), key=_cell_order)
            ],
        }


def _cell_order(item: Tuple[Cell, int]) -> Tuple[str, int, str]:
    (ws, miner, name), _ = item
    return ws.value, miner, name


@attrs.frozen
class Difference:
    """A cell whose kept count is not what a full scan counted."""

    cell: Cell
    kept: int
    counted: int

    def as_json(self) -> Dict[str, Any]:
        ws, miner, name = self.cell
        return {
            "workspace": ws.value,
            "miner": miner,
            "state": name,
            "kept": self.kept,
            "counted": self.counted,
        }


def differences(kept: Optional[Counts], counted: Counts) -> List[Difference]:
    """Every cell where ``kept`` (``None``: no counts kept) and ``counted`` differ, in cell order."""
    have = kept.cells if kept is not None else {}
    cells = sorted(set(have) | set(counted.cells), key=lambda c: (c[0].value, c[1], c[2]))
    return [
        Difference(c, have.get(c, 0), counted.cells.get(c, 0))
        for c in cells
        if have.get(c, 0) != counted.cells.get(c, 0)
    ]


def read(txn: StoreTxn) -> Optional[Counts]:
    """The kept counts (``None`` when there is no marker: never built), in one scan."""
    items = txn.collection(COUNTS).scan(b"")
    marked = False
    rows: Dict[Row, Dict[str, int]] = {}
    try:
        for key, raw in items:
            if bytes(key) == MARKER:
                marked = True
            else:
                rows[row_of_key(key)] = decode_row(raw)
    finally:
        items.close()
    return Counts.of_rows(rows) if marked else None


def count(records: Iterable[Tuple[Workspace, int, bytes]]) -> Counts:
    """Counts of ``(workspace, miner, stored state JSON)`` records (a full scan's)."""
    cells: Dict[Cell, int] = {}
    for ws, miner, raw in records:
        cell = (ws, miner, state_name_of(json.loads(raw)))
        cells[cell] = cells.get(cell, 0) + 1
    return Counts(cells)


def apply(
    txn: StoreTxn, delta: Mapping[Cell, int], known: Mapping[Row, Dict[str, int]]
) -> Dict[Row, Dict[str, int]]:
    """Add ``delta`` to the stored counts, each row it touches written once; ``known``: rows as
    stored (from a trusted cache), the others are read in ``txn``. Returns the rows written."""
    changes: Dict[Row, Dict[str, int]] = {}
    for (ws, miner, name), d in delta.items():
        if d:
            changes.setdefault((ws, miner), {})[name] = d
    coll = txn.collection(COUNTS)
    written: Dict[Row, Dict[str, int]] = {}
    for row, moved in changes.items():
        names = known.get(row)
        if names is None:
            raw = coll.peek(row_key(row))
            names = {} if raw is None else decode_row(raw)
        names = dict(names)
        for name, d in moved.items():
            n = names.get(name, 0) + d
            if n < 0:  # the counts missed a change (a KV written behind the manager's back)
                log.warning(
                    "kept count of %s fell to %d, set to 0: run 'sectorhooks sectors recount'",
                    (*row, name),
                    n,
                )
            if n > 0:
                names[name] = n
            else:
                names.pop(name, None)
        coll.put(row_key(row), encode_row(names))
        written[row] = names
    return written


def write_all(txn: StoreTxn, counted: Counts) -> None:
    """Make the stored counts ``counted`` and set the marker: rows that differ are rewritten,
    rows ``counted`` does not hold (empty ones left by guarded puts included) deleted."""
    coll = txn.collection(COUNTS)
    items = coll.scan(b"")
    try:
        stored = {bytes(k): bytes(v) for k, v in items if bytes(k) != MARKER}
    finally:
        items.close()
    rows = {row_key(row): encode_row(names) for row, names in counted.rows().items()}
    for key in stored:
        if key not in rows:
            coll.delete(key)
    for key, value in rows.items():
        if stored.get(key) != value:
            coll.put(key, value)
    coll.put(MARKER, json.dumps({"format": FORMAT, "at": time.time()}).encode())
