"""Host config: every bad key names the file and the key path; paths resolve against the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sectorhooks.config import load_config
from sectorhooks.errors import ConfigError

SAMPLE = """
[Common]
DataDir = "state"

[Common.Plugins]
Dir = ["plugins", "/opt/more-plugins"]
Disabled = ["rediskv"]
EntryPoints = false

[Common.Plugins.Config.sqlsync]
echo = true

[Common.DB]
Driver = "plugin"

[Common.DB.Plugin]
PluginName = "sqlkv"
Meta = { url = "sqlite:///meta.sqlite" }

[[Common.PieceStores]]
Name = "pieces"
Path = "/data/pieces"
Meta = { SubDirPattern = "{type}/{sector}" }

[[Common.PersistStores]]
Name = "p1"
Path = "persist1"
ReadOnly = true
Weight = 3
AllowMiners = [1000]

[[Common.Syncers]]
Name = "dashboard"
PluginName = "sqlsync"
Meta = { url = "postgresql+psycopg://postgres@127.0.0.1/test" }

[Common.Sync]
BatchSize = 200
PollInterval = 1
OnFailure = "stop"

[Common.API]
Listen = "127.0.0.1:9999"
RouteGate = true
Tenants = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "host.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_sample_config_parses_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, SAMPLE)
    config = load_config(path)
    assert config.path == str(path)
    assert config.data_dir == tmp_path / "state"
    assert config.plugins.dirs == (tmp_path / "plugins", Path("/opt/more-plugins"))
    assert config.plugins.disabled == ("rediskv",)
    assert config.plugins.entry_points is False and config.plugins.bundled is True
    assert config.plugin_config("sqlsync") == {"echo": True}
    assert config.plugin_config("other") == {}
    assert config.db is not None and config.db.plugin_name == "sqlkv"
    # a relative SQLite URL is a path too: relative to the file, not to the working directory
    assert config.db.meta == {"url": f"sqlite:///{tmp_path}/meta.sqlite"}
    (pieces,) = config.piece_stores
    assert (pieces.name, pieces.path, pieces.plugin_name) == ("pieces", "/data/pieces", "fsstore")
    (p1,) = config.persist_stores
    assert p1.path == str(tmp_path / "persist1") and p1.read_only and p1.weight == 3
    assert p1.allow_miners == (1000,)
    (syncer,) = config.syncers
    assert (syncer.name, syncer.plugin_name) == ("dashboard", "sqlsync")
    assert config.sync.batch_size == 200 and config.sync.poll_interval == 1.0
    assert isinstance(config.sync.poll_interval, float) and config.sync.on_failure == "stop"
    assert config.api.listen == "127.0.0.1:9999"
    assert config.api.route_gate and config.api.tenants and not config.api.dev_mode


def test_single_dir_string_is_accepted(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[Common.Plugins]\nDir = "mine"\n'))
    assert config.plugins.dirs == (tmp_path / "mine",)


def test_no_config_gives_defaults() -> None:
    config = load_config(None)
    assert config.path == "<defaults>" and config.db is None and config.plugins.bundled


BAD = [
    ("top-level-typo", "[Comon]\n", "Comon", "unknown key 'Comon'", "did you mean 'Common'?"),
    (
        "plugins-typo",
        "[Common.Plugins]\nDirs = []\n",
        "Common.Plugins.Dirs",
        "unknown key 'Dirs'",
        "did you mean 'Dir'?",
    ),
    (
        "db-plugin-typo",
        '[Common.DB.Plugin]\nPluginName = "x"\nMetta = {}\n',
        "Common.DB.Plugin.Metta",
        "unknown key",
        "'Meta'",
    ),
    (
        "syncer-typo",
        '[[Common.Syncers]]\nName = "a"\nPlugin = "sqlsync"\n',
        "Common.Syncers[0].Plugin",
        "unknown key 'Plugin'",
        "did you mean 'PluginName'?",
    ),
    (
        "store-typo",
        '[[Common.PieceStores]]\nName = "a"\nPath = "/x"\nReadonly = true\n',
        "Common.PieceStores[0].Readonly",
        "unknown key",
        "did you mean 'ReadOnly'?",
    ),
    (
        "wrong-type-int",
        '[Common.Sync]\nBatchSize = "many"\n',
        "Common.Sync.BatchSize",
        "must be int, got str 'many'",
        "",
    ),
    (
        "bool-is-not-a-number",
        "[Common.Sync]\nMaxAttempts = true\n",
        "Common.Sync.MaxAttempts",
        "must be a number",
        "",
    ),
    ("wrong-type-bool", '[Common.API]\nDevMode = "yes"\n', "Common.API.DevMode", "must be bool", ""),
    ("gate-not-bool", "[Common.API]\nRouteGate = 1\n", "Common.API.RouteGate", "must be bool, got int", ""),
    (
        "tenants-without-gate",
        "[Common.API]\nTenants = true\n",
        "Common.API.Tenants",
        "tenant checks are part of the route gate",
        "set RouteGate = true too",
    ),
    ("wrong-type-table", "[Common]\nPlugins = 3\n", "Common.Plugins", "must be dict, got int", ""),
    (
        "disabled-not-strings",
        "[Common.Plugins]\nDisabled = [1]\n",
        "Common.Plugins.Disabled",
        "must be strings",
        "",
    ),
    (
        "plugin-table-not-table",
        "[Common.Plugins.Config]\nsqlsync = 1\n",
        "Common.Plugins.Config.sqlsync",
        "must be a table",
        "",
    ),
    (
        "missing-store-path",
        '[[Common.PieceStores]]\nName = "a"\n',
        "Common.PieceStores[0].Path",
        "missing required key 'Path'",
        "",
    ),
    (
        "duplicate-store-name",
        '[[Common.PersistStores]]\nName = "a"\nPath = "/x"\n'
        '[[Common.PersistStores]]\nName = "a"\nPath = "/y"\n',
        "Common.PersistStores[1].Name",
        "duplicate store name 'a'",
        "",
    ),
    (
        "duplicate-syncer-name",
        '[[Common.Syncers]]\nName = "a"\nPluginName = "s"\n'
        '[[Common.Syncers]]\nName = "a"\nPluginName = "s"\n',
        "Common.Syncers[1].Name",
        "duplicate syncer name 'a'",
        "",
    ),
    (
        "missing-plugin-name",
        "[Common.DB.Plugin]\nMeta = {}\n",
        "Common.DB.Plugin.PluginName",
        "missing required key",
        "",
    ),
    (
        "unsupported-driver",
        '[Common.DB]\nDriver = "badger"\n',
        "Common.DB.Driver",
        "unsupported driver 'badger'",
        "plugin",
    ),
    (
        "bad-on-failure",
        '[Common.Sync]\nOnFailure = "ignore"\n',
        "Common.Sync.OnFailure",
        "unknown value 'ignore'",
        "dead-letter",
    ),
    (
        "miners-not-integers",
        '[[Common.PieceStores]]\nName = "a"\nPath = "/x"\nDenyMiners = ["t01000"]\n',
        "Common.PieceStores[0].DenyMiners",
        "must be integers (miner IDs), got 't01000'",
        "",
    ),
    ("stores-not-array", '[Common.PieceStores]\nName = "a"\n', "Common.PieceStores", "must be list", ""),
]


@pytest.mark.parametrize(("case", "text", "key", "message", "hint"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_file_and_key_path(
    tmp_path: Path, case: str, text: str, key: str, message: str, hint: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.path == str(path)
    assert err.key == key
    assert str(err).startswith(f"{path}: [{key}] ")
    assert message in str(err)
    assert hint in str(err)


def test_toml_syntax_error_in_config_gives_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "[Common]\nDataDir = nope\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "TOML syntax error" in str(info.value)
    assert "line 2, column 11" in str(info.value)


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")
