"""``sectorhooks demo`` (the main job) and ``sectorhooks init`` (a commented starter config)."""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import liveness
from ..config import HostConfig
from ..demo import CONFIG_NAME, DemoOptions, load_demo_config, run_demo, write_starter_config
from ..errors import SectorhooksError
from . import main
from ._common import console, console_err, fail, json_option, print_json, setup_logging

if TYPE_CHECKING:
    from sectorhooks_spec import KVStore

PHASES = {
    "allocate": "allocating sectors",
    "seal": "sealing (workers)",
    "sync": "sinks catching up",
    "verify": "verifying sinks",
}


class _Bars:
    """A rich progress display with one bar per demo phase, created on first report."""

    def __init__(self, progress: Optional[Progress]):
        self.progress = progress
        self.tasks: Dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(PHASES.get(phase, phase), total=max(total, 1))
        self.progress.update(self.tasks[phase], completed=done, total=max(total, 1))


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    if quiet:
        yield _Bars(None)
        return
    columns = (
        TextColumn("[bold]{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console_err, transient=False) as progress:
        yield _Bars(progress)


def _print_summary(s: Dict[str, Any], where: str) -> None:
    unverifiable = s.get("unverifiable") or []
    if not s["consistent"]:
        verdict = "[bold red]NOT consistent[/]"
    elif unverifiable:
        checked = len(s["sinks"]) - len(unverifiable)
        verdict = (
            f"[bold yellow]consistent where checked ({checked} sink(s) equal the KV); could not check "
            f"{escape(', '.join(unverifiable))}: no ReadBack extension point (unverifiable)[/]"
        )
    else:
        verdict = "[bold green]consistent: every sink equals the KV[/]"
    run = Table(title="sectorhooks demo", show_header=False, title_justify="left")
    run.add_column(style="bold")
    run.add_column()
    fates = s["sectors_by_fate"]
    t = s["timing"]
    rows = [
        (
            "sectors",
            f"{s['sectors']} on miners {', '.join(f't0{m}' for m in s['miners'])} (seed {s['seed']})",
        ),
        ("fates", ", ".join(f"{k} {v}" for k, v in fates.items())),
        ("state changes", f"{s['changes']}  (KV holds {s['kv_sectors']} sectors)"),
        ("states", ", ".join(f"{k or '-'} {v}" for k, v in s["states"].items())),
        ("files written", ", ".join(f"{k} {v}" for k, v in s["files"].items()) or "none (no persist store)"),
        (
            "throughput",
            f"{s['throughput']['changes_per_s']} changes/s written, "
            f"{s['throughput']['sink_changes_per_s']} changes/s delivered to sinks",
        ),
        ("dead letters", str(s["dead_letters"])),
        (
            "time",
            f"simulate {t['simulate_s']:.2f}s, sinks catch up {t['sync_catchup_s']:.2f}s, "
            f"verify {t['verify_s']:.2f}s, total {t['total_s']:.2f}s",
        ),
        ("data", escape(where)),
    ]
    for k, v in rows:
        run.add_row(k, v)
    console.print(run)
    sinks = Table(title="sinks")
    for col in ("sink", "plugin", "rows", "KV rows", "lag", "lag s", "dead", "= KV"):
        left = col in ("sink", "plugin")
        sinks.add_column(col, justify="left" if left else "right", overflow="fold", no_wrap=not left)
    for k in s["sinks"]:
        eq = {True: "[green]yes[/]", False: "[red]NO[/]", None: "[yellow]unverifiable[/]"}[k["equal_to_kv"]]
        lag_s = k["lag_seconds"]
        sinks.add_row(
            escape(k["name"]),
            escape(k["plugin"]),
            str(k["rows"]),
            str(k["kv_rows"]),
            str(k["lag_events"]),
            f"{lag_s:.2f}" if isinstance(lag_s, (int, float)) else "-",
            str(k["dead_letters"]),
            eq,
        )
    console.print(sinks)
    if s["counters"]:
        counters = Table(title="atomic_counter vs KV")
        for col in ("counter", "value", "KV sealed", "equal"):
            counters.add_column(col)
        for name, c in s["counters"].items():
            counters.add_row(
                name, str(c["counter"]), str(c["kv_sealed"]), "[green]yes[/]" if c["equal"] else "[red]NO[/]"
            )
        console.print(counters)
    for k in s["sinks"]:
        for example in k["examples"]:
            console.print(f"[red]{escape(k['name'])}[/]: {escape(example)}")
    for err in s["errors"][:10]:
        console.print(f"[red]error[/]: {escape(err)}")
    if not s["caught_up"]:
        console.print("[red]the sinks did not catch up before the timeout[/]")
    console.print(verdict)


def _kv_file(config: HostConfig) -> Optional[Path]:
    """The SQLite file of the config's KV, if it is one (``None``: another backend)."""
    from ..kv import default_meta

    url = default_meta(config.data_dir)["url"] if config.db is None else config.db.meta.get("url")
    if config.db is not None and config.db.plugin_name != "sqlkv":
        return None
    if isinstance(url, str) and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


@contextmanager
def _existing_kv(config: HostConfig) -> Iterator[Optional[Any]]:
    """The config's KV store opened alone (KVStore plugins only), or ``None`` when it cannot
    hold anything yet (a SQLite file that does not exist; memdb, which lives in one process)."""
    from ..kv import kv_only

    kv_file = _kv_file(config)
    name = config.db.plugin_name if config.db is not None else "sqlkv"
    if name == "memdb" or (kv_file is not None and not kv_file.exists()):
        yield None
        return
    with kv_only(config) as kv:
        yield kv


def _first_sector(kv: KVStore) -> Optional[str]:
    """The key of some sector the KV holds (``miner/number``), or ``None`` when it holds none."""
    from ..state.scan import iter_sectors

    with closing(iter_sectors(kv)) as records:
        first = next(records, None)
    return None if first is None else first.key.decode("utf-8", "replace")


def refuse_live_or_used_kv(config: HostConfig, where: str, yes: bool, check_sectors: bool) -> None:
    """Refuse (exit 1) to run the demo on a KV that a live host serves, or (``check_sectors``,
    unless ``yes``) on one that already holds sectors; say why and what to run instead.

    A host serving the KV holds the syncers' leases: the demo's dispatchers would stand by, its
    wait for the sinks would never end, and its simulated sectors would land in the operator's
    KV and sinks.
    """
    instead = "run `sectorhooks demo` without --config (it uses its own temp data)"
    try:
        with _existing_kv(config) as kv:
            if kv is None:
                return
            now = time.time()
            live = liveness.live_hosts(liveness.read_hosts(kv), now)
            sector = _first_sector(kv) if check_sectors and not yes and not live else None
    except SectorhooksError as exc:
        fail(str(exc))
        return
    if live:
        hosts = "; ".join(h.describe(now) for h in live)
        fail(
            f"{where}: a live host serves this KV ({hosts}): it delivers the syncers (the demo would "
            "wait for sinks it cannot feed) and its KV would get simulated sectors. "
            f"{instead[0].upper()}{instead[1:]}, or stop that host (SIGTERM to `sectorhooks serve`) "
            "and try again."
        )
    if sector is not None:
        miner, _, number = sector.partition("/")
        if miner.isdigit() and number.isdigit():
            sector = f"s-t0{int(miner)}-{int(number)}"
        fail(
            f"{where}: the KV already holds sectors (e.g. {sector}); the demo would add "
            f"simulated sectors beside them, and feed them to the sinks. {instead[0].upper()}{instead[1:]}, "
            "or pass --yes to write into this KV anyway."
        )


@main.command("demo")
@click.option(
    "--sectors",
    type=click.IntRange(min=0),
    default=3000,
    show_default=True,
    help="Sectors to simulate (0: only verify an existing --dir).",
)
@click.option(
    "--miners",
    type=click.IntRange(min=1, max=1000),
    default=3,
    show_default=True,
    help="Miners (actor IDs 1000, 1001, ...).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the simulated fates.")
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=256),
    default=8,
    show_default=True,
    help="Concurrent simulated workers.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Demo directory (config, KV, stores, sinks); default a fresh temp dir, removed after.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Run against this host config instead (e.g. PostgreSQL + MariaDB sinks).",
)
@click.option("--keep", is_flag=True, help="Keep the temp directory.")
@click.option(
    "--yes",
    is_flag=True,
    help="With --config: write simulated sectors even into a KV that already holds sectors.",
)
@click.option(
    "--timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds to wait for the sinks to catch up.",
)
@json_option
def demo_command(
    sectors: int,
    miners: int,
    seed: int,
    workers: int,
    directory: Optional[Path],
    config_path: Optional[str],
    keep: bool,
    yes: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Simulate a sealing run, mirror it into the sinks, check every sink equals the KV.

    Exit code 0 when every sink (and every counter) equals the KV, 1 otherwise. It refuses a KV
    that a live host (``serve``) serves, and with --config one that already holds sectors
    (unless --yes): the demo writes simulated sectors.
    """
    if directory is not None and config_path is not None:
        raise click.UsageError("give --dir or --config, not both")
    temp = directory is None and config_path is None
    if temp:
        directory = Path(tempfile.mkdtemp(prefix="sectorhooks-demo-"))
    try:
        try:
            config = load_demo_config(directory, config_path)
            setup_logging(config, "WARNING")  # the config's [Common.Log], unless the command line says
            if not temp:
                where = str(config_path) if config_path is not None else str(directory)
                refuse_live_or_used_kv(
                    config, where, yes, check_sectors=config_path is not None and sectors > 0
                )
            options = DemoOptions(sectors=sectors, miners=miners, seed=seed, workers=workers)
            with _progress(as_json) as bars:
                summary = run_demo(config, options, bars, sync_timeout=timeout)
        except SectorhooksError as exc:
            fail(str(exc))
            return
        where = str(directory) if directory is not None else str(config_path)
        if temp and not keep:
            where += " (removed; --keep to keep it)"
        summary["dir"] = str(directory) if directory is not None else None
        if as_json:
            print_json(summary)
        else:
            _print_summary(summary, where)
    finally:
        if temp and not keep and directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
    if not summary["ok"]:
        raise SystemExit(1)


@main.command("init")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default=CONFIG_NAME)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option(
    "--sinks",
    type=click.IntRange(min=0, max=20),
    default=3,
    show_default=True,
    help="sqlsync SQLite sinks to configure.",
)
@json_option
def init_command(path: Path, force: bool, sinks: int, as_json: bool = False) -> None:
    """Write a commented starter config (SQLite KV, fsstore stores, sqlsync sinks) to PATH."""
    try:
        written = write_starter_config(path, force=force, sinks=sinks)
    except FileExistsError as exc:
        fail(str(exc))
        return
    if as_json:
        print_json({"path": str(written), "sinks": sinks})
        return
    console.print(f"wrote {escape(str(written))}; try: sectorhooks demo --config {escape(str(written))}")
