"""Curated mutants of scheduler: the historical bugs of semantics.md §2.6 items 18-24, and the index done wrong.

The Component in `properties/scheduler.py` gets `MUTANTS` from here through `meshspec.registry`.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from impl.scheduler import Scheduler as ImplScheduler
from impl.scheduler import _EMPTY, MIGRATION_TAG
from meshspec.lockstep import mutant
from model import scheduler as M
from model.scheduler import Artifact, CapabilityFilter, TieBreakContext, to_f32


class NanScoreWins(ImplScheduler):
    """CR-6 (item 18): NaN scores are not dropped; NaN compares equal to everything in the max pass."""

    def _admit_score(self, raw: Optional[float]) -> Optional[float]:
        if raw is None:
            return None
        score = to_f32(raw)
        return score if not math.isinf(score) else None


class MaxTieBreakNotInverted(ImplScheduler):
    """#151 (item 19): the max pass uses the sort's tie-break unchanged, so the tie-break-worst node wins."""

    def _tie_for_max(self, x: int, y: int, rtt: Any, ctx: TieBreakContext) -> int:
        return self._tie(x, y, rtt, ctx)


class NoLocalFastPath(ImplScheduler):
    """N-7 (item 21): select_migration_target has no local fast path; the smallest remote id wins."""

    def _local_fast_path(self, targets: list[int], source_node: int, artifact: Artifact, placement: Any) -> bool:
        return False


class FastPathIgnoresVeto(ImplScheduler):
    """X-16 (item 22): the local fast path ignores a filter that vetoes the local node."""

    def _local_not_vetoed(self, artifact: Artifact, placement: Any) -> bool:
        return True


class LocalityIgnoresDrain(ImplScheduler):
    """X-21 (item 23): LocalPreferred ignores the drained flag."""

    def _prefers_local(self, filter: CapabilityFilter, drained: bool) -> bool:
        return self.can_run_locally(filter)


class QueryExcludingIgnoresExclude(ImplScheduler):
    """#157 done wrong: query_excluding filters nothing (source, drained local, placed members come back)."""

    def _query_excluding(self, tags: Any, exclude: Any) -> list[int]:
        return super()._query_excluding(tags, _EMPTY)


class IndexStaleOnTagRemoval(ImplScheduler):
    """Inverted index done wrong: remove_tag leaves the node in the tag's posting list."""

    def remove_tag(self, node_id: int, tag: str) -> bool:
        caps = self._caps.get(M.check_u64("node_id", node_id))
        if caps is None or not caps.has_tag(tag):
            return False
        self._caps[node_id] = M.CapabilitySet(caps.tags - {tag})
        return True


class IndexStaleOnNodeRemoval(ImplScheduler):
    """Inverted index done wrong: remove_node forgets the node's posting lists."""

    def remove_node(self, node_id: int) -> bool:
        return self._caps.pop(M.check_u64("node_id", node_id), None) is not None


class IndexStaleOnReplace(ImplScheduler):
    """Inverted index done wrong: add_node over an existing node keeps the old tags indexed."""

    def add_node(self, node_id: int, caps: Any = M.CapabilitySet()) -> bool:
        is_new = M.check_u64("node_id", node_id) not in self._caps
        new = M._as_caps(caps)
        self._caps[node_id] = new
        self._index(node_id, new.tags)
        return is_new


class MigrationTagUnpadded(ImplScheduler):
    """#156 done wrong: the migration constant written as "subprotocol:0x500" (no zero padding)."""

    def find_migration_targets(self, daemon_filter: CapabilityFilter, source_node: int) -> list[int]:
        M.check_u64("source_node", source_node)
        tags = (*daemon_filter.require_tags, MIGRATION_TAG.replace("0x0500", "0x500"))
        return self._query_excluding(tags, (source_node,))


PICK = ("vetoed_or_non_finite_never_wins", "winner_has_greatest_finite_score", "*result")
INDEX = ("queries_match_a_scan", "check_invariants", "*result")
MUTANTS = (
    mutant("nan_score_wins", NanScoreWins, "CR-6 (§2.6 item 18): NaN scores from FFI filters not dropped", PICK),
    mutant("max_tie_break_not_inverted", MaxTieBreakNotInverted,
           "#151 (§2.6 item 19): max_by with the sort's tie-break picks the tie-break-worst node",
           ("winner_has_greatest_finite_score", "*result")),
    mutant("no_local_fast_path", NoLocalFastPath,
           "N-7 / CR-21 (§2.6 items 20-21): no local fast path in select_migration_target",
           ("migration_prefers_unvetoed_local", "*result")),
    mutant("fast_path_ignores_veto", FastPathIgnoresVeto,
           "X-16 (§2.6 item 22): the local fast path ignored a veto on local",
           ("vetoed_or_non_finite_never_wins", "*result")),
    mutant("locality_ignores_drain", LocalityIgnoresDrain,
           "X-21 (§2.6 item 23): LocalPreferred ignored the drained state",
           ("drained_local_never_chosen", "*result")),
    mutant("query_excluding_ignores_exclude", QueryExcludingIgnoresExclude,
           "#157 done wrong: query_excluding filtered nothing",
           ("queries_match_a_scan", "migration_source_never_a_target", "drained_local_never_chosen",
            "*result", "find_migration_targets observation")),
    mutant("index_stale_on_tag_removal", IndexStaleOnTagRemoval,
           "inverted index done wrong: not updated on tag removal", INDEX),
    mutant("index_stale_on_node_removal", IndexStaleOnNodeRemoval,
           "inverted index done wrong: not updated on node removal", INDEX),
    mutant("index_stale_on_replace", IndexStaleOnReplace,
           "inverted index done wrong: old tags kept when add_node replaces a node", INDEX),
    mutant("migration_tag_unpadded", MigrationTagUnpadded,
           "#156 (§2.6 item 24) done wrong: the constant migration tag differs from subprotocol:0x0500",
           ("queries_match_a_scan", "*result", "find_migration_targets observation")),
)
