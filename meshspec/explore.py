"""`meshspec explore`: exhaustive breadth-first exploration of a bounded configuration.

A component offers an `Exploration`: a few `init` argument tuples and a finite list of
concrete steps (rule, args). Starting from each init, every reachable state up to the
depth bound is visited breadth-first; the state key is the model subject's canonical
abstract state plus its ghost state. Every edge is run through the same `Lockstep` the
machines use, so every invariant is checked in every reachable state and the impl is
compared along every edge. The first violation found is at minimal depth, so its path is
a shortest counterexample.

Subjects hold callbacks and clocks that cannot be copied safely, so a state is rebuilt
by replaying its path from the initial step: simple, and cheap at these bounds.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

import attrs

from meshspec.lockstep import Component, Lockstep, LockstepFailure, canon


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
    """

    inits: tuple[tuple, ...]
    actions: tuple[tuple[str, tuple], ...]
    bounds: dict[str, Any]
    view: Callable[[Any], Any] | None = None
    symmetry: Callable[[Any], Any] | None = None
    mutant_bounds: dict[str, str] = attrs.field(factory=dict)

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
    states: int
    edges: int
    depth: int
    seconds: float
    failure: LockstepFailure | None

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds else 0.0


def state_key(ls: Lockstep) -> Any:
    subject = ls.model
    ghost = {k: v for k, v in vars(subject).items()
             if k not in ("cls", "side", "clock", "rng", "sut", "last")}
    return canon((subject.abstract(), subject.clock(), repr(sorted(ghost.items(), key=lambda kv: kv[0]))))


def explore(component: Component, impl_cls: type, exploration: Exploration, depth: int) -> ExploreResult:
    started = time.perf_counter()
    seen: set = set()
    queue: deque[tuple[tuple[str, tuple], ...]] = deque()
    edges = 0
    for init in exploration.inits:
        path = (("init", init),)
        ls = Lockstep(component, impl_cls)
        try:
            ls.run(path)
        except LockstepFailure as exc:
            return ExploreResult(len(seen), edges, 0, time.perf_counter() - started, exc)
        key = state_key(ls)
        if key not in seen:
            seen.add(key)
            queue.append(path)
    reached_depth = 0
    while queue:
        path = queue.popleft()
        if len(path) - 1 >= depth:
            continue
        for action in exploration.actions:
            edges += 1
            ls = Lockstep(component, impl_cls)
            try:
                ls.run(path + (action,))
            except LockstepFailure as exc:
                return ExploreResult(len(seen), edges, len(path), time.perf_counter() - started, exc)
            key = state_key(ls)
            if key not in seen:
                seen.add(key)
                queue.append(path + (action,))
                reached_depth = max(reached_depth, len(path))
    return ExploreResult(len(seen), edges, reached_depth, time.perf_counter() - started, None)
