"""The lockstep core: apply one step to model and impl, compare, check invariants.

This module is Hypothesis-free on purpose: the Hypothesis machines (`meshspec.machine`),
`meshspec replay` and the exported standalone pytest files all drive the same `Lockstep`,
so a failure means the same thing everywhere.

A component supplies a `Subject` subclass: a harness around one system under test (the
model or the impl) with its own injected `FakeClock` and `random.Random`, one method per
rule, and any ghost state its invariants need (ids handed out, callbacks fired, ...).
"""
from __future__ import annotations

import importlib
import math
import os
import random
import site
import sys
import sysconfig
import traceback
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

import attrs

from meshspec.clock import FakeClock

RNG_SEED = 0x6D657368  # both sides get the same seed, so their draws line up


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


class EnvironmentUnavailable(Exception):
    """Something outside the code under test failed (e.g. a real etcd server went away).

    Never a counterexample: the lockstep core re-raises it unchanged and the CLI ends the
    run with exit 2 and one line.
    """


ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (EnvironmentUnavailable,)


class LockstepFailure(AssertionError):
    """A step where model and impl disagree, an invariant fails, or something raised."""

    def __init__(self, kind: str, name: str, message: str, step: int,
                 steps: list[tuple[str, tuple]]) -> None:
        super().__init__(f"[{kind}: {name}] at step {step} ({steps[step][0]}): {message}")
        self.kind = kind
        self.name = name
        self.message = message
        self.step = step
        self.steps = list(steps)


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


def _has_float(value: Any) -> bool:
    """Whether == could hide a difference canon sees (0.0 == -0.0)."""
    if isinstance(value, float):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_float(v) for v in value)
    return attrs.has(type(value)) or isinstance(value, (dict, set, frozenset))


def show(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@attrs.frozen
class Outcome:
    """What one side did for one step: returned `value` or raised `error` (type name, message)."""

    value: Any = None
    error: tuple[str, str] | None = None
    unexpected: str | None = None

    def key(self) -> Any:
        return ("raise",) + self.error if self.error else ("ok", canon(self.value))

    def same_as(self, other: "Outcome") -> bool:
        """Equal outcomes; plain == first (fast), canonical form when NaN or -0.0 may differ."""
        if (self.error, self.unexpected) != (other.error, other.unexpected):
            return False
        try:
            if type(self.value) is type(other.value) and self.value == other.value:
                return canon(self.value) == canon(other.value) if _has_float(self.value) else True
        except Exception:  # noqa: BLE001 - values whose == raises fall back to canon
            pass
        return canon(self.value) == canon(other.value)

    def describe(self) -> str:
        if self.error:
            return f"raised {self.error[0]}({self.error[1]!r})"
        return f"returned {show(self.value)}"


class Lockstep:
    """Drives a model subject and an impl subject through the same steps."""

    def __init__(self, component: Component, impl_cls: type | None = None) -> None:
        self.component = component
        self.model = component.subject_cls(component.model_cls, "model")
        self.impl = component.subject_cls(impl_cls or component.impl_cls, "impl")
        self.steps: list[tuple[str, tuple]] = []
        self.reached: Counter[str] = Counter()
        self._always = [i for i in component.invariants if i.kind == "always"]
        self._sometimes = [i for i in component.invariants if i.kind == "sometimes"]

    def step(self, rule: str, *args: Any) -> Any:
        """Apply `rule(*args)` to both sides; raise LockstepFailure on any disagreement."""
        self.steps.append((rule, tuple(args)))
        model_out = self._apply(self.model, rule, args)
        impl_out = self._apply(self.impl, rule, args)
        self._check(rule, model_out, impl_out)
        for inv in self._sometimes:
            if inv.fn(self.model):
                self.reached[inv.name] += 1
        return model_out.value

    def run(self, steps: Iterable[tuple[str, Sequence[Any]]]) -> None:
        for rule, args in steps:
            self.step(rule, *args)

    def _apply(self, subject: Subject, rule: str, args: Sequence[Any]) -> Outcome:
        method = getattr(subject, rule, None)
        if rule.startswith("_") or not callable(method):
            raise ValueError(f"unknown rule {rule!r} for component {self.component.name}")
        try:
            outcome = Outcome(value=method(*args))
        except self.component.errors as exc:
            outcome = Outcome(error=(type(exc).__name__, str(exc)))
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            outcome = Outcome(unexpected=tb)
        subject.last = (rule, tuple(args), outcome)
        return outcome

    def _fail(self, kind: str, name: str, message: str) -> None:
        raise LockstepFailure(kind, name, message, len(self.steps) - 1, self.steps)

    def _check(self, rule: str, model_out: Outcome, impl_out: Outcome) -> None:
        if model_out.unexpected:
            self._fail("exception", "model raised", f"model {rule}: {model_out.unexpected}")
        if impl_out.unexpected:
            self._fail("exception", "impl raised", f"impl {rule}: {impl_out.unexpected}")
        self._check_invariants(self.model)
        self._check_invariants(self.impl)
        try:
            self.impl.self_check()
        except AssertionError as exc:
            self._fail("invariant", "check_invariants", str(exc) or "impl.check_invariants() failed")
        if not model_out.same_as(impl_out):
            self._fail("divergence", f"{rule} result",
                       f"model {model_out.describe()}, impl {impl_out.describe()}")
        model_abs, impl_abs = self.model.abstract(), self.impl.abstract()
        if not (model_abs == impl_abs or canon(model_abs) == canon(impl_abs)):
            self._fail("divergence", "abstract state", abstract_diff(model_abs, impl_abs))
        model_obs, impl_obs = self.model.observations(), self.impl.observations()
        for key, model_val in model_obs.items():
            if not Outcome(value=model_val).same_as(Outcome(value=impl_obs.get(key))):
                self._fail("divergence", f"{key} observation",
                           f"model {show(model_val)}, impl {show(impl_obs.get(key))}")

    def _check_invariants(self, subject: Subject) -> None:
        for inv in self._always:
            try:
                ok = inv.fn(subject)
            except AssertionError as exc:
                self._fail("invariant", inv.name, f"{subject.side}: {exc}")
            if ok is False:
                self._fail("invariant", inv.name, f"{subject.side}: {inv.doc}")


def abstract_diff(model_abs: Any, impl_abs: Any) -> str:
    """Point at the first differing component of two abstract states."""
    path: list[str] = []
    a, b = model_abs, impl_abs
    while isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        idx = next((i for i, (x, y) in enumerate(zip(a, b)) if canon(x) != canon(y)), None)
        if idx is None:
            break
        path.append(str(idx))
        a, b = a[idx], b[idx]
    where = "/".join(path) or "<root>"
    return f"abstract() differs at [{where}]: model {show(a)} vs impl {show(b)}"


class ImplLoadError(Exception):
    """`--impl module:Class` could not be resolved."""


def load_impl(spec: str) -> type:
    """Import `module:Class` (or `module.Class`); raise ImplLoadError with a one-line reason."""
    if ":" in spec:
        module_name, _, qualname = spec.partition(":")
    else:
        module_name, _, qualname = spec.rpartition(".")
    if not module_name or not qualname:
        raise ImplLoadError(f"--impl {spec!r}: expected module:Class")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - report any import failure in one line
        raise ImplLoadError(f"--impl {spec!r}: cannot import {module_name!r}: "
                            f"{type(exc).__name__}: {exc}") from None
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise ImplLoadError(f"--impl {spec!r}: module {module_name!r} has no {qualname!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise ImplLoadError(f"--impl {spec!r}: {qualname!r} is not a class")
    return obj


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
    return f"{cls.__module__}:{cls.__qualname__}"
