"""A deterministic interleaving checker: every schedule of a few threads over shared state.

What it checks. A *program* is a shared state built fresh by `setup()` and 2–3 *threads*,
each a Python generator function `thread(state)` that yields one `Access` at a time: an
atomic load, store, compare-and-swap, fetch-add or swap of a named shared location, a
mutex acquire or release, a reader-writer lock's shared acquire or release, or an opaque
atomic operation (`atomic`, e.g. one etcd request) on a named location. The checker
performs the access on the shared memory and sends its result back into the generator
(`value = yield load("count")`), so the code between two yields is thread-local and only
the yields are interleaving points — exactly the model of CHESS and loom, where each
atomic or lock operation is a scheduling point.

Approach (DESIGN notes).
- *Stateless search by re-execution.* Generators cannot be copied, so a schedule prefix
  is reached by re-running the program from `setup()` along the prefix. The DFS keeps the
  current execution for its first child and re-executes for the others: cost O(depth) per
  explored branch, negligible for the 2–3-thread protocols this is for.
- *Partial-order reduction with sleep sets* (Godefroid 1996). Two accesses are dependent
  when they touch the same location and one writes it (two loads, or two shared lock
  acquires, commute), or when both touch *visible* locations (the ones the per-step
  invariant reads) and one writes: Peled's visibility condition, so the invariant is
  evaluated on an interleaving of every ordering of visible writes. After exploring thread
  t from a state, t goes to sleep for its siblings and stays asleep down a branch until a
  dependent access runs; a state whose enabled threads are all asleep is pruned. Stateless
  sleep-set search explores each Mazurkiewicz trace (equivalence class of complete
  schedules under swapping adjacent independent accesses) once; the count reported is
  the number of complete schedules explored. `reduce=False` explores every interleaving;
  a test compares both on the same programs (same verdict, same set of final states).
- *Preemption bound* (CHESS): `preemptions=K` cuts schedules that switch away from a
  thread that could still run more than K times. Off by default (the search is complete).
  Combined with sleep sets the bound can cut more than the bound alone would (a schedule
  whose only representative needs more switches is lost); `reduce=False` with a bound
  explores exactly the schedules of at most K preemptions.
- *Blocking and deadlock.* A thread waiting for a lock is not schedulable; a state where
  no thread can run but some have not finished is a `deadlock` violation. A program that
  runs more than `max_steps` steps is a `step bound` violation (a livelock).
- *Checks.* `invariant(state)` after every step and `postcondition(state)` when all
  threads finished; both raise AssertionError (or return False) on violation. Anything a
  thread, the invariant or the postcondition raises is an `exception` violation, never a
  crash of the checker.
- *Shortest counterexample.* Exhaustive mode searches the whole (reduced) space and keeps
  the shortest violating schedule, ties broken by the smallest thread-id sequence, so the
  exported schedule is the same on any machine. Invariant violations and deadlocks are
  found at equal length in the reduced and the full space (equivalent schedules have the
  same length and the visible orderings are all explored).
- *Random mode.* `random_search` asks Hypothesis (`hypothesis.find` with a
  `random.Random(seed)`, no database: the same seed finds the same schedule) for a list of choices; step i runs `enabled[choice_i % len(enabled)]` and the
  lowest enabled thread once the list runs out. Shrinking the list shrinks the schedule
  (fewer context switches, lower thread ids), so the schedule found is small.
- *Traces.* A schedule is a list of `(thread id, access text)`; `schedule_document`
  writes it in the versioned meshspec trace format (`kind: "schedule"`), and `replay`
  re-executes it, checking that every step performs the recorded access (a program that
  changed is reported as such, not silently re-interpreted).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Generator, Iterable, Optional, Sequence

import attrs

Thread = Callable[[Any], Generator["Access", Any, Any]]

WRITES = {"store", "cas", "fetch_add", "swap", "acquire", "release", "atomic"}
READS = {"load", "read_acquire", "read_release", "atomic_read"}


@attrs.frozen
class Access:
    """One atomic access a thread yields: `op` on location `loc` with its operands."""

    op: str = attrs.field(validator=attrs.validators.in_(WRITES | READS))
    loc: str
    args: tuple = ()
    fn: Optional[Callable[[Any], Any]] = attrs.field(default=None, eq=False, repr=False)
    label: str = ""
    brief: Optional[Callable[[Any], str]] = attrs.field(default=None, eq=False, repr=False)

    def result_text(self, result: Any) -> str:
        """` -> result` as the schedule shows it (`brief` summarises large results)."""
        if result is None:
            return ""
        return f" -> {self.brief(result) if self.brief is not None else repr(result)}"

    @property
    def writes(self) -> bool:
        return self.op in WRITES

    def text(self) -> str:
        if self.label:
            return f"{self.op} {self.loc}: {self.label}"
        operands = ", ".join(repr(a) for a in self.args)
        return f"{self.op} {self.loc}" + (f" ({operands})" if operands else "")


def load(loc: str) -> Access:
    return Access("load", loc)


def store(loc: str, value: Any) -> Access:
    return Access("store", loc, (value,))


def cas(loc: str, expected: Any, new: Any) -> Access:
    """compare_exchange: sends back (succeeded, the value found)."""
    return Access("cas", loc, (expected, new))


def fetch_add(loc: str, delta: int) -> Access:
    """Sends back the value before the add."""
    return Access("fetch_add", loc, (delta,))


def swap(loc: str, value: Any) -> Access:
    """Sends back the value before the swap."""
    return Access("swap", loc, (value,))


def acquire(lock: str) -> Access:
    """Exclusive acquire of a mutex (or a reader-writer lock's write side)."""
    return Access("acquire", lock)


def release(lock: str) -> Access:
    return Access("release", lock)


def read_acquire(lock: str) -> Access:
    """Shared acquire of a reader-writer lock."""
    return Access("read_acquire", lock)


def read_release(lock: str) -> Access:
    return Access("read_release", lock)


def atomic(loc: str, fn: Callable[[Any], Any], label: str, *, writes: bool = True,
           brief: Optional[Callable[[Any], str]] = None) -> Access:
    """An opaque atomic operation on `loc` (one etcd request, say): sends back `fn(state)`;
    `brief(result)` is what the schedule shows of the result (default: its repr)."""
    return Access("atomic" if writes else "atomic_read", loc, (), fn, label, brief)


class Shared:
    """The shared memory: locations, lock holders, and an optional `ext` object (e.g. a KV).

    `log` lists every executed step as (thread, access, result) — ghost history that
    postconditions may read (it is not a location, so reading it is no access)."""

    def __init__(self, mem: dict[str, Any], ext: Any = None) -> None:
        self.mem = dict(mem)
        self.ext = ext
        self.ghost: dict[str, Any] = {}
        self.writer: dict[str, int] = {}
        self.readers: dict[str, list[int]] = {}
        self.log: list[tuple[int, Access, Any]] = []

    def can_run(self, tid: int, a: Access) -> bool:
        if a.op == "acquire":
            return a.loc not in self.writer and not self.readers.get(a.loc)
        if a.op == "read_acquire":
            return a.loc not in self.writer
        return True

    def apply(self, tid: int, a: Access) -> Any:
        op, loc = a.op, a.loc
        if op == "load":
            return self.mem[loc]
        if op == "store":
            self.mem[loc] = a.args[0]
            return None
        if op == "cas":
            found = self.mem[loc]
            if found == a.args[0]:
                self.mem[loc] = a.args[1]
            return (found == a.args[0], found)
        if op in ("fetch_add", "swap"):
            old = self.mem[loc]
            self.mem[loc] = old + a.args[0] if op == "fetch_add" else a.args[0]
            return old
        if op in ("atomic", "atomic_read"):
            assert a.fn is not None
            return a.fn(self)
        return self._lock_op(tid, a)

    def _lock_op(self, tid: int, a: Access) -> None:
        if a.op == "acquire":
            self.writer[a.loc] = tid
        elif a.op == "release":
            if self.writer.get(a.loc) != tid:
                raise RuntimeError(f"thread {tid} releases {a.loc} it does not hold")
            del self.writer[a.loc]
        elif a.op == "read_acquire":
            self.readers.setdefault(a.loc, []).append(tid)
        elif a.op == "read_release":
            if tid not in self.readers.get(a.loc, []):
                raise RuntimeError(f"thread {tid} read-releases {a.loc} it does not hold")
            self.readers[a.loc].remove(tid)
        else:
            raise ValueError(f"unknown access {a.op!r}")


@attrs.frozen
class Program:
    """A shared state factory, its threads, and what must hold.

    `visible`: the locations whose values the invariant reads, or whose order relative to
    each other the postcondition depends on (e.g. through `Shared.log`); the reduction
    explores every ordering of their writes.
    """

    name: str
    setup: Callable[[], Shared]
    threads: tuple[Thread, ...]
    invariant: Optional[Callable[[Shared], Any]] = None
    postcondition: Optional[Callable[[Shared], Any]] = None
    visible: frozenset[str] = frozenset()
    final_state: Callable[[Shared], Any] = lambda s: tuple(sorted(s.mem.items()))


@attrs.frozen
class Violation:
    kind: str  # invariant | postcondition | deadlock | exception | step bound
    name: str
    message: str
    step: int  # index of the schedule step after which it was found (-1: before any step)


Step = tuple[int, str]


@attrs.frozen
class Outcome:
    """One executed schedule: its steps (thread, access text) and the violation, if any."""

    steps: tuple[Step, ...]
    violation: Optional[Violation]
    final: Any = None


def dependent(a: Access, b: Access, visible: frozenset[str]) -> bool:
    if not (a.writes or b.writes):
        return False
    return a.loc == b.loc or (a.loc in visible and b.loc in visible)


class Execution:
    """One run of a program, advanced one scheduled step at a time."""

    def __init__(self, program: Program, max_steps: int) -> None:
        self.program = program
        self.max_steps = max_steps
        self.steps: list[Step] = []
        self.violation: Optional[Violation] = None
        self.state = self._guard("exception", "setup raised", program.setup)
        self.gens: list[Any] = []
        self.pending: list[Optional[Access]] = []
        if self.state is None:
            return
        for tid, thread in enumerate(program.threads):
            self.gens.append(thread(self.state))
            self.pending.append(None)
            self._advance(tid, None, first=True)
        if self.violation is None:
            self._check("invariant", program.invariant)  # the initial state too (step -1)

    def _guard(self, kind: str, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - whatever the model raises is a finding
            self._fail(kind, name, f"{type(exc).__name__}: {exc}")
            return None

    def _fail(self, kind: str, name: str, message: str) -> None:
        if self.violation is None:
            self.violation = Violation(kind, name, message, len(self.steps) - 1)

    def _advance(self, tid: int, value: Any, first: bool = False, throw: bool = False) -> None:
        gen = self.gens[tid]
        try:
            if first:
                self.pending[tid] = next(gen)
            else:
                self.pending[tid] = gen.throw(value) if throw else gen.send(value)
        except StopIteration:
            self.pending[tid] = None
        except Exception as exc:  # noqa: BLE001 - a thread that raises is a counterexample
            self.pending[tid] = None
            self._fail("exception", f"thread {tid} raised", f"{type(exc).__name__}: {exc}")

    def enabled(self) -> list[int]:
        if self.violation is not None:
            return []
        return [t for t, a in enumerate(self.pending) if a is not None and self.state.can_run(t, a)]

    def finished(self) -> bool:
        return all(a is None for a in self.pending)

    def step(self, tid: int) -> None:
        access = self.pending[tid]
        assert access is not None
        try:
            result = self.state.apply(tid, access)
        except Exception as exc:  # noqa: BLE001 - raised into the thread, which may handle it
            self.steps.append((tid, f"{access.text()} -> raised {type(exc).__name__}"))
            self.state.log.append((tid, access, exc))
            self._advance(tid, exc, throw=True)
        else:
            self.steps.append((tid, access.text() + access.result_text(result)))
            self.state.log.append((tid, access, result))
            self._advance(tid, result)
        if self.violation is None:
            self._check("invariant", self.program.invariant)
        if self.violation is None and len(self.steps) >= self.max_steps and not self.finished():
            self._fail("step bound", "step bound", f"still running after {self.max_steps} steps")

    def _check(self, kind: str, check: Optional[Callable[[Shared], Any]]) -> None:
        if check is None:
            return
        try:
            ok = check(self.state)
        except AssertionError as exc:
            self._fail(kind, getattr(check, "__name__", kind), str(exc) or kind)
            return
        except Exception as exc:  # noqa: BLE001
            self._fail("exception", f"{kind} raised", f"{type(exc).__name__}: {exc}")
            return
        if ok is False:
            self._fail(kind, getattr(check, "__name__", kind), (check.__doc__ or kind).strip().splitlines()[0])

    def conclude(self) -> Outcome:
        """At a state where nothing can run: postcondition or deadlock; the outcome."""
        if self.violation is None and not self.finished() and not self.enabled():
            blocked = [f"thread {t} at {a.text()}" for t, a in enumerate(self.pending) if a is not None]
            self._fail("deadlock", "deadlock", "no thread can run: " + "; ".join(blocked))
        if self.violation is None:
            self._check("postcondition", self.program.postcondition)
        final = None
        if self.violation is None:
            final = self._guard("exception", "final state raised", self.program.final_state, self.state)
        return Outcome(tuple(self.steps), self.violation, final)


@attrs.define
class SearchResult:
    """What an exhaustive search found."""

    program: str
    schedules: int = 0  # complete schedules explored (including the failing ones)
    pruned: int = 0  # branches cut by sleep sets or the preemption bound
    violations: int = 0
    shortest: Optional[Outcome] = None
    finals: set = attrs.Factory(set)
    seconds: float = 0.0
    reduced: bool = True
    preemptions: Optional[int] = None

    @property
    def verdict(self) -> str:
        if self.shortest is None:
            return f"PASS: every one of {self.schedules} schedules holds"
        v = self.shortest.violation
        assert v is not None
        return (f"FAIL: {v.kind} {v.name!r} after {len(self.shortest.steps)} steps "
                f"({self.violations} of {self.schedules} schedules fail)")

    def record(self, outcome: Outcome) -> None:
        self.schedules += 1
        if outcome.violation is None:
            self.finals.add(outcome.final)
            return
        self.violations += 1
        if self.shortest is None or _shorter(outcome, self.shortest):
            self.shortest = outcome


def _shorter(a: Outcome, b: Outcome) -> bool:
    return (len(a.steps), [t for t, _ in a.steps]) < (len(b.steps), [t for t, _ in b.steps])


def run_schedule(program: Program, threads: Sequence[int], max_steps: int = 400,
                 strict: bool = True) -> Outcome:
    """Execute `threads` in order (then, when `strict` is False, the lowest enabled thread
    until nothing runs); a scheduled thread that cannot run is an error when strict."""
    ex = Execution(program, max_steps)
    for i, tid in enumerate(threads):
        if tid not in ex.enabled():
            if ex.violation is not None:
                break
            raise ScheduleMismatch(f"step {i}: thread {tid} cannot run here")
        ex.step(tid)
    while not strict and ex.enabled():
        ex.step(ex.enabled()[0])
    return ex.conclude()


class ScheduleMismatch(ValueError):
    """A recorded schedule does not fit the program (it changed, or the trace is wrong)."""


def explore(program: Program, *, reduce: bool = True, preemptions: Optional[int] = None,
            max_steps: int = 400, max_schedules: Optional[int] = None) -> SearchResult:
    """Depth-first search of every schedule (sleep-set reduced unless `reduce` is False)."""
    result = SearchResult(program.name, reduced=reduce, preemptions=preemptions)
    started = time.perf_counter()
    _dfs(program, Execution(program, max_steps), [], {}, None, 0, result, reduce, preemptions,
         max_steps, max_schedules)
    result.seconds = time.perf_counter() - started
    return result


def _dfs(program: Program, ex: Execution, prefix: list[int], sleep: dict[int, Access],
         last: Optional[int], switches: int, result: SearchResult, reduce: bool,
         bound: Optional[int], max_steps: int, cap: Optional[int]) -> None:
    if cap is not None and result.schedules >= cap:
        return
    enabled = ex.enabled()
    if not enabled:
        result.record(ex.conclude())
        return
    sleep = dict(sleep) if reduce else {}
    fresh: Optional[Execution] = ex
    for tid in enabled:
        if tid in sleep:
            result.pruned += 1
            continue
        cost = switches + (1 if last is not None and tid != last and last in enabled else 0)
        if bound is not None and cost > bound:
            result.pruned += 1
            continue
        child = fresh if fresh is not None else _replay(program, prefix, max_steps)
        fresh = None
        access = child.pending[tid]
        assert access is not None
        child_sleep = {u: a for u, a in sleep.items() if not dependent(a, access, program.visible)}
        child.step(tid)
        _dfs(program, child, prefix + [tid], child_sleep, tid, cost, result, reduce, bound,
             max_steps, cap)
        if reduce:
            sleep[tid] = access


def _replay(program: Program, prefix: Sequence[int], max_steps: int) -> Execution:
    ex = Execution(program, max_steps)
    for tid in prefix:
        ex.step(tid)
    return ex


def random_search(program: Program, *, max_examples: int = 300, max_steps: int = 400,
                  seed: int = 0, stats: Optional[dict[str, int]] = None) -> Optional[Outcome]:
    """Hypothesis over schedules: the shrunk failing schedule, or None when none failed.
    `stats` (when given) accumulates the schedules run and the steps they took."""
    from hypothesis import HealthCheck, Phase, find, settings, strategies as st
    from hypothesis.errors import NoSuchExample

    n = len(program.threads)
    choices = st.lists(st.integers(0, max(n - 1, 0)), max_size=max_steps)

    def fails(picks: list[int]) -> bool:
        outcome = _run_choices(program, picks, max_steps)
        if stats is not None:
            stats["schedules"] = stats.get("schedules", 0) + 1
            stats["steps"] = stats.get("steps", 0) + len(outcome.steps)
        return outcome.violation is not None

    config = settings(max_examples=max_examples, database=None, derandomize=False, deadline=None,
                      suppress_health_check=list(HealthCheck),
                      phases=[Phase.generate, Phase.shrink])
    try:
        picks = find(choices, fails, settings=config, random=_seeded(seed))
    except NoSuchExample:
        return None
    return _run_choices(program, picks, max_steps)


def _seeded(seed: int) -> Any:
    import random

    return random.Random(seed)


def _run_choices(program: Program, picks: Iterable[int], max_steps: int) -> Outcome:
    ex = Execution(program, max_steps)
    for pick in picks:
        enabled = ex.enabled()
        if not enabled:
            break
        ex.step(enabled[pick % len(enabled)])
    while ex.enabled():
        ex.step(ex.enabled()[0])
    return ex.conclude()


# --------------------------------------------------------------------------- traces

TRACE_KIND = "schedule"


def schedule_document(race: str, variant: str, mode: str, outcome: Outcome,
                      schedules: Optional[int] = None,
                      program: Optional[Program] = None) -> dict[str, Any]:
    """The trace of one failing schedule, in the meshspec trace format (kind "schedule")."""
    from meshspec.traces import FORMAT, VERSION

    v = outcome.violation
    names = [getattr(t, "__name__", str(i)) for i, t in enumerate(program.threads)] if program else None
    return {
        "format": FORMAT, "version": VERSION, "kind": TRACE_KIND, "component": "races",
        "race": race, "variant": variant, "mode": mode, "schedules_explored": schedules,
        "threads": names,
        "schedule": [{"thread": t, "access": text} for t, text in outcome.steps],
        "failure": None if v is None else attrs.asdict(v),
    }


def check_recorded(outcome: Outcome, recorded: Sequence[Step]) -> Optional[str]:
    """Where a replayed schedule performed a different access than recorded (None: same)."""
    for i, ((tid, text), (rtid, rtext)) in enumerate(zip(outcome.steps, recorded)):
        if (tid, text) != (rtid, rtext):
            return f"step {i}: thread {tid} did {text!r}, the trace recorded {rtext!r}"
    return None
