"""Optimistic transactions for the registry: run ``fn`` in ``store.update`` and retry conflicts.

``open_kvstore`` already retries, but the registry also runs over stores opened straight from a
plugin (tests, tools), so it retries itself, through :func:`sectorhooks.kv.retry_update` with
:data:`POLICY` (bounded attempts and time, jittered backoff). A ``CommitOutcomeUnknown`` is not
retried (the write may have applied); every registry write is written so that applying it twice
is harmless anyway, except a secret rotation, whose caller sees the error and rotates again.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from sectorhooks_spec.kvstore import KVStore, StoreTxn

from ..kv import RetryPolicy, retry_update, retry_view

T = TypeVar("T")

#: Registry writes contend more (many hosts, one lease): more attempts, longer budget, waits up to 0.1 s.
POLICY = RetryPolicy(attempts=200, max_seconds=30.0, base_delay=0.004, max_delay=0.1)


def update(store: KVStore, fn: Callable[[StoreTxn], T], what: str = "registry") -> T:
    """``store.update(fn)``, retried on conflict; ``fn`` must only read and write through its txn."""
    return retry_update(store, fn, POLICY, what=what)


def view(store: KVStore, fn: Callable[[StoreTxn], T], what: str = "registry") -> T:
    """``store.view(fn)``, retried on conflict (rediskv validates reads with WATCH)."""
    return retry_view(store, fn, POLICY, what=what)
