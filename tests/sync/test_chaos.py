"""Chaos: three good sinks and one syncer that raises, hangs and dies, under a host SIGKILLed twice.

8 writer threads x 2,000 changes through ``chaos_host.py`` (a real host process), with three
sqlsync sinks (SQLite, PostgreSQL, MariaDB) and the ``chaos`` syncer, each in its worker process.
The host is SIGKILLed twice mid-run and restarted; the third run finishes. Then: every
acknowledged change is in the KV, the three good sinks equal the KV (nothing lost, nothing
doubled), and the bad syncer's dead letters are exactly the changes it raised, hung or died on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set, Tuple

import psycopg
import pymysql
import pytest

import servers
from sectorhooks.config import load_config
from sectorhooks.runtime import Runtime
from sync.helpers import sid, toml_config
from sync.sinks import event_gaps, field_differences

HERE = Path(__file__).resolve().parent
SECTORS, PER_WRITER = 64, 2000
EXIT = [[3, 40], [17, 120], [42, 200]]  # os._exit(3) in the hook
HANG = [[9, 90], [50, 230]]  # sleeps forever in the hook: killed after HookTimeout
RAISE = [[5, 10], [33, 150]]  # raises ValueError every time


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "chaos_host.py"), str(config), str(SECTORS), str(PER_WRITER)],
        stdout=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], acknowledged: Dict[int, int], more: int) -> None:
    """Record acknowledged changes until ``more`` more came (or the host ended)."""
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        if line.strip() in ("idle", "not idle"):
            acknowledged[-1] = 1 if line.strip() == "idle" else 0
            return
        n, version = map(int, line.split())
        acknowledged[n] = max(acknowledged.get(n, 0), version)
        seen += 1
        if seen >= more:
            return


@pytest.mark.slow
def test_chaos_three_good_sinks_equal_the_kv_and_the_bad_syncers_dead_letters_are_exact(
    tmp_path: Path, pg_database: Tuple[str, str], mysql_database: Tuple[str, str]
) -> None:
    assert psycopg and pymysql and servers  # the drivers the sinks use
    out = tmp_path / "bad.jsonl"
    good = {"lite": f"sqlite:///{tmp_path / 'mirror.sqlite'}", "pg": pg_database[0], "my": mysql_database[0]}
    syncers = [(name, "sqlsync", {"url": url}) for name, url in good.items()]
    syncers.append(("bad", "chaos", {"out": str(out), "exit": EXIT, "hang": HANG, "raise": RAISE}))
    # HookTimeout applies to the good sinks too: their first Flush imports a driver, connects and
    # creates tables, which takes seconds on a loaded machine (at 1 s, CI killed a good sink's).
    config = toml_config(
        tmp_path / "host.toml",
        tmp_path / "data",
        syncers,
        plugins=("sqlsync", "chaos"),
        sync={"BatchSize": 500, "HookTimeout": 5.0, "MaxCrashes": 3, "MaxAttempts": 3},
    )
    acknowledged: Dict[int, int] = {}
    for _ in range(2):  # killed twice mid-run
        proc = start(config)
        try:
            read_until(proc, acknowledged, 4000)
            assert proc.poll() is None, "the host died by itself (a crash loop?)"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
    proc = start(config)
    read_until(proc, acknowledged, 10**9)
    assert proc.wait(600) == 0, "the last run did not finish delivering"
    assert acknowledged.pop(-1) == 1

    with Runtime.open(load_config(config), start_sync=False, filestores=False) as rt:
        for n, version in acknowledged.items():  # no acknowledged change lost
            assert rt.state.get(sid(n)).version >= version
        assert sum(s.version - 1 for s in rt.state.list()) == 8 * PER_WRITER
        status = {s["name"]: s for s in rt.sync.status()}
        for name, url in good.items():
            assert status[name]["dead_letters"] == 0 and status[name]["lag_events"] == 0, status[name]
            assert field_differences(url, rt.state) == [], name
            assert event_gaps(url, rt.state) == [], name
        letters = list(rt.sync.records.dead_letters("bad"))
        got: Dict[Tuple[int, int], str] = {}
        for d in letters:
            head = json.loads(d["entry"].split("\n", 1)[0])
            got[(head["s"][1], head["v"])] = d["error"]
        want = {tuple(x) for x in EXIT + HANG + RAISE}
        assert set(got) == want
        for n, v in map(tuple, EXIT):
            assert "exit status 3" in got[(n, v)] and "plugin 'chaos'" in got[(n, v)]
        for n, v in map(tuple, HANG):
            assert "HookTimeout" in got[(n, v)]
        for n, v in map(tuple, RAISE):
            assert "ValueError: chaos: refusing" in got[(n, v)]
        assert status["bad"]["lag_events"] == 0
    # what the bad syncer did deliver: every other change, each at least once
    delivered: Set[Tuple[int, int]] = {tuple(json.loads(line)) for line in out.read_text().splitlines()}  # type: ignore[misc]
    every = {(n, v) for n in range(SECTORS) for v in range(2, PER_WRITER * 8 // SECTORS + 2)}
    assert every - delivered == want
