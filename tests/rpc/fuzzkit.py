"""Hypothesis strategies for JSON-RPC request bodies, and an independent oracle for the responses.

The oracle follows the JSON-RPC 2.0 text, not the server's code: a request is a notification
only if it is a valid request without ``id``; every other member of a batch gets exactly one
response, in order, echoing its ``id`` when that id is a string, number or null (else null).
"""

from __future__ import annotations

import json
from typing import Any, List, Optional, Tuple

from hypothesis import strategies as st

METHODS = [
    "AtomicCounter.Incr",
    "AtomicCounter.Get",
    "AtomicCounter.Decr",
    "Sector.Get",
    "Sector.List",
    "Sector.StateCounts",
    "Plugins.Methods",
    "Sync.Status",
    "Probe.Echo",
    "Probe.Crash",
    "Probe.Async",
]
MAX_BATCH = 100  # the gateway's default Limits.max_batch

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53), st.text(max_size=12), st.none(), json_values
)
methods = st.one_of(st.sampled_from(METHODS), st.text(max_size=30), json_values)
counter_params = st.one_of(
    st.tuples(st.sampled_from(["a", "b", "fuzz"])).map(list),
    st.tuples(st.sampled_from(["a", "b"]), st.integers(-5, 5)).map(list),
    st.fixed_dictionaries({"name": st.sampled_from(["a", "b"])}, optional={"delta": json_values}),
)
params = st.one_of(
    counter_params,
    st.lists(json_values, max_size=3),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    scalars,
)


@st.composite
def requests(draw: Any) -> Any:
    """A request object, mostly well formed, sometimes not (wrong version, missing or odd members)."""
    obj: dict = {}
    if draw(st.integers(0, 9)) > 0:
        obj["jsonrpc"] = "2.0" if draw(st.integers(0, 9)) > 0 else draw(json_values)
    if draw(st.integers(0, 9)) > 0:
        obj["method"] = draw(methods)
    if draw(st.booleans()):
        obj["params"] = draw(params)
    if draw(st.integers(0, 3)) > 0:
        obj["id"] = draw(ids)
    if draw(st.integers(0, 19)) == 0:
        obj[draw(st.text(max_size=5))] = draw(json_values)
    return obj


bodies = st.one_of(
    requests(),
    st.lists(st.one_of(requests(), json_values), max_size=6),
    json_values,
)


def raw_bodies() -> Any:
    """Bytes: encoded requests with a byte flipped or cut, or plain random bytes."""
    encoded = bodies.map(lambda b: json.dumps(b).encode())
    mangled = st.tuples(encoded, st.integers(0, 10_000), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % (len(t[0]) + 1)] + bytes([t[2]]) + t[0][t[1] % (len(t[0]) + 1) + 1 :]
    )
    return st.one_of(mangled, st.binary(max_size=64))


def _valid_id(value: Any) -> bool:
    return value is None or type(value) in (str, int, float)


def expected_id(obj: Any) -> Any:
    return obj["id"] if isinstance(obj, dict) and "id" in obj and _valid_id(obj["id"]) else None


def is_notification(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("jsonrpc") == "2.0"
        and isinstance(obj.get("method"), str)
        and ("params" not in obj or type(obj["params"]) in (list, dict))
        and "id" not in obj
    )


def check_response_object(resp: Any) -> None:
    """One response object is well formed: jsonrpc, id, exactly one of result / error."""
    assert isinstance(resp, dict), resp
    assert resp.get("jsonrpc") == "2.0", resp
    assert "id" in resp, resp
    assert ("result" in resp) != ("error" in resp), resp
    assert set(resp) <= {"jsonrpc", "id", "result", "error"}, resp
    if "error" in resp:
        err = resp["error"]
        assert isinstance(err, dict) and set(err) <= {"code", "message", "data"}, err
        assert type(err["code"]) is int and isinstance(err["message"], str), err
        assert "Traceback" not in err["message"] and 'File "' not in err["message"], err


def expected_ids(body: Any) -> Optional[List[Any]]:
    """Ids of the responses a parsed body must get, in order; None when nothing must come back."""
    if isinstance(body, list):
        if not body or len(body) > MAX_BATCH:
            return [None]  # one error object
        out = [expected_id(item) for item in body if not is_notification(item)]
        return out or None
    return None if is_notification(body) else [expected_id(body)]


def check_exchange(body: Any, status: int, content: bytes) -> Tuple[int, Any]:
    """Check a response to a parsed ``body`` (data sent as JSON); returns (status, decoded)."""
    want = expected_ids(body)
    if want is None:
        assert status == 204 and content == b"", (status, content)
        return status, None
    assert status == 200, (status, content)
    resp = json.loads(content)
    if isinstance(body, list) and body and len(body) <= MAX_BATCH:
        assert isinstance(resp, list), resp
        for r in resp:
            check_response_object(r)
        assert [r["id"] for r in resp] == want, (body, resp)
    else:
        check_response_object(resp)
        assert resp["id"] == want[0], (body, resp)
        if isinstance(body, list):
            assert resp["error"]["code"] == -32600
    return status, resp


def check_raw_exchange(raw: bytes, status: int, content: bytes) -> None:
    """Check a response to arbitrary bytes: valid JSON-RPC; a parse failure is -32700 with null id."""
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        assert status == 200, (status, content)
        resp = json.loads(content)
        check_response_object(resp)
        assert resp["id"] is None and resp["error"]["code"] in (-32700, -32600), resp
        return
    if status == 204:
        assert expected_ids(parsed) is None
        return
    assert status == 200, (status, content)
    resp = json.loads(content)
    for r in resp if isinstance(resp, list) else [resp]:
        check_response_object(r)
