"""The shared Hypothesis lockstep machine base and the run statistics it feeds.

A component's machine subclasses `LockstepMachine`, declares its `@initialize` and
`@rule`s, and each rule body is one call: `self.step("rule_name", *args)`. Everything
else — applying to both sides, comparing, invariants, the trace — happens in
`meshspec.lockstep.Lockstep`.
"""
from __future__ import annotations

import functools
import re
import time
from collections import Counter
from typing import Any, Callable

from hypothesis.errors import InvalidDefinition
from hypothesis.internal.reflection import get_pretty_function_description
from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.strategies import SearchStrategy

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
        #: seconds inside Lockstep steps: applying the rules, and the checks after them
        self.operation_seconds = self.check_seconds = 0.0
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


@functools.lru_cache(maxsize=None)
def _rules_of(machine_cls: type) -> tuple[tuple[Any, ...], dict[str, tuple[str, ...]]]:
    """A machine class's rules in Hypothesis' own order, and per rule the keys under which
    Hypothesis counts its precondition evaluations (see `count_preconditions`)."""
    rules = sorted(machine_cls.setup_state().rules,  # the order RuleStrategy sorts them in
                   key=lambda r: (sorted(r.targets), len(r.arguments), r.function.__name__))
    desc = machine_cls.__qualname__
    keys = {r.function.__name__: tuple(f"{desc}, rule {r.function.__name__}, precondition "
                                       f"{get_pretty_function_description(p)}" for p in r.preconditions)
            for r in rules}
    return tuple(rules), keys


class SwarmRules(SearchStrategy):
    """The next rule and its arguments: Hypothesis' swarm testing, with one choice per step.

    Hypothesis' own rule strategy decides each rule's feature flag lazily and picks a rule by
    a filtered `sampled_from` over all of them: several draws per step (a retry per disabled
    or invalid rule, a boolean per flag looked up), about a fifth of a lockstep step. This
    one draws the same swarm up front, once per example (a disabled share p, then one
    Bernoulli(p) flag per rule, at least one rule left on), and then picks each step's rule
    with one integer draw, uniformly among the enabled rules whose preconditions hold: the
    distribution Hypothesis' rejection sampling has, in fewer choices. When every enabled
    rule's precondition fails it picks among all valid rules (the direction Hypothesis'
    flags shrink to) instead of discarding the example. Rule arguments are drawn as
    Hypothesis draws them. Precondition evaluations are counted where Hypothesis counts them.
    """

    def __init__(self, machine: RuleBasedStateMachine) -> None:
        super().__init__()
        self.machine = machine
        self.rules, self.keys = _rules_of(type(machine))
        self.enabled: list[Any] | None = None

    def __repr__(self) -> str:
        return f"SwarmRules({type(self.machine).__name__})"

    def do_draw(self, data: Any) -> tuple[Any, dict[str, Any]]:
        if self.enabled is None:
            self.enabled = self._swarm(data)
        valid = [r for r in self.enabled if self._valid(r)]
        if not valid:
            valid = [r for r in self.rules if r not in self.enabled and self._valid(r)]
        if not valid:
            names = ", ".join(r.function.__name__ for r in self.rules)
            raise InvalidDefinition(f"No progress can be made from state {self.machine!r}, because "
                                    f"no available rule had a True precondition. rules: {names}")
        rule = valid[data.draw_integer(0, len(valid) - 1)]
        arguments = {}
        for name, strategy in rule.arguments_strategies.items():
            arguments[name] = data.draw(strategy)
        return rule, arguments

    def _swarm(self, data: Any) -> list[Any]:
        p_disabled = data.draw_integer(0, 254) / 255
        enabled: list[Any] = []
        last = len(self.rules) - 1
        for i, rule in enumerate(self.rules):
            if not data.draw_boolean(p_disabled, forced=False if i == last and not enabled else None):
                enabled.append(rule)
        return enabled

    def _valid(self, rule: Any) -> bool:
        if not rule.preconditions:
            return True
        counts = getattr(self.machine, "_observability_predicates", None)
        for pred, key in zip(rule.preconditions, self.keys[rule.function.__name__]):
            held = bool(pred(self.machine))
            if counts is not None:
                counts[key].update_count(condition=held)
            if not held:
                return False
        return True


class LockstepMachine(RuleBasedStateMachine):
    """Base for every component machine: model and impl side by side."""

    COMPONENT: Component | None = None
    IMPL: type | None = None

    def __init__(self) -> None:
        super().__init__()
        assert self.COMPONENT is not None, "use Component.machine_for(impl_cls)"
        self.ls = Lockstep(self.COMPONENT, self.IMPL)
        if not any(r.bundles for r in self.rules):
            self._rules_strategy = SwarmRules(self)
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
        _CURRENT.operation_seconds += self.ls.operation_seconds
        _CURRENT.check_seconds += self.ls.check_seconds
        count_preconditions(self, _CURRENT)

    @classmethod
    def bind(cls, component: Component, impl_cls: type) -> type:
        """A concrete machine class for one impl (the factory `machine_for` returns)."""
        name = f"{cls.__name__}[{impl_cls.__name__}]"
        return type(name, (cls,), {"COMPONENT": component, "IMPL": impl_cls})
