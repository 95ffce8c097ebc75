"""Exploration of `load_balancer`, `group_coordinator` and `capacity`: subjects that survive
a deepcopy and a snapshot (pickle) round trip, pinned counts of bound `small`, the correct
impl clean there, and every curated mutant found at its configured bound."""
from __future__ import annotations

import copy
import random
from typing import Any, Callable, Sequence

import attrs
import pytest

from meshspec import registry
from meshspec.clock import FakeClock
from meshspec.etcd_server import ETCD_ENV
from meshspec.explore import explore, restore, snapshot
from meshspec.fuzz import matches_check, rules_of
from meshspec.lockstep import Lockstep, Subject, canon
from properties import capacity as C
from properties import group_coordinator as G
from properties import load_balancer as L

Steps = Sequence[tuple[str, tuple]]
COMPONENTS = ("load_balancer", "group_coordinator", "capacity")

LB_PREFIX: Steps = (
    ("init", L.lb_init("power_of_two")),                     # draws from the injected RNG
    L.plain(), ("outage", (1,)), L.plain(steals=2),          # the race hook is installed
)
LB_A: Steps = (("record_completion", (0, False, 5)), ("advance_time", (L.RECOVERY,)),
               ("traffic_until", (0, True)), L.plain(steals=4),
               ("shadow", ("random", None, None, None, [], None, 4, None)))
LB_B: Steps = (("add_endpoint", (3, 1, "healthy", [], True, "z2", L.ZERO)), ("remove_endpoint", (1,)),
               ("update_metrics", (0, L.NAN_METRICS)), ("full_wheel", ()), ("restart", ("random",)),
               L.plain(steals=1, race="readd", key="k2"), ("request", (None, "s1", "z1", [], None, None)))

GC_PREFIX: Steps = (("init", G.gc_init("random", prefill=3)), ("route_event", ("plain", "a")),
                    ("mark_unhealthy", (1,)))
GC_A: Steps = (("add_member", (3, 4, 3, True)), ("route_event", ("plain", "b")), ("node_failure", (2, True)),
               ("on_node_recovery", (2,)))
GC_B: Steps = (("update_member_placement", (0, 3, 7)), ("remove_last", ()),
               ("place_with_spread", (0, (1,))), ("register_origin", (G.origin_of(5),)),
               ("route_event", ("routing_key", "user-7")))

CAP_PREFIX: Steps = (("init", C.cap_init()), C.own(1), ("advance_clock", (500,)))
CAP_A: Steps = (("renew", (0, "", "")), ("split_replace", (0, "", 2, "tile", 16, "")), ("claim", (1, 3, "")))
CAP_B: Steps = (("complete", (0, "", "next", 13, "")), ("advance_clock", (C.LEASE_NS + 1,)),
                ("expire_lease", (1, 1)), C.own(2, 2, "rewrite@0"), ("revocations_fail", (True,)),
                ("claim", (1, 3, "rewrite@all")))

FORKS = {"load_balancer": (LB_PREFIX, LB_A, LB_B), "group_coordinator": (GC_PREFIX, GC_A, GC_B),
         "capacity": (CAP_PREFIX, CAP_A, CAP_B)}


@pytest.fixture(autouse=True)
def embedded_etcd_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capacity explores on the embedded etcd model, never on a server named by MESHSPEC_ETCD."""
    monkeypatch.delenv(ETCD_ENV, raising=False)


def _replayed(name: str, steps: Steps) -> Lockstep:
    ls = Lockstep(registry.get_component(name))
    ls.run(steps)
    return ls


def _deepcopied(pair: tuple[Subject, Subject]) -> tuple[Subject, Subject]:
    return copy.deepcopy(pair)  # one memo for both subjects


def _unpickled(pair: tuple[Subject, Subject]) -> tuple[Subject, Subject]:
    return restore(snapshot(pair))  # what the explorer does with a frontier state


def _forked(ls: Lockstep, clone: Callable[[tuple[Subject, Subject]], tuple[Subject, Subject]]) -> Lockstep:
    twin = Lockstep(ls.component)
    twin.model, twin.impl = clone((ls.model, ls.impl))
    twin.steps = list(ls.steps)
    return twin


def _plain(value: Any) -> Any:
    """A comparable form of ghost state: clocks and RNGs by their readings, the rest canonical."""
    if isinstance(value, random.Random):
        return ("rng", value.getstate())
    if isinstance(value, FakeClock):
        return ("clock", value())
    return canon(value)


def ghost(subject: Subject) -> dict[str, Any]:
    """What the subject holds beside the SUT (its KV and scheduler are compared through abstract())."""
    return {k: _plain(v) for k, v in vars(subject).items()
            if k not in ("sut", "cls", "side", "kv", "scheduler", "_memo", "_view_for", "_hints_for")}


def _assert_same(ls: Lockstep, fresh: Lockstep) -> None:
    for mine, theirs in ((ls.model, fresh.model), (ls.impl, fresh.impl)):
        assert canon(mine.abstract()) == canon(theirs.abstract())
        assert ghost(mine) == ghost(theirs)
        assert canon(mine.observations()) == canon(theirs.observations())


@pytest.mark.parametrize("clone", [_deepcopied, _unpickled], ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("name", COMPONENTS)
def test_a_copied_state_and_its_original_go_separate_ways_each_like_a_fresh_replay(name, clone):
    prefix, cont_a, cont_b = FORKS[name]
    original = _replayed(name, prefix)
    twin = _forked(original, clone)
    original.run(cont_a)
    twin.run(cont_b)
    _assert_same(original, _replayed(name, (*prefix, *cont_a)))
    _assert_same(twin, _replayed(name, (*prefix, *cont_b)))


def test_a_copied_balancer_keeps_its_memoized_ring_class_and_own_clock():
    ls = _replayed("load_balancer", LB_PREFIX)
    for model, impl in (_deepcopied((ls.model, ls.impl)), _unpickled((ls.model, ls.impl))):
        assert type(model.sut) is type(ls.model.sut) and type(impl.sut) is type(ls.impl.sut)
        assert model.sut._clock is model.clock and impl.sut._clock is impl.clock
        assert model.sut._rng is model.rng and impl.sut._rng is impl.rng


def test_the_race_hook_is_removed_after_every_select_so_snapshots_never_carry_it():
    ls = _replayed("load_balancer", LB_PREFIX)
    assert "_interleave" not in vars(ls.model.sut) and "_interleave" not in vars(ls.impl.sut)


# -- pinned counts of bound `small` -------------------------------------------------------------

# (states, edges) of `small`; edges = actions x states expanded above the depth bound.
PINNED = {
    # 2 inits + 35 distinct depth-1 states + 409 at depth 2; edges 28 actions x (2 + 35)
    "load_balancer": (558, 1230),
    # 1 init + 14 distinct depth-1 states + 99 at depth 2; edges 34 actions x (1 + 14)
    "group_coordinator": (114, 510),
    # 1 init + 17 distinct depth-1 states + 242 at depth 2; edges 35 actions x (1 + 17)
    "capacity": (260, 630),
}


@pytest.mark.parametrize("name", COMPONENTS)
def test_small_bound_reaches_exactly_the_pinned_states_and_edges_and_the_impl_is_clean(name):
    comp = registry.get_component(name)
    result = explore(comp, comp.impl_cls, comp.exploration, bound="small")
    assert result.failure is None, result.failure
    assert (result.states, result.edges) == PINNED[name]
    assert result.depth == comp.exploration.depth("small")


def test_two_workers_reach_the_same_balancer_states_whose_ring_classes_are_rebuilt_by_name():
    comp = registry.get_component("load_balancer")
    result = explore(comp, comp.impl_cls, comp.exploration, bound="small", workers=2)
    assert (result.states, result.edges) == PINNED["load_balancer"]


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_operation_of_the_component_is_in_its_small_alphabet(name):
    comp = registry.get_component(name)
    rules = {rule for rule, _ in comp.exploration.actions_for("small")}
    subject_rules = {op for op in comp.operations if callable(getattr(comp.subject_cls, op, None))}
    assert subject_rules - {"abstract"} <= rules
    machine_rules = set(rules_of(comp)) - {"init"}
    assert machine_rules <= rules, machine_rules - rules


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_curated_mutant_has_a_configured_bound(name):
    comp = registry.get_component(name)
    bounds = comp.exploration.mutant_bounds
    assert set(bounds) == {m.name for m in comp.mutants}
    assert all(b in comp.exploration.bounds for b in bounds.values())


# -- every mutant found at its bound (each well under a second or two) ---------------------------

MUTANTS = [(name, m) for name in COMPONENTS for m in registry.get_component(name).mutants]


@pytest.mark.parametrize("name,mutant", MUTANTS, ids=[f"{n}-{m.name}" for n, m in MUTANTS])
def test_exploration_finds_the_mutant_at_its_bound_by_its_registered_check(name, mutant):
    comp = registry.get_component(name)
    exploration = comp.exploration
    result = explore(comp, mutant.cls, exploration, bound=exploration.mutant_bounds[mutant.name])
    assert result.failure is not None, f"{mutant.name} survived bound {exploration.mutant_bounds[mutant.name]}"
    assert matches_check(result.failure.name, mutant.caught_by), result.failure


EXTRA_BOUNDS = [(name, bound) for name in COMPONENTS
                for bound in registry.get_component(name).exploration.bounds if bound not in ("small", "large")]


@pytest.mark.parametrize("name,bound", EXTRA_BOUNDS, ids=[f"{n}-{b}" for n, b in EXTRA_BOUNDS])
def test_the_correct_impl_is_clean_at_every_extra_bound(name, bound):
    comp = registry.get_component(name)
    assert explore(comp, comp.impl_cls, comp.exploration, bound=bound).failure is None


def test_breaker_times_are_relative_in_the_balancer_view_and_saturate_at_the_window():
    ls = _replayed("load_balancer", (("init", L.lb_init("round_robin")), ("record_completion", (1, False, 5))))
    views = [L.explore_view(ls.model)]
    for ns in (L.RECOVERY - 1, 1, 1):  # one tick short, exactly the window, one tick past
        ls.step("advance_time", ns)
        views.append(L.explore_view(ls.model))
    assert len({views[0], views[1], views[2]}) == 3 and views[3] == views[2]


def test_time_with_no_open_circuit_is_invisible_to_the_balancer_view():
    ls = _replayed("load_balancer", (("init", L.lb_init("round_robin")),))
    before = L.explore_view(ls.model)
    ls.step("advance_time", 3600 * L.SEC)
    assert L.explore_view(ls.model) == before


@pytest.mark.nightly
@pytest.mark.parametrize("name", COMPONENTS)
def test_large_bound_keeps_every_invariant(name):
    comp = registry.get_component(name)
    result = explore(comp, comp.impl_cls, comp.exploration, bound="large")
    assert result.failure is None, result.failure
    assert result.states > PINNED[name][0]


def test_the_balancer_view_loses_no_mutant_against_the_full_default_view():
    """Soundness evidence for the relative-time view: the default view (absolute clock, every
    ghost field) nearly doubles the small state space, and finds each mutant at the same depth."""
    comp = registry.get_component("load_balancer")
    mine = comp.exploration
    full = attrs.evolve(mine, view=None)
    assert explore(comp, comp.impl_cls, full, bound="small").states > PINNED["load_balancer"][0]
    for m in comp.mutants:
        bound = mine.mutant_bounds[m.name]
        a, b = explore(comp, m.cls, mine, bound=bound), explore(comp, m.cls, full, bound=bound)
        assert (a.verdict, a.depth) == (b.verdict, b.depth), m.name
