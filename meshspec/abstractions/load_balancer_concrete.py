"""The load balancer abstraction meets the Python classes: one endpoint, concrete states, traces.

The balancer is built with a single endpoint (POOL[0], weight 1, healthy, no tags, no
zone) under round robin, so an abstract `reserve` is a `select` with an empty context
and a completion is `record_completion(0, success)`. `concrete_state` reads the
endpoint's row of `abstract()` and the harness's probe check; `random_run` drives the
Subject through random calls (health changes included: a passed-over select stutters).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional


from meshspec import registry, traces
from meshspec.abstractions import replaying
from meshspec.abstractions.load_balancer import MACHINE_INVARIANT
from meshspec.abstractions.replaying import ConcreteStep, Concrete, Refutation, differs
from meshspec.lockstep import Subject
from meshspec.prove import Path, PathStep, Scalar
from model import load_balancer as M
from properties.load_balancer import rows_of

ENDPOINT = {"idx": 0, "weight": 1, "health": "healthy", "tags": [], "enabled": True, "zone": None,
            "metrics": [0, 0, 0, 0, 0]}
NO_CONTEXT = {"request_id": None, "session_id": None, "client_zone": None, "tags": [], "routing_key": None}
RULE_TRANSITIONS = {
    "select": ("reserve",), "advance_time": ("advance_time",), "add_endpoint": ("readd",),
    "record_completion": ("complete_success", "complete_failure"),
}


def init_args(cap: int, recovery_ns: int) -> dict[str, Any]:
    return {"strategy": "round_robin", "cap": cap, "zone_aware": False, "zone_fallback": False,
            "recovery_ns": recovery_ns, "rr_start": 0, "weak": False, "endpoints": [list(ENDPOINT.values())]}


def concrete_state(subject: Subject) -> dict[str, Scalar]:
    """The abstract variables of the balancer's only endpoint."""
    (row,) = rows_of(subject.sut.abstract())
    return {"conns": row.conns, "cap": subject.config.max_connections_per_endpoint, "consec": row.consec,
            "opened_at": row.opened_at or 0, "probe_at": row.probe_at or 0, "now": subject.clock(),
            "recovery": subject.recovery, "opened": row.opened_at is not None, "probe": row.probe,
            "probe_ok": "one_half_open_probe_per_recovery_cycle" not in subject.violations}


def rule_for(step: PathStep) -> Optional[tuple[str, dict[str, Any]]]:
    return {"advance_time": ("advance_time", {"ns": step.params.get("ns")}),
            "reserve": ("select", dict(NO_CONTEXT)),
            "complete_success": ("record_completion", {"idx": 0, "success": True}),
            "complete_failure": ("record_completion", {"idx": 0, "success": False}),
            "readd": ("add_endpoint", dict(ENDPOINT))}.get(step.transition)


def _call(subject: Subject, call: tuple[str, dict[str, Any]]) -> None:
    try:
        getattr(subject, call[0])(**call[1])
    except registry.get_component("load_balancer").errors:
        pass


def concretize(path: Path, cls: type) -> Concrete:
    comp = registry.get_component("load_balancer")
    subject = comp.subject_cls(cls, "impl")
    calls: list[tuple[str, dict[str, Any]]] = [("init", init_args(path.init["cap"], path.init_params["recovery_ns"]))]
    subject.init(**calls[0][1])
    divergence = ""
    for index, step in enumerate(path.steps):
        call = rule_for(step)
        if call is not None:
            calls.append(call)
            _call(subject, call)
        divergence = divergence or differs(index, step.transition, step.state, concrete_state(subject))
    return Concrete(traces.validate_steps(comp, calls), divergence)


def refutation(path: Path, impl: str, invariant: str) -> Refutation:
    return replaying.refutation("load_balancer", concretize, MACHINE_INVARIANT, path, impl, invariant)



def random_call(rng: Any) -> tuple[str, dict[str, Any]]:
    return rng.choice([
        ("select", dict(NO_CONTEXT)), ("select", dict(NO_CONTEXT)),
        ("record_completion", {"idx": 0, "success": rng.random() < 0.4}),
        ("record_completion", {"idx": 0, "success": False}),
        ("advance_time", {"ns": rng.choice([0, 1, 999_999, 1_000_000, 5_000_000])}),
        ("add_endpoint", dict(ENDPOINT)) if rng.random() < 0.3 else ("select", dict(NO_CONTEXT)),
        ("update_health", {"idx": 0, "health": rng.choice(["healthy", "unhealthy", "degraded"])}),
    ])


def random_run(rng: Any, length: int, cls: type = M.LoadBalancer) -> list[ConcreteStep]:
    """Drive a one-endpoint balancer through `length` random rule calls."""
    subject = registry.get_component("load_balancer").subject_cls(cls, "model")
    subject.init(**init_args(rng.choice([0, 1, 2, 3]), rng.choice([0, 1_000_000, 3_000_000])))
    out = []
    for _ in range(length):
        call = random_call(rng)
        pre = concrete_state(subject)
        _call(subject, call)
        out.append(ConcreteStep(call[0], call[1], pre, concrete_state(subject)))
    return out
