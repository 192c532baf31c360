"""atomic_counter: named counters over JSON-RPC, kept in the host's KV store.

``AtomicCounter.Incr(name, delta=1)``, ``Decr(name, delta=1)`` return the new value,
``Get(name)`` the current one (0 if never set), ``Reset(name)`` sets it to 0 and returns the old
one. Each change is one ``kvstore.update`` transaction (read, add, write), retried by the host on
conflict, so counts stay exact with many clients, several server workers or several replicas
sharing one KV. Values are signed 64-bit, stored as decimal text in the collection
``atomic_counter``. ``Get`` needs a read token; the others a write token.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

from sectorhooks_spec import KVStore, StoreTxn

COLLECTION = "atomic_counter"
MAX_NAME_BYTES = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_kv: Optional[KVStore] = None


class CounterError(ValueError):
    """A bad counter name or delta; the gateway answers it as invalid params."""

    rpc_code = -32602


def setup(config: Mapping[str, Any], kvstore: Optional[KVStore]) -> None:
    """``onInit``: keep the host's KV store."""
    global _kv
    _kv = kvstore


def shutdown() -> None:
    """``onShutdown``: forget the store (the host closes it)."""
    global _kv
    _kv = None


def handler() -> Tuple[str, AtomicCounter]:
    """``Handler()``: serve :class:`AtomicCounter` as the ``AtomicCounter`` namespace."""
    if _kv is None:
        raise RuntimeError("atomic_counter needs the host's KV store; run it under `sectorhooks serve`")
    return "AtomicCounter", AtomicCounter(_kv)


def _key(name: str) -> bytes:
    key = name.encode("utf-8", "surrogatepass")
    if not 0 < len(key) <= MAX_NAME_BYTES:
        raise CounterError(f"counter name must be 1-{MAX_NAME_BYTES} bytes of UTF-8, got {len(key)}")
    return key


class AtomicCounter:
    """The JSON-RPC handler: every public method is ``AtomicCounter.<Method>``."""

    __sectorhooks_perms__ = {"Get": "read"}

    def __init__(self, kvstore: KVStore):
        self._kv = kvstore

    def _add(self, name: str, delta: int) -> int:
        key = _key(name)

        def fn(txn: StoreTxn) -> int:
            coll = txn.collection(COLLECTION)
            raw = coll.peek(key)
            value = (int(raw) if raw is not None else 0) + delta
            if not INT64_MIN <= value <= INT64_MAX:
                raise CounterError(f"counter {name!r} would overflow int64 ({value})")
            coll.put(key, b"%d" % value)
            return value

        return self._kv.update(fn)

    def Incr(self, name: str, delta: int = 1) -> int:
        """Add ``delta`` to counter ``name``; returns the new value."""
        return self._add(name, delta)

    def Decr(self, name: str, delta: int = 1) -> int:
        """Subtract ``delta`` from counter ``name``; returns the new value."""
        return self._add(name, -delta)

    def Get(self, name: str) -> int:
        """The value of counter ``name`` (0 if never set)."""
        key = _key(name)
        raw = self._kv.view(lambda txn: txn.collection(COLLECTION).peek(key))
        return int(raw) if raw is not None else 0

    def Reset(self, name: str) -> int:
        """Set counter ``name`` to 0; returns the value it had."""
        key = _key(name)

        def fn(txn: StoreTxn) -> int:
            coll = txn.collection(COLLECTION)
            raw = coll.peek(key)
            coll.delete(key)
            return int(raw) if raw is not None else 0

        return self._kv.update(fn)
