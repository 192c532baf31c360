"""``sectorhooks`` command line: click groups, rendered with rich.

Each sub-module adds its commands to :data:`main`; exit codes are 0 ok, 1 failure, 2 usage.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import List, Optional

import click

from .. import logs
from ._common import LOG_OVERRIDES, setup_logging

# Sub-modules that register commands on ``main`` when imported (absent ones are skipped).
COMMAND_MODULES = ("plugins", "build", "sync", "rpc", "store", "demo", "registry", "sectors")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output: -v INFO, -vv DEBUG.")
@click.option(
    "--log-level",
    type=click.Choice(logs.LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Log level (wins over -v) [default: [Common.Log] Level, else INFO for serve, WARNING otherwise].",
)
@click.option(
    "--log-format",
    type=click.Choice(logs.LOG_FORMATS),
    default=None,
    help="text: timestamp, level, logger, message; json: one object a line [default: [Common.Log] Format].",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append log lines to this file instead of stderr [default: [Common.Log] File].",
)
@click.version_option(package_name="sectorhooks")
@click.pass_context
def main(
    ctx: click.Context,
    verbose: int,
    log_level: Optional[str],
    log_format: Optional[str],
    log_file: Optional[Path],
) -> None:
    """sectorhooks: plugins for a storage-sector manager."""
    if log_level is None and verbose:
        log_level = "DEBUG" if verbose > 1 else "INFO"
    overrides = logs.LogOverrides(
        level=log_level.upper() if log_level else None, format=log_format, file=log_file
    )
    ctx.meta[LOG_OVERRIDES] = overrides
    # until a command loads its config, which may say more ([Common.Log], see _common.get_config)
    setup_logging()


def _register_all() -> None:
    for name in COMMAND_MODULES:
        full = f"{__name__}.{name}"
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise


_register_all()


def run(argv: Optional[List[str]] = None) -> int:
    """Run the CLI and return its exit code (for tests)."""
    try:
        main.main(args=argv, prog_name="sectorhooks", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        exc.show()
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
