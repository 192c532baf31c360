"""A log entry as the syncers see it: :class:`Event` and the hook arguments built from it.

The header is decoded when the event is made; ``state`` is decoded only for a hook that asks
for it, once per event however many syncers of this process ask.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from sectorhooks_spec import AllocatedSector, SectorID, SectorState, SyncerInstance, Workspace, dumps, loads

from .format import HOOKS, Header, decode_header, encode_entry, import_header, split_entry


class Event:
    """One decoded log entry; hook arguments are built on demand (see :func:`caller`)."""

    __slots__ = ("_sid", "_states", "header", "raw", "seq", "states_json")

    def __init__(self, seq: int, raw: bytes):
        self.seq = seq
        self.raw = raw
        line, self.states_json = split_entry(raw)
        try:
            self.header: Header = decode_header(line)
        except ValueError as exc:
            raise ValueError(f"log entry {seq}: {exc}") from None
        if not self.states_json and self.header.get("e") == "init":
            self.states_json = fresh_states_json(self.header)
        self._states: Optional[List[SectorState]] = None
        self._sid: Optional[SectorID] = None

    @classmethod
    def synthetic_import(cls, state_json: str, workspace: Workspace, sector: SectorID, version: int) -> Event:
        """An import event (override) for ``sync backfill``: the current state of one sector."""
        return cls(0, encode_entry(import_header(sector, version, workspace, True), [state_json]))

    @property
    def kind(self) -> str:
        return self.header["e"]  # type: ignore[no-any-return]

    @property
    def hook(self) -> str:
        return HOOKS[self.header["e"]]

    def changes(self) -> List[Tuple[str, int]]:
        """``(str(sector_id), version)`` of every sector this event changes."""
        h = self.header
        if h["e"] == "init":
            return [(str(SectorID(m, n)), v) for (m, n, _), v in zip(h["a"], h["vs"])]
        return [(str(SectorID(*h["s"])), h["v"])]

    def sector_id(self) -> SectorID:
        """The sector of a one-sector event."""
        if self._sid is None:
            self._sid = SectorID(*self.header["s"])
        return self._sid

    def allocated(self) -> List[AllocatedSector]:
        """The sectors of an init, with their proof types."""
        return [AllocatedSector(SectorID(m, n), p) for m, n, p in self.header["a"]]

    def states(self) -> List[SectorState]:
        if self._states is None:
            self._states = [loads(SectorState, s) for s in self.states_json]
        return self._states

    def fields(self) -> Dict[str, Any]:
        """``OnUpdate``'s ``fields``: name -> new JSON value, taken from the state line."""
        names = self.header.get("k", ())
        if not names:
            return {}
        data = json.loads(self.states_json[0])
        return {name: data[name] for name in names}

    def args(self, argnames: Sequence[str], syncer: SyncerInstance) -> List[Any]:
        """Positional arguments for an impl taking ``argnames``."""
        return [_getter(name)(self, syncer) for name in argnames]


def fresh_states_json(header: Header) -> List[str]:
    """The state lines of an init entry written without them (the state manager stores a fresh
    state once, in the KV, not again in the log): ``codec.dumps`` of each fresh
    ``SectorState(id, sector_type, version, updated_at=t)``, the text the KV got.

    The text after ``"sector_type":P,`` is the same for every sector of the entry (defaults, the
    version and the time), so it is built once and checked against ``dumps`` of the first and
    the last sector; when either differs, every line is ``dumps`` of its own state."""
    t = header["t"]
    items = [(m, n, p, v) for (m, n, p), v in zip(header["a"], header["vs"])]

    def full(m: int, n: int, p: int, v: int) -> str:
        return dumps(SectorState(id=SectorID(m, n), sector_type=p, version=v, updated_at=t))

    def head(m: int, n: int, p: int) -> str:
        return f'{{"id":{{"miner":{m},"number":{n}}},"sector_type":{p},'

    if not items or len({v for *_, v in items}) != 1:
        return [full(*it) for it in items]
    first, last = items[0], items[-1]
    text = full(*first)
    start = head(*first[:3])
    if not text.startswith(start):
        return [full(*it) for it in items]
    rest = text[len(start) :]
    if head(*last[:3]) + rest != full(*last):
        return [full(*it) for it in items]
    return [head(m, n, p) + rest for m, n, p, _ in items]


class BrokenEvent:
    """A log entry that cannot be decoded; it fails like a raising hook (and is dead-lettered)."""

    __slots__ = ("error", "raw", "seq")

    def __init__(self, seq: int, raw: bytes, error: Exception):
        self.seq, self.raw, self.error = seq, raw, error


class RawEntry:
    """A log entry not decoded: what a dispatcher hands to a worker process as it is."""

    __slots__ = ("raw", "seq")

    def __init__(self, seq: int, raw: bytes):
        self.seq, self.raw = seq, raw


AnyEvent = Union[Event, BrokenEvent]


def parse(seq: int, raw: bytes) -> AnyEvent:
    """An :class:`Event`, or a :class:`BrokenEvent` for an entry that does not parse."""
    try:
        return Event(seq, raw)
    except Exception as exc:
        return BrokenEvent(seq, raw, exc)


def decoded(entry: Any) -> Any:
    """``entry`` as an :class:`Event` (or :class:`BrokenEvent`), decoding a :class:`RawEntry`."""
    return parse(entry.seq, entry.raw) if isinstance(entry, RawEntry) else entry


# --- hook arguments ---------------------------------------------------------------------------------

Getter = Callable[[Event, SyncerInstance], Any]

#: Hook argument name -> its value for an event and a syncer instance.
ARGS: Dict[str, Getter] = {
    "syncer": lambda ev, syncer: syncer,
    "workspace": lambda ev, syncer: Workspace(ev.header["w"]),
    "override": lambda ev, syncer: bool(ev.header.get("o", False)),
    "fields": lambda ev, syncer: ev.fields(),
    "state_json": lambda ev, syncer: ev.states_json[0],
    "states_json": lambda ev, syncer: list(ev.states_json),  # a hook may keep or change its list
    "state": lambda ev, syncer: ev.states()[0],
    "states": lambda ev, syncer: list(ev.states()),
    "sector_id": lambda ev, syncer: ev.sector_id(),
    "sectors": lambda ev, syncer: ev.allocated(),
}
#: The argument names a sync hook may take.
ARG_NAMES = tuple(ARGS)

Caller = Callable[[Callable[..., Any], Event, SyncerInstance], Any]


def _getter(name: str) -> Getter:
    try:
        return ARGS[name]
    except KeyError:
        known = ", ".join(ARG_NAMES)
        raise KeyError(f"{name!r} is not an argument of a sync hook (one of: {known})") from None


def caller(argnames: Sequence[str]) -> Caller:
    """``call(fn, ev, syncer)``: ``fn`` called with the arguments ``argnames`` name (build it once
    per hook; an unknown name is a ``KeyError`` naming it)."""
    getters = [_getter(name) for name in argnames]

    def call(fn: Callable[..., Any], ev: Event, syncer: SyncerInstance) -> Any:
        return fn(*[get(ev, syncer) for get in getters])

    return call
