"""The `races` component: every fixed protocol passes every schedule (counts pinned), every
historical one is refuted with a shortest schedule that is exported and replayed, random
mode refutes them too, and the verbs show and run them like the other components."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshspec import interleave as il
from meshspec.cli import main
from properties import races
from properties.races import RACES

NAMES = [r.name for r in RACES]

# shortest failing schedule of each historical protocol (steps), found by the exhaustive search
SHORTEST = {"packed_latency": 6, "set_draining": 4, "activate_increment": 9, "cooldown_gate": 17,
            "lb_connection_cap": 6, "probe_slot_scan": 13, "strict_half_open": 14,
            "etcd_cas_acquire": 10}


@pytest.mark.parametrize("name", NAMES)
def test_the_fixed_protocol_holds_in_every_schedule_with_a_pinned_schedule_count(name):
    race = races.get(name)
    r = il.explore(race.program("fixed"))
    assert r.shortest is None, r.verdict
    assert r.schedules == race.fixed_schedules


@pytest.mark.parametrize("name", NAMES)
def test_the_historical_protocol_is_refuted_by_its_check_with_the_shortest_schedule(name):
    race = races.get(name)
    r = il.explore(race.program("historical"))
    assert r.shortest is not None
    assert r.shortest.violation.name == race.caught_by
    assert len(r.shortest.steps) == SHORTEST[name]


@pytest.mark.parametrize("name", NAMES)
def test_the_exported_shortest_schedule_replays_to_the_same_violation(name, tmp_path, capsys):
    assert main(["interleave", name, "--variant", "historical", "--export", str(tmp_path)]) == 1
    [trace] = list(tmp_path.glob(f"races-{name}-historical-*.json"))
    doc = json.loads(trace.read_text())
    assert doc["kind"] == "schedule" and doc["version"] == 2 and doc["component"] == "races"
    assert len(doc["schedule"]) == SHORTEST[name]
    assert all(set(s) == {"thread", "access"} for s in doc["schedule"])
    capsys.readouterr()
    assert main(["replay", str(trace)]) == 1
    out = capsys.readouterr().out
    assert "reproduces the recorded failure" in out and races.get(name).caught_by in out


def test_a_schedule_of_a_historical_protocol_no_longer_reproduces_on_the_fixed_one(tmp_path, capsys):
    main(["interleave", "lb_connection_cap", "--variant", "historical", "--export", str(tmp_path)])
    [trace] = list(tmp_path.glob("*.json"))
    doc = json.loads(trace.read_text())
    doc["variant"] = "fixed"
    trace.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["replay", str(trace)]) == 0
    assert "no longer reproduces" in capsys.readouterr().out


@pytest.mark.parametrize("doc,fragment", [
    ({"race": "nope"}, "unknown race"),
    ({"variant": "newest"}, "variant"),
    ({"schedule": [{"thread": "0"}]}, "schedule"),
    ({"schedule": [{"thread": 7, "access": "load x"}]}, "thread ids"),
])
def test_a_malformed_schedule_trace_is_one_line_and_exit_2(doc, fragment, tmp_path, capsys):
    base = {"format": "meshspec-trace", "version": 2, "kind": "schedule", "component": "races",
            "race": "lb_connection_cap", "variant": "historical", "schedule": [], "failure": None}
    path = tmp_path / "t.json"
    path.write_text(json.dumps({**base, **doc}))
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["lb_connection_cap", "strict_half_open", "activate_increment"])
def test_random_mode_refutes_a_historical_protocol_and_shrinks_its_schedule(name):
    found = il.random_search(races.get(name).program("historical"), max_examples=200)
    assert found is not None and found.violation.name == races.get(name).caught_by
    assert len(found.steps) <= SHORTEST[name] + 4  # shrunk: near the exhaustive shortest


def test_random_mode_finds_nothing_in_a_fixed_protocol():
    assert il.random_search(races.get("lb_connection_cap").program("fixed"), max_examples=100) is None


def test_without_its_guard_both_coordinators_win_the_etcd_acquire():
    r = il.explore(races.get("etcd_cas_acquire").program("historical"))
    assert "2 coordinators acquired shard" in r.shortest.violation.message
    steps = r.shortest.steps
    read_1 = steps.index((1, "atomic_read etcd: read shard record + owner -> mod_revision 3, "
                             "fence 1, owner key absent"))
    txn_0 = steps.index((0, "atomic etcd: guarded txn (0 compares) -> True"))
    assert read_1 < txn_0  # coordinator 1 read before coordinator 0's txn, and still won


def test_two_coordinators_taking_over_an_expired_lease_also_leave_exactly_one_owner():
    import impl.capacity as impl_capacity

    fixed = il.explore(races.etcd_program(impl_capacity.EtcdCoordinator, "fixed", takeover=True))
    assert fixed.shortest is None and fixed.schedules == 106
    blind = il.explore(races.etcd_program(races.UnguardedCoordinator, "historical", takeover=True))
    assert "2 coordinators acquired shard" in blind.shortest.violation.message


def test_the_etcd_race_catches_counters_that_miss_another_coordinators_acquire():
    import impl.capacity as impl_capacity

    class MissesForeignAcquire(impl_capacity.EtcdCoordinator):
        def _detect_foreign_acquire(self, tenant, run, rs, shard):  # the pre-fix counters
            pass

    r = il.explore(races.etcd_program(MissesForeignAcquire, "stale"))
    assert r.shortest is not None and "counters say" in r.shortest.violation.message


def test_the_owner_compares_alone_also_keep_two_acquires_apart():
    # the mod_revision compare is not what separates two acquires: the owner compares
    # (absent / same value and lease) fail for the second txn as well
    r = il.explore(races.etcd_program(races.OwnerOnlyCoordinator, "owner_only"))
    assert r.shortest is None and r.schedules == races.get("etcd_cas_acquire").fixed_schedules


def test_list_shows_races_like_a_component(capsys):
    assert main(["list"]) == 0
    assert "races" in capsys.readouterr().out
    assert main(["list", "races"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in NAMES)


def test_mutants_races_refutes_every_historical_protocol(capsys):
    assert main(["mutants", "races"]) == 0
    out = capsys.readouterr().out
    assert f"{len(RACES)}/{len(RACES)} mutants caught" in out and "PASS" in out


def test_fuzz_races_runs_random_schedules_of_every_fixed_protocol(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["fuzz", "races", "--max-examples", "5"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in NAMES) and "PASS" in out


def test_mutants_only_runs_the_named_race_and_rejects_unknown_names(capsys):
    assert main(["mutants", "races", "--only", "strict_half_open"]) == 0
    out = capsys.readouterr().out
    assert "1/1 mutants caught" in out and "lb_connection_cap" not in out
    assert main(["mutants", "races", "--only", "nope"]) == 2
    assert "strict_half_open" in capsys.readouterr().err


@pytest.mark.parametrize("argv,fragment", [
    (["interleave", "nope"], "unknown race"),
    (["interleave", "--variant", "latest"], "--variant"),
    (["interleave", "--mode", "dfs"], "--mode"),
    (["interleave", "--preemptions", "-1"], "--preemptions"),
    (["interleave", "--mode", "random", "--no-reduce"], "exhaustive only"),
    (["interleave", "--max-examples", "0"], "--max-examples"),
    (["explore", "races"], "meshspec interleave"),
    (["fuzz", "races", "--impl", "x:Y"], "--impl"),
])
def test_bad_interleave_input_is_one_line_and_exit_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_interleave_with_a_preemption_bound_and_without_reduction(capsys, tmp_path):
    assert main(["interleave", "lb_connection_cap", "--preemptions", "1", "--export", str(tmp_path)]) == 0
    assert "at most 1 preemptions" in capsys.readouterr().out
    assert main(["interleave", "cooldown_gate", "--no-reduce", "--export", str(tmp_path)]) == 0
    assert "132 schedules" in capsys.readouterr().out
