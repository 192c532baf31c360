"""MetaReader: the one way a plugin checks its Meta table (sqlkv, rediskv, memdb, fsstore, sqlsync)."""

from __future__ import annotations

import math
import re
from typing import Any, Dict, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sectorhooks_spec import MetaError, MetaReader
from sectorhooks_spec.meta import REQUIRED

ON_OFF, TRUE_FALSE = MetaReader.ON_OFF, MetaReader.TRUE_FALSE
KNOWN = ("url", "pool_size", "timeout", "echo", "mode")


def error(meta: Any, known: Any = KNOWN, **kwargs: Any) -> MetaError:
    with pytest.raises(MetaError) as info:
        MetaReader("mykv", meta, known, **kwargs)
    return info.value


def test_a_meta_error_is_a_value_error_with_its_key() -> None:
    err = error({"pool_sise": 3})
    assert isinstance(err, ValueError) and err.key == "pool_sise"
    assert str(err) == (
        "plugin 'mykv' meta key 'pool_sise' ([Common.DB.Plugin.Meta] pool_sise) is unknown "
        "(did you mean 'pool_size'?)"
    )


@given(key=st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN))
def test_every_unknown_key_is_refused_naming_it(key: str) -> None:
    err = error({"url": "x", key: 1})
    assert err.key == key and f"meta key {key!r}" in str(err) and "is unknown (" in str(err)


def test_no_suggestion_lists_the_known_keys_and_a_plugin_without_keys_says_so() -> None:
    assert str(error({"zzz": 1})).endswith("is unknown (known keys: url, pool_size, timeout, echo, mode)")
    assert str(error({"url": 1}, known=())).endswith("is unknown (mykv takes no meta keys: remove it)")
    assert str(MetaReader("mykv", None, KNOWN).meta) == "{}"  # no table at all is an empty one


def test_a_removed_key_says_what_replaced_it_before_calling_it_unknown() -> None:
    err = error(
        {"worker": "process"}, where="x instance 'a'", removed={"worker": "[[Common.Syncers]] Isolation"}
    )
    assert str(err) == "x instance 'a': meta key 'worker' was removed: [[Common.Syncers]] Isolation"


def test_where_starts_every_message() -> None:
    r = MetaReader("sqlsync", {"batch_size": 0}, (*KNOWN, "batch_size"), where="sqlsync instance 'mirror-1'")
    with pytest.raises(MetaError) as info:
        r.integer("batch_size", 5, minimum=1, what="a positive integer")
    assert (
        str(info.value)
        == "sqlsync instance 'mirror-1': meta key 'batch_size' must be a positive integer, got 0"
    )


def test_dotted_names_keys_as_the_store_loader_maps_them() -> None:
    where = "plugin 'fs' store 's'"
    err = error(
        {"Bogus": 1, "Other": 2, "CreateDirs": True},
        ("SubDirPattern", "CreateDirs"),
        where=where,
        dotted=True,
    )
    assert (
        str(err)
        == "plugin 'fs' store 's': unknown Meta key(s) 'Bogus', 'Other'; mykv knows SubDirPattern, CreateDirs"
    )
    assert not re.search(r"\bMeta\.\w", str(err))  # the host points it at the Meta table, not at a key
    r = MetaReader("fs", {"CreateDirs": "yes"}, ("CreateDirs",), where=where, dotted=True)
    with pytest.raises(
        MetaError, match=r"^plugin 'fs' store 's': Meta.CreateDirs must be true or false, got 'yes'$"
    ):
        r.flag("CreateDirs", True)


def test_a_table_that_is_not_a_mapping_is_refused() -> None:
    assert str(error(["url"])) == "plugin 'mykv': meta must be a table, got list"


@given(
    value=st.integers(-(2**70), 2**70),
    minimum=st.one_of(st.none(), st.integers(-100, 100)),
    span=st.one_of(st.none(), st.integers(0, 200)),
    as_text=st.booleans(),
)
def test_integer_takes_exactly_the_integers_within_bounds(
    value: int, minimum: Optional[int], span: Optional[int], as_text: bool
) -> None:
    maximum = None if span is None or minimum is None else minimum + span
    r = MetaReader("mykv", {"pool_size": str(value) if as_text else value}, KNOWN)
    inside = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if inside:
        assert r.integer("pool_size", 1, minimum, maximum) == value
    else:
        with pytest.raises(MetaError, match=r"pool_size.* must be an integer"):
            r.integer("pool_size", 1, minimum, maximum)


@pytest.mark.parametrize("value", [True, False, 1.5, "1.5", "ten", "", None, [1], {"a": 1}, math.inf])
def test_integer_refuses_what_is_not_an_integer(value: Any) -> None:
    r = MetaReader("mykv", {"pool_size": value}, KNOWN)
    with pytest.raises(MetaError) as info:
        r.integer("pool_size", 1, minimum=0)
    assert str(info.value).endswith(f"must be an integer >= 0, got {value!r}")


def test_integer_takes_an_integral_float_and_gives_the_default_when_absent() -> None:
    r = MetaReader("mykv", {"pool_size": 4.0}, KNOWN)
    assert r.integer("pool_size", 1) == 4 and isinstance(r.integer("pool_size", 1), int)
    assert r.integer("timeout", 7, minimum=1) == 7
    with pytest.raises(MetaError, match=r"'timeout' .*is missing: set timeout = 30$"):
        r.integer("timeout", REQUIRED, example="30")


@given(value=st.floats(allow_nan=True), minimum=st.floats(-1e6, 1e6), as_text=st.booleans())
def test_real_takes_the_numbers_at_or_above_its_minimum_and_never_nan(
    value: float, minimum: float, as_text: bool
) -> None:
    r = MetaReader("mykv", {"timeout": repr(value) if as_text else value}, KNOWN)
    if not math.isnan(value) and value >= minimum:
        assert r.real("timeout", 1.0, minimum) == value
    else:
        with pytest.raises(MetaError, match=re.escape(f"must be a number >= {minimum:g}, got ")):
            r.real("timeout", 1.0, minimum)


@given(
    value=st.one_of(st.booleans(), st.sampled_from(sorted(ON_OFF)), st.text(max_size=6)),
    damocles=st.booleans(),
)
def test_flag_takes_booleans_and_only_the_words_it_is_given(value: Any, damocles: bool) -> None:
    words = ON_OFF if damocles else TRUE_FALSE
    r = MetaReader("mykv", {"echo": value}, KNOWN)
    want = value if isinstance(value, bool) else words.get(value.strip().lower())
    if want is None:
        with pytest.raises(MetaError, match="must be true or false, got "):
            r.flag("echo", False, words)
    else:
        assert r.flag("echo", False, words) is want
        assert r.flag("echo", False, words) is want


def test_text_is_stripped_required_or_defaulted_and_a_pattern_is_matched_whole() -> None:
    r = MetaReader("mykv", {"url": "  sqlite:///x  ", "mode": "ab-c"}, KNOWN)
    assert r.text("url") == "sqlite:///x"
    assert r.text("echo", None) is None and r.text("echo", "dflt") == "dflt"
    with pytest.raises(
        MetaError, match=r"'timeout' \(\[Common.DB.Plugin.Meta\] timeout\) is missing: set timeout = 5"
    ):
        r.text("timeout", example="5")
    word = re.compile(r"[a-z]*")
    with pytest.raises(MetaError, match=r"must be letters, got 'ab-c'$"):
        r.text("mode", "", pattern=word, what="letters")
    assert MetaReader("mykv", {"mode": ""}, KNOWN).text("mode", "x", pattern=word) == ""
    with pytest.raises(MetaError, match=r"must be a non-empty string, got ' '$"):
        MetaReader("mykv", {"url": " "}, KNOWN).text("url")


def test_choice_is_case_blind_and_lists_the_choices() -> None:
    r = MetaReader("mykv", {"mode": "full"}, KNOWN)
    assert r.choice("mode", "NORMAL", ("NORMAL", "FULL")) == "FULL"
    with pytest.raises(MetaError, match=r"must be one of NORMAL, FULL, got 'off'$"):
        MetaReader("mykv", {"mode": "off"}, KNOWN).choice("mode", "NORMAL", ("NORMAL", "FULL"))


@pytest.mark.parametrize(
    ("meta", "says"),
    [
        ({"SubdirPattern": "x"}, "store 's': unknown Meta key(s) 'SubdirPattern'"),
        ({"CreateDirs": "yes"}, "Meta.CreateDirs must be true or false, got 'yes'"),
    ],
)
def test_fsstore_reads_its_meta_through_it(meta: Dict[str, Any], says: str) -> None:
    from sectorhooks_spec import StoreConfig
    from support.plugins import bundled_module

    fsstore = bundled_module("fsstore", "fsstore")
    with pytest.raises(MetaError) as info:
        fsstore.FsStore(StoreConfig(name="s", path="/nonexistent-root", meta=meta))
    assert says in str(info.value)
