"""Every error class of the host. Messages name the file, the plugin and the field, and the fix.

Errors a plugin may raise or see (manifest, KV, file store) live in ``sectorhooks_spec.errors``
and are re-exported here, so ``from sectorhooks.errors import ...`` reaches all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import attrs

from sectorhooks_spec.errors import (
    CommitOutcomeUnknown,
    DecodeError,
    FileStoreError,
    KeyNotFound,
    KVError,
    ManifestError,
    Problem,
    SectorhooksError,
    StoreUnavailable,
    TransactionConflict,
)

__all__ = [
    "BuildError",
    "CommitOutcomeUnknown",
    "ConfigError",
    "DecodeError",
    "DuplicatePluginError",
    "FileStoreError",
    "KVError",
    "KVRetryExhausted",
    "KeyNotFound",
    "LeaseLost",
    "LogTrimmed",
    "ManifestError",
    "NeedsTransaction",
    "NormalizedNameClashError",
    "NotRegisteredError",
    "OpenFileLimitError",
    "PluginCallBusy",
    "PluginCallError",
    "PluginCallTimeout",
    "PluginLoadError",
    "PluginNotActiveError",
    "ProbeTimeout",
    "Problem",
    "RpcError",
    "SectorhooksError",
    "StoreUnavailable",
    "SyncLeaseLost",
    "SyncerStopped",
    "TransactionConflict",
    "UnknownPluginError",
    "UnsafePluginFilesError",
    "WorkerStartError",
]


class ConfigError(SectorhooksError):
    """The host config file is invalid: names the file, the key path and the fix.

    Carries every problem found (``problems``, each a :class:`Problem` whose ``field`` is the key
    path); ``key`` is the first one's. One problem reads ``FILE: [Key.Path] message (hint)``;
    several read ``config FILE has N problems:`` and one such line each.
    """

    def __init__(self, path: str, key: str, message: str, hint: str = ""):
        self._set(path, (Problem(path, key, message, hint),))

    @classmethod
    def of(cls, path: str, problems: Sequence[Problem]) -> ConfigError:
        """One error for every problem of the config file ``path`` (at least one)."""
        if not problems:
            raise ValueError("ConfigError.of needs at least one problem")
        err = cls.__new__(cls)
        err._set(path, tuple(problems))
        return err

    def _set(self, path: str, problems: Tuple[Problem, ...]) -> None:
        self.path, self.problems = path, problems
        self.key = problems[0].field
        lines = [_config_line(p) for p in problems]
        if len(lines) == 1:
            text = lines[0]
        else:
            head = f"config {path or '(no file)'} has {len(lines)} problems:"
            text = "\n".join([head, *(f"  - {line}" for line in lines)])
        SectorhooksError.__init__(self, text)

    def with_path(self, path: str) -> ConfigError:
        """The same problems, those without a file now naming ``path`` (e.g. a check done after loading)."""
        return ConfigError.of(path, [attrs.evolve(p, path=p.path or path) for p in self.problems])


def _config_line(p: Problem) -> str:
    return str(p) if p.path else str(p)[len(": ") :]


class PluginLoadError(SectorhooksError):
    """A plugin could not be imported or registered (its module raised, pluggy refused it...)."""

    def __init__(self, plugin: str, source: str, message: str, function: Optional[str] = None):
        self.plugin, self.source, self.function = plugin, source, function
        what = f"plugin {plugin!r}" + (f" function {function!r}" if function else "")
        super().__init__(f"{what} from {source}: {message}")


class UnsupportedHookImplError(PluginLoadError):
    """A plugin's impl asks for call semantics the host does not give: ``@hookimpl(wrapper=True)``
    or ``hookwrapper=True``. The host calls each plugin's impl on its own (drivers by name,
    broadcasts one plugin at a time, syncers in their worker process), never through pluggy's
    call chain, so there is nothing for a wrapper to wrap."""

    def __init__(self, plugin: str, source: str, function: str, hook: str, option: str, field: str):
        self.hook, self.option, self.field = hook, option, field
        self.reason = (
            f"@hookimpl({option}=True) on hook {hook!r} is not supported: the host calls each "
            "plugin's impl on its own, isolated from the others, so there is no call chain to wrap"
        )
        self.fix = f"remove {option}=True and do the work before and after inside the function"
        super().__init__(plugin, source, f"[{field}] {self.reason} (fix: {self.fix})", function)


class DuplicatePluginError(SectorhooksError):
    """Two plugins share one name; both sources are named."""

    def __init__(self, name: str, first: str, second: str):
        self.name, self.first, self.second = name, first, second
        super().__init__(
            f"duplicate plugin name {name!r}: {second} clashes with {first} (already loaded); "
            "rename one in its manifest.toml or disable it"
        )


class NormalizedNameClashError(DuplicatePluginError):
    """Two plugin names differ only in case or in ``-``/``_``/``.`` (PEP 503): one plugin, twice."""

    def __init__(self, name: str, first_name: str, first: str, second: str, normalized: str):
        SectorhooksError.__init__(
            self,
            f"plugin name {name!r} from {second} clashes with {first_name!r} from {first} (already "
            f"loaded): names that differ only in case, '-', '_' or '.' are one name ({normalized!r}); "
            "rename one in its manifest.toml or disable it",
        )
        self.name, self.first, self.second = name, first, second
        self.first_name, self.normalized = first_name, normalized


class UnsafePluginFilesError(SectorhooksError):
    """Plugin files or directories that other users may write (mode & 0o022), named as ssh does for keys."""

    def __init__(self, plugin: str, paths: Sequence[Tuple[str, int]], strict: bool = False):
        self.plugin, self.paths, self.strict = plugin, tuple(paths), strict
        shown = [f"{path} is writable by other users (mode 0o{mode:o})" for path, mode in self.paths[:10]]
        if len(self.paths) > 10:
            shown.append(f"and {len(self.paths) - 10} more")
        fix = "chmod go-w it" if len(self.paths) == 1 else "chmod go-w them"
        tail = "; refused: [Common.Plugins] Strict = true" if strict else ""
        super().__init__(f"plugin {plugin!r}: {'; '.join(shown)}; {fix}{tail}")


class UnknownPluginError(SectorhooksError):
    """Config names a plugin that is not loaded; lists the ones that are."""

    def __init__(self, kind: str, name: str, available: Iterable[str], where: str = ""):
        self.kind, self.name = kind, name
        self.available = sorted(available)
        names = ", ".join(repr(n) for n in self.available) or "none"
        loc = f"{where}: " if where else ""
        super().__init__(f"{loc}no loaded {kind} plugin named {name!r}; loaded {kind} plugins: {names}")


class PluginNotActiveError(SectorhooksError):
    """A plugin exists but failed or is disabled, so its hooks are not called."""

    def __init__(self, name: str, status: str, reason: str = ""):
        self.name, self.status = name, status
        super().__init__(f"plugin {name!r} is {status}" + (f": {reason}" if reason else ""))


class PluginCallError(SectorhooksError):
    """A plugin's hook raised; wraps the original exception with plugin and hook names."""

    def __init__(self, plugin: str, hook: str, exc: BaseException):
        self.plugin, self.hook, self.exc = plugin, hook, exc
        super().__init__(f"plugin {plugin!r} hook {hook!r} raised {type(exc).__name__}: {exc}")


class KVRetryExhausted(KVError):
    """An optimistic update kept conflicting until its attempt or time budget ran out."""

    def __init__(self, target: str, attempts: int, elapsed: float, last: Optional[BaseException] = None):
        self.target, self.attempts, self.elapsed = target, attempts, elapsed
        super().__init__(
            f"update on {target} still conflicting after {attempts} attempt(s) in {elapsed:.2f}s"
            + (f" (last: {last})" if last else "")
            + "; too many concurrent writers on the same keys, or raise the retry budget"
        )


def format_problems(problems: Sequence[Problem]) -> str:
    """One problem per line, as the CLI prints them."""
    return "\n".join(str(p) for p in problems)


class RouteRefused(SectorhooksError):
    """Route gating refused a JSON-RPC call to a plugin namespace; ``code`` is the JSON-RPC error code."""

    def __init__(self, code: int = -32010, message: str = "plugin namespace refused"):
        self.code, self.message = code, message
        super().__init__(message)


class RpcNamespaceError(SectorhooksError):
    """A RegisterJsonRpc plugin's ``Handler()`` was refused: namespace taken or invalid, bad handler."""

    def __init__(self, plugin: str, namespace: str, message: str):
        self.plugin, self.namespace = plugin, namespace
        super().__init__(f"plugin {plugin!r} JSON-RPC namespace {namespace!r}: {message}")


class SectorNotFound(KeyNotFound):
    """A sector the state manager was asked about is in neither workspace."""

    def __init__(self, sector: object):
        self.sector = sector
        SectorhooksError.__init__(
            self, f"sector {sector} not found (neither online nor offline); import or init it first"
        )
        self.collection, self.key = "sectors", str(sector).encode()


class SectorStateError(SectorhooksError, ValueError):
    """A state change was refused (sector exists, wrong workspace, bad field); nothing was written."""


class SyncError(SectorhooksError):
    """A sync command failed: unknown syncer, unsupported verify, a sink that cannot be read."""


class SinkUnverifiable(SyncError):
    """A syncer's sink cannot be read back: its plugin does not export ``ReadBack``."""

    def __init__(self, syncer: str, plugin: str):
        self.syncer, self.plugin = syncer, plugin
        super().__init__(
            f"sync verify is not supported for syncer {syncer!r}: plugin {plugin!r} has no ReadBack "
            "extension point, so its sink is unverifiable (add "
            '{ extPoint = "ReadBack", impl = "read_back" } to its manifest.toml export: '
            "see sectorhooks_spec.sync)"
        )


class PluginCallBusy(SectorhooksError):
    """A plugin's JSON-RPC namespace is at its limit of calls in flight; this call never started."""

    def __init__(self, method: str, namespace: str, limit: int, in_flight: int, hung: int, reason: str = ""):
        self.method, self.namespace, self.limit = method, namespace, limit
        self.in_flight, self.hung = in_flight, hung
        if reason:
            text = f"{method} refused: {reason}"
        else:
            stuck = f", {hung} of them timed out and still running" if hung else ""
            text = (
                f"{method} refused: plugin namespace {namespace!r} is busy with {in_flight} call(s) in flight"
                f"{stuck}; the limit is {limit} ([Common.API] PluginConcurrency); retry later"
            )
        super().__init__(text)


class PluginCallTimeout(SectorhooksError):
    """A plugin's JSON-RPC method did not return in time; it started and may still be running."""

    def __init__(self, method: str, plugin: str, seconds: float, shutdown: bool = False):
        self.method, self.plugin, self.seconds, self.shutdown = method, plugin, seconds, shutdown
        if shutdown:
            text = f"{method} abandoned after {seconds:.1f}s: the server is shutting down"
        else:
            text = f"{method} timed out after {seconds:g}s ([Common.API] CallTimeout)"
        super().__init__(f"{text}; plugin {plugin!r} may still be running it, its outcome is unknown")


class FlushFailed(SyncError):
    """A syncer's ``Flush`` failed during an operator's delivery (``sync retry``, ``sync backfill``)."""


class SectorValueError(SectorStateError):
    """A value given for a sector is refused before anything is queued: of the wrong type, or
    outside what every sink can store (``sectorhooks_spec.sector``: signed 64-bit integers,
    non-negative ids/epochs/sizes/versions, valid UTF-8). ``sector`` and ``field`` name it.
    A JSON-RPC call gets -32602 (invalid params)."""

    rpc_code = -32602

    def __init__(self, message: str, sector: object = None, field: Optional[str] = None):
        self.sector, self.field = sector, field
        super().__init__(message)


class PageCursorError(SectorhooksError, ValueError):
    """A page of sectors asked with a cursor this host did not give for those filters, or a page
    size out of bounds (``state.scan``). ``field`` names the param. JSON-RPC: -32602."""

    rpc_code = -32602

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field!r} {message}")


class OpenFileLimitError(SectorhooksError):
    """The open-file limit (``RLIMIT_NOFILE``) leaves the gateway too few connections to serve."""

    def __init__(self, nofile: int, in_use: int, fits: int, least: int):
        self.nofile, self.in_use, self.fits, self.least = nofile, in_use, fits, least
        super().__init__(
            f"the open-file limit (RLIMIT_NOFILE) is {nofile} with {in_use} files already open: room for "
            f"{fits} connection(s), fewer than {least}; raise it (LimitNOFILE=65536 in the systemd unit, "
            "or `ulimit -n 65536` in the shell that starts `sectorhooks serve`)"
        )


# --- registry -------------------------------------------------------------------------------------


class NotRegisteredError(SectorhooksError):
    """The registry has no plugin with that id; names the known ones and the fix."""

    def __init__(self, pid: str, known: List[str]):
        self.pid = pid
        names = ", ".join(repr(k) for k in sorted(known)) or "none"
        super().__init__(
            f"plugin {pid!r} is not registered (registered: {names}); "
            "register it with `sectorhooks registry register` or by starting `sectorhooks serve`"
        )


class LeaseLost(SectorhooksError):
    """This process no longer holds a registry lease (``sectorhooks.registry.Lease``): it expired
    and someone else took it, so our fence is stale."""

    def __init__(self, key: str, fence: int, current: Optional[Dict[str, Any]]):
        self.key, self.fence, self.current = key, fence, current
        now = (
            f"fence {current.get('fence')} held by {current.get('holder') or '-'}" if current else "no record"
        )
        super().__init__(f"lease {key!r}: our fence {fence} is stale ({now}); the write was refused")


# --- sync -----------------------------------------------------------------------------------------


class SyncLeaseLost(SectorhooksError):
    """A syncer's cursor was advanced by another holder with a newer fencing token: this process
    lost the syncer's lease and stands by."""


class SyncerStopped(SectorhooksError):
    """``on_failure = "stop"``: the syncer gave up on an event (its dispatcher waits for a resume)."""


class WorkerStartError(Exception):
    """The worker process could not start or could not load the plugin."""


# --- state and change log -------------------------------------------------------------------------


class NeedsTransaction(Exception):
    """A group cannot be computed from the trusted cache alone (a read, a delete): use ``update``."""


class LogTrimmed(Exception):
    """A reader asked for entries that were already trimmed (its cursor is below the floor)."""


# --- RPC and bundles ------------------------------------------------------------------------------


class RpcError(Exception):
    """An error that becomes a JSON-RPC error object: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data

    def to_dict(self) -> Dict[str, Any]:
        """The ``error`` member of a response."""
        err: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


class ProbeTimeout(Exception):
    """A health check did not answer within its deadline."""


class BuildError(SectorhooksError):
    """A plugin could not be bundled; lists every problem found."""

    def __init__(self, src: Path, problems: List[str]):
        self.src, self.problems = src, problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cannot build plugin from {src}: {len(problems)} problem(s):\n{lines}")
