"""Properties of the etcd-backed shard-lease coordinator and its capacity hint: the subject
harness, invariants, lockstep machine, benchmark and exploration (issue 5 §3–§5).

The harness (`CapacitySubject`) wraps one coordinator (model or impl) over its own KV
with its own logical clock (`self.clock`, the coordinator's `clock`). The KV is the
in-memory `model.etcd.EtcdModel` on both sides, unless `MESHSPEC_ETCD` is set (by
`meshspec fuzz --etcd URL|auto`): then the IMPL side runs over `EtcdGateway` on that real
server — each example under a fresh key prefix and lease-id base, every lease it granted
revoked and its keys deleted at teardown — while the model side stays on `EtcdModel`.
Lease ids are explicit (base + 1, base + 2, …) on both sides, so `abstract()` (which
reports them relative to the base) compares equal across KVs.

Two clocks (semantics.md §1.4). The logical clock moves only by `advance_clock`. etcd
lease TTLs never run out during a run: the model KV's lease clock stays at 0 and real
leases get a one-hour TTL; `expire_lease` stands in for a TTL expiry (the model KV's
`expire_lease_now`, a revocation on a real server — both delete the attached owner key).

Ghost state: every lease token handed out (rules name a token by its index, mostly a
current one, and may forge it: stale or future fence, another worker, another tenant, a
missing shard), the fences
issued per shard, the fence last seen per shard, the root specs registered, the shard
ids known per run, owner keys removed behind the coordinator's back (with the fence the
record had then), and counters of what the interferer and the revocation fault did.

What the machine reaches: several runs (one registered at init), every operation with
valid and invalid arguments (bad manifests and op-id reuse, stale / future fences, wrong
tenant on the call or on the token, terminal shards, already-leased shards, expired
leases, cursor regressions and out-of-range keys, bad tilings and child limits), the
logical clock on and around lease deadlines (and a worker's periodic `heartbeat`), etcd
lease expiry, takeovers of shards whose owner key outlived its deadline, failing
revocations, and an interfering writer that runs between an attempt's read and its txn.
The interferer
stays within what the impl's counters support (impl/capacity.py): it rewrites the
record (or run record) with the same value (`rewrite`, forcing a CAS retry; on every
attempt, exhaustion), re-binds the owner key to a fresh foreign etcd lease with the same
value (`swap`, the §1.10 #2 situation), or deletes the owner key as a TTL expiry would
(`drop`).

Second actors over the same KV (issue 10): a second coordinator process acquires a shard and the
worker then reports through this one in the same step (`foreign_acquire`: renew, checkpoint,
complete, park, the splits, or a park there and an unpark here), an owner key's etcd lease runs
out between two of the coordinator's own calls (`foreign_expiry`, armed before its next
lease_revoke / keep-alive / lease_leases, or right after the step's hint reads, so its own
self-check meets an unseen write), a new coordinator whose first call is a write
(`restart_then`: a commit into a run it has not adopted), and a tight renew loop of one lease
(`renew_many`: the deadline heap compacts). Clock advances aim at live deadlines with
`meshspec.strategies.around` (one before, at, one past). An owner key that runs out and is
re-created by another coordinator before this one reads again (`foreign_reacquire`, the ABA the
counters once missed: tests/test_capacity_second_actors.py, mutant `owner_key_change_not_tracked`).

Reads for invariants go to the raw KV (`view()`, decoded once per step), never through
the coordinator, except `capacity_hint` itself (read once per step per run and shared by
`hint_equals_full_scan` and the `capacity_hint` observation). The full-scan hints of every run
come from one pass per (view, clock); the owner and tiling invariants are skipped when their
inputs are the ones they last passed on (`same_inputs`). Rules draw the state-dependent picks
as raw indices (`_pick`) and a rule's independent choices as one `joint` draw. Under the `dev` profile
(40 examples) some multi-step witnesses (a takeover across a swapped owner lease, an
unpark) are not reached on every seed; the `ci` profile reaches all of them.

Benchmark: acquire + hint read on one run of 10 … 10,000 shards (seeded straight into the
KV), model vs impl on the in-memory etcd; with `MESHSPEC_ETCD` set (e.g.
`MESHSPEC_ETCD=auto meshspec bench capacity`) a second case on the real server, whose
keys (under `/meshspec-bench/`) and one-hour leases are left to the server (`auto` stops
it at exit).
"""
from __future__ import annotations

import itertools
import os
from collections import Counter
from typing import Any, Callable, Iterable, Optional

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import initialize, precondition, rule

from meshspec.clock import FakeClock
from meshspec.etcd_server import ETCD_ENV, etcd_url, open_gateway
from meshspec.explore import Bound, Exploration
from meshspec.lockstep import BenchCase, Component, Subject, always, sometimes
from meshspec.machine import LockstepMachine
from meshspec.strategies import around, until
from model import capacity as M
from model.etcd import EtcdModel, PutOp

TENANT = bytes(range(32))
OTHER_TENANT = bytes([0xEE]) * 32
U64_MAX = M.U64_MAX
SPAN = 1 << 16  # root shard i covers keys [i * SPAN, (i + 1) * SPAN), 4-byte big-endian
KEY_WIDTH = 4
TTL_S = 3600  # long enough that no real etcd lease runs out during a run
MODEL_LEASE_BASE = 1 << 40
REAL_LEASE_BASE = 1 << 62  # above every id the tests' unique_lease_id() hands out
FOREIGN_LEASES = 1_000_000  # the interferer's leases: base + FOREIGN_LEASES + n
RESTART_LEASE_STRIDE = 5_000  # a restarted coordinator grants from base + k * stride + 1
SECOND_LEASES = 3_000_000  # a second coordinator's leases: base + SECOND_LEASES + 16 * n + 1 ...
SECOND_STRIDE = 16  # ids per second-coordinator call (at most 8 attempts, one grant each)
LEASE_CALLS = ("lease_revoke", "lease_keep_alive", "lease_leases")
UNIQUE_OP_IDS = 10**9  # op ids above every drawn one (OP_IDS): a foreign park / unpark always applies
EXPIRY_POINTS = LEASE_CALLS + ("after_hint_reads",)  # where a foreign TTL expiry can be armed
RUNS = (1, 2, 3)
DURATIONS = (1_000, 1_000, 50_000, U64_MAX)
REASONS = tuple(M.ParkReason)

_example_counter = itertools.count(1)


def real_lease_base(n: int) -> int:
    """Lease ids of the n-th real-etcd example of this process: 10**7 ids of its own
    (granted ones from base + 1, the interferer's from base + FOREIGN_LEASES + 1)."""
    return REAL_LEASE_BASE + (os.getpid() % 100_000) * 10**13 + (n % 10**6) * 10**7


def key(n: int) -> bytes:
    """A 4-byte big-endian key (keys order like the integers)."""
    return max(0, min(n, 2**32 - 1)).to_bytes(KEY_WIDTH, "big")


def num(k: bytes) -> int:
    return int.from_bytes(k, "big")


def root_spec(shard: int) -> M.ShardSpec:
    return M.ShardSpec(key(shard * SPAN), key((shard + 1) * SPAN))


class ForeignExpiryKV:
    """The KV as the coordinators see it: every call goes straight to the real KV, except that
    a TTL expiry can be armed to happen just before a coordinator's next lease call of one kind
    (another process's etcd lease runs out between two of this coordinator's calls, so the
    revision the call answers with includes a write the coordinator did not make)."""

    def __init__(self, kv: Any, fire: Callable[[str], None]) -> None:
        self._inner = kv
        self._fire = fire
        self.armed: set[str] = set()
        for name in ("range", "put", "delete", "txn", "get", "get_prefix", "delete_prefix",
                     "lease_grant", "lease_time_to_live"):
            setattr(self, name, getattr(kv, name))

    def _before(self, call: str) -> None:
        if call in self.armed:
            self.armed.discard(call)
            self._fire(call)

    def lease_revoke(self, lease_id: int) -> Any:
        self._before("lease_revoke")
        return self._inner.lease_revoke(lease_id)

    def lease_keep_alive(self, lease_id: int) -> Any:
        self._before("lease_keep_alive")
        return self._inner.lease_keep_alive(lease_id)

    def lease_leases(self) -> Any:
        self._before("lease_leases")
        return self._inner.lease_leases()

    def __eq__(self, other: object) -> bool:  # the KV itself is compared through abstract()
        return isinstance(other, ForeignExpiryKV) and self.armed == other.armed

    __hash__ = None  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or "_inner" not in self.__dict__:  # e.g. while unpickling
            raise AttributeError(name)
        return getattr(self._inner, name)


@attrs.frozen
class ShardView:
    """One shard as the raw KV shows it (read without the coordinator)."""

    record: M.ShardRecord
    owner: Optional[tuple[int, int, int]]  # (worker, fence, etcd lease id)
    marker: bool


@attrs.frozen
class KVView:
    runs: dict[int, M.RunRecord]
    shards: dict[tuple[int, int], ShardView]
    run_markers: frozenset[int]
    stray_owners: tuple[tuple[int, int], ...]


class CapacitySubject(Subject):
    """One coordinator over its own KV plus ghost state; one method per machine rule."""

    def init(self, retries: int, max_children: int, shards: int, duration: int,
             revocations_fail: bool) -> tuple:
        url = etcd_url() if self.side == "impl" else None
        n = next(_example_counter)
        if url is None:
            self.kv: Any = EtcdModel(clock=FakeClock(0))
            root, self.lease_base = "/gossip/v1", MODEL_LEASE_BASE
        else:
            self.kv = open_gateway(url)  # a lost server raises EtcdServerLost (exit 2)
            root = f"/meshspec-fuzz/{os.getpid()}-{n}"
            self.lease_base = real_lease_base(n)
        self.real = url is not None
        self.keys = M.Keyspace(root)
        self.options = M.CoordinatorOptions(
            root_prefix=root, owner_lease_ttl_secs=TTL_S, optimistic_txn_retries=retries,
            max_children_per_op=max_children, lease_id_base=self.lease_base)
        self.coord_kv = ForeignExpiryKV(self.kv, self._foreign_expiry)
        self.sut = self.cls(self.coord_kv, clock=self.clock, options=self.options,
                            interferer=self._interfere, revoke_fault=self._revoke_fault)
        self.seconds = 0  # second-coordinator calls so far
        self.expire_after_hints = False
        self.leases: list[M.Lease] = []
        self.issued: dict[tuple[int, int], list[int]] = {}
        self.fence_seen: dict[tuple[int, int], int] = {}
        self.roots: dict[tuple[int, int], M.ShardSpec] = {}
        self.shards: dict[int, list[int]] = {}
        self.orphaned: dict[tuple[int, int], int] = {}
        self.foreign = 0
        self.plan: list[tuple[str, str]] = []
        self.wrote = 0
        self.swapped = 0
        self.revoking_fails = revocations_fail
        self.events: Counter[str] = Counter()
        self.violation: dict[str, str] = {}
        self._view: Optional[KVView] = None
        self._view_for: Any = None
        self._view_revision = 0
        self._hints: dict[int, Any] = {}
        self._hints_for: Any = None
        self._scanned: tuple[tuple[Any, ...], dict[int, M.CapacityHint]] = ((), {})
        self._passed: dict[str, tuple[Any, ...]] = {}
        self._deadlines: tuple[tuple[Any, ...], tuple[frozenset[int], Optional[int]]] = ((), (frozenset(), None))
        out = [self.sut.create_run(TENANT, 1, M.RunConfig(duration))]
        if shards:
            out.append(self.register_shards(1, shards, "ok", 1, ""))
        return tuple(out)

    def observations(self) -> dict[str, Any]:
        """The public hint of every run id (an error name for a missing run)."""
        return {"capacity_hint": tuple(self._hint(run) for run in RUNS)}

    def _hint(self, run: int) -> Any:
        """`capacity_hint` now, or the name of the error it raised (read once per step)."""
        if self._hints_for is not self.last:
            self._hints, self._hints_for = {}, self.last
        if run not in self._hints:
            try:
                self._hints[run] = self.sut.capacity_hint(TENANT, run)
            except M.CoordinationError as exc:
                self._hints[run] = type(exc).__name__
        return self._hints[run]

    def close(self) -> None:
        """Release a real server's resources: revoke our leases, delete our keys."""
        if not getattr(self, "real", False):
            return
        try:
            low = self.lease_base
            high = self.lease_base + SECOND_LEASES + SECOND_STRIDE * (self.seconds + 1)
            for lease_id in self.kv.lease_leases().leases:
                if low < lease_id <= high:
                    self.kv.lease_revoke(lease_id)
            self.kv.delete_prefix(self.keys.tenants_prefix())
        except Exception:  # noqa: BLE001 - best effort; the keys are under a private prefix
            pass
        finally:
            self.kv.close()
            self.real = False

    # -- the raw KV, read without the coordinator ---------------------------------------
    def view(self) -> KVView:
        """The decoded KV contents now (cached for the rest of the step, and kept across
        steps while the KV's revision stays the same: every change of a key adds one)."""
        if self._view is not None and self._view_for is self.last:
            return self._view
        resp = self.kv.get_prefix(self.keys.tenants_prefix())
        if self._view is None or resp.revision != self._view_revision:
            self._view, self._view_revision = self._decode_view(resp.kvs), resp.revision
        self._view_for = self.last
        return self._view

    def _decode_view(self, kvs: tuple[Any, ...]) -> KVView:
        runs: dict[int, M.RunRecord] = {}
        records: dict[tuple[int, int], M.ShardRecord] = {}
        owners: dict[tuple[int, int], tuple[int, int, int]] = {}
        markers: set[tuple[int, int]] = set()
        run_markers: set[int] = set()
        for kv in kvs:
            kind, ident = self.keys.classify(kv.key)  # classify and decode are memoized
            if kind == "run":
                runs[ident[1]] = M.decode_run(kv.value)
            elif kind == "shard":
                records[ident[1:]] = M.decode_shard(kv.value)
            elif kind == "owner":
                owners[ident[1:]] = M.decode_owner(kv.value) + (kv.lease,)
            elif kind == "shard_marker":
                markers.add(ident[1:])
            elif kind == "run_marker":
                run_markers.add(ident[1])
        shards = {k: ShardView(r, owners.get(k), k in markers) for k, r in records.items()}
        stray = tuple(sorted(set(owners) - set(records)))
        return KVView(runs, shards, frozenset(run_markers), stray)

    def _shard_before(self, run: int, shard: int) -> Optional[ShardView]:
        """One shard as the KV holds it when a rule starts, before the rule writes anything
        (so the view, cached since the last step, is still the KV's content)."""
        return self.view().shards.get((run, shard))

    def _shard_now(self, run: int, shard: int) -> Optional[ShardView]:
        """One shard read directly (not cached: used inside rules, after they wrote)."""
        kvs = self.kv.get(self.keys.shard_key(TENANT, run, shard)).kvs
        if not kvs:
            return None
        owner = self.kv.get(self.keys.owner_key(TENANT, run, shard)).kvs
        decoded = M.decode_owner(owner[0].value) + (owner[0].lease,) if owner else None
        marker = bool(self.kv.get(self.keys.shard_marker_key(TENANT, run, shard)).count)
        return ShardView(M.decode_shard(kvs[0].value), decoded, marker)

    def live(self, v: Optional[ShardView]) -> bool:
        """§1.4 owner_is_live_at, from the raw KV: owner key, record lease, now < deadline."""
        return (v is not None and v.owner is not None and v.record.lease is not None
                and self.clock() < v.record.lease.deadline)

    # -- the interferer and the revocation fault -----------------------------------------
    def _interfere(self, op: str, shard_key: bytes, attempt: int) -> None:
        last = self.options.optimistic_txn_retries - 1
        for kind, when in self.plan:
            if kind == "expire":
                continue  # armed on the KV by _call
            hit = {"0": attempt == 0, "01": attempt <= 1, "all": True, "last": attempt == last}[when]
            if hit:
                getattr(self, f"_interfere_{kind}")(shard_key)

    def _interfere_rewrite(self, k: bytes) -> None:
        kvs = self.kv.get(k).kvs
        if kvs:
            self.kv.put(k, kvs[0].value, kvs[0].lease)
            self.wrote += 1

    def _interfere_swap(self, k: bytes) -> None:
        owner = self.kv.get(k + b"/owner").kvs
        if owner:
            self.foreign += 1
            lease_id = self.kv.lease_grant(TTL_S, self.lease_base + FOREIGN_LEASES + self.foreign).id
            self.kv.put(owner[0].key, owner[0].value, lease_id)
            self.wrote += 1
            self.swapped += 1

    def _interfere_drop(self, k: bytes) -> None:
        if self.kv.get(k + b"/owner").count:
            self._orphan(k)
            self.kv.delete(k + b"/owner")
            self.wrote += 1

    def _foreign_expiry(self, call: str) -> None:
        """The armed TTL expiry: the etcd lease of the first owner key runs out (one revision)."""
        owners = [kv for kv in self.kv.get_prefix(self.keys.tenants_prefix(), keys_only=True).kvs
                  if self.keys.classify(kv.key)[0] == "owner"]
        if not owners:
            return
        self._orphan(owners[0].key[:-len(b"/owner")])
        if self.real:
            self.kv.lease_revoke(owners[0].lease)
        else:
            self.kv.expire_lease_now(owners[0].lease)
        self.events[f"owner expired at {call}"] += 1
        self._view_for = None  # a view cached earlier this step predates the expiry: re-check it

    def hints_read(self) -> None:
        """Every run's hint was read this step: an expiry armed `after_hint_reads` happens now,
        so the coordinator's self-check runs with a foreign write it has not seen yet."""
        if self.expire_after_hints:
            self.expire_after_hints = False
            self._foreign_expiry("after_hint_reads")

    def _orphan(self, shard_key: bytes) -> None:
        kind, ident = self.keys.classify(shard_key)
        if kind == "shard":
            rec = M.decode_shard(self.kv.get(shard_key).kvs[0].value)
            self.orphaned[ident[1:]] = rec.fence_epoch

    def _revoke_fault(self, lease_id: int) -> bool:
        if self.revoking_fails:
            self.events["revocation failed"] += 1
        return self.revoking_fails

    def _call(self, interference: str, fn: Callable[[], Any]) -> Any:
        """One coordinator call with the interferer armed; ghost counters after it."""
        self.plan = [tuple(p.split("@")) for p in interference.split("+") if p]  # type: ignore[misc]
        self.wrote = self.swapped = 0
        for kind, when in self.plan:
            if kind == "expire":  # e.g. expire@lease_revoke: before this call's revocation
                self.coord_kv.armed.add(when)
        try:
            out = fn()
        except M.ContentionNotConverged:
            self.events["exhausted"] += 1
            raise
        except M.BackendError as exc:
            if exc.kind == "transient":
                self.events["exhausted"] += 1
            raise
        except M.CoordinationError as exc:
            self.events[type(exc).__name__] += 1
            raise
        finally:
            self.plan = []
        if self.wrote:
            self.events["committed after retry"] += 1
        return out

    def _check_fence(self, run: int, shard: int) -> None:
        v = self._shard_now(run, shard)
        if v is None:
            return
        before = self.fence_seen.get((run, shard), 0)
        if v.record.fence_epoch < before:
            self.violation["fence"] = (f"shard {run}/{shard}: fence went back from {before} "
                                       f"to {v.record.fence_epoch}")
        self.fence_seen[(run, shard)] = v.record.fence_epoch

    # -- rules: runs -------------------------------------------------------------------------
    def create_run(self, run: int, duration: int) -> M.RunRecord:
        return self.sut.create_run(TENANT, run, M.RunConfig(duration))

    def register_shards(self, run: int, count: int, flavor: str, op_id: int,
                        interference: str) -> Any:
        entries = [M.ShardManifestEntry(i, root_spec(i)) for i in range(1, count + 1)]
        if flavor == "duplicate" and entries:
            entries.append(entries[0])
        elif flavor == "inverted" and entries:
            entries[-1] = M.ShardManifestEntry(count, M.ShardSpec(key(5), key(4)))
        elif flavor == "too_many":
            entries = [M.ShardManifestEntry(i, root_spec(i)) for i in range(1, 43)]
        out = self._call(interference,
                         lambda: self.sut.register_shards(TENANT, run, entries, op_id))
        if not out.replayed:
            self.shards[run] = [e.shard for e in entries]
            self.roots.update({(run, e.shard): e.spec for e in entries})
        return out

    # -- rules: acquiring ----------------------------------------------------------------------
    def acquire(self, run: int, shard: int, worker: int, tenant: str, interference: str) -> Any:
        before = self._shard_before(run, shard)
        who = TENANT if tenant == "own" else OTHER_TENANT
        res = self._call(interference,
                         lambda: self.sut.acquire_and_restore_into(who, run, shard, worker))
        self._acquired(res, {shard: before})
        return res

    def claim(self, run: int, worker: int, interference: str) -> Any:
        before = {s: self._shard_before(run, s) for s in self.shards.get(run, [])}
        res = self._call(interference, lambda: self.sut.claim_next_available(TENANT, run, worker))
        self._acquired(res, before)
        return res

    def _acquired(self, res: M.AcquireResult, before: dict[int, Optional[ShardView]]) -> None:
        lease = res.lease
        where = (lease.run, lease.shard)
        prior = before.get(lease.shard)
        if self.live(prior):
            self.violation["owner"] = (f"shard {where}: acquired by worker {lease.owner} while "
                                       f"the lease of worker {prior.record.lease.owner} was live")
        if prior is not None and prior.owner is not None:
            self.events["reacquired after logical expiry"] += 1
            if self.swapped:
                self.events["reacquired across a swapped owner lease"] += 1
        if prior is not None and prior.record.parent is not None:
            self.events["split child leased"] += 1
        self.leases.append(lease)
        self.issued.setdefault(where, []).append(lease.fence)
        self._check_fence(*where)

    # -- rules: lease-gated operations (a token by recency, possibly forged) --------------------
    def _token(self, index: int, forge: str) -> tuple[bytes, M.Lease]:
        lease = self.leases[index] if 0 <= index < len(self.leases) else M.Lease(TENANT, 1, 1, 1, 1, 1)
        tenant = TENANT
        if forge == "fence-1":
            lease = attrs.evolve(lease, fence=lease.fence - 1)
        elif forge == "fence+1":
            lease = attrs.evolve(lease, fence=lease.fence + 1)
        elif forge == "worker":
            lease = attrs.evolve(lease, owner=lease.owner + 1)
        elif forge == "token_tenant":
            lease = attrs.evolve(lease, tenant=OTHER_TENANT)
        elif forge == "call_tenant":
            tenant = OTHER_TENANT
        elif forge == "no_shard":
            lease = attrs.evolve(lease, shard=lease.shard + 1000)
        return tenant, lease

    def _spec_of(self, lease: M.Lease) -> tuple[M.ShardSpec, M.Cursor]:
        v = self._shard_before(lease.run, lease.shard)
        if v is None:
            return root_spec(lease.shard % 64), M.Cursor()
        return v.record.spec, v.record.cursor

    def _gated(self, lease: M.Lease, interference: str, fn: Callable[[], Any]) -> Any:
        try:
            return self._call(interference, fn)
        finally:
            self._check_fence(lease.run, lease.shard)

    def renew(self, index: int, forge: str, interference: str) -> M.RenewResult:
        tenant, lease = self._token(index, forge)
        return self._gated(lease, interference, lambda: self.sut.renew(tenant, lease))

    def heartbeat(self, index: int, quarters: int, interference: str) -> tuple:
        """A worker's periodic renew: `quarters`/4 of the run's lease duration pass, then renew."""
        _, lease = self._token(index, "")
        run = self.kv.get(self.keys.run_key(TENANT, lease.run)).kvs
        duration = M.decode_run(run[0].value).config.lease_duration_ns if run else 0
        now = self.clock.advance(min(duration, 10**9) * quarters // 4)
        return now, self._gated(lease, interference, lambda: self.sut.renew(TENANT, lease))

    def _cursor(self, lease: M.Lease, pos: str) -> M.Cursor:
        spec, cur = self._spec_of(lease)
        start, end = num(spec.key_range_start), num(spec.key_range_end)
        at = num(cur.last_key) if cur.last_key is not None else start
        where = {"next": at + 1, "same": at, "start": start, "last": end - 1, "regress": at - 1,
                 "outside": end}.get(pos)
        if pos == "none":
            return M.Cursor(None, b"tok")
        if pos == "huge":
            return M.Cursor(b"\x00" * (M.MAX_CURSOR_KEY_SIZE + 1))
        return M.Cursor(key(where), b"tok" if pos == "next" else None)

    def checkpoint(self, index: int, forge: str, pos: str, op_id: int, interference: str) -> Any:
        tenant, lease = self._token(index, forge)
        cursor = self._cursor(lease, pos)
        return self._gated(lease, interference,
                           lambda: self.sut.checkpoint(tenant, lease, cursor, op_id))

    def complete(self, index: int, forge: str, pos: str, op_id: int, interference: str) -> Any:
        tenant, lease = self._token(index, forge)
        cursor = self._cursor(lease, pos)
        return self._gated(lease, interference,
                           lambda: self.sut.complete(tenant, lease, cursor, op_id))

    def park_shard(self, index: int, forge: str, reason: int, op_id: int, interference: str) -> Any:
        tenant, lease = self._token(index, forge)
        return self._gated(lease, interference,
                           lambda: self.sut.park_shard(tenant, lease, REASONS[reason], op_id))

    def split_replace(self, index: int, forge: str, parts: int, shape: str, op_id: int,
                      interference: str) -> Any:
        tenant, lease = self._token(index, forge)
        spec, _ = self._spec_of(lease)
        start, end = num(spec.key_range_start), num(spec.key_range_end)
        cuts = [start + (end - start) * i // parts for i in range(parts + 1)]
        if shape == "gap" and parts >= 2:
            cuts.insert(2, cuts[1] + 1)
        elif shape == "short":
            cuts[-1] -= 1
        pieces = list(zip(cuts, cuts[1:]))
        if shape == "gap" and parts >= 2:
            pieces = pieces[:1] + pieces[2:]
        children = [M.ShardSpec(key(a), key(b)) for a, b in pieces]
        out = self._gated(lease, interference,
                          lambda: self.sut.split_replace(tenant, lease, children, op_id))
        if not out.replayed:
            self.shards.setdefault(lease.run, []).extend(out.value)
        return out

    def split_residual(self, index: int, forge: str, shape: str, op_id: int,
                       interference: str) -> Any:
        tenant, lease = self._token(index, forge)
        spec, cur = self._spec_of(lease)
        start, end = num(spec.key_range_start), num(spec.key_range_end)
        mid = {"half": (start + end) // 2,
               "after_cursor": (num(cur.last_key) + 1) if cur.last_key is not None else start + 1,
               "at_start": start}.get(shape, (start + end) // 2)
        residual_start = mid + 1 if shape == "gap" else mid
        plan = M.SplitResidualPlan(M.ShardSpec(key(start), key(mid)),
                                   M.ShardSpec(key(residual_start), key(end)))
        out = self._gated(lease, interference,
                          lambda: self.sut.split_residual(tenant, lease, plan, op_id))
        if not out.replayed:
            self.shards.setdefault(lease.run, []).append(out.value)
        return out

    # -- rules: admin, reads, time, etcd -------------------------------------------------------
    def unpark_shard(self, run: int, shard: int, op_id: int, interference: str) -> Any:
        out = self._call(interference, lambda: self.sut.unpark_shard(TENANT, run, shard, op_id))
        if not out.replayed:
            self.events["unparked"] += 1
        self._check_fence(run, shard)
        return out

    def capacity_hint(self, run: int) -> M.CapacityHint:
        return self.sut.capacity_hint(TENANT, run)

    def advance_clock(self, ns: int) -> int:
        return self.clock.advance(ns)

    def expire_lease(self, run: int, shard: int) -> bool:
        """The etcd lease bound to the shard's owner key runs out (TTL): the key vanishes."""
        owner = self.kv.get(self.keys.owner_key(TENANT, run, shard)).kvs
        if not owner:
            return False
        self._orphan(self.keys.shard_key(TENANT, run, shard))
        if self.real:
            self.kv.lease_revoke(owner[0].lease)  # revocation stands in for TTL expiry
        else:
            self.kv.expire_lease_now(owner[0].lease)
        return True

    def revocations_fail(self, failing: bool) -> bool:
        self.revoking_fails = failing
        return failing

    def foreign_expiry(self, call: str) -> str:
        """Arm a TTL expiry (another owner key's etcd lease runs out) to happen right before the
        coordinator's next `call` (lease_revoke after a takeover or a lost compare, the
        keep-alive after a renew, lease_leases while the state is read): the write lands
        between two of the coordinator's own calls. `after_hint_reads`: right after this
        step's hint reads (so the coordinator's own self-check meets an unseen write)."""
        if call == "after_hint_reads":
            self.expire_after_hints = True
        else:
            self.coord_kv.armed.add(call)
        return call

    def renew_many(self, index: int, times: int) -> tuple:
        """A worker renews one lease `times` times without the clock moving (a tight heartbeat
        loop): the deadline heap collects entries for one shard until it is compacted."""
        out = [self.renew(index, "", "") for _ in range(times)]
        return times, out[-1]

    def foreign_acquire(self, run: int, shard: int, worker: int, then: str, op_id: int) -> tuple:
        """Another coordinator process over the same KV acquires the shard, and the worker then
        (same step, before this coordinator read anything) reports through this one: `then` is
        renew, checkpoint, complete, park_shard, split_replace, split_residual or nothing; or
        `parked_there_unparked_here`: the other coordinator parks it, an admin unparks it here."""
        self.seconds += 1
        options = attrs.evolve(self.options, lease_id_base=self.lease_base + SECOND_LEASES
                               + SECOND_STRIDE * self.seconds)
        other = self.cls(self.coord_kv, clock=self.clock, options=options,
                         revoke_fault=self._revoke_fault)
        before = self._shard_now(run, shard)
        res = self._call("", lambda: other.acquire_and_restore_into(TENANT, run, shard, worker))
        self._acquired(res, {shard: before})
        self.events["acquired by a second coordinator"] += 1
        index = len(self.leases) - 1
        follow: Any = None
        if then == "renew":
            follow = self.renew(index, "", "")
        elif then == "checkpoint":
            follow = self.checkpoint(index, "", "next", op_id, "")
        elif then == "complete":
            follow = self.complete(index, "", "next", op_id, "")
        elif then == "park_shard":
            follow = self.park_shard(index, "", 0, op_id, "")
        elif then == "split_replace":
            follow = self.split_replace(index, "", 2, "tile", op_id, "")
        elif then == "split_residual":
            follow = self.split_residual(index, "", "half", op_id, "")
        elif then == "parked_there_unparked_here":  # this one never saw the shard leave Active
            lease, fresh = self.leases[index], UNIQUE_OP_IDS + 2 * self.seconds  # never a conflict
            parked = self._gated(lease, "", lambda: other.park_shard(TENANT, lease, REASONS[0], fresh))
            follow = (parked, self.unpark_shard(run, shard, fresh + 1, ""))
        if then:
            self.events["second coordinator's lease used here"] += 1
        return res, follow

    def foreign_reacquire(self, run: int, shard: int, worker: int, gap: int, op_id: int) -> tuple:
        """The ABA: the owner key of the shard runs out (its etcd lease expires) and `gap` ns
        later a second coordinator acquires the shard, in one step, so this coordinator reads
        nothing between the two writes and finds an owner key again, with a later deadline."""
        k = self.keys.owner_key(TENANT, run, shard)
        owner = self.kv.get(k).kvs
        if owner:
            self._orphan(self.keys.shard_key(TENANT, run, shard))
            if self.real:
                self.kv.lease_revoke(owner[0].lease)
            else:
                self.kv.expire_lease_now(owner[0].lease)
        self.clock.advance(gap)
        out = self.foreign_acquire(run, shard, worker, "", op_id)
        if owner:
            self.events["owner expired, then acquired by a second coordinator"] += 1
        return bool(owner), out

    def abstract(self) -> Any:
        """The coordinator's abstract state with every lease id relative to the first
        coordinator's base. The coordinator reports its own leases relative to its own base and
        any other lease as the raw id; after `restart_coordinator` an earlier coordinator's
        leases are raw ids, which differ between the model's ids and a real etcd's."""
        state = self.sut.abstract()
        shift = getattr(self, "restarts", 0) * RESTART_LEASE_STRIDE
        if not shift or not isinstance(state, M.CapacityAbstract):
            return state

        def original(lease: Optional[int]) -> Optional[int]:
            if lease is None or lease == 0:
                return lease
            return lease - self.lease_base if lease > self.lease_base else lease + shift

        return attrs.evolve(state, owners=tuple(attrs.evolve(o, lease=original(o.lease)) for o in state.owners),
                            leases=tuple(original(i) for i in state.leases))

    def restart_coordinator(self) -> tuple:
        """A new coordinator process starts over the same KV, in whatever state it is (leased,
        expired, orphaned owners, parked, split): the impl builds its per-run counters by a
        scan.  Answers every run's hint from the new one; the old instance is dropped."""
        now, shards = self.clock(), self.view().shards.values()
        for name, hit in (
                ("live lease", any(self.live(v) for v in shards)),
                ("expired lease", any(v.owner is not None and v.record.lease is not None
                                      and v.record.lease.deadline <= now for v in shards)),
                ("orphaned record", any(v.owner is None and v.record.lease is not None for v in shards)),
                ("parked or split", any(v.record.status in (M.ShardStatus.PARKED, M.ShardStatus.SPLIT)
                                        for v in shards))):
            if hit:
                self.events[f"restarted over {name}"] += 1
        self._restart()
        return tuple(self._hint(run) for run in RUNS)

    def _restart(self) -> None:
        # a second process grants its own lease ids: the next block of RESTART_LEASE_STRIDE
        self.restarts = getattr(self, "restarts", 0) + 1
        self.options = attrs.evolve(self.options, lease_id_base=self.lease_base
                                    + self.restarts * RESTART_LEASE_STRIDE)
        self.sut = self.cls(self.coord_kv, clock=self.clock, options=self.options,
                            interferer=self._interfere, revoke_fault=self._revoke_fault)

    def restart_then(self, op: str, args: tuple) -> Any:
        """A new coordinator starts over the same KV and its first call is `op(*args)` (a write,
        mostly): a commit into a run it has not adopted yet, before any hint was read."""
        self._restart()
        self.events["restarted, then a write first"] += 1
        return getattr(self, op)(*args)


# -- invariants -----------------------------------------------------------------------------

def full_scan_hints(s: CapacitySubject) -> dict[int, M.CapacityHint]:
    """count_available_for_run of every run with shards, recomputed here from the raw KV
    (independent of both classes), in one pass over the shards.

    Kept while the view object and the clock stay the same (see `same_inputs`): the hints are
    a function of the KV's contents and the time alone."""
    inputs = (s.view(), s.clock())
    if same_inputs(s._scanned[0], inputs):
        return s._scanned[1]
    view, now = inputs
    available: Counter[int] = Counter()
    deadlines: dict[int, list[int]] = {}
    for (run, _), v in view.shards.items():
        if v.record.status is not M.ShardStatus.ACTIVE:
            continue
        if s.live(v):
            deadlines.setdefault(run, []).append(v.record.lease.deadline)  # type: ignore[union-attr]
        else:
            available[run] += 1
    hints = {run: M.CapacityHint(available[run], min(deadlines.get(run, ()), default=None))
             for run in set(available) | set(deadlines)}
    s._scanned = (inputs, hints)
    return hints


def full_scan_hint(s: CapacitySubject, run: int) -> M.CapacityHint:
    """count_available_for_run of one run, from the full scan of every run."""
    return full_scan_hints(s).get(run, M.CapacityHint(0, None))


def same_inputs(last: tuple[Any, ...], now: tuple[Any, ...]) -> bool:
    """Whether a check's inputs are the ones it last ran on: the KV view first, by identity,
    then the rest (clock, ghost state) by `==`. The view object stands for the KV's contents:
    `view()` decodes a new one whenever the KV's revision moved, and every change of a key
    adds a revision; the check keeps a reference, so an old view's id is never reused."""
    return (len(last) == len(now) > 0 and last[0] is now[0]
            and all(a == b for a, b in zip(last[1:], now[1:])))


def _passed_before(s: CapacitySubject, name: str, *inputs: Any) -> bool:
    """Whether invariant `name` already passed on exactly these inputs: each invariant using
    this is a function of them alone, so it would pass again. A check that raised is never
    recorded (the run stops there)."""
    return same_inputs(s._passed.get(name, ()), inputs)


def _record_pass(s: CapacitySubject, name: str, *inputs: Any) -> None:
    s._passed[name] = inputs


def hint_equals_full_scan(s: CapacitySubject) -> None:
    """Every run's capacity_hint equals a full scan: Active shards without a live owner, min live deadline."""
    for run in s.view().runs:
        got = s._hint(run)
        assert not isinstance(got, str), f"run {run}: capacity_hint raised {got}"
        want = full_scan_hint(s, run)
        assert got == want, f"run {run}: hint {got} but a full scan says {want}"
    s.hints_read()


def fences_strictly_increase(s: CapacitySubject) -> None:
    """Per shard, acquired fences strictly increase and the record's fence never goes back."""
    assert "fence" not in s.violation, s.violation.get("fence")
    for where, fences in s.issued.items():
        assert all(a < b for a, b in zip(fences, fences[1:])), f"shard {where}: fences {fences}"
        v = s.view().shards.get(where)
        if v is not None:
            assert v.record.fence_epoch >= fences[-1], (
                f"shard {where}: record fence {v.record.fence_epoch} < issued {fences[-1]}")


def at_most_one_live_owner(s: CapacitySubject) -> None:
    """No acquire succeeds while another lease of the shard is live; at most one issued token is live."""
    assert "owner" not in s.violation, s.violation.get("owner")
    view = s.view()
    inputs = (view, s.clock(), len(s.leases))  # the token list only grows
    if _passed_before(s, "at_most_one_live_owner", *inputs):
        return
    live: Counter[tuple[int, int]] = Counter()
    for lease in set(s.leases):
        v = view.shards.get((lease.run, lease.shard))
        if s.live(v) and v is not None and v.owner is not None \
                and v.owner[:2] == (lease.owner, lease.fence) and v.record.fence_epoch == lease.fence:
            live[(lease.run, lease.shard)] += 1
    assert all(n <= 1 for n in live.values()), f"several live tokens: {dict(live)}"
    _record_pass(s, "at_most_one_live_owner", *inputs)


def terminal_shards_hold_no_lease(s: CapacitySubject) -> None:
    """Terminal ⇒ no lease, no owner key, no active marker; Active ⇔ marker; run marker ⇔ run Active."""
    view = s.view()
    if _passed_before(s, "terminal_shards_hold_no_lease", view):
        return
    for where, v in view.shards.items():
        if v.record.status.is_terminal:
            assert v.record.lease is None, f"shard {where} is {v.record.status} but leased"
            assert v.owner is None, f"shard {where} is {v.record.status} but has an owner key"
        assert v.marker == (v.record.status is M.ShardStatus.ACTIVE), (
            f"shard {where}: status {v.record.status}, shards_active marker {v.marker}")
    for run, rec in view.runs.items():
        assert (run in view.run_markers) == (rec.status is M.RunStatus.ACTIVE), (
            f"run {run}: status {rec.status}, runs_active marker {run in view.run_markers}")
    _record_pass(s, "terminal_shards_hold_no_lease", view)


def owner_key_matches_record_lease(s: CapacitySubject) -> None:
    """Owner key ⇔ record lease with its worker and fence (no owner key only once its etcd lease ran out)."""
    view = s.view()
    inputs = (view, dict(s.orphaned))
    if _passed_before(s, "owner_key_matches_record_lease", *inputs):
        return
    assert not view.stray_owners, f"owner keys without a shard record: {view.stray_owners}"
    for where, v in view.shards.items():
        holder = v.record.lease
        if v.owner is not None:
            worker, fence, lease_id = v.owner
            assert holder is not None and (holder.owner, v.record.fence_epoch) == (worker, fence), (
                f"shard {where}: owner key ({worker}, {fence}) but record lease {holder} "
                f"fence {v.record.fence_epoch}")
            assert lease_id != 0, f"shard {where}: owner key without an etcd lease"
        elif holder is not None:
            assert s.orphaned.get(where) == v.record.fence_epoch, (
                f"shard {where}: record leased to {holder.owner} at fence {v.record.fence_epoch} "
                f"but no owner key, and no etcd lease of that fence ran out")
    _record_pass(s, "owner_key_matches_record_lease", *inputs)


def _extent(view: KVView, run: int, shard: int, depth: int = 0) -> tuple[int, int]:
    """The key range a shard and its descendants cover; asserts the pieces tile it."""
    assert depth < 64, f"shard {run}/{shard}: spawn chain too deep (a cycle?)"
    rec = view.shards[(run, shard)].record
    pieces = [] if rec.status is M.ShardStatus.SPLIT else [
        (num(rec.spec.key_range_start), num(rec.spec.key_range_end))]
    for child in rec.spawned:
        cv = view.shards.get((run, child))
        assert cv is not None, f"shard {run}/{shard} spawned {child}, which has no record"
        assert cv.record.parent == shard, f"child {child} names parent {cv.record.parent}, not {shard}"
        pieces.append(_extent(view, run, child, depth + 1))
    assert pieces, f"shard {run}/{shard} is Split without children"
    pieces.sort()
    for (_, a_end), (b_start, _) in zip(pieces, pieces[1:]):
        assert a_end == b_start, f"shard {run}/{shard}: pieces {pieces} leave a gap or overlap"
    return pieces[0][0], pieces[-1][1]


def split_children_tile_parent(s: CapacitySubject) -> None:
    """Split children (and residuals, with the narrowed parent) exactly tile the parent's original range."""
    view = s.view()
    inputs = (view, dict(s.roots))
    if _passed_before(s, "split_children_tile_parent", *inputs):
        return
    for (run, shard), spec in s.roots.items():
        if (run, shard) in view.shards:
            got = _extent(view, run, shard)
            want = (num(spec.key_range_start), num(spec.key_range_end))
            assert got == want, f"root shard {run}/{shard}: descendants cover {got}, registered {want}"
    _record_pass(s, "split_children_tile_parent", *inputs)


def _raised(s: CapacitySubject, name: str) -> bool:
    return bool(s.last and s.last[2].error and s.last[2].error[0] == name)


def commit_after_cas_retry(s: CapacitySubject) -> bool:
    """An operation committed after the interferer made a compare fail."""
    return s.events["committed after retry"] > 0


def retry_budget_exhausted(s: CapacitySubject) -> bool:
    """Contention on every attempt exhausted the retry budget."""
    return s.events["exhausted"] > 0


def expired_lease_reacquired(s: CapacitySubject) -> bool:
    """A shard whose owner key outlived its logical deadline was acquired (prior lease revoked)."""
    return s.events["reacquired after logical expiry"] > 0


def reacquired_across_swapped_owner_lease(s: CapacitySubject) -> bool:
    """An acquire committed after the owner key was re-bound to another etcd lease mid-attempt (§1.10 #2)."""
    return s.events["reacquired across a swapped owner lease"] > 0


def lease_deadlines(s: CapacitySubject) -> tuple[frozenset[int], Optional[int]]:
    """The deadlines of the Active leased shards whose owner key is there, and the latest
    deadline of those whose owner key ran out, from one pass over the view (a function of
    the KV's contents alone: kept while the view object is the same, see `same_inputs`)."""
    inputs = (s.view(),)
    if same_inputs(s._deadlines[0], inputs):
        return s._deadlines[1]
    owned: set[int] = set()
    orphaned: list[int] = []
    for v in inputs[0].shards.values():
        lease = v.record.lease
        if lease is not None and v.record.status is M.ShardStatus.ACTIVE:
            if v.owner is not None:
                owned.add(lease.deadline)
            else:
                orphaned.append(lease.deadline)
    facts = (frozenset(owned), max(orphaned, default=None))
    s._deadlines = (inputs, facts)
    return facts


def ttl_expiry_made_shard_available(s: CapacitySubject) -> bool:
    """An Active shard's logical lease is still running but its owner key ran out: available."""
    latest = lease_deadlines(s)[1]
    return latest is not None and s.clock() < latest


def lease_at_its_deadline(s: CapacitySubject) -> bool:
    """The clock sits exactly on a live-looking lease's deadline (the half-open boundary)."""
    return s.clock() in lease_deadlines(s)[0]


def lease_one_before_its_deadline(s: CapacitySubject) -> bool:
    """The clock sits one nanosecond before a lease's deadline (its last live instant)."""
    return s.clock() + 1 in lease_deadlines(s)[0]


def lease_one_past_its_deadline(s: CapacitySubject) -> bool:
    """The clock sits one nanosecond past a deadline whose owner key is still there."""
    return s.clock() - 1 in lease_deadlines(s)[0]


def run_saturated_until_deadline(s: CapacitySubject) -> bool:
    """A run's hint says back off: nothing available, some lease running out later."""
    return any(h.available_count == 0 and h.earliest_deadline is not None
               for h in (full_scan_hint(s, run) for run in s.view().runs))


def revocation_failed(s: CapacitySubject) -> bool:
    """A best-effort revocation of an etcd lease failed."""
    return s.events["revocation failed"] > 0


def split_child_leased(s: CapacitySubject) -> bool:
    """A shard created by a split was acquired."""
    return s.events["split child leased"] > 0


def parked_shard_unparked(s: CapacitySubject) -> bool:
    """An admin unpark returned a Parked shard to Active."""
    return s.events["unparked"] > 0


def _restarted_over(what: str) -> Callable[[CapacitySubject], bool]:
    def witness(s: CapacitySubject) -> bool:
        return s.events[f"restarted over {what}"] > 0
    witness.__name__ = "restarted_over_" + what.replace(" ", "_")
    witness.__doc__ = f"A new coordinator started over the same KV holding a {what}."
    return witness


RESTART_WITNESSES = tuple(map(_restarted_over, ("live lease", "expired lease", "orphaned record",
                                                 "parked or split")))


def _event(event: str, name: str, doc: str) -> Callable[[CapacitySubject], bool]:
    def witness(s: CapacitySubject) -> bool:
        return s.events[event] > 0
    witness.__name__, witness.__doc__ = name, doc
    return witness


SECOND_ACTOR_WITNESSES = (
    *(_event(f"owner expired at {call}", f"owner_expired_at_{call}",
             f"An owner key's etcd lease ran out between two of the coordinator's calls ({call}).")
      for call in EXPIRY_POINTS),
    _event("acquired by a second coordinator", "second_coordinator_acquired",
           "A second coordinator over the same KV acquired a shard."),
    _event("second coordinator's lease used here", "second_coordinators_lease_used_here",
           "A lease a second coordinator granted was used through this one in the same step."),
    _event("owner expired, then acquired by a second coordinator", "owner_expired_then_reacquired_elsewhere",
           "An owner key ran out and a second coordinator acquired the shard before this one read."),
    _event("restarted, then a write first", "restarted_then_wrote_first",
           "A new coordinator's first call was an operation, before it read any hint."),
)


def stale_fence_refused(s: CapacitySubject) -> bool:
    """A lease-gated call was refused with StaleFence."""
    return _raised(s, "StaleFence")


def expired_lease_refused(s: CapacitySubject) -> bool:
    """A lease-gated call was refused with LeaseExpired."""
    return _raised(s, "LeaseExpired")


def already_leased_refused(s: CapacitySubject) -> bool:
    """An acquire was refused with AlreadyLeased."""
    return _raised(s, "AlreadyLeased")


INVARIANTS = (
    always(hint_equals_full_scan), always(fences_strictly_increase), always(at_most_one_live_owner),
    always(terminal_shards_hold_no_lease), always(owner_key_matches_record_lease),
    always(split_children_tile_parent),
    sometimes(commit_after_cas_retry), sometimes(retry_budget_exhausted),
    sometimes(expired_lease_reacquired), sometimes(reacquired_across_swapped_owner_lease),
    sometimes(ttl_expiry_made_shard_available), sometimes(lease_at_its_deadline),
    sometimes(lease_one_before_its_deadline), sometimes(lease_one_past_its_deadline),
    sometimes(run_saturated_until_deadline), sometimes(revocation_failed),
    sometimes(split_child_leased), sometimes(parked_shard_unparked),
    sometimes(stale_fence_refused), sometimes(expired_lease_refused),
    sometimes(already_leased_refused), *map(sometimes, RESTART_WITNESSES),
    *map(sometimes, SECOND_ACTOR_WITNESSES),
)


# -- the machine ----------------------------------------------------------------------------

INTERFERENCES = ("",) * 14 + ("rewrite@0", "rewrite@01", "rewrite@all", "swap@0", "swap@0", "drop@0",
                              "rewrite@all+drop@last")
# Re-binding the owner key's etcd lease matters only when an acquire finds an owner key: half
# of an acquire's draws are that swap (as `INTERFERENCE | st.just("swap@0")` would draw it).
ACQUIRE_INTERFERENCES = INTERFERENCES + ("swap@0",) * len(INTERFERENCES)
FORGES = ("",) * 12 + ("fence-1", "fence+1", "worker", "token_tenant", "call_tenant", "no_shard")
OP_IDS = st.integers(1, 3) | st.integers(4, 10**6)  # small ids collide: replays and conflicts
WORKER_IDS = (1, 2, 3, 4)
CURSOR_POSITIONS = ("next", "next", "same", "start", "last", "regress", "outside", "none", "huge")
INTERFERENCE = st.sampled_from(INTERFERENCES)


def joint(*choices: Iterable[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    """Several independent uniform choices of one rule in a single draw: `sampled_from` over
    their product draws each combination with the product of the single choices'
    probabilities (the joint distribution of one `sampled_from` per choice), with one choice
    on the choice sequence instead of one per argument (each costs about a draw's work)."""
    return st.sampled_from(tuple(itertools.product(*choices)))


IN_STATUS = (True,) * 5 + (False,)  # _run: mostly a run in the wanted status
CLOCK_STEPS = (1, 10, 100, 250, 250, 499, 500, 999, 1_000, 1_001, 25_000, 50_000, 10**6)
_JUST_NS = {ns: st.just(ns) for ns in CLOCK_STEPS}  # advance_clock's fallbacks, built once


def _pick(data: Any, items: Any) -> Any:
    """One of `items` (a list known only in the rule), drawn as `data.draw(st.sampled_from(items))`
    draws it (one integer index, nothing for a single item), but straight on the choice
    sequence: a `data.draw` validates the strategy and checks the global random state around
    the draw, which together cost several times the draw itself."""
    if len(items) == 1:
        return items[0]
    return items[data.conjecture_data.draw_integer(0, len(items) - 1)]


class CapacityMachine(LockstepMachine):
    """Model and impl coordinator in lockstep; every rule is one `self.step`."""

    @initialize(retries=st.sampled_from([1, 3, 8]), max_children=st.sampled_from([8, 8, 2]),
                shards=st.sampled_from([4, 6, 2, 1, 0, 3, 5]), duration=st.sampled_from(DURATIONS),
                revocations_fail=st.booleans())
    def init(self, retries: int, max_children: int, shards: int, duration: int,
             revocations_fail: bool) -> None:
        self.step("init", retries, max_children, shards, duration, revocations_fail)

    def teardown(self) -> None:
        for subject in (self.ls.model, self.ls.impl):
            close = getattr(subject, "close", None)
            if callable(close):
                close()
        super().teardown()

    def _run(self, data: Any, status: Optional[M.RunStatus] = M.RunStatus.ACTIVE) -> int:
        """Mostly a run in the wanted status (when there is one), sometimes any run id."""
        runs = self.ls.model.view().runs
        good = sorted(r for r, rec in runs.items() if status is None or rec.status is status)
        if good and _pick(data, IN_STATUS):
            return _pick(data, good)
        return _pick(data, RUNS)

    def _shard(self, data: Any, run: int, prefer: Callable[[ShardView], bool]) -> int:
        """A shard of the run (often one matching `prefer`), or an unknown id."""
        shards = self.ls.model.view().shards
        known = sorted(s for (r, s) in shards if r == run) or [1]
        liked = sorted(s for (r, s), v in shards.items() if r == run and prefer(v))
        pools = [known] * 4 + [liked] * 3 * bool(liked) + [[99]]
        return _pick(data, _pick(data, pools))

    def _lease(self, data: Any) -> int:
        """Index of a handed-out lease token: mostly a current one (its shard Active at its
        fence with a live owner), sometimes any (stale, expired, terminal); -1 when none."""
        subject = self.ls.model
        shards = subject.view().shards
        current = [i for i, t in enumerate(subject.leases)
                   if (v := shards.get((t.run, t.shard))) is not None and v.record.fence_epoch == t.fence
                   and v.record.status is M.ShardStatus.ACTIVE and subject.live(v)]
        pools = [current] * 6 * bool(current) + [list(range(len(subject.leases))) or [-1]]
        return _pick(data, _pick(data, pools))

    def _owned(self, data: Any) -> tuple[int, int]:
        """A shard whose owner key exists (when there is one)."""
        owned = sorted(w for w, v in self.ls.model.view().shards.items() if v.owner is not None)
        return _pick(data, owned or [(1, 1)])

    @rule(args=joint(RUNS, DURATIONS))
    def create_run(self, args: tuple[int, int]) -> None:
        self.step("create_run", *args)

    @rule(data=st.data(), args=joint(range(6), ("ok",) * 4 + ("duplicate", "inverted", "too_many"),
                                     INTERFERENCES), op_id=OP_IDS)
    def register_shards(self, data: Any, args: tuple[int, str, str], op_id: int) -> None:
        count, flavor, interference = args
        self.step("register_shards", self._run(data, M.RunStatus.INITIALIZING), count, flavor, op_id,
                  interference)

    @rule(data=st.data(), args=joint(WORKER_IDS, ("own",) * 7 + ("other",), ACQUIRE_INTERFERENCES))
    def acquire(self, data: Any, args: tuple[int, str, str]) -> None:
        worker, tenant, interference = args
        run = self._run(data)
        subject = self.ls.model  # prefer shards whose owner key outlived the logical deadline
        shard = self._shard(data, run, lambda v: v.owner is not None and not subject.live(v))
        self.step("acquire", run, shard, worker, tenant, interference)

    @precondition(lambda self: any(v.owner is not None and not self.ls.model.live(v)
                                   for v in self.ls.model.view().shards.values()))
    @rule(data=st.data(), args=joint(WORKER_IDS, ("swap@0", "swap@0", "", "", "rewrite@0", "drop@0",
                                                  "expire@lease_revoke", "expire@lease_revoke")))
    def take_over(self, data: Any, args: tuple[int, str]) -> None:
        """Another worker takes a shard whose owner key outlived its logical deadline."""
        worker, interference = args
        subject = self.ls.model
        stale = sorted(w for w, v in subject.view().shards.items()
                       if v.owner is not None and not subject.live(v))
        run, shard = _pick(data, stale)
        self.step("acquire", run, shard, worker, "own", interference)

    @rule(data=st.data(), args=joint(WORKER_IDS, ACQUIRE_INTERFERENCES))
    def claim(self, data: Any, args: tuple[int, str]) -> None:
        self.step("claim", self._run(data), *args)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), args=joint(FORGES, INTERFERENCES))
    def renew(self, data: Any, args: tuple[str, str]) -> None:
        self.step("renew", self._lease(data), *args)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), args=joint((1, 2, 3, 3, 4), INTERFERENCES))
    def heartbeat(self, data: Any, args: tuple[int, str]) -> None:
        self.step("heartbeat", self._lease(data), *args)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), args=joint(FORGES, CURSOR_POSITIONS, INTERFERENCES), op_id=OP_IDS)
    def checkpoint(self, data: Any, args: tuple[str, str, str], op_id: int) -> None:
        forge, pos, interference = args
        self.step("checkpoint", self._lease(data), forge, pos, op_id, interference)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), args=joint(FORGES, CURSOR_POSITIONS, INTERFERENCES), op_id=OP_IDS)
    def complete(self, data: Any, args: tuple[str, str, str], op_id: int) -> None:
        forge, pos, interference = args
        self.step("complete", self._lease(data), forge, pos, op_id, interference)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), args=joint(FORGES, range(len(REASONS)), INTERFERENCES), op_id=OP_IDS)
    def park_shard(self, data: Any, args: tuple[str, int, str], op_id: int) -> None:
        forge, reason, interference = args
        self.step("park_shard", self._lease(data), forge, reason, op_id, interference)

    @rule(data=st.data(), op_id=OP_IDS, interference=INTERFERENCE)
    def unpark_shard(self, data: Any, op_id: int, interference: str) -> None:
        run = self._run(data)
        shard = self._shard(data, run, lambda v: v.record.status is M.ShardStatus.PARKED)
        self.step("unpark_shard", run, shard, op_id, interference)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), args=joint(FORGES, (2, 2, 2, 3, 1, 9), ("tile",) * 4 + ("gap", "short"),
                                     INTERFERENCES), op_id=OP_IDS)
    def split_replace(self, data: Any, args: tuple[str, int, str, str], op_id: int) -> None:
        forge, parts, shape, interference = args
        self.step("split_replace", self._lease(data), forge, parts, shape, op_id, interference)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), args=joint(FORGES, ("half", "half", "after_cursor", "after_cursor",
                                              "at_start", "gap"), INTERFERENCES), op_id=OP_IDS)
    def split_residual(self, data: Any, args: tuple[str, str, str], op_id: int) -> None:
        forge, shape, interference = args
        self.step("split_residual", self._lease(data), forge, shape, op_id, interference)

    @rule(data=st.data())
    def capacity_hint(self, data: Any) -> None:
        self.step("capacity_hint", self._run(data, None))

    @rule(data=st.data(), ns=st.sampled_from(CLOCK_STEPS))
    def advance_clock(self, data: Any, ns: int) -> None:
        subject = self.ls.model
        now = subject.clock()
        deadlines = [v.record.lease.deadline for v in subject.view().shards.values()
                     if subject.live(v) and v.record.lease.deadline < U64_MAX]
        # exactly to a live lease's deadline, one before or one past it (the half-open boundary)
        ns = data.conjecture_data.draw(around(until(now, deadlines), _JUST_NS[ns], lo=1, share=35))
        self.step("advance_clock", ns)

    @precondition(lambda self: any(v.owner is not None for v in self.ls.model.view().shards.values()))
    @rule(data=st.data())
    def expire_lease(self, data: Any) -> None:
        self.step("expire_lease", *self._owned(data))

    @rule()
    def restart_coordinator(self) -> None:
        self.step("restart_coordinator")

    @rule(failing=st.booleans())
    def revocations_fail(self, failing: bool) -> None:
        self.step("revocations_fail", failing)

    @rule(call=st.sampled_from(EXPIRY_POINTS))
    def foreign_expiry(self, call: str) -> None:
        self.step("foreign_expiry", call)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), times=st.sampled_from([2] * 9 + [70]))  # 70: the heap gets compacted
    def renew_many(self, data: Any, times: int) -> None:
        self.step("renew_many", self._lease(data), times)

    @rule(data=st.data(), args=joint(WORKER_IDS, ("", "renew", "checkpoint", "complete", "park_shard",
                                                  "split_replace", "split_residual",
                                                  "parked_there_unparked_here")), op_id=OP_IDS)
    def foreign_acquire(self, data: Any, args: tuple[int, str], op_id: int) -> None:
        worker, then = args
        run = self._run(data)
        subject = self.ls.model
        shard = self._shard(data, run, lambda v: v.record.status is M.ShardStatus.ACTIVE
                            and not subject.live(v))
        self.step("foreign_acquire", run, shard, worker, then, op_id)

    @precondition(lambda self: bool(self.ls.model.leases))
    @rule(data=st.data(), args=joint(WORKER_IDS, (1, 1, 1, 0, 10)), op_id=OP_IDS)
    def foreign_reacquire(self, data: Any, args: tuple[int, int], op_id: int) -> None:
        worker, gap = args
        run = self._run(data)
        subject = self.ls.model
        shard = self._shard(data, run, lambda v: v.record.status is M.ShardStatus.ACTIVE
                            and subject.live(v))
        self.step("foreign_reacquire", run, shard, worker, gap, op_id)

    @rule(data=st.data(), first=joint(("renew", "complete", "park_shard", "split_replace",
                                       "split_replace", "split_residual", "split_residual",
                                       "acquire", "acquire", "acquire", "claim",
                                       "unpark_shard", "unpark_shard", "register_shards"), WORKER_IDS),
          op_id=OP_IDS)
    def restart_then(self, data: Any, first: tuple[str, int], op_id: int) -> None:
        op, worker = first
        args: tuple
        if op in ("renew", "complete", "park_shard", "split_replace", "split_residual"):
            index = self._lease(data)
            args = {"renew": (index, "", ""), "complete": (index, "", "next", op_id, ""),
                    "park_shard": (index, "", 0, op_id, ""),
                    "split_replace": (index, "", 2, "tile", op_id, ""),
                    "split_residual": (index, "", "half", op_id, "")}[op]
        elif op == "acquire":
            run = self._run(data)
            subject = self.ls.model
            args = (run, self._shard(data, run, lambda v: v.record.status is M.ShardStatus.ACTIVE
                                     and not subject.live(v)), worker, "own", "")
        elif op == "claim":
            args = (self._run(data), worker, "")
        elif op == "unpark_shard":
            run = self._run(data)
            args = (run, self._shard(data, run, lambda v: v.record.status is M.ShardStatus.PARKED),
                    op_id, "")
        else:
            args = (self._run(data, M.RunStatus.INITIALIZING), 2, "ok", op_id, "")
        self.step("restart_then", op, args)


OPERATIONS = (
    "create_run", "register_shards", "acquire_and_restore_into", "renew", "checkpoint", "complete",
    "park_shard", "unpark_shard", "split_replace", "split_residual", "claim_next_available",
    "capacity_hint", "abstract",
)


# The curated mutants live in mutants/capacity.py; the registry reads them lazily.
from meshspec.registry import mutants_of  # noqa: E402
from impl.capacity import EtcdCoordinator as ImplCoordinator  # noqa: E402


# -- benchmarks -----------------------------------------------------------------------------

BENCH_DURATION = 1_000


def _seed_run(kv: Any, keys: M.Keyspace, size: int) -> None:
    """A run of `size` Active, unleased shards written straight into the KV (register_shards
    takes at most 41 shards per run; the coordinator adopts the run on first use). The run
    record lists at most 41 roots, as register_shards would write it; the other shards
    stand for descendants of splits."""
    roots = tuple(range(min(size, M.MAX_SHARDS_PER_ETCD_TXN)))
    run_rec = M.RunRecord(TENANT, 1, M.RunConfig(BENCH_DURATION), M.RunStatus.ACTIVE, 0, None,
                          roots, ())
    ops = [PutOp(keys.run_key(TENANT, 1), M.encode_run(run_rec)),
           PutOp(keys.run_marker_key(TENANT, 1), b"")]
    for shard in range(size):
        rec = M.new_shard(TENANT, 1, shard, M.ShardSpec(key(shard * SPAN), key((shard + 1) * SPAN)), None)
        ops += [PutOp(keys.shard_key(TENANT, 1, shard), M.encode_shard(rec)),
                PutOp(keys.shard_marker_key(TENANT, 1, shard), b"")]
    for i in range(0, len(ops), 128):
        kv.txn([], ops[i:i + 128])


def _acquire_and_hint(kv: Any, root: str, lease_base: int, cls: type, size: int) -> Callable[[], Any]:
    keys = M.Keyspace(root)
    _seed_run(kv, keys, size)
    clock = FakeClock(1)
    coord = cls(kv, clock=clock, options=M.CoordinatorOptions(
        root_prefix=root, owner_lease_ttl_secs=TTL_S, lease_id_base=lease_base))
    coord.capacity_hint(TENANT, 1)
    shards = itertools.cycle(range(size))

    def cycle() -> Any:
        clock.advance(BENCH_DURATION)  # every earlier lease has run out logically
        coord.acquire_and_restore_into(TENANT, 1, next(shards), 1)
        return coord.capacity_hint(TENANT, 1)
    return cycle


def _bench_in_memory(cls: type, size: int) -> Callable[[], Any]:
    return _acquire_and_hint(EtcdModel(clock=FakeClock(0)), "/gossip/v1", MODEL_LEASE_BASE, cls, size)


def _bench_real(cls: type, size: int) -> Callable[[], Any]:
    url = etcd_url()
    assert url is not None, f"{ETCD_ENV} is not set"
    n = next(_example_counter)
    return _acquire_and_hint(open_gateway(url), f"/meshspec-bench/{os.getpid()}-{n}",
                             real_lease_base(n), cls, size)


BENCH_SIZES = (10, 100, 1_000, 10_000)
BENCH = (
    BenchCase("acquire+hint (in-memory etcd)", BENCH_SIZES, _bench_in_memory, min_ratio=100.0),
    # The real-etcd case exists only when MESHSPEC_ETCD is set (URL or `auto`), e.g.
    # `MESHSPEC_ETCD=auto meshspec bench capacity`; without it there is no server to time.
    *((BenchCase("acquire+hint (real etcd)", BENCH_SIZES, _bench_real, min_ratio=10.0),)
      if os.environ.get(ETCD_ENV) else ()),
)

# -- the bounded exploration (meshspec explore), on the embedded etcd model only -------------
#
# State identity (the view).  The logical clock stays in it: lease deadlines, a run's
# created_at and the hint's earliest deadline are absolute and observable, and a deadline
# saturated at u64::MAX (duration u64::MAX) is not invariant under a time shift, so states
# at different times are different states; the alphabet keeps time finite (a few advances
# per path).  The view is the abstract state (decoded KV, hints, live leases), the clock,
# the model's lease ordinal (the next owner key's etcd lease id), the coordinator options
# (two inits may differ in retries alone) and the ghost state later steps read: the lease
# tokens handed out, fences issued and seen, root specs, shard ids per run, orphaned owner
# keys, the interferer's lease count and the revocation fault.  Left
# out: the per-step caches (`_view`, `_hints`, decode memos), the per-call interferer plan
# and counters, the violation messages (empty in every state that passed the invariants)
# and `events` (witness counters only, evaluated on every edge before deduplication).

def explore_view(s: CapacitySubject) -> Any:
    """The explorer's state identity: abstract state, clock and the ghost state later steps read."""
    ghost = tuple(tuple(sorted(d.items())) for d in (s.issued, s.fence_seen, s.roots, s.shards, s.orphaned))
    return (s.abstract(), s.clock(), getattr(s.sut, "_lease_ordinal", None), tuple(s.leases), ghost,
            s.foreign, s.revoking_fails, s.options, s.seconds, s.expire_after_hints,
            tuple(sorted(s.coord_kv.armed)))


LEASE_NS = 1_000


def cap_init(shards: int = 2, retries: int = 3, duration: int = LEASE_NS) -> tuple:
    """Init arguments: run 1 (lease duration `duration`) with `shards` root shards, revocations succeed."""
    return (retries, 8, shards, duration, False)


def own(shard: int, worker: int = 1, interference: str = "") -> tuple:
    return ("acquire", (1, shard, worker, "own", interference))


ACQUIRE_FIRST = own(1)
TAKE_OVER_SWAPPED = own(1, 2, "swap@0")  # the prior owner key re-bound to a foreign etcd lease
ACTIONS = (
    ACQUIRE_FIRST, TAKE_OVER_SWAPPED, own(2, 1, "rewrite@0"),            # a CAS retry, then commit
    ("acquire", (1, 2, 1, "other", "")), own(99),                         # wrong tenant, no shard
    ("claim", (1, 3, "")), ("claim", (1, 3, "rewrite@all")),              # exhausted: a failed txn
    ("renew", (0, "", "")), ("renew", (0, "fence-1", "")),                # current, stale fence
    ("heartbeat", (0, 3, "")),
    ("checkpoint", (0, "", "next", 11, "")), ("checkpoint", (0, "", "regress", 12, "")),
    ("complete", (0, "", "next", 13, "")), ("park_shard", (0, "", 0, 14, "")),
    ("unpark_shard", (1, 1, 15, "")),
    ("split_replace", (0, "", 2, "tile", 16, "")), ("split_replace", (0, "", 2, "gap", 17, "")),
    ("split_residual", (0, "", "half", 18, "")),
    ("create_run", (2, LEASE_NS)), ("register_shards", (2, 2, "ok", 19, "")),
    ("register_shards", (1, 1, "duplicate", 20, "")),                    # run 1 is no longer initializing
    ("capacity_hint", (1,)), ("capacity_hint", (3,)),                     # a run, a missing run
    ("advance_clock", (1,)), ("advance_clock", (LEASE_NS - 1,)),          # to and one tick past a deadline
    ("advance_clock", (LEASE_NS,)), ("advance_clock", (LEASE_NS + 1,)),
    ("expire_lease", (1, 1)), ("revocations_fail", (True,)),
    ("restart_coordinator", ()),                                          # counters rebuilt by a scan
    ("restart_then", ("acquire", (1, 1, 1, "own", ""))),                  # ... and a write first
    ("foreign_acquire", (1, 2, 2, "", 21)),                               # a second coordinator
    ("foreign_expiry", ("after_hint_reads",)), ("renew_many", (0, 2)),
    ("foreign_reacquire", (1, 1, 2, 1, 22)),                             # the ABA
)

EXPLORATION = Exploration(
    inits=(cap_init(),),
    actions=ACTIONS,
    bounds={"small": Bound(2),
            "large": Bound(3, inits=(cap_init(), cap_init(shards=1, retries=1))),
            # the three-step bugs, on a focused alphabet: park then unpark; a takeover
            # across a swapped owner lease after the deadline passed
            "lifecycle": Bound(3, actions=(ACQUIRE_FIRST, ("park_shard", (0, "", 0, 14, "")),
                                           ("unpark_shard", (1, 1, 15, "")), TAKE_OVER_SWAPPED,
                                           ("advance_clock", (LEASE_NS,)), ("capacity_hint", (1,))))},
    view=explore_view,
    mutant_bounds={
        "cas_failure_bumps_counter": "small", "revoke_decrements": "lifecycle",
        "expiry_never_detected": "small", "ttl_expiry_not_detected": "small",
        "expiry_off_by_one": "small", "split_adds_no_children": "small",
        "terminal_keeps_deadline": "small", "renew_keeps_old_deadline": "small",
        "residual_not_counted": "small", "unpark_not_counted": "lifecycle",
        "count_available_lightweight": "small", "owner_guard_without_lease_id": "lifecycle",
        "foreign_acquire_not_detected": "small", "owner_key_change_not_tracked": "small",
    },
)


COMPONENT = Component(
    name="capacity",
    summary="gossip-coordination-etcd shard-lease coordinator: per-run CapacityHint counters "
            "(impl) against count_available_for_run's full scan (model), over the etcd model "
            "or a real etcd (`meshspec fuzz capacity --etcd URL|auto`).",
    model_cls=M.EtcdCoordinator, impl_cls=ImplCoordinator, subject_cls=CapacitySubject,
    machine_cls=CapacityMachine, invariants=INVARIANTS, mutants=mutants_of("capacity"),
    errors=(M.CoordinationError,), operations=OPERATIONS, bench=BENCH, exploration=EXPLORATION,
)
