"""Runtime: the assembled host — config, plugins, KV store, state manager, sync, file stores.

``Runtime.open(config)`` starts the parts in dependency order and ``close()`` stops them in
reverse, also when start-up fails half-way, so every command (serve, demo, sync ...) gets the
same wiring and the same clean shutdown.

The wiring is where data flows one way: the state manager appends to the change log, which the
runtime owns and hands to the state manager and the sync service alike; after each commit the
state manager calls :meth:`Runtime._committed`, which wakes the sync service's dispatchers, which
call the plugins. Neither the state manager nor the sync service imports the other.
"""

from __future__ import annotations

import functools
import logging
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from sectorhooks_spec import FileStore, KVStore
from sectorhooks_spec.kinds import Kind

from .config import HostConfig
from .host import PluginHost

if TYPE_CHECKING:
    from .changelog import ChangeLog
    from .registry.scrape import RegistryService
    from .state import SectorStateManager
    from .sync import SyncService

log = logging.getLogger(__name__)


class Runtime:
    """Everything a running host holds; use ``with Runtime.open(config) as rt:``."""

    def __init__(self, config: HostConfig):
        self.config = config
        self.host = PluginHost(config)
        self.kv: KVStore = None  # type: ignore[assignment]
        self.log: ChangeLog = None  # type: ignore[assignment]
        self.state: SectorStateManager = None  # type: ignore[assignment]
        self.sync: SyncService = None  # type: ignore[assignment]
        self.filestores: Dict[str, FileStore] = {}
        self.registry: Optional[RegistryService] = None
        self._stack = ExitStack()

    @classmethod
    def open(
        cls,
        config: Optional[HostConfig] = None,
        *,
        start_sync: bool = True,
        filestores: bool = True,
        registry: bool = True,
        sync_options: Optional[Dict[str, Any]] = None,
    ) -> Runtime:
        """Load plugins, open the KV, the change log, the state manager, the syncers and the file stores.

        With ``registry`` (the default) this host registers its plugins in the shared registry,
        scrapes their health under the scrape lease, and runs each syncer's dispatcher only while
        it holds that syncer's lease, so several replicas on one KV cooperate.
        """
        from .changelog import ChangeLog
        from .kv import open_kvstore
        from .state import SectorStateManager
        from .state.scan import iter_sectors
        from .stores import open_filestores
        from .sync import SyncService

        rt = cls(config or HostConfig())
        try:
            rt.config.data_dir.mkdir(parents=True, exist_ok=True)
            rt.host.load()
            rt._stack.callback(rt.host.shutdown)
            rt.host.start(kinds=[Kind.KV_STORE])
            rt.kv = open_kvstore(rt.host, rt.config)
            rt._stack.callback(rt.kv.close)
            rt.host.start(kvstore=rt.kv)
            options = dict(sync_options or {})
            if registry:
                from .registry.lease import lease_factory
                from .registry.scrape import RegistryService

                rt.registry = RegistryService(rt.host, rt.kv).start()
                rt._stack.callback(rt.registry.stop)
                options.setdefault("lease_factory", lease_factory(rt.kv))
            # Recent entries stay in memory for the dispatchers: two batches' worth.
            rt.log = ChangeLog(rt.kv, shared=2 * rt.config.sync.batch_size)
            rt.state = SectorStateManager(rt.kv, rt.log, on_commit=rt._committed)
            rt._stack.callback(rt.state.close)
            rt.sync = SyncService(
                rt.host,
                rt.kv,
                rt.config,
                log=rt.log,
                sectors=functools.partial(iter_sectors, rt.kv),
                **options,
            )
            rt._stack.callback(rt.sync.stop)
            if start_sync:
                rt.sync.start()
            if filestores:
                rt.filestores = open_filestores(rt.host, rt.config)
        except BaseException:
            rt.close()
            raise
        return rt

    def _committed(self, head: int, entries: Sequence[Tuple[int, bytes]]) -> None:
        """The state manager committed ``entries`` (``(seq, raw)``); the log head is ``head``."""
        if self.sync is not None:
            self.sync.on_commit(head, entries)

    def close(self) -> None:
        """Stop sync (flushing), state manager, plugins (onShutdown) and the KV, in that order."""
        self._stack.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
