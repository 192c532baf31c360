"""The plugin kinds and, for each, its extension points (manifest ``extPoint`` -> hook name)."""

from __future__ import annotations

import enum
from typing import Dict, FrozenSet, Mapping, Tuple

import attrs


class Kind(str, enum.Enum):
    """What a plugin extends; the manifest's ``kind``."""

    FILE_STORE = "FileStore"
    KV_STORE = "KVStore"
    SYNC_SECTOR_STATE = "SyncSectorState"
    REGISTER_JSON_RPC = "RegisterJsonRpc"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class ExtPoint:
    """One extension point: its manifest name, the hookspec it binds to, whether it is required."""

    name: str
    hook: str
    required: bool = True
    doc: str = ""


#: Lifecycle functions every kind may name in its manifest (``onInit`` / ``onShutdown``).
LIFECYCLE_HOOKS: Mapping[str, str] = {"onInit": "plugin_init", "onShutdown": "plugin_shutdown"}

#: Extension points open to every kind.
COMMON_EXT_POINTS: Tuple[ExtPoint, ...] = (
    ExtPoint("Health", "plugin_health", required=False, doc="health check for the registry"),
)

EXT_POINTS: Mapping[Kind, Tuple[ExtPoint, ...]] = {
    Kind.KV_STORE: (ExtPoint("Constructor", "kvstore_constructor", doc="Constructor(meta) -> KVStore"),),
    Kind.FILE_STORE: (
        ExtPoint("Constructor", "filestore_constructor", doc="Constructor(config) -> FileStore"),
    ),
    Kind.REGISTER_JSON_RPC: (
        ExtPoint("Handler", "jsonrpc_handler", doc="Handler() -> JsonRpcNamespace(name, handler, perms)"),
    ),
    Kind.SYNC_SECTOR_STATE: (
        ExtPoint("OnImport", "sync_on_import"),
        ExtPoint("OnInit", "sync_on_init"),
        ExtPoint("OnUpdate", "sync_on_update"),
        ExtPoint("OnFinalize", "sync_on_finalize"),
        ExtPoint("OnRestore", "sync_on_restore"),
        ExtPoint("Flush", "sync_flush", required=False),
        ExtPoint(
            "ReadBack",
            "sync_read_back",
            required=False,
            doc="ReadBack(syncer, after, limit) -> [SyncedRow]: a page of the sink, for sync verify",
        ),
    ),
}

#: Kinds the host calls by name (config picks one plugin); the rest are broadcast.
DRIVER_KINDS = frozenset({Kind.KV_STORE, Kind.FILE_STORE})


def ext_points(kind: Kind) -> Dict[str, ExtPoint]:
    """Every extension point ``kind`` may export, by manifest name."""
    points = {p.name: p for p in EXT_POINTS[kind]}
    points.update({p.name: p for p in COMMON_EXT_POINTS})
    return points


#: Every hook name a plugin of each kind may implement (ext points + lifecycle + common).
KIND_HOOKS: Mapping[Kind, FrozenSet[str]] = {
    k: frozenset(
        [p.hook for p in EXT_POINTS[k]] + [p.hook for p in COMMON_EXT_POINTS] + list(LIFECYCLE_HOOKS.values())
    )
    for k in Kind
}
