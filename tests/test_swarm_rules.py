"""The engine's rule choice (meshspec.machine.SwarmRules) and `pick` (meshspec.strategies).

SwarmRules replaces Hypothesis' filtered rule draw with one integer draw per step over the
rules the example's swarm flags keep: these tests pin that it still swarms (examples run
different subsets of the rules), never runs a rule whose precondition is false, counts
precondition evaluations for the coverage gate, and is deterministic per seed.
"""
from __future__ import annotations

from collections import Counter

from hypothesis import seed as hypothesis_seed
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from meshspec.machine import SwarmRules, count_preconditions, reset_stats
from meshspec.strategies import pick

RULES = tuple(f"r{i}" for i in range(8))


def _machine(log: list[tuple[int, str]]) -> type:
    """Eight rules plus one guarded by a precondition that holds on even steps only."""

    class Swarmed(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self._rules_strategy = SwarmRules(self)
            self.example = len({e for e, _ in log}) + (1 if log else 0)
            self.steps = 0

        def _run(self, name: str) -> None:
            log.append((id(self), name))
            self.steps += 1

        @precondition(lambda self: self.steps % 2 == 0)
        @rule()
        def guarded(self) -> None:
            assert self.steps % 2 == 0, "guarded ran with its precondition false"
            self._run("guarded")

    for name in RULES:
        setattr(Swarmed, name, rule()(lambda self, _n=name: self._run(_n)))
        getattr(Swarmed, name).__name__ = name
    return Swarmed


def _run(seed: int) -> list[tuple[int, str]]:
    log: list[tuple[int, str]] = []
    machine = hypothesis_seed(seed)(_machine(log))
    run_state_machine_as_test(machine, settings=settings(max_examples=60, stateful_step_count=30,
                                                         database=None, deadline=None))
    return log


def test_examples_run_different_subsets_of_the_rules_and_every_rule_runs():
    log = _run(7)
    per_example: dict[int, set[str]] = {}
    for example, name in log:
        per_example.setdefault(example, set()).add(name)
    subsets = {frozenset(s) for s in per_example.values() if len(s) > 1}
    assert len(subsets) > 5, "swarm testing should vary which rules an example uses"
    assert any(len(s) < len(RULES) // 2 for s in per_example.values()), "some example disables most rules"
    assert set(RULES) | {"guarded"} <= {name for _, name in log}


def test_the_same_seed_chooses_the_same_rules():
    first = [name for _, name in _run(11)]
    assert first == [name for _, name in _run(11)]
    assert first != [name for _, name in _run(12)]


def test_precondition_evaluations_are_counted_for_the_coverage_gate():
    log: list[tuple[int, str]] = []
    stats = reset_stats()
    machine_cls = _machine(log)

    class Counted(machine_cls):  # type: ignore[misc, valid-type]
        def teardown(self) -> None:
            count_preconditions(self, stats)

    run_state_machine_as_test(hypothesis_seed(3)(Counted),
                              settings=settings(max_examples=20, stateful_step_count=20, database=None))
    held, total = stats.preconditions["guarded"]
    assert 0 < held < total, "the guard holds on even steps only, and is evaluated on odd ones too"
    assert Counter(name for _, name in log)["guarded"] <= held


def test_pick_draws_every_item_and_a_single_item_without_a_choice():
    seen: set[int] = set()

    @settings(max_examples=200, database=None, derandomize=True)
    @hypothesis_seed(1)
    @__import__("hypothesis").given(st.data())
    def draw(data):
        seen.add(pick(data, [10, 20, 30]))
        assert pick(data, [5]) == 5

    draw()
    assert seen == {10, 20, 30}
