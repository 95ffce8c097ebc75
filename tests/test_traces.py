"""Export → replay → standalone pytest file, with a real counterexample from a mutant."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshspec import registry, traces
from meshspec.cli import main
from meshspec.fuzz import export_failure, run_fuzz
from meshspec.lockstep import canon, diff_lines, load_impl

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
INIT = ("init", (1, 8, "default", 2, 1, 4, 1, True, 0, False))


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


# -- version 2: keyword arguments, symbolic constants, the state diff -----------------------

def test_exported_json_records_each_step_s_arguments_by_name(found):
    _, _, json_path, _ = found
    doc = json.loads(json_path.read_text())
    init = doc["steps"][0]
    assert init["rule"] == "init" and isinstance(init["args"], dict) and "initial" in init["args"]


def test_exported_pytest_file_calls_each_step_with_keyword_arguments(found):
    _, _, _, py_path = found
    assert "ls.step('init', initial=" in py_path.read_text()


def test_pytest_file_writes_the_no_shard_sentinel_as_a_named_constant():
    trace = traces.Trace("shard_mapper", "impl.shard_mapper:ShardMapper", 1, "ci",
                         (INIT, ("drain_specific", (65535,))), None)
    text = traces.render_pytest(trace, "abc")
    assert "NO_SHARD = 65535" in text and "ls.step('drain_specific', shard_id=NO_SHARD)" in text
    compile(text, "test_x.py", "exec")


def test_version_1_traces_with_positional_arguments_are_still_read(found):
    _, result, json_path, _ = found
    doc = json.loads(json_path.read_text())
    doc["version"] = 1
    for step in doc["steps"]:
        step["args"] = list(step["args"].values())
    assert canon(traces.parse(doc).steps) == canon(result.trace.steps)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory, fuzz_seed):
    comp = registry.get_component("shard_mapper")
    mutant = next(m for m in comp.mutants if m.name == "drain_only_flips_flag")
    result = run_fuzz(comp, mutant.cls, profile="ci", seed=fuzz_seed, use_database=False)
    assert result.trace is not None and result.trace.failure.name == "abstract state"
    return result, export_failure(result, tmp_path_factory.mktemp("diverged"))


def test_failing_step_state_diff_names_only_the_differing_fields(diverged, capsys):
    result, (json_path, py_path) = diverged
    diff = result.trace.failure.state_diff
    assert diff and all(": model " in line and ", impl " in line for line in diff)
    assert "fields that differ (model vs impl)" in py_path.read_text()
    assert main(["replay", str(json_path)]) == 1
    assert "state differs: " + diff[0] in capsys.readouterr().out


def test_abstract_diff_names_attrs_fields_named_tuple_fields_and_dict_keys():
    import collections

    import attrs

    @attrs.frozen
    class Shard:
        id: int
        state: str

    Pair = collections.namedtuple("Pair", "left right")
    model = Pair({"a": 1, "b": (Shard(0, "Active"),)}, 5)
    impl = Pair({"a": 1, "b": (Shard(0, "Draining"),)}, 6)
    assert diff_lines(model, impl) == [".left['b'][0].state: model 'Active', impl 'Draining'",
                                       ".right: model 5, impl 6"]


# -- the replay contract: bad traces are exit 2 with one line, before anything runs ---------

def write(tmp_path, doc, name="t.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def replay_error(capsys, path, *extra):
    code = main(["replay", path, *extra])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("meshspec: error: "), err
    return err


def test_replay_refuses_a_trace_whose_first_step_is_not_init(found, tmp_path, capsys):
    doc = json.loads(found[2].read_text())
    doc["steps"] = doc["steps"][1:] + doc["steps"][:1]
    assert "a trace starts with 'init'" in replay_error(capsys, write(tmp_path, doc))


def test_replay_refuses_deeply_nested_json_without_a_recursion_error(found, tmp_path, capsys):
    text = found[2].read_text().replace('"seed":', '"deep": ' + "[" * 100_000 + "]" * 100_000 + ', "seed":')
    assert "nested" in replay_error(capsys, write(tmp_path, text))


def test_replay_checks_argument_types_before_running_and_bool_is_not_an_int(found, tmp_path, capsys):
    doc = json.loads(found[2].read_text())
    doc["steps"][0]["args"]["initial"] = True
    assert "argument 'initial' must be int, not bool" in replay_error(capsys, write(tmp_path, doc))
    doc["steps"][0]["args"]["initial"] = "three"
    assert "argument 'initial' must be int, not str" in replay_error(capsys, write(tmp_path, doc))


def test_replay_imports_the_recorded_impl_only_after_the_trace_is_valid(found, tmp_path, capsys, monkeypatch):
    (tmp_path / "noisy_impl.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('imported').touch()\nprint('hello')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = json.loads(found[2].read_text())
    doc["impl"] = "noisy_impl:Mapper"
    doc["steps"][0]["rule"] = "no_such_rule"
    replay_error(capsys, write(tmp_path, doc))
    assert not (tmp_path / "imported").exists()
    doc["steps"][0]["rule"] = "init"
    err = replay_error(capsys, write(tmp_path, doc))
    assert err.startswith("meshspec: error: trace impl 'noisy_impl:Mapper': ") and "--impl 'noisy" not in err
    assert (tmp_path / "imported").exists()


GARBAGE = [None, True, False, -1, 0, 7, 65535, 1.5, "", "x" * 300, "init", [], {}, [1, [2]],
           {"$float": "nan"}, {"$bytes": "zz"}, {"$tuple": 3}, {"$tuple": [1, "a"]}, "\udcff"]


def _paths(value, prefix=()):
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, prefix + (key,))


def _parent(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    return doc


def mutate(doc, rng):
    """One random mutation: delete a key, swap a type, reorder steps, nest, or garbage."""
    paths = [p for p in _paths(doc) if p]
    path = rng.choice(paths)
    parent, key = _parent(doc, path), path[-1]
    kind = rng.randrange(6)
    if kind == 0:
        del parent[key]
    elif kind == 1:
        old = parent[key]
        parent[key] = (str(old) if not isinstance(old, str) else len(old)) if rng.random() < 0.7 else [old]
    elif kind == 2 and isinstance(doc.get("steps"), list):
        rng.shuffle(doc["steps"])
    elif kind == 3:
        parent[key] = "__DEEP__"
    else:
        parent[key] = rng.choice(GARBAGE)
    return doc


def test_replay_of_200_randomly_mutated_traces_never_raises_and_answers_0_1_or_2(found, tmp_path, capsys):
    import random

    base = json.loads(found[2].read_text())
    codes = []
    for i in range(200):
        rng = random.Random(i)
        doc = json.loads(json.dumps(base))
        for _ in range(rng.randint(1, 3)):
            doc = mutate(doc, rng) if isinstance(doc, dict) else doc
        depth = rng.choice([10, 3000, 200_000])
        text = json.dumps(doc).replace('"__DEEP__"', "[" * depth + "]" * depth)
        code = main(["replay", write(tmp_path, text, f"m{i}.json")])
        err = capsys.readouterr().err
        assert code in (0, 1, 2), (i, code, text[:300])
        assert code != 2 or len(err.splitlines()) == 1, (i, err)
        codes.append(code)
    assert codes.count(2) > 100 and 0 < codes.count(0) + codes.count(1)


def test_replay_refuses_an_init_that_both_sides_reject_as_bad_input(found, tmp_path, capsys):
    doc = json.loads(found[2].read_text())
    doc["steps"][0]["args"].update(min_shards=0, max_shards=0)
    assert "build no shard_mapper" in replay_error(capsys, write(tmp_path, doc))
