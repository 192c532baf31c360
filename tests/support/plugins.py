"""A bundled plugin's module imported on its own, without a host, for tests of its internals."""

from __future__ import annotations

import importlib
import sys
import types

#: The synthetic parent package (never a name on the import path, so no test package or
#: installed module can shadow a plugin, nor a plugin them).
PACKAGE = "_sectorhooks_test_bundled"


def bundled_module(plugin: str, module: str) -> types.ModuleType:
    """``contrib_plugins/<plugin>/<module>.py``, imported as ``_sectorhooks_test_bundled.<plugin>.<module>``
    (its relative imports work; nothing is put on the import path)."""
    from sectorhooks.loader import bundled_plugins_dir

    if PACKAGE not in sys.modules:
        root = types.ModuleType(PACKAGE, "synthetic parent of the bundled plugins the tests import")
        root.__path__ = []
        sys.modules[PACKAGE] = root
    package = f"{PACKAGE}.{plugin}"
    if package not in sys.modules:
        pkg = types.ModuleType(package, f"bundled plugin {plugin!r}")
        pkg.__path__ = [str(bundled_plugins_dir() / plugin)]
        sys.modules[package] = pkg
    return importlib.import_module(f"{package}.{module}")
