"""Truthful liveness: `sync status` and `registry list` say who delivers now, and stopped when nobody does.

Every host that delivers keeps a heartbeat in the KV (sectorhooks.liveness); readers compare it
with the lease time. Real ``serve`` subprocesses, stopped cleanly (SIGTERM) and killed (SIGKILL).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from rpc.servekit import Served, cli
from sectorhooks import liveness
from sectorhooks.config import load_config
from sectorhooks.runtime import Runtime
from sectorhooks_spec import AllocatedSector
from support import wait_for
from sync.helpers import make_config, open_runtime, sid, toml_config


def _status(config: Path) -> Dict[str, Dict[str, Any]]:
    done = cli(config, "sync", "status", "--json")
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in json.loads(done.stdout)["syncers"]}


def _registry(config: Path) -> Dict[str, Dict[str, Any]]:
    done = cli(config, "registry", "list", "--json")
    assert done.returncode == 0, done.stderr
    return {p["id"]: p for p in json.loads(done.stdout)["plugins"]}


@pytest.fixture
def served_config(tmp_path: Path) -> Path:
    """A host config with one sqlsync SQLite sink, the KV on SQLite."""
    return toml_config(
        tmp_path / "host.toml",
        tmp_path / "data",
        [("mirror", "sqlsync", {"url": f"sqlite:///{tmp_path / 'mirror.sqlite'}"})],
        plugins=("sqlsync",),
    )


def _write_one(config: Path) -> None:
    """One change in the KV, written by a process that delivers nothing (as an operator's tool would)."""
    with Runtime.open(load_config(config), start_sync=False, filestores=False) as rt:
        rt.state.init_sectors([AllocatedSector(sid(1), 8)])


def test_status_names_the_live_host_then_says_stopped_with_the_last_host_after_a_clean_stop(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, syncers=[("mirror", "sqlsync", {})], kv="sqlkv", plugins=("sqlsync",))
    with open_runtime(config) as host:
        host.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(3)])
        assert host.sync.wait_idle(60)
        beat = host.sync.heartbeat.id
        with open_runtime(config, start_sync=False) as reader:  # what `sync status` opens
            # from the host's heartbeat, which is at most a beat (a second) old
            wait_for(lambda: reader.sync.status()[0]["state"] == "idle", 10, "the beat to say idle")
            (row,) = reader.sync.status()
            assert (row["host"], row["last_host"], row["last_seen"]) == (beat, beat, None)
            assert row["lag_events"] == 0
        stopped_at = time.time()
    with open_runtime(config, start_sync=False) as reader:
        (row,) = reader.sync.status()
    assert (row["state"], row["host"], row["last_host"]) == ("stopped", None, beat)
    assert stopped_at - 5 < row["last_seen"] <= time.time()
    assert row["cursor"] == row["head"]  # delivered everything before it stopped


def test_a_syncer_no_host_ever_ran_says_no_host(tmp_path: Path) -> None:
    config = make_config(tmp_path, syncers=[("mirror", "sqlsync", {})], kv="sqlkv", plugins=("sqlsync",))
    with open_runtime(config, start_sync=False) as reader:
        (row,) = reader.sync.status()
    assert (row["state"], row["host"], row["last_host"], row["last_seen"]) == ("no host", None, None, None)


def test_sync_status_json_says_stopped_within_the_lease_time_after_sigterm_of_serve(
    served_config: Path,
) -> None:
    served = Served(served_config)
    try:
        _write_one(served_config)
        wait_for(
            lambda: _status(served_config)["mirror"]["state"] == "idle", 60, "the host to deliver and say so"
        )
        row = _status(served_config)["mirror"]
        assert row["lag_events"] == 0 and row["host"] is not None
        assert row["host"].split(":")[1] == str(served.proc.pid)
        plugins = _registry(served_config)
        assert plugins["sqlsync"]["state"] == "running"
        assert plugins["sqlsync"]["host"] == row["host"]
        host_id = row["host"]
        sent = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        wait_for(
            lambda: _status(served_config)["mirror"]["state"] == "stopped",
            liveness.TTL,
            "sync status to say stopped within the lease time",
        )
        took = time.monotonic() - sent
        assert served.wait() == 0  # already sent SIGTERM: a second one could race its exit
    finally:
        served.kill()
    row = _status(served_config)["mirror"]
    assert (row["state"], row["host"], row["last_host"]) == ("stopped", None, host_id)
    assert took < liveness.TTL
    plugins = _registry(served_config)
    assert (plugins["sqlsync"]["state"], plugins["sqlsync"]["host"]) == ("stopped", None)
    assert plugins["sqlsync"]["last_host"] == host_id
    assert plugins["sqlsync"]["route"]["status"] == "RUNNING"  # what the last scrape saw, not what runs
    table = cli(served_config, "sync", "status")
    assert "stopped (no live host; last " + host_id in table.stdout.replace("\n", ""), table.stdout


def test_a_sigkilled_host_is_seen_stopped_once_its_heartbeat_is_older_than_the_lease_time(
    served_config: Path,
) -> None:
    served = Served(served_config)
    try:
        wait_for(lambda: _status(served_config)["mirror"]["host"] is not None, 60, "the host to beat")
        served.proc.send_signal(signal.SIGKILL)
        killed = time.time()
        served.proc.wait(30)
    finally:
        served.kill()
    row = _status(served_config)["mirror"]
    if time.time() - killed < liveness.TTL - 2:  # read well within the lease time (beats: every second)
        assert row["state"] != "stopped" and row["host"] is not None  # a kill leaves no word
    wait_for(
        lambda: _status(served_config)["mirror"]["state"] == "stopped",
        liveness.TTL + 15,
        "the dead host's heartbeat to age past the lease time",
    )
    row = _status(served_config)["mirror"]
    assert row["host"] is None and row["last_seen"] <= killed
    assert time.time() - row["last_seen"] >= liveness.TTL


def test_who_runs_prefers_the_delivering_host_and_old_records_are_pruned(tmp_path: Path) -> None:
    config = make_config(tmp_path, kv="sqlkv", plugins=())
    with open_runtime(config, start_sync=False) as rt:
        now = [1_000_000.0]
        clock = lambda: now[0]  # noqa: E731
        reports = {
            "a": {"syncers": {"s": "standby"}, "plugins": ["p"]},
            "b": {"syncers": {"s": "idle"}, "plugins": ["p"]},
        }
        beats = {k: liveness.Heartbeat(rt.kv, lambda k=k: reports[k], ttl=10, clock=clock) for k in reports}
        for hb in beats.values():
            assert hb.beat()
        hosts = liveness.read_hosts(rt.kv)
        seen = liveness.who_runs(hosts, "syncers", "s", now[0] + 1)
        assert seen.live is not None and seen.live.id == beats["b"].id and seen.state == "running"
        assert liveness.who_runs(hosts, "syncers", "nope", now[0]).state == "no host"
        later = liveness.who_runs(hosts, "plugins", "p", now[0] + 10)  # both silent for the ttl
        assert (later.state, later.live) == ("stopped", None) and later.last is not None
        beats["a"].beat(stopped=now[0] + 2)
        hosts = liveness.read_hosts(rt.kv)
        assert [h.id for h in liveness.live_hosts(hosts, now[0] + 3)] == [beats["b"].id]
        now[0] += liveness.KEEP_GONE + 100
        gone = [liveness.Heartbeat(rt.kv, dict, ttl=10, clock=clock) for _ in range(liveness.KEEP_LAST)]
        now[0] += 1
        for hb in gone:
            hb.beat(stopped=now[0])
        now[0] += 1
        assert beats["a"].prune() == 2  # a and b are long gone and not among the newest KEEP_LAST
        assert {h.id for h in liveness.read_hosts(rt.kv)} == {hb.id for hb in gone}
