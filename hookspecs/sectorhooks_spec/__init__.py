"""sectorhooks plugin SPI: what a plugin author uses, in one screen.

Tiers:

* this package: the hook marker, the store protocols (KVStore, FileStore), the sector models and
  codec, the errors a plugin raises or catches, ``MetaReader``, and the contract types:
  :class:`SyncerInstance` / :class:`SyncedRow` (SyncSectorState, ``ReadBack``),
  :class:`JsonRpcNamespace` / :class:`PluginRpcError` (RegisterJsonRpc permissions and codes);
* :mod:`sectorhooks_spec.backend`: helpers for backend authors (key checks, ``GetFromPeek``,
  SQLite statement batching, value screens for sinks);
* host-side modules, importable but not for plugins: :mod:`.manifest` (the manifest model and
  its checker), :mod:`.kinds` (kinds and extension points), :mod:`.specs` (the hookspecs),
  :mod:`.markers` (``hookspec``, the project name).

The contracts the host relies on are documented where they are declared: thread- and
multi-process safety in :mod:`.kvstore`, RPC permissions in :mod:`.rpc`, error codes in
:class:`PluginRpcError`, read-back in :mod:`.sync`.
"""

from .codec import dumps, from_jsonable, loads, to_jsonable
from .errors import (
    CommitOutcomeUnknown,
    DecodeError,
    FileStoreError,
    KeyNotFound,
    KVError,
    MetaError,
    PluginRpcError,
    Rejected,
    RejectedChanges,
    SectorhooksError,
    StoreUnavailable,
    TransactionConflict,
)
from .filestore import FileStore, InstanceInfo, PathType, StoreConfig
from .kvstore import Collection, Guard, GuardedPut, KVIterator, KVStore, StoreTxn, Txn
from .markers import hookimpl
from .meta import MetaReader
from .rpc import DEFAULT_RPC_PERM, JsonRpcNamespace, RpcPerm
from .sector import (
    INT64_MAX,
    INT64_MIN,
    AllocatedSector,
    LatestState,
    MessageInfo,
    Piece,
    PreCommitInfo,
    ProofInfo,
    SectorID,
    SectorState,
    Seed,
    TerminateInfo,
    Ticket,
    UpgradedInfo,
    ValueOutOfBounds,
    Workspace,
    check_storable,
)
from .sync import SyncedRow, SyncerInstance

__all__ = [
    "DEFAULT_RPC_PERM",
    "INT64_MAX",
    "INT64_MIN",
    "AllocatedSector",
    "Collection",
    "CommitOutcomeUnknown",
    "DecodeError",
    "FileStore",
    "FileStoreError",
    "Guard",
    "GuardedPut",
    "InstanceInfo",
    "JsonRpcNamespace",
    "KVError",
    "KVIterator",
    "KVStore",
    "KeyNotFound",
    "LatestState",
    "MessageInfo",
    "MetaError",
    "MetaReader",
    "PathType",
    "Piece",
    "PluginRpcError",
    "PreCommitInfo",
    "ProofInfo",
    "Rejected",
    "RejectedChanges",
    "RpcPerm",
    "SectorID",
    "SectorState",
    "SectorhooksError",
    "Seed",
    "StoreConfig",
    "StoreTxn",
    "StoreUnavailable",
    "SyncedRow",
    "SyncerInstance",
    "TerminateInfo",
    "Ticket",
    "TransactionConflict",
    "Txn",
    "UpgradedInfo",
    "ValueOutOfBounds",
    "Workspace",
    "check_storable",
    "dumps",
    "from_jsonable",
    "hookimpl",
    "loads",
    "to_jsonable",
]
