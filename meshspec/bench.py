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

from meshspec.lockstep import BenchCase, Component


@attrs.frozen
class BenchRow:
    component: str
    case: str
    size: int
    model_ns: float
    impl_ns: float
    target: float

    @property
    def ratio(self) -> float:
        return self.model_ns / self.impl_ns if self.impl_ns > 0 else float("inf")

    def cells(self) -> list[Any]:
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


def run_case(component: Component, case: BenchCase, size: int, *, min_seconds: float,
             impl_cls: type | None = None) -> BenchRow:
    model_fn = case.make(component.model_cls, size)
    impl_fn = case.make(impl_cls or component.impl_cls, size)
    model_ns = time_per_call(model_fn, min_seconds=min_seconds)
    impl_ns = time_per_call(impl_fn, min_seconds=min_seconds)
    target = case.min_ratio if size == max(case.sizes) else 0.0  # targets are for the largest size
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
    return rows
