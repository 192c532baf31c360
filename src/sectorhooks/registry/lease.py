"""Leases: a lock in the KV that a dead holder cannot keep and a paused one cannot misuse.

The record ``{owner, fence, expire_time, holder}`` lives under one key. ``acquire`` takes it when
it is free, released or expired (wall clock, shared by every replica: keep clocks in sync, NTP)
and then bumps the fencing counter; the holder extends it with ``renew``/``acquire`` and gives it
up with ``release``, both only if the record still names its random owner token. The counter
never goes back (a released lease keeps it), so a write made under fence N is refused once
someone holds N+1: :meth:`Lease.guard` re-checks owner and fence *inside* the writer's own
transaction and re-writes the record, so the backend's conflict detection orders the write
against any takeover. The scraper uses ``scrape_state``; the sync service one lease per syncer
(:func:`lease_factory`), so each dispatcher runs on exactly one replica.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from typing import Any, Callable, Dict, Optional

from sectorhooks_spec.kvstore import KVStore, StoreTxn

from ..errors import LeaseLost
from . import _kv
from .records import decode, encode

log = logging.getLogger(__name__)

#: Collection of leases other than ``scrape_state`` (which the seed puts in ``public``).
LEASE_COLLECTION = "leases"


class Lease:
    """A fenced, expiring lock on ``key``; see the module docs. Thread-safe."""

    def __init__(
        self,
        store: KVStore,
        key: str,
        ttl: float,
        owner: Optional[str] = None,
        collection: str = LEASE_COLLECTION,
        clock: Callable[[], float] = time.time,
    ):
        if ttl <= 0:
            raise ValueError(f"lease {key!r}: ttl must be > 0 seconds, got {ttl}")
        self.store, self.key, self.ttl, self.collection = store, key, float(ttl), collection
        self.owner = owner or secrets.token_hex(16)
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self._fence = 0
        self._deadline = 0.0  # monotonic time until which we may act as the holder
        self._lock = threading.Lock()
        self._kkey = key.encode()
        store.open_collection(collection)

    @property
    def fence(self) -> int:
        """Fencing number of our current (or last) tenure; 0 before the first acquire."""
        return self._fence

    @property
    def held(self) -> bool:
        """True while we hold the lease by our own clock (a margin short of its expiry)."""
        return self._deadline > time.monotonic()

    def _read(self, txn: StoreTxn) -> Optional[Dict[str, Any]]:
        rec: Optional[Dict[str, Any]] = decode(txn.collection(self.collection).peek(self._kkey))
        return rec

    def _write(self, txn: StoreTxn, fence: int, owner: str, expire_time: float) -> None:
        rec = {
            "owner": owner,
            "fence": fence,
            "expire_time": expire_time,
            "holder": self.holder if owner else "",
        }
        txn.collection(self.collection).put(self._kkey, encode(rec))

    def acquire(self) -> bool:
        """Take the lease if it is free or expired, or extend it if ours; True when we hold it."""
        with self._lock:
            started = time.monotonic()

            def fn(txn: StoreTxn) -> Optional[int]:
                rec = self._read(txn)
                now = self.clock()
                fence = int(rec["fence"]) if rec else 0
                ours = rec is not None and rec.get("owner") == self.owner and fence == self._fence
                if rec and not ours and rec.get("owner") and float(rec.get("expire_time", 0)) > now:
                    return None  # held by a live owner
                if not ours:
                    fence += 1
                self._write(txn, fence, self.owner, now + self.ttl)
                return fence

            got = _kv.update(self.store, fn, f"lease {self.key}")
            if got is None:
                self._deadline = 0.0
                return False
            if got != self._fence:
                log.info("lease %r acquired by %s with fence %d", self.key, self.holder, got)
            self._fence = got
            self._deadline = started + self.ttl * 0.9
            return True

    def renew(self) -> bool:
        """Extend our lease; False (and no longer held) if it is not ours any more."""
        with self._lock:
            started = time.monotonic()
            if not self._fence:
                return False

            def fn(txn: StoreTxn) -> bool:
                rec = self._read(txn)
                if not rec or rec.get("owner") != self.owner or int(rec.get("fence", 0)) != self._fence:
                    return False
                self._write(txn, self._fence, self.owner, self.clock() + self.ttl)
                return True

            ok = bool(_kv.update(self.store, fn, f"lease {self.key}"))
            self._deadline = started + self.ttl * 0.9 if ok else 0.0
            if not ok:
                log.warning("lease %r with fence %d was lost", self.key, self._fence)
            return ok

    def release(self) -> None:
        """Give the lease up if we hold it (the fence is kept, so it never goes back)."""
        with self._lock:
            self._deadline = 0.0
            if not self._fence:
                return

            def fn(txn: StoreTxn) -> bool:
                rec = self._read(txn)
                if not rec or rec.get("owner") != self.owner or int(rec.get("fence", 0)) != self._fence:
                    return False
                self._write(txn, self._fence, "", 0.0)
                return True

            if _kv.update(self.store, fn, f"lease {self.key}"):
                log.info("lease %r with fence %d released", self.key, self._fence)

    def guard(self, txn: StoreTxn) -> int:
        """Inside a write transaction: raise :class:`LeaseLost` unless we still hold our fence.

        Re-writes the record (same content) so that any concurrent takeover conflicts with the
        caller's transaction on every backend; returns the fence the write is made under.
        """
        rec = self._read(txn)
        if not rec or rec.get("owner") != self.owner or int(rec.get("fence", 0)) != self._fence:
            raise LeaseLost(self.key, self._fence, rec)
        self._write(txn, self._fence, self.owner, float(rec.get("expire_time", 0.0)))
        return self._fence

    def state(self) -> Optional[Dict[str, Any]]:
        """The lease record as stored (owner token omitted), or ``None``."""
        rec = _kv.view(self.store, self._read)
        if rec is not None:
            rec = {k: v for k, v in rec.items() if k != "owner"}
        return rec


def lease_factory(
    store: KVStore, ttl: float = 10.0, prefix: str = "sync_dispatcher_", collection: str = LEASE_COLLECTION
) -> Callable[[str], Lease]:
    """``name -> Lease`` for ``SyncService(lease_factory=...)``: one lease per syncer name."""

    def make(name: str) -> Lease:
        return Lease(store, f"{prefix}{name}", ttl, collection=collection)

    return make
