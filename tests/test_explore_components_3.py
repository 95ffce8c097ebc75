"""Exploration of `groups`: pinned counts of bound `small` and of the upstream-scenario bounds,
the correct impl clean at each, and every curated mutant found at its configured bound by its
registered check."""
from __future__ import annotations

import copy
import random

import pytest

from meshspec import registry
from meshspec.clock import FakeClock
from meshspec.explore import explore, restore, snapshot
from meshspec.fuzz import matches_check, rules_of
from meshspec.lockstep import Lockstep, canon
from properties import groups as G

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
    # spawn, the registry on its own, the out-of-order deliveries and the boundary-aimed rules
    # (u64 re-seats, the bulk failure) are fuzzed, not explored
    assert missing <= {"spawn", "registry_register", "registry_unregister", "registry_replace",
                       "registry_deliver", "registry_restore", "registry_snapshot", "deliver_again",
                       "deliver_ahead", "deliver_late", "jump_sequence", "seat_term",
                       "fail_nodes_unplaced"}, missing


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


PREFIX = (("init", G.groups_init("standby", 3)), ("deliver", ("",)), ("inject", ("restore", 1)))
CONT_A = (("sync_standbys", ()), ("promote", (-1,)), ("deliver", ("a",)))
CONT_B = (("fail_node", (2, -1)), ("try_recover", ()), ("sync_standbys", ()), ("spawn", ("fork", 2, 3, -1)))


def _replayed(steps) -> Lockstep:
    ls = Lockstep(COMP)
    ls.run(steps)
    return ls


def _plain(value):
    if isinstance(value, random.Random):
        return ("rng", value.getstate())
    if isinstance(value, FakeClock):
        return ("clock", value())
    return canon(value)


def _same(ls: Lockstep, fresh: Lockstep) -> None:
    for mine, theirs in ((ls.model, fresh.model), (ls.impl, fresh.impl)):
        assert canon(mine.abstract()) == canon(theirs.abstract())
        skip = ("sut", "cls", "side", "scheduler", "registry", "last")
        assert {k: _plain(v) for k, v in vars(mine).items() if k not in skip} == \
            {k: _plain(v) for k, v in vars(theirs).items() if k not in skip}


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda pair: restore(snapshot(pair))], ids=["deepcopy", "pickle"])
def test_a_copied_group_state_and_its_original_go_separate_ways_each_like_a_fresh_replay(clone):
    original = _replayed(PREFIX)
    twin = Lockstep(COMP)
    twin.model, twin.impl = clone((original.model, original.impl))
    twin.steps = list(original.steps)
    original.run(CONT_A)
    twin.run(CONT_B)
    _same(original, _replayed(PREFIX + CONT_A))
    _same(twin, _replayed(PREFIX + CONT_B))
