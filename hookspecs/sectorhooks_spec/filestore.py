"""The FileStore protocol a ``FileStore`` plugin's ``Constructor(config)`` returns.

After damocles-manager's ``filestore.Store``: a store is a root directory holding sector files;
the plugin decides their layout (``sub_path``) and reports capacity from the real filesystem.

Reading and writing are told apart: ``full_path(..., for_write=True)`` is how a caller asks for
a path it is about to create or overwrite, and that is where a store enforces ``read_only`` and
the ``allow_miners`` / ``deny_miners`` lists (raising :class:`~sectorhooks_spec.FileStoreError`
naming the store and the miner). Reading an existing sector's files is never refused for its
miner: a deny list added later must not make already-stored sectors unreadable. Any path that
would leave the store's root (``..``, an absolute ``custom``, a symlink pointing outside) is
refused in both modes.
"""

from __future__ import annotations

import enum
from typing import Mapping, Optional, Protocol, Tuple, runtime_checkable

import attrs

from .sector import SectorID


class PathType(str, enum.Enum):
    """Kinds of sector files a store holds.

    ``PIECE`` files are named by piece CID (passed as ``custom``, ``sector_id`` may be ``None``);
    ``CUSTOM`` is a caller-chosen relative path (``custom``) inside the root.
    """

    SEALED = "sealed"
    CACHE = "cache"
    UNSEALED = "unsealed"
    UPDATE = "update"
    UPDATE_CACHE = "update-cache"
    PIECE = "piece"
    CUSTOM = "custom"


def _frozen_map(value: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    return dict(value or {})


@attrs.frozen
class StoreConfig:
    """One configured store (``[[Common.PieceStores]]`` / ``[[Common.PersistStores]]``)."""

    name: str
    path: str
    plugin_name: str = ""
    meta: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map, hash=False)
    strict: bool = False
    read_only: bool = False
    weight: int = 1
    allow_miners: Tuple[int, ...] = attrs.field(default=(), converter=tuple)
    deny_miners: Tuple[int, ...] = attrs.field(default=(), converter=tuple)

    def accepts_miner(self, miner: int) -> bool:
        """Whether the allow/deny lists let ``miner`` use this store."""
        if miner in self.deny_miners:
            return False
        return not self.allow_miners or miner in self.allow_miners


@attrs.frozen
class InstanceInfo:
    """A store's identity and capacity, read from the real filesystem."""

    config: StoreConfig
    type: str
    total: int
    free: int
    used: int

    @property
    def usage_percent(self) -> float:
        """Share of the filesystem in use, 0-100."""
        return 100.0 * self.used / self.total if self.total else 0.0


@runtime_checkable
class FileStore(Protocol):
    """A sector file store."""

    def instance_name(self) -> str:
        """The configured name."""
        ...

    def instance_config(self) -> StoreConfig:
        """The configuration it was built from."""
        ...

    def instance_info(self) -> InstanceInfo:
        """Capacity and usage now."""
        ...

    def sub_path(
        self, path_type: PathType, sector_id: Optional[SectorID], custom: Optional[str] = None
    ) -> str:
        """Path of a sector's file relative to the root, e.g. ``cache/s-t04040-1001``.

        ``custom`` is the piece CID for ``PIECE`` and the relative path for ``CUSTOM``; a path
        that would leave the root raises ``FileStoreError``.
        """
        ...

    def full_path(
        self,
        path_type: PathType,
        sector_id: Optional[SectorID],
        custom: Optional[str] = None,
        *,
        for_write: bool = False,
    ) -> str:
        """Absolute path of a sector's file (root joined with ``sub_path``).

        ``for_write=True``: the caller will create or overwrite it; a read-only store or a miner
        the allow/deny lists refuse raises ``FileStoreError`` (the store may create parents).
        """
        ...
