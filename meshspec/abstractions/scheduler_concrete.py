"""The scheduler abstraction meets the Python classes: concrete states, random runs, traces.

The local node is 1. `concrete_state` counts the indexed nodes and those carrying the
migration tag (a scan of `abstract()`), reads the impl's posting list for the tag
(`_by_tag`; a class without an index, like the model, is its own scan), the local
capabilities and the drain flag; the two monitor flags are kept by a `Monitor` that
checks each placement (`locality`) and each migration-target answer against a scan,
as the machine's invariants do. Abstract steps map to Subject rules on the node that
fits (the lowest id indexed with or without the tag); placements use the tag as filter,
migration queries an empty daemon filter.
"""
from __future__ import annotations

from typing import Any, Optional

import attrs

from impl.scheduler import Scheduler as ImplScheduler
from meshspec import registry, traces
from meshspec.abstractions import replaying
from meshspec.abstractions.replaying import Concrete, ConcreteStep, Refutation, differs
from meshspec.abstractions.scheduler import DRAINED, MACHINE_INVARIANT, NONE, NOT_DRAINED
from meshspec.lockstep import Subject
from meshspec.prove import Path, PathStep, Scalar
from properties.scheduler import MIG, NODES, TAGS

LOCAL = 1
REMOTE = tuple(n for n in NODES if n != LOCAL)
INIT = {"local": LOCAL, "local_tags": (), "nodes": (), "drained": False}
FLAG = {NONE: None, DRAINED: True, NOT_DRAINED: False}
RULE_TRANSITIONS = {
    "add_node": ("add_node",), "remove_node": ("remove_node",), "add_tag": ("add_tag",),
    "remove_tag": ("remove_tag",), "set_local_caps": ("set_local_caps",), "set_drained": ("set_drained",),
    "place": ("place",), "place_with_locality": ("place",), "find_migration_targets": ("migration_query",),
}


@attrs.define
class Monitor:
    """The abstraction's monitor flags, kept from the Subject's ghost records after each call."""

    mig_ok: bool = True
    drain_ok: bool = True

    def after(self, subject: Subject, rule: str, result: Any) -> None:
        if rule in ("place", "place_with_locality") and subject.locality is not None:
            drained, node, _ = subject.locality
            self.drain_ok = self.drain_ok and not (drained and node == subject.local)
        if rule == "find_migration_targets" and isinstance(result, list):
            source = subject.migration[0]
            self.mig_ok = self.mig_ok and len(result) == len(subject._scan((MIG,), (source,)))


def concrete_state(subject: Subject, monitor: Monitor) -> dict[str, Scalar]:
    _, local_tags, drained, nodes = subject.sut.abstract()
    capable = sum(MIG in tags for _, tags in nodes)
    index = getattr(subject.sut, "_by_tag", None)
    return {"nodes": len(nodes), "capable": capable,
            "posting": capable if index is None else len(index.get(MIG, ())),
            "local_match": MIG in local_tags, "drained": drained,
            "mig_ok": monitor.mig_ok, "drain_ok": monitor.drain_ok}


def _indexed(subject: Subject, up: bool) -> Optional[int]:
    """The lowest indexed node that carries the tag (`up`) or not."""
    return next((n for n, tags in subject.sut.abstract()[3] if (MIG in tags) == up), None)


def _fresh(subject: Subject) -> int:
    taken = {n for n, _ in subject.sut.abstract()[3]}
    return next(n for n in REMOTE if n not in taken)


def calls_for(step: PathStep, subject: Subject) -> list[tuple[str, dict[str, Any]]]:
    t, p = step.transition, step.params
    tags = lambda up: (MIG, "a") if up else ("a",)  # noqa: E731
    if t == "add_node":
        node = _fresh(subject) if p["new"] else _indexed(subject, bool(p["old_up"]))
        return [("add_node", {"node": node, "tags": tags(p["up"])})]
    if t == "remove_node":
        return [("remove_node", {"node": _indexed(subject, bool(p["up"]))})]
    if t == "add_tag":
        return [("add_tag", {"node": _indexed(subject, False), "tag": MIG})]
    if t == "remove_tag":
        return [("remove_tag", {"node": _indexed(subject, True), "tag": MIG})]
    if t == "set_local_caps":
        return [("set_local_caps", {"tags": (MIG,) if p["match"] else ()})]
    if t == "set_drained":
        return [("set_drained", {"drained": bool(p["d"])})]
    if t == "place":
        return [("place_with_locality", {"required": (MIG,), "drained": FLAG[p["flag"]]})]
    if t == "migration_query":
        source = _indexed(subject, True) if p["src"] else _fresh(subject)
        return [("find_migration_targets", {"required": (), "source": source})]
    return []


def _call(subject: Subject, monitor: Monitor, call: tuple[str, dict[str, Any]]) -> None:
    try:
        result = getattr(subject, call[0])(**call[1])
    except registry.get_component("scheduler").errors:
        result = None
    monitor.after(subject, call[0], result)


def _subject(cls: type) -> Subject:
    subject = registry.get_component("scheduler").subject_cls(cls, "impl")
    subject.init(**INIT)
    return subject


def concretize(path: Path, cls: type) -> Concrete:
    comp = registry.get_component("scheduler")
    subject, monitor = _subject(cls), Monitor()
    calls: list[tuple[str, dict[str, Any]]] = [("init", dict(INIT))]
    divergence = ""
    for index, step in enumerate(path.steps):
        for call in calls_for(step, subject):
            calls.append(call)
            _call(subject, monitor, call)
        divergence = divergence or differs(index, step.transition, step.state, concrete_state(subject, monitor))
    return Concrete(traces.validate_steps(comp, calls), divergence)


def refutation(path: Path, impl: str, invariant: str) -> Refutation:
    return replaying.refutation("scheduler", concretize, MACHINE_INVARIANT, path, impl, invariant)


def random_call(rng: Any) -> tuple[str, dict[str, Any]]:
    node = rng.choice(NODES + (NODES[2], NODES[3], -1))
    some_tags = tuple(t for t in TAGS if rng.random() < 0.4)
    return rng.choice([
        ("add_node", {"node": node, "tags": some_tags}), ("add_node", {"node": node, "tags": (MIG,)}),
        ("remove_node", {"node": node}), ("add_tag", {"node": node, "tag": rng.choice(TAGS)}),
        ("add_tag", {"node": node, "tag": MIG}), ("remove_tag", {"node": node, "tag": rng.choice(TAGS)}),
        ("remove_tag", {"node": node, "tag": MIG}),
        ("set_local_caps", {"tags": rng.choice([(), (MIG,), ("a", MIG), ("a",)])}),
        ("set_drained", {"drained": rng.random() < 0.5}),
        ("place", {"required": (MIG,)}),
        ("place_with_locality", {"required": (MIG,), "drained": rng.choice([None, True, False])}),
        ("find_migration_targets", {"required": (), "source": node}),
        ("query_candidates", {"required": (MIG,)}), ("inspect", {}),
    ])


def random_run(rng: Any, length: int, cls: type = ImplScheduler) -> list[ConcreteStep]:
    """Drive a scheduler (local node 1, empty index) through `length` random rule calls."""
    subject, monitor = _subject(cls), Monitor()
    out = []
    for _ in range(length):
        call = random_call(rng)
        pre = concrete_state(subject, monitor)
        _call(subject, monitor, call)
        out.append(ConcreteStep(call[0], call[1], pre, concrete_state(subject, monitor)))
    return out
