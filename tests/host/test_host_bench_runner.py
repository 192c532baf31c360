"""``benchmarks/run.py``: runs every bench module, a failing one does not stop the rest, exit 1."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"

GOOD = """
def run(quick):
    return [{"group": "g", "name": "fast " + str(quick), "ours": 10.0, "baseline": 5.0,
             "baseline_name": "b", "ratio": 2.0, "unit": "ops/s", "goal": 1.5}]
"""
MISSED = """
def run(quick):
    return [{"group": "g", "name": "slow", "ours": 1.0, "baseline": 4.0,
             "baseline_name": "b", "ratio": 0.25, "unit": "ops/s", "goal": ">= 0.5"}]
"""
BAD = """
def run(quick):
    raise RuntimeError("server down")
"""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("bench_runner_under_test", RUN_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, body in [("bench_alpha", GOOD), ("bench_beta", BAD), ("bench_gamma", MISSED)]:
        (tmp_path / f"{name}.py").write_text(body)
    (tmp_path / "helper.py").write_text("raise SystemExit('not a bench module')\n")
    monkeypatch.setattr(module, "HERE", tmp_path)
    yield module
    for name in ["bench_alpha", "bench_beta", "bench_gamma"]:
        sys.modules.pop(name, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def test_failing_module_is_reported_and_the_rest_still_run(
    runner: Any, capsys: pytest.CaptureFixture
) -> None:
    code = runner.main(["--quick", "--json"])
    out = capsys.readouterr()
    assert code == 1
    data = json.loads(out.out)
    assert [(r["module"], r["name"]) for r in data["rows"]] == [
        ("bench_alpha", "fast True"),
        ("bench_gamma", "slow"),
    ]
    assert data["failures"] == [{"module": "bench_beta", "error": "RuntimeError: server down"}]
    assert "server down" in out.err


def test_table_marks_goals_and_only_selects_modules(runner: Any, capsys: pytest.CaptureFixture) -> None:
    assert runner.main(["--only", "alpha", "--only", "bench_gamma"]) == 0
    out = capsys.readouterr().out
    for text in [
        "group",
        "name",
        "ours",
        "baseline",
        "ratio",
        "goal",
        "fast False",
        "slow",
        ">= 1.5",
        ">= 0.5",
    ]:
        assert text in out
    assert runner.goal_met(2.0, 1.5) is True
    assert runner.goal_met(0.25, ">= 0.5") is False
    assert runner.goal_met(3.0, "<= 2") is False
    assert runner.goal_met(1.0, "fast enough") is None


def test_unknown_only_name_is_a_usage_error(runner: Any) -> None:
    with pytest.raises(SystemExit) as info:
        runner.main(["--only", "nope"])
    assert info.value.code == 2
