"""Every registered component's lockstep machine, under the profile CI chooses.

- against its impl: no divergence, no violated invariant, every rule ran and (under the ci
  and nightly budgets) every sometimes-witness was reached, otherwise the generator is too
  weak to mean anything;
- against the model itself: the specification satisfies its own invariants.
"""
from __future__ import annotations

import pytest

from meshspec import registry
from meshspec.fuzz import rules_of, run_fuzz, sometimes_names
from meshspec.profiles import witnesses_required


def describe(result) -> str:
    if result.error:
        return result.error
    f = result.trace.failure
    return f"{f.kind} {f.name!r} at step {f.step}: {f.message}\nsteps: {result.trace.steps}"


@pytest.mark.parametrize("name", registry.names())
def test_impl_agrees_with_model_and_keeps_every_invariant(name, fuzz_profile, fuzz_seed):
    comp = registry.get_component(name)
    result = run_fuzz(comp, comp.impl_cls, profile=fuzz_profile, seed=fuzz_seed)
    assert not result.failed, describe(result)
    never_ran = [r for r in rules_of(comp) if result.rule_hits.get(r, 0) == 0]
    assert not never_ran, f"rules that never ran: {never_ran}"
    unreached = [n for n in sometimes_names(comp) if result.reached.get(n, 0) == 0]
    if unreached and not witnesses_required(fuzz_profile):  # the CLI's rule too
        pytest.skip(f"dev budget too small to promise every witness; unreached: {unreached} "
                    "(the ci profile asserts them)")
    assert not unreached, f"sometimes-properties never reached: {unreached}"


@pytest.mark.parametrize("name", registry.names())
def test_model_satisfies_its_own_invariants(name, fuzz_seed):
    comp = registry.get_component(name)
    result = run_fuzz(comp, comp.model_cls, profile="dev", seed=fuzz_seed, use_database=False)
    assert not result.failed, describe(result)
