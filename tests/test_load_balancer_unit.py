"""Unit tests of the load balancer, every test against both the model and the impl."""
from __future__ import annotations

import math
import random
from typing import Any, Callable

import attrs
import pytest

import impl.load_balancer as impl_lb
import model.load_balancer as model_lb
from meshspec.clock import NS_PER_MS, FakeClock
from model.load_balancer import (
    VIRTUAL_NODES,
    AllEndpointsUnhealthy,
    CircuitOpen,
    Endpoint,
    EndpointNotFound,
    HealthStatus,
    LoadBalancerConfig,
    LoadBalancerError,
    LoadMetrics,
    MaxConnectionsReached,
    NoEndpointsAvailable,
    NoMatchingEndpoints,
    RequestContext,
    SelectionReason,
    Strategy,
    fnv1a_64,
    node_id_debug,
    total_order_key,
    vnode_hashes,
    vnode_key,
)

CLASSES = [model_lb.LoadBalancer, impl_lb.LoadBalancer]
RECOVERY = 10 * NS_PER_MS
H, D, U, K = (HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY,
              HealthStatus.UNKNOWN)
NAN, INF = float("nan"), float("inf")


def nid(i: int) -> bytes:
    return bytes([i]) + bytes(31)


A, B, C, E = nid(1), nid(2), nid(3), nid(4)
CTX = RequestContext()


@pytest.fixture(params=CLASSES, ids=["model", "impl"])
def make(request: pytest.FixtureRequest) -> Any:
    """A factory of balancers of the parametrized class; self-checks every one at teardown."""
    created: list[Any] = []

    def factory(strategy: Strategy = Strategy.ROUND_ROBIN, *, seed: int = 7,
                rng: random.Random | None = None, cls: type | None = None, **cfg: Any) -> Any:
        cfg.setdefault("circuit_recovery_time_ns", RECOVERY)
        config = LoadBalancerConfig(strategy=strategy, **cfg)
        clock = FakeClock(start_ns=0)
        lb = (cls or request.param)(config, clock=clock,
                                    rng=rng if rng is not None else random.Random(seed))
        lb.clock = clock  # test convenience only
        created.append(lb)
        return lb

    factory.cls = request.param
    yield factory
    for lb in created:
        lb.check_invariants()


def add(lb: Any, *ids: bytes, **kw: Any) -> None:
    for i in ids:
        lb.add_endpoint(Endpoint(i, **kw))


def picks(lb: Any, n: int, ctx: RequestContext = CTX) -> list[bytes]:
    return [lb.select(ctx).node_id for _ in range(n)]


def open_circuit(lb: Any, node: bytes) -> None:
    for _ in range(model_lb.CIRCUIT_FAILURE_THRESHOLD):
        lb.record_completion(node, False)


def endpoint_state(lb: Any, node: bytes) -> tuple:
    """(connections, total, failed, consecutive, opened_at, probe, probe_at) from abstract()."""
    for entry in lb.abstract()[4]:
        if entry[0][0] == node:
            return entry[1:]
    raise KeyError(node)


def norm(x: Any) -> Any:
    """Comparable form in which NaN equals NaN."""
    if isinstance(x, float) and math.isnan(x):
        return ("NaN", math.copysign(1.0, x))
    if isinstance(x, (tuple, list)):
        return tuple(norm(y) for y in x)
    if attrs.has(type(x)):
        return (type(x).__name__, norm(attrs.astuple(x, recurse=False)))
    return x


# ---- value types ---------------------------------------------------------------------------


def test_health_status_traffic_rule_and_weight_multiplier() -> None:
    assert [h.can_receive_traffic() for h in (H, D, U, K)] == [True, True, False, False]
    assert [h.weight_multiplier() for h in (H, D, U, K)] == [1.0, 0.5, 0.0, 0.25]


def test_effective_weight_is_weight_times_health_and_zero_when_disabled() -> None:
    assert Endpoint(A, weight=3, health=D).effective_weight() == 1.5
    assert Endpoint(A, weight=3, health=K).effective_weight() == 0.75
    assert Endpoint(A, weight=3, enabled=False).effective_weight() == 0.0
    assert not Endpoint(A, health=K).is_available()
    assert not Endpoint(A, enabled=False).is_available()


def test_load_score_weights_and_clamps() -> None:
    m = LoadMetrics(cpu_usage=1.0, memory_usage=1.0, active_connections=20000,
                    avg_response_time_ms=5000.0, error_rate=1.0)
    assert m.load_score() == pytest.approx(1.0)
    half = LoadMetrics(cpu_usage=0.5, active_connections=5000, avg_response_time_ms=500.0)
    assert half.load_score() == pytest.approx(0.15 + 0.1 + 0.075)
    assert LoadMetrics().load_score() == 0.0


def test_load_score_clamps_a_nan_latency_like_rust_f64_min() -> None:
    assert LoadMetrics(avg_response_time_ms=NAN).load_score() == pytest.approx(0.15)
    assert math.isnan(LoadMetrics(cpu_usage=NAN).load_score())
    assert LoadMetrics(avg_response_time_ms=INF).load_score() == pytest.approx(0.15)


def test_is_overloaded_thresholds() -> None:
    assert LoadMetrics(cpu_usage=0.91).is_overloaded()
    assert LoadMetrics(queue_depth=1001).is_overloaded()
    assert not LoadMetrics(cpu_usage=0.9, memory_usage=0.95, error_rate=0.1,
                           queue_depth=1000).is_overloaded()


def test_config_defaults_match_0_25_0() -> None:
    c = LoadBalancerConfig()
    assert c.strategy is Strategy.ROUND_ROBIN
    assert c.health_check_interval_ns == 5_000 * NS_PER_MS
    assert c.circuit_recovery_time_ns == 30_000 * NS_PER_MS
    assert c.max_connections_per_endpoint == 10_000
    assert c.zone_aware and c.zone_fallback
    assert c.metrics_stale_after_ns == 10_000 * NS_PER_MS
    e = Endpoint(A)
    assert (e.weight, e.health, e.tags, e.priority, e.enabled, e.zone) == \
        (100, H, (), 0, True, None)


def test_error_texts_are_the_rust_display_texts() -> None:
    assert str(NoEndpointsAvailable()) == "no endpoints available"
    assert str(NoMatchingEndpoints()) == "no endpoints match required tags"
    assert str(AllEndpointsUnhealthy()) == "all endpoints unhealthy"
    debug = "[1" + ", 0" * 31 + "]"
    assert str(EndpointNotFound(A)) == f"endpoint not found: {debug}"
    assert str(CircuitOpen(A)) == f"circuit open for endpoint: {debug}"
    assert str(MaxConnectionsReached(A)) == f"max connections reached for endpoint: {debug}"
    assert all(issubclass(e, LoadBalancerError) for e in (NoEndpointsAvailable, CircuitOpen))
    assert NoEndpointsAvailable() == NoEndpointsAvailable() and CircuitOpen(A) != CircuitOpen(B)


def test_values_reject_out_of_range_integers_and_short_node_ids() -> None:
    with pytest.raises(ValueError):
        Endpoint(b"\x01" * 31)
    with pytest.raises(ValueError):
        Endpoint(A, weight=2**32)
    with pytest.raises(ValueError):
        LoadMetrics(active_connections=-1)
    with pytest.raises(ValueError):
        LoadBalancerConfig(circuit_recovery_time_ns=-1)


def test_request_context_hash_key_prefers_routing_key_then_session_then_request_id() -> None:
    assert RequestContext(request_id="r", session_id="s", routing_key="k").hash_key() == "k"
    assert RequestContext(request_id="r", session_id="s").hash_key() == "s"
    assert RequestContext(request_id="r").hash_key() == "r"
    assert RequestContext(routing_key="").hash_key() == ""
    assert RequestContext().hash_key() is None


def test_fnv1a_64_known_vectors_and_vnode_keys_use_rust_debug_rendering() -> None:
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8
    assert node_id_debug(bytes([1, 255]) + bytes(30)) == "[1, 255" + ", 0" * 30 + "]"
    assert vnode_key(A, 7) == ("[1" + ", 0" * 31 + "]-7").encode()
    assert vnode_hashes(A) == [fnv1a_64(vnode_key(A, i)) for i in range(VIRTUAL_NODES)]


def test_total_order_key_matches_rust_total_cmp() -> None:
    ordered = [math.copysign(NAN, -1.0), -INF, -1.0, -0.0, 0.0, 1e-300, 1.0, INF,
               math.copysign(NAN, 1.0)]
    keys = [total_order_key(x) for x in ordered]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


# ---- strategies ------------------------------------------------------------------------------


def test_round_robin_cycles_through_available_endpoints_in_insertion_order(make: Any) -> None:
    lb = make()
    add(lb, C, A, B)
    assert picks(lb, 6) == [C, A, B, C, A, B]
    assert lb.select(CTX).reason is SelectionReason.ROUND_ROBIN


def test_round_robin_skips_disabled_unhealthy_and_unknown_endpoints(make: Any) -> None:
    lb = make()
    add(lb, A)
    lb.add_endpoint(Endpoint(B, enabled=False))
    lb.add_endpoint(Endpoint(C, health=U))
    lb.add_endpoint(Endpoint(E, health=K))
    assert picks(lb, 3) == [A, A, A]
    lb.update_health(E, D)
    assert set(picks(lb, 4)) == {A, E}


def test_weighted_round_robin_serves_shares_equal_to_weights_over_one_wheel(make: Any) -> None:
    lb = make(Strategy.WEIGHTED_ROUND_ROBIN)
    lb.add_endpoint(Endpoint(A, weight=3))
    lb.add_endpoint(Endpoint(B, weight=1))
    assert picks(lb, 8) == [A, A, A, B] * 2
    assert lb.select(CTX).reason is SelectionReason.WEIGHTED


def test_weighted_round_robin_with_zero_total_weight_falls_back_to_round_robin_bug_14(
        make: Any) -> None:
    # 0.25.0 guards with !(total > 0); a NaN total cannot arise (weights are u32 x {1,.5,.25,0})
    lb = make(Strategy.WEIGHTED_ROUND_ROBIN)
    add(lb, A, B, weight=0)
    sel = [lb.select(CTX) for _ in range(4)]
    assert [s.node_id for s in sel] == [A, B, A, B]
    assert {s.reason for s in sel} == {SelectionReason.ROUND_ROBIN}


def test_weighted_round_robin_with_fractional_weights_serves_everyone_fix_d(make: Any) -> None:
    lb = make(Strategy.WEIGHTED_ROUND_ROBIN)
    add(lb, A, B, weight=1, health=D)  # effective 0.5 + 0.5: the 0.25.0 wheel of 1 starves B
    assert picks(lb, 4) == [A, B, A, B]
    lb.add_endpoint(Endpoint(C, weight=3, health=D))  # 0.5 : 0.5 : 1.5 -> 1 : 1 : 3 slots
    got = picks(lb, 10)
    assert [got.count(x) for x in (A, B, C)] == [2, 2, 6]


def test_weighted_round_robin_with_integral_weights_keeps_the_0_25_0_wheel(make: Any) -> None:
    lb = make(Strategy.WEIGHTED_ROUND_ROBIN)
    add(lb, A, B)  # default weights 100 + 100: a wheel of 200, not 2
    assert picks(lb, 101)[-2:] == [A, B]


def test_weighted_rr_precision_past_f64_mantissa_bug_13(make: Any) -> None:
    lb = make(Strategy.WEIGHTED_ROUND_ROBIN)
    add(lb, A, B, weight=1)
    lb._rr_counter = 2**53 + 1  # float(2**53 + 1) % 2 == 0 would pick A
    assert lb.select(CTX).node_id == B
    lb._rr_counter = 2**64 - 1  # the u64 counter wraps to 0 after this select
    assert picks(lb, 2) == [B, A]


def test_least_connections_picks_fewest_reserved_connections_first_on_ties(make: Any) -> None:
    lb = make(Strategy.LEAST_CONNECTIONS)
    add(lb, A, B, C)
    assert picks(lb, 4) == [A, B, C, A]
    lb.record_completion(C, True)
    assert lb.select(CTX).node_id == C
    assert lb.select(CTX).reason is SelectionReason.LEAST_CONNECTIONS


def test_least_connections_ignores_reported_active_connections(make: Any) -> None:
    lb = make(Strategy.LEAST_CONNECTIONS)
    lb.add_endpoint(Endpoint(A, metrics=LoadMetrics(active_connections=9999)))
    add(lb, B)
    assert lb.select(CTX).node_id == A


def test_weighted_least_connections_divides_by_effective_weight(make: Any) -> None:
    lb = make(Strategy.WEIGHTED_LEAST_CONNECTIONS)
    lb.add_endpoint(Endpoint(A, weight=1))
    lb.add_endpoint(Endpoint(B, weight=3))
    got = picks(lb, 8)
    assert (got.count(A), got.count(B)) == (2, 6)
    assert lb.select(CTX).reason is SelectionReason.LEAST_CONNECTIONS


def test_weighted_lc_preserves_fractional_weights_bug_12(make: Any) -> None:
    lb = make(Strategy.WEIGHTED_LEAST_CONNECTIONS)
    lb.add_endpoint(Endpoint(B, weight=1, health=D))  # effective 0.5, first in order
    lb.add_endpoint(Endpoint(A, weight=1))  # effective 1.0
    # B:0/.5 = A:0 (tie, B first); then B 1/.5=2 > A 0; then B 2 > A 1/1 = 1.
    # With max(w, 1.0) the third would be a 1 : 1 tie won by B.
    assert picks(lb, 3) == [B, A, A]


def test_weighted_least_connections_zero_weight_endpoint_uses_epsilon(make: Any) -> None:
    lb = make(Strategy.WEIGHTED_LEAST_CONNECTIONS)
    lb.add_endpoint(Endpoint(A, weight=0))
    add(lb, B)
    assert picks(lb, 3) == [A, B, B]  # A: 1 / 1e-6 after its first connection


def test_random_draws_one_randrange_per_select(make: Any) -> None:
    lb = make(Strategy.RANDOM, seed=11)
    add(lb, A, B, C, E)
    twin = random.Random(11)
    expected = [[A, B, C, E][twin.randrange(4)] for _ in range(20)]
    sel = [lb.select(CTX) for _ in range(20)]
    assert [s.node_id for s in sel] == expected
    assert {s.reason for s in sel} == {SelectionReason.RANDOM}


class ScriptedUnit(random.Random):
    """A Random whose `random()` returns scripted values (randrange is untouched)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def test_weighted_random_uses_one_unit_draw_against_cumulative_weights(make: Any) -> None:
    draws = [0.0, 0.25, 0.2500001, 0.9999999999999999, 0.5]
    lb = make(Strategy.WEIGHTED_RANDOM, rng=ScriptedUnit(draws))
    lb.add_endpoint(Endpoint(A, weight=1))  # cumulative 1 of 4
    lb.add_endpoint(Endpoint(B, weight=0))  # cumulative 1
    lb.add_endpoint(Endpoint(C, weight=3))  # cumulative 4
    sel = [lb.select(CTX) for _ in range(5)]
    assert [s.node_id for s in sel] == [A, A, C, C, C]
    assert {s.reason for s in sel} == {SelectionReason.WEIGHTED}


def test_weighted_random_with_zero_total_behaves_as_random(make: Any) -> None:
    lb = make(Strategy.WEIGHTED_RANDOM, seed=5)
    add(lb, A, B, C, weight=0)
    twin = random.Random(5)
    expected = [[A, B, C][twin.randrange(3)] for _ in range(10)]
    sel = [lb.select(CTX) for _ in range(10)]
    assert [s.node_id for s in sel] == expected
    assert {s.reason for s in sel} == {SelectionReason.RANDOM}


def test_random_f64_never_reaches_one_bug_4(make: Any) -> None:
    # the draw is rng.random(): 53 bits / 2**53, so the largest draw still lands on the wheel
    rng = random.Random(3)
    assert all(0.0 <= rng.random() < 1.0 for _ in range(10_000))
    lb = make(Strategy.WEIGHTED_RANDOM, rng=ScriptedUnit([1.0 - 2**-53]))
    lb.add_endpoint(Endpoint(A, weight=1))
    lb.add_endpoint(Endpoint(B, weight=2**32 - 1))
    lb.add_endpoint(Endpoint(C, weight=0))
    assert lb.select(CTX).node_id == B


def test_consistent_hash_keeps_a_key_on_its_endpoint(make: Any) -> None:
    lb = make(Strategy.CONSISTENT_HASH)
    add(lb, A, B, C, E)
    for key in ("user-1", "user-2", "user-3", ""):
        ctx = RequestContext(routing_key=key)
        first = lb.select(ctx)
        assert first.reason is SelectionReason.CONSISTENT_HASH
        assert picks(lb, 3, ctx) == [first.node_id] * 3


def test_consistent_hash_maps_a_key_to_the_first_vnode_at_or_after_its_hash(make: Any) -> None:
    lb = make(Strategy.CONSISTENT_HASH)
    add(lb, A, B, C)
    ring = sorted((h, n) for n in (A, B, C) for h in vnode_hashes(n))
    for key in ("alpha", "beta", "gamma", "delta"):
        h = fnv1a_64(key.encode())
        expected = next((n for kh, n in ring if kh >= h), ring[0][1])
        assert lb.select(RequestContext(session_id=key)).node_id == expected


def test_consistent_hash_is_deterministic_and_independent_of_insertion_order_bug_1(
        make: Any) -> None:
    one, two = make(Strategy.CONSISTENT_HASH), make(Strategy.CONSISTENT_HASH)
    add(one, A, B, C, E)
    add(two, E, C, B, A)
    keys = [f"key-{i}" for i in range(40)]
    first = [one.select(RequestContext(request_id=k)).node_id for k in keys]
    assert first == [two.select(RequestContext(request_id=k)).node_id for k in keys]
    assert first == [one.select(RequestContext(request_id=k)).node_id for k in keys]
    assert len(set(first)) > 1
    assert one._ring_entries() == two._ring_entries()


def test_consistent_hash_skips_unavailable_endpoints_along_the_ring(make: Any) -> None:
    lb = make(Strategy.CONSISTENT_HASH)
    add(lb, A, B, C)
    ctx = RequestContext(routing_key="sticky")
    owner = lb.select(ctx).node_id
    lb.update_health(owner, U)
    ring = sorted((h, n) for n in (A, B, C) for h in vnode_hashes(n))
    h = fnv1a_64(b"sticky")
    start = next((i for i, (kh, _) in enumerate(ring) if kh >= h), 0)
    expected = next(ring[(start + i) % len(ring)][1] for i in range(len(ring))
                    if ring[(start + i) % len(ring)][1] != owner)
    assert lb.select(ctx).node_id == expected
    lb.update_health(owner, H)
    assert lb.select(ctx).node_id == owner


def test_consistent_hash_adding_an_endpoint_moves_only_keys_to_it(make: Any) -> None:
    lb = make(Strategy.CONSISTENT_HASH)
    add(lb, A, B, C)
    keys = [RequestContext(routing_key=f"k{i}") for i in range(60)]
    before = [lb.select(k).node_id for k in keys]
    add(lb, E)
    after = [lb.select(k).node_id for k in keys]
    assert all(x == y or y == E for x, y in zip(before, after))
    lb.remove_endpoint(E)
    assert [lb.select(k).node_id for k in keys] == before


def test_consistent_hash_without_any_key_falls_back_to_round_robin_advancing_again(
        make: Any) -> None:
    lb = make(Strategy.CONSISTENT_HASH)
    add(lb, A, B, C)
    sel = [lb.select(CTX) for _ in range(3)]
    # counter 0 -> select advances to 1, the fallback takes 1 and advances to 2, ...
    assert [s.node_id for s in sel] == [B, A, C]
    assert {s.reason for s in sel} == {SelectionReason.ROUND_ROBIN}
    assert lb.abstract()[1] == 6


def test_least_latency_picks_smallest_average_response_time(make: Any) -> None:
    lb = make(Strategy.LEAST_LATENCY)
    for node, rt in ((A, 30.0), (B, 10.0), (C, 10.0)):
        lb.add_endpoint(Endpoint(node, metrics=LoadMetrics(avg_response_time_ms=rt)))
    sel = lb.select(CTX)
    assert (sel.node_id, sel.reason) == (B, SelectionReason.LEAST_LATENCY)


def test_least_load_picks_smallest_load_score(make: Any) -> None:
    lb = make(Strategy.LEAST_LOAD)
    for node, cpu in ((A, 0.5), (B, 0.2), (C, 0.9)):
        lb.add_endpoint(Endpoint(node, metrics=LoadMetrics(cpu_usage=cpu)))
    sel = lb.select(CTX)
    assert (sel.node_id, sel.reason) == (B, SelectionReason.LEAST_LOAD)
    assert sel.load_score == pytest.approx(0.06)


def test_nan_metrics_no_panic_bug_2(make: Any) -> None:
    for strategy in (Strategy.LEAST_LATENCY, Strategy.LEAST_LOAD, Strategy.ADAPTIVE,
                     Strategy.POWER_OF_TWO):
        lb = make(strategy)
        lb.add_endpoint(Endpoint(A, metrics=LoadMetrics(avg_response_time_ms=NAN, cpu_usage=NAN)))
        lb.add_endpoint(Endpoint(B, metrics=LoadMetrics(avg_response_time_ms=5.0, cpu_usage=0.1)))
        got = picks(lb, 3)
        if strategy in (Strategy.LEAST_LATENCY, Strategy.LEAST_LOAD):
            assert got == [B, B, B]  # positive NaN sorts last under total_cmp
        assert math.isnan(lb.stats().avg_load_score)


def test_negative_nan_sorts_first_under_total_order(make: Any) -> None:
    lb = make(Strategy.LEAST_LATENCY)
    lb.add_endpoint(Endpoint(A, metrics=LoadMetrics(avg_response_time_ms=5.0)))
    negative_nan = math.copysign(NAN, -1.0)
    lb.add_endpoint(Endpoint(B, metrics=LoadMetrics(avg_response_time_ms=negative_nan)))
    assert lb.select(CTX).node_id == B


def test_infinite_metrics_do_not_raise(make: Any) -> None:
    lb = make(Strategy.LEAST_LOAD)
    lb.add_endpoint(Endpoint(A, metrics=LoadMetrics(cpu_usage=INF, memory_usage=-INF)))
    lb.add_endpoint(Endpoint(B, metrics=LoadMetrics(cpu_usage=-INF)))
    assert lb.select(CTX).node_id in (A, B)
    lb.update_metrics(B, LoadMetrics(avg_response_time_ms=INF, error_rate=INF))
    assert lb.select(CTX).node_id in (A, B)


def test_metrics_update_is_visible_to_the_next_selection_bug_17(make: Any) -> None:
    lb = make(Strategy.LEAST_LOAD)
    add(lb, A, B)
    assert lb.select(CTX).node_id == A
    lb.update_metrics(A, LoadMetrics(cpu_usage=0.8))
    sel = lb.select(CTX)
    assert sel.node_id == B
    lb.update_metrics(B, LoadMetrics(cpu_usage=0.9))
    sel = lb.select(CTX)
    assert (sel.node_id, sel.load_score) == (A, pytest.approx(0.24))


def test_power_of_two_draws_two_indices_and_prefers_fewer_connections(make: Any) -> None:
    lb = make(Strategy.POWER_OF_TWO, seed=21)
    add(lb, A, B, C, E)
    twin = random.Random(21)
    conns = {n: 0 for n in (A, B, C, E)}
    for _ in range(30):
        i, j = twin.randrange(4), twin.randrange(4)
        if j == i:
            j = (j + 1) % 4
        a, b = [A, B, C, E][i], [A, B, C, E][j]
        want = a if conns[a] <= conns[b] else b
        sel = lb.select(CTX)
        assert (sel.node_id, sel.reason) == (want, SelectionReason.POWER_OF_TWO)
        conns[want] += 1


def test_power_of_two_with_one_endpoint_falls_back_to_round_robin_advancing(make: Any) -> None:
    lb = make(Strategy.POWER_OF_TWO)
    add(lb, A)
    sel = lb.select(CTX)
    assert (sel.node_id, sel.reason) == (A, SelectionReason.ROUND_ROBIN)
    assert lb.abstract()[1] == 2


def test_adaptive_uses_least_connections_when_mean_load_exceeds_0_7(make: Any) -> None:
    lb = make(Strategy.ADAPTIVE)
    hot = LoadMetrics(cpu_usage=1.0, memory_usage=1.0, error_rate=1.0)  # score 0.65
    busy = LoadMetrics(cpu_usage=1.0, memory_usage=1.0, active_connections=10000,
                       error_rate=1.0)  # score 0.85
    lb.add_endpoint(Endpoint(A, metrics=busy))
    lb.add_endpoint(Endpoint(B, metrics=busy))
    sel = [lb.select(RequestContext(routing_key="k")) for _ in range(2)]
    assert [s.node_id for s in sel] == [A, B]
    assert {s.reason for s in sel} == {SelectionReason.LEAST_CONNECTIONS}
    lb.update_metrics(B, hot)  # mean 0.75 still > 0.7
    assert lb.select(CTX).reason is SelectionReason.LEAST_CONNECTIONS
    lb.update_metrics(A, hot)  # mean 0.65
    assert lb.select(CTX).reason is SelectionReason.WEIGHTED


def test_adaptive_uses_consistent_hash_for_session_or_routing_key_not_request_id(
        make: Any) -> None:
    lb = make(Strategy.ADAPTIVE)
    add(lb, A, B, C)
    assert lb.select(RequestContext(session_id="s")).reason is SelectionReason.CONSISTENT_HASH
    assert lb.select(RequestContext(routing_key="k")).reason is SelectionReason.CONSISTENT_HASH
    assert lb.select(RequestContext(request_id="r")).reason is SelectionReason.WEIGHTED


def test_adaptive_otherwise_uses_weighted_round_robin_advancing_the_counter(make: Any) -> None:
    lb = make(Strategy.ADAPTIVE)
    lb.add_endpoint(Endpoint(A, weight=1))
    lb.add_endpoint(Endpoint(B, weight=1))
    assert picks(lb, 4) == [B, B, B, B]  # the counter-advancing WRR always sees odd offsets
    assert lb.abstract()[1] == 8


def test_selection_reports_configured_weight_and_load_score(make: Any) -> None:
    lb = make()
    lb.add_endpoint(Endpoint(A, weight=7, health=D, metrics=LoadMetrics(cpu_usage=0.5)))
    sel = lb.select(CTX)
    assert (sel.node_id, sel.weight, sel.load_score) == (A, 7, pytest.approx(0.15))


# ---- errors and counters ---------------------------------------------------------------------


def test_select_on_empty_balancer_raises_without_counting_a_failed_selection(make: Any) -> None:
    lb = make()
    with pytest.raises(NoEndpointsAvailable) as err:
        lb.select(CTX)
    assert str(err.value) == "no endpoints available"
    stats = lb.stats()
    assert (stats.total_selections, stats.failed_selections) == (1, 0)
    assert lb.abstract()[1] == 1


def test_every_strategy_raises_no_endpoints_available_when_nothing_is_available(
        make: Any) -> None:
    for strategy in Strategy:
        lb = make(strategy)
        lb.add_endpoint(Endpoint(A, health=U))
        lb.add_endpoint(Endpoint(B, enabled=False))
        with pytest.raises(NoEndpointsAvailable):
            lb.select(RequestContext(routing_key="k"))


def test_required_tags_must_all_be_present(make: Any) -> None:
    lb = make()
    lb.add_endpoint(Endpoint(A, tags=["gpu"]))
    lb.add_endpoint(Endpoint(B, tags=["gpu", "ssd"]))
    lb.add_endpoint(Endpoint(C, tags=["ssd", "gpu", "x"]))
    assert set(picks(lb, 4, RequestContext(required_tags=["gpu"]))) == {A, B, C}
    assert set(picks(lb, 4, RequestContext(required_tags=["ssd", "gpu"]))) == {B, C}
    assert picks(lb, 2, RequestContext(required_tags=["x", "gpu", "ssd"])) == [C, C]
    with pytest.raises(NoEndpointsAvailable):  # NoMatchingEndpoints is never raised by 0.25.0
        lb.select(RequestContext(required_tags=["tpu"]))
    with pytest.raises(NoEndpointsAvailable):
        lb.select(RequestContext(required_tags=["gpu", "tpu"]))


def test_unknown_ids_are_ignored_by_updates_and_completions(make: Any) -> None:
    lb = make()
    add(lb, A)
    before = lb.abstract()
    lb.update_health(B, U)
    lb.update_metrics(B, LoadMetrics(cpu_usage=1.0))
    lb.record_completion(B, False)
    assert lb.remove_endpoint(B) is False
    assert lb.abstract() == before
    assert lb.remove_endpoint(A) is True
    assert lb.endpoints() == [] and lb._ring_entries() == ()


def test_unmatched_completion_saturates_at_zero_bug_10(make: Any) -> None:
    lb = make()
    add(lb, A)
    lb.record_completion(A, True)
    lb.record_completion(A, True)
    assert endpoint_state(lb, A)[0] == 0
    assert lb.select(CTX).node_id == A
    assert endpoint_state(lb, A)[0] == 1


def test_rr_counter_advances_exactly_once_per_select_bug_11(make: Any) -> None:
    for strategy in (Strategy.ROUND_ROBIN, Strategy.WEIGHTED_ROUND_ROBIN,
                     Strategy.LEAST_CONNECTIONS, Strategy.RANDOM):
        lb = make(strategy)
        add(lb, A, B, C)
        for _ in range(7):
            lb.select(CTX)
        assert lb.abstract()[1] == 7
    lb = make()
    add(lb, A, B, C)
    assert picks(lb, 7) == [A, B, C, A, B, C, A]


def test_connection_cap_is_never_exceeded_bug_5(make: Any) -> None:
    lb = make(Strategy.LEAST_CONNECTIONS, max_connections_per_endpoint=2)
    add(lb, A, B)
    assert sorted(picks(lb, 4)) == [A, A, B, B]
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)
    stats = lb.stats()
    assert (stats.total_connections, stats.total_selections, stats.failed_selections) == (4, 5, 0)
    lb.record_completion(B, True)
    assert lb.select(CTX).node_id == B
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)


def test_connection_cap_of_zero_admits_nothing(make: Any) -> None:
    lb = make(max_connections_per_endpoint=0)
    add(lb, A)
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)


def test_stats_counts_only_healthy_and_averages_load(make: Any) -> None:
    lb = make()
    lb.add_endpoint(Endpoint(A, metrics=LoadMetrics(cpu_usage=1.0)))
    lb.add_endpoint(Endpoint(B, health=D))
    lb.add_endpoint(Endpoint(C, enabled=False))
    picks(lb, 3)
    stats = lb.stats()
    assert (stats.total_endpoints, stats.healthy_endpoints, stats.total_connections) == (3, 2, 3)
    assert stats.avg_load_score == pytest.approx(0.1)
    assert make().stats().avg_load_score == 0.0


def test_endpoints_returns_current_health_and_metrics_in_insertion_order(make: Any) -> None:
    lb = make()
    add(lb, B, A)
    lb.update_health(A, D)
    lb.update_metrics(B, LoadMetrics(cpu_usage=0.5))
    assert lb.endpoints() == [Endpoint(B, metrics=LoadMetrics(cpu_usage=0.5)),
                              Endpoint(A, health=D)]


def test_readding_resets_counters_replaces_config_and_keeps_position(make: Any) -> None:
    lb = make()
    add(lb, A, B)
    picks(lb, 2)
    open_circuit(lb, A)
    lb.add_endpoint(Endpoint(A, weight=5, zone="z"))
    assert [e.node_id for e in lb.endpoints()] == [A, B]
    assert lb.endpoints()[0] == Endpoint(A, weight=5, zone="z")
    assert endpoint_state(lb, A) == (0, 0, 0, 0, None, False, None)
    assert picks(lb, 2) == [A, B]
    lb.remove_endpoint(A)
    add(lb, A)
    assert [e.node_id for e in lb.endpoints()] == [B, A]


def test_readding_leaves_exactly_150_ring_entries_fix_b(make: Any) -> None:
    lb = make(Strategy.CONSISTENT_HASH)
    add(lb, A, B)
    for _ in range(3):
        add(lb, A)
    ring = lb._ring_entries()
    assert [sum(e[1] == n for e in ring) for n in (A, B)] == [VIRTUAL_NODES, VIRTUAL_NODES]
    assert len(set(ring)) == len(ring) == 2 * VIRTUAL_NODES
    assert list(ring) == sorted(ring)


def weak_hash(cls: type, modulus: int = 64) -> type:
    """The same balancer with a hash so weak that ring collisions are certain."""

    class WeakHash(cls):  # type: ignore[misc, valid-type]
        def _key_hash(self, key: str) -> int:
            return super()._key_hash(key) % modulus

        def _vnode_hashes(self, node_id: bytes) -> list[int]:
            return [h % modulus for h in super()._vnode_hashes(node_id)]

    return WeakHash


def test_ring_collision_never_evicts_another_endpoints_vnode_bug_16_fix_c(make: Any) -> None:
    lb = make(Strategy.CONSISTENT_HASH, cls=weak_hash(make.cls))
    add(lb, B, A, C)
    ring = lb._ring_entries()
    assert [sum(e[1] == n for e in ring) for n in (A, B, C)] == [VIRTUAL_NODES] * 3
    assert len(set(ring)) == len(ring)
    # on a collided hash the lowest id wins; the others are reached when it is filtered out
    ctx = RequestContext(routing_key="k")
    assert lb.select(ctx).node_id == A
    lb.update_health(A, U)
    assert lb.select(ctx).node_id == B
    lb.remove_endpoint(B)
    add(lb, B)
    assert [sum(e[1] == n for e in lb._ring_entries()) for n in (A, B, C)] == [VIRTUAL_NODES] * 3


# ---- the reservation retry loop (reachable only through the concurrency hook) ----------------


def racing(cls: type, steals: int) -> type:
    """The balancer with a "concurrent caller" that reserves the chosen endpoint first."""

    class Racing(cls):  # type: ignore[misc, valid-type]
        stolen = 0

        def _interleave(self, chosen: Any, now: int) -> None:
            if self.stolen < steals:
                self.stolen += 1
                assert self._try_reserve(chosen, now)

    return Racing


def test_lost_reservation_retries_at_the_next_offset_and_counter_advances_once_bug_11(
        make: Any) -> None:
    lb = make(max_connections_per_endpoint=1, cls=racing(make.cls, steals=1))
    add(lb, A, B, C)
    sel = lb.select(CTX)  # attempt 0 chose A (stolen), attempt 1 sees [B, C] at offset 1
    assert sel.node_id == C
    assert lb.abstract()[1] == 1
    assert [endpoint_state(lb, n)[0] for n in (A, B, C)] == [1, 0, 1]
    assert (lb.stats().total_selections, lb.stats().failed_selections) == (1, 0)


def test_four_lost_reservations_count_one_failed_selection(make: Any) -> None:
    lb = make(max_connections_per_endpoint=1, cls=racing(make.cls, steals=4))
    add(lb, A, B, C, E, nid(9))
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)
    stats = lb.stats()
    assert (stats.total_selections, stats.failed_selections, stats.total_connections) == (1, 1, 4)
    assert lb.abstract()[1] == 1
    assert lb.select(CTX).node_id == B  # A, C, nid(9), E were taken at offsets 0, 1, 2, 3


def test_losing_the_probe_claim_skips_to_the_next_attempt(make: Any) -> None:
    lb = make(cls=racing(make.cls, steals=1))
    add(lb, A, B)
    open_circuit(lb, A)
    lb.clock.advance(RECOVERY)
    assert lb.select(CTX).node_id == B  # A's probe went to the concurrent caller
    assert endpoint_state(lb, A)[0] == 1 and endpoint_state(lb, A)[5] is True


def chosen_id(chosen: Any) -> bytes:
    return chosen.endpoint.node_id


def test_failed_reservation_releases_the_probe_it_claimed(make: Any) -> None:
    class FillsTheCap(make.cls):  # type: ignore[misc, name-defined]
        fired = False

        def _interleave(self, chosen: Any, now: int) -> None:
            if not self.fired and chosen_id(chosen) == A:
                self.fired = True
                chosen.connections = 1  # a request admitted before the circuit opened
                if hasattr(self, "_sync"):
                    self._sync(chosen, now)

    lb = make(max_connections_per_endpoint=1, cls=FillsTheCap)
    add(lb, A, B)
    open_circuit(lb, A)
    lb.clock.advance(RECOVERY)
    assert lb.select(CTX).node_id == B
    assert endpoint_state(lb, A)[:1] + endpoint_state(lb, A)[5:] == (1, False, None)
    lb.record_completion(A, True)  # not a probe outcome: the circuit stays open
    assert endpoint_state(lb, A)[4] == 0
    assert lb.select(CTX).node_id == A  # and the probe slot is still available


# ---- circuit breaker -------------------------------------------------------------------------


def test_five_consecutive_failures_open_the_circuit_and_a_success_resets_the_run(
        make: Any) -> None:
    lb = make()
    add(lb, A)
    for _ in range(4):
        lb.record_completion(A, False)
    lb.record_completion(A, True)
    for _ in range(4):
        lb.record_completion(A, False)
    assert lb.select(CTX).node_id == A
    assert endpoint_state(lb, A)[2:5] == (8, 4, None)
    lb.clock.advance(3)
    lb.record_completion(A, False)
    assert endpoint_state(lb, A)[2:5] == (9, 5, 3)
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)


def test_circuit_breaker_cycle_closed_open_half_open_probe_closed(make: Any) -> None:
    lb = make()
    add(lb, A, B)
    open_circuit(lb, A)
    assert picks(lb, 3) == [B, B, B]
    lb.clock.advance(RECOVERY - 1)
    assert picks(lb, 2) == [B, B]
    lb.clock.advance(1)  # half-open: exactly one probe goes to A
    got = picks(lb, 4)
    assert got.count(A) == 1
    assert endpoint_state(lb, A)[5:] == (True, RECOVERY)
    lb.record_completion(A, True)  # the probe succeeds: closed
    assert endpoint_state(lb, A)[3:] == (0, None, False, None)
    assert set(picks(lb, 4)) == {A, B}


def test_failed_probe_reopens_the_circuit_for_another_recovery_window(make: Any) -> None:
    lb = make()
    add(lb, A)
    open_circuit(lb, A)
    lb.clock.advance(RECOVERY)
    assert lb.select(CTX).node_id == A
    lb.clock.advance(5)
    lb.record_completion(A, False)
    # failed requests 6; consecutive failures not incremented by a probe; reopened at now
    assert endpoint_state(lb, A)[2:] == (6, 5, RECOVERY + 5, False, None)
    lb.clock.advance(RECOVERY - 1)
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)
    lb.clock.advance(1)
    assert lb.select(CTX).node_id == A


def test_circuit_breaker_half_open_single_probe_bug_6(make: Any) -> None:
    lb = make()
    add(lb, A)
    open_circuit(lb, A)
    lb.clock.advance(RECOVERY)
    assert lb.select(CTX).node_id == A
    for _ in range(3):  # strict: no second request while the probe is in flight (bug #8 too)
        with pytest.raises(NoEndpointsAvailable):
            lb.select(CTX)
    assert lb.stats().failed_selections == 0
    assert endpoint_state(lb, A)[0] == 1


def test_circuit_breaker_does_not_leak_probe_slot_on_multi_endpoint_scan_bug_7(
        make: Any) -> None:
    lb = make()
    add(lb, A, B, C)
    for node in (A, B, C):
        open_circuit(lb, node)
    lb.clock.advance(RECOVERY)
    assert sorted(picks(lb, 3)) == [A, B, C]  # each endpoint gets its own probe
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)
    assert [endpoint_state(lb, n)[5] for n in (A, B, C)] == [True, True, True]


def test_probes_on_distinct_endpoints_are_independent(make: Any) -> None:
    lb = make()
    add(lb, A, B)
    open_circuit(lb, A)
    lb.clock.advance(RECOVERY // 2)
    open_circuit(lb, B)
    lb.clock.advance(RECOVERY // 2)
    assert picks(lb, 1) == [A]
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)
    lb.clock.advance(RECOVERY // 2)
    assert picks(lb, 1) == [B]


def test_any_completion_while_a_probe_is_in_flight_is_the_probe_outcome(make: Any) -> None:
    lb = make()
    add(lb, A)
    picks(lb, 6)  # five fail and open the circuit; one is still in flight
    open_circuit(lb, A)
    lb.clock.advance(RECOVERY)
    lb.select(CTX)  # the probe
    lb.record_completion(A, True)  # the old request finishes first: taken as the probe's outcome
    assert endpoint_state(lb, A)[:5] == (1, 7, 5, 0, None)
    assert lb.select(CTX).node_id == A


def test_abandoned_half_open_probe_is_reclaimed_after_the_recovery_window_fix_a(
        make: Any) -> None:
    lb = make()
    add(lb, A)
    open_circuit(lb, A)
    lb.clock.advance(RECOVERY)
    lb.select(CTX)  # the probe's caller never completes
    lb.clock.advance(RECOVERY - 1)
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)
    lb.clock.advance(1)
    assert lb.select(CTX).node_id == A  # a new probe, stamped now
    assert endpoint_state(lb, A)[5:] == (True, 2 * RECOVERY)
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)


def test_recovery_time_zero_is_clamped_to_one_millisecond_fix_e(make: Any) -> None:
    lb = make(circuit_recovery_time_ns=0)
    add(lb, A)
    open_circuit(lb, A)
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)
    lb.clock.advance(NS_PER_MS - 1)
    with pytest.raises(NoEndpointsAvailable):
        lb.select(CTX)
    lb.clock.advance(1)
    assert lb.select(CTX).node_id == A
    with pytest.raises(NoEndpointsAvailable):  # still a single probe
        lb.select(CTX)


def test_circuit_state_survives_health_changes_and_reopens_only_once(make: Any) -> None:
    lb = make()
    add(lb, A)
    open_circuit(lb, A)
    lb.update_health(A, D)
    lb.clock.advance(1)
    open_circuit(lb, A)  # already open: the open time is not re-stamped
    assert endpoint_state(lb, A)[4] == 0
    lb.clock.advance(RECOVERY - 1)
    sel = lb.select(CTX)
    assert sel.node_id == A and endpoint_state(lb, A)[5] is True


# ---- zones -----------------------------------------------------------------------------------


def zoned(make: Any, **cfg: Any) -> Any:
    lb = make(**cfg)
    lb.add_endpoint(Endpoint(A, zone="z1"))
    lb.add_endpoint(Endpoint(B, zone="z2"))
    lb.add_endpoint(Endpoint(C))
    lb.add_endpoint(Endpoint(E, zone="z1"))
    return lb


def test_zone_affinity_prefers_same_zone_endpoints(make: Any) -> None:
    lb = zoned(make)
    assert set(picks(lb, 6, RequestContext(client_zone="z1"))) == {A, E}
    assert picks(lb, 2, RequestContext(client_zone="z2")) == [B, B]
    assert set(picks(lb, 8)) == {A, B, C, E}


def test_zone_fallback_true_allows_cross_zone_bug_3(make: Any) -> None:
    lb = zoned(make)
    assert set(picks(lb, 8, RequestContext(client_zone="z9"))) == {A, B, C, E}
    lb.update_health(B, U)
    assert set(picks(lb, 6, RequestContext(client_zone="z2"))) == {A, C, E}


def test_zone_fallback_respected_bug_3(make: Any) -> None:
    lb = zoned(make, zone_fallback=False)
    lb.update_health(B, U)
    with pytest.raises(NoEndpointsAvailable):
        lb.select(RequestContext(client_zone="z2"))
    with pytest.raises(NoEndpointsAvailable):
        lb.select(RequestContext(client_zone="z1", required_tags=["t"]))
    assert set(picks(lb, 4, RequestContext(client_zone="z1"))) == {A, E}
    assert set(picks(lb, 6)) == {A, C, E}  # no client zone: no zone rule at all


def test_zone_aware_false_ignores_client_zone(make: Any) -> None:
    lb = zoned(make, zone_aware=False, zone_fallback=False)
    assert set(picks(lb, 8, RequestContext(client_zone="z2"))) == {A, B, C, E}
    assert set(picks(lb, 8, RequestContext(client_zone="z9"))) == {A, B, C, E}


def test_zone_affinity_combines_with_required_tags(make: Any) -> None:
    lb = make()
    lb.add_endpoint(Endpoint(A, zone="z1", tags=["a"]))
    lb.add_endpoint(Endpoint(B, zone="z1", tags=["b"]))
    lb.add_endpoint(Endpoint(C, zone="z2", tags=["b"]))
    assert picks(lb, 2, RequestContext(client_zone="z1", required_tags=["b"])) == [B, B]
    assert picks(lb, 2, RequestContext(client_zone="z2", required_tags=["a"])) == [A, A]


# ---- model and impl agree on a long mixed script ---------------------------------------------

IDS = [nid(i) for i in range(1, 6)]
VALUES = [0.0, 0.3, 0.75, 1.0, 2000.0, NAN, math.copysign(NAN, -1.0), INF, -INF]


def random_endpoint(g: random.Random, node: bytes) -> Endpoint:
    return Endpoint(
        node,
        weight=g.choice([0, 1, 2, 3, 100, 2**32 - 1]),
        health=g.choice([H, H, H, D, D, U, K]),
        tags=g.sample(["a", "b", "c"], g.choice([0, 1, 1, 2, 3])),
        enabled=g.random() < 0.9,
        zone=g.choice([None, "z1", "z1", "z2"]),
        metrics=random_metrics(g),
    )


def random_metrics(g: random.Random) -> LoadMetrics:
    return LoadMetrics(cpu_usage=g.choice(VALUES), memory_usage=g.choice(VALUES),
                       active_connections=g.choice([0, 100, 20000]),
                       avg_response_time_ms=g.choice(VALUES), error_rate=g.choice(VALUES))


def random_context(g: random.Random) -> RequestContext:
    return RequestContext(
        request_id=g.choice([None, "r1", "r2"]),
        session_id=g.choice([None, None, "s1", "s2"]),
        routing_key=g.choice([None, None, "k1", "k2", "k3", ""]),
        client_zone=g.choice([None, None, None, "z1", "z2", "z3"]),
        required_tags=g.sample(["a", "b", "c"], g.choice([0, 0, 0, 0, 0, 1, 2])),
    )


def mixed_script(seed: int, steps: int) -> list[tuple]:
    """A fixed list of operations: (method name, *args) or ("advance", ns)."""
    g = random.Random(seed)
    ops: list[tuple] = []
    for _ in range(steps):
        node = g.choice(IDS)
        kind = g.choices(["select", "complete", "burst", "add", "remove", "health", "metrics",
                          "advance"], weights=[36, 22, 3, 12, 3, 8, 6, 10])[0]
        if kind == "select":
            ops.append(("select", random_context(g)))
        elif kind == "complete":
            ops.append(("record_completion", node, g.random() < 0.4))
        elif kind == "burst":
            ops.extend([("record_completion", node, False)] * 5)
        elif kind == "add":
            ops.append(("add_endpoint", random_endpoint(g, node)))
        elif kind == "remove":
            ops.append(("remove_endpoint", node))
        elif kind == "health":
            ops.append(("update_health", node, g.choice([H, H, D, U, K])))
        elif kind == "metrics":
            ops.append(("update_metrics", node, random_metrics(g)))
        else:
            ops.append(("advance", g.choice([0, 1, NS_PER_MS - 1, NS_PER_MS, 3 * NS_PER_MS])))
    return ops


def outcome(lb: Any, op: tuple) -> Any:
    try:
        return ("ok", norm(getattr(lb, op[0])(*op[1:])))
    except LoadBalancerError as err:
        return ("error", type(err).__name__, str(err))


@pytest.mark.parametrize("variant", [
    dict(max_connections_per_endpoint=3, zone_fallback=True, circuit_recovery_time_ns=NS_PER_MS),
    dict(max_connections_per_endpoint=10_000, zone_fallback=False, circuit_recovery_time_ns=0),
], ids=["cap3-fallback", "nocap-nofallback-recovery0"])
@pytest.mark.parametrize("strategy", list(Strategy), ids=lambda s: s.value)
def test_model_and_impl_agree_on_a_mixed_script(strategy: Strategy, variant: dict) -> None:
    seed = 1000 + list(Strategy).index(strategy)
    config = LoadBalancerConfig(strategy=strategy, **variant)
    clocks = FakeClock(), FakeClock()
    model = model_lb.LoadBalancer(config, clock=clocks[0], rng=random.Random(seed))
    optimized = impl_lb.LoadBalancer(config, clock=clocks[1], rng=random.Random(seed))
    selected = 0
    for step, op in enumerate(mixed_script(seed, 300)):
        if op[0] == "advance":
            for clock in clocks:
                clock.advance(op[1])
            continue
        expected = outcome(model, op)
        assert outcome(optimized, op) == expected, f"step {step}: {op}"
        selected += op[0] == "select" and expected[0] == "ok"
        assert norm(optimized.abstract()) == norm(model.abstract()), f"step {step}: {op}"
        assert norm(optimized.stats()) == norm(model.stats()), f"step {step}"
        assert norm(optimized.endpoints()) == norm(model.endpoints()), f"step {step}"
        optimized.check_invariants()
        if step % 50 == 0:
            assert optimized._ring_entries() == model._ring_entries()
    assert selected >= 30  # the script really exercises selection


# ---- the impl's self-check is not vacuous ------------------------------------------------------


def test_impl_check_invariants_detects_corrupted_caches() -> None:
    def fresh() -> impl_lb.LoadBalancer:
        lb = impl_lb.LoadBalancer(LoadBalancerConfig(), clock=FakeClock(), rng=random.Random(0))
        lb.add_endpoint(Endpoint(A, zone="z", tags=["t"]))
        lb.add_endpoint(Endpoint(B))
        lb.check_invariants()
        return lb

    corruptions: list[Callable[[impl_lb.LoadBalancer], None]] = [
        lambda lb: setattr(lb._eps[A], "traffic", False),
        lambda lb: lb._unlist(lb._eps[A]),
        lambda lb: setattr(lb._strata[(impl_lb._ANY, impl_lb._ANY)], "total_q", 1),
        lambda lb: setattr(lb, "_ring", lb._ring[:-1]),
        lambda lb: setattr(lb, "_ring", lb._ring + ((0, A, 0),)),
        lambda lb: setattr(lb, "_ring", list(lb._ring[:-1])),
        lambda lb: setattr(lb._eps[A], "vnodes", lb._eps[A].vnodes[1:]),
        lambda lb: setattr(lb._eps[B], "latency_key", 1),
        lambda lb: setattr(lb._eps[A], "wlc_div", 0.5),
        lambda lb: setattr(lb._eps[B], "connections", 2**32),
        lambda lb: setattr(lb._eps[A], "opened_at", 0),
    ]
    for corrupt in corruptions:
        lb = fresh()
        corrupt(lb)
        with pytest.raises(AssertionError):
            lb.check_invariants()


def test_impl_check_invariants_catches_the_ring_and_cache_mutants_after_a_passing_check() -> None:
    """The self-check's shortcuts (a memoized fresh ring, tuples and caches already verified by
    identity) never hide a bug that happens after a passing check: each curated mutant that
    corrupts the ring or a stratum's cache is caught by check_invariants itself."""
    from mutants import load_balancer as mut
    from properties.load_balancer import harness_class

    def balancer(cls: type, strategy: Strategy = Strategy.ROUND_ROBIN, weak: bool = False) -> Any:
        lb = harness_class(cls, weak)(LoadBalancerConfig(strategy=strategy), clock=FakeClock(),
                                     rng=random.Random(0))
        lb.add_endpoint(Endpoint(A, weight=2, metrics=LoadMetrics(avg_response_time_ms=1.0)))
        lb.check_invariants()
        return lb

    readd = balancer(mut.ReaddLeaksVnodes)
    readd.add_endpoint(Endpoint(B))
    readd.check_invariants()
    readd.add_endpoint(Endpoint(A))  # the old vnodes stay
    with pytest.raises(AssertionError, match="ring"):
        readd.check_invariants()

    for cls in (mut.RingCollisionLastWriteWins, mut.RingCollisionDestructiveProbe):
        lb = balancer(cls, weak=True)
        lb.add_endpoint(Endpoint(B))  # 150 more vnodes among 1024 hashes: a collision is certain
        with pytest.raises(AssertionError, match="ring|vnode"):
            lb.check_invariants()

    metrics = balancer(mut.StaleSnapshotAfterMetricsChange, Strategy.LEAST_LATENCY)
    metrics.add_endpoint(Endpoint(B, metrics=LoadMetrics(avg_response_time_ms=2.0)))
    assert metrics.select(CTX).node_id == A  # caches A as the stratum's minimum latency
    metrics.check_invariants()
    metrics.update_metrics(A, LoadMetrics(avg_response_time_ms=5.0))
    with pytest.raises(AssertionError, match="min latency stale"):
        metrics.check_invariants()

    weight = balancer(mut.StaleTotalWeightAfterHealthChange, Strategy.WEIGHTED_ROUND_ROBIN)
    weight.add_endpoint(Endpoint(B, weight=2))
    weight.select(CTX)
    weight.check_invariants()
    weight.update_health(A, HealthStatus.DEGRADED)  # still available: the mutant does not re-sync
    with pytest.raises(AssertionError, match="weight stale"):
        weight.check_invariants()
