"""A sink's writes in a worker process of its own (``worker = "process"``, the SQLite default).

An embedded SQLite sink does all of its work (building rows, binding, B-tree updates, fsync) in
the process that writes to it. In the host process that work shares one GIL with the writer
threads and the state manager's group commit; in a worker process it runs beside them, on
another core, and the host only hands over each flushed batch (one pickled list) and waits for
the outcome with the GIL released.

Protocol, over a socket pair (``multiprocessing.connection`` frames, pickled): the parent sends
the sink's settings and ``sys.path`` once; the worker answers ``READY`` once it has imported
SQLAlchemy and opened its sink (until then the host writes its batches itself, in its thread).
Then the parent sends one flat batch per flush (see ``sink.Change``) and the worker answers
``("ok", rejected, logs)`` or ``("error", kind, text, logs)``, where ``kind`` is
:func:`sink.classify` of the error and ``logs`` are the sink's log records, re-logged by the
parent. Closing the parent's end stops the worker. A worker that dies is seen as the sink being
unavailable: the flush raises, the host retries the batch (nothing is lost) and the next flush
starts a new worker.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # the worker imports nothing of the host's before it has the host's sys.path
    from sectorhooks_spec import Rejected

log = logging.getLogger(__name__)

PACKAGE = "sqlsync_worker"  # the plugin's directory, imported as a package in the worker
READY = b"ready"  # the worker's first message: imported, sink open, waiting for batches
STOP_TIMEOUT = 10.0  # seconds a worker gets to finish its write and exit before it is killed
_BOOT = (
    "import sys, types\n"
    "pkg = types.ModuleType({package!r})\n"
    "pkg.__path__ = [sys.argv[1]]\n"
    "sys.modules[{package!r}] = pkg\n"
    "from {package}.worker import serve\n"
    "serve(int(sys.argv[2]))\n"
)


class WorkerFailed(Exception):
    """The worker's write failed; ``kind`` is how the sink classified the error, or ``"worker"``
    when the worker process itself failed (it could not start, or it died)."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


def available() -> bool:
    """Worker processes need fd passing (POSIX)."""
    return os.name == "posix"


class SinkWorker:
    """The parent's handle on one sink's worker process; started on first use, restarted after
    it died. One write at a time (a lock)."""

    def __init__(self, label: str, settings: Dict[str, Any], nice: int = 0):
        self.label = label
        self.settings = settings
        self.nice = nice  # added to the worker's niceness once it has started
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._conn: Optional[Connection] = None
        self._ready = False  # the worker said it has imported and opened its sink
        self._lock = threading.Lock()

    @property
    def pid(self) -> Optional[int]:
        """The running worker's pid (None before the first start or after a stop)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the worker now (it imports SQLAlchemy while the host buffers the first batch).

        A worker that cannot start is logged, not raised: the event being buffered is fine,
        and the next flush tries again and fails (to be retried) if it still cannot.
        """
        with self._lock:
            if self._conn is None:
                try:
                    self._spawn()
                except OSError as exc:
                    log.warning("sqlsync %s: cannot start the worker process: %s", self.label, exc)

    def wait_ready(self, timeout: float) -> bool:
        """Wait (up to ``timeout`` seconds) until the worker has started; True once it has."""
        with self._lock:
            return self._check_ready(timeout)

    def write(self, flat: Sequence[Any]) -> Optional[List[Rejected]]:
        """The sink's ``write`` in the worker: what the database refused, or :class:`WorkerFailed`.

        ``None``: the worker is still starting (importing SQLAlchemy takes a second or more on a
        busy host) and nothing was sent; the caller writes this batch itself. A flush is never
        held up by a worker's start, so a dispatcher is never late to renew its lease.
        """
        with self._lock:
            if self._conn is None:
                try:
                    self._spawn()
                except OSError as exc:
                    raise WorkerFailed("worker", f"cannot start the worker process: {exc}") from None
            if not self._check_ready(0):
                return None
            assert self._conn is not None
            try:
                self._conn.send_bytes(pickle.dumps(flat, protocol=pickle.HIGHEST_PROTOCOL))
                reply = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError) as exc:
                raise self._died(exc) from None
            for level, message in reply[-1]:
                log.log(level, "%s", message)
            if reply[0] == "ok":
                return reply[1]  # type: ignore[no-any-return]
            raise WorkerFailed(reply[1], reply[2])

    def _check_ready(self, timeout: float) -> bool:
        """Read the worker's start message if it came (within ``timeout``); hold the lock."""
        if self._ready or self._conn is None:
            return self._ready
        try:
            if not self._conn.poll(timeout):
                return False
            message = self._conn.recv_bytes()
        except (EOFError, OSError) as exc:
            raise self._died(exc) from None
        if message != READY:
            self._reap()
            raise WorkerFailed("worker", f"the worker process sent {message[:40]!r} instead of {READY!r}")
        self._ready = True
        return True

    def _died(self, exc: BaseException) -> WorkerFailed:
        code = self._reap()
        return WorkerFailed(
            "worker",
            f"the worker process exited ({_exit(code)}); a new one starts on the next flush"
            f" ({type(exc).__name__})",
        )

    def close(self) -> None:
        """Stop the worker: it finishes a write in progress, disposes of its engine and exits."""
        with self._lock:
            self._reap()

    def _spawn(self) -> None:
        parent, child = Pipe()
        boot = _BOOT.format(package=PACKAGE)
        here = str(Path(__file__).resolve().parent)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", boot, here, str(child.fileno())],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        self._conn = parent
        try:
            parent.send_bytes(
                pickle.dumps(
                    {"sys_path": list(sys.path), "nice": self.nice, "label": self.label, **self.settings}
                )
            )
        except OSError:
            self._reap()
            raise
        log.debug("sqlsync %s: worker process %d started", self.label, self._proc.pid)

    def _reap(self) -> Optional[int]:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ready = False
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("sqlsync %s: worker %d did not exit; killing it", self.label, self._proc.pid)
                self._proc.kill()
                code = self._proc.wait()
            self._proc = None
        return code


def _exit(code: Optional[int]) -> str:
    if code is None:
        return "exit status unknown"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


# --- the worker side --------------------------------------------------------------------------


class _Collect(logging.Handler):
    """Keeps the sink's log records of one write, for the parent to log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: List[Tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, self.format(record)))


def serve(fd: int) -> None:
    """The worker's loop: open the sink, then write each batch received until the parent closes.

    SIGINT and SIGTERM are ignored: a Ctrl-C or a service manager signals the whole process
    group, and the host then delivers what is left in its log (see ``SyncService.stop``),
    which needs its workers. A worker ends when its host closes the connection or dies.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        settings = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError):  # the host is gone (closed, or died: connection reset)
        return
    sys.path[:] = settings.pop("sys_path")
    nice = settings.pop("nice")
    from .sink import Sink, classify, describe

    collect = _Collect()
    root = logging.getLogger(PACKAGE)
    root.addHandler(collect)
    root.setLevel(logging.INFO)
    root.propagate = False
    sink = Sink(**settings)
    try:
        sink.engine  # noqa: B018 - the engine and its driver are loaded before we say we are ready
        if nice:  # after the start: the host writes our batches itself until we are ready
            os.nice(nice)
        try:
            conn.send_bytes(READY)
        except OSError:  # the host died while we started: nobody to tell
            return
        while True:
            try:
                flat = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):  # the host closed the connection, or died (reset)
                return
            collect.records = []
            reply: Tuple[Any, ...]
            try:
                reply = ("ok", sink.write(flat), collect.records)
            except Exception as exc:
                reply = ("error", classify(exc), describe(exc), collect.records)
            try:
                conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError:  # the host is gone: what was written stays, it re-delivers the rest
                return
    finally:
        sink.close()
