"""`meshspec prove`: z3 proofs of the arithmetic the components rely on.

Fuzzing samples; these hold for every input in range. Each proof states a claim as a z3
formula, asks for a counterexample to it, and reports `proved` (unsat), `REFUTED` with
the counterexample (sat) or `unknown`. Bit-vectors are used where the Rust code uses fixed
widths (Lemire's 128-bit product), integers where only ordering matters (z3 struggles
with monotonicity over wide bit-vector products; see reference/tooling-notes.md).
"""
from __future__ import annotations

from typing import Callable

import attrs
import z3

U16_MAX, U32_MAX = 0xFFFF, 0xFFFF_FFFF


@attrs.frozen
class Proof:
    name: str
    claim: str
    build: Callable[[], tuple[z3.BoolRef, list[z3.ExprRef]]]  # (negated claim, variables to report)


@attrs.frozen
class ProofResult:
    name: str
    claim: str
    status: str
    counterexample: str = ""


def _lemire_in_range() -> tuple[z3.BoolRef, list]:
    h, n = z3.BitVec("hash", 128), z3.BitVec("len", 128)
    idx = z3.LShR(h * n, 64)
    pre = z3.And(z3.ULT(h, 2**64), z3.UGE(n, 1), z3.ULE(n, U16_MAX))
    return z3.And(pre, z3.UGE(idx, n)), [h, n]


def _lemire_covers_every_index() -> tuple[z3.BoolRef, list]:
    """Every candidate index i < n is reached by some hash (no candidate is starved).

    The witness is h = ceil(i·2^64 / n), characterised without division:
    i·2^64 ≤ h·n < i·2^64 + n. The claim: h is a u64 and (h·n) >> 64 = i.
    """
    n, i, h = z3.Ints("len index hash")
    k = 2**64
    pre = z3.And(1 <= n, n <= U16_MAX, 0 <= i, i < n, i * k <= h * n, h * n < i * k + n)
    reached = z3.And(0 <= h, h < k, i * k <= h * n, h * n < (i + 1) * k)
    return z3.And(pre, z3.Not(reached)), [n, i, h]


def _decision_bounds() -> tuple[z3.BoolRef, list]:
    """evaluate_scaling's arithmetic: ScaleUp(n) keeps A+n ≤ max, ScaleDown(n) keeps A−n ≥ min, n ≥ 1."""
    a, lo, hi, over, under = z3.Ints("active min max overloaded underutilized")
    up = z3.If(over / 2 > 1, over / 2, 1)
    up = z3.If(up < hi - a, up, hi - a)
    down = z3.If(under / 2 > 1, under / 2, 1)
    down = z3.If(down < a - lo, down, a - lo)
    pre = z3.And(0 <= a, a <= U16_MAX, 1 <= lo, lo <= hi, hi <= U16_MAX,
                 0 <= over, over <= a, 0 <= under, under <= a)
    bad_up = z3.And(over > a / 2, a < hi, z3.Or(up < 1, a + up > hi))
    bad_down = z3.And(under > a / 2, a > lo, z3.Or(down < 1, a - down < lo))
    return z3.And(pre, z3.Or(bad_up, bad_down)), [a, lo, hi, over, under]


def _packed_word_never_carries() -> tuple[z3.BoolRef, list]:
    """The packed (count << 32) | sum word: saturating halves never carry into each other."""
    count, total, sample = z3.BitVecs("count sum sample", 64)
    sat = lambda x: z3.If(z3.UGT(x, U32_MAX), z3.BitVecVal(U32_MAX, 64), x)  # noqa: E731
    new_count = sat(count + 1)
    new_sum = sat(total + sat(sample))
    word = (new_count << 32) | new_sum
    pre = z3.And(z3.ULE(count, U32_MAX), z3.ULE(total, U32_MAX))
    unpacked_ok = z3.And(z3.LShR(word, 32) == new_count, word & U32_MAX == new_sum)
    return z3.And(pre, z3.Not(unpacked_ok)), [count, total, sample]


def _drain_floor() -> tuple[z3.BoolRef, list]:
    """scale_down's to_drain = min(count, A − min) never takes A below min (when A > min)."""
    a, lo, count = z3.Ints("active min count")
    to_drain = z3.If(count < a - lo, count, a - lo)
    pre = z3.And(1 <= lo, lo < a, a <= U16_MAX, 0 <= count, count <= U16_MAX, to_drain > 0)
    return z3.And(pre, a - to_drain < lo), [a, lo, count]


PROOFS = (
    Proof("lemire_index_in_range", "select_shard: (hash × len) >> 64 < len for every u64 hash, 1 ≤ len ≤ 65535",
          _lemire_in_range),
    Proof("lemire_reaches_every_candidate", "select_shard: every candidate index has a hash mapping to it",
          _lemire_covers_every_index),
    Proof("scaling_decision_bounds", "evaluate_scaling: ScaleUp(n) ⇒ A+n ≤ max, ScaleDown(n) ⇒ A−n ≥ min, n ≥ 1",
          _decision_bounds),
    Proof("packed_latency_word_never_carries", "collector: saturating (count, sum) halves never carry",
          _packed_word_never_carries),
    Proof("scale_down_respects_floor", "scale_down: draining min(count, A − min) keeps A ≥ min",
          _drain_floor),
)


def run(proof: Proof, timeout_ms: int = 20_000) -> ProofResult:
    negated, variables = proof.build()
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(negated)
    verdict = solver.check()
    if verdict == z3.unsat:
        return ProofResult(proof.name, proof.claim, "proved")
    if verdict == z3.sat:
        model = solver.model()
        cex = ", ".join(f"{v}={model.eval(v, model_completion=True)}" for v in variables)
        return ProofResult(proof.name, proof.claim, "REFUTED", cex)
    return ProofResult(proof.name, proof.claim, "unknown")
