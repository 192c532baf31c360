"""Dispatcher: one thread per syncer instance, delivering the change log from its cursor.

Each round reads one batch after the cursor, calls the syncer's hooks in log order, then its
``Flush``, and only then advances the cursor: at-least-once, in order. Follow a batch down
:meth:`Dispatcher.step` -> :meth:`~Dispatcher._deliver_batch` -> :meth:`~Dispatcher._attempt` ->
:meth:`~Dispatcher._flush_and_advance`. Failures:

* a hook raising on one event: what came before it is flushed and committed, the event is retried
  with exponential backoff (tenacity); after ``max_attempts`` it becomes a dead letter (or the
  syncer stops, with ``on_failure = "stop"``) and delivery goes on;
* ``Flush`` raising :class:`~sectorhooks_spec.RejectedChanges`: exactly the listed changes become
  dead letters, the rest counts as delivered;
* ``Flush`` raising anything else, a hook raising ``StoreUnavailable``, or the KV failing: the sink
  (or the store) is down; the batch is retried with backoff for as long as it takes, nothing is
  dead-lettered and the backlog waits in the log, not in memory;
* the worker process crashing or hanging on an event: that event is a *suspect*, delivered alone
  from then on; after ``max_crashes`` it becomes a dead letter without another call.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import tenacity

from sectorhooks_spec import KVError

from ..changelog import ChangeLog, Event, LogTrimmed, decoded
from ..changelog.events import AnyEvent
from ..config import SyncSettings
from ..errors import FlushFailed, SyncerStopped, SyncLeaseLost
from .records import Records
from .runners import CLOSED, HUNG, LOST, UNAVAILABLE, HookFailure, HookRunner, InProcessRunner
from .syncers import Syncer, SyncerLease, describe

log = logging.getLogger(__name__)

RENEW_EVERY = 1.0  # seconds between lease renewals
REQUEST_POLL = 0.5  # seconds between looks for an operator's request (sync retry / backfill)
QUIET = 0.01  # seconds without a commit after which a lingering dispatcher delivers at once
RETRY_BATCH = 100  # entries a failed round keeps retrying (the rest waits in the log)
SAVE_EVERY = 1.0  # seconds between cursor saves while busy (each is a KV write transaction)


class DispatcherState(str, enum.Enum):
    """A syncer's state, as :attr:`Dispatcher.state`, the cursor record's ``state`` and the
    ``state`` of ``sync status`` say it. A ``str``: JSON, tables and comparisons with a state
    read back from the KV see the plain value."""

    NOT_STARTED = "not started"  # its thread has not started (yet)
    RUNNING = "running"  # delivering (what every cursor save records)
    IDLE = "idle"  # delivered the whole log, waiting for commits
    RETRYING = "retrying"  # a batch, a Flush or the KV failed: backing off
    HUNG = "hung"  # a hook call ran past HookTimeout
    STOPPED = "stopped"  # on_failure = "stop" gave up on an event (status: no live host runs it)
    RESUMING = "resuming"  # stopped, told to go on; not yet running
    CRASHED = "crashed"  # the dispatcher thread died of a bug
    STANDBY = "standby"  # another replica holds the lease
    UNAVAILABLE = "unavailable"  # its plugin is missing, failed or of another kind
    NO_HOST = "no host"  # status only: no host ever delivered it
    RESUME = "resume"  # cursor record only: `sync retry` asks the host that stopped it to go on

    def __str__(self) -> str:
        return self.value


class _Retry(Exception):
    """Back off and try the rest of the batch again."""


def backoff(settings: SyncSettings) -> tenacity.wait.wait_base:
    """The wait after failed attempt ``n``: ``min(backoff_base * 2**(n-1), backoff_max)`` plus up
    to ``backoff_base`` of jitter."""
    return tenacity.wait_exponential(multiplier=settings.backoff_base, max=settings.backoff_max) + (
        tenacity.wait_random(0, settings.backoff_base)
    )


class Dispatcher:
    """Delivers the log to one syncer; ``step()`` is one round, the thread repeats it."""

    def __init__(
        self,
        syncer: Syncer,
        changelog: ChangeLog,
        records: Records,
        settings: SyncSettings,
        progress: threading.Condition,
        lease: Optional[SyncerLease] = None,
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
        self.state = DispatcherState.UNAVAILABLE if syncer.unavailable else DispatcherState.NOT_STARTED
        self.last_error = syncer.unavailable
        self.lock = threading.RLock()  # one delivery at a time: rounds, retries, backfills
        # The last hang ({"since", "event"}), until its event is delivered or dead-lettered.
        self.hang: Optional[Dict[str, Any]] = None
        # Counters of this process, for /metrics (cumulative; a restart begins at 0 again).
        self.delivered = 0  # events delivered and flushed
        self.dead_lettered = 0  # events put in dead letters
        self.retries = 0  # failed attempts (a batch, a Flush, a cursor write) that are tried again
        # The thread, and what wakes or stops it.
        self._progress = progress  # notified each time the cursor moves
        self._backfill = backfill
        self._serve = serve  # runs an operator's pending request, if any (see SyncService)
        self._next_serve = 0.0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._resume = False
        # The lease and the cursor.
        self._holding = False
        self._renewed = 0.0
        self._fence: Optional[int] = None  # our lease token, on every cursor write
        self._loaded = False
        self._saved = -1  # cursor value last written to the KV
        self._saved_at = 0.0
        self._limit = min(settings.batch_size, RETRY_BATCH)  # entries per read (slow start)
        self._read = self._limit  # the limit of the last read
        # The batch in delivery, and what failed in it.
        self._pos = 0  # events before it in the batch are flushed and behind the cursor
        self._failures: Dict[int, int] = {}  # seq -> raises so far
        self._crashes: Dict[int, int] = {}  # seq -> worker crashes and hangs so far
        self._crash_errors: Dict[int, str] = {}
        self._suspects: Set[int] = set()  # seqs to deliver alone (a worker died near them)

    # --- what others read and ask -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.syncer.name

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def started(self) -> bool:
        """The delivery thread was started here (it may have ended since: stopped or crashed)."""
        return self._thread is not None

    @property
    def holding(self) -> bool:
        """This process delivers the syncer now (its dispatcher holds the lease, if there is one)."""
        return self.alive and (self.lease is None or self._holding)

    @property
    def fence(self) -> Optional[int]:
        """The lease token this dispatcher's cursor writes carry (``None``: no lease)."""
        return self._fence

    @property
    def read_limit(self) -> int:
        """Entries the next round reads: ``RETRY_BATCH`` after a failed round, doubling with
        each clean one up to ``batch_size`` (slow start)."""
        return self._limit

    def hung(self) -> Optional[Dict[str, Any]]:
        """``{"since", "event"}`` of a hook call running past ``HookTimeout`` now (in this thread),
        or of the last one whose worker was killed, until that event is delivered or dead-lettered."""
        busy = self.runner.busy()
        if busy is not None and time.monotonic() - busy.since_mono > self.settings.hook_timeout:
            return {"since": busy.since, "event": busy.seq}
        return self.hang

    def notify(self) -> None:
        """New entries are in the log: wake up if idle."""
        self._wake.set()

    def use_fence(self, fence: Optional[int]) -> None:
        """Fence the cursor writes with lease token ``fence``: an operator action that took the
        lease while no thread delivers here (see :mod:`.operator`)."""
        self._fence = fence

    def resume(self) -> bool:
        """Let a syncer stopped by ``on_failure = "stop"`` go on; True if it was stopped."""
        if self.state is not DispatcherState.STOPPED:
            return False
        self._resume = True
        self.state = DispatcherState.RESUMING  # not "stopped": wait_idle() must wait for it
        self._wake.set()
        return True

    # --- thread -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread (a no-op for an unavailable syncer)."""
        if self.syncer.unavailable:
            self.state = DispatcherState.UNAVAILABLE
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

    def _run(self) -> None:
        s = self.settings
        try:
            while not self._stopping.is_set():
                if self.lease is not None:
                    if not self._holding:
                        if not self.lease.acquire():
                            self.state = DispatcherState.STANDBY
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
                except SyncLeaseLost as exc:
                    log.warning("%s", exc)
                    self._holding = False
                    continue
                except SyncerStopped:
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
            self.state = DispatcherState.CRASHED
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
            if rec is not None and rec.get("state") == DispatcherState.RESUME:
                break
            self._wake.wait(self.settings.poll_interval * 10)
            self._wake.clear()
        else:
            return
        self._resume = False
        self._failures.clear()
        self.state = DispatcherState.RUNNING
        self.records.write_cursor(self.name, self._fence, state=DispatcherState.RUNNING)
        log.info("syncer %r resumed", self.name)

    # --- the cursor -----------------------------------------------------------------------------

    def load_cursor(self) -> None:
        """Read the cursor from the KV; start at the log's beginning, or backfill if it was trimmed."""
        rec = self.records.cursor(self.name)
        floor, _ = self.log.bounds()
        self.cursor = rec["seq"] if rec else 0
        self.state = DispatcherState.RUNNING
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
            self.records.write_cursor(self.name, self._fence, seq=0, state=DispatcherState.RUNNING)
        elif self._fence is not None and rec.get("fence") != self._fence:
            # Our lease token goes on the cursor at once: the previous holder's late cursor writes
            # are refused from now on, and a request it was running is known to be abandoned.
            self.records.write_cursor(self.name, self._fence)
        self._saved = self.cursor
        self._loaded = True

    def save_cursor(self) -> None:
        """Persist the in-memory cursor if it moved since the last save.

        Saves are batched (every ``SAVE_EVERY`` seconds, when idle, on stop): a crash then
        re-delivers at most that much, which at-least-once delivery allows, and the KV's single
        writer is not taken by a cursor write after every small batch.
        """
        if self.cursor != self._saved:
            self.records.write_cursor(self.name, self._fence, seq=self.cursor, state=DispatcherState.RUNNING)
            self._saved, self._saved_at = self.cursor, time.monotonic()

    def move_cursor(self, seq: int) -> None:
        """Set the cursor to ``seq`` and persist it now: the sink holds everything up to ``seq``
        (a backfill sent the current state of every sector as of that log entry). Hold :attr:`lock`."""
        self.records.write_cursor(self.name, self._fence, seq=seq, state=DispatcherState.RUNNING)
        self._saved, self._saved_at = seq, time.monotonic()
        self._advanced(seq)

    def _advanced(self, seq: int) -> None:
        """Everything up to ``seq`` is delivered (or dead-lettered): forget its failures."""
        self.cursor = seq
        self._failures = {k: v for k, v in self._failures.items() if k > seq}
        if self._crashes or self._suspects:
            self._crashes = {k: v for k, v in self._crashes.items() if k > seq}
            self._suspects = {k for k in self._suspects if k > seq}
        if self.hang is not None and self.hang["event"] <= seq:
            self.hang = None
            if self.state is DispatcherState.HUNG:
                self.state = DispatcherState.RUNNING
        with self._progress:
            self._progress.notify_all()

    # --- one round: the log -> hooks -> Flush -> the cursor -------------------------------------

    def step(self) -> int:
        """Deliver the next batch (with retries); returns how many entries it covered."""
        with self.lock:
            self._read = self._limit
            if self.runner.isolation == "process":  # the worker decodes them: no need here
                events: List[Any] = self.log.entries(self.cursor, self._read)
            else:
                events = self.log.events(self.cursor, self._read)
            if not events:
                if self.state is not DispatcherState.STOPPED:
                    self.state = DispatcherState.IDLE
                self.save_cursor()
                return 0
            self.state = DispatcherState.RUNNING
            before = self.cursor
            failed = self._deliver_batch(events)
            # Slow start: a round that needed retries shrinks the next read, each clean round
            # doubles it up to batch_size (a failing sink never holds a full batch in memory).
            limit = self.settings.batch_size
            self._limit = min(limit, RETRY_BATCH) if failed else min(limit, self._limit * 2)
            return self.cursor - before  # a retried round covers only its first RETRY_BATCH

    def _deliver_batch(self, events: List[Any]) -> bool:
        """Deliver ``events``, backing off and retrying as configured; True if it took more than
        one attempt."""
        self._pos = 0
        try:
            self._attempt(events)  # the usual round: no retry machinery
            return False
        except _Retry:
            pass
        # Retry the next few entries only: a sink that is down may stay down for hours, and its
        # backlog belongs in the log, not in memory. The rest is read again next round.
        events = events[self._pos : self._pos + RETRY_BATCH]
        self._pos = 0
        for attempt in tenacity.Retrying(
            wait=backoff(self.settings),
            stop=tenacity.stop_when_event_set(self._stopping),
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._sleep,
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    raise _Retry()  # tenacity's first attempt is the one that failed above
                self._attempt(events)
        return True

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # a backoff that stop() cuts short

    def _attempt(self, events: List[Any]) -> None:
        """Deliver ``events[self._pos:]`` once; raise :class:`_Retry` to back off and go on.

        An event the worker crashed or hung on is a *suspect*: what comes before it is flushed
        first, then it is delivered (and flushed) alone, so a second crash is known to be its own;
        once it has crashed ``max_crashes`` times it goes to dead letters without another call.
        """
        start = i = self._pos
        n = len(events)
        try:
            while i < n:
                j = self._next_suspect(events, i, n)
                if j > i:
                    failure = self.runner.call(events, i, j)
                    if failure is None:
                        i = j
                        continue
                else:  # events[i] is a suspect: deliver it alone
                    if i > start:
                        self._flush_and_advance(events[start:i])
                        start = self._pos = i
                    ev = events[i]
                    if self._crashes.get(ev.seq, 0) >= self.settings.max_crashes:
                        self._dead_letter_crasher(ev)
                        start = self._pos = i = i + 1
                        continue
                    failure = self.runner.call(events, i, i + 1)
                    if failure is None:
                        self._flush_and_advance(events[i : i + 1])
                        self._suspects.discard(ev.seq)
                        start = self._pos = i = i + 1
                        continue
                k = failure.index
                if failure.kind == UNAVAILABLE:
                    self._failed(f"sink unavailable: {failure.error}")
                    raise _Retry()
                if failure.kind in LOST:
                    self._worker_lost(events[k], failure)
                    raise _Retry()  # the worker lost what it had buffered since `start`: again
                if k > start:
                    self._flush_and_advance(events[start:k])
                start = self._pos = k
                if not self._event_failed(events[k], failure.error):
                    raise _Retry()
                start = self._pos = i = k + 1
            if start < n:
                self._flush_and_advance(events[start:])
            self._pos = n
        except KVError as exc:  # the KV (cursor writes) is down: retry, never drop
            self._failed(f"KV store: {describe(exc)}")
            raise _Retry() from exc

    def _next_suspect(self, events: List[Any], i: int, n: int) -> int:
        if self._suspects:
            for j in range(i, n):
                if events[j].seq in self._suspects:
                    return j
        return n

    def _flush_and_advance(self, events: Sequence[Any]) -> None:
        result = self.runner.flush()
        failure = result.failure
        if failure is not None:
            if failure.kind in LOST:
                if len(events) == 1:
                    self._worker_lost(events[0], failure)
                elif failure.kind != CLOSED:  # whose change crashed it? deliver each alone to find out
                    self._suspects.update(ev.seq for ev in events)
                    self._failed(f"Flush: worker {failure.kind}: {failure.error}")
            else:
                self._failed(f"flush: {failure.error}")
            raise _Retry()
        rejected = result.rejected
        last = events[-1].seq
        if rejected:
            letters = self._match_rejected(events, rejected)
            self.last_error = f"{len(letters)} event(s) rejected by the sink: {rejected[0].reason}"
            self.records.add_dead(
                self.name,
                letters,
                cursor={
                    "seq": last,
                    "state": DispatcherState.RUNNING,
                    "error": self.last_error,
                    "error_at": time.time(),
                },
                fence=self._fence,
            )
            self._saved, self._saved_at = last, time.monotonic()
            self.dead_lettered += len(letters)
            self.delivered += len(events) - len(letters)
        else:
            self.delivered += len(events)
        self._advanced(last)
        if not rejected and time.monotonic() - self._saved_at >= SAVE_EVERY:
            self.save_cursor()

    def _match_rejected(
        self, events: Sequence[Any], rejected: Sequence[Any]
    ) -> List[Tuple[int, bytes, str, int, Any]]:
        wanted = {(r.sector, r.version): r.reason for r in rejected}
        letters = []
        for ev in map(decoded, events):
            if not isinstance(ev, Event):
                continue
            hits = [(c, wanted.pop(c)) for c in ev.changes() if c in wanted]
            if hits:
                reason = "; ".join(f"{s} v{v}: {why}" for (s, v), why in hits)
                letters.append((ev.seq, ev.raw, f"RejectedChanges: {reason}", 1, [list(c) for c, _ in hits]))
        for (sector, version), reason in wanted.items():
            log.warning(
                "syncer %r rejected %s v%d, which is not in this batch: %s",
                self.name,
                sector,
                version,
                reason,
            )
        return letters

    # --- failures -------------------------------------------------------------------------------

    def _failed(self, error: str, state: DispatcherState = DispatcherState.RETRYING) -> None:
        self.state, self.last_error = state, error
        self.retries += 1
        log.warning("syncer %r: %s", self.name, error)
        self._persist_error(state)

    def _persist_error(self, state: DispatcherState) -> None:
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

    def _event_failed(self, ev: AnyEvent, error: str) -> bool:
        """Count a failure of ``ev``; True once it went to dead letters (delivery goes on)."""
        n = self._failures[ev.seq] = self._failures.get(ev.seq, 0) + 1
        log.warning(
            "syncer %r: event %d failed (attempt %d/%d): %s",
            self.name,
            ev.seq,
            n,
            self.settings.max_attempts,
            error,
        )
        if n < self.settings.max_attempts:
            self._failed(f"event {ev.seq}: {error}")
            return False
        if self.settings.on_failure == "stop":
            self.state, self.last_error = DispatcherState.STOPPED, f"event {ev.seq} failed {n} times: {error}"
            self._persist_error(DispatcherState.STOPPED)
            raise SyncerStopped(self.last_error)
        self._dead_letter(ev, error, n)
        return True

    def _worker_lost(self, ev: AnyEvent, failure: HookFailure) -> None:
        """The worker crashed or hung on ``ev`` (or was stopped): count it against the event."""
        if failure.kind == CLOSED:
            return
        self._suspects.add(ev.seq)
        n = self._crashes[ev.seq] = self._crashes.get(ev.seq, 0) + 1
        self._crash_errors[ev.seq] = failure.error
        what = "hung" if failure.kind == HUNG else "crashed"
        of = f"{n} of MaxCrashes {self.settings.max_crashes}"
        error = f"event {ev.seq}: worker {what} ({of}): {failure.error}"
        if failure.kind == HUNG:
            self.hang = {"since": failure.since, "event": ev.seq}
        self._failed(error, DispatcherState.HUNG if failure.kind == HUNG else DispatcherState.RETRYING)

    def _dead_letter_crasher(self, ev: AnyEvent) -> None:
        n = self._crashes.pop(ev.seq, 0)
        error = (
            f"plugin {self.syncer.plugin!r}, syncer {self.name!r}: its worker crashed or hung {n} times"
            f" on event {ev.seq}; last: {self._crash_errors.pop(ev.seq, '')}"
        )
        log.error("syncer %r: event %d goes to dead letters: %s", self.name, ev.seq, error)
        self._suspects.discard(ev.seq)
        self._dead_letter(ev, error, n)

    def _dead_letter(self, ev: AnyEvent, error: str, attempts: int) -> None:
        ev = decoded(ev)
        changes = ev.changes() if isinstance(ev, Event) else None
        self.last_error = f"event {ev.seq} dead-lettered after {attempts} attempts: {error}"
        self.records.add_dead(
            self.name,
            [(ev.seq, ev.raw, error, attempts, changes)],
            cursor={
                "seq": ev.seq,
                "state": DispatcherState.RUNNING,
                "error": self.last_error,
                "error_at": time.time(),
            },
            fence=self._fence,
        )
        self.dead_lettered += 1
        self._saved, self._saved_at = ev.seq, time.monotonic()
        self._failures.pop(ev.seq, None)
        self._advanced(ev.seq)

    # --- out-of-band deliveries (retry dead letters, backfill) -------------------------------------

    def deliver_now(self, events: Sequence[Any]) -> Tuple[List[Any], Dict[int, str]]:
        """Call hooks for ``events`` and flush, once, no retries: returns (delivered, failed seq->error).

        Hold :attr:`lock`. A ``Flush`` that fails (other than rejecting changes) raises
        :class:`FlushFailed`. An event the worker crashed or hung on fails alone; the others
        are delivered again to the new worker.
        """
        failed: Dict[int, str] = {}  # index in events -> error
        while True:
            todo = [k for k in range(len(events)) if k not in failed]
            batch = [events[k] for k in todo]
            i, lost = 0, False
            while i < len(batch):
                failure = self.runner.call(batch, i, len(batch))
                if failure is None:
                    break
                failed[todo[failure.index]] = failure.error
                i, lost = failure.index + 1, failure.kind in LOST
                if lost:
                    break
            if not lost:
                break
        ok = [events[k] for k in range(len(events)) if k not in failed]
        by_seq = {events[k].seq: error for k, error in failed.items()}
        if ok:
            result = self.runner.flush()
            if result.failure is not None:
                raise FlushFailed(f"syncer {self.name!r}: Flush failed: {result.failure.error}")
            if result.rejected:
                for seq, _, error, _, _ in self._match_rejected(ok, result.rejected):
                    by_seq[seq] = error
                ok = [ev for ev in ok if ev.seq not in by_seq]
        return ok, by_seq
