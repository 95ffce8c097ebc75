"""Curated mutants of load_balancer: §2.6 items 1-17 (single-threaded), §2.8 (a)-(e), and stale snapshots.

Each is the impl with one behaviour swapped, through the override points its docstring lists.

The Component in `properties/load_balancer.py` gets `MUTANTS` from here through `meshspec.registry`.
"""
from __future__ import annotations

from bisect import bisect_right
import math
from typing import Any, Optional

from hypothesis import strategies as st

from impl.load_balancer import LoadBalancer as ImplLB
from impl.load_balancer import _ANY
from meshspec.lockstep import mutant
from model import load_balancer as M
from properties.load_balancer import U32_MAX, U64_MAX


ImplEP = Any
Stratum = Any


class RingWalkInMapOrder(ImplLB):
    """#1: the ring is walked in map order (first vnode >= the key hash), not sorted order."""

    def _ring_walk(self, h: int, st: Stratum) -> Optional[ImplEP]:
        for ep in self._eps.values():
            for entry in ep.vnodes:
                if entry[0] >= h and entry[1] in st.ids:
                    return self._eps[entry[1]]
        return None


def _panics_on_nan(values: list[float]) -> None:
    if len(values) > 1 and any(math.isnan(v) for v in values):
        raise RuntimeError("thread panicked: called `Option::unwrap()` on a `None` value "
                           "(partial_cmp of a NaN metric)")


class LeastLatencyNanPanics(ImplLB):
    """#2: LeastLatency compares with partial_cmp().unwrap(), which panics on a NaN latency."""

    def _least_latency(self, st: Stratum, ctx: M.RequestContext, c: int) -> Any:
        _panics_on_nan([ep.endpoint.metrics.avg_response_time_ms for ep in st.eps])
        return super()._least_latency(st, ctx, c)


class LeastLoadNanPanics(ImplLB):
    """#2: LeastLoad compares with partial_cmp().unwrap(), which panics on a NaN load score."""

    def _least_load(self, st: Stratum, ctx: M.RequestContext, c: int) -> Any:
        _panics_on_nan([ep.load_score for ep in st.eps])
        return super()._least_load(st, ctx, c)


class ZoneFallbackIgnored(ImplLB):
    """#3: zone_fallback is never read; a client whose zone has nothing is sent anywhere."""

    def _candidates(self, ctx: M.RequestContext) -> Stratum:
        if self._config.zone_aware and ctx.client_zone is not None:
            stratum = self._stratum(ctx.client_zone, ctx.required_tags)
            if stratum.eps:
                return stratum
        stratum = self._stratum(_ANY, ctx.required_tags)
        if not stratum.eps:
            raise M.NoEndpointsAvailable()
        return stratum


class FilterScanClaimsProbe(ImplLB):
    """#101 (item 7): the availability test itself claims the half-open probe slot."""

    def _circuit_open(self, ep: ImplEP, now: int) -> bool:
        if ep.opened_at is None:
            return False
        if now - ep.opened_at < self._recovery_ns:
            return True
        if ep.probe and not self._probe_is_stale(ep, now):
            return True
        ep.probe, ep.probe_at = True, now  # the scan takes the slot
        return False


class NonStrictHalfOpen(ImplLB):
    """#6: once the recovery window passes, every request is let through (no single probe)."""

    def _circuit_open(self, ep: ImplEP, now: int) -> bool:
        return ep.opened_at is not None and now - ep.opened_at < self._recovery_ns

    def _claim_probe(self, ep: ImplEP, now: int) -> bool:
        ep.probe, ep.probe_at = True, now
        return True


class CompletionUnderflows(ImplLB):
    """#10: an unmatched completion decrements 0 to u32::MAX (wrapping, not saturating)."""

    def _release_connection(self, ep: ImplEP) -> None:
        ep.connections = (ep.connections - 1) & U32_MAX


class CounterAdvancedPerRetry(ImplLB):
    """#39: every reservation retry advances the rr counter again."""

    def _attempt_offset(self, offset: int, attempt: int) -> int:
        return self._advance_rr() if attempt else offset


class WeightedLcWeightCollapse(ImplLB):
    """#12: weighted least connections divides by max(weight, 1.0), collapsing weights below 1."""

    def _wlc_divisor(self, ep: ImplEP) -> float:
        return max(ep.q / 4, 1.0)


class WeightedRrFloatModulus(ImplLB):
    """#13: weighted round robin takes `counter as f64 % wheel`, wrong past 2^53."""

    def _wrr_target(self, c: int, wheel: int) -> int:
        return int(float(c) % wheel)


class RingCollisionLastWriteWins(ImplLB):
    """#16: a ring slot holds one node per hash; a colliding vnode overwrites the other."""

    def _ring_insert(self, ep: ImplEP) -> None:
        ep.vnodes = [(h, ep.node_id, i) for i, h in enumerate(self._vnode_hashes(ep.node_id))]
        slots = {e[0]: e for e in self._ring}
        for entry in ep.vnodes:
            slots[entry[0]] = entry
        self._ring = sorted(slots.values())


class AbandonedProbeNeverReclaimed(ImplLB):
    """2.8-a (#14, 0.25.0): a probe whose caller never completes stays claimed forever."""

    def _probe_is_stale(self, ep: ImplEP, now: int) -> bool:
        return False


class ProbeKeptAfterSuccess(ImplLB):
    """Probe release done wrong: a successful probe closes the circuit but its claim stays, so
    a probe is in flight on a closed circuit and the next failure is taken as a failed probe."""

    def _probe_outcome(self, ep: ImplEP, success: bool, now: int) -> None:
        super()._probe_outcome(ep, success, now)
        if success:
            ep.probe, ep.probe_at = True, now


class ReaddLeaksVnodes(ImplLB):
    """2.8-b (#15, 0.25.0): re-adding an id inserts its vnodes again without removing the old."""

    def _ring_on_readd(self, old: ImplEP, new: ImplEP) -> None:
        self._ring_insert(new)


class ReaddForgetsVnodes(ImplLB):
    """Optimization (#150) done wrong: a re-added id keeps its ring entries, but its new record
    does not take over their list, so a later remove leaves 150 orphans on the ring."""

    def _ring_on_readd(self, old: ImplEP, new: ImplEP) -> None:
        pass


class RingCollisionDestructiveProbe(ImplLB):
    """2.8-c (#29, 0.25.0): on collision the insert has already clobbered the slot, then probes hash+1."""

    def _ring_insert(self, ep: ImplEP) -> None:
        slots = {e[0]: e for e in self._ring}
        written = []
        for i, h in enumerate(self._vnode_hashes(ep.node_id)):
            while True:
                previous = slots.get(h)
                slots[h] = (h, ep.node_id, i)
                written.append(slots[h])
                if previous is None:
                    break
                h = (h + 1) & U64_MAX
        ep.vnodes = written
        self._ring = sorted(slots.values())


class WeightedRrCeilTotalWheel(ImplLB):
    """2.8-d (#33, 0.25.0): the wheel is ceil(total) and the target a float: fractional weights starve."""

    def _weighted_round_robin_at(self, st: Stratum, ctx: M.RequestContext, c: int) -> Any:
        if not st.total_q > 0:
            return self._round_robin_at(st, ctx, c)
        wheel = max(math.ceil(st.total_q / 4), 1)
        target, cumulative = float(c % wheel), 0.0
        for ep in st.eps:
            cumulative += ep.listed_q / 4
            if cumulative > target:
                return ep, M.SelectionReason.WEIGHTED
        return st.eps[0], M.SelectionReason.WEIGHTED


class RecoveryZeroNotClamped(ImplLB):
    """2.8-e (0.25.0): circuit_recovery_time 0 is used as is, so the breaker never holds."""

    def _effective_recovery_ns(self, config: M.LoadBalancerConfig) -> int:
        return config.circuit_recovery_time_ns


class RequiredTagsAnyNotAll(ImplLB):
    """Optimization done wrong: the stratum of the first required tag is used, the rest ignored."""

    def _stratum(self, zone: object, tags: tuple) -> Stratum:
        return super()._stratum(zone, tags[:1])


class RingSearchSkipsEqualHash(ImplLB):
    """Optimization done wrong (#150): the bisection starts after, not at, vnodes equal to the key hash."""

    def _ring_walk(self, h: int, st: Stratum) -> Optional[ImplEP]:
        ring, ids = self._ring, st.ids
        n = len(ring)
        start = bisect_right(ring, (h, b"\xff" * 33))
        for k in range(n):
            node_id = ring[(start + k) % n][1]
            if node_id in ids:
                return self._eps[node_id]
        return None


# -- stale snapshots: one per kind of state change (#148, #160) --------------------------------

class StaleSnapshotAfterAdd(ImplLB):
    """#148: adding an endpoint does not list it in the availability snapshot."""

    def _after_add(self, ep: ImplEP, now: int) -> None:
        pass


class StaleSnapshotAfterReadd(ImplLB):
    """#148: re-adding an id keeps the old endpoint's snapshot entry (and never lists the new one)."""

    def _after_readd(self, old: ImplEP, new: ImplEP, now: int) -> None:
        pass


class StaleSnapshotAfterRemove(ImplLB):
    """#148: a removed endpoint stays in the snapshot."""

    def _after_remove(self, ep: ImplEP) -> None:
        self._pending.pop(ep.node_id, None)


class StaleSnapshotAfterHealthChange(ImplLB):
    """#148: a health change does not re-sync the snapshot."""

    def _after_health_change(self, ep: ImplEP, now: int) -> None:
        pass


class StaleTotalWeightAfterHealthChange(ImplLB):
    """#160: a health change re-syncs only when availability flips, so the cached weight goes stale."""

    def _after_health_change(self, ep: ImplEP, now: int) -> None:
        if ep.listed != self._is_available(ep, now):
            self._sync(ep, now)


class StaleSnapshotAfterMetricsChange(ImplLB):
    """#149/#165: a metrics update leaves the cached minima and mean load of its strata."""

    def _after_metrics_change(self, ep: ImplEP) -> None:
        pass


class StaleSnapshotAfterCircuitChange(ImplLB):
    """#148: a completion re-syncs after releasing the connection but before the breaker moves."""

    def record_completion(self, node_id: bytes, success: bool) -> None:
        ep = self._eps.get(node_id)
        if ep is None:
            return
        now = self._clock()
        self._release_connection(ep)
        self._after_completion(ep, now)
        if ep.probe:
            self._release_probe(ep)
            self._probe_outcome(ep, success, now)
        elif success:
            ep.consecutive_failures = 0
        else:
            self._count_failure(ep, now)


class StaleSnapshotAfterTimePassing(ImplLB):
    """#148: endpoints whose recovery window elapsed are never re-admitted by time alone."""

    def _refresh_if_stale(self, now: int) -> None:
        pass


class StaleSnapshotAfterReservation(ImplLB):
    """#148: a reservation re-syncs only when it claimed a probe, so reaching the cap is missed."""

    def _after_reservation(self, ep: ImplEP, now: int) -> None:
        if ep.probe:
            self._sync(ep, now)


class StaleSnapshotAfterConnectionRelease(ImplLB):
    """#148: completions only ever take endpoints out of the snapshot, never back in."""

    def _after_completion(self, ep: ImplEP, now: int) -> None:
        if ep.listed:
            self._sync(ep, now)


RESULT = "*result"
# What a wrong selection trips, whichever comes first on a given trace: the generic
# selection invariants, a result that differs from the model's, or the state it leaves
# behind; plus, per mutant, the invariant about its own subject.
SELECT_CHECKS = ("selection_is_admissible", "selection_fails_only_when_nothing_is_admissible",
                 "rr_counter_advances_once_per_select", RESULT, "abstract state")
ZONE, PROBE, WHEEL = "zone_affinity_respected", "one_half_open_probe_per_recovery_cycle", \
    "weighted_round_robin_wheel_is_exact"
CLOCKWISE, STABLE = "consistent_hash_picks_first_available_clockwise", "consistent_hash_stable"
SNAPSHOT_CHECKS = ("check_invariants", *SELECT_CHECKS, ZONE, PROBE, WHEEL, CLOCKWISE, STABLE)
RING_CHECKS = ("ring_has_150_distinct_entries_per_endpoint", "check_invariants")


def checks(*specific: str) -> tuple[str, ...]:
    return (*specific, *SELECT_CHECKS)


MUTANTS = (
    mutant("ring_walk_in_map_order", RingWalkInMapOrder,
           "#1: consistent hash iterated the ring in DashMap order", checks(CLOCKWISE, STABLE)),
    mutant("least_latency_nan_panics", LeastLatencyNanPanics,
           "#2: partial_cmp().unwrap() panicked on a NaN latency", "impl raised"),
    mutant("least_load_nan_panics", LeastLoadNanPanics,
           "#2: partial_cmp().unwrap() panicked on a NaN load score", "impl raised"),
    mutant("zone_fallback_ignored", ZoneFallbackIgnored, "#3: zone_fallback was never read",
           checks(ZONE)),
    mutant("filter_scan_claims_probe", FilterScanClaimsProbe,
           "#101 (item 7): the filter scan claimed probe slots", SNAPSHOT_CHECKS),
    mutant("non_strict_half_open", NonStrictHalfOpen,
           "#6 (item 6): recovery expiry let every request through", checks(PROBE)),
    mutant("completion_underflows", CompletionUnderflows,
           "#10: an unmatched completion underflowed connections to u32::MAX",
           ("connections_within_cap", "check_invariants")),
    mutant("counter_advanced_per_retry", CounterAdvancedPerRetry,
           "#39 (item 11): the rr counter advanced once per reservation retry", checks()),
    mutant("weighted_lc_weight_collapse", WeightedLcWeightCollapse,
           "#12: weighted LC divided by max(weight, 1.0)", checks()),
    mutant("weighted_rr_float_modulus", WeightedRrFloatModulus,
           "#13: weighted RR took counter as f64 % wheel", checks(WHEEL)),
    mutant("ring_collision_last_write_wins", RingCollisionLastWriteWins,
           "#16: a ring collision silently replaced the other vnode", RING_CHECKS),
    mutant("abandoned_probe_never_reclaimed", AbandonedProbeNeverReclaimed,
           "2.8-a (#14): an abandoned half-open probe stayed claimed forever",
           checks(PROBE, "zone_affinity_respected")),
    mutant("probe_kept_after_success", ProbeKeptAfterSuccess,
           "probe release done wrong: a successful probe closed the circuit but kept its claim",
           ("check_invariants", *checks(PROBE))),
    mutant("readd_leaks_vnodes", ReaddLeaksVnodes, "2.8-b (#15): re-adding an id leaked its old vnodes",
           RING_CHECKS),
    mutant("readd_forgets_vnodes", ReaddForgetsVnodes,
           "optimization (#150): a re-added id kept its ring entries but its record forgot them",
           RING_CHECKS),
    mutant("ring_collision_destructive_probe", RingCollisionDestructiveProbe,
           "2.8-c (#29): the collision probe clobbered another node's vnode first", RING_CHECKS),
    mutant("weighted_rr_ceil_total_wheel", WeightedRrCeilTotalWheel,
           "2.8-d (#33): weighted RR wheel of ceil(total) starved fractional weights", checks(WHEEL)),
    mutant("recovery_zero_not_clamped", RecoveryZeroNotClamped,
           "2.8-e: circuit_recovery_time 0 collapsed the breaker", checks(PROBE)),
    mutant("required_tags_any_not_all", RequiredTagsAnyNotAll,
           "optimization: only the first required tag's stratum is consulted", checks()),
    mutant("ring_search_skips_equal_hash", RingSearchSkipsEqualHash,
           "optimization (#150): bisection past vnodes whose hash equals the key's", checks(CLOCKWISE, STABLE)),
    *(mutant(f"stale_snapshot_after_{kind}", cls, f"optimization (#148): {what}", SNAPSHOT_CHECKS)
      for kind, cls, what in (
          ("add", StaleSnapshotAfterAdd, "snapshot not updated by add"),
          ("readd", StaleSnapshotAfterReadd, "snapshot not updated by re-add"),
          ("remove", StaleSnapshotAfterRemove, "snapshot not updated by remove"),
          ("health_change", StaleSnapshotAfterHealthChange, "snapshot not updated by a health change"),
      )),
    mutant("stale_total_weight_after_health_change", StaleTotalWeightAfterHealthChange,
           "optimization (#160): cached total weight not updated by a health change", SNAPSHOT_CHECKS),
    mutant("stale_snapshot_after_metrics_change", StaleSnapshotAfterMetricsChange,
           "optimization (#149, #165): cached minima / mean load not updated by a metrics change",
           SNAPSHOT_CHECKS),
    *(mutant(f"stale_snapshot_after_{kind}", cls, f"optimization (#148): {what}", SNAPSHOT_CHECKS)
      for kind, cls, what in (
          ("circuit_change", StaleSnapshotAfterCircuitChange,
           "snapshot synced before the breaker opened or closed"),
          ("time_passing", StaleSnapshotAfterTimePassing,
           "recovery windows elapsing never re-admit an endpoint"),
          ("reservation", StaleSnapshotAfterReservation,
           "reaching the connection cap does not leave the snapshot"),
          ("connection_release", StaleSnapshotAfterConnectionRelease,
           "a freed connection or closed circuit never re-enters the snapshot"),
      )),
)
