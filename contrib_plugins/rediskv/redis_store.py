"""RedisStore: the KVStore protocol on Redis with optimistic ``WATCH``/``MULTI`` transactions.

A transaction takes one connection from the pool. Every read ``WATCH``es what it reads,
pipelined with the read itself: a ``get`` the value's key only (transactions on different keys
never conflict), a scan the collection's index and its version key, which every write to the
collection ``INCR``s in the same ``MULTI`` (Redis 7.0's ``WATCH`` costs O(keys already watched)
per key, so watching every scanned key would make long scans quadratic). Writes are buffered
locally (reads and scans see them) and sent at commit as one ``MULTI ... EXEC``. An
``EXEC`` that returns nil means a watched key changed: ``TransactionConflict``, nothing written.
A ``view`` with more than one read round trip ends with an empty ``MULTI``/``EXEC`` to prove its
reads were consistent (Redis has no snapshots), so a view may conflict too.

Transactions talk to the raw connection and never let redis-py retry them: a retried ``EXEC``
after a lost reply could apply twice. Before ``EXEC`` the connection is checked (a closed or
dirty socket is ``StoreUnavailable``, nothing sent); a connection lost after it is sent is
``CommitOutcomeUnknown``. Plain operations are idempotent and use redis-py's own retries.
"""

from __future__ import annotations

from contextlib import closing, contextmanager
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    cast,
)

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from sectorhooks_spec import CommitOutcomeUnknown, KVError, StoreUnavailable, TransactionConflict
from sectorhooks_spec.backend import (
    GetFromPeek,
    check_collection_name,
    check_key,
    check_value,
    scan_range,
)

PLUGIN = "rediskv"
#: First and largest page of a scan (``ZRANGEBYLEX ... LIMIT``), doubling in between.
SCAN_FIRST, SCAN_MAX = 128, 2048
#: Most keys, and about the most value bytes, per MSET/ZADD/DEL/ZREM command in a commit.
BATCH, BATCH_BYTES = 1000, 8 << 20

T = TypeVar("T")
Item = Tuple[bytes, bytes]
_CONN_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def _chunks(pairs: List[Tuple[bytes, bytes]]) -> Iterator[List[Tuple[bytes, bytes]]]:
    """Consecutive runs of at most ``BATCH`` pairs and about ``BATCH_BYTES`` of values."""
    run: List[Tuple[bytes, bytes]] = []
    size = 0
    for pair in pairs:
        run.append(pair)
        size += len(pair[1])
        if len(run) >= BATCH or size >= BATCH_BYTES:
            yield run
            run, size = [], 0
    if run:
        yield run


def _merge(db: Iterator[Item], overlay: List[Tuple[bytes, Optional[bytes]]]) -> Generator[Item, None, None]:
    """Merge sorted stored items with sorted buffered writes (``None`` = deleted); writes win."""
    i, n = 0, len(overlay)
    for key, value in db:
        while i < n and overlay[i][0] < key:
            k, v = overlay[i]
            i += 1
            if v is not None:
                yield k, v
        if i < n and overlay[i][0] == key:
            k, v = overlay[i]
            i += 1
            if v is not None:
                yield k, v
            continue
        yield key, value
    for k, v in overlay[i:]:
        if v is not None:
            yield k, v


def _take(items: Generator[Item, None, None], n: int) -> Iterator[Item]:
    """The first ``n`` of ``items``, reading no further (closed once taken or when this is closed)."""
    with closing(items):
        if n <= 0:
            return
        for item in items:
            yield item
            n -= 1
            if n <= 0:
                return


class RedisStore:
    """The store: a blocking connection pool and the key layout."""

    def __init__(
        self,
        url: str,
        prefix: str = "sectorhooks:",
        pool_size: int = 16,
        pool_timeout: float = 10.0,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        client_name: str = "sectorhooks-rediskv",
    ):
        self.prefix = prefix.encode()
        self.pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=pool_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            client_name=client_name,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.01), 2),
        )
        self.client = redis.Redis(connection_pool=self.pool)
        kw = self.pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
        self.where = f"redis {where} prefix {prefix!r}"
        self._collections: Dict[str, RedisCollection] = {}
        with self.errors("connect"):
            self.client.ping()

    def __repr__(self) -> str:
        return f"<rediskv {self.where}>"

    # --- plumbing -------------------------------------------------------------------

    def data_key(self, name: str, key: bytes) -> bytes:
        return b"%sd:%s:%s" % (self.prefix, name.encode(), key)

    def index_key(self, name: str) -> bytes:
        return b"%si:%s" % (self.prefix, name.encode())

    def version_key(self, name: str) -> bytes:
        return b"%sv:%s" % (self.prefix, name.encode())

    def unavailable(self, phase: str, exc: BaseException) -> StoreUnavailable:
        cls = CommitOutcomeUnknown if phase == "commit" else StoreUnavailable
        tail = (
            "the transaction may or may not have been applied"
            if phase == "commit"
            else "nothing was committed"
        )
        return cls(f"plugin {PLUGIN!r} ({self.where}): Redis unavailable during {phase} ({exc}); {tail}")

    @contextmanager
    def errors(self, phase: str) -> Iterator[None]:
        """Map redis-py errors to the SPI's: connection trouble is ``StoreUnavailable``."""
        try:
            yield
        except KVError:
            raise
        except _CONN_ERRORS as exc:
            raise self.unavailable(phase, exc) from exc
        except redis.RedisError as exc:
            raise KVError(f"plugin {PLUGIN!r} ({self.where}): {phase} failed: {exc}") from exc

    def page(self, name: str, lo: bytes, hi: Optional[bytes], n: int) -> List[Any]:
        """Arguments of one ``ZRANGEBYLEX``: ``lo`` is ``[key`` or ``(key``."""
        return ["ZRANGEBYLEX", self.index_key(name), lo, b"+" if hi is None else b"(" + hi, "LIMIT", 0, n]

    # --- the protocol ---------------------------------------------------------------

    def open_collection(self, name: str) -> RedisCollection:
        """The collection ``name`` (keys appear with its first put)."""
        check_collection_name(name, PLUGIN)
        coll = self._collections.get(name)
        if coll is None:
            coll = self._collections.setdefault(name, RedisCollection(self, name))
        return coll

    def view(self, fn: Callable[[RedisStoreTxn], T]) -> T:
        """Read-only transaction; its reads are validated at the end (may conflict)."""
        return self._run(fn, writable=False)

    def update(self, fn: Callable[[RedisStoreTxn], T]) -> T:
        """Optimistic read-write transaction across collections (WATCH/MULTI/EXEC)."""
        return self._run(fn, writable=True)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.disconnect()

    def _run(self, fn: Callable[[RedisStoreTxn], T], writable: bool) -> T:
        txn = RedisStoreTxn(self, writable)
        try:
            result = fn(txn)
            txn.check()
            txn.commit()
            return result
        finally:
            txn.release()

    def scan_plain(
        self, name: str, prefix: bytes, after: Optional[bytes], limit: Optional[int]
    ) -> Iterator[Item]:
        """Scan outside a transaction: each page is one ``ZRANGEBYLEX`` and one ``MGET``."""
        start, inclusive, hi, left = scan_range(prefix, after, limit)
        lo, n = (b"[" if inclusive else b"(") + start, SCAN_FIRST
        while left is None or left > 0:
            if left is not None:
                n = min(n, left)
            with self.errors("scan"):
                keys = self.client.execute_command(*self.page(name, lo, hi, n))
                values = self.client.mget([self.data_key(name, k) for k in keys]) if keys else []
            for k, v in zip(keys, values):
                if v is not None:  # deleted between the two commands
                    if left is not None:
                        left -= 1
                    yield k, cast(bytes, v)
            if len(keys) < n:
                return
            lo, n = b"(" + keys[-1], min(n * 2, SCAN_MAX)


class RedisStoreTxn:
    """One transaction: a connection, the watched keys, the buffered writes."""

    def __init__(self, store: RedisStore, writable: bool):
        self.store, self.writable = store, writable
        self.done = False
        self.conn: Any = None
        self.watched: Set[bytes] = set()
        self.read_rounds = 0
        self.buf: Dict[str, Dict[bytes, Optional[bytes]]] = {}
        self._views: Dict[str, RedisTxn] = {}

    def check(self, write: bool = False) -> None:
        if self.done:
            raise KVError(f"plugin {PLUGIN!r}: transaction already finished; use the txn only inside fn")
        if write and not self.writable:
            raise KVError(f"plugin {PLUGIN!r}: view transactions are read-only; use update() to write")

    def collection(self, name: str) -> RedisTxn:
        self.check()
        view = self._views.get(name)
        if view is None:
            check_collection_name(name, PLUGIN)
            view = self._views[name] = RedisTxn(self, name)
        return view

    def call(self, phase: str, commands: Sequence[Sequence[Any]]) -> List[Any]:
        """Send ``commands`` pipelined on this transaction's connection; return every reply."""
        with self.store.errors(phase):
            if self.conn is None:
                self.conn = self.store.pool.get_connection()
            conn = self.conn
            conn.send_packed_command(conn.pack_commands(commands))
            return [conn.read_response() for _ in commands]

    def watch_and(self, keys: Sequence[bytes], command: Sequence[Any]) -> Any:
        """``WATCH`` the keys not yet watched, then run ``command``, in one round trip."""
        new = [k for k in keys if k not in self.watched]
        cmds: List[Sequence[Any]] = [("WATCH", *new)] if new else []
        cmds.append(command)
        replies = self.call("read", cmds)
        self.watched.update(new)
        self.read_rounds += 1
        return replies[-1]

    def read(self, name: str, key: bytes) -> Optional[bytes]:
        self.check()
        buf = self.buf.get(name)
        if buf is not None and key in buf:
            return buf[key]
        dk = self.store.data_key(name, key)
        value: Optional[bytes] = self.watch_and([dk], ("GET", dk))
        return value

    def write(self, name: str, key: bytes, value: Optional[bytes]) -> None:
        self.check(write=True)
        self.buf.setdefault(name, {})[key] = value

    def scan(self, name: str, prefix: bytes, after: Optional[bytes], limit: Optional[int]) -> Iterator[Item]:
        start, inclusive, hi, left = scan_range(prefix, after, limit)
        buf = self.buf.get(name, {})
        overlay = sorted(
            (k, v)
            for k, v in buf.items()
            if (k >= start if inclusive else k > start) and (hi is None or k < hi)
        )
        # the first page asks for what the scan may return: buffered deletes can only make it short
        first = SCAN_FIRST if left is None else min(SCAN_FIRST, left)
        merged = _merge(self._scan_stored(name, (b"[" if inclusive else b"(") + start, hi, first), overlay)
        return merged if left is None else _take(merged, left)

    def _scan_stored(self, name: str, lo: bytes, hi: Optional[bytes], n: int) -> Iterator[Item]:
        watch = [self.store.index_key(name), self.store.version_key(name)]
        while True:
            self.check()
            keys = self.watch_and(watch, self.store.page(name, lo, hi, n))
            if keys:
                values = self.watch_and([], ("MGET", *[self.store.data_key(name, k) for k in keys]))
                for k, v in zip(keys, values):
                    if v is not None:  # removed meanwhile: the version WATCH fails the commit
                        yield k, v
            if len(keys) < n:
                return
            lo, n = b"(" + keys[-1], min(n * 2, SCAN_MAX)

    def commit(self) -> None:
        """``MULTI``, the buffered writes, ``EXEC``; or just validate/unwatch the reads."""
        self.done = True
        store = self.store
        ops: List[Sequence[Any]] = []
        for name, buf in self.buf.items():
            index = store.index_key(name)
            puts = [(k, v) for k, v in buf.items() if v is not None]
            dels = [k for k, v in buf.items() if v is None]
            for pairs in _chunks(puts):
                ops.append(("MSET", *[x for k, v in pairs for x in (store.data_key(name, k), v)]))
                ops.append(("ZADD", index, *[x for k, _ in pairs for x in (0, k)]))
            for i in range(0, len(dels), BATCH):
                gone = dels[i : i + BATCH]
                ops.append(("DEL", *[store.data_key(name, k) for k in gone]))
                ops.append(("ZREM", index, *gone))
            if buf:
                ops.append(("INCR", store.version_key(name)))
        if not ops:
            if not self.watched:
                return
            if not self.writable and self.read_rounds <= 1:  # one read is consistent by itself
                self.call("read", [("UNWATCH",)])
                self.watched.clear()
                return
        self._alive()
        replies = self.call("commit", [("MULTI",), *ops, ("EXEC",)])
        self.watched.clear()
        if replies[-1] is None:
            what = "wrote" if self.writable else "changed what this view read"
            raise TransactionConflict(
                f"plugin {PLUGIN!r} ({store.where}): a concurrent client {what} a watched key; "
                "nothing was written, retry"
            )

    def _alive(self) -> None:
        """Fail before sending ``EXEC`` if the server already closed this connection."""
        if self.conn is None:
            return
        why = "unexpected data on the connection"
        try:
            dead = self.conn.can_read(timeout=0)
        except Exception as exc:
            dead, why = True, str(exc)
        if dead:
            self.conn.disconnect()
            raise self.store.unavailable("pre-commit check", RuntimeError(why))

    def release(self) -> None:
        """Give the connection back, without leftover WATCHes."""
        self.done = True
        conn, self.conn = self.conn, None
        if conn is None:
            return
        if self.watched and getattr(conn, "_sock", None) is not None:  # a dead one forgot its WATCHes
            try:
                conn.send_command("UNWATCH")
                conn.read_response()
            except Exception:
                conn.disconnect()
        self.watched.clear()
        self.store.pool.release(conn)


class RedisTxn(GetFromPeek):
    """One collection inside a :class:`RedisStoreTxn`."""

    def __init__(self, parent: RedisStoreTxn, name: str):
        self._parent, self.name = parent, name

    def peek(self, key: bytes) -> Optional[bytes]:
        return self._parent.read(self.name, check_key(key))

    def put(self, key: bytes, value: bytes) -> None:
        self._parent.write(self.name, check_key(key), check_value(value))

    def delete(self, key: bytes) -> None:
        self._parent.write(self.name, check_key(key), None)

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> Iterator[Item]:
        self._parent.check()
        return self._parent.scan(self.name, prefix, after, limit)


class RedisCollection(GetFromPeek):
    """A named collection; plain operations are single commands or one ``MULTI``."""

    def __init__(self, store: RedisStore, name: str):
        self._store, self.name = store, name

    def __repr__(self) -> str:
        return f"<rediskv collection {self.name!r} in {self._store.where}>"

    def peek(self, key: bytes) -> Optional[bytes]:
        dk = self._store.data_key(self.name, check_key(key))
        with self._store.errors("read"):
            value = self._store.client.get(dk)
        return cast(Optional[bytes], value)

    def put(self, key: bytes, value: bytes) -> None:
        key, value = check_key(key), check_value(value)
        with self._store.errors("write"):
            pipe = self._store.client.pipeline(transaction=True)
            pipe.set(self._store.data_key(self.name, key), value)
            pipe.zadd(self._store.index_key(self.name), {key: 0})
            pipe.incr(self._store.version_key(self.name))
            pipe.execute()

    def delete(self, key: bytes) -> None:
        key = check_key(key)
        with self._store.errors("write"):
            pipe = self._store.client.pipeline(transaction=True)
            pipe.delete(self._store.data_key(self.name, key))
            pipe.zrem(self._store.index_key(self.name), key)
            pipe.incr(self._store.version_key(self.name))
            pipe.execute()

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> Iterator[Item]:
        return self._store.scan_plain(self.name, prefix, after, limit)

    def view(self, fn: Callable[[RedisTxn], T]) -> T:
        return self._store.view(lambda st: fn(st.collection(self.name)))

    def update(self, fn: Callable[[RedisTxn], T]) -> T:
        return self._store.update(lambda st: fn(st.collection(self.name)))
