"""``sectorhooks serve`` (the JSON-RPC gateway) and ``sectorhooks token create|list|revoke``."""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

import click
from rich.markup import escape
from rich.table import Table

from sectorhooks_spec import KeyNotFound

from .. import logs
from ..errors import ConfigError, SectorhooksError
from ..rpc.auth import PERMISSIONS, TokenStore
from . import main
from ._common import (
    config_option,
    console,
    console_err,
    fail,
    get_config,
    json_option,
    print_json,
    setup_logging,
)

if TYPE_CHECKING:
    from ..rpc.methods import Gate
    from ..runtime import Runtime


@main.command("serve")
@config_option
@click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="Address to listen on (default: [Common.API] Listen, 127.0.0.1:1789); port 0 picks a free one.",
)
@click.option(
    "--route-gate/--no-route-gate",
    "route_gate",
    default=None,
    help="Serve a plugin namespace only while the registry's route says RUNNING (-32010 otherwise)"
    " (default: [Common.API] RouteGate).",
)
@click.option(
    "--tenants/--no-tenants",
    default=None,
    help="With the route gate: also require the token's tenant to have the plugin enabled and not"
    " expired (default: [Common.API] Tenants).",
)
@click.option(
    "--access-log/--no-access-log",
    "access_log",
    default=None,
    help="One log line per JSON-RPC call (logger sectorhooks.access), whatever the log level"
    " (default: [Common.Log] AccessLog).",
)
def serve_cmd(
    config_path: Optional[str],
    listen: Optional[str],
    route_gate: Optional[bool],
    tenants: Optional[bool],
    access_log: Optional[bool] = None,
) -> None:
    """Start the host, its sync dispatchers and the JSON-RPC gateway; stop on SIGINT/SIGTERM.

    Logs at INFO unless told otherwise (--log-level, [Common.Log] Level): one line per loaded plugin.
    """
    from ..rpc.server import serve

    if access_log is not None:
        setup_logging(access_log=access_log)
    config = get_config(config_path, default_level="INFO")
    if route_gate is None:
        route_gate = config.api.route_gate
    if tenants is None:
        tenants = config.api.tenants and route_gate
    if tenants and not route_gate:
        fail("--tenants needs the route gate (--route-gate, or [Common.API] RouteGate = true)", 2)
    gate_factory = None
    if route_gate:
        from ..registry import RouteGate

        def gate_factory(rt: Runtime) -> Gate:
            return RouteGate(rt.kv, tenants=tenants)

    verbose = logging.getLevelName(logs.current().level) <= logging.INFO
    try:
        code = serve(config, listen, gate_factory=gate_factory, log_level="info" if verbose else "warning")
    except ConfigError as exc:  # a check of the address in use ([Common.API] DevMode): the file it is in
        fail(str(exc.with_path(config.path) if exc.key.startswith("Common.") else exc))
        return
    except SectorhooksError as exc:
        fail(str(exc))
        return
    except OSError as exc:  # the address is taken or not ours
        fail(f"cannot listen on {listen or config.api.listen}: {exc.strerror or exc}")
        return
    sys.exit(code)


@main.group("token")
def token_group() -> None:
    """API tokens for the gateway (read, write, admin), kept hashed in the host's KV store."""


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


@token_group.command("create")
@config_option
@json_option
@click.option("--perm", type=click.Choice(PERMISSIONS), required=True, help="What the token may do.")
@click.option("--name", default="", help="A label shown by `token list`.")
@click.option("--tenant", default="", help="The tenant this token calls for (route gating with --tenants).")
def token_create(config_path: Optional[str], as_json: bool, perm: str, name: str, tenant: str) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from ..rpc.server import open_store

    try:
        with open_store(get_config(config_path)) as kv:
            token, info = TokenStore(kv).create(perm, name, tenant)
    except (SectorhooksError, ValueError) as exc:
        fail(str(exc))
        return
    if as_json:
        print_json(dict(info.as_dict(), token=token))
        return
    click.echo(token)
    console_err.print(
        f"token {escape(info.id)} ({info.perm}{', ' + escape(info.name) if info.name else ''}) created; "
        "it is shown only this once: send it as `Authorization: Bearer <token>`"
    )


@token_group.command("list")
@config_option
@json_option
def token_list(config_path: Optional[str], as_json: bool) -> None:
    """Every live token: id, name, permission, creation time (never the secret)."""
    from ..rpc.server import open_store

    try:
        with open_store(get_config(config_path)) as kv:
            infos = TokenStore(kv).list()
    except SectorhooksError as exc:
        fail(str(exc))
        return
    if as_json:
        print_json({"tokens": [i.as_dict() for i in infos]})
        return
    table = Table(title="API tokens")
    for col in ("id", "name", "perm", "tenant", "created"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.id, escape(i.name), i.perm, escape(i.tenant), _when(i.created_at))
    console.print(table)


@token_group.command("revoke")
@config_option
@json_option
@click.argument("token_id")
def token_revoke(config_path: Optional[str], token_id: str, as_json: bool = False) -> None:
    """Revoke the token TOKEN_ID (see `token list`); running gateways refuse it within a second."""
    from ..rpc.server import open_store

    try:
        with open_store(get_config(config_path)) as kv:
            info = TokenStore(kv).revoke(token_id)
    except KeyNotFound:
        fail(f"no token with id {token_id!r}; see `sectorhooks token list`")
        return
    except SectorhooksError as exc:
        fail(str(exc))
        return
    if as_json:
        print_json(dict(info.as_dict(), revoked=True))
        return
    console.print(
        f"revoked token {escape(info.id)} ({info.perm}{', ' + escape(info.name) if info.name else ''})"
    )
