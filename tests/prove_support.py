"""Shared steps of the per-component prove tests: a broken variant's z3 refutation becomes a
trace that `meshspec replay` reproduces on the mutant."""
from __future__ import annotations

from types import ModuleType
from typing import Any

from meshspec import traces
from meshspec.cli import main
from meshspec.prove import prove_inductive


def refutation_replays_on_the_mutant(concrete: ModuleType, spec: Any, impl: str, tmp_path: Any,
                                     capsys: Any) -> Any:
    """Refute `spec`, confirm the refutation on `impl`, export it and replay it (exit 1,
    "reproduces the recorded failure"); returns the refutation for component-specific checks."""
    result = prove_inductive(spec)
    assert result.status == "REFUTED", result
    ref = concrete.refutation(result.path, impl, spec.invariant)
    assert ref.verdict == "confirmed", ref.detail
    path, _ = traces.export(ref.trace, tmp_path)
    capsys.readouterr()
    assert main(["replay", str(path)]) == 1
    assert "reproduces the recorded failure" in capsys.readouterr().out
    return ref
