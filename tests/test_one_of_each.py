"""One of each (#18): no two classes share a name, and every host error lives in ``sectorhooks.errors``."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Dict, List

import sectorhooks
import sectorhooks.errors
import sectorhooks_spec
import sectorhooks_spec.errors

#: Modules run as a program (``python -m``), not imported.
NOT_IMPORTED = {"sectorhooks.__main__", "sectorhooks.sync.worker_main"}
#: The plugin authors' test kit: its exceptions are test doubles raised at the plugin under test.
TEST_KIT = "sectorhooks.testing"


def _modules(package: ModuleType) -> List[ModuleType]:
    names = [package.__name__]
    names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return [importlib.import_module(n) for n in sorted(names) if n not in NOT_IMPORTED]


def _defined_classes() -> List[type]:
    """Every class defined (not just imported) in a module of sectorhooks or sectorhooks_spec."""
    out: Dict[int, type] = {}
    for module in _modules(sectorhooks) + _modules(sectorhooks_spec):
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__:
                out[id(value)] = value
    return list(out.values())


def test_no_two_classes_share_a_name() -> None:
    """A re-export (the same class under its name in another module) is fine; two classes are not."""
    by_name: Dict[str, List[str]] = {}
    for cls in _defined_classes():
        by_name.setdefault(cls.__name__, []).append(f"{cls.__module__}.{cls.__qualname__}")
    shared = {name: sorted(where) for name, where in by_name.items() if len(where) > 1}
    assert shared == {}, f"classes sharing a name (rename one to what it means): {shared}"


def test_every_host_error_lives_in_errors() -> None:
    """Exceptions of the host are classes of ``sectorhooks.errors`` (the SPI's are in
    ``sectorhooks_spec.errors``). Private control-flow signals (``_Name``, never seen outside their
    module) stay beside the code that raises and catches them."""
    misplaced = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _defined_classes()
        if issubclass(cls, BaseException)
        and not cls.__name__.startswith("_")
        and cls.__module__.startswith("sectorhooks.")
        and not cls.__module__.startswith(TEST_KIT)
        and cls.__module__ != sectorhooks.errors.__name__
    )
    assert misplaced == [], f"move these to sectorhooks/errors.py: {misplaced}"


def test_the_test_sees_the_errors_it_checks() -> None:
    """The walk reaches the modules (an import error or an empty walk would pass the tests above)."""
    names = {cls.__name__ for cls in _defined_classes()}
    assert {"LeaseLost", "SyncLeaseLost", "SectorStateManager", "MetaReader", "KVRetryExhausted"} <= names
