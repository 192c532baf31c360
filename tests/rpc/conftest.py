"""Fixtures for the gateway tests: a real runtime (sqlkv on SQLite), tokens, an in-process client."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from rpc.rpckit import AsgiClient
from sectorhooks.config import parse_config
from sectorhooks.rpc import TokenStore, build_app
from sectorhooks.rpc.server import open_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Any]:
    """A started runtime on the default KV (sqlkv on a SQLite file) with the bundled plugins."""
    cfg = parse_config(
        {"Common": {"DataDir": str(tmp_path / "data")}}, str(tmp_path / "config.toml"), tmp_path
    )
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
