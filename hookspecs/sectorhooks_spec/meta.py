"""Strict reading of a plugin's ``Meta`` table: every error names the plugin, the key and the fix.

For plugin authors: ``MetaReader(plugin, meta, known=[...])`` rejects unknown keys with a
suggestion and gives typed, validated access to the rest.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping, Sequence

REQUIRED = object()


class MetaReader:
    """Typed access to a meta table; unknown keys are rejected with a suggestion."""

    def __init__(
        self,
        plugin: str,
        meta: Mapping[str, Any],
        known: Sequence[str],
        section: str = "[Common.DB.Plugin.Meta]",
    ):
        if meta is None:
            meta = {}
        if not isinstance(meta, Mapping):
            raise ValueError(f"plugin {plugin!r}: meta must be a table, got {type(meta).__name__}")
        self.plugin, self.meta, self.section = plugin, meta, section
        for key in meta:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                raise ValueError(f"{self._where(key)}: unknown meta key ({hint})")

    def _where(self, key: str) -> str:
        return f"plugin {self.plugin!r} meta key {key!r} ({self.section} {key})"

    def text(self, key: str, default: Any = REQUIRED, example: str = "...") -> str:
        value = self.meta.get(key, default)
        if value is REQUIRED:
            raise ValueError(f"{self._where(key)} is missing: set {key} = {example}")
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{self._where(key)} must be a non-empty string, got {value!r}")
        return value.strip()

    def number(self, key: str, default: float, minimum: float = 0.0, integer: bool = False) -> Any:
        value = self.meta.get(key, default)
        kind = "an integer" if integer else "a number"
        try:
            if isinstance(value, bool):
                raise ValueError
            number = int(value) if integer else float(value)
            if integer and isinstance(value, float) and value != number:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{self._where(key)} must be {kind} >= {minimum:g}, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"{self._where(key)} must be {kind} >= {minimum:g}, got {value!r}")
        return number

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.meta.get(key, default)
        if not isinstance(value, str) or value.upper() not in choices:
            raise ValueError(f"{self._where(key)} must be one of {', '.join(choices)}, got {value!r}")
        return value.upper()

    def error(self, key: str, message: str) -> ValueError:
        return ValueError(f"{self._where(key)} {message}")
