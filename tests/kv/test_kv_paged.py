"""Paged scans as the host gets them: the bundled backends page natively, a plugin written to the
older ``scan(prefix)`` is wrapped when its store is opened (logged once) and pages by filtering.

The paged-scan contracts themselves are in the installed suite
(:mod:`sectorhooks.testing.kv_contracts`, ``test_paged_scan_*``), run over every backend."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Iterator, List, Optional

import pytest

from kv import kvplugins
from kv.test_kv_wiring import make_host, plugin_db
from sectorhooks.kv import (
    WARNED_NOT_PAGED,
    PagedScans,
    RetryingKVStore,
    open_kvstore,
    paged_store,
    scan_is_paged,
    scan_page,
)

LEGACY = Path(__file__).resolve().parents[1] / "author" / "plugins" / "sqlite3kv"


def test_every_bundled_backend_pages_natively(sectorhooks_kv_store: Any) -> None:
    assert paged_store(sectorhooks_kv_store) is sectorhooks_kv_store  # no wrapper, no filtering
    coll = sectorhooks_kv_store.open_collection("native")
    assert scan_is_paged(coll.scan)
    assert sectorhooks_kv_store.view(lambda st: scan_is_paged(st.collection("native").scan))
    assert sectorhooks_kv_store.update(lambda st: scan_is_paged(st.collection("native").scan))


def test_scan_is_paged_reads_the_signature() -> None:
    def old(prefix: bytes = b"") -> Any: ...

    def new(prefix: bytes = b"", *, after: Optional[bytes] = None, limit: Optional[int] = None) -> Any: ...

    def positional(
        prefix: bytes = b"", after: Optional[bytes] = None, limit: Optional[int] = None
    ) -> Any: ...

    def only_after(prefix: bytes = b"", *, after: Optional[bytes] = None) -> Any: ...

    def anything(prefix: bytes = b"", **kw: Any) -> Any: ...

    assert [scan_is_paged(f) for f in (old, new, positional, only_after, anything)] == [
        False,
        True,
        True,
        False,
        True,
    ]
    assert scan_is_paged(len) is False or scan_is_paged(len) is True  # a builtin does not raise


@pytest.fixture
def legacy_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[RetryingKVStore]:
    plugin = tmp_path / "plugins" / "sqlite3kv"
    shutil.copytree(LEGACY, plugin)
    host, config = make_host(
        tmp_path, plugin_db("sqlite3kv", {"path": str(tmp_path / "kv.sqlite3")}), (plugin,)
    )
    WARNED_NOT_PAGED.discard("sqlite3kv")
    with host:
        with caplog.at_level(logging.WARNING, logger="sectorhooks.kv"):
            store = open_kvstore(host, config)
        try:
            yield store
        finally:
            store.close()


def test_a_plugin_without_after_and_limit_is_paged_by_the_host(
    legacy_store: RetryingKVStore, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(legacy_store.inner, PagedScans)
    warned = [r.getMessage() for r in caplog.get_records("setup") if r.name == "sectorhooks.kv"]
    assert len(warned) == 1 and "'sqlite3kv'" in warned[0] and "not paged" in warned[0], warned
    assert "after= and limit=" in warned[0]
    items = {b"k%02d" % i: b"v%d" % i for i in range(30)}
    legacy_store.open_collection("c").update(lambda t: [t.put(k, v) for k, v in items.items()])
    coll = legacy_store.open_collection("c")
    want = sorted(items.items())
    assert list(coll.scan(b"k", after=b"k09", limit=3)) == want[10:13]
    assert coll.view(lambda t: list(t.scan(b"k", after=b"k27"))) == want[28:]
    assert legacy_store.view(lambda st: list(st.collection("c").scan(b"k1", limit=2))) == want[10:12]
    assert legacy_store.update(lambda st: list(st.collection("c").scan(b"", after=b"k29"))) == []
    with pytest.raises(ValueError, match="limit"):
        list(coll.scan(limit=-1))


def test_the_warning_is_logged_once_per_plugin(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugin = tmp_path / "plugins" / "sqlite3kv"
    shutil.copytree(LEGACY, plugin)
    messages: List[str] = []
    WARNED_NOT_PAGED.discard("sqlite3kv")
    for run in range(3):
        host, config = make_host(
            tmp_path / str(run), plugin_db("sqlite3kv", {"path": str(tmp_path / "kv.sqlite3")}), (plugin,)
        )
        with host, caplog.at_level(logging.WARNING, logger="sectorhooks.kv"):
            open_kvstore(host, config).close()
        messages += [r.getMessage() for r in caplog.records if "not paged" in r.getMessage()]
        caplog.clear()
    assert len(messages) == 1, messages  # the first open only


def test_scan_page_closes_the_full_scan_it_filters(tmp_path: Path) -> None:
    store = kvplugins.open_store("memdb", {})
    coll = store.open_collection("c")
    for i in range(600):
        coll.put(b"k%03d" % i, b"v")
    closed: List[bool] = []

    class Old:
        def scan(self, prefix: bytes = b"") -> Any:
            inner = coll.scan(prefix)

            def gen() -> Any:
                try:
                    yield from inner
                finally:
                    closed.append(True)

            return gen()

    got = list(scan_page(Old(), b"k", after=b"k100", limit=2))
    assert got == [(b"k101", b"v"), (b"k102", b"v")] and closed == [True]
    assert list(scan_page(Old(), b"k", limit=0)) == []
