"""Hypothesis state machine: every backend against a plain dict over random operation sequences.

Keys come from a small alphabet (``b""``, ``\\x00``, ``\\xff``, and pairs like ``a``/``b`` so that
a key often equals a prefix's upper bound) so that prefixes, overwrites and byte-order edge cases
collide often. Transactions mix puts, deletes, reads and scans, check read-your-writes inside,
and sometimes raise at the end (then nothing may change).
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Tuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from sectorhooks_spec.errors import KeyNotFound

# Pairs (x, x+1) so that a key often equals a prefix's upper bound (``a`` -> ``b``), plus 0xff.
KEYS = st.lists(st.sampled_from([b"\x00", b"\x01", b"a", b"b", b"\xfe", b"\xff"]), max_size=3).map(b"".join)
VALUES = st.binary(max_size=12)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, VALUES),
        st.tuples(st.just("delete"), KEYS, st.none()),
        st.tuples(st.just("get"), KEYS, st.none()),
        st.tuples(st.just("scan"), KEYS, st.none()),
    ),
    max_size=6,
)
_names = itertools.count()


class Abort(Exception):
    """Raised by a transaction function to roll it back."""


def scan_model(model: Dict[bytes, bytes], prefix: bytes) -> List[Tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in model.items() if k.startswith(prefix))


class KVMachine(RuleBasedStateMachine):
    """One example = fresh collections on the shared store, compared with dicts after each step."""

    store: Any = None

    def __init__(self) -> None:
        super().__init__()
        n = next(_names)
        self.names = (f"sm{n}a", f"sm{n}b")
        self.models: Dict[str, Dict[bytes, bytes]] = {name: {} for name in self.names}

    @initialize()
    def start_empty(self) -> None:
        for name in self.names:
            assert list(self.store.open_collection(name).scan()) == []

    def coll(self, second: bool) -> Tuple[Any, Dict[bytes, bytes]]:
        name = self.names[int(second)]
        return self.store.open_collection(name), self.models[name]

    @rule(key=KEYS, value=VALUES, second=st.booleans())
    def put(self, key: bytes, value: bytes, second: bool) -> None:
        coll, model = self.coll(second)
        coll.put(key, value)
        model[key] = value

    @rule(key=KEYS, second=st.booleans())
    def delete(self, key: bytes, second: bool) -> None:
        coll, model = self.coll(second)
        coll.delete(key)
        model.pop(key, None)

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        coll, model = self.coll(False)
        assert coll.peek(key) == model.get(key)
        if key in model:
            assert coll.get(key) == model[key]
        else:
            try:
                coll.get(key)
            except KeyNotFound:
                pass
            else:
                raise AssertionError(f"get({key!r}) of a missing key did not raise KeyNotFound")

    @rule(prefix=KEYS, second=st.booleans(), stop_after=st.integers(0, 3))
    def scan(self, prefix: bytes, second: bool, stop_after: int) -> None:
        coll, model = self.coll(second)
        expected = scan_model(model, prefix)
        assert list(coll.scan(prefix)) == expected
        it = coll.scan(prefix)  # and a scan closed early
        head = list(itertools.islice(it, stop_after))
        it.close()
        assert head == expected[:stop_after]

    @rule(ops=OPS, fail=st.booleans(), second=st.booleans())
    def transaction(self, ops: List[tuple], fail: bool, second: bool) -> None:
        coll, model = self.coll(second)
        overlay = dict(model)

        def fn(t: Any) -> None:
            for op, key, value in ops:
                apply_op(t, overlay, op, key, value)
            assert list(t.scan()) == scan_model(overlay, b"")
            if fail:
                raise Abort()

        try:
            coll.update(fn)
        except Abort:
            assert fail
        else:
            assert not fail
            model.clear()
            model.update(overlay)

    @rule(ops_a=OPS, ops_b=OPS, fail=st.booleans())
    def store_transaction(self, ops_a: List[tuple], ops_b: List[tuple], fail: bool) -> None:
        overlays = {name: dict(self.models[name]) for name in self.names}

        def fn(txn: Any) -> None:
            for name, ops in zip(self.names, (ops_a, ops_b)):
                t = txn.collection(name)
                for op, key, value in ops:
                    apply_op(t, overlays[name], op, key, value)
            if fail:
                raise Abort()

        try:
            self.store.update(fn)
        except Abort:
            assert fail
        else:
            assert not fail
            for name in self.names:
                self.models[name] = overlays[name]

    @rule(prefix=KEYS)
    def view(self, prefix: bytes) -> None:
        def fn(txn: Any) -> list:
            return [list(txn.collection(name).scan(prefix)) for name in self.names]

        assert self.store.view(fn) == [scan_model(self.models[name], prefix) for name in self.names]

    @invariant()
    def sizes_match(self) -> None:
        coll, model = self.coll(False)
        assert sum(1 for _ in coll.scan()) == len(model)


def apply_op(t: Any, overlay: Dict[bytes, bytes], op: str, key: bytes, value: Optional[bytes]) -> None:
    """Run one op inside a transaction and check it against the transaction's own view."""
    if op == "put":
        t.put(key, value)
        overlay[key] = value
        assert t.get(key) == value
    elif op == "delete":
        t.delete(key)
        overlay.pop(key, None)
        assert t.peek(key) is None
    elif op == "get":
        assert t.peek(key) == overlay.get(key)
    else:
        assert list(t.scan(key)) == scan_model(overlay, key)


def test_backend_matches_a_dict(kv_store: Any, backend: str) -> None:
    machine = type(f"KVMachine_{backend.replace('-', '_')}", (KVMachine,), {"store": kv_store})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            derandomize=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
