"""Boundary-aimed Hypothesis strategies shared by every component's machine.

Random generation rarely lands exactly on a policy threshold, a cap, a timeout or an
integer limit, so a `>` that should be `>=` survives. `around(values, fallback)` draws,
with a fixed share of the draws, one of the boundary values exactly, one just below or
one just above it (the adjacent float via `math.nextafter` for floats, +-1 for ints),
clipped to the type's range; the other draws come from `fallback`.

`U16`, `U32`, `U64` are the ranges of the unsigned integer types the Rust API uses;
`limits(bits)` gives any other. `until(now, deadlines)` is the "advance exactly to the
next boundary" helper for clock rules: the delays to every future deadline, as exact
values for `around`.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from hypothesis import strategies as st

#: Percentage of draws `around` spends on the boundary neighbourhood.
DEFAULT_SHARE = 30

U16 = (0, 2**16 - 1)
U32 = (0, 2**32 - 1)
U64 = (0, 2**64 - 1)


def limits(bits: int, signed: bool = False) -> tuple[int, int]:
    """The (lowest, highest) value of a `bits`-wide integer type."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def neighbours(value: Any, lo: Any = None, hi: Any = None) -> list[Any]:
    """`value`, the value just below and the one just above, clipped to [lo, hi], in order.

    Floats step to the adjacent representable float (`math.nextafter`); ints step by 1;
    bools have no neighbours. NaN and infinities are returned alone."""
    if isinstance(value, bool):
        return [value]
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return [value]
        near = [math.nextafter(value, -math.inf), value, math.nextafter(value, math.inf)]
    elif isinstance(value, int):
        near = [value - 1, value, value + 1]
    else:
        raise TypeError(f"around: a boundary must be an int or a float, not {type(value).__name__}")
    return [v for v in near if (lo is None or v >= lo) and (hi is None or v <= hi)]


def boundary_values(values: Iterable[Any], lo: Any = None, hi: Any = None) -> list[Any]:
    """Every boundary's neighbourhood (see `neighbours`), deduplicated, sorted; NaN kept once."""
    out: list[Any] = []
    seen: set[Any] = set()
    nan = False
    for value in values:
        if value is None:
            continue
        for v in neighbours(value, lo, hi):
            if isinstance(v, float) and math.isnan(v):
                nan = True
                continue
            key = (type(v), v)
            if key not in seen:
                seen.add(key)
                out.append(v)
    out.sort()
    return out + ([math.nan] if nan else [])


def around(values: Iterable[Any], fallback: st.SearchStrategy[Any] | None = None, *,
           lo: Any = None, hi: Any = None, share: int = DEFAULT_SHARE) -> st.SearchStrategy[Any]:
    """Boundary values exactly, one below and one above, `share`% of the draws; else `fallback`.

    `values` are the boundaries (None entries are skipped, so an optional policy field can be
    passed as is); `lo`/`hi` clip the neighbours to the type's range (e.g. `*U16`). Without a
    fallback, or with no boundary left after clipping, it draws the other kind only.
    The share is drawn first as an integer in [0, 100), so shrinking moves towards the
    boundary values, which are what a failure usually needs."""
    if not 0 <= share <= 100:
        raise ValueError(f"around: share must be a percentage in [0, 100], not {share}")
    cands = boundary_values(values, lo, hi)
    if not cands:
        if fallback is None:
            raise ValueError("around: no boundary values and no fallback")
        return fallback
    if share == 0 and fallback is not None:
        return fallback
    # One strategy per distinct (boundary list, fallback, share): building strategies on
    # every draw cost more than the rules drawing from them. The key holds the boundaries by
    # repr (-0.0 == 0.0 and 1 == 1.0, yet they are different draws) and the fallback by
    # identity; the cache keeps the fallback alive, so its id cannot be reused meanwhile.
    key = (tuple(map(repr, cands)), id(fallback), share)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is fallback:
        return hit[1]
    exact = st.sampled_from(tuple(cands))
    strategy = exact if fallback is None or share == 100 else _share_of(exact, fallback, share)
    if len(_CACHE) >= 4096:
        _CACHE.clear()
    _CACHE[key] = (fallback, strategy)
    return strategy


_CACHE: dict[tuple, tuple[Any, st.SearchStrategy[Any]]] = {}


@st.composite
def _share_of(draw: Any, exact: st.SearchStrategy[Any], fallback: st.SearchStrategy[Any], share: int) -> Any:
    """`share`% of the draws from `exact`, the others from `fallback`. Defined once: building
    an `st.composite` per call of `around` cost more than the rule that drew from it."""
    if draw(st.integers(0, 99)) < share:
        return draw(exact)
    return draw(fallback)


def until(now: int, deadlines: Iterable[int | None]) -> list[int]:
    """The delays from `now` to every deadline still ahead (sorted, deduplicated): the
    "advance exactly to the next boundary" steps of a clock rule, to pass to `around`."""
    return sorted({d - now for d in deadlines if d is not None and d > now})


def pick_around(data: Any, values: Sequence[Any], fallback: st.SearchStrategy[Any] | None = None,
                *, label: str | None = None, **kwargs: Any) -> Any:
    """`data.draw(around(values, fallback, ...))` inside an `st.data()` rule."""
    return data.draw(around(values, fallback, **kwargs), label=label)
