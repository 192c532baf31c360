"""A KVStore over stdlib sqlite3, written as a third party would: only sectorhooks_spec errors.

One table (coll, k, v), WAL mode, a connection per transaction: ``update`` is BEGIN IMMEDIATE
(a concurrent writer waits), ``view`` a deferred read transaction (a snapshot). ``LOSE_DELETES``
in the Meta makes plain ``Collection.delete`` do nothing: the broken store of the suite's tests.
"""

import re
import sqlite3

from sectorhooks_spec.errors import KeyNotFound, KVError

NAME_RE = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")
MAX_KEY = 2048
PAGE = 256


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


def _upper(prefix):
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None


class Txn:
    def __init__(self, conn, name, writable):
        self.conn, self.name, self.writable, self.done = conn, name, writable, False

    def _live(self):
        if self.done:
            raise KVError("transaction finished: use the txn only inside fn")

    def peek(self, key):
        self._live()
        row = self.conn.execute("SELECT v FROM kv WHERE coll=? AND k=?", (self.name, _key(key))).fetchone()
        return None if row is None else bytes(row[0])

    def get(self, key):
        value = self.peek(key)
        if value is None:
            raise KeyNotFound(self.name, bytes(key))
        return value

    def put(self, key, value):
        self._live()
        key, value = _key(key), _value(value)
        if not self.writable:
            raise KVError(f"collection {self.name!r}: a view is read-only")
        self.conn.execute("INSERT OR REPLACE INTO kv(coll, k, v) VALUES (?, ?, ?)", (self.name, key, value))

    def delete(self, key):
        self._live()
        key = _key(key)
        if not self.writable:
            raise KVError(f"collection {self.name!r}: a view is read-only")
        self.conn.execute("DELETE FROM kv WHERE coll=? AND k=?", (self.name, key))

    def scan(self, prefix=b""):
        self._live()
        prefix = _key(prefix)
        return self._scan(prefix, _upper(prefix))

    def _scan(self, prefix, upper):
        last = None
        while True:
            self._live()
            sql, args = "SELECT k, v FROM kv WHERE coll=? AND k>=?", [self.name, prefix]
            if last is not None:
                sql, args = sql + " AND k>?", [*args, last]
            if upper is not None:
                sql, args = sql + " AND k<?", [*args, upper]
            rows = self.conn.execute(sql + f" ORDER BY k LIMIT {PAGE}", args).fetchall()
            for k, v in rows:
                yield bytes(k), bytes(v)
            if len(rows) < PAGE:
                return
            last = rows[-1][0]


class StoreTxn:
    def __init__(self, conn, writable):
        self.conn, self.writable, self.txns = conn, writable, []

    def collection(self, name):
        txn = Txn(self.conn, _name(name), self.writable)
        self.txns.append(txn)
        return txn


def _name(name):
    if not isinstance(name, str):
        raise TypeError(f"collection name must be str, got {type(name).__name__}")
    if not NAME_RE.match(name):
        raise ValueError(f"invalid collection name {name!r}")
    return name


class Store:
    def __init__(self, path, lose_deletes=False):
        self.path, self.lose_deletes = path, lose_deletes
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS kv (coll TEXT, k BLOB, v BLOB, PRIMARY KEY (coll, k))")

    def _connect(self):
        return sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)

    def _run(self, fn, writable):
        conn = self._connect()
        st = StoreTxn(conn, writable)
        try:
            conn.execute("BEGIN IMMEDIATE" if writable else "BEGIN")
            try:
                result = fn(st)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT" if writable else "ROLLBACK")
            return result
        finally:
            for txn in st.txns:
                txn.done = True
            conn.close()

    def view(self, fn):
        return self._run(fn, False)

    def update(self, fn):
        return self._run(fn, True)

    def open_collection(self, name):
        return Collection(self, _name(name))

    def close(self):
        pass


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
        if self.store.lose_deletes:
            return  # the bug the suite must catch
        self.update(lambda t: t.delete(key))

    def scan(self, prefix=b""):
        items = self.view(lambda t: list(t.scan(prefix)))
        return (item for item in items)  # a generator: it has close()


def open_store(meta):
    return Store(meta["path"], lose_deletes=bool(meta.get("LOSE_DELETES")))
