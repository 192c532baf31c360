"""Many-row SQLite inserts as a few multi-row statements, for plugins that write to SQLite.

``cursor.executemany`` runs one ``sqlite3_step`` per row and releases the GIL around each: in a
host with busy threads every row then costs two thread switches. :class:`MultiRow` turns
``INSERT ... VALUES (?, ..., ?) <rest>`` into ``INSERT ... VALUES (...), (...), ... <rest>``
over chunks of rows (same rows, same order, same ``ON CONFLICT`` clause): one step per chunk.

Chunks are a full size (as many rows as SQLite's parameter limit allows) and, for the rest,
the exact count up to :data:`EXACT_UP_TO` rows, else powers of two: a plugin prepares at most
a few dozen distinct statements, which the ``sqlite3`` module keeps in its statement cache
(128 per connection), and a small batch is one statement.
"""

from __future__ import annotations

import sqlite3
from itertools import chain
from typing import Any, Dict, Iterator, Sequence, Tuple

#: Bound parameters SQLite accepts in one statement (``SQLITE_MAX_VARIABLE_NUMBER``).
MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
#: More rows per statement than this gains nothing measurable and makes each statement big.
MAX_ROWS = 512
#: A rest of up to this many rows is one statement of exactly that many rows.
EXACT_UP_TO = 32


class MultiRow:
    """``sql`` (one ``VALUES (?, ...)`` group of ``ncols`` marks) for many rows at once."""

    def __init__(self, sql: str, ncols: int, max_params: int = MAX_PARAMS):
        marker = "VALUES ("
        at = sql.upper().find(marker)
        if at < 0 or ncols < 1:
            raise ValueError(f"not an INSERT ... VALUES (...) statement: {sql[:80]!r}")
        start = at + len(marker)
        end = sql.find(")", start)
        group = sql[start:end].replace(" ", "")
        if group != ",".join(["?"] * ncols):
            raise ValueError(f"expected {ncols} '?' marks in VALUES (...), got {sql[start:end]!r}")
        self._head = sql[:at] + "VALUES "
        self._tail = sql[end + 1 :]
        self._one = "(" + ", ".join(["?"] * ncols) + ")"
        self.ncols = ncols
        self.full = max(1, min(MAX_ROWS, max_params // ncols))
        self._sql: Dict[int, str] = {}

    def sql(self, nrows: int) -> str:
        """The statement for exactly ``nrows`` rows."""
        text = self._sql.get(nrows)
        if text is None:
            text = self._sql[nrows] = self._head + ", ".join([self._one] * nrows) + self._tail
        return text

    def chunks(self, rows: Sequence[Sequence[Any]]) -> Iterator[Tuple[str, Tuple[Any, ...]]]:
        """``(sql, flat parameters)`` per statement, covering ``rows`` in order."""
        i, n = 0, len(rows)
        while i < n:
            left = n - i
            if left >= self.full:
                size = self.full
            elif left <= EXACT_UP_TO:
                size = left
            else:
                size = 1 << (left.bit_length() - 1)
            part = rows[i : i + size]
            yield self.sql(size), tuple(chain.from_iterable(part))
            i += size

    def execute(self, cursor: Any, rows: Sequence[Sequence[Any]]) -> None:
        """Run the statement for ``rows`` on a DBAPI ``cursor`` (one execute per chunk)."""
        for sql, params in self.chunks(rows):
            cursor.execute(sql, params)
