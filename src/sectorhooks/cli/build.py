"""``sectorhooks plugin build`` / ``plugin check-dep``: a plugin's zip bundle and its requirements."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Dict, List

import click
from rich.markup import escape

from .. import bundle, deps, loader
from ..errors import SectorhooksError
from ._common import console, console_err, fail, json_option, print_json
from .plugins import plugin_group


@plugin_group.command("build")
@click.option(
    "--src-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Plugin directory."
)
@click.option(
    "--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Where the zip goes."
)
@json_option
def plugin_build(src_dir: Path, out_dir: Path, as_json: bool = False) -> None:
    """Validate a plugin and write a reproducible plugin-<name>-<version>.zip (SOURCE_DATE_EPOCH)."""
    try:
        result = bundle.build(src_dir, out_dir)
    except SectorhooksError as exc:
        fail(str(exc))
        return
    if as_json:
        notes = deps.unsatisfied(deps.manifest_requires(src_dir)[1])
        print_json(
            {
                "path": str(result.path),
                "name": result.name,
                "version": result.version,
                "build_time": result.build_time,
                "files": list(result.files),
                "unsatisfied": notes,  # requires this host would refuse
            }
        )
        return
    console.print(
        f"[green]built[/] {escape(str(result.path))} ({escape(result.name)} {escape(result.version)}, "
        f"build time {result.build_time}, {len(result.files)} files)"
    )
    _, requires = deps.manifest_requires(src_dir)
    for line in deps.unsatisfied(requires):
        console_err.print(f"[yellow]note:[/] this host would refuse it: {escape(line)}")


def _zip_requires(path: Path) -> List[str]:
    from sectorhooks_spec.manifest import load_toml

    cand = loader.zip_candidate(path)
    data, problems = load_toml(cand.manifest_text, cand.manifest_path)
    if data is None:
        raise SectorhooksError(str(problems[0]))
    return [str(r).strip() for r in data.get("requires", [])]


@plugin_group.command("check-dep")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--fix", is_flag=True, help="Rewrite requires to ranges this host satisfies (keeps manifest.toml.bak)."
)
@json_option
def plugin_check_dep(path: Path, fix: bool, as_json: bool = False) -> None:
    """Compare a plugin's requires with this host's packages; exit 1 on any conflict."""
    try:
        if path.is_file() and path.suffix == ".zip":
            if fix:
                fail(
                    "--fix rewrites a manifest.toml: run it on the plugin's source directory, then rebuild",
                    code=2,
                )
            requires = _zip_requires(path)
        else:
            requires = deps.manifest_requires(path)[1]
    except (SectorhooksError, OSError, zipfile.BadZipFile) as exc:
        fail(str(exc))
        return
    conflicts = deps.unsatisfied(requires)
    report: Dict[str, Any] = {"path": str(path), "requires": requires, "conflicts": conflicts}
    if not conflicts:
        if as_json:
            print_json(dict(report, ok=True))
            return
        click.echo(f"ok: {len(requires)} requirement(s) satisfied by this host")
        return
    if not fix:
        if as_json:
            print_json(dict(report, ok=False))
            raise SystemExit(1)
        for line in conflicts:
            click.echo(line)
        raise SystemExit(1)
    try:
        result = deps.fix(path)
    except SectorhooksError as exc:
        fail(str(exc))
        return
    if as_json:
        changed = [{"old": old, "new": new} for old, new in result.changed]
        backup = str(result.backup) if result.backup else None
        print_json(
            dict(report, ok=result.fixed, changed=changed, remaining=list(result.remaining), backup=backup)
        )
        if not result.fixed:
            raise SystemExit(1)
        return
    for old, new in result.changed:
        click.echo(f"{old} -> {new}")
    if result.fixed:
        click.echo(f"fixed: every requirement is satisfied now (backup: {result.backup})")
        return
    for line in result.remaining:
        click.echo(line)
    click.echo(
        f"not fixed: {len(result.remaining)} conflict(s) remain; "
        f"the manifest was restored from {result.backup}"
    )
    raise SystemExit(1)
