"""A counter abstraction of one endpoint of `model.load_balancer.LoadBalancer`.

State: the endpoint's connections and the cap, its consecutive failures, its circuit
(open flag and the stamp it opened at), its half-open probe (flag and claim stamp), now
and the recovery window (at least 1 ms, fix (e)), and a monitor flag set false when a
reservation of an open circuit is admitted while a fresh probe is in flight.

Transitions: a reservation (`select` choosing the endpoint: under the cap, and the
circuit closed or half-open with no live probe; a half-open one claims the probe), a
successful or a failed completion (saturating release; a probe's outcome closes or
re-stamps the circuit; five consecutive failures open it), re-adding the endpoint
(fresh counters), time passing, and `stutter` for everything that leaves it alone.

Abstracted away: the other endpoints, strategies, zones, tags, health and metrics (a
select that passes the endpoint over is a stutter), counters the invariants do not
read (total and failed requests, the rr counter). Left out: u32 wrap of the failure
count (2^32 completions), concurrent reservations between filter and reserve.
"""
from __future__ import annotations

from typing import Any, Mapping

import z3

from meshspec.prove import Abstraction, State, Transition, inductive_over

U32 = 2**32 - 1
MIN_RECOVERY_NS = 1_000_000
THRESHOLD = 5

VARIABLES = tuple((v, "int") for v in ("conns", "cap", "consec", "opened_at", "probe_at", "now",
                                        "recovery")) + tuple((v, "bool") for v in (
                                            "opened", "probe", "probe_ok"))


def initial(s: State, p: State) -> z3.BoolRef:
    """A balancer with the endpoint just added, on a FakeClock at 0."""
    return z3.And(0 <= s.cap, s.cap <= U32, 0 <= p.recovery_ns, p.recovery_ns <= 2**64 - 1,
                  s.recovery == z3.If(p.recovery_ns > MIN_RECOVERY_NS, p.recovery_ns, MIN_RECOVERY_NS),
                  *_fresh(s), s.now == 0, s.probe_ok)


def _fresh(s: State) -> list[z3.BoolRef]:
    return [s.conns == 0, s.consec == 0, z3.Not(s.opened), s.opened_at == 0, z3.Not(s.probe),
            s.probe_at == 0]


def live_probe(s: State) -> z3.BoolRef:
    return z3.And(s.probe, s.now - s.probe_at < s.recovery)


def admits(s: State, strict: bool = True) -> z3.BoolRef:
    """The filter and the reservation together: under the cap; closed, or past the window
    with no live probe (`strict`; the 0.25.0 bug #6 lets every request through)."""
    half_open = s.now - s.opened_at >= s.recovery
    return z3.And(s.conns < s.cap, z3.Or(z3.Not(s.opened), z3.And(half_open, z3.Not(live_probe(s))
                                                                   if strict else half_open)))


def reserve(strict: bool = True) -> Transition:
    def update(s: State, p: State) -> dict[str, Any]:
        return {"conns": s.conns + 1, "probe": z3.Or(s.probe, s.opened),
                "probe_at": z3.If(s.opened, s.now, s.probe_at),
                "probe_ok": z3.And(s.probe_ok, z3.Not(z3.And(s.opened, live_probe(s))))}

    return Transition("reserve", lambda s, p: admits(s, strict), update)


def _release(s: State, wrapping: bool) -> Any:
    return (s.conns - 1) % (U32 + 1) if wrapping else z3.If(s.conns > 0, s.conns - 1, 0)


def complete(success: bool, wrapping: bool = False, keeps_probe: bool = False) -> Transition:
    """record_completion: release one connection; a probe's outcome, or count the result.
    `keeps_probe` (ProbeKeptAfterSuccess): a successful probe closes the circuit but stays
    claimed, re-stamped now."""
    def update(s: State, p: State) -> dict[str, Any]:
        out: dict[str, Any] = {"conns": _release(s, wrapping), "probe": False, "probe_at": 0}
        if success:
            kept = {"probe": s.probe, "probe_at": z3.If(s.probe, s.now, 0)} if keeps_probe else {}
            return {**out, "consec": 0, "opened": z3.And(s.opened, z3.Not(s.probe)),
                    "opened_at": z3.If(s.probe, 0, s.opened_at), **kept}
        opens = z3.And(z3.Not(s.probe), z3.Not(s.opened), s.consec + 1 >= THRESHOLD)
        return {**out, "consec": z3.If(s.probe, s.consec, s.consec + 1),
                "opened": z3.Or(s.opened, opens), "opened_at": z3.If(z3.Or(s.probe, opens), s.now, s.opened_at),
                "probe_at": 0}

    return Transition("complete_success" if success else "complete_failure", lambda s, p: z3.BoolVal(True), update)


TRANSITIONS = (
    Transition("stutter", lambda s, p: z3.BoolVal(True), lambda s, p: {}),
    Transition("advance_time", lambda s, p: p.ns >= 0, lambda s, p: {"now": s.now + p.ns}, ("ns",)),
    reserve(),
    complete(True),
    complete(False),
    Transition("readd", lambda s, p: z3.BoolVal(True), lambda s, p: {
        "conns": 0, "consec": 0, "opened": False, "opened_at": 0, "probe": False, "probe_at": 0}),
)

INVARIANTS: Mapping[str, Any] = {
    "connections_within_cap": lambda s: z3.And(0 <= s.conns, s.conns <= s.cap),
    "one_half_open_probe": lambda s: s.probe_ok,
    "probe_only_when_open": lambda s: z3.And(z3.Implies(s.probe, s.opened),
                                             z3.Implies(z3.Not(s.probe), s.probe_at == 0)),
}


def small_init(s: State, p: State) -> z3.BoolRef:
    """A cap of a few connections and the 1 ms window: short, cheap traces."""
    return z3.And(s.cap <= 4, p.recovery_ns <= MIN_RECOVERY_NS)


ABSTRACTION = Abstraction("load_balancer", VARIABLES, initial, ("recovery_ns",), TRANSITIONS, INVARIANTS,
                          small_init)


inductive = inductive_over(ABSTRACTION, bmc_depth=10)


PROOFS = (
    inductive("load_balancer.connections_within_cap", "0 ≤ connections ≤ cap per endpoint",
              "connections_within_cap"),
    inductive("load_balancer.probe_only_when_open", "a probe is in flight only on an open circuit",
              "probe_only_when_open"),
    inductive("load_balancer.one_half_open_probe", "a half-open circuit admits no second probe while one is live",
              "one_half_open_probe"),
)

# The harness's admissibility check (whose rule includes "no live probe") fires before its
# per-cycle probe check, so a second probe replays as `selection_is_admissible`.
MACHINE_INVARIANT = {
    "connections_within_cap": "connections_within_cap",
    "one_half_open_probe": "selection_is_admissible",
    "probe_only_when_open": "check_invariants",  # the impl's own check: "probe claimed on a closed circuit"
}

MUTANTS = "mutants.load_balancer"
VARIANTS = (
    (inductive("non_strict_half_open", "one half-open probe (every request let through after the window)",
               "one_half_open_probe", abstraction=ABSTRACTION.variant(reserve(strict=False))),
     f"{MUTANTS}:NonStrictHalfOpen"),
    (inductive("completion_underflows", "connections ≤ cap (an unmatched completion wraps)",
               "connections_within_cap",
               abstraction=ABSTRACTION.variant(complete(True, wrapping=True), complete(False, wrapping=True))),
     f"{MUTANTS}:CompletionUnderflows"),
    (inductive("probe_kept_after_success", "a probe only on an open circuit (a successful probe keeps its claim)",
               "probe_only_when_open", abstraction=ABSTRACTION.variant(complete(True, keeps_probe=True))),
     f"{MUTANTS}:ProbeKeptAfterSuccess"),
)
