"""One group's KV transaction, and the state cache that lets a group skip re-reading its sectors.

The cache holds each sector's decoded state and JSON data. An entry is *trusted* (used without
reading the KV) only when it was written or read by this manager's own committed transactions
and nobody else has appended to the change log since: every change of sector state appends to
the log in the same transaction, so an unchanged log head (read inside the group's
transaction) proves no other writer touched any sector. Any other head, a failed commit or an
unknown commit outcome drops every trusted entry. Reads outside transactions (``get``,
``list``) only reuse a decoded state when the stored bytes are identical.
"""

from __future__ import annotations

import json
import sys
import threading
import typing
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import attrs

from sectorhooks_spec import INT64_MAX, DecodeError, SectorID, SectorState, StoreTxn, Workspace, from_jsonable
from sectorhooks_spec.backend import GetFromPeek

from ..changelog.format import HEAD, META, Header, encode_entry, read_int
from ..changelog.writer import LogWriter
from ..errors import NeedsTransaction, SectorNotFound, SectorStateError
from .counts import Cell, Row
from .counts import apply as apply_counts
from .fields import evolve_checked

COLLECTIONS: Dict[Workspace, str] = {Workspace.ONLINE: "sectors/online", Workspace.OFFLINE: "sectors/offline"}
CACHE_SIZE = 4096  # sectors


class Current:
    """A sector as stored: workspace, decoded state, its JSON data and text."""

    __slots__ = ("data", "state", "text", "ws")

    def __init__(self, ws: Workspace, state: SectorState, data: Dict[str, Any], text: str = ""):
        self.ws, self.state, self.data, self.text = ws, state, data, text


def key_of(sid: SectorID) -> bytes:
    """``sid.key`` as the KV key (bytes)."""
    return sid.key.encode()


def _json_dumps(data: Dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _float_fields(cls: type, top: bool = True) -> Set[str]:
    """Names of ``cls``'s fields (top level) whose type holds a float anywhere inside."""
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    out: Set[str] = set()

    def has_float(tp: Any) -> bool:
        if tp is float:
            return True
        if isinstance(tp, type) and attrs.has(tp):
            return bool(_float_fields(tp, top=False))
        return any(has_float(a) for a in typing.get_args(tp))

    for f in attrs.fields(cls):
        if has_float(hints[f.name]):
            out.add(f.name)
    return out


def _fast_encoder() -> Optional[Callable[[Any], bytes]]:
    """msgspec's encoder when it gives exactly ``json.dumps``'s text for a state's data.

    Strings, ints, bools, null, lists and objects come out byte for byte the same (tested);
    floats differ only in exponent spelling (``1e16`` vs ``1e+16``, ``0.00001`` vs ``1e-05``),
    so it is used only while ``updated_at`` is the one float field of ``SectorState`` and that
    value is in the range both spell alike (checked per call, see :func:`to_json`).
    """
    if _float_fields(SectorState) != {"updated_at"}:
        return None
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is a dependency; json is the fallback
        return None
    return msgspec.json.Encoder().encode


_ENCODE = _fast_encoder()


def to_json(data: Dict[str, Any]) -> str:
    """Exactly what ``codec.dumps`` gives for the model ``data`` came from."""
    if _ENCODE is not None:
        u = data.get("updated_at", 0.0)
        if type(u) is int or (type(u) is float and (u == 0.0 or 1e-4 <= abs(u) < 1e16)):
            try:
                return _ENCODE(data).decode("utf-8")
            except (TypeError, ValueError, OverflowError, UnicodeError):  # json.dumps says why
                pass
    return _json_dumps(data)


def decode(key: bytes, raw: bytes, ws: Workspace) -> Current:
    """Decode a stored state (the error names the key and collection)."""
    data = json.loads(raw)
    try:
        state = from_jsonable(SectorState, data)
    except DecodeError as exc:
        raise DecodeError(f"sector state {key.decode()!r} in {COLLECTIONS[ws]!r}: {exc}") from None
    return Current(ws, state, data, raw.decode("utf-8"))


class StateCache:
    """Trusted entries (leader only, see the module doc) and bytes-checked decodes (any thread)."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self.head: Optional[int] = None  # log head after our last commit
        self.trusted: Dict[bytes, Current] = {}
        #: Kept counts known as of ``head`` (trusted with the entries), and whether the KV has
        #: them at all (see :mod:`.counts`; the manager builds them before its first change).
        self.counts: Dict[Row, Dict[str, int]] = {}
        self.counts_ready = False
        self._decoded: Dict[bytes, Tuple[bytes, Current]] = {}
        self._lock = threading.Lock()

    def decode(self, key: bytes, raw: bytes, ws: Workspace) -> Current:
        """Decode ``raw``, reusing the last decode of identical bytes."""
        hit = self._decoded.get(key)
        if hit is not None and hit[0] == raw:
            cur = hit[1]
            return cur if cur.ws is ws else Current(ws, cur.state, cur.data, cur.text)
        cur = decode(key, raw, ws)
        self._put(self._decoded, key, (raw, cur))
        return cur

    def committed(
        self,
        head: int,
        fresh: Dict[bytes, Current],
        trusted_before: bool,
        counts: Optional[Dict[Row, Dict[str, int]]] = None,
    ) -> None:
        """After a commit: ``fresh`` and ``counts`` (read or written in it) are current as of ``head``."""
        table, size = self.trusted, self.size
        with self._lock:
            if not trusted_before:
                table.clear()
                self.counts.clear()
            if counts:
                self.counts.update(counts)
            for key, cur in fresh.items():
                if len(table) >= size and key not in table:
                    table.pop(next(iter(table)))
                table[key] = cur
        self.head = head

    def forget(self) -> None:
        """A commit failed or may not have applied: trust nothing."""
        self.trusted.clear()
        self.counts.clear()
        self.head = None

    def _put(self, table: Dict[bytes, Any], key: bytes, value: Any) -> None:
        with self._lock:
            if len(table) >= self.size and key not in table:
                table.pop(next(iter(table)))
            table[key] = value


class GroupTxn:
    """One run of a group's transaction: current states (with this group's writes) and the log."""

    __slots__ = (
        "_cache",
        "_seen",
        "counted",
        "delta",
        "fresh",
        "head0",
        "head1",
        "log",
        "now",
        "trusted",
        "txn",
    )

    def __init__(self, cache: StateCache, txn: StoreTxn, now: float):
        self._cache = cache
        self.txn = txn
        self.now = now
        self.head0 = read_int(txn, HEAD, 0)
        self.head1 = self.head0
        self.trusted = cache.head is not None and cache.head == self.head0
        self.log: Optional[LogWriter] = None
        self._seen: Dict[bytes, Optional[Current]] = {}
        self.fresh: Dict[bytes, Current] = {}
        self.delta: Dict[Cell, int] = {}  # count changes of this group, written by finish()
        self.counted: Dict[Row, Dict[str, int]] = {}  # count rows as finish() wrote them

    def current(self, sid: SectorID) -> Optional[Current]:
        """The sector as this transaction sees it, or ``None``."""
        key = key_of(sid)
        if key in self._seen:
            return self._seen[key]
        found = self._cache.trusted.get(key) if self.trusted else None
        if found is None:
            for ws, name in COLLECTIONS.items():
                raw = self.txn.collection(name).peek(key)
                if raw is not None:
                    found = self._cache.decode(key, raw, ws)
                    self.fresh[key] = found
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
        if version > INT64_MAX:  # refused before anything is written: the change fails alone
            raise SectorStateError(f"sector {old.state.id} is at the last version a sink can store")
        state = evolve_checked(old.state, values, version, self.now)
        data = dict(old.data)
        data.update(jsonable)
        data["version"], data["updated_at"] = version, self.now
        return self.write(old, Current(ws, state, data))

    def write(self, old: Optional[Current], new: Current) -> Current:
        key = key_of(new.state.id)
        new.text = to_json(new.data)
        self.txn.collection(COLLECTIONS[new.ws]).put(key, new.text.encode("utf-8"))
        if old is not None and old.ws is not new.ws:
            self.txn.collection(COLLECTIONS[old.ws]).delete(key)
        self._seen[key] = self.fresh[key] = new
        if old is None or old.ws is not new.ws or old.state.state_name != new.state.state_name:
            self._moved(old, new)
        return new

    def _moved(self, old: Optional[Current], new: Current) -> None:
        """``new`` left ``old``'s count cell (none: created) for its own."""
        delta = self.delta
        if old is not None:
            cell = (old.ws, old.state.id.miner, old.state.state_name)
            delta[cell] = delta.get(cell, 0) - 1
        cell = (new.ws, new.state.id.miner, new.state.state_name)
        delta[cell] = delta.get(cell, 0) + 1

    def append(self, header: Header, states: Sequence[Current]) -> int:
        """Append a log entry: ``header`` and the text of each state."""
        if self.log is None:
            self.log = LogWriter(self.txn, self.head0)
        return self.log.append(encode_entry(header, [c.text for c in states]))

    def finish(self) -> int:
        """Store the counts this group changed and the log head; returns (and keeps in ``head1``)
        the head after this transaction."""
        if self.delta:
            self._write_counts()
        if self.log is not None:
            self.head1 = self.log.finish()
        return self.head1

    def _write_counts(self) -> None:
        """Each changed count row written once: as the trusted cache holds it, else read here (in
        a :class:`RecordingTxn` that read raises :class:`NeedsTransaction`: ``update`` reads it)."""
        self.counted = apply_counts(self.txn, self.delta, self._cache.counts if self.trusted else {})


class _Recorded(GetFromPeek):
    __slots__ = ("_rec", "name")

    def __init__(self, rec: RecordingTxn, name: str):
        self._rec, self.name = rec, name

    def peek(self, key: bytes) -> Optional[bytes]:
        if self.name == META and key == HEAD:
            return self._rec.head
        raise NeedsTransaction(f"read of {key!r} in {self.name!r}")

    def put(self, key: bytes, value: bytes) -> None:
        self._rec.puts[(self.name, key)] = value

    def delete(self, key: bytes) -> None:
        raise NeedsTransaction(f"delete of {key!r} in {self.name!r}")

    def scan(self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None) -> Any:
        raise NeedsTransaction(f"scan of {prefix!r} in {self.name!r}")


class RecordingTxn:
    """A stand-in for a store transaction while a group is computed from the trusted cache:
    the log head is the cache's (the guarded put checks it), other reads and deletes raise
    :class:`NeedsTransaction`, puts are recorded (a key's last value wins)."""

    def __init__(self, head: int):
        self.head = b"%d" % head
        self.puts: Dict[Tuple[str, bytes], bytes] = {}
        self._views: Dict[str, _Recorded] = {}

    def collection(self, name: str) -> _Recorded:
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = _Recorded(self, name)
        return view

    def items(self) -> List[Tuple[str, bytes, bytes]]:
        return [(c, k, v) for (c, k), v in self.puts.items()]
