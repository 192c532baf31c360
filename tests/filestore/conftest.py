"""Fixtures: a host holding only the bundled fsstore plugin, and a factory of stores on tmp dirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sectorhooks.config import HostConfig, PluginsConfig
from sectorhooks.host import PluginHost
from sectorhooks.loader import bundled_plugins_dir
from sectorhooks_spec import FileStore, StoreConfig
from sectorhooks_spec.kinds import Kind

FSSTORE_DIR = bundled_plugins_dir() / "fsstore"


@pytest.fixture(scope="module")
def fs_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PluginHost]:
    """A started host whose only plugin is the bundled fsstore."""
    config = HostConfig(
        data_dir=tmp_path_factory.mktemp("data"),
        plugins=PluginsConfig(dirs=(FSSTORE_DIR,), bundled=False, entry_points=False),
    )
    host = PluginHost(config).load()
    host.start()
    assert host.records["fsstore"].status.value == "active", host.records["fsstore"].error
    yield host
    host.shutdown()


@pytest.fixture
def fsstore_module(fs_host: PluginHost) -> Any:
    """The fsstore plugin module, as the loader imported it."""
    bound = fs_host.records["fsstore"].bound
    assert bound is not None
    return bound.module


@pytest.fixture
def make_store(fs_host: PluginHost, tmp_path: Path) -> Callable[..., FileStore]:
    """``make_store(name="s", path=None, **StoreConfig fields)`` through the plugin's Constructor."""

    def make(name: str = "s", path: Any = None, **kw: Any) -> FileStore:
        cfg = StoreConfig(name=name, path=str(path if path is not None else tmp_path / name), **kw)
        return fs_host.call_driver(Kind.FILE_STORE, "fsstore", "filestore_constructor", config=cfg)

    return make
