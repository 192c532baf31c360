"""Run benchmarks on this checkout and on an earlier commit, alternating, in one run.

``python benchmarks/compare_commits.py COMMIT [--only sync] [--rounds 3] [--quick]``

The earlier commit is checked out into a temporary git worktree and imported from there (its
``src`` and ``hookspecs`` first on ``PYTHONPATH``; the bundled plugins come from its tree), so
both trees run with the same interpreter and libraries, on the same machine, taking turns. The
table shows, per benchmark row, the median of each tree's absolute figure ("ours" of that row)
and their ratio (this checkout / the commit): the way to show a change did not slow a path down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _rows(tree: Path, only: List[str], quick: bool, pythonpath: Optional[str]) -> Dict[str, Dict[str, Any]]:
    cmd = [sys.executable, str(tree / "benchmarks" / "run.py"), "--json"]
    if quick:
        cmd.append("--quick")
    for name in only:
        cmd += ["--only", name]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    rows = json.loads(out.stdout[out.stdout.index("{") :])["rows"]
    # A row's name may end in run details ("; median of 5 (runs ...)"): the part before ';' is its key.
    keyed = {f"{r['group']}: {r['name'].split(';')[0]}": r for r in rows}
    return {k: r for k, r in keyed.items() if isinstance(r.get("ours"), (int, float))}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commit")
    ap.add_argument("--only", action="append", default=[], help="bench module(s), e.g. sync")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    git = ["git", "-C", str(ROOT)]
    found = subprocess.run([*git, "rev-parse", "--short", args.commit], capture_output=True, text=True, check=True)
    sha = found.stdout.strip()
    old = Path(tempfile.mkdtemp(prefix=f"bench-{sha}-")) / "tree"
    subprocess.run([*git, "worktree", "add", "--detach", str(old), sha], check=True, capture_output=True)
    here: List[Dict[str, Dict[str, Any]]] = []
    then: List[Dict[str, Dict[str, Any]]] = []
    try:
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", file=sys.stderr, flush=True)
            here.append(_rows(ROOT, args.only, args.quick, None))
            then.append(_rows(old, args.only, args.quick, f"{old / 'src'}{os.pathsep}{old / 'hookspecs'}"))
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(old)], check=False)
        shutil.rmtree(old.parent, ignore_errors=True)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"this checkout vs {sha}, median of {args.rounds} alternating rounds")
    for col in ("row", "this checkout", sha, "ratio"):
        table.add_column(col, justify="left" if col == "row" else "right")
    for key in here[0]:
        if not all(key in r for r in here + then):
            continue
        a = statistics.median(r[key]["ours"] for r in here)
        b = statistics.median(r[key]["ours"] for r in then)
        unit = here[0][key].get("unit", "")
        table.add_row(key, f"{a:,.1f} {unit}", f"{b:,.1f} {unit}", f"{a / b:.3f}" if b else "-")
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
