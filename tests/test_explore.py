"""The fingerprinting model checker: pinned state counts, workers, symmetry, shortest
counterexamples that replay, witnesses, coverage, mutants at their bounds, and the CLI."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import attrs
import pytest

from meshspec import explore as explore_mod
from meshspec import registry, traces
from meshspec.cli import main
from meshspec.explore import (Exploration, explore, fingerprint, freeze, restore, run_mutant,
                              snapshot, visited_bytes)
from meshspec.lockstep import Lockstep
from mutants.shard_mapper import ProvisioningRoutable

MAPPER = registry.get_component("shard_mapper")


def test_shard_mapper_small_bound_has_the_pinned_state_and_edge_counts():
    result = explore(MAPPER, MAPPER.impl_cls, MAPPER.exploration, bound="small")
    assert result.failure is None, result.failure
    assert result.depth == 3
    # 876 = 2 inits + 14 + 111 + 749 new (view, symmetry) states at depths 1, 2, 3.
    assert result.states == 876
    # 2794 = 22 actions x 127 states at depth <= 2 (the depth-3 states are not expanded).
    assert result.edges == 2794


def test_every_sometimes_witness_is_reached_within_the_small_bound():
    from properties.shard_mapper import FUZZ_ONLY_WITNESSES

    result = explore(MAPPER, MAPPER.impl_cls, MAPPER.exploration, bound="small")
    assert set(result.unreached) <= set(FUZZ_ONLY_WITNESSES), result.unreached


def test_witnesses_not_reached_within_the_bound_are_listed_as_unreachable():
    result = explore(MAPPER, MAPPER.impl_cls, MAPPER.exploration, 0, bound="small")
    assert "stopped_shard_removed" in result.unreached
    assert result.states == 2 and result.edges == 0


def test_exploration_finds_routable_provisioning_shard_by_a_shortest_path():
    result = explore(MAPPER, ProvisioningRoutable, MAPPER.exploration, bound="small")
    assert result.failure is not None
    assert result.failure.name == "select_routes_only_to_lightest_active"
    assert result.failure.step == 2  # init, provision, then any rebuild of the table


def test_two_workers_find_the_same_states_edges_and_counterexample_as_one(monkeypatch):
    one = explore(MAPPER, MAPPER.impl_cls, MAPPER.exploration, bound="small", workers=1)
    two = explore(MAPPER, MAPPER.impl_cls, MAPPER.exploration, bound="small", workers=2)
    assert (one.states, one.edges, one.depth) == (two.states, two.edges, two.depth)
    monkeypatch.setattr(explore_mod, "FORK_AT", 1)  # fork before the failing level
    bad1 = explore(MAPPER, ProvisioningRoutable, MAPPER.exploration, bound="small", workers=1)
    bad2 = explore(MAPPER, ProvisioningRoutable, MAPPER.exploration, bound="small", workers=2)
    assert bad1.failure.steps == bad2.failure.steps
    assert (bad1.states, bad1.edges) == (bad2.states, bad2.edges)


def assert_same_verdicts_on_every_mutant(one, other) -> None:
    """Two explorations of the mapper agree on every mutant's verdict and depth."""
    for m in MAPPER.mutants:
        bound = MAPPER.exploration.mutant_bounds[m.name]
        a = explore(MAPPER, m.cls, one, bound=bound)
        b = explore(MAPPER, m.cls, other, bound=bound)
        assert (a.verdict, a.depth) == (b.verdict, b.depth), m.name


def test_symmetry_on_and_off_gives_the_same_verdict_on_every_shard_mapper_mutant():
    assert_same_verdicts_on_every_mutant(MAPPER.exploration,
                                         attrs.evolve(MAPPER.exploration, symmetry=None))


def test_symmetry_merges_states_that_differ_only_in_latency_sample_order():
    actions = (("record_push", (1, 10)), ("record_push", (1, 0)))
    ex = attrs.evolve(MAPPER.exploration, actions=actions, bounds={"b": 2})
    on = explore(MAPPER, MAPPER.impl_cls, ex, bound="b")
    off = explore(MAPPER, MAPPER.impl_cls, attrs.evolve(ex, symmetry=None), bound="b")
    assert off.states - on.states == 1  # [10, 0] and [0, 10] are one state with symmetry


def test_every_shard_mapper_mutant_is_found_at_its_configured_bound():
    for m in MAPPER.mutants:
        run = run_mutant(MAPPER, m)
        assert run.verdict.startswith("found"), (m.name, run.verdict)


def test_a_restored_snapshot_rebinds_the_mapper_callbacks_to_the_copied_subject():
    ls = Lockstep(MAPPER)
    ls.step("init", *MAPPER.exploration.inits[0])
    model, impl = restore(snapshot((ls.model, ls.impl)))
    assert model.sut._on_created.func.__self__ is model
    assert impl.sut._on_removed.func.__self__ is impl
    copied, _ = copy.deepcopy((ls.model, ls.impl))
    assert copied.sut._on_created.func.__self__ is copied


def test_fingerprints_do_not_depend_on_the_process_string_hash_seed():
    value = (frozenset({"alpha", "beta", "gamma", "delta"}), {"x": {1, 2}, "y": [1.5, float("nan")]})
    code = ("from meshspec.explore import fingerprint; "
            "print(fingerprint((frozenset({'alpha','beta','gamma','delta'}), "
            "{'x': {1, 2}, 'y': [1.5, float('nan')]})))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2", "3")}
    assert outs == {str(fingerprint(value))}


def test_a_value_whose_repr_holds_an_address_is_refused_for_fingerprinting():
    with pytest.raises(TypeError, match="address"):
        freeze(object())


def test_the_visited_set_costs_at_most_200_bytes_per_state():
    assert visited_bytes(50_000) <= 200


def test_fuzz_coverage_reports_a_fraction_of_the_bounded_space(monkeypatch):
    result = explore(MAPPER, MAPPER.impl_cls, MAPPER.exploration, 2, bound="small", keep_visited=True)
    fraction = explore_mod.fuzz_coverage(MAPPER, MAPPER.impl_cls, MAPPER.exploration, "small",
                                         result.visited, profile="dev")
    assert 0.0 < fraction <= 1.0


def test_explore_verb_exports_a_replayable_shortest_trace(tmp_path, capsys):
    code = main(["explore", "shard_mapper", "--impl", "mutants.shard_mapper:ProvisioningRoutable",
                 "--export", str(tmp_path), "--workers", "2"])
    assert code == 1
    (json_path,) = tmp_path.glob("*.json")
    trace = traces.load(json_path)
    assert traces.replay(MAPPER, ProvisioningRoutable, trace.steps).matches(trace.failure)
    assert main(["replay", str(json_path)]) == 1


def test_explore_verb_prints_counts_witnesses_and_verdict(capsys):
    assert main(["explore", "shard_mapper", "--bound", "small"]) == 0
    out = capsys.readouterr().out
    assert "876 distinct states, 2,794 edges" in out and "verdict: ok" in out
    from properties.shard_mapper import FUZZ_ONLY_WITNESSES

    (line,) = [x for x in out.splitlines() if "sometimes unreachable at bound small:" in x]
    assert set(line.split(": ", 1)[1].split(", ")) <= set(FUZZ_ONLY_WITNESSES)


def test_explore_rejects_an_unknown_bound(capsys):
    assert main(["explore", "shard_mapper", "--bound", "huge"]) == 2
    assert "unknown bound" in capsys.readouterr().err


def test_explore_rejects_zero_workers_and_recording_a_foreign_impl(capsys):
    assert main(["explore", "shard_mapper", "--workers", "0"]) == 2
    assert main(["explore", "shard_mapper", "--record", "--impl", "impl.shard_mapper:ShardMapper"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("meshspec: error: ") for line in err)


def test_a_component_without_exploration_is_refused_with_the_explorable_ones(monkeypatch, capsys):
    bare = attrs.evolve(MAPPER, name="bare", exploration=None)
    real = registry.get_component
    monkeypatch.setattr(registry, "COMPONENT_MODULES", {**registry.COMPONENT_MODULES, "bare": "-"})
    monkeypatch.setattr(registry, "get_component", lambda n: bare if n == "bare" else real(n))
    assert main(["explore", "bare"]) == 2
    err = capsys.readouterr().err
    assert "no bounded exploration" in err and "shard_mapper" in err


def test_explore_mutants_record_writes_the_results_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "explore-results.json"
    monkeypatch.setattr(explore_mod, "RESULTS_PATH", path)
    small = attrs.evolve(MAPPER, mutants=MAPPER.mutants[:2])
    monkeypatch.setattr(registry, "get_component", lambda n: small)
    assert main(["explore", "shard_mapper", "--mutants", "--record"]) == 0
    recorded = json.loads(path.read_text())["shard_mapper"]
    assert set(recorded) == {m.name for m in MAPPER.mutants[:2]}
    assert all(r["verdict"].startswith("found") for r in recorded.values())
    assert {n: r["bound"] for n, r in recorded.items()} == {
        m.name: MAPPER.exploration.mutant_bounds[m.name] for m in MAPPER.mutants[:2]}


def test_report_gives_each_mutant_its_recorded_explore_bound_and_seconds():
    from meshspec.report import explore_cell

    assert explore_cell({"bound": "medium", "verdict": "found: x", "seconds": 5.2}) == "`medium`, 5.2 s"
    assert explore_cell({"bound": "-", "verdict": "unreachable: needs 2^16 ids", "seconds": None}) \
        == "unreachable: needs 2^16 ids"
    assert explore_cell(None) == "not recorded"


def test_recording_merges_one_component_without_touching_the_others(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"other": {"m": {"bound": "small"}}}))
    explore_mod.record_results("shard_mapper", [explore_mod.MutantRun("m1", "small", "found: x", 1.0, 2)], path)
    doc = json.loads(path.read_text())
    assert doc["other"] == {"m": {"bound": "small"}}
    assert doc["shard_mapper"]["m1"] == {"bound": "small", "verdict": "found: x", "seconds": 1.0, "depth": 2}


def _view_broken_after_provisioning(s):
    from properties.shard_mapper import explore_view

    return object() if len(s.allocated) > 2 else explore_view(s)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_view_that_cannot_be_fingerprinted_is_an_explore_error_with_any_workers(workers, monkeypatch):
    monkeypatch.setattr(explore_mod, "FORK_AT", 1)  # the error comes from a forked worker
    broken = attrs.evolve(MAPPER.exploration, view=_view_broken_after_provisioning, symmetry=None)
    with pytest.raises(explore_mod.ExploreError, match="address"):
        explore(MAPPER, MAPPER.impl_cls, broken, 2, bound="small", workers=workers)


def test_the_explore_verb_reports_a_broken_exploration_in_one_line(monkeypatch, capsys):
    broken = attrs.evolve(MAPPER, exploration=attrs.evolve(MAPPER.exploration, view=lambda s: object()))
    monkeypatch.setattr(registry, "get_component", lambda n: broken)
    assert main(["explore", "shard_mapper"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("meshspec: error: exploration of shard_mapper failed")


def test_impl_view_joins_the_identity_and_splits_states_the_model_view_merges():
    ex = attrs.evolve(MAPPER.exploration, bounds={"b": 2},
                      actions=(("advance_time", (3600 * 10**9,)), ("evaluate_scaling", ())))
    merged = explore(MAPPER, MAPPER.impl_cls, ex, bound="b")
    split = explore(MAPPER, MAPPER.impl_cls, attrs.evolve(ex, impl_view=lambda s: s.clock()), bound="b")
    assert merged.states == 2  # an hour later every age is saturated: the same two states
    assert split.states == 6  # the impl's absolute clock tells 0, 1 and 2 hours apart


def test_fuzz_coverage_steps_as_deep_as_the_bound_and_can_see_every_state():
    actions = (("scale_up", (1,)), ("record_push", (1, 10)), ("advance_time", (100 * 10**6,)))
    ex = attrs.evolve(MAPPER.exploration, actions=actions, bounds={"one": 1})
    result = explore(MAPPER, MAPPER.impl_cls, ex, bound="one", keep_visited=True)
    fraction = explore_mod.fuzz_coverage(MAPPER, MAPPER.impl_cls, ex, "one", result.visited, profile="ci")
    assert fraction == 1.0  # every depth-1 state; with steps counted wrong only the inits


def test_an_unknown_bound_is_an_explore_error():
    with pytest.raises(explore_mod.ExploreError, match="unknown bound 'huge'"):
        explore(MAPPER, MAPPER.impl_cls, MAPPER.exploration, bound="huge")


def test_every_mutant_bound_names_a_curated_mutant_and_a_declared_bound_or_a_reason():
    for comp in registry.all_components():
        if comp.exploration is None:
            continue
        names = {m.name for m in comp.mutants}
        for mutant_name, bound in comp.exploration.mutant_bounds.items():
            assert mutant_name in names, (comp.name, mutant_name)
            assert bound in comp.exploration.bounds or bound.startswith("unreachable: "), (comp.name, bound)


def test_the_age_view_finds_every_mutant_at_the_same_depth_as_the_full_default_view():
    assert_same_verdicts_on_every_mutant(MAPPER.exploration,
                                         attrs.evolve(MAPPER.exploration, view=None, symmetry=None))


def test_the_age_view_merges_states_the_full_default_view_keeps_apart():
    full = attrs.evolve(MAPPER.exploration, view=None, symmetry=None)
    aged = explore(MAPPER, MAPPER.impl_cls, MAPPER.exploration, bound="small")
    absolute = explore(MAPPER, MAPPER.impl_cls, full, bound="small")
    assert aged.states < absolute.states and aged.failure is None and absolute.failure is None


def test_rng_states_past_the_interning_table_are_snapshotted_whole_and_restore_exactly(monkeypatch):
    monkeypatch.setattr(explore_mod, "RNG_TABLE_MAX", 0)
    ls = Lockstep(MAPPER)
    ls.step("init", *MAPPER.exploration.inits[0])
    ls.model.rng.random()
    model, _ = restore(snapshot((ls.model, ls.impl)))
    assert model.rng.getstate() == ls.model.rng.getstate()
    assert model.sut._clock is model.clock  # one memo: the mapper still reads the subject's clock


def test_a_kv_component_explores_on_the_embedded_etcd_even_when_a_server_is_configured(monkeypatch):
    comp = registry.get_component("capacity")
    monkeypatch.setenv("MESHSPEC_ETCD", "http://127.0.0.1:1")  # a dead server: must never be used
    result = explore(comp, comp.impl_cls, comp.exploration, bound="small")
    assert result.failure is None and result.states == 260  # the pinned small count
    assert os.environ["MESHSPEC_ETCD"] == "http://127.0.0.1:1"


def test_recording_a_bound_stores_its_figures_for_the_report(tmp_path, monkeypatch, capsys):
    from meshspec import report

    path = tmp_path / "bounds.json"
    monkeypatch.setattr(explore_mod, "BOUNDS_PATH", path)
    monkeypatch.setattr(report, "BOUNDS_PATH", path)
    assert main(["explore", "capacity", "--bound", "small", "--record"]) == 0
    recorded = explore_mod.load_results(path)["capacity"]["small"]
    assert (recorded["states"], recorded["edges"], recorded["verdict"]) == (260, 630, "ok")
    table = report.exploration_table(registry.get_component("capacity"))
    assert "| `small`" in table and "260" in table and "not recorded" in table  # large is not
