"""Reference model of net-mesh 0.25.0 `shard/mapper.rs` and its `ScalingPolicy` (`config.rs`).

What is modelled (reference/semantics.md §3 and §5 are the authority):
- `ScalingPolicy` with its presets, `normalize` and `validate` (checks and their order).
- `ShardMetrics`, the weight function, and `ShardMetricsCollector` with its packed
  `(count << 32) | sum` latency words (each half saturating at u32::MAX), the sticky
  `pushes_since_drain_start` counter and `collect_and_reset`.
- `ShardMapper`: every public operation, its order of checks and its errors, the u16 id
  space (65535 is the "no shard" sentinel, ids never wrap, never reused), cooldown,
  warm-up, the hard-coded 100 ms drain grace, Lemire candidate indexing and the
  0.1-tolerance routing rule with its NaN fallback.

This model recomputes everything from the list of shards on every call: the routable
candidates by a scan (no selection table) and the active count by counting (no cached
counter). That is what makes it the specification; `impl/shard_mapper.py` is the
optimized twin.

Left out on purpose:
- Threads, atomics, memory orderings and lock ordering: every operation here is one
  atomic step. The Rust double-checks (lock-free pre-check, re-check under the write
  lock) coincide when nothing runs in between, so the model checks once. The races the
  historical bugs were about are a later issue.
- `ScalingError::ShardCreationFailed` exists (its Display is modelled) but nothing raises it,
  as in Rust.
- Logging (`tracing::info!` in `remove_stopped_shards`).

Deliberate choices:
- Time is integer nanoseconds from the injected `clock`. Boot shards are back-dated one
  hour ALWAYS, even if that makes `activated_at` negative: Rust's "fall back to now"
  branch never runs on Linux (§5 item 1), so it is not modelled.
- `first_shard_id` is a test hook (not in the Rust API): boot shards take ids
  `first..first+initial-1` and the allocator starts at `first+initial`, so tests can reach
  ids near 65535 without 65k operations.
- `inject_weight` is a test hook (not in the Rust API): it sets one shard's last-collected
  weight as if the weight function had produced it. It is the only way to reach NaN or
  infinite weights.
- No randomness is used; there is no draw protocol.
"""
from __future__ import annotations

import enum
import functools
import math
import struct
import sys
from typing import Callable, Optional, Sequence

import attrs

from meshspec.clock import NS_PER_MS, NS_PER_SEC, Clock, monotonic_clock

U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
NO_SHARD = U16_MAX
F64_MAX = sys.float_info.max
WEIGHT_TOLERANCE = 0.1
DRAIN_GRACE_NS = 100 * NS_PER_MS
BOOT_BACKDATE_NS = 3600 * NS_PER_SEC

ShardCallback = Callable[[int], object]


# --------------------------------------------------------------------------------------
# Integer-width and float helpers (the Rust widths, written out)
# --------------------------------------------------------------------------------------

def require_uint(name: str, value: int, maximum: int) -> int:
    """Refuse a value outside the Rust unsigned type `0..=maximum`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be in 0..={maximum}, got {value}")
    return value


def require_u16(name: str, value: int) -> int:
    return require_uint(name, value, U16_MAX)


def require_u64(name: str, value: int) -> int:
    return require_uint(name, value, U64_MAX)


def saturating_add_u32(a: int, b: int) -> int:
    """u32 saturating addition.

    pre: 0 <= a <= U32_MAX and 0 <= b <= U32_MAX
    post: __return__ <= U32_MAX
    post: __return__ >= max(a, b)
    post: __return__ == a + b or __return__ == U32_MAX
    """
    return min(a + b, U32_MAX)


def saturating_mul_u16(a: int, b: int) -> int:
    """u16 saturating multiplication.

    pre: 0 <= a <= U16_MAX and 0 <= b <= U16_MAX
    post: 0 <= __return__ <= U16_MAX
    post: __return__ == a * b or __return__ == U16_MAX
    """
    return min(a * b, U16_MAX)


def wrapping_add_u64(a: int, b: int) -> int:
    return (a + b) & U64_MAX


def lemire_index(event_hash: int, n: int) -> int:
    """`((hash as u128 * n as u128) >> 64)`: an unbiased index in `0..n`.

    pre: 0 <= event_hash <= U64_MAX
    pre: 1 <= n <= U16_MAX
    post: 0 <= __return__ < n
    post: event_hash == 0 or lemire_index(event_hash - 1, n) <= __return__
    """
    return (event_hash * n) >> 64


def f64_min(a: float, b: float) -> float:
    """Rust `f64::min`: if one argument is NaN the other is returned."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a <= b else b


def total_order_key(x: float) -> int:
    """A sort key giving Rust `f64::total_cmp` order (-NaN < -inf < ... < +inf < +NaN)."""
    bits = struct.unpack("<q", struct.pack("<d", x))[0]
    if bits < 0:
        bits ^= 0x7FFF_FFFF_FFFF_FFFF
    return bits


# --------------------------------------------------------------------------------------
# ScalingPolicy (config.rs)
# --------------------------------------------------------------------------------------

class ConfigError(Exception):
    """Rust `ConfigError::InvalidValue(msg)`."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return f"invalid configuration: {self.msg}"


def _u16_field(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    require_u16(attribute.name, value)


def _u64_field(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    require_u64(attribute.name, value)


@attrs.frozen
class ScalingPolicy:
    """Rust `ScalingPolicy`; durations are `Duration`s, here integer nanoseconds."""

    fill_ratio_threshold: float = attrs.field(converter=float)
    push_latency_threshold_ns: int = attrs.field(validator=_u64_field)
    flush_latency_threshold_us: int = attrs.field(validator=_u64_field)
    min_shards: int = attrs.field(validator=_u16_field)
    max_shards: int = attrs.field(validator=_u16_field)
    cooldown_ns: int = attrs.field(validator=_u64_field)
    scale_down_delay_ns: int = attrs.field(validator=_u64_field)
    underutilized_threshold: float = attrs.field(converter=float)
    metrics_window_ns: int = attrs.field(validator=_u64_field)
    auto_scale: bool = attrs.field(converter=bool)

    @classmethod
    def default_for_cpus(cls, cpus: int) -> ScalingPolicy:
        return cls(
            fill_ratio_threshold=0.7, push_latency_threshold_ns=5,
            flush_latency_threshold_us=1000, min_shards=1, max_shards=_cpus_u16(cpus),
            cooldown_ns=1 * NS_PER_SEC, scale_down_delay_ns=10 * NS_PER_SEC,
            underutilized_threshold=0.1, metrics_window_ns=100 * NS_PER_MS, auto_scale=True,
        )

    @classmethod
    def high_throughput(cls, cpus: int) -> ScalingPolicy:
        c = _cpus_u16(cpus)
        return cls(
            fill_ratio_threshold=0.6, push_latency_threshold_ns=3,
            flush_latency_threshold_us=500, min_shards=min(4, c),
            max_shards=saturating_mul_u16(c, 2), cooldown_ns=500 * NS_PER_MS,
            scale_down_delay_ns=30 * NS_PER_SEC, underutilized_threshold=0.05,
            metrics_window_ns=50 * NS_PER_MS, auto_scale=True,
        )

    @classmethod
    def conservative(cls, cpus: int) -> ScalingPolicy:
        return cls(
            fill_ratio_threshold=0.8, push_latency_threshold_ns=10,
            flush_latency_threshold_us=2000, min_shards=1, max_shards=_cpus_u16(cpus),
            cooldown_ns=5 * NS_PER_SEC, scale_down_delay_ns=60 * NS_PER_SEC,
            underutilized_threshold=0.05, metrics_window_ns=200 * NS_PER_MS, auto_scale=True,
        )

    def normalize(self) -> ScalingPolicy:
        """If max < min then max := min; nothing else."""
        if self.max_shards < self.min_shards:
            return attrs.evolve(self, max_shards=self.min_shards)
        return self

    def validate(self) -> None:
        """The checks of config.rs, in its order; the first failure is raised."""
        for failed, msg in self._checks():
            if failed:
                raise ConfigError(msg)

    def _checks(self) -> list[tuple[bool, str]]:
        fill, under = self.fill_ratio_threshold, self.underutilized_threshold
        return [
            (not math.isfinite(fill), "fill_ratio_threshold must be finite (NaN/±inf rejected)"),
            (fill <= 0.0 or fill > 1.0, "fill_ratio_threshold must be in (0.0, 1.0]"),
            (not math.isfinite(under),
             "underutilized_threshold must be finite (NaN/±inf rejected)"),
            (under < 0.0 or under > 1.0, "underutilized_threshold must be in [0.0, 1.0]"),
            (self.min_shards == 0, "min_shards must be > 0"),
            (self.max_shards < self.min_shards, "max_shards must be >= min_shards"),
            (self.cooldown_ns == 0, "cooldown must be > 0"),
            (self.metrics_window_ns == 0, "metrics_window must be > 0"),
            (self.scale_down_delay_ns == 0, "scale_down_delay must be > 0"),
        ]


def _cpus_u16(cpus: int) -> int:
    """The CPU count clamped to u16 (`u16::try_from(n).unwrap_or(u16::MAX)`)."""
    if cpus < 0:
        raise ValueError(f"cpus must be >= 0, got {cpus}")
    return min(cpus, U16_MAX)


# --------------------------------------------------------------------------------------
# ShardMetrics and ShardMetricsCollector
# --------------------------------------------------------------------------------------

@attrs.frozen
class ShardMetrics:
    """One collected metrics sample of a shard. Lower weight = preferred."""

    shard_id: int
    fill_ratio: float
    event_rate: int
    avg_push_latency_ns: int
    avg_flush_latency_us: int
    draining: bool
    weight: float
    last_updated: int

    @classmethod
    def new(cls, shard_id: int, now_ns: int = 0) -> ShardMetrics:
        """Rust `ShardMetrics::new(id)`: zeros, weight 0, stamped `now_ns`."""
        return cls(shard_id, 0.0, 0, 0, 0, False, 0.0, now_ns)

    def with_weight(self) -> ShardMetrics:
        """Rust `compute_weight(&mut self)`, as a new value."""
        return attrs.evolve(self, weight=compute_weight(self))


def compute_weight(m: ShardMetrics) -> float:
    """fill×100 + push_ns/10 + rate/1e6; a draining sample weighs f64::MAX.

    pre: 0.0 <= m.fill_ratio <= 1.0
    pre: 0 <= m.avg_push_latency_ns <= U64_MAX and 0 <= m.event_rate <= U64_MAX
    post: __return__ >= 0.0
    post: __return__ == F64_MAX if m.draining else __return__ >= m.fill_ratio * 100.0
    """
    if m.draining:
        return F64_MAX
    return m.fill_ratio * 100.0 + m.avg_push_latency_ns / 10.0 + m.event_rate / 1_000_000.0


def fill_ratio_of(current_len: int, capacity: int) -> float:
    """`current_len as f64 / capacity as f64`, 0 when the capacity is 0.

    pre: 0 <= current_len <= capacity <= U64_MAX
    post: 0.0 <= __return__ <= 1.0
    post: (__return__ == 0.0) == (current_len == 0)
    """
    if capacity == 0:
        return 0.0
    return float(current_len) / float(capacity)


def _packed_add(word: int, sample: int) -> int:
    """Add one sample to a `(count << 32) | sum` word; both halves saturate at u32::MAX.

    pre: 0 <= word <= U64_MAX and 0 <= sample <= U64_MAX
    post: 0 <= __return__ <= U64_MAX
    post: __return__ >> 32 == min((word >> 32) + 1, U32_MAX)
    post: __return__ & U32_MAX >= word & U32_MAX
    post: word != 0 or _packed_average(__return__) == min(sample, U32_MAX)
    """
    count, total = word >> 32, word & U32_MAX
    count = saturating_add_u32(count, 1)
    total = saturating_add_u32(total, min(sample, U32_MAX))
    return (count << 32) | total


def _packed_average(word: int) -> int:
    """`sum.checked_div(count).unwrap_or(0)`.

    pre: 0 <= word <= U64_MAX
    post: 0 <= __return__ <= word & U32_MAX
    post: word >> 32 != 1 or __return__ == word & U32_MAX
    """
    count, total = word >> 32, word & U32_MAX
    return total // count if count else 0


class ShardMetricsCollector:
    """The live, per-shard counters the shard's push/flush paths feed (Rust atomics)."""

    def __init__(self, shard_id: int, capacity: int, clock: Clock = monotonic_clock) -> None:
        self.shard_id = require_u16("shard_id", shard_id)
        self.capacity = require_u64("capacity", capacity)
        self._clock = clock
        self._current_len = 0
        self._events_in_window = 0
        self._push_latency = 0
        self._flush_latency = 0
        self._draining = False
        self._window_start = clock()
        self._pushes_since_drain_start = 0

    def record_buffer_len(self, n: int) -> None:
        self._current_len = require_u64("len", n)

    def record_push(self, ns: int) -> None:
        """The composite: one event plus one latency sample."""
        self.record_event_only()
        self.record_latency_sample(ns)

    def record_event_only(self) -> None:
        self._events_in_window = wrapping_add_u64(self._events_in_window, 1)
        self._pushes_since_drain_start = wrapping_add_u64(self._pushes_since_drain_start, 1)

    def record_latency_sample(self, ns: int) -> None:
        self._push_latency = _packed_add(self._push_latency, require_u64("latency_ns", ns))

    def record_flush(self, us: int) -> None:
        self._flush_latency = _packed_add(self._flush_latency, require_u64("latency_us", us))

    def set_draining(self, flag: bool) -> None:
        """True zeroes the sticky push counter, then sets the flag; False only clears it."""
        if flag:
            self._pushes_since_drain_start = 0
        self._draining = bool(flag)

    def pushes_since_drain_start(self) -> int:
        return self._pushes_since_drain_start

    def is_draining(self) -> bool:
        return self._draining

    def current_len(self) -> int:
        return self._current_len

    def fill_ratio(self) -> float:
        """The ring's fill ratio as collect_and_reset and finalize_draining compute it."""
        return fill_ratio_of(self._current_len, self.capacity)

    def collect_and_reset(self) -> ShardMetrics:
        """Sample and reset the window; current_len and the sticky counter survive."""
        now = self._clock()
        events, self._events_in_window = self._events_in_window, 0
        push, self._push_latency = self._push_latency, 0
        flush, self._flush_latency = self._flush_latency, 0
        self._window_start = now
        fill = fill_ratio_of(self._current_len, self.capacity)
        sample = ShardMetrics(self.shard_id, fill, events, _packed_average(push),
                              _packed_average(flush), self._draining, 0.0, now)
        return sample.with_weight()

    def abstract(self) -> tuple:
        return (
            self.shard_id, self.capacity, self._current_len, self._events_in_window,
            self._push_latency, self._flush_latency, self._draining, self._window_start,
            self._pushes_since_drain_start,
        )


# --------------------------------------------------------------------------------------
# Decisions, errors, states
# --------------------------------------------------------------------------------------

@attrs.frozen
class ScalingDecision:
    """Rust `ScalingDecision`: None | ScaleUp(n) | ScaleDown(n)."""

    kind: str = attrs.field(validator=attrs.validators.in_(("none", "scale_up", "scale_down")))
    count: int = 0

    @classmethod
    def none(cls) -> ScalingDecision:
        return cls("none")

    @classmethod
    def scale_up(cls, n: int) -> ScalingDecision:
        return cls("scale_up", n)

    @classmethod
    def scale_down(cls, n: int) -> ScalingDecision:
        return cls("scale_down", n)

    def __str__(self) -> str:
        if self.kind == "none":
            return "None"
        name = "ScaleUp" if self.kind == "scale_up" else "ScaleDown"
        return f"{name}({self.count})"


class ScalingError(Exception):
    """Rust `ScalingError`; `str()` is its Display text."""


class InvalidPolicy(ScalingError):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return f"invalid scaling policy: {self.msg}"


class AtMaxShards(ScalingError):
    def __str__(self) -> str:
        return "already at maximum shard count"


class AtMinShards(ScalingError):
    def __str__(self) -> str:
        return "already at minimum shard count"


class InCooldown(ScalingError):
    def __str__(self) -> str:
        return "scaling operation in cooldown"


class ShardCreationFailed(ScalingError):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return f"shard creation failed: {self.msg}"


class ShardState(enum.Enum):
    """Value = the Rust Debug name, used inside error messages."""

    PROVISIONING = "Provisioning"
    ACTIVE = "Active"
    DRAINING = "Draining"
    STOPPED = "Stopped"


# --------------------------------------------------------------------------------------
# Shard records and pure helpers shared with the impl
# --------------------------------------------------------------------------------------

@attrs.define
class MappedShard:
    """Rust `MappedShard` (mutable record; times are integer ns)."""

    id: int
    state: ShardState
    metrics: ShardMetricsCollector
    drain_started: Optional[int]
    last_metrics: ShardMetrics
    activated_at: int

    def abstract(self) -> tuple:
        return (self.id, self.state, self.drain_started, self.activated_at,
                self.last_metrics, self.metrics.abstract())


def new_shard(shard_id: int, state: ShardState, activated_at: int, capacity: int,
              clock: Clock) -> MappedShard:
    """A fresh shard record: new collector, placeholder metrics, not draining."""
    collector = ShardMetricsCollector(shard_id, capacity, clock)
    return MappedShard(shard_id, state, collector, None,
                       ShardMetrics.new(shard_id, clock()), activated_at)


def effective_policy(policy: ScalingPolicy, initial_shards: int) -> ScalingPolicy:
    """What `ShardMapper::new` keeps: normalized, max raised to initial, validated."""
    policy = policy.normalize()
    if policy.max_shards < initial_shards:
        policy = attrs.evolve(policy, max_shards=initial_shards)
    try:
        policy.validate()
    except ConfigError as e:
        raise InvalidPolicy(str(e)) from e
    return policy


def check_first_shard_id(first_shard_id: int, initial_shards: int) -> None:
    require_u16("first_shard_id", first_shard_id)
    if first_shard_id + initial_shards > U16_MAX:
        raise ValueError(
            f"first_shard_id + initial_shards must be <= {U16_MAX}, "
            f"got {first_shard_id} + {initial_shards}")


def routable_candidates(shards: Sequence[MappedShard]) -> tuple[int, ...]:
    """Active ids within 0.1 of the minimum Active weight; all Active ids if none is.

    The minimum is Rust's `fold(f64::MAX, f64::min)`: NaN weights are skipped, and a
    +inf weight never lowers it below f64::MAX.
    """
    active = [s for s in shards if s.state is ShardState.ACTIVE]
    floor = functools.reduce(f64_min, (s.last_metrics.weight for s in active), F64_MAX)
    near = tuple(s.id for s in active if abs(s.last_metrics.weight - floor) < WEIGHT_TOLERANCE)
    return near or tuple(s.id for s in active)


def is_empty_for_finalize(collector: ShardMetricsCollector) -> bool:
    """Fill exactly 0 (capacity 0 counts as 0) and no push since the drain began."""
    fill = fill_ratio_of(collector.current_len(), collector.capacity)
    return fill == 0.0 and collector.pushes_since_drain_start() == 0


# --------------------------------------------------------------------------------------
# ShardMapper
# --------------------------------------------------------------------------------------

class ShardMapper:
    """The specification: every answer is recomputed from `self._shards`."""

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
        self._shards = [new_shard(first_shard_id + i, ShardState.ACTIVE, boot,
                                  ring_buffer_capacity, clock)
                        for i in range(initial_shards)]
        self._next_shard_id = first_shard_id + initial_shards
        self._last_scaling: Optional[int] = None
        self._on_created: Optional[ShardCallback] = None
        self._on_removed: Optional[ShardCallback] = None

    # ---- lookups ---------------------------------------------------------------------

    def _find(self, shard_id: int) -> Optional[MappedShard]:
        return next((s for s in self._shards if s.id == shard_id), None)

    def _active(self) -> list[MappedShard]:
        return [s for s in self._shards if s.state is ShardState.ACTIVE]

    def _in_cooldown(self, now: int) -> bool:
        last = self._last_scaling
        return last is not None and now - last < self._policy.cooldown_ns

    # ---- routing and metrics ---------------------------------------------------------

    def select_shard(self, event_hash: int) -> int:
        require_u64("event_hash", event_hash)
        candidates = routable_candidates(self._shards)
        if not candidates:
            return NO_SHARD
        return candidates[lemire_index(event_hash, len(candidates))]

    def collect_metrics(self) -> list[ShardMetrics]:
        for s in self._shards:
            s.last_metrics = s.metrics.collect_and_reset()
        return [s.last_metrics for s in self._shards]

    def inject_weight(self, shard_id: int, weight: float) -> bool:
        """Test hook: set one shard's last-collected weight (routing follows)."""
        require_u16("shard_id", shard_id)
        shard = self._find(shard_id)
        if shard is None:
            return False
        shard.last_metrics = attrs.evolve(shard.last_metrics, weight=float(weight))
        return True

    # ---- scaling decision ------------------------------------------------------------

    def evaluate_scaling(self) -> ScalingDecision:
        p = self._policy
        now = self._clock()
        if not p.auto_scale or self._in_cooldown(now):
            return ScalingDecision.none()
        voters = [s.last_metrics for s in self._active()
                  if now - s.activated_at >= p.cooldown_ns]
        overloaded = sum(1 for m in voters if self._overloaded(m))
        idle = sum(1 for m in voters if m.fill_ratio < p.underutilized_threshold
                   and m.event_rate == 0)
        a = self.active_shard_count()
        if overloaded > a // 2 and a < p.max_shards:
            return ScalingDecision.scale_up(min(max(overloaded // 2, 1), p.max_shards - a))
        if idle > a // 2 and a > p.min_shards:
            return ScalingDecision.scale_down(min(max(idle // 2, 1), a - p.min_shards))
        return ScalingDecision.none()

    def _overloaded(self, m: ShardMetrics) -> bool:
        p = self._policy
        return (m.fill_ratio > p.fill_ratio_threshold
                or m.avg_push_latency_ns > p.push_latency_threshold_ns
                or m.avg_flush_latency_us > p.flush_latency_threshold_us)

    # ---- growing ---------------------------------------------------------------------

    def scale_up(self, count: int) -> list[int]:
        ids = self._add_shards(count, ShardState.ACTIVE, force=False)
        self._fire(self._on_created, ids)
        return ids

    def scale_up_provisioning(self, count: int) -> list[int]:
        return self._add_shards(count, ShardState.PROVISIONING, force=False)

    def scale_up_provisioning_force(self, count: int) -> list[int]:
        return self._add_shards(count, ShardState.PROVISIONING, force=True)

    def _add_shards(self, count: int, state: ShardState, force: bool) -> list[int]:
        """Budget (Active shards only), then cooldown unless forced, then the sentinel."""
        require_u16("count", count)
        if count == 0:
            return []
        now = self._clock()
        if self.active_shard_count() + count > self._policy.max_shards:
            raise AtMaxShards()
        if not force and self._in_cooldown(now):
            raise InCooldown()
        first = self._next_shard_id
        if first + count - 1 >= U16_MAX:
            raise AtMaxShards()
        ids = list(range(first, first + count))
        self._next_shard_id = first + count
        self._shards += [new_shard(i, state, now, self._capacity, self._clock) for i in ids]
        self._last_scaling = now
        return ids

    def activate(self, shard_id: int) -> bool:
        require_u16("shard_id", shard_id)
        shard = self._find(shard_id)
        if shard is None:
            raise InvalidPolicy(f"activate: shard {shard_id} not found")
        if shard.state is ShardState.ACTIVE:
            return False
        if shard.state is not ShardState.PROVISIONING:
            raise InvalidPolicy(
                f"activate: shard {shard_id} is in state {shard.state.value}, cannot activate")
        if self.active_shard_count() >= self._policy.max_shards:
            raise AtMaxShards()
        shard.state = ShardState.ACTIVE
        shard.activated_at = self._clock()
        self._fire(self._on_created, [shard_id])
        return True

    # ---- shrinking -------------------------------------------------------------------

    def drain_specific(self, shard_id: int) -> None:
        """The min floor is checked before the id is even looked up."""
        require_u16("shard_id", shard_id)
        if self.active_shard_count() <= self._policy.min_shards:
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
        self._last_scaling = now

    def scale_down(self, count: int) -> list[int]:
        """Drain the `to_drain` lowest-weight Active shards (stable, total order)."""
        require_u16("count", count)
        a, p = self.active_shard_count(), self._policy
        if a <= p.min_shards:
            raise AtMinShards()
        to_drain = min(count, a - p.min_shards)
        if to_drain == 0:
            raise AtMinShards()
        now = self._clock()
        if self._in_cooldown(now):
            raise InCooldown()
        by_weight = sorted(self._active(), key=lambda s: total_order_key(s.last_metrics.weight))
        victims = by_weight[:to_drain]
        for shard in victims:
            self._start_draining(shard, now)
        self._last_scaling = now
        return [s.id for s in victims]

    @staticmethod
    def _start_draining(shard: MappedShard, now: int) -> None:
        shard.state = ShardState.DRAINING
        shard.drain_started = now
        shard.metrics.set_draining(True)

    def finalize_draining(self) -> list[int]:
        """Draining → Stopped when empty, no push since the drain, and > 100 ms elapsed."""
        now = self._clock()
        stopped = [s for s in self._shards if s.state is ShardState.DRAINING
                   and is_empty_for_finalize(s.metrics)
                   and s.drain_started is not None
                   and now - s.drain_started > DRAIN_GRACE_NS]
        for shard in stopped:
            shard.state = ShardState.STOPPED
        ids = [s.id for s in stopped]
        self._fire(self._on_removed, ids)
        return ids

    def remove_specific_stopped_shard(self, shard_id: int) -> bool:
        require_u16("shard_id", shard_id)
        shard = self._find(shard_id)
        if shard is None or shard.state is not ShardState.STOPPED:
            return False
        self._shards.remove(shard)
        return True

    def remove_stopped_shards(self) -> list[int]:
        removed = [s.id for s in self._shards if s.state is ShardState.STOPPED]
        self._shards = [s for s in self._shards if s.state is not ShardState.STOPPED]
        return removed

    # ---- accessors -------------------------------------------------------------------

    def shard_state(self, shard_id: int) -> Optional[ShardState]:
        require_u16("shard_id", shard_id)
        shard = self._find(shard_id)
        return None if shard is None else shard.state

    def active_shard_ids(self) -> list[int]:
        return [s.id for s in self._active()]

    def all_shard_ids(self) -> list[int]:
        return [s.id for s in self._shards if s.state is not ShardState.STOPPED]

    def active_shard_count(self) -> int:
        return len(self._active())

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

    @staticmethod
    def _fire(cb: Optional[ShardCallback], ids: list[int]) -> None:
        """Called last in every operation, so a callback may re-enter the mapper."""
        if cb is not None:
            for shard_id in ids:
                cb(shard_id)

    # ---- observation -----------------------------------------------------------------

    def abstract(self) -> tuple:
        return (self._policy, self._next_shard_id, self._last_scaling,
                tuple(s.abstract() for s in self._shards))

    def check_invariants(self) -> None:
        """The model has no caches to check."""


#: The read-only operations (of the mapper and its collectors): asking one changes nothing.
#: The subject protocol may answer a repeated query from its cache or ask it early.
QUERIES = ("select_shard", "evaluate_scaling", "shard_state", "active_shard_ids", "all_shard_ids",
           "active_shard_count", "total_shard_count", "metrics_collector", "policy", "abstract",
           "check_invariants", "current_len", "pushes_since_drain_start", "is_draining", "fill_ratio")
