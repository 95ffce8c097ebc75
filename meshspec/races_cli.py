"""The `races` component on the command line: `meshspec interleave`, and what `list`,
`fuzz`, `mutants`, `replay` and `report` show of the race protocols.

`races` is not a lockstep component (it has no model/impl pair to step side by side): its
entries are the protocol models of `properties/races.py`, each a fixed program and a
historical one. The verbs treat it as one more component name: `list` shows a row for it,
`fuzz` runs Hypothesis-chosen schedules of every fixed protocol, `mutants` runs the
exhaustive search on every historical protocol (its mutants), `replay` re-executes a
schedule trace, and REPORT.md gets a section. Verbs about model/impl pairs (`explore`,
`bench`, `prove`, `contracts`) do not take it; `explore races` says to use `interleave`.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional, Sequence

from tabulate import tabulate

from meshspec import interleave as il

NAME = "races"
DEFAULT_EXPORT = "meshspec-traces"
FUZZ_EXAMPLES = {"dev": 100, "ci": 200, "nightly": 2000}


class RacesUsageError(Exception):
    """Bad input to a races verb (exit 2, one line)."""


def races_module() -> Any:
    from properties import races

    return races


def split_names(names: Sequence[str]) -> tuple[list[str], bool]:
    """(the lockstep component names, whether `races` was named or implied by no names)."""
    rest = [n for n in names if n != NAME]
    return rest, (not names) or NAME in names


def pick_races(names: Sequence[str]) -> list[Any]:
    mod = races_module()
    try:
        return [mod.get(n) for n in names] if names else list(mod.RACES)
    except KeyError as exc:
        raise RacesUsageError(str(exc.args[0])) from None


# --------------------------------------------------------------------------- interleave

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("races", nargs="*", metavar="RACE", help="race protocols (default: all)")
    p.add_argument("--variant", default="fixed", help="fixed (default) | historical | both")
    p.add_argument("--mode", default="exhaustive", help="exhaustive (default) | random")
    p.add_argument("--preemptions", type=int, metavar="K",
                   help="exhaustive: only schedules with at most K preemptions")
    p.add_argument("--no-reduce", action="store_true",
                   help="exhaustive: every interleaving, without sleep-set reduction")
    p.add_argument("--max-examples", type=int, default=300, metavar="N",
                   help="random: Hypothesis examples per program (default 300)")
    p.add_argument("--seed", type=int, default=0, help="random: the seed (default 0)")
    p.add_argument("--export", default=DEFAULT_EXPORT, metavar="DIR",
                   help=f"where a failing schedule is written (default: {DEFAULT_EXPORT})")


def check_args(args: argparse.Namespace) -> list[str]:
    variants = {"fixed": ["fixed"], "historical": ["historical"], "both": ["fixed", "historical"]}
    if args.variant not in variants:
        raise RacesUsageError(f"--variant must be fixed, historical or both, not {args.variant!r}")
    if args.mode not in ("exhaustive", "random"):
        raise RacesUsageError(f"--mode must be exhaustive or random, not {args.mode!r}")
    if args.preemptions is not None and args.preemptions < 0:
        raise RacesUsageError(f"--preemptions must be at least 0, not {args.preemptions}")
    if args.mode == "random" and (args.preemptions is not None or args.no_reduce):
        raise RacesUsageError("--preemptions and --no-reduce apply to --mode exhaustive only")
    if args.max_examples < 1:
        raise RacesUsageError(f"--max-examples must be at least 1, not {args.max_examples}")
    from meshspec.traces import check_export_dir

    try:
        check_export_dir(args.export)
    except OSError as exc:
        raise RacesUsageError(f"cannot use export directory {args.export!r}: {exc.strerror or exc}") from None
    return variants[args.variant]


def cmd_interleave(args: argparse.Namespace) -> int:
    variants = check_args(args)
    races = pick_races(args.races)
    status = 0
    for race in races:
        for variant in variants:
            program = race.program(variant)
            if args.mode == "exhaustive":
                result = il.explore(program, reduce=not args.no_reduce, preemptions=args.preemptions)
                print_search(race.name, variant, result)
                failing, schedules = result.shortest, result.schedules
            else:
                started = time.perf_counter()
                failing = il.random_search(program, max_examples=args.max_examples, seed=args.seed)
                schedules = None
                print(f"== {race.name} ({variant}), random: {args.max_examples} examples, seed "
                      f"{args.seed}, {time.perf_counter() - started:.2f} s: "
                      + ("no failing schedule" if failing is None else "FAIL"))
            if failing is not None:
                status = 1
                path = export_schedule(race.name, variant, args.mode, failing, schedules, args.export)
                print_failure(failing, path)
    return status


def print_search(race: str, variant: str, r: il.SearchResult) -> None:
    how = "sleep sets" if r.reduced else "no reduction"
    if r.preemptions is not None:
        how += f", at most {r.preemptions} preemptions"
    print(f"== {race} ({variant}), exhaustive ({how}): {r.schedules:,} schedules, "
          f"{r.pruned:,} branches pruned, {r.seconds:.2f} s")
    print(f"   {r.verdict}")


def print_failure(outcome: il.Outcome, path: Optional[Path]) -> None:
    v = outcome.violation
    assert v is not None
    print(f"   {v.kind} {v.name!r} after step {v.step}: {v.message}")
    print(f"   schedule ({len(outcome.steps)} steps):")
    for i, (tid, text) in enumerate(outcome.steps):
        print(f"     {i:3d}  T{tid}  {text}")
    if path is not None:
        print(f"   trace: {path}\n   replay with: meshspec replay {path}")


def export_schedule(race: str, variant: str, mode: str, outcome: il.Outcome,
                    schedules: Optional[int], directory: str | Path) -> Path:
    import hashlib

    from meshspec.traces import atomic_write, check_export_dir

    from properties.races import get

    doc = il.schedule_document(race, variant, mode, outcome, schedules, get(race).program(variant))
    text = json.dumps(doc, indent=1) + "\n"
    path = check_export_dir(directory)
    path.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    out = path / f"races-{race}-{variant}-{digest}.json"
    atomic_write(out, text)
    return out


# --------------------------------------------------------------------------- replay

def is_schedule_trace(path: str) -> bool:
    """Whether `path` holds a schedule trace (anything unreadable: False, `traces.load` reports it)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == il.TRACE_KIND


def parse_schedule(path: str) -> tuple[Any, str, list[tuple[int, str]], Optional[dict]]:
    """(race, variant, schedule, recorded failure) of a schedule trace, or TraceError."""
    from meshspec.traces import FORMAT, READ_VERSIONS, TraceError

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    where = repr(path)
    if doc.get("format") != FORMAT or doc.get("version") not in READ_VERSIONS:
        raise TraceError(f"{where} is not a meshspec schedule trace of a known version")
    mod = races_module()
    try:
        race = mod.get(doc.get("race"))
    except (KeyError, TypeError):
        raise TraceError(f"{where} names an unknown race {doc.get('race')!r} "
                         f"(known: {', '.join(mod.names())})") from None
    variant = doc.get("variant")
    if variant not in mod.VARIANTS:
        raise TraceError(f"{where}: \"variant\" must be one of {', '.join(mod.VARIANTS)}, not {variant!r}")
    steps = doc.get("schedule")
    if not isinstance(steps, list) or not all(
            isinstance(s, dict) and type(s.get("thread")) is int and isinstance(s.get("access"), str)
            for s in steps):
        raise TraceError(f"{where}: \"schedule\" must be a list of {{\"thread\": int, \"access\": str}}")
    failure = doc.get("failure")
    if failure is not None and not (isinstance(failure, dict) and isinstance(failure.get("kind"), str)
                                    and isinstance(failure.get("name"), str)):
        raise TraceError(f"{where}: \"failure\" must be null or name its kind and name")
    return race, variant, [(s["thread"], s["access"]) for s in steps], failure


def replay_schedule(path: str) -> int:
    race, variant, steps, recorded = parse_schedule(path)
    program = race.program(variant)
    threads = [t for t, _ in steps]
    n = len(program.threads)
    if any(not 0 <= t < n for t in threads):
        from meshspec.traces import TraceError

        raise TraceError(f"{path!r}: thread ids must be in 0..{n - 1} for {race.name}")
    print(f"replaying {len(steps)} steps of {race.name} ({variant})")
    try:
        outcome = il.run_schedule(program, threads)
    except il.ScheduleMismatch as exc:
        print(f"the schedule no longer fits the program ({exc}): the recorded failure does not reproduce")
        return 0
    changed = il.check_recorded(outcome, steps)
    if changed:
        print(f"note: the program changed since the trace was written ({changed})")
    v = outcome.violation
    if v is None:
        print("no violation: every step ran and every check holds")
        if recorded is not None:
            print(f"(the trace recorded {recorded['kind']} {recorded['name']!r}: no longer reproduces)")
        return 0
    print(f"FAILED: {v.kind} {v.name!r} after step {v.step}: {v.message}")
    same = recorded is not None and (recorded["kind"], recorded["name"]) == (v.kind, v.name)
    print("reproduces the recorded failure" if same else "differs from the recorded failure")
    return 1


# --------------------------------------------------------------------------- list, fuzz, mutants

def list_row() -> list[Any]:
    mod = races_module()
    checks = {r.caught_by for r in mod.RACES}
    return [NAME, len(mod.RACES), len(checks), len(mod.RACES),
            "the seeds' races: every schedule of fixed and historical protocols (meshspec interleave)"]


def print_races() -> None:
    mod = races_module()
    print(f"== {NAME}: protocol models of the seeds' races (threads as generators; "
          f"`meshspec interleave RACE`)")
    print(tabulate([[r.name, r.summary, r.caught_by, r.fixed_schedules] for r in mod.RACES],
                   headers=["race", "fixed protocol (0.25.0)", "check", "schedules (fixed)"],
                   tablefmt="simple"))
    print(tabulate([[r.name, r.origin, r.caught_by] for r in mod.RACES],
                   headers=["mutant (historical)", "origin", "expected to be caught by"],
                   tablefmt="simple"))


def run_fuzz(profile: str, seed: int, budget: Optional[int], export: str = DEFAULT_EXPORT) -> Any:
    """Hypothesis-chosen schedules of every fixed protocol; a progress.Outcome for the verdict."""
    from meshspec.progress import Outcome

    examples = budget or FUZZ_EXAMPLES.get(profile, 100)
    print(f"== {NAME}: random schedules of every fixed protocol ({examples} examples each, seed {seed})")
    problems: list[str] = []
    total: dict[str, int] = {}
    for race in races_module().RACES:
        started, stats = time.perf_counter(), {"schedules": 0, "steps": 0}
        failing = il.random_search(race.program("fixed"), max_examples=examples, seed=seed,
                                   stats=stats)
        for key, n in stats.items():
            total[key] = total.get(key, 0) + n
        verdict = "no failing schedule" if failing is None else "FAIL"
        print(f"   {race.name}: {stats['schedules']:,} schedules, {stats['steps']:,} steps, "
              f"{verdict} ({time.perf_counter() - started:.1f} s)", flush=True)
        if failing is not None:
            path = export_schedule(race.name, "fixed", "random", failing, None, export)
            print_failure(failing, path)
            problems.append(f"{race.name} {failing.violation.kind}")  # type: ignore[union-attr]
    return Outcome(NAME, total.get("steps", 0), "; ".join(problems) or None)


def run_mutants(only: Sequence[str] = ()) -> list[Any]:
    """Every historical protocol, exhaustively: result rows shaped for `mutants_verdict`."""
    results = []
    for race in races_module().RACES:
        if only and race.name not in only:
            continue
        r = il.explore(race.program("historical"))
        v = r.shortest.violation if r.shortest else None
        caught_by = v.name if v else "-"
        results.append(SimpleNamespace(
            caught=v is not None, as_expected=v is not None and v.name == race.caught_by,
            caught_by=caught_by, mutant=SimpleNamespace(name=race.name, origin=race.origin,
                                                         caught_by=(race.caught_by,)),
            result=SimpleNamespace(component=NAME, seconds=r.seconds),
            row=[race.name, race.origin, caught_by, f"{r.schedules:,}", round(r.seconds, 2),
                 len(r.shortest.steps) if r.shortest else "-"]))
        print(f"   {race.name}: {caught_by} ({r.seconds:.2f} s)", flush=True)
    return results


MUTANT_HEADERS = ["mutant", "origin", "caught by", "schedules", "seconds", "shortest schedule"]


def print_mutants(results: Sequence[Any]) -> int:
    from meshspec.progress import print_mutant_table

    return print_mutant_table(NAME, results, [r.row for r in results], MUTANT_HEADERS)


# --------------------------------------------------------------------------- report

def report_section() -> str:
    mod = races_module()
    rows = [[f"`{r.name}`", r.summary, r.origin, f"`{r.caught_by}`", r.fixed_schedules]
            for r in mod.RACES]
    table = tabulate(rows, headers=["race (mutant = historical)", "fixed protocol (0.25.0)",
                                    "origin", "check", "schedules explored (fixed)"],
                     tablefmt="github")
    return ("## races\n\nProtocol models of the seeds' races (`properties/races.py`), checked by "
            "`meshspec interleave` over every schedule (sleep-set reduction). Each fixed protocol "
            "passes every schedule (the count is pinned by a test); each historical protocol is a "
            "mutant that the exhaustive search refutes with a shortest schedule, exported and "
            "replayable.\n\n" + table)
