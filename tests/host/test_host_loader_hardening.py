"""Loader hardening (issue #16 item 4): names unique after normalisation, malformed zip bundles as
one problem (never a traceback), plugin files other users may write warned about or refused."""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import attrs
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from host.hostkit import KV_MANIFEST, isolated_config, load_host, problems_of, write_plugin
from sectorhooks import loader
from sectorhooks.cli import main
from sectorhooks.config import HostConfig
from sectorhooks.host import PluginHost, PluginStatus
from sectorhooks_spec.kinds import Kind
from sectorhooks_spec.manifest import ManifestError

GOOD_MODULE = "def open_store(meta):\n    return 'good'\n"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def kv_manifest(name: str, module: Optional[str] = None) -> str:
    return KV_MANIFEST.format(name=name) + (f'module = "{module}"\n' if module else "")


def write_good(root: Path, name: str = "good") -> Path:
    d = write_plugin(root, name, kv_manifest(name), GOOD_MODULE)
    secure(d)
    return d


def secure(tree: Path) -> None:
    """0o755 directories, 0o644 files: whatever the umask, the tree starts safe."""
    os.chmod(tree, 0o755)
    for dirpath, dirnames, filenames in os.walk(tree):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


def zip_bytes(members: Sequence[Tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip with exactly these (name, data) entries, names written as given (duplicates too)."""
    path = Path(tempfile.mkstemp(suffix=".zip")[1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": on purpose
            with zipfile.ZipFile(path, "w", compression) as zf:
                for name, data in members:
                    zf.writestr(zipfile.ZipInfo(name), data)
        return path.read_bytes()
    finally:
        path.unlink()


def strict_config(*dirs: Path) -> HostConfig:
    config = isolated_config(dirs)
    return attrs.evolve(config, plugins=attrs.evolve(config.plugins, strict=True))


# --- failure 6: one name, however spelled ------------------------------------------------------

LAZY_MODULE = """
def open_store(meta):
    from . import helper  # lazy: runs at call time, after every plugin was loaded
    return helper.WHO, helper.__file__
"""


@pytest.mark.parametrize(
    "first, second",
    [("dup-x", "dup_x"), ("Dup-X", "dup-x"), ("dup.x", "dup__x"), ("dup-x", "DUP.X")],
)
def test_names_equal_after_normalisation_are_one_plugin_and_the_second_is_refused(
    tmp_path: Path, first: str, second: str
) -> None:
    dirs = []
    for tag, name in (("a", first), ("b", second)):
        d = write_plugin(tmp_path / tag, "p", kv_manifest(name, "impl"), LAZY_MODULE, module_name="impl")
        (d / "helper.py").write_text(f"WHO = {name!r}\n")
        dirs.append(d)
    host = load_host(tmp_path / "a", tmp_path / "b")
    first_path, second_path = (str(d / "manifest.toml") for d in dirs)

    assert list(host.records) == [first]
    assert host.records[first].status is PluginStatus.LOADED
    (problem,) = problems_of(host)
    assert problem.path == second_path and problem.field == "name"
    for text in (first_path, second_path, repr(first), repr(second)):
        assert text in problem.message, problem.message
    assert loader.normalize_name(first) == loader.normalize_name(second)
    assert repr(loader.normalize_name(first)) in problem.message

    host.start()
    who, helper_file = host.call_driver(Kind.KV_STORE, first, "kvstore_constructor", meta={})
    assert who == first
    assert helper_file == str(dirs[0] / "helper.py")


def test_a_refused_spelling_is_never_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    write_plugin(tmp_path / "a", "p", kv_manifest("dup-x", "impl"), GOOD_MODULE, module_name="impl")
    module = f"open({str(marker)!r}, 'w').close()\n" + GOOD_MODULE
    write_plugin(tmp_path / "b", "p", kv_manifest("dup_x", "impl"), module, module_name="impl")
    host = load_host(tmp_path / "a", tmp_path / "b").start()
    assert not marker.exists()
    assert host.call_driver(Kind.KV_STORE, "dup-x", "kvstore_constructor", meta={}) == "good"


def test_plugins_list_json_shows_the_clash_with_both_paths(tmp_path: Path) -> None:
    a = write_plugin(tmp_path / "plugins", "a", kv_manifest("dup-x", "impl"), GOOD_MODULE, module_name="impl")
    b = write_plugin(tmp_path / "plugins", "b", kv_manifest("dup_x", "impl"), GOOD_MODULE, module_name="impl")
    config = write_config(tmp_path)
    result = run("plugins", "list", "--json", "--config", str(config))
    assert result.exit_code == 1, result.output  # the refused spelling is a problem
    data = json.loads(result.output)
    listed = [(p["name"], p["status"]) for p in data["plugins"] if p["name"].startswith("dup")]
    assert listed == [("dup-x", "loaded"), ("dup_x", "invalid")]
    (error,) = [e for e in data["errors"] if "dup_x" in e]
    assert str(a / "manifest.toml") in error and str(b / "manifest.toml") in error


name_text = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,12}", fullmatch=True)


@given(name_text, name_text)
@example("dup-x", "dup_x")
@example("a-", "a")
@example("a_b", "a__b")
def test_package_names_are_equal_exactly_when_normalised_names_are(a: str, b: str) -> None:
    same_name = loader.normalize_name(a) == loader.normalize_name(b)
    assert (loader.package_name(a) == loader.package_name(b)) is same_name
    for n in (a, b):
        assert loader.package_name(n).split(".", 1)[1].isidentifier()


@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12))
@example("a b", "a_b")
@example("é", "e")
@example("_61", "a")
def test_package_names_of_any_text_never_collide_for_distinct_normalised_names(a: str, b: str) -> None:
    if loader.normalize_name(a) != loader.normalize_name(b):
        assert loader.package_name(a) != loader.package_name(b)


# --- failure 7: malformed zip bundles -----------------------------------------------------------

MANIFEST = kv_manifest("zipped").encode()
MODULE = GOOD_MODULE.encode()


def write_config(tmp_path: Path, strict: bool = False) -> Path:
    (tmp_path / "plugins").mkdir(exist_ok=True)
    path = tmp_path / "host.toml"
    path.write_text(
        f'[Common]\nDataDir = "{tmp_path / "data"}"\n'
        f'[Common.Plugins]\nDir = "{tmp_path / "plugins"}"\nEntryPoints = false\nBundled = false\n'
        + ("Strict = true\n" if strict else "")
    )
    return path


def test_plugins_list_with_an_absolute_manifest_entry_names_zip_and_entry(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    bad = tmp_path / "plugins" / "bad.zip"
    bad.write_bytes(zip_bytes([("/manifest.toml", MANIFEST), ("zipped.py", MODULE)]))
    write_good(tmp_path / "plugins")

    result = run("plugins", "list", "--json", "--config", str(config))
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert [(p["name"], p["status"]) for p in data["plugins"]] == [("good", "loaded"), ("?", "invalid")]
    (error,) = data["errors"]
    assert f"{bad}: [entry '/manifest.toml'] malformed zip entry: absolute path" in error

    table = run("plugins", "list", "--config", str(config))
    assert table.exit_code == 1, table.output
    unwrapped = table.output.replace("\n", "")
    assert "Traceback" not in table.output
    assert str(bad) in unwrapped and "'/manifest.toml'" in unwrapped and "good" in unwrapped


def test_plugin_check_on_an_absolute_manifest_entry_exits_1_naming_zip_and_entry(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(zip_bytes([("/manifest.toml", MANIFEST), ("zipped.py", MODULE)]))
    result = run("plugin", "check", str(bad))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"{bad}: [entry '/manifest.toml'] malformed zip entry: absolute path" in result.output


def test_the_host_serve_loads_skips_a_malformed_bundle_and_starts_the_rest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(zip_bytes([("/manifest.toml", MANIFEST), ("zipped.py", MODULE)]))
    write_good(tmp_path)
    host = load_host(tmp_path).start()
    assert host.records["good"].status is PluginStatus.ACTIVE
    (orphan,) = host.orphans
    assert orphan.path == str(bad)
    (problem,) = orphan.problems
    assert problem.field == "entry '/manifest.toml'"


def _flip_stored_data(blob: bytes, data: bytes) -> bytes:
    at = blob.index(data)
    return blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1 :]


def _set_method(blob: bytes, method: int) -> bytes:
    """Patch the compression method of every entry (local headers and central directory)."""
    out = bytearray(blob)
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = out.find(sig)
        while at != -1:
            struct.pack_into("<H", out, at + offset, method)
            at = out.find(sig, at + 4)
    return bytes(out)


def _set_encrypted(blob: bytes) -> bytes:
    out = bytearray(blob)
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = out.find(sig)
        while at != -1:
            (flags,) = struct.unpack_from("<H", out, at + offset)
            struct.pack_into("<H", out, at + offset, flags | 0x1)
            at = out.find(sig, at + 4)
    return bytes(out)


GOOD_ZIP = [("manifest.toml", MANIFEST), ("zipped.py", MODULE)]

#: name -> (zip bytes, field of the one problem, words in its message)
MALFORMED: Dict[str, Tuple[bytes, str, str]] = {
    "absolute": (zip_bytes([("/manifest.toml", MANIFEST)]), "entry '/manifest.toml'", "absolute path"),
    "absolute-module": (
        zip_bytes([*GOOD_ZIP, ("/etc/evil.py", b"")]),
        "entry '/etc/evil.py'",
        "absolute path",
    ),
    "drive": (zip_bytes([*GOOD_ZIP, ("C:/x.py", b"")]), "entry 'C:/x.py'", "absolute path"),
    "dotdot": (zip_bytes([*GOOD_ZIP, ("../zipped.py", MODULE)]), "entry '../zipped.py'", "'..' component"),
    "dotdot-inside": (zip_bytes([*GOOD_ZIP, ("a/../../b.py", b"")]), "entry 'a/../../b.py'", "'..'"),
    "backslash": (
        zip_bytes([*GOOD_ZIP, ("pkg\\mod.py", b"")]),
        "entry 'pkg\\\\mod.py'",
        "backslash",
    ),
    "empty-component": (zip_bytes([*GOOD_ZIP, ("a//b.py", b"")]), "entry 'a//b.py'", "empty or '.'"),
    "dot-component": (zip_bytes([("./manifest.toml", MANIFEST)]), "entry './manifest.toml'", "'.'"),
    "control-char": (zip_bytes([*GOOD_ZIP, ("a\x01.py", b"")]), "entry 'a\\x01.py'", "control character"),
    "duplicate": (
        zip_bytes([*GOOD_ZIP, ("zipped.py", b"raise SystemExit\n")]),
        "entry 'zipped.py'",
        "duplicate entry",
    ),
    "corrupt-member": (
        _flip_stored_data(zip_bytes(GOOD_ZIP), MODULE),
        "entry 'zipped.py'",
        "unreadable entry: BadZipFile",
    ),
    "unknown-compression": (
        _set_method(zip_bytes(GOOD_ZIP), 99),
        "entry 'manifest.toml'",
        "unreadable entry: NotImplementedError",
    ),
    "encrypted": (_set_encrypted(zip_bytes(GOOD_ZIP)), "entry 'manifest.toml'", "unreadable entry"),
    "manifest-not-utf8": (
        zip_bytes([("manifest.toml", b'name = "caf\xe9"\n'), ("zipped.py", MODULE)]),
        "entry 'manifest.toml'",
        "manifest is not UTF-8",
    ),
    "no-manifest": (zip_bytes([("zipped.py", MODULE)]), "<bundle>", "no manifest.toml"),
    "two-tops": (
        zip_bytes([("a/manifest.toml", MANIFEST), ("b/manifest.toml", MANIFEST)]),
        "<bundle>",
        "no manifest.toml",
    ),
    "not-a-zip": (b"PK\x03\x04 certainly not a zip", "<file>", "cannot read plugin"),
    "truncated": (zip_bytes(GOOD_ZIP)[:-30], "<file>", "cannot read plugin"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_bundle_is_one_problem_naming_zip_and_entry_and_the_rest_load(
    tmp_path: Path, case: str
) -> None:
    blob, field, words = MALFORMED[case]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(blob)
    write_good(tmp_path)

    found = list(loader.scan_dir(tmp_path))
    errors = [e for _, e in found if e is not None]
    assert [c.manifest_path for c, _ in found if c is not None] == [str(tmp_path / "good" / "manifest.toml")]
    (error,) = errors
    assert error.path == str(bad)
    (problem,) = error.problems
    assert problem.path == str(bad)
    assert problem.field == field
    assert words in problem.message, problem.message

    host = load_host(tmp_path).start()
    assert host.records["good"].status is PluginStatus.ACTIVE
    assert [o.path for o in host.orphans] == [str(bad)]

    checked = run("plugin", "check", str(bad))
    assert checked.exit_code == 1 and "Traceback" not in checked.output
    assert f"{bad}: [{field}]" in checked.output and words in checked.output


def test_several_malformed_entries_are_still_one_problem_listing_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(zip_bytes([("/manifest.toml", MANIFEST), ("../x.py", b""), ("a\\b.py", b"")]))
    with pytest.raises(ManifestError) as info:
        loader.zip_candidate(bad)
    (problem,) = info.value.problems
    assert problem.field == "entry '/manifest.toml'"
    assert "and 2 more malformed: '../x.py', 'a\\\\b.py'" in problem.message


def test_a_well_formed_bundle_still_loads_from_its_top_directory(tmp_path: Path) -> None:
    (tmp_path / "ok.zip").write_bytes(
        zip_bytes([("top/", b""), ("top/manifest.toml", MANIFEST), ("top/zipped.py", MODULE)])
    )
    host = load_host(tmp_path).start()
    assert host.call_driver(Kind.KV_STORE, "zipped", "kvstore_constructor", meta={}) == "good"


SPECIAL_NAMES = [
    "manifest.toml",
    "/manifest.toml",
    "../manifest.toml",
    "top/manifest.toml",
    "top/../manifest.toml",
    "\\manifest.toml",
    "top\\manifest.toml",
    "",
    "/",
    "./",
    "top/",
    "zipped.py",
    "a//b",
    "C:manifest.toml",
]
member_names = st.one_of(st.sampled_from(SPECIAL_NAMES), st.text(max_size=20))
member_data = st.one_of(st.sampled_from([MANIFEST, MODULE, b"\xff\xfe", b""]), st.binary(max_size=40))


def malformed(name: str) -> bool:
    """The test's own statement of a bad entry name (independent of the loader's)."""
    if name == "" or name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return True
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return True
    parts = name.rstrip("/").split("/") if name.endswith("/") else name.split("/")
    return any(p in ("", ".", "..") for p in parts) or name.endswith("//")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(member_names, member_data), max_size=6), st.sampled_from(["stored", "deflated"]))
@example([("/manifest.toml", MANIFEST)], "stored")
@example([("manifest.toml", MANIFEST), ("manifest.toml", MANIFEST)], "stored")
def test_scan_dir_never_raises_on_any_member_names(members: List[Tuple[str, bytes]], method: str) -> None:
    compression = zipfile.ZIP_STORED if method == "stored" else zipfile.ZIP_DEFLATED
    blob = zip_bytes(members, compression)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "fuzz.zip"
        bundle.write_bytes(blob)
        names = [i.filename for i in zipfile.ZipFile(bundle).infolist()]  # as zipfile stores them
        (found,) = list(loader.scan_dir(Path(tmp)))
    candidate, error = found
    if candidate is not None:
        assert error is None
        assert not any(malformed(n) for n in names), names
        assert len(set(n.rstrip("/") for n in names)) == len(names), names
        assert candidate.manifest_path.startswith(f"{bundle}/") and candidate.bundle == str(bundle)
    else:
        assert isinstance(error, ManifestError)
        assert error.path == str(bundle) and len(error.problems) == 1
        assert str(bundle) in str(error)
        field = error.problems[0].field
        assert field in {f"entry {n!r}" for n in names} | {"<bundle>"}, (names, str(error))
        bad = [n for n in names if malformed(n)]
        if bad:  # the first is the field, the others are listed after it
            assert field != "<bundle>" and all(repr(n) in str(error) for n in bad), (names, str(error))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_scan_dir_never_raises_on_corrupted_bundle_bytes(data: st.DataObject) -> None:
    blob = bytearray(zip_bytes(GOOD_ZIP, zipfile.ZIP_DEFLATED))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "fuzz.zip"
        bundle.write_bytes(bytes(blob[:cut] if data.draw(st.booleans()) else blob))
        (found,) = list(loader.scan_dir(Path(tmp)))
    candidate, error = found
    assert (candidate is None) != (error is None)
    if error is not None:
        assert error.path == str(bundle) and len(error.problems) == 1


# --- item 4 part 3: files other users may write -------------------------------------------------

UNSAFE = "is writable by other users"


def unsafe_warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and UNSAFE in r.getMessage()
    ]


def perm_plugin(root: Path, name: str = "perm", marker: Optional[Path] = None) -> Path:
    module = (f"open({str(marker)!r}, 'w').close()\n" if marker else "") + GOOD_MODULE
    d = write_plugin(root, name, kv_manifest(name), module, files={"sub/__init__.py": "", "sub/deep.py": ""})
    secure(d)
    return d


@pytest.mark.parametrize(
    "rel, mode",
    [
        ("perm.py", 0o666),
        ("perm.py", 0o664),
        ("manifest.toml", 0o646),
        (".", 0o777),
        (".", 0o775),
        ("sub", 0o757),
        ("sub/deep.py", 0o666),
    ],
)
def test_a_plugin_file_others_may_write_is_warned_about_and_still_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, rel: str, mode: int
) -> None:
    d = perm_plugin(tmp_path)
    target = d / rel if rel != "." else d
    os.chmod(target, mode)
    with caplog.at_level(logging.WARNING, logger="sectorhooks"):
        host = load_host(tmp_path).start()
    assert host.records["perm"].status is PluginStatus.ACTIVE
    path = str(target) if rel != "." else str(d)
    assert unsafe_warnings(caplog) == [f"plugin 'perm': {path} {UNSAFE} (mode 0o{mode:o}); chmod go-w it"]


def test_safe_modes_and_hidden_dirs_give_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = perm_plugin(tmp_path)
    (d / ".git").mkdir()
    os.chmod(d / ".git", 0o777)  # nothing is imported from a hidden directory
    (d / "README").write_text("x")
    os.chmod(d / "README", 0o666)  # not code
    os.chmod(d / "perm.py", 0o600)
    os.chmod(d, 0o700 | stat.S_ISGID)
    with caplog.at_level(logging.WARNING, logger="sectorhooks"):
        host = load_host(tmp_path).start()
    assert host.records["perm"].status is PluginStatus.ACTIVE
    assert unsafe_warnings(caplog) == []


def test_every_unsafe_path_is_named_in_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = perm_plugin(tmp_path)
    os.chmod(d, 0o777)
    os.chmod(d / "perm.py", 0o666)
    with caplog.at_level(logging.WARNING, logger="sectorhooks"):
        load_host(tmp_path)
    (message,) = unsafe_warnings(caplog)
    assert f"{d} {UNSAFE} (mode 0o777)" in message
    assert f"{d / 'perm.py'} {UNSAFE} (mode 0o666)" in message
    assert message.endswith("chmod go-w them")


def test_strict_refuses_a_plugin_others_may_write_without_importing_it(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    d = perm_plugin(tmp_path / "plugins", marker=marker)
    write_good(tmp_path / "plugins")
    os.chmod(d / "perm.py", 0o666)
    host = PluginHost(strict_config(tmp_path / "plugins")).load().start()
    record = host.records["perm"]
    assert record.status is PluginStatus.FAILED
    assert record.error == (
        f"plugin 'perm': {d / 'perm.py'} {UNSAFE} (mode 0o666); chmod go-w it; "
        "refused: [Common.Plugins] Strict = true"
    )
    assert not marker.exists()
    assert record.bound is None and "perm" not in {i.plugin for i in host.impls("kvstore_constructor")}
    assert host.records["good"].status is PluginStatus.ACTIVE


def test_strict_loads_a_plugin_whose_files_are_safe(tmp_path: Path) -> None:
    perm_plugin(tmp_path)
    host = PluginHost(strict_config(tmp_path)).load().start()
    assert host.call_driver(Kind.KV_STORE, "perm", "kvstore_constructor", meta={}) == "good"


def test_a_zip_bundle_others_may_write_is_warned_about_and_refused_when_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = tmp_path / "zipped.zip"
    bundle.write_bytes(zip_bytes(GOOD_ZIP))
    os.chmod(bundle, 0o666)
    with caplog.at_level(logging.WARNING, logger="sectorhooks"):
        host = load_host(tmp_path).start()
    assert host.records["zipped"].status is PluginStatus.ACTIVE
    assert unsafe_warnings(caplog) == [f"plugin 'zipped': {bundle} {UNSAFE} (mode 0o666); chmod go-w it"]

    strict = PluginHost(strict_config(tmp_path)).load()
    assert strict.records["zipped"].status is PluginStatus.FAILED
    assert str(bundle) in strict.records["zipped"].error and "Strict" in strict.records["zipped"].error

    os.chmod(bundle, 0o644)
    assert PluginHost(strict_config(tmp_path)).load().start().records["zipped"].status is PluginStatus.ACTIVE


def test_strict_from_the_config_file_shows_failed_in_plugins_list(tmp_path: Path) -> None:
    config = write_config(tmp_path, strict=True)
    d = perm_plugin(tmp_path / "plugins")
    os.chmod(d / "manifest.toml", 0o666)
    result = run("plugins", "list", "--json", "--config", str(config))
    assert result.exit_code == 1, result.output
    (plugin,) = json.loads(result.output)["plugins"]
    assert plugin["status"] == "failed"
    assert f"{d / 'manifest.toml'} {UNSAFE} (mode 0o666)" in plugin["error"]


ENTRY_POINTS = "[sectorhooks.plugins]\n{name} = {package}\n"


def test_an_entry_point_package_dir_others_may_write_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    tag = os.urandom(3).hex()
    package, name = f"sh_perm_{tag}", f"eperm_{tag}"
    site = tmp_path / "site"
    pkg = write_plugin(site, package, kv_manifest(name, "impl"), GOOD_MODULE, module_name="impl")
    (pkg / "__init__.py").write_text("")
    dist = site / f"sh_perm_{tag}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sh-perm-{tag}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS.format(name=name, package=package))
    secure(site)
    os.chmod(pkg, 0o777)
    monkeypatch.syspath_prepend(str(site))
    config = isolated_config()
    config = attrs.evolve(config, plugins=attrs.evolve(config.plugins, entry_points=True))

    with caplog.at_level(logging.WARNING, logger="sectorhooks"):
        host = PluginHost(config).load().start()
    assert host.records[name].status is PluginStatus.ACTIVE
    assert host.records[name].source == f"entry-point:{package}"
    assert unsafe_warnings(caplog) == [f"plugin {name!r}: {pkg} {UNSAFE} (mode 0o777); chmod go-w it"]

    strict = PluginHost(attrs.evolve(config, plugins=attrs.evolve(config.plugins, strict=True))).load()
    assert strict.records[name].status is PluginStatus.FAILED
