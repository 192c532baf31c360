"""A KVStore over stdlib ``dbm.dumb``, written as a third party would: only sectorhooks_spec errors.

Thread-safe and transactional inside one process (one lock; ``update`` buffers its writes and
applies them at the end), but ``dbm.dumb`` keeps its index in the memory of the process that
opened it: a second process opening the same files neither sees this one's later writes nor is
seen by it. The store the suite's multi-process contract must catch (the issue's "a dbm-style
store"); every other contract it keeps.
"""

import dbm.dumb
import re
import threading

from sectorhooks_spec.errors import KeyNotFound, KVError

NAME_RE = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")
MAX_KEY = 2048


def _key(key):
    if isinstance(key, (bytearray, memoryview)):
        key = bytes(key)
    if not isinstance(key, bytes):
        raise TypeError(f"keys are bytes, got {type(key).__name__}")
    if len(key) > MAX_KEY:
        raise ValueError(f"key of {len(key)} bytes is longer than MAX_KEY_SIZE={MAX_KEY}")
    return key


def _value(value):
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, bytes):
        raise TypeError(f"values are bytes, got {type(value).__name__}")
    return value


def _name(name):
    if not isinstance(name, str):
        raise TypeError(f"collection name must be str, got {type(name).__name__}")
    if not NAME_RE.match(name):
        raise ValueError(f"invalid collection name {name!r}")
    return name


def _dbkey(coll, key):
    return coll.encode() + b":" + key  # ':' is not allowed in a collection name


class Txn:
    def __init__(self, store, name, writes):
        self.store, self.name, self.writes, self.done = store, name, writes, False

    def _live(self):
        if self.done:
            raise KVError("transaction finished: use the txn only inside fn")

    def _writable(self):
        if self.writes is None:
            raise KVError(f"collection {self.name!r}: a view is read-only")

    def peek(self, key):
        self._live()
        dbkey = _dbkey(self.name, _key(key))
        if self.writes is not None and dbkey in self.writes:
            return self.writes[dbkey]
        return self.store.db.get(dbkey)

    def get(self, key):
        value = self.peek(key)
        if value is None:
            raise KeyNotFound(self.name, bytes(key))
        return value

    def put(self, key, value):
        self._live()
        key, value = _key(key), _value(value)
        self._writable()
        self.writes[_dbkey(self.name, key)] = value

    def delete(self, key):
        self._live()
        key = _key(key)
        self._writable()
        self.writes[_dbkey(self.name, key)] = None

    def scan(self, prefix=b""):
        self._live()
        start = _dbkey(self.name, _key(prefix))
        merged = {k: None for k in self.store.db.keys() if k.startswith(start)}
        merged.update((k, v) for k, v in (self.writes or {}).items() if k.startswith(start))
        skip = len(self.name) + 1
        for dbkey in sorted(merged):
            self._live()
            value = self.peek(dbkey[skip:])
            if value is not None:
                yield dbkey[skip:], value


class StoreTxn:
    def __init__(self, store, writes):
        self.store, self.writes, self.txns = store, writes, []

    def collection(self, name):
        txn = Txn(self.store, _name(name), self.writes)
        self.txns.append(txn)
        return txn


class Store:
    def __init__(self, path):
        self.db = dbm.dumb.open(path, "c")
        self.lock = threading.RLock()

    def _run(self, fn, writable):
        with self.lock:
            writes = {} if writable else None
            st = StoreTxn(self, writes)
            try:
                result = fn(st)
                for dbkey, value in (writes or {}).items():
                    if value is None:
                        self.db.pop(dbkey, None)
                    else:
                        self.db[dbkey] = value
                if writes:
                    self.db.sync()
                return result
            finally:
                for txn in st.txns:
                    txn.done = True

    def view(self, fn):
        return self._run(fn, False)

    def update(self, fn):
        return self._run(fn, True)

    def open_collection(self, name):
        return Collection(self, _name(name))

    def close(self):
        with self.lock:
            self.db.close()


class Collection:
    def __init__(self, store, name):
        self.store, self.name = store, name

    def view(self, fn):
        return self.store.view(lambda st: fn(st.collection(self.name)))

    def update(self, fn):
        return self.store.update(lambda st: fn(st.collection(self.name)))

    def get(self, key):
        return self.view(lambda t: t.get(key))

    def peek(self, key):
        return self.view(lambda t: t.peek(key))

    def put(self, key, value):
        self.update(lambda t: t.put(key, value))

    def delete(self, key):
        self.update(lambda t: t.delete(key))

    def scan(self, prefix=b""):
        items = self.view(lambda t: list(t.scan(prefix)))
        return (item for item in items)  # a generator: it has close()


def open_store(meta):
    return Store(meta["path"])
