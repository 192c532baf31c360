"""Load the bundled KVStore plugins straight from ``contrib_plugins/`` (as the host does).

Each plugin is imported as a submodule of a synthetic package, through its manifest's ``module``
and ``Constructor`` impl, so tests exercise exactly what the manifest declares. Also used by the
worker processes (``kv_worker.py``) and ``benchmarks/bench_kv.py``.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, Mapping

from sectorhooks_spec.manifest import Manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
#: Where the plugins are loaded from; ``SECTORHOOKS_KV_CONTRIB`` points elsewhere (mutation checks).
CONTRIB = Path(os.environ.get("SECTORHOOKS_KV_CONTRIB", str(ROOT / "contrib_plugins")))
PACKAGE = "_sectorhooks_kvtest_plugins"

_cache: Dict[str, Callable[..., Any]] = {}


def manifest(name: str) -> Manifest:
    """The parsed, validated manifest of bundled plugin ``name``."""
    path = CONTRIB / name / "manifest.toml"
    return parse_manifest(path.read_text(encoding="utf-8"), str(path))


def constructor(name: str) -> Callable[[Mapping[str, Any]], Any]:
    """The function the manifest exports as ``Constructor``."""
    if name not in _cache:
        m = manifest(name)
        if PACKAGE not in sys.modules:
            root = types.ModuleType(PACKAGE)
            root.__path__ = []
            sys.modules[PACKAGE] = root
        pkg = types.ModuleType(f"{PACKAGE}.{name}")
        pkg.__path__ = [str(CONTRIB / name)]
        sys.modules[pkg.__name__] = pkg
        module = importlib.import_module(f"{pkg.__name__}.{m.module}")
        impl = next(e.impl for e in m.exports if e.ext_point == "Constructor")
        _cache[name] = getattr(module, impl)
    return _cache[name]


def open_store(plugin: str, meta: Mapping[str, Any]) -> Any:
    """``Constructor(meta)`` of ``plugin``."""
    return constructor(plugin)(meta)
