"""Helpers shared by the CLI commands: consoles, config loading, host start, failure exits."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional, TypeVar

import attrs
import click
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from .. import logs
from ..config import HostConfig, load_config
from ..errors import SectorhooksError

#: Width of a console that does not write to a terminal: a pipe or a file has no width, and a
#: table cut at 80 columns (``dashbo…``) or a path broken mid-word is worse than a long line.
PIPE_WIDTH = 10_000


class _Console(Console):
    """A rich Console that wraps and truncates only on a terminal (and never on a pipe or file)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size  # type: ignore[no-any-return]

    @size.setter
    def size(self, new_size: Any) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console(highlight=False)
console_err = _Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

#: ``ctx.meta`` key of the command line's :class:`~sectorhooks.logs.LogOverrides` (set by ``main``).
LOG_OVERRIDES = "sectorhooks.log"


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


def log_overrides() -> logs.LogOverrides:
    """What the command line said about logging (nothing outside a command)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.meta.get(LOG_OVERRIDES) if ctx is not None else None
    return found if isinstance(found, logs.LogOverrides) else logs.LogOverrides()


def setup_logging(
    config: Optional[HostConfig] = None, default_level: str = "WARNING", **overrides: Any
) -> None:
    """(Re)configure logging: the command line, then ``[Common.Log]`` of ``config``, then the default.

    ``overrides`` (``access_log=True``...) are a command's own options, as strong as the main ones.
    """
    said = log_overrides()
    if overrides:
        said = attrs.evolve(said, **{k: v for k, v in overrides.items() if v is not None})
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.meta[LOG_OVERRIDES] = said
    settings = logs.resolve(said, config.log if config is not None else None, default_level)
    try:
        logs.configure(settings)
    except OSError as exc:
        fail(f"cannot open log file {settings.file}: {exc.strerror or exc}")


def get_config(config_path: Optional[str], default_level: str = "WARNING") -> HostConfig:
    """Load the config or exit 1 with the error (which names file and key); then log as it says.

    ``default_level`` is the log level when neither the command line nor ``[Common.Log] Level``
    names one (``serve`` passes INFO).
    """
    try:
        config = load_config(config_path)
    except SectorhooksError as exc:
        fail(str(exc))
        raise AssertionError("unreachable")
    if click.get_current_context(silent=True) is not None:
        setup_logging(config, default_level)
    return config


def fail(message: str, code: int = 1) -> None:
    """Print an error in red and exit with ``code``."""
    console_err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    """Print JSON to stdout, unstyled (safe to pipe)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
