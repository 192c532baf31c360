"""``sectorhooks plugins list|show|enable|disable`` and ``sectorhooks plugin check|new``."""

from __future__ import annotations

import contextlib
import logging
import zipfile
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import click
from rich.markup import escape
from rich.table import Table

from sectorhooks_spec import Kind, ManifestError

from .. import loader, scaffold
from ..config import HostConfig, PluginsConfig
from ..host import PluginHost, PluginStatus, set_disabled
from . import main
from ._common import config_option, console, fail, get_config, json_option, print_json

_STATUS_STYLE = {
    PluginStatus.ACTIVE: "green",
    PluginStatus.LOADED: "green",
    PluginStatus.DISABLED: "dim",
    PluginStatus.FAILED: "red",
    PluginStatus.INVALID: "red",
    PluginStatus.STOPPED: "yellow",
}


def _load(config_path: Optional[str], start: bool = False) -> PluginHost:
    host = PluginHost(get_config(config_path)).load()
    if start:
        host.start()
    return host


@main.group("plugins")
def plugins_group() -> None:
    """Inspect and switch the host's plugins."""


@plugins_group.command("list")
@config_option
@json_option
def plugins_list(config_path: Optional[str], as_json: bool) -> None:
    """Every plugin found: kind, name, version, status, source."""
    host = _load(config_path)
    records = host.plugins()
    if as_json:
        print_json(
            {
                "plugins": [r.as_dict() for r in records],
                "errors": [str(e) for e in host.orphans],
            }
        )
        return
    table = Table(title="plugins")
    for col in ("kind", "name", "version", "status", "source"):
        table.add_column(col)
    for r in records:
        style = _STATUS_STYLE.get(r.status, "")
        table.add_row(
            r.kind.value if r.kind else "?",
            escape(r.name),
            escape(r.manifest.version if r.manifest else ""),
            f"[{style}]{r.status.value}[/]" if style else r.status.value,
            escape(r.source),
        )
    console.print(table)
    for err in host.orphans:
        console.print(f"[red]{escape(str(err))}[/]")
    for r in records:
        if r.error:
            console.print(f"[red]{escape(r.name)}: {escape(r.error)}[/]")


@plugins_group.command("show")
@click.argument("name")
@config_option
@json_option
def plugins_show(name: str, config_path: Optional[str], as_json: bool) -> None:
    """Everything known about one plugin."""
    host = _load(config_path)
    record = host.records.get(name)
    if record is None:
        fail(f"no plugin named {name!r}; found: {', '.join(sorted(host.records)) or 'none'}")
        return
    data = record.as_dict()
    if as_json:
        print_json(data)
        return
    table = Table(show_header=False, title=f"plugin {record.qualified_name}")
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        if isinstance(value, list):
            value = "\n".join(str(v) for v in value)
        table.add_row(key, escape(str(value)))
    console.print(table)


def _switch(name: str, config_path: Optional[str], disabled: bool) -> None:
    config = get_config(config_path)
    host = PluginHost(config).load()
    if name not in host.records:
        fail(f"no plugin named {name!r}; found: {', '.join(sorted(host.records)) or 'none'}")
    now = set_disabled(config, name, disabled)
    state = "disabled" if disabled else "enabled"
    console.print(f"plugin {escape(name)!s} {state} (disabled now: {', '.join(now) or 'none'})")
    from .registry import route_switch

    route_switch(config, name, disabled)  # shared route: STOPPED / WAIT_RUNNING, if registered


@plugins_group.command("disable")
@click.argument("name")
@click.option("--tenant", default=None, help="Disable it for this tenant only (in the registry).")
@config_option
def plugins_disable(name: str, config_path: Optional[str], tenant: Optional[str] = None) -> None:
    """Stop loading a plugin (kept in the data directory), or with --tenant stop serving a tenant."""
    if tenant is not None:
        from .registry import tenant_switch

        return tenant_switch(name, tenant, False, config_path)
    _switch(name, config_path, True)


@plugins_group.command("enable")
@click.argument("name")
@click.option("--tenant", default=None, help="Enable it for this tenant (in the registry).")
@click.option("--name", "tenant_name", default="", help="The tenant's display name (with --tenant).")
@click.option("--expire", default="", help="With --tenant: 2025-12-31, 2025-12-31T18:00:00Z, +2h or never.")
@config_option
def plugins_enable(
    name: str,
    config_path: Optional[str],
    tenant: Optional[str] = None,
    tenant_name: str = "",
    expire: str = "",
) -> None:
    """Load a disabled plugin again, or with --tenant enable it for a tenant."""
    if tenant is not None:
        from .registry import tenant_switch

        return tenant_switch(name, tenant, True, config_path, tenant_name, expire)
    if tenant_name or expire:
        fail("--name and --expire go with --tenant", code=2)
    _switch(name, config_path, False)


@main.group("plugin")
def plugin_group() -> None:
    """Tools for plugin authors."""


def check_path(path: Path) -> List[str]:
    """Every problem of the plugin at ``path`` (directory or zip bundle), as printable lines."""
    items: List[Tuple[Optional[loader.Candidate], Optional[ManifestError]]]
    if path.is_file() and path.suffix == ".zip":
        try:
            items = [(loader.zip_candidate(path), None)]
        except ManifestError as exc:
            items = [(None, exc)]
        except (OSError, zipfile.BadZipFile) as exc:
            return [f"{path}: not a readable zip bundle: {exc}"]
    elif (path / "manifest.toml").is_file():
        items = list(loader.scan_dir(path))
    elif path.is_dir():
        return [f"{path}: no manifest.toml here (a plugin directory holds manifest.toml and its module)"]
    else:
        return [f"{path}: no such plugin directory or .zip bundle"]
    problems: List[str] = []
    for candidate, error in items:
        if error is not None:
            problems += [str(p) for p in error.problems]
            continue
        assert candidate is not None
        host = PluginHost(_isolated_config())
        with _quiet_host_logs():  # every problem is printed below; the host's log would repeat it
            record = host.add(candidate)
        problems += [str(p) for p in record.problems]
        for orphan in host.orphans:
            problems += [str(p) for p in orphan.problems]
        if record.status is PluginStatus.FAILED:
            problems.append(record.error)
    # an unreadable manifest is both the record's problem and an orphan error: print it once
    return list(dict.fromkeys(problems))


@contextlib.contextmanager
def _quiet_host_logs() -> Iterator[None]:
    logger = logging.getLogger("sectorhooks.host")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _isolated_config() -> HostConfig:
    return HostConfig(plugins=PluginsConfig(bundled=False, entry_points=False))


@plugin_group.command("check")
@click.argument("path", type=click.Path(path_type=Path))
def plugin_check(path: Path) -> None:
    """Validate one plugin directory or .zip bundle; prints every problem, exit 1 if any."""
    problems = check_path(path)
    if problems:
        console.print(f"[red]{len(problems)} problem(s) in {escape(str(path))}:[/]")
        for p in problems:
            console.print(f"  - {escape(p)}", soft_wrap=True)
        raise SystemExit(1)
    console.print(f"[green]ok[/] {escape(str(path))}")


@plugin_group.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice([k.value for k in Kind]), required=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
def plugin_new(name: str, kind: str, directory: Path) -> None:
    """Write a plugin scaffold that passes `plugin check` and loads."""
    try:
        target = scaffold.new_plugin(name, Kind(kind), directory)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc), code=2 if isinstance(exc, ValueError) else 1)
        return
    except ManifestError as exc:
        fail(str(exc))
        return
    shown = escape(str(target))
    console.print(f"[green]created[/] {shown}; check it with: sectorhooks plugin check {shown}")
