"""A counter abstraction of one run of the capacity coordinator with its per-run counters.

State: what a full scan of the run's records sees — Active shards without a live owner
(`avail`), Active shards with a live owner (`leased`), Parked shards (`parked`), Done or
Split shards (`finished`) — and what the impl's counters hold: the available counter (`c_avail`), the
shards counted as leased (`c_leased`), and how many counted-leased shards no longer have
a live lease but have not been detected yet (`stale`: a deadline passed, or etcd
deleted the owner key). Counters are updated only by the commit notifications; expiry
is detected lazily, on the next read (`detect`, of some or all of them).

The invariant is the intended fix of semantics.md §1.9: after every committed
transition the counters, with every pending detection applied, equal the full scan
(`c_avail + stale = avail` and `c_leased − stale = leased`). A failed compare commits
nothing (`cas_failed` changes no counter), nor does a best-effort revocation of a prior
lease (`revoke_prior`).

Abstracted away: which shard is which (ids, records, cursors, op logs), tenants and
other runs, the KV and its revisions, deadlines as numbers (expiry is "k live leases
lapse"), and the earliest-deadline half of the hint. `capacity_concrete` checks that
random impl steps fit the relation and turns refutations into replayable traces.
"""
from __future__ import annotations

from typing import Any, Mapping

import z3

from meshspec.prove import Abstraction, State, Transition, inductive_over

VARIABLES = tuple((v, "int") for v in ("avail", "leased", "parked", "finished", "c_avail", "c_leased", "stale"))
TRUE = z3.BoolVal(True)


def initial(s: State, p: State) -> z3.BoolRef:
    """A run just created: no shards, nothing counted."""
    return z3.And(*[s[v] == 0 for v, _ in VARIABLES])


def t(name: str, guard: Any, update: Any, params: tuple[str, ...] = ()) -> Transition:
    return Transition(name, guard, update, params)


def split_replace(children_counted: bool = True) -> Transition:
    """A live lease's parent retires (dropped from the leased count); n children are available."""
    def update(s: State, p: State) -> dict[str, Any]:
        out = {"leased": s.leased - 1, "finished": s.finished + 1, "c_leased": s.c_leased - 1,
               "avail": s.avail + p.n}
        return {**out, "c_avail": s.c_avail + p.n} if children_counted else out

    return t("split_replace", lambda s, p: z3.And(s.leased >= 1, p.n >= 1), update, ("n",))


def terminal(name: str, into: str, drops_deadline: bool = True) -> Transition:
    """complete (→ Done) / park_shard (→ Parked) of a live lease: the shard leaves the leased count."""
    return t(name, lambda s, p: s.leased >= 1, lambda s, p: {
        "leased": s.leased - 1, into: s[into] + 1,
        **({"c_leased": s.c_leased - 1} if drops_deadline else {})})


def becomes_available(name: str, guard: Any, counted: bool = True) -> Transition:
    """One more Active shard without an owner (split_residual's new shard, unpark)."""
    return t(name, guard, lambda s, p: {"avail": s.avail + 1, **({"c_avail": s.c_avail + 1} if counted else {})})


def cas_failed(bumps: bool = False) -> Transition:
    return t("cas_failed", lambda s, p: TRUE, lambda s, p: {"c_avail": s.c_avail + 1} if bumps else {})


def revoke_prior(decrements: bool = False) -> Transition:
    """After an acquire, the prior owner's etcd lease is revoked (best effort): the new lease lives on."""
    return t("revoke_prior", lambda s, p: s.leased >= 1, lambda s, p: {
        "c_leased": s.c_leased - 1, "c_avail": s.c_avail + 1} if decrements else {})


TRANSITIONS = (
    t("stutter", lambda s, p: TRUE, lambda s, p: {}),
    t("register", lambda s, p: p.n >= 0, lambda s, p: {"avail": s.avail + p.n, "c_avail": s.c_avail + p.n},
      ("n",)),
    t("acquire_counted", lambda s, p: z3.And(s.avail >= 1, s.c_avail >= 1), lambda s, p: {
        "avail": s.avail - 1, "leased": s.leased + 1, "c_avail": s.c_avail - 1, "c_leased": s.c_leased + 1}),
    t("acquire_stale", lambda s, p: z3.And(s.avail >= 1, s.stale >= 1), lambda s, p: {
        "avail": s.avail - 1, "leased": s.leased + 1, "stale": s.stale - 1}),
    t("renew", lambda s, p: s.leased >= 1, lambda s, p: {}),
    t("expire", lambda s, p: z3.And(0 <= p.k, p.k <= s.leased), lambda s, p: {
        "leased": s.leased - p.k, "avail": s.avail + p.k, "stale": s.stale + p.k}, ("k",)),
    t("detect", lambda s, p: z3.And(0 <= p.k, p.k <= s.stale), lambda s, p: {
        "c_avail": s.c_avail + p.k, "c_leased": s.c_leased - p.k, "stale": s.stale - p.k}, ("k",)),
    terminal("complete", "finished"),
    terminal("park_shard", "parked"),
    split_replace(),
    becomes_available("split_residual", lambda s, p: s.leased >= 1),
    t("unpark", lambda s, p: s.parked >= 1, lambda s, p: {
        "parked": s.parked - 1, "avail": s.avail + 1, "c_avail": s.c_avail + 1}),
    cas_failed(),
    revoke_prior(),
)

INVARIANTS: Mapping[str, Any] = {
    "counters_equal_full_scan": lambda s: z3.And(s.c_avail + s.stale == s.avail, s.c_leased - s.stale == s.leased),
    "stale_within_counted": lambda s: z3.And(0 <= s.stale, s.stale <= s.c_leased),
    "counts_non_negative": lambda s: z3.And(*[s[v] >= 0 for v in ("avail", "leased", "parked", "finished", "c_avail")]),
}

ABSTRACTION = Abstraction("capacity", VARIABLES, initial, (), TRANSITIONS, INVARIANTS)


inductive = inductive_over(ABSTRACTION)


PROOFS = (
    inductive("capacity.counters_equal_full_scan",
              "per-run counters + undetected expiries = the full scan after every commit (a failed txn commits nothing)",
              "counters_equal_full_scan"),
    inductive("capacity.undetected_expiries_are_counted_leased",
              "every lapsed lease not yet detected is among the counted-leased shards",
              "stale_within_counted", "counters_equal_full_scan", "counts_non_negative"),
)

MUTANTS = "properties.capacity"
VARIANTS = tuple(
    (inductive(name, f"counters = full scan ({what})", "counters_equal_full_scan",
               abstraction=ABSTRACTION.variant(change)), f"{MUTANTS}:{cls}")
    for name, what, change, cls in (
        ("cas_failure_bumps_counter", "a failed compare bumps the counter", cas_failed(bumps=True),
         "CasFailureBumpsCounter"),
        ("revoke_decrements", "revoking the prior lease un-leases the shard", revoke_prior(decrements=True),
         "RevokeDecrements"),
        ("split_adds_no_children", "split children not counted", split_replace(children_counted=False),
         "SplitAddsNoChildren"),
        ("terminal_keeps_deadline", "complete keeps the deadline",
         terminal("complete", "finished", drops_deadline=False), "TerminalKeepsDeadline"),
        ("residual_not_counted", "split_residual's shard not counted",
         becomes_available("split_residual", lambda s, p: s.leased >= 1, counted=False), "ResidualNotCounted"),
        ("unpark_not_counted", "unpark not counted", t("unpark", lambda s, p: s.parked >= 1, lambda s, p: {
            "parked": s.parked - 1, "avail": s.avail + 1}), "UnparkNotCounted"),
    ))
