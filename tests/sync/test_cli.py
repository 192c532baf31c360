"""``sectorhooks sync status|retry|backfill|verify`` against sqlsync sinks on SQLite files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Tuple

import pytest

from sectorhooks.cli import run
from sectorhooks.config import load_config
from sectorhooks.runtime import Runtime
from sectorhooks_spec import LatestState
from sync.helpers import sealing_run, sid, toml_config

FREEZE_3 = (
    "CREATE TRIGGER freeze3 BEFORE UPDATE ON sectors WHEN NEW.number = 3 "
    "BEGIN SELECT RAISE(ABORT, 'sector 3 is frozen by the DBA'); END"
)


@pytest.fixture
def setup(tmp_path: Path) -> Tuple[Path, Path, Path]:
    """A config with sinks a and b (SQLite files), 10 sectors delivered to both."""
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    config = toml_config(
        tmp_path / "host.toml",
        tmp_path / "data",
        [("a", "sqlsync", {"url": f"sqlite:///{a}"}), ("b", "sqlsync", {"url": f"sqlite:///{b}"})],
        plugins=("sqlsync",),
    )
    with Runtime.open(load_config(config), filestores=False) as rt:
        sealing_run(rt.state, sectors=10, updates=2)
        assert rt.sync.wait_idle(30)
    return config, a, b


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Tuple[int, str]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr()
    # --json: the document alone (stderr carries log lines, e.g. the sink's refusal at WARNING)
    return code, out.out if "--json" in args else out.out + out.err


def write(config: Path, n: int, state: str) -> None:
    with Runtime.open(load_config(config), filestores=False) as rt:
        rt.state.update(sid(n), latest_state=LatestState(state))
        assert rt.sync.wait_idle(30)


def test_status_shows_cursor_lag_and_dead_letters(setup: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _ = setup
    code, out = cli(capsys, "sync", "status", "--config", str(config), "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["syncers"]}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["cursor"] == rows["a"]["head"] > 0 and rows["a"]["lag_events"] == 0
    with Runtime.open(load_config(config), start_sync=False, filestores=False) as rt:
        rt.state.update(sid(1), removed=True)  # written, not delivered: lag
    code, out = cli(capsys, "sync", "status", "--config", str(config))
    assert code == 0
    assert "syncers" in out and " a " in out and " b " in out
    code, out = cli(capsys, "sync", "status", "--config", str(config), "--json")
    assert all(r["lag_events"] == 1 and r["lag_seconds"] >= 0 for r in json.loads(out)["syncers"])


def test_rejected_row_is_dead_lettered_and_retry_delivers_it_once_fixed(
    setup: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, b = setup
    with sqlite3.connect(b) as conn:
        conn.execute(FREEZE_3)
    write(config, 3, "frozen?")
    write(config, 4, "fine")
    code, out = cli(capsys, "sync", "status", "--config", str(config), "--json")
    rows = {r["name"]: r for r in json.loads(out)["syncers"]}
    assert (rows["a"]["dead_letters"], rows["b"]["dead_letters"]) == (0, 1)
    assert "sector 3 is frozen by the DBA" in rows["b"]["last_error"]

    code, out = cli(capsys, "sync", "verify", "b", "--config", str(config))
    assert code == 1 and "s-t01000-3: sink has version" in out and "1 difference(s)" in out
    code, out = cli(capsys, "sync", "retry", "b", "--config", str(config), "--json")
    assert code == 1 and json.loads(out)["remaining"] == 1  # still refused

    with sqlite3.connect(b) as conn:
        conn.execute("DROP TRIGGER freeze3")
    code, out = cli(capsys, "sync", "retry", "b", "--config", str(config))
    assert code == 0 and "delivered 1 dead letter(s), 0 remaining" in out
    code, out = cli(capsys, "sync", "verify", "b", "--config", str(config))
    assert code == 0 and "the sink matches the KV (10 sectors)" in out


def test_backfill_rebuilds_a_lost_sink(setup: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config, a, _ = setup
    a.unlink()  # the sink's database is gone
    code, out = cli(capsys, "sync", "verify", "a", "--config", str(config), "--json")
    report = json.loads(out)
    assert code == 1 and len(report["differences"]) == 10
    assert all("missing in the sink" in d for d in report["differences"])
    code, out = cli(capsys, "sync", "backfill", "a", "--config", str(config), "--json")
    assert code == 0 and json.loads(out)["sectors"] == 10
    code, out = cli(capsys, "sync", "verify", "a", "--config", str(config))
    assert code == 0, out
    write(config, 2, "after-backfill")  # and the log is followed from there
    code, out = cli(capsys, "sync", "verify", "a", "--config", str(config))
    assert code == 0, out


def test_unknown_syncer_is_a_clear_error(setup: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config, _, _ = setup
    for command in (["retry", "zzz"], ["backfill", "zzz"], ["verify", "zzz"]):
        code, out = cli(capsys, "sync", *command, "--config", str(config))
        assert code == 1
        assert "no syncer named 'zzz'; syncers: 'a', 'b'" in out


def test_verify_of_a_plugin_without_read_rows_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = toml_config(tmp_path / "host.toml", tmp_path / "data", [], plugins=("inline",))
    code, out = cli(capsys, "sync", "verify", "inline", "--config", str(config))
    assert code == 1 and "sync verify is not supported for syncer 'inline'" in out


def test_retry_and_backfill_ask_the_host_holding_the_syncer_and_wait_at_most_wait(
    setup: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = setup
    with Runtime.open(load_config(config), start_sync=False, filestores=False) as old_host:
        lease = old_host.sync.dispatcher("a").lease  # held, but this host serves no requests
        assert lease is not None and lease.acquire()
        for command in ("retry", "backfill"):
            code, out = cli(capsys, "sync", command, "a", "--config", str(config), "--wait", "0.2")
            assert code == 1
            assert f"which did not take the {command} request within 0.2s; nothing was done" in out
        rid = old_host.sync.records.post_request("a", "retry")  # as a slower host would see it
        code, out = cli(capsys, "sync", "status", "--config", str(config))
        assert code == 0 and f"a: retry request {rid} pending for" in out
        assert old_host.sync.records.cancel_request("a", rid)
        lease.release()
    code, out = cli(capsys, "sync", "backfill", "a", "--config", str(config), "--wait", "0.2", "--json")
    assert code == 0 and json.loads(out)["sectors"] == 10  # nobody holds it now: done here
    code, out = cli(capsys, "sync", "retry", "a", "--config", str(config), "--wait", "-1")
    assert code == 2 and "--wait" in out
