"""Host config: every problem of a file at once (file and key path each), relative SQLite URLs,
the DevMode error's file, and a missing database driver named with the extra that installs it."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sectorhooks.cli import run
from sectorhooks.config import load_config, parse_config, resolve_sqlite_url
from sectorhooks.errors import ConfigError
from support import bundled_module

THREE_MISTAKES = """
[Common.Sync]
BatchSze = 100

[Common.API]
DevMode = "yes"

[[Common.PersistStores]]
Name = "p1"
Path = "persist"
Weight = "two"
"""


def write(tmp_path: Path, text: str, name: str = "host.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_three_mistakes_are_three_problems_in_one_error_each_naming_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_MISTAKES)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    # in the order of the config's sections (Plugins, DB, stores, Syncers, Sync, API, Log)
    assert [(p.path, p.field) for p in err.problems] == [
        (str(path), "Common.PersistStores[0].Weight"),
        (str(path), "Common.Sync.BatchSze"),
        (str(path), "Common.API.DevMode"),
    ]
    assert str(err).splitlines() == [
        f"config {path} has 3 problems:",
        f"  - {path}: [Common.PersistStores[0].Weight] must be int, got str 'two'",
        f"  - {path}: [Common.Sync.BatchSze] unknown key 'BatchSze' (did you mean 'BatchSize'?)",
        f"  - {path}: [Common.API.DevMode] must be bool, got str 'yes'",
    ]
    assert err.path == str(path) and err.key == "Common.PersistStores[0].Weight"


def test_the_cli_prints_every_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, THREE_MISTAKES)
    assert run(["plugins", "list", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert "has 3 problems" in err
    for key in ("Common.Sync.BatchSze", "Common.API.DevMode", "Common.PersistStores[0].Weight"):
        assert f"{path}: [{key}]" in err


def test_a_typo_of_a_required_key_is_one_problem_not_two(tmp_path: Path) -> None:
    path = write(tmp_path, '[[Common.Syncers]]\nName = "a"\nPlugin = "sqlsync"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.field for p in info.value.problems] == ["Common.Syncers[0].Plugin"]
    assert "did you mean 'PluginName'?" in str(info.value)


def test_one_problem_reads_as_before(tmp_path: Path) -> None:
    path = write(tmp_path, "[Common.Sync]\nMaxCrashes = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: [Common.Sync.MaxCrashes] must be at least 1"


# Independent mistakes, each in a key no other one touches: (TOML line(s), table, key path).
MISTAKES: Dict[str, Tuple[str, str]] = {
    "Common.Sync.BatchSze": ("[Common.Sync]", "BatchSze = 1"),
    "Common.Sync.MaxAttempts": ("[Common.Sync]", "MaxAttempts = true"),
    "Common.Sync.OnFailure": ("[Common.Sync]", 'OnFailure = "ignore"'),
    "Common.Sync.WorkerNice": ("[Common.Sync]", "WorkerNice = 40"),
    "Common.API.DevMode": ("[Common.API]", 'DevMode = "yes"'),
    "Common.API.CallTimeout": ("[Common.API]", "CallTimeout = -1"),
    "Common.API.Listen": ("[Common.API]", 'Listen = "1789"'),
    "Common.Plugins.Disabled": ("[Common.Plugins]", "Disabled = [1]"),
    "Common.Plugins.Dirs": ("[Common.Plugins]", "Dirs = []"),
    "Common.Log.Format": ("[Common.Log]", 'Format = "xml"'),
    "Common.Log.Level": ("[Common.Log]", 'Level = "LOUD"'),
    "Common.Log.AccessLog": ("[Common.Log]", 'AccessLog = "on"'),
}


def _config_with(keys: List[str]) -> str:
    tables: Dict[str, List[str]] = {}
    for key in keys:
        table, line = MISTAKES[key]
        tables.setdefault(table, []).append(line)
    return "\n".join(f"{table}\n" + "\n".join(lines) + "\n" for table, lines in tables.items())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(MISTAKES)), min_size=1, unique=True))
def test_every_mistake_is_reported_whatever_else_is_wrong(keys: List[str]) -> None:
    from sectorhooks.config import tomllib  # tomli before 3.11

    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(_config_with(keys)), "h.toml", Path("/etc/sh"))
    assert sorted(p.field for p in info.value.problems) == sorted(keys)
    assert all(p.path == "h.toml" for p in info.value.problems)
    for key in keys:
        assert f"h.toml: [{key}] " in str(info.value)


def test_relative_sqlite_urls_in_meta_resolve_against_the_config_file(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    path = write(
        etc,
        """
        [Common.DB.Plugin]
        PluginName = "sqlkv"
        Meta = { url = "sqlite:///data/kv.sqlite3" }

        [[Common.Syncers]]
        Name = "rel"
        PluginName = "sqlsync"
        Meta = { url = "sqlite+pysqlite:///sinks/rel.sqlite?timeout=5" }

        [[Common.Syncers]]
        Name = "abs"
        PluginName = "sqlsync"
        Meta = { url = "sqlite:////var/lib/mirror.sqlite" }

        [[Common.Syncers]]
        Name = "pg"
        PluginName = "sqlsync"
        Meta = { url = "postgresql+psycopg://postgres@127.0.0.1/test" }
        """,
    )
    config = load_config(path)
    assert config.db is not None and config.db.meta["url"] == f"sqlite:///{etc}/data/kv.sqlite3"
    assert [s.meta["url"] for s in config.syncers] == [
        f"sqlite+pysqlite:///{etc}/sinks/rel.sqlite?timeout=5",
        "sqlite:////var/lib/mirror.sqlite",
        "postgresql+psycopg://postgres@127.0.0.1/test",
    ]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:////abs.db", "redis://h:6379/0"])
def test_urls_that_are_not_relative_files_are_kept(url: str) -> None:
    assert resolve_sqlite_url(Path("/etc/sh"), url) == url


def test_the_dev_mode_error_names_its_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, '[Common]\nDataDir = "data"\n[Common.API]\nDevMode = true\n')
    assert run(["serve", "--config", str(path), "--listen", "0.0.0.0:0"]) == 1
    err = capsys.readouterr().err
    assert f"error: {path}: [Common.API.DevMode] dev mode lets callers in without a token" in err


# --- a database driver that is not installed --------------------------------------------------


def test_a_missing_postgres_driver_names_the_url_key_and_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails as if absent
    path = write(
        tmp_path,
        """
        [Common]
        DataDir = "data"
        [Common.DB.Plugin]
        PluginName = "sqlkv"
        Meta = { url = "postgresql+psycopg://postgres:hunter2@127.0.0.1/sectors" }
        """,
    )
    assert run(["token", "list", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: [Common.DB.Plugin.Meta.url] postgresql+psycopg://postgres:***@127.0.0.1/sectors" in err
    assert "pip install 'sectorhooks[postgres]'" in err
    assert "hunter2" not in err


def test_a_missing_mysql_driver_of_a_sink_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymysql", None)
    create_engine = bundled_module("sqlsync", "sink").create_engine  # the bundled sink's own module

    with pytest.raises(ModuleNotFoundError) as info:
        create_engine("mysql+pymysql://root@127.0.0.1:3306/test")
    assert "pip install 'sectorhooks[mysql]'" in str(info.value) and info.value.name == "pymysql"


def test_kv_names_the_extra_of_a_known_driver_only() -> None:
    from sectorhooks.kv import missing_driver_message

    hint = missing_driver_message(ModuleNotFoundError("No module named 'psycopg'", name="psycopg"))
    assert hint.endswith("pip install 'sectorhooks[postgres]')")
    other = ModuleNotFoundError("No module named 'oracledb'", name="oracledb")
    assert missing_driver_message(other) == "No module named 'oracledb'"
