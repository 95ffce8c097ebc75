"""Share properties of the weighted strategies, for the model and the impl.

The lockstep machine checks one full wheel of (weighted) round robin after arbitrary
histories (`weighted_round_robin_wheel_is_exact`); these tests pin the same property over
many weight vectors, and the statistical one the machine cannot state per step:

- weighted round robin: over one full wheel (the effective weights in units of 1/k, k the
  smallest of 1, 2, 4 that makes them integral), every endpoint is served exactly its
  share, whatever the counter's starting point (short of the u64 wrap);
- weighted random and random: over N draws each endpoint's count is within 5 binomial
  standard deviations of N x its share (a zero-weight endpoint is never chosen).  With
  5 sigma a correct balancer fails a given (seeded, so deterministic) check with
  probability below 1e-6 per endpoint; a bias of a few percent of a share fails it.
"""
from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import impl.load_balancer as impl_lb
import model.load_balancer as model_lb
from meshspec.clock import FakeClock
from model.load_balancer import Endpoint, HealthStatus, LoadBalancerConfig, RequestContext, Strategy

CLASSES = [model_lb.LoadBalancer, impl_lb.LoadBalancer]
IDS = ["model", "impl"]
CTX = RequestContext()
H, D, U, K = (HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY,
              HealthStatus.UNKNOWN)
SIGMAS = 5.0


def nid(i: int) -> bytes:
    return bytes([i]) + bytes(31)


def balancer(cls: type, strategy: Strategy, endpoints: list[Endpoint], seed: int = 1,
             counter: int = 0) -> Any:
    lb = cls(LoadBalancerConfig(strategy=strategy), clock=FakeClock(), rng=random.Random(seed))
    lb._rr_counter = counter
    for endpoint in endpoints:
        lb.add_endpoint(endpoint)
    return lb


def serve(lb: Any, n: int) -> Counter:
    """n requests, each completed successfully (so connections never pile up)."""
    counts: Counter = Counter()
    for _ in range(n):
        node = lb.select(CTX).node_id
        lb.record_completion(node, True)
        counts[node] += 1
    return counts


def wheel_units(endpoints: list[Endpoint]) -> dict[bytes, int]:
    available = [e for e in endpoints if e.is_available()]
    quarters = [e.effective_weight_quarters() for e in available]
    if sum(quarters) <= 0:
        return {e.node_id: 1 for e in available}  # the round-robin fallback
    k = model_lb.wheel_scale(quarters)
    return {e.node_id: q * k // 4 for e, q in zip(available, quarters) if q}


ENDPOINTS = st.lists(
    st.tuples(st.integers(0, 6), st.sampled_from([H, H, D, D, U, K]), st.booleans()),
    min_size=1, max_size=6,
).map(lambda specs: [Endpoint(nid(i + 1), weight=w, health=h, enabled=on)
                     for i, (w, h, on) in enumerate(specs)])


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
@settings(max_examples=60, deadline=None, derandomize=True)
@given(endpoints=ENDPOINTS, counter=st.integers(0, 2**64 - 1000) | st.integers(2**53 - 40, 2**53 + 40))
def test_weighted_round_robin_serves_exact_shares_over_one_full_wheel(
        cls: type, endpoints: list[Endpoint], counter: int) -> None:
    units = wheel_units(endpoints)
    if not units:
        return
    lb = balancer(cls, Strategy.WEIGHTED_ROUND_ROBIN, endpoints, counter=counter)
    wheel = sum(units.values())
    assert dict(serve(lb, wheel)) == units
    assert dict(serve(lb, 2 * wheel)) == {n: 2 * u for n, u in units.items()}


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_weighted_round_robin_with_fractional_weights_is_exact_and_starves_nobody(cls: type) -> None:
    endpoints = [Endpoint(nid(1), weight=1, health=D), Endpoint(nid(2), weight=3, health=D),
                 Endpoint(nid(3), weight=2), Endpoint(nid(4), weight=5, health=U)]
    lb = balancer(cls, Strategy.WEIGHTED_ROUND_ROBIN, endpoints)
    # effective 0.5 : 1.5 : 2.0 -> units of 1/2: 1 : 3 : 4, a wheel of 8
    assert dict(serve(lb, 8)) == {nid(1): 1, nid(2): 3, nid(3): 4}


def assert_within_tolerance(counts: Counter, shares: dict[bytes, float], n: int) -> None:
    assert set(counts) <= {node for node, p in shares.items() if p > 0}, "a zero share was chosen"
    for node, p in shares.items():
        sd = math.sqrt(n * p * (1 - p))
        assert abs(counts.get(node, 0) - n * p) <= SIGMAS * sd + 1e-9, \
            f"{node[0]}: {counts.get(node, 0)} of {n}, expected {n * p:.0f} +- {SIGMAS * sd:.0f}"


WEIGHTED = [Endpoint(nid(1), weight=1), Endpoint(nid(2), weight=0), Endpoint(nid(3), weight=3, health=D),
            Endpoint(nid(4), weight=2), Endpoint(nid(5), weight=7, health=K),
            Endpoint(nid(6), weight=1, health=D)]


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weighted_random_shares_match_effective_weights_within_5_sigma(cls: type, seed: int) -> None:
    n = 20_000
    lb = balancer(cls, Strategy.WEIGHTED_RANDOM, WEIGHTED, seed=seed)
    available = [e for e in WEIGHTED if e.is_available()]
    total = sum(e.effective_weight() for e in available)
    shares = {e.node_id: e.effective_weight() / total for e in available}
    assert_within_tolerance(serve(lb, n), shares, n)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_is_uniform_over_available_endpoints_within_5_sigma(cls: type, seed: int) -> None:
    n = 12_000
    lb = balancer(cls, Strategy.RANDOM, WEIGHTED, seed=seed)
    available = [e for e in WEIGHTED if e.is_available()]
    assert_within_tolerance(serve(lb, n), {e.node_id: 1 / len(available) for e in available}, n)


def test_model_and_impl_draw_the_same_weighted_random_sequence() -> None:
    model, impl = (balancer(cls, Strategy.WEIGHTED_RANDOM, WEIGHTED, seed=9) for cls in CLASSES)
    assert [list(serve(model, 1)) for _ in range(200)] == [list(serve(impl, 1)) for _ in range(200)]
