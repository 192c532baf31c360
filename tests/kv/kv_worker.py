"""A worker process for the KV concurrency tests (also imported by them for in-process threads).

Usage: ``python kv_worker.py MODE PLUGIN META_JSON N WORKER_ID``. It opens the store through the
plugin's manifest Constructor, prints ``ready``, waits for a line on stdin (so every worker
starts together), runs, and prints one JSON line with its result.

Modes: ``counter`` (N increments of one counter, each an ``update`` retried on conflict) and
``puts`` (N plain puts of this worker's own keys, timing each).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Dict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sectorhooks.kv import RetryPolicy, retry_update

COUNTER_COLLECTION, COUNTER_KEY = "conc", b"counter"
#: Generous on purpose: the test is about lost updates, not about the retry budget.
POLICY = RetryPolicy(attempts=100_000, max_seconds=150, base_delay=0.0005, max_delay=0.05)


def increment(t: Any) -> None:
    t.put(COUNTER_KEY, b"%d" % (int(t.peek(COUNTER_KEY) or b"0") + 1))


def counter(store: Any, n: int, worker: int) -> Dict[str, Any]:
    """``n`` increments; returns how many and how many conflicts were retried."""
    coll = store.open_collection(COUNTER_COLLECTION)
    conflicts = [0]

    def seen(attempt: int, exc: Exception) -> None:
        conflicts[0] += 1

    for _ in range(n):
        retry_update(coll, increment, POLICY, on_conflict=seen)
    return {"worker": worker, "done": n, "conflicts": conflicts[0]}


def puts(store: Any, n: int, worker: int) -> Dict[str, Any]:
    """``n`` plain puts of distinct keys; returns the slowest and the total time."""
    coll = store.open_collection("puts")
    slowest = 0.0
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        coll.put(b"w%02d-%05d" % (worker, i), b"v" * 100)
        slowest = max(slowest, time.perf_counter() - t0)
    return {"worker": worker, "done": n, "slowest": slowest, "total": time.perf_counter() - start}


MODES = {"counter": counter, "puts": puts}


def main(argv: Any) -> int:
    mode, plugin, meta, n, worker = argv[1], argv[2], json.loads(argv[3]), int(argv[4]), int(argv[5])
    import kvplugins

    store = kvplugins.open_store(plugin, meta)
    try:
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 2
        print(json.dumps(MODES[mode](store, n, worker)), flush=True)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
