"""Curated mutants of groups: §2.6 items 28-32 (upstream test names as origins), optimizations done wrong.

The Component in `properties/groups.py` gets `MUTANTS` from here through `meshspec.registry`.
"""
from __future__ import annotations

from typing import Any

from impl.groups import Group as ImplGroup
from meshspec.lockstep import mutant
from model import groups as M
from model.group_coordinator import RegistryFailed
from model.load_balancer import RequestContext


class ScaleToColocates(ImplGroup):
    """§2.6 28: the exclusion set is not updated inside the placement loop."""

    def _grow(self, n: int, scheduler: Any, registry: M.DaemonRegistry, placer: M.Placer) -> None:
        used = self._used_nodes()
        for index in range(len(self._coord.members()), n):
            secret = self._new_secret(index)
            node = placer.place(self.COORDINATOR, scheduler, registry, self._requirements, used)
            origin = M.origin_hash_of(secret)
            registry.register(origin)
            self._coord.add_member(M.MemberInfo(index, origin, node, M.entity_id_of(secret), True))
            self._nodes_add(node)
            for column, value in ((self._secrets, secret), (self._lineage, M.ForkRecord(self._parent, index)),
                                  (self._synced_through, 0), (self._ever_synced, False)):
                column.append(value)


class UnregisterBeforePlacing(ImplGroup):
    """§2.6 29: on_node_failure unregisters the slot first; a failed placement strands it."""

    def _on_failure(self, node: int, scheduler: Any, registry: M.DaemonRegistry, placer: M.Placer) -> list[int]:
        for m in self._coord.members():
            if m.node_id == node and not (self._kind == "standby" and m.index == self._active):
                registry.unregister(m.origin_hash)
        return super()._on_failure(node, scheduler, registry, placer)


class PromoteDemotesFirst(ImplGroup):
    """§2.6 30: promote demotes the active before searching for a replacement."""

    def _promote(self, registry: M.DaemonRegistry, scheduler: Any, placer: M.Placer) -> int:
        self._coord.mark_unhealthy(self._active)
        return super()._promote(registry, scheduler, placer)


class _NoRestore:
    def __init__(self, registry: M.DaemonRegistry) -> None:
        self._registry = registry

    def snapshot(self, origin: int) -> M.Snapshot:
        return self._registry.snapshot(origin)

    def restore(self, origin: int, snapshot: M.Snapshot) -> None:
        if self._registry.take_fault("restore"):
            raise RegistryFailed(f"restore onto {origin:#x}: {M.INJECTED}")


class SyncOnlyBookkeeping(ImplGroup):
    """§2.6 31a: sync_standbys records progress but never restores the standbys."""

    def sync_standbys(self, registry: M.DaemonRegistry) -> int:
        return super().sync_standbys(_NoRestore(registry))  # type: ignore[arg-type]


class PartialSyncSkipsBookkeeping(ImplGroup):
    """§2.6 31b: a failed restore skips the bookkeeping of the standbys already restored."""

    def sync_standbys(self, registry: M.DaemonRegistry) -> int:
        saved = (list(self._synced_through), list(self._ever_synced))
        try:
            return super().sync_standbys(registry)
        except RegistryFailed:
            self._synced_through, self._ever_synced = saved
            raise


class PromoteIgnoresSyncHistory(ImplGroup):
    """§2.6 31c: promote takes the highest synced_through of ALL healthy standbys, never-synced included."""

    def _roster(self) -> list[int]:
        members = self._coord.members()
        return [i for i in range(len(members)) if i != self._active and members[i].healthy]


class PromoteReplaysWholeBuffer(ImplGroup):
    """§2.6 31d: promote replays the whole buffer, also events the standby already holds."""

    def _to_replay(self, synced_through: int) -> list[int]:
        return list(self._buffer)


class PromoteWithoutTerm(ImplGroup):
    """§2.6 32 (X-1): no fencing term bump on promote."""

    def _bump_term(self) -> None:
        if not self._promoting:
            super()._bump_term()

    _promoting = False

    def _promote(self, registry: M.DaemonRegistry, scheduler: Any, placer: M.Placer) -> int:
        self._promoting = True
        try:
            return super()._promote(registry, scheduler, placer)
        finally:
            self._promoting = False


class RecoverWithoutTerm(ImplGroup):
    """§2.6 32: try_recover re-places a slot without bumping the term."""

    def try_recover(self, scheduler: Any, registry: M.DaemonRegistry) -> list[int]:
        term = self._term
        out = super().try_recover(scheduler, registry)
        self._term = term
        return out


class RecoverWipesActive(ImplGroup):
    """§2.6 32: try_recover also re-places an unhealthy active, wiping its state with a fresh daemon."""

    def try_recover(self, scheduler: Any, registry: M.DaemonRegistry) -> list[int]:
        active, self._active = self._active, -1
        try:
            return super().try_recover(scheduler, registry)
        finally:
            self._active = active


class NodesStaleOnReplace(ImplGroup):
    """The node multiset done wrong: a re-placement does not move the slot's node."""

    def _replace_slot(self, index: int, node: int, registry: M.DaemonRegistry) -> None:
        M.Group._replace_slot(self, index, node, registry)


class ReplayBisectLeft(ImplGroup):
    """The bisection done wrong: bisect_left also replays the event at synced_through."""

    def _to_replay(self, synced_through: int) -> list[int]:
        import bisect
        if not self._monotone:
            return M.Group._to_replay(self, synced_through)
        return self._buffer[bisect.bisect_left(self._buffer, synced_through):]


class RecoverEarlyExitOnAnyHealthy(ImplGroup):
    """The cached-count early exit done wrong: nothing to recover while any member is healthy."""

    def try_recover(self, scheduler: Any, registry: M.DaemonRegistry) -> list[int]:
        if self._coord.healthy_count() > 0:
            return []
        return super().try_recover(scheduler, registry)


class StandbyRoutesToAnyHealthy(ImplGroup):
    """A standby group routes to a healthy member (the last one), not to its active."""

    def route_event(self, ctx: RequestContext) -> int:
        if self._kind != "standby":
            return super().route_event(ctx)
        return [m.origin_hash for m in self._coord.members() if m.healthy][-1]


MUTANTS = (
    mutant("scale_to_colocates", ScaleToColocates,
           "§2.6 item 28 (BUG_REPORT #6), test scale_up_does_not_colocate_new_replicas", "no_colocated_replicas"),
    mutant("unregister_before_placing", UnregisterBeforePlacing,
           "§2.6 item 29 (BUG_REPORT #7), test place_failure_does_not_strand_slot_in_unregistered_state",
           "every_slot_registered"),
    mutant("promote_demotes_first", PromoteDemotesFirst,
           "§2.6 item 30 (#103), test promote_does_not_half_mutate_on_no_healthy_member",
           "promote_is_all_or_nothing"),
    mutant("sync_only_bookkeeping", SyncOnlyBookkeeping,
           "§2.6 item 31, test sync_standbys_actually_restores_state_onto_standbys", "sync_restores_standbys"),
    mutant("partial_sync_skips_bookkeeping", PartialSyncSkipsBookkeeping,
           "§2.6 item 31, test sync_standbys_partial_failure_records_per_standby_progress",
           "sync_records_per_standby_progress"),
    mutant("promote_ignores_sync_history", PromoteIgnoresSyncHistory,
           "§2.6 item 31, test promote_prefers_synced_standby_over_freshly_replaced_one",
           "promote_prefers_synced_standby"),
    mutant("promote_replays_whole_buffer", PromoteReplaysWholeBuffer,
           "§2.6 item 31, test promote_does_not_double_apply_events_within_synced_range",
           "no_event_applied_twice"),
    mutant("promote_without_term", PromoteWithoutTerm,
           "§2.6 item 32 (X-1), test promote_bumps_term_counter", "term_bumps_on_promote_and_recovery"),
    mutant("recover_without_term", RecoverWithoutTerm,
           "§2.6 item 32 (X-1), test try_recover_bumps_term_on_standby_replacement",
           "term_bumps_on_promote_and_recovery"),
    mutant("recover_wipes_active", RecoverWipesActive,
           "§2.6 item 32, test try_recover_skips_unhealthy_active_and_preserves_state",
           ("no_event_lost_after_promote", "try_recover_is_bounded_and_makes_progress")),
    mutant("standby_routes_to_any_healthy", StandbyRoutesToAnyHealthy,
           "§2.3: a standby group routes always to the active (its balancer is unused)",
           "routes_only_to_healthy_members"),
    mutant("nodes_stale_on_replace", NodesStaleOnReplace,
           "node multiset (impl) not moved by a re-placement", ("check_invariants", "no_colocated_replicas")),
    mutant("replay_bisect_left", ReplayBisectLeft,
           "replay bisection (impl) off by one: replays the event at synced_through", "no_event_applied_twice"),
    mutant("recover_early_exit_on_any_healthy", RecoverEarlyExitOnAnyHealthy,
           "cached healthy count (impl) early exit on the wrong test",
           "try_recover_is_bounded_and_makes_progress"),
)
