"""Hook specifications: one class per kind, plus the lifecycle every plugin may have.

A plugin never has to import this module: its manifest names plain functions and the loader binds
them to these hooks. An implementation may accept any subset of a spec's arguments, by name
(pluggy checks the names when the plugin is registered). Each docstring shows a working plugin.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from .filestore import FileStore, StoreConfig
from .kvstore import KVStore
from .markers import hookspec
from .rpc import JsonRpcNamespace
from .sector import AllocatedSector, SectorID, SectorState, Workspace
from .sync import SyncedRow, SyncerInstance


class LifecycleSpecs:
    """Start and stop; named by the manifest's ``onInit`` / ``onShutdown`` for every kind."""

    @hookspec
    def plugin_init(self, config: Mapping[str, Any], kvstore: Optional[KVStore]) -> None:
        """Called once at host start, in load order, before any other hook of the plugin.

        ``config`` is the plugin's own table ``[Common.Plugins.Config.<name>]``, plus ``DataDir``
        (the host's data directory, for default file locations) unless the table sets it.
        ``kvstore`` is the host's KV store (``update`` retried on conflicts), for plugins that
        keep state there (e.g. atomic_counter); it is ``None`` for KVStore plugins, which start
        before the store they provide is open. Raising marks the plugin *failed*: its other hooks
        are never called. Example::

            # manifest.toml: onInit = "setup"
            def setup(config, kvstore):
                global COUNTERS
                COUNTERS = kvstore.open_collection("counters")
        """

    @hookspec
    def plugin_shutdown(self) -> None:
        """Called once at host stop (also on SIGTERM and after errors), in reverse load order."""

    @hookspec
    def plugin_health(self) -> Optional[str]:
        """Optional ``Health`` extension point: return ``None`` when healthy, else the reason."""


class KVStoreSpecs:
    """``kind = "KVStore"``: swap the metadata database. Called by name (``[Common.DB.Plugin]``)."""

    @hookspec(firstresult=True)
    def kvstore_constructor(self, meta: Mapping[str, str]) -> KVStore:
        """``Constructor(meta)``: open and return a :class:`~sectorhooks_spec.kvstore.KVStore`.

        ``meta`` is ``[Common.DB.Plugin.Meta]``. Report a missing or bad key by raising
        ``ValueError`` naming the key. Example::

            # manifest.toml: kind = "KVStore", export = [{extPoint="Constructor", impl="open"}]
            def open(meta):
                from mydb import connect          # import heavy modules here, not at top
                return MyStore(connect(meta["url"]))
        """
        raise NotImplementedError


class FileStoreSpecs:
    """``kind = "FileStore"``: lay sector files out your way. Called by name, once per store."""

    @hookspec(firstresult=True)
    def filestore_constructor(self, config: StoreConfig) -> FileStore:
        """``Constructor(config)``: return a :class:`~sectorhooks_spec.filestore.FileStore`.

        Called once per ``[[Common.PieceStores]]`` / ``[[Common.PersistStores]]`` entry naming
        this plugin; ``config.meta`` holds the entry's ``Meta`` table. Example::

            def open(config):
                return MyLayout(config, pattern=config.meta.get("SubDirPattern", "{type}/{sector}"))
        """
        raise NotImplementedError


class RegisterJsonRpcSpecs:
    """``kind = "RegisterJsonRpc"``: add JSON-RPC methods. Every such plugin is called."""

    @hookspec
    def jsonrpc_handler(self) -> Union[JsonRpcNamespace, Tuple[str, Any]]:
        """``Handler()``: return a :class:`~sectorhooks_spec.rpc.JsonRpcNamespace` (or the older
        ``(namespace, handler)`` tuple).

        Each public method of ``handler`` (sync or ``async``) becomes ``Namespace.Method``; it
        needs the permission ``perms`` gives it (else the manifest's ``perms`` table, else
        ``"write"``: see :mod:`sectorhooks_spec.rpc`). To answer with an error code of your own,
        raise :class:`~sectorhooks_spec.errors.PluginRpcError`. Example::

            class Greeter:
                def Hello(self, name: str) -> str:
                    return f"hello {name}"

            def handler():
                return JsonRpcNamespace("Greeter", Greeter(), perms={"Hello": "read"})
        """
        raise NotImplementedError


class SyncSectorStateSpecs:
    """``kind = "SyncSectorState"``: mirror every sector-state change into your database.

    Every syncer instance has its own durable cursor: events arrive in log order, in batches,
    at least once; after a batch the host calls ``Flush`` (if exported) and only then advances the
    cursor. Be idempotent: upsert by sector id and ignore a ``state.version`` older than what you
    have. ``state`` is the full new state; ``state_json`` the same already serialized (cheap: the
    change log carries it), so a sink never reads back nor serializes again. Raising sends the
    event to retries and, after the configured attempts, to dead letters. Example::

        ROWS = {}
        def on_update(sector_id, state):
            old = ROWS.get(sector_id)
            if old is None or old.version < state.version:
                ROWS[sector_id] = state
    """

    @hookspec
    def sync_on_import(
        self,
        syncer: SyncerInstance,
        workspace: Workspace,
        state: SectorState,
        override: bool,
        state_json: str,
    ) -> None:
        """``OnImport``: a sector was imported (``override``: it replaced an existing one)."""

    @hookspec
    def sync_on_init(
        self,
        syncer: SyncerInstance,
        sectors: Sequence[AllocatedSector],
        workspace: Workspace,
        states: Sequence[SectorState],
        states_json: Sequence[str],
    ) -> None:
        """``OnInit``: a batch of newly allocated sectors, with their initial states."""

    @hookspec
    def sync_on_update(
        self,
        syncer: SyncerInstance,
        sector_id: SectorID,
        workspace: Workspace,
        fields: Mapping[str, Any],
        state: SectorState,
        state_json: str,
    ) -> None:
        """``OnUpdate``: ``fields`` (name -> new JSON value) changed; ``state`` is the result."""

    @hookspec
    def sync_on_finalize(
        self, syncer: SyncerInstance, sector_id: SectorID, state: SectorState, state_json: str
    ) -> None:
        """``OnFinalize``: the sector was finalized and moved to the offline workspace."""

    @hookspec
    def sync_on_restore(
        self, syncer: SyncerInstance, sector_id: SectorID, state: SectorState, state_json: str
    ) -> None:
        """``OnRestore``: a finalized sector was moved back to the online workspace."""

    @hookspec
    def sync_flush(self, syncer: SyncerInstance) -> None:
        """``Flush`` (optional): make everything received so far durable, then return."""

    @hookspec
    def sync_read_back(
        self, syncer: SyncerInstance, after: Optional[SectorID], limit: int
    ) -> Sequence[SyncedRow]:
        """``ReadBack`` (optional): one page of what ``syncer``'s sink holds, for ``sync verify``.

        At most ``limit`` :class:`~sectorhooks_spec.sync.SyncedRow`, ordered by sector id
        (miner, then number), each strictly after ``after`` (``None``: from the first). The host
        asks for the next page after the last row's ``sector_id`` until a page is short. Read
        with the instance's own settings (``syncer.meta``); an empty or absent sink is ``[]``.
        A syncer without it is reported *unverifiable* by ``sync verify`` and the demo. Example::

            def read_back(syncer, after, limit):
                sql = "SELECT miner, number, version, state_json FROM sectors"
                args = []
                if after is not None:
                    sql += " WHERE (miner, number) > (?, ?)"
                    args = [after.miner, after.number]
                rows = db(syncer).execute(sql + " ORDER BY miner, number LIMIT ?", [*args, limit])
                return [SyncedRow(SectorID(m, n), v, s) for m, n, v, s in rows]
        """
        raise NotImplementedError


#: Every spec class, in the order the host adds them to its PluginManager.
ALL_SPECS = (LifecycleSpecs, KVStoreSpecs, FileStoreSpecs, RegisterJsonRpcSpecs, SyncSectorStateSpecs)
