"""Load order and lifecycle: onInit in load order with the plugin's own table, onShutdown reversed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List

import pytest

from host.hostkit import KV_MANIFEST, isolated_config, load_host, write_plugin
from sectorhooks.host import PluginHost, PluginStatus

JOURNAL_MODULE = """
import json

STATE = {}

def setup(config):
    STATE["journal"] = config["journal"]
    with open(config["journal"], "a") as f:
        f.write(json.dumps(["init", __name__.split(".")[1], dict(config)]) + "\\n")
    if config.get("fail_init"):
        raise RuntimeError("cannot start")

def teardown():
    with open(STATE["journal"], "a") as f:
        f.write(json.dumps(["shutdown", __name__.split(".")[1]]) + "\\n")
    if STATE.get("fail_shutdown"):
        raise RuntimeError("cannot stop")

def open_store(meta):
    return {"plugin": __name__.split(".")[1], "meta": dict(meta)}
"""


def journal_plugin(root: Path, name: str) -> Path:
    manifest = KV_MANIFEST.format(name=name) + 'onInit = "setup"\nonShutdown = "teardown"\n'
    return write_plugin(root, name, manifest, JOURNAL_MODULE)


def read_journal(path: Path) -> List[list]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def tables(journal: Path, names: List[str]) -> dict:
    return {n: {"journal": str(journal), "who": n.upper()} for n in names}


def test_load_order_is_dirs_in_config_order_then_names_sorted(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for root, name in [(first, "zeta"), (first, "alpha"), (second, "beta"), (first, "mid")]:
        journal_plugin(root, name)
    host = load_host(first, second)
    assert list(host.records) == ["alpha", "mid", "zeta", "beta"]
    assert [i.plugin for i in host.impls("kvstore_constructor")] == ["alpha", "mid", "zeta", "beta"]


def test_bundled_plugins_load_before_configured_dirs(tmp_path: Path) -> None:
    journal_plugin(tmp_path, "aaa_first_by_name")
    host = PluginHost(isolated_config([tmp_path], bundled=True, data_dir=tmp_path / "data")).load()
    names = list(host.records)
    assert "memdb" in names
    assert names.index("memdb") < names.index("aaa_first_by_name")
    assert host.records["memdb"].source.startswith("bundled:")


def test_on_init_runs_in_load_order_with_own_table_and_shutdown_reversed(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    for name in ["c", "a", "b"]:
        journal_plugin(tmp_path / "plugins", name)
    config = isolated_config([tmp_path / "plugins"], plugin_config=tables(journal, ["a", "b", "c"]))
    with PluginHost(config).load().start() as host:
        assert all(r.status is PluginStatus.ACTIVE for r in host.plugins())
        inits = read_journal(journal)
        data_dir = str(config.data_dir)
        assert inits == [
            ["init", "a", {"DataDir": data_dir, "journal": str(journal), "who": "A"}],
            ["init", "b", {"DataDir": data_dir, "journal": str(journal), "who": "B"}],
            ["init", "c", {"DataDir": data_dir, "journal": str(journal), "who": "C"}],
        ]
    assert read_journal(journal)[3:] == [["shutdown", "c"], ["shutdown", "b"], ["shutdown", "a"]]
    assert all(r.status is PluginStatus.STOPPED for r in host.plugins())


def test_plugin_without_table_gets_only_the_data_dir(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    module = (
        f"def setup(config):\n    open({str(seen)!r}, 'w').write(repr(dict(config)))\n\n"
        "def open_store(meta):\n    pass\n"
    )
    write_plugin(tmp_path, "plain", KV_MANIFEST.format(name="plain") + 'onInit = "setup"\n', module)
    host = load_host(tmp_path).start()
    assert seen.read_text() == repr({"DataDir": str(host.config.data_dir)})


def test_shutdown_runs_when_the_body_raises(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    for name in ["a", "b"]:
        journal_plugin(tmp_path / "plugins", name)
    config = isolated_config([tmp_path / "plugins"], plugin_config=tables(journal, ["a", "b"]))
    with pytest.raises(ZeroDivisionError):
        with PluginHost(config).load().start():
            1 / 0  # noqa: B018
    assert [e[:2] for e in read_journal(journal)] == [
        ["init", "a"],
        ["init", "b"],
        ["shutdown", "b"],
        ["shutdown", "a"],
    ]


def test_failed_on_init_does_not_stop_the_others_and_is_not_shut_down(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    for name in ["a", "b", "c"]:
        journal_plugin(tmp_path / "plugins", name)
    t = tables(journal, ["a", "b", "c"])
    t["b"]["fail_init"] = True
    with PluginHost(isolated_config([tmp_path / "plugins"], plugin_config=t)).load().start() as host:
        assert host.records["b"].status is PluginStatus.FAILED
        assert "plugin 'b' onInit raised RuntimeError: cannot start" in host.records["b"].error
        assert [i.plugin for i in host.impls("kvstore_constructor")] == ["a", "c"]
    assert [e[:2] for e in read_journal(journal)] == [
        ["init", "a"],
        ["init", "b"],
        ["init", "c"],
        ["shutdown", "c"],
        ["shutdown", "a"],
    ]


def test_a_raising_on_shutdown_is_logged_and_the_rest_still_shut_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "journal.jsonl"
    for name in ["a", "b", "c"]:
        journal_plugin(tmp_path / "plugins", name)
    host = PluginHost(isolated_config([tmp_path / "plugins"], plugin_config=tables(journal, ["a", "b", "c"])))
    host.load().start()
    host.records["b"].bound.module.STATE["fail_shutdown"] = True  # type: ignore[union-attr]
    host.shutdown()
    assert [e[:2] for e in read_journal(journal)][3:] == [
        ["shutdown", "c"],
        ["shutdown", "b"],
        ["shutdown", "a"],
    ]
    assert any("'b'" in r.getMessage() and "cannot stop" in r.getMessage() for r in caplog.records)
    host.shutdown()  # idempotent: nobody is shut down twice
    assert len(read_journal(journal)) == 6


SIGTERM_SCRIPT = """
import sys, time
from pathlib import Path
from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost

plugins, journal = Path(sys.argv[1]), sys.argv[2]
tables = {{n: {{"journal": journal}} for n in ("a", "b", "c")}}
config = HostConfig(
    data_dir=Path(sys.argv[3]),
    plugins=PluginsConfig(dirs=(plugins,), bundled=False, entry_points=False, config=tables),
)
PluginHost.handle_sigterm()
with PluginHost(config).load().start():
    print("ready", flush=True)
    deadline = time.monotonic() + {timeout}
    while time.monotonic() < deadline:
        time.sleep(0.05)
print("timed out without SIGTERM", flush=True)
"""


def test_sigterm_runs_on_shutdown_in_reverse_order(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    for name in ["b", "a", "c"]:
        journal_plugin(tmp_path / "plugins", name)
    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent(SIGTERM_SCRIPT.format(timeout=60)))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "plugins"), str(journal), str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the host started (or the process died)
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        assert [e[:2] for e in read_journal(journal)] == [["init", "a"], ["init", "b"], ["init", "c"]]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 30
    assert [e[:2] for e in read_journal(journal)][3:] == [
        ["shutdown", "c"],
        ["shutdown", "b"],
        ["shutdown", "a"],
    ]


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_handle_sigterm_installs_a_handler_that_exits() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        PluginHost.handle_sigterm()
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        with pytest.raises(SystemExit) as info:
            handler(signal.SIGTERM, None)  # type: ignore[operator]
        assert info.value.code == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
