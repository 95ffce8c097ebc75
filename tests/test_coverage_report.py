"""`meshspec fuzz --coverage-report`: branch coverage of impl/ measured from the fuzz run alone."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from meshspec.coverage_report import fuzz_argv, summarise, table


def test_fuzz_writes_branch_coverage_of_the_impl_files_it_ran(tmp_path):
    out = tmp_path / "cov.json"
    proc = subprocess.run(
        [sys.executable, "-m", "meshspec", "fuzz", "scheduler", "--profile", "dev", "--max-examples", "3",
         "--export", str(tmp_path / "traces"), "--coverage-report", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr  # 1: a 3-example dev run may miss a witness
    doc = json.loads(out.read_text())
    files = doc["files"]
    assert "impl/scheduler.py" in files and "impl/load_balancer.py" not in files
    sched = files["impl/scheduler.py"]
    assert 0 < sched["covered"] <= sched["branches"]
    # three examples cannot reach every branch: the missing ones are listed as arcs
    assert sched["missing"] and all(len(arc) == 2 for arc in sched["missing"])
    assert doc["profile"] == "dev" and doc["components"] == ["scheduler"]
    assert "impl/scheduler.py" in proc.stdout and "branch coverage" in proc.stdout


def test_coverage_report_with_impl_cmd_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "meshspec", "fuzz", "scheduler", "--impl-cmd", "true",
                           "--coverage-report", str(tmp_path / "c.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_summary_counts_and_relative_paths():
    raw = {"files": {"impl/x.py": {"summary": {"num_branches": 4, "covered_branches": 3},
                                   "missing_branches": [[10, -1]]},
                     "impl/y.py": {"summary": {"num_branches": 0, "covered_branches": 0}}}}
    files = summarise(raw)
    assert files["impl/x.py"] == {"branches": 4, "covered": 3, "percent": 75.0, "missing": [[10, -1]]}
    assert files["impl/y.py"]["percent"] == 100.0
    assert "75.0%" in table(files)


def test_fuzz_argv_round_trips_the_options():
    from meshspec.cli import build_parser

    args = build_parser().parse_args(["fuzz", "scheduler", "--profile", "ci", "--seed", "3",
                                      "--max-examples", "9", "--coverage-report"])
    assert args.coverage_report == "coverage-impl.json"
    assert fuzz_argv(args) == ["fuzz", "scheduler", "--profile", "ci", "--seed", "3",
                               "--export", "meshspec-traces", "--backend", "hypothesis", "--max-examples", "9"]
    # the gate, the JUnit report and --no-db reach the child too (they were once dropped)
    args = build_parser().parse_args(["fuzz", "scheduler", "--junit", "j.xml", "--no-db",
                                      "--fail-under-coverage", "--coverage-report", "c.json"])
    argv = fuzz_argv(args)
    assert argv[argv.index("--junit") + 1] == "j.xml"
    assert "--fail-under-coverage" in argv and "--no-db" in argv
    assert build_parser().parse_args(argv).fail_under_coverage


def test_a_sigterm_to_the_parent_takes_the_coverage_child_down(monkeypatch):
    """The child signals its parent (this process) and then waits for a signal of its own: the
    parent must exit 143 and terminate the child rather than leave it running."""
    from meshspec import coverage_report

    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(coverage_report.subprocess, "Popen", popen)
    before = signal.getsignal(signal.SIGTERM)
    child = ("import os, signal; os.kill(os.getppid(), signal.SIGTERM); signal.pause()")
    with pytest.raises(SystemExit) as exit_:
        coverage_report.call_child([sys.executable, "-c", child], env=dict(os.environ))
    assert exit_.value.code == 143
    assert started[0].poll() == -signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_report_section_lists_each_missed_branch_with_its_reason_or_open():
    from meshspec.coverage_report import report_section

    results = {"profile": "ci", "seed": 1, "files": {
        "impl/x.py": {"branches": 4, "covered": 2, "percent": 50.0, "missing": [[10, -1], [12, 14]]}}}
    text = report_section(results, {"impl/x.py": {"10->exit": "defensive: unreachable by the API"}})
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| `impl/x.py` | `")]
    assert rows == [["`impl/x.py`", "`10->exit`", "defensive: unreachable by the API"],
                    ["`impl/x.py`", "`12->14`", "open"]]
    assert "50.0%" in text
    assert "Not recorded" in report_section({}, {})


def test_reachable_coverage_leaves_only_exempted_branches_out_of_the_denominator():
    from meshspec.coverage_report import exempted, reachable_percent, report_section

    data = {"branches": 10, "covered": 8, "percent": 80.0, "missing": [[3, 4], [5, -1]]}
    reasons = {"3->4": "check_invariants: raises only on a stale cache", "5->exit": "open: a gap"}
    assert exempted(data["missing"], reasons) == ["3->4"]  # an open reason is no exemption
    assert reachable_percent(data, reasons) == round(100 * 8 / 9, 1)
    assert reachable_percent(data, {}) == 80.0
    assert reachable_percent({**data, "missing": [[3, 4]], "covered": 9}, reasons) == 100.0
    text = report_section({"profile": "ci", "seed": 1, "files": {"impl/x.py": data}}, {"impl/x.py": reasons})
    assert "80.0%" in text and "88.9%" in text
