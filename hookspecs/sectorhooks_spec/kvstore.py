"""The KVStore protocol a ``KVStore`` plugin's ``Constructor(meta)`` returns.

After damocles-manager's ``kvstore.DB``: named collections of ``bytes -> bytes``, prefix scans in
byte order, and transactions. ``update`` is optimistic: a backend that detects a conflict raises
:class:`~sectorhooks_spec.errors.TransactionConflict` and writes nothing; the host retries the
whole function with a bounded, jittered backoff. ``view`` sees one consistent snapshot where the
backend can give it. A lost connection is :class:`~sectorhooks_spec.errors.StoreUnavailable`,
``get`` of a missing key is :class:`~sectorhooks_spec.errors.KeyNotFound`.

A transaction may touch several collections of one store (``txn.collection(name)``): that is
how the host writes a sector's state and its change-log entry atomically.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Protocol, Tuple, TypeVar, runtime_checkable

T = TypeVar("T")

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

    def scan(self, prefix: bytes = b"") -> KVIterator:
        """Every ``(key, value)`` whose key starts with ``prefix``, keys in byte order."""
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
