"""Fault injection around a *real* store: the transaction function dies after its first write(s).

The wrapped store is the real backend (Redis, PostgreSQL); only the ``Txn`` handed to the
registry's transaction function is wrapped, so the crash happens exactly "between the writes of
a registration", inside the backend's real transaction.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional


class Crash(Exception):
    """The injected failure."""


class _Coll:
    def __init__(self, inner: Any, owner: _FaultyStore):
        self._inner, self._owner = inner, owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put(self, key: bytes, value: bytes) -> None:
        self._inner.put(key, value)
        self._owner.after_put()


class _Txn:
    def __init__(self, inner: Any, owner: _FaultyStore):
        self._inner, self._owner = inner, owner

    def collection(self, name: str) -> _Coll:
        return _Coll(self._inner.collection(name), self._owner)


class _FaultyStore:
    def __init__(self, store: Any, after_puts: int = 1):
        self.store, self.after_puts, self.puts = store, after_puts, 0

    def open_collection(self, name: str) -> Any:
        return self.store.open_collection(name)

    def view(self, fn: Callable[[Any], Any]) -> Any:
        return self.store.view(fn)

    def update(self, fn: Callable[[Any], Any]) -> Any:
        self.puts = 0
        return self.store.update(lambda txn: fn(_Txn(txn, self)))

    def close(self) -> None:
        self.store.close()

    def after_put(self) -> None:
        self.puts += 1
        if self.puts == self.after_puts:
            self.fault()

    def fault(self) -> None:
        raise NotImplementedError


class CrashingStore(_FaultyStore):
    """Raises :class:`Crash` right after the ``after_puts``-th put of a transaction."""

    def fault(self) -> None:
        raise Crash(f"injected crash after put #{self.puts}")


class PausingStore(_FaultyStore):
    """After the ``after_puts``-th put, touches ``marker`` and hangs (the test kills the process)."""

    def __init__(self, store: Any, after_puts: int = 1, marker: Optional[Path] = None, seconds: float = 60):
        super().__init__(store, after_puts)
        self.marker, self.seconds = marker, seconds

    def fault(self) -> None:
        if self.marker is not None:
            self.marker.touch()
        time.sleep(self.seconds)
