"""`meshspec contracts`: CrossHair over the PEP-316 contracts of the models' pure functions.

Two checks, both run as `crosshair` subprocesses (one per function, so a hung solver or a
crash costs one row, and the per-function limit is enforced from outside):

- **contracts**: every module-level function of a component's model modules whose
  docstring holds `post:` lines is checked with `crosshair check --analysis_kind=PEP316
  --per_condition_timeout S --report_all`. A function is *confirmed* when CrossHair
  exhausted every path of every condition, *refuted* when it found a counterexample (the
  call is reported), and *unknown* when the time ran out first.
- **diffbehavior**: every function with the same name in `model/X.py` and `impl/X.py`
  (module level, or a staticmethod of a same-named class) is compared with `crosshair
  diffbehavior`, bounded by `--max_uninteresting_iterations` and a time limit (it would
  otherwise run to its timeout even after a difference). When the impl imports the model's
  function (the same object), nothing runs: the pair is "shared (same function)".

`--record` stores each row with its seconds in `docs/contracts-results.json`; REPORT.md
reads only the stable fields (function, contract, result) from there.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import attrs

ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = ROOT / "docs" / "contracts-results.json"
DEFAULT_TIMEOUT = 5.0
DIFF_ITERATIONS = 50

# Component → the model modules whose pure functions carry contracts.
CONTRACT_MODULES: dict[str, tuple[str, ...]] = {
    "shard_mapper": ("model.shard_mapper",),
    "load_balancer": ("model.load_balancer",),
    "scheduler": ("model.scheduler",),
    "group_coordinator": ("model.group_coordinator",),
    "daemon_host": ("model.daemon_host",),
    "capacity": ("model.capacity", "model.etcd"),
}

_ERROR_LINE = re.compile(r"^.*?:\d+: error: (?P<msg>.*)$")


@attrs.frozen
class CheckResult:
    """One function's verdict: confirmed / refuted / unknown / error, and why."""

    kind: str  # "contract" or "diffbehavior"
    target: str  # `module.func`, or `model.X.f ↔ impl.X.f`
    contract: str
    status: str
    detail: str
    seconds: float

    def row(self) -> list[object]:
        return [f"`{self.target}`", self.contract, self.status, self.detail or "-",
                f"{self.seconds:.1f}"]


def post_conditions(fn: Callable[..., object]) -> list[str]:
    """The `pre:` and `post:` lines of a PEP-316 docstring, in order."""
    doc = inspect.getdoc(fn) or ""
    return [line.strip() for line in doc.splitlines()
            if line.strip().startswith(("pre:", "post:"))]


def contract_text(fn: Callable[..., object]) -> str:
    """The postconditions of a function, joined for one table cell."""
    posts = [c[len("post:"):].strip() for c in post_conditions(fn) if c.startswith("post:")]
    return "; ".join(posts).replace("|", "\\|")


def contracted_functions(module_name: str) -> list[Callable[..., object]]:
    """The module's own functions with at least one `post:` line, in source order."""
    mod = importlib.import_module(module_name)
    fns = [f for _, f in inspect.getmembers(mod, inspect.isfunction)
           if f.__module__ == module_name and any(c.startswith("post:") for c in post_conditions(f))]
    return sorted(fns, key=lambda f: f.__code__.co_firstlineno)


def contract_targets(components: Sequence[str]) -> list[tuple[str, str]]:
    """(`module.func`, contract text) for every contracted function of the components."""
    out = []
    for comp in components:
        for module_name in CONTRACT_MODULES.get(comp, ()):
            out += [(f"{module_name}.{f.__name__}", contract_text(f))
                    for f in contracted_functions(module_name)]
    return out


def crosshair(args: Sequence[str], limit: float, path: Optional[Path]) -> tuple[int, str]:
    """Run `python -m crosshair ARGS` (import root: the repo, or `path` first); rc, output."""
    env = dict(os.environ)
    roots = [str(path)] if path else []
    env["PYTHONPATH"] = os.pathsep.join(roots + [str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    try:
        proc = subprocess.run([sys.executable, "-m", "crosshair", *args], capture_output=True,
                              text=True, env=env, cwd=str(path or ROOT), timeout=limit)
    except subprocess.TimeoutExpired:
        return -1, ""
    return proc.returncode, proc.stdout + proc.stderr


def classify_check(rc: int, output: str) -> tuple[str, str]:
    """`crosshair check --report_all` output → (status, detail)."""
    errors = [m.group("msg") for m in map(_ERROR_LINE.match, output.splitlines()) if m]
    if errors:
        return "refuted", errors[0]
    if rc == -1:
        return "unknown", "time limit"
    if rc not in (0, 1):
        return "error", last_line(output)
    if "Not confirmed" in output or "Unable to meet precondition" in output:
        return "unknown", "not all paths explored in time"
    if "Confirmed over all paths" in output:
        return "confirmed", "all paths"
    return "unknown", last_line(output) or "no condition checked"


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def check_contract(target: str, timeout: float = DEFAULT_TIMEOUT, *, contract: str = "",
                   path: Optional[Path] = None) -> CheckResult:
    """`crosshair check` one function, each condition limited to `timeout` CPU seconds."""
    n = max(1, contract.count(";") + 1)
    start = time.perf_counter()
    rc, out = crosshair(["check", "--analysis_kind=PEP316", "--per_condition_timeout",
                         str(timeout), "--report_all", target], timeout * (n + 1) + 30, path)
    status, detail = classify_check(rc, out)
    return CheckResult("contract", target, contract, status, detail, time.perf_counter() - start)


def diff_pairs(component: str) -> Iterator[tuple[str, str, bool]]:
    """(model target, impl target, shared) for every same-named function of model/impl."""
    model = importlib.import_module(f"model.{component}")
    impl = importlib.import_module(f"impl.{component}")
    for name, fn in inspect.getmembers(model, inspect.isfunction):
        if fn.__module__ == model.__name__ and inspect.isfunction(getattr(impl, name, None)):
            yield f"model.{component}.{name}", f"impl.{component}.{name}", getattr(impl, name) is fn
    for cname, cls in inspect.getmembers(model, inspect.isclass):
        other = getattr(impl, cname, None)
        if cls.__module__ != model.__name__ or not inspect.isclass(other):
            continue
        for name, raw in vars(cls).items():
            if isinstance(raw, staticmethod) and isinstance(vars(other).get(name), staticmethod):
                shared = vars(other)[name].__func__ is raw.__func__
                yield f"model.{component}.{cname}.{name}", f"impl.{component}.{cname}.{name}", shared


def classify_diff(rc: int, output: str) -> tuple[str, str]:
    """`crosshair diffbehavior` output → (status, detail)."""
    if output.lstrip().startswith("Given:"):
        return "differ", " ".join(line.strip() for line in output.strip().splitlines()[:3])
    if rc == -1:
        return "unknown", "time limit"
    if "All paths exhausted" in output:
        return "equivalent", "all paths exhausted"
    if "No differences found" in output:
        return "no difference found", last_line(output.split("\n")[0]) or "bounded search"
    return "error", last_line(output)


REPLAY = """
import importlib, sys
def resolve(target):
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
def outcome(fn, kwargs):
    try:
        return ("returns", repr(fn(**kwargs)))
    except Exception as exc:
        return ("raises", type(exc).__name__, str(exc))
first, second, given = sys.argv[1:4]
same = outcome(resolve(first), eval("dict" + given)) == outcome(resolve(second), eval("dict" + given))
print("same" if same else "differ")
"""


def concretely_same(first: str, second: str, detail: str, path: Optional[Path]) -> bool:
    """Whether the reported `Given:` call, re-run on plain values, agrees after all (then the
    difference came from CrossHair's symbolic stand-ins, e.g. a symbolic memoryview)."""
    given = detail.split("Given: ", 1)[1].split("),", 1)[0] + ")" if "Given: " in detail else ""
    if not given:
        return False
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(p) for p in (path, ROOT) if p]))
    try:
        proc = subprocess.run([sys.executable, "-c", REPLAY, first, second, given], env=env,
                              capture_output=True, text=True, timeout=60, cwd=str(path or ROOT))
    except subprocess.TimeoutExpired:
        return False
    return proc.stdout.strip() == "same"


def check_diff(model_target: str, impl_target: str, timeout: float = DEFAULT_TIMEOUT, *,
               shared: bool = False, path: Optional[Path] = None) -> CheckResult:
    """`crosshair diffbehavior` on one model/impl pair (or nothing when it is one function)."""
    target = f"{model_target} ↔ {impl_target}"
    if shared:
        return CheckResult("diffbehavior", target, "same behaviour", "shared (same function)", "", 0.0)
    start = time.perf_counter()
    rc, out = crosshair(["diffbehavior", "--max_uninteresting_iterations", str(DIFF_ITERATIONS),
                         "--per_condition_timeout", str(timeout), model_target, impl_target],
                        timeout + 30, path)
    status, detail = classify_diff(rc, out)
    if status == "differ" and concretely_same(model_target, impl_target, detail, path):
        status, detail = "differs only symbolically", "the same call on plain values agrees: " + detail
    return CheckResult("diffbehavior", target, "same behaviour", status, detail,
                       time.perf_counter() - start)


def run_component(component: str, timeout: float,
                  on_result: Callable[[CheckResult], None] = lambda r: None) -> list[CheckResult]:
    """Every contract, then every model/impl pair, of one component."""
    results = []
    for target, text in contract_targets([component]):
        results.append(check_contract(target, timeout, contract=text))
        on_result(results[-1])
    for model_target, impl_target, shared in diff_pairs(component):
        results.append(check_diff(model_target, impl_target, timeout, shared=shared))
        on_result(results[-1])
    return results


def record(results: Sequence[CheckResult], path: Path = RESULTS_PATH) -> None:
    """Merge the rows (with seconds) into the committed results file, atomically."""
    from meshspec.traces import atomic_write

    merged = load_recorded(path)
    for r in results:
        merged[(r.kind, r.target)] = attrs.asdict(r) | {"seconds": round(r.seconds, 1)}
    current = current_keys()
    rows = sorted((row for key, row in merged.items() if key in current),
                  key=lambda r: (r["kind"] != "contract", r["target"]))
    atomic_write(path, json.dumps(rows, indent=1, ensure_ascii=False) + "\n")


def current_keys() -> set[tuple[str, str]]:
    """(kind, target) of every check that exists now (stale recorded rows are dropped)."""
    keys = {("contract", t) for t, _ in contract_targets(list(CONTRACT_MODULES))}
    return keys | {("diffbehavior", f"{m} ↔ {i}") for comp in CONTRACT_MODULES
                   for m, i, _ in diff_pairs(comp)}


def load_recorded(path: Path = RESULTS_PATH) -> dict[tuple[str, str], dict]:
    """Recorded rows by (kind, target); empty when nothing was recorded."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {(r["kind"], r["target"]): r for r in rows}
