"""A shared pause of the cyclic GC. No longer on sqlsync's write path: it does not pay.

sqlsync used to pause the GC while a batch's rows were built. An in-run A/B on
``benchmarks/bench_sqlsync.py``'s rows (100,000 changes, with and without the pause, alternating)
shows no gain: x0.89-1.01 on this host's heap, x0.86-0.98 with 2 million extra objects on it.
Kept, unused, with its test (``tests/sqlsync/test_sqlsync_faults.py``) until both are retired.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from typing import Iterator

_GC_LOCK = threading.Lock()
_gc_pausers = 0  # sinks building rows now
_gc_was_enabled = False  # the GC's state before the first of them paused it


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC (only if it runs) for the ``with`` block.

    Sinks build rows in several threads at once: the first one in pauses the GC, the last one out
    restores what the first found (so a GC the host turned off stays off).
    """
    global _gc_pausers, _gc_was_enabled
    with _GC_LOCK:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()
