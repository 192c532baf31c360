"""SectorStateManager: the only writer of sector state, with its change log, group-committed.

States live in two KV collections, one per workspace (``sectors/online`` while sealing,
``sectors/offline`` once finalized), keyed by ``SectorID.key`` and holding ``codec.dumps(state)``.
Every change bumps the sector's ``version`` and, in the same KV transaction, appends an entry to
the change log (``sync/log``, see :mod:`sectorhooks.changelog`) that the syncers consume; after
each commit it calls the ``on_commit`` it was given (the manager knows nothing of sync).

Many workers report at once, so calls are group-committed: the first caller that finds no
commit in progress becomes the leader, waits a moment for as many callers as the last group
had, and runs every queued change in one KV transaction; the others wait and return once that
transaction committed. Each caller waits on its own lock: the leader wakes the first caller it
committed, each woken caller wakes the next one of its group (a chain: waking them all at once
makes a herd that fights for the GIL, and the context switches cost more than the chain's
latency), and the leader hands the leadership to the next queued caller. A call that cannot
apply (sector missing, wrong workspace) fails alone; the rest of its group commits. So does a
call that raises anything else (a bug, a corrupt stored state): the group's transaction is
dropped and run again without it, so none of its writes remain. Every value is checked before
it is queued (:mod:`.fields`: types, and the SPI's bounds of what every sink can store). See
:mod:`.txn` for the state cache that spares re-reading.

When the store has the ``GuardedPut`` capability (sqlkv) and the cache is trusted, a group that
needs no read and no delete is computed from the cache and written by one ``put_many_if``
guarded by the log head: on SQLite one statement instead of a transaction's four round trips
(each of which lets another thread take the GIL from the leader). If another writer moved the
head, nothing is written and the group runs in an ``update`` transaction as usual.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Tuple

import attrs

from sectorhooks_spec import (
    INT64_MAX,
    AllocatedSector,
    GuardedPut,
    KVError,
    KVStore,
    SectorID,
    SectorState,
    StoreTxn,
    StoreUnavailable,
    TransactionConflict,
    Workspace,
    to_jsonable,
)

from ..changelog import format as log_format
from ..changelog.reader import ChangeLog
from ..errors import NeedsTransaction, SectorNotFound, SectorStateError, SectorValueError
from ..kv import guarded_put as find_guarded_put
from .counts import COUNTS, MARKER, Counts, count, write_all
from .counts import read as read_counts
from .fields import check_allocated, check_fields, check_sector_id, check_state
from .scan import PAGE_DEFAULT, iter_sectors, read_page
from .txn import COLLECTIONS, Current, GroupTxn, RecordingTxn, StateCache

log = logging.getLogger(__name__)

MAX_GROUP = 512  # changes per KV transaction
GATHER_WAIT = 0.002  # how long a leader waits for as many callers as the last group had
FOLLOWER_POLL = 0.1  # a waiting caller re-checks for a leader that left without a hand-over
RECOUNT_ATTEMPTS = 5  # full scans a recount tries before giving up on a KV other writers keep changing

Op = Callable[[GroupTxn], Any]
#: ``on_commit(head, entries)``: the log head after a commit and the ``(seq, raw)`` it appended.
OnCommit = Callable[[int, Sequence[Tuple[int, bytes]]], None]


def _compare_counts(head: int, counted: Counts, fix: bool, t: StoreTxn) -> Tuple[bool, Optional[Counts]]:
    """``(True, kept counts)`` if the log head is still ``head`` (and, with ``fix``, ``counted``
    written in their place); ``(False, None)`` if a change committed since."""
    if log_format.read_int(t, log_format.HEAD, 0) != head:
        return False, None
    kept = read_counts(t)
    if fix:
        write_all(t, counted)
    return True, kept


class _Request:
    """One queued call: its op, then its outcome; ``wake`` is released when it is done or must lead."""

    __slots__ = ("done", "error", "lead", "next", "op", "result", "wake")

    def __init__(self, op: Op):
        self.op = op
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.done = False
        self.lead = False  # handed the leadership by the previous leader
        self.next: Optional[_Request] = None  # the caller to wake once this one is done
        self.wake = threading.Lock()
        self.wake.acquire()


class _OpFailed(Exception):
    """One op of a group raised something other than a refusal: the group's transaction is
    abandoned (nothing written) and the group runs again without that op."""

    def __init__(self, req: _Request, error: Exception):
        super().__init__(f"{type(error).__name__}: {error}")
        self.req, self.error = req, error


class SectorStateManager:
    """The only writer of sector state; thread-safe, each call durable when it returns."""

    def __init__(self, store: KVStore, log: Optional[ChangeLog] = None, on_commit: Optional[OnCommit] = None):
        """``log``: the change log of ``store`` (one is made without); ``on_commit`` is called after
        each commit that appended to it, once the callers are woken (it must be quick; what it
        raises is logged)."""
        self.store = store
        for name in (*COLLECTIONS.values(), COUNTS):
            store.open_collection(name)
        self.log = log if log is not None else ChangeLog(store)
        self._on_commit = on_commit
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # followers wait here for their group's commit
        self._gather = threading.Condition(lock)  # the leader waits here for more callers
        self._gathering = False
        self._last_group = 1
        self._queue: List[_Request] = []
        self._leader = False
        self._closed = False
        self._cache = StateCache()
        #: The store's ``GuardedPut`` (``None`` without the capability): a group the trusted cache
        #: computed is written through it. Public so that a test or an operator tool can wrap it
        #: (count, delay or fail the puts); set it to ``None`` to send every group through ``update``.
        self.guarded_put: Optional[GuardedPut] = find_guarded_put(store)
        self._group_listeners: List[Callable[[int, float], None]] = []

    def add_group_listener(self, fn: Callable[[int, float], None]) -> None:
        """Call ``fn(calls, seconds)`` after each group commit (for metrics: how many calls shared
        one KV transaction and how long it took); ``fn`` must be quick, and what it raises is logged."""
        self._group_listeners.append(fn)

    # --- changes --------------------------------------------------------------------------

    def import_sector(
        self, state: SectorState, override: bool = False, workspace: Optional[Workspace] = None
    ) -> SectorState:
        """Import a whole state (offline if finalized, unless ``workspace`` says); returns it as stored."""
        state = check_state(state)
        if state.version >= INT64_MAX:
            raise SectorValueError(
                f"import_sector of {state.id}: state.version {state.version} leaves no room for the "
                f"next version (at most {INT64_MAX}, a signed 64-bit integer)",
                state.id,
                "state.version",
            )
        ws = (
            workspace
            if workspace is not None
            else (Workspace.OFFLINE if state.finalized else Workspace.ONLINE)
        )

        def op(t: GroupTxn) -> SectorState:
            old = t.current(state.id)
            if old is not None and not override:
                raise SectorStateError(
                    f"sector {state.id} already exists ({old.ws.value}, version {old.state.version}); "
                    "pass override=True to replace it"
                )
            version = max(old.state.version if old else 0, state.version) + 1
            if version > INT64_MAX:
                raise SectorStateError(f"sector {state.id} is at the last version a sink can store")
            new = attrs.evolve(state, version=version, updated_at=t.now)
            cur = t.write(old, Current(ws, new, to_jsonable(new)))
            t.append(log_format.import_header(new.id, version, ws, old is not None, t.now), [cur])
            return new

        return self.submit(op)  # type: ignore[no-any-return]

    def init_sectors(self, allocated: Sequence[AllocatedSector]) -> List[SectorState]:
        """Create fresh online states for newly allocated sectors (all or none); one log entry."""
        allocated = [check_allocated(a) for a in allocated]
        if not allocated:
            raise SectorValueError("init_sectors needs a non-empty sequence of AllocatedSector")
        ids = [a.id for a in allocated]
        if len(set(ids)) != len(ids):
            twice = sorted({str(i) for i in ids if ids.count(i) > 1})
            raise SectorValueError(f"init_sectors got the same sector twice: {', '.join(twice)}", twice[0])

        def op(t: GroupTxn) -> List[SectorState]:
            for a in allocated:
                old = t.current(a.id)
                if old is not None:
                    raise SectorStateError(
                        f"sector {a.id} already exists ({old.ws.value}); cannot init it again"
                    )
            written = []
            for a in allocated:
                st = SectorState(id=a.id, sector_type=a.proof_type, version=1, updated_at=t.now)
                written.append(t.write(None, Current(Workspace.ONLINE, st, to_jsonable(st))))
            pairs = [(a.id, a.proof_type) for a in allocated]
            # the fresh states are in the KV: the entry holds the header only, and its readers
            # rebuild each state's text from it (changelog.events.fresh_states_json)
            t.append(log_format.init_header(pairs, Workspace.ONLINE, t.now), [])
            return [c.state for c in written]

        return self.submit(op)  # type: ignore[no-any-return]

    def update(self, sector_id: SectorID, **fields: Any) -> SectorState:
        """Change some fields of a sector (either workspace); returns the new state."""
        values, jsonable = check_fields(sector_id, fields)
        names = list(fields)

        def op(t: GroupTxn) -> SectorState:
            old = t.require(sector_id)
            new = t.change(old, old.ws, values, jsonable)
            t.append(log_format.update_header(sector_id, new.state.version, new.ws, names, t.now), [new])
            return new.state

        return self.submit(op)  # type: ignore[no-any-return]

    def finalize(self, sector_id: SectorID) -> SectorState:
        """Mark a sector finalized and move it to the offline workspace."""
        return self._move(sector_id, "finalize", Workspace.ONLINE, Workspace.OFFLINE, {"finalized": True})

    def restore(self, sector_id: SectorID) -> SectorState:
        """Move a finalized sector back to the online workspace (e.g. to rebuild it); as
        damocles-manager's Restore, it is no longer finalized."""
        return self._move(sector_id, "restore", Workspace.OFFLINE, Workspace.ONLINE, {"finalized": False})

    def _move(
        self, sid: SectorID, event: str, src: Workspace, dst: Workspace, changes: Dict[str, Any]
    ) -> SectorState:
        if not isinstance(sid, SectorID):
            raise SectorValueError(f"{event} needs a SectorID, got {type(sid).__name__} {sid!r:.60}")
        check_sector_id(sid, event)

        def op(t: GroupTxn) -> SectorState:
            old = t.require(sid)
            if old.ws is not src:
                raise SectorStateError(f"cannot {event} sector {sid}: it is {old.ws.value}, not {src.value}")
            new = t.change(old, dst, changes, changes)
            t.append(log_format.move_header(event, sid, new.state.version, dst, t.now), [new])
            return new.state

        return self.submit(op)  # type: ignore[no-any-return]

    # --- reads ------------------------------------------------------------------------------

    def get(self, sector_id: SectorID) -> SectorState:
        """The current state; raises :class:`~sectorhooks.errors.SectorNotFound` (a ``KeyNotFound``)."""
        return self._find(sector_id).state

    def workspace_of(self, sector_id: SectorID) -> Workspace:
        """Where the sector is: online or offline."""
        return self._find(sector_id).ws

    def _find(self, sid: SectorID) -> Current:
        key = sid.key.encode()

        def fn(t: StoreTxn) -> Optional[Tuple[Workspace, bytes]]:
            for ws, name in COLLECTIONS.items():
                raw = t.collection(name).peek(key)
                if raw is not None:
                    return ws, raw
            return None

        found = self.store.view(fn)
        if found is None:
            raise SectorNotFound(sid)
        return self._cache.decode(key, found[1], found[0])

    def list(self, workspace: Optional[Workspace] = None, miner: Optional[int] = None) -> List[SectorState]:
        """States of one workspace (or both) and one miner (or all), ordered by sector id."""
        return [s for _, s in self.scan(workspace, miner)]

    def scan(
        self, workspace: Optional[Workspace] = None, miner: Optional[int] = None
    ) -> List[Tuple[Workspace, SectorState]]:
        """Like :meth:`list`, with each state's workspace."""
        return list(self.iter_states(workspace, miner))

    def page(
        self,
        workspace: Optional[Workspace] = None,
        miner: Optional[int] = None,
        after: Optional[str] = None,
        limit: int = PAGE_DEFAULT,
    ) -> Tuple[List[SectorState], Optional[str]]:
        """At most ``limit`` states (1 to ``state.scan.PAGE_MAX``) of one workspace (or both) and
        one miner (or all), ordered by sector id, after the cursor ``after`` (``None``: from the
        first); and the cursor of the next page, ``None`` after the last.

        See :func:`.scan.read_page` (one ``view``, ``limit + 1`` keys of each collection); a bad
        cursor or limit is :class:`~sectorhooks.errors.PageCursorError` naming it (-32602 over
        JSON-RPC).
        """
        records, cursor = read_page(self.store, workspace, miner, after, limit)
        return [self._cache.decode(r.key, r.raw, r.workspace).state for r in records], cursor

    def iter_pages(
        self,
        workspace: Optional[Workspace] = None,
        miner: Optional[int] = None,
        page_size: int = PAGE_DEFAULT,
    ) -> Iterator[List[SectorState]]:
        """Every page of :meth:`page`, following its cursor to the end (each page read when asked)."""
        cursor: Optional[str] = None
        while True:
            states, cursor = self.page(workspace, miner, cursor, page_size)
            if states:
                yield states
            if cursor is None:
                return

    def iter_states(
        self, workspace: Optional[Workspace] = None, miner: Optional[int] = None
    ) -> Generator[Tuple[Workspace, SectorState], None, None]:
        """Like :meth:`scan`, one state at a time (see :func:`.scan.iter_sectors`): for walks over
        more sectors than fit in memory. Close it (or run it to the end) to free the KV's scans."""
        with contextlib.closing(iter_sectors(self.store, workspace, miner)) as records:
            for r in records:
                yield r.workspace, self._cache.decode(r.key, r.raw, r.workspace).state

    def state_counts(self) -> Dict[str, int]:
        """How many sectors are in each state (``state_name``; ``""`` before any report)."""
        return self.counts().by_state()

    def counts(self) -> Counts:
        """The kept counts per workspace, miner and state name (one read, see :mod:`.counts`);
        on a KV that has none yet (written by an older version) they are built first (logged)."""
        kept = self.store.view(read_counts)
        if kept is None:
            with self.hold_commits():
                self._ensure_counts()
            kept = self.store.view(read_counts)
            if kept is None:
                raise SectorStateError(f"the kept sector counts ({COUNTS!r}) vanished while they were read")
        return kept

    def recount(self, fix: bool = True) -> Tuple[Optional[Counts], Counts]:
        """Count every sector (a full scan) and return ``(kept, counted)`` (``kept`` is ``None``
        on a KV that kept none). With ``fix``, the kept counts become the counted ones.

        Changes through this manager wait meanwhile; the result is written (or, without ``fix``,
        compared) only if no change committed during the scan (the log head did not move), else
        the scan runs again, up to ``RECOUNT_ATTEMPTS`` times."""
        with self.hold_commits():
            return self._recount_held(fix)

    def _recount_held(self, fix: bool) -> Tuple[Optional[Counts], Counts]:
        """:meth:`recount` while this caller holds the group-commit leadership."""
        for attempt in range(1, RECOUNT_ATTEMPTS + 1):
            head = self.store.view(lambda t: log_format.read_int(t, log_format.HEAD, 0))
            with contextlib.closing(iter_sectors(self.store)) as records:
                counted = count((r.workspace, r.sector_id.miner, r.raw) for r in records)
            fn = functools.partial(_compare_counts, head, counted, fix)
            unchanged, kept = self.store.update(fn) if fix else self.store.view(fn)
            if unchanged:
                if fix:
                    cache = self._cache
                    cache.counts = counted.rows() if cache.head == head else {}
                    cache.counts_ready = True
                return kept, counted
            log.info("sectors changed during the recount's scan (try %d of %d)", attempt, RECOUNT_ATTEMPTS)
        raise SectorStateError(
            f"cannot recount the sectors: they changed during each of {RECOUNT_ATTEMPTS} full scans "
            "(another host writes to this KV); run it again when fewer changes come in"
        )

    def _ensure_counts(self) -> None:
        """Build the kept counts if the KV has none (hold the leadership)."""
        if self.store.view(lambda t: t.collection(COUNTS).peek(MARKER)) is None:
            started = time.perf_counter()
            _, counted = self._recount_held(fix=True)
            log.log(
                logging.WARNING if counted.total else logging.DEBUG,
                "this KV kept no sector counts (written by an older version): built them from a full "
                "scan of %d sectors in %.2f s",
                counted.total,
                time.perf_counter() - started,
            )
        self._cache.counts_ready = True

    def close(self) -> None:
        """Refuse new changes and wait for the ones in flight."""
        with self._cond:
            self._closed = True
            while self._leader or self._queue:
                self._cond.wait(0.1)

    # --- hooks for tests and operator tools ---------------------------------------------------

    @property
    def queued(self) -> int:
        """How many calls wait for a group commit to take them (not counting the group being
        committed)."""
        with self._cond:
            return len(self._queue)

    @contextlib.contextmanager
    def hold_commits(self) -> Iterator[None]:
        """Start no group commit while the block runs: calls made meanwhile queue up (see
        :attr:`queued`) and, when the block ends, the first of them commits them all as one
        group (up to ``MAX_GROUP``). Waits for a commit in progress to finish first. For tests
        and tools that need several calls in one group; a caller in the block must not wait for
        its own change (it would wait forever)."""
        with self._cond:
            while self._leader:
                self._cond.wait(0.05)
            self._leader = True
        try:
            yield
        finally:
            with self._cond:
                self._hand_over()

    # --- group commit -------------------------------------------------------------------------

    def submit(self, op: Op) -> Any:
        """Run ``op`` in the next group commit and return what it returned (or raise what it
        raised); durable when it returns. Every change method is one ``op`` over a
        :class:`~.txn.GroupTxn`; this is for tests and operator tools that need a change those
        methods do not make. ``op`` may run more than once (a conflict re-runs the group) and
        must append to the change log whatever it writes (``t.append``), or no syncer sees it."""
        req = _Request(op)
        with self._cond:
            if self._closed:
                raise SectorStateError("the sector state manager is closed")
            self._queue.append(req)
            lead = not self._leader
            if lead:
                self._leader = True
            elif self._gathering and len(self._queue) >= self._last_group:
                self._gather.notify()
        if lead or self._await(req):
            self._lead(req)
        if req.error is not None:
            raise req.error
        return req.result

    def _await(self, req: _Request) -> bool:
        """Wait for ``req``'s group to commit (False) or for the leadership to be handed over (True).

        Each caller waits on its own lock, released for the callers of a committed group (by the
        leader for the first, then by each for the next) and for the one the leadership is handed
        to: no caller is woken for nothing. The timeout only covers a leadership given up
        without a hand-over.
        """
        while True:
            woken = req.wake.acquire(timeout=FOLLOWER_POLL)
            if req.done:
                if req.next is not None:
                    req.next.wake.release()
                return False
            if req.lead:
                return True
            if not woken:
                with self._cond:
                    if req.done or req.lead:
                        continue
                    if not self._leader:
                        self._leader = True
                        return True

    def _lead(self, req: _Request) -> None:
        """Commit groups until ``req``'s is done, then hand over to the next queued caller."""
        while True:
            with self._cond:
                self._wait_for_group()
                group = self._queue[:MAX_GROUP]
                del self._queue[:MAX_GROUP]
                self._last_group = max(1, len(group))
            after: Optional[Callable[[], None]] = None
            started = time.perf_counter()
            took = -1.0
            try:
                after = self._commit(group)
                took = time.perf_counter() - started
            finally:
                for r in group:
                    if not r.done:  # _commit itself was interrupted
                        r.error, r.done = SectorStateError("the group commit was interrupted"), True
                waiting = [r for r in group if r is not req]
                for r, nxt in zip(waiting, waiting[1:]):
                    r.next = nxt
                if waiting:
                    waiting[0].wake.release()  # the rest are woken down the chain
                # The callers are on their way back; the cache and on_commit are brought
                # up to date before the next group can start (the leadership is still ours).
                if after is not None:
                    after()
                if took >= 0 and self._group_listeners:
                    self._tell(len(group), took)
                with self._cond:
                    if req.done or not self._queue:
                        self._hand_over()
            if req.done:
                return

    def _hand_over(self) -> None:
        """Give up the leadership (hold the lock): to the first queued caller, or to nobody."""
        if self._queue:
            nxt = self._queue[0]
            nxt.lead = True
            nxt.wake.release()
        else:
            self._leader = False
            self._cond.notify_all()  # close() and hold_commits() wait for no leader

    def _tell(self, calls: int, seconds: float) -> None:
        for fn in self._group_listeners:
            try:
                fn(calls, seconds)
            except Exception:  # a listener's bug must not fail changes that committed
                log.exception("a group-commit listener failed")

    def _wait_for_group(self) -> None:
        """Give the callers of the last group a moment to queue again (hold the lock).

        Writers that just got their result come back with their next change within
        microseconds; waiting for them turns N small transactions into one. A lone writer
        (last group of one) never waits.
        """
        if len(self._queue) >= self._last_group:
            return
        deadline = time.monotonic() + GATHER_WAIT
        self._gathering = True
        try:
            while len(self._queue) < self._last_group:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._gather.wait(left)
        finally:
            self._gathering = False

    def _commit(self, group: List[_Request]) -> Optional[Callable[[], None]]:
        """Run ``group`` in one KV transaction and set each caller's outcome; returns the
        bookkeeping that must follow (cache, on_commit), run once the callers are woken.

        A call whose op raised something unexpected fails alone: the transaction it was part
        of is dropped (so nothing it wrote remains) and the rest of the group runs again."""
        if not self._cache.counts_ready:  # the first group: the KV must have its counts first
            try:
                self._ensure_counts()
            except Exception as exc:
                self._fail(group, exc)
                return None
        while True:
            try:
                return self._commit_once(group)
            except _OpFailed as failed:
                req = failed.req
                log.warning(
                    "a state change raised %s: %s; it fails alone, the other %d change(s) of its "
                    "group are committed without it",
                    type(failed.error).__name__,
                    failed.error,
                    len(group) - 1,
                    exc_info=failed.error,
                )
                req.error, req.done = failed.error, True
                group = [r for r in group if r is not req]
                if not group:
                    return None

    def _commit_once(self, group: List[_Request]) -> Optional[Callable[[], None]]:
        if self.guarded_put is not None and self._cache.head is not None:
            done, after = self._commit_guarded(group)
            if done:
                return after
        runs: List[GroupTxn] = []

        def fn(txn: StoreTxn) -> List[Tuple[Any, Optional[BaseException]]]:
            t = GroupTxn(self._cache, txn, time.time())
            runs.append(t)  # a conflict re-runs fn: the last run is the one that committed
            outcomes = self._run_ops(group, t)
            t.finish()
            return outcomes

        try:
            outcomes = self.store.update(fn)
        except _OpFailed:
            raise
        except BaseException as exc:
            self._fail(group, exc)
            return None
        return self._committed(group, runs[-1], outcomes)

    def _commit_guarded(self, group: List[_Request]) -> Tuple[bool, Optional[Callable[[], None]]]:
        """The group computed from the trusted cache, written by one guarded put that holds only
        while the log head is still the cache's (no other writer came in between): one round trip
        instead of a transaction's four. ``(False, None)``: nothing was written, use ``update``."""
        assert self.guarded_put is not None and self._cache.head is not None
        head = self._cache.head
        rec = RecordingTxn(head)
        t = GroupTxn(self._cache, rec, time.time())
        try:
            outcomes = self._run_ops(group, t)
            t.finish()
        except NeedsTransaction:  # a sector the cache does not hold, or a workspace move
            return False, None
        except _OpFailed:  # nothing was written: _commit runs the group again without that call
            raise
        except BaseException as exc:  # as update() would have raised it
            self._fail(group, exc)
            return True, None
        guard = (log_format.META, log_format.HEAD, rec.head if head else None)  # no head before a log
        try:
            written = self.guarded_put.put_many_if(guard, rec.items())
        except (TransactionConflict, StoreUnavailable):  # nothing was written; update() retries
            self._cache.forget()
            return False, None
        except BaseException as exc:
            self._fail(group, exc)
            return True, None
        if not written:  # another writer moved the log head: the cache is stale
            self._cache.forget()
            return False, None
        return True, self._committed(group, t, outcomes)

    @staticmethod
    def _run_ops(group: List[_Request], t: GroupTxn) -> List[Tuple[Any, Optional[BaseException]]]:
        """Each op's outcome. A refusal (raised before the op writes anything) is its outcome; the
        store's own errors are the transaction's; anything else aborts the transaction as
        :class:`_OpFailed`, for :meth:`_commit` to run the group again without that op."""
        outcomes: List[Tuple[Any, Optional[BaseException]]] = []
        for req in group:
            try:
                outcomes.append((req.op(t), None))
            except (SectorStateError, SectorNotFound) as exc:
                outcomes.append((None, exc))
            except (KVError, NeedsTransaction):  # the transaction's (retried, or the group fails)
                raise
            except Exception as exc:
                raise _OpFailed(req, exc) from exc
        return outcomes

    def _fail(self, group: List[_Request], exc: BaseException) -> None:
        self._cache.forget()
        for req in group:
            req.error, req.done = exc, True

    def _committed(
        self, group: List[_Request], t: GroupTxn, outcomes: List[Tuple[Any, Optional[BaseException]]]
    ) -> Callable[[], None]:
        for req, (result, error) in zip(group, outcomes):
            req.result, req.error, req.done = result, error, True

        def after() -> None:
            self._cache.committed(t.head1, t.fresh, t.trusted, t.counted)
            if t.log is not None and self._on_commit is not None:
                try:
                    self._on_commit(t.head1, t.log.written)
                except Exception:  # its bug must not fail changes that committed
                    log.exception("on_commit failed (the dispatchers poll the log)")

        return after
