"""The one registry: component name → its `Component` (model, impl, machine, invariants, mutants).

Components live in `properties/<name>.py` as a module-level `COMPONENT`; they are imported
lazily so `meshspec list` stays fast and one broken component cannot hide the others.
Their curated mutants live beside them in `mutants/<name>.py` (a `MUTANTS` tuple): the
Component holds `mutants_of(name)`, which imports that module the first time it is read,
so `mutants/<name>.py` may import from `properties/<name>.py` without a cycle.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

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


def mutants_module(name: str) -> str:
    return f"mutants.{name}"


class LazyMutants(Sequence):
    """`mutants.<name>.MUTANTS`, imported on first use; reads like the tuple it stands for."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _load(self) -> tuple:
        return tuple(importlib.import_module(mutants_module(self.name)).MUTANTS)

    def __getitem__(self, index: Any) -> Any:
        return self._load()[index]

    def __len__(self) -> int:
        return len(self._load())

    def __iter__(self) -> Iterator:
        return iter(self._load())

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (LazyMutants, tuple)) else other)

    def __hash__(self) -> int:
        return hash(self._load())

    def __repr__(self) -> str:
        return f"mutants_of({self.name!r})"


def mutants_of(name: str) -> LazyMutants:
    """The curated mutants of component `name`, from `mutants/<name>.py`, loaded lazily."""
    return LazyMutants(name)


class LazyMutantBounds(Mapping):
    """An exploration's `mutant_bounds` that gives every mutant of `name` the bound `default`
    except those in `overrides`, computed when first read (the mutants load lazily)."""

    def __init__(self, name: str, default: str, overrides: Mapping[str, str] | None = None) -> None:
        self.name, self.default, self.overrides = name, default, dict(overrides or {})

    def _load(self) -> dict[str, str]:
        return {**{m.name: self.default for m in mutants_of(self.name)}, **self.overrides}

    def __getitem__(self, key: str) -> str:
        return self._load()[key]

    def __len__(self) -> int:
        return len(self._load())

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __repr__(self) -> str:
        return f"bounds_of({self.name!r}, {self.default!r}, {self.overrides!r})"


def mutant_bounds_of(name: str, default: str, overrides: Mapping[str, str] | None = None) -> LazyMutantBounds:
    """Exploration bounds for the mutants of `name`: `default` for each, `overrides` win."""
    return LazyMutantBounds(name, default, overrides)
