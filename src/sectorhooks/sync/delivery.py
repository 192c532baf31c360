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
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tenacity

from sectorhooks_spec import KVError, RejectedChanges, StoreUnavailable

from ..config import SyncSettings
from .log import HOOKS, BrokenEvent, Event, caller
from .records import Records
from .syncers import FLUSH, Syncer, describe

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
    records: Records
    settings: SyncSettings
    state: str
    last_error: str
    _stopping: threading.Event
    _failures: Dict[int, int]
    _fence: Optional[int]
    _pos: int
    _saved: int
    _saved_at: float
    _plans: Dict[str, Any]
    _plans_for: Optional[Syncer]

    @property
    def name(self) -> str:
        return self.syncer.name

    # Provided by the dispatcher: cursor bookkeeping.
    def save_cursor(self) -> None:
        raise NotImplementedError

    def _advanced(self, seq: int) -> None:
        raise NotImplementedError

    def _failed(self, error: str) -> None:
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
        start = i = self._pos
        try:
            while i < len(events):
                ev = events[i]
                try:
                    self._call(ev)
                except Exception as exc:
                    if isinstance(exc, StoreUnavailable):
                        self._failed(f"sink unavailable: {describe(exc)}")
                        raise _Retry() from exc
                    if i > start:
                        self._flush_and_advance(events[start:i])
                    start = self._pos = i
                    if not self._event_failed(ev, exc):
                        raise _Retry() from exc
                    start = self._pos = i + 1
                i += 1
            if start < len(events):
                self._flush_and_advance(events[start:])
            self._pos = len(events)
        except KVError as exc:  # the KV (cursor writes) is down: retry, never drop
            self._failed(f"KV store: {describe(exc)}")
            raise _Retry() from exc

    def _call(self, ev: Any) -> None:
        if isinstance(ev, BrokenEvent):
            raise ev.error
        kind = ev.header["e"]
        syncer = self.syncer
        plans = self._plans if self._plans_for is syncer else self._new_plans(syncer)
        plan = plans.get(kind)
        if plan is None:
            impl = syncer.impls.get(HOOKS[kind])  # an unknown event fails like a raising hook
            plan = plans[kind] = (impl.function, caller(impl.argnames)) if impl else ()
        if plan:
            fn, call = plan
            call(fn, ev, syncer.instance)

    def _new_plans(self, syncer: Syncer) -> Dict[str, Any]:
        """Per event kind: the hook's function and its caller (built once per syncer)."""
        self._plans_for, self._plans = syncer, {}
        return self._plans

    def _event_failed(self, ev: Any, exc: BaseException) -> bool:
        """Count a failure of ``ev``; True once it went to dead letters (delivery goes on)."""
        error = describe(exc)
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
        changes = ev.changes() if isinstance(ev, Event) else None
        self.last_error = f"event {ev.seq} dead-lettered after {n} attempts: {error}"
        self.records.add_dead(
            self.name,
            [(ev.seq, ev.raw, error, n, changes)],
            cursor={"seq": ev.seq, "state": "running", "error": self.last_error, "error_at": time.time()},
            fence=self._fence,
        )
        self._saved, self._saved_at = ev.seq, time.monotonic()
        self._failures.pop(ev.seq, None)
        self._advanced(ev.seq)
        return True

    def _flush_and_advance(self, events: Sequence[Any]) -> None:
        flush = self.syncer.impls.get(FLUSH)
        rejected: Sequence[Any] = ()
        if flush is not None:
            try:
                flush.function(*[self.syncer.instance for _ in flush.argnames])
            except RejectedChanges as exc:
                rejected = exc.rejected
            except Exception as exc:
                self._failed(f"flush: {describe(exc)}")
                raise _Retry() from exc
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
        self._advanced(last)
        if not rejected and time.monotonic() - self._saved_at >= SAVE_EVERY:
            self.save_cursor()

    def _match_rejected(
        self, events: Sequence[Any], rejected: Sequence[Any]
    ) -> List[Tuple[int, bytes, str, int, Any]]:
        wanted = {(r.sector, r.version): r.reason for r in rejected}
        letters = []
        for ev in events:
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

        Hold :attr:`lock`. A ``Flush`` that fails (other than rejecting changes) raises.
        """
        ok: List[Any] = []
        failed: Dict[int, str] = {}
        for ev in events:
            try:
                self._call(ev)
                ok.append(ev)
            except Exception as exc:
                failed[ev.seq] = describe(exc)
        flush = self.syncer.impls.get(FLUSH)
        if flush is not None and ok:
            try:
                flush.function(*[self.syncer.instance for _ in flush.argnames])
            except RejectedChanges as exc:
                for seq, _, error, _, _ in self._match_rejected(ok, exc.rejected):
                    failed[seq] = error
                ok = [ev for ev in ok if ev.seq not in failed]
        return ok, failed
