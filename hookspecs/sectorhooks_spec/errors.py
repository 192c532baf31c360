"""Errors a plugin may raise or receive.

The host's own errors (``sectorhooks.errors``) derive from :class:`SectorhooksError` too, so
``except SectorhooksError`` catches everything this project raises on purpose.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import attrs


class SectorhooksError(Exception):
    """Base class of every error sectorhooks raises on purpose."""


# --- manifests -------------------------------------------------------------------------


@attrs.frozen
class Problem:
    """One thing wrong with a manifest: where (file, field), what, and what to do."""

    path: str
    field: str
    message: str
    hint: str = ""
    line: Optional[int] = None
    column: Optional[int] = None

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: [{self.field}] {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ManifestError(SectorhooksError):
    """A manifest.toml (or the plugin it describes) is invalid; carries every problem found."""

    def __init__(self, path: str, problems: Sequence[Problem], plugin: Optional[str] = None):
        self.path = path
        self.problems = tuple(problems)
        self.plugin = plugin
        who = f"plugin {plugin!r} " if plugin else ""
        lines = [f"{who}manifest {path} has {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class DecodeError(SectorhooksError, ValueError):
    """A JSON document does not match the model it is decoded into."""


# --- key-value stores ------------------------------------------------------------------


class KVError(SectorhooksError):
    """Base class of KVStore errors."""


class KeyNotFound(KVError, KeyError):
    """``get`` of a key that does not exist."""

    def __init__(self, collection: str, key: bytes):
        self.collection = collection
        self.key = key
        super().__init__(f"key {key!r} not found in collection {collection!r}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class TransactionConflict(KVError):
    """An optimistic ``update`` lost a race; the caller retries the whole function."""


class StoreUnavailable(KVError):
    """The backing server cannot be reached or dropped the connection; nothing was committed."""


class CommitOutcomeUnknown(StoreUnavailable):
    """The connection was lost while the commit was in flight: it may or may not have applied.

    A subclass of ``StoreUnavailable`` so that code which only cares about "the store is gone"
    still catches it; code that retries must not retry this one unless ``fn`` is idempotent.
    """


# --- plugin settings ---------------------------------------------------------------------


class MetaError(ValueError):
    """A bad key or value in a plugin's ``Meta`` (or config) table, raised by ``MetaReader``: the
    message names the plugin (or instance, or store), the key and the fix. A ``ValueError``, as the
    plugins raised before, so the host wraps it with the plugin's name like any plugin error."""

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key  # the key it is about ("" for the table as a whole)


# --- file stores -----------------------------------------------------------------------


class FileStoreError(SectorhooksError):
    """A file store refused an operation (read-only, miner not allowed, path outside root)."""


# --- sync sinks ------------------------------------------------------------------------


@attrs.frozen
class Rejected:
    """One change a sink's database refused (e.g. a constraint), with the reason."""

    sector: str  # str(SectorID), e.g. "s-t01000-42"
    version: int
    reason: str


class RejectedChanges(SectorhooksError):
    """Raised by a syncer's ``Flush`` after writing everything it could: lists the changes its
    database rejected. The host dead-letters exactly those and counts the rest as delivered."""

    def __init__(self, rejected: Sequence[Rejected]):
        self.rejected = tuple(rejected)
        shown = "; ".join(f"{r.sector} v{r.version}: {r.reason}" for r in self.rejected[:5])
        more = f" (+{len(self.rejected) - 5} more)" if len(self.rejected) > 5 else ""
        super().__init__(f"{len(self.rejected)} change(s) rejected by the sink: {shown}{more}")


# --- JSON-RPC methods ------------------------------------------------------------------


class PluginRpcError(SectorhooksError):
    """Raised by a RegisterJsonRpc method to answer with a JSON-RPC error of its own choosing.

    The caller gets ``{"code": code, "message": message, "data": data}`` (``data`` left out when
    ``None``; it must be JSON data). Pick ``code`` outside -32768..-32000, the range JSON-RPC and
    the host use (the host's codes are listed in the README), except -32602 (invalid params),
    which a method may raise for a parameter its annotations cannot check. Example::

        from sectorhooks_spec import PluginRpcError

        class Counter:
            def Get(self, name: str) -> int:
                if name not in COUNTERS:
                    raise PluginRpcError(-40404, f"no counter named {name!r}", data={"name": name})
                return COUNTERS[name]

    The contract underneath is two plain attributes, still accepted on any exception (so a
    plugin needs no import): an integer ``rpc_code`` (not a bool) and an optional ``rpc_data``;
    the message is ``str(exc)``. Any other exception a method raises is answered -32603 (a
    :class:`SectorhooksError` -32000, :class:`KeyNotFound` -32004), see the README.
    """

    rpc_code: int
    rpc_data: Any

    def __init__(self, code: int, message: str, data: Any = None):
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"PluginRpcError code must be an int, got {type(code).__name__} {code!r}")
        self.rpc_code = code
        self.rpc_data = data
        super().__init__(message)
