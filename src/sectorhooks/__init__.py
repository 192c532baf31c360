"""sectorhooks: a pluggy plugin host for a storage-sector manager."""

from __future__ import annotations

from typing import Any

__all__ = ["HostConfig", "PluginHost", "__version__", "load_config"]


def __getattr__(name: str) -> Any:
    # Lazy, as pluggy does: importing the package stays cheap for plugins and the CLI.
    if name == "__version__":
        from importlib.metadata import version

        return version("sectorhooks")
    if name == "PluginHost":
        from .host import PluginHost

        return PluginHost
    if name in ("HostConfig", "load_config"):
        from . import config

        return getattr(config, name)
    raise AttributeError(name)
