"""memdb: an in-memory KVStore, sorted, thread-safe and transactional.

Meta keys: none (an unknown key is an error). Every ``Constructor`` call returns a new, empty
store that lives as long as the process; ``close()`` drops the data.

Each collection keeps a sorted list of keys (``bisect``) and a dict of values. One re-entrant
lock guards the whole store: plain operations hold it for a few microseconds, ``view`` and
``update`` hold it while ``fn`` runs, so transactions are serializable and ``update`` never
conflicts (a slow ``fn`` delays every other writer, as SQLite's single writer does). ``update``
writes in place and keeps an undo log, replayed if ``fn`` raises: nothing is written then.
Plain scans read in batches under the lock, so they never block writers for long and see
writes made behind their position; ``scan(prefix, after=, limit=)`` bisects to ``after`` and
reads at most ``limit`` keys.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, insort
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar

from sectorhooks_spec import KVError, MetaReader
from sectorhooks_spec.backend import (
    GetFromPeek,
    check_collection_name,
    check_key,
    check_value,
    scan_range,
)

PLUGIN = "memdb"
META_KEYS: Tuple[str, ...] = ()
SCAN_BATCH = 256

T = TypeVar("T")
Item = Tuple[bytes, bytes]


def open_store(meta: Mapping[str, Any]) -> MemStore:
    """``Constructor(meta)``: a new empty in-memory store; ``meta`` must be empty."""
    MetaReader(PLUGIN, meta, META_KEYS)  # rejects every key, naming it
    return MemStore()


class _Data:
    """One collection's data: sorted keys plus values."""

    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.keys: List[bytes] = []
        self.values: Dict[bytes, bytes] = {}

    def put(self, key: bytes, value: bytes) -> Optional[bytes]:
        old = self.values.get(key)
        if old is None:
            insort(self.keys, key)
        self.values[key] = value
        return old

    def delete(self, key: bytes) -> Optional[bytes]:
        old = self.values.pop(key, None)
        if old is not None:
            del self.keys[bisect_left(self.keys, key)]
        return old

    def batch(self, start: bytes, inclusive: bool, end: Optional[bytes], n: int) -> List[Item]:
        """Up to ``n`` items with ``start <(=) key < end``."""
        i = bisect_left(self.keys, start)
        if not inclusive and i < len(self.keys) and self.keys[i] == start:
            i += 1
        out = []
        for key in self.keys[i : i + n]:
            if end is not None and key >= end:
                break
            out.append((key, self.values[key]))
        return out


class MemStore:
    """The store: collections by name under one re-entrant lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._data: Dict[str, _Data] = {}
        self._collections: Dict[str, MemCollection] = {}
        self._closed = False

    def _get_data(self, name: str) -> _Data:
        data = self._data.get(name)
        if data is None:
            if self._closed:
                raise KVError(f"plugin {PLUGIN!r}: the store is closed")
            data = self._data[name] = _Data()
        return data

    def open_collection(self, name: str) -> MemCollection:
        """The collection ``name``, created if missing."""
        check_collection_name(name, PLUGIN)
        with self._lock:
            self._get_data(name)
            coll = self._collections.get(name)
            if coll is None:
                coll = self._collections[name] = MemCollection(self, name)
            return coll

    def view(self, fn: Callable[[MemStoreTxn], T]) -> T:
        """Read-only transaction across collections (holds the lock: a true snapshot)."""
        with self._lock:
            txn = MemStoreTxn(self, writable=False)
            try:
                return fn(txn)
            finally:
                txn.done = True

    def update(self, fn: Callable[[MemStoreTxn], T]) -> T:
        """Read-write transaction across collections; undone if ``fn`` raises."""
        with self._lock:
            txn = MemStoreTxn(self, writable=True)
            try:
                result = fn(txn)
            except BaseException:
                txn.rollback()
                raise
            finally:
                txn.done = True
            return result

    def close(self) -> None:
        """Drop every collection."""
        with self._lock:
            self._closed = True
            self._data.clear()

    # --- one-shot helpers used by MemCollection -------------------------------------

    def _scan(
        self,
        name: str,
        prefix: bytes,
        after: Optional[bytes],
        limit: Optional[int],
        txn: Optional[MemStoreTxn] = None,
    ) -> Iterator[Item]:
        start, inclusive, end, left = scan_range(prefix, after, limit)
        while left is None or left > 0:
            if txn is not None:
                txn.check()
            n = SCAN_BATCH if left is None else min(SCAN_BATCH, left)
            with self._lock:
                items = self._get_data(name).batch(start, inclusive, end, n)
            yield from items
            if len(items) < n:
                return
            if left is not None:
                left -= n
            start, inclusive = items[-1][0], False


class MemTxn(GetFromPeek):
    """One collection's view inside a transaction."""

    def __init__(self, parent: MemStoreTxn, name: str):
        self._parent = parent
        self._data = parent.store._get_data(name)
        self.name = name

    def peek(self, key: bytes) -> Optional[bytes]:
        self._parent.check()
        return self._data.values.get(check_key(key))

    def put(self, key: bytes, value: bytes) -> None:
        key, value = check_key(key), check_value(value)
        self._parent.check(write=True)
        old = self._data.put(key, value)
        self._parent.undo.append((self._data, key, old))

    def delete(self, key: bytes) -> None:
        key = check_key(key)
        self._parent.check(write=True)
        old = self._data.delete(key)
        if old is not None:
            self._parent.undo.append((self._data, key, old))

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> Iterator[Item]:
        return self._parent.store._scan(self.name, prefix, after, limit, self._parent)


class MemStoreTxn:
    """A transaction over the whole store (the lock is held while it is open)."""

    def __init__(self, store: MemStore, writable: bool):
        self.store = store
        self.writable = writable
        self.done = False
        self.undo: List[Tuple[_Data, bytes, Optional[bytes]]] = []
        self._views: Dict[str, MemTxn] = {}

    def check(self, write: bool = False) -> None:
        if self.done:
            raise KVError(f"plugin {PLUGIN!r}: transaction already finished; use the txn only inside fn")
        if write and not self.writable:
            raise KVError(f"plugin {PLUGIN!r}: view transactions are read-only; use update() to write")

    def collection(self, name: str) -> MemTxn:
        self.check()
        view = self._views.get(name)
        if view is None:
            check_collection_name(name, PLUGIN)
            view = self._views[name] = MemTxn(self, name)
        return view

    def rollback(self) -> None:
        for data, key, old in reversed(self.undo):
            if old is None:
                data.delete(key)
            else:
                data.put(key, old)
        self.undo.clear()


class MemCollection(GetFromPeek):
    """A named collection; plain operations are each their own (locked) transaction."""

    def __init__(self, store: MemStore, name: str):
        self._store = store
        self.name = name

    def __repr__(self) -> str:
        return f"<memdb collection {self.name!r}>"

    def peek(self, key: bytes) -> Optional[bytes]:
        key = check_key(key)
        with self._store._lock:
            return self._store._get_data(self.name).values.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        key, value = check_key(key), check_value(value)
        with self._store._lock:
            self._store._get_data(self.name).put(key, value)

    def delete(self, key: bytes) -> None:
        key = check_key(key)
        with self._store._lock:
            self._store._get_data(self.name).delete(key)

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> Iterator[Item]:
        return self._store._scan(self.name, prefix, after, limit)

    def view(self, fn: Callable[[MemTxn], T]) -> T:
        return self._store.view(lambda st: fn(st.collection(self.name)))

    def update(self, fn: Callable[[MemTxn], T]) -> T:
        return self._store.update(lambda st: fn(st.collection(self.name)))
