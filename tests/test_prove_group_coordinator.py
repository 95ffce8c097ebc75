"""The group coordinator's healthy-count abstraction: proofs, faithfulness, broken variants."""
from __future__ import annotations

import random

import pytest

from meshspec.abstractions import group_coordinator as A
from meshspec.abstractions import group_coordinator_concrete as C
from meshspec.prove import admits, prove_inductive
from mutants.group_coordinator import HealthyCountDriftOnRepeatedMark


@pytest.mark.parametrize("spec", A.PROOFS, ids=[p.name for p in A.PROOFS])
def test_healthy_count_invariant_is_proved_by_induction(spec):
    assert prove_inductive(spec).status == "proved"


def _fits(step) -> bool:
    return admits(A.ABSTRACTION, step.pre, step.post, ("stutter", *C.RULE_TRANSITIONS.get(step.rule, ())))


def _runs(cls=C.ImplCoordinator):
    return [step for seed in range(5) for step in C.random_run(random.Random(seed), 60, cls)]


def test_every_random_impl_step_fits_the_healthy_count_abstraction():
    steps = _runs()
    assert all(_fits(step) for step in steps)
    changed = {s.rule for s in steps if s.pre != s.post}
    assert {"add_member", "remove_last", "mark_unhealthy", "mark_healthy", "update_member_placement",
            "on_node_recovery"} <= changed


def test_the_repeated_mark_mutant_takes_a_step_the_abstraction_does_not_admit():
    assert not all(_fits(step) for step in _runs(HealthyCountDriftOnRepeatedMark))


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=[s.name for s, _ in A.VARIANTS])
def test_mutant_change_is_refuted_and_replays_on_the_mutant_only(spec, impl):
    result = prove_inductive(spec)
    assert result.status == "REFUTED"
    ref = C.refutation(result.path, impl, spec.invariant)
    assert ref.verdict == "confirmed" and ref.trace.failure.name == "counts_agree_with_a_scan", ref.detail
    correct = C.refutation(result.path, "impl.group_coordinator:GroupCoordinator", spec.invariant)
    assert correct.verdict == "abstraction too coarse"
