"""Three host processes sharing one Redis: one scraper at a time, fenced, and a fast takeover."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from registry.regkit import opened, scrapes, start_worker, write_config
from sectorhooks.registry import Registry, Status
from support import wait_for

TTL, INTERVAL = 2.0, 0.2
pytestmark = pytest.mark.slow


def check_one_scraper_at_a_time(found: List[dict]) -> None:
    """The invariants every scrape log must keep, whatever the timing."""
    assert found, "no scrape was logged"
    holders = {}
    for s in found:
        holders.setdefault(s["fence"], set()).add(s["holder"])
    assert all(len(h) == 1 for h in holders.values()), f"a fence used by two replicas: {holders}"
    fences = [s["fence"] for s in found]
    assert fences == sorted(fences), "fencing numbers went back"
    for prev, nxt in zip(found, found[1:]):
        if prev["fence"] != nxt["fence"]:
            assert prev["end"] <= nxt["start"], f"two replicas scraped at once: {prev} / {nxt}"
    for log in {s["log"] for s in found}:
        own = [s["fence"] for s in found if s["log"] == log]
        assert own == sorted(own)


def test_replicas_scrape_one_at_a_time_and_take_over_from_a_killed_holder(tmp_path, redis_backend):
    plugin, meta = redis_backend
    unhealthy = tmp_path / "greet-unhealthy"
    config = write_config(tmp_path, plugin, meta, plugin_config={"greet": {"unhealthy_file": str(unhealthy)}})
    logs = [tmp_path / f"replica{i}.log" for i in range(3)]
    procs = [start_worker("scrape", str(config), str(log), str(TTL), str(INTERVAL)) for log in logs]
    try:
        wait_for(
            lambda: all(p.exists() and "worker ready" in p.read_text() for p in logs), 90, "replicas ready"
        )
        wait_for(lambda: len(scrapes(logs)) >= 10, 30, "10 scrapes")
        with opened(config, start_all=False) as (_, kv):
            registry = Registry(kv)
            assert registry.route("greet").status is Status.RUNNING

            # A plugin turning unhealthy is seen by the scraper, and so is its recovery.
            unhealthy.touch()
            wait_for(lambda: registry.route("greet").status is Status.FAILED, 10, "greet FAILED")
            assert "greet-unhealthy exists" in registry.route("greet").reason
            unhealthy.unlink()
            wait_for(lambda: registry.route("greet").status is Status.RUNNING, 10, "greet RUNNING again")

        last = scrapes(logs)[-1]
        victim = next(p for p in procs if last["holder"].endswith(f":{p.pid}"))
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        victim.wait(10)

        def taken_over() -> bool:
            return any(s["fence"] > last["fence"] and s["start"] > killed_at for s in scrapes(logs))

        wait_for(taken_over, 30, "another replica to take over")
        first = next(s for s in scrapes(logs) if s["fence"] > last["fence"] and s["start"] > killed_at)
        assert not first["holder"].endswith(f":{victim.pid}")
        # Within one lease: the dead holder's lease expires at most TTL after its last renewal,
        # and the others try every INTERVAL (plus slack for a machine shared with other tests).
        assert first["start"] - killed_at <= TTL + INTERVAL + 1.5, first["start"] - killed_at
        count = len(scrapes(logs))
        wait_for(lambda: len(scrapes(logs)) >= count + 5, 30, "5 more scrapes")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    found = scrapes(logs)
    check_one_scraper_at_a_time(found)
    assert len({s["holder"] for s in found}) >= 2
    assert all(Path(log).read_text().count("Traceback") == 0 for log in logs)


def test_stopping_the_holder_releases_the_lease_at_once(tmp_path, redis_backend):
    plugin, meta = redis_backend
    config = write_config(tmp_path, plugin, meta)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_worker("scrape", str(config), str(log), "30", str(INTERVAL)) for log in logs]
    try:
        wait_for(lambda: len(scrapes(logs)) >= 3, 90, "3 scrapes")
        last = scrapes(logs)[-1]
        holder = next(p for p in procs if last["holder"].endswith(f":{p.pid}"))
        holder.send_signal(signal.SIGTERM)
        stopped_at = time.time()
        holder.wait(20)
        wait_for(lambda: any(s["fence"] > last["fence"] for s in scrapes(logs)), 15, "takeover after release")
        first = next(s for s in scrapes(logs) if s["fence"] > last["fence"])
        # With a 30 s lease, a takeover this fast is only possible because the lease was released.
        assert first["start"] - stopped_at < 10
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    check_one_scraper_at_a_time(scrapes(logs))
