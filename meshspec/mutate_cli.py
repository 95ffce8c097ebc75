"""The `meshspec mutate` verb: options, the per-mutant lines, the verdict and `--record`."""
from __future__ import annotations

import argparse
from pathlib import Path

from meshspec import mutate


class MutateUsageError(Exception):
    """Bad input: the CLI prints it as one line and exits 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("component", metavar="COMPONENT")
    p.add_argument("--impl", help="module:Class whose module is mutated instead of the impl "
                   "(imported like `python -m`: the current directory is on the import path)")
    p.add_argument("--n", type=int, default=mutate.DEFAULT_N, metavar="N",
                   help=f"mutants sampled (default {mutate.DEFAULT_N}; all when fewer exist)")
    p.add_argument("--seed", type=int, default=mutate.DEFAULT_SEED, metavar="S",
                   help=f"seed of the sample (default {mutate.DEFAULT_SEED}); each mutant's fuzz "
                        f"run uses the fixed seed {mutate.FUZZ_SEED}")
    p.add_argument("--timeout", type=float, default=mutate.DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds per mutant before it counts as `timeout` (default {mutate.DEFAULT_TIMEOUT:g})")
    p.add_argument("--max-examples", type=int, metavar="N",
                   help="examples per mutant instead of the ci profile's budget")
    p.add_argument("--only", action="append", default=[], metavar="ID",
                   help="run only this mutant of the sample (repeatable; e.g. the survivors "
                        "listed in docs/mutate-results.json); cannot be recorded")
    p.add_argument("--record", action="store_true",
                   help="store the result in docs/mutate-results.json (for REPORT.md)")


def check_impl_spec(spec: str | None) -> None:
    if spec is not None and spec.startswith("cmd:"):
        raise MutateUsageError("mutate needs a Python class to rewrite (--impl module:Class), "
                               "not an impl process (cmd:...)")


def run_cli(args: argparse.Namespace, component, impl_cls: type | None) -> int:
    from meshspec.lockstep import impl_path
    from meshspec.mutate_equivalents import for_component

    check_impl_spec(args.impl)
    if args.n < 1:
        raise MutateUsageError(f"--n must be at least 1, not {args.n}")
    if not args.timeout > 0:
        raise MutateUsageError(f"--timeout must be a positive number of seconds, not {args.timeout}")
    if args.max_examples is not None and args.max_examples < 1:
        raise MutateUsageError(f"--max-examples must be at least 1, not {args.max_examples}")
    if args.only and args.record:
        raise MutateUsageError("--only runs part of the sample: it cannot be --record'ed")
    cls = impl_cls or component.impl_cls
    try:
        source, filename, _ = mutate.source_of(cls)
        generated = mutate.generate(source, Path(filename).name)
    except mutate.MutateError as exc:
        raise MutateUsageError(str(exc)) from None
    # equivalents are reviewed for the shipped impl only
    equivalents = for_component(component.name) if impl_cls is None else {}
    picked = min(args.n, len(generated))
    print(f"== {component.name}: {len(generated)} mutants of {filename}, {picked} sampled "
          f"(seed {args.seed}), ci budget, fuzz seed {mutate.FUZZ_SEED}", flush=True)

    def show(o: mutate.MutantOutcome) -> None:
        extra = f" by {o.caught_by}" if o.caught_by else ""
        print(f"   {o.verdict:<10} {o.seconds:6.1f} s  {o.mutant.id}{extra}", flush=True)

    try:
        outcomes = mutate.run(component, cls, n=args.n, seed=args.seed, timeout=args.timeout,
                              max_examples=args.max_examples, equivalents=equivalents,
                              on_result=show, only=args.only)
    except mutate.MutateError as exc:
        raise MutateUsageError(str(exc)) from None
    for o in outcomes:
        if o.verdict in ("survived", "timeout"):
            print(f"\n{o.verdict.upper()}: {o.mutant.id}\n{o.mutant.diff}", end="")
    c = mutate.counts(outcomes)
    s = mutate.score(outcomes)
    print(f"\n{component.name}: {c['killed']} killed, {c['survived']} survived, {c['timeout']} "
          f"timeout, {c['equivalent']} equivalent of {c['total']}; score "
          + ("-" if s is None else f"{s:.1%}"))
    if args.record:
        entry = mutate.summary(component.name, impl_path(cls), outcomes, n=args.n, seed=args.seed,
                               profile="ci", generated=len(generated))
        if args.max_examples is not None:
            entry["max_examples"] = args.max_examples
        print(f"recorded in {mutate.record(component.name, entry)}")
    return 0 if c["survived"] == 0 and c["timeout"] == 0 else 1
