"""Optimistic transactions for the registry: run ``fn`` in ``store.update`` and retry conflicts.

``open_kvstore`` already retries, but the registry also runs over stores opened straight from a
plugin (tests, tools), so it retries itself: bounded attempts and time, jittered backoff. A
``CommitOutcomeUnknown`` is not retried (the write may have applied); every registry write is
written so that applying it twice is harmless anyway, except a secret rotation, whose caller
sees the error and rotates again.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from sectorhooks_spec.kvstore import CommitOutcomeUnknown, KVStore, StoreTxn

from ..errors import KVRetryExhausted, TransactionConflict

T = TypeVar("T")

MAX_ATTEMPTS = 200
MAX_SECONDS = 30.0
BACKOFF_BASE, BACKOFF_MAX = 0.002, 0.1


def _retry(run: Callable[[], T], what: str) -> T:
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return run()
        except CommitOutcomeUnknown:
            raise
        except TransactionConflict as exc:
            elapsed = time.monotonic() - start
            if attempt >= MAX_ATTEMPTS or elapsed >= MAX_SECONDS:
                raise KVRetryExhausted(what, attempt, elapsed, exc) from exc
            cap = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(attempt, 10))
            time.sleep(random.uniform(0, cap))


def update(store: KVStore, fn: Callable[[StoreTxn], T], what: str = "registry") -> T:
    """``store.update(fn)``, retried on conflict; ``fn`` must only read and write through its txn."""
    return _retry(lambda: store.update(fn), what)


def view(store: KVStore, fn: Callable[[StoreTxn], T], what: str = "registry") -> T:
    """``store.view(fn)``, retried on conflict (rediskv validates reads with WATCH)."""
    return _retry(lambda: store.view(fn), what)
