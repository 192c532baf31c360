"""Run every ``benchmarks/bench_*.py`` and print one table of ratios against same-run baselines.

Each module exposes ``run(quick: bool) -> list[dict]`` with keys group, name, ours, baseline,
baseline_name, ratio, unit, goal. ``ratio`` is ours relative to the baseline, higher is better;
``goal`` is the ratio to reach (a number meaning ``ratio >= goal``, or a string such as
``">= 0.67"`` / ``"<= 2"``). A module that raises is reported and the others still run.

Usage: ``python benchmarks/run.py [--quick] [--json] [--only NAME ...]``; exit 1 if a module failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
_GOAL_RE = re.compile(r"^\s*(>=|<=|>|<)\s*([0-9.eE+-]+)\s*$")


def discover(only: Sequence[str] = ()) -> List[Path]:
    """The bench modules to run, sorted; ``only`` matches ``host`` or ``bench_host``."""
    files = sorted(HERE.glob("bench_*.py"))
    if not only:
        return files
    wanted = {n[len("bench_") :] if n.startswith("bench_") else n for n in only}
    wanted = {n[:-3] if n.endswith(".py") else n for n in wanted}
    return [f for f in files if f.stem[len("bench_") :] in wanted]


def load_module(path: Path) -> Any:
    """Import one bench file by path (the benchmarks dir is on sys.path for its helpers)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def goal_met(ratio: Any, goal: Any) -> Optional[bool]:
    """Whether ``ratio`` meets ``goal``; ``None`` when there is no comparable goal."""
    if not isinstance(ratio, (int, float)) or goal is None or goal == "":
        return None
    if isinstance(goal, (int, float)) and not isinstance(goal, bool):
        return ratio >= goal
    m = _GOAL_RE.match(str(goal))
    if not m:
        return None
    op, value = m.group(1), float(m.group(2))
    return {">=": ratio >= value, "<=": ratio <= value, ">": ratio > value, "<": ratio < value}[op]


def goal_text(goal: Any) -> str:
    if isinstance(goal, (int, float)) and not isinstance(goal, bool):
        return f">= {goal:g}"
    return "" if goal is None else str(goal)


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def print_table(
    rows: Sequence[Dict[str, Any]], title: str = "benchmarks", failures: Sequence[Tuple[str, str]] = ()
) -> None:
    """Rich table: group, name, ours, baseline, ratio, goal (green when met, red when missed)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for col, justify in [("group", "left"), ("name", "left"), ("ours", "right"), ("baseline", "right"),
                         ("ratio", "right"), ("goal", "right")]:  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        met = goal_met(r.get("ratio"), r.get("goal"))
        style = {True: "green", False: "red", None: ""}[met]
        ratio = _num(r.get("ratio"))
        unit = f" {r['unit']}" if r.get("unit") else ""
        table.add_row(
            escape(str(r.get("group", ""))),
            escape(str(r.get("name", ""))),
            escape(_num(r.get("ours")) + unit),
            escape(f"{_num(r.get('baseline'))}{unit} ({r.get('baseline_name', '')})"),
            f"[{style}]{ratio}[/]" if style else ratio,
            escape(goal_text(r.get("goal"))),
        )
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 140)  # piped or in CI: do not squeeze the table
    console.print(table)
    for name, error in failures:
        console.print(f"[bold red]{escape(name)} failed:[/] {escape(error)}", soft_wrap=True)


def run_all(
    paths: Sequence[Path], quick: bool, log: Any
) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
    """Run each module; a failing one is recorded as (name, error) and the rest still run."""
    rows: List[Dict[str, Any]] = []
    failures: List[Tuple[str, str]] = []
    for path in paths:
        started = time.perf_counter()
        try:
            module = load_module(path)
            got = module.run(quick)
            for row in got:
                rows.append({**row, "module": path.stem})
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            tb = traceback.format_exc(limit=-3)
            failures.append((path.stem, f"{type(exc).__name__}: {exc}"))
            print(f"{path.stem} failed:\n{tb}", file=sys.stderr)
        finally:
            print(f"{path.stem}: {time.perf_counter() - started:.1f}s", file=log)
    return rows, failures


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes for CI")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only bench_NAME (repeatable)"
    )
    args = parser.parse_args(argv)
    paths = discover(args.only)
    if not paths:
        known = ", ".join(p.stem[len("bench_") :] for p in discover())
        parser.error(f"no benchmark matches {args.only}; known: {known or 'none'}")
    rows, failures = run_all(paths, args.quick, sys.stderr)
    if args.json:
        print(
            json.dumps({"rows": rows, "failures": [{"module": m, "error": e} for m, e in failures]}, indent=2)
        )
    else:
        print_table(rows, failures=failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
