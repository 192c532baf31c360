"""The plugin under test: where it is, its Meta, and how the suites load and open it.

Every suite goes through the host's own loader (a :class:`~sectorhooks.host.PluginHost` holding
just that plugin directory, plus the bundled memdb KV for a syncer's runtime), so a plugin passes
the suites exactly as the host will run it. The project's own tests build targets for the bundled
backends (``contrib_plugins/sqlkv`` with a fresh database ...) and third parties get one from
``--sectorhooks-plugin DIR --sectorhooks-meta key=value``: both reach the tests through the
``sectorhooks_target`` fixture.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import attrs

from sectorhooks_spec.filestore import StoreConfig
from sectorhooks_spec.kinds import Kind
from sectorhooks_spec.manifest import MANIFEST_FILE, Manifest, parse_manifest

from ..config import DBConfig, HostConfig, PluginsConfig, SyncerConfig, SyncSettings
from ..host import PluginHost, PluginStatus
from ..loader import bundled_plugins_dir

#: Placeholder in a Meta value for the running test's own temp directory.
TMP = "{tmp}"

#: The syncer instance the delivery suite configures for the plugin under test.
SYNCER = "contract"

#: Dispatcher settings of the delivery suite: small backoff, few attempts, hooks in this process.
FAST_SYNC = SyncSettings(
    batch_size=200,
    max_attempts=3,
    poll_interval=0.02,
    linger=0.02,
    backoff_base=0.01,
    backoff_max=0.1,
    isolation="thread",
)


@attrs.frozen
class KVTraits:
    """How a KV store isolates transactions, where known (``None``: either behaviour passes).

    ``locking``: an ``update`` makes a concurrent writer of the same key wait (True) or the later
    committer conflicts and is retried (False, optimistic). ``snapshots``: a ``view`` sees one
    snapshot (True) or may raise ``TransactionConflict`` instead (False, e.g. rediskv).
    ``view_blocks_writers``: a writer waits for an open ``view`` (memdb).
    ``process_local``: why the store cannot be shared between processes by design (memdb lives in
    one process's memory: :data:`IN_MEMORY`); the multi-process contract is skipped with this
    reason. ``None`` (the default): a second process must open the same store and share it, as
    ``sectorhooks token create`` does while ``serve`` runs.
    """

    locking: Optional[bool] = None
    snapshots: Optional[bool] = None
    view_blocks_writers: Optional[bool] = None
    process_local: Optional[str] = None


#: ``KVTraits.process_local`` of an in-memory store (memdb): each process has a store of its own.
IN_MEMORY = "in-memory: every process opens a store of its own, so none can be shared between processes"


def known_traits(path: Path) -> KVTraits:
    """What the suite knows of a plugin directory given to ``--sectorhooks-plugin``: the bundled
    memdb is in-memory (:data:`IN_MEMORY`); nothing is declared for any other plugin.

    The bundled memdb is known by its module's text, not by its path: the suite may be given the
    repository's ``contrib_plugins/memdb`` while the host runs the copy installed in its wheel."""
    bundled = bundled_plugins_dir() / "memdb"
    if Path(path).resolve() == bundled.resolve() or _same_file(Path(path), bundled, "memdb.py"):
        return KVTraits(process_local=IN_MEMORY)
    return KVTraits()


def _same_file(a: Path, b: Path, name: str) -> bool:
    try:
        return (a / name).read_bytes() == (b / name).read_bytes()
    except OSError:
        return False


class TargetError(Exception):
    """The plugin under test cannot be loaded or is of another kind (the suite cannot start)."""


@attrs.frozen
class PluginUnderTest:
    """A plugin directory, the Meta a suite opens it with, and what is known of its behaviour."""

    path: Path = attrs.field(converter=Path)
    meta: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    label: str = ""  # shown in messages, e.g. "sqlkv-postgresql"; default: the plugin's name
    traits: KVTraits = KVTraits()

    def manifest(self) -> Manifest:
        """The plugin's parsed manifest (:class:`TargetError` naming the file if it is invalid)."""
        mpath = self.path / MANIFEST_FILE
        if not mpath.is_file():
            raise TargetError(f"{self.path}: no {MANIFEST_FILE} here (give the plugin's own directory)")
        try:
            return parse_manifest(mpath.read_text(encoding="utf-8"), str(mpath))
        except Exception as exc:
            raise TargetError(str(exc)) from exc

    @property
    def name(self) -> str:
        return self.label or self.manifest().name

    def with_meta(self, **extra: Any) -> PluginUnderTest:
        """The same target with more Meta keys."""
        return attrs.evolve(self, meta={**self.meta, **extra})

    def for_test(self, tmp: Path) -> PluginUnderTest:
        """The target one test opens: ``{tmp}`` in a Meta value becomes that test's own temp
        directory (``--sectorhooks-meta path={tmp}/kv.sqlite3``: a fresh database per test)."""
        meta = {k: v.replace(TMP, str(tmp)) if isinstance(v, str) else v for k, v in self.meta.items()}
        return attrs.evolve(self, meta=meta)


def parse_meta(items: Sequence[str]) -> Dict[str, str]:
    """``["url=sqlite:///x", "prefix=a"]`` -> ``{"url": "sqlite:///x", "prefix": "a"}``."""
    meta: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TargetError(f"--sectorhooks-meta {item!r}: write it as key=value")
        meta[key.strip()] = value
    return meta


def host_config(target: PluginUnderTest, data_dir: Path) -> HostConfig:
    """A config loading only the plugin under test (nothing bundled, no entry points)."""
    return HostConfig(
        path="<sectorhooks.testing>",
        data_dir=data_dir,
        plugins=PluginsConfig(dirs=(target.path,), bundled=False, entry_points=False),
    )


@contextlib.contextmanager
def started_host(target: PluginUnderTest, data_dir: Path, kind: Kind) -> Iterator[PluginHost]:
    """A started host whose only plugin is ``target`` (which must be of ``kind`` and load)."""
    manifest = target.manifest()
    if manifest.kind is not kind:
        raise TargetError(
            f"{target.path}: plugin {manifest.name!r} is a {manifest.kind.value}, not {kind.value}"
        )
    host = PluginHost(host_config(target, data_dir)).load()
    try:
        host.start()
        record = host.records.get(manifest.name)
        if record is None or record.status not in (PluginStatus.ACTIVE, PluginStatus.LOADED):
            why: List[str] = []
            if record is not None:
                why = [str(p) for p in record.problems] or [record.error]
            why += [str(e) for e in host.orphans]
            raise TargetError(f"plugin {manifest.name!r} from {target.path} did not load: " + "; ".join(why))
        yield host
    finally:
        host.shutdown()


def open_kv(host: PluginHost, target: PluginUnderTest, **extra: Any) -> Any:
    """``Constructor(meta)`` of the KVStore plugin under test, through the host."""
    meta = {**target.meta, **extra}
    return host.call_driver(Kind.KV_STORE, target.manifest().name, "kvstore_constructor", meta=meta)


def open_filestore(host: PluginHost, target: PluginUnderTest, name: str, path: Path, **fields: Any) -> Any:
    """``Constructor(StoreConfig)`` of the FileStore plugin under test, through the host.

    ``fields`` are :class:`StoreConfig` fields; ``meta`` is merged over the target's Meta.
    """
    meta = {**target.meta, **dict(fields.pop("meta", None) or {})}
    plugin = target.manifest().name
    config = StoreConfig(name=name, path=str(path), plugin_name=plugin, meta=meta, **fields)
    return host.call_driver(Kind.FILE_STORE, plugin, "filestore_constructor", config=config)


def sync_config(target: PluginUnderTest, data_dir: Path, settings: SyncSettings = FAST_SYNC) -> HostConfig:
    """A runtime config: the bundled memdb KV and one syncer instance (:data:`SYNCER`) of the target."""
    manifest = target.manifest()
    if manifest.kind is not Kind.SYNC_SECTOR_STATE:
        raise TargetError(
            f"{target.path}: plugin {manifest.name!r} is a {manifest.kind.value}, not SyncSectorState"
        )
    return HostConfig(
        path="<sectorhooks.testing>",
        data_dir=data_dir,
        plugins=PluginsConfig(
            dirs=(bundled_plugins_dir() / "memdb", target.path), bundled=False, entry_points=False
        ),
        db=DBConfig(plugin_name="memdb", meta={}),
        syncers=(SyncerConfig(SYNCER, manifest.name, dict(target.meta)),),
        sync=settings,
    )
