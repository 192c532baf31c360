"""Durable dispatch with real test plugins: fan-out, retries, dead letters, trimming, backfill."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import attrs
import pytest

from sectorhooks.changelog import Event
from sectorhooks.errors import SyncError
from sectorhooks.runtime import Runtime
from sectorhooks.sync import DispatcherState
from sectorhooks_spec import AllocatedSector, LatestState
from support import wait_for
from sync.helpers import FAST, kv_rows, make_config, open_runtime, plugin_module, sealing_run, sid


@pytest.fixture
def recorder() -> Iterator[Any]:
    """The recorder plugin's module state, reset around each test."""
    import importlib

    yield None
    try:
        importlib.import_module("sectorhooks_plugins.recorder.recorder").reset()
    except ImportError:
        pass


def runtime(tmp_path: Path, *syncers: Any, kv: str = "memdb", settings: Any = FAST, **kw: Any) -> Runtime:
    return open_runtime(
        make_config(tmp_path, syncers=syncers, kv=kv, settings=settings, plugins=("recorder", "inline")), **kw
    )


def test_fan_out_to_every_instance_in_log_order(tmp_path: Path, recorder: Any) -> None:
    with runtime(
        tmp_path, ("a", "recorder", {"url": "a"}), ("b", "recorder", {"url": "b"}), kv="sqlkv"
    ) as rt:
        changes = sealing_run(rt.state, sectors=30, updates=4)
        assert rt.sync.wait_idle(30)
        rec = plugin_module(rt, "recorder")
        want = kv_rows(rt.state)
        for name in ("a", "b"):
            assert rec.read_rows(name) == want
            assert rt.sync.verify(name) == []
        # in order per sector, each change exactly once (no failures happened)
        for name in ("a", "b"):
            delivered = rec.DELIVERED[name]
            assert len(delivered) == 30 + 30 * 4 + 15
            per_sector: dict = {}
            for _, sector, version in delivered:
                per_sector.setdefault(sector, []).append(version)
            assert all(v == list(range(1, len(v) + 1)) for v in per_sector.values())
        status = {s["name"]: s for s in rt.sync.status()}
        assert status["a"]["cursor"] == status["a"]["head"] == rt.state.log.head()
        assert status["a"]["lag_events"] == 0 and status["a"]["dead_letters"] == 0
        assert changes > 0


def test_unconfigured_plugin_gets_a_default_instance_named_after_it(tmp_path: Path, recorder: Any) -> None:
    with runtime(tmp_path, ("only-a", "recorder", {"url": "only-a"})) as rt:
        # recorder has an instance, so no default; inline has none, so it gets "inline"
        assert rt.sync.syncers == ["only-a", "inline"]
        rt.state.init_sectors([AllocatedSector(sid(1), 8)])
        rt.state.update(sid(1), latest_state=LatestState("PC1"))
        assert rt.sync.wait_idle(10)
        seen = plugin_module(rt, "inline").SEEN["inline"]
        assert seen[str(sid(1))] == rt.state.get(sid(1))  # got decoded `state` objects


def test_hooks_get_only_the_arguments_they_ask_for_and_state_is_decoded_lazily(
    tmp_path: Path, recorder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = []
    real = Event.states

    def counting(self: Event) -> Any:
        decoded.append(self.kind)
        return real(self)

    monkeypatch.setattr(Event, "states", counting)
    with runtime(tmp_path, ("a", "recorder", {"url": "a"})) as rt:
        rt.state.init_sectors([AllocatedSector(sid(1), 8)])
        rt.state.update(sid(1), latest_state=LatestState("PC1"))
        rt.state.finalize(sid(1))
        assert rt.sync.wait_idle(10)
    # recorder asks for state_json everywhere except on_finalize; inline (default instance) for state
    assert decoded.count("finalize") == 2 and decoded.count("update") == 1 and decoded.count("init") == 1


def test_unknown_syncer_plugin_is_reported_and_the_others_run(tmp_path: Path, recorder: Any) -> None:
    with runtime(tmp_path, ("bad", "nosuchplugin", {}), ("a", "recorder", {"url": "a"})) as rt:
        rt.state.init_sectors([AllocatedSector(sid(1), 8)])
        assert rt.sync.wait_idle(10)  # unavailable syncers do not count
        status = {s["name"]: s for s in rt.sync.status()}
        assert status["bad"]["state"] == "unavailable"
        assert (
            "[Common.Syncers[0]] (Name = 'bad'): no SyncSectorState plugin named 'nosuchplugin'"
            in (status["bad"]["last_error"])
        )
        assert "'recorder'" in status["bad"]["last_error"]  # lists what exists
        assert status["a"]["lag_events"] == 0
        with pytest.raises(SyncError, match="unavailable"):
            rt.sync.backfill("bad")
        with pytest.raises(SyncError, match="no syncer named 'nope'; syncers: 'bad', 'a', 'inline'"):
            rt.sync.retry_dead_letters("nope")


def test_poison_event_goes_to_dead_letters_others_continue_and_retry_delivers_it(
    tmp_path: Path, recorder: Any
) -> None:
    with runtime(
        tmp_path, ("a", "recorder", {"url": "a"}), ("b", "recorder", {"url": "b"}), kv="sqlkv"
    ) as rt:
        rec = plugin_module(rt, "recorder")
        rec.POISON["a"] = {str(sid(3))}
        sealing_run(rt.state, sectors=6, updates=3, finalize=False)
        assert rt.sync.wait_idle(30)
        status = {s["name"]: s for s in rt.sync.status()}
        # the init entry carrying sector 3 and its three updates each failed max_attempts times
        assert status["a"]["dead_letters"] == 4 and status["b"]["dead_letters"] == 0
        assert "poisoned sector s-t01000-3" in status["a"]["last_error"]
        letters = list(rt.sync.records.dead_letters("a"))
        assert all("RuntimeError: poisoned sector s-t01000-3" in d["error"] for d in letters)
        assert all(d["attempts"] == FAST.max_attempts for d in letters)
        rows = rec.read_rows("a")
        assert str(sid(3)) not in rows  # never delivered
        assert {k: v for k, v in kv_rows(rt.state).items() if k != str(sid(3))} == rows
        assert rec.read_rows("b") == kv_rows(rt.state)
        # still poisoned: retry delivers nothing and keeps the letters (with a new attempt count)
        assert rt.sync.retry_dead_letters("a") == 0
        assert [d["attempts"] for d in rt.sync.records.dead_letters("a")] == [FAST.max_attempts + 1] * 4
        rec.POISON["a"] = set()
        assert rt.sync.retry_dead_letters("a") == 4
        assert rt.sync.records.count_dead("a") == 0
        assert rec.read_rows("a") == kv_rows(rt.state)
        assert rt.sync.verify("a") == []
        assert rt.sync.retry_dead_letters("a") == 0  # delivered once, not again


def test_on_failure_stop_halts_the_syncer_at_the_event(tmp_path: Path, recorder: Any) -> None:
    settings = attrs.evolve(FAST, on_failure="stop")
    with runtime(
        tmp_path, ("a", "recorder", {"url": "a"}), ("b", "recorder", {"url": "b"}), settings=settings
    ) as rt:
        rec = plugin_module(rt, "recorder")
        rec.POISON["a"] = {str(sid(1))}
        rt.state.init_sectors([AllocatedSector(sid(0), 8), AllocatedSector(sid(1), 8)])
        rt.state.update(sid(0), removed=True)
        rt.state.update(sid(1), removed=True)
        rt.state.update(sid(0), abort_reason="x")
        assert not rt.sync.wait_idle(5)
        wait_for(lambda: rt.sync.dispatcher("a").state is DispatcherState.STOPPED, what="syncer a stops")
        status = {s["name"]: s for s in rt.sync.status()}
        assert status["a"]["cursor"] == 0 and status["a"]["dead_letters"] == 0  # stuck at the init entry
        assert status["b"]["lag_events"] == 0
        rec.POISON["a"] = set()
        assert rt.sync.retry_dead_letters("a") == 0  # resumes the syncer; nothing was dead-lettered
        assert rt.sync.wait_idle(10)
        assert rec.read_rows("a") == kv_rows(rt.state)


def test_sink_down_retries_without_dead_letters_then_catches_up(tmp_path: Path, recorder: Any) -> None:
    with runtime(tmp_path, ("a", "recorder", {"url": "a"}), ("b", "recorder", {"url": "b"})) as rt:
        rec = plugin_module(rt, "recorder")
        rec.DOWN["a"] = True
        sealing_run(rt.state, sectors=20, updates=10)
        head = rt.state.log.head()
        wait_for(lambda: rt.sync.dispatcher("b").cursor == head, what="b keeps up")
        wait_for(lambda: "sink a is down" in rt.sync.dispatcher("a").last_error, what="a reports its error")
        status = {s["name"]: s for s in rt.sync.status()}
        assert status["a"]["state"] == "retrying" and status["a"]["lag_events"] == head
        assert status["a"]["lag_seconds"] is not None and status["a"]["lag_seconds"] >= 0
        assert status["a"]["dead_letters"] == 0
        # A down sink retries a short batch; its backlog stays in the log, not in memory.
        from sectorhooks.sync.dispatcher import RETRY_BATCH

        assert RETRY_BATCH < FAST.batch_size
        assert rt.sync.dispatcher("a").read_limit <= RETRY_BATCH < rt.sync.dispatcher("b").read_limit
        rec.DOWN["a"] = False
        assert rt.sync.wait_idle(30)
        assert rec.read_rows("a") == kv_rows(rt.state)
        assert rt.sync.records.count_dead("a") == 0


def test_a_down_sink_is_retried_on_the_exponential_backoff_schedule(tmp_path: Path, recorder: Any) -> None:
    # The wait after failed attempt n is min(base * 2**(n-1), max) plus up to base of jitter.
    base, most = 0.05, 0.2
    settings = attrs.evolve(FAST, backoff_base=base, backoff_max=most)
    with runtime(tmp_path, ("a", "recorder", {"url": "a"}), settings=settings) as rt:
        rec = plugin_module(rt, "recorder")
        rec.DOWN["a"] = True
        rt.state.init_sectors([AllocatedSector(sid(0), 8)])
        wait_for(lambda: len(rec.FLUSHES.get("a", ())) >= 6, 30, what="six Flush attempts")
        rec.DOWN["a"] = False
        times = rec.FLUSHES["a"][:6]
        for n, (before, after) in enumerate(zip(times, times[1:]), start=1):
            wait = min(base * 2 ** (n - 1), most)
            assert wait <= after - before < wait + base + 1.0, (n, after - before)
        assert rt.sync.wait_idle(10)
        assert rt.sync.records.count_dead("a") == 0


def test_dispatcher_states_read_as_their_plain_strings(tmp_path: Path, recorder: Any) -> None:
    # JSON, `sync status` tables and states read back from the KV see the value, not the enum.
    for state in DispatcherState:
        assert (str(state), f"{state}", json.dumps(state)) == (state.value, state.value, f'"{state.value}"')
    with runtime(tmp_path, ("a", "recorder", {"url": "a"})) as rt:
        assert rt.sync.wait_idle(10)
        wait_for(lambda: rt.sync.dispatcher("a").state is DispatcherState.IDLE, what="a goes idle")
        row = {s["name"]: s for s in rt.sync.status()}["a"]
        assert json.loads(json.dumps(row))["state"] == "idle" and row["state"] == DispatcherState.IDLE


def test_stop_delivers_the_log_to_healthy_sinks_first_and_does_not_wait_for_a_down_one(
    tmp_path: Path, recorder: Any
) -> None:
    rt = runtime(tmp_path, ("slow", "recorder", {"url": "slow"}), ("down", "recorder", {"url": "down"}))
    try:
        rec = plugin_module(rt, "recorder")
        rec.SLOW["slow"] = 0.005  # each hook sleeps: the log is far from delivered when stop comes
        rec.DOWN["down"] = True
        sealing_run(rt.state, sectors=20, updates=10)
        head = rt.state.log.head()
        assert rt.sync.dispatcher("slow").cursor < head
        wait_for(
            lambda: rt.sync.dispatcher("down").state is DispatcherState.RETRYING, what="the down sink retries"
        )
        started = time.monotonic()
        rt.sync.stop(timeout=60)
        assert time.monotonic() - started < 30  # the down sink was not waited for
        assert rt.sync.dispatcher("slow").cursor == head
        assert rec.read_rows("slow") == kv_rows(rt.state)
        saved = rt.sync.records.cursor("slow")
        assert saved is not None and saved["seq"] == head  # and its cursor saved on the way out
        assert rt.sync.dispatcher("down").cursor < head  # its backlog stays in the log
    finally:
        rt.close()


def test_rejected_changes_become_dead_letters_exactly(tmp_path: Path, recorder: Any) -> None:
    with runtime(tmp_path, ("a", "recorder", {"url": "a"})) as rt:
        rec = plugin_module(rt, "recorder")
        rec.REJECT["a"] = {(str(sid(2)), 2)}
        rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(4)])
        for n in range(4):
            rt.state.update(sid(n), removed=True)
        assert rt.sync.wait_idle(10)
        (letter,) = rt.sync.records.dead_letters("a")
        assert letter["changes"] == [[str(sid(2)), 2]]
        assert "CHECK constraint failed" in letter["error"]
        assert rec.read_rows("a")[str(sid(2))][0] == 1 and rec.read_rows("a")[str(sid(3))][0] == 2
        rec.REJECT["a"] = set()
        assert rt.sync.retry_dead_letters("a") == 1
        assert rec.read_rows("a") == kv_rows(rt.state)


def test_log_is_trimmed_below_the_slowest_cursor(tmp_path: Path, recorder: Any) -> None:
    with runtime(
        tmp_path, ("a", "recorder", {"url": "a"}), ("b", "recorder", {"url": "b"}), trim_interval=0.05
    ) as rt:
        rec = plugin_module(rt, "recorder")
        rec.DOWN["b"] = True
        sealing_run(rt.state, sectors=10, updates=5, finalize=False)
        head = rt.state.log.head()
        wait_for(lambda: rt.sync.dispatcher("a").cursor == head, what="a catches up")
        rt.sync.trim()
        assert rt.state.log.bounds() == (1, head)  # b still needs everything
        rec.DOWN["b"] = False
        assert rt.sync.wait_idle(20)
        wait_for(lambda: rt.state.log.bounds()[0] == head + 1, what="the trimmer empties the log")
        assert rt.state.log.peek(1) is None and rt.state.log.peek(head) is None
        rt.state.update(sid(0), removed=True)  # seq keeps counting after a trim
        assert rt.sync.wait_idle(10)
        assert rt.state.log.head() == head + 1
        assert rec.read_rows("a") == rec.read_rows("b") == kv_rows(rt.state)


def test_new_syncer_after_the_log_was_trimmed_is_backfilled(tmp_path: Path, recorder: Any) -> None:
    config = make_config(
        tmp_path, syncers=[("a", "recorder", {"url": "a"})], kv="sqlkv", plugins=("recorder",)
    )
    with open_runtime(config) as rt:
        sealing_run(rt.state, sectors=12, updates=3)
        assert rt.sync.wait_idle(10)
        rt.sync.trim()
        assert rt.state.log.bounds()[0] > 1
    config2 = attrs.evolve(
        config,
        syncers=(
            *config.syncers,
            *make_config(tmp_path, syncers=[("late", "recorder", {"url": "late"})]).syncers,
        ),
    )
    with open_runtime(config2) as rt:
        assert rt.sync.wait_idle(20)
        rt.state.update(sid(1), latest_state=LatestState("after"))
        assert rt.sync.wait_idle(10)
        rec = plugin_module(rt, "recorder")
        assert rec.read_rows("late") == kv_rows(rt.state)
        assert rt.sync.verify("late") == []


def test_backfill_rebuilds_a_wiped_sink_and_delivery_goes_on(tmp_path: Path, recorder: Any) -> None:
    with runtime(tmp_path, ("a", "recorder", {"url": "a"})) as rt:
        rec = plugin_module(rt, "recorder")
        sealing_run(rt.state, sectors=15, updates=2)
        assert rt.sync.wait_idle(10)
        rec.ROWS["a"].clear()  # the sink's database was rebuilt
        diffs = rt.sync.verify("a")
        assert len(diffs) == 15 and all("missing in the sink" in d for d in diffs)
        assert rt.sync.backfill("a") == 15
        assert rt.sync.verify("a") == []
        rt.state.update(sid(3), latest_state=LatestState("later"))
        assert rt.sync.wait_idle(10)
        assert rt.sync.verify("a") == []


def test_verify_reports_stale_extra_and_different_rows(tmp_path: Path, recorder: Any) -> None:
    with runtime(tmp_path, ("a", "recorder", {"url": "a"})) as rt:
        rec = plugin_module(rt, "recorder")
        rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(3)])
        rt.state.update(sid(0), removed=True)
        assert rt.sync.wait_idle(10)
        rows = rec.ROWS["a"]
        rows[str(sid(0))] = (1, *rows[str(sid(0))][1:])
        v, sj, ws = rows[str(sid(1))]
        rows[str(sid(1))] = (v, sj.replace('"abort_reason":""', '"abort_reason":"x"'), ws)
        rows["s-t09-9"] = (1, "{}", "online")
        assert rt.sync.verify("a") == [
            "s-t01000-0: sink has version 1, KV has 2",
            "s-t01000-1: version 1 differs in field(s) abort_reason",
            "s-t09-9: in the sink (version 1) but not in the KV",
        ]
        with pytest.raises(SyncError, match="not supported for syncer 'inline': plugin 'inline' has no"):
            rt.sync.verify("inline")


def test_status_without_running_dispatchers_reads_the_kv(tmp_path: Path, recorder: Any) -> None:
    syncers = [("a", "recorder", {"url": "a"}), ("bad", "nope", {})]
    config = make_config(tmp_path, syncers=syncers, kv="sqlkv", plugins=("recorder",))
    with open_runtime(config) as rt:
        rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(3)])
        assert rt.sync.wait_idle(10)
        rt.sync.stop()
        rt.state.update(sid(0), removed=True)
        rt.state.update(sid(1), removed=True)
    with open_runtime(config, start_sync=False) as rt:  # what the CLI opens
        s, bad = rt.sync.status()
        # the host that delivered it stopped: no live host runs it, whatever its cursor record says
        assert (s["cursor"], s["head"], s["lag_events"], s["state"]) == (1, 3, 2, "stopped")
        assert s["host"] is None and s["last_host"] is not None
        assert s["lag_seconds"] is not None and s["lag_seconds"] >= 0
        assert bad["state"] == "unavailable" and "no SyncSectorState plugin named 'nope'" in bad["last_error"]


def test_sync_retry_from_another_process_resumes_a_stopped_syncer(tmp_path: Path, recorder: Any) -> None:
    settings = attrs.evolve(FAST, on_failure="stop")
    config = make_config(tmp_path, syncers=[("a", "recorder", {"url": "a"})], kv="sqlkv", settings=settings)
    with open_runtime(config) as host:
        rec = plugin_module(host, "recorder")
        rec.POISON["a"] = {str(sid(1))}
        host.state.init_sectors([AllocatedSector(sid(0), 8)])
        host.state.init_sectors([AllocatedSector(sid(1), 8)])
        host.state.update(sid(0), removed=True)
        wait_for(
            lambda: host.sync.dispatcher("a").state is DispatcherState.STOPPED,
            what="a stops at sector 1's init",
        )
        with open_runtime(config, start_sync=False) as cli:  # what `sectorhooks sync retry a` opens
            (s,) = cli.sync.status()
            assert s["state"] == "stopped" and "poisoned sector s-t01000-1" in s["last_error"]
            rec.POISON["a"] = set()
            assert cli.sync.retry_dead_letters("a") == 0
        wait_for(
            lambda: host.sync.dispatcher("a").state is not DispatcherState.STOPPED,
            what="the host notices the resume",
        )
        assert host.sync.wait_idle(20)
        assert rec.read_rows("a") == kv_rows(host.state)
