"""``sectorhooks sync status|retry|backfill|verify``: look after the syncers' cursors and sinks.

Each command opens the runtime without starting the dispatchers (a running host keeps doing
that). ``retry`` and ``backfill`` deliver only where the syncer may be delivered: when a host
holds the syncer's lease, they ask that host (a request in the KV) and wait for its answer;
when none does, they take the lease and deliver here (``backfill`` then up to the log head).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import click
from rich.markup import escape
from rich.table import Table

from .. import liveness
from ..errors import SectorhooksError
from . import main
from ._common import config_option, console, fail, get_config, json_option, print_json

_STATE_STYLE = {
    "running": "green",
    "idle": "green",
    "retrying": "yellow",
    "standby": "dim",
    "stopped": "red",
    "crashed": "red",
    "hung": "red",
    "unavailable": "red",
    "no host": "red",
}


@contextmanager
def _runtime(config_path: Optional[str]) -> Iterator[Any]:
    from ..runtime import Runtime

    config = get_config(config_path)
    try:
        with Runtime.open(config, start_sync=False, filestores=False) as rt:
            yield rt
    except SectorhooksError as exc:
        fail(str(exc))


@main.group("sync")
def sync_group() -> None:
    """Syncers: lag, dead letters, re-delivery, backfill, verification."""


@sync_group.command("status")
@config_option
@json_option
def sync_status(config_path: Optional[str], as_json: bool) -> None:
    """Per syncer: state, cursor, lag (events and seconds), dead letters, worker crashes, last error.

    ``hung`` names the event and since when; ``crashes`` counts the worker process's deaths and
    kills (hangs) with its last exit status. ``host`` is the live host delivering the syncer
    (its heartbeat); with none, the state is ``stopped`` (``no host``: never delivered) and
    ``last_host`` / ``last_seen`` say which host ran it last and when.
    """
    with _runtime(config_path) as rt:
        rows = rt.sync.status()
    if as_json:
        print_json({"syncers": rows})
        return
    table = Table(title="syncers")
    for col in ("name", "plugin", "state", "cursor", "head", "lag", "lag s", "dead", "crashes", "last error"):
        table.add_column(
            col, justify="right" if col in ("cursor", "head", "lag", "lag s", "dead", "crashes") else "left"
        )
    for r in rows:
        style = _STATE_STYLE.get(r["state"], "")
        state = r["state"]
        if r.get("hung"):
            since = time.strftime("%H:%M:%S", time.localtime(r["hung"]["since"]))
            state = f"hung on event {r['hung']['event']} since {since}"
        if r.get("host") is None and r.get("last_host") and r["state"] in ("stopped", "no host"):
            seen = liveness.ago(time.time() - float(r["last_seen"]))
            state += f" (no live host; last {r['last_host']}, seen {seen})"
        crashes = str(r.get("crashes", 0))
        if r.get("crashes"):
            crashes = f"[red]{crashes}[/] ({escape(r.get('last_exit', ''))})"
        lag_s = "-" if r["lag_seconds"] is None else f"{r['lag_seconds']:.1f}"
        table.add_row(
            escape(r["name"]),
            escape(r["plugin"]),
            f"[{style}]{escape(state)}[/]" if style else escape(state),
            str(r["cursor"]),
            str(r["head"]),
            str(r["lag_events"]),
            lag_s,
            f"[red]{r['dead_letters']}[/]" if r["dead_letters"] else "0",
            crashes,
            escape(r["last_error"][:120]),
        )
    if not rows:
        console.print("no syncers: configure [[Common.Syncers]] or load a SyncSectorState plugin")
        return
    console.print(table)
    for r in rows:
        req = r.get("request")
        if req:
            age = max(0.0, time.time() - float(req["at"]))
            console.print(
                f"{escape(r['name'])}: {escape(req['action'])} request {escape(req['id'])} "
                f"{escape(req['state'])} for {age:.1f}s (the host holding the syncer runs it)"
            )


_wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to wait for the host that holds the syncer to run the request "
    "[default: 60 for retry, 600 for backfill].",
)


@sync_group.command("retry")
@click.argument("name")
@config_option
@json_option
@_wait_option
def sync_retry(name: str, config_path: Optional[str], as_json: bool, wait: Optional[float]) -> None:
    """Re-deliver syncer NAME's dead letters (exit 1 if some still fail)."""
    with _runtime(config_path) as rt:
        try:
            delivered = rt.sync.retry_dead_letters(name, wait)
        except SectorhooksError as exc:
            fail(str(exc))
        left = rt.sync.records.count_dead(name)
        errors = [d["error"] for d in rt.sync.records.dead_letters(name, limit=3)]
    if as_json:
        print_json({"name": name, "delivered": delivered, "remaining": left, "errors": errors})
    else:
        console.print(f"{escape(name)}: delivered {delivered} dead letter(s), {left} remaining")
        for error in errors:
            console.print(f"  [red]{escape(error)}[/]")
    if left:
        raise SystemExit(1)


@sync_group.command("backfill")
@click.argument("name")
@config_option
@json_option
@_wait_option
def sync_backfill(name: str, config_path: Optional[str], as_json: bool, wait: Optional[float]) -> None:
    """Replay the current state of every sector into syncer NAME, then deliver the log to its head."""
    with _runtime(config_path) as rt:
        try:
            t0 = time.monotonic()
            head = rt.state.log.head()
            sent = rt.sync.backfill(name, wait)
            rec = rt.sync.records.cursor(name) or {}
        except SectorhooksError as exc:
            fail(str(exc))
        cursor = int(rec.get("seq", 0))
        result = {
            "name": name,
            "sectors": sent,
            "log_entries": max(0, cursor - head),  # delivered after the states (here or by the host)
            "cursor": cursor,
            "seconds": round(time.monotonic() - t0, 3),
        }
    if as_json:
        print_json(result)
    else:
        console.print(
            f"{escape(name)}: backfilled {sent} sector(s), then {result['log_entries']} log entries; "
            f"cursor at {cursor} ({result['seconds']}s)"
        )


@sync_group.command("verify")
@click.argument("name")
@config_option
@json_option
@click.option("--limit", default=50, show_default=True, help="Differences to print.")
def sync_verify(name: str, config_path: Optional[str], as_json: bool, limit: int) -> None:
    """Compare syncer NAME's sink with the KV; print the differences (exit 1 if any)."""
    with _runtime(config_path) as rt:
        try:
            report = rt.sync.verify_report(name)  # streamed: the KV and the sink a page at a time
        except SectorhooksError as exc:
            fail(str(exc))
        diffs, sectors = report.lines(), report.kv_rows
        lag = next((s["lag_events"] for s in rt.sync.status() if s["name"] == name), 0)
    if as_json:
        print_json(
            {
                "name": name,
                "sectors": sectors,
                "lag_events": lag,
                "differences": diffs,
                "counts": report.as_dict(),
            }
        )
    elif not diffs:
        console.print(f"[green]{escape(name)}: the sink matches the KV ({sectors} sectors)[/]")
    else:
        console.print(f"[red]{escape(name)}: {report.differences} difference(s) with the KV[/]")
        for line in report.lines(limit)[:limit]:
            console.print(f"  {escape(line)}")
        if report.differences > limit:
            console.print(f"  ... {report.differences - limit} more (--limit)")
        if lag:
            console.print(f"  note: {lag} change(s) are not delivered yet: run `sync status` or wait")
    if diffs:
        raise SystemExit(1)
