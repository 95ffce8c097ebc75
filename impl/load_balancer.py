"""Optimized load balancer: same API and semantics as `model.load_balancer`, no per-select walk.

What it optimizes (compute-perf-analysis.md)
--------------------------------------------
- #148 availability snapshot, stratified: one `_Stratum` (insertion-ordered list, id set,
  cached weight totals) per key (zone | ANY, tag | ANY).  A select looks up one stratum
  (two when the client zone has no match); only contexts with two or more required
  tags filter (the first tag's stratum) per call.  What a snapshot cannot know by
  itself is handled explicitly:
    * connection counts: every reservation and completion re-syncs that one endpoint
      (`_sync`), so reaching or leaving the cap moves it out of / into the snapshot;
    * time: availability only ever changes from "blocked" to "admitted" as time passes
      (recovery window elapsed, abandoned probe reclaimable).  Each time-blocked endpoint
      is kept in `_pending` with its release time and `_stale_at` is the earliest one; a
      select at or after `_stale_at` re-syncs the pending endpoints first.
- #149 metrics-derived values (load score, total-order keys) are computed once per
  `update_metrics`, never per select; per-stratum minima and the mean load are cached
  until a member or its metrics change (#165).
- #150 the ring is a presorted tuple of (hash, node_id, vnode_index), maintained
  incrementally (an endpoint's 150 entries are merged in on add by timsort's C-level merge
  of two sorted runs, sliced out on remove by bisection, and left as they are when an id is
  re-added: the ring depends only on the set of ids) and searched with `bisect`; a
  stratum's id set decides membership during the walk.
- #160 cached total weight per stratum (in quarter units) plus a lazily built prefix-sum
  array, so weighted round robin and weighted random are one bisection.
- #161 one `random.Random` per balancer (injected); #163 retries re-read the snapshot.
The model's draw protocol, ordering and counters are followed exactly.  A select
allocates nothing proportional to the endpoints, except for a context with two or more
required tags (one filtered list) and the lazy rebuild of a changed stratum's prefix sums.

`check_invariants()` recomputes from the primary data (the endpoints with their counters
and breaker state): every per-endpoint cache, the snapshot (== availability now, except
endpoints whose release time has passed and that the next select refreshes), every
stratum's members, order, id set, weight totals and cached aggregates, the ring (sorted,
distinct, == a fresh build, 150 per endpoint), the connection bounds and the counters.

Override points for mutants (each private method is one behaviour)
------------------------------------------------------------------
- snapshot sync, one per kind of change: `_after_add`, `_after_readd`, `_after_remove`,
  `_after_health_change`, `_after_metrics_change` (cached minima / mean load),
  `_after_reservation` (cap reached, probe claimed), `_after_reservation_failure`,
  `_after_completion` (cap freed, circuit opened / closed), `_refresh_if_stale` (time);
- availability and breaker: `_is_available`, `_circuit_open`, `_probe_is_stale`,
  `_claim_probe`, `_release_probe`, `_probe_outcome`, `_count_failure`,
  `_release_connection`, `_effective_recovery_ns`;
- counter: `_advance_rr`, `_attempt_offset`;  candidates and zones: `_candidates`;
- ring: `_ring_insert`, `_ring_delete`, `_ring_on_readd`, `_ring_walk`;
- strategies: `_weighted_round_robin_at`, `_wrr_target`, `_wlc_divisor`, `_draw_unit`,
  `_least_latency`, `_least_load` (and every other `_<strategy>` method);
- hooks shared with the model: `_key_hash`, `_vnode_hashes`, `_interleave`.

Left out: the same as the model (concurrency, probe guards, health checking).
"""
from __future__ import annotations

import math
import random
from bisect import bisect_left, insort
from itertools import accumulate, count, repeat
from operator import attrgetter, is_
from typing import Optional

import attrs

from meshspec.clock import Clock, monotonic_clock
from model.load_balancer import (  # noqa: F401  (re-exported API values)
    CIRCUIT_FAILURE_THRESHOLD,
    MAX_RESERVATION_RETRIES,
    U32_MAX,
    WLC_WEIGHT_EPSILON,
    AllEndpointsUnhealthy,
    CircuitOpen,
    Endpoint,
    EndpointNotFound,
    HealthStatus,
    LoadBalancerConfig,
    LoadBalancerError,
    LoadBalancerStats,
    LoadMetrics,
    MaxConnectionsReached,
    NoEndpointsAvailable,
    NoMatchingEndpoints,
    RequestContext,
    Selection,
    SelectionReason,
    Strategy,
    effective_recovery_ns,
    endpoint_abstract,
    key_hash,
    saturating_sub_u32,
    sequential_sum,
    total_order_key,
    vnode_hashes,
    wrapping_add_u32,
    wrapping_add_u64,
)


class _AnyKey:
    """Stratum key component meaning "any zone" / "no tag".

    A singleton compared by identity: copies and pickles resolve to the one `_ANY`, so a
    deep-copied balancer (the explorer's snapshots) still finds its strata."""

    def __repr__(self) -> str:
        return "ANY"

    def __copy__(self) -> "_AnyKey":
        return self

    def __deepcopy__(self, memo: dict) -> "_AnyKey":
        return self

    def __reduce__(self) -> str:
        return "_ANY"


_ANY = _AnyKey()
_INF = math.inf

RingEntry = tuple[int, bytes, int]


class _EP:
    """One endpoint: primary state (endpoint value + counters + breaker) and caches."""

    __slots__ = (
        "endpoint", "node_id", "weight", "seq", "tagset", "keys", "vnodes",
        "connections", "total_requests", "failed_requests", "consecutive_failures",
        "opened_at", "probe", "probe_at",
        "traffic", "q", "wlc_div", "load_score", "latency_key", "load_key",
        "listed", "listed_q", "verified", "vnodes_checked", "abstract_of", "endpoint_abstract",
    )

    def __init__(self, endpoint: Endpoint, seq: int) -> None:
        self.endpoint = endpoint
        self.node_id = endpoint.node_id
        self.weight = endpoint.weight
        self.seq = seq
        self.tagset = frozenset(endpoint.tags)
        self.keys = _stratum_keys(endpoint)
        self.vnodes: tuple[RingEntry, ...] = ()
        self.vnodes_checked: Optional[tuple[RingEntry, ...]] = None
        self.connections = 0
        self.total_requests = 0
        self.failed_requests = 0
        self.consecutive_failures = 0
        self.opened_at: Optional[int] = None
        self.probe = False
        self.probe_at: Optional[int] = None
        self.listed = False
        self.listed_q = 0
        self.verified: Optional[tuple] = None  # the caches check_invariants last verified
        self.abstract_of: Optional[Endpoint] = None
        self.endpoint_abstract: tuple = ()

    def abstract(self) -> tuple:
        if self.abstract_of is not self.endpoint:  # (endpoints are immutable values)
            self.abstract_of, self.endpoint_abstract = self.endpoint, endpoint_abstract(self.endpoint)
        return (self.endpoint_abstract, self.connections, self.total_requests,
                self.failed_requests, self.consecutive_failures, self.opened_at,
                self.probe, self.probe_at)


def _stratum_keys(endpoint: Endpoint) -> tuple[tuple[object, object], ...]:
    zones: list[object] = [_ANY] if endpoint.zone is None else [_ANY, endpoint.zone]
    tags: list[object] = [_ANY, *sorted(set(endpoint.tags))]
    return tuple((z, t) for z in zones for t in tags)


_SEQ = attrgetter("seq")
_LISTED_Q = attrgetter("listed_q")
_CONNECTIONS = attrgetter("connections")
_LATENCY_KEY = attrgetter("latency_key")
_LOAD_KEY = attrgetter("load_key")


def _wlc_score(ep: _EP) -> float:
    return ep.connections / ep.wlc_div


class _Stratum:
    """The available endpoints of one key, in insertion order, with cached aggregates."""

    __slots__ = ("eps", "ids", "total_q", "n_not_whole", "n_odd",
                 "_prefix", "_mean_load", "_min_latency", "_min_load")

    def __init__(self, eps: Optional[list[_EP]] = None) -> None:
        self.eps: list[_EP] = []
        self.ids: set[bytes] = set()
        self.total_q = self.n_not_whole = self.n_odd = 0
        self.touch()
        for ep in eps or ():
            self.eps.append(ep)
            self._count(ep.listed_q, ep.node_id, 1)

    def _count(self, q: int, node_id: bytes, sign: int) -> None:
        self.total_q += sign * q
        self.n_not_whole += sign * (q % 4 != 0)
        self.n_odd += sign * (q % 2 != 0)
        if sign > 0:
            self.ids.add(node_id)
        else:
            self.ids.discard(node_id)

    def add(self, ep: _EP) -> None:
        insort(self.eps, ep, key=_SEQ)
        self._count(ep.listed_q, ep.node_id, 1)
        self.touch()

    def remove(self, ep: _EP) -> None:
        i = bisect_left(self.eps, ep.seq, key=_SEQ)
        assert self.eps[i] is ep, "stratum out of sync"
        del self.eps[i]
        self._count(ep.listed_q, ep.node_id, -1)
        self.touch()

    def touch(self) -> None:
        self._prefix: Optional[list[int]] = None
        self.touch_metrics()

    def touch_metrics(self) -> None:
        self._mean_load: Optional[float] = None
        self._min_latency: Optional[_EP] = None
        self._min_load: Optional[_EP] = None

    def scale(self) -> int:
        return 1 if self.n_not_whole == 0 else 2 if self.n_odd == 0 else 4

    def prefix(self) -> list[int]:
        if self._prefix is None:
            self._prefix = list(accumulate(map(_LISTED_Q, self.eps)))
        return self._prefix

    def mean_load(self) -> float:
        if self._mean_load is None:
            self._mean_load = sequential_sum(ep.load_score for ep in self.eps) / len(self.eps)
        return self._mean_load

    def min_latency(self) -> _EP:
        if self._min_latency is None:
            self._min_latency = min(self.eps, key=_LATENCY_KEY)
        return self._min_latency

    def min_load(self) -> _EP:
        if self._min_load is None:
            self._min_load = min(self.eps, key=_LOAD_KEY)
        return self._min_load


_EMPTY = _Stratum()

Picked = tuple[_EP, SelectionReason]

_STRATEGY_METHODS = {
    Strategy.ROUND_ROBIN: "_round_robin_at",
    Strategy.WEIGHTED_ROUND_ROBIN: "_weighted_round_robin_at",
    Strategy.LEAST_CONNECTIONS: "_least_connections",
    Strategy.WEIGHTED_LEAST_CONNECTIONS: "_weighted_least_connections",
    Strategy.RANDOM: "_random",
    Strategy.WEIGHTED_RANDOM: "_weighted_random",
    Strategy.CONSISTENT_HASH: "_consistent_hash",
    Strategy.LEAST_LATENCY: "_least_latency",
    Strategy.LEAST_LOAD: "_least_load",
    Strategy.POWER_OF_TWO: "_power_of_two",
    Strategy.ADAPTIVE: "_adaptive",
}


class LoadBalancer:
    """Snapshot-based balancer; see the module docstring for what is cached and why."""

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
        self._recovery_ns = self._effective_recovery_ns(self._config)
        self._cap = self._config.max_connections_per_endpoint
        self._eps: dict[bytes, _EP] = {}
        self._next_seq = 0
        self._strata: dict[tuple[object, object], _Stratum] = {}
        self._pending: dict[bytes, _EP] = {}
        self._stale_at: float = _INF
        self._ring: tuple[RingEntry, ...] = ()  # immutable: replaced, never edited in place
        self._ring_checked: Optional[tuple[tuple[RingEntry, ...], frozenset]] = None
        self._rr_counter = 0
        self._total_selections = 0
        self._failed_selections = 0
        self._strategy_fn = getattr(self, _STRATEGY_METHODS[self._config.strategy])

    def _effective_recovery_ns(self, config: LoadBalancerConfig) -> int:
        return effective_recovery_ns(config)

    # ---- hash hooks (same as the model's) ---------------------------------------------

    def _key_hash(self, key: str) -> int:
        return key_hash(key)

    def _vnode_hashes(self, node_id: bytes) -> list[int]:
        return vnode_hashes(node_id)

    # ---- endpoint caches -----------------------------------------------------------------

    def _new_ep(self, endpoint: Endpoint, seq: int) -> _EP:
        ep = _EP(endpoint, seq)
        self._refresh_weight_caches(ep)
        self._refresh_metric_caches(ep)
        return ep

    def _wlc_divisor(self, ep: _EP) -> float:
        return max(ep.q / 4, WLC_WEIGHT_EPSILON)

    def _refresh_weight_caches(self, ep: _EP) -> None:
        ep.traffic = ep.endpoint.is_available()
        ep.q = ep.endpoint.effective_weight_quarters()
        ep.wlc_div = self._wlc_divisor(ep)

    def _refresh_metric_caches(self, ep: _EP) -> None:
        metrics = ep.endpoint.metrics
        ep.load_score = metrics.load_score()
        ep.latency_key = total_order_key(metrics.avg_response_time_ms)
        ep.load_key = total_order_key(ep.load_score)

    # ---- membership and updates --------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint) -> None:
        old = self._eps.get(endpoint.node_id)
        if old is None:
            ep = self._new_ep(endpoint, self._next_seq)
            self._next_seq += 1
            self._eps[ep.node_id] = ep
            self._ring_insert(ep)
            self._after_add(ep, self._clock())
        else:
            ep = self._new_ep(endpoint, old.seq)
            self._eps[ep.node_id] = ep  # keeps the dict position, like the model
            self._ring_on_readd(old, ep)
            self._after_readd(old, ep, self._clock())

    def remove_endpoint(self, node_id: bytes) -> bool:
        ep = self._eps.pop(node_id, None)
        if ep is None:
            return False
        self._after_remove(ep)
        self._ring_delete(ep)
        return True

    def update_health(self, node_id: bytes, health: HealthStatus) -> None:
        ep = self._eps.get(node_id)
        if ep is None:
            return
        ep.endpoint = attrs.evolve(ep.endpoint, health=health)
        self._refresh_weight_caches(ep)
        self._after_health_change(ep, self._clock())

    def update_metrics(self, node_id: bytes, metrics: LoadMetrics) -> None:
        ep = self._eps.get(node_id)
        if ep is None:
            return
        ep.endpoint = attrs.evolve(ep.endpoint, metrics=metrics)
        self._refresh_metric_caches(ep)
        self._after_metrics_change(ep)

    # ---- snapshot maintenance --------------------------------------------------------------

    def _after_add(self, ep: _EP, now: int) -> None:
        self._sync(ep, now)

    def _after_readd(self, old: _EP, new: _EP, now: int) -> None:
        self._after_remove(old)
        self._after_add(new, now)

    def _after_remove(self, ep: _EP) -> None:
        if ep.listed:
            self._unlist(ep)
        self._pending.pop(ep.node_id, None)

    def _after_health_change(self, ep: _EP, now: int) -> None:
        self._sync(ep, now)

    def _after_metrics_change(self, ep: _EP) -> None:
        if ep.listed:
            for key in ep.keys:
                self._strata[key].touch_metrics()

    def _after_reservation(self, ep: _EP, now: int) -> None:
        self._sync(ep, now)

    def _after_reservation_failure(self, ep: _EP, now: int) -> None:
        self._sync(ep, now)

    def _after_completion(self, ep: _EP, now: int) -> None:
        self._sync(ep, now)

    def _refresh_if_stale(self, now: int) -> None:
        if now >= self._stale_at:
            pending = list(self._pending.values())
            self._pending.clear()
            self._stale_at = _INF
            for ep in pending:
                self._sync(ep, now)

    def _is_available(self, ep: _EP, now: int) -> bool:
        return ep.traffic and ep.connections < self._cap and not self._circuit_open(ep, now)

    def _sync(self, ep: _EP, now: int) -> None:
        """Bring one endpoint's snapshot membership and release tracking up to date."""
        want = self._is_available(ep, now)
        if ep.listed and (not want or ep.listed_q != ep.q):
            self._unlist(ep)
        if want and not ep.listed:
            self._list(ep)
        release = self._release_time(ep, now)
        if release is not None and release > now:
            self._pending[ep.node_id] = ep
            if release < self._stale_at:
                self._stale_at = release
        elif self._pending:
            self._pending.pop(ep.node_id, None)

    def _release_time(self, ep: _EP, now: int) -> Optional[int]:
        """When a time-blocked circuit admits again, if nothing else happens."""
        if ep.opened_at is None:
            return None
        if now - ep.opened_at < self._recovery_ns:
            return ep.opened_at + self._recovery_ns
        if ep.probe and ep.probe_at is not None:
            return ep.probe_at + self._recovery_ns
        return None

    def _list(self, ep: _EP) -> None:
        ep.listed, ep.listed_q = True, ep.q
        for key in ep.keys:
            stratum = self._strata.get(key)
            if stratum is None:
                stratum = self._strata[key] = _Stratum()
            stratum.add(ep)

    def _unlist(self, ep: _EP) -> None:
        for key in ep.keys:
            self._strata[key].remove(ep)
        ep.listed = False

    # ---- circuit breaker (same rules as the model) ----------------------------------------

    def _probe_is_stale(self, ep: _EP, now: int) -> bool:
        return ep.probe_at is not None and now - ep.probe_at >= self._recovery_ns

    def _circuit_open(self, ep: _EP, now: int) -> bool:
        if ep.opened_at is None:
            return False
        if now - ep.opened_at < self._recovery_ns:
            return True
        return ep.probe and not self._probe_is_stale(ep, now)

    def _claim_probe(self, ep: _EP, now: int) -> bool:
        if ep.probe and not self._probe_is_stale(ep, now):
            return False
        ep.probe, ep.probe_at = True, now
        return True

    def _release_probe(self, ep: _EP) -> None:
        ep.probe, ep.probe_at = False, None

    def _release_connection(self, ep: _EP) -> None:
        ep.connections = saturating_sub_u32(ep.connections, 1)

    def record_completion(self, node_id: bytes, success: bool) -> None:
        ep = self._eps.get(node_id)
        if ep is None:
            return
        now = self._clock()
        self._release_connection(ep)
        if ep.probe:
            self._release_probe(ep)
            self._probe_outcome(ep, success, now)
        elif success:
            ep.consecutive_failures = 0
        else:
            self._count_failure(ep, now)
        self._after_completion(ep, now)

    def _probe_outcome(self, ep: _EP, success: bool, now: int) -> None:
        if success:
            ep.opened_at, ep.consecutive_failures = None, 0
        else:
            ep.failed_requests = wrapping_add_u64(ep.failed_requests, 1)
            ep.opened_at = now

    def _count_failure(self, ep: _EP, now: int) -> None:
        ep.failed_requests = wrapping_add_u64(ep.failed_requests, 1)
        ep.consecutive_failures = wrapping_add_u32(ep.consecutive_failures, 1)
        if ep.consecutive_failures >= CIRCUIT_FAILURE_THRESHOLD and ep.opened_at is None:
            ep.opened_at = now

    # ---- select --------------------------------------------------------------------------

    def select(self, ctx: RequestContext) -> Selection:
        self._total_selections = wrapping_add_u64(self._total_selections, 1)
        offset = self._advance_rr()
        now = self._clock()
        self._refresh_if_stale(now)
        for attempt in range(MAX_RESERVATION_RETRIES):
            stratum = self._candidates(ctx)
            ep, reason = self._strategy_fn(stratum, ctx, self._attempt_offset(offset, attempt))
            self._interleave(ep, now)
            if self._try_reserve(ep, now):
                return Selection(ep.node_id, ep.weight, ep.load_score, reason)
        self._failed_selections = wrapping_add_u64(self._failed_selections, 1)
        raise NoEndpointsAvailable()

    def _advance_rr(self) -> int:
        old = self._rr_counter
        self._rr_counter = wrapping_add_u64(old, 1)
        return old

    def _attempt_offset(self, offset: int, attempt: int) -> int:
        return wrapping_add_u64(offset, attempt)

    def _candidates(self, ctx: RequestContext) -> _Stratum:
        tags = ctx.required_tags
        if self._config.zone_aware and ctx.client_zone is not None:
            stratum = self._stratum(ctx.client_zone, tags)
            if stratum.eps:
                return stratum
            if not self._config.zone_fallback:
                raise NoEndpointsAvailable()
        stratum = self._stratum(_ANY, tags)
        if not stratum.eps:
            raise NoEndpointsAvailable()
        return stratum

    def _stratum(self, zone: object, tags: tuple[str, ...]) -> _Stratum:
        if not tags:
            return self._strata.get((zone, _ANY), _EMPTY)
        base = self._strata.get((zone, tags[0]), _EMPTY)
        if len(tags) == 1 or not base.eps:
            return base
        rest = tags[1:]
        return _Stratum([ep for ep in base.eps if all(t in ep.tagset for t in rest)])

    def _interleave(self, ep: _EP, now: int) -> None:
        """Test hook (see the model): a concurrent caller between choice and reservation."""

    def _try_reserve(self, ep: _EP, now: int) -> bool:
        if self._eps.get(ep.node_id) is not ep:
            return False
        claimed = False
        if ep.opened_at is not None:
            if not self._claim_probe(ep, now):
                self._after_reservation_failure(ep, now)
                return False
            claimed = True
        if ep.connections >= self._cap:
            if claimed:
                self._release_probe(ep)
            self._after_reservation_failure(ep, now)
            return False
        ep.connections += 1
        ep.total_requests = wrapping_add_u64(ep.total_requests, 1)
        self._after_reservation(ep, now)
        return True

    # ---- strategies (all take the stratum, the context and the offset) ---------------------

    def _round_robin_at(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        return st.eps[c % len(st.eps)], SelectionReason.ROUND_ROBIN

    def _round_robin_advancing(self, st: _Stratum, ctx: RequestContext) -> Picked:
        return self._round_robin_at(st, ctx, self._advance_rr())

    def _wrr_target(self, c: int, wheel: int) -> int:
        return c % wheel

    def _weighted_round_robin_at(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        if not st.total_q > 0:
            return self._round_robin_at(st, ctx, c)
        k = st.scale()
        target = self._wrr_target(c, st.total_q * k // 4)
        # first endpoint whose cumulative units exceed target: cum_q * k / 4 >= target + 1
        return st.eps[bisect_left(st.prefix(), (target + 1) * 4 // k)], SelectionReason.WEIGHTED

    def _least_connections(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        return min(st.eps, key=_CONNECTIONS), SelectionReason.LEAST_CONNECTIONS

    def _weighted_least_connections(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        # scores are finite and >= +0.0, so float order is total_cmp order
        return min(st.eps, key=_wlc_score), SelectionReason.LEAST_CONNECTIONS

    def _random(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        return st.eps[self._rng.randrange(len(st.eps))], SelectionReason.RANDOM

    def _draw_unit(self) -> float:
        return self._rng.random()

    def _weighted_random(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        total = st.total_q / 4
        if total <= 0:
            return self._random(st, ctx, c)
        target = self._draw_unit() * total
        # exact: quarter units are ints, and scaling a float by 4 is exact
        i = bisect_left(st.prefix(), 4 * target)
        return (st.eps[i] if i < len(st.eps) else st.eps[0]), SelectionReason.WEIGHTED

    def _consistent_hash(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        key = ctx.hash_key()
        if key is None:
            return self._round_robin_advancing(st, ctx)
        ep = self._ring_walk(self._key_hash(key), st)
        if ep is None:
            return self._round_robin_advancing(st, ctx)
        return ep, SelectionReason.CONSISTENT_HASH

    def _least_latency(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        return st.min_latency(), SelectionReason.LEAST_LATENCY

    def _least_load(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        return st.min_load(), SelectionReason.LEAST_LOAD

    def _power_of_two(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        eps = st.eps
        if len(eps) < 2:
            return self._round_robin_advancing(st, ctx)
        i = self._rng.randrange(len(eps))
        j = self._rng.randrange(len(eps))
        if j == i:
            j = (j + 1) % len(eps)
        best = eps[i] if eps[i].connections <= eps[j].connections else eps[j]
        return best, SelectionReason.POWER_OF_TWO

    def _adaptive(self, st: _Stratum, ctx: RequestContext, c: int) -> Picked:
        if st.mean_load() > 0.7:
            return self._least_connections(st, ctx, c)
        if ctx.session_id is not None or ctx.routing_key is not None:
            return self._consistent_hash(st, ctx, c)
        return self._weighted_round_robin_at(st, ctx, self._advance_rr())

    # ---- the ring ----------------------------------------------------------------------------

    def _ring_insert(self, ep: _EP) -> None:
        ep.vnodes = tuple(zip(self._vnode_hashes(ep.node_id), repeat(ep.node_id), count()))
        # the ring is one sorted run: timsort sorts the 150 new entries and merges the two
        # runs in C (a linear merge, no Python-level scan)
        self._ring = tuple(sorted((*self._ring, *ep.vnodes)))

    def _ring_delete(self, ep: _EP) -> None:
        ring, kept, prev = self._ring, [], 0
        for entry in sorted(ep.vnodes):
            i = bisect_left(ring, entry, prev)
            if i < len(ring) and ring[i] == entry:
                kept += ring[prev:i]
                prev = i + 1
        kept += ring[prev:]
        self._ring = tuple(kept)

    def _ring_on_readd(self, old: _EP, new: _EP) -> None:
        """A re-added id keeps its ring entries: the ring is a function of the member ids alone
        (and of the `_vnode_hashes` hook of the id), so only the entry list moves over."""
        new.vnodes = old.vnodes

    def _ring_walk(self, h: int, st: _Stratum) -> Optional[_EP]:
        ring, ids = self._ring, st.ids
        n = len(ring)
        start = bisect_left(ring, (h,))
        for k in range(n):
            node_id = ring[(start + k) % n][1]
            if node_id in ids:
                return self._eps[node_id]
        return None

    def _ring_entries(self) -> tuple[RingEntry, ...]:
        return tuple(self._ring)  # (the ring itself, unless a subclass made it a list)

    # ---- observation ----------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        return [ep.endpoint for ep in self._eps.values()]

    def stats(self) -> LoadBalancerStats:
        eps = list(self._eps.values())
        scores = sequential_sum(ep.load_score for ep in eps)
        return LoadBalancerStats(
            total_endpoints=len(eps),
            healthy_endpoints=sum(ep.endpoint.health is HealthStatus.HEALTHY for ep in eps),
            total_connections=sum(ep.connections for ep in eps),
            total_selections=self._total_selections,
            failed_selections=self._failed_selections,
            avg_load_score=scores / len(eps) if eps else 0.0,
        )

    def abstract(self) -> tuple:
        return (
            self._config,
            self._rr_counter,
            self._total_selections,
            self._failed_selections,
            tuple(ep.abstract() for ep in self._eps.values()),
        )

    # ---- self-check --------------------------------------------------------------------------

    def check_invariants(self) -> None:
        now = self._clock()
        self._check_endpoint_caches()
        self._check_snapshot(now)
        self._check_strata()
        self._check_ring()
        self._check_counters()

    def _check_endpoint_caches(self) -> None:
        seqs = [ep.seq for ep in self._eps.values()]
        assert seqs == sorted(set(seqs)), f"insertion sequence numbers not increasing: {seqs}"
        assert all(s < self._next_seq for s in seqs), "sequence number from the future"
        for node_id, ep in self._eps.items():
            assert ep.node_id == node_id == ep.endpoint.node_id, "endpoint keyed under the wrong id"
            caches = _endpoint_caches(ep)
            if ep.verified is not None and all(map(is_, ep.verified, caches)):
                continue  # these very objects were checked against this very endpoint value
            self._check_one_endpoint(ep)
            ep.verified = caches

    def _check_one_endpoint(self, ep: _EP) -> None:
        e, node_id = ep.endpoint, ep.node_id
        assert ep.weight == e.weight, f"cached weight stale for {node_id.hex()}"
        assert ep.traffic == e.is_available(), f"cached traffic flag stale for {node_id.hex()}"
        assert ep.q == e.effective_weight_quarters(), f"cached weight stale for {node_id.hex()}"
        assert ep.wlc_div == self._wlc_divisor(ep), f"cached WLC divisor stale {node_id.hex()}"
        score = e.metrics.load_score()
        assert total_order_key(ep.load_score) == total_order_key(score), "load score stale"
        assert ep.load_key == total_order_key(score), "load-score key stale"
        assert ep.latency_key == total_order_key(e.metrics.avg_response_time_ms), \
            "latency key stale"
        assert ep.tagset == frozenset(e.tags), "tag set stale"
        assert ep.keys == _stratum_keys(e), f"stratum keys stale for {node_id.hex()}"

    def _check_snapshot(self, now: int) -> None:
        pending, stale_at = self._pending, self._stale_at
        for ep in self._eps.values():
            truth = self._is_available(ep, now)
            if ep.listed and not truth:
                raise AssertionError(f"snapshot lists unavailable endpoint {ep.node_id.hex()}")
            if truth and not ep.listed:
                catch_up = ep.node_id in pending and stale_at <= now
                assert catch_up, f"snapshot misses available endpoint {ep.node_id.hex()}"
            if ep.listed:
                assert ep.listed_q == ep.q, f"snapshot weight stale for {ep.node_id.hex()}"
            release = self._release_time(ep, now)
            if release is not None and release > now:
                assert pending.get(ep.node_id) is ep, \
                    f"time-blocked endpoint {ep.node_id.hex()} not tracked for release"
                assert stale_at <= release, "stale-at later than a pending release"
        for node_id, ep in pending.items():
            assert self._eps.get(node_id) is ep, f"pending holds a removed endpoint {node_id.hex()}"

    def _check_strata(self) -> None:
        """Every stratum against the listed endpoints of its key, rebuilt in one pass."""
        expected: dict[tuple[object, object], list[_EP]] = {key: [] for key in self._strata}
        for ep in self._eps.values():
            for key in ep.keys:
                members = expected.get(key)
                if members is None:
                    members = expected[key] = []
                if ep.listed:
                    members.append(ep)
        for key, members in expected.items():
            st = self._strata.get(key, _EMPTY)
            if len(st.eps) != len(members) or not all(map(is_, st.eps, members)):
                assert [e.node_id for e in st.eps] == [e.node_id for e in members], \
                    f"stratum {key} != listed endpoints in insertion order"
                raise AssertionError(f"stratum {key} holds stale objects")
            if not members:  # (most keys, most of the time: no fresh build needed)
                assert not st.ids and st.total_q == st.n_not_whole == st.n_odd == 0, \
                    f"stratum {key} is empty but its id set or totals are not"
                assert not st._prefix and st._mean_load is st._min_latency is st._min_load is None, \
                    f"stratum {key} is empty but holds cached aggregates"
                continue
            fresh = _Stratum(members)
            assert st.ids == fresh.ids, f"stratum {key} id set stale"
            assert (st.total_q, st.n_not_whole, st.n_odd) == \
                (fresh.total_q, fresh.n_not_whole, fresh.n_odd), \
                f"stratum {key} cached total weight != sum ({st.total_q} vs {fresh.total_q})"
            self._check_stratum_caches(key, st, fresh)

    def _check_stratum_caches(self, key: object, st: _Stratum, fresh: _Stratum) -> None:
        if st._prefix is not None:
            assert st._prefix == fresh.prefix(), f"stratum {key} prefix sums stale"
        if st._mean_load is not None:
            assert total_order_key(st._mean_load) == total_order_key(fresh.mean_load()), \
                f"stratum {key} mean load stale"
        if st._min_latency is not None:
            assert st._min_latency is fresh.min_latency(), f"stratum {key} min latency stale"
        if st._min_load is not None:
            assert st._min_load is fresh.min_load(), f"stratum {key} min load stale"

    def _check_ring(self) -> None:
        """The ring and every vnode list against a fresh build from the membership.

        The fresh build is a pure function of the member ids and the `_vnode_hashes` hook,
        so it is memoized per (class, membership); the comparison is entry by entry, except
        for the very tuple (immutable) found equal to this membership's build before."""
        ring, members = self._ring, frozenset(self._eps)
        expected, fresh = _fresh_ring(self, members)
        checked = self._ring_checked
        if not (type(ring) is tuple and checked is not None and checked[0] is ring
                and checked[1] == members):
            if tuple(ring) != fresh:  # (equal to the sorted, duplicate-free build: strictly sorted)
                assert all(ring[i] < ring[i + 1] for i in range(len(ring) - 1)), \
                    "ring not strictly sorted (or has duplicate entries)"
                raise AssertionError(f"ring ({len(ring)} entries) != fresh build ({len(fresh)} entries)")
            self._ring_checked = (ring, members) if type(ring) is tuple else None
        for ep in self._eps.values():
            vnodes = ep.vnodes
            if type(vnodes) is tuple and vnodes is ep.vnodes_checked:
                continue  # (an _EP's id never changes, so neither does its expected vnode list)
            want = expected[ep.node_id]
            assert tuple(vnodes) == want or sorted(vnodes) == sorted(want), \
                f"vnode list stale for {ep.node_id.hex()}"
            ep.vnodes_checked = vnodes if type(vnodes) is tuple else None

    def _check_counters(self) -> None:
        for ep in self._eps.values():
            assert 0 <= ep.connections <= min(self._cap, U32_MAX), \
                f"connections {ep.connections} outside [0, cap] for {ep.node_id.hex()}"
            assert ep.probe == (ep.probe_at is not None), "probe flag and claim time disagree"
            assert not ep.probe or ep.opened_at is not None, "probe claimed on a closed circuit"
        assert 0 <= self._failed_selections <= self._total_selections, \
            f"failed selections {self._failed_selections} > total {self._total_selections}"


def _endpoint_caches(ep: _EP) -> tuple:
    """The endpoint value and every cache derived from it alone (checked by identity)."""
    return (ep.endpoint, ep.weight, ep.traffic, ep.q, ep.wlc_div, ep.load_score, ep.load_key,
            ep.latency_key, ep.tagset, ep.keys)


_RING_MEMO: dict[tuple[type, frozenset], tuple[dict[bytes, tuple[RingEntry, ...]],
                                               tuple[RingEntry, ...]]] = {}
_RING_MEMO_LIMIT = 128


def _fresh_ring(lb: LoadBalancer, members: frozenset) -> tuple[dict[bytes, tuple[RingEntry, ...]],
                                                               tuple[RingEntry, ...]]:
    """Every member's vnode list and the sorted ring they make, built from scratch (memoized)."""
    memo_key = (type(lb), members)
    found = _RING_MEMO.get(memo_key)
    if found is None:
        if len(_RING_MEMO) >= _RING_MEMO_LIMIT:
            _RING_MEMO.clear()
        expected = {node_id: tuple((h, node_id, i) for i, h in enumerate(lb._vnode_hashes(node_id)))
                    for node_id in members}
        fresh = tuple(sorted(entry for entries in expected.values() for entry in entries))
        found = _RING_MEMO[memo_key] = (expected, fresh)
    return found
