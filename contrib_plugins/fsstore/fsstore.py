"""fsstore: sector files in a directory tree, damocles-manager's layout by default.

Meta keys (``[[Common.PersistStores]] Meta = {...}``; an unknown key is an error):

``SubDirPattern``
    where a sector file goes, relative to the root; default ``"{type}/{sector}"``, i.e.
    ``sealed/s-t04040-1001``, ``cache/s-t04040-1001``, ``update-cache/s-t04040-1001``.
    Placeholders: ``{type}`` (sealed, cache, unsealed, update, update-cache), ``{miner}`` (actor
    ID, e.g. 4040; format specs such as ``{miner:06d}`` work), ``{number}`` (sector number) and
    ``{sector}`` (``s-t04040-1001``). It must contain ``{type}`` and identify the sector
    (``{sector}``, or ``{miner}`` and ``{number}``), and may not leave the root (no ``..``, not
    absolute). Example: ``"{type}/{miner}/{sector}"``.
``CreateDirs``
    ``true`` (default): ``full_path(..., for_write=True)`` creates the parent directories.

Pieces live at ``piece/<cid>`` (``custom`` carries the CID); ``CUSTOM`` paths are the caller's
relative path. Every path is checked after resolving symlinks, so nothing escapes the root.
Writes (``for_write=True``) are refused on a read-only store and for a miner the allow/deny
lists refuse; reads are not (see ``sectorhooks_spec.filestore``).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import string
from typing import Optional, Tuple, Union

from sectorhooks_spec import FileStoreError, InstanceInfo, MetaReader, PathType, SectorID, StoreConfig

PLUGIN = "fsstore"
META_KEYS: Tuple[str, ...] = ("SubDirPattern", "CreateDirs")
DEFAULT_PATTERN = "{type}/{sector}"
PLACEHOLDERS = ("type", "miner", "number", "sector")
SECTOR_TYPES = frozenset(
    {PathType.SEALED, PathType.CACHE, PathType.UNSEALED, PathType.UPDATE, PathType.UPDATE_CACHE}
)
# CIDs are multibase strings (base32 "bafy...", base58 "Qm..."): letters and digits only.
_CID_RE = re.compile(r"^[A-Za-z0-9]{1,256}$")


def open_store(config: StoreConfig) -> FsStore:
    """``Constructor(config)``: a store rooted at ``config.path``; ``ValueError`` names a bad key."""
    return FsStore(config)


def _where(config: StoreConfig) -> str:
    return f"plugin {PLUGIN!r} store {config.name!r}"


def check_pattern(pattern: str, where: str = PLUGIN) -> str:
    """Validate a ``SubDirPattern``; returns it or raises ``ValueError`` saying what is wrong."""
    hint = f"placeholders are {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(f"{where}: Meta.SubDirPattern must be a non-empty string ({hint})")
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"{where}: Meta.SubDirPattern {pattern!r} is malformed: {exc} ({hint})") from None
    fields = [f for _, f, _, _ in parsed if f is not None]
    for (_, first, _, _), (literal, second, _, _) in zip(parsed, parsed[1:]):
        if not literal and {first, second} == {"miner", "number"}:
            raise ValueError(
                f"{where}: Meta.SubDirPattern {pattern!r} is ambiguous: put a separator between "
                "{miner} and {number} (miner 1 sector 23 and miner 12 sector 3 would collide)"
            )
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise ValueError(
            f"{where}: Meta.SubDirPattern {pattern!r} has unknown placeholder(s) "
            f"{', '.join('{' + u + '}' for u in unknown)} ({hint})"
        )
    if "type" not in fields:
        raise ValueError(
            f"{where}: Meta.SubDirPattern {pattern!r} lacks {{type}}: sealed and cache files would collide"
        )
    if "sector" not in fields and not ("miner" in fields and "number" in fields):
        raise ValueError(
            f"{where}: Meta.SubDirPattern {pattern!r} must identify the sector: use {{sector}}, "
            "or both {miner} and {number}"
        )
    try:
        sample = pattern.format(type="cache", miner=1000, number=1, sector="s-t01000-1")
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"{where}: Meta.SubDirPattern {pattern!r} cannot be formatted: {exc}") from None
    parts = sample.replace("\\", "/").split("/")
    if sample.startswith(("/", "\\")) or os.path.isabs(sample) or ".." in parts or "" in parts:
        raise ValueError(
            f"{where}: Meta.SubDirPattern {pattern!r} is outside the store root "
            "(it must be relative, without '..' or empty segments)"
        )
    return pattern


class FsStore:
    """A FileStore over one directory (the config's ``path``)."""

    def __init__(self, config: StoreConfig):
        self._config = config
        where = _where(config)
        meta = MetaReader(PLUGIN, config.meta, META_KEYS, where=where, dotted=True)
        if not config.path:
            raise ValueError(f"{where}: Path is empty; set it to the store's root directory")
        self._pattern = check_pattern(str(meta.get("SubDirPattern", DEFAULT_PATTERN)), where)
        self._create_dirs = meta.flag("CreateDirs", True)
        self._root = os.path.abspath(os.path.expanduser(config.path))
        if os.path.isdir(self._root):
            pass
        elif os.path.exists(self._root):
            raise FileStoreError(f"{where}: Path {self._root} exists but is not a directory")
        elif config.strict:
            raise FileStoreError(
                f"{where}: Path {self._root} does not exist and the store is Strict; "
                "create or mount it, or set Strict = false to have it created"
            )
        elif config.read_only:
            raise FileStoreError(f"{where}: Path {self._root} does not exist and the store is ReadOnly")
        else:
            os.makedirs(self._root, exist_ok=True)
        self._real_root = os.path.realpath(self._root)

    # --- identity and capacity --------------------------------------------------------

    def instance_name(self) -> str:
        """The configured name."""
        return self._config.name

    def instance_config(self) -> StoreConfig:
        """The configuration it was built from."""
        return self._config

    def instance_info(self) -> InstanceInfo:
        """Capacity of the filesystem holding the root, from ``shutil.disk_usage``."""
        try:
            usage = shutil.disk_usage(self._root)
        except OSError as exc:
            raise FileStoreError(f"{_where(self._config)}: cannot stat {self._root}: {exc}") from None
        return InstanceInfo(self._config, "fs", usage.total, usage.free, usage.used)

    @property
    def root(self) -> str:
        """The absolute root directory."""
        return self._root

    # --- paths --------------------------------------------------------------------------

    def sub_path(
        self, path_type: Union[PathType, str], sector_id: Optional[SectorID], custom: Optional[str] = None
    ) -> str:
        """Path relative to the root, e.g. ``cache/s-t04040-1001``; see the module docstring."""
        ptype = self._path_type(path_type)
        if ptype is PathType.CUSTOM:
            sub = self._clean_custom(custom)
        elif ptype is PathType.PIECE:
            if not isinstance(custom, str) or not _CID_RE.match(custom):
                raise FileStoreError(
                    f"{_where(self._config)}: piece path needs the piece CID as custom "
                    f"(letters and digits only), got {custom!r}"
                )
            sub = f"piece/{custom}"
        else:
            if not isinstance(sector_id, SectorID):
                raise FileStoreError(
                    f"{_where(self._config)}: path type {ptype.value!r} needs a SectorID, got {sector_id!r}"
                )
            sub = self._pattern.format(
                type=ptype.value, miner=sector_id.miner, number=sector_id.number, sector=str(sector_id)
            )
        self._inside(sub)
        return sub

    def full_path(
        self,
        path_type: Union[PathType, str],
        sector_id: Optional[SectorID],
        custom: Optional[str] = None,
        *,
        for_write: bool = False,
    ) -> str:
        """Absolute path; ``for_write=True`` checks ReadOnly and the miner lists, creates parents."""
        if for_write:
            self._check_writable(sector_id)
        full = self._inside(self.sub_path(path_type, sector_id, custom))
        if for_write and self._create_dirs:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            self._inside(os.path.relpath(full, self._root))  # a parent swapped for a symlink meanwhile
        return full

    def _check_writable(self, sector_id: Optional[SectorID]) -> None:
        cfg = self._config
        if cfg.read_only:
            raise FileStoreError(
                f"{_where(cfg)} is read-only (ReadOnly = true): refusing a path to write; "
                "pick a writable store"
            )
        if sector_id is not None and not cfg.accepts_miner(sector_id.miner):
            denied = sector_id.miner in cfg.deny_miners
            why = "DenyMiners lists it" if denied else "AllowMiners does not list it"
            raise FileStoreError(f"{_where(cfg)} does not accept miner {sector_id.miner} ({why})")

    def _path_type(self, value: Union[PathType, str]) -> PathType:
        try:
            return PathType(value)
        except ValueError:
            known = ", ".join(p.value for p in PathType)
            where = _where(self._config)
            raise FileStoreError(f"{where}: unknown path type {value!r} (known: {known})") from None

    def _clean_custom(self, custom: Optional[str]) -> str:
        where = _where(self._config)
        if not isinstance(custom, str) or not custom or "\x00" in custom:
            raise FileStoreError(f"{where}: custom path must be a non-empty relative path, got {custom!r}")
        text = custom.replace("\\", "/")
        if text.startswith("/") or os.path.isabs(custom) or re.match(r"^[A-Za-z]:", text):
            raise FileStoreError(
                f"{where}: custom path {custom!r} is absolute; give a path relative to the root"
            )
        norm = posixpath.normpath(text)
        if norm == "." or norm == ".." or norm.startswith("../"):
            raise FileStoreError(f"{where}: custom path {custom!r} is outside the store root")
        return norm

    def _inside(self, sub: str) -> str:
        """``root/sub`` if it stays inside the root once symlinks are resolved, else FileStoreError."""
        full = os.path.normpath(os.path.join(self._root, sub))
        real = os.path.realpath(full)
        if real != self._real_root and not real.startswith(self._real_root.rstrip(os.sep) + os.sep):
            raise FileStoreError(
                f"{_where(self._config)}: path {sub!r} resolves to {real}, "
                f"outside the store root {self._real_root}"
            )
        return full

    def __repr__(self) -> str:
        return f"FsStore(name={self._config.name!r}, root={self._root!r})"
