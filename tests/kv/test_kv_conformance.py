"""The KVStore conformance suite over every bundled backend (memdb, sqlkv on SQLite/PostgreSQL/
MariaDB, rediskv): the installed suite, :mod:`sectorhooks.testing.kv_contracts`, with
``sectorhooks_target`` from ``conftest.py``. What third parties run with ``pytest
--sectorhooks-plugin DIR`` is exactly this."""

from __future__ import annotations

from sectorhooks.testing.kv_contracts import *  # noqa: F403  (the suite's tests, collected here)
from sectorhooks_spec.backend import prefix_upper_bound


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound(b"ab") == b"ac"
    assert prefix_upper_bound(b"a\xff") == b"b"
    assert prefix_upper_bound(b"a\xff\xff") == b"b"
    assert prefix_upper_bound(b"") is None
    assert prefix_upper_bound(b"\xff\xff") is None
