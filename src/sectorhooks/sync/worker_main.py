"""The worker side of a plugin worker process (see :mod:`sectorhooks.sync.worker`).

Started by the host as ``python -c <boot> CONN_FD PAGE_FD SYS_PATH``: loads the one plugin it is
told to (through the host's own loader, from the same manifest), runs its ``onInit``, then answers
the host's requests until the host closes the pipe, asks it to quit, or dies.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Tuple

from sectorhooks_spec import SyncerInstance
from sectorhooks_spec.kinds import Kind

from .worker import CALL, FLUSH_OP, HEARTBEAT, IDLE, IN_FLUSH, IN_HOOK, PAGE, QUIT, unpack_events

if TYPE_CHECKING:
    from ..host import PluginHost
    from .runners import InProcessRunner

log = logging.getLogger(__name__)


class _Collect(logging.Handler):
    """Keeps log records until the next reply carries them to the host."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._records: List[Tuple[int, str, str]] = []
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        except Exception:  # a bad format string must not take the worker down
            text = str(record.msg)
        with self._mutex:
            self._records.append((record.levelno, record.name, text))

    def take(self) -> List[Tuple[int, str, str]]:
        with self._mutex:
            out, self._records = self._records, []
        return out


def _heartbeat(page: mmap.mmap, parent: int) -> None:
    """Beat every HEARTBEAT seconds; exit at once when the host is gone (we were re-parented)."""
    while True:
        if os.getppid() != parent:
            os._exit(0)
        PAGE.pack_into(page, 0, *PAGE.unpack_from(page, 0)[:3], time.monotonic())
        time.sleep(HEARTBEAT)


def _load(init: Mapping[str, Any]) -> Tuple[PluginHost, InProcessRunner]:
    """The plugin loaded and started as the host does, and the syncer's in-process runner."""
    from ..config import HostConfig, PluginsConfig
    from ..host import CALLABLE_STATUSES, PluginHost
    from ..loader import Candidate
    from .runners import InProcessRunner
    from .syncers import bind_syncer

    name = init["plugin"]
    config = HostConfig(
        path="<worker>",
        data_dir=Path(init["data_dir"]),
        plugins=PluginsConfig(bundled=False, entry_points=False, config={name: init["config"]}),
    )
    host = PluginHost(config)
    record = host.add(Candidate(**init["candidate"]), check_requires=False)
    if record.status in CALLABLE_STATUSES:
        host.start(kinds=[Kind.SYNC_SECTOR_STATE])
    if record.status not in CALLABLE_STATUSES:
        raise RuntimeError(record.error or f"plugin {name!r} is {record.status}")
    instance = SyncerInstance(init["syncer"], name, init["meta"])
    syncer = bind_syncer(host, instance, f"worker of syncer {init['syncer']!r}")
    if syncer.unavailable:
        raise RuntimeError(syncer.unavailable)
    return host, InProcessRunner(syncer)


def main(conn_fd: int, page_fd: int) -> None:
    """Serve the host until it closes the pipe, says quit, or dies."""
    # A Ctrl-C or a service manager signals the whole process group; the host decides when we stop.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    conn = Connection(conn_fd)
    page = mmap.mmap(page_fd, PAGE.size)
    os.close(page_fd)
    parent = os.getppid()
    threading.Thread(target=_heartbeat, args=(page, parent), name="heartbeat", daemon=True).start()
    try:
        init = json.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return
    collect = _Collect()
    root = logging.getLogger()
    root.handlers[:] = [collect]
    root.setLevel(int(init.get("log_level", logging.WARNING)))
    try:
        host, runner = _load(init)
    except BaseException as exc:
        _send(conn, {"error": f"{type(exc).__name__}: {exc}", "logs": collect.take()})
        return
    if init.get("nice"):  # after the start: loading the plugin is not held back
        os.nice(int(init["nice"]))
    if not _send(conn, {"ready": True, "pid": os.getpid(), "logs": collect.take()}):
        return
    try:
        _serve(conn, page, runner, collect)
    finally:
        host.shutdown()


def _serve(conn: Connection, page: mmap.mmap, runner: InProcessRunner, collect: _Collect) -> None:
    from ..changelog import parse
    from .runners import rejected_to_json

    def mark(seq: int) -> None:  # the host reads which event's hook runs, and since when
        now = time.monotonic()
        PAGE.pack_into(page, 0, IN_HOOK, seq, now, now)

    runner.mark = mark

    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):  # the host closed the pipe, or died
            return
        op = message[:1]
        reply: Dict[str, Any]
        if op == CALL:
            events = [parse(seq, raw) for seq, raw in unpack_events(memoryview(message)[1:])]
            failure = runner.call(events, 0, len(events))
            reply = {"ok": True}
            if failure is not None:
                reply = {"failed": failure.index, "kind": failure.kind, "error": failure.error}
        elif op == FLUSH_OP:
            PAGE.pack_into(page, 0, IN_FLUSH, -1, time.monotonic(), time.monotonic())
            result = runner.flush()
            if result.failure is not None:
                reply = {"error": result.failure.error}
            else:
                reply = {"rejected": rejected_to_json(result.rejected)}
        elif op == QUIT:
            return
        else:
            reply = {"error": f"unknown request {op!r}"}
        PAGE.pack_into(page, 0, IDLE, 0, time.monotonic(), time.monotonic())
        reply["logs"] = collect.take()
        if not _send(conn, reply):
            return


def _send(conn: Connection, reply: Dict[str, Any]) -> bool:
    try:
        conn.send_bytes(json.dumps(reply, default=str).encode("utf-8"))
        return True
    except OSError:  # the host is gone
        return False
