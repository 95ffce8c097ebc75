"""`meshspec protocol C`, `meshspec serve C`, and the `--impl-cmd` / `--impl-timeout` flags."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from meshspec.lockstep import Component, ImplLoadError, load_impl

IMPL_CMD_HELP = ("a command speaking the subject protocol (docs/protocol.md) to check in place of "
                 "the impl, e.g. \"python -m meshspec.serve shard_mapper\" or \"./target/release/"
                 "mapper-server\"; one process serves the whole run")
TIMEOUT_HELP = "seconds the --impl-cmd process may take per request before it counts as hung (default 5)"


def add_impl_cmd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl-cmd", metavar="CMD", help=IMPL_CMD_HELP)
    parser.add_argument("--impl-timeout", type=float, default=None, metavar="S", help=TIMEOUT_HELP)


VIA_SERVE_HELP = ("serve each mutant with `python -m meshspec.serve C --impl MUTANT` and check it through the "
                  "subject protocol (one server process per mutant): is every curated mutant caught "
                  "through the pipe?")
NOT_HERE = {"mutants": "--impl-cmd runs one command, which has no curated mutants: use "
                       "`meshspec mutants C --via-serve` to check each mutant through the protocol",
            "explore": "explore takes no --impl-cmd: it restores every state from a snapshot of the "
                       "impl object, which an impl process cannot give (docs/protocol.md, Limits)"}


BENCH_SEED = 20261123
PIPE_RESULTS_NAME = "pipe-results.json"
PIPE_RESULTS_PATH = Path(__file__).resolve().parent.parent / "docs" / PIPE_RESULTS_NAME


def pipe_bench(comp: Component, profile: str, seed: int, max_examples: int | None = None) -> dict:
    """One fuzz run in-process, then the same through `python -m meshspec.serve C` (process start-up
    included): wall steps/s, steps per CPU-second (through the pipe: harness and server
    together, user + system), round trips per step, and whether both runs agree."""
    import os
    import resource
    import shlex
    import sys
    import time

    from meshspec.fuzz import run_fuzz
    from meshspec.protocol import close_command, command_impl, process_of

    def cpu(who: int) -> float:
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    def run(impl: Any) -> Any:
        return run_fuzz(comp, impl, profile=profile, seed=seed, use_database=False, max_examples=max_examples)

    load = os.getloadavg()[0]
    wall, own = time.perf_counter(), cpu(resource.RUSAGE_SELF)
    here = run(comp.impl_cls)
    here_wall, here_cpu = time.perf_counter() - wall, cpu(resource.RUSAGE_SELF) - own
    wall, own, child = time.perf_counter(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    served = command_impl(f"{shlex.quote(sys.executable)} -m meshspec.serve {comp.name}", comp)
    process = process_of(served)
    try:
        there = run(served)
        round_trips = process.round_trips if process is not None else 0
    finally:
        close_command(served)  # waited for: its CPU is counted in RUSAGE_CHILDREN
    pipe_wall = time.perf_counter() - wall
    pipe_cpu = cpu(resource.RUSAGE_SELF) - own + cpu(resource.RUSAGE_CHILDREN) - child
    same = (here.examples, here.steps, here.trace is None) == (there.examples, there.steps, there.trace is None)
    steps = max(there.steps, 1)
    return {"profile": profile, "seed": seed, "examples": there.examples, "steps": there.steps,
            "in_process_steps_per_s": round(here.steps / here_wall), "pipe_steps_per_s": round(there.steps / pipe_wall),
            "in_process_steps_per_cpu_s": round(here.steps / here_cpu),
            "pipe_steps_per_cpu_s": round(there.steps / pipe_cpu),
            "round_trips_per_step": round(round_trips / steps, 2), "load_average": round(load, 1),
            "same_run": same}


def bench_lines(name: str, r: dict) -> str:
    return (f"== {name}: profile {r['profile']}, seed {r['seed']}: {r['examples']} examples, "
            f"{r['steps']:,} steps (load average {r['load_average']})\n"
            f"   in-process:     {r['in_process_steps_per_s']:,} steps/s, "
            f"{r['in_process_steps_per_cpu_s']:,} steps per CPU-second\n"
            f"   through a pipe: {r['pipe_steps_per_s']:,} steps/s, {r['pipe_steps_per_cpu_s']:,} "
            f"steps per CPU-second (harness + server), {r['round_trips_per_step']} round trips per step\n"
            f"   {'the same run both ways' if r['same_run'] else 'FAILED: the two runs differ'}")


def load_pipe(path: Path | None = None) -> dict:
    import json

    try:
        return json.loads((path or PIPE_RESULTS_PATH).read_text())
    except (OSError, ValueError):
        return {}


def record_pipe(name: str, record: dict, path: Path | None = None) -> None:
    """Merge one component's figures into docs/pipe-results.json (written atomically)."""
    import json

    from meshspec.traces import atomic_write
    path = path or PIPE_RESULTS_PATH
    results = load_pipe(path)
    results[name] = record
    atomic_write(path, json.dumps(dict(sorted(results.items())), indent=1, sort_keys=True) + "\n")


def report_section(path: Path | None = None) -> str:
    """"The subject protocol's speed" for REPORT.md, from docs/pipe-results.json."""
    from tabulate import tabulate

    results = load_pipe(path)
    rows = [[f"`{name}`", f"{r['profile']} / {r['seed']}", f"{r['steps']:,}", f"{r['in_process_steps_per_s']:,}",
             f"{r['pipe_steps_per_s']:,}", f"{r['in_process_steps_per_cpu_s']:,}", f"{r['pipe_steps_per_cpu_s']:,}",
             r["round_trips_per_step"], r.get("load_average", "")] for name, r in sorted(results.items())]
    table = tabulate(rows, headers=["component", "profile / seed", "steps", "in-process steps/s",
                                    "pipe steps/s", "in-process steps/CPU-s", "pipe steps/CPU-s (both)",
                                    "round trips/step", "load average"], tablefmt="github") if rows else "(nothing recorded)"
    return ("## The subject protocol's speed\n\nThe same fuzz run in-process and through `--impl-cmd "
            "\"python -m meshspec.serve C\"` (the server's start-up included), recorded by `meshspec protocol C "
            f"--bench --record` in docs/{PIPE_RESULTS_NAME}. CPU-seconds through the pipe are those of "
            "the harness and the server together.\n\n" + table)


def add_mutants_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--via-serve", action="store_true", help=VIA_SERVE_HELP)
    add_impl_cmd_arguments(parser)


def add_rejected_impl_cmd(parser: argparse.ArgumentParser) -> None:
    """`--impl-cmd` on a verb that cannot take it: accepted by the parser, refused in one line."""
    parser.add_argument("--impl-cmd", metavar="CMD", help=argparse.SUPPRESS)
    parser.add_argument("--impl-timeout", type=float, default=None, help=argparse.SUPPRESS)


def refuse_impl_cmd(verb: str, args: argparse.Namespace) -> None:
    from meshspec.cli import UsageError

    if getattr(args, "impl_cmd", None) is not None or getattr(args, "impl_timeout", None) is not None:
        raise UsageError(NOT_HERE[verb])


def mutants_runner(args: argparse.Namespace, comps: list[Component], races: bool) -> Any:
    """`run_served_mutants` for `mutants --via-serve` (None without it); `--impl-cmd` is refused."""
    import functools

    from meshspec.cli import UsageError

    if getattr(args, "impl_cmd", None) is not None:
        raise UsageError(NOT_HERE["mutants"])
    if not args.via_serve:
        if args.impl_timeout is not None:
            raise UsageError("--impl-timeout needs --via-serve")
        return None
    if races:
        raise UsageError("--via-serve serves components with a model/impl pair; races has none")
    return functools.partial(run_served_mutants, timeout=impl_timeout(args))


def serve_command(component: Component, impl_cls: type) -> str:
    """The command that serves a Python class of `component` (callbacks as calls, so a
    re-entrant callback sees the state mid-operation, as in-process)."""
    import shlex
    import sys

    from meshspec.lockstep import impl_path
    return (f"{shlex.quote(sys.executable)} -m meshspec.serve {component.name} --callbacks calls "
            f"--impl {shlex.quote(impl_path(impl_cls))}")


def run_served_mutants(component: Component, *, profile: str, seed: int, only: list[str] | None = None,
                       shrink: bool = True, on_result: Any = None, backend: str = "hypothesis",
                       max_examples: int | None = None, timeout: float | None = None) -> list:
    """`run_mutants` with each mutant served by `python -m meshspec.serve --impl` and checked through
    the protocol; one server process per mutant, closed after its run."""
    from meshspec.fuzz import MutantResult, run_fuzz
    from meshspec.protocol import DEFAULT_TIMEOUT, close_command, command_impl

    results = []
    for m in component.mutants:
        if only and m.name not in only:
            continue
        command = serve_command(component, m.cls)
        served = command_impl(command, component, timeout or DEFAULT_TIMEOUT)
        try:
            res = MutantResult(m, run_fuzz(component, served, profile=profile, seed=seed,
                                           use_database=False, shrink=shrink, backend=backend,
                                           max_examples=max_examples))
        finally:
            close_command(served)
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


def add_protocol_parsers(sub: Any) -> None:
    p = sub.add_parser("protocol", help="print the subject protocol's schema of a component (JSON), "
                       "or --bench: the same fuzz run in-process and through `python -m meshspec.serve`")
    p.add_argument("component")
    p.add_argument("--bench", action="store_true",
                   help="fuzz the component in-process and through `python -m meshspec.serve C` (same profile "
                        "and seed): steps/s, steps per CPU-second of both processes, round trips")
    p.add_argument("--profile", default="ci", help="with --bench: the fuzz profile (default ci)")
    p.add_argument("--seed", default=str(BENCH_SEED), help=f"with --bench: the seed (default {BENCH_SEED})")
    p.add_argument("--max-examples", type=int, metavar="N", help="with --bench: fewer examples")
    p.add_argument("--record", action="store_true",
                   help=f"with --bench: store the figures for REPORT.md in docs/{PIPE_RESULTS_NAME}")
    s = sub.add_parser("serve", help="speak the subject protocol on stdin/stdout for a Python class")
    s.add_argument("component")
    s.add_argument("--impl", help="module:Class to serve instead of the component's impl")
    s.add_argument("--callbacks", choices=("events", "calls"), default="events",
                   help="notification callbacks as \"events\" of the answer (default), or as calls "
                        "back at the moment they fire (a callback that reads the impl back sees "
                        "the state mid-operation, as in-process)")


def impl_timeout(args: argparse.Namespace) -> float:
    from meshspec.cli import UsageError
    from meshspec.protocol import DEFAULT_TIMEOUT

    value = getattr(args, "impl_timeout", None)
    if value is None:
        return DEFAULT_TIMEOUT
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--impl-timeout must be a positive number of seconds, not {value}")
    return value


def impl_cmd_for(args: argparse.Namespace, comps: list[Component]) -> type | None:
    """The proxy class of `--impl-cmd` (process started, handshake done), else None."""
    from meshspec.cli import UsageError
    from meshspec.protocol import ImplStartError, command_impl

    command = getattr(args, "impl_cmd", None)
    if command is None:
        if getattr(args, "impl_timeout", None) is not None:
            raise UsageError("--impl-timeout needs --impl-cmd")
        return None
    if getattr(args, "impl", None):
        raise UsageError("give --impl or --impl-cmd, not both")
    if len(comps) != 1:
        raise UsageError("--impl-cmd needs exactly one COMPONENT named on the command line")
    try:
        cls = command_impl(command, comps[0], impl_timeout(args))
    except ImplStartError as exc:
        raise UsageError(str(exc)) from None
    missing = [op for op in comps[0].missing_operations(cls) if op != "abstract"]
    if missing:
        raise UsageError(f"--impl-cmd {command!r} does not serve the {comps[0].name} "
                         f"operations: {', '.join(missing)}")
    return cls


def recorded_command(spec: str, comp: Component, args: argparse.Namespace) -> type | None:
    """A trace recorded against `--impl-cmd CMD` ("cmd:CMD"): start CMD again (else None)."""
    if not spec.startswith("cmd:"):
        return None
    args.impl_cmd = spec[len("cmd:"):]
    return impl_cmd_for(args, [comp])


def protocol_note(impl_cls: type | None) -> str | None:
    """The run header's line for an --impl-cmd run."""
    from meshspec.protocol import PROTOCOL_VERSION, process_of

    process = process_of(impl_cls) if impl_cls is not None else None
    if process is None:
        return None
    note = f"   impl process: {process.command} (protocol {PROTOCOL_VERSION}, timeout {process.timeout:g} s)"
    if not getattr(impl_cls, "HAS_ABSTRACT", True):
        note += ("\n   note: the impl process does not serve \"abstract\": abstract state is not "
                 "compared (results, observations and invariants are; an invariant that reads "
                 "abstract() is checked on the model only)")
    return note


def cmd_protocol(args: argparse.Namespace) -> int:
    from meshspec.cli import UsageError, components_of
    from meshspec.protocol import describe_schema, schema_of

    comp = components_of([args.component])[0]
    if args.bench:
        from meshspec.cli import example_budget, profile_name, resolve_seed
        record = pipe_bench(comp, profile_name(args.profile), resolve_seed(args.seed),
                            example_budget(args.max_examples))
        print(bench_lines(comp.name, record))
        if args.record:
            record_pipe(comp.name, record)
            print(f"recorded in {PIPE_RESULTS_PATH}")
        return 0 if record["same_run"] else 1
    if args.record or args.max_examples is not None:
        raise UsageError("--record and --max-examples go with --bench")
    print(json.dumps(describe_schema(schema_of(comp)), indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from meshspec.cli import UsageError, components_of, ensure_cwd_on_path
    from meshspec.serve import serve

    comp = components_of([args.component])[0]
    impl_cls = comp.impl_cls
    if args.impl:
        ensure_cwd_on_path()
        try:
            impl_cls = load_impl(args.impl)
        except ImplLoadError as exc:
            raise UsageError(str(exc)) from None
    return serve(comp, impl_cls, args.callbacks)
