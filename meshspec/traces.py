"""Counterexample traces: versioned JSON, a standalone pytest file, and replay.

Trace format (version 2)::

    {"format": "meshspec-trace", "version": 2, "component": "shard_mapper",
     "impl": "impl.shard_mapper:ShardMapper", "seed": 20261123, "profile": "ci",
     "steps": [{"rule": "init", "args": {"initial": 0, "ring_capacity": 8, ...}}, ...],
     "failure": {"kind": "invariant", "name": "...", "message": "...", "step": 7,
                 "state_diff": ["shards[0].state: model 'Active', impl 'Draining'"]}}

Rule arguments are keyword arguments named after the Subject rule method's parameters
(version 1 traces, whose `args` are positional lists, are still read). Values JSON
cannot hold are tagged objects: `{"$float": "nan" | "inf" | "-inf"}`,
`{"$bytes": "<hex>"}`, `{"$tuple": [...]}`. Files are written atomically (temporary
file in the target directory, then rename).

A second kind of trace shares the format and version: `"kind": "schedule"` (component
`races`), one failing interleaving of a race protocol, written and replayed by
`meshspec.interleave` / `meshspec.races_cli` (`meshspec replay` dispatches on the kind).

Reading a trace validates everything before anything runs or is imported: the shape,
the component, every step's rule, its arguments against the rule method's signature
and type annotations (bool is not an int), `init` first and only first, and the
`impl` field's syntax. Every problem is one TraceError line; the recorded impl is
imported only by the caller, after that.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import stat
import tempfile
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs

from meshspec.lockstep import (Component, Lockstep, LockstepFailure, module_search_path,
                               rule_signature, show)

FORMAT = "meshspec-trace"
VERSION = 2
READ_VERSIONS = (1, 2)
MAX_NESTING = 48  # deeper JSON is refused before it is decoded (no RecursionError)
IMPL_SPEC = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:"
                       r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

Steps = tuple[tuple[str, tuple], ...]


class TraceError(ValueError):
    """A trace file that is missing, corrupt, of an unknown version or for an unknown component."""


@attrs.frozen
class Failure:
    kind: str
    name: str
    message: str
    step: int
    state_diff: tuple[str, ...] = ()

    @classmethod
    def of(cls, exc: LockstepFailure) -> "Failure":
        return cls(exc.kind, exc.name, exc.message, exc.step, tuple(getattr(exc, "state_diff", ())))


@attrs.frozen
class Trace:
    component: str
    impl: str
    seed: int | None
    profile: str | None
    steps: Steps
    failure: Failure | None

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def to_json(self) -> str:
        fail = attrs.asdict(self.failure) if self.failure else None
        if fail is not None:
            fail["state_diff"] = list(fail["state_diff"])
        doc = {
            "format": FORMAT, "version": VERSION, "component": self.component,
            "impl": self.impl, "seed": self.seed, "profile": self.profile,
            "steps": [{"rule": r, "args": encode_args(self.component, r, args)} for r, args in self.steps],
            "failure": fail,
        }
        return json.dumps(doc, indent=1, allow_nan=False) + "\n"


@functools.lru_cache(maxsize=None)
def _subject_of(component: str) -> type | None:
    from meshspec import registry

    try:
        return registry.get_component(component).subject_cls
    except Exception:  # noqa: BLE001 - an unknown or broken component: positional args
        return None


def arg_names(component: str, rule: str, count: int) -> list[str] | None:
    """The parameter names of `count` positional arguments of a rule, or None (positional)."""
    subject = _subject_of(component)
    sig = rule_signature(subject, rule) if subject is not None else None
    if sig is None:
        return None
    params = list(sig.parameters.values())
    if len(params) < count or any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                                  for p in params[:count]):
        return None
    return [p.name for p in params[:count]]


def encode_args(component: str, rule: str, args: tuple) -> Any:
    """A step's arguments as keywords (`{"initial": 0, ...}`), positional when unnamed."""
    names = arg_names(component, rule, len(args))
    if names is None:
        return [encode(a) for a in args]
    return {name: encode(a) for name, a in zip(names, args)}


def encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"rule argument {value!r} cannot be stored in a trace")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$float"}:
            return _decode_float(value["$float"])
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        if set(value) == {"$tuple"}:
            if not isinstance(value["$tuple"], list):
                raise TypeError("$tuple must hold a list")
            return tuple(decode(v) for v in value["$tuple"])
        return {k: decode(v) for k, v in value.items()}
    return value


def _decode_float(text: Any) -> float:
    if text not in ("nan", "inf", "-inf"):
        raise ValueError(f"$float must be 'nan', 'inf' or '-inf', not {show(text, 40)}")
    return float(text)


def nesting(doc: Any) -> int:
    """The nesting depth of a JSON value, computed without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def load(path: str | Path) -> Trace:
    """Read and validate a trace; raise TraceError with a one-line reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(f"trace {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"trace {str(path)!r} cannot be read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"trace {str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise TraceError(f"trace {str(path)!r} is nested too deeply to be a trace") from None
    except ValueError as exc:  # e.g. an integer literal past Python's digit limit
        raise TraceError(f"trace {str(path)!r} is not valid JSON ({exc})") from None
    return parse(doc, str(path))


def parse(doc: Any, where: str = "trace") -> Trace:
    """A validated Trace from a decoded JSON document (positional steps), or TraceError."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TraceError(f"{where!r} is not a meshspec trace (missing \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if type(version) is not int or version not in READ_VERSIONS:
        raise TraceError(f"{where!r} has trace version {show(version, 40)}; this meshspec reads "
                         f"versions {', '.join(map(str, READ_VERSIONS))}")
    if nesting(doc) > MAX_NESTING:
        raise TraceError(f"{where!r} is nested deeper than {MAX_NESTING} levels")
    if doc.get("kind") == "schedule":
        raise TraceError(f"{where!r} is a schedule trace of the races component "
                         "(`meshspec replay` runs it, not the lockstep replayer)")
    try:
        component = _component(doc)
        raw = _raw_steps(doc["steps"], version)
        steps = validate_steps(component, raw)
        failure = _failure(doc.get("failure"), len(steps))
        trace = Trace(component.name, _impl_spec(doc["impl"]), _optional(doc, "seed", int),
                      _optional(doc, "profile", str), steps, failure)
    except TraceError as exc:
        raise TraceError(f"{where!r} is malformed: {exc}") from None
    except KeyError as exc:
        raise TraceError(f"{where!r} is malformed: it lacks the key {show(exc.args[0], 40)}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise TraceError(f"{where!r} is malformed: {type(exc).__name__}: {exc}") from None
    return trace


def _component(doc: Mapping[str, Any]) -> Component:
    from meshspec import registry

    name = doc["component"]
    if not isinstance(name, str):
        raise TraceError(f"\"component\" must be a string, not {show(name, 40)}")
    try:
        return registry.get_component(name)
    except registry.UnknownComponent as exc:
        raise TraceError(str(exc)) from None


def _impl_spec(spec: Any) -> str:
    if isinstance(spec, str) and spec.startswith("cmd:") and spec[4:].strip():
        return spec  # an impl process (meshspec.protocol): replay starts the command again
    if not isinstance(spec, str) or not IMPL_SPEC.fullmatch(spec):
        raise TraceError(f"\"impl\" must be module:Class, not {show(spec, 60)}")
    return spec


def _optional(doc: Mapping[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if value is not None and (type(value) is not kind):
        raise TraceError(f"{key!r} must be {kind.__name__} or null, not {show(value, 40)}")
    return value


def _raw_steps(steps: Any, version: int) -> list[tuple[str, Any]]:
    """(rule, list of positional args | dict of keyword args) per step, shapes checked."""
    if not isinstance(steps, list) or not steps:
        raise TraceError("\"steps\" must be a non-empty list")
    out = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or not isinstance(step.get("rule"), str) or "args" not in step:
            raise TraceError(f"step {index} must be {{\"rule\": name, \"args\": ...}}")
        args = step["args"]
        allowed = (list,) if version == 1 else (list, dict)
        if not isinstance(args, allowed) or (isinstance(args, dict) and set(args) & {"$float", "$bytes", "$tuple"}):
            raise TraceError(f"step {index} ({step['rule']}): \"args\" must be "
                             + ("a list" if version == 1 else "an object of keyword arguments"))
        out.append((step["rule"], decode(args)))
    return out


def _failure(fail: Any, count: int) -> Failure | None:
    if fail is None:
        return None
    if not isinstance(fail, dict):
        raise TraceError("\"failure\" must be an object or null")
    texts = [fail[k] for k in ("kind", "name", "message")]
    step, diff = fail["step"], fail.get("state_diff", [])
    if not all(isinstance(t, str) for t in texts) or type(step) is not int or not 0 <= step < count:
        raise TraceError(f"\"failure\" must name kind, name, message (strings) and a step in 0..{count - 1}")
    if not isinstance(diff, list) or not all(isinstance(d, str) for d in diff):
        raise TraceError("\"failure\".\"state_diff\" must be a list of strings")
    return Failure(texts[0], texts[1], texts[2], step, tuple(diff))


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same directory, then rename.

    The file keeps the mode it had; a new file gets the usual 0666 & ~umask (not
    mkstemp's 0600)."""
    mode = target_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def target_mode(path: Path) -> int:
    """The permission bits `path` has, or 0666 & ~umask when it does not exist yet."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask (read from /proc when possible: os.umask has to set it to read it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_export_dir(directory: str | Path) -> Path:
    """Prove the export directory can be written (it, or the nearest existing ancestor that
    would hold it), or raise OSError. Creates nothing: `export` makes the directory."""
    path = Path(directory)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"export directory {str(path)!r}: {str(existing)!r} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"export directory {str(path)!r} is not writable")
    probe = tempfile.NamedTemporaryFile(dir=existing, prefix=".probe.", delete=True)
    probe.close()
    return path


def export(trace: Trace, directory: str | Path) -> tuple[Path, Path]:
    """Write `<component>-<hash>.json` and `test_<component>_<hash>.py`; return both paths."""
    path = check_export_dir(directory)
    path.mkdir(parents=True, exist_ok=True)
    digest = trace.digest()
    json_path = path / f"{trace.component}-{digest}.json"
    py_path = path / f"test_{trace.component}_{digest}.py"
    atomic_write(json_path, trace.to_json())
    atomic_write(py_path, render_pytest(trace, digest))
    return json_path, py_path


def py_literal(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if isinstance(value, list):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(py_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {py_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def import_path_lines(impl: str) -> list[str]:
    """Lines that put the impl's directory on sys.path, when it is not installed (as `fuzz`
    found it: e.g. the working directory of `--impl mymodule:Class`)."""
    directory = module_search_path(impl.partition(":")[0] if ":" in impl else impl.rpartition(".")[0])
    if directory is None:
        return []
    return ["import sys", "", f"if {directory!r} not in sys.path:",
            f"    sys.path.insert(0, {directory!r})", ""]


def state_diff_lines(fail: Failure | None) -> list[str]:
    """The docstring paragraph listing the fields where model and impl state differ."""
    if fail is None or not fail.state_diff:
        return []
    safe = [line.replace("\\", "\\\\").replace('"""', "'''") for line in fail.state_diff]
    return ["", "Abstract state at the failing step, fields that differ (model vs impl):",
            *(f"    {line}" for line in safe)]


def render_pytest(trace: Trace, digest: str) -> str:
    """A standalone pytest file that replays the steps with no Hypothesis involved."""
    fail = trace.failure
    what = f"{fail.kind} {fail.name!r} at step {fail.step}: {fail.message}" if fail else "no failure recorded"
    lines = [
        f'"""Counterexample exported by meshspec for {trace.component} against {trace.impl}.',
        "",
        f"Recorded failure: {what}".replace('"""', "'''"),
        *state_diff_lines(fail),
        f"Seed {trace.seed}, profile {trace.profile}. Run with plain pytest; it fails while the bug is there.",
        '"""',
        *import_path_lines(trace.impl),
        "from meshspec.lockstep import Lockstep, load_impl",
        "from meshspec.registry import get_component",
        "",
        f"IMPL = {trace.impl!r}",
        "",
        "",
        f"def test_{trace.component}_{digest}_replays_without_divergence():",
        f"    ls = Lockstep(get_component({trace.component!r}), load_impl(IMPL))",
    ]
    constants: dict[str, Any] = {}
    calls = [f"    ls.step({render_step(trace.component, rule, args, constants)})" for rule, args in trace.steps]
    at = lines.index(f"IMPL = {trace.impl!r}") + 1
    lines[at:at] = [f"{name} = {py_literal(value)}" for name, value in sorted(constants.items())]
    return "\n".join(lines + calls) + "\n"


def render_step(component: str, rule: str, args: tuple, constants: dict[str, Any]) -> str:
    """`"rule", name=value, ...`; a value the Subject names in ARG_NAMES (e.g. 65535 for
    a shard id) is written as its constant, which is added to `constants`."""
    names = arg_names(component, rule, len(args))
    if names is None:
        return ", ".join([repr(rule)] + [py_literal(a) for a in args])
    symbolic = getattr(_subject_of(component), "ARG_NAMES", {})
    parts = [repr(rule)]
    for name, value in zip(names, args):
        label = _symbol(symbolic.get(name, {}), value)
        if label is not None:
            constants[label] = value
        parts.append(f"{name}={label or py_literal(value)}")
    return ", ".join(parts)


def _symbol(table: Mapping[Any, str], value: Any) -> str | None:
    if type(value) is not int or not isinstance(table, Mapping):
        return None
    label = table.get(value)
    return label if isinstance(label, str) and label.isidentifier() else None


@attrs.frozen
class ReplayResult:
    failure: Failure | None
    steps_run: int

    def matches(self, recorded: Failure | None) -> bool:
        if recorded is None or self.failure is None:
            return recorded is None and self.failure is None
        return (self.failure.kind, self.failure.name, self.failure.step) == (
            recorded.kind, recorded.name, recorded.step)


def validate_steps(component: Component, steps: Sequence[tuple[Any, Any]]) -> Steps:
    """Every step names a rule of the component, `init` first and only first, and its
    arguments fit the rule method's signature and annotations; positional steps, or TraceError."""
    return tuple((rule, _bind_step(component, index, rule, args)) for index, (rule, args) in enumerate(steps))


def _bind_step(component: Component, index: int, rule: Any, args: Any) -> tuple:
    sig = rule_signature(component.subject_cls, rule) if isinstance(rule, str) else None
    if sig is None:
        raise TraceError(f"step {index}: {show(rule, 60)} is not a rule of component {component.name!r}")
    if index == 0 and rule != "init":
        raise TraceError(f"step 0 is {rule!r}: a trace starts with 'init'")
    if index > 0 and rule == "init":
        raise TraceError(f"step {index}: 'init' may only be the first step")
    try:
        bound = sig.bind(**args) if isinstance(args, Mapping) else sig.bind(*args)
    except TypeError as exc:
        raise TraceError(f"step {index} ({rule}): arguments do not fit {rule}"
                         f"({', '.join(sig.parameters)}): {exc}") from None
    hints = _hints(component.subject_cls, rule)
    for name, value in bound.arguments.items():
        hint = hints.get(name, Any)
        if not conforms(value, hint):
            raise TraceError(f"step {index} ({rule}): argument {name!r} must be {hint_name(hint)}, "
                             f"not {type(value).__name__} {show(value, 40)}")
    return tuple(bound.args)


@functools.lru_cache(maxsize=None)
def _hints(subject_cls: type, rule: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(getattr(subject_cls, rule))
    except Exception:  # noqa: BLE001 - an unresolvable annotation is not checked
        return {}


def hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def conforms(value: Any, hint: Any) -> bool:
    """Whether a decoded JSON value fits a type annotation (bool is not an int here)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return any(conforms(value, a) for a in args)
    if hint is None or hint is type(None):
        return value is None
    if hint in (bool, int, str, bytes):
        return type(value) is hint
    if hint is float:
        return type(value) in (float, int)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if hint is tuple or origin is tuple:
        return isinstance(value, tuple) and _items_conform(value, args)
    if hint is list or origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value) if args else isinstance(value, list)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a typing construct this checker does not know: not checked


def _items_conform(value: tuple, args: tuple) -> bool:
    if not args:
        return True
    if len(args) == 2 and args[1] is Ellipsis:
        return all(conforms(v, args[0]) for v in value)
    return len(args) == len(value) and all(conforms(v, a) for v, a in zip(value, args))


def replay(component: Component, impl_cls: type, steps: Sequence[tuple[Any, Any]]) -> ReplayResult:
    """Re-run the steps against model and impl; report the first failure, if any."""
    checked = validate_steps(component, steps)
    ls = Lockstep(component, impl_cls)
    try:
        ls.run(checked)
    except LockstepFailure as exc:
        return ReplayResult(Failure.of(exc), exc.step + 1)
    except ValueError as exc:  # the harness refused a step (e.g. an init that builds nothing)
        raise TraceError(f"step {len(ls.steps) - 1}: {exc}") from None
    return ReplayResult(None, len(checked))
