"""The gateway's HTTP transport: TCP_NODELAY, read deadlines and a connection cap under the file limit.

uvicorn's h11 protocol reads whatever arrives whenever it arrives: a client may take forever to
send its headers or body (slowloris), and a connection that never sends anything stays open for
good; only an idle keep-alive connection *after* a response has a timer. Every connection costs a
file descriptor, and once the process runs out, ``accept()`` fails with EMFILE and every new
client is locked out. :class:`GatewayProtocol` (a small subclass of uvicorn's ``H11Protocol``,
chosen by :func:`protocol_class`) closes those gaps where the bytes arrive, on the event loop,
with one timer per connection and no task of its own:

* ``TCP_NODELAY`` on every accepted TCP socket (IPv4 and IPv6): a response goes out in two
  writes (head, body) and without it the second waits for the client's delayed ACK (~40 ms).
* one deadline at a time, for the phase the connection is in (from h11's state after each read):
  ``headers`` from the connection's start, or from the first byte of the next request on a
  kept-alive connection (``[Common.API] HeaderTimeout``); ``body`` from the end of the headers to
  the end of the body (``BodyTimeout``); ``idle`` between requests (``KeepAliveTimeout``, replacing
  uvicorn's own timer). Bytes that trickle in never move a deadline. While the application runs,
  no read deadline applies (``CallTimeout`` bounds plugin calls). A request cut short gets a 408
  with a JSON-RPC error naming the key; an idle connection is just closed.
* a cap on open connections (:func:`plan`): ``MaxConnections``, or what the open-file limit leaves
  after the descriptors already open, a spare share for files and database connections, and room
  for one accept burst. A connection beyond it is answered at once with 503 and a JSON-RPC error
  saying why, its write side shut and what it sends drained for up to :data:`LINGER` seconds (so
  the answer is not lost to a reset), then closed.

:func:`raise_open_file_limit` lifts the soft ``RLIMIT_NOFILE`` to the hard limit at start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Optional, Type

import attrs
import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import OpenFileLimitError
from . import protocol as p

if TYPE_CHECKING:
    from ..config import APIConfig

log = logging.getLogger(__name__)

#: Kernel queue of connections not yet accepted (no file descriptors: the kernel holds them).
LISTEN_BACKLOG = 2048
#: Below this many open files (after raising the soft limit) serve logs a warning.
NOFILE_LOW = 4096
#: Seconds a refused connection is drained after its 503, so the client reads it rather than a reset.
LINGER = 1.0
#: Fewest connections worth serving; a tighter open-file limit is an error at start.
MIN_CONNECTIONS = 16
#: Seconds between two warnings about refused connections (the count in between is summed).
REFUSAL_LOG_INTERVAL = 10.0

IDLE, HEADERS, BODY = "idle", "headers", "body"
_KEYS = {IDLE: "KeepAliveTimeout", HEADERS: "HeaderTimeout", BODY: "BodyTimeout"}


@attrs.frozen
class OpenFiles:
    """The process's ``RLIMIT_NOFILE`` after :func:`raise_open_file_limit`; ``before`` is the old soft one."""

    soft: int
    hard: int
    before: int

    def advice(self) -> str:
        """How to raise the limit, for log lines and errors."""
        want = max(NOFILE_LOW * 16, self.soft)
        return (
            f"raise it: LimitNOFILE={want} in the systemd unit, or `ulimit -n {want}` (the hard limit "
            f"too if needed: `ulimit -Hn {want}` as root) in the shell that starts `sectorhooks serve`"
        )


def raise_open_file_limit() -> Optional[OpenFiles]:
    """Lift the soft ``RLIMIT_NOFILE`` to the hard limit; ``None`` where there is no such limit."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    # An "unlimited" hard limit is still capped by the kernel (fs.nr_open on Linux, OPEN_MAX on macOS).
    wanted = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 1 << 16, 10240]
    for target in wanted if soft != resource.RLIM_INFINITY else []:
        if target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.debug("could not raise RLIMIT_NOFILE to %d: %s", target, exc)
            continue
        soft = target
        break
    if soft == resource.RLIM_INFINITY:  # plan as if it were the largest a kernel allows
        soft = 1 << 20
    limit = OpenFiles(soft=soft, hard=hard if hard != resource.RLIM_INFINITY else soft, before=before)
    if soft != before:
        log.info("raised the open-file limit (RLIMIT_NOFILE) from %d to %d", before, soft)
    return limit


def open_fds() -> int:
    """File descriptors this process has open now (0 where the OS does not list them)."""
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            return max(0, len(os.listdir(listing)) - 1)  # listdir's own descriptor
        except OSError:
            continue
    return 0


@attrs.frozen
class TransportSettings:
    """What :class:`GatewayProtocol` enforces; made by :func:`plan`."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1024
    accept_batch: int = 64  # connections asyncio accepts per loop turn (its create_server ``backlog``)
    refuse_slots: int = 64  # refused connections lingering at once; beyond them one is closed at once
    cap_source: str = "[Common.API] MaxConnections"

    def timeout(self, phase: str) -> float:
        return {IDLE: self.keep_alive_timeout, HEADERS: self.header_timeout, BODY: self.body_timeout}[phase]


def plan(api: APIConfig, nofile: Optional[int], in_use: int) -> TransportSettings:
    """The transport for ``api`` (an :class:`~sectorhooks.config.APIConfig`) under ``nofile`` open files.

    The cap leaves room, below the limit, for the ``in_use`` descriptors already open, a spare share
    (1/32 of the limit, at least 64) for what plugins and database pools open later, and up to four
    accept bursts: asyncio accepts ``accept_batch`` sockets per loop turn before their protocols
    count them, a few turns may pass before an over-the-cap one is closed, and ``refuse_slots``
    refused ones may linger. Raises :class:`OpenFileLimitError` when fewer than
    :data:`MIN_CONNECTIONS` fit.
    """
    timeouts = TransportSettings(
        header_timeout=float(api.header_timeout),
        body_timeout=float(api.body_timeout),
        keep_alive_timeout=float(api.keep_alive_timeout),
    )
    wanted = int(api.max_connections)
    if nofile is None:  # no descriptor limit to keep under
        cap = wanted or 4096
        batch = min(2048, max(16, cap // 32))
        return attrs.evolve(timeouts, max_connections=cap, accept_batch=batch, refuse_slots=batch)
    spare = max(64, nofile // 32)
    available = nofile - in_use - spare
    batch = min(2048, max(8, available // 32))
    fits = available - 4 * batch
    if fits < MIN_CONNECTIONS:
        raise OpenFileLimitError(nofile, in_use, max(fits, 0), MIN_CONNECTIONS)
    source = f"[Common.API] MaxConnections = 0: derived from the open-file limit {nofile}"
    cap = fits
    if wanted:
        if wanted > fits:
            log.warning(
                "[Common.API] MaxConnections = %d does not fit under the open-file limit %d (%d already "
                "open): serving at most %d connections; raise the limit (LimitNOFILE in systemd, "
                "ulimit -n) or lower MaxConnections",
                wanted,
                nofile,
                in_use,
                fits,
            )
            source = f"[Common.API] MaxConnections, lowered to fit the open-file limit {nofile}"
        else:
            cap, source = wanted, "[Common.API] MaxConnections"
    return attrs.evolve(
        timeouts, max_connections=cap, accept_batch=batch, refuse_slots=batch, cap_source=source
    )


def error_bytes(status: int, reason: str, code: int, message: str, headers: str = "") -> bytes:
    """A complete ``connection: close`` HTTP/1.1 response carrying a JSON-RPC error object."""
    body = p.encode(p.error_response(p.RpcError(code, message)))
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{headers}\r\n"
    )
    return head.encode("ascii") + body


def set_nodelay(transport: asyncio.BaseTransport) -> bool:
    """Turn Nagle's algorithm off on ``transport``'s socket when it is TCP; whether it was set."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # the peer is already gone
        return False
    return True


class ConnectionGuard:
    """State shared by one server's connections: the settings, lingering refusals and counters."""

    def __init__(self, settings: TransportSettings):
        self.settings = settings
        self.lingering = 0
        self.counts: Dict[str, int] = {"refused": 0, IDLE: 0, HEADERS: 0, BODY: 0}
        self._unlogged = self._open_now = 0
        self._logged_at = -REFUSAL_LOG_INTERVAL
        self._flush: Optional[asyncio.TimerHandle] = None

    def refused(self, open_now: int) -> None:
        """Count one refusal; warn at once, then at most every :data:`REFUSAL_LOG_INTERVAL` seconds."""
        self.counts["refused"] += 1
        self._unlogged += 1
        self._open_now = open_now
        wait = self._logged_at + REFUSAL_LOG_INTERVAL - time.monotonic()
        if wait <= 0:
            self._log_refusals()
        elif self._flush is None:  # sum the ones to come into one line when the interval is over
            self._flush = asyncio.get_running_loop().call_later(wait, self._log_refusals)

    def _log_refusals(self) -> None:
        self._flush = None
        if self._unlogged:
            s = self.settings
            log.warning(
                "refused %d connection(s) with 503: %d open, the most the gateway takes (%d, %s)",
                self._unlogged,
                self._open_now,
                s.max_connections,
                s.cap_source,
            )
        self._unlogged, self._logged_at = 0, time.monotonic()

    def stats(self) -> Dict[str, int]:
        """Refused connections and connections closed by each deadline since start."""
        return {**self.counts, "lingering": self.lingering}


class GatewayProtocol(H11Protocol):
    """uvicorn's h11 protocol with TCP_NODELAY, per-phase read deadlines and the connection cap."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: Optional[str] = None
        self._deadline: Optional[asyncio.TimerHandle] = None
        self._got_bytes = False  # bytes of the current request arrived (headers phase)
        self._refused = False

    # --- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        open_now = len(self.server_state.connections)
        if open_now >= self.guard.settings.max_connections:
            self._refuse(transport, open_now)
            return
        super().connection_made(transport)
        self._enter(HEADERS)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # drained: the 503 is on its way and the write side is shut
        if self._phase == IDLE:
            self._enter(HEADERS)  # the next request's clock starts with its first byte
        self._got_bytes = True
        super().data_received(data)
        self._follow()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._cancel()
        self._phase = None
        if self._refused:
            self.guard.lingering -= 1
            return
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        if not self._refused:
            super().pause_writing()

    def resume_writing(self) -> None:
        if not self._refused:
            super().resume_writing()

    # --- uvicorn hooks -------------------------------------------------------------------------
    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()  # our idle deadline replaces uvicorn's keep-alive timer
        self._follow(after_response=True)

    # --- deadlines -------------------------------------------------------------------------------
    def _follow(self, after_response: bool = False) -> None:
        """Move to the phase h11's state says the connection is in (a phase's clock never restarts)."""
        state = self.conn.their_state
        if state is h11.IDLE:
            if after_response or self._phase != HEADERS:  # between requests: idle until a byte comes
                pending = bool(self.conn.trailing_data[0])
                self._enter(HEADERS if pending else IDLE)
                self._got_bytes = pending
        elif state is h11.SEND_BODY:
            if self._phase != BODY:
                self._enter(BODY)
        else:  # the whole request is in (or the connection is ending): the application has it
            self._cancel()
            self._phase = None

    def _enter(self, phase: str) -> None:
        self._cancel()
        self._phase = phase
        if phase != HEADERS:
            self._got_bytes = False
        self._deadline = self.loop.call_later(self.guard.settings.timeout(phase), self._expired)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        phase = self._phase
        if phase is None or self.transport.is_closing():
            return
        if phase == BODY and self.flow.read_paused:
            # uvicorn stopped reading because the application has not taken what came: not the
            # client's delay. Give the client a full period again once reading resumes.
            self._enter(BODY)
            return
        seconds = self.guard.settings.timeout(phase)
        self.guard.counts[phase] += 1
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.debug("closing connection from %s: %s not complete after %gs", client, phase, seconds)
        answer = phase == BODY or (phase == HEADERS and self._got_bytes)
        if phase == BODY and self.cycle is not None:
            answer = not self.cycle.response_started
            self.cycle.disconnected = True  # the application's receive() sees http.disconnect
            self.cycle.message_event.set()
        if answer:
            what = "request headers" if phase == HEADERS else "request body"
            self.transport.write(
                error_bytes(
                    408,
                    "Request Timeout",
                    p.INVALID_REQUEST,
                    f"Invalid Request: the {what} did not arrive within {seconds:g}s "
                    f"([Common.API] {_KEYS[phase]})",
                )
            )
        self.transport.close()

    # --- over the cap --------------------------------------------------------------------------
    def _refuse(self, transport: asyncio.Transport, open_now: int) -> None:
        self._refused = True
        self.transport = transport
        guard, s = self.guard, self.guard.settings
        guard.lingering += 1
        guard.refused(open_now)
        transport.write(
            error_bytes(
                503,
                "Service Unavailable",
                p.SERVER_ERROR,
                f"Server busy: {open_now} connections are open, the most this gateway takes "
                f"({s.max_connections}, {s.cap_source}); retry later",
                "retry-after: 1\r\n",
            )
        )
        if guard.lingering > s.refuse_slots or not transport.can_write_eof():
            transport.close()  # no room to linger: the answer is flushed, then the socket closed
            return
        transport.write_eof()  # the client sees the end of the answer; we drain what it sends
        self._deadline = self.loop.call_later(min(LINGER, s.header_timeout), transport.close)


def protocol_class(settings: TransportSettings) -> Type[GatewayProtocol]:
    """A :class:`GatewayProtocol` subclass bound to a fresh :class:`ConnectionGuard` for one server."""
    return type("GatewayProtocol", (GatewayProtocol,), {"guard": ConnectionGuard(settings)})
