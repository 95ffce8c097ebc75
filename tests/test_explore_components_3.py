"""Exploration of `groups`: pinned counts of bound `small` and of the upstream-scenario bounds,
the correct impl clean at each, and every curated mutant found at its configured bound by its
registered check."""
from __future__ import annotations

import pytest

from meshspec import registry
from meshspec.explore import explore
from meshspec.fuzz import matches_check, rules_of

COMP = registry.get_component("groups")

# (states, edges) per bound; `large` (depth 4 over both inits) is nightly
PINNED = {"small": (87, 192), "no_standby": (16, 30), "fresh_standby": (23, 33),
          "partial_sync": (149, 220), "active_down": (215, 525)}


@pytest.mark.parametrize("bound", sorted(PINNED))
def test_bound_reaches_exactly_the_pinned_states_and_edges_and_the_impl_is_clean(bound):
    result = explore(COMP, COMP.impl_cls, COMP.exploration, bound=bound)
    assert result.failure is None, result.failure
    assert (result.states, result.edges) == PINNED[bound]


def test_every_operation_of_the_machine_is_in_the_small_alphabet_or_a_scenario_bound():
    ex = COMP.exploration
    rules = {rule for b in ex.bounds for rule, _ in ex.actions_for(b)}
    missing = set(rules_of(COMP)) - {"init"} - rules
    # spawn, the registry on its own and the deliver/route variants are fuzzed, not explored
    assert missing <= {"spawn", "registry_register", "registry_unregister", "registry_replace",
                       "registry_deliver", "registry_restore", "registry_snapshot"}, missing


def test_every_curated_mutant_has_a_configured_bound():
    bounds = COMP.exploration.mutant_bounds
    assert set(bounds) == {m.name for m in COMP.mutants}
    assert all(b in COMP.exploration.bounds for b in bounds.values())


@pytest.mark.parametrize("mutant", COMP.mutants, ids=[m.name for m in COMP.mutants])
def test_exploration_finds_the_mutant_at_its_bound_by_its_registered_check(mutant):
    bound = COMP.exploration.mutant_bounds[mutant.name]
    result = explore(COMP, mutant.cls, COMP.exploration, bound=bound)
    assert result.failure is not None, f"{mutant.name} survived bound {bound}"
    assert matches_check(result.failure.name, mutant.caught_by), result.failure


@pytest.mark.nightly
def test_large_bound_keeps_every_invariant():
    result = explore(COMP, COMP.impl_cls, COMP.exploration, bound="large")
    assert result.failure is None, result.failure
