"""The mutant zoo lives in `mutants/<component>.py`: each Component's mutants come from there
(through the registry, lazily), `properties/<component>.py` holds none of them, and traces
or commands naming a mutant by its old path `properties.<component>:Class` still load."""
from __future__ import annotations

import importlib
import json

import pytest

from meshspec import registry, traces
from meshspec.cli import main
from meshspec.lockstep import ImplLoadError, impl_path, load_impl

COMPONENTS = registry.names()


@pytest.mark.parametrize("name", COMPONENTS)
def test_every_mutant_of_a_component_is_defined_in_its_mutants_module(name):
    comp = registry.get_component(name)
    zoo = importlib.import_module(f"mutants.{name}")
    assert comp.mutants and tuple(comp.mutants) == tuple(zoo.MUTANTS)
    props = importlib.import_module(f"properties.{name}")
    for m in comp.mutants:
        assert m.cls.__module__ == f"mutants.{name}", f"{m.name}: {impl_path(m.cls)}"
        assert load_impl(impl_path(m.cls)) is m.cls
        assert m.cls.__name__ not in vars(props), f"properties.{name} still defines {m.cls.__name__}"
    assert set(comp.exploration.mutant_bounds) == {m.name for m in comp.mutants}


@pytest.mark.parametrize("name", COMPONENTS)
def test_the_old_properties_path_of_a_mutant_loads_the_moved_class(name):
    for m in registry.get_component(name).mutants:
        assert load_impl(f"properties.{name}:{m.cls.__qualname__}") is m.cls


def test_an_unknown_class_under_the_old_path_is_still_a_one_line_load_error():
    with pytest.raises(ImplLoadError, match="module 'properties.shard_mapper' has no 'NoSuchMutant'"):
        load_impl("properties.shard_mapper:NoSuchMutant")
    assert load_impl("properties.shard_mapper:ShardMapperSubject").__module__ == "properties.shard_mapper"


def test_a_trace_recorded_under_the_old_mutant_path_replays(capsys, tmp_path, fuzz_seed):
    code = main(["fuzz", "shard_mapper", "--impl", "mutants.shard_mapper:ScaleUpZeroSideEffects",
                 "--profile", "ci", "--seed", str(fuzz_seed), "--export", str(tmp_path)])
    capsys.readouterr()
    assert code == 1
    (path,) = tmp_path.glob("*.json")
    doc = json.loads(path.read_text())
    assert doc["impl"] == "mutants.shard_mapper:ScaleUpZeroSideEffects"
    doc["impl"] = "properties.shard_mapper:ScaleUpZeroSideEffects"  # as recorded before the move
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    assert traces.load(old).impl == "properties.shard_mapper:ScaleUpZeroSideEffects"
    code = main(["replay", str(old)])
    out, err = capsys.readouterr()
    assert code == 1, out + err  # the recorded failure reproduced
    assert "abstract state" in out
