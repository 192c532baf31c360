"""A change no sink can store is refused alone, with its reason; the rest of its batch is written.

The host never sends such values (the SPI's models refuse them), so these tests go around it:
``state_json`` texts are written by hand and handed to the plugin's hooks, then ``Flush``, on a
real SQLite file, PostgreSQL and MariaDB. Issue #16 failure 4: SQLite's driver raises
``OverflowError`` binding an integer >= 2**63, which used to fail the whole flush every time
(retried forever, every later change behind it); PostgreSQL refused the row by itself.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

import pytest

from sectorhooks.host import PluginHost
from sectorhooks_spec import RejectedChanges, SectorID, Workspace, to_jsonable
from sqlsync.sqlsynckit import Feeder, expected, state


def text(number: int, at: int = 1, **fields: Any) -> str:
    """The JSON text of ``state(number, at)`` with ``fields`` set as given (no checks)."""
    data = to_jsonable(state(number, at))
    data.update(fields)
    return json.dumps(data, separators=(",", ":"))


def send(f: Feeder, number: int, state_json: str) -> None:
    """``OnUpdate`` of sector ``number`` carrying ``state_json``, as the dispatcher calls it."""
    sid = SectorID(1000, number)
    f.call(
        "sync_on_update",
        sector_id=sid,
        workspace=Workspace.ONLINE,
        fields={},
        state=None,
        state_json=state_json,
    )


def flush_refused(f: Feeder) -> Dict[Tuple[str, int], str]:
    """Flush; (sector, version) -> reason of every refused change (the flush must refuse some)."""
    with pytest.raises(RejectedChanges) as info:
        f.flush()
    return {(r.sector, r.version): r.reason for r in info.value.rejected}


BAD: List[Tuple[str, str, str]] = [
    # (what, state_json of sector 101.., a fragment of the reason)
    ("sector_type = 2**63", text(101, sector_type=2**63), "sector_type"),
    ("sector_type = 10**40", text(102, sector_type=10**40), "sector_type"),
    ("upgrade_landed_epoch = 2**64", text(103, upgrade_landed_epoch=2**64), "upgrade_landed_epoch"),
    ("sector_type = -2**63 - 1", text(104, sector_type=-(2**63) - 1), "sector_type"),
    ("abort_reason with a lone surrogate", text(105, abort_reason="x\ud800"), "abort_reason"),
    ("state_name with a lone surrogate", text(106, latest_state={"state": "\udc80"}), "state_name"),
    ("sector_type an array", text(107, sector_type=[1, 2]), "sector_type"),
    ("abort_reason an object", text(108, abort_reason={"a": 1}), "abort_reason"),
    ("state_json not JSON", '{"id":{"miner":1000,"number":109},"version":1,', "not a state document"),
]


def test_values_no_sink_can_store_are_refused_alone_with_the_reason(host: PluginHost, backend_url: str):
    good = [state(n, 1) for n in range(1, len(BAD) + 2)]
    with Feeder(host, backend_url) as f:
        f.write(good[0])  # the tables exist: the refused batch is not the first
        for i, (s, (_, bad, _)) in enumerate(zip(good[1:], BAD)):  # good and bad interleaved
            f.update(s)
            send(f, 101 + i, bad)
        refused = flush_refused(f)
        assert set(refused) == {(f"s-t01000-{101 + i}", 1) for i in range(len(BAD))}
        for i, (what, _, fragment) in enumerate(BAD):
            assert fragment in refused[(f"s-t01000-{101 + i}", 1)], (what, refused)
        assert f.rows() == expected(good)  # every good change of the batch, nothing of a bad one
        assert set(f.events()) == {(str(s.id), 1) for s in good}


def test_an_integer_too_large_for_sqlite_never_holds_up_the_changes_after_it(
    host: PluginHost, backend_url: str
):
    """The issue as written: after the refused change, every later change is written at once."""
    with Feeder(host, backend_url) as f:
        f.write(state(1, 1))
        send(f, 1, text(1, 2, sector_type=2**63))
        f.update(state(2, 1))
        refused = flush_refused(f)
        assert list(refused) == [("s-t01000-1", 2)]
        assert (
            "sector_type is outside the signed 64-bit range: 9223372036854775808"
            in refused[("s-t01000-1", 2)]
        )
        assert f.rows() == expected([state(1, 1), state(2, 1)])
        f.write(state(1, 3), state(3, 1))  # the next flushes go through: no retry of the refused one
        assert f.rows() == expected([state(1, 3), state(2, 1), state(3, 1)])


def test_the_newest_good_version_of_a_sector_is_written_when_a_newer_one_is_refused(
    host: PluginHost, backend_url: str
):
    with Feeder(host, backend_url) as f:
        f.write(state(0, 1))
        f.update(state(1, 1))
        f.update(state(1, 2))
        send(f, 1, text(1, 3, sector_type=10**40))
        refused = flush_refused(f)
        assert list(refused) == [("s-t01000-1", 3)]
        assert f.rows() == expected([state(0, 1), state(1, 2)])
        assert {v for (sid, v) in f.events() if sid == "s-t01000-1"} == {1, 2}


def test_a_version_beyond_64_bits_is_refused(host: PluginHost, backend_url: str):
    with Feeder(host, backend_url) as f:
        f.write(state(1, 1))
        send(f, 2, text(2, version=2**63))
        f.update(state(3, 1))
        refused = flush_refused(f)
        assert list(refused) == [("s-t01000-2", 2**63)]
        assert "version is outside the signed 64-bit range" in refused[("s-t01000-2", 2**63)]
        assert f.rows() == expected([state(1, 1), state(3, 1)])


def test_a_raw_lone_surrogate_in_the_text_itself_is_refused(host: PluginHost, backend_url: str):
    """Not the JSON escape: the character in ``state_json``, which no database can take."""
    raw = text(2).replace('"abort_reason":""', '"abort_reason":"x\ud800"')
    assert "\ud800" in raw
    with Feeder(host, backend_url) as f:
        f.write(state(1, 1))
        send(f, 2, raw)
        f.update(state(3, 1))
        refused = flush_refused(f)
        assert list(refused) == [("s-t01000-2", 1)]
        assert "lone surrogate" in refused[("s-t01000-2", 1)]
        assert f.rows() == expected([state(1, 1), state(3, 1)])


def test_a_too_long_value_is_refused_where_the_column_has_a_limit(host: PluginHost, backend_url: str):
    """``comm_r`` is VARCHAR(255): PostgreSQL and MariaDB refuse 256 characters (the row is
    isolated by bisection), SQLite has no limit and stores it."""
    long = text(2, pre={"comm_r": "r" * 256, "comm_d": "d"})
    with Feeder(host, backend_url) as f:
        f.write(state(1, 1))
        send(f, 2, long)
        for n in range(3, 9):
            f.update(state(n, 1))
        good = [state(1, 1), *(state(n, 1) for n in range(3, 9))]
        if backend_url.startswith("sqlite"):
            f.flush()
            assert f.rows() == {**expected(good), "s-t01000-2": (1, long)}
            return
        refused = flush_refused(f)
        assert list(refused) == [("s-t01000-2", 1)]
        assert "too long" in refused[("s-t01000-2", 1)].lower()
        assert f.rows() == expected(good)


def test_sqlite_driver_refuses_the_integer_at_bind_time(host: PluginHost, tmp_path):
    """What the sink is up against: sqlite3 raises OverflowError (not a database error) while
    binding; the sink sorts it with the refused rows, never with the transient errors."""
    import importlib
    import sqlite3

    conn = sqlite3.connect(str(tmp_path / "plain.sqlite"))
    conn.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(OverflowError):
        conn.execute("INSERT INTO t VALUES (?)", (2**63,))
    conn.close()
    assert host.records["sqlsync"].bound is not None
    sink = importlib.import_module("sectorhooks_plugins.sqlsync.sink")
    assert sink.classify(OverflowError("Python int too large to convert to SQLite INTEGER")) == "row"
    assert sink.classify(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")) == "row"
