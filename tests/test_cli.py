"""Bad input to the CLI: one line on stderr naming the problem, exit code 2, no traceback,
no partial file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshspec.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("meshspec: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def write_trace(tmp_path: Path, **overrides) -> Path:
    doc = {"format": "meshspec-trace", "version": 1, "component": "shard_mapper",
           "impl": "impl.shard_mapper:ShardMapper", "seed": 1, "profile": "dev",
           "steps": [], "failure": None}
    doc.update(overrides)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    return path


def test_unknown_verb_is_rejected_in_one_line(capsys):
    assert_one_line_error(*run(capsys, "frobnicate")[::2], "frobnicate")


def test_missing_verb_is_rejected_in_one_line(capsys):
    assert_one_line_error(*run(capsys)[::2], "VERB")


def test_unknown_component_names_the_known_ones(capsys):
    assert_one_line_error(*run(capsys, "fuzz", "nosuch")[::2], "nosuch", "shard_mapper")


def test_unknown_profile_is_rejected(capsys):
    assert_one_line_error(*run(capsys, "fuzz", "shard_mapper", "--profile", "weekly")[::2], "weekly")


def test_malformed_seed_is_rejected(capsys):
    assert_one_line_error(*run(capsys, "fuzz", "shard_mapper", "--seed", "abc")[::2], "abc")


def test_unimportable_impl_is_rejected(capsys):
    assert_one_line_error(*run(capsys, "fuzz", "shard_mapper", "--impl", "no_such_mod:X")[::2],
                          "no_such_mod")


def test_impl_attribute_missing_is_rejected(capsys):
    assert_one_line_error(*run(capsys, "fuzz", "shard_mapper", "--impl", "impl.shard_mapper:Nope")[::2],
                          "Nope")


def test_impl_lacking_operations_names_them(capsys):
    assert_one_line_error(*run(capsys, "fuzz", "shard_mapper", "--impl", "collections:OrderedDict")[::2],
                          "lacks", "select_shard")


def test_impl_needs_exactly_one_component(capsys):
    assert_one_line_error(*run(capsys, "fuzz", "--impl", "impl.shard_mapper:ShardMapper")[::2],
                          "exactly one")


def test_missing_trace_is_rejected(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "replay", str(tmp_path / "gone.json"))[::2], "does not exist")


def test_corrupt_trace_is_rejected(capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert_one_line_error(*run(capsys, "replay", str(path))[::2], "not valid JSON")


def test_unknown_trace_version_is_rejected(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "replay", str(write_trace(tmp_path, version=99)))[::2], "version 99")


def test_foreign_json_is_not_a_trace(capsys, tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    assert_one_line_error(*run(capsys, "replay", str(path))[::2], "not a meshspec trace")


def test_trace_with_missing_fields_is_malformed(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "replay", str(write_trace(tmp_path, steps=[{"args": []}])))[::2],
                          "malformed")


def test_trace_for_unknown_component_is_rejected(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "replay", str(write_trace(tmp_path, component="nope")))[::2], "nope")


def test_trace_with_unknown_rule_is_rejected(capsys, tmp_path):
    path = write_trace(tmp_path, steps=[{"rule": "explode", "args": []}])
    assert_one_line_error(*run(capsys, "replay", str(path))[::2], "explode")


def test_trace_with_wrong_arity_is_rejected(capsys, tmp_path):
    path = write_trace(tmp_path, steps=[{"rule": "select_shard", "args": [1, 2, 3]}])
    assert_one_line_error(*run(capsys, "replay", str(path))[::2], "select_shard")


def test_unwritable_export_directory_is_rejected_before_running(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "fuzz", "shard_mapper", "--export", str(blocker / "sub"))
    assert_one_line_error(code, err, "export directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_report_into_missing_directory_is_rejected(capsys, tmp_path):
    assert_one_line_error(*run(capsys, "report", "--output", str(tmp_path / "no" / "R.md"))[::2],
                          "does not exist")


def test_console_script_prints_no_traceback_on_bad_input():
    proc = subprocess.run([sys.executable, "-m", "meshspec", "fuzz", "nosuch"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_list_names_every_component(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "shard_mapper" in out


def test_fuzz_prints_the_failing_step_s_state_diff_field_by_field(capsys, tmp_path):
    code, out, err = run(capsys, "fuzz", "shard_mapper", "--impl",
                         "mutants.shard_mapper:ScaleUpZeroSideEffects", "--profile", "ci",
                         "--export", str(tmp_path))
    assert code == 1, out + err
    assert "divergence 'abstract state'" in out
    assert "   state differs: " in out


def test_fuzz_no_db_runs_without_the_example_database(monkeypatch):
    """`--no-db` hands run_fuzz use_database=False; without it the database is used."""
    from meshspec import cli, fuzz

    seen = []

    class Stop(Exception):
        pass

    def fake_run_fuzz(*args, **kwargs):
        seen.append(kwargs["use_database"])
        raise Stop

    monkeypatch.setattr(fuzz, "run_fuzz", fake_run_fuzz)
    for argv in (["fuzz", "scheduler", "--no-db"], ["fuzz", "scheduler"]):
        with pytest.raises(Stop):
            cli.cmd_fuzz(cli.build_parser().parse_args(argv))
    assert seen == [False, True]
