"""`meshspec protocol C`, `meshspec serve C`, and the `--impl-cmd` / `--impl-timeout` flags."""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

from meshspec.lockstep import Component, ImplLoadError, load_impl

IMPL_CMD_HELP = ("a command speaking the subject protocol (docs/protocol.md) to check in place of "
                 "the impl, e.g. \"python -m meshspec serve shard_mapper\" or \"./target/release/"
                 "mapper-server\"; one process serves the whole run")
TIMEOUT_HELP = "seconds the --impl-cmd process may take per request before it counts as hung (default 5)"


def add_impl_cmd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl-cmd", metavar="CMD", help=IMPL_CMD_HELP)
    parser.add_argument("--impl-timeout", type=float, default=None, metavar="S", help=TIMEOUT_HELP)


def add_protocol_parsers(sub: Any) -> None:
    p = sub.add_parser("protocol", help="print the subject protocol's schema of a component (JSON)")
    p.add_argument("component")
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
    from meshspec.cli import components_of
    from meshspec.protocol import describe_schema, schema_of

    comp = components_of([args.component])[0]
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
