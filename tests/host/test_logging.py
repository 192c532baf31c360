"""Logging: text lines with timestamp, level and logger, never wrapped off a terminal; JSON lines
that all parse; [Common.Log] under the --log-* options; the loaded-plugin line; the access log."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.hostkit import KV_MANIFEST, write_plugin
from sectorhooks import logs
from sectorhooks.cli import run
from sectorhooks.config import LogConfig

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: \S"
)
GOOD_MODULE = "def open_store(meta):\n    return meta\n"
FILESTORE_MANIFEST = """
name = "boom"
kind = "FileStore"
onInit = "setup"
export = [{ extPoint = "Constructor", impl = "open_store" }]
"""
FILESTORE_MODULE = """
def setup(config):
    raise RuntimeError("no disk today")

def open_store(config):
    return None
"""


@pytest.fixture(autouse=True)
def default_logging() -> Iterator[None]:
    """Each test starts, and leaves, the process with the default settings (stderr, WARNING)."""
    logs.configure(logs.LogSettings())
    yield
    logs.configure(logs.LogSettings())


def sectorhooks(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The console script in a child process: stdout and stderr are pipes, not terminals."""
    code = "import sys; from sectorhooks.cli import main; sys.exit(main())"
    env = dict(os.environ, COLUMNS="80")  # what a narrow terminal would say; a pipe must ignore it
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A host whose plugin directory's path is long: a wrapped line would split it."""
    deep = tmp_path / ("p" * 50) / ("q" * 50)
    deep.mkdir(parents=True)
    path = tmp_path / "host.toml"
    path.write_text(f'[Common]\nDataDir = "data"\n[Common.Plugins]\nDir = "{deep}"\nEntryPoints = false\n')
    return path


def plugin_dir(config: Path) -> Path:
    return next(p for p in config.parent.iterdir() if p.name.startswith("ppp")) / ("q" * 50)


def test_every_json_line_parses(config: Path) -> None:
    d = plugin_dir(config)
    write_plugin(d, "boom", FILESTORE_MANIFEST, FILESTORE_MODULE)  # onInit raises: a traceback
    write_plugin(d, "invalid", 'name = "invalid"\nkind = "KVStore"\n', "")  # an ERROR line
    proc = sectorhooks(
        "--log-format", "json", "--log-level", "debug", "store", "list", "--config", str(config)
    )
    lines = proc.stderr.splitlines()
    assert lines, proc
    records = [json.loads(line) for line in lines]  # each line, whole
    for r in records:
        assert {"ts", "level", "logger", "message"} <= set(r)
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["ts"])
    levels = {r["level"] for r in records}
    assert {"DEBUG", "INFO", "ERROR"} <= levels
    loaded = [r for r in records if r["message"].startswith("loaded plugin 'FileStore/boom'")]
    assert loaded and loaded[0]["build_time"].endswith("Z") and loaded[0]["logger"] == "sectorhooks.host"
    (tb,) = [r for r in records if "exc" in r]
    assert "RuntimeError: no disk today" in tb["exc"] and "Traceback" in tb["exc"]


def test_text_lines_have_a_timestamp_and_are_not_wrapped_in_a_pipe(config: Path) -> None:
    d = plugin_dir(config)
    write_plugin(d, "long_" + "n" * 40, KV_MANIFEST.format(name="long_" + "n" * 40), GOOD_MODULE)
    proc = sectorhooks("--log-level", "info", "plugins", "list", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    (line,) = [x for x in lines if "'KVStore/long_" in x]
    assert f"from dir:{d / ('long_' + 'n' * 40)}" in line and len(line) > 200
    assert re.search(
        r" INFO +sectorhooks\.host: loaded plugin 'KVStore/memdb' version 0\.1\.0, build time: "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, from bundled:",
        proc.stderr,
    )


def test_one_shot_commands_log_warnings_only_by_default(config: Path) -> None:
    proc = sectorhooks("plugins", "list", "--json", "--config", str(config))
    assert proc.returncode == 0 and proc.stderr == ""
    assert json.loads(proc.stdout)["ok"] is True


def test_serve_logs_one_line_per_loaded_plugin_at_info_by_default(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_text(
        '[Common]\nDataDir = "data"\n[Common.Plugins]\nEntryPoints = false\n'
        '[Common.API]\nListen = "127.0.0.1:0"\nDevMode = true\n'
    )
    code = "import sys; from sectorhooks.cli import main; sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "serving JSON-RPC" in first, first
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    loaded = [line for line in err.splitlines() if "sectorhooks.host: loaded plugin" in line]
    assert len(loaded) >= 6  # the bundled ones
    for line in loaded:
        assert TEXT_LINE.match(line) and " INFO " in line
        assert re.search(r"loaded plugin '\w+/\w+' version [\w.-]+, build time: \S+Z, from ", line)


def test_the_config_says_how_to_log_and_the_command_line_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "etc" / "host.toml"
    path.parent.mkdir()
    path.write_text(
        '[Common]\nDataDir = "data"\n[Common.Plugins]\nEntryPoints = false\n'
        '[Common.Log]\nFormat = "json"\nFile = "log/host.log"\nLevel = "info"\n'
    )
    log_file = tmp_path / "etc" / "log" / "host.log"  # relative to the config file
    assert run(["plugins", "list", "--json", "--config", str(path)]) == 0
    assert capsys.readouterr().err == ""
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(r["message"].startswith("loaded plugin 'KVStore/memdb'") for r in records)

    other = tmp_path / "cli.log"
    assert (
        run(["--log-format", "text", "--log-file", str(other), "plugins", "list", "--config", str(path)]) == 0
    )
    lines = other.read_text().splitlines()
    assert lines and all(TEXT_LINE.match(line) for line in lines)
    assert (
        run(["--log-level", "warning", "--log-file", str(other), "plugins", "list", "--config", str(path)])
        == 0
    )
    assert other.read_text().splitlines() == lines  # nothing at WARNING


def test_a_log_file_that_cannot_be_opened_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("")
    assert run(["--log-file", str(tmp_path / "file" / "x.log"), "plugins", "list"]) == 1
    assert "cannot open log file" in capsys.readouterr().err


def test_precedence_command_line_over_config_over_the_commands_default() -> None:
    cfg = LogConfig(format="json", file=Path("/var/log/sh.log"), level="ERROR", access_log=True)
    assert logs.resolve(logs.LogOverrides(), LogConfig(), "INFO") == logs.LogSettings(level="INFO")
    assert logs.resolve(logs.LogOverrides(), cfg, "INFO") == logs.LogSettings(
        "ERROR", "json", Path("/var/log/sh.log"), True
    )
    said = logs.LogOverrides(level="DEBUG", format="text", file=Path("x.log"), access_log=False)
    assert logs.resolve(said, cfg, "INFO") == logs.LogSettings("DEBUG", "text", Path("x.log"), False)


def _record(message: str, args: Any = (), exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(message)
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("sectorhooks.test", logging.ERROR, __file__, 1, message, args, exc_info)


@given(st.text(), st.lists(st.text(), max_size=3), st.booleans())
def test_a_json_line_is_one_line_that_parses_back_to_the_message(
    message: str, args: List[str], exc: bool
) -> None:
    fmt = message.replace("%", "%%") + " %s" * len(args)
    record = _record(fmt, tuple(args), exc)
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line and line.isascii()
    obj = json.loads(line)
    assert obj["message"] == record.getMessage()
    assert ("exc" in obj) is exc


def test_a_text_line_is_never_wrapped() -> None:
    line = logs.TextFormatter().format(_record("x" * 500))
    assert "\n" not in line and TEXT_LINE.match(line) and line.endswith("x" * 500)


# --- the access log ------------------------------------------------------------------------


def _asgi_app() -> Any:
    """A stand-in JSON-RPC app: every call succeeds but ``Fail``, which is -32601."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def rpc(request: Request) -> Response:
        body = json.loads(await request.body())
        calls = body if isinstance(body, list) else [body]
        out: List[Dict[str, Any]] = []
        for call in calls:
            if "id" not in call:
                continue
            if call["method"] == "Fail":
                out.append({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": "no"}})
            else:
                out.append({"jsonrpc": "2.0", "id": call["id"], "result": 1})
        return JSONResponse(out if isinstance(body, list) else out[0])

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    from sectorhooks.rpc.access import AccessLog

    app = Starlette(routes=[Route("/rpc/v0", rpc, methods=["POST"]), Route("/healthz", health)])
    app.add_middleware(AccessLog)
    return app


def _post_all(app: Any) -> None:
    import anyio
    import httpx

    async def go() -> None:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            batch = [
                {"jsonrpc": "2.0", "id": 1, "method": "Sector.Get", "params": {"secret": "s3cr3t"}},
                {"jsonrpc": "2.0", "id": "b", "method": "Fail"},
                {"jsonrpc": "2.0", "method": "Note"},
            ]
            assert (await client.post("/rpc/v0", json=batch)).status_code == 200
            await client.get("/healthz")

    anyio.run(go)


def test_the_access_log_writes_one_line_per_json_rpc_call(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    logs.configure(logs.LogSettings(level="ERROR", format="json", file=log_file, access_log=True))
    assert logs.access_log_enabled()
    _post_all(_asgi_app())
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [r["logger"] for r in records] == [logs.ACCESS_LOGGER] * 4  # at level ERROR, still there
    calls = [(r["rpc_method"], r["rpc_id"], r["outcome"], r["error_code"]) for r in records[:3]]
    assert calls == [
        ("Sector.Get", "1", "ok", None),
        ("Fail", '"b"', "error -32601", -32601),
        ("Note", "-", "notification", None),
    ]
    assert all(r["client"] == "10.0.0.7:4242" and r["status"] == 200 for r in records)
    assert records[0]["message"].startswith("10.0.0.7:4242 POST /rpc/v0 Sector.Get id=1 ok 200 ")
    assert records[3]["path"] == "/healthz" and "rpc_method" not in records[3]
    assert "s3cr3t" not in log_file.read_text()


def test_the_access_log_is_off_unless_switched_on(tmp_path: Path) -> None:
    log_file = tmp_path / "all.log"
    logs.configure(logs.LogSettings(level="DEBUG", format="text", file=log_file, access_log=False))
    assert not logs.access_log_enabled()
    _post_all(_asgi_app())
    assert "sectorhooks.access" not in log_file.read_text()


def test_serve_has_an_access_log_switch() -> None:
    proc = sectorhooks("serve", "--help")
    assert "--access-log / --no-access-log" in proc.stdout


def test_configure_only_lowers_the_root_level() -> None:
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.DEBUG)
        logs.configure(logs.LogSettings(level="ERROR"))
        assert root.level == logging.DEBUG  # pytest's handlers still get what they asked for
        root.setLevel(logging.WARNING)
        logs.configure(logs.LogSettings(level="INFO"))
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)


def test_time_is_utc() -> None:
    record = _record("t")
    record.created = 0.0
    assert logs.TextFormatter().format(record).startswith("1970-01-01T00:00:00.000Z ERROR")
    assert json.loads(logs.JsonFormatter().format(record))["ts"] == "1970-01-01T00:00:00.000Z"
