"""`meshspec bench`: model vs impl on each component's hot-path operations at growing sizes.

Each `BenchCase` builds a zero-argument callable for a class and a size; the harness
calibrates a loop to a minimum duration, keeps the best of a few repeats, and reports
nanoseconds per call for model and impl and their ratio. Benchmarks are measurements,
never test assertions: the `min_ratio` a case declares is the target at its largest
size (0 = no target, a pure measurement), and a miss is flagged in the output, not raised.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import attrs

from meshspec.lockstep import BenchCase, Component, one_line


@attrs.frozen
class BenchRow:
    component: str
    case: str
    size: int
    model_ns: float
    impl_ns: float
    target: float
    error: str | None = None  # what the class under bench raised; the row has no timings

    @property
    def ratio(self) -> float:
        return self.model_ns / self.impl_ns if self.impl_ns > 0 else float("inf")

    def describe_error(self) -> str:
        return f"{self.component}/{self.case} at size {self.size}: {self.error}"

    def cells(self) -> list[Any]:
        if self.error is not None:
            return [self.component, self.case, self.size, "", "", "", f"ERROR: {self.error}"]
        met = "" if not self.target or self.ratio >= self.target else f"below target {self.target:g}x"
        return [self.component, self.case, self.size, f"{self.model_ns:,.0f}",
                f"{self.impl_ns:,.0f}", f"{self.ratio:,.1f}x", met]


HEADERS = ["component", "operation", "size", "model ns/op", "impl ns/op", "ratio", "note"]


def time_per_call(fn: Callable[[], Any], *, min_seconds: float, repeats: int = 3) -> float:
    """Best-of-`repeats` nanoseconds per call, each repeat running at least `min_seconds`."""
    loops = 1
    while True:
        start = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter_ns() - start
        if elapsed >= min_seconds * 1e9 or loops >= 1 << 22:
            break
        loops *= 4 if elapsed < min_seconds * 1e8 else 2
    best = elapsed / loops
    for _ in range(repeats - 1):
        start = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / loops)
    return best


class BenchFailure(Exception):
    """The model or the class under bench raised while a case was built or timed."""


def _measure(side: str, cls: type, case: BenchCase, size: int, min_seconds: float) -> float:
    try:
        return time_per_call(case.make(cls, size), min_seconds=min_seconds)
    except Exception as exc:  # noqa: BLE001 - the class under bench failed: a finding, one line
        raise BenchFailure(f"{side} {cls.__module__}:{cls.__qualname__} raised {one_line(exc)}") from None


def run_case(component: Component, case: BenchCase, size: int, *, min_seconds: float,
             impl_cls: type | None = None) -> BenchRow:
    target = case.min_ratio if size == max(case.sizes) else 0.0  # targets are for the largest size
    try:
        model_ns = _measure("model", component.model_cls, case, size, min_seconds)
        impl_ns = _measure("impl", impl_cls or component.impl_cls, case, size, min_seconds)
    except BenchFailure as exc:
        return BenchRow(component.name, case.name, size, 0.0, 0.0, target, error=str(exc))
    return BenchRow(component.name, case.name, size, model_ns, impl_ns, target)


def run_bench(component: Component, *, quick: bool = False, impl_cls: type | None = None,
              on_row: Callable[[BenchRow], None] | None = None) -> list[BenchRow]:
    rows = []
    for case in component.bench:
        sizes = case.sizes[:1] if quick else case.sizes
        for size in sizes:
            row = run_case(component, case, size, min_seconds=0.02 if quick else 0.2,
                           impl_cls=impl_cls)
            rows.append(row)
            if on_row:
                on_row(row)
            if row.error is not None:
                break  # larger sizes of a failing case would only fail again
    return rows
