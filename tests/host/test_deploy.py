"""The systemd unit in deploy/ runs a command the CLI really has, as its own user, and restarts."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sectorhooks.cli import main

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "sectorhooks.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_the_unit_runs_serve_with_a_config_as_a_dedicated_user_and_restarts_on_failure() -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/sectorhooks") and "serve" in argv and "--config" in argv
    assert service["User"] not in ("", "root") and service["Restart"] == "on-failure"
    assert int(service["LimitNOFILE"]) >= 4096  # the host warns below this
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 15


def test_every_option_the_unit_passes_is_one_the_cli_knows() -> None:
    argv = shlex.split(unit()["Service"]["ExecStart"])[1:]
    config = argv[argv.index("--config") + 1]
    # Everything but the config path: the options must parse (--help stops before running).
    args = [a for a in argv if a != config and a != "--config"]
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong_with_the_unit_but_the_missing_binary() -> None:
    out = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert all("/opt/sectorhooks/bin/sectorhooks" in line for line in problems), problems
