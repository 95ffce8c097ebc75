"""Unit tests of the group coordinator, every test against the model and the impl.

Tests named after 0.25.0 pinning tests reproduce them (semantics.md §2.6 items 25-27 and
the `place_member_*` tests of group_coord.rs); the others pin the decisions documented in
`model/group_coordinator.py` (the never-released route slot, unique entity ids, u8
saturation, the #166 narrowing flag)."""
from __future__ import annotations

import math
import random

import pytest

import impl.group_coordinator as impl_gc
import impl.scheduler as impl_sched
import model.group_coordinator as model_gc
import model.scheduler as model_sched
from meshspec.clock import FakeClock
from model.group_coordinator import (
    ALL_EXCLUDED,
    NONE_SATISFIED,
    GroupError,
    GroupHealth,
    InvalidConfig,
    MemberInfo,
    NoHealthyMember,
    PlacementFailed,
    RegistryFailed,
    SpreadPlacement,
    placement_failed_from,
)
from model.load_balancer import HealthStatus, LoadBalancerConfig, RequestContext, Strategy
from model.scheduler import (
    Artifact,
    CapabilityFilter,
    NoCandidate,
    PlacementDecision,
    PlacementReason,
    ScoreTable,
    TieBreakContext,
)

ANY = CapabilityFilter()
CTX = RequestContext()
PAIRS = [(model_gc.GroupCoordinator, model_sched.Scheduler),
         (impl_gc.GroupCoordinator, impl_sched.Scheduler)]


@pytest.fixture(params=PAIRS, ids=["model", "impl"])
def pair(request):
    return request.param


@pytest.fixture
def cls(pair):
    return pair[0]


@pytest.fixture
def sched_cls(pair):
    return pair[1]


def entity(n: int) -> bytes:
    return bytes([n]) + bytes(31)


def member(index: int, origin: int | None = None, healthy: bool = True,
           node: int | None = None) -> MemberInfo:
    """As the Rust test's `make_member`: entity byte 0 = index, node 0xA000 | index."""
    return MemberInfo(index, 0xA1 + index if origin is None else origin,
                      0xA000 | index if node is None else node, entity(index), healthy)


def coord(cls, n: int = 0, *, strategy=Strategy.ROUND_ROBIN, cap: int | None = None, **kw):
    config = None if cap is None else LoadBalancerConfig(max_connections_per_endpoint=cap)
    c = cls(strategy, clock=FakeClock(0), rng=random.Random(7), lb_config=config)
    for i in range(n):
        c.add_member(member(i, **kw))
    c.check_invariants()
    return c


def lb_view(c) -> dict[bytes, tuple[HealthStatus, int]]:
    """entity id -> (LB health, LB connections), from the abstract state."""
    return {ep[0][0]: (ep[0][2], ep[1]) for ep in c.abstract()[1][4]}


def route_all(c, n: int) -> list[int]:
    out = [c.route_event(CTX) for _ in range(n)]
    c.check_invariants()
    return out


# ------------------------------------------------------------------ values and errors

def test_group_errors_display_the_rust_text():
    assert str(NoHealthyMember()) == "no healthy member available"
    assert str(PlacementFailed("x")) == "placement failed: x"
    assert str(RegistryFailed("y")) == "registry operation failed: y"
    assert str(InvalidConfig("z")) == "invalid config: z"
    assert PlacementFailed("x") == PlacementFailed("x") != InvalidConfig("x")
    for error in (NoHealthyMember, PlacementFailed, RegistryFailed, InvalidConfig):
        assert issubclass(error, GroupError)


def test_scheduler_errors_convert_to_placement_failed_with_their_text():
    assert placement_failed_from(NoCandidate()) == PlacementFailed("no nodes match capability requirements")


def test_group_health_renders_like_the_rust_debug_form():
    assert str(GroupHealth.healthy_group()) == "Healthy"
    assert str(GroupHealth.dead()) == "Dead"
    assert str(GroupHealth.degraded(2, 3)) == "Degraded { healthy: 2, total: 3 }"


@pytest.mark.parametrize("kwargs", [dict(index=256), dict(index=-1), dict(origin_hash=2**64),
                                    dict(node_id=-1), dict(entity_id_bytes=bytes(31))])
def test_member_info_rejects_values_rust_types_cannot_hold(kwargs):
    base = dict(index=0, origin_hash=1, node_id=1, entity_id_bytes=entity(0), healthy=True)
    with pytest.raises(ValueError):
        MemberInfo(**{**base, **kwargs})


def test_health_index_outside_u8_is_a_value_error(cls):
    c = coord(cls, 1)
    for bad in (256, -1):
        with pytest.raises(ValueError):
            c.mark_unhealthy(bad)


def test_placement_and_recovery_reject_values_rust_types_cannot_hold(cls):
    c = coord(cls, 1)
    with pytest.raises(ValueError):
        c.update_member_placement(0, -1, entity(5))
    with pytest.raises(ValueError):
        c.update_member_placement(0, 1, bytes(31))
    with pytest.raises(ValueError):
        c.on_node_recovery(2**64, set())
    assert c.members() == [member(0)]


def test_group_health_rejects_an_unknown_kind():
    with pytest.raises(ValueError):
        GroupHealth("poorly")


# ------------------------------------------------------------------ membership

def test_new_coordinator_is_empty_and_dead(cls):
    c = coord(cls)
    assert (c.member_count(), c.healthy_count(), c.members(), c.health()) == (0, 0, [], GroupHealth.dead())
    assert c.remove_last() is None


def test_add_member_registers_a_default_healthy_lb_endpoint(cls):
    c = coord(cls, 3)
    assert [m.index for m in c.members()] == [0, 1, 2]
    assert lb_view(c) == {entity(i): (HealthStatus.HEALTHY, 0) for i in range(3)}
    assert c.health() == GroupHealth.healthy_group()


def test_add_member_ignores_the_healthy_flag_for_the_lb_endpoint(cls):
    c = coord(cls)
    c.add_member(member(0, healthy=False))
    c.check_invariants()
    assert c.healthy_count() == 0 and c.health() == GroupHealth.dead()
    assert lb_view(c)[entity(0)][0] == HealthStatus.HEALTHY
    assert c.route_event(CTX) == 0xA1, "0.25.0: a member added unhealthy is still routable"


def test_members_returns_a_copy(cls):
    c = coord(cls, 2)
    c.members().clear()
    assert c.member_count() == 2


def test_remove_last_pops_the_tail_and_its_endpoint(cls):
    c = coord(cls, 3)
    assert c.remove_last() == member(2)
    c.check_invariants()
    assert set(lb_view(c)) == {entity(0), entity(1)}
    assert c.member_count() == 2


def test_duplicate_entity_id_is_refused_on_add(cls):
    c = coord(cls, 2)
    with pytest.raises(InvalidConfig, match="already belongs to a member"):
        c.add_member(MemberInfo(2, 0xFF, 0xB, entity(1)))
    c.check_invariants()
    assert c.member_count() == 2


def test_duplicate_entity_id_is_refused_on_update_member_placement(cls):
    c = coord(cls, 2)
    before = c.abstract()
    with pytest.raises(InvalidConfig):
        c.update_member_placement(0, 0xB, entity(1))
    assert c.abstract() == before


def test_entity_id_can_be_reused_after_its_member_is_removed(cls):
    c = coord(cls, 2)
    c.remove_last()
    c.add_member(MemberInfo(1, 0x77, 0xB, entity(1)))
    c.check_invariants()
    assert c.origin_hash_for_entity_id(entity(1)) == 0x77


# ------------------------------------------------------------------ routing

def test_origin_hash_lookup_uses_reverse_index_across_mutations(cls):
    """Pin #152 (§2.6 item 25): the lookup stays right across add / remove_last / update."""
    c = coord(cls, 3)
    assert [c.origin_hash_for_entity_id(entity(i)) for i in range(3)] == [0xA1, 0xA2, 0xA3]
    assert c.origin_hash_for_entity_id(entity(0xFE)) is None
    assert c.remove_last().origin_hash == 0xA3
    assert c.origin_hash_for_entity_id(entity(2)) is None, "remove_last must clear the entry"
    new = bytes([0xC0, 0x01]) + bytes(30)
    c.update_member_placement(0, 0xBEEF, new)
    c.check_invariants()
    assert c.origin_hash_for_entity_id(entity(0)) is None, "stale entity id must be evicted"
    assert c.origin_hash_for_entity_id(new) == 0xA1, "new entity id keeps the origin hash"


def test_route_event_round_robins_over_members(cls):
    c = coord(cls, 3)
    assert route_all(c, 6) == [0xA1, 0xA2, 0xA3, 0xA1, 0xA2, 0xA3]


def test_route_event_skips_unhealthy_members(cls):
    c = coord(cls, 3)
    c.mark_unhealthy(1)
    assert set(route_all(c, 4)) == {0xA1, 0xA3}


def test_route_event_on_an_empty_or_dead_group_is_no_healthy_member(cls):
    c = coord(cls)
    with pytest.raises(NoHealthyMember):
        c.route_event(CTX)
    c = coord(cls, 2)
    c.mark_unhealthy(0)
    c.mark_unhealthy(1)
    with pytest.raises(NoHealthyMember):
        c.route_event(CTX)


def test_route_event_maps_every_lb_error_to_no_healthy_member(cls):
    c = coord(cls, 2)
    with pytest.raises(NoHealthyMember):
        c.route_event(RequestContext(required_tags=("gpu",)))  # endpoints carry no tags


def test_route_event_never_releases_its_connection_slot(cls):
    """§2.3: every routed event keeps one LB connection of the chosen member forever."""
    c = coord(cls, 2)
    route_all(c, 5)
    assert {e: conns for e, (_, conns) in lb_view(c).items()} == {entity(0): 3, entity(1): 2}


def test_leaked_slots_starve_a_healthy_group_at_the_connection_cap(cls):
    c = coord(cls, 2, cap=2)
    assert sorted(route_all(c, 4)) == [0xA1, 0xA1, 0xA2, 0xA2]
    with pytest.raises(NoHealthyMember):
        c.route_event(CTX)
    assert c.health() == GroupHealth.healthy_group() and c.healthy_count() == 2


def test_update_member_placement_recreates_the_endpoint_and_frees_its_slots(cls):
    c = coord(cls, 1, cap=1)
    route_all(c, 1)
    with pytest.raises(NoHealthyMember):
        c.route_event(CTX)
    c.update_member_placement(0, 0xB, entity(0))  # same entity id: a fresh endpoint
    assert route_all(c, 1) == [0xA1]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_routes_to_a_member_origin(cls, strategy):
    c = coord(cls, 4, strategy=strategy)
    c.mark_unhealthy(2)
    got = [c.route_event(RequestContext(routing_key=str(i), session_id="s")) for i in range(8)]
    c.check_invariants()
    assert set(got) <= {0xA1, 0xA2, 0xA4}


# ------------------------------------------------------------------ health

def test_mark_health_resolves_via_direct_index(cls):
    """Pin #158 (§2.6 item 26): members[index] directly; index 99 is a no-op."""
    c = coord(cls, 3)
    c.mark_unhealthy(1)
    assert not c.members()[1].healthy and lb_view(c)[entity(1)][0] == HealthStatus.UNHEALTHY
    c.mark_healthy(1)
    assert c.members()[1].healthy and lb_view(c)[entity(1)][0] == HealthStatus.HEALTHY
    before = c.abstract()
    c.mark_unhealthy(99)
    assert c.abstract() == before and all(m.healthy for m in c.members())
    c.check_invariants()


def test_health_update_on_a_slot_whose_index_differs_is_a_no_op(cls):
    """The dense-index guard: never act on the wrong member (pre-#158 scan would)."""
    c = coord(cls)
    c.add_member(MemberInfo(0, 1, 10, entity(0)))
    c.add_member(MemberInfo(5, 2, 10, entity(1)))  # position 1 carries index 5
    before = c.abstract()
    for op in (c.mark_unhealthy, c.mark_healthy):
        op(5)
        op(1)
    c.update_member_placement(5, 11, entity(9))
    c.update_member_placement(1, 11, entity(9))
    assert c.abstract() == before
    c.check_invariants()


def test_marking_twice_counts_once(cls):
    c = coord(cls, 2)
    c.mark_unhealthy(0)
    c.mark_unhealthy(0)
    assert c.healthy_count() == 1 and c.health() == GroupHealth.degraded(1, 2)
    c.mark_healthy(0)
    c.mark_healthy(0)
    assert c.healthy_count() == 2
    c.check_invariants()


def test_health_is_dead_when_no_member_is_healthy(cls):
    c = coord(cls, 2)
    c.mark_unhealthy(0)
    c.mark_unhealthy(1)
    assert c.health() == GroupHealth.dead() and c.healthy_count() == 0


def test_counts_saturate_at_u8_max(cls):
    c = coord(cls, 256 - 1)
    c.add_member(MemberInfo(255, 7, 7, bytes([255, 1]) + bytes(30)))
    c.add_member(MemberInfo(0, 8, 7, bytes([0, 2]) + bytes(30)))  # a 257th member
    c.check_invariants()
    assert (c.member_count(), c.healthy_count()) == (255, 255)
    assert c.health() == GroupHealth.healthy_group()


def test_health_compares_full_counts_before_saturating(cls):
    """256 members, 255 healthy: Degraded{255, 255}, not Healthy."""
    c = coord(cls, 256)
    c.mark_unhealthy(3)
    assert c.health() == GroupHealth.degraded(255, 255)
    assert c.healthy_count() == 255


# ------------------------------------------------------------------ placement updates and recovery

def test_update_member_placement_moves_node_entity_and_marks_healthy(cls):
    c = coord(cls, 2)
    c.mark_unhealthy(1)
    new = entity(0x42)
    c.update_member_placement(1, 0xBEEF, new)
    c.check_invariants()
    m = c.members()[1]
    assert (m.node_id, m.entity_id_bytes, m.healthy, m.origin_hash) == (0xBEEF, new, True, 0xA2)
    assert entity(1) not in lb_view(c) and lb_view(c)[new] == (HealthStatus.HEALTHY, 0)
    assert c.members_on_node(0xBEEF) == [1]


def test_update_member_placement_out_of_range_is_a_no_op(cls):
    c = coord(cls, 2)
    before = c.abstract()
    c.update_member_placement(2, 0xBEEF, entity(9))
    assert c.abstract() == before


def test_on_node_recovery_revives_only_registered_unhealthy_members_on_that_node(cls):
    c = coord(cls)
    for i, node in enumerate((10, 10, 10, 11)):
        c.add_member(member(i, node=node))
    for i in range(4):
        c.mark_unhealthy(i)
    registry = {0xA1, 0xA3, 0xA4}  # member 1 (0xA2) was unregistered
    c.on_node_recovery(10, registry)
    c.check_invariants()
    assert [m.healthy for m in c.members()] == [True, False, True, False]
    assert lb_view(c)[entity(0)][0] == HealthStatus.HEALTHY
    assert lb_view(c)[entity(1)][0] == HealthStatus.UNHEALTHY


def test_on_node_recovery_of_an_unknown_node_changes_nothing(cls):
    c = coord(cls, 2)
    c.mark_unhealthy(0)
    before = c.abstract()
    c.on_node_recovery(0xDEAD, {0xA1, 0xA2})
    assert c.abstract() == before


def test_members_on_node_lists_indices_in_member_order(cls):
    c = coord(cls)
    for i, node in enumerate((10, 11, 10)):
        c.add_member(member(i, node=node))
    assert (c.members_on_node(10), c.members_on_node(11), c.members_on_node(12)) == ([0, 2], [1], [])


# ------------------------------------------------------------------ placement over the scheduler

def make_scheduler(sched_cls, ids, local=None, tags=None):
    """As the Rust `make_scheduler`: local node = first id (0xFFFF if none)."""
    nodes = {n: (tags or {}).get(n, ()) for n in ids}
    return sched_cls(ids[0] if ids and local is None else (local or 0xFFFF), (), nodes)


def test_place_with_spread_unchanged_after_place_member_added(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x1111, 0x2222, 0x3333])
    got = cls.place_with_spread(s, ANY, set())
    assert got == SpreadPlacement(0x1111, PlacementReason.LOCAL_PREFERRED, False)
    assert isinstance(got, PlacementDecision)


def test_place_with_spread_falls_back_to_the_first_non_excluded_candidate(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x1111, 0x2222, 0x3333])
    got = cls.place_with_spread(s, ANY, {0x1111, 0x2222})
    assert got == SpreadPlacement(0x3333, PlacementReason.FIRST_MATCH, True)


def test_place_with_spread_reports_when_exclusion_narrowed_the_choice(cls, sched_cls):
    """#166: FirstMatch alone cannot tell a narrowed fallback from a plain first match."""
    s = make_scheduler(sched_cls, [0x2222, 0x3333], local=0x1111, tags={0x2222: ("gpu",), 0x3333: ("gpu",)})
    gpu = CapabilityFilter().require_tag("gpu")
    plain = cls.place_with_spread(s, gpu, set())
    narrowed = cls.place_with_spread(s, gpu, {0x2222})
    assert (plain.reason, plain.narrowed_by_exclusion) == (PlacementReason.FIRST_MATCH, False)
    assert (narrowed.node_id, narrowed.reason, narrowed.narrowed_by_exclusion) == \
        (0x3333, PlacementReason.FIRST_MATCH, True)


def test_regression_spread_rejects_when_all_nodes_excluded(cls, sched_cls):
    """§2.6 item 27: no silent fallback to an excluded node."""
    s = make_scheduler(sched_cls, [0x1111, 0x2222])
    with pytest.raises(PlacementFailed) as err:
        cls.place_with_spread(s, ANY, {0x1111, 0x2222})
    assert str(err.value) == f"placement failed: {ALL_EXCLUDED}"


def test_scale_up_does_not_colocate_new_replicas(cls, sched_cls):
    """§2.6 item 28 at the coordinator's level: scale_to's loop, with every chosen node added
    to the exclusion set (the fix), places each replica on a distinct node, then fails."""
    s = make_scheduler(sched_cls, [0x1111, 0x2222, 0x3333])
    used: set[int] = set()
    for _ in range(3):
        used.add(cls.place_with_spread(s, ANY, used).node_id)
    assert used == {0x1111, 0x2222, 0x3333}
    with pytest.raises(PlacementFailed):
        cls.place_with_spread(s, ANY, used)


def test_place_with_spread_turns_scheduler_errors_into_placement_failed(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x2222], local=0x1111)
    with pytest.raises(PlacementFailed, match="no nodes match capability requirements"):
        cls.place_with_spread(s, CapabilityFilter().require_tag("tpu"), set())


def test_place_with_spread_excluded_local_node_outside_the_index_falls_back(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x2222], local=0x1111)
    got = cls.place_with_spread(s, ANY, {0x1111})
    assert got == SpreadPlacement(0x2222, PlacementReason.FIRST_MATCH, True)


TB = TieBreakContext()
ART = Artifact()


def fixed(score, veto=()):
    return ScoreTable({n: None for n in veto}, default=score)


def test_place_member_stamps_best_score_reason(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x1111, 0x2222, 0x3333])
    assert cls.place_member(s, ART, ANY, set(), fixed(0.7), TB) == \
        PlacementDecision(0x1111, PlacementReason.BEST_SCORE)


def test_place_member_excludes_already_placed_nodes(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x1111, 0x2222, 0x3333])
    assert cls.place_member(s, ART, ANY, {0x1111}, fixed(0.5), TB).node_id == 0x2222


def test_place_member_returns_placement_failed_when_all_vetoed_or_excluded(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x1111, 0x2222, 0x3333])
    with pytest.raises(PlacementFailed, match="excluded or vetoed"):
        cls.place_member(s, ART, ANY, {0x1111, 0x3333}, fixed(1.0, veto=[0x2222]), TB)


def test_place_member_picks_highest_scoring_over_lex_order(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x1111, 0x2222, 0x3333])
    table = ScoreTable({0x1111: 0.1, 0x2222: 0.9, 0x3333: 0.5}, default=0.0)
    assert cls.place_member(s, ART, ANY, set(), table, TB).node_id == 0x2222


def test_place_member_returns_placement_failed_for_empty_index(cls, sched_cls):
    s = make_scheduler(sched_cls, [])
    with pytest.raises(PlacementFailed) as err:
        cls.place_member(s, ART, ANY, set(), fixed(1.0), TB)
    assert str(err.value) == f"placement failed: {NONE_SATISFIED}"


def test_place_member_never_picks_a_nan_scored_node(cls, sched_cls):
    s = make_scheduler(sched_cls, [0x1111, 0x2222])
    table = ScoreTable({0x1111: math.nan, 0x2222: 0.1})
    assert cls.place_member(s, ART, ANY, set(), table, TB).node_id == 0x2222


# ------------------------------------------------------------------ model and impl agree

def test_model_and_impl_agree_on_a_random_history():
    rng = random.Random(4)
    sides = [coord(c, strategy=Strategy.POWER_OF_TWO, cap=3) for c in (model_gc.GroupCoordinator,
                                                                         impl_gc.GroupCoordinator)]
    next_entity = 0
    for _ in range(400):
        op, seed = rng.randrange(6), rng.random()
        outs = []
        for c in sides:
            r = random.Random(seed)
            try:
                if op == 0:
                    n = len(c.members())
                    c.add_member(MemberInfo(n if r.random() < 0.9 else 0, r.randrange(5), r.randrange(3),
                                            entity(next_entity % 256) if r.random() < 0.9 else entity(0)))
                elif op == 1:
                    outs.append(c.remove_last())
                elif op == 2:
                    outs.append(c.route_event(CTX))
                elif op == 3:
                    (c.mark_healthy if r.random() < 0.5 else c.mark_unhealthy)(r.randrange(6))
                elif op == 4:
                    c.update_member_placement(r.randrange(6), r.randrange(3), entity(100 + r.randrange(50)))
                else:
                    c.on_node_recovery(r.randrange(3), {0, 1, 2})
            except GroupError as exc:
                outs.append(exc)
            outs.append((c.health(), c.healthy_count(), c.member_count()))
        next_entity += op == 0
        assert outs[:len(outs) // 2] == outs[len(outs) // 2:]
        assert sides[0].abstract() == sides[1].abstract()
        sides[1].check_invariants()
