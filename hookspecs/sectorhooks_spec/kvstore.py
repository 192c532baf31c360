"""The KVStore protocol a ``KVStore`` plugin's ``Constructor(meta)`` returns.

After damocles-manager's ``kvstore.DB``: named collections of ``bytes -> bytes``, prefix scans in
byte order (paged: keys after a given one, at most ``limit`` items), and transactions. ``update``
is optimistic: a backend that detects a conflict raises
:class:`~sectorhooks_spec.errors.TransactionConflict` and writes nothing; the host retries the
whole function with a bounded, jittered backoff. ``view`` sees one consistent snapshot where the
backend can give it. A lost connection is :class:`~sectorhooks_spec.errors.StoreUnavailable`,
``get`` of a missing key is :class:`~sectorhooks_spec.errors.KeyNotFound`.

**Threads and processes.** A store must be safe to use from several threads at once (the host
calls it from its RPC threads, the state writer and every sync dispatcher), and a database
must be safe to open from several processes at once: ``sectorhooks token create`` and ``sync
status|retry|verify`` open the same ``[Common.DB]`` while ``serve`` runs, and several host
replicas may share one store. A backend that allows one process at a time (``dbm``, a plain
file) cannot be the host's KV store; serialize writes inside the backend, never by assuming one
caller. ``update``'s optimistic conflict (``TransactionConflict``) is how concurrent writers meet.

A transaction may touch several collections of one store (``txn.collection(name)``): that is
how the host writes a sector's state and its change-log entry atomically.

Rules every bundled backend keeps (and the conformance suite checks):

* collection names match :data:`COLLECTION_NAME_RE` (1-128 of ``A-Z a-z 0-9 _ . / -``); keys are
  ``bytes`` of at most :data:`MAX_KEY_SIZE` bytes (the portable limit: SQL indexes cap key size),
  values are ``bytes`` of any size the server accepts. Anything else is a ``TypeError`` /
  ``ValueError`` raised before touching the store (:mod:`sectorhooks_spec.backend` has the
  checks: ``check_collection_name``, ``check_key``, ``check_value``).
* ``scan(prefix, after=, limit=)`` pages in byte order: keys greater than ``after``, at most
  ``limit`` of them, read from the backend's index (see :meth:`Txn.scan`); a walk of pages,
  each starting after the last key of the one before, yields exactly the full scan.
* the ``Txn`` given to ``fn`` and the iterators it returns are valid only while ``fn`` runs.
* a ``put``/``delete`` on a ``view`` transaction raises :class:`~sectorhooks_spec.errors.KVError`.
* writes made while a scan of the same transaction is being iterated may or may not be seen by
  that scan; writes made before the scan started are.
* ``view`` may also raise ``TransactionConflict`` on a backend without snapshots (rediskv checks
  its reads with ``WATCH``): retry it like an ``update``.
* do not call the store's plain methods (``collection.put`` ...) inside ``fn``: they run in their
  own transaction and may wait for the one ``fn`` is in (SQLite has one writer at a time).
* a connection lost before the commit is ``StoreUnavailable`` (nothing written, safe to retry);
  lost *during* the commit it is :class:`CommitOutcomeUnknown`: the transaction may or may not
  have been applied, so a non-idempotent ``fn`` must not be blindly retried.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator, Optional, Protocol, Sequence, Tuple, TypeVar, runtime_checkable

from .errors import CommitOutcomeUnknown as CommitOutcomeUnknown
from .errors import KeyNotFound as KeyNotFound  # defined with the other errors

T = TypeVar("T")

#: Valid collection names: portable across SQL columns, Redis key prefixes and file names.
COLLECTION_NAME_RE = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")

#: Longest key every bundled backend accepts (PostgreSQL and MariaDB index limits).
MAX_KEY_SIZE = 2048


#: A key and its value, as a scan yields them.
Item = Tuple[bytes, bytes]


@runtime_checkable
class KVIterator(Protocol):
    """Iterator over ``(key, value)`` in ascending byte order of keys; ``close()`` ends it early.

    Generators satisfy this protocol.
    """

    def __iter__(self) -> Iterator[Item]: ...

    def __next__(self) -> Item: ...

    def close(self) -> None: ...


@runtime_checkable
class Txn(Protocol):
    """Reads and writes on one collection; inside a transaction they see its own writes."""

    def get(self, key: bytes) -> bytes:
        """Value of ``key``; raises ``KeyNotFound`` when missing."""
        ...

    def peek(self, key: bytes) -> Optional[bytes]:
        """Value of ``key`` or ``None``."""
        ...

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value`` (both may be empty)."""
        ...

    def delete(self, key: bytes) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    def scan(
        self, prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> KVIterator:
        """Every ``(key, value)`` whose key starts with ``prefix``, keys in byte order; with
        ``after``, only keys greater than it (``after`` need not exist, nor start with ``prefix``),
        and at most ``limit`` items (``None``: all, 0: none).

        A page of a long collection is ``scan(prefix, after=last_key_of_previous_page,
        limit=n)``: a backend answers it from its index (``WHERE key > ? ... ORDER BY key LIMIT
        ?``, ``ZRANGEBYLEX (after``, a bisect) without reading the keys before ``after`` nor
        more than ``limit`` after it. ``after`` is checked like a key and ``limit`` must be an
        int >= 0 (:func:`sectorhooks_spec.backend.scan_range` does both and gives the range).

        A plugin written to the older ``scan(self, prefix=b"")`` still loads: the host finds,
        when it opens the store, that ``scan`` takes no ``after``/``limit`` keywords, logs once
        that the plugin's scans are not paged, and pages them itself by filtering a full
        ``scan(prefix)`` (correct, but every page reads from the prefix's first key).
        """
        ...


@runtime_checkable
class StoreTxn(Protocol):
    """A transaction over a whole store: ``collection(name)`` gives that collection's view."""

    def collection(self, name: str) -> Txn: ...


@runtime_checkable
class Collection(Txn, Protocol):
    """A named collection. Plain ``get``/``put``/... are each their own transaction."""

    name: str

    def view(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read-only transaction and return its result."""
        ...

    def update(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read-write transaction; commit if it returns, roll back if it raises.

        Raises ``TransactionConflict`` (nothing written) when a concurrent write got there first.
        """
        ...


@runtime_checkable
class KVStore(Protocol):
    """A key-value database: what ``[Common.DB]`` opens through a KVStore plugin."""

    def open_collection(self, name: str) -> Collection:
        """The collection ``name``, created if missing."""
        ...

    def view(self, fn: Callable[[StoreTxn], T]) -> T:
        """Read-only transaction across collections."""
        ...

    def update(self, fn: Callable[[StoreTxn], T]) -> T:
        """Optimistic read-write transaction across collections (see ``Collection.update``)."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


#: ``(collection, key, value expected there or None for absent)``: the condition of a guarded put.
Guard = Tuple[str, bytes, Optional[bytes]]


@runtime_checkable
class GuardedPut(Protocol):
    """An optional KVStore capability: compare one key, then write many, in one round trip.

    The host's state manager uses it for a group of changes it could compute from its cache
    (guarded by the change log's head), and a plain ``update`` otherwise.
    """

    def put_many_if(self, guard: Guard, items: Sequence[Tuple[str, bytes, bytes]]) -> bool:
        """If key ``guard[1]`` of collection ``guard[0]`` holds ``guard[2]`` (``None``: no such
        key), write every ``(collection, key, value)`` of ``items`` atomically (a key given twice
        keeps its last value) and return True; else write nothing and return False.

        Durable when it returns, like ``update``; raises what ``update`` raises
        (``TransactionConflict`` and ``StoreUnavailable`` mean nothing was written).
        """
        ...
