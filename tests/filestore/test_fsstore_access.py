"""fsstore access rules on a real temp filesystem: read-only, miner lists, strict roots, capacity."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from sectorhooks.errors import PluginCallError
from sectorhooks_spec import FileStore, FileStoreError, PathType, SectorID

SID = SectorID(4040, 1001)
MakeStore = Callable[..., FileStore]


def test_read_only_store_refuses_write_paths_but_serves_reads(make_store: MakeStore, tmp_path: Path) -> None:
    root = tmp_path / "ro"
    (root / "sealed").mkdir(parents=True)
    (root / "sealed" / "s-t04040-1001").write_bytes(b"replica")
    fs = make_store("archive", path=root, read_only=True)
    path = fs.full_path(PathType.SEALED, SID)
    assert Path(path).read_bytes() == b"replica"
    for ptype in (PathType.SEALED, PathType.CACHE, PathType.UPDATE):
        with pytest.raises(FileStoreError, match=r"store 'archive' is read-only"):
            fs.full_path(ptype, SID, for_write=True)
    with pytest.raises(FileStoreError, match="read-only"):
        fs.full_path(PathType.PIECE, None, "bafyabc", for_write=True)
    assert not (root / "cache").exists(), "a refused write must not create directories"


def test_deny_miners_refuse_writes_naming_store_and_miner(make_store: MakeStore) -> None:
    fs = make_store("p1", deny_miners=(4040,))
    with pytest.raises(FileStoreError) as info:
        fs.full_path(PathType.SEALED, SID, for_write=True)
    assert "store 'p1'" in str(info.value) and "miner 4040" in str(info.value)
    assert "DenyMiners" in str(info.value)
    assert fs.full_path(PathType.SEALED, SectorID(1000, 1), for_write=True)
    # reading an already stored sector of a denied miner still works (it must stay provable)
    assert fs.full_path(PathType.SEALED, SID).endswith("sealed/s-t04040-1001")


def test_allow_miners_admit_only_the_listed_miners(make_store: MakeStore) -> None:
    fs = make_store("p2", allow_miners=(1000, 1001))
    assert fs.full_path(PathType.CACHE, SectorID(1001, 7), for_write=True).endswith("cache/s-t01001-7")
    with pytest.raises(FileStoreError, match=r"store 'p2' does not accept miner 4040 \(AllowMiners"):
        fs.full_path(PathType.CACHE, SID, for_write=True)


def test_write_paths_create_parent_directories(make_store: MakeStore) -> None:
    fs = make_store("w", meta={"SubDirPattern": "{type}/{miner}/{sector}"})
    path = Path(fs.full_path(PathType.SEALED, SID, for_write=True))
    assert path.parent.is_dir() and not path.exists()
    path.write_bytes(b"x")
    assert path.read_bytes() == b"x"


def test_create_dirs_false_leaves_the_tree_alone(make_store: MakeStore) -> None:
    fs = make_store("w", meta={"CreateDirs": "false"})
    path = Path(fs.full_path(PathType.SEALED, SID, for_write=True))
    assert not path.parent.exists()


def test_reads_never_create_anything(make_store: MakeStore) -> None:
    fs = make_store("r")
    fs.full_path(PathType.CACHE, SID)
    assert list(Path(fs.instance_config().path).iterdir()) == []


def test_strict_store_needs_an_existing_directory(make_store: MakeStore, tmp_path: Path) -> None:
    with pytest.raises(FileStoreError, match="does not exist and the store is Strict"):
        make_store("strict", path=tmp_path / "missing", strict=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileStoreError, match="exists but is not a directory"):
        make_store("strict", path=tmp_path / "afile", strict=True)
    (tmp_path / "there").mkdir()
    assert make_store("strict", path=tmp_path / "there", strict=True).instance_name() == "strict"


def test_non_strict_store_creates_its_root(make_store: MakeStore, tmp_path: Path) -> None:
    make_store("lazy", path=tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()


def test_read_only_store_with_missing_root_is_refused(make_store: MakeStore, tmp_path: Path) -> None:
    with pytest.raises(FileStoreError, match="does not exist and the store is ReadOnly"):
        make_store("ro", path=tmp_path / "nope", read_only=True)
    assert not (tmp_path / "nope").exists()


def test_unknown_meta_key_is_refused_naming_it(make_store: MakeStore) -> None:
    with pytest.raises(PluginCallError, match=r"store 's': unknown Meta key\(s\) 'SubdirPattern'"):
        make_store(meta={"SubdirPattern": "{type}/{sector}"})


def test_bad_create_dirs_value_is_refused(make_store: MakeStore) -> None:
    with pytest.raises(PluginCallError, match=r"Meta.CreateDirs must be true or false, got 'yes'"):
        make_store(meta={"CreateDirs": "yes"})


def test_capacity_equals_shutil_disk_usage(make_store: MakeStore, tmp_path: Path) -> None:
    fs = make_store("cap")
    root = fs.instance_config().path
    # Other processes write to this disk: compare only when two readings around ours agree.
    for _ in range(50):
        before = shutil.disk_usage(root)
        info = fs.instance_info()
        after = shutil.disk_usage(root)
        if before == after:
            break
    else:
        pytest.fail("disk usage never stood still for three readings")
    assert (info.total, info.free, info.used) == (before.total, before.free, before.used)
    assert info.type == "fs" and info.config is fs.instance_config()
    assert 0 < info.usage_percent < 100
    st = os.statvfs(root)
    assert info.total == st.f_blocks * st.f_frsize


def test_instance_info_of_a_vanished_root_is_a_clear_error(make_store: MakeStore, tmp_path: Path) -> None:
    fs = make_store("gone", path=tmp_path / "gone")
    (tmp_path / "gone").rmdir()
    with pytest.raises(FileStoreError, match=r"store 'gone': cannot stat"):
        fs.instance_info()
