"""Key, value and collection-name checks for KVStore backends, and ``get`` from ``peek``.

Every bundled backend calls these before touching its server, so a bad argument is the same
``TypeError``/``ValueError`` on all of them (the conformance suite checks it).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

from ..errors import KeyNotFound
from ..kvstore import COLLECTION_NAME_RE, MAX_KEY_SIZE


def check_collection_name(name: object, plugin: str = "") -> str:
    """Return ``name`` if it is a valid collection name, else raise ``TypeError``/``ValueError``."""
    who = f"{plugin}: " if plugin else ""
    if not isinstance(name, str):
        raise TypeError(f"{who}collection name must be str, got {type(name).__name__}")
    if not COLLECTION_NAME_RE.match(name):
        raise ValueError(
            f"{who}invalid collection name {name!r}: use 1-128 characters of A-Z a-z 0-9 _ . / -"
        )
    return name


def check_key(key: object) -> bytes:
    """Return ``key`` as ``bytes`` (bytearray/memoryview are copied); reject str and oversize keys."""
    if isinstance(key, bytes):
        out = key
    elif isinstance(key, (bytearray, memoryview)):
        out = bytes(key)
    else:
        raise TypeError(f"keys are bytes, got {type(key).__name__} {key!r:.60}; encode it first")
    if len(out) > MAX_KEY_SIZE:
        raise ValueError(
            f"key of {len(out)} bytes is longer than MAX_KEY_SIZE={MAX_KEY_SIZE}: {out[:40]!r}..."
        )
    return out


def check_value(value: object) -> bytes:
    """Return ``value`` as ``bytes`` (bytearray/memoryview are copied); reject anything else."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"values are bytes, got {type(value).__name__}; serialize it first")


def prefix_upper_bound(prefix: bytes) -> Optional[bytes]:
    """Smallest key greater than every key starting with ``prefix``; ``None`` if there is none.

    ``b"ab"`` -> ``b"ac"``, ``b"a\\xff"`` -> ``b"b"``, ``b""`` and ``b"\\xff\\xff"`` -> ``None``.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_limit(limit: object) -> Optional[int]:
    """Return a scan's ``limit`` (``None``: no limit, else an int >= 0); reject anything else."""
    if limit is None:
        return None
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"a scan's limit is an int >= 0 or None, got {type(limit).__name__} {limit!r:.60}")
    if limit < 0:
        raise ValueError(f"a scan's limit is an int >= 0 or None, got {limit}")
    return limit


def scan_range(
    prefix: object, after: object = None, limit: object = None
) -> Tuple[bytes, bool, Optional[bytes], Optional[int]]:
    """Check a paged scan's arguments; return ``(lo, inclusive, hi, limit)``: the keys wanted are
    ``key >= lo`` (``key > lo`` when not ``inclusive``) and ``key < hi`` (``hi`` ``None``: no
    upper bound), at most ``limit`` of them (``None``: all). ``limit`` is 0 when nothing can
    match (``after`` at or past every key of ``prefix``), so a backend need not ask its server.
    """
    lo = check_key(prefix)
    hi = prefix_upper_bound(lo)
    n = check_limit(limit)
    inclusive = True
    if after is not None:
        last = check_key(after)
        if last >= lo:
            lo, inclusive = last, False
        if hi is not None and last >= hi:
            n = 0
    return lo, inclusive, hi, n


class GetFromPeek:
    """Mixin for backend authors: ``get`` in terms of the class's own ``peek`` and ``name``."""

    name: str
    peek: Callable[[bytes], Optional[bytes]]

    def get(self, key: bytes) -> bytes:
        """Value of ``key``; raises ``KeyNotFound`` when missing."""
        value = self.peek(key)
        if value is None:
            raise KeyNotFound(self.name, key)
        return value
