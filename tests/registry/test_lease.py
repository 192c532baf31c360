"""Leases on real Redis and PostgreSQL: one holder, expiry, fencing, owner-only renew/release."""

from __future__ import annotations

import threading
import time

import pytest

from registry.regkit import opened, write_config
from sectorhooks.registry import Lease, LeaseLost, Registry, Scraper, Status, register_host
from sectorhooks.registry import scrape as scrape_mod
from sectorhooks.registry.records import decode


@pytest.fixture
def env(tmp_path, kv_backend):
    plugin, meta = kv_backend
    with opened(write_config(tmp_path, plugin, meta)) as (host, kv):
        yield host, kv


def later(seconds: float):
    """A clock ``seconds`` ahead: that replica sees every lease older than that as expired."""
    return lambda: time.time() + seconds


def test_only_one_contender_holds_a_live_lease(env):
    _, kv = env
    a, b = Lease(kv, "L", ttl=30), Lease(kv, "L", ttl=30)
    assert a.acquire() and a.fence == 1 and a.held
    assert not b.acquire() and not b.held
    assert a.acquire() and a.fence == 1  # the holder extends; the fence stays
    assert not b.renew()


def test_an_expired_lease_is_taken_over_with_a_higher_fence_and_the_old_holder_is_fenced_off(env):
    _, kv = env
    a, b = Lease(kv, "L", ttl=30), Lease(kv, "L", ttl=30, clock=later(31))
    assert a.acquire()
    assert b.acquire() and b.fence == 2
    assert not a.renew() and not a.held
    with pytest.raises(LeaseLost, match="our fence 1 is stale"):
        kv.update(lambda t: (a.guard(t), t.collection("public").put(b"x", b"stale write")))
    assert kv.view(lambda t: t.collection("public").peek(b"x")) is None
    assert kv.update(lambda t: (b.guard(t), t.collection("public").put(b"x", b"fresh"))) is not None
    assert kv.view(lambda t: t.collection("public").peek(b"x")) == b"fresh"


def test_release_hands_over_at_once_and_the_fence_never_goes_back(env):
    _, kv = env
    a, b = Lease(kv, "L", ttl=30), Lease(kv, "L", ttl=30)
    fences = []
    for _ in range(3):
        assert a.acquire()
        fences.append(a.fence)
        a.release()
        assert b.acquire()
        fences.append(b.fence)
        b.release()
    assert fences == [1, 2, 3, 4, 5, 6]


def test_only_the_owner_can_release(env):
    _, kv = env
    a, b = Lease(kv, "L", ttl=30), Lease(kv, "L", ttl=30)
    assert a.acquire()
    b.release()
    assert not b.acquire() and a.renew()


def test_concurrent_acquirers_never_both_win(env):
    _, kv = env
    leases = [Lease(kv, "race", ttl=30) for _ in range(6)]
    winners = []
    go = threading.Barrier(len(leases))

    def contend(lease: Lease) -> None:
        go.wait()
        if lease.acquire():
            winners.append(lease.owner)

    threads = [threading.Thread(target=contend, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(winners) == 1
    assert decode(kv.view(lambda t: t.collection("leases").peek(b"race")))["fence"] == 1


def test_a_paused_scraper_cannot_overwrite_a_newer_scrape(env, monkeypatch):
    host, kv = env
    registry = Registry(kv)
    register_host(registry, host)
    a = Scraper(host, registry, ttl=30)
    b = Scraper(host, registry, ttl=30)
    b.lease.clock = later(31)  # b sees a's lease as expired while a is paused
    entered, resume = threading.Event(), threading.Event()
    real = scrape_mod.host_status

    def paused_status(h, record):
        if threading.current_thread().name == "paused":
            entered.set()
            resume.wait(30)
            return Status.FAILED, "stale view of a paused replica"
        return real(h, record)

    monkeypatch.setattr(scrape_mod, "host_status", paused_status)
    result = {}
    t = threading.Thread(target=lambda: result.update(a=a.scrape_once()), name="paused")
    t.start()
    assert entered.wait(30)
    assert b.scrape_once() == {"greet": Status.RUNNING, host.plugins()[0].name: Status.RUNNING}
    resume.set()
    t.join(30)
    assert result["a"] is None  # refused: b holds a newer fence
    assert registry.route("greet").status is Status.RUNNING
    assert b.lease.state()["fence"] == 2 and a.lease.fence == 1
