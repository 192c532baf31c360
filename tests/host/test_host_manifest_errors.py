"""Every manifest validation error names the file and the field, and says what to do.

Table-driven: each case is a plugin on disk (manifest + module) and the problem the host must
report for it. The host loads it next to a good plugin, which must stay usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from host.hostkit import (
    KV_MANIFEST,
    SYNC_MODULE,
    load_host,
    problems_of,
    sync_exports,
    write_plugin,
)
from sectorhooks.host import PluginStatus
from sectorhooks_spec.manifest import ManifestError, parse_manifest


class Case(NamedTuple):
    id: str
    manifest: str
    module: str
    field: str
    message: str  # fragment of the problem's message
    hint: str = ""  # fragment of the hint (the "what to do")


GOOD_KV = KV_MANIFEST.format(name="bad")
KV_MODULE = "def open_store(meta):\n    return meta\n"

CASES = [
    Case(
        "unknown-key-suggests-close-match",
        GOOD_KV + 'descripton = "typo"\n',
        KV_MODULE,
        "descripton",
        "unknown key 'descripton'",
        "did you mean 'description'?",
    ),
    Case(
        "unknown-key-without-close-match-lists-keys",
        GOOD_KV + "zzz = 1\n",
        KV_MODULE,
        "zzz",
        "unknown key 'zzz'",
        "allowed: name, description, kind",
    ),
    Case(
        "unknown-export-key-suggests-close-match",
        'name = "bad"\nkind = "KVStore"\n'
        'export = [{ extPoint = "Constructor", impl = "open_store", imp = "x" }]\n',
        KV_MODULE,
        "export[0].imp",
        "unknown key 'imp'",
        "did you mean 'impl'?",
    ),
    Case(
        "unknown-kind-suggests-close-match",
        'name = "bad"\nkind = "KVstore"\nexport = [{ extPoint = "Constructor", impl = "open_store" }]\n',
        KV_MODULE,
        "kind",
        "unknown kind 'KVstore'",
        "did you mean 'KVStore'?",
    ),
    Case(
        "extpoint-not-of-the-kind",
        'name = "bad"\nkind = "KVStore"\nexport = [\n'
        '  { extPoint = "Constructor", impl = "open_store" },\n'
        '  { extPoint = "OnUpdate", impl = "open_store" },\n]\n',
        KV_MODULE,
        "export[1].extPoint",
        "'OnUpdate' is not an extension point of kind KVStore",
        "allowed: Constructor",
    ),
    Case(
        "required-extpoint-missing",
        'name = "bad"\nkind = "SyncSectorState"\nexport = [\n'
        '  { extPoint = "OnImport", impl = "on_import" },\n'
        '  { extPoint = "OnInit", impl = "on_init" },\n'
        '  { extPoint = "OnUpdate", impl = "on_update" },\n'
        '  { extPoint = "OnFinalize", impl = "on_finalize" },\n]\n',
        SYNC_MODULE,
        "export",
        "requires extPoint 'OnRestore'",
        'extPoint = "OnRestore"',
    ),
    Case(
        "extpoint-exported-twice",
        'name = "bad"\nkind = "KVStore"\nexport = [\n'
        '  { extPoint = "Constructor", impl = "open_store" },\n'
        '  { extPoint = "Constructor", impl = "open_store" },\n]\n',
        KV_MODULE,
        "export[1].extPoint",
        "exported twice",
    ),
    Case(
        "impl-missing-from-module",
        GOOD_KV,
        "def open_other(meta):\n    return meta\n",
        "export[0].impl",
        "function 'open_store' not found in module 'bad'",
        "open_other",
    ),
    Case(
        "impl-not-callable",
        GOOD_KV,
        "open_store = 42\n",
        "export[0].impl",
        "'open_store' is a int (not callable)",
        "function defined with def",
    ),
    Case(
        "impl-takes-argument-the-hookspec-lacks",
        GOOD_KV,
        "def open_store(meta, url):\n    return meta\n",
        "export[0].impl",
        "'open_store' takes argument(s) ['url'] that hook kvstore_constructor does not pass",
        "an impl may take any of: meta",
    ),
    Case(
        "lifecycle-function-also-sync-extpoint",
        'name = "bad"\nkind = "SyncSectorState"\nonInit = "on_init"\n' + sync_exports(),
        SYNC_MODULE,
        "onInit",
        "onInit = 'on_init' is also the impl of extPoint 'OnInit'",
        "separate functions",
    ),
    Case(
        "shutdown-function-also-sync-extpoint",
        'name = "bad"\nkind = "SyncSectorState"\nonShutdown = "on_restore"\n' + sync_exports(),
        SYNC_MODULE,
        "onShutdown",
        "also the impl of extPoint 'OnRestore'",
    ),
    Case(
        "lifecycle-function-missing",
        GOOD_KV + 'onInit = "setup"\n',
        KV_MODULE,
        "onInit",
        "function 'setup' not found",
    ),
    Case(
        "hookimpl-of-another-kind",
        GOOD_KV,
        KV_MODULE
        + "from sectorhooks_spec import hookimpl\n\n@hookimpl\ndef sync_on_update(state):\n    pass\n",
        "<module>",
        "implements 'sync_on_update', not a hook of kind KVStore",
    ),
    Case(
        "wrong-value-type",
        GOOD_KV + "version = 3\n",
        KV_MODULE,
        "version",
        "must be a string, got int",
    ),
    Case(
        "requires-not-a-list-of-strings",
        GOOD_KV + "requires = [1]\n",
        KV_MODULE,
        "requires",
        "must be a list of requirement strings",
    ),
    Case(
        "invalid-module-name",
        GOOD_KV + 'module = "no such"\n',
        KV_MODULE,
        "module",
        "invalid module name 'no such'",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_manifest_problem_names_file_field_and_fix(tmp_path: Path, case: Case) -> None:
    bad = write_plugin(tmp_path, "bad", case.manifest, case.module)
    write_plugin(tmp_path, "good", KV_MANIFEST.format(name="good"), KV_MODULE, module_name="good")
    host = load_host(tmp_path)

    mpath = str(bad / "manifest.toml")
    found = [p for p in problems_of(host) if p.field == case.field]
    assert found, f"no problem on field {case.field!r}; got {[str(p) for p in problems_of(host)]}"
    problem = found[0]
    assert problem.path == mpath
    assert case.message in problem.message
    assert case.hint in problem.hint
    text = str(problem)
    assert mpath in text and f"[{case.field}]" in text
    # the bad plugin is never callable, the good one loads anyway
    if "bad" in host.records:
        assert host.records["bad"].status is PluginStatus.INVALID
        assert mpath in host.records["bad"].error
        assert "plugin 'bad'" in host.records["bad"].error
    assert host.records["good"].status is PluginStatus.LOADED
    assert [i.plugin for i in host.impls("kvstore_constructor")] == ["good"]


STATIC = [
    c
    for c in CASES
    if c.field not in ("<module>",) and "not found" not in c.message and "impl" not in c.field
]


@pytest.mark.parametrize("case", STATIC, ids=[c.id for c in STATIC])
def test_parse_manifest_raises_manifest_error_for_static_problems(case: Case) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(case.manifest, "plugins/bad/manifest.toml")
    err = info.value
    assert err.path == "plugins/bad/manifest.toml"
    assert any(p.field == case.field and case.message in p.message for p in err.problems), str(err)
    assert "plugins/bad/manifest.toml" in str(err) and f"[{case.field}]" in str(err)


class TomlCase(NamedTuple):
    id: str
    text: str
    line: int
    column: int


TOML_CASES = [
    TomlCase("bad-value", 'name = "x"\nkind = KVStore\n', 2, 8),
    TomlCase("duplicate-table", 'name = "x"\n[t]\n[t]\n', 3, 3),
    TomlCase("garbage-after-value", 'name = "x" y\n', 1, 12),
    TomlCase("unclosed-array-at-end", 'name = "x"\nexport = [\n', 3, 1),
    TomlCase("unterminated-string-at-end", 'name = "x', 1, 10),
]


@pytest.mark.parametrize("case", TOML_CASES, ids=[c.id for c in TOML_CASES])
def test_toml_syntax_error_gives_line_and_column(tmp_path: Path, case: TomlCase) -> None:
    bad = write_plugin(tmp_path, "bad", case.text, KV_MODULE)
    host = load_host(tmp_path)
    (problem,) = problems_of(host)
    mpath = str(bad / "manifest.toml")
    assert problem.path == mpath
    assert problem.field == "<toml>"
    assert "TOML syntax error" in problem.message
    assert (problem.line, problem.column) == (case.line, case.column)
    assert str(problem).startswith(f"{mpath}:{case.line}:{case.column}: [<toml>]")


def test_every_problem_of_a_manifest_is_reported_at_once(tmp_path: Path) -> None:
    manifest = (
        'name = "bad"\nkind = "SyncSectorState"\nonInit = "on_init"\nversoin = "1"\n'
        "export = [\n"
        '  { extPoint = "OnImport", impl = "on_import" },\n'
        '  { extPoint = "OnInit", impl = "on_init" },\n'
        '  { extPoint = "OnUpdate", impl = "missing_fn" },\n'
        '  { extPoint = "OnFinalize", impl = "on_finalize" },\n'
        '  { extPoint = "OnRestore", impl = "on_restore" },\n'
        "]\n"
    )
    module = SYNC_MODULE + "\non_finalize = None\n\ndef on_restore(sector_id, color):\n    pass\n"
    bad = write_plugin(tmp_path, "bad", manifest, module)
    host = load_host(tmp_path)
    record = host.records["bad"]
    assert record.status is PluginStatus.INVALID
    # static problems, then the module's: a clash, a missing, a non-callable, two bad signatures
    fields = sorted(p.field for p in record.problems)
    assert fields == sorted(
        ["versoin", "onInit", "export[2].impl", "export[3].impl", "export[4].impl", "onInit"]
    )
    messages = " | ".join(p.message for p in record.problems)
    assert "'missing_fn' not found" in messages
    assert "'on_finalize' is a NoneType (not callable)" in messages
    assert "'on_restore' takes argument(s) ['color']" in messages
    assert "'on_init' takes argument(s) ['syncer', 'states'] that hook plugin_init does not pass" in messages
    assert all(p.path == str(bad / "manifest.toml") for p in record.problems)
    assert "6 problem(s)" in record.error


def test_a_malformed_export_entry_does_not_hide_the_other_entries_impl_problems(tmp_path: Path) -> None:
    manifest = (
        'name = "half"\nkind = "SyncSectorState"\n'
        "export = [\n"
        '  { extPoint = "OnImport", impl = "on_import" },\n'
        '  { extPoint = "OnUpdat", impl = "on_update" },\n'
        '  { extPoint = "OnInit", impl = "missing_fn" },\n'
        '  { extPoint = "OnFinalize", impl = "on_finalize" },\n'
        '  { extPoint = "OnRestore", impl = "on_restore" },\n'
        '  { extPoint = "OnUpdate", impl = "on_update" },\n'
        "]\n"
    )
    write_plugin(tmp_path, "half", manifest, SYNC_MODULE)
    record = load_host(tmp_path).records["half"]
    assert record.status is PluginStatus.INVALID
    by_field = {p.field: p.message for p in record.problems}
    # fields carry the entry's index in the file, not among the valid entries
    assert set(by_field) == {"export[1].extPoint", "export[2].impl"}
    assert "'OnUpdat' is not an extension point" in by_field["export[1].extPoint"]
    assert "'missing_fn' not found" in by_field["export[2].impl"]
    assert record.bound is None
    assert "half" not in {i.plugin for i in load_host(tmp_path).impls("sync_on_import")}


def test_static_problems_are_all_collected_by_parse_manifest() -> None:
    text = 'name = "9bad"\nkind = "KVStor"\nonInit = "not a name"\nfoo = 1\nexport = "x"\n'
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "m.toml")
    fields = {p.field for p in info.value.problems}
    assert fields == {"name", "kind", "onInit", "foo", "export"}


def test_duplicate_plugin_names_name_both_paths(tmp_path: Path) -> None:
    first = write_plugin(
        tmp_path / "one", "kv", KV_MANIFEST.format(name="same"), KV_MODULE, module_name="same"
    )
    second = write_plugin(
        tmp_path / "two", "kv", KV_MANIFEST.format(name="same"), KV_MODULE, module_name="same"
    )
    host = load_host(tmp_path / "one", tmp_path / "two")
    assert host.records["same"].manifest_path == str(first / "manifest.toml")
    assert host.records["same"].status is PluginStatus.LOADED
    (problem,) = problems_of(host)
    assert problem.field == "name"
    assert problem.path == str(second / "manifest.toml")
    assert str(first / "manifest.toml") in problem.message
    assert str(second / "manifest.toml") in problem.message
    assert "duplicate plugin name 'same'" in problem.message


def test_pluggy_validation_surfaces_with_plugin_and_function_named(tmp_path: Path) -> None:
    # pluggy refuses a wrapper that is not a generator; the host reports it as ours.
    module = (
        KV_MODULE
        + "from sectorhooks_spec import hookimpl\n\n"
        + "@hookimpl(wrapper=True)\ndef plugin_health():\n    return None\n"
    )
    write_plugin(tmp_path, "bad", GOOD_KV, module)
    host = load_host(tmp_path)
    record = host.records["bad"]
    assert record.status is PluginStatus.FAILED
    assert "plugin 'bad'" in record.error
    assert "plugin_health" in record.error
    assert str(tmp_path / "bad" / "manifest.toml") in record.error
    # nothing of it stays registered with pluggy
    assert not host.pm.has_plugin("bad")
    assert host.pm.hook.plugin_health.get_hookimpls() == []


def test_module_not_found_names_module_and_directory(tmp_path: Path) -> None:
    write_plugin(tmp_path, "bad", GOOD_KV + 'module = "nowhere"\n', KV_MODULE)
    host = load_host(tmp_path)
    record = host.records["bad"]
    assert record.status is PluginStatus.FAILED
    assert "module 'nowhere' not found" in record.error
    assert str(tmp_path / "bad") in record.error


def test_problem_without_hint_or_position_renders_plainly() -> None:
    from sectorhooks_spec.manifest import Problem

    assert str(Problem("m.toml", "name", "bad")) == "m.toml: [name] bad"
    assert str(Problem("m.toml", "<toml>", "bad", "fix", 3, 4)) == "m.toml:3:4: [<toml>] bad (fix)"
