"""File stores: build every ``[[Common.PieceStores]]`` / ``[[Common.PersistStores]]`` entry.

Each entry names its own FileStore plugin (``PluginName``, default ``fsstore``); the host calls
that plugin's ``Constructor(config)`` once per entry. Any problem (unknown plugin, bad ``Meta``,
missing root, a name used twice) becomes a :class:`~sectorhooks.errors.ConfigError` naming the
config file, the key path (``Common.PersistStores[1].Meta``) and the store.
"""

from __future__ import annotations

import logging
import os
import random
import re
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from sectorhooks_spec import FileStore, FileStoreError, StoreConfig
from sectorhooks_spec.kinds import Kind

from .config import HostConfig
from .errors import (
    ConfigError,
    PluginCallError,
    PluginNotActiveError,
    SectorhooksError,
    UnknownPluginError,
)
from .host import PluginHost

log = logging.getLogger(__name__)

PIECE = "piece"
PERSIST = "persist"
_SECTIONS = ((PIECE, "Common.PieceStores"), (PERSIST, "Common.PersistStores"))


def configured_stores(config: HostConfig) -> Iterator[Tuple[str, str, StoreConfig]]:
    """``(role, key path, store config)`` for every configured store, pieces first."""
    for role, section in _SECTIONS:
        entries = config.piece_stores if role == PIECE else config.persist_stores
        for i, store in enumerate(entries):
            yield role, f"{section}[{i}]", store


def store_roles(config: HostConfig) -> Dict[str, str]:
    """Store name -> ``"piece"`` or ``"persist"``."""
    return {store.name: role for role, _, store in configured_stores(config)}


def check_store_configs(config: HostConfig) -> None:
    """Checks that need no plugin: names unique across both lists, paths, weights, miner lists."""
    seen: Dict[str, str] = {}
    roots: Dict[str, str] = {}
    for _, key, store in configured_stores(config):
        if not store.name:
            raise ConfigError(config.path, f"{key}.Name", "missing required key 'Name'")
        if store.name in seen:
            raise ConfigError(
                config.path,
                f"{key}.Name",
                f"duplicate store name {store.name!r}: {seen[store.name]} has it already",
                "store names are unique across PieceStores and PersistStores",
            )
        seen[store.name] = key
        if not store.path:
            raise ConfigError(
                config.path, f"{key}.Path", f"store {store.name!r}: missing required key 'Path'"
            )
        root = os.path.realpath(os.path.expanduser(store.path))
        if root in roots:
            raise ConfigError(
                config.path,
                f"{key}.Path",
                f"store {store.name!r} has the same root {root} as store {roots[root]!r}",
                "give every store its own directory",
            )
        roots[root] = store.name
        if store.weight < 0:
            raise ConfigError(
                config.path, f"{key}.Weight", f"store {store.name!r}: must be >= 0, got {store.weight}"
            )
        for field, miners in (("AllowMiners", store.allow_miners), ("DenyMiners", store.deny_miners)):
            bad = [m for m in miners if isinstance(m, bool) or not isinstance(m, int) or m < 0]
            if bad:
                raise ConfigError(
                    config.path,
                    f"{key}.{field}",
                    f"store {store.name!r}: miner IDs are non-negative integers (actor IDs), got {bad[0]!r}",
                )
        both = sorted(set(store.allow_miners) & set(store.deny_miners))
        if both:
            raise ConfigError(
                config.path,
                f"{key}.DenyMiners",
                f"store {store.name!r}: miner(s) {', '.join(map(str, both))} are both allowed and denied",
            )


def open_filestores(host: PluginHost, config: HostConfig) -> Dict[str, FileStore]:
    """Open every configured store through its plugin; name -> FileStore, pieces first."""
    check_store_configs(config)
    out: Dict[str, FileStore] = {}
    for _, key, store in configured_stores(config):
        plugin = store.plugin_name or "fsstore"
        try:
            fs = host.call_driver(Kind.FILE_STORE, plugin, "filestore_constructor", config=store)
        except UnknownPluginError as exc:
            names = ", ".join(repr(n) for n in exc.available) or "none"
            raise ConfigError(
                config.path,
                f"{key}.PluginName",
                f"store {store.name!r}: no loaded FileStore plugin named {plugin!r}; "
                f"loaded FileStore plugins: {names}",
                "check the name in the plugin's manifest.toml, and [Common.Plugins] Dir",
            ) from exc
        except PluginNotActiveError as exc:
            raise ConfigError(config.path, f"{key}.PluginName", f"store {store.name!r}: {exc}") from exc
        except PluginCallError as exc:
            raise ConfigError(config.path, _key_of(key, exc.exc), _naming(store, exc.exc)) from exc
        except FileStoreError as exc:
            raise ConfigError(config.path, f"{key}.Path", _naming(store, exc)) from exc
        except SectorhooksError as exc:
            raise ConfigError(config.path, key, f"store {store.name!r}: {exc}") from exc
        if not isinstance(fs, FileStore):
            raise ConfigError(
                config.path,
                f"{key}.PluginName",
                f"store {store.name!r}: plugin {plugin!r} Constructor returned {type(fs).__name__}, "
                "not a FileStore (instance_name, instance_config, instance_info, sub_path, full_path)",
            )
        out[store.name] = fs
        log.info("opened %s store %r (plugin %r) at %s", key.split("[")[0], store.name, plugin, store.path)
    return out


def _naming(store: StoreConfig, exc: BaseException) -> str:
    """The plugin's message, prefixed with the store's name unless it names it already."""
    text = str(exc)
    return text if f"store {store.name!r}" in text else f"store {store.name!r}: {text}"


def _key_of(key: str, exc: BaseException) -> str:
    """Point a plugin's ValueError at the config key it names (``Meta.X``, ``Path``...)."""
    text = str(exc)
    m = re.search(r"\bMeta\.(\w+)", text)
    if m:
        return f"{key}.Meta.{m.group(1)}"
    for field in ("Path", "Strict", "ReadOnly", "Weight", "AllowMiners", "DenyMiners"):
        if re.search(rf"\b{field}\b", text):
            return f"{key}.{field}"
    return f"{key}.Meta"


def candidate_stores(
    stores: Mapping[str, FileStore],
    miner: int,
    names: Optional[Sequence[str]] = None,
    min_free: int = 0,
) -> List[FileStore]:
    """Stores a new sector of ``miner`` may go to: writable, weight > 0, miner allowed, room left."""
    out = []
    for name in names if names is not None else list(stores):
        fs = stores[name]
        cfg = fs.instance_config()
        if cfg.read_only or cfg.weight <= 0 or not cfg.accepts_miner(miner):
            continue
        if min_free and fs.instance_info().free < min_free:
            continue
        out.append(fs)
    return out


def pick_store(
    stores: Mapping[str, FileStore],
    miner: int,
    names: Optional[Sequence[str]] = None,
    min_free: int = 0,
    rng: Optional[random.Random] = None,
) -> FileStore:
    """Choose a store for ``miner`` among the candidates, at random in proportion to Weight."""
    pool = candidate_stores(stores, miner, names, min_free)
    if not pool:
        considered = ", ".join(repr(n) for n in (names if names is not None else stores)) or "none"
        raise FileStoreError(
            f"no writable store accepts miner {miner}"
            + (f" with {min_free} bytes free" if min_free else "")
            + f" (considered: {considered}; check ReadOnly, Weight, AllowMiners/DenyMiners)"
        )
    weights = [fs.instance_config().weight for fs in pool]
    return (rng or random).choices(pool, weights=weights, k=1)[0]


def persist_store_names(config: HostConfig) -> List[str]:
    """Names of the ``[[Common.PersistStores]]`` entries, in config order."""
    return [s.name for s in config.persist_stores]
