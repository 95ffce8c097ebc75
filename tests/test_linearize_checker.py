"""The linearizability checker on hand-written histories, and against a brute-force search."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshspec.linearize import (
    Event,
    HistoryError,
    ModelError,
    Operation,
    SequentialModel,
    brute_force_linearizable,
    cas_register_model,
    check,
    history_from_events,
    kv_model,
    number,
    register_model,
)


def ops(*items: tuple) -> list[Operation]:
    """(client, op, args, call, ret, result[, outcome]) tuples as numbered operations."""
    return number(Operation(c, o, a, call, ret, res, *rest) for c, o, a, call, ret, res, *rest in items)


def test_a_read_overlapping_a_write_may_see_either_value() -> None:
    for seen in (0, 1):
        h = ops((0, "write", (1,), 0, 10, None), (1, "read", (), 5, 15, seen))
        assert check(h, register_model()).linearizable


def test_a_stale_read_after_a_completed_write_is_not_linearizable() -> None:
    h = ops((0, "write", (1,), 0, 10, None), (1, "read", (), 20, 30, 0))
    result = check(h, register_model())
    assert not result.linearizable
    assert {op.id for op in result.minimal} == {0, 1}


def test_reads_going_back_in_time_are_not_linearizable() -> None:
    h = ops((0, "write", (1,), 0, 100, None), (1, "read", (), 10, 20, 1), (2, "read", (), 30, 40, 0))
    assert not check(h, register_model()).linearizable


def test_an_indeterminate_write_may_take_effect_late() -> None:
    h = ops((0, "write", (1,), 0, None, None, "info"), (1, "read", (), 20, 30, 0),
            (1, "read", (), 40, 50, 1))
    assert check(h, register_model()).linearizable


def test_an_indeterminate_write_may_never_take_effect() -> None:
    h = ops((0, "write", (1,), 0, None, None, "info"), (1, "read", (), 20, 30, 0))
    assert check(h, register_model()).linearizable


def test_an_indeterminate_write_cannot_take_effect_before_its_invocation() -> None:
    h = ops((1, "read", (), 0, 10, 1), (0, "write", (1,), 20, None, None, "info"))
    assert not check(h, register_model()).linearizable


def test_a_failed_write_is_dropped_and_cannot_explain_a_read() -> None:
    h = ops((0, "write", (1,), 0, 10, None, "fail"), (1, "read", (), 20, 30, 1))
    result = check(h, register_model())
    assert not result.linearizable and result.dropped == 1


def test_two_successful_cas_from_the_same_value_are_not_linearizable() -> None:
    h = ops((0, "cas", (0, 1), 0, 10, True), (1, "cas", (0, 2), 0, 10, True))
    result = check(h, cas_register_model())
    assert not result.linearizable
    assert len(result.minimal) == 2
    assert "cas(0, 2)" in result.explain()


def test_one_winner_of_two_concurrent_cas_is_linearizable() -> None:
    h = ops((0, "cas", (0, 1), 0, 10, True), (1, "cas", (0, 2), 0, 10, False),
            (1, "read", (), 20, 30, 1))
    assert check(h, cas_register_model()).linearizable


def test_the_minimal_sub_history_drops_unrelated_operations() -> None:
    noise = [(2, "read", (), 100 + 10 * k, 105 + 10 * k, 0) for k in range(20)]
    h = ops(*noise, (0, "cas", (0, 6), 400, 410, True), (1, "read", (), 420, 430, 0))
    result = check(h, cas_register_model())
    assert not result.linearizable
    assert [op.op for op in sorted(result.minimal, key=lambda o: o.call)] == ["cas", "read"]


def test_partitions_are_checked_separately_and_a_bad_key_is_named() -> None:
    h = ops((0, "write", ("a", 1), 0, 10, None), (1, "write", ("b", 2), 0, 10, None),
            (0, "read", ("a",), 20, 30, 1), (1, "read", ("b",), 20, 30, 0))
    result = check(h, kv_model())
    assert not result.linearizable and result.failing_partition == "b" and result.partitions == 2


def test_events_pair_into_operations_and_an_unreturned_invoke_is_indeterminate() -> None:
    events = [Event("invoke", 0, "write", (1,), 0), Event("invoke", 1, "read", (), 1),
              Event("ok", 0, "write", (1,), 5), Event("ok", 1, "read", (), 6, 1),
              Event("invoke", 0, "write", (2,), 7)]
    h = history_from_events(events)
    assert [(o.op, o.ret, o.outcome) for o in h] == [("write", 5, "ok"), ("read", 6, "ok"),
                                                      ("write", None, "info")]
    assert check(h, register_model()).linearizable


def test_malformed_event_streams_are_refused() -> None:
    with pytest.raises(HistoryError):
        history_from_events([Event("ok", 0, "read", (), 1)])
    with pytest.raises(HistoryError):
        history_from_events([Event("invoke", 0, "read", (), 1), Event("invoke", 0, "read", (), 2)])


def test_a_model_that_raises_is_reported_with_the_operation() -> None:
    def step(state: int, op: str, args: tuple) -> tuple:
        raise RuntimeError("boom")

    with pytest.raises(ModelError, match="boom.*client 0"):
        check(ops((0, "read", (), 0, 1, 0)), SequentialModel(lambda: 0, step))


@st.composite
def small_histories(draw: st.DrawFn) -> list[Operation]:
    """Up to 6 ops over 3 clients on a CAS register with values 0..2 and random results."""
    n = draw(st.integers(0, 6))
    items = []
    clock = {c: 0 for c in range(3)}
    for _ in range(n):
        c = draw(st.integers(0, 2))
        call = clock[c] + draw(st.integers(0, 6))
        ret = call + draw(st.integers(0, 6))
        clock[c] = ret + 1
        kind = draw(st.sampled_from(["read", "write", "cas"]))
        args = {"read": (), "write": (draw(st.integers(0, 2)),),
                "cas": (draw(st.integers(0, 2)), draw(st.integers(0, 2)))}[kind]
        result = {"read": draw(st.integers(0, 2)), "write": None, "cas": draw(st.booleans())}[kind]
        outcome = draw(st.sampled_from(["ok", "ok", "ok", "info", "fail"]))
        items.append((c, kind, args, call, None if outcome == "info" else ret, result, outcome))
    return ops(*items)


@settings(max_examples=300, deadline=None)
@given(small_histories())
def test_the_memoised_search_agrees_with_brute_force(history: list[Operation]) -> None:
    model = cas_register_model()
    assert check(history, model).linearizable == brute_force_linearizable(history, model)


@settings(max_examples=60, deadline=None)
@given(small_histories())
def test_the_minimal_sub_history_is_non_linearizable_with_a_consistent_context(
        history: list[Operation]) -> None:
    model = cas_register_model()
    result = check(history, model)
    if result.linearizable:
        return
    minimal = sorted(result.minimal, key=lambda o: (o.call, o.id))
    assert set(minimal) <= set(history)
    assert not brute_force_linearizable(minimal, model)
    assert brute_force_linearizable(minimal[:-1], model)


def test_the_minimal_sub_history_keeps_what_made_the_culprit_possible() -> None:
    # the write of 1 made "cas(1, 2) succeeded" possible, the write of 3 makes it impossible
    h = ops((0, "write", (1,), 0, 10, None), (1, "read", (), 20, 30, 1),
            (0, "write", (3,), 40, 50, None), (1, "cas", (1, 2), 60, 70, True))
    result = check(h, cas_register_model())
    assert [op.id for op in sorted(result.minimal, key=lambda o: o.call)] == [0, 2, 3]


def test_the_agreement_check_catches_a_memo_key_that_forgets_the_state() -> None:
    # Known-bad variant: a state key that confuses states makes the memo prune a live branch.
    forgetful = SequentialModel(lambda: 0, cas_register_model().step, key=lambda state: 0)
    h = ops((0, "write", (1,), 0, 10, None), (1, "write", (2,), 0, 10, None),
            (2, "read", (), 20, 30, 1))
    assert brute_force_linearizable(h, forgetful)
    assert not check(h, forgetful).linearizable
    assert check(h, cas_register_model()).linearizable


def test_a_late_stale_read_in_a_long_history_shrinks_to_three_operations() -> None:
    writes = [(0, "write", (v,), 10 * v, 10 * v + 5, None) for v in range(1, 401)]
    h = ops(*writes, (1, "read", (), 5000, 5010, 1))
    result = check(h, register_model())
    assert not result.linearizable
    minimal = sorted(result.minimal, key=lambda o: o.call)
    assert len(minimal) == 3
    assert minimal[0].args == (1,) and minimal[1].op == "write" and minimal[2].op == "read"
