"""JSON-RPC gateway: ``AtomicCounter.Incr`` calls/s through ``sectorhooks serve``'s app vs a bare
Starlette endpoint doing the same KV increment.

Same run, same everything but the gateway: each server is a subprocess on the same uvicorn
settings (:func:`sectorhooks.rpc.server.make_server`, one process, h11, pre-bound socket), over
the same runtime (plugins loaded, sync running) and KV backend, each with a fresh data dir; the
same client (``N`` threads, one keep-alive ``httpx.Client`` each, ``M`` calls each). Ours pays for
bearer-token auth, JSON-RPC parsing and validation, signature binding and the plugin call; the
baseline reads ``{"name", "delta"}`` and runs the identical ``kv.update`` in a worker thread.
Runs come in back-to-back pairs (ours, bare; then bare, ours ...) so both sides of a pair see the
same machine load; the ratio is the median of the pairs' ratios (the machine is shared, absolute
rates swing with its load). Goal: ratio >= 0.8.

Standalone: ``python benchmarks/bench_rpc.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

GOAL = 0.8
READY = "serving JSON-RPC on "
COLLECTION = "atomic_counter"
BACKENDS = {
    "sqlkv": {},
    "memdb": {"DB": {"Driver": "plugin", "Plugin": {"PluginName": "memdb"}}},
}


def _config(data_dir: str, backend: str) -> Any:
    from sectorhooks.config import parse_config

    common = {"DataDir": data_dir, **BACKENDS[backend]}
    return parse_config({"Common": common}, f"<bench {backend}>", Path(data_dir))


def _incr(kv: Any, name: str, delta: int) -> int:
    key = name.encode()

    def fn(txn: Any) -> int:
        coll = txn.collection(COLLECTION)
        raw = coll.peek(key)
        value = (int(raw) if raw is not None else 0) + delta
        coll.put(key, b"%d" % value)
        return value

    return kv.update(fn)  # type: ignore[no-any-return]


def serve_ours(data_dir: str, backend: str, token_file: str) -> None:
    """Server process: ``sectorhooks serve`` machinery; writes a fresh write token to ``token_file``."""
    from sectorhooks.rpc import TokenStore
    from sectorhooks.rpc.server import open_runtime, serve

    @contextlib.contextmanager
    def runtime(config: Any) -> Iterator[Any]:
        with open_runtime(config) as rt:
            token, _ = TokenStore(rt.kv).create("write", "bench")
            Path(token_file).write_text(token, encoding="utf-8")
            yield rt

    serve(_config(data_dir, backend), "127.0.0.1:0", runtime_factory=runtime)


def serve_bare(data_dir: str, backend: str) -> None:
    """Server process: a bare Starlette endpoint doing the same increment, on the same runtime."""
    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sectorhooks.rpc.server import bind, make_server, open_runtime

    with open_runtime(_config(data_dir, backend)) as rt:

        async def incr(request: Request) -> JSONResponse:
            body = await request.json()
            value = await anyio.to_thread.run_sync(_incr, rt.kv, body["name"], body.get("delta", 1))
            return JSONResponse({"value": value})

        app = Starlette(routes=[Route("/incr", incr, methods=["POST"])])
        sock = bind("127.0.0.1", 0)
        print(f"bare: {READY}http://127.0.0.1:{sock.getsockname()[1]}/incr", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            make_server(app).run(sockets=[sock])


@contextlib.contextmanager
def _server(kind: str, backend: str, root: Path) -> Iterator[Tuple[str, Dict[str, str]]]:
    data = tempfile.mkdtemp(dir=root, prefix=f"{kind}-{backend}-")
    token_file = Path(data) / "token"
    args = [sys.executable, str(Path(__file__).resolve()), "--serve", kind, data, backend, str(token_file)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if READY in line:
                url = line.split(READY, 1)[1].split()[0]
                break
        if not url:
            raise RuntimeError(f"{kind} server did not start (exit {proc.wait()})")
        headers = {"Authorization": f"Bearer {token_file.read_text()}"} if kind == "ours" else {}
        yield url, headers
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _load(
    kind: str, url: str, headers: Dict[str, str], clients: int, calls: int, name: str
) -> Tuple[float, int]:
    """(calls/s, highest value returned) for ``clients`` x ``calls`` increments of counter ``name``."""
    import httpx

    if kind == "ours":
        bodies = [
            {"jsonrpc": "2.0", "method": "AtomicCounter.Incr", "params": [name, 1], "id": i}
            for i in range(calls)
        ]
    else:
        bodies = [{"name": name, "delta": 1} for _ in range(calls)]
    start = threading.Barrier(clients + 1)
    highest: List[int] = []
    errors: List[BaseException] = []

    def client() -> None:
        top = 0
        try:
            with httpx.Client(headers=headers, timeout=60) as c:
                start.wait()
                for body in bodies:
                    data = c.post(url, content=json.dumps(body)).json()
                    top = max(top, data["result"] if kind == "ours" else data["value"])
        except BaseException as exc:
            errors.append(exc)
        highest.append(top)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{kind} client failed: {errors[0]!r}")
    return clients * calls / elapsed, max(highest)


def bench_backend(backend: str, root: Path, quick: bool) -> Dict[str, Any]:
    clients, calls, pairs = (4, 25, 3) if quick else (8, 60, 7)
    rates: Dict[str, List[float]] = {"ours": [], "bare": []}
    ratios: List[float] = []
    with _server("ours", backend, root) as ours, _server("bare", backend, root) as bare:
        servers = {"ours": ours, "bare": bare}
        for kind, (url, headers) in servers.items():
            _load(kind, url, headers, 2, 20, "warmup")
        for r in range(pairs):  # back-to-back pairs see the same machine load; alternate who goes first
            pair = {}
            for kind in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
                url, headers = servers[kind]
                rate, top = _load(kind, url, headers, clients, calls, f"pair{r}")
                if top != clients * calls:  # lost or doubled increments would make the figure meaningless
                    raise RuntimeError(f"{kind}: counter ended at {top}, expected {clients * calls}")
                pair[kind] = rate
                rates[kind].append(rate)
            ratios.append(pair["ours"] / pair["bare"])
    return {
        "group": "rpc",
        "name": f"AtomicCounter.Incr via gateway ({backend}, {clients} clients, median of {pairs} pairs)",
        "ours": statistics.median(rates["ours"]),
        "baseline": statistics.median(rates["bare"]),
        "baseline_name": "bare Starlette endpoint, same KV increment",
        "ratio": statistics.median(ratios),
        "unit": "calls/s",
        "goal": GOAL,
    }


def run(quick: bool = False) -> List[Dict[str, Any]]:
    """Benchmark rows (see module docstring)."""
    root = Path(tempfile.mkdtemp(prefix="bench-rpc-"))
    try:
        return [bench_backend(backend, root, quick) for backend in BACKENDS]
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        kind, data_dir, backend, token_file = sys.argv[2:6]
        if kind == "ours":
            serve_ours(data_dir, backend, token_file)
        else:
            serve_bare(data_dir, backend)
        sys.exit(0)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv), title="bench_rpc")
