"""The method table: namespaces from plugins, conflicts, permissions, params, handlers, errors, gate."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, List, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpc.rpckit import call, code, plugin_host, result, write_rpc_plugin
from sectorhooks.errors import RouteRefused
from sectorhooks.rpc.auth import CallContext, TokenInfo
from sectorhooks.rpc.methods import MethodRegistry
from sectorhooks.rpc.protocol import (
    CONFLICT,
    FORBIDDEN,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    SERVER_ERROR,
    RpcError,
)
from sectorhooks_spec import KeyNotFound, SectorhooksError

GREETER = """
class Greeter:
    __sectorhooks_perms__ = {"Hello": "read"}

    def Hello(self, name: str, punct: str = "!") -> str:
        return "hello " + name + punct

    def _secret(self):
        return "never served"

def handler():
    return "Greeter", Greeter()
"""


class Handler:
    """A handler exercising every kind of method."""

    def __init__(self) -> None:
        self.threads: List[int] = []

    def Add(self, a: int, b: int = 0) -> int:
        self.threads.append(threading.get_ident())
        return a + b

    def Maybe(self, x: Optional[int] = None) -> Any:
        return x

    def Anything(self, *args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs]

    async def Async(self, x: float) -> float:
        self.threads.append(threading.get_ident())
        return x * 2

    def Admin(self) -> str:
        return "ok"

    Admin.__sectorhooks_perm__ = "admin"  # type: ignore[attr-defined]

    def Missing(self) -> None:
        raise KeyNotFound("things", b"k")

    def Domain(self) -> None:
        raise SectorhooksError("sector s-t01000-1 is offline")

    def Coded(self) -> None:
        class Teapot(Exception):
            rpc_code = -32042
            rpc_data = {"tea": True}

        raise Teapot("I am a teapot")

    def Crash(self) -> None:
        raise RuntimeError("password=hunter2 at /srv/secret")

    def Conflict(self) -> None:
        from sectorhooks.errors import KVRetryExhausted

        raise KVRetryExhausted("collection 'c'", 30, 10.0)


@pytest.fixture
def reg() -> MethodRegistry:
    r = MethodRegistry()
    r.add("T", Handler(), owner="tplugin")
    return r


def test_public_methods_become_namespace_methods_and_private_ones_do_not(tmp_path: Path) -> None:
    write_rpc_plugin(tmp_path, "greeter", GREETER)
    reg = MethodRegistry()
    reg.load_plugins(plugin_host(tmp_path))
    assert reg.problems == []
    assert sorted(reg.methods) == ["Greeter.Hello"]
    assert result(call(reg, "Greeter.Hello", ["bob"])) == "hello bob!"
    assert result(call(reg, "Greeter.Hello", {"name": "amy", "punct": "?"})) == "hello amy?"
    assert code(call(reg, "Greeter._secret")) == METHOD_NOT_FOUND


def test_second_plugin_claiming_a_namespace_is_refused_naming_both_and_first_keeps_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_rpc_plugin(tmp_path, "a_greeter", GREETER)
    write_rpc_plugin(tmp_path, "b_greeter", GREETER.replace("hello ", "HI "))
    write_rpc_plugin(tmp_path, "c_other", GREETER.replace('"Greeter", Greeter()', '"Other", Greeter()'))
    reg = MethodRegistry()
    with caplog.at_level(logging.ERROR):
        reg.load_plugins(plugin_host(tmp_path))
    assert len(reg.problems) == 1
    problem = reg.problems[0]
    assert "'a_greeter'" in problem and "'b_greeter'" in problem and "'Greeter'" in problem
    assert problem in caplog.text
    assert reg.owners == {"Greeter": "a_greeter", "Other": "c_other"}
    assert reg.refused == {"b_greeter": problem}
    assert result(call(reg, "Greeter.Hello", ["x"])) == "hello x!"  # the first plugin's, not b's
    assert result(call(reg, "Other.Hello", ["y"])) == "hello y!"


def test_plugin_cannot_take_a_host_namespace(tmp_path: Path) -> None:
    write_rpc_plugin(tmp_path, "squatter", GREETER.replace('"Greeter", Greeter()', '"Sector", Greeter()'))
    reg = MethodRegistry()
    reg.add("Sector", Handler())
    reg.load_plugins(plugin_host(tmp_path))
    assert len(reg.problems) == 1 and "'squatter'" in reg.problems[0] and "the host" in reg.problems[0]
    assert "Sector.Hello" not in reg.methods


@pytest.mark.parametrize(
    "body, expect",
    [
        ('def handler():\n    raise RuntimeError("no db")\n', "Handler() raised RuntimeError: no db"),
        ("def handler():\n    return 42\n", "must return (namespace, handler)"),
        ('def handler():\n    return "bad.name", object()\n', "invalid namespace"),
        ('class H: pass\ndef handler():\n    return "Empty", H()\n', "no public methods"),
        ('class H:\n    def M(self): pass\ndef handler():\n    return "Cls", H\n', "return an instance"),
        (
            'class H:\n    __sectorhooks_perms__ = {"M": "root"}\n    def M(self): pass\n'
            'def handler():\n    return "P", H()\n',
            "must be one of read, write, admin",
        ),
    ],
)
def test_bad_handlers_are_refused_with_a_clear_problem_and_loading_goes_on(
    tmp_path: Path, body: str, expect: str
) -> None:
    write_rpc_plugin(tmp_path, "bad", body)
    write_rpc_plugin(tmp_path, "good", GREETER)
    reg = MethodRegistry()
    reg.load_plugins(plugin_host(tmp_path))
    assert len(reg.problems) == 1 and "'bad'" in reg.problems[0] and expect in reg.problems[0]
    assert result(call(reg, "Greeter.Hello", ["z"])) == "hello z!"


def test_permissions_default_to_write_and_can_be_declared(reg: MethodRegistry) -> None:
    perms = {m["method"]: m["perm"] for m in reg.describe()}
    assert perms["T.Add"] == "write" and perms["T.Admin"] == "admin"
    assert code(call(reg, "T.Add", [1], perm="read")) == FORBIDDEN
    assert result(call(reg, "T.Add", [1, 2], perm="write")) == 3
    assert code(call(reg, "T.Admin", perm="write")) == FORBIDDEN
    assert result(call(reg, "T.Admin", perm="admin")) == "ok"


def test_forbidden_message_names_method_and_token(reg: MethodRegistry) -> None:
    ctx = CallContext("read", TokenInfo("abc123", "ro", "read", 0.0))
    resp = call(reg, "T.Add", [1], ctx=ctx)
    assert code(resp) == FORBIDDEN
    assert "T.Add" in resp["error"]["message"] and "'abc123'" in resp["error"]["message"]


@pytest.mark.parametrize(
    "params, fragment",
    [
        ([], "missing a required argument: 'a'"),
        ([1, 2, 3], "too many positional arguments"),
        ({"a": 1, "c": 2}, "unexpected keyword argument 'c'"),
        (["1"], "'a' must be an integer, got string"),
        ([True], "'a' must be an integer, got boolean"),
        ([1.5], "'a' must be an integer, got number"),
    ],
)
def test_params_are_checked_against_the_signature_before_the_call(
    reg: MethodRegistry, params: Any, fragment: str
) -> None:
    handler = reg.methods["T.Add"].func.__self__  # type: ignore[attr-defined]
    resp = call(reg, "T.Add", params)
    assert code(resp) == INVALID_PARAMS and fragment in resp["error"]["message"]
    assert handler.threads == []  # never called


def test_optional_accepts_null_and_varargs_take_anything(reg: MethodRegistry) -> None:
    assert result(call(reg, "T.Maybe", [None])) is None
    assert result(call(reg, "T.Maybe", [3])) == 3
    assert code(call(reg, "T.Maybe", ["x"])) == INVALID_PARAMS
    assert result(call(reg, "T.Anything", [1, "a"])) == [[1, "a"], {}]
    assert result(call(reg, "T.Anything", {"k": [1]})) == [[], {"k": [1]}]


def test_sync_handlers_run_in_worker_threads_and_async_ones_on_the_loop(reg: MethodRegistry) -> None:
    handler = reg.methods["T.Add"].func.__self__  # type: ignore[attr-defined]
    assert result(call(reg, "T.Add", [2, 3])) == 5
    assert result(call(reg, "T.Async", [1.25])) == 2.5
    sync_thread, async_thread = handler.threads
    assert sync_thread != async_thread
    assert async_thread == threading.get_ident()  # asyncio.run runs the loop in this thread


def test_domain_errors_keep_their_message_and_get_their_code(reg: MethodRegistry) -> None:
    resp = call(reg, "T.Missing")
    assert code(resp) == NOT_FOUND and "things" in resp["error"]["message"]
    resp = call(reg, "T.Domain")
    assert code(resp) == SERVER_ERROR and resp["error"]["message"] == "sector s-t01000-1 is offline"
    resp = call(reg, "T.Coded")
    assert resp["error"] == {"code": -32042, "message": "I am a teapot", "data": {"tea": True}}
    assert code(call(reg, "T.Conflict")) == CONFLICT


def test_crashing_handler_leaks_nothing_and_is_logged_with_plugin_and_method(
    reg: MethodRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        resp = call(reg, "T.Crash")
    assert code(resp) == INTERNAL_ERROR
    text = json.dumps(resp)
    assert "hunter2" not in text and "secret" not in text and "Traceback" not in text
    record = next(r for r in caplog.records if resp["error"]["data"]["ref"] in r.getMessage())
    assert "'tplugin'" in record.getMessage() and "'T.Crash'" in record.getMessage()
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])
    assert result(call(reg, "T.Add", [1])) == 1  # still serving


def test_unknown_method_suggests_a_close_one(reg: MethodRegistry) -> None:
    resp = call(reg, "T.Ad", [1])
    assert code(resp) == METHOD_NOT_FOUND and "'T.Add'" in resp["error"]["message"]


def test_gate_refuses_plugin_namespaces_only(reg: MethodRegistry) -> None:
    seen = []

    def gate(namespace: str, token: Any) -> None:
        seen.append((namespace, token))
        if namespace == "T":
            raise RouteRefused(-32010, "plugin 'tplugin' is not RUNNING")

    reg.gate = gate
    reg.add("Host", Handler())  # the host's own namespaces are never gated
    token = TokenInfo("t1", "", "admin", 0.0)
    resp = call(reg, "T.Add", [1], ctx=CallContext("admin", token))
    assert resp["error"] == {"code": -32010, "message": "plugin 'tplugin' is not RUNNING"}
    assert result(call(reg, "Host.Add", [1])) == 1
    assert seen == [("T", token)]
    resp = call(reg, "T.Async", [1.0], ctx=CallContext("admin", token))  # async handlers are gated too
    assert code(resp) == -32010


def test_crashing_gate_is_an_internal_error_not_a_pass(reg: MethodRegistry) -> None:
    def gate(namespace: str, token: Any) -> None:
        raise ValueError("routes unreadable")

    reg.gate = gate
    resp = call(reg, "T.Add", [1])
    assert code(resp) == INTERNAL_ERROR and "routes" not in json.dumps(resp)


def _sig_a(a: Any, b: Any, c: Any = 3) -> None: ...


def _sig_b(x: Any = 1, y: Any = 2) -> None: ...


def _sig_c() -> None: ...


@given(
    func=st.sampled_from([_sig_a, _sig_b, _sig_c]),
    params=st.one_of(
        st.none(),
        st.lists(st.integers(), max_size=4),
        st.dictionaries(st.sampled_from(["a", "b", "c", "x", "y", "z"]), st.integers(), max_size=4),
    ),
)
def test_fast_binding_agrees_with_inspect(func: Any, params: Any) -> None:
    reg = MethodRegistry()
    reg.add("S", {"F": func})
    method = reg.methods["S.F"]
    assert method.simple is not None
    sig = method.signature
    try:
        bound = sig.bind(*(params or [])) if not isinstance(params, dict) else sig.bind(**params)
        expected: Any = (tuple(bound.args), dict(bound.kwargs))
    except TypeError:
        expected = "error"
    try:
        args, kwargs = method.bind(params)
        got: Any = (tuple(args), dict(kwargs))
    except RpcError as exc:
        assert exc.code == INVALID_PARAMS
        got = "error"
    if expected != "error" and got != "error":  # same call either way: positional or by name
        assert func(*expected[0], **expected[1]) is None and func(*got[0], **got[1]) is None
        assert sig.bind(*got[0], **got[1]).arguments == sig.bind(*expected[0], **expected[1]).arguments
    else:
        assert got == expected
