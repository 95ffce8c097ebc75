"""Optimized coordinator: per-run CapacityHint counters instead of the full-scan hint.

The protocol (reads, validation, guarded txns, retries, revocations) is the model's:
this class subclasses `model.capacity.EtcdCoordinator` and replaces only the two full
scans (`_capacity`, `_claim_candidates`), maintaining per run, in process memory:

- `available` — the counter of Active shards without a live owner, with the set of their
  ids (for claiming, sorted on demand);
- `deadlines` — Active shards counted as leased → their logical deadline;
- `heap` — (deadline, shard) entries, lazily deleted: an entry whose deadline is no
  longer the shard's current one is skipped when it reaches the top.

Counter updates (semantics.md §1.9) happen only in the commit notifications, i.e. when
a txn committed: register +N available; acquire and renew set the shard's deadline
(taking it out of `available` if it was counted there); complete / park drop the
deadline; split_replace drops the parent's and adds N available children;
split_residual and unpark add one available shard. A failed compare changes nothing, and
a best-effort revocation never decrements anything.

Leases that ran out are detected on the next read, never when they happen:
- logical expiry: before a hint or a claim, heap entries with `deadline <= now` move
  their shard from `deadlines` to `available` (amortized O(1) per lease);
- owner keys deleted by etcd (TTL expiry, revocation) or by anyone else: the KV is
  wrapped so that every response's revision is compared with the revision this
  coordinator expects (its own committed writes add exactly one). A gap means someone
  else wrote; the next read then does one keys-only scan per tracked run and moves
  counted-leased shards whose owner key is gone to `available`, and counted-available
  shards that gained an owner key (another coordinator acquired them) to leased, with
  the deadline read from their record (found by `meshspec interleave etcd_cas_acquire`:
  two coordinators over one etcd), and counted-leased shards whose owner key's
  mod_revision differs from the one the previous rescan saw (the key ran out and another
  coordinator re-created it: the deadline is read again). Without foreign writes
  a hint read is O(1) amortized in the number of shards (plus one single-key read of
  the run record).

Scope of the counter model: like the intended fix, the counters assume that shard
records change only through this coordinator. Foreign writes may delete owner keys or
rewrite records / owner keys with semantically identical values (what the tests'
interferer does to force CAS retries); other foreign edits are not tracked. A run this
coordinator has not seen yet is adopted by one full scan the first time it is needed.

Override points for mutants: `_committed_*`, `_cas_failed`, `_lease_revoked` (from the
model), `_detect_expired` (logical deadlines), `_detect_vanished_owners` (owner keys
deleted behind our back), `_classify_on_adopt`, `_earliest`, `_owner_compares`.
"""
from __future__ import annotations

import copy
import heapq
from typing import Callable, Optional, Sequence

import attrs

from meshspec.clock import Clock, monotonic_clock
from model.capacity import (
    CapacityHint,
    CoordinatorOptions,
    EtcdCoordinator as ModelCoordinator,
    Interferer,
    OwnerKey,
    ShardRecord,
    ShardStatus,
    is_owner_live,
    sat_u32,
)
from model.etcd import (
    Compare,
    DeleteResponse,
    EtcdKV,
    KVConveniences,
    LeaseGrantResponse,
    LeaseKeepAliveResponse,
    LeaseLeasesResponse,
    LeaseRevokeResponse,
    LeaseTimeToLiveResponse,
    Op,
    PutOp,
    PutResponse,
    RangeResponse,
    TxnResponse,
)

RunKey = tuple[bytes, int]


@attrs.define
class _RevisionWatch:
    """The revision this coordinator expects next; `dirty` once someone else wrote."""

    seen: Optional[int] = None
    dirty: bool = False

    def saw(self, revision: int, own_writes: int) -> None:
        if self.seen is not None and revision != self.seen + own_writes:
            self.dirty = True
        self.seen = revision


class _WatchedKV(KVConveniences):
    """Delegates to the real KV and reports every response's revision to the watch."""

    def __init__(self, kv: EtcdKV, watch: _RevisionWatch) -> None:
        self._inner = kv
        self._watch = watch

    def range(self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False,
              count_only: bool = False) -> RangeResponse:
        resp = self._inner.range(key, range_end, keys_only=keys_only, count_only=count_only)
        self._watch.saw(resp.revision, 0)
        return resp

    def put(self, key: bytes, value: bytes, lease: int = 0) -> PutResponse:
        resp = self._inner.put(key, value, lease)
        self._watch.saw(resp.revision, 1)
        return resp

    def delete(self, key: bytes, range_end: bytes = b"") -> DeleteResponse:
        resp = self._inner.delete(key, range_end)
        self._watch.saw(resp.revision, 1 if resp.deleted else 0)
        return resp

    def txn(self, compares: Sequence[Compare], success: Sequence[Op] = (),
            failure: Sequence[Op] = ()) -> TxnResponse:
        resp = self._inner.txn(compares, success, failure)
        branch = success if resp.succeeded else failure
        wrote = any(isinstance(op, PutOp) for op in branch) or any(
            isinstance(r, DeleteResponse) and r.deleted for r in resp.responses)
        self._watch.saw(resp.revision, 1 if wrote else 0)
        return resp

    def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResponse:
        resp = self._inner.lease_grant(ttl, lease_id)
        self._watch.saw(resp.revision, 0)
        return resp

    def lease_revoke(self, lease_id: int) -> LeaseRevokeResponse:
        resp = self._inner.lease_revoke(lease_id)
        self._watch.saw(resp.revision, 0)  # keys deleted by a revoke are foreign news
        return resp

    def lease_keep_alive(self, lease_id: int) -> LeaseKeepAliveResponse:
        resp = self._inner.lease_keep_alive(lease_id)
        self._watch.saw(resp.revision, 0)
        return resp

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> LeaseTimeToLiveResponse:
        resp = self._inner.lease_time_to_live(lease_id, keys)
        self._watch.saw(resp.revision, 0)
        return resp

    def lease_leases(self) -> LeaseLeasesResponse:
        resp = self._inner.lease_leases()
        self._watch.saw(resp.revision, 0)
        return resp


@attrs.define
class _RunCounters:
    available: int = 0
    available_ids: set[int] = attrs.Factory(set)
    deadlines: dict[int, int] = attrs.Factory(dict)
    heap: list[tuple[int, int]] = attrs.Factory(list)
    # leased shard -> its owner key's mod_revision at the last rescan (ABA detection)
    owner_revs: dict[int, int] = attrs.Factory(dict)

    def copy(self) -> "_RunCounters":
        """A copy sharing nothing mutable (each field is a flat container of immutable values)."""
        return _RunCounters(*(copy.copy(getattr(self, f.name)) for f in attrs.fields(_RunCounters)))


class EtcdCoordinator(ModelCoordinator):
    """The coordinator with incrementally maintained per-run CapacityHint counters."""

    def __init__(self, kv: EtcdKV, *, clock: Clock = monotonic_clock,
                 options: CoordinatorOptions = CoordinatorOptions(),
                 interferer: Optional[Interferer] = None,
                 revoke_fault: Optional[Callable[[int], bool]] = None) -> None:
        self._watch = _RevisionWatch()
        self._runs: dict[RunKey, _RunCounters] = {}
        super().__init__(_WatchedKV(kv, self._watch), clock=clock, options=options,
                         interferer=interferer, revoke_fault=revoke_fault)

    # ------------------------------------------------------------------ the reads

    def _capacity(self, tenant: bytes, run: int, now: int) -> CapacityHint:
        rs = self._counters(tenant, run, now)
        return CapacityHint(sat_u32(rs.available), self._earliest(rs))

    def _claim_candidates(self, tenant: bytes, run: int, now: int) -> tuple[list[int], Optional[int]]:
        rs = self._counters(tenant, run, now)
        return sorted(rs.available_ids), self._earliest(rs)

    def _counters(self, tenant: bytes, run: int, now: int) -> _RunCounters:
        """The run's counters with every expiry detectable now applied."""
        if (tenant, run) not in self._runs:
            self._adopt(tenant, run)
        self._detect_vanished_owners()
        rs = self._runs[(tenant, run)]
        self._detect_expired(rs, now)
        return rs

    def _adopt(self, tenant: bytes, run: int) -> _RunCounters:
        """Build a run's counters from one full scan (first use of the run only)."""
        rs = _RunCounters()
        for record, owner in self._scan_run(tenant, run):
            self._classify_on_adopt(rs, record, owner)
        self._runs[(tenant, run)] = rs
        return rs

    def _classify_on_adopt(self, rs: _RunCounters, record: ShardRecord,
                           owner: Optional[OwnerKey]) -> None:
        # Deadlines already passed are counted leased here and moved by _detect_expired.
        if record.status is not ShardStatus.ACTIVE:
            return
        if owner is not None and record.lease is not None:
            self._make_leased(rs, record.shard, record.lease.deadline)
        else:
            self._make_available(rs, record.shard)

    # ------------------------------------------------------------------ detection

    def _detect_expired(self, rs: _RunCounters, now: int) -> None:
        """Logical expiry: leased shards whose deadline <= now become available."""
        while rs.heap and rs.heap[0][0] <= now:
            deadline, shard = heapq.heappop(rs.heap)
            if rs.deadlines.get(shard) == deadline:
                del rs.deadlines[shard]
                self._make_available(rs, shard)

    def _detect_vanished_owners(self) -> None:
        """After a foreign write: counted-leased shards whose owner key is gone, and
        counted-available shards that gained an owner key (another coordinator acquired
        them: their record, read once, gives the deadline), and counted-leased shards whose
        owner key was re-created since the last rescan (read again the same way)."""
        if not self._watch.dirty:
            return
        self._watch.dirty = False
        for (tenant, run), rs in self._runs.items():
            if not rs.deadlines and not rs.available_ids:
                continue
            resp = self._kv.get_prefix(self._keys.shards_prefix(tenant, run), keys_only=True)
            owned = {ident[2]: kv.mod_revision for kv in resp.kvs
                     for kind, ident in [self._keys.classify(kv.key)] if kind == "owner"}
            for shard in [s for s in rs.deadlines if s not in owned]:
                del rs.deadlines[shard]
                self._make_available(rs, shard)
            # An owner key rewritten since the last rescan (ours or another coordinator's, e.g.
            # after the old one ran out): the deadline counted may be stale, read it again.
            changed = {s for s in rs.deadlines if owned[s] != rs.owner_revs.get(s)}
            for shard in sorted((rs.available_ids & owned.keys()) | changed):
                self._detect_foreign_acquire(tenant, run, rs, shard)
            rs.owner_revs = {s: owned[s] for s in rs.deadlines}  # each one is owned by now

    def _detect_foreign_acquire(self, tenant: bytes, run: int, rs: _RunCounters, shard: int) -> None:
        loaded = self._load_shard(tenant, run, shard)
        if loaded is not None and loaded.owner is not None and loaded.record.lease is not None \
                and loaded.record.status is ShardStatus.ACTIVE:
            self._make_leased(rs, shard, loaded.record.lease.deadline)

    def _earliest(self, rs: _RunCounters) -> Optional[int]:
        """The minimum live deadline; stale heap tops are dropped on the way."""
        while rs.heap and rs.deadlines.get(rs.heap[0][1]) != rs.heap[0][0]:
            heapq.heappop(rs.heap)
        return rs.heap[0][0] if rs.heap else None

    # ------------------------------------------------------------------ counter primitives

    def _make_available(self, rs: _RunCounters, shard: int) -> None:
        if shard not in rs.available_ids:
            rs.available_ids.add(shard)
            rs.available += 1

    def _make_leased(self, rs: _RunCounters, shard: int, deadline: int) -> None:
        if shard in rs.available_ids:
            rs.available_ids.discard(shard)
            rs.available -= 1
        rs.deadlines[shard] = deadline
        heapq.heappush(rs.heap, (deadline, shard))
        if len(rs.heap) > 2 * len(rs.deadlines) + 64:  # too many stale entries: compact
            rs.heap = [(d, s) for s, d in rs.deadlines.items()]
            heapq.heapify(rs.heap)

    def _drop(self, rs: _RunCounters, shard: int) -> None:
        """The shard left Active: it counts neither as available nor as leased."""
        rs.deadlines.pop(shard, None)
        if shard in rs.available_ids:
            rs.available_ids.discard(shard)
            rs.available -= 1

    def _run_for_delta(self, tenant: bytes, run: int) -> Optional[_RunCounters]:
        """The run's counters, or None after adopting an unseen run (the scan already
        shows the committed txn, so the delta must not be applied again)."""
        rs = self._runs.get((tenant, run))
        if rs is None:
            self._adopt(tenant, run)
        return rs

    # ------------------------------------------------------------------ commit notifications

    def _committed_register(self, tenant: bytes, run: int, shards: tuple[int, ...]) -> None:
        rs = self._run_for_delta(tenant, run)
        if rs is not None:
            for shard in shards:
                self._make_available(rs, shard)

    def _committed_acquire(self, tenant: bytes, run: int, shard: int, deadline: int) -> None:
        rs = self._run_for_delta(tenant, run)
        if rs is not None:
            self._make_leased(rs, shard, deadline)

    def _committed_renew(self, tenant: bytes, run: int, shard: int, deadline: int) -> None:
        rs = self._run_for_delta(tenant, run)
        if rs is not None:
            self._make_leased(rs, shard, deadline)

    def _committed_terminal(self, tenant: bytes, run: int, shard: int) -> None:
        rs = self._run_for_delta(tenant, run)
        if rs is not None:
            self._drop(rs, shard)

    def _committed_split_replace(self, tenant: bytes, run: int, parent: int,
                                 children: tuple[int, ...]) -> None:
        rs = self._run_for_delta(tenant, run)
        if rs is not None:
            self._drop(rs, parent)
            for child in children:
                self._make_available(rs, child)

    def _committed_split_residual(self, tenant: bytes, run: int, parent: int, residual: int) -> None:
        rs = self._run_for_delta(tenant, run)
        if rs is not None:
            self._make_available(rs, residual)

    def _committed_unpark(self, tenant: bytes, run: int, shard: int) -> None:
        rs = self._run_for_delta(tenant, run)
        if rs is not None:
            self._make_available(rs, shard)

    # ------------------------------------------------------------------ self-check

    def check_invariants(self) -> None:
        """Every tracked run's counters, with every expiry detectable now applied, equal a
        full scan of the KV now. Pure: detection runs on a copy of the counters and of the
        revision watch, so a check never updates what the next read will find."""
        runs, seen, dirty = self._runs, self._watch.seen, self._watch.dirty
        self._runs = {run: rs.copy() for run, rs in runs.items()}
        try:
            self._check_detected(self._clock())
        finally:
            self._runs, self._watch.seen, self._watch.dirty = runs, seen, dirty

    def _check_detected(self, now: int) -> None:
        self._kv.get(self._keys.tenants_prefix())  # lets pending expiries show as a gap
        self._detect_vanished_owners()
        for (tenant, run), rs in self._runs.items():
            self._detect_expired(rs, now)
            self._check_run(tenant, run, rs, now)

    def _check_run(self, tenant: bytes, run: int, rs: _RunCounters, now: int) -> None:
        entries = self._scan_run(tenant, run)
        active = [(r, o is not None) for r, o in entries if r.status is ShardStatus.ACTIVE]
        want_available = {r.shard for r, owned in active if not is_owner_live(r, owned, now)}
        want_leased = {r.shard: r.lease.deadline for r, owned in active  # type: ignore[union-attr]
                       if is_owner_live(r, owned, now)}
        where = f"run {tenant.hex()[:8]}…/{run}"
        assert rs.available == len(rs.available_ids), (
            f"{where}: available counter {rs.available} != {len(rs.available_ids)} available ids")
        assert rs.available_ids == want_available, (
            f"{where}: available ids {sorted(rs.available_ids)} != full scan {sorted(want_available)}")
        assert rs.deadlines == want_leased, (
            f"{where}: leased deadlines {rs.deadlines} != full scan {want_leased}")
        in_heap = set(rs.heap)
        missing = [(d, s) for s, d in rs.deadlines.items() if (d, s) not in in_heap]
        assert not missing, f"{where}: deadlines missing from the heap: {missing}"
