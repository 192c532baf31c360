"""The change log's reader: ranges of entries, bounds, trimming below the slowest cursor."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from sectorhooks_spec import KVStore, StoreTxn

from ..errors import LogTrimmed
from .events import AnyEvent, RawEntry, parse
from .format import FLOOR, HEAD, LOG, META, read_int, seq_key
from .recent import Recent


def _block_digits(limit: int) -> int:
    digits = 1
    while 10 ** (digits + 1) <= max(limit, 10):
        digits += 1
    return digits


class ChangeLog:
    """Reads and trims the log of one KV store.

    ``shared`` > 0 keeps that many recent entries in memory (see :mod:`.recent`), so
    dispatchers reading the same range read and parse each entry once between them.
    """

    def __init__(self, store: KVStore, shared: int = 0):
        self.store = store
        store.open_collection(LOG)
        store.open_collection(META)
        self.recent = Recent(shared)

    def events(self, after: int, limit: int) -> List[AnyEvent]:
        """Up to ``limit`` parsed events (or :class:`BrokenEvent`) after ``after``, in order.

        Served from the recent entries when they hold ``after + 1`` onwards (the usual case for
        a syncer that keeps up), else read from the KV.
        """
        if self.recent.size:
            got = self.recent.events(after + 1, limit)
            if got:
                return got
        events = [parse(seq, raw) for seq, raw in self.read(after, limit)]
        if events and events[-1].seq + self.recent.size > self.recent.newest:
            self.recent.remember(events)  # near the head: others will want them; old ones would evict those
        return events

    def entries(self, after: int, limit: int) -> List[RawEntry]:
        """Like :meth:`events`, but not decoded (for syncers whose hooks run in a worker)."""
        if self.recent.size:
            found = self.recent.entries(after + 1, limit)
            if found:
                return found
        return [RawEntry(seq, raw) for seq, raw in self.read(after, limit)]

    @property
    def newest(self) -> int:
        """The highest seq this process saw committed (0 before any); other processes' commits
        are not seen here."""
        return self.recent.newest

    def committed(self, head: int, entries: Sequence[Tuple[int, bytes]]) -> None:
        """A commit of this process appended ``entries`` and moved the head to ``head``."""
        self.recent.remember(entries)  # readers that keep up never read them back from the KV
        self.recent.saw(head)

    def bounds(self) -> Tuple[int, int]:
        """``(floor, head)``: entries ``floor..head`` exist (none when ``floor > head``)."""
        return self.store.view(lambda t: (read_int(t, FLOOR, 1), read_int(t, HEAD, 0)))

    def head(self) -> int:
        """The last seq written (0 for an empty log)."""
        return self.store.view(lambda t: read_int(t, HEAD, 0))

    def peek(self, seq: int) -> Optional[bytes]:
        """The raw entry ``seq`` or ``None`` (trimmed or not written yet)."""
        return self.store.view(lambda t: t.collection(LOG).peek(seq_key(seq)))

    def read(self, after: int, limit: int) -> List[Tuple[int, bytes]]:
        """Up to ``limit`` entries with seq > ``after``, in order; :class:`LogTrimmed` on a gap."""
        return self.store.view(lambda t: self._read(t, after, limit))

    def _read(self, txn: StoreTxn, after: int, limit: int) -> List[Tuple[int, bytes]]:
        floor, head = read_int(txn, FLOOR, 1), read_int(txn, HEAD, 0)
        if after >= head:
            return []
        if after + 1 < floor:
            raise LogTrimmed(f"entries {after + 1}..{floor - 1} were trimmed")
        last = min(head, after + limit)
        digits = _block_digits(limit)
        log = txn.collection(LOG)
        out: List[Tuple[int, bytes]] = []
        seq = after + 1
        while seq <= last:
            it = log.scan(seq_key(seq)[:-digits])
            try:
                for key, value in it:
                    n = int(key)
                    if n < seq:
                        continue
                    if n > last:
                        break
                    out.append((n, value))
            finally:
                it.close()
            seq = (seq // 10**digits + 1) * 10**digits
        expected = after + 1
        for n, _ in out:
            if n != expected:
                raise LogTrimmed(f"entry {expected} is missing from the log (next found: {n})")
            expected += 1
        if expected != last + 1:
            raise LogTrimmed(f"entries {expected}..{last} are missing from the log")
        return out

    def trim(self, upto: int, chunk: int = 1000) -> int:
        """Delete entries ``<= upto`` (in transactions of ``chunk``); returns how many went."""
        deleted = 0
        while True:

            def step(t: StoreTxn) -> int:
                floor = read_int(t, FLOOR, 1)
                stop = min(upto, read_int(t, HEAD, 0), floor + chunk - 1)
                if stop < floor:
                    return 0
                log = t.collection(LOG)
                for seq in range(floor, stop + 1):
                    log.delete(seq_key(seq))
                t.collection(META).put(FLOOR, b"%d" % (stop + 1))
                return stop - floor + 1

            n = self.store.update(step)
            deleted += n
            if n < chunk:
                return deleted
