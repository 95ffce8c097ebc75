"""Unit tests of meshspec.strategies: `around` draws every boundary neighbour, and the fallback."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

from meshspec.strategies import U16, around, boundary_values, limits, neighbours, until


def test_int_neighbours_clipped_to_the_type():
    assert neighbours(5) == [4, 5, 6]
    assert neighbours(0, *U16) == [0, 1]
    assert neighbours(65535, *U16) == [65534, 65535]
    assert limits(64) == (0, 2**64 - 1) and limits(8, signed=True) == (-128, 127)


def test_float_neighbours_are_ulp_adjacent():
    below, exact, above = neighbours(0.8)
    assert exact == 0.8 and below < 0.8 < above
    assert math.nextafter(below, 1.0) == 0.8 and math.nextafter(above, 0.0) == 0.8
    assert neighbours(math.inf) == [math.inf]


def test_boundary_values_deduplicate_and_skip_none():
    assert boundary_values([3, 4, None]) == [2, 3, 4, 5]
    with pytest.raises(TypeError):
        boundary_values(["x"])


def _sample(strategy, n=400):
    seen = []

    @settings(max_examples=n, database=None, derandomize=True)
    @given(strategy)
    def collect(v):
        seen.append(v)

    collect()
    return seen


def test_around_draws_every_boundary_neighbour_and_the_fallback():
    seen = set(_sample(around([100, 2**16 - 1], st.integers(1000, 2000), lo=0, hi=2**16 - 1)))
    assert {99, 100, 101, 65534, 65535} <= seen
    assert 65536 not in seen  # clipped to u16
    assert any(1000 <= v <= 2000 for v in seen)


def test_around_float_threshold_hits_exact_and_adjacent_values():
    seen = set(_sample(around([0.8], st.floats(0, 1))))
    assert {math.nextafter(0.8, 0), 0.8, math.nextafter(0.8, 1)} <= seen


def test_plain_fallback_misses_the_boundary_that_around_hits():
    """The reason the helper exists: uniform draws over a wide range never land on 2^53."""
    wide = st.integers(0, 2**64 - 1)
    assert 2**53 not in set(_sample(wide, 200))
    assert 2**53 in set(_sample(around([2**53], wide), 200))


def test_share_bounds_and_degenerate_cases():
    assert set(_sample(around([7], share=100), 50)) == {6, 7, 8}
    assert all(v == -1 for v in _sample(around([7], st.just(-1), share=0), 20))
    with pytest.raises(ValueError):
        around([1], share=101)
    with pytest.raises(ValueError):
        around([], None)
    assert set(_sample(around([], st.just(3)), 10)) == {3}


def test_until_gives_the_delays_to_future_deadlines_only():
    assert until(100, [50, 100, 150, None, 130, 150]) == [30, 50]
