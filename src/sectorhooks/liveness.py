"""Host liveness: every running host keeps a heartbeat in the KV, beside its leases.

A lease says who may deliver a syncer; it says nothing once released or expired, and the records
a host leaves behind (cursor states, route statuses) keep saying ``running`` after it is gone. So
each host that delivers (``serve``, ``demo``: whatever starts the sync service) writes its own
record every ``BEAT_EVERY`` seconds (as often as it renews its leases) into the collection ``hosts``:

``<hostname>:<pid>:<6 hex>`` -> JSON ``{"id", "host", "pid", "started", "beat", "ttl", "stopped",
"syncers": {name: state}, "plugins": [name, ...]}``

``syncers`` are the syncers whose dispatcher runs in that host, with their state (``standby``
while another replica holds the lease); ``plugins`` the plugins active in it. A clean stop writes
``stopped`` (the time) at once; a host that died stops beating and is taken for stopped once its
last beat is ``ttl`` seconds old (the lease time: by then its leases have expired too). Clocks
are compared across machines as the leases compare them: keep them in sync (NTP).

Readers (``sync status``, ``registry list``, ``demo --config``) use :func:`read_hosts` and
:func:`who_runs`. Records of hosts gone for more than ``KEEP_GONE`` seconds are pruned by the
next host that starts, keeping at least the newest ``KEEP_LAST`` of them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import attrs

from sectorhooks_spec import KVError, KVStore, StoreTxn

log = logging.getLogger(__name__)

HOSTS = "hosts"
#: Seconds after its last beat a host counts as gone: the lease time (see ``registry.lease``).
TTL = 10.0
BEAT_EVERY = 1.0  # seconds between beats (at most ttl / 3): the states a beat carries stay this fresh
KEEP_GONE = 7 * 86400.0
KEEP_LAST = 20

#: What a host reports with each beat: ``{"syncers": {name: state}, "plugins": [name, ...]}``.
Report = Callable[[], Mapping[str, Any]]


@attrs.frozen
class HostRecord:
    """One host's heartbeat record, as read from the KV."""

    id: str
    host: str
    pid: int
    started: float
    beat: float
    ttl: float
    stopped: Optional[float] = None
    syncers: Mapping[str, str] = attrs.field(factory=dict)
    plugins: Tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HostRecord:
        return cls(
            str(d["id"]),
            str(d.get("host", "")),
            int(d.get("pid") or 0),
            float(d.get("started") or 0.0),
            float(d.get("beat") or 0.0),
            float(d.get("ttl") or TTL),
            None if d.get("stopped") is None else float(d["stopped"]),
            {str(k): str(v) for k, v in (d.get("syncers") or {}).items()},
            tuple(str(p) for p in d.get("plugins") or ()),
        )

    def live(self, now: Optional[float] = None) -> bool:
        """True while the host has not stopped and its last beat is younger than its ttl."""
        now = time.time() if now is None else now
        return self.stopped is None and now - self.beat < self.ttl

    @property
    def last_seen(self) -> float:
        """When it was last known to run: its clean stop, else its last beat."""
        return self.stopped if self.stopped is not None else self.beat

    def describe(self, now: Optional[float] = None) -> str:
        """``host h, pid 123, last beat 1.2s ago`` (or ``stopped 3m ago`` / ``gone, last beat ...``)."""
        now = time.time() if now is None else now
        if self.stopped is not None:
            how = f"stopped {ago(now - self.stopped)}"
        elif self.live(now):
            how = f"last beat {ago(now - self.beat)}"
        else:
            how = f"no beat for {ago(now - self.beat, suffix='')} (died, or lost the KV)"
        return f"host {self.host}, pid {self.pid}, {how}"


def ago(seconds: float, suffix: str = " ago") -> str:
    """``1.2s ago``, ``3m ago``, ``2h ago``, ``4d ago``."""
    s = max(0.0, seconds)
    if s < 60:
        text = f"{s:.1f}s"
    elif s < 3600:
        text = f"{s / 60:.0f}m"
    elif s < 86400:
        text = f"{s / 3600:.1f}h"
    else:
        text = f"{s / 86400:.1f}d"
    return text + suffix


def read_hosts(store: KVStore) -> List[HostRecord]:
    """Every heartbeat record in ``store``, newest beat first."""
    store.open_collection(HOSTS)

    def fn(t: StoreTxn) -> List[HostRecord]:
        items = t.collection(HOSTS).scan(b"")
        try:
            return [HostRecord.from_json(json.loads(raw)) for _, raw in items]
        finally:
            items.close()

    hosts: List[HostRecord] = store.view(fn)
    return sorted(hosts, key=lambda h: h.last_seen, reverse=True)


def live_hosts(hosts: Iterable[HostRecord], now: Optional[float] = None) -> List[HostRecord]:
    """The hosts among ``hosts`` that are live at ``now``."""
    now = time.time() if now is None else now
    return [h for h in hosts if h.live(now)]


@attrs.frozen
class Seen:
    """Who runs a syncer or plugin: a live host (``None``: nobody now), and the last one seen."""

    live: Optional[HostRecord]
    last: Optional[HostRecord]

    @property
    def state(self) -> str:
        """``running`` (a live host has it), ``stopped`` (one had it), ``no host`` (never seen)."""
        return "running" if self.live is not None else "stopped" if self.last is not None else "no host"

    def as_json(self) -> Dict[str, Any]:
        """``{"host", "last_host", "last_seen"}``: the live host's id (or ``None``), the id of the
        one that ran it last, and when that one was last seen (``None`` while a host is live)."""
        if self.live is not None:
            return {"host": self.live.id, "last_host": self.live.id, "last_seen": None}
        return {
            "host": None,
            "last_host": self.last.id if self.last is not None else None,
            "last_seen": round(self.last.last_seen, 3) if self.last is not None else None,
        }


def who_runs(hosts: Iterable[HostRecord], what: str, name: str, now: Optional[float] = None) -> Seen:
    """Which host runs syncer (``what="syncers"``) or plugin (``"plugins"``) ``name``.

    Among live hosts, one that delivers the syncer is preferred to one standing by for it.
    """
    now = time.time() if now is None else now
    having = [h for h in hosts if name in (h.syncers if what == "syncers" else h.plugins)]
    live = [h for h in having if h.live(now)]
    live.sort(key=lambda h: (what == "syncers" and h.syncers.get(name) == "standby", -h.beat))
    last = max(having, key=lambda h: h.last_seen, default=None)
    return Seen(live[0] if live else None, last)


class Heartbeat:
    """This host's record: written at :meth:`start`, every ``interval``, and at :meth:`stop`."""

    def __init__(
        self,
        store: KVStore,
        report: Report,
        ttl: float = TTL,
        interval: Optional[float] = None,
        clock: Callable[[], float] = time.time,
    ):
        if ttl <= 0:
            raise ValueError(f"heartbeat ttl must be > 0 seconds, got {ttl}")
        self.store, self.report, self.ttl, self.clock = store, report, float(ttl), clock
        self.interval = interval if interval is not None else min(BEAT_EVERY, ttl / 3)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.id = f"{self.host}:{self.pid}:{secrets.token_hex(3)}"
        self.started = clock()
        self._key = self.id.encode()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        store.open_collection(HOSTS)

    def _record(self, stopped: Optional[float] = None) -> Dict[str, Any]:
        now = self.clock()
        try:
            report = dict(self.report())
        except Exception as exc:  # a bug in the report must not stop the beat
            log.warning("heartbeat: cannot collect this host's state: %s: %s", type(exc).__name__, exc)
            report = {}
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "beat": now,
            "ttl": self.ttl,
            "stopped": stopped,
            "syncers": dict(report.get("syncers") or {}),
            "plugins": sorted(report.get("plugins") or ()),
        }

    def beat(self, stopped: Optional[float] = None) -> bool:
        """Write the record now; False (logged) if the KV refused."""
        raw = json.dumps(self._record(stopped)).encode()
        try:
            self.store.update(lambda t: t.collection(HOSTS).put(self._key, raw))
        except KVError as exc:
            log.warning("heartbeat of %s not written: %s: %s", self.id, type(exc).__name__, exc)
            return False
        return True

    def start(self) -> Heartbeat:
        """Prune long-gone hosts, beat once, then beat in a daemon thread."""
        if self._thread is not None:
            return self
        try:
            self.prune()
        except KVError as exc:
            log.debug("heartbeat: cannot prune old host records: %s", exc)
        self.beat()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()
        log.info("host %s beats every %.1fs (gone after %.0fs without one)", self.id, self.interval, self.ttl)
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # a bug: keep beating (a host that stops beating is taken for dead)
                log.exception("heartbeat of %s failed", self.id)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating and mark the record stopped, so readers see it at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.beat(stopped=self.clock())

    def prune(self) -> int:
        """Delete the records of hosts gone for over ``KEEP_GONE`` s (the newest ``KEEP_LAST`` stay)."""
        now = self.clock()
        gone = [h for h in read_hosts(self.store) if not h.live(now)]  # newest first
        old = [h for h in gone[KEEP_LAST:] if now - h.last_seen > KEEP_GONE]
        if old:

            def fn(t: StoreTxn) -> None:
                for h in old:
                    t.collection(HOSTS).delete(h.id.encode())

            self.store.update(fn)
        return len(old)
