"""The mutant tier: every registered mutant is caught within the ci budget, by the check
it is registered with (so REPORT.md's "caught by" column is true), and the trace of the
failure replays to the same failure without Hypothesis."""
from __future__ import annotations

import pytest

from meshspec import registry, traces
from meshspec.fuzz import matches_check, run_fuzz

CASES = [(c.name, m) for c in registry.all_components() for m in c.mutants]


@pytest.mark.quality
@pytest.mark.parametrize("name,mutant", CASES, ids=[f"{n}-{m.name}" for n, m in CASES])
def test_mutant_is_caught_by_its_registered_check(name, mutant, fuzz_seed):
    comp = registry.get_component(name)
    # No shrinking here: being caught is the point; `meshspec mutants` shows shrunk lengths.
    result = run_fuzz(comp, mutant.cls, profile="ci", seed=fuzz_seed, use_database=False,
                      shrink=False)
    assert result.trace is not None, f"mutant {mutant.name} ({mutant.origin}) survived: {result.error}"
    got = result.trace.failure.name
    assert matches_check(got, mutant.caught_by), (f"{mutant.name} caught by {got!r} "
                                     f"({result.trace.failure.message}), registered {mutant.caught_by}")
    again = traces.replay(comp, mutant.cls, result.trace.steps)
    assert again.matches(result.trace.failure), f"replay found {again.failure}, recorded {result.trace.failure}"
