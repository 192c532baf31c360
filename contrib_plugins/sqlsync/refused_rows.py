"""When a batch fails for its data: find the changes at fault, write every other one.

One bad change must never hold up the others (the host would deliver the same batch forever).
First each change is screened: a ``state_json`` that is not a state document, or a value no
column can hold on every dialect (the SPI's bounds: an integer beyond signed 64-bit, which
SQLite's driver refuses with ``OverflowError`` at bind time; a non-finite number; text with a
lone surrogate; a non-scalar) is refused with its reason. Then, while the database still refuses
a row (a constraint, a value too long for its column), the batch is halved by sector, each half
its own transaction, until the refused sectors are alone. The refused changes come back as
:class:`Rejected`, which the plugin raises from ``Flush`` as ``RejectedChanges`` for the host to
dead-letter. An error no change explains is raised: the host delivers the batch again.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

from sectorhooks_spec import INT64_MAX, INT64_MIN, Rejected
from sectorhooks_spec.backend import text_problem

from .rows import Row, version_and_time
from .sink import classify, describe

if TYPE_CHECKING:
    from .sqlsync import Change, SinkWriter

log = logging.getLogger(__name__)


def write_around(sink: SinkWriter, changes: Sequence[Change], error: Exception) -> List[Rejected]:
    """``changes`` failed with ``error`` (not transient): write all but the refused ones, return those."""
    kept, rejected = screen(sink, changes)
    if kept:
        rows, events = sink.rows(kept)
        known = error if not rejected and classify(error) == "row" else None  # no need to try again
        _write_part(sink, rows, events, rejected, known)
    return rejected


def screen(sink: SinkWriter, changes: Sequence[Change]) -> Tuple[List[Change], List[Rejected]]:
    """Split ``changes`` into those every dialect can store and the refused ones, with why."""
    kept: List[Change] = []
    rejected: List[Rejected] = []
    schema = sink.schema
    for c in changes:
        try:
            version, updated_at = version_and_time(c.state_json)
            event = (c.miner, c.number, version, c.event, c.workspace, updated_at, c.state_json)
            problem = row_problem(schema.event_columns, event) or row_problem(
                schema.sector_columns, schema.row(c.miner, c.number, c.workspace, c.state_json)
            )
        except Exception as exc:
            version = _version_in(c.state_json)
            problem = f"state_json is not a state document: {type(exc).__name__}: {exc}"[:300]
        if problem is None:
            kept.append(c)
            continue
        sid = f"s-t0{c.miner}-{c.number}"
        log.warning("sqlsync %s: refused %s v%s: %s", sink.label, sid, version, problem)
        rejected.append(Rejected(sid, version if type(version) is int else 0, problem))
    return kept, rejected


def _write_part(
    sink: SinkWriter, rows: List[Row], events: List[Row], rejected: List[Rejected], error: Any = None
) -> None:
    """Write ``rows`` and ``events`` in one transaction; while the database refuses a row, halve
    them by sector. ``error``: how the database already refused these very rows."""
    if error is None:
        try:
            sink.transaction(rows, events)
            return
        except Exception as exc:
            if classify(exc) != "row":
                raise
            error = exc
    if len(rows) > 1:
        mid = len(rows) // 2
        for part in (rows[:mid], rows[mid:]):
            keys = {(r[0], r[1]) for r in part}
            _write_part(sink, part, [e for e in events if (e[0], e[1]) in keys], rejected)
        return
    reason = describe(error)
    versions = sorted({e[2] for e in events} | {rows[0][sink.schema.sector_columns.index("version")]})
    sid = f"s-t0{rows[0][0]}-{rows[0][1]}"
    log.warning("sqlsync %s: database refused %s v%s: %s", sink.label, sid, versions, reason)
    rejected.extend(Rejected(sid, v, reason) for v in versions)


def value_problem(value: Any) -> Optional[str]:
    """Why no dialect can store ``value`` in a column, or ``None``: the SPI's bounds (a signed
    64-bit integer, a finite number, valid UTF-8 text) and a scalar at all (``None`` included).

    Only values that fail everywhere: a scalar of another type than its column's (text in an
    integer column) is for the database to accept (SQLite, MariaDB cast) or refuse (a row error).
    """
    t = type(value)
    if t is str:
        return text_problem(value)
    if t is int:
        if not INT64_MIN <= value <= INT64_MAX:
            digits = str(value) if value.bit_length() <= 256 else f"an integer of {value.bit_length()} bits"
            return f"is outside the signed 64-bit range: {digits}"
    elif t is float:
        if not math.isfinite(value):
            return f"is not a finite number: {value!r}"
    elif value is not None and t is not bool:
        what = "an array" if t in (list, tuple) else "an object" if t is dict else t.__name__
        return f"is not a scalar: {what}"
    return None


def row_problem(columns: Sequence[str], row: Row) -> Optional[str]:
    """The first value of ``row`` no dialect can store, as ``"<column> <problem>"``."""
    for name, value in zip(columns, row):
        problem = value_problem(value)
        if problem is not None:
            return f"{name} {problem}"
    return None


_VERSION = re.compile(r'"version"\s*:\s*(-?\d{1,19})[,}\s]')


def _version_in(text: Any) -> int:
    """The version a text that is not a state document seems to hold (0 if none): for the host
    to match the refused change to its event."""
    m = _VERSION.search(text) if isinstance(text, str) else None
    return int(m.group(1)) if m else 0
