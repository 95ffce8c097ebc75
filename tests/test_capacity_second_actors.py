"""Second actors over the capacity coordinator's KV: each scenario the machine's new rules reach
(a second coordinator's acquire, an owner key's TTL expiry between two of the coordinator's calls,
a restart whose first call is a write, bulk renewals) catches a known-bad variant that lives only
there, and the correct impl passes it. The variants are the automatic mutants of impl/capacity.py
that survived the ci budget before these rules existed (`meshspec mutate capacity`), plus the
curated `foreign_acquire_not_detected`. Each scenario is a fixed step list (no search), so the
tests are fast and say exactly which situation shows the bug.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from meshspec import mutate, registry
from meshspec.clock import FakeClock
from meshspec.lockstep import Lockstep, LockstepFailure
from model import capacity as M
from model.etcd import EtcdModel
from mutants.capacity import ForeignAcquireNotDetected, OwnerKeyChangeNotTracked
from properties.capacity import TENANT

COMP = registry.get_component("capacity")
INIT = ("init", (3, 8, 2, 1_000, False))  # run 1: shards 1 and 2, 1 µs leases, revocations work


@lru_cache(maxsize=1)
def _generated() -> tuple[str, dict[str, mutate.SourceMutant]]:
    source, filename, _ = mutate.source_of(COMP.impl_cls)
    return filename, {m.id: m for m in mutate.generate(source, Path(filename).name)}


def _mutant(mutant_id: str) -> type:
    filename, mutants = _generated()
    return mutate.load_mutant_class(mutants[mutant_id], COMP.impl_cls.__module__,
                                    COMP.impl_cls.__qualname__, filename)


def _replay(cls: type, steps: list) -> LockstepFailure | None:
    ls = Lockstep(COMP, cls)
    try:
        ls.run([INIT, *steps])
    except LockstepFailure as failure:
        return failure
    return None


ACQUIRE = ("acquire", (1, 1, 1, "own", ""))
SCENARIOS = {
    # the prior owner's lease is revoked after a takeover; an owner key expired just before
    "const:0→1|self._watch.saw(resp.revision, 0)  # keys deleted by a revoke are foreign news|#0": [
        ACQUIRE, ("advance_clock", (1_000,)), ("acquire", (1, 1, 2, "own", "expire@lease_revoke"))],
    # the keep-alive after a renew; an owner key expired between the renew's txn and it
    "const:0→1|self._watch.saw(resp.revision, 0)|#2": [
        ACQUIRE, ("foreign_expiry", ("lease_keep_alive",)), ("renew", (0, "", ""))],
    # lease_leases while the state is read; the expiry shows only at the next step's hint
    "const:0→1|self._watch.saw(resp.revision, 0)|#4": [
        ACQUIRE, ("foreign_expiry", ("lease_leases",)), ("advance_clock", (1,))],
    # the self-check runs with an expiry it has not seen (right after the hint reads)
    "drop_cache:delete|self._kv.get(self._keys.tenants_prefix())  # lets pending expiries show as a gap|#0": [
        ACQUIRE, ("foreign_expiry", ("after_hint_reads",))],
    # a second coordinator leased a shard this one counts available; the worker completes here
    "const:1→2|rs.available -= 1|#1": [("foreign_acquire", (1, 1, 2, "complete", 7))],
    # a restart over a leased shard: the scan must count it leased
    "compare:is not→is|if owner is not None and record.lease is not None:|#1": [
        ACQUIRE, ("restart_then", ("claim", (1, 2, "")))],
}


@pytest.mark.parametrize("mutant_id", list(SCENARIOS))
def test_each_former_survivor_is_caught_by_its_second_actor_scenario(mutant_id):
    steps = SCENARIOS[mutant_id]
    assert _replay(COMP.impl_cls, steps) is None, "the correct impl must pass the scenario"
    failure = _replay(_mutant(mutant_id), steps)
    assert failure is not None, f"the scenario does not catch {mutant_id}"


def test_the_curated_foreign_acquire_mutant_is_caught_when_a_second_coordinator_acquires():
    steps = [("foreign_acquire", (1, 1, 2, "", 7))]
    assert _replay(COMP.impl_cls, steps) is None
    failure = _replay(ForeignAcquireNotDetected, steps)
    assert failure is not None and failure.name == "hint_equals_full_scan", failure


def test_bulk_renewals_compact_the_deadline_heap_and_the_hint_stays_exact():
    ls = Lockstep(COMP)
    ls.run([INIT, ACQUIRE, ("renew_many", (0, 80))])
    rs = ls.impl.sut._runs[(TENANT, 1)]
    assert len(rs.heap) <= 2 * len(rs.deadlines) + 64  # compacted on the way (80 pushes, one deadline)


def _expire_then_reacquire_elsewhere(cls: type) -> tuple[M.CapacityHint, M.CapacityHint]:
    """This coordinator acquires (deadline 1000) and reads its hint; the owner key's TTL runs
    out; 10 ns later a second coordinator re-acquires the shard (deadline 1010, a new owner
    key). Returns this coordinator's next hint, and its hint once the old deadline passed."""
    kv, clock = EtcdModel(clock=FakeClock(0)), FakeClock(0)
    opts = M.CoordinatorOptions(owner_lease_ttl_secs=3600, lease_id_base=1 << 40)
    first = cls(kv, clock=clock, options=opts)
    second = cls(kv, clock=clock, options=M.CoordinatorOptions(
        owner_lease_ttl_secs=3600, lease_id_base=(1 << 40) + 1000))
    tenant = bytes(32)
    first.create_run(tenant, 1, M.RunConfig(1_000))
    first.register_shards(tenant, 1, [M.ShardManifestEntry(1, M.ShardSpec(b"\0", b"\1"))], 1)
    first.acquire_and_restore_into(tenant, 1, 1, 1)        # deadline 1000
    assert first.capacity_hint(tenant, 1) == M.CapacityHint(0, 1_000)
    owner = kv.get(first._keys.owner_key(tenant, 1, 1)).kvs[0]
    kv.expire_lease_now(owner.lease)                         # the TTL runs out
    clock.advance(10)
    second.acquire_and_restore_into(tenant, 1, 1, 2)       # deadline 1010, a new owner key
    hint = first.capacity_hint(tenant, 1)
    clock.advance(995)                                       # now 1005: past 1000, before 1010
    return hint, first.capacity_hint(tenant, 1)


def test_an_owner_key_expired_and_reacquired_elsewhere_between_two_reads_moves_the_deadline():
    assert _expire_then_reacquire_elsewhere(COMP.impl_cls) == (
        M.CapacityHint(0, 1_010), M.CapacityHint(0, 1_010))
    assert _expire_then_reacquire_elsewhere(COMP.model_cls) == (
        M.CapacityHint(0, 1_010), M.CapacityHint(0, 1_010))
    # the counters before the fix: the old deadline, then the shard counted available while leased
    assert _expire_then_reacquire_elsewhere(OwnerKeyChangeNotTracked) == (
        M.CapacityHint(0, 1_000), M.CapacityHint(1, None))


def test_the_machine_reaches_the_aba_and_the_pre_fix_counters_fail_there():
    steps = [ACQUIRE, ("foreign_reacquire", (1, 1, 2, 1, 22))]  # the key runs out, 1 ns later re-acquired
    assert _replay(COMP.impl_cls, steps) is None
    failure = _replay(OwnerKeyChangeNotTracked, steps)
    assert failure is not None and failure.name == "hint_equals_full_scan", failure
