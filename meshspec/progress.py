"""Live progress while `meshspec fuzz` runs, and the one-line verdicts that end `fuzz` and `mutants`.

On a terminal, one line (component, examples, steps, steps/s, elapsed) is redrawn in place
with rich, at most every 0.2 s, from the machine's step counter (`RunStats.on_progress`):
no thread of ours and none of rich's (its auto-refresh is off). When stdout is not a
terminal (a pipe, a CI log), the same line is printed plainly every 10 s of a long
component instead; the per-component summary the CLI prints follows each component.

The verdict is the last line of a run: `PASS: ...` or `FAIL: ...`, naming what failed.
Unreached sometimes-witnesses fail a ci or nightly run (`profiles.witnesses_required`);
under the short dev budget they are summarised in one note instead.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Sequence, TextIO

import attrs
from rich.console import Console
from rich.live import Live
from rich.text import Text

from meshspec.machine import RunStats
from meshspec.profiles import witnesses_required

if TYPE_CHECKING:
    from meshspec.fuzz import FuzzResult, MutantResult
    from meshspec.lockstep import Component

Clock = Callable[[], float]

LIVE_INTERVAL = 0.2
PLAIN_INTERVAL = 10.0


def progress_line(label: str, stats: RunStats) -> str:
    seconds = stats.seconds
    rate = stats.steps / seconds if seconds > 0 else 0.0
    return (f"{label}: examples {stats.examples:,}, steps {stats.steps:,}, "
            f"{rate:,.0f} steps/s, {seconds:,.0f} s")


class PlainProgress:
    """Progress as plain lines, one per `interval` seconds of the clock (for pipes and logs)."""

    def __init__(self, out: TextIO, *, clock: Clock = time.monotonic,
                 interval: float = PLAIN_INTERVAL) -> None:
        self.out, self.clock, self.interval = out, clock, interval
        self.label = ""
        self.last = 0.0

    def start(self, label: str) -> None:
        self.label, self.last = label, self.clock()

    def update(self, stats: RunStats) -> None:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.show(stats)

    def show(self, stats: RunStats) -> None:
        print(f"   ... {progress_line(self.label, stats)}", file=self.out, flush=True)

    def stop(self) -> None:
        pass


class LiveProgress(PlainProgress):
    """Progress as one line redrawn in place on a terminal (rich Live, refreshed by us)."""

    def __init__(self, out: TextIO, *, clock: Clock = time.monotonic,
                 interval: float = LIVE_INTERVAL) -> None:
        super().__init__(out, clock=clock, interval=interval)
        self.console = Console(file=out)
        self.live: Live | None = None

    def start(self, label: str) -> None:
        super().start(label)
        self.live = Live(Text(f"{label}: starting"), console=self.console, auto_refresh=False,
                         transient=True, redirect_stdout=False, redirect_stderr=False)
        self.live.start(refresh=True)

    def show(self, stats: RunStats) -> None:
        if self.live is not None:
            self.live.update(Text(progress_line(self.label, stats)), refresh=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def progress_for(out: TextIO) -> PlainProgress:
    """Live progress on a terminal, plain lines otherwise."""
    return LiveProgress(out) if out.isatty() else PlainProgress(out)


def unreached_witnesses(result: FuzzResult, component: Component) -> list[str]:
    """Sometimes-witnesses the run never reached (none are counted for a run that failed)."""
    if result.failed:
        return []
    return [i.name for i in component.invariants
            if i.kind == "sometimes" and result.reached.get(i.name, 0) == 0]


@attrs.frozen
class Outcome:
    """What the verdict needs of one component's run: its steps, and its problem if any."""

    component: str
    steps: int
    problem: str | None
    unreached: tuple[str, ...] = ()


def outcome_of(result: FuzzResult, component: Component) -> Outcome:
    unreached = tuple(unreached_witnesses(result, component))
    problem = None
    if result.trace is not None and result.trace.failure is not None:
        problem = f"{result.trace.failure.kind} {result.trace.failure.name!r}"
    elif result.error is not None:
        problem = result.error.splitlines()[0][:120]
    elif unreached and witnesses_required(result.profile):
        problem = f"sometimes-witnesses not reached: {', '.join(unreached)}"
    return Outcome(component.name, result.steps, problem, unreached)


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {plural or word + 's'}"


def fuzz_verdict(outcomes: Sequence[Outcome]) -> str:
    """`PASS: 6 components, 132,000 steps, 0 failures` or `FAIL: 1 of 6 components failed (...)`."""
    steps = f"{sum(o.steps for o in outcomes):,} steps"
    failed = [o for o in outcomes if o.problem is not None]
    if not failed:
        return f"PASS: {_plural(len(outcomes), 'component')}, {steps}, 0 failures"
    what = "; ".join(f"{o.component}: {o.problem}" for o in failed)
    return f"FAIL: {len(failed)} of {_plural(len(outcomes), 'component')} failed ({what}), {steps}"


def witness_note(outcomes: Sequence[Outcome], profile: str) -> str | None:
    """Under dev, one line for every unreached witness of the passing components."""
    if witnesses_required(profile):
        return None
    names = [f"{o.component}.{w}" for o in outcomes if o.problem is None for w in o.unreached]
    if not names:
        return None
    return (f"note: {_plural(len(names), 'sometimes-witness', 'sometimes-witnesses')} not reached in this short dev run "
            f"(ci and nightly require them): {', '.join(names)}")


def print_mutant_table(component: str, results: Sequence, rows: list, headers: list[str]) -> int:
    """One component's mutant results: the count caught, the table, then each survivor and
    each mutant caught by another check than the one registered. 1 when one survived."""
    from tabulate import tabulate

    print(f"== {component}: {sum(r.caught for r in results)}/{len(results)} mutants caught")
    print(tabulate(rows, headers=headers, tablefmt="github"))
    status = 0
    for r in results:
        if not r.caught:
            status = 1
            print(f"   SURVIVED: {r.mutant.name} ({r.mutant.origin})")
        elif not r.as_expected:
            print(f"   note: {r.mutant.name} was caught by {r.caught_by!r}, "
                  f"registered as {', '.join(r.mutant.caught_by)}")
    return status


def mutants_verdict(results: Sequence[MutantResult]) -> str:
    """`PASS: 97/97 mutants caught` or `FAIL: 2 of 97 mutants survived (component.name, ...)`."""
    survived = [r for r in results if not r.caught]
    if not survived:
        return f"PASS: {len(results)}/{len(results)} mutants caught"
    names = ", ".join(f"{r.result.component}.{r.mutant.name}" for r in survived)
    return f"FAIL: {len(survived)} of {_plural(len(results), 'mutant')} survived ({names})"
