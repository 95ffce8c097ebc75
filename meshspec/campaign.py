"""Fuzzing campaigns: many (component × seed) fuzz jobs on local cores or on a Dask cluster.

A campaign cuts the work into jobs, each one `meshspec.fuzz.run_fuzz` of one component with
its own seed (`profiles.chunk_seed(seed, i)` for the i-th job of a component) and a job's
worth of examples, and keeps every worker busy until the budget is spent:

- a wall-clock budget (`--budget 10m`): no job starts after it runs out, and running jobs
  finish. Wall clock only decides when the *driver* stops submitting; every job itself is
  a deterministic (component, impl, profile, seed) run;
- or an example budget (`--max-examples N` per component), cut into jobs.

Every job shares one example database (`SharedDatabase`): a directory on one machine, a
Redis-protocol server (Hypothesis' `RedisExampleDatabase`) for many, or both multiplexed.
A failure any job found is saved there, so every later job of that component, on any
worker, replays it first. A component stops getting new jobs after its first failure (as
`fuzz` stops at one); jobs already running may still report others.

The summary adds up steps, examples, rule hits and sometimes-witnesses per component, and
keeps each distinct failure once (same component, kind, name and minimised steps), to be
exported once.

Workers: a local `ProcessPoolExecutor` (no server), or `distributed.Client(scheduler)` for
an existing Dask cluster (`--scheduler tcp://HOST:8786`); meshspec runs no scheduler of its
own. Each job reports its worker's resident memory, so a long campaign shows whether a
worker grows (`--rss-log FILE` writes one JSON line per job).
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import re
import resource
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import attrs

from meshspec.profiles import chunk_seed

#: Examples per job when the profile's budget does not say (a ci job: ~10-20 s of one core).
DEFAULT_JOB_EXAMPLES = 100


class CampaignError(ValueError):
    """Bad campaign input (budget, database URL, scheduler address): exit 2 in the CLI."""


def parse_budget(text: str) -> float:
    """`90s`, `10m`, `1h` or plain seconds → seconds (> 0), else CampaignError."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise CampaignError(f"--budget must be a positive duration such as 90s, 10m or 1h, not {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


@attrs.frozen
class SharedDatabase:
    """The example database every job uses: a directory, a Redis URL, or both (multiplexed).

    A value (picklable, cheap) that builds the Hypothesis database for a key on the worker.
    """

    directory: str | None = None
    redis_url: str | None = None

    def __call__(self, key: str) -> Any:
        from hypothesis.database import DirectoryBasedExampleDatabase, MultiplexedDatabase

        parts = []
        if self.directory is not None:
            parts.append(DirectoryBasedExampleDatabase(str(Path(self.directory) / key)))
        if self.redis_url is not None:
            parts.append(redis_database(self.redis_url, key))
        return parts[0] if len(parts) == 1 else MultiplexedDatabase(*parts)

    def describe(self) -> str:
        return " + ".join(p for p in (self.directory, self.redis_url) if p) or "none"


def redis_database(url: str, key: str) -> Any:
    """Hypothesis' RedisExampleDatabase on `url`, its keys under `meshspec:<key>:`."""
    import redis
    from hypothesis.extra.redis import RedisExampleDatabase

    client = redis.Redis.from_url(url, socket_timeout=30)
    return RedisExampleDatabase(client, key_prefix=f"meshspec:{key}:".encode())


def check_redis_url(url: str) -> str:
    """A `redis://HOST:PORT[/DB]` URL whose server answers PING, else CampaignError."""
    if not re.fullmatch(r"rediss?://[^\s/]+(:\d+)?(/\d+)?", url):
        raise CampaignError(f"--redis must be a URL such as redis://127.0.0.1:6379/0, not {url!r}")
    try:
        import redis
    except ImportError:
        raise CampaignError("--redis needs the redis package: pip install 'meshspec[campaign]'") from None
    try:
        redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5).ping()
    except Exception as exc:  # noqa: BLE001 - any connection problem is one line
        raise CampaignError(f"--redis {url}: no answer ({type(exc).__name__}: {exc})") from None
    return url


@attrs.frozen
class JobSpec:
    component: str
    impl: str | None  # module:Class, or None for the registered impl
    profile: str
    seed: int
    max_examples: int
    database: SharedDatabase | None
    index: int = 0
    search_path: tuple[str, ...] = ()


@attrs.frozen
class JobResult:
    spec: JobSpec
    result: Any  # meshspec.fuzz.FuzzResult
    pid: int
    host: str
    rss_mb: float
    peak_rss_mb: float
    cpu_seconds: float = 0.0  # the job's CPU time in its worker (user + system)


def current_rss_mb() -> float:
    """This process's resident set size now (VmRSS), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_job(spec: JobSpec) -> JobResult:
    """One fuzz job, on whichever worker runs it (a top-level function, so it pickles)."""
    from meshspec import registry
    from meshspec.fuzz import run_fuzz
    from meshspec.lockstep import load_impl

    for path in spec.search_path:
        if path not in sys.path:
            sys.path.insert(0, path)
    component = registry.get_component(spec.component)
    impl_cls = load_impl(spec.impl) if spec.impl else component.impl_cls
    cpu = cpu_seconds()
    result = run_fuzz(component, impl_cls, profile=spec.profile, seed=spec.seed,
                      use_database=spec.database is not None, max_examples=spec.max_examples,
                      database_root=spec.database)
    return JobResult(spec, result, os.getpid(), socket.gethostname(), current_rss_mb(), peak_rss_mb(),
                     cpu_seconds() - cpu)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@attrs.define
class ComponentTotals:
    """Everything the jobs of one component found, added up."""

    name: str
    jobs: int = 0
    examples: int = 0
    steps: int = 0
    job_seconds: float = 0.0
    rule_hits: Counter = attrs.field(factory=Counter)
    reached: Counter = attrs.field(factory=Counter)
    failures: list = attrs.field(factory=list)  # distinct Traces, first found first
    errors: list = attrs.field(factory=list)

    def add(self, result: Any) -> None:
        self.jobs += 1
        self.examples += result.examples
        self.steps += result.steps
        self.job_seconds += result.seconds
        self.rule_hits.update(result.rule_hits)
        self.reached.update(result.reached)
        if result.error:
            self.errors.append(result.error)
        if result.trace is not None and failure_key(result.trace) not in {failure_key(t) for t in self.failures}:
            self.failures.append(result.trace)


def failure_key(trace: Any) -> tuple:
    """What makes two failures the same: component, kind, name and the minimised steps."""
    fail = trace.failure
    return (trace.component, fail.kind if fail else None, fail.name if fail else None,
            repr(trace.steps))


@attrs.define
class CampaignSummary:
    components: dict[str, ComponentTotals]
    workers: int
    wall_seconds: float = 0.0
    duplicates: int = 0  # failures found again (same key) and not kept
    jobs: list = attrs.field(factory=list)  # JobResult of every job, in completion order

    @property
    def steps(self) -> int:
        return sum(c.steps for c in self.components.values())

    @property
    def examples(self) -> int:
        return sum(c.examples for c in self.components.values())

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def failures(self) -> list:
        return [t for c in self.components.values() for t in c.failures]

    @property
    def cpu_seconds(self) -> float:
        return sum(j.cpu_seconds for j in self.jobs)

    @property
    def peak_worker_rss_mb(self) -> float:
        return max((j.peak_rss_mb for j in self.jobs), default=0.0)


def job_specs(components: Sequence[str], *, impl: str | None, profile: str, seed: int,
              job_examples: int, examples_per_component: int | None, database: SharedDatabase | None,
              search_path: tuple[str, ...] = (), skip: Callable[[str], bool] = lambda name: False,
              ) -> Iterator[JobSpec]:
    """Jobs round-robin over the components; endless under a time budget, else until each
    component's example budget is cut up. `skip(name)` drops a component (it failed)."""
    index = 0
    while True:
        produced = False
        for name in components:
            done = index * job_examples
            if examples_per_component is not None and done >= examples_per_component:
                continue
            size = job_examples if examples_per_component is None else min(job_examples, examples_per_component - done)
            produced = True
            if skip(name):
                continue
            yield JobSpec(name, impl, profile, chunk_seed(seed, index), size, database, index, search_path)
        if not produced:
            return
        index += 1


class LocalPool:
    """Worker processes on this machine (spawned, so each starts clean)."""

    def __init__(self, workers: int, recycle_after: int | None = None) -> None:
        self.slots = workers
        self.executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            max_tasks_per_child=recycle_after)

    def submit(self, spec: JobSpec) -> Any:
        return self.executor.submit(run_job, spec)

    def wait_any(self, futures: set) -> tuple[set, set]:
        done, pending = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
        return set(done), set(pending)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class DaskPool:
    """Jobs on an existing Dask distributed cluster: one slot per worker process, each with
    one thread (a job's run statistics and Hypothesis' settings are per process)."""

    def __init__(self, scheduler: str, timeout: float = 30) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise CampaignError("--scheduler needs Dask distributed: pip install 'meshspec[campaign]'") from None
        if not re.fullmatch(r"(tcp|tls)://[^\s/]+:\d+", scheduler):
            raise CampaignError(f"--scheduler must look like tcp://HOST:8786, not {scheduler!r}")
        try:
            self.client = Client(scheduler, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - an unreachable scheduler is one line
            raise CampaignError(f"--scheduler {scheduler}: cannot connect ({type(exc).__name__}: {exc})") from None
        workers = self.client.scheduler_info().get("workers", {})
        threaded = sorted(addr for addr, w in workers.items() if w.get("nthreads", 1) > 1)
        if threaded:
            self.client.close()
            raise CampaignError(f"Dask workers {', '.join(threaded)} run several threads: a fuzz job "
                                "needs a process of its own (start them with --nthreads 1)")
        self.slots = max(1, len(workers))

    def submit(self, spec: JobSpec) -> Any:
        return self.client.submit(run_job, spec, pure=False)

    def wait_any(self, futures: set) -> tuple[set, set]:
        from distributed import wait

        done, pending = wait(list(futures), return_when="FIRST_COMPLETED")
        return set(done), set(pending)

    def close(self) -> None:
        self.client.close()


def run_campaign(pool: Any, components: Sequence[str], *, impl: str | None, profile: str, seed: int,
                 budget_seconds: float | None = None, examples_per_component: int | None = None,
                 job_examples: int = DEFAULT_JOB_EXAMPLES, database: SharedDatabase | None = None,
                 search_path: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic,
                 on_job: Callable[[JobResult], None] | None = None) -> CampaignSummary:
    """Run jobs on `pool` (LocalPool or DaskPool) until the budget is spent; the summary.

    Exactly one of `budget_seconds` (wall clock, checked only before a job is submitted) and
    `examples_per_component` is given.
    """
    if (budget_seconds is None) == (examples_per_component is None):
        raise CampaignError("give a time budget (--budget) or an example budget (--max-examples), not both")
    summary = CampaignSummary({name: ComponentTotals(name) for name in components}, pool.slots)
    started = clock()
    specs = job_specs(components, impl=impl, profile=profile, seed=seed, job_examples=job_examples,
                      examples_per_component=examples_per_component, database=database,
                      search_path=search_path, skip=lambda name: bool(summary.components[name].failures))

    def submit_more(pending: set) -> None:
        while len(pending) < pool.slots:
            if budget_seconds is not None and clock() - started >= budget_seconds:
                return
            spec = next(specs, None)
            if spec is None:
                return
            future = pool.submit(spec)
            submitted[future] = spec
            pending.add(future)

    pending: set = set()
    submitted: dict = {}
    submit_more(pending)
    while pending:
        done, pending = pool.wait_any(pending)
        for future in done:
            spec = submitted.pop(future)
            try:
                job = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker died or the job could not run
                summary.components[spec.component].errors.append(
                    f"job seed {spec.seed} did not run: {type(exc).__name__}: {exc}")
                continue
            totals = summary.components[job.spec.component]
            before = len(totals.failures)
            totals.add(job.result)
            if job.result.trace is not None and len(totals.failures) == before:
                summary.duplicates += 1
            summary.jobs.append(job)
            if on_job is not None:
                on_job(job)
        submit_more(pending)
    summary.wall_seconds = clock() - started
    return summary


def rss_line(job: JobResult, started: float) -> str:
    """One JSON line of the RSS log: when, which worker, its memory, what the job did."""
    r = job.result
    return json.dumps({"t": round(time.monotonic() - started, 1), "host": job.host, "pid": job.pid,
                       "rss_mb": round(job.rss_mb, 1), "peak_rss_mb": round(job.peak_rss_mb, 1),
                       "component": r.component, "seed": r.seed, "examples": r.examples,
                       "steps": r.steps, "seconds": round(r.seconds, 2),
                       "cpu_seconds": round(job.cpu_seconds, 2)})
