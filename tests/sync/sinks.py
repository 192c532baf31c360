"""Reading sqlsync sinks back with SQLAlchemy, to compare them with the KV field by field."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Set, Tuple

import sqlalchemy as sa

from sectorhooks.state import SectorStateManager
from sectorhooks_spec import SectorState, to_jsonable

#: Columns every sqlsync ``sectors`` table must have (the issue's "main fields").
REQUIRED = {"miner", "number", "workspace", "state_name", "version", "updated_at", "state_json"}


def sector_rows(url: str) -> Dict[Tuple[int, int], Dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM sectors")).mappings().all()
            return {(int(r["miner"]), int(r["number"])): dict(r) for r in rows}
    finally:
        engine.dispose()


def event_versions(url: str) -> Dict[Tuple[int, int], List[int]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            out: Dict[Tuple[int, int], List[int]] = {}
            for m, n, v in conn.execute(sa.text("SELECT miner, number, version FROM sector_events")):
                out.setdefault((int(m), int(n)), []).append(int(v))
            return {k: sorted(v) for k, v in out.items()}
    finally:
        engine.dispose()


def _same(column_value: Any, kv_value: Any) -> bool:
    if isinstance(kv_value, bool):
        return column_value is not None and bool(column_value) == kv_value  # MariaDB: TINYINT
    return column_value == kv_value  # type: ignore[no-any-return]


def field_differences(url: str, state: SectorStateManager) -> List[str]:
    """Every way the sink's ``sectors`` table differs from the KV, column by column."""
    rows = sector_rows(url)
    diffs: List[str] = []
    states = state.scan()
    if rows:
        missing = REQUIRED - set(next(iter(rows.values())))
        if missing:
            return [f"{url}: sectors lacks columns {sorted(missing)}"]
    for ws, s in states:
        row = rows.pop((s.id.miner, s.id.number), None)
        if row is None:
            diffs.append(f"{s.id}: no row")
            continue
        data = to_jsonable(s)
        expect: Dict[str, Any] = {"workspace": ws.value, "state_name": s.state_name}
        expect.update({k: v for k, v in data.items() if k in row and not isinstance(v, (dict, list))})
        if s.pre is not None:
            expect.update(comm_r=s.pre.comm_r, comm_d=s.pre.comm_d)
        for col, want in expect.items():
            if col in row and not _same(row[col], want):
                diffs.append(f"{s.id}: column {col} = {row[col]!r}, KV has {want!r}")
        if json.loads(row["state_json"]) != data:
            diffs.append(f"{s.id}: state_json differs")
    diffs += [f"s-t0{m}-{n}: row not in the KV" for (m, n) in rows]
    return diffs


def event_gaps(url: str, state: SectorStateManager) -> List[str]:
    """Sectors whose ``sector_events`` versions are not exactly 1..current (lost or extra events)."""
    got = event_versions(url)
    current: Dict[Tuple[int, int], SectorState] = {(s.id.miner, s.id.number): s for s in state.list()}
    bad = []
    for key, s in current.items():
        if got.get(key) != list(range(1, s.version + 1)):
            have: Set[int] = set(got.get(key, []))
            missing = sorted(set(range(1, s.version + 1)) - have)[:5]
            bad.append(f"s-t0{key[0]}-{key[1]}: events {len(have)} of {s.version}, missing {missing}")
    return bad
