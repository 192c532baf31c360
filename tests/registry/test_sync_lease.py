"""The registry's Lease drives SyncService on real Redis: each syncer runs on one replica only,
and moves to another when its replica stops, so two replicas neither double-deliver nor stall."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.regkit import CONTRIB
from sectorhooks.config import DBConfig, HostConfig, PluginsConfig, SyncerConfig, SyncSettings
from sectorhooks.registry import lease_factory, open_registry
from sectorhooks.runtime import Runtime
from sectorhooks.sync import DispatcherState
from sectorhooks_spec import AllocatedSector, LatestState, SectorID
from support import wait_for


def _config(tmp: Path, plugin: str, meta: dict) -> HostConfig:
    return HostConfig(
        path="<test>",
        data_dir=tmp / "data",
        plugins=PluginsConfig(
            dirs=(CONTRIB / plugin, CONTRIB / "sqlsync"), bundled=False, entry_points=False
        ),
        db=DBConfig(plugin_name=plugin, meta=dict(meta)),
        syncers=(SyncerConfig("mirror", "sqlsync", {"url": f"sqlite:///{tmp / 'mirror.sqlite3'}"}),),
        sync=SyncSettings(
            batch_size=100,
            max_attempts=3,
            poll_interval=0.02,
            linger=0.02,
            backoff_base=0.01,
            backoff_max=0.1,
        ),
    )


def _replica(config: HostConfig, leases_kv: Any) -> Runtime:
    options = {"lease_factory": lease_factory(leases_kv, ttl=3.0)}
    return Runtime.open(config, start_sync=True, filestores=False, sync_options=options)


def test_a_syncer_runs_on_exactly_one_replica_and_moves_when_that_replica_stops(tmp_path, redis_backend):
    plugin, meta = redis_backend
    config = _config(tmp_path, plugin, meta)
    with open_registry(config) as (_, reg):
        leases = reg.store
        r1 = _replica(config, leases)
        try:
            d1 = r1.sync.dispatcher("mirror")
            wait_for(
                lambda: d1.state in (DispatcherState.RUNNING, DispatcherState.IDLE),
                30,
                "replica 1 to take the syncer",
            )
            r2 = _replica(config, leases)
            try:
                d2 = r2.sync.dispatcher("mirror")
                wait_for(lambda: d2.state is DispatcherState.STANDBY, 30, "replica 2 to stand by")
                sids = [SectorID(1000, n) for n in range(20)]
                r1.state.init_sectors([AllocatedSector(s, 8) for s in sids])
                for s in sids:
                    r1.state.update(s, latest_state=LatestState("PC1"))
                head = r1.state.log.head()
                wait_for(lambda: d1.cursor == head, 30, "replica 1 to deliver")
                assert d2.state is DispatcherState.STANDBY and d2.cursor == 0  # never delivered a thing
            except BaseException:
                r2.close()
                raise
        finally:
            r1.close()  # stops its dispatcher and releases the lease
        try:
            wait_for(
                lambda: d2.state in (DispatcherState.RUNNING, DispatcherState.IDLE),
                15,
                "replica 2 to take over",
            )
            for s in sids:
                r2.state.update(s, latest_state=LatestState("Finalize"))
            head = r2.state.log.head()
            wait_for(lambda: d2.cursor == head, 30, "replica 2 to deliver the rest")
            rows = r2.host.records["sqlsync"].bound.module.read_rows(
                f"sqlite:///{tmp_path / 'mirror.sqlite3'}"
            )
            assert {k: v[0] for k, v in rows.items()} == {str(s): r2.state.get(s).version for s in sids}
        finally:
            r2.close()
