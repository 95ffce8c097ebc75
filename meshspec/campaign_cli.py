"""The `meshspec campaign` verb: options, the per-job lines, the summary, the verdict.

Also `python -m meshspec.campaign_cli --measure-scaling SECONDS` (1 worker, then 2, same
budget, recorded in docs/campaign-results.json for REPORT.md), `--record-rss LOG` (the
worker memory of a long campaign's `--rss-log`) and `--record-fuzz` (each component's full
ci run: steps/s and the precondition pass rate of every guarded rule), in the same file.
The load average before and after each measurement is recorded with it: the development
machine is shared, so absolute steps/s vary with what else runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from tabulate import tabulate

from meshspec.campaign import (DEFAULT_JOB_EXAMPLES, CampaignError, CampaignSummary, DaskPool,
                               JobResult, LocalPool, SharedDatabase, check_redis_url, parse_budget,
                               rss_line, run_campaign)
from meshspec.profiles import DATABASE_ROOT

RESULTS_PATH = Path(__file__).resolve().parent.parent / "docs" / "campaign-results.json"

DESCRIPTION = """\
Fan (component x seed) fuzz jobs out to worker processes on this machine, or to a Dask
cluster (--scheduler tcp://HOST:8786), for a wall-clock budget (--budget 10m) or an
example budget (--max-examples N per component). All jobs share one example database
(--database DIR, and/or --redis redis://HOST:6379/0 for many machines), so a failure any
job found is replayed first by every later job. Prints each job, then steps, examples,
rule hits and sometimes-witnesses per component, exports every distinct failure once,
and ends with a PASS or FAIL line (exit 1 on a failure or, under ci and nightly, an
unreached sometimes-witness).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("components", nargs="*", metavar="COMPONENT")
    p.add_argument("--impl", help="module:Class to check in place of the impl (one COMPONENT)")
    p.add_argument("--profile", default="ci", help="dev | ci | nightly: each job's steps per example (default ci)")
    p.add_argument("--seed", help="an integer, or 'random' (default: $MESHSPEC_SEED or fixed)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget", metavar="DURATION",
                        help="wall-clock budget: 90s, 10m, 1h (no job starts after it)")
    budget.add_argument("--max-examples", type=int, metavar="N",
                        help="example budget per component (default: the profile's)")
    p.add_argument("--job-examples", type=int, default=DEFAULT_JOB_EXAMPLES, metavar="N",
                   help=f"examples per job (default {DEFAULT_JOB_EXAMPLES})")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local worker processes (default: the number of cores)")
    p.add_argument("--recycle", type=int, metavar="JOBS",
                   help="restart a local worker process after this many jobs (default: never)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="run the jobs on this Dask distributed scheduler's workers instead")
    p.add_argument("--database", default=str(DATABASE_ROOT), metavar="DIR",
                   help=f"shared example directory (default {DATABASE_ROOT}); 'none' with --redis")
    p.add_argument("--redis", metavar="URL", help="share examples through a Redis-protocol "
                   "server too (Hypothesis' RedisExampleDatabase), e.g. redis://10.0.0.5:6379/0")
    p.add_argument("--export", default="meshspec-traces", metavar="DIR")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report (one testcase per component)")
    p.add_argument("--rss-log", metavar="FILE", help="append one JSON line per job: worker pid, RSS, steps")


def run_cli(args: argparse.Namespace) -> int:
    from meshspec import cli

    comps = cli.components_of(args.components)
    impl_cls = cli.impl_for(args.impl, comps if args.components else [])
    profile, seed = cli.profile_name(args.profile), cli.resolve_seed(args.seed)
    budget_seconds, per_component = budgets(args, profile)
    if args.job_examples < 1:
        raise CampaignError(f"--job-examples must be at least 1, not {args.job_examples}")
    check_outputs(args)
    database = shared_database(args)
    impl = None
    search_path: tuple[str, ...] = (os.getcwd(),)
    if impl_cls is not None:
        from meshspec.lockstep import impl_path, impl_search_path

        impl = impl_path(impl_cls)
        search_path += tuple(p for p in [impl_search_path(impl_cls)] if p)
    pool = make_pool(args)
    where = f"Dask {args.scheduler}" if args.scheduler else "local processes"
    print(f"meshspec campaign: profile {profile}, seed {seed}, {pool.slots} worker(s) ({where}), "
          + (f"budget {args.budget}" if budget_seconds else f"{per_component} examples per component")
          + f", {args.job_examples} examples per job, database {database.describe() if database else 'none'}",
          flush=True)
    started = time.monotonic()
    rss_log = open(args.rss_log, "a", encoding="utf-8") if args.rss_log else None  # noqa: SIM115

    def on_job(job: JobResult) -> None:
        print_job(job)
        if rss_log is not None:
            rss_log.write(rss_line(job, started) + "\n")
            rss_log.flush()

    try:
        summary = run_campaign(pool, [c.name for c in comps], impl=impl, profile=profile, seed=seed,
                               budget_seconds=budget_seconds, examples_per_component=per_component,
                               job_examples=args.job_examples, database=database,
                               search_path=search_path, on_job=on_job)
    finally:
        pool.close()
        if rss_log is not None:
            rss_log.close()
    return report(summary, comps, profile, args)


def budgets(args: argparse.Namespace, profile: str) -> tuple[float | None, int | None]:
    """(seconds, None) for --budget, else (None, examples per component)."""
    from hypothesis import settings

    if args.budget is not None:
        return parse_budget(args.budget), None
    if args.max_examples is not None and args.max_examples < 1:
        raise CampaignError(f"--max-examples must be at least 1, not {args.max_examples}")
    return None, args.max_examples or settings.get_profile(profile).max_examples


def check_outputs(args: argparse.Namespace) -> None:
    from meshspec import junit
    from meshspec.traces import check_export_dir

    try:
        check_export_dir(args.export)
        junit.check_path(args.junit)
        junit.check_path(args.rss_log)
    except OSError as exc:
        raise CampaignError(f"cannot write output: {exc}") from None


def shared_database(args: argparse.Namespace) -> SharedDatabase | None:
    directory = None if args.database == "none" else args.database
    redis_url = check_redis_url(args.redis) if args.redis else None
    if directory is None and redis_url is None:
        return None
    return SharedDatabase(directory, redis_url)


def make_pool(args: argparse.Namespace) -> Any:
    if args.scheduler:
        if args.workers is not None or args.recycle is not None:
            raise CampaignError("--workers and --recycle are for local processes; a Dask cluster "
                                "has the workers it was started with")
        return DaskPool(args.scheduler)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise CampaignError(f"--workers must be at least 1, not {workers}")
    if args.recycle is not None and args.recycle < 1:
        raise CampaignError(f"--recycle must be at least 1, not {args.recycle}")
    return LocalPool(workers, args.recycle)


def print_job(job: JobResult) -> None:
    r = job.result
    verdict = (f"FAILED {r.trace.failure.kind} {r.trace.failure.name!r}" if r.trace and r.trace.failure
               else f"ERROR {r.error}" if r.error else "ok")
    print(f"   job {r.component} seed {r.seed}: {r.examples} examples, {r.steps:,} steps, "
          f"{r.seconds:.1f} s on {job.host}:{job.pid} (RSS {job.rss_mb:.0f} MiB): {verdict}", flush=True)


def unreached(summary: CampaignSummary, comp: Any) -> list[str]:
    totals = summary.components[comp.name]
    if totals.failures or totals.errors:
        return []
    return [i.name for i in comp.invariants if i.kind == "sometimes" and totals.reached[i.name] == 0]


def report(summary: CampaignSummary, comps: Sequence[Any], profile: str, args: argparse.Namespace) -> int:
    from meshspec.fuzz import rules_of
    from meshspec.profiles import witnesses_required
    from meshspec.traces import export

    rows, problems, cases = [], {}, []
    exported: dict[str, list[str]] = {}
    for comp in comps:
        t = summary.components[comp.name]
        rows.append([comp.name, t.jobs, t.examples, t.steps, len(t.failures),
                     sum(1 for r in rules_of(comp) if t.rule_hits[r] > 0), len(rules_of(comp)),
                     sum(1 for i in comp.invariants if i.kind == "sometimes" and t.reached[i.name] > 0)])
        for trace in t.failures:
            json_path, _ = export(trace, args.export)
            exported.setdefault(comp.name, []).append(str(json_path))
            print(f"   FAILED {comp.name}: {trace.failure.kind} {trace.failure.name!r}: "
                  f"{trace.failure.message}\n   trace ({len(trace.steps)} steps): {json_path}")
        missing = unreached(summary, comp)
        if t.failures:
            problems[comp.name] = "; ".join(f"{f.failure.kind} {f.failure.name!r}" for f in t.failures)
        elif t.errors:
            problems[comp.name] = t.errors[0].splitlines()[0][:120]
        elif missing and witnesses_required(profile):
            problems[comp.name] = f"sometimes-witnesses not reached: {', '.join(missing)}"
        cases.append(junit_case(comp.name, t, problems.get(comp.name), exported.get(comp.name, [])))
    print(tabulate(rows, headers=["component", "jobs", "examples", "steps", "distinct failures",
                                  "rules hit", "rules", "witnesses reached"], tablefmt="github"))
    print(f"   {summary.steps:,} steps in {summary.wall_seconds:.1f} s on {summary.workers} worker(s): "
          f"{summary.steps_per_second:,.0f} steps/s; peak worker RSS {summary.peak_worker_rss_mb:.0f} MiB"
          + (f"; {summary.duplicates} duplicate failure(s) not exported again" if summary.duplicates else ""))
    if args.junit:
        from meshspec import junit

        junit.write(args.junit, "meshspec campaign", cases)
    if problems:
        print(f"FAIL: {len(problems)} of {len(comps)} components failed ("
              + "; ".join(f"{k}: {v}" for k, v in problems.items()) + f"), {summary.steps:,} steps")
        return 1
    print(f"PASS: {len(comps)} components, {summary.steps:,} steps, 0 failures")
    return 0


def junit_case(name: str, totals: Any, problem: str | None, paths: list[str]) -> Any:
    from meshspec import junit

    return junit.Case("meshspec.campaign", name, totals.job_seconds, problem,
                      detail="\n".join(f"trace: {p}\nreplay with: meshspec replay {p}" for p in paths),
                      output=f"jobs {totals.jobs}, examples {totals.examples}, steps {totals.steps}")


# -- measurements for REPORT.md ------------------------------------------------------------

def load_results(path: Path | None = None) -> dict[str, Any]:
    try:
        return json.loads((path or RESULTS_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def record(key: str, value: Any, path: Path | None = None) -> None:
    from meshspec.traces import atomic_write

    path = path or RESULTS_PATH
    results = load_results(path)
    results[key] = value
    atomic_write(path, json.dumps(results, indent=1, sort_keys=True) + "\n")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure_scaling(seconds: float, components: Sequence[str]) -> dict[str, Any]:
    """Total steps/s of a campaign with 1 local worker, then 2, for the same budget each
    (no database: every job explores; the load average before each run is noted)."""
    from meshspec.profiles import DEFAULT_SEED

    runs = {}
    for workers in (1, 2):
        load = load_average()
        pool = LocalPool(workers)
        try:
            s = run_campaign(pool, components, impl=None, profile="ci", seed=DEFAULT_SEED,
                             budget_seconds=seconds, job_examples=50, database=None)
        finally:
            pool.close()
        runs[str(workers)] = {"steps": s.steps, "wall_seconds": round(s.wall_seconds, 1),
                              "steps_per_second": round(s.steps_per_second), "jobs": len(s.jobs),
                              "worker_cpu_seconds": round(s.cpu_seconds, 1),
                              "steps_per_cpu_second": round(s.steps / max(s.cpu_seconds, 1e-9)),
                              "load_before": load, "load_after": load_average()}
        print(f"{workers} worker(s): {runs[str(workers)]}", flush=True)
    ratio = runs["2"]["steps_per_second"] / max(1, runs["1"]["steps_per_second"])
    # the CPU the workers got: 2 workers on 2 idle cores get 2 CPU-seconds per second
    for run in runs.values():
        run["cpu_share"] = round(run["worker_cpu_seconds"] / run["wall_seconds"], 2)
    return {"budget_seconds": seconds, "components": list(components), "cores": os.cpu_count(),
            "runs": runs, "speedup": round(ratio, 2)}


def measure_fuzz(components: Sequence[str], note: str) -> None:
    """Each component's full ci run (default seed, no database): steps, wall and CPU steps/s,
    each guarded rule's precondition pass rate; recorded one component at a time."""
    from meshspec import registry
    from meshspec.fuzz import run_fuzz
    from meshspec.profiles import DEFAULT_SEED

    for name in components:
        comp = registry.get_component(name)
        load, cpu = load_average(), time.process_time()
        r = run_fuzz(comp, comp.impl_cls, profile="ci", seed=DEFAULT_SEED, use_database=False)
        cpu = time.process_time() - cpu
        results = load_results().get("fuzz", {})
        results[name] = {"steps": r.steps, "examples": r.examples, "seconds": round(r.seconds, 1),
                         "steps_per_second": round(r.steps_per_second),
                         "steps_per_cpu_second": round(r.steps / cpu) if cpu > 0 else None,
                         "preconditions": {k: list(v) for k, v in r.preconditions.items()},
                         "time_split": {k: round(v, 3) for k, v in r.time_split.items()},
                         "passed": not r.failed, "load_before": load, "load_after": load_average(),
                         "note": note}
        record("fuzz", dict(sorted(results.items())))
        print(f"{name}: {results[name]}", flush=True)


def summarise_rss(log: str | Path) -> dict[str, Any]:
    """The worker memory of a campaign's --rss-log: duration, jobs, steps, RSS first/max/last."""
    lines = [json.loads(x) for x in Path(log).read_text(encoding="utf-8").splitlines() if x.strip()]
    if not lines:
        raise CampaignError(f"{log}: no jobs logged")
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for x in lines:
        by_pid.setdefault(x["pid"], []).append(x)
    return {"seconds": lines[-1]["t"], "jobs": len(lines), "steps": sum(x["steps"] for x in lines),
            "workers": len(by_pid), "rss_mb_first": lines[0]["rss_mb"],
            "rss_mb_max": max(x["rss_mb"] for x in lines), "rss_mb_last": lines[-1]["rss_mb"],
            "peak_rss_mb": max(x["peak_rss_mb"] for x in lines),
            "samples": [[x["t"], x["rss_mb"]] for x in lines[:: max(1, len(lines) // 12)]]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m meshspec.campaign_cli")
    p.add_argument("--measure-scaling", type=float, metavar="SECONDS")
    p.add_argument("--record-rss", metavar="LOG")
    p.add_argument("--record-fuzz", action="store_true",
                   help="each component's full ci fuzz run: steps/s and precondition pass rates")
    p.add_argument("--components", nargs="*")
    p.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = p.parse_args(argv)
    from meshspec import registry

    if args.measure_scaling:
        result = measure_scaling(args.measure_scaling, args.components or registry.names())
        result["note"] = args.note
        record("scaling", result)
        print(json.dumps(result, indent=1))
    if args.record_fuzz:
        measure_fuzz(args.components or registry.names(), args.note)
    if args.record_rss:
        result = summarise_rss(args.record_rss)
        result["note"] = args.note
        record("worker_rss", result)
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
