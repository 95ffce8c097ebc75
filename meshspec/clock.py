"""Injected time. Everything reads time through a callable returning integer nanoseconds."""
from __future__ import annotations

import time
from typing import Callable

Clock = Callable[[], int]

NS_PER_MS = 1_000_000
NS_PER_SEC = 1_000_000_000


class FakeClock:
    """A deterministic clock: starts at `start_ns` and moves only by `advance`."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = int(start_ns)

    def __call__(self) -> int:
        return self._now

    def now(self) -> int:
        return self._now

    def advance(self, ns: int) -> int:
        if ns < 0:
            raise ValueError(f"FakeClock cannot go backwards (advance({ns}))")
        self._now += int(ns)
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now})"


def monotonic_clock() -> int:
    """The default clock for production-style use: monotonic integer nanoseconds."""
    return time.monotonic_ns()
