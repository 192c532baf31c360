"""Helpers for backend authors: what a KVStore or a sink implementation uses, not a plugin's API.

A plugin imports its contract from :mod:`sectorhooks_spec` (the KVStore protocol, the models,
the errors); a *backend* (a KVStore over a database, a sink writing rows) may also use these:

* key checks: :func:`check_collection_name`, :func:`check_key`, :func:`check_value` (the
  portable limits :data:`COLLECTION_NAME_RE` and :data:`MAX_KEY_SIZE`), and
  :func:`prefix_upper_bound` for prefix scans as a range, :func:`scan_range` (and
  :func:`check_limit`) for a paged ``scan(prefix, after=, limit=)`` as one;
* :class:`GetFromPeek`: ``get`` (raising ``KeyNotFound``) in terms of the class's ``peek``;
* value screens for sinks: :func:`text_problem`, :func:`int_problem`, :func:`float_problem`
  (why a value is not storable everywhere, or ``None``);
* statement batching for SQLite: :class:`MultiRow` (``INSERT ... VALUES (...), (...)``).
"""

from __future__ import annotations

from ..kvstore import COLLECTION_NAME_RE, MAX_KEY_SIZE
from ..sector import float_problem, int_problem, text_problem
from .keys import (
    GetFromPeek,
    check_collection_name,
    check_key,
    check_limit,
    check_value,
    prefix_upper_bound,
    scan_range,
)
from .sqlbatch import EXACT_UP_TO, MAX_PARAMS, MAX_ROWS, MultiRow

__all__ = [
    "COLLECTION_NAME_RE",
    "EXACT_UP_TO",
    "MAX_KEY_SIZE",
    "MAX_PARAMS",
    "MAX_ROWS",
    "GetFromPeek",
    "MultiRow",
    "check_collection_name",
    "check_key",
    "check_limit",
    "check_value",
    "float_problem",
    "int_problem",
    "prefix_upper_bound",
    "scan_range",
    "text_problem",
]
