"""``sectorhooks registry ...`` and ``tenants list``.

Registry commands open the configured KVStore (``[Common.DB]``) the way ``serve`` does, so they
see and change what every replica sharing that store sees. Secrets are printed once, by
``registry register`` (for new plugins) and ``registry rotate-secret``, on stdout and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import click
from rich.markup import escape
from rich.table import Table

from .. import liveness
from ..config import HostConfig
from ..errors import SectorhooksError
from ..host import PluginHost
from ..registry import Registry, Status, open_registry, register_host
from ..registry.records import PluginEntry, Route
from . import main
from ._common import config_option, console, console_err, fail, get_config, json_option, print_json

_DURATION_RE = re.compile(r"^\+?(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_expire(text: Optional[str], now: Optional[float] = None) -> int:
    """``--expire``: ``never``/``0``, a duration from now (``+30s``, ``2h``, ``7d``), or an ISO date/time
    (UTC unless it has an offset); returns Unix seconds (0 = never)."""
    if text is None or text.strip().lower() in ("", "0", "never"):
        return 0
    now = time.time() if now is None else now
    raw = text.strip()
    m = _DURATION_RE.match(raw)
    if m:
        return int(now + float(m.group(1)) * _UNITS[m.group(2)])
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use a date (2025-12-31), a time (2025-12-31T18:00:00Z), "
            "a duration (+2h, 30d) or 'never'",
            param_hint="--expire",
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp())


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else "never"


@contextmanager
def _registry(config_path: Optional[str], start_all: bool = False) -> Iterator[Tuple[PluginHost, Registry]]:
    """``open_registry`` for a command: any registry or KV error exits 1 with its message."""
    try:
        with open_registry(get_config(config_path), start_all) as pair:
            yield pair
    except SectorhooksError as exc:
        fail(str(exc))


def _route_json(route: Optional[Route]) -> Dict[str, Any]:
    return route.to_json() if route else {"status": "-", "register_addons": {}}


def _entry_json(entry: PluginEntry, route: Optional[Route], seen: liveness.Seen) -> Dict[str, Any]:
    return dict(entry.public_json(), route=_route_json(route), state=seen.state, **seen.as_json())


def _who_serves(reg: Registry, ids: List[str]) -> Dict[str, liveness.Seen]:
    """Per plugin id: the live host serving it now (heartbeats), and the last one seen."""
    hosts = liveness.read_hosts(reg.store)
    now = time.time()
    return {pid: liveness.who_runs(hosts, "plugins", pid, now) for pid in ids}


def _host_cell(seen: liveness.Seen) -> str:
    now = time.time()
    if seen.live is not None:
        return f"[green]{escape(seen.live.id)}[/] (beat {liveness.ago(now - seen.live.beat)})"
    if seen.last is not None:
        return f"[red]{seen.state}[/]: last {escape(seen.last.describe(now))}"
    return f"[red]{seen.state}[/]"


@main.group("registry")
def registry_group() -> None:
    """The plugin registry shared by every replica: plugins, routes, secrets."""


@registry_group.command("list")
@config_option
@json_option
def registry_list(config_path: Optional[str], as_json: bool) -> None:
    """Every registered plugin with its route status, the host serving it, and tenant count.

    A route says what the last scrape saw; ``host`` says whether a live host serves the plugin
    now (its heartbeat): with none, the status reads ``stopped`` (or ``no host``: never served)
    and ``host`` names the last host and when it was last seen.
    """
    with _registry(config_path) as (_, reg):
        rows = reg.entries()
        seen = _who_serves(reg, [e.id for e, _ in rows])
    if as_json:
        print_json({"plugins": [_entry_json(e, r, seen[e.id]) for e, r in rows]})
        return
    table = Table(title="registered plugins")
    for col in ("id", "kind", "version", "status", "host", "tenants", "registered"):
        table.add_column(col)
    for e, r in rows:
        status = r.status.value if r else "-"
        color = (
            "green" if status == "RUNNING" else "yellow" if status in ("WAIT_RUNNING", "STOPPED") else "red"
        )
        shown = f"[{color}]{status}[/]"
        if seen[e.id].live is None:
            shown = f"[red]{seen[e.id].state}[/] (route {status})"
        table.add_row(
            escape(e.id),
            e.identity.kind,
            escape(e.identity.version),
            shown,
            _host_cell(seen[e.id]),
            str(len(e.active_tenant)),
            _when(e.register_time),
        )
    console.print(table)


@registry_group.command("show")
@click.argument("plugin_id", metavar="ID")
@config_option
@json_option
def registry_show(plugin_id: str, config_path: Optional[str], as_json: bool) -> None:
    """One plugin's record and route (the secret is never shown)."""
    with _registry(config_path) as (_, reg):
        entry = reg.get(plugin_id)
        route = reg.route(plugin_id)
        seen = _who_serves(reg, [plugin_id])[plugin_id]
    data = _entry_json(entry, route, seen)
    if as_json:
        print_json(data)
        return
    table = Table(show_header=False, title=f"registry: {escape(plugin_id)}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        if key in ("register_time", "last_seen"):
            value = _when(value) if value else "-"
        elif key == "active_tenant":
            value = "\n".join(
                f"{t['tenant_id']} ({t['tenant_name']}), expires {_when(t['expire_time'])}" for t in value
            )
        elif key == "route":
            addons = "\n".join(f"{k} -> {v}" for k, v in sorted(value["register_addons"].items()))
            value = (
                f"{value['status']}{': ' + value['reason'] if value.get('reason') else ''}\n{addons}".strip()
            )
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        table.add_row(key, escape(str(value)))
    console.print(table)


@registry_group.command("routes")
@config_option
@json_option
def registry_routes(config_path: Optional[str], as_json: bool) -> None:
    """The route table (``public``): status and addons per plugin, as the gateway sees it."""
    with _registry(config_path) as (_, reg):
        routes = reg.routes()
    if as_json:
        print_json({pid: r.to_json() for pid, r in routes.items()})
        return
    table = Table(title="routes")
    for col in ("id", "status", "addons", "reason"):
        table.add_column(col)
    for pid, r in routes.items():
        addons = "\n".join(f"{k} -> {v}" for k, v in sorted(r.register_addons.items()))
        table.add_row(escape(pid), r.status.value, escape(addons), escape(r.reason))
    console.print(table)


@registry_group.command("register")
@config_option
@json_option
def registry_register(config_path: Optional[str], as_json: bool = False) -> None:
    """Register (or refresh) every plugin this host loads; prints each new secret once."""
    with _registry(config_path, start_all=True) as (host, reg):
        results = register_host(reg, host)
    if as_json:  # secrets on stdout only, as in the text output
        rows = [{"id": r.id, "created": r.created, "status": r.status.value} for r in results]
        print_json(
            {"plugins": [dict(row, secret=r.secret) if r.secret else row for row, r in zip(rows, results)]}
        )
        return
    for r in results:
        console_err.print(
            f"{'registered' if r.created else 'refreshed'} {escape(r.id)}: route {r.status.value}"
        )
        if r.secret is not None:
            console_err.print(f"secret of {escape(r.id)} (shown once; store it now):")
            click.echo(f"{r.id} {r.secret}")


@registry_group.command("rotate-secret")
@click.argument("plugin_id", metavar="ID")
@config_option
@json_option
def registry_rotate_secret(plugin_id: str, config_path: Optional[str], as_json: bool = False) -> None:
    """Give a plugin a new secret and print it once (the old one stops working)."""
    with _registry(config_path) as (_, reg):
        fresh = reg.rotate_secret(plugin_id)
    if as_json:
        print_json({"id": plugin_id, "secret": fresh})
        return
    console_err.print(f"new secret of {escape(plugin_id)} (shown once; store it now):")
    click.echo(fresh)


@main.group("tenants")
def tenants_group() -> None:
    """Tenants and the plugins enabled for them."""


@tenants_group.command("list")
@config_option
@json_option
def tenants_list(config_path: Optional[str], as_json: bool) -> None:
    """Every tenant with the plugins it has enabled and their expiry."""
    with _registry(config_path) as (_, reg):
        tenants = reg.tenants()
    now = time.time()
    if as_json:
        print_json(
            {
                tid: [dict(t.to_json(), plugin=pid, expired=t.expired(now)) for pid, t in items]
                for tid, items in tenants.items()
            }
        )
        return
    table = Table(title="tenants")
    for col in ("tenant", "name", "plugin", "expires"):
        table.add_column(col)
    for tid, items in tenants.items():
        for pid, t in items:
            exp = _when(t.expire_time) + (" [red](expired)[/]" if t.expired(now) else "")
            table.add_row(escape(tid), escape(t.tenant_name), escape(pid), exp)
    console.print(table)


# --- used by `plugins enable/disable` (cli/plugins.py) -----------------------------------


def tenant_switch(
    name: str,
    tenant: str,
    enable: bool,
    config_path: Optional[str],
    tenant_name: str = "",
    expire: str = "",
    as_json: bool = False,
) -> None:
    """``plugins enable|disable NAME --tenant T``: change the plugin's ``active_tenant``."""
    expire_time = parse_expire(expire) if enable else 0
    removed = False
    with _registry(config_path) as (_, reg):
        if enable:
            reg.enable_tenant(name, tenant, tenant_name, expire_time)
        else:
            removed = reg.disable_tenant(name, tenant)
    if as_json:
        state = "enabled" if enable else "disabled" if removed else "not enabled"
        print_json({"plugin": name, "tenant": tenant, "state": state, "expire_time": expire_time})
        return
    if enable:
        console.print(
            f"plugin {escape(name)} enabled for tenant {escape(tenant)} (expires {_when(expire_time)})"
        )
    else:
        what = "disabled" if removed else "was not enabled"
        console.print(f"plugin {escape(name)} {what} for tenant {escape(tenant)}")


def route_switch(config: HostConfig, name: str, disabled: bool, quiet: bool = False) -> Optional[str]:
    """``plugins enable|disable NAME``: also set its route STOPPED / WAIT_RUNNING, if registered.

    Returns the route's new status (``None``: not registered, or not changed); ``quiet``: print
    only the warning (``--json``)."""
    status = Status.STOPPED if disabled else Status.WAIT_RUNNING
    try:
        with open_registry(config) as (_, reg):
            if name not in reg.ids():
                return None
            reg.set_status(name, status, "disabled by an operator" if disabled else "")
    except Exception as exc:  # the local switch stands; say why the shared route did not change
        console_err.print(
            f"[yellow]warning:[/] route of {escape(name)} not set to {status.value}: {escape(str(exc))}"
        )
        return None
    if not quiet:
        console.print(f"route of {escape(name)} is now {status.value}")
    return status.value
