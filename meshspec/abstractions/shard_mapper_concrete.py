"""The shard mapper abstraction meets the Python classes: concrete states and replayable traces.

`concrete_state` reads the abstract variables off a `ShardMapperSubject` (counts by
state, the allocator, the policy, the clock and the harness's ghost checks).
`concretize` turns an abstract path (a z3 model) into Subject rule calls: an abstract
`activate` or `drain_specific` picks the lowest-id Provisioning or Active shard of the
live mapper, `finalize_draining` and `remove_stopped` call the real operation (which
decides how many shards stop). `refutation` replays them (`replaying.refutation`).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional


from meshspec import registry, traces
from meshspec.abstractions import replaying
from meshspec.abstractions.replaying import ConcreteStep, Concrete, Refutation, differs
from meshspec.abstractions.shard_mapper import COUNTS, DOWN, MACHINE_INVARIANT, NONE, U16, UP
from meshspec.lockstep import Component, Subject
from meshspec.prove import Path, PathStep, Scalar
from model import shard_mapper as M

STATES = dict(zip(COUNTS, (M.ShardState.ACTIVE, M.ShardState.PROVISIONING, M.ShardState.DRAINING,
                           M.ShardState.STOPPED)))
KIND = {"none": NONE, "scale_up": UP, "scale_down": DOWN}
NO_ADVICE = {"adv_kind": NONE, "adv_n": 0, "adv_active": 0}


def component() -> Component:
    return registry.get_component("shard_mapper")


def concrete_state(subject: Subject, advice: Mapping[str, int]) -> dict[str, Scalar]:
    """The abstract variables of a live mapper; `advice` is the last evaluate_scaling answer."""
    policy, next_id, last_scaling, shards = subject.sut.abstract()
    states = [sh[1] for sh in shards]
    ids = subject.allocated
    return {**{c: states.count(s) for c, s in STATES.items()},
            "counted": subject.sut.active_shard_count(), "next_id": next_id,
            "last_id": ids[-1] if ids else next_id - 1, "lo": policy.min_shards, "hi": policy.max_shards,
            "cooldown": policy.cooldown_ns, "now": subject.clock(), "last": last_scaling or 0,
            "has_last": last_scaling is not None, "auto": policy.auto_scale,
            "floor_ok": subject.floor_violation is None,
            "ids_ok": all(a < b for a, b in zip(ids, ids[1:])) and U16 not in ids,
            "u16_ok": True, **advice}


def advice_after(rule: str, result: Any, active_before: int, advice: Mapping[str, int]) -> dict[str, int]:
    """The ghost advice variables after a rule: only evaluate_scaling changes them."""
    if rule != "evaluate_scaling" or not isinstance(result, M.ScalingDecision):
        return dict(advice)
    return {"adv_kind": KIND[result.kind], "adv_n": result.count, "adv_active": active_before}


def init_args(path: Path) -> dict[str, Any]:
    s, p = path.init, path.init_params
    return {"initial": p["initial"], "ring_capacity": 8, "preset": "default", "cpus": 4,
            "min_shards": s["lo"], "max_shards": p["max_raw"], "cooldown_ns": s["cooldown"],
            "auto_scale": bool(s["auto"]), "first_id": p["first_id"], "reentrant": False}


def _lowest(subject: Subject, state: M.ShardState) -> int:
    ids = [sh[0] for sh in subject.sut.abstract()[3] if sh[1] is state]
    return min(ids, default=M.NO_SHARD)


def rule_for(step: PathStep, subject: Subject) -> Optional[tuple[str, dict[str, Any]]]:
    """The Subject rule call that performs one abstract transition (None: nothing to do)."""
    t, p = step.transition, step.params
    if t in ("scale_up", "scale_up_provisioning", "scale_up_provisioning_force", "scale_down"):
        return t, {"count": p["count"]}
    simple = {"advance_time": ("advance_time", {"ns": p.get("ns")}),
              "activate": ("activate", {"shard_id": _lowest(subject, M.ShardState.PROVISIONING)}),
              "drain_specific": ("drain_specific", {"shard_id": _lowest(subject, M.ShardState.ACTIVE)}),
              "finalize_draining": ("finalize_draining", {}), "evaluate_scaling": ("evaluate_scaling", {})}
    if t in simple:
        return simple[t]
    if t == "remove_stopped" and p["k"] > 0:
        return "remove_stopped_shards", {}
    return None


def _metrics_for(step: PathStep) -> list[tuple[str, dict[str, Any]]]:
    """Before an evaluate_scaling that advises ScaleUp: a full ring on every shard
    (fill 1.0, over the default 0.7 threshold), collected, so the warm shards vote overloaded."""
    if step.transition != "evaluate_scaling" or step.state.get("adv_kind") != UP:
        return []
    return [("traffic", {"length": 8, "latency_ns": 0, "pushes": 0}), ("collect_metrics", {})]


def concretize(path: Path, cls: type) -> Concrete:
    """Rule calls for an abstract path, run on `cls` to pick ids and to compare each state."""
    comp = component()
    subject = comp.subject_cls(cls, "impl")
    calls: list[tuple[str, dict[str, Any]]] = [("init", init_args(path))]
    subject.init(**calls[0][1])
    advice, divergence = dict(NO_ADVICE), ""
    for index, step in enumerate(path.steps):
        call = rule_for(step, subject)
        for c in ([*_metrics_for(step), call] if call is not None else []):
            calls.append(c)
            advice = _apply(comp, subject, c, advice)
        divergence = divergence or differs(index, step.transition, step.state,
                                                   concrete_state(subject, advice))
    return Concrete(traces.validate_steps(comp, calls), divergence)


def _apply(comp: Component, subject: Subject, call: tuple[str, dict[str, Any]],
           advice: Mapping[str, int]) -> dict[str, int]:
    rule, kwargs = call
    before = subject.sut.active_shard_count()
    try:
        result = getattr(subject, rule)(**kwargs)
    except comp.errors:
        result = None
    return advice_after(rule, result, before, advice)


def refutation(path: Path, impl: str, invariant: str) -> Refutation:
    """Export an abstract counterexample as a trace and replay it against `impl`."""
    return replaying.refutation("shard_mapper", concretize, MACHINE_INVARIANT, path, impl, invariant)


# --------------------------------------------------------------------------------------
# Faithfulness: random concrete steps, each checked against the transition relation
# --------------------------------------------------------------------------------------

#: The abstract transitions a Subject rule may take; every rule may also stutter (refused).
RULE_TRANSITIONS = {
    "advance_time": ("advance_time",), "scale_up": ("scale_up",),
    "scale_up_provisioning": ("scale_up_provisioning",),
    "scale_up_provisioning_force": ("scale_up_provisioning_force",), "activate": ("activate",),
    "drain_specific": ("drain_specific",), "scale_down": ("scale_down",),
    "finalize_draining": ("finalize_draining",), "remove_specific_stopped_shard": ("remove_stopped",),
    "remove_stopped_shards": ("remove_stopped",), "evaluate_scaling": ("evaluate_scaling",),
}
TIME_STEPS = (0, 1, 100_000_000, 100_000_001, 1_000_000_000, 3600 * 1_000_000_000)


def random_init(rng: Any) -> dict[str, Any]:
    initial = rng.randint(0, 5)
    return {"initial": initial, "ring_capacity": rng.choice([0, 8]), "preset": "default", "cpus": 4,
            "min_shards": rng.choice([1, 1, 2]), "max_shards": rng.randint(0, 8),
            "cooldown_ns": rng.choice([1, 1_000_000_000]), "auto_scale": rng.random() < 0.8,
            "first_id": rng.choice([0, 5, U16 - 8 - initial]), "reentrant": False}


def random_call(rng: Any, subject: Subject) -> tuple[str, dict[str, Any]]:
    """One primitive rule with plausible arguments (known ids mostly, counts around the budget)."""
    known = subject.allocated or [0]
    sid = rng.choice(known) if rng.random() < 0.9 else rng.choice([M.NO_SHARD, max(known) + 1])
    count = rng.choice([0, 1, 1, 2, 3, 5])
    return rng.choice([
        ("advance_time", {"ns": rng.choice(TIME_STEPS)}), ("scale_up", {"count": count}),
        ("scale_up_provisioning", {"count": count}), ("scale_up_provisioning_force", {"count": count}),
        ("activate", {"shard_id": sid}), ("drain_specific", {"shard_id": sid}),
        ("scale_down", {"count": count}), ("evaluate_scaling", {}),
        ("finalize_draining", {}), ("finalize_draining", {}), ("remove_stopped_shards", {}),
        ("advance_time", {"ns": rng.choice(TIME_STEPS)}),
        ("remove_specific_stopped_shard", {"shard_id": sid}), ("remove_stopped_shards", {}),
        ("collect_metrics", {}), ("traffic", {"length": rng.choice([0, 0, 3]),
                                              "latency_ns": rng.choice([0, 50]), "pushes": rng.choice([0, 0, 0, 2])}),
        ("inject_weight", {"shard_id": sid, "weight": rng.choice([0.0, 1.0, 50.0])}),
        ("select_shard", {"event_hash": rng.getrandbits(64)}),
    ])



def random_run(rng: Any, length: int, cls: type = M.ShardMapper) -> list[ConcreteStep]:
    """Drive a mapper through `length` random rule calls; refused calls are steps too."""
    comp = component()
    subject = comp.subject_cls(cls, "model")
    subject.init(**random_init(rng))
    advice, out = dict(NO_ADVICE), []
    for _ in range(length):
        call = random_call(rng, subject)
        pre = concrete_state(subject, advice)
        advice = _apply(comp, subject, call, advice)
        out.append(ConcreteStep(call[0], call[1], pre, concrete_state(subject, advice)))
    return out
