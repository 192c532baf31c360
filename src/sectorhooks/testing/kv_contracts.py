"""The KVStore conformance suite: one test per contract of ``sectorhooks_spec.kvstore``.

Runs against the plugin under test (fixture ``sectorhooks_kv_store``: ``pytest
--sectorhooks-plugin DIR``) and, in sectorhooks' own tests, against every bundled backend (memdb,
sqlkv on SQLite/PostgreSQL/MariaDB, rediskv). The isolation contracts accept either behaviour a
backend may have (locking or optimistic, snapshot or conflicting views) unless the target's
:class:`~sectorhooks.testing.target.KVTraits` say which one it must show.
"""

from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

import pytest

from sectorhooks.kv import RetryPolicy, paged_store, retry_update
from sectorhooks_spec.errors import KeyNotFound, KVError, TransactionConflict
from sectorhooks_spec.kvstore import MAX_KEY_SIZE, Collection, KVIterator, KVStore, StoreTxn, Txn

from .kv_child import POLICY, increment
from .target import PluginUnderTest

ALL_BYTES = bytes(range(256))


def model_scan(model: Dict[bytes, bytes], prefix: bytes = b"") -> List[Tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in model.items() if k.startswith(prefix))


# --- the protocol ----------------------------------------------------------------------


def test_store_and_collection_satisfy_the_protocol(sectorhooks_kv_store: Any) -> None:
    assert isinstance(sectorhooks_kv_store, KVStore)
    coll = sectorhooks_kv_store.open_collection("proto")
    assert isinstance(coll, Collection)
    assert coll.name == "proto"
    assert isinstance(coll.scan(), KVIterator)

    def check(st: Any) -> None:
        assert isinstance(st, StoreTxn)
        assert isinstance(st.collection("proto"), Txn)
        assert isinstance(st.collection("proto").scan(), KVIterator)

    sectorhooks_kv_store.view(check)
    sectorhooks_kv_store.update(check)


def test_open_collection_creates_it_empty(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("fresh")
    assert list(coll.scan()) == []
    assert coll.peek(b"k") is None
    with pytest.raises(KeyNotFound) as err:
        coll.get(b"k")
    assert isinstance(err.value, KeyError) and isinstance(err.value, KVError)
    assert err.value.collection == "fresh" and err.value.key == b"k"
    assert "b'k'" in str(err.value) and "'fresh'" in str(err.value)
    coll.put(b"k", b"v")
    again = sectorhooks_kv_store.open_collection("fresh")
    assert again.get(b"k") == b"v"


def test_collections_are_separate(sectorhooks_kv_store: Any) -> None:
    a, b = sectorhooks_kv_store.open_collection("a"), sectorhooks_kv_store.open_collection("a.b")
    ab = sectorhooks_kv_store.open_collection("ab")
    a.put(b"x", b"1")
    b.put(b"x", b"2")
    ab.put(b"", b"3")
    assert (a.get(b"x"), b.get(b"x"), ab.get(b"")) == (b"1", b"2", b"3")
    assert list(a.scan()) == [(b"x", b"1")]
    assert list(ab.scan()) == [(b"", b"3")]


def test_put_get_peek_delete(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("crud")
    coll.put(b"k1", b"v1")
    assert coll.get(b"k1") == b"v1" and coll.peek(b"k1") == b"v1"
    coll.put(b"k1", b"v2")
    assert coll.get(b"k1") == b"v2"
    coll.delete(b"k1")
    assert coll.peek(b"k1") is None
    with pytest.raises(KeyNotFound):
        coll.get(b"k1")
    coll.delete(b"k1")  # deleting a missing key is not an error
    coll.delete(b"never-there")
    assert list(coll.scan()) == []


def test_empty_and_binary_keys_and_values(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("bin")
    items = {
        b"": b"empty key",
        b"\x00": b"",
        b"\x00\x00": ALL_BYTES,
        ALL_BYTES: b"\x00" * 10,
        b"\xff": b"\xff\xfe",
        b"a\x00b": b"nul inside",
        b"a": b"\x80\x81 not utf-8",
        b"  ": b"trailing spaces  ",
    }
    for k, v in items.items():
        coll.put(k, v)
    for k, v in items.items():
        assert coll.get(k) == v, k
    assert coll.peek(b"\x00") == b""  # an empty value is a value, not a missing key
    assert list(coll.scan()) == model_scan(items)
    assert list(coll.scan(b"\x00")) == model_scan(items, b"\x00")
    assert list(coll.scan(b" ")) == [(b"  ", b"trailing spaces  ")]
    coll.delete(b"")
    assert coll.peek(b"") is None


def test_scan_is_in_byte_order_with_prefixes(sectorhooks_kv_store: Any) -> None:
    rng = random.Random(7)
    coll = sectorhooks_kv_store.open_collection("order")
    model: Dict[bytes, bytes] = {}
    alphabet = [b"\x00", b"\x01", b"A", b"a", b"b", b"\x7f", b"\x80", b"\xfe", b"\xff"]
    for _ in range(300):
        key = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
        model[key] = os.urandom(rng.randint(0, 20))
    store_many(sectorhooks_kv_store, "order", model)
    assert list(coll.scan()) == model_scan(model)
    for prefix in [b"", b"a", b"\x00", b"\xff", b"\xff\xff", b"a\xff", b"\x7f\x80", b"zzz", b"A\x00\x01"]:
        assert list(coll.scan(prefix)) == model_scan(model, prefix), prefix
        assert coll.view(lambda t, p=prefix: list(t.scan(p))) == model_scan(model, prefix), prefix
        assert coll.update(lambda t, p=prefix: list(t.scan(p))) == model_scan(model, prefix), prefix


def store_many(store: Any, name: str, items: Dict[bytes, bytes]) -> None:
    """Write ``items`` in one update."""

    def fn(t: Any) -> None:
        for k, v in items.items():
            t.put(k, v)

    store.open_collection(name).update(fn)


def test_long_scans_cross_pages(sectorhooks_kv_store: Any) -> None:
    model = {b"p%05d" % i: b"v%d" % i for i in range(3000)}
    model.update({b"q%04d" % i: b"" for i in range(50)})
    store_many(sectorhooks_kv_store, "long", model)
    coll = sectorhooks_kv_store.open_collection("long")
    assert list(coll.scan(b"p")) == model_scan(model, b"p")
    assert list(coll.scan()) == model_scan(model)
    assert coll.view(lambda t: sum(1 for _ in t.scan(b"p"))) == 3000


def test_scan_can_be_closed_early(sectorhooks_kv_store: Any) -> None:
    model = {b"k%04d" % i: b"v" for i in range(1000)}
    store_many(sectorhooks_kv_store, "early", model)
    coll = sectorhooks_kv_store.open_collection("early")
    for _ in range(30):  # leaking a connection per closed scan would exhaust the pool
        it = coll.scan(b"k")
        assert [next(it)[0] for _ in range(3)] == [b"k0000", b"k0001", b"k0002"]
        it.close()
        with pytest.raises(StopIteration):
            next(it)

    def in_txn(t: Any) -> List[bytes]:
        it = t.scan(b"k0")
        first = [next(it)[0] for _ in range(2)]
        it.close()
        t.put(b"after", b"close")
        return first

    assert coll.update(in_txn) == [b"k0000", b"k0001"]
    assert coll.get(b"after") == b"close"
    assert coll.view(lambda t: next(iter(t.scan(b"k09")))) == (b"k0900", b"v")


# --- paged scans: scan(prefix, after=, limit=) ------------------------------------------------
# Run on the store as the host runs it: a plugin whose scan predates after/limit is paged by the
# host (sectorhooks.kv.paged_store), so it keeps these contracts too, only slower.


Items = List[Tuple[bytes, bytes]]


def paged_scan(
    model: Dict[bytes, bytes], prefix: bytes, after: Optional[bytes], limit: Optional[int]
) -> Items:
    """What ``scan(prefix, after=after, limit=limit)`` must return for a collection holding ``model``."""
    items = [(k, v) for k, v in model_scan(model, prefix) if after is None or k > after]
    return items if limit is None else items[:limit]


def scan_ways(store: Any, name: str) -> Dict[str, Callable[..., Items]]:
    """``scan(prefix, after=, limit=)`` as a list: plain, in a view and in an update."""
    coll = store.open_collection(name)
    return {
        "plain": lambda p, **kw: list(coll.scan(p, **kw)),
        "view": lambda p, **kw: coll.view(lambda t: list(t.scan(p, **kw))),
        "update": lambda p, **kw: coll.update(lambda t: list(t.scan(p, **kw))),
        "store view": lambda p, **kw: store.view(lambda st: list(st.collection(name).scan(p, **kw))),
    }


PAGED_MODEL = {
    b"": b"empty key",
    b"\x00": b"nul",
    b"\x00\x00": b"",
    b"a": b"1",
    b"a\x00": b"2",
    b"a\xff": b"3",
    b"ab": b"4",
    b"abc": b"5",
    b"b": b"6",
    b"\xff": b"7",
    b"\xff\xff": b"8",
}


def test_paged_scan_after_and_limit_edges(sectorhooks_kv_store: Any) -> None:
    store = paged_store(sectorhooks_kv_store)
    store_many(store, "paged", PAGED_MODEL)
    cases: List[Tuple[bytes, Optional[bytes], Optional[int]]] = [
        (b"", None, None),
        (b"", None, 0),
        (b"", None, 1),
        (b"", None, 3),
        (b"", None, 100),  # more than there is
        (b"", b"", None),  # the empty key is excluded, nothing else
        (b"", b"", 1),
        (b"", b"a", 2),  # an existing key: excluded
        (b"", b"a\x01", None),  # between two keys
        (b"", b"\xff", None),
        (b"", b"\xff\xff", None),  # the last key: nothing after it
        (b"", b"\xff\xff\xff", 5),  # beyond the end
        (b"a", None, 2),
        (b"a", b"", None),  # after sorts before the prefix: from the prefix's first key
        (b"a", b"a", None),
        (b"a", b"a\x00", 1),
        (b"a", b"ab", None),
        (b"a", b"abc", None),  # the prefix's last key
        (b"a", b"a\xff\xff", None),
        (b"a", b"b", None),  # after sorts past every key of the prefix
        (b"a", b"zz", 3),
        (b"\x00", b"\x00", None),
        (b"\xff", b"\xff", 1),
        (b"\xff\xff", None, None),
        (b"none", b"n", 4),  # nothing has the prefix
    ]
    for way, scan in scan_ways(store, "paged").items():
        for prefix, after, limit in cases:
            want = paged_scan(PAGED_MODEL, prefix, after, limit)
            assert scan(prefix, after=after, limit=limit) == want, (way, prefix, after, limit)
    coll = store.open_collection("paged")
    assert list(coll.scan(after=b"a")) == paged_scan(PAGED_MODEL, b"", b"a", None)  # keywords alone
    assert list(coll.scan(limit=2)) == [(b"", b"empty key"), (b"\x00", b"nul")]


def test_paged_scan_sees_the_writes_of_its_transaction(sectorhooks_kv_store: Any) -> None:
    store = paged_store(sectorhooks_kv_store)
    store_many(store, "paged-rw", {b"k%d" % i: b"old" for i in range(10)})

    def fn(t: Any) -> Items:
        t.put(b"k15", b"new")  # after the cursor: seen
        t.put(b"k0", b"changed")  # before it: not
        t.delete(b"k3")
        t.delete(b"k4")
        return list(t.scan(b"k", after=b"k2", limit=3))

    assert store.open_collection("paged-rw").update(fn) == [(b"k5", b"old"), (b"k6", b"old"), (b"k7", b"old")]
    got = store.open_collection("paged-rw").update(lambda t: list(t.scan(b"k", after=b"k1", limit=2)))
    assert got == [(b"k15", b"new"), (b"k2", b"old")]


def test_paged_scan_refuses_bad_after_and_limit(sectorhooks_kv_store: Any) -> None:
    store = paged_store(sectorhooks_kv_store)
    coll = store.open_collection("paged-bad")
    coll.put(b"k", b"v")
    for way, scan in scan_ways(store, "paged-bad").items():
        with pytest.raises(TypeError, match="keys are bytes"):
            scan(b"", after="k")
        with pytest.raises(ValueError, match="MAX_KEY_SIZE"):
            scan(b"", after=b"x" * (MAX_KEY_SIZE + 1))
        for bad in (1.5, "2", True):
            with pytest.raises(TypeError, match="limit"):
                scan(b"", limit=bad)
        with pytest.raises(ValueError, match="limit"):
            scan(b"", limit=-1)
        assert scan(b"", after=bytearray(b""), limit=1) == [(b"k", b"v")], way


def test_paged_scan_of_a_long_collection_reads_a_page(sectorhooks_kv_store: Any) -> None:
    store = paged_store(sectorhooks_kv_store)
    model = {b"p%05d" % i: b"v%d" % i for i in range(5000)}
    store_many(store, "paged-long", model)
    coll = store.open_collection("paged-long")
    assert list(coll.scan(b"p", after=b"p02999", limit=3)) == [
        (b"p03000", b"v3000"),
        (b"p03001", b"v3001"),
        (b"p03002", b"v3002"),
    ]
    assert list(coll.scan(b"p", after=b"p04990")) == model_scan(model, b"p")[-9:]
    assert len(list(coll.scan(b"p", limit=4500))) == 4500
    assert coll.view(lambda t: len(list(t.scan(b"p", after=b"p00999", limit=2500)))) == 2500


def walk_pages(scan: Callable[..., Items], prefix: bytes, size: int) -> Items:
    """Every item of ``prefix`` through pages of ``size``, each starting after the last key."""
    out: Items = []
    after: Optional[bytes] = None
    while True:
        page = scan(prefix, after=after, limit=size)
        assert len(page) <= size
        assert after is None or all(k > after for k, _ in page)
        out.extend(page)
        if len(page) < size:
            return out
        after = page[-1][0]


def test_a_walk_of_pages_equals_the_full_scan(sectorhooks_kv_store: Any) -> None:
    hypothesis = pytest.importorskip("hypothesis", reason="the page-walk property needs hypothesis")
    st = hypothesis.strategies
    store = paged_store(sectorhooks_kv_store)
    keys = st.binary(max_size=4).map(lambda b: bytes(b"a\x00\xff"[x % 3] for x in b))
    collections = iter(range(1_000_000))

    def check(
        model: Dict[bytes, bytes],
        prefix: bytes,
        size: int,
        way: str,
        after: Optional[bytes],
        limit: Optional[int],
    ) -> None:
        name = f"walk{next(collections)}"
        store_many(store, name, model)
        scan = scan_ways(store, name)[way]
        assert walk_pages(scan, prefix, size) == scan(prefix) == model_scan(model, prefix)
        assert scan(prefix, after=after, limit=limit) == paged_scan(model, prefix, after, limit)

    given = hypothesis.given(
        model=st.dictionaries(keys, st.binary(max_size=3), max_size=25),
        prefix=st.sampled_from([b"", b"a", b"\x00", b"\xff", b"a\xff"]),
        size=st.integers(1, 6),
        way=st.sampled_from(["plain", "view", "update", "store view"]),
        after=st.one_of(st.none(), keys),
        limit=st.one_of(st.none(), st.integers(0, 8)),
    )
    hypothesis.settings(max_examples=30, deadline=None, database=None)(given(check))()


def test_large_values_1mib(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("large")
    big = os.urandom(1 << 20)
    coll.put(b"big", big)
    assert coll.get(b"big") == big
    big2 = os.urandom(1 << 20)
    coll.update(lambda t: t.put(b"big2", big2))
    assert coll.view(lambda t: t.get(b"big2")) == big2
    assert list(coll.scan()) == [(b"big", big), (b"big2", big2)]
    # 24 MiB in one transaction: more than sqlkv buffers and rediskv puts in one command.
    many = {b"many%02d" % i: os.urandom(1 << 20) for i in range(24)}
    coll.update(lambda t: [t.put(k, v) for k, v in many.items()])
    assert dict(coll.scan(b"many")) == many


def test_update_commits_and_returns_fn_result(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("upd")

    def fn(t: Any) -> str:
        t.put(b"a", b"1")
        t.put(b"b", b"2")
        return "result"

    assert coll.update(fn) == "result"
    assert coll.view(lambda t: (t.get(b"a"), t.get(b"b"))) == (b"1", b"2")


class Boom(Exception):
    pass


def test_update_that_raises_writes_nothing(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("raise")
    coll.put(b"keep", b"old")
    coll.put(b"gone", b"still here")
    boom = Boom("fn failed")

    def fn(t: Any) -> None:
        t.put(b"new", b"x")
        t.put(b"keep", b"changed")
        t.delete(b"gone")
        for i in range(6000):  # more than sqlkv's FLUSH_AT: some writes reach the server first
            t.put(b"bulk%05d" % i, b"x")
        assert list(t.scan(b"bulk00000")) == [(b"bulk00000", b"x")]  # and a scan flushes the rest
        raise boom

    with pytest.raises(Boom) as err:
        coll.update(fn)
    assert err.value is boom  # the same exception object reaches the caller
    assert sorted(coll.scan()) == [(b"gone", b"still here"), (b"keep", b"old")]


def test_read_your_writes_inside_update(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("ryw")
    store_many(sectorhooks_kv_store, "ryw", {b"a1": b"s", b"a2": b"s", b"a3": b"s", b"b": b"s"})

    def fn(t: Any) -> None:
        assert t.peek(b"a0") is None
        t.put(b"a0", b"new")
        assert t.get(b"a0") == b"new"
        t.put(b"a2", b"changed")
        t.delete(b"a3")
        assert t.peek(b"a3") is None
        with pytest.raises(KeyNotFound):
            t.get(b"a3")
        t.put(b"a9", b"late")
        assert list(t.scan(b"a")) == [(b"a0", b"new"), (b"a1", b"s"), (b"a2", b"changed"), (b"a9", b"late")]
        t.delete(b"a0")
        t.put(b"a3", b"back")
        assert list(t.scan(b"a")) == [(b"a1", b"s"), (b"a2", b"changed"), (b"a3", b"back"), (b"a9", b"late")]
        assert t.get(b"b") == b"s"

    coll.update(fn)
    assert list(coll.scan()) == [
        (b"a1", b"s"),
        (b"a2", b"changed"),
        (b"a3", b"back"),
        (b"a9", b"late"),
        (b"b", b"s"),
    ]


def test_delete_while_scanning_in_update(sectorhooks_kv_store: Any) -> None:
    model = {b"log/%04d" % i: b"e" for i in range(700)}
    model[b"other"] = b"keep"
    store_many(sectorhooks_kv_store, "trim", model)
    coll = sectorhooks_kv_store.open_collection("trim")

    def trim(t: Any) -> int:
        n = 0
        for key, _ in t.scan(b"log/"):
            t.delete(key)
            n += 1
        return n

    assert coll.update(trim) == 700
    assert list(coll.scan()) == [(b"other", b"keep")]


def test_store_update_spans_collections_atomically(sectorhooks_kv_store: Any) -> None:
    def write(st: Any) -> None:
        st.collection("sectors").put(b"s1", b"state-v2")
        st.collection("sync.log").put(b"0001", b"s1 -> v2")

    sectorhooks_kv_store.update(write)
    got = sectorhooks_kv_store.view(
        lambda st: (st.collection("sectors").get(b"s1"), st.collection("sync.log").get(b"0001"))
    )
    assert got == (b"state-v2", b"s1 -> v2")

    def write_then_fail(st: Any) -> None:
        st.collection("sectors").put(b"s1", b"state-v3")
        st.collection("sync.log").put(b"0002", b"s1 -> v3")
        raise Boom()

    with pytest.raises(Boom):
        sectorhooks_kv_store.update(write_then_fail)
    assert sectorhooks_kv_store.open_collection("sectors").get(b"s1") == b"state-v2"
    assert list(sectorhooks_kv_store.open_collection("sync.log").scan()) == [(b"0001", b"s1 -> v2")]


def test_view_is_read_only(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("ro")
    with pytest.raises(KVError, match="read-only"):
        coll.view(lambda t: t.put(b"k", b"v"))
    with pytest.raises(KVError, match="read-only"):
        sectorhooks_kv_store.view(lambda st: st.collection("ro").delete(b"k"))
    assert coll.peek(b"k") is None


def test_txn_is_unusable_after_fn_returns(sectorhooks_kv_store: Any) -> None:
    coll = sectorhooks_kv_store.open_collection("late")
    coll.put(b"k", b"v")
    kept = coll.update(lambda t: t)
    with pytest.raises(KVError, match="finished"):
        kept.put(b"k2", b"v")
    with pytest.raises(KVError, match="finished"):
        kept.get(b"k")
    assert coll.peek(b"k2") is None


def test_invalid_names_keys_and_values_are_rejected(sectorhooks_kv_store: Any) -> None:
    for bad in ["", "has space", "a:b", "x" * 129, "ünï"]:
        with pytest.raises(ValueError, match="collection name"):
            sectorhooks_kv_store.open_collection(bad)
    with pytest.raises(TypeError):
        sectorhooks_kv_store.open_collection(b"bytes")
    coll = sectorhooks_kv_store.open_collection("valid_Name-1.2/x")
    with pytest.raises(TypeError, match="keys are bytes"):
        coll.put("text", b"v")
    with pytest.raises(TypeError, match="values are bytes"):
        coll.put(b"k", "text")
    with pytest.raises(TypeError):
        coll.put(b"k", None)
    with pytest.raises(ValueError, match="MAX_KEY_SIZE"):
        coll.put(b"x" * (MAX_KEY_SIZE + 1), b"v")
    with pytest.raises(ValueError, match="MAX_KEY_SIZE"):
        coll.update(lambda t: t.put(b"x" * (MAX_KEY_SIZE + 1), b"v"))
    longest = b"\xff" * MAX_KEY_SIZE
    coll.put(longest, b"fits")
    coll.put(bytearray(b"ba"), memoryview(b"mv"))
    assert coll.get(longest) == b"fits" and coll.get(b"ba") == b"mv"
    assert [k for k, _ in coll.scan()] == [b"ba", longest]


def test_many_writes_in_one_update(sectorhooks_kv_store: Any) -> None:
    model = {b"m%06d" % i: b"%d" % i for i in range(12000)}
    store_many(sectorhooks_kv_store, "many", model)
    coll = sectorhooks_kv_store.open_collection("many")
    assert coll.view(lambda t: sum(1 for _ in t.scan())) == 12000
    assert coll.get(b"m011999") == b"11999"


@pytest.mark.parametrize("count", [1, 3, 512, 513, 1300])
def test_many_deletes_in_one_update_remove_exactly_those_keys(sectorhooks_kv_store: Any, count: int) -> None:
    """Deletes of one transaction (a log trim deletes thousands) remove exactly the keys named,
    in that collection only, whatever their number (SQLite batches them in IN lists)."""
    keys = [b"d%05d" % i for i in range(1500)]
    gone = set(random.Random(count).sample(keys, count))
    for name in ("dels", "dels-twin"):
        store_many(sectorhooks_kv_store, name, {k: k.upper() for k in keys})

    def drop(t: StoreTxn) -> None:
        c = t.collection("dels")
        for k in sorted(gone, reverse=True):  # any order, some twice
            c.delete(k)
        c.delete(min(gone))

    sectorhooks_kv_store.update(drop)
    left = dict(sectorhooks_kv_store.open_collection("dels").scan())
    assert left == {k: k.upper() for k in keys if k not in gone}
    assert len(dict(sectorhooks_kv_store.open_collection("dels-twin").scan())) == 1500  # same keys, untouched


# --- isolation -------------------------------------------------------------------------


def test_racing_increments_are_serialized(
    sectorhooks_kv_store: Any, sectorhooks_target: PluginUnderTest
) -> None:
    """T1 reads, T2 increments meanwhile: T2 waits for T1 (locking backends), or T2 commits and
    T1 conflicts and is retried (optimistic ones). Either way the counter ends at 2."""
    backend, locking = sectorhooks_target.name, sectorhooks_target.traits.locking
    coll = sectorhooks_kv_store.open_collection("race")
    coll.put(b"n", b"0")
    t2_done = threading.Event()
    t2_error: List[BaseException] = []
    conflicts: List[int] = []
    state = {"first": True, "t2_finished_while_t1_open": False}

    def increment(t: Any) -> None:
        t.put(b"n", b"%d" % (int(t.get(b"n")) + 1))

    def t2() -> None:
        try:
            retry_update(coll, increment, RetryPolicy(attempts=50, max_seconds=30))
        except BaseException as exc:  # pragma: no cover - reported below
            t2_error.append(exc)
        finally:
            t2_done.set()

    def t1(t: Any) -> None:
        value = int(t.get(b"n"))
        if state["first"]:
            state["first"] = False
            threading.Thread(target=t2, daemon=True).start()
            # Locking backends: T2 cannot finish while T1 is open, so this wait must time out.
            wait = 0.5 if locking else 30 if locking is False else 5
            state["t2_finished_while_t1_open"] = t2_done.wait(wait)
        t.put(b"n", b"%d" % (value + 1))

    retry_update(
        coll, t1, RetryPolicy(attempts=50, max_seconds=30), on_conflict=lambda a, e: conflicts.append(a)
    )
    assert t2_done.wait(30), "T2 never finished"
    assert not t2_error, t2_error
    assert coll.get(b"n") == b"2"  # no lost update either way
    if locking is None:  # not declared: whichever it did, it must be one of the two
        locking = not state["t2_finished_while_t1_open"]
    if locking:
        assert not state["t2_finished_while_t1_open"], f"{backend}: T2 committed while T1 held the key"
        assert not conflicts, f"{backend}: T2 waited for T1, yet T1 conflicted"
    else:
        assert state["t2_finished_while_t1_open"], f"{backend}: T2 was blocked by T1's read"
        assert conflicts, f"{backend}: T2 committed under T1's read but T1 did not conflict"


def test_view_sees_a_snapshot_or_conflicts(
    sectorhooks_kv_store: Any, sectorhooks_target: PluginUnderTest
) -> None:
    traits = sectorhooks_target.traits
    kv_store = sectorhooks_kv_store
    coll = kv_store.open_collection("snap")
    store_many(kv_store, "snap", {b"a": b"1", b"b": b"1"})
    writer_done = threading.Event()

    def writer() -> None:
        kv_store.update(
            lambda st: (st.collection("snap").put(b"a", b"2"), st.collection("snap").put(b"b", b"2"))
        )
        writer_done.set()

    def read(t: Any) -> Tuple[Optional[bytes], Optional[bytes], Optional[bool]]:
        first = t.get(b"a")
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        wait = 0.3 if traits.view_blocks_writers else 10 if traits.view_blocks_writers is False else 3
        finished: Optional[bool] = writer_done.wait(wait)
        return first, t.get(b"b"), finished

    if traits.snapshots is False:  # no snapshots: the view proves consistency or fails
        with pytest.raises(TransactionConflict):
            coll.view(read)
    else:
        try:
            a, b, finished = coll.view(read)
        except TransactionConflict:
            if traits.snapshots:
                raise
        else:
            assert (a, b) == (b"1", b"1"), "the view saw a write made after it started"
            if traits.view_blocks_writers:
                assert not finished, f"{sectorhooks_target.name} let a writer in during a view"
    assert writer_done.wait(10)
    assert coll.view(lambda t: (t.get(b"a"), t.get(b"b"))) == (b"2", b"2")


# --- processes -------------------------------------------------------------------------

#: Increments each of the two processes makes in the multi-process contract.
PROCESS_INCREMENTS = 40
#: Bound on each step of the multi-process contract (loading the plugin in the child included).
PROCESS_STEP_SECONDS = 60.0
_CHILD_MARKER = "sectorhooks-kv-child"


class _Child:
    """The second process (:mod:`sectorhooks.testing.kv_child`): its reports, its input, its end."""

    def __init__(self, spec: Dict[str, Any], stderr: IO[str]):
        env = dict(os.environ)  # the child imports what this process imports
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        self.stderr = stderr
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sectorhooks.testing.kv_child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        )
        self.reports: queue.Queue[Optional[Dict[str, Any]]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(_CHILD_MARKER + " "):
                self.reports.put(json.loads(line[len(_CHILD_MARKER) + 1 :]))
        self.reports.put(None)  # end of output: the child exited

    def why(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return f"exit status {self.proc.poll()}, stderr:\n{self.stderr.read()[-4000:]}"

    def expect(self, step: str) -> Dict[str, Any]:
        try:
            report = self.reports.get(timeout=PROCESS_STEP_SECONDS)
        except queue.Empty:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the second process sent no {step!r} in {PROCESS_STEP_SECONDS:.0f} s; {self.why()}")
        if report is None:
            self.proc.wait(PROCESS_STEP_SECONDS)
            pytest.fail(f"the second process exited before sending {step!r}; {self.why()}")
        if report.get("step") != step:
            pytest.fail(f"the second process sent {report!r} instead of {step!r}; {self.why()}")
        return report

    def send(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def join(self) -> None:
        try:
            self.proc.wait(PROCESS_STEP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the second process did not exit in {PROCESS_STEP_SECONDS:.0f} s; {self.why()}")
        if self.proc.returncode != 0:
            pytest.fail(f"the second process failed: {self.why()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def test_two_processes_share_the_store(
    sectorhooks_kv_store: Any, sectorhooks_target: PluginUnderTest, tmp_path: Path
) -> None:
    """While this process holds the store open, a second one loads the same plugin directory with
    the same Meta through the host's loader and opens it too (as ``sectorhooks token create`` does
    while ``serve`` runs). Each sees the other's write on a fresh read; then, started together
    through a barrier, both run racing increments of one counter through ``update``: no update
    is lost and both end up seeing every write."""
    traits = sectorhooks_target.traits
    if traits.process_local is not None:
        pytest.skip(f"{sectorhooks_target.name}: {traits.process_local}")
    name, n = sectorhooks_target.name, PROCESS_INCREMENTS
    coll = sectorhooks_kv_store.open_collection("procs")
    coll.put(b"parent/hello", b"1")
    coll.put(b"n", b"0")
    spec = {
        "path": str(sectorhooks_target.path),
        "meta": dict(sectorhooks_target.for_test(tmp_path).meta),
        "data_dir": str(tmp_path / "kv-child-data"),
        "collection": "procs",
        "increments": n,
        "marker": _CHILD_MARKER,
    }
    with (tmp_path / "kv-child.stderr").open("w+", encoding="utf-8") as stderr:
        child = _Child(spec, stderr)
        try:
            ready = child.expect("ready")
            assert ready["parent_hello"] == b"1".hex(), (
                f"{name}: a second process opening the store does not see this process's write "
                f"(it read {ready['parent_hello']!r} for parent/hello)"
            )
            assert coll.peek(b"child/hello") == b"1", (
                f"{name}: this process does not see the second process's write on a fresh read"
            )
            child.send("go")  # the barrier: both increment from here
            started = time.monotonic()
            for i in range(n):
                retry_update(coll, increment(b"parent", i), POLICY)
            child.expect("done")
            elapsed = time.monotonic() - started
            child.send("check")
            saw = child.expect("saw")
            child.join()
        finally:
            child.stop()
    got = coll.peek(b"n")
    assert got == b"%d" % (2 * n), (
        f"{name}: two processes made {n} increments each through update() but the counter is "
        f"{got!r}: updates were lost between processes ({elapsed:.1f} s)"
    )
    keys = [k for k, _ in coll.scan()]
    assert sum(1 for k in keys if k.startswith(b"parent/")) == n + 1, f"{name}: this process lost its writes"
    assert sum(1 for k in keys if k.startswith(b"child/")) == n + 1, (
        f"{name}: this process does not see every write of the second process"
    )
    values = sorted(int(v) for k, v in coll.scan() if b"/" in k and not k.endswith(b"/hello"))
    assert values == list(range(1, 2 * n + 1)), f"{name}: two increments saw the same counter value"
    assert saw == {"step": "saw", "n": got.hex(), "parent_keys": n + 1, "child_keys": n + 1}, (
        f"{name}: the second process does not see every write at the end: {saw}"
    )
