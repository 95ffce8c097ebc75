"""The shard mapper's counter abstraction: its invariants are proved by induction."""
from __future__ import annotations

import pytest
import z3

from meshspec.abstractions import shard_mapper as A
from meshspec.prove import Inductive, prove_inductive


@pytest.mark.parametrize("spec", A.PROOFS, ids=[p.name for p in A.PROOFS])
def test_mapper_invariant_is_proved_by_induction(spec):
    result = prove_inductive(spec)
    assert result.status == "proved", result


@pytest.mark.parametrize("invariant", ["ids_strictly_increase_never_sentinel", "floor_respected_by_draining"])
def test_without_its_lemma_the_invariant_is_not_inductive_but_not_refuted(invariant):
    result = prove_inductive(Inductive("bare", "bare", A.ABSTRACTION, invariant))
    assert result.status == "not inductive", result


# -- faithfulness: every concrete model step is one of the abstract transitions ---------

import random  # noqa: E402

from meshspec.abstractions import shard_mapper_concrete as C  # noqa: E402
from meshspec.prove import admits  # noqa: E402


@pytest.mark.parametrize("seed", range(6))
def test_every_random_model_step_satisfies_the_abstract_transition_relation(seed):
    rng = random.Random(seed)
    for step in C.random_run(rng, 60):
        allowed = ("stutter", *C.RULE_TRANSITIONS.get(step.rule, ()))
        assert admits(A.ABSTRACTION, step.pre, step.post, allowed), step


def test_random_runs_take_every_state_changing_transition():
    rules = set()
    for seed in range(6):
        rules |= {s.rule for s in C.random_run(random.Random(seed), 60) if s.pre != s.post}
    assert {"scale_up", "activate", "drain_specific", "scale_down", "finalize_draining",
            "evaluate_scaling", "advance_time"} <= rules
    assert rules & {"remove_stopped_shards", "remove_specific_stopped_shard"}


def test_the_initial_state_of_a_random_mapper_satisfies_init():
    for seed in range(20):
        rng = random.Random(seed)
        comp = C.component()
        subject = comp.subject_cls(C.M.ShardMapper, "model")
        args = C.random_init(rng)
        subject.init(**args)
        s = A.ABSTRACTION.constant(C.concrete_state(subject, C.NO_ADVICE))
        p = {"initial": args["initial"], "first_id": args["first_id"], "max_raw": args["max_shards"]}
        formula = A.initial(s, _int_state(p))
        assert z3.is_true(z3.simplify(formula)), args


def _int_state(values):
    from meshspec.prove import State
    return State({k: z3.IntVal(v) for k, v in values.items()})


def test_a_step_the_model_cannot_take_is_not_admitted():
    runs = (C.random_run(random.Random(seed), 60) for seed in range(10))
    step = next(s for run in runs for s in run if s.rule == "scale_up" and s.pre != s.post)
    inflated = dict(step.post, active=step.post["active"] + 1)
    assert not admits(A.ABSTRACTION, step.pre, inflated, ("stutter", "scale_up"))


# -- broken variants: the curated mutants' changes are refuted, and the refutation replays -------

from meshspec import traces  # noqa: E402
from meshspec.cli import main  # noqa: E402

VARIANT_IDS = [spec.name for spec, _ in A.VARIANTS]


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=VARIANT_IDS)
def test_mutant_change_in_the_abstraction_is_refuted_by_a_reachable_path(spec, impl):
    result = prove_inductive(spec)
    assert result.status == "REFUTED" and result.path is not None, result


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=VARIANT_IDS)
def test_refutation_trace_replays_as_a_failure_on_the_mutant_class(spec, impl, tmp_path, capsys):
    ref = C.refutation(prove_inductive(spec).path, impl, spec.invariant)
    assert ref.verdict == "confirmed", ref.detail
    assert ref.trace.failure.name == C.MACHINE_INVARIANT[spec.invariant]
    path, _ = traces.export(ref.trace, tmp_path)
    assert main(["replay", str(path)]) == 1
    assert "reproduces the recorded failure" in capsys.readouterr().out


@pytest.mark.parametrize("spec,impl", A.VARIANTS, ids=VARIANT_IDS)
def test_the_same_path_on_the_correct_impl_is_reported_as_abstraction_too_coarse(spec, impl):
    ref = C.refutation(prove_inductive(spec).path, "impl.shard_mapper:ShardMapper", spec.invariant)
    assert ref.verdict == "abstraction too coarse" and "abstract" in ref.detail
