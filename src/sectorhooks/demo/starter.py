"""The starter config ``sectorhooks init`` writes, also the demo's embedded defaults.

Relative paths in a config resolve against the config file's directory, and so do relative
SQLite URLs in a ``Meta`` table's ``url`` (``sqlite:///data/kv.sqlite3``): the file written
holds no absolute path, and the directory it is in can be moved or copied whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional

CONFIG_NAME = "sectorhooks.toml"
SINKS = ("dashboard", "audit", "billing")


def _s(text: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML escapes)."""
    return json.dumps(text, ensure_ascii=False)


def sqlite_url(path: Path) -> str:
    """SQLAlchemy URL of a SQLite file; a relative ``path`` is relative to the config file."""
    return "sqlite:///" + path.as_posix()


#: SQLite KV: sqlkv's default (no memory map), written out so an operator sees the setting. A
#: map's pages count in the host's RSS once per pooled connection (256 MiB made
#: `demo --sectors 20000` peak at 532 MB RSS, 214 MB without).
_MMAP = """
# SQLite only: bytes read through a memory map; 0 (sqlkv's default) reads with read(). A map of
# 268435456 measured x1.05 changes/s, but its pages count in the host's RSS once per pooled
# connection.
mmap_size = 0"""


def starter_config(
    directory: Path,
    sinks: int = 3,
    kv_url: Optional[str] = None,
    sink_urls: Optional[Mapping[str, str]] = None,
    name: str = CONFIG_NAME,
) -> str:
    """Commented TOML for a host rooted at ``directory``: SQLite KV, fsstore stores, sqlsync sinks.

    Every path in it is relative to the file's directory (where it is written). ``kv_url``
    replaces the SQLite KV URL; ``sink_urls`` (name -> SQLAlchemy URL) replaces the ``sinks``
    SQLite sinks, e.g. with PostgreSQL and MariaDB databases; ``name`` is the file's own name,
    shown in its header.
    """
    if sink_urls is None:
        names = [SINKS[i] if i < len(SINKS) else f"sink{i + 1}" for i in range(sinks)]
        sink_urls = {n: sqlite_url(Path("sinks") / f"{n}.sqlite") for n in names}
    kv_url = kv_url or sqlite_url(Path("data") / "kv.sqlite3")
    syncers = "\n".join(
        f"""[[Common.Syncers]]
Name = {_s(name)}                      # unique; names the sink's durable cursor
PluginName = "sqlsync"                 # a SyncSectorState plugin
Meta = {{ url = {_s(url)}, table_prefix = "" }}
"""
        for name, url in sink_urls.items()
    )
    shown = _s(name)[1:-1]
    return f"""# {shown}: a sectorhooks host config (written by `sectorhooks init`).
# In this file's directory:
#   run the demo on it:   sectorhooks demo --config {shown}
#   serve JSON-RPC:       sectorhooks serve --config {shown}
# Relative paths (and sqlite:/// URLs with three slashes) resolve against this file's directory.

[Common]
# Where the host keeps its own state (default KV file, disabled-plugin list, tokens).
DataDir = "data"

[Common.Plugins]
# Extra plugin directories (each holds plugin dirs or zip bundles made by `sectorhooks plugin build`).
Dir = []
# Plugins not to load, by manifest name.
Disabled = []
# Load the bundled plugins (memdb, sqlkv, rediskv, fsstore, sqlsync, atomic_counter).
Bundled = true
# Load plugins installed as Python distributions (entry-point group "sectorhooks.plugins").
EntryPoints = true

# A plugin's own settings, passed to its onInit as `config`:
# [Common.Plugins.Config.my_plugin]
# greeting = "hello"

[Common.DB]
# The KVStore holding sector state and the change log. Driver is always "plugin".
Driver = "plugin"

[Common.DB.Plugin]
PluginName = "sqlkv"                   # or "memdb" (tests) or "rediskv"

[Common.DB.Plugin.Meta]
url = {_s(kv_url)}{_MMAP if kv_url.startswith("sqlite:") else ""}
# PostgreSQL: url = "postgresql+psycopg://postgres@127.0.0.1:5432/sectors"
# MariaDB:    url = "mysql+pymysql://root@127.0.0.1:3306/sectors"

# Piece files (deals), named by piece CID. Several stores may each use their own plugin.
[[Common.PieceStores]]
Name = "pieces"
Path = "stores/pieces"
PluginName = "fsstore"                 # the FileStore plugin (manifest name)

# Where sealed sectors go (sealed/, cache/, update/, update-cache/, unsealed/).
[[Common.PersistStores]]
Name = "persist-1"
Path = "stores/persist-1"
PluginName = "fsstore"
Weight = 2                             # share of new sectors, relative to other stores
Strict = false                         # true: Path must already exist (e.g. a mount point)
ReadOnly = false                       # true: serve reads only, never pick for new sectors
# AllowMiners = [1000]                 # only these miners may write here
# DenyMiners = [1002]                  # these miners may not write here
Meta = {{ SubDirPattern = "{{type}}/{{miner}}/{{sector}}" }}   # placeholders: type miner number sector

[[Common.PersistStores]]
Name = "persist-2"
Path = "stores/persist-2"
PluginName = "fsstore"
Weight = 1

# Sinks: every sector-state change is mirrored into each, through its own durable cursor.
{syncers}
# A PostgreSQL or MariaDB sink (create the database first):
# [[Common.Syncers]]
# Name = "pg"
# PluginName = "sqlsync"
# Meta = {{ url = "postgresql+psycopg://postgres@127.0.0.1:5432/test" }}
# [[Common.Syncers]]
# Name = "maria"
# PluginName = "sqlsync"
# Meta = {{ url = "mysql+pymysql://root@127.0.0.1:3306/test" }}

[Common.Sync]
BatchSize = 5000                       # events per dispatch (then Flush, then the cursor moves)
MaxAttempts = 5                        # tries per event before it becomes a dead letter
OnFailure = "dead-letter"              # or "stop": halt that syncer on a poisoned event
PollInterval = 0.05                    # seconds between polls of an idle log
Linger = 0.25                          # busy: seconds a partial batch may wait to grow
BackoffBase = 0.05                     # retry backoff: first delay, seconds
BackoffMax = 5.0                       # retry backoff: longest delay, seconds

[Common.API]
Listen = "127.0.0.1:1789"              # JSON-RPC gateway (`sectorhooks serve`)
DevMode = false                        # true: no tokens needed, loopback only
RouteGate = false                      # true: plugin namespaces only while their registry route is RUNNING
Tenants = false                        # true (needs RouteGate): the token's tenant must have it enabled

[Common.Log]
# The command line's --log-format, --log-file, --log-level and serve --access-log win over these.
Format = "text"                        # or "json": one object a line (ts, level, logger, message, exc)
# File = "log/sectorhooks.log"         # default: stderr
# Level = "INFO"                       # default: INFO for `serve`, WARNING for the other commands
AccessLog = false                      # true: one line per JSON-RPC call (logger sectorhooks.access)
"""


def write_starter_config(path: Path, force: bool = False, sinks: int = 3) -> Path:
    """Write :func:`starter_config` for ``path``'s directory; refuses to overwrite unless ``force``."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_config(path.parent, sinks, name=path.name), encoding="utf-8")
    return path
