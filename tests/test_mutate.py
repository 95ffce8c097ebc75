"""`meshspec mutate`: the AST mutator (operators, stable ids, determinism, diffs), a tiny
killed and surviving case through the lockstep machine, the time limit, the record and
bad input. The full per-component scores run nightly (`pytest -m nightly`)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from meshspec import mutate, registry
from meshspec.cli import main

SNIPPET = textwrap.dedent('''\
    class Thing:
        def __init__(self):
            self._total = 0

        def add(self, x, items):
            self._total += x
            self._cache[x] = min(x, 3) * 2
            if x < 1 and not items:
                return x - 1.5
            return x in items

        def check_invariants(self):
            assert self._total >= 0 + 1

        def guarded(self, x):
            assert x > 0
            self._seen.append(x)
            return x == 4
''')


def changes(mutants):
    return {m.id.split("|")[0] for m in mutants}


def test_every_operator_kind_is_generated():
    ms = mutate.generate(SNIPPET, "thing.py")
    assert changes(ms) >= {
        "compare:<→<=", "compare:in→not in", "compare:==→!=",
        "arith:+→-", "arith:*→//", "arith:-→+",
        "bool:and→or", "bool:not x→x",
        "const:1→2", "const:1→0", "const:1.5→2.5", "const:1.5→0.5", "const:3→4", "const:4→5",
        "minmax:min→max", "drop_cache:delete"}
    dropped = [m.id for m in ms if m.operator == "drop_cache"]
    # updates of private caches outside __init__ (augmented, item assignment, method call)
    assert dropped == ["drop_cache:delete|self._total += x|#0",
                       "drop_cache:delete|self._cache[x] = min(x, 3) * 2|#0",
                       "drop_cache:delete|self._seen.append(x)|#0"]


def test_self_checks_and_asserts_are_never_mutated():
    ms = mutate.generate(SNIPPET, "thing.py")
    assert not [m for m in ms if "assert" in m.id or "0 + 1" in m.id or "x > 0" in m.id]
    # __init__ builds the caches: a constant there is mutated, the statement is not dropped
    assert [m.id for m in ms if "self._total = 0" in m.id] == ["const:0→1|self._total = 0|#0",
                                                               "const:0→-1|self._total = 0|#0"]


def test_each_mutant_is_one_change_that_compiles_and_its_diff_shows_it():
    ms = mutate.generate(SNIPPET, "thing.py")
    for m in ms:
        compile(m.source, "thing.py", "exec")
        minus = [l for l in m.diff.splitlines() if l.startswith("-") and not l.startswith("---")]
        plus = [l for l in m.diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
        assert len(minus) == 1 and len(plus) == 1, m.diff
        assert m.diff.startswith("--- a/thing.py\n+++ b/thing.py\n")
    swap = next(m for m in ms if m.id == "compare:<→<=|if x < 1 and not items:|#0")
    assert "-        if x < 1 and not items:\n+        if x <= 1 and not items:\n" in swap.diff
    drop = next(m for m in ms if m.id.startswith("drop_cache:delete|self._seen"))
    assert "+        pass\n" in drop.diff


def test_parenthesised_and_multiline_expressions_keep_their_meaning():
    src = "def f(a, b, c):\n    return (a +\n            b) * c and not (a or b)\n"
    for m in mutate.generate(src, "f.py"):
        compile(m.source, "f.py", "exec")  # generate() already checks text == AST change


def test_ids_do_not_depend_on_line_numbers_and_repeat_lines_get_ordinals():
    ms = mutate.generate(SNIPPET, "thing.py")
    shifted = mutate.generate("import os\n\n\n" + SNIPPET, "thing.py")
    assert [m.id for m in ms] == [m.id for m in shifted]
    assert [m.line + 3 for m in ms] == [m.line for m in shifted]
    twice = mutate.generate("def f(x):\n    y = x + 1\n    y = x + 1\n    return y\n", "f.py")
    assert [m.id for m in twice if m.operator == "arith"] == ["arith:+→-|y = x + 1|#0",
                                                               "arith:+→-|y = x + 1|#1"]
    assert len({m.id for m in ms}) == len(ms)


def test_sampling_is_deterministic_and_seeded():
    source, _, _ = mutate.source_of(registry.get_component("group_coordinator").impl_cls)
    ms = mutate.generate(source, "group_coordinator.py")
    assert [m.id for m in ms] == [m.id for m in mutate.generate(source, "group_coordinator.py")]
    a = [m.id for m in mutate.sample(ms, 20, 7)]
    assert a == [m.id for m in mutate.sample(ms, 20, 7)]
    assert a != [m.id for m in mutate.sample(ms, 20, 8)]
    assert len(set(a)) == 20 and a == [m.id for m in ms if m.id in a]  # source order
    assert [m.id for m in mutate.sample(ms, 10_000, 7)] == [m.id for m in ms]


def test_a_mutant_module_is_built_in_memory_and_leaves_the_original_alone(tmp_path):
    comp = registry.get_component("groups")
    source, filename, module = mutate.source_of(comp.impl_cls)
    before = Path(filename).read_text()
    m = next(m for m in mutate.generate(source, "groups.py")
             if m.id == "drop_cache:delete|self._nodes[node] += 1|#0")
    cls = mutate.load_mutant_class(m, module, comp.impl_cls.__qualname__, filename)
    try:
        assert cls is not comp.impl_cls and cls.__module__ != module
        assert Path(filename).read_text() == before
    finally:
        mutate.unload(cls)


DEAD_CODE_IMPL = textwrap.dedent('''\
    from impl.groups import Group as Base


    class Mine(Base):
        def _nodes_add(self, node):
            self._nodes[node] += 1

        def _unused(self):
            return 2 + 3
''')


@pytest.fixture
def user_impl(tmp_path, monkeypatch):
    (tmp_path / "mine_groups.py").write_text(DEAD_CODE_IMPL)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_kills_a_cache_bug_and_reports_a_dead_code_survivor_with_its_diff(user_impl, capsys,
                                                                             monkeypatch):
    results = user_impl / "docs" / "mutate-results.json"
    monkeypatch.setattr(mutate, "RESULTS_PATH", results)
    code = main(["mutate", "groups", "--impl", "mine_groups:Mine", "--n", "40",
                 "--max-examples", "4", "--record"])
    out = capsys.readouterr().out
    assert code == 1  # a survivor
    # the dropped multiset update is caught (by the impl's self-check, the cheapest witness)
    assert "killed" in out and "drop_cache:delete|self._nodes[node] += 1|#0 by" in out
    # dead code: nothing can observe it, so it survives and is shown as a diff
    assert "SURVIVED: arith:+→-|return 2 + 3|#0" in out
    assert "-        return 2 + 3\n+        return 2 - 3\n" in out
    entry = json.loads(results.read_text())["groups"]
    assert entry["impl"] == "mine_groups:Mine"
    assert entry["total"] == entry["killed"] + entry["survived"] + entry["timeout"] + entry["equivalent"]
    # += 1: -, 2, 0 and the deletion are killed; 2 + 3: -, 2±1, 3±1 survive
    assert entry["killed"] == 4 and entry["survived"] == 5
    assert {s["id"] for s in entry["survivors"]} >= {"arith:+→-|return 2 + 3|#0"}
    assert entry["score"] == round(4 / 9, 4)
    section = mutate.report_section(results)
    assert "| `groups`" in section and "44.4%" in section


def test_a_reviewed_equivalent_leaves_the_denominator(user_impl):
    comp = registry.get_component("groups")
    from mine_groups import Mine

    eq = {"arith:+→-|return 2 + 3|#0": "dead code"}
    out = mutate.run(comp, Mine, n=40, seed=1, max_examples=3, equivalents=eq)
    verdicts = {o.mutant.id: o.verdict for o in out}
    assert verdicts["arith:+→-|return 2 + 3|#0"] == "equivalent"
    c = mutate.counts(out)
    assert mutate.score(out) == c["killed"] / (c["total"] - 1)


def test_time_limit_turns_a_runaway_mutant_into_timeout():
    with pytest.raises(mutate.MutantTimeout):
        with mutate.time_limit(0.05):
            while True:
                pass


def test_equivalent_lists_name_only_known_components_and_give_reasons():
    from meshspec.mutate_equivalents import EQUIVALENT

    for name, entries in EQUIVALENT.items():
        assert name in registry.names()
        for mid, reason in entries.items():
            assert mid.count("|") >= 2 and mid.rsplit("|#", 1)[1].isdigit(), mid
            assert reason.strip() and "\n" not in reason


@pytest.mark.parametrize("argv, needle", [
    (["mutate", "nope"], "unknown component"),
    (["mutate", "groups", "--n", "0"], "--n must be at least 1"),
    (["mutate", "groups", "--timeout", "0"], "--timeout must be a positive"),
    (["mutate", "groups", "--impl", "no_such_module_x:C"], "cannot import"),
    (["mutate", "groups", "--n", "x"], "invalid int"),
    (["mutate", "races"], "races"),
    (["mutate", "groups", "--impl", "cmd:python3 -c pass"], "not an impl process"),
    (["mutate", "groups", "--only", "no:such|mutant|#0"], "--only: no mutant"),
    (["mutate", "groups", "--only", "x", "--record"], "cannot be --record'ed"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, needle):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshspec: error: ") and needle in lines[0], err


#: Components whose score is known to be below 95%, and the generator gap behind it.
BELOW_TARGET: dict[str, str] = {}


@pytest.mark.nightly
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=BELOW_TARGET[n], strict=True))
    if n in BELOW_TARGET else n for n in registry.names()])
def test_mutation_score_is_at_least_95_percent(name):
    from meshspec.mutate_equivalents import for_component

    comp = registry.get_component(name)
    out = mutate.run(comp, comp.impl_cls, n=40, seed=mutate.DEFAULT_SEED,
                     equivalents=for_component(name))
    survivors = "\n".join(o.mutant.diff for o in out if o.verdict in ("survived", "timeout"))
    assert mutate.score(out) >= 0.95, survivors


def test_a_run_past_its_time_limit_is_a_timeout_and_leaves_no_module_behind(user_impl):
    import signal
    import sys

    comp = registry.get_component("groups")
    from mine_groups import Mine

    source, filename, _ = mutate.source_of(Mine)
    dead = next(m for m in mutate.generate(source, "mine_groups.py")
                if m.id == "arith:+→-|return 2 + 3|#0")
    import meshspec.fuzz  # noqa: F401  (imported by the run; not what this test counts)

    before = set(sys.modules)
    out = mutate.run_one(comp, Mine, dead, filename=filename, timeout=0.2)  # the ci budget needs ~30 s
    assert out.verdict == "timeout" and out.caught_by is None, out
    assert set(sys.modules) == before
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)
