"""Linearizability of concurrent histories against a sequential model.

A history is a set of operations, each with the client that ran it, its name and
arguments, the monotonic times of its invocation and its return, and its outcome:
- `ok`: it returned `result`;
- `info`: indeterminate (a timeout, a lost connection after a write was sent): it may or
  may not have taken effect, and if it did, at any moment after its invocation
  (its return time is +infinity, as Jepsen/Knossos treat `:info` operations);
- `fail`: it certainly took no effect (no write was sent); it is dropped before checking.

The history is linearizable when some total order of the `ok` operations and of a subset
of the `info` ones (1) respects real time — an operation that returned before another was
invoked comes first — and (2) replayed through the sequential model from its initial
state gives every `ok` operation the result it returned.

The search (Wing & Gong 1993, with Lowe's 2017 memoisation, as Porcupine and Knossos do):
the invoke and return events are put in a doubly linked list sorted by time (an invoke
sorts before a return at the same instant: they overlap). Walking the list, an invoke
whose operation the model accepts in the current state is linearized: both its events
are lifted out of the list, the previous (entry, state, linearized set) is pushed, and the
walk restarts at the head. Reaching a return event means its operation could not be
placed before it returned: pop and try the next candidate. A configuration
(linearized set as a bitset, model state key) seen before is never explored again — the
memoisation that makes the search practical. It succeeds once every `ok` operation is
linearized (unlinearized `info` operations never took effect), fails when the stack is
empty at a return event. Model steps are cached per (state key, operation, arguments).

P-compositionality: when the model gives a `partition` function (e.g. the key or shard an
operation touches, for models in which distinct keys do not interact), each partition is
checked on its own — a history is linearizable iff every partition is (Herlihy & Wing's
locality), and the search cost falls from exponential in the whole history's concurrency
to that of each partition.

On failure, `check` reports the failing partition's longest linearizable prefix found,
the operations that could not be placed after it, and a minimal non-linearizable
sub-history: the shortest non-linearizable prefix (by invocation time), whose last
operation is the culprit; then the other operations are dropped (halves first, as ddmin
does, then one at a time) while the sub-history stays non-linearizable, its context (all
but the culprit) stays linearizable, and the operations that made the culprit possible
stay (`minimize`). Its work is bounded (counted in operations searched).

Measured (2-core machine, `meshspec linearize`): 2,000-operation histories of 4 clients of
the etcd coordinator, with kill/pause/expire faults, check in 0.9–3 s (the model step,
a deep copy of the etcd model, dominates); one history of 3 shards took 0.9 s partitioned
and 2.9 s as a whole. A synthetic 2,000-operation, 4-client CAS-register history checks in
0.05–0.3 s; a stale read at its end shrinks to 3 operations in 2.5 s.

Models are `SequentialModel(init, step, key)`: `init()` returns a state, `step(state, op,
args)` returns `(result, new_state)` without mutating `state`, and `key(state)` a hashable
value equal only for states that behave the same (a key that confuses states makes the
memo prune live branches: the tests show the brute-force comparison catching that). An exception raised by `step` is a
`ModelError` naming the operation (a counterexample of the model, not a search result).
`brute_force_linearizable` is the obviously correct exponential reference the tests
compare the search with. Nothing here reads a clock: times are whatever the recorder took.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence

import attrs

INF = float("inf")
OUTCOMES = ("ok", "info", "fail")


class ModelError(Exception):
    """The sequential model raised while stepping an operation."""


class HistoryError(ValueError):
    """A malformed history (unpaired events, a return before its invocation...)."""


@attrs.frozen
class Operation:
    """One operation of a history. `ret` is None for an indeterminate (`info`) one."""

    client: int
    op: str
    args: tuple[Any, ...]
    call: int
    ret: Optional[int]
    result: Any = None
    outcome: str = "ok"
    id: int = 0

    @property
    def indeterminate(self) -> bool:
        return self.outcome == "info"

    @property
    def end(self) -> float:
        return INF if self.ret is None or self.indeterminate else self.ret

    def describe(self, origin: int = 0, unit: int = 1) -> str:
        """One line; times relative to `origin`, divided by `unit` (e.g. 1000 for µs from ns)."""
        args = ", ".join(repr(a) for a in self.args)
        shown = "?" if self.indeterminate else repr(self.result)
        end = "…" if self.indeterminate else str((self.end - origin) // unit)
        return (f"#{self.id} client {self.client}: {self.op}({args}) -> {shown}  "
                f"[{(self.call - origin) // unit}, {end}]")


@attrs.frozen
class Event:
    """An invoke or a return (`ok` / `info` / `fail`) event of one client."""

    kind: str
    client: int
    op: str
    args: tuple[Any, ...]
    time: int
    result: Any = None


def history_from_events(events: Iterable[Event]) -> list[Operation]:
    """Pair each client's invoke with its next return (a client runs one op at a time).

    An invoke left without a return is indeterminate."""
    pending: dict[int, tuple[Event, int]] = {}
    ops: list[Operation] = []
    for ev in events:
        if ev.kind == "invoke":
            if ev.client in pending:
                raise HistoryError(f"client {ev.client} invoked {ev.op} with one pending")
            pending[ev.client] = (ev, len(ops))
            ops.append(Operation(ev.client, ev.op, tuple(ev.args), ev.time, None, None, "info"))
        elif ev.kind in OUTCOMES:
            if ev.client not in pending:
                raise HistoryError(f"client {ev.client} returned {ev.op} without an invoke")
            inv, index = pending.pop(ev.client)
            if ev.time < inv.time:
                raise HistoryError(f"client {ev.client}: {ev.op} returned before it was invoked")
            ret = None if ev.kind == "info" else ev.time
            ops[index] = attrs.evolve(ops[index], ret=ret, result=ev.result, outcome=ev.kind)
        else:
            raise HistoryError(f"unknown event kind {ev.kind!r}")
    return number(ops)


def number(ops: Iterable[Operation]) -> list[Operation]:
    """The operations with ids 0..n-1 in the order given."""
    return [attrs.evolve(op, id=i) for i, op in enumerate(ops)]


@attrs.frozen
class SequentialModel:
    """A sequential specification: see the module docstring."""

    init: Callable[[], Any]
    step: Callable[[Any, str, tuple[Any, ...]], tuple[Any, Any]]
    key: Callable[[Any], Hashable] = lambda state: state
    partition: Optional[Callable[[Operation], Hashable]] = None
    name: str = "model"


@attrs.frozen
class SearchResult:
    linearizable: bool
    configurations: int
    order: tuple[int, ...]        # the linearization found, or the longest partial one
    unplaced: tuple[int, ...]     # on failure: ops invoked but not placeable after `order`


@attrs.frozen
class CheckResult:
    linearizable: bool
    operations: int               # operations checked (failed ones dropped)
    dropped: int                  # `fail` operations dropped
    partitions: int
    configurations: int           # distinct (linearized set, state) configurations explored
    failing_partition: Any = None
    longest_prefix: tuple[Operation, ...] = ()
    unplaced: tuple[Operation, ...] = ()
    minimal: tuple[Operation, ...] = ()

    def explain(self, origin: int = 0, unit: int = 1, unit_name: str = "") -> str:
        """The failure as text: the minimal sub-history, then where the search stopped.
        Times are shown relative to `origin` in `unit`s."""
        if self.linearizable:
            return "linearizable"
        times = f" (times in {unit_name})" if unit_name else ""
        lines = [f"NOT linearizable (partition {self.failing_partition!r}); "
                 f"minimal non-linearizable sub-history ({len(self.minimal)} operations){times}:"]
        lines += ["  " + op.describe(origin, unit) for op in sorted(self.minimal, key=lambda o: o.call)]
        lines.append(f"longest linearizable prefix: {len(self.longest_prefix)} operations; "
                     "cannot be placed after it:")
        lines += ["  " + op.describe(origin, unit) for op in self.unplaced]
        return "\n".join(lines)


# --------------------------------------------------------------------------- the search


StepCache = dict[tuple[Hashable, str, tuple[Any, ...]], tuple[Any, Any, Hashable]]


def search(ops: Sequence[Operation], model: SequentialModel,
           steps: Optional[StepCache] = None) -> SearchResult:
    """Wing–Gong/Lowe search over one partition (ops need not be numbered). `steps` caches
    model steps by (state key, op, args) and may be shared by searches of one model."""
    n = len(ops)
    events = sorted([(op.call, 0, i) for i, op in enumerate(ops)]
                    + [(op.end, 1, i) for i, op in enumerate(ops)])
    head = 2 * n  # sentinel; positions 0..2n-1 are the sorted events, -1 ends the list
    nxt = list(range(1, 2 * n)) + [-1, 0 if n else -1]
    prv = [head] + list(range(0, 2 * n - 1)) + [-1] if n else [-1]
    is_call = [e[1] == 0 for e in events]
    op_of = [e[2] for e in events]
    ret_pos = [0] * n
    for pos, e in enumerate(events):
        if e[1] == 1:
            ret_pos[e[2]] = pos
    steps = {} if steps is None else steps
    seen: set[tuple[int, Hashable]] = set()
    state = model.init()
    state_key = model.key(state)
    linearized, remaining = 0, sum(1 for op in ops if not op.indeterminate)
    stack: list[tuple[int, Any, Hashable, int]] = []
    best: tuple[int, ...] = ()

    def lift(pos: int) -> None:
        for p in (pos, ret_pos[op_of[pos]]):
            nxt[prv[p]] = nxt[p]
            if nxt[p] != -1:
                prv[nxt[p]] = prv[p]

    def unlift(pos: int) -> None:
        for p in (ret_pos[op_of[pos]], pos):
            nxt[prv[p]] = p
            if nxt[p] != -1:
                prv[nxt[p]] = p

    entry = nxt[head]
    while remaining > 0:
        i = op_of[entry]
        if is_call[entry]:
            op = ops[i]
            cached = steps.get((state_key, op.op, op.args))
            if cached is None:
                try:
                    result, new_state = model.step(state, op.op, op.args)
                except Exception as exc:  # noqa: BLE001 - a model failure is reported, named
                    raise ModelError(f"{model.name}: step raised {type(exc).__name__}: {exc} "
                                     f"on {op.describe()}") from exc
                cached = (result, new_state, model.key(new_state))
                steps[(state_key, op.op, op.args)] = cached
            result, new_state, new_key = cached
            if op.indeterminate or result == op.result:
                config = (linearized | (1 << i), new_key)
                if config not in seen:
                    seen.add(config)
                    stack.append((entry, state, state_key, linearized))
                    state, state_key, linearized = new_state, new_key, config[0]
                    remaining -= 0 if op.indeterminate else 1
                    lift(entry)
                    if len(stack) > len(best):
                        best = tuple(op_of[s[0]] for s in stack)
                    entry = nxt[head]
                    continue
            entry = nxt[entry]
        else:
            if not stack:
                return SearchResult(False, len(seen), best, _unplaced(ops, best))
            entry, state, state_key, linearized = stack.pop()
            remaining += 0 if ops[op_of[entry]].indeterminate else 1
            unlift(entry)
            entry = nxt[entry]
    return SearchResult(True, len(seen), tuple(op_of[s[0]] for s in stack), ())


def _unplaced(ops: Sequence[Operation], prefix: tuple[int, ...]) -> tuple[int, ...]:
    """Ops not in the prefix invoked before the first return among them (the candidates)."""
    placed = set(prefix)
    rest = [i for i in range(len(ops)) if i not in placed]
    if not rest:
        return ()
    horizon = min(ops[i].end for i in rest)
    return tuple(i for i in rest if ops[i].call <= horizon and not ops[i].indeterminate)


def linearizable(ops: Sequence[Operation], model: SequentialModel) -> bool:
    return search([op for op in ops if op.outcome != "fail"], model).linearizable


# --------------------------------------------------------------------------- the check


def partitions(ops: Sequence[Operation], model: SequentialModel) -> dict[Hashable, list[Operation]]:
    """Ops grouped by the model's partition function (one group without one)."""
    groups: dict[Hashable, list[Operation]] = {}
    for op in ops:
        groups.setdefault(model.partition(op) if model.partition else None, []).append(op)
    return groups


def check(ops: Sequence[Operation], model: SequentialModel, *, shrink: bool = True,
          shrink_budget: int = 300_000) -> CheckResult:
    """Check a history; on failure also compute the minimal non-linearizable sub-history."""
    kept = [op for op in ops if op.outcome != "fail"]
    groups = partitions(kept, model)
    total = 0
    for name in sorted(groups, key=repr):
        group = sorted(groups[name], key=lambda o: (o.call, o.id))
        steps: StepCache = {}
        res = search(group, model, steps)
        total += res.configurations
        if not res.linearizable:
            minimal = tuple(minimize(group, model, shrink_budget, steps)) if shrink else ()
            return CheckResult(False, len(kept), len(ops) - len(kept), len(groups), total, name,
                               tuple(group[i] for i in res.order),
                               tuple(group[i] for i in res.unplaced), minimal)
    return CheckResult(True, len(kept), len(ops) - len(kept), len(groups), total)


def minimize(ops: Sequence[Operation], model: SequentialModel, budget: int = 300_000,
             steps: Optional[StepCache] = None) -> list[Operation]:
    """A minimal non-linearizable sub-history of a non-linearizable `ops` (see module doc).

    1. The shortest non-linearizable prefix by invocation (bisection, re-checked; a linear
       scan where the history is not monotone) ends with the culprit `c`: the context
       (the prefix without `c`) is linearizable, context + `c` is not.
    2. The support: the longest prefix of the context after which `c` could still be
       placed (e.g. the acquire that made a later "already leased by me" answer legal),
       found by bisection and re-checked (none when that fails).
    3. Chunks of the context, then single operations, are dropped while the sub-history
       stays non-linearizable, its context stays linearizable, and the support left in it
       still lets `c` be placed (ddmin-style halving first, then one at a time to a
       fixpoint). So the kept context is consistent on its own and explains both why `c`
       was once possible and why it no longer is; dropping any one more operation hides
       the violation or breaks that explanation.
    `budget` bounds the work, counted in operations handed to the search; when it runs
    out the current (still non-linearizable) sub-history is returned."""
    steps = {} if steps is None else steps
    ops = sorted(ops, key=lambda o: (o.call, o.id))
    spent = 0

    def lin(sub: list[Operation]) -> bool:
        nonlocal spent
        spent += len(sub) + 1
        return search(sub, model, steps).linearizable

    hi = _last_true(len(ops), lambda k: not lin(ops[:k]), first=True)
    if hi is None:
        hi = next((k for k in range(1, len(ops) + 1) if not lin(ops[:k])), len(ops))
    context, culprit = list(ops[:hi - 1]), ops[hi - 1]
    j = _last_true(len(context), lambda k: lin(context[:k] + [culprit]), first=False)
    support = set(context[:j]) if j is not None else set()

    def keeps(candidate: list[Operation]) -> bool:
        return (not lin(candidate + [culprit]) and lin(candidate)
                and (not support or lin([o for o in candidate if o in support] + [culprit])))

    size = max(1, len(context) // 2)
    while spent < budget:
        changed = False
        i = len(context) - size
        while i > -size and spent < budget:
            candidate = context[:max(i, 0)] + context[i + size:]
            if len(candidate) < len(context) and keeps(candidate):
                context, changed = candidate, True
            i -= size
        if size > 1:
            size //= 2
        elif not changed:
            break
    return context + [culprit]


def _last_true(n: int, pred: Callable[[int], bool], first: bool) -> Optional[int]:
    """Bisection over 0..n for a predicate assumed monotone: with first=True the smallest k
    with pred(k) (assumed false below it), else the largest k with pred(k) (assumed true
    below it). The boundary found is re-checked; None when the assumption fails there."""
    lo, hi = (1, n) if first else (0, n)
    while lo < hi:
        mid = (lo + hi) // 2 if first else (lo + hi + 1) // 2
        if pred(mid) == first:
            hi = mid if first else mid - 1
        else:
            lo = mid + 1 if first else mid
    k = lo
    if first:
        return k if pred(k) and (k == 1 or not pred(k - 1)) else None
    return k if pred(k) and (k == n or not pred(k + 1)) else None


# --------------------------------------------------------------------------- the reference


def brute_force_linearizable(ops: Sequence[Operation], model: SequentialModel) -> bool:
    """Every subset of the `info` ops, every real-time-respecting order: exponential, obvious."""
    ops = [op for op in ops if op.outcome != "fail"]
    sure = [op for op in ops if not op.indeterminate]
    maybe = [op for op in ops if op.indeterminate]
    for k in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, k):
            for order in itertools.permutations(sure + list(chosen)):
                if _respects_real_time(order) and _replays(order, model):
                    return True
    return False


def _respects_real_time(order: Sequence[Operation]) -> bool:
    return all(not later.end < earlier.call
               for a, earlier in enumerate(order) for later in order[a + 1:])


def _replays(order: Sequence[Operation], model: SequentialModel) -> bool:
    state = model.init()
    for op in order:
        result, state = model.step(state, op.op, op.args)
        if not op.indeterminate and result != op.result:
            return False
    return True


# --------------------------------------------------------------------------- small models


def _register_step(state: Any, op: str, args: tuple[Any, ...]) -> tuple[Any, Any]:
    if op == "read":
        return state, state
    if op == "write":
        return None, args[0]
    raise ValueError(f"unknown register op {op!r}")


def _cas_register_step(state: Any, op: str, args: tuple[Any, ...]) -> tuple[Any, Any]:
    if op == "cas":
        expected, new = args
        return (True, new) if state == expected else (False, state)
    return _register_step(state, op, args)


def register_model(initial: Any = 0) -> SequentialModel:
    """A read/write register (reads return the value, writes return None)."""
    return SequentialModel(lambda: initial, _register_step, name="register")


def cas_register_model(initial: Any = 0) -> SequentialModel:
    """A read/write/compare-and-set register (`cas(expected, new)` returns whether it swapped)."""
    return SequentialModel(lambda: initial, _cas_register_step, name="cas-register")


def _kv_step(state: Any, op: str, args: tuple[Any, ...]) -> tuple[Any, Any]:
    key, rest = args[0], args[1:]
    values = dict(state)
    result, values[key] = _cas_register_step(values.get(key, 0), op, rest)
    return result, tuple(sorted(values.items()))


def kv_model() -> SequentialModel:
    """Independent CAS registers by key (args[0]); partitioned by key."""
    return SequentialModel(lambda: (), _kv_step, partition=lambda op: op.args[0], name="kv")
