"""`meshspec prove`: every z3 proof, as a table (property, method, result, seconds).

Two kinds of proof run: the arithmetic lemmas of `meshspec.prove.PROOFS` (the negated
claim is unsat) and the inductive invariants of the counter abstractions in
`meshspec.abstractions` (k-induction with stated lemmas). With `--variants` the curated
mutants' changes, applied to an abstraction, must each be refuted: the counterexample
path is exported as a trace under `--export` and replayed against the mutant class
(`confirmed`) or found not to reproduce (`abstraction too coarse`). `--record` stores
each row's result and seconds in docs/prove-results.json (merged, written atomically),
which REPORT.md's "Proofs" table reads.
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import attrs
from tabulate import tabulate

if TYPE_CHECKING:  # z3 is imported only when proofs run, so building the CLI parser stays cheap
    from meshspec import prove

DEFAULT_EXPORT = "meshspec-traces"
RESULTS_PATH = Path(__file__).resolve().parent.parent / "docs" / "prove-results.json"


class ProveUsageError(ValueError):
    """Bad arguments to `meshspec prove` (the CLI exits 2 with this one line)."""


@attrs.frozen
class Row:
    property: str
    method: str
    result: str
    seconds: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result in ("proved", "refuted, confirmed", "refuted, abstract only")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="z3 timeout per solver call (default 10)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only the proofs whose name contains NAME (repeatable)")
    p.add_argument("--variants", action="store_true",
                   help="also refute the curated mutants' changes applied to the abstractions "
                        "and replay each refutation trace against its mutant class")
    p.add_argument("--export", default=DEFAULT_EXPORT, metavar="DIR",
                   help=f"where refutation traces are written (default {DEFAULT_EXPORT})")
    p.add_argument("--record", action="store_true",
                   help="store each row's result and seconds in docs/prove-results.json for REPORT.md")


# The modules of meshspec.abstractions, and those with a `_concrete` module (refutations replay).
ABSTRACTIONS = ("shard_mapper", "load_balancer", "capacity", "group_coordinator", "scheduler")
CONCRETIZED = ("shard_mapper", "load_balancer", "capacity", "group_coordinator", "scheduler")


def _modules() -> list[Any]:
    return [importlib.import_module(f"meshspec.abstractions.{name}") for name in ABSTRACTIONS]


def inductive_specs() -> tuple[prove.Inductive, ...]:
    return tuple(spec for m in _modules() for spec in m.PROOFS)


def variant_specs() -> tuple[tuple[prove.Inductive, str], ...]:
    return tuple(v for m in _modules() for v in m.VARIANTS)


def refutation(spec: prove.Inductive, path: prove.Path, impl: str) -> Any:
    """The component's concretizer turns the path into a trace and replays it on `impl`."""
    concrete = importlib.import_module(f"meshspec.abstractions.{spec.abstraction.name}_concrete")
    return concrete.refutation(path, impl, spec.invariant)


def names() -> list[str]:
    from meshspec import prove

    return [p.name for p in prove.PROOFS] + [s.name for s in inductive_specs()] + \
        [s.name for s, _ in variant_specs()]


def arithmetic_row(proof: prove.Proof, timeout_ms: int) -> Row:
    from meshspec import prove

    started = time.perf_counter()
    r = prove.run(proof, timeout_ms)
    return Row(proof.name, "z3: negation unsat", r.status, round(time.perf_counter() - started, 2),
               r.counterexample)


def inductive_row(spec: prove.Inductive, timeout_ms: int) -> Row:
    from meshspec import prove

    r = prove.prove_inductive(spec, timeout_ms)
    return Row(r.name, r.method, r.status, r.seconds, r.detail)


def variant_row(spec: prove.Inductive, impl: str, timeout_ms: int, export: str) -> Row:
    from meshspec import prove, traces

    r = prove.prove_inductive(spec, timeout_ms)
    if r.status != "REFUTED" or r.path is None:
        return Row(f"{spec.name} (broken variant)", r.method, f"NOT refuted: {r.status}", r.seconds, r.detail)
    if spec.abstraction.name not in CONCRETIZED:
        steps = ", ".join(step.transition for step in r.path.steps)
        return Row(f"{spec.name} (broken variant)", r.method + " + BMC", "refuted, abstract only",
                   r.seconds, f"path: {steps} (no concretizer: not replayed)")
    ref = refutation(spec, r.path, impl)
    path, _ = traces.export(ref.trace, export)
    return Row(f"{spec.name} (broken variant)", r.method + " + BMC", f"refuted, {ref.verdict}",
               r.seconds, f"{ref.detail}; trace {path}")


def selected(name: str, only: Sequence[str]) -> bool:
    return not only or any(o in name for o in only)


def check_args(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        raise ProveUsageError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    unknown = [o for o in args.only if not any(o in n for n in names())]
    if unknown:
        raise ProveUsageError(f"--only {unknown[0]!r} matches no proof (known: {', '.join(names())})")
    return int(args.timeout * 1000)


def rows(args: argparse.Namespace) -> list[Row]:
    from meshspec import prove

    timeout_ms = check_args(args)
    out = [arithmetic_row(p, timeout_ms) for p in prove.PROOFS if selected(p.name, args.only)]
    out += [inductive_row(s, timeout_ms) for s in inductive_specs() if selected(s.name, args.only)]
    if args.variants:
        from meshspec.traces import check_export_dir
        try:
            check_export_dir(args.export)
        except OSError as exc:
            raise ProveUsageError(f"--export: {exc}") from None
        out += [variant_row(s, impl, timeout_ms, args.export) for s, impl in variant_specs()
                if selected(s.name, args.only)]
    return out


def load_recorded(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The recorded rows: property -> {result, seconds}."""
    try:
        return json.loads((path or RESULTS_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def record(table: Sequence[Row], path: Path | None = None) -> None:
    """Merge these rows into the results file (atomically), dropping properties that no longer exist."""
    from meshspec.traces import atomic_write

    path = path or RESULTS_PATH
    known = {p for p in names()} | {f"{s.name} (broken variant)" for s, _ in variant_specs()}
    merged = {k: v for k, v in load_recorded(path).items() if k in known}
    merged.update({r.property: {"result": r.result, "seconds": r.seconds} for r in table})
    atomic_write(path, json.dumps(dict(sorted(merged.items())), indent=1, ensure_ascii=False) + "\n")


def run_cli(args: argparse.Namespace) -> int:
    table = rows(args)
    if getattr(args, "record", False):
        record(table)
    print(tabulate([[r.property, r.method, r.result, f"{r.seconds:.2f}", r.detail] for r in table],
                   headers=["property", "method", "result", "seconds", "detail"], tablefmt="github"))
    bad = [r.property for r in table if not r.ok]
    print(f"FAIL: not proved: {', '.join(bad)}" if bad else f"PASS: {len(table)} proofs")
    return 1 if bad else 0


def catalogue(recorded: dict[str, dict[str, Any]] | None = None) -> list[list[Any]]:
    """Stable rows for REPORT.md: property, method, claim, the result the tests assert, and the
    seconds recorded by `meshspec prove --variants --record` ("-" when not recorded)."""
    from meshspec import prove

    recorded = load_recorded() if recorded is None else recorded

    def secs(key: str) -> str:
        seconds = recorded.get(key, {}).get("seconds")
        return "-" if seconds is None else f"{seconds:.2f}"

    out: list[list[Any]] = [[f"`{p.name}`", "z3: negation unsat", p.claim, "proved", secs(p.name)]
                            for p in prove.PROOFS]
    out += [[f"`{s.name}`", s.method, s.claim, "proved", secs(s.name)] for s in inductive_specs()]
    out += [[f"`{s.name}` (broken variant)", s.method + " + BMC", s.claim, _variant_result(s, impl),
             secs(f"{s.name} (broken variant)")] for s, impl in variant_specs()]
    return out


def _variant_result(spec: prove.Inductive, impl: str) -> str:
    if spec.abstraction.name not in CONCRETIZED:
        return f"refuted in the abstraction (not replayed; mutant `{impl.split(':')[1]}`)"
    return f"refuted; trace replays on `{impl.split(':')[1]}`"
