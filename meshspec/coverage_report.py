"""`meshspec fuzz --coverage-report [FILE]`: branch coverage of `impl/` from fuzzing alone.

The fuzz run is re-executed in a child Python process (`python -m meshspec.coverage_report
FILE -- FUZZ-ARGS`) that starts coverage.py (branch mode, source `impl/`) *before* anything
of meshspec, the registry or the impls is imported: a process that already imported
`impl/` (the CLI imports the registry first) would count every module-level `def`, class
body and constant as never run. No unit test runs in the child; the figures are what the
lockstep machines alone reach. The child prints the usual fuzz output, then one line per
`impl/` file (branches, covered, percent), and writes FILE as JSON, atomically:

    {"profile", "seed", "components", "files": {"impl/x.py": {"branches", "covered",
     "percent", "missing": [[from_line, to_line], ...]}}}

(`to_line` < 0 means "exits the function"). Files of impl/ no chosen component imports
are left out, and so are impl files of components not run (see `own_files`).

How unreachable branches are counted. docs/coverage-exemptions.json lists, per impl file,
the branches a correct impl never takes, each with its concrete reason: the raise arms of
the impl's own `check_invariants()` self-check (they fire only when a private cache
disagrees with its recomputation, i.e. on a bug; the curated mutants take them), override
points that only a mutant uses, and defensive arms the API cannot reach (with the
invariant that rules them out). REPORT.md (meshspec.report) shows both figures: *raw*
coverage over every branch, and coverage of the *reachable* branches, i.e. with the
exempted missed branches left out of the denominator (`reachable_percent`). The 98%
target is on the reachable figure; a missed branch with no reason, or one whose reason
starts with "open:", counts against it and is listed as open.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
IMPL_DIR = ROOT / "impl"
DEFAULT_REPORT = "coverage-impl.json"
#: Branches of impl/ the ci fuzz run cannot reach, each with its reason (REPORT.md).
EXEMPTIONS_PATH = ROOT / "docs" / "coverage-exemptions.json"


def fuzz_argv(args: Any) -> list[str]:
    """The `meshspec fuzz` arguments of a parsed namespace, without --coverage-report."""
    argv = ["fuzz", *args.components]
    for flag, value in (("--impl", args.impl), ("--profile", args.profile), ("--seed", args.seed),
                        ("--etcd", args.etcd), ("--export", args.export),
                        ("--backend", args.backend), ("--max-examples", args.max_examples),
                        ("--junit", getattr(args, "junit", None))):
        if value is not None:
            argv += [flag, str(value)]
    for flag, on in (("--fail-under-coverage", getattr(args, "fail_under_coverage", False)),
                     ("--no-db", getattr(args, "no_db", False))):
        if on:
            argv.append(flag)
    return argv


def run_in_child(report: str, args: Any) -> int:
    """Run `meshspec fuzz` (the parsed `args`) under coverage in a child; its exit status."""
    cmd = [sys.executable, "-m", "meshspec.coverage_report", report, "--", *fuzz_argv(args)]
    return call_child(cmd, env={**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(Path.cwd()), str(ROOT), os.environ.get("PYTHONPATH")) if p)})


def call_child(cmd: list[str], env: dict[str, str]) -> int:
    """`cmd`'s exit status. A SIGTERM to this process ends it with 143 and takes the child down
    with it (as Ctrl-C does), so a stopped run leaves no orphan fuzzing on."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_term) if main else None
    child = None
    try:
        child = subprocess.Popen(cmd, env=env)
        return child.wait()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait()


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def summarise(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """coverage.py's JSON report -> {relative path: branches, covered, percent, missing}."""
    files = {}
    for name, data in raw.get("files", {}).items():
        path = Path(name)
        rel = (path.resolve().relative_to(ROOT).as_posix()
               if path.is_absolute() and path.resolve().is_relative_to(ROOT) else path.as_posix())
        s = data["summary"]
        total, covered = s["num_branches"], s["covered_branches"]
        files[rel] = {"branches": total, "covered": covered,
                      "percent": round(100.0 * covered / total, 1) if total else 100.0,
                      "missing": sorted(data.get("missing_branches", []))}
    return dict(sorted(files.items()))


def own_files(names: Sequence[str], real_etcd: bool = False) -> set[str]:
    """The impl/ files the chosen components (all when none) are measured on: each one's own
    impl module (the registry imports every impl, and group_coordinator's impl uses the load
    balancer's, so a file is counted only for its own component), and impl/etcd_client.py
    when the run used a real etcd."""
    from meshspec import registry

    out = set()
    for name in names or registry.names():
        if name == "races":
            continue
        module = sys.modules[registry.get_component(name).impl_cls.__module__]
        path = Path(module.__file__ or "").resolve()
        if path.is_relative_to(IMPL_DIR):
            out.add(path.relative_to(ROOT).as_posix())
    return out | ({"impl/etcd_client.py"} if real_etcd else set())


def table(files: dict[str, dict[str, Any]]) -> str:
    from tabulate import tabulate

    rows = [[f, d["branches"], d["covered"], f"{d['percent']:.1f}%", len(d["missing"])]
            for f, d in files.items()]
    return tabulate(rows, headers=["impl file", "branches", "covered", "branch coverage", "missing"],
                    tablefmt="github")


def measure(report: str, fuzz: Sequence[str]) -> int:
    """Start coverage, run `meshspec fuzz` in this process, write the report; the fuzz status."""
    import coverage

    cov = coverage.Coverage(branch=True, source=[str(IMPL_DIR)], data_file=None,
                            omit=[str(IMPL_DIR / "__init__.py")])
    cov.start()
    try:
        from meshspec import cli

        status = cli.main(list(fuzz))
    finally:
        cov.stop()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        try:
            cov.json_report(outfile=str(out))
        except coverage.exceptions.NoDataError:
            raw: dict[str, Any] = {"files": {}}
        else:
            raw = json.loads(out.read_text(encoding="utf-8"))
    from meshspec.cli import build_parser
    from meshspec.profiles import profile_name, resolve_seed

    args = build_parser().parse_args(list(fuzz))
    comps = list(args.components)
    own = own_files(comps, real_etcd=args.etcd is not None)
    files = {f: d for f, d in summarise(raw).items() if f in own}
    profile, seed = args.profile, args.seed
    doc = {"profile": profile_name(profile), "seed": resolve_seed(seed), "components": comps,
           "files": files}
    from meshspec.traces import atomic_write

    atomic_write(Path(report), json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"\nbranch coverage of impl/ from fuzzing alone ({report}):\n{table(files)}")
    return status


def load_exemptions(path: Path | None = None) -> dict[str, dict[str, str]]:
    """{impl file: {"from->to": reason}}: the recorded unreachable branches."""
    try:
        return json.loads((path or EXEMPTIONS_PATH).read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError):
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m meshspec.coverage_report FILE -- fuzz [FUZZ OPTIONS]", file=sys.stderr)
        return 2
    return measure(argv[0], argv[2:])


if __name__ == "__main__":
    sys.exit(main())


#: The ci fuzz run's recorded coverage (`meshspec fuzz --profile ci --coverage-report
#: docs/coverage-results.json`), which REPORT.md's "Branch coverage" section reads.
RESULTS_PATH = ROOT / "docs" / "coverage-results.json"


def load_results(path: Path | None = None) -> dict[str, Any]:
    try:
        return json.loads((path or RESULTS_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def arc_name(arc: Sequence[int]) -> str:
    """`12->14`, or `12->exit` for an arc that leaves the function."""
    return f"{arc[0]}->{arc[1] if arc[1] > 0 else 'exit'}"


def exempted(missing: Sequence[Sequence[int]], reasons: dict[str, str]) -> list[str]:
    """The missed arcs (by name) that have a recorded reason they cannot be reached ("open:"
    reasons are generator gaps, not exemptions)."""
    return [arc_name(a) for a in missing
            if reasons.get(arc_name(a)) and not reasons[arc_name(a)].startswith("open")]


def reachable_percent(data: dict[str, Any], reasons: dict[str, str]) -> float:
    """Coverage of the reachable branches: the exempted missed branches leave the denominator."""
    reachable = data["branches"] - len(exempted(data["missing"], reasons))
    return round(100.0 * data["covered"] / reachable, 1) if reachable else 100.0


def report_section(results: dict[str, Any] | None = None,
                   exemptions: dict[str, dict[str, str]] | None = None) -> str:
    """REPORT.md's "Branch coverage of impl/ from fuzzing alone": the recorded ci run per file,
    then every branch it misses, with the reason it cannot be reached (docs/coverage-exemptions.json)
    or "open" when no reason is recorded (a gap in the generators)."""
    from tabulate import tabulate

    results = load_results() if results is None else results
    exemptions = load_exemptions() if exemptions is None else exemptions
    intro = ("Measured by `meshspec fuzz --profile ci --coverage-report docs/coverage-results.json` "
             "(coverage.py in branch mode over `impl/`, in a process that runs the ci fuzz budget "
             "of every component and no unit test). Each missed branch is listed with the reason it "
             "cannot be reached (docs/coverage-exemptions.json), or as *open*: a generator gap to "
             "close. *Raw* counts every branch; *reachable* leaves out of the denominator the missed "
             "branches with a recorded reason: the raise arms of the impl's own `check_invariants()` "
             "(taken only when a cache disagrees with its recomputation, i.e. by the curated mutants), "
             "override points only a mutant uses, and defensive arms the API cannot reach. "
             "Target: 98% of the reachable branches of every file.")
    files = results.get("files", {})
    if not files:
        return "## Branch coverage of impl/ from fuzzing alone\n\n" + intro + "\n\nNot recorded."
    rows = [[f"`{f}`", d["branches"], d["covered"], f"{d['percent']:.1f}%",
             len(exempted(d["missing"], exemptions.get(f, {}))),
             f"{reachable_percent(d, exemptions.get(f, {})):.1f}%"] for f, d in files.items()]
    table_md = tabulate(rows, headers=["impl file", "branches", "covered", "raw coverage",
                                       "exempted (unreachable)", "reachable coverage"],
                        tablefmt="github")
    missed = []
    for f, d in files.items():
        reasons = exemptions.get(f, {})
        for arc in d["missing"]:
            missed.append([f"`{f}`", f"`{arc_name(arc)}`", reasons.get(arc_name(arc), "open")])
    parts = ["## Branch coverage of impl/ from fuzzing alone", intro,
             f"Profile `{results.get('profile')}`, seed {results.get('seed')}.", table_md]
    if missed:
        parts.append(tabulate(missed, headers=["impl file", "missed branch", "why"], tablefmt="github"))
    return "\n\n".join(parts)
