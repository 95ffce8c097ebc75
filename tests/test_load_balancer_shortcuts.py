"""The load balancer's speed shortcuts, each with the stale variant that its checks catch.

- the model's ring is `sorted_ring`, memoized as a pure function of the members' ids AND
  their vnode hashes (a memo keyed by the ids alone serves one ring class's ring to another);
- the impl keeps a re-added id's ring entries (the ring depends only on the set of ids),
  and only moves the entry list to the new record (the mutant readd_forgets_vnodes does not);
- the harness reuses the rows of the state the previous select left for the next select of a
  chain (only when that state is the `before` it is given);
- the impl's self-check answers an empty stratum without a fresh build;
- the machine draws a rule's choices as one tuple of indices (permutation, bulk count).
"""
from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

import impl.load_balancer as impl_lb
import model.load_balancer as model_lb
from meshspec.clock import FakeClock
from meshspec.strategies import boundary_values
from model.load_balancer import Endpoint, HealthStatus, LoadBalancerConfig, Strategy
from mutants.load_balancer import ReaddForgetsVnodes
from properties import load_balancer as P

CLASSES = [model_lb.LoadBalancer, impl_lb.LoadBalancer]
IDS = ["model", "impl"]
ZERO = (0.0, 0.0, 0, 0.0, 0.0)


def nid(i: int) -> bytes:
    return bytes([i]) + bytes(31)


def balancer(cls: type, n: int = 3, strategy: Strategy = Strategy.CONSISTENT_HASH) -> Any:
    lb = cls(LoadBalancerConfig(strategy=strategy), clock=FakeClock(), rng=random.Random(1))
    for i in range(1, n + 1):
        lb.add_endpoint(Endpoint(nid(i), weight=i))
    return lb


def subject(cls: type, weak: bool, cap: int = 10_000, strategy: str = "round_robin") -> P.LoadBalancerSubject:
    s = P.LoadBalancerSubject(cls, "model" if cls is model_lb.LoadBalancer else "impl")
    endpoints = [(i, 1, "healthy", [], True, None, ZERO) for i in range(3)]
    s.init(strategy, cap, True, True, 0, 0, weak, endpoints)
    s.last = ("init", (), None)
    return s


# -- the model's memoized ring ---------------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_re_adding_an_id_leaves_the_ring_as_it_was(cls: type) -> None:
    lb = balancer(cls)
    before = lb._ring_entries()
    lb.add_endpoint(Endpoint(nid(2), weight=0, health=HealthStatus.DEGRADED, zone="z1"))
    assert lb._ring_entries() == before
    lb.remove_endpoint(nid(2))
    lb.add_endpoint(Endpoint(nid(2)))
    assert lb._ring_entries() == before


def test_the_model_ring_is_rebuilt_for_other_vnode_hashes_of_the_same_ids() -> None:
    strong, weak = subject(model_lb.LoadBalancer, False), subject(model_lb.LoadBalancer, True)
    assert strong.sut._ring_entries() != weak.sut._ring_entries()
    for s in (strong, weak):
        P.ring_has_150_distinct_entries_per_endpoint(s)


class IdsOnlyRingMemo(model_lb.LoadBalancer):
    """The stale variant: the ring memoized by the member ids alone."""

    memo: dict[frozenset, tuple] = {}

    def _ring_entries(self) -> tuple:
        return self.memo.setdefault(frozenset(self._endpoints), super()._ring_entries())


def test_a_ring_memo_keyed_by_ids_alone_fails_the_ring_invariant() -> None:
    IdsOnlyRingMemo.memo.clear()
    P.ring_has_150_distinct_entries_per_endpoint(subject(IdsOnlyRingMemo, False))
    weak = subject(IdsOnlyRingMemo, True)  # same ids: the memo answers the full-hash ring
    with pytest.raises(AssertionError, match="ring of 450 entries"):
        P.ring_has_150_distinct_entries_per_endpoint(weak)


# -- the impl's re-add shortcut --------------------------------------------------------------------

def test_the_impl_re_add_keeps_the_very_ring_and_moves_the_entry_list() -> None:
    lb = balancer(impl_lb.LoadBalancer)
    ring, vnodes = lb._ring, lb._eps[nid(2)].vnodes
    lb.add_endpoint(Endpoint(nid(2), weight=7))
    assert lb._ring is ring and lb._eps[nid(2)].vnodes is vnodes
    lb.check_invariants()


def test_a_re_add_that_forgets_the_entry_list_fails_the_self_check_and_later_the_ring() -> None:
    lb = balancer(ReaddForgetsVnodes)
    lb.add_endpoint(Endpoint(nid(2), weight=7))
    with pytest.raises(AssertionError, match="vnode list stale"):
        lb.check_invariants()
    lb.remove_endpoint(nid(2))  # removes nothing from the ring: 150 orphans stay
    s = subject(impl_lb.LoadBalancer, False)
    s.sut = lb
    with pytest.raises(AssertionError, match="non-members"):
        P.ring_has_150_distinct_entries_per_endpoint(s)


# -- the harness's rows of a chained select ----------------------------------------------------------

@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_chained_selects_up_to_the_cap_and_past_it_pass_every_check(cls: type) -> None:
    s = subject(cls, True, cap=1)
    s.bulk_reserve(5)  # three reservations fill the caps; two selects fail
    assert s.violations == {}
    P.connections_within_cap(s)


class StaleRowsSubject(P.LoadBalancerSubject):
    """The stale variant: every select of a chain judged against the rows of the first."""

    def _select(self, ctx: Any, steals: int = 0, race: str = "reserve", before: Any = None) -> Any:
        first = self.__dict__.setdefault("first_rows", None)
        out = super()._select(ctx, steals, race, before)
        self.first_rows = first or self.after_rows
        self.after_rows = self.first_rows
        return out


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_rows_reused_from_a_stale_state_fail_the_selection_checks(cls: type) -> None:
    s = StaleRowsSubject(cls, "model")
    s.init("round_robin", 1, True, True, 0, 0, True, [(i, 1, "healthy", [], True, None, ZERO) for i in range(3)])
    s.bulk_reserve(5)
    assert "selection_fails_only_when_nothing_is_admissible" in s.violations


# -- the impl's self-check of an empty stratum ------------------------------------------------------

@pytest.mark.parametrize("corrupt", ["total_q", "ids", "_min_latency", "_prefix"])
def test_an_empty_stratum_with_stale_totals_or_aggregates_fails_the_self_check(corrupt: str) -> None:
    lb = balancer(impl_lb.LoadBalancer, n=1, strategy=Strategy.LEAST_LATENCY)
    lb.update_health(nid(1), HealthStatus.UNHEALTHY)
    stratum = next(st for st in lb._strata.values() if not st.eps)
    lb.check_invariants()
    stale = {"total_q": 4, "ids": {nid(1)}, "_min_latency": object(), "_prefix": [4]}[corrupt]
    setattr(stratum, corrupt, stale)
    with pytest.raises(AssertionError, match="empty but"):
        lb.check_invariants()


# -- the machine's index draws ------------------------------------------------------------------------

def test_fisher_yates_indices_give_every_permutation_exactly_once() -> None:
    n = len(P.POOL)
    sizes = range(n, 1, -1)
    perms = [tuple(P.permutation(ix, n)) for ix in itertools.product(*map(range, sizes))]
    assert len(set(perms)) == len(perms) == 720
    assert set(perms) == set(itertools.permutations(range(n)))


@pytest.mark.parametrize("cap", [1, 2, 3, 299, 300, 10_000])
def test_bulk_counts_are_the_values_around_the_cap_draws(cap: int) -> None:
    near = set(boundary_values([cap], lo=1, hi=300))
    got = {P.bulk_count(cap, share, i, j) for share in (0, 29, 30, 99) for i in range(P.SPREAD)
           for j in range(3)}
    assert got == near | {30, 80, 210}
    assert {P.bulk_count(cap, 30, i, j) for i in range(P.SPREAD) for j in range(3)} == {30, 80, 210}


def test_an_index_drawn_in_spread_is_uniform_over_any_list_of_up_to_six() -> None:
    for n in range(1, 7):
        counts = [0] * n
        for r in range(P.SPREAD):
            counts[P.nth(list(range(n)), r)] += 1
        assert len(set(counts)) == 1
