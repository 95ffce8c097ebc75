"""The boundary-aimed rules find bugs that sit only on their boundary (each a known-bad variant).

The ci witnesses (tests/test_machines.py) show each boundary class is reached; these show that
reaching it catches a bug living there.
"""
from __future__ import annotations

import math

from impl.capacity import ShardStatus
from impl.capacity import EtcdCoordinator as ImplCoordinator
from meshspec import registry
from meshspec.fuzz import run_fuzz


class AdoptCountsOrphansLeased(ImplCoordinator):
    """A coordinator that, building its counters by a scan, counts a record whose owner key is
    gone (TTL ran out) as leased: only a coordinator started over such a KV shows it."""

    def _classify_on_adopt(self, rs, record, owner):
        if record.status is ShardStatus.ACTIVE and record.lease is not None:
            self._make_leased(rs, record.shard, record.lease.deadline)
        else:
            super()._classify_on_adopt(rs, record, owner)

    def check_invariants(self) -> None:  # a user's class has no self-check: the hint must show it
        pass


def test_restarted_coordinator_over_orphaned_records_is_checked(fuzz_seed):
    comp = registry.get_component("capacity")
    result = run_fuzz(comp, AdoptCountsOrphansLeased, profile="dev", seed=fuzz_seed,
                      use_database=False, shrink=False, max_examples=150)
    assert result.trace is not None, "the restart rule never rebuilt counters over an orphaned record"
    assert "restart_coordinator" in [name for name, _ in result.trace.steps]


from bisect import bisect_left  # noqa: E402

from impl.load_balancer import LoadBalancer as ImplLB  # noqa: E402


class KeyOnVnodeGoesToNext(ImplLB):
    """A key hashing exactly onto a vnode is served by the next vnode (a `>` for `>=`)."""

    def _ring_walk(self, h, st):
        ring = self._ring
        start = bisect_left(ring, (h + 1,))
        for k in range(len(ring)):
            node_id = ring[(start + k) % len(ring)][1]
            if node_id in st.ids:
                return self._eps[node_id]
        return None


class NoWrapPastLastVnode(ImplLB):
    """A key hashing above the last vnode finds no endpoint instead of wrapping to the first."""

    def _ring_walk(self, h, st):
        if h > self._ring[-1][0]:
            return None
        return super()._ring_walk(h, st)


def _caught(cls, seed, examples=100):
    comp = registry.get_component("load_balancer")
    # ci's step count: ring-relative keys need a few members on the ring before the select
    return run_fuzz(comp, cls, profile="ci", seed=seed, use_database=False, shrink=False,
                    max_examples=examples)


def test_key_exactly_on_a_vnode_is_drawn(fuzz_seed):
    result = _caught(KeyOnVnodeGoesToNext, fuzz_seed)
    assert result.trace is not None, "no routing key ever hashed exactly onto a vnode"


def test_key_above_the_last_vnode_is_drawn(fuzz_seed):
    # the whole ci budget: a key above the last vnode needs a ring strategy, a 64-bit ring (few
    # pool keys lie above its last vnode) or a weak ring whose top residues are free
    result = _caught(NoWrapPastLastVnode, fuzz_seed, examples=None)
    assert result.trace is not None, "no routing key ever hashed above the ring's last vnode"


# -- scheduler, daemon host, group coordinator: one boundary-only bug each -------------------

from impl.daemon_host import DaemonHost as ImplHost  # noqa: E402
from impl.group_coordinator import GroupCoordinator as ImplGroup  # noqa: E402
from impl.scheduler import Scheduler as ImplScheduler  # noqa: E402
from model.daemon_host import U32_MAX  # noqa: E402
from properties.group_coordinator import U8_MAX  # noqa: E402
from properties.scheduler import F32_MAX  # noqa: E402


class AboveF32MaxDropped(ImplScheduler):
    """A score admitted only up to f32::MAX: the doubles between it and the overflow edge, which
    round down to f32::MAX, are dropped as if they overflowed."""

    def _admit_score(self, raw):
        if raw is not None and math.isfinite(raw) and abs(raw) > F32_MAX:
            return None
        return super()._admit_score(raw)


class WriteLimitMinusOneAccepted(ImplHost):
    """The u32 range check of the write limit written `-1 <= limit` (a `meshspec mutate`
    survivor): a limit of -1 skips every event instead of raising."""

    def write_causal_events(self, events, buf, *, max_total_len=U32_MAX):
        return super().write_causal_events(events, buf, max_total_len=max(max_total_len, 0))


class SaturatesOneLate(ImplGroup):
    """u8 saturation written `count if count <= 256 else 255` (a `<` for `<=` slip): a group of
    exactly 256 members answers 256."""

    def _saturate(self, count):
        return count if count <= U8_MAX + 1 else U8_MAX


def _boundary_caught(component: str, cls, seed, examples: int):
    comp = registry.get_component(component)
    return run_fuzz(comp, cls, profile="dev", seed=seed, use_database=False, shrink=False,
                    max_examples=examples)


def test_a_score_just_above_f32_max_is_drawn(fuzz_seed):
    result = _boundary_caught("scheduler", AboveF32MaxDropped, fuzz_seed, 100)
    assert result.trace is not None, "no score between f32::MAX and the overflow edge was ever drawn"


def test_a_write_limit_of_minus_one_is_drawn(fuzz_seed):
    result = _boundary_caught("daemon_host", WriteLimitMinusOneAccepted, fuzz_seed, 100)
    assert result.trace is not None, "no write limit of -1 (just below u32) was ever drawn"


def test_a_group_of_exactly_256_members_is_reached(fuzz_seed):
    result = _boundary_caught("group_coordinator", SaturatesOneLate, fuzz_seed, 150)
    assert result.trace is not None, "no group ever held exactly 256 members"


def test_the_f32_edges_the_scheduler_draws_are_where_f32_rounding_changes():
    from model.scheduler import to_f32
    from properties.scheduler import F32_OVERFLOW, f32_step, score_edges

    assert to_f32(math.nextafter(F32_OVERFLOW, 0.0)) == F32_MAX  # just below the edge: rounds down
    assert to_f32(F32_OVERFLOW) == math.inf  # the edge itself: the tie rounds to even, infinity
    assert f32_step(1.0, 1) == 1.0 + 2.0**-23 and f32_step(1.0, -1) == 1.0 - 2.0**-24
    assert f32_step(F32_MAX, 1) == math.inf and f32_step(0.0, -1) == -(2.0**-149)
    assert f32_step(-1.0, 1) == -(1.0 - 2.0**-24)
    assert {0.5, f32_step(0.5, -1), f32_step(0.5, 1)} <= set(score_edges([0.5]))
