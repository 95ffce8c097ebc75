"""The campaign driver: budgets, how jobs are cut and seeded, the summary's sums, one export
per distinct failure, and bad input as one line with exit 2."""
from __future__ import annotations

import concurrent.futures
import itertools

import pytest

from meshspec.campaign import (CampaignError, SharedDatabase, failure_key, job_specs, parse_budget,
                               run_campaign, run_job)
from meshspec.cli import main
from meshspec.profiles import chunk_seed

MUTANT = "properties.shard_mapper:ScaleUpZeroSideEffects"


class InProcessPool:
    """Runs the submitted jobs in this process, all of them at the next wait (so the driver
    hears of a batch's failures only after the whole batch ran, as with real workers)."""

    def __init__(self, slots: int = 3) -> None:
        self.slots = slots

    def submit(self, spec):
        future = concurrent.futures.Future()
        future.spec = spec
        return future

    def wait_any(self, futures):
        for future in sorted(futures, key=lambda f: f.spec.index):  # in submission order
            future.set_result(run_job(future.spec))
        return set(futures), set()


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("45", 45), ("1.5m", 90)])
def test_budgets_read_as_seconds(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "ten minutes", "-5s", "5d"])
def test_bad_budgets_are_refused(text):
    with pytest.raises(CampaignError, match="--budget"):
        parse_budget(text)


def test_an_example_budget_is_cut_into_seeded_jobs_round_robin():
    specs = list(job_specs(["a", "b"], impl=None, profile="ci", seed=5, job_examples=40,
                           examples_per_component=100, database=None))
    assert [(s.component, s.max_examples) for s in specs] == [
        ("a", 40), ("b", 40), ("a", 40), ("b", 40), ("a", 20), ("b", 20)]
    assert [s.seed for s in specs if s.component == "a"] == [chunk_seed(5, i) for i in range(3)]


def test_a_time_budget_yields_jobs_until_stopped_and_skips_failed_components():
    failed = set()
    specs = job_specs(["a", "b"], impl=None, profile="ci", seed=5, job_examples=40,
                      examples_per_component=None, database=None, skip=lambda n: n in failed)
    first = list(itertools.islice(specs, 4))
    failed.add("a")
    assert [s.component for s in first] == ["a", "b", "a", "b"]
    assert {s.component for s in itertools.islice(specs, 5)} == {"b"}


def test_the_summary_adds_up_every_job_and_keeps_each_failure_once(tmp_path):
    db = SharedDatabase(str(tmp_path / "db"))
    summary = run_campaign(InProcessPool(), ["shard_mapper"], impl=MUTANT, profile="ci", seed=1,
                           examples_per_component=60, job_examples=20, database=db)
    totals = summary.components["shard_mapper"]
    jobs = [j.result for j in summary.jobs]
    assert totals.jobs == len(jobs) == 3  # one batch: no job starts after the first failure is known
    assert totals.steps == sum(r.steps for r in jobs) == summary.steps
    assert totals.rule_hits["init"] == sum(r.rule_hits.get("init", 0) for r in jobs)
    failing = [r.trace for r in jobs if r.trace is not None]
    assert len(failing) >= 2 and len({failure_key(t) for t in failing}) == 1
    assert len(totals.failures) == 1 and summary.duplicates == len(failing) - 1


def test_a_time_budget_stops_submitting_once_spent(tmp_path):
    ticks = itertools.count(0, 30)  # each look at the clock is 30 s later
    summary = run_campaign(InProcessPool(), ["scheduler"], impl=None, profile="dev", seed=1,
                           budget_seconds=100, job_examples=2, database=None,
                           clock=lambda: next(ticks))
    assert 1 <= len(summary.jobs) <= 4


@pytest.mark.parametrize("argv,needle", [
    (["--budget", "soon"], "--budget"),
    (["--budget", "1m", "--max-examples", "5"], "not allowed with"),
    (["--job-examples", "0"], "--job-examples"),
    (["--workers", "0"], "--workers"),
    (["--redis", "localhost:6379"], "--redis"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], "--workers"),
])
def test_bad_campaign_input_is_one_line_and_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["campaign", "scheduler", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("meshspec: error: ") and needle in err


def test_a_job_that_cannot_run_is_an_error_of_its_component_not_a_crash():
    class BrokenPool(InProcessPool):
        def wait_any(self, futures):
            for future in futures:
                future.set_exception(RuntimeError("worker process died"))
            return set(futures), set()

    summary = run_campaign(BrokenPool(), ["scheduler"], impl=None, profile="dev", seed=1,
                           examples_per_component=4, job_examples=2, database=None)
    assert sorted(summary.components["scheduler"].errors) == sorted(
        f"job seed {chunk_seed(1, i)} did not run: RuntimeError: worker process died" for i in (0, 1))


def test_the_rss_log_is_summarised_and_rendered_for_the_report(tmp_path):
    import json

    from meshspec.campaign_cli import summarise_rss
    from meshspec.campaign_report import section

    log = tmp_path / "rss.log"
    rows = [{"t": 60.0 * i, "host": "h", "pid": 7, "rss_mb": 300.0 + i, "peak_rss_mb": 310.0 + i,
             "component": "scheduler", "seed": i, "examples": 5, "steps": 100} for i in range(1, 4)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = summarise_rss(log)
    assert (summary["jobs"], summary["steps"], summary["rss_mb_max"], summary["peak_rss_mb"]) == (3, 300, 303.0, 313.0)
    text = section({"worker_rss": summary})
    assert "at most 303 MiB" in text and "bound: 1,024 MiB" in text
    assert "Not recorded yet." in section({})


def test_the_report_says_how_many_components_reach_the_throughput_target():
    from meshspec.campaign_report import fuzz_verdict

    fast = {"steps_per_second": 2100, "note": "quiet machine"}
    assert fuzz_verdict({"a": fast, "b": {"steps_per_second": 900}}).startswith(
        "1 of 2 components reach 2,000 steps/s in this recording (a). Quiet machine.")


def test_a_fuzz_run_splits_its_time_into_generation_operations_and_checks():
    """The split is measured, not estimated: both step parts are timed and positive, they fit
    inside the run, and the shares add up to the whole run."""
    from meshspec import registry
    from meshspec.campaign_report import fuzz_table, fuzz_verdict
    from meshspec.fuzz import run_fuzz

    comp = registry.get_component("scheduler")
    r = run_fuzz(comp, comp.impl_cls, profile="dev", seed=7, use_database=False, max_examples=5)
    assert r.steps > 0 and r.operation_seconds > 0 and r.check_seconds > 0
    assert r.operation_seconds + r.check_seconds < r.seconds
    split = r.time_split
    assert list(split) == ["generation", "operations", "checks"]
    assert abs(sum(split.values()) - 1.0) < 1e-9 and min(split.values()) > 0
    row = {"steps": 10, "seconds": 1.0, "steps_per_second": 10, "passed": True,
           "time_split": {"generation": 0.5, "operations": 0.1, "checks": 0.4}}
    assert "50% / 10% / 40%" in fuzz_table({"a": row})
    heavy = {**row, "time_split": {"generation": 0.3, "operations": 0.1, "checks": 0.6}}
    assert "less time than generation in 1 of 2 components (not in b)" in fuzz_verdict({"a": row, "b": heavy})
