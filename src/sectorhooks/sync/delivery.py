"""Delivery of one batch to one syncer: hooks in log order, ``Flush``, retries, dead letters.

The mixin half of :class:`~sectorhooks.sync.dispatcher.Dispatcher` that calls the plugin; the
dispatcher owns the thread, the cursor and the lease. See the dispatcher module for the failure
rules this implements.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import tenacity

from sectorhooks_spec import KVError

from ..changelog import Event, decoded
from ..config import SyncSettings
from ..errors import FlushFailed
from .records import Records
from .runners import CLOSED, HUNG, LOST, UNAVAILABLE, HookFailure, HookRunner
from .syncers import Syncer, describe

log = logging.getLogger(__name__)

RETRY_BATCH = 100  # entries a failed round keeps retrying (the rest waits in the log)
SAVE_EVERY = 1.0  # seconds between cursor saves while busy (each is a KV write transaction)


class _Retry(Exception):
    """Back off and try the rest of the batch again."""


class Stopped(Exception):
    """``on_failure = "stop"``: the syncer gave up on an event."""


class Delivery:
    """Hooks, ``Flush`` and failure handling for a :class:`Dispatcher` (which sets the state)."""

    syncer: Syncer
    runner: HookRunner
    records: Records
    settings: SyncSettings
    state: str
    last_error: str
    _stopping: threading.Event
    _failures: Dict[int, int]  # seq -> raises so far
    _crashes: Dict[int, int]  # seq -> worker crashes and hangs so far
    _crash_errors: Dict[int, str]
    _suspects: Set[int]  # seqs to deliver alone (a worker died near them)
    hang: Optional[Dict[str, Any]]  # the last hang, until its event is delivered or dead-lettered
    _fence: Optional[int]
    _pos: int
    _saved: int
    _saved_at: float
    delivered: int  # events delivered and flushed by this process (for /metrics)
    dead_lettered: int  # events this process put in dead letters

    @property
    def name(self) -> str:
        return self.syncer.name

    # Provided by the dispatcher: cursor bookkeeping.
    def save_cursor(self) -> None:
        raise NotImplementedError

    def _advanced(self, seq: int) -> None:
        raise NotImplementedError

    def _failed(self, error: str, state: str = "retrying") -> None:
        raise NotImplementedError

    def _persist_error(self, state: str) -> None:
        raise NotImplementedError

    def _deliver_batch(self, events: List[Any]) -> bool:
        """Deliver ``events`` (retrying as configured); True if it took more than one attempt."""
        s = self.settings
        self._pos = 0
        # The first attempt runs without tenacity (the usual, successful, round costs no retry
        # machinery); after a failure the retries follow the same backoff schedule.
        try:
            self._attempt(events)
            return False
        except _Retry:
            if self._stopping.is_set():
                raise
        # Retry with the next few entries only: a sink that is down may stay down for hours,
        # and its backlog belongs in the log, not in memory. The rest is read again next round.
        events = events[self._pos : self._pos + RETRY_BATCH]
        self._pos = 0
        self._sleep(min(s.backoff_base, s.backoff_max) + random.uniform(0, s.backoff_base))
        retrying = tenacity.Retrying(
            # attempts 2.. as numbered overall: the wait after attempt n is base * 2**(n - 1)
            wait=tenacity.wait_exponential(multiplier=s.backoff_base * 2, max=s.backoff_max)
            + tenacity.wait_random(0, s.backoff_base),
            stop=tenacity.stop_when_event_set(self._stopping),
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
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

    def _worker_lost(self, ev: Any, failure: HookFailure) -> None:
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
        self._failed(error, "hung" if failure.kind == HUNG else "retrying")

    def _dead_letter_crasher(self, ev: Any) -> None:
        n = self._crashes.pop(ev.seq, 0)
        error = (
            f"plugin {self.syncer.plugin!r}, syncer {self.name!r}: its worker crashed or hung {n} times"
            f" on event {ev.seq}; last: {self._crash_errors.pop(ev.seq, '')}"
        )
        log.error("syncer %r: event %d goes to dead letters: %s", self.name, ev.seq, error)
        self._suspects.discard(ev.seq)
        self._dead_letter(ev, error, n)

    def _event_failed(self, ev: Any, error: str) -> bool:
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
            self.state, self.last_error = "stopped", f"event {ev.seq} failed {n} times: {error}"
            self._persist_error("stopped")
            raise Stopped(self.last_error)
        self._dead_letter(ev, error, n)
        return True

    def _dead_letter(self, ev: Any, error: str, attempts: int) -> None:
        ev = decoded(ev)
        changes = ev.changes() if isinstance(ev, Event) else None
        self.last_error = f"event {ev.seq} dead-lettered after {attempts} attempts: {error}"
        self.records.add_dead(
            self.name,
            [(ev.seq, ev.raw, error, attempts, changes)],
            cursor={"seq": ev.seq, "state": "running", "error": self.last_error, "error_at": time.time()},
            fence=self._fence,
        )
        self.dead_lettered += 1
        self._saved, self._saved_at = ev.seq, time.monotonic()
        self._failures.pop(ev.seq, None)
        self._advanced(ev.seq)

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
                cursor={"seq": last, "state": "running", "error": self.last_error, "error_at": time.time()},
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
