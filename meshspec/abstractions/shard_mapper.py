"""A counter abstraction of `model.shard_mapper.ShardMapper` and its inductive invariants.

State: how many shards are Active, Provisioning, Draining and Stopped; `counted`, what
`active_shard_count()` answers (the impl caches it; the model counts); the allocator's
next id and the last id handed out; min/max shards; cooldown, now and the last scaling
stamp; the last advice of `evaluate_scaling` with the true active count it was given
for; and three monitor flags set false when an operation breaks a promise (the floor
after a drain, an id out of order or equal to 65535, a u16 subtraction that would wrap).

Each transition is one successful operation of semantics.md §3.4 with its guards in the
model's order; a refused or state-free operation (errors, select, metrics, collector
hooks, a drain of a Draining shard) is the `stutter` transition.

Abstracted away: which shard is which (ids beyond next/last, weights, routing), the
metrics and collectors (`evaluate_scaling` is given how many of the `voters` warm
Active shards are overloaded or idle, any numbers that fit), and why a Draining shard
may stop (`finalize_draining` stops any number of them). These over-approximate the
model: the faithfulness test checks every concrete step lands in some relation.
Left out: the policy's float thresholds and presets, callbacks, constructor errors.
"""
from __future__ import annotations

from typing import Any, Mapping

import z3

from meshspec.prove import Abstraction, State, Transition, inductive_over

U16 = 0xFFFF
U64 = 2**64 - 1
NONE, UP, DOWN = 0, 1, 2
COUNTS = ("active", "prov", "draining", "stopped")

VARIABLES = tuple((v, "int") for v in (
    *COUNTS, "counted", "next_id", "last_id", "lo", "hi", "cooldown", "now", "last",
    "adv_kind", "adv_n", "adv_active")) + tuple((v, "bool") for v in (
        "has_last", "auto", "floor_ok", "ids_ok", "u16_ok"))


def _max(a: Any, b: Any) -> Any:
    return z3.If(a > b, a, b)


def _min(a: Any, b: Any) -> Any:
    return z3.If(a < b, a, b)


def initial(s: State, p: State) -> z3.BoolRef:
    """`ShardMapper(initial, policy, first_shard_id)` on a FakeClock at 0: the policy
    normalized (max := max(max, min, initial)), `initial` boot shards Active."""
    return z3.And(
        0 <= p.initial, p.initial <= U16, 0 <= p.first_id, p.first_id + p.initial <= U16,
        1 <= s.lo, s.lo <= U16, 0 <= p.max_raw, p.max_raw <= U16,
        s.hi == _max(_max(p.max_raw, s.lo), p.initial), 1 <= s.cooldown, s.cooldown <= U64,
        s.active == p.initial, s.counted == p.initial, s.prov == 0, s.draining == 0, s.stopped == 0,
        s.next_id == p.first_id + p.initial, s.last_id == s.next_id - 1,
        s.now == 0, s.last == 0, z3.Not(s.has_last),
        s.adv_kind == NONE, s.adv_n == 0, s.adv_active == 0, s.floor_ok, s.ids_ok, s.u16_ok)


def in_cooldown(s: State) -> z3.BoolRef:
    return z3.And(s.has_last, s.now - s.last < s.cooldown)


def _stamp(s: State) -> dict[str, Any]:
    return {"last": s.now, "has_last": True}


def allocate(name: str, into: str, force: bool, sentinel_check: bool = True, wrap: bool = False) -> Transition:
    """scale_up / scale_up_provisioning(_force)(count ≥ 1): budget on the counted Active
    shards, cooldown unless forced, then the 65535 sentinel; ids next..next+count−1."""
    def guard(s: State, p: State) -> z3.BoolRef:
        c = p.count
        checks = [1 <= c, c <= U16, s.counted + c <= s.hi]
        checks += [] if force else [z3.Not(in_cooldown(s))]
        checks += [s.next_id + c - 1 < U16] if sentinel_check else []
        return z3.And(*checks)

    def update(s: State, p: State) -> dict[str, Any]:
        c, top = p.count, s.next_id + p.count
        fresh_ok = z3.And(s.ids_ok, s.next_id > s.last_id, top - 1 < U16)
        out = {into: s[into] + c, "next_id": top % (U16 + 1) if wrap else top,
               "last_id": (top - 1) % (U16 + 1) if wrap else top - 1, "ids_ok": fresh_ok, **_stamp(s)}
        if into == "active":
            out["counted"] = s.counted + c
        return out

    return Transition(name, guard, update, ("count",))


def activate(budget_check: bool = True) -> Transition:
    """activate(id) of a Provisioning shard while the counted Active shards are below max."""
    def guard(s: State, p: State) -> z3.BoolRef:
        return z3.And(s.prov >= 1, s.counted < s.hi) if budget_check else s.prov >= 1

    return Transition("activate", guard, lambda s, p: {
        "prov": s.prov - 1, "active": s.active + 1, "counted": s.counted + 1})


def _drain(s: State, n: Any, counted_after: Any) -> dict[str, Any]:
    left = s.active - n
    return {"active": left, "counted": counted_after, "draining": s.draining + n,
            "floor_ok": z3.And(s.floor_ok, left >= s.lo), **_stamp(s)}


def drain_specific(floor_check: bool = True) -> Transition:
    """drain_specific(id) of an Active shard: refused at the floor (DrainSpecificIgnoresFloor: not)."""
    return Transition("drain_specific", lambda s, p: z3.And(s.counted > s.lo, s.active >= 1) if floor_check
                      else s.active >= 1, lambda s, p: _drain(s, 1, s.counted - 1))


DRAIN_SPECIFIC = drain_specific()


def scale_down(drift: bool = False) -> Transition:
    """scale_down(count): to_drain = min(count, counted − min) ≥ 1, not in cooldown.
    With `drift` the cached count loses `count`, not `to_drain` (CountDriftOnScaleDown)."""
    def to_drain(s: State, p: State) -> Any:
        return _min(p.count, s.counted - s.lo)

    def guard(s: State, p: State) -> z3.BoolRef:
        d = to_drain(s, p)
        return z3.And(0 <= p.count, p.count <= U16, s.counted > s.lo, d >= 1, d <= s.active,
                      z3.Not(in_cooldown(s)))

    def update(s: State, p: State) -> dict[str, Any]:
        d = to_drain(s, p)
        return _drain(s, d, s.counted - (p.count if drift else d))

    return Transition("scale_down", guard, update, ("count",))


def _decision(s: State, p: State, strict_floor: bool = True) -> tuple[Any, Any, Any, Any]:
    """evaluate_scaling's branches on a = counted: (kind, n, up branch taken, down branch taken).
    `strict_floor=False` (ScaleDownFloorOffByOne): the down branch tests a ≥ min, not a > min."""
    a = s.counted
    live = z3.And(s.auto, z3.Not(in_cooldown(s)))
    up = z3.And(live, p.over > a / 2, a < s.hi)
    down = z3.And(live, z3.Not(up), p.idle > a / 2, a > s.lo if strict_floor else a >= s.lo)
    up_n = _min(_max(p.over / 2, 1), s.hi - a)
    down_n = _min(_max(p.idle / 2, 1), a - s.lo)
    kind = z3.If(up, UP, z3.If(down, DOWN, NONE))
    return kind, z3.If(up, up_n, z3.If(down, down_n, 0)), up, down


def evaluate(strict_floor: bool = True) -> Transition:
    def update(s: State, p: State) -> dict[str, Any]:
        kind, n, up, down = _decision(s, p, strict_floor)
        in_u16 = lambda x: z3.And(0 <= x, x <= U16)  # noqa: E731
        no_wrap = z3.And(z3.Implies(up, in_u16(s.hi - s.counted)), z3.Implies(down, in_u16(s.counted - s.lo)))
        return {"adv_kind": kind, "adv_n": n, "adv_active": s.active, "u16_ok": z3.And(s.u16_ok, no_wrap)}

    return Transition(
        "evaluate_scaling",
        lambda s, p: z3.And(0 <= p.voters, p.voters <= s.active, 0 <= p.over, p.over <= p.voters,
                            0 <= p.idle, p.idle <= p.voters),
        update, ("voters", "over", "idle"))


EVALUATE = evaluate()

TRANSITIONS = (
    Transition("stutter", lambda s, p: z3.BoolVal(True), lambda s, p: {}),
    Transition("advance_time", lambda s, p: p.ns >= 0, lambda s, p: {"now": s.now + p.ns}, ("ns",)),
    allocate("scale_up", "active", force=False),
    allocate("scale_up_provisioning", "prov", force=False),
    allocate("scale_up_provisioning_force", "prov", force=True),
    activate(),
    DRAIN_SPECIFIC,
    scale_down(),
    Transition("finalize_draining", lambda s, p: z3.And(0 <= p.k, p.k <= s.draining),
               lambda s, p: {"draining": s.draining - p.k, "stopped": s.stopped + p.k}, ("k",)),
    Transition("remove_stopped", lambda s, p: z3.And(0 <= p.k, p.k <= s.stopped),
               lambda s, p: {"stopped": s.stopped - p.k}, ("k",)),
    EVALUATE,
)


def _advice_ok(s: State) -> z3.BoolRef:
    up = z3.And(s.adv_n >= 1, s.adv_active + s.adv_n <= s.hi)
    down = z3.And(s.adv_n >= 1, s.adv_active - s.adv_n >= s.lo)
    return z3.And(z3.Implies(s.adv_kind == UP, up), z3.Implies(s.adv_kind == DOWN, down), s.u16_ok)


INVARIANTS: Mapping[str, Any] = {
    "active_within_budget": lambda s: s.active <= s.hi,
    "count_matches_active": lambda s: s.counted == s.active,
    "floor_respected_by_draining": lambda s: s.floor_ok,
    "decisions_within_bounds": _advice_ok,
    "ids_strictly_increase_never_sentinel": lambda s: s.ids_ok,
    "allocator_ahead_of_last_id": lambda s: z3.And(s.last_id < s.next_id, s.next_id <= U16),
    "counts_non_negative": lambda s: z3.And(*[s[c] >= 0 for c in COUNTS]),
    "policy_in_range": lambda s: z3.And(1 <= s.lo, s.lo <= s.hi, s.hi <= U16),
}

def small_init(s: State, p: State) -> z3.BoolRef:
    """A few boot shards, a small budget, a 1 ns cooldown: cheap traces to replay."""
    return z3.And(p.initial <= 4, p.max_raw <= 8, s.lo <= 4, s.cooldown == 1)


ABSTRACTION = Abstraction("shard_mapper", VARIABLES, initial, ("initial", "first_id", "max_raw"),
                          TRANSITIONS, INVARIANTS, small_init)


inductive = inductive_over(ABSTRACTION)


PROOFS = (
    inductive("shard_mapper.count_matches_active", "active_shard_count() = number of Active shards",
              "count_matches_active"),
    inductive("shard_mapper.active_within_budget", "active ≤ max_shards after every operation",
              "active_within_budget", "count_matches_active"),
    inductive("shard_mapper.floor_respected_by_draining",
              "scale_down and drain_specific never leave active < min_shards",
              "floor_respected_by_draining", "count_matches_active"),
    inductive("shard_mapper.decisions_within_bounds",
              "evaluate_scaling: ScaleUp(n) ⇒ n ≥ 1, A+n ≤ max; ScaleDown(n) ⇒ n ≥ 1, A−n ≥ min; no u16 wrap",
              "decisions_within_bounds", "count_matches_active", "active_within_budget", "counts_non_negative",
              "policy_in_range"),
    inductive("shard_mapper.ids_strictly_increase", "ids handed out strictly increase and are never 65535",
              "ids_strictly_increase_never_sentinel", "allocator_ahead_of_last_id"),
)

# Machine invariants (properties/shard_mapper.py) that catch each abstract invariant's violation.
MACHINE_INVARIANT = {
    "active_within_budget": "active_within_budget",
    "count_matches_active": "active_within_budget",
    "floor_respected_by_draining": "floor_respected_by_draining",
    "decisions_within_bounds": "decisions_within_bounds",
    "ids_strictly_increase_never_sentinel": "ids_strictly_increase_never_reused",
    "allocator_ahead_of_last_id": "ids_strictly_increase_never_reused",
    "counts_non_negative": "active_within_budget",
    "policy_in_range": "active_within_budget",
}


# --------------------------------------------------------------------------------------
# Broken variants: the curated mutants' changes, applied to the abstraction
# --------------------------------------------------------------------------------------

def _sentinel_unchecked() -> tuple[Transition, ...]:
    """IdSentinelOverflow: no 65535 check, the stored next id wraps at u16."""
    return (allocate("scale_up", "active", False, sentinel_check=False, wrap=True),
            allocate("scale_up_provisioning", "prov", False, sentinel_check=False, wrap=True),
            allocate("scale_up_provisioning_force", "prov", True, sentinel_check=False, wrap=True))


MUTANTS = "mutants.shard_mapper"
VARIANTS = (
    (inductive("activate_without_budget_recheck", "active ≤ max_shards (activate skips the budget)",
               "active_within_budget", "count_matches_active",
               abstraction=ABSTRACTION.variant(activate(budget_check=False))),
     f"{MUTANTS}:ActivateWithoutBudgetRecheck"),
    (inductive("id_sentinel_overflow", "ids never 65535 (allocator unchecked, wrapping)",
               "ids_strictly_increase_never_sentinel", "allocator_ahead_of_last_id",
               abstraction=ABSTRACTION.variant(*_sentinel_unchecked())),
     f"{MUTANTS}:IdSentinelOverflow"),
    (inductive("count_drift_on_scale_down", "cached count = Active shards (scale_down subtracts count)",
               "count_matches_active", abstraction=ABSTRACTION.variant(scale_down(drift=True))),
     f"{MUTANTS}:CountDriftOnScaleDown"),
    (inductive("drain_specific_ignores_floor", "active ≥ min_shards after draining (drain_specific skips the floor)",
               "floor_respected_by_draining", "count_matches_active",
               abstraction=ABSTRACTION.variant(drain_specific(floor_check=False))),
     f"{MUTANTS}:DrainSpecificIgnoresFloor"),
    (inductive("scale_down_floor_off_by_one", "ScaleDown(n) ⇒ n ≥ 1 (the floor guard tests A ≥ min)",
               "decisions_within_bounds", "count_matches_active", "active_within_budget", "counts_non_negative",
               "policy_in_range", abstraction=ABSTRACTION.variant(evaluate(strict_floor=False))),
     f"{MUTANTS}:ScaleDownFloorOffByOne"),
)
