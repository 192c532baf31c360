"""Validation of the values the state manager is given, and the copy that applies updates.

Values are checked the way the codec will decode them (so the KV never holds a state that
cannot be read back) and against the SPI's bounds (``sectorhooks_spec.check_storable``: what
every sink can store), before the change is queued: the group's leader only copies.
"""

from __future__ import annotations

import sys
import typing
from typing import Any, Callable, Dict, FrozenSet, List, Tuple, Union

import attrs

from sectorhooks_spec import (
    INT64_MAX,
    AllocatedSector,
    DecodeError,
    SectorID,
    SectorState,
    ValueOutOfBounds,
    check_storable,
    to_jsonable,
)
from sectorhooks_spec.sector import UPDATABLE_FIELDS, non_negative

from ..errors import SectorValueError

_STATE_FIELDS = tuple(f.name for f in attrs.fields(SectorState))
Copier = Callable[[SectorState, Dict[str, Any], int, float], SectorState]
_COPIERS: Dict[Tuple[str, ...], Copier] = {}  # changed field names -> their copier


def evolve_checked(state: SectorState, values: Dict[str, Any], version: int, now: float) -> SectorState:
    """``attrs.evolve`` without running validators again: ``values`` were checked (and
    normalized) by ``check_fields`` before the change was queued, so this is only copying."""
    names = tuple(values)
    copier = _COPIERS.get(names)
    if copier is None:
        copier = _copier(names)
        if len(_COPIERS) < 1024:  # combinations of updatable fields: few in practice
            _COPIERS[names] = copier
    return copier(state, values, version, now)


def _copier(changed: Tuple[str, ...]) -> Copier:
    """A function copying a state with the ``changed`` fields taken from ``values``: one
    straight line per field (as attrs writes its ``__init__``), no loop, no lookups by name.
    Each field is set through its slot's own descriptor, which costs less than half of
    ``object.__setattr__`` (the frozen class refuses plain assignment)."""
    scope: Dict[str, Any] = {"new_": object.__new__, "SectorState": SectorState}
    lines = ["def copy(state, values, version, now):", "    new = new_(SectorState)"]
    for i, name in enumerate(_STATE_FIELDS):
        if name == "version":
            value = "version"
        elif name == "updated_at":
            value = "now"
        elif name in changed:
            value = f"values[{name!r}]"
        else:
            value = f"state.{name}"
        slot = SectorState.__dict__.get(name)
        if type(slot).__name__ == "member_descriptor":
            scope[f"set_{i}"] = slot.__set__  # type: ignore[union-attr]
            lines.append(f"    set_{i}(new, {value})")
        else:  # pragma: no cover - a field that is not a slot of SectorState itself
            scope["setattr_"] = object.__setattr__
            lines.append(f"    setattr_(new, {name!r}, {value})")
    lines.append("    return new")
    exec(compile("\n".join(lines), f"<evolve_checked {','.join(changed)}>", "exec"), scope)
    return scope["copy"]  # type: ignore[no-any-return]


def check_fields(sid: SectorID, fields: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Validate ``update`` fields before queueing: known names, right types (checked the way the
    codec will decode them, so the KV never holds a state that cannot be read back), values in
    the SPI's bounds; a :class:`SectorValueError` names the sector and the field."""
    if not isinstance(sid, SectorID):
        raise SectorValueError(f"update needs a SectorID, got {type(sid).__name__} {sid!r:.60}")
    check_sector_id(sid, "update")
    if not fields:
        raise SectorValueError(f"update of {sid} names no fields", sid)
    values: Dict[str, Any] = {}
    jsonable: Dict[str, Any] = {}
    for name, value in fields.items():
        check = _CHECKERS.get(name)
        if check is None:
            raise SectorValueError(
                f"update of {sid}: unknown or read-only field {name!r}; "
                f"updatable: {', '.join(sorted(UPDATABLE_FIELDS))}",
                sid,
                name,
            )
        try:
            values[name] = value = check(value, name)
            if name in _NON_NEGATIVE:
                non_negative(None, _FIELDS[name], value)
            check_storable(value, name)
            jsonable[name] = to_jsonable(value)
        except ValueOutOfBounds as exc:
            raise SectorValueError(f"update of {sid}: {exc}", sid, exc.field) from None
        except (TypeError, DecodeError) as exc:
            raise SectorValueError(f"update of {sid}: {exc}", sid, name) from None
    return values, jsonable


def check_sector_id(sid: SectorID, what: str) -> None:
    """Bounds of a sector id (an instance built with validators off could hold anything)."""
    m, n = sid.miner, sid.number
    if type(m) is int and type(n) is int and 0 <= m <= INT64_MAX and 0 <= n <= INT64_MAX:
        return
    try:
        check_storable(sid, "id")
    except ValueOutOfBounds as exc:
        raise SectorValueError(f"{what}: sector {exc}", None, exc.field) from None
    raise SectorValueError(f"{what}: sector id of the wrong types: {sid!r:.80}")


def check_state(state: Any, what: str = "import_sector") -> SectorState:
    """A whole state, as ``import_sector`` is given it: of the right types through and through
    (nested models, tuples) and within the SPI's bounds; returns it normalized (lists to tuples)."""
    if type(state) is not SectorState:
        raise SectorValueError(f"{what} needs a SectorState, got {type(state).__name__}")
    sid = state.id if type(state.id) is SectorID else None
    try:
        checked = _STATE(state, "state")
        check_storable(checked, "state")
    except ValueOutOfBounds as exc:
        raise SectorValueError(f"{what} of {sid}: {exc}", sid, exc.field) from None
    except (TypeError, DecodeError) as exc:
        raise SectorValueError(f"{what} of {sid}: {exc}", sid) from None
    return checked  # type: ignore[no-any-return]


def check_allocated(allocated: Any) -> AllocatedSector:
    """One ``init_sectors`` item: an ``AllocatedSector`` of the right types, within bounds."""
    if type(allocated) is not AllocatedSector:
        raise SectorValueError(
            f"init_sectors needs AllocatedSector items, got {type(allocated).__name__} {allocated!r:.60}"
        )
    sid = allocated.id if type(allocated.id) is SectorID else None
    try:
        checked = _ALLOCATED(allocated, "sector")
        check_storable(checked, "sector")
    except ValueOutOfBounds as exc:
        raise SectorValueError(f"init_sectors of {sid}: {exc}", sid, exc.field) from None
    except (TypeError, DecodeError) as exc:
        raise SectorValueError(f"init_sectors of {sid}: {exc}", sid) from None
    return checked  # type: ignore[no-any-return]


Checker = Callable[[Any, str], Any]
_PLAIN_KINDS: Dict[Any, Tuple[type, ...]] = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}


def _unchanged(tp: Any) -> FrozenSet[type]:
    """The types whose values ``_checker(tp)`` accepts and returns as they are (the checker
    need not run for them): ``str`` for ``str``, also ``NoneType`` for an ``Optional`` of it."""
    if typing.get_origin(tp) is Union:
        args = typing.get_args(tp)
        if len(args) == 2 and type(None) in args:
            return _unchanged(next(a for a in args if a is not type(None))) | {type(None)}
        return frozenset()
    if tp in _PLAIN_KINDS:
        return frozenset({float} if tp is float else _PLAIN_KINDS[tp])
    return frozenset()


def _checker(tp: Any) -> Checker:
    """A validator (returning the normalized value) for one field type of ``SectorState``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        inner = _checker(next(a for a in args if a is not type(None)))
        return lambda v, where: None if v is None else inner(v, where)
    if origin in (tuple, Tuple):
        item = _checker(args[0])

        def check_tuple(v: Any, where: str) -> Any:
            if not isinstance(v, (tuple, list)):
                raise DecodeError(f"{where}: expected a tuple, got {type(v).__name__}")
            out = tuple(item(x, f"{where}[{i}]") for i, x in enumerate(v))
            return v if type(v) is tuple and all(a is b for a, b in zip(out, v)) else out

        return check_tuple
    if isinstance(tp, type) and attrs.has(tp):
        hints = typing.get_type_hints(tp, vars(sys.modules[tp.__module__]))
        names = [f.name for f in attrs.fields(tp)]
        fields: List[Tuple[str, Checker, FrozenSet[type]]] = []

        def check_model(v: Any, where: str) -> Any:
            if type(v) is not tp:
                raise DecodeError(f"{where}: expected {tp.__name__}, got {type(v).__name__} {v!r:.60}")
            if not fields:  # built on first use: models may refer to each other
                fields.extend((n, _checker(hints[n]), _unchanged(hints[n])) for n in names)
            changed = {}
            for name, check, fine in fields:
                value = getattr(v, name)
                if type(value) in fine:  # a plain value of the right type: nothing to check or fix
                    continue
                fixed = check(value, f"{where}.{name}")
                if fixed is not value:
                    changed[name] = fixed
            return attrs.evolve(v, **changed) if changed else v  # type: ignore[misc]

        return check_model
    kinds = _PLAIN_KINDS[tp]

    def check_plain(v: Any, where: str) -> Any:
        if type(v) not in kinds:
            raise DecodeError(f"{where}: expected {tp.__name__}, got {type(v).__name__} {v!r:.60}")
        return float(v) if tp is float and type(v) is int else v

    return check_plain


_HINTS = typing.get_type_hints(SectorState, vars(sys.modules[SectorState.__module__]))
_CHECKERS: Dict[str, Checker] = {name: _checker(_HINTS[name]) for name in UPDATABLE_FIELDS}
_FIELDS = {f.name: f for f in attrs.fields(SectorState)}
_NON_NEGATIVE = frozenset(name for name, f in _FIELDS.items() if f.validator is non_negative)
_STATE = _checker(SectorState)
_ALLOCATED = _checker(AllocatedSector)
