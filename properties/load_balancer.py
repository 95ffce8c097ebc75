"""Properties of the load balancer: the subject harness, invariants, lockstep machine, exploration.

The harness (`LoadBalancerSubject`) wraps one balancer (model or impl) with its own
FakeClock and `random.Random` (same seed on both sides, so Random, WeightedRandom and
PowerOfTwo draw the same numbers) and keeps the ghost state the invariants need: the
connections each endpoint should hold (reservations minus matched completions), every
half-open admission per (endpoint, recovery cycle), what each consistent-hash key was
served by under which membership and availability, where a few probe keys sat on the
ring before and after each membership change, and the violations found inside a rule
(admissibility, zones, the rr counter, failed selections, one full wheel of weighted
round robin).  The oracle for "admissible" is written here from `abstract()` alone:
enabled, receives traffic, under the cap, every required tag, circuit closed or half-open
with no live probe (the window is max(recovery, 1 ms), fix (e)).

Order: the real endpoint map (DashMap) has no specified iteration order.  The model walks
endpoints in insertion order (a re-added id keeps its place); every invariant here is
stated without reference to any order except where the spec itself is an order (round
robin, first-on-ties), and there the model's insertion order is what the impl must copy.

What the machine reaches: all eleven strategies (drawn in `init`, switched by `restart`,
which builds a new balancer over the same endpoints, and tried by `shadow`, a fresh
balancer of another strategy serving a few overlapping requests over the current
endpoints), connection caps of 1, 2, 3 and 10,000, recovery windows of 0 (clamped), 1 ms,
10 ms and 30 s, zone_aware and zone_fallback on and off, an rr counter started at 0, just
below 2^53 or just below 2^64 (the documented `_rr_counter` hook), and a ring built from
the real FNV-1a or from hashes reduced mod 1024 (the `_key_hash` / `_vnode_hashes` hooks)
so that ring collisions are certain.  Endpoints (ids from a pool of six) with weights 0,
1, 2, 3, 100 and u32::MAX, every health (so effective weights of x1, x0.5, x0.25 and 0),
zones, tags, disabled ones; metrics with NaN (either sign) and infinities; re-adds of
present ids; removals, updates and completions of absent ids; selects with every kind of
context (routing key, session, request id only, none, client zone with and without a
match, one or several required tags); completions that succeed, fail (`outage`: five in a
row, then the recovery window passes) or match nothing; requests whose callers never
complete (abandoned connections and probes, as `route_event` does), overlapping
requests, traffic that flows until it reaches a recovering endpoint, time steps around
the recovery window; selects where a concurrent actor (the `_interleave` hook) beats the
first attempts, by reserving the chosen endpoint's free slots or probe (`_try_reserve`)
or by re-adding it, the only single-threaded way into the four-attempt retry loop (#39,
failed-selection counting, the probe release of a failed reservation); and one full wheel
of (weighted) round robin with completions, whose shares must be exact.

Harness notes.  The SUT is a subclass of the class under test (`harness_class`) whose
`_vnode_hashes` hook is memoized (a pure function of the id; it keeps the model's ring
lookup, fresh balancers and the impl's self-check affordable) and, for the weak ring,
reduced mod 1024; the benchmark uses the classes as they are.  A chain of selects with
nothing in between (bulk and overlapping requests) judges each against the rows of the
state the previous one left, read once.  Metrics values never mix
NaNs of both signs, or a NaN with both infinities: `load_score` sums the fields, and the
sign of NaN + NaN depends on the operand order CPython's (specializing) interpreter uses,
so the first few calls and later ones can disagree and a total_cmp ordering by such a
load score is nondeterministic (the impl caches the score, the model recomputes it).

Snapshots.  The explorer deep-copies or pickles a (model, impl) subject pair between
steps: a harness class is pickled by its name (`_harness:<ring>:<base class path>`, rebuilt
on demand by the module's `__getattr__`), the race hook is a `functools.partial` of a bound
method installed only for the duration of one select, and the impl's ANY stratum key is a
singleton under copy and pickle.  `EXPLORATION` (at the end) documents its view.
"""
from __future__ import annotations

import functools
import itertools
import math
import random
import bisect
from bisect import bisect_left, bisect_right
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, NamedTuple, Optional

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from meshspec.clock import NS_PER_MS, NS_PER_SEC, FakeClock
from meshspec.explore import Bound, Exploration
from meshspec.lockstep import (BenchCase, Component, Subject, always, ghost_flag, impl_path, load_impl,
                               sometimes)
from meshspec.machine import LockstepMachine
from meshspec.strategies import U64, around
from model import load_balancer as M

MS = NS_PER_MS
SEC = NS_PER_SEC
U32_MAX = M.U32_MAX
U64_MAX = M.U64_MAX
POOL = tuple(bytes([i]) + bytes(31) for i in range(1, 7))
HEALTH = {h.value: h for h in M.HealthStatus}
STRATEGY_NAMES = tuple(s.value for s in M.Strategy)
PROBE_KEYS = ("k1", "k2", "k3", "", "s1", "s2", "r1", "r2", "user-42", "tenant/7")
WEAK_MODULUS = 1024
NEG_NAN = math.copysign(math.nan, -1.0)
NO_EXTRA_ADVANCE = frozenset(M.Strategy) - {M.Strategy.CONSISTENT_HASH, M.Strategy.POWER_OF_TWO,
                                             M.Strategy.ADAPTIVE}
WHEEL_LIMIT = 128
RING_STRATEGIES = (M.Strategy.CONSISTENT_HASH, M.Strategy.ADAPTIVE)
BAD_METRICS = M.LoadMetrics(cpu_usage=1.0, memory_usage=1.0, avg_response_time_ms=5000.0, error_rate=1.0)
MEMBERSHIP_RULES = frozenset({"init", "add_endpoint", "remove_endpoint", "restart"})
RACERS = 3
TRAFFIC_LIMIT = 12


NO_CONTEXT = M.RequestContext()  # (a frozen value: one for every context-free request)


def _num(x: Any) -> float:
    """A metric argument: a float, or "-nan" (a JSON trace cannot keep a NaN's sign)."""
    return NEG_NAN if x == "-nan" else float(x)


def _metrics(values: Any) -> M.LoadMetrics:
    cpu, mem, active, latency, errors = values
    return M.LoadMetrics(cpu_usage=_num(cpu), memory_usage=_num(mem), active_connections=active,
                         avg_response_time_ms=_num(latency), error_rate=_num(errors))


# -- the harness class: memoized vnode hashes, optionally weak (ring collisions certain) ----

_HASHES: dict[tuple[type, bytes, Optional[int]], tuple[int, ...]] = {}
_HARNESS_CLASSES: dict[tuple[type, bool], type] = {}
HARNESS_PREFIX = "_harness:"


def _harness_name(cls: type, weak: bool) -> str:
    """The module attribute a harness class is pickled by: its ring and its base class's path."""
    return f"{HARNESS_PREFIX}{'weak' if weak else 'memo'}:{impl_path(cls).replace('.', '/')}"


def __getattr__(name: str) -> type:
    """Harness classes by their pickled name (PEP 562), so any process can unpickle a subject."""
    if not name.startswith(HARNESS_PREFIX):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    ring, path = name[len(HARNESS_PREFIX):].split(":", 1)
    return harness_class(load_impl(path.replace("/", ".")), ring == "weak")


def harness_class(cls: type, weak: bool) -> type:
    """`cls` with its `_vnode_hashes` hook memoized and, when `weak`, both hashes reduced mod 1024.

    The vnode hashes of an id are a pure function of it; memoizing them (on both sides) keeps
    the model's per-select ring build and the impl's self-check affordable under fuzzing
    without changing a single answer.  The benchmark uses the classes as they are.
    """
    key = (cls, weak)
    if key not in _HARNESS_CLASSES:
        modulus = WEAK_MODULUS if weak else None

        def _vnode_hashes(self: Any, node_id: bytes) -> list[int]:
            memo = (cls, node_id, modulus)
            if memo not in _HASHES:
                hashes = super(harness, self)._vnode_hashes(node_id)
                _HASHES[memo] = tuple(h if modulus is None else h % modulus for h in hashes)
            return list(_HASHES[memo])

        body: dict[str, Any] = {"_vnode_hashes": _vnode_hashes, "__module__": __name__}
        if weak:
            def _key_hash(self: Any, key: str) -> int:
                return super(harness, self)._key_hash(key) % WEAK_MODULUS
            body["_key_hash"] = _key_hash
        harness = type(f"{'WeakRing' if weak else 'Memo'}{cls.__name__}", (cls,), body)
        harness.__qualname__ = _harness_name(cls, weak)  # pickled by reference (explorer snapshots)
        _HARNESS_CLASSES[key] = harness
    return _HARNESS_CLASSES[key]


@lru_cache(maxsize=64)
def _vnodes(node: bytes, modulus: Optional[int]) -> tuple[tuple[int, bytes, int], ...]:
    hashes = M.vnode_hashes(node)
    return tuple((h if modulus is None else h % modulus, node, i) for i, h in enumerate(hashes))


@lru_cache(maxsize=256)
def _expected_ring(members: frozenset, modulus: Optional[int]) -> tuple:
    return tuple(sorted(e for node in members for e in _vnodes(node, modulus)))


@lru_cache(maxsize=256)
def _ring_points(members: frozenset, modulus: Optional[int]) -> list[int]:
    """The sorted vnode hashes of `_expected_ring` (callers must not modify the list)."""
    return [e[0] for e in _expected_ring(members, modulus)]


# -- the oracle, over abstract() -------------------------------------------------------------

class Row(NamedTuple):
    """One endpoint of `abstract()`, by name."""

    node: bytes
    weight: int
    health: M.HealthStatus
    metrics: tuple
    tags: tuple
    enabled: bool
    zone: Optional[str]
    conns: int
    consec: int
    opened_at: Optional[int]
    probe: bool
    probe_at: Optional[int]

    @property
    def quarters(self) -> int:
        return self.weight * self.health.weight_quarters() if self.enabled else 0


_new_row = tuple.__new__  # (Row(...) through its Python-level __new__ is the slow part)


def rows_of(abstract: tuple) -> list[Row]:
    return [_new_row(Row, (e[0], e[1], e[2], e[3], e[4], e[6], e[7], conns, consec, opened_at, probe,
                           probe_at))
            for e, conns, _total, _failed, consec, opened_at, probe, probe_at in abstract[4]]


def admits(r: Row, now: int, recovery: int, cap: int) -> bool:
    """Enabled, receives traffic, under the cap, circuit closed or half-open with no live probe."""
    if not (r.enabled and r.health.can_receive_traffic()) or r.conns >= cap:
        return False
    if r.opened_at is None:
        return True
    if now - r.opened_at < recovery:
        return False
    return not r.probe or (r.probe_at is not None and now - r.probe_at >= recovery)


def why_not(r: Row, ctx: M.RequestContext, now: int, recovery: int, cap: int) -> str:
    missing = [t for t in ctx.required_tags if t not in r.tags]
    return (f"enabled={r.enabled} health={r.health.value} connections={r.conns}/{cap} "
            f"opened_at={r.opened_at} probe={r.probe}@{r.probe_at} now={now} "
            f"recovery={recovery} missing tags={missing}")


def spec_candidates(rows: list[Row], ctx: M.RequestContext, cfg: M.LoadBalancerConfig,
                    now: int, recovery: int) -> list[Row]:
    """The available list of §2.1 (empty where the filter raises NoEndpointsAvailable)."""
    tags, cap = ctx.required_tags, cfg.max_connections_per_endpoint
    ok = [r for r in rows if admits(r, now, recovery, cap) and (not tags or all(t in r.tags for t in tags))]
    if cfg.zone_aware and ctx.client_zone is not None:
        same = [r for r in ok if r.zone == ctx.client_zone]
        if same or not cfg.zone_fallback:
            return same
    return ok


def _what(ctx: M.RequestContext, node: Optional[bytes]) -> str:
    """A select in a violation message: `failed select(ctx)` or `select(ctx) -> 0N`."""
    return f"failed select({ctx})" if node is None else f"select({ctx}) -> {node[:1].hex()}"


def first_clockwise(ring: tuple, h: int, allowed: set) -> Optional[bytes]:
    """The node of the first ring entry at or after hash h (wrapping) whose node is allowed."""
    n = len(ring)
    start = bisect_left(ring, (h,))
    for k in range(n):
        node = ring[(start + k) % n][1]
        if node in allowed:
            return node
    return None


def extra_advances(strategy: M.Strategy, reason: M.SelectionReason) -> int:
    """The documented second rr advance of the ConsistentHash / PowerOfTwo / Adaptive fallbacks."""
    if strategy in (M.Strategy.CONSISTENT_HASH, M.Strategy.POWER_OF_TWO):
        return int(reason is M.SelectionReason.ROUND_ROBIN)
    if strategy is M.Strategy.ADAPTIVE:
        return int(reason in (M.SelectionReason.WEIGHTED, M.SelectionReason.ROUND_ROBIN))
    return 0


# -- the subject -------------------------------------------------------------------------------

class LoadBalancerSubject(Subject):
    """One balancer plus ghost state; one method per machine rule."""

    def init(self, strategy: str, cap: int, zone_aware: bool, zone_fallback: bool,
             recovery_ns: int, rr_start: int, weak: bool, endpoints: list) -> None:
        self.config = M.LoadBalancerConfig(
            strategy=M.Strategy(strategy), circuit_recovery_time_ns=recovery_ns,
            max_connections_per_endpoint=cap, zone_aware=zone_aware, zone_fallback=zone_fallback)
        self.modulus = WEAK_MODULUS if weak else None
        self.sut = harness_class(self.cls, weak)(self.config, clock=self.clock, rng=self.rng)
        self.sut._rr_counter = rr_start  # the documented hook, on both sides
        self.recovery = max(recovery_ns, M.MIN_RECOVERY_NS)  # the spec's window, fix (e)
        self.violations: dict[str, str] = {}
        self.seen: set[str] = set()
        for spec in endpoints:  # the initial membership (key moves are checked from here on)
            self.sut.add_endpoint(self._endpoint(*spec))
        self._reset_ghost()

    def _reset_ghost(self) -> None:
        self.key_map = self._key_map()
        self.outstanding: dict[bytes, int] = {}
        self.admissions: dict[tuple[bytes, int], list[int]] = {}
        self.ch_memo: dict[tuple, bytes] = {}
        self.after: Optional[tuple] = None
        self.after_rows: Optional[list[Row]] = None

    def restart(self, strategy: str) -> list:
        """The operator switches strategy: a new balancer, otherwise configured alike, is built
        and given the current endpoints (as they are now) in their order."""
        endpoints = self.sut.endpoints()
        self.config = attrs.evolve(self.config, strategy=M.Strategy(strategy))
        self.sut = harness_class(self.cls, self.modulus is not None)(self.config, clock=self.clock,
                                                                     rng=self.rng)
        for endpoint in endpoints:
            self.sut.add_endpoint(endpoint)
        self._reset_ghost()
        return endpoints

    def observations(self) -> dict[str, Any]:
        """stats() is derived (sums, the healthy count, the average load): a cache could drift.

        endpoints() and abstract() need no observation: the engine compares abstract() after
        every step, and endpoints() is its first column.
        """
        return {"stats": self.sut.stats()}

    # -- ghost helpers -----------------------------------------------------------------------
    def _rows(self) -> list[Row]:
        return rows_of(self.sut.abstract())

    def _row(self, node: bytes) -> Optional[Row]:
        return next((r for r in self._rows() if r.node == node), None)

    def _violate(self, invariant: str, message: str) -> None:
        self.violations.setdefault(invariant, message)

    def _membership_changed(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """Probe-key owners before (remembered) and after (recomputed) a membership change."""
        before, self.key_map = self.key_map, self._key_map()
        return before, self.key_map

    def _key_map(self) -> dict[str, bytes]:
        """Where each probe key sits on the whole ring (availability ignored)."""
        ring = self.sut._ring_entries()
        if not ring:
            return {}
        return {k: ring[bisect_left(ring, (self.sut._key_hash(k),)) % len(ring)][1] for k in PROBE_KEYS}

    def _admit(self, node: bytes, opened_at: int, now: int, who: str) -> None:
        """A reservation of an endpoint whose circuit is open: a half-open probe."""
        times = self.admissions.setdefault((node, opened_at), [])
        live = [t for t in times if now - t < self.recovery]
        if live:
            self._violate("one_half_open_probe_per_recovery_cycle",
                          f"{who} admitted {node[:1].hex()} at {now} as a second probe of the cycle "
                          f"opened at {opened_at} (earlier probe at {live[0]}, window {self.recovery})")
        times.append(now)
        self.seen.add("probe_admitted")

    def _forget(self, node: bytes) -> None:
        self.outstanding[node] = 0
        for key in [k for k in self.admissions if k[0] == node]:
            del self.admissions[key]

    # -- membership ----------------------------------------------------------------------------
    @staticmethod
    def _endpoint(idx: int, weight: int, health: str, tags: list, enabled: bool,
                  zone: Optional[str], metrics: Any) -> M.Endpoint:
        return M.Endpoint(POOL[idx], weight=weight, health=HEALTH[health], tags=tags,
                          enabled=enabled, zone=zone, metrics=_metrics(metrics))

    def add_endpoint(self, idx: int, weight: int, health: str, tags: list, enabled: bool,
                     zone: Optional[str], metrics: Any) -> None:
        node = POOL[idx]
        endpoint = self._endpoint(idx, weight, health, tags, enabled, zone, metrics)
        readd = any(e.node_id == node for e in self.sut.endpoints())
        out = self.sut.add_endpoint(endpoint)
        self._forget(node)
        before, after = self._membership_changed()
        if readd:
            self.seen.add("readd")
            moved = {k: (before[k], after[k]) for k in after if before.get(k) != after[k]}
        else:
            moved = {k: (before.get(k), after[k]) for k in after
                     if after[k] not in (before.get(k), node)}
            if before and any(after[k] == node for k in after):
                self.seen.add("key_moved_to_added_endpoint")
        if moved:
            self._violate("consistent_hash_stable", f"{'re-' if readd else ''}adding {node[:1].hex()} "
                          f"moved probe keys elsewhere: {moved}")
        return out

    def remove_endpoint(self, idx: int) -> bool:
        node = POOL[idx]
        out = self.sut.remove_endpoint(node)
        self._forget(node)
        if not out:
            return out
        before, after = self._membership_changed()
        moved = {k: (before[k], after.get(k)) for k in before
                 if before[k] != node and after.get(k) != before[k]}
        if moved:
            self._violate("consistent_hash_stable",
                          f"removing {node[:1].hex()} moved keys it did not own: {moved}")
        return out

    def update_health(self, idx: int, health: str) -> None:
        return self.sut.update_health(POOL[idx], HEALTH[health])

    def update_metrics(self, idx: int, metrics: Any) -> None:
        return self.sut.update_metrics(POOL[idx], _metrics(metrics))

    # -- completions -----------------------------------------------------------------------------
    def _complete(self, node: bytes, success: bool, times: int = 1, read_back: bool = False,
                  before: Optional[Row] = None) -> Optional[Row]:
        """`times` completions in a row for `node`; with `read_back`, its row afterwards.

        `before` is the node's current row when the caller has it (right after its select)."""
        before = before or self._row(node)
        for _ in range(times):
            self.sut.record_completion(node, success)
        if before is None:
            return None
        self.outstanding[node] = max(0, self.outstanding.get(node, 0) - times)
        if before.conns < times:
            self.seen.add("unmatched_completion")
        if times == 1 and not read_back:  # the witnesses follow from the row before (§2.1)
            if before.probe and success:
                self.seen.add("probe_closed_circuit")
            if before.opened_at is None and not success \
                    and before.consec + 1 >= M.CIRCUIT_FAILURE_THRESHOLD:
                self.seen.add("circuit_opened")
            return None
        after = self._row(node)
        if before.probe and after is not None and after.opened_at is None:
            self.seen.add("probe_closed_circuit")
        if before.opened_at is None and after is not None and after.opened_at is not None:
            self.seen.add("circuit_opened")
        return after

    def record_completion(self, idx: int, success: bool, times: int = 1) -> Optional[int]:
        """`times` completions in a row (five failures open a circuit); returns the open time."""
        row = self._complete(POOL[idx], success, times, read_back=True)
        return None if row is None else row.opened_at

    def outage(self, idx: int) -> Optional[int]:
        """An endpoint fails five requests in a row, then its recovery window passes (half-open)."""
        opened = self.record_completion(idx, False, M.CIRCUIT_FAILURE_THRESHOLD)
        if opened is not None:
            self.clock.advance(max(opened + self.recovery - self.clock(), 0))
        return opened

    def drain_requests(self) -> int:
        """A quiet moment: every request in flight completes successfully (probes close circuits)."""
        done = 0
        for r in self._rows():
            if r.conns:
                self._complete(r.node, True, r.conns)
                done += r.conns
        return done

    # -- select ----------------------------------------------------------------------------------
    def _racer(self, steals: int, race: str) -> tuple[Callable[[Any, int], None], list[int]]:
        """The `_interleave` hook as what a concurrent actor does between choice and reservation.

        "reserve": concurrent callers take the chosen endpoint's free slots (up to three) or
        its half-open probe, and never complete; "readd": a config push re-adds the chosen
        endpoint (same value, fresh counters), so the chosen object vanished from the map.
        """
        calls = [0]
        # a partial of a bound method, not a closure: a copied or unpickled SUT calls its own subject
        return functools.partial(self._race, steals, race, calls), calls

    def _race(self, steals: int, race: str, calls: list[int], chosen: Any, now: int) -> None:
        """One call of the `_interleave` hook (see `_racer`); `calls` counts them."""
        calls[0] += 1
        if calls[0] > steals:
            return
        node = chosen.endpoint.node_id
        if race == "readd":
            self.sut.add_endpoint(next(e for e in self.sut.endpoints() if e.node_id == node))
            self._forget(node)
            return
        for _ in range(RACERS):
            row = self._row(node)
            if not self.sut._try_reserve(chosen, now):
                break
            self.outstanding[node] = self.outstanding.get(node, 0) + 1
            if row is not None and row.opened_at is not None:
                self._admit(node, row.opened_at, now, "a concurrent caller")

    def _select(self, ctx: M.RequestContext, steals: int = 0, race: str = "reserve",
                before: Optional[tuple] = None) -> M.Selection:
        """One select with every check around it.  `before` may pass `self.after` (the state the
        previous select left) when nothing touched the balancer since; `self.after` (and, after
        a selection, its rows `self.after_rows`) is set here."""
        now, cfg = self.clock(), self.config
        self.selected_row = None
        if before is None:
            before = self.sut.abstract()
            rows = rows_of(before)
        else:
            rows = self.after_rows if before is self.after and self.after_rows is not None \
                else rows_of(before)
        self.after = self.after_rows = None
        calls = [0]
        self._note_edges(ctx, before, steals)
        if steals:
            self.sut._interleave, calls = self._racer(steals, race)
        try:
            sel = self.sut.select(ctx)
        except M.NoEndpointsAvailable:
            self._after_failure(ctx, before, rows, spec_candidates(rows, ctx, cfg, now, self.recovery),
                                steals, calls[0], now)
            raise
        finally:
            if steals:
                del self.sut._interleave
        self._after_selection(sel, ctx, before, rows, steals, calls[0], now)
        return sel

    def _note_edges(self, ctx: M.RequestContext, before: tuple, steals: int) -> None:
        """Ghost: where a ring-routed key hashes relative to the ring as it stands, and whether a
        retried select runs while the u64 counter is about to wrap."""
        if steals and before[1] >= 2**64 - 16:
            self.seen.add("retry_while_counter_wrapping")
        if ctx.routing_key is None or self.config.strategy not in RING_STRATEGIES:
            return
        points = _ring_points(frozenset(e[0][0] for e in before[4]), self.modulus)
        if not points:
            return
        where = ring_position(self.sut._key_hash(ctx.routing_key), points)
        self.seen.add(f"key_{where}")

    def _check_counters(self, before: tuple, after: tuple, extra: Optional[int], failed: int,
                        ctx: M.RequestContext, node: Optional[bytes]) -> None:
        delta = (after[1] - before[1]) % 2**64
        if extra is not None and delta != 1 + extra:
            self._violate("rr_counter_advances_once_per_select",
                          f"{_what(ctx, node)}: rr counter advanced by {delta}, expected {1 + extra}")
        if (after[3] - before[3]) % 2**64 != failed:
            self._violate("selection_fails_only_when_nothing_is_admissible",
                          f"{_what(ctx, node)}: failed_selections went {before[3]} -> {after[3]}, "
                          f"expected +{failed}")

    def _after_failure(self, ctx: M.RequestContext, before: tuple, rows: list[Row],
                       cands: list[Row], steals: int, calls: int, now: int) -> None:
        cfg = self.config
        if not steals and cands:
            self._violate("selection_fails_only_when_nothing_is_admissible",
                          f"select({ctx}) raised NoEndpointsAvailable although "
                          f"{[c.node[:1].hex() for c in cands]} were admissible")
        if cfg.zone_aware and ctx.client_zone is not None and not cfg.zone_fallback:
            anywhere = spec_candidates(rows, ctx, M.LoadBalancerConfig(zone_aware=False), now, self.recovery)
            if anywhere and not cands:
                self.seen.add("zone_refused_without_fallback")
        strategy = cfg.strategy
        extra = 0 if not steals or strategy in NO_EXTRA_ADVANCE else None
        self.after = self.sut.abstract()
        self._check_counters(before, self.after, extra,
                             int(steals > 0 and calls >= M.MAX_RESERVATION_RETRIES), ctx, None)
        if steals and calls >= M.MAX_RESERVATION_RETRIES:
            self.seen.add("failed_selection_counted")

    def _after_selection(self, sel: M.Selection, ctx: M.RequestContext, before: tuple,
                         rows: list[Row], steals: int, calls: int, now: int) -> None:
        """The checks of a select that chose: the candidates (the admissible list before it)
        are computed only for the checks and witnesses that read them."""
        cfg, cap = self.config, self.config.max_connections_per_endpoint
        node = sel.node_id
        row = next((r for r in rows if r.node == node), None)
        if row is None:
            self._violate("selection_is_admissible", f"select chose {node[:1].hex()}, not a member")
            return
        if not admits(row, now, self.recovery, cap) or any(t not in row.tags for t in ctx.required_tags):
            self._violate("selection_is_admissible", f"select({ctx}) chose {node[:1].hex()}: "
                          + why_not(row, ctx, now, self.recovery, cap))
        after = self.after = self.sut.abstract()
        post_rows = self.after_rows = rows_of(after)
        self._check_zone(row, ctx, now, post_rows)
        self.outstanding[node] = self.outstanding.get(node, 0) + 1
        # (a racing re-add may have replaced the pre-select state)
        post = self.selected_row = next((r for r in post_rows if r.node == node), None)
        if post is not None and post.conns == cap:
            self.seen.add("connection_cap_reached")
        if post is not None and post.opened_at is not None:  # a reservation never moves opened_at
            if row.probe and row.opened_at == post.opened_at:
                self.seen.add("abandoned_probe_reclaimed")
            self._admit(node, post.opened_at, now, "select")
        extra = extra_advances(cfg.strategy, sel.reason)
        self._check_counters(before, after,
                             extra if not steals or cfg.strategy in NO_EXTRA_ADVANCE else None,
                             0, ctx, node)
        if steals and calls > 1:
            self.seen.add("retry_won_after_lost_reservation")
        cands = functools.partial(spec_candidates, rows, ctx, cfg, now, self.recovery)
        if sel.reason is M.SelectionReason.CONSISTENT_HASH and not steals:
            self._check_ring_choice(sel, ctx, rows, cands())
        self._note_strategy(sel, cands, before)

    def _check_zone(self, row: Row, ctx: M.RequestContext, now: int, post_rows: list[Row]) -> None:
        cfg = self.config
        if not (cfg.zone_aware and ctx.client_zone is not None) or row.zone == ctx.client_zone:
            return
        if not cfg.zone_fallback:
            self._violate("zone_affinity_respected", f"zone_fallback is off but a client in "
                          f"{ctx.client_zone} was sent to {row.node[:1].hex()} in zone {row.zone}")
            return
        same = [r for r in spec_candidates(post_rows, ctx, cfg, now, self.recovery)
                if r.zone == ctx.client_zone]
        if same:
            self._violate("zone_affinity_respected", f"a client in {ctx.client_zone} was sent to "
                          f"{row.node[:1].hex()} in zone {row.zone} while "
                          f"{[r.node[:1].hex() for r in same]} in its zone were admissible")
        self.seen.add("zone_fallback_crossed")

    def _check_clockwise(self, lb: Any, sel: M.Selection, ctx: M.RequestContext,
                         rows: list[Row], cands: list[Row]) -> None:
        key = ctx.hash_key()
        # the spec's ring: a function of the membership (ring_has_150_... holds lb's to it)
        ring = _expected_ring(frozenset(r.node for r in rows), self.modulus)
        h = lb._key_hash(key)
        expected = first_clockwise(ring, h, {c.node for c in cands})
        if expected != sel.node_id:
            self._violate("consistent_hash_picks_first_available_clockwise",
                          f"key {key!r} (hash {h}) went to {sel.node_id[:1].hex()}, the first "
                          f"admissible endpoint clockwise is {expected and expected[:1].hex()}")
        if first_clockwise(ring, h, {r.node for r in rows}) != sel.node_id:
            self.seen.add("consistent_hash_walked_past_owner")

    def _check_ring_choice(self, sel: M.Selection, ctx: M.RequestContext, rows: list[Row],
                           cands: list[Row]) -> None:
        self._check_clockwise(self.sut, sel, ctx, rows, cands)
        key = ctx.hash_key()
        sig = (key, frozenset(r.node for r in rows), tuple(c.node for c in cands))
        if len(self.ch_memo) > 512:
            self.ch_memo.clear()
        old = self.ch_memo.setdefault(sig, sel.node_id)
        if old != sel.node_id:
            self._violate("consistent_hash_stable", f"key {key!r} moved from {old[:1].hex()} to "
                          f"{sel.node_id[:1].hex()} with the same membership and availability")

    def _note_strategy(self, sel: M.Selection, candidates: Callable[[], list[Row]], before: tuple) -> None:
        """The strategy witnesses (each computed only while not yet seen; `candidates()` is
        the admissible list before the select)."""
        s, seen = self.config.strategy, self.seen
        if "nan_metric_among_candidates" not in seen \
                and s in (M.Strategy.LEAST_LATENCY, M.Strategy.LEAST_LOAD) and len(cands := candidates()) > 1 and (
                s is M.Strategy.LEAST_LATENCY and any(math.isnan(c.metrics[4]) for c in cands)
                or s is M.Strategy.LEAST_LOAD
                and any(math.isnan(M.LoadMetrics(*c.metrics).load_score()) for c in cands)):
            seen.add("nan_metric_among_candidates")
        if sel.reason is M.SelectionReason.WEIGHTED \
                and s in (M.Strategy.WEIGHTED_ROUND_ROBIN, M.Strategy.ADAPTIVE):
            if before[1] >= 2**53:
                seen.add("weighted_rr_counter_past_2_53")
            if "fractional_weighted_rr" not in seen and len(cands := candidates()) > 1 \
                    and M.wheel_scale([c.quarters for c in cands]) > 1:
                seen.add("fractional_weighted_rr")

    @staticmethod
    def _context(request_id: Optional[str], session_id: Optional[str], client_zone: Optional[str],
                 tags: list, routing_key: Optional[str]) -> M.RequestContext:
        return M.RequestContext(request_id=request_id, session_id=session_id,
                                client_zone=client_zone, required_tags=tags, routing_key=routing_key)

    def select(self, request_id: Optional[str], session_id: Optional[str],
               client_zone: Optional[str], tags: list, routing_key: Optional[str],
               steals: int = 0, race: str = "reserve") -> M.Selection:
        """A select; with `steals` > 0 a concurrent actor (`race`) beats the first `steals` attempts."""
        ctx = self._context(request_id, session_id, client_zone, tags, routing_key)
        return self._select(ctx, steals, race)

    def request(self, request_id: Optional[str], session_id: Optional[str],
                client_zone: Optional[str], tags: list, routing_key: Optional[str],
                success: Optional[bool]) -> tuple:
        """One request as a caller makes it: select, then record_completion(chosen, success);
        success None is a caller that never completes (route_event never releases its slot)."""
        ctx = self._context(request_id, session_id, client_zone, tags, routing_key)
        try:
            sel = self._select(ctx)
        except M.LoadBalancerError as exc:
            return (type(exc).__name__,)
        if success is not None:
            self._complete(sel.node_id, success, before=self.selected_row)
        return (sel,)

    def overlapping_requests(self, count: int, success: bool) -> tuple:
        """`count` requests in flight at once (no context), then all complete with `success`."""
        picks: list[Any] = []
        self.after = None
        for _ in range(count):  # (back to back: each select starts from the state the last left)
            try:
                picks.append(self._select(NO_CONTEXT, before=self.after).node_id)
            except M.LoadBalancerError as exc:
                picks.append(type(exc).__name__)
        for node in picks:
            if isinstance(node, bytes):
                self._complete(node, success)
        return tuple(picks)

    def reseat_counter(self, value: int) -> int:
        """The round-robin counter is re-seated (the `_rr_counter` hook, both sides) at any time:
        near the u64 wrap or 2^53, so every path (retries, probes, wheels) can run while it wraps."""
        self.sut._rr_counter = value
        return value

    def bulk_reserve(self, count: int) -> tuple:
        """`count` selects (no context) whose callers all hold their connection: hundreds of
        outstanding reservations, where least-connections scores tie and caps are reached."""
        picks = Counter[Any]()
        self.after = None
        for _ in range(count):  # (back to back: each select starts from the state the last left)
            try:
                picks[self._select(NO_CONTEXT, before=self.after).node_id] += 1
            except M.LoadBalancerError as exc:
                picks[type(exc).__name__] += 1
        if sum(r.conns for r in self._rows()) >= 200:
            self.seen.add("hundreds_outstanding")
        return tuple(sorted(picks.items(), key=repr))

    def traffic_until(self, idx: int, wait: bool = False) -> tuple:
        """Requests flow (each completed successfully) until one is routed to endpoint `idx`,
        whose caller then vanishes without completing (at most 12 requests).  With `wait`, time
        first passes until idx's open circuit turns half-open or its probe is abandoned."""
        node, picks = POOL[idx], []
        row = self._row(node)
        if wait and row is not None:
            now = self.clock()
            due = [t + self.recovery - now for t in (row.opened_at, row.probe_at)
                   if t is not None and t + self.recovery > now]
            self.clock.advance(max(due, default=0))
        for _ in range(TRAFFIC_LIMIT):
            try:
                sel = self._select(NO_CONTEXT)
            except M.LoadBalancerError as exc:
                picks.append(type(exc).__name__)
                break
            picks.append(sel.node_id)
            if sel.node_id == node:
                break
            self._complete(sel.node_id, True, before=self.selected_row)
        return tuple(picks)

    def shadow(self, strategy: str, request_id: Optional[str], session_id: Optional[str],
               client_zone: Optional[str], tags: list, routing_key: Optional[str],
               count: int, counter: Optional[int] = None) -> tuple:
        """What another strategy would answer over the current endpoints: a fresh balancer
        (same config otherwise, rr counter at `counter` or where this one's is) serves `count`
        overlapping requests; then the last endpoint chosen reports bad metrics and one more
        request follows, then every endpoint chosen reports them (a mean load of 0.8 when they
        are all the candidates: Adaptive turns to least connections) and one more follows.
        Each answer is the chosen endpoint and the reason; the answer includes the fresh
        balancer's self-check verdict."""
        ctx = self._context(request_id, session_id, client_zone, tags, routing_key)
        lb = self._fresh(M.Strategy(strategy), counter)
        if strategy in ("weighted_round_robin", "adaptive") and lb._rr_counter >= 2**53:
            self.seen.add("weighted_rr_counter_past_2_53")
        ring_based = M.Strategy(strategy) in RING_STRATEGIES
        picks = [self._shadow_select(lb, ctx, ring_based) for _ in range(count)]
        chosen = [p[0] for p in picks if isinstance(p, tuple)]
        if chosen:
            lb.update_metrics(chosen[-1], BAD_METRICS)
            picks.append(self._shadow_select(lb, ctx, ring_based))
            for node in dict.fromkeys(chosen):
                lb.update_metrics(node, BAD_METRICS)
            picks.append(self._shadow_select(lb, ctx, ring_based))
        return (tuple(picks), _self_check(lb))

    def _shadow_select(self, lb: Any, ctx: M.RequestContext, ring_based: bool) -> Any:
        """One select on a fresh balancer, (node, reason); a consistent-hash answer is checked
        against the ring."""
        rows = rows_of(lb.abstract()) if ring_based else []
        try:
            sel = lb.select(ctx)
        except M.LoadBalancerError as exc:
            return type(exc).__name__
        if ring_based and sel.reason is M.SelectionReason.CONSISTENT_HASH:
            cands = spec_candidates(rows, ctx, self.config, self.clock(), self.recovery)
            self._check_clockwise(lb, sel, ctx, rows, cands)
        return sel.node_id, sel.reason.value

    def _fresh(self, strategy: M.Strategy, counter: Optional[int] = None) -> Any:
        """A fresh balancer like this one but for `strategy`, rr counter at `counter` (default:
        where this one's is), given the current endpoints (as they are now, in order)."""
        lb = harness_class(self.cls, self.modulus is not None)(
            attrs.evolve(self.config, strategy=strategy), clock=self.clock, rng=self.rng)
        lb._rr_counter = self.sut._rr_counter if counter is None else counter
        for endpoint in self.sut.endpoints():
            lb.add_endpoint(endpoint)
        return lb

    def full_wheel(self) -> tuple:
        """(Weighted) round robin serves one full wheel of requests (each completed); the
        shares must be exact.  Under another strategy the wheel runs on a fresh weighted-RR
        balancer over the current endpoints."""
        s = self.config.strategy
        main = s in (M.Strategy.ROUND_ROBIN, M.Strategy.WEIGHTED_ROUND_ROBIN)
        lb = self.sut if main else self._fresh(M.Strategy.WEIGHTED_ROUND_ROBIN)
        s = s if main else M.Strategy.WEIGHTED_ROUND_ROBIN
        abstract = lb.abstract()
        cands = spec_candidates(rows_of(abstract), NO_CONTEXT, self.config, self.clock(),
                                self.recovery)
        if not cands:  # (a half-open candidate is probed and closed again: the list stays put)
            return ("skipped", "nothing available")
        quarters = [c.quarters for c in cands]
        scale = M.wheel_scale(quarters)
        if s is M.Strategy.ROUND_ROBIN or sum(quarters) <= 0:
            units = {c.node: 1 for c in cands}
        else:
            units = {c.node: q * scale // 4 for c, q in zip(cands, quarters) if q}
        wheel = sum(units.values())
        if wheel > WHEEL_LIMIT:
            return ("skipped", wheel)
        if abstract[1] + wheel > 2**64:  # the u64 counter wraps mid-wheel
            return ("skipped", "wrap")
        picks = []
        for _ in range(wheel):
            if main:
                node = self._select(NO_CONTEXT).node_id
                self._complete(node, True, before=self.selected_row)
            else:
                node = lb.select(NO_CONTEXT).node_id
                lb.record_completion(node, True)
            picks.append(node)
        got = dict(Counter(picks))
        if got != units:
            self._violate("weighted_round_robin_wheel_is_exact",
                          f"{s.value} over one wheel of {wheel}: served "
                          f"{ {n[:1].hex(): c for n, c in got.items()} }, effective weights give "
                          f"{ {n[:1].hex(): c for n, c in units.items()} }")
        if len(units) > 1 and s is M.Strategy.WEIGHTED_ROUND_ROBIN:
            self.seen.add("weighted_wheel_checked")
            if abstract[1] >= 2**53:
                self.seen.add("weighted_rr_counter_past_2_53")
        return tuple(picks) + ((_self_check(lb),) if not main else ())

    def advance_time(self, ns: int) -> int:
        return self.clock.advance(ns)


def _self_check(lb: Any) -> str:
    check = getattr(lb, "check_invariants", None)
    try:
        if callable(check):
            check()
    except AssertionError as exc:
        return f"check_invariants failed: {exc}"
    return "ok"


# -- invariants ------------------------------------------------------------------------------

def _clean(s: LoadBalancerSubject, name: str) -> None:
    message = s.violations.get(name)
    assert message is None, message


def selection_is_admissible(s: LoadBalancerSubject) -> None:
    """A selection was enabled, took traffic, had every required tag, was under the cap, its circuit admitted it."""
    _clean(s, "selection_is_admissible")


def zone_affinity_respected(s: LoadBalancerSubject) -> None:
    """A same-zone endpoint is chosen whenever one is admissible; nothing cross-zone without zone_fallback."""
    _clean(s, "zone_affinity_respected")


def selection_fails_only_when_nothing_is_admissible(s: LoadBalancerSubject) -> None:
    """select raises only when nothing is admissible; failed_selections counts only four lost reservations."""
    _clean(s, "selection_fails_only_when_nothing_is_admissible")


def one_half_open_probe_per_recovery_cycle(s: LoadBalancerSubject) -> None:
    """At most one half-open probe per endpoint per recovery cycle (a new one only after the old is abandoned)."""
    _clean(s, "one_half_open_probe_per_recovery_cycle")


def rr_counter_advances_once_per_select(s: LoadBalancerSubject) -> None:
    """The rr counter advances once per select, plus one for the documented CH/P2/Adaptive fallbacks."""
    _clean(s, "rr_counter_advances_once_per_select")


def connections_within_cap(s: LoadBalancerSubject) -> None:
    """0 <= connections <= the cap for every endpoint, equal to reservations minus matched completions."""
    cap, outstanding = s.config.max_connections_per_endpoint, s.outstanding
    for e, conns, *_ in s.sut.abstract()[4]:
        node = e[0]
        assert 0 <= conns <= cap, f"{node[:1].hex()} holds {conns} connections (cap {cap})"
        want = outstanding.get(node, 0)
        assert conns == want, (f"{node[:1].hex()} holds {conns} connections but {want} "
                               f"reservations are outstanding")


def ring_has_150_distinct_entries_per_endpoint(s: LoadBalancerSubject) -> None:
    """The ring is exactly every endpoint's 150 vnodes (hash, id, index): sorted, distinct, 150 each."""
    if s.side == "model" and s.last is not None and s.last[0] not in MEMBERSHIP_RULES:
        return  # the model rebuilds its ring from the membership on every call: nothing can drift
    ring = s.sut._ring_entries()
    members = frozenset(e.node_id for e in s.sut.endpoints())
    verified = s.__dict__.get("ring_verified")
    if verified is not None and verified[0] is ring and verified[1] == members:
        return  # this very tuple (immutable) was found equal to this membership's ring
    ring = tuple(ring)
    expected = _expected_ring(members, s.modulus)
    if ring == expected:
        s.ring_verified = (ring, members)
        return
    counts = Counter(e[1] for e in ring)
    wrong = {n[:1].hex(): counts.get(n, 0) for n in members if counts.get(n, 0) != M.VIRTUAL_NODES}
    strangers = {n[:1].hex() for n in counts if n not in members}
    dupes = len(ring) - len(set(ring))
    raise AssertionError(f"ring of {len(ring)} entries != the {len(expected)} vnodes of the members: "
                         f"per-endpoint counts off {wrong}, non-members {strangers}, "
                         f"{dupes} duplicates, sorted={list(ring) == sorted(ring)}")


def consistent_hash_picks_first_available_clockwise(s: LoadBalancerSubject) -> None:
    """A consistent-hash selection is the first admissible endpoint clockwise from the key's hash."""
    _clean(s, "consistent_hash_picks_first_available_clockwise")


def consistent_hash_stable(s: LoadBalancerSubject) -> None:
    """A key keeps its endpoint while nothing changes; add/remove move only keys to/from that endpoint."""
    _clean(s, "consistent_hash_stable")


def weighted_round_robin_wheel_is_exact(s: LoadBalancerSubject) -> None:
    """Over one full wheel, (weighted) round robin serves each endpoint exactly its effective-weight share."""
    _clean(s, "weighted_round_robin_wheel_is_exact")


def ring_position(h: int, points: list[int]) -> str:
    """Where hash `h` lies relative to sorted ring points: before_first, at_point, between, after_last."""
    if h < points[0]:
        return "before_first_vnode"
    if h > points[-1]:
        return "after_last_vnode"
    i = bisect.bisect_left(points, h)
    return "at_vnode" if points[i] == h else "between_vnodes"


def _seen(name: str, doc: str) -> Callable[[LoadBalancerSubject], bool]:
    return ghost_flag("seen", name, doc)


INVARIANTS = (
    always(selection_is_admissible), always(zone_affinity_respected),
    always(selection_fails_only_when_nothing_is_admissible),
    always(one_half_open_probe_per_recovery_cycle), always(rr_counter_advances_once_per_select),
    always(connections_within_cap), always(ring_has_150_distinct_entries_per_endpoint),
    always(consistent_hash_picks_first_available_clockwise), always(consistent_hash_stable),
    always(weighted_round_robin_wheel_is_exact),
    sometimes(_seen("circuit_opened", "Five failing completions opened a circuit.")),
    sometimes(_seen("connection_cap_reached", "A reservation brought an endpoint to max_connections_per_endpoint.")),
    sometimes(_seen("probe_admitted", "A select admitted an endpoint as its half-open probe.")),
    sometimes(_seen("abandoned_probe_reclaimed", "A probe abandoned for a recovery window was reclaimed (fix a).")),
    sometimes(_seen("probe_closed_circuit", "A successful probe completion closed a circuit.")),
    sometimes(_seen("zone_fallback_crossed", "A client was served from another zone (zone_fallback on).")),
    sometimes(_seen("zone_refused_without_fallback",
                    "select raised because only other zones were admissible and zone_fallback is off.")),
    sometimes(_seen("retry_won_after_lost_reservation", "A select won on a later attempt after losing a reservation.")),
    sometimes(_seen("failed_selection_counted", "Four lost reservations counted a failed selection.")),
    sometimes(_seen("key_moved_to_added_endpoint", "Adding an endpoint took over some probe key.")),
    sometimes(_seen("consistent_hash_walked_past_owner",
                    "A consistent-hash key skipped its unavailable owner along the ring.")),
    sometimes(_seen("weighted_wheel_checked", "A full weighted-RR wheel over several endpoints was checked.")),
    sometimes(_seen("fractional_weighted_rr", "Weighted round robin chose among fractional effective weights (fix d).")),
    sometimes(_seen("unmatched_completion", "A completion arrived for an endpoint holding no connection.")),
    sometimes(_seen("nan_metric_among_candidates", "LeastLatency / LeastLoad chose among candidates with a NaN metric.")),
    sometimes(_seen("weighted_rr_counter_past_2_53", "Weighted round robin ran with the counter past 2^53.")),
    sometimes(_seen("readd", "An existing endpoint id was re-added.")),
    sometimes(_seen("key_before_first_vnode", "A ring-routed key hashed below the ring's first vnode.")),
    sometimes(_seen("key_at_vnode", "A ring-routed key hashed exactly onto a vnode.")),
    sometimes(_seen("key_between_vnodes", "A ring-routed key hashed between two vnodes.")),
    sometimes(_seen("key_after_last_vnode", "A ring-routed key hashed above the ring's last vnode.")),
    sometimes(_seen("retry_while_counter_wrapping",
                    "A select retried after a stolen reservation with the rr counter within 16 of 2^64.")),
    sometimes(_seen("hundreds_outstanding", "Bulk reservations held 200 or more connections at once.")),
)


# -- the machine -------------------------------------------------------------------------------

WEIGHTS = [1, 1, 1, 2, 3, 0, 0, 100, U32_MAX]
HEALTHS = ["healthy", "healthy", "healthy", "degraded", "degraded", "unhealthy", "unknown"]
TAG_SETS = [[], [], ["a"], ["b"], ["c"], ["a", "b"], ["c", "a"], ["b", "c"], ["a", "b", "c"]]
ENABLED = [True, True, True, True, False]
ZONES = [None, "z1", "z1", "z2"]
# Every value an endpoint can be added with, but its id and metrics (weighted by repetition).
BODIES = list(itertools.product(WEIGHTS, HEALTHS, TAG_SETS, ENABLED, ZONES))


def _metrics_values() -> list[tuple]:
    """Metrics values: all zero first, then a fixed sample with one kind of non-finite value
    each.  load_score sums the fields, and when two NaN operands of different signs (or a NaN
    and the NaN that inf + -inf makes) meet, the sign of the result depends on the operand
    order the interpreter happens to use (CPython's specialized float add differs from the
    generic one), so total_cmp ordering by such a load score would be nondeterministic."""
    g = random.Random(0x1B)
    finite = [0.0, 0.1, 0.5, 0.9, 1.0, 2000.0]
    out = [(0.0, 0.0, 0, 0.0, 0.0)] * 40
    for extra in ([], [math.nan], ["-nan"], [math.inf, -math.inf]):
        for _ in range(60):
            v = [g.choice(finite + extra * 3) for _ in range(4)]
            out.append((v[0], v[1], g.choice([0, 100, 20000]), v[2], v[3]))
    return out


METRICS = _metrics_values()
CONTEXTS = list(itertools.product(
    [None, "r1", "r2"], [None, None, "s1", "s2"], [None, None, "z1", "z2", "z3"],
    [[], [], [], ["a"], ["b"], ["a", "b"], ["c", "a"]], [None, None, "k1", "k2", "k3", ""]))
# the strategies with the most logic (and the most mutants) of their own are drawn more often
INTRICATE = ("weighted_round_robin", "weighted_round_robin", "consistent_hash", "adaptive",
             "power_of_two", "least_latency", "least_load", "weighted_least_connections",
             "weighted_least_connections")
STRATEGY_CHOICES = STRATEGY_NAMES + INTRICATE
COUNTER_CHOICES = (None, None, 2**53 - 1, 2**53 + 1, 2**64 - 2)  # None: the balancer's own

# A rule draws ALL its choices as its ONE argument: a tuple of indices (`indices(sizes)`),
# mapped to values by plain code in the rule, also where the values depend on the state.
# An `st.data()` draw costs more than its choices (a span, a label, a check that the strategy
# left the global random alone), each draw costs shrinking time, and Hypothesis' explain
# phase replays a failing trace up to 500 times per tuple element or keyword argument;
# drawn field by field, shrinking was the bulk of the mutant tier's time.  An index into a list known
# only at draw time (present ids, a pool of them) is drawn in range(SPREAD) and reduced
# modulo the list's length: uniform for any list of up to six items (60 = lcm(1..6)).

SPREAD = 60
ALL_IDS = list(range(len(POOL)))
COUNTER_VALUES = around([2**64 - 1, 2**64 - 4, 2**53], st.integers(2**64 - 8, 2**64 - 1),
                        lo=U64[0], hi=U64[1], share=50)


class _Indices(st.SearchStrategy):
    """A tuple of independent indices, the k-th uniform in range(sizes[k]) (shrinking to 0),
    drawn as integers inside one span: a rule draws all its choices as one argument."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.sizes = sizes

    def do_draw(self, data: Any) -> tuple[int, ...]:
        return tuple([data.draw_integer(0, n - 1) if n > 1 else 0 for n in self.sizes])

    def __repr__(self) -> str:
        return f"indices{self.sizes}"


@lru_cache(maxsize=None)
def indices(sizes: tuple[int, ...]) -> _Indices:
    """The strategy of a rule's one argument: `len(sizes)` indices (built once per `sizes`)."""
    return _Indices(sizes)


def nth(values: Any, i: int) -> Any:
    """values[i mod len]: the item an index drawn in range(SPREAD) stands for."""
    return values[i % len(values)]


#: bulk_reserve: a percentage (under 30: the neighbourhood of the cap, when it lies within
#: 1..300), which neighbour, which of the other counts.
BULK = (100, SPREAD, 3)


def bulk_count(cap: int, share: int, near: int, other: int) -> int:
    """How many reservations `bulk_reserve` makes: cap-1, cap or cap+1 (within 1..300) for 30% of
    the draws, else 30, 80 or 210 (the draws `around([cap], ..., lo=1, hi=300)` makes)."""
    around_cap = [n for n in (cap - 1, cap, cap + 1) if 1 <= n <= 300]
    return nth(around_cap, near) if share < 30 and around_cap else (30, 80, 210)[other]

#: Candidate routing keys, sorted by their full 64-bit hash, and one key per weak-ring residue:
#: the machine finds keys at a chosen place on the current ring by lookup (FNV-1a has no
#: inverse to draw a key for a hash).
#: FNV-1a of similar strings clusters, so the pool also holds keys found (by a one-off search
#: over millions of candidates) within 2^40 of either end of the hash space: below the first
#: and above the last vnode of any ring this machine builds.
EDGE_KEYS = ("low22049", "low22048", "user-9574", "user-9575",
             "edge-80747", "edge-80746", "edge-80745", "edge-80744")
KEY_POOL = sorted((M.key_hash(k), k) for k in [f"rk{i}" for i in range(8192)] + list(EDGE_KEYS))
POOL_HASHES = [h for h, _ in KEY_POOL]
POOL_HASH_SET = frozenset(POOL_HASHES)
KEY_BY_RESIDUE: dict[int, str] = {}
for _h, _k in reversed(KEY_POOL):
    KEY_BY_RESIDUE[_h % WEAK_MODULUS] = _k
RING_PLACES = ("before_first_vnode", "at_vnode", "between_vnodes", "after_last_vnode")


def ring_key(place: str, points: list[int], modulus: Optional[int], pick: int) -> Optional[str]:
    """A key that hashes at `place` relative to the sorted ring `points` (None if the pool has
    none there; `at_vnode` needs the weak ring's 1024 residues).  `pick` chooses among several."""
    if modulus is not None:
        if place == "at_vnode":
            targets = points
        elif place == "before_first_vnode":
            targets = list(range(0, points[0]))
        elif place == "after_last_vnode":
            targets = list(range(points[-1] + 1, modulus))
        else:
            gaps = [(a, b) for a, b in zip(points, points[1:]) if b - a > 1]
            targets = [a + 1 + pick % (b - a - 1) for a, b in gaps]
        keys = [KEY_BY_RESIDUE[t] for t in targets if t in KEY_BY_RESIDUE]
    else:
        lo, hi = bisect.bisect_left(POOL_HASHES, points[0]), bisect.bisect_right(POOL_HASHES, points[-1])
        first, last = {"before_first_vnode": (0, lo), "after_last_vnode": (hi, len(KEY_POOL)),
                       "between_vnodes": (lo, hi)}.get(place, (0, 0))
        on_points = {p for p in points if p in POOL_HASH_SET}  # (pool keys that hash onto a vnode)
        if not on_points:  # (almost always: 64-bit hashes) every key of the span qualifies
            return KEY_POOL[first + pick % (last - first)][1] if last > first else None
        keys = [k for h, k in KEY_POOL[first:last] if h not in on_points]
    return keys[pick % len(keys)] if keys else None


#: The sizes of an endpoint's body (everything but its id) and of its metrics, as drawn.
BODY = (len(BODIES), len(METRICS))
#: A ring-routed context (`_ring_context`): the context, whether its routing key is placed
#: relative to the ring (40 in 100), the place, and which of the keys there.
RING_CONTEXT = (len(CONTEXTS), 100, len(RING_PLACES), 64)


def body(b: int, m: int) -> tuple:
    """Everything of an endpoint but its id: weight, health, tags, enabled, zone, metrics."""
    return (*BODIES[b], METRICS[m])


CAPS = (1, 2, 3, 10_000, 10_000)
ZONE_AWARE = (True, True, False)
RECOVERIES = (0, 0, MS, 10 * MS, 30 * SEC)
RR_STARTS = (0, 0, 2**53 - 2, 2**64 - 3)
WEAK = (True, True, False)
#: init: strategy, cap, zone_aware, zone_fallback, recovery, rr start, weak ring, how many
#: endpoints (3 to 6), a permutation of the ids (Fisher-Yates: one index per position), and
#: six bodies (the first `count` are used).
INIT = (len(STRATEGY_CHOICES), len(CAPS), len(ZONE_AWARE), 2, len(RECOVERIES), len(RR_STARTS),
        len(WEAK), len(POOL) - 2, *range(len(POOL), 1, -1), *BODY * len(POOL))
STEALS = (0, 0, 0, 1, 2, 4, 4)
RACES = ("reserve", "reserve", "readd")
SUCCESS = (True, False, None)
TIMES = (1, 1, 5)
SHADOW_COUNTS = (4, 6)
OVERLAPS = (2, 3, 5, 8)
OVERLAP_SUCCESS = (True, True, False)
#: `_idx`: which pool (present ids three times in four, else any id), which id of it.
IDX = (4, SPREAD)


def permutation(indices: tuple[int, ...], n: int) -> list[int]:
    """range(n) shuffled by Fisher-Yates, position k swapped with k + indices[k]."""
    order = list(range(n))
    for k, j in enumerate(indices):
        order[k], order[k + j] = order[k + j], order[k]
    return order


class LoadBalancerMachine(LockstepMachine):
    """Model and impl balancer in lockstep; every rule is one `self.step`."""

    @initialize(ix=indices(INIT))
    def init(self, ix: tuple[int, ...]) -> None:
        s, c, za, zf, rec, rr, weak, count, *rest = ix
        n = len(POOL)
        ids = permutation(tuple(rest[:n - 1]), n)
        bodies = rest[n - 1:]
        endpoints = [(idx, *body(bodies[2 * k], bodies[2 * k + 1]))
                     for k, idx in enumerate(ids[:count + 3])]
        recovery_ns = RECOVERIES[rec]
        self.recovery = max(recovery_ns, MS)
        self.step("init", STRATEGY_CHOICES[s], CAPS[c], ZONE_AWARE[za], bool(zf), recovery_ns,
                  RR_STARTS[rr], WEAK[weak], endpoints)

    def _present(self) -> list[int]:
        return [POOL.index(e.node_id) for e in self.ls.model.sut.endpoints()]

    def _pool_idx(self, a: int, r: int) -> int:
        """`_idx`'s choice from its two indices (see IDX): mostly a present endpoint (the
        interesting case), sometimes any id of the pool."""
        present = self._present()
        return nth(nth([present, present, present, ALL_IDS] if present else [ALL_IDS], a), r)

    @rule(ix=indices((*IDX, *BODY)))
    def add_endpoint(self, ix: tuple[int, ...]) -> None:
        a, r, b, m = ix
        present = self._present()
        absent = [i for i in range(len(POOL)) if i not in present]
        pools = [absent, absent, absent, present] if absent and present else [absent or present]
        self.step("add_endpoint", nth(nth(pools, a), r), *body(b, m))

    @rule(ix=indices((*BODY * len(POOL), *RING_CONTEXT)))
    def zero_weight_select(self, ix: tuple[int, ...]) -> None:
        """Every present endpoint re-added at weight 0 (other fields drawn), then one select:
        a stratum whose total weight is 0, where weighted random falls back to uniform."""
        present = self._present()
        *bodies, c, rel, place, which = ix
        for k, idx in enumerate(present):
            self.step("add_endpoint", idx, 0, *body(bodies[2 * k], bodies[2 * k + 1])[1:])
        self.step("select", *self._ring_context(c, rel, place, which), 0, "reserve")

    @rule(ix=indices(IDX))
    def remove_endpoint(self, ix: tuple[int, ...]) -> None:
        self.step("remove_endpoint", self._pool_idx(*ix))

    @rule(ix=indices((*IDX, 2 * len(HEALTHS))))
    def update_health(self, ix: tuple[int, ...]) -> None:
        """Half the draws swap Healthy and Degraded: the endpoint stays available and only its
        effective weight changes (what a cached total weight misses, #160)."""
        a, r, h = ix
        idx = self._pool_idx(a, r)
        row = self.ls.model._row(POOL[idx])
        swap = "healthy" if row is not None and row.health is M.HealthStatus.DEGRADED else "degraded"
        self.step("update_health", idx, swap if h < len(HEALTHS) else HEALTHS[h - len(HEALTHS)])

    @rule(ix=indices((*IDX, len(METRICS))))
    def update_metrics(self, ix: tuple[int, ...]) -> None:
        a, r, m = ix
        self.step("update_metrics", self._pool_idx(a, r), METRICS[m])

    @rule(ix=indices((*IDX, 2, len(TIMES))))
    def record_completion(self, ix: tuple[int, ...]) -> None:
        a, r, ok, t = ix
        self.step("record_completion", self._pool_idx(a, r), bool(ok), TIMES[t])

    @rule(ix=indices((3, SPREAD, 3, *IDX)))
    def traffic_until(self, ix: tuple[int, ...]) -> None:
        p, i, w, a, r = ix
        rows = self.ls.model._rows()
        down = [POOL.index(row.node) for row in rows if row.opened_at is not None]
        probing = [POOL.index(row.node) for row in rows if row.probe]  # (a probe whose caller vanished)
        pools = [pool for pool in (probing, probing, down) if pool]
        pool = nth(pools, p) if pools else None
        idx = nth(pool, i) if pool else self._pool_idx(a, r)
        waits = [True, True, False] if pool is probing else [True, False]
        self.step("traffic_until", idx, nth(waits, w))

    @rule(ix=indices((SPREAD, *IDX)))
    def outage(self, ix: tuple[int, ...]) -> None:
        i, a, r = ix
        up = [POOL.index(row.node) for row in self.ls.model._rows() if row.opened_at is None]
        self.step("outage", nth(up, i) if up else self._pool_idx(a, r))

    @rule()
    def drain_requests(self) -> None:
        self.step("drain_requests")

    def _ring_context(self, c: int, rel: int, place: int, which: int) -> tuple:
        """The context CONTEXTS[c], whose routing key, when rel < 40 (40% of the draws),
        hashes at a chosen place on the ring as it stands (before the first vnode, onto one,
        between two, after the last)."""
        ctx = CONTEXTS[c]
        if rel >= 40:
            return ctx
        subject = self.ls.model
        members = frozenset(e.node_id for e in subject.sut.endpoints())
        if not members:
            return ctx
        points = _ring_points(members, subject.modulus)
        key = ring_key(RING_PLACES[place], points, subject.modulus, which)
        return ctx if key is None else (*ctx[:4], key)

    @rule(value=COUNTER_VALUES)
    def reseat_counter(self, value: int) -> None:
        self.step("reseat_counter", value)

    @rule(ix=indices(BULK))
    def bulk_reserve(self, ix: tuple[int, ...]) -> None:
        self.step("bulk_reserve", bulk_count(self.ls.model.config.max_connections_per_endpoint, *ix))

    @rule(ix=indices((*RING_CONTEXT, len(STEALS), len(RACES))))
    def select(self, ix: tuple[int, ...]) -> None:
        *ctx, steals, race = ix
        self.step("select", *self._ring_context(*ctx), STEALS[steals], RACES[race])

    @rule(ix=indices((*RING_CONTEXT, len(SUCCESS))))
    def request(self, ix: tuple[int, ...]) -> None:
        *ctx, success = ix
        self.step("request", *self._ring_context(*ctx), SUCCESS[success])

    @rule(ix=indices((len(STRATEGY_CHOICES),)))
    def restart(self, ix: tuple[int, ...]) -> None:
        self.step("restart", STRATEGY_CHOICES[ix[0]])

    @rule(ix=indices((len(STRATEGY_CHOICES), len(CONTEXTS), len(SHADOW_COUNTS), len(COUNTER_CHOICES))))
    def shadow(self, ix: tuple[int, ...]) -> None:
        s, c, n, counter = ix
        self.step("shadow", STRATEGY_CHOICES[s], *CONTEXTS[c], SHADOW_COUNTS[n], COUNTER_CHOICES[counter])

    @rule(ix=indices((len(OVERLAPS), len(OVERLAP_SUCCESS))))
    def overlapping_requests(self, ix: tuple[int, ...]) -> None:
        n, ok = ix
        self.step("overlapping_requests", OVERLAPS[n], OVERLAP_SUCCESS[ok])

    @rule()
    def full_wheel(self) -> None:
        self.step("full_wheel")

    @rule(ix=indices((9,)))
    def advance_time(self, ix: tuple[int, ...]) -> None:
        r, due = self.recovery, self._next_release()
        self.step("advance_time", (due, due, 1, r // 2, r - 1, r, r + 1, 2 * r, 3600 * SEC)[ix[0]])

    def _next_release(self) -> int:
        """Time until the next circuit turns half-open or probe becomes abandoned (else 1)."""
        subject = self.ls.model
        now = subject.clock()
        due = [t + self.recovery - now for r in subject._rows() for t in (r.opened_at, r.probe_at)
               if t is not None and t + self.recovery > now]
        return min(due, default=1)


OPERATIONS = ("add_endpoint", "remove_endpoint", "update_health", "update_metrics", "select",
              "record_completion", "stats", "endpoints", "abstract")


# The curated mutants live in mutants/load_balancer.py; the registry reads them lazily.
from meshspec.registry import mutants_of  # noqa: E402
from impl.load_balancer import LoadBalancer as ImplLB  # noqa: E402


# -- the bounded exploration (meshspec explore) -----------------------------------------------
#
# State identity (the view, TLC's VIEW).  Absolute time is unbounded, but nothing can observe
# it beyond the breaker's timestamps relative to now: every circuit and probe test is
# `now - t >= recovery` (model, impl, oracle), so a timestamp is kept as how long ago it was,
# saturated at the recovery window (older is indistinguishable from exactly the window, and
# stays so as time only grows).  The ghost state adds nothing a future step can observe:
# `outstanding` equals the rows' connection counts in every state that passed
# connections_within_cap; `key_map` is a function of the membership and the ring;
# `violations` is empty in every state that passed the invariants; `seen` only feeds the
# witnesses (evaluated on every edge before deduplication); `ch_memo` repeats the clockwise
# oracle (a key's owner is a function of the ring, the key's hash and the candidates, all
# checked on every consistent-hash select); `selected_row` lives within one step.  Only the
# live half-open admissions of each endpoint's current cycle are kept (older cycles and
# admissions past the window are never consulted again).  The RNG state stays: the random
# strategies draw from it.

def _ago(t: Optional[int], now: int, window: int) -> Optional[int]:
    """How long ago `t` was, saturated at `window` (None stays None)."""
    return None if t is None else min(now - t, window)


def explore_view(s: LoadBalancerSubject) -> tuple:
    """The explorer's state identity: abstract state with times made relative, ring, RNG, probes."""
    now, window = s.clock(), s.recovery
    config, counter, total, failed, rows = s.sut.abstract()
    relative = tuple((e, conns, t, f, consec, _ago(opened, now, window), probe, _ago(probe_at, now, window))
                     for e, conns, t, f, consec, opened, probe, probe_at in rows)
    opened_at = {e[0]: opened for e, *_, opened, _probe, _at in rows}
    probes = tuple(sorted((node, tuple(sorted(now - t for t in times if now - t < window)))
                          for (node, opened), times in s.admissions.items()
                          if opened_at.get(node) == opened))
    # plain tuples, no canon(): the explorer fingerprints the repr (NaN prints as nan)
    return (config, counter, total, failed, relative, s.modulus, s.rng.getstate(), probes)


ZERO = (0.0, 0.0, 0, 0.0, 0.0)
NAN_METRICS = (math.nan, 0.5, 0, math.nan, 0.1)  # NaN latency and load score (one NaN sign)
SLOW = (0.9, 0.9, 100, 2000.0, 0.5)
RECOVERY = 10 * MS
EQUAL_HASH_KEY = "k14"  # its weak hash (79) equals a vnode hash of endpoint 01 in TRIO
TRIO = ((0, 1, "healthy", ["a"], True, "z1", ZERO), (1, 2, "degraded", ["a", "b"], True, "z2", ZERO),
        (2, 1, "healthy", [], True, "z1", ZERO))


def lb_init(strategy: str, cap: int = 2, zone_fallback: bool = True, recovery: int = RECOVERY,
            rr_start: int = 0, weak: bool = True, endpoints: tuple = TRIO) -> tuple:
    """The init arguments of one explored balancer (zone aware, 10 ms recovery, a weak ring)."""
    return (strategy, cap, True, zone_fallback, recovery, rr_start, weak, list(endpoints))


def plain(steals: int = 0, race: str = "reserve", key: Optional[str] = None) -> tuple:
    """A select with no context but the routing key, `steals` attempts lost to `race`."""
    return ("select", (None, None, None, [], key, steals, race))


ACTIONS = (
    ("add_endpoint", (4, 1, "healthy", [], True, "z2", ZERO)),          # a fresh id (takes ring keys)
    ("add_endpoint", (0, 3, "unknown", ["a"], True, "z1", ZERO)),       # re-add, other weight
    ("remove_endpoint", (1,)), ("remove_endpoint", (5,)),               # present, absent
    ("update_health", (0, "unhealthy")), ("update_health", (2, "degraded")),
    ("update_metrics", (1, NAN_METRICS)),
    plain(), plain(key="k1"), plain(steals=4), plain(steals=1, race="readd", key="k2"),
    ("select", (None, None, "z2", ["a"], None, 0, "reserve")),          # zone + tag filter
    ("select", (None, None, None, ["c"], None, 0, "reserve")),          # no endpoint has "c"
    ("request", ("r1", None, None, [], None, False)),                   # a failing request
    ("request", (None, "s1", "z1", [], None, None)),                    # a caller that vanishes
    ("record_completion", (0, False, 4)),                               # one below the threshold
    ("record_completion", (0, False, 5)),                               # exactly the threshold
    ("record_completion", (2, True, 1)),                                # unmatched: no connection
    ("outage", (1,)),                                                   # open, then to the window
    ("advance_time", (1,)), ("advance_time", (RECOVERY - 1,)), ("advance_time", (RECOVERY,)),
    ("traffic_until", (0, True)), ("drain_requests", ()), ("overlapping_requests", (3, True)),
    ("full_wheel", ()), ("restart", ("least_connections",)),
    ("shadow", ("power_of_two", None, None, None, [], None, 4, None)),
    ("reseat_counter", (2**64 - 1,)), ("bulk_reserve", (3,)),          # the wrap; more than the cap
)

EXPLORATION = Exploration(
    inits=(lb_init("weighted_round_robin"), lb_init("consistent_hash")),
    actions=ACTIONS,
    bounds={"small": Bound(2),
            "large": Bound(3, inits=(*(lb_init(s) for s in STRATEGY_NAMES),
                                     lb_init("round_robin", zone_fallback=False),
                                     lb_init("weighted_round_robin", rr_start=2**53))),
            # focused alphabets for the bugs the shared one reaches too late
            "metrics": Bound(2, inits=tuple(lb_init(s) for s in ("least_latency", "least_load",
                                                                  "weighted_least_connections")),
                             actions=(("update_metrics", (1, NAN_METRICS)), ("update_metrics", (0, SLOW)),
                                      ("update_health", (0, "degraded")), plain(),
                                      ("overlapping_requests", (4, True)))),  # 0.5 vs 1.0, one each
            "filters": Bound(1, inits=(lb_init("round_robin", zone_fallback=False),
                                       lb_init("consistent_hash")),
                             actions=(("select", (None, None, "z3", [], None, 0, "reserve")),
                                      ("select", (None, None, None, ["a", "b"], None, 0, "reserve")),
                                      plain(key=EQUAL_HASH_KEY))),
            "breaker": Bound(3, inits=(lb_init("round_robin"), lb_init("round_robin", recovery=0)),
                             actions=(("outage", (1,)), ("traffic_until", (1, True)), plain(),
                                      ("overlapping_requests", (3, True)))),
            "counter": Bound(2, inits=(lb_init("weighted_round_robin", rr_start=2**53 + 1),),
                             actions=(plain(), ("full_wheel", ())))},
    view=explore_view,
    mutant_bounds={
        **{m: "small" for m in (
            "ring_walk_in_map_order", "filter_scan_claims_probe", "non_strict_half_open",
            "completion_underflows", "counter_advanced_per_retry", "ring_collision_last_write_wins",
            "readd_leaks_vnodes", "readd_forgets_vnodes", "ring_collision_destructive_probe",
            "weighted_rr_ceil_total_wheel",
            "stale_snapshot_after_add", "stale_snapshot_after_readd", "stale_snapshot_after_remove",
            "stale_snapshot_after_health_change", "stale_total_weight_after_health_change",
            "stale_snapshot_after_circuit_change", "stale_snapshot_after_time_passing",
            "stale_snapshot_after_reservation", "stale_snapshot_after_connection_release")},
        **{m: "metrics" for m in ("least_latency_nan_panics", "least_load_nan_panics",
                                  "weighted_lc_weight_collapse", "stale_snapshot_after_metrics_change")},
        **{m: "filters" for m in ("zone_fallback_ignored", "required_tags_any_not_all",
                                  "ring_search_skips_equal_hash")},
        **{m: "breaker" for m in ("abandoned_probe_never_reclaimed", "recovery_zero_not_clamped",
                                  "probe_kept_after_success")},
        "weighted_rr_float_modulus": "counter",
    },
)


# -- benchmarks ------------------------------------------------------------------------------------

def _bench_node(i: int) -> bytes:
    return i.to_bytes(4, "little") + bytes(28)


def _bench_select(strategy: M.Strategy) -> Callable[[type, int], Callable[[], Any]]:
    def make(cls: type, size: int) -> Callable[[], Any]:
        config = M.LoadBalancerConfig(strategy=strategy)
        lb = cls(config, clock=FakeClock(0), rng=random.Random(1))
        healths = (M.HealthStatus.HEALTHY,) * 3 + (M.HealthStatus.DEGRADED,)
        for i in range(size):
            metrics = M.LoadMetrics(cpu_usage=(i % 10) / 20, avg_response_time_ms=float(i % 17))
            lb.add_endpoint(M.Endpoint(_bench_node(i), weight=1 + i % 5, health=healths[i % 4],
                                       zone=("z1", "z2")[i % 2], metrics=metrics))
        contexts = itertools.cycle([M.RequestContext(routing_key=f"user-{k}", request_id=f"r{k}")
                                    for k in range(64)])

        def call() -> None:
            sel = lb.select(next(contexts))
            lb.record_completion(sel.node_id, True)
        return call
    return make


# Targets (at 1,000 endpoints, the largest size): the issue asks for >= 10x on the select
# path and ~100x for ConsistentHash at 100 endpoints.  LeastConnections and its weighted
# form still take a minimum over the available endpoints (connection counts change on every
# select), so they only shed the filter walk; the ring strategies shed a sort of 150n vnodes.
SCAN_STRATEGIES = (M.Strategy.LEAST_CONNECTIONS, M.Strategy.WEIGHTED_LEAST_CONNECTIONS)
BENCH = tuple(
    BenchCase(f"select {s.name}", (10, 100, 1000), _bench_select(s),
              min_ratio=10.0 if s in SCAN_STRATEGIES else 1000.0 if s in RING_STRATEGIES else 100.0)
    for s in M.Strategy
)

COMPONENT = Component(
    name="load_balancer",
    summary="net-mesh 0.25.0 behavior/loadbalance.rs plus the fixes of §2.8: eleven strategies, "
            "availability filter, zones, circuit breaker with a single half-open probe, FNV-1a ring.",
    model_cls=M.LoadBalancer, impl_cls=ImplLB, subject_cls=LoadBalancerSubject,
    machine_cls=LoadBalancerMachine, invariants=INVARIANTS, mutants=mutants_of("load_balancer"),
    errors=(M.LoadBalancerError,), operations=OPERATIONS, bench=BENCH, exploration=EXPLORATION,
)
