"""`meshspec explore`: a breadth-first, fingerprinting model checker over a bounded configuration.

A component offers an `Exploration`: initial `init` argument tuples, a finite alphabet of
concrete steps (rule, args) and named bounds (a depth, optionally with its own inits and
alphabet). From every init, every state reachable within the depth is visited breadth
first, and every edge goes through the same `Lockstep` checks the Hypothesis machines use:
results and errors compared, abstract state and observations compared, every `always`
invariant on both sides, the impl's own `check_invariants()`. The first violation is at
minimal depth, so the counterexample rebuilt from the parent pointers is a shortest one.

Design choices (each measured or argued; numbers from this 2-core machine):

- **A state is the (model subject, impl subject) pair** with their FakeClocks and RNGs.
  States are snapshotted and restored, never rebuilt by replaying their path. Measured on
  a shard_mapper state (4 shards): `copy.deepcopy` of the pair with one memo 956 us,
  `pickle.loads` 167 us (`dumps` 144 us) of the 10 KB blob. Pickle wins by 5.7x, so a
  frontier state is a pickle blob (protocol 5). Subjects must therefore be picklable:
  callbacks are bound methods or `functools.partial`s of them, never lambdas (deepcopy
  would copy a lambda by reference and keep calling the original subject).
  A `random.Random` is 3.7 KB of the 10 KB; the snapshot pickler interns RNG states in a
  per-process table (`copyreg`-style dispatch entry for `random.Random` only, so every
  other object stays on the C fast path) and a blob carries a table index. The table
  keeps at most RNG_TABLE_MAX states: a component that draws on every step gets its later
  RNG states pickled whole instead of growing the table without bound.
- **Restores happen only when a state changed.** Actions are applied in order to one
  working copy of the parent; after an action whose successor has the parent's own
  fingerprint (a query, a saturated clock step) the working copy is kept for the next
  action: by the definition of the view it *is* the parent state. Read-only actions thus
  cost no restore. A failure found on such a continued copy is re-checked on a fresh
  restore; if it needs the self-loop actions before it, they stay in the trace.
- **Identity = a 64-bit fingerprint** (`xxh3_64`) of a deterministic serialisation of the
  view value: the Exploration's `view(model_subject)` when given, else the canonical
  abstract state, the ghost state (subject fields except cls, side, clock, rng, sut,
  last), the clock reading and the RNG state. Serialisation is `repr` when that holds no
  set, dict or address (tuples, numbers, str, enums, attrs values: the same text in every
  process), else `repr` of a frozen form in which set members and dict items are sorted
  by their own serialised text (str hashes are salted per process, so iteration order is
  not); an object whose repr carries an address is refused with a request for a view. `symmetry`, when given, maps the view
  value to its class representative before hashing.
- **The impl is not part of the identity by default.** Every edge compares the impl's
  abstract state with the model's and runs its `check_invariants()`, which recomputes its
  caches from its primary data; so two impl states reached on two paths to one model
  state agree on everything the abstraction and the self-check cover. What neither covers
  (a cache with no self-check, e.g. in a user's `--impl` class) could differ between the
  two paths and a stale-cache bug on the merged path would be missed. `impl_view`
  (optional) adds a function of the impl subject to the identity for such classes, at the
  price of a larger state space.
- **Visited set = fingerprints with parent pointers**: one `dict[int, int]`, fingerprint
  to `parent_fp << 17 | action` (inits: flag bit 16 and the init index). Measured with
  tracemalloc: see `visited_bytes`; the CLI prints bytes per state. A collision of two
  distinct states on 64 bits would prune one (probability ~ n^2 / 2^65; 3e-8 at 1e6).
  Only the frontier holds snapshots, and the children of the last level get none.
- **Lockstep is reused as is**: one `Lockstep` per worker has its `model`/`impl` swapped
  for each edge and its `steps` cut back to one entry, so the list never grows; a
  counterexample is replayed through a fresh `Lockstep` for its steps.
- **Workers** (`workers > 1`, fork): the search is level-synchronous. It runs in-process
  until a frontier holds FORK_AT states per worker, then forks; each process starts with
  every N-th state of that frontier (already in its memory image: no state is pickled
  across processes) and from then on owns the children it produces. Per level, each
  worker reports, per new child fingerprint, the first (parent order, action) that
  produced it; the coordinator dedupes against the global visited set, assigns each new
  fingerprint to the producer of its lowest (parent order, action) and numbers the next
  frontier in that order. Counts, parent pointers and the counterexample are therefore
  the same for any N; fingerprints cross the pipes as int64 arrays.
- **Where the time goes** (cProfile, shard_mapper `medium`: 5,398 states, 19,272 edges):
  `Lockstep.step` 81% (comparing observations 26%, `always` invariants on both sides 25%,
  abstract states 10%, sometimes-witnesses 5%, the rules themselves 8%), restores 9%,
  fingerprints 8% (half of it the component's view), snapshots 1%. 47% of the edges are
  self-loops that skip the restore. Unprofiled, on this machine shared with other jobs:
  ~160 us of Lockstep, 25 us of fingerprint and 45 us of restore per edge, about 1,100
  distinct states/s (3.6 edges per state). The 5,000 states/s goal would need the
  Lockstep checks of one edge under ~50 us: out of reach for these subjects in Python.
- **A failure** stops the search at the level where it is found: the coordinator takes
  the lowest (parent order, action) failure of the level (a worker stops at its first),
  rebuilds the path from the pointers and replays it through a fresh `Lockstep` to get the
  `LockstepFailure` with its steps. States and edges reported with a failure are those of
  the completed levels, so they too are independent of N.
"""
from __future__ import annotations

import copyreg
import io
import json
import multiprocessing
import os
import pickle
import random
import resource
import sys
import time
import tracemalloc
from array import array
from multiprocessing.connection import Connection
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import attrs
import xxhash

from meshspec.etcd_server import ETCD_ENV
from meshspec.lockstep import Component, Lockstep, LockstepFailure, Mutant, Subject, canon

Action = tuple[str, tuple]
ACTION_BITS = 17  # 16 bits of action / init index, one flag bit marking an init
INIT_FLAG = 1 << 16
UNTRACKED = ("cls", "side", "clock", "rng", "sut", "last")
FORK_AT = 32  # frontier states per worker at which the search forks its workers


@attrs.frozen
class Bound:
    """One named bound: a depth, and optionally its own inits and alphabet (else the Exploration's)."""

    depth: int
    inits: tuple[tuple, ...] | None = None
    actions: tuple[tuple[str, tuple], ...] | None = None


@attrs.frozen
class Exploration:
    """A bounded configuration: initial steps, the finite step alphabet, bounds by name.

    - `inits`: argument tuples for the subject's `init` rule (one initial state each).
    - `actions`: the finite alphabet, `(rule, args)` pairs applied in every state.
    - `bounds`: bound name -> `Bound` (or a bare depth); at least `small` (seconds, CI) and
      `large` (minutes, nightly).
    - `view`: the identity of a state (TLC's VIEW), a function of the model `Subject`
      returning a hashable value; None means the default (abstract state, ghost state,
      clock, RNG state).  Leave out what no invariant or future step can observe, e.g.
      an absolute timestamp when only differences to `now` matter.
    - `symmetry`: optional; maps a view value to the canonical representative of its
      class under a permutation of interchangeable ids.
    - `mutant_bounds`: mutant name -> the bound that finds it, or "unreachable: <reason>"
      for a mutant no finite bound of this configuration can reach.
    - `impl_view`: optional; a function of the impl `Subject` added to the identity, for
      impl state that neither `abstract()` nor `check_invariants()` covers.
    """

    inits: tuple[tuple, ...]
    actions: tuple[tuple[str, tuple], ...]
    bounds: dict[str, Any]
    view: Callable[[Any], Any] | None = None
    symmetry: Callable[[Any], Any] | None = None
    mutant_bounds: dict[str, str] = attrs.field(factory=dict)
    impl_view: Callable[[Any], Any] | None = None

    def bound(self, name: str) -> Bound:
        if name not in self.bounds:
            raise KeyError(f"unknown bound {name!r} (known: {', '.join(self.bounds)})")
        b = self.bounds[name]
        return b if isinstance(b, Bound) else Bound(int(b))

    def depth(self, bound: str) -> int:
        return self.bound(bound).depth

    def inits_for(self, bound: str) -> tuple[tuple, ...]:
        return self.bound(bound).inits or self.inits

    def actions_for(self, bound: str) -> tuple[tuple[str, tuple], ...]:
        return self.bound(bound).actions or self.actions


@attrs.frozen
class ExploreResult:
    """What one exploration found (counts are those of completed levels when it failed)."""

    states: int
    edges: int
    depth: int
    seconds: float
    failure: LockstepFailure | None
    reached: frozenset[str] = frozenset()
    unreached: tuple[str, ...] = ()
    visited: dict[int, int] | None = attrs.field(default=None, repr=False, eq=False)
    bytes_per_state: float = 0.0  # the visited set: dict, keys and packed parent pointers


    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds else 0.0

    @property
    def verdict(self) -> str:
        return "ok" if self.failure is None else f"{self.failure.kind}: {self.failure.name}"


# -- deterministic serialisation and fingerprints ------------------------------------------

_ATOMS = (int, str, bool, type(None), bytes, float)


def freeze(value: Any) -> Any:
    """A form of `value` whose repr is the same in every process (sets, dicts sorted)."""
    t = type(value)
    if t in _ATOMS:
        return value
    if t is tuple:
        return tuple(freeze(v) for v in value)
    if t is list:
        return ("<list>", tuple(freeze(v) for v in value))
    if t is dict:
        return ("<dict>", tuple(sorted((repr(freeze(k)), freeze(v)) for k, v in value.items())))
    if t is set or t is frozenset:
        return ("<set>", tuple(sorted(repr(freeze(v)) for v in value)))
    if attrs.has(t):
        return (t.__qualname__, tuple(freeze(getattr(value, a.name)) for a in attrs.fields(t)))
    text = repr(value)
    if " at 0x" in text:
        raise TypeError(f"cannot fingerprint {text[:80]}: its repr holds an address; "
                        "give the Exploration a view that leaves it out")
    return text


def serialise(value: Any) -> str:
    """Deterministic text of a view value.

    Fast path: a repr with no braces (no set, frozenset or dict) and no address is already
    the same in every process (tuples, ints, floats, str, enums, attrs values of those).
    Anything else goes through `freeze`. One value always takes the same path.
    """
    text = repr(value)
    if "{" in text or "frozenset(" in text or " at 0x" in text:
        return repr(freeze(value))
    return text


def fingerprint(value: Any) -> int:
    """The 64-bit fingerprint of a view value (signed, so it packs into an int64 array)."""
    fp = xxhash.xxh3_64_intdigest(serialise(value).encode())
    return fp - (1 << 64) if fp >= 1 << 63 else fp


def default_view(subject: Subject) -> Any:
    """Abstract state, ghost state, clock reading and RNG state of one subject."""
    ghost = {k: v for k, v in vars(subject).items() if k not in UNTRACKED}
    version, words, gauss_next = subject.rng.getstate()
    # hash() of a tuple of ints is the same in every process; hash(None) is not (< 3.12)
    return (canon(subject.abstract()), ghost, subject.clock(), (version, hash(words), gauss_next))


class Identity:
    """Maps a (model, impl) pair to its fingerprint under the Exploration's view and symmetry."""

    def __init__(self, exploration: Exploration) -> None:
        self.view = exploration.view or default_view
        self.symmetry = exploration.symmetry
        self.impl_view = exploration.impl_view

    def __call__(self, model: Subject, impl: Subject) -> int:
        value = self.view(model)
        if self.symmetry is not None:
            value = self.symmetry(value)
        if self.impl_view is not None:
            value = (value, self.impl_view(impl))
        return fingerprint(value)


# -- snapshots -----------------------------------------------------------------------------

_RNG_STATES: list[Any] = []
_RNG_INDEX: dict[Any, int] = {}
RNG_TABLE_MAX = 1024  # ~25 KB per interned state; RNG states past this are pickled whole


def _rng_from_table(index: int) -> random.Random:
    rng = random.Random.__new__(random.Random)  # skips seeding from the OS: 12 us, not 57 us
    rng.setstate(_RNG_STATES[index])
    return rng


def _intern_rng(rng: random.Random) -> tuple:
    state = rng.getstate()
    index = _RNG_INDEX.get(state)
    if index is None:
        if len(_RNG_STATES) >= RNG_TABLE_MAX:  # a component that keeps drawing: no interning
            return rng.__reduce__()
        index = _RNG_INDEX[state] = len(_RNG_STATES)
        _RNG_STATES.append(state)
    return (_rng_from_table, (index,))


_DISPATCH = copyreg.dispatch_table.copy()
_DISPATCH[random.Random] = _intern_rng


def snapshot(pair: tuple[Subject, Subject]) -> bytes:
    """A process-local snapshot of the pair (RNG states interned in this process's table)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(pair)
    return buffer.getvalue()


def restore(blob: bytes) -> tuple[Subject, Subject]:
    return pickle.loads(blob)


# -- the expander: one worker's share of the search ----------------------------------------

@attrs.define
class Edge:
    """A failing edge: the parent's global order, the action, self-loop actions before it."""

    order: int
    action: int
    prefix: tuple[int, ...]
    what: tuple[str, str, str]  # kind, name, message (a LockstepFailure does not pickle)

    @classmethod
    def of(cls, order: int, action: int, prefix: tuple[int, ...], exc: LockstepFailure) -> "Edge":
        return cls(order, action, prefix, (exc.kind, exc.name, exc.message))


@attrs.define
class LevelReport:
    """One worker's answer for one level: candidates as parallel int64 arrays."""

    fps: array
    orders: array
    actions: array
    edges: int
    failure: Edge | None
    reached: set[str]


class Expander:
    """Owns frontier snapshots; expands them; keeps the children the coordinator assigns."""

    def __init__(self, component: Component, impl_cls: type, exploration: Exploration,
                 bound: str, known: dict[int, int]) -> None:
        self.component, self.impl_cls = component, impl_cls
        self.inits = exploration.inits_for(bound)
        self.actions = exploration.actions_for(bound)
        self.identity = Identity(exploration)
        self.ls = Lockstep(component, impl_cls)
        self.ls.steps.append(("init", self.inits[0]))  # stands for whichever init the state came from
        self.frontier: list[tuple[int, int, bytes]] = []
        self.pending: dict[int, bytes] = {}
        self.known = known  # the coordinator's visited set (a forked worker's private copy)
        self.tracks_known = False  # a forked worker adds what it reports to its copy
        self.last_level = False  # children of the last level are never expanded: no snapshots

    def _new(self, fps: array, orders: array, actions: array, fp: int, order: int, action: int,
             pair: tuple[Subject, Subject]) -> None:
        if fp in self.pending or fp in self.known:
            return
        self.pending[fp] = b"" if self.last_level else snapshot(pair)
        if self.tracks_known:
            self.known[fp] = 0
        fps.append(fp)
        orders.append(order)
        actions.append(action)

    def start(self, share: Iterable[int]) -> LevelReport:
        """Build the initial states this worker produces (init index i is action i of order 0)."""
        fps, orders, actions = array("q"), array("q"), array("q")
        for i in share:
            ls = Lockstep(self.component, self.impl_cls)
            try:
                ls.step("init", *self.inits[i])
            except LockstepFailure as exc:
                return LevelReport(fps, orders, actions, 0, Edge.of(0, i, (), exc), set(ls.reached))
            self.ls.reached.update(ls.reached)
            self._new(fps, orders, actions, self.identity(ls.model, ls.impl), 0, i, (ls.model, ls.impl))
        return self._report(fps, orders, actions, 0, None)

    def _report(self, fps: array, orders: array, actions: array, edges: int,
                failure: Edge | None) -> LevelReport:
        return LevelReport(fps, orders, actions, edges, failure, set(self.ls.reached))

    def keep(self, orders: Sequence[int], fps: Sequence[int]) -> None:
        """The coordinator's assignment: these children (in global order) are my next frontier."""
        pending, self.pending = self.pending, {}
        self.frontier = [(order, fp, pending[fp]) for order, fp in zip(orders, fps)]

    def expand(self, last_level: bool = False) -> LevelReport:
        self.last_level = last_level
        fps, orders, actions = array("q"), array("q"), array("q")
        edges = 0
        for order, parent_fp, blob in self.frontier:
            edges_here, failure = self._expand_one(order, parent_fp, blob, fps, orders, actions)
            edges += edges_here
            if failure is not None:
                return self._report(fps, orders, actions, edges, failure)
        self.frontier = []
        return self._report(fps, orders, actions, edges, None)

    def _expand_one(self, order: int, parent_fp: int, blob: bytes, fps: array, orders: array,
                    actions: array) -> tuple[int, Edge | None]:
        ls, loops = self.ls, []
        ls.model, ls.impl = restore(blob)
        for index, (rule, args) in enumerate(self.actions):
            del ls.steps[1:]  # the init step stays: the list never grows
            try:
                ls.step(rule, *args)
            except LockstepFailure as exc:
                return index + 1, self._failing_edge(order, index, blob, loops, exc)
            fp = self.identity(ls.model, ls.impl)
            if fp == parent_fp:
                loops.append(index)
                continue
            self._new(fps, orders, actions, fp, order, index, (ls.model, ls.impl))
            ls.model, ls.impl = restore(blob)
            loops = []
        return len(self.actions), None

    def _failing_edge(self, order: int, index: int, blob: bytes, loops: list[int],
                      exc: LockstepFailure) -> Edge:
        """The failing edge, re-checked from a fresh restore when self-loops preceded it."""
        if loops:
            self.ls.model, self.ls.impl = restore(blob)
            del self.ls.steps[1:]
            try:
                self.ls.step(self.actions[index][0], *self.actions[index][1])
            except LockstepFailure as fresh:
                return Edge.of(order, index, (), fresh)
        return Edge.of(order, index, tuple(loops), exc)


# -- workers over pipes --------------------------------------------------------------------

class ExploreError(Exception):
    """The exploration itself broke (a bad alphabet or view, a subject that cannot be copied)."""


def _serve(expander: Expander, conn: Connection) -> None:
    """A forked worker's loop: ("level", orders, fps, last) | ("stop",).

    An exception is sent back as an ExploreError (one line) instead of killing the pipe.
    """
    expander.tracks_known = True
    while True:
        message = conn.recv()
        if message[0] == "stop":
            conn.close()
            return
        try:
            expander.keep(message[1], message[2])
            report: Any = expander.expand(message[3])
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator, which raises it
            report = ExploreError(f"worker: {type(exc).__name__}: {exc}")
        conn.send(report)


def _received(conns: list[Connection]) -> list[LevelReport]:
    reports = [conn.recv() for conn in conns]
    for report in reports:
        if isinstance(report, ExploreError):
            raise report
    return reports


class Pool:
    """The expanders: in-process until the frontier is wide, then `workers` forked processes.

    Forking at a wide level (FORK_AT states per worker) hands each process every N-th
    state of that frontier, already in its memory image; from then on each keeps its own
    children. Splitting the roots (the inits) instead would tie each worker to one init's
    subtree, however unequal their sizes.
    """

    def __init__(self, expander: Expander, workers: int) -> None:
        self.local = expander
        self.workers = workers
        self.conns: list[Connection] = []
        self.procs: list[Any] = []

    def start(self, inits: int) -> list[LevelReport]:
        return [self.local.start(range(inits))]

    def level(self, assigned: list[tuple[array, array]], last: bool) -> list[LevelReport]:
        if not self.conns and self.workers > 1 and len(assigned[0][0]) >= FORK_AT * self.workers:
            assigned = self._fork(assigned[0])
        if not self.conns:
            self.local.keep(*assigned[0])
            return [self.local.expand(last)]
        for conn, (orders, fps) in zip(self.conns, assigned):
            conn.send(("level", orders, fps, last))
        return _received(self.conns)

    def _fork(self, frontier: tuple[array, array]) -> list[tuple[array, array]]:
        orders, fps = frontier
        ctx = multiprocessing.get_context("fork")
        for _ in range(self.workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(self.local, child), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.local.pending, self.local.frontier = {}, []  # the workers hold them now
        n = self.workers
        return [(orders[w::n], fps[w::n]) for w in range(n)]

    def close(self, abort: bool = False) -> None:
        """Stop idle workers; `abort` (an error or Ctrl-C mid-level) terminates busy ones."""
        for conn in self.conns:
            try:
                if not abort:
                    conn.send(("stop",))
            except OSError:  # a worker already gone (e.g. killed by the same Ctrl-C)
                pass
            conn.close()
        for proc in self.procs:
            if abort:
                proc.terminate()
            proc.join()


# -- the coordinator -----------------------------------------------------------------------

def _merge(reports: list[LevelReport], visited: dict[int, int], frontier_fps: list[int],
           is_init: bool) -> tuple[list[int], list[tuple[array, array]]]:
    """Dedupe candidates, assign each new fingerprint to its lowest (order, action) producer."""
    candidates = sorted(
        (order, action, fp, w)
        for w, r in enumerate(reports) for fp, order, action in zip(r.fps, r.orders, r.actions))
    next_fps: list[int] = []
    assigned = [(array("q"), array("q")) for _ in reports]
    for order, action, fp, w in candidates:
        if fp in visited:
            continue
        parent = 0 if is_init else frontier_fps[order]
        visited[fp] = (parent << ACTION_BITS) | (INIT_FLAG if is_init else 0) | action
        assigned[w][0].append(len(next_fps))
        assigned[w][1].append(fp)
        next_fps.append(fp)
    return next_fps, assigned


def path_to(visited: dict[int, int], fp: int, exploration: Exploration, bound: str) -> list[Action]:
    """The shortest path from an init to `fp`, rebuilt from the parent pointers."""
    actions, inits = exploration.actions_for(bound), exploration.inits_for(bound)
    path: list[Action] = []
    while True:
        packed = visited[fp]
        index = packed & (INIT_FLAG - 1)
        if packed & INIT_FLAG:
            return [("init", inits[index])] + path[::-1]
        path.append(actions[index])
        fp = packed >> ACTION_BITS


def _counterexample(component: Component, impl_cls: type, exploration: Exploration, bound: str,
                    visited: dict[int, int], frontier_fps: list[int], edge: Edge,
                    is_init: bool) -> LockstepFailure:
    """Replay the rebuilt shortest path through a fresh Lockstep: the failure with its steps."""
    actions = exploration.actions_for(bound)
    if is_init:
        path = [("init", exploration.inits_for(bound)[edge.action])]
    else:
        path = path_to(visited, frontier_fps[edge.order], exploration, bound)
        path += [actions[i] for i in edge.prefix] + [actions[edge.action]]
    ls = Lockstep(component, impl_cls)
    try:
        ls.run(path)
    except LockstepFailure as exc:
        return exc
    # not reproduced on replay (a nondeterministic subject): report what the search saw
    return LockstepFailure(*edge.what, len(path) - 1, path)


def _first_failure(reports: list[LevelReport]) -> Edge | None:
    failures = [r.failure for r in reports if r.failure is not None]
    return min(failures, key=lambda e: (e.order, e.action), default=None)


def explore(component: Component, impl_cls: type, exploration: Exploration, depth: int | None = None,
            *, bound: str = "small", workers: int = 1, keep_visited: bool = False) -> ExploreResult:
    """Explore `bound` (depth overridable) with `workers` processes; never raises for a finding."""
    try:
        depth = exploration.depth(bound) if depth is None else depth
    except KeyError as exc:
        raise ExploreError(str(exc.args[0])) from None
    with embedded_kv():
        return _explore(component, impl_cls, exploration, bound, depth, workers, keep_visited)


@contextmanager
def embedded_kv() -> Iterator[None]:
    """Snapshots cannot hold a server connection: a KV-backed component explores on the
    embedded etcd model even when `MESHSPEC_ETCD` is set."""
    saved = os.environ.pop(ETCD_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[ETCD_ENV] = saved


def _explore(component: Component, impl_cls: type, exploration: Exploration, bound: str, depth: int,
             workers: int, keep_visited: bool) -> ExploreResult:
    started = time.perf_counter()
    visited: dict[int, int] = {}
    pool = Pool(Expander(component, impl_cls, exploration, bound, visited), workers)
    try:
        result = _search(component, impl_cls, exploration, bound, depth, pool, visited, started, keep_visited)
    except ExploreError:
        pool.close(abort=True)
        raise
    except Exception as exc:  # noqa: BLE001 - anything but a finding is a broken configuration
        pool.close(abort=True)
        raise ExploreError(f"{type(exc).__name__}: {exc}") from exc
    except BaseException:
        pool.close(abort=True)
        raise
    pool.close()
    return result


def _search(component: Component, impl_cls: type, exploration: Exploration, bound: str, depth: int,
            pool: Pool, visited: dict[int, int], started: float, keep_visited: bool) -> ExploreResult:
    reports = pool.start(len(exploration.inits_for(bound)))
    frontier: list[int] = []
    edges, level, reached = 0, -1, set()  # level: depth of the frontier; -1 before the inits
    while True:
        reached.update(*(r.reached for r in reports))
        failure = _first_failure(reports)
        if failure is not None:
            exc = _counterexample(component, impl_cls, exploration, bound, visited, frontier, failure, level < 0)
            return _result(component, visited, edges, level + 1, started, exc, reached, keep_visited)
        edges += sum(r.edges for r in reports)
        frontier, assigned = _merge(reports, visited, frontier, level < 0)
        if not frontier:
            return _result(component, visited, edges, level, started, None, reached, keep_visited)
        level += 1
        if level >= depth:
            return _result(component, visited, edges, level, started, None, reached, keep_visited)
        reports = pool.level(assigned, level + 1 >= depth)


def _result(component: Component, visited: dict[int, int], edges: int, depth: int, started: float,
            failure: LockstepFailure | None, reached: set[str], keep: bool) -> ExploreResult:
    seconds = time.perf_counter() - started
    witnesses = [i.name for i in component.invariants if i.kind == "sometimes"]
    return ExploreResult(len(visited), edges, depth, seconds, failure,
                         frozenset(reached & set(witnesses)),
                         tuple(n for n in witnesses if n not in reached), visited if keep else None,
                         footprint(visited))


def footprint(visited: dict[int, int]) -> float:
    """Bytes per state of a visited set: the dict's table plus its key and value ints."""
    total = sys.getsizeof(visited) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in visited.items())
    return total / max(len(visited), 1)


def peak_rss_mb() -> float:
    """Peak resident set size of this process and of its finished workers, in MiB (Linux KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, workers) / 1024


def visited_bytes(states: int) -> float:
    """Bytes per state of a visited dict shaped like the search's, measured with tracemalloc."""
    rng = random.Random(1)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = {rng.getrandbits(64) - (1 << 63): (rng.getrandbits(64) - (1 << 63)) << ACTION_BITS | 5
             for _ in range(states)}
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del table
    return used / max(states, 1)


# -- mutants at their bounds, and the recorded results REPORT.md reads ---------------------

RESULTS_PATH = Path(__file__).resolve().parent.parent / "docs" / "explore-results.json"


@attrs.frozen
class MutantRun:
    """One curated mutant explored at its configured bound (or why it is not)."""

    mutant: str
    bound: str
    verdict: str  # "found: <check>" | "missed" | "unreachable: <reason>" | "no bound configured"
    seconds: float | None
    depth: int | None

    @property
    def found(self) -> bool:
        return self.verdict.startswith("found") or self.verdict.startswith("unreachable")

    def record(self) -> dict[str, Any]:
        secs = None if self.seconds is None else round(self.seconds, 1)
        return {"bound": self.bound, "verdict": self.verdict, "seconds": secs, "depth": self.depth}


def run_mutant(component: Component, mutant: Mutant, workers: int = 1) -> MutantRun:
    exploration: Exploration = component.exploration
    bound = exploration.mutant_bounds.get(mutant.name)
    if bound is None:
        return MutantRun(mutant.name, "-", "no bound configured", None, None)
    if bound.startswith("unreachable"):
        return MutantRun(mutant.name, "-", bound, None, None)
    r = explore(component, mutant.cls, exploration, bound=bound, workers=workers)
    verdict = "missed" if r.failure is None else f"found: {r.failure.name}"
    return MutantRun(mutant.name, bound, verdict, r.seconds, r.depth if r.failure else None)


def load_results(path: Path | None = None) -> dict[str, Any]:
    """The recorded mutant results: component -> mutant -> {bound, verdict, seconds, depth}."""
    try:
        return json.loads((path or RESULTS_PATH).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def record_results(component: str, runs: Sequence[MutantRun], path: Path | None = None) -> None:
    """Merge one component's runs into the results file, written atomically."""
    from meshspec.traces import atomic_write

    path = path or RESULTS_PATH
    results = load_results(path)
    results[component] = {run.mutant: run.record() for run in runs}
    atomic_write(path, json.dumps(dict(sorted(results.items())), indent=1, sort_keys=True) + "\n")


BOUNDS_PATH = RESULTS_PATH.with_name("explore-bounds.json")


def bound_record(result: ExploreResult, *, depth: int, workers: int, peak_rss: float,
                 coverage: float | None) -> dict[str, Any]:
    """What REPORT.md shows of one explored bound (measured figures, rounded)."""
    return {"depth": depth, "states": result.states, "edges": result.edges,
            "depth_reached": result.depth, "seconds": round(result.seconds, 1),
            "states_per_second": round(result.states_per_second), "workers": workers,
            "bytes_per_state": round(result.bytes_per_state), "peak_rss_mib": round(peak_rss),
            "coverage": None if coverage is None else round(coverage, 4),
            "verdict": result.verdict, "unreachable": sorted(result.unreached)}


def record_bound(component: str, bound: str, record: dict[str, Any], path: Path | None = None) -> None:
    """Merge one (component, bound) measurement into the bounds file, written atomically."""
    from meshspec.traces import atomic_write

    path = path or BOUNDS_PATH
    results = load_results(path)
    results.setdefault(component, {})[bound] = record
    results[component] = dict(sorted(results[component].items()))
    atomic_write(path, json.dumps(dict(sorted(results.items())), indent=1, sort_keys=True) + "\n")


# -- fuzz coverage of the bounded space ----------------------------------------------------

def fuzz_coverage(component: Component, impl_cls: type, exploration: Exploration, bound: str,
                  visited: dict[int, int], *, profile: str = "ci", seed: int = 0) -> float:
    """The fraction of the bound's reachable states a fuzz run over the same alphabet visits.

    A generic Hypothesis machine: initialize from a sampled init, one rule drawing an
    action index, at most `depth` steps per example, every step through Lockstep; the
    fingerprint of every state it passes through is collected.
    """
    from hypothesis import seed as hypothesis_seed
    from hypothesis import settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

    from meshspec.profiles import settings_for

    inits, actions = exploration.inits_for(bound), exploration.actions_for(bound)
    identity, seen = Identity(exploration), set()

    class AlphabetMachine(RuleBasedStateMachine):
        @initialize(index=st.sampled_from(range(len(inits))))
        def init(self, index: int) -> None:
            self.ls = Lockstep(component, impl_cls)
            self._step("init", inits[index])

        @rule(index=st.sampled_from(range(len(actions))))
        def act(self, index: int) -> None:
            self._step(*actions[index])

        def _step(self, rule_name: str, args: tuple) -> None:
            try:
                self.ls.step(rule_name, *args)
            finally:
                seen.add(identity(self.ls.model, self.ls.impl))

    base = settings_for(profile)
    steps = exploration.depth(bound) + 1  # Hypothesis counts the initialize rule as a step
    with embedded_kv():
        try:
            run_state_machine_as_test(hypothesis_seed(seed)(AlphabetMachine),
                                      settings=settings(base, stateful_step_count=steps, database=None))
        except LockstepFailure:
            pass  # a failing impl: the states seen up to the failure still count
    return len(seen & visited.keys()) / max(len(visited), 1)
