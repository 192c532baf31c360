"""``sync verify`` streams (#20 item 3): the KV's scan merge-joined with a sink's ReadBack pages.

A real sqlsync sink on SQLite, tampered at random (rows deleted, rows added, versions changed,
fields changed, JSON only re-spaced): the comparison counts and names exactly those sectors.
And the memory a verify uses does not grow with the number of sectors.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import tracemalloc
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sectorhooks.runtime import Runtime
from sectorhooks.sync.readback import compare_streams
from sectorhooks_spec import AllocatedSector, SectorID, SyncedRow
from sync.helpers import make_config, open_runtime, sealing_run

Sector = Tuple[int, int]
N = 40


def sqlsync_runtime(tmp_path: Path, db: Path) -> Runtime:
    syncers = [("s", "sqlsync", {"url": f"sqlite:///{db}"})]
    return open_runtime(make_config(tmp_path, syncers=syncers, kv="sqlkv", plugins=("sqlsync",)))


@contextmanager
def tampered(db: Path, statements: List[Tuple[str, Tuple[Any, ...]]]) -> Iterator[None]:
    """Run ``statements`` on the sink's ``sectors`` table, yield, then put the table back."""
    with closing(sqlite3.connect(db)) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(sectors)")]
        saved = conn.execute("SELECT * FROM sectors").fetchall()
        with conn:
            for sql, args in statements:
                conn.execute(sql, args)
    try:
        yield
    finally:
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("DELETE FROM sectors")
            marks = ", ".join("?" for _ in cols)
            conn.executemany(f"INSERT INTO sectors ({', '.join(cols)}) VALUES ({marks})", saved)


def sector_of(line: str) -> Sector:
    _, miner, number = line.split(":")[0].split("-")
    return int(miner[2:]), int(number)


def test_verify_finds_exactly_the_rows_that_differ(tmp_path: Path) -> None:
    db = tmp_path / "sink.sqlite"
    with sqlsync_runtime(tmp_path, db) as rt:
        sealing_run(rt.state, sectors=N, updates=2)
        assert rt.sync.wait_idle(60)
        assert rt.sync.verify("s") == []
        with closing(sqlite3.connect(db)) as conn:
            texts = {(m, n): t for m, n, t in conn.execute("SELECT miner, number, state_json FROM sectors")}
        kv = sorted(texts)
        sectors = st.sampled_from(kv)

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            deleted=st.sets(sectors, max_size=6),
            bumped=st.sets(sectors, max_size=6),
            changed=st.sets(sectors, max_size=6),
            respaced=st.sets(sectors, max_size=6),
            added=st.sets(st.tuples(st.sampled_from([7, 1000, 5000]), st.integers(N, N + 500)), max_size=6),
        )
        def check(
            deleted: Set[Sector],
            bumped: Set[Sector],
            changed: Set[Sector],
            respaced: Set[Sector],
            added: Set[Sector],
        ) -> None:
            statements: List[Tuple[str, Tuple[Any, ...]]] = []
            where = " WHERE miner = ? AND number = ?"
            for s in respaced - changed:  # the same JSON, other spacing: equal
                statements.append(
                    ("UPDATE sectors SET state_json = ?" + where, (json.dumps(json.loads(texts[s])), *s))
                )
            for s in changed:
                data = json.loads(texts[s])
                data["abort_reason"] = "tampered"
                statements.append(("UPDATE sectors SET state_json = ?" + where, (json.dumps(data), *s)))
            for s in bumped:
                statements.append(("UPDATE sectors SET version = version + 1" + where, s))
            for s in deleted:
                statements.append(("DELETE FROM sectors" + where, s))
            for m, n in added:
                statements.append(
                    (
                        "INSERT INTO sectors (miner, number, version, state_json) VALUES (?, ?, 1, '{}')",
                        (m, n),
                    )
                )
            want_version = bumped - deleted
            want_text = changed - deleted - bumped
            with tampered(db, statements):
                report = rt.sync.verify_report("s")
                lines = rt.sync.verify("s")
            assert (report.missing, report.extra, report.version, report.text) == (
                len(deleted),
                len(added),
                len(want_version),
                len(want_text),
            )
            assert report.equal == len(kv) - len(deleted | want_version | want_text)
            assert report.kv_rows == len(kv) and report.sink_rows == len(kv) - len(deleted) + len(added)
            kinds: Dict[str, Set[Sector]] = {
                "missing": set(),
                "extra": set(),
                "version": set(),
                "text": set(),
            }
            for line in lines:
                if "missing in the sink" in line:
                    kinds["missing"].add(sector_of(line))
                elif "but not in the KV" in line:
                    kinds["extra"].add(sector_of(line))
                elif "sink has version" in line:
                    kinds["version"].add(sector_of(line))
                else:
                    assert "differs in field(s) abort_reason" in line, line
                    kinds["text"].add(sector_of(line))
            assert kinds == {"missing": deleted, "extra": added, "version": want_version, "text": want_text}
            assert len(lines) == report.differences

        check()
        assert rt.sync.verify("s") == []


def test_examples_are_bounded_and_the_rest_counted() -> None:
    kv = [(SectorID(1000, n), b'{"version":1}') for n in range(50)]
    sink = iter([SyncedRow(SectorID(1000, n), 2, '{"version":2}') for n in range(0, 50, 2)])
    cmp = compare_streams(kv, {"a": sink}, max_examples=3)["a"]
    assert (cmp.missing, cmp.version, cmp.equal, cmp.extra) == (25, 25, 0, 0)
    assert cmp.lines() == [
        "s-t01000-0: sink has version 2, KV has 1",
        "s-t01000-1: missing in the sink (KV has version 1)",
        "s-t01000-2: sink has version 2, KV has 1",
        "... and 47 more",
    ]


def test_several_sinks_in_one_pass_over_the_kv() -> None:
    passes = 0

    def kv() -> Iterator[Tuple[SectorID, bytes]]:
        nonlocal passes
        passes += 1
        for n in range(10):
            yield SectorID(1000, n), b'{"version":1,"x":%d}' % n

    def rows(skip: Set[int]) -> Iterator[SyncedRow]:
        for n in range(10):
            if n not in skip:
                yield SyncedRow(SectorID(1000, n), 1, f'{{"version":1,"x":{n}}}')

    def broken() -> Iterator[SyncedRow]:
        yield SyncedRow(SectorID(1000, 0), 1, '{"version":1,"x":0}')
        raise ConnectionError("sink went away")

    out = compare_streams(kv(), {"a": rows(set()), "b": rows({3, 4}), "c": broken()})
    assert passes == 1
    assert out["a"].ok and out["a"].equal == 10
    assert out["b"].missing == 2 and not out["b"].ok
    assert out["c"].error == "cannot read the sink back: ConnectionError: sink went away"
    assert not out["c"].ok and out["c"].equal == 1


def _verify_peak(rt: Runtime) -> Tuple[int, int]:
    gc.collect()
    tracemalloc.start()
    try:
        report = rt.sync.verify_report("s")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok, report.lines(5)
    return report.kv_rows, peak


def test_verify_memory_does_not_grow_with_the_sectors(tmp_path: Path) -> None:
    db = tmp_path / "sink.sqlite"
    with sqlsync_runtime(tmp_path, db) as rt:
        peaks = {}
        done = 0
        for target in (2_000, 20_000):
            for start in range(done, target, 500):
                rt.state.init_sectors(
                    [AllocatedSector(SectorID(1000 + n % 3, n), 8) for n in range(start, start + 500)]
                )
            done = target
            assert rt.sync.wait_idle(120)
            rows, peaks[target] = _verify_peak(rt)
            assert rows == target
        assert peaks[20_000] < 2 * peaks[2_000], peaks
