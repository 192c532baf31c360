"""The starter config ``sectorhooks init`` writes, also the demo's embedded defaults.

Relative paths in a config resolve against the config file's directory; SQLAlchemy URLs do not
(they are the driver's), so the SQLite URLs are written absolute, for the directory the file
is written to.
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
    """SQLAlchemy URL of a SQLite file (absolute)."""
    return "sqlite:///" + path.resolve().as_posix()


def starter_config(
    directory: Path,
    sinks: int = 3,
    kv_url: Optional[str] = None,
    sink_urls: Optional[Mapping[str, str]] = None,
) -> str:
    """Commented TOML for a host rooted at ``directory``: SQLite KV, fsstore stores, sqlsync sinks.

    ``kv_url`` replaces the SQLite KV URL; ``sink_urls`` (name -> SQLAlchemy URL) replaces the
    ``sinks`` SQLite sinks, e.g. with PostgreSQL and MariaDB databases.
    """
    base = directory.resolve()
    data = base / "data"
    if sink_urls is None:
        names = [SINKS[i] if i < len(SINKS) else f"sink{i + 1}" for i in range(sinks)]
        sink_urls = {name: sqlite_url(base / "sinks" / f"{name}.sqlite") for name in names}
    kv_url = kv_url or sqlite_url(data / "kv.sqlite3")
    syncers = "\n".join(
        f"""[[Common.Syncers]]
Name = {_s(name)}                      # unique; names the sink's durable cursor
PluginName = "sqlsync"                 # a SyncSectorState plugin
Meta = {{ url = {_s(url)}, table_prefix = "" }}
"""
        for name, url in sink_urls.items()
    )
    return f"""# sectorhooks host config (written by `sectorhooks init`).
# Run the demo on it:   sectorhooks demo --config {_s(str(base / CONFIG_NAME))[1:-1]}
# Serve JSON-RPC:       sectorhooks serve --config ...
# Relative paths resolve against this file's directory.

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
url = {_s(kv_url)}
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
"""


def write_starter_config(path: Path, force: bool = False, sinks: int = 3) -> Path:
    """Write :func:`starter_config` for ``path``'s directory; refuses to overwrite unless ``force``."""
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_config(path.parent, sinks), encoding="utf-8")
    return path
