"""At-least-once, any way it happens: random histories, re-delivered and duplicated batches,
and every sink still ends equal to the last state (the version guard never lets it go back)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, List, Tuple

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sectorhooks.changelog import Event
from sectorhooks.errors import SectorNotFound, SectorStateError
from sectorhooks_spec import AllocatedSector, LatestState, SectorState, Ticket
from sync.helpers import FAST, kv_rows, make_config, open_runtime, plugin_module, sid
from sync.sinks import field_differences

N = 5  # sectors 0..4

changes = st.one_of(
    st.tuples(st.just("init"), st.lists(st.integers(0, N - 1), min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("import"), st.integers(0, N - 1), st.booleans(), st.booleans(), st.integers(0, 20)),
    st.tuples(st.just("update"), st.integers(0, N - 1), st.text("ABC", max_size=3), st.integers(0, 99)),
    st.tuples(st.just("finalize"), st.integers(0, N - 1)),
    st.tuples(st.just("restore"), st.integers(0, N - 1)),
)
deliveries = st.one_of(
    st.tuples(st.just("step"), st.integers(1, 7)),  # the dispatcher's own round: hooks, Flush, cursor
    st.tuples(st.just("rewind"), st.integers(1, 6)),  # crashed before the cursor write: re-delivery
    st.tuples(st.just("dup"), st.integers(1, 6)),  # an old batch delivered again, out of band
)
histories = st.lists(st.one_of(changes, deliveries), min_size=1, max_size=40)


def apply(rt: Any, op: Tuple[Any, ...]) -> None:
    kind = op[0]
    try:
        if kind == "init":
            rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in op[1]])
        elif kind == "import":
            _, n, override, finalized, version = op
            rt.state.import_sector(
                SectorState(sid(n), finalized=finalized, version=version), override=override
            )
        elif kind == "update":
            _, n, name, epoch = op
            rt.state.update(sid(n), latest_state=LatestState(name), ticket=Ticket("ab", epoch))
        elif kind == "finalize":
            rt.state.finalize(sid(op[1]))
        else:
            rt.state.restore(sid(op[1]))
    except (SectorStateError, SectorNotFound):
        pass  # refused changes write nothing; the history goes on


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories)
def test_any_history_with_redelivery_leaves_every_sink_equal_to_the_last_state(history: List[Any]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sh-redeliver-"))
    try:
        url = f"sqlite:///{tmp / 'mirror.sqlite'}"
        config = make_config(
            tmp,
            syncers=[("sql", "sqlsync", {"url": url}), ("rec", "recorder", {"url": "rec"})],
            plugins=("sqlsync", "recorder"),
        )
        with open_runtime(config, start_sync=False) as rt:
            plugin_module(rt, "recorder").reset()
            dispatchers = [rt.sync.dispatcher("sql"), rt.sync.dispatcher("rec")]
            for d in dispatchers:
                d.load_cursor()
            for op in history:
                if op[0] in ("step", "rewind", "dup"):
                    for d in dispatchers:
                        deliver(rt, d, op)
                else:
                    apply(rt, op)
            head = rt.state.log.head()
            for d in dispatchers:
                d.settings = FAST
                while d.cursor < head:
                    d.step()
            assert plugin_module(rt, "recorder").read_rows("rec") == kv_rows(rt.state)
            assert rt.sync.verify("sql") == []
            if rt.state.list():
                assert field_differences(url, rt.state) == []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def deliver(rt: Any, d: Any, op: Tuple[str, int]) -> None:
    kind, k = op
    if kind == "step":
        d.settings = attrs.evolve(FAST, batch_size=k)
        d.step()
    elif kind == "rewind":
        d.cursor = max(0, d.cursor - k)
    else:
        start = max(0, d.cursor - k)
        events = [Event(seq, raw) for seq, raw in rt.state.log.read(start, d.cursor - start)]
        if events:
            _, failed = d.deliver_now(events)
            assert failed == {}
