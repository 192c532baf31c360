"""``sectorhooks store list``: table and JSON, capacity from the real filesystem, config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sectorhooks.cli import run
from sectorhooks.loader import bundled_plugins_dir

FSSTORE_DIR = bundled_plugins_dir() / "fsstore"


def write(tmp_path: Path, stores: str) -> str:
    cfg = tmp_path / "host.toml"
    cfg.write_text(
        f'[Common]\nDataDir = "data"\n[Common.Plugins]\nDir = ["{FSSTORE_DIR}"]\nBundled = false\n'
        f"EntryPoints = false\n{stores}"
    )
    return str(cfg)


STORES = """
[[Common.PieceStores]]
Name = "pieces"
Path = "pieces"
[[Common.PersistStores]]
Name = "archive"
Path = "archive"
ReadOnly = true
AllowMiners = [1000]
"""


def test_store_list_json_reports_every_store_with_real_capacity(tmp_path: Path, capsys) -> None:
    (tmp_path / "archive").mkdir()
    assert run(["store", "list", "--json", "--config", write(tmp_path, STORES)]) == 0
    rows = json.loads(capsys.readouterr().out)["stores"]
    assert [(r["name"], r["role"], r["plugin"], r["read_only"]) for r in rows] == [
        ("pieces", "piece", "fsstore", False),
        ("archive", "persist", "fsstore", True),
    ]
    assert rows[1]["path"] == str(tmp_path / "archive") and rows[1]["allow_miners"] == [1000]
    assert rows[0]["total"] == shutil.disk_usage(tmp_path).total
    assert rows[0]["free"] + rows[0]["used"] <= rows[0]["total"]


def test_store_list_table_names_the_stores(tmp_path: Path, capsys) -> None:
    (tmp_path / "archive").mkdir()
    assert run(["store", "list", "--config", write(tmp_path, STORES)]) == 0
    out = capsys.readouterr().out
    assert "pieces" in out and "archive" in out and "yes" in out


def test_store_list_bad_config_exits_1_naming_the_key(tmp_path: Path, capsys) -> None:
    cfg = write(tmp_path, '[[Common.PersistStores]]\nName = "p"\nPath = "p"\nPluginName = "nope"\n')
    assert run(["store", "list", "--config", cfg]) == 1
    err = capsys.readouterr().err
    assert "Common.PersistStores[0].PluginName" in err and "'fsstore'" in err


@pytest.mark.parametrize("as_json", [False, True])
def test_store_list_without_stores(tmp_path: Path, capsys, as_json: bool) -> None:
    assert run(["store", "list", "--config", write(tmp_path, ""), *(["--json"] if as_json else [])]) == 0
    out = capsys.readouterr().out
    assert (json.loads(out) == {"stores": []}) if as_json else ("no stores configured" in out)
