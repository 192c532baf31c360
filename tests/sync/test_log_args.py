"""Hook arguments built from a log entry: the generated per-signature callers give every hook
exactly what the entry says (the dispatcher's per-event path)."""

from __future__ import annotations

from typing import Any, List

import pytest

from sectorhooks.changelog import ARG_NAMES, Event, caller, encode_entry
from sectorhooks_spec import (
    AllocatedSector,
    LatestState,
    SectorID,
    SectorState,
    SyncerInstance,
    Workspace,
    dumps,
    loads,
)

SYNCER = SyncerInstance("mirror", "sqlsync", {"url": "sqlite://"})
_LATEST_JSON = {"state": "PC1", "prev_state": "AddPiece", "event": "ev", "worker": "w1", "failure": None}


def _state(n: int, version: int, **fields: Any) -> SectorState:
    return SectorState(SectorID(1000, n), sector_type=8, version=version, updated_at=1.5, **fields)


def _update() -> Event:
    new = _state(7, 3, latest_state=LatestState("PC1", "AddPiece", "ev", "w1"))
    header = {"e": "update", "s": [1000, 7], "v": 3, "w": "offline", "k": ["latest_state"], "t": 1.5}
    return Event(11, encode_entry(header, [dumps(new)]))


def _init() -> Event:
    states = [_state(1, 1), _state(2, 1)]
    header = {"e": "init", "a": [[1000, 1, 8], [1000, 2, 9]], "vs": [1, 1], "w": "online", "t": 1.5}
    return Event(12, encode_entry(header, [dumps(s) for s in states]))


def _record(*args: Any) -> List[Any]:
    return list(args)


def test_an_update_gives_each_argument_what_the_entry_says() -> None:
    ev = _update()
    text = ev.states_json[0]
    call = caller(["syncer", "sector_id", "workspace", "fields", "state_json", "state"])
    got = call(_record, ev, SYNCER)
    assert got == [
        SYNCER,
        SectorID(1000, 7),
        Workspace.OFFLINE,
        {"latest_state": _LATEST_JSON},
        text,
        loads(SectorState, text),
    ]
    assert got[2] is Workspace.OFFLINE  # the enum, not its string


def test_an_init_gives_its_sectors_and_states_as_fresh_lists() -> None:
    ev = _init()
    got = caller(["sectors", "states_json", "states", "workspace"])(_record, ev, SYNCER)
    assert got[0] == [AllocatedSector(SectorID(1000, 1), 8), AllocatedSector(SectorID(1000, 2), 9)]
    assert got[1] == ev.states_json and got[1] is not ev.states_json  # a hook may keep or change it
    assert [s.id.number for s in got[2]] == [1, 2]
    assert got[3] is Workspace.ONLINE


def test_an_import_says_whether_it_overrode() -> None:
    header = {"e": "import", "s": [1000, 4], "v": 2, "w": "online", "o": True, "t": 1.5}
    ev = Event(13, encode_entry(header, [dumps(_state(4, 2))]))
    assert caller(["override", "sector_id"])(_record, ev, SYNCER) == [True, SectorID(1000, 4)]
    plain = Event(14, encode_entry({**header, "o": False}, [dumps(_state(4, 3))]))
    assert caller(["override"])(_record, plain, SYNCER) == [False]


def _expected(name: str, ev: Event) -> Any:
    """Each argument, written out by hand from what ``_update``/``_init`` put in the entry."""
    return {
        "syncer": SYNCER,
        "workspace": Workspace.OFFLINE,
        "override": False,
        "fields": {"latest_state": _LATEST_JSON},
        "state_json": ev.states_json[0],
        "states_json": ev.states_json,
        "state": _state(7, 3, latest_state=LatestState("PC1", "AddPiece", "ev", "w1")),
        "states": [_state(1, 1), _state(2, 1)],
        "sector_id": SectorID(1000, 7),
        "sectors": [AllocatedSector(SectorID(1000, 1), 8), AllocatedSector(SectorID(1000, 2), 9)],
    }[name]


@pytest.mark.parametrize("name", ARG_NAMES)
def test_each_argument_alone_and_through_event_args(name: str) -> None:
    ev = _init() if name in ("sectors", "states", "states_json") else _update()
    want = _expected(name, ev)
    assert caller([name])(_record, ev, SYNCER) == [want]
    assert ev.args([name, "syncer"], SYNCER) == [want, SYNCER]


def test_an_unknown_argument_name_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="colour"):
        caller(["syncer", "colour"])
