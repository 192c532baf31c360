"""Worker processes for the KV concurrency tests.

:func:`run_workers` starts ``count`` OS processes (forked where the platform allows, else
spawned); each opens its *own* store through the plugin's manifest Constructor (own
connections), reports ready, and runs each phase when the parent releases all of them together.
Phases: ``counter`` (N increments of one counter, each an ``update`` retried on conflict) and
``puts`` (N plain puts of the worker's own keys, timing each).
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

from kv import kvplugins
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

    start = time.perf_counter()
    for _ in range(n):
        retry_update(coll, increment, POLICY, on_conflict=seen)
    return {"worker": worker, "done": n, "conflicts": conflicts[0], "total": time.perf_counter() - start}


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


MODES: Dict[str, Callable[[Any, int, int], Dict[str, Any]]] = {"counter": counter, "puts": puts}


def child(
    plugin: str, meta: Mapping[str, Any], phases: Sequence[Tuple[str, int]], worker: int, conn: Any
) -> None:
    """Body of one worker process: open, report ready, run each phase on the parent's signal."""
    try:
        store = kvplugins.open_store(plugin, dict(meta))
        try:
            conn.send("ready")
            for mode, n in phases:
                if conn.recv() != "go":
                    return
                conn.send(MODES[mode](store, n, worker))
        finally:
            store.close()
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


def run_workers(
    plugin: str,
    meta: Mapping[str, Any],
    phases: Sequence[Tuple[str, int]],
    count: int = 8,
    timeout: float = 150,
) -> List[List[Dict[str, Any]]]:
    """Run ``phases`` in ``count`` processes started together; results per phase, per worker."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    pipes, procs = [], []
    for i in range(count):
        parent, kid = ctx.Pipe()
        proc = ctx.Process(target=child, args=(plugin, dict(meta), list(phases), i, kid), daemon=True)
        proc.start()
        kid.close()
        pipes.append(parent)
        procs.append(proc)

    def receive(pipe: Any) -> Any:
        if not pipe.poll(timeout):
            raise TimeoutError(f"a worker sent nothing for {timeout}s")
        msg = pipe.recv()
        if isinstance(msg, dict) and "error" in msg:
            raise AssertionError(f"worker failed:\n{msg['error']}")
        return msg

    try:
        for pipe in pipes:  # every store is open before any phase starts
            assert receive(pipe) == "ready"
        results = []
        for _ in phases:
            for pipe in pipes:
                pipe.send("go")
            results.append([receive(pipe) for pipe in pipes])
        for proc in procs:
            proc.join(timeout)
            assert proc.exitcode == 0, f"worker exit code {proc.exitcode}"
        return results
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
