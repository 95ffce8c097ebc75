"""`--backend` (Hypothesis' default generation or the optional crosshair backend) and
`--max-examples` of `fuzz` and `mutants`, the stdout filter for CrossHair's debug blocks,
and the recorded backend comparison REPORT.md shows."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis.internal.conjecture.providers import AVAILABLE_PROVIDERS

from meshspec import registry
from meshspec.fuzz import FuzzResult, _BlockFilter, record_backend_results, run_fuzz
from meshspec.profiles import ProfileError, backend_name, settings_for
from meshspec.report import backend_cell, symbolic_cell
from test_cli import assert_one_line_error, run  # tests/ is on sys.path (rootdir import mode)

CROSSHAIR_INSTALLED = "crosshair" in AVAILABLE_PROVIDERS


@pytest.mark.parametrize("verb", ["fuzz", "mutants"])
def test_crosshair_backend_without_the_package_says_how_to_install_the_extra(capsys, monkeypatch, verb):
    monkeypatch.delitem(AVAILABLE_PROVIDERS, "crosshair", raising=False)
    code, _, err = run(capsys, verb, "shard_mapper", "--backend", "crosshair")
    assert_one_line_error(code, err, "crosshair", "meshspec[crosshair]")


@pytest.mark.parametrize("verb", ["fuzz", "mutants"])
def test_an_unknown_backend_is_refused_naming_the_known_ones(capsys, verb):
    code, _, err = run(capsys, verb, "shard_mapper", "--backend", "quantum")
    assert_one_line_error(code, err, "quantum", "hypothesis", "crosshair")


@pytest.mark.parametrize("value", ["0", "-3"])
def test_max_examples_below_one_is_refused(capsys, value):
    code, _, err = run(capsys, "fuzz", "shard_mapper", "--max-examples", value)
    assert_one_line_error(code, err, "--max-examples")


def test_max_examples_overrides_the_profile_budget_and_is_printed(capsys, tmp_path):
    code, out, _ = run(capsys, "fuzz", "shard_mapper", "--profile", "dev", "--max-examples", "2",
                       "--export", str(tmp_path))
    assert code == 0
    assert "max examples 2" in out.splitlines()[0]
    assert "examples 2," in out


def test_the_default_backend_leaves_hypothesis_settings_unchanged():
    assert backend_name(None) == "hypothesis"
    assert settings_for("dev").backend == "hypothesis"


def test_backend_name_refuses_an_unknown_name():
    with pytest.raises(ProfileError, match="unknown backend"):
        backend_name("quantum")


def test_the_block_filter_drops_crosshair_debug_blocks_and_keeps_everything_else():
    out = io.StringIO()
    sink = _BlockFilter(out)
    print("before", file=sink)
    for line in [_BlockFilter.BEGIN, "Previous iteration: 1", "  File x\n    y", _BlockFilter.END]:
        print(line, file=sink)
    print("after", file=sink)
    print("", file=sink)
    assert out.getvalue() == "before\nafter\n\n"


def test_recording_a_comparison_merges_components_into_one_sorted_file(tmp_path: Path):
    path = tmp_path / "backend-results.json"
    cell = {"caught": True, "caught_by": "x", "examples": 1, "steps": 2, "seconds": 0.1}
    record_backend_results("scheduler", {"m": {"hypothesis": cell}}, examples=30, seed=1,
                           per_component=5, path=path)
    record_backend_results("capacity", {"n": {"crosshair": cell}}, examples=30, seed=1,
                           per_component=5, path=path)
    doc = json.loads(path.read_text())
    assert list(doc["components"]) == ["capacity", "scheduler"]
    assert (doc["examples"], doc["seed"], doc["mutants_per_component"]) == (30, 1, 5)


@pytest.mark.skipif(not CROSSHAIR_INSTALLED, reason="hypothesis-crosshair is not installed "
                    "(pip install 'meshspec[crosshair]')")
def test_the_crosshair_backend_runs_the_lockstep_machine():
    """Skipped in CI (the `test` extra leaves hypothesis-crosshair out); daemon_host's machine
    is the one CrossHair gets through quickest (a few seconds here)."""
    comp = registry.get_component("daemon_host")
    result = run_fuzz(comp, comp.impl_cls, profile="dev", seed=1, use_database=False,
                      max_examples=2, shrink=False, backend="crosshair")
    assert result.backend == "crosshair"
    assert result.error is None and result.trace is None
    assert result.steps > 0 and result.solver_cases >= 1


def fuzz_result(**overrides: object) -> FuzzResult:
    fields: dict = dict(component="scheduler", impl="impl.scheduler:Scheduler", profile="dev",
                        seed=1, examples=20, steps=400, seconds=8.0, rule_hits={}, reached={},
                        trace=None, first_failure_examples=None, first_failure_seconds=None)
    return FuzzResult(**{**fields, **overrides})


def test_the_default_backend_adds_no_solver_note():
    assert fuzz_result().solver_note() is None


def test_the_crosshair_note_says_how_many_cases_were_symbolic_and_who_ran_the_rest():
    result = fuzz_result(backend="crosshair",
                         solver_outcomes={"discarded: path timeout": 9, "completed normally": 2})
    note = result.solver_note()
    assert result.solver_cases == 11 and not result.solver_found
    assert note is not None and "11 of 20 test cases symbolically" in note
    assert "the other 9" in note


def test_a_failure_raised_in_a_symbolic_case_counts_as_found_by_the_solver():
    result = fuzz_result(backend="crosshair", solver_outcomes={"raised LockstepFailure exception": 1})
    assert result.solver_found


def test_the_report_cells_say_whether_crosshair_caught_a_mutant_symbolically():
    cell = {"caught": True, "caught_by": "ids_never_reused", "seconds": 9.5, "examples": 21,
            "solver_cases": 10, "solver_found": True,
            "solver_outcomes": {"discarded: path timeout": 9, "raised LockstepFailure exception": 1}}
    assert backend_cell(cell) == "caught (`ids_never_reused`, symbolically), 9.5 s"
    assert symbolic_cell(cell) == "10 of 21 (9 discarded)"
    assert backend_cell({"caught": False, "seconds": 0.4}) == "not caught, 0.4 s"
    assert symbolic_cell({"caught": False, "seconds": 0.4}) == "-"


def test_recording_more_mutants_of_a_component_keeps_the_ones_recorded_before(tmp_path: Path):
    path = tmp_path / "backend-results.json"
    cell = {"caught": False, "caught_by": None, "examples": 30, "steps": 900, "seconds": 0.4}
    for name, per in (("b", 5), ("a", 10)):
        record_backend_results("scheduler", {name: {"hypothesis": cell}}, examples=30, seed=1,
                               per_component=per, path=path)
    doc = json.loads(path.read_text())
    assert list(doc["components"]["scheduler"]) == ["a", "b"]
    assert doc["mutants_per_component"] == 10


def test_a_narrower_re_recording_keeps_the_wider_header_and_other_budgets_are_refused(tmp_path: Path):
    """Re-recording the first 5 mutants of a 30-per-component table must not relabel it "the first
    5" (the rows of mutants 6..30 stay); a run with another budget or seed may not join it."""
    path = tmp_path / "backend-results.json"
    cell = {"caught": True, "caught_by": "x", "examples": 1, "steps": 2, "seconds": 0.1}
    record_backend_results("scheduler", {"a": {"hypothesis": cell}, "b": {"hypothesis": cell}},
                           examples=30, seed=1, per_component=30, path=path)
    record_backend_results("scheduler", {"a": {"hypothesis": cell}}, examples=30, seed=1,
                           per_component=5, path=path)
    doc = json.loads(path.read_text())
    assert doc["mutants_per_component"] == 30 and list(doc["components"]["scheduler"]) == ["a", "b"]
    for examples, seed in ((10, 1), (30, 2)):
        with pytest.raises(ValueError, match="holds runs of 30 examples with seed 1"):
            record_backend_results("scheduler", {"a": {"hypothesis": cell}}, examples=examples,
                                   seed=seed, per_component=30, path=path)
    assert json.loads(path.read_text()) == doc  # nothing written
