"""open_filestores: config [[Common.PieceStores]] / [[Common.PersistStores]] -> FileStores, errors."""

from __future__ import annotations

import random
import textwrap
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator

import pytest

from sectorhooks.config import HostConfig, load_config
from sectorhooks.errors import ConfigError
from sectorhooks.host import PluginHost
from sectorhooks.loader import bundled_plugins_dir
from sectorhooks.stores import (
    candidate_stores,
    open_filestores,
    persist_store_names,
    pick_store,
    store_roles,
)
from sectorhooks_spec import FileStore, FileStoreError, PathType, SectorID

FSSTORE_DIR = bundled_plugins_dir() / "fsstore"

FLATSTORE = """
import os
from sectorhooks_spec import InstanceInfo

class Flat:
    def __init__(self, config):
        self.config = config
        os.makedirs(config.path, exist_ok=True)
    def instance_name(self):
        return self.config.name
    def instance_config(self):
        return self.config
    def instance_info(self):
        return InstanceInfo(self.config, "flat", 1, 1, 0)
    def sub_path(self, path_type, sector_id, custom=None):
        return f"{getattr(path_type, 'value', path_type)}-{sector_id}"
    def full_path(self, path_type, sector_id, custom=None, *, for_write=False):
        return os.path.join(self.config.path, self.sub_path(path_type, sector_id, custom))

def open_flat(config):
    return Flat(config)

def open_broken(config):
    return "not a store"
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A plugin dir with the bundled fsstore plus two FileStore plugins of our own."""
    root = tmp_path / "plugins"
    for name, impl in (("flatstore", "open_flat"), ("brokenstore", "open_broken")):
        d = root / name
        d.mkdir(parents=True)
        (d / "manifest.toml").write_text(
            f'name = "{name}"\nkind = "FileStore"\nmodule = "flat"\n'
            f'export = [{{ extPoint = "Constructor", impl = "{impl}" }}]\n'
        )
        (d / "flat.py").write_text(FLATSTORE)
    return root


def write_config(tmp_path: Path, plugin_dir: Path, stores: str) -> HostConfig:
    text = textwrap.dedent(
        f"""
        [Common]
        DataDir = "data"
        [Common.Plugins]
        Dir = ["{FSSTORE_DIR}", "{plugin_dir}"]
        Bundled = false
        EntryPoints = false
        """
    ) + textwrap.dedent(stores)
    path = tmp_path / "sectorhooks.toml"
    path.write_text(text)
    return load_config(path)


@pytest.fixture
def open_with(tmp_path: Path, plugin_dir: Path) -> Iterator:
    hosts = []

    def run(stores: str) -> Dict[str, FileStore]:
        config = write_config(tmp_path, plugin_dir, stores)
        host = PluginHost(config).load().start()
        hosts.append(host)
        return open_filestores(host, config)

    yield run
    for h in hosts:
        h.shutdown()


def store(name: str, path: str, extra: str = "", section: str = "PersistStores") -> str:
    """One ``[[Common.<section>]]`` entry as TOML."""
    return f'[[Common.{section}]]\nName = "{name}"\nPath = "{path}"\n{extra}\n'


GOOD = """
[[Common.PieceStores]]
Name = "pieces"
Path = "stores/pieces"

[[Common.PersistStores]]
Name = "fast"
Path = "stores/fast"
Weight = 3
Meta = { SubDirPattern = "{type}/{miner}/{sector}" }

[[Common.PersistStores]]
Name = "flat"
Path = "stores/flat"
PluginName = "flatstore"

[[Common.PersistStores]]
Name = "archive"
Path = "stores/archive"
ReadOnly = true
Strict = false
"""


def test_several_stores_each_with_its_own_plugin(open_with, tmp_path: Path) -> None:
    (tmp_path / "stores" / "archive").mkdir(parents=True)
    stores = open_with(GOOD)
    assert list(stores) == ["pieces", "fast", "flat", "archive"]
    sid = SectorID(1000, 5)
    expected = tmp_path / "stores/fast/sealed/1000/s-t01000-5"
    assert stores["fast"].full_path(PathType.SEALED, sid) == str(expected)
    assert stores["flat"].sub_path(PathType.SEALED, sid) == "sealed-s-t01000-5"
    assert stores["flat"].instance_info().type == "flat"
    assert stores["pieces"].sub_path(PathType.PIECE, None, "bafyabc") == "piece/bafyabc"
    assert stores["fast"].instance_config().plugin_name == "fsstore"
    with pytest.raises(FileStoreError, match="store 'archive' is read-only"):
        stores["archive"].full_path(PathType.SEALED, sid, for_write=True)


def test_roles_and_persist_names_follow_the_config(tmp_path: Path, plugin_dir: Path) -> None:
    config = write_config(tmp_path, plugin_dir, GOOD)
    roles = store_roles(config)
    assert roles == {"pieces": "piece", "fast": "persist", "flat": "persist", "archive": "persist"}
    assert persist_store_names(config) == ["fast", "flat", "archive"]


def test_unknown_plugin_name_lists_the_loaded_filestore_plugins(open_with) -> None:
    with pytest.raises(ConfigError) as info:
        open_with('[[Common.PersistStores]]\nName = "p"\nPath = "p"\nPluginName = "s3store"\n')
    msg = str(info.value)
    assert "[Common.PersistStores[0].PluginName]" in msg and "store 'p'" in msg
    assert "no loaded FileStore plugin named 's3store'" in msg
    assert "'brokenstore', 'flatstore', 'fsstore'" in msg


def test_duplicate_names_across_piece_and_persist_stores(open_with) -> None:
    with pytest.raises(ConfigError, match=r"\[Common.PersistStores\[0\].Name\] duplicate store name 'x'"):
        open_with(store("x", "a", section="PieceStores") + store("x", "b"))


def test_missing_path_names_the_key(open_with) -> None:
    with pytest.raises(ConfigError, match=r"\[Common.PersistStores\[0\].Path\] missing required key 'Path'"):
        open_with('[[Common.PersistStores]]\nName = "p"\n')


def test_empty_path_in_code_built_config_names_the_key(fs_host: PluginHost) -> None:
    from sectorhooks_spec import StoreConfig

    config = HostConfig(persist_stores=(StoreConfig(name="p", path=""),))
    with pytest.raises(ConfigError, match=r"\[Common.PersistStores\[0\].Path\] store 'p': missing required"):
        open_filestores(fs_host, config)


def test_pattern_outside_the_root_names_the_meta_key(open_with) -> None:
    with pytest.raises(ConfigError) as info:
        open_with(store("p", "p", 'Meta = { SubDirPattern = "../{type}/{sector}" }'))
    assert "[Common.PersistStores[0].Meta.SubDirPattern]" in str(info.value)
    assert "outside the store root" in str(info.value)


def test_unknown_meta_key_names_the_store(open_with) -> None:
    with pytest.raises(ConfigError, match=r"\[Common.PieceStores\[0\].Meta\] .*store 'pc'.*unknown Meta key"):
        open_with('[[Common.PieceStores]]\nName = "pc"\nPath = "p"\nMeta = { Bogus = "1" }\n')


def test_strict_store_with_missing_root_names_the_path_key(open_with) -> None:
    with pytest.raises(ConfigError, match=r"\[Common.PersistStores\[0\].Path\] .*store 'p'.*Strict"):
        open_with('[[Common.PersistStores]]\nName = "p"\nPath = "missing"\nStrict = true\n')


def test_two_stores_on_one_root_are_refused(open_with) -> None:
    with pytest.raises(ConfigError, match=r"\[Common.PersistStores\[1\].Path\] store 'b' has the same root"):
        open_with(store("a", "x") + store("b", "./x"))


@pytest.mark.parametrize(
    "extra, key, text",
    [
        ("Weight = -1", "Weight", "must be >= 0"),
        ("AllowMiners = [1000]\nDenyMiners = [1000]", "DenyMiners", "both allowed and denied"),
        ("AllowMiners = [-5]", "AllowMiners", "non-negative integers"),
    ],
)
def test_bad_store_fields_name_the_key(open_with, extra: str, key: str, text: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[Common.PersistStores\[0\].{key}\] store 'p'.*{text}"):
        open_with(f'[[Common.PersistStores]]\nName = "p"\nPath = "p"\n{extra}\n')


def test_miner_ids_given_as_addresses_name_the_key(open_with) -> None:
    with pytest.raises(ConfigError, match=r"\[Common.PersistStores\[0\].DenyMiners\].*'t01000'"):
        open_with(store("p", "p", 'DenyMiners = ["t01000"]'))


def test_plugin_returning_a_non_filestore_is_refused(open_with) -> None:
    with pytest.raises(ConfigError, match=r"plugin 'brokenstore' Constructor returned str, not a FileStore"):
        open_with('[[Common.PersistStores]]\nName = "p"\nPath = "p"\nPluginName = "brokenstore"\n')


def test_pick_store_follows_weights_among_writable_allowed_stores(open_with, tmp_path: Path) -> None:
    (tmp_path / "stores" / "archive").mkdir(parents=True)
    stores = open_with(GOOD)
    persist = ["fast", "flat", "archive"]
    rng = random.Random(7)
    picks = Counter(pick_store(stores, 1000, persist, rng=rng).instance_name() for _ in range(2000))
    assert set(picks) == {"fast", "flat"}, "the read-only store is never picked"
    assert 2.4 < picks["fast"] / picks["flat"] < 3.7, picks  # Weight 3 vs 1


def test_pick_store_honours_miner_lists_and_free_space(open_with) -> None:
    stores = open_with(
        '[[Common.PersistStores]]\nName = "a"\nPath = "a"\nAllowMiners = [1000]\n'
        '[[Common.PersistStores]]\nName = "b"\nPath = "b"\nDenyMiners = [1000]\n'
        '[[Common.PersistStores]]\nName = "z"\nPath = "z"\nWeight = 0\n'
    )
    assert [s.instance_name() for s in candidate_stores(stores, 1000)] == ["a"]
    assert [s.instance_name() for s in candidate_stores(stores, 2000)] == ["b"]
    assert candidate_stores(stores, 1000, min_free=1 << 62) == []
    with pytest.raises(FileStoreError, match=r"no writable store accepts miner 1000 with \d+ bytes free"):
        pick_store(stores, 1000, min_free=1 << 62)
    with pytest.raises(FileStoreError, match=r"considered: 'z'"):
        pick_store(stores, 1000, names=["z"])
