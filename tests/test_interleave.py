"""The interleaving checker on tiny programs whose verdicts are known by hand: a lost update,
a deadlock, a transient invariant breach, a livelock, raising threads; the sleep-set
reduction against the full search; the preemption bound; random mode and its shrinking."""
from __future__ import annotations

from typing import Any

import pytest

from meshspec import interleave as il
from meshspec.interleave import (Program, Shared, acquire, fetch_add, load, read_acquire,
                                 read_release, release, store)


def counter_setup() -> Shared:
    return Shared({"count": 0})


def plain_increment(s: Shared) -> Any:
    value = yield load("count")
    yield store("count", value + 1)


def atomic_increment(s: Shared) -> Any:
    yield fetch_add("count", 1)


def locked_increment(s: Shared) -> Any:
    yield acquire("m")
    value = yield load("count")
    yield store("count", value + 1)
    yield release("m")


def counted(n: int) -> Any:
    def post(s: Shared) -> None:
        assert s.mem["count"] == n, f"count is {s.mem['count']}, {n} increments ran"
    post.__name__ = "all_increments_counted"
    return post


def lost_update(threads: int = 2) -> Program:
    return Program("lost_update", counter_setup, (plain_increment,) * threads,
                   postcondition=counted(threads))


def test_lost_update_on_a_plain_load_store_counter_is_found_with_its_shortest_schedule():
    r = il.explore(lost_update())
    assert r.shortest is not None and r.shortest.violation.name == "all_increments_counted"
    assert [t for t, _ in r.shortest.steps] == [0, 1, 0, 1]
    assert r.shortest.steps[1] == (1, "load count -> 0")
    assert (r.schedules, r.violations) == (4, 2)


def test_fetch_add_and_a_mutex_make_the_counter_correct_in_every_schedule():
    for thread in (atomic_increment, locked_increment):
        r = il.explore(Program("ok", counter_setup, (thread,) * 3, postcondition=counted(3)))
        assert r.shortest is None, r.verdict
    # three fetch_adds all conflict: 3! orders; the mutex serialises whole bodies: 3! orders
    assert il.explore(Program("fa", counter_setup, (atomic_increment,) * 3)).schedules == 6
    assert il.explore(Program("lk", counter_setup, (locked_increment,) * 3)).schedules == 6


def lock_pair(first: str, second: str) -> Any:
    def thread(s: Shared) -> Any:
        yield acquire(first)
        yield acquire(second)
        yield release(second)
        yield release(first)
    return thread


def test_opposite_lock_order_deadlocks_and_blocked_threads_are_not_scheduled():
    setup = lambda: Shared({})  # noqa: E731
    bad = il.explore(Program("abba", setup, (lock_pair("a", "b"), lock_pair("b", "a"))))
    assert bad.shortest is not None and bad.shortest.violation.kind == "deadlock"
    assert len(bad.shortest.steps) == 2
    good = il.explore(Program("abab", setup, (lock_pair("a", "b"), lock_pair("a", "b"))))
    assert good.shortest is None and good.schedules == 2


def test_the_invariant_is_checked_after_every_step_not_only_at_the_end():
    def setup() -> Shared:
        return Shared({"a": 0, "b": 0})

    def transfer(s: Shared) -> Any:  # a and b briefly disagree, then agree again
        yield store("a", 1)
        yield store("b", 1)

    def same(s: Shared) -> None:
        assert s.mem["a"] == s.mem["b"], "a != b"

    r = il.explore(Program("transient", setup, (transfer,), invariant=same,
                           visible=frozenset({"a", "b"})))
    assert r.shortest is not None and r.shortest.violation.step == 0


def test_reader_locks_share_and_writers_exclude():
    def setup() -> Shared:
        return Shared({"x": 0})

    def reader(s: Shared) -> Any:
        yield read_acquire("rw")
        s.ghost["inside"] = s.ghost.get("inside", 0) + 1
        s.ghost["max"] = max(s.ghost.get("max", 0), s.ghost["inside"])
        yield load("x")
        s.ghost["inside"] -= 1
        yield read_release("rw")

    def writer(s: Shared) -> Any:
        yield acquire("rw")
        yield store("x", 1)
        yield release("rw")

    seen = []
    prog = Program("rw", setup, (reader, reader, writer),
                   postcondition=lambda s: seen.append(s.ghost.get("max")) or True)
    r = il.explore(prog, reduce=False)
    assert r.shortest is None and 2 in seen  # both readers inside together in some schedule


def test_a_thread_that_raises_or_spins_forever_is_a_violation_not_a_crash():
    def boom(s: Shared) -> Any:
        yield load("count")
        raise ZeroDivisionError("division by zero")

    r = il.explore(Program("boom", counter_setup, (boom, atomic_increment)))
    assert r.shortest.violation.kind == "exception"
    assert "ZeroDivisionError" in r.shortest.violation.message

    def spin(s: Shared) -> Any:
        while (yield load("count")) == 0:
            pass

    r = il.explore(Program("spin", counter_setup, (spin,)), max_steps=20)
    assert r.shortest.violation.kind == "step bound"


def final_states(program: Program, reduce: bool) -> tuple[bool, set]:
    r = il.explore(program, reduce=reduce)
    return r.shortest is not None, r.finals


@pytest.mark.parametrize("threads", [plain_increment, atomic_increment, locked_increment])
def test_sleep_set_reduction_keeps_the_verdict_and_every_reachable_final_state(threads):
    def setup() -> Shared:
        return Shared({"count": 0, "other": 0})

    def side(s: Shared) -> Any:  # independent of the counter: what the reduction prunes
        yield store("other", 1)
        yield load("other")

    for program in (Program("p", setup, (threads, threads, side)),
                    Program("q", setup, (threads, threads, side), postcondition=counted(2))):
        full, reduced = il.explore(program, reduce=False), il.explore(program)
        assert (full.shortest is None) == (reduced.shortest is None)
        assert full.finals == reduced.finals
        assert reduced.schedules < full.schedules
        if full.shortest is not None:
            assert len(full.shortest.steps) == len(reduced.shortest.steps)


# the full search of probe_slot_scan/fixed runs 180,980 schedules (about 30 s): nightly;
# etcd_cas_acquire sends every request to one location: nothing to reduce
FULL_SEARCH_SLOW = {("probe_slot_scan", "fixed")}


def race_programs(slow: bool) -> list[tuple[str, str]]:
    from properties.races import RACES

    return [(r.name, v) for r in RACES for v in ("fixed", "historical")
            if r.name != "etcd_cas_acquire" and ((r.name, v) in FULL_SEARCH_SLOW) == slow]


def check_reduction(name: str, variant: str) -> None:
    from properties.races import get

    program = get(name).program(variant)
    full, reduced = il.explore(program, reduce=False), il.explore(program)
    assert (full.shortest is None) == (reduced.shortest is None)
    assert full.finals == reduced.finals
    assert reduced.schedules <= full.schedules
    if full.shortest is not None:
        assert len(full.shortest.steps) == len(reduced.shortest.steps)


@pytest.mark.parametrize("name,variant", race_programs(slow=False))
def test_reduction_keeps_the_verdict_and_the_final_states_of_the_race_protocols(name, variant):
    check_reduction(name, variant)


@pytest.mark.nightly
@pytest.mark.parametrize("name,variant", race_programs(slow=True))
def test_reduction_keeps_the_verdict_and_the_final_states_of_the_large_race_protocols(name, variant):
    check_reduction(name, variant)


def test_the_preemption_bound_limits_context_switches_like_chess():
    assert il.explore(lost_update(), preemptions=0).shortest is None  # threads run to completion
    assert il.explore(lost_update(), preemptions=1).shortest is not None


def test_random_mode_finds_the_lost_update_and_shrinks_it_to_the_shortest_schedule():
    found = il.random_search(lost_update(3), max_examples=200)
    assert found is not None and found.violation.name == "all_increments_counted"
    assert len(found.steps) == 6  # every thread runs to completion; two of them interleaved
    assert il.random_search(Program("ok", counter_setup, (atomic_increment,) * 3,
                                    postcondition=counted(3)), max_examples=50) is None


def test_a_schedule_replays_deterministically_and_a_changed_program_is_noticed():
    r = il.explore(lost_update())
    threads = [t for t, _ in r.shortest.steps]
    again = il.run_schedule(lost_update(), threads)
    assert again.steps == r.shortest.steps and again.violation == r.shortest.violation
    fixed = Program("fixed", counter_setup, (locked_increment,) * 2, postcondition=counted(2))
    with pytest.raises(il.ScheduleMismatch):
        il.run_schedule(fixed, [0, 1, 0, 1])  # thread 1 blocks on the mutex at step 1


def test_random_mode_is_deterministic_for_a_seed():
    runs = [il.random_search(lost_update(3), max_examples=100, seed=7) for _ in range(2)]
    assert runs[0] is not None and runs[0].steps == runs[1].steps


def test_the_invariant_is_checked_in_the_initial_state():
    r = il.explore(Program("bad start", counter_setup, (atomic_increment,),
                           invariant=lambda s: s.mem["count"] > 0))
    assert r.shortest.violation.kind == "invariant" and r.shortest.violation.step == -1
