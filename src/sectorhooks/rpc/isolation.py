"""Plugin JSON-RPC methods run on bounded threads of their own, never on the host's.

Each RegisterJsonRpc namespace gets a :class:`PluginPool`: at most ``limit`` calls in flight
(``[Common.API] PluginConcurrency``), each answered within ``timeout`` seconds (``CallTimeout``).
Beyond the limit a call is refused at once with -32029 (it never started: safe to retry); past the
timeout it is answered -32008 (it started and its outcome is unknown). Python cannot stop a thread,
so a timed-out call's thread is abandoned, but it keeps its place in the limit until the plugin's
function returns: a hung plugin holds at most ``limit`` threads, and never one of anyio's worker
threads that serve ``Sector.*``, ``Sync.*``, ``Plugins.*`` and ``Auth.*``.

The workers are daemon threads this module manages: one still hung at exit does not hold the
interpreter (``concurrent.futures.ThreadPoolExecutor`` would, its atexit hook joins every worker),
so ``serve`` exits on SIGTERM without ``os._exit``: the runtime still closes in order. At shutdown
:meth:`PluginCalls.close` answers every call still waiting at once, so uvicorn's graceful drain does
not wait for them either.

Async methods run on the event loop as before, under the same limit and timeout (a timed-out
coroutine is cancelled). One that blocks the loop itself is beyond what a thread pool can bound.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Set

import anyio
import attrs

from ..errors import PluginCallBusy, PluginCallTimeout
from . import protocol as p

if TYPE_CHECKING:
    from .methods import MethodRegistry

log = logging.getLogger(__name__)

#: An idle worker thread exits after this many seconds; the next call starts a new one.
IDLE_SECONDS = 60.0


class _Job:
    """One call handed to a worker: the function, where to send its outcome, and its fate."""

    __slots__ = ("abandoned", "fn", "future", "loop", "returned", "started_at")

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop):
        self.fn: Optional[Callable[[], Any]] = fn
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.abandoned = False  # the caller was answered without the result (timeout, shutdown)
        self.returned = False  # the plugin's function returned or raised
        self.started_at = time.monotonic()


def _settle(future: asyncio.Future[Any], value: Any, exc: Optional[BaseException]) -> None:
    if future.done():  # the caller gave up in the meantime
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)


class PluginPool:
    """The threads, limit and timeout of one plugin namespace; see the module docstring."""

    def __init__(self, namespace: str, plugin: str, limit: int, timeout: float):
        if limit < 1 or timeout <= 0:
            raise ValueError(f"namespace {namespace!r}: limit must be >= 1 and timeout > 0")
        self.namespace, self.plugin, self.limit, self.timeout = namespace, plugin, limit, timeout
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        # Workers waiting for a job = _idle + jobs handed out but not yet taken: a caller that
        # finds _idle > 0 reserves one of them; otherwise it starts a thread for its job.
        self._idle = 0
        self.threads = 0
        self.in_flight = 0  # admitted and not yet returned, abandoned ones included
        self.hung = 0  # abandoned by their caller and still running
        self.busy_count = 0
        self.timeout_count = 0
        self._waiting: Set[anyio.CancelScope] = set()
        self._closed = False
        self._serial = 0

    def stats(self) -> Dict[str, Any]:
        """Counters for ``Plugins.Calls``."""
        with self._lock:
            return {
                "namespace": self.namespace,
                "plugin": self.plugin,
                "limit": self.limit,
                "timeout": self.timeout,
                "in_flight": self.in_flight,
                "hung": self.hung,
                "threads": self.threads,
                "busy": self.busy_count,
                "timeouts": self.timeout_count,
            }

    # --- admission ---------------------------------------------------------------------------

    def _admit(self, method: str) -> None:
        with self._lock:
            if self._closed:
                raise PluginCallBusy(
                    method,
                    self.namespace,
                    self.limit,
                    self.in_flight,
                    self.hung,
                    "the server is shutting down",
                )
            if self.in_flight >= self.limit:
                self.busy_count += 1
                raise PluginCallBusy(method, self.namespace, self.limit, self.in_flight, self.hung)
            self.in_flight += 1

    def _release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    # --- threads -----------------------------------------------------------------------------

    def _hand_out(self, job: _Job) -> None:
        with self._lock:
            spawn = self._idle == 0
            if spawn:
                self.threads += 1
                self._serial += 1
                name = f"rpc:{self.namespace}:{self._serial}"
            else:
                self._idle -= 1
        if spawn:
            try:
                threading.Thread(target=self._work, name=name, daemon=True).start()
            except BaseException:
                with self._lock:
                    self.threads -= 1
                raise
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # no job is on its way to a waiting worker: leave
                        self._idle -= 1
                        self.threads -= 1
                        return
                continue
            value: Any = None
            exc: Optional[BaseException] = None
            fn, job.fn = job.fn, None
            ran = False
            if fn is not None and not job.abandoned:  # nobody waits for a job abandoned before it ran
                ran = True
                try:
                    value = fn()
                except Exception as e:
                    exc = e
                except BaseException as e:  # SystemExit & co from a plugin must not reach the loop
                    exc = RuntimeError(f"raised {type(e).__name__}: {e}")
                    exc.__cause__ = e
            with self._lock:
                job.returned = True
                self.in_flight -= 1
                self._idle += 1
                late = job.abandoned
                if late:
                    self.hung -= 1
            if late and ran:
                log.warning(
                    "plugin %r namespace %r: an abandoned call returned after %.1fs",
                    self.plugin,
                    self.namespace,
                    time.monotonic() - job.started_at,
                )
            else:
                try:
                    job.loop.call_soon_threadsafe(_settle, job.future, value, exc)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass
            del job, fn, value, exc  # hold nothing of the call while idle

    # --- calls -------------------------------------------------------------------------------

    async def run(self, method: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` on one of this namespace's threads, within the limit and the timeout."""
        self._admit(method)
        job = _Job(fn, asyncio.get_running_loop())
        try:
            self._hand_out(job)
        except BaseException:
            self._release()
            raise
        try:
            return await self._wait(method, job.future)
        finally:
            with self._lock:
                if not job.returned:
                    job.abandoned = True
                    self.hung += 1

    async def run_async(self, method: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """``await fn()`` on the event loop, within the limit and the timeout (cancelled past it)."""
        self._admit(method)
        try:
            return await self._wait(method, fn())
        finally:
            self._release()

    async def _wait(self, method: str, awaitable: Awaitable[Any]) -> Any:
        start = anyio.current_time()
        scope = anyio.CancelScope(deadline=start + self.timeout)
        self._waiting.add(scope)
        try:
            with scope:
                return await awaitable
        finally:
            self._waiting.discard(scope)
        # only reached when the scope ended the wait: the deadline passed, or close() cancelled it
        if self._closed:
            raise PluginCallTimeout(method, self.plugin, anyio.current_time() - start, shutdown=True)
        with self._lock:
            self.timeout_count += 1
        raise PluginCallTimeout(method, self.plugin, self.timeout)

    def close(self) -> None:
        """Refuse new calls and answer every waiting one now (on the event loop's thread)."""
        with self._lock:
            self._closed = True
        for scope in list(self._waiting):
            scope.cancel()


class PluginCalls:
    """Every plugin namespace's :class:`PluginPool`; :meth:`install` routes a registry through them."""

    def __init__(self, timeout: float, limit: int):
        self.timeout, self.limit = timeout, limit
        self.pools: Dict[str, PluginPool] = {}

    def install(self, registry: MethodRegistry) -> None:
        """Replace each plugin method of ``registry`` (a MethodRegistry) by a call through its pool.

        The replacement is async, so dispatch awaits it on the event loop instead of handing the
        plugin's function to anyio's threads; params are still bound against the original signature.
        """
        for name, m in list(registry.methods.items()):
            if m.plugin is None or _is_wrapped(m.func):
                continue
            pool = self.pools.get(m.namespace)
            if pool is None:
                pool = self.pools[m.namespace] = PluginPool(m.namespace, m.plugin, self.limit, self.timeout)
            registry.methods[name] = attrs.evolve(
                m, func=_through(pool, m.name, m.func, m.is_async), is_async=True
            )

    def stats(self) -> List[Dict[str, Any]]:
        """Per plugin namespace: limit, timeout, calls in flight, hung threads, busy and timeout counts."""
        return [self.pools[ns].stats() for ns in sorted(self.pools)]

    def hung(self) -> int:
        """Abandoned calls still running, over every namespace."""
        return sum(pool.hung for pool in self.pools.values())

    def close(self) -> None:
        """At shutdown, on the event loop: refuse new plugin calls, answer the waiting ones now."""
        for pool in self.pools.values():
            pool.close()


def _is_wrapped(func: Any) -> bool:
    return getattr(func, "__sectorhooks_pool__", None) is not None


def _through(pool: PluginPool, method: str, func: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """An async stand-in for ``func`` that runs it through ``pool`` and answers busy/timeout codes."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        bound = functools.partial(func, *args, **kwargs)
        try:
            if is_async:
                return await pool.run_async(method, bound)
            return await pool.run(method, bound)
        except PluginCallBusy as exc:
            data = {
                "namespace": exc.namespace,
                "limit": exc.limit,
                "in_flight": exc.in_flight,
                "hung": exc.hung,
            }
            raise p.RpcError(p.BUSY, str(exc), data) from None
        except PluginCallTimeout as exc:
            raise p.RpcError(p.TIMED_OUT, str(exc), {"method": exc.method, "seconds": exc.seconds}) from None

    call.__sectorhooks_pool__ = pool  # type: ignore[attr-defined]
    call.__name__ = getattr(func, "__name__", method)
    return call


__all__ = ["IDLE_SECONDS", "PluginCalls", "PluginPool"]
