"""The demo's verification really detects a sink that differs from the KV, and says how."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from sectorhooks.cli import run
from sectorhooks.demo import DemoOptions, demo_config, run_demo, verify_config


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished, consistent demo run of 150 sectors."""
    d = tmp_path_factory.mktemp("demo") / "run"
    summary = run_demo(demo_config(d), DemoOptions(sectors=150, seed=3))
    assert summary["consistent"] is True, summary
    return d


def sink_db(d: Path, name: str = "audit") -> Path:
    return d / "sinks" / f"{name}.sqlite"


@contextmanager
def tampered(db: Path, *statements: Tuple[str, Tuple[Any, ...]]) -> Iterator[None]:
    """Apply ``statements`` to a sink, yield, then put the ``sectors`` table back as it was."""
    with closing(sqlite3.connect(db)) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(sectors)")]
        saved = conn.execute("SELECT * FROM sectors").fetchall()
        with conn:
            for sql, args in statements:
                assert conn.execute(sql, args).rowcount >= 1, sql
    try:
        yield
    finally:
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("DELETE FROM sectors")
            marks = ", ".join("?" for _ in cols)
            conn.executemany(f"INSERT INTO sectors ({', '.join(cols)}) VALUES ({marks})", saved)


def by_name(checked: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {s["name"]: s for s in checked["sinks"]}


def one_sector(db: Path, where: str = "1=1") -> Tuple[int, int]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            f"SELECT miner, number FROM sectors WHERE {where} ORDER BY number LIMIT 1"
        ).fetchone()


def test_untouched_sinks_are_equal(demo_dir: Path) -> None:
    checked = verify_config(demo_config(demo_dir))
    assert checked["consistent"] is True
    assert [s["equal_to_kv"] for s in checked["sinks"]] == [True, True, True]
    assert all(s["rows"] == s["kv_rows"] == 150 for s in checked["sinks"])


def test_a_changed_field_at_the_same_version_is_detected(demo_dir: Path) -> None:
    db = sink_db(demo_dir)
    miner, number = one_sector(db)
    with closing(sqlite3.connect(db)) as conn:
        (text,) = conn.execute(
            "SELECT state_json FROM sectors WHERE miner=? AND number=?", (miner, number)
        ).fetchone()
    data = json.loads(text)
    data["abort_reason"] = "tampered"
    update = ("UPDATE sectors SET state_json=? WHERE miner=? AND number=?", (json.dumps(data), miner, number))
    with tampered(db, update):
        checked = verify_config(demo_config(demo_dir))
        sinks = by_name(checked)
        assert checked["consistent"] is False
        assert sinks["audit"]["equal_to_kv"] is False and sinks["audit"]["differences"] == 1
        assert sinks["audit"]["examples"] == [
            f"s-t0{miner}-{number}: version {data['version']} differs in field(s) abort_reason"
        ]
        assert sinks["dashboard"]["equal_to_kv"] is True and sinks["billing"]["equal_to_kv"] is True
    assert verify_config(demo_config(demo_dir))["consistent"] is True


@pytest.mark.parametrize(
    "statement, expected",
    [
        ("UPDATE sectors SET version = version - 1 WHERE miner=? AND number=?", "sink has version"),
        ("DELETE FROM sectors WHERE miner=? AND number=?", "missing in the sink"),
        ("UPDATE sectors SET number = number + 1000000 WHERE miner=? AND number=?", "not in the KV"),
    ],
)
def test_older_missing_and_extra_rows_are_detected(demo_dir: Path, statement: str, expected: str) -> None:
    db = sink_db(demo_dir, "billing")
    miner, number = one_sector(db)
    with tampered(db, (statement, (miner, number))):
        sinks = by_name(verify_config(demo_config(demo_dir)))
        assert sinks["billing"]["equal_to_kv"] is False
        assert any(expected in e for e in sinks["billing"]["examples"]), sinks["billing"]["examples"]
    assert by_name(verify_config(demo_config(demo_dir)))["billing"]["equal_to_kv"] is True


def test_demo_cli_exits_1_when_a_sink_differs(demo_dir: Path, capsys) -> None:
    db = sink_db(demo_dir, "dashboard")
    miner, number = one_sector(db, "finalized = 1")
    with tampered(
        db,
        (
            "UPDATE sectors SET state_json = replace(state_json, '\"finalized\":true', "
            "'\"finalized\":false') WHERE miner=? AND number=?",
            (miner, number),
        ),
    ):
        assert run(["demo", "--json", "--sectors", "0", "--dir", str(demo_dir)]) == 1
        summary = json.loads(capsys.readouterr().out)
        assert summary["consistent"] is False and summary["ok"] is False
        flags: List[Any] = [s["equal_to_kv"] for s in summary["sinks"]]
        assert flags == [False, True, True]
    assert run(["demo", "--json", "--sectors", "0", "--dir", str(demo_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["consistent"] is True
