"""An instance's settings, from its ``Meta`` table (checked on its first event), and its default URL.

Every key is optional (see ``manifest.toml``). A bad one is a ``ValueError`` naming the plugin,
the instance, the key and the fix: an unknown key gets the closest known one, a removed key what
replaced it. String values are accepted as damocles-manager's config gives them ("250", "off").
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Dict, Mapping

PLUGIN = "sqlsync"
META_KEYS = ("url", "table_prefix", "batch_size", "events", "retries")
#: Keys of earlier versions, with what replaced them.
REMOVED_KEYS = dict.fromkeys(
    ("worker", "nice"),
    "the host runs every syncer in a worker process of its own: [[Common.Syncers]] Isolation",
)
PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{0,48}$")
_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS.update({"0": False, "false": False, "no": False, "off": False})

#: The plugin's config table (``[Common.Plugins.Config.sqlsync]``), as the host gave it at onInit.
CONFIG: Dict[str, Any] = {}


def settings_from_meta(name: str, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """``SinkWriter`` keyword arguments from an instance's ``Meta`` table."""

    def bad(key: str, problem: str) -> ValueError:
        return ValueError(f"{PLUGIN} instance {name!r}: meta key {key!r} {problem}")

    def positive_int(key: str, default: int) -> int:
        value = meta.get(key, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(key, f"must be a positive integer, got {value!r}")
        return value

    for key in meta:
        if key in REMOVED_KEYS:
            raise bad(key, f"was removed: {REMOVED_KEYS[key]}")
        if key not in META_KEYS:
            close = difflib.get_close_matches(str(key), META_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(META_KEYS)}"
            raise bad(key, f"is unknown ({hint})")
    url = meta.get("url")
    if url is None:
        url = default_url(name)
    elif not isinstance(url, str) or not url.strip():
        raise bad("url", f"must be a SQLAlchemy URL string, got {url!r}")
    prefix = meta.get("table_prefix", "")
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise bad("table_prefix", f"must be letters, digits or '_' (at most 48), got {prefix!r}")
    batch_size = positive_int("batch_size", 5000)
    events = meta.get("events", True)
    events = _BOOLS.get(events.strip().lower(), events) if isinstance(events, str) else events
    if not isinstance(events, bool):
        raise bad("events", f"must be true or false, got {events!r}")
    retries = positive_int("retries", 3)
    return {"url": url, "prefix": prefix, "batch_size": batch_size, "events": events, "retries": retries}


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
