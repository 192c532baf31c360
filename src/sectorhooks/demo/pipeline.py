"""A simulated sealing pipeline driving the real SectorStateManager, file stores and counter.

Every sector's fate is drawn from its own RNG (seeded by run seed, miner and number), so a run
is reproducible whatever order the worker threads interleave in. Workers report concurrently,
as damocles workers do, which is what exercises the state manager's group commit.

Life of a sealed sector (one state change per line, as damocles-manager records them)::

    init (batch) -> Packed (pieces) -> PC1 (ticket) -> PC2 (CommR/CommD) -> WaitSeed (pre-commit
    message) -> C1 (seed) -> C2 (proof) -> Persisted (commit message; sealed + cache files written
    to a persist store) -> Finalized (then moved offline)

Some sectors are imported whole instead, some abort half-way, some stay in flight, a few
finalized ones are restored for a rebuild (and half of those finalized again), a few get a
snap-deal upgrade (update files written).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs

from sectorhooks_spec import (
    AllocatedSector,
    FileStore,
    JsonRpcNamespace,
    LatestState,
    MessageInfo,
    PathType,
    Piece,
    PreCommitInfo,
    ProofInfo,
    SectorID,
    SectorState,
    Seed,
    Ticket,
    UpgradedInfo,
)

from ..state.scan import iter_sectors
from ..stores import pick_store

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

PROOF_TYPE = 8  # StackedDrg32GiBV1_1
SECTOR_SIZE = 32 << 30
FIRST_MINER = 1000
BASE_EPOCH = 3_200_000
COUNTER_PREFIX = "demo/sealed/"
IN_FLIGHT = 4  # sector lives queued per worker thread
SEAL_STATES = ("Packed", "PC1", "PC2", "WaitSeed", "C1", "C2", "Persisted", "Finalized")

Progress = Callable[[str, int, int], None]


@attrs.frozen
class DemoOptions:
    """What to simulate."""

    sectors: int = 3000
    miners: int = 3
    seed: int = 1
    workers: int = 8
    import_rate: float = 0.08
    abort_rate: float = 0.06
    inflight_rate: float = 0.04
    restore_rate: float = 0.03
    upgrade_rate: float = 0.02
    deal_rate: float = 0.3


@attrs.define
class Tally:
    """What the simulation did, counted as it goes (thread-safe through ``lock``)."""

    changes: int = 0
    allocated: int = 0
    imported: int = 0
    sealed: int = 0
    aborted: int = 0
    inflight: int = 0
    restored: int = 0
    refinalized: int = 0
    upgraded: int = 0
    files: Dict[str, int] = attrs.field(factory=dict)
    errors: List[str] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def file(self, store: str, n: int = 1) -> None:
        with self.lock:
            self.files[store] = self.files.get(store, 0) + n

    def as_dict(self) -> Dict[str, Any]:
        return attrs.asdict(self, filter=lambda a, _: a.name != "lock")


def _hex(*parts: Any, n: int = 32) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[: 2 * n]


def _cid(prefix: str, *parts: Any) -> str:
    """A CID-looking base32 string (letters a-z, digits 2-7), deterministic from ``parts``."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return prefix + "".join(alphabet[b % 32] for b in digest + digest[:14])


class Pipeline:
    """Runs the simulation against an open Runtime."""

    def __init__(
        self,
        rt: Runtime,
        options: DemoOptions,
        progress: Optional[Progress] = None,
        persist_names: Sequence[str] = (),
        piece_names: Sequence[str] = (),
    ):
        self.rt = rt
        self.opt = options
        self.progress = progress or (lambda phase, done, total: None)
        self.persist_names = list(persist_names)
        self.piece_names = list(piece_names)
        self.tally = Tally()
        self.counter = _counter_handler(rt)
        self._done = 0
        self._done_lock = threading.Lock()

    # --- plan ---------------------------------------------------------------------------------

    def miners(self) -> List[int]:
        """Actor IDs of the simulated miners."""
        return [FIRST_MINER + i for i in range(self.opt.miners)]

    def allocate_numbers(self) -> List[SectorID]:
        """``sectors`` new IDs spread over the miners, after each miner's highest existing number
        (read by a streamed scan: no list of the stored sectors)."""
        ids = []
        miners = self.miners()
        start = {}
        for m in miners:
            with contextlib.closing(iter_sectors(self.rt.kv, miner=m)) as records:
                start[m] = max((r.sector_id.number for r in records), default=0) + 1
        for i in range(self.opt.sectors):
            m = miners[i % len(miners)]
            ids.append(SectorID(m, start[m] + i // len(miners)))
        return ids

    def fate(self, sid: SectorID) -> Tuple[str, random.Random]:
        """``import``, ``abort``, ``inflight`` or ``seal``, and the sector's own RNG."""
        rng = random.Random(f"{self.opt.seed}/{sid.miner}/{sid.number}")
        x = rng.random()
        o = self.opt
        for name, rate in (("import", o.import_rate), ("abort", o.abort_rate), ("inflight", o.inflight_rate)):
            if x < rate:
                return name, rng
            x -= rate
        return "seal", rng

    # --- run ----------------------------------------------------------------------------------

    def run(self) -> Tally:
        """Allocate, then drive every sector through its life on ``workers`` threads.

        Each sector's fate (and its RNG) is drawn where it is used, and at most ``IN_FLIGHT``
        lives per worker are queued at a time, so memory does not grow with ``sectors``."""
        ids = self.allocate_numbers()
        fresh = [sid for sid in ids if self.fate(sid)[0] != "import"]
        total = len(ids)
        self.progress("allocate", 0, len(fresh))
        for i in range(0, len(fresh), 64):
            batch = fresh[i : i + 64]
            self.rt.state.init_sectors([AllocatedSector(sid, PROOF_TYPE) for sid in batch])
            self.tally.add(changes=len(batch), allocated=len(batch))
            self.progress("allocate", min(i + 64, len(fresh)), len(fresh))
        del fresh
        self.progress("seal", 0, total)
        workers = max(1, self.opt.workers)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="demo-worker") as pool:
            running: Dict[Future[None], SectorID] = {}
            for sid in ids:
                if len(running) >= workers * IN_FLIGHT:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        self._finished(fut, running.pop(fut), total)
                running[pool.submit(self._life_of, sid)] = sid
            for fut in as_completed(list(running)):
                self._finished(fut, running.pop(fut), total)
        return self.tally

    def _finished(self, fut: Future[None], sid: SectorID, total: int) -> None:
        exc = fut.exception()
        if exc is not None:
            msg = f"{sid}: {type(exc).__name__}: {exc}"
            log.error("demo sector failed: %s", msg)
            with self.tally.lock:
                self.tally.errors.append(msg)
        with self._done_lock:
            self._done += 1
            done = self._done
        self.progress("seal", done, total)

    def _life_of(self, sid: SectorID) -> None:
        self._life(sid, *self.fate(sid))

    def _life(self, sid: SectorID, fate: str, rng: random.Random) -> None:
        worker = threading.current_thread().name.replace("demo-worker_", "worker-")
        if fate == "import":
            self._import(sid, rng)
            return
        stop_at = len(SEAL_STATES)
        if fate in ("abort", "inflight"):
            stop_at = rng.randint(1, len(SEAL_STATES) - 2)
        prev = ""
        for i, state in enumerate(SEAL_STATES[:stop_at]):
            self._step(sid, i, state, prev, worker, rng)
            prev = state
        if fate == "abort":
            self._report(
                sid, "Aborted", prev, worker, abort_reason=f"{prev} failed: worker {worker} lost its GPU"
            )
            self.tally.add(aborted=1)
            return
        if fate == "inflight":
            self.tally.add(inflight=1)
            return
        self.rt.state.finalize(sid)
        self.tally.add(changes=1, sealed=1)
        if self.counter is not None:
            self.counter.Incr(f"{COUNTER_PREFIX}t0{sid.miner}")
        if rng.random() < self.opt.upgrade_rate:
            self._upgrade(sid, worker)
        if rng.random() < self.opt.restore_rate:
            self._restore(sid, worker, refinalize=rng.random() < 0.5)

    def _report(self, sid: SectorID, state: str, prev: str, worker: str, **fields: Any) -> SectorState:
        event = f"{prev or 'Empty'}->{state}"
        new = self.rt.state.update(sid, latest_state=LatestState(state, prev, event, worker), **fields)
        self.tally.add(changes=1)
        return new

    def _step(self, sid: SectorID, i: int, state: str, prev: str, worker: str, rng: random.Random) -> None:
        seed = self.opt.seed
        epoch = BASE_EPOCH + sid.number % 2880 + i * 10
        fields: Dict[str, Any] = {}
        if state == "Packed":
            fields["pieces"] = self._pieces(sid, rng)
        elif state == "PC1":
            fields["ticket"] = Ticket(_hex("ticket", seed, sid), epoch)
        elif state == "PC2":
            fields["pre"] = PreCommitInfo(
                _cid("bagboea4b5abc", "commr", seed, sid), _cid("baga6ea4seaq", "commd", seed, sid)
            )
        elif state == "WaitSeed":
            fields["message_info"] = MessageInfo(pre_commit_cid=_cid("bafy2bzace", "precommit", seed, sid))
        elif state == "C1":
            fields["seed"] = Seed(_hex("seed", seed, sid), epoch + 150)
        elif state == "C2":
            fields["proof"] = ProofInfo(_hex("proof", seed, sid, n=96))
        elif state == "Persisted":
            cur = self.rt.state.get(sid)
            fields["message_info"] = attrs.evolve(
                cur.message_info, commit_cid=_cid("bafy2bzace", "commit", seed, sid)
            )
            self._write_sector_files(sid, cur, rng)
        self._report(sid, state, prev, worker, **fields)

    def _pieces(self, sid: SectorID, rng: random.Random) -> Tuple[Piece, ...]:
        if rng.random() >= self.opt.deal_rate:
            return (Piece(_cid("baga6ea4seaq", "filler", sid.miner), SECTOR_SIZE),)
        size = SECTOR_SIZE // 2
        deal = Piece(
            _cid("baga6ea4seaq", "deal", self.opt.seed, sid),
            size,
            0,
            size - size // 128,
            rng.randint(1, 10**7),
        )
        filler = Piece(_cid("baga6ea4seaq", "filler-half", sid.miner), size, size)
        self._write_piece(deal)
        return (deal, filler)

    def _import(self, sid: SectorID, rng: random.Random) -> None:
        seed = self.opt.seed
        state = SectorState(
            id=sid,
            sector_type=PROOF_TYPE,
            ticket=Ticket(_hex("ticket", seed, sid), BASE_EPOCH - 20000),
            seed=Seed(_hex("seed", seed, sid), BASE_EPOCH - 19000),
            pieces=(Piece(_cid("baga6ea4seaq", "filler", sid.miner), SECTOR_SIZE),),  # type: ignore[arg-type]
            pre=PreCommitInfo(
                _cid("bagboea4b5abc", "commr", seed, sid), _cid("baga6ea4seaq", "commd", seed, sid)
            ),
            proof=ProofInfo(_hex("proof", seed, sid, n=96)),
            message_info=MessageInfo(
                pre_commit_cid=_cid("bafy2bzace", "precommit", seed, sid),
                commit_cid=_cid("bafy2bzace", "commit", seed, sid),
            ),
            latest_state=LatestState("Finalized", "", "Import", "importer"),
            finalized=True,
            imported=True,
        )
        self.rt.state.import_sector(state)
        self.tally.add(changes=1, imported=1)

    def _upgrade(self, sid: SectorID, worker: str) -> None:
        seed = self.opt.seed
        info = UpgradedInfo(
            _cid("baga6ea4seaq", "snap-unsealed", seed, sid), _cid("bagboea4b5abc", "snap-sealed", seed, sid)
        )
        self._write_files(sid, ((PathType.UPDATE, info.sealed_cid), (PathType.UPDATE_CACHE, None)))
        self._report(sid, "SnapDone", "Finalized", worker, upgraded=True, upgraded_info=info)
        self.tally.add(upgraded=1)

    def _restore(self, sid: SectorID, worker: str, refinalize: bool) -> None:
        self.rt.state.restore(sid)
        self._report(sid, "Rebuild", "Finalized", worker, need_rebuild=True)
        self.tally.add(changes=1, restored=1)
        if refinalize:
            self._report(sid, "Finalized", "Rebuild", worker, need_rebuild=False)
            self.rt.state.finalize(sid)
            self.tally.add(changes=1, refinalized=1)

    # --- files --------------------------------------------------------------------------------

    def _write_sector_files(self, sid: SectorID, state: SectorState, rng: random.Random) -> None:
        comm_r = state.pre.comm_r if state.pre else ""
        self._write_files(sid, ((PathType.SEALED, comm_r), (PathType.CACHE, None)), rng)

    def _write_files(
        self,
        sid: SectorID,
        items: Sequence[Tuple[PathType, Optional[str]]],
        rng: Optional[random.Random] = None,
    ) -> None:
        if not self.persist_names:
            return
        store = pick_store(
            self.rt.filestores, sid.miner, self.persist_names, rng=rng or random.Random(str(sid))
        )
        for ptype, content in items:
            path = store.full_path(ptype, sid, for_write=True)
            if content is None:  # a cache directory with its p_aux file
                os.makedirs(path, exist_ok=True)
                path = os.path.join(path, "p_aux")
                content = _hex("p_aux", sid)
            with open(path, "w", encoding="ascii") as fh:
                fh.write(content + "\n")
            self.tally.file(store.instance_name())

    def _write_piece(self, piece: Piece) -> None:
        stores: Mapping[str, FileStore] = self.rt.filestores
        for name in self.piece_names:
            fs = stores[name]
            if fs.instance_config().read_only:
                continue
            path = fs.full_path(PathType.PIECE, None, piece.cid, for_write=True)
            with open(path, "w", encoding="ascii") as fh:
                fh.write(f"{piece.cid} {piece.payload_size}\n")
            self.tally.file(name)
            return


def _counter_handler(rt: Runtime) -> Optional[Any]:
    """The atomic_counter plugin's JSON-RPC handler object, if that plugin is active."""
    impl = rt.host.impl("atomic_counter", "jsonrpc_handler")
    if impl is None:
        return None
    reg = JsonRpcNamespace.of(impl())  # or the older (namespace, handler) tuple
    return reg.handler if reg.name == "AtomicCounter" else None
