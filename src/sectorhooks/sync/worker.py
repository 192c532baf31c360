"""Plugin worker processes: a syncer's hooks in a child process the host supervises.

The model is HashiCorp's go-plugin: the plugin runs in a process of its own, the host talks to it
over a pipe, watches it, and kills and restarts it when it hangs or dies, so a plugin's bug can
cost a retry but never the host.

* One worker per syncer instance (``[[Common.Syncers]] Isolation = "process"``, the default),
  started with the dispatcher. It loads the plugin from the same manifest the host loaded, runs
  its ``onInit`` with the same config table (``kvstore`` is ``None`` there: the KV lives in the
  host), and ``onShutdown`` when the host stops it.
* The host sends each batch as the bytes the change log holds (``seq`` and entry, nothing
  re-encoded); the worker decodes them and calls the hooks in order (see
  :class:`~sectorhooks.sync.runners.InProcessRunner`), then ``Flush`` when asked.
* A shared page (an anonymous file mapped by both) says which event's hook is running since
  when, and carries the worker's heartbeat. A call running past ``HookTimeout`` (or a heartbeat
  that old) is a hang: the worker is killed. A worker that exits or is killed by a signal is a
  crash. Either way the call returns a :class:`~sectorhooks.sync.runners.HookFailure` naming the
  event, and the next call starts a new worker; the dispatcher backs off and counts the event.
* The worker's log records travel back with each reply and are logged here, by their logger.
* A worker whose host died notices (its parent changes) and exits.
"""

from __future__ import annotations

import json
import logging
import mmap
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, Pipe
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ..config import SyncSettings
from ..errors import WorkerStartError
from .runners import CLOSED, CRASHED, HUNG, RAISED, Busy, FlushResult, HookFailure, rejected_from_json
from .syncers import FLUSH, Syncer

if TYPE_CHECKING:
    from ..loader import Candidate

log = logging.getLogger(__name__)

#: The shared page: what the worker is doing (IDLE, IN_HOOK, IN_FLUSH), on which seq, since when
#: (time.monotonic(), one clock for every process on the machine) and its last heartbeat.
PAGE = struct.Struct("<qqdd")
IDLE, IN_HOOK, IN_FLUSH = 0, 1, 2
HEARTBEAT = 0.5  # seconds between the worker's heartbeats
POLL = 0.2  # seconds between the host's looks at a busy worker
STOP_TIMEOUT = 10.0  # seconds a worker gets to run onShutdown and exit before it is killed
CALL, FLUSH_OP, QUIT = b"C", b"F", b"Q"
_ENTRY = struct.Struct("<qI")
_BOOT = (
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[3])\n"
    "from sectorhooks.sync.worker_main import main\n"
    "main(int(sys.argv[1]), int(sys.argv[2]))\n"
)


def pack_events(events: Sequence[Any]) -> bytes:
    """``(seq, raw)`` of each event, framed: the log's own bytes, nothing re-encoded."""
    parts = [struct.pack("<I", len(events))]
    for ev in events:
        parts.append(_ENTRY.pack(ev.seq, len(ev.raw)))
        parts.append(ev.raw)
    return b"".join(parts)


def unpack_events(data: memoryview) -> Iterator[Tuple[int, bytes]]:
    """The inverse of :func:`pack_events`."""
    (count,) = struct.unpack_from("<I", data, 0)
    pos = 4
    for _ in range(count):
        seq, size = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        yield seq, bytes(data[pos : pos + size])
        pos += size


def exit_text(code: Optional[int]) -> str:
    """``exit status 3`` or ``killed by signal 9 (SIGKILL)``."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"killed by signal {-code} ({name})"
    return f"exit status {code}"


class WorkerRunner:
    """A syncer's hooks in a supervised worker process (see the module docstring)."""

    isolation = "process"

    def __init__(
        self,
        syncer: Syncer,
        settings: SyncSettings,
        init: Mapping[str, Any],
        tick: Callable[[], None] = lambda: None,
    ):
        self.syncer = syncer
        self.hook_timeout = settings.hook_timeout
        self.tick = tick  # called while waiting on the worker (the dispatcher renews its lease)
        self._init = dict(init)
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._conn: Optional[Connection] = None
        self._page: Optional[mmap.mmap] = None
        self._ready = False
        self._closing = False
        self._lock = threading.Lock()  # one request at a time
        self.starts = 0
        self.crashes = 0  # worker deaths and kills during a call (crashes and hangs)
        self.last_exit = ""
        self.last_failure = ""
        self._hung: Optional[Busy] = None  # the call found hung, until its worker is reaped

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """The running worker's pid, if one runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the worker now (it loads the plugin while the dispatcher reads its first batch);
        a worker that cannot start is retried by the first call."""
        with self._lock:
            if self._conn is None and not self._closing:
                try:
                    self._spawn()
                except OSError as exc:
                    log.warning("syncer %r: cannot start its worker process: %s", self.syncer.name, exc)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the worker has loaded the plugin and run its onInit; True once it has."""
        with self._lock:
            if self._conn is None:
                return False
            try:
                self._await_ready(time.monotonic() + timeout)
            except WorkerStartError:
                return False
            return self._ready

    def close(self) -> None:
        """Stop the worker: it runs the plugin's onShutdown and exits (killed if it does not)."""
        self._closing = True
        if self._lock.acquire(timeout=0.2):
            try:
                if self._conn is not None and self._ready:
                    try:
                        self._conn.send_bytes(QUIT)
                    except OSError:
                        pass
                self._reap(STOP_TIMEOUT)
            finally:
                self._lock.release()
        else:  # a call is stuck in a hook: the dispatcher waiting on it sees the worker go
            self._kill()

    # --- calls --------------------------------------------------------------------------------

    def call(self, events: Sequence[Any], start: int, end: int) -> Optional[HookFailure]:
        if start >= end:
            return None
        reply = self._request(CALL + pack_events(events[start:end]), events, start, end)
        if isinstance(reply, HookFailure):
            return reply
        if "failed" in reply:
            return HookFailure(start + int(reply["failed"]), reply["kind"], reply["error"])
        return None

    def flush(self) -> FlushResult:
        reply = self._request(FLUSH_OP, (), 0, 0)
        if isinstance(reply, HookFailure):
            return FlushResult(failure=reply)
        if "error" in reply:
            return FlushResult(failure=HookFailure(-1, RAISED, reply["error"]))
        return FlushResult(rejected_from_json(reply.get("rejected", ())))

    def busy(self) -> Optional[Busy]:
        """The hook call in progress in the worker, read off the shared page."""
        if self._hung is not None:
            return self._hung
        page = self._page
        if page is None or self._proc is None:
            return None
        try:
            flag, seq, since, _ = PAGE.unpack_from(page, 0)
        except ValueError:  # reaped meanwhile
            return None
        if flag == IDLE:
            return None
        hook = FLUSH if flag == IN_FLUSH else ""
        return Busy(seq if flag == IN_HOOK else -1, hook, time.time() - (time.monotonic() - since), since)

    def info(self) -> Dict[str, Any]:
        return {
            "isolation": self.isolation,
            "pid": self.pid,
            "starts": self.starts,
            "crashes": self.crashes,
            "last_exit": self.last_exit,
        }

    def _request(
        self, message: bytes, events: Sequence[Any], start: int, end: int
    ) -> Union[Dict[str, Any], HookFailure]:
        with self._lock:
            if self._closing:
                return HookFailure(start if end else -1, CLOSED, "the host is stopping")
            self._reap_if_died()
            try:
                if self._conn is None:
                    self._spawn()
                self._await_ready(time.monotonic() + self.hook_timeout)
                assert self._conn is not None
            except (WorkerStartError, OSError) as exc:
                self._reap(0)
                self.last_failure = f"worker process could not start: {exc}"
                return HookFailure(start if end else -1, "unavailable", self.last_failure)
            try:
                self._conn.send_bytes(message)
            except OSError:  # it died after the look above: nothing reached it
                self._reap_if_died(wait=STOP_TIMEOUT)
                return HookFailure(start if end else -1, "unavailable", self.last_failure)
            got = self._wait_reply(events, start, end)
            if isinstance(got, HookFailure):
                return got
            reply: Dict[str, Any] = json.loads(got)
            _relog(reply.pop("logs", ()))
            return reply

    def _reap_if_died(self, wait: float = 0.0) -> None:
        """A worker that died between requests (killed from outside, OOM): count it, start anew."""
        proc = self._proc
        if proc is None:
            return
        try:
            code = proc.wait(wait) if wait else proc.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return
        self._reap(0)
        self.crashes += 1
        self.last_exit = exit_text(code)
        self.last_failure = f"worker process {proc.pid} exited between calls ({self.last_exit})"
        name, plugin = self.syncer.name, self.syncer.plugin
        log.warning("syncer %r (plugin %r): %s; a new one starts", name, plugin, self.last_failure)

    def _wait_reply(self, events: Sequence[Any], start: int, end: int) -> Union[bytes, HookFailure]:
        conn, proc, page = self._conn, self._proc, self._page
        assert conn is not None and proc is not None and page is not None
        while True:
            try:
                if conn.poll(POLL):
                    return conn.recv_bytes()
            except (EOFError, OSError):
                return self._lost(events, start, end, CRASHED)
            if proc.poll() is not None:
                return self._lost(events, start, end, CRASHED)
            flag, _, since, beat = PAGE.unpack_from(page, 0)
            now = time.monotonic()
            if (flag != IDLE and now - since > self.hook_timeout) or now - beat > self.hook_timeout:
                self._hung = self.busy()
                self._kill()
                return self._lost(events, start, end, HUNG)
            self.tick()

    def _lost(self, events: Sequence[Any], start: int, end: int, kind: str) -> HookFailure:
        """The worker died (or was killed for hanging) during a request: which event, and why."""
        assert self._page is not None
        flag, seq, started, _ = PAGE.unpack_from(self._page, 0)
        pid = self._proc.pid if self._proc is not None else None
        code = self._reap(0 if kind == HUNG else STOP_TIMEOUT)
        self._hung = None
        if self._closing:
            return HookFailure(start if end else -1, CLOSED, "the host is stopping")
        index, where = -1, f"{FLUSH} (Flush)"
        if flag == IN_HOOK or (flag == IDLE and end):
            seqs = [ev.seq for ev in events[start:end]]
            index = start + seqs.index(seq) if flag == IN_HOOK and seq in seqs else start
            where = f"the hook of event {events[index].seq}"
        self.crashes += 1
        self.last_exit = exit_text(code)
        since = 0.0
        if kind == HUNG:
            since = time.time() - (time.monotonic() - started)
            error = (
                f"{where} ran past HookTimeout ({self.hook_timeout:g}s); worker process {pid} was killed"
                f" ({self.last_exit})"
            )
        else:
            error = f"worker process {pid} died during {where}: {self.last_exit}"
        self.last_failure = error
        log.error(
            "syncer %r (plugin %r): %s; a new worker starts with the next attempt",
            self.syncer.name,
            self.syncer.plugin,
            error,
        )
        return HookFailure(index, kind, error, since)

    # --- the process --------------------------------------------------------------------------

    def _spawn(self) -> None:
        parent, child = Pipe()
        backing = tempfile.TemporaryFile()
        try:
            backing.truncate(PAGE.size)
            page = mmap.mmap(backing.fileno(), PAGE.size)
            PAGE.pack_into(page, 0, IDLE, 0, time.monotonic(), time.monotonic())
            fds = [child.fileno(), backing.fileno()]
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, *map(str, fds), json.dumps(sys.path)],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
            backing.close()  # the mapping and the child keep it
        self._conn, self._page, self._ready = parent, page, False
        self.starts += 1
        try:
            parent.send_bytes(json.dumps(self._init, default=str).encode("utf-8"))
        except OSError as exc:
            self._reap(0)
            raise WorkerStartError(f"the worker exited at once ({exc})") from None
        log.debug("syncer %r: worker process %d started", self.syncer.name, self._proc.pid)

    def _await_ready(self, deadline: float) -> None:
        """Read the worker's first message (it loaded the plugin, or why not); hold the lock."""
        if self._ready:
            return
        conn, proc = self._conn, self._proc
        assert conn is not None and proc is not None
        while True:
            try:
                if conn.poll(POLL):
                    reply = json.loads(conn.recv_bytes())
                    break
            except (EOFError, OSError):
                code = self._reap(STOP_TIMEOUT)
                raise WorkerStartError(f"the worker process exited while starting ({exit_text(code)})")
            if time.monotonic() > deadline:
                self._kill()
                self._reap(0)
                raise WorkerStartError(f"the worker did not load the plugin within {self.hook_timeout:g}s")
            self.tick()
        _relog(reply.pop("logs", ()))
        if "error" in reply:
            self._reap(STOP_TIMEOUT)
            raise WorkerStartError(reply["error"])
        self._ready = True

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.kill()
            except OSError:
                pass

    def _reap(self, timeout: float) -> Optional[int]:
        """Close the pipe, wait up to ``timeout`` for the worker to exit (then kill it); its code."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ready = False
        code = None
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        if self._page is not None:
            self._page.close()
            self._page = None
        return code


def _relog(records: Sequence[Sequence[Any]]) -> None:
    for level, name, message in records:
        logging.getLogger(name).log(level, "%s", message)


def worker_init(
    syncer: Syncer, candidate: Candidate, plugin_config: Mapping[str, Any], data_dir: str, nice: int = 0
) -> Dict[str, Any]:
    """The first message a worker gets: what to load and how to start it."""
    return {
        "candidate": {
            "manifest_path": candidate.manifest_path,
            "manifest_text": candidate.manifest_text,
            "origin": candidate.origin,
            "import_path": candidate.import_path,
            "package": candidate.package,
        },
        "plugin": syncer.plugin,
        "syncer": syncer.name,
        "meta": dict(syncer.instance.meta),
        "config": dict(plugin_config),
        "data_dir": data_dir,
        "nice": nice,
        "log_level": logging.getLogger().getEffectiveLevel(),
    }


__all__: List[str] = ["WorkerRunner", "WorkerStartError", "exit_text", "pack_events", "worker_init"]
