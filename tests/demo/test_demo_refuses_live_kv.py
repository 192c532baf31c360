"""``demo --config`` never writes simulated sectors into a KV a live host serves, nor (without
--yes) into one that already holds sectors; it says why and what to run instead, at once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List

from rpc.servekit import Served, cli
from sectorhooks.cli import run
from sectorhooks.config import load_config
from sectorhooks.runtime import Runtime


def _sectors(config: Path) -> List[str]:
    with Runtime.open(load_config(config), start_sync=False, filestores=False) as rt:
        return sorted(str(s.id) for s in rt.state.list())


def test_demo_config_refuses_a_kv_that_a_running_serve_serves(tmp_path: Path) -> None:
    config = tmp_path / "host.toml"
    assert run(["init", str(config), "--sinks", "1"]) == 0
    served = Served(config)  # what `init` suggests next to `demo --config`
    try:
        started = time.monotonic()
        done = cli(config, "demo", "--sectors", "20", "--timeout", "600", timeout=120)
        took = time.monotonic() - started
        assert done.returncode == 1, done.stdout + done.stderr
        err = " ".join(done.stderr.split())  # rich wraps long lines
        assert "a live host serves this KV" in err
        assert f"pid {served.proc.pid}" in err and "last beat" in err
        assert "Run `sectorhooks demo` without --config (it uses its own temp data)" in err
        assert "or stop that host" in err
        assert took < 60  # said at once, not after a 600 s wait for sinks it cannot feed
        with_yes = cli(config, "demo", "--sectors", "20", "--yes", timeout=120)
        assert with_yes.returncode == 1 and "a live host serves this KV" in " ".join(with_yes.stderr.split())
        assert served.stop() == 0
    finally:
        served.kill()
    assert _sectors(config) == []  # nothing simulated reached the operator's KV


def test_demo_config_refuses_a_kv_that_already_holds_sectors_unless_yes(tmp_path: Path, capsys) -> None:
    config = tmp_path / "host.toml"
    assert run(["init", str(config), "--sinks", "1"]) == 0
    assert run(["demo", "--config", str(config), "--sectors", "5", "--json"]) == 0  # a fresh KV: fine
    before = _sectors(config)
    assert len(before) == 5
    capsys.readouterr()
    assert run(["demo", "--config", str(config), "--sectors", "5", "--json"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "the KV already holds sectors (e.g. s-t01000-" in err
    assert "pass --yes to write into this KV anyway" in err
    assert "without --config (it uses its own temp data)" in err
    assert _sectors(config) == before
    assert run(["demo", "--config", str(config), "--sectors", "5", "--json", "--yes"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["consistent"] is True and summary["kv_sectors"] == 10
    assert run(["demo", "--config", str(config), "--sectors", "0", "--json"]) == 0  # only verifies: no --yes
