"""The SPI in tiers (#18 item 5): ``sectorhooks_spec`` exports what plugin authors use, backend
helpers live in ``sectorhooks_spec.backend``, host internals in submodules, and every contract the
host looks up on a plugin is declared in the SPI."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

import sectorhooks_spec
from sectorhooks.rpc.auth import PERMISSIONS
from sectorhooks_spec import backend, rpc
from sectorhooks_spec.kinds import EXT_POINTS, Kind, ext_points
from sectorhooks_spec.specs import ALL_SPECS

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "sectorhooks"
CONTRIB = ROOT / "contrib_plugins"

#: Host internals that were exported before and must not be again, with where they live now.
HOST_INTERNAL = {
    "ALL_SPECS": "specs",
    "DRIVER_KINDS": "kinds",
    "EXT_POINTS": "kinds",
    "LIFECYCLE_HOOKS": "kinds",
    "KIND_HOOKS": "kinds",
    "ExtPoint": "kinds",
    "Kind": "kinds",
    "MANIFEST_FILE": "manifest",
    "Export": "manifest",
    "Manifest": "manifest",
    "ManifestError": "manifest",
    "Problem": "manifest",
    "check_manifest": "manifest",
    "parse_manifest": "manifest",
    "load_toml": "manifest",
    "PROJECT_NAME": "markers",
    "hookspec": "markers",
}

#: Backend helpers: importable from sectorhooks_spec.backend, not from the top level.
BACKEND = {
    "GetFromPeek",
    "MultiRow",
    "check_key",
    "check_value",
    "check_collection_name",
    "prefix_upper_bound",
}

#: ``getattr``/``hasattr`` lookups in src/ on the host's own objects (or the stdlib's), not on a
#: plugin's: each with what it is looked up on. Anything else looked up must be an SPI contract.
HOST_LOOKUPS = {
    "select": "importlib.metadata entry_points() (Python 3.10+ API)",
    "dist": "an importlib.metadata EntryPoint",
    "__wrapped__": "functools.wraps marker (inspect)",
    "__name__": "a function, for messages",
    "__func__": "a bound method (inspect)",
    "sync": "the host's Runtime",
    "state": "the host's Runtime / a Lease",
    "config": "the host's Runtime",
    "api": "the host's HostConfig",
    "add_group_listener": "the host's SectorStateManager",
    "tick": "the host's HookRunner",
    "start": "the host's HookRunner",
    "name": "a host Lease target / a token's info",
    "problems": "a ManifestError",
    "scrypt": "hashlib",
    "fields": "a log record",
    "bound": "the host's PluginRecord",
    "module": "the host's BoundPlugin",
    "__sectorhooks_pool__": "the host's own call wrapper (rpc.isolation)",
    "registry_generation": "the host's own memo, which the host itself sets on the KV store object",
}


def test_top_level_exports_no_host_internal_names() -> None:
    exported = set(sectorhooks_spec.__all__)
    assert not exported & set(HOST_INTERNAL), exported & set(HOST_INTERNAL)
    assert not exported & BACKEND, exported & BACKEND
    for name in exported:  # nothing exported comes from a host-side module
        module = getattr(getattr(sectorhooks_spec, name), "__module__", "") or ""
        assert module.rsplit(".", 1)[-1] not in {"manifest", "kinds", "specs"}, (name, module)


def test_host_internals_stay_importable_from_their_submodules() -> None:
    for name, module in HOST_INTERNAL.items():
        assert hasattr(importlib.import_module(f"sectorhooks_spec.{module}"), name), (name, module)
    for name in BACKEND:
        assert hasattr(backend, name), name
    assert not hasattr(sectorhooks_spec, "sqlbatch") or "sqlbatch" not in sectorhooks_spec.__all__


def test_every_exported_name_exists_and_the_contract_types_are_exported() -> None:
    for name in sectorhooks_spec.__all__:
        assert hasattr(sectorhooks_spec, name), name
    for name in (
        "JsonRpcNamespace",
        "PluginRpcError",
        "SyncedRow",
        "SyncerInstance",
        "MetaReader",
        "hookimpl",
    ):
        assert name in sectorhooks_spec.__all__, name


def _lookups(path: Path) -> Iterator[Tuple[str, int, ast.expr]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
        ):
            yield node.func.id, node.lineno, node.args[1]


def test_every_attribute_the_host_looks_up_on_a_plugin_is_declared_in_the_spi() -> None:
    declared: Dict[str, str] = {name: getattr(rpc, name) for name in rpc.__all__ if name.endswith("_ATTR")}
    assert set(declared.values()) == set(rpc.PLUGIN_ATTRS)
    undeclared: List[str] = []
    for path in sorted(SRC.rglob("*.py")):
        for fn, line, arg in _lookups(path):
            where = f"{path.relative_to(ROOT)}:{line} {fn}"
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if arg.value not in HOST_LOOKUPS and arg.value not in rpc.PLUGIN_ATTRS:
                    undeclared.append(f"{where}(..., {arg.value!r})")
            elif isinstance(arg, ast.Name) and arg.id.isupper():
                if arg.id not in declared and arg.id not in {"PERMS_MAP_ATTR", "_IMPL_ATTR"}:
                    undeclared.append(f"{where}(..., {arg.id})")
    assert not undeclared, "look-ups not declared in sectorhooks_spec.rpc.PLUGIN_ATTRS:\n" + "\n".join(
        undeclared
    )


def test_the_old_undeclared_read_back_contract_is_gone_from_the_host() -> None:
    for path in sorted(SRC.rglob("*.py")):
        for _, line, arg in _lookups(path):
            if isinstance(arg, ast.Constant):
                assert arg.value not in {"read_rows", "default_url", "settings_from_meta"}, (path, line)


def test_read_back_is_an_optional_extension_point_with_a_hookspec() -> None:
    points = ext_points(Kind.SYNC_SECTOR_STATE)
    assert points["ReadBack"].hook == "sync_read_back" and not points["ReadBack"].required
    specs = {name for cls in ALL_SPECS for name in vars(cls) if not name.startswith("_")}
    for kind in Kind:
        for point in EXT_POINTS[kind]:
            assert point.hook in specs, (kind, point)


def test_spi_permissions_are_the_hosts() -> None:
    assert tuple(rpc.RPC_PERMS) == tuple(PERMISSIONS)
    assert rpc.DEFAULT_RPC_PERM == "write"


def _spi_imports(path: Path) -> Iterator[Tuple[int, str, Set[str]]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("sectorhooks_spec")
        ):
            yield node.lineno, node.module or "", {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("sectorhooks_spec."):
                    yield node.lineno, a.name, set()


@pytest.mark.parametrize(
    "plugin", sorted(p.name for p in CONTRIB.iterdir() if (p / "manifest.toml").is_file())
)
def test_bundled_plugins_import_only_exported_names_or_the_backend_tier(plugin: str) -> None:
    bad = []
    for path in sorted((CONTRIB / plugin).rglob("*.py")):
        for line, module, names in _spi_imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if module == "sectorhooks_spec":
                bad += [f"{where}: {n} is not exported" for n in names - set(sectorhooks_spec.__all__)]
            elif module == "sectorhooks_spec.backend":
                bad += [f"{where}: {n} is not in backend" for n in names - set(backend.__all__)]
            else:
                bad.append(f"{where}: imports {module}; use sectorhooks_spec or sectorhooks_spec.backend")
    assert not bad, "\n".join(bad)
