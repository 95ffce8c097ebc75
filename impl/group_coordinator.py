"""Optimized group coordinator: same API and semantics as `model.group_coordinator`.

What it optimizes (compute-perf-analysis.md)
--------------------------------------------
- #152 a reverse index `entity id -> origin hash`, maintained by `add_member`,
  `remove_last` and `update_member_placement`, so the per-event lookup after the load
  balancer's choice (and the duplicate-entity check) is one dict probe, not a scan.
- #158 health updates and placement updates reach `members[index]` directly, with the
  defensive re-check `members[index].index == index` (anything else is a no-op).
- #167 a cached healthy count, adjusted by every health transition, so `healthy_count`
  and `health()` are O(1).
- #166 `place_with_spread` says (`narrowed_by_exclusion`) when the exclusion filter
  narrowed the choice; the fallback walks the candidates once.
Routing goes through the optimized balancer `impl.load_balancer.LoadBalancer`;
placement through whatever scheduler the caller passes (`impl.scheduler.Scheduler` in
the properties). Semantics, draws (none of its own: the balancer's only) and errors are
the model's, including the never-released connection slot of `route_event`.

`check_invariants()` recomputes the reverse index and the healthy count from the
members, and checks that the balancer holds exactly one endpoint per member.

Override points for mutants (each private method is one behaviour)
------------------------------------------------------------------
`_slot` (the #158 guard), `_set_health` (flag + LB health + count), `_count_transition`
(the cached count on a flag change), `_index_add` / `_index_remove` / `_index_move` (the
reverse index), `_after_route` (what happens to the LB slot after a route: nothing),
`_saturate` (u8 saturation), `_classify` (health from full counts),
`_spread_fallback` (what happens when the primary placement is excluded).

Left out: the same as the model.
"""
from __future__ import annotations

import random
from typing import Any, Collection, Container, Optional

import attrs

from impl.load_balancer import LoadBalancer
from meshspec.clock import Clock, monotonic_clock
from model.group_coordinator import (  # noqa: F401  (re-exported API values)
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
    check_entity_id,
    check_u8,
    check_u64,
    duplicate_entity,
    lb_config_for,
    placement_failed_from,
    saturating_u8,
)
from model.load_balancer import (
    Endpoint,
    HealthStatus,
    LoadBalancerConfig,
    LoadBalancerError,
    RequestContext,
    Selection,
    Strategy,
)
from model.scheduler import (
    Artifact,
    CapabilityFilter,
    PlacementDecision,
    PlacementFilter,
    PlacementReason,
    SchedulerError,
    TieBreakContext,
)

_HEALTH = {True: HealthStatus.HEALTHY, False: HealthStatus.UNHEALTHY}
_GROUP_HEALTHY = GroupHealth.healthy_group()
_GROUP_DEAD = GroupHealth.dead()


class GroupCoordinator:
    """Members plus a reverse index and a cached healthy count."""

    def __init__(
        self,
        strategy: Strategy = Strategy.ROUND_ROBIN,
        *,
        clock: Clock = monotonic_clock,
        rng: Optional[random.Random] = None,
        lb_config: Optional[LoadBalancerConfig] = None,
    ) -> None:
        self._members: list[MemberInfo] = []
        self._origin_by_entity: dict[bytes, int] = {}
        self._healthy = 0
        self._lb = LoadBalancer(lb_config_for(strategy, lb_config), clock=clock,
                                rng=rng if rng is not None else random.Random())

    # ---- the reverse index (#152)

    def _index_add(self, entity_id: bytes, origin_hash: int) -> None:
        self._origin_by_entity[entity_id] = origin_hash

    def _index_remove(self, entity_id: bytes) -> None:
        self._origin_by_entity.pop(entity_id, None)

    def _index_move(self, old: bytes, new: bytes, origin_hash: int) -> None:
        self._index_remove(old)
        self._index_add(new, origin_hash)

    # ---- membership

    def add_member(self, info: MemberInfo) -> None:
        if info.entity_id_bytes in self._origin_by_entity:
            raise duplicate_entity(info.entity_id_bytes)
        self._lb.add_endpoint(Endpoint(info.entity_id_bytes))
        self._index_add(info.entity_id_bytes, info.origin_hash)
        self._members.append(info)
        self._healthy += info.healthy

    def remove_last(self) -> Optional[MemberInfo]:
        if not self._members:
            return None
        info = self._members.pop()
        self._lb.remove_endpoint(info.entity_id_bytes)
        self._index_remove(info.entity_id_bytes)
        self._healthy -= info.healthy
        return info

    # ---- routing

    def route_event(self, ctx: RequestContext) -> int:
        try:
            selection = self._lb.select(ctx)
        except LoadBalancerError:
            raise NoHealthyMember() from None
        self._after_route(selection)
        origin = self._origin_by_entity.get(selection.node_id)
        if origin is None:
            raise NoHealthyMember()
        return origin

    def _after_route(self, selection: Selection) -> None:
        """0.25.0: nothing; the LB slot the selection reserved is never released."""

    def origin_hash_for_entity_id(self, entity_id: bytes) -> Optional[int]:
        return self._origin_by_entity.get(entity_id)

    # ---- health (#158, #167)

    def _slot(self, index: int) -> Optional[int]:
        check_u8("index", index)
        if index < len(self._members) and self._members[index].index == index:
            return index
        return None

    def _count_transition(self, was: bool, now: bool) -> None:
        self._healthy += now - was

    def _set_health(self, pos: int, healthy: bool) -> None:
        member = self._members[pos]
        self._count_transition(member.healthy, healthy)
        self._members[pos] = attrs.evolve(member, healthy=healthy)
        self._lb.update_health(member.entity_id_bytes, _HEALTH[healthy])

    def mark_unhealthy(self, index: int) -> None:
        pos = self._slot(index)
        if pos is not None:
            self._set_health(pos, False)

    def mark_healthy(self, index: int) -> None:
        pos = self._slot(index)
        if pos is not None:
            self._set_health(pos, True)

    def update_member_placement(self, index: int, new_node_id: int, new_entity_id: bytes) -> None:
        check_u64("new_node_id", new_node_id)
        check_entity_id(new_entity_id)
        pos = self._slot(index)
        if pos is None:
            return
        member = self._members[pos]
        old = member.entity_id_bytes
        if new_entity_id != old and new_entity_id in self._origin_by_entity:
            raise duplicate_entity(new_entity_id)
        self._lb.remove_endpoint(old)
        self._count_transition(member.healthy, True)
        self._members[pos] = attrs.evolve(member, node_id=new_node_id,
                                          entity_id_bytes=new_entity_id, healthy=True)
        self._lb.add_endpoint(Endpoint(new_entity_id))
        self._index_move(old, new_entity_id, member.origin_hash)

    def on_node_recovery(self, recovered_node_id: int, registry: Container[int]) -> None:
        check_u64("recovered_node_id", recovered_node_id)
        for pos, member in enumerate(self._members):
            if (member.node_id == recovered_node_id and not member.healthy
                    and member.origin_hash in registry):
                self._set_health(pos, True)

    # ---- queries

    def _saturate(self, count: int) -> int:
        return saturating_u8(count)

    def _classify(self, healthy: int, total: int) -> GroupHealth:
        if healthy == 0:
            return _GROUP_DEAD
        if healthy == total:
            return _GROUP_HEALTHY
        return GroupHealth.degraded(self._saturate(healthy), self._saturate(total))

    def health(self) -> GroupHealth:
        return self._classify(self._healthy, len(self._members))

    def members(self) -> list[MemberInfo]:
        return list(self._members)

    def member_count(self) -> int:
        return self._saturate(len(self._members))

    def healthy_count(self) -> int:
        return self._saturate(self._healthy)

    def members_on_node(self, node_id: int) -> list[int]:
        return [m.index for m in self._members if m.node_id == node_id]

    # ---- placement

    @classmethod
    def place_with_spread(cls, scheduler: Any, requirements: CapabilityFilter,
                          exclude: Collection[int]) -> SpreadPlacement:
        try:
            primary = scheduler.place(requirements)
        except SchedulerError as exc:
            raise placement_failed_from(exc) from None
        if primary.node_id not in exclude:
            return SpreadPlacement(primary.node_id, primary.reason, False)
        return cls._spread_fallback(scheduler, requirements, exclude, primary)

    @classmethod
    def _spread_fallback(cls, scheduler: Any, requirements: CapabilityFilter,
                         exclude: Collection[int], primary: PlacementDecision) -> SpreadPlacement:
        node_id = next((n for n in scheduler.query_candidates(requirements) if n not in exclude), None)
        if node_id is None:
            raise PlacementFailed(ALL_EXCLUDED)
        return SpreadPlacement(node_id, PlacementReason.FIRST_MATCH, True)

    @classmethod
    def place_member(cls, scheduler: Any, artifact: Artifact, requirements: CapabilityFilter,
                     exclude: Collection[int], placement: PlacementFilter,
                     tie_break: TieBreakContext) -> PlacementDecision:
        node_id = scheduler.select_member_node(artifact, requirements, exclude, placement, tie_break)
        if node_id is None:
            raise PlacementFailed(NONE_SATISFIED)
        return PlacementDecision(node_id, PlacementReason.BEST_SCORE)

    # ---- observation

    def abstract(self) -> tuple:
        return (tuple(self._members), self._lb.abstract())

    def check_invariants(self) -> None:
        expected = {m.entity_id_bytes: m.origin_hash for m in self._members}
        assert len(expected) == len(self._members), "two members share an entity id"
        index = self._origin_by_entity
        assert index == expected, (
            f"reverse index drifted: {len(index)} entries for {len(expected)} members; "
            f"stale {[k.hex()[:10] for k in index.keys() - expected.keys()]}, "
            f"missing {[k.hex()[:10] for k in expected.keys() - index.keys()]}, "
            f"wrong {[k.hex()[:10] for k in expected if index.get(k, expected[k]) != expected[k]]}")
        healthy = sum(1 for m in self._members if m.healthy)
        assert self._healthy == healthy, f"cached healthy count {self._healthy}, scan {healthy}"
        lb_ids = {e.node_id for e in self._lb.endpoints()}
        assert lb_ids == expected.keys(), "LB endpoints are not exactly the members' entity ids"
