"""A counter abstraction of one run of the capacity coordinator with its per-run counters.

State: what a full scan of the run's records sees — Active shards without a live owner
(`avail`), Active shards with a live owner (`leased`), Parked shards (`parked`), Done or
Split shards (`finished`) — and what the impl's counters hold: the available counter
(`c_avail`) and the shards counted as leased (`c_leased`, each with its counted
deadline). Counted-leased shards that no longer have a live lease are not detected yet;
they are split by what detection needs to notice them, which is deadline versus now:
`lapsed` (counted deadline < now), `edge` (counted deadline = now: expired, since a lease
is live while now < deadline) and `vanished` (etcd deleted the owner key while the
deadline is still ahead: only the owner-key check notices). `early` counts live leases
whose counted deadline is already ≤ now (a counter that lags the record; always 0 in the
faithful abstraction). Two monitor flags record what the last `capacity_hint` answered
against the scan: `hint_ok` (its available count) and `earliest_ok` (whether it reports an
earliest deadline exactly when some lease is live).

Counters are updated only by the commit notifications; expiry is detected lazily: some
of it on a claim or acquire (`detect`), all of it on a hint (`hint_read`: every counted
deadline ≤ now, then every vanished owner key). `advance_time` moves time forward: live
leases reach their deadline (exactly: `edge`; past it: `lapsed`), earlier edges become
lapsed, vanished owners' deadlines arrive. `vanish` is etcd deleting a live owner key.

The invariants are the intended fix of semantics.md §1.9: after every committed
transition the counters, with every pending detection applied, equal the full scan
(`c_avail + pending = avail`, `c_leased − pending = leased`); a failed compare commits
nothing (`cas_failed`), nor does a best-effort revocation of a prior lease
(`revoke_prior`); and a hint read, after its detection, answers the scan's available
count and reports an earliest deadline iff a lease is live (`hint_equals_full_scan`).

The time mutants are refuted through these: ExpiryNeverDetected (a hint detects
nothing), VanishedOwnerNotDetected (no owner-key check), ExpiryOffByOne (a deadline
equal to now is not detected), LightweightCount (no deadline detection, no earliest
deadline) and RenewKeepsOldDeadline (a renewed lease's counted deadline lags, so time
overtakes it while the lease lives and detection drops a live lease).

Abstracted away: which shard is which (ids, records, cursors, op logs), tenants and
other runs, the KV and its revisions, deadlines as numbers. A counter abstraction keeps
*how many* deadlines are behind, at or ahead of now, not their values, so it checks
whether the hint reports an earliest deadline, not which one: a wrong minimum (an
earliest deadline taken from a stale heap entry, say) is left to the lockstep machine's
`hint_equals_full_scan`. `capacity_concrete` checks that random impl steps fit the
relation and turns refutations into replayable traces.
"""
from __future__ import annotations

from typing import Any, Mapping

import z3

from meshspec.prove import Abstraction, State, Transition, inductive_over

VARIABLES = tuple((v, "int") for v in ("avail", "leased", "parked", "finished", "c_avail", "c_leased",
                                        "lapsed", "edge", "vanished", "early")) + (
    ("hint_ok", "bool"), ("earliest_ok", "bool"))
TRUE = z3.BoolVal(True)
PENDING = ("lapsed", "edge", "vanished")


def pending(s: State) -> Any:
    """Counted-leased shards without a live lease, not detected yet."""
    return s.lapsed + s.edge + s.vanished


def initial(s: State, p: State) -> z3.BoolRef:
    """A run just created: no shards, nothing counted."""
    return z3.And(*[s[v] == 0 for v, sort in VARIABLES if sort == "int"], s.hint_ok, s.earliest_ok)


def t(name: str, guard: Any, update: Any, params: tuple[str, ...] = ()) -> Transition:
    return Transition(name, guard, update, params)


def split_replace(children_counted: bool = True) -> Transition:
    """A live lease's parent retires (dropped from the leased count); n children are available."""
    def update(s: State, p: State) -> dict[str, Any]:
        out = {"leased": s.leased - 1, "finished": s.finished + 1, "c_leased": s.c_leased - 1,
               "avail": s.avail + p.n}
        return {**out, "c_avail": s.c_avail + p.n} if children_counted else out

    return t("split_replace", lambda s, p: z3.And(s.leased - s.early >= 1, p.n >= 1), update, ("n",))


def terminal(name: str, into: str, drops_deadline: bool = True) -> Transition:
    """complete (→ Done) / park_shard (→ Parked) of a live lease: the shard leaves the leased count."""
    return t(name, lambda s, p: s.leased - s.early >= 1, lambda s, p: {
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


def acquire_pending(cls: str) -> Transition:
    """An acquire of a shard whose lapsed (or vanished) lease the counters have not detected:
    the new lease replaces its counted deadline, so no counter moves."""
    return t(f"acquire_{cls}", lambda s, p: z3.And(s.avail >= 1, s[cls] >= 1), lambda s, p: {
        "avail": s.avail - 1, "leased": s.leased + 1, cls: s[cls] - 1})


def advance_time(renew_lags: bool = False) -> Transition:
    """Time passes (`d` = 1; `d` = 0 is no time). Of the live leases with an up-to-date
    counted deadline, `ke` reach it exactly and `kp` pass it; every earlier edge is now
    past; of the vanished owners' deadlines, `ve` arrive exactly and `vp` pass; `je` early
    leases really lapse. With `renew_lags` (RenewKeepsOldDeadline) `j` renewed live leases
    see their stale counted deadline arrive while the record's is still ahead."""
    names = ("d", "ke", "kp", "ve", "vp", "j", "je")

    def guard(s: State, p: State) -> z3.BoolRef:
        fresh_live = s.leased - s.early
        return z3.And(0 <= p.d, p.d <= 1, *[p[n] >= 0 for n in names[1:]],
                      z3.Implies(p.d == 0, z3.And(*[p[n] == 0 for n in names[1:]])),
                      p.ke + p.kp + p.j <= fresh_live, p.ve + p.vp <= s.vanished, p.je <= s.early,
                      TRUE if renew_lags else p.j == 0)

    def update(s: State, p: State) -> dict[str, Any]:
        lapse = p.ke + p.kp + p.je
        return {"leased": s.leased - lapse, "avail": s.avail + lapse,
                "edge": z3.If(p.d == 1, 0, s.edge) + p.ke + p.ve,
                "lapsed": s.lapsed + z3.If(p.d == 1, s.edge, 0) + p.kp + p.vp + p.je,
                "vanished": s.vanished - p.ve - p.vp, "early": s.early + p.j - p.je}

    return t("advance_time", guard, update, names)


ALL, PAST_ONLY, NO_DEADLINES = "all", "past only", "none"


def hint_read(deadlines: str = ALL, owners: bool = True, earliest: bool = True) -> Transition:
    """capacity_hint: detect every counted deadline ≤ now (`deadlines`: ExpiryOffByOne misses
    those equal to now, ExpiryNeverDetected and LightweightCount detect none) and every
    vanished owner key (`owners`), then answer; the monitors compare the answer with the
    scan. `earliest=False`: no earliest deadline is reported (LightweightCount)."""
    def update(s: State, p: State) -> dict[str, Any]:
        by_deadline = {ALL: ("lapsed", "edge", "early"), PAST_ONLY: ("lapsed", "early"), NO_DEADLINES: ()}[deadlines]
        detected = (*by_deadline, *(("vanished",) if owners else ()))
        n = sum((s[v] for v in detected), z3.IntVal(0))
        c_avail, c_leased = s.c_avail + n, s.c_leased - n
        reports = c_leased >= 1 if earliest else z3.BoolVal(False)
        return {"c_avail": c_avail, "c_leased": c_leased, **{v: 0 for v in detected},
                "hint_ok": z3.And(s.hint_ok, c_avail == s.avail),
                "earliest_ok": z3.And(s.earliest_ok, reports == (s.leased >= 1))}

    return t("hint_read", lambda s, p: TRUE, update)


TRANSITIONS = (
    t("stutter", lambda s, p: TRUE, lambda s, p: {}),
    t("register", lambda s, p: p.n >= 0, lambda s, p: {"avail": s.avail + p.n, "c_avail": s.c_avail + p.n},
      ("n",)),
    t("acquire_counted", lambda s, p: z3.And(s.avail >= 1, s.c_avail >= 1), lambda s, p: {
        "avail": s.avail - 1, "leased": s.leased + 1, "c_avail": s.c_avail - 1, "c_leased": s.c_leased + 1}),
    *[acquire_pending(cls) for cls in PENDING],
    t("renew", lambda s, p: s.leased >= 1, lambda s, p: {}),
    advance_time(),
    t("vanish", lambda s, p: s.leased - s.early >= 1, lambda s, p: {
        "leased": s.leased - 1, "avail": s.avail + 1, "vanished": s.vanished + 1}),
    t("detect", lambda s, p: z3.And(*[z3.And(0 <= p[v], p[v] <= s[v]) for v in PENDING]), lambda s, p: {
        "c_avail": s.c_avail + p.lapsed + p.edge + p.vanished,
        "c_leased": s.c_leased - p.lapsed - p.edge - p.vanished,
        **{v: s[v] - p[v] for v in PENDING}}, PENDING),
    hint_read(),
    terminal("complete", "finished"),
    terminal("park_shard", "parked"),
    split_replace(),
    becomes_available("split_residual", lambda s, p: s.leased - s.early >= 1),
    t("unpark", lambda s, p: s.parked >= 1, lambda s, p: {
        "parked": s.parked - 1, "avail": s.avail + 1, "c_avail": s.c_avail + 1}),
    cas_failed(),
    revoke_prior(),
)

INVARIANTS: Mapping[str, Any] = {
    "counters_equal_full_scan": lambda s: z3.And(s.c_avail + pending(s) == s.avail,
                                                 s.c_leased - pending(s) == s.leased),
    "stale_within_counted": lambda s: z3.And(*[s[v] >= 0 for v in (*PENDING, "early")],
                                             pending(s) + s.early <= s.c_leased),
    "counts_non_negative": lambda s: z3.And(*[s[v] >= 0 for v in ("avail", "leased", "parked", "finished", "c_avail")]),
    "hint_equals_full_scan": lambda s: z3.And(s.hint_ok, s.earliest_ok),
    "counters_in_step": lambda s: s.early == 0,
}

ABSTRACTION = Abstraction("capacity", VARIABLES, initial, (), TRANSITIONS, INVARIANTS)


inductive = inductive_over(ABSTRACTION)


PROOFS = (
    inductive("capacity.counters_equal_full_scan",
              "per-run counters + undetected expiries = the full scan after every commit (a failed txn commits nothing)",
              "counters_equal_full_scan", "counters_in_step"),
    inductive("capacity.undetected_expiries_are_counted_leased",
              "every lapsed lease not yet detected is among the counted-leased shards",
              "stale_within_counted", "counters_equal_full_scan", "counts_non_negative", "counters_in_step"),
    inductive("capacity.hint_equals_full_scan",
              "a hint detects every expiry due (deadline ≤ now, vanished owner) and answers the scan's count, "
              "with an earliest deadline iff a lease is live",
              "hint_equals_full_scan", "counters_equal_full_scan", "counters_in_step", "counts_non_negative"),
)

MUTANTS = "mutants.capacity"
VARIANTS: tuple = tuple(
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

# The time mutants: what a hint detects, and a counted deadline that lags a renewal.
VARIANTS += tuple(
    (inductive(name, f"hint = full scan ({what})", "hint_equals_full_scan", "counters_equal_full_scan",
               abstraction=ABSTRACTION.variant(change)), f"{MUTANTS}:{cls}")
    for name, what, change, cls in (
        ("expiry_never_detected", "no expiry is ever detected", hint_read(NO_DEADLINES, owners=False),
         "ExpiryNeverDetected"),
        ("vanished_owner_not_detected", "owner keys deleted by etcd are not noticed", hint_read(owners=False),
         "VanishedOwnerNotDetected"),
        ("expiry_off_by_one", "a deadline equal to now is not detected", hint_read(PAST_ONLY), "ExpiryOffByOne"),
        ("lightweight_count", "no deadline detection, no earliest deadline",
         hint_read(NO_DEADLINES, earliest=False), "LightweightCount"),
    )) + (
    (inductive("renew_keeps_old_deadline", "counters = full scan (a renewal keeps the counted deadline)",
               "counters_equal_full_scan", abstraction=ABSTRACTION.variant(advance_time(renew_lags=True))),
     f"{MUTANTS}:RenewKeepsOldDeadline"),
    (inductive("revoke_decrements_strands_expiries",
               "undetected expiries ≤ counted-leased shards (revoking the prior lease un-counts a lease)",
               "stale_within_counted", abstraction=ABSTRACTION.variant(revoke_prior(decrements=True))),
     f"{MUTANTS}:RevokeDecrements"),
)
