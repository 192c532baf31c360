"""A state's JSON as the values of a ``sectors`` row, read without building a ``SectorState``.

``sectors`` has a column for every top-level scalar field of :class:`SectorState` (so a field
added to ``SectorState`` becomes a column) and for a few nested "main fields" (:data:`NESTED`).
The plain builder is ``json.loads``; with ``msgspec`` installed, ``msgspec_rows.py`` gives the
same values faster (both are tested against each other).
"""

from __future__ import annotations

import json
import typing
from typing import Any, Callable, List, Optional, Sequence, Tuple

import attrs

from sectorhooks_spec import SectorState

#: Nested main fields worth a column: latest_state.state (as state_name, "" when there is none),
#: pre.comm_r, pre.comm_d, message_info.pre_commit_cid and message_info.commit_cid.
NESTED = ("state_name", "comm_r", "comm_d", "pre_commit_cid", "commit_cid")
_RESERVED = frozenset({"miner", "number", "workspace", "state_json", *NESTED})
_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}

#: ``json.loads`` less its checks for text around the document (the host's ``state_json`` is one
#: JSON object, nothing before or after it): x1.04 on bench_sqlsync's json row, 5 alternating pairs.
_decode_state = json.JSONDecoder().raw_decode

Row = Tuple[Any, ...]
#: ``row(miner, number, workspace, state_json)``: a ``sectors`` row in column order.
RowBuilder = Callable[[int, int, str, str], Row]


def scalar_fields(cls: type = SectorState) -> Tuple[Tuple[str, str], ...]:
    """(name, kind) of every top-level field of ``cls`` whose type is a (optional) scalar."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in attrs.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        if typing.get_origin(tp) is typing.Union and len(args) == 2 and type(None) in args:
            tp = args[0] if args[1] is type(None) else args[1]
        kind = _SCALARS.get(tp)
        if kind is not None and f.name not in _RESERVED:
            out.append((f.name, kind))
    return tuple(out)


def row_builder(scalars: Sequence[Tuple[str, str]], decoder: str = "auto") -> RowBuilder:
    """The ``sectors`` row builder: miner, number, workspace, the :data:`NESTED` fields,
    ``scalars``, state_json. ``decoder``: ``"json"``, ``"msgspec"`` or ``"auto"`` (msgspec if installed).
    """
    names = tuple(n for n, _ in scalars)
    if decoder != "json":
        try:
            from .msgspec_rows import msgspec_row_builder
        except ImportError:
            if decoder == "msgspec":
                raise
        else:
            return msgspec_row_builder(names)
    return json_row_builder(names)


def json_row_builder(names: Sequence[str]) -> RowBuilder:
    """The plain row builder: ``json.loads``, then pick the columns' values."""

    def row(miner: int, number: int, workspace: str, state_json: str) -> Row:
        d = _decode_state(state_json)[0]
        ls, pre, mi = d.get("latest_state") or {}, d.get("pre") or {}, d.get("message_info") or {}
        return (
            miner,
            number,
            workspace,
            ls.get("state", ""),
            pre.get("comm_r"),
            pre.get("comm_d"),
            mi.get("pre_commit_cid"),
            mi.get("commit_cid"),
            *map(d.get, names),  # .get: a state written before a field existed has none
            state_json,
        )

    return row


def version_and_time(state_json: str) -> Tuple[int, Optional[float]]:
    """(version, updated_at) of a serialized state."""
    d = json.loads(state_json)
    return int(d["version"]), d.get("updated_at")


def versions_and_times(texts: Sequence[str]) -> Tuple[List[int], List[Optional[float]]]:
    """:func:`version_and_time` of each text."""
    pairs = [version_and_time(text) for text in texts]
    return [v for v, _ in pairs], [t for _, t in pairs]
