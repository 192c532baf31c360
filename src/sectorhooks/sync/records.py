"""Per-syncer records in the KV: cursors (with state and last error) and dead letters.

* ``sync/cursor`` ``<name>`` -> JSON ``{"seq", "fence", "state", "error", "error_at", "at"}``:
  ``seq`` is the last log entry the syncer has delivered *and flushed*; ``fence`` the lease
  fencing token of the last writer (a writer holding an older token is refused).
* ``sync/dead`` ``<name>/<seq>`` -> JSON ``{"seq", "error", "attempts", "at", "entry",
  "changes"}``: an event that failed; ``entry`` is the raw log entry (the log may be trimmed).

Names are percent-encoded in keys so that ``a`` and ``a/b`` never share a prefix.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote

from sectorhooks_spec import KVStore, StoreTxn

from ..errors import SectorhooksError

CURSORS = "sync/cursor"
DEAD = "sync/dead"


class LeaseLost(SectorhooksError):
    """Another holder with a newer fencing token advanced this syncer's cursor."""


def _name_key(name: str) -> bytes:
    return quote(name, safe="").encode()


def _dead_prefix(name: str) -> bytes:
    return _name_key(name) + b"/"


def _dead_key(name: str, seq: int) -> bytes:
    return _dead_prefix(name) + b"%020d" % seq


def _merge_cursor(t: StoreTxn, name: str, fence: Optional[int], changes: Dict[str, Any]) -> Dict[str, Any]:
    c = t.collection(CURSORS)
    raw = c.peek(_name_key(name))
    rec: Dict[str, Any] = {"seq": 0, "fence": None, "state": "", "error": "", "error_at": None, "at": None}
    if raw is not None:
        rec.update(json.loads(raw))
    if fence is not None:
        if rec.get("fence") is not None and rec["fence"] > fence:
            raise LeaseLost(f"syncer {name!r}: lease lost (cursor fence {rec['fence']} > ours {fence})")
        rec["fence"] = fence
    rec.update(changes)
    rec["at"] = time.time()
    c.put(_name_key(name), json.dumps(rec).encode())
    return rec


class Records:
    """Cursors and dead letters of every syncer, in one KV store."""

    def __init__(self, store: KVStore):
        self.store = store
        store.open_collection(CURSORS)
        store.open_collection(DEAD)

    # --- cursors ---------------------------------------------------------------------------

    def cursor(self, name: str) -> Optional[Dict[str, Any]]:
        """The cursor record of ``name`` or ``None`` if it never ran."""
        raw = self.store.view(lambda t: t.collection(CURSORS).peek(_name_key(name)))
        return None if raw is None else json.loads(raw)  # type: ignore[no-any-return]

    def cursors(self, names: Sequence[str]) -> Dict[str, Optional[Dict[str, Any]]]:
        """Cursor records of several syncers, read in one transaction."""

        def fn(t: StoreTxn) -> Dict[str, Optional[Dict[str, Any]]]:
            c = t.collection(CURSORS)
            out = {}
            for name in names:
                raw = c.peek(_name_key(name))
                out[name] = None if raw is None else json.loads(raw)
            return out

        return self.store.view(fn)

    def write_cursor(self, name: str, fence: Optional[int] = None, **changes: Any) -> Dict[str, Any]:
        """Merge ``changes`` into the cursor record; refuse (:class:`LeaseLost`) a stale ``fence``."""
        return self.store.update(lambda t: _merge_cursor(t, name, fence, changes))

    def add_dead(
        self,
        name: str,
        letters: Sequence[Tuple[int, bytes, str, int, Optional[List[Any]]]],
        cursor: Optional[Dict[str, Any]] = None,
        fence: Optional[int] = None,
    ) -> None:
        """Store dead letters ``(seq, raw entry, error, attempts, changes)`` and, in the same
        transaction, merge ``cursor`` into the cursor record (a crash never loses nor doubles one)."""

        def fn(t: StoreTxn) -> None:
            d = t.collection(DEAD)
            now = time.time()
            for seq, raw, error, attempts, changes in letters:
                rec = {
                    "seq": seq,
                    "error": error,
                    "attempts": attempts,
                    "at": now,
                    "entry": raw.decode("utf-8"),
                }
                if changes is not None:
                    rec["changes"] = changes
                d.put(_dead_key(name, seq), json.dumps(rec).encode())
            if cursor is not None:
                _merge_cursor(t, name, fence, cursor)

        self.store.update(fn)

    def dead_letters(self, name: str, limit: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """Dead letters of ``name`` in seq order (each a dict with ``seq``, ``error``, ``entry`` ...)."""
        it = self.store.open_collection(DEAD).scan(_dead_prefix(name))
        try:
            for n, (_, raw) in enumerate(it):
                if limit is not None and n >= limit:
                    break
                yield json.loads(raw)
        finally:
            it.close()

    def count_dead(self, name: str) -> int:
        """How many dead letters ``name`` has."""

        def fn(t: StoreTxn) -> int:
            it = t.collection(DEAD).scan(_dead_prefix(name))
            try:
                return sum(1 for _ in it)
            finally:
                it.close()

        return self.store.view(fn)

    def remove_dead(self, name: str, seqs: Sequence[int]) -> None:
        """Delete delivered dead letters."""

        def fn(t: StoreTxn) -> None:
            d = t.collection(DEAD)
            for seq in seqs:
                d.delete(_dead_key(name, seq))

        self.store.update(fn)

    def update_dead(self, name: str, seq: int, error: str) -> None:
        """Record a new failure of a dead letter (its error and attempt count)."""

        def fn(t: StoreTxn) -> None:
            d = t.collection(DEAD)
            raw = d.peek(_dead_key(name, seq))
            if raw is None:
                return
            rec = json.loads(raw)
            rec["error"], rec["attempts"], rec["at"] = error, rec.get("attempts", 0) + 1, time.time()
            d.put(_dead_key(name, seq), json.dumps(rec).encode())

        self.store.update(fn)
