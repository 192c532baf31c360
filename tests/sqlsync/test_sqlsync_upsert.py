"""sqlsync writes the newest state of every sector, never an older one, on every backend."""

from __future__ import annotations

import json

from sectorhooks.host import PluginHost
from sectorhooks_spec import LatestState, PreCommitInfo, Workspace, dumps
from sqlsync.sqlsynckit import Feeder, evolve, expected, state


def test_first_flush_creates_tables_and_stores_state_json_byte_identical(host: PluginHost, backend_url: str):
    odd = state(1, 1, abort_reason='dépassé 中文 \U0001f600 "quoted" back\\slash \u2028')
    plain = state(2, 1)
    f = Feeder(host, backend_url)
    f.write(odd, plain)
    assert f.rows() == {str(odd.id): (1, dumps(odd)), str(plain.id): (1, dumps(plain))}
    cols = f.columns()[str(odd.id)]
    got = (cols["miner"], cols["number"], cols["workspace"], cols["state_name"])
    assert got == (1000, 1, "online", "PC1Done")
    assert cols["abort_reason"] == odd.abort_reason
    assert bool(cols["finalized"]) is False and cols["sector_type"] == 8
    assert cols["updated_at"] == odd.updated_at


def test_a_nul_character_is_kept_in_state_json_on_every_backend(host: PluginHost, backend_url: str):
    s = state(1, 1, abort_reason="worker said \x00 then died")
    f = Feeder(host, backend_url)
    f.write(s)
    assert f.rows() == expected([s])
    nul = "\ufffd" if backend_url.startswith("postgresql") else "\x00"  # PostgreSQL text has no NUL
    assert f.columns()[str(s.id)]["abort_reason"] == f"worker said {nul} then died"


def test_main_fields_follow_the_newest_state(host: PluginHost, backend_url: str):
    s1 = state(7, 1, "PC1Done")
    s2 = evolve(s1, latest_state=LatestState("C2Done"), pre=PreCommitInfo("r7", "d7"), need_rebuild=True)
    f = Feeder(host, backend_url)
    f.write(s1)
    f.write(s2)
    cols = f.columns()[str(s1.id)]
    assert cols["state_name"] == "C2Done" and cols["version"] == 2 and bool(cols["need_rebuild"]) is True
    assert (cols["comm_r"], cols["comm_d"], cols["pre_commit_cid"]) == ("r7", "d7", None)
    assert json.loads(cols["state_json"])["version"] == 2


def test_a_flush_keeps_only_the_last_state_per_sector(host: PluginHost, backend_url: str):
    a = [state(1, v, f"S{v}") for v in range(1, 6)]
    b = [state(2, v, f"S{v}") for v in range(1, 3)]
    f = Feeder(host, backend_url)
    for x, y in zip(a, b + b + b):  # interleaved, and b's versions replayed within the batch
        f.update(x)
        f.update(y)
    f.flush()
    assert f.rows() == expected(a + b)
    assert sorted(f.events()) == sorted({(str(s.id), s.version) for s in a + b})


def test_replayed_and_late_events_never_move_a_row_backwards(host: PluginHost, backend_url: str):
    f = Feeder(host, backend_url)
    history = [state(3, v, f"S{v}") for v in range(1, 8)]
    f.write(*history[:5])
    f.write(*history[:3])  # a replayed batch: older versions only
    assert f.rows() == expected(history[:5])
    f.write(history[6], history[5])  # out of order inside one batch: v7 then v6
    assert f.rows() == expected(history)
    f.write(history[5])  # late event, alone in its flush
    assert f.rows() == expected(history)
    assert f.columns()[str(history[0].id)]["state_name"] == "S7"


def test_sector_events_are_appended_once_per_version(host: PluginHost, backend_url: str):
    f = Feeder(host, backend_url)
    s = [state(4, v, f"S{v}") for v in range(1, 4)]
    f.write(*s)
    f.write(*s)  # re-delivered: idempotent
    f.write(s[1], s[1])
    events = f.events()
    assert sorted(events) == [(str(s[0].id), v) for v in (1, 2, 3)]
    assert all(events[(str(x.id), x.version)] == ("update", "online", dumps(x)) for x in s)


def test_every_event_kind_lands_with_its_workspace(host: PluginHost, backend_url: str):
    f = Feeder(host, backend_url)
    imported = state(10, 1, imported=True)
    inits = [state(n, 1, "Allocated") for n in (11, 12)]
    f.import_(imported)
    f.init(inits)
    upd = evolve(inits[0], finalized=True)
    f.update(upd)
    fin = evolve(upd)
    f.finalize(fin)
    f.flush()
    assert f.columns()[str(fin.id)]["workspace"] == "offline"
    restored = evolve(fin, finalized=False)
    f.restore(restored)
    f.flush()
    cols = f.columns()
    assert cols[str(restored.id)]["workspace"] == "online" and bool(cols[str(imported.id)]["imported"])
    assert f.rows() == expected([imported, *inits, restored])
    kinds = {k: v[0] for k, v in f.events().items()}
    assert kinds == {
        (str(imported.id), 1): "import",
        (str(inits[0].id), 1): "init",
        (str(inits[1].id), 1): "init",
        (str(upd.id), 2): "update",
        (str(fin.id), 3): "finalize",
        (str(restored.id), 4): "restore",
    }


def test_events_off_writes_no_history_table(host: PluginHost, tmp_path):
    url = f"sqlite:///{tmp_path / 'noevents.sqlite'}"
    f = Feeder(host, url, events=False)
    f.write(state(1, 1), state(1, 2))
    assert f.rows() == expected([state(1, 2)])
    assert f.query("SELECT name FROM sqlite_master WHERE name LIKE '%sector_events'") == []


def test_instances_fan_out_to_their_own_tables(host: PluginHost, backend_url: str):
    a = Feeder(host, backend_url, table_prefix="a_")
    b = Feeder(host, backend_url, table_prefix="b_", batch_size=2)
    states = [state(n, 1) for n in range(5)]
    for s in states:
        a.update(s)
        b.update(s)
    b.update(evolve(states[0]))
    a.flush()
    b.flush()
    assert a.rows() == expected(states)
    assert b.rows() == expected([*states, evolve(states[0])])


def test_flush_with_nothing_pending_touches_no_database(host: PluginHost, tmp_path):
    f = Feeder(host, f"sqlite:///{tmp_path / 'never.sqlite'}")
    f.flush()
    assert not (tmp_path / "never.sqlite").exists()


def test_read_rows_of_a_sink_never_written_is_empty(host: PluginHost, backend_url: str):
    assert Feeder(host, backend_url).rows() == {}


def test_default_url_is_a_sqlite_file_in_the_data_dir(tmp_path, monkeypatch):
    from sectorhooks.config import HostConfig, PluginsConfig

    config = HostConfig(
        data_dir=tmp_path,
        plugins=PluginsConfig(entry_points=False, config={"sqlsync": {"DataDir": str(tmp_path / "sinks")}}),
    )
    with PluginHost(config).load().start() as h:
        f = Feeder(h, "unused")
        f.syncer = f.syncer.__class__("default", "sqlsync", {})
        f.write(state(1, 1))
        path = tmp_path / "sinks" / "sqlsync-default.sqlite"
        assert path.is_file()
        assert f.module.read_rows(f"sqlite:///{path}") == expected([state(1, 1)])


def test_workspace_enum_or_plain_string(host: PluginHost, tmp_path):
    f = Feeder(host, f"sqlite:///{tmp_path / 'ws.sqlite'}")
    s = state(1, 1)
    f.call("sync_on_update", sector_id=s.id, workspace="offline", fields={}, state=s, state_json=dumps(s))
    f.update(state(2, 1), Workspace.OFFLINE)
    f.flush()
    assert {c["workspace"] for c in f.columns().values()} == {"offline"}
