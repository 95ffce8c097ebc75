"""Optimized scheduler: the same behaviour as `model.scheduler.Scheduler`, with

- an inverted index tag -> node ids maintained on every mutation, so a query
  intersects the posting sets of the required tags (smallest first) instead of
  scanning every node;
- `_query_excluding(tags, exclude)` filtering during the walk instead of
  query-then-filter (#157), used by the drained path, migration targets and member
  selection;
- the migration tag as a module constant (#156) instead of a string formatted per call;
- `pick_best_candidate` as one max pass (#151): `max_by` keeps the later element
  unless the earlier one compares Greater, with the score compared ascending and the
  tie-break inverted (`tie_break_compare(b, a)`), which picks the same winner as the
  model's sort.

Override points (one behaviour each, for mutants): `_admit_score` (NaN/inf filter),
`_score_order`, `_tie_for_max` (the #151 inversion), `_tie` (the three-step
comparator), `_prefers_local` (X-21 drain check), `_locality_exclusion`,
`_local_fast_path` / `_local_not_vetoed` (N-7 / X-16), `_query_excluding`.

Left out: everything the model leaves out (see its docstring).
"""
from __future__ import annotations

import bisect
import math
from itertools import chain
from typing import Container, Iterable, Mapping, Optional, Union

from model.scheduler import (
    SUBPROTOCOL_MIGRATION,
    Artifact,
    CapabilityFilter,
    CapabilitySet,
    NoCandidate,
    PlacementDecision,
    PlacementFilter,
    PlacementReason,
    TieBreakContext,
    _as_caps,
    _first_of,
    check_u64,
    free_resource_for,
    subprotocol_tag,
    to_f32,
)

MIGRATION_TAG = "subprotocol:0x0500"
assert MIGRATION_TAG == subprotocol_tag(SUBPROTOCOL_MIGRATION)

_EMPTY: frozenset[int] = frozenset()
RttTable = Optional[dict[int, int]]


class Scheduler:
    """Daemon placement over an inverted capability index."""

    def __init__(
        self,
        local_node_id: int,
        local_caps: Union[CapabilitySet, Iterable[str]] = CapabilitySet(),
        nodes: Optional[Mapping[int, Union[CapabilitySet, Iterable[str]]]] = None,
    ) -> None:
        self._local_node_id = check_u64("local_node_id", local_node_id)
        self._local_caps = _as_caps(local_caps)
        self._drained = False
        self._caps: dict[int, CapabilitySet] = {}
        self._by_tag: dict[str, set[int]] = {}
        for node_id, caps in (nodes or {}).items():
            self.add_node(node_id, caps)

    # ---- mutations keep the inverted index in step

    def add_node(self, node_id: int, caps: Union[CapabilitySet, Iterable[str]] = CapabilitySet()) -> bool:
        old = self._caps.get(check_u64("node_id", node_id))
        if old is not None:
            self._unindex(node_id, old.tags)
        new = _as_caps(caps)
        self._caps[node_id] = new
        self._index(node_id, new.tags)
        return old is None

    def remove_node(self, node_id: int) -> bool:
        old = self._caps.pop(check_u64("node_id", node_id), None)
        if old is None:
            return False
        self._unindex(node_id, old.tags)
        return True

    def add_tag(self, node_id: int, tag: str) -> bool:
        caps = self._caps.get(check_u64("node_id", node_id))
        if caps is None or caps.has_tag(tag):
            return False
        self._caps[node_id] = caps.add_tag(tag)
        self._index(node_id, (tag,))
        return True

    def remove_tag(self, node_id: int, tag: str) -> bool:
        caps = self._caps.get(check_u64("node_id", node_id))
        if caps is None or not caps.has_tag(tag):
            return False
        self._caps[node_id] = CapabilitySet(caps.tags - {tag})
        self._unindex(node_id, (tag,))
        return True

    def set_local_caps(self, caps: Union[CapabilitySet, Iterable[str]]) -> None:
        self._local_caps = _as_caps(caps)

    def set_drained(self, drained: bool) -> None:
        self._drained = bool(drained)

    def _index(self, node_id: int, tags: Iterable[str]) -> None:
        for tag in tags:
            self._by_tag.setdefault(tag, set()).add(node_id)

    def _unindex(self, node_id: int, tags: Iterable[str]) -> None:
        for tag in tags:
            posting = self._by_tag[tag]
            posting.discard(node_id)
            if not posting:
                del self._by_tag[tag]

    # ---- queries

    @property
    def local_node_id(self) -> int:
        return self._local_node_id

    def is_drained(self) -> bool:
        return self._drained

    def node_caps(self, node_id: int) -> Optional[CapabilitySet]:
        return self._caps.get(node_id)

    def can_run_locally(self, filter: CapabilityFilter) -> bool:
        return filter.matches(self._local_caps)

    def query_candidates(self, filter: CapabilityFilter) -> list[int]:
        return self._query_excluding(filter.require_tags, _EMPTY)

    def _query_excluding(self, tags: Iterable[str], exclude: Container[int]) -> list[int]:
        postings = sorted((self._by_tag.get(t, _EMPTY) for t in set(tags)), key=len)
        if not postings:
            pool: Iterable[int] = self._caps.keys()
        else:
            pool = postings[0].intersection(*postings[1:])
        return sorted(n for n in pool if n not in exclude)

    def pin(self, node_id: int) -> PlacementDecision:
        return PlacementDecision(check_u64("node_id", node_id), PlacementReason.PINNED)

    def find_subprotocol_nodes(self, subprotocol_id: int) -> list[int]:
        return self._query_excluding((subprotocol_tag(subprotocol_id),), _EMPTY)

    def find_migration_targets(self, daemon_filter: CapabilityFilter, source_node: int) -> list[int]:
        check_u64("source_node", source_node)
        tags = chain(daemon_filter.require_tags, (MIGRATION_TAG,))
        return self._query_excluding(tags, (source_node,))

    # ---- placement

    def place(self, filter: CapabilityFilter) -> PlacementDecision:
        return self.place_with_locality(filter, False)

    def place_with_locality(self, filter: CapabilityFilter, drained: Optional[bool] = None) -> PlacementDecision:
        local_drained = self._drained if drained is None else bool(drained)
        if self._prefers_local(filter, local_drained):
            return PlacementDecision(self._local_node_id, PlacementReason.LOCAL_PREFERRED)
        candidates = self._query_excluding(filter.require_tags, self._locality_exclusion(local_drained))
        return _first_of(candidates)

    def _prefers_local(self, filter: CapabilityFilter, drained: bool) -> bool:
        return not drained and self.can_run_locally(filter)

    def _locality_exclusion(self, drained: bool) -> Container[int]:
        return (self._local_node_id,) if drained else _EMPTY

    def place_migration(self, daemon_filter: CapabilityFilter, source_node: int) -> PlacementDecision:
        targets = self.find_migration_targets(daemon_filter, source_node)
        if not targets:
            raise NoCandidate()
        if self._local_node_id != source_node and _contains(targets, self._local_node_id):
            return PlacementDecision(self._local_node_id, PlacementReason.LOCAL_PREFERRED)
        return _first_of(targets)

    def select_migration_target(
        self,
        artifact: Artifact,
        daemon_filter: CapabilityFilter,
        source_node: int,
        placement: PlacementFilter,
        tie_break: TieBreakContext,
    ) -> Optional[int]:
        targets = self.find_migration_targets(daemon_filter, source_node)
        if not targets:
            return None
        if self._local_fast_path(targets, source_node, artifact, placement):
            return self._local_node_id
        return self.pick_best_candidate(targets, artifact, placement, tie_break)

    def _local_fast_path(
        self, targets: list[int], source_node: int, artifact: Artifact, placement: PlacementFilter
    ) -> bool:
        local = self._local_node_id
        return (local != source_node and _contains(targets, local)
                and self._local_not_vetoed(artifact, placement))

    def _local_not_vetoed(self, artifact: Artifact, placement: PlacementFilter) -> bool:
        return placement(self._local_node_id, artifact) is not None

    def place_migration_v2(self, daemon_filter: CapabilityFilter, source_node: int) -> PlacementDecision:
        node = self.select_migration_target(
            Artifact(), daemon_filter, source_node, self._permissive, TieBreakContext())
        if node is None:
            raise NoCandidate()
        if node == self._local_node_id and self._local_node_id != source_node:
            return PlacementDecision(node, PlacementReason.LOCAL_PREFERRED)
        return PlacementDecision(node, PlacementReason.BEST_SCORE)

    def select_member_node(
        self,
        artifact: Artifact,
        requirements: CapabilityFilter,
        exclude: Iterable[int],
        placement: PlacementFilter,
        tie_break: TieBreakContext,
    ) -> Optional[int]:
        candidates = self._query_excluding(requirements.require_tags, frozenset(exclude))
        return self.pick_best_candidate(candidates, artifact, placement, tie_break)

    def select_promotion_target(
        self,
        candidates: Iterable[int],
        artifact: Artifact,
        placement: PlacementFilter,
        tie_break: TieBreakContext,
    ) -> Optional[int]:
        return self.pick_best_candidate(candidates, artifact, placement, tie_break)

    # ---- the max pass (#151)

    def pick_best_candidate(
        self,
        candidates: Iterable[int],
        artifact: Artifact,
        placement: PlacementFilter,
        tie_break: TieBreakContext,
    ) -> Optional[int]:
        rtt = _rtt_table(tie_break)
        best: Optional[int] = None
        best_score = 0.0
        for node in candidates:
            score = self._admit_score(placement(check_u64("candidate", node), artifact))
            if score is None:
                continue
            if best is None or self._max_order(best, best_score, node, score, rtt, tie_break) <= 0:
                best, best_score = node, score
        return best

    def _admit_score(self, raw: Optional[float]) -> Optional[float]:
        """CR-6: a veto (None) or a non-finite score drops the candidate."""
        if raw is None:
            return None
        score = to_f32(raw)
        return score if math.isfinite(score) else None

    def _max_order(
        self, x: int, sx: float, y: int, sy: float, rtt: RttTable, ctx: TieBreakContext
    ) -> int:
        """`max_by` comparator: > 0 keeps the earlier `x`, otherwise `y` replaces it."""
        return self._score_order(sx, sy) or self._tie_for_max(x, y, rtt, ctx)

    def _score_order(self, sx: float, sy: float) -> int:
        """`partial_cmp(..).unwrap_or(Equal)`: incomparable scores compare equal."""
        return 1 if sx > sy else (-1 if sx < sy else 0)

    def _tie_for_max(self, x: int, y: int, rtt: RttTable, ctx: TieBreakContext) -> int:
        return self._tie(y, x, rtt, ctx)

    def tie_break_compare(self, a: int, b: int, ctx: TieBreakContext) -> int:
        return self._tie(a, b, _rtt_table(ctx), ctx)

    def _tie(self, a: int, b: int, rtt: RttTable, ctx: TieBreakContext) -> int:
        """The three steps of `tie_break_compare`, with the RTT table as a dict."""
        if a == b:
            return 0
        if rtt is not None:
            ra, rb = rtt.get(a), rtt.get(b)
            if ra is not None and rb is not None and ra != rb:
                return -1 if ra < rb else 1
            if (ra is None) != (rb is None):
                return -1 if rb is None else 1
        a_free, b_free = free_resource_for(a, ctx), free_resource_for(b, ctx)
        if a_free != b_free:
            return -1 if a_free > b_free else 1
        return -1 if a < b else 1

    # ---- observation and self-check

    def abstract(self) -> tuple:
        nodes = tuple(sorted((n, tuple(sorted(c.tags))) for n, c in self._caps.items()))
        return (self._local_node_id, tuple(sorted(self._local_caps.tags)), self._drained, nodes)

    def check_invariants(self) -> None:
        expected: dict[str, set[int]] = {}
        for node_id, caps in self._caps.items():
            for tag in caps.tags:
                expected.setdefault(tag, set()).add(node_id)
        if expected != self._by_tag:
            stale = {t for t in set(expected) | set(self._by_tag) if expected.get(t) != self._by_tag.get(t)}
            raise AssertionError(f"inverted index differs from the node capability sets for tags {sorted(stale)}")

    def _permissive(self, node_id: int, artifact: Artifact) -> Optional[float]:
        return 1.0 if node_id in self._caps else None


def _rtt_table(ctx: TieBreakContext) -> RttTable:
    return None if ctx.rtt_us is None else dict(ctx.rtt_us)


def _contains(sorted_ids: list[int], node_id: int) -> bool:
    i = bisect.bisect_left(sorted_ids, node_id)
    return i < len(sorted_ids) and sorted_ids[i] == node_id
