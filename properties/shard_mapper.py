"""Properties of the shard mapper: the subject harness, invariants, lockstep machine, exploration.

The harness (`ShardMapperSubject`) wraps one mapper (model or impl) with its own FakeClock
and keeps the ghost state the invariants need: every id ever handed out, the callback
logs (and what a re-entrant callback saw), drain start times, pushes recorded per shard,
events collected per shard, and the last cooldown stamp.

What the machine reaches: every operation of semantics.md §3.4, counts 0 and past the
budget, unknown ids and ids in every state, an allocator started near 65535 (the
`first_shard_id` hook), injected NaN/±inf/equal weights (the `inject_weight` hook),
latencies past u32, time steps around the cooldown, the 100 ms grace and one hour, and
pushes into draining shards.
"""
from __future__ import annotations

import functools
import math
import sys
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from meshspec.lockstep import Component, Subject, always, ghost_flag, sometimes
from meshspec.machine import LockstepMachine
from meshspec.strategies import U64, around, pick, until
from model import shard_mapper as M

U16_MAX = 65535
U64_MAX = 2**64 - 1
MS = 1_000_000
SEC = 1_000_000_000
PROBE_HASHES = (0, 1, 2**62, 2**63 - 1, 2**63, 3 * 2**62, U64_MAX)
GATED = ("scale_up", "scale_up_provisioning", "scale_down")
EDGE_IDS = [0, 7, U16_MAX - 1, U16_MAX]  # ids in no state: the low end, a gap, the sentinel


PRESETS = {"default": "default_for_cpus", "high_throughput": "high_throughput",
           "conservative": "conservative"}


def policy_class(mapper_cls: type) -> type:
    """The ScalingPolicy class a mapper is tested with (a mutant may swap in a buggy one)."""
    return getattr(mapper_cls, "SCALING_POLICY", M.ScalingPolicy)


def build_policy(policy_cls: type, preset: str, cpus: int, min_shards: int, max_shards: int,
                 cooldown_ns: int, auto_scale: bool) -> M.ScalingPolicy:
    base = getattr(policy_cls, PRESETS[preset])(cpus)
    return attrs.evolve(base, min_shards=min_shards, max_shards=max_shards,
                        cooldown_ns=cooldown_ns, auto_scale=auto_scale)


class ShardMapperSubject(Subject):
    """One mapper plus ghost state; one method per machine rule."""

    #: Symbolic names the exported pytest files use for magic argument values.
    ARG_NAMES = {"shard_id": {M.NO_SHARD: "NO_SHARD"},
                 "event_hash": {U64_MAX: "U64_MAX"}, "first_id": {M.NO_SHARD: "NO_SHARD"}}

    def init(self, initial: int, ring_capacity: int, preset: str, cpus: int, min_shards: int,
             max_shards: int, cooldown_ns: int, auto_scale: bool, first_id: int,
             reentrant: bool) -> None:
        policy = build_policy(policy_class(self.cls), preset, cpus, min_shards, max_shards, cooldown_ns, auto_scale)
        self.sut = self.cls(initial, ring_capacity, policy, clock=self.clock, first_shard_id=first_id)
        self.allocated: list[int] = list(range(first_id, first_id + initial))
        self.became_active: list[int] = []
        self.stopped: list[int] = []
        self.created_log: list[tuple[int, Any, int, int]] = []
        self.removed_log: list[tuple[int, Any]] = []
        self.drain_started: dict[int, int] = {}
        self.pushes: dict[int, int] = {}
        self.latency: dict[int, list[int]] = {}
        self.collected: dict[int, int] = {}
        self.last_stamp: int | None = None
        self.tick_decisions: set[str] = set()
        self.removed: list[int] = []
        self.gate_violation: str | None = None
        self.finalize_violation: str | None = None
        self.collect_violation: str | None = None
        self.floor_violation: str | None = None
        #: boundary classes reached exactly (the `*_exactly` witnesses): metric == threshold,
        #: time == warm-up end / cooldown end / grace end
        self.edges: set[str] = set()
        # partials of bound methods, not lambdas: deepcopy and pickle rebind them to the copy
        self.sut.set_on_shard_created(functools.partial(self._on_created, reentrant=reentrant))
        self.sut.set_on_shard_removed(functools.partial(self._on_removed, reentrant=reentrant))

    def observations(self) -> dict[str, Any]:
        """What a cache could get wrong while the shard list agrees: routing and advice."""
        s = self.sut
        return {"select_shard": tuple(s.select_shard(h) for h in PROBE_HASHES),
                "evaluate_scaling": s.evaluate_scaling(),
                "active_shard_count": s.active_shard_count(),
                "shard ids": (s.active_shard_ids(), s.all_shard_ids(), s.total_shard_count())}

    # -- callbacks (a re-entrant callback reads the mapper back) --------------------------
    def _on_created(self, sid: int, reentrant: bool) -> None:
        if reentrant:
            self.created_log.append((sid, self.sut.shard_state(sid), self.sut.active_shard_count(),
                                     len(self.sut.active_shard_ids())))
        else:
            self.created_log.append((sid, None, 0, 0))

    def _on_removed(self, sid: int, reentrant: bool) -> None:
        self.removed_log.append((sid, self.sut.shard_state(sid) if reentrant else None))

    # -- ghost helpers ---------------------------------------------------------------------
    def _stamp(self, rule: str) -> None:
        now = self.clock()
        cooldown = self.sut.policy().cooldown_ns
        if rule in GATED and self.last_stamp is not None and now - self.last_stamp < cooldown:
            self.gate_violation = f"{rule} succeeded {now - self.last_stamp} ns after the last " \
                                  f"scaling stamp (cooldown {cooldown} ns)"
        self.last_stamp = now

    def _check_floor(self, rule: str) -> None:
        active, floor = self.sut.active_shard_count(), self.sut.policy().min_shards
        if active < floor:
            self.floor_violation = f"{rule} left {active} active shards, below min_shards {floor}"

    # -- rules -----------------------------------------------------------------------------
    def select_shard(self, event_hash: int) -> int:
        return self.sut.select_shard(event_hash)

    def collect_metrics(self) -> list:
        out = self.sut.collect_metrics()
        p = self.sut.policy()
        for m in out:
            self.edges.update(name for name, hit in (
                ("fill_at_threshold", m.fill_ratio == p.fill_ratio_threshold),
                ("fill_at_underutilized", m.fill_ratio == p.underutilized_threshold),
                ("push_latency_at_threshold", m.avg_push_latency_ns == p.push_latency_threshold_ns),
                ("flush_latency_at_threshold", m.avg_flush_latency_us == p.flush_latency_threshold_us))
                if hit)
            self.collected[m.shard_id] = self.collected.get(m.shard_id, 0) + m.event_rate
            self._check_window(m)
        for sid, pushed in self.pushes.items():
            if self.sut.metrics_collector(sid) is not None and self.collected.get(sid, 0) != pushed:
                self.collect_violation = (f"shard {sid}: {pushed} pushes recorded but "
                                          f"{self.collected.get(sid, 0)} events collected over all windows")
        self.latency = {}
        return out

    def _check_window(self, m: Any) -> None:
        samples = self.latency.get(m.shard_id, [])
        if samples and sum(samples) >= len(samples) and m.avg_push_latency_ns == 0:
            self.collect_violation = (f"shard {m.shard_id}: {len(samples)} latency samples with mean "
                                      f"{sum(samples) / len(samples):.1f} ns collected as average 0")

    def evaluate_scaling(self) -> M.ScalingDecision:
        self._note_time_edges()
        return self.sut.evaluate_scaling()

    def _note_time_edges(self) -> None:
        """Ghost: whether this call runs exactly at a warm-up end or the cooldown end. Read on
        the model side only (activation times are not public API, and an impl behind
        `--impl-cmd` need not serve `abstract`); the witnesses read the model's ghost."""
        if self.side != "model":
            return
        now, cooldown = self.clock(), self.sut.policy().cooldown_ns
        active = [x for x in self.sut.abstract()[3] if x[1] == M.ShardState.ACTIVE]
        if any(now - x[3] == cooldown for x in active):
            self.edges.add("at_warm_up_end")
        in_cooldown = self.last_stamp is not None and now - self.last_stamp < cooldown
        if not in_cooldown and any(now - x[3] < cooldown for x in active):
            self.edges.add("during_warm_up")
        if self.last_stamp is not None and now - self.last_stamp == cooldown:
            self.edges.add("at_cooldown_end")

    def _deadlines(self) -> list[int]:
        """Every time boundary ahead or just passed: warm-up ends, the cooldown end, grace ends
        (the grace is strict: `> 100 ms`, so its end + 1 ns is the first finalizing instant)."""
        cooldown = self.sut.policy().cooldown_ns
        out = [x[3] + cooldown for x in self.sut.abstract()[3] if x[1] == M.ShardState.ACTIVE]
        out += [t + 100 * MS for t in self.drain_started.values()]
        out += [t + 100 * MS + 1 for t in self.drain_started.values()]
        if self.last_stamp is not None:
            out.append(self.last_stamp + cooldown)
        return out

    def _allocated(self, op: str, ids: list[int]) -> list[int]:
        if ids:
            self.allocated.extend(ids)
            self._stamp(op)
        return ids

    def scale_up(self, count: int) -> list[int]:
        ids = self._allocated("scale_up", self.sut.scale_up(count))
        self.became_active.extend(ids)
        return ids

    def scale_up_provisioning(self, count: int) -> list[int]:
        return self._allocated("scale_up_provisioning", self.sut.scale_up_provisioning(count))

    def scale_up_provisioning_force(self, count: int) -> list[int]:
        return self._allocated("force", self.sut.scale_up_provisioning_force(count))

    def activate(self, shard_id: int) -> bool:
        became = self.sut.activate(shard_id)
        if became:
            self.became_active.append(shard_id)
        return became

    def drain_specific(self, shard_id: int) -> None:
        was_active = self.sut.shard_state(shard_id) == M.ShardState.ACTIVE
        self.sut.drain_specific(shard_id)
        if was_active:
            self.drain_started[shard_id] = self.clock()
            self._stamp("drain_specific")
            self._check_floor("drain_specific")

    def scale_down(self, count: int) -> list[int]:
        ids = self.sut.scale_down(count)
        for sid in ids:
            self.drain_started[sid] = self.clock()
        self._stamp("scale_down")
        self._check_floor("scale_down")
        return ids

    def finalize_draining(self) -> list[int]:
        before = {sid: self._drain_facts(sid) for sid in self.sut.all_shard_ids()}
        now = self.clock()
        if any(now - t in (100 * MS, 100 * MS + 1) for t in self.drain_started.values()):
            self.edges.add("at_grace_end")
        ids = self.sut.finalize_draining()
        for sid in ids:
            state, length, pushes, started = before.get(sid, (None, None, None, None))
            if state != M.ShardState.DRAINING or length != 0 or pushes != 0 \
                    or started is None or self.clock() - started <= 100 * MS:
                self.finalize_violation = (f"finalize stopped shard {sid}: state {state}, buffer "
                                           f"{length}, pushes since drain {pushes}, drain started {started}")
        self.stopped.extend(ids)
        return ids

    def _drain_facts(self, sid: int) -> tuple:
        col = self.sut.metrics_collector(sid)
        length = col.current_len() if col.capacity > 0 else 0
        return (self.sut.shard_state(sid), length, col.pushes_since_drain_start(),
                self.drain_started.get(sid))

    def remove_specific_stopped_shard(self, shard_id: int) -> bool:
        removed = self.sut.remove_specific_stopped_shard(shard_id)
        self.removed += [shard_id] if removed else []
        return removed

    def remove_stopped_shards(self) -> list[int]:
        removed = self.sut.remove_stopped_shards()
        self.removed += removed
        return removed

    def inject_weight(self, shard_id: int, weight: float) -> bool:
        return self.sut.inject_weight(shard_id, weight)

    def observe(self, shard_id: int) -> tuple:
        s = self.sut
        col = s.metrics_collector(shard_id)
        return (s.shard_state(shard_id), s.active_shard_ids(), s.all_shard_ids(),
                s.active_shard_count(), s.total_shard_count(), s.policy(),
                None if col is None else col.abstract())

    # -- the collector, reached through metrics_collector(id) --------------------------------
    def _collector(self, shard_id: int) -> Any:
        return self.sut.metrics_collector(shard_id)

    def record_push(self, shard_id: int, latency_ns: int) -> bool:
        col = self._collector(shard_id)
        if col is None:
            return False
        col.record_push(latency_ns)
        self.pushes[shard_id] = self.pushes.get(shard_id, 0) + 1
        self.latency.setdefault(shard_id, []).append(min(latency_ns, 2**32 - 1))
        return True

    def record_event_only(self, shard_id: int) -> bool:
        col = self._collector(shard_id)
        if col is None:
            return False
        col.record_event_only()
        self.pushes[shard_id] = self.pushes.get(shard_id, 0) + 1
        return True

    def record_flush(self, shard_id: int, latency_us: int) -> bool:
        col = self._collector(shard_id)
        if col is not None:
            col.record_flush(latency_us)
        return col is not None

    def record_buffer_len(self, shard_id: int, length: int) -> bool:
        col = self._collector(shard_id)
        if col is not None:
            col.record_buffer_len(length)
            p = self.sut.policy()
            if col.capacity > 0 and col.fill_ratio() == p.underutilized_threshold:
                self.edges.add("fill_at_underutilized")
            if col.capacity > 0 and col.fill_ratio() == p.fill_ratio_threshold:
                self.edges.add("fill_at_threshold")
        return col is not None

    def set_collector_draining(self, shard_id: int, flag: bool) -> bool:
        col = self._collector(shard_id)
        if col is not None:
            col.set_draining(flag)
        return col is not None

    def traffic(self, length: int, latency_ns: int, pushes: int) -> int:
        """A metrics window of production traffic: every shard's ring at `length`, `pushes` pushes."""
        ids = [sid for sid in self.allocated if self.sut.metrics_collector(sid) is not None]
        for sid in ids:
            self.record_buffer_len(sid, length)
            for _ in range(pushes):
                self.record_push(sid, latency_ns)
        return len(ids)

    def advance_time(self, ns: int) -> int:
        return self.clock.advance(ns)

    def _attempt(self, rule: str, *args: Any) -> Any:
        """One call as the bus makes it: domain errors are logged by name, not raised."""
        try:
            return getattr(self, rule)(*args)
        except M.ScalingError as exc:
            return type(exc).__name__

    def monitor_tick(self) -> tuple:
        """One round of the bus scaling loop (bus.rs): a metrics window passes, then collect,
        evaluate, act on the decision, finalize draining shards, remove the stopped ones."""
        self.clock.advance(self.sut.policy().metrics_window_ns)
        self.collect_metrics()
        self._note_time_edges()
        decision = self.sut.evaluate_scaling()
        self.tick_decisions.add(decision.kind)
        log: list[Any] = [str(decision)]
        if decision.kind == "scale_up":
            for _ in range(decision.count):  # add_shard_internal: provision(1) + activate
                ids = self._attempt("scale_up_provisioning", 1)
                log.append(ids)
                if isinstance(ids, str):
                    break
                log.append(self._attempt("activate", ids[0]))
        elif decision.kind == "scale_down":
            drained = self._attempt("scale_down", decision.count)
            log.append(drained)
            for sid in drained if isinstance(drained, list) else []:
                log.append(self._attempt("drain_specific", sid))
        stopped = self.finalize_draining()
        log.append(stopped)
        log.append([self.remove_specific_stopped_shard(sid) for sid in stopped])
        return tuple(map(str, log))

    def activate_all_provisioning(self) -> tuple:
        """A manager bringing up every pending shard, in id order, whatever each answers."""
        pending = [sid for sid in self.allocated if self.sut.shard_state(sid) == M.ShardState.PROVISIONING]
        return tuple(str(self._attempt("activate", sid)) for sid in pending)

    def manual_scale_up(self, count: int) -> tuple:
        """The operator path: forced provisioning, then activate each, stopping at the first error."""
        ids = self._attempt("scale_up_provisioning_force", count)
        log: list[Any] = [ids]
        for sid in ids if isinstance(ids, list) else []:
            outcome = self._attempt("activate", sid)
            log.append(outcome)
            if isinstance(outcome, str):
                break
        return tuple(map(str, log))

    def try_construct(self, initial: int, fill: float, underutil: float, min_shards: int,
                      max_shards: int, cooldown_ns: int, window_ns: int, delay_ns: int) -> tuple:
        """Build a second mapper from raw policy fields: the constructor's error paths."""
        policy = attrs.evolve(policy_class(self.cls).default_for_cpus(4), fill_ratio_threshold=fill,
                              underutilized_threshold=underutil, min_shards=min_shards,
                              max_shards=max_shards, cooldown_ns=cooldown_ns,
                              metrics_window_ns=window_ns, scale_down_delay_ns=delay_ns)
        other = self.cls(initial, 16, policy, clock=self.clock)
        return (other.policy(), other.active_shard_ids(), other.select_shard(2**63))

    def preset(self, name: str, cpus: int) -> tuple:
        """A policy preset, normalized, and what validate says of it."""
        policy = getattr(policy_class(self.cls), PRESETS[name])(cpus)
        try:
            policy.validate()
            verdict = "ok"
        except M.ConfigError as exc:
            verdict = str(exc)
        return (policy, policy.normalize(), verdict)


# -- invariants -----------------------------------------------------------------------------

def _abstract_shards(s: ShardMapperSubject) -> list[tuple]:
    return list(s.sut.abstract()[3])


def active_within_budget(s: ShardMapperSubject) -> None:
    """active_shard_count() never exceeds max_shards and equals the number of Active shards."""
    active = [x for x in _abstract_shards(s) if x[1] == M.ShardState.ACTIVE]
    count = s.sut.active_shard_count()
    assert count == len(active), f"active_shard_count() {count} but {len(active)} Active shards"
    assert count <= s.sut.policy().max_shards, f"{count} active > max_shards {s.sut.policy().max_shards}"


def select_routes_only_to_lightest_active(s: ShardMapperSubject) -> None:
    """select_shard answers an Active id within 0.1 of the lightest (all-NaN: any Active), or 65535 iff none."""
    active = {x[0]: x[4].weight for x in _abstract_shards(s) if x[1] == M.ShardState.ACTIVE}
    finite = [w for w in active.values() if not math.isnan(w)]
    lightest = min(finite, default=sys.float_info.max)
    lightest = min(lightest, sys.float_info.max)
    near = {sid for sid, w in active.items() if abs(w - lightest) < 0.1}
    allowed = near or set(active)
    for h in PROBE_HASHES:
        got = s.sut.select_shard(h)
        if not active:
            assert got == U16_MAX, f"no Active shard but select_shard({h}) = {got}"
        else:
            assert got in allowed, f"select_shard({h}) = {got}, allowed {sorted(allowed)}"


def ids_strictly_increase_never_reused(s: ShardMapperSubject) -> None:
    """Shard ids are handed out in strictly increasing order, never reused, never 65535."""
    ids = s.allocated
    assert all(a < b for a, b in zip(ids, ids[1:])), f"ids not strictly increasing: {ids[-6:]}"
    assert U16_MAX not in ids, "id 65535 (the no-shard sentinel) was allocated"


def cooldown_gates_scaling(s: ShardMapperSubject) -> None:
    """No two cooldown-gated scaling successes within one cooldown (force and drain only stamp)."""
    assert s.gate_violation is None, s.gate_violation


def floor_respected_by_draining(s: ShardMapperSubject) -> None:
    """scale_down and drain_specific never take the active count below min_shards."""
    assert s.floor_violation is None, s.floor_violation


def decisions_within_bounds(s: ShardMapperSubject) -> None:
    """evaluate_scaling: ScaleUp(n) ⇒ active+n ≤ max; ScaleDown(n) ⇒ active−n ≥ min; all-warm-up ⇒ None."""
    d, p, active = s.sut.evaluate_scaling(), s.sut.policy(), s.sut.active_shard_count()
    if d.kind == "scale_up":
        assert d.count >= 1 and active + d.count <= p.max_shards, f"{d} with {active} active, max {p.max_shards}"
    if d.kind == "scale_down":
        assert d.count >= 1 and active - d.count >= p.min_shards, f"{d} with {active} active, min {p.min_shards}"
    now = s.clock()
    warm = [x for x in _abstract_shards(s) if x[1] == M.ShardState.ACTIVE and now - x[3] < p.cooldown_ns]
    if warm and len(warm) == active and d.kind != "none":
        assert False, f"{d} although every Active shard is still warming up (warm-up shards never vote)"


def finalize_stops_only_drained(s: ShardMapperSubject) -> None:
    """finalize_draining stops only Draining shards with an empty buffer, no pushes since the drain, drain > 100 ms."""
    assert s.finalize_violation is None, s.finalize_violation


def collector_windows_add_up(s: ShardMapperSubject) -> None:
    """Events over all collected windows add up to pushes recorded; a mean ≥ 1 never averages to 0."""
    assert s.collect_violation is None, s.collect_violation


def callbacks_once_per_transition(s: ShardMapperSubject) -> None:
    """on_shard_created fires once per shard that becomes Active, on_shard_removed once per stop, state consistent."""
    created = [c[0] for c in s.created_log]
    assert created == s.became_active, f"created callbacks {created} != activations {s.became_active}"
    removed = [r[0] for r in s.removed_log]
    assert removed == s.stopped, f"removed callbacks {removed} != stops {s.stopped}"
    for sid, state, count, listed in s.created_log:
        assert state in (None, M.ShardState.ACTIVE), f"created({sid}) saw state {state}"
        assert count == listed, f"created({sid}) saw active count {count} but {listed} Active ids"
    for sid, state in s.removed_log:
        assert state in (None, M.ShardState.STOPPED), f"removed({sid}) saw state {state}"


def _last(s: ShardMapperSubject, rule: str) -> Any:
    return s.last if s.last is not None and s.last[0] == rule else None


def scale_up_advised(s: ShardMapperSubject) -> bool:
    """evaluate_scaling answers ScaleUp (now, or in a monitor tick so far)."""
    return "scale_up" in s.tick_decisions or s.sut.evaluate_scaling().kind == "scale_up"


def scale_down_advised(s: ShardMapperSubject) -> bool:
    """evaluate_scaling answers ScaleDown (now, or in a monitor tick so far)."""
    return "scale_down" in s.tick_decisions or s.sut.evaluate_scaling().kind == "scale_down"


def stopped_shard_removed(s: ShardMapperSubject) -> bool:
    """A shard that finalize_draining stopped has been removed."""
    return bool(s.removed)


def select_answered_no_shard(s: ShardMapperSubject) -> bool:
    """No shard is Active, so select_shard answers 65535."""
    return s.sut.select_shard(0) == U16_MAX


def activate_refused_at_cap(s: ShardMapperSubject) -> bool:
    """A Provisioning shard waits while the active count is at max_shards (activate answers AtMaxShards)."""
    at_cap = s.sut.active_shard_count() >= s.sut.policy().max_shards
    return at_cap and any(x[1] == M.ShardState.PROVISIONING for x in _abstract_shards(s))


def _edge(name: str, doc: str) -> Any:
    return ghost_flag("edges", name, doc, name + "_exactly")


EDGE_WITNESSES = (
    _edge("fill_at_threshold", "A shard's fill ratio (recorded or collected) equalled fill_ratio_threshold exactly."),
    _edge("fill_at_underutilized", "A shard's fill ratio (recorded or collected) equalled underutilized_threshold exactly."),
    _edge("push_latency_at_threshold", "A collected average push latency equalled its threshold."),
    _edge("flush_latency_at_threshold", "A collected average flush latency equalled its threshold."),
    _edge("at_warm_up_end", "evaluate_scaling ran exactly when an Active shard's warm-up ended."),
    _edge("during_warm_up", "evaluate_scaling ran past the cooldown while an Active shard still warmed up."),
    _edge("at_cooldown_end", "evaluate_scaling ran exactly when the scaling cooldown ended."),
    _edge("at_grace_end", "finalize_draining ran at the 100 ms drain grace's end (or 1 ns past it)."),
)


#: The boundary witnesses aim at the fuzzer's generators (meshspec.strategies.around); the
#: explorer's bounded alphabet has no boundary-aimed steps, so they are not asked of it.
FUZZ_ONLY_WITNESSES = tuple(w.__name__ for w in EDGE_WITNESSES)


def draining_shard_finalized(s: ShardMapperSubject) -> bool:
    """finalize_draining (directly or in a monitor tick) has stopped a shard."""
    return bool(s.stopped)


INVARIANTS = (
    always(active_within_budget), always(select_routes_only_to_lightest_active),
    always(ids_strictly_increase_never_reused), always(cooldown_gates_scaling),
    always(floor_respected_by_draining), always(decisions_within_bounds),
    always(finalize_stops_only_drained), always(collector_windows_add_up),
    always(callbacks_once_per_transition),
    sometimes(scale_up_advised), sometimes(scale_down_advised), sometimes(stopped_shard_removed),
    sometimes(select_answered_no_shard), sometimes(activate_refused_at_cap),
    sometimes(draining_shard_finalized),
    *map(sometimes, EDGE_WITNESSES),
)


# -- the machine ----------------------------------------------------------------------------

COUNTS = st.integers(0, 4) | st.sampled_from([5, 8, 300, U16_MAX])
HASHES = st.integers(0, U64_MAX) | st.sampled_from(PROBE_HASHES)
WEIGHTS = st.sampled_from([0.0, 0.05, 0.0999, 0.1, 0.1001, 1.0, 50.0, math.nan, math.inf, -math.inf,
                           sys.float_info.max]) | st.floats(0, 200)
LATENCIES = st.integers(0, 20) | st.sampled_from([2**32 - 1, 2**32, 5 * 10**9, 2**64 - 1])
BUFFER_LENGTHS = st.sampled_from([0, 0, 1, 7, 900, 1024, 5000])
TRAFFIC_LENGTHS = st.sampled_from([0, 0, 50, 900, 1024])
TRAFFIC_LATENCIES = st.sampled_from([0, 3, 10, 2**32])


@functools.lru_cache(maxsize=None)
def time_steps(cooldown: int) -> st.SearchStrategy[int]:
    """Clock steps around the grace, the cooldown `c` and an hour (one strategy per cooldown)."""
    c = cooldown
    return st.sampled_from([0, 1, 50 * MS, 100 * MS, 100 * MS + 1, c - 1, c, c + 1,
                            3600 * SEC]) | st.integers(0, 2 * SEC)


class ShardMapperMachine(LockstepMachine):
    """Model and impl mapper in lockstep; every rule is one `self.step`."""

    @initialize(initial=st.sampled_from([0, 0, 1, 2, 3, 4, 6]), ring_capacity=st.sampled_from([0, 1, 8, 10, 20, 1024]),
                preset=st.sampled_from(["default", "high_throughput", "conservative"]),
                cpus=st.integers(1, 8), min_shards=st.integers(1, 3),
                max_shards=st.integers(1, 4) | st.integers(5, 10),
                cooldown_ns=st.sampled_from([1, MS, 100 * MS, SEC, 5 * SEC]),
                auto_scale=st.sampled_from([True, True, True, False]),
                first_id=st.sampled_from([0, 0, 0, 65520, 65529]), reentrant=st.booleans())
    def init(self, initial: int, ring_capacity: int, preset: str, cpus: int, min_shards: int,
             max_shards: int, cooldown_ns: int, auto_scale: bool, first_id: int, reentrant: bool) -> None:
        self.cooldown = cooldown_ns
        self.step("init", initial, ring_capacity, preset, cpus, min_shards, max_shards,
                  cooldown_ns, auto_scale, first_id, reentrant)

    def _known_id(self, data: Any) -> int:
        """An id in a chosen state (Provisioning, Active, Draining, Stopped, removed) or an edge id."""
        subject = self.ls.model
        by_state: dict[Any, list[int]] = {}
        for sid in subject.allocated:
            by_state.setdefault(subject.sut.shard_state(sid), []).append(sid)
        pools = [sorted(ids) for ids in by_state.values()] + [EDGE_IDS]
        return pick(data, pick(data, pools, label="state"), label="shard_id")

    @rule(event_hash=HASHES)
    def select_shard(self, event_hash: int) -> None:
        self.step("select_shard", event_hash)

    @rule()
    def collect_metrics(self) -> None:
        self.step("collect_metrics")

    @rule()
    def evaluate_scaling(self) -> None:
        self.step("evaluate_scaling")

    @rule(count=COUNTS)
    def scale_up(self, count: int) -> None:
        self.step("scale_up", count)

    @rule(count=COUNTS)
    def scale_up_provisioning(self, count: int) -> None:
        self.step("scale_up_provisioning", count)

    @rule(count=COUNTS)
    def scale_up_provisioning_force(self, count: int) -> None:
        self.step("scale_up_provisioning_force", count)

    @rule(data=st.data())
    def activate(self, data: Any) -> None:
        self.step("activate", self._known_id(data))

    @rule(data=st.data())
    def drain_specific(self, data: Any) -> None:
        self.step("drain_specific", self._known_id(data))

    @rule(count=COUNTS)
    def scale_down(self, count: int) -> None:
        self.step("scale_down", count)

    @rule()
    def finalize_draining(self) -> None:
        self.step("finalize_draining")

    def _ids_in(self, *states: Any) -> list[int]:
        subject = self.ls.model
        return [sid for sid in subject.allocated if subject.sut.shard_state(sid) in states]

    @rule(data=st.data(), remove=st.booleans())
    def drain_edges(self, data: Any, remove: bool) -> None:
        """Refusals and drains the state pools of `_known_id` rarely pair with the right moment.
        Either a call aimed at a shard it must refuse: activate of a Provisioning shard once
        the active count is exactly at max_shards (scaled up to it right at the cooldown's
        end, evaluated there), or drain_specific of a Stopped shard; or an Active shard
        drained with an empty buffer, the clock advanced exactly to the 100 ms grace's end or
        the first instant past it, finalize, then, with `remove`, the bulk removal of stopped
        shards."""
        refused = self._ids_in(M.ShardState.PROVISIONING, M.ShardState.STOPPED)
        if refused and data.draw(st.booleans(), label="refused"):
            sid = data.draw(st.sampled_from(refused), label="shard_id")
            subject = self.ls.model
            mapper = subject.sut
            if mapper.shard_state(sid) != M.ShardState.PROVISIONING:
                self.step("drain_specific", sid)
                return
            room = mapper.policy().max_shards - mapper.active_shard_count()
            if room > 0:  # up to the cap exactly, once the cooldown has ended exactly
                stamp = subject.last_stamp
                ahead = until(subject.clock(), [None if stamp is None else stamp + self.cooldown])
                self.step("advance_time", ahead[0] if ahead else 0)
                self.step("evaluate_scaling")  # at the cooldown's end (often a warm-up's end too)
                self.step("scale_up", room)
            self.step("activate", sid)
            return
        ids = self._ids_in(M.ShardState.ACTIVE)
        sid = data.draw(st.sampled_from(ids), label="shard_id") if ids else self._known_id(data)
        self.step("drain_specific", sid)
        self.step("record_buffer_len", sid, 0)
        self.step("advance_time", data.draw(st.sampled_from([100 * MS + 1, 100 * MS]), label="grace"))
        self.step("finalize_draining")
        if remove:
            self.step("remove_stopped_shards")

    @rule(data=st.data())
    def warm_up_edges(self, data: Any) -> None:
        """The one moment a warming shard's vote is visible: a shard provisioned (a scaling
        stamp), activated part-way through the cooldown, given a buffer length, then
        evaluate_scaling exactly when the cooldown ends, while that shard still warms up
        (the cooldown gate no longer hides the decision, the warm-up exclusion must)."""
        subject = self.ls.model
        if not self._ids_in(M.ShardState.PROVISIONING):
            self.step("scale_up_provisioning_force", 1)
        provisioning = self._ids_in(M.ShardState.PROVISIONING)
        stamp = subject.last_stamp
        if not provisioning or stamp is None or self.cooldown < 2:
            return
        sid = pick(data, provisioning, label="shard_id")
        left = stamp + self.cooldown - subject.clock()
        if left >= 2:
            self.step("advance_time", data.draw(st.integers(1, left - 1), label="part"))
        self.step("activate", sid)
        self.step("record_buffer_len", sid, self._length(data, sid, BUFFER_LENGTHS))
        ahead = until(subject.clock(), [stamp + self.cooldown])
        self.step("advance_time", ahead[0] if ahead else 0)
        self.step("evaluate_scaling")

    @rule(data=st.data())
    def remove_specific_stopped_shard(self, data: Any) -> None:
        self.step("remove_specific_stopped_shard", self._known_id(data))

    @rule()
    def remove_stopped_shards(self) -> None:
        self.step("remove_stopped_shards")

    @rule(data=st.data(), weight=WEIGHTS)
    def inject_weight(self, data: Any, weight: float) -> None:
        self.step("inject_weight", self._known_id(data), weight)

    @rule(data=st.data())
    def observe(self, data: Any) -> None:
        self.step("observe", self._known_id(data))

    def boundaries(self) -> dict[str, list]:
        """The boundaries of the policy in force: metric thresholds, as the inputs that hit them."""
        p = self.ls.model.sut.policy()
        return {"push": [p.push_latency_threshold_ns], "flush": [p.flush_latency_threshold_us],
                "fill": [p.fill_ratio_threshold, p.underutilized_threshold]}

    def _latency(self, data: Any, kind: str) -> int:
        return data.draw(around(self.boundaries()[kind], LATENCIES, lo=U64[0], hi=U64[1]), label="latency")

    def _length(self, data: Any, shard_id: int | None, fallback: Any) -> int:
        """A buffer length whose fill ratio lands on (or next to) a threshold of the policy."""
        col = self.ls.model.sut.metrics_collector(shard_id) if shard_id is not None else None
        caps = [col.capacity] if col is not None else sorted(
            {c.capacity for sid in self.ls.model.allocated
             if (c := self.ls.model.sut.metrics_collector(sid)) is not None})
        lengths = [round(t * cap) for cap in caps if cap > 0 for t in self.boundaries()["fill"]]
        return data.draw(around(lengths, fallback, lo=U64[0], hi=U64[1], share=20), label="length")

    @rule(data=st.data())
    def record_push(self, data: Any) -> None:
        sid = self._known_id(data)
        self.step("record_push", sid, self._latency(data, "push"))

    @rule(data=st.data())
    def record_event_only(self, data: Any) -> None:
        self.step("record_event_only", self._known_id(data))

    @rule(data=st.data())
    def record_flush(self, data: Any) -> None:
        sid = self._known_id(data)
        self.step("record_flush", sid, self._latency(data, "flush"))

    @rule(data=st.data())
    def record_buffer_len(self, data: Any) -> None:
        sid = self._known_id(data)
        self.step("record_buffer_len", sid,
                  self._length(data, sid, BUFFER_LENGTHS))

    @rule(data=st.data(), flag=st.booleans())
    def set_collector_draining(self, data: Any, flag: bool) -> None:
        self.step("set_collector_draining", self._known_id(data), flag)

    @rule(data=st.data(), pushes=st.integers(0, 3) | st.just(1))
    def traffic(self, data: Any, pushes: int) -> None:
        length = self._length(data, None, TRAFFIC_LENGTHS)
        latency = data.draw(around(self.boundaries()["push"], TRAFFIC_LATENCIES),
                            label="latency")
        self.step("traffic", length, latency, pushes)

    @rule()
    def monitor_tick(self) -> None:
        self.step("monitor_tick")

    @rule()
    def activate_all_provisioning(self) -> None:
        self.step("activate_all_provisioning")

    @rule(count=st.integers(1, 4))
    def manual_scale_up(self, count: int) -> None:
        self.step("manual_scale_up", count)

    @rule(data=st.data())
    def advance_time(self, data: Any) -> None:
        subject = self.ls.model
        ahead = until(subject.clock(), subject._deadlines())  # exactly to the next boundaries
        ns = data.draw(around(ahead, time_steps(self.cooldown), lo=0, share=25), label="ns")
        self.step("advance_time", max(ns, 0))

    @rule(name=st.sampled_from(sorted(PRESETS)),
          cpus=st.integers(0, 16) | st.sampled_from([32767, 32768, 40000, 65535, 70000]))
    def preset(self, name: str, cpus: int) -> None:
        self.step("preset", name, cpus)

    @rule(initial=st.integers(0, 3), fill=st.sampled_from([0.7, 0.0, 1.0, 1.5, math.nan, math.inf]),
          underutil=st.sampled_from([0.1, 0.0, 1.0, -0.1, math.nan, -math.inf]),
          min_shards=st.integers(0, 3), max_shards=st.integers(0, 4),
          cooldown_ns=st.sampled_from([0, SEC]), window_ns=st.sampled_from([0, 100 * MS]),
          delay_ns=st.sampled_from([0, 10 * SEC]))
    def try_construct(self, initial: int, fill: float, underutil: float, min_shards: int,
                      max_shards: int, cooldown_ns: int, window_ns: int, delay_ns: int) -> None:
        self.step("try_construct", initial, fill, underutil, min_shards, max_shards,
                  cooldown_ns, window_ns, delay_ns)


OPERATIONS = (
    "select_shard", "collect_metrics", "evaluate_scaling", "scale_up", "scale_up_provisioning",
    "scale_up_provisioning_force", "activate", "drain_specific", "scale_down", "finalize_draining",
    "remove_specific_stopped_shard", "remove_stopped_shards", "shard_state", "active_shard_ids",
    "all_shard_ids", "active_shard_count", "total_shard_count", "metrics_collector", "policy",
    "set_on_shard_created", "set_on_shard_removed", "inject_weight", "abstract",
)


# The curated mutants live in mutants/shard_mapper.py; the registry reads them lazily.
from meshspec.registry import mutant_bounds_of, mutants_of  # noqa: E402
from impl.shard_mapper import ShardMapper as ImplMapper  # noqa: E402


# -- benchmarks -----------------------------------------------------------------------------

def _bench_mapper(cls: type, size: int) -> tuple[Any, Any]:
    from meshspec.clock import FakeClock

    clock = FakeClock(0)
    policy = attrs.evolve(M.ScalingPolicy.default_for_cpus(size + 8), min_shards=1)
    mapper = cls(size, 1024, policy, clock=clock)
    for sid in range(size):  # spread weights so the candidate set is a realistic subset
        mapper.inject_weight(sid, float(sid % 7) * 0.04)
    return mapper, clock


def _bench_select(cls: type, size: int) -> Any:
    mapper, _ = _bench_mapper(cls, size)
    hashes = [(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(64)]
    return lambda: [mapper.select_shard(h) for h in hashes]


def _bench_scaling_cycle(cls: type, size: int) -> Any:
    mapper, clock = _bench_mapper(cls, size)

    def cycle() -> None:
        clock.advance(2 * SEC)
        (new,) = mapper.scale_up(1)
        clock.advance(2 * SEC)
        mapper.drain_specific(new)
        clock.advance(200 * MS)
        mapper.finalize_draining()
        mapper.remove_stopped_shards()
    return cycle


def _bench_evaluate(cls: type, size: int) -> Any:
    mapper, clock = _bench_mapper(cls, size)
    clock.advance(2 * SEC)
    return mapper.evaluate_scaling


from meshspec.lockstep import BenchCase  # noqa: E402

BENCH = (
    BenchCase("select_shard x64", (4, 64, 1024), _bench_select, min_ratio=10.0),
    # The selection table is paid for on every mutation (one O(n) rebuild each), as in Rust:
    # measured, with no target; the point of the design is the select path above.
    BenchCase("scale_up+drain+finalize+remove", (4, 64, 1024), _bench_scaling_cycle, min_ratio=0.0),
    BenchCase("evaluate_scaling", (4, 64, 1024), _bench_evaluate, min_ratio=0.0),
)

from meshspec.explore import Bound, Exploration  # noqa: E402

# -- bounded exploration --------------------------------------------------------------------
#
# The view (TLC's VIEW) replaces every absolute time by its age, saturated just past the
# largest threshold any comparison uses. Sound because every comparison of time in the
# model, the impl, the harness and the invariants is of an age (`now - t`) against the
# cooldown or the 100 ms drain grace (`<`, `>=`, `>` and `<=`), time never goes
# backwards, and no value is divided by a duration: two states whose ages agree up to
# the cap answer every future comparison alike, and ages past the cap stay past it.
# Left out: the clock reading, each collector's window start and each metrics sample's
# `last_updated` stamp (written, returned, compared model vs impl on the edge, never read
# by a decision), and the subject's record of the last step.


def _age(now: int, t: int | None, cap: int) -> int | None:
    return None if t is None else min(now - t, cap)


def _shard_view(shard: tuple, now: int, cap: int) -> tuple:
    sid, state, drain_started, activated_at, m, collector = shard
    metrics = (m.shard_id, m.fill_ratio, m.event_rate, m.avg_push_latency_ns, m.avg_flush_latency_us,
               m.draining, m.weight)  # all but last_updated
    return (sid, state, _age(now, drain_started, cap), _age(now, activated_at, cap), metrics,
            collector[:7] + collector[8:])  # collector[7] is the window start


def explore_view(s: ShardMapperSubject) -> tuple:
    """The mapper and its ghost state with ages in place of absolute times."""
    policy, next_id, last_scaling, shards = s.sut.abstract()
    now, cap = s.clock(), max(policy.cooldown_ns, M.DRAIN_GRACE_NS) + 1
    ghost = (tuple(s.allocated), tuple(s.became_active), tuple(s.stopped), tuple(s.created_log),
             tuple(s.removed_log), tuple(sorted((k, _age(now, t, cap)) for k, t in s.drain_started.items())),
             tuple(sorted(s.pushes.items())), tuple(sorted(s.collected.items())),
             _age(now, s.last_stamp, cap), tuple(sorted(s.tick_decisions)), tuple(s.removed),
             (s.gate_violation, s.finalize_violation, s.collect_violation, s.floor_violation))
    samples = tuple(sorted((k, tuple(v)) for k, v in s.latency.items()))
    return (policy, next_id, _age(now, last_scaling, cap),
            tuple(_shard_view(x, now, cap) for x in shards), ghost, samples)


def latency_order_symmetry(view: tuple) -> tuple:
    """The latency samples of one window are interchangeable: only their sum and count are read."""
    samples = tuple((sid, tuple(sorted(v))) for sid, v in view[5])
    return view[:5] + (samples,)


HOUR = 3600 * SEC
# Init A: two boot shards (ids 0, 1; min 1, max 3, ring of 8, cooldown 1 s, re-entrant
# callbacks). Init B: an empty mapper whose allocator sits at 65532, three ids below the
# sentinel. Shard 1 is the id the per-shard steps target (drained, pushed into, removed).
INITS = ((2, 8, "default", 4, 1, 3, SEC, True, 0, True),
         (0, 8, "default", 4, 1, 3, SEC, True, 65532, True))
# Time steps: one tick, the 100 ms grace, the cooldown less one tick, one hour. Sums of
# them reach the cooldown exactly and one tick past it, and the grace plus one tick.
TICKS = (("advance_time", (1,)), ("advance_time", (100 * MS,)), ("advance_time", (SEC - 1,)),
         ("advance_time", (HOUR,)))
SMALL_ACTIONS = (
    ("select_shard", (U64_MAX,)), ("collect_metrics", ()), ("evaluate_scaling", ()),
    ("scale_up", (0,)), ("scale_up", (1,)), ("scale_up_provisioning_force", (1,)),
    ("scale_up_provisioning_force", (2,)),
    ("activate_all_provisioning", ()), ("drain_specific", (1,)), ("scale_down", (5,)),
    ("monitor_tick", ()), ("record_push", (1, 10)), ("traffic", (8, 10, 1)),
    ("inject_weight", (0, 50.0)), ("inject_weight", (1, math.nan)),
    ("try_construct", (1, math.nan, 0.1, 1, 3, SEC, 100 * MS, 10 * SEC)),
    ("try_construct", (1, 0.7, 0.1, 1, 3, 0, 0, 0)),
    ("preset", ("high_throughput", 40000)),
    *TICKS,
)
LARGE_ACTIONS = SMALL_ACTIONS + (
    ("scale_up", (5,)), ("scale_up_provisioning", (1,)), ("activate", (2,)), ("scale_down", (1,)),
    ("finalize_draining", ()), ("remove_specific_stopped_shard", (1,)), ("remove_stopped_shards", ()),
    ("observe", (1,)), ("record_push", (1, 0)), ("record_event_only", (1,)), ("record_flush", (1, 5)),
    ("record_buffer_len", (1, 8)), ("set_collector_draining", (1, True)), ("manual_scale_up", (2,)),
    ("preset", ("default", 0)),
)
EXPLORATION = Exploration(
    inits=INITS,
    actions=LARGE_ACTIONS,
    bounds={"small": Bound(3, actions=SMALL_ACTIONS), "medium": Bound(4, actions=SMALL_ACTIONS),
            "large": Bound(5)},
    view=explore_view,
    symmetry=latency_order_symmetry,
    # Each found at the first bound deep enough; only the window-counter bug needs four
    # steps (drain, push, wait past the grace, a monitor tick that collects then finalizes).
    mutant_bounds=mutant_bounds_of("shard_mapper", "small", {"finalize_reads_window_counter": "medium"}),
)

COMPONENT = Component(
    name="shard_mapper",
    summary="net-mesh 0.25.0 shard/mapper.rs and ScalingPolicy: routing table, scaling "
            "decisions, shard lifecycle, metrics collectors.",
    model_cls=M.ShardMapper, impl_cls=ImplMapper, subject_cls=ShardMapperSubject,
    machine_cls=ShardMapperMachine, invariants=INVARIANTS, mutants=mutants_of("shard_mapper"),
    errors=(M.ScalingError,), operations=OPERATIONS, bench=BENCH, exploration=EXPLORATION,
)
