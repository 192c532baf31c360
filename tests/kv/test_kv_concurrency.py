"""Concurrency per backend: no lost update under contention; puts to different keys do not block.

Server and SQLite backends run 8 separate processes (each with its own store and connections);
memdb lives in one process, so it runs 8 threads on one store instead.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List

import pytest

from kv import kv_worker

WORKERS, INCREMENTS, PUTS = 8, 250, 200

pytestmark = pytest.mark.slow


def run_threads(store: Any, mode: str, n: int, count: int = WORKERS) -> List[Dict[str, Any]]:
    """The same work as ``run_processes``, on one store from ``count`` threads."""
    results: List[Dict[str, Any]] = []
    errors: List[BaseException] = []
    go = threading.Barrier(count)

    def work(i: int) -> None:
        try:
            go.wait()
            results.append(kv_worker.MODES[mode](store, n, i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert not errors, errors
    assert len(results) == count
    return results


def run(store_spec: Any, kv_store: Any, mode: str, n: int) -> List[Dict[str, Any]]:
    if store_spec.backend == "memdb":
        return run_threads(kv_store, mode, n)  # in-process store: 8 threads, not processes
    return kv_worker.run_workers(store_spec.plugin, store_spec.meta, [(mode, n)], WORKERS)[0]


def test_no_lost_update_under_contention(store_spec: Any, kv_store: Any) -> None:
    """8 workers x 250 read-modify-write increments of one counter end at exactly 2000."""
    results = run(store_spec, kv_store, "counter", INCREMENTS)
    assert sorted(r["worker"] for r in results) == list(range(WORKERS))
    assert all(r["done"] == INCREMENTS for r in results)
    final = kv_store.open_collection(kv_worker.COUNTER_COLLECTION).get(kv_worker.COUNTER_KEY)
    conflicts = sum(r["conflicts"] for r in results)
    print(f"{store_spec.backend}: counter={final.decode()} conflicts retried={conflicts}")
    assert final == b"%d" % (WORKERS * INCREMENTS)


def test_puts_to_different_keys_do_not_block_each_other(store_spec: Any, kv_store: Any) -> None:
    """8 workers x 200 plain puts of their own keys: all land, none waits long."""
    results = run(store_spec, kv_store, "puts", PUTS)
    slowest = max(r["slowest"] for r in results)
    print(f"{store_spec.backend}: slowest put {slowest * 1000:.1f} ms")
    keys = [k for k, _ in kv_store.open_collection("puts").scan()]
    assert keys == sorted(b"w%02d-%05d" % (w, i) for w in range(WORKERS) for i in range(PUTS))
    assert slowest < 2.0, f"a put waited {slowest:.2f}s for other writers"
