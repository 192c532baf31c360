"""PluginHost: a pluggy PluginManager with lifecycle, per-plugin isolation and driver lookup.

pluggy validates and registers every plugin; the host then calls impls itself, one plugin at a
time, because pluggy stops a broadcast at the first impl that raises. Call lists are built once
per hook (and rebuilt when a plugin changes status), so the hot path is one small loop.

pluggy's call chain is therefore never used, and what only it gives is refused rather than
half-done: the loader refuses ``@hookimpl(wrapper=True)`` and ``hookwrapper=True`` impls (a
wrapper wraps the other plugins' calls, which the host makes apart, isolated). ``tryfirst`` and
``trylast`` order the calls as in pluggy; between impls of equal rank the host keeps load order
(pluggy calls the last registered first).
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import os
import signal
import types
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

import attrs
import pluggy

from sectorhooks_spec.kinds import Kind
from sectorhooks_spec.manifest import Manifest, ManifestError, Problem
from sectorhooks_spec.markers import PROJECT_NAME
from sectorhooks_spec.specs import ALL_SPECS

from . import loader
from .config import HostConfig
from .errors import (
    DuplicatePluginError,
    NormalizedNameClashError,
    PluginCallError,
    PluginLoadError,
    PluginNotActiveError,
    SectorhooksError,
    UnknownPluginError,
    UnsafePluginFilesError,
)

log = logging.getLogger(__name__)

DISABLED_FILE = "disabled-plugins.json"


class PluginStatus(str, enum.Enum):
    """Where a plugin is in its life."""

    LOADED = "loaded"  # registered, onInit not yet run
    ACTIVE = "active"  # onInit done (or none): hooks are called
    FAILED = "failed"  # import, registration or onInit failed: hooks are never called
    INVALID = "invalid"  # manifest or binding problems
    DISABLED = "disabled"  # switched off by config or `plugins disable`: never imported
    STOPPED = "stopped"  # onShutdown ran

    def __str__(self) -> str:
        return self.value


CALLABLE_STATUSES = frozenset({PluginStatus.LOADED, PluginStatus.ACTIVE})


@attrs.define
class PluginRecord:
    """What the host knows about one plugin, good or bad."""

    name: str
    source: str
    manifest_path: str
    status: PluginStatus
    manifest: Optional[Manifest] = None
    bound: Optional[loader.BoundPlugin] = None
    error: str = ""
    problems: Tuple[Problem, ...] = ()

    @property
    def kind(self) -> Optional[Kind]:
        return self.manifest.kind if self.manifest else None

    @property
    def qualified_name(self) -> str:
        return self.manifest.qualified_name if self.manifest else f"?/{self.name}"

    def as_dict(self) -> Dict[str, Any]:
        """JSON-friendly summary (``plugins list --json``)."""
        m = self.manifest
        return {
            "name": self.name,
            "kind": m.kind.value if m else None,
            "version": m.version if m else "",
            "description": m.description if m else "",
            "build_time": m.build_time if m else "",
            "status": self.status.value,
            "source": self.source,
            "manifest": self.manifest_path,
            "ext_points": [e.ext_point for e in m.exports] if m else [],
            "requires": list(m.requires) if m else [],
            "error": self.error,
            "problems": [str(p) for p in self.problems],
        }


@attrs.frozen
class PluginImpl:
    """One plugin's implementation of one hook, callable with keyword arguments."""

    plugin: str
    hook: str
    function: Callable[..., Any]
    argnames: Tuple[str, ...]

    def __call__(self, **kwargs: Any) -> Any:
        return self.function(*[kwargs[a] for a in self.argnames])


@attrs.frozen
class Broadcast:
    """Result of calling every plugin of a hook: values by plugin, and the failures."""

    results: List[Tuple[str, Any]]
    failures: List[PluginCallError]

    @property
    def ok(self) -> bool:
        return not self.failures


_IMPL_DEFAULTS = {
    "wrapper": False,
    "hookwrapper": False,
    "optionalhook": False,
    "tryfirst": False,
    "trylast": False,
    "specname": None,
}


class _Manager(pluggy.PluginManager):
    """pluggy manager that reads a bound plugin's hooks from its manifest bindings."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        if isinstance(plugin, loader.BoundPlugin):
            if name not in plugin.impls:
                return None
            opts = dict(_IMPL_DEFAULTS)
            opts.update(plugin.impl_opts.get(name, {}))
            opts["specname"] = None  # bound under the hook's own name already
            return opts
        return super().parse_hookimpl_opts(plugin, name)


class PluginHost:
    """Loads plugins, runs their lifecycle and calls them in isolation.

    Use as a context manager: plugins are shut down on exit, also after errors and SIGTERM
    (see :meth:`handle_sigterm`).
    """

    def __init__(self, config: Optional[HostConfig] = None):
        self.config = config or HostConfig()
        self.pm = _Manager(PROJECT_NAME)
        for spec in ALL_SPECS:
            self.pm.add_hookspecs(spec)
        self._spec_args: Dict[str, Tuple[str, ...]] = {
            name: tuple(caller.spec.argnames) if caller.spec else ()
            for name, caller in vars(self.pm.hook).items()
            if isinstance(caller, pluggy.HookCaller)
        }
        self.records: Dict[str, PluginRecord] = {}
        self._normalized: Dict[str, str] = {}  # normalised name -> the name it was loaded under
        self.orphans: List[ManifestError] = []  # problems of plugins whose name is unknown
        self._calls: Dict[str, List[PluginImpl]] = {}

    # --- loading --------------------------------------------------------------------

    def disabled_names(self) -> FrozenSet[str]:
        """Disabled by config ``Disabled = [...]`` or by ``sectorhooks plugins disable``."""
        names = set(self.config.plugins.disabled)
        state = self.config.data_dir / DISABLED_FILE
        if state.is_file():
            try:
                names.update(json.loads(state.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable %s: %s", state, exc)
        return frozenset(names)

    def load(self, extra_dirs: Iterable[Path] = ()) -> PluginHost:
        """Discover and register every plugin from every configured source."""
        sources: List[Iterable[Tuple[Optional[loader.Candidate], Optional[ManifestError]]]] = []
        if self.config.plugins.bundled:
            sources.append(loader.scan_dir(loader.bundled_plugins_dir(), "bundled"))
        for d in (*self.config.plugins.dirs, *extra_dirs):
            sources.append(loader.scan_dir(Path(d)))
        if self.config.plugins.entry_points:
            sources.append(loader.scan_entry_points())
        disabled = self.disabled_names()
        for source in sources:
            for candidate, error in source:
                if error is not None:
                    log.error("%s", error)
                    self.orphans.append(error)
                elif candidate is not None:
                    self.add(candidate, disabled)
        return self

    def add(
        self, candidate: loader.Candidate, disabled: Iterable[str] = (), check_requires: bool = True
    ) -> PluginRecord:
        """Validate, import and register one candidate; a bad one is recorded, never raised.

        ``check_requires=False`` skips the ``requires`` check (``plugin build`` on another machine).
        """
        manifest, problems = loader.read_manifest(candidate)
        if manifest is None:
            err = ManifestError(candidate.manifest_path, problems)
            log.error("%s", err)
            self.orphans.append(err)
            return PluginRecord(
                "?",
                candidate.source,
                candidate.manifest_path,
                PluginStatus.INVALID,
                problems=tuple(problems),
                error=str(err),
            )
        name = manifest.name
        normalized = loader.normalize_name(name)
        taken = self._normalized.get(normalized)
        if taken is not None:
            # One name, however spelled: dup-x and dup_x would share one import package.
            first = self.records[taken]
            err2: DuplicatePluginError
            if taken == name:
                err2 = DuplicatePluginError(name, first.manifest_path, candidate.manifest_path)
            else:
                err2 = NormalizedNameClashError(
                    name, taken, first.manifest_path, candidate.manifest_path, normalized
                )
            log.error("%s", err2)
            self.orphans.append(
                ManifestError(
                    candidate.manifest_path,
                    [Problem(candidate.manifest_path, "name", str(err2))],
                    plugin=name,
                )
            )
            return PluginRecord(
                name,
                candidate.source,
                candidate.manifest_path,
                PluginStatus.INVALID,
                manifest,
                error=str(err2),
            )
        record = PluginRecord(name, candidate.source, candidate.manifest_path, PluginStatus.LOADED, manifest)
        self.records[name] = record
        self._normalized[normalized] = name
        if name in disabled:
            record.status = PluginStatus.DISABLED
            log.info("plugin %r is disabled; not imported", manifest.qualified_name)
            return record
        unsafe = loader.writable_by_others(candidate)
        if unsafe:
            strict = self.config.plugins.strict
            unsafe_err = UnsafePluginFilesError(name, unsafe, strict)
            if strict:
                return self._fail(record, str(unsafe_err))
            log.warning("%s", unsafe_err)
        if check_requires and manifest.requires:
            from .deps import unsatisfied

            conflicts = unsatisfied(manifest.requires)
            if conflicts:
                message = "requires not satisfied: " + "; ".join(conflicts)
                return self._fail(record, str(PluginLoadError(name, candidate.manifest_path, message)))
        # Import and bind even when the manifest has problems, so one report lists them all.
        try:
            module = loader.import_plugin_module(candidate, manifest)
            bound = loader.bind(candidate, manifest, module, self._spec_args)
        except ManifestError as exc:
            problems = [*problems, *exc.problems]
        except PluginLoadError as exc:
            if not problems:
                return self._fail(record, str(exc))
            problems.append(Problem(candidate.manifest_path, "module", str(exc)))
        if problems:
            return self._invalid(record, ManifestError(candidate.manifest_path, problems, plugin=name))
        try:
            self.pm.register(bound, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.pm.has_plugin(name):  # pluggy < 1.7 leaves a half-registered plugin behind
                self.pm.unregister(name=name)
            msg = str(exc).replace("\n", " ")
            return self._fail(
                record, str(PluginLoadError(name, candidate.manifest_path, f"pluggy refused it: {msg}"))
            )
        record.bound = bound
        self._calls.clear()
        if log.isEnabledFor(logging.INFO):
            built = build_time(candidate, manifest)
            log.info(
                "loaded plugin '%s' version %s, build time: %s, from %s",
                manifest.qualified_name,
                manifest.version or "-",
                built,
                candidate.source,
                extra={
                    "fields": {
                        "plugin": manifest.qualified_name,
                        "version": manifest.version,
                        "build_time": built,
                        "source": candidate.source,
                    }
                },
            )
        return record

    def _invalid(self, record: PluginRecord, exc: ManifestError) -> PluginRecord:
        record.status = PluginStatus.INVALID
        record.problems = exc.problems
        record.error = str(exc)
        log.error("%s", exc)
        return record

    def _fail(self, record: PluginRecord, message: str) -> PluginRecord:
        record.status = PluginStatus.FAILED
        record.error = message
        log.error("%s", message)
        if record.bound is not None and self.pm.is_registered(record.bound):
            self.pm.unregister(record.bound)
        self._calls.clear()
        return record

    # --- lifecycle ------------------------------------------------------------------

    def start(self, kinds: Optional[Iterable[Kind]] = None, kvstore: Optional[Any] = None) -> PluginHost:
        """Run onInit in load order (only of ``kinds`` if given); one that raises is marked failed.

        The runtime starts KVStore plugins first, opens the store, then starts the rest with it.
        """
        wanted = frozenset(kinds) if kinds is not None else None
        for record in list(self.records.values()):
            if record.status is not PluginStatus.LOADED:
                continue
            if wanted is not None and record.kind not in wanted:
                continue
            impl = self._own_impl(record, "plugin_init")
            if impl is not None:
                try:
                    table = {"DataDir": str(self.config.data_dir), **self.config.plugin_config(record.name)}
                    impl(config=table, kvstore=kvstore)
                except Exception as exc:
                    self._fail(record, f"plugin {record.name!r} onInit raised {type(exc).__name__}: {exc}")
                    log.debug("onInit traceback of %r", record.name, exc_info=True)
                    continue
            record.status = PluginStatus.ACTIVE
        self._calls.clear()
        return self

    def shutdown(self) -> None:
        """Run onShutdown in reverse load order for every started plugin; errors are logged.

        A plugin that was loaded but never started (its onInit never ran) is not shut down.
        """
        for record in reversed(list(self.records.values())):
            if record.status is not PluginStatus.ACTIVE:
                continue
            impl = self._own_impl(record, "plugin_shutdown")
            if impl is not None:
                try:
                    impl()
                except Exception as exc:
                    log.error("plugin %r onShutdown raised %s: %s", record.name, type(exc).__name__, exc)
            record.status = PluginStatus.STOPPED
        self._calls.clear()

    def __enter__(self) -> PluginHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @staticmethod
    def handle_sigterm() -> None:
        """Turn SIGTERM into ``SystemExit`` so ``with PluginHost(...)`` shuts plugins down."""

        def _exit(signum: int, frame: Optional[types.FrameType]) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _exit)

    # --- lookup and calls -----------------------------------------------------------

    def plugins(self, kind: Optional[Kind] = None) -> List[PluginRecord]:
        """Records in load order, optionally of one kind."""
        return [r for r in self.records.values() if kind is None or r.kind is kind]

    def get(self, name: str) -> PluginRecord:
        """The record of ``name``; raises :class:`UnknownPluginError`."""
        try:
            return self.records[name]
        except KeyError:
            raise UnknownPluginError("", name, self.records) from None

    def require_driver(self, kind: Kind, name: str, where: str = "") -> PluginRecord:
        """The callable plugin ``name`` of ``kind`` (KVStore, FileStore), or a clear error."""
        record = self.records.get(name)
        if record is None or record.kind is not kind:
            available = [r.name for r in self.plugins(kind) if r.status in CALLABLE_STATUSES]
            raise UnknownPluginError(kind.value, name, available, where)
        if record.status not in CALLABLE_STATUSES:
            raise PluginNotActiveError(name, record.status.value, record.error)
        return record

    def call_driver(self, kind: Kind, name: str, hook: str, where: str = "", **kwargs: Any) -> Any:
        """Call ``hook`` of the one plugin config names; its exception is wrapped with names."""
        record = self.require_driver(kind, name, where)
        impl = self._own_impl(record, hook)
        if impl is None:
            raise PluginNotActiveError(name, record.status.value, f"it has no {hook} implementation")
        try:
            return impl(**kwargs)
        except SectorhooksError:
            raise
        except Exception as exc:
            raise PluginCallError(name, hook, exc) from exc

    def impls(self, hook: str) -> List[PluginImpl]:
        """Callable impls of ``hook`` in call order (tryfirst, load order, trylast)."""
        calls = self._calls.get(hook)
        if calls is None:
            calls = self._calls[hook] = self._build_calls(hook)
        return calls

    def impl(self, plugin: str, hook: str) -> Optional[PluginImpl]:
        """``plugin``'s impl of ``hook`` if it is callable, else ``None``."""
        for impl in self.impls(hook):
            if impl.plugin == plugin:
                return impl
        return None

    def broadcast(self, hook: str, **kwargs: Any) -> Broadcast:
        """Call ``hook`` on every plugin, one at a time; a raising plugin never stops the rest."""
        calls = self._calls.get(hook)
        if calls is None:
            calls = self.impls(hook)
        results: List[Tuple[str, Any]] = []
        failures: List[PluginCallError] = []
        for impl in calls:
            try:
                results.append((impl.plugin, impl.function(*[kwargs[a] for a in impl.argnames])))
            except Exception as exc:
                failures.append(PluginCallError(impl.plugin, hook, exc))
                log.error("plugin %r hook %r raised %s: %s", impl.plugin, hook, type(exc).__name__, exc)
        return Broadcast(results, failures)

    def _own_impl(self, record: PluginRecord, hook: str) -> Optional[PluginImpl]:
        if record.bound is None or hook not in record.bound.impls:
            return None
        fn = record.bound.impls[hook]
        return PluginImpl(record.name, hook, fn, loader.argnames(fn))

    def _build_calls(self, hook: str) -> List[PluginImpl]:
        caller: Optional[pluggy.HookCaller] = getattr(self.pm.hook, hook, None)
        if caller is None:
            raise AttributeError(f"no hook named {hook!r}")
        hookimpls = caller.get_hookimpls()
        ordered = (
            [i for i in hookimpls if i.tryfirst]
            + [i for i in hookimpls if not i.tryfirst and not i.trylast]
            + [i for i in hookimpls if i.trylast]
        )
        out = []
        for hi in ordered:
            record = self.records.get(hi.plugin_name)
            if record is None or record.status not in CALLABLE_STATUSES:
                continue
            out.append(PluginImpl(hi.plugin_name, hook, hi.function, tuple(hi.argnames)))
        return out

    def spec_args(self) -> Mapping[str, Sequence[str]]:
        """Argument names of every hookspec."""
        return self._spec_args


def _utc(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_time(candidate: loader.Candidate, manifest: Manifest, max_files: int = 5000) -> str:
    """When the plugin was built, ISO 8601 UTC: its manifest's ``build_time`` (``plugin build``
    stamps it), else the bundle's mtime, else the newest mtime of its directory's files."""
    if manifest.build_time:
        return manifest.build_time
    try:
        if candidate.bundle is not None:
            return _utc(os.stat(candidate.bundle).st_mtime)
        newest, seen = 0.0, 0
        for root, dirs, files in os.walk(candidate.import_path):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for name in files:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
                seen += 1
            if seen >= max_files:
                break
        return _utc(newest) if seen else "unknown"
    except OSError:
        return "unknown"


def set_disabled(config: HostConfig, name: str, disabled: bool) -> List[str]:
    """Persist ``plugins disable/enable NAME`` in the data directory; returns the new list."""
    state = config.data_dir / DISABLED_FILE
    names = set()
    if state.is_file():
        names.update(json.loads(state.read_text(encoding="utf-8")))
    (names.add if disabled else names.discard)(name)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(sorted(names)), encoding="utf-8")
    return sorted(names)
