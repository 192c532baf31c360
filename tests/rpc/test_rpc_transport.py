"""The gateway's transport (issue #17 item 1): TCP_NODELAY, read deadlines, the connection cap.

Most tests run the real ``sectorhooks serve`` (memdb, DevMode on loopback) and talk raw HTTP/1.1
over sockets, so that they control exactly when each byte goes out. Deadlines are waited on with
a socket timeout as the upper bound; the lower bound (not closed before the configured time) is
always safe to assert, the server cannot be early on a slow machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest

from rpc.servekit import Served, write_config
from sectorhooks.config import APIConfig
from sectorhooks.errors import OpenFileLimitError
from sectorhooks.rpc import transport
from sectorhooks.rpc.protocol import INVALID_REQUEST, SERVER_ERROR
from sectorhooks.rpc.server import bind, make_server
from support import wait_for

MEMDB_DEV = '[Common.DB]\nDriver = "plugin"\n[Common.DB.Plugin]\nPluginName = "memdb"\n'
INCR = b'{"jsonrpc":"2.0","method":"AtomicCounter.Incr","params":["t",1],"id":1}'
#: Upper bound when waiting for the server to act (a deadline, not a measure of speed).
PATIENCE = 15.0


def config(root: Path, **api: Any) -> Path:
    keys = "".join(f"{k} = {v}\n" for k, v in {"DevMode": "true", **api}.items())
    return write_config(root, MEMDB_DEV + "[Common.API]\n" + keys)


def served_at(root: Path, listen: str = "127.0.0.1:0", **api: Any) -> Served:
    return Served(config(root, **api), listen=listen)


def address(server: Served) -> Tuple[str, int]:
    host, _, port = server.origin.removeprefix("http://").rpartition(":")
    return host.strip("[]"), int(port)


def post(body: bytes = INCR, close: bool = False) -> bytes:
    extra = b"connection: close\r\n" if close else b""
    head = b"POST /rpc/v0 HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
    return head + extra + b"content-length: %d\r\n\r\n" % len(body) + body


def read_response(sock: socket.socket, timeout: float = PATIENCE) -> Tuple[int, bytes]:
    """(status, body) of one response (content-length framed); raises on timeout."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed in the body after {body!r}")
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def wait_closed(sock: socket.socket, timeout: float = PATIENCE) -> bytes:
    """Everything the server sends until it closes the connection (fails at the deadline)."""
    deadline = time.monotonic() + timeout
    got = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"still open after {timeout}s, got {got!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk


def error_of(response: bytes) -> dict:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return json.loads(body)["error"]  # type: ignore[no-any-return]


# --- TCP_NODELAY ------------------------------------------------------------------------------
def test_bind_makes_a_tcp_socket_so_asyncio_sets_nodelay_too() -> None:
    for host in ("127.0.0.1", "::1"):
        sock = bind(host, 0)
        try:
            assert sock.proto == socket.IPPROTO_TCP
        finally:
            sock.close()


class InProcess:
    """``make_server`` on a pre-bound socket, its event loop on a thread of this process."""

    def __init__(self, sock: socket.socket, settings: Optional[transport.TransportSettings] = None):
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        self.sock = sock
        self.server = make_server(app, settings=settings)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        assert wait_for(lambda: self.server.started, PATIENCE, fail=False), "in-process server did not start"

    def accepted(self) -> List[socket.socket]:
        """The server side of every open connection (the protocols' transports' sockets)."""
        return [c.transport.get_extra_info("socket") for c in list(self.server.server_state.connections)]

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(PATIENCE)
        self.sock.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_protocol_sets_nodelay_on_accepted_sockets_even_when_the_listener_is_not_marked_tcp(
    host: str,
) -> None:
    # The listening socket of the bug: no IPPROTO_TCP, so asyncio's own nodelay does not apply
    # and the accepted sockets would keep Nagle on; the protocol must set it itself.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(16)
    served = InProcess(listener)
    try:
        with socket.create_connection(listener.getsockname()[:2]) as client:
            client.sendall(post())
            assert read_response(client)[0] == 200
            (accepted,) = served.accepted()
            assert accepted.proto == 0  # the guard above really is the case asyncio skips
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        served.close()


def _server_socket_of(pid: int, server_port: int, client_port: int) -> socket.socket:
    """A duplicate of ``pid``'s socket for the connection between the ports (Linux pidfd_getfd)."""
    inode = ""
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}", encoding="ascii") as f:
            for line in list(f)[1:]:
                cols = line.split()
                local, remote = int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16)
                if (local, remote) == (server_port, client_port):
                    inode = cols[9]
    assert inode, f"no socket {server_port}<->{client_port} in /proc/{pid}/net"
    fds = [
        fd
        for fd in os.listdir(f"/proc/{pid}/fd")
        if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]"
    ]
    assert fds, f"socket inode {inode} not among the server's descriptors"
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        got = libc.syscall(438, pidfd, int(fds[0]), 0)  # SYS_pidfd_getfd (same number on every arch)
    finally:
        os.close(pidfd)
    if got < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM, errno.EACCES):
            pytest.skip(f"pidfd_getfd unavailable here: {os.strerror(err)} (the in-process test covers it)")
        raise OSError(err, os.strerror(err))
    return socket.socket(fileno=got)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfd_open")
@pytest.mark.parametrize("listen", ["127.0.0.1:0", "[::1]:0"])
def test_serve_sets_nodelay_on_the_accepted_connection(tmp_path: Path, listen: str) -> None:
    server = served_at(tmp_path, listen)
    try:
        host, port = address(server)
        with socket.create_connection((host, port)) as client:
            client.sendall(post())
            assert read_response(client)[0] == 200
            with _server_socket_of(server.proc.pid, port, client.getsockname()[1]) as theirs:
                assert theirs.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        assert server.stop() == 0, server.output()


# --- deadlines --------------------------------------------------------------------------------
HEADER, BODY, KEEP_ALIVE = 1.0, 1.5, 0.5  # distinct, so the time a close takes tells which fired


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("timeouts")
    server = served_at(root, HeaderTimeout=HEADER, BodyTimeout=BODY, KeepAliveTimeout=KEEP_ALIVE)
    yield server
    assert server.stop() == 0, server.output()


def trickle(sock: socket.socket, data: bytes, every: float = 0.1) -> Tuple[bytes, float]:
    """Send ``data`` a byte at a time until the server closes; (what it sent back, seconds taken)."""
    start = time.monotonic()
    got = b""
    for i in range(len(data)):
        assert time.monotonic() - start < PATIENCE, "the server never closed a trickling connection"
        try:
            sock.sendall(data[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        ready, _, _ = select.select([sock], [], [], every)
        if ready:
            got += wait_closed(sock)
            break
    return got, time.monotonic() - start


def test_slowloris_headers_a_byte_at_a_time_get_408_after_the_header_timeout(timed: Served) -> None:
    headers = b"POST /rpc/v0 HTTP/1.1\r\nhost: t\r\n" + b"x-pad: %s\r\n" % (b"a" * 400) + b"\r\n"
    with socket.create_connection(address(timed)) as sock:
        got, took = trickle(sock, headers)
    # each byte came well within any per-read timeout: only a deadline that bytes never move closes it
    assert got.startswith(b"HTTP/1.1 408 "), got
    err = error_of(got)
    assert err["code"] == INVALID_REQUEST and "HeaderTimeout" in err["message"] and "1s" in err["message"]
    assert took >= HEADER - 0.05


def test_body_sent_a_byte_at_a_time_gets_408_after_the_body_timeout(timed: Served) -> None:
    with socket.create_connection(address(timed)) as sock:
        head = post(INCR * 20)
        sock.sendall(head[: head.index(b"\r\n\r\n") + 4])
        got, took = trickle(sock, INCR * 20)
    assert got.startswith(b"HTTP/1.1 408 "), got
    err = error_of(got)
    assert err["code"] == INVALID_REQUEST and "BodyTimeout" in err["message"]
    assert took >= BODY - 0.05


def test_connection_that_never_sends_is_closed_after_the_header_timeout(timed: Served) -> None:
    start = time.monotonic()
    with socket.create_connection(address(timed)) as sock:
        assert wait_closed(sock) == b""  # nothing was asked: nothing to answer, just closed
    assert time.monotonic() - start >= HEADER - 0.05


def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(timed: Served) -> None:
    with socket.create_connection(address(timed)) as sock:
        sock.sendall(post())
        assert read_response(sock)[0] == 200
        start = time.monotonic()
        assert wait_closed(sock) == b""
    assert time.monotonic() - start >= KEEP_ALIVE - 0.05


def test_requests_in_pieces_and_back_to_back_on_one_connection_are_served(timed: Served) -> None:
    with socket.create_connection(address(timed)) as sock:
        request = post()
        for piece in (request[:7], request[7:40], request[40:-3], request[-3:]):
            sock.sendall(piece)
        assert read_response(sock)[0] == 200
        sock.sendall(post() + post())  # pipelined: both answered, in order
        first, second = read_response(sock), read_response(sock)
        assert first[0] == second[0] == 200
        assert json.loads(second[1])["result"] == json.loads(first[1])["result"] + 1


def test_server_still_serves_after_its_deadlines_fired(timed: Served) -> None:
    with socket.create_connection(address(timed)) as sock:
        sock.sendall(post(close=True))
        status, body = read_response(sock)
    assert status == 200 and "result" in json.loads(body)
    assert timed.alive()


# --- the connection cap -----------------------------------------------------------------------
def test_connections_beyond_max_connections_get_a_503_saying_why(tmp_path: Path) -> None:
    server = served_at(tmp_path, MaxConnections=3, HeaderTimeout=60)
    held: List[socket.socket] = []
    try:
        where = address(server)
        held = [socket.create_connection(where) for _ in range(3)]
        held[0].sendall(post())
        assert read_response(held[0])[0] == 200  # the three are being served
        with socket.create_connection(where) as fourth:
            fourth.sendall(post())
            status, body = read_response(fourth)
            assert wait_closed(fourth) == b""
        assert status == 503
        err = json.loads(body)["error"]
        assert err["code"] == SERVER_ERROR
        assert "3 connections are open" in err["message"] and "MaxConnections" in err["message"]
        held.pop().close()

        def served_again() -> bool:
            with socket.create_connection(where) as sock:
                sock.sendall(post())
                return read_response(sock)[0] == 200

        assert wait_for(served_again, PATIENCE, fail=False), server.output()
        assert "refused 1 connection(s) with 503" in server.output()
    finally:
        for sock in held:
            sock.close()
        assert server.stop() == 0, server.output()


def _nofile_1024() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@contextlib.contextmanager
def _own_nofile_raised() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_at_1024_open_files_2000_idle_connections_never_lock_a_new_client_out(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:  # servekit's Popen, with the service's limit in the child
        mp.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=_nofile_1024))
        server = Served(config(tmp_path, HeaderTimeout=60))
    idle: List[socket.socket] = []
    try:
        with _own_nofile_raised() as ours:
            where = address(server)
            for _ in range(min(2000, ours - 64)):  # as many as this process may hold
                idle.append(socket.create_connection(where))
            assert len(idle) > 1024, f"this process may open only {ours} files"

            with socket.create_connection(where) as newcomer:
                newcomer.sendall(post())
                status, body = read_response(newcomer, timeout=1.0)
            assert status in (200, 503), body
            if status == 503:
                err = json.loads(body)["error"]
                assert "open-file limit 1024" in err["message"] and "retry later" in err["message"]

            # every idle connection is either held by the server or was refused with a 503
            poller = select.poll()
            for sock in idle:
                poller.register(sock, select.POLLIN)
            answered = {fd for fd, _ in poller.poll(0)}
            refused = [s for s in idle if s.fileno() in answered]
            assert refused, "2000 connections under a 1024-file limit and none refused"
            assert len(idle) - len(refused) < 1024 - 64
            assert wait_closed(refused[-1]).startswith(b"HTTP/1.1 503 ")
        for sock in idle:
            sock.close()
        idle.clear()

        def served() -> bool:
            with socket.create_connection(where) as sock:
                sock.sendall(post(close=True))
                return read_response(sock)[0] == 200

        assert wait_for(served, PATIENCE, fail=False), server.output()
        out = server.output()
        assert "RLIMIT_NOFILE) is 1024" in out and "LimitNOFILE" in out and "ulimit -n" in out
        assert "out of system resource" not in out and "Too many open files" not in out, out
    finally:
        for sock in idle:
            sock.close()
        assert server.stop() == 0, server.output()


# --- the plan ---------------------------------------------------------------------------------
def test_plan_keeps_connections_and_accept_bursts_under_the_open_file_limit() -> None:
    s = transport.plan(APIConfig(), 1024, 40)
    assert 512 < s.max_connections < 1024 - 40
    spare = 64
    assert 40 + spare + s.max_connections + 4 * s.accept_batch <= 1024
    assert s.refuse_slots == s.accept_batch
    assert "open-file limit 1024" in s.cap_source
    big = transport.plan(APIConfig(), 1 << 20, 40)
    assert big.accept_batch == 2048 and big.max_connections > 900_000


def test_plan_takes_max_connections_when_it_fits_and_lowers_it_when_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert transport.plan(APIConfig(max_connections=100), 1024, 40).max_connections == 100
    lowered = transport.plan(APIConfig(max_connections=5000), 1024, 40)
    assert lowered.max_connections < 1024 and "lowered" in lowered.cap_source
    assert "MaxConnections = 5000 does not fit under the open-file limit 1024" in caplog.text


def test_plan_refuses_an_open_file_limit_that_leaves_no_room() -> None:
    with pytest.raises(OpenFileLimitError) as info:
        transport.plan(APIConfig(), 128, 50)
    assert "RLIMIT_NOFILE" in str(info.value) and "LimitNOFILE" in str(info.value)


def test_plan_carries_the_timeouts() -> None:
    api = APIConfig(header_timeout=2, body_timeout=3, keep_alive_timeout=4)
    s = transport.plan(api, 65536, 10)
    assert (s.timeout("headers"), s.timeout("body"), s.timeout("idle")) == (2.0, 3.0, 4.0)


def test_raise_open_file_limit_lifts_the_soft_limit_to_the_hard_one() -> None:
    def low_soft() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))

    code = (
        "import resource; from sectorhooks.rpc.transport import raise_open_file_limit as r; "
        "got = r(); print(got.before, got.soft, got.hard, *resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=low_soft, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["256", "2048", "2048", "2048", "2048"]
