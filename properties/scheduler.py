"""Properties of the compute scheduler: the subject harness, invariants, lockstep machine, exploration.

The harness (`SchedulerSubject`) wraps one Scheduler (model or impl) and builds every
filter, scoring table and RTT table from primitives the machine draws: a filter is a
tuple of required tags, a `PlacementFilter` a tuple of (node, score-or-None) pairs plus a
default score (a `ScoreTable`), an RTT table a tuple of (node, microseconds) pairs or None
(no RTT lookup). Node ids that are not u64 make both sides raise `ValueError`; the
harness answers those as `("ValueError", message)` so the two sides are compared.

Ghost state (what the invariants read); candidate lists are recomputed from the rule's
inputs and a scan of the abstract node list, never taken from the scheduler's queries:
- `pick`: the last scored choice (pick_best_candidate, select_member_node,
  select_promotion_target, and the migration paths when the local fast path does not
  apply): the candidate list, the table, the tie-break context and the winner;
- `fast`: whether the local node was eligible for the migration fast path (≠ source, a
  target, not vetoed) and what was answered;
- `locality`: the effective drain flag of the last place/place_with_locality and the
  chosen node; `migration`: the source and the nodes a migration operation answered.

What the machine reaches: a nine-node id space (0, small ids, 0x1111/0x2222, u64::MAX−1,
u64::MAX) carrying sets of five tags (a, b, gpu, the migration and the causal subprotocol
tags), node replacement, tag edits on unknown nodes, the local node inside and outside the
index and as a (vetoed, NaN-scored) migration target, explicit and recorded drain flags,
scores None/NaN/±inf/beyond f32/ties that only tie as f32/−0.0, RTT tables with gaps and
ties, duplicate and non-u64 candidates, subprotocol ids outside u16. Boundaries
(`meshspec.strategies.around`, see `score_edges`): each score of a table is aimed at 0, 1,
f32::MAX and the f32 overflow edge and at the scores drawn before it (exactly, one f32 ulp
and one double ulp below or above), RTTs at the RTTs drawn before them (ties, ±1), tie-break
ids at the other id (equal, ±1), subprotocol ids at 0, u16::MAX and the two tags' ids; the
scheduler has no clock, so no time boundary. Strategies are flat
(one draw per argument where possible) so a failure shrinks within the ci shrink budget;
arbitrary doubles and ids over all of u64 are in tests/test_scheduler_properties.py.

Left out: artifacts other than the default one (the scoring table ignores them), the
resource axis (free resources are a 0.25.0 stub, so the axis never decides),
`local_node_id` from OPERATIONS (a property, not a call; its value is in `abstract()`).
"""
from __future__ import annotations

import functools
import math
import struct
from typing import Any, Callable, Iterable, Optional

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from meshspec.explore import Bound, Exploration
from meshspec.lockstep import BenchCase, Component, Subject, always, sometimes
from meshspec.machine import LockstepMachine
from meshspec.strategies import U64, around
from model import scheduler as M
from model.scheduler import (
    U64_MAX,
    Artifact,
    CapabilityFilter,
    NoCandidate,
    ScoreTable,
    TieBreakContext,
    to_f32,
)

MIG = M.subprotocol_tag(M.SUBPROTOCOL_MIGRATION)
CAUSAL = M.subprotocol_tag(0x0400)
TAGS = ("a", "b", "gpu", MIG, CAUSAL)
NODES = (0, 1, 2, 3, 7, 0x1111, 0x2222, U64_MAX - 1, U64_MAX)
BAD_IDS = (-1, U64_MAX + 1)
ART = Artifact()
PROBE_FILTERS = ((), ("a",), ("a", "b"), (MIG,), ("gpu", MIG), (CAUSAL,))
#: The largest finite f32, and the least double that rounds to f32 infinity (half an f32
#: ulp above it; the tie rounds to even, which is the infinity).
F32_MAX = struct.unpack("<f", struct.pack("<I", 0x7F7F_FFFF))[0]
F32_OVERFLOW = 2.0**128 - 2.0**103


def f32_step(score: float, direction: int) -> float:
    """The f32 one f32 ulp above (direction 1) or below (-1) the f32 `score` (±inf past the range)."""
    if score == 0.0:
        return direction * 2.0**-149
    bits = struct.unpack("<I", struct.pack("<f", score))[0]
    return struct.unpack("<f", struct.pack("<I", bits + (direction if score > 0 else -direction)))[0]


def score_edges(scores: Iterable[Optional[float]] = ()) -> list[float]:
    """The score boundaries: 0 and 1 (a PlacementFilter's range), f32::MAX and the overflow edge
    (both signs), and, relative to the scores already drawn, each one's f32 and the f32 values
    one f32 ulp below and above it (`around` adds the double ulps of each)."""
    out = [0.0, 1.0, F32_MAX, -F32_MAX, F32_OVERFLOW, -F32_OVERFLOW]
    for raw in scores:
        f = None if raw is None else to_f32(raw)
        if f is not None and math.isfinite(f):
            out += [f, f32_step(f, -1), f32_step(f, 1)]
    return out

# Argument types of the Subject's rules (a replayed trace is checked against them).
Tags = tuple[str, ...]
Scores = tuple[tuple[int, Optional[float]], ...]
Rtt = tuple[tuple[int, int], ...]


@functools.lru_cache(maxsize=None)
def _filter(required: tuple) -> CapabilityFilter:
    flt = CapabilityFilter()
    for tag in required:
        flt = flt.require_tag(tag)
    return flt


def _table(scores: tuple, default: Optional[float]) -> ScoreTable:
    return ScoreTable(scores, default=default)


def _admitted(table: Callable, node: int) -> Optional[float]:
    """The score a candidate competes with (f32, finite), or None when it is dropped."""
    raw = table(node, ART)
    score = None if raw is None else to_f32(raw)
    return score if score is not None and math.isfinite(score) else None


def _or_value_error(call: Callable[[], Any]) -> Any:
    """Run one call; a non-u64 id (ValueError on both sides) is answered, not raised."""
    try:
        return call()
    except ValueError as exc:
        return ("ValueError", str(exc))


@attrs.frozen
class Pick:
    """One scored choice: who competed, how they were scored and broken, who won."""

    rule: str
    candidates: tuple
    table: Any
    ctx: TieBreakContext
    winner: Optional[int]


class SchedulerSubject(Subject):
    """One scheduler plus ghost records of its last choices; one method per machine rule."""

    def init(self, local: int, local_tags: Tags, nodes: tuple[tuple[int, Tags], ...], drained: bool) -> None:
        self.sut = self.cls(local, local_tags, dict(nodes))
        self.sut.set_drained(drained)
        self.local = local
        self.pick: Optional[Pick] = None
        self.fast: Optional[tuple[bool, Optional[int], bool]] = None
        self.locality: Optional[tuple[bool, Optional[int], bool]] = None
        self.migration: Optional[tuple[int, tuple]] = None

    def _scan(self, required: tuple, exclude: tuple = (), nodes: Optional[tuple] = None) -> list[int]:
        """The oracle query: every node of the abstract state carrying the tags, ascending."""
        need = set(required)
        nodes = self.sut.abstract()[3] if nodes is None else nodes
        return [n for n, tags in nodes if need.issubset(tags) and n not in exclude]

    def observations(self) -> dict[str, Any]:
        """What the index could get wrong while the node list agrees (plain queries: queries_match_a_scan)."""
        s = self.sut
        return {
            "can_run_locally": tuple(s.can_run_locally(_filter(f)) for f in PROBE_FILTERS),
            "find_migration_targets": tuple(s.find_migration_targets(_filter(f), src)
                                            for f in ((), ("a",), ("gpu", MIG)) for src in (self.local, 0x1111)),
        }

    # -- the capability index and the local node -----------------------------------------
    def add_node(self, node: int, tags: Tags) -> Any:
        return _or_value_error(lambda: self.sut.add_node(node, tags))

    def remove_node(self, node: int) -> Any:
        return _or_value_error(lambda: self.sut.remove_node(node))

    def add_tag(self, node: int, tag: str) -> Any:
        return _or_value_error(lambda: self.sut.add_tag(node, tag))

    def remove_tag(self, node: int, tag: str) -> Any:
        return _or_value_error(lambda: self.sut.remove_tag(node, tag))

    def set_local_caps(self, tags: Tags) -> None:
        self.sut.set_local_caps(tags)

    def set_drained(self, drained: bool) -> bool:
        self.sut.set_drained(drained)
        return self.sut.is_drained()

    def inspect(self) -> tuple:
        s = self.sut
        return (s.abstract(), s.is_drained(), tuple(s.node_caps(n) for n in NODES))

    # -- queries ---------------------------------------------------------------------------
    def can_run_locally(self, required: Tags) -> bool:
        return self.sut.can_run_locally(_filter(required))

    def query_candidates(self, required: Tags) -> list[int]:
        return self.sut.query_candidates(_filter(required))

    def pin(self, node: int) -> Any:
        return _or_value_error(lambda: self.sut.pin(node))

    def find_subprotocol_nodes(self, subprotocol_id: int) -> Any:
        return _or_value_error(lambda: self.sut.find_subprotocol_nodes(subprotocol_id))

    def find_migration_targets(self, required: Tags, source: int) -> Any:
        targets = _or_value_error(lambda: self.sut.find_migration_targets(_filter(required), source))
        if isinstance(targets, list):
            self.migration = (source, tuple(targets))
        return targets

    def tie_break_compare(self, a: int, b: int, rtt: Optional[Rtt]) -> int:
        return self.sut.tie_break_compare(a, b, TieBreakContext(rtt))

    # -- placement -------------------------------------------------------------------------
    def _local_is_candidate(self, required: tuple) -> bool:
        return self.sut.can_run_locally(_filter(required)) or self.local in self._scan(required)

    def place(self, required: Tags) -> Any:
        local_candidate = self._local_is_candidate(required)
        try:
            decision = self.sut.place(_filter(required))
        except NoCandidate:
            self.locality = (False, None, local_candidate)
            raise
        self.locality = (False, decision.node_id, local_candidate)
        return decision

    def place_with_locality(self, required: Tags, drained: Optional[bool]) -> Any:
        effective = self.sut.is_drained() if drained is None else drained
        local_candidate = self._local_is_candidate(required)
        try:
            decision = self.sut.place_with_locality(_filter(required), drained)
        except NoCandidate:
            self.locality = (effective, None, local_candidate)
            raise
        self.locality = (effective, decision.node_id, local_candidate)
        return decision

    def _migration_record(self, rule: str, required: tuple, source: int, table: Any,
                          ctx: TieBreakContext, winner: Optional[int]) -> None:
        targets = tuple(self._scan(required + (MIG,), (source,)))
        local_target = self.local != source and self.local in targets
        vetoed = table(self.local, ART) is None
        eligible = local_target and not vetoed
        self.fast = (eligible, winner, local_target and vetoed)
        self.migration = (source, (winner,))
        self.pick = None if eligible else Pick(rule, targets, table, ctx, winner)

    def place_migration(self, required: Tags, source: int) -> Any:
        try:
            decision = _or_value_error(lambda: self.sut.place_migration(_filter(required), source))
        except NoCandidate:
            self.migration = (source, ())
            raise
        if not isinstance(decision, tuple):
            targets = self._scan(required + (MIG,), (source,))
            local_target = self.local != source and self.local in targets
            self.fast = (local_target, decision.node_id, False)
            self.migration = (source, (decision.node_id,))
        return decision

    def select_migration_target(self, required: Tags, source: int, scores: Scores,
                                default: Optional[float], rtt: Optional[Rtt]) -> Any:
        table, ctx = _table(scores, default), TieBreakContext(rtt)
        winner = _or_value_error(lambda: self.sut.select_migration_target(
            ART, _filter(required), source, table, ctx))
        if not isinstance(winner, tuple):
            self._migration_record("select_migration_target", required, source, table, ctx, winner)
        return winner

    def place_migration_v2(self, required: Tags, source: int) -> Any:
        permissive = ScoreTable({n: 1.0 for n, _ in self.sut.abstract()[3]}, default=None)
        try:
            decision = _or_value_error(lambda: self.sut.place_migration_v2(_filter(required), source))
        except NoCandidate:
            self._migration_record("place_migration_v2", required, source, permissive, TieBreakContext(), None)
            raise
        if not isinstance(decision, tuple):
            self._migration_record("place_migration_v2", required, source, permissive,
                                   TieBreakContext(), decision.node_id)
        return decision

    def select_member_node(self, required: Tags, exclude: tuple[int, ...], scores: Scores,
                           default: Optional[float], rtt: Optional[Rtt]) -> Any:
        table, ctx = _table(scores, default), TieBreakContext(rtt)
        winner = self.sut.select_member_node(ART, _filter(required), set(exclude), table, ctx)
        self.pick = Pick("select_member_node", tuple(self._scan(required, exclude)), table, ctx, winner)
        return winner

    def select_promotion_target(self, candidates: tuple[int, ...], scores: Scores, default: Optional[float],
                                rtt: Optional[Rtt]) -> Any:
        table, ctx = _table(scores, default), TieBreakContext(rtt)
        winner = _or_value_error(lambda: self.sut.select_promotion_target(list(candidates), ART, table, ctx))
        if not isinstance(winner, tuple):
            self.pick = Pick("select_promotion_target", candidates, table, ctx, winner)
        return winner

    def pick_best_candidate(self, candidates: tuple[int, ...], scores: Scores, default: Optional[float],
                            rtt: Optional[Rtt]) -> Any:
        table, ctx = _table(scores, default), TieBreakContext(rtt)
        winner = _or_value_error(lambda: self.sut.pick_best_candidate(iter(candidates), ART, table, ctx))
        if not isinstance(winner, tuple):
            self.pick = Pick("pick_best_candidate", candidates, table, ctx, winner)
        return winner


# -- invariants -----------------------------------------------------------------------------

def vetoed_or_non_finite_never_wins(s: SchedulerSubject) -> None:
    """A scored choice's winner scored Some finite f32; the migration fast path never takes a vetoed local."""
    p = s.pick
    if p is not None and p.winner is not None:
        raw = p.table(p.winner, ART)
        assert p.winner in p.candidates, f"{p.rule} answered {p.winner}, not among {p.candidates}"
        assert _admitted(p.table, p.winner) is not None, \
            f"{p.rule} answered {p.winner} whose score {raw!r} is a veto or not finite as f32"
    if s.fast is not None and s.fast[2]:
        assert s.fast[1] != s.local, f"the migration fast path answered local {s.local} although it is vetoed"


def winner_has_greatest_finite_score(s: SchedulerSubject) -> None:
    """The winner has the greatest finite score and is tie-break-best among equals; None iff nobody is admitted."""
    p = s.pick
    if p is None:
        return
    admitted = [(n, sc) for n in p.candidates if (sc := _admitted(p.table, n)) is not None]
    if p.winner is None:
        assert not admitted, f"{p.rule} answered None although {admitted} were admitted"
        return
    mine = _admitted(p.table, p.winner)
    if mine is None:
        return  # vetoed_or_non_finite_never_wins reports this
    for node, score in admitted:
        assert score <= mine, f"{p.rule} answered {p.winner} (score {mine}) but {node} scored {score}"
        if score == mine:
            assert M.tie_break_compare(p.winner, node, p.ctx) <= 0, \
                f"{p.rule} answered {p.winner} but {node} ties at {mine} and wins the tie-break ({p.ctx})"


def drained_local_never_chosen(s: SchedulerSubject) -> None:
    """place_with_locality never answers the local node while it is (explicitly or by record) drained."""
    if s.locality is not None:
        drained, node, _ = s.locality
        assert not (drained and node == s.local), f"drained local node {s.local} was chosen"


def migration_source_never_a_target(s: SchedulerSubject) -> None:
    """find_migration_targets and every migration placement exclude the source node."""
    if s.migration is not None:
        source, answered = s.migration
        assert source not in answered, f"migration source {source} answered as a target ({answered})"


def migration_prefers_unvetoed_local(s: SchedulerSubject) -> None:
    """Migration answers the local node when it is a target, not the source, and not vetoed (N-7, CR-21)."""
    if s.fast is not None and s.fast[0]:
        assert s.fast[1] == s.local, f"local {s.local} was eligible for the fast path but {s.fast[1]} was answered"


def queries_match_a_scan(s: SchedulerSubject) -> None:
    """Queries, subprotocol lookups and migration targets equal an ascending scan of the abstract node list."""
    nodes = s.sut.abstract()[3]
    for required in PROBE_FILTERS:
        got, want = s.sut.query_candidates(_filter(required)), s._scan(required, (), nodes)
        assert got == want, f"query_candidates({required}) = {got}, a scan finds {want}"
    got, want = s.sut.find_subprotocol_nodes(0x0400), s._scan((CAUSAL,), (), nodes)
    assert got == want, f"find_subprotocol_nodes(0x0400) = {got}, a scan finds {want}"
    got, want = s.sut.find_migration_targets(CapabilityFilter(), s.local), s._scan((MIG,), (s.local,), nodes)
    assert got == want, f"find_migration_targets(any, local) = {got}, a scan finds {want}"


def _ties_at_best(p: Pick) -> list[int]:
    admitted = [(n, sc) for n in p.candidates if (sc := _admitted(p.table, n)) is not None]
    best = max((sc for _, sc in admitted), default=None)
    return sorted({n for n, sc in admitted if sc == best})


def tie_decided_by_rtt(s: SchedulerSubject) -> bool:
    """Several candidates tie at the best score and the RTT step (not the smallest id) decides."""
    p = s.pick
    if p is None or p.winner is None or p.ctx.rtt_us is None:
        return False
    ties = _ties_at_best(p)
    return len(ties) >= 2 and p.winner != ties[0]


def non_finite_score_dropped(s: SchedulerSubject) -> bool:
    """A candidate scored NaN, ±inf or beyond f32 and another candidate won."""
    p = s.pick
    if p is None or p.winner is None:
        return False
    raws = [p.table(n, ART) for n in p.candidates]
    return any(r is not None and not math.isfinite(to_f32(r)) for r in raws)


def every_candidate_vetoed(s: SchedulerSubject) -> bool:
    """A non-empty candidate list where the filter vetoed everyone, so nobody won."""
    p = s.pick
    return bool(p and p.candidates and p.winner is None
                and all(p.table(n, ART) is None for n in p.candidates))


def local_fast_path_taken(s: SchedulerSubject) -> bool:
    """Migration answered the unvetoed local target on the fast path."""
    return bool(s.fast and s.fast[0] and s.fast[1] == s.local)


def vetoed_local_fell_through(s: SchedulerSubject) -> bool:
    """Local was a migration target but vetoed, and scoring picked another node."""
    return bool(s.fast and s.fast[2] and s.fast[1] is not None)


def drained_local_skipped(s: SchedulerSubject) -> bool:
    """A drained local node that matched the filter was skipped for a remote node."""
    return bool(s.locality and s.locality[0] and s.locality[2] and s.locality[1] is not None)


def _raw(p: Pick, node: int) -> Optional[float]:
    return p.table(node, ART)


def tie_only_as_f32(s: SchedulerSubject) -> bool:
    """Two admitted candidates whose scores differ as doubles but round to one f32 tied for the best."""
    p = s.pick
    if p is None or p.winner is None:
        return False
    mine = _admitted(p.table, p.winner)
    return any(n != p.winner and _admitted(p.table, n) == mine and _raw(p, n) != _raw(p, p.winner)
               for n in p.candidates)


def one_f32_ulp_decided(s: SchedulerSubject) -> bool:
    """The winner scored exactly one f32 ulp above another admitted candidate."""
    p = s.pick
    if p is None or p.winner is None or (mine := _admitted(p.table, p.winner)) is None:
        return False
    below = f32_step(mine, -1)
    return any(_admitted(p.table, n) == below for n in p.candidates)


def above_f32_max_rounded_down(s: SchedulerSubject) -> bool:
    """A double above the largest f32 (but below the overflow edge) competed as f32::MAX."""
    p = s.pick
    return bool(p and any((r := _raw(p, n)) is not None and F32_MAX < abs(r) < F32_OVERFLOW
                          for n in p.candidates))


def f32_overflow_edge_dropped(s: SchedulerSubject) -> bool:
    """A double exactly at (or one ulp past) the f32 overflow edge was dropped as infinite."""
    p = s.pick
    edge = (F32_OVERFLOW, math.nextafter(F32_OVERFLOW, math.inf))
    return bool(p and any((r := _raw(p, n)) is not None and abs(r) in edge for n in p.candidates))


def rtt_tie_broken_by_id(s: SchedulerSubject) -> bool:
    """Candidates tied at the best score with equal known RTTs, so the smallest id decided."""
    p = s.pick
    if p is None or p.winner is None or p.ctx.rtt_us is None:
        return False
    mine = p.ctx.rtt_of(p.winner)
    return mine is not None and any(n != p.winner and p.ctx.rtt_of(n) == mine for n in _ties_at_best(p))


def _refused(s: SchedulerSubject, rules: tuple[str, ...]) -> bool:
    last = s.last
    return bool(last and last[0] in rules and isinstance(last[2].value, tuple)
                and last[2].value[:1] == ("ValueError",))


def subprotocol_id_outside_u16_refused(s: SchedulerSubject) -> bool:
    """find_subprotocol_nodes refused an id just outside u16 (-1 or 0x10000)."""
    return _refused(s, ("find_subprotocol_nodes",))


def node_id_outside_u64_refused(s: SchedulerSubject) -> bool:
    """A node id just outside u64 (-1 or u64::MAX + 1) was refused."""
    return _refused(s, ("add_node", "remove_node", "add_tag", "remove_tag", "pin", "pick_best_candidate",
                        "select_promotion_target", "find_migration_targets", "place_migration"))


#: One witness per boundary class the machine aims at (meshspec.strategies.around).
BOUNDARY_WITNESSES = (tie_only_as_f32, one_f32_ulp_decided, above_f32_max_rounded_down,
                      f32_overflow_edge_dropped, rtt_tie_broken_by_id,
                      subprotocol_id_outside_u16_refused, node_id_outside_u64_refused)

#: The boundary witnesses aim at the fuzzer's generators; the explorer's fixed alphabet is
#: not asked to reach them.
FUZZ_ONLY_WITNESSES = tuple(w.__name__ for w in BOUNDARY_WITNESSES)


def no_candidate_raised(s: SchedulerSubject) -> bool:
    """A placement raised NoCandidate."""
    return bool(s.last and s.last[2].error and s.last[2].error[0] == "NoCandidate")


INVARIANTS = (
    always(vetoed_or_non_finite_never_wins), always(winner_has_greatest_finite_score),
    always(drained_local_never_chosen), always(migration_source_never_a_target),
    always(migration_prefers_unvetoed_local), always(queries_match_a_scan),
    sometimes(tie_decided_by_rtt), sometimes(non_finite_score_dropped),
    sometimes(every_candidate_vetoed), sometimes(local_fast_path_taken),
    sometimes(vetoed_local_fell_through), sometimes(drained_local_skipped),
    sometimes(no_candidate_raised), *map(sometimes, BOUNDARY_WITNESSES),
)


# -- the machine ----------------------------------------------------------------------------

NODE = st.sampled_from(NODES)
ANY_ID = st.sampled_from(NODES * 6 + BAD_IDS)
TAG = st.sampled_from(TAGS)
TAG_SET = st.sampled_from([(), (MIG,), (MIG,), ("a", MIG), ("a", "b", MIG), ("gpu", MIG), ("a",), ("a", "b"),
                          ("b", "gpu"), (CAUSAL,), (CAUSAL, MIG, "a"), tuple(sorted(TAGS))])
REQUIRED = st.sampled_from([(), (), ("a",), ("b",), ("gpu",), ("a", "b"), ("a", "gpu")])
QUERY = st.sampled_from([(), ("a",), ("b",), ("gpu",), ("a", "b"), ("a", "gpu"), *PROBE_FILTERS[3:]])
SCORE = st.sampled_from([None, None, math.nan, math.inf, -math.inf, 1e300, 0.0, -0.0, 0.25, 0.5, 0.5,
                         0.5 + 1e-12, 0.75, 1.0, 1.0, 3.4e38, -2.0])
DEFAULT_SCORE = around(score_edges(), SCORE, share=15)


@st.composite
def score_tables(draw: Any) -> tuple:
    """Up to five (node, score) pairs; each score aimed at the boundaries (`score_edges`) of the
    scores drawn before it: ties exactly, one f32 or one double ulp below or above."""
    table: list[tuple[int, Optional[float]]] = []
    for _ in range(draw(st.integers(0, 5), label="size")):
        node = draw(NODE, label="node")
        table.append((node, draw(around(score_edges(sc for _, sc in table), SCORE), label="score")))
    return tuple(table)


@st.composite
def rtt_tables(draw: Any) -> tuple:
    """An RTT table whose values are aimed at the ones drawn before: equal (a tie the id breaks), ±1."""
    table: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(1, 4), label="size")):
        node = draw(NODE, label="node")
        table.append((node, draw(around([r for _, r in table], st.integers(0, 3), lo=U64[0], hi=U64[1],
                                        share=50), label="rtt")))
    return tuple(table)


SCORES = score_tables()
RTT = st.sampled_from([None, None, (), ((1, 2), (2, 1)), ((0x1111, 0), (0x2222, 0), (U64_MAX, 1)),
                       ((2, 3), (3, 3), (7, 1), (U64_MAX - 1, 0)), ((0, 1), (1, 0), (0x2222, 2), (2, 2))]) \
    | rtt_tables()
SUBPROTOCOL_IDS = around([0, M.U16_MAX, 0x0400, M.SUBPROTOCOL_MIGRATION],
                         st.sampled_from([0x0400, 0x0500, 0, 0xFFFF, 0x10000, -1]))
CANDIDATES = st.lists(ANY_ID, max_size=8).map(tuple)


class SchedulerMachine(LockstepMachine):
    """Model and impl scheduler in lockstep; every rule is one `self.step`."""

    @initialize(local=NODE, local_tags=TAG_SET, nodes=st.lists(st.tuples(NODE, TAG_SET), max_size=7).map(tuple),
                drained=st.booleans(), local_indexed=st.sampled_from([True, True, False]))
    def init(self, local: int, local_tags: tuple, nodes: tuple, drained: bool, local_indexed: bool) -> None:
        self.local = local
        if local_indexed:  # the local node announced itself as a migration target
            nodes = ((local, ("a", "b", "gpu", MIG)),) + nodes
        self.step("init", local, local_tags, nodes, drained)

    @rule(node=ANY_ID, tags=TAG_SET)
    def add_node(self, node: int, tags: tuple) -> None:
        self.step("add_node", node, tags)

    @rule(node=ANY_ID)
    def remove_node(self, node: int) -> None:
        self.step("remove_node", node)

    @rule(node=ANY_ID, tag=TAG)
    def add_tag(self, node: int, tag: str) -> None:
        self.step("add_tag", node, tag)

    @rule(node=ANY_ID, tag=TAG)
    def remove_tag(self, node: int, tag: str) -> None:
        self.step("remove_tag", node, tag)

    @rule(tags=TAG_SET)
    def set_local_caps(self, tags: tuple) -> None:
        self.step("set_local_caps", tags)

    @rule(drained=st.booleans())
    def set_drained(self, drained: bool) -> None:
        self.step("set_drained", drained)

    @rule()
    def inspect(self) -> None:
        self.step("inspect")

    @rule(required=QUERY)
    def can_run_locally(self, required: tuple) -> None:
        self.step("can_run_locally", required)

    @rule(required=QUERY)
    def query_candidates(self, required: tuple) -> None:
        self.step("query_candidates", required)

    @rule(node=ANY_ID)
    def pin(self, node: int) -> None:
        self.step("pin", node)

    @rule(subprotocol_id=SUBPROTOCOL_IDS)
    def find_subprotocol_nodes(self, subprotocol_id: int) -> None:
        self.step("find_subprotocol_nodes", subprotocol_id)

    @rule(required=REQUIRED, source=ANY_ID)
    def find_migration_targets(self, required: tuple, source: int) -> None:
        self.step("find_migration_targets", required, source)

    @rule(data=st.data(), a=NODE, rtt=RTT)
    def tie_break_compare(self, data: Any, a: int, rtt: Optional[tuple]) -> None:
        b = data.draw(around([a], NODE, lo=U64[0], hi=U64[1]), label="b")  # the same id, or adjacent
        self.step("tie_break_compare", a, b, rtt)

    @rule(required=QUERY)
    def place(self, required: tuple) -> None:
        self.step("place", required)

    @rule(required=QUERY, drained=st.sampled_from([None, None, True, False]))
    def place_with_locality(self, required: tuple, drained: Optional[bool]) -> None:
        self.step("place_with_locality", required, drained)

    @rule(required=REQUIRED, source=ANY_ID)
    def place_migration(self, required: tuple, source: int) -> None:
        self.step("place_migration", required, source)

    @rule(required=REQUIRED, source=ANY_ID, scores=SCORES, default=DEFAULT_SCORE, rtt=RTT,
          local_score=st.sampled_from(["table", "table", None, None, math.nan, 0.0]))
    def select_migration_target(self, required: tuple, source: int, scores: tuple,
                                default: Optional[float], rtt: Optional[tuple], local_score: Any) -> None:
        if local_score != "table":  # score the local node explicitly: a veto, NaN or a low score
            scores = scores + ((self.local, local_score),)
        self.step("select_migration_target", required, source, scores, default, rtt)

    @rule(required=REQUIRED, source=ANY_ID)
    def place_migration_v2(self, required: tuple, source: int) -> None:
        self.step("place_migration_v2", required, source)

    @rule(required=REQUIRED, exclude=st.lists(NODE, max_size=3).map(tuple), scores=SCORES,
          default=DEFAULT_SCORE, rtt=RTT)
    def select_member_node(self, required: tuple, exclude: tuple, scores: tuple,
                           default: Optional[float], rtt: Optional[tuple]) -> None:
        self.step("select_member_node", required, exclude, scores, default, rtt)

    @rule(candidates=CANDIDATES, scores=SCORES, default=DEFAULT_SCORE, rtt=RTT)
    def select_promotion_target(self, candidates: tuple, scores: tuple, default: Optional[float],
                                rtt: Optional[tuple]) -> None:
        self.step("select_promotion_target", candidates, scores, default, rtt)

    @rule(candidates=CANDIDATES, scores=SCORES, default=DEFAULT_SCORE, rtt=RTT)
    def pick_best_candidate(self, candidates: tuple, scores: tuple, default: Optional[float],
                            rtt: Optional[tuple]) -> None:
        self.step("pick_best_candidate", candidates, scores, default, rtt)


OPERATIONS = (
    "add_node", "remove_node", "add_tag", "remove_tag", "set_local_caps", "set_drained",
    "is_drained", "node_caps", "can_run_locally", "query_candidates", "pin",
    "find_subprotocol_nodes", "find_migration_targets", "place", "place_with_locality",
    "place_migration", "select_migration_target", "place_migration_v2", "select_member_node",
    "select_promotion_target", "pick_best_candidate", "tie_break_compare", "abstract",
)


# The curated mutants live in mutants/scheduler.py; the registry reads them lazily.
from meshspec.registry import mutant_bounds_of, mutants_of  # noqa: E402
from impl.scheduler import Scheduler as ImplScheduler  # noqa: E402


# -- benchmarks -----------------------------------------------------------------------------

def _bench_pick(cls: type, size: int) -> Callable[[], Any]:
    import random

    rng = random.Random(size)
    ids = rng.sample(range(1, 1 << 40), size)
    scores = {n: rng.choice([None, math.nan, 0.25, 0.5, 0.75, 1.0, rng.random()]) for n in ids}
    table = ScoreTable(scores, default=None)
    ctx = TieBreakContext({n: rng.randrange(8) for n in ids if rng.random() < 0.7})
    sched = cls(0)
    return lambda: sched.pick_best_candidate(ids, ART, table, ctx)


BENCH = (BenchCase("pick_best_candidate", (10, 100, 1000), _bench_pick),)

# -- exploration (meshspec explore) ---------------------------------------------------------

def scheduler_view(s: SchedulerSubject) -> tuple:
    """The model's abstract state alone (TLC's VIEW): the ghost records are left out.

    Sound: the scheduler has no clock and draws no randomness, so the successors of a state
    depend on its abstract state only. Each ghost record (`pick`, `fast`, `locality`,
    `migration`) is read by invariants that look at that record and the constant `local`
    alone, never at the node list; a record is checked on the edge that writes it and
    keeps its verdict until the next such edge overwrites it. Queries are self-loops.
    """
    return s.sut.abstract()


_X = (1, 2, U64_MAX)  # the initial index: the local node 1, a remote 2, u64::MAX; 0 is not a target
_TIE = ((1, 0.5), (2, 0.5 + 1e-12), (U64_MAX, 0.5))  # three candidates that tie only as f32
_RTT = ((2, 3), (U64_MAX, 1))
_INIT_NODES = ((1, ("a", "b", "gpu", MIG)), (2, ("a", MIG)), (U64_MAX, ("a", "b", CAUSAL, MIG)), (0, ("gpu",)))

SCHEDULER_MUTATIONS: tuple[tuple[str, tuple], ...] = (
    ("add_node", (3, ("a", MIG))), ("add_node", (2, ("b",))), ("add_node", (U64_MAX + 1, ())),
    ("add_node", (-1, ("a",))), ("remove_node", (2,)), ("remove_node", (1,)), ("remove_node", (7,)),
    ("remove_node", (-1,)), ("add_tag", (2, "gpu")), ("add_tag", (7, "a")), ("add_tag", (U64_MAX + 1, "a")),
    ("remove_tag", (2, "a")), ("remove_tag", (1, MIG)), ("remove_tag", (7, "a")),
    ("set_local_caps", ((),)), ("set_local_caps", (("a", "b", "gpu", MIG),)),
    ("set_drained", (True,)), ("set_drained", (False,)),
)
SCHEDULER_QUERIES: tuple[tuple[str, tuple], ...] = (
    ("inspect", ()), ("can_run_locally", (("a", "b"),)), ("query_candidates", (("a", MIG),)),
    ("pin", (U64_MAX,)), ("pin", (U64_MAX + 1,)), ("find_subprotocol_nodes", (0x0400,)),
    ("find_subprotocol_nodes", (0xFFFF,)), ("find_subprotocol_nodes", (0x10000,)),
    ("find_migration_targets", ((), 1)), ("find_migration_targets", (("a",), -1)),
    ("tie_break_compare", (1, 2, ((1, 2), (2, 1)))), ("tie_break_compare", (2, U64_MAX, _RTT[:1])),
    ("place", (("a",),)), ("place", (("gpu", "b", CAUSAL),)),
    ("place_with_locality", (("a",), None)), ("place_with_locality", (("a",), True)),
    ("place_with_locality", (("gpu",), False)),
    ("place_migration", ((), 1)), ("place_migration", ((), 2)), ("place_migration", (("gpu",), U64_MAX + 1)),
    ("select_migration_target", ((), 2, ((1, None), (U64_MAX, 1.0)), 0.5, None)),   # local vetoed
    ("select_migration_target", ((), 2, ((1, 0.25), (U64_MAX, 1.0)), 0.5, _RTT)),   # local fast path
    ("select_migration_target", (("a",), 2, ((1, math.nan),), None, None)),         # NaN local: not a veto
    ("place_migration_v2", ((), 1)), ("place_migration_v2", (("b",), 3)),
    ("select_member_node", (("a",), (1,), _TIE, None, _RTT)),
    ("select_member_node", (("a",), (), ((2, math.inf), (U64_MAX, 1e300)), -0.0, None)),
    ("select_promotion_target", (_X + (U64_MAX + 1,), (), 1.0, None)),
    ("select_promotion_target", (_X, ((1, -0.0), (2, 0.0)), None, None)),
    ("pick_best_candidate", ((2, 1), ((1, math.nan), (2, 0.5)), None, None)),
    ("pick_best_candidate", (_X, _TIE, None, None)),
    ("pick_best_candidate", (_X + _X, ((1, 3.4e38), (2, -math.inf)), None, _RTT)),
    ("pick_best_candidate", (_X, (), None, None)), ("pick_best_candidate", ((), (), 1.0, None)),
)

# `large`: more ids (0, 7, u64::MAX - 1, the 0x1111 pair) and tag edits, so the index holds
# up to eight nodes with mixed tag sets; the small alphabet's reachable space closes at depth 6.
SCHEDULER_MORE_MUTATIONS: tuple[tuple[str, tuple], ...] = (
    ("add_node", (0, ("a", "b", MIG))), ("add_node", (7, (CAUSAL, MIG, "a"))), ("add_node", (U64_MAX - 1, ("gpu", MIG))),
    ("add_node", (0x1111, ("a", "b"))), ("add_node", (0x2222, ("b", "gpu"))), ("remove_node", (U64_MAX,)),
    ("remove_node", (0,)), ("add_tag", (0, MIG)), ("add_tag", (U64_MAX, "gpu")), ("remove_tag", (U64_MAX, CAUSAL)),
    ("remove_tag", (2, MIG)), ("set_local_caps", ((CAUSAL, MIG, "a"),)),
)

EXPLORATION = Exploration(
    inits=((1, ("a", MIG), _INIT_NODES, False), (0, (), (), True)),
    actions=SCHEDULER_MUTATIONS + SCHEDULER_QUERIES,
    bounds={"small": Bound(3), "full-small-alphabet": Bound(7),
            "large": Bound(5, actions=SCHEDULER_MUTATIONS + SCHEDULER_MORE_MUTATIONS + SCHEDULER_QUERIES)},
    view=scheduler_view,
    mutant_bounds=mutant_bounds_of("scheduler", "small"),
)

COMPONENT = Component(
    name="scheduler",
    summary="net-mesh 0.25.0 compute/scheduler.rs and placement tie_break_compare: capability "
            "queries, locality/migration/member placement, pick_best_candidate.",
    model_cls=M.Scheduler, impl_cls=ImplScheduler, subject_cls=SchedulerSubject,
    machine_cls=SchedulerMachine, invariants=INVARIANTS, mutants=mutants_of("scheduler"),
    errors=(M.SchedulerError,), operations=OPERATIONS, bench=BENCH, exploration=EXPLORATION,
)
