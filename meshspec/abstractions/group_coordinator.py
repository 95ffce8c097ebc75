"""A counter abstraction of `GroupCoordinator`'s health: healthy and unhealthy members, and
the optimized coordinator's cached healthy count.

State: `healthy` and `unhealthy` members (a full scan of the member list) and `cached`,
the count the impl keeps instead of scanning (#167; the model's scan equals `healthy`).
Transitions: adding a member (healthy or not), removing the last one, marking a member
unhealthy or healthy (and marking an already unhealthy one unhealthy again, which must
change nothing), re-placing a member (it comes back healthy), a node's recovery reviving
some unhealthy members, and `stutter` (routing, placement queries, refused guards).

Abstracted away: which member is which (indices, nodes, entity ids, origins, the guard
of #158 beyond "it acted or it did not"), the load balancer behind the members, the
scheduler. Left out: the u8 saturation of the reported counts (a query, not state).
"""
from __future__ import annotations

from typing import Any, Mapping

import z3

from meshspec.prove import Abstraction, State, Transition, inductive_over

VARIABLES = (("healthy", "int"), ("unhealthy", "int"), ("cached", "int"))
TRUE = z3.BoolVal(True)


def _revive(s: State, n: Any, counted: bool = True) -> dict[str, Any]:
    return {"healthy": s.healthy + n, "unhealthy": s.unhealthy - n, **({"cached": s.cached + n} if counted else {})}


def placement(counted: bool = True) -> Transition:
    """update_member_placement: the member (healthy, or not when `was_down` = 1) comes back healthy."""
    return Transition("update_member_placement",
                      lambda s, p: z3.And(0 <= p.was_down, p.was_down <= 1, s.unhealthy >= p.was_down),
                      lambda s, p: _revive(s, p.was_down, counted), ("was_down",))


def mark_again(decrements: bool = False) -> Transition:
    """mark_unhealthy of a member that is already unhealthy: nothing changes."""
    return Transition("mark_unhealthy_again", lambda s, p: s.unhealthy >= 1,
                      lambda s, p: {"cached": s.cached - 1} if decrements else {})


TRANSITIONS = (
    Transition("stutter", lambda s, p: TRUE, lambda s, p: {}),
    Transition("add_member", lambda s, p: z3.And(0 <= p.up, p.up <= 1), lambda s, p: {
        "healthy": s.healthy + p.up, "unhealthy": s.unhealthy + 1 - p.up, "cached": s.cached + p.up}, ("up",)),
    Transition("remove_last", lambda s, p: z3.And(0 <= p.up, p.up <= 1, s.healthy >= p.up,
                                                  s.unhealthy >= 1 - p.up), lambda s, p: {
        "healthy": s.healthy - p.up, "unhealthy": s.unhealthy - (1 - p.up), "cached": s.cached - p.up}, ("up",)),
    Transition("mark_unhealthy", lambda s, p: s.healthy >= 1, lambda s, p: _revive(s, -1)),
    Transition("mark_healthy", lambda s, p: s.unhealthy >= 1, lambda s, p: _revive(s, 1)),
    mark_again(),
    placement(),
    Transition("on_node_recovery", lambda s, p: z3.And(0 <= p.k, p.k <= s.unhealthy),
               lambda s, p: _revive(s, p.k), ("k",)),
)

INVARIANTS: Mapping[str, Any] = {
    "cached_healthy_count_matches": lambda s: s.cached == s.healthy,
    "counts_non_negative": lambda s: z3.And(s.healthy >= 0, s.unhealthy >= 0, s.cached >= 0),
}

ABSTRACTION = Abstraction("group_coordinator", VARIABLES, lambda s, p: z3.And(*[s[v] == 0 for v, _ in VARIABLES]),
                          (), TRANSITIONS, INVARIANTS)


inductive = inductive_over(ABSTRACTION)


PROOFS = (
    inductive("group_coordinator.cached_healthy_count", "the cached healthy count equals a scan of the members",
              "cached_healthy_count_matches"),
    inductive("group_coordinator.counts_non_negative",
              "healthy and unhealthy member counts, and the cached healthy count, stay ≥ 0 (no unsigned wrap)",
              "counts_non_negative", "cached_healthy_count_matches"),
)

MACHINE_INVARIANT = {"cached_healthy_count_matches": "counts_agree_with_a_scan",
                     "counts_non_negative": "counts_agree_with_a_scan"}
MUTANTS = "mutants.group_coordinator"
VARIANTS = (
    (inductive("healthy_count_drift_on_placement", "cached count (re-placing a down member not counted)",
               "cached_healthy_count_matches", abstraction=ABSTRACTION.variant(placement(counted=False))),
     f"{MUTANTS}:HealthyCountDriftOnPlacement"),
    (inductive("healthy_count_drift_on_repeated_mark", "cached count (marking a down member down decrements)",
               "cached_healthy_count_matches", abstraction=ABSTRACTION.variant(mark_again(decrements=True))),
     f"{MUTANTS}:HealthyCountDriftOnRepeatedMark"),
    (inductive("healthy_count_wraps_on_repeated_mark", "counts ≥ 0 (marking a down member down decrements)",
               "counts_non_negative", abstraction=ABSTRACTION.variant(mark_again(decrements=True))),
     f"{MUTANTS}:HealthyCountDriftOnRepeatedMark"),
)
