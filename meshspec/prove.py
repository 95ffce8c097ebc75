"""`meshspec prove`: z3 proofs of the arithmetic and of inductive invariants.

Fuzzing samples; these hold for every input in range. Two kinds of proof:

- Arithmetic lemmas (`PROOFS`): each states a claim as a z3 formula, asks for a
  counterexample to it, and reports `proved` (unsat), `REFUTED` with the counterexample
  (sat) or `unknown`. Bit-vectors are used where the Rust code uses fixed widths
  (Lemire's 128-bit product), integers where only ordering matters (z3 struggles with
  monotonicity over wide bit-vector products; see reference/tooling-notes.md).
- Inductive invariants over counter abstractions (`Abstraction`, `Inductive`,
  `prove_inductive`, below): a component's state reduced to a few integers and booleans,
  each operation a guarded transition; k-induction with explicitly stated lemmas, BMC
  to tell a reachable violation from a missing lemma. The abstractions live in
  `meshspec.abstractions`, with their faithfulness checks (`admits`) and the
  concretization of refutations into replayable traces.

Every solver call has a timeout (z3's `timeout` parameter); running out is `unknown`.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import attrs
import z3

U16_MAX, U32_MAX = 0xFFFF, 0xFFFF_FFFF
SMALL = 8  # the bound on transition parameters in BMC's first, preferred pass


@attrs.frozen
class Proof:
    name: str
    claim: str
    build: Callable[[], tuple[z3.BoolRef, list[z3.ExprRef]]]  # (negated claim, variables to report)


@attrs.frozen
class ProofResult:
    name: str
    claim: str
    status: str
    counterexample: str = ""
    values: Mapping[str, int] = attrs.field(factory=dict)  # the counterexample, variable → value


def _lemire_in_range() -> tuple[z3.BoolRef, list]:
    h, n = z3.BitVec("hash", 128), z3.BitVec("len", 128)
    idx = z3.LShR(h * n, 64)
    pre = z3.And(z3.ULT(h, 2**64), z3.UGE(n, 1), z3.ULE(n, U16_MAX))
    return z3.And(pre, z3.UGE(idx, n)), [h, n]


def _lemire_covers_every_index() -> tuple[z3.BoolRef, list]:
    """Every candidate index i < n is reached by some hash (no candidate is starved).

    The witness is h = ceil(i·2^64 / n), characterised without division:
    i·2^64 ≤ h·n < i·2^64 + n. The claim: h is a u64 and (h·n) >> 64 = i.
    """
    n, i, h = z3.Ints("len index hash")
    k = 2**64
    pre = z3.And(1 <= n, n <= U16_MAX, 0 <= i, i < n, i * k <= h * n, h * n < i * k + n)
    reached = z3.And(0 <= h, h < k, i * k <= h * n, h * n < (i + 1) * k)
    return z3.And(pre, z3.Not(reached)), [n, i, h]


def _decision_bounds() -> tuple[z3.BoolRef, list]:
    """evaluate_scaling's arithmetic: ScaleUp(n) keeps A+n ≤ max, ScaleDown(n) keeps A−n ≥ min, n ≥ 1."""
    a, lo, hi, over, under = z3.Ints("active min max overloaded underutilized")
    up = z3.If(over / 2 > 1, over / 2, 1)
    up = z3.If(up < hi - a, up, hi - a)
    down = z3.If(under / 2 > 1, under / 2, 1)
    down = z3.If(down < a - lo, down, a - lo)
    pre = z3.And(0 <= a, a <= U16_MAX, 1 <= lo, lo <= hi, hi <= U16_MAX,
                 0 <= over, over <= a, 0 <= under, under <= a)
    bad_up = z3.And(over > a / 2, a < hi, z3.Or(up < 1, a + up > hi))
    bad_down = z3.And(under > a / 2, a > lo, z3.Or(down < 1, a - down < lo))
    return z3.And(pre, z3.Or(bad_up, bad_down)), [a, lo, hi, over, under]


def _packed_word_never_carries() -> tuple[z3.BoolRef, list]:
    """The packed (count << 32) | sum word: saturating halves never carry into each other."""
    count, total, sample = z3.BitVecs("count sum sample", 64)
    sat = lambda x: z3.If(z3.UGT(x, U32_MAX), z3.BitVecVal(U32_MAX, 64), x)  # noqa: E731
    new_count = sat(count + 1)
    new_sum = sat(total + sat(sample))
    word = (new_count << 32) | new_sum
    pre = z3.And(z3.ULE(count, U32_MAX), z3.ULE(total, U32_MAX))
    unpacked_ok = z3.And(z3.LShR(word, 32) == new_count, word & U32_MAX == new_sum)
    return z3.And(pre, z3.Not(unpacked_ok)), [count, total, sample]


def _drain_floor() -> tuple[z3.BoolRef, list]:
    """scale_down's to_drain = min(count, A − min) never takes A below min (when A > min)."""
    a, lo, count = z3.Ints("active min count")
    to_drain = z3.If(count < a - lo, count, a - lo)
    pre = z3.And(1 <= lo, lo < a, a <= U16_MAX, 0 <= count, count <= U16_MAX, to_drain > 0)
    return z3.And(pre, a - to_drain < lo), [a, lo, count]


PROOFS = (
    Proof("lemire_index_in_range", "select_shard: (hash × len) >> 64 < len for every u64 hash, 1 ≤ len ≤ 65535",
          _lemire_in_range),
    Proof("lemire_reaches_every_candidate", "select_shard: every candidate index has a hash mapping to it",
          _lemire_covers_every_index),
    Proof("scaling_decision_bounds", "evaluate_scaling: ScaleUp(n) ⇒ A+n ≤ max, ScaleDown(n) ⇒ A−n ≥ min, n ≥ 1",
          _decision_bounds),
    Proof("packed_latency_word_never_carries", "collector: saturating (count, sum) halves never carry",
          _packed_word_never_carries),
    Proof("scale_down_respects_floor", "scale_down: draining min(count, A − min) keeps A ≥ min",
          _drain_floor),
)


def run(proof: Proof, timeout_ms: int = 20_000) -> ProofResult:
    negated, variables = proof.build()
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(negated)
    verdict = solver.check()
    if verdict == z3.unsat:
        return ProofResult(proof.name, proof.claim, "proved")
    if verdict == z3.sat:
        model = solver.model()
        values = {str(v): model.eval(v, model_completion=True).as_long() for v in variables}
        cex = ", ".join(f"{k}={v}" for k, v in values.items())
        return ProofResult(proof.name, proof.claim, "REFUTED", cex, values)
    return ProofResult(proof.name, proof.claim, "unknown")


# --------------------------------------------------------------------------------------
# Inductive invariants over counter abstractions
# --------------------------------------------------------------------------------------
#
# An `Abstraction` is a transition system over a few z3 integers and booleans: an init
# predicate and named transitions, each a guarded relation over the pre-state, the
# post-state and fresh integer parameters (which shard count, how much time passes). An
# `Inductive` names one invariant to prove, the lemmas that strengthen it (each itself an
# invariant of the abstraction, proved together with it) and the induction depth k.
#
# `prove_inductive` checks the base case (no state reachable in fewer than k steps from
# init violates invariant ∧ lemmas) and the inductive step (k consecutive states that
# satisfy it are followed by one that does too). A base-case model is a reachable
# violation of the abstraction: `REFUTED`, with the path, which the abstraction module
# can turn into a replayable trace. A step model starts from a state init may never
# reach: `not inductive` (a lemma is missing), never reported as a bug. The proof is
# as strong as the abstraction is faithful; tests check that every concrete model step
# satisfies some transition relation.

Scalar = Union[int, bool]


class State(dict):
    """Variable name → z3 term (or, for a concrete state, a Python value); `s.active` reads `s["active"]`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


Guard = Callable[[State, State], z3.BoolRef]               # (pre, params) → enabled
Update = Callable[[State, State], Mapping[str, Any]]        # (pre, params) → changed variables


@attrs.frozen
class Transition:
    """A guarded assignment: enabled when `guard(pre, params)`; post = pre with `update` applied."""

    name: str
    guard: Guard
    update: Update
    params: tuple[str, ...] = ()

    def relation(self, pre: State, post: State, params: State) -> z3.BoolRef:
        changed = dict(self.update(pre, params))
        unknown = set(changed) - set(pre)
        if unknown:
            raise KeyError(f"transition {self.name} assigns unknown variables {sorted(unknown)}")
        frame = [post[v] == changed.get(v, pre[v]) for v in pre]
        return z3.And(self.guard(pre, params), *frame)


@attrs.frozen
class Abstraction:
    """A counter abstraction: typed variables, init (with parameters), transitions, invariants."""

    name: str
    variables: tuple[tuple[str, str], ...]                    # (name, "int" | "bool")
    init: Callable[[State, State], z3.BoolRef]                 # (state, init params)
    init_params: tuple[str, ...]
    transitions: tuple[Transition, ...]
    invariants: Mapping[str, Callable[[State], z3.BoolRef]]
    #: Preferred (not required) initial states for short, cheap counterexamples: BMC
    #: tries paths from these first, with every transition parameter at most SMALL.
    small_init: Optional[Callable[[State, State], z3.BoolRef]] = None

    def state(self, tag: str) -> State:
        make = {"int": z3.Int, "bool": z3.Bool}
        return State({v: make[sort](f"{v}@{tag}") for v, sort in self.variables})

    def constant(self, values: Mapping[str, Scalar]) -> State:
        """A concrete state as z3 values (for checking a concrete step)."""
        make = {"int": z3.IntVal, "bool": z3.BoolVal}
        return State({v: make[sort](values[v]) for v, sort in self.variables})

    def transition(self, name: str) -> Transition:
        for t in self.transitions:
            if t.name == name:
                return t
        raise KeyError(f"{self.name} has no transition {name!r}")

    def variant(self, *replacements: Transition) -> "Abstraction":
        """The same abstraction with some transitions swapped (a broken variant)."""
        by_name = {t.name: t for t in replacements}
        missing = set(by_name) - {t.name for t in self.transitions}
        if missing:
            raise KeyError(f"{self.name} has no transitions {sorted(missing)}")
        return attrs.evolve(self, transitions=tuple(by_name.get(t.name, t) for t in self.transitions))


def params_of(names: Sequence[str], tag: str) -> State:
    return State({p: z3.Int(f"{p}@{tag}") for p in names})


@attrs.frozen
class PathStep:
    """One step of a concrete path: the transition taken, its parameters, the state after it."""

    transition: str
    params: Mapping[str, int]
    state: Mapping[str, Scalar]


@attrs.frozen
class Path:
    """A path of the abstraction from init: init parameters, initial state, then the steps."""

    init_params: Mapping[str, int]
    init: Mapping[str, Scalar]
    steps: tuple[PathStep, ...]


class _Unrolling:
    """States s0..sn of one abstraction, linked by the transition relation."""

    def __init__(self, abstraction: Abstraction, length: int, prefix: str) -> None:
        self.abs = abstraction
        self.states = [abstraction.state(f"{prefix}{i}") for i in range(length + 1)]
        self.choice = [z3.Int(f"choice@{prefix}{i}") for i in range(length)]
        self.params = [[params_of(t.params, f"{t.name}@{prefix}{i}") for t in abstraction.transitions]
                       for i in range(length)]
        self.init_params = params_of(abstraction.init_params, f"init@{prefix}")

    def links(self) -> list[z3.BoolRef]:
        out = []
        for i, choice in enumerate(self.choice):
            pre, post = self.states[i], self.states[i + 1]
            out.append(z3.Or(*[z3.And(choice == j, t.relation(pre, post, self.params[i][j]))
                               for j, t in enumerate(self.abs.transitions)]))
        return out

    def small(self) -> list[z3.BoolRef]:
        """Preferences for a short concrete trace: small parameters, a small initial state."""
        bounded = [p <= SMALL for step in self.params for ps in step for p in ps.values()]
        init = self.abs.small_init
        return bounded + ([init(self.states[0], self.init_params)] if init else [])

    def initial(self) -> z3.BoolRef:
        return self.abs.init(self.states[0], self.init_params)

    def path(self, model: z3.ModelRef) -> Path:
        value = lambda e: _python(model.eval(e, model_completion=True))  # noqa: E731
        steps = []
        for i, choice in enumerate(self.choice):
            j = value(choice)
            t = self.abs.transitions[j]
            steps.append(PathStep(t.name, {p: value(v) for p, v in self.params[i][j].items()},
                                  {v: value(e) for v, e in self.states[i + 1].items()}))
        return Path({p: value(v) for p, v in self.init_params.items()},
                    {v: value(e) for v, e in self.states[0].items()}, tuple(steps))


def _python(term: z3.ExprRef) -> Scalar:
    if z3.is_bool(term):
        return z3.is_true(term)
    return term.as_long()


@attrs.frozen
class Inductive:
    """Prove `invariant` of `abstraction` by k-induction, strengthened by `lemmas`."""

    name: str
    claim: str
    abstraction: Abstraction
    invariant: str
    lemmas: tuple[str, ...] = ()
    k: int = 1
    bmc_depth: int = 6     # how far BMC looks for a reachable violation when the step fails

    def predicate(self, s: State) -> z3.BoolRef:
        names = (self.invariant, *self.lemmas)
        return z3.And(*[self.abstraction.invariants[n](s) for n in names])

    @property
    def method(self) -> str:
        lemmas = f" + lemma {', '.join(self.lemmas)}" if self.lemmas else ""
        return f"{self.k}-induction{lemmas}"


def inductive_over(default: Abstraction, bmc_depth: int = 6) -> Callable[..., Inductive]:
    """An abstraction module's proof constructor: `inductive(name, claim, invariant, *lemmas,
    abstraction=default)`; a broken variant passes its own abstraction."""

    def inductive(name: str, claim: str, invariant: str, *lemmas: str,
                  abstraction: Abstraction = default) -> Inductive:
        return Inductive(name, claim, abstraction, invariant, lemmas, bmc_depth=bmc_depth)

    return inductive


@attrs.frozen
class InductiveResult:
    name: str
    claim: str
    method: str
    status: str                     # proved | REFUTED | not inductive | unknown
    seconds: float
    detail: str = ""
    path: Optional[Path] = None     # the reachable violation, when REFUTED


def _solve(formulas: Sequence[z3.BoolRef], timeout_ms: int) -> tuple[z3.CheckSatResult, Optional[z3.ModelRef]]:
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*formulas)
    verdict = solver.check()
    return verdict, (solver.model() if verdict == z3.sat else None)


def bmc(spec: Inductive, depth: int, timeout_ms: int = 10_000) -> tuple[str, Optional[Path]]:
    """Bounded model checking from init: ("REFUTED", path) for the shortest violation of
    invariant ∧ lemmas within `depth` steps, ("clean", None) or ("unknown", None)."""
    for small in (True, False):
        for length in range(depth + 1):
            u = _Unrolling(spec.abstraction, length, "b")
            hints = u.small() if small else []
            verdict, model = _solve([u.initial(), *u.links(), *hints,
                                     z3.Not(spec.predicate(u.states[-1]))], timeout_ms)
            if verdict == z3.sat:
                return "REFUTED", u.path(model)
            if verdict == z3.unknown:
                return "unknown", None
    return "clean", None


def _step_case(spec: Inductive, timeout_ms: int) -> tuple[z3.CheckSatResult, Optional[Path]]:
    u = _Unrolling(spec.abstraction, spec.k, "k")
    assumed = [spec.predicate(s) for s in u.states[:-1]]
    verdict, model = _solve([*u.links(), *assumed, z3.Not(spec.predicate(u.states[-1]))], timeout_ms)
    return verdict, (u.path(model) if model is not None else None)


def _violated(spec: Inductive, state: Mapping[str, Scalar]) -> list[str]:
    s = spec.abstraction.constant(state)
    names = (spec.invariant, *spec.lemmas)
    return [n for n in names if z3.is_false(z3.simplify(spec.abstraction.invariants[n](s)))]


def prove_inductive(spec: Inductive, timeout_ms: int = 10_000) -> InductiveResult:
    """Base case by BMC to depth k−1, then the inductive step. When the step fails, BMC
    to `spec.bmc_depth` tells a reachable violation (REFUTED) from a missing lemma."""
    started = time.perf_counter()
    done = lambda status, detail="", path=None: InductiveResult(  # noqa: E731
        spec.name, spec.claim, spec.method, status, round(time.perf_counter() - started, 2), detail, path)
    base, path = bmc(spec, spec.k - 1, timeout_ms)
    if base == "REFUTED":
        return done("REFUTED", f"reachable in {len(path.steps)} steps: violates "
                    f"{', '.join(_violated(spec, (path.steps[-1].state if path.steps else path.init)))}", path)
    if base == "unknown":
        return done("unknown", "base case timed out")
    verdict, step_path = _step_case(spec, timeout_ms)
    if verdict == z3.unsat:
        return done("proved")
    if verdict == z3.unknown:
        return done("unknown", "inductive step timed out")
    reachable, path = bmc(spec, spec.bmc_depth, timeout_ms) if spec.bmc_depth else ("clean", None)
    if reachable == "REFUTED":
        return done("REFUTED", f"not inductive, and BMC reaches a violation in {len(path.steps)} steps: "
                    f"{', '.join(_violated(spec, path.steps[-1].state))}", path)
    last = step_path.steps[-1]
    return done("not inductive", f"{last.transition}({_show(last.params)}) from an unreachable state "
                f"breaks {', '.join(_violated(spec, last.state))}: a lemma is missing")


def _show(values: Mapping[str, Scalar]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def admits(abstraction: Abstraction, pre: Mapping[str, Scalar], post: Mapping[str, Scalar],
           transitions: Sequence[str], max_steps: int = 1, timeout_ms: int = 10_000) -> bool:
    """Whether `post` follows `pre` by at most `max_steps` of the named transitions, for some
    parameters (one concrete operation may be several abstract steps, e.g. detect then acquire)."""
    a, b = abstraction.constant(pre), abstraction.constant(post)
    options = [abstraction.transition(n) for n in transitions]
    for steps in range(1, max_steps + 1):
        states = [a, *[abstraction.state(f"mid{i}") for i in range(steps - 1)], b]
        links = [z3.Or(*[t.relation(states[i], states[i + 1], params_of(t.params, f"{t.name}@c{i}"))
                         for t in options]) for i in range(steps)]
        if _solve(links, timeout_ms)[0] == z3.sat:
            return True
    return False
