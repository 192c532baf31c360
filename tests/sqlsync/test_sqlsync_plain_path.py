"""The plain path (``rows.py``, json) writes exactly what the speed-up (``msgspec_rows.py``) writes."""

from __future__ import annotations

import importlib.util
from typing import Any, List, Tuple

import pytest
import sqlalchemy as sa

from sectorhooks.host import PluginHost
from sectorhooks_spec import LatestState, MessageInfo, dumps
from sqlsync.sqlsynckit import evolve, state

pytestmark = pytest.mark.skipif(not importlib.util.find_spec("msgspec"), reason="msgspec is optional")


def _changes(module: Any) -> List[Any]:
    """A batch with replays, a sector changed several times, odd text and every event kind."""
    a = state(1, 1, abort_reason='dépassé 中文 \U0001f600 "quoted" \\ \u2028')
    a2 = evolve(a, latest_state=LatestState("C2Done"), message_info=MessageInfo("m1", "m2", True))
    b = state(2, 3, upgrade_landed_epoch=2**40, need_rebuild=True)
    c = evolve(state(3, 1), latest_state=None, pre=None)
    out = []
    for event, s, ws in [
        ("init", a, "online"),
        ("update", b, "online"),
        ("update", a2, "online"),
        ("update", a, "online"),  # a replay of an older version
        ("import", c, "offline"),
        ("finalize", evolve(a2), "offline"),
        ("restore", evolve(b), "online"),
        ("update", b, "online"),
    ]:
        out.append(module.Change(s.id.miner, s.id.number, ws, event, dumps(s)))
    return out


def _tables(url: str, prefix: str) -> Tuple[list, list]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            sectors = conn.exec_driver_sql(f"SELECT * FROM {prefix}sectors ORDER BY miner, number").all()
            events = conn.exec_driver_sql(
                f"SELECT * FROM {prefix}sector_events ORDER BY miner, number, version"
            ).all()
    finally:
        engine.dispose()
    return [tuple(r) for r in sectors], [tuple(r) for r in events]


def test_json_and_msgspec_decoders_write_the_same_tables(host: PluginHost, backend_url: str):
    module = host.records["sqlsync"].bound.module  # type: ignore[union-attr]
    changes = _changes(module)
    got = {}
    for decoder in ("json", "msgspec"):
        prefix = f"{decoder}_"
        writer = module.SinkWriter(decoder, backend_url, prefix, 3, True, 1, decoder=decoder)
        try:
            assert writer.write(changes) == []
            assert writer.write(changes[::-1]) == []  # delivered again, in another order: nothing moves
        finally:
            writer.close()
        got[decoder] = _tables(backend_url, prefix)
    assert got["json"] == got["msgspec"]
    sectors, events = got["json"]
    assert [(r[0], r[1]) for r in sectors] == [(1000, 1), (1000, 2), (1000, 3)]
    assert len(events) == 6  # one per (sector, version): a 1, 2, 3; b 3, 4; c 2
