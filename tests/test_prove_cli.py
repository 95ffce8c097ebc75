"""`meshspec prove`: the table, the exit codes, and exported refutation traces."""
from __future__ import annotations

from meshspec.cli import main


def test_prove_prints_every_proof_with_method_result_and_seconds_and_exits_0(capsys):
    assert main(["prove", "--only", "shard_mapper.", "--only", "lemire_index"]) == 0
    out = capsys.readouterr().out
    assert "| property" in out and "seconds" in out and "1-induction + lemma" in out
    assert "shard_mapper.ids_strictly_increase" in out and "PASS: 6 proofs" in out


def test_prove_with_variants_exports_a_refutation_trace_that_replays(tmp_path, capsys):
    assert main(["prove", "--variants", "--only", "count_drift", "--export", str(tmp_path)]) == 0
    assert "refuted, confirmed" in capsys.readouterr().out
    (trace,) = tmp_path.glob("shard_mapper-*.json")
    assert main(["replay", str(trace)]) == 1
    assert "reproduces the recorded failure" in capsys.readouterr().out


def test_replaying_a_refutation_on_classes_that_do_not_follow_it_says_the_abstraction_is_too_coarse(
        tmp_path, capsys):
    assert main(["prove", "--variants", "--only", "count_drift", "--export", str(tmp_path)]) == 0
    (trace,) = tmp_path.glob("shard_mapper-*.json")
    capsys.readouterr()
    assert main(["replay", str(trace), "--impl", "impl.shard_mapper:ShardMapper"]) == 0
    assert "abstraction is too coarse" in capsys.readouterr().out


def test_a_non_positive_timeout_is_one_line_and_exit_2(capsys):
    assert main(["prove", "--timeout", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--timeout" in err


def test_an_unknown_proof_name_is_one_line_listing_the_known_ones_and_exit_2(capsys):
    assert main(["prove", "--only", "no_such_proof"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shard_mapper.active_within_budget" in err


def test_an_unwritable_export_dir_is_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["prove", "--variants", "--only", "drift", "--export", str(blocker / "sub")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_prove_exits_1_when_an_invariant_is_only_not_inductive(monkeypatch, capsys):
    from meshspec import prove_cli
    from meshspec.abstractions import shard_mapper as A
    from meshspec.prove import Inductive

    bare = Inductive("shard_mapper.bare_ids", "ids without their lemma", A.ABSTRACTION,
                     "ids_strictly_increase_never_sentinel")
    monkeypatch.setattr(prove_cli, "inductive_specs", lambda: (bare,))
    assert main(["prove", "--only", "bare_ids"]) == 1
    out = capsys.readouterr().out
    assert "not inductive" in out and "FAIL: not proved: shard_mapper.bare_ids" in out


def test_every_inductive_proof_has_a_dedicated_broken_variant_with_a_concretizer():
    """Each proved invariant has a curated mutant's change that breaks that very invariant (its
    refutation and replay are asserted per component in tests/test_prove_<component>.py)."""
    from meshspec import prove_cli

    variants = {(s.abstraction.name, s.invariant) for s, _ in prove_cli.variant_specs()}
    missing = [s.name for s in prove_cli.inductive_specs() if (s.abstraction.name, s.invariant) not in variants]
    assert not missing, missing
    assert set(prove_cli.ABSTRACTIONS) == set(prove_cli.CONCRETIZED)


def test_record_stores_result_and_seconds_per_row_and_the_report_table_shows_them(tmp_path, monkeypatch, capsys):
    from meshspec import prove_cli

    path = tmp_path / "prove-results.json"
    monkeypatch.setattr(prove_cli, "RESULTS_PATH", path)
    path.write_text('{"gone": {"result": "proved", "seconds": 1.0}}')
    assert main(["prove", "--variants", "--only", "drain_specific_ignores_floor", "--only", "lemire_index",
                 "--export", str(tmp_path), "--record"]) == 0
    recorded = prove_cli.load_recorded(path)
    assert set(recorded) == {"lemire_index_in_range", "drain_specific_ignores_floor (broken variant)"}
    assert recorded["drain_specific_ignores_floor (broken variant)"]["result"] == "refuted, confirmed"
    rows = {r[0]: r for r in prove_cli.catalogue(recorded)}
    assert rows["`lemire_index_in_range`"][-1] == f"{recorded['lemire_index_in_range']['seconds']:.2f}"
    assert rows["`scheduler.index_matches_scan`"][-1] == "-"
