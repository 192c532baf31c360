"""``sectorhooks sectors ...``: the sectors in the KV (``recount``: the kept counts).

Each command is one function on :data:`sectors_group` (``@sectors_group.command("name")``).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple

import click
from rich.markup import escape
from rich.table import Table

from .. import liveness
from ..errors import SectorhooksError
from . import main
from ._common import config_option, console, fail, get_config, json_option, print_json

if TYPE_CHECKING:  # the KV and the state are imported when a command runs
    from sectorhooks_spec import KVStore, SectorState, Workspace

    from ..state.counts import Difference


@contextmanager
def open_store(config_path: Optional[str]) -> Iterator[KVStore]:
    """The KV store of ``--config`` (its plugin loaded and started, no other plugin); exit 1 with
    the error if it cannot be opened."""
    from ..kv import kv_only

    config = get_config(config_path)
    try:
        with kv_only(config) as store:
            yield store
    except SectorhooksError as exc:
        fail(str(exc))


@main.group("sectors")
def sectors_group() -> None:
    """Sectors in the KV: their kept counts."""


@sectors_group.command("recount")
@config_option
@json_option
@click.option("--limit", default=50, show_default=True, help="Differences to print.")
def sectors_recount(config_path: Optional[str], as_json: bool, limit: int) -> None:
    """Count every sector (a full scan) and make the kept counts (StateCounts) equal to it.

    Prints the cells (workspace, miner, state name) whose kept count differed. Changes wait
    while it runs; the counts are written only if no change committed during the scan (it
    scans again otherwise). While a host serves this KV (its heartbeat is live) the counts are
    only compared: that host holds them in memory, stop it to fix them.

    Exit status: 0 when the kept counts were right, 1 when they differed (or were never kept)
    and were fixed, or could not be fixed or compared.
    """
    from ..state import SectorStateManager
    from ..state.counts import differences

    with open_store(config_path) as store:
        hosts = liveness.live_hosts(liveness.read_hosts(store))
        state = SectorStateManager(store)
        try:
            kept, counted = state.recount(fix=not hosts)
        except SectorhooksError as exc:
            fail(str(exc))
            raise AssertionError("unreachable") from None
        finally:
            state.close()
    diffs = differences(kept, counted)
    wrong = kept is None or bool(diffs)
    fixed = wrong and not hosts
    if as_json:
        print_json(
            {
                "sectors": counted.total,
                "kept": kept is not None,
                "equal": not wrong,
                "fixed": fixed,
                "live_hosts": [h.describe() for h in hosts],
                "differences": [d.as_json() for d in diffs],
                "counts": counted.as_json(),
            }
        )
    else:
        _print(kept is not None, counted.total, diffs, limit)
        if wrong:
            console.print(
                f"[green]fixed: the kept counts now equal the count of {counted.total} sectors[/]"
                if fixed
                else "[red]not fixed: a host serves this KV and keeps the counts in memory "
                f"({escape('; '.join(h.describe() for h in hosts))}); stop it and run this again[/]"
            )
    if wrong:
        raise SystemExit(1)


def _print(had_counts: bool, total: int, diffs: List[Difference], limit: int) -> None:
    if not had_counts:
        console.print(
            f"[yellow]this KV kept no sector counts (written by an older version): {total} sectors[/]"
        )
    elif not diffs:
        console.print(f"[green]the kept counts equal a full count of {total} sectors[/]")
        return
    if not diffs:
        return
    table = Table(title=f"{len(diffs)} cell(s) differ")
    for col in ("workspace", "miner", "state", "kept", "counted"):
        table.add_column(col, justify="right" if col in ("miner", "kept", "counted") else "left")
    for d in diffs[:limit]:
        ws, miner, name = d.cell
        table.add_row(ws.value, str(miner), escape(name or '""'), str(d.kept), str(d.counted))
    console.print(table)
    if len(diffs) > limit:
        console.print(f"  ... {len(diffs) - limit} more (--limit)")


@sectors_group.command("list")
@config_option
@json_option
@click.option(
    "--workspace", type=click.Choice(["online", "offline"]), default=None, help="Only this workspace."
)
@click.option("--miner", type=click.IntRange(min=0), default=None, help="Only this miner's sectors.")
@click.option(
    "--after", default=None, metavar="CURSOR", help="Start after this cursor (the 'next' of a page)."
)
@click.option("--limit", type=int, default=100, show_default=True, help="Sectors per page (1 to 1000).")
@click.option("--all", "all_pages", is_flag=True, help="Every page from --after (or the first) to the last.")
def sectors_list(
    config_path: Optional[str],
    as_json: bool,
    workspace: Optional[str],
    miner: Optional[int],
    after: Optional[str],
    limit: int,
    all_pages: bool,
) -> None:
    """A page of sectors from the KV, in sector id order, and the cursor of the next one.

    Reads the KV directly (no host needed), a page per read: pass the printed cursor as
    --after, with the same --workspace and --miner, for the next page; --all follows it to the
    end, printing as it goes. --json prints {"sectors": [...], "next": cursor or null}.
    """
    from sectorhooks_spec import Workspace, to_jsonable

    from ..errors import PageCursorError
    from ..kv import kv_only
    from ..state.scan import check_page_limit, decode_cursor, read_page

    config = get_config(config_path)
    ws = Workspace(workspace) if workspace is not None else None
    shown = 0
    try:
        check_page_limit(limit)  # before anything is printed or opened
        if after is not None:
            decode_cursor(after, ws, miner)
        with kv_only(config) as kv:
            cursor = after
            if as_json:
                click.echo('{"sectors": [', nl=False)
            while True:
                records, cursor = read_page(kv, ws, miner, cursor, limit)
                states = [(r.workspace, r.state()) for r in records]
                if as_json:
                    for i, (_, s) in enumerate(states, shown):
                        click.echo(("," if i else "") + "\n  " + json.dumps(to_jsonable(s)), nl=False)
                else:
                    _print_page(states, header=shown == 0)
                shown += len(states)
                if not all_pages or cursor is None:
                    break
    except PageCursorError as exc:
        raise click.BadParameter(
            str(exc), param_hint="--after" if exc.field == "after" else "--limit"
        ) from None
    except SectorhooksError as exc:
        fail(str(exc))
    if as_json:
        click.echo(("\n" if shown else "") + f'], "next": {json.dumps(cursor)}}}')
    elif cursor is not None:
        console.print(f"next: {cursor}", soft_wrap=True)
    else:
        console.print(f"{shown} sector(s); last page" if all_pages else "last page")


def _print_page(states: List[Tuple[Workspace, SectorState]], header: bool) -> None:
    table = Table(show_header=header, box=None, pad_edge=False)
    # fixed widths: every page of --all lines up under the first one's header
    for col, width in (("sector", 24), ("workspace", 9), ("state", 16), ("version", 7), ("updated", 20)):
        table.add_column(col, justify="right" if col == "version" else "left", no_wrap=True, min_width=width)
    for ws, s in states:
        updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.updated_at)) if s.updated_at else "-"
        table.add_row(str(s.id), ws.value, escape(s.state_name or "-"), str(s.version), updated)
    if states or header:
        console.print(table)
