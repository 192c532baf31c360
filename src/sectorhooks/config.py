"""Host config (TOML), damocles-manager style: ``[Common.Plugins]``, ``[Common.DB]``, stores, syncers.

Every key is checked: an unknown key gets a close-match suggestion, a wrong type names the key
path and the file, and every problem of a file is reported at once (one :class:`ConfigError`).
Paths, and relative SQLite URLs in a ``Meta`` table's ``url``, are resolved relative to the
config file's directory.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import attrs

from sectorhooks_spec import StoreConfig

from .errors import ConfigError, Problem

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
DEFAULT_LISTEN = "127.0.0.1:1789"


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

    listen: str = DEFAULT_LISTEN
    dev_mode: bool = False
    route_gate: bool = False  # serve a plugin namespace only while its registry route is RUNNING
    tenants: bool = False  # with route_gate: the token's tenant must have the plugin enabled
    call_timeout: float = 30.0  # seconds a plugin's JSON-RPC method may run before the call fails
    # Calls in flight per plugin namespace (each on its own thread); beyond it the call is "busy".
    # 32: above the concurrency of a busy client pool, so a fast method is never turned away, while
    # a plugin whose calls all hang holds at most 32 threads.
    plugin_concurrency: int = 32
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
    level: Optional[str] = None  # None: INFO for `serve`, WARNING for commands that print a result
    access_log: bool = False  # one line per JSON-RPC call (logger "sectorhooks.access")


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


class _Problems:
    """Every problem of one config file, collected while it is read (reported together)."""

    def __init__(self, path: str):
        self.path = path
        self.items: List[Problem] = []

    def add(self, key: str, message: str, hint: str = "") -> None:
        self.items.append(Problem(self.path, key, message, hint))


class _Reader:
    """Typed, strict access to one table of the config: a bad key or value is recorded as a
    problem (with its key path) and the key's default is used, so reading goes on."""

    def __init__(self, problems: _Problems, table: Any, where: str, known: Sequence[str]):
        self.problems, self.where = problems, where
        self.table: Mapping[str, Any] = table if isinstance(table, dict) else {}
        self.suggested: Set[str] = set()  # keys a typo was taken for: their absence is that one problem
        for key in self.table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                self.suggested.update(close)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                problems.add(self._at(key), f"unknown key {key!r}", hint)

    def _at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def add(self, key: str, message: str, hint: str = "") -> None:
        """Record a problem of ``key`` of this table."""
        self.problems.add(self._at(key), message, hint)

    def get(self, key: str, kind: Union[type, Tuple[type, ...]], default: Any = None) -> Any:
        value = self.table.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) and kind in (int, float):
            self.add(key, f"must be a number, got a boolean {value!r}")
            return default
        if kind is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, kind):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.add(key, f"must be {want}, got {type(value).__name__} {value!r}")
            return default
        return value

    def require(self, key: str, kind: type) -> Any:
        """The value of a required key; a missing one is a problem (and ``kind()`` stands in)."""
        present = key in self.table
        value = self.get(key, kind)
        if value is None or value == "":
            if value == "" or not (present or key in self.suggested):
                self.add(key, f"missing required key {key!r}")
            return kind()
        return value

    def table_of(self, key: str) -> Mapping[str, Any]:
        return self.get(key, dict, {})  # type: ignore[no-any-return]

    def int_list(self, key: str) -> Tuple[int, ...]:
        items = self.get(key, list, [])
        bad = [item for item in items if not isinstance(item, int) or isinstance(item, bool)]
        if bad:
            self.add(key, f"must be integers (miner IDs), got {bad[0]!r}")
        return tuple(item for item in items if item not in bad)

    def str_list(self, key: str) -> Tuple[str, ...]:
        value = self.get(key, (str, list), [])
        items = [value] if isinstance(value, str) else value
        bad = [item for item in items if not isinstance(item, str)]
        if bad:
            self.add(key, f"must be strings, got {bad[0]!r}")
        return tuple(item for item in items if isinstance(item, str))

    def choice(self, key: str, default: str, allowed: Sequence[str], hint: str, what: str = "value") -> str:
        """A string that must be one of ``allowed``."""
        value: str = self.get(key, str, default)
        if value not in allowed:
            self.add(key, f"unknown {what} {value!r}", hint)
            return default
        return value

    def number(
        self, key: str, kind: type, default: Any, ok: Callable[[Any], bool], message: str, hint: str = ""
    ) -> Any:
        """A number that must pass ``ok``; else a problem saying ``message`` and the default."""
        value = self.get(key, kind, default)
        if not ok(value):
            self.add(key, message.format(value=value), hint)
            return default
        return value


def _resolve(base: Path, value: str) -> Path:
    p = Path(os.path.expandvars(value)).expanduser()
    return p if p.is_absolute() else (base / p)


# ``sqlite:///relative/file`` (three slashes, then no fourth): a path SQLAlchemy would take
# relative to the working directory; a config means its own directory, as for every other path.
_SQLITE_RELATIVE = re.compile(r"^(sqlite(?:\+[A-Za-z0-9_]+)?):///(?!/)([^?]+)(\?.*)?$")


def resolve_sqlite_url(base: Path, url: str) -> str:
    """``url`` with a relative SQLite file made absolute against ``base``; other URLs unchanged."""
    m = _SQLITE_RELATIVE.match(url)
    if m is None or m.group(2) == ":memory:" or m.group(2).startswith("file:"):
        return url
    return f"{m.group(1)}:///{_resolve(base, m.group(2)).as_posix()}{m.group(3) or ''}"


def _meta(base: Path, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """A plugin's ``Meta`` table, its ``url`` (if a relative SQLite URL) resolved like a path."""
    out = {str(k): v for k, v in meta.items()}
    if isinstance(out.get("url"), str):
        out["url"] = resolve_sqlite_url(base, out["url"])
    return out


_STORE_KEYS = (
    "Name",
    "Path",
    "PluginName",
    "Meta",
    "Strict",
    "ReadOnly",
    "Weight",
    "AllowMiners",
    "DenyMiners",
)


def _stores(problems: _Problems, base: Path, entries: Any, where: str) -> Tuple[StoreConfig, ...]:
    if not isinstance(entries, list):
        problems.add(where, "must be an array of tables ([[...]])")
        return ()
    out = []
    names = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.add(f"{where}[{i}]", f"must be a table, got {type(entry).__name__} {entry!r}")
            continue
        r = _Reader(problems, entry, f"{where}[{i}]", _STORE_KEYS)
        name = r.require("Name", str)
        if name and name in names:
            r.add("Name", f"duplicate store name {name!r}")
        names.add(name)
        path = r.require("Path", str)
        out.append(
            StoreConfig(
                name=name,
                path=str(_resolve(base, path)) if path else "",
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


def _plugins(problems: _Problems, base: Path, table: Any) -> PluginsConfig:
    pr = _Reader(
        problems, table, "Common.Plugins", ["Dir", "Disabled", "Bundled", "EntryPoints", "Strict", "Config"]
    )
    plugin_tables = dict(pr.table_of("Config"))
    for name, t in list(plugin_tables.items()):
        if not isinstance(t, dict):
            problems.add(f"Common.Plugins.Config.{name}", "must be a table")
            del plugin_tables[name]
    return PluginsConfig(
        dirs=tuple(_resolve(base, d) for d in pr.str_list("Dir")),
        disabled=pr.str_list("Disabled"),
        bundled=pr.get("Bundled", bool, True),
        entry_points=pr.get("EntryPoints", bool, True),
        strict=pr.get("Strict", bool, False),
        config=plugin_tables,
    )


def _db(problems: _Problems, base: Path, table: Any) -> DBConfig:
    dr = _Reader(problems, table, "Common.DB", ["Driver", "Plugin"])
    driver = dr.get("Driver", str, "plugin")
    if driver != "plugin":
        dr.add("Driver", f"unsupported driver {driver!r}", 'use Driver = "plugin"')
    plr = _Reader(problems, dr.table_of("Plugin"), "Common.DB.Plugin", ["PluginName", "Meta"])
    # with another driver a missing [Common.DB.Plugin] is not a second problem: the driver is
    name = plr.require("PluginName", str) if driver == "plugin" else plr.get("PluginName", str, "")
    return DBConfig(driver=driver, plugin_name=name, meta=_meta(base, plr.table_of("Meta")))


_ISOLATION_HINT = 'use "process" (a supervised worker process) or "thread" (in the host)'


def _syncers(problems: _Problems, base: Path, entries: Any) -> Tuple[SyncerConfig, ...]:
    syncers = []
    seen = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.add(f"Common.Syncers[{i}]", f"must be a table, got {type(entry).__name__} {entry!r}")
            continue
        sr = _Reader(problems, entry, f"Common.Syncers[{i}]", ["Name", "PluginName", "Meta", "Isolation"])
        name = sr.require("Name", str)
        isolation = sr.get("Isolation", str, None)
        if isolation is not None and isolation not in ISOLATIONS:
            sr.add("Isolation", f"unknown value {isolation!r}", _ISOLATION_HINT)
            isolation = None
        if name and name in seen:
            sr.add("Name", f"duplicate syncer name {name!r}")
        seen.add(name)
        syncers.append(
            SyncerConfig(
                name=name,
                plugin_name=sr.require("PluginName", str),
                meta=_meta(base, sr.table_of("Meta")),
                isolation=isolation,
            )
        )
    return tuple(syncers)


def _positive(value: float) -> bool:
    return value > 0


def _sync(problems: _Problems, table: Any) -> SyncSettings:
    syr = _Reader(
        problems,
        table,
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
    return SyncSettings(
        batch_size=syr.get("BatchSize", int, 5000),
        max_attempts=syr.get("MaxAttempts", int, 5),
        on_failure=syr.choice(
            "OnFailure", "dead-letter", ("dead-letter", "stop"), 'use "dead-letter" or "stop"'
        ),
        poll_interval=syr.get("PollInterval", float, 0.05),
        linger=syr.get("Linger", float, 0.25),
        backoff_base=syr.get("BackoffBase", float, 0.05),
        backoff_max=syr.get("BackoffMax", float, 5.0),
        hook_timeout=syr.number(
            "HookTimeout", float, 60.0, _positive, "must be a positive number of seconds"
        ),
        max_crashes=syr.number("MaxCrashes", int, 3, lambda v: v >= 1, "must be at least 1"),
        isolation=syr.choice("Isolation", "process", ISOLATIONS, _ISOLATION_HINT),
        worker_nice=syr.number("WorkerNice", int, 10, lambda v: 0 <= v <= 19, "must be 0 to 19, got {value}"),
        max_lag=syr.get("MaxLag", float, 300.0),
    )


def _listen_problem(listen: str) -> str:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return f"listen address {listen!r} must be HOST:PORT, e.g. 127.0.0.1:1789"
    return ""


def _api(problems: _Problems, table: Any) -> APIConfig:
    ar = _Reader(
        problems,
        table,
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
    seconds = "must be a positive number of seconds"
    listen = ar.get("Listen", str, DEFAULT_LISTEN)
    if _listen_problem(listen):
        ar.add("Listen", _listen_problem(listen))
        listen = DEFAULT_LISTEN
    api = APIConfig(
        listen=listen,
        dev_mode=ar.get("DevMode", bool, False),
        route_gate=ar.get("RouteGate", bool, False),
        tenants=ar.get("Tenants", bool, False),
        call_timeout=ar.number("CallTimeout", float, 30.0, _positive, seconds),
        plugin_concurrency=ar.number("PluginConcurrency", int, 32, lambda v: v >= 1, "must be at least 1"),
        header_timeout=ar.number("HeaderTimeout", float, 10.0, _positive, seconds),
        body_timeout=ar.number("BodyTimeout", float, 30.0, _positive, seconds),
        keep_alive_timeout=ar.number("KeepAliveTimeout", float, 5.0, _positive, seconds),
        max_connections=ar.number(
            "MaxConnections", int, 0, lambda v: v >= 0, "must be 0 (from the open-file limit) or more"
        ),
        metrics_open=ar.get("MetricsOpen", bool, False),
    )
    if api.tenants and not api.route_gate:
        ar.add("Tenants", "tenant checks are part of the route gate", "set RouteGate = true too")
    return api


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log(problems: _Problems, base: Path, table: Any) -> LogConfig:
    lr = _Reader(problems, table, "Common.Log", ["Format", "File", "Level", "AccessLog"])
    log_file = lr.get("File", str, None)
    level = lr.get("Level", str, None)
    if level is not None and level.upper() not in LOG_LEVELS:
        lr.add("Level", f"unknown level {level!r}", "use DEBUG, INFO, WARNING or ERROR")
        level = None
    return LogConfig(
        format=lr.choice("Format", "text", LOG_FORMATS, 'use "text" or "json"'),
        file=_resolve(base, log_file) if log_file else None,
        level=level.upper() if level else None,
        access_log=lr.get("AccessLog", bool, False),
    )


def parse_config(data: Mapping[str, Any], path: str = "<config>", base: Optional[Path] = None) -> HostConfig:
    """Build a :class:`HostConfig` from parsed TOML.

    Reads every key even after a bad one, then raises one :class:`ConfigError` listing every
    problem (each with the file and the key path), if any.
    """
    base = base or Path.cwd()
    problems = _Problems(path)
    top = _Reader(problems, data, "", ["Common"])
    common = _Reader(
        problems,
        top.table_of("Common"),
        "Common",
        ["DataDir", "Plugins", "DB", "PieceStores", "PersistStores", "Syncers", "Sync", "API", "Log"],
    )
    data_dir = common.get("DataDir", str)
    config = HostConfig(
        path=path,
        data_dir=_resolve(base, data_dir) if data_dir else DEFAULT_DATA_DIR,
        plugins=_plugins(problems, base, common.table_of("Plugins")),
        db=_db(problems, base, common.table_of("DB")) if "DB" in common.table else None,
        piece_stores=_stores(problems, base, common.get("PieceStores", list, []), "Common.PieceStores"),
        persist_stores=_stores(problems, base, common.get("PersistStores", list, []), "Common.PersistStores"),
        syncers=_syncers(problems, base, common.get("Syncers", list, [])),
        sync=_sync(problems, common.table_of("Sync")),
        api=_api(problems, common.table_of("API")),
        log=_log(problems, base, common.table_of("Log")),
        raw=dict(data),
    )
    if problems.items:
        raise ConfigError.of(path, problems.items)
    return config


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
