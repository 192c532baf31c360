"""fsstore path layout: damocles's default layout, SubDirPattern, pieces, custom paths, escapes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sectorhooks.errors import PluginCallError
from sectorhooks_spec import FileStore, FileStoreError, PathType, SectorID

SID = SectorID(4040, 1001)
CID = "bafk2bzacedsp7fjtibu3bqbzqbvs6rjtjonf4ihrxy7xkmtlvvjypzhuj7ai"

MakeStore = Callable[..., FileStore]


def test_store_is_a_filestore_and_reports_its_config(make_store: MakeStore, tmp_path: Path) -> None:
    fs = make_store("persist-1", weight=3)
    assert isinstance(fs, FileStore)
    assert fs.instance_name() == "persist-1"
    assert fs.instance_config().weight == 3
    assert fs.instance_config().path == str(tmp_path / "persist-1")


@pytest.mark.parametrize(
    "path_type, expected",
    [
        (PathType.SEALED, "sealed/s-t04040-1001"),
        (PathType.CACHE, "cache/s-t04040-1001"),
        (PathType.UNSEALED, "unsealed/s-t04040-1001"),
        (PathType.UPDATE, "update/s-t04040-1001"),
        (PathType.UPDATE_CACHE, "update-cache/s-t04040-1001"),
        ("cache", "cache/s-t04040-1001"),
    ],
)
def test_default_layout_is_damocles_layout(make_store: MakeStore, path_type: Any, expected: str) -> None:
    fs = make_store()
    assert fs.sub_path(path_type, SID) == expected
    assert fs.full_path(path_type, SID) == os.path.join(fs.instance_config().path, expected)


def test_pieces_are_stored_by_cid_under_piece(make_store: MakeStore) -> None:
    fs = make_store()
    assert fs.sub_path(PathType.PIECE, None, CID) == f"piece/{CID}"
    assert fs.full_path(PathType.PIECE, SID, CID).endswith(f"/piece/{CID}")


@pytest.mark.parametrize("bad", [None, "", "../x", "a/b", "bafy/../../etc", "Qm x", "a" * 300])
def test_piece_cid_must_be_a_plain_name(make_store: MakeStore, bad: Any) -> None:
    with pytest.raises(FileStoreError, match="piece CID"):
        make_store().sub_path(PathType.PIECE, None, bad)


def test_sector_types_need_a_sector_id(make_store: MakeStore) -> None:
    with pytest.raises(FileStoreError, match="needs a SectorID"):
        make_store().sub_path(PathType.SEALED, None)


def test_unknown_path_type_lists_the_known_ones(make_store: MakeStore) -> None:
    with pytest.raises(FileStoreError, match=r"unknown path type 'sealedd' \(known: sealed, cache"):
        make_store().sub_path("sealedd", SID)


@pytest.mark.parametrize(
    "custom, expected",
    [("path/to/anything", "path/to/anything"), ("a/./b/../c", "a/c"), ("deals/x.car", "deals/x.car")],
)
def test_custom_paths_are_normalised_relative_paths(
    make_store: MakeStore, custom: str, expected: str
) -> None:
    fs = make_store()
    assert fs.sub_path(PathType.CUSTOM, None, custom) == expected
    assert fs.full_path(PathType.CUSTOM, None, custom) == os.path.join(fs.instance_config().path, expected)


@pytest.mark.parametrize(
    "custom, why",
    [
        ("../../etc/passwd", "outside the store root"),
        ("a/../../b", "outside the store root"),
        ("..", "outside the store root"),
        (".", "outside the store root"),
        ("/etc/passwd", "absolute"),
        ("", "non-empty"),
        (None, "non-empty"),
        ("a\x00b", "non-empty"),
    ],
)
def test_custom_paths_escaping_the_root_are_refused(make_store: MakeStore, custom: Any, why: str) -> None:
    fs = make_store()
    with pytest.raises(FileStoreError, match=why):
        fs.full_path(PathType.CUSTOM, None, custom)
    with pytest.raises(FileStoreError, match=why):
        fs.full_path(PathType.CUSTOM, None, custom, for_write=True)


def test_symlink_pointing_outside_the_root_is_refused(make_store: MakeStore, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    fs = make_store("s")
    root = Path(fs.instance_config().path)
    (root / "sealed").symlink_to(outside, target_is_directory=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FileStoreError, match="outside the store root"):
        fs.full_path(PathType.SEALED, SID)
    with pytest.raises(FileStoreError, match="outside the store root"):
        fs.full_path(PathType.CUSTOM, None, "link/file", for_write=True)
    assert not any(outside.iterdir()), "nothing may be created outside the root"


def test_symlink_inside_the_root_is_fine(make_store: MakeStore) -> None:
    fs = make_store("s")
    root = Path(fs.instance_config().path)
    (root / "real-cache").mkdir()
    (root / "cache").symlink_to(root / "real-cache", target_is_directory=True)
    assert fs.full_path(PathType.CACHE, SID, for_write=True) == str(root / "cache" / "s-t04040-1001")


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("{type}/{miner}/{sector}", "cache/4040/s-t04040-1001"),
        ("{type}/{miner:06d}/{number:09d}", "cache/004040/000001001"),
        ("myprefix/my{type}/mysubdir/{sector}", "myprefix/mycache/mysubdir/s-t04040-1001"),
        ("{type}-{miner}-{number}", "cache-4040-1001"),
    ],
)
def test_sub_dir_pattern_lays_files_out(make_store: MakeStore, pattern: str, expected: str) -> None:
    fs = make_store(meta={"SubDirPattern": pattern})
    assert fs.sub_path(PathType.CACHE, SID) == expected


@pytest.mark.parametrize(
    "pattern, why",
    [
        ("{sector}", "lacks {type}"),
        ("{type}/{number}", "must identify the sector"),
        ("{type}/{miner}{number}", "ambiguous"),
        ("{type}/{number:05d}{miner}", "ambiguous"),
        ("{type}/{foo}/{sector}", r"unknown placeholder\(s\) {foo}"),
        ("sub-%d-%d", "lacks {type}"),
        ("../{type}/{sector}", "outside the store root"),
        ("/abs/{type}/{sector}", "outside the store root"),
        ("{type}//{sector}", "outside the store root"),
        ("{type}/{sector", "malformed"),
        ("{type}/{miner:q}/{sector}", "cannot be formatted"),
        ("", "non-empty"),
    ],
)
def test_bad_sub_dir_pattern_is_refused_naming_the_key(make_store: MakeStore, pattern: str, why: str) -> None:
    with pytest.raises(PluginCallError) as info:
        make_store(meta={"SubDirPattern": pattern})
    assert isinstance(info.value.exc, ValueError)
    assert "Meta.SubDirPattern" in str(info.value) and "store 's'" in str(info.value)
    assert re.search(why, str(info.value)), str(info.value)


_segment = st.one_of(
    st.sampled_from(["{type}", "{miner}", "{number}", "{sector}", "{miner}{number}", "x", "-", "..", ""]),
    st.text(alphabet="abc_-.", min_size=1, max_size=4),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(st.lists(_segment, min_size=1, max_size=3).map("".join), min_size=1, max_size=4),
    sectors=st.lists(
        st.builds(SectorID, st.integers(0, 10**6), st.integers(0, 10**9)), min_size=2, max_size=6, unique=True
    ),
)
def test_any_accepted_pattern_stays_inside_and_never_collides(
    fsstore_module: Any, parts: Any, sectors: Any
) -> None:
    pattern = "/".join(parts)
    try:
        fsstore_module.check_pattern(pattern)
    except ValueError:
        return
    seen = {}
    for sid in sectors:
        for ptype in ("sealed", "cache", "unsealed", "update", "update-cache"):
            sub = pattern.format(type=ptype, miner=sid.miner, number=sid.number, sector=str(sid))
            segments = sub.split("/")
            assert not os.path.isabs(sub) and ".." not in segments and "" not in segments, sub
            assert seen.setdefault(sub, (ptype, sid)) == (ptype, sid), f"{pattern!r} collides on {sub}"
