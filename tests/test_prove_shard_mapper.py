"""The shard mapper's counter abstraction: its invariants are proved by induction."""
from __future__ import annotations

import pytest

from meshspec.abstractions import shard_mapper as A
from meshspec.prove import Inductive, prove_inductive


@pytest.mark.parametrize("spec", A.PROOFS, ids=[p.name for p in A.PROOFS])
def test_mapper_invariant_is_proved_by_induction(spec):
    result = prove_inductive(spec)
    assert result.status == "proved", result


@pytest.mark.parametrize("invariant", ["ids_strictly_increase_never_sentinel", "floor_respected_by_draining"])
def test_without_its_lemma_the_invariant_is_not_inductive_but_not_refuted(invariant):
    result = prove_inductive(Inductive("bare", "bare", A.ABSTRACTION, invariant))
    assert result.status == "not inductive", result
