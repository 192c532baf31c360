"""Building blocks for the sync tests: configs with real plugins, runtimes, sector workloads."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import attrs

from sectorhooks.config import DBConfig, HostConfig, PluginsConfig, SyncerConfig, SyncSettings
from sectorhooks.runtime import Runtime
from sectorhooks.state import SectorStateManager
from sectorhooks_spec import AllocatedSector, LatestState, SectorID, Ticket

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib_plugins"
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"

#: Fast settings for tests: small backoff, few attempts.
FAST = SyncSettings(
    batch_size=200,
    max_attempts=3,
    poll_interval=0.02,
    linger=0.02,
    backoff_base=0.01,
    backoff_max=0.1,
)


def make_config(
    data_dir: Path,
    syncers: Sequence[Tuple[str, str, Mapping[str, Any]]] = (),
    kv: str = "memdb",
    kv_meta: Optional[Mapping[str, Any]] = None,
    settings: SyncSettings = FAST,
    plugins: Iterable[str] = ("recorder",),
) -> HostConfig:
    """A config loading only the named plugins (bundled ones by directory), KV ``kv``.

    The test plugins ``recorder`` and ``inline`` keep what they saw in their module, which a test
    reads: with either loaded, hooks run in this process (Isolation "thread"); otherwise each
    syncer runs in its worker process, the default.
    """
    dirs: List[Path] = [CONTRIB / kv]
    in_process = bool({"recorder", "inline"} & set(plugins))
    for name in plugins:
        dirs.append(TEST_PLUGINS / name if (TEST_PLUGINS / name).is_dir() else CONTRIB / name)
    settings = attrs.evolve(settings, isolation="thread" if in_process else "process")
    if kv == "sqlkv" and kv_meta is None:
        kv_meta = {"url": f"sqlite:///{data_dir / 'kv.sqlite3'}"}
    return HostConfig(
        path="<test>",
        data_dir=data_dir,
        plugins=PluginsConfig(dirs=tuple(dirs), bundled=False, entry_points=False),
        db=DBConfig(plugin_name=kv, meta=dict(kv_meta or {})),
        syncers=tuple(SyncerConfig(n, p, dict(m)) for n, p, m in syncers),
        sync=settings,
    )


def open_runtime(config: HostConfig, start_sync: bool = True, **sync_options: Any) -> Runtime:
    """A Runtime with every part real (no file stores)."""
    return Runtime.open(config, start_sync=start_sync, filestores=False, sync_options=sync_options or None)


def plugin_module(rt: Runtime, name: str) -> Any:
    """The imported module of plugin ``name`` (to read what a test plugin recorded)."""
    record = rt.host.records[name]
    assert record.bound is not None, record.error
    return record.bound.module


def sid(n: int, miner: int = 1000) -> SectorID:
    return SectorID(miner, n)


def sealing_run(
    state: SectorStateManager,
    sectors: int,
    updates: int,
    miner: int = 1000,
    seed: int = 0,
    finalize: bool = True,
) -> int:
    """Init ``sectors`` sectors, report ``updates`` states for each, finalize half; returns #changes."""
    rng = random.Random(seed)
    changes = 0
    for start in range(0, sectors, 50):
        batch = [AllocatedSector(SectorID(miner, n), 8) for n in range(start, min(sectors, start + 50))]
        state.init_sectors(batch)
        changes += 1
    for step in range(updates):
        for n in range(sectors):
            fields: Dict[str, Any] = {
                "latest_state": LatestState(f"S{step}", event=f"ev{step}", worker=f"w{n % 4}")
            }
            if step == 1:
                fields["ticket"] = Ticket(f"{rng.getrandbits(64):016x}", 100 + n)
            state.update(SectorID(miner, n), **fields)
            changes += 1
    if finalize:
        for n in range(0, sectors, 2):
            state.finalize(SectorID(miner, n))
            changes += 1
    return changes


def kv_rows(state: SectorStateManager) -> Dict[str, Tuple[int, str]]:
    """``{str(sector): (version, state_json)}`` of the KV, the same shape ``read_rows`` gives."""
    from sectorhooks_spec import dumps

    return {str(s.id): (s.version, dumps(s)) for s in state.list()}


def toml_config(
    path: Path,
    data_dir: Path,
    syncers: Sequence[Tuple[str, str, Mapping[str, Any]]],
    plugins: Iterable[str] = ("recorder",),
    kv_url: Optional[str] = None,
    sync: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write a host config file (for the CLI and for subprocess hosts); KV = sqlkv on SQLite."""
    import json as _json

    dirs = [str(CONTRIB / "sqlkv")]
    for name in plugins:
        dirs.append(str(TEST_PLUGINS / name if (TEST_PLUGINS / name).is_dir() else CONTRIB / name))
    q = _json.dumps  # TOML basic strings are JSON strings for our values
    default_kv = "sqlite:///" + str(data_dir / "kv.sqlite3")
    lines = [
        "[Common]",
        f"DataDir = {q(str(data_dir))}",
        "[Common.Plugins]",
        f"Dir = [{', '.join(q(d) for d in dirs)}]",
        "Bundled = false",
        "EntryPoints = false",
        "[Common.DB]",
        'Driver = "plugin"',
        "[Common.DB.Plugin]",
        'PluginName = "sqlkv"',
        f"Meta = {{ url = {q(kv_url or default_kv)} }}",
        "[Common.Sync]",
    ]
    settings = {
        "BatchSize": 200,
        "MaxAttempts": 3,
        "PollInterval": 0.02,
        "BackoffBase": 0.01,
        "BackoffMax": 0.2,
    }
    settings.update(sync or {})
    lines += [f"{k} = {q(v)}" for k, v in settings.items()]
    for name, plugin, meta in syncers:
        lines += ["[[Common.Syncers]]", f"Name = {q(name)}", f"PluginName = {q(plugin)}"]
        if meta:
            lines.append("Meta = { " + ", ".join(f"{k} = {q(v)}" for k, v in meta.items()) + " }")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
