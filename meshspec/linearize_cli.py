"""`meshspec linearize`: concurrent clients of the etcd-backed coordinator against a real
etcd, with faults, and a linearizability check of the recorded history.

Prints the report of `meshspec.linearize_etcd.RunReport.text()`: operations, clients,
faults injected, histories checked, search time, whether every acknowledged acquire is
visible afterwards, the verdict (and, when not linearizable, the minimal
non-linearizable sub-history). Exit 0 when linearizable with nothing lost, 1 when not,
2 with one line on bad input or when no etcd is available.
"""
from __future__ import annotations

import argparse


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


def run_cli(args: argparse.Namespace) -> int:
    from meshspec.linearize import ModelError
    from meshspec.linearize_etcd import LinearizeUsageError, RunConfigCli, run_workload

    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip() and f.strip() != "none")
    config = RunConfigCli(clients=args.clients, ops=args.ops, shards=args.shards, faults=faults,
                          broken=args.broken, seed=args.seed)
    try:
        report = run_workload(config, args.etcd)
    except LinearizeUsageError as exc:
        raise LinearizeCliError(str(exc)) from None
    except (OSError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LinearizeCliError(f"cannot run etcd: {first}") from None
    except ModelError as exc:
        print(f"the sequential model raised: {exc}")
        return 1
    print(report.text())
    return 0 if report.ok else 1
