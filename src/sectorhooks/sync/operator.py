"""Operator actions (``sync retry``, ``sync backfill``) run by whoever delivers the syncer.

Only the holder of a syncer's lease may deliver to its sink. An action asked for in a process
that does not hold it (the CLI, or a standby replica) goes, in order, to:

1. this process itself, when it is the one delivering (or no leases are in use: one host);
2. this process under the lease, when nobody holds it (no host is running the syncer): taken,
   renewed while the action runs, released after, fenced like a dispatcher's own writes;
3. the host holding the lease: the action is posted as a request in the KV
   (:meth:`Records.post_request`), which that host's dispatcher runs between rounds; the caller
   waits for the outcome up to ``wait`` seconds, then withdraws a request nobody took.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Optional

from sectorhooks_spec.errors import KVError

from ..errors import SyncError
from .dispatcher import RENEW_EVERY, Dispatcher
from .syncers import SyncerLease, describe

if TYPE_CHECKING:
    from .service import SyncService

log = logging.getLogger(__name__)

#: Actions, with how long a caller waits by default for the host holding the syncer to run one.
DEFAULT_WAIT = {"retry": 60.0, "backfill": 600.0}
ACTIONS = tuple(DEFAULT_WAIT)
ANSWER_POLL = 0.1  # seconds between looks at a posted request's outcome


def run(service: SyncService, d: Dispatcher, action: str, wait: Optional[float] = None) -> int:
    """Run ``action`` on ``d``'s syncer where it may run (see the module doc); its result.
    ``wait``: seconds to wait for another host to run it (``None``: :data:`DEFAULT_WAIT`)."""
    if wait is None:
        wait = DEFAULT_WAIT[action]
    if d.lease is None or d.holding:
        return service.perform(d, action, follow=not d.alive)
    if not d.alive and d.lease.acquire():
        with _renewing(d.lease) as lost:
            d.use_fence(d.lease.fence)  # the action's cursor writes are fenced like a dispatcher's
            try:
                result = service.perform(d, action, follow=True)
            finally:
                d.lease.release()
        if lost.is_set():
            raise SyncError(
                f"syncer {d.name!r}: the lease was lost during {action} (another host took over); "
                "what was delivered stays delivered, run it again if needed"
            )
        return result
    return _ask_holder(service, d, action, wait)


def serve(service: SyncService, d: Dispatcher) -> None:
    """In the delivering dispatcher's thread: run the pending request of its syncer, if any."""
    try:
        req = service.records.take_request(d.name, d.fence)
    except KVError as exc:
        log.warning("syncer %r: cannot read operator requests: %s", d.name, describe(exc))
        return
    if req is None:
        return
    log.info("syncer %r: running the %s requested by an operator (%s)", d.name, req["action"], req["id"])
    try:
        if req["action"] not in ACTIONS:
            raise SyncError(f"unknown action {req['action']!r}; this host knows {', '.join(ACTIONS)}")
        result = service.perform(d, req["action"], follow=False)
    except Exception as exc:
        error = describe(exc)
        log.warning("syncer %r: requested %s failed: %s", d.name, req["action"], error)
        _finish(service, d, req["id"], error=error)
    else:
        _finish(service, d, req["id"], result=result)


def _finish(service: SyncService, d: Dispatcher, rid: str, **outcome: Any) -> None:
    try:
        service.records.finish_request(d.name, rid, **outcome)
    except KVError as exc:  # the requester times out and says so
        log.warning("syncer %r: cannot record the outcome of request %s: %s", d.name, rid, describe(exc))


def _ask_holder(service: SyncService, d: Dispatcher, action: str, wait: float) -> int:
    records = service.records
    rid = records.post_request(d.name, action)
    where = holder_of(d.lease)
    log.info("syncer %r: %s requested from the host holding it (%s), request %s", d.name, action, where, rid)
    deadline = time.monotonic() + wait
    while True:
        req = records.request(d.name)
        if req is None or req["id"] != rid:
            raise SyncError(f"syncer {d.name!r}: the {action} request {rid} was replaced by another one")
        if req["state"] == "done":
            return int(req.get("result") or 0)
        if req["state"] == "failed":
            raise SyncError(
                f"syncer {d.name!r}: {action} failed in the host holding it ({where}): {req['error']}"
            )
        if time.monotonic() >= deadline:
            if records.cancel_request(d.name, rid):
                raise SyncError(
                    f"syncer {d.name!r} is delivered by another host ({where}), which did not take the "
                    f"{action} request within {wait:g}s; nothing was done. Is that host running and up "
                    "to date? Retry with a longer --wait, or stop it and run the command again"
                )
            if req["state"] == "running":
                raise SyncError(
                    f"syncer {d.name!r}: the host holding it ({where}) is still running the {action} "
                    f"after {wait:g}s; it goes on there (see `sectorhooks sync status`)"
                )
            continue  # it finished between our two reads
        time.sleep(ANSWER_POLL)


def holder_of(lease: Optional[SyncerLease]) -> str:
    """Who holds ``lease``, as its record says (or ``"another host"``)."""
    state = getattr(lease, "state", None)
    try:
        rec = state() if callable(state) else None
    except Exception:
        rec = None
    if not rec or not rec.get("holder"):
        return "another host"
    return f"{rec['holder']}, fence {rec.get('fence')}"


@contextmanager
def _renewing(lease: SyncerLease) -> Iterator[threading.Event]:
    """Renew ``lease`` every ``RENEW_EVERY`` seconds while the block runs; the event is set if
    a renewal failed (another host took the syncer over)."""
    stop, lost = threading.Event(), threading.Event()

    def renew() -> None:
        while not stop.wait(RENEW_EVERY):
            try:
                ok = lease.renew()
            except Exception:
                ok = False
            if not ok:
                lost.set()
                return

    thread = threading.Thread(target=renew, name="sync-operator-lease", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join()
