"""Host-side retries (``sectorhooks.kv``): bounded by attempts and time, full jitter, conflicts only."""

from __future__ import annotations

import random
from typing import Any, Callable, List

import pytest

from sectorhooks.errors import KVRetryExhausted
from sectorhooks.kv import RetryingKVStore, RetryPolicy, retry_update, retry_view
from sectorhooks_spec.errors import KVError, StoreUnavailable, TransactionConflict
from sectorhooks_spec.kvstore import CommitOutcomeUnknown


class Flaky:
    """A collection-like target whose update raises ``errors`` in turn, then runs ``fn``."""

    def __init__(self, errors: List[BaseException], name: str = "sectors"):
        self.errors = list(errors)
        self.name = name
        self.calls = 0

    def update(self, fn: Callable[[Any], Any]) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return fn("txn")

    view = update


class FakeTime:
    """A clock that only moves when ``sleep`` is called."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def conflicts(n: int) -> List[BaseException]:
    return [TransactionConflict(f"lost race {i}") for i in range(n)]


def test_reruns_fn_after_conflicts_with_growing_jittered_delays() -> None:
    target, t = Flaky(conflicts(4)), FakeTime()
    policy = RetryPolicy(attempts=10, max_seconds=10, base_delay=0.01, max_delay=0.03)
    seen: List[int] = []
    result = retry_update(
        target, lambda txn: f"done with {txn}", policy, sleep=t.sleep, clock=t.clock, rng=random.Random(1),
        on_conflict=lambda attempt, exc: seen.append(attempt),
    )  # fmt: skip
    assert result == "done with txn"
    assert target.calls == 5 and seen == [1, 2, 3, 4]
    caps = [0.01, 0.02, 0.03, 0.03]  # base * 2**n, capped at max_delay
    assert len(t.sleeps) == 4
    assert all(0 <= s <= cap for s, cap in zip(t.sleeps, caps)), t.sleeps


def test_gives_up_after_the_attempt_budget_naming_collection_attempts_and_time() -> None:
    target, t = Flaky(conflicts(100)), FakeTime()
    with pytest.raises(KVRetryExhausted) as err:
        retry_update(target, lambda txn: None, RetryPolicy(attempts=5), sleep=t.sleep, clock=t.clock)
    exc = err.value
    assert isinstance(exc, KVError)
    assert target.calls == 5 and exc.attempts == 5
    assert isinstance(exc.__cause__, TransactionConflict)
    text = str(exc)
    assert "collection 'sectors'" in text and "5 attempt(s)" in text and f"{exc.elapsed:.2f}s" in text
    assert exc.elapsed == pytest.approx(sum(t.sleeps))


def test_gives_up_when_the_next_delay_would_pass_the_time_budget() -> None:
    target, t = Flaky(conflicts(1000)), FakeTime()
    policy = RetryPolicy(attempts=1000, max_seconds=1.0, base_delay=0.2, max_delay=0.2)
    with pytest.raises(KVRetryExhausted) as err:
        retry_update(target, lambda txn: None, policy, sleep=t.sleep, clock=t.clock, rng=random.Random(3))
    assert err.value.elapsed <= 1.0
    assert sum(t.sleeps) <= 1.0
    assert 5 <= target.calls < 1000  # stopped by time, not by the attempt count


@pytest.mark.parametrize(
    "error",
    [
        StoreUnavailable("server gone"),
        CommitOutcomeUnknown("commit lost"),
        ValueError("bug in fn"),
        KeyError("k"),
    ],
)
def test_only_conflicts_are_retried(error: BaseException) -> None:
    target, t = Flaky([error]), FakeTime()
    with pytest.raises(type(error)) as err:
        retry_update(target, lambda txn: None, RetryPolicy(), sleep=t.sleep, clock=t.clock)
    assert err.value is error
    assert target.calls == 1 and t.sleeps == []


def test_retry_view_retries_conflicts_too() -> None:
    target, t = Flaky(conflicts(2)), FakeTime()
    assert retry_view(target, lambda txn: 7, RetryPolicy(), sleep=t.sleep, clock=t.clock) == 7
    assert target.calls == 3


def test_full_jitter_spreads_delays_over_the_whole_window() -> None:
    policy = RetryPolicy(base_delay=0.01, max_delay=0.08)
    rng = random.Random(42)
    for failures, cap in [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.08), (9, 0.08), (500, 0.08)]:
        samples = [policy.backoff(failures, rng) for _ in range(3000)]
        assert min(samples) >= 0 and max(samples) <= cap
        assert max(samples) > 0.95 * cap and min(samples) < 0.05 * cap
        assert sum(samples) / len(samples) == pytest.approx(cap / 2, rel=0.1)


@pytest.mark.parametrize(
    "kwargs", [{"attempts": 0}, {"max_seconds": 0}, {"base_delay": -1}, {"base_delay": 1.0, "max_delay": 0.5}]
)
def test_policy_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_retrying_store_retries_a_real_redis_conflict(redis_prefix: Any) -> None:
    """rediskv: a write to a watched key between read and commit; the wrapper retries the update."""
    from kv.kvplugins import open_store

    url, prefix = redis_prefix
    raw = open_store("rediskv", {"url": url, "prefix": prefix})
    store = RetryingKVStore(raw, RetryPolicy(attempts=5))
    try:
        coll, raw_coll = store.open_collection("c"), raw.open_collection("c")
        coll.put(b"n", b"1")
        runs: List[bytes] = []

        def double(t: Any) -> None:
            value = t.get(b"n")
            runs.append(value)
            if len(runs) == 1:
                raw_coll.put(b"n", b"10")  # another client writes after our read
            t.put(b"n", b"%d" % (int(value) * 2))

        coll.update(double)
        assert runs == [b"1", b"10"]  # the first run lost, the second saw the new value
        assert coll.get(b"n") == b"20"
        assert store.conflicts == 1

        def read_twice(txn: Any) -> tuple:
            a = txn.collection("c").get(b"n")
            if store.conflicts == 1:
                raw_coll.put(b"n", b"30")
            return a, txn.collection("c").get(b"n")

        assert store.view(read_twice) == (b"30", b"30")  # the inconsistent view was retried
        assert store.conflicts == 2
    finally:
        store.close()


def test_what_names_the_target_in_the_error() -> None:
    """The registry's retries (``registry._kv``) name what they were doing, e.g. a lease."""
    target, t = Flaky(conflicts(10)), FakeTime()
    with pytest.raises(KVRetryExhausted, match=r"update on lease 'scrape' still conflicting after 2 attempt"):
        policy = RetryPolicy(attempts=2)
        retry_update(target, lambda txn: None, policy, sleep=t.sleep, clock=t.clock, what="lease 'scrape'")
    assert target.calls == 2 and len(t.sleeps) == 1
