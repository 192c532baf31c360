"""``sectorhooks demo``: the README's first command, end to end on the embedded defaults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sectorhooks.cli import run

SECTORHOOKS = [shutil.which("sectorhooks", path=str(Path(sys.executable).parent)) or "sectorhooks"]


def _files_under(root: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(root))


def test_demo_json_300_sectors_reports_every_sink_equal_to_the_kv(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo's temp dir lands here, and must go
    proc = subprocess.run(
        [*SECTORHOOKS, "demo", "--json", "--sectors", "300"],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["consistent"] is True and summary["ok"] is True and summary["errors"] == []
    assert [s["name"] for s in summary["sinks"]] == ["dashboard", "audit", "billing"]
    for sink in summary["sinks"]:
        assert sink["equal_to_kv"] is True, sink
        assert sink["rows"] == sink["kv_rows"] == 300
        assert sink["lag_events"] == 0 and sink["dead_letters"] == 0
    assert summary["kv_sectors"] == 300 and sum(summary["states"].values()) == 300
    assert summary["counters"] and all(c["equal"] for c in summary["counters"].values())
    assert not Path(summary["dir"]).exists(), "the temp demo dir is removed unless --keep"


def test_demo_summary_matches_what_is_on_disk_and_in_the_kv(tmp_path: Path, capsys) -> None:
    d = tmp_path / "demo"
    assert run(["demo", "--json", "--sectors", "120", "--miners", "2", "--dir", str(d), "--seed", "7"]) == 0
    s = json.loads(capsys.readouterr().out)
    fates = s["sectors_by_fate"]
    assert fates["allocated"] + fates["imported"] == 120
    assert fates["sealed"] + fates["aborted"] + fates["inflight"] == fates["allocated"]
    assert s["miners"] == [1000, 1001]
    assert s["states"].get("Aborted", 0) == fates["aborted"]
    # every sealed sector got a sealed file and a cache p_aux, upgrades two more, deals a piece file
    assert sum(s["files"].values()) == _files_under(d / "stores")
    assert (
        sum(v for k, v in s["files"].items() if k != "pieces") == 2 * fates["sealed"] + 2 * fates["upgraded"]
    )
    sealed = list((d / "stores").glob("persist-*/sealed/**/s-t0100*-*"))
    assert len(sealed) == fates["sealed"]
    counters = s["counters"]
    assert sum(c["counter"] for c in counters.values()) == fates["sealed"]
    # a second run in the same dir adds new sectors after the existing ones, and stays consistent
    assert run(["demo", "--json", "--sectors", "30", "--miners", "2", "--dir", str(d)]) == 0
    s2 = json.loads(capsys.readouterr().out)
    assert s2["kv_sectors"] == 150 and s2["consistent"] is True


def test_demo_table_output_ends_with_the_verdict(tmp_path: Path, capsys) -> None:
    assert run(["demo", "--sectors", "20", "--dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "sinks" in out and "dashboard" in out and "atomic_counter vs KV" in out
    assert out.rstrip().endswith("consistent: every sink equals the KV")


def test_demo_refuses_dir_and_config_together(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    assert run(["demo", "--dir", str(tmp_path / "d"), "--config", str(cfg)]) == 2


def test_demo_with_a_bad_config_exits_1_naming_the_key(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[Common]\nDataDir = "data"\n[[Common.PersistStores]]\nName = "p"\n')
    assert run(["demo", "--config", str(cfg), "--sectors", "5"]) == 1
    assert "Common.PersistStores[0].Path" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [1, 2])
def test_fates_are_reproducible_per_seed(seed: int) -> None:
    from sectorhooks.demo.pipeline import DemoOptions, Pipeline
    from sectorhooks_spec import SectorID

    def fates(s: int) -> list:
        p = Pipeline.__new__(Pipeline)
        p.opt = DemoOptions(seed=s)
        return [p.fate(SectorID(1000, n))[0] for n in range(1, 400)]

    assert fates(seed) == fates(seed)
    assert fates(seed) != fates(seed + 10)
    assert {"import", "abort", "inflight", "seal"} == set(fates(seed))
