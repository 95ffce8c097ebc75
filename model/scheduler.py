"""Reference model of the net-mesh 0.25.0 compute scheduler (`compute/scheduler.rs`)
and of the placement tie-breaker (`behavior/placement.rs::tie_break_compare`).

What is modelled
- A capability index: node id (u64) -> capability set. Only capability *tags* are
  kept: the 0.25.0 scheduler paths exercised here (migration tag, subprotocol tags,
  `require_tag` filters) only ever narrow by tags, and a tag such as "hardware.gpu"
  expresses the hardware requirements the Rust tests use.
- `CapabilityFilter` (all required tags must be present), `Scheduler` with every
  placement entry point of 0.25.0, the PlacementFilter as an injected scoring function
  `(node_id, artifact) -> float | None` (None = hard veto) and the three-step
  tie-break (RTT, free resource, smallest node id).
- Queries scan every node and answer in ascending id order (0.25.0's
  `capability_bridge::find_nodes_matching` sorts).

Semantic decisions where the sources are silent
- Scores cross an `f32` boundary in Rust (`Option<f32>`), so every score is rounded to
  the nearest f32 first (`to_f32`): a finite double beyond the f32 range becomes
  +-inf and is dropped; two doubles that round to the same f32 tie.
- The local fast path of `select_migration_target` asks only `is_some()` of the local
  score, so a local NaN score is *not* a veto there (faithful to 0.25.0).
- The RTT table is optional integer microseconds per node; a node missing from the
  table is "unknown" and sorts after every known one. `free_resource_for` is the
  0.25.0 stub returning 0 for every node, so step 2 never decides.
- `set_drained` records the local node's drain flag (the runtime owns it in Rust);
  `place_with_locality(filter)` without an explicit flag uses it, an explicit flag
  overrides it, and `place` keeps 0.25.0's "never drained" behaviour.
- Mutations (`add_node` replaces the node's whole capability set like a new
  announcement; tag edits on an unknown node are no-ops returning False) exist for
  the property machine; the Rust index is fed by announcements instead.
- Node ids outside u64 and subprotocol ids outside u16 raise `ValueError` (Rust's
  types make them unrepresentable).

Left out: the Fold/announcement machinery, TTL expiry, GPU/model/tool/memory
requirements, `IndexUnavailable` (never produced), `StandardPlacement` axes.
"""
from __future__ import annotations

import enum
import functools
import math
import struct
from typing import Callable, Iterable, Mapping, Optional, Union

import attrs

U16_MAX = 0xFFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
SUBPROTOCOL_MIGRATION = 0x0500


def check_u64(name: str, value: int) -> int:
    """Reject values a Rust `u64` could not hold."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U64_MAX:
        raise ValueError(f"{name} must be a u64, got {value!r}")
    return value


def check_u16(name: str, value: int) -> int:
    """Reject values a Rust `u16` could not hold."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U16_MAX:
        raise ValueError(f"{name} must be a u16, got {value!r}")
    return value


def to_f32(score: float) -> float:
    """Round a score to the nearest f32 (finite overflow becomes +-inf, NaN stays NaN)."""
    try:
        return struct.unpack("<f", struct.pack("<f", score))[0]
    except OverflowError:
        return math.copysign(math.inf, score)


def subprotocol_tag(subprotocol_id: int) -> str:
    """The capability tag a node advertises for a subprotocol (`subprotocol:0x%04x`)."""
    return f"subprotocol:{check_u16('subprotocol_id', subprotocol_id):#06x}"


# --------------------------------------------------------------------------- errors

class SchedulerError(Exception):
    """Base of the scheduler errors; `str()` is the Rust Display text."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == other.args  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.args))


class NoCandidate(SchedulerError):
    def __init__(self) -> None:
        super().__init__("no nodes match capability requirements")


class IndexUnavailable(SchedulerError):
    def __init__(self) -> None:
        super().__init__("capability index unavailable")


# --------------------------------------------------------------------------- values

class PlacementReason(enum.Enum):
    ONLY_CANDIDATE = "OnlyCandidate"
    LOCAL_PREFERRED = "LocalPreferred"
    FIRST_MATCH = "FirstMatch"
    PINNED = "Pinned"
    BEST_SCORE = "BestScore"


class ResourceAxis(enum.Enum):
    COMPUTE = "Compute"
    STORAGE = "Storage"
    BOTH = "Both"


@attrs.frozen
class PlacementDecision:
    node_id: int
    reason: PlacementReason


@attrs.frozen
class CapabilitySet:
    tags: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)

    def add_tag(self, tag: str) -> CapabilitySet:
        return CapabilitySet(self.tags | {tag})

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags


@attrs.frozen
class CapabilityFilter:
    """All `require_tags` must be present on a node for it to match."""

    require_tags: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)

    def require_tag(self, tag: str) -> CapabilityFilter:
        return CapabilityFilter(self.require_tags | {tag})

    def matches(self, caps: CapabilitySet) -> bool:
        return self.require_tags <= caps.tags


@attrs.frozen
class Artifact:
    """What is being placed; passed through to the scoring function untouched."""

    daemon_id: bytes = bytes(32)


PlacementFilter = Callable[[int, Artifact], Optional[float]]


def _pairs(table: Union[Mapping[int, object], Iterable[tuple[int, object]], None]) -> Optional[tuple]:
    if table is None:
        return None
    items = table.items() if isinstance(table, Mapping) else table
    return tuple(sorted(dict(items).items()))


@attrs.frozen
class TieBreakContext:
    """Inputs of `tie_break_compare`: an optional RTT table (node -> microseconds)."""

    rtt_us: Optional[tuple[tuple[int, int], ...]] = attrs.field(default=None, converter=_pairs)
    resource_axis: ResourceAxis = ResourceAxis.COMPUTE

    def rtt_of(self, node_id: int) -> Optional[int]:
        for node, rtt in self.rtt_us or ():
            if node == node_id:
                return rtt
        return None


@attrs.frozen
class ScoreTable:
    """A PlacementFilter given as a table: node -> score (None = veto); `default` for
    nodes not in the table. A plain value so traces can record it."""

    scores: tuple[tuple[int, Optional[float]], ...] = attrs.field(default=(), converter=_pairs)
    default: Optional[float] = None
    _lookup: dict = attrs.field(init=False, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_lookup", dict(self.scores))

    def __call__(self, node_id: int, artifact: Artifact) -> Optional[float]:
        return self._lookup.get(node_id, self.default)


def free_resource_for(node_id: int, ctx: TieBreakContext) -> int:
    """0.25.0 stub: every node has 0 free resource, so tie-break step 2 never decides."""
    return 0


def _cmp(a: float, b: float) -> int:
    """Three-way comparison (Rust `Ord::cmp` as -1 / 0 / 1) of ids, RTTs or f32 scores.

    post: __return__ in (-1, 0, 1)
    post: _cmp(b, a) == -__return__
    """
    return (a > b) - (a < b)  # type: ignore[operator]


def rtt_step(a_rtt: Optional[int], b_rtt: Optional[int]) -> int:
    """Tie-break step 1: the smaller known RTT wins, a known RTT beats an unknown one; 0 when
    it does not decide (both unknown, or equal).

    post: __return__ in (-1, 0, 1)
    post: rtt_step(b_rtt, a_rtt) == -__return__
    post: (__return__ == 0) == (a_rtt == b_rtt)
    post: a_rtt is None or b_rtt is not None or __return__ == -1
    """
    if a_rtt is not None and b_rtt is not None and a_rtt != b_rtt:
        return _cmp(a_rtt, b_rtt)
    if a_rtt is not None and b_rtt is None:
        return -1
    if a_rtt is None and b_rtt is not None:
        return 1
    return 0


def tie_break_compare(a: int, b: int, ctx: TieBreakContext) -> int:
    """-1 when `a` is better than `b`, 1 when worse, 0 when a == b.

    pre: all(isinstance(n, int) and isinstance(r, int) for n, r in ctx.rtt_us or ())
    post: __return__ in (-1, 0, 1)
    post: (__return__ == 0) == (a == b)
    post: tie_break_compare(b, a, ctx) == -__return__
    """
    if a == b:
        return 0
    if ctx.rtt_us is not None:
        by_rtt = rtt_step(ctx.rtt_of(a), ctx.rtt_of(b))
        if by_rtt != 0:
            return by_rtt
    a_free, b_free = free_resource_for(a, ctx), free_resource_for(b, ctx)
    if a_free != b_free:
        return _cmp(b_free, a_free)
    return _cmp(a, b)


def _as_caps(caps: Union[CapabilitySet, Iterable[str]]) -> CapabilitySet:
    return caps if isinstance(caps, CapabilitySet) else CapabilitySet(frozenset(caps))


# --------------------------------------------------------------------------- scheduler

class Scheduler:
    """Daemon placement over a capability index; full scans everywhere."""

    def __init__(
        self,
        local_node_id: int,
        local_caps: Union[CapabilitySet, Iterable[str]] = CapabilitySet(),
        nodes: Optional[Mapping[int, Union[CapabilitySet, Iterable[str]]]] = None,
    ) -> None:
        self._local_node_id = check_u64("local_node_id", local_node_id)
        self._local_caps = _as_caps(local_caps)
        self._drained = False
        self._nodes: dict[int, CapabilitySet] = {}
        for node_id, caps in (nodes or {}).items():
            self.add_node(node_id, caps)

    # ---- mutations (the capability index and the local node's state)

    def add_node(self, node_id: int, caps: Union[CapabilitySet, Iterable[str]] = CapabilitySet()) -> bool:
        """Insert or replace a node's capability set; True when the node is new."""
        is_new = check_u64("node_id", node_id) not in self._nodes
        self._nodes[node_id] = _as_caps(caps)
        return is_new

    def remove_node(self, node_id: int) -> bool:
        return self._nodes.pop(check_u64("node_id", node_id), None) is not None

    def add_tag(self, node_id: int, tag: str) -> bool:
        caps = self._nodes.get(check_u64("node_id", node_id))
        if caps is None or caps.has_tag(tag):
            return False
        self._nodes[node_id] = caps.add_tag(tag)
        return True

    def remove_tag(self, node_id: int, tag: str) -> bool:
        caps = self._nodes.get(check_u64("node_id", node_id))
        if caps is None or not caps.has_tag(tag):
            return False
        self._nodes[node_id] = CapabilitySet(caps.tags - {tag})
        return True

    def set_local_caps(self, caps: Union[CapabilitySet, Iterable[str]]) -> None:
        self._local_caps = _as_caps(caps)

    def set_drained(self, drained: bool) -> None:
        self._drained = bool(drained)

    # ---- queries

    @property
    def local_node_id(self) -> int:
        return self._local_node_id

    def is_drained(self) -> bool:
        return self._drained

    def node_caps(self, node_id: int) -> Optional[CapabilitySet]:
        return self._nodes.get(node_id)

    def can_run_locally(self, filter: CapabilityFilter) -> bool:
        return filter.matches(self._local_caps)

    def query_candidates(self, filter: CapabilityFilter) -> list[int]:
        return sorted(n for n, caps in self._nodes.items() if filter.matches(caps))

    def pin(self, node_id: int) -> PlacementDecision:
        return PlacementDecision(check_u64("node_id", node_id), PlacementReason.PINNED)

    def find_subprotocol_nodes(self, subprotocol_id: int) -> list[int]:
        return self.query_candidates(CapabilityFilter().require_tag(subprotocol_tag(subprotocol_id)))

    def find_migration_targets(self, daemon_filter: CapabilityFilter, source_node: int) -> list[int]:
        check_u64("source_node", source_node)
        combined = daemon_filter.require_tag(subprotocol_tag(SUBPROTOCOL_MIGRATION))
        return [n for n in self.query_candidates(combined) if n != source_node]

    # ---- placement

    def place(self, filter: CapabilityFilter) -> PlacementDecision:
        return self.place_with_locality(filter, False)

    def place_with_locality(self, filter: CapabilityFilter, drained: Optional[bool] = None) -> PlacementDecision:
        local_drained = self._drained if drained is None else bool(drained)
        if not local_drained and self.can_run_locally(filter):
            return PlacementDecision(self._local_node_id, PlacementReason.LOCAL_PREFERRED)
        candidates = self.query_candidates(filter)
        if local_drained:
            candidates = [n for n in candidates if n != self._local_node_id]
        return _first_of(candidates)

    def place_migration(self, daemon_filter: CapabilityFilter, source_node: int) -> PlacementDecision:
        targets = self.find_migration_targets(daemon_filter, source_node)
        if not targets:
            raise NoCandidate()
        if self._local_node_id != source_node and self._local_node_id in targets:
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
        local = self._local_node_id
        if local != source_node and local in targets and placement(local, artifact) is not None:
            return local
        return self.pick_best_candidate(targets, artifact, placement, tie_break)

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
        excluded = set(exclude)
        candidates = [n for n in self.query_candidates(requirements) if n not in excluded]
        return self.pick_best_candidate(candidates, artifact, placement, tie_break)

    def select_promotion_target(
        self,
        candidates: Iterable[int],
        artifact: Artifact,
        placement: PlacementFilter,
        tie_break: TieBreakContext,
    ) -> Optional[int]:
        return self.pick_best_candidate(candidates, artifact, placement, tie_break)

    def pick_best_candidate(
        self,
        candidates: Iterable[int],
        artifact: Artifact,
        placement: PlacementFilter,
        tie_break: TieBreakContext,
    ) -> Optional[int]:
        """Drop vetoes and non-finite scores, sort best-first, take the first."""
        scored = []
        for node in candidates:
            raw = placement(check_u64("candidate", node), artifact)
            score = None if raw is None else to_f32(raw)
            if score is not None and math.isfinite(score):
                scored.append((node, score))

        def best_first(x: tuple[int, float], y: tuple[int, float]) -> int:
            return _cmp(y[1], x[1]) or self.tie_break_compare(x[0], y[0], tie_break)

        scored.sort(key=functools.cmp_to_key(best_first))
        return scored[0][0] if scored else None

    def tie_break_compare(self, a: int, b: int, ctx: TieBreakContext) -> int:
        return tie_break_compare(a, b, ctx)

    # ---- observation

    def abstract(self) -> tuple:
        nodes = tuple(sorted((n, tuple(sorted(c.tags))) for n, c in self._nodes.items()))
        return (self._local_node_id, tuple(sorted(self._local_caps.tags)), self._drained, nodes)

    def check_invariants(self) -> None:
        """The model keeps no derived state."""

    def _permissive(self, node_id: int, artifact: Artifact) -> Optional[float]:
        """`LegacyPlacement::permissive`: 1.0 for every indexed node, veto otherwise."""
        return 1.0 if node_id in self._nodes else None


def _first_of(candidates: list[int]) -> PlacementDecision:
    if not candidates:
        raise NoCandidate()
    reason = PlacementReason.ONLY_CANDIDATE if len(candidates) == 1 else PlacementReason.FIRST_MATCH
    return PlacementDecision(candidates[0], reason)
