"""The one registry: component name → its `Component` (model, impl, machine, invariants, mutants).

Components live in `properties/<name>.py` as a module-level `COMPONENT`; they are imported
lazily so `meshspec list` stays fast and one broken component cannot hide the others.
"""
from __future__ import annotations

import importlib

from meshspec.lockstep import Component

COMPONENT_MODULES: dict[str, str] = {
    "shard_mapper": "properties.shard_mapper",
    "load_balancer": "properties.load_balancer",
    "group_coordinator": "properties.group_coordinator",
    "scheduler": "properties.scheduler",
    "daemon_host": "properties.daemon_host",
    "capacity": "properties.capacity",
    "groups": "properties.groups",
}


class UnknownComponent(KeyError):
    """A component name that is not registered."""

    def __str__(self) -> str:
        return f"unknown component {self.args[0]!r} (known: {', '.join(names())})"


def names() -> list[str]:
    return list(COMPONENT_MODULES)


def get_component(name: str) -> Component:
    if name not in COMPONENT_MODULES:
        raise UnknownComponent(name)
    return importlib.import_module(COMPONENT_MODULES[name]).COMPONENT


def all_components() -> list[Component]:
    return [get_component(n) for n in names()]
