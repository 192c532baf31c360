"""Helpers shared by the CLI commands: consoles, config loading, host start, failure exits."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from ..config import HostConfig, load_config
from ..errors import SectorhooksError

console = Console(highlight=False)
console_err = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


def config_option(fn: F) -> F:
    """``--config FILE`` (default: ``$SECTORHOOKS_CONFIG``, else built-in defaults)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        envvar="SECTORHOOKS_CONFIG",
        default=None,
        help="Host config file (TOML).",
    )(fn)


def json_option(fn: F) -> F:
    """``--json``: print one JSON document instead of tables."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def get_config(config_path: Optional[str]) -> HostConfig:
    """Load the config or exit 1 with the error (which names file and key)."""
    try:
        return load_config(config_path)
    except SectorhooksError as exc:
        fail(str(exc))
        raise AssertionError("unreachable")


def fail(message: str, code: int = 1) -> None:
    """Print an error in red and exit with ``code``."""
    console_err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    """Print JSON to stdout, unstyled (safe to pipe)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
