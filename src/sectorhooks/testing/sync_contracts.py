"""The SyncSectorState delivery suite: what a syncer plugin sees, and what its sink must end with.

The plugin under test is one syncer instance (``contract``, Meta from ``--sectorhooks-meta``) of
a real runtime on the bundled memdb KV; its hooks run in the test's thread and the dispatcher is
stepped by the test. The suite watches each hook call (a thin wrapper around the plugin's impl)
and, when the plugin exports ``ReadBack``, compares its sink with the KV (``sync verify``): a
plugin without it is still checked for what it was given and how it answered, and the report
says its sink could not be compared.

Contracts: every event kind is accepted; events arrive in order per sector; replays (the same
events delivered again, as after a crash) are harmless; an event whose hook raises is
dead-lettered alone and the rest is delivered.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from sectorhooks.changelog import Event
from sectorhooks.errors import SyncError
from sectorhooks.host import PluginImpl
from sectorhooks.runtime import Runtime
from sectorhooks_spec.sector import AllocatedSector, LatestState, SectorID, SectorState

from .target import SYNCER

MINER = 1000
POISON = "POISONED-BY-THE-SUITE"
Call = Tuple[str, str, int]  # (hook, sector, version)


def sid(n: int) -> SectorID:
    return SectorID(MINER, n)


def watch(rt: Runtime, before: Optional[Callable[[str, List[Any]], None]] = None) -> List[Call]:
    """Wrap each event hook of the syncer under test: every call is recorded (hook, sector,
    version) and ``before(hook, states)`` may raise in the plugin's place. Install before the
    first step (the runner looks its hooks up once)."""
    d = rt.sync.dispatcher(SYNCER)
    calls: List[Call] = []
    for hook, impl in list(d.syncer.impls.items()):
        if hook == "sync_flush" or not hook.startswith("sync_on_"):
            continue
        extra = "states" if hook == "sync_on_init" else "state"

        def wrapper(*args: Any, _impl: PluginImpl = impl, _hook: str = hook) -> Any:
            n = len(_impl.argnames)
            got = args[n]
            states = list(got) if isinstance(got, (list, tuple)) else [got]
            calls.extend((_hook, str(s.id), s.version) for s in states)
            if before is not None:
                before(_hook, states)
            return _impl.function(*args[:n])

        d.syncer.impls[hook] = PluginImpl(impl.plugin, hook, wrapper, (*impl.argnames, extra))
    d.load_cursor()
    return calls


def deliver_all(rt: Runtime) -> None:
    """Step the syncer's dispatcher until its cursor is at the log's head."""
    d = rt.sync.dispatcher(SYNCER)
    head = rt.state.log.head()
    for _ in range(10_000):
        if d.cursor >= head:
            return
        d.step()
    pytest.fail(f"the dispatcher never reached the log head {head} (cursor {d.cursor}): {d.last_error}")


def workload(rt: Runtime, poison: Optional[int] = None) -> None:
    """Every event kind: init, import, updates, finalize, restore (and a poisoned update of
    sector ``poison`` followed by a good one, when asked)."""
    state = rt.state
    state.init_sectors([AllocatedSector(sid(n), 8) for n in range(4)])
    state.import_sector(SectorState(sid(10), version=3))
    for step in range(3):
        for n in range(4):
            state.update(sid(n), latest_state=LatestState(f"S{step}", event=f"ev{step}"))
            if poison == n and step == 1:
                state.update(sid(n), latest_state=LatestState(POISON))
    state.finalize(sid(0))
    state.restore(sid(0))
    state.update(sid(10), latest_state=LatestState("after-import"))


def dead_letters(rt: Runtime) -> List[Dict[str, Any]]:
    return list(rt.sync.records.dead_letters(SYNCER))


def sink_differences(rt: Runtime) -> Optional[List[str]]:
    """``sync verify`` of the syncer under test (``[]``: its sink equals the KV), or ``None``
    when the plugin cannot be read back (it exports no ``ReadBack``)."""
    try:
        return rt.sync.verify(SYNCER)
    except SyncError as exc:
        if type(exc).__name__ == "SinkUnverifiable" or "not supported" in str(exc):
            return None
        raise


def check_sink(rt: Runtime, request: pytest.FixtureRequest) -> None:
    diffs = sink_differences(rt)
    if diffs is None:
        request.node.user_properties.append(("sink", "not compared: the plugin exports no ReadBack"))
        return
    assert diffs == [], "the sink differs from the KV:\n" + "\n".join(diffs[:20])


def test_every_event_kind_is_accepted(sectorhooks_runtime: Runtime, request: pytest.FixtureRequest) -> None:
    rt = sectorhooks_runtime
    calls = watch(rt)
    workload(rt)
    deliver_all(rt)
    letters = dead_letters(rt)
    assert letters == [], f"events were dead-lettered: {[(x['seq'], x['error']) for x in letters]}"
    kinds = {hook for hook, _, _ in calls}
    implemented = {h for h in rt.sync.dispatcher(SYNCER).syncer.impls if h.startswith("sync_on_")}
    assert kinds == implemented, f"hooks never called: {sorted(implemented - kinds)}"
    check_sink(rt, request)


def test_events_arrive_in_order_per_sector(
    sectorhooks_runtime: Runtime, request: pytest.FixtureRequest
) -> None:
    rt = sectorhooks_runtime
    calls = watch(rt)
    workload(rt)
    deliver_all(rt)
    last: Dict[str, int] = {}
    for hook, sector, version in calls:
        assert version > last.get(sector, 0), f"{hook} of {sector} version {version} after {last[sector]}"
        last[sector] = version
    want = {str(s.id): s.version for s in rt.state.list()}
    assert last == want, "the newest version each sector was given is not the KV's"
    check_sink(rt, request)


def test_replays_are_harmless(sectorhooks_runtime: Runtime, request: pytest.FixtureRequest) -> None:
    rt = sectorhooks_runtime
    calls = watch(rt)
    workload(rt)
    deliver_all(rt)
    first = len(calls)
    d = rt.sync.dispatcher(SYNCER)
    head = d.cursor
    old = [Event(seq, raw) for seq, raw in rt.state.log.read(0, head // 2)]
    _, failed = d.deliver_now(old)  # an old batch delivered again, out of band
    assert failed == {}, f"a replayed event failed: {failed}"
    d.cursor = 0  # as after a crash before the cursor was saved: everything again
    deliver_all(rt)
    assert len(calls) > first, "nothing was delivered again"
    assert dead_letters(rt) == []
    check_sink(rt, request)


def test_a_raising_event_is_dead_lettered_alone(
    sectorhooks_runtime: Runtime, request: pytest.FixtureRequest
) -> None:
    rt = sectorhooks_runtime

    def poison(hook: str, states: List[Any]) -> None:
        if any(getattr(s.latest_state, "state", None) == POISON for s in states):
            raise RuntimeError(f"{POISON}: this event's hook raises")

    calls = watch(rt, poison)
    workload(rt, poison=2)
    deliver_all(rt)
    letters = dead_letters(rt)
    assert len(letters) == 1, f"want exactly the poisoned event dead-lettered, got {len(letters)}"
    assert POISON in letters[0]["error"]
    # Every event after the poisoned one reached the plugin, sector 2's later updates included.
    delivered = {(sector, version) for _, sector, version in calls}
    for s in rt.state.list():
        assert (str(s.id), s.version) in delivered, f"{s.id} version {s.version} was never delivered"
    check_sink(rt, request)
