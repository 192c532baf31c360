"""Fixtures for the gateway tests: a real runtime (sqlkv on SQLite), tokens, an in-process client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import httpx
import pytest

from sectorhooks.config import parse_config
from sectorhooks.rpc import RPC_PATH, TokenStore, build_app
from sectorhooks.rpc.server import open_runtime


class AsgiClient:
    """Synchronous calls into an ASGI app through httpx, on one private event loop (fast for fuzzing)."""

    def __init__(self, app: Any, client: Tuple[str, int] = ("127.0.0.1", 40000)):
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, client=client)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://gateway")

    def post(self, body: bytes, token: Optional[str] = None, path: str = RPC_PATH, **kw: Any) -> httpx.Response:
        headers: Dict[str, str] = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.loop.run_until_complete(self.http.post(path, content=body, headers=headers, **kw))

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.request(method, path, **kw))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Any]:
    """A started runtime on the default KV (sqlkv on a SQLite file) with the bundled plugins."""
    cfg = parse_config({"Common": {"DataDir": str(tmp_path / "data")}}, str(tmp_path / "config.toml"), tmp_path)
    with open_runtime(cfg) as rt:
        yield rt


@pytest.fixture
def tokens(runtime: Any) -> TokenStore:
    return TokenStore(runtime.kv)


@pytest.fixture
def gateway(runtime: Any, tokens: TokenStore) -> Iterator[AsgiClient]:
    """An in-process client of the gateway app (tokens required)."""
    client = AsgiClient(build_app(runtime, tokens=tokens))
    yield client
    client.close()
