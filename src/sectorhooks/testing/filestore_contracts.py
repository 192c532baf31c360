"""The FileStore conformance suite: the contracts of ``sectorhooks_spec.filestore``, one test each.

Runs against the plugin under test (fixture ``sectorhooks_make_filestore``) and, in sectorhooks'
own tests, against the bundled fsstore. Only what the SPI promises is checked: a store's layout
(``sub_path``) is the plugin's choice, its messages need only name the store (and the miner).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import pytest

from sectorhooks_spec.errors import FileStoreError
from sectorhooks_spec.filestore import FileStore, InstanceInfo, PathType
from sectorhooks_spec.sector import SectorID

SID = SectorID(4040, 1001)
SECTOR_TYPES = (PathType.SEALED, PathType.CACHE, PathType.UNSEALED, PathType.UPDATE, PathType.UPDATE_CACHE)
MakeStore = Callable[..., Any]


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([os.path.realpath(root), os.path.realpath(path)]) == os.path.realpath(root)


def test_store_is_a_filestore_and_reports_its_config(
    sectorhooks_make_filestore: MakeStore, tmp_path: Path
) -> None:
    fs = sectorhooks_make_filestore("persist-1", weight=3)
    assert isinstance(fs, FileStore)
    assert fs.instance_name() == "persist-1"
    assert fs.instance_config().weight == 3
    assert fs.instance_config().path == str(tmp_path / "persist-1")


def test_every_path_lies_inside_the_root_and_sectors_do_not_share_files(
    sectorhooks_make_filestore: MakeStore,
) -> None:
    fs = sectorhooks_make_filestore()
    root = fs.instance_config().path
    seen: Dict[str, Tuple[PathType, SectorID]] = {}
    for sid in (SID, SectorID(4040, 1002), SectorID(4041, 1001)):
        for ptype in SECTOR_TYPES:
            full = fs.full_path(ptype, sid)
            assert _inside(root, full), f"{ptype.value} of {sid}: {full} is outside {root}"
            assert os.path.join(root, fs.sub_path(ptype, sid)) == full
            assert seen.setdefault(full, (ptype, sid)) == (ptype, sid), f"{full} is used twice"
    assert _inside(root, fs.full_path(PathType.PIECE, None, "bafyabc"))


def test_sector_types_need_a_sector_id(sectorhooks_make_filestore: MakeStore) -> None:
    with pytest.raises(FileStoreError):
        sectorhooks_make_filestore().sub_path(PathType.SEALED, None)


@pytest.mark.parametrize("custom", ["../../etc/passwd", "a/../../b", "..", "/etc/passwd", "", None])
def test_paths_leaving_the_root_are_refused(sectorhooks_make_filestore: MakeStore, custom: Any) -> None:
    fs = sectorhooks_make_filestore()
    with pytest.raises(FileStoreError):
        fs.full_path(PathType.CUSTOM, None, custom)
    with pytest.raises(FileStoreError):
        fs.full_path(PathType.CUSTOM, None, custom, for_write=True)
    with pytest.raises(FileStoreError):
        fs.full_path(PathType.PIECE, None, custom if custom else "../x")


def test_symlink_pointing_outside_the_root_is_refused(
    sectorhooks_make_filestore: MakeStore, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    fs = sectorhooks_make_filestore("s")
    root = Path(fs.instance_config().path)
    root.mkdir(parents=True, exist_ok=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FileStoreError):
        fs.full_path(PathType.CUSTOM, None, "link/file", for_write=True)
    assert not any(outside.iterdir()), "nothing may be created outside the root"


def test_read_only_store_refuses_write_paths_but_serves_reads(
    sectorhooks_make_filestore: MakeStore, tmp_path: Path
) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    fs = sectorhooks_make_filestore("archive", path=root, read_only=True)
    assert _inside(str(root), fs.full_path(PathType.SEALED, SID))
    for ptype in SECTOR_TYPES:
        with pytest.raises(FileStoreError, match="archive"):
            fs.full_path(ptype, SID, for_write=True)
    with pytest.raises(FileStoreError, match="archive"):
        fs.full_path(PathType.PIECE, None, "bafyabc", for_write=True)
    assert list(root.iterdir()) == [], "a refused write must not create anything"


def test_deny_miners_refuse_writes_naming_store_and_miner(sectorhooks_make_filestore: MakeStore) -> None:
    fs = sectorhooks_make_filestore("p1", deny_miners=(4040,))
    with pytest.raises(FileStoreError) as info:
        fs.full_path(PathType.SEALED, SID, for_write=True)
    assert "p1" in str(info.value) and "4040" in str(info.value)
    assert fs.full_path(PathType.SEALED, SectorID(1000, 1), for_write=True)
    # reading an already stored sector of a denied miner still works (it must stay provable)
    assert fs.full_path(PathType.SEALED, SID)


def test_allow_miners_admit_only_the_listed_miners(sectorhooks_make_filestore: MakeStore) -> None:
    fs = sectorhooks_make_filestore("p2", allow_miners=(1000, 1001))
    assert fs.full_path(PathType.CACHE, SectorID(1001, 7), for_write=True)
    with pytest.raises(FileStoreError) as info:
        fs.full_path(PathType.CACHE, SID, for_write=True)
    assert "p2" in str(info.value) and "4040" in str(info.value)


def test_reads_never_create_anything(sectorhooks_make_filestore: MakeStore) -> None:
    fs = sectorhooks_make_filestore("r")
    root = Path(fs.instance_config().path)
    before = sorted(root.rglob("*")) if root.exists() else []
    for ptype in SECTOR_TYPES:
        fs.full_path(ptype, SID)
    assert (sorted(root.rglob("*")) if root.exists() else []) == before


def test_write_paths_can_be_written(sectorhooks_make_filestore: MakeStore) -> None:
    fs = sectorhooks_make_filestore("w")
    path = Path(fs.full_path(PathType.SEALED, SID, for_write=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    assert Path(fs.full_path(PathType.SEALED, SID)).read_bytes() == b"x"


def test_capacity_equals_the_filesystem(sectorhooks_make_filestore: MakeStore) -> None:
    fs = sectorhooks_make_filestore("cap")
    root = fs.instance_config().path
    os.makedirs(root, exist_ok=True)
    # Other processes write to this disk: compare only when two readings around ours agree.
    for _ in range(50):
        before = shutil.disk_usage(root)
        info = fs.instance_info()
        after = shutil.disk_usage(root)
        if before == after:
            break
    else:
        pytest.fail("disk usage never stood still for three readings")
    assert isinstance(info, InstanceInfo)
    assert (info.total, info.free, info.used) == (before.total, before.free, before.used)
    assert info.config == fs.instance_config()
    assert 0 <= info.usage_percent <= 100
