"""The subject protocol: check an implementation that runs in another process (any language).

The harness (`meshspec fuzz C --impl-cmd CMD`) starts CMD once, and talks to it over its
stdin/stdout in JSON lines, one request and one response per line; CMD's stderr is passed
through. The implementation is exposed to the lockstep machine as an ordinary impl class
(`command_impl`), so shrinking, traces, replay and pytest export work unchanged. One
process serves a whole run: every example starts with `init` (a fresh object), objects of
finished examples are released with `drop`. `meshspec serve C` (meshspec.serve) is the
reference server for any Python class. docs/protocol.md is the user's guide; the schema of
one component is printed by `meshspec protocol C`, generated here from the model module.

Messages (harness → impl):
  {"op": "handshake", "protocol": 1, "seq": 0}
  {"op": "init", "args": {...}, "now_ns": N, "seq": n}               build the main object
  {"op": NAME, "obj": ID, "args": {...}, "now_ns": N, "seq": n}      call a method
  {"op": NAME, "args": {...}, "now_ns": N, "seq": n}                 a static/class method
  optional in any request: "drop": [ID, ...] (objects the harness no longer holds),
  "rng": [w0, w1, ...] (32-bit words: the randomness of this request, see below).
Responses (impl → harness), echoing "seq":
  {"ok": VALUE, "seq": n}  or  {"err": {"type": CLASS, "msg": TEXT}, "seq": n}
  optional "events": [{"ref": R, "args": [...]}, ...] (notification callbacks, replayed in
  order after the response), "rng_used": K (words of "rng" consumed).
While it answers a request, the impl may call back into an object the harness passed
({"$ref": R}, e.g. a placement function): it writes {"call": {"ref": R, "op": "__call__" or
a method name, "args": [tagged values]}} and reads one {"ok": VALUE} / {"err": ...} line.

Randomness: the harness sends, with every request of a component built with an `rng`,
the next RNG_WORDS 32-bit outputs of its MT19937 stream; the impl draws from them in
order (random() = two words, ((w0 >> 5) * 2**26 + (w1 >> 6)) / 2**53; getrandbits(k <= 32)
= one word >> (32 - k); randrange(n) = getrandbits(n.bit_length()) until < n) and reports
how many it used in "rng_used"; the harness then advances its own generator by that many
words. Model, impl and external consume one stream, draw for draw.
"""
from __future__ import annotations

import atexit
import builtins
import enum
import inspect
import json
import os
import random
import select
import shlex
import subprocess
import sys
import typing
import weakref
from typing import Any, Callable

import attrs

from meshspec import codec as C
from meshspec.lockstep import ENVIRONMENT_ERRORS, Component

PROTOCOL_VERSION = 1
DEFAULT_TIMEOUT = 5.0
STARTUP_TIMEOUT = 30.0
CLOSE_GRACE = 2.0  # seconds an impl process may take to exit once its stdin is closed  # seconds from start to the handshake's answer (interpreters, JITs)
RNG_WORDS = 64
DECODED = 4096  # decoded answers kept by their exact JSON text
HISTORY = 32  # runs of queries searched for what follows a query that missed
SKIPPED_OPS = frozenset({"check_invariants"})  # optional, but listed when supported


# -- JSON lines: orjson when it is installed (optional, `pip install meshspec[fast]`), else
# the standard library; both give the same values for every line the codec writes ------------
def _std_dumps(msg: Any) -> bytes:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()


def _std_loads(line: bytes) -> Any:
    return json.loads(line)


try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - the standard library serves
    _orjson = None

_DIGITS = bytes(48 if 48 <= i <= 57 else i if i == 45 else 32 for i in range(256))  # digits "0", "-", " "
_NINETEEN = b"0" * 19


def _long_ints_fit(line: bytes, shape: bytes) -> bool:
    """Whether every run of 19 or more digits in `line` (`shape` is its translation by
    _DIGITS) reads as an integer orjson holds exactly, in [-2**63, 2**64)."""
    i = shape.find(_NINETEEN)
    while i >= 0:
        j = i + 19
        while j < len(shape) and shape[j] == 48:
            j += 1
        start = i - 1 if i and shape[i - 1] == 45 else i
        if not -(1 << 63) <= int(line[start:j]) < 1 << 64:
            return False
        i = shape.find(_NINETEEN, j)
    return True


def _fast_dumps(msg: Any) -> bytes:
    try:
        return _orjson.dumps(msg)  # type: ignore[union-attr]
    except TypeError:  # an integer beyond 64 bits, a non-string key: the standard library
        return _std_dumps(msg)


def _fast_loads(line: bytes) -> Any:
    # orjson reads an integer beyond [-2**63, 2**64) as a float: such lines (and anything
    # orjson refuses, e.g. the NaN token) go to the standard library, which is exact
    shape = line.translate(_DIGITS)  # (passes in C: cheaper than a regex over the line)
    if _NINETEEN in shape and not _long_ints_fit(line, shape):
        return json.loads(line)
    try:
        return _orjson.loads(line)  # type: ignore[union-attr]
    except ValueError:
        return json.loads(line)


dumps: Callable[[Any], bytes] = _fast_dumps if _orjson is not None else _std_dumps
loads: Callable[[bytes], Any] = _fast_loads if _orjson is not None else _std_loads


_NO_EVENTS: list = []  # a reply without "events" (never changed)
_LAZY = object()  # a fast-cache entry not decoded yet


class ImplProcessError(Exception):
    """The external implementation misbehaved mid-run (exit, hang, garbage): a finding."""


class NotServed(AttributeError):
    """An optional operation (`abstract`) the impl process does not serve: the lockstep core
    skips an impl invariant that needs it (the model's is still checked)."""

    not_served = True


class ImplStartError(Exception):
    """The command could not be started or failed the handshake: a configuration error."""


# -- the schema, generated from the model module --------------------------------------------
@attrs.frozen
class Param:
    name: str
    hint: Any
    role: str  # "value", "clock" (not sent), "rng" (not sent), "callback" (events), "ref"
    default: Any = inspect.Parameter.empty
    keyword_only: bool = False


@attrs.frozen
class Op:
    name: str
    kind: str  # "init", "method", "static"
    params: tuple[Param, ...]
    returns: Any
    # derived once (both sides ask for every request): the parameters that are sent, their
    # names, and whether one is an in-out bytearray
    _sent: tuple = attrs.field(init=False, eq=False, repr=False, hash=False)
    sent_names: frozenset = attrs.field(init=False, eq=False, repr=False, hash=False)
    has_out: bool = attrs.field(init=False, eq=False, repr=False, hash=False)
    injects: bool = attrs.field(init=False, eq=False, repr=False, hash=False)  # a clock or rng
    names: tuple = attrs.field(init=False, eq=False, repr=False, hash=False)  # of all parameters
    #: the hints of the parameters when every one is a positional int, str or bool (the
    #: server then passes the JSON values as they are), else None
    plain: tuple | None = attrs.field(init=False, eq=False, repr=False, hash=False)

    def __attrs_post_init__(self) -> None:
        sent = tuple(p for p in self.params if p.role not in ("clock", "rng"))
        object.__setattr__(self, "_sent", sent)
        object.__setattr__(self, "sent_names", frozenset(p.name for p in sent))
        object.__setattr__(self, "has_out", any(p.hint is bytearray for p in sent))
        object.__setattr__(self, "injects", len(sent) < len(self.params))
        object.__setattr__(self, "names", tuple(p.name for p in self.params))
        plain = all(p.role == "value" and not p.keyword_only and p.hint in (int, str, bool) for p in self.params)
        object.__setattr__(self, "plain", tuple(p.hint for p in self.params) if plain else None)

    def sent(self) -> tuple[Param, ...]:
        return self._sent


def _role(hint: Any) -> str:
    if C.is_clock_hint(hint):
        return "clock"
    if C.is_rng_hint(hint):
        return "rng"
    if C.is_notification(hint):
        return "callback"
    if C.is_callable_hint(C.strip_optional(hint)[0]):
        return "ref"
    return "value"


def _op(cls: type, name: str) -> Op | None:
    raw = inspect.getattr_static(cls, name, None)
    fn = getattr(cls, name, None)
    if name == "__init__":
        kind = "init"
    elif isinstance(raw, (staticmethod, classmethod)):
        kind = "static"
    elif inspect.isfunction(raw):
        kind = "method"
    else:
        return None
    hints = typing.get_type_hints(fn)
    listed = list(inspect.signature(raw.__func__ if isinstance(raw, (staticmethod, classmethod))
                                    else raw).parameters.values())
    if kind in ("init", "method") or isinstance(raw, classmethod):
        listed = listed[1:]  # self / cls
    params = tuple(Param(p.name, hints.get(p.name, Any), _role(hints.get(p.name, Any)), p.default,
                         p.kind is p.KEYWORD_ONLY)
                   for p in listed if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    returns = hints.get("return", Any)
    if kind == "static" and any(p.kind is p.VAR_KEYWORD for p in listed) \
            and isinstance(returns, type) and issubclass(cls, returns):
        # a factory (`Group.spawn(..., **options)`) passes its `**options` on to the
        # constructor: they are the constructor's arguments the factory does not name
        named = {p.name for p in params}
        init = _op(cls, "__init__")
        params += tuple(attrs.evolve(p, keyword_only=True) for p in (init.params if init else ())
                        if p.name not in named)
    return Op("init" if kind == "init" else name, kind, params, returns)


def _is_object_class(tp: Any, classes: dict[str, type]) -> bool:
    return (isinstance(tp, type) and classes.get(tp.__name__) is tp and not attrs.has(tp)
            and not issubclass(tp, (enum.Enum, BaseException)))


def _hinted_classes(tp: Any) -> list[Any]:
    args = typing.get_args(tp)
    return [tp] + [x for a in args if not isinstance(a, list) for x in _hinted_classes(a)] \
        if args else [tp]


@attrs.frozen
class Schema:
    """Operations of the main class and of the object classes its results hand out."""

    component: str
    main: str
    objects: dict  # class name -> {op name -> Op}
    classes: dict  # every model class by name (codec lookups)
    errors: tuple[str, ...]
    queries: frozenset = frozenset()  # the model module's QUERIES: read-only operations
    #: operations whose answer may name an impl object (in any class; "get" always may)
    holders: frozenset = frozenset()

    def op(self, cls_name: str, name: str) -> Op | None:
        return self.objects.get(cls_name, {}).get(name)


_SCHEMAS: dict[str, Schema] = {}


def schema_of(component: Component) -> Schema:
    if component.name not in _SCHEMAS:
        module = sys.modules[component.model_cls.__module__]
        classes = C.module_classes(module)
        objects: dict[str, dict[str, Op]] = {}
        todo = [component.model_cls]
        while todo:
            cls = todo.pop(0)
            if cls.__name__ in objects:
                continue
            ops: dict[str, Op] = {}
            names = ["__init__"] if cls is component.model_cls else []
            names += [n for n in dir(cls) if not n.startswith("_")]
            for n in names:
                op = _op(cls, n)
                if op is None:
                    continue
                ops[op.name] = op
                for tp in _hinted_classes(op.returns):
                    if _is_object_class(tp, classes) and tp.__name__ not in objects:
                        todo.append(tp)
            objects[cls.__name__] = ops
        errors = tuple(sorted(n for n, c in classes.items()
                              if isinstance(c, type) and issubclass(c, component.errors)))
        holders = frozenset({"get", "call"} | {name for ops in objects.values() for name, op in ops.items()
                                               if _may_name_object(op.returns, classes)})
        _SCHEMAS[component.name] = Schema(component.name, component.model_cls.__name__, objects,
                                          classes, errors, frozenset(getattr(module, "QUERIES", ())), holders)
    return _SCHEMAS[component.name]


def describe_schema(schema: Schema) -> dict:
    """The schema as JSON-ready data (what `meshspec protocol C` prints)."""
    def params(op: Op) -> list:
        return {p.name: C.type_name(p.hint) for p in op.sent()}

    objects = {}
    for cls_name, ops in schema.objects.items():
        objects[cls_name] = {name: {"kind": "query" if name in schema.queries else op.kind,
                                    "args": params(op), "returns":
                                    "object " + schema.main if op.kind == "init"
                                    else "object " + op.returns.__name__
                                    if _is_object_class(op.returns, schema.classes)
                                    else C.type_name(op.returns)}
                             for name, op in sorted(ops.items(), key=lambda kv: kv[0] != "init")}
    injected = sorted({p.role for ops in schema.objects.values() for op in ops.values()
                       for p in op.params if p.role in ("clock", "rng")})
    passed = {tp.__name__ for ops in schema.objects.values() for op in ops.values() for p in op.sent()
              for tp in _hinted_classes(p.hint) if isinstance(tp, type)}
    types: dict[str, Any] = {}
    for name, cls in sorted(schema.classes.items()):
        if attrs.has(cls) and not issubclass(cls, BaseException):
            types[name] = {init: C.type_name(tp) for _, init, tp in C.attrs_hints(cls)}
        elif isinstance(cls, type) and issubclass(cls, enum.Enum):
            types[name] = {"enum": list(cls.__members__)}
        elif name in passed and name not in schema.objects:  # a harness object the impl calls back
            methods = sorted(n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n)))
            types[name] = {"ref": methods + (["__contains__"] if "__contains__" in vars(cls) else [])}
    return {"component": schema.component, "protocol": PROTOCOL_VERSION, "main": schema.main,
            "capabilities": CAPABILITIES,
            "injected": injected, "errors": list(schema.errors), "objects": objects, "types": types}


#: Optional capabilities a server announces in its handshake answer (`"batch": true`, ...);
#: the harness uses one only when it is announced (docs/protocol.md, Messages).
CAPABILITIES = {
    "batch": "takes {\"op\": \"batch\", \"requests\": [...]} and answers {\"ok\": [answer, ...]}, each "
             "request answered in order as if it came alone",
    "chain": "with batch: a request's \"obj\" may be {\"$result\": K}, the object request K of the same "
             "batch answered ({\"$obj\": N}); if it answered none, that request is answered with an error",
}


# -- errors across the pipe ------------------------------------------------------------------
_ERROR_CLASSES: dict[tuple[str, str], type] = {}


def remote_error(schema: Schema | None, name: str, msg: str, fields: dict | None = None) -> Exception:
    """An exception of the model's class `name` (or a builtin) whose str() is `msg`.

    The real class when it can be rebuilt with that text (from the error's `fields`, or
    from `msg` as its one argument); else a subclass of it that reports `msg` as is.
    """
    fields = fields or {}
    base: type = Exception
    if schema is not None and isinstance(schema.classes.get(name), type) \
            and issubclass(schema.classes[name], Exception):
        base = schema.classes[name]
    elif isinstance(getattr(builtins, name, None), type) and issubclass(getattr(builtins, name), Exception):
        base = getattr(builtins, name)
    if base is not Exception or name == "Exception":
        for build in (lambda: _with_fields(base.__new__(base), fields, msg),
                      lambda: _with_fields(base(msg), fields, None)):
            try:
                exc = build()
                if str(exc) == msg:
                    return exc
            except Exception:  # noqa: BLE001 - try the next way of building it
                pass
    key = (base.__module__ + "." + base.__qualname__, name)
    if key not in _ERROR_CLASSES:
        def __init__(self: Any, msg: str = "") -> None:
            Exception.__init__(self, msg)
            self._msg = msg

        def __str__(self: Any) -> str:
            return self._msg

        cls = type(name, (base,), {"__init__": __init__, "__str__": __str__,
                                   "__module__": base.__module__})
        _ERROR_CLASSES[key] = cls
    return _with_fields(_ERROR_CLASSES[key](msg), fields, None)


def _with_fields(exc: Any, fields: dict, args_msg: str | None) -> Any:
    if args_msg is not None:
        BaseException.__init__(exc, *((args_msg,) if not fields else tuple(fields.values())))
    for k, v in fields.items():
        setattr(exc, k, v)
    return exc


def _may_name_object(tp: Any, classes: dict[str, type], seen: frozenset = frozenset()) -> bool:
    """Whether a value of type `tp` can hold an impl object ({"$obj": N} somewhere in it)."""
    if tp in (int, str, bool, float, bytes, bytearray, type(None), None) or tp in seen:
        return False
    if isinstance(tp, type):
        if issubclass(tp, (enum.Enum, BaseException)):
            return False
        if attrs.has(tp):
            return any(_may_name_object(ftp, classes, seen | {tp}) for _, _, ftp in C.attrs_hints(tp))
        return True  # an object class, or a bare container of anything
    args = typing.get_args(tp)
    if typing.get_origin(tp) is not None and args and not C.is_callable_hint(tp):
        return any(_may_name_object(a, classes, seen) for a in args if a is not Ellipsis)
    return True  # Any, a bare tuple, a TypeVar: tagged values, anything


def _names_object(v: Any) -> bool:
    if _orjson is not None:  # written in C, then searched: cheaper than walking in Python
        try:
            return b'"$obj"' in _orjson.dumps(v)
        except TypeError:
            pass
    return _walk_names_object(v)


def _walk_names_object(v: Any) -> bool:
    if isinstance(v, dict):
        return "$obj" in v or any(_walk_names_object(x) for x in v.values())
    return isinstance(v, list) and any(_walk_names_object(x) for x in v)


_ATOMIC = {int, float, str, bytes, bool, type(None)}
_FROZEN: dict[type, tuple[str, ...] | None] = {}  # frozen attrs class -> its field names; else None


def _frozen_fields(t: type) -> tuple[str, ...] | None:
    if t not in _FROZEN:
        frozen = attrs.has(t) and getattr(t, "__attrs_attrs__", None) is not None \
            and t.__setattr__ is not object.__setattr__  # frozen attrs classes refuse writes
        _FROZEN[t] = tuple(a.name for a in attrs.fields(t)) if frozen else None
    return _FROZEN[t]


def _immutable(value: Any) -> bool:
    t = type(value)
    if t in _ATOMIC:
        return True
    if t is tuple or t is frozenset:
        for v in value:
            if type(v) not in _ATOMIC and not _immutable(v):
                return False
        return True
    if isinstance(value, (int, float, str, bytes, enum.Enum)):
        _ATOMIC.add(t)  # an enum or a subclass of an atomic type: atomic from now on
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_immutable(v) for v in value)
    names = _frozen_fields(t)
    return names is not None and all(_immutable(getattr(value, n)) for n in names)


def error_json(exc: BaseException, codec: C.Codec | None = None) -> dict:
    return codec.error(exc) if codec is not None else {"type": type(exc).__name__, "msg": str(exc)}


# -- the harness side: one process, its pipes, the proxies ------------------------------------
class ImplProcess:
    """The external implementation: started once, restarted only after a fault."""

    def __init__(self, command: str, component: Component | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.command = command
        self.timeout = timeout
        self.component = component
        self.schema: Schema | None = schema_of(component) if component else None
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.operations: dict[str, list[str]] = {}
        self.seq = 0
        self.round_trips = 0  # requests written and answered (a batch is one)
        self.buf = b""
        self.drops: list[int] = []
        self.refs: dict[int, tuple[Any, Any]] = {}
        self.ref_of: dict[tuple, int] = {}
        self.live: dict[int, int] = {}  # impl object id -> proxies alive
        self.proxies: dict[int, Any] = {}  # impl object id -> its proxy, until the next init
        self.object_keys: set = set()  # cache keys whose answer names an impl object
        self.clock: Callable[[], int] | None = None
        self.rng: random.Random | None = None
        self.codec: C.Codec | None = None
        self.current_op = ""
        self.holds_object = False
        self.cache: dict[tuple, Any] = {}
        #: the fast form of the cache: (object, operation, argument tuple, now_ns) -> (sent
        #: arguments, decoded answer, copy it?) for queries whose arguments are plain ints and
        #: strings; emptied with the cache (see `_method`)
        self.hits: dict[tuple, tuple] = {}
        self.last_key: tuple | None = None
        self.follow: dict[tuple, list] = {}
        self.epoch: tuple = (None, "", 0)  # (object, operation, number) of the last update
        self.prefetched: tuple = ()
        self.missed: tuple = ()
        self.recording: list = []
        #: the last runs of queries between two updates, with the object of their update:
        #: a query that misses is asked with what followed it the last time it was asked
        self.history: list = []
        self.main: int | None = None  # the object of the last init ("main" in predictions)
        self.prefetch = True
        self.chain = False
        self.produced: dict = {}  # (object, query, argument text) -> the impl object it answered
        self.decoded: dict = {}
        self.lazy_specs: dict = {}
        self.texts: dict = {}  # id of recorded arguments -> (them, their repr)
        self.batch = False

    # process life ------------------------------------------------------------------------
    def start(self) -> dict:
        """Start and handshake; ImplStartError with one line when either fails."""
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise ImplStartError(f"--impl-cmd {self.command!r}: {exc}") from None
        if not argv:
            raise ImplStartError("--impl-cmd is empty")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=None, bufsize=0)
        except OSError as exc:
            raise ImplStartError(f"--impl-cmd {self.command!r}: cannot start: {exc.strerror or exc}") from None
        self.generation += 1
        self.buf, self.seq, self.drops, self.refs, self.ref_of = b"", 0, [], {}, {}
        self.live, self.proxies, self.object_keys = {}, {}, set()
        self.cache, self.follow, self.epoch, self.recording = {}, {}, (None, "", 0), []
        self.hits, self.history, self.main, self.prefetched, self.missed = {}, [], None, (), ()
        self.lazy_specs, self.texts = {}, {}  # (their decoders belong to this start's codec)
        self.decoded = {}
        self.current_op, timeout = "handshake", self.timeout
        self.timeout = max(timeout, STARTUP_TIMEOUT)  # start-up is not a request
        try:
            hello = self._exchange({"op": "handshake", "protocol": PROTOCOL_VERSION})
        except ImplProcessError as exc:
            self.kill()
            raise ImplStartError(f"--impl-cmd {self.command!r}: handshake failed: {exc}") from None
        finally:
            self.timeout = timeout
        problem = self._check_hello(hello)
        if problem:
            self.kill()
            raise ImplStartError(f"--impl-cmd {self.command!r}: handshake failed: {problem}")
        return hello

    def _check_hello(self, hello: dict) -> str | None:
        if "ok" not in hello or not isinstance(hello["ok"], dict):
            return f"expected {{\"ok\": {{...}}}}, got {C.short(hello)}"
        ok = hello["ok"]
        if ok.get("protocol") != PROTOCOL_VERSION:
            return f"protocol version {C.short(ok.get('protocol'))}, this meshspec speaks {PROTOCOL_VERSION}"
        name = ok.get("component")
        if self.component is not None and name != self.component.name:
            return f"it serves component {C.short(name)}, not {self.component.name}"
        if self.component is None:
            from meshspec import registry
            try:
                self.component = registry.get_component(name)
            except (registry.UnknownComponent, TypeError):
                return f"unknown component {C.short(name)}"
            self.schema = schema_of(self.component)
        ops = ok.get("operations")
        if not (isinstance(ops, dict) and all(isinstance(v, list) for v in ops.values())):
            return "\"operations\" must map class names to lists of operation names"
        self.operations = ops
        self.batch = ok.get("batch") is True  # optional: many queries in one line
        #: optional: a request of a batch may name the object an earlier one answered
        self.chain = self.batch and ok.get("chain") is True
        if "init" not in ops.get(self.schema.main, []):  # type: ignore[union-attr]
            return f"{self.schema.main} does not list \"init\""  # type: ignore[union-attr]
        self.codec = C.Codec(self.schema.classes, "$ref", self._make_ref, self._resolve,  # type: ignore[union-attr]
                             lambda n, m, f: remote_error(self.schema, n, m, f))
        return None

    def kill(self) -> None:
        if self.proc is not None:
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()  # type: ignore[union-attr]
                except OSError:
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """End of the run: close its stdin and give it a moment to exit (flush logs), then kill."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=CLOSE_GRACE)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def ensure(self) -> None:
        if self.proc is None:
            try:
                self.start()
            except ImplStartError as exc:
                raise ImplProcessError(str(exc)) from None

    # messages ----------------------------------------------------------------------------
    def _fault(self, text: str) -> ImplProcessError:
        self.kill()
        return ImplProcessError(text)

    def _exchange(self, msg: dict) -> dict:
        assert self.proc is not None
        self.round_trips += 1
        self.seq += 1
        seq = msg["seq"] = self.seq
        try:
            line = dumps(msg) + b"\n"
        except (TypeError, ValueError) as exc:
            raise ImplProcessError(f"cannot encode the request: {exc}") from None
        try:
            self.proc.stdin.write(line)  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):
            raise self._exited() from None
        while True:
            reply = self._read_message()
            if "call" in reply:
                self._replay(reply.get("events", []))
                self._answer_call(reply["call"])
                continue
            if reply.get("seq") != seq:
                raise self._fault(f"wrong number of lines: expected the response to request "
                                  f"{seq} ({msg['op']}), got one for {C.short(reply.get('seq'))}")
            return reply

    def _exited(self) -> ImplProcessError:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return self._fault(f"impl process closed its stdout during {self.current_op!r} but did not exit")
        return self._fault(f"impl process exited with code {code} during {self.current_op!r}")

    def _read_message(self) -> dict:
        assert self.proc is not None
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while b"\n" not in self.buf:
            ready, _, _ = select.select([fd], [], [], self.timeout)
            if not ready:
                raise self._fault(f"impl process did not answer {self.current_op!r} within "
                                  f"{self.timeout:g} s (--impl-timeout)")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._exited()
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        self.holds_object = b'"$obj"' in line  # an answer naming an object is never cached
        try:
            reply = loads(line)
        except ValueError:
            raise self._fault(f"impl process answered {self.current_op!r} with a line that is not "
                              f"JSON: {C.short(line.decode('utf-8', 'replace'))}") from None
        if not isinstance(reply, dict) or not ({"ok", "err", "call"} & reply.keys()):
            raise self._fault(f"impl process answered {self.current_op!r} with {C.short(reply)}, "
                              f"not {{\"ok\": ...}} or {{\"err\": ...}}")
        return reply

    def _answer_call(self, call: Any) -> None:
        """A call from the impl into an object the harness passed (e.g. a placement function)."""
        assert self.codec is not None and self.proc is not None
        if not isinstance(call, dict) or call.get("ref") not in self.refs:
            raise self._fault(f"impl process called an unknown reference: {C.short(call)}")
        if not C.is_notification(self.refs[call["ref"]][1]):
            self.prefetch = False  # it may call back while answering a query
        try:
            target, _ = self.refs[call["ref"]]
            args = [self.codec.untag(a, "call.args") for a in call.get("args", [])]
            kwargs = {k: self.codec.untag(a, "call.kwargs") for k, a in (call.get("kwargs") or {}).items()}
            fn = target if call.get("op", "__call__") == "__call__" else getattr(target, call["op"])
            reply: dict = {"ok": self.codec.tagged(fn(*args, **kwargs), "call result")}
        except ENVIRONMENT_ERRORS:
            self.kill()
            raise
        except Exception as exc:  # noqa: BLE001 - the callee's error goes back to the impl
            reply = {"err": error_json(exc, self.codec)}
        try:
            self.proc.stdin.write(dumps(reply) + b"\n")  # type: ignore[union-attr]
        except OSError:
            raise self._exited() from None

    def _make_ref(self, value: Any, tp: Any) -> int:
        if not C.is_notification(tp):
            self.prefetch = False  # the impl may call back while answering
        key = (id(value), tp)
        ref = self.ref_of.get(key)  # an object passed with every call (groups' registry) is one ref
        if ref is None or self.refs[ref][0] is not value:
            ref = len(self.refs) + 1
            self.refs[ref] = (value, tp)
            self.ref_of[key] = ref
        return ref

    def _resolve(self, tag: str, ident: int, tp: Any) -> Any:
        if tag == "$ref":
            if ident not in self.refs:
                raise C.CodecError(f"unknown harness reference {ident}")
            return self.refs[ident][0]
        return self.proxy_for(ident, tp)

    def proxy_for(self, ident: int, tp: Any) -> Any:
        """The proxy of the impl's object `ident`: one proxy per id, kept until the next
        `init` (a server names one object by one id, so `a is b` holds as in-process, and
        the answers and early queries naming the id stay good from step to step)."""
        assert self.schema is not None
        cls_name = tp.__name__ if isinstance(tp, type) and tp.__name__ in self.schema.objects else ""
        cls = remote_class(self, cls_name)
        proxy = self.proxies.get(ident)
        if proxy is None or type(proxy) is not cls:
            proxy = object.__new__(cls)
            proxy._attach(ident)
            self.proxies[ident] = proxy
        return proxy

    def hold(self, handle: int) -> None:
        """One more live proxy of `handle` (a handle dropped but not yet told is kept)."""
        self.live[handle] = self.live.get(handle, 0) + 1
        if handle in self.drops:
            self.drops.remove(handle)

    def release(self, handle: int) -> None:
        """A proxy of `handle` is gone; with the last one the impl is told to drop it."""
        left = self.live.get(handle, 0) - 1
        if left > 0:
            self.live[handle] = left
            return
        self.live.pop(handle, None)
        self.drops.append(handle)

    # one call ----------------------------------------------------------------------------
    def call(self, obj: int | None, op: Op, values: dict[str, Any], cls_name: str,
             hooks: dict[str, Any] | None = None) -> Any:
        if self.proc is None:
            self.ensure()
        assert self.codec is not None and self.schema is not None
        self.current_op = op.name
        if op.kind == "init":
            self.produced = {}
            if self.proxies:
                self.proxies = {}  # a new example: the objects of the last one may go
        if self.hits and op.name not in self.schema.queries:
            self.hits.clear()  # (it holds proxies: released before this request's drops)
        msg: dict[str, Any] = {"op": op.name}
        if obj is not None:
            msg["obj"] = obj
        try:
            encode, sent = self.codec.encode, {}
            for p in op.sent():
                if p.name in values:
                    v = values[p.name]
                    t = type(v)  # a plain int, str or bool where the hint says so is itself
                    sent[p.name] = v if t is p.hint and (t is int or t is str or t is bool) \
                        else encode(v, p.hint, "args." + p.name)
            msg["args"] = sent
            if hooks:
                msg["hooks"] = {name: self.codec.ref(fn, Any, "hooks") for name, fn in hooks.items()}
        except C.CodecError as exc:
            raise ImplProcessError(f"cannot send {op.name}: {exc}") from None
        msg["now_ns"] = self.clock() if self.clock is not None else 0
        query = op.name in self.schema.queries or op is GET_OP
        key = (obj, op.name, repr(msg["args"]), msg["now_ns"]) if query else None
        if query:
            self.recording.append((self.relative(obj), op.name, msg["args"]))
            self.last_key = key
            if key in self.cache:
                return self._result(op, self.cache[key])
        if self.drops:
            msg["drop"], self.drops = self.drops, []
            for stale in self.object_keys:  # answers that may name a dropped object
                self.cache.pop(stale, None)
            self.object_keys.clear()
            self.hits.clear()
        if self.rng is not None:
            state = self.rng.getstate()
            msg["rng"] = [self.rng.getrandbits(32) for _ in range(RNG_WORDS)]
            self.rng.setstate(state)
        if not query:
            self.cache.clear()
            self.hits.clear()
            self.follow[self.epoch[1]] = self.recording
            if self.recording:
                self.history = [(self.epoch[0], self.recording, _positions(self.recording))] \
                    + self.history[:HISTORY - 1]
            self.epoch, self.recording = (obj, op.name, self.epoch[2] + 1), []
        batch = []
        now = msg["now_ns"]
        if self.batch and self.prefetch and self.rng is None:
            self.seq += 1
            msg["seq"] = self.seq
            if not query:
                batch = self._predicted(self.follow.get(op.name, ()), now)
                self.prefetched = (self.epoch[2], now)
            else:  # a miss: asked with what is expected next, once per update and time
                self.cache[key] = None  # not predicted twice
                if self.prefetched != (self.epoch[2], now):
                    self.prefetched = (self.epoch[2], now)
                    batch = self._predicted(self.follow.get(self.epoch[1], ()), now)
                if not batch:
                    batch = self._predicted(self._successors(obj, op.name, msg["args"]), now)
                del self.cache[key]
        if batch:  # the request and the queries that followed last time: one line each way
            reply = self._batch([(None, msg)] + batch, update=not query)[0]
        else:
            reply = self._exchange(msg)
        if not query and not batch:
            self.cache.clear()  # what a callback asked mid-operation is stale now
            self.hits.clear()
        if query and not reply.get("events") and not reply.get("rng_used"):
            self.cache[key] = reply
            if self.holds_object:
                self.object_keys.add(key)
        if self.prefetch and self.rng is None and "ok" in reply \
                and self.prefetched != (self.epoch[2], msg["now_ns"]):
            self.prefetched = (self.epoch[2], msg["now_ns"])
            self._prefetch(self.follow.get(self.epoch[1], ()), msg["now_ns"])
        if "out" in reply:
            self._write_back(op, values, reply["out"])
        value = self._result(op, reply)
        if query and isinstance(value, RemoteObject):
            self.produced[key[:3]] = value._handle  # type: ignore[index]
        return value

    def _write_back(self, op: Op, values: dict[str, Any], out: Any) -> None:
        """In-out arguments (a bytearray the operation fills): their final content."""
        assert self.codec is not None
        if not isinstance(out, dict):
            raise self._fault(f"\"out\" must be an object, got {C.short(out)}")
        hints = {p.name: p.hint for p in op.sent()}
        for name, raw in out.items():
            if hints.get(name) is not bytearray or not isinstance(values.get(name), bytearray):
                raise self._fault(f"\"out\" names {C.short(name)}, not an in-out argument of {op.name!r}")
            try:
                values[name][:] = self.codec.decode(raw, bytearray, f"out.{name}")
            except C.CodecError as exc:
                raise self._fault(f"impl process answered {op.name!r} with a wrong type: {exc}") from None

    def _predicted(self, predicted: Any, now_ns: int) -> list:
        """(cache key, request) of the queries that followed this update last time and are
        not cached yet (a query passing a reference or with no object is not asked early)."""
        batch = []
        texts = self.texts
        if len(texts) > 4096:
            texts.clear()
        epoch_obj, main, cache, seq = self.epoch[0], self.main, self.cache, self.seq
        chosen: set = set()  # no duplicates in one batch
        for rel, name, args in predicted:
            obj = epoch_obj if rel == "self" else main if rel == "main" else rel
            if rel == "$result":  # the object the batch's first request answers
                obj = rel
            known = texts.get(id(args))  # the recorded arguments are kept: their text too
            if known is not None and known[0] is args:
                text, ref = known[1], known[2]
            else:
                text = repr(args)
                ref = "$ref" in text
                texts[id(args)] = (args, text, ref)
            key = (obj, name, text, now_ns)
            if ref or obj is None or key in cache or key in chosen:
                continue
            chosen.add(key)
            seq += 1
            batch.append((key, {"op": name, "obj": {"$result": 0} if obj == "$result" else obj, "args": args,
                                "now_ns": now_ns, "seq": seq}))
        self.seq = seq
        return batch

    def _successors(self, obj: int | None, name: str, args: dict) -> list:
        """The queries that followed (obj, name, args) the last time it was asked, in the
        current run or one of the last HISTORY runs (absolute object ids)."""
        current = self.recording[:-1]  # (short: scanned, not indexed)
        runs = [(self.epoch[0], current, {name: range(len(current))})] + self.history
        for owner, run, positions in runs:
            for i in reversed(positions.get(name, ())):
                rel, n, a = run[i]
                if n == name and a == args and (owner if rel == "self" else self.absolute(rel)) == obj:
                    return [(owner if r == "self" else self.absolute(r), n2, a2) for r, n2, a2 in run[i + 1:]]
        # never asked on this object (a collector just handed out): what followed the same
        # question on another object of its class, with that object read as this one
        cls_name = self._class_of(obj)
        if cls_name is None:
            return []
        for owner, run, positions in runs:
            for i in reversed(positions.get(name, ())):
                rel, n, a = run[i]
                other = owner if rel == "self" else self.absolute(rel)
                if n == name and a == args and other != obj and self._class_of(other) == cls_name:
                    out = []
                    for r, n2, a2 in run[i + 1:]:
                        o = owner if r == "self" else self.absolute(r)
                        out.append((obj if o == other else o, n2, a2))
                    return out
        return self._chained(runs, obj, name, args) if self.chain else []

    def _chained(self, runs: list, obj: Any, name: str, args: dict) -> list:
        """A question asked of this object before with other arguments (`metrics_collector(3)`
        when 5 is asked): what followed it, with its arguments read as these and the object
        it answered read as the one this answer names ({"$result": 0} in the batch)."""
        for owner, run, positions in runs:
            for i in reversed(positions.get(name, ())):
                rel, n, a = run[i]
                if n != name or a == args or type(a) is not dict or a.keys() != args.keys() \
                        or (owner if rel == "self" else self.absolute(rel)) != obj:
                    continue
                produced = self.produced.get((obj, n, repr(a)))
                swap = {v: args[k] for k, v in a.items()
                        if (type(v) is int or type(v) is str) and type(args[k]) is type(v)}
                out = []
                for r, n2, a2 in run[i + 1:]:
                    o = owner if r == "self" else self.absolute(r)
                    if produced is not None and o == produced:
                        o = "$result"
                    if swap and type(a2) is dict:
                        a2 = {k: swap.get(v, v) if type(v) is int or type(v) is str else v for k, v in a2.items()}
                    out.append((o, n2, a2))
                return out
        return []

    def _class_of(self, obj: Any) -> str | None:
        """The schema class of a live impl object of this example (None if not known)."""
        if obj is None:
            return None
        if obj == self.main:
            return self.schema.main  # type: ignore[union-attr]
        proxy = self.proxies.get(obj)
        return type(proxy)._class_name if proxy is not None else None

    def relative(self, obj: int | None) -> Any:
        """How a prediction names an object: "self" (the last update's), "main" (the last
        init's, so a prediction outlives its example) or its id."""
        return "self" if obj == self.epoch[0] else "main" if obj == self.main and obj is not None else obj

    def absolute(self, rel: Any) -> int | None:
        return self.epoch[0] if rel == "self" else self.main if rel == "main" else rel

    def _batch(self, batch: list, update: bool = True) -> list:
        """Requests in one line, answered in one line (the server said "batch": true); the
        answers of the queries (key not None) are cached, the others returned in order.
        A query answer with events, randomness or an error is not kept."""
        self.current_op = "batch" if batch[0][0] is not None else batch[0][1]["op"]
        answer = self._exchange({"op": "batch", "requests": [m for _, m in batch]})
        replies = answer.get("ok")
        if not (isinstance(replies, list) and len(replies) == len(batch)
                and all(isinstance(r, dict) for r in replies)):
            raise self._fault(f"a batch of {len(batch)} requests answered with {C.short(replies)}")
        objects = self.holds_object
        if batch[0][0] is None and update:
            self.cache.clear()  # the update ran: what a callback asked during it is stale now
            self.hits.clear()
        out = []
        for (key, m), reply in zip(batch, replies):
            if reply.get("seq") != m["seq"]:
                raise self._fault(f"a batch answered request {C.short(reply.get('seq'))} in place of {m['seq']}")
            if key is not None and key[0] == "$result":  # named by the first answer's object
                first = replies[0].get("ok")
                ident = first.get("$obj") if type(first) is dict else None
                if type(ident) is not int:
                    continue
                key, m = (ident,) + key[1:], dict(m, obj=ident)
            if key is None:
                if not ({"ok", "err"} & reply.keys()):
                    raise self._fault(f"impl process answered {m['op']!r} with {C.short(reply)}, "
                                      f"not {{\"ok\": ...}} or {{\"err\": ...}}")
                out.append(reply)
            elif not (reply.get("events") or reply.get("rng_used") or "ok" not in reply):
                self.cache[key] = reply
                if objects and m["op"] in self.schema.holders and _names_object(reply["ok"]):
                    self.object_keys.add(key)
                self._lazy_hit(m, reply)
        return out

    def _lazy_hit(self, m: dict, reply: dict) -> None:
        """An answer asked early goes into the fast cache too, decoded on its first use."""
        obj, args = m.get("obj"), m["args"]
        if obj is None:
            return
        values = tuple(args.values())
        for v in values:
            t = type(v)
            if t is not int and t is not str:
                return
        proxy = self.proxies.get(obj)
        cls_name = type(proxy)._class_name if proxy is not None else self.schema.main \
            if obj == self.main else None  # type: ignore[union-attr]
        if cls_name is None:
            return
        shape = (cls_name, m["op"], tuple(args))
        spec = self.lazy_specs.get(shape)
        if spec is None:  # once per class, operation and argument names
            op = self.schema.op(cls_name, m["op"])  # type: ignore[union-attr]
            spec = self.lazy_specs[shape] = False if op is None or op.kind != "method" or op.injects \
                or op.has_out or shape[2] != op.names or m["op"] not in self.schema.queries \
                else (op, self.codec._decoder_of(op.returns), f"{op.name} result")  # type: ignore[union-attr]
        if spec:
            self.hits[(obj, m["op"], values, m["now_ns"])] = (args, _LAZY, reply, spec)

    def decode_hit(self, key: tuple, hit: tuple) -> Any:
        """The first use of an answer asked early: decoded, and kept decoded when it can be shared."""
        _, _, reply, (op, decode, where) = hit
        if "err" in reply:
            value = self._result(op, reply)
            share = _shareable(value)
        else:  # asked early and kept: a plain answer, no events, no randomness
            raw = reply["ok"]
            text = None
            if type(raw) is dict or type(raw) is list:
                # the same JSON, byte for byte, as an answer decoded before (the policy, an
                # unchanged abstract state): its immutable value again, not decoded again
                try:
                    text = (decode, dumps(raw))
                except (TypeError, ValueError):
                    pass
                known = self.decoded.get(text) if text is not None else None
                if known is not None:
                    value, share = known
                    if share == 1:
                        reply["value"] = value
                    self.hits[key] = (hit[0], value, share == 2)
                    return list(value) if share == 2 else value
            try:
                value = decode(raw, where)
            except C.CodecError as exc:
                raise self._fault(f"impl process answered {op.name!r} with a wrong type: {exc}") from None
            share = _shareable(value)
            if isinstance(value, RemoteObject):
                self.produced[(key[0], key[1], repr(hit[0]))] = value._handle
            if share == 1 and not isinstance(value, RemoteObject):
                reply["value"] = value  # immutable: the slow cache hands it out as is too
                if text is not None:
                    self._remember(text, value, 1)
            elif share == 2 and text is not None:
                self._remember(text, value, 2)
        if share:
            self.hits[key] = (hit[0], value, share == 2)
        else:
            del self.hits[key]
        return value

    def _remember(self, text: tuple, value: Any, share: int) -> None:
        """A decoded answer free of impl objects, by its decoder and exact JSON text."""
        if len(self.decoded) >= DECODED:
            self.decoded.clear()
        self.decoded[text] = (tuple(value) if share == 2 else value, share)

    def _prefetch(self, predicted: Any, now_ns: int) -> None:
        """Send the queries that followed this update last time, in one write, and cache the
        answers: every later call of the step is then a cache hit (queries are read-only,
        so asking early changes nothing). Off once the impl calls back or draws randomness."""
        assert self.proc is not None
        batch = self._predicted(predicted, now_ns)
        if not batch:
            return
        if self.batch:  # the server takes them as one line and answers with one line
            self._batch(batch)
            return
        for key, _ in batch:
            self.cache[key] = None
        data = b"".join(dumps(m) + b"\n" for _, m in batch)
        try:
            self.proc.stdin.write(data)  # type: ignore[union-attr]
        except OSError:
            raise self._exited() from None
        for key, m in batch:
            self.current_op = m["op"]
            reply = self._read_message()
            if "call" in reply:
                raise self._fault(f"impl process called back while answering the query {m['op']!r}")
            if reply.get("seq") != m["seq"]:
                raise self._fault(f"wrong number of lines: expected the response to request "
                                  f"{m['seq']} ({m['op']}), got one for {C.short(reply.get('seq'))}")
            if reply.get("events") or reply.get("rng_used") or "ok" not in reply:
                del self.cache[key]
            else:
                self.cache[key] = reply
                if self.holds_object:
                    self.object_keys.add(key)
                self._lazy_hit(m, reply)
        for key in [k for k, v in self.cache.items() if v is None]:
            del self.cache[key]

    def _result(self, op: Op, reply: dict) -> Any:
        assert self.codec is not None and self.schema is not None
        used = reply.get("rng_used", 0)
        if used and self.rng is None:
            raise self._fault(f"\"rng_used\" {C.short(used)} but no randomness was sent")
        if self.rng is not None:
            if not (isinstance(used, int) and 0 <= used <= RNG_WORDS):
                raise self._fault(f"\"rng_used\" must be 0..{RNG_WORDS}, got {C.short(used)}")
            for _ in range(used):
                self.rng.getrandbits(32)
        events = reply.get("events", _NO_EVENTS)
        if "err" in reply:
            try:
                exc = self.codec.exception(reply["err"], f"{op.name} error")
            except C.CodecError as error:
                raise self._fault(f"impl process answered {op.name!r} with a malformed error: {error}") from None
            if events is not _NO_EVENTS:
                self._replay(events)
            raise exc
        try:
            if op.kind == "init":
                value = reply["ok"].get("$obj") if isinstance(reply["ok"], dict) else None
                if not isinstance(value, int) or isinstance(value, bool):
                    raise C.CodecError(f"init result: expected an object {{\"$obj\": N}}, got {C.short(reply['ok'])}")
            elif "value" in reply:  # a cached answer, decoded once (immutable: shared)
                value = reply["value"]
            else:
                value = self.codec.decode(reply["ok"], op.returns, f"{op.name} result")
                if "seq" in reply and not events and _immutable(value):
                    reply["value"] = value
        except C.CodecError as exc:
            raise self._fault(f"impl process answered {op.name!r} with a wrong type: {exc}") from None
        if events is not _NO_EVENTS:
            self._replay(events)
        return value

    def _replay(self, events: Any) -> None:
        """Notification callbacks, in the order the impl fired them."""
        assert self.codec is not None
        if not isinstance(events, list):
            raise self._fault(f"\"events\" must be a list, got {C.short(events)}")
        for ev in events:
            ref = ev.get("ref") if isinstance(ev, dict) else None
            if ref not in self.refs:
                raise self._fault(f"event for unknown callback {C.short(ev)}")
            fn, tp = self.refs[ref]
            arg_types = typing.get_args(tp)[0] if typing.get_args(tp) else []
            raw = ev.get("args", [])
            if not isinstance(raw, list) or len(raw) != len(arg_types):
                raise self._fault(f"event {C.short(ev)} does not match {C.type_name(tp)}")
            try:
                args = [self.codec.decode(a, t, "event") for a, t in zip(raw, arg_types)]
            except C.CodecError as exc:
                raise self._fault(f"event {C.short(ev)}: {exc}") from None
            fn(*args)


GET_OP = Op("get", "method", (Param("name", str, "value"),), Any)
SET_OP = Op("set", "method", (Param("name", str, "value"), Param("value", Any, "value")), type(None))
DEL_OP = Op("delete", "method", (Param("name", str, "value"),), type(None))
CALL_OP = Op("call", "method", (Param("name", str, "value"), Param("args", list, "value")), Any)


class RemoteObject:
    """Base of the proxy classes: an object living in the impl process."""

    _process: ImplProcess
    _class_name: str
    _handle: int | None = None
    _generation: int = 0

    @property
    def _protocol_ref(self) -> tuple[str, int] | None:
        return ("$obj", self._handle) if self._handle is not None else None

    def __getattr__(self, name: str) -> Any:
        """A member the schema does not list: a data attribute (op "get", tagged value) or a
        private method of the model's class (op "call", tagged arguments). Python servers
        answer both; they let a white-box harness (load_balancer's) reach the internals."""
        if name.startswith("__") or self._handle is None:
            raise AttributeError(name)
        model_cls = self._process.schema.classes.get(self._class_name)  # type: ignore[union-attr]
        if callable(getattr(model_cls, name, None)):
            handle, process = self._handle, self._process

            def private(*args: Any) -> Any:
                return process.call(handle, CALL_OP, {"name": name, "args": list(args)}, self._class_name)
            return private
        return self._process.call(self._handle, GET_OP, {"name": name}, self._class_name)

    def __setattr__(self, name: str, value: Any) -> None:
        """Setting an attribute of the remote object (op "set"): a harness hook such as
        load_balancer's `_rr_counter` or `_interleave` (a function becomes a reference)."""
        if name in ("_handle", "_generation") or self._handle is None:
            object.__setattr__(self, name, value)
            return
        self._process.call(self._handle, SET_OP, {"name": name, "value": value}, self._class_name)

    def __delattr__(self, name: str) -> None:
        self._process.call(self._handle, DEL_OP, {"name": name}, self._class_name)

    def __call__(self, *args: Any) -> Any:
        """A callable remote object (a bound method the harness read with "get")."""
        return self._process.call(self._handle, CALL_OP, {"name": "__call__", "args": list(args)},
                                  self._class_name)

    def _attach(self, handle: int) -> None:
        self._handle = handle
        self._generation = self._process.generation
        self._process.hold(handle)
        weakref.finalize(self, _dropped, self._process, handle, self._generation)


def _dropped(process: ImplProcess, handle: int, generation: int) -> None:
    if process.generation == generation and process.proc is not None:
        process.release(handle)


def _hooks(obj: RemoteObject) -> dict[str, Any]:
    """Methods a harness subclass of the proxy overrides (load_balancer's `_vnode_hashes`):
    sent with `init` as "hooks", so the served object calls back into them."""
    hooks: dict[str, Any] = {}
    for klass in type(obj).__mro__:
        if klass.__dict__.get("_process") is not None:
            break
        for name, member in vars(klass).items():
            if callable(member) and not name.startswith("__") and name not in hooks:
                hooks[name] = getattr(obj, name)
    return hooks


def _bind(op: Op, args: tuple, kwargs: dict) -> dict[str, Any]:
    if not kwargs and len(args) == len(op.names):  # every argument, in order: the usual call
        return dict(zip(op.names, args))
    params = op.params
    values: dict[str, Any] = {}
    if len(args) > len(params):
        raise TypeError(f"{op.name}() takes {len(params)} arguments, {len(args)} given")
    for p, a in zip(params, args):
        values[p.name] = a
    for k, v in kwargs.items():
        if k in values or not any(p.name == k for p in params):
            raise TypeError(f"{op.name}() got an unexpected or repeated argument {k!r}")
        values[k] = v
    for p in params:
        if p.name not in values:
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"{op.name}() missing argument {p.name!r}")
            values[p.name] = p.default
    return values


def _injected(process: ImplProcess, op: Op, values: dict[str, Any]) -> None:
    if not op.injects:
        return
    for p in op.params:
        if p.role == "clock" and values.get(p.name) is not None:
            process.clock = values[p.name]
        elif p.role == "rng":
            process.rng = values.get(p.name) or random.Random()


def _method(name: str, op: Op, query: bool = False) -> Callable:
    fast = query and not op.injects and not op.has_out and op.kind == "method"
    arity = len(op.names)

    def method(self: RemoteObject, *args: Any, **kwargs: Any) -> Any:
        process = self._process
        if self._generation != process.generation or process.proc is None:
            raise ImplProcessError(f"impl process was restarted; object {self._handle} is gone")
        key = None
        if fast and not kwargs and len(args) == arity and (not arity or _plain(args)):
            # a query asked again in the same state: answered from the fast cache without
            # binding, encoding or decoding (its arguments are recorded for prediction)
            clock = process.clock
            handle = self._handle
            key = (handle, name, args, clock() if clock is not None else 0)
            hit = process.hits.get(key)
            if hit is not None:
                rel = "self" if handle == process.epoch[0] else "main" if handle == process.main else handle
                process.recording.append((rel, name, hit[0]))
                if hit[1] is _LAZY:
                    return process.decode_hit(key, hit)
                return list(hit[1]) if hit[2] else hit[1]
        values = _bind(op, args, kwargs)
        _injected(process, op, values)
        process.last_key = None
        value = process.call(self._handle, op, values, self._class_name)
        if key is not None and process.last_key is not None:
            reply = process.cache.get(process.last_key)
            if reply is not None and key[3] == process.last_key[3]:
                share = 1 if reply.get("value", reply) is value else _shareable(value)
                if share:
                    process.hits[key] = (process.recording[-1][2], value, share == 2)
        return value
    method.__name__ = name
    return method


def _positions(run: list) -> dict[str, list[int]]:
    """Where each operation occurs in a run of queries (searched from the end)."""
    out: dict[str, list[int]] = {}
    for i, entry in enumerate(run):
        name = entry[1]
        if name in out:
            out[name].append(i)
        else:
            out[name] = [i]
    return out


def _plain(args: tuple) -> bool:
    """Arguments that are exactly ints or strings (True, 1.0 and 1 would share a key)."""
    for a in args:
        t = type(a)
        if t is not int and t is not str:
            return False
    return True


def _shareable(value: Any) -> int:
    """1: the decoded answer can be handed out again as is (immutable, or an impl object's
    proxy, one per id); 2: a list of such values, handed out as a fresh copy; 0: neither."""
    if isinstance(value, RemoteObject) or _immutable(value):
        return 1
    if type(value) is list and all(_immutable(v) for v in value):
        return 2
    return 0


def _static(name: str, op: Op) -> Callable:
    def static(cls: type, *args: Any, **kwargs: Any) -> Any:
        values = _bind(op, args, kwargs)
        _injected(cls._process, op, values)
        return cls._process.call(None, op, values, cls._class_name)
    static.__name__ = name
    return classmethod(static)


def _private(name: str) -> Callable:
    def private(self: RemoteObject, *args: Any) -> Any:
        return self._process.call(self._handle, CALL_OP, {"name": name, "args": list(args)}, self._class_name)
    private.__name__ = name
    return private


def _init(op: Op) -> Callable:
    def __init__(self: RemoteObject, *args: Any, **kwargs: Any) -> None:
        process = self._process
        values = _bind(op, args, kwargs)
        process.rng = None
        _injected(process, op, values)
        handle = process.call(None, op, values, self._class_name, _hooks(self))
        process.main = handle
        self._attach(handle)
    return __init__


_REMOTE_CLASSES: dict[tuple[int, str], type] = {}


def remote_class(process: ImplProcess, cls_name: str) -> type:
    """The proxy class for one class of the schema, bound to one process."""
    key = (id(process), cls_name)
    if key not in _REMOTE_CLASSES:
        schema = process.schema
        assert schema is not None
        supported = set(process.operations.get(cls_name, []))
        if cls_name not in schema.objects:  # an object the schema does not describe
            cls = type("RemoteObject", (RemoteObject,), {"_process": process, "_class_name": cls_name})
            _REMOTE_CLASSES[key] = cls
            return cls
        body: dict[str, Any] = {"_process": process, "_class_name": cls_name,
                                # the impl module: Hypothesis draws the same constants as in-process
                                "__module__": process.component.impl_cls.__module__,  # type: ignore[union-attr]
                                "IMPL_SPEC": "cmd:" + process.command,
                                "HAS_ABSTRACT": "abstract" in supported}
        for name, op in schema.objects[cls_name].items():
            if name not in supported:
                continue
            if op.kind == "init":
                body["__init__"] = _init(op)
            elif op.kind == "static":
                body[name] = _static(name, op)
            else:
                body[name] = _method(name, op, name in schema.queries)
        model_cls = schema.classes.get(cls_name)
        for name in dir(model_cls):  # private methods, so a harness subclass's super() finds them
            if name.startswith("_") and not name.startswith("__") and not hasattr(RemoteObject, name) \
                    and callable(getattr(model_cls, name, None)) and name not in body:
                body[name] = _private(name)
        if cls_name == schema.main and "abstract" not in supported:
            def abstract(self: Any) -> Any:
                raise NotServed("the impl process does not serve abstract")
            body["abstract"] = abstract
        if cls_name == schema.main:
            body["__init__"] = body.get("__init__", _init(schema.objects[cls_name]["init"]))
        cls = type(cls_name, (RemoteObject,), body)
        cls.__qualname__ = f"{cls_name}[{process.command}]"
        _REMOTE_CLASSES[key] = cls
    return _REMOTE_CLASSES[key]


_PROCESSES: dict[tuple[str, str | None, float], ImplProcess] = {}


def command_impl(command: str, component: Component | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> type:
    """The impl class that drives `command` (started now; ImplStartError when it cannot be).

    One process per (command, component, timeout) for the life of this Python process.
    """
    key = (command, component.name if component else None, timeout)
    process = _PROCESSES.get(key)
    if process is None or process.proc is None:
        process = process or ImplProcess(command, component, timeout)
        process.start()
        _PROCESSES[key] = process
    return remote_class(process, process.schema.main)  # type: ignore[union-attr]


def process_of(cls: type) -> ImplProcess | None:
    return getattr(cls, "_process", None) if isinstance(cls, type) and issubclass(cls, RemoteObject) else None


def close_command(cls: type) -> None:
    """End the process behind a class of `command_impl` (a served mutant's, after its run)."""
    process = process_of(cls)
    if process is None:
        return
    process.close()
    for key, value in list(_PROCESSES.items()):
        if value is process:
            del _PROCESSES[key]
    for key in [k for k in _REMOTE_CLASSES if k[0] == id(process)]:
        del _REMOTE_CLASSES[key]


def close_all() -> None:
    for process in _PROCESSES.values():
        process.close()
    _PROCESSES.clear()


atexit.register(close_all)  # a hung impl process does not outlive the run
