"""Host config (TOML), damocles-manager style: ``[Common.Plugins]``, ``[Common.DB]``, stores, syncers.

Every key is checked: an unknown key gets a close-match suggestion, a wrong type names the key
path and the file. Paths are resolved relative to the config file's directory.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import attrs

from sectorhooks_spec import StoreConfig

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_DATA_DIR = Path(os.environ.get("SECTORHOOKS_DATA_DIR", "~/.sectorhooks")).expanduser()


@attrs.frozen
class PluginsConfig:
    """``[Common.Plugins]``: where plugins come from, which are off, their own config tables."""

    dirs: Tuple[Path, ...] = ()
    disabled: Tuple[str, ...] = ()
    bundled: bool = True
    entry_points: bool = True
    strict: bool = False  # refuse plugins whose directory or file other users may write
    config: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, hash=False)


@attrs.frozen
class DBConfig:
    """``[Common.DB]``: the KVStore plugin holding sector metadata."""

    driver: str = "plugin"
    plugin_name: str = "sqlkv"
    meta: Mapping[str, Any] = attrs.field(factory=dict, hash=False)


@attrs.frozen
class SyncerConfig:
    """One ``[[Common.Syncers]]`` entry: an instance of a SyncSectorState plugin."""

    name: str
    plugin_name: str
    meta: Mapping[str, Any] = attrs.field(factory=dict, hash=False)
    isolation: Optional[str] = None  # "process" or "thread"; None: [Common.Sync] Isolation


ISOLATIONS = ("process", "thread")


@attrs.frozen
class SyncSettings:
    """``[Common.Sync]``: dispatcher tuning shared by all syncers."""

    batch_size: int = 5000
    max_attempts: int = 5
    on_failure: str = "dead-letter"  # or "stop"
    poll_interval: float = 0.05  # idle: how often to look for entries written by other processes
    linger: float = 0.25  # busy: how long a partial batch waits to grow (fewer, larger flushes)
    backoff_base: float = 0.05
    backoff_max: float = 5.0
    hook_timeout: float = 60.0  # seconds one hook call (or Flush) may take before its worker is killed
    max_crashes: int = 3  # an event that kills or hangs its worker this often is dead-lettered
    isolation: str = "process"  # where syncers' hooks run unless their entry says: "process" | "thread"
    # Niceness a syncer's worker process adds to its own once started: the state manager's callers
    # wait on the KV, never on a sink, so on a host short of cores the writers get the CPU first;
    # a sink that falls behind catches up from the log (0 keeps the host's priority).
    worker_nice: int = 10
    max_lag: float = 300.0  # seconds a syncer may lag behind the log and still count as ready (/readyz)


@attrs.frozen
class APIConfig:
    """``[Common.API]``: the JSON-RPC gateway."""

    listen: str = "127.0.0.1:1789"
    dev_mode: bool = False
    route_gate: bool = False  # serve a plugin namespace only while its registry route is RUNNING
    tenants: bool = False  # with route_gate: the token's tenant must have the plugin enabled
    call_timeout: float = 30.0  # seconds a plugin's JSON-RPC method may run before the call fails
    plugin_concurrency: int = 8  # calls in flight per plugin namespace; beyond it the call is "busy"
    header_timeout: float = 10.0  # seconds a client has to send a request's headers
    body_timeout: float = 30.0  # seconds a client has to send a request's body
    keep_alive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 0  # open connections at most (0: from the open-file limit); beyond: 503
    metrics_open: bool = False  # /metrics without a token (else read permission)


@attrs.frozen
class LogConfig:
    """``[Common.Log]``: where and how the host logs (the CLI's --log-* options override it)."""

    format: str = "text"  # "text" (timestamp, level, logger, message) or "json" (one object a line)
    file: Optional[Path] = None  # None: stderr
    level: str = "INFO"
    access_log: bool = False  # one line per JSON-RPC call


@attrs.frozen
class HostConfig:
    """The whole host config."""

    path: str = "<defaults>"
    data_dir: Path = DEFAULT_DATA_DIR
    plugins: PluginsConfig = PluginsConfig()
    db: Optional[DBConfig] = None
    piece_stores: Tuple[StoreConfig, ...] = ()
    persist_stores: Tuple[StoreConfig, ...] = ()
    syncers: Tuple[SyncerConfig, ...] = ()
    sync: SyncSettings = SyncSettings()
    api: APIConfig = APIConfig()
    log: LogConfig = LogConfig()
    raw: Mapping[str, Any] = attrs.field(factory=dict, hash=False, repr=False)

    def plugin_config(self, name: str) -> Mapping[str, Any]:
        """The plugin's own table ``[Common.Plugins.Config.<name>]`` (empty if none)."""
        return self.plugins.config.get(name, {})


class _Reader:
    """Typed, strict access to one table of the config, with key paths in errors."""

    def __init__(self, path: str, table: Mapping[str, Any], where: str, known: Sequence[str]):
        self.path, self.table, self.where = path, table, where
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                raise ConfigError(path, self._at(key), f"unknown key {key!r}", hint)

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: Union[type, Tuple[type, ...]], default: Any = None) -> Any:
        value = self.table.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) and kind in (int, float):
            raise ConfigError(self.path, self._at(key), f"must be a number, got a boolean {value!r}")
        if kind is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, kind):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(
                self.path, self._at(key), f"must be {want}, got {type(value).__name__} {value!r}"
            )
        return value

    def require(self, key: str, kind: type) -> Any:
        value = self.get(key, kind)
        if value is None or value == "":
            raise ConfigError(self.path, self._at(key), f"missing required key {key!r}")
        return value

    def table_of(self, key: str) -> Mapping[str, Any]:
        return self.get(key, dict, {})  # type: ignore[no-any-return]

    def int_list(self, key: str) -> Tuple[int, ...]:
        items = self.get(key, list, [])
        for item in items:
            if not isinstance(item, int) or isinstance(item, bool):
                raise ConfigError(self.path, self._at(key), f"must be integers (miner IDs), got {item!r}")
        return tuple(items)

    def str_list(self, key: str) -> Tuple[str, ...]:
        value = self.get(key, (str, list), [])
        items = [value] if isinstance(value, str) else value
        for item in items:
            if not isinstance(item, str):
                raise ConfigError(self.path, self._at(key), f"must be strings, got {item!r}")
        return tuple(items)


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expandvars(value)).expanduser()
    return p if p.is_absolute() else (base / p)


def _stores(path: str, base: Path, entries: Any, where: str) -> Tuple[StoreConfig, ...]:
    if not isinstance(entries, list):
        raise ConfigError(path, where, "must be an array of tables ([[...]])")
    out = []
    names = set()
    for i, entry in enumerate(entries):
        r = _Reader(
            path,
            entry,
            f"{where}[{i}]",
            [
                "Name",
                "Path",
                "PluginName",
                "Meta",
                "Strict",
                "ReadOnly",
                "Weight",
                "AllowMiners",
                "DenyMiners",
            ],
        )
        name = r.require("Name", str)
        if name in names:
            raise ConfigError(path, f"{where}[{i}].Name", f"duplicate store name {name!r}")
        names.add(name)
        out.append(
            StoreConfig(
                name=name,
                path=str(_resolve(base, r.require("Path", str))),
                plugin_name=r.get("PluginName", str, "fsstore"),
                meta={str(k): v for k, v in r.table_of("Meta").items()},
                strict=r.get("Strict", bool, False),
                read_only=r.get("ReadOnly", bool, False),
                weight=r.get("Weight", int, 1),
                # ignore: attrs' `converter=tuple` types the parameter as Iterable[_T_co]
                allow_miners=r.int_list("AllowMiners"),  # type: ignore[arg-type]
                deny_miners=r.int_list("DenyMiners"),  # type: ignore[arg-type]
            )
        )
    return tuple(out)


def parse_config(data: Mapping[str, Any], path: str = "<config>", base: Optional[Path] = None) -> HostConfig:
    """Build a :class:`HostConfig` from parsed TOML; raises :class:`ConfigError` on any bad key."""
    base = base or Path.cwd()
    top = _Reader(path, data, "", ["Common"])
    common = _Reader(
        path,
        top.table_of("Common"),
        "Common",
        ["DataDir", "Plugins", "DB", "PieceStores", "PersistStores", "Syncers", "Sync", "API", "Log"],
    )
    data_dir = common.get("DataDir", str)
    pr = _Reader(
        path,
        common.table_of("Plugins"),
        "Common.Plugins",
        ["Dir", "Disabled", "Bundled", "EntryPoints", "Strict", "Config"],
    )
    plugin_tables = pr.table_of("Config")
    for name, table in plugin_tables.items():
        if not isinstance(table, dict):
            raise ConfigError(path, f"Common.Plugins.Config.{name}", "must be a table")
    plugins = PluginsConfig(
        dirs=tuple(_resolve(base, d) for d in pr.str_list("Dir")),
        disabled=pr.str_list("Disabled"),
        bundled=pr.get("Bundled", bool, True),
        entry_points=pr.get("EntryPoints", bool, True),
        strict=pr.get("Strict", bool, False),
        config=dict(plugin_tables),
    )
    db = None
    if "DB" in common.table:
        dr = _Reader(path, common.table_of("DB"), "Common.DB", ["Driver", "Plugin"])
        driver = dr.get("Driver", str, "plugin")
        if driver != "plugin":
            raise ConfigError(
                path, "Common.DB.Driver", f"unsupported driver {driver!r}", 'use Driver = "plugin"'
            )
        plr = _Reader(path, dr.table_of("Plugin"), "Common.DB.Plugin", ["PluginName", "Meta"])
        db = DBConfig(
            driver=driver, plugin_name=plr.require("PluginName", str), meta=dict(plr.table_of("Meta"))
        )
    syncers = []
    seen = set()
    raw_syncers = common.get("Syncers", list, [])
    for i, entry in enumerate(raw_syncers):
        sr = _Reader(path, entry, f"Common.Syncers[{i}]", ["Name", "PluginName", "Meta", "Isolation"])
        name = sr.require("Name", str)
        isolation = sr.get("Isolation", str, None)
        if isolation is not None and isolation not in ISOLATIONS:
            raise ConfigError(
                path,
                f"Common.Syncers[{i}].Isolation",
                f"unknown value {isolation!r}",
                'use "process" (a supervised worker process) or "thread" (in the host)',
            )
        if name in seen:
            raise ConfigError(path, f"Common.Syncers[{i}].Name", f"duplicate syncer name {name!r}")
        seen.add(name)
        syncers.append(
            SyncerConfig(
                name=name,
                plugin_name=sr.require("PluginName", str),
                meta=dict(sr.table_of("Meta")),
                isolation=isolation,
            )
        )
    syr = _Reader(
        path,
        common.table_of("Sync"),
        "Common.Sync",
        [
            "BatchSize",
            "MaxAttempts",
            "OnFailure",
            "PollInterval",
            "Linger",
            "BackoffBase",
            "BackoffMax",
            "HookTimeout",
            "MaxCrashes",
            "Isolation",
            "WorkerNice",
            "MaxLag",
        ],
    )
    on_failure = syr.get("OnFailure", str, "dead-letter")
    if on_failure not in ("dead-letter", "stop"):
        raise ConfigError(
            path, "Common.Sync.OnFailure", f"unknown value {on_failure!r}", 'use "dead-letter" or "stop"'
        )
    sync = SyncSettings(
        batch_size=syr.get("BatchSize", int, 5000),
        max_attempts=syr.get("MaxAttempts", int, 5),
        on_failure=on_failure,
        poll_interval=syr.get("PollInterval", float, 0.05),
        linger=syr.get("Linger", float, 0.25),
        backoff_base=syr.get("BackoffBase", float, 0.05),
        backoff_max=syr.get("BackoffMax", float, 5.0),
        hook_timeout=syr.get("HookTimeout", float, 60.0),
        max_crashes=syr.get("MaxCrashes", int, 3),
        isolation=syr.get("Isolation", str, "process"),
        worker_nice=syr.get("WorkerNice", int, 10),
        max_lag=syr.get("MaxLag", float, 300.0),
    )
    if not 0 <= sync.worker_nice <= 19:
        raise ConfigError(path, "Common.Sync.WorkerNice", f"must be 0 to 19, got {sync.worker_nice}")
    if sync.isolation not in ISOLATIONS:
        raise ConfigError(
            path,
            "Common.Sync.Isolation",
            f"unknown value {sync.isolation!r}",
            'use "process" (a supervised worker process) or "thread" (in the host)',
        )
    if sync.hook_timeout <= 0:
        raise ConfigError(path, "Common.Sync.HookTimeout", "must be a positive number of seconds")
    if sync.max_crashes < 1:
        raise ConfigError(path, "Common.Sync.MaxCrashes", "must be at least 1")
    ar = _Reader(
        path,
        common.table_of("API"),
        "Common.API",
        [
            "Listen",
            "DevMode",
            "RouteGate",
            "Tenants",
            "CallTimeout",
            "PluginConcurrency",
            "HeaderTimeout",
            "BodyTimeout",
            "KeepAliveTimeout",
            "MaxConnections",
            "MetricsOpen",
        ],
    )
    api = APIConfig(
        listen=ar.get("Listen", str, "127.0.0.1:1789"),
        dev_mode=ar.get("DevMode", bool, False),
        route_gate=ar.get("RouteGate", bool, False),
        tenants=ar.get("Tenants", bool, False),
        call_timeout=ar.get("CallTimeout", float, 30.0),
        plugin_concurrency=ar.get("PluginConcurrency", int, 8),
        header_timeout=ar.get("HeaderTimeout", float, 10.0),
        body_timeout=ar.get("BodyTimeout", float, 30.0),
        keep_alive_timeout=ar.get("KeepAliveTimeout", float, 5.0),
        max_connections=ar.get("MaxConnections", int, 0),
        metrics_open=ar.get("MetricsOpen", bool, False),
    )
    for key, value in (
        ("HeaderTimeout", api.header_timeout),
        ("BodyTimeout", api.body_timeout),
        ("KeepAliveTimeout", api.keep_alive_timeout),
    ):
        if value <= 0:
            raise ConfigError(path, f"Common.API.{key}", "must be a positive number of seconds")
    if api.max_connections < 0:
        raise ConfigError(path, "Common.API.MaxConnections", "must be 0 (from the open-file limit) or more")
    lr = _Reader(path, common.table_of("Log"), "Common.Log", ["Format", "File", "Level", "AccessLog"])
    log_file = lr.get("File", str, None)
    log_config = LogConfig(
        format=lr.get("Format", str, "text"),
        file=_resolve(base, log_file) if log_file else None,
        level=lr.get("Level", str, "INFO").upper(),
        access_log=lr.get("AccessLog", bool, False),
    )
    if log_config.format not in ("text", "json"):
        raise ConfigError(
            path, "Common.Log.Format", f"unknown value {log_config.format!r}", 'use "text" or "json"'
        )
    if log_config.level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(
            path,
            "Common.Log.Level",
            f"unknown level {log_config.level!r}",
            "use DEBUG, INFO, WARNING or ERROR",
        )
    if api.call_timeout <= 0:
        raise ConfigError(path, "Common.API.CallTimeout", "must be a positive number of seconds")
    if api.plugin_concurrency < 1:
        raise ConfigError(path, "Common.API.PluginConcurrency", "must be at least 1")
    if api.tenants and not api.route_gate:
        raise ConfigError(
            path, "Common.API.Tenants", "tenant checks are part of the route gate", "set RouteGate = true too"
        )
    return HostConfig(
        path=path,
        data_dir=_resolve(base, data_dir) if data_dir else DEFAULT_DATA_DIR,
        plugins=plugins,
        db=db,
        piece_stores=_stores(path, base, common.get("PieceStores", list, []), "Common.PieceStores"),
        persist_stores=_stores(path, base, common.get("PersistStores", list, []), "Common.PersistStores"),
        syncers=tuple(syncers),
        sync=sync,
        api=api,
        log=log_config,
        raw=dict(data),
    )


def load_config(path: Union[str, Path, None]) -> HostConfig:
    """Read and parse a config file; ``None`` gives the defaults."""
    if path is None:
        return HostConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), "<file>", f"cannot read config: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "<toml>", f"TOML syntax error: {exc}") from None
    return parse_config(data, str(p), p.parent.resolve())
