"""sqlsync flush path vs raw ``sqlite3`` ``executemany`` upserts of the same rows (issue 5, bench a).

Ours: for every change, the hook call the dispatcher makes (``OnUpdate`` with ``state_json``,
through the host's ``PluginImpl``), then ``Flush``: read versions, reduce to the last state per
sector, build the column values from the JSON, one transaction of ``executemany`` upserts with
the version guard (and the ``sector_events`` appends when on). Baseline: the same rows as
ready-made tuples, ``executemany`` into the same table with the same guarded upsert by the
stdlib ``sqlite3`` module, one commit. The states and their JSON are built before timing.

Run standalone: ``python benchmarks/bench_sqlsync.py [--quick]``.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from sectorhooks_spec import (
    LatestState,
    MessageInfo,
    Piece,
    PreCommitInfo,
    SectorID,
    SectorState,
    Seed,
    SyncerInstance,
    Ticket,
    Workspace,
    dumps,
    to_jsonable,
)

GOAL = 0.5
STATES = ("PC1Done", "PC2Done", "WaitSeed", "C1Done", "C2Done", "Persisted", "Finalized")


def _state(num: int, version: int, updated_at: float) -> SectorState:
    return SectorState(
        id=SectorID(1000, num),
        sector_type=8,
        ticket=Ticket("ab" * 32, 1000 + num),
        seed=Seed("cd" * 32, 2000 + num),
        pieces=(Piece(f"baga6ea4seaqbench{num}", 34359738368),),
        pre=PreCommitInfo(f"bagboea4b5abcbench{num}", f"baga6ea4seaqdbench{num}"),
        message_info=MessageInfo(f"bafy2bzacebench{num}"),
        latest_state=LatestState(
            STATES[version % len(STATES)], STATES[(version - 1) % len(STATES)], "ev", "w1"
        ),
        version=version,
        updated_at=updated_at,
    )


def make_changes(n: int, per_sector: int) -> List[Tuple[SectorID, str]]:
    """``n`` changes (sector id, state JSON) over ``n // per_sector`` sectors, interleaved as a
    busy log is. JSON is what ``sectorhooks_spec.dumps`` writes (checked), built from a template."""
    sectors = max(1, n // per_sector)
    template = to_jsonable(_state(0, 1, 0.0))
    out = []
    for i in range(n):
        num, version = i % sectors, i // sectors + 1
        d = dict(template)
        d["id"] = {"miner": 1000, "number": num}
        d["ticket"] = {"ticket": "ab" * 32, "epoch": 1000 + num}
        d["seed"] = {"seed": "cd" * 32, "epoch": 2000 + num}
        d["pieces"] = [dict(template["pieces"][0], cid=f"baga6ea4seaqbench{num}")]
        d["pre"] = {"comm_r": f"bagboea4b5abcbench{num}", "comm_d": f"baga6ea4seaqdbench{num}"}
        d["message_info"] = dict(template["message_info"], pre_commit_cid=f"bafy2bzacebench{num}")
        d["latest_state"] = dict(
            template["latest_state"],
            state=STATES[version % len(STATES)],
            prev_state=STATES[(version - 1) % len(STATES)],
        )
        d["version"], d["updated_at"] = version, 1.7e9 + i
        out.append((SectorID(1000, num), json.dumps(d, separators=(",", ":"), ensure_ascii=False)))
    for i in (0, n - 1):
        sid, js = out[i]
        if js != dumps(_state(sid.number, i // sectors + 1, 1.7e9 + i)):
            raise AssertionError("bench template JSON differs from sectorhooks_spec.dumps")
    return out


Changes = Sequence[Tuple[SectorID, str]]


def _timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _run_ours(host: Any, db: Path, changes: Changes, events: bool, decoder: str) -> float:
    syncer = SyncerInstance(db.stem, "sqlsync", {"url": f"sqlite:///{db}", "events": events})
    on_update = host.impl("sqlsync", "sync_on_update")
    flush = host.impl("sqlsync", "sync_flush")
    if on_update is None or flush is None:
        raise RuntimeError(f"sqlsync did not load: {host.records['sqlsync'].error}")
    ws = Workspace.ONLINE
    # First use opens the engine and creates the tables: not part of a flush's cost.
    sid0, js0 = changes[0]
    on_update(syncer=syncer, sector_id=sid0, workspace=ws, fields={}, state=None, state_json=js0)
    flush(syncer=syncer)
    module = host.records["sqlsync"].bound.module
    sink = module._INSTANCES[syncer.name]
    if decoder == "json":  # what a host without msgspec gets
        rows = sys.modules[module.__package__ + ".rows"]
        sink.schema.row = rows.row_builder(sink.schema.scalars, "json")

    def work() -> None:
        # The dispatcher's call per change: every spec argument by name; ``state`` stays
        # undecoded (None) because sqlsync does not ask for it.
        for sid, js in changes:
            on_update(syncer=syncer, sector_id=sid, workspace=ws, fields={}, state=None, state_json=js)
        flush(syncer=syncer)

    try:
        return _timed(work)
    finally:
        module._INSTANCES.pop(syncer.name).close()


def _baseline_rows(changes: Changes, columns: Sequence[str]) -> List[tuple]:
    rows = []
    for sid, js in changes:
        d = json.loads(js)
        d.update(
            miner=sid.miner,
            number=sid.number,
            workspace="online",
            state_name=d["latest_state"]["state"],
            comm_r=d["pre"]["comm_r"],
            comm_d=d["pre"]["comm_d"],
            pre_commit_cid=d["message_info"]["pre_commit_cid"],
            commit_cid=d["message_info"]["commit_cid"],
            state_json=js,
        )
        rows.append(tuple(d[c] for c in columns))
    return rows


def _run_raw(db: Path, template: Path, changes: Changes, events: bool) -> float:
    src = sqlite3.connect(template)
    ddl = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE type='table'")]
    cols = [r[1] for r in src.execute("PRAGMA table_info(sectors)")]
    src.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    for stmt in ddl:
        conn.execute(stmt)
    conn.commit()
    rows = _baseline_rows(changes, cols)
    vi, ti = cols.index("version"), cols.index("updated_at")
    evs = [(r[0], r[1], r[vi], "update", "online", r[ti], r[-1]) for r in rows]
    upd = (
        ", ".join(f"{c} = excluded.{c}" for c in cols[2:] if c != "version") + ", version = excluded.version"
    )
    upsert = (
        f"INSERT INTO sectors ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        f"ON CONFLICT (miner, number) DO UPDATE SET {upd} WHERE sectors.version < excluded.version"
    )
    append = "INSERT INTO sector_events VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"

    def work() -> None:
        conn.executemany(upsert, rows)
        if events:
            conn.executemany(append, evs)
        conn.commit()

    try:
        return _timed(work)
    finally:
        conn.close()


def _same_tables(a: Path, b: Path, events: bool) -> None:
    queries = ["SELECT * FROM sectors ORDER BY miner, number"]
    if events:
        queries.append("SELECT * FROM sector_events ORDER BY miner, number, version")
    ca, cb = sqlite3.connect(a), sqlite3.connect(b)
    try:
        for q in queries:
            if ca.execute(q).fetchall() != cb.execute(q).fetchall():
                raise AssertionError(f"sqlsync and the raw baseline disagree ({q}): {a} vs {b}")
    finally:
        ca.close()
        cb.close()


def run(quick: bool = False) -> List[Dict[str, Any]]:
    """Benchmark rows (see module docstring); each side's best of ``reps`` alternating runs."""
    from sectorhooks.config import HostConfig, PluginsConfig
    from sectorhooks.host import PluginHost

    n, reps = (20_000, 3) if quick else (100_000, 2)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sqlsync-"))
    host = PluginHost(HostConfig(data_dir=tmp, plugins=PluginsConfig(entry_points=False))).load().start()
    results = []
    try:
        fast = "msgspec" if importlib.util.find_spec("msgspec") else "json"
        cases = [
            (1, False, fast, f"flush {n:,} changes of {n:,} sectors, events off"),
            (1, True, fast, f"flush {n:,} changes of {n:,} sectors, events on"),
            (1, False, "json", f"flush {n:,} changes of {n:,} sectors, events off"),
            (10, False, fast, f"flush {n:,} changes of {n // 10:,} sectors, 10 each (raw: no reduce)"),
        ]
        changes: Changes = []
        for case, (per_sector, events, decoder, label) in enumerate(cases):
            if case == 0 or per_sector != cases[case - 1][0]:
                changes = make_changes(n, per_sector)
            ours, raw = [], []
            for rep in range(reps):
                ours_db, raw_db = tmp / f"ours{case}_{rep}.sqlite", tmp / f"raw{case}_{rep}.sqlite"
                ours.append(_run_ours(host, ours_db, changes, events, decoder))
                raw.append(_run_raw(raw_db, ours_db, changes, events))
                _same_tables(ours_db, raw_db, events)
                for f in tmp.glob(f"*{case}_{rep}.sqlite*"):
                    f.unlink()
            results.append(
                {
                    "group": "sqlsync (a)",
                    "name": f"{label}; {decoder} decoder; states + JSON built before timing",
                    "ours": n / min(ours),
                    "baseline": n / min(raw),
                    "baseline_name": "raw sqlite3 executemany guarded upsert"
                    + (" + events insert" if events else ""),
                    "ratio": min(raw) / min(ours),
                    "unit": "changes/s",
                    "goal": GOAL,
                }
            )
    finally:
        host.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    rows = run(quick="--quick" in sys.argv)
    table = Table(title="bench_sqlsync")
    for col in ("name", "ours", "baseline", "baseline_name", "ratio", "goal"):
        table.add_column(col)
    for r in rows:
        ok = "[green]" if r["ratio"] >= r["goal"] else "[red]"
        table.add_row(
            r["name"],
            f"{r['ours']:,.0f}",
            f"{r['baseline']:,.0f}",
            r["baseline_name"],
            f"{ok}{r['ratio']:.2f}",
            f">= {r['goal']}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
