"""The upstream tests that pin §2.6 items 28-32 (replica_group.rs, standby_group.rs), ported to
plain pytest and run against both the model and the impl; plus identities and the registry hook."""
from __future__ import annotations

import hashlib
import random

import pytest
import xxhash

import impl.groups as I
import impl.scheduler as IS
import model.groups as M
import model.scheduler as MS
from meshspec.clock import FakeClock
from model.group_coordinator import InvalidConfig, NoHealthyMember, PlacementFailed, RegistryFailed
from model.load_balancer import RequestContext

SIDES = [pytest.param((M.Group, MS.Scheduler), id="model"), pytest.param((I.Group, IS.Scheduler), id="impl")]
SEED = bytes([55]) * 32


def setup(side, kind: str, count: int, nodes=(0x1111, 0x2222, 0x3333, 0x4444)):
    group_cls, sched_cls = side
    scheduler = sched_cls(0xFFFF, ("unused",), {n: () for n in nodes})
    registry = M.DaemonRegistry()
    group = group_cls.spawn(kind, count, SEED, scheduler, registry, clock=FakeClock(0), rng=random.Random(3))
    return group, scheduler, registry


def active_state(group, registry):
    return registry.state_of(group.route_event(RequestContext()))


def deliver(group, registry, seqs):
    for seq in seqs:
        group.deliver(registry, seq)


def test_identities_are_xxh3_and_keyed_blake2s():
    assert M.group_id_of(SEED) == xxhash.xxh3_64_intdigest(SEED) & 0xFFFF_FFFF
    secret = M.derive_replica_secret(SEED, 1)
    assert secret == hashlib.blake2s(SEED + b"\x01", key=b"net-replica-v1").digest()
    assert secret != M.derive_replica_secret(SEED, 0) and secret == M.derive_replica_secret(SEED, 1)


@pytest.mark.parametrize("side", SIDES)
def test_fork_keypairs_come_from_the_injected_rng_and_lineage_verifies(side):
    a, _, _ = setup(side, "fork", 2)
    b, _, _ = setup(side, "fork", 2)
    assert [m.origin_hash for m in a.members()] == [m.origin_hash for m in b.members()]
    assert a.verify_lineage()


@pytest.mark.parametrize("side", SIDES)
def test_zero_replicas_and_one_member_standby_are_rejected(side):
    with pytest.raises(InvalidConfig, match="replica_count must be > 0"):
        setup(side, "replica", 0)
    with pytest.raises(InvalidConfig, match="at least 2 members"):
        setup(side, "standby", 1)


@pytest.mark.parametrize("side", SIDES)
def test_scale_up_does_not_colocate_new_replicas(side):
    group, scheduler, registry = setup(side, "replica", 1)
    group.scale_to(4, scheduler, registry)
    nodes = [m.node_id for m in group.members()]
    assert len(set(nodes)) == 4
    with pytest.raises(PlacementFailed):  # four indexed nodes and the local one: no sixth node
        group.scale_to(6, scheduler, registry)
    assert len({m.node_id for m in group.members()}) == len(group.members()) == 5


@pytest.mark.parametrize("side", SIDES)
def test_place_failure_does_not_strand_slot_in_unregistered_state(side):
    group, scheduler, registry = setup(side, "replica", 2)
    failed = group.members()[1].node_id
    registry.fail_next("place")
    assert group.on_node_failure(failed, scheduler, registry) == []
    slot = group.members()[1]
    assert not slot.healthy and slot.origin_hash in registry
    group.on_node_recovery(failed, registry)
    assert group.members()[1].healthy


@pytest.mark.parametrize("side", SIDES)
def test_promote_does_not_half_mutate_on_no_healthy_member(side):
    group, scheduler, registry = setup(side, "standby", 3)
    for node in (m.node_id for m in group.members()[1:]):
        registry.fail_next("place")
        group.on_node_failure(node, scheduler, registry)
    before = group.abstract()
    with pytest.raises(NoHealthyMember):
        group.promote(registry)
    assert group.abstract() == before and group.active_index() == 0 and group.members()[0].healthy


@pytest.mark.parametrize("side", SIDES)
def test_sync_standbys_actually_restores_state_onto_standbys(side):
    group, _, registry = setup(side, "standby", 3)
    deliver(group, registry, range(1, 11))
    assert group.sync_standbys(registry) == 10 and group.buffered_events() == []
    for m in group.members()[1:]:
        assert registry.state_of(m.origin_hash) == tuple(range(1, 11))
    group.promote(registry)
    assert active_state(group, registry) == tuple(range(1, 11))


@pytest.mark.parametrize("side", SIDES)
def test_sync_standbys_partial_failure_records_per_standby_progress(side):
    group, _, registry = setup(side, "standby", 3)
    deliver(group, registry, range(1, 6))
    registry.fail_next("restore", skip=1)
    with pytest.raises(RegistryFailed):
        group.sync_standbys(registry)
    assert (group.synced_through(1), group.ever_synced(1)) == (5, True)
    assert (group.synced_through(2), group.ever_synced(2)) == (0, False)
    assert group.buffered_events() == [1, 2, 3, 4, 5]  # kept for the standby that failed


@pytest.mark.parametrize("side", SIDES)
def test_promote_prefers_synced_standby_over_freshly_replaced_one(side):
    group, scheduler, registry = setup(side, "standby", 3)
    group.sync_standbys(registry)  # both standbys synced through 0
    group.on_node_failure(group.members()[2].node_id, scheduler, registry)  # 2 re-placed: never synced
    assert group.ever_synced(2) is False and group.synced_through(2) == group.synced_through(1) == 0
    group.promote(registry)
    assert group.active_index() == 1


@pytest.mark.parametrize("side", SIDES)
def test_promote_does_not_double_apply_events_within_synced_range(side):
    group, _, registry = setup(side, "standby", 3)
    deliver(group, registry, range(1, 6))
    registry.fail_next("restore", skip=1)
    with pytest.raises(RegistryFailed):
        group.sync_standbys(registry)
    deliver(group, registry, (6, 7))
    group.promote(registry)
    assert group.active_index() == 1
    assert active_state(group, registry) == (1, 2, 3, 4, 5, 6, 7)


@pytest.mark.parametrize("side", SIDES)
def test_promote_bumps_term_counter(side):
    group, _, registry = setup(side, "standby", 3)
    assert group.term() == 1
    group.promote(registry)
    group.promote(registry)
    assert group.term() == 3


@pytest.mark.parametrize("side", SIDES)
def test_try_recover_bumps_term_on_standby_replacement(side):
    group, scheduler, registry = setup(side, "standby", 3)
    registry.fail_next("place")
    group.on_node_failure(group.members()[2].node_id, scheduler, registry)
    assert group.try_recover(scheduler, registry) == [2] and group.term() == 2
    assert group.try_recover(scheduler, registry) == [] and group.term() == 2


@pytest.mark.parametrize("side", SIDES)
def test_try_recover_skips_unhealthy_active_and_preserves_state(side):
    group, scheduler, registry = setup(side, "standby", 2)
    deliver(group, registry, (1, 2, 3))
    registry.fail_next("place")
    group.on_node_failure(group.members()[1].node_id, scheduler, registry)
    with pytest.raises(NoHealthyMember):
        group.on_node_failure(group.members()[0].node_id, scheduler, registry)
    assert group.try_recover(scheduler, registry) == [1]
    assert group.active_index() == 0 and registry.state_of(group.members()[0].origin_hash) == (1, 2, 3)


@pytest.mark.parametrize("side", SIDES)
def test_try_recover_places_at_most_four_slots_per_tick(side):
    nodes = tuple(range(1, 13))
    group, scheduler, registry = setup(side, "replica", 6, nodes)
    for m in group.members():
        registry.fail_next("place")
        group.on_node_failure(m.node_id, scheduler, registry)
    assert group.try_recover(scheduler, registry) == [0, 1, 2, 3]
    assert group.try_recover(scheduler, registry) == [4, 5] and group.term() == 3


def test_an_injected_fault_fires_once_on_the_chosen_call():
    registry = M.DaemonRegistry()
    registry.register(7)
    registry.fail_next("deliver", skip=1)
    registry.deliver(7, 1)
    with pytest.raises(RegistryFailed, match="injected"):
        registry.deliver(7, 2)
    registry.deliver(7, 3)
    assert registry.state_of(7) == (1, 3)
    with pytest.raises(ValueError):
        registry.fail_next("explode")


def test_replace_is_an_atomic_upsert_and_register_refuses_a_duplicate():
    registry = M.DaemonRegistry()
    registry.register(9)
    registry.deliver(9, 1)
    with pytest.raises(RegistryFailed, match="already registered"):
        registry.register(9)
    registry.replace(9)
    assert registry.state_of(9) == () and 9 in registry


# -- each ported test fails on the mutant that reintroduces its bug ---------------------------------

from mutants import groups as P  # noqa: E402

PORTED = {
    "scale_to_colocates": test_scale_up_does_not_colocate_new_replicas,
    "unregister_before_placing": test_place_failure_does_not_strand_slot_in_unregistered_state,
    "promote_demotes_first": test_promote_does_not_half_mutate_on_no_healthy_member,
    "sync_only_bookkeeping": test_sync_standbys_actually_restores_state_onto_standbys,
    "partial_sync_skips_bookkeeping": test_sync_standbys_partial_failure_records_per_standby_progress,
    "promote_ignores_sync_history": test_promote_prefers_synced_standby_over_freshly_replaced_one,
    "promote_replays_whole_buffer": test_promote_does_not_double_apply_events_within_synced_range,
    "replay_bisect_left": test_promote_does_not_double_apply_events_within_synced_range,
    "promote_without_term": test_promote_bumps_term_counter,
    "recover_without_term": test_try_recover_bumps_term_on_standby_replacement,
    "recover_wipes_active": test_try_recover_skips_unhealthy_active_and_preserves_state,
    "recover_early_exit_on_any_healthy": test_try_recover_bumps_term_on_standby_replacement,
}


@pytest.mark.parametrize("name", sorted(PORTED))
def test_the_ported_test_fails_on_the_mutant_of_its_bug(name):
    cls = next(m.cls for m in P.MUTANTS if m.name == name)
    with pytest.raises((AssertionError, pytest.fail.Exception, NoHealthyMember)):
        PORTED[name]((cls, IS.Scheduler))
