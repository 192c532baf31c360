"""``sectorhooks demo``: a simulated sealing run on real parts, then a check of every sink.

:func:`run_demo` opens a :class:`~sectorhooks.runtime.Runtime` on a config (by default the
starter config written into a fresh directory: sqlkv on SQLite, fsstore stores, three sqlsync
SQLite sinks, atomic_counter), drives :class:`~.pipeline.Pipeline` through it while the sync
dispatchers run, waits until every sink caught up, compares each sink with the KV and returns a
JSON-ready summary whose ``consistent`` says whether all of them (and the counters) agree.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..config import HostConfig, load_config
from ..runtime import Runtime
from ..stores import store_roles
from .pipeline import DemoOptions, Pipeline, Progress
from .starter import CONFIG_NAME, starter_config, write_starter_config
from .verify import check, differences, kv_rows, verify_sinks

__all__ = [
    "CONFIG_NAME",
    "DemoOptions",
    "demo_config",
    "differences",
    "kv_rows",
    "run_demo",
    "starter_config",
    "verify_config",
    "verify_sinks",
    "write_starter_config",
]

log = logging.getLogger(__name__)


def demo_config(directory: Path) -> HostConfig:
    """The config of a demo directory: its ``sectorhooks.toml``, written first if missing."""
    path = directory / CONFIG_NAME
    if not path.exists():
        write_starter_config(path)
    return load_config(path)


def _prepare_sqlite_dirs(config: HostConfig) -> None:
    """Create the directories of SQLite files the config names (drivers do not)."""
    urls = [s.meta.get("url") for s in config.syncers]
    if config.db is not None:
        urls.append(config.db.meta.get("url"))
    for url in urls:
        if isinstance(url, str) and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


def _wait_for_sinks(rt: Runtime, progress: Progress, timeout: float) -> bool:
    """Wait until every syncer's cursor reached the log head (or ``timeout``); reports progress."""
    deadline = time.monotonic() + timeout
    total: Optional[int] = None
    while True:
        status = rt.sync.status()
        lag = sum(int(s.get("lag_events") or 0) for s in status)
        total = max(total or 0, lag)
        progress("sync", total - lag, total)
        if rt.sync.wait_idle(timeout=0.25):
            progress("sync", total, total)
            return True
        if time.monotonic() > deadline:
            return False


def _sink_summary(rt: Runtime, miners: List[int]) -> Dict[str, Any]:
    checked = check(rt, miners)  # one pass over the KV for every sink and counter
    sinks, counters = checked["sinks"], checked["counters"]
    return {
        "kv_sectors": checked["kv_sectors"],
        "sinks": sinks,
        "counters": counters,
        "dead_letters": sum(int(s["dead_letters"] or 0) for s in sinks),
        "consistent": all(s["equal_to_kv"] is not False for s in sinks)
        and all(c["equal"] for c in counters.values()),
        # sinks whose plugin has no ReadBack: not compared, so never reported equal
        "unverifiable": [s["name"] for s in sinks if s["unverifiable"]],
    }


def run_demo(
    config: HostConfig,
    options: Optional[DemoOptions] = None,
    progress: Optional[Progress] = None,
    sync_timeout: float = 600.0,
) -> Dict[str, Any]:
    """Simulate, wait for the sinks, verify; returns the summary (see the module doc)."""
    options = options or DemoOptions()
    report = progress or (lambda phase, done, total: None)
    _prepare_sqlite_dirs(config)
    t0 = time.perf_counter()
    with Runtime.open(config) as rt:
        t_open = time.perf_counter()
        roles = store_roles(config)
        pipeline = Pipeline(
            rt,
            options,
            report,
            persist_names=[n for n in rt.filestores if roles.get(n) == "persist"],
            piece_names=[n for n in rt.filestores if roles.get(n) == "piece"],
        )
        tally = pipeline.run()
        t_sim = time.perf_counter()
        caught_up = _wait_for_sinks(rt, report, sync_timeout)
        t_sync = time.perf_counter()
        report("verify", 0, 1)
        checked = _sink_summary(rt, pipeline.miners())
        report("verify", 1, 1)
        t_verify = time.perf_counter()
        states = rt.state.state_counts()
    simulate_s = t_sim - t_open
    counts = tally.as_dict()
    summary: Dict[str, Any] = {
        "config": config.path,
        "data_dir": str(config.data_dir),
        "sectors": options.sectors,
        "miners": pipeline.miners(),
        "seed": options.seed,
        "changes": counts.pop("changes"),
        "errors": counts.pop("errors"),
        "files": counts.pop("files"),
        "sectors_by_fate": counts,
        "states": dict(sorted(states.items())),
        "caught_up": caught_up,
        **checked,
        "timing": {
            "open_s": round(t_open - t0, 3),
            "simulate_s": round(simulate_s, 3),
            "sync_catchup_s": round(t_sync - t_sim, 3),
            "verify_s": round(t_verify - t_sync, 3),
            "total_s": round(time.perf_counter() - t0, 3),
        },
    }
    summary["throughput"] = {
        "changes_per_s": round(summary["changes"] / simulate_s, 1) if simulate_s > 0 else None,
        "sink_changes_per_s": round(
            summary["changes"] * len(summary["sinks"]) / max(t_sync - t_open, 1e-9), 1
        ),
    }
    summary["consistent"] = bool(summary["consistent"] and caught_up)
    summary["ok"] = summary["consistent"] and not summary["errors"]
    return summary


def verify_config(config: HostConfig) -> Dict[str, Any]:
    """Re-check an existing setup without simulating: every sink vs the KV, and the counters."""
    with Runtime.open(config, start_sync=False, filestores=False) as rt:
        checked = _sink_summary(rt, [])
    return checked


def load_demo_config(directory: Optional[Path], config_path: Optional[str]) -> HostConfig:
    """``--config FILE`` if given, else the demo directory's config."""
    if config_path:
        return load_config(config_path)
    assert directory is not None
    return demo_config(directory)
