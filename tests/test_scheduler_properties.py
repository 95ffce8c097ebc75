"""Pure-function properties of the scheduler's choice (§2.2): `tie_break_compare` and
`pick_best_candidate`, impl against model.

The main one — the impl's max pass equals the model's sort over arbitrary candidate lists —
is `test_impl_max_pass_equals_the_model_sort_over_arbitrary_candidates` in
tests/test_scheduler_unit.py. This file adds what that test does not reach: the tie-break
as a strict total order, ids across the whole u64 range, scores at the f32 boundary, and
independence of the candidate order.
"""
from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import impl.scheduler as impl_mod
import model.scheduler as model_mod
from model.scheduler import U64_MAX, Artifact, ScoreTable, TieBreakContext

ART = Artifact()
F32_MAX = struct.unpack("<f", struct.pack("<I", 0x7F7F_FFFF))[0]
IDS = st.integers(0, U64_MAX) | st.sampled_from([0, 1, U64_MAX - 1, U64_MAX])
RTT = st.none() | st.dictionaries(IDS, st.integers(0, 3), max_size=6)
BOUNDARY_SCORES = st.sampled_from([
    F32_MAX, -F32_MAX, math.nextafter(F32_MAX, math.inf), F32_MAX * (1 + 2**-25), F32_MAX * (1 + 2**-23),
    1e-45, 1.4e-45, 0.7e-45, -0.0, 0.0, math.nan, math.inf, None,
]) | st.floats(allow_nan=True, allow_infinity=True)


SIDES = pytest.mark.parametrize("cls", [model_mod.Scheduler, impl_mod.Scheduler], ids=["model", "impl"])


@settings(max_examples=200, deadline=None)
@given(a=IDS, b=IDS, c=IDS, rtt=RTT)
def test_tie_break_compare_is_a_strict_total_order_and_the_same_in_model_and_impl(a, b, c, rtt):
    ctx = TieBreakContext(rtt)
    sides = [model_mod.Scheduler(0), impl_mod.Scheduler(0)]
    for x, y in ((a, b), (b, c), (a, c)):
        want = model_mod.tie_break_compare(x, y, ctx)
        assert [s.tie_break_compare(x, y, ctx) for s in sides] == [want, want]
        assert want == -model_mod.tie_break_compare(y, x, ctx)
        assert (want == 0) == (x == y)
    cmp = model_mod.tie_break_compare
    if cmp(a, b, ctx) < 0 and cmp(b, c, ctx) < 0:
        assert cmp(a, c, ctx) < 0


@st.composite
def boundary_inputs(draw):
    candidates = draw(st.lists(IDS, max_size=10))
    scores = {n: draw(BOUNDARY_SCORES) for n in candidates}
    return candidates, ScoreTable(scores, default=None), TieBreakContext(draw(RTT))


@SIDES
@settings(max_examples=200, deadline=None)
@given(inputs=boundary_inputs(), data=st.data())
def test_pick_best_candidate_at_the_f32_boundary_ignores_the_candidate_order(cls, inputs, data):
    candidates, table, ctx = inputs
    want = model_mod.Scheduler(0).pick_best_candidate(candidates, ART, table, ctx)
    shuffled = data.draw(st.permutations(candidates))
    assert cls(0).pick_best_candidate(shuffled, ART, table, ctx) == want
    assert cls(0).select_promotion_target(shuffled, ART, table, ctx) == want
