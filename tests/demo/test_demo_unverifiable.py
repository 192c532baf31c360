"""A sink that cannot be read back (its plugin exports no ReadBack) is reported unverifiable by
the demo, and its verdict names it instead of "every sink equals the KV" (#19 finding 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sectorhooks.cli import run
from sectorhooks.demo import CONFIG_NAME, write_starter_config

NOTES = """
SEEN = {}

def on_any(syncer, sector_id, state_json):
    SEEN[str(sector_id)] = state_json

def on_init(syncer, sectors, states_json):
    for a, sj in zip(sectors, states_json):
        SEEN[str(a.id)] = sj
"""

MANIFEST = """name = "notes"
kind = "SyncSectorState"
module = "notes"
export = [
  { extPoint = "OnImport", impl = "on_import" },
  { extPoint = "OnInit", impl = "on_init" },
  { extPoint = "OnUpdate", impl = "on_any" },
  { extPoint = "OnFinalize", impl = "on_any" },
  { extPoint = "OnRestore", impl = "on_any" },
]
"""


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    """A demo directory whose config also loads ``notes``, a syncer without ReadBack."""
    d = tmp_path / "run"
    plugin = d / "plugins" / "notes"
    plugin.mkdir(parents=True)
    (plugin / "manifest.toml").write_text(MANIFEST, encoding="utf-8")
    body = NOTES + "\ndef on_import(syncer, state_json):\n    pass\n"
    (plugin / "notes.py").write_text(body, encoding="utf-8")
    config = d / CONFIG_NAME
    write_starter_config(config)
    text = config.read_text(encoding="utf-8")
    assert text.count("Dir = []") == 1
    config.write_text(text.replace("Dir = []", 'Dir = ["plugins"]'), encoding="utf-8")
    return d


def test_demo_names_the_unverifiable_sink_and_does_not_call_every_sink_equal(
    demo_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["demo", "--json", "--sectors", "12", "--dir", str(demo_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    sinks = {s["name"]: s for s in summary["sinks"]}
    assert sinks["notes"]["equal_to_kv"] is None and sinks["notes"]["rows"] is None
    assert "has no ReadBack extension point" in sinks["notes"]["unverifiable"]
    assert summary["unverifiable"] == ["notes"]
    assert all(
        sinks[n]["equal_to_kv"] is True and sinks[n]["unverifiable"] is None for n in ("audit", "billing")
    )

    assert run(["demo", "--sectors", "0", "--dir", str(demo_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the console may wrap the verdict
    assert "every sink equals the KV" not in out
    assert "could not check notes" in out and "unverifiable" in out
