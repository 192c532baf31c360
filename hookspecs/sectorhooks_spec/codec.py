"""Lossless JSON encoding of the SPI's attrs models.

``to_jsonable`` turns a model into plain JSON types (field names as keys, enums as values, tuples
as lists, bytes as hex); ``from_jsonable`` turns such data back into the typed model, strictly:
an unknown key, a value of the wrong type or out of its field's bounds (see
:mod:`.sector`: what every sink can store) is a :class:`DecodeError` naming the field path.
Decoders are compiled once per class from its type hints, so the hot path does no reflection.
"""

from __future__ import annotations

import collections.abc
import enum
import json
import sys
import typing
from functools import cache
from typing import Any, Callable, Dict, Tuple, Type, TypeVar, Union

import attrs

from .errors import DecodeError
from .sector import ValueOutOfBounds

T = TypeVar("T")
_NoneType = type(None)
Decoder = Callable[[Any, str], Any]


_PLAIN = frozenset({str, int, float, bool, _NoneType})


def to_jsonable(obj: Any) -> Any:
    """Return ``obj`` as JSON-compatible data (dicts, lists, str, int, float, bool, None)."""
    cls = type(obj)
    if cls in _PLAIN:
        return obj
    if attrs.has(cls):  # plain field values (most of them) are taken as they are, not recursed into
        out = {}
        for field in attrs.fields(cls):
            value = getattr(obj, field.name)
            out[field.name] = value if type(value) in _PLAIN else to_jsonable(value)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (tuple, list)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, bytes):
        return obj.hex()
    raise TypeError(f"cannot encode {cls.__name__} as JSON")


def from_jsonable(cls: Type[T], data: Any) -> T:
    """Decode JSON data into ``cls``; raises :class:`DecodeError` naming the bad field."""
    return _decoder(cls)(data, cls.__name__)  # type: ignore[arg-type,no-any-return]


def dumps(obj: Any) -> str:
    """Compact JSON text of a model."""
    return json.dumps(to_jsonable(obj), separators=(",", ":"), ensure_ascii=False)


def loads(cls: Type[T], text: Union[str, bytes]) -> T:
    """Decode JSON text into ``cls``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DecodeError(f"{cls.__name__}: not valid JSON: {exc}") from None
    return from_jsonable(cls, data)


def _fail(where: str, expected: str, value: Any) -> DecodeError:
    return DecodeError(f"{where}: expected {expected}, got {type(value).__name__} {value!r:.80}")


@cache
def _decoder(tp: Any) -> Decoder:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return lambda v, where: v
    if origin is Union:
        inner = [a for a in args if a is not _NoneType]
        if len(inner) == 1 and len(args) == 2:
            sub = _decoder(inner[0])
            return lambda v, where: None if v is None else sub(v, where)
        raise TypeError(f"unsupported union {tp!r}")
    if origin in (tuple, Tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            item = _decoder(args[0])

            def dec_tuple(v: Any, where: str) -> Any:
                if not isinstance(v, list):
                    raise _fail(where, "a list", v)
                return tuple(item(x, f"{where}[{i}]") for i, x in enumerate(v))

            return dec_tuple
        raise TypeError(f"unsupported tuple type {tp!r}")
    if origin in (dict, Dict, collections.abc.Mapping) or tp is dict:
        vdec = _decoder(args[1]) if args else _decoder(Any)

        def dec_dict(v: Any, where: str) -> Any:
            if not isinstance(v, dict):
                raise _fail(where, "an object", v)
            return {k: vdec(x, f"{where}.{k}") for k, x in v.items()}

        return dec_dict
    if isinstance(tp, type) and attrs.has(tp):
        return _attrs_decoder(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):

        def dec_enum(v: Any, where: str) -> Any:
            try:
                return tp(v)
            except ValueError:
                choices = ", ".join(repr(m.value) for m in tp)
                raise DecodeError(f"{where}: {v!r} is not one of {choices}") from None

        return dec_enum
    if tp is bool:
        return _exact(bool, "a boolean")
    if tp is int:

        def dec_int(v: Any, where: str) -> Any:
            if type(v) is not int:
                raise _fail(where, "an integer", v)
            return v

        return dec_int
    if tp is float:

        def dec_float(v: Any, where: str) -> Any:
            if type(v) not in (int, float):
                raise _fail(where, "a number", v)
            return float(v)

        return dec_float
    if tp is str:
        return _exact(str, "a string")
    if tp is bytes:

        def dec_bytes(v: Any, where: str) -> Any:
            if not isinstance(v, str):
                raise _fail(where, "a hex string", v)
            try:
                return bytes.fromhex(v)
            except ValueError:
                raise DecodeError(f"{where}: {v!r:.80} is not hex") from None

        return dec_bytes
    raise TypeError(f"no JSON decoder for {tp!r}")


def _exact(kind: type, expected: str) -> Decoder:
    def dec(v: Any, where: str) -> Any:
        if type(v) is not kind:
            raise _fail(where, expected, v)
        return v

    return dec


def _attrs_decoder(cls: type) -> Decoder:
    module = sys.modules[cls.__module__]
    hints = typing.get_type_hints(cls, vars(module))
    fields = attrs.fields(cls)
    names = frozenset(f.name for f in fields)
    required = frozenset(f.name for f in fields if f.default is attrs.NOTHING and f.init)
    # Resolve lazily: a model may refer to another defined later in its module.
    decoders: Dict[str, Decoder] = {}

    def dec(v: Any, where: str) -> Any:
        if not isinstance(v, dict):
            raise _fail(where, "an object", v)
        unknown = v.keys() - names
        if unknown:
            raise DecodeError(f"{where}: unknown field(s) {sorted(unknown)}")
        missing = required - v.keys()
        if missing:
            raise DecodeError(f"{where}: missing field(s) {sorted(missing)}")
        kwargs = {}
        for key, raw in v.items():
            fdec = decoders.get(key)
            if fdec is None:
                fdec = decoders[key] = _decoder(hints[key])
            kwargs[key] = fdec(raw, f"{where}.{key}")
        try:
            return cls(**kwargs)
        except ValueOutOfBounds as exc:  # a field's bounds (see ``sector``): name its path
            raise DecodeError(f"{where}.{exc}") from None
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"{where}: {exc}") from None

    return dec
