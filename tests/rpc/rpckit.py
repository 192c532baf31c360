"""Helpers for the RPC tests: write RegisterJsonRpc plugins, run bodies through a registry."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import httpx

from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost
from sectorhooks.rpc import RPC_PATH
from sectorhooks.rpc.auth import CallContext
from sectorhooks.rpc.methods import MethodRegistry
from sectorhooks.rpc.protocol import Engine


def write_rpc_plugin(
    root: Path, name: str, body: str, *, on_shutdown: bool = False, on_init: bool = False
) -> Path:
    """A RegisterJsonRpc plugin dir ``root/name`` whose module defines ``handler()`` (+ lifecycle)."""
    d = root / name
    d.mkdir(parents=True)
    lines = [f'name = "{name}"', 'kind = "RegisterJsonRpc"', f'module = "{name}"', 'version = "1.0.0"']
    if on_init:
        lines.append('onInit = "setup"')
    if on_shutdown:
        lines.append('onShutdown = "close"')
    lines.append('export = [{ extPoint = "Handler", impl = "handler" }]')
    (d / "manifest.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return d


def plugin_host(*dirs: Path) -> PluginHost:
    """A started host that sees only the plugins under ``dirs`` (no bundled, no entry points)."""
    cfg = HostConfig(plugins=PluginsConfig(dirs=tuple(dirs), bundled=False, entry_points=False))
    return PluginHost(cfg).load().start()


def call(
    registry: MethodRegistry,
    method: str,
    params: Any = None,
    perm: str = "admin",
    ctx: Optional[CallContext] = None,
) -> Any:
    """One request through an Engine over ``registry``; the decoded response object."""
    body: dict = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        body["params"] = params
    engine = Engine(registry.dispatch)
    out = asyncio.run(engine.handle(json.dumps(body).encode(), ctx or CallContext(perm)))
    return json.loads(out)


def result(resp: Any) -> Any:
    """The result of a response, failing loudly with the error when there is none."""
    assert "result" in resp, f"expected a result, got {resp}"
    return resp["result"]


def code(resp: Any) -> int:
    """The error code of a response, failing loudly when it succeeded."""
    assert "error" in resp, f"expected an error, got {resp}"
    return resp["error"]["code"]  # type: ignore[no-any-return]


#: A RegisterJsonRpc plugin for end-to-end tests: echo, crash, async; onShutdown appends to a marker.
PROBE = """
import asyncio

MARKER = {"path": None}


def setup(config, kvstore):
    MARKER["path"] = config.get("marker")


def close():
    if MARKER["path"]:
        with open(MARKER["path"], "a", encoding="utf-8") as f:
            f.write("shutdown\\n")


class Probe:
    __sectorhooks_perms__ = {"Echo": "read"}

    def Echo(self, *args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    def Crash(self, note: str = ""):
        raise RuntimeError("internal detail: password=hunter2 " + note)

    async def Async(self, x=None):
        await asyncio.sleep(0)
        return x


def handler():
    return "Probe", Probe()
"""


def write_probe(root: Path, name: str = "probe") -> Path:
    """Write the probe plugin under ``root``; returns ``root`` (a plugin directory to configure)."""
    write_rpc_plugin(root, name, PROBE, on_init=True, on_shutdown=True)
    return root


class AsgiClient:
    """Synchronous calls into an ASGI app through httpx, on one private event loop (fast for fuzzing)."""

    def __init__(self, app: Any, client: Tuple[str, int] = ("127.0.0.1", 40000)):
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, client=client)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://gateway")

    def post(
        self, body: bytes, token: Optional[str] = None, path: str = RPC_PATH, **kw: Any
    ) -> httpx.Response:
        headers: Dict[str, str] = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.loop.run_until_complete(self.http.post(path, content=body, headers=headers, **kw))

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, path, **kw))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()
