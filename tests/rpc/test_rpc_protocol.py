"""The pure JSON-RPC 2.0 engine: parsing, validation, batches, notifications, errors, limits."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, List, Optional

import pytest

from sectorhooks.rpc.protocol import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Call,
    Engine,
    Limits,
    RpcError,
    exceeds_depth,
)


class Recorder:
    """A dispatch that records calls: ``echo`` returns params, ``fail`` raises, ``boom`` crashes."""

    def __init__(self) -> None:
        self.calls: List[Call] = []

    async def __call__(self, call: Call, ctx: Any) -> Any:
        self.calls.append(call)
        if call.method == "echo":
            return call.params
        if call.method == "ctx":
            return ctx
        if call.method == "fail":
            raise RpcError(INVALID_PARAMS, "bad params", {"why": "test"})
        if call.method == "boom":
            raise RuntimeError("secret /etc/shadow detail")
        if call.method == "unencodable":
            return {"x": object()}
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {call.method}")


def run(body: Any, limits: Optional[Limits] = None, ctx: Any = None) -> Any:
    """Run ``body`` (bytes, or data to encode) through a fresh engine; decoded response or None."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    engine = Engine(Recorder(), limits)
    out = asyncio.run(engine.handle(raw, ctx))
    return None if out is None else json.loads(out)


def req(method: str, params: Any = None, id: Any = 1, **extra: Any) -> dict:
    d: dict = {"jsonrpc": "2.0", "method": method, "id": id, **extra}
    if params is not None:
        d["params"] = params
    return d


def error_code(resp: dict) -> int:
    assert set(resp) == {"jsonrpc", "error", "id"}, resp
    return resp["error"]["code"]  # type: ignore[no-any-return]


def test_positional_and_named_params_reach_dispatch_and_results_echo_the_id() -> None:
    assert run(req("echo", [1, "a"], id=7)) == {"jsonrpc": "2.0", "result": [1, "a"], "id": 7}
    assert run(req("echo", {"a": 1}, id="x")) == {"jsonrpc": "2.0", "result": {"a": 1}, "id": "x"}
    assert run(req("echo", id=None)) == {"jsonrpc": "2.0", "result": None, "id": None}
    assert run(req("echo", [], id=1.5))["id"] == 1.5


def test_context_is_passed_to_dispatch() -> None:
    assert run(req("ctx"), ctx="who")["result"] == "who"


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"jsonrpc": "2.0", "method": "echo", "id": 1',
        b"nul",
        b"",
        b"   ",
        b"NaN",
        b'{"a": Infinity}',
        b"1e999",
    ],
)
def test_bad_json_is_a_parse_error_with_null_id(body: bytes) -> None:
    resp = run(body)
    assert error_code(resp) == PARSE_ERROR and resp["id"] is None


def test_non_utf8_bytes_are_a_parse_error() -> None:
    resp = run(b'{"jsonrpc":"2.0","method":"echo","params":["\xff\xfe"],"id":1}')
    assert error_code(resp) == PARSE_ERROR
    assert "UTF-8" in resp["error"]["message"]


@pytest.mark.parametrize(
    "obj, expected_id",
    [
        ({"jsonrpc": "1.0", "method": "echo", "id": 5}, 5),
        ({"method": "echo", "id": 5}, 5),
        ({"jsonrpc": "2.0", "id": 5}, 5),
        ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None),
        ({"jsonrpc": "2.0", "method": "echo", "params": "bar", "id": 3}, 3),
        ({"jsonrpc": "2.0", "method": "echo", "params": None, "id": 3}, 3),
        ({"jsonrpc": "2.0", "method": "echo", "id": {"a": 1}}, None),
        ({"jsonrpc": "2.0", "method": "echo", "id": True}, None),
        ({"jsonrpc": "2.0", "method": "echo", "id": [1]}, None),
        (1, None),
        ("x", None),
        (None, None),
    ],
)
def test_invalid_requests_get_invalid_request_and_echo_only_a_valid_id(obj: Any, expected_id: Any) -> None:
    resp = run(obj)
    assert error_code(resp) == INVALID_REQUEST
    assert resp["id"] == expected_id


def test_invalid_request_without_id_still_gets_an_answer() -> None:
    # It is not a notification: a notification must first be a valid request.
    resp = run({"jsonrpc": "2.0", "method": 42})
    assert error_code(resp) == INVALID_REQUEST and resp["id"] is None


def test_notification_gets_no_response_even_when_it_fails() -> None:
    assert run({"jsonrpc": "2.0", "method": "echo", "params": [1]}) is None
    assert run({"jsonrpc": "2.0", "method": "nope"}) is None
    assert run({"jsonrpc": "2.0", "method": "boom"}) is None


def test_batch_answers_in_order_and_skips_notifications() -> None:
    batch = [
        req("echo", [1], id=1),
        {"jsonrpc": "2.0", "method": "echo", "params": [2]},
        req("nope", id=2),
        5,
        req("fail", id="f"),
    ]
    resp = run(batch)
    assert [r["id"] for r in resp] == [1, 2, None, "f"]
    assert resp[0]["result"] == [1]
    assert [error_code(r) for r in resp[1:]] == [METHOD_NOT_FOUND, INVALID_REQUEST, INVALID_PARAMS]
    assert resp[3]["error"]["data"] == {"why": "test"}


def test_all_notification_batch_returns_nothing() -> None:
    assert run([{"jsonrpc": "2.0", "method": "echo"}, {"jsonrpc": "2.0", "method": "nope"}]) is None


def test_empty_batch_is_one_invalid_request_not_an_array() -> None:
    resp = run([])
    assert isinstance(resp, dict) and error_code(resp) == INVALID_REQUEST


def test_batch_of_non_objects_answers_each_member() -> None:
    resp = run([1, 2, 3])
    assert len(resp) == 3 and all(error_code(r) == INVALID_REQUEST for r in resp)


def test_oversized_batch_is_refused_as_a_whole_without_calling_anything() -> None:
    rec = Recorder()
    engine = Engine(rec, Limits(max_batch=3))
    out = asyncio.run(engine.handle(json.dumps([req("echo", id=i) for i in range(4)]).encode()))
    resp = json.loads(out)
    assert error_code(resp) == INVALID_REQUEST and "limit 3" in resp["error"]["message"]
    assert rec.calls == []


def test_deep_nesting_is_refused_before_parsing() -> None:
    deep = b'{"jsonrpc":"2.0","method":"echo","id":1,"params":' + b"[" * 50 + b"]" * 50 + b"}"
    assert error_code(run(deep, Limits(max_depth=32))) == INVALID_REQUEST
    huge = b"[" * 200_000  # would blow the recursion limit of a naive parser
    assert error_code(run(huge)) == INVALID_REQUEST


def test_depth_scan_ignores_brackets_inside_strings() -> None:
    text = json.dumps({"a": "[[[[[[[[[[{{{{{{{{{{" * 10, "b": ['\\"[[[[']})
    assert not exceeds_depth(text, 3)
    assert exceeds_depth("[[[[]]]]", 3) and not exceeds_depth("[[[]]]", 3)
    assert not exceeds_depth('["\\"", [[]]]', 3)


def test_body_over_the_limit_is_refused() -> None:
    resp = run(json.dumps(req("echo", ["x" * 200])).encode(), Limits(max_body_bytes=100))
    assert error_code(resp) == INVALID_REQUEST


def test_unexpected_exception_is_internal_error_with_ref_and_no_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="sectorhooks.rpc.protocol"):
        resp = run(req("boom", id=9))
    assert error_code(resp) == INTERNAL_ERROR and resp["id"] == 9
    text = json.dumps(resp)
    assert "shadow" not in text and "Traceback" not in text and "RuntimeError" not in text
    ref = resp["error"]["data"]["ref"]
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback stays in the server log


def test_unencodable_result_is_internal_error_for_that_id_only() -> None:
    resp = run([req("unencodable", id=1), req("echo", [2], id=2)])
    assert error_code(resp[0]) == INTERNAL_ERROR and resp[0]["id"] == 1
    assert resp[1] == {"jsonrpc": "2.0", "result": [2], "id": 2}


def test_lone_surrogate_id_round_trips_as_escaped_json() -> None:
    resp = run(b'{"jsonrpc":"2.0","method":"echo","id":"\\ud800"}')
    assert resp["id"] == "\ud800"


def test_unknown_members_are_ignored() -> None:
    assert run(req("echo", [1], extra=True))["result"] == [1]
