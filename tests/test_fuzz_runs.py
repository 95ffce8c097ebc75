"""How a fuzz run behaves as a run: reproducible whatever is installed or imported, split into
bounded chunks, reporting progress, and ending with one verdict line.

- Hypothesis draws constants harvested from "local" modules; meshspec pins that pool to the
  component's own modules, so (component, impl, profile, seed) explores the same inputs
  after `pip install .` or `pip install -e .`, alone or after other components ran.
- A long budget runs as chunks with derived seeds; the counts add up.
- Progress goes through RunStats.on_progress; verdicts are PASS/FAIL lines.
"""
from __future__ import annotations

import importlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from meshspec import registry
from meshspec.cli import main, print_verdict
from meshspec.fuzz import FuzzResult, MutantResult, run_fuzz
from meshspec.lockstep import Mutant
from meshspec.machine import RunStats
from meshspec.profiles import chunk_seed, chunk_sizes
from meshspec.progress import (LiveProgress, Outcome, PlainProgress, fuzz_verdict, mutants_verdict,
                               outcome_of, progress_for, witness_note)
from meshspec.traces import Failure, Trace

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261123


def fingerprint(name: str = "shard_mapper", max_examples: int = 40, **kw) -> tuple:
    comp = registry.get_component(name)
    r = run_fuzz(comp, comp.impl_cls, profile="dev", seed=SEED, use_database=False,
                 max_examples=max_examples, **kw)
    assert not r.failed, r.error or r.trace
    return r.examples, r.steps, sorted(r.rule_hits.items()), sorted(r.reached.items())


# --- 5. install mode and other imports do not change what is explored ----------------

def test_same_seed_explores_the_same_inputs_after_other_components_ran():
    alone = fingerprint()
    for other in ("scheduler", "load_balancer", "group_coordinator"):
        fingerprint(other, max_examples=3)
    assert fingerprint() == alone


def test_same_seed_explores_the_same_inputs_with_an_extra_local_module_imported(tmp_path, monkeypatch):
    alone = fingerprint()
    numbers = ", ".join(str(n) for n in range(0, 400, 3))
    words = ", ".join(repr(f"w{n}") for n in range(60))
    (tmp_path / "meshspec_extra_constants.py").write_text(
        f"NUMBERS = [{numbers}]\nWORDS = [{words}]\nFLOATS = [0.25, 1.5, 2.75]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("meshspec_extra_constants")
    try:
        assert fingerprint() == alone
    finally:
        sys.modules.pop("meshspec_extra_constants", None)


SUBPROCESS = textwrap.dedent("""
    import sys
    from meshspec import registry
    from meshspec.fuzz import run_fuzz
    assert "/site-packages/" in registry.__file__, registry.__file__
    c = registry.get_component("shard_mapper")
    r = run_fuzz(c, c.impl_cls, profile="dev", seed=%d, use_database=False, max_examples=40)
    print(r.examples, r.steps)
""")


def test_a_non_editable_install_explores_the_same_inputs_as_the_editable_checkout(tmp_path):
    """Simulated `pip install .`: the packages copied under a site-packages path, which is
    what Hypothesis' local-module test looks at, imported ahead of the editable finder."""
    site = tmp_path / "lib" / "site-packages"
    for package in ("meshspec", "model", "impl", "properties"):
        shutil.copytree(ROOT / package, site / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", SUBPROCESS % SEED], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    examples, steps, *_ = fingerprint()
    assert [int(x) for x in out] == [examples, steps]


# --- 7. a long budget runs as bounded chunks that add up ----------------------------

def test_chunk_sizes_cover_the_budget_exactly():
    assert chunk_sizes(1200, 500) == [500, 500, 200]
    assert chunk_sizes(300, 500) == [300]
    assert sum(chunk_sizes(5000)) == 5000


def test_the_first_chunk_keeps_the_seed_and_later_chunks_get_distinct_derived_seeds():
    seeds = [chunk_seed(SEED, i) for i in range(5)]
    assert seeds[0] == SEED and len(set(seeds)) == 5
    assert seeds == [chunk_seed(SEED, i) for i in range(5)]


def test_a_budget_that_fits_one_chunk_runs_exactly_as_unsplit():
    assert fingerprint(max_examples=10, chunk_examples=10) == fingerprint(
        max_examples=10, chunk_examples=10_000)


def test_a_split_run_adds_up_the_counts_of_its_chunks():
    comp = registry.get_component("shard_mapper")
    split = run_fuzz(comp, comp.impl_cls, profile="dev", seed=SEED, use_database=False,
                     max_examples=18, chunk_examples=6)
    parts = [run_fuzz(comp, comp.impl_cls, profile="dev", seed=chunk_seed(SEED, i),
                      use_database=False, max_examples=6) for i in range(3)]
    assert split.examples == sum(p.examples for p in parts)
    assert split.steps == sum(p.steps for p in parts)
    for rule, hits in split.rule_hits.items():
        assert hits == sum(p.rule_hits.get(rule, 0) for p in parts)
    for name, hits in split.reached.items():
        assert hits == sum(p.reached.get(name, 0) for p in parts)


# --- 6. progress and verdicts ---------------------------------------------------------

def test_the_progress_callback_sees_every_step_of_the_run():
    seen: list[int] = []
    comp = registry.get_component("shard_mapper")
    r = run_fuzz(comp, comp.impl_cls, profile="dev", seed=SEED, use_database=False,
                 max_examples=5, progress=lambda s: seen.append(s.steps))
    assert seen == list(range(1, r.steps + 1))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stats_with(examples: int, steps: int) -> RunStats:
    s = RunStats()
    s.examples, s.steps = examples, steps
    return s


def test_plain_progress_prints_one_line_per_interval_and_nothing_in_between():
    out, clock = io.StringIO(), FakeClock()
    p = PlainProgress(out, clock=clock, interval=10.0)
    p.start("daemon_host")
    for t, steps in [(3, 100), (9.9, 200), (10, 300), (15, 400), (20.5, 500)]:
        clock.now = t
        p.update(stats_with(7, steps))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "daemon_host: examples 7, steps 300" in lines[0]
    assert "steps 500" in lines[1] and "steps/s" in lines[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_one_live_line_redrawn_at_most_every_fifth_of_a_second():
    out, clock = Terminal(), FakeClock()
    assert isinstance(progress_for(out), LiveProgress)
    assert isinstance(progress_for(io.StringIO()), PlainProgress)
    p = LiveProgress(out, clock=clock)
    p.start("shard_mapper")
    for i in range(10):
        clock.now = i * 0.05
        p.update(stats_with(i, i * 10))
    p.stop()
    text = out.getvalue()
    drawn = set(re.findall(r"shard_mapper: examples \d+, steps (\d+)", text))
    assert drawn == {"40", "80"}  # at 0.2 s and 0.4 s, not at every update
    assert "\x1b[" in text  # drawn in place with escape codes, not appended lines


def a_result(profile: str, reached: dict[str, int], trace: Trace | None = None,
             error: str | None = None, steps: int = 1000) -> FuzzResult:
    return FuzzResult(component="shard_mapper", impl="impl.shard_mapper:ShardMapper",
                      profile=profile, seed=1, examples=10, steps=steps, seconds=1.0,
                      rule_hits={}, reached=reached, trace=trace, first_failure_examples=None,
                      first_failure_seconds=None, error=error)


def witnesses(name: str = "shard_mapper") -> list[str]:
    comp = registry.get_component(name)
    return [i.name for i in comp.invariants if i.kind == "sometimes"]


def test_an_unreached_witness_fails_a_ci_run_and_is_only_a_note_under_dev():
    comp = registry.get_component("shard_mapper")
    names = witnesses()
    missing = {n: 1 for n in names[1:]}
    ci, dev = outcome_of(a_result("ci", missing), comp), outcome_of(a_result("dev", missing), comp)
    assert ci.problem == f"sometimes-witnesses not reached: {names[0]}"
    assert dev.problem is None and dev.unreached == (names[0],)
    assert print_verdict([ci], "ci") == 1 and print_verdict([dev], "dev") == 0
    assert witness_note([dev], "dev") == (
        f"note: 1 sometimes-witness not reached in this short dev run (ci and nightly require "
        f"them): shard_mapper.{names[0]}")
    assert witness_note([ci], "ci") is None


def test_the_fuzz_verdict_names_each_failed_component_and_counts_all_steps():
    ok = Outcome("scheduler", 120_000, None)
    bad = Outcome("shard_mapper", 12_000, "divergence 'select_shard result'")
    assert fuzz_verdict([ok, ok]) == "PASS: 2 components, 240,000 steps, 0 failures"
    assert fuzz_verdict([bad, ok]) == ("FAIL: 1 of 2 components failed (shard_mapper: divergence "
                                       "'select_shard result'), 132,000 steps")


def test_a_failing_trace_or_machine_error_is_the_outcome_problem():
    comp = registry.get_component("shard_mapper")
    failure = Failure("divergence", "select_shard result", "65535 != 3", 2)
    trace = Trace("shard_mapper", "impl.shard_mapper:ShardMapper", 1, "dev", (), failure)
    assert outcome_of(a_result("dev", {}, trace=trace), comp).problem == \
        "divergence 'select_shard result'"
    assert outcome_of(a_result("ci", {}, error="machine error: boom"), comp).problem == \
        "machine error: boom"


def test_the_mutants_verdict_counts_caught_mutants_and_names_survivors():
    failure = Failure("invariant", "ids_never_reused", "reused", 3)
    trace = Trace("shard_mapper", "x:Y", 1, "ci", (), failure)
    caught = MutantResult(Mutant("a", object, "o", ("x",)), a_result("ci", {}, trace=trace))
    survived = MutantResult(Mutant("b", object, "o", ("x",)), a_result("ci", {}))
    assert mutants_verdict([caught, caught]) == "PASS: 2/2 mutants caught"
    assert mutants_verdict([caught, survived]) == "FAIL: 1 of 2 mutants survived (shard_mapper.b)"


def test_a_dev_fuzz_run_ends_with_a_pass_verdict_line_and_no_witness_warnings(capsys, tmp_path,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fuzz", "shard_mapper", "--export", str(tmp_path / "t")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("PASS: 1 component, ") and lines[-1].endswith(" steps, 0 failures")
    assert not any("never reached" in line for line in lines)
