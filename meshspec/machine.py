"""The shared Hypothesis lockstep machine base and the run statistics it feeds.

A component's machine subclasses `LockstepMachine`, declares its `@initialize` and
`@rule`s, and each rule body is one call: `self.step("rule_name", *args)`. Everything
else — applying to both sides, comparing, invariants, the trace — happens in
`meshspec.lockstep.Lockstep`.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any, Callable

from hypothesis.stateful import RuleBasedStateMachine

from meshspec.lockstep import Component, Lockstep, LockstepFailure


class RunStats:
    """Counters for one fuzz run (examples, steps, rule hits, reached witnesses, first failure).

    `on_progress`, when set, is called with the stats after every step; it must be cheap
    and decide itself how often to redraw (meshspec.progress does, at most every 0.2 s).
    A run split into chunks (meshspec.fuzz) keeps one RunStats, so the counts add up.
    """

    def __init__(self, on_progress: Callable[[RunStats], None] | None = None) -> None:
        self.on_progress = on_progress
        self.started = time.perf_counter()
        self.examples = 0
        self.steps = 0
        self.rule_hits: Counter[str] = Counter()
        self.reached: Counter[str] = Counter()
        #: rule -> [times its precondition held, times it was evaluated] (rules that have one)
        self.preconditions: dict[str, list[int]] = {}
        self.first_failure_examples: int | None = None
        self.first_failure_seconds: float | None = None

    def count_step(self, rule: str) -> None:
        self.steps += 1
        self.rule_hits[rule] += 1
        if self.on_progress is not None:
            self.on_progress(self)

    def note_failure(self) -> None:
        if self.first_failure_examples is None:
            self.first_failure_examples = self.examples
            self.first_failure_seconds = time.perf_counter() - self.started

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


_CURRENT = RunStats()


def current_stats() -> RunStats:
    return _CURRENT


def reset_stats(on_progress: Callable[[RunStats], None] | None = None) -> RunStats:
    global _CURRENT
    _CURRENT = RunStats(on_progress)
    return _CURRENT


_PRECONDITION_KEY = re.compile(r", rule (\w+), precondition ")


def count_preconditions(machine: RuleBasedStateMachine, stats: RunStats) -> None:
    """Add the example's precondition evaluations to `stats.preconditions`.

    Hypothesis counts every evaluation of a rule's precondition (satisfied or not) for its
    observability output, in the test case's `_observability_predicates` (keyed
    "Machine, rule NAME, precondition ..."); this reads them, so counting costs nothing
    per step. A Hypothesis without that attribute leaves the counts empty."""
    for key, counts in getattr(machine, "_observability_predicates", {}).items():
        match = _PRECONDITION_KEY.search(key)
        if match:
            cell = stats.preconditions.setdefault(match.group(1), [0, 0])
            cell[0] += counts.satisfied
            cell[1] += counts.satisfied + counts.unsatisfied


class LockstepMachine(RuleBasedStateMachine):
    """Base for every component machine: model and impl side by side."""

    COMPONENT: Component | None = None
    IMPL: type | None = None

    def __init__(self) -> None:
        super().__init__()
        assert self.COMPONENT is not None, "use Component.machine_for(impl_cls)"
        self.ls = Lockstep(self.COMPONENT, self.IMPL)
        _CURRENT.examples += 1

    @property
    def model(self) -> Any:
        return self.ls.model.sut

    @property
    def impl(self) -> Any:
        return self.ls.impl.sut

    def step(self, rule: str, *args: Any) -> Any:
        _CURRENT.count_step(rule)
        try:
            return self.ls.step(rule, *args)
        except LockstepFailure:
            _CURRENT.note_failure()
            raise

    def teardown(self) -> None:
        _CURRENT.reached.update(self.ls.reached)
        count_preconditions(self, _CURRENT)

    @classmethod
    def bind(cls, component: Component, impl_cls: type) -> type:
        """A concrete machine class for one impl (the factory `machine_for` returns)."""
        name = f"{cls.__name__}[{impl_cls.__name__}]"
        return type(name, (cls,), {"COMPONENT": component, "IMPL": impl_cls})
