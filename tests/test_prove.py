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
