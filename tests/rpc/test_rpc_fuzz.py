"""Fuzzing the in-process gateway (real KV): every body gets valid JSON-RPC 2.0 with the right ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest
from hypothesis import HealthCheck, given, settings

from rpc.fuzzkit import bodies, check_exchange, check_raw_exchange, raw_bodies
from rpc.rpckit import AsgiClient, write_probe
from sectorhooks.config import parse_config
from sectorhooks.rpc import TokenStore, build_app
from sectorhooks.rpc.server import open_runtime

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[AsgiClient, str]]:
    root = tmp_path_factory.mktemp("fuzz")
    plugins = write_probe(root / "plugins")
    data = {"Common": {"DataDir": str(root / "data"), "Plugins": {"Dir": [str(plugins)]}}}
    with open_runtime(parse_config(data, str(root / "config.toml"), root)) as rt:
        tokens = TokenStore(rt.kv)
        token, _ = tokens.create("admin")
        client = AsgiClient(build_app(rt, tokens=tokens))
        yield client, token
        client.close()


@FUZZ
@given(body=bodies)
def test_fuzzed_requests_get_valid_responses_with_echoed_ids(
    fuzz_gateway: Tuple[AsgiClient, str], body: Any
) -> None:
    client, token = fuzz_gateway
    resp = client.post(json.dumps(body).encode(), token)
    check_exchange(body, resp.status_code, resp.content)


@FUZZ
@given(raw=raw_bodies())
def test_fuzzed_bytes_get_valid_responses(fuzz_gateway: Tuple[AsgiClient, str], raw: bytes) -> None:
    client, token = fuzz_gateway
    resp = client.post(raw, token)
    check_raw_exchange(raw, resp.status_code, resp.content)


def test_gateway_still_counts_after_fuzzing(fuzz_gateway: Tuple[AsgiClient, str]) -> None:
    client, token = fuzz_gateway
    body = {"jsonrpc": "2.0", "method": "AtomicCounter.Incr", "params": ["after-fuzz"], "id": "last"}
    assert client.post(json.dumps(body).encode(), token).json() == {
        "jsonrpc": "2.0",
        "result": 1,
        "id": "last",
    }


def test_oracle_rejects_a_wrong_id_echo() -> None:
    # The oracle must be able to fail: a response echoing another id is caught.
    body = {"jsonrpc": "2.0", "method": "x", "id": 1}
    with pytest.raises(AssertionError):
        check_exchange(body, 200, b'{"jsonrpc":"2.0","result":1,"id":2}')
    with pytest.raises(AssertionError):
        check_exchange([body], 200, b'[{"jsonrpc":"2.0","result":1,"id":1,"error":{}}]')
    with pytest.raises(AssertionError):
        check_exchange({"jsonrpc": "2.0", "method": "x"}, 200, b'{"jsonrpc":"2.0","result":1,"id":null}')


def test_probe_plugin_writes_the_marker(tmp_path: Path) -> None:
    # Guard for the e2e shutdown test: the probe's onShutdown really writes the marker.
    marker = tmp_path / "m"
    plugins = write_probe(tmp_path / "plugins")
    data = {
        "Common": {
            "DataDir": str(tmp_path / "data"),
            "Plugins": {"Dir": [str(plugins)], "Config": {"probe": {"marker": str(marker)}}},
        }
    }
    with open_runtime(parse_config(data, str(tmp_path / "c.toml"), tmp_path)):
        assert not marker.exists()
    assert marker.read_text() == "shutdown\n"
