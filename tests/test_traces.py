"""Export → replay → standalone pytest file, with a real counterexample from a mutant."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshspec import registry, traces
from meshspec.cli import main
from meshspec.fuzz import export_failure, run_fuzz
from meshspec.lockstep import load_impl

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def found(tmp_path_factory, fuzz_seed):
    comp = registry.get_component("shard_mapper")
    mutant = comp.mutants[0]
    result = run_fuzz(comp, mutant.cls, profile="ci", seed=fuzz_seed, use_database=False)
    assert result.trace is not None, "the first shard_mapper mutant must be caught"
    out = tmp_path_factory.mktemp("traces")
    json_path, py_path = export_failure(result, out)
    return comp, result, json_path, py_path


def test_exported_trace_is_versioned_json_with_the_failure(found):
    _, result, json_path, _ = found
    doc = json.loads(json_path.read_text())
    assert doc["format"] == "meshspec-trace" and doc["version"] == traces.VERSION
    assert doc["failure"]["name"] == result.trace.failure.name
    assert len(doc["steps"]) == doc["failure"]["step"] + 1


def test_replay_reproduces_the_same_failure_deterministically(found):
    comp, result, json_path, _ = found
    trace = traces.load(json_path)
    for _ in range(2):
        again = traces.replay(comp, load_impl(trace.impl), trace.steps)
        assert again.matches(trace.failure)


def test_replay_verb_exits_1_and_says_reproduced(found, capsys):
    _, _, json_path, _ = found
    assert main(["replay", str(json_path)]) == 1
    assert "reproduces the recorded failure" in capsys.readouterr().out


def test_replay_against_the_real_impl_passes(found, capsys):
    comp, _, json_path, _ = found
    assert main(["replay", str(json_path), "--impl", "impl.shard_mapper:ShardMapper"]) == 0


def test_exported_pytest_file_fails_for_the_same_reason_without_hypothesis(found):
    _, result, _, py_path = found
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:hypothesispytest",
                           "-p", "no:cacheprovider", str(py_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert result.trace.failure.name in proc.stdout


def test_fuzz_verb_exports_and_exits_1_for_a_mutant(found, tmp_path, capsys):
    comp = found[0]
    mutant = comp.mutants[0]
    spec = f"{mutant.cls.__module__}:{mutant.cls.__qualname__}"
    code = main(["fuzz", "shard_mapper", "--impl", spec, "--profile", "ci", "--export", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0].startswith("shard_mapper-") and names[1].startswith("test_")
