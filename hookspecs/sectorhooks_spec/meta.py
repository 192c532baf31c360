"""Strict reading of a plugin's ``Meta`` table: every error names the plugin, the key and the fix.

The one way a plugin checks its ``Meta`` (or config) table: ``MetaReader(plugin, meta,
known=[...])`` rejects unknown keys with a suggestion (and removed keys with what replaced
them), then gives typed, validated access to the rest::

    r = MetaReader("mykv", meta, ("url", "pool_size", "echo"))
    url = r.text("url", example='"sqlite:////var/lib/kv.sqlite3"')   # required
    pool = r.integer("pool_size", 5, minimum=1)                        # 5 when absent
    echo = r.flag("echo", False)

Each problem is a :class:`~sectorhooks_spec.errors.MetaError` (a ``ValueError``) whose message
says where the key is. By default that is a KV plugin's ``[Common.DB.Plugin.Meta]``:
``plugin 'mykv' meta key 'pool_size' ([Common.DB.Plugin.Meta] pool_size) must be an integer >= 1,
got 0``. A plugin with another home for its table says so with ``where`` (``"sqlsync instance
'mirror-1'"`` gives ``sqlsync instance 'mirror-1': meta key 'batch_size' must be ...``), and
``dotted=True`` names keys as ``Meta.Key`` (``plugin 'fsstore' store 's': Meta.CreateDirs must be
true or false, got 'yes'``: the form the host maps to the config line of a store's key).
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Mapping, Optional, Pattern, Sequence, overload

from .errors import MetaError

#: ``default`` of a getter whose key must be set.
REQUIRED: Any = object()


class MetaReader:
    """Typed access to a plugin's meta table; unknown and removed keys are rejected up front.

    ``plugin``: the plugin's name. ``known``: every key it takes. ``section``: where a KV
    plugin's table is in the host config (named in messages when ``where`` is not given).
    ``where``: who the table belongs to, starting every message (e.g. ``"sqlsync instance
    'mirror-1'"``); default ``plugin '<plugin>'``. ``removed``: keys of earlier versions, each
    with what replaced it. ``dotted``: name keys ``Meta.Key`` instead of ``meta key 'key'``, and
    report every unknown key in one message.
    """

    #: The strings :meth:`flag` takes by default (any case).
    TRUE_FALSE: Mapping[str, bool] = {"true": True, "false": False}
    #: damocles-manager's spellings as well (``"on"``, ``"off"``, ``"1"``...), for tables copied from it.
    ON_OFF: Mapping[str, bool] = {
        **dict.fromkeys(("1", "true", "yes", "on"), True),
        **dict.fromkeys(("0", "false", "no", "off"), False),
    }

    def __init__(
        self,
        plugin: str,
        meta: Optional[Mapping[str, Any]],
        known: Sequence[str],
        section: str = "[Common.DB.Plugin.Meta]",
        *,
        where: Optional[str] = None,
        removed: Optional[Mapping[str, str]] = None,
        dotted: bool = False,
    ):
        self.plugin, self.section, self.where, self.dotted = plugin, section, where, dotted
        self.known = tuple(known)
        owner = where if where is not None else f"plugin {plugin!r}"
        if meta is None:
            meta = {}
        if not isinstance(meta, Mapping):
            table = "Meta" if dotted else "meta"
            raise MetaError(f"{owner}: {table} must be a table, got {type(meta).__name__}")
        self.meta: Mapping[str, Any] = meta
        removed = removed or {}
        for key in meta:
            if key in removed and key not in self.known:
                raise self.error(key, f"was removed: {removed[key]}")
        unknown = [str(key) for key in meta if key not in self.known]
        if not unknown:
            return
        if dotted:
            hint = f"{plugin} knows {', '.join(self.known)}" if self.known else f"{plugin} takes no Meta keys"
            raise MetaError(
                f"{owner}: unknown Meta key(s) {', '.join(map(repr, unknown))}; {hint}", unknown[0]
            )
        raise self.error(unknown[0], f"is unknown ({self._hint(unknown[0])})")

    def _hint(self, key: str) -> str:
        if not self.known:
            return f"{self.plugin} takes no meta keys: remove it"
        close = difflib.get_close_matches(key, self.known, n=1, cutoff=0.6)
        return f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(self.known)}"

    def name(self, key: str) -> str:
        """How messages name ``key`` (with whose table it is)."""
        if self.dotted:
            return f"{self.where if self.where is not None else f'plugin {self.plugin!r}'}: Meta.{key}"
        if self.where is not None:
            return f"{self.where}: meta key {key!r}"
        return f"plugin {self.plugin!r} meta key {key!r} ({self.section} {key})"

    def error(self, key: str, message: str) -> MetaError:
        """A :class:`MetaError` about ``key`` (raise it), e.g. ``r.error("url", "names no host")``."""
        return MetaError(f"{self.name(key)} {message}", key)

    def _bad(self, key: str, what: str, value: Any) -> MetaError:
        return self.error(key, f"must be {what}, got {value!r}")

    def get(self, key: str, default: Any = None) -> Any:
        """The value as given (``default`` when absent), for a value the plugin checks itself
        (raise :meth:`error` when it is wrong)."""
        return self.meta.get(key, default)

    def _value(self, key: str, default: Any, example: str) -> Any:
        if key in self.meta:
            return self.meta[key]
        if default is REQUIRED:
            raise self.error(key, f"is missing: set {key} = {example}")
        return default

    @overload
    def text(
        self,
        key: str,
        default: str = ...,
        example: str = ...,
        *,
        what: Optional[str] = ...,
        pattern: Optional[Pattern[str]] = ...,
    ) -> str: ...

    @overload
    def text(
        self,
        key: str,
        default: None,
        example: str = ...,
        *,
        what: Optional[str] = ...,
        pattern: Optional[Pattern[str]] = ...,
    ) -> Optional[str]: ...

    def text(
        self,
        key: str,
        default: Optional[str] = REQUIRED,
        example: str = "...",
        *,
        what: Optional[str] = None,
        pattern: Optional[Pattern[str]] = None,
    ) -> Optional[str]:
        """A string: without ``pattern`` a non-empty one (returned stripped), with it one that
        ``pattern`` matches whole (returned as given). ``default`` when absent (not checked;
        ``REQUIRED``: the key must be set, ``example`` shows how). ``what`` describes a good
        value in the error."""
        if key not in self.meta and default is not REQUIRED:
            return default
        value = self._value(key, default, example)
        if pattern is not None:
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise self._bad(key, what or f"a string matching {pattern.pattern!r}", value)
            return value
        if not isinstance(value, str) or not value.strip():
            raise self._bad(key, what or "a non-empty string", value)
        return value.strip()

    def integer(
        self,
        key: str,
        default: int = REQUIRED,
        minimum: Optional[int] = None,
        maximum: Optional[int] = None,
        *,
        what: Optional[str] = None,
        example: str = "...",
    ) -> int:
        """An integer within ``[minimum, maximum]`` (either may be open). Integral floats and
        strings (``"250"``, as damocles-manager's config gives them) are taken; booleans are not."""
        value = self._value(key, default, example)
        what = what or f"an integer{_bounds(minimum, maximum)}"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self._bad(key, what, value)
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            raise self._bad(key, what, value) from None
        if isinstance(value, float) and value != number:
            raise self._bad(key, what, value)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise self._bad(key, what, value)
        return number

    def real(
        self,
        key: str,
        default: float = REQUIRED,
        minimum: Optional[float] = None,
        maximum: Optional[float] = None,
        *,
        what: Optional[str] = None,
        example: str = "...",
    ) -> float:
        """A number (int, float or a string of one; not a boolean, not NaN) within ``[minimum,
        maximum]`` (either may be open)."""
        value = self._value(key, default, example)
        what = what or f"a number{_bounds(minimum, maximum)}"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise self._bad(key, what, value)
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise self._bad(key, what, value) from None
        if math.isnan(number):
            raise self._bad(key, what, value)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise self._bad(key, what, value)
        return number

    def flag(self, key: str, default: bool = REQUIRED, words: Optional[Mapping[str, bool]] = None) -> bool:
        """A boolean, or one of ``words`` (any case; default :attr:`TRUE_FALSE`, :attr:`ON_OFF` for
        damocles-manager's ``"on"``, ``"off"``, ``"1"``...)."""
        words = self.TRUE_FALSE if words is None else words
        value = self._value(key, default, "true")
        if isinstance(value, str):
            value = words.get(value.strip().lower(), value)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false", value)
        return value

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        """One of ``choices`` (upper case), given in any case."""
        value = self._value(key, default, repr(choices[0]) if choices else "...")
        if not isinstance(value, str) or value.upper() not in choices:
            raise self._bad(key, f"one of {', '.join(choices)}", value)
        return value.upper()


def _bounds(minimum: Optional[float], maximum: Optional[float]) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" >= {minimum:g}"
    if maximum is not None:
        return f" <= {maximum:g}"
    return ""
