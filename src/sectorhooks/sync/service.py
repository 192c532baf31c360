"""SyncService: resolves syncer instances, runs one dispatcher each, trims the log.

Instances come from ``[[Common.Syncers]]`` (``Name``, ``PluginName``, ``Meta``); every active
SyncSectorState plugin that no entry names gets a default instance named after the plugin. An
instance whose plugin is missing, failed or of another kind is *unavailable*: it shows in
``status()`` with the reason, does not hold the log back, and backfills when it comes back.

The service is handed what it reads: the change log and the scan of every stored sector (for
backfill and verify); :class:`~sectorhooks.runtime.Runtime` calls :meth:`on_commit`
after each commit of the state manager.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Protocol, Sequence, Tuple

import tenacity

from sectorhooks_spec import KVError, KVStore, SectorID, SyncedRow, Workspace

from .. import liveness
from ..changelog import ChangeLog, Event, parse
from ..changelog.format import header_of
from ..config import HostConfig
from ..errors import SinkUnverifiable, SyncError
from ..host import PluginHost, PluginStatus
from . import operator
from .dispatcher import Dispatcher, DispatcherState, backoff
from .readback import MAX_EXAMPLES, Comparison, compare_one, iter_rows, read_back_impl, stored_version
from .records import Records
from .runners import HookRunner, InProcessRunner
from .syncers import Syncer, SyncerLease, describe, resolve_syncers
from .worker import WorkerRunner, worker_init

log = logging.getLogger(__name__)

TRIM_INTERVAL = 1.0
_FAILING = (DispatcherState.RETRYING, DispatcherState.STOPPED, DispatcherState.CRASHED)  # not drained on stop
_GAVE_UP = (DispatcherState.STOPPED, DispatcherState.CRASHED)  # wait_idle() does not wait for these
_FIRST_HAND = (DispatcherState.UNAVAILABLE, DispatcherState.CRASHED)  # status from this process
_MAY_HANG = (DispatcherState.RUNNING, DispatcherState.RETRYING, DispatcherState.IDLE, DispatcherState.HUNG)


class StoredSector(Protocol):
    """A stored sector as the state's scan gives it (:class:`sectorhooks.state.scan.SectorRecord`)."""

    @property
    def workspace(self) -> Workspace: ...

    @property
    def sector_id(self) -> SectorID: ...

    @property
    def raw(self) -> bytes: ...

    def text(self) -> str: ...


#: Every stored sector, streamed in key order (:func:`sectorhooks.state.scan.iter_sectors` bound to
#: the KV; the runtime hands it over, so sync does not import state).
SectorScan = Callable[[], Generator[StoredSector, None, None]]


class SyncService:
    """Durable fan-out of the change log to every syncer instance."""

    def __init__(
        self,
        host: PluginHost,
        store: KVStore,
        config: HostConfig,
        *,
        log: ChangeLog,
        sectors: SectorScan,
        lease_factory: Optional[Callable[[str], SyncerLease]] = None,
        trim_interval: float = TRIM_INTERVAL,
        heartbeat_ttl: float = liveness.TTL,
    ):
        self.host = host
        self.store = store
        self.config = config
        self.settings = config.sync
        self.log = log
        self.sectors = sectors  # every stored sector, in key order (backfill and verify read it)
        self.records = Records(store)
        self.trim_interval = trim_interval
        self._progress = threading.Condition()
        self._dispatchers: Dict[str, Dispatcher] = {}
        for syncer in resolve_syncers(host, config):
            lease = (
                lease_factory(syncer.name) if lease_factory is not None and not syncer.unavailable else None
            )
            self._dispatchers[syncer.name] = Dispatcher(
                syncer,
                self.log,
                self.records,
                self.settings,
                self._progress,
                lease,
                backfill=self._auto_backfill,
                serve=functools.partial(operator.serve, self),
                runner=self._runner(syncer),
            )
        self._stop = threading.Event()
        self._trimmer: Optional[threading.Thread] = None
        self._started = False
        # This host's heartbeat (see sectorhooks.liveness): beats while the dispatchers run.
        self.heartbeat = liveness.Heartbeat(store, self._report, ttl=heartbeat_ttl)

    def _runner(self, syncer: Syncer) -> HookRunner:
        """Where ``syncer``'s hooks run: a supervised worker process, or the dispatcher's thread."""
        record = self.host.records.get(syncer.plugin)
        if syncer.unavailable or syncer.isolation == "thread" or record is None or record.bound is None:
            return InProcessRunner(syncer)
        config = self.config.plugin_config(syncer.plugin)
        init = worker_init(
            syncer, record.bound.candidate, config, str(self.config.data_dir), self.settings.worker_nice
        )
        return WorkerRunner(syncer, self.settings, init)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until every syncer's worker process has loaded its plugin (True once all have).

        Never needed for correctness (a call waits for its worker); for a benchmark or a load
        test that measures the steady state, not the start.
        """
        deadline = time.monotonic() + timeout
        return all(
            d.runner.wait_ready(max(0.0, deadline - time.monotonic()))
            for d in self._dispatchers.values()
            if isinstance(d.runner, WorkerRunner) and d.alive
        )

    @property
    def syncers(self) -> List[str]:
        """Names of every syncer instance, in config order then plugin load order."""
        return list(self._dispatchers)

    def dispatcher(self, name: str) -> Dispatcher:
        """The dispatcher of syncer ``name``; :class:`SyncError` listing the known names."""
        try:
            return self._dispatchers[name]
        except KeyError:
            known = ", ".join(map(repr, self._dispatchers)) or "none"
            raise SyncError(f"no syncer named {name!r}; syncers: {known}") from None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> SyncService:
        """Start every dispatcher and the log trimmer."""
        if self._started:
            return self
        self._started = True
        self._stop.clear()
        for d in self._dispatchers.values():
            d.start()
        self._trimmer = threading.Thread(target=self._trim_loop, name="sync-trim", daemon=True)
        self._trimmer.start()
        self.heartbeat.start()
        return self

    def _report(self) -> Dict[str, Any]:
        """What this host's heartbeat says it runs: each syncer started here (with its state,
        ``standby`` while another replica holds it) and every active plugin."""
        syncers = {
            name: (d.state if d.holding or not d.alive else DispatcherState.STANDBY)
            for name, d in self._dispatchers.items()
            if d.started
        }
        plugins = [r.name for r in self.host.plugins() if r.status is PluginStatus.ACTIVE]
        return {"syncers": syncers, "plugins": plugins}

    def stop(self, timeout: float = 10.0, drain: Optional[float] = None) -> None:
        """Deliver what the log holds, let each dispatcher finish (and flush) its round, then
        stop every thread.

        The drain waits up to ``drain`` seconds (default: half of ``timeout``) for every syncer
        this process delivers to reach the log head, so a clean shutdown leaves the sinks
        current; a syncer that is failing (retrying, stopped) is not waited for, its backlog
        stays in the log for the next start.
        """
        if not self._started:
            for d in self._dispatchers.values():
                d.runner.close()  # a worker started here by `sync retry` or `sync backfill`
            return
        deadline = time.monotonic() + timeout
        self._drain(timeout / 2 if drain is None else min(drain, timeout))
        self._started = False
        self._stop.set()
        for d in self._dispatchers.values():
            d.request_stop()  # all at once: a slow one must not delay the others' stop
        for d in self._dispatchers.values():
            d.stop(max(0.1, deadline - time.monotonic()))
        if self._trimmer is not None:
            self._trimmer.join(max(0.1, deadline - time.monotonic()))
        self.heartbeat.stop()  # readers see this host stopped at once, not after its ttl

    def _drain(self, budget: float) -> None:
        """Wait (up to ``budget`` seconds) until every healthy syncer delivered the log as of now."""
        try:
            head = self.log.head()
        except KVError as exc:  # the KV is down: nothing can be delivered now
            log.warning("sync stop: cannot read the log head to drain it: %s", describe(exc))
            return
        behind = self._until_delivered(head, budget, lambda d: d.holding and d.state not in _FAILING)
        if behind:
            names = ", ".join(f"{d.name} ({head - d.cursor} behind)" for d in behind)
            log.warning("sync stop: stopping before %s delivered the log; it will on the next start", names)

    def _until_delivered(
        self,
        head: int,
        timeout: float,
        waits_for: Callable[[Dispatcher], bool],
        gives_up: Callable[[Dispatcher], bool] = lambda d: False,
    ) -> List[Dispatcher]:
        """Wait (up to ``timeout`` seconds) until every dispatcher ``waits_for`` has its cursor at
        ``head``, or one still behind ``gives_up``; returns those still behind."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while True:
                behind = [d for d in self._dispatchers.values() if d.cursor < head and waits_for(d)]
                left = deadline - time.monotonic()
                if not behind or left <= 0 or any(gives_up(d) for d in behind):
                    return behind
                self._progress.wait(min(left, 0.1))

    def on_commit(self, head: int, entries: Sequence[Tuple[int, bytes]]) -> None:
        """The state manager committed ``entries`` (``(seq, raw)``), the log head is ``head``:
        keep them for the dispatchers and wake them (nothing to do until :meth:`start`)."""
        if not self._started:
            return
        self.log.committed(head, entries)
        for d in self._dispatchers.values():
            d.notify()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every available syncer's cursor reached the log head as of this call."""
        behind = self._until_delivered(
            self.log.head(),
            timeout,
            lambda d: not d.syncer.unavailable,
            gives_up=lambda d: d.state in _GAVE_UP,
        )
        return not behind

    # --- trimming ---------------------------------------------------------------------------

    def trim(self) -> int:
        """Delete log entries every available syncer has delivered; returns how many."""
        names = [n for n, d in self._dispatchers.items() if not d.syncer.unavailable]
        if names:
            recs = self.records.cursors(names)
            if any(r is None for r in recs.values()):
                return 0  # a syncer has not started yet: it may want the whole log
            upto = min(r["seq"] for r in recs.values() if r is not None)
        else:
            upto = self.log.head()
        return self.log.trim(upto)

    def _trim_loop(self) -> None:
        while not self._stop.wait(self.trim_interval):
            try:
                n = self.trim()
                if n:
                    log.debug("trimmed %d log entries", n)
            except Exception as exc:
                log.warning("log trim failed: %s", describe(exc))

    # --- status -----------------------------------------------------------------------------

    def status(self) -> List[Dict[str, Any]]:
        """One dict per syncer: name, plugin, cursor, head, lag_events, lag_seconds, dead_letters,
        last_error, state, ``request`` (an operator's unfinished retry/backfill, or ``None``),
        ``hung``, the worker's counters, and who delivers it: ``host`` (the live host running it,
        ``None`` when no live host does), ``last_host`` and, with no live host, ``last_seen``
        (see :mod:`..liveness`).

        ``state`` comes from this process when its dispatcher runs here; else from the live host
        that runs it (its heartbeat); with no live host it is ``stopped`` (a host ran it before),
        ``no host`` (none ever did) or ``unavailable`` (its plugin is missing or failed here).
        """
        recs = self.records.cursors(self.syncers)
        requests = self.records.open_requests(self.syncers)
        hosts = liveness.read_hosts(self.store)
        _, head = self.log.bounds()
        now = time.time()
        out = []
        for name, d in self._dispatchers.items():
            rec = recs.get(name) or {}
            seen = liveness.who_runs(hosts, "syncers", name, now)
            where = seen.as_json()
            cursor = d.cursor if d.holding else rec.get("seq", 0)
            lag_seconds: Optional[float] = None
            if cursor < head:
                raw = self.log.peek(cursor + 1)
                if raw is not None:
                    lag_seconds = round(max(0.0, now - header_of(raw).get("t", now)), 3)
            else:
                lag_seconds = 0.0
            state: str
            if d.alive or d.state in _FIRST_HAND:  # what this process knows first-hand
                state = d.state if d.holding or not d.alive else DispatcherState.STANDBY
                if d.holding and self._started:
                    where.update(host=self.heartbeat.id, last_host=self.heartbeat.id, last_seen=None)
            elif seen.live is not None:  # another live host runs it: the fresher of its beat and record
                said, recorded = seen.live.syncers.get(name), rec.get("state")
                newer = float(rec.get("at") or 0) > seen.live.beat  # a beat is up to a second old
                # "running" is what every cursor save writes; "idle" from the beat is finer.
                finer = recorded == DispatcherState.RUNNING and said == DispatcherState.IDLE
                if recorded and (not said or (newer and not finer)):
                    said = recorded
                state = said or DispatcherState.RUNNING
            else:  # nobody delivers it now, whatever the records last said
                state = DispatcherState.STOPPED if seen.last is not None or rec else DispatcherState.NO_HOST
            hung = d.hung() if d.alive else rec.get("hung")
            if hung is not None and state in _MAY_HANG:
                state = DispatcherState.HUNG
            worker = d.runner.info()
            if not d.alive:  # another process delivers it (or did last): what it recorded
                worker.update(crashes=rec.get("crashes", 0), last_exit=rec.get("last_exit", ""))
            out.append(
                {
                    "name": name,
                    "plugin": d.syncer.plugin,
                    "cursor": cursor,
                    "head": head,
                    "lag_events": max(0, head - cursor),
                    "lag_seconds": lag_seconds,
                    "dead_letters": self.records.count_dead(name),
                    "last_error": d.last_error or rec.get("error", ""),
                    "state": state,
                    "request": requests.get(name),
                    "hung": hung,
                    **where,
                    **worker,
                }
            )
        return out

    # --- operator actions -------------------------------------------------------------------------

    def retry_dead_letters(self, name: str, wait: Optional[float] = None) -> int:
        """Re-deliver ``name``'s dead letters once; returns how many were delivered (and removed).

        Runs where the syncer may be delivered (see :mod:`.operator`): here, here under its
        lease, or in the host holding the lease, waiting up to ``wait`` seconds for it (default
        :data:`.operator.DEFAULT_WAIT`).
        """
        d = self.dispatcher(name)
        self._require_available(d)
        return operator.run(self, d, "retry", wait)

    def backfill(self, name: str, wait: Optional[float] = None) -> int:
        """Replay the current state of every sector into ``name``, then move its cursor to the log
        head (delivery goes on from there); returns how many sectors were sent. Runs where
        :meth:`retry_dead_letters` does; done here, it also delivers the log up to its head."""
        d = self.dispatcher(name)
        self._require_available(d)
        return operator.run(self, d, "backfill", wait)

    def perform(self, d: Dispatcher, action: str, follow: bool) -> int:
        """Run ``action`` on ``d`` in this process (the caller may deliver: see :mod:`.operator`);
        ``follow``: a backfill then delivers the log to its head (no dispatcher runs here)."""
        if action == "retry":
            return self._retry(d)
        with d.lock:
            sent = self._backfill(d)
            while follow and d.step():
                pass
        return sent

    def _retry(self, d: Dispatcher) -> int:
        if not d.resume():  # not stopped here; maybe stopped in a host that is not running now
            rec = self.records.cursor(d.name)
            if rec is not None and rec.get("state") == DispatcherState.STOPPED:
                self.records.write_cursor(d.name, state=DispatcherState.RESUME)
        delivered = 0
        with d.lock:
            letters = list(self.records.dead_letters(d.name))
            for page in _chunks(letters, self.settings.batch_size):
                events = [parse(int(rec["seq"]), rec["entry"].encode("utf-8")) for rec in page]
                try:
                    ok, failed = d.deliver_now(events)
                except SyncError:
                    raise
                except Exception as exc:
                    raise SyncError(
                        f"syncer {d.name!r}: flush failed while retrying dead letters: {describe(exc)}"
                    )
                self.records.remove_dead(d.name, [ev.seq for ev in ok])
                for seq, error in failed.items():
                    self.records.update_dead(d.name, seq, error)
                delivered += len(ok)
        return delivered

    def _auto_backfill(self, d: Dispatcher) -> int:
        with d.lock:
            return self._backfill(d)

    def _backfill(self, d: Dispatcher) -> int:
        head = self.log.head()  # every change up to here is in the states read below
        sent = 0
        for page in _chunks(self._current_states(), self.settings.batch_size):
            self._deliver_with_retries(d, page)
            sent += len(page)
        d.move_cursor(head)
        log.info("syncer %r backfilled %d sector(s); following the log from %d", d.name, sent, head)
        return sent

    def _current_states(self) -> Iterator[Event]:
        with contextlib.closing(self.sectors()) as records:
            for r in records:
                version = stored_version(r.raw)
                yield Event.synthetic_import(r.text(), r.workspace, r.sector_id, version)

    def _deliver_with_retries(self, d: Dispatcher, events: Sequence[Event]) -> None:
        for attempt in tenacity.Retrying(
            wait=backoff(self.settings),
            stop=tenacity.stop_after_attempt(max(1, self.settings.max_attempts)),
            reraise=True,
        ):
            with attempt:
                _, failed = d.deliver_now(events)
                if failed:
                    error = next(iter(failed.values()))
                    raise SyncError(f"syncer {d.name!r}: backfill of {len(failed)} sector(s) failed: {error}")

    def verify(self, name: str) -> List[str]:
        """Differences between syncer ``name``'s sink and the KV (empty: they match), described:
        at most :data:`~.readback.MAX_EXAMPLES` lines, then ``... and N more``.

        Reads the sink back through its plugin's ``ReadBack`` extension point, a page at a time
        (:mod:`.readback`), merged with the KV's scan: memory does not grow with the sectors. A
        plugin without it raises :class:`SinkUnverifiable`. Call :meth:`wait_idle` first for a
        quiet comparison. :meth:`verify_report` gives the counts too.
        """
        return self.verify_report(name).lines()

    def verify_report(self, name: str, max_examples: int = MAX_EXAMPLES) -> Comparison:
        """:meth:`verify` as a :class:`~.readback.Comparison`: counts of equal, missing, extra,
        other-version and other-JSON rows, and the first ``max_examples`` of each side described."""
        d = self.dispatcher(name)
        self._require_available(d)
        impl = read_back_impl(self.host, d.syncer.plugin)
        if impl is None:
            raise SinkUnverifiable(name, d.syncer.plugin)
        with contextlib.closing(self.sectors()) as records:
            kv = ((r.sector_id, r.raw) for r in records)
            report = compare_one(kv, iter_rows(impl, d.syncer.instance), max_examples)
        exc = report.exception
        if isinstance(exc, SyncError):
            raise exc
        if exc is not None:
            raise SyncError(f"syncer {name!r}: cannot read the sink: {describe(exc)}")
        return report

    @staticmethod
    def _require_available(d: Dispatcher) -> None:
        if d.syncer.unavailable:
            raise SyncError(f"syncer {d.name!r} is unavailable: {d.syncer.unavailable}")


def compare(
    kv_rows: Iterator[Tuple[str, bytes]], sink_rows: Dict[str, Tuple[int, str]], limit: int = 1000
) -> List[str]:
    """Human-readable differences between KV states (``(str(sector id), JSON)`` in key order) and
    a sink's ``{sector: (version, json)}``, at most ``limit`` lines then ``... and N more``: the
    in-memory form of :func:`~.readback.compare_one` (which ``verify`` streams)."""
    kv = sorted(
        ((_parse_sid(sector), raw) for sector, raw in kv_rows), key=lambda r: (r[0].miner, r[0].number)
    )
    rows = sorted(
        (SyncedRow(_parse_sid(sector), version, text) for sector, (version, text) in sink_rows.items()),
        key=lambda r: (r.sector_id.miner, r.sector_id.number),
    )
    return compare_one(kv, iter(rows), max(limit, 1)).lines(limit)


def _parse_sid(text: str) -> SectorID:
    """``s-t0<miner>-<number>`` (``str(SectorID)``) back to the id."""
    _, miner, number = text.split("-")
    return SectorID(int(miner[2:]), int(number))


def _chunks(items: Any, size: int) -> Iterator[List[Any]]:
    page: List[Any] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page
