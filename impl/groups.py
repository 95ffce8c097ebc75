"""Optimized groups: same API and semantics as `model.groups`, composed of the optimized parts.

What it optimizes
-----------------
- Composition: the coordinator is `impl.group_coordinator.GroupCoordinator` (reverse
  index #152, direct member index #158, cached healthy count #167), which routes through
  the optimized `impl.load_balancer.LoadBalancer`; the properties give the impl side
  `impl.scheduler.Scheduler`. Routing an event through a replica or fork group is the
  per-event hot path the seed names (#148, #149, #152 compound there).
- A node multiset (`_nodes`, a Counter of the members' nodes) kept by every add, pop
  and re-placement, so the exclusion set of `spawn` / `scale_to` is not rebuilt from a
  scan of the members.
- Standby replay: while the buffered sequences are strictly increasing (the normal
  case: a caller's causal sequences), `promote` finds the first event past
  `synced_through` by bisection instead of filtering the whole buffer; a buffer that
  ever went out of order falls back to the scan.
- `try_recover` answers at once from the coordinator's cached healthy count when every
  member is healthy (no scan of the members per tick).

The group logic otherwise follows the model's control flow (it subclasses the model
class and overrides the private hooks above); the DaemonRegistry, the values and the
errors are the model's (the registry is the environment both sides share a definition
of). `check_invariants()` recomputes the node multiset and the monotone flag and runs
the coordinator's own check.

Override points for mutants: `_nodes_add` / `_nodes_remove` (the node multiset),
`_to_replay` (the bisection), `try_recover` (the early exit).
"""
from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from impl.group_coordinator import GroupCoordinator as ImplCoordinator
from model.groups import (  # noqa: F401  (re-exported API values)
    FAULT_OPS,
    KINDS,
    MAX_RECOVERIES_PER_TICK,
    DaemonRegistry,
    ForkRecord,
    Placer,
    Snapshot,
    derive_replica_secret,
    entity_id_of,
    group_id_of,
    origin_hash_of,
)
from model.groups import Group as ModelGroup
from model.load_balancer import RequestContext


class Group(ModelGroup):
    """A replica, fork or standby group over the optimized coordinator and balancer."""

    COORDINATOR: type = ImplCoordinator

    def __init__(self, kind: str, seed: bytes, **options: Any) -> None:
        super().__init__(kind, seed, **options)
        self._nodes: Counter[int] = Counter()
        self._monotone = True

    # ---- the node multiset
    def _nodes_add(self, node: int) -> None:
        self._nodes[node] += 1

    def _nodes_remove(self, node: int) -> None:
        self._nodes[node] -= 1
        if not self._nodes[node]:
            del self._nodes[node]

    def _used_nodes(self) -> set[int]:
        return set(self._nodes)

    def _grow(self, n: int, scheduler: Any, registry: DaemonRegistry, placer: Placer) -> None:
        before = len(self._coord.members())
        try:
            super()._grow(n, scheduler, registry, placer)
        finally:
            for m in self._coord.members()[before:]:
                self._nodes_add(m.node_id)

    def _scale(self, n: int, scheduler: Any, registry: DaemonRegistry, placer: Placer) -> None:
        before = self._coord.members()
        try:
            super()._scale(n, scheduler, registry, placer)
        finally:
            for m in before[len(self._coord.members()):]:
                self._nodes_remove(m.node_id)

    def _replace_slot(self, index: int, node: int, registry: DaemonRegistry) -> None:
        old = self._coord.members()[index].node_id
        super()._replace_slot(index, node, registry)
        if self._coord.members()[index].node_id != old:
            self._nodes_remove(old)
            self._nodes_add(node)

    # ---- standby replay by bisection
    def deliver(self, registry: DaemonRegistry, seq: int, ctx: RequestContext = RequestContext()) -> int:
        last = self._buffer[-1] if self._buffer else None
        origin = super().deliver(registry, seq, ctx)
        if last is not None and self._buffer and seq <= last:
            self._monotone = False
        return origin

    def _to_replay(self, synced_through: int) -> list[int]:
        if not self._monotone:
            return super()._to_replay(synced_through)
        return self._buffer[bisect.bisect_right(self._buffer, synced_through):]

    def _promote(self, registry: DaemonRegistry, scheduler: Any, placer: Placer) -> int:
        origin = super()._promote(registry, scheduler, placer)
        self._monotone = True  # the buffer is empty again
        return origin

    def sync_standbys(self, registry: DaemonRegistry) -> int:
        through = super().sync_standbys(registry)
        self._monotone = True
        return through

    # ---- recovery from the cached healthy count
    def try_recover(self, scheduler: Any, registry: DaemonRegistry) -> list[int]:
        if self._coord.healthy_count() == len(self._coord.members()):
            return []
        return super().try_recover(scheduler, registry)

    def check_invariants(self) -> None:
        members = self._coord.members()
        want = Counter(m.node_id for m in members)
        assert self._nodes == want, f"node multiset {dict(self._nodes)}, members say {dict(want)}"
        increasing = all(a < b for a, b in zip(self._buffer, self._buffer[1:]))
        assert not self._monotone or increasing, f"buffer flagged monotone but is {self._buffer}"
        self._coord.check_invariants()
