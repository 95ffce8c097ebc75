"""The boundary-aimed rules find bugs that sit only on their boundary (each a known-bad variant).

The ci witnesses (tests/test_machines.py) show each boundary class is reached; these show that
reaching it catches a bug living there.
"""
from __future__ import annotations

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


def _caught(cls, seed):
    comp = registry.get_component("load_balancer")
    return run_fuzz(comp, cls, profile="dev", seed=seed, use_database=False, shrink=False,
                    max_examples=100)


def test_key_exactly_on_a_vnode_is_drawn(fuzz_seed):
    result = _caught(KeyOnVnodeGoesToNext, fuzz_seed)
    assert result.trace is not None, "no routing key ever hashed exactly onto a vnode"


def test_key_above_the_last_vnode_is_drawn(fuzz_seed):
    result = _caught(NoWrapPastLastVnode, fuzz_seed)
    assert result.trace is not None, "no routing key ever hashed above the ring's last vnode"
