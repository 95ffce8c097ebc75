"""Values of the subject protocol: the JSON form of every type a model module uses.

Generated from the model module's type hints, never written per component:

- `int` (u64 and wider too) is a JSON integer; `bool` true/false; `str` a string; `None` null.
- `float` is a JSON number (Python's shortest repr, which round-trips bit for bit, -0.0
  included), or one of the strings "inf", "-inf", "nan", "-nan" (the quiet NaN and its
  negation) or "nan:0x7ff8000000000001" (any other NaN, by its 64 bits).
- `bytes` / `bytearray` are base64 strings.
- an attrs class is a JSON object with its field names (private fields without an init
  argument are left out); an `enum.Enum` is its member's name.
- `list[T]`, `Sequence[T]`, `Iterable[T]`, `tuple[T, ...]`, sets are JSON arrays;
  `tuple[A, B]` an array of that length; `Mapping[K, V]` an array of [key, value] pairs.
- `Optional[T]` is null or T; a `Union` tries its members in order.
- Where a hint says nothing precise (`Any`, `object`, bare `tuple`, a `TypeVar`), the value
  is written *tagged*, so it decodes without a type: {"$tuple": [...]}, {"$bytes": b64},
  {"$float": "nan"}, {"$set": [...]}, {"$frozenset": [...]}, {"$dict": [[k, v], ...]}, {"$enum": "Class", "name":
  "MEMBER"}, {"$attrs": "Class", "fields": {...}}; plain JSON numbers, strings, booleans,
  null and arrays (lists) stand for themselves.
- A value that is no data (a callable, an object with methods) is a reference:
  {"$ref": N}; the side holding it answers calls on it (see meshspec.protocol).

A value that does not fit its type raises `CodecError` naming where (`args.count`).
"""
from __future__ import annotations

import base64
import collections.abc as cabc
import enum
import functools
import math
import struct
import random
import sys
import types
import typing
from typing import Any, Callable

import attrs

NoneType = type(None)
_NO_VALUE = object()  # a compiled builder's "take the general path"
_ENUM, _SLOW = object(), object()  # kinds of value class for `tagged`



def _compiled(table: dict, compile_: Callable[[Any], Callable[[Any, str], Any]],
              general: Callable[[Any, Any, str], Any], tp: Any) -> Callable[[Any, str], Any]:
    """The compiled encoder or decoder of `tp` from `table`, compiled on first use; for a hint
    that cannot be a dict key (or compiled), the general path."""
    try:
        fn = table.get(tp)
        if fn is None:
            fn = table[tp] = compile_(tp)
        return fn
    except TypeError:
        return lambda v, where: general(v, tp, where)


class CodecError(ValueError):
    """A JSON value that does not fit the declared type (or a value that cannot be sent)."""


_QNAN = 0x7FF8000000000000
_SIGN = 1 << 63


def float_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def float_to_json(x: float) -> Any:
    if math.isnan(x):
        bits = float_bits(x)  # the sign and payload of a NaN travel too: total orders see them
        return {_QNAN: "nan", _QNAN | _SIGN: "-nan"}.get(bits, f"nan:0x{bits:016x}")
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def float_from_json(v: Any, where: str) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if v in ("nan", "NaN"):
        return math.nan
    if v == "-nan":
        return -math.nan
    if isinstance(v, str) and v.startswith("nan:0x"):
        try:
            x = struct.unpack("<d", struct.pack("<Q", int(v[4:], 16)))[0]
        except (ValueError, struct.error):
            raise CodecError(f"{where}: bad NaN bits {short(v)}") from None
        if math.isnan(x):
            return x
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    raise CodecError(f"{where}: expected a float, got {short(v)}")


def short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:60] + "..."


def is_callable_hint(tp: Any) -> bool:
    return typing.get_origin(tp) is cabc.Callable or tp is cabc.Callable or tp is typing.Callable


def is_clock_hint(tp: Any) -> bool:
    """`Callable[[], int]`: the injected clock (never sent; `now_ns` carries its reading)."""
    if not is_callable_hint(tp):
        return False
    args = typing.get_args(tp)
    return bool(args) and args[0] == [] and args[1] is int


def strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not NoneType]
        if len(members) < len(typing.get_args(tp)):
            return (members[0] if len(members) == 1 else typing.Union[tuple(members)]), True
    return tp, False


def is_rng_hint(tp: Any) -> bool:
    """`random.Random` (or Optional of it): the injected randomness (see meshspec.protocol)."""
    return strip_optional(tp)[0] is random.Random


def is_notification(tp: Any) -> bool:
    """A callback whose result is ignored (`Callable[..., object]` or `-> None`): sent as events."""
    args = typing.get_args(tp)
    return is_callable_hint(tp) and len(args) == 2 and args[1] in (object, NoneType, None)


@functools.lru_cache(maxsize=None)
def attrs_hints(cls: type) -> tuple[tuple[str, str, Any], ...]:
    """(attribute name, init name, type) of each init field of an attrs class."""
    hints = typing.get_type_hints(cls)
    return tuple((a.name, a.alias or a.name.lstrip("_"), hints.get(a.name, Any))
                 for a in attrs.fields(cls) if a.init)


@functools.lru_cache(maxsize=None)
def _init_names(cls: type) -> frozenset:
    return frozenset(init for _, init, _ in attrs_hints(cls))


def type_name(tp: Any) -> str:
    """The schema's spelling of a type."""
    if tp is Any or tp is object:
        return "any"
    if tp is NoneType or tp is None:
        return "null"
    if isinstance(tp, type):
        if tp is bytearray:
            return "bytes"
        if tp in (int, float, bool, str, bytes):
            return tp.__name__
        if tp is tuple:
            return "any"
        return tp.__name__
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner, optional = strip_optional(tp)
        if optional:
            return f"optional[{type_name(inner)}]"
        return " | ".join(type_name(a) for a in args)
    if is_callable_hint(tp):
        if not args:
            return "ref"
        params = ", ".join(type_name(a) for a in args[0]) if isinstance(args[0], list) else "..."
        return f"callback({params}) -> {type_name(args[1])}"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list[{type_name(args[0])}]"
        return f"tuple[{', '.join(type_name(a) for a in args)}]"
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        return f"pairs[{type_name(args[0])}, {type_name(args[1])}]"
    if origin is not None and args:
        return f"list[{type_name(args[0])}]"
    return "any"


class Codec:
    """Encoders and decoders by type, plus the tagged (typeless) form and references.

    `classes` maps class names to the model's classes (for tagged values); `make_ref(obj)`
    turns an object that is no data into a reference id, and `resolve_ref(id, tp)` turns
    a reference id back into something callable.
    """

    def __init__(self, classes: dict[str, type], own_tag: str = "$ref",
                 make_ref: Callable[[Any, Any], int] | None = None,
                 resolve_ref: Callable[[str, int, Any], Any] | None = None,
                 make_error: Callable[[str, str, dict], BaseException] | None = None,
                 local_types: dict[type, type] | None = None) -> None:
        self.make_error = make_error
        #: value classes decoded as a subclass of this side's own (a served class's
        #: `SCALING_POLICY`): the server builds its own type from the data, as a Rust one does
        self.local_types = local_types or {}
        self.classes = classes
        self.own_tag = own_tag  # "$ref" for the harness's objects, "$obj" for the impl's
        self.make_ref = make_ref
        self.resolve_ref = resolve_ref
        self._encoders: dict[Any, Callable[[Any, str], Any]] = {}
        self._decoders: dict[Any, Callable[[Any, str], Any]] = {}
        self._builders: dict[type, Callable[[dict, str], Any]] = {}
        self._tag_kinds: dict[type, Any] = {}  # value class -> how `tagged` writes it
        self._enum_members: dict[str, dict] = {}  # enum class name -> its members by name

    # -- compiled forms ---------------------------------------------------------------------
    # The encoder and decoder of one type, built once per type and cached: the common shapes
    # (exact ints and strings, finite floats, attrs objects whose fields are of their hinted
    # types, enums by name, lists, Optional) go through closures that look nothing up per
    # value; anything else falls back to the general `_encode` / `_decode`, which are the
    # reference (and give every error message its exact place).
    def encode(self, value: Any, tp: Any, where: str = "value") -> Any:
        try:
            fn = self._encoders[tp]
        except (KeyError, TypeError):  # not compiled yet, or an unhashable hint
            fn = self._encoder_of(tp)
        return fn(value, where)

    def decode(self, v: Any, tp: Any, where: str = "value") -> Any:
        try:
            fn = self._decoders[tp]
        except (KeyError, TypeError):
            fn = self._decoder_of(tp)
        return fn(v, where)

    def _compile_encoder(self, tp: Any) -> Callable[[Any, str], Any]:
        slow = self._encode
        fn: Callable[[Any, str], Any]
        if tp is int or tp is str or tp is bool:
            def fn(v: Any, where: str) -> Any:
                return v if type(v) is tp else slow(v, tp, where)
        elif tp is float:
            def fn(v: Any, where: str) -> Any:
                if type(v) is float and v - v == 0.0:  # finite: itself
                    return v
                return slow(v, tp, where)
        elif tp is Any or tp is object or tp is tuple or isinstance(tp, typing.TypeVar):
            tagged = self.tagged

            def fn(v: Any, where: str) -> Any:
                return tagged(v, where)
        elif tp is NoneType:
            def fn(v: Any, where: str) -> Any:
                return None if v is None else slow(v, tp, where)
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            def fn(v: Any, where: str) -> Any:
                return v.name if type(v) is tp else slow(v, tp, where)
        elif isinstance(tp, type) and attrs.has(tp):
            fields = [(name, init, self._encoder_of(ftp)) for name, init, ftp in attrs_hints(tp)]
            objects: set = set()  # value classes seen to be attrs classes

            def fn(v: Any, where: str) -> Any:
                t = type(v)
                if t is tp or t in objects:
                    try:
                        return {init: enc(getattr(v, name), where) for name, init, enc in fields}
                    except CodecError:
                        pass  # the general path names the field
                elif v is not None and attrs.has(t):
                    objects.add(t)
                    return fn(v, where)
                return slow(v, tp, where)
        else:
            origin, args = typing.get_origin(tp), typing.get_args(tp)
            inner = args[0] if args else Any
            members = [a for a in args if a is not NoneType]
            if origin in (typing.Union, types.UnionType) and len(members) == 1 < len(args):
                member, enc = members[0], self._encoder_of(members[0])

                def fn(v: Any, where: str) -> Any:  # Optional[T]: null, T, or the general path
                    if v is None:
                        return None
                    return enc(v, where) if _fits(v, member) else slow(v, tp, where)
            elif origin is tuple and len(args) == 2 and args[1] is Ellipsis or \
                    origin in (list, cabc.Sequence, cabc.Iterable, set, frozenset, cabc.Set,
                               cabc.MutableSet, cabc.MutableSequence):
                enc = self._encoder_of(inner)

                def fn(v: Any, where: str) -> Any:
                    if v is None or isinstance(v, (str, bytes, dict)):
                        return slow(v, tp, where)
                    return [enc(x, where) for x in v]
            else:
                def fn(v: Any, where: str) -> Any:
                    return slow(v, tp, where)
        return fn

    def _encoder_of(self, tp: Any) -> Callable[[Any, str], Any]:
        return _compiled(self._encoders, self._compile_encoder, self._encode, tp)

    def _compile_decoder(self, tp: Any) -> Callable[[Any, str], Any]:
        slow = self._decode
        fn: Callable[[Any, str], Any]
        if tp is int or tp is str or tp is bool:
            def fn(v: Any, where: str) -> Any:
                return v if type(v) is tp else slow(v, tp, where)
        elif tp is float:
            def fn(v: Any, where: str) -> Any:
                return v if type(v) is float else slow(v, tp, where)
        elif tp is Any or tp is object or tp is tuple or isinstance(tp, typing.TypeVar):
            untag = self.untag

            def fn(v: Any, where: str) -> Any:
                return untag(v, where)
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            members = dict(tp.__members__)

            def fn(v: Any, where: str) -> Any:
                if type(v) is str:
                    m = members.get(v)
                    if m is not None:
                        return m
                return slow(v, tp, where)
        elif isinstance(tp, type) and attrs.has(tp):
            build = self._builder(self.local_types.get(tp, tp))

            def fn(v: Any, where: str) -> Any:
                if type(v) is dict:
                    out = build(v, where)
                    if out is not _NO_VALUE:
                        return out
                return slow(v, tp, where)
        else:
            origin, args = typing.get_origin(tp), typing.get_args(tp)
            members = [a for a in args if a is not NoneType]
            if origin in (typing.Union, types.UnionType) and len(members) == 1 < len(args):
                dec = self._decoder_of(members[0])

                def fn(v: Any, where: str) -> Any:
                    return None if v is None else dec(v, where)
            elif origin is list or origin in (cabc.Sequence, cabc.Iterable, cabc.MutableSequence) \
                    or origin is tuple and len(args) == 2 and args[1] is Ellipsis:
                dec = self._decoder_of(args[0] if args else Any)
                make = tuple if origin is tuple else list

                def fn(v: Any, where: str) -> Any:
                    if type(v) is list:
                        return make([dec(x, where) for x in v])
                    return slow(v, tp, where)
            else:
                def fn(v: Any, where: str) -> Any:
                    return slow(v, tp, where)
        return fn

    def _decoder_of(self, tp: Any) -> Callable[[Any, str], Any]:
        return _compiled(self._decoders, self._compile_decoder, self._decode, tp)

    def _builder(self, cls: type) -> Callable[[dict, str], Any]:
        """Build `cls` from its JSON fields, or _NO_VALUE when the general path must (an
        unknown or ill-typed field, or a value the class refuses: it raises the error)."""
        build = self._builders.get(cls)
        if build is not None:
            return build
        fields = [(init, self._decoder_of(ftp)) for _, init, ftp in attrs_hints(cls)]
        names = _init_names(cls)

        def build(v: dict, where: str) -> Any:
            if not v.keys() <= names:
                return _NO_VALUE
            try:
                return cls(**{init: dec(v[init], where) for init, dec in fields if init in v})
            except Exception:  # noqa: BLE001 - the general path raises the right CodecError
                return _NO_VALUE
        self._builders[cls] = build
        return build

    # -- encoding -------------------------------------------------------------------------
    def _encode(self, value: Any, tp: Any, where: str = "value") -> Any:
        t = type(value)
        if t is tp and (t is int or t is str or t is bool):  # plain JSON already: itself
            return value
        if tp is Any or tp is object or tp is tuple or isinstance(tp, typing.TypeVar):
            return self.tagged(value, where)
        if value is None:
            return None
        if isinstance(tp, type):
            if tp is bool or tp is int or tp is str:
                return value if not isinstance(value, (enum.Enum,)) else value.name
            if tp is float:
                return float_to_json(float(value)) if isinstance(value, (int, float)) else self.tagged(value, where)
            if tp in (bytes, bytearray):
                return base64.b64encode(bytes(value)).decode("ascii")
            if issubclass(tp, enum.Enum) and isinstance(value, enum.Enum):
                return value.name
            if attrs.has(tp) and attrs.has(type(value)):
                return {init: self.encode(getattr(value, name), ftp, f"{where}.{init}")
                        for name, init, ftp in attrs_hints(tp)}
            if tp is list or tp is set or tp is frozenset:
                return [self.tagged(v, where) for v in value]
            return self.tagged(value, where)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            for member in args:
                if member is NoneType:
                    continue
                if _fits(value, member):
                    return self.encode(value, member, where)
            return self.tagged(value, where)
        if is_callable_hint(tp):
            return self.ref(value, tp, where)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return [self.encode(v, args[0], where) for v in value]
            return [self.encode(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, args))]
        if origin in (dict, cabc.Mapping, cabc.MutableMapping):
            return [[self.encode(k, args[0], where), self.encode(v, args[1], where)] for k, v in value.items()]
        if origin is not None:
            inner = args[0] if args else Any
            if inner is int or inner is str:
                items = list(value)
                if all(type(v) is inner for v in items):
                    return items  # plain JSON already
                return [self.encode(v, inner, where) for v in items]
            return [self.encode(v, inner, where) for v in value]
        return self.tagged(value, where)

    def ref(self, value: Any, tp: Any, where: str) -> Any:
        back = getattr(value, "_protocol_ref", None)  # the other side's own object, handed back
        if isinstance(back, tuple):
            return {back[0]: back[1]}
        if self.make_ref is None:
            raise CodecError(f"{where}: cannot send {type(value).__name__} (no references here)")
        return {self.own_tag: self.make_ref(value, tp)}

    def tagged(self, value: Any, where: str = "value") -> Any:
        t = type(value)
        if t is int or t is str or t is bool or value is None:  # plain JSON already: itself
            return value
        if t is tuple:
            tagged = self.tagged
            return {"$tuple": [v if type(v) is int or type(v) is str else tagged(v, where) for v in value]}
        if t is float and value - value == 0.0:  # finite
            return value
        kind = self._tag_kinds.get(t)
        if kind is None:
            kind = self._tag_kinds[t] = self._tag_kind(t)
        if kind is not _SLOW:
            if kind is _ENUM:
                return {"$enum": t.__name__, "name": value.name}
            name, fields = kind
            try:
                return {"$attrs": name, "fields": {init: enc(getattr(value, attr), where)
                                                   for attr, init, enc in fields}}
            except CodecError:
                pass  # the general path below names the field
        return self._tagged(value, where)

    def _tag_kind(self, t: type) -> Any:
        """How `tagged` writes a value of class t: _ENUM, (class name, field encoders) of a
        known attrs class, or _SLOW (the general path)."""
        plain = (bool, str, int, float, bytes, bytearray)
        if issubclass(t, enum.Enum) and not issubclass(t, plain):
            return _ENUM
        if attrs.has(t) and not issubclass(t, plain + (enum.Enum, BaseException)):
            cls = self._known(t)
            if cls is not None:
                return (cls.__name__, [(name, init, self._encoder_of(ftp)) for name, init, ftp in attrs_hints(cls)])
        return _SLOW

    def _tagged(self, value: Any, where: str = "value") -> Any:
        t = type(value)
        if isinstance(value, (bool, str)):
            return value
        if isinstance(value, int) and not isinstance(value, enum.Enum):
            return int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$float": float_to_json(value)}
        if isinstance(value, (bytes, bytearray)):
            return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, enum.Enum):
            return {"$enum": type(value).__name__, "name": value.name}
        if isinstance(value, BaseException):
            return {"$error": self.error(value)}
        if attrs.has(type(value)):
            cls = self._known(type(value))
            if cls is not None:
                return {"$attrs": cls.__name__,
                        "fields": {init: self.encode(getattr(value, name), ftp, f"{where}.{init}")
                                   for name, init, ftp in attrs_hints(cls)}}
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return {"$tuple": [self.tagged(v, where) for v in value]}
        if isinstance(value, list):
            return [self.tagged(v, where) for v in value]
        if isinstance(value, (set, frozenset)):
            tag = "$frozenset" if isinstance(value, frozenset) else "$set"
            return {tag: [self.tagged(v, where) for v in value]}
        if isinstance(value, dict):
            return {"$dict": [[self.tagged(k, where), self.tagged(v, where)] for k, v in value.items()]}
        return self.ref(value, Any, where)

    def error(self, exc: BaseException) -> dict:
        """{"type", "msg"} of an exception, plus "fields": its public attributes, when it has any."""
        out: dict[str, Any] = {"type": type(exc).__name__, "msg": str(exc)}
        fields = {k: v for k, v in vars(exc).items() if not k.startswith("_")}
        if fields:
            try:
                out["fields"] = {k: self.tagged(v, "error") for k, v in fields.items()}
            except CodecError:
                pass
        return out

    def exception(self, err: Any, where: str = "err") -> BaseException:
        if not (isinstance(err, dict) and isinstance(err.get("type"), str) and isinstance(err.get("msg"), str)):
            raise CodecError(f"{where}: an error is {{\"type\": NAME, \"msg\": TEXT}}, got {short(err)}")
        fields = err.get("fields") or {}
        if not isinstance(fields, dict):
            raise CodecError(f"{where}: \"fields\" must be an object")
        decoded = {k: self.untag(v, where) for k, v in fields.items()}
        if self.make_error is None:
            return Exception(err["msg"])
        return self.make_error(err["type"], err["msg"], decoded)

    def _known(self, cls: type) -> type | None:
        """The model class a value's class stands for (itself, or the model base of a subclass)."""
        for c in cls.__mro__:
            if self.classes.get(c.__name__) is c:
                return c
        return None

    # -- decoding -------------------------------------------------------------------------
    def _decode(self, v: Any, tp: Any, where: str = "value") -> Any:
        if type(v) is tp and tp in (int, bool, str):  # the common case, first
            return v
        if tp is Any or tp is object or tp is tuple or isinstance(tp, typing.TypeVar):
            return self.untag(v, where)
        if tp is NoneType or tp is None:
            if v is not None:
                raise CodecError(f"{where}: expected null, got {short(v)}")
            return None
        if isinstance(tp, type):
            return self._decode_class(v, tp, where)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            if v is None and NoneType in args:
                return None
            errors = []
            for member in args:
                if member is NoneType:
                    continue
                try:
                    return self.decode(v, member, where)
                except CodecError as exc:
                    errors.append(str(exc))
            raise CodecError(errors[0] if len(errors) == 1 else f"{where}: {short(v)} fits no member of {type_name(tp)}")
        if is_callable_hint(tp):
            tag = _ref_tag(v)
            if tag is None:
                raise CodecError(f"{where}: expected a reference {{\"$ref\": N}}, got {short(v)}")
            if self.resolve_ref is None:
                raise CodecError(f"{where}: references are not accepted here")
            return self.resolve_ref(tag, v[tag], tp)
        if not isinstance(v, list):
            raise CodecError(f"{where}: expected an array for {type_name(tp)}, got {short(v)}")
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self.decode(x, args[0], where) for x in v)
            if len(v) != len(args):
                raise CodecError(f"{where}: expected {len(args)} items, got {len(v)}")
            return tuple(self.decode(x, t, f"{where}[{i}]") for i, (x, t) in enumerate(zip(v, args)))
        if origin in (dict, cabc.Mapping, cabc.MutableMapping):
            out = {}
            for pair in v:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise CodecError(f"{where}: expected [key, value] pairs, got {short(pair)}")
                out[self.decode(pair[0], args[0], where)] = self.decode(pair[1], args[1], where)
            return out
        inner = args[0] if args else Any
        if inner is int and all(type(x) is int for x in v):
            items = list(v)
        else:
            items = [self.decode(x, inner, where) for x in v]
        if origin in (set, cabc.Set, cabc.MutableSet):
            return set(items)
        if origin is frozenset:
            return frozenset(items)
        return items

    def _decode_class(self, v: Any, tp: type, where: str) -> Any:
        if tp is bool:
            if isinstance(v, bool):
                return v
        elif tp is int:
            if isinstance(v, int) and not isinstance(v, bool):
                return v
        elif tp is float:
            return float_from_json(v, where)
        elif tp is str:
            if isinstance(v, str):
                return v
        elif tp in (bytes, bytearray):
            if isinstance(v, str):
                try:
                    return tp(base64.b64decode(v, validate=True))
                except ValueError:
                    raise CodecError(f"{where}: invalid base64 {short(v)}") from None
        elif issubclass(tp, enum.Enum):
            if isinstance(v, str) and v in tp.__members__:
                return tp[v]
            raise CodecError(f"{where}: expected a {tp.__name__} name ({', '.join(tp.__members__)}), got {short(v)}")
        elif attrs.has(tp):
            if isinstance(v, dict):
                return self._build(self.local_types.get(tp, tp), v, where)
        elif tp in (list, set, frozenset):
            if isinstance(v, list):
                return tp(self.untag(x, where) for x in v)
        else:
            return self.untag(v, where, tp)
        raise CodecError(f"{where}: expected {type_name(tp)}, got {short(v)}")

    def _build(self, cls: type, fields: dict, where: str) -> Any:
        hints = attrs_hints(cls)
        extra = fields.keys() - _init_names(cls)
        if extra:
            raise CodecError(f"{where}: {cls.__name__} has no field {sorted(extra)[0]!r}")
        kwargs = {init: self.decode(fields[init], ftp, f"{where}.{init}")
                  for _, init, ftp in hints if init in fields}
        try:
            return cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a value the class refuses is a decoding error
            raise CodecError(f"{where}: {cls.__name__}({short(fields)}) refused: {exc}") from None

    def untag(self, v: Any, where: str = "value", tp: Any = Any) -> Any:
        t = type(v)
        if t is int or t is str or t is bool or t is float or v is None:  # plain JSON: itself
            return v
        if t is dict and "$tuple" in v:
            untag, items = self.untag, v["$tuple"]
            if not isinstance(items, list):
                raise CodecError(f"{where}: \"$tuple\" must be an array, got {short(items)}")
            return tuple([x if type(x) is int or type(x) is str else untag(x, where) for x in items])
        if t is dict and "$attrs" in v and len(v) == 2:
            cls = self.classes.get(v["$attrs"]) if isinstance(v["$attrs"], str) else None
            fields = v.get("fields")
            if type(fields) is dict and isinstance(cls, type) and attrs.has(cls):
                out = self._builder(cls)(fields, where)
                if out is not _NO_VALUE:
                    return out
        elif t is list:
            untag = self.untag
            return [x if type(x) is int or type(x) is str else untag(x, where) for x in v]
        if t is dict and len(v) == 2 and type(v.get("$enum")) is str:
            members = self._enum_members.get(v["$enum"])
            if members is None:
                cls = self.classes.get(v["$enum"])
                members = dict(cls.__members__) if isinstance(cls, type) and issubclass(cls, enum.Enum) else {}
                self._enum_members[v["$enum"]] = members
            member = members.get(v.get("name")) if type(v.get("name")) is str else None
            if member is not None:
                return member
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.untag(x, where) for x in v]
        if not isinstance(v, dict):
            raise CodecError(f"{where}: cannot decode {short(v)}")
        if "$tuple" in v:
            return tuple(self.untag(x, where) for x in v["$tuple"])
        if "$bytes" in v:
            return self._decode_class(v["$bytes"], bytes, where)
        if "$float" in v:
            return float_from_json(v["$float"], where)
        if "$set" in v:
            return {self.untag(x, where) for x in v["$set"]}
        if "$frozenset" in v:
            return frozenset(self.untag(x, where) for x in v["$frozenset"])
        if "$dict" in v:
            return {self.untag(k, where): self.untag(x, where) for k, x in v["$dict"]}
        if "$enum" in v:
            cls = self.classes.get(v["$enum"]) if isinstance(v["$enum"], str) else None
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise CodecError(f"{where}: unknown enum {short(v['$enum'])}")
            return self._decode_class(v.get("name"), cls, where)
        if "$attrs" in v:
            cls = self.classes.get(v["$attrs"]) if isinstance(v["$attrs"], str) else None
            if not (isinstance(cls, type) and attrs.has(cls)):
                raise CodecError(f"{where}: unknown class {short(v['$attrs'])}")
            return self._build(cls, v.get("fields") or {}, where)
        if "$error" in v:
            return self.exception(v["$error"], where)
        tag = _ref_tag(v)
        if tag is not None and self.resolve_ref is not None:
            return self.resolve_ref(tag, v[tag], tp)
        raise CodecError(f"{where}: cannot decode {short(v)} without a type")


def _ref_tag(v: Any) -> str | None:
    if isinstance(v, dict) and len(v) == 1:
        for tag in ("$ref", "$obj"):
            if isinstance(v.get(tag), int) and not isinstance(v.get(tag), bool):
                return tag
    return None


def _fits(value: Any, tp: Any) -> bool:
    """Whether `value` is of (an encodable form of) `tp`, to pick a Union member."""
    if tp is Any or tp is object:
        return True
    if isinstance(tp, type):
        if tp is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if tp is int:
            return isinstance(value, int) and not isinstance(value, bool)
        if tp in (bytes, bytearray):
            return isinstance(value, (bytes, bytearray))
        return isinstance(value, tp)
    origin = typing.get_origin(tp)
    if is_callable_hint(tp):
        return callable(value)
    if origin is not None:
        try:
            return isinstance(value, origin)
        except TypeError:
            return False
    return False


def module_classes(*modules: Any) -> dict[str, type]:
    """Classes by name from the model modules (and the model modules they import)."""
    out: dict[str, type] = {}
    seen = set()
    todo = list(modules)
    while todo:
        mod = todo.pop(0)
        if mod.__name__ in seen:
            continue
        seen.add(mod.__name__)
        for name, obj in vars(mod).items():
            if isinstance(obj, type) and obj.__module__ == mod.__name__:
                out.setdefault(name, obj)
            elif isinstance(obj, types.ModuleType) and obj.__name__.startswith("model."):
                todo.append(obj)
        for name in list(vars(mod)):
            obj = vars(mod)[name]
            owner = sys.modules.get(getattr(obj, "__module__", "") or "")
            if isinstance(obj, type) and owner is not None and owner.__name__.startswith("model.") \
                    and owner.__name__ not in seen:
                todo.append(owner)
    return out
