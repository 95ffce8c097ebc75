"""Boundary-aimed Hypothesis strategies shared by every component's machine.

Random generation rarely lands exactly on a policy threshold, a cap, a timeout or an
integer limit, so a `>` that should be `>=` survives. `around(values, fallback)` draws,
with a fixed share of the draws, one of the boundary values exactly, one just below or
one just above it (the adjacent float via `math.nextafter` for floats, +-1 for ints),
clipped to the type's range; the other draws come from `fallback`.

`pick(data, items)` draws one of a list known only at draw time (a pool of ids in some
state) the way `data.draw(st.sampled_from(items))` does, through one cached strategy
object per length: a fresh `sampled_from` per draw is validated anew each time, which
costs more than the draw itself.

`U16`, `U32`, `U64` are the ranges of the unsigned integer types the Rust API uses;
`limits(bits)` gives any other. `until(now, deadlines)` is the "advance exactly to the
next boundary" helper for clock rules: the delays to every future deadline, as exact
values for `around`.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Iterable, Sequence, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

T = TypeVar("T")

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
    if fallback is not None and share == 0:
        return fallback
    key = (tuple((type(c), repr(c)) for c in cands), share if fallback is not None else 100, fallback)
    cached = _AROUND.get(key)
    if cached is None:
        if len(_AROUND) >= _AROUND_SIZE:
            _AROUND.clear()
        exact = st.sampled_from(cands)
        cached = _AROUND[key] = exact if key[1] == 100 else _Around(share, exact, fallback)
    return cached


#: `around` strategies by (boundary values by type and repr, share, fallback): the same
#: boundaries come back step after step, and a strategy object reused skips Hypothesis'
#: validation, which costs more than the draw. Keyed by repr so that -0.0 and 0.0, 1 and
#: 1.0 stay apart; cleared when full.
_AROUND: dict[tuple, SearchStrategy[Any]] = {}
_AROUND_SIZE = 4096


#: The share draw of `around`, one strategy object for every call (validated once).
_PERCENT = st.integers(0, 99)


class _Around(SearchStrategy):
    """`around`'s draw: a percentage, then the boundary values or the fallback.

    A plain strategy class rather than an `@st.composite` built inside `around`: a composite
    defined per call makes Hypothesis inspect the function's source each time (most of the
    cost of a rule that draws a boundary value), while this draws exactly the same choices."""

    def __init__(self, share: int, exact: SearchStrategy[Any], fallback: SearchStrategy[Any]) -> None:
        super().__init__()
        self.share, self.exact, self.fallback = share, exact, fallback

    def do_draw(self, data: Any) -> Any:
        if data.draw(_PERCENT) < self.share:
            return data.draw(self.exact)
        return data.draw(self.fallback)

    def __repr__(self) -> str:
        return f"around({self.exact!r}, {self.fallback!r}, share={self.share})"


def until(now: int, deadlines: Iterable[int | None]) -> list[int]:
    """The delays from `now` to every deadline still ahead (sorted, deduplicated): the
    "advance exactly to the next boundary" steps of a clock rule, to pass to `around`."""
    return sorted({d - now for d in deadlines if d is not None and d > now})


def pick_around(data: Any, values: Sequence[Any], fallback: st.SearchStrategy[Any] | None = None,
                *, label: str | None = None, **kwargs: Any) -> Any:
    """`data.draw(around(values, fallback, ...))` inside an `st.data()` rule."""
    return data.draw(around(values, fallback, **kwargs), label=label)


class _Index(SearchStrategy):
    """An index into a sequence of `n` items, drawn as `sampled_from` draws it (uniform, no
    weighting of the ends, shrinking towards 0)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def do_draw(self, data: Any) -> int:
        return data.draw_integer(0, self.n - 1)

    def __repr__(self) -> str:
        return f"index({self.n})"


@functools.lru_cache(maxsize=None)
def _index(n: int) -> _Index:
    return _Index(n)


def pick(data: Any, items: Sequence[T], label: str | None = None) -> T:
    """One of `items` drawn inside an `st.data()` rule: `data.draw(st.sampled_from(items))`
    with the same choices (none for a single item), without building a strategy per draw."""
    if not items:
        raise ValueError("pick: nothing to pick from")
    if len(items) == 1:
        return items[0]
    return items[data.draw(_index(len(items)), label=label)]
