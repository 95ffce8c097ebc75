"""Reviewed equivalent mutants of `meshspec mutate`, per component: mutant id → why no
observable behaviour changes. A listed survivor leaves the score's denominator.

Ids are `operator:change|stripped line text|#ordinal` (see meshspec.mutate), so they stay
valid when unrelated lines move. Add an entry only after reading the diff and the code
around it; a mutant that changes behaviour the spec does not observe is a weakness of the
spec, not an equivalent mutant: leave it out of this list and report it.
"""
from __future__ import annotations

EQUIVALENT: dict[str, dict[str, str]] = {
    "groups": {
        "drop_cache:delete|self._monotone = True  # the buffer is empty again|#0":
            "a flag left False only sends replay through the model's full scan, which returns the "
            "same list for any buffer; check_invariants asserts only monotone -> increasing",
        "drop_cache:delete|self._monotone = True|#0":
            "same as above (sync_standbys): a stale False flag costs a scan, never a different replay",
    },
}


def for_component(name: str) -> dict[str, str]:
    return dict(EQUIVALENT.get(name, {}))
