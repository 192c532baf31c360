"""The state manager's changed copy is plain ``attrs.evolve``: the SPI's validators and converters
run on it as on any other instance, and checking and copying keep nothing in module caches."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Dict, Iterator

import attrs
import pytest

from sectorhooks.runtime import Runtime
from sectorhooks.state import COLLECTIONS, fields
from sectorhooks.state.fields import check_fields, evolve_checked
from sectorhooks_spec import (
    INT64_MAX,
    LatestState,
    MessageInfo,
    Piece,
    PreCommitInfo,
    ProofInfo,
    SectorState,
    Seed,
    TerminateInfo,
    Ticket,
    UpgradedInfo,
    ValueOutOfBounds,
    Workspace,
    dumps,
    loads,
    to_jsonable,
)
from sectorhooks_spec.sector import UPDATABLE_FIELDS
from sync.helpers import make_config, open_runtime, sid

#: A valid value for every field ``update`` may change (a new updatable field must be added here).
SAMPLES: Dict[str, Any] = {
    "sector_type": 8,
    "ticket": Ticket("ab" * 4, 7),
    "seed": Seed("cd" * 4, 9),
    "pieces": (Piece("bafy", 2048, deal_id=5), Piece("bafz", 2048, offset=2048)),
    "pre": PreCommitInfo("comm-r", "comm-d"),
    "proof": ProofInfo("00ff"),
    "message_info": MessageInfo("pc-cid", None, True),
    "terminate_info": TerminateInfo("t-cid", 100, 90),
    "latest_state": LatestState("PC1", "Empty", "ev", "w1", None),
    "finalized": True,
    "removed": True,
    "abort_reason": "tickét expired",
    "upgraded": True,
    "upgraded_info": UpgradedInfo("u-cid", "s-cid", "p"),
    "upgrade_message_id": "msg",
    "upgrade_landed_epoch": 12,
    "imported": True,
    "need_rebuild": True,
    "unsealing": True,
}


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with open_runtime(make_config(tmp_path, plugins=()), start_sync=False) as runtime:
        yield runtime


def test_samples_cover_every_updatable_field() -> None:
    assert set(SAMPLES) == UPDATABLE_FIELDS


def test_the_copy_is_attrs_evolve_with_version_and_time_set() -> None:
    old = SectorState(sid(1), sector_type=8, version=3, updated_at=1.0)
    values: Dict[str, Any] = {"latest_state": LatestState("PC1"), "ticket": Ticket("ab", 7)}
    new = evolve_checked(old, values, 4, 12.5)
    assert new == attrs.evolve(old, version=4, updated_at=12.5, **values)
    assert (old.version, old.updated_at, old.ticket) == (3, 1.0, None)  # the old state is untouched


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_updatable_field_is_checked_then_copied_as_given(name: str) -> None:
    values, jsonable = check_fields(sid(1), {name: SAMPLES[name]})
    new = evolve_checked(SectorState(sid(1), version=1), values, 2, 3.5)
    assert getattr(new, name) == SAMPLES[name]
    assert to_jsonable(new)[name] == jsonable[name]  # what the log carries is what was copied
    assert (new.version, new.updated_at) == (2, 3.5)


def test_the_copy_runs_the_models_converters() -> None:
    new = evolve_checked(SectorState(sid(1)), {"pieces": [Piece("bafy", 2048)]}, 1, 0.0)
    assert new.pieces == (Piece("bafy", 2048),)


@pytest.mark.parametrize(
    ("values", "version", "now", "field"),
    [
        ({}, INT64_MAX + 1, 0.0, "version"),
        ({}, 1, float("inf"), "updated_at"),
        ({"sector_type": -1}, 1, 0.0, "sector_type"),
        ({"abort_reason": "\ud800"}, 1, 0.0, "abort_reason"),
    ],
)
def test_the_copy_runs_the_models_validators(
    values: Dict[str, Any], version: int, now: float, field: str
) -> None:
    with pytest.raises(ValueOutOfBounds) as info:
        evolve_checked(SectorState(sid(1)), values, version, now)
    assert info.value.field == field


def test_update_returns_and_stores_the_evolved_state(rt: Runtime) -> None:
    old = rt.state.import_sector(SectorState(sid(1), sector_type=8))
    new = rt.state.update(sid(1), **SAMPLES)
    assert new == attrs.evolve(old, version=old.version + 1, updated_at=new.updated_at, **SAMPLES)
    raw = rt.kv.open_collection(COLLECTIONS[Workspace.ONLINE]).get(sid(1).key.encode())
    assert loads(SectorState, raw.decode()) == new and raw.decode() == dumps(new)


def test_checking_and_copying_generate_no_code_and_leave_no_module_state(rt: Runtime) -> None:
    source = inspect.getsource(fields)
    assert "exec(" not in source and "compile(" not in source
    tables = {name: value for name, value in vars(fields).items() if isinstance(value, (dict, list, set))}
    sizes = {name: len(value) for name, value in tables.items()}
    rt.state.import_sector(SectorState(sid(1)))
    for n in range(3):
        rt.state.update(sid(1), latest_state=LatestState(f"S{n}"), pieces=[Piece("b", n)])
    assert {name: len(value) for name, value in tables.items()} == sizes
