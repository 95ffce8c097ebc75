"""Every failure of the class under test is a counterexample, and checks do not change state.

Tiny user classes (subclasses of the shard mapper impl) raise where the engine calls
them: in an observation, in an invariant, in `check_invariants()`, in `abstract()`, or
recurse forever. Each must come out of `run_fuzz` as a named, exported LockstepFailure
that `meshspec replay` reproduces, never as "machine error" or "flaky failure"; an
environment error passes through unchanged; `meshspec bench` reports a raising class in
one line and exits 1. Finally `check_invariants()` is pure on every component's impl.
"""
from __future__ import annotations

import copy
import json
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import run_state_machine_as_test

from impl.shard_mapper import ShardMapper
from meshspec import registry, traces
from meshspec.bench import run_bench
from meshspec.cli import main
from meshspec.fuzz import export_failure, run_fuzz
from meshspec.lockstep import ENVIRONMENT_ERRORS, Lockstep, canon

COMPONENT = registry.get_component("shard_mapper")
INIT = dict(initial=2, ring_capacity=8, preset="default", cpus=2, min_shards=1, max_shards=4,
            cooldown_ns=1, auto_scale=True, first_id=0, reentrant=False)


class RaisesInObservations(ShardMapper):
    def total_shard_count(self) -> int:
        raise TypeError("total_shard_count broke")


class RaisesInInvariant(ShardMapper):
    def select_shard(self, event_hash: int) -> int:
        raise TypeError("select_shard broke")


class RaisesInCheckInvariants(ShardMapper):
    def check_invariants(self) -> None:
        raise KeyError("cache")


class RaisesInAbstract(ShardMapper):
    def abstract(self) -> Any:
        raise ValueError("abstract broke")


class RecursesForever(ShardMapper):
    def select_shard(self, event_hash: int) -> int:
        return self.select_shard(event_hash)


class EnvironmentGone(ShardMapper):
    def select_shard(self, event_hash: int) -> int:
        raise ENVIRONMENT_ERRORS[0]("the etcd server at 127.0.0.1:1 went away")


CASES = [
    (RaisesInObservations, "impl raised in observations", "TypeError: total_shard_count broke"),
    (RaisesInInvariant, "impl raised in invariant select_routes_only_to_lightest_active",
     "TypeError: select_shard broke"),
    (RaisesInCheckInvariants, "impl raised in check_invariants", "KeyError: 'cache'"),
    (RaisesInAbstract, "impl raised in invariant active_within_budget", "ValueError: abstract broke"),
    (RecursesForever, "impl raised in invariant select_routes_only_to_lightest_active",
     "RecursionError"),
]


def fuzz(cls: type, seed: int):
    return run_fuzz(COMPONENT, cls, profile="dev", seed=seed, use_database=False, max_examples=5)


@pytest.mark.parametrize("cls,name,message", CASES, ids=[c[0].__name__ for c in CASES])
def test_an_exception_anywhere_in_the_class_is_a_named_exported_replayable_counterexample(
        cls, name, message, fuzz_seed, tmp_path, capsys):
    result = fuzz(cls, fuzz_seed)
    assert result.error is None, result.error
    fail = result.trace.failure
    assert (fail.kind, fail.name) == ("exception", name)
    assert message in fail.message
    json_path, py_path = export_failure(result, tmp_path)
    assert py_path.exists()
    capsys.readouterr()
    assert main(["replay", str(json_path)]) == 1
    out = capsys.readouterr()
    assert "reproduces the recorded failure" in out.out and out.err == ""


@pytest.mark.parametrize("cls,name,message", CASES, ids=[c[0].__name__ for c in CASES])
def test_replay_reproduces_the_exception_found_by_fuzzing(cls, name, message, fuzz_seed):
    result = fuzz(cls, fuzz_seed)
    again = traces.replay(COMPONENT, cls, result.trace.steps)
    assert again.matches(result.trace.failure) and again.failure.name == name


def _at_depth(frames: int, fn: Any) -> Any:
    return fn() if frames == 0 else _at_depth(frames - 1, fn)


def test_infinite_recursion_is_the_same_counterexample_at_any_stack_depth(fuzz_seed):
    first, second = fuzz(RecursesForever, fuzz_seed), fuzz(RecursesForever, fuzz_seed)
    assert first.error is None and second.error is None
    assert first.trace.to_json() == second.trace.to_json()
    deep = _at_depth(400, lambda: traces.replay(COMPONENT, RecursesForever, first.trace.steps))
    assert deep.matches(first.trace.failure)


def test_an_environment_error_passes_through_the_lockstep_unchanged():
    ls = Lockstep(COMPONENT, EnvironmentGone)
    with pytest.raises(ENVIRONMENT_ERRORS[0]):
        ls.step("init", **INIT)


def test_bench_reports_a_raising_class_in_one_line_naming_the_case_and_exits_1(capsys):
    rows = run_bench(COMPONENT, quick=True, impl_cls=RaisesInInvariant)
    failed = [r for r in rows if r.error is not None]
    assert failed and all("TypeError: select_shard broke" in r.error for r in failed)
    code = main(["bench", "shard_mapper", "--quick", "--impl", "test_honesty:RaisesInInvariant"])
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.out + out.err
    assert "FAILED: bench shard_mapper/select_shard x64 at size 4: impl " in out.out


# -- check_invariants() is pure ---------------------------------------------------------------

def plain_state(obj: Any) -> dict[str, Any]:
    """The impl's private fields made of plain data (counters, sets, heaps), canonicalised."""
    def plain(value: Any) -> bool:
        if value is None or isinstance(value, (bool, int, float, str, bytes)):
            return True
        if isinstance(value, (list, tuple, set, frozenset)):
            return all(plain(v) for v in value)
        if isinstance(value, dict):
            return all(plain(k) and plain(v) for k, v in value.items())
        return attrs.has(type(value)) and all(plain(getattr(value, a.name))
                                             for a in attrs.fields(type(value)))
    return {k: canon(copy.deepcopy(v)) for k, v in vars(obj).items() if plain(v)}


def assert_check_is_pure(sut: Any) -> None:
    before = plain_state(sut)
    sut.check_invariants()
    sut.check_invariants()
    assert plain_state(sut) == before, "check_invariants() changed the impl's private state"
    state = canon(sut.abstract())
    sut.check_invariants()
    sut.check_invariants()
    assert canon(sut.abstract()) == state, "check_invariants() changed abstract()"


def later_copy(subject: Any, elapsed: int) -> Any:
    """A deep copy of the subject's SUT whose (copied) clock has moved `elapsed` ns on, so
    the checks see expiries that no read has detected yet."""
    memo: dict[int, Any] = {}
    clone = copy.deepcopy(subject.sut, memo)
    if id(subject.clock) in memo:
        memo[id(subject.clock)].advance(elapsed)
    return clone


@pytest.mark.parametrize("name", registry.names())
def test_check_invariants_changes_neither_abstract_state_nor_counters(name, fuzz_seed):
    comp = registry.get_component(name)

    class Checked(comp.machine_for(comp.impl_cls)):  # type: ignore[misc, valid-type]
        def step(self, rule: str, *args: Any) -> Any:
            out = super().step(rule, *args)
            for elapsed in (0, 10**9, 10**12):  # and on a copy whose leases may have run out
                assert_check_is_pure(later_copy(self.ls.impl, elapsed))
            return out

    budget = settings(max_examples=15, stateful_step_count=30, database=None, deadline=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    run_state_machine_as_test(hypothesis_seed(fuzz_seed)(Checked), settings=budget)


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class ReturnsUnprintable(ShardMapper):
    def select_shard(self, event_hash: int) -> Any:
        return _BadRepr() if event_hash == 12345 else super().select_shard(event_hash)


def test_a_returned_value_whose_repr_raises_is_still_reported_as_a_divergence():
    ls = Lockstep(COMPONENT, ReturnsUnprintable)
    ls.step("init", **INIT)
    with pytest.raises(AssertionError) as info:
        ls.step("select_shard", event_hash=12345)
    assert "_BadRepr whose repr raised RuntimeError" in str(info.value)
