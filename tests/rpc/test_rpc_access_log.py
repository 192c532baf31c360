"""The gateway app writes the access log: one line per JSON-RPC call when it is switched on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from rpc.rpckit import AsgiClient
from sectorhooks import logs
from sectorhooks.rpc import TokenStore, build_app


@pytest.fixture
def access_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "access.log"
    logs.configure(logs.LogSettings(level="ERROR", format="json", file=path, access_log=True))
    yield path
    logs.configure(logs.LogSettings(level="WARNING", format="text", file=None, access_log=False))


def test_the_gateway_logs_each_call_with_its_method_and_outcome(runtime: Any, access_file: Path) -> None:
    tokens = TokenStore(runtime.kv)
    token, _ = tokens.create("read", "ops")
    client = AsgiClient(build_app(runtime, tokens=tokens))
    try:
        for i, (method, params) in enumerate(
            [("Sync.Status", []), ("Sector.Get", [{"miner": 1000, "number": 9}])]
        ):
            body = {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            assert client.post(json.dumps(body).encode(), token=token).status_code == 200
    finally:
        client.close()
    lines = [json.loads(line) for line in access_file.read_text().splitlines()]
    calls = [(r["rpc_method"], r["outcome"]) for r in lines if r.get("rpc_method")]
    assert calls[0] == ("Sync.Status", "ok")
    assert calls[1][0] == "Sector.Get" and calls[1][1].startswith("error -32")
    assert token not in access_file.read_text()
