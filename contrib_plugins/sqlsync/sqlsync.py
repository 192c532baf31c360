"""sqlsync: mirror every sector-state change into SQL tables (SQLite, PostgreSQL, MariaDB/MySQL).

One plugin serves every configured instance (``[[Common.Syncers]]`` naming ``sqlsync``): state
is kept per ``syncer.name`` and created on the first event. Event hooks only buffer
``state_json`` (already serialized by the host: never re-serialized here); ``Flush`` reduces
the buffer to the last state per sector and writes it in one transaction (see ``sink.py``).
SQLAlchemy is imported on first use, not when the host loads the plugin.

Meta keys (all optional):

- ``url``: SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``,
  ``mysql+pymysql://root@127.0.0.1/db``, ``sqlite:////var/lib/sh/mirror.sqlite``. Default: the
  SQLite file ``sqlsync-<instance>.sqlite`` in the data directory (``DataDir`` of this plugin's
  ``[Common.Plugins.Config.sqlsync]`` table or ``data_dir`` given by the host at onInit, else
  ``$SECTORHOOKS_DATA_DIR``, else ``~/.sectorhooks``).
- ``table_prefix``: prepended to ``sectors`` / ``sector_events`` (letters, digits, ``_``).
- ``batch_size``: rows per ``executemany`` inside a flush's one transaction (default 5000).
- ``events``: keep the append-only ``sector_events`` history (default true).
- ``retries``: attempts on a transient database error before ``Flush`` raises (default 3).

Where it runs is the host's business: by default each instance's hooks and ``Flush`` run in a
worker process the host supervises (``[[Common.Syncers]] Isolation``), so the sink's CPU work is
beside the host's writers, not under their GIL.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from sectorhooks_spec import (
    AllocatedSector,
    RejectedChanges,
    SectorhooksError,
    SectorID,
    SyncerInstance,
    Workspace,
)

if TYPE_CHECKING:
    from .sink import Sink

log = logging.getLogger(__name__)

PLUGIN = "sqlsync"
META_KEYS = ("url", "table_prefix", "batch_size", "events", "retries")
#: Keys of earlier versions, with what replaced them.
REMOVED_KEYS = {
    "worker": "the host runs every syncer in a worker process of its own: [[Common.Syncers]] Isolation",
    "nice": "the host runs every syncer in a worker process of its own: [[Common.Syncers]] Isolation",
}
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{0,48}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SinkUnavailable(SectorhooksError):
    """The sink's database stayed unreachable through every retry; nothing of the batch was written."""


class _Instance:
    """One syncer instance: its settings, its pending changes, its sink (opened lazily)."""

    def __init__(self, syncer: SyncerInstance, settings: Dict[str, Any]):
        self.name = syncer.name
        self.settings = dict(settings)
        self.pending: List[Any] = []  # flat: 5 items per change (sink.Change)
        self.lock = threading.Lock()
        self._sink: Optional[Sink] = None

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            from .sink import Sink

            self._sink = Sink(self.name, **self.settings)
        return self._sink

    def unavailable(self, batch: List[Any], why: str) -> SinkUnavailable:
        return SinkUnavailable(
            f"{PLUGIN} instance {self.name!r}: database {_masked(self.settings['url'])} unavailable "
            f"after {self.settings['retries']} attempt(s), {len(batch) // 5} change(s) not written: {why}"
        )

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None


_INSTANCES: Dict[str, _Instance] = {}
_REGISTRY_LOCK = threading.Lock()
_CONFIG: Dict[str, Any] = {}


def _meta_error(name: str, key: str, problem: str) -> ValueError:
    return ValueError(f"{PLUGIN} instance {name!r}: meta key {key!r} {problem}")


def settings_from_meta(name: str, meta: Mapping[str, Any]) -> Dict[str, Any]:
    """Check an instance's ``Meta`` table; a bad key is a ``ValueError`` naming it and the fix."""
    for key in meta:
        if key in REMOVED_KEYS:
            raise _meta_error(name, key, f"was removed: {REMOVED_KEYS[key]}")
        if key not in META_KEYS:
            close = difflib.get_close_matches(str(key), META_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(META_KEYS)}"
            raise _meta_error(name, key, f"is unknown ({hint})")
    url = meta.get("url")
    if url is None:
        url = default_url(name)
    elif not isinstance(url, str) or not url.strip():
        raise _meta_error(name, "url", f"must be a SQLAlchemy URL string, got {url!r}")
    prefix = meta.get("table_prefix", "")
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise _meta_error(
            name, "table_prefix", f"must be letters, digits or '_' (at most 48), got {prefix!r}"
        )
    return {
        "url": url,
        "prefix": prefix,
        "batch_size": _positive_int(name, meta, "batch_size", 5000),
        "events": _boolean(name, meta, "events", True),
        "retries": _positive_int(name, meta, "retries", 3),
    }


def _positive_int(name: str, meta: Mapping[str, Any], key: str, default: int) -> int:
    value = meta.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _meta_error(name, key, f"must be a positive integer, got {value!r}")
    return value


def _boolean(name: str, meta: Mapping[str, Any], key: str, default: bool) -> bool:
    value = meta.get(key, default)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if not isinstance(value, bool):
        raise _meta_error(name, key, f"must be true or false, got {value!r}")
    return value


def default_url(name: str) -> str:
    """``sqlite:///<data dir>/sqlsync-<name>.sqlite``, the sink of an instance with no ``url``."""
    base = _CONFIG.get("DataDir") or _CONFIG.get("data_dir") or os.environ.get("SECTORHOOKS_DATA_DIR")
    root = Path(str(base or "~/.sectorhooks")).expanduser()
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return f"sqlite:///{root / f'sqlsync-{safe}.sqlite'}"


def _instance(syncer: SyncerInstance) -> _Instance:
    inst = _INSTANCES.get(syncer.name)
    if inst is None:
        with _REGISTRY_LOCK:
            inst = _INSTANCES.get(syncer.name)
            if inst is None:
                settings = settings_from_meta(syncer.name, syncer.meta or {})
                if settings["url"].startswith("sqlite:///"):
                    Path(settings["url"][len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
                inst = _INSTANCES[syncer.name] = _Instance(syncer, settings)
                log.info("%s instance %r writes to %s", PLUGIN, syncer.name, _masked(settings["url"]))
    return inst


def _masked(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


# --- lifecycle -------------------------------------------------------------------------------


def setup(config: Mapping[str, Any]) -> None:
    """``onInit``: remember the plugin's config table (``DataDir`` for default SQLite sinks)."""
    _CONFIG.clear()
    _CONFIG.update(config or {})


def close() -> None:
    """``onShutdown``: dispose of every engine; unflushed changes are re-delivered by the host."""
    with _REGISTRY_LOCK:
        for inst in _INSTANCES.values():
            inst.close()
        _INSTANCES.clear()


# --- events: buffer only -----------------------------------------------------------------------

_ONLINE = Workspace.ONLINE.value
_OFFLINE = Workspace.OFFLINE.value
# Workspace is a str enum: this maps the enum and its plain string alike, without a call.
_WS = {Workspace.ONLINE: _ONLINE, Workspace.OFFLINE: _OFFLINE}


def on_import(syncer: SyncerInstance, workspace: Workspace, state_json: str) -> None:
    """``OnImport``: buffer the imported state."""
    from .sink import sector_key

    miner, number = sector_key(state_json)
    _instance(syncer).pending.extend((miner, number, _WS[workspace], "import", state_json))


def on_init(
    syncer: SyncerInstance,
    sectors: Sequence[AllocatedSector],
    workspace: Workspace,
    states_json: Sequence[str],
) -> None:
    """``OnInit``: buffer the initial states of newly allocated sectors."""
    ws = _WS[workspace]
    pending = _instance(syncer).pending
    for s, js in zip(sectors, states_json):
        pending.extend((s.id.miner, s.id.number, ws, "init", js))


def on_update(syncer: SyncerInstance, sector_id: SectorID, workspace: Workspace, state_json: str) -> None:
    """``OnUpdate``: buffer the new state."""
    inst = _INSTANCES.get(syncer.name) or _instance(syncer)
    inst.pending.extend((sector_id.miner, sector_id.number, _WS[workspace], "update", state_json))


def on_finalize(syncer: SyncerInstance, sector_id: SectorID, state_json: str) -> None:
    """``OnFinalize``: buffer the state, now in the offline workspace."""
    _instance(syncer).pending.extend((sector_id.miner, sector_id.number, _OFFLINE, "finalize", state_json))


def on_restore(syncer: SyncerInstance, sector_id: SectorID, state_json: str) -> None:
    """``OnRestore``: buffer the state, back in the online workspace."""
    _instance(syncer).pending.extend((sector_id.miner, sector_id.number, _ONLINE, "restore", state_json))


def flush(syncer: SyncerInstance) -> None:
    """``Flush``: write what was buffered; raises ``RejectedChanges`` for rows the database refused."""
    inst = _instance(syncer)
    with inst.lock:
        batch, inst.pending = inst.pending, []
        if not batch:
            return
        from .sink import classify, describe

        try:
            rejected = inst.sink.write(batch)
        except Exception as exc:
            if isinstance(exc, SectorhooksError) or classify(exc) != "transient":
                raise
            raise inst.unavailable(batch, describe(exc)) from exc
    if rejected:
        raise RejectedChanges(rejected)


# --- reading a sink back (``sync verify``, the demo's equality check) -------------------------


def read_rows(url: str, table_prefix: str = "") -> Dict[str, Tuple[int, str]]:
    """``str(SectorID) -> (version, state_json)`` as stored in ``<prefix>sectors`` ({} if absent)."""
    from .sink import create_engine

    if not _PREFIX_RE.match(table_prefix):
        raise ValueError(f"{PLUGIN}: bad table_prefix {table_prefix!r}")
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and not Path(u.database).exists():
        return {}  # do not create an empty file by looking
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            table = f"{table_prefix}sectors"
            if not sa.inspect(conn).has_table(table):
                return {}
            q = engine.dialect.identifier_preparer.quote
            sql = f"SELECT miner, number, version, state_json FROM {q(table)}"
            return {f"s-t0{m}-{n}": (int(v), s) for m, n, v, s in conn.exec_driver_sql(sql)}
    finally:
        engine.dispose()
