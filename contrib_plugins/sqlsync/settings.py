"""An instance's settings, from its ``Meta`` table (checked on its first event), and its default URL.

Every key is optional (see ``manifest.toml``). A bad one is a ``ValueError`` naming the plugin,
the instance, the key and the fix: an unknown key gets the closest known one, a removed key what
replaced it. String values are accepted as damocles-manager's config gives them ("250", "off").
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, Mapping

from sectorhooks_spec import MetaReader

PLUGIN = "sqlsync"
META_KEYS = ("url", "table_prefix", "batch_size", "events", "retries")
#: Keys of earlier versions, with what replaced them.
REMOVED_KEYS = dict.fromkeys(
    ("worker", "nice"),
    "the host runs every syncer in a worker process of its own: [[Common.Syncers]] Isolation",
)
PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{0,48}$")

#: The plugin's config table (``[Common.Plugins.Config.sqlsync]``), as the host gave it at onInit.
CONFIG: Dict[str, Any] = {}


def settings_from_meta(name: str, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """``SinkWriter`` keyword arguments from an instance's ``Meta`` table."""
    r = MetaReader(PLUGIN, meta, META_KEYS, where=f"{PLUGIN} instance {name!r}", removed=REMOVED_KEYS)
    url = r.text("url", None, what="a SQLAlchemy URL string")
    return {
        "url": default_url(name) if url is None else url,
        "prefix": r.text("table_prefix", "", pattern=PREFIX_RE, what="letters, digits or '_' (at most 48)"),
        "batch_size": r.integer("batch_size", 5000, minimum=1, what="a positive integer"),
        "events": r.flag("events", True, words=MetaReader.ON_OFF),
        "retries": r.integer("retries", 3, minimum=1, what="a positive integer"),
    }


def default_url(name: str) -> str:
    """``sqlite:///<data dir>/sqlsync-<name>.sqlite``, the sink of an instance with no ``url``: the
    data dir is ``DataDir`` (or ``data_dir``) of :data:`CONFIG`, else ``$SECTORHOOKS_DATA_DIR``,
    else ``~/.sectorhooks``."""
    base = CONFIG.get("DataDir") or CONFIG.get("data_dir") or os.environ.get("SECTORHOOKS_DATA_DIR")
    root = Path(str(base or "~/.sectorhooks")).expanduser()
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return f"sqlite:///{root / f'sqlsync-{safe}.sqlite'}"


def masked(url: str) -> str:
    """``url`` with its password shown as ``***`` (for logs and errors)."""
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)
