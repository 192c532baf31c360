"""``plugin new`` writes a host.toml that loads the plugin (never overwriting one) and refuses a
bundled plugin's name; ``plugin check`` warns when the name is taken by a bundled, installed or
configured plugin (#19 findings 5 and 7)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from sectorhooks.cli import main
from sectorhooks.config import load_config
from sectorhooks.host import PluginHost, PluginStatus


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


def test_plugin_new_sqlsync_is_refused_naming_the_bundled_plugin(tmp_path: Path) -> None:
    out = cli("plugin", "new", "SqlSync", "--kind", "SyncSectorState", str(tmp_path), code=2)
    assert "plugin name 'SqlSync' is taken by the bundled plugin 'sqlsync'" in out
    assert "choose another name" in out
    assert list(tmp_path.iterdir()) == []


def test_plugin_check_warns_when_the_name_is_a_bundled_plugins(tmp_path: Path) -> None:
    cli("plugin", "new", "memdb_x", "--kind", "KVStore", str(tmp_path))
    plugin = tmp_path / "memdb_x"
    manifest = plugin / "manifest.toml"
    manifest.write_text(manifest.read_text().replace('name = "memdb_x"', 'name = "memdb"'))
    out = cli("plugin", "check", str(plugin))
    assert "warning: plugin name 'memdb' is also the name of the bundled plugin 'memdb'" in out
    assert "rename yours" in out and f"ok {plugin}" in out
    data = json.loads(CliRunner().invoke(main, ["plugin", "check", str(plugin), "--json"]).output)
    assert data["ok"] is True and len(data["warnings"]) == 1


def test_plugin_check_warns_when_a_configured_dir_holds_the_same_name(tmp_path: Path) -> None:
    cli("plugin", "new", "twin", "--kind", "KVStore", str(tmp_path / "a"))
    cli("plugin", "new", "Twin", "--kind", "KVStore", str(tmp_path / "b"))
    out = cli("plugin", "check", str(tmp_path / "b" / "Twin"), "--config", str(tmp_path / "host.toml"))
    assert "plugin name 'Twin' is also the name of the configured plugin 'twin'" in out, out
    assert "warning" not in cli("plugin", "check", str(tmp_path / "a" / "twin"))


def test_plugin_new_writes_a_host_toml_that_loads_the_plugin_and_its_syncer(tmp_path: Path) -> None:
    out = cli("plugin", "new", "mysink", "--kind", "SyncSectorState", str(tmp_path / "plugins"))
    config_file = tmp_path / "host.toml"
    assert f"wrote {config_file}" in out
    config = load_config(config_file)
    assert config.plugins.dirs == (tmp_path / "plugins",)
    assert [(s.name, s.plugin_name, s.isolation) for s in config.syncers] == [("mysink", "mysink", "thread")]
    host = PluginHost(config).load()
    assert host.records["mysink"].status is PluginStatus.LOADED, host.records["mysink"].error


def test_plugin_new_here_writes_host_toml_here_and_no_syncer_for_other_kinds(tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        cli("plugin", "new", "mykv", "--kind", "KVStore")
    finally:
        os.chdir(cwd)
    config = load_config(tmp_path / "host.toml")
    assert config.plugins.dirs == (tmp_path,) and config.syncers == ()
    assert PluginHost(config).load().records["mykv"].status is PluginStatus.LOADED


def test_dir_given_twice_differently_is_refused(tmp_path: Path) -> None:
    out = cli(
        "plugin", "new", "x", "--kind", "KVStore", str(tmp_path / "a"), "--dir", str(tmp_path / "b"), code=2
    )
    assert "give the directory once" in out
