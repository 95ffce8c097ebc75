"""`meshspec linearize`: concurrent clients of the etcd-backed coordinator against a real
etcd, with faults, and a linearizability check of the recorded history.

Prints the report of `meshspec.linearize_etcd.RunReport.text()`: operations, clients,
faults injected, histories checked, search time, whether every acknowledged acquire is
visible afterwards, the verdict (and, when not linearizable, the minimal
non-linearizable sub-history). Exit 0 when linearizable with nothing lost, 1 when not,
2 with one line on bad input or when no etcd is available.

`--save FILE` writes the recorded history as JSON; `--check FILE` re-checks a saved
history without etcd (deterministic: the same file gives the same verdict, configurations
and minimal sub-history on any machine). `--record` merges the run's figures into
`docs/linearize-results.json`, which REPORT.md's "Linearizability" section shows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS_PATH = Path(__file__).resolve().parent.parent / "docs" / "linearize-results.json"


class LinearizeCliError(ValueError):
    """One line for stderr, exit 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clients", type=int, default=4, metavar="N", help="client threads, 2..8 (default 4)")
    p.add_argument("--ops", type=int, default=400, metavar="M",
                   help="operations the clients run in total (default 400)")
    p.add_argument("--shards", type=int, default=3, metavar="K", help="shards of the run, 1..16 (default 3)")
    p.add_argument("--faults", default="", metavar="LIST",
                   help="comma-separated faults among kill,pause,expire (default none)")
    p.add_argument("--etcd", default="auto", metavar="auto|URL",
                   help="auto: start a private etcd on 127.0.0.1 (default); or a loopback URL "
                        "(expire faults only)")
    p.add_argument("--broken", default=None, metavar="guardless|cached-read",
                   help="run a deliberately broken client (must be flagged)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the clients' choices and the faults")
    p.add_argument("--save", default=None, metavar="FILE", help="write the recorded history as JSON")
    p.add_argument("--check", default=None, metavar="FILE",
                   help="re-check a history saved with --save (no etcd needed)")
    p.add_argument("--record", action="store_true",
                   help=f"store the run's figures for REPORT.md in docs/{RESULTS_PATH.name}")


def run_cli(args: argparse.Namespace) -> int:
    from meshspec.linearize import ModelError
    from meshspec.linearize_etcd import LinearizeUsageError, WorkloadConfig, history_json, run_workload

    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip() and f.strip() != "none")
    config = WorkloadConfig(clients=args.clients, ops=args.ops, shards=args.shards, faults=faults,
                          broken=args.broken, seed=args.seed)
    try:
        report = recheck(args.check) if args.check else run_workload(config, args.etcd)
    except LinearizeUsageError as exc:
        raise LinearizeCliError(str(exc)) from None
    except (OSError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LinearizeCliError(f"cannot run etcd: {first}") from None
    except ModelError as exc:
        print(f"the sequential model raised: {exc}")
        return 1
    print(report.text())
    if args.save:
        from meshspec.traces import atomic_write

        try:
            atomic_write(Path(args.save), history_json(report.config, report.history,
                                                       report.faults_injected))
        except OSError as exc:
            raise LinearizeCliError(f"--save {args.save}: {exc.strerror or exc}") from None
        print(f"history saved in {args.save}")
    if args.record and not args.check:
        record(report)
        print(f"recorded in {RESULTS_PATH}")  # read at call time: tests point it elsewhere
    return 0 if report.ok else 1


def recheck(path: str) -> Any:
    from meshspec.linearize_etcd import LinearizeUsageError, load_history, report_for

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LinearizeUsageError(f"--check {path}: {exc.strerror or exc}") from None
    config, history, faults = load_history(text)
    return report_for(config, history, faults, 0.0)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in ("clients", "ops", "shards", "faults", "broken", "seed"))


def load_recorded(path: Path | None = None) -> list[dict[str, Any]]:
    try:
        rows = json.loads((path or RESULTS_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return rows if isinstance(rows, list) else []


def record(report: Any, path: Path | None = None) -> None:
    """Merge this run's row (replacing one with the same settings), atomically."""
    from meshspec.linearize_etcd import record_row
    from meshspec.traces import atomic_write

    row = record_row(report)
    rows = [r for r in load_recorded(path) if _key(r) != _key(row)] + [row]
    rows.sort(key=lambda r: (r["broken"] != "", r["broken"], r["ops"], r["clients"], r["shards"],
                             r["faults"], r["seed"]))
    atomic_write(path or RESULTS_PATH, json.dumps(rows, indent=1) + "\n")


def report_section(path: Path | None = None) -> str:
    """REPORT.md's "Linearizability" section, from the recorded runs."""
    from tabulate import tabulate

    rows = [[r["clients"], r["shards"], r["faults"] or "none", r["broken"] or "—", r["seed"],
             r["operations"], f"{r['outcomes']['ok']}/{r['outcomes']['info']}/{r['outcomes']['fail']}",
             ", ".join(f"{k} {v}" for k, v in r["faults_injected"].items()) or "—",
             r["etcd_crashes"], r["histories"], r["configurations"], r["search_seconds"],
             f"{r['acknowledged_acquires'] - r['lost_acquires']}/{r['acknowledged_acquires']}",
             r["verdict"] + (f" (minimal: {r['minimal']} ops)" if r["minimal"] else "")]
            for r in load_recorded(path)]
    intro = ("`meshspec linearize`: client threads run the capacity coordinator's impl over "
             "etcd3gw against a private etcd on 127.0.0.1, with faults fired by operation "
             "count; the history is checked against `model/capacity.py` over `model/etcd.py` "
             "with the Wing–Gong/Lowe search, one history per shard. Recorded with "
             "`--record` on the 2-core development machine.")
    table = tabulate(rows, headers=["clients", "shards", "faults", "broken client", "seed",
                                    "operations", "ok/info/fail", "faults injected",
                                    "etcd crashes", "histories", "configurations",
                                    "search s", "acquires visible", "verdict"],
                     tablefmt="github") if rows else "No runs recorded yet."
    return "\n\n".join(["## Linearizability", intro, table])
