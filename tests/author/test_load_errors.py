"""A plugin whose module does not import is reported naming its own file and line (#19 item 3):
a syntax error at the line and column Python found it, any other import error at the deepest
line of the plugin's own files (not ``<frozen importlib._bootstrap>``)."""

from __future__ import annotations

from pathlib import Path

from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost, PluginStatus

MANIFEST = """name = "{name}"
kind = "RegisterJsonRpc"
export = [ {{ extPoint = "Handler", impl = "handler" }} ]
"""


def load(tmp_path: Path, name: str, files: dict) -> str:
    plugin = tmp_path / "plugins" / name
    plugin.mkdir(parents=True)
    (plugin / "manifest.toml").write_text(MANIFEST.format(name=name))
    for fname, text in files.items():
        (plugin / fname).write_text(text)
    config = HostConfig(
        data_dir=tmp_path / "data",
        plugins=PluginsConfig(dirs=(plugin,), bundled=False, entry_points=False),
    )
    host = PluginHost(config).load()
    record = host.records[name]
    assert record.status is PluginStatus.FAILED, record.status
    assert "frozen importlib" not in record.error, record.error
    return record.error


def test_a_syntax_error_names_the_plugin_file_line_and_column(tmp_path: Path) -> None:
    error = load(tmp_path, "badsyntax", {"badsyntax.py": "import os\n\n\ndef handler(:\n    pass\n"})
    path = tmp_path / "plugins" / "badsyntax" / "badsyntax.py"
    assert f"SyntaxError: invalid syntax at {path}:4:13" in error, error
    assert "def handler(:" in error


def test_a_syntax_error_in_a_helper_module_names_that_file(tmp_path: Path) -> None:
    error = load(
        tmp_path,
        "badhelper",
        {"badhelper.py": "from . import helper\n\n\ndef handler():\n    pass\n", "helper.py": "x = = 1\n"},
    )
    assert f"at {tmp_path / 'plugins' / 'badhelper' / 'helper.py'}:1:" in error, error


def test_an_import_error_names_the_plugin_line_that_imports(tmp_path: Path) -> None:
    error = load(
        tmp_path,
        "missingdep",
        {"missingdep.py": '"""doc"""\nimport os\nimport no_such_module_xyz\n\n\ndef handler():\n    pass\n'},
    )
    assert "ModuleNotFoundError: No module named 'no_such_module_xyz'" in error, error
    assert error.endswith(f"at {tmp_path / 'plugins' / 'missingdep' / 'missingdep.py'}:3"), error


def test_an_error_raised_in_a_library_names_the_plugin_line_that_called_it(tmp_path: Path) -> None:
    error = load(
        tmp_path,
        "libraise",
        {"libraise.py": "import json\n\nCONFIG = json.loads('{not json')\n\n\ndef handler():\n    pass\n"},
    )
    assert "JSONDecodeError" in error, error
    assert error.endswith(f"at {tmp_path / 'plugins' / 'libraise' / 'libraise.py'}:3"), error
