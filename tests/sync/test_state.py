"""SectorStateManager: the only writer; versions, workspaces, change log, group commit."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Iterator, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sectorhooks.changelog import Event
from sectorhooks.errors import SectorNotFound, SectorStateError
from sectorhooks.runtime import Runtime
from sectorhooks.state import COLLECTIONS, SectorStateManager
from sectorhooks_spec import (
    AllocatedSector,
    KeyNotFound,
    LatestState,
    Piece,
    SectorID,
    SectorState,
    Ticket,
    Workspace,
    dumps,
    loads,
)
from sync.helpers import make_config, open_runtime, sid


@pytest.fixture(params=["memdb", "sqlkv"])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    with open_runtime(make_config(tmp_path, kv=request.param, plugins=()), start_sync=False) as runtime:
        yield runtime


def log_events(state: SectorStateManager) -> List[Event]:
    floor, head = state.log.bounds()
    return [Event(seq, raw) for seq, raw in state.log.read(floor - 1, head - floor + 1)]


def test_init_creates_version_1_online_states_and_one_log_entry(rt: Runtime) -> None:
    states = rt.state.init_sectors([AllocatedSector(sid(1), 8), AllocatedSector(sid(2), 9)])
    assert [(s.id, s.sector_type, s.version) for s in states] == [(sid(1), 8, 1), (sid(2), 9, 1)]
    assert rt.state.workspace_of(sid(2)) is Workspace.ONLINE
    (ev,) = log_events(rt.state)
    assert ev.kind == "init" and ev.seq == 1
    assert ev.states_json == [dumps(rt.state.get(sid(1))), dumps(rt.state.get(sid(2)))]


def test_update_bumps_version_and_logs_fields_and_serialized_state(rt: Runtime) -> None:
    rt.state.init_sectors([AllocatedSector(sid(1), 8)])
    s2 = rt.state.update(sid(1), ticket=Ticket("ab", 7), latest_state=LatestState("PC1"))
    s3 = rt.state.update(sid(1), pieces=[Piece("bafy", 2048)])
    assert (s2.version, s3.version) == (2, 3)
    assert s3.ticket == Ticket("ab", 7) and s3.pieces == (Piece("bafy", 2048),) and s3.state_name == "PC1"
    assert s3.updated_at >= s2.updated_at > 0
    assert rt.state.get(sid(1)) == s3
    ev = log_events(rt.state)[-1]
    assert ev.kind == "update" and ev.header["v"] == 3
    assert ev.header["k"] == ["pieces"] and ev.fields() == {
        "pieces": [{"cid": "bafy", "size": 2048, "offset": 0, "payload_size": 0, "deal_id": None}]
    }
    assert ev.states_json == [dumps(s3)]  # the sink gets exactly codec.dumps of the new state


def test_finalize_moves_offline_and_restore_moves_back(rt: Runtime) -> None:
    rt.state.init_sectors([AllocatedSector(sid(1), 8), AllocatedSector(sid(2), 8)])
    fin = rt.state.finalize(sid(1))
    assert fin.finalized and fin.version == 2
    assert rt.state.workspace_of(sid(1)) is Workspace.OFFLINE
    assert [s.id for s in rt.state.list(workspace=Workspace.OFFLINE)] == [sid(1)]
    assert [s.id for s in rt.state.list(workspace=Workspace.ONLINE)] == [sid(2)]
    with pytest.raises(SectorStateError, match="cannot finalize sector s-t01000-1: it is offline"):
        rt.state.finalize(sid(1))
    rt.state.update(sid(1), need_rebuild=True)  # an offline sector can still change
    back = rt.state.restore(sid(1))
    assert back.version == 4 and back.need_rebuild and rt.state.workspace_of(sid(1)) is Workspace.ONLINE
    with pytest.raises(SectorStateError, match="it is online"):
        rt.state.restore(sid(1))
    # Exactly one copy: the offline one was deleted in the same transaction.
    assert rt.kv.open_collection(COLLECTIONS[Workspace.OFFLINE]).peek(sid(1).key.encode()) is None
    assert [e.kind for e in log_events(rt.state)] == ["init", "finalize", "update", "restore"]
    assert [e.header["w"] for e in log_events(rt.state)][1:] == ["offline", "offline", "online"]


def test_import_refuses_existing_without_override_and_never_lowers_the_version(rt: Runtime) -> None:
    imported = rt.state.import_sector(SectorState(sid(5), imported=True, version=41))
    assert imported.version == 42 and rt.state.workspace_of(sid(5)) is Workspace.ONLINE
    with pytest.raises(SectorStateError, match=r"already exists .*override=True"):
        rt.state.import_sector(SectorState(sid(5)))
    again = rt.state.import_sector(SectorState(sid(5), finalized=True, version=3), override=True)
    assert again.version == 43 and again.finalized
    assert rt.state.workspace_of(sid(5)) is Workspace.OFFLINE  # finalized states import offline
    assert [e.header["o"] for e in log_events(rt.state)] == [False, True]


def test_list_by_miner_and_workspace_in_sector_order(rt: Runtime) -> None:
    rt.state.init_sectors([AllocatedSector(SectorID(m, n), 8) for m in (1001, 1000) for n in (10, 2, 1)])
    rt.state.finalize(SectorID(1000, 2))
    assert [s.id.number for s in rt.state.list(miner=1000)] == [1, 2, 10]
    assert [str(s.id) for s in rt.state.list(workspace=Workspace.ONLINE, miner=1001)] == [
        "s-t01001-1",
        "s-t01001-2",
        "s-t01001-10",
    ]
    assert len(rt.state.list()) == 6
    rt.state.update(SectorID(1000, 1), latest_state=LatestState("PC1"))
    assert rt.state.state_counts() == {"": 5, "PC1": 1}


def test_bad_calls_are_refused_with_the_reason_and_write_nothing(rt: Runtime) -> None:
    rt.state.init_sectors([AllocatedSector(sid(1), 8)])
    head = rt.state.log.head()
    with pytest.raises(SectorNotFound, match="sector s-t01000-9 not found") as info:
        rt.state.update(sid(9), removed=True)
    assert isinstance(info.value, KeyNotFound)
    with pytest.raises(KeyNotFound):
        rt.state.get(sid(9))
    with pytest.raises(SectorStateError, match="unknown or read-only field 'version'"):
        rt.state.update(sid(1), version=7)
    with pytest.raises(SectorStateError, match="ticket: expected Ticket, got str"):
        rt.state.update(sid(1), ticket="abc")
    with pytest.raises(SectorStateError, match=r"ticket.epoch: expected int, got str"):
        rt.state.update(sid(1), ticket=Ticket("ab", "7"))  # type: ignore[arg-type]
    with pytest.raises(SectorStateError, match=r"ticket.epoch: expected int, got bool"):
        rt.state.update(sid(1), ticket=Ticket("ab", True))
    with pytest.raises(SectorStateError, match=r"latest_state.worker: expected str, got int"):
        rt.state.update(sid(1), latest_state=LatestState("PC1", worker=7))  # type: ignore[arg-type]
    with pytest.raises(SectorStateError, match="already exists"):
        rt.state.init_sectors([AllocatedSector(sid(2), 8), AllocatedSector(sid(1), 8)])
    with pytest.raises(KeyNotFound):
        rt.state.get(sid(2))  # all or nothing
    assert rt.state.log.head() == head and rt.state.get(sid(1)).version == 1


def test_concurrent_writers_share_transactions_and_keep_per_sector_order(rt: Runtime) -> None:
    threads, per_thread = 8, 60
    rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(threads * 2)])
    groups: List[int] = []
    rt.state.add_group_listener(lambda calls, _seconds: groups.append(calls))
    returned: List[SectorState] = []
    errors: List[BaseException] = []
    lock = threading.Lock()

    def writer(k: int) -> None:
        try:
            for i in range(per_thread):
                # two threads share each sector: ordering must hold across writers
                s = rt.state.update(sid((k + i) % (threads * 2)), latest_state=LatestState(f"T{k}-{i}"))
                with lock:
                    returned.append(s)
                # durable when it returns: a fresh read sees it (or something newer)
                assert rt.state.get(s.id).version >= s.version
        except BaseException as exc:
            errors.append(exc)

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors, errors[0]
    assert len(returned) == threads * per_thread
    assert sum(groups) == threads * per_thread
    updates = [e for e in log_events(rt.state) if e.kind == "update"]
    assert len(updates) == threads * per_thread
    seqs = [e.seq for e in log_events(rt.state)]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free
    per_sector: dict = {}
    for e in updates:
        per_sector.setdefault(e.header["s"][1], []).append(e.header["v"])
    for versions in per_sector.values():
        assert versions == list(range(2, len(versions) + 2))  # log order == version order
    final = {str(s.id): s for s in rt.state.list()}
    for e in updates:
        assert json.loads(e.states_json[0])["version"] == e.header["v"]
    assert {k: s.version for k, s in final.items()} == {
        str(sid(n)): len(per_sector[n]) + 1 for n in per_sector
    }


@pytest.mark.parametrize("fails", [False, True], ids=["commits", "commit-fails"])
def test_every_caller_of_a_group_is_woken_down_the_chain_not_by_the_poll(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """The leader wakes the first caller it committed and each woken caller the next: with the
    fallback poll pushed out to a minute, a group of 5 still returns at once, also when its
    commit fails (then every caller gets the error)."""
    from sectorhooks.state import manager

    n = 6
    rt.state.init_sectors([AllocatedSector(sid(k), 8) for k in range(n)])
    monkeypatch.setattr(manager, "FOLLOWER_POLL", 60.0)
    groups: List[int] = []

    def counting(calls: int, _seconds: float) -> None:
        groups.append(calls)
        if len(groups) == 1:  # the first leader hands over only once the others queued behind it
            while rt.state.queued < n - 1:
                threading.Event().wait(0.005)

    rt.state.add_group_listener(counting)
    if fails:
        real = rt.kv.update

        def failing(fn):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(rt.kv, "update", failing)
        if rt.state.guarded_put is not None:  # the guarded put of a group the cache computed, too

            class FailingPut:
                def put_many_if(self, guard, items):  # type: ignore[no-untyped-def]
                    raise RuntimeError("disk on fire")

            monkeypatch.setattr(rt.state, "guarded_put", FailingPut())
    results: List[object] = [None] * n

    def call(k: int) -> None:
        try:
            results[k] = rt.state.update(sid(k), removed=True).version
        except RuntimeError as exc:
            results[k] = exc

    ts = [threading.Thread(target=call, args=(k,)) for k in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)  # far below the poll: only the hand-over and the chain can have woken them
    assert not any(t.is_alive() for t in ts)
    assert groups == [1, n - 1]
    if fails:
        assert all(isinstance(r, RuntimeError) and "disk on fire" in str(r) for r in results)
        monkeypatch.setattr(rt.kv, "update", real)
        assert [rt.state.get(sid(k)).version for k in range(n)] == [1] * n
    else:
        assert results == [2] * n


def test_a_refused_change_fails_alone_inside_a_shared_group(rt: Runtime) -> None:
    rt.state.init_sectors([AllocatedSector(sid(1), 8)])
    results: List[object] = []

    def call(n: int) -> None:
        try:
            results.append(rt.state.update(sid(n), removed=True).version)
        except SectorNotFound as exc:
            results.append(exc)

    # Queue both before anyone commits: one group, one good, one refused.
    with rt.state.hold_commits():
        ts = [threading.Thread(target=call, args=(n,)) for n in (1, 2)]
        for t in ts:
            t.start()
        while rt.state.queued < 2:
            threading.Event().wait(0.005)
    for t in ts:
        t.join(10)
    assert sorted(map(str, results)) == [
        "2",
        "sector s-t01000-2 not found (neither online nor offline); import or init it first",
    ]
    assert rt.state.get(sid(1)).version == 2


def test_closed_manager_refuses_changes(rt: Runtime) -> None:
    rt.state.close()
    with pytest.raises(SectorStateError, match="closed"):
        rt.state.init_sectors([AllocatedSector(sid(1), 8)])


FIELD_VALUES = st.one_of(
    st.builds(lambda s: {"latest_state": LatestState(s)}, st.text(max_size=8)),
    st.builds(
        lambda t, e: {"ticket": Ticket(t, e)}, st.text("0123456789abcdef", max_size=8), st.integers(0, 10**6)
    ),
    st.builds(lambda b: {"removed": b}, st.booleans()),
    st.builds(lambda n: {"pieces": [Piece(f"c{i}", 2**i) for i in range(n)]}, st.integers(0, 3)),
    st.builds(lambda r: {"abort_reason": r}, st.text(max_size=12)),
    st.builds(lambda e: {"upgrade_landed_epoch": e}, st.one_of(st.none(), st.integers(0, 99))),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.integers(0, 3), FIELD_VALUES), min_size=1, max_size=25))
def test_stored_json_is_exactly_codec_dumps_of_the_state(tmp_path: Path, changes: list) -> None:
    from sectorhooks.kv import open_kvstore  # noqa: F401  (the store comes through the runtime)

    with open_runtime(make_config(tmp_path, kv="memdb", plugins=()), start_sync=False) as rt:
        rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(4)])
        for n, fields in changes:
            s = rt.state.update(sid(n), **fields)
            raw = rt.kv.open_collection(COLLECTIONS[Workspace.ONLINE]).get(sid(n).key.encode())
            assert raw.decode() == dumps(s)
            assert loads(SectorState, raw) == s  # the returned state is the stored one, field by field
        for e in log_events(rt.state)[1:]:
            assert e.states_json[0] == dumps(e.states()[0])


def test_another_writer_is_noticed_through_the_log_head(rt: Runtime) -> None:
    rt.state.init_sectors([AllocatedSector(sid(1), 8)])
    rt.state.update(sid(1), removed=True)  # v2, known to rt.state without re-reading
    other = SectorStateManager(rt.kv)  # e.g. a second host process on the same KV
    assert other.update(sid(1), abort_reason="by the other").version == 3
    after = rt.state.update(sid(1), need_rebuild=True)
    assert after.version == 4 and after.abort_reason == "by the other" and after.removed


class PutSpy:
    """Records each guarded put of the state manager (and what the store answered)."""

    def __init__(self, inner: object):
        self.inner, self.answers = inner, []  # type: ignore[var-annotated]

    def put_many_if(self, guard, items):  # type: ignore[no-untyped-def]
        answer = self.inner.put_many_if(guard, items)  # type: ignore[attr-defined]
        self.answers.append((guard, len(items), answer))
        return answer


def test_a_group_the_cache_can_compute_commits_with_one_guarded_put(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On sqlkv, a group over sectors the trusted cache holds is one guarded put (no update()
    transaction); a group that must read (a sector not cached) or delete (a workspace move)
    takes update(). memdb has no guarded put: every group is an update()."""
    rt.state.init_sectors([AllocatedSector(sid(n), 8) for n in range(3)])
    spy = PutSpy(rt.state.guarded_put) if rt.state.guarded_put is not None else None
    if spy is not None:
        monkeypatch.setattr(rt.state, "guarded_put", spy)
    updates: List[int] = []
    real = rt.kv.update

    def counting(fn):  # type: ignore[no-untyped-def]
        if "SectorStateManager._commit" in fn.__qualname__:  # not the host's background writers
            updates.append(1)
        return real(fn)

    monkeypatch.setattr(rt.kv, "update", counting)
    for n in range(3):
        assert rt.state.update(sid(n), removed=True).version == 2
    assert rt.state.update(sid(0), need_rebuild=True).version == 3
    head = rt.state.log.head()
    if spy is None:
        assert len(updates) == 4
        return
    assert updates == [] and [a for _, _, a in spy.answers] == [True] * 4
    assert spy.answers[-1][0] == ("sync/meta", b"head", b"%d" % (head - 1))
    assert spy.answers[-1][1] == 3  # the state, the log entry, the log head
    assert rt.state.finalize(sid(1)).version == 3  # online -> offline: a delete, so update()
    assert len(updates) == 1 and rt.state.workspace_of(sid(1)) is Workspace.OFFLINE
    other = SectorStateManager(rt.kv)
    other.update(sid(2), abort_reason="elsewhere")  # another host on the same KV
    assert rt.state.update(sid(2), need_rebuild=True).version == 4  # the guard refused: update()
    assert spy.answers[-1][2] is False and len(updates) == 3  # other's update, then ours
    assert [e.header["v"] for e in log_events(rt.state) if e.header.get("s") == [1000, 2]] == [2, 3, 4]
    assert rt.state.get(sid(2)).abort_reason == "elsewhere"


def test_two_managers_writing_the_same_sectors_at_once_lose_no_change(rt: Runtime) -> None:
    """Two state managers on one KV (two hosts): each trusts its cache only while the log head is
    its own, so every guarded put the other got ahead of is refused and redone in update()."""
    n, per_thread = 4, 40
    rt.state.init_sectors([AllocatedSector(sid(k), 8) for k in range(n)])
    other = SectorStateManager(rt.kv)
    errors: List[BaseException] = []

    def work(manager: SectorStateManager, k: int) -> None:
        try:
            for i in range(per_thread):
                manager.update(sid((k + i) % n), latest_state=LatestState(f"S{i}", worker=f"w{k}"))
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(m, k)) for k, m in enumerate([rt.state, other] * 3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in ts)
    total = len(ts) * per_thread
    versions: dict = {}
    for e in log_events(rt.state)[1:]:
        versions.setdefault(tuple(e.header["s"]), []).append(e.header["v"])
    assert sum(len(v) for v in versions.values()) == total
    for k in range(n):
        seen = versions[(1000, k)]
        assert seen == list(range(2, len(seen) + 2))  # one change per version, none lost or repeated
        assert rt.state.get(sid(k)).version == other.get(sid(k)).version == len(seen) + 1


def test_a_failed_commit_leaves_no_trace_in_state_or_cache(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sectorhooks import changelog

    rt.state.init_sectors([AllocatedSector(sid(1), 8)])
    rt.state.update(sid(1), removed=True)
    real = changelog.LogWriter.finish
    calls = []

    def failing(self: changelog.LogWriter) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return real(self)

    monkeypatch.setattr(changelog.LogWriter, "finish", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        rt.state.update(sid(1), abort_reason="lost")
    assert rt.state.get(sid(1)).version == 2 and rt.state.get(sid(1)).abort_reason == ""
    again = rt.state.update(sid(1), need_rebuild=True)
    assert (again.version, again.abort_reason, again.need_rebuild) == (3, "", True)
    assert [e.header["v"] for e in log_events(rt.state)[1:]] == [2, 3]
