"""`fuzz --fail-under-coverage`: a rule that never ran, a precondition that never held or a
missed sometimes-witness fails the run; the precondition pass rates come from Hypothesis'
own counts of every evaluation."""
from __future__ import annotations

import attrs
import pytest

from meshspec import registry
from meshspec.cli import main
from meshspec.fuzz import coverage_gaps, rules_of, run_fuzz, sometimes_names


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def capacity_run():
    comp = registry.get_component("capacity")
    return comp, run_fuzz(comp, comp.impl_cls, profile="dev", seed=7, use_database=False, max_examples=6)


def full_coverage(comp, result):
    """The same result with every rule, precondition and witness covered."""
    return attrs.evolve(result, rule_hits={r: 1 for r in rules_of(comp)},
                        reached={w: 1 for w in sometimes_names(comp)},
                        preconditions={r: (1, 2) for r in result.preconditions})


def test_precondition_counts_are_read_for_every_guarded_rule(capacity_run):
    comp, result = capacity_run
    assert {"renew", "heartbeat", "expire_lease"} <= set(result.preconditions)
    assert all(0 <= held <= total and total > 0 for held, total in result.preconditions.values())
    assert any(held < total for held, total in result.preconditions.values())


def test_a_fully_covered_run_has_no_gaps(capacity_run):
    comp, result = capacity_run
    assert coverage_gaps(full_coverage(comp, result), comp) == []


def test_each_kind_of_gap_is_reported(capacity_run):
    comp, result = capacity_run
    covered = full_coverage(comp, result)
    assert coverage_gaps(attrs.evolve(covered, rule_hits={**covered.rule_hits, "renew": 0}), comp) \
        == ["rule renew never ran"]
    assert coverage_gaps(attrs.evolve(covered, preconditions={**covered.preconditions, "renew": (0, 9)}),
                         comp) == ["precondition of renew never held (9 evaluations)"]
    witness = sometimes_names(comp)[0]
    assert coverage_gaps(attrs.evolve(covered, reached={**covered.reached, witness: 0}), comp) \
        == [f"witness {witness} never reached"]


def test_the_gate_fails_a_dev_run_too_short_to_cover_the_rules(capsys):
    dev_run = ["fuzz", "shard_mapper", "--profile", "dev", "--max-examples", "1"]
    assert main(dev_run) == 0  # dev: unreached witnesses are a note, no failure
    capsys.readouterr()
    assert main(dev_run + ["--fail-under-coverage"]) == 1
    out = capsys.readouterr().out
    assert "   COVERAGE: " in out and "coverage gaps:" in out.splitlines()[-1]


def test_the_gate_passes_a_run_that_covers_everything(capsys):
    code = main(["fuzz", "scheduler", "--profile", "ci", "--fail-under-coverage"])  # the whole ci budget: its witnesses are promised there
    out = capsys.readouterr().out
    assert code == 0, out
    assert "COVERAGE" not in out
