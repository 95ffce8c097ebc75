"""The capacity counters' abstraction: counters + undetected expiries equal the full scan."""
from __future__ import annotations

import pytest

from meshspec.abstractions import capacity as A
from meshspec.cli import main
from meshspec.prove import Inductive, prove_inductive


@pytest.mark.parametrize("spec", A.PROOFS, ids=[p.name for p in A.PROOFS])
def test_counter_invariant_is_proved_by_induction(spec):
    assert prove_inductive(spec).status == "proved"


def test_undetected_expiries_need_the_scan_equality_as_a_lemma():
    bare = Inductive("bare", "bare", A.ABSTRACTION, "stale_within_counted", ("counts_non_negative",))
    assert prove_inductive(bare).status == "not inductive"


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=[s.name for s, _ in A.VARIANTS])
def test_mutant_change_in_the_counter_abstraction_is_refuted_by_a_reachable_path(spec, impl):
    result = prove_inductive(spec)
    assert result.status == "REFUTED", result
    changed = {t.name for t in spec.abstraction.transitions} & {
        t.name for t in spec.abstraction.transitions if t not in A.ABSTRACTION.transitions}
    assert any(step.transition in changed for step in result.path.steps)


def test_the_time_mutants_and_the_earliest_deadline_are_abstracted():
    refuted = {impl.split(":")[1] for _, impl in A.VARIANTS}
    assert {"ExpiryNeverDetected", "VanishedOwnerNotDetected", "ExpiryOffByOne", "LightweightCount",
            "RenewKeepsOldDeadline"} <= refuted
    dedicated = {spec.invariant for spec, _ in A.VARIANTS}
    assert {spec.invariant for spec in A.PROOFS} <= dedicated


def test_a_failed_compare_in_the_faithful_abstraction_changes_no_counter():
    cas = A.ABSTRACTION.transition("cas_failed")
    assert cas.update(A.ABSTRACTION.state("x"), {}) == {}


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=[s.name for s, _ in A.VARIANTS])
def test_refutation_trace_replays_on_the_mutant_and_not_on_the_correct_impl(spec, impl):
    from meshspec.abstractions import capacity_concrete as concrete

    path = prove_inductive(spec).path
    ref = concrete.refutation(path, impl, spec.invariant)
    assert ref.verdict == "confirmed" and ref.trace.failure.name == "hint_equals_full_scan", ref.detail
    assert concrete.refutation(path, "impl.capacity:EtcdCoordinator", spec.invariant).verdict == \
        "abstraction too coarse"


def test_prove_variants_replays_a_capacity_refutation(capsys, tmp_path):
    assert main(["prove", "--variants", "--only", "unpark_not_counted", "--export", str(tmp_path)]) == 0
    assert "refuted, confirmed" in capsys.readouterr().out
    (trace,) = tmp_path.glob("capacity-*.json")
    assert main(["replay", str(trace)]) == 1
    assert "reproduces the recorded failure" in capsys.readouterr().out


# -- faithfulness: random steps of the optimized coordinator fit the counter relation -----

import random  # noqa: E402

from meshspec.abstractions import capacity_concrete as C  # noqa: E402
from meshspec.prove import admits  # noqa: E402
from mutants.capacity import (  # noqa: E402
    ExpiryNeverDetected,
    ExpiryOffByOne,
    SplitAddsNoChildren,
    UnparkNotCounted,
)


def _fits(step) -> bool:
    allowed = ("stutter", *C.RULE_TRANSITIONS.get(step.rule, ()))
    return admits(A.ABSTRACTION, step.pre, step.post, allowed, C.MAX_STEPS)


def _runs(cls=C.ImplCoordinator):
    return [step for seed in range(6) for step in C.random_run(random.Random(seed), 60, cls)]


def test_every_random_impl_step_fits_the_counter_abstraction():
    for step in _runs():
        assert _fits(step), step


def test_random_runs_commit_every_kind_of_counter_change():
    changed = {s.rule for s in _runs() if s.pre != s.post}
    assert {"register_shards", "claim", "complete", "park_shard", "unpark_shard", "split_replace",
            "split_residual", "advance_clock", "expire_lease", "capacity_hint"} <= changed
    pending = lambda st: st["lapsed"] + st["edge"] + st["vanished"]  # noqa: E731
    assert any(pending(s.pre) and s.rule == "capacity_hint" and not pending(s.post) for s in _runs())
    for cls in ("lapsed", "edge", "vanished"):  # every kind of undetected expiry is reached
        assert any(s.post[cls] for s in _runs()), cls


@pytest.mark.parametrize("mutant", [SplitAddsNoChildren, UnparkNotCounted, ExpiryNeverDetected, ExpiryOffByOne],
                         ids=lambda c: c.__name__)
def test_a_counter_mutant_takes_a_step_the_abstraction_does_not_admit(mutant):
    assert not all(_fits(step) for step in _runs(mutant))
