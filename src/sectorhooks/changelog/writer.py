"""The change log's writer: appends entries inside the state manager's KV transaction."""

from __future__ import annotations

from typing import List, Optional, Tuple

from sectorhooks_spec import StoreTxn

from .format import HEAD, LOG, META, read_int, seq_key


class LogWriter:
    """Appends entries within one transaction; ``finish()`` stores the new head."""

    __slots__ = ("_head", "_log", "_txn", "written")

    def __init__(self, txn: StoreTxn, head: Optional[int] = None):
        self._txn = txn
        self._log = txn.collection(LOG)
        self._head = read_int(txn, HEAD, 0) if head is None else head  # read in this txn
        self.written: List[Tuple[int, bytes]] = []

    def append(self, entry: bytes) -> int:
        """Write ``entry`` under the next seq and return that seq."""
        self._head += 1
        self._log.put(seq_key(self._head), entry)
        self.written.append((self._head, entry))
        return self._head

    def finish(self) -> int:
        """Store the head (call once, after the last append); returns it."""
        self._txn.collection(META).put(HEAD, b"%d" % self._head)
        return self._head
