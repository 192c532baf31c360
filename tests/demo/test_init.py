"""``sectorhooks init``: a commented starter config that loads and runs the demo."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Tuple

from sectorhooks.cli import run
from sectorhooks.config import load_config
from sectorhooks.demo import starter_config


def test_init_writes_a_config_that_loads(tmp_path: Path, capsys) -> None:
    path = tmp_path / "etc" / "sectorhooks.toml"
    assert run(["init", str(path)]) == 0
    assert "sectorhooks demo --config" in capsys.readouterr().out
    config = load_config(path)
    assert config.data_dir == tmp_path / "etc" / "data"
    assert config.db is not None and config.db.plugin_name == "sqlkv"
    assert [s.name for s in config.piece_stores] == ["pieces"]
    assert [(s.name, s.weight) for s in config.persist_stores] == [("persist-1", 2), ("persist-2", 1)]
    assert [(s.name, s.plugin_name) for s in config.syncers] == [
        ("dashboard", "sqlsync"),
        ("audit", "sqlsync"),
        ("billing", "sqlsync"),
    ]
    assert config.api.listen == "127.0.0.1:1789" and config.sync.on_failure == "dead-letter"


def test_every_section_of_the_starter_config_is_commented(tmp_path: Path) -> None:
    text = starter_config(tmp_path)
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if re.match(r"^\[\[?Common", line)]
    assert len(headers) >= 10
    sections = {lines[i].strip("[]") for i in headers}
    assert {
        "Common",
        "Common.Plugins",
        "Common.DB",
        "Common.DB.Plugin",
        "Common.DB.Plugin.Meta",
        "Common.PieceStores",
        "Common.PersistStores",
        "Common.Syncers",
        "Common.Sync",
        "Common.API",
    } <= sections
    for i in headers:
        # a comment right above the header, or on one of the keys right below it
        block = lines[max(0, i - 2) : i] + lines[i + 1 : i + 4]
        assert any("#" in line for line in block), f"section {lines[i]} has no comment"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys) -> None:
    path = tmp_path / "sectorhooks.toml"
    path.write_text("# mine\n")
    assert run(["init", str(path)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert path.read_text() == "# mine\n"
    assert run(["init", str(path), "--force"]) == 0
    assert load_config(path).syncers


def test_init_output_runs_the_demo(tmp_path: Path, capsys) -> None:
    path = tmp_path / "sectorhooks.toml"
    assert run(["init", str(path), "--sinks", "2"]) == 0
    capsys.readouterr()
    assert run(["demo", "--config", str(path), "--sectors", "60", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["consistent"] is True
    assert [(s["name"], s["equal_to_kv"], s["rows"]) for s in summary["sinks"]] == [
        ("dashboard", True, 60),
        ("audit", True, 60),
    ]
    assert (tmp_path / "data" / "kv.sqlite3").is_file()
    assert (tmp_path / "sinks" / "audit.sqlite").is_file()
    assert any((tmp_path / "stores" / "persist-1" / "sealed").iterdir())


def test_demo_runs_against_postgresql_and_mariadb(
    tmp_path: Path, pg_database: Tuple[str, str], mysql_database: Tuple[str, str], capsys
) -> None:
    pg_url, _ = pg_database
    my_url, _ = mysql_database
    path = tmp_path / "real.toml"
    path.write_text(starter_config(tmp_path, kv_url=pg_url, sink_urls={"pg": pg_url, "maria": my_url}))
    assert run(["demo", "--config", str(path), "--sectors", "80", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["consistent"] is True, summary["sinks"]
    assert [(s["name"], s["equal_to_kv"], s["rows"]) for s in summary["sinks"]] == [
        ("pg", True, 80),
        ("maria", True, 80),
    ]
    assert not (tmp_path / "data" / "kv.sqlite3").exists(), "the KV is on PostgreSQL"


def test_init_writes_paths_relative_to_the_file_and_names_itself(tmp_path: Path, monkeypatch, capsys) -> None:
    etc = tmp_path / "etc"
    path = etc / "host.toml"
    assert run(["init", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"path": str(path), "sinks": 3}
    text = path.read_text()
    assert str(tmp_path) not in text, "no absolute path: the directory can move"
    assert "sqlite:////" not in text
    assert "sectorhooks demo --config host.toml" in text and "sectorhooks.toml" not in text
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the file, not to the working directory
    config = load_config(path)
    assert config.db is not None and config.db.meta["url"] == f"sqlite:///{etc}/data/kv.sqlite3"
    assert [s.meta["url"] for s in config.syncers] == [
        f"sqlite:///{etc}/sinks/{name}.sqlite" for name in ("dashboard", "audit", "billing")
    ]
    assert [s.path for s in config.persist_stores] == [
        str(etc / "stores/persist-1"),
        str(etc / "stores/persist-2"),
    ]
