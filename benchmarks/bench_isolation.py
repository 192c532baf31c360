"""What process isolation costs a syncer: delivery through a worker process vs in a thread.

The same 100,000 changes (20,000 with ``--quick``) are written once into a SQLite KV's change
log; then, from a copy of that KV each time, the same ``sqlsync`` SQLite sink delivers them all,
once with ``Isolation = "process"`` (the default: hooks and Flush in a supervised worker process,
the batch sent as the log's own bytes) and once with ``Isolation = "thread"`` (hooks called in
the dispatcher's thread). Timed from the moment the first 500 entries are delivered (either way
imports SQLAlchemy and opens the sink on its first flush) until the cursor reaches the head.
Alternating runs, medians; the ratio is process / thread.

Run standalone: ``python benchmarks/bench_isolation.py [--quick]``.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

from sectorhooks.config import DBConfig, HostConfig, PluginsConfig, SyncerConfig, SyncSettings
from sectorhooks.runtime import Runtime
from sectorhooks_spec import AllocatedSector, LatestState, SectorID

ROOT = Path(__file__).resolve().parents[1]
CONTRIB = ROOT / "contrib_plugins"
SECTORS = 1000
WRITERS = 8
WARM_UP = 500  # entries delivered before the clock starts


def _config(data: Path, isolation: str, syncing: bool = True) -> HostConfig:
    syncers = (SyncerConfig("mirror", "sqlsync", {"url": f"sqlite:///{data / 'mirror.sqlite'}"}, isolation),)
    return HostConfig(
        path="<bench>",
        data_dir=data,
        plugins=PluginsConfig(
            dirs=(CONTRIB / "sqlkv", CONTRIB / "sqlsync"), bundled=False, entry_points=False
        ),
        db=DBConfig(plugin_name="sqlkv", meta={"url": f"sqlite:///{data / 'kv.sqlite3'}"}),
        syncers=syncers if syncing else (),
        sync=SyncSettings(backoff_max=1.0),
    )


def _write_log(data: Path, changes: int) -> None:
    """``changes`` changes in the KV's log (no syncer configured: nothing trims it)."""
    with Runtime.open(_config(data, "thread", syncing=False), filestores=False, start_sync=False) as rt:
        for start in range(0, SECTORS, 100):
            rt.state.init_sectors([AllocatedSector(SectorID(1000, n), 8) for n in range(start, start + 100)])
        per_writer = (changes - SECTORS // 100) // WRITERS

        def write(k: int) -> None:  # several writers: their changes share group commits
            for i in range(per_writer):
                n = (k + i * WRITERS) % SECTORS
                rt.state.update(SectorID(1000, n), latest_state=LatestState(f"S{i % 12}", worker=f"w{k}"))

        threads = [threading.Thread(target=write, args=(k,)) for k in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _deliver(source: Path, isolation: str, changes: int) -> float:
    """Changes/s delivering the whole log of ``source`` (copied) to a fresh sink."""
    data = Path(tempfile.mkdtemp(prefix=f"bench-iso-{isolation}-"))
    try:
        for f in source.glob("kv.sqlite3*"):
            shutil.copy(f, data / f.name)
        with Runtime.open(_config(data, isolation), filestores=False, start_sync=False) as rt:
            head = rt.sync.log.head()
            rt.sync.start()
            if not rt.sync.wait_ready(120):
                raise RuntimeError("the worker did not start")
            # Warm up: the first flushes import SQLAlchemy and open the sink (once per process).
            dispatcher = rt.sync.dispatcher("mirror")
            deadline = time.monotonic() + 120
            while dispatcher.cursor < WARM_UP and time.monotonic() < deadline:
                time.sleep(0.001)
            t0, first = time.perf_counter(), dispatcher.cursor
            if not rt.sync.wait_idle(600):
                raise RuntimeError(f"the sink did not catch up: {rt.sync.status()}")
            seconds = time.perf_counter() - t0
            diffs = rt.sync.verify("mirror")
            if diffs:
                raise RuntimeError(f"the sink differs from the KV: {diffs[:3]}")
        return (head - first) / seconds
    finally:
        shutil.rmtree(data, ignore_errors=True)


def run(quick: bool) -> List[Dict[str, Any]]:
    """Benchmark rows (see benchmarks/run.py)."""
    changes, pairs = (20_000, 1) if quick else (100_000, 5)
    source = Path(tempfile.mkdtemp(prefix="bench-iso-log-"))
    try:
        _write_log(source, changes)
        process, thread = [], []
        for _ in range(pairs):
            thread.append(_deliver(source, "thread", changes))
            process.append(_deliver(source, "process", changes))
    finally:
        shutil.rmtree(source, ignore_errors=True)
    p, t = statistics.median(process), statistics.median(thread)
    return [
        {
            "group": "isolation",
            "name": f"{changes:,} changes delivered to a sqlsync SQLite sink, Isolation process vs thread;"
            f" median of {pairs}",
            "ours": p,
            "baseline": t,
            "baseline_name": "same plugin, hooks in the dispatcher's thread",
            "ratio": p / t,
            "unit": "changes/s",
            "goal": 0.8,
        }
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run("--quick" in sys.argv), title="bench_isolation")
