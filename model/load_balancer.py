"""Reference model of net-mesh 0.25.0 `behavior/loadbalance.rs`, plus the later fixes.

What is modelled
----------------
The load balancer of the compute path: eleven strategies, health and its traffic rule
and weight multiplier, load metrics and `load_score`, the availability filter (enabled,
receives traffic, circuit, connection cap, ALL required tags), zone affinity with
`zone_fallback`, the four-attempt reservation loop, the round-robin counter (advanced
once per `select`, plus the extra advances of the ConsistentHash / PowerOfTwo / Adaptive
fallbacks), the per-endpoint circuit breaker with a strict single half-open probe, and
FNV-1a consistent hashing with 150 virtual nodes per endpoint.

The intended semantics is 0.25.0 plus the later fixes of semantics.md §2.8 (each 0.25.0
behaviour is a mutant in properties/):
  (a) a half-open probe is stamped with its claim time; a probe older than the recovery
      window is abandoned and may be claimed again;
  (b) re-adding an id removes its old virtual nodes first: exactly 150 ring entries;
  (c) collisions never evict: the ring is the sorted multiset of entries
      (hash, node_id, vnode_index).  Equal hashes are ordered by node id, then vnode
      index, so the LOWEST id wins a lookup that lands on a collided hash, and the other
      entry is still reached when the lowest id is filtered out.  The ring is therefore
      a pure function of the membership, independent of insertion history;
  (d) weighted round robin uses an exact integer wheel: effective weights are multiples
      of 1/4 (u32 x {1, .5, .25, 0}); the wheel unit is 1/k of a weight point with k the
      smallest of 1, 2, 4 making every effective weight integral.  With integral weights
      (k = 1) this is exactly 0.25.0 (wheel = total, target = counter mod wheel); with a
      fractional weight every endpoint of positive weight is served and shares stay
      exact.  (Upstream's later wheel of ceil(total / smallest weight) starves nobody but
      is not share-exact, e.g. weights 3:2 give 2:1, so it is not used);
  (e) a circuit recovery time below 1 ms is CLAMPED to 1 ms (as upstream did), not
      rejected: `effective_recovery_ns`.

Decisions where the sources are silent
--------------------------------------
- Order: the real endpoint map (DashMap) has unspecified iteration order.  The model
  walks endpoints in INSERTION order; re-adding an existing id keeps its position, a
  removed-then-added id goes to the end.  The spec must not depend on anything else.
- Node ids are 32-byte `bytes` (NodeId = [u8; 32]); the ring key and error texts use the
  Rust Debug rendering "[1, 0, ..., 0]".
- RequestContext: request_id, session_id, client_zone, routing_key are all optional
  strings (None = absent; "" is a present, empty key).  Keys hash as UTF-8.
- `Selection.weight` is the endpoint's configured u32 weight (not the effective one);
  `Selection.load_score` is always filled in, as 0.25.0 does.
- `remove_endpoint` returns whether the id was present; `update_health`,
  `update_metrics`, `record_completion` are silent no-ops for unknown ids.
- Error texts: "no endpoints available" and "no endpoints match required tags" are the
  real ones; the others ("endpoint not found: [..]", "all endpoints unhealthy",
  "circuit open for endpoint: [..]", "max connections reached for endpoint: [..]") are
  inferred.  `select` only ever raises NoEndpointsAvailable (as 0.25.0).
- Circuit state is `opened_at: int | None` (None = closed).  The "open flag set but no
  timestamp yet" window of the real code exists only between two atomics under
  concurrency and is not modelled.  The failure threshold is 5 consecutive failures.
  The filter's circuit test is a pure predicate; only the chosen endpoint's probe is
  claimed (claim succeeds iff no probe is in flight or it is stale, fix (a)), and a
  failed reservation releases a probe it claimed.  Any completion while a probe flag is
  set is the probe's outcome; a failed probe re-stamps `opened_at` and does not count a
  consecutive failure (as 0.25.0).
- Time is read from the injected clock once per `select` / `record_completion` (the
  real code reads `Instant::now()` per endpoint; identical under a fake clock).
- `load_score` uses Rust `f64::min` semantics for the two clamps (a NaN operand yields
  the other operand); float minima use IEEE total ordering (Rust `total_cmp`), ties to
  the first endpoint in order.
- Counters: connections u32 (saturating decrement), total/failed requests and the
  selection counters u64 wrapping, consecutive failures u32 wrapping, rr counter u64
  wrapping.
- `stats()` counts an endpoint healthy iff its health is Healthy (whatever `enabled` or
  the circuit say); the average load score is a sequential sum / count (0.0 if empty).
- `abstract()` includes the rr counter (it decides future selections) but not the ring,
  which is a function of membership; `_ring_entries()` exposes it for invariants.  It is
  built by `sorted_ring`, a pure function of the members' (id, vnode hashes), memoized.

Randomness: draw protocol (identical in model and impl)
-------------------------------------------------------
Only inside the strategy of an attempt (single-threaded: one attempt per select):
- Random: one `rng.randrange(n)` (n = available endpoints).
- WeightedRandom: total effective weight <= 0 -> exactly as Random; else one
  `rng.random()` (53-bit, in [0, 1): the fixed `random_f64`), target = U * total.
- PowerOfTwo: n < 2 -> no draw (round-robin fallback); else `rng.randrange(n)` twice.
No other operation draws.

Test hooks (same names and meaning in model and impl):
- `_key_hash(key)` and `_vnode_hashes(node_id)`: a test may subclass both with a weak
  hash to force ring collisions;
- `_interleave(chosen, now)`: called between the strategy's choice and the reservation
  of every attempt, a no-op by default.  Single-threaded, the reservation after a
  successful filter never fails, so the retry loop (and #39, the probe release on a
  failed reservation, the failed-selection counter) is only reachable by letting this
  hook act as a concurrent caller, e.g. by calling `self._try_reserve(chosen, now)`;
- `_rr_counter` may be set directly (e.g. near 2**53 or 2**64) on both.

Left out
--------
Concurrency (the atomic cap race #5 and concurrent probe losers #8: a later issue), the
RAII probe guard of async callers (no panics here), health checking and metric
staleness (config fields kept, unused as in 0.25.0), `priority` and `preferred_zones`
(stored, unused as in 0.25.0), `is_overloaded` is provided but unused by selection.
"""
from __future__ import annotations

import enum
import functools
import math
import random
import struct
from typing import Any, Callable, Iterable, Optional, Sequence

import attrs

from meshspec.clock import NS_PER_MS, Clock, monotonic_clock

# --------------------------------------------------------------------------------------
# Constants of 0.25.0

VIRTUAL_NODES = 150
MAX_RESERVATION_RETRIES = 4
CIRCUIT_FAILURE_THRESHOLD = 5
MIN_RECOVERY_NS = NS_PER_MS
WLC_WEIGHT_EPSILON = 1e-6

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


# --------------------------------------------------------------------------------------
# Integer widths and float helpers


def wrapping_add_u64(a: int, b: int) -> int:
    """u64 wrapping addition.

    pre: 0 <= a <= U64_MAX and 0 <= b <= U64_MAX
    post: 0 <= __return__ <= U64_MAX
    post: __return__ == a + b or __return__ == a + b - 2**64
    """
    return (a + b) & U64_MAX


def wrapping_add_u32(a: int, b: int) -> int:
    return (a + b) & U32_MAX


def saturating_sub_u32(a: int, b: int) -> int:
    """u32 saturating subtraction.

    pre: 0 <= a <= U32_MAX and 0 <= b <= U32_MAX
    post: 0 <= __return__ <= a
    post: __return__ + b >= a
    """
    return max(a - b, 0)


def rust_f64_min(a: float, b: float) -> float:
    """Rust `f64::min`: if one operand is NaN the other one is returned."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return a if a <= b else b


def total_order_key(x: float) -> int:
    """An int ordered like Rust `f64::total_cmp` (-NaN < -inf < ... < -0 < +0 < ... < +NaN)."""
    (bits,) = struct.unpack("<q", struct.pack("<d", x))
    return bits ^ 0x7FFF_FFFF_FFFF_FFFF if bits < 0 else bits


def sequential_sum(values: Iterable[float]) -> float:
    """Left-to-right float sum, as Rust's `Iterator::sum` (Python's `sum` may compensate)."""
    total = 0.0
    for v in values:
        total += v
    return total


def _check_uint(bits: int) -> Callable[[object, attrs.Attribute, int], None]:
    limit = 2**bits - 1

    def check(_inst: object, attribute: attrs.Attribute, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{attribute.name} must be a u{bits}, got {value!r}")

    return check


# --------------------------------------------------------------------------------------
# Hashing and the ring keys


def fnv1a_64(data: bytes, state: int = FNV_OFFSET_BASIS) -> int:
    """FNV-1a 64; `state` lets a caller continue a hash over a common prefix.

    pre: 0 <= state <= U64_MAX
    pre: len(data) <= 3
    post: 0 <= __return__ <= U64_MAX
    post: len(data) > 0 or __return__ == state
    post: len(data) == 0 or __return__ == fnv1a_64(data[1:], fnv1a_64(data[:1], state))
    """
    for byte in data:
        state = ((state ^ byte) * FNV_PRIME) & U64_MAX
    return state


def node_id_debug(node_id: bytes) -> str:
    """Rust's Debug rendering of a `[u8; 32]`: "[1, 0, 0, ...]"."""
    return "[" + ", ".join(str(b) for b in node_id) + "]"


def vnode_key(node_id: bytes, index: int) -> bytes:
    return f"{node_id_debug(node_id)}-{index}".encode()


def vnode_hashes(node_id: bytes) -> list[int]:
    """FNV-1a of `vnode_key(node_id, i)` for i in 0..150 (the common prefix hashed once)."""
    prefix = fnv1a_64(f"{node_id_debug(node_id)}-".encode())
    return [fnv1a_64(str(i).encode(), prefix) for i in range(VIRTUAL_NODES)]


def key_hash(key: str) -> int:
    return fnv1a_64(key.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------------------
# Enums


class Strategy(enum.Enum):
    ROUND_ROBIN = "round_robin"
    WEIGHTED_ROUND_ROBIN = "weighted_round_robin"
    LEAST_CONNECTIONS = "least_connections"
    WEIGHTED_LEAST_CONNECTIONS = "weighted_least_connections"
    RANDOM = "random"
    WEIGHTED_RANDOM = "weighted_random"
    CONSISTENT_HASH = "consistent_hash"
    LEAST_LATENCY = "least_latency"
    LEAST_LOAD = "least_load"
    POWER_OF_TWO = "power_of_two"
    ADAPTIVE = "adaptive"


# Weight multipliers in quarters, so that effective weights stay exact.
_HEALTH_QUARTERS = {"healthy": 4, "degraded": 2, "unhealthy": 0, "unknown": 1}


class HealthStatus(enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"

    def can_receive_traffic(self) -> bool:
        return self in (HealthStatus.HEALTHY, HealthStatus.DEGRADED)

    def weight_quarters(self) -> int:
        return _HEALTH_QUARTERS[self.value]

    def weight_multiplier(self) -> float:
        return self.weight_quarters() / 4


class SelectionReason(enum.Enum):
    ROUND_ROBIN = "round_robin"
    WEIGHTED = "weighted"
    LEAST_CONNECTIONS = "least_connections"
    CONSISTENT_HASH = "consistent_hash"
    LEAST_LATENCY = "least_latency"
    LEAST_LOAD = "least_load"
    RANDOM = "random"
    POWER_OF_TWO = "power_of_two"
    ZONE_AFFINITY = "zone_affinity"  # never produced by 0.25.0
    FALLBACK = "fallback"  # never produced by 0.25.0


# --------------------------------------------------------------------------------------
# Values


@attrs.frozen
class LoadMetrics:
    cpu_usage: float = attrs.field(default=0.0, converter=float)
    memory_usage: float = attrs.field(default=0.0, converter=float)
    active_connections: int = attrs.field(default=0, validator=_check_uint(32))
    requests_per_second: float = attrs.field(default=0.0, converter=float)
    avg_response_time_ms: float = attrs.field(default=0.0, converter=float)
    error_rate: float = attrs.field(default=0.0, converter=float)
    queue_depth: int = attrs.field(default=0, validator=_check_uint(32))
    bandwidth_usage: float = attrs.field(default=0.0, converter=float)
    updated_at: int = attrs.field(default=0, validator=_check_uint(64))  # µs, unused

    def load_score(self) -> float:
        conn = rust_f64_min(self.active_connections / 10000.0, 1.0)
        latency = rust_f64_min(self.avg_response_time_ms / 1000.0, 1.0)
        return (
            0.3 * self.cpu_usage
            + 0.2 * self.memory_usage
            + 0.2 * conn
            + 0.15 * latency
            + 0.15 * self.error_rate
        )

    def is_overloaded(self) -> bool:
        return (
            self.cpu_usage > 0.9
            or self.memory_usage > 0.95
            or self.error_rate > 0.1
            or self.queue_depth > 1000
        )


def _check_node_id(_inst: object, _attr: attrs.Attribute, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"node_id must be 32 bytes, got {value!r}")


@attrs.frozen
class Endpoint:
    node_id: bytes = attrs.field(validator=_check_node_id)
    weight: int = attrs.field(default=100, validator=_check_uint(32))
    health: HealthStatus = HealthStatus.HEALTHY
    metrics: LoadMetrics = attrs.field(factory=LoadMetrics)
    tags: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    priority: int = attrs.field(default=0, validator=_check_uint(32))
    enabled: bool = True
    zone: Optional[str] = None

    def effective_weight_quarters(self) -> int:
        return self.weight * self.health.weight_quarters() if self.enabled else 0

    def effective_weight(self) -> float:
        return self.effective_weight_quarters() / 4

    def is_available(self) -> bool:
        return self.enabled and self.health.can_receive_traffic()


@attrs.frozen
class RequestContext:
    request_id: Optional[str] = None
    session_id: Optional[str] = None
    client_zone: Optional[str] = None
    required_tags: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    preferred_zones: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # unused
    routing_key: Optional[str] = None

    def hash_key(self) -> Optional[str]:
        for key in (self.routing_key, self.session_id, self.request_id):
            if key is not None:
                return key
        return None


@attrs.frozen
class Selection:
    node_id: bytes
    weight: int
    load_score: float
    reason: SelectionReason


@attrs.frozen
class LoadBalancerStats:
    total_endpoints: int
    healthy_endpoints: int
    total_connections: int
    total_selections: int
    failed_selections: int
    avg_load_score: float


def _duration_ms(ms: int) -> Any:
    return attrs.field(default=ms * NS_PER_MS, validator=_check_uint(64))


@attrs.frozen
class LoadBalancerConfig:
    """Durations in integer nanoseconds (the Rust fields are milliseconds)."""

    strategy: Strategy = Strategy.ROUND_ROBIN
    health_check_interval_ns: int = _duration_ms(5000)  # unused by 0.25.0
    circuit_recovery_time_ns: int = _duration_ms(30000)
    max_connections_per_endpoint: int = attrs.field(default=10000, validator=_check_uint(32))
    zone_aware: bool = True
    zone_fallback: bool = True
    metrics_stale_after_ns: int = _duration_ms(10000)  # unused by 0.25.0


def effective_recovery_ns(config: LoadBalancerConfig) -> int:
    """Fix (e): the recovery window is at least 1 ms (0 would collapse the breaker)."""
    return max(config.circuit_recovery_time_ns, MIN_RECOVERY_NS)


def recovery_elapsed(since: int, now: int, recovery_ns: int) -> bool:
    """The breaker's clock: has a recovery window that started at `since` run out by `now`?

    pre: 0 <= since <= now and recovery_ns >= MIN_RECOVERY_NS
    post: __return__ == (now >= since + recovery_ns)
    post: not __return__ or recovery_elapsed(since, now + 1, recovery_ns)
    post: since != now or not __return__
    """
    return now - since >= recovery_ns


def metrics_abstract(m: LoadMetrics) -> tuple:
    return (m.cpu_usage, m.memory_usage, m.active_connections, m.requests_per_second,
            m.avg_response_time_ms, m.error_rate, m.queue_depth, m.bandwidth_usage, m.updated_at)


def endpoint_abstract(e: Endpoint) -> tuple:
    return (e.node_id, e.weight, e.health, metrics_abstract(e.metrics), e.tags,
            e.priority, e.enabled, e.zone)


# --------------------------------------------------------------------------------------
# Errors (str() is the Rust Display text)


class LoadBalancerError(Exception):
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == other.args  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.args))


class NoEndpointsAvailable(LoadBalancerError):
    def __str__(self) -> str:
        return "no endpoints available"


class AllEndpointsUnhealthy(LoadBalancerError):
    def __str__(self) -> str:
        return "all endpoints unhealthy"


class NoMatchingEndpoints(LoadBalancerError):
    def __str__(self) -> str:
        return "no endpoints match required tags"


class _NodeError(LoadBalancerError):
    _text = ""

    def __init__(self, node_id: bytes) -> None:
        super().__init__(node_id)
        self.node_id = node_id

    def __str__(self) -> str:
        return f"{self._text}: {node_id_debug(self.node_id)}"


class EndpointNotFound(_NodeError):
    _text = "endpoint not found"


class CircuitOpen(_NodeError):
    _text = "circuit open for endpoint"


class MaxConnectionsReached(_NodeError):
    _text = "max connections reached for endpoint"


# --------------------------------------------------------------------------------------
# Per-endpoint mutable state (model-private)


@attrs.define
class _EndpointState:
    endpoint: Endpoint
    connections: int = 0
    total_requests: int = 0
    failed_requests: int = 0
    consecutive_failures: int = 0
    opened_at: Optional[int] = None  # None = circuit closed
    probe: bool = False  # half-open probe in flight
    probe_at: Optional[int] = None  # fix (a): when the probe was claimed

    def abstract(self) -> tuple:
        return (endpoint_abstract(self.endpoint), self.connections, self.total_requests,
                self.failed_requests, self.consecutive_failures, self.opened_at,
                self.probe, self.probe_at)


Picked = tuple[_EndpointState, SelectionReason]


# --------------------------------------------------------------------------------------
# The balancer


class LoadBalancer:
    """The reference balancer: every select walks every endpoint; the ring is derived from the ids."""

    def __init__(
        self,
        config: Optional[LoadBalancerConfig] = None,
        *,
        clock: Clock = monotonic_clock,
        rng: Optional[random.Random] = None,
    ) -> None:
        self._config = config if config is not None else LoadBalancerConfig()
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._recovery_ns = effective_recovery_ns(self._config)
        self._endpoints: dict[bytes, _EndpointState] = {}
        self._rr_counter = 0
        self._total_selections = 0
        self._failed_selections = 0

    # ---- hash hooks ------------------------------------------------------------------

    def _key_hash(self, key: str) -> int:
        return key_hash(key)

    def _vnode_hashes(self, node_id: bytes) -> list[int]:
        return vnode_hashes(node_id)

    # ---- membership and updates --------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint) -> None:
        self._endpoints[endpoint.node_id] = _EndpointState(endpoint)

    def remove_endpoint(self, node_id: bytes) -> bool:
        return self._endpoints.pop(node_id, None) is not None

    def update_health(self, node_id: bytes, health: HealthStatus) -> None:
        state = self._endpoints.get(node_id)
        if state is not None:
            state.endpoint = attrs.evolve(state.endpoint, health=health)

    def update_metrics(self, node_id: bytes, metrics: LoadMetrics) -> None:
        state = self._endpoints.get(node_id)
        if state is not None:
            state.endpoint = attrs.evolve(state.endpoint, metrics=metrics)

    # ---- circuit breaker ---------------------------------------------------------------

    def _probe_is_stale(self, state: _EndpointState, now: int) -> bool:
        return state.probe_at is not None and recovery_elapsed(state.probe_at, now, self._recovery_ns)

    def _circuit_open(self, state: _EndpointState, now: int) -> bool:
        """The pure predicate of the filter: never claims anything."""
        if state.opened_at is None:
            return False
        if not recovery_elapsed(state.opened_at, now, self._recovery_ns):
            return True
        return state.probe and not self._probe_is_stale(state, now)

    def _claim_probe(self, state: _EndpointState, now: int) -> bool:
        if state.probe and not self._probe_is_stale(state, now):
            return False
        state.probe, state.probe_at = True, now
        return True

    def record_completion(self, node_id: bytes, success: bool) -> None:
        state = self._endpoints.get(node_id)
        if state is None:
            return
        now = self._clock()
        state.connections = saturating_sub_u32(state.connections, 1)
        if state.probe:
            state.probe, state.probe_at = False, None
            self._probe_outcome(state, success, now)
        elif success:
            state.consecutive_failures = 0
        else:
            self._count_failure(state, now)

    def _probe_outcome(self, state: _EndpointState, success: bool, now: int) -> None:
        if success:
            state.opened_at, state.consecutive_failures = None, 0
        else:
            state.failed_requests = wrapping_add_u64(state.failed_requests, 1)
            state.opened_at = now

    def _count_failure(self, state: _EndpointState, now: int) -> None:
        state.failed_requests = wrapping_add_u64(state.failed_requests, 1)
        state.consecutive_failures = wrapping_add_u32(state.consecutive_failures, 1)
        if state.consecutive_failures >= CIRCUIT_FAILURE_THRESHOLD and state.opened_at is None:
            state.opened_at = now

    # ---- the filter ----------------------------------------------------------------------

    def _passes_filter(self, state: _EndpointState, ctx: RequestContext, now: int) -> bool:
        e = state.endpoint
        return (
            e.is_available()
            and not self._circuit_open(state, now)
            and state.connections < self._config.max_connections_per_endpoint
            and all(tag in e.tags for tag in ctx.required_tags)
        )

    def _available(self, ctx: RequestContext, now: int) -> list[_EndpointState]:
        zone_matches: list[_EndpointState] = []
        others: list[_EndpointState] = []
        zoned = self._config.zone_aware and ctx.client_zone is not None
        for state in self._endpoints.values():
            if not self._passes_filter(state, ctx, now):
                continue
            if zoned and state.endpoint.zone == ctx.client_zone:
                zone_matches.append(state)
            else:
                others.append(state)
        if zone_matches:
            return zone_matches
        if zoned and not self._config.zone_fallback:
            raise NoEndpointsAvailable()
        if not others:
            raise NoEndpointsAvailable()
        return others

    # ---- select --------------------------------------------------------------------------

    def select(self, ctx: RequestContext) -> Selection:
        self._total_selections = wrapping_add_u64(self._total_selections, 1)
        offset = self._advance_rr()
        now = self._clock()
        for attempt in range(MAX_RESERVATION_RETRIES):
            available = self._available(ctx, now)
            state, reason = self._run_strategy(available, ctx, wrapping_add_u64(offset, attempt))
            self._interleave(state, now)
            if self._try_reserve(state, now):
                e = state.endpoint
                return Selection(e.node_id, e.weight, e.metrics.load_score(), reason)
        self._failed_selections = wrapping_add_u64(self._failed_selections, 1)
        raise NoEndpointsAvailable()

    def _advance_rr(self) -> int:
        old = self._rr_counter
        self._rr_counter = wrapping_add_u64(old, 1)
        return old

    def _interleave(self, state: _EndpointState, now: int) -> None:
        """Test hook: what a concurrent caller does between the filter and the reservation."""

    def _try_reserve(self, state: _EndpointState, now: int) -> bool:
        if self._endpoints.get(state.endpoint.node_id) is not state:
            return False
        claimed = False
        if state.opened_at is not None:
            if not self._claim_probe(state, now):
                return False
            claimed = True
        if state.connections >= self._config.max_connections_per_endpoint:
            if claimed:
                state.probe, state.probe_at = False, None
            return False
        state.connections += 1
        state.total_requests = wrapping_add_u64(state.total_requests, 1)
        return True

    # ---- strategies --------------------------------------------------------------------

    def _run_strategy(self, av: list[_EndpointState], ctx: RequestContext, c: int) -> Picked:
        s = self._config.strategy
        if s is Strategy.ROUND_ROBIN:
            return self._round_robin_at(av, c)
        if s is Strategy.WEIGHTED_ROUND_ROBIN:
            return self._weighted_round_robin_at(av, c)
        if s is Strategy.LEAST_CONNECTIONS:
            return self._least_connections(av)
        if s is Strategy.WEIGHTED_LEAST_CONNECTIONS:
            return self._weighted_least_connections(av)
        if s is Strategy.RANDOM:
            return self._random(av)
        if s is Strategy.WEIGHTED_RANDOM:
            return self._weighted_random(av)
        if s is Strategy.CONSISTENT_HASH:
            return self._consistent_hash(av, ctx)
        if s is Strategy.LEAST_LATENCY:
            return self._least_latency(av)
        if s is Strategy.LEAST_LOAD:
            return self._least_load(av)
        if s is Strategy.POWER_OF_TWO:
            return self._power_of_two(av)
        return self._adaptive(av, ctx)

    def _round_robin_at(self, av: list[_EndpointState], c: int) -> Picked:
        return av[c % len(av)], SelectionReason.ROUND_ROBIN

    def _round_robin_advancing(self, av: list[_EndpointState]) -> Picked:
        return self._round_robin_at(av, self._advance_rr())

    def _weighted_round_robin_at(self, av: list[_EndpointState], c: int) -> Picked:
        total = sequential_sum(s.endpoint.effective_weight() for s in av)
        if not total > 0:
            return self._round_robin_at(av, c)
        scale = wheel_scale([s.endpoint.effective_weight_quarters() for s in av])
        units = [int(s.endpoint.effective_weight() * scale) for s in av]
        target = c % sum(units)
        cumulative = 0
        for state, unit in zip(av, units):
            cumulative += unit
            if cumulative > target:
                return state, SelectionReason.WEIGHTED
        return av[0], SelectionReason.WEIGHTED

    def _least_connections(self, av: list[_EndpointState]) -> Picked:
        return min(av, key=lambda s: s.connections), SelectionReason.LEAST_CONNECTIONS

    def _weighted_least_connections(self, av: list[_EndpointState]) -> Picked:
        def score(s: _EndpointState) -> int:
            divisor = max(s.endpoint.effective_weight(), WLC_WEIGHT_EPSILON)
            return total_order_key(s.connections / divisor)

        return min(av, key=score), SelectionReason.LEAST_CONNECTIONS

    def _random(self, av: list[_EndpointState]) -> Picked:
        return av[self._rng.randrange(len(av))], SelectionReason.RANDOM

    def _weighted_random(self, av: list[_EndpointState]) -> Picked:
        total = sequential_sum(s.endpoint.effective_weight() for s in av)
        if total <= 0:
            return self._random(av)
        target = self._rng.random() * total
        cumulative = 0.0
        for state in av:
            cumulative += state.endpoint.effective_weight()
            if cumulative >= target:
                return state, SelectionReason.WEIGHTED
        return av[0], SelectionReason.WEIGHTED

    def _consistent_hash(self, av: list[_EndpointState], ctx: RequestContext) -> Picked:
        key = ctx.hash_key()
        if key is None:
            return self._round_robin_advancing(av)
        ring = self._ring_entries()
        by_id = {s.endpoint.node_id: s for s in av}
        start = first_at_or_after(ring, self._key_hash(key))
        for i in range(len(ring)):
            state = by_id.get(ring[(start + i) % len(ring)][1])
            if state is not None:
                return state, SelectionReason.CONSISTENT_HASH
        return self._round_robin_advancing(av)

    def _least_latency(self, av: list[_EndpointState]) -> Picked:
        best = min(av, key=lambda s: total_order_key(s.endpoint.metrics.avg_response_time_ms))
        return best, SelectionReason.LEAST_LATENCY

    def _least_load(self, av: list[_EndpointState]) -> Picked:
        best = min(av, key=lambda s: total_order_key(s.endpoint.metrics.load_score()))
        return best, SelectionReason.LEAST_LOAD

    def _power_of_two(self, av: list[_EndpointState]) -> Picked:
        if len(av) < 2:
            return self._round_robin_advancing(av)
        i = self._rng.randrange(len(av))
        j = self._rng.randrange(len(av))
        if j == i:
            j = (j + 1) % len(av)
        best = av[i] if av[i].connections <= av[j].connections else av[j]
        return best, SelectionReason.POWER_OF_TWO

    def _adaptive(self, av: list[_EndpointState], ctx: RequestContext) -> Picked:
        mean = sequential_sum(s.endpoint.metrics.load_score() for s in av) / len(av)
        if mean > 0.7:
            return self._least_connections(av)
        if ctx.session_id is not None or ctx.routing_key is not None:
            return self._consistent_hash(av, ctx)
        return self._weighted_round_robin_at(av, self._advance_rr())

    # ---- the ring (built from scratch every time) ----------------------------------------

    def _ring_entries(self) -> tuple[tuple[int, bytes, int], ...]:
        """The sorted ring: (hash, node_id, vnode_index) for every endpoint's 150 vnodes."""
        return sorted_ring(frozenset((node_id, tuple(self._vnode_hashes(node_id)))
                                     for node_id in self._endpoints))

    # ---- observation -------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        return [s.endpoint for s in self._endpoints.values()]

    def stats(self) -> LoadBalancerStats:
        states = list(self._endpoints.values())
        scores = sequential_sum(s.endpoint.metrics.load_score() for s in states)
        return LoadBalancerStats(
            total_endpoints=len(states),
            healthy_endpoints=sum(s.endpoint.health is HealthStatus.HEALTHY for s in states),
            total_connections=sum(s.connections for s in states),
            total_selections=self._total_selections,
            failed_selections=self._failed_selections,
            avg_load_score=scores / len(states) if states else 0.0,
        )

    def abstract(self) -> tuple:
        return (
            self._config,
            self._rr_counter,
            self._total_selections,
            self._failed_selections,
            tuple(s.abstract() for s in self._endpoints.values()),
        )

    def check_invariants(self) -> None:
        """The model has no caches to check."""


# --------------------------------------------------------------------------------------
# Pure helpers shared with the impl (they are part of the specification)


def wheel_scale(quarters: Sequence[int]) -> int:
    """Smallest k in (1, 2, 4) such that every effective weight times k is an integer.

    pre: len(quarters) <= 4
    post: __return__ in (1, 2, 4)
    post: all(q * __return__ % 4 == 0 for q in quarters)
    post: __return__ == 1 or not all(q * (__return__ // 2) % 4 == 0 for q in quarters)
    """
    if all(q % 4 == 0 for q in quarters):
        return 1
    if all(q % 2 == 0 for q in quarters):
        return 2
    return 4


@functools.lru_cache(maxsize=128)  # (the harness's pool of 6 ids makes at most 64 memberships per ring kind)
def sorted_ring(vnodes: frozenset[tuple[bytes, tuple[int, ...]]]) -> tuple[tuple[int, bytes, int], ...]:
    """Every (hash, node_id, vnode_index) of the given (node_id, vnode hashes) pairs, sorted.

    A pure function of its argument (so memoized: the model calls it on every
    consistent-hash select, with the same membership most of the time)."""
    return tuple(sorted((h, node_id, i) for node_id, hashes in vnodes for i, h in enumerate(hashes)))


def first_at_or_after(ring: Sequence[tuple[int, bytes, int]], h: int) -> int:
    """Index of the first ring entry with hash >= h (len(ring) if none), by a plain scan.

    pre: len(ring) <= 4
    post: 0 <= __return__ <= len(ring)
    post: all(entry[0] < h for entry in ring[:__return__])
    post: __return__ == len(ring) or ring[__return__][0] >= h
    """
    for i, entry in enumerate(ring):
        if entry[0] >= h:
            return i
    return len(ring)
