"""Curated mutants of capacity: the counter bugs of issue 5 §4 (semantics.md §1.7, §1.9, §1.10).

The Component in `properties/capacity.py` gets `MUTANTS` from here through `meshspec.registry`.
"""
from __future__ import annotations

from typing import Any, Optional

from impl.capacity import EtcdCoordinator as ImplCoordinator
from meshspec.lockstep import mutant
from model import capacity as M


class CasFailureBumpsCounter(ImplCoordinator):
    """A failed compare bumps the available counter (deltas applied per attempt, not per commit)."""

    def _cas_failed(self, op: str, tenant: bytes, run: int, shard: int) -> None:
        rs = self._runs.get((tenant, run))
        if rs is not None:
            rs.available += 1


class RevokeDecrements(ImplCoordinator):
    """Revoking the prior etcd lease after an acquire takes the shard out of the leased set."""

    def _lease_revoked(self, tenant: bytes, run: int, shard: int, lease_id: int,
                       prior: bool, ok: bool) -> None:
        rs = self._runs.get((tenant, run))
        if rs is not None and prior:
            rs.deadlines.pop(shard, None)
            self._make_available(rs, shard)


class ExpiryNeverDetected(ImplCoordinator):
    """Neither logical expiry nor owner keys deleted by etcd are ever noticed."""

    def _detect_expired(self, rs: Any, now: int) -> None:
        pass

    def _detect_vanished_owners(self) -> None:
        pass


class VanishedOwnerNotDetected(ImplCoordinator):
    """Owner keys deleted by etcd (TTL expiry) are not noticed; logical expiry is."""

    def _detect_vanished_owners(self) -> None:
        pass


class ExpiryOffByOne(ImplCoordinator):
    """Logical expiry detected only once now > deadline (the lease is live while now < deadline)."""

    def _detect_expired(self, rs: Any, now: int) -> None:
        super()._detect_expired(rs, now - 1 if now > 0 else now)


class SplitAddsNoChildren(ImplCoordinator):
    """split_replace retires the parent but does not count its children as available."""

    def _committed_split_replace(self, tenant: bytes, run: int, parent: int,
                                 children: tuple[int, ...]) -> None:
        rs = self._run_for_delta(tenant, run)
        if rs is not None:
            self._drop(rs, parent)


class TerminalKeepsDeadline(ImplCoordinator):
    """complete / park leave the shard's deadline among the live ones."""

    def _committed_terminal(self, tenant: bytes, run: int, shard: int) -> None:
        pass


class RenewKeepsOldDeadline(ImplCoordinator):
    """renew does not move the shard's deadline in the counters."""

    def _committed_renew(self, tenant: bytes, run: int, shard: int, deadline: int) -> None:
        pass


class ResidualNotCounted(ImplCoordinator):
    """split_residual's new shard is not counted as available."""

    def _committed_split_residual(self, tenant: bytes, run: int, parent: int, residual: int) -> None:
        pass


class UnparkNotCounted(ImplCoordinator):
    """unpark returns the shard to Active without counting it available."""

    def _committed_unpark(self, tenant: bytes, run: int, shard: int) -> None:
        pass


class LightweightCount(ImplCoordinator):
    """count_available_lightweight (§1.7): a present owner key counts as owned, no earliest deadline."""

    def _detect_expired(self, rs: Any, now: int) -> None:
        pass

    def _earliest(self, rs: Any) -> None:
        return None


class OwnerGuardWithoutLeaseId(ImplCoordinator):
    """The owner guard compares presence and value but not the etcd lease id (§1.10 #2)."""

    def _owner_compares(self, owner_key: bytes, owner: Optional[M.OwnerKey]) -> list:
        return super()._owner_compares(owner_key, owner)[:2]


class ForeignAcquireNotDetected(ImplCoordinator):
    """Another coordinator's acquire of a shard counted available is never noticed: the shard
    stays counted available while it is leased (the losing coordinator's counters go stale)."""

    def _detect_foreign_acquire(self, tenant: bytes, run: int, rs: Any, shard: int) -> None:
        pass


class OwnerKeyChangeNotTracked(ImplCoordinator):
    """The counters before the ABA fix: the rescan after a foreign write re-reads only shards
    counted available that gained an owner key, never a counted-leased shard whose owner key
    ran out and was re-created by another coordinator since (it keeps the old deadline)."""

    def _detect_vanished_owners(self) -> None:
        if not self._watch.dirty:
            return
        self._watch.dirty = False
        for (tenant, run), rs in self._runs.items():
            if not rs.deadlines and not rs.available_ids:
                continue
            resp = self._kv.get_prefix(self._keys.shards_prefix(tenant, run), keys_only=True)
            owned = {ident[2] for kind, ident in map(self._keys.classify, (kv.key for kv in resp.kvs))
                     if kind == "owner"}
            for shard in [s for s in rs.deadlines if s not in owned]:
                del rs.deadlines[shard]
                self._make_available(rs, shard)
            for shard in sorted(rs.available_ids & owned):
                self._detect_foreign_acquire(tenant, run, rs, shard)


HINT_CHECKS = ("hint_equals_full_scan", "check_invariants", "*result", "capacity_hint observation",
               "abstract state")
MUTANTS = (
    mutant("cas_failure_bumps_counter", CasFailureBumpsCounter,
           "§1.9: deltas must apply once, on the committed attempt", HINT_CHECKS),
    mutant("revoke_decrements", RevokeDecrements,
           "§1.9 / issue: a revocation never decrements (it is best-effort)", HINT_CHECKS),
    mutant("expiry_never_detected", ExpiryNeverDetected,
           "§1.9: expired leases must be detected on the next read", HINT_CHECKS),
    mutant("ttl_expiry_not_detected", VanishedOwnerNotDetected,
           "§1.4: an owner key deleted by etcd makes the shard available", HINT_CHECKS),
    mutant("expiry_off_by_one", ExpiryOffByOne,
           "§1.3: a lease is live while now < deadline (half-open)", HINT_CHECKS),
    mutant("split_adds_no_children", SplitAddsNoChildren,
           "§1.9: split_replace adds N available children", HINT_CHECKS),
    mutant("terminal_keeps_deadline", TerminalKeepsDeadline,
           "§1.9: complete / park remove the shard's deadline", HINT_CHECKS),
    mutant("renew_keeps_old_deadline", RenewKeepsOldDeadline,
           "§1.9: renew replaces the shard's deadline", HINT_CHECKS),
    mutant("residual_not_counted", ResidualNotCounted,
           "§1.9: split_residual adds one available shard", HINT_CHECKS),
    mutant("unpark_not_counted", UnparkNotCounted, "§1.9: unpark adds one available shard",
           HINT_CHECKS),
    mutant("count_available_lightweight", LightweightCount,
           "§1.7: the B-version lightweight count (expired owner counted owned, no deadline)",
           HINT_CHECKS),
    mutant("owner_guard_without_lease_id", OwnerGuardWithoutLeaseId,
           "§1.10 #2: the A-version owner guard without Compare::lease", ("abstract state", "*result")),
    mutant("foreign_acquire_not_detected", ForeignAcquireNotDetected,
           "§1.9: a shard another coordinator acquired is no longer available", HINT_CHECKS),
    mutant("owner_key_change_not_tracked", OwnerKeyChangeNotTracked,
           "§1.9: a shard re-acquired elsewhere after its owner key ran out has the new deadline",
           HINT_CHECKS),
)
