"""SectorStateManager: the only writer of sector state, with its change log, group-committed.

States live in two KV collections, one per workspace (``sectors/online`` while sealing,
``sectors/offline`` once finalized), keyed by ``SectorID.key`` and holding ``codec.dumps(state)``.
Every change bumps the sector's ``version`` and, in the same KV transaction, appends an entry to
the change log (``sync/log``, see :mod:`sectorhooks.sync.log`) that the syncers consume.

Many workers report at once, so calls are group-committed: the first caller that finds no
commit in progress becomes the leader and runs every queued change in one KV transaction; the
others wait and return once that transaction committed. A call that cannot apply (sector
missing, wrong workspace) fails alone; the rest of its group commits.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import typing
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import attrs

from sectorhooks_spec import (
    AllocatedSector,
    DecodeError,
    KVStore,
    SectorID,
    SectorState,
    StoreTxn,
    Workspace,
    from_jsonable,
    to_jsonable,
)
from sectorhooks_spec.sector import UPDATABLE_FIELDS

from .errors import SectorNotFound, SectorStateError
from .sync import log as changelog

__all__ = ["COLLECTIONS", "SectorStateManager"]

COLLECTIONS: Dict[Workspace, str] = {Workspace.ONLINE: "sectors/online", Workspace.OFFLINE: "sectors/offline"}
MAX_GROUP = 512  # changes per KV transaction
GATHER_WAIT = 0.002  # how long a leader waits for as many callers as the last group had
CACHE_SIZE = 2048  # decoded states kept, keyed by their stored bytes

Op = Callable[["_Txn"], Any]


class Current:
    """A sector as stored: workspace, decoded state, and its JSON data (patched for the next one)."""

    __slots__ = ("data", "state", "text", "ws")

    def __init__(self, ws: Workspace, state: SectorState, data: Dict[str, Any], text: str = ""):
        self.ws, self.state, self.data, self.text = ws, state, data, text


class _Request:
    __slots__ = ("done", "error", "op", "result")

    def __init__(self, op: Op):
        self.op = op
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.done = False


def _json(data: Dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)  # exactly codec.dumps


class _Txn:
    """One run of a group's transaction: current states (with this group's writes) and the log."""

    __slots__ = ("_mgr", "_seen", "log", "now", "txn")

    def __init__(self, mgr: SectorStateManager, txn: StoreTxn):
        self._mgr = mgr
        self.txn = txn
        self.log: Optional[changelog.LogWriter] = None
        self._seen: Dict[bytes, Optional[Current]] = {}
        self.now = time.time()

    def current(self, sid: SectorID) -> Optional[Current]:
        key = sid.key.encode()
        if key in self._seen:
            return self._seen[key]
        found: Optional[Current] = None
        for ws, name in COLLECTIONS.items():
            raw = self.txn.collection(name).peek(key)
            if raw is not None:
                found = self._mgr._decode(key, raw, ws)
                break
        self._seen[key] = found
        return found

    def require(self, sid: SectorID) -> Current:
        cur = self.current(sid)
        if cur is None:
            raise SectorNotFound(sid)
        return cur

    def change(
        self, old: Current, ws: Workspace, values: Dict[str, Any], jsonable: Dict[str, Any]
    ) -> Current:
        """Write ``old`` with some fields changed, version bumped, into ``ws``.

        The new JSON is the old JSON data patched (same key order as ``codec.dumps``), so a
        change costs one small ``json.dumps``, not a walk of the whole model.
        """
        version = old.state.version + 1
        state = _evolve(old.state, values, version, self.now)
        data = dict(old.data)
        data.update(jsonable)
        data["version"], data["updated_at"] = version, self.now
        return self.write(old, Current(ws, state, data))

    def write(self, old: Optional[Current], new: Current) -> Current:
        key = new.state.id.key.encode()
        new.text = _json(new.data)
        raw = new.text.encode("utf-8")
        self.txn.collection(COLLECTIONS[new.ws]).put(key, raw)
        if old is not None and old.ws is not new.ws:
            self.txn.collection(COLLECTIONS[old.ws]).delete(key)
        self._seen[key] = new
        self._mgr._remember(key, raw, new)
        return new

    def append(self, header: Union[str, Dict[str, Any]], states: Sequence[Current]) -> int:
        if self.log is None:
            self.log = changelog.LogWriter(self.txn)
        return self.log.append(changelog.encode_entry(header, [c.text for c in states]))


_STATE_FIELDS = tuple(f.name for f in attrs.fields(SectorState))


def _evolve(state: SectorState, values: Dict[str, Any], version: int, now: float) -> SectorState:
    """``attrs.evolve`` without running validators again: ``values`` were checked (and
    normalized) by ``_check_fields`` before the change was queued, so this is only copying."""
    new = object.__new__(SectorState)
    setattr_ = object.__setattr__
    for name in _STATE_FIELDS:
        setattr_(new, name, values[name] if name in values else getattr(state, name))
    setattr_(new, "version", version)
    setattr_(new, "updated_at", now)
    return new


def _sid(sid: SectorID) -> List[int]:
    return [sid.miner, sid.number]


class SectorStateManager:
    """The only writer of sector state; thread-safe, each call durable when it returns."""

    def __init__(self, store: KVStore):
        self.store = store
        for name in COLLECTIONS.values():
            store.open_collection(name)
        self.log = changelog.ChangeLog(store)
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # followers wait here for their group's commit
        self._gather = threading.Condition(lock)  # the leader waits here for more callers
        self._gathering = False
        self._last_group = 1
        self._queue: List[_Request] = []
        self._leader = False
        self._closed = False
        self._cache: Dict[bytes, Tuple[bytes, Current]] = {}
        self._cache_lock = threading.Lock()

    # --- changes --------------------------------------------------------------------------

    def import_sector(
        self, state: SectorState, override: bool = False, workspace: Optional[Workspace] = None
    ) -> SectorState:
        """Import a whole state (offline if finalized, unless ``workspace`` says); returns it as stored."""
        if not isinstance(state, SectorState):
            raise SectorStateError(f"import_sector needs a SectorState, got {type(state).__name__}")
        ws = (
            workspace
            if workspace is not None
            else (Workspace.OFFLINE if state.finalized else Workspace.ONLINE)
        )

        def op(t: _Txn) -> SectorState:
            old = t.current(state.id)
            if old is not None and not override:
                raise SectorStateError(
                    f"sector {state.id} already exists ({old.ws.value}, version {old.state.version}); "
                    "pass override=True to replace it"
                )
            version = max(old.state.version if old else 0, state.version) + 1
            new = attrs.evolve(state, version=version, updated_at=t.now)
            cur = t.write(old, Current(ws, new, to_jsonable(new)))
            header = {"e": "import", "s": _sid(new.id), "v": version, "w": ws.value, "o": old is not None}
            t.append({**header, "t": t.now}, [cur])
            return new

        return self._submit(op)  # type: ignore[no-any-return]

    def init_sectors(self, allocated: Sequence[AllocatedSector]) -> List[SectorState]:
        """Create fresh online states for newly allocated sectors (all or none); one log entry."""
        allocated = list(allocated)
        if not allocated or not all(isinstance(a, AllocatedSector) for a in allocated):
            raise SectorStateError("init_sectors needs a non-empty sequence of AllocatedSector")
        ids = [a.id for a in allocated]
        if len(set(ids)) != len(ids):
            raise SectorStateError("init_sectors got the same sector twice")

        def op(t: _Txn) -> List[SectorState]:
            for a in allocated:
                old = t.current(a.id)
                if old is not None:
                    raise SectorStateError(
                        f"sector {a.id} already exists ({old.ws.value}); cannot init it again"
                    )
            written = []
            for a in allocated:
                st = SectorState(id=a.id, sector_type=a.proof_type, version=1, updated_at=t.now)
                written.append(t.write(None, Current(Workspace.ONLINE, st, to_jsonable(st))))
            header = {
                "e": "init",
                "a": [[a.id.miner, a.id.number, a.proof_type] for a in allocated],
                "vs": [1] * len(allocated),
                "w": Workspace.ONLINE.value,
                "t": t.now,
            }
            t.append(header, written)
            return [c.state for c in written]

        return self._submit(op)  # type: ignore[no-any-return]

    def update(self, sector_id: SectorID, **fields: Any) -> SectorState:
        """Change some fields of a sector (either workspace); returns the new state."""
        values, jsonable = _check_fields(sector_id, fields)

        m, n, names = sector_id.miner, sector_id.number, json.dumps(list(fields))

        def op(t: _Txn) -> SectorState:
            old = t.require(sector_id)
            new = t.change(old, old.ws, values, jsonable)
            # The header by hand: this is the hot path (the field values are in the state line).
            v, w = new.state.version, new.ws.value
            header = f'{{"e":"update","s":[{m},{n}],"v":{v},"w":"{w}","k":{names},"t":{t.now!r}}}'
            t.append(header, [new])
            return new.state

        return self._submit(op)  # type: ignore[no-any-return]

    def finalize(self, sector_id: SectorID) -> SectorState:
        """Mark a sector finalized and move it to the offline workspace."""
        return self._move(sector_id, "finalize", Workspace.ONLINE, Workspace.OFFLINE, {"finalized": True})

    def restore(self, sector_id: SectorID) -> SectorState:
        """Move a finalized sector back to the online workspace (e.g. to rebuild it)."""
        return self._move(sector_id, "restore", Workspace.OFFLINE, Workspace.ONLINE, {})

    def _move(
        self, sid: SectorID, event: str, src: Workspace, dst: Workspace, changes: Dict[str, Any]
    ) -> SectorState:
        def op(t: _Txn) -> SectorState:
            old = t.require(sid)
            if old.ws is not src:
                raise SectorStateError(f"cannot {event} sector {sid}: it is {old.ws.value}, not {src.value}")
            new = t.change(old, dst, changes, changes)
            t.append({"e": event, "s": _sid(sid), "v": new.state.version, "w": dst.value, "t": t.now}, [new])
            return new.state

        return self._submit(op)  # type: ignore[no-any-return]

    # --- reads ------------------------------------------------------------------------------

    def get(self, sector_id: SectorID) -> SectorState:
        """The current state; raises :class:`~sectorhooks.errors.SectorNotFound` (a ``KeyNotFound``)."""
        return self._find(sector_id).state

    def workspace_of(self, sector_id: SectorID) -> Workspace:
        """Where the sector is: online or offline."""
        return self._find(sector_id).ws

    def _find(self, sid: SectorID) -> Current:
        key = sid.key.encode()

        def fn(t: StoreTxn) -> Optional[Tuple[Workspace, bytes]]:
            for ws, name in COLLECTIONS.items():
                raw = t.collection(name).peek(key)
                if raw is not None:
                    return ws, raw
            return None

        found = self.store.view(fn)
        if found is None:
            raise SectorNotFound(sid)
        return self._decode(key, found[1], found[0])

    def list(self, workspace: Optional[Workspace] = None, miner: Optional[int] = None) -> List[SectorState]:
        """States of one workspace (or both) and one miner (or all), ordered by sector id."""
        return [s for _, s in self.scan(workspace, miner)]

    def scan(
        self, workspace: Optional[Workspace] = None, miner: Optional[int] = None
    ) -> List[Tuple[Workspace, SectorState]]:
        """Like :meth:`list`, with each state's workspace."""
        prefix = b"" if miner is None else b"%020d/" % miner
        out: List[Tuple[bytes, Workspace, SectorState]] = []
        for ws, name in COLLECTIONS.items():
            if workspace is not None and ws is not Workspace(workspace):
                continue
            for key, raw in self.store.open_collection(name).scan(prefix):
                out.append((key, ws, self._decode(key, raw, ws).state))
        out.sort(key=lambda item: item[0])
        return [(ws, s) for _, ws, s in out]

    def state_counts(self) -> Dict[str, int]:
        """How many sectors are in each state (``state_name``; ``""`` before any report)."""
        counts: Dict[str, int] = {}
        for s in self.list():
            counts[s.state_name] = counts.get(s.state_name, 0) + 1
        return counts

    def close(self) -> None:
        """Refuse new changes and wait for the ones in flight."""
        with self._cond:
            self._closed = True
            while self._leader or self._queue:
                self._cond.wait(0.1)

    # --- group commit -------------------------------------------------------------------------

    def _submit(self, op: Op) -> Any:
        req = _Request(op)
        with self._cond:
            if self._closed:
                raise SectorStateError("the sector state manager is closed")
            self._queue.append(req)
            if self._gathering:
                self._gather.notify()
            while not req.done:
                if self._leader:
                    self._cond.wait()
                    continue
                self._leader = True
                self._wait_for_group()
                group = self._queue[:MAX_GROUP]
                del self._queue[:MAX_GROUP]
                self._last_group = len(group)
                self._cond.release()
                try:
                    self._commit(group)
                finally:
                    self._cond.acquire()
                    self._leader = False
                    self._cond.notify_all()
        if req.error is not None:
            raise req.error
        return req.result

    def _wait_for_group(self) -> None:
        """Give the callers of the last group a moment to queue again (hold the lock).

        Writers that just got their result come back with their next change within
        microseconds; waiting for them turns N small transactions into one. A lone writer
        (last group of one) never waits.
        """
        if len(self._queue) >= self._last_group:
            return
        deadline = time.monotonic() + GATHER_WAIT
        self._gathering = True
        try:
            while len(self._queue) < self._last_group:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._gather.wait(left)
        finally:
            self._gathering = False

    def _commit(self, group: List[_Request]) -> None:
        def fn(txn: StoreTxn) -> Tuple[List[Tuple[Any, Optional[BaseException]]], int]:
            t = _Txn(self, txn)
            outcomes: List[Tuple[Any, Optional[BaseException]]] = []
            for req in group:
                try:
                    outcomes.append((req.op(t), None))
                except (SectorStateError, SectorNotFound) as exc:
                    outcomes.append((None, exc))
            return outcomes, (t.log.finish() if t.log is not None else 0)

        try:
            outcomes, head = self.store.update(fn)
        except BaseException as exc:
            for req in group:
                req.error, req.done = exc, True
            return
        for req, (result, error) in zip(group, outcomes):
            req.result, req.error, req.done = result, error, True
        if head:
            changelog.committed(self.store, head)

    # --- decode cache ---------------------------------------------------------------------------

    def _decode(self, key: bytes, raw: bytes, ws: Workspace) -> Current:
        hit = self._cache.get(key)
        if hit is not None and hit[0] == raw:
            return Current(ws, hit[1].state, hit[1].data, hit[1].text)
        data = json.loads(raw)
        try:
            state = from_jsonable(SectorState, data)
        except DecodeError as exc:
            raise DecodeError(f"sector state {key.decode()!r} in {COLLECTIONS[ws]!r}: {exc}") from None
        cur = Current(ws, state, data, raw.decode("utf-8"))
        self._remember(key, raw, cur)
        return cur

    def _remember(self, key: bytes, raw: bytes, cur: Current) -> None:
        with self._cache_lock:
            if len(self._cache) >= CACHE_SIZE and key not in self._cache:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (raw, cur)


def _check_fields(sid: SectorID, fields: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Validate ``update`` fields before queueing: known names, right types (checked the way the
    codec will decode them, so the KV never holds a state that cannot be read back)."""
    if not isinstance(sid, SectorID):
        raise SectorStateError(f"update needs a SectorID, got {type(sid).__name__} {sid!r:.60}")
    if not fields:
        raise SectorStateError(f"update of {sid} names no fields")
    values: Dict[str, Any] = {}
    jsonable: Dict[str, Any] = {}
    for name, value in fields.items():
        check = _CHECKERS.get(name)
        if check is None:
            raise SectorStateError(
                f"update of {sid}: unknown or read-only field {name!r}; "
                f"updatable: {', '.join(sorted(UPDATABLE_FIELDS))}"
            )
        try:
            values[name] = check(value, name)
            jsonable[name] = to_jsonable(values[name])
        except (TypeError, DecodeError) as exc:
            raise SectorStateError(f"update of {sid}: {exc}") from None
    return values, jsonable


Checker = Callable[[Any, str], Any]


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
        fields: List[Tuple[str, Checker]] = []

        def check_model(v: Any, where: str) -> Any:
            if type(v) is not tp:
                raise DecodeError(f"{where}: expected {tp.__name__}, got {type(v).__name__} {v!r:.60}")
            if not fields:  # built on first use: models may refer to each other
                fields.extend((n, _checker(hints[n])) for n in names)
            changed = {}
            for name, check in fields:
                value = getattr(v, name)
                fixed = check(value, f"{where}.{name}")
                if fixed is not value:
                    changed[name] = fixed
            return attrs.evolve(v, **changed) if changed else v

        return check_model
    kinds = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}[tp]

    def check_plain(v: Any, where: str) -> Any:
        if type(v) not in kinds:
            raise DecodeError(f"{where}: expected {tp.__name__}, got {type(v).__name__} {v!r:.60}")
        return float(v) if tp is float and type(v) is int else v

    return check_plain


_HINTS = typing.get_type_hints(SectorState, vars(sys.modules[SectorState.__module__]))
_CHECKERS: Dict[str, Checker] = {name: _checker(_HINTS[name]) for name in UPDATABLE_FIELDS}
