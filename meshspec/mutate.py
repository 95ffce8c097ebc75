"""`meshspec mutate`: automatic single-change mutants of an impl, and the spec's mutation score.

The curated mutants (`meshspec mutants`) are bugs someone thought of. This module asks the
other question: of the small slips a programmer could make anywhere in the impl's source,
how many does the lockstep machine notice? It parses the impl's module (the component's
`impl/<c>.py`, or the module of the `--impl` class), lists every single-change mutant,
samples N of them with a seeded `random.Random`, builds each as a fresh module from the
mutated source (nothing on disk is touched) and runs the ci fuzz budget against its class
through `meshspec.fuzz.run_fuzz` with a fixed seed.

Operators (each mutant is one change):
- `compare`: `<` ↔ `<=`, `>` ↔ `>=`, `==` ↔ `!=`, `is` ↔ `is not`, `in` ↔ `not in`;
- `arith`: `+` ↔ `-`, `*` ↔ `//`, `/` → `*`, `%` → `//`, `<<` ↔ `>>`, `&` ↔ `|`, `^` → `|`
  (also in augmented assignments);
- `bool`: `and` ↔ `or`, `not x` → `x`;
- `const`: an int or float literal n → n + 1 and n - 1 (not bools);
- `minmax`: `min(...)` ↔ `max(...)`;
- `drop_cache`: delete one statement that updates a private cache: an assignment,
  augmented assignment, `del` or method call on a `self._x` attribute (or an item of
  it), outside `__init__`.
`check_invariants` and `assert` statements are never mutated: they are the impl's own
self-check, not its behaviour.

Verdicts: `killed` (the run found a divergence, a violated invariant, an exception or a
nondeterminism), `survived` (the whole ci budget passed), `timeout` (the run exceeded
the per-mutant `--timeout`, e.g. a mutated loop bound that never ends; the only verdict
that depends on the wall clock). Survivors listed in `meshspec.mutate_equivalents` are
`equivalent` (reviewed: no observable behaviour changes) and leave the denominator:
score = killed / (total - equivalent).

Mutant ids are stable across edits elsewhere in the file: `operator:change|line text|#k`,
where the line text is the stripped source line and k counts earlier mutants with the
same operator, change and line text (so no line numbers).

Why no library: mutmut (3.x) copies the package into a `mutants/` directory, rewrites
each function into a trampoline switched by an environment variable, and judges a mutant
by the exit status of pytest over the project's tests; cosmic-ray writes each mutant
into the source file on disk and runs a configured test command per mutant. Both
measure a test suite and need the mutated code on disk and a test command; here the
judge is the lockstep machine run in-process against a class object (the `--impl`
contract), mutants must not touch the user's files, and we need the mutant's class
itself, the failure's name and an in-process budget. A small `ast` mutator (below) does that.
"""
from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import inspect
import json
import random
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import attrs

from meshspec.lockstep import Component

RESULTS_PATH = Path(__file__).resolve().parent.parent / "docs" / "mutate-results.json"
DEFAULT_N = 40
DEFAULT_SEED = 20261130
DEFAULT_TIMEOUT = 300.0
FUZZ_SEED = 20261123  # the fixed seed of every mutant's fuzz run (meshspec.profiles.DEFAULT_SEED)
SKIPPED_FUNCTIONS = {"check_invariants"}

COMPARE_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                 ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
                 ast.In: ast.NotIn, ast.NotIn: ast.In}
ARITH_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
               ast.Div: ast.Mult, ast.Mod: ast.FloorDiv, ast.LShift: ast.RShift,
               ast.RShift: ast.LShift, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
               ast.BitXor: ast.BitOr}
BOOL_SWAPS = {ast.And: ast.Or, ast.Or: ast.And}
SYMBOLS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
           ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+",
           ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/", ast.Mod: "%",
           ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
           ast.And: "and", ast.Or: "or"}


class MutateError(Exception):
    """Bad input to `meshspec mutate` (exit 2, one line)."""


@attrs.frozen
class SourceMutant:
    """One single-change mutant of a module's source."""

    id: str
    operator: str
    line: int  # 1-based, for display only (the id does not use it)
    source: str  # the whole mutated module
    diff: str  # unified diff against the original


@attrs.frozen
class MutantOutcome:
    mutant: SourceMutant
    verdict: str  # killed | survived | timeout | equivalent
    caught_by: str | None
    seconds: float
    equivalent_reason: str | None = None


# ---------------------------------------------------------------------------- generation
@attrs.frozen
class _Site:
    """Where and how to change one node: `apply` mutates a copy of the tree in place."""

    operator: str
    change: str
    node_path: tuple[Any, ...]
    variant: Any


def _walk(node: ast.AST, path: tuple = (), in_init: bool = False) -> Iterator[tuple[ast.AST, tuple, bool]]:
    """Every node with its path (field, index pairs) and whether it sits in `__init__`."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if node.name in SKIPPED_FUNCTIONS:
            return
        in_init = node.name == "__init__"
    if isinstance(node, ast.Assert):
        return
    yield node, path, in_init
    for field, value in ast.iter_fields(node):
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.AST):
                    yield from _walk(item, path + ((field, i),), in_init)
        elif isinstance(value, ast.AST):
            yield from _walk(value, path + ((field, None),), in_init)


def _is_docstring_or_annotation(path: tuple) -> bool:
    return any(field in ("annotation", "returns") for field, _ in path)


def _private_self_attr(node: ast.AST) -> bool:
    """`self._x`, `self._x[k]`, `self._x.y` ... rooted at a private attribute of self."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "self"):
            return node.attr.startswith("_") and not node.attr.startswith("__")
        node = node.value
    return False


def _cache_update(stmt: ast.AST) -> bool:
    if isinstance(stmt, ast.Assign):
        return any(_private_self_attr(t) for t in stmt.targets)
    if isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        return _private_self_attr(stmt.target)
    if isinstance(stmt, ast.Delete):
        return any(_private_self_attr(t) for t in stmt.targets)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        return isinstance(func, ast.Attribute) and _private_self_attr(func.value)
    return False


def _sites(tree: ast.Module) -> list[_Site]:
    sites: list[_Site] = []
    for node, path, in_init in _walk(tree):
        if _is_docstring_or_annotation(path):
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                new = COMPARE_SWAPS.get(type(op))
                if new:
                    sites.append(_Site("compare", f"{SYMBOLS[type(op)]}→{SYMBOLS[new]}", path, ("ops", i, new)))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)):
            new = ARITH_SWAPS.get(type(node.op))
            if new:
                sites.append(_Site("arith", f"{SYMBOLS[type(node.op)]}→{SYMBOLS[new]}", path, ("op", new)))
        elif isinstance(node, ast.BoolOp):
            new = BOOL_SWAPS[type(node.op)]
            sites.append(_Site("bool", f"{SYMBOLS[type(node.op)]}→{SYMBOLS[new]}", path, ("op", new)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sites.append(_Site("bool", "not x→x", path, ("drop_not",)))
        elif (isinstance(node, ast.Constant) and type(node.value) in (int, float)):
            for delta in (1, -1):
                sites.append(_Site("const", f"{node.value!r}→{node.value + delta!r}", path, ("const", delta)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("min", "max")):
            new = "max" if node.func.id == "min" else "min"
            sites.append(_Site("minmax", f"{node.func.id}→{new}", path, ("minmax", new)))
        if isinstance(node, ast.stmt) and not in_init and _cache_update(node):
            sites.append(_Site("drop_cache", "delete", path, ("drop",)))
    return sites


def _resolve(tree: ast.AST, path: tuple) -> ast.AST:
    node = tree
    for field, index in path:
        node = getattr(node, field) if index is None else getattr(node, field)[index]
    return node


def _replace(tree: ast.AST, path: tuple, new: ast.AST) -> None:
    parent = _resolve(tree, path[:-1])
    field, index = path[-1]
    if index is None:
        setattr(parent, field, new)
    else:
        getattr(parent, field)[index] = new


def _mutated_node(node: ast.AST, variant: tuple) -> ast.AST:
    kind = variant[0]
    new = _copy(node)
    if kind == "ops":
        new.ops[variant[1]] = variant[2]()  # type: ignore[attr-defined]
    elif kind == "op":
        new.op = variant[1]()  # type: ignore[attr-defined]
    elif kind == "drop_not":
        return _copy(node.operand)  # type: ignore[attr-defined]
    elif kind == "const":
        value = node.value + variant[1]  # type: ignore[attr-defined]
        if value < 0:  # source text `-1` parses as -(1): build it that way so text and tree agree
            return ast.copy_location(ast.UnaryOp(ast.USub(), ast.Constant(-value)), node)
        new.value = value  # type: ignore[attr-defined]
    elif kind == "minmax":
        new.func.id = variant[1]  # type: ignore[attr-defined]
    elif kind == "drop":
        return ast.copy_location(ast.Pass(), node)
    return new


def _copy(node: ast.AST) -> ast.AST:
    return copy.deepcopy(node)


def _enclosing_statement(tree: ast.AST, path: tuple) -> tuple:
    """The path of the innermost statement strictly above the node at `path`."""
    for cut in range(len(path) - 1, 0, -1):
        if isinstance(_resolve(tree, path[:cut]), ast.stmt):
            return path[:cut]
    return path[:1]


def _splice(source_lines: list[str], node: ast.AST, text: str) -> str:
    """The source with `node`'s span replaced by `text` (kept on its first line's indentation)."""
    first, last = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
    start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
    prefix = source_lines[first][:start]
    suffix = source_lines[last][end:]
    indent = " " * len(prefix) if prefix.strip() == "" else ""
    body = text.replace("\n", "\n" + indent) if indent else text
    return "".join(source_lines[:first]) + prefix + body + suffix + "".join(source_lines[last + 1:])


def generate(source: str, filename: str = "impl.py") -> list[SourceMutant]:
    """Every single-change mutant of `source`, in source order, each with a stable id."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise MutateError(f"{filename}: cannot parse: {exc.msg} (line {exc.lineno})") from None
    lines = source.splitlines(keepends=True)
    seen: dict[tuple[str, str, str], int] = {}
    out = []
    for site in _sites(tree):
        node = _resolve(tree, site.node_path)
        new = _mutated_node(node, site.variant)
        # compare the innermost statement that encloses the change (the splice stays inside it)
        scope = _enclosing_statement(tree, site.node_path)
        _replace(tree, site.node_path, new)
        expected = ast.dump(_resolve(tree, scope))
        _replace(tree, site.node_path, node)
        text = ast.unparse(new)
        mutated = None
        for candidate in (text, f"({text})"):
            attempt = _splice(lines, node, candidate)
            try:
                parsed = ast.parse(attempt)
            except SyntaxError:
                continue
            try:
                same = ast.dump(_resolve(parsed, scope)) == expected
            except (AttributeError, IndexError, TypeError):
                same = False
            if same:
                mutated = attempt
                break
        if mutated is None:  # the text edit would not mean the AST change: leave it out
            continue
        line_text = lines[node.lineno - 1].strip()
        key = (site.operator, site.change, line_text)
        ordinal = seen.get(key, 0)
        seen[key] = ordinal + 1
        diff = "".join(difflib.unified_diff(source.splitlines(keepends=True),
                                            mutated.splitlines(keepends=True),
                                            fromfile=f"a/{filename}", tofile=f"b/{filename}", n=2))
        out.append(SourceMutant(f"{site.operator}:{site.change}|{line_text}|#{ordinal}",
                                site.operator, node.lineno, mutated, diff))
    return out


def sample(mutants: Sequence[SourceMutant], n: int, seed: int) -> list[SourceMutant]:
    """N mutants drawn with `random.Random(seed)`, returned in source order."""
    if n >= len(mutants):
        return list(mutants)
    picked = sorted(random.Random(seed).sample(range(len(mutants)), n))
    return [mutants[i] for i in picked]


# ---------------------------------------------------------------------------- loading
_counter = 0


def load_mutant_class(m: SourceMutant, module_name: str, class_name: str, filename: str) -> type:
    """Build a fresh module from the mutated source and return its `class_name`.

    The module gets a unique name (registered in sys.modules so dataclasses, pickling and
    tracebacks can find it), so the original module and other mutants are untouched."""
    global _counter
    _counter += 1
    name = f"{module_name}__mutant{_counter}"
    module = types.ModuleType(name)
    module.__file__ = filename
    module.__package__ = module_name.rpartition(".")[0]
    sys.modules[name] = module
    code = compile(m.source, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - the user's own source, one operator changed
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise MutateError(f"mutated module has no class {class_name!r}")
    return cls


def unload(cls: type) -> None:
    sys.modules.pop(cls.__module__, None)


# ---------------------------------------------------------------------------- running
class MutantTimeout(BaseException):
    """The per-mutant time limit passed (BaseException: no harness `except Exception` eats it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[list[bool]]:
    """Raise MutantTimeout after `seconds`; yields a one-item list set to True once the limit
    passed, because the raise can land inside Hypothesis' own generation, which reports it as
    some other error (e.g. a "flaky" run) instead of letting it through."""
    expired = [False]
    if not seconds or not hasattr(signal, "setitimer"):
        yield expired
        return

    def expire(signum: int, frame: Any) -> None:
        expired[0] = True
        raise MutantTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield expired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def source_of(impl_cls: type) -> tuple[str, str, str]:
    """(source, file name, module name) of the module that defines `impl_cls`."""
    module = sys.modules.get(impl_cls.__module__)
    try:
        filename = inspect.getsourcefile(module) if module else None  # type: ignore[arg-type]
        if not filename:
            raise OSError("no source file")
        source = Path(filename).read_text(encoding="utf-8")
    except (OSError, TypeError) as exc:
        raise MutateError(f"cannot read the source of {impl_cls.__module__}: {exc}") from None
    return source, filename, impl_cls.__module__


def run_one(component: Component, impl_cls: type, m: SourceMutant, *, filename: str,
            profile: str = "ci", max_examples: int | None = None,
            timeout: float | None = DEFAULT_TIMEOUT) -> MutantOutcome:
    from meshspec.fuzz import run_fuzz

    start = time.perf_counter()
    try:
        cls = load_mutant_class(m, impl_cls.__module__, impl_cls.__qualname__, filename)
    except Exception as exc:  # noqa: BLE001 - a mutant that cannot even be built is killed
        return MutantOutcome(m, "killed", f"import: {type(exc).__name__}: {exc}",
                             time.perf_counter() - start)
    try:
        with time_limit(timeout) as expired:
            result = run_fuzz(component, cls, profile=profile, seed=FUZZ_SEED, use_database=False,
                              shrink=False, max_examples=max_examples)
    except MutantTimeout:
        return MutantOutcome(m, "timeout", None, time.perf_counter() - start)
    finally:
        unload(cls)
    if expired[0]:  # the limit passed and the run reported it as something else
        return MutantOutcome(m, "timeout", None, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if result.trace is not None and result.trace.failure is not None:
        return MutantOutcome(m, "killed", result.trace.failure.name, seconds)
    if result.error is not None:
        return MutantOutcome(m, "killed", result.error.splitlines()[0][:120], seconds)
    return MutantOutcome(m, "survived", None, seconds)


def run(component: Component, impl_cls: type, *, n: int = DEFAULT_N, seed: int = DEFAULT_SEED,
        profile: str = "ci", timeout: float | None = DEFAULT_TIMEOUT,
        max_examples: int | None = None, equivalents: dict[str, str] | None = None,
        on_result: Callable[[MutantOutcome], None] | None = None,
        only: Sequence[str] = ()) -> list[MutantOutcome]:
    """Generate, sample and run; a survivor in `equivalents` (id → reason) is `equivalent`.
    `only` (mutant ids) runs just those mutants of the sample, for iterating on survivors."""
    source, filename, _ = source_of(impl_cls)
    picked = sample(generate(source, Path(filename).name), n, seed)
    if only:
        unknown = sorted(set(only) - {m.id for m in picked})
        if unknown:
            raise MutateError(f"--only: no mutant {unknown[0]!r} in this sample")
        picked = [m for m in picked if m.id in set(only)]
    equivalents = {} if equivalents is None else equivalents
    outcomes = []
    for m in picked:
        out = run_one(component, impl_cls, m, filename=filename, profile=profile,
                      max_examples=max_examples, timeout=timeout)
        if out.verdict == "survived" and m.id in equivalents:
            out = attrs.evolve(out, verdict="equivalent", equivalent_reason=equivalents[m.id])
        outcomes.append(out)
        if on_result is not None:
            on_result(out)
    return outcomes


def score(outcomes: Sequence[MutantOutcome]) -> float | None:
    """killed / (total - equivalent), None when nothing counts."""
    counted = [o for o in outcomes if o.verdict != "equivalent"]
    if not counted:
        return None
    return sum(o.verdict == "killed" for o in counted) / len(counted)


def counts(outcomes: Sequence[MutantOutcome]) -> dict[str, int]:
    c = {"total": len(outcomes), "killed": 0, "survived": 0, "timeout": 0, "equivalent": 0}
    for o in outcomes:
        c[o.verdict] += 1
    return c


# ---------------------------------------------------------------------------- record
def summary(component: str, impl: str, outcomes: Sequence[MutantOutcome], *, n: int, seed: int,
            profile: str, generated: int) -> dict[str, Any]:
    s = score(outcomes)
    return {
        "impl": impl, "n": n, "seed": seed, "profile": profile, "fuzz_seed": FUZZ_SEED,
        "generated": generated, **counts(outcomes),
        "score": None if s is None else round(s, 4),
        "seconds": round(sum(o.seconds for o in outcomes), 1),
        "survivors": [{"id": o.mutant.id, "diff": o.mutant.diff}
                      for o in outcomes if o.verdict in ("survived", "timeout", "equivalent")],
        "mutants": [{"id": o.mutant.id, "verdict": o.verdict, "caught_by": o.caught_by}
                    for o in outcomes],
    }


def load_results(path: Path | None = None) -> dict[str, Any]:
    path = RESULTS_PATH if path is None else path
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def record(component: str, entry: dict[str, Any], path: Path | None = None) -> Path:
    from meshspec.traces import atomic_write

    path = RESULTS_PATH if path is None else path
    data = load_results(path)
    data[component] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(dict(sorted(data.items())), indent=2, ensure_ascii=False) + "\n")
    return path


def reviewed(entry: dict[str, Any], equivalents: dict[str, str]) -> dict[str, Any]:
    """A recorded entry with the current review applied: a recorded survivor now listed as
    equivalent counts as equivalent, and one no longer listed counts as a survivor again."""
    verdicts = []
    for m in entry["mutants"]:
        v = m["verdict"]
        if v in ("survived", "equivalent"):
            v = "equivalent" if m["id"] in equivalents else "survived"
        verdicts.append((m["id"], v))
    c = {"total": len(verdicts), "killed": 0, "survived": 0, "timeout": 0, "equivalent": 0}
    for _, v in verdicts:
        c[v] += 1
    counted = c["total"] - c["equivalent"]
    return {**c, "score": c["killed"] / counted if counted else None,
            "survivors": [i for i, v in verdicts if v in ("survived", "timeout")]}


def report_section(path: Path | None = None) -> str:
    """The "Mutation score" section of REPORT.md, from the recorded results and the review."""
    from tabulate import tabulate

    from meshspec.mutate_equivalents import for_component

    data = load_results(path)
    head = ("## Mutation score\n\n`meshspec mutate COMPONENT --record`: single-change AST mutants "
            "of the impl (operator swaps, constants ±1, min↔max, deleted cache updates), a seeded "
            "sample, each run under the ci fuzz budget with a fixed seed. Score = killed ÷ (total − "
            "equivalent); equivalent mutants are reviewed in `meshspec/mutate_equivalents.py`. "
            "Measured nightly (`pytest -m nightly tests/test_mutate.py`), not in CI.")
    if not data:
        return head + "\n\nNot recorded."
    from meshspec.registry import names

    rows, surv = [], []
    for name in [n for n in names() if n not in data]:
        rows.append([f"`{name}`", "not recorded"] + [""] * 6)
    for name, e in data.items():
        r = reviewed(e, for_component(name))
        s = r["score"]
        rows.append([f"`{name}`", f"{r['total']} of {e['generated']}", r["killed"], r["survived"],
                     r["timeout"], r["equivalent"], "-" if s is None else f"{s:.1%}", e["seed"]])
        surv += [f"- `{name}`: `{i}`" for i in r["survivors"]]
    table = tabulate(rows, headers=["component", "mutants (sampled of generated)", "killed",
                                    "survived", "timeout", "equivalent", "score", "sample seed"],
                     tablefmt="github")
    tail = ("\n\nSurviving mutants (weaknesses of the spec; diffs in `docs/mutate-results.json`):"
            "\n\n" + "\n".join(surv)) if surv else ""
    return head + "\n\n" + table + tail
