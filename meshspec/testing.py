"""A pytest entry point for users' own suites: the lockstep machine as a test class.

As zarr.testing ships its store state machines, meshspec ships its lockstep machines::

    from meshspec.testing import lockstep_test
    from mypackage.fast_mapper import MyMapper

    TestMyMapper = lockstep_test("shard_mapper", MyMapper)

pytest collects `TestMyMapper` (a `unittest.TestCase`) and runs the component's lockstep
machine, the reference model against `MyMapper`, with every comparison, invariant and
`check_invariants()` of `meshspec fuzz`. It runs under the active Hypothesis profile:
meshspec's `dev` / `ci` / `nightly` when HYPOTHESIS_PROFILE names one, else whatever
profile the suite loaded (`settings.load_profile`), with no deadline (a lockstep step runs
two implementations and every check). A failure is Hypothesis' own: shrunk, saved in the
suite's example database, reported with the lockstep message naming the divergence or the
violated invariant. Pass `settings=` to override.
"""
from __future__ import annotations

import os
import unittest
from typing import Any

from hypothesis import HealthCheck
from hypothesis import settings as Settings
from hypothesis.stateful import run_state_machine_as_test

from meshspec import profiles, registry
from meshspec.lockstep import Component


def active_settings() -> Settings:
    """meshspec's profile named by HYPOTHESIS_PROFILE, else the suite's loaded profile; no deadline."""
    name = os.environ.get("HYPOTHESIS_PROFILE")
    base = Settings.get_profile(name) if name in profiles.PROFILES else Settings.default
    return Settings(base, deadline=None,
                    suppress_health_check=list(set(base.suppress_health_check) | {HealthCheck.too_slow}))


def lockstep_test(component: str | Component, impl_cls: type, *,
                  settings: Settings | None = None) -> type[unittest.TestCase]:
    """A TestCase class running `component`'s lockstep machine: model vs `impl_cls`.

    Raises TypeError at once (at import of the user's test module) when `impl_cls` lacks
    one of the component's public operations, naming them; an unknown component name
    raises meshspec.registry.UnknownComponent listing the known ones.
    """
    comp = registry.get_component(component) if isinstance(component, str) else component
    missing = comp.missing_operations(impl_cls)
    if missing:
        raise TypeError(f"{impl_cls.__name__} lacks the {comp.name} operations: {', '.join(missing)}")
    machine = comp.machine_for(impl_cls)
    modules = profiles_modules(comp, impl_cls)

    def runTest(self: unittest.TestCase) -> None:
        from meshspec.machine import reset_stats

        reset_stats()  # counted afresh, with no progress printer of an earlier run attached
        with profiles.fixed_constants(modules):
            run_state_machine_as_test(machine, settings=settings or active_settings())

    name = f"Test{impl_cls.__name__}Lockstep"
    doc = f"{comp.name}: the reference model and {impl_cls.__qualname__} in lockstep."
    return type(name, (unittest.TestCase,), {"runTest": runTest, "__doc__": doc,
                                             "machine": machine, "component": comp.name})


def profiles_modules(comp: Component, impl_cls: type) -> list[Any]:
    from meshspec.fuzz import component_modules

    return component_modules(comp, impl_cls)
