"""Random histories delivered at least once (re-delivered, duplicated, late) end as the last state."""

from __future__ import annotations

import uuid
from typing import Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sectorhooks.host import PluginHost
from sectorhooks_spec import LatestState, SectorState, Workspace, dumps
from sqlsync.sqlsynckit import Feeder, evolve, expected, state

KINDS = ("import", "init", "update", "finalize", "restore")
NAMES = ("PC1Done", "PC2Done", "WaitSeed", "C2Done", "Finalized")
Change = Tuple[str, SectorState, Workspace]


@st.composite
def histories(draw: st.DrawFn) -> List[Change]:
    """What a state manager logs: every change bumps its sector's version by one."""
    current: Dict[int, Tuple[SectorState, Workspace]] = {}
    log: List[Change] = []
    for _ in range(draw(st.integers(1, 30))):
        number = draw(st.integers(0, 4))
        reason = draw(st.text(max_size=6))
        name = draw(st.sampled_from(NAMES))
        if number not in current:
            kind = draw(st.sampled_from(("import", "init")))
            ws = draw(st.sampled_from(list(Workspace))) if kind == "import" else Workspace.ONLINE
            s = state(number, 1, name, abort_reason=reason)
        else:
            old, ws = current[number]
            kind = draw(st.sampled_from(KINDS))
            ws = {"finalize": Workspace.OFFLINE, "restore": Workspace.ONLINE}.get(kind, ws)
            s = evolve(old, latest_state=LatestState(name), abort_reason=reason)
        current[number] = (s, ws)
        log.append((kind, s, ws))
    return log


@st.composite
def deliveries(draw: st.DrawFn, log: List[Change]) -> List[List[Change]]:
    """Batches as an at-least-once dispatcher sends them: from a cursor that sometimes falls back
    (a crash before the cursor moved), with duplicated events and stale batches sent late."""
    batches: List[List[Change]] = []
    cursor = 0
    for _ in range(60):
        if cursor >= len(log):
            break
        end = min(len(log), cursor + draw(st.integers(1, 6)))
        batch = log[cursor:end]
        if draw(st.booleans()):
            batch = batch + draw(st.lists(st.sampled_from(batch), max_size=3))
        batches.append(batch)
        if draw(st.integers(0, 3)) == 0:
            cursor = max(0, end - draw(st.integers(1, 5)))  # re-delivered from an older cursor
        else:
            cursor = end
        if draw(st.integers(0, 4)) == 0:  # a stale batch arriving late
            i = draw(st.integers(0, end - 1))
            batches.append(log[i : draw(st.integers(i + 1, end))])
    if cursor < len(log):
        batches.append(log[cursor:])
    return batches


def _check(f: Feeder, log: List[Change]) -> None:
    pg = f.url.startswith("postgresql")
    assert f.rows() == expected([s for _, s, _ in log])
    last = {str(s.id): (s, ws) for _, s, ws in log}  # log order is version order per sector
    cols = f.columns()
    got = {k: (c["version"], c["workspace"], c["state_name"], c["abort_reason"]) for k, c in cols.items()}
    nul = "\ufffd" if pg else "\x00"  # PostgreSQL text cannot hold NUL
    want = {
        k: (s.version, ws.value, s.state_name, s.abort_reason.replace("\x00", nul))
        for k, (s, ws) in last.items()
    }
    assert got == want
    assert f.events() == {(str(s.id), s.version): (kind, ws.value, dumps(s)) for kind, s, ws in log}


def _run(feeder: Feeder, data: st.DataObject) -> None:
    with feeder as f:
        log = data.draw(histories(), label="log")
        for batch in data.draw(deliveries(log), label="batches"):
            for kind, s, ws in batch:
                f.send(kind, s, ws)
            f.flush()
        _check(f, log)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_sqlite_sink_ends_equal_to_the_last_state_whatever_the_delivery(host: PluginHost, tmp_path, data):
    _run(Feeder(host, f"sqlite:///{tmp_path / uuid.uuid4().hex}.sqlite", batch_size=3), data)


@pytest.fixture(params=["postgresql", "mariadb"])
def server_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("pg_database" if request.param == "postgresql" else "mysql_database")[0]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_server_sinks_end_equal_to_the_last_state_whatever_the_delivery(host: PluginHost, server_url, data):
    _run(Feeder(host, server_url, table_prefix=f"h{uuid.uuid4().hex[:8]}_"), data)
