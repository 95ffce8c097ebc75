"""meshspec.testing.lockstep_test used exactly as a user's own suite would: a class of theirs
(here a subclass of the optimized mapper standing for their refactor), one line, and pytest
collects and runs the lockstep machine under the active Hypothesis profile."""
from __future__ import annotations

from impl.shard_mapper import ShardMapper

from meshspec.testing import lockstep_test


class MyMapper(ShardMapper):
    """A user's refactored mapper (unchanged behaviour)."""


TestMyMapper = lockstep_test("shard_mapper", MyMapper)
