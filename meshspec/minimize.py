"""A deterministic, Hypothesis-free minimiser for counterexample traces.

Given the steps of a failing run and its failure (kind, name), `minimize` returns steps
that still fail the same way and are 1-minimal: removing any single step (other than
the first, `init`) loses the failure. It replays candidates with the plain `Lockstep`,
so it knows nothing of Hypothesis and is exactly as deterministic as the components
(injected clocks and seeded randomness).

1. Delta debugging (ddmin, Zeller & Hildebrandt 2002) over the steps after `init`:
   remove chunks, halving the chunk size down to single steps. A candidate that fails
   earlier is cut after its failing step.
2. Argument simplification, step by step, argument by argument: booleans to False,
   integers to 0, to a smaller value already present in the trace (a boundary such as a
   first shard id) or by bisection toward 0; floats to 0.0, 1.0 or their integral part;
   strings, bytes, lists and tuples shorter (and their elements simpler). A change is
   kept only when the same failure (kind and name) reproduces; every kept change makes
   the trace strictly simpler, so the loop ends.
3. Steps 1 and 2 repeat until neither changes anything, so the last ddmin pass ran at
   single-step granularity with nothing removable: the result is 1-minimal.

Why the exported trace is deterministic: `run_fuzz` runs Hypothesis with its shrink
phase off and minimises the *first* failing example. Given the seed (and the example
database), Hypothesis' generation is deterministic; its shrinker is not, because it is
capped by wall-clock time (profiles.SHRINK_SECONDS), so its output depends on machine
load. This minimiser is capped by a count of replays (`max_runs`), never by time, so the
same seed exports the same trace on any machine and under any load.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Sequence

import attrs

from meshspec.lockstep import Component, Lockstep, LockstepFailure

Step = tuple[str, tuple]
Steps = tuple[Step, ...]

#: The default cap on replays per minimisation: a count, so the result never depends on time.
MAX_RUNS = 4000
#: Replays spent on one argument per simplification pass.
ARG_TRIES = 48
#: How far above a value an integer still counts as related to it (see `_shift_clusters`).
CLUSTER_SPAN = 64


@attrs.frozen
class Minimized:
    """The minimised steps, the failure they reproduce, and the replays it took."""

    steps: Steps
    failure: LockstepFailure
    runs: int
    exhausted: bool  # the replay budget ran out: the result fails but may not be 1-minimal


class _Budget(Exception):
    """Raised inside the search when `max_runs` replays have been spent."""


class _Oracle:
    """Replays candidate steps, memoised; answers the failure when it is the same one."""

    def __init__(self, component: Component, impl_cls: type, kind: str, name: str,
                 max_runs: int) -> None:
        self.component, self.impl_cls = component, impl_cls
        self.kind, self.name, self.max_runs = kind, name, max_runs
        self.runs = 0
        self._memo: dict[str, LockstepFailure | None] = {}

    def __call__(self, steps: Steps) -> LockstepFailure | None:
        key = repr(steps)
        if key not in self._memo:
            if self.runs >= self.max_runs:
                raise _Budget()
            self.runs += 1
            self._memo[key] = self._run(steps)
        return self._memo[key]

    def _run(self, steps: Steps) -> LockstepFailure | None:
        exc = reproduce(self.component, self.impl_cls, steps)
        if exc is not None and (exc.kind, exc.name) == (self.kind, self.name):
            return exc
        return None


def reproduce(component: Component, impl_cls: type, steps: Sequence[Step]) -> LockstepFailure | None:
    """Replay `steps`; the LockstepFailure they end in, or None (also for a malformed step)."""
    ls = Lockstep(component, impl_cls)
    try:
        ls.run(steps)
    except LockstepFailure as exc:
        return exc
    except (ValueError, TypeError):  # a candidate the harness refuses (unknown rule, arity)
        return None
    return None


def minimize(component: Component, impl_cls: type, steps: Sequence[Step], kind: str, name: str,
             *, max_runs: int = MAX_RUNS) -> Minimized:
    """1-minimal steps failing with (kind, name); ValueError when `steps` do not fail so."""
    oracle = _Oracle(component, impl_cls, kind, name, max_runs)
    current = tuple((rule, tuple(args)) for rule, args in steps)
    first = oracle(current)
    if first is None:
        raise ValueError(f"the steps do not fail with {kind} {name!r}")
    current, exhausted = current[: first.step + 1], False
    try:
        while True:
            current = _ddmin(current, oracle)
            simpler = _simplify(_shift_clusters(current, oracle), oracle)
            if simpler == current:
                break
            current = simpler
    except _Budget:
        exhausted = True
    failure = reproduce(component, impl_cls, current) or first
    return Minimized(current, failure, oracle.runs, exhausted)


def _accept(candidate: Steps, oracle: _Oracle) -> Steps | None:
    """The candidate cut after its failing step, when it fails the same way."""
    exc = oracle(candidate)
    return None if exc is None else candidate[: exc.step + 1]


def _ddmin(steps: Steps, oracle: _Oracle) -> Steps:
    """Delta debugging over everything after the first step; ends 1-minimal."""
    head, body = steps[:1], list(steps[1:])
    n = 2
    while body:
        n = min(n, len(body))
        chunks = _split(body, n)
        for i in range(len(chunks)):
            complement = [s for j, c in enumerate(chunks) if j != i for s in c]
            kept = _accept(head + tuple(complement), oracle)
            if kept is not None:
                body = list(kept[1:])
                n = max(n - 1, 2)
                break
        else:
            if n >= len(body):
                break
            n = min(2 * n, len(body))
    return head + tuple(body)


def _split(items: list[Step], n: int) -> list[list[Step]]:
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def _simplify(steps: Steps, oracle: _Oracle) -> Steps:
    """One pass of argument simplification over every step; returns the simpler steps."""
    present = _ints_present(steps)
    index = 0
    while index < len(steps):
        for pos in range(len(steps[index][1])):
            steps = _simplify_arg(steps, index, pos, present, oracle)
            if index >= len(steps):
                break
        index += 1
    return steps


def _simplify_arg(steps: Steps, index: int, pos: int, present: list[int], oracle: _Oracle) -> Steps:
    """Replace one argument by its simplest candidate that keeps the failure, repeatedly
    (at most ARG_TRIES replays per argument and pass, so a long chain cannot eat the budget)."""
    tries = 0
    while index < len(steps) and pos < len(steps[index][1]):
        rule, args = steps[index]
        for value in candidates(args[pos], present):
            tries += 1
            new_args = args[:pos] + (value,) + args[pos + 1:]
            kept = _accept(steps[:index] + ((rule, new_args),) + steps[index + 1:], oracle)
            if kept is not None:
                steps = kept
                break
            if tries >= ARG_TRIES:
                return steps
        else:
            return steps
    return steps


def _shift_clusters(steps: Steps, oracle: _Oracle) -> Steps:
    """Move related integers together: every value in [v, v + CLUSTER_SPAN] shifted so that
    v becomes 0 or a smaller value present (ids counted from a `first_id`, for instance)."""
    for v in reversed(_ints_present(steps)):
        present = _ints_present(steps)
        if v not in present or v <= 1:
            continue
        for target in [0, *[p for p in present if 0 <= p < v][-2:]]:
            kept = _accept(_map_ints(steps, lambda x: x - v + target if v <= x <= v + CLUSTER_SPAN else x),
                           oracle)
            if kept is not None:
                steps = kept
                break
    return steps


def _map_ints(steps: Steps, fn: Callable[[int], int]) -> Steps:
    def walk(value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return fn(value)
        if isinstance(value, (list, tuple)):
            return type(value)(walk(v) for v in value)
        return value

    return tuple((rule, walk(args)) for rule, args in steps)


def _ints_present(steps: Steps) -> list[int]:
    found: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            found.add(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    for _, args in steps:
        walk(args)
    return sorted(found, key=lambda v: (abs(v), v < 0))


def candidates(value: Any, present: Sequence[int] = ()) -> Iterator[Any]:
    """Strictly simpler replacements for `value`, simplest first."""
    makers: dict[type, Callable[[Any, Sequence[int]], Iterator[Any]]] = {
        bool: _bool_candidates, int: _int_candidates, float: _float_candidates,
        str: _seq_candidates, bytes: _seq_candidates, tuple: _seq_candidates, list: _seq_candidates,
    }
    maker = makers.get(type(value))
    if maker is not None:
        yield from maker(value, present)


def _bool_candidates(value: bool, present: Sequence[int]) -> Iterator[bool]:
    if value:
        yield False


def _int_rank(value: int) -> tuple[int, bool]:
    return (abs(value), value < 0)


def _int_candidates(value: int, present: Sequence[int]) -> Iterator[int]:
    """0, then 1 (or -1), the smallest and the nearest smaller values present, then bisection
    toward 0. A candidate never changes the value's sign: a count, an id or a limit drawn from
    a non-negative range stays in it (a shrunk `node_count` of -1 would slice a list from its
    end, an input no rule draws)."""
    sign = -1 if value < 0 else 1
    smaller = [p for p in present if _int_rank(p) < _int_rank(value) and p * sign >= 0]
    bisect = [value - (value >> k) if value > 0 else value + ((-value) >> k) for k in range(1, 17)]
    seen: set[int] = set()
    for cand in [0, sign, *smaller[:3], *smaller[-3:], *bisect]:
        if cand not in seen and _int_rank(cand) < _int_rank(value):
            seen.add(cand)
            yield cand


def _float_rank(value: float) -> tuple[int, float]:
    if math.isnan(value):
        return (5, 0.0)
    if math.isinf(value):
        return (4, 0.0)
    if value == 0.0 and math.copysign(1.0, value) > 0:
        return (0, 0.0)
    if value == 1.0:
        return (1, 0.0)
    return (2 if value.is_integer() else 3, abs(value))


def _float_candidates(value: float, present: Sequence[int]) -> Iterator[float]:
    options = [0.0, 1.0]
    if math.isfinite(value):
        options.append(float(math.trunc(value)))
    for cand in options:
        if _float_rank(cand) < _float_rank(value):
            yield cand


def _seq_candidates(value: Any, present: Sequence[int]) -> Iterator[Any]:
    """Shorter first (empty, halves, one element fewer), then one element simpler."""
    n = len(value)
    if n == 0:
        return
    yield value[:0]
    if n > 2:
        yield value[: n // 2]
    for i in reversed(range(n)):
        yield value[:i] + value[i + 1:]
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            for simpler in candidates(item, present):
                yield value[:i] + type(value)([simpler]) + value[i + 1:]
