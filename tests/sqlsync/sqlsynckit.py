"""Helpers for the sqlsync tests: states, and a feeder that calls the plugin's hooks through a real
PluginHost exactly as the dispatcher does (every spec argument, by name), then reads tables back."""

from __future__ import annotations

import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs
import sqlalchemy as sa

from sectorhooks.host import PluginHost
from sectorhooks_spec import (
    AllocatedSector,
    LatestState,
    PreCommitInfo,
    SectorID,
    SectorState,
    SyncerInstance,
    Workspace,
    dumps,
)


def state(number: int, version: int, name: str = "PC1Done", miner: int = 1000, **fields: Any) -> SectorState:
    """A sector state at ``version`` whose latest reported state is ``name``."""
    fields.setdefault(
        "pre", PreCommitInfo(f"bagboea4r{number}", f"baga6ea4d{number}") if version > 1 else None
    )
    return SectorState(
        id=SectorID(miner, number),
        sector_type=8,
        latest_state=LatestState(name, "", "ev", "worker-1"),
        version=version,
        updated_at=1.7e9 + version,
        **fields,
    )


class Feeder:
    """One sqlsync instance driven through the host: hooks with every spec argument, then Flush."""

    def __init__(self, host: PluginHost, url: str, **meta: Any):
        self.host = host
        self.url = url
        self.prefix = meta.get("table_prefix", "")
        self.syncer = SyncerInstance(f"t{uuid.uuid4().hex[:8]}", "sqlsync", {"url": url, **meta})
        self.module = host.records["sqlsync"].bound.module  # type: ignore[union-attr]

    def close(self) -> None:
        """Drop this instance from the plugin and close its engine (the host never does at run time)."""
        inst = self.module._INSTANCES.pop(self.syncer.name, None)
        if inst is not None:
            inst.close()

    def __enter__(self) -> Feeder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call the plugin's ``hook`` impl for this instance (``syncer`` is passed for you)."""
        impl = self.host.impl("sqlsync", hook)
        assert impl is not None, f"sqlsync does not implement {hook}"
        return impl(syncer=self.syncer, **kwargs)

    def update(self, s: SectorState, workspace: Workspace = Workspace.ONLINE) -> None:
        self.call(
            "sync_on_update", sector_id=s.id, workspace=workspace, fields={}, state=s, state_json=dumps(s)
        )

    def import_(
        self, s: SectorState, workspace: Workspace = Workspace.ONLINE, override: bool = False
    ) -> None:
        self.call("sync_on_import", workspace=workspace, state=s, override=override, state_json=dumps(s))

    def init(self, states: Sequence[SectorState], workspace: Workspace = Workspace.ONLINE) -> None:
        self.call(
            "sync_on_init",
            sectors=[AllocatedSector(s.id, 8) for s in states],
            workspace=workspace,
            states=list(states),
            states_json=[dumps(s) for s in states],
        )

    def finalize(self, s: SectorState) -> None:
        self.call("sync_on_finalize", sector_id=s.id, state=s, state_json=dumps(s))

    def restore(self, s: SectorState) -> None:
        self.call("sync_on_restore", sector_id=s.id, state=s, state_json=dumps(s))

    def send(self, kind: str, s: SectorState, workspace: Workspace = Workspace.ONLINE) -> None:
        """Deliver one change by event kind (``update``, ``import``, ``init``, ``finalize``, ``restore``)."""
        if kind == "update":
            self.update(s, workspace)
        elif kind == "import":
            self.import_(s, workspace)
        elif kind == "init":
            self.init([s], workspace)
        elif kind == "finalize":
            self.finalize(s)
        else:
            self.restore(s)

    def flush(self) -> None:
        self.call("sync_flush")

    def write(self, *states: SectorState) -> None:
        """Update then flush."""
        for s in states:
            self.update(s)
        self.flush()

    # --- reading back ------------------------------------------------------------------------

    def rows(self) -> Dict[str, Tuple[int, str]]:
        return self.module.read_rows(self.url, self.prefix)  # type: ignore[no-any-return]

    def query(self, sql: str) -> List[Tuple[Any, ...]]:
        return query(self.url, sql.format(p=self.prefix))

    def columns(self) -> Dict[str, Any]:
        """Column name -> value of every ``sectors`` row, keyed by ``str(SectorID)``."""
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                res = conn.exec_driver_sql(f"SELECT * FROM {self.prefix}sectors").mappings().all()
                return {f"s-t0{r['miner']}-{r['number']}": dict(r) for r in res}
        finally:
            engine.dispose()

    def events(self) -> Dict[Tuple[str, int], Tuple[str, str, str]]:
        """(sector, version) -> (event, workspace, state_json) of every ``sector_events`` row."""
        rows = self.query("SELECT miner, number, version, event, workspace, state_json FROM {p}sector_events")
        return {(f"s-t0{m}-{n}", int(v)): (e, w, js) for m, n, v, e, w, js in rows}


def query(url: str, sql: str, params: Optional[Mapping[str, Any]] = None) -> List[Tuple[Any, ...]]:
    """Run one statement in its own connection (committed); rows for a SELECT."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            res = conn.execute(sa.text(sql), dict(params or {}))
            return [tuple(r) for r in res] if res.returns_rows else []
    finally:
        engine.dispose()


def expected(states: Sequence[SectorState]) -> Dict[str, Tuple[int, str]]:
    """What ``read_rows`` must return: the highest version of each sector, serialized."""
    best: Dict[str, SectorState] = {}
    for s in states:
        key = str(s.id)
        if key not in best or best[key].version < s.version:
            best[key] = s
    return {k: (s.version, dumps(s)) for k, s in best.items()}


def evolve(s: SectorState, **fields: Any) -> SectorState:
    """The next version of ``s`` with ``fields`` changed."""
    return attrs.evolve(s, version=s.version + 1, updated_at=s.updated_at + 1, **fields)
