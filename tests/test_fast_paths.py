"""The faster step paths decide exactly what the slow ones did: `same_canon` agrees with
comparing canonical forms on any value (NaN, -0.0, nesting, attrs, mixed types), and the
load balancer's explicit metrics tuple is `attrs.astuple` of every field."""
from __future__ import annotations

import math

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from meshspec.lockstep import Outcome, canon, same_canon
from model.load_balancer import LoadMetrics, metrics_abstract


@attrs.frozen
class Pair:
    x: object
    y: object


@attrs.frozen
class OtherPair:  # same field names, another class: canon calls them equal
    x: object
    y: object


LEAVES = st.one_of(st.integers(-3, 3), st.booleans(), st.none(), st.sampled_from(["a", "b"]),
                   st.sampled_from([b"", b"x"]),
                   st.sampled_from([0.0, -0.0, 1.0, math.nan, -math.nan, math.inf, 1]))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
    st.frozensets(LEAVES, max_size=3),
    st.dictionaries(st.sampled_from(["k", "j"]), inner, max_size=2),
    st.builds(Pair, inner, inner), st.builds(OtherPair, inner, inner)), max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(VALUES, VALUES)
def test_same_canon_agrees_with_canonical_equality(a, b):
    assert same_canon(a, b) == (canon(a) == canon(b))


@given(VALUES)
def test_same_canon_of_a_value_and_its_copy_is_true(a):
    import copy

    assert same_canon(a, copy.deepcopy(a))


def test_same_canon_keeps_the_float_distinctions_that_matter():
    assert same_canon(math.nan, math.nan)
    assert not same_canon(0.0, -0.0)
    assert not same_canon((1, [0.0]), (1, [-0.0]))
    assert not same_canon(Pair(1, 0.0), Pair(1, -0.0))
    assert not same_canon(1, 1.0)
    assert not Outcome(value=(0.0,)).same_as(Outcome(value=(-0.0,)))


def test_metrics_abstract_is_astuple_of_every_field():
    values = {f.name: i + 1 for i, f in enumerate(attrs.fields(LoadMetrics))}
    m = LoadMetrics(**values)
    assert metrics_abstract(m) == attrs.astuple(m)
    assert [type(v) for v in metrics_abstract(m)] == [type(v) for v in attrs.astuple(m)]
