"""The host's own namespaces: ``Sector.*``, ``Plugins.*``, ``Sync.*``, ``Auth.*``.

Params and results are the codec's JSON of the SPI models (``sectorhooks_spec.codec``). A sector
id is either ``{"miner": 1000, "number": 42}`` or its string form ``"s-t01000-42"``. Reads need
``read``, state changes ``write``, token management ``admin``.

Every value is held to the SPI models' bounds (``sectorhooks_spec.sector``: what every sink can
store) when it is decoded, and again by the state manager; a value out of them, like any param
that does not fit, is -32602 (invalid params) naming the param and field.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from sectorhooks_spec import (
    INT64_MAX,
    AllocatedSector,
    DecodeError,
    KeyNotFound,
    SectorID,
    SectorState,
    Workspace,
    from_jsonable,
    to_jsonable,
)
from sectorhooks_spec.sector import UPDATABLE_FIELDS

from ..errors import PageCursorError
from ..state.scan import PAGE_DEFAULT
from . import protocol as p
from .auth import TokenStore

if TYPE_CHECKING:
    from ..host import PluginHost
    from ..runtime import Runtime
    from ..state import SectorStateManager
    from ..sync import SyncService
    from .isolation import PluginCalls
    from .methods import MethodRegistry

_SECTOR_STR = re.compile(r"^s-t0(\d{1,19})-(\d{1,19})$", re.ASCII)


def sector_id(value: Any) -> SectorID:
    """Decode a sector id param (object or ``s-t0<miner>-<number>``), or raise -32602."""
    if isinstance(value, str):
        m = _SECTOR_STR.match(value)
        if m is None:
            raise p.RpcError(
                p.INVALID_PARAMS, f"Invalid params: sector id {value[:60]!r} is not like 's-t01000-42'"
            )
        try:
            return SectorID(int(m.group(1)), int(m.group(2)))
        except ValueError as exc:  # a number beyond the signed 64-bit range
            raise p.RpcError(p.INVALID_PARAMS, f"Invalid params: sector id {value!r}: {exc}") from None
    return from_jsonable(SectorID, value)


def _count(method: str, name: str, value: Any) -> None:
    """-32602 unless ``value`` (an int or None, as the signature already checked) is a count:
    0 .. the largest signed 64-bit integer."""
    if value is not None and not 0 <= value <= INT64_MAX:
        raise p.RpcError(
            p.INVALID_PARAMS,
            f"Invalid params for {method}: {name!r} must be an integer from 0 to {INT64_MAX}, got {value}",
        )


def _not_found(sid: SectorID) -> p.RpcError:
    return p.RpcError(p.NOT_FOUND, f"sector {sid} not found")


class SectorAPI:
    """``Sector.*``: read and change sector state through the SectorStateManager."""

    __sectorhooks_perms__ = {
        "Get": "read",
        "List": "read",
        "StateCounts": "read",
        "Workspace": "read",
        "Import": "write",
        "Init": "write",
        "Update": "write",
        "Finalize": "write",
        "Restore": "write",
    }

    def __init__(self, state: SectorStateManager):
        self._state = state

    def _call(self, sid: SectorID, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(sid, *args)
        except KeyNotFound:
            raise _not_found(sid) from None

    def Get(self, id: Any) -> Any:
        """The state of one sector."""
        return self._call(sector_id(id), self._state.get)

    def Workspace(self, id: Any) -> str:
        """``online`` or ``offline``."""
        return self._call(sector_id(id), self._state.workspace_of).value  # type: ignore[no-any-return]

    def List(
        self,
        workspace: Optional[str] = None,
        miner: Optional[int] = None,
        after: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> Dict[str, Any]:
        """A page of sector states (optionally of one workspace and/or miner) in sector id order:
        ``{"sectors": [...], "next": cursor or null}``. ``limit`` is 1 to ``PAGE_MAX`` (1,000;
        default ``PAGE_DEFAULT``, 100); pass ``next`` as ``after`` (with the same filters) for
        the following page, until ``next`` is null."""
        _count("Sector.List", "miner", miner)
        _count("Sector.List", "limit", limit)
        ws = from_jsonable(Workspace, workspace) if workspace is not None else None
        try:
            states, cursor = self._state.page(ws, miner, after, PAGE_DEFAULT if limit is None else limit)
        except PageCursorError as exc:
            raise p.RpcError(p.INVALID_PARAMS, f"Invalid params for Sector.List: {exc}") from None
        return {"sectors": states, "next": cursor}

    def StateCounts(self) -> Dict[str, int]:
        """Number of sectors per latest state name: one read of the counts the state manager keeps
        (``sectorhooks sectors recount`` rebuilds them from a full scan)."""
        return dict(self._state.state_counts())

    def Import(self, state: Dict[str, Any], override: bool = False) -> Any:
        """Import a full sector state (``override`` replaces an existing one)."""
        return self._state.import_sector(from_jsonable(SectorState, state), override=override)

    def Init(self, sectors: list[Any]) -> Any:
        """Allocate new sectors: ``[{"id": {...}, "proof_type": 8}, ...]`` -> their initial states."""
        if not sectors:
            raise p.RpcError(
                p.INVALID_PARAMS, "Invalid params for Sector.Init: 'sectors' must hold at least one sector"
            )
        allocated = []
        for i, s in enumerate(sectors):
            try:
                allocated.append(from_jsonable(AllocatedSector, s))
            except DecodeError as exc:
                raise p.RpcError(
                    p.INVALID_PARAMS, f"Invalid params for Sector.Init: sectors[{i}]: {exc}"
                ) from None
        return self._state.init_sectors(allocated)

    def Update(self, id: Any, fields: Dict[str, Any]) -> Any:
        """Change ``fields`` (name -> JSON value, as in SectorState) of a sector; returns the new state."""
        sid = sector_id(id)
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise p.RpcError(
                p.INVALID_PARAMS,
                f"Invalid params: {unknown} cannot be updated; fields: {', '.join(sorted(UPDATABLE_FIELDS))}",
            )
        if not fields:
            raise p.RpcError(p.INVALID_PARAMS, "Invalid params: no fields to update")
        # decode the values with SectorState's own types, as part of a partial state
        partial = from_jsonable(SectorState, {"id": to_jsonable(sid), **fields})
        typed = {name: getattr(partial, name) for name in fields}
        return self._call(sid, lambda s: self._state.update(s, **typed))

    def Finalize(self, id: Any) -> Any:
        """Finalize a sector (moves it to the offline workspace)."""
        return self._call(sector_id(id), self._state.finalize)

    def Restore(self, id: Any) -> Any:
        """Move a finalized sector back online."""
        return self._call(sector_id(id), self._state.restore)


class PluginsAPI:
    """``Plugins.*``: what is loaded, which methods are served, how plugin calls fare."""

    __sectorhooks_perms__ = {"List": "read", "Methods": "read", "Problems": "read", "Calls": "read"}

    def __init__(self, host: PluginHost, registry: MethodRegistry, calls: Optional[PluginCalls] = None):
        self._host, self._registry, self._calls = host, registry, calls

    def List(self) -> list[Dict[str, Any]]:
        """Every plugin the host knows, with status and errors (as ``plugins list --json``)."""
        namespaces: Dict[str, list[str]] = {}
        for ns, owner in self._registry.owners.items():
            namespaces.setdefault(owner, []).append(ns)
        out = []
        for record in self._host.plugins():
            d = record.as_dict()
            d["namespaces"] = sorted(namespaces.get(record.name, []))
            d["rpc_error"] = self._registry.refused.get(record.name, "")
            out.append(d)
        return out

    def Methods(self) -> list[Dict[str, Any]]:
        """Every served method with the permission it needs and its owner."""
        return self._registry.describe()

    def Problems(self) -> list[str]:
        """Namespaces refused at start (conflicts, bad handlers)."""
        return list(self._registry.problems)

    def Calls(self) -> list[Dict[str, Any]]:
        """Per plugin namespace: limit, timeout, calls in flight, hung (timed out, still running), busy."""
        return self._calls.stats() if self._calls is not None else []


class SyncAPI:
    """``Sync.*``: the sync pipeline's state."""

    __sectorhooks_perms__ = {"Status": "read"}

    def __init__(self, sync: Optional[SyncService]):
        self._sync = sync

    def Status(self) -> list[Dict[str, Any]]:
        """Per syncer: cursor, head, lag, dead letters, last error, state."""
        if self._sync is None:
            return []
        return list(self._sync.status())


class AuthAPI:
    """``Auth.*``: token management over RPC (admin only)."""

    __sectorhooks_perms__ = {"List": "admin", "Revoke": "admin"}

    def __init__(self, tokens: TokenStore):
        self._tokens = tokens

    def List(self) -> list[Dict[str, Any]]:
        """Every live token (never secrets)."""
        return [t.as_dict() for t in self._tokens.list()]

    def Revoke(self, id: str) -> Dict[str, Any]:
        """Revoke the token ``id``; returns what it was."""
        return self._tokens.revoke(id).as_dict()


def register_host_namespaces(
    registry: MethodRegistry,
    runtime: Runtime,
    tokens: Optional[TokenStore],
    calls: Optional[PluginCalls] = None,
) -> None:
    """Add the host's namespaces before any plugin's, so a plugin cannot take them."""
    registry.add("Sector", SectorAPI(runtime.state))
    registry.add("Plugins", PluginsAPI(runtime.host, registry, calls))
    registry.add("Sync", SyncAPI(getattr(runtime, "sync", None)))
    if isinstance(tokens, TokenStore):
        registry.add("Auth", AuthAPI(tokens))
