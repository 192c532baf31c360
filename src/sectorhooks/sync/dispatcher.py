"""Dispatcher: one thread per syncer instance, delivering the change log from its cursor.

Each round reads one batch after the cursor, calls the syncer's hooks in log order, then its
``Flush``, and only then advances the cursor: at-least-once, in order. Failures:

* a hook raising on one event: what came before it is flushed and committed, the event is retried
  with exponential backoff (tenacity); after ``max_attempts`` it becomes a dead letter (or the
  syncer stops, with ``on_failure = "stop"``) and delivery goes on;
* ``Flush`` raising :class:`~sectorhooks_spec.RejectedChanges`: exactly the listed changes become
  dead letters, the rest counts as delivered;
* ``Flush`` raising anything else, a hook raising ``StoreUnavailable``, or the KV failing: the sink
  (or the store) is down; the batch is retried with backoff for as long as it takes, nothing is
  dead-lettered and the backlog waits in the log, not in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Set

from sectorhooks_spec import KVError

from ..changelog import ChangeLog, LogTrimmed
from ..config import SyncSettings
from .delivery import RETRY_BATCH, Delivery, Stopped, _Retry
from .records import LeaseLost, Records
from .runners import HookRunner, InProcessRunner
from .syncers import Lease, Syncer, describe

log = logging.getLogger(__name__)

RENEW_EVERY = 1.0  # seconds between lease renewals
REQUEST_POLL = 0.5  # seconds between looks for an operator's request (sync retry / backfill)
QUIET = 0.01  # seconds without a commit after which a lingering dispatcher delivers at once


class Dispatcher(Delivery):
    """Delivers the log to one syncer; ``step()`` is one round, the thread repeats it."""

    def __init__(
        self,
        syncer: Syncer,
        changelog: ChangeLog,
        records: Records,
        settings: SyncSettings,
        progress: threading.Condition,
        lease: Optional[Lease] = None,
        backfill: Optional[Callable[[Dispatcher], int]] = None,
        serve: Optional[Callable[[Dispatcher], None]] = None,
        runner: Optional[HookRunner] = None,
    ):
        self.syncer = syncer
        self.runner: HookRunner = runner if runner is not None else InProcessRunner(syncer)
        if hasattr(self.runner, "tick"):
            self.runner.tick = self.keep_lease  # a long call in a worker must not lose the lease
        self.log = changelog
        self.records = records
        self.settings = settings
        self.lease = lease
        self.cursor = 0
        self.state = "unavailable" if syncer.unavailable else "not started"
        self.last_error = syncer.unavailable
        self.lock = threading.RLock()  # one delivery at a time: rounds, retries, backfills
        self._progress = progress
        self._backfill = backfill
        self._serve = serve  # runs an operator's pending request, if any (see SyncService)
        self._next_serve = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._failures: Dict[int, int] = {}
        self._crashes: Dict[int, int] = {}
        self._crash_errors: Dict[int, str] = {}
        self._suspects: Set[int] = set()
        self.hang: Optional[Dict[str, Any]] = None
        self._renewed = 0.0
        self._fence: Optional[int] = None
        self._holding = False
        self._pos = 0
        self._loaded = False
        self._resume = False
        self._saved = -1  # cursor value last written to the KV
        self._saved_at = 0.0
        self._limit = min(settings.batch_size, RETRY_BATCH)  # entries per read (slow start)
        self._read = self._limit  # the limit of the last read
        # Counters of this process, for /metrics (cumulative; a restart begins at 0 again).
        self.delivered = 0  # events delivered and flushed
        self.dead_lettered = 0  # events put in dead letters
        self.retries = 0  # failed attempts (a batch, a Flush, a cursor write) that are tried again

    # --- thread -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread (a no-op for an unavailable syncer)."""
        if self.syncer.unavailable:
            self.state = "unavailable"
            self.last_error = self.syncer.unavailable
            return
        self._stopping.clear()
        if hasattr(self.runner, "start"):
            self.runner.start()  # a worker loads the plugin while the thread reads the first batch
        self._thread = threading.Thread(target=self._run, name=f"sync-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after its round (see :meth:`stop`)."""
        self._stopping.set()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the round in progress (flushing it), stop the thread and the syncer's worker;
        False if it is still busy (a hook hung in this thread)."""
        self._stopping.set()
        self._wake.set()
        stopped = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                busy = self.runner.busy()
                where = f" (in a hook on event {busy.seq} since {time.ctime(busy.since)})" if busy else ""
                log.warning("syncer %r did not stop within %.1fs%s", self.name, timeout, where)
                stopped = False
        self.runner.close()  # a worker still in a hook is killed; the thread then ends
        if not stopped and self._thread is not None:
            self._thread.join(1.0)
            stopped = not self._thread.is_alive()
        return stopped

    def keep_lease(self) -> None:
        """Renew the lease if due (also called while a long hook call runs in a worker)."""
        if self.lease is not None and self._holding and time.monotonic() - self._renewed >= RENEW_EVERY:
            if self.lease.renew():
                self._renewed = time.monotonic()
            else:
                self._holding = False  # our late cursor writes are refused by the fence

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        """The delivery thread was started here (it may have ended since: stopped or crashed)."""
        return self._thread is not None

    def notify(self) -> None:
        """New entries are in the log: wake up if idle."""
        self._wake.set()

    def _run(self) -> None:
        s = self.settings
        try:
            while not self._stopping.is_set():
                if self.lease is not None:
                    if not self._holding:
                        if not self.lease.acquire():
                            self.state = "standby"
                            self._stopping.wait(s.poll_interval)
                            continue
                        # Another replica may have moved the cursor while we waited.
                        self._holding, self._fence = True, self.lease.fence
                        self._renewed = time.monotonic()
                        self._loaded = False
                    else:
                        self.keep_lease()
                        if not self._holding:
                            continue
                if not self._loaded:
                    try:
                        self.load_cursor()
                    except Exception as exc:  # KV down, or a backfill the sink refused
                        self._failed(f"start: {describe(exc)}")
                        self._stopping.wait(s.backoff_max)
                        continue
                self._serve_requests()
                try:
                    n = self.step()
                except LeaseLost as exc:
                    log.warning("%s", exc)
                    self._holding = False
                    continue
                except Stopped:
                    self._wait_for_resume()
                    continue
                except _Retry:  # stopping while backing off
                    continue
                except LogTrimmed as exc:  # someone trimmed past us: backfill
                    log.warning("syncer %r: %s", self.name, exc)
                    self._loaded = False
                    continue
                except KVError as exc:  # reading the log failed: the KV is down
                    self._failed(f"KV store: {describe(exc)}")
                    self._stopping.wait(s.backoff_max)
                    continue
                if n == 0:
                    self._wake.wait(s.poll_interval)
                    self._wake.clear()
                elif n < self._read:  # a short read: the log is drained, let it grow
                    self._linger()
        except Exception:  # a bug: keep the host alive, show it in status
            log.exception("syncer %r dispatcher crashed", self.name)
            self.state = "crashed"
        finally:
            try:
                if self._loaded:
                    self.save_cursor()
            except Exception as exc:  # the KV is down: the next start re-delivers from the last save
                log.warning("syncer %r: cannot save its cursor on stop: %s", self.name, describe(exc))
            if self.lease is not None and self._holding:
                self.lease.release()
                self._holding = False

    def _linger(self) -> None:
        """Busy: let the next batch grow, for up to ``linger`` seconds (fewer, larger flushes
        and cursor writes; a sink rewrites each hot page once per flush, not once per change).

        Ends early once a full batch waits, or when the writers went quiet (no commit seen for
        ``QUIET`` seconds), so the last changes of a burst are not held back.
        """
        s = self.settings
        deadline = time.monotonic() + s.linger
        seen = self.log.newest
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.wait(min(QUIET, s.poll_interval, left)):
                return
            newest = self.log.newest
            if newest == seen or newest - self.cursor >= self._limit:
                return
            seen = newest

    def load_cursor(self) -> None:
        """Read the cursor from the KV; start at the log's beginning, or backfill if it was trimmed."""
        rec = self.records.cursor(self.name)
        floor, _ = self.log.bounds()
        self.cursor = rec["seq"] if rec else 0
        self.state = "running"
        if self.cursor + 1 < floor:
            if self._backfill is None:
                raise LogTrimmed(f"syncer {self.name!r} is behind the trimmed log and cannot backfill")
            log.warning(
                "syncer %r: its cursor %d is below the trimmed log (first entry %d); backfilling",
                self.name,
                self.cursor,
                floor,
            )
            self._backfill(self)
        elif rec is None:
            self.records.write_cursor(self.name, self._fence, seq=0, state="running")
        elif self._fence is not None and rec.get("fence") != self._fence:
            # Our lease token goes on the cursor at once: the previous holder's late cursor writes
            # are refused from now on, and a request it was running is known to be abandoned.
            self.records.write_cursor(self.name, self._fence)
        self._saved = self.cursor
        self._loaded = True

    # --- one round ------------------------------------------------------------------------------

    def step(self) -> int:
        """Deliver the next batch (with retries); returns how many entries it covered."""
        with self.lock:
            self._read = self._limit
            if self.runner.isolation == "process":  # the worker decodes them: no need here
                events: List[Any] = self.log.entries(self.cursor, self._read)
            else:
                events = self.log.events(self.cursor, self._read)
            if not events:
                if self.state != "stopped":
                    self.state = "idle"
                self.save_cursor()
                return 0
            self.state = "running"
            before = self.cursor
            failed = self._deliver_batch(events)
            # Slow start: a round that needed retries shrinks the next read, each clean round
            # doubles it up to batch_size (a failing sink never holds a full batch in memory).
            limit = self.settings.batch_size
            self._limit = min(limit, RETRY_BATCH) if failed else min(limit, self._limit * 2)
            return self.cursor - before  # a retried round covers only its first RETRY_BATCH

    def save_cursor(self) -> None:
        """Persist the in-memory cursor if it moved since the last save.

        Saves are batched (every ``SAVE_EVERY`` seconds, when idle, on stop): a crash then
        re-delivers at most that much, which at-least-once delivery allows, and the KV's single
        writer is not taken by a cursor write after every small batch.
        """
        if self.cursor != self._saved:
            self.records.write_cursor(self.name, self._fence, seq=self.cursor, state="running")
            self._saved, self._saved_at = self.cursor, time.monotonic()

    def _advanced(self, seq: int) -> None:
        self.cursor = seq
        self._failures = {k: v for k, v in self._failures.items() if k > seq}
        if self._crashes or self._suspects:
            self._crashes = {k: v for k, v in self._crashes.items() if k > seq}
            self._suspects = {k for k in self._suspects if k > seq}
        if self.hang is not None and self.hang["event"] <= seq:
            self.hang = None
            if self.state == "hung":
                self.state = "running"
        with self._progress:
            self._progress.notify_all()

    def _failed(self, error: str, state: str = "retrying") -> None:
        self.state, self.last_error = state, error
        self.retries += 1
        log.warning("syncer %r: %s", self.name, error)
        self._persist_error(state)

    def _persist_error(self, state: str) -> None:
        worker = self.runner.info()
        try:
            self.records.write_cursor(
                self.name,
                self._fence,
                state=state,
                error=self.last_error,
                error_at=time.time(),
                hung=self.hang,
                crashes=worker.get("crashes", 0),
                last_exit=worker.get("last_exit", ""),
            )
        except KVError as exc:  # the store itself is down; status shows the in-memory error
            log.debug("cannot record the error of %r: %s", self.name, exc)

    # --- out-of-band deliveries (retry dead letters, backfill) -------------------------------------

    def resume(self) -> bool:
        """Let a syncer stopped by ``on_failure = "stop"`` go on; True if it was stopped."""
        if self.state != "stopped":
            return False
        self._resume = True
        self.state = "resuming"  # not "stopped": wait_idle() must wait for it
        self._wake.set()
        return True

    def hung(self) -> Optional[Dict[str, Any]]:
        """``{"since", "event"}`` of a hook call running past ``HookTimeout`` now (in this thread),
        or of the last one whose worker was killed, until that event is delivered or dead-lettered."""
        busy = self.runner.busy()
        if busy is not None and time.monotonic() - busy.since_mono > self.settings.hook_timeout:
            return {"since": busy.since, "event": busy.seq}
        return self.hang

    @property
    def holding(self) -> bool:
        """This process delivers the syncer now (its dispatcher holds the lease, if there is one)."""
        return self.alive and (self.lease is None or self._holding)

    def _serve_requests(self) -> None:
        if self._serve is not None and time.monotonic() >= self._next_serve:
            self._next_serve = time.monotonic() + REQUEST_POLL
            self._serve(self)

    def _wait_for_resume(self) -> None:
        """Stopped: wait for :meth:`resume`, or for ``sync retry`` run by another process
        (a request it posts, or the persisted state ``resume``), then retry the event that
        stopped us."""
        while not self._stopping.is_set():
            self._serve_requests()
            if self._resume:
                break
            try:
                rec = self.records.cursor(self.name)
            except KVError:
                rec = None
            if rec is not None and rec.get("state") == "resume":
                break
            self._wake.wait(self.settings.poll_interval * 10)
            self._wake.clear()
        else:
            return
        self._resume = False
        self._failures.clear()
        self.state = "running"
        self.records.write_cursor(self.name, self._fence, state="running")
        log.info("syncer %r resumed", self.name)
