"""Scale benchmark (#20 item 5): the state manager, its reads and a sink's verify at 10^4..10^6 sectors.

For each size N, on a fresh KV (sqlkv on a SQLite file, or on a fresh PostgreSQL database) with
one sqlsync sink (a SQLite file):

* ``init/s``: N sectors initialised through ``SectorStateManager.init_sectors`` in groups of
  1,000 from 4 threads (the normal API, group-committed);
* ``update/s``: ``update`` of random sectors from 8 writer threads (after the sink caught up
  with the inits; the sink's worker delivers the updates meanwhile, on the same CPUs). Without
  a sink, alternating reopen-and-update rounds on one 10^6 KV and one 10^4 KV gave 3,990 vs
  4,068 updates/s (x0.98; 5 and 3 rounds of 8,000, medians): the KV path itself does not slow
  down at 10^6, and a 64 MiB SQLite page cache per connection gave x0.96 (3,831), so sqlkv
  sets none;
* ``Get`` p50/p99 of random sectors; ``List`` page of 100 (``SectorStateManager.page``, what
  ``Sector.List`` serves) p99 at the start, the middle and the end of the key range;
* ``StateCounts`` (``state_counts()``) median time;
* the sink catches up (every change delivered), then ``sync verify`` runs in a subprocess
  (``--verify-only``) that reports its time and its own peak RSS (``VmHWM``), and again with
  sqlkv's ``mmap_size`` at 256 MiB (its default is 0: the map's pages count in RSS once per
  pooled connection);
* ``serve``'s RSS: ``sectorhooks serve`` on the bench's KV (a subprocess, DevMode on loopback),
  a client pages through all N sectors over JSON-RPC (``sectorhooks.rpc.client.iter_sectors``,
  pages of 1,000), then the server's peak and current RSS (``VmHWM``/``VmRSS``) (goal < 300 MB);
* KV bytes per sector (:func:`sectorhooks.state.storage.kv_usage`: physical for SQLite, and the
  state collections' logical bytes) and the sink's bytes per sector.

Then the ratios the issue asks for (largest N vs smallest: update rate >= 0.7x, Get p99 and List
p99 <= 2x, StateCounts < 10 ms, verify and serve RSS < 300 MB), and ``sectorhooks demo --sectors M``
time and peak RSS (``/usr/bin/time``) for each ``--demo M``.

Usage: ``python benchmarks/bench_scale.py [--sectors N ...] [--kv sqlite|postgres] [--quick]
[--demo M ...] [--json]``. Full run (no ``--sectors``): 10^4, 10^5, 10^6 on SQLite and 10^5 on
PostgreSQL; ``--quick``: 10^3 and 10^4 on SQLite. ``benchmarks/run.py`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from sectorhooks.config import DBConfig, HostConfig, PluginsConfig, SyncerConfig, SyncSettings  # noqa: E402
from sectorhooks.runtime import Runtime  # noqa: E402
from sectorhooks.state.scan import encode_cursor  # noqa: E402
from sectorhooks.state.storage import kv_usage, sink_usage  # noqa: E402
from sectorhooks_spec import AllocatedSector, LatestState, SectorID  # noqa: E402

MINERS = 4
INIT_GROUP = 1000
INIT_THREADS = 4
WRITERS = 8
PAGE = 100
SERVE_PAGE = 1000
RSS_GOAL_MB = 300
MMAP_ON = 1 << 28  # sqlkv's mmap_size for the second verify (its default is 0)
CLI = "import sys; from sectorhooks.cli import main; sys.exit(main())"
SERVE_READY = re.compile(r"serving JSON-RPC on (http://\S+)")
SERVE_CONFIG = """[Common]
DataDir = {data}
[Common.Plugins]
Dir = [{sqlkv}, {sqlsync}]
Bundled = false
EntryPoints = false
[Common.DB]
Driver = "plugin"
[Common.DB.Plugin]
PluginName = "sqlkv"
[Common.DB.Plugin.Meta]
url = {kv}
[Common.API]
DevMode = true
[[Common.Syncers]]
Name = "{sink}"
PluginName = "sqlsync"
Meta = {{ url = {sink_url} }}
"""
SINK = "sink"
Row = Dict[str, Any]


def sector(i: int) -> SectorID:
    """The i-th sector: miners 1000.. round robin, numbers from 0."""
    return SectorID(1000 + i % MINERS, i // MINERS)


def config(data_dir: Path, kv_url: str, mmap_size: Optional[int] = None) -> HostConfig:
    """sqlkv at ``kv_url`` (``mmap_size``: sqlkv's setting, default its own) and one sqlsync sink
    (SQLite, in its worker process)."""
    plugins = ROOT / "contrib_plugins"
    sink = f"sqlite:///{data_dir / 'sink.sqlite'}"
    meta: Dict[str, Any] = {"url": kv_url}
    if mmap_size is not None:
        meta["mmap_size"] = mmap_size
    return HostConfig(
        path="<bench_scale>",
        data_dir=data_dir,
        plugins=PluginsConfig(
            dirs=(plugins / "sqlkv", plugins / "sqlsync"), bundled=False, entry_points=False
        ),
        db=DBConfig(plugin_name="sqlkv", meta=meta),
        syncers=(SyncerConfig(SINK, "sqlsync", {"url": sink}),),
        sync=SyncSettings(),
    )


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any], n: int) -> List[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


# --- the phases -----------------------------------------------------------------------------


def init_all(rt: Runtime, n: int) -> float:
    """Initialise sectors 0..n-1 in groups from several threads; returns sectors/s."""
    groups = [range(s, min(n, s + INIT_GROUP)) for s in range(0, n, INIT_GROUP)]
    t = time.perf_counter()
    with ThreadPoolExecutor(INIT_THREADS) as pool:
        for _ in pool.map(
            lambda g: rt.state.init_sectors([AllocatedSector(sector(i), 8) for i in g]), groups
        ):
            pass
    return n / (time.perf_counter() - t)


def update_rate(rt: Runtime, n: int, total: int) -> float:
    """``total`` updates of random sectors from WRITERS threads; returns updates/s."""
    per = max(1, total // WRITERS)

    def writer(w: int) -> None:
        rng = random.Random(w)
        for k in range(per):
            rt.state.update(sector(rng.randrange(n)), latest_state=LatestState(f"S{k % 7}", worker=f"w{w}"))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return per * WRITERS / (time.perf_counter() - t)


def get_latency(rt: Runtime, n: int, calls: int) -> Tuple[float, float]:
    rng = random.Random(7)
    ids = [sector(rng.randrange(n)) for _ in range(calls)]
    it = iter(ids)
    lat = timed(lambda: rt.state.get(next(it)), calls)
    return percentile(lat, 50), percentile(lat, 99)


def list_p99(rt: Runtime, n: int, calls: int) -> Dict[str, float]:
    """p99 of one page of PAGE at the start, the middle and the end of the sectors."""
    out = {}
    for where, at in (("start", None), ("middle", n // 2), ("end", max(0, n - PAGE // 2))):
        cursor = None if at is None else encode_cursor(None, None, sector(at))
        lat = timed(functools.partial(rt.state.page, after=cursor, limit=PAGE), calls)
        out[where] = percentile(lat, 99)
    return out


def counts_time(rt: Runtime, calls: int) -> float:
    return statistics.median(timed(rt.state.state_counts, calls))


def wait_synced(rt: Runtime, timeout: float) -> float:
    t = time.perf_counter()
    if not rt.sync.wait_idle(timeout):
        raise RuntimeError(f"the sink did not catch up in {timeout:.0f}s: {rt.sync.status()}")
    return time.perf_counter() - t


def trim_log(rt: Runtime, timeout: float = 10.0) -> None:
    """Trim the delivered log (the cursor is stored a moment after delivery)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rt.sync.trim()
        floor, head = rt.sync.log.bounds()
        if floor > head:
            return
        time.sleep(0.2)


def _rss_parts() -> Dict[str, float]:
    """This process's peak resident memory (``VmHWM``) and its resident memory now, anonymous
    and file-backed (a SQLite KV's memory map), MB."""
    status = Path("/proc/self/status").read_text()
    out = {}
    for key in ("VmHWM", "RssAnon", "RssFile"):
        found = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
        out[key] = int(found.group(1)) / 1024 if found else float("nan")
    return out


def verify_subprocess(data_dir: Path, kv_url: str, mmap_size: Optional[int] = None) -> Row:
    """``sync verify`` of the sink in a fresh process: its time and its own peak RSS."""
    cmd = [sys.executable, __file__, "--verify-only", str(data_dir), kv_url]
    if mmap_size is not None:
        cmd += ["--verify-mmap", str(mmap_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def verify_only(data_dir: Path, kv_url: str, mmap_size: Optional[int] = None) -> Row:
    with Runtime.open(config(data_dir, kv_url, mmap_size), start_sync=False, filestores=False) as rt:
        t = time.perf_counter()
        report = rt.sync.verify_report(SINK, max_examples=5)
        seconds = time.perf_counter() - t
        parts = _rss_parts()
    return {
        "verify_s": seconds,
        "verify_rss_mb": parts["VmHWM"],  # not ru_maxrss: it keeps the parent's RSS from before exec
        "verify_rss_anon_mb": parts["RssAnon"],
        "verify_rss_file_mb": parts["RssFile"],
        "verify_rows": report.kv_rows,
        "verify_ok": report.ok,
        "verify_examples": report.lines(5),
    }


def _proc_rss(pid: int) -> Dict[str, float]:
    """Peak (``VmHWM``) and current (``VmRSS``) resident memory of process ``pid``, MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    out = {}
    for key in ("VmHWM", "VmRSS"):
        found = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
        out[key] = int(found.group(1)) / 1024 if found else float("nan")
    return out


def serve_rss(data_dir: Path, kv_url: str, n: int) -> Row:
    """``sectorhooks serve`` on the bench's KV (DevMode, loopback); a client pages through every
    sector over JSON-RPC (pages of SERVE_PAGE); the server's RSS after it."""
    from bench_rpc import started  # the benchmarks dir is on sys.path (script dir or run.py)

    from sectorhooks.rpc.client import iter_sectors

    plugins = ROOT / "contrib_plugins"
    q = json.dumps  # TOML basic strings: JSON's quoting of a path is valid TOML
    config = data_dir / "serve.toml"
    config.write_text(
        SERVE_CONFIG.format(
            data=q(str(data_dir / "serve-data")),
            sqlkv=q(str(plugins / "sqlkv")),
            sqlsync=q(str(plugins / "sqlsync")),
            kv=q(kv_url),
            sink=SINK,
            sink_url=q(f"sqlite:///{data_dir / 'sink.sqlite'}"),
        ),
        encoding="utf-8",
    )
    cmd = [sys.executable, "-c", CLI, "serve", "--config", str(config), "--listen", "127.0.0.1:0"]
    with started(cmd, SERVE_READY, data_dir, "serve", timeout=120) as (url, proc):
        before = _proc_rss(proc.pid)["VmRSS"]
        t = time.perf_counter()
        paged = sum(1 for _ in iter_sectors(url, page_size=SERVE_PAGE, timeout=120))
        seconds = time.perf_counter() - t
        after = _proc_rss(proc.pid)
    return {
        "serve_rss_start_mb": before,
        "serve_rss_peak_mb": after["VmHWM"],
        "serve_rss_mb": after["VmRSS"],
        "serve_paged": paged,
        "serve_page_all_s": seconds,
    }


@contextlib.contextmanager
def kv_target(kind: str, data_dir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{data_dir / 'kv.sqlite3'}"
        return
    import servers  # type: ignore[import-not-found]

    with contextlib.contextmanager(servers.fresh_pg_database)() as (url, _):
        yield url


def measure(n: int, kind: str, quick: bool) -> Row:
    """Every figure at ``n`` sectors on KV ``kind``."""
    row: Row = {"sectors": n, "kv": kind}
    updates = 2000 if quick else 8000
    calls = 300 if quick else 1000
    get_calls = 2000 if quick else 20000
    tmp = Path(tempfile.mkdtemp(prefix=f"bench_scale_{n}_"))
    try:
        with kv_target(kind, tmp) as url:
            with Runtime.open(config(tmp, url), filestores=False) as rt:
                row["init_per_s"] = init_all(rt, n)
                row["init_sync_s"] = wait_synced(rt, 3600)  # the sink caught up: updates measured alone
                row["update_per_s"] = update_rate(rt, n, updates)
                # reads are timed once the sink caught up with the updates (its worker shares the
                # CPUs), and with enough calls that p99 is not the 10th-worst of 1,000 (whose
                # windows ranged 0.2-3.3 ms at 10^6 in one process)
                row["sync_wait_s"] = wait_synced(rt, 3600)
                row["get_p50_ms"], row["get_p99_ms"] = (x * 1e3 for x in get_latency(rt, n, get_calls))
                row["list_p99_ms"] = {k: v * 1e3 for k, v in list_p99(rt, n, max(50, calls // 5)).items()}
                row["counts_ms"] = counts_time(rt, 5) * 1e3
                trim_log(rt)
                usage = kv_usage(rt.kv, url).as_dict()
            row["kv_bytes_per_sector"] = usage["physical_bytes_per_sector"]
            row["kv_state_bytes_per_sector"] = usage["state_bytes_per_sector"]
            row["kv_log_entries"] = usage["collections"]["sync/log"]["keys"]
            sink = sink_usage(f"sqlite:///{tmp / 'sink.sqlite'}")
            row["sink_bytes_per_sector"] = round(sink["bytes"] / n, 1) if sink["bytes"] else None
            row.update(verify_subprocess(tmp, url))
            if kind == "sqlite":  # the same verify with a 256 MiB memory map: what a map adds to RSS
                row["verify_rss_mmap_mb"] = verify_subprocess(tmp, url, MMAP_ON)["verify_rss_mb"]
            row.update(serve_rss(tmp, url, n))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def demo(m: int) -> Row:
    """``sectorhooks demo --sectors m`` in a temp dir: wall time, peak RSS, consistent."""
    exe = shutil.which("sectorhooks") or str(Path(sys.executable).with_name("sectorhooks"))
    with tempfile.TemporaryDirectory(prefix="bench_scale_demo_") as d:
        cmd = [exe, "demo", "--sectors", str(m), "--dir", d, "--json"]
        time_bin = "/usr/bin/time"
        if os.path.exists(time_bin):
            proc = subprocess.run([time_bin, "-v", *cmd], capture_output=True, text=True, timeout=7200)
            found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
            rss = int(found.group(1)) / 1024 if found else None
            wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
            seconds = _clock(wall.group(1)) if wall else None
        else:  # the children's peak: right only when no larger child ran before
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=7200)
            seconds = time.perf_counter() - t
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        try:
            summary = json.loads(proc.stdout)
        except ValueError:
            summary = {}
    return {"sectors": m, "seconds": seconds, "rss_mb": rss, "consistent": summary.get("consistent")}


def _clock(text: str) -> float:
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


# --- reporting ----------------------------------------------------------------------------------


def ratios(rows: List[Row]) -> List[Row]:
    """Largest vs smallest size of each KV: the figures the issue sets goals for."""
    out: List[Row] = []
    for kind in sorted({r["kv"] for r in rows}):
        mine = sorted((r for r in rows if r["kv"] == kind), key=lambda r: r["sectors"])
        if len(mine) < 2:
            continue
        lo, hi = mine[0], mine[-1]
        tag = f"{kind} {hi['sectors']:,} vs {lo['sectors']:,}"
        out.append(_ratio(tag, "update rate", hi["update_per_s"], lo["update_per_s"], "updates/s", ">= 0.7"))
        out.append(_ratio(tag, "Get p99", hi["get_p99_ms"], lo["get_p99_ms"], "ms", "<= 2"))
        lo_list, hi_list = max(lo["list_p99_ms"].values()), max(hi["list_p99_ms"].values())
        out.append(_ratio(tag, "List page p99 (worst of start/middle/end)", hi_list, lo_list, "ms", "<= 2"))
    return out


def _ratio(group: str, name: str, larger: float, smaller: float, unit: str, goal: str) -> Row:
    """A run.py row: the figure at the larger size (``ours``) over the smaller's (``baseline``);
    ``goal`` says which way is good (``>= 0.7`` for a rate, ``<= 2`` for a latency)."""
    return {
        "group": f"scale {group}",
        "name": name,
        "ours": round(larger, 3),
        "baseline": round(smaller, 3),
        "baseline_name": "smaller size",
        "ratio": round(larger / smaller, 3) if smaller else None,
        "unit": unit,
        "goal": goal,
    }


def goal_met(ratio: Optional[float], goal: str) -> Optional[bool]:
    if ratio is None:
        return None
    op, value = goal.split()
    return ratio >= float(value) if op == ">=" else ratio <= float(value)


def print_table(rows: List[Row], demos: List[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bench_scale: sqlkv state manager, one sqlsync sink")
    cols = [
        "KV",
        "sectors",
        "init/s",
        "update/s (8 writers)",
        "Get p50 ms",
        "Get p99 ms",
        "List p99 ms start/mid/end",
        "StateCounts ms",
        "verify s",
        "verify peak RSS MB (anon+file at end)",
        "verify peak RSS MB, KV mmap 256 MiB",
        f"serve RSS MB peak/now after paging all (goal < {RSS_GOAL_MB})",
        "KV B/sector",
        "state B/sector",
        "sink B/sector",
    ]
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        lp = r["list_p99_ms"]
        table.add_row(
            r["kv"],
            f"{r['sectors']:,}",
            f"{r['init_per_s']:,.0f}",
            f"{r['update_per_s']:,.0f}",
            f"{r['get_p50_ms']:.3f}",
            f"{r['get_p99_ms']:.3f}",
            f"{lp['start']:.2f}/{lp['middle']:.2f}/{lp['end']:.2f}",
            f"{r['counts_ms']:.2f}",
            f"{r['verify_s']:.2f}" + ("" if r["verify_ok"] else " DIFF"),
            f"{r['verify_rss_mb']:.0f} ({r['verify_rss_anon_mb']:.0f}+{r['verify_rss_file_mb']:.0f})",
            "-" if r.get("verify_rss_mmap_mb") is None else f"{r['verify_rss_mmap_mb']:.0f}",
            f"{r['serve_rss_peak_mb']:.0f}/{r['serve_rss_mb']:.0f}"
            + ("" if r["serve_paged"] == r["sectors"] else f" ({r['serve_paged']:,} paged)"),
            "-" if r["kv_bytes_per_sector"] is None else f"{r['kv_bytes_per_sector']:,.0f}",
            f"{r['kv_state_bytes_per_sector']:,.0f}",
            "-" if r["sink_bytes_per_sector"] is None else f"{r['sink_bytes_per_sector']:,.0f}",
        )
    console = Console(width=200)
    console.print(table)
    rat = ratios(rows)
    if rat:
        t2 = Table(title="larger size / smaller size (goals: update rate >= 0.7x, Get and List p99 <= 2x)")
        for c in ("compared", "figure", "larger", "smaller", "ratio", "goal", "met"):
            t2.add_column(c, justify="left" if c in ("compared", "figure") else "right")
        for r in rat:
            met = goal_met(r["ratio"], r["goal"])
            t2.add_row(
                r["group"][len("scale ") :],
                r["name"],
                str(r["ours"]),
                str(r["baseline"]),
                str(r["ratio"]),
                r["goal"],
                "[green]yes[/]" if met else "[red]NO[/]",
            )
        console.print(t2)
    big = [r for r in rows if max(r["verify_rss_mb"], r["serve_rss_peak_mb"]) >= RSS_GOAL_MB]
    console.print(
        f"verify and serve peak RSS under {RSS_GOAL_MB} MB at every size: "
        + ("[green]yes[/]" if not big else "[red]NO[/] (" + ", ".join(f"{r['sectors']:,}" for r in big) + ")")
    )
    slow = [r for r in rows if r["counts_ms"] >= 10]
    console.print(
        "StateCounts under 10 ms at every size: "
        + (
            "[green]yes[/]"
            if not slow
            else "[red]NO[/] (" + ", ".join(f"{r['sectors']:,}" for r in slow) + ")"
        )
    )
    if demos:
        t3 = Table(title="sectorhooks demo --sectors M (goal at 100,000: consistent, peak RSS < 400 MB)")
        for c in ("sectors", "seconds", "peak RSS MB", "consistent"):
            t3.add_column(c, justify="right")
        for d in demos:
            t3.add_row(
                f"{d['sectors']:,}",
                "-" if d["seconds"] is None else f"{d['seconds']:.1f}",
                "-" if d["rss_mb"] is None else f"{d['rss_mb']:.0f}",
                str(d["consistent"]),
            )
        console.print(t3)


def plan(args: argparse.Namespace) -> List[Tuple[int, str]]:
    if args.sectors:
        return [(n, args.kv) for n in args.sectors]
    if args.quick:
        return [(1_000, "sqlite"), (10_000, "sqlite")]
    return [(10_000, "sqlite"), (100_000, "sqlite"), (1_000_000, "sqlite"), (100_000, "postgres")]


def run(quick: bool) -> List[Row]:
    """``benchmarks/run.py``: the ratio rows of ``--quick`` (10^4 vs 10^3 on SQLite)."""
    rows = [measure(n, kind, quick=True) for n, kind in ((1_000, "sqlite"), (10_000, "sqlite"))]
    return ratios(rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sectors", type=int, nargs="+", help="sizes (default: see --quick and the full run)")
    p.add_argument("--kv", choices=("sqlite", "postgres"), default="sqlite", help="KV of --sectors sizes")
    p.add_argument("--quick", action="store_true", help="10^3 and 10^4 on SQLite, fewer calls")
    p.add_argument("--demo", type=int, nargs="*", help="demo sizes (default: 3000 quick, 20000 full)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--verify-only", nargs=2, metavar=("DIR", "KV_URL"), help=argparse.SUPPRESS)
    p.add_argument("--verify-mmap", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.verify_only:
        print(json.dumps(verify_only(Path(args.verify_only[0]), args.verify_only[1], args.verify_mmap)))
        return 0
    rows = []
    for n, kind in plan(args):
        print(f"measuring {n:,} sectors on {kind} ...", file=sys.stderr, flush=True)
        rows.append(measure(n, kind, args.quick))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    sizes = args.demo if args.demo is not None else ([3_000] if args.quick else [20_000])
    demos = []
    for m in sizes:
        print(f"demo --sectors {m:,} ...", file=sys.stderr, flush=True)
        demos.append(demo(m))
    if args.json:
        print(json.dumps({"rows": rows, "ratios": ratios(rows), "demo": demos}, indent=2))
    else:
        print_table(rows, demos)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
