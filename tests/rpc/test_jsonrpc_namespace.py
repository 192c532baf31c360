"""Typed RegisterJsonRpc registration (#18 item 5, #19 item 2): ``JsonRpcNamespace(name, handler,
perms)``, per-method perms in manifest.toml, their precedence, the ``write`` default, and error
codes through ``PluginRpcError``; the tuple and the ``__sectorhooks_perms__`` attribute still work."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional

import pytest
from click.testing import CliRunner

from rpc.rpckit import call, code, plugin_host, result
from sectorhooks.cli import main
from sectorhooks.rpc.methods import MethodRegistry
from sectorhooks.rpc.protocol import FORBIDDEN
from sectorhooks_spec import JsonRpcNamespace, PluginRpcError
from sectorhooks_spec.manifest import ManifestError, parse_manifest

HANDLER = """
from sectorhooks_spec import JsonRpcNamespace, PluginRpcError

class Api:
    {attr}
    def Hello(self, name: str = "world") -> str:
        return f"hello {{name}}"

    def Reset(self) -> str:
        return "reset"

    def Fail(self) -> None:
        raise PluginRpcError(-40001, "no such greeting", data={{"name": "x"}})

def handler():
    return {ret}
"""


def plugin(
    root: Path,
    ret: str = '"Api", Api()',
    manifest_perms: Optional[str] = None,
    attr: str = "pass",
    name: str = "greet",
) -> Path:
    """A RegisterJsonRpc plugin ``root/name`` whose handler() returns ``ret``."""
    d = root / name
    d.mkdir(parents=True)
    lines = [f'name = "{name}"', 'kind = "RegisterJsonRpc"', f'module = "{name}"']
    if manifest_perms is not None:
        lines.append(f"perms = {manifest_perms}")
    lines.append('export = [{ extPoint = "Handler", impl = "handler" }]')
    (d / "manifest.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (d / f"{name}.py").write_text(textwrap.dedent(HANDLER.format(ret=ret, attr=attr)), encoding="utf-8")
    return d


def registry(root: Path) -> MethodRegistry:
    reg = MethodRegistry()
    reg.load_plugins(plugin_host(root))
    return reg


def perms_of(reg: MethodRegistry) -> dict:
    return {m["method"]: m["perm"] for m in reg.describe()}


def test_typed_registration_declares_perms_and_the_rest_default_to_write(tmp_path: Path) -> None:
    plugin(tmp_path, ret='JsonRpcNamespace("Api", Api(), perms={"Hello": "read"})')
    reg = registry(tmp_path)
    assert not reg.problems, reg.problems
    assert perms_of(reg) == {"Api.Hello": "read", "Api.Reset": "write", "Api.Fail": "write"}
    assert result(call(reg, "Api.Hello", ["you"], perm="read")) == "hello you"
    assert code(call(reg, "Api.Reset", perm="read")) == FORBIDDEN
    assert result(call(reg, "Api.Reset", perm="write")) == "reset"


def test_the_tuple_is_still_accepted_and_everything_then_needs_write(tmp_path: Path) -> None:
    plugin(tmp_path)
    reg = registry(tmp_path)
    assert set(perms_of(reg).values()) == {"write"}
    assert code(call(reg, "Api.Hello", perm="read")) == FORBIDDEN


def test_manifest_perms_apply_when_the_registration_has_none(tmp_path: Path) -> None:
    plugin(tmp_path, manifest_perms='{ Hello = "read", Reset = "admin" }')
    reg = registry(tmp_path)
    assert perms_of(reg) == {"Api.Hello": "read", "Api.Reset": "admin", "Api.Fail": "write"}
    assert result(call(reg, "Api.Hello", perm="read")) == "hello world"


def test_precedence_registration_then_manifest_then_attribute_then_default(tmp_path: Path) -> None:
    plugin(
        tmp_path,
        ret='JsonRpcNamespace("Api", Api(), perms={"Hello": "admin"})',
        manifest_perms='{ Hello = "read", Reset = "read" }',
        attr='__sectorhooks_perms__ = {"Hello": "write", "Reset": "write", "Fail": "read"}',
    )
    assert perms_of(registry(tmp_path)) == {"Api.Hello": "admin", "Api.Reset": "read", "Api.Fail": "read"}


@pytest.mark.parametrize(
    "ret, manifest_perms, expect",
    [
        (
            'JsonRpcNamespace("Api", Api(), perms={"Helo": "read"})',
            None,
            "JsonRpcNamespace perms names method 'Helo'",
        ),
        ('"Api", Api()', '{ Resett = "read" }', "manifest.toml perms names method 'Resett'"),
        ('JsonRpcNamespace("Api", Api(), perms={"Hello": "root"})', None, "perms['Hello'] must be one of"),
    ],
)
def test_perms_naming_no_method_or_an_unknown_perm_refuse_the_namespace(
    tmp_path: Path, ret: str, manifest_perms: Optional[str], expect: str
) -> None:
    plugin(tmp_path, ret=ret, manifest_perms=manifest_perms)
    reg = registry(tmp_path)
    assert len(reg.problems) == 1 and "'greet'" in reg.problems[0] and expect in reg.problems[0], reg.problems
    assert "did you mean" in reg.problems[0] or "must be one of" in reg.problems[0]
    assert not reg.methods.keys() & {"Api.Hello"}


@pytest.mark.parametrize(
    "extra, field, message",
    [
        ('perms = { Hello = "reed" }', "perms.Hello", "unknown permission 'reed'"),
        ("perms = { Hello = 3 }", "perms.Hello", "unknown permission 'int'"),
        ('perms = "read"', "perms", "must be a table"),
        ('perms = { "9x" = "read" }', "perms.9x", "is not a method name"),
    ],
)
def test_manifest_perms_are_checked_with_problems_naming_the_field(
    extra: str, field: str, message: str
) -> None:
    text = (
        f'name = "p"\nkind = "RegisterJsonRpc"\n{extra}\nexport = [{{ extPoint = "Handler", impl = "h" }}]\n'
    )
    with pytest.raises(ManifestError) as err:
        parse_manifest(text, "p/manifest.toml")
    (problem,) = err.value.problems
    assert problem.field == field and message in problem.message, problem


def test_manifest_perms_are_for_register_json_rpc_only() -> None:
    text = (
        'name = "p"\nkind = "KVStore"\nperms = { Hello = "read" }\n'
        'export = [{ extPoint = "Constructor", impl = "o" }]\n'
    )
    with pytest.raises(ManifestError) as err:
        parse_manifest(text, "p/manifest.toml")
    assert [p.field for p in err.value.problems] == ["perms"]
    assert "RegisterJsonRpc" in err.value.problems[0].message
    ok = parse_manifest(
        'name = "p"\nkind = "RegisterJsonRpc"\nperms = { Hello = "read" }\n'
        'export = [{ extPoint = "Handler", impl = "h" }]\n'
    )
    assert dict(ok.perms) == {"Hello": "read"}


def test_plugin_rpc_error_picks_code_message_and_data(tmp_path: Path) -> None:
    plugin(tmp_path)
    resp = call(registry(tmp_path), "Api.Fail")
    assert resp["error"] == {"code": -40001, "message": "no such greeting", "data": {"name": "x"}}


def test_plugin_rpc_error_refuses_a_code_that_is_not_an_int() -> None:
    with pytest.raises(TypeError, match="code must be an int"):
        PluginRpcError("x", "m")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PluginRpcError(True, "m")
    err = PluginRpcError(-40002, "m")
    assert (err.rpc_code, err.rpc_data, str(err)) == (-40002, None, "m")


def test_json_rpc_namespace_of_accepts_both_shapes_and_refuses_others() -> None:
    handler = object()
    assert JsonRpcNamespace.of(("A", handler)) == JsonRpcNamespace("A", handler)
    assert JsonRpcNamespace.of(JsonRpcNamespace("A", handler, {"M": "read"})).perms == {"M": "read"}
    with pytest.raises(TypeError, match=r"must return \(namespace, handler\)"):
        JsonRpcNamespace.of(42)
    with pytest.raises(ValueError, match="must be one of 'read', 'write', 'admin'"):
        JsonRpcNamespace("A", handler, {"M": "sign"})


def test_the_scaffolds_hello_works_with_a_read_token(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        main, ["plugin", "new", "hi", "--kind", "RegisterJsonRpc", "--dir", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    reg = registry(tmp_path)
    assert not reg.problems, reg.problems
    assert result(call(reg, "Hi.Hello", ["you"], perm="read")) == "hello you"
    assert call(reg, "Hi.Hello", [""], perm="read")["error"]["code"] == -40001
