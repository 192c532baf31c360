"""The host's logging: one handler on the root logger, text or JSON lines, to stderr or a file.

Text lines carry a timestamp (ISO 8601, UTC), the level and the logger's name::

    2026-12-06T08:02:36.123Z INFO     sectorhooks.host: loaded plugin 'KVStore/memdb' version 0.1.0, ...

and are never wrapped: rich's handler (which wraps at the terminal's width) is used only when
stderr is a terminal; a pipe, a journal or ``--log-file`` gets plain ``logging.Formatter`` lines.
JSON is one object a line: ``ts``, ``level``, ``logger``, ``message``, ``exc`` (a traceback, if
any) and the record's ``fields`` (``log.info(..., extra={"fields": {...}})``), ASCII-only, so
every line parses whatever a message holds.

The access log (one line per JSON-RPC call, ``serve --access-log`` or ``[Common.Log] AccessLog``)
goes through the logger :data:`ACCESS_LOGGER` at INFO, whatever the level of the other lines:
:func:`access_log_enabled` is the switch a server checks before it builds a line.

Precedence: the command line (``--log-level``, ``-v``/``-vv``, ``--log-format``, ``--log-file``,
``--access-log``) over ``[Common.Log]`` over the command's default level (INFO for ``serve``,
WARNING for commands that print a result).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, TextIO

import attrs

from .config import LOG_FORMATS, LOG_LEVELS, LogConfig

__all__ = [
    "ACCESS_LOGGER",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "LogOverrides",
    "LogSettings",
    "TextFormatter",
    "access_log_enabled",
    "configure",
    "current",
    "resolve",
]

#: Logger of the access log: one INFO line per JSON-RPC call when the access log is on.
ACCESS_LOGGER = "sectorhooks.access"
TEXT_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"


@attrs.frozen
class LogOverrides:
    """What the command line says about logging; ``None``: it says nothing."""

    level: Optional[str] = None
    format: Optional[str] = None
    file: Optional[Path] = None
    access_log: Optional[bool] = None


@attrs.frozen
class LogSettings:
    """How the process logs, once the command line, the config and the command are known."""

    level: str = "WARNING"
    format: str = "text"
    file: Optional[Path] = None
    access_log: bool = False


def resolve(
    overrides: LogOverrides = LogOverrides(),
    config: Optional[LogConfig] = None,
    default_level: str = "WARNING",
) -> LogSettings:
    """The command line over ``[Common.Log]`` over the command's ``default_level``."""
    config = config or LogConfig()
    return LogSettings(
        level=(overrides.level or config.level or default_level).upper(),
        format=overrides.format or config.format,
        file=overrides.file if overrides.file is not None else config.file,
        access_log=overrides.access_log if overrides.access_log is not None else config.access_log,
    )


def _iso(created: float) -> str:
    when = dt.datetime.fromtimestamp(created, dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """``<ISO 8601 UTC> <LEVEL> <logger>: <message>``, the traceback on the lines below."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        return _iso(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, exc (if any), and ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        obj: Dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                obj.setdefault(str(key), value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return json.dumps(obj, ensure_ascii=True, default=str)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever ``sys.stderr`` is when a record comes (tests and click swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _Gate(logging.Filter):
    """Records at the level or above; access-log records only (and always) when it is on."""

    def __init__(self, level: int, access_log: bool):
        super().__init__()
        self.level, self.access_log = level, access_log

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == ACCESS_LOGGER or record.name.startswith(ACCESS_LOGGER + "."):
            return self.access_log
        return record.levelno >= self.level


_installed: Optional[logging.Handler] = None
_current = LogSettings()


def _terminal_handler() -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler
    from rich.text import Text

    def when(moment: dt.datetime) -> Text:
        return Text(_iso(moment.timestamp()))

    handler = RichHandler(
        console=Console(stderr=True), show_path=False, omit_repeated_times=False, log_time_format=when
    )
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    return handler


def _handler(settings: LogSettings, stderr_is_terminal: Callable[[], bool]) -> logging.Handler:
    handler: logging.Handler
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        # reopened when logrotate moves the file away
        handler = logging.handlers.WatchedFileHandler(settings.file, encoding="utf-8")
    elif settings.format == "text" and stderr_is_terminal():
        return _terminal_handler()
    else:
        handler = _Stderr()
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    return handler


def _isatty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def configure(settings: LogSettings, stderr_is_terminal: Callable[[], bool] = _isatty) -> None:
    """Install (or replace) the host's one handler for ``settings``; other handlers are kept.

    The root logger's level is only ever lowered (to let records through to the handler, whose
    filter has the level): handlers others added, such as pytest's, still see what they asked for.
    """
    global _installed, _current
    if settings.level not in LOG_LEVELS:
        raise ValueError(f"log level {settings.level!r}: use one of {', '.join(LOG_LEVELS)}")
    if settings.format not in LOG_FORMATS:
        raise ValueError(f"log format {settings.format!r}: use one of {', '.join(LOG_FORMATS)}")
    level = logging.getLevelName(settings.level)
    handler = _handler(settings, stderr_is_terminal)
    handler.addFilter(_Gate(level, settings.access_log))
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
        _installed.close()
    root.addHandler(handler)
    _installed, _current = handler, settings
    wanted = min(level, logging.INFO) if settings.access_log else level
    if root.level != logging.NOTSET and root.level > wanted:  # NOTSET on the root: everything
        root.setLevel(wanted)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if settings.access_log else logging.CRITICAL + 1)


def current() -> LogSettings:
    """The settings :func:`configure` installed last (defaults before that)."""
    return _current


def access_log_enabled() -> bool:
    """Whether a JSON-RPC server should write an access-log line per call."""
    return logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)


def access(message: str, *args: Any, **fields: Any) -> None:
    """Write one access-log line (``fields`` become keys of the JSON line)."""
    logging.getLogger(ACCESS_LOGGER).info(message, *args, extra={"fields": fields})
