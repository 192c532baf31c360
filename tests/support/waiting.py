"""The one polling helper of the tests."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(
    cond: Callable[[], T],
    timeout: float = 20.0,
    what: str = "condition",
    *,
    interval: float = 0.02,
    fail: bool = True,
) -> T:
    """Poll ``cond()`` every ``interval`` seconds until it returns something truthy; return that.

    ``cond`` is called once more at the deadline. Then, with ``fail`` (the default), raise
    ``AssertionError("timed out after {timeout}s waiting for {what}")``; with ``fail=False``,
    return ``cond()``'s last (falsy) value, for a caller that asserts with its own details:
    ``assert wait_for(drained, 30, fail=False), status()``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            if fail:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            return value
        time.sleep(interval)
