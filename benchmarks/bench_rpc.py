"""JSON-RPC gateway: ``AtomicCounter.Incr`` calls/s through ``sectorhooks serve`` vs an independent anchor.

Ours: the real ``sectorhooks serve`` (subprocess, memdb KV, DevMode on loopback, no token) answering
``AtomicCounter.Incr`` from the bundled atomic_counter plugin: auth, JSON-RPC parsing, the plugin's
thread pool, a KV transaction, over the gateway's own socket and protocol. The anchor shares none of
that code: a bare Starlette JSON endpoint (a counter in memory, the same request and response
shapes) written to a temp file and started by uvicorn's own CLI with its defaults
(``python -m uvicorn bare_app:app --port 0``). A baseline must not share the thing it measures: the
old one ran on our socket code and so never showed the 44 ms delayed-ACK stall (issue #17).

Both are driven by the same load generator: ``wrk`` (Debian package ``wrk``; a Lua script makes the
POST and reports the figures as JSON) when it is on PATH, else a keep-alive Python client (threads,
one ``http.client`` connection each). Runs alternate (ours, anchor; then anchor, ours ...) at 1 and
at 16 connections; each row is the median over the runs, the ratio the median of the pairs' ratios.
Each run checks that the counter moved by the number of answers (JSON-RPC errors are HTTP 200, so a
status code proves nothing; ``PluginConcurrency`` is set above 16 so that no call is turned away as
busy). Goals: ratio >= 0.5 at 1 and at 16 connections; p50 latency at 1
connection <= 2 ms (its row: ours / 2 ms, goal <= 1).

Standalone: ``python benchmarks/bench_rpc.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

GOAL = 0.5
P50_BUDGET_MS = 2.0
CONNECTIONS = (1, 16)
CLI = "import sys; from sectorhooks.cli import main; sys.exit(main())"
OURS_READY = re.compile(r"serving JSON-RPC on (http://\S+)")
BARE_READY = re.compile(r"Uvicorn running on (http://\S+)")

BARE_APP = '''
"""The anchor: a bare Starlette JSON endpoint, nothing of sectorhooks."""
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

counters = {}


async def rpc(request):
    call = await request.json()
    name, delta = call["params"]
    counters[name] = counters.get(name, 0) + delta
    return JSONResponse({"jsonrpc": "2.0", "result": counters[name], "id": call["id"]})


app = Starlette(routes=[Route("/rpc/v0", rpc, methods=["POST"])])
'''

CONFIG = """[Common]
DataDir = "{data}"
[Common.DB]
Driver = "plugin"
[Common.DB.Plugin]
PluginName = "memdb"
[Common.API]
DevMode = true
PluginConcurrency = 32  # above the 16 connections: no call is answered -32029 "busy"
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests": %d, "duration_us": %d, "p50_us": %d, "errors": %d, "non_2xx": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def _body(name: str, delta: int = 1) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "AtomicCounter.Incr", "params": [name, delta], "id": 1})


@contextlib.contextmanager
def started(
    args: List[str], ready: re.Pattern, cwd: Path, what: str, timeout: float = 60
) -> Iterator[Tuple[str, subprocess.Popen[str]]]:
    """Start ``args``; yield the JSON-RPC URL its output announces and the process (stdout and
    stderr go to ``<what>.log`` in ``cwd``); terminate it on exit."""
    log_path = cwd / f"{what}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = ready.search(log_path.read_text(encoding="utf-8"))
            if found:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start: {log_path.read_text(encoding='utf-8')[-2000:]}")
            time.sleep(0.05)
        url = found.group(1)
        yield (url if url.endswith("/rpc/v0") else url.rstrip("/") + "/rpc/v0"), proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _process(args: List[str], ready: re.Pattern, cwd: Path, what: str) -> Iterator[str]:
    """:func:`started`, yielding only the URL."""
    with started(args, ready, cwd, what) as (url, _):
        yield url


def _call(url: str, body: str) -> Any:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=30)
    try:
        conn.request("POST", "/rpc/v0", body, {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _counter(url: str, name: str) -> int:
    reply = _call(url, _body(name, 0))
    if "result" not in reply:
        raise RuntimeError(f"{url}: {reply}")
    return int(reply["result"])


def _wrk(url: str, name: str, connections: int, seconds: int, root: Path) -> Tuple[float, float, int]:
    """(calls/s, p50 ms, answers) from one wrk run."""
    script = root / f"incr-{name}.lua"
    script.write_text(WRK_SCRIPT.format(body=_body(name)), encoding="utf-8")
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {out}")
    got = json.loads(line[len("WRK_JSON ") :])
    if got["errors"] or got["non_2xx"]:
        raise RuntimeError(f"wrk against {url}: {got['errors']} socket errors, {got['non_2xx']} non-2xx")
    return got["requests"] / (got["duration_us"] / 1e6), got["p50_us"] / 1000.0, got["requests"]


def _python(url: str, name: str, connections: int, seconds: float, root: Path) -> Tuple[float, float, int]:
    """(calls/s, p50 ms, answers) from keep-alive ``http.client`` connections on threads."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    body = _body(name).encode()
    latencies: List[List[float]] = [[] for _ in range(connections)]
    errors: List[BaseException] = []
    start = threading.Barrier(connections + 1)
    stop_at: List[float] = []

    def client(mine: List[float]) -> None:
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=30)
        try:
            start.wait()
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                conn.request("POST", "/rpc/v0", body, {"Content-Type": "application/json"})
                reply = conn.getresponse().read()
                mine.append(time.perf_counter() - t0)
                if b'"result"' not in reply:
                    raise RuntimeError(reply.decode(errors="replace"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(lat,)) for lat in latencies]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at.append(t0 + seconds)
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"client against {url} failed: {errors[0]!r}")
    every = [x for lat in latencies for x in lat]
    return len(every) / elapsed, statistics.median(every) * 1000.0, len(every)


def _measure(
    load: Callable[..., Tuple[float, float, int]], url: str, name: str, conns: int, seconds: int, root: Path
) -> Tuple[float, float]:
    """(calls/s, p50 ms) of one run, after checking the counter moved by the number of answers."""
    before = _counter(url, name)
    rate, p50, answers = load(url, name, conns, seconds, root)
    moved = _counter(url, name) - before
    if not answers <= moved <= answers + conns:  # calls lost, or answered without running
        raise RuntimeError(f"{url}: {answers} answers but the counter moved by {moved}")
    return rate, p50


def run(quick: bool = False) -> List[Dict[str, Any]]:
    """Benchmark rows (see module docstring)."""
    seconds, rounds = (2, 2) if quick else (4, 5)  # wrk takes whole seconds
    load = _wrk if shutil.which("wrk") else _python
    driver = "wrk" if load is _wrk else "keep-alive Python client (no wrk on PATH)"
    root = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    rates: Dict[Tuple[str, int], List[float]] = {(k, c): [] for k in ("ours", "bare") for c in CONNECTIONS}
    p50s: Dict[str, List[float]] = {"ours": [], "bare": []}
    ratios: Dict[int, List[float]] = {c: [] for c in CONNECTIONS}
    try:
        (root / "bare_app.py").write_text(textwrap.dedent(BARE_APP), encoding="utf-8")
        config = root / "ours.toml"
        config.write_text(CONFIG.format(data=root / "data"), encoding="utf-8")
        ours_cmd = [sys.executable, "-c", CLI, "serve", "--config", str(config), "--listen", "127.0.0.1:0"]
        bare_cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", "0"]
        with contextlib.ExitStack() as stack:
            urls = {
                "ours": stack.enter_context(_process(ours_cmd, OURS_READY, root, "ours")),
                "bare": stack.enter_context(_process(bare_cmd, BARE_READY, root, "bare")),
            }
            for url in urls.values():  # warm up: imports, first connections, the plugin's threads
                _measure(load, url, "warmup", 4, 1, root)
            for r in range(rounds):
                for conns in CONNECTIONS:
                    pair: Dict[str, float] = {}
                    for kind in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
                        rate, p50 = _measure(load, urls[kind], f"r{r}c{conns}", conns, seconds, root)
                        pair[kind] = rate
                        rates[kind, conns].append(rate)
                        if conns == 1:
                            p50s[kind].append(p50)
                        shown = f"{rate:,.0f} calls/s, p50 {p50:.3f} ms"
                        print(f"bench_rpc: round {r} {kind} {conns} conn: {shown}", file=sys.stderr)
                    ratios[conns].append(pair["ours"] / pair["bare"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    anchor = f"bare Starlette JSON endpoint, `python -m uvicorn` defaults; driven by {driver}"
    rows: List[Dict[str, Any]] = [
        {
            "group": "rpc",
            "name": f"AtomicCounter.Incr via `sectorhooks serve` (memdb), {conns} connection(s), "
            f"median of {rounds}",
            "ours": statistics.median(rates["ours", conns]),
            "baseline": statistics.median(rates["bare", conns]),
            "baseline_name": anchor,
            "ratio": statistics.median(ratios[conns]),
            "unit": "calls/s",
            "goal": GOAL,
        }
        for conns in CONNECTIONS
    ]
    ours_p50 = statistics.median(p50s["ours"])
    rows.append(
        {
            "group": "rpc",
            "name": f"p50 latency of AtomicCounter.Incr at 1 connection vs a {P50_BUDGET_MS:g} ms budget",
            "ours": ours_p50,
            "baseline": P50_BUDGET_MS,
            "baseline_name": f"budget; the anchor's p50: {statistics.median(p50s['bare']):.3f} ms",
            "ratio": ours_p50 / P50_BUDGET_MS,
            "unit": "ms",
            "goal": "<= 1",
        }
    )
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv), title="bench_rpc")
