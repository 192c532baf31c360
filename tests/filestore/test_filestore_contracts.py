"""The FileStore conformance suite over the bundled fsstore: the installed suite,
:mod:`sectorhooks.testing.filestore_contracts`, with fsstore as the plugin under test (what
``pytest --sectorhooks-plugin contrib_plugins/fsstore`` runs)."""

from __future__ import annotations

import pytest

from sectorhooks.loader import bundled_plugins_dir
from sectorhooks.testing.filestore_contracts import *  # noqa: F403  (the suite's tests, collected here)
from sectorhooks.testing.target import PluginUnderTest


@pytest.fixture
def sectorhooks_target() -> PluginUnderTest:
    return PluginUnderTest(bundled_plugins_dir() / "fsstore")
