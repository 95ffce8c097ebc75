"""Counterexample traces: versioned JSON, a standalone pytest file, and replay.

Trace format (version 1)::

    {"format": "meshspec-trace", "version": 1, "component": "shard_mapper",
     "impl": "impl.shard_mapper:ShardMapper", "seed": 20261123, "profile": "ci",
     "steps": [{"rule": "init", "args": [...]}, ...],
     "failure": {"kind": "invariant", "name": "...", "message": "...", "step": 7}}

Rule arguments are JSON values; values JSON cannot hold are tagged objects:
`{"$float": "nan" | "inf" | "-inf"}`, `{"$bytes": "<hex>"}`, `{"$tuple": [...]}`.
Files are written atomically (temporary file in the target directory, then rename).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import stat
import tempfile

from pathlib import Path
from typing import Any

import attrs

from meshspec.lockstep import Component, Lockstep, LockstepFailure, module_search_path


FORMAT = "meshspec-trace"
VERSION = 1


class TraceError(ValueError):
    """A trace file that is missing, corrupt, of an unknown version or for an unknown component."""


@attrs.frozen
class Failure:
    kind: str
    name: str
    message: str
    step: int

    @classmethod
    def of(cls, exc: LockstepFailure) -> "Failure":
        return cls(exc.kind, exc.name, exc.message, exc.step)


@attrs.frozen
class Trace:
    component: str
    impl: str
    seed: int | None
    profile: str | None
    steps: tuple[tuple[str, tuple], ...]
    failure: Failure | None

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def to_json(self) -> str:
        doc = {
            "format": FORMAT, "version": VERSION, "component": self.component,
            "impl": self.impl, "seed": self.seed, "profile": self.profile,
            "steps": [{"rule": r, "args": [encode(a) for a in args]} for r, args in self.steps],
            "failure": attrs.asdict(self.failure) if self.failure else None,
        }
        return json.dumps(doc, indent=1, allow_nan=False) + "\n"


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
            return float(value["$float"])
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        if set(value) == {"$tuple"}:
            return tuple(decode(v) for v in value["$tuple"])
        return {k: decode(v) for k, v in value.items()}
    return value


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
    return parse(doc, str(path))


def parse(doc: Any, where: str = "trace") -> Trace:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TraceError(f"{where!r} is not a meshspec trace (missing \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise TraceError(f"{where!r} has trace version {doc.get('version')!r}; this meshspec reads version {VERSION}")
    try:
        steps = tuple((str(s["rule"]), tuple(decode(s["args"]))) for s in doc["steps"])
        fail = doc.get("failure")
        failure = Failure(str(fail["kind"]), str(fail["name"]), str(fail["message"]), int(fail["step"])) if fail else None
        return Trace(str(doc["component"]), str(doc["impl"]), doc.get("seed"), doc.get("profile"), steps, failure)
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"{where!r} is malformed: {type(exc).__name__}: {exc}") from None


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


def render_pytest(trace: Trace, digest: str) -> str:
    """A standalone pytest file that replays the steps with no Hypothesis involved."""
    fail = trace.failure
    what = f"{fail.kind} {fail.name!r} at step {fail.step}: {fail.message}" if fail else "no failure recorded"
    lines = [
        f'"""Counterexample exported by meshspec for {trace.component} against {trace.impl}.',
        "",
        f"Recorded failure: {what}".replace('"""', "'''"),
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
    for rule, args in trace.steps:
        rendered = ", ".join([repr(rule)] + [py_literal(a) for a in args])
        lines.append(f"    ls.step({rendered})")
    return "\n".join(lines) + "\n"


@attrs.frozen
class ReplayResult:
    failure: Failure | None
    steps_run: int

    def matches(self, recorded: Failure | None) -> bool:
        if recorded is None or self.failure is None:
            return recorded is None and self.failure is None
        return (self.failure.kind, self.failure.name, self.failure.step) == (
            recorded.kind, recorded.name, recorded.step)


def validate_steps(component: Component, steps: tuple[tuple[str, tuple], ...]) -> None:
    """Every step names a rule of the component and fits its signature, or TraceError."""
    for index, (rule, args) in enumerate(steps):
        method = getattr(component.subject_cls, rule, None)
        if rule.startswith("_") or not callable(method):
            raise TraceError(f"trace step {index}: {rule!r} is not a rule of component {component.name!r}")
        try:
            inspect.signature(method).bind(None, *args)
        except TypeError as exc:
            raise TraceError(f"trace step {index}: {rule!r} does not take {len(args)} arguments ({exc})") from None


def replay(component: Component, impl_cls: type, steps: tuple[tuple[str, tuple], ...]) -> ReplayResult:
    """Re-run the steps against model and impl; report the first failure, if any."""
    validate_steps(component, steps)
    ls = Lockstep(component, impl_cls)
    try:
        ls.run(steps)
    except LockstepFailure as exc:
        return ReplayResult(Failure.of(exc), exc.step + 1)
    return ReplayResult(None, len(steps))
