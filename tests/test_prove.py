"""z3 proofs of the arithmetic: each holds, and the prover refutes a broken variant."""
from __future__ import annotations

import pytest
import z3

from meshspec.prove import PROOFS, Proof, run


@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_claim_is_proved_for_every_input(proof):
    result = run(proof)
    assert result.status == "proved", result


def test_prover_refutes_scale_down_without_the_floor_clamp():
    def unclamped():
        a, lo, count = z3.Ints("active min count")
        pre = z3.And(1 <= lo, lo < a, a <= 65535, 1 <= count, count <= 65535)
        return z3.And(pre, a - count < lo), [a, lo, count]

    result = run(Proof("unclamped", "draining `count` shards keeps A ≥ min", unclamped))
    assert result.status == "REFUTED" and "count=" in result.counterexample


def test_prover_refutes_a_modulo_that_can_exceed_the_table():
    def off_by_one():
        h, n = z3.BitVec("hash", 128), z3.BitVec("len", 128)
        pre = z3.And(z3.ULT(h, 2**64), z3.UGE(n, 1), z3.ULE(n, 65535))
        return z3.And(pre, z3.UGE(z3.LShR(h * (n + 1), 64), n)), [h, n]

    assert run(Proof("lemire_n_plus_1", "wrong multiplier stays in range", off_by_one)).status == "REFUTED"


# -- inductive invariants over a counter abstraction ------------------------------------

from meshspec.prove import Abstraction, Inductive, Transition, bmc, prove_inductive  # noqa: E402


def _swap_abstraction(init_b: int = 0) -> Abstraction:
    """(a, b) := (b, a) from a = 0, b = init_b: `a == 0` is 2-inductive, not 1-inductive, when b starts 0."""
    swap = Transition("swap", lambda s, p: z3.BoolVal(True), lambda s, p: {"a": s.b, "b": s.a})
    return Abstraction("swap", (("a", "int"), ("b", "int")),
                       lambda s, p: z3.And(s.a == 0, s.b == init_b), (), (swap,),
                       {"a_is_zero": lambda s: s.a == 0, "b_is_zero": lambda s: s.b == 0})


def test_one_induction_reports_not_inductive_rather_than_a_bug_from_an_unreachable_state():
    result = prove_inductive(Inductive("a0", "a stays 0", _swap_abstraction(), "a_is_zero"))
    assert result.status == "not inductive" and result.path is None
    assert "lemma" in result.detail


def test_two_induction_proves_what_one_induction_cannot():
    result = prove_inductive(Inductive("a0", "a stays 0", _swap_abstraction(), "a_is_zero", k=2))
    assert result.status == "proved" and result.method == "2-induction"


def test_a_stated_lemma_makes_the_invariant_one_inductive():
    result = prove_inductive(Inductive("a0", "a stays 0", _swap_abstraction(), "a_is_zero", ("b_is_zero",)))
    assert result.status == "proved" and "lemma b_is_zero" in result.method


def test_a_reachable_violation_is_refuted_with_the_path_from_init():
    spec = Inductive("a0", "a stays 0", _swap_abstraction(init_b=7), "a_is_zero", k=2)
    result = prove_inductive(spec)
    assert result.status == "REFUTED"
    assert [s.transition for s in result.path.steps] == ["swap"] and result.path.steps[0].state["a"] == 7
    assert bmc(spec, 3)[0] == "REFUTED"
