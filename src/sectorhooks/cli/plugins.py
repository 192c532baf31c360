"""``sectorhooks plugins list|show|enable|disable`` and ``sectorhooks plugin check|new``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import click
from rich.markup import escape
from rich.table import Table

from sectorhooks_spec.kinds import Kind
from sectorhooks_spec.manifest import ManifestError

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


def _orphan_dict(error: ManifestError) -> Dict[str, Any]:
    """A plugin known only by its manifest's problems (unreadable, or a duplicate name)."""
    return {
        "name": error.plugin or "?",
        "kind": None,
        "version": "",
        "description": "",
        "build_time": "",
        "status": PluginStatus.INVALID.value,
        "source": "",
        "manifest": error.path,
        "ext_points": [],
        "requires": [],
        "error": str(error),
        "problems": [str(p) for p in error.problems],
    }


def _problem_lines(host: PluginHost) -> List[str]:
    """Every problem of every plugin, once each: the plugin's error (or its problems), then the
    manifests that never became a plugin (unreadable, duplicate names)."""
    lines: List[str] = []
    for r in host.plugins():
        if r.status in (PluginStatus.INVALID, PluginStatus.FAILED):
            lines += [str(p) for p in r.problems] or [r.error]  # an error names its plugin
    for orphan in host.orphans:
        lines += [str(p) for p in orphan.problems] or [str(orphan)]
    return list(dict.fromkeys(lines))


@contextlib.contextmanager
def _errors_in_the_report() -> Iterator[None]:
    """Keep the host's ERROR lines (each a problem the command prints itself) out of the log."""

    def drop(record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR

    logger = logging.getLogger("sectorhooks.host")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@plugins_group.command("list")
@config_option
@json_option
def plugins_list(config_path: Optional[str], as_json: bool) -> None:
    """Every plugin found: kind, name, version, status, source; exit 1 if any has a problem."""
    config = get_config(config_path)
    with _errors_in_the_report():
        host = PluginHost(config).load()
    records = host.plugins()
    problems = _problem_lines(host)
    if as_json:
        print_json(
            {
                "ok": not problems,
                "plugins": [r.as_dict() for r in records] + [_orphan_dict(e) for e in host.orphans],
                "errors": [str(e) for e in host.orphans],
                "problems": problems,
            }
        )
        if problems:
            raise SystemExit(1)
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
    for err in host.orphans:
        table.add_row("?", escape(err.plugin or "?"), "", "[red]invalid[/]", escape(err.path))
    console.print(table)
    if problems:
        console.print(f"[red]{len(problems)} problem(s):[/]")
        for line in problems:
            console.print(f"  - {escape(line)}", soft_wrap=True)
        raise SystemExit(1)


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


def _switch(name: str, config_path: Optional[str], disabled: bool, as_json: bool = False) -> None:
    config = get_config(config_path)
    host = PluginHost(config).load()
    if name not in host.records:
        fail(f"no plugin named {name!r}; found: {', '.join(sorted(host.records)) or 'none'}")
    now = set_disabled(config, name, disabled)
    state = "disabled" if disabled else "enabled"
    if not as_json:
        console.print(f"plugin {escape(name)!s} {state} (disabled now: {', '.join(now) or 'none'})")
    from .registry import route_switch

    # shared route: STOPPED / WAIT_RUNNING, if registered
    route = route_switch(config, name, disabled, quiet=as_json)
    if as_json:
        print_json({"plugin": name, "state": state, "disabled": now, "route": route})


@plugins_group.command("disable")
@click.argument("name")
@click.option("--tenant", default=None, help="Disable it for this tenant only (in the registry).")
@config_option
@json_option
def plugins_disable(
    name: str, config_path: Optional[str], tenant: Optional[str] = None, as_json: bool = False
) -> None:
    """Stop loading a plugin (kept in the data directory), or with --tenant stop serving a tenant."""
    if tenant is not None:
        from .registry import tenant_switch

        return tenant_switch(name, tenant, False, config_path, as_json=as_json)
    _switch(name, config_path, True, as_json)


@plugins_group.command("enable")
@click.argument("name")
@click.option("--tenant", default=None, help="Enable it for this tenant (in the registry).")
@click.option("--name", "tenant_name", default="", help="The tenant's display name (with --tenant).")
@click.option("--expire", default="", help="With --tenant: 2025-12-31, 2025-12-31T18:00:00Z, +2h or never.")
@config_option
@json_option
def plugins_enable(
    name: str,
    config_path: Optional[str],
    tenant: Optional[str] = None,
    tenant_name: str = "",
    expire: str = "",
    as_json: bool = False,
) -> None:
    """Load a disabled plugin again, or with --tenant enable it for a tenant."""
    if tenant is not None:
        from .registry import tenant_switch

        return tenant_switch(name, tenant, True, config_path, tenant_name, expire, as_json=as_json)
    if tenant_name or expire:
        fail("--name and --expire go with --tenant", code=2)
    _switch(name, config_path, False, as_json)


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


def name_clashes(path: Path, config: Optional[HostConfig] = None) -> List[str]:
    """Warnings for the plugin at ``path`` whose name (normalised, as the loader compares) is
    also the name of a bundled plugin, an installed one or one in a ``[Common.Plugins] Dir`` of
    ``config`` (default: the built-in config): the host would refuse one of the two at load.
    Only manifests are read; nothing is imported."""
    try:
        candidate = (
            loader.zip_candidate(path) if path.suffix == ".zip" else next(iter(loader.scan_dir(path)))[0]
        )
    except (ManifestError, OSError, StopIteration):
        return []
    manifest = loader.read_manifest(candidate)[0] if candidate is not None else None
    if candidate is None or manifest is None:
        return []
    mine = loader.normalize_name(manifest.name)
    warnings = []
    for other, origin in _known_plugins(config or HostConfig()):
        if other.manifest_path == candidate.manifest_path:
            continue
        theirs = loader.read_manifest(other)[0]
        if theirs is not None and loader.normalize_name(theirs.name) == mine:
            warnings.append(
                f"plugin name {manifest.name!r} is also the name of the {origin} plugin {theirs.name!r} "
                f"({other.manifest_path}): the host loads one of the two and refuses the other; rename yours"
            )
    return warnings


def _known_plugins(config: HostConfig) -> Iterator[Tuple[loader.Candidate, str]]:
    sources: List[Tuple[Iterator[Any], str]] = []
    if config.plugins.bundled:
        sources.append((loader.scan_dir(loader.bundled_plugins_dir(), "bundled"), "bundled"))
    sources += [(loader.scan_dir(Path(d)), "configured") for d in config.plugins.dirs]
    if config.plugins.entry_points:
        sources.append((loader.scan_entry_points(), "installed"))
    for found, origin in sources:
        for candidate, _ in found:
            if candidate is not None:
                yield candidate, origin


def bundled_name(name: str) -> Optional[str]:
    """The bundled plugin whose name clashes with ``name`` (normalised), if any."""
    for candidate, _ in loader.scan_dir(loader.bundled_plugins_dir(), "bundled"):
        manifest = loader.read_manifest(candidate)[0] if candidate is not None else None
        if manifest is not None and loader.normalize_name(manifest.name) == loader.normalize_name(name):
            return manifest.name
    return None


@plugin_group.command("check")
@click.argument("path", type=click.Path(path_type=Path))
@config_option
@json_option
def plugin_check(path: Path, config_path: Optional[str] = None, as_json: bool = False) -> None:
    """Validate one plugin directory or .zip bundle; prints every problem, exit 1 if any.

    Also warns (exit 0) when its name is taken by a bundled or installed plugin, or by one in a
    Dir of --config: the host would refuse one of the two.
    """
    problems = check_path(path)
    warnings = name_clashes(path, get_config(config_path) if config_path else None) if path.exists() else []
    if as_json:
        data: Dict[str, Any] = {"path": str(path), "ok": not problems, "problems": problems}
        if warnings:
            data["warnings"] = warnings
        print_json(data)
        if problems:
            raise SystemExit(1)
        return
    for w in warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    if problems:
        console.print(f"[red]{len(problems)} problem(s) in {escape(str(path))}:[/]")
        for p in problems:
            console.print(f"  - {escape(p)}", soft_wrap=True)
        raise SystemExit(1)
    console.print(f"[green]ok[/] {escape(str(path))}")


@plugin_group.command("new")
@click.argument("name")
@click.argument("dir_arg", metavar="[DIR]", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice([k.value for k in Kind]), required=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None)
@json_option
def plugin_new(
    name: str, kind: str, directory: Optional[Path], as_json: bool = False, dir_arg: Optional[Path] = None
) -> None:
    """Write a plugin scaffold NAME in DIR (default: here) that passes `plugin check` and loads,
    and a host.toml beside DIR that loads it (never overwriting one)."""
    if dir_arg is not None and directory is not None and dir_arg != directory:
        fail(f"give the directory once: DIR {dir_arg} or --dir {directory}", code=2)
    directory = dir_arg or directory or Path(".")
    taken = bundled_name(name)
    if taken is not None:
        fail(
            f"plugin name {name!r} is taken by the bundled plugin {taken!r}: the host would refuse one "
            "of the two at load; choose another name",
            code=2,
        )
    try:
        target = scaffold.new_plugin(name, Kind(kind), directory)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc), code=2 if isinstance(exc, ValueError) else 1)
        return
    except ManifestError as exc:
        fail(str(exc))
        return
    config_file, wrote = write_host_toml(name, Kind(kind), directory)
    if as_json:
        files = sorted(str(f) for f in target.iterdir())
        print_json(
            {
                "name": name,
                "kind": kind,
                "path": str(target),
                "files": files,
                "host_toml": str(config_file),
                "host_toml_written": wrote,
            }
        )
        return
    shown = escape(str(target))
    console.print(f"[green]created[/] {shown}; check it with: sectorhooks plugin check {shown}")
    if wrote:
        console.print(
            f"[green]wrote[/] {escape(str(config_file))}: it loads {escape(name)}; "
            f"see it with: sectorhooks plugins list --config {escape(str(config_file))}"
        )
    else:
        rel = _dir_entry(directory, config_file.parent)
        console.print(
            f"[yellow]{escape(str(config_file))} exists: not changed[/]; to load the plugin, add "
            f"{escape(repr(rel))} to its [Common.Plugins] Dir"
            + (
                f" and a [[Common.Syncers]] entry with PluginName = {escape(repr(name))}"
                if kind == "SyncSectorState"
                else ""
            )
        )


def _dir_entry(directory: Path, home: Path) -> str:
    return Path(os.path.relpath(directory.resolve(), home.resolve())).as_posix()


def host_toml_home(directory: Path) -> Path:
    """Where ``plugin new`` puts host.toml: beside DIR (its parent), or in DIR when DIR is here."""
    resolved = directory.resolve()
    return resolved if resolved == Path.cwd().resolve() else resolved.parent


def write_host_toml(name: str, kind: Kind, directory: Path) -> Tuple[Path, bool]:
    """Write a host.toml loading the new plugin (its folder in Dir; for a SyncSectorState plugin
    a [[Common.Syncers]] entry); returns its path and whether it was written (an existing file
    is never changed)."""
    home = host_toml_home(directory)
    path = home / "host.toml"
    shown = path if directory.is_absolute() else Path(os.path.relpath(path, Path.cwd()))
    if path.exists():
        return shown, False
    q = json.dumps  # a TOML basic string is a JSON string for these values
    lines = [
        f"# Written by `sectorhooks plugin new {name}`: a host that loads it. Paths are relative to",
        "# this file. The full list of keys: `sectorhooks init` writes a commented config.",
        "[Common]",
        'DataDir = "data"                       # the KV, the change log, tokens',
        "",
        "[Common.Plugins]",
        f"Dir = [{q(_dir_entry(directory, home))}]",
        "",
        "[Common.DB]                            # the sector metadata KV: SQLite in DataDir",
        'Driver = "plugin"',
        "[Common.DB.Plugin]",
        'PluginName = "sqlkv"',
        'Meta = { url = "sqlite:///data/kv.sqlite3" }',
    ]
    if kind is Kind.SYNC_SECTOR_STATE:
        lines += [
            "",
            "[[Common.Syncers]]                     # an instance of the plugin: it receives every change",
            f"Name = {q(name)}",
            f"PluginName = {q(name)}",
            '# "thread": hooks run in the host, so the scaffold\'s in-memory sink is what ReadBack sees;',
            '# remove for the default, "process" (a worker process per syncer), once it writes a database.',
            'Isolation = "thread"',
        ]
    home.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return shown, True
