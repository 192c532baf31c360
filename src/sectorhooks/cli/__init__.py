"""``sectorhooks`` command line: click groups, rendered with rich.

Each sub-module adds its commands to :data:`main`; exit codes are 0 ok, 1 failure, 2 usage.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Optional

import click

from ._common import console_err

# Sub-modules that register commands on ``main`` when imported (absent ones are skipped).
COMMAND_MODULES = ("plugins", "sync", "rpc", "store", "demo", "registry")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="sectorhooks")
def main(verbose: int) -> None:
    """sectorhooks: plugins for a storage-sector manager."""
    from rich.logging import RichHandler

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console_err, show_path=False, show_time=verbose > 1)],
    )


def _register_all() -> None:
    for name in COMMAND_MODULES:
        full = f"{__name__}.{name}"
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise


_register_all()


def run(argv: Optional[list] = None) -> int:
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
