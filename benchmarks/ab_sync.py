"""In-run A/B of a speed trick on bench_sync's rows: the tree as it is (A) against the tree with
the trick's plain path put in its place (B), alternating in one process, medians.

``python benchmarks/ab_sync.py [--rounds 7] [--per 1000] [--rows delivered,ceiling] VARIANT ...``

Each round runs ``bench_sync.bench_ours`` (8 writer threads x ``--per`` changes on 800 sectors,
KV ``synchronous = NORMAL``) once for A and once per VARIANT, the order reversed every other
round so that drift of a shared machine falls on both sides. Rows (``--rows``):

* ``delivered``: bench_sync (b), three SQLite sqlsync sinks, changes/s until every sink holds
  every change (also its writers' changes/s and CPU µs per change, host + sink workers);
* ``ceiling``: the same writers with no syncer running (bench_sync's "group commit ceiling"
  row): host CPU only, the less noisy row for host-side tricks.

The table shows per row and variant the median of A, the median of B and A / B (above 1: the
trick is faster). Issue #18's rule (docs/SPEED.md): a trick stays only with a gain of at least
10% on the row it is meant for.

A variant switches a trick off by monkeypatching, here in the benchmark, never through a flag
of the product code: each entry of ``VARIANTS`` is a context manager that puts the plain path in
place for one run and restores the tree's code after it. Add one there to measure a new trick;
the names in use are listed by ``--list``. A trick that is dropped takes its variant with it (the
commit that added the variant measures it: ``plain-model-fields`` in c1fb6a0, see docs/SPEED.md);
to compare the tree with an earlier commit instead, use ``benchmarks/compare_commits.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Sequence, Tuple

import attrs

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_sync  # noqa: E402  (a sibling file, importable once HERE is on sys.path)


@contextlib.contextmanager
def _no_mmap() -> Iterator[None]:
    """sqlkv's ``mmap_size`` Meta key set to 0 (its default is 256 MiB)."""
    original = bench_sync._config

    def config(*args: Any, **kwargs: Any) -> Any:
        c = original(*args, **kwargs)
        return attrs.evolve(c, db=attrs.evolve(c.db, meta={**c.db.meta, "mmap_size": 0}))

    bench_sync._config = config
    try:
        yield
    finally:
        bench_sync._config = original


#: variant name -> (what it puts in place of the trick, context manager factory)
VARIANTS: Dict[str, Tuple[str, Callable[[], ContextManager[None]]]] = {
    "no-mmap": ("sqlkv Meta mmap_size = 0 (the default is 256 MiB)", _no_mmap),
}

ROWS = ("delivered", "ceiling")


def run_once(row: str, per: int, sectors: int) -> Dict[str, float]:
    """One bench_sync run of ``row``: its figures by name."""
    if row == "delivered":
        delivered, write, cpu = bench_sync.bench_ours(per_thread=per, sectors=sectors, sync="NORMAL")
        return {"delivered changes/s": delivered, "write changes/s": write, "CPU µs/change": cpu}
    _, write, cpu = bench_sync.bench_ours(per_thread=per, sectors=sectors, sync="NORMAL", syncing=False)
    return {"ceiling changes/s": write, "ceiling CPU µs/change": cpu}


def measure(
    variants: Sequence[str], rows: Sequence[str], rounds: int, per: int, sectors: int = 800
) -> Dict[Tuple[str, str], List[Dict[str, float]]]:
    """``{(side, row): [figures of each round]}``, side ``"A"`` or a variant name; A and the
    variants alternate, the order reversed every other round."""
    results: Dict[Tuple[str, str], List[Dict[str, float]]] = {}
    sides = ["A", *variants]
    for r in range(rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:
            for row in rows:
                switch = contextlib.nullcontext() if side == "A" else VARIANTS[side][1]()
                t0 = time.perf_counter()
                with switch:
                    figures = run_once(row, per, sectors)
                results.setdefault((side, row), []).append(figures)
                shown = ", ".join(f"{k} {v:,.0f}" for k, v in figures.items())
                print(
                    f"round {r + 1}/{rounds} {side:<16} {row:<9} {shown} ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
    return results


def table(results: Dict[Tuple[str, str], List[Dict[str, float]]], variants: Sequence[str]) -> List[List[str]]:
    """Rows of (variant, figure, A median, B median, A / B, rounds); for CPU µs (lower is better)
    A / B is B's median over A's, so above 1 always means the trick is faster."""
    out = [["variant (B)", "figure", "A: tree", "B: plain", "A / B", "rounds"]]
    for variant in variants:
        for (side, row), runs in results.items():
            if side != "A":
                continue
            b_runs = results[(variant, row)]
            for figure in runs[0]:
                a = statistics.median(f[figure] for f in runs)
                b = statistics.median(f[figure] for f in b_runs)
                ratio = b / a if "µs" in figure else a / b
                out.append([variant, figure, f"{a:,.0f}", f"{b:,.0f}", f"x{ratio:.3f}", str(len(runs))])
    return out


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help="variants to measure against the tree (see --list)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--per", type=int, default=1000, help="changes per writer thread (default 1000)")
    parser.add_argument("--rows", default="delivered,ceiling", help="delivered, ceiling or both (default)")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    args = parser.parse_args(list(argv) or None)
    if args.list or not args.variants:
        for name, (what, _) in VARIANTS.items():
            print(f"{name}: {what}")
        return 0 if args.list else 2
    unknown = [v for v in args.variants if v not in VARIANTS]
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown or not rows or set(rows) - set(ROWS):
        parser.error(f"unknown variant(s) {unknown} or rows {rows}: variants {sorted(VARIANTS)}, rows {ROWS}")
    results = measure(args.variants, rows, args.rounds, args.per)
    lines = table(results, args.variants)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    print()
    for line in lines:
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
