"""``sectorhooks plugin build``: validated, stamped, reproducible bundles that load like the directory."""

from __future__ import annotations

import hashlib
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.regkit import GREET
from sectorhooks import bundle
from sectorhooks.cli import run
from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost, PluginStatus
from sectorhooks_spec.manifest import load_toml


def _copy_greet(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "greet"
    shutil.copytree(GREET, src)
    # Clutter a real source tree has: none of it may reach the bundle.
    (src / "__pycache__").mkdir(exist_ok=True)
    (src / "__pycache__" / "greet.cpython-311.pyc").write_bytes(b"\x00junk")
    (src / "helpers" / "words.pyc").write_bytes(b"\x00junk")
    (src / ".hidden").write_text("x")
    return src


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_twice_with_same_source_date_epoch_is_byte_identical(tmp_path, monkeypatch):
    src = _copy_greet(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert run(["plugin", "build", "--src-dir", str(src), "--out-dir", str(tmp_path / "a")]) == 0
    # Different mtimes and permissions on the sources must not matter.
    (src / "greet.py").touch()
    (src / "greet.py").chmod(0o755)
    assert run(["plugin", "build", "--src-dir", str(src), "--out-dir", str(tmp_path / "b")]) == 0
    a, b = tmp_path / "a" / "plugin-greet-1.2.0.zip", tmp_path / "b" / "plugin-greet-1.2.0.zip"
    assert _sha(a) == _sha(b)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000100")
    assert run(["plugin", "build", "--src-dir", str(src), "--out-dir", str(tmp_path / "c")]) == 0
    assert _sha(tmp_path / "c" / "plugin-greet-1.2.0.zip") != _sha(a)


def test_bundle_holds_sorted_entries_fixed_times_and_modes_and_no_caches(tmp_path):
    src = _copy_greet(tmp_path)
    result = bundle.build(src, tmp_path / "out", epoch=1700000000)
    with zipfile.ZipFile(result.path) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        manifest = zf.read("manifest.toml").decode()
    assert names == sorted(names)
    assert "manifest.toml" in names and "helpers/words.py" in names and "helpers/" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "/." in "/" + n]
    assert {i.date_time for i in infos} == {(2023, 11, 14, 22, 13, 20)}
    assert {i.external_attr >> 16 for i in infos if not i.is_dir()} == {0o100644}
    assert {i.compress_type for i in infos if not i.is_dir()} == {zipfile.ZIP_DEFLATED}
    data, _ = load_toml(manifest, "manifest.toml")
    assert data is not None and data["build_time"] == "2023-11-14T22:13:20Z" == result.build_time
    # Only build_time was added: every line of the source manifest is still there, in order.
    original = (src / "manifest.toml").read_text().splitlines()
    assert [line for line in manifest.splitlines() if not line.startswith("build_time")] == original


def test_without_source_date_epoch_entries_carry_1980_and_build_time_is_now(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    result = bundle.build(_copy_greet(tmp_path), tmp_path / "out", now=1800000000)
    with zipfile.ZipFile(result.path) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert result.build_time == "2027-01-15T08:00:00Z"


def test_bundle_loads_from_a_plugin_dir_and_works_like_the_directory(tmp_path):
    src = _copy_greet(tmp_path)
    built = bundle.build(src, tmp_path / "plugins", epoch=1700000000)

    def call(plugin_dir: Path) -> tuple:
        host = PluginHost(
            HostConfig(plugins=PluginsConfig(dirs=(plugin_dir,), bundled=False, entry_points=False))
        )
        host.load().start()
        record = host.records["greet"]
        assert record.status is PluginStatus.ACTIVE, record.error
        namespace, api = host.impl("greet", "jsonrpc_handler")()
        out = (
            record.source.split(":")[0],
            namespace,
            api.Hello("bob"),
            api.Count(),
            record.manifest.build_time,
        )
        # The helper module really came from where the record says (zipimport for the bundle).
        words = sys.modules["sectorhooks_plugins.greet.helpers.words"]
        out += (type(words.__loader__).__name__,)
        host.shutdown()
        return out

    from_zip = call(tmp_path / "plugins")
    from_dir = call(src)
    assert from_zip[0] == "zip" and from_dir[0] == "dir"
    assert from_zip[1:4] == from_dir[1:4] == ("Greet", "hello, bob", 1)
    assert from_zip[4] == built.build_time and from_dir[4] == ""
    assert from_zip[5] == "zipimporter" and from_dir[5] == "SourceFileLoader"


def test_build_refuses_an_invalid_plugin_naming_the_problem(tmp_path, capsys):
    src = _copy_greet(tmp_path)
    text = (src / "manifest.toml").read_text().replace('impl = "health"', 'impl = "no_such_function"')
    (src / "manifest.toml").write_text(text)
    assert run(["plugin", "build", "--src-dir", str(src), "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no_such_function" in err and "export[1].impl" in err
    assert not list((tmp_path / "out").glob("*.zip")) if (tmp_path / "out").exists() else True


def test_build_refuses_a_plugin_whose_module_fails_to_import(tmp_path, capsys):
    src = _copy_greet(tmp_path)
    (src / "greet.py").write_text("raise RuntimeError('broken at import')\n")
    assert run(["plugin", "build", "--src-dir", str(src), "--out-dir", str(tmp_path / "out")]) == 1
    assert "broken at import" in capsys.readouterr().err


def test_build_needs_a_version(tmp_path, capsys):
    src = _copy_greet(tmp_path)
    text = (src / "manifest.toml").read_text().replace('version = "1.2.0"\n', "")
    (src / "manifest.toml").write_text(text)
    assert run(["plugin", "build", "--src-dir", str(src), "--out-dir", str(tmp_path / "out")]) == 1
    assert "needs a version" in capsys.readouterr().err


def test_existing_build_time_line_is_replaced_in_place():
    text = 'name = "x"\nbuild_time = "old"  # stamped by plugin build\nkind = "KVStore"\n'
    assert bundle.stamp_build_time(text, "2024-01-01T00:00:00Z") == (
        'name = "x"\nbuild_time = "2024-01-01T00:00:00Z"\nkind = "KVStore"\n'
    )


_values = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@settings(max_examples=100, deadline=None)
@given(
    description=_values,
    version=st.one_of(st.none(), st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3}){0,2}\Z")),
    old_stamp=st.one_of(st.none(), _values),
    trailer=st.sampled_from(["", "\n", '\n[[export]]\nextPoint = "Handler"\nimpl = "h"\n']),
    epoch=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_stamping_changes_only_build_time(description, version, old_stamp, trailer, epoch):
    import json

    lines = ['name = "p"', f"description = {json.dumps(description, ensure_ascii=False)}"]
    if old_stamp is not None:
        lines.append(f"build_time = {json.dumps(old_stamp, ensure_ascii=False)}")
    if version is not None:
        lines.append(f'version = "{version}"')
    text = "\n".join(lines) + trailer
    stamp = bundle.rfc3339(epoch)
    before, _ = load_toml(text, "m")
    after, _ = load_toml(bundle.stamp_build_time(text, stamp), "m")
    assert after == dict(before, build_time=stamp)


def test_zip_timestamp_is_clamped_to_the_zip_range():
    assert bundle.zip_timestamp(0) == (1980, 1, 1, 0, 0, 0)
    assert bundle.zip_timestamp(1700000001)[5] % 2 == 0


@pytest.mark.parametrize("value", ["abc", "-5", "1.5"])
def test_bad_source_date_epoch_is_a_clear_error(value):
    with pytest.raises(Exception, match="SOURCE_DATE_EPOCH"):
        bundle.source_date_epoch({"SOURCE_DATE_EPOCH": value})
