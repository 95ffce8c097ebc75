"""The groups machine's boundary and out-of-order rules find bugs that live only there.

Each class below is a known-bad variant of the groups impl whose bug sits on one boundary
the rules aim at (an unordered standby buffer, a term or a sequence at u64::MAX, try_recover's
cap of 4 slots per tick, the u8 member-count limit). None has the impl's `check_invariants()`
to lean on (a user's class passed with `--impl` has none), except where the self-check is the
only observer. The ci witnesses (tests/test_machines.py) show each boundary class is reached;
these show that reaching it catches a bug living there.
"""
from __future__ import annotations

import bisect
from typing import Any

from impl.groups import Group as ImplGroup
from meshspec import registry
from meshspec.fuzz import run_fuzz
from model import groups as M
from model.group_coordinator import InvalidConfig
from properties import groups as G

COMP = registry.get_component("groups")


class _NoSelfCheck(ImplGroup):
    def check_invariants(self) -> None:
        pass


class ReplayBisectsAnyBuffer(_NoSelfCheck):
    """The replay bisects the buffer even after it went out of sequence order."""

    def _to_replay(self, synced_through: int) -> list[int]:
        return self._buffer[bisect.bisect_right(self._buffer, synced_through):]


class DuplicateKeepsMonotoneFlag(ImplGroup):
    """A redelivered last event (equal sequence) leaves the buffer flagged strictly increasing.
    Bisection still answers right on a non-decreasing buffer: only the self-check sees it."""

    def deliver(self, registry: M.DaemonRegistry, seq: int, ctx: Any = G.RequestContext()) -> int:
        flag = self._monotone
        last = self._buffer[-1] if self._buffer else None
        origin = super().deliver(registry, seq, ctx)
        if last is not None and seq == last:
            self._monotone = flag
        return origin


class TermWrapsAtU64Max(_NoSelfCheck):
    """The fencing term wraps to 0 past u64::MAX instead of saturating."""

    def _bump_term(self) -> None:
        self._term = (self._term + 1) & M.U64_MAX


class ReplayFromWrappedNext(_NoSelfCheck):
    """The replay starts at `synced_through.wrapping_add(1)`: at u64::MAX that is 0, so
    everything buffered is replayed again."""

    def _to_replay(self, synced_through: int) -> list[int]:
        start = (synced_through + 1) & M.U64_MAX
        return [seq for seq in self._buffer if seq >= start]


class RecoversFivePerTick(_NoSelfCheck):
    """try_recover re-places up to 5 slots per tick (the cap of 4 off by one)."""

    def try_recover(self, scheduler: Any, registry: M.DaemonRegistry) -> list[int]:
        members = self._coord.members()
        unhealthy = [m.index for m in members
                     if not m.healthy and not (self._kind == "standby" and m.index == self._active)][:5]
        exclude = {m.node_id for m in members if m.healthy}
        recovered = []
        for index in unhealthy:
            try:
                node = M.SPREAD.place(self.COORDINATOR, scheduler, registry, self._requirements, exclude)
            except M.PlacementFailed:
                continue
            self._replace_slot(index, node, registry)
            exclude.add(node)
            recovered.append(index)
        if recovered:
            self._bump_term()
        return recovered


class RefusesTheU8Limit(_NoSelfCheck):
    """scale_to treats 255 members as out of range (a `< 255` for `<= 255`)."""

    def scale_to(self, n: int, scheduler: Any, registry: M.DaemonRegistry) -> None:
        if n == G.U8_MAX:
            raise InvalidConfig("replica_count out of range")
        super().scale_to(n, scheduler, registry)


def _caught(cls: type, seed: int, examples: int = 150, profile: str = "dev") -> Any:
    """The first failure of a run (no shrinking). The deeper shapes get the ci profile's
    longer examples, within its budget of 300 (their witnesses are promised there)."""
    result = run_fuzz(COMP, cls, profile=profile, seed=seed, use_database=False, shrink=False,
                      max_examples=examples)
    assert result.trace is not None, f"{cls.__name__} survived {examples} {profile} examples"
    return result.trace


def _rules(trace: Any) -> list[str]:
    return [name for name, _ in trace.steps]


def test_an_unordered_buffer_replayed_by_bisection_loses_or_repeats_events(fuzz_seed):
    trace = _caught(ReplayBisectsAnyBuffer, fuzz_seed)
    assert trace.failure.name in ("no_event_lost_after_promote", "no_event_applied_twice", "abstract state")
    assert "deliver_again" in _rules(trace) or "deliver_late" in _rules(trace)


def test_a_duplicate_of_the_last_event_is_delivered(fuzz_seed):
    trace = _caught(DuplicateKeepsMonotoneFlag, fuzz_seed)
    assert trace.failure.name == "check_invariants" and "deliver_again" in _rules(trace)


def test_a_term_at_u64_max_is_bumped(fuzz_seed):
    trace = _caught(TermWrapsAtU64Max, fuzz_seed)
    assert trace.failure.name in ("term_bumps_on_promote_and_recovery", "abstract state", "counts observation")
    assert "seat_term" in _rules(trace)


def test_a_standby_synced_through_u64_max_is_promoted_with_events_buffered(fuzz_seed):
    trace = _caught(ReplayFromWrappedNext, fuzz_seed, examples=300, profile="ci")
    assert "jump_sequence" in _rules(trace)


def test_try_recover_meets_a_backlog_past_its_cap(fuzz_seed):
    trace = _caught(RecoversFivePerTick, fuzz_seed, examples=300, profile="ci")
    assert trace.failure.name in ("try_recover_is_bounded_and_makes_progress", "try_recover result",
                                  "abstract state")


def test_scale_to_is_asked_for_the_u8_limit(fuzz_seed):
    trace = _caught(RefusesTheU8Limit, fuzz_seed)
    assert trace.failure.name == "scale_to result"


def test_every_boundary_witness_is_a_sometimes_property_of_the_component():
    names = {inv.name for inv in COMP.invariants if inv.kind == "sometimes"}
    assert set(G.BOUNDARY_WITNESSES) | {"buffered_out_of_order", "promote_replayed_unordered_buffer"} <= names
