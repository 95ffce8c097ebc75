"""The group coordinator abstraction meets the optimized coordinator: states, random runs, traces.

`concrete_state` counts healthy and unhealthy members and reads the impl's cached count
(`_healthy`; a class without one, like the model, is its own scan). Abstract steps map to
Subject rules acting on a member that fits: the lowest position whose index field is its
position (the #158 guard lets the call act) and whose health is the one the step needs.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional


from impl.group_coordinator import GroupCoordinator as ImplCoordinator
from meshspec import registry, traces
from meshspec.abstractions import replaying
from meshspec.abstractions.group_coordinator import MACHINE_INVARIANT
from meshspec.abstractions.replaying import ConcreteStep, Concrete, Refutation, differs
from meshspec.lockstep import Subject
from meshspec.prove import Path, PathStep, Scalar
from properties.group_coordinator import NODES

INIT = {"strategy": "round_robin", "max_connections": 10000, "prefill": 0, "prefill_down": 0,
        "node_masks": (0, 0, 0, 0, 0), "local_mask": 0}
RULE_TRANSITIONS = {
    "add_member": ("add_member",), "remove_last": ("remove_last",), "mark_healthy": ("mark_healthy",),
    "mark_unhealthy": ("mark_unhealthy", "mark_unhealthy_again"),
    "update_member_placement": ("update_member_placement",), "on_node_recovery": ("on_node_recovery",),
}


def concrete_state(subject: Subject) -> dict[str, Scalar]:
    members = subject.sut.members()
    healthy = sum(m.healthy for m in members)
    return {"healthy": healthy, "unhealthy": len(members) - healthy,
            "cached": getattr(subject.sut, "_healthy", healthy)}


def _slot(subject: Subject, healthy: bool) -> int:
    """The first position the guard lets act whose member has the wanted health (else 0)."""
    members = subject.sut.members()
    return next((pos for pos, m in enumerate(members) if m.index == pos and m.healthy == healthy), 0)


def calls_for(step: PathStep, subject: Subject, fresh: int) -> list[tuple[str, dict[str, Any]]]:
    t, p = step.transition, step.params
    down_node = next((m.node_id for m in subject.sut.members() if not m.healthy), NODES[0])
    n = len(subject.sut.members())
    table: dict[str, Optional[tuple[str, dict[str, Any]]]] = {
        "add_member": ("add_member", {"index": min(n, 255), "node": NODES[n % len(NODES)], "entity": fresh,
                                      "healthy": bool(p.get("up"))}),
        "remove_last": ("remove_last", {}),
        "mark_unhealthy": ("mark_unhealthy", {"index": _slot(subject, True)}),
        "mark_healthy": ("mark_healthy", {"index": _slot(subject, False)}),
        "mark_unhealthy_again": ("mark_unhealthy", {"index": _slot(subject, False)}),
        "update_member_placement": ("update_member_placement", {
            "index": _slot(subject, not p.get("was_down")), "node": NODES[0], "entity": fresh}),
        "on_node_recovery": ("on_node_recovery", {"node": down_node}) if p.get("k") else None,
    }
    call = table.get(t)
    return [call] if call is not None else []


def concretize(path: Path, cls: type) -> Concrete:
    comp = registry.get_component("group_coordinator")
    subject = comp.subject_cls(cls, "impl")
    calls: list[tuple[str, dict[str, Any]]] = [("init", dict(INIT))]
    subject.init(**INIT)
    subject.last = ("init", (), None)
    divergence = ""
    for index, step in enumerate(path.steps):
        for call in calls_for(step, subject, 1000 + index):
            calls.append(call)
            _call(subject, call)
        divergence = divergence or differs(index, step.transition, step.state, concrete_state(subject))
    return Concrete(traces.validate_steps(comp, calls), divergence)


def _call(subject: Subject, call: tuple[str, dict[str, Any]]) -> None:
    subject.last = (call[0], tuple(call[1].values()), None)  # as the lockstep core does: a new step
    try:
        getattr(subject, call[0])(**call[1])
    except registry.get_component("group_coordinator").errors:
        pass


def refutation(path: Path, impl: str, invariant: str) -> Refutation:
    return replaying.refutation("group_coordinator", concretize, MACHINE_INVARIANT, path, impl, invariant)



def random_run(rng: Any, length: int, cls: type = ImplCoordinator) -> list[ConcreteStep]:
    """Drive a coordinator through random membership and health calls (indices mostly dense)."""
    subject = registry.get_component("group_coordinator").subject_cls(cls, "impl")
    subject.init(**INIT)
    subject.last = ("init", (), None)
    out = []
    for i in range(length):
        n = len(subject.sut.members())
        index = rng.choice([n, max(n - 1, 0), rng.randrange(n + 1), rng.randrange(n + 1)])
        call = rng.choice([
            ("add_member", {"index": min(n, 255), "node": rng.choice(NODES), "entity": 1000 + i,
                            "healthy": rng.random() < 0.6}),
            ("remove_last", {}), ("mark_unhealthy", {"index": index}), ("mark_unhealthy", {"index": index}),
            ("mark_healthy", {"index": index}),
            ("update_member_placement", {"index": index, "node": rng.choice(NODES), "entity": 5000 + i}),
            ("on_node_recovery", {"node": rng.choice(NODES)}),
        ])
        pre = concrete_state(subject)
        _call(subject, call)
        out.append(ConcreteStep(call[0], call[1], pre, concrete_state(subject)))
    return out
