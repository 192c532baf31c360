"""``pytest --sectorhooks-plugin DIR`` on plugins written outside the repository.

Each test copies a plugin from ``tests/author/plugins`` into a temp dir (no sectorhooks sources
around it), runs pytest there in a subprocess and reads the per-contract report: a KV store over
stdlib sqlite3 keeps every contract, the same store losing its deletes breaks exactly the
contracts that delete, a store over ``dbm.dumb`` (thread-safe, one process at a time) breaks
exactly the multi-process contract, the bundled in-memory memdb skips it saying why, a
JSONL-appending syncer keeps the delivery contracts. Also: the option
is inert when not given, and the entry point is declared where pip installs it from.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

from support import ROOT, python_env

PLUGINS = Path(__file__).resolve().parent / "plugins"


def _entry_point_installed() -> bool:
    eps = importlib.metadata.entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
    return any(ep.value == "sectorhooks.testing.plugin" for ep in group)


def run_suite(workdir: Path, plugin: Path, *meta: str, only: str = "") -> subprocess.CompletedProcess:
    """``python -m pytest --sectorhooks-plugin plugin --sectorhooks-meta ...`` in ``workdir``
    (``only``: the contracts ``-k only`` selects)."""
    args = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--sectorhooks-plugin",
        str(plugin),
    ]
    if not _entry_point_installed():  # a checkout used without `pip install -e .`
        args[3:3] = ["-p", "sectorhooks.testing.plugin"]
    for item in meta:
        args += ["--sectorhooks-meta", item]
    if only:
        args += ["-k", only]
    env = python_env()
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def contracts(output: str) -> Dict[str, str]:
    """``{contract: PASS|FAIL|SKIP}`` from the report's ``sectorhooks contracts`` section (a
    SKIP line ends with its reason in parentheses)."""
    section = output.split("sectorhooks contracts:", 1)
    assert len(section) == 2, output
    line = r"^(PASS|FAIL|SKIP)\s+(\S+)(?:\s+\(.*\))?$"
    return dict((m.group(2), m.group(1)) for m in re.finditer(line, section[1], re.MULTILINE))


def copy_plugin(name: str, tmp_path: Path) -> Path:
    target = tmp_path / "plugins" / name
    shutil.copytree(PLUGINS / name, target)
    assert ROOT not in target.parents
    return target


def test_the_entry_point_is_declared() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["entry-points"]["pytest11"] == {"sectorhooks": "sectorhooks.testing.plugin"}


def test_a_sqlite3_kv_store_written_outside_keeps_every_contract(tmp_path: Path) -> None:
    plugin = copy_plugin("sqlite3kv", tmp_path)
    proc = run_suite(tmp_path, plugin, "path={tmp}/kv.sqlite3")
    out = proc.stdout + proc.stderr
    got = contracts(out)
    assert proc.returncode == 0, out
    assert "KVStore plugin 'sqlite3kv'" in out
    assert len(got) >= 20 and set(got.values()) == {"PASS"}, got
    for name in (
        "put_get_peek_delete",
        "racing_increments_are_serialized",
        "view_sees_a_snapshot_or_conflicts",
    ):
        assert got[name] == "PASS"


def test_a_kv_store_losing_deletes_fails_exactly_the_delete_contracts(tmp_path: Path) -> None:
    plugin = copy_plugin("sqlite3kv", tmp_path)
    proc = run_suite(tmp_path, plugin, "path={tmp}/kv.sqlite3", "LOSE_DELETES=yes")
    out = proc.stdout + proc.stderr
    got = contracts(out)
    assert proc.returncode == 1, out
    failed = sorted(n for n, o in got.items() if o == "FAIL")
    # the two contracts using Collection.delete; deletes inside update() still work
    assert failed == ["empty_and_binary_keys_and_values", "put_get_peek_delete"], failed
    assert got["collections_are_separate"] == "PASS"
    assert re.search(r"FAILED .*test_put_get_peek_delete", out), out


def test_a_dbm_kv_store_fails_exactly_the_multi_process_contract(tmp_path: Path) -> None:
    """dbm.dumb keeps its index in the opening process's memory: thread-safe inside one process,
    but a second process opening the same files does not share the store (the issue's dbm case)."""
    plugin = copy_plugin("dbmkv", tmp_path)
    proc = run_suite(tmp_path, plugin, "path={tmp}/kv")
    out = proc.stdout + proc.stderr
    got = contracts(out)
    assert proc.returncode == 1, out
    assert "KVStore plugin 'dbmkv'" in out
    failed = sorted(n for n, o in got.items() if o == "FAIL")
    assert failed == ["two_processes_share_the_store"], got
    assert got["racing_increments_are_serialized"] == "PASS"  # threads are fine, processes are not
    assert "does not see the second process's write" in out, out


def test_the_sqlite3_kv_store_shares_the_store_between_processes(tmp_path: Path) -> None:
    plugin = copy_plugin("sqlite3kv", tmp_path)
    proc = run_suite(tmp_path, plugin, "path={tmp}/kv.sqlite3", only="two_processes or racing")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert contracts(out) == {
        "racing_increments_are_serialized": "PASS",
        "two_processes_share_the_store": "PASS",
    }, out


def test_the_in_memory_memdb_skips_the_multi_process_contract_saying_why(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, ROOT / "contrib_plugins" / "memdb", only="two_processes or put_get")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert contracts(out) == {"put_get_peek_delete": "PASS", "two_processes_share_the_store": "SKIP"}, out
    assert re.search(r"^SKIP\s+two_processes_share_the_store\s+\(memdb: in-memory: ", out, re.MULTILINE), out


def test_a_jsonl_syncer_written_outside_keeps_the_delivery_contracts(tmp_path: Path) -> None:
    plugin = copy_plugin("jsonlsink", tmp_path)
    proc = run_suite(tmp_path, plugin, "url={tmp}/sink.jsonl")
    out = proc.stdout + proc.stderr
    got = contracts(out)
    assert proc.returncode == 0, out
    assert got == {
        "every_event_kind_is_accepted": "PASS",
        "events_arrive_in_order_per_sector": "PASS",
        "replays_are_harmless": "PASS",
        "a_raising_event_is_dead_lettered_alone": "PASS",
    }, got


def test_a_syncer_that_drops_events_fails_the_delivery_contracts(tmp_path: Path) -> None:
    plugin = copy_plugin("jsonlsink", tmp_path)
    module = plugin / "jsonlsink.py"  # forget the buffer on a raise: the rest of its batch is lost
    module.write_text(
        module.read_text().replace("def flush(syncer):", "def flush(syncer):\n    BUFFER.clear()")
    )
    proc = run_suite(tmp_path, plugin, "url={tmp}/sink.jsonl")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert set(contracts(out).values()) == {"FAIL"}, out


def test_the_option_is_inert_when_not_given(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(
        "def test_mine(request):\n"
        "    names = request.fixturenames\n"
        "    assert not any(n.startswith('sectorhooks_') for n in names)\n"
        "    import sys\n"
        "    assert 'sectorhooks.host' not in sys.modules\n"
        "    assert 'sectorhooks.testing.target' not in sys.modules\n"
    )
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    if not _entry_point_installed():
        args[3:3] = ["-p", "sectorhooks.testing.plugin"]
    proc = subprocess.run(args, cwd=tmp_path, env=python_env(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed" in out and "sectorhooks contracts" not in out


def test_a_plugin_of_no_suite_or_no_manifest_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_suite(tmp_path, tmp_path / "nowhere")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "--sectorhooks-plugin" in proc.stderr and "no manifest.toml" in proc.stderr


def test_the_bundled_memdb_is_known_wherever_its_directory_lies(tmp_path: Path) -> None:
    """The suite may be given the repository's memdb while the host runs the wheel's copy (CI
    installs the wheel): the in-memory trait follows memdb's code, not one path."""
    from sectorhooks.testing.target import IN_MEMORY, known_traits

    copy = tmp_path / "memdb"
    shutil.copytree(ROOT / "contrib_plugins" / "memdb", copy)
    assert known_traits(copy).process_local == IN_MEMORY
    (copy / "memdb.py").write_text((copy / "memdb.py").read_text() + "\n# changed\n")
    assert known_traits(copy).process_local is None
    assert known_traits(ROOT / "contrib_plugins" / "sqlkv").process_local is None
