"""A syncer's raise, hang or crash costs retries and dead letters, never the host or other events.

The ``chaos`` test plugin runs in its worker process (``Isolation = "process"``, the default) and
appends what each Flush delivered to a file; it raises, hangs or calls ``os._exit(3)`` on the
changes a test names.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import attrs
import pytest

from sectorhooks.runtime import Runtime
from sectorhooks_spec import AllocatedSector, LatestState
from support import wait_for
from sync.helpers import make_config, open_runtime, sid

SECTORS = 8


def chaos_config(
    tmp_path: Path, isolation: str = "process", hook_timeout: float = 30.0, kv: str = "memdb", **meta: Any
) -> Any:
    out = str(tmp_path / "out.jsonl")
    config = make_config(
        tmp_path, syncers=[("bad", "chaos", {"out": out, **meta})], kv=kv, plugins=("chaos",)
    )
    sync = attrs.evolve(config.sync, isolation=isolation, hook_timeout=hook_timeout, max_crashes=3)
    return attrs.evolve(config, sync=sync)


def delivered(tmp_path: Path) -> Set[Tuple[int, int]]:
    path = tmp_path / "out.jsonl"
    if not path.exists():
        return set()
    return {tuple(json.loads(line)) for line in path.read_text().splitlines()}  # type: ignore[misc]


def run_updates(rt: Runtime, rounds: int = 3) -> Set[Tuple[int, int]]:
    """Init SECTORS sectors (version 1), then ``rounds`` updates of each; every (number, version)."""
    rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(SECTORS)])
    for r in range(rounds):
        for n in range(SECTORS):
            rt.state.update(sid(n), latest_state=LatestState(f"R{r}"))
    return {(n, v) for n in range(SECTORS) for v in range(1, rounds + 2)}


def seq_of(rt: Runtime, number: int, version: int) -> int:
    """The log seq of an update written by :func:`run_updates` (entry 1 is the init)."""
    return 2 + (version - 2) * SECTORS + number


def dead(rt: Runtime, name: str = "bad") -> List[Dict[str, Any]]:
    """The dead letters of ``name``; each one's entry is checked to be the change it says."""
    letters = list(rt.sync.records.dead_letters(name))
    for d in letters:
        head = json.loads(d["entry"].split("\n", 1)[0])
        assert d["seq"] == seq_of(rt, head["s"][1], head["v"]), d
    return letters


def status(rt: Runtime, name: str = "bad") -> Dict[str, Any]:
    return next(s for s in rt.sync.status() if s["name"] == name)


def test_a_hook_calling_os_exit_is_dead_lettered_after_max_crashes_and_the_rest_is_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    with open_runtime(chaos_config(tmp_path, exit=[[5, 3]])) as rt:
        every = run_updates(rt)
        assert rt.sync.wait_idle(120)
        seq = seq_of(rt, 5, 3)
        letters = dead(rt)
        assert [d["seq"] for d in letters] == [seq]  # that event alone, no crash loop
        error = letters[0]["error"]
        for part in ("plugin 'chaos'", "syncer 'bad'", f"event {seq}", "exit status 3", "3 times"):
            assert part in error, error
        assert delivered(tmp_path) == every - {(5, 3)}
        st = status(rt)
        assert st["isolation"] == "process"
        assert st["crashes"] == 3 and st["last_exit"] == "exit status 3"
        assert st["dead_letters"] == 1 and st["lag_events"] == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "syncer 'bad' (plugin 'chaos')" in logged and f"event {seq}" in logged


def test_a_hook_that_hangs_is_killed_after_hook_timeout_and_status_says_hung(tmp_path: Path) -> None:
    with open_runtime(chaos_config(tmp_path, hook_timeout=1.0, hang=[[2, 2]])) as rt:
        every = run_updates(rt)
        seq = seq_of(rt, 2, 2)
        wait_for(lambda: status(rt)["state"] == "hung", 30, "status to say hung")
        st = status(rt)
        assert st["hung"]["event"] == seq and st["hung"]["since"] > 0
        wait_for(lambda: "HookTimeout" in status(rt)["last_error"], 30, "the hang in last_error")
        assert rt.sync.wait_idle(120)
        letters = dead(rt)
        assert [d["seq"] for d in letters] == [seq]
        assert "ran past HookTimeout (1s)" in letters[0]["error"]
        assert "killed by signal 9 (SIGKILL)" in letters[0]["error"]
        assert delivered(tmp_path) == every - {(2, 2)}
        assert status(rt)["state"] != "hung" and status(rt)["hung"] is None


def test_a_raising_hook_in_a_worker_is_retried_then_dead_lettered_with_its_error(tmp_path: Path) -> None:
    with open_runtime(chaos_config(tmp_path, **{"raise": [[1, 2], [6, 4]]})) as rt:
        every = run_updates(rt)
        assert rt.sync.wait_idle(60)
        letters = dead(rt)
        assert [d["seq"] for d in letters] == sorted([seq_of(rt, 1, 2), seq_of(rt, 6, 4)])
        assert all("ValueError: chaos: refusing sector" in d["error"] for d in letters)
        assert status(rt)["crashes"] == 0  # a raise is not a crash: the worker lives on
        assert delivered(tmp_path) == every - {(1, 2), (6, 4)}


def test_a_worker_dying_in_flush_is_narrowed_to_the_one_change_that_kills_it(tmp_path: Path) -> None:
    with open_runtime(chaos_config(tmp_path, flush_exit=[[4, 2]])) as rt:
        every = run_updates(rt)
        assert rt.sync.wait_idle(120)
        letters = dead(rt)
        assert [d["seq"] for d in letters] == [seq_of(rt, 4, 2)]
        assert "Flush" in letters[0]["error"] and "exit status 4" in letters[0]["error"]
        assert delivered(tmp_path) == every - {(4, 2)}


def test_a_worker_killed_from_outside_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with open_runtime(chaos_config(tmp_path, pid_file=str(pid_file))) as rt:
        rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(SECTORS)])
        assert rt.sync.wait_idle(60)
        first = int(pid_file.read_text())
        os.kill(first, signal.SIGKILL)
        for n in range(SECTORS):
            rt.state.update(sid(n), latest_state=LatestState("after"))
        assert rt.sync.wait_idle(60)
        assert int(pid_file.read_text()) != first
        assert delivered(tmp_path) == {(n, v) for n in range(SECTORS) for v in (1, 2)}
        assert dead(rt) == []
        st = status(rt)
        assert st["crashes"] == 1 and st["last_exit"] == "killed by signal 9 (SIGKILL)"
        assert "could not start" not in st["last_error"]


def test_a_hang_in_thread_isolation_shows_as_hung_with_its_event(tmp_path: Path) -> None:
    rt = open_runtime(chaos_config(tmp_path, isolation="thread", hook_timeout=0.5, hang=[[3, 1]]))
    try:
        rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(3)])
        rt.state.init_sectors([AllocatedSector(sid(3), 8)])
        seq = 2  # the second init
        wait_for(lambda: status(rt)["state"] == "hung", 20, "status to say hung")
        st = status(rt)
        assert st["isolation"] == "thread" and st["hung"]["event"] == seq
    finally:
        rt.sync.stop(timeout=1.0)  # the hung thread cannot be stopped; the host still closes
        rt.close()


def test_status_of_a_stopped_host_keeps_the_crash_count(tmp_path: Path) -> None:
    config = chaos_config(tmp_path, kv="sqlkv", exit=[[0, 2]])
    with open_runtime(config) as rt:
        run_updates(rt, rounds=1)
        assert rt.sync.wait_idle(120)
    with open_runtime(config, start_sync=False) as rt:  # what `sync status` sees with no host
        st = status(rt)
        assert st["crashes"] == 3 and st["last_exit"] == "exit status 3"


@pytest.mark.parametrize("nice", [10, 0])
def test_a_worker_runs_below_the_hosts_cpu_priority_by_worker_nice(tmp_path: Path, nice: int) -> None:
    config = chaos_config(tmp_path)
    config = attrs.evolve(config, sync=attrs.evolve(config.sync, worker_nice=nice))
    with open_runtime(config) as rt:
        assert rt.sync.wait_ready(60)
        pid = rt.sync.dispatcher("bad").runner.pid
        assert pid is not None
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice)
