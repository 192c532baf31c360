"""Run the gateway: open the runtime, build the app, serve it with uvicorn until SIGINT/SIGTERM.

The listening socket is bound before the address is printed (port 0 picks a free one), so a
client may connect as soon as it reads the line. Connections are served by
:class:`~.transport.GatewayProtocol` (TCP_NODELAY, header/body/keep-alive deadlines, a connection
cap under the open-file limit, whose soft value is first raised to the hard one).

On SIGINT or SIGTERM plugin calls still waiting are answered at once (-32008, see
:mod:`.isolation`), uvicorn finishes the other requests in flight (up to ``SHUTDOWN_TIMEOUT``
seconds), then the runtime closes in reverse order: sync dispatchers stop (flushing cursors),
plugins' ``onShutdown`` run, the KV closes. A plugin call that never returned keeps its daemon
thread, which does not hold the process at exit.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterator, List, Optional, TextIO, Tuple

from ..config import HostConfig
from ..errors import ConfigError
from . import transport
from .app import RPC_PATH, build_app, is_loopback, parse_listen
from .auth import TokenStore
from .methods import Gate
from .protocol import Limits

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..runtime import Runtime
    from .isolation import PluginCalls

log = logging.getLogger(__name__)


@contextlib.contextmanager
def open_runtime(config: HostConfig, *, start_sync: bool = True) -> Iterator[Runtime]:
    """The lead's :class:`~sectorhooks.runtime.Runtime` (``.host``, ``.kv``, ``.state``, ``.sync``)."""
    from ..runtime import Runtime

    with Runtime.open(config, start_sync=start_sync, filestores=False) as rt:
        yield rt


@contextlib.contextmanager
def open_store(config: HostConfig) -> Iterator[Any]:
    """Just the host's KV store (KVStore plugins started, nothing else), for ``token`` commands."""
    from ..kv import kv_only

    if config.db is not None and config.db.plugin_name == "memdb":
        raise ConfigError(
            config.path,
            "Common.DB.Plugin.PluginName",
            "tokens kept in memdb vanish with this process",
            "use a persistent KV (sqlkv, rediskv) for API tokens",
        )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with kv_only(config) as kv:
        yield kv


def check_listen(listen: str, dev_mode: bool, where: str = "[Common.API] Listen") -> Tuple[str, int]:
    """``(host, port)`` of ``listen``; dev mode refuses a non-loopback address."""
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise ConfigError("", where, str(exc)) from None
    if dev_mode and not is_loopback(host):
        raise ConfigError(
            "",
            "Common.API.DevMode",
            f"dev mode lets callers in without a token, so it only binds to loopback; {host!r} is not",
            "listen on 127.0.0.1 / ::1, or set DevMode = false and use tokens",
        )
    return host, port


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one), ready before uvicorn starts.

    Made with ``IPPROTO_TCP`` spelled out: asyncio turns TCP_NODELAY on for accepted sockets only
    when the listening socket says it is TCP (the gateway's protocol sets it as well).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(transport.LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


#: Seconds uvicorn waits for requests in flight after SIGTERM/SIGINT before cancelling them.
SHUTDOWN_TIMEOUT = 10


def make_server(
    app: Starlette,
    log_level: str = "warning",
    before_shutdown: Optional[Callable[[], None]] = None,
    settings: Optional[transport.TransportSettings] = None,
) -> Any:
    """The uvicorn server every gateway runs: one process, h11 through :class:`.transport.GatewayProtocol`.

    ``settings`` (timeouts, connection cap; the defaults without it) come from
    :func:`.transport.plan`. ``before_shutdown()`` runs on the event loop when shutdown begins,
    before uvicorn waits for the requests in flight (the gateway answers its waiting plugin calls
    there). The server's :class:`.transport.ConnectionGuard` is its ``guard``.
    """
    import uvicorn

    settings = settings or transport.TransportSettings()
    protocol = transport.protocol_class(settings)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go through ours ([Common.Log], --log-format/--log-file)
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT,
        http=protocol,
        backlog=settings.accept_batch,  # asyncio accepts this many per loop turn: see transport.plan
    )
    hook = before_shutdown

    class Server(uvicorn.Server):
        guard = protocol.guard

        async def startup(self, sockets: Optional[List[socket.socket]] = None) -> None:
            await super().startup(sockets=sockets)
            # asyncio re-listened with the accept batch as backlog; the kernel queue may be longer.
            for sock in sockets or []:
                sock.listen(transport.LISTEN_BACKLOG)

        async def shutdown(self, sockets: Optional[List[socket.socket]] = None) -> None:
            if hook is not None:
                hook()
            await super().shutdown(sockets=sockets)

    return Server(config)


def _transport_settings(
    config: HostConfig, nofile: Optional[transport.OpenFiles]
) -> transport.TransportSettings:
    """Timeouts and the connection cap under the open-file limit, counting the files open now."""
    settings = transport.plan(config.api, nofile.soft if nofile else None, transport.open_fds())
    if nofile is not None and nofile.soft < transport.NOFILE_LOW:
        log.warning(
            "the open-file limit (RLIMIT_NOFILE) is %d (hard limit %d): the gateway takes at most %d "
            "connections at once and answers 503 beyond them; %s",
            nofile.soft,
            nofile.hard,
            settings.max_connections,
            nofile.advice(),
        )
    return settings


def _report_hung(calls: PluginCalls) -> None:
    hung = calls.hung()
    if hung:
        where = ", ".join(f"{s['namespace']} ({s['hung']})" for s in calls.stats() if s["hung"])
        log.warning("%d plugin call(s) still running at exit, their threads abandoned: %s", hung, where)


class _Stop(BaseException):
    """SIGTERM or SIGINT arrived (re-raised by uvicorn after its graceful shutdown)."""


def serve(
    config: HostConfig,
    listen: Optional[str] = None,
    *,
    gate_factory: Optional[Callable[[Runtime], Gate]] = None,
    limits: Optional[Limits] = None,
    out: TextIO = sys.stdout,
    runtime_factory: Optional[Callable[[HostConfig], ContextManager[Runtime]]] = None,
    log_level: str = "warning",
) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code (0 after a clean shutdown).

    ``gate_factory(runtime)`` builds the route gate for plugin namespaces (e.g. the registry's
    ``RouteGate(rt.kv)``); without it every loaded plugin namespace is served.
    """
    dev_mode = config.api.dev_mode
    host, port = check_listen(
        listen or config.api.listen, dev_mode, "--listen" if listen else "[Common.API] Listen"
    )
    # Our own handler for both signals until uvicorn installs its own (and after it restores
    # ours): with Python's default SIGINT handler, asyncio's runner would take a SIGINT that
    # arrives while uvicorn starts up, cancel the startup and leave the server running.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def _on_signal(signum: int, frame: Optional[types.FrameType]) -> None:
        for sig in previous:  # a second signal must not cut the shutdown short
            signal.signal(sig, signal.SIG_IGN)
        raise _Stop()

    for sig in previous:
        signal.signal(sig, _on_signal)
    try:
        nofile = transport.raise_open_file_limit()  # before plugins and pools open theirs
        opened = runtime_factory(config) if runtime_factory else open_runtime(config)
        with opened as rt:
            gate = gate_factory(rt) if gate_factory is not None else None
            app = build_app(rt, tokens=TokenStore(rt.kv), gate=gate, limits=limits, dev_mode=dev_mode)
            settings = _transport_settings(config, nofile)
            sock = bind(host, port)
            bound = sock.getsockname()
            shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            calls = app.state.plugin_calls
            server = make_server(app, log_level, before_shutdown=calls.close, settings=settings)
            mode = " (dev mode: loopback callers need no token)" if dev_mode else ""
            print(
                f"sectorhooks: serving JSON-RPC on http://{shown}:{bound[1]}{RPC_PATH}{mode}",
                file=out,
                flush=True,
            )
            for problem in app.state.registry.problems:
                print(f"sectorhooks: refused: {problem}", file=out, flush=True)
            try:
                server.run(sockets=[sock])
            finally:
                sock.close()
                _report_hung(calls)
            log.info("gateway stopped; shutting down plugins and sync")
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("sectorhooks: stopped", file=out, flush=True)
    return 0
