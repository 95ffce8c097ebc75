"""The capacity abstraction meets the optimized coordinator: concrete states of run 1.

The scan side is read off the raw KV (`CapacitySubject.view()`, owner liveness by
`CapacitySubject.live`), the counter side off the impl's per-run counters (`_runs`):
the available counter, the shards with a counted deadline, and which of those no longer
have a live lease (`stale`). `random_run` drives an impl subject (on the embedded etcd
model) through random calls on run 1, each recorded with the state before and after.
`concretize` maps an abstract path to rule calls on run 1 (a failed compare forced by
the harness's interferer, a prior lease revoked by taking over a lapsed lease), for
`replaying.refutation`.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional

import attrs


from impl.capacity import EtcdCoordinator as ImplCoordinator
from meshspec import registry, traces
from meshspec.abstractions import replaying
from meshspec.abstractions.replaying import ConcreteStep, Concrete, Refutation, differs
from meshspec.lockstep import Subject
from meshspec.prove import Path, Scalar
from model import capacity as M
from properties.capacity import TENANT, full_scan_hint

RUN = 1
#: The abstract transitions one Subject rule may take, in up to MAX_STEPS steps (with stutter).
ACQUIRE = ("detect", "acquire_counted", "acquire_lapsed", "acquire_edge", "acquire_vanished", "revoke_prior",
           "cas_failed")
RULE_TRANSITIONS = {
    "register_shards": ("register",), "acquire": ACQUIRE, "claim": ACQUIRE,
    "renew": ("renew", "cas_failed"), "complete": ("complete",), "park_shard": ("park_shard",),
    "split_replace": ("split_replace",), "split_residual": ("split_residual",),
    "unpark_shard": ("unpark",), "capacity_hint": ("hint_read",), "advance_clock": ("advance_time",),
    "expire_lease": ("vanish",),
}
MAX_STEPS = 3


@attrs.define
class Monitor:
    """The monitor flags: each capacity_hint answer against the full scan at that moment."""

    hint_ok: bool = True
    earliest_ok: bool = True

    def after(self, subject: Subject, rule: str, result: Any) -> None:
        if rule == "capacity_hint" and isinstance(result, M.CapacityHint):
            subject._view = None
            want = full_scan_hint(subject, RUN)
            self.hint_ok = self.hint_ok and result.available_count == want.available_count
            self.earliest_ok = self.earliest_ok and \
                (result.earliest_deadline is None) == (want.earliest_deadline is None)


def concrete_state(subject: Subject, monitor: Optional[Monitor] = None) -> dict[str, Scalar]:
    monitor = monitor or Monitor()
    subject._view = None  # rules called directly do not move `last`, which keys the view cache
    by_id = {shard: v for (run, shard), v in subject.view().shards.items() if run == RUN}
    shards = list(by_id.values())
    active = [v for v in shards if v.record.status is M.ShardStatus.ACTIVE]
    live = {shard for shard, v in by_id.items() if v.record.status is M.ShardStatus.ACTIVE and subject.live(v)}
    rs = subject.sut._runs.get((TENANT, RUN))
    deadlines = dict(rs.deadlines) if rs is not None else {}
    now = subject.clock()
    classes = {"lapsed": 0, "edge": 0, "vanished": 0, "early": 0}
    for shard, counted in deadlines.items():
        if shard in live:
            classes["early"] += counted <= now
        elif counted < now:
            classes["lapsed"] += 1
        elif counted == now:
            classes["edge"] += 1
        else:
            classes["vanished"] += 1   # owner key gone (or no lease) while the deadline is ahead
    return {"avail": len(active) - len(live), "leased": len(live),
            "parked": sum(v.record.status is M.ShardStatus.PARKED for v in shards),
            "finished": sum(v.record.status in (M.ShardStatus.DONE, M.ShardStatus.SPLIT) for v in shards),
            "c_avail": rs.available if rs is not None else 0, "c_leased": len(deadlines), **classes,
            "hint_ok": monitor.hint_ok, "earliest_ok": monitor.earliest_ok}


def _to_next_deadline(subject: Subject) -> Optional[int]:
    """ns until the earliest live lease's deadline (None without a live lease)."""
    now = subject.clock()
    ahead = [v.record.lease.deadline - now for v in subject.view().shards.values() if subject.live(v)]
    return min(ahead, default=None)


def random_call(rng: Any, subject: Subject) -> tuple[str, dict[str, Any]]:
    leases = len(subject.leases)
    index = rng.choice([leases - 1, rng.randrange(leases)]) if leases else -1
    shard, op_id = rng.randint(1, 4), rng.randint(1, 10**6)
    token = {"index": index, "forge": "", "op_id": op_id, "interference": rng.choice(["", "", "rewrite@0"])}
    subject._view = None
    to_deadline = _to_next_deadline(subject) or 1
    return rng.choice([
        ("register_shards", {"run": RUN, "count": rng.randint(1, 3), "flavor": "ok", "op_id": op_id,
                             "interference": ""}),
        ("acquire", {"run": RUN, "shard": shard, "worker": rng.randint(1, 3), "tenant": "own",
                     "interference": rng.choice(["", "swap@0"])}),
        ("claim", {"run": RUN, "worker": rng.randint(1, 3), "interference": ""}),
        ("claim", {"run": RUN, "worker": rng.randint(1, 3), "interference": ""}),
        ("renew", {k: token[k] for k in ("index", "forge", "interference")}),
        ("complete", {**token, "pos": "next"}), ("park_shard", {**token, "reason": 0}),
        ("split_replace", {**token, "parts": 2, "shape": "ok"}), ("split_residual", {**token, "shape": "ok"}),
        ("unpark_shard", {"run": RUN, "shard": shard, "op_id": op_id, "interference": ""}),
        ("capacity_hint", {"run": RUN}), ("capacity_hint", {"run": RUN}),
        ("advance_clock", {"ns": rng.choice([0, 500, 1000, 5000, to_deadline, to_deadline, to_deadline + 1])}),
        ("expire_lease", {"run": RUN, "shard": shard}),
        ("expire_lease", {"run": RUN, "shard": subject.leases[index].shard if leases else shard}),
    ])


def random_run(rng: Any, length: int, cls: type = ImplCoordinator) -> list[ConcreteStep]:
    comp = registry.get_component("capacity")
    subject = comp.subject_cls(cls, "model")  # the "model" side always runs on the embedded etcd
    subject.init(retries=3, max_children=4, shards=0, duration=1_000, revocations_fail=False)
    out, monitor = [], Monitor()
    for _ in range(length):
        call = random_call(rng, subject)
        pre = concrete_state(subject, monitor)
        _call(subject, monitor, call)
        out.append(ConcreteStep(call[0], call[1], pre, concrete_state(subject, monitor)))
    return out


def _call(subject: Subject, monitor: Monitor, call: tuple[str, dict]) -> None:
    try:
        result = getattr(subject, call[0])(**call[1])
    except registry.get_component("capacity").errors:
        result = None
    monitor.after(subject, call[0], result)


# --------------------------------------------------------------------------------------
# Concretizing an abstract path (on the class the variant stands for)
# --------------------------------------------------------------------------------------

DURATION = 1_000
INIT = {"retries": 3, "max_children": 4, "shards": 0, "duration": DURATION, "revocations_fail": False}


def _last_lease(subject: Subject) -> int:
    return len(subject.leases) - 1


def _token(subject: Subject, op_id: int, interference: str = "") -> dict[str, Any]:
    return {"index": _last_lease(subject), "forge": "", "op_id": op_id, "interference": interference}


def _parked(subject: Subject) -> int:
    parked = [s for (run, s), v in subject.view().shards.items()
              if run == RUN and v.record.status is M.ShardStatus.PARKED]
    return min(parked, default=1)


def calls_for(transition: str, params: Mapping[str, int], subject: Subject, op_id: int) -> Iterator[tuple[str, dict]]:
    """The Subject rule calls that perform one abstract transition on run 1 (maybe none),
    yielded one at a time: each is made before the next is chosen.

    A failed compare is forced with the harness's interferer (`rewrite@0`); a prior lease is
    revoked when a lapsed lease's shard is taken over by another worker. Time goes to the
    earliest live deadline (exactly, or one past it); a renewed lease whose counted deadline
    lags (RenewKeepsOldDeadline) is made by renewing half a lease in, then reaching the old
    deadline."""
    token = _token(subject, op_id)
    if transition == "advance_time":
        yield from _advance(params, subject, op_id)
        return
    table: dict[str, list[tuple[str, dict]]] = {
        "register": [("register_shards", {"run": RUN, "count": params.get("n", 0), "flavor": "ok",
                                          "op_id": op_id, "interference": ""})] if params.get("n") else [],
        "acquire_counted": [("claim", {"run": RUN, "worker": 1, "interference": ""})],
        **{f"acquire_{cls}": [("claim", {"run": RUN, "worker": 2, "interference": ""})]
           for cls in ("lapsed", "edge", "vanished")},
        "renew": [("renew", {"index": token["index"], "forge": "", "interference": ""})],
        "vanish": [("expire_lease", {"run": RUN, "shard": _leased_shard(subject)})],
        "detect": [("capacity_hint", {"run": RUN})],
        "hint_read": [("capacity_hint", {"run": RUN})],
        "complete": [("complete", {**token, "pos": "next"})],
        "park_shard": [("park_shard", {**token, "reason": 0})],
        "split_replace": [("split_replace", {**token, "parts": min(max(2, params.get("n", 2)), INIT["max_children"]),
                                             "shape": "ok"})],
        "split_residual": [("split_residual", {**token, "shape": "ok"})],
        "unpark": [("unpark_shard", {"run": RUN, "shard": _parked(subject), "op_id": op_id, "interference": ""})],
        "cas_failed": [("renew", {"index": token["index"], "forge": "", "interference": "rewrite@0"})
                       if subject.leases else ("register_shards", {"run": RUN, "count": 1, "flavor": "ok",
                                                                   "op_id": op_id, "interference": "rewrite@0"})],
        "revoke_prior": [("advance_clock", {"ns": DURATION}),
                         ("acquire", {"run": RUN, "shard": _leased_shard(subject), "worker": 3, "tenant": "own",
                                      "interference": ""})],
    }
    yield from table.get(transition, [])


def _advance(params: Mapping[str, int], subject: Subject, op_id: int) -> Iterator[tuple[str, dict]]:
    if not params.get("d"):
        return
    subject._view = None
    if params.get("j"):  # renew half a lease in, then reach the deadline the lease had before
        old = _to_next_deadline(subject)
        if old is not None:
            yield ("advance_clock", {"ns": DURATION // 2})
            yield ("renew", {"index": _last_lease(subject), "forge": "", "interference": ""})
            yield ("advance_clock", {"ns": old - DURATION // 2})
            return
    nxt = _to_next_deadline(subject)
    past = 1 if params.get("kp") or params.get("je") or params.get("vp") else 0
    yield ("advance_clock", {"ns": (nxt + past) if nxt is not None and (params.get("ke") or past) else 1})


def _leased_shard(subject: Subject) -> int:
    return subject.leases[-1].shard if subject.leases else 1


def concretize(path: Path, cls: type) -> Concrete:
    comp = registry.get_component("capacity")
    subject, monitor = comp.subject_cls(cls, "model"), Monitor()
    calls: list[tuple[str, dict]] = [("init", dict(INIT))]
    subject.init(**INIT)
    divergence = ""
    for index, step in enumerate(path.steps):
        for call in calls_for(step.transition, step.params, subject, 100 + index):
            calls.append(call)
            _call(subject, monitor, call)
        divergence = divergence or differs(index, step.transition, step.state, concrete_state(subject, monitor))
    return Concrete(traces.validate_steps(comp, calls), divergence)


def refutation(path: Path, impl: str, invariant: str) -> Refutation:
    machine = {"counters_equal_full_scan": "hint_equals_full_scan", "stale_within_counted": "hint_equals_full_scan",
               "hint_equals_full_scan": "hint_equals_full_scan"}
    return replaying.refutation("capacity", concretize, machine, path, impl, invariant)
