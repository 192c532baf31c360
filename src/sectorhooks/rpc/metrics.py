"""``GET /metrics``: the host in the Prometheus text format (``prometheus_client``).

Each gateway app has a :class:`Metrics` with its own ``CollectorRegistry`` (never the global
one, so several apps in a process, and tests, do not clash). What a request or a commit changes
is counted when it happens (RPC calls, group commits); the rest is read at scrape time from
what already keeps it (``SyncService.status()``, the dispatchers' counters, plugin ``Health()``)
by collectors, so a scrape shows the state of now and nothing is kept twice. The README's
"Metrics and health" section lists every metric.

Access: a bearer token (any permission: ``read`` is the least) or a dev-mode loopback caller, as
for JSON-RPC; with ``[Common.API] MetricsOpen = true``, anyone who can reach the listener.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Iterator, List

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from . import protocol as p
from .health import Checks, describe

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

#: Every state a syncer may show (``sectorhooks_sync_state`` has one series per state, 1 for the current).
SYNC_STATES = (
    "not started",
    "running",
    "idle",
    "retrying",
    "hung",
    "stopped",
    "resuming",
    "crashed",
    "standby",
    "unavailable",
    "no host",
)
PLUGIN_STATUSES = ("loaded", "active", "failed", "invalid", "disabled", "stopped")
OTHER_METHOD = "(unknown)"  # the label of calls to methods that do not exist (bounded cardinality)
GROUP_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
COMMIT_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

Dispatch = Callable[[p.Call, Any], Awaitable[Any]]
Authenticate = Callable[[Request], Awaitable[Any]]


def outcome_of(code: int) -> str:
    """The ``outcome`` label of a JSON-RPC error code: ``invalid_params``, ``timed_out`` ..."""
    name = p.ERROR_CODES.get(code)
    return name.lower().replace(" ", "_") if name else "other_error"


class SyncCollector:
    """Per syncer, read at scrape time: lag, delivery counters, dead letters, worker, state."""

    def __init__(self, runtime: Runtime, checks: Checks):
        self.runtime, self.checks = runtime, checks

    def collect(self) -> Iterator[Metric]:
        sync = getattr(self.runtime, "sync", None)
        if sync is None:
            return
        by = ["syncer"]
        delivered = CounterMetricFamily(
            "sectorhooks_sync_events_delivered",
            "Change-log events delivered to the syncer and flushed, by this process",
            labels=by,
        )
        lettered = CounterMetricFamily(
            "sectorhooks_sync_events_dead_lettered", "Events this process put in dead letters", labels=by
        )
        retries = CounterMetricFamily(
            "sectorhooks_sync_retries",
            "Failed delivery attempts (a batch, a Flush, a cursor write) that are tried again",
            labels=by,
        )
        restarts = CounterMetricFamily(
            "sectorhooks_sync_worker_restarts",
            "Times the syncer's worker process was started again after the first start",
            labels=by,
        )
        crashes = CounterMetricFamily(
            "sectorhooks_sync_worker_crashes",
            "Times the syncer's worker process died or was killed for hanging",
            labels=by,
        )
        for name in sync.syncers:
            d = sync.dispatcher(name)
            info = d.runner.info()
            delivered.add_metric([name], d.delivered)
            lettered.add_metric([name], d.dead_lettered)
            retries.add_metric([name], d.retries)
            restarts.add_metric([name], max(0, int(info.get("starts") or 0) - 1))
            crashes.add_metric([name], int(info.get("crashes") or 0))
        yield from (delivered, lettered, retries, restarts, crashes)

        up = GaugeMetricFamily(
            "sectorhooks_sync_status_up", "1 if the syncers' status could be read from the KV at this scrape"
        )
        try:
            rows = self.checks.status_probe(self.checks.timeout)
        except Exception as exc:
            log.warning("/metrics: no sync status: %s", describe(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        lag_events = GaugeMetricFamily(
            "sectorhooks_sync_lag_events", "Change-log events not yet delivered to the syncer", labels=by
        )
        lag_seconds = GaugeMetricFamily(
            "sectorhooks_sync_lag_seconds",
            "Age of the oldest change not yet delivered to the syncer (0: none; NaN: unknown)",
            labels=by,
        )
        cursor = GaugeMetricFamily("sectorhooks_sync_cursor", "Last change-log entry delivered", labels=by)
        dead = GaugeMetricFamily(
            "sectorhooks_sync_dead_letters", "Dead letters stored for the syncer (any host's)", labels=by
        )
        state = GaugeMetricFamily(
            "sectorhooks_sync_state",
            "1 for the syncer's current state, 0 for the others",
            labels=["syncer", "state"],
        )
        head = GaugeMetricFamily("sectorhooks_sync_log_head", "Last change-log entry written")
        for row in rows:
            name = row["name"]
            lag_events.add_metric([name], row["lag_events"])
            lag = row["lag_seconds"]
            lag_seconds.add_metric([name], float("nan") if lag is None else float(lag))
            cursor.add_metric([name], row["cursor"])
            dead.add_metric([name], row["dead_letters"])
            current = row["state"]
            for s in SYNC_STATES if current in SYNC_STATES else (*SYNC_STATES, current):
                state.add_metric([name, s], 1 if s == current else 0)
        if rows:
            head.add_metric([], rows[0]["head"])
        yield from (lag_events, lag_seconds, cursor, dead, state, head)


class HostCollector:
    """The KV's reachability and the plugins' health, checked at scrape time."""

    def __init__(self, runtime: Runtime, checks: Checks):
        self.runtime, self.checks = runtime, checks

    def collect(self) -> Iterator[Metric]:
        kv = GaugeMetricFamily("sectorhooks_kv_up", "1 if the KV store answered a read at this scrape")
        try:
            self.checks.kv_probe(self.checks.timeout)
            kv.add_metric([], 1)
        except Exception as exc:
            log.warning("/metrics: the KV store does not answer: %s", describe(exc))
            kv.add_metric([], 0)
        yield kv
        healthy = GaugeMetricFamily(
            "sectorhooks_plugin_healthy",
            "1 if the active plugin's Health() returned None (or it has none), else 0",
            labels=["plugin", "kind"],
        )
        kinds = self.checks.plugins.kinds()
        for name, problem in self.checks.plugins.check(self.checks.timeout).items():
            healthy.add_metric([name, kinds.get(name, "")], 0 if problem else 1)
        yield healthy
        plugins = GaugeMetricFamily("sectorhooks_plugins", "Plugins by lifecycle status", labels=["status"])
        counts: Dict[str, int] = {s: 0 for s in PLUGIN_STATUSES}
        for record in self.runtime.host.plugins():
            counts[record.status.value] = counts.get(record.status.value, 0) + 1
        for status, n in counts.items():
            plugins.add_metric([status], n)
        yield plugins


class Metrics:
    """The registry of one gateway app, its RPC and group-commit instruments, its endpoint."""

    def __init__(self, runtime: Runtime, checks: Checks, metrics_open: bool = False):
        self.metrics_open = metrics_open
        self.registry = CollectorRegistry()
        self.rpc_calls = Counter(
            "sectorhooks_rpc_calls",
            "JSON-RPC calls by method and outcome (ok, or the error's name: invalid_params, timed_out ...)",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "sectorhooks_rpc_call_seconds",
            "Time from dispatch to result of a JSON-RPC call, by method",
            ["method"],
            registry=self.registry,
        )
        self.group_size = Histogram(
            "sectorhooks_state_group_commit_size",
            "State changes (calls) committed together in one KV transaction",
            buckets=GROUP_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.group_seconds = Histogram(
            "sectorhooks_state_group_commit_seconds",
            "Time to commit one group of state changes (KV transaction and change-log entry)",
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(SyncCollector(runtime, checks))
        self.registry.register(HostCollector(runtime, checks))
        state = getattr(runtime, "state", None)
        if state is not None and hasattr(state, "add_group_listener"):
            state.add_group_listener(self.observe_group)

    def observe_group(self, changes: int, seconds: float) -> None:
        """A group commit of ``changes`` calls took ``seconds`` (the state manager's listener)."""
        self.group_size.observe(changes)
        self.group_seconds.observe(seconds)

    def instrument(self, dispatch: Dispatch, known: Callable[[str], bool]) -> Dispatch:
        """``dispatch`` counting each call by method (``known`` ones; others as ``(unknown)``) and outcome."""

        async def timed(call: p.Call, ctx: Any) -> Any:
            method = call.method if known(call.method) else OTHER_METHOD
            outcome = "ok"
            start = time.perf_counter()
            try:
                return await dispatch(call, ctx)
            except p.RpcError as exc:
                outcome = outcome_of(exc.code)
                raise
            except BaseException:  # the engine turns it into -32603; a cancel ends the call too
                outcome = "internal_error"
                raise
            finally:
                self.rpc_calls.labels(method, outcome).inc()
                self.rpc_seconds.labels(method).observe(time.perf_counter() - start)

        return timed

    def render(self) -> bytes:
        """The text exposition of everything (blocking: reads the KV, asks plugins)."""
        return generate_latest(self.registry)

    def endpoint(self, authenticate: Authenticate) -> Callable[[Request], Awaitable[Response]]:
        """``GET /metrics``; ``authenticate(request)`` gives a call context or the 401 response."""

        async def metrics(request: Request) -> Response:
            if not self.metrics_open:
                ctx = await authenticate(request)
                if isinstance(ctx, Response):
                    return ctx
            body = await anyio.to_thread.run_sync(self.render)
            return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

        return metrics


def metric_names(registry: CollectorRegistry) -> List[str]:
    """Names of every metric family ``registry`` yields now (for docs and tests)."""
    return sorted({m.name for m in registry.collect()})
