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
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GIT = ["git", "-C", str(ROOT)]


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


def _tree(sha: str, stack: contextlib.ExitStack) -> Tuple[Path, str]:
    """A temporary worktree of ``sha`` (removed when ``stack`` closes) and its PYTHONPATH."""
    tree = Path(tempfile.mkdtemp(prefix=f"bench-{sha}-")) / "tree"
    subprocess.run([*GIT, "worktree", "add", "--detach", str(tree), sha], check=True, capture_output=True)
    stack.callback(shutil.rmtree, tree.parent, True)
    stack.callback(subprocess.run, [*GIT, "worktree", "remove", "--force", str(tree)], check=False)
    return tree, f"{tree / 'src'}{os.pathsep}{tree / 'hookspecs'}"


def _short(commit: str) -> str:
    found = subprocess.run([*GIT, "rev-parse", "--short", commit], capture_output=True, text=True, check=True)
    return found.stdout.strip()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commit")
    ap.add_argument("--only", action="append", default=[], help="bench module(s), e.g. sync")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--new", help="measure this commit instead of the working tree (e.g. HEAD)")
    args = ap.parse_args(argv)
    sha = _short(args.commit)
    here: List[Dict[str, Dict[str, Any]]] = []
    then: List[Dict[str, Dict[str, Any]]] = []
    with contextlib.ExitStack() as stack:
        old, old_path = _tree(sha, stack)
        new, new_path, label = ROOT, None, "this checkout"
        if args.new:
            label = _short(args.new)
            new, new_path = _tree(label, stack)
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", file=sys.stderr, flush=True)
            here.append(_rows(new, args.only, args.quick, new_path))
            then.append(_rows(old, args.only, args.quick, old_path))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{label} vs {sha}, median of {args.rounds} alternating rounds")
    for col in ("row", label, sha, "ratio"):
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
