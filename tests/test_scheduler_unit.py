"""Unit tests of the scheduler component, run against the model and the impl.

Tests named after 0.25.0 pinning tests reproduce them (section 2.6 items 18-24)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import impl.scheduler as impl_mod
import model.scheduler as model_mod
from model.scheduler import (
    U64_MAX,
    Artifact,
    CapabilityFilter,
    CapabilitySet,
    IndexUnavailable,
    NoCandidate,
    PlacementDecision,
    PlacementReason,
    ResourceAxis,
    SchedulerError,
    ScoreTable,
    TieBreakContext,
    subprotocol_tag,
    to_f32,
)

MIG = "subprotocol:0x0500"
ANY = CapabilityFilter()
NO_RTT = TieBreakContext()
ART = Artifact()


@pytest.fixture(params=[model_mod.Scheduler, impl_mod.Scheduler], ids=["model", "impl"])
def cls(request):
    return request.param


def make(cls, local=0x1111, local_caps=(), nodes=None):
    return cls(local, local_caps, nodes or {})


def fixed(score, veto=()):
    return ScoreTable({n: None for n in veto}, default=score)


def checked(s):
    s.check_invariants()
    return s


# --------------------------------------------------------------------------- values and errors

def test_scheduler_errors_display_the_rust_text():
    assert str(NoCandidate()) == "no nodes match capability requirements"
    assert str(IndexUnavailable()) == "capability index unavailable"
    assert NoCandidate() == NoCandidate() and NoCandidate() != IndexUnavailable()
    assert isinstance(NoCandidate(), SchedulerError)


def test_capability_filter_require_tag_returns_a_new_filter():
    base = CapabilityFilter()
    gpu = base.require_tag("hardware.gpu")
    assert base.require_tags == frozenset() and gpu.require_tags == {"hardware.gpu"}
    assert gpu.matches(CapabilitySet({"hardware.gpu", "x"}))
    assert not gpu.matches(CapabilitySet({"x"}))
    assert base.matches(CapabilitySet())


def test_subprotocol_tag_is_lowercase_four_digit_hex():
    assert subprotocol_tag(0x0400) == "subprotocol:0x0400"
    assert subprotocol_tag(0xABCD) == "subprotocol:0xabcd"
    with pytest.raises(ValueError):
        subprotocol_tag(0x10000)


def test_scores_cross_an_f32_boundary():
    assert to_f32(1e300) == math.inf and to_f32(-1e300) == -math.inf
    assert to_f32(0.1) != 0.1 and to_f32(0.1) == to_f32(0.1 + 1e-12)
    assert math.isnan(to_f32(math.nan))


# --------------------------------------------------------------------------- mutations and queries

def test_add_node_reports_new_and_replaces_the_whole_capability_set(cls):
    s = make(cls)
    assert s.add_node(5, {"a", "b"}) is True
    assert s.add_node(5, {"c"}) is False
    assert s.query_candidates(ANY.require_tag("a")) == []
    assert s.query_candidates(ANY.require_tag("c")) == [5]
    checked(s)


def test_remove_node_drops_it_from_every_query(cls):
    s = make(cls, nodes={1: {"a"}, 2: {"a"}})
    assert s.remove_node(1) is True and s.remove_node(1) is False
    assert s.query_candidates(ANY.require_tag("a")) == [2]
    assert s.query_candidates(ANY) == [2]
    checked(s)


def test_tag_edits_change_matches_and_are_no_ops_on_unknown_nodes(cls):
    s = make(cls, nodes={1: set()})
    assert s.add_tag(1, "a") is True and s.add_tag(1, "a") is False
    assert s.query_candidates(ANY.require_tag("a")) == [1]
    assert s.remove_tag(1, "a") is True and s.remove_tag(1, "a") is False
    assert s.query_candidates(ANY.require_tag("a")) == []
    assert s.add_tag(9, "a") is False and s.remove_tag(9, "a") is False
    assert s.node_caps(9) is None and s.node_caps(1) == CapabilitySet()
    checked(s)


@pytest.mark.parametrize("bad", [-1, U64_MAX + 1, True, 1.0])
def test_node_ids_outside_u64_are_rejected(cls, bad):
    s = make(cls)
    for op in (lambda: s.add_node(bad), lambda: s.remove_node(bad), lambda: s.add_tag(bad, "t"),
               lambda: s.remove_tag(bad, "t"), lambda: s.pin(bad),
               lambda: s.find_migration_targets(ANY, bad), lambda: cls(bad)):
        with pytest.raises(ValueError):
            op()
    with pytest.raises(ValueError):
        s.pick_best_candidate([bad], ART, fixed(1.0), NO_RTT)


def test_query_candidates_come_back_in_ascending_id_order(cls):
    s = make(cls, nodes={0x3333: {"a"}, 0x1111: {"a", "b"}, 0x2222: {"a"}, U64_MAX: {"a", "b"}})
    assert s.query_candidates(ANY) == [0x1111, 0x2222, 0x3333, U64_MAX]
    assert s.query_candidates(ANY.require_tag("a").require_tag("b")) == [0x1111, U64_MAX]
    assert s.query_candidates(ANY.require_tag("missing")) == []


def test_empty_index_answers_no_candidates(cls):
    s = make(cls)
    assert s.query_candidates(ANY) == []
    assert s.find_subprotocol_nodes(0x0400) == []


def test_can_run_locally_checks_the_local_caps_not_the_index(cls):
    s = make(cls, local_caps={"hardware.gpu"}, nodes={0x1111: set()})
    assert s.can_run_locally(ANY)
    assert s.can_run_locally(ANY.require_tag("hardware.gpu"))
    assert not s.can_run_locally(ANY.require_tag("other"))
    s.set_local_caps({"other"})
    assert s.can_run_locally(ANY.require_tag("other"))


def test_pin_always_answers_pinned(cls):
    assert make(cls).pin(0x9999) == PlacementDecision(0x9999, PlacementReason.PINNED)


def test_find_subprotocol_nodes_matches_the_subprotocol_tag(cls):
    s = make(cls, nodes={0x2222: {"subprotocol:0x0400"}, 0x3333: {MIG}})
    assert s.find_subprotocol_nodes(0x0400) == [0x2222]
    assert s.find_subprotocol_nodes(0x0500) == [0x3333]
    with pytest.raises(ValueError):
        s.find_subprotocol_nodes(-1)


def test_find_migration_targets_requires_the_migration_tag_and_excludes_the_source(cls):
    s = make(cls, nodes={0x1111: {MIG}, 0x2222: {MIG, "gpu"}, 0x3333: {MIG}, 0x4444: {"gpu"}})
    assert s.find_migration_targets(ANY, 0x1111) == [0x2222, 0x3333]
    assert s.find_migration_targets(ANY.require_tag("gpu"), 0x9999) == [0x2222]


def test_find_migration_targets_uses_the_constant_migration_tag():
    """Item 24 (#156): the impl's constant equals the tag the model formats per call."""
    assert impl_mod.MIGRATION_TAG == subprotocol_tag(model_mod.SUBPROTOCOL_MIGRATION) == MIG


# --------------------------------------------------------------------------- place / place_with_locality

def test_place_prefers_local_even_when_local_is_not_indexed(cls):
    assert make(cls).place(ANY) == PlacementDecision(0x1111, PlacementReason.LOCAL_PREFERRED)


def test_place_answers_the_only_remote_candidate(cls):
    s = make(cls, nodes={0x2222: {"gpu"}})
    assert s.place(ANY.require_tag("gpu")) == PlacementDecision(0x2222, PlacementReason.ONLY_CANDIDATE)


def test_place_answers_the_smallest_id_as_first_match(cls):
    s = make(cls, nodes={0x4444: {"gpu"}, 0x2222: {"gpu"}, 0x3333: {"gpu"}})
    assert s.place(ANY.require_tag("gpu")) == PlacementDecision(0x2222, PlacementReason.FIRST_MATCH)


def test_place_without_candidates_raises_no_candidate(cls):
    with pytest.raises(NoCandidate, match="no nodes match capability requirements"):
        make(cls, nodes={0x2222: set()}).place(ANY.require_tag("gpu"))


def test_place_with_locality_skips_local_when_drained(cls):
    """Item 23 (X-21)."""
    s = make(cls, nodes={0x1111: set(), 0x2222: set()})
    assert s.place_with_locality(ANY, True) == PlacementDecision(0x2222, PlacementReason.ONLY_CANDIDATE)


def test_place_with_locality_picks_local_when_not_drained(cls):
    s = make(cls, nodes={0x1111: set(), 0x2222: set()})
    assert s.place_with_locality(ANY, False) == PlacementDecision(0x1111, PlacementReason.LOCAL_PREFERRED)


def test_place_with_locality_returns_no_candidate_when_drained_and_no_remote(cls):
    s = make(cls, nodes={0x1111: set()})
    with pytest.raises(NoCandidate):
        s.place_with_locality(ANY, True)


def test_place_with_locality_drained_keeps_first_match_order_among_remotes(cls):
    s = make(cls, local=0x2222, nodes={0x1111: set(), 0x2222: set(), 0x3333: set()})
    assert s.place_with_locality(ANY, True) == PlacementDecision(0x1111, PlacementReason.FIRST_MATCH)


def test_place_with_locality_uses_the_recorded_drain_flag_when_none_is_given(cls):
    s = make(cls, nodes={0x1111: set(), 0x2222: set()})
    s.set_drained(True)
    assert s.is_drained()
    assert s.place_with_locality(ANY).node_id == 0x2222
    assert s.place_with_locality(ANY, False).node_id == 0x1111
    assert s.place(ANY).node_id == 0x1111, "place is 0.25.0's never-drained entry point"
    s.set_drained(False)
    assert s.place_with_locality(ANY).node_id == 0x1111


def test_place_with_locality_not_drained_may_still_answer_an_indexed_local_node(cls):
    """Local caps lack the tag but the index says local has it: no exclusion, no fast path."""
    s = make(cls, nodes={0x1111: {"gpu"}, 0x2222: {"gpu"}})
    assert s.place(ANY.require_tag("gpu")) == PlacementDecision(0x1111, PlacementReason.FIRST_MATCH)


# --------------------------------------------------------------------------- place_migration (v1)

def test_place_migration_without_targets_raises_no_candidate(cls):
    with pytest.raises(NoCandidate):
        make(cls, nodes={0x2222: set()}).place_migration(ANY, 0x1111)


def test_place_migration_answers_the_only_target(cls):
    s = make(cls, nodes={0x2222: {MIG}})
    assert s.place_migration(ANY, 0x1111) == PlacementDecision(0x2222, PlacementReason.ONLY_CANDIDATE)


def test_place_migration_prefers_local_when_it_is_a_target_and_not_the_source(cls):
    s = make(cls, nodes={0x1111: {MIG}, 0x2222: {MIG}})
    assert s.place_migration(ANY, 0x3333) == PlacementDecision(0x1111, PlacementReason.LOCAL_PREFERRED)


def test_place_migration_answers_first_match_when_local_is_the_source(cls):
    s = make(cls, nodes={0x1111: {MIG}, 0x3333: {MIG}, 0x2222: {MIG}})
    assert s.place_migration(ANY, 0x1111) == PlacementDecision(0x2222, PlacementReason.FIRST_MATCH)


# --------------------------------------------------------------------------- select_migration_target

def _smt(s, placement, source=0xFFFF, flt=ANY, tb=NO_RTT):
    return s.select_migration_target(ART, flt, source, placement, tb)


def test_select_migration_target_returns_only_candidate(cls):
    assert _smt(make(cls, nodes={0x2222: {MIG}}), fixed(1.0), source=0x1111) == 0x2222


def test_select_migration_target_picks_highest_scoring(cls):
    s = make(cls, local=0xFFFF, nodes={0x1111: {MIG}, 0x2222: {MIG}, 0x3333: {MIG}})
    assert _smt(s, ScoreTable({0x1111: 0.3, 0x2222: 0.9, 0x3333: 0.5})) == 0x2222


def test_select_migration_target_ties_resolved_by_lex_node_id(cls):
    s = make(cls, local=0xFFFF, nodes={0x3333: {MIG}, 0x1111: {MIG}, 0x2222: {MIG}})
    assert _smt(s, fixed(0.5)) == 0x1111


def test_select_migration_target_returns_none_when_all_vetoed(cls):
    s = make(cls, local=0xFFFF, nodes={0x2222: {MIG}, 0x3333: {MIG}})
    assert _smt(s, fixed(1.0, veto=(0x2222, 0x3333))) is None


def test_select_migration_target_returns_none_for_empty_candidates(cls):
    assert _smt(make(cls, local=0xFFFF), fixed(1.0)) is None


def test_select_migration_target_local_preferred_fast_path(cls):
    """Item 21 (N-7): local wins even when a remote scores higher."""
    s = make(cls, nodes={0x1111: {MIG}, 0x2222: {MIG}, 0x3333: {MIG}})
    assert _smt(s, ScoreTable({0x1111: 0.2, 0x2222: 0.9, 0x3333: 0.5}), source=0x9999) == 0x1111


def test_select_migration_target_local_preferred_inactive_when_source_is_local(cls):
    s = make(cls, nodes={0x1111: {MIG}, 0x2222: {MIG}, 0x3333: {MIG}})
    assert _smt(s, ScoreTable({0x2222: 0.9, 0x3333: 0.5}, default=0.0), source=0x1111) == 0x2222


def test_select_migration_target_fast_path_respects_a_veto_on_local(cls):
    """Item 22 (X-16): a filter that vetoes local falls through to scoring."""
    s = make(cls, nodes={0x1111: {MIG}, 0x2222: {MIG}, 0x3333: {MIG}})
    assert _smt(s, ScoreTable({0x1111: None, 0x2222: 0.5, 0x3333: 0.9}), source=0x9999) == 0x3333
    assert _smt(s, fixed(1.0, veto=(0x1111, 0x2222, 0x3333)), source=0x9999) is None


def test_select_migration_target_fast_path_needs_local_among_the_targets(cls):
    s = make(cls, local_caps={MIG}, nodes={0x2222: {MIG}, 0x3333: {MIG}})
    assert _smt(s, ScoreTable({0x1111: 1.0, 0x2222: 0.1, 0x3333: 0.2}), source=0x9999) == 0x3333


def test_select_migration_target_fast_path_treats_a_local_nan_score_as_not_vetoed(cls):
    """0.25.0 asks only `is_some()` of the local score on the fast path."""
    s = make(cls, nodes={0x1111: {MIG}, 0x2222: {MIG}})
    assert _smt(s, ScoreTable({0x1111: math.nan, 0x2222: 1.0}), source=0x9999) == 0x1111


def test_select_migration_target_excludes_source_node(cls):
    s = make(cls, local=0xFFFF, nodes={0x1111: {MIG}, 0x2222: {MIG}})
    assert _smt(s, fixed(1.0), source=0x1111) == 0x2222


def test_select_migration_target_honors_daemon_filter(cls):
    s = make(cls, local=0xFFFF, nodes={0x1111: {MIG, "hardware.gpu"}, 0x2222: {MIG}})
    assert _smt(s, fixed(1.0), flt=ANY.require_tag("hardware.gpu")) == 0x1111


def test_select_migration_target_uses_rtt_before_node_id(cls):
    s = make(cls, local=0xFFFF, nodes={0x1111: {MIG}, 0x2222: {MIG}, 0x3333: {MIG}})
    assert _smt(s, fixed(1.0), tb=TieBreakContext({0x3333: 10, 0x2222: 20})) == 0x3333


# --------------------------------------------------------------------------- place_migration_v2

def test_place_migration_v2_prefers_local(cls):
    """Item 20 (CR-21): lex tie-break no longer makes the smallest remote win."""
    s = make(cls, local=0x3333, nodes={0x1111: {MIG}, 0x2222: {MIG}, 0x3333: {MIG}})
    assert s.place_migration_v2(ANY, 0x9999) == PlacementDecision(0x3333, PlacementReason.LOCAL_PREFERRED)


def test_place_migration_v2_stamps_best_score_reason(cls):
    s = make(cls, nodes={0x3333: {MIG}, 0x2222: {MIG}})
    assert s.place_migration_v2(ANY, 0x1111) == PlacementDecision(0x2222, PlacementReason.BEST_SCORE)


def test_place_migration_v2_excludes_source_node(cls):
    s = make(cls, nodes={0x1111: {MIG}, 0x2222: {MIG}})
    assert s.place_migration_v2(ANY, 0x1111) == PlacementDecision(0x2222, PlacementReason.BEST_SCORE)


def test_place_migration_v2_without_targets_raises_no_candidate(cls):
    with pytest.raises(NoCandidate):
        make(cls, nodes={0x1111: {MIG}}).place_migration_v2(ANY, 0x1111)


# --------------------------------------------------------------------------- member / promotion selection

def _member(s, exclude=(), placement=None, flt=ANY):
    return s.select_member_node(ART, flt, set(exclude), placement or fixed(0.5), NO_RTT)


def test_select_member_node_picks_best_with_empty_exclusion(cls):
    assert _member(make(cls, local=0xFFFF, nodes={0x3333: (), 0x1111: (), 0x2222: ()})) == 0x1111


def test_select_member_node_excludes_already_placed_members(cls):
    assert _member(make(cls, local=0xFFFF, nodes={0x1111: (), 0x2222: (), 0x3333: ()}), {0x1111}) == 0x2222


def test_select_member_node_returns_none_when_all_excluded(cls):
    assert _member(make(cls, local=0xFFFF, nodes={0x1111: (), 0x2222: ()}), {0x1111, 0x2222}) is None


def test_select_member_node_combines_exclusion_with_filter_veto(cls):
    s = make(cls, local=0xFFFF, nodes={0x1111: (), 0x2222: (), 0x3333: ()})
    assert _member(s, {0x1111}, fixed(1.0, veto=(0x2222,))) == 0x3333


def test_select_member_node_honours_the_requirements_filter(cls):
    s = make(cls, local=0xFFFF, nodes={0x1111: (), 0x2222: {"gpu"}})
    assert _member(s, flt=ANY.require_tag("gpu")) == 0x2222


def test_select_promotion_target_picks_highest_scoring_standby(cls):
    s = make(cls, local=0xFFFF)
    assert s.select_promotion_target([0x1111, 0x2222], ART, ScoreTable({0x1111: 0.3, 0x2222: 0.9}), NO_RTT) == 0x2222


def test_select_promotion_target_empty_roster_returns_none(cls):
    assert make(cls).select_promotion_target([], ART, fixed(1.0), NO_RTT) is None


def test_select_promotion_target_returns_none_when_all_vetoed(cls):
    assert make(cls).select_promotion_target([1, 2], ART, fixed(1.0, veto=(1, 2)), NO_RTT) is None


def test_select_promotion_target_does_not_consult_the_index(cls):
    assert make(cls).select_promotion_target([7, 5], ART, fixed(1.0), NO_RTT) == 5


# --------------------------------------------------------------------------- pick_best_candidate / tie-break

def _pick(s, candidates, table, tb=NO_RTT):
    return s.pick_best_candidate(candidates, ART, table, tb)


def test_pick_best_candidate_drops_nan_scores(cls):
    """Items 18 (CR-6): 0x2222 scores NaN and never wins; 0x1111 beats 0x3333 by lex."""
    s = make(cls)
    table = ScoreTable({0x1111: 0.5, 0x2222: math.nan, 0x3333: 0.5})
    for order in ([0x1111, 0x2222, 0x3333], [0x3333, 0x2222, 0x1111], [0x2222, 0x3333, 0x1111]):
        assert _pick(s, order, table) == 0x1111
    assert _pick(s, [0x2222], table) is None


def test_pick_best_candidate_max_pass_keeps_the_sort_tie_break_direction(cls):
    """Item 19 (#151): the max pass must pick the tie-break-best node, not the worst."""
    s = make(cls)
    ids = [0x5555, 0x1111, 0x9999, 0x3333]
    assert _pick(s, ids, fixed(0.7)) == 0x1111
    assert _pick(s, list(reversed(ids)), fixed(0.7)) == 0x1111
    assert _pick(s, ids, fixed(0.7), TieBreakContext({0x9999: 1, 0x1111: 5})) == 0x9999


@pytest.mark.parametrize("bad", [math.inf, -math.inf, 1e300, -1e300])
def test_pick_best_candidate_drops_infinite_and_f32_overflowing_scores(cls, bad):
    s = make(cls)
    assert _pick(s, [1, 2], ScoreTable({1: bad, 2: 0.0})) == 2
    assert _pick(s, [1], ScoreTable({1: bad})) is None


def test_pick_best_candidate_highest_finite_score_wins(cls):
    s = make(cls)
    table = ScoreTable({1: 0.1, 2: -5.0, 3: 0.9, 4: None, 5: 3.4e38})
    assert _pick(s, [1, 2, 3, 4], table) == 3
    assert _pick(s, [1, 2, 3, 4, 5], table) == 5


def test_pick_best_candidate_ties_scores_equal_as_f32(cls):
    s = make(cls)
    assert _pick(s, [2, 1], ScoreTable({1: 0.1, 2: 0.1 + 1e-12})) == 1
    assert _pick(s, [2, 1], ScoreTable({1: -0.0, 2: 0.0})) == 1


def test_pick_best_candidate_with_duplicate_ids_answers_that_id(cls):
    assert _pick(make(cls), [4, 4, 9, 4], ScoreTable({4: 1.0, 9: 0.5})) == 4


def test_pick_best_candidate_of_nothing_is_none(cls):
    assert _pick(make(cls), [], fixed(1.0)) is None


def test_tie_break_compare_without_rtt_prefers_the_smaller_id(cls):
    s = make(cls)
    assert s.tie_break_compare(1, 2, NO_RTT) == -1
    assert s.tie_break_compare(2, 1, NO_RTT) == 1
    assert s.tie_break_compare(7, 7, NO_RTT) == 0
    assert s.tie_break_compare(0, U64_MAX, TieBreakContext(resource_axis=ResourceAxis.STORAGE)) == -1


def test_tie_break_compare_lower_rtt_wins_over_a_smaller_id(cls):
    s = make(cls)
    tb = TieBreakContext({1: 50, 2: 10})
    assert s.tie_break_compare(2, 1, tb) == -1 and s.tie_break_compare(1, 2, tb) == 1


def test_tie_break_compare_a_known_rtt_beats_an_unknown_one(cls):
    s = make(cls)
    tb = TieBreakContext({9: 1_000_000})
    assert s.tie_break_compare(9, 1, tb) == -1 and s.tie_break_compare(1, 9, tb) == 1


def test_tie_break_compare_equal_or_missing_rtts_fall_through_to_the_id(cls):
    s = make(cls)
    assert s.tie_break_compare(3, 2, TieBreakContext({3: 5, 2: 5})) == 1
    assert s.tie_break_compare(3, 2, TieBreakContext({7: 5})) == 1
    assert s.tie_break_compare(3, 2, TieBreakContext({})) == 1


def test_tie_break_context_accepts_pairs_and_mappings_alike():
    assert TieBreakContext({2: 1, 1: 3}) == TieBreakContext([(1, 3), (2, 1)])
    assert TieBreakContext({2: 1}).rtt_of(2) == 1 and TieBreakContext({2: 1}).rtt_of(3) is None
    assert TieBreakContext().rtt_of(2) is None


# --------------------------------------------------------------------------- abstraction and self-check

def test_model_and_impl_abstract_equal_after_the_same_history():
    sides = [make(c, nodes={3: {"a"}}) for c in (model_mod.Scheduler, impl_mod.Scheduler)]
    for s in sides:
        s.add_node(1, {"a", "b"}); s.add_tag(3, "c"); s.remove_tag(1, "a"); s.add_node(2)
        s.remove_node(2); s.set_drained(True); s.set_local_caps({"z"})
    assert sides[0].abstract() == sides[1].abstract()
    assert hash(sides[0].abstract()) == hash(sides[1].abstract())
    sides[1].check_invariants()


def test_impl_check_invariants_detects_a_stale_inverted_index():
    s = make(impl_mod.Scheduler, nodes={1: {"a"}})
    s._by_tag["a"].add(99)
    with pytest.raises(AssertionError, match="inverted index"):
        s.check_invariants()


# --------------------------------------------------------------------------- properties

SCORES = st.one_of(
    st.none(),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.0, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(-2.0, 2.0),
)
IDS = st.integers(0, 12) | st.sampled_from([U64_MAX, U64_MAX - 1])


@st.composite
def pick_inputs(draw):
    candidates = draw(st.lists(IDS, max_size=14))
    universe = sorted(set(candidates) | {0, 1, 2})
    scores = draw(st.dictionaries(st.sampled_from(universe), SCORES))
    default = draw(SCORES)
    rtt = draw(st.none() | st.dictionaries(st.sampled_from(universe), st.integers(0, 3)))
    return candidates, ScoreTable(scores, default=default), TieBreakContext(rtt)


@settings(max_examples=250, deadline=None)
@given(pick_inputs())
def test_impl_max_pass_equals_the_model_sort_over_arbitrary_candidates(inputs):
    candidates, table, tb = inputs
    want = model_mod.Scheduler(0).pick_best_candidate(candidates, ART, table, tb)
    got = impl_mod.Scheduler(0).pick_best_candidate(candidates, ART, table, tb)
    assert got == want
    if want is not None:
        best = to_f32(table(want, ART))
        assert math.isfinite(best)
        for other in candidates:
            raw = table(other, ART)
            score = None if raw is None else to_f32(raw)
            if score is not None and math.isfinite(score):
                assert score < best or (score == best and
                                        model_mod.tie_break_compare(want, other, tb) <= 0)


MUTATION = st.one_of(
    st.tuples(st.just("add_node"), st.integers(0, 6), st.frozensets(st.sampled_from("abc"))),
    st.tuples(st.just("remove_node"), st.integers(0, 6)),
    st.tuples(st.just("add_tag"), st.integers(0, 6), st.sampled_from("abc")),
    st.tuples(st.just("remove_tag"), st.integers(0, 6), st.sampled_from("abc")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(MUTATION, max_size=25), st.frozensets(st.sampled_from("abc")), st.integers(0, 6))
def test_impl_index_queries_equal_the_model_full_scan_after_any_history(history, tags, excluded):
    m, i = model_mod.Scheduler(3), impl_mod.Scheduler(3)
    for name, *args in history:
        assert getattr(m, name)(*args) == getattr(i, name)(*args)
        i.check_invariants()
    flt = CapabilityFilter(tags)
    assert m.query_candidates(flt) == i.query_candidates(flt)
    assert m.find_migration_targets(flt, excluded) == i.find_migration_targets(flt, excluded)
    for drained in (False, True):
        try:
            want = m.place_with_locality(flt, drained)
        except NoCandidate as e:
            want = e
        try:
            got = i.place_with_locality(flt, drained)
        except NoCandidate as e:
            got = e
        assert got == want
    assert m.abstract() == i.abstract()
