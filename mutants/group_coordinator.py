"""Curated mutants of group_coordinator: §2.6 items 25-27, the 0.25.0 behaviours this spec changes, optimizations done wrong.

The Component in `properties/group_coordinator.py` gets `MUTANTS` from here through `meshspec.registry`.
"""
from __future__ import annotations

from typing import Any, Optional

import attrs

from impl.group_coordinator import GroupCoordinator as ImplCoordinator
from meshspec.lockstep import mutant
from model import group_coordinator as M
from model.load_balancer import Selection
from model.scheduler import Artifact, CapabilityFilter, PlacementDecision, TieBreakContext
from properties.group_coordinator import requirements


class SpreadFallbackToExcluded(ImplCoordinator):
    """§2.6 item 27: with every candidate excluded, place_with_spread kept the excluded primary."""

    @classmethod
    def _spread_fallback(cls, scheduler: Any, requirements: CapabilityFilter, exclude: Any,
                         primary: PlacementDecision) -> M.SpreadPlacement:
        try:
            return super()._spread_fallback(scheduler, requirements, exclude, primary)
        except M.PlacementFailed:
            return M.SpreadPlacement(primary.node_id, primary.reason, False)


class IndexDriftAfterUpdate(ImplCoordinator):
    """#152 done wrong: update_member_placement does not move the reverse-index entry."""

    def _index_move(self, old: bytes, new: bytes, origin_hash: int) -> None:
        pass


class IndexStaleAfterRemove(ImplCoordinator):
    """#152 done wrong: remove_last leaves the popped member's reverse-index entry behind."""

    def remove_last(self) -> Optional[M.MemberInfo]:
        info = super().remove_last()
        if info is not None:
            self._index_add(info.entity_id_bytes, info.origin_hash)
        return info


class HealthByIndexScan(ImplCoordinator):
    """#158 pre-fix: find the first member whose index field matches, wherever it sits."""

    def _slot(self, index: int) -> Optional[int]:
        M.check_u8("index", index)
        return next((pos for pos, m in enumerate(self._members) if m.index == index), None)


class HealthWithoutGuard(ImplCoordinator):
    """#158 without the re-check: members[index] is acted on whatever index it carries."""

    def _slot(self, index: int) -> Optional[int]:
        M.check_u8("index", index)
        return index if index < len(self._members) else None


class HealthyCountDriftOnPlacement(ImplCoordinator):
    """#167 done wrong: re-placing an unhealthy member marks it healthy without counting it."""

    def update_member_placement(self, index: int, new_node_id: int, new_entity_id: bytes) -> None:
        cached = self._healthy
        super().update_member_placement(index, new_node_id, new_entity_id)
        self._healthy = cached


class HealthyCountDriftOnRepeatedMark(ImplCoordinator):
    """#167 done wrong: every mark_unhealthy decrements the cache, even on an unhealthy member."""

    def _count_transition(self, was: bool, now: bool) -> None:
        self._healthy += 1 if now and not was else (-1 if not now else 0)


class CountsWrapU8(ImplCoordinator):
    """u8 non-saturating: `count as u8` wraps 256 to 0 instead of saturating at 255."""

    def _saturate(self, count: int) -> int:
        return count & 0xFF


class HealthComparesSaturatedCounts(ImplCoordinator):
    """health() saturates before comparing: 256 members with 255 healthy reads as Healthy."""

    def _classify(self, healthy: int, total: int) -> M.GroupHealth:
        return super()._classify(self._saturate(healthy), self._saturate(total))


class RouteReleasesSlot(ImplCoordinator):
    """The 0.25.0 leak fixed: route_event releases the slot at once (not what 0.25.0 does)."""

    def _after_route(self, selection: Selection) -> None:
        self._lb.record_completion(selection.node_id, True)


class HealthFlagWithoutLb(ImplCoordinator):
    """Health updates flip the member flag but not the LB health: a marked-down member stays routable."""

    def _set_health(self, pos: int, healthy: bool) -> None:
        member = self._members[pos]
        self._count_transition(member.healthy, healthy)
        self._members[pos] = attrs.evolve(member, healthy=healthy)


class RecoveryIgnoresRegistry(ImplCoordinator):
    """on_node_recovery revives unregistered members (events routed to an origin that is gone)."""

    def on_node_recovery(self, recovered_node_id: int, registry: Any) -> None:
        everything = type("Everything", (), {"__contains__": lambda self, x: True})()
        super().on_node_recovery(recovered_node_id, everything)


class SpreadReasonNotNarrowed(ImplCoordinator):
    """#166 unfixed: the fallback says FirstMatch only, not that the exclusion narrowed the choice."""

    @classmethod
    def _spread_fallback(cls, scheduler: Any, requirements: CapabilityFilter, exclude: Any,
                         primary: PlacementDecision) -> M.SpreadPlacement:
        got = super()._spread_fallback(scheduler, requirements, exclude, primary)
        return M.SpreadPlacement(got.node_id, got.reason, False)


class PlaceMemberIgnoresExclusion(ImplCoordinator):
    """place_member forgets the exclusion set: members colocate (the spread the groups rely on)."""

    @classmethod
    def place_member(cls, scheduler: Any, artifact: Artifact, requirements: CapabilityFilter,
                     exclude: Any, placement: Any, tie_break: TieBreakContext) -> PlacementDecision:
        return super().place_member(scheduler, artifact, requirements, (), placement, tie_break)


MUTANTS = (
    mutant("spread_fallback_to_excluded", SpreadFallbackToExcluded,
           "§2.6 item 27: place_with_spread fell back to an excluded node when all were excluded",
           "spread_never_returns_excluded"),
    mutant("index_drift_after_update", IndexDriftAfterUpdate,
           "#152 (§2.6 item 25): reverse index not moved by update_member_placement",
           ("reverse_index_matches_members", "check_invariants")),
    mutant("index_stale_after_remove", IndexStaleAfterRemove,
           "#152 (§2.6 item 25): reverse index keeps the entry remove_last popped",
           ("reverse_index_matches_members", "check_invariants")),
    mutant("health_by_index_scan", HealthByIndexScan,
           "#158 (§2.6 item 26) pre-fix scan: health update acts on the wrong member",
           "health_updates_respect_the_dense_index_guard"),
    mutant("health_without_guard", HealthWithoutGuard,
           "#158 (§2.6 item 26) without the index re-check: acts on the wrong member",
           "health_updates_respect_the_dense_index_guard"),
    mutant("healthy_count_drift_on_placement", HealthyCountDriftOnPlacement,
           "#167 done wrong: cached healthy count misses update_member_placement",
           ("counts_agree_with_a_scan", "check_invariants")),
    mutant("healthy_count_drift_on_repeated_mark", HealthyCountDriftOnRepeatedMark,
           "#167 done wrong: cached healthy count decremented twice for one member",
           ("counts_agree_with_a_scan", "check_invariants")),
    mutant("counts_wrap_u8", CountsWrapU8, "u8 counts cast without saturation (256 reads as 0)",
           "counts_agree_with_a_scan"),
    mutant("health_compares_saturated_counts", HealthComparesSaturatedCounts,
           "health() compared u8-saturated counts (256 members, 255 healthy = Healthy)",
           "counts_agree_with_a_scan"),
    mutant("route_releases_slot", RouteReleasesSlot,
           "§2.3: the never-released route slot (0.25.0 behaviour kept by this spec) 'fixed'",
           "route_slots_never_released"),
    mutant("health_flag_without_lb", HealthFlagWithoutLb,
           "health update flips the member flag but not the LB health", "lb_mirrors_members"),
    mutant("recovery_ignores_registry", RecoveryIgnoresRegistry,
           "on_node_recovery revived members whose origin was unregistered (§2.6 item 29's stranded slot)",
           "recovery_revives_only_registered_members"),
    mutant("spread_reason_not_narrowed", SpreadReasonNotNarrowed,
           "#166 unfixed: FirstMatch without saying the exclusion narrowed the choice",
           "place_with_spread result"),
    mutant("place_member_ignores_exclusion", PlaceMemberIgnoresExclusion,
           "place_member dropped the exclusion set (spread lost, cf. §2.6 item 28)",
           "spread_never_returns_excluded"),
)
