"""REPORT.md is generated, never edited: it must equal what `meshspec report` writes now."""
from __future__ import annotations

from pathlib import Path

from meshspec import registry
from meshspec.report import operation_coverage, render

ROOT = Path(__file__).resolve().parent.parent


def test_report_md_is_current():
    committed = (ROOT / "REPORT.md").read_text(encoding="utf-8")
    assert committed == render(), "REPORT.md is stale: run `meshspec report`"


def test_every_public_operation_is_exercised_by_some_rule():
    for comp in registry.all_components():
        uncovered = [op for op, rules in operation_coverage(comp).items() if not rules]
        assert not uncovered, f"{comp.name}: operations no rule calls: {uncovered}"
