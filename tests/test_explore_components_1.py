"""Exploration of `scheduler` and `daemon_host`: deepcopy-safe subjects, pinned counts of
bound `small`, the correct impl clean there, and every curated mutant found at its bound."""
from __future__ import annotations

import copy
import functools
import importlib
from typing import Any, Sequence

import pytest

from meshspec import registry
from meshspec.explore import ExploreResult, explore
from meshspec.fuzz import matches_check
from meshspec.lockstep import Lockstep, Subject

Steps = Sequence[tuple[str, tuple]]

SCHEDULER_PREFIX: Steps = (
    ("init", (1, ("a",), ((1, ("a", "subprotocol:0x0500")), (2, ("a", "subprotocol:0x0500"))), False)),
    ("add_node", (3, ("a", "b"))),
    ("pick_best_candidate", ((1, 2), ((1, 0.5), (2, 0.5)), None, None)),
)
SCHEDULER_A: Steps = (("remove_node", (2,)), ("set_drained", (True,)), ("place_with_locality", (("a",), None)),
                      ("select_member_node", (("a",), (1,), (), 1.0, None)))
SCHEDULER_B: Steps = (("add_tag", (2, "gpu")), ("remove_tag", (3, "a")), ("place", (("a",),)),
                      ("select_migration_target", ((), 2, ((1, None),), 0.5, None)))

DAEMON_PREFIX: Steps = (
    ("init", (0xABCD, None, 0, True)),
    ("deliver", (0xAAAA, 1, (33,))),
    ("take_snapshot", ()),
    ("advance_time", (1,)),
)
DAEMON_A: Steps = (("advance_time", (5,)), ("deliver", (0xBBBB, 2, (1, 64))), ("horizon_observe", (7, 1)),
                   ("restore", (0, False, False)), ("write_read", ((0, 33), 65, 2, 0)))
DAEMON_B: Steps = (("deliver", (0xCCCC, 4, "error")), ("advance_time", (1_000,)), ("deliver", (1, 1, (8,))),
                   ("fork", (2**64 - 2, 1, False)), ("read_malformed", ((0,), "below_32", (1,))))


def _replayed(component_name: str, steps: Steps) -> Lockstep:
    ls = Lockstep(registry.get_component(component_name))
    ls.run(steps)
    return ls


def _copied(ls: Lockstep) -> Lockstep:
    """A Lockstep over deep copies of both subjects, taken with one memo."""
    twin = Lockstep(ls.component)
    twin.model, twin.impl = copy.deepcopy((ls.model, ls.impl))
    twin.steps = list(ls.steps)
    return twin


def _plain(value: Any) -> Any:
    """A comparable form of ghost state: clocks, RNGs, daemons and horizons by their contents."""
    if isinstance(value, type):
        return value
    if hasattr(value, "getstate") and hasattr(value, "getrandbits"):
        return ("rng", value.getstate())
    if callable(value) and hasattr(value, "advance"):
        return ("clock", value())
    if hasattr(value, "state") and hasattr(value, "encode"):
        return ("horizon", value.state(), value.encode())
    if hasattr(value, "script") and hasattr(value, "calls"):
        return ("daemon", value.stateful, value.calls, value.script, value.reject)
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def ghost(subject: Subject) -> dict[str, Any]:
    """Everything the subject holds beside the SUT, including the last step's outcome."""
    return {k: _plain(v) for k, v in vars(subject).items() if k not in ("sut", "cls", "side")}


def _assert_same(ls: Lockstep, fresh: Lockstep) -> None:
    for mine, theirs in ((ls.model, fresh.model), (ls.impl, fresh.impl)):
        assert mine.abstract() == theirs.abstract()
        assert ghost(mine) == ghost(theirs)
        assert mine.observations() == theirs.observations()


@pytest.mark.parametrize("name, prefix, cont_a, cont_b", [
    ("scheduler", SCHEDULER_PREFIX, SCHEDULER_A, SCHEDULER_B),
    ("daemon_host", DAEMON_PREFIX, DAEMON_A, DAEMON_B),
])
def test_a_deep_copied_state_is_independent_and_behaves_like_a_fresh_replay_of_its_path(
        name: str, prefix: Steps, cont_a: Steps, cont_b: Steps) -> None:
    original = _replayed(name, prefix)
    twin = _copied(original)
    fresh_a, fresh_b = _replayed(name, prefix), _replayed(name, prefix)
    for step_a, step_b in zip(cont_a, cont_b):  # interleaved, so any shared object shows
        for ls, (rule, args) in ((original, step_a), (twin, step_b), (fresh_a, step_a), (fresh_b, step_b)):
            ls.step(rule, *args)
        _assert_same(original, fresh_a)
        _assert_same(twin, fresh_b)
    assert original.model.abstract() != twin.model.abstract()


def test_a_copied_daemon_host_stamps_events_with_its_own_clock_and_daemon() -> None:
    original = _replayed("daemon_host", DAEMON_PREFIX)
    twin = _copied(original)
    twin.step("advance_time", 1_000)
    for side in (twin.model, twin.impl):
        assert side.sut._clock is side.clock and side.sut._daemon is side.daemon
        assert side.clock() == original.model.clock() + 1_000
    events = twin.step("deliver", 0xAAAA, 2, (1,))
    assert [e.received_at for e in events] == [twin.model.clock()]


# -- bounded exploration ---------------------------------------------------------------------

COMPONENTS = ("scheduler", "daemon_host")
RULE_METHODS_NOT_RULES = {"init", "abstract", "observations", "self_check", "mod"}


@functools.lru_cache(maxsize=None)
def _explored(name: str, bound: str, impl: str = "") -> ExploreResult:
    """One exploration per (component, bound, impl) for the whole module."""
    comp = registry.get_component(name)
    cls = next((m.cls for m in comp.mutants if m.name == impl), comp.impl_cls)
    return explore(comp, cls, comp.exploration, bound=bound)


def test_the_scheduler_small_bound_has_its_pinned_state_and_edge_counts() -> None:
    result = _explored("scheduler", "small")
    # 145 = 2 inits + 14 + 46 + 83 new abstract states per level (queries are self-loops under the view);
    # 3224 = the 62 states above depth 3, each stepped with all 52 actions
    assert (result.states, result.edges, result.depth) == (145, 3224, 3)


def test_the_daemon_host_small_bound_has_its_pinned_state_and_edge_counts() -> None:
    result = _explored("daemon_host", "small")
    # 976 = 2 inits + 55 + 919 new states per level (inspect, clock steps, validate, horizon queries
    # and restores with nothing to restore are self-loops); 2850 = 57 states above depth 2 x 50 actions
    assert (result.states, result.edges, result.depth) == (976, 2850, 2)


@pytest.mark.parametrize("name", COMPONENTS)
def test_the_correct_impl_keeps_every_invariant_and_reaches_every_witness_at_small(name: str) -> None:
    result = _explored(name, "small")
    assert result.failure is None, result.failure
    # the boundary witnesses aim at the fuzzer's `around` draws, not at the fixed alphabet
    fuzz_only = importlib.import_module(f"properties.{name}").FUZZ_ONLY_WITNESSES
    assert set(result.unreached) <= set(fuzz_only), result.unreached


@pytest.mark.parametrize("name", COMPONENTS)
def test_the_alphabet_exercises_every_rule_of_the_subject(name: str) -> None:
    comp = registry.get_component(name)
    rules = {n for n, v in vars(comp.subject_cls).items()
             if callable(v) and not n.startswith("_")} - RULE_METHODS_NOT_RULES
    exploration = comp.exploration
    for bound in exploration.bounds:
        assert rules <= {rule for rule, _ in exploration.actions_for(bound)}, bound


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_curated_mutant_has_an_explore_bound(name: str) -> None:
    comp = registry.get_component(name)
    bounds = comp.exploration.mutant_bounds
    assert set(bounds) == {m.name for m in comp.mutants}
    assert all(b in comp.exploration.bounds or b.startswith("unreachable: ") for b in bounds.values())


MUTANTS = [(name, m.name) for name in COMPONENTS for m in registry.get_component(name).mutants]


@pytest.mark.parametrize("name, mutant", MUTANTS)
def test_exploration_finds_every_curated_mutant_at_its_bound(name: str, mutant: str) -> None:
    comp = registry.get_component(name)
    expected = next(m.caught_by for m in comp.mutants if m.name == mutant)
    result = _explored(name, comp.exploration.mutant_bounds[mutant], mutant)
    assert result.failure is not None
    assert matches_check(result.failure.name, expected), result.failure


@pytest.mark.nightly
@pytest.mark.parametrize("name", COMPONENTS)
def test_the_correct_impl_keeps_every_invariant_at_large(name: str) -> None:
    result = _explored(name, "large")
    assert result.failure is None, result.failure


@pytest.mark.parametrize("name", COMPONENTS)
def test_the_view_makes_the_small_counts_independent_of_the_worker_count(name: str) -> None:
    comp = registry.get_component(name)
    two = explore(comp, comp.impl_cls, comp.exploration, bound="small", workers=2)
    one = _explored(name, "small")
    assert (two.states, two.edges, two.failure) == (one.states, one.edges, None)
