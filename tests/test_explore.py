"""Bounded exhaustive exploration: the impl survives every edge; a mutant is found at its
shortest depth, and the exported path replays."""
from __future__ import annotations

from meshspec import registry, traces
from meshspec.cli import main
from meshspec.explore import explore
from properties.shard_mapper import ProvisioningRoutable


def test_every_reachable_small_state_keeps_every_invariant():
    comp = registry.get_component("shard_mapper")
    result = explore(comp, comp.impl_cls, comp.exploration, comp.exploration.depth("small"))
    assert result.failure is None, result.failure
    assert result.states > 100 and result.depth == comp.exploration.depth("small")


def test_exploration_finds_routable_provisioning_shard_by_a_shortest_path():
    comp = registry.get_component("shard_mapper")
    result = explore(comp, ProvisioningRoutable, comp.exploration, 3)
    assert result.failure is not None
    assert result.failure.name == "select_routes_only_to_lightest_active"
    assert result.failure.step == 2  # init, provision, then any rebuild (collect_metrics)


def test_explore_verb_exports_a_replayable_shortest_trace(tmp_path, capsys):
    code = main(["explore", "shard_mapper", "--impl", "properties.shard_mapper:ProvisioningRoutable",
                 "--export", str(tmp_path)])
    assert code == 1
    (json_path,) = tmp_path.glob("*.json")
    trace = traces.load(json_path)
    comp = registry.get_component("shard_mapper")
    assert traces.replay(comp, ProvisioningRoutable, trace.steps).matches(trace.failure)


def test_explore_rejects_an_unknown_bound(capsys):
    assert main(["explore", "shard_mapper", "--bound", "huge"]) == 2
    assert "unknown bound" in capsys.readouterr().err
