"""Entry-point discovery: a distribution built and installed inside the test is found and loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List

import pytest

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "sh-ep-{tag}"
version = "2.3.4"
requires-python = ">=3.9"

[project.entry-points."sectorhooks.plugins"]
epdemo_{tag} = "sh_ep_{tag}"

[tool.hatch.build.targets.wheel]
packages = ["sh_ep_{tag}"]
"""

MANIFEST = """
name = "epdemo_{tag}"
description = "installed through an entry point"
kind = "RegisterJsonRpc"
module = "api"
version = "2.3.4"
export = [{{ extPoint = "Handler", impl = "handler" }}]
"""

API = """
from ._names import NAMESPACE

class Api:
    def Ping(self):
        return "pong"

def handler():
    return NAMESPACE, Api()
"""


def _cli() -> List[str]:
    script = Path(sys.executable).parent / "sectorhooks"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from sectorhooks.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """Build the demo distribution with hatchling and ``pip install --target`` it; returns paths."""
    root = tmp_path_factory.mktemp("ep")
    tag = os.urandom(3).hex()
    project = root / "project"
    pkg = project / f"sh_ep_{tag}"
    pkg.mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT.format(tag=tag)))
    (pkg / "__init__.py").write_text("")
    (pkg / "manifest.toml").write_text(textwrap.dedent(MANIFEST.format(tag=tag)))
    (pkg / "api.py").write_text(textwrap.dedent(API))
    (pkg / "_names.py").write_text("NAMESPACE = 'EpDemo'\n")
    target = root / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / f"sh_ep_{tag}" / "manifest.toml").is_file(), "hatchling dropped the manifest"
    return {"tag": tag, "target": str(target), "root": str(root)}


def run_cli(installed: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([installed["target"], env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    config = Path(installed["root"]) / "host.toml"
    config.write_text(f'[Common]\nDataDir = "{Path(installed["root"]) / "data"}"\n')
    return subprocess.run(
        [*_cli(), *args, "--config", str(config)], capture_output=True, text=True, env=env, timeout=120
    )


def test_installed_distribution_is_listed_by_plugins_list(installed: Dict[str, str]) -> None:
    proc = run_cli(installed, "plugins", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    name = f"epdemo_{installed['tag']}"
    assert name in by_name, data
    record = by_name[name]
    assert record["kind"] == "RegisterJsonRpc"
    assert record["version"] == "2.3.4"
    assert record["status"] == "loaded", record
    assert record["source"] == f"entry-point:sh_ep_{installed['tag']}"
    assert record["manifest"] == str(
        Path(installed["target"]) / f"sh_ep_{installed['tag']}" / "manifest.toml"
    )
    assert data["errors"] == []
    # bundled plugins are still there, ahead of installed ones
    names = list(by_name)
    assert "memdb" in names and names.index("memdb") < names.index(name)


def test_installed_plugin_hooks_are_called(installed: Dict[str, str]) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from sectorhooks.config import HostConfig, PluginsConfig
        from sectorhooks.host import PluginHost
        config = HostConfig(data_dir=Path(sys.argv[1]), plugins=PluginsConfig(bundled=False))
        host = PluginHost(config).load().start()
        ((plugin, (namespace, api)),) = host.broadcast("jsonrpc_handler").results
        print(plugin, namespace, api.Ping())
        """
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([installed["target"], os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(Path(installed["root"]) / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"epdemo_{installed['tag']}", "EpDemo", "pong"]


def test_entry_point_without_manifest_is_reported(tmp_path: Path) -> None:
    # a dist-info written by hand: the package exists but ships no manifest.toml
    site = tmp_path / "site"
    pkg = site / "sh_ep_nomanifest"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    info = site / "sh_ep_nomanifest-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sh-ep-nomanifest\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sectorhooks.plugins]\nbroken = sh_ep_nomanifest\n")
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from sectorhooks.config import HostConfig, PluginsConfig
        from sectorhooks.host import PluginHost
        host = PluginHost(HostConfig(data_dir=Path(sys.argv[1]), plugins=PluginsConfig(bundled=False))).load()
        print(json.dumps([str(p) for e in host.orphans for p in e.problems]))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    problems = json.loads(proc.stdout)
    assert any(
        "broken = sh_ep_nomanifest" in p and "no manifest.toml in package 'sh_ep_nomanifest'" in p
        for p in problems
    )
