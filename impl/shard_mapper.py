"""Optimized ShardMapper, shaped like net-mesh 0.25.0 `shard/mapper.rs`.

What it optimizes (compared with `model.shard_mapper.ShardMapper`):
- a selection table: the tuple of routable candidate ids, rebuilt only by
  `_rebuild_selection_table()`, called from exactly the mutating paths where Rust calls
  `rebuild_selection_table_locked` (new, collect_metrics, scale_up, activate,
  drain_specific, scale_down, finalize_draining when something stopped, both remove
  functions; plus the `inject_weight` test hook, which stands in for collect_metrics).
  `select_shard` is a table lookup;
- a cached active count `self._active_count`, updated incrementally where Rust updates
  `active_count` (scale_up, activate, drain_specific, scale_down);
- the monotonic id allocator `self._next_shard_id`.

It keeps the Rust control flow, including the lock-free pre-checks followed by the
re-checks "under the write lock" (`_check_scale_up_budget` then `_allocate_ids`,
`_scale_down_size` twice); run sequentially they agree.

Override points for mutants (each is one behaviour): `_rebuild_selection_table`,
`_check_scale_up_budget`, `_check_budget`, `_in_cooldown`, `_allocate_ids`, `activate`,
`drain_specific`, `_scale_down_size`, `_lowest_weight_active`, `_start_draining`,
`finalize_draining`, `_ready_to_stop`, `_is_warm`, `_fire_created`, `_fire_removed`,
`select_shard`, `evaluate_scaling`, `_decide`.

Left out: threads, atomics, ArcSwap and lock ordering (every call is one atomic step);
the races are a later issue. Value types, states and errors come from the model module.
"""
from __future__ import annotations

from typing import Optional

import attrs

from meshspec.clock import Clock, monotonic_clock
from model.shard_mapper import (
    BOOT_BACKDATE_NS, DRAIN_GRACE_NS, F64_MAX, NO_SHARD, U16_MAX, WEIGHT_TOLERANCE,
    AtMaxShards, AtMinShards, InCooldown, InvalidPolicy, MappedShard, ScalingDecision,
    ScalingPolicy, ShardCallback, ShardMetrics, ShardMetricsCollector, ShardState,
    check_first_shard_id, effective_policy, f64_min, fill_ratio_of, lemire_index, new_shard,
    require_u16, require_u64, routable_candidates, total_order_key,
)


class ShardMapper:
    """Selection table + cached active count + monotonic id allocator."""

    def __init__(self, initial_shards: int, ring_buffer_capacity: int,
                 policy: ScalingPolicy, *, clock: Clock = monotonic_clock,
                 first_shard_id: int = 0) -> None:
        require_u16("initial_shards", initial_shards)
        require_u64("ring_buffer_capacity", ring_buffer_capacity)
        check_first_shard_id(first_shard_id, initial_shards)
        self._policy = effective_policy(policy, initial_shards)
        self._clock = clock
        self._capacity = ring_buffer_capacity
        boot = clock() - BOOT_BACKDATE_NS
        self._shards: list[MappedShard] = [
            new_shard(first_shard_id + i, ShardState.ACTIVE, boot, ring_buffer_capacity, clock)
            for i in range(initial_shards)]
        self._active_count = initial_shards
        self._next_shard_id = first_shard_id + initial_shards
        self._last_scaling: Optional[int] = None
        self._on_created: Optional[ShardCallback] = None
        self._on_removed: Optional[ShardCallback] = None
        self._selection_table: tuple[int, ...] = ()
        self._rebuild_selection_table()

    # ---- the selection table ---------------------------------------------------------

    def _rebuild_selection_table(self) -> None:
        """Rust `rebuild_selection_table_locked`: candidates near the min Active weight."""
        active_ids = [s.id for s in self._shards if s.state is ShardState.ACTIVE]
        if not active_ids:
            self._selection_table = ()
            return
        min_weight = F64_MAX
        for s in self._shards:
            if s.state is ShardState.ACTIVE:
                min_weight = f64_min(min_weight, s.last_metrics.weight)
        candidates = [s.id for s in self._shards if s.state is ShardState.ACTIVE
                      and abs(s.last_metrics.weight - min_weight) < WEIGHT_TOLERANCE]
        self._selection_table = tuple(candidates or active_ids)

    def select_shard(self, event_hash: int) -> int:
        require_u64("event_hash", event_hash)
        table = self._selection_table
        if not table:
            return NO_SHARD
        return table[lemire_index(event_hash, len(table))]

    # ---- lookups ---------------------------------------------------------------------

    def _find(self, shard_id: int) -> Optional[MappedShard]:
        return next((s for s in self._shards if s.id == shard_id), None)

    def _in_cooldown(self, now: int) -> bool:
        last = self._last_scaling
        return last is not None and now - last < self._policy.cooldown_ns

    def _is_warm(self, shard: MappedShard, now: int) -> bool:
        """Past the warm-up window (= cooldown) since activation."""
        return now - shard.activated_at >= self._policy.cooldown_ns

    # ---- metrics and decision --------------------------------------------------------

    def collect_metrics(self) -> list[ShardMetrics]:
        result = []
        for s in self._shards:
            s.last_metrics = s.metrics.collect_and_reset()
            result.append(s.last_metrics)
        self._rebuild_selection_table()
        return result

    def inject_weight(self, shard_id: int, weight: float) -> bool:
        """Test hook (not Rust API): set a last-collected weight, rebuild like collect."""
        require_u16("shard_id", shard_id)
        shard = self._find(shard_id)
        if shard is None:
            return False
        shard.last_metrics = attrs.evolve(shard.last_metrics, weight=float(weight))
        self._rebuild_selection_table()
        return True

    def evaluate_scaling(self) -> ScalingDecision:
        p = self._policy
        if not p.auto_scale:
            return ScalingDecision.none()
        now = self._clock()
        if self._in_cooldown(now):
            return ScalingDecision.none()
        active_count = self._active_count
        overloaded = underutilized = 0
        for shard in self._shards:
            if shard.state is not ShardState.ACTIVE or not self._is_warm(shard, now):
                continue
            m = shard.last_metrics
            if (m.fill_ratio > p.fill_ratio_threshold
                    or m.avg_push_latency_ns > p.push_latency_threshold_ns
                    or m.avg_flush_latency_us > p.flush_latency_threshold_us):
                overloaded += 1
            if m.fill_ratio < p.underutilized_threshold and m.event_rate == 0:
                underutilized += 1
        return self._decide(overloaded, underutilized, active_count)

    def _decide(self, overloaded: int, underutilized: int, active_count: int) -> ScalingDecision:
        p = self._policy
        if overloaded > active_count // 2 and active_count < p.max_shards:
            return ScalingDecision.scale_up(
                min(max(overloaded // 2, 1), p.max_shards - active_count))
        if underutilized > active_count // 2 and active_count > p.min_shards:
            return ScalingDecision.scale_down(
                min(max(underutilized // 2, 1), active_count - p.min_shards))
        return ScalingDecision.none()

    # ---- growing ---------------------------------------------------------------------

    def _check_budget(self, count: int) -> None:
        """`active_count.checked_add(count)` must exist and be <= max_shards."""
        would_be = self._active_count + count
        if would_be > U16_MAX or would_be > self._policy.max_shards:
            raise AtMaxShards()

    def _check_scale_up_budget(self, count: int) -> None:
        """Rust `check_scale_up_budget`: budget, then cooldown."""
        self._check_budget(count)
        if self._in_cooldown(self._clock()):
            raise InCooldown()

    def _allocate_ids(self, count: int, state: ShardState, force: bool) -> list[int]:
        """Rust `allocate_shards_inner_with_policy`: re-check, sentinel, allocate, push."""
        if force:
            self._check_budget(count)
        else:
            self._check_scale_up_budget(count)
        first_id = self._next_shard_id
        last_needed = first_id + max(count - 1, 0)
        if last_needed >= U16_MAX:  # overflow, or the reserved "no shard" sentinel
            raise AtMaxShards()
        self._next_shard_id = first_id + count
        now = self._clock()
        new_ids = [first_id + i for i in range(count)]
        for new_id in new_ids:
            self._shards.append(new_shard(new_id, state, now, self._capacity, self._clock))
        return new_ids

    def scale_up(self, count: int) -> list[int]:
        require_u16("count", count)
        if count == 0:
            return []
        self._check_scale_up_budget(count)
        new_ids = self._allocate_ids(count, ShardState.ACTIVE, False)
        self._active_count += count
        self._last_scaling = self._clock()
        self._rebuild_selection_table()
        self._fire_created(new_ids)
        return new_ids

    def scale_up_provisioning(self, count: int) -> list[int]:
        require_u16("count", count)
        if count == 0:
            return []
        self._check_scale_up_budget(count)
        new_ids = self._allocate_ids(count, ShardState.PROVISIONING, False)
        self._last_scaling = self._clock()
        return new_ids

    def scale_up_provisioning_force(self, count: int) -> list[int]:
        require_u16("count", count)
        if count == 0:
            return []
        new_ids = self._allocate_ids(count, ShardState.PROVISIONING, True)
        self._last_scaling = self._clock()
        return new_ids

    def activate(self, shard_id: int) -> bool:
        require_u16("shard_id", shard_id)
        shard = self._find(shard_id)
        if shard is None:
            raise InvalidPolicy(f"activate: shard {shard_id} not found")
        if shard.state is ShardState.ACTIVE:
            return False
        if shard.state is ShardState.PROVISIONING:
            if self._active_count >= self._policy.max_shards:
                raise AtMaxShards()
            shard.state = ShardState.ACTIVE
            shard.activated_at = self._clock()
            self._active_count += 1
        else:
            raise InvalidPolicy(
                f"activate: shard {shard_id} is in state {shard.state.value}, cannot activate")
        self._rebuild_selection_table()
        self._fire_created([shard_id])
        return True

    # ---- shrinking -------------------------------------------------------------------

    def _start_draining(self, shard: MappedShard, now: int) -> None:
        shard.state = ShardState.DRAINING
        shard.drain_started = now
        shard.metrics.set_draining(True)

    def drain_specific(self, shard_id: int) -> None:
        require_u16("shard_id", shard_id)
        if self._active_count <= self._policy.min_shards:
            raise AtMinShards()
        shard = self._find(shard_id)
        if shard is None:
            raise InvalidPolicy(f"drain_specific: shard {shard_id} not found")
        if shard.state is ShardState.DRAINING:
            return
        if shard.state is not ShardState.ACTIVE:
            raise InvalidPolicy(
                f"drain_specific: shard {shard_id} is in state {shard.state.value}, "
                "cannot drain")
        now = self._clock()
        self._start_draining(shard, now)
        self._rebuild_selection_table()
        self._active_count -= 1
        self._last_scaling = now

    def _scale_down_size(self, count: int) -> int:
        """Floor check, `to_drain = min(count, A − min)` (0 is AtMinShards), cooldown."""
        current = self._active_count
        if current <= self._policy.min_shards:
            raise AtMinShards()
        to_drain = min(count, current - self._policy.min_shards)
        if to_drain == 0:
            raise AtMinShards()
        if self._in_cooldown(self._clock()):
            raise InCooldown()
        return to_drain

    def _lowest_weight_active(self, n: int) -> list[MappedShard]:
        """Stable ascending sort by `total_cmp` weight; ties keep vector order."""
        active = [s for s in self._shards if s.state is ShardState.ACTIVE]
        active.sort(key=lambda s: total_order_key(s.last_metrics.weight))
        return active[:n]

    def scale_down(self, count: int) -> list[int]:
        require_u16("count", count)
        self._scale_down_size(count)  # lock-free pre-check
        to_drain = self._scale_down_size(count)  # re-check "under the write lock"
        now = self._clock()
        drained_ids = []
        for shard in self._lowest_weight_active(to_drain):
            self._start_draining(shard, now)
            drained_ids.append(shard.id)
        self._active_count -= to_drain
        self._last_scaling = now
        self._rebuild_selection_table()
        return drained_ids

    def _ready_to_stop(self, shard: MappedShard, now: int) -> bool:
        """Empty ring (fill exactly 0), no push since the drain, > 100 ms since it began."""
        collector = shard.metrics
        fill_ratio = fill_ratio_of(collector.current_len(), collector.capacity)
        if fill_ratio != 0.0 or collector.pushes_since_drain_start() != 0:
            return False
        return shard.drain_started is not None and now - shard.drain_started > DRAIN_GRACE_NS

    def finalize_draining(self) -> list[int]:
        now = self._clock()
        stopped = []
        for shard in self._shards:
            if shard.state is ShardState.DRAINING and self._ready_to_stop(shard, now):
                shard.state = ShardState.STOPPED
                stopped.append(shard.id)
        if stopped:
            self._rebuild_selection_table()
        self._fire_removed(stopped)
        return stopped

    def remove_specific_stopped_shard(self, shard_id: int) -> bool:
        require_u16("shard_id", shard_id)
        before = len(self._shards)
        self._shards = [s for s in self._shards
                        if not (s.id == shard_id and s.state is ShardState.STOPPED)]
        removed = len(self._shards) < before
        if removed:
            self._rebuild_selection_table()
        return removed

    def remove_stopped_shards(self) -> list[int]:
        removed = [s.id for s in self._shards if s.state is ShardState.STOPPED]
        if removed:
            self._shards = [s for s in self._shards if s.state is not ShardState.STOPPED]
            self._rebuild_selection_table()
        return removed

    # ---- accessors -------------------------------------------------------------------

    def shard_state(self, shard_id: int) -> Optional[ShardState]:
        require_u16("shard_id", shard_id)
        shard = self._find(shard_id)
        return None if shard is None else shard.state

    def active_shard_ids(self) -> list[int]:
        return [s.id for s in self._shards if s.state is ShardState.ACTIVE]

    def all_shard_ids(self) -> list[int]:
        return [s.id for s in self._shards if s.state is not ShardState.STOPPED]

    def active_shard_count(self) -> int:
        return self._active_count

    def total_shard_count(self) -> int:
        return len(self._shards)

    def metrics_collector(self, shard_id: int) -> Optional[ShardMetricsCollector]:
        require_u16("shard_id", shard_id)
        shard = self._find(shard_id)
        return None if shard is None else shard.metrics

    def policy(self) -> ScalingPolicy:
        return self._policy

    # ---- callbacks -------------------------------------------------------------------

    def set_on_shard_created(self, cb: ShardCallback) -> None:
        self._on_created = cb

    def set_on_shard_removed(self, cb: ShardCallback) -> None:
        self._on_removed = cb

    def _fire_created(self, ids: list[int]) -> None:
        """After the state is consistent ("lock dropped"), so callbacks may re-enter."""
        if self._on_created is not None:
            for shard_id in ids:
                self._on_created(shard_id)

    def _fire_removed(self, ids: list[int]) -> None:
        if self._on_removed is not None:
            for shard_id in ids:
                self._on_removed(shard_id)

    # ---- observation -----------------------------------------------------------------

    def abstract(self) -> tuple:
        return (self._policy, self._next_shard_id, self._last_scaling,
                tuple(s.abstract() for s in self._shards))

    def check_invariants(self) -> None:
        """Recompute the caches from `self._shards` and check the id allocator."""
        expected_table = routable_candidates(self._shards)
        assert self._selection_table == expected_table, (
            f"selection table {self._selection_table} != recomputed {expected_table}")
        counted = sum(1 for s in self._shards if s.state is ShardState.ACTIVE)
        assert self._active_count == counted, (
            f"cached active count {self._active_count} != {counted} Active shards")
        ids = [s.id for s in self._shards]
        assert all(a < b for a, b in zip(ids, ids[1:])), f"ids not strictly increasing: {ids}"
        assert all(i < self._next_shard_id for i in ids), (
            f"next_shard_id {self._next_shard_id} not above every id {ids}")
        assert NO_SHARD not in ids, "a shard holds the reserved id 65535"
