"""Per-syncer records in the KV: cursors (with state and last error) and dead letters.

* ``sync/cursor`` ``<name>`` -> JSON ``{"seq", "fence", "state", "error", "error_at", "at"}``:
  ``seq`` is the last log entry the syncer has delivered *and flushed*; ``fence`` the lease
  fencing token of the last writer (a writer holding an older token is refused).
* ``sync/dead`` ``<name>/<seq>`` -> JSON ``{"seq", "error", "attempts", "at", "entry",
  "changes"}``: an event that failed; ``entry`` is the raw log entry (the log may be trimmed).
* ``sync/request`` ``<name>`` -> JSON ``{"id", "action", "state", "at", "fence", "result",
  "error"}``: an operator's ``retry`` or ``backfill`` for the host that holds the syncer's lease
  (state ``pending`` -> ``running`` -> ``done`` / ``failed``, or ``cancelled`` by a requester
  that gave up waiting); one per syncer at a time. ``fence`` is the lease token of the host that
  took it: once the cursor carries a newer token, that host lost the lease (it died or was cut
  off), its request is abandoned and no longer blocks a new one.

Names are percent-encoded in keys so that ``a`` and ``a/b`` never share a prefix.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote

from sectorhooks_spec import KVStore, StoreTxn

from ..errors import SyncError, SyncLeaseLost

CURSORS = "sync/cursor"
DEAD = "sync/dead"
REQUESTS = "sync/request"
OPEN = ("pending", "running")  # states of an unfinished request
STALE_REQUEST = 3600.0  # seconds after which an unfinished request no longer blocks a new one


def _name_key(name: str) -> bytes:
    return quote(name, safe="").encode()


def _dead_prefix(name: str) -> bytes:
    return _name_key(name) + b"/"


def _dead_key(name: str, seq: int) -> bytes:
    return _dead_prefix(name) + b"%020d" % seq


def _read_cursor(t: StoreTxn, name: str) -> Optional[Dict[str, Any]]:
    raw = t.collection(CURSORS).peek(_name_key(name))
    return None if raw is None else json.loads(raw)


def _read_request(t: StoreTxn, name: str) -> Optional[Dict[str, Any]]:
    raw = t.collection(REQUESTS).peek(_name_key(name))
    return None if raw is None else json.loads(raw)


def _open_request(t: StoreTxn, name: str) -> Optional[Dict[str, Any]]:
    """The request of ``name`` if it is unfinished and still alive: not older than
    ``STALE_REQUEST``, and not taken by a lease holder that another one has since replaced."""
    rec = _read_request(t, name)
    if rec is None or rec["state"] not in OPEN or time.time() - rec["at"] >= STALE_REQUEST:
        return None
    taken_by = rec.get("fence")
    if rec["state"] == "running" and taken_by is not None:
        newest = (_read_cursor(t, name) or {}).get("fence")
        if newest is not None and newest > taken_by:
            return None  # its host lost the lease: the request died with it
    return rec


def _write_request(t: StoreTxn, name: str, rec: Dict[str, Any]) -> None:
    t.collection(REQUESTS).put(_name_key(name), json.dumps(rec).encode())


def _merge_cursor(t: StoreTxn, name: str, fence: Optional[int], changes: Dict[str, Any]) -> Dict[str, Any]:
    rec: Dict[str, Any] = {"seq": 0, "fence": None, "state": "", "error": "", "error_at": None, "at": None}
    rec.update(_read_cursor(t, name) or {})
    if fence is not None:
        if rec.get("fence") is not None and rec["fence"] > fence:
            raise SyncLeaseLost(f"syncer {name!r}: lease lost (cursor fence {rec['fence']} > ours {fence})")
        rec["fence"] = fence
    rec.update(changes)
    rec["at"] = time.time()
    t.collection(CURSORS).put(_name_key(name), json.dumps(rec).encode())
    return rec


class Records:
    """Cursors and dead letters of every syncer, in one KV store."""

    def __init__(self, store: KVStore):
        self.store = store
        store.open_collection(CURSORS)
        store.open_collection(DEAD)
        store.open_collection(REQUESTS)

    # --- cursors ---------------------------------------------------------------------------

    def cursor(self, name: str) -> Optional[Dict[str, Any]]:
        """The cursor record of ``name`` or ``None`` if it never ran."""
        return self.store.view(lambda t: _read_cursor(t, name))

    def cursors(self, names: Sequence[str]) -> Dict[str, Optional[Dict[str, Any]]]:
        """Cursor records of several syncers, read in one transaction."""

        return self.store.view(lambda t: {name: _read_cursor(t, name) for name in names})

    def write_cursor(self, name: str, fence: Optional[int] = None, **changes: Any) -> Dict[str, Any]:
        """Merge ``changes`` into the cursor record; refuse (:class:`SyncLeaseLost`) a stale ``fence``."""
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

    # --- operator requests (served by the host holding the syncer's lease) --------------------

    def post_request(self, name: str, action: str) -> str:
        """Ask the lease holder of ``name`` to run ``action``; returns the request id.
        :class:`~sectorhooks.errors.SyncError` while another request of ``name`` is unfinished."""

        rid = secrets.token_hex(8)

        def fn(t: StoreTxn) -> Optional[Dict[str, Any]]:
            cur = _open_request(t, name)
            if cur is not None:
                return cur
            _write_request(t, name, {"id": rid, "action": action, "state": "pending", "at": time.time()})
            return None

        busy = self.store.update(fn)
        if busy is not None:
            raise SyncError(
                f"syncer {name!r}: a {busy['action']} request ({busy['id']}) is still {busy['state']}; "
                "wait for it (sectorhooks sync status) and try again"
            )
        return rid

    def request(self, name: str) -> Optional[Dict[str, Any]]:
        """The last request of ``name`` (any state), or ``None``."""
        return self.store.view(lambda t: _read_request(t, name))

    def open_requests(self, names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
        """The unfinished (pending or running) request of each of ``names`` that has one
        (abandoned ones left out, see :func:`_open_request`)."""

        def fn(t: StoreTxn) -> Dict[str, Dict[str, Any]]:
            recs = {name: _open_request(t, name) for name in names}
            return {name: rec for name, rec in recs.items() if rec is not None}

        return self.store.view(fn)

    def take_request(self, name: str, fence: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """A pending request of ``name``, now marked running (so only one holder runs it) by the
        holder of lease token ``fence``."""
        seen = self.request(name)
        if seen is None or seen["state"] != "pending":
            return None  # the usual case (polled by every dispatcher): a read, no write transaction

        def fn(t: StoreTxn) -> Optional[Dict[str, Any]]:
            rec = _read_request(t, name)
            if rec is None or rec["state"] != "pending":
                return None
            rec["state"], rec["at"], rec["fence"] = "running", time.time(), fence
            _write_request(t, name, rec)
            return rec

        return self.store.update(fn)

    def finish_request(
        self, name: str, rid: str, result: Optional[int] = None, error: Optional[str] = None
    ) -> None:
        """Record the outcome of request ``rid`` (``error`` set: failed)."""
        self._move_request(name, rid, ("running",), "failed" if error else "done", result=result, error=error)

    def cancel_request(self, name: str, rid: str) -> bool:
        """Withdraw request ``rid`` if nobody took it yet; True if it was withdrawn."""
        return self._move_request(name, rid, ("pending",), "cancelled")

    def _move_request(
        self, name: str, rid: str, from_states: Tuple[str, ...], to: str, **fields: Any
    ) -> bool:
        def fn(t: StoreTxn) -> bool:
            rec = _read_request(t, name)
            if rec is None or rec["id"] != rid or rec["state"] not in from_states:
                return False
            rec.update(fields, state=to, at=time.time())
            _write_request(t, name, rec)
            return True

        return bool(self.store.update(fn))
