"""The scheduler's capability-index abstraction: proofs, faithfulness, broken variants that replay."""
from __future__ import annotations

import random

import pytest

from meshspec.abstractions import scheduler as A
from meshspec.abstractions import scheduler_concrete as C
from meshspec.prove import admits, prove_inductive
from prove_support import refutation_replays_on_the_mutant
from model import scheduler as M
from mutants import scheduler as P

CAUGHT_BY = {f"{A.MUTANTS}:{m.cls.__name__}": m.caught_by for m in P.MUTANTS}


@pytest.mark.parametrize("spec", A.PROOFS, ids=[p.name for p in A.PROOFS])
def test_index_invariant_is_proved_by_induction(spec):
    assert prove_inductive(spec).status == "proved"


def _fits(step) -> bool:
    return admits(A.ABSTRACTION, step.pre, step.post, ("stutter", *C.RULE_TRANSITIONS.get(step.rule, ())))


def _runs(cls=C.ImplScheduler):
    return [step for seed in range(5) for step in C.random_run(random.Random(seed), 60, cls)]


def test_every_random_impl_step_satisfies_the_abstract_transition_relation():
    steps = _runs()
    assert all(_fits(step) for step in steps)
    changed = {s.rule for s in steps if s.pre != s.post}
    assert {"add_node", "remove_node", "add_tag", "remove_tag", "set_local_caps", "set_drained"} <= changed
    assert any(s.rule == "place_with_locality" and s.pre["drained"] for s in steps)
    assert any(s.rule == "find_migration_targets" and s.pre["capable"] for s in steps)


def test_every_random_model_step_fits_too():
    assert all(_fits(step) for step in _runs(M.Scheduler))


@pytest.mark.parametrize("mutant", [P.IndexStaleOnTagRemoval, P.QueryExcludingIgnoresExclude,
                                    P.LocalityIgnoresDrain], ids=lambda c: c.__name__)
def test_an_index_or_placement_mutant_takes_a_step_the_abstraction_does_not_admit(mutant):
    assert not all(_fits(step) for step in _runs(mutant))


VARIANT_IDS = [spec.name for spec, _ in A.VARIANTS]


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=VARIANT_IDS)
def test_mutant_change_is_refuted_and_the_trace_replays_on_the_mutant(spec, impl, tmp_path, capsys):
    ref = refutation_replays_on_the_mutant(C, spec, impl, tmp_path, capsys)
    assert ref.trace.failure.name in CAUGHT_BY[impl], ref.detail


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=VARIANT_IDS)
def test_the_same_path_on_the_correct_impl_is_abstraction_too_coarse(spec, impl):
    ref = C.refutation(prove_inductive(spec).path, "impl.scheduler:Scheduler", spec.invariant)
    assert ref.verdict == "abstraction too coarse"
