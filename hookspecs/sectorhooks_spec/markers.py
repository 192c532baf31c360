"""pluggy markers for the project name ``sectorhooks``."""

from __future__ import annotations

import pluggy

PROJECT_NAME = "sectorhooks"

#: Marks a hook specification in :mod:`sectorhooks_spec.specs`.
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marks a hook implementation; optional, since the loader binds manifest exports by itself.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
