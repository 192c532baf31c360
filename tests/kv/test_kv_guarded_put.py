"""The optional ``GuardedPut`` capability (``put_many_if``): sqlkv on SQLite and on both servers.

SQLite runs it as one autocommit statement; the servers (and batches too big for one SQLite
statement) as an ``update`` transaction. Every way must write all items or none, decided by the
guard key alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv import kvplugins
from sectorhooks.kv import RetryingKVStore, guarded_put
from sectorhooks_spec import GuardedPut
from sectorhooks_spec.backend import MAX_PARAMS

SQLKV = ("sqlkv-sqlite", "sqlkv-postgresql", "sqlkv-mariadb")
ALL_SQLKV = pytest.mark.parametrize("backend", SQLKV)  # overrides conftest's every-backend fixture


def sqlite_store(where: Path) -> Any:
    return kvplugins.open_store("sqlkv", {"url": f"sqlite:///{where / 'kv.sqlite3'}"})


def snapshot(store: Any, keys: List[Tuple[str, bytes]]) -> Dict[Tuple[str, bytes], Optional[bytes]]:
    return store.view(lambda t: {(c, k): t.collection(c).peek(k) for c, k in keys})  # type: ignore[no-any-return]


@ALL_SQLKV
def test_writes_every_item_or_none_as_the_guard_says(kv_store: Any) -> None:
    sqlkv = kv_store
    keys = [("meta", b"head"), ("a", b"1"), ("a", b"2"), ("b", b"1")]
    assert isinstance(sqlkv, GuardedPut)
    # No guard key yet: None matches it, a value does not.
    assert sqlkv.put_many_if(("meta", b"head", b"0"), [("a", b"1", b"x")]) is False
    assert snapshot(sqlkv, keys) == dict.fromkeys(keys)
    assert sqlkv.put_many_if(("meta", b"head", None), [("a", b"1", b"x"), ("meta", b"head", b"1")]) is True
    assert snapshot(sqlkv, keys) == {**dict.fromkeys(keys), ("meta", b"head"): b"1", ("a", b"1"): b"x"}
    # A stale guard writes nothing, not even the items before the guard row.
    before = snapshot(sqlkv, keys)
    assert sqlkv.put_many_if(("meta", b"head", None), [("b", b"1", b"y"), ("meta", b"head", b"2")]) is False
    assert sqlkv.put_many_if(("meta", b"head", b"0"), [("b", b"1", b"y")]) is False
    assert snapshot(sqlkv, keys) == before
    # Across collections, overwriting, a key given twice keeps its last value.
    items = [("a", b"1", b"x2"), ("a", b"2", b"first"), ("b", b"1", b""), ("a", b"2", b"last")]
    assert sqlkv.put_many_if(("meta", b"head", b"1"), [*items, ("meta", b"head", b"2")]) is True
    assert snapshot(sqlkv, keys) == {
        ("meta", b"head"): b"2",
        ("a", b"1"): b"x2",
        ("a", b"2"): b"last",
        ("b", b"1"): b"",
    }
    # No items: only the answer.
    assert sqlkv.put_many_if(("meta", b"head", b"2"), []) is True
    assert sqlkv.put_many_if(("meta", b"head", b"1"), []) is False


@ALL_SQLKV
def test_bad_names_keys_and_values_are_refused_before_anything_is_written(kv_store: Any) -> None:
    sqlkv = kv_store
    with pytest.raises((TypeError, ValueError)):
        sqlkv.put_many_if(("meta", b"head", None), [("a", b"1", b"x"), ("bad name!", b"k", b"v")])
    with pytest.raises((TypeError, ValueError)):
        sqlkv.put_many_if(("meta", b"head", None), [("a", b"1", "not bytes")])
    with pytest.raises((TypeError, ValueError)):
        sqlkv.put_many_if(("meta", "head", None), [("a", b"1", b"x")])
    assert snapshot(sqlkv, [("a", b"1")]) == {("a", b"1"): None}


def test_more_items_than_one_sqlite_statement_takes_are_still_all_or_nothing(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    try:
        n = MAX_PARAMS // 3 + 10
        items = [("bulk", b"%06d" % i, b"v%d" % i) for i in range(n)]
        assert store.put_many_if(("meta", b"g", b"nope"), items) is False
        assert store.view(lambda t: t.collection("bulk").peek(b"000000")) is None
        assert store.put_many_if(("meta", b"g", None), items) is True
        got = store.view(lambda t: list(t.collection("bulk").scan()))
        assert len(got) == n and got[-1] == (b"%06d" % (n - 1), b"v%d" % (n - 1))
    finally:
        store.close()


def test_the_host_finds_the_capability_through_its_retrying_wrapper(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    memdb = kvplugins.open_store("memdb", {})
    try:
        assert guarded_put(RetryingKVStore(store)) is store and guarded_put(store) is store
        assert guarded_put(RetryingKVStore(memdb)) is None  # no capability: update() only
    finally:
        store.close()
        memdb.close()


KEYS = st.sampled_from([("a", b"1"), ("a", b"2"), ("b", b"1"), ("g", b"g")])
VALUES = st.sampled_from([b"", b"x", b"y", b"zz"])
CALLS = st.lists(
    st.tuples(st.one_of(st.none(), VALUES), st.lists(st.tuples(KEYS, VALUES), max_size=5)), max_size=12
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=CALLS)
def test_sqlite_guarded_puts_match_a_dict_model(tmp_path_factory: pytest.TempPathFactory, calls: Any) -> None:
    store = sqlite_store(tmp_path_factory.mktemp("gp"))
    model: Dict[Tuple[str, bytes], bytes] = {}
    try:
        for expected, writes in calls:
            answer = store.put_many_if(("g", b"g", expected), [(c, k, v) for (c, k), v in writes])
            assert answer is (model.get(("g", b"g")) == expected)
            if answer:
                for key, value in writes:
                    model[key] = value
        keys = [("a", b"1"), ("a", b"2"), ("b", b"1"), ("g", b"g")]
        assert snapshot(store, keys) == {k: model.get(k) for k in keys}
    finally:
        store.close()
