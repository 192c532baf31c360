"""Hook runners: how a dispatcher calls one syncer's hooks, in the host or in a worker process.

A runner calls the event hooks of ``events[start:end]`` in order and stops at the first that
fails, then, when asked, ``Flush``. It reports what went wrong as a :class:`HookFailure` instead
of raising, so the dispatcher decides what to retry, dead-letter or wait for:

* :class:`InProcessRunner` (``Isolation = "thread"``, and what a worker process runs inside):
  the plugin's functions called in this thread; a raise is caught, a hang or crash is the host's.
* :class:`~sectorhooks.sync.worker.WorkerRunner` (``Isolation = "process"``, the default): the same
  calls in a supervised worker process; a hang past ``HookTimeout`` or a crash kills only it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import attrs

from sectorhooks_spec import Rejected, RejectedChanges, StoreUnavailable

from ..changelog import HOOKS, BrokenEvent, caller
from .syncers import FLUSH, Syncer, describe

#: HookFailure kinds: the hook raised; it raised StoreUnavailable (the sink is down); the worker
#: process died; the call ran past HookTimeout and the worker was killed; the runner was closed.
RAISED, UNAVAILABLE, CRASHED, HUNG, CLOSED = "raised", "unavailable", "crashed", "hung", "closed"
LOST = (CRASHED, HUNG, CLOSED)  # the worker is gone with whatever it had buffered


@attrs.frozen
class HookFailure:
    """Why a call stopped: at ``events[index]`` (-1: in ``Flush``), of ``kind``, described."""

    index: int
    kind: str
    error: str
    since: float = 0.0  # HUNG: when the call began (time.time())


@attrs.frozen
class FlushResult:
    """What ``Flush`` said: the changes the sink rejected, or why it failed."""

    rejected: Tuple[Rejected, ...] = ()
    failure: Optional[HookFailure] = None


@attrs.define
class Busy:
    """The call in progress: on which event (``seq``; -1 for ``Flush``) and since when."""

    seq: int
    hook: str
    since: float  # time.time()
    since_mono: float  # time.monotonic()


class HookRunner(Protocol):
    """What a dispatcher needs from a runner (see the module docstring)."""

    isolation: str  # "thread" or "process"

    def call(self, events: Sequence[Any], start: int, end: int) -> Optional[HookFailure]: ...

    def flush(self) -> FlushResult: ...

    def busy(self) -> Optional[Busy]: ...

    def info(self) -> Dict[str, Any]: ...

    def close(self) -> None: ...


class InProcessRunner:
    """Calls a syncer's hooks in the calling thread."""

    isolation = "thread"

    def __init__(self, syncer: Syncer):
        self.syncer = syncer
        self._calls: Dict[str, Any] = {}  # event kind -> (function, caller), or () for no impl
        self.mark: Optional[Callable[[int], None]] = None  # told each event's seq before its hook
        self._busy_seq: Optional[int] = None  # the event whose hook runs (-1: Flush), since when
        self._busy_since = 0.0

    def call(self, events: Sequence[Any], start: int, end: int) -> Optional[HookFailure]:
        instance = self.syncer.instance
        for i in range(start, end):
            ev = events[i]
            self._busy_seq, self._busy_since = ev.seq, time.monotonic()
            if self.mark is not None:
                self.mark(ev.seq)
            try:
                if isinstance(ev, BrokenEvent):
                    raise ev.error
                plan = self._plan(ev.header["e"])
                if plan:
                    fn, call = plan
                    call(fn, ev, instance)
            except StoreUnavailable as exc:
                return HookFailure(i, UNAVAILABLE, describe(exc))
            except Exception as exc:
                return HookFailure(i, RAISED, describe(exc))
            finally:
                self._busy_seq = None
        return None

    def _plan(self, kind: str) -> Any:
        plan = self._calls.get(kind)
        if plan is None:
            impl = self.syncer.impls.get(HOOKS[kind])  # an unknown event fails like a raising hook
            plan = self._calls[kind] = (impl.function, caller(impl.argnames)) if impl else ()
        return plan

    def flush(self) -> FlushResult:
        impl = self.syncer.impls.get(FLUSH)
        if impl is None:
            return FlushResult()
        self._busy_seq, self._busy_since = -1, time.monotonic()
        try:
            impl.function(*[self.syncer.instance for _ in impl.argnames])
        except RejectedChanges as exc:
            return FlushResult(tuple(exc.rejected))
        except Exception as exc:
            return FlushResult(failure=HookFailure(-1, RAISED, describe(exc)))
        finally:
            self._busy_seq = None
        return FlushResult()

    def busy(self) -> Optional[Busy]:
        seq, since = self._busy_seq, self._busy_since
        if seq is None:
            return None
        return Busy(seq, FLUSH if seq == -1 else "", time.time() - (time.monotonic() - since), since)

    def info(self) -> Dict[str, Any]:
        return {"isolation": self.isolation}

    def close(self) -> None:
        pass


def rejected_to_json(rejected: Sequence[Rejected]) -> List[List[Any]]:
    """Rejected changes as JSON lists (what a worker sends back)."""
    return [[r.sector, r.version, r.reason] for r in rejected]


def rejected_from_json(items: Sequence[Sequence[Any]]) -> Tuple[Rejected, ...]:
    """The inverse of :func:`rejected_to_json`."""
    return tuple(Rejected(str(s), int(v), str(why)) for s, v, why in items)
