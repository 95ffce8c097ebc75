"""The mutant tier: every registered mutant is caught within the ci budget, by the check
it is registered with (so REPORT.md's "caught by" column is true), the trace of the
failure replays to the same failure without Hypothesis, and the exported trace is the
deterministic minimiser's: 1-minimal (no single step can go) and the same on every run."""
from __future__ import annotations

import functools

import pytest

from meshspec import registry, traces
from meshspec.fuzz import FuzzResult, matches_check, run_fuzz
from meshspec.minimize import reproduce

CASES = [(c.name, m) for c in registry.all_components() for m in c.mutants]


@functools.lru_cache(maxsize=None)
def caught(name: str, mutant_name: str, seed: int) -> FuzzResult:
    """The mutant's ci run: Hypothesis stops at the first failure, then the minimiser runs."""
    comp = registry.get_component(name)
    mutant = next(m for m in comp.mutants if m.name == mutant_name)
    return run_fuzz(comp, mutant.cls, profile="ci", seed=seed, use_database=False)


@pytest.mark.quality
@pytest.mark.parametrize("name,mutant", CASES, ids=[f"{n}-{m.name}" for n, m in CASES])
def test_mutant_is_caught_by_its_registered_check(name, mutant, fuzz_seed):
    comp = registry.get_component(name)
    result = caught(name, mutant.name, fuzz_seed)
    assert result.trace is not None, f"mutant {mutant.name} ({mutant.origin}) survived: {result.error}"
    got = result.trace.failure.name
    assert matches_check(got, mutant.caught_by), (f"{mutant.name} caught by {got!r} "
                                     f"({result.trace.failure.message}), registered {mutant.caught_by}")
    again = traces.replay(comp, mutant.cls, result.trace.steps)
    assert again.matches(result.trace.failure), f"replay found {again.failure}, recorded {result.trace.failure}"


@pytest.mark.quality
@pytest.mark.parametrize("name,mutant", CASES, ids=[f"{n}-{m.name}" for n, m in CASES])
def test_minimised_counterexample_of_mutant_is_1_minimal_and_replays(name, mutant, fuzz_seed):
    comp = registry.get_component(name)
    result = caught(name, mutant.name, fuzz_seed)
    assert result.trace is not None, f"mutant {mutant.name} survived: {result.error}"
    steps, fail = result.trace.steps, result.trace.failure
    assert fail.step == len(steps) - 1, "the trace ends at its failing step"
    again = traces.replay(comp, mutant.cls, steps)
    assert again.matches(fail), f"replay found {again.failure}, recorded {fail}"
    for i in range(1, len(steps)):
        shorter = reproduce(comp, mutant.cls, steps[:i] + steps[i + 1:])
        assert shorter is None or (shorter.kind, shorter.name) != (fail.kind, fail.name), (
            f"step {i} ({steps[i][0]}) can be removed and {fail.name!r} still fails: not 1-minimal")
