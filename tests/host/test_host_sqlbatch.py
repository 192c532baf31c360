"""sectorhooks_spec.backend.MultiRow: multi-row statements write exactly what executemany writes."""

from __future__ import annotations

import sqlite3
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sectorhooks_spec.backend import MultiRow

UPSERT = (
    "INSERT INTO t (k, v, n) VALUES (?, ?, ?) "
    "ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = excluded.n WHERE t.n < excluded.n"
)
ROWS = st.lists(
    st.tuples(st.integers(0, 40), st.text(max_size=6) | st.none() | st.binary(max_size=4), st.integers(0, 9)),
    max_size=1200,
)


def _table() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v, n INTEGER)")
    return db


@settings(max_examples=60, deadline=None)
@given(rows=ROWS, max_params=st.sampled_from([3, 7, 30, 999, 32766]))
def test_multi_row_upsert_leaves_what_executemany_leaves(rows: List[Tuple], max_params: int) -> None:
    """Same rows, same order, same ON CONFLICT guard, with duplicate keys inside one statement."""
    one, many = _table(), _table()
    one.executemany(UPSERT, rows)
    MultiRow(UPSERT, 3, max_params=max_params).execute(many.cursor(), rows)
    dump = "SELECT k, v, n FROM t ORDER BY k"
    assert many.execute(dump).fetchall() == one.execute(dump).fetchall()


CHUNKS = [(0, []), (1, [1]), (5, [5]), (32, [32]), (33, [32, 1]), (512, [512])]
CHUNKS.append((1000, [512, 256, 128, 64, 32, 8]))


@pytest.mark.parametrize(("n", "sizes"), CHUNKS)
def test_chunks_are_full_then_powers_of_two_then_exact(n: int, sizes: List[int]) -> None:
    m = MultiRow(UPSERT, 3)
    chunks = list(m.chunks([(i, "x", 1) for i in range(n)]))
    assert [len(params) // 3 for _, params in chunks] == sizes
    assert [p for _, params in chunks for p in params][:3] == ([0, "x", 1] if n else [])
    assert all(sql.count("(?, ?, ?)") == len(params) // 3 for sql, params in chunks)
    assert all(sql.endswith("WHERE t.n < excluded.n") for sql, _ in chunks)


def test_the_parameter_limit_bounds_a_chunk() -> None:
    m = MultiRow("INSERT INTO t (a, b, c, d, e) VALUES (?, ?, ?, ?, ?)", 5, max_params=999)
    assert m.full == 199  # 199 * 5 = 995 <= 999


@pytest.mark.parametrize(
    ("sql", "ncols"),
    [
        ("UPDATE t SET v = ?", 1),
        ("INSERT INTO t (a, b) VALUES (?, ?)", 3),
        ("INSERT INTO t VALUES (?, 1)", 2),
    ],
)
def test_a_statement_it_cannot_batch_is_refused(sql: str, ncols: int) -> None:
    with pytest.raises(ValueError, match="VALUES"):
        MultiRow(sql, ncols)
