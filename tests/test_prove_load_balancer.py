"""The load balancer's one-endpoint counter abstraction: proofs, faithfulness, broken variants."""
from __future__ import annotations

import random

import pytest

from meshspec.abstractions import load_balancer as A
from meshspec.abstractions import load_balancer_concrete as C
from meshspec.prove import admits, prove_inductive
from prove_support import refutation_replays_on_the_mutant


@pytest.mark.parametrize("spec", A.PROOFS, ids=[p.name for p in A.PROOFS])
def test_endpoint_invariant_is_proved_by_induction(spec):
    assert prove_inductive(spec).status == "proved"


def _runs():
    return [step for seed in range(5) for step in C.random_run(random.Random(seed), 60)]


def test_every_random_model_step_satisfies_the_abstract_transition_relation():
    for step in _runs():
        allowed = ("stutter", *C.RULE_TRANSITIONS.get(step.rule, ()))
        assert admits(A.ABSTRACTION, step.pre, step.post, allowed), step


def test_random_runs_open_circuits_and_admit_half_open_probes():
    steps = _runs()
    assert any(not s.pre["opened"] and s.post["opened"] for s in steps)
    assert any(s.rule == "select" and s.pre["opened"] and s.post["probe"] and not s.pre["probe"] for s in steps)
    assert any(s.pre["probe"] and not s.post["opened"] for s in steps)


VARIANT_IDS = [spec.name for spec, _ in A.VARIANTS]


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=VARIANT_IDS)
def test_mutant_change_is_refuted_and_the_trace_replays_on_the_mutant(spec, impl, tmp_path, capsys):
    ref = refutation_replays_on_the_mutant(C, spec, impl, tmp_path, capsys)
    assert ref.trace.failure.name == A.MACHINE_INVARIANT[spec.invariant]


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=VARIANT_IDS)
def test_the_same_path_on_the_correct_impl_is_abstraction_too_coarse(spec, impl):
    ref = C.refutation(prove_inductive(spec).path, "impl.load_balancer:LoadBalancer", spec.invariant)
    assert ref.verdict == "abstraction too coarse"
