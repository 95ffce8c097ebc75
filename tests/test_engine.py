"""The engine's small parts: the fake clock, value canonicalisation, trace encoding."""
from __future__ import annotations

import json
import math

import pytest

from meshspec.clock import FakeClock
from meshspec.lockstep import canon, diff_lines
from meshspec.traces import Trace, decode, encode, parse


def test_fake_clock_moves_only_when_advanced():
    clock = FakeClock(5)
    assert clock() == 5 and clock() == 5
    assert clock.advance(10) == 15 and clock() == 15


def test_fake_clock_refuses_to_go_backwards():
    with pytest.raises(ValueError):
        FakeClock().advance(-1)


def test_canon_makes_nan_equal_to_nan_but_keeps_signed_zero_apart():
    assert canon([math.nan, 1.0]) == canon([math.nan, 1.0])
    assert canon(0.0) != canon(-0.0)
    assert canon((1, 2)) == canon([1, 2])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, b"\x00\xff", (1, (2, b"x")),
                                   [1.5, None, "s", True], {"k": (1,)}])
def test_trace_encoding_round_trips_values_json_cannot_hold(value):
    assert canon(decode(encode(value))) == canon(value)


INIT = ("init", (1, 8, "default", 2, 1, 4, 1, True, 0, False))


def test_trace_json_round_trips():
    trace = Trace("shard_mapper", "impl.shard_mapper:ShardMapper", 7, "ci",
                  (INIT, ("inject_weight", (0, math.nan)), ("select_shard", (2**64 - 1,))), None)
    again = parse(json.loads(trace.to_json()))
    assert canon(again.steps) == canon(trace.steps) and again.seed == 7


def test_state_diff_of_lists_of_different_lengths_shows_only_the_items_one_side_lacks():
    model, impl = (5, ((1, "a"), (2, "b"))), (6, ((1, "a"), (3, "b"), (4, "c")))
    assert diff_lines(model, impl) == ["[0]: model 5, impl 6",
                                       "[1] items in one only: model [(2, 'b')], impl [(3, 'b'), (4, 'c')]"]
