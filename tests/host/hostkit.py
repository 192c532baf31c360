"""Helpers for the host tests: write plugins to disk, build hosts that see only them."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import textwrap
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost

SYNC_POINTS: Tuple[Tuple[str, str], ...] = (
    ("OnImport", "on_import"),
    ("OnInit", "on_init"),
    ("OnUpdate", "on_update"),
    ("OnFinalize", "on_finalize"),
    ("OnRestore", "on_restore"),
)


def sync_exports(extra: Sequence[Tuple[str, str]] = ()) -> str:
    """The ``export = [...]`` array naming every required SyncSectorState extPoint (+ extra)."""
    rows = [f'  {{ extPoint = "{p}", impl = "{f}" }},' for p, f in (*SYNC_POINTS, *extra)]
    return "export = [\n" + "\n".join(rows) + "\n]\n"


def sync_manifest(
    name: str, *, on_init: Optional[str] = None, on_shutdown: Optional[str] = None, extra: str = ""
) -> str:
    """A valid SyncSectorState manifest whose impls are ``on_import`` ... ``on_restore``."""
    lines = [f'name = "{name}"', 'kind = "SyncSectorState"', 'version = "1.0.0"']
    if on_init:
        lines.append(f'onInit = "{on_init}"')
    if on_shutdown:
        lines.append(f'onShutdown = "{on_shutdown}"')
    return "\n".join(lines) + "\n" + extra + sync_exports()


#: Module body implementing every SyncSectorState hook as a no-op that records its calls.
SYNC_MODULE = """
CALLS = []

def on_import(syncer, state):
    CALLS.append(("import", syncer.name, state.id))

def on_init(syncer, states):
    CALLS.append(("init", syncer.name, len(states)))

def on_update(syncer, state):
    CALLS.append(("update", syncer.name, state.id))

def on_finalize(syncer, sector_id):
    CALLS.append(("finalize", syncer.name, sector_id))

def on_restore(syncer, sector_id):
    CALLS.append(("restore", syncer.name, sector_id))
"""

KV_MANIFEST = """
name = "{name}"
kind = "KVStore"
export = [{{ extPoint = "Constructor", impl = "open_store" }}]
"""


def write_plugin(
    root: Path,
    name: str,
    manifest: str,
    module: str = "",
    files: Optional[Mapping[str, str]] = None,
    module_name: Optional[str] = None,
) -> Path:
    """Write ``root/name/manifest.toml`` and ``root/name/<module_name or name>.py``; returns the dir."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "manifest.toml").write_text(textwrap.dedent(manifest), encoding="utf-8")
    if module is not None:
        (d / f"{module_name or name}.py").write_text(textwrap.dedent(module), encoding="utf-8")
    for rel, text in (files or {}).items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    return d


def write_zip(bundle: Path, files: Mapping[str, str], top: str = "") -> Path:
    """Write a zip bundle holding ``files`` (relative name -> text), optionally under ``top/``."""
    with zipfile.ZipFile(bundle, "w") as zf:
        for rel, text in files.items():
            zf.writestr(f"{top}/{rel}" if top else rel, textwrap.dedent(text))
    return bundle


_EMPTY_DATA_DIR: List[Path] = []


def _empty_data_dir() -> Path:
    """One empty data dir per test process (only read: tests that write pass their own)."""
    if not _EMPTY_DATA_DIR:
        path = Path(tempfile.mkdtemp(prefix="sh-host-data-"))
        atexit.register(shutil.rmtree, path, True)
        _EMPTY_DATA_DIR.append(path)
    return _EMPTY_DATA_DIR[0]


def isolated_config(
    dirs: Iterable[Path] = (),
    *,
    data_dir: Optional[Path] = None,
    disabled: Sequence[str] = (),
    plugin_config: Optional[Mapping[str, Mapping[str, Any]]] = None,
    bundled: bool = False,
) -> HostConfig:
    """A config that sees only ``dirs`` (no bundled plugins, no entry points)."""
    # Never the user's ~/.sectorhooks: `plugins disable` state there must not leak into tests.
    kwargs: Dict[str, Any] = {"data_dir": data_dir or _empty_data_dir()}
    return HostConfig(
        plugins=PluginsConfig(
            dirs=tuple(dirs),
            disabled=tuple(disabled),
            bundled=bundled,
            entry_points=False,
            config=dict(plugin_config or {}),
        ),
        **kwargs,
    )


def load_host(*dirs: Path, **kwargs: Any) -> PluginHost:
    """A host that loaded the plugins under ``dirs`` (not started)."""
    return PluginHost(isolated_config(dirs, **kwargs)).load()


def problems_of(host: PluginHost, name: Optional[str] = None) -> Sequence[Any]:
    """Every Problem the host recorded (for ``name``, or for every plugin and orphan)."""
    out: List[Any] = []
    for rec in host.records.values():
        if name is None or rec.name == name:
            out.extend(rec.problems)
    if name is None:
        for orphan in host.orphans:
            out.extend(orphan.problems)
    return out
