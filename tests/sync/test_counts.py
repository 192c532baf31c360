"""Kept sector counts (``sectors/counts``): equal to a full recount after any sequence of changes,
on the transaction path and on sqlkv's guarded-put fast path, across writers, after an upgrade
from a KV without counts, and ``sectors recount`` reports and fixes a corrupted count."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kv import kvplugins
from sectorhooks import liveness
from sectorhooks.cli import run
from sectorhooks.config import load_config
from sectorhooks.errors import SectorhooksError
from sectorhooks.runtime import Runtime
from sectorhooks.state import COLLECTIONS, SectorStateManager
from sectorhooks.state.counts import COUNTS, MARKER, Counts, count, read, row_key
from sectorhooks.state.scan import iter_sectors
from sectorhooks_spec import AllocatedSector, LatestState, SectorID, SectorState, Workspace, dumps
from sync.helpers import toml_config

MINERS = (1, 1000)
NUMBERS = range(6)
NAMES = ("", "PC1", "PC2", "C2")
SIDS = st.builds(SectorID, st.sampled_from(MINERS), st.sampled_from(NUMBERS))


def open_kv(kind: str, where: Path) -> Any:
    meta: Dict[str, Any] = {"url": f"sqlite:///{where / 'kv.sqlite3'}"} if kind == "sqlkv" else {}
    return kvplugins.open_store(kind, meta)


def recounted(kv: Any) -> Counts:
    """A full count of the stored sectors, independent of the manager."""
    with contextlib.closing(iter_sectors(kv)) as records:
        return count((r.workspace, r.sector_id.miner, r.raw) for r in records)


def kept(kv: Any) -> Optional[Counts]:
    return kv.view(read)  # type: ignore[no-any-return]


def latest(name: str) -> Optional[LatestState]:
    return LatestState(name) if name else None


def refused(fn: Callable[[], Any]) -> None:
    """Run a change that may be refused (sector missing, exists, wrong workspace)."""
    try:
        fn()
    except SectorhooksError:
        pass


class CountsMachine(RuleBasedStateMachine):
    """Random changes through one manager (and now and then a second one on the same KV, as a
    second host would), in single calls and in groups; the kept counts equal a recount after each."""

    kind = "memdb"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="counts-"))
        self.kv = open_kv(self.kind, self.dir)
        self.state = SectorStateManager(self.kv)
        self.fast = self.state.guarded_put
        self.fast_puts = 0  # guarded puts that wrote counts
        if self.fast is not None:
            self.wrap_fast()
        self.other: Optional[SectorStateManager] = None

    def teardown(self) -> None:
        self.state.close()
        if self.other is not None:
            self.other.close()
        self.kv.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def changes(self, m: SectorStateManager, data: st.DataObject) -> Callable[[], Any]:
        sid = data.draw(SIDS)
        kind = data.draw(
            st.sampled_from(["init", "update", "update", "touch", "finalize", "restore", "import"])
        )
        if kind == "init":
            more = data.draw(st.lists(SIDS, max_size=3, unique=True))
            ids = [sid, *(s for s in more if s != sid)]
            return lambda: m.init_sectors([AllocatedSector(i, 8) for i in ids])
        if kind == "update":
            name = data.draw(st.sampled_from(NAMES))
            return lambda: m.update(sid, latest_state=latest(name))
        if kind == "touch":  # a field that moves no count
            return lambda: m.update(sid, need_rebuild=True)
        if kind == "finalize":
            return lambda: m.finalize(sid)
        if kind == "restore":
            return lambda: m.restore(sid)
        name, finalized = data.draw(st.sampled_from(NAMES)), data.draw(st.booleans())
        ws = data.draw(st.sampled_from([None, Workspace.ONLINE, Workspace.OFFLINE]))
        state = SectorState(sid, sector_type=8, latest_state=latest(name), finalized=finalized)
        return lambda: m.import_sector(state, override=True, workspace=ws)

    @rule(data=st.data())
    def one_change(self, data: st.DataObject) -> None:
        refused(self.changes(self.state, data))

    @rule(data=st.data(), n=st.integers(2, 6))
    def one_group(self, data: st.DataObject, n: int) -> None:
        """Several changes (the same sector possibly more than once) in one group commit."""
        calls = [self.changes(self.state, data) for _ in range(n)]
        threads = [threading.Thread(target=refused, args=(c,)) for c in calls]
        with self.state.hold_commits():
            for t in threads:
                t.start()
            while self.state.queued < n:
                threading.Event().wait(0.001)
        for t in threads:
            t.join(30)
            assert not t.is_alive()

    @rule(data=st.data())
    def another_host_changes(self, data: st.DataObject) -> None:
        """A second manager on the same KV: this one's cache (states and counts) goes stale."""
        if self.other is None:
            self.other = SectorStateManager(self.kv)
        refused(self.changes(self.other, data))

    @rule(on=st.booleans())
    def fast_path(self, on: bool) -> None:
        """Groups written by the guarded put (sqlkv) or all through ``update``."""
        if self.fast is not None:
            if on:
                self.wrap_fast()
            else:
                self.state.guarded_put = None

    def wrap_fast(self) -> None:
        """The store's guarded put, counting the puts that wrote counts."""
        real, outer = self.fast, self
        assert real is not None

        class Counting:
            def put_many_if(self, guard: Any, items: Sequence[Tuple[str, bytes, bytes]]) -> bool:
                ok = real.put_many_if(guard, items)
                if ok and any(c == COUNTS for c, _, _ in items):
                    outer.fast_puts += 1
                return ok

        self.state.guarded_put = Counting()

    @invariant()
    def kept_counts_equal_a_recount(self) -> None:
        got = kept(self.kv)
        if got is None:  # nothing committed yet: the counts are built with the first group
            return
        assert got == recounted(self.kv)
        assert self.state.state_counts() == recounted(self.kv).by_state()


class MemdbCounts(CountsMachine):
    kind = "memdb"


class SqliteCounts(CountsMachine):
    kind = "sqlkv"


STATEFUL = settings(
    max_examples=25, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck)
)
TestMemdbCounts = MemdbCounts.TestCase
TestMemdbCounts.settings = STATEFUL
TestSqliteCounts = SqliteCounts.TestCase
TestSqliteCounts.settings = STATEFUL


@pytest.fixture(params=["memdb", "sqlkv"])
def kv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store = open_kv(request.param, tmp_path)
    try:
        yield store
    finally:
        store.close()


def write_behind(kv: Any, states: Dict[SectorState, Workspace]) -> None:
    """Store states as a version that kept no counts wrote them (no manager, no counts)."""

    def fn(t: Any) -> None:
        for s, ws in states.items():
            t.collection(COLLECTIONS[ws]).put(s.id.key.encode(), dumps(s).encode())

    kv.update(fn)


def test_counts_per_workspace_miner_and_state_name(kv: Any) -> None:
    state = SectorStateManager(kv)
    state.init_sectors([AllocatedSector(SectorID(m, n), 8) for m in (1, 2) for n in range(3)])
    state.update(SectorID(1, 0), latest_state=LatestState("PC1"))
    state.update(SectorID(2, 0), latest_state=LatestState("PC1"))
    state.finalize(SectorID(2, 1))
    counts = state.counts()
    assert counts.by_state() == {"": 4, "PC1": 2} == state.state_counts()
    assert counts.by_workspace() == {"online": 5, "offline": 1}
    assert counts.by_miner() == {1: 3, 2: 3}
    assert counts.total == 6 and counts == recounted(kv)
    assert counts.as_json()["cells"][0] == {"workspace": "offline", "miner": 2, "state": "", "count": 1}


def test_state_counts_reads_the_kept_counts_not_the_sectors(kv: Any) -> None:
    state = SectorStateManager(kv)
    state.init_sectors([AllocatedSector(SectorID(1, n), 8) for n in range(3)])
    state.update(SectorID(1, 2), latest_state=LatestState("PC2"))
    # a stored state nobody can decode: a scan of the sectors would fail on it
    kv.update(
        lambda t: t.collection(COLLECTIONS[Workspace.ONLINE]).put(SectorID(1, 0).key.encode(), b"{not json")
    )
    assert state.state_counts() == {"": 2, "PC2": 1}


def test_a_kv_without_counts_gets_them_built_once_logged(kv: Any, caplog: pytest.LogCaptureFixture) -> None:
    old = {
        SectorState(SectorID(7, n), 8, latest_state=latest(NAMES[n % 3])): Workspace.ONLINE for n in range(5)
    }
    old[SectorState(SectorID(7, 9), 8, finalized=True)] = Workspace.OFFLINE
    write_behind(kv, old)
    assert kept(kv) is None
    state = SectorStateManager(kv)
    with caplog.at_level(logging.WARNING, logger="sectorhooks.state.manager"):
        assert state.state_counts() == {"": 3, "PC1": 2, "PC2": 1}
    assert [r.getMessage() for r in caplog.records if "kept no sector counts" in r.getMessage()]
    assert "full scan of 6 sectors" in caplog.text
    caplog.clear()
    assert kv.view(lambda t: t.collection(COUNTS).peek(MARKER)) is not None
    state.update(SectorID(7, 0), latest_state=LatestState("C2"))
    assert state.state_counts() == {"": 2, "PC1": 2, "PC2": 1, "C2": 1} and not caplog.records
    assert kept(kv) == recounted(kv)


def test_the_first_change_on_a_kv_without_counts_builds_them_first(kv: Any) -> None:
    write_behind(kv, {SectorState(SectorID(7, n), 8): Workspace.ONLINE for n in range(4)})
    state = SectorStateManager(kv)
    state.update(SectorID(7, 1), latest_state=LatestState("PC1"))
    state.init_sectors([AllocatedSector(SectorID(7, 10), 8)])
    assert kept(kv) == recounted(kv)
    assert kept(kv).by_state() == {"": 4, "PC1": 1}  # type: ignore[union-attr]


def test_the_guarded_put_fast_path_writes_each_touched_count_row_once(tmp_path: Path) -> None:
    kv = open_kv("sqlkv", tmp_path)
    try:
        state = SectorStateManager(kv)
        real = state.guarded_put
        assert real is not None
        puts: List[List[Tuple[str, bytes, bytes]]] = []

        class Recording:
            def put_many_if(self, guard: Any, items: Sequence[Tuple[str, bytes, bytes]]) -> bool:
                puts.append(list(items))
                return real.put_many_if(guard, items)  # type: ignore[union-attr]

        state.guarded_put = Recording()
        state.init_sectors([AllocatedSector(SectorID(m, n), 8) for m in (1, 2) for n in range(4)])
        for n in range(4):  # the first touches of a count row read it: update() does
            state.update(SectorID(1, n), latest_state=LatestState("PC1"))
        puts.clear()
        state.update(SectorID(1, 0), latest_state=LatestState("PC2"))  # to a state no sector had
        state.update(SectorID(1, 1), latest_state=LatestState("PC1"))  # no move: no count written
        threads = [
            threading.Thread(
                target=state.update, args=(SectorID(1, n),), kwargs={"latest_state": LatestState("C2")}
            )
            for n in (2, 3)
        ]
        with state.hold_commits():  # both in one group: the row written once
            for t in threads:
                t.start()
            while state.queued < 2:
                threading.Event().wait(0.001)
        for t in threads:
            t.join(10)
        rows = [[(k, json.loads(v)) for c, k, v in items if c == COUNTS] for items in puts]
        online_1 = row_key((Workspace.ONLINE, 1))
        assert rows == [
            [(online_1, {"PC1": 3, "PC2": 1})],
            [],
            [(online_1, {"C2": 2, "PC1": 1, "PC2": 1})],
        ]
        assert kept(kv) == recounted(kv)
    finally:
        kv.close()


def test_a_second_writer_on_the_kv_never_makes_the_first_write_stale_counts(kv: Any) -> None:
    a, b = SectorStateManager(kv), SectorStateManager(kv)
    a.init_sectors([AllocatedSector(SectorID(1, n), 8) for n in range(3)])
    a.update(SectorID(1, 0), latest_state=LatestState("PC1"))  # a's cache holds online/1
    b.update(SectorID(1, 1), latest_state=LatestState("PC1"))  # behind a's back
    a.update(SectorID(1, 2), latest_state=LatestState("PC1"))
    assert kept(kv) == recounted(kv) and a.state_counts() == {"PC1": 3}


# --- sectors recount ------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A host config (sqlkv on SQLite, no syncers) and 6 sectors in 3 states, one finalized."""
    path = toml_config(tmp_path / "host.toml", tmp_path / "data", [], plugins=())
    with Runtime.open(load_config(path), start_sync=False, filestores=False, registry=False) as rt:
        rt.state.init_sectors([AllocatedSector(SectorID(1000, n), 8) for n in range(6)])
        for n in range(3):
            rt.state.update(SectorID(1000, n), latest_state=LatestState("PC1" if n else "C2"))
        rt.state.finalize(SectorID(1000, 0))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Tuple[int, str]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr()
    return code, out.out if "--json" in args else out.out + out.err


def corrupt(path: Path) -> None:
    """Set online/1000's row to a wrong count, as a bug or a hand edit would."""
    with Runtime.open(load_config(path), start_sync=False, filestores=False, registry=False) as rt:
        key = row_key((Workspace.ONLINE, 1000))
        rt.kv.update(lambda t: t.collection(COUNTS).put(key, b'{"":3,"PC1":2,"PC3":1}'))


def test_recount_reports_and_fixes_a_corrupted_count(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = cli(capsys, "sectors", "recount", "--config", str(config))
    assert code == 0 and "equal a full count of 6 sectors" in out
    corrupt(config)
    code, out = cli(capsys, "sectors", "recount", "--config", str(config), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["fixed"] and not doc["equal"] and doc["sectors"] == 6
    assert doc["differences"] == [
        {"workspace": "online", "miner": 1000, "state": "PC3", "kept": 1, "counted": 0}
    ]
    assert doc["counts"]["states"] == {"C2": 1, "": 3, "PC1": 2}
    code, out = cli(capsys, "sectors", "recount", "--config", str(config))
    assert code == 0, out


def test_recount_prints_the_cells_that_differ(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corrupt(config)
    code, out = cli(capsys, "sectors", "recount", "--config", str(config))
    assert code == 1
    assert "PC3" in out and "fixed: the kept counts now equal the count of 6 sectors" in out


def test_recount_only_compares_while_a_host_serves_the_kv(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt(config)
    with Runtime.open(load_config(config), start_sync=False, filestores=False, registry=False) as rt:
        beat = liveness.Heartbeat(rt.kv, lambda: {})
        beat.beat()
        try:
            code, out = cli(capsys, "sectors", "recount", "--config", str(config), "--json")
            assert code == 1
            doc = json.loads(out)
            assert not doc["fixed"] and doc["live_hosts"] and doc["differences"]
            assert rt.kv.view(read).by_state()["PC3"] == 1  # left as it was
        finally:
            beat.beat(stopped=1.0)
    code, _ = cli(capsys, "sectors", "recount", "--config", str(config))
    assert code == 1
    code, _ = cli(capsys, "sectors", "recount", "--config", str(config))
    assert code == 0


# --- SIGKILL --------------------------------------------------------------------------------


def test_counts_equal_a_recount_after_a_writer_is_sigkilled_mid_run(tmp_path: Path) -> None:
    """Writers in a host process SIGKILLed at a random moment, three times over one KV."""
    path = toml_config(tmp_path / "host.toml", tmp_path / "data", [], plugins=())
    rng = random.Random()
    done = 0
    for seed in range(3):
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("counts_host.py")), str(path), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        want = rng.randrange(50, 600)
        for n, _ in enumerate(proc.stdout, 1):
            if n >= want:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        done += n
    assert done >= 150
    kv = open_kv("sqlkv", tmp_path / "data")
    try:
        got = kept(kv)
        assert got is not None and got.total > 0
        assert got == recounted(kv)
    finally:
        kv.close()
