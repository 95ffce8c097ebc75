"""The mutant tier: every registered mutant is caught within the ci budget, by the check
it is registered with (so REPORT.md's "caught by" column is true), the trace of the
failure replays to the same failure without Hypothesis, and the exported trace is the
deterministic minimiser's: 1-minimal (no single step can go) and the same on every run.

Every mutant is also caught with the impl's own `check_invariants()` removed (a user's
class passed with `--impl` usually has none): through results, observations, the abstract
state or the `always` invariants alone."""
from __future__ import annotations

import functools

import pytest

from meshspec import registry, traces
from meshspec.fuzz import FuzzResult, matches_check, run_fuzz
from meshspec.lockstep import impl_path
from meshspec.minimize import reproduce

CASES = [(c.name, m) for c in registry.all_components() for m in c.mutants]


RUN: dict[tuple[str, str, int], FuzzResult] = {}  # the runs this process has done


@functools.lru_cache(maxsize=None)
def caught(name: str, mutant_name: str, seed: int) -> FuzzResult:
    """The mutant's ci run: Hypothesis stops at the first failure, then the minimiser runs."""
    comp = registry.get_component(name)
    mutant = next(m for m in comp.mutants if m.name == mutant_name)
    RUN[name, mutant_name, seed] = run_fuzz(comp, mutant.cls, profile="ci", seed=seed, use_database=False)
    return RUN[name, mutant_name, seed]


@pytest.mark.quality
@pytest.mark.parametrize("name,mutant", CASES, ids=[f"{n}-{m.name}" for n, m in CASES])
def test_mutant_is_caught_by_its_registered_check(name, mutant, fuzz_seed):
    comp = registry.get_component(name)
    result = caught(name, mutant.name, fuzz_seed)
    assert result.trace is not None, f"mutant {mutant.name} ({mutant.origin}) survived: {result.error}"
    got = result.trace.failure.name
    assert matches_check(got, mutant.caught_by), (f"{mutant.name} caught by {got!r} "
                                     f"({result.trace.failure.message}), registered {mutant.caught_by}")
    again = traces.replay(comp, mutant.cls, result.trace.steps)
    assert again.matches(result.trace.failure), f"replay found {again.failure}, recorded {result.trace.failure}"


@pytest.mark.quality
@pytest.mark.parametrize("name,mutant", CASES, ids=[f"{n}-{m.name}" for n, m in CASES])
def test_minimised_counterexample_of_mutant_is_1_minimal_and_replays(name, mutant, fuzz_seed):
    comp = registry.get_component(name)
    result = caught(name, mutant.name, fuzz_seed)
    assert result.trace is not None, f"mutant {mutant.name} survived: {result.error}"
    steps, fail = result.trace.steps, result.trace.failure
    assert fail.step == len(steps) - 1, "the trace ends at its failing step"
    again = traces.replay(comp, mutant.cls, steps)
    assert again.matches(fail), f"replay found {again.failure}, recorded {fail}"
    for i in range(1, len(steps)):
        shorter = reproduce(comp, mutant.cls, steps[:i] + steps[i + 1:])
        assert shorter is None or (shorter.kind, shorter.name) != (fail.kind, fail.name), (
            f"step {i} ({steps[i][0]}) can be removed and {fail.name!r} still fails: not 1-minimal")


# -- without the impl's check_invariants() ---------------------------------------------------

@functools.lru_cache(maxsize=None)
def without_self_check(cls: type) -> type:
    """`cls` with `check_invariants` gone: the engine (and the load balancer's racing
    balancers) skip a self-check that is not callable, as for a user class without one."""
    return type(cls.__name__, (cls,), {"check_invariants": None, "__module__": __name__,
                                       "__qualname__": f"without_self_check({impl_path(cls)})"})


@pytest.mark.quality
@pytest.mark.parametrize("name,mutant", CASES, ids=[f"{n}-{m.name}" for n, m in CASES])
def test_mutant_is_caught_without_the_impls_check_invariants(name, mutant, fuzz_seed):
    """The stripped class gets a ci run of its own, which must catch it. Shortcut when this
    process already ran the mutant (the tests above): its trace, replayed on the stripped
    class, fails on something other than the self-check. The shortcut does not apply when
    the self-check caught the mutant first, or the failure needed a side effect of the
    mutant's own check_invariants (filter_scan_claims_probe's filter scan claims a probe)."""
    comp = registry.get_component(name)
    stripped = without_self_check(mutant.cls)
    result = RUN.get((name, mutant.name, fuzz_seed))
    if result is not None and result.trace is not None and result.trace.failure.name != "check_invariants":
        again = traces.replay(comp, stripped, result.trace.steps)
        if again.failure is not None and again.failure.name != "check_invariants":
            return
    own = run_fuzz(comp, stripped, profile="ci", seed=fuzz_seed, use_database=False, shrink=False)
    assert own.trace is not None, (f"mutant {mutant.name} ({mutant.origin}) is caught only by the "
                                   f"impl's check_invariants(): {own.error}")
    fail = own.trace.failure
    assert fail.name != "check_invariants", f"{mutant.name}: the removed self-check still ran"
    again = traces.replay(comp, stripped, own.trace.steps)
    assert again.matches(fail), f"replay found {again.failure}, recorded {fail}"


class _SelfCheckAlwaysFails:
    """Mixed into the impl: a self-check that fails on every step, and nothing else."""

    def check_invariants(self) -> None:
        raise AssertionError("planted self-check failure")


@pytest.mark.parametrize("name", ["shard_mapper", "load_balancer"])
def test_stripping_removes_the_self_check_and_nothing_else(name, fuzz_seed):
    """The stripped runs above cannot pass by a self-check that still runs: a planted
    self-check failure is found as `check_invariants` with the self-check in place, and once
    stripped the impl passes (so nothing else about it changed)."""
    comp = registry.get_component(name)
    planted = type("PlantedSelfCheck", (_SelfCheckAlwaysFails, comp.impl_cls), {})
    found = run_fuzz(comp, planted, profile="ci", seed=fuzz_seed, use_database=False, shrink=False,
                     max_examples=3)
    assert found.trace is not None and found.trace.failure.name == "check_invariants", found
    stripped = run_fuzz(comp, without_self_check(planted), profile="ci", seed=fuzz_seed,
                        use_database=False, shrink=False, max_examples=3)
    assert stripped.trace is None and stripped.error is None, stripped.trace or stripped.error
