"""`meshspec serve C [--impl module:Class]`: the subject protocol's reference server.

It speaks meshspec.protocol on stdin/stdout for any Python class with the component's API
(the registered impl by default), so the protocol itself is tested end to end: a fuzz run
through `--impl-cmd "python -m meshspec serve C"` must give the verdicts of the in-process
run. Whatever the served code prints goes to stderr; stdout carries only protocol lines.
"""
from __future__ import annotations

import os
import random
import sys
from typing import Any, BinaryIO

import attrs

from meshspec import codec as C
from meshspec.lockstep import Component
from meshspec.protocol import (CALL_OP, DEL_OP, GET_OP, PROTOCOL_VERSION, SET_OP, Schema, dumps, error_json, loads,
                               remote_error, schema_of)


class ProtocolError(Exception):
    """A request this server cannot understand (answered as an error, the server goes on)."""


class TapeRandom(random.Random):
    """A random.Random whose 32-bit outputs are the words the harness sent with the request."""

    def __init__(self) -> None:
        super().__init__(0)
        self.tape: list[int] = []
        self.used = 0

    def load(self, words: list[int]) -> None:
        self.tape, self.used = words, 0

    def _word(self) -> int:
        if self.used >= len(self.tape):
            raise ProtocolError(f"the request's {len(self.tape)} random words are used up")
        word = self.tape[self.used]
        self.used += 1
        return word

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        out, shift = 0, 0
        while k > 0:
            word = self._word()
            if k < 32:
                word >>= 32 - k
            out |= word << shift
            shift += 32
            k -= 32
        return out

    def random(self) -> float:
        a, b = self._word() >> 5, self._word() >> 6
        return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0)


class RequestClock:
    """The injected clock of the served objects: the `now_ns` of the current request."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class Server:
    def __init__(self, component: Component, impl_cls: type, stdin: BinaryIO, stdout: BinaryIO,
                 callbacks: str = "events") -> None:
        self.component = component
        self.callbacks = callbacks  # "events" (after the answer) or "calls" (at once, re-entrant)
        self.impl_cls = impl_cls
        self.schema: Schema = schema_of(component)
        self.stdin, self.stdout = stdin, stdout
        try:
            self.fd: int | None = stdin.fileno()
        except (AttributeError, OSError, ValueError):  # an in-memory stream
            self.fd = None
        self.buf = b""
        #: (class name, operation) -> (argument names, their types, result encoder, where)
        #: of an operation whose arguments are all positional ints, strings or bools (the
        #: JSON values are the arguments), or False
        self.plain_ops: dict[tuple[str, str], Any] = {}
        self.objects: dict[int, tuple[Any, str]] = {}
        self.ids: dict[int, int] = {}  # id() of a registered object -> its protocol id
        self.next_id = 1
        self.clock = RequestClock()
        self.rng = TapeRandom()
        self.events: list[dict] = []
        self.out: dict[str, Any] = {}
        self.hooked: dict[tuple, type] = {}
        self.codec = C.Codec(self.schema.classes, "$obj", self._register, self._resolve,
                             lambda n, m, f: remote_error(self.schema, n, m, f),
                             local_types(impl_cls, self.schema.classes))

    # objects and references --------------------------------------------------------------
    def _register(self, value: Any, tp: Any) -> int:
        """The id of an object handed to the harness: the same id for the same object until
        the harness drops it (ids are never reused)."""
        ident = self.ids.get(id(value))
        if ident is not None and self.objects.get(ident, (None,))[0] is value:
            return ident
        cls_name = next((c.__name__ for c in type(value).__mro__ if c.__name__ in self.schema.objects), "")
        ident, self.next_id = self.next_id, self.next_id + 1
        self.objects[ident] = (value, cls_name)
        self.ids[id(value)] = ident
        return ident

    def _resolve(self, tag: str, ident: int, tp: Any) -> Any:
        if tag == "$obj":
            if ident not in self.objects:
                raise C.CodecError(f"unknown object {ident}")
            return self.objects[ident][0]
        if C.is_notification(tp) and self.callbacks == "events":
            return EventStub(self, ident, tp)
        return RemoteRef(self, ident)

    def _private(self, target: Any, name: str, args: list) -> Any:
        """A member the schema does not list. A hook the harness overrides is called
        unhooked here: the harness asks for the served class's own version (its `super()`)."""
        if name == "__call__":
            return target(*args)
        if name in getattr(target, "_protocol_hooks", {}):
            return getattr(self.impl_cls, name)(target, *args)
        return getattr(target, name)(*args)

    def _hooked(self, cls: type, hooks: Any, args: list, kwargs: dict) -> Any:
        """An instance of a subclass whose `hooks` methods call back into the harness."""
        if not isinstance(hooks, dict):
            raise ProtocolError("\"hooks\" must be an object")
        refs = {name: self.codec.untag(ref, f"hooks.{name}") for name, ref in hooks.items()}
        key = (cls, frozenset(refs))
        if key not in self.hooked:
            body = {name: _hook(name) for name in refs}
            self.hooked[key] = type(cls.__name__, (cls,), body)
        sub = self.hooked[key]
        obj = sub.__new__(sub)
        obj._protocol_hooks = refs
        obj.__init__(*args, **kwargs)
        return obj

    def operations(self) -> dict[str, list[str]]:
        ops = {}
        for cls_name, table in self.schema.objects.items():
            if cls_name == self.schema.main:
                ops[cls_name] = [n for n in table if n == "init" or callable(getattr(self.impl_cls, n, None))]
            else:
                ops[cls_name] = list(table)
        return ops

    # the loop ----------------------------------------------------------------------------
    def run(self) -> int:
        readline, write, answer = self.readline, self.write, self.answer
        while True:
            line = readline()
            if not line:
                return 0
            if not line.strip():
                continue
            write(answer(line))

    def readline(self) -> bytes:
        """The next line of stdin (b"" at its end): `os.read` in large chunks on a pipe,
        split here, so a batch of lines costs one system call, not one per line."""
        if self.fd is None:
            return self.stdin.readline()
        buf = self.buf
        end = buf.find(b"\n")
        while end < 0:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                self.buf = b""
                return buf
            buf += chunk
            end = buf.find(b"\n", len(buf) - len(chunk))
        self.buf = buf[end + 1:]
        return buf[:end + 1]

    def write(self, msg: dict) -> None:
        self.stdout.write(dumps(msg) + b"\n")  # one write per message (stdout is unbuffered)
        self.stdout.flush()

    def answer(self, line: bytes) -> dict:
        try:
            msg = loads(line)
            if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
                raise ProtocolError("a request is an object with an \"op\"")
        except (ValueError, ProtocolError) as exc:
            return {"err": {"type": "ProtocolError", "msg": str(exc)}, "seq": None}
        seq = msg.get("seq")
        if msg["op"] == "handshake":
            return {"ok": {"protocol": PROTOCOL_VERSION, "component": self.component.name,
                           "operations": self.operations(), "batch": True, "chain": True}, "seq": seq}
        if msg["op"] == "batch":  # read-only queries asked early, answered in one line
            requests = msg.get("requests")
            if not isinstance(requests, list):
                return {"err": {"type": "ProtocolError", "msg": "\"requests\" must be a list"}, "seq": seq}
            answer_one, results = self.answer_one, []
            for r in requests:
                if type(r) is dict and type(r.get("obj")) is dict:  # {"$result": K}: chained
                    k = r["obj"].get("$result")
                    earlier = results[k].get("ok") if type(k) is int and 0 <= k < len(results) else None
                    ident = earlier.get("$obj") if type(earlier) is dict else None
                    if type(ident) is not int:
                        results.append({"err": {"type": "ProtocolError", "msg": f"request {C.short(k)} of "
                                        "the batch answered no object"}, "seq": r.get("seq")})
                        continue
                    r = dict(r, obj=ident)
                results.append(answer_one(r))
            return {"ok": results, "seq": seq}
        return self.answer_one(msg)

    def answer_one(self, msg: Any) -> dict:
        """One request's answer. The common case first: a method of a known object whose
        arguments are plain ints, strings or bools (most of what the harness asks), with no
        random words and no drops; anything else takes the general path."""
        if type(msg) is dict and "rng" not in msg and "drop" not in msg:
            obj, name, now = msg.get("obj"), msg.get("op"), msg.get("now_ns", 0)
            entry = self.objects.get(obj) if type(obj) is int else None
            if entry is not None and type(now) is int and type(name) is str:
                plain = self.plain_ops.get((entry[1], name))
                raw = msg.get("args") or {}
                if plain and type(raw) is dict and len(raw) == len(plain[0]):
                    names, hints, encode, where = plain
                    fn = getattr(entry[0], name, None)
                    values = [raw.get(n) for n in names]
                    for v, t in zip(values, hints):
                        if type(v) is not t:
                            break
                    else:
                        if callable(fn):
                            return self._answer_plain(msg, fn, values, now, encode, where)
        return self._answer_one(msg)

    def _answer_plain(self, msg: dict, fn: Any, values: list, now: int, encode: Any, where: str) -> dict:
        if self.events:
            self.events = []
        if self.out:
            self.out = {}
        rng = self.rng
        if rng.tape or rng.used:
            rng.load([])
        self.clock.now = now
        reply: dict[str, Any]
        try:
            reply = {"ok": encode(fn(*values), where)}
        except C.CodecError as exc:
            reply = {"err": {"type": "ProtocolError", "msg": str(exc)}}
        except Exception as exc:  # noqa: BLE001 - every error of the served code is an answer
            reply = {"err": error_json(exc, self.codec)}
        reply["seq"] = msg.get("seq")
        if self.events:
            reply["events"] = self.events
        return reply

    def _answer_one(self, msg: Any) -> dict:
        if type(msg) is not dict or type(msg.get("op")) is not str:
            return {"err": {"type": "ProtocolError", "msg": "a request is an object with an \"op\""}}
        seq = msg.get("seq")
        if self.events:
            self.events = []
        if self.out:
            self.out = {}
        words = msg.get("rng")
        rng = self.rng
        if words:
            rng.load(list(words))
        elif rng.tape or rng.used:
            rng.load([])
        reply: dict[str, Any]
        try:
            reply = {"ok": self.dispatch(msg)}
        except C.CodecError as exc:
            reply = {"err": {"type": "ProtocolError", "msg": str(exc)}}
        except Exception as exc:  # noqa: BLE001 - every error of the served code is an answer
            reply = {"err": error_json(exc, self.codec)}
        reply["seq"] = seq
        if self.out:
            reply["out"] = self.out
        if self.events:
            reply["events"] = self.events
        if words:
            reply["rng_used"] = self.rng.used
        return reply

    def _plain_op(self, cls_name: str, name: str) -> Any:
        op = self.schema.op(cls_name, name)
        if op is None or op.kind != "method" or op.plain is None:
            return False
        return (op.names, op.plain, self.codec._encoder_of(op.returns), f"{name} result")

    def dispatch(self, msg: dict) -> Any:
        drop = msg.get("drop")
        if drop:
            for ident in drop:
                gone = self.objects.pop(ident, None)
                if gone is not None and self.ids.get(id(gone[0])) == ident:
                    del self.ids[id(gone[0])]
        now = msg.get("now_ns", 0)
        if type(now) is not int:
            raise ProtocolError(f"now_ns must be an integer, got {C.short(now)}")
        self.clock.now = now
        name = msg["op"]
        if "obj" in msg:
            if msg["obj"] not in self.objects:
                raise ProtocolError(f"unknown object {C.short(msg['obj'])}")
            target, cls_name = self.objects[msg["obj"]]
            plain = self.plain_ops.get((cls_name, name))
            if plain is None:
                plain = self.plain_ops[(cls_name, name)] = self._plain_op(cls_name, name)
            if plain:  # the common case: no binding, no decoding
                names, hints, encode, where = plain
                raw = msg.get("args") or {}
                fn = getattr(target, name, None)
                if type(raw) is dict and len(raw) == len(names) and callable(fn):
                    if not names:
                        return encode(fn(), where)
                    values = [raw.get(n) for n in names]
                    for v, t in zip(values, hints):
                        if type(v) is not t:
                            break
                    else:
                        return encode(fn(*values), where)
            op = self.schema.op(cls_name, name)
            fn = getattr(target, name, None)
            if name == "get" and op is None:
                op, fn = GET_OP, lambda name: getattr(target, name)
            elif name == "set" and op is None:
                op, fn = SET_OP, lambda name, value: setattr(target, name, value)
            elif name == "delete" and op is None:
                op, fn = DEL_OP, lambda name: delattr(target, name)
            elif name == "call" and op is None:
                op, fn = CALL_OP, lambda name, args: self._private(target, name, args)
        else:
            cls_name = self.schema.main
            op = self.schema.op(cls_name, name)
            fn = self.impl_cls if name == "init" else getattr(self.impl_cls, name, None)
            if op is not None and op.kind == "method":
                op = None
        if op is None or not callable(fn):
            raise ProtocolError(f"{cls_name} has no operation {name!r}")
        raw = msg.get("args") or {}
        if not isinstance(raw, dict):
            raise ProtocolError("\"args\" must be an object")
        plain = op.plain
        if plain is not None and len(raw) == len(plain) and name != "init":
            # every argument a positional int, str or bool: the JSON values are the arguments
            values = [raw.get(n) for n in op.names]
            if all(type(v) is t for v, t in zip(values, plain)):
                return self.codec.encode(fn(*values), op.returns, f"{name} result")
        names = op.sent_names
        for key in raw:
            if key not in names:
                raise ProtocolError(f"{name} has no argument {key!r}")
        # positionally up to the first keyword-only or left-out parameter, as callers do
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        positional = True
        decode = self.codec.decode
        for p in op.params:
            if p.role == "clock":
                value: Any = self.clock
            elif p.role == "rng":
                value = self.rng
            elif p.name in raw:
                value = decode(raw[p.name], p.hint, "args." + p.name)
            else:
                positional = False
                continue
            if positional and not p.keyword_only:
                args.append(value)
            else:
                positional = False
                kwargs[p.name] = value
        if name == "init" and msg.get("hooks"):
            result = self._hooked(fn, msg["hooks"], args, kwargs)
        else:
            result = fn(*args, **kwargs)
        if op.has_out:
            kwargs.update(zip((p.name for p in op.params), args))
            self.out = {p.name: self.codec.encode(kwargs[p.name], p.hint, f"args.{p.name}")
                        for p in op.sent() if p.hint is bytearray and p.name in kwargs}
        if name == "init":
            return {"$obj": self._register(result, cls_name)}
        return self.codec.encode(result, op.returns, f"{name} result")


def local_types(impl_cls: type, classes: dict[str, Any]) -> dict[type, type]:
    """Value classes the served class brings along as class attributes (a mapper's
    `SCALING_POLICY`, a subclass of the model's `ScalingPolicy`): arguments of the model's
    type are built as the served class's own, so its validation is the one that runs."""
    out: dict[type, type] = {}
    for name in dir(impl_cls):
        value = getattr(impl_cls, name, None)
        if not (name.isupper() and isinstance(value, type)):
            continue
        for base in value.__mro__[1:]:
            if classes.get(base.__name__) is base and attrs.has(base):
                out[base] = value
                break
    return out


def _hook(name: str) -> Any:
    def hook(self: Any, *args: Any) -> Any:
        return self._protocol_hooks[name](*args)
    hook.__name__ = name
    return hook


class EventStub:
    """A notification callback of the harness: calls become "events" of the response."""

    def __init__(self, server: Server, ref: int, tp: Any) -> None:
        self.server, self.ref = server, ref
        self._protocol_ref = ("$ref", ref)
        import typing
        args = typing.get_args(tp)
        self.arg_types = args[0] if args and isinstance(args[0], list) else []

    def __call__(self, *args: Any) -> None:
        encoded = [self.server.codec.encode(a, t, "event") for a, t in zip(args, self.arg_types)]
        self.server.events.append({"ref": self.ref, "args": encoded})


class RemoteRef:
    """An object the harness passed: calls on it are made over the pipe, synchronously."""

    def __init__(self, server: Server, ref: int) -> None:
        self._server, self._ref = server, ref
        self._protocol_ref = ("$ref", ref)

    def _call(self, op: str, args: tuple, kwargs: dict) -> Any:
        server = self._server
        call: dict[str, Any] = {"ref": self._ref, "op": op,
                                "args": [server.codec.tagged(a, "call") for a in args]}
        if kwargs:
            call["kwargs"] = {k: server.codec.tagged(v, "call") for k, v in kwargs.items()}
        msg: dict[str, Any] = {"call": call}
        if server.events:  # callbacks fired so far happen before this call, as in-process
            msg["events"], server.events = server.events, []
        server.write(msg)
        while True:
            line = server.readline()
            reply = loads(line or b"null")
            if not (isinstance(reply, dict) and "op" in reply):
                break
            # the harness asks something while it answers (a racing caller): answer it
            # without disturbing this request's events, random words and clock
            saved = (server.events, server.out, server.rng.tape, server.rng.used, server.clock.now)
            server.write(server.answer(line))
            server.events, server.out, server.rng.tape, server.rng.used, server.clock.now = saved
        if not isinstance(reply, dict):
            raise ProtocolError(f"no answer to a call on reference {self._ref}")
        if "err" in reply:
            raise server.codec.exception(reply["err"], "call error")
        return server.codec.untag(reply.get("ok"), "call result")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("__call__", args, kwargs)

    def __contains__(self, item: Any) -> bool:
        """`x in registry` (a membership test the served code makes on a harness object)."""
        return bool(self._call("__contains__", (item,), {}))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, args, kwargs)


def serve(component: Component, impl_cls: type, callbacks: str = "events") -> int:
    """Serve on this process's stdin/stdout; the served code's prints go to stderr."""
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    server = Server(component, impl_cls, sys.stdin.buffer, protocol_out, callbacks)
    profile_path = os.environ.get("MESHSPEC_SERVE_PROFILE")
    try:
        if not profile_path:
            return server.run()
        import cProfile  # where the server's time goes: `MESHSPEC_SERVE_PROFILE=FILE` (pstats)
        profiler = cProfile.Profile()
        try:
            return profiler.runcall(server.run)
        finally:
            profiler.dump_stats(profile_path)
    finally:
        protocol_out.close()


# -- the light entry point: `python -m meshspec.serve C [--impl module:Class]` ----------------
#: What the server needs of each registered component (its model and impl classes and error
#: bases), named here so that serving imports neither Hypothesis, the properties nor the CLI
#: (tests/test_protocol.py checks that this table agrees with meshspec.registry).
SERVED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "shard_mapper": ("model.shard_mapper:ShardMapper", "impl.shard_mapper:ShardMapper",
                     ("model.shard_mapper:ScalingError",)),
    "load_balancer": ("model.load_balancer:LoadBalancer", "impl.load_balancer:LoadBalancer",
                      ("model.load_balancer:LoadBalancerError",)),
    "group_coordinator": ("model.group_coordinator:GroupCoordinator", "impl.group_coordinator:GroupCoordinator",
                          ("model.group_coordinator:GroupError",)),
    "scheduler": ("model.scheduler:Scheduler", "impl.scheduler:Scheduler", ("model.scheduler:SchedulerError",)),
    "daemon_host": ("model.daemon_host:DaemonHost", "impl.daemon_host:DaemonHost",
                    ("model.daemon_host:DaemonError", "model.daemon_host:ChainError")),
    "capacity": ("model.capacity:EtcdCoordinator", "impl.capacity:EtcdCoordinator",
                 ("model.capacity:CoordinationError",)),
    "groups": ("model.groups:Group", "impl.groups:Group", ("model.group_coordinator:GroupError",)),
}


@attrs.frozen
class ServedComponent:
    """The part of a lockstep Component the server uses (duck-typed for `schema_of`)."""

    name: str
    model_cls: type
    impl_cls: type
    errors: tuple[type, ...]


class ServeUsageError(Exception):
    """Bad command-line input of the light entry point: one line on stderr, exit 2."""


def served_component(name: str) -> ServedComponent:
    from meshspec.lockstep import ImplLoadError, load_impl

    if name not in SERVED:
        raise ServeUsageError(f"unknown component {name!r} (known: {', '.join(SERVED)})")
    model, impl, errors = SERVED[name]
    try:
        return ServedComponent(name, load_impl(model, "model"), load_impl(impl),
                               tuple(load_impl(e, "error") for e in errors))
    except ImplLoadError as exc:  # pragma: no cover - the table is checked by a test
        raise ServeUsageError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    """`python -m meshspec.serve C [--impl module:Class] [--callbacks events|calls]`: the
    reference server without the CLI (start-up in a fraction of `meshspec serve`'s)."""
    import argparse

    from meshspec.lockstep import ImplLoadError, load_impl

    parser = argparse.ArgumentParser(prog="python -m meshspec.serve",
                                     description="speak the subject protocol on stdin/stdout for a Python class")
    parser.add_argument("component")
    parser.add_argument("--impl", help="module:Class to serve instead of the component's impl")
    parser.add_argument("--callbacks", choices=("events", "calls"), default="events")
    args = parser.parse_args(argv)
    try:
        comp = served_component(args.component)
        impl_cls = comp.impl_cls
        if args.impl:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                impl_cls = load_impl(args.impl)
            except ImplLoadError as exc:
                raise ServeUsageError(str(exc)) from None
    except ServeUsageError as exc:
        print(f"meshspec serve: {exc}", file=sys.stderr)
        return 2
    return serve(comp, impl_cls, args.callbacks)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
