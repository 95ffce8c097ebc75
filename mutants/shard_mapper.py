"""Curated mutants of shard_mapper: the historical bugs of semantics.md §3.5, and the optimization done wrong.

Each is the impl with one behaviour swapped. Mutants of the shared ScalingPolicy value
type ride on the mapper class as `SCALING_POLICY` (the harness builds policies from it).

The Component in `properties/shard_mapper.py` gets `MUTANTS` from here through `meshspec.registry`.
"""
from __future__ import annotations

from typing import Any

import attrs

from impl.shard_mapper import ShardMapper as ImplMapper
from meshspec.lockstep import mutant
from model import shard_mapper as M
from properties.shard_mapper import U16_MAX


class IdReuseMapper(ImplMapper):
    """BUG_REPORT #7: the next id is max(existing) + 1, so removed ids come back."""

    def _allocate_ids(self, count: int, state: M.ShardState, force: bool) -> list[int]:
        self._next_shard_id = max((s.id for s in self._shards), default=-1) + 1
        return super()._allocate_ids(count, state, force)


class FinalizeReadsWindowCounter(ImplMapper):
    """BUG_REPORT #9: finalize reads events_in_window, which every metrics tick resets."""

    def _ready_to_stop(self, shard: M.MappedShard, now: int) -> bool:
        c = shard.metrics
        if c.fill_ratio() != 0.0 or c._events_in_window != 0:
            return False
        return shard.drain_started is not None and now - shard.drain_started > M.DRAIN_GRACE_NS


class ActivateWithoutBudgetRecheck(ImplMapper):
    """#64: activate does not re-check max_shards, so provisioning shards overshoot it."""

    def activate(self, shard_id: int) -> bool:
        shard = self._find(shard_id)
        if shard is not None and shard.state is M.ShardState.PROVISIONING:
            shard.state, shard.activated_at = M.ShardState.ACTIVE, self._clock()
            self._active_count += 1
            self._rebuild_selection_table()
            self._fire_created([shard_id])
            return True
        return super().activate(shard_id)


class DrainSpecificIgnoresFloor(ImplMapper):
    """Floor check done wrong: drain_specific drains an Active shard even at min_shards."""

    def drain_specific(self, shard_id: int) -> None:
        shard = self._find(M.require_u16("shard_id", shard_id))
        if shard is not None and shard.state is M.ShardState.ACTIVE:
            now = self._clock()
            self._start_draining(shard, now)
            self._rebuild_selection_table()
            self._active_count -= 1
            self._last_scaling = now
            return
        super().drain_specific(shard_id)


class ScaleDownFloorOffByOne(ImplMapper):
    """Floor guard off by one: evaluate_scaling's scale-down branch tests A ≥ min, not A > min,
    so at the floor it advises ScaleDown(min(…, A − min)) = ScaleDown(0)."""

    def _decide(self, overloaded: int, underutilized: int, active_count: int) -> M.ScalingDecision:
        p = self._policy
        up = overloaded > active_count // 2 and active_count < p.max_shards
        if not up and underutilized > active_count // 2 and active_count == p.min_shards:
            return M.ScalingDecision.scale_down(min(max(underutilized // 2, 1), active_count - p.min_shards))
        return super()._decide(overloaded, underutilized, active_count)


class WarmupOscillation(ImplMapper):
    """#131: freshly activated shards vote at once with placeholder metrics."""

    def _is_warm(self, shard: M.MappedShard, now: int) -> bool:
        return True


class ProvisioningRoutable(ImplMapper):
    """#46: provisioning shards are routable before their workers exist."""

    def _rebuild_selection_table(self) -> None:
        routable = (M.ShardState.ACTIVE, M.ShardState.PROVISIONING)
        ids = [s.id for s in self._shards if s.state in routable]
        lightest = M.F64_MAX
        for s in self._shards:
            if s.state in routable:
                lightest = M.f64_min(lightest, s.last_metrics.weight)
        near = [s.id for s in self._shards
                if s.state in routable and abs(s.last_metrics.weight - lightest) < 0.1]
        self._selection_table = tuple(near or ids)


class FallbackToNonActive(ImplMapper):
    """#51: with no Active shard, select falls back to the first shard it holds.

    Upstream the fallback hit a Draining shard; with min_shards ≥ 1 a mapper with no Active
    shard has no Draining one either, so here the fallback lands on a Provisioning shard.
    """

    def select_shard(self, event_hash: int) -> int:
        if not self._selection_table:
            others = [s.id for s in self._shards if s.state is not M.ShardState.STOPPED]
            if others:
                return others[0]
        return super().select_shard(event_hash)


class ScaleUpZeroSideEffects(ImplMapper):
    """#32: scale_up(0) stamps the cooldown."""

    def scale_up(self, count: int) -> list[int]:
        if count == 0:
            self._last_scaling = self._clock()
            return []
        return super().scale_up(count)


class DrainSpecificNoCooldownStamp(ImplMapper):
    """#149 (audit 05-03): drain_specific does not stamp last_scaling (cooldown bypass)."""

    def drain_specific(self, shard_id: int) -> None:
        before = self._last_scaling
        super().drain_specific(shard_id)
        self._last_scaling = before


class DrainOnlyFlipsFlag(ImplMapper):
    """#48: draining only flips the collector's flag; the shard stays Active and routable."""

    def drain_specific(self, shard_id: int) -> None:
        if self._active_count <= self._policy.min_shards:
            raise M.AtMinShards()
        shard = self._find(shard_id)
        if shard is None:
            raise M.InvalidPolicy(f"drain_specific: shard {shard_id} not found")
        shard.metrics.set_draining(True)


class ActivateReturnsUnit(ImplMapper):
    """#35: activate returns nothing, so callers cannot tell a transition from a no-op."""

    def activate(self, shard_id: int) -> Any:
        super().activate(shard_id)
        return None


class ModuloBias(ImplMapper):
    """#56: the candidate index is hash % len (biased) instead of Lemire's multiply-shift."""

    def select_shard(self, event_hash: int) -> int:
        table = self._selection_table
        return table[event_hash % len(table)] if table else M.NO_SHARD


class IdSentinelOverflow(ImplMapper):
    """#132: the allocator stores first + count unchecked: 65535 is handed out, ids wrap."""

    def _allocate_ids(self, count: int, state: M.ShardState, force: bool) -> list[int]:
        self._check_budget(count) if force else self._check_scale_up_budget(count)
        first, now = self._next_shard_id, self._clock()
        ids = [(first + i) & 0xFFFF for i in range(count)]
        self._next_shard_id = (first + count) & 0xFFFF
        self._shards.extend(M.new_shard(i, state, now, self._capacity, self._clock) for i in ids)
        return ids


class _PolicyWithoutFiniteChecks(M.ScalingPolicy):
    def _checks(self) -> list[tuple[bool, str]]:
        return [c for c in super()._checks() if "finite" not in c[1]]


class ValidateWithoutFiniteness(ImplMapper):
    """#63: validate has no is_finite guards, so NaN thresholds pass and disable scaling."""

    SCALING_POLICY = _PolicyWithoutFiniteChecks


class _PolicyAcceptingZeroDurations(M.ScalingPolicy):
    def _checks(self) -> list[tuple[bool, str]]:
        return [c for c in super()._checks() if "must be > 0" not in c[1] or "shards" in c[1]]


class ZeroDurationsAccepted(ImplMapper):
    """BUG_REPORT #3: zero cooldown, metrics window and scale_down_delay are accepted."""

    SCALING_POLICY = _PolicyAcceptingZeroDurations


class _WrappingHighThroughput(M.ScalingPolicy):
    @classmethod
    def high_throughput(cls, cpus: int) -> M.ScalingPolicy:
        return attrs.evolve(super().high_throughput(cpus), max_shards=(min(cpus, U16_MAX) * 2) & 0xFFFF)


class HighThroughputOverflow(ImplMapper):
    """BUGS_3 #7: high_throughput's cpus × 2 wraps u16 instead of saturating."""

    SCALING_POLICY = _WrappingHighThroughput


class _StaleTable(ImplMapper):
    """The selection table is not rebuilt inside one operation (set by `_stale_after`)."""

    _skip_rebuild = False

    def _rebuild_selection_table(self) -> None:
        if not self._skip_rebuild:
            super()._rebuild_selection_table()


def _stale_after(op: str) -> type:
    def without_rebuild(self: _StaleTable, *args: Any) -> Any:
        self._skip_rebuild = True
        try:
            return getattr(ImplMapper, op)(self, *args)
        finally:
            self._skip_rebuild = False

    name = "StaleTableAfter" + "".join(w.title() for w in op.split("_"))
    cls = type(name, (_StaleTable,), {op: without_rebuild, "__doc__": f"Table not rebuilt by {op}."})
    cls.__module__ = __name__
    globals()[name] = cls
    return cls


STALE_OPS = ("collect_metrics", "scale_up", "activate", "drain_specific", "scale_down", "inject_weight")
STALE = {op: _stale_after(op) for op in STALE_OPS}


class CountDriftOnScaleDown(ImplMapper):
    """Optimization done wrong: scale_down subtracts the requested count, not the drained one."""

    def scale_down(self, count: int) -> list[int]:
        ids = super().scale_down(count)
        self._active_count -= count - len(ids)
        return ids


class CreatedCallbackFiresEarly(ImplMapper):
    """#49's cousin: on_shard_created fires before the count and table are updated."""

    def activate(self, shard_id: int) -> bool:
        shard = self._find(shard_id)
        if shard is not None and shard.state is M.ShardState.PROVISIONING \
                and self._active_count < self._policy.max_shards:
            shard.state, shard.activated_at = M.ShardState.ACTIVE, self._clock()
            self._fire_created([shard_id])
            self._active_count += 1
            self._rebuild_selection_table()
            return True
        return super().activate(shard_id)


SELECT_CHECKS = ("select_routes_only_to_lightest_active", "check_invariants", "select_shard observation",
                 "select_shard result")
MUTANTS = (
    mutant("id_reuse", IdReuseMapper, "BUG_REPORT #7: shard ids reused after removal",
           ("ids_strictly_increase_never_reused", "*result", "abstract state")),
    mutant("finalize_reads_window_counter", FinalizeReadsWindowCounter,
           "BUG_REPORT #9: finalize read the window counter that metrics ticks reset",
           ("finalize_stops_only_drained", "finalize_draining result")),
    mutant("activate_without_budget_recheck", ActivateWithoutBudgetRecheck,
           "#64: activate did not re-check max_shards", "active_within_budget"),
    mutant("warmup_oscillation", WarmupOscillation, "#131: fresh shards vote before warm-up",
           ("decisions_within_bounds", "evaluate_scaling observation")),
    mutant("provisioning_routable", ProvisioningRoutable,
           "#46: provisioning shards routable before their workers exist",
           "select_routes_only_to_lightest_active"),
    mutant("fallback_to_non_active", FallbackToNonActive,
           "#51: with no Active shard select fell back to a non-Active shard",
           "select_routes_only_to_lightest_active"),
    mutant("scale_up_zero_side_effects", ScaleUpZeroSideEffects,
           "#32: scale_up(0) bumped the cooldown", "abstract state"),
    mutant("drain_specific_no_cooldown_stamp", DrainSpecificNoCooldownStamp,
           "#149 (audit 2026-05-03): drain_specific did not bump last_scaling", "abstract state"),
    mutant("drain_only_flips_flag", DrainOnlyFlipsFlag,
           "#48: drain_shard only flipped the metrics flag; the shard stayed routable",
           ("abstract state", "drain_specific result")),
    mutant("activate_returns_unit", ActivateReturnsUnit,
           "#35: activate returned (), idempotent calls double-counted",
           ("activate result", "callbacks_once_per_transition")),
    mutant("modulo_bias", ModuloBias, "#56: modulo bias in the candidate index",
           ("select_shard observation", "select_shard result")),
    mutant("id_sentinel_overflow", IdSentinelOverflow,
           "#132: next_shard_id stored without checked_add (65535 handed out, ids wrap)",
           "ids_strictly_increase_never_reused"),
    mutant("validate_without_finiteness", ValidateWithoutFiniteness,
           "#63: NaN/±inf thresholds passed validate", "try_construct result"),
    mutant("zero_durations_accepted", ZeroDurationsAccepted,
           "BUG_REPORT #3: zero cooldown / window / scale_down_delay accepted", "try_construct result"),
    mutant("high_throughput_overflow", HighThroughputOverflow,
           "BUGS_3 #7: high_throughput cpus×2 overflowed u16", "preset result"),
    *(mutant(f"stale_table_after_{op}", cls, f"optimization: selection table not rebuilt by {op}",
             SELECT_CHECKS) for op, cls in STALE.items()),
    mutant("drain_specific_ignores_floor", DrainSpecificIgnoresFloor,
           "floor check done wrong (§3.4 item 6): drain_specific skipped min_shards",
           ("floor_respected_by_draining", "*result", "drain_specific result", "abstract state")),
    mutant("scale_down_floor_off_by_one", ScaleDownFloorOffByOne,
           "floor guard off by one: evaluate_scaling advised ScaleDown(0) at min_shards",
           ("decisions_within_bounds", "evaluate_scaling observation", "*result")),
    mutant("count_drift_on_scale_down", CountDriftOnScaleDown,
           "optimization: cached active count drifts from the Active shards",
           ("active_within_budget", "check_invariants")),
    mutant("created_callback_fires_early", CreatedCallbackFiresEarly,
           "#49: callback fired before the mapper's state was consistent",
           "callbacks_once_per_transition"),
)
