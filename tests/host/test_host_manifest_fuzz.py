"""Arbitrary TOML documents and raw text give the manifest parser a Manifest or a ManifestError, never
anything else."""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from typing import Any, Dict, List

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sectorhooks_spec.kinds import EXT_POINTS, Kind, ext_points
from sectorhooks_spec.manifest import EXPORT_KEYS, KNOWN_KEYS, Manifest, ManifestError, parse_manifest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PATH = "fuzz/manifest.toml"

# --- a small TOML writer (ours, so the generated documents cover what we choose) ---------


def toml_key(key: str) -> str:
    if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key):
        return key
    return toml_string(key)


def toml_string(value: str) -> str:
    out = []
    for c in value:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def to_toml(data: Dict[str, Any], prefix: str = "") -> str:
    """Scalars and arrays first, then sub-tables as [headers] and arrays of tables as [[headers]]."""
    lines: List[str] = []
    tables, arrays = [], []
    for key, value in data.items():
        if isinstance(value, dict) and value and len(prefix) < 40:
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, value in tables:
        name = f"{prefix}.{toml_key(key)}" if prefix else toml_key(key)
        lines.append(f"[{name}]")
        lines.append(to_toml(value, name))
    for key, items in arrays:
        name = f"{prefix}.{toml_key(key)}" if prefix else toml_key(key)
        for item in items:
            lines.append(f"[[{name}]]")
            lines.append(to_toml(item, name))
    return "\n".join(lines)


# --- strategies -------------------------------------------------------------------------

ALL_POINTS = sorted({p.name for points in EXT_POINTS.values() for p in points} | {"Health", "Nope"})
KEYS = st.sampled_from([*KNOWN_KEYS, *EXPORT_KEYS, "Name", "kinds"]) | st.text(max_size=12)
NICE_STRINGS = st.sampled_from(
    [k.value for k in Kind] + ALL_POINTS + ["open_store", "x", "my-plugin", "a.b", ""]
)
SCALARS = (
    NICE_STRINGS
    | st.text(max_size=16)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.dates()
    | st.datetimes()
    | st.times()
)
EXPORT_ENTRY = st.dictionaries(
    st.sampled_from(EXPORT_KEYS) | st.text(max_size=6), NICE_STRINGS | SCALARS, max_size=3
)


def values(depth: int) -> st.SearchStrategy:
    if depth == 0:
        return SCALARS
    inner = values(depth - 1)
    return (
        SCALARS
        | st.lists(inner, max_size=3)
        | st.lists(EXPORT_ENTRY, min_size=1, max_size=4)
        | st.dictionaries(KEYS, inner, max_size=3)
    )


DOCUMENTS = st.dictionaries(KEYS, values(2), max_size=9)


def valid_manifest(kind: Kind) -> str:
    exports = ", ".join(f'{{ extPoint = "{p.name}", impl = "f_{p.name.lower()}" }}' for p in EXT_POINTS[kind])
    return f'name = "fz"\nkind = "{kind.value}"\nexport = [{exports}]\n'


def check_outcome(text: str) -> None:
    try:
        manifest = parse_manifest(text, PATH)
    except ManifestError as err:
        assert err.problems, "a ManifestError must carry at least one problem"
        assert all(p.path == PATH for p in err.problems)
        assert PATH in str(err)
        return
    # anything accepted really is a usable manifest
    assert isinstance(manifest, Manifest)
    assert isinstance(manifest.kind, Kind)
    exported = {e.ext_point for e in manifest.exports}
    assert {p.name for p in ext_points(manifest.kind).values() if p.required} <= exported
    assert all(e.impl.isidentifier() for e in manifest.exports)
    assert manifest.module


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_arbitrary_toml_documents_give_a_manifest_or_a_manifest_error(data: Dict[str, Any]) -> None:
    text = to_toml(data)
    # the generator itself must produce the document it meant to (tomllib is the referee)
    assert json.dumps(tomllib.loads(text), default=str, sort_keys=True) == json.dumps(
        data, default=str, sort_keys=True
    )
    check_outcome(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
@example("")
@example("name = ")
@example('name = "x"\nkind = "KVStore"\nexport = [')
@example("\x00")
@example('[export]\nextPoint = "Constructor"')
def test_raw_text_gives_a_manifest_or_a_manifest_error(text: str) -> None:
    check_outcome(text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Kind)), st.data())
def test_mutated_valid_manifests_give_a_manifest_or_a_manifest_error(kind: Kind, data: st.DataObject) -> None:
    text = valid_manifest(kind)
    parse_manifest(text, PATH)  # the seed is valid
    pos = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 5))
    insert = data.draw(st.text(max_size=4) | st.sampled_from(['"', "[", "]", "{", "=", "\n", ",", "'", "\\"]))
    check_outcome(text[:pos] + insert + text[pos + cut :])


@given(st.sampled_from(list(Kind)))
def test_the_valid_seed_manifests_parse(kind: Kind) -> None:
    manifest = parse_manifest(valid_manifest(kind), PATH)
    assert manifest.kind is kind and manifest.name == "fz"
