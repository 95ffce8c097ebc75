"""The lockstep core: apply one step to model and impl, compare, check invariants.

This module is Hypothesis-free on purpose: the Hypothesis machines (`meshspec.machine`),
`meshspec replay` and the exported standalone pytest files all drive the same `Lockstep`,
so a failure means the same thing everywhere.

A component supplies a `Subject` subclass: a harness around one system under test (the
model or the impl) with its own injected `FakeClock` and `random.Random`, one method per
rule, and any ghost state its invariants need (ids handed out, callbacks fired, ...).
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import math
import os
import random
import site
import sys
import sysconfig
import time
import traceback
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import attrs

from meshspec.clock import FakeClock

RNG_SEED = 0x6D657368  # both sides get the same seed, so their draws line up

#: Python frames every step may use below the frame that calls `Lockstep.step`. The
#: recursion limit is set relative to the caller for each step, so an infinite recursion
#: in a model or impl stops at the same depth under Hypothesis' generation, its shrinker,
#: `replay` and the minimiser: a deterministic counterexample, never a "flaky failure".
RECURSION_HEADROOM = 2000

T = TypeVar("T")


class Subject:
    """One system under test plus its injected clock, RNG and ghost state.

    Subclasses define `init(...)` (builds `self.sut`) and one method per rule; each rule
    method returns plain data (what the machine compares between model and impl).
    """

    def __init__(self, cls: type, side: str) -> None:
        self.cls = cls
        self.side = side
        self.clock = FakeClock(0)
        self.rng = random.Random(RNG_SEED)
        self.sut: Any = None
        self.last: tuple[str, tuple, "Outcome"] | None = None

    def abstract(self) -> Any:
        return self.sut.abstract()

    def observations(self) -> dict[str, Any]:
        """Pure queries compared between model and impl after every step (name → value).

        Derived answers a cache could get wrong while the abstract state agrees (what
        select would route to, what evaluate would advise) belong here.
        """
        return {}

    def self_check(self) -> None:
        """Run the SUT's own `check_invariants()` when it has one (user classes may not)."""
        check = getattr(self.sut, "check_invariants", None)
        if callable(check):
            check()


@attrs.frozen
class Invariant:
    """A named property over a `Subject`. kind: "always" (safety) or "sometimes" (reachability)."""

    fn: Callable[[Subject], Any]
    kind: str

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else ""


def always(fn: Callable[[Subject], Any]) -> Invariant:
    """A safety invariant: `fn(subject)` raises AssertionError (or returns False) on violation."""
    return Invariant(fn, "always")


def ghost_flag(attr: str, flag: str, doc: str, name: str | None = None) -> Callable[[Subject], bool]:
    """A witness function for `sometimes`: true once the harness has put `flag` into the
    subject's ghost set `attr` (a boundary or situation a rule noted when it reached it).
    Named `name` (default: the flag) in reports."""
    def witness(s: Subject) -> bool:
        return flag in getattr(s, attr)
    witness.__name__ = witness.__qualname__ = name or flag
    witness.__doc__ = doc
    return witness


def sometimes(fn: Callable[[Subject], bool]) -> Invariant:
    """A reachability witness: `fn(subject)` returns True when the state of interest is reached."""
    return Invariant(fn, "sometimes")


@attrs.frozen
class Mutant:
    """An impl variant that reintroduces one known bug."""

    name: str
    cls: type
    origin: str
    caught_by: tuple[str, ...]


def mutant(name: str, cls: type, origin: str, caught_by: str | Sequence[str]) -> Mutant:
    expected = (caught_by,) if isinstance(caught_by, str) else tuple(caught_by)
    return Mutant(name, cls, origin, expected)


@attrs.frozen
class BenchCase:
    """One benchmarked operation: `make(cls, size)` returns a zero-argument callable."""

    name: str
    sizes: tuple[int, ...]
    make: Callable[[type, int], Callable[[], Any]]
    min_ratio: float = 1.0  # the impl/model speed-up expected at the largest size; 0 = none


@attrs.frozen
class Component:
    """Everything the engine needs to know about one component."""

    name: str
    summary: str
    model_cls: type
    impl_cls: type
    subject_cls: type
    machine_cls: type
    invariants: tuple[Invariant, ...]
    mutants: tuple[Mutant, ...]
    errors: tuple[type, ...]
    operations: tuple[str, ...]
    bench: tuple[BenchCase, ...] = ()
    exploration: Any = None  # a meshspec.explore.Exploration, when the component offers one

    def machine_for(self, impl_cls: type) -> type:
        return self.machine_cls.bind(self, impl_cls)

    def missing_operations(self, cls: type) -> list[str]:
        return [op for op in self.operations if not callable(getattr(cls, op, None))]


class EnvironmentUnavailable(BaseException):
    """Something outside the code under test failed (e.g. a real etcd server went away).

    Never a counterexample: the lockstep core re-raises it unchanged and the CLI ends the
    run with exit 2 and one line. It derives from BaseException, like KeyboardInterrupt
    (and Hypothesis' own StopTest), so that no `except Exception` in an impl or a harness
    swallows it and Hypothesis neither shrinks nor replays it (a replay against a dead
    server would be reported as a flaky test): it ends the run at once.
    """



ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (EnvironmentUnavailable,)


class LockstepFailure(AssertionError):
    """A step where model and impl disagree, an invariant fails, or something raised.

    `state_diff` lists, one line per field, where the model's and the impl's abstract
    states differed when the failure was found (empty when they agree or cannot be read).
    """

    def __init__(self, kind: str, name: str, message: str, step: int,
                 steps: list[tuple[str, tuple]], state_diff: Sequence[str] = ()) -> None:
        super().__init__(f"[{kind}: {name}] at step {step} ({steps[step][0]}): {message}")
        self.kind = kind
        self.name = name
        self.message = message
        self.step = step
        self.steps = list(steps)
        self.state_diff = tuple(state_diff)


def canon(value: Any) -> Any:
    """A comparable, hashable form of a value: NaN equals NaN, -0.0 stays distinct from 0.0."""
    if isinstance(value, float):
        if math.isnan(value):
            return ("<nan>",)
        return ("<float>", value.hex())
    if isinstance(value, (list, tuple)):
        return tuple(canon(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((repr(k), canon(v)) for k, v in value.items()))
    if attrs.has(type(value)):
        # By field names, not class: a subclass with the same fields is the same value.
        return tuple((a.name, canon(getattr(value, a.name))) for a in attrs.fields(type(value)))
    return value


_PLAIN = frozenset({int, str, bytes, bool, type(None)})


@functools.lru_cache(maxsize=None)
def _attrs_names(cls: type) -> tuple[str, ...] | None:
    return tuple(a.name for a in attrs.fields(cls)) if attrs.has(cls) else None


def same_canon(a: Any, b: Any) -> bool:
    """`canon(a) == canon(b)`, decided in one pass for values of the same plain type (ints,
    strings, bytes, floats with NaN == NaN and -0.0 != 0.0, tuples, lists, attrs instances);
    anything else (mixed types, sets, dicts, other classes) is compared by canon itself."""
    ta = type(a)
    if ta is type(b):
        if ta in _PLAIN:
            return a == b
        if ta is float:
            if a == b:
                return a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b)
            return a != a and b != b  # both NaN
        if ta is tuple or ta is list:
            return len(a) == len(b) and all(map(same_canon, a, b))
        names = _attrs_names(ta)
        if names is not None:
            return all(same_canon(getattr(a, n), getattr(b, n)) for n in names)
    return canon(a) == canon(b)


def same_value(a: Any, b: Any) -> bool:
    """`canon(a) == canon(b)`, through `same_canon` where the types allow."""
    try:
        return same_canon(a, b)
    except Exception:  # noqa: BLE001 - values whose == raises fall back to canon
        pass
    return canon(a) == canon(b)


def show(value: Any, limit: int = 300) -> str:
    """repr() cut at `limit` characters; a value whose repr raises is described, not raised."""
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a user class's broken __repr__ is not a crash
        text = f"<{type(value).__name__} whose repr raised {type(exc).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def one_line(exc: BaseException) -> str:
    """`TypeName: message` of an exception, on one line."""
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return " ".join(text.split())


@attrs.frozen
class Outcome:
    """What one side did for one step: returned `value` or raised `error` (type name, message)."""

    value: Any = None
    error: tuple[str, str] | None = None
    unexpected: str | None = None

    def key(self) -> Any:
        return ("raise",) + self.error if self.error else ("ok", canon(self.value))

    def same_as(self, other: "Outcome") -> bool:
        """Equal outcomes: `canon(a) == canon(b)`, decided without building canon's tuples
        where the types allow (`same_canon`)."""
        if (self.error, self.unexpected) != (other.error, other.unexpected):
            return False
        return same_value(self.value, other.value)

    def describe(self) -> str:
        if self.error:
            return f"raised {self.error[0]}({self.error[1]!r})"
        return f"returned {show(self.value)}"


@functools.lru_cache(maxsize=None)
def rule_signature(subject_cls: type, rule: str) -> inspect.Signature | None:
    """The signature of a Subject rule method without `self`, or None when it is no rule."""
    method = getattr(subject_cls, rule, None)
    if rule.startswith("_") or hasattr(Subject, rule) or not callable(method):
        return None
    params = list(inspect.signature(method).parameters.values())[1:]
    return inspect.Signature(params)


def bind_args(subject_cls: type, rule: str, args: Sequence[Any],
              kwargs: Mapping[str, Any]) -> tuple:
    """Positional and keyword arguments of a rule as the positional tuple a trace records."""
    sig = rule_signature(subject_cls, rule)
    if sig is None:
        raise ValueError(f"unknown rule {rule!r}")
    if not kwargs:
        return tuple(args)
    bound = sig.bind(*args, **kwargs)
    return tuple(bound.args) + tuple(bound.kwargs.values())


def _frame_depth() -> int:
    frame, depth = sys._getframe(1), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


class Lockstep:
    """Drives a model subject and an impl subject through the same steps.

    Every call into model or impl code (the rule, `abstract()`, `observations()`, the
    invariants, `self_check()`) runs guarded: whatever it raises becomes a
    LockstepFailure of kind "exception" naming the side and the place ("impl raised in
    observations"), so a fuzz run shrinks, exports and replays it like any other finding.
    Only ENVIRONMENT_ERRORS and BaseExceptions (Ctrl-C) pass through unchanged.
    """

    def __init__(self, component: Component, impl_cls: type | None = None) -> None:
        self.component = component
        self.model = component.subject_cls(component.model_cls, "model")
        self.impl = component.subject_cls(impl_cls or component.impl_cls, "impl")
        self.steps: list[tuple[str, tuple]] = []
        self.reached: Counter[str] = Counter()
        #: seconds spent applying rules to both sides, and checking after them (results,
        #: abstract states, observations, invariants, self-check, witnesses): measured for
        #: the fuzz report's time split only, never read by any check
        self.operation_seconds = self.check_seconds = 0.0
        self._always = [i for i in component.invariants if i.kind == "always"]
        self._sometimes = [i for i in component.invariants if i.kind == "sometimes"]
        # (function, name, where) of each witness, its place named once, not per step
        self._witnesses = [(i.fn, i.name, f"sometimes {i.name}") for i in self._sometimes]

    def step(self, rule: str, *args: Any, **kwargs: Any) -> Any:
        """Apply `rule(*args, **kwargs)` to both sides; raise LockstepFailure on any disagreement."""
        if rule_signature(self.component.subject_cls, rule) is None:
            raise ValueError(f"unknown rule {rule!r} for component {self.component.name}")
        if not self.steps and rule != "init":
            raise ValueError(f"the first step must be 'init', not {rule!r}")
        args = bind_args(self.component.subject_cls, rule, args, kwargs)
        self.steps.append((rule, args))
        saved = sys.getrecursionlimit()
        sys.setrecursionlimit(_frame_depth() + RECURSION_HEADROOM)
        try:
            return self._step(rule, args)
        finally:
            sys.setrecursionlimit(saved)

    def _step(self, rule: str, args: tuple) -> Any:
        started = time.perf_counter()
        model_out = self._apply(self.model, rule, args)
        impl_out = self._apply(self.impl, rule, args)
        applied = time.perf_counter()
        if rule == "init" and (model_out.error or impl_out.error):
            self._refused_init(model_out, impl_out)
        self._check(rule, model_out, impl_out)
        model = self.model
        for fn, name, where in self._witnesses:
            try:
                hit = fn(model)
            except LockstepFailure:
                raise
            except Exception as exc:  # noqa: BLE001 - reported below, outside this handler
                error: Exception | None = exc
            else:
                if hit:
                    self.reached[name] += 1
                continue
            self._raised(model, where, error)  # type: ignore[arg-type]
        self.operation_seconds += applied - started
        self.check_seconds += time.perf_counter() - applied
        return model_out.value

    def run(self, steps: Iterable[tuple[str, Sequence[Any]]]) -> None:
        for rule, args in steps:
            if isinstance(args, Mapping):
                self.step(rule, **args)
            else:
                self.step(rule, *args)

    def _apply(self, subject: Subject, rule: str, args: Sequence[Any]) -> Outcome:
        method = getattr(subject, rule)
        try:
            outcome = Outcome(value=method(*args))
        except ENVIRONMENT_ERRORS:
            raise
        except self.component.errors as exc:
            outcome = Outcome(error=(type(exc).__name__, str(exc)))
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            outcome = Outcome(unexpected=one_line(exc))
        subject.last = (rule, tuple(args), outcome)
        return outcome

    def _refused_init(self, model_out: Outcome, impl_out: Outcome) -> None:
        """An `init` that raised a domain error built nothing to step: when both sides
        refused the arguments alike it is a harness error (ValueError), else a divergence."""
        if model_out.same_as(impl_out):
            raise ValueError(f"init {model_out.describe()} on both sides: these arguments "
                             f"build no {self.component.name}")
        self._fail("divergence", "init result", f"model {model_out.describe()}, impl {impl_out.describe()}")

    def _fail(self, kind: str, name: str, message: str) -> None:
        raise LockstepFailure(kind, name, message, len(self.steps) - 1, self.steps, self._state_diff())

    def _state_diff(self) -> list[str]:
        """Field-level differences of the two abstract states, if both can be read."""
        try:
            return diff_lines(self.model.abstract(), self.impl.abstract())
        except Exception:  # noqa: BLE001 - the failure itself is what gets reported
            return []

    def _guarded(self, subject: Subject, where: str, fn: Callable[..., T], *args: Any) -> T:
        """Call model or impl code; anything it raises is a finding named after `where`."""
        try:
            return fn(*args)
        except LockstepFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - reported below, outside this handler
            error = exc
        self._raised(subject, where, error)
        raise AssertionError("unreachable")  # pragma: no cover - _raised always raises

    def _raised(self, subject: Subject, where: str, error: Exception) -> None:
        self._fail("exception", f"{subject.side} raised in {where}",
                   f"{subject.side} {where}: {one_line(error)}")

    def _check(self, rule: str, model_out: Outcome, impl_out: Outcome) -> None:
        if model_out.unexpected:
            self._fail("exception", "model raised", f"model {rule}: {model_out.unexpected}")
        if impl_out.unexpected:
            self._fail("exception", "impl raised", f"impl {rule}: {impl_out.unexpected}")
        self._check_invariants(self.model)
        self._check_invariants(self.impl)
        self._self_check()
        self._compare_results(rule, model_out, impl_out)
        self._compare_abstract()
        self._compare_observations()

    def _self_check(self) -> None:
        _, error = _call(self.impl.self_check)
        if isinstance(error, AssertionError):
            self._fail("invariant", "check_invariants", str(error) or "impl.check_invariants() failed")
        if error is not None:
            self._raised(self.impl, "check_invariants", error)

    def _compare_results(self, rule: str, model_out: Outcome, impl_out: Outcome) -> None:
        if not self._guarded(self.impl, "result comparison", model_out.same_as, impl_out):
            self._fail("divergence", f"{rule} result",
                       f"model {model_out.describe()}, impl {impl_out.describe()}")

    def _compare_abstract(self) -> None:
        if getattr(self.impl.cls, "HAS_ABSTRACT", True) is False:
            return  # an impl process that does not serve `abstract` (meshspec.protocol)
        model_abs = self._guarded(self.model, "abstract", self.model.abstract)
        impl_abs = self._guarded(self.impl, "abstract", self.impl.abstract)
        same = self._guarded(self.impl, "abstract comparison", _same_state, model_abs, impl_abs)
        if not same:
            self._fail("divergence", "abstract state", abstract_diff(model_abs, impl_abs))

    def _compare_observations(self) -> None:
        model_obs = self._guarded(self.model, "observations", self.model.observations)
        impl_obs = self._guarded(self.impl, "observations", self.impl.observations)
        for key, model_val in model_obs.items():
            impl_val = impl_obs.get(key)
            if not self._guarded(self.impl, "observation comparison", same_value, model_val, impl_val):
                self._fail("divergence", f"{key} observation",
                           f"model {show(model_val)}, impl {show(impl_val)}")

    def _check_invariants(self, subject: Subject) -> None:
        for inv in self._always:
            try:
                ok = inv.fn(subject)
            except LockstepFailure:
                raise
            except Exception as exc:  # noqa: BLE001 - reported below, outside this handler
                error: Exception = exc
            else:
                if ok is False:
                    self._fail("invariant", inv.name, f"{subject.side}: {inv.doc}")
                continue
            if getattr(error, "not_served", False):
                continue  # reads a query the impl process does not serve (meshspec.protocol)
            if isinstance(error, AssertionError):
                self._fail("invariant", inv.name, f"{subject.side}: {error}")
            self._raised(subject, f"invariant {inv.name}", error)


def _call(fn: Callable[..., T], *args: Any) -> tuple[T | None, Exception | None]:
    """(value, None), or (None, what it raised). The failure is raised by the caller outside
    this handler, so it carries no __context__ whose location could vary between runs
    (Hypothesis would call two depths of one RecursionError two different bugs)."""
    try:
        return fn(*args), None
    except (LockstepFailure, *ENVIRONMENT_ERRORS):
        raise
    except Exception as exc:  # noqa: BLE001 - RecursionError and MemoryError included
        return None, exc


def _same_state(model_abs: Any, impl_abs: Any) -> bool:
    return bool(model_abs == impl_abs or canon(model_abs) == canon(impl_abs))


def _fields(value: Any) -> dict[str, Any] | None:
    """Named parts of a structured value (attrs class, named tuple, dict), else None."""
    if attrs.has(type(value)):
        return {a.name: getattr(value, a.name) for a in attrs.fields(type(value))}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return dict(zip(value._fields, value))
    if isinstance(value, dict):
        return {repr(k): v for k, v in value.items()}
    return None


_MISSING = "<missing>"


def _diffs(a: Any, b: Any, path: str, depth: int = 0) -> Iterable[tuple[str, Any, Any]]:
    """(path, model part, impl part) for every differing leaf, fields named where known."""
    if canon(a) == canon(b):
        return
    fa, fb = _fields(a), _fields(b)
    if depth < 12 and fa is not None and fb is not None and type(a) is type(b):
        sep = "" if isinstance(a, dict) else "."
        for key in list(fa) + [k for k in fb if k not in fa]:
            where = f"{path}[{key}]" if isinstance(a, dict) else f"{path}{sep}{key}"
            yield from _diffs(fa.get(key, _MISSING), fb.get(key, _MISSING), where, depth + 1)
        return
    if depth < 12 and isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) \
            and len(a) == len(b) and fa is None and fb is None:
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _diffs(x, y, f"{path}[{i}]", depth + 1)
        return
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and fa is None and fb is None:
        in_a, in_b = {canon(x) for x in a}, {canon(y) for y in b}
        yield (f"{path or '<root>'} items in one only", [x for x in a if canon(x) not in in_b],
               [y for y in b if canon(y) not in in_a])
        return
    yield (path, a, b)


def diff_lines(model_abs: Any, impl_abs: Any, limit: int = 12) -> list[str]:
    """One line per differing field of two abstract states: `path: model X, impl Y`."""
    found = list(_diffs(model_abs, impl_abs, ""))
    lines = [f"{path or '<root>'}: model {show(a, 160)}, impl {show(b, 160)}" for path, a, b in found[:limit]]
    if len(found) > limit:
        lines.append(f"... and {len(found) - limit} more differing fields")
    return lines


def abstract_diff(model_abs: Any, impl_abs: Any) -> str:
    """The differing fields of two abstract states, on one line."""
    lines = diff_lines(model_abs, impl_abs, limit=4) or ["<root>: equal under canon"]
    return "abstract() differs at " + "; ".join(lines)


class ImplLoadError(Exception):
    """`--impl module:Class` could not be resolved."""


def load_impl(spec: str, what: str = "--impl", quiet: bool = False) -> type:
    """Import `module:Class` (or `module.Class`); raise ImplLoadError with a one-line reason.

    `what` names where the spec came from in messages ("--impl", "trace impl"); `quiet`
    swallows what the module prints while it is imported (a trace is data, not a script).
    """
    if spec.startswith("cmd:"):  # an impl process speaking the subject protocol
        from meshspec.protocol import ImplStartError, command_impl
        try:
            return command_impl(spec[len("cmd:"):])
        except ImplStartError as exc:
            raise ImplLoadError(str(exc)) from None
    if ":" in spec:
        module_name, _, qualname = spec.partition(":")
    else:
        module_name, _, qualname = spec.rpartition(".")
    if not module_name or not qualname:
        raise ImplLoadError(f"{what} {spec!r}: expected module:Class")
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            obj: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - report any import failure in one line
        raise ImplLoadError(f"{what} {spec!r}: cannot import {module_name!r}: "
                            f"{type(exc).__name__}: {exc}") from None
    if module_name.startswith("properties.") and not hasattr(obj, qualname.split(".")[0]):
        obj = _moved_mutant_module(module_name, qualname) or obj
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise ImplLoadError(f"{what} {spec!r}: module {module_name!r} has no {qualname!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ImplLoadError(f"{what} {spec!r}: {qualname!r} is not a class")
    return obj


def _moved_mutant_module(module_name: str, qualname: str) -> Any:
    """`mutants.<c>` when it defines `qualname`: the curated mutants moved there from
    `properties.<c>`, so traces and commands naming `properties.<c>:Mutant` still load."""
    try:
        moved = importlib.import_module("mutants." + module_name[len("properties."):])
    except ImportError:
        return None
    return moved if hasattr(moved, qualname.split(".")[0]) else None


def impl_search_path(cls: type) -> str | None:
    """The directory to put on sys.path so that `cls`'s module imports in another process.

    None when no such directory is needed: the module is installed (site-packages, the
    standard library) or lives next to meshspec itself, or it has no file.
    """
    return module_search_path(cls.__module__)


def module_search_path(module_name: str) -> str | None:
    """`impl_search_path` by the name of an already imported module (None when not imported)."""
    top = sys.modules.get(module_name.partition(".")[0])
    origin = getattr(top, "__file__", None)
    if not origin:
        return None
    origin_path = os.path.realpath(origin)
    if os.path.basename(origin_path) == "__init__.py":
        origin_path = os.path.dirname(origin_path)
    directory = os.path.dirname(origin_path)
    return None if directory in _installed_dirs() else directory


def _installed_dirs() -> set[str]:
    """Directories whose modules import anywhere: site-packages, stdlib, meshspec's own root."""
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("purelib", "platlib", "stdlib", "platstdlib") if k in paths}
    dirs.update(site.getsitepackages() + [site.getusersitepackages()])
    dirs.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {os.path.realpath(d) for d in dirs}


def impl_path(cls: type) -> str:
    """`module:Class`, or `cmd:COMMAND` for an impl served over the subject protocol."""
    return getattr(cls, "IMPL_SPEC", None) or f"{cls.__module__}:{cls.__qualname__}"
