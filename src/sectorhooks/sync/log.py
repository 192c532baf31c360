"""The change log (outbox): entries the state manager writes and the dispatchers read.

Layout in the KV (collection -> key -> value):

* ``sync/log``  ``<seq>`` (20 zero-padded digits, so byte order is seq order) -> one entry;
* ``sync/meta`` ``head`` (last seq written) and ``floor`` (first seq not trimmed), ASCII ints.

Sequence numbers are allocated inside the writer's transaction (``head`` is read and rewritten
there), so the log is gap-free between ``floor`` and ``head``: a reader knows every key it
wants and reads a range with a few prefix scans over aligned decimal blocks.

An entry is one line of JSON, the header (``e`` event, ``s`` [miner, number], ``v`` version,
``w`` workspace, ``t`` time; ``k`` the changed field names of an update, ``o`` override of an
import; ``a`` [[miner, number, proof type]...] and ``vs`` versions of an init), followed by one
line per state, each exactly ``codec.dumps(state)``. Sinks get that text as
``state_json`` without anything being parsed or serialized again; ``state`` is decoded only
for a hook that asks for it.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from sectorhooks_spec import (
    AllocatedSector,
    KVStore,
    SectorID,
    SectorState,
    StoreTxn,
    SyncerInstance,
    Workspace,
    loads,
)

LOG = "sync/log"
META = "sync/meta"
HEAD = b"head"
FLOOR = b"floor"
SEQ_DIGITS = 20

#: Event name -> hook name.
HOOKS: Dict[str, str] = {
    "import": "sync_on_import",
    "init": "sync_on_init",
    "update": "sync_on_update",
    "finalize": "sync_on_finalize",
    "restore": "sync_on_restore",
}


def seq_key(seq: int) -> bytes:
    """The log key of ``seq``."""
    return b"%020d" % seq


def read_int(txn: StoreTxn, key: bytes, default: int) -> int:
    """An ASCII int from ``sync/meta`` (``default`` when missing)."""
    raw = txn.collection(META).peek(key)
    return default if raw is None else int(raw)


# --- writing (used by SectorStateManager inside its transaction) ----------------------------


def encode_entry(header: Union[str, Dict[str, Any]], states_json: Sequence[str]) -> bytes:
    """One log entry: the header line (a dict, or its JSON text), then one line per state."""
    head = (
        header if isinstance(header, str) else json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    )
    return "\n".join((head, *states_json)).encode("utf-8")


class LogWriter:
    """Appends entries within one transaction; ``finish()`` stores the new head."""

    __slots__ = ("_head", "_log", "_txn", "written")

    def __init__(self, txn: StoreTxn, head: Optional[int] = None):
        self._txn = txn
        self._log = txn.collection(LOG)
        self._head = read_int(txn, HEAD, 0) if head is None else head  # read in this txn
        self.written: List[Tuple[int, bytes]] = []

    def append(self, entry: bytes) -> int:
        """Write ``entry`` under the next seq and return that seq."""
        self._head += 1
        self._log.put(seq_key(self._head), entry)
        self.written.append((self._head, entry))
        return self._head

    def finish(self) -> int:
        """Store the head (call once, after the last append); returns it."""
        self._txn.collection(META).put(HEAD, b"%d" % self._head)
        return self._head


# --- reading ---------------------------------------------------------------------------------


def _header_decoder() -> Callable[[bytes], Any]:
    """``json.loads`` of a header line, through msgspec when it is installed (several times
    faster on small documents; same values). What msgspec refuses (``NaN``, say) is read by
    ``json``, which accepts it or says why not."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is a dependency; json is the fallback
        return json.loads
    fast = msgspec.json.Decoder().decode
    refused = msgspec.DecodeError

    def decode(line: bytes) -> Any:
        try:
            return fast(line)
        except refused:
            return json.loads(line.decode("utf-8"))

    return decode


_decode_header = _header_decoder()
_SIDS: Dict[Tuple[int, int], SectorID] = {}  # header "s" -> SectorID, shared by every event
_SIDS_MAX = 1 << 16


class Event:
    """One decoded log entry; hook arguments are built on demand (``state`` decoded lazily)."""

    __slots__ = ("_sid", "_states", "header", "raw", "seq", "states_json")

    def __init__(self, seq: int, raw: bytes):
        self.seq = seq
        self.raw = raw
        cut = raw.find(b"\n")
        head = raw if cut < 0 else raw[:cut]
        self.header: Dict[str, Any] = _decode_header(head)
        if type(self.header) is not dict:
            raise ValueError(f"log entry {seq}: the header is not a JSON object")
        self.states_json: List[str] = [] if cut < 0 else raw[cut + 1 :].decode("utf-8").split("\n")
        self._states: Optional[List[SectorState]] = None
        self._sid: Optional[SectorID] = None  # built once, shared by every syncer's hook call

    @classmethod
    def synthetic_import(cls, state_json: str, workspace: Workspace, sector: SectorID, version: int) -> Event:
        """An import event (override) for ``sync backfill``: the current state of one sector."""
        header = {
            "e": "import",
            "s": [sector.miner, sector.number],
            "v": version,
            "w": workspace.value,
            "o": True,
        }
        return cls(0, encode_entry(header, [state_json]))

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
        return caller(argnames)(_as_list, self, syncer)  # type: ignore[no-any-return]


def _sector_id(ev: Event, syncer: SyncerInstance) -> SectorID:
    if ev._sid is None:
        m, n = ev.header["s"]
        sid = _SIDS.get((m, n))
        if sid is None:
            sid = SectorID(m, n)
            if len(_SIDS) >= _SIDS_MAX:
                _SIDS.clear()
            _SIDS[(m, n)] = sid
        ev._sid = sid
    return ev._sid


def _allocated(ev: Event, syncer: SyncerInstance) -> List[AllocatedSector]:
    return [AllocatedSector(SectorID(m, n), p) for m, n, p in ev.header["a"]]


_WORKSPACES = {w.value: w for w in Workspace}
#: Hook argument name -> the expression of its value for an event ``ev`` and syncer ``syncer``.
_ARG_EXPRESSIONS: Dict[str, str] = {
    "syncer": "syncer",
    "workspace": "_WORKSPACES[ev.header['w']]",
    "override": "bool(ev.header.get('o', False))",
    "fields": "ev.fields()",
    "state_json": "ev.states_json[0]",
    "states_json": "list(ev.states_json)",
    "state": "ev.states()[0]",
    "states": "list(ev.states())",
    "sector_id": "_sector_id(ev, syncer)",
    "sectors": "_allocated(ev, syncer)",
}
_SCOPE: Dict[str, Any] = {"_WORKSPACES": _WORKSPACES, "_sector_id": _sector_id, "_allocated": _allocated}
#: The argument names a sync hook may take.
ARG_NAMES = tuple(_ARG_EXPRESSIONS)

Caller = Callable[[Callable[..., Any], Event, SyncerInstance], Any]


def caller(argnames: Sequence[str]) -> Caller:
    """``call(fn, ev, syncer)``: ``fn`` called with the arguments ``argnames`` name, built by one
    generated line (the dispatcher's per-event path: no list of getters, no lambda per argument).
    An unknown name is a ``KeyError`` naming it."""
    key = tuple(argnames)
    call = _CALLERS.get(key)
    if call is None:
        args = ", ".join(_ARG_EXPRESSIONS[name] for name in key)
        scope: Dict[str, Any] = dict(_SCOPE)
        source = f"def call(fn, ev, syncer):\n    return fn({args})"
        exec(compile(source, f"<hook call {args}>", "exec"), scope)
        call = _CALLERS[key] = scope["call"]
    return call


_CALLERS: Dict[Tuple[str, ...], Caller] = {}  # hook signatures: a handful


def _as_list(*args: Any) -> List[Any]:
    return list(args)


class RawEntry:
    """A log entry not decoded: what a dispatcher hands to a worker process as it is."""

    __slots__ = ("raw", "seq")

    def __init__(self, seq: int, raw: bytes):
        self.seq, self.raw = seq, raw


def decoded(entry: Any) -> Any:
    """``entry`` as an :class:`Event` (or :class:`BrokenEvent`), decoding a :class:`RawEntry`."""
    return parse(entry.seq, entry.raw) if isinstance(entry, RawEntry) else entry


class LogTrimmed(Exception):
    """A reader asked for entries that were already trimmed (its cursor is below the floor)."""


def _block_digits(limit: int) -> int:
    digits = 1
    while 10 ** (digits + 1) <= max(limit, 10):
        digits += 1
    return digits


class BrokenEvent:
    """A log entry that cannot be decoded; it fails like a raising hook (and is dead-lettered)."""

    __slots__ = ("error", "raw", "seq")

    def __init__(self, seq: int, raw: bytes, error: Exception):
        self.seq, self.raw, self.error = seq, raw, error


def parse(seq: int, raw: bytes) -> Any:
    """An :class:`Event`, or a :class:`BrokenEvent` for an entry that does not parse."""
    try:
        return Event(seq, raw)
    except Exception as exc:
        return BrokenEvent(seq, raw, exc)


class ChangeLog:
    """Reads and trims the log of one KV store.

    ``shared`` > 0 keeps that many recently parsed events, so dispatchers reading the same range
    (syncers that keep up are all at the head) read and parse each entry once between them.
    """

    def __init__(self, store: KVStore, shared: int = 0):
        self.store = store
        store.open_collection(LOG)
        store.open_collection(META)
        self._shared = shared
        self._recent: Dict[int, Any] = {}
        self._recent_lock = threading.Lock()
        self._newest = 0

    def events(self, after: int, limit: int) -> List[Any]:
        """Up to ``limit`` parsed events (or :class:`BrokenEvent`) after ``after``, in order.

        Served from the shared recent entries when they hold ``after + 1`` onwards (the usual
        case for a syncer that keeps up), else read from the KV.
        """
        if self._shared:
            got = self._recent_run(after + 1, limit)
            if got:
                return got
        items = self.read(after, limit)
        events = [parse(seq, raw) for seq, raw in items]
        if events and events[-1].seq + self._shared > self._newest:
            self.remember(events)  # near the head: others will want them; old ones would evict those
        return events

    def entries(self, after: int, limit: int) -> List[RawEntry]:
        """Like :meth:`events`, but not decoded (for syncers whose hooks run in a worker)."""
        if self._shared:
            with self._recent_lock:
                found: List[RawEntry] = []
                while len(found) < limit:
                    item = self._recent.get(after + 1 + len(found))
                    if item is None:
                        break
                    found.append(
                        RawEntry(after + 1 + len(found), item if isinstance(item, bytes) else item.raw)
                    )
            if found:
                return found
        return [RawEntry(seq, raw) for seq, raw in self.read(after, limit)]

    @property
    def newest(self) -> int:
        """The highest seq this process saw committed (0 before any); other processes' commits
        are not seen here."""
        return self._newest

    def saw(self, head: int) -> None:
        """A commit of this process moved the head to ``head``."""
        if head > self._newest:
            self._newest = head

    def remember(self, items: Sequence[Any]) -> None:
        """Keep recent entries (``(seq, raw)`` as committed, or parsed events) for the readers."""
        if not self._shared or not items:
            return
        with self._recent_lock:
            for item in items:
                if isinstance(item, tuple):
                    self._recent.setdefault(item[0], item[1])
                    self._newest = max(self._newest, item[0])
                else:
                    self._recent[item.seq] = item
                    self._newest = max(self._newest, item.seq)
            extra = len(self._recent) - self._shared
            if extra > 0:
                for seq in list(itertools.islice(self._recent, extra)):
                    del self._recent[seq]

    def _recent_run(self, first: int, limit: int) -> List[Any]:
        with self._recent_lock:
            found: List[Any] = []
            seq = first
            while len(found) < limit:
                item = self._recent.get(seq)
                if item is None:
                    break
                found.append(item)
                seq += 1
        out = [parse(first + i, item) if isinstance(item, bytes) else item for i, item in enumerate(found)]
        if any(isinstance(item, bytes) for item in found):
            self.remember(out)  # parse once, for every reader
        return out

    def bounds(self) -> Tuple[int, int]:
        """``(floor, head)``: entries ``floor..head`` exist (none when ``floor > head``)."""
        return self.store.view(lambda t: (read_int(t, FLOOR, 1), read_int(t, HEAD, 0)))

    def head(self) -> int:
        """The last seq written (0 for an empty log)."""
        return self.store.view(lambda t: read_int(t, HEAD, 0))

    def peek(self, seq: int) -> Optional[bytes]:
        """The raw entry ``seq`` or ``None`` (trimmed or not written yet)."""
        return self.store.view(lambda t: t.collection(LOG).peek(seq_key(seq)))

    def read(self, after: int, limit: int) -> List[Tuple[int, bytes]]:
        """Up to ``limit`` entries with seq > ``after``, in order; :class:`LogTrimmed` on a gap."""
        return self.store.view(lambda t: self._read(t, after, limit))

    def _read(self, txn: StoreTxn, after: int, limit: int) -> List[Tuple[int, bytes]]:
        floor, head = read_int(txn, FLOOR, 1), read_int(txn, HEAD, 0)
        if after >= head:
            return []
        if after + 1 < floor:
            raise LogTrimmed(f"entries {after + 1}..{floor - 1} were trimmed")
        last = min(head, after + limit)
        digits = _block_digits(limit)
        log = txn.collection(LOG)
        out: List[Tuple[int, bytes]] = []
        seq = after + 1
        while seq <= last:
            it = log.scan(seq_key(seq)[:-digits])
            try:
                for key, value in it:
                    n = int(key)
                    if n < seq:
                        continue
                    if n > last:
                        break
                    out.append((n, value))
            finally:
                it.close()
            seq = (seq // 10**digits + 1) * 10**digits
        expected = after + 1
        for n, _ in out:
            if n != expected:
                raise LogTrimmed(f"entry {expected} is missing from the log (next found: {n})")
            expected += 1
        if expected != last + 1:
            raise LogTrimmed(f"entries {expected}..{last} are missing from the log")
        return out

    def trim(self, upto: int, chunk: int = 1000) -> int:
        """Delete entries ``<= upto`` (in transactions of ``chunk``); returns how many went."""
        deleted = 0
        while True:

            def step(t: StoreTxn) -> int:
                floor = read_int(t, FLOOR, 1)
                stop = min(upto, read_int(t, HEAD, 0), floor + chunk - 1)
                if stop < floor:
                    return 0
                log = t.collection(LOG)
                for seq in range(floor, stop + 1):
                    log.delete(seq_key(seq))
                t.collection(META).put(FLOOR, b"%d" % (stop + 1))
                return stop - floor + 1

            n = self.store.update(step)
            deleted += n
            if n < chunk:
                return deleted


# --- commit notifications ---------------------------------------------------------------------

Listener = Callable[[int, Sequence[Tuple[int, bytes]]], None]
_listeners: Dict[int, List[Listener]] = {}
_listeners_lock = threading.Lock()


def add_commit_listener(store: KVStore, fn: Listener) -> None:
    """Call ``fn(head, entries)`` after each commit of a state manager writing to ``store``;
    ``entries`` are the ``(seq, raw)`` it appended (exactly what is now in the log)."""
    with _listeners_lock:
        _listeners.setdefault(id(store), []).append(fn)


def remove_commit_listener(store: KVStore, fn: Listener) -> None:
    """Undo :func:`add_commit_listener`."""
    with _listeners_lock:
        fns = _listeners.get(id(store), [])
        if fn in fns:
            fns.remove(fn)
        if not fns:
            _listeners.pop(id(store), None)


def committed(store: KVStore, head: int, entries: Sequence[Tuple[int, bytes]] = ()) -> None:
    """Tell the listeners of ``store`` that ``entries`` were committed and the head is ``head``."""
    for fn in list(_listeners.get(id(store), ())):
        fn(head, entries)
