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


# -- every arithmetic lemma: a broken variant is refuted, and its counterexample, run on the
# -- Python code, breaks the broken copy and not the model (the arithmetic "replay") ---------

import types  # noqa: E402

from impl.shard_mapper import ShardMapper as ImplMapper  # noqa: E402
from model import shard_mapper as SM  # noqa: E402
from mutants.shard_mapper import ScaleDownFloorOffByOne  # noqa: E402

K = 2**64


def _lemire_plus_one():
    h, n = z3.BitVec("hash", 128), z3.BitVec("len", 128)
    pre = z3.And(z3.ULT(h, 2**64), z3.UGE(n, 1), z3.ULE(n, 65535))
    return z3.And(pre, z3.UGE(z3.LShR(h * (n + 1), 64), n)), [h, n]


def _floor_witness():
    """The witness taken as floor(i·2^64 / n) (i·2^64 − n < h·n ≤ i·2^64): it can fall short of i."""
    n, i, h = z3.Ints("len index hash")
    pre = z3.And(1 <= n, n <= 65535, 0 <= i, i < n, i * K - n < h * n, h * n <= i * K)
    reached = z3.And(0 <= h, h < K, i * K <= h * n, h * n < (i + 1) * K)
    return z3.And(pre, z3.Not(reached)), [n, i, h]


def _down_at_the_floor():
    """evaluate_scaling's down branch guarded by A ≥ min (ScaleDownFloorOffByOne)."""
    a, lo, hi, over, under = z3.Ints("active min max overloaded underutilized")
    down = z3.If(under / 2 > 1, under / 2, 1)
    down = z3.If(down < a - lo, down, a - lo)
    pre = z3.And(0 <= a, a <= 65535, 1 <= lo, lo <= hi, hi <= 65535, 0 <= over, over <= a, 0 <= under,
                 under <= a, z3.Not(z3.And(over > a / 2, a < hi)))
    return z3.And(pre, under > a / 2, a >= lo, z3.Or(down < 1, a - down < lo)), [a, lo, hi, over, under]


def _sum_not_saturated():
    count, total, sample = z3.BitVecs("count sum sample", 64)
    new_sum = total + z3.If(z3.UGT(sample, 2**32 - 1), z3.BitVecVal(2**32 - 1, 64), sample)
    word = ((count + 1) << 32) | new_sum
    pre = z3.And(z3.ULT(count, 2**32 - 1), z3.ULE(total, 2**32 - 1))
    return z3.And(pre, z3.LShR(word, 32) != count + 1), [count, total, sample]


def _unclamped_drain():
    a, lo, count = z3.Ints("active min count")
    pre = z3.And(1 <= lo, lo < a, a <= 65535, 1 <= count, count <= 65535)
    return z3.And(pre, a - count < lo), [a, lo, count]


def _mapper(cls, lo, hi):
    m = cls.__new__(cls)
    m._policy = types.SimpleNamespace(min_shards=lo, max_shards=hi)
    return m


def _decision_ok(cls, v):
    d = _mapper(cls, v["min"], v["max"])._decide(v["overloaded"], v["underutilized"], v["active"])
    return d.kind != "scale_down" or (d.count >= 1 and v["active"] - d.count >= v["min"])


def _packed(count, total, sample, saturate_sum):
    s = total + min(sample, 2**32 - 1)
    return ((count + 1) << 32) | (min(s, 2**32 - 1) if saturate_sum else s)


ARITHMETIC_BROKEN = {
    "lemire_index_in_range": (
        _lemire_plus_one,
        lambda v: (v["hash"] * (v["len"] + 1)) >> 64 < v["len"],
        lambda v: SM.lemire_index(v["hash"], v["len"]) < v["len"]),
    "lemire_reaches_every_candidate": (
        _floor_witness,
        lambda v: SM.lemire_index(v["index"] * K // v["len"], v["len"]) == v["index"],
        lambda v: SM.lemire_index(-(-v["index"] * K // v["len"]), v["len"]) == v["index"]),
    "scaling_decision_bounds": (
        _down_at_the_floor,
        lambda v: _decision_ok(ScaleDownFloorOffByOne, v),
        lambda v: _decision_ok(ImplMapper, v)),
    "packed_latency_word_never_carries": (
        _sum_not_saturated,
        lambda v: _packed(v["count"], v["sum"], v["sample"], False) >> 32 == v["count"] + 1,
        lambda v: SM._packed_add((v["count"] << 32) | v["sum"], v["sample"]) >> 32 == v["count"] + 1),
    "scale_down_respects_floor": (
        lambda: _unclamped_drain(),
        lambda v: v["active"] - v["count"] >= v["min"],
        lambda v: v["active"] - min(v["count"], v["active"] - v["min"]) >= v["min"]),
}


def test_every_arithmetic_lemma_has_a_broken_variant_here():
    assert set(ARITHMETIC_BROKEN) == {p.name for p in PROOFS}


@pytest.mark.parametrize("name", sorted(ARITHMETIC_BROKEN))
def test_broken_lemma_is_refuted_and_its_counterexample_breaks_the_broken_code_not_the_model(name):
    build, broken_holds, model_holds = ARITHMETIC_BROKEN[name]
    result = run(Proof(f"{name}_broken", "broken", build))
    assert result.status == "REFUTED", result
    assert not broken_holds(result.values), result.counterexample
    assert model_holds(result.values), result.counterexample
