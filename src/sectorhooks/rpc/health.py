"""``GET /healthz`` (the process answers) and ``GET /readyz`` (the host does its job).

``/readyz`` answers 200 ``{"ready": true, "failing": []}`` when the KV store answers a read,
every syncer is delivering (or lags at most ``[Common.Sync] MaxLag`` seconds) and no active
plugin's optional ``Health()`` returns a reason; else 503 with every failing part named:
``{"ready": false, "failing": [{"part": "syncer pg", "why": "retrying: flush: ..."}]}``.

Every check runs in a daemon thread of its own with a deadline (:class:`Probe`): a KV or a
plugin that hangs makes the answer say so within ``timeout`` seconds instead of hanging it, and
a check still running is waited for again, never started twice.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, List, Optional, Tuple, TypeVar

import anyio.to_thread
import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..config import SyncSettings
from ..errors import ProbeTimeout
from ..host import PluginHost, PluginStatus
from ..sync.dispatcher import DispatcherState

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a check may take before it counts as failing (it goes on in its thread).
CHECK_TIMEOUT = 5.0
#: Syncer states in which it delivers (or another replica does, for ``standby``).
DELIVERING = frozenset(
    {
        DispatcherState.RUNNING,
        DispatcherState.IDLE,
        DispatcherState.STANDBY,
        DispatcherState.RESUMING,
        DispatcherState.NOT_STARTED,
    }
)


class _Call:
    __slots__ = ("done", "error", "since", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.since = time.monotonic()
        self.value: Any = None
        self.error: Optional[BaseException] = None


class Probe(Generic[T]):
    """Runs ``fn()`` in a daemon thread, one call at a time; callers wait at most a deadline."""

    def __init__(self, fn: Callable[[], T], what: str):
        self.fn, self.what = fn, what
        self._lock = threading.Lock()
        self._call: Optional[_Call] = None

    def start(self) -> _Call:
        """The call in flight, or a new one."""
        with self._lock:
            call = self._call
            if call is None or call.done.is_set():
                call = self._call = _Call()
                threading.Thread(
                    target=self._run, args=(call,), name=f"probe: {self.what}", daemon=True
                ).start()
            return call

    def _run(self, call: _Call) -> None:
        try:
            call.value = self.fn()
        except BaseException as exc:
            call.error = exc
        finally:
            call.done.set()

    def wait(self, call: _Call, timeout: float) -> T:
        """``call``'s result, its exception, or :class:`ProbeTimeout` after ``timeout`` seconds."""
        if not call.done.wait(max(0.0, timeout)):
            raise ProbeTimeout(f"{self.what} has not answered for {time.monotonic() - call.since:.1f}s")
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[no-any-return]

    def __call__(self, timeout: float) -> T:
        return self.wait(self.start(), timeout)


def describe(exc: BaseException) -> str:
    """``Type: message`` (a timeout: just its message)."""
    return str(exc) if isinstance(exc, ProbeTimeout) else f"{type(exc).__name__}: {exc}"


class PluginHealth:
    """Each active plugin's optional ``Health()`` (``None``: healthy, else the reason)."""

    def __init__(self, host: PluginHost):
        self.host = host
        self._probes: Dict[str, Probe[Any]] = {}

    def check(self, timeout: float = CHECK_TIMEOUT) -> Dict[str, Optional[str]]:
        """``{plugin: None or why}`` for every active plugin, all asked at once."""
        out: Dict[str, Optional[str]] = {}
        asked: List[Tuple[str, Probe[Any], _Call]] = []
        for record in self.host.plugins():
            if record.status is not PluginStatus.ACTIVE:
                continue
            impl = self.host.impl(record.name, "plugin_health")
            if impl is None:
                out[record.name] = None
                continue
            probe = self._probes.get(record.name)
            if probe is None:
                probe = self._probes[record.name] = Probe(impl, f"plugin {record.name!r} Health()")
            asked.append((record.name, probe, probe.start()))
        deadline = time.monotonic() + timeout
        for name, probe, call in asked:
            try:
                problem = probe.wait(call, deadline - time.monotonic())
            except ProbeTimeout as exc:
                out[name] = str(exc)
            except Exception as exc:
                out[name] = f"Health() raised {describe(exc)}"
            else:
                out[name] = None if problem is None else f"unhealthy: {problem}"
        return out

    def kinds(self) -> Dict[str, str]:
        """``{plugin: kind}`` of every active plugin."""
        return {
            r.name: r.kind.value if r.kind is not None else ""
            for r in self.host.plugins()
            if r.status is PluginStatus.ACTIVE
        }


@attrs.frozen
class Failing:
    """A part that keeps the host from being ready, and why."""

    part: str
    why: str

    def as_json(self) -> Dict[str, str]:
        return {"part": self.part, "why": self.why}


def syncer_problem(row: Dict[str, Any], max_lag: float) -> Optional[str]:
    """Why the syncer of ``status()`` row ``row`` is not ready (``None``: it is): not delivering
    and lagging past ``max_lag`` seconds (or by an unknown time)."""
    state = str(row.get("state"))
    lag = row.get("lag_seconds")
    if state in DELIVERING or (isinstance(lag, (int, float)) and lag <= max_lag) or not row.get("lag_events"):
        return None
    why = state
    if row.get("last_error"):
        why += f": {row['last_error']}"
    if state in (DispatcherState.STOPPED, DispatcherState.NO_HOST) and not row.get("last_error"):
        why += " (no live host delivers it)"
    behind = f"{row['lag_events']} event(s) behind"
    behind += f", the oldest {lag:.1f}s old" if isinstance(lag, (int, float)) else ", age unknown"
    return f"{why}; {behind} (MaxLag {max_lag:g}s)"


class Checks:
    """What ``/readyz`` and ``/metrics`` check: the KV, the syncers, the plugins."""

    def __init__(
        self, runtime: Runtime, settings: Optional[SyncSettings] = None, timeout: float = CHECK_TIMEOUT
    ):
        self.runtime = runtime
        self.max_lag = (settings or SyncSettings()).max_lag
        self.timeout = timeout
        self.plugins = PluginHealth(runtime.host)
        self.kv_probe: Probe[int] = Probe(self._ping, "the KV store")
        self.status_probe: Probe[List[Dict[str, Any]]] = Probe(self._status, "sync status")

    def _ping(self) -> int:
        return int(self.runtime.state.log.head())  # one read of the log head: the KV answers

    def _status(self) -> List[Dict[str, Any]]:
        sync = getattr(self.runtime, "sync", None)
        return [] if sync is None else list(sync.status())

    def failing(self) -> List[Failing]:
        """Every failing part (blocking, at most about twice ``timeout``; call it off the event loop)."""
        out: List[Failing] = []
        kv = self.kv_probe.start()
        plugins = self.plugins.check(self.timeout)
        try:
            self.kv_probe.wait(kv, self.timeout)
        except Exception as exc:
            out.append(Failing("kv", describe(exc)))
        else:
            try:
                rows = self.status_probe(self.timeout)
            except Exception as exc:
                out.append(Failing("sync", f"status: {describe(exc)}"))
            else:
                for row in rows:
                    problem = syncer_problem(row, self.max_lag)
                    if problem is not None:
                        out.append(Failing(f"syncer {row['name']}", problem))
        for name, problem in plugins.items():
            if problem is not None:
                out.append(Failing(f"plugin {name}", problem))
        return out

    async def readyz(self, request: Request) -> Response:
        """``GET /readyz``: 200 when ready, else 503 naming each failing part."""
        failing = await anyio.to_thread.run_sync(self.failing)
        if failing:
            log.info("not ready: %s", "; ".join(f"{f.part}: {f.why}" for f in failing))
        body = {"ready": not failing, "failing": [f.as_json() for f in failing]}
        return JSONResponse(body, status_code=503 if failing else 200, headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    """``GET /healthz``: the process answers (no check of its parts: that is ``/readyz``)."""
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
