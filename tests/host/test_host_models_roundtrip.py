"""Every SPI model survives a JSON round trip unchanged (hypothesis, every field generated)."""

from __future__ import annotations

import enum
import json
import sys
import typing
from typing import Any, Dict, Type

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sectorhooks_spec import (
    INT64_MAX,
    INT64_MIN,
    AllocatedSector,
    DecodeError,
    InstanceInfo,
    LatestState,
    MessageInfo,
    Piece,
    PreCommitInfo,
    ProofInfo,
    Rejected,
    SectorID,
    SectorState,
    Seed,
    StoreConfig,
    SyncerInstance,
    TerminateInfo,
    Ticket,
    UpgradedInfo,
    dumps,
    from_jsonable,
    loads,
    to_jsonable,
)
from sectorhooks_spec.manifest import Export, Manifest
from sectorhooks_spec.sector import int64, non_negative


def int_bounds(owner: type, field: str) -> Dict[str, int]:
    """The range the SPI declares for an int field (its validator), none if it declares none."""
    if not attrs.has(owner):
        return {}
    validator = attrs.fields_dict(owner)[field].validator
    if validator is non_negative:
        return {"min_value": 0, "max_value": INT64_MAX}
    if validator is int64:
        return {"min_value": INT64_MIN, "max_value": INT64_MAX}
    return {}


JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def strategy_for(tp: Any, owner: type = object, field: str = "") -> st.SearchStrategy:
    """A strategy for every value of type ``tp`` the codec promises to round-trip."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return JSON_VALUES
    if origin is typing.Union:
        (inner,) = [a for a in args if a is not type(None)]
        return st.none() | strategy_for(inner, owner, field)
    if origin is tuple:
        return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
    if origin in (dict, typing.Mapping) or getattr(origin, "__name__", "") == "Mapping":
        return st.dictionaries(st.text(max_size=10), strategy_for(args[1]), max_size=3)
    if isinstance(tp, type) and attrs.has(tp):
        return full_builds(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(**int_bounds(owner, field))
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is str:
        return st.text(max_size=20)
    raise TypeError(f"no strategy for {tp!r}")


def full_builds(cls: type) -> st.SearchStrategy:
    """``st.builds`` with an explicit strategy for every field, defaults included."""
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    fields = {f.name: strategy_for(hints[f.name], cls, f.name) for f in attrs.fields(cls) if f.init}
    return st.builds(cls, **fields)


MODELS: Dict[str, Type[Any]] = {
    cls.__name__: cls
    for cls in [
        SectorID,
        Ticket,
        Seed,
        Piece,
        PreCommitInfo,
        ProofInfo,
        MessageInfo,
        TerminateInfo,
        LatestState,
        UpgradedInfo,
        SectorState,
        AllocatedSector,
        StoreConfig,
        InstanceInfo,
        SyncerInstance,
        Rejected,
        Export,
        Manifest,
    ]
}


@pytest.mark.parametrize("name", list(MODELS))
def test_model_round_trips_losslessly_through_json(name: str) -> None:
    cls = MODELS[name]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(full_builds(cls))
    def check(obj: Any) -> None:
        text = dumps(obj)
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
        back = loads(cls, text)
        assert back == obj
        assert type(back) is cls
        assert dumps(back) == text
        assert from_jsonable(cls, to_jsonable(obj)) == obj

    check()


@settings(max_examples=60, deadline=None)
@given(full_builds(SectorState))
def test_sector_state_round_trip_keeps_every_field(state: SectorState) -> None:
    back = loads(SectorState, dumps(state))
    for f in attrs.fields(SectorState):
        assert getattr(back, f.name) == getattr(state, f.name), f.name
    assert back.state_name == state.state_name


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"id": {"miner": 1, "number": 2}, "colour": 1}, "SectorState: unknown field(s) ['colour']"),
        ({}, "SectorState: missing field(s) ['id']"),
        ({"id": {"miner": 1, "number": "2"}}, "SectorState.id.number: expected an integer"),
        ({"id": {"miner": 1, "number": 2}, "version": -1}, "version must be >= 0"),
        ({"id": {"miner": 1, "number": 2}, "pieces": {}}, "SectorState.pieces: expected a list"),
        ({"id": {"miner": 1, "number": 2}, "finalized": 1}, "SectorState.finalized: expected a boolean"),
    ],
)
def test_decoding_bad_data_names_the_field(data: Dict[str, Any], fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        from_jsonable(SectorState, data)
    assert fragment in str(info.value)


def test_decoding_invalid_json_text_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="SectorID: not valid JSON"):
        loads(SectorID, "{nope")


@settings(max_examples=200, deadline=None)
@given(
    full_builds(SectorState),
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.floats(min_value=1e9, max_value=4e9),
        st.sampled_from([0.0, -0.0, 1e-4, 9.9e-5, 1e16, 9.999999999999998e15, 1e-300]),
        st.integers(-(2**70), 2**70),
    ),
)
def test_state_manager_json_is_exactly_codec_dumps(state: SectorState, updated_at: Any) -> None:
    """The state manager's encoder (msgspec where it spells alike) gives exactly ``codec.dumps``."""
    from sectorhooks.state.txn import to_json

    data = to_jsonable(state)
    assert to_json(data) == dumps(state)
    data["updated_at"] = updated_at  # every float spelling, in and out of the fast range
    assert to_json(data) == dumps(data)  # codec.dumps of the data itself (floats as json spells them)
