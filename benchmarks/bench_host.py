"""The plugin host's own costs, each against a same-run baseline (issue 3).

(a) dispatch: ``PluginHost.broadcast`` (one plugin at a time, each call isolated) vs a bare
    pluggy hook call ``pm.hook.sync_flush(...)`` over the same 1, 3 and 10 impls, registered in
    the same PluginManager. Goal: isolation costs at most 1.5x bare pluggy, i.e. host calls/s
    divided by pluggy calls/s >= 0.67.
(b) loading: ``PluginHost.load()`` of 100 generated plugins (manifest.toml + module each) vs
    plainly importing the same 100 module files. Informational goal: within 4x of plain import.

Every figure is the best of N timeit repeats. Run standalone: ``python benchmarks/bench_host.py``.
"""

from __future__ import annotations

import gc
import importlib.util
import shutil
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any, Callable, Dict, List

from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost
from sectorhooks_spec import SyncerInstance

DISPATCH_GOAL = 0.67
LOAD_GOAL = 0.25

MANIFEST = """name = "{name}"
kind = "SyncSectorState"
version = "1.0.0"
export = [
  {{ extPoint = "OnImport", impl = "on_import" }},
  {{ extPoint = "OnInit", impl = "on_init" }},
  {{ extPoint = "OnUpdate", impl = "on_update" }},
  {{ extPoint = "OnFinalize", impl = "on_finalize" }},
  {{ extPoint = "OnRestore", impl = "on_restore" }},
  {{ extPoint = "Flush", impl = "flush" }},
]
"""

MODULE = '''"""Generated benchmark plugin {name}."""

SEEN = []


def on_import(state):
    SEEN.append(state)


def on_init(states):
    SEEN.extend(states)


def on_update(sector_id, state):
    SEEN.append(state)


def on_finalize(sector_id):
    SEEN.append(sector_id)


def on_restore(sector_id):
    SEEN.append(sector_id)


def flush(syncer):
    return syncer.name
'''


def write_plugins(root: Path, count: int, prefix: str = "bench") -> List[Path]:
    """``count`` plugin directories under ``root``; returns their module files."""
    files = []
    for i in range(count):
        name = f"{prefix}{i:03d}"
        d = root / name
        d.mkdir(parents=True)
        (d / "manifest.toml").write_text(MANIFEST.format(name=name))
        (d / f"{name}.py").write_text(MODULE.format(name=name))
        files.append(d / f"{name}.py")
    return files


def _config(root: Path, data: Path) -> HostConfig:
    return HostConfig(data_dir=data, plugins=PluginsConfig(dirs=(root,), bundled=False, entry_points=False))


def best_per_second(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """Calls per second of ``fn``: best of ``repeat`` runs of ``number`` calls, GC off while timing."""
    timer = timeit.Timer(fn)
    return number / min(timer.repeat(repeat=repeat, number=number))


def bench_dispatch(tmp: Path, quick: bool) -> List[Dict[str, Any]]:
    rows = []
    number, repeat = (2_000, 5) if quick else (20_000, 7)
    syncer = SyncerInstance("bench", "bench")
    for n in (1, 3, 10):
        root = tmp / f"dispatch{n}"
        write_plugins(root, n, prefix=f"d{n}_")
        host = PluginHost(_config(root, tmp / "data")).load().start()
        assert len(host.impls("sync_flush")) == n
        hook = host.pm.hook.sync_flush
        result = host.broadcast("sync_flush", syncer=syncer)
        assert result.ok and len(result.results) == n == len(hook(syncer=syncer))

        def ours(host: PluginHost = host) -> Any:
            return host.broadcast("sync_flush", syncer=syncer)

        def bare(hook: Any = hook) -> Any:
            return hook(syncer=syncer)

        # interleave so a noisy neighbour hurts both sides alike
        ours_rate = bare_rate = 0.0
        for _ in range(2):
            ours_rate = max(ours_rate, best_per_second(ours, number, repeat))
            bare_rate = max(bare_rate, best_per_second(bare, number, repeat))
        host.shutdown()
        rows.append(
            {
                "group": "host",
                "name": f"broadcast, {n} impl{'s' if n > 1 else ''}",
                "ours": ours_rate,
                "baseline": bare_rate,
                "baseline_name": "bare pluggy pm.hook call",
                "ratio": ours_rate / bare_rate,
                "unit": "calls/s",
                "goal": DISPATCH_GOAL,
            }
        )
    return rows


def _forget(prefix: str) -> None:
    for mod in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[mod]


def bench_load(tmp: Path, quick: bool) -> List[Dict[str, Any]]:
    count = 100
    repeat = 3 if quick else 7
    root = tmp / "load"
    files = write_plugins(root, count)
    config = _config(root, tmp / "data")

    def ours() -> None:
        _forget("sectorhooks_plugins.bench")  # a first load, as at host start, not a reload
        host = PluginHost(config).load()
        assert len(host.records) == count

    def plain() -> None:
        _forget("plainbench.")
        for path in files:
            spec = importlib.util.spec_from_file_location(f"plainbench.{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)

    ours()
    plain()  # warm: both sides read the same cached bytecode from here on
    ours_rate = plain_rate = 0.0
    for _ in range(2):
        ours_rate = max(ours_rate, count * best_per_second(ours, 1, repeat))
        plain_rate = max(plain_rate, count * best_per_second(plain, 1, repeat))
    _forget("plainbench.")
    _forget("sectorhooks_plugins.bench")
    return [
        {
            "group": "host",
            "name": f"load {count} plugins",
            "ours": ours_rate,
            "baseline": plain_rate,
            "baseline_name": "plain import of the same modules",
            "ratio": ours_rate / plain_rate,
            "unit": "plugins/s",
            "goal": LOAD_GOAL,
        }
    ]


def run(quick: bool = False) -> List[Dict[str, Any]]:
    """Benchmark rows (see module docstring)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-host-"))
    gc.collect()
    try:
        return bench_dispatch(tmp, quick) + bench_load(tmp, quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv), title="bench_host")
