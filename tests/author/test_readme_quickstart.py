"""README's "Write a plugin in five minutes" works as written: its shell commands, copied out of
README.md, run in a fresh temp dir; then the new plugin is listed and has received every change
(its sink equals the KV in the demo, its cursor is at the log head, no dead letters) and passes
the SyncSectorState contracts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

from support import ROOT, python_env


def quickstart_commands() -> List[str]:
    """The ```sh lines of the section's introduction (before its first ### heading)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Write a plugin in five minutes", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert blocks, "no sh block in the quickstart section"
    lines = [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def run(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_quickstart_commands_run_as_written_and_the_plugin_receives_events(tmp_path: Path) -> None:
    commands = quickstart_commands()
    assert commands[0].startswith("sectorhooks plugin new mysink --kind SyncSectorState")
    env = python_env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("SECTORHOOKS_CONFIG", None)
    work = tmp_path / "fresh"
    work.mkdir()
    outputs = {}
    for command in commands:
        proc = run(command, work, env)
        outputs[command] = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"README command failed: {command}\n{outputs[command]}"
    assert (work / "host.toml").is_file() and (work / "plugins" / "mysink" / "manifest.toml").is_file()

    listed = run("sectorhooks plugins list --config host.toml --json", work, env)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["mysink"]["status"] in ("loaded", "active"), plugins["mysink"]
    assert plugins["mysink"]["kind"] == "SyncSectorState"

    demo = next(out for cmd, out in outputs.items() if cmd.startswith("sectorhooks demo"))
    row = next(line for line in demo.splitlines() if re.match(r"\W*mysink\s", line))
    assert row.rstrip("│ ").endswith("yes"), row  # the "= KV" column
    assert "consistent" in demo

    status = run("sectorhooks sync status --config host.toml --json", work, env)
    syncers = {s["name"]: s for s in json.loads(status.stdout)["syncers"]}
    mine = syncers["mysink"]
    assert mine["head"] > 0 and mine["cursor"] == mine["head"] and mine["dead_letters"] == 0, mine

    suite = next(out for cmd, out in outputs.items() if cmd.startswith("pytest"))
    assert "sectorhooks contracts: SyncSectorState plugin 'mysink'" in suite
    assert "4 contract(s) kept, 0 broken" in suite, suite


def test_plugin_new_never_overwrites_host_toml_and_says_what_to_add(tmp_path: Path) -> None:
    env = python_env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    (tmp_path / "host.toml").write_text("# mine\n")
    proc = run("sectorhooks plugin new other --kind SyncSectorState plugins", tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "host.toml").read_text() == "# mine\n"
    out = " ".join(proc.stdout.split())
    assert "host.toml exists: not changed" in out and "'plugins' to its [Common.Plugins] Dir" in out
    assert "[[Common.Syncers]] entry with PluginName = 'other'" in out
