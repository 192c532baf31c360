"""Registry test kit: host configs on a real KV backend, opening a host + store, log parsing.

Used by the tests and by ``worker.py`` (the replica processes of the multi-process tests, started
with :func:`start_worker`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

from support import python_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONTRIB = ROOT / "contrib_plugins"
GREET = HERE / "plugins" / "greet"
PYTHON = sys.executable

SCRAPE_RE = re.compile(r"scrape fence=(\d+) holder=(\S+) start=([\d.]+) end=([\d.]+)")


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def write_config(
    tmp: Path,
    plugin: str,
    meta: Mapping[str, Any],
    dirs: Sequence[Path] = (GREET,),
    plugin_config: Mapping[str, Mapping[str, Any]] = {},
    name: str = "host.toml",
) -> Path:
    """A host config: the KVStore plugin + ``dirs``, no bundled plugins, no entry points."""
    lines = [
        "[Common]",
        f"DataDir = {_toml(str(tmp / 'data'))}",
        "[Common.Plugins]",
        f"Dir = {_toml([str(CONTRIB / plugin), *map(str, dirs)])}",
        "Bundled = false",
        "EntryPoints = false",
    ]
    for pname, table in plugin_config.items():
        lines += [f"[Common.Plugins.Config.{pname}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    lines += ["[Common.DB]", 'Driver = "plugin"', "[Common.DB.Plugin]", f"PluginName = {_toml(plugin)}"]
    lines += [f"Meta = {_toml(dict(meta))}"]
    path = tmp / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextmanager
def opened(config_path: Path, start_all: bool = True) -> Iterator[Tuple[Any, Any]]:
    """``(host, kv)`` for a config, as ``serve`` opens them; both closed afterwards."""
    from sectorhooks.config import load_config
    from sectorhooks.registry import open_registry

    with open_registry(load_config(config_path), start_all) as (host, reg):
        yield host, reg.store


def start_worker(*args: str) -> subprocess.Popen:
    """``python -m registry.worker ARGS`` (see ``worker.py``): a replica process that imports the
    helpers by the same names as the tests."""
    return subprocess.Popen([PYTHON, "-m", "registry.worker", *args], env=python_env())


def scrapes(logs: Sequence[Path]) -> List[Dict[str, Any]]:
    """Every committed scrape logged by the workers, ordered by start time."""
    out = []
    for log in logs:
        if not log.exists():
            continue
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            m = SCRAPE_RE.search(line)
            if m:
                out.append(
                    {
                        "fence": int(m.group(1)),
                        "holder": m.group(2),
                        "start": float(m.group(3)),
                        "end": float(m.group(4)),
                        "log": log.name,
                    }
                )
    return sorted(out, key=lambda s: s["start"])
