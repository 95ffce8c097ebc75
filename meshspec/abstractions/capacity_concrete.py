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

from typing import Any, Mapping


from impl.capacity import EtcdCoordinator as ImplCoordinator
from meshspec import registry, traces
from meshspec.abstractions import replaying
from meshspec.abstractions.replaying import ConcreteStep, Concrete, Refutation, differs
from meshspec.lockstep import Subject
from meshspec.prove import Path, Scalar
from model import capacity as M
from properties.capacity import TENANT

RUN = 1
#: The abstract transitions one Subject rule may take, in up to MAX_STEPS steps (with stutter).
RULE_TRANSITIONS = {
    "register_shards": ("register",),
    "acquire": ("detect", "acquire_counted", "acquire_stale", "revoke_prior", "cas_failed"),
    "claim": ("detect", "acquire_counted", "acquire_stale", "revoke_prior", "cas_failed"),
    "renew": ("renew", "cas_failed"), "complete": ("complete",), "park_shard": ("park_shard",),
    "split_replace": ("split_replace",), "split_residual": ("split_residual",),
    "unpark_shard": ("unpark",), "capacity_hint": ("detect",), "advance_clock": ("expire",),
    "expire_lease": ("expire",),
}
MAX_STEPS = 3


def concrete_state(subject: Subject) -> dict[str, Scalar]:
    subject._view = None  # rules called directly do not move `last`, which keys the view cache
    by_id = {shard: v for (run, shard), v in subject.view().shards.items() if run == RUN}
    shards = list(by_id.values())
    active = [v for v in shards if v.record.status is M.ShardStatus.ACTIVE]
    live = {shard for shard, v in by_id.items() if v.record.status is M.ShardStatus.ACTIVE and subject.live(v)}
    rs = subject.sut._runs.get((TENANT, RUN))
    deadlines = set(rs.deadlines) if rs is not None else set()
    return {"avail": len(active) - len(live), "leased": len(live),
            "parked": sum(v.record.status is M.ShardStatus.PARKED for v in shards),
            "finished": sum(v.record.status in (M.ShardStatus.DONE, M.ShardStatus.SPLIT) for v in shards),
            "c_avail": rs.available if rs is not None else 0, "c_leased": len(deadlines),
            "stale": len(deadlines - live)}



def random_call(rng: Any, subject: Subject) -> tuple[str, dict[str, Any]]:
    leases = len(subject.leases)
    index = rng.choice([leases - 1, rng.randrange(leases)]) if leases else -1
    shard, op_id = rng.randint(1, 4), rng.randint(1, 10**6)
    token = {"index": index, "forge": "", "op_id": op_id, "interference": rng.choice(["", "", "rewrite@0"])}
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
        ("capacity_hint", {"run": RUN}), ("advance_clock", {"ns": rng.choice([0, 500, 1000, 5000])}),
        ("expire_lease", {"run": RUN, "shard": shard}),
    ])


def random_run(rng: Any, length: int, cls: type = ImplCoordinator) -> list[ConcreteStep]:
    comp = registry.get_component("capacity")
    subject = comp.subject_cls(cls, "model")  # the "model" side always runs on the embedded etcd
    subject.init(retries=3, max_children=4, shards=0, duration=1_000, revocations_fail=False)
    out = []
    for _ in range(length):
        call = random_call(rng, subject)
        pre = concrete_state(subject)
        try:
            getattr(subject, call[0])(**call[1])
        except comp.errors:
            pass
        out.append(ConcreteStep(call[0], call[1], pre, concrete_state(subject)))
    return out


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


def calls_for(transition: str, params: Mapping[str, int], subject: Subject, op_id: int) -> list[tuple[str, dict]]:
    """The Subject rule calls that perform one abstract transition on run 1 (maybe none).

    A failed compare is forced with the harness's interferer (`rewrite@0`); a prior lease is
    revoked when a lapsed lease's shard is taken over by another worker."""
    token = _token(subject, op_id)
    table: dict[str, list[tuple[str, dict]]] = {
        "register": [("register_shards", {"run": RUN, "count": params.get("n", 0), "flavor": "ok",
                                          "op_id": op_id, "interference": ""})] if params.get("n") else [],
        "acquire_counted": [("claim", {"run": RUN, "worker": 1, "interference": ""})],
        "acquire_stale": [("claim", {"run": RUN, "worker": 2, "interference": ""})],
        "renew": [("renew", {"index": token["index"], "forge": "", "interference": ""})],
        "expire": [("advance_clock", {"ns": DURATION})] if params.get("k") else [],
        "detect": [("capacity_hint", {"run": RUN})],
        "complete": [("complete", {**token, "pos": "next"})],
        "park_shard": [("park_shard", {**token, "reason": 0})],
        "split_replace": [("split_replace", {**token, "parts": max(2, params.get("n", 2)), "shape": "ok"})],
        "split_residual": [("split_residual", {**token, "shape": "ok"})],
        "unpark": [("unpark_shard", {"run": RUN, "shard": _parked(subject), "op_id": op_id, "interference": ""})],
        "cas_failed": [("renew", {"index": token["index"], "forge": "", "interference": "rewrite@0"})
                       if subject.leases else ("register_shards", {"run": RUN, "count": 1, "flavor": "ok",
                                                                   "op_id": op_id, "interference": "rewrite@0"})],
        "revoke_prior": [("advance_clock", {"ns": DURATION}),
                         ("acquire", {"run": RUN, "shard": _leased_shard(subject), "worker": 3, "tenant": "own",
                                      "interference": ""})],
    }
    return table.get(transition, [])


def _leased_shard(subject: Subject) -> int:
    return subject.leases[-1].shard if subject.leases else 1


def concretize(path: Path, cls: type) -> Concrete:
    comp = registry.get_component("capacity")
    subject = comp.subject_cls(cls, "model")
    calls: list[tuple[str, dict]] = [("init", dict(INIT))]
    subject.init(**INIT)
    divergence = ""
    for index, step in enumerate(path.steps):
        for call in calls_for(step.transition, step.params, subject, 100 + index):
            calls.append(call)
            try:
                getattr(subject, call[0])(**call[1])
            except comp.errors:
                pass
        divergence = divergence or differs(index, step.transition, step.state, concrete_state(subject))
    return Concrete(traces.validate_steps(comp, calls), divergence)


def refutation(path: Path, impl: str, invariant: str) -> Refutation:
    machine = {"counters_equal_full_scan": "hint_equals_full_scan"}
    return replaying.refutation("capacity", concretize, machine, path, impl, invariant)
