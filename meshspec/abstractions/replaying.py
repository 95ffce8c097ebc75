"""From an abstract counterexample to a replayed trace, for any component.

A component's concretizer turns an abstract path into Subject rule calls (and says
where the classes left the abstract path, if they did). `refutation` exports those
steps as a version-2 trace and replays them with the lockstep harness against the
class the variant stands for: a failure confirms the refutation; none means the
abstraction admits a path the classes do not take ("abstraction too coarse").
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs

from meshspec import registry, traces
from meshspec.lockstep import load_impl
from meshspec.prove import Path, Scalar


@attrs.frozen
class Concrete:
    steps: traces.Steps
    divergence: str   # where the classes left the abstract path ("" when they followed it)


@attrs.frozen
class ConcreteStep:
    """One concrete step of a faithfulness run: the rule, its arguments, the abstract
    variables read from the classes before and after it."""

    rule: str
    args: Mapping[str, Any]
    pre: Mapping[str, Scalar]
    post: Mapping[str, Scalar]


@attrs.frozen
class Refutation:
    trace: traces.Trace
    verdict: str          # "confirmed" | "abstraction too coarse"
    detail: str


Concretizer = Callable[[Path, type], Concrete]


def refutation(component: str, concretize: Concretizer, machine_invariants: Mapping[str, str],
               path: Path, impl: str, invariant: str) -> Refutation:
    """Export an abstract counterexample as a trace and replay it against `impl`."""
    comp, cls = registry.get_component(component), load_impl(impl, quiet=True)
    concrete = concretize(path, cls)
    replayed = traces.replay(comp, cls, concrete.steps)
    expected = traces.Failure("invariant", machine_invariants.get(invariant, invariant),
                              f"z3 refutation of {invariant} over the {comp.name} counter abstraction",
                              len(concrete.steps) - 1)
    trace = traces.Trace(comp.name, impl, None, "prove", concrete.steps, replayed.failure or expected)
    if replayed.failure is not None:
        f = replayed.failure
        return Refutation(trace, "confirmed", f"{f.kind} {f.name!r} at step {f.step}: {f.message}")
    why = concrete.divergence or "the classes follow the abstract path, yet no check fails"
    return Refutation(trace, "abstraction too coarse", why)


def differs(index: int, transition: str, want: Mapping[str, object], got: Mapping[str, object]) -> str:
    """'' when a concrete state matches the abstract one, else the first differing fields."""
    wrong = [f"{k} {got[k]} (abstract {v})" for k, v in want.items() if got[k] != v]
    return f"after abstract step {index + 1} ({transition}): {', '.join(wrong[:4])}" if wrong else ""
