"""The whole `prove` and `contracts` suites, as CI runs them.

Each proof and contract has its own tests (a broken variant refuted, a refutation that
replays); these run the complete suites end to end, so a model change that breaks a
proof, a contract or a model/impl pair is caught in CI.  `contracts` runs at a 1 s
limit per condition here (about a minute); the default 5 s is for local and nightly runs.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from meshspec.cli import main


def test_every_proof_holds_and_every_broken_variant_is_refuted_with_a_replaying_trace(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "--variants", "--export", str(tmp_path)]) == 0
    assert "PASS:" in capsys.readouterr().out


def test_no_contract_is_refuted_and_no_model_impl_pair_differs_at_a_short_time_limit(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contracts", "--timeout", "1"]) == 0
    out = capsys.readouterr().out
    assert "PASS:" in out
