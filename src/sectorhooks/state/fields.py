"""Validation of the values the state manager is given, and the copy that applies updates.

Values are checked the way the codec will decode them (so the KV never holds a state that
cannot be read back) and against the SPI's bounds (the models' attrs validators and
``sectorhooks_spec.check_storable``: what every sink can store), before the change is queued:
a bad value fails its own call, never the group it would have joined.
"""

from __future__ import annotations

import functools
import sys
import typing
from typing import Any, Callable, Dict, List, Tuple, Union

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
from sectorhooks_spec.sector import UPDATABLE_FIELDS

from ..errors import SectorValueError


def evolve_checked(state: SectorState, values: Dict[str, Any], version: int, now: float) -> SectorState:
    """``state`` with ``values`` (checked by :func:`check_fields`), ``version`` and ``now`` set:
    ``attrs.evolve``, so the SPI's validators run on the copy as on any other instance."""
    return attrs.evolve(state, version=version, updated_at=now, **values)


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
        if name not in UPDATABLE_FIELDS:
            raise SectorValueError(
                f"update of {sid}: unknown or read-only field {name!r}; "
                f"updatable: {', '.join(sorted(UPDATABLE_FIELDS))}",
                sid,
                name,
            )
        field = getattr(attrs.fields(SectorState), name)
        try:
            values[name] = value = _checker(_hints(SectorState)[name])(value, name)
            if field.validator is not None:  # the field's own bounds (non-negative, UTF-8, finite)
                field.validator(None, field, value)
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
        checked = _checker(SectorState)(state, "state")
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
        checked = _checker(AllocatedSector)(allocated, "sector")
        check_storable(checked, "sector")
    except ValueOutOfBounds as exc:
        raise SectorValueError(f"init_sectors of {sid}: {exc}", sid, exc.field) from None
    except (TypeError, DecodeError) as exc:
        raise SectorValueError(f"init_sectors of {sid}: {exc}", sid) from None
    return checked  # type: ignore[no-any-return]


Checker = Callable[[Any, str], Any]
_PLAIN_KINDS: Dict[Any, Tuple[type, ...]] = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}


@functools.cache
def _hints(cls: Any) -> Dict[str, Any]:
    """A model's field types, resolved (its module says ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


@functools.cache
def _checker(tp: Any) -> Checker:
    """A validator (returning the normalized value) for one field type of the sector models,
    made once per type on first use."""
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
        model: Any = tp  # a class: hashable, whatever mypy infers of it here
        names = [f.name for f in attrs.fields(tp)]
        fields: List[Tuple[str, Checker]] = []

        def check_model(v: Any, where: str) -> Any:
            if type(v) is not tp:
                raise DecodeError(f"{where}: expected {tp.__name__}, got {type(v).__name__} {v!r:.60}")
            if not fields:  # on first use: a model may refer to one defined after it
                hints = _hints(model)
                fields.extend((n, _checker(hints[n])) for n in names)
            changed = {}
            for name, check in fields:
                value = getattr(v, name)
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
