"""Running a component's lockstep machine under Hypothesis, and the mutant tier.

`run_fuzz` runs one (component, impl) pair under a profile and seed and returns what the
CLI prints: examples, steps, steps/second, rule hits, reached witnesses and the shrunk
failure as a `Trace`. `run_mutants` runs it once per mutant and reports what caught each.
Both take a Hypothesis `backend` (see meshspec.profiles); `compare_backends` measures the
curated mutants under each backend with the same budget, for REPORT.md
(`python -m meshspec.fuzz --compare-backends`, see `main`).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence, TextIO

import attrs
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as hsettings
from hypothesis.errors import Flaky
from hypothesis.stateful import run_state_machine_as_test

from meshspec import machine as machine_mod
from meshspec.lockstep import ENVIRONMENT_ERRORS, Component, LockstepFailure, Mutant, impl_path
from meshspec.profiles import (BACKENDS, CHUNK_EXAMPLES, DEFAULT_BACKEND, chunk_seed, chunk_sizes,
                               fixed_constants, settings_for, shrink_budget)
from meshspec.minimize import minimize
from meshspec.traces import Failure, Trace


@attrs.frozen
class FuzzResult:
    component: str
    impl: str
    profile: str
    seed: int
    examples: int
    steps: int
    seconds: float
    rule_hits: dict[str, int]
    reached: dict[str, int]
    trace: Trace | None
    first_failure_examples: int | None
    first_failure_seconds: float | None
    error: str | None = None
    backend: str = DEFAULT_BACKEND
    #: crosshair only: how each test case it ran symbolically ended (CrossHair's words) -> count
    solver_outcomes: dict[str, int] = attrs.field(factory=dict)
    #: rule -> (times its precondition held, times it was evaluated), for rules that have one
    preconditions: dict[str, tuple[int, int]] = attrs.field(factory=dict)
    #: seconds applying rules to model and impl, and checking after them (see `time_split`)
    operation_seconds: float = 0.0
    check_seconds: float = 0.0

    @property
    def time_split(self) -> dict[str, float]:
        """Shares of the run's time: "generation" (Hypothesis choosing examples and rules, the
        rules' own draws, set-up and tear-down of each example), "operations" (the rule applied
        to model and impl through the harness) and "checks" (the engine's comparisons of
        results, abstract states and observations, the invariants, the impl's self-check and
        the witnesses). Empty for a run of no measurable length."""
        if self.seconds <= 0:
            return {}
        ops, checks = self.operation_seconds / self.seconds, self.check_seconds / self.seconds
        return {"generation": max(0.0, 1.0 - ops - checks), "operations": ops, "checks": checks}

    @property
    def failed(self) -> bool:
        return self.trace is not None or self.error is not None

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    @property
    def solver_cases(self) -> int:
        """Test cases the crosshair backend ran symbolically (Hypothesis generated the others)."""
        return sum(self.solver_outcomes.values())

    @property
    def solver_found(self) -> bool:
        """Whether a symbolic test case (not a fallback one) raised the failure."""
        return any(text.startswith("raised ") for text in self.solver_outcomes)

    def solver_note(self) -> str | None:
        """One line on what the crosshair backend did, or None under the default backend."""
        if self.backend != "crosshair":
            return None
        outcomes = ", ".join(f"{text}: {n}" for text, n in sorted(self.solver_outcomes.items()))
        rest = self.examples - self.solver_cases
        return (f"crosshair ran {self.solver_cases} of {self.examples} test cases symbolically "
                f"({outcomes or 'none'})" + (f"; Hypothesis' own generation ran the other {rest} "
                                             "after the backend gave up" if rest > 0 else ""))


def rules_of(component: Component) -> list[str]:
    """Rule names the machine can call (its `step("name", ...)` targets)."""
    import inspect

    source = inspect.getsource(component.machine_cls)
    return sorted(set(re.findall(r'self\.step\(\s*"([a-z_0-9]+)"', source)))


def coverage_gaps(result: FuzzResult, component: Component) -> list[str]:
    """What `fuzz --fail-under-coverage` fails on: rules that never ran, preconditions never
    satisfied, sometimes-witnesses never reached (nothing for a run that already failed)."""
    if result.failed:
        return []
    gaps = [f"rule {r} never ran" for r in rules_of(component) if result.rule_hits.get(r, 0) == 0]
    gaps += [f"precondition of {r} never held ({total} evaluations)"
             for r, (held, total) in result.preconditions.items() if held == 0]
    gaps += [f"witness {w} never reached" for w in sometimes_names(component)
             if result.reached.get(w, 0) == 0]
    return gaps


def sometimes_names(component: Component) -> list[str]:
    return [i.name for i in component.invariants if i.kind == "sometimes"]


def component_modules(component: Component, impl_cls: type) -> list[ModuleType]:
    """The modules whose constants Hypothesis may draw for this run: the component's own."""
    classes = (component.model_cls, component.impl_cls, component.machine_cls, impl_cls)
    return [sys.modules[c.__module__] for c in classes if c.__module__ in sys.modules]


def _database_key(component: Component, impl_cls: type) -> str:
    return f"{component.name}/{impl_path(impl_cls).replace(':', '.')}"


def run_fuzz(component: Component, impl_cls: type, *, profile: str, seed: int,
             use_database: bool = True, max_examples: int | None = None,
             shrink: bool = True, chunk_examples: int = CHUNK_EXAMPLES,
             progress: Callable[[machine_mod.RunStats], None] | None = None,
             backend: str = DEFAULT_BACKEND, database_root: Any = None) -> FuzzResult:
    """Run the lockstep machine (in chunks, see `run_chunks`); never raises for a finding (it is
    in the result). `progress` is called with the run's stats after every step. `backend`
    is the Hypothesis backend that generates the examples (checked by `settings_for`);
    `database_root` a campaign's shared example database (see `settings_for`)."""
    machine_cls = hypothesis_seed(seed)(component.machine_for(impl_cls))
    key = _database_key(component, impl_cls) if use_database else None
    # Hypothesis' shrinker is capped by wall-clock time; the deterministic minimiser
    # (meshspec.minimize) replaces it, so the same seed exports the same trace anywhere.
    settings = settings_for(profile, database_key=key, max_examples=max_examples, shrink=False,
                            backend=backend, database_root=database_root)
    stats = machine_mod.reset_stats(progress)
    trace, error, outcomes = None, None, Counter[str]()
    try:
        with shrink_budget(profile), fixed_constants(component_modules(component, impl_cls)), \
                solver_chatter_dropped(backend), solver_outcomes_counted(backend, outcomes):
            run_chunks(machine_cls, settings, seed, chunk_examples)
    except ENVIRONMENT_ERRORS:
        raise  # a lost etcd server is not a finding: the CLI exits 2
    except LockstepFailure as exc:
        trace = failure_trace(component, impl_cls, exc, seed=seed, profile=profile, minimise=shrink)
    except Flaky as exc:
        error = f"flaky failure (nondeterministic component?): {exc}"
    except Exception as exc:  # noqa: BLE001 - the machine itself broke; report, don't crash
        error = f"machine error: {type(exc).__name__}: {exc}"
    finally:
        stats.on_progress = None  # the caller's output may be gone once the run is over
    return FuzzResult(
        component=component.name, impl=impl_path(impl_cls), profile=profile, seed=seed,
        examples=stats.examples, steps=stats.steps, seconds=stats.seconds,
        rule_hits=dict(stats.rule_hits), reached=dict(stats.reached), trace=trace,
        first_failure_examples=stats.first_failure_examples,
        first_failure_seconds=stats.first_failure_seconds, error=error, backend=backend,
        solver_outcomes=dict(outcomes),
        preconditions={rule: (held, total) for rule, (held, total) in sorted(stats.preconditions.items())},
        operation_seconds=stats.operation_seconds, check_seconds=stats.check_seconds,
    )


@contextlib.contextmanager
def solver_outcomes_counted(backend: str, outcomes: Counter[str]) -> Iterator[None]:
    """Under the crosshair backend, count how each symbolic test case ends into `outcomes`.

    Hypothesis switches to its own generation, silently, once the backend has discarded more
    than 10 test cases and more than 20% of them, or has exhausted its paths; on the lockstep
    machines that happens after about a dozen cases (a 40-step path ends in CrossHair's
    "non determinism detected", "path timeout" or "excessive solver costs"). The count shows
    how much of a run was symbolic. It wraps the provider's `set_completion`, which CrossHair
    calls once per test case with the reason it ended.
    """
    if backend != "crosshair":
        yield
        return
    from hypothesis_crosshair_provider.crosshair_provider import CrossHairPrimitiveProvider

    saved = CrossHairPrimitiveProvider.set_completion

    def counted(provider: Any, text: str) -> Any:
        outcomes[re.sub(r"^ignored due to ", "discarded: ", text)] += 1
        return saved(provider, text)

    CrossHairPrimitiveProvider.set_completion = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        CrossHairPrimitiveProvider.set_completion = saved  # type: ignore[method-assign]


class _BlockFilter(io.TextIOBase):
    """A stdout that drops CrossHair's "Not Deterministic Debug" blocks and passes the rest.

    CrossHair prints such a block (one `print` per line, 50-100 lines) whenever a state
    machine path it replays goes another way, which with Hypothesis' stateful feature flags
    happens on most examples; the example is then discarded, not reported, so the block is
    noise between meshspec's progress and verdict lines."""

    BEGIN, END = "*** Begin Not Deterministic Debug ***", "*** End Not Deterministic Debug ***"

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.out, self.inside, self.drop_newline = out, False, False

    def write(self, text: str) -> int:
        if self.BEGIN in text:
            self.inside = True
        if self.inside or (self.drop_newline and text == "\n"):
            self.inside = self.inside and self.END not in text
            self.drop_newline = not self.inside and text != "\n"
            return len(text)
        self.drop_newline = False
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


@contextlib.contextmanager
def solver_chatter_dropped(backend: str) -> Iterator[None]:
    """Under the crosshair backend, filter its debug blocks out of sys.stdout while the block runs."""
    if backend != "crosshair":
        yield
        return
    saved = sys.stdout
    sys.stdout = _BlockFilter(saved)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = saved


def run_chunks(machine_cls: type, settings: Any, seed: int, chunk_examples: int) -> None:
    """Run the budget as Hypothesis runs of at most `chunk_examples` examples each.

    Each run keeps every example's data until it ends, so one long run grows without bound;
    separate runs free it. The first run uses `seed` (a budget that fits in one chunk runs
    exactly as unsplit), the next ones `chunk_seed(seed, i)`; all share the example database
    and the current RunStats, so counts, rule hits and witnesses add up, and the first
    failure ends the whole run.
    """
    for index, size in enumerate(chunk_sizes(settings.max_examples, chunk_examples)):
        hypothesis_seed(chunk_seed(seed, index))(machine_cls)
        run_state_machine_as_test(machine_cls, settings=hsettings(settings, max_examples=size))


def failure_trace(component: Component, impl_cls: type, exc: LockstepFailure, *, seed: int | None,
                  profile: str | None, minimise: bool = True) -> Trace:
    """The trace of a failure: the first failing example, minimised when asked (1-minimal,
    arguments simplified; see meshspec.minimize for why this is deterministic)."""
    steps, failure = tuple(exc.steps[: exc.step + 1]), exc
    if minimise:
        try:
            result = minimize(component, impl_cls, steps, exc.kind, exc.name)
            steps, failure = result.steps, result.failure
        except ValueError:  # the failure does not replay (a nondeterministic class): keep it raw
            pass
    return Trace(component.name, impl_path(impl_cls), seed, profile, steps, Failure.of(failure))


@attrs.frozen
class MutantResult:
    mutant: Mutant
    result: FuzzResult

    @property
    def caught(self) -> bool:
        return self.result.trace is not None

    @property
    def caught_by(self) -> str:
        if self.result.trace is None or self.result.trace.failure is None:
            return self.result.error or "SURVIVED"
        return self.result.trace.failure.name

    @property
    def as_expected(self) -> bool:
        return self.caught and matches_check(self.caught_by, self.mutant.caught_by)

    def row(self) -> list[Any]:
        r = self.result
        trace_len = len(r.trace.steps) if r.trace else None
        seconds = None if r.first_failure_seconds is None else round(r.first_failure_seconds, 2)
        return [self.mutant.name, self.mutant.origin, self.caught_by,
                r.first_failure_examples, seconds, trace_len, round(r.seconds, 1)]


def matches_check(name: str, expected: tuple[str, ...]) -> bool:
    """Whether a failure name is one of the expected checks (`* result` matches any result divergence)."""
    return any(name == e or (e.startswith("*") and name.endswith(e[1:])) for e in expected)


MUTANT_HEADERS = ["mutant", "origin", "caught by", "examples to 1st failure",
                  "seconds to 1st failure", "shrunk trace length", "total seconds"]


def run_mutants(component: Component, *, profile: str, seed: int, only: list[str] | None = None,
                shrink: bool = True, on_result: Any = None, backend: str = DEFAULT_BACKEND,
                max_examples: int | None = None) -> list[MutantResult]:
    """Run the machine against each mutant (or the `only` ones); `on_result` sees each result."""
    results = []
    for m in component.mutants:
        if only and m.name not in only:
            continue
        res = MutantResult(m, run_fuzz(component, m.cls, profile=profile, seed=seed,
                                       use_database=False, shrink=shrink, backend=backend,
                                       max_examples=max_examples))
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


def export_failure(result: FuzzResult, directory: str | Path) -> tuple[Path, Path] | None:
    from meshspec.traces import export

    if result.trace is None:
        return None
    return export(result.trace, directory)


#: Where `compare_backends` results are recorded for REPORT.md's "Hypothesis backends" table.
BACKEND_RESULTS_PATH = Path(__file__).resolve().parent.parent / "docs" / "backend-results.json"
#: The measurement's fixed budget: examples per mutant, under the dev profile's step count.
COMPARE_EXAMPLES = 30
#: The first this-many curated mutants of each component (registry order) are measured.
COMPARE_MUTANTS = 5


def backend_cell(result: FuzzResult) -> dict[str, Any]:
    """One mutant under one backend: caught, by what, examples, steps and seconds."""
    caught_by = result.trace.failure.name if result.trace and result.trace.failure else None
    cell = {"caught": result.trace is not None, "caught_by": caught_by or result.error,
            "examples": result.examples, "steps": result.steps, "seconds": round(result.seconds, 1)}
    if result.backend == "crosshair":
        cell.update(solver_cases=result.solver_cases, solver_found=result.solver_found,
                    solver_outcomes=dict(sorted(result.solver_outcomes.items())))
    return cell


def compare_backends(component: Component, *, mutants: Sequence[Mutant], examples: int, seed: int,
                     backends: Sequence[str] = BACKENDS,
                     on_cell: Callable[[str, str, dict[str, Any]], None] | None = None,
                     ) -> dict[str, dict[str, dict[str, Any]]]:
    """mutant -> backend -> `backend_cell`: each mutant run under every backend with the same
    budget (`examples` examples of the dev profile's length, no minimising)."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for m in mutants:
        for backend in backends:
            result = run_fuzz(component, m.cls, profile="dev", seed=seed, use_database=False,
                              max_examples=examples, shrink=False, backend=backend)
            table.setdefault(m.name, {})[backend] = cell = backend_cell(result)
            if on_cell is not None:
                on_cell(m.name, backend, cell)
    return table


def load_backend_results(path: Path | None = None) -> dict[str, Any]:
    """The recorded comparison: {"examples", "seed", "mutants_per_component", "components"}."""
    try:
        return json.loads((path or BACKEND_RESULTS_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def backend_record_conflict(results: dict[str, Any], *, examples: int, seed: int) -> str | None:
    """Why a new recording may not join `results` (another budget or seed), or None."""
    if not results.get("components"):
        return None
    if (results.get("examples"), results.get("seed")) != (examples, seed):
        return (f"{BACKEND_RESULTS_PATH.name} holds runs of {results.get('examples')} examples with "
                f"seed {results.get('seed')}; record with --examples {results.get('examples')} or "
                f"remove the file to start a new table")
    return None


def record_backend_results(component: str, table: dict[str, Any], *, examples: int, seed: int,
                           per_component: int, path: Path | None = None) -> None:
    """Merge one component's comparison (mutant by mutant) into the results file, atomically.
    The header keeps the widest recording (a re-run of the first 5 mutants leaves the rows of
    mutants 6..30 and says 30); a budget or seed other than the recorded one is refused
    (`backend_record_conflict`), since the table would then compare unlike runs."""
    from meshspec.traces import atomic_write

    path = path or BACKEND_RESULTS_PATH
    results = load_backend_results(path)
    conflict = backend_record_conflict(results, examples=examples, seed=seed)
    if conflict:
        raise ValueError(conflict)
    components = results.get("components", {})
    components[component] = dict(sorted({**components.get(component, {}), **table}.items()))
    widest = max(per_component, results.get("mutants_per_component", 0)) if components else per_component
    results.update(examples=examples, seed=seed, mutants_per_component=widest,
                   components=dict(sorted(components.items())))
    atomic_write(path, json.dumps(results, indent=1, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m meshspec.fuzz --compare-backends [COMPONENT ...] [--start I] [--mutants N]
    [--record]`: run mutants I..N-1 (registry order; default the first COMPARE_MUTANTS) of each
    component under both backends and print (or record) the comparison."""
    import argparse

    from meshspec import registry
    from meshspec.profiles import DEFAULT_SEED, backend_name

    p = argparse.ArgumentParser(prog="python -m meshspec.fuzz")
    p.add_argument("--compare-backends", action="store_true", required=True)
    p.add_argument("components", nargs="*")
    p.add_argument("--examples", type=int, default=COMPARE_EXAMPLES)
    p.add_argument("--mutants", type=int, default=COMPARE_MUTANTS)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--record", action="store_true")
    args = p.parse_args(argv)
    backend_name("crosshair")
    conflict = args.record and backend_record_conflict(load_backend_results(), examples=args.examples,
                                                       seed=DEFAULT_SEED)
    if conflict:
        print(f"meshspec.fuzz: error: {conflict}", file=sys.stderr)
        return 2
    for name in args.components or registry.names():
        comp = registry.get_component(name)
        started = time.monotonic()
        table = compare_backends(
            comp, mutants=comp.mutants[args.start: args.mutants], examples=args.examples, seed=DEFAULT_SEED,
            on_cell=lambda m, b, c: print(f"{comp.name} {m} {b}: {c}", flush=True))
        print(f"== {comp.name}: {time.monotonic() - started:.0f} s", flush=True)
        if args.record:
            record_backend_results(comp.name, table, examples=args.examples, seed=DEFAULT_SEED,
                                   per_component=args.mutants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
