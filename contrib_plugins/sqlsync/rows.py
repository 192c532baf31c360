"""From a state's JSON to column values, without decoding it into a ``SectorState``.

Parsing is most of a flush's own cost (a state is ~1 KB of JSON and a SQLite upsert of it
costs about as much as ``json.loads`` of it), so only what is needed is read:
``version_and_time`` reads the two last keys from the tail of the text, and a ``sectors`` row
is built from one parse of the newest state per sector. With ``msgspec`` installed the row
builder decodes straight into a struct of just the mapped fields, skipping the rest of the
document without building it (about 5x faster than ``json.loads``); without it, ``json``.
Both give the same values (tested).
"""

from __future__ import annotations

import json
import math
import re
import typing
from operator import itemgetter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from sectorhooks_spec import INT64_MAX, INT64_MIN, SectorState
from sectorhooks_spec.sector import text_problem

#: Nested main fields worth a column: (column, parent field, child key, value when parent is null).
NESTED: Tuple[Tuple[str, str, str, Any], ...] = (
    ("state_name", "latest_state", "state", ""),
    ("comm_r", "pre", "comm_r", None),
    ("comm_d", "pre", "comm_d", None),
    ("pre_commit_cid", "message_info", "pre_commit_cid", None),
    ("commit_cid", "message_info", "commit_cid", None),
)
_RESERVED = frozenset({"miner", "number", "workspace", "state_json"} | {n[0] for n in NESTED})
_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
_NONE = type(None)

Row = Tuple[Any, ...]
RowBuilder = Callable[[int, int, str, str], Row]


def scalar_fields(cls: type = SectorState) -> Tuple[Tuple[str, str], ...]:
    """(name, kind) of every top-level field of ``cls`` whose type is a (optional) scalar."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in attrs.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        if typing.get_origin(tp) is typing.Union and len(args) == 2 and _NONE in args:
            tp = args[0] if args[1] is _NONE else args[1]
        kind = _SCALARS.get(tp)
        if kind is not None and f.name not in _RESERVED:
            out.append((f.name, kind))
    return tuple(out)


def row_builder(scalars: Sequence[Tuple[str, str]], decoder: str = "auto") -> RowBuilder:
    """``row(miner, number, workspace, state_json)``: a ``sectors`` row in column order.

    Columns: miner, number, workspace, the :data:`NESTED` fields, ``scalars``, state_json.
    ``decoder``: ``"msgspec"``, ``"json"`` or ``"auto"`` (msgspec when installed).
    """
    names = tuple(n for n, _ in scalars)
    json_row = _json_row_builder(names)
    if decoder == "json":
        return json_row
    try:
        return _msgspec_row_builder(names, json_row)
    except ImportError:
        if decoder == "msgspec":
            raise
        return json_row


def _json_row_builder(names: Tuple[str, ...]) -> RowBuilder:
    assert [n[0] for n in NESTED] == ["state_name", "comm_r", "comm_d", "pre_commit_cid", "commit_cid"]
    pick = itemgetter(*names) if len(names) > 1 else (lambda d: (d[names[0]],))
    loads = json.loads

    def row(miner: int, number: int, workspace: str, state_json: str) -> Row:
        d = loads(state_json)
        try:
            values = pick(d)
        except KeyError:  # a state written before a field existed
            values = tuple(d.get(n) for n in names)
        ls, pre, mi = d.get("latest_state"), d.get("pre"), d.get("message_info")
        return (
            miner,
            number,
            workspace,
            ls.get("state", "") if ls else "",
            pre.get("comm_r") if pre else None,
            pre.get("comm_d") if pre else None,
            mi.get("pre_commit_cid") if mi else None,
            mi.get("commit_cid") if mi else None,
            *values,
            state_json,
        )

    return row


def _msgspec_row_builder(names: Tuple[str, ...], fallback: RowBuilder) -> RowBuilder:
    import msgspec

    # Only the mapped fields are declared: msgspec skips every other key without building it.
    # Values stay ``Any`` (as json would give them); a shape the structs refuse falls back.
    latest = msgspec.defstruct("Latest", [("state", Any, "")], gc=False)
    pre_t = msgspec.defstruct("Pre", [("comm_r", Any, None), ("comm_d", Any, None)], gc=False)
    msg_t = msgspec.defstruct("Msg", [("pre_commit_cid", Any, None), ("commit_cid", Any, None)], gc=False)
    fields: List[Tuple[str, Any, Any]] = [(n, Any, None) for n in names]
    fields += [("latest_state", Optional[latest], None), ("pre", Optional[pre_t], None)]
    fields += [("message_info", Optional[msg_t], None)]
    main = msgspec.defstruct("MainFields", fields, gc=False)
    decode = msgspec.json.Decoder(main).decode
    astuple = msgspec.structs.astuple
    n = len(names)
    refused = msgspec.DecodeError

    def row(miner: int, number: int, workspace: str, state_json: str) -> Row:
        try:
            m = decode(state_json)
        except refused:
            return fallback(miner, number, workspace, state_json)
        values = astuple(m)
        ls, pre, mi = values[n], values[n + 1], values[n + 2]
        return (
            miner,
            number,
            workspace,
            ls.state if ls is not None else "",
            pre.comm_r if pre is not None else None,
            pre.comm_d if pre is not None else None,
            mi.pre_commit_cid if mi is not None else None,
            mi.commit_cid if mi is not None else None,
            *values[:n],
            state_json,
        )

    return row


# The codec writes ``..."version":N,"updated_at":F}`` last: read both from the tail without
# parsing the whole document (anchored at the end, so these are the top-level keys).
_TAIL = re.compile(r'"version":(\d+),"updated_at":(-?[0-9.eE+-]+)\}\s*$')


def version_and_time(state_json: str) -> Tuple[int, Optional[float]]:
    """(version, updated_at) of a serialized state; reads the tail, parses all only if needed."""
    m = _TAIL.search(state_json, max(0, len(state_json) - 96))
    if m is not None:
        return int(m.group(1)), float(m.group(2))
    d = json.loads(state_json)
    return int(d["version"]), d.get("updated_at")


# Every instance of the plugin (fan-out) gets the very same ``state_json`` objects from the host,
# so the tail is read once for all of them (a str keeps its hash: a hit is one dict lookup).
_SEEN: Dict[str, Tuple[int, Optional[float]]] = {}
SEEN_MAX = 4096


def versions_and_times(texts: Sequence[str]) -> Tuple[List[int], List[Optional[float]]]:
    """:func:`version_and_time` of each text, remembering the last few thousand texts."""
    versions: List[int] = []
    times: List[Optional[float]] = []
    seen = _SEEN
    for text in texts:
        vt = seen.get(text)
        if vt is None:
            vt = version_and_time(text)
            if len(seen) >= SEEN_MAX:
                seen.clear()
            seen[text] = vt
        versions.append(vt[0])
        times.append(vt[1])
    return versions, times


# --- what every driver can send: checked only for a batch that failed -----------------------


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
            return f"is outside the signed 64-bit range: {_digits(value)}"
    elif t is float:
        if not math.isfinite(value):
            return f"is not a finite number: {value!r}"
    elif value is not None and t is not bool:
        return f"is not a scalar: {_what(value)}"
    return None


def row_problem(columns: Sequence[str], row: Row) -> Optional[str]:
    """The first value of ``row`` no dialect can store, as ``"<column> <problem>"``."""
    for name, value in zip(columns, row):
        problem = value_problem(value)
        if problem is not None:
            return f"{name} {problem}"
    return None


def _what(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _digits(value: int) -> str:
    return str(value) if value.bit_length() <= 256 else f"an integer of {value.bit_length()} bits"
