"""The deterministic minimiser: 1-minimal, same failure, simpler arguments, same output on
every run, and a fuzz run's exported trace that does not depend on shrink time."""
from __future__ import annotations

import math

import pytest

from meshspec import profiles, registry
from meshspec.fuzz import run_fuzz
from meshspec.minimize import candidates, minimize, reproduce

COMPONENT = registry.get_component("shard_mapper")
MUTANT = next(m for m in COMPONENT.mutants if m.name == "stale_table_after_collect_metrics")


@pytest.fixture(scope="module")
def raw(fuzz_seed):
    """The first failing example of a mutant, as Hypothesis found it (no shrinking at all)."""
    result = run_fuzz(COMPONENT, MUTANT.cls, profile="ci", seed=fuzz_seed, use_database=False,
                      shrink=False)
    assert result.trace is not None
    return result.trace


def test_minimised_steps_fail_the_same_way_and_no_single_step_can_go(raw):
    fail = raw.failure
    out = minimize(COMPONENT, MUTANT.cls, raw.steps, fail.kind, fail.name)
    assert not out.exhausted and len(out.steps) <= len(raw.steps)
    assert (out.failure.kind, out.failure.name) == (fail.kind, fail.name)
    assert out.steps[0][0] == "init" and out.failure.step == len(out.steps) - 1
    for i in range(1, len(out.steps)):
        again = reproduce(COMPONENT, MUTANT.cls, out.steps[:i] + out.steps[i + 1:])
        assert again is None or (again.kind, again.name) != (fail.kind, fail.name), i


def test_minimising_twice_gives_the_same_steps(raw):
    fail = raw.failure
    first = minimize(COMPONENT, MUTANT.cls, raw.steps, fail.kind, fail.name)
    second = minimize(COMPONENT, MUTANT.cls, raw.steps, fail.kind, fail.name)
    assert first.steps == second.steps and first.runs == second.runs


def test_a_spent_replay_budget_still_returns_steps_that_fail(raw):
    fail = raw.failure
    out = minimize(COMPONENT, MUTANT.cls, raw.steps, fail.kind, fail.name, max_runs=3)
    assert out.exhausted and out.runs == 3
    again = reproduce(COMPONENT, MUTANT.cls, out.steps)
    assert (again.kind, again.name) == (fail.kind, fail.name)


def test_steps_that_do_not_fail_are_refused(raw):
    with pytest.raises(ValueError):
        minimize(COMPONENT, COMPONENT.impl_cls, raw.steps, raw.failure.kind, raw.failure.name)


def test_argument_candidates_are_strictly_simpler_and_simplest_first():
    assert list(candidates(True)) == [False] and list(candidates(False)) == []
    ints = list(candidates(65534, present=[0, 3, 65520, 65535]))
    assert ints[:4] == [0, 1, 3, 65520] and all(abs(v) < 65534 for v in ints)
    assert list(candidates(0)) == []
    assert list(candidates(math.nan)) == [0.0, 1.0] and list(candidates(2.5)) == [0.0, 1.0, 2.0]
    assert list(candidates(1.0)) == [0.0] and list(candidates(0.0)) == []
    assert list(candidates("abc"))[:2] == ["", "a"] and list(candidates(b"")) == []
    assert (1,) in list(candidates((1, 2))) and (0, 2) in list(candidates((1, 2)))


def test_integer_candidates_never_change_sign():
    """A count drawn from a non-negative range must not shrink to -1 because -1 appears
    elsewhere in the trace (a node_count of -1 slices a list from its end)."""
    assert all(v >= 0 for v in candidates(4, present=[-1, -3, 2]))
    assert list(candidates(4, present=[-1, -3, 2]))[:3] == [0, 1, 2]
    assert all(v <= 0 for v in candidates(-40, present=[1, 3, -2]))
    assert list(candidates(-40, present=[1, 3, -2]))[:3] == [0, -1, -2]


def test_the_same_seed_exports_the_same_trace_whatever_the_shrink_time_budget(monkeypatch, fuzz_seed):
    def exported(seconds: int) -> str:
        monkeypatch.setitem(profiles.SHRINK_SECONDS, "ci", seconds)
        result = run_fuzz(COMPONENT, MUTANT.cls, profile="ci", seed=fuzz_seed, use_database=False)
        return result.trace.to_json()

    assert exported(0) == exported(10)
