"""Recent log entries kept in memory, shared by the readers of one process.

Dispatchers of syncers that keep up all read at the head: each entry is handed over by the
state manager's commit as it was written and parsed once, by whichever dispatcher wants it
first, for all of them. Old entries are dropped first; a reader that finds nothing here reads
the KV.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Dict, List, Sequence, Union

from .events import AnyEvent, RawEntry, parse

#: The most entries kept (~3 KB each).
SHARED_MAX = 4096


class Recent:
    """Up to ``size`` recent entries by seq: ``(seq, raw)`` as committed, or parsed events."""

    def __init__(self, size: int):
        self.size = max(0, min(size, SHARED_MAX))
        self.newest = 0  # the highest seq this process saw committed (0 before any)
        self._items: Dict[int, Union[bytes, AnyEvent]] = {}
        self._lock = threading.Lock()

    def saw(self, head: int) -> None:
        """A commit of this process moved the head to ``head``."""
        if head > self.newest:
            self.newest = head

    def remember(self, items: Sequence[Any]) -> None:
        """Keep ``items``: ``(seq, raw)`` tuples as committed, or parsed events."""
        if not self.size or not items:
            return
        with self._lock:
            for item in items:
                if isinstance(item, tuple):
                    self._items.setdefault(item[0], item[1])
                    self.newest = max(self.newest, item[0])
                else:
                    self._items[item.seq] = item
                    self.newest = max(self.newest, item.seq)
            extra = len(self._items) - self.size
            if extra > 0:
                for seq in list(itertools.islice(self._items, extra)):
                    del self._items[seq]

    def events(self, first: int, limit: int) -> List[AnyEvent]:
        """The run of up to ``limit`` entries from ``first`` held here, parsed (empty: not held)."""
        with self._lock:
            found = self._run(first, limit)
        out = [parse(first + i, item) if isinstance(item, bytes) else item for i, item in enumerate(found)]
        if any(isinstance(item, bytes) for item in found):
            self.remember(out)  # parse once, for every reader
        return out

    def entries(self, first: int, limit: int) -> List[RawEntry]:
        """Like :meth:`events`, not decoded (for syncers whose hooks run in a worker)."""
        with self._lock:
            found = self._run(first, limit)
        return [
            RawEntry(first + i, item if isinstance(item, bytes) else item.raw) for i, item in enumerate(found)
        ]

    def _run(self, first: int, limit: int) -> List[Any]:
        found: List[Any] = []
        while len(found) < limit:
            item = self._items.get(first + len(found))
            if item is None:
                break
            found.append(item)
        return found
