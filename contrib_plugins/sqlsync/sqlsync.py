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
- ``worker``: ``"process"`` writes each flush in a worker process of the instance's own (see
  ``worker.py``: the sink's CPU work runs beside the host's writers, not under their GIL),
  ``"thread"`` in the dispatcher's thread. Default: ``"process"`` for a SQLite file, whose work
  is all done by the writing process; ``"thread"`` for a database server, which does its work in
  its own processes already.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import threading
import time
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
    from .worker import SinkWorker

log = logging.getLogger(__name__)

PLUGIN = "sqlsync"
META_KEYS = ("url", "table_prefix", "batch_size", "events", "retries", "worker", "nice")
WORKERS = ("process", "thread")
# A worker's CPU priority below the host's: the callers of the state manager wait on the KV,
# never on a sink, so on a host short of cores their threads get the CPU first (measured: +5-12%
# changes/s with 3 SQLite sinks on 2 cores); a sink that falls behind catches up from the log.
DEFAULT_NICE = 10
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_]{0,48}$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SinkUnavailable(SectorhooksError):
    """The sink's database stayed unreachable through every retry; nothing of the batch was written."""


class SinkFailed(SectorhooksError):
    """The sink's worker process reports an error that is not transient; nothing was written."""


class _Instance:
    """One syncer instance: its settings, its pending changes, its sink (opened lazily)."""

    def __init__(self, syncer: SyncerInstance, settings: Dict[str, Any]):
        self.name = syncer.name
        self.settings = dict(settings)
        process = self.settings.pop("worker") == "process"
        nice = self.settings.pop("nice")
        self.pending: List[Any] = []  # flat: 5 items per change (sink.Change)
        self.lock = threading.Lock()
        self._sink: Optional[Sink] = None
        self._worker: Optional[SinkWorker] = None
        if process:
            from .worker import SinkWorker

            self._worker = SinkWorker(self.name, self.settings, nice)
            self._worker.start()  # it imports SQLAlchemy while the first batch is buffered

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            from .sink import Sink

            self._sink = Sink(self.name, **self.settings)
        return self._sink

    def write(self, batch: List[Any]) -> List[Any]:
        """The sink's ``write``, in the worker process (once it has started) or in this thread."""
        if self._worker is None:
            return self.sink.write(batch)
        from .worker import WorkerFailed

        try:
            rejected = self._worker.write(batch)
        except WorkerFailed as exc:
            if exc.kind == "worker":  # not the database: no attempt was made
                raise SinkUnavailable(
                    f"{PLUGIN} instance {self.name!r}: {len(batch) // 5} change(s) not written: {exc}"
                ) from None
            if exc.kind == "transient":
                raise self.unavailable(batch, str(exc)) from None
            raise SinkFailed(
                f"{PLUGIN} instance {self.name!r}: database {_masked(self.settings['url'])} failed"
                f" ({exc.kind}), {len(batch) // 5} change(s) not written: {exc}"
            ) from None
        if rejected is None:  # the worker is still starting: this batch is written here
            return self.sink.write(batch)
        return rejected

    def unavailable(self, batch: List[Any], why: str) -> SinkUnavailable:
        return SinkUnavailable(
            f"{PLUGIN} instance {self.name!r}: database {_masked(self.settings['url'])} unavailable "
            f"after {self.settings['retries']} attempt(s), {len(batch) // 5} change(s) not written: {why}"
        )

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
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
    worker = _worker(name, meta, url)
    return {
        "url": url,
        "prefix": prefix,
        "batch_size": _positive_int(name, meta, "batch_size", 5000),
        "events": _boolean(name, meta, "events", True),
        "retries": _positive_int(name, meta, "retries", 3),
        "worker": worker,
        "nice": _nice(name, meta, worker),
    }


def _nice(name: str, meta: Mapping[str, Any], worker: str) -> int:
    value = meta.get("nice")
    if value is None:
        return DEFAULT_NICE if worker == "process" else 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 19:
        raise _meta_error(name, "nice", f"must be an integer from 0 to 19, got {value!r}")
    if worker != "process":
        raise _meta_error(name, "nice", 'applies to a worker process only (worker = "process")')
    return value


def _worker(name: str, meta: Mapping[str, Any], url: str) -> str:
    from .worker import available

    sqlite_file = url.startswith("sqlite:///") and url != "sqlite:///" and ":memory:" not in url
    value = meta.get("worker")
    if value is None:
        return "process" if sqlite_file and available() else "thread"
    if value not in WORKERS:
        raise _meta_error(name, "worker", f"must be one of {', '.join(map(repr, WORKERS))}, got {value!r}")
    if value == "process" and not available():
        raise _meta_error(name, "worker", "'process' needs a POSIX host; use 'thread'")
    if value == "process" and url.startswith("sqlite") and not sqlite_file:
        raise _meta_error(
            name,
            "worker",
            "'process' needs a SQLite file (an in-memory database would live in the worker only)",
        )
    return str(value)


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


def wait_ready(timeout: float = 60.0) -> bool:
    """Wait until every instance's worker process has started (imported SQLAlchemy and opened
    its sink); True once all have, False if one had not within ``timeout`` seconds.

    Never needed for correctness: until its worker is ready an instance writes in the host's
    thread. For a benchmark or a load test that measures the steady state, not the start.
    """
    deadline = time.monotonic() + timeout
    with _REGISTRY_LOCK:
        workers = [inst._worker for inst in _INSTANCES.values() if inst._worker is not None]
    return all(w.wait_ready(max(0.0, deadline - time.monotonic())) for w in workers)


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
            rejected = inst.write(batch)
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
