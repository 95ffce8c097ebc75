"""Unit tests of the capacity coordinators (model and impl) over the in-memory etcd model.

Every test runs against both classes; after each test the impl's counters are checked
against a full scan. Two clocks: `env.clock` is the coordinator's logical clock,
`env.kv_clock` the etcd model's lease clock (TTL expiry). A seeded differential test
runs model and impl side by side on random operation sequences, and a handful of
deliberately broken impl subclasses show that the override points the mutant tier uses
produce visible differences.
"""
from __future__ import annotations

import random
from typing import Any, Callable, Iterator, Optional

import attrs
import pytest

import impl.capacity as impl_capacity
import model.capacity as model_capacity
from meshspec.clock import NS_PER_SEC, FakeClock
from model.capacity import (
    AlreadyLeased,
    BackendChildLimitExceeded,
    CapacityHint,
    CheckpointMissingKey,
    ContentionNotConverged,
    CoordinationError,
    CoordinatorOptions,
    Cursor,
    CursorOutOfBounds,
    CursorRegression,
    InvalidManifest,
    Keyspace,
    Lease,
    LeaseExpired,
    NoneAvailable,
    NotParked,
    OpIdConflict,
    ParkReason,
    ResourceExhausted,
    RunAlreadyExists,
    RunConfig,
    RunNotFound,
    ShardManifestEntry,
    ShardNotFound,
    ShardSpec,
    ShardStatus,
    ShardTerminal,
    SplitInvalid,
    SplitResidualPlan,
    StaleFence,
    TenantMismatch,
    WrongRunStatus,
    decode_shard,
    encode_owner,
)
from model.etcd import EtcdModel

try:
    from etcd_server import unique_lease_id
except ImportError:  # tests/ became a package
    from tests.etcd_server import unique_lease_id

TENANT = bytes(range(32))
OTHER_TENANT = bytes([7]) * 32
RUN = 1
DURATION = 1_000
TTL_S = 60
CLASSES = [model_capacity.EtcdCoordinator, impl_capacity.EtcdCoordinator]
KEYS = Keyspace("/gossip/v1")


def spec(i: int) -> ShardSpec:
    return ShardSpec(bytes([i * 16]), bytes([i * 16 + 16]))


@attrs.define
class Env:
    coord: Any
    kv: EtcdModel
    clock: FakeClock
    kv_clock: FakeClock
    interfere: list[Callable[[str, bytes, int], None]] = attrs.Factory(list)

    def setup_run(self, shards: int = 4, run: int = RUN) -> None:
        self.coord.create_run(TENANT, run, RunConfig(DURATION))
        manifest = [ShardManifestEntry(i, spec(i)) for i in range(1, shards + 1)]
        self.coord.register_shards(TENANT, run, manifest, op_id=1000 + run)

    def hint(self, run: int = RUN) -> CapacityHint:
        return self.coord.capacity_hint(TENANT, run)

    def acquire(self, shard: int, worker: int = 9) -> Lease:
        return self.coord.acquire_and_restore_into(TENANT, RUN, shard, worker).lease

    def record(self, shard: int, run: int = RUN) -> model_capacity.ShardRecord:
        return decode_shard(self.kv.get(KEYS.shard_key(TENANT, run, shard)).kvs[0].value)

    def owner_kv(self, shard: int) -> Any:
        kvs = self.kv.get(KEYS.owner_key(TENANT, RUN, shard)).kvs
        return kvs[0] if kvs else None


@pytest.fixture(params=CLASSES, ids=["model", "impl"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    yield from make_env(request.param)


def make_env(cls: type, **options: Any) -> Iterator[Env]:
    clock, kv_clock = FakeClock(10_000), FakeClock()
    kv = EtcdModel(clock=kv_clock)
    holder: list[Env] = []

    def interferer(op: str, key: bytes, attempt: int) -> None:
        for fn in holder[0].interfere:
            fn(op, key, attempt)

    coord = cls(kv, clock=clock, options=CoordinatorOptions(owner_lease_ttl_secs=TTL_S, **options),
                interferer=interferer)
    holder.append(Env(coord, kv, clock, kv_clock))
    yield holder[0]
    coord.check_invariants()


# =========================================================================== runs and registration


def test_create_run_twice_is_refused(env: Env) -> None:
    env.coord.create_run(TENANT, RUN, RunConfig(DURATION))
    with pytest.raises(RunAlreadyExists):
        env.coord.create_run(TENANT, RUN, RunConfig(DURATION))


def test_registered_shards_are_active_unleased_and_all_counted_available(env: Env) -> None:
    env.setup_run(4)
    assert env.hint() == CapacityHint(4, None)
    rec = env.record(3)
    assert rec.status is ShardStatus.ACTIVE and rec.lease is None and rec.fence_epoch == 1
    assert env.kv.get(KEYS.shard_marker_key(TENANT, RUN, 3)).count == 1
    assert env.kv.get(KEYS.run_marker_key(TENANT, RUN)).count == 1


def test_register_replays_by_op_id_and_refuses_a_reused_op_id_with_another_manifest(env: Env) -> None:
    env.coord.create_run(TENANT, RUN, RunConfig(DURATION))
    manifest = [ShardManifestEntry(1, spec(1)), ShardManifestEntry(2, spec(2))]
    assert env.coord.register_shards(TENANT, RUN, manifest, 5).replayed is False
    again = env.coord.register_shards(TENANT, RUN, manifest, 5)
    assert again.replayed and again.value == (1, 2)
    with pytest.raises(OpIdConflict):
        env.coord.register_shards(TENANT, RUN, manifest[:1], 5)
    with pytest.raises(WrongRunStatus):
        env.coord.register_shards(TENANT, RUN, manifest, 6)
    assert env.hint() == CapacityHint(2, None)


def test_register_refuses_bad_manifests_missing_runs_and_more_than_41_shards(env: Env) -> None:
    env.coord.create_run(TENANT, RUN, RunConfig(DURATION))
    with pytest.raises(InvalidManifest):
        env.coord.register_shards(TENANT, RUN, [ShardManifestEntry(1, spec(1))] * 2, 1)
    with pytest.raises(InvalidManifest):
        env.coord.register_shards(TENANT, RUN, [ShardManifestEntry(1, ShardSpec(b"b", b"a"))], 1)
    with pytest.raises(RunNotFound):
        env.coord.register_shards(TENANT, 2, [ShardManifestEntry(1, spec(1))], 1)
    with pytest.raises(ResourceExhausted):
        env.coord.register_shards(TENANT, RUN, [ShardManifestEntry(i, spec(1)) for i in range(42)], 1)


# =========================================================================== acquire


def test_acquire_advances_the_fence_sets_the_logical_deadline_and_reports_post_op_capacity(
        env: Env) -> None:
    env.setup_run(3)
    result = env.coord.acquire_and_restore_into(TENANT, RUN, 2, 9)
    assert (result.lease.fence, result.lease.deadline) == (2, 10_000 + DURATION)
    assert result.capacity == CapacityHint(2, 10_000 + DURATION)
    assert result.snapshot.spec == spec(2) and result.snapshot.status is ShardStatus.ACTIVE
    owner = env.owner_kv(2)
    assert owner.value == encode_owner(9, 2) and owner.lease != 0


def test_acquire_of_a_live_lease_is_already_leased_even_for_the_same_worker(env: Env) -> None:
    env.setup_run(2)
    env.acquire(1, worker=9)
    for worker in (9, 10):
        with pytest.raises(AlreadyLeased, match=r"deadline LogicalTime\(11000\)"):
            env.acquire(1, worker)


def test_acquire_unknown_or_terminal_shards_fails_with_the_domain_error(env: Env) -> None:
    env.setup_run(2)
    with pytest.raises(ShardNotFound):
        env.acquire(7)
    lease = env.acquire(1)
    env.coord.complete(TENANT, lease, Cursor(spec(1).key_range_start), 1)
    with pytest.raises(ShardTerminal, match=r"is terminal \(Done\)"):
        env.acquire(1)


def test_logically_expired_lease_with_its_owner_key_still_present_counts_available(env: Env) -> None:
    env.setup_run(2)
    env.acquire(1)
    env.clock.advance(DURATION)
    assert env.owner_kv(1) is not None  # the etcd lease (TTL) has not run out
    assert env.hint() == CapacityHint(2, None)


def test_reacquire_after_logical_expiry_bumps_fence_and_revokes_the_prior_etcd_lease(env: Env) -> None:
    env.setup_run(2)
    old = env.acquire(1, worker=9)
    prior_lease = env.owner_kv(1).lease
    env.clock.advance(DURATION)
    new = env.acquire(1, worker=10)
    assert new.fence == old.fence + 1
    assert prior_lease not in env.kv.lease_leases().leases
    with pytest.raises(StaleFence):
        env.coord.renew(TENANT, old)


def test_failed_revocation_is_best_effort_and_never_changes_the_hint(env: Env) -> None:
    env.setup_run(2)
    env.acquire(1, worker=9)
    prior_lease = env.owner_kv(1).lease
    env.coord.revoke_fault = lambda lease_id: True
    env.clock.advance(DURATION)
    result = env.coord.acquire_and_restore_into(TENANT, RUN, 1, 10)
    assert prior_lease in env.kv.lease_leases().leases
    assert result.capacity == CapacityHint(1, env.clock() + DURATION)


def test_owner_key_deleted_by_etcd_ttl_makes_the_shard_available_on_the_next_read(env: Env) -> None:
    env.setup_run(2)
    lease = env.acquire(1)
    env.kv_clock.advance(TTL_S * NS_PER_SEC)  # the worker "crashed": etcd drops the owner key
    assert env.hint() == CapacityHint(2, None)
    with pytest.raises(StaleFence):
        env.coord.renew(TENANT, lease)
    assert env.acquire(1, worker=11).fence == lease.fence + 1


# =========================================================================== renew


def test_renew_moves_the_deadline_and_keeps_fence_and_owner_key(env: Env) -> None:
    env.setup_run(2)
    lease = env.acquire(1)
    owner_before = env.owner_kv(1)
    env.clock.advance(400)
    result = env.coord.renew(TENANT, lease)
    assert result.new_deadline == 10_400 + DURATION
    assert result.capacity == CapacityHint(1, result.new_deadline)
    assert env.owner_kv(1) == owner_before and env.record(1).fence_epoch == lease.fence


def test_renew_validates_tenant_then_terminal_then_fence_then_expiry(env: Env) -> None:
    env.setup_run(2)
    lease = env.acquire(1)
    with pytest.raises(TenantMismatch):
        env.coord.renew(OTHER_TENANT, lease)
    with pytest.raises(StaleFence, match=r"presented FenceEpoch\(1\), current FenceEpoch\(2\)"):
        env.coord.renew(TENANT, attrs.evolve(lease, fence=1))
    env.clock.advance(DURATION)
    with pytest.raises(LeaseExpired, match=r"deadline LogicalTime\(11000\), now LogicalTime\(11000\)"):
        env.coord.renew(TENANT, lease)


# =========================================================================== checkpoint


def test_checkpoint_advances_the_cursor_and_replays_by_op_id(env: Env) -> None:
    env.setup_run(1)
    lease = env.acquire(1)
    cursor = Cursor(bytes([16, 5]), b"tok")
    assert env.coord.checkpoint(TENANT, lease, cursor, 77).replayed is False
    assert env.record(1).cursor == cursor
    assert env.coord.checkpoint(TENANT, lease, cursor, 77).replayed is True
    with pytest.raises(OpIdConflict):
        env.coord.checkpoint(TENANT, lease, Cursor(bytes([16, 6])), 77)


def test_checkpoint_refuses_regression_out_of_range_and_missing_keys(env: Env) -> None:
    env.setup_run(1)
    lease = env.acquire(1)
    env.coord.checkpoint(TENANT, lease, Cursor(bytes([16, 5])), 1)
    with pytest.raises(CursorRegression):
        env.coord.checkpoint(TENANT, lease, Cursor(bytes([16, 4])), 2)
    with pytest.raises(CursorOutOfBounds):
        env.coord.checkpoint(TENANT, lease, Cursor(bytes([40])), 3)
    with pytest.raises(CheckpointMissingKey, match="checkpoint requires a last_key"):
        env.coord.checkpoint(TENANT, lease, Cursor(None, b"t"), 4)


# =========================================================================== terminal transitions


def test_complete_makes_the_shard_done_unleased_and_drops_owner_key_marker_and_deadline(
        env: Env) -> None:
    env.setup_run(2)
    lease = env.acquire(1)
    env.acquire(2)
    out = env.coord.complete(TENANT, lease, Cursor(bytes([20])), 5)
    assert out.replayed is False
    rec = env.record(1)
    assert rec.status is ShardStatus.DONE and rec.lease is None and rec.cursor.last_key == bytes([20])
    assert env.owner_kv(1) is None
    assert env.kv.get(KEYS.shard_marker_key(TENANT, RUN, 1)).count == 0
    assert env.hint() == CapacityHint(0, 10_000 + DURATION)
    assert env.coord.complete(TENANT, lease, Cursor(bytes([20])), 5).replayed is True
    with pytest.raises(ShardTerminal):
        env.coord.renew(TENANT, lease)


def test_complete_requires_a_final_last_key(env: Env) -> None:
    env.setup_run(1)
    lease = env.acquire(1)
    with pytest.raises(CheckpointMissingKey, match="complete requires a last_key"):
        env.coord.complete(TENANT, lease, Cursor(), 5)


def test_park_then_unpark_returns_the_shard_to_available_with_a_new_fence(env: Env) -> None:
    env.setup_run(2)
    lease = env.acquire(1)
    env.coord.park_shard(TENANT, lease, ParkReason.POISONED, 8)
    rec = env.record(1)
    assert rec.status is ShardStatus.PARKED and rec.park_reason is ParkReason.POISONED
    assert env.hint() == CapacityHint(1, None)
    with pytest.raises(NotParked):
        env.coord.unpark_shard(TENANT, RUN, 2, 9)
    assert env.coord.unpark_shard(TENANT, RUN, 1, 9).replayed is False
    assert env.coord.unpark_shard(TENANT, RUN, 1, 9).replayed is True
    rec = env.record(1)
    assert (rec.status, rec.park_reason, rec.fence_epoch) == (ShardStatus.ACTIVE, None, lease.fence + 1)
    assert env.hint() == CapacityHint(2, None)
    assert env.acquire(1).fence == lease.fence + 2


# =========================================================================== splits


def halves(s: ShardSpec) -> list[ShardSpec]:
    mid = s.key_range_start + b"\x80"
    return [ShardSpec(s.key_range_start, mid), ShardSpec(mid, s.key_range_end)]


def test_split_replace_retires_the_parent_and_adds_available_children(env: Env) -> None:
    env.setup_run(2)
    lease = env.acquire(1)
    out = env.coord.split_replace(TENANT, lease, halves(spec(1)), 3)
    children = out.value
    assert len(children) == 2 and all(c >> 63 for c in children)
    parent = env.record(1)
    assert parent.status is ShardStatus.SPLIT and parent.lease is None
    assert parent.spawned == children and env.owner_kv(1) is None
    assert [env.record(c).parent for c in children] == [1, 1]
    assert env.hint() == CapacityHint(3, None)
    assert env.coord.split_replace(TENANT, lease, halves(spec(1)), 3).value == children


def test_split_replace_refuses_bad_tilings_and_too_many_children(env: Env) -> None:
    env.setup_run(1)
    lease = env.acquire(1)
    low, high = halves(spec(1))
    with pytest.raises(SplitInvalid, match="gap or overlap"):
        env.coord.split_replace(TENANT, lease, [low, ShardSpec(high.key_range_start + b"\x01",
                                                                high.key_range_end)], 1)
    with pytest.raises(SplitInvalid, match="at least two"):
        env.coord.split_replace(TENANT, lease, [spec(1)], 2)
    edges = [bytes([16]) + bytes([i]) for i in range(1, 10)]
    nine = [ShardSpec(a, b) for a, b in zip([bytes([16])] + edges, edges + [bytes([32])])]
    with pytest.raises(BackendChildLimitExceeded):
        env.coord.split_replace(TENANT, lease, nine, 3)
    assert env.hint() == CapacityHint(0, 10_000 + DURATION)


def test_split_residual_narrows_the_leased_parent_and_adds_one_available_shard(env: Env) -> None:
    env.setup_run(1)
    lease = env.acquire(1)
    env.coord.checkpoint(TENANT, lease, Cursor(bytes([16, 1])), 1)
    low, high = halves(spec(1))
    rid = env.coord.split_residual(TENANT, lease, SplitResidualPlan(low, high), 2).value
    assert env.record(1).spec == low and env.record(1).spawned == (rid,)
    assert env.record(rid).spec == high and env.record(rid).parent == 1
    assert env.hint() == CapacityHint(1, 10_000 + DURATION)
    assert env.coord.split_residual(TENANT, lease, SplitResidualPlan(low, high), 2).value == rid
    env.coord.checkpoint(TENANT, lease, Cursor(bytes([16, 2])), 3)


def test_split_residual_refuses_a_plan_that_leaves_the_cursor_outside_the_parent(env: Env) -> None:
    env.setup_run(1)
    lease = env.acquire(1)
    env.coord.checkpoint(TENANT, lease, Cursor(bytes([16, 0x90])), 1)
    low, high = halves(spec(1))
    with pytest.raises(SplitInvalid, match="cursor"):
        env.coord.split_residual(TENANT, lease, SplitResidualPlan(low, high), 2)


# =========================================================================== claims and hints


def test_claim_starts_at_worker_modulo_candidates_and_skips_leased_shards(env: Env) -> None:
    env.setup_run(4)
    env.acquire(2)
    result = env.coord.claim_next_available(TENANT, RUN, 4)  # candidates [1, 3, 4], 4 % 3 = 1
    assert result.lease.shard == 3 and result.capacity == CapacityHint(2, 10_000 + DURATION)


def test_claim_with_nothing_available_reports_the_earliest_deadline(env: Env) -> None:
    env.setup_run(2)
    env.acquire(1)
    env.clock.advance(10)
    env.acquire(2)
    with pytest.raises(NoneAvailable, match=r"earliest lease expiry: LogicalTime\(11000\)"):
        env.coord.claim_next_available(TENANT, RUN, 1)
    with pytest.raises(RunNotFound):
        env.coord.claim_next_available(TENANT, 2, 1)


def test_hint_of_an_unknown_run_is_run_not_found_and_of_an_empty_run_zero(env: Env) -> None:
    with pytest.raises(RunNotFound):
        env.hint()
    env.coord.create_run(TENANT, RUN, RunConfig(DURATION))
    assert env.hint() == CapacityHint(0, None)


def test_hints_are_per_run(env: Env) -> None:
    env.setup_run(3, run=1)
    env.setup_run(2, run=2)
    env.acquire(1)
    assert (env.hint(1), env.hint(2)) == (CapacityHint(2, 11_000), CapacityHint(2, None))


# =========================================================================== CAS, retries, interference


def rewrite_same_record(env: Env, attempts: set[int]) -> Callable[[str, bytes, int], None]:
    """Bump the shard record's mod_revision without changing it (forces a retry)."""
    def interferer(op: str, key: bytes, attempt: int) -> None:
        if attempt in attempts:
            kv = env.kv.get(key).kvs[0]
            env.kv.put(key, kv.value, kv.lease)
    return interferer


def test_a_write_between_read_and_txn_forces_a_retry_that_then_commits(env: Env) -> None:
    env.setup_run(2)
    calls: list[int] = []
    env.interfere += [rewrite_same_record(env, {0}), lambda op, key, attempt: calls.append(attempt)]
    result = env.coord.acquire_and_restore_into(TENANT, RUN, 1, 9)
    assert calls == [0, 1] and result.capacity == CapacityHint(1, 11_000)
    assert len(env.kv.lease_leases().leases) == 1  # the failed attempt's lease was revoked


def test_contention_on_every_attempt_exhausts_the_retry_budget(env: Env) -> None:
    env.setup_run(2)
    env.interfere.append(rewrite_same_record(env, set(range(8))))
    with pytest.raises(ContentionNotConverged, match="compare contention did not converge"):
        env.acquire(1)
    assert env.hint() == CapacityHint(2, None)


def test_exhaustion_reports_the_domain_error_when_a_precondition_broke(env: Env) -> None:
    env.setup_run(2)
    lease = env.acquire(1)

    def contend_then_drop_owner(op: str, key: bytes, attempt: int) -> None:
        kv = env.kv.get(key).kvs[0]
        env.kv.put(key, kv.value, kv.lease)
        if attempt == 7:
            env.kv.delete(key + b"/owner")  # as if its etcd lease had run out
    env.interfere.append(contend_then_drop_owner)
    with pytest.raises(StaleFence):
        env.coord.renew(TENANT, lease)


def test_owner_guard_compares_the_etcd_lease_id_not_only_the_owner_value(env: Env) -> None:
    env.setup_run(1)
    lease = env.acquire(1)
    attempts: list[int] = []

    def swap_owner_lease(op: str, key: bytes, attempt: int) -> None:
        attempts.append(attempt)
        if attempt == 0:
            owner = env.kv.get(key + b"/owner").kvs[0]
            other = env.kv.lease_grant(TTL_S).id
            env.kv.put(owner.key, owner.value, other)  # same worker + fence, another lease
    env.interfere.append(swap_owner_lease)
    env.coord.renew(TENANT, lease)
    assert attempts == [0, 1]


# =========================================================================== model == impl


def random_history(seed: int, cls: type) -> list[Any]:
    """Drive one coordinator through a seeded random history; return every outcome."""
    rng = random.Random(seed)
    env = next(make_env(cls))
    env.setup_run(6, run=1)
    env.setup_run(3, run=2)
    leases: list[Lease] = []
    outcomes: list[Any] = []
    for step in range(120):
        outcomes.append(random_step(env, rng, leases, step))
        outcomes.append(env.coord.abstract())
        env.coord.check_invariants()
    return outcomes


def random_step(env: Env, rng: random.Random, leases: list[Lease], step: int) -> Any:
    op = rng.choice(["acquire", "acquire", "claim", "renew", "renew", "checkpoint", "complete",
                     "park", "unpark", "split", "residual", "hint", "tick", "ttl", "interfere"])
    run = rng.choice([1, 2])
    lease = rng.choice(leases) if leases else None
    try:
        return (op, run_op(env, rng, op, run, lease, leases, step))
    except CoordinationError as exc:
        return (op, type(exc).__name__, str(exc))


def run_op(env: Env, rng: random.Random, op: str, run: int, lease: Optional[Lease],
           leases: list[Lease], step: int) -> Any:
    c = env.coord
    if op in ("acquire", "claim"):
        shard = rng.randint(1, 6)
        res = (c.acquire_and_restore_into(TENANT, run, shard, rng.randint(1, 3)) if op == "acquire"
               else c.claim_next_available(TENANT, run, rng.randint(1, 3)))
        leases.append(res.lease)
        return res
    if op == "hint":
        return c.capacity_hint(TENANT, run)
    if op == "tick":
        return env.clock.advance(rng.choice([1, 300, DURATION]))
    if op == "ttl":
        return env.kv_clock.advance(rng.choice([1, TTL_S]) * NS_PER_SEC)
    if op == "interfere":
        env.interfere[:] = [rewrite_same_record(env, {0, 1})]
        return None
    if op == "unpark":
        return c.unpark_shard(TENANT, run, rng.randint(1, 6), step)
    if lease is None:
        return None
    return lease_op(env, rng, op, lease, step)


def lease_op(env: Env, rng: random.Random, op: str, lease: Lease, step: int) -> Any:
    c = env.coord
    rec_spec = spec(lease.shard) if lease.shard < 16 else None
    if op == "renew":
        return c.renew(TENANT, lease)
    if op == "checkpoint":
        start = rec_spec.key_range_start if rec_spec else b"\x00"
        return c.checkpoint(TENANT, lease, Cursor(start + bytes([rng.randint(0, 3)])), step)
    if op == "complete":
        return c.complete(TENANT, lease, Cursor(rec_spec.key_range_start if rec_spec else b"\x00"),
                          step)
    if op == "park":
        return c.park_shard(TENANT, lease, ParkReason.OTHER, step)
    if op == "split" and rec_spec:
        return c.split_replace(TENANT, lease, halves(rec_spec), step)
    if op == "residual" and rec_spec:
        low, high = halves(rec_spec)
        return c.split_residual(TENANT, lease, SplitResidualPlan(low, high), step)
    return None


@pytest.mark.parametrize("seed", range(12))
def test_impl_matches_model_on_random_histories(seed: int) -> None:
    model_out = random_history(seed, model_capacity.EtcdCoordinator)
    impl_out = random_history(seed, impl_capacity.EtcdCoordinator)
    for i, (want, got) in enumerate(zip(model_out, impl_out)):
        assert got == want, f"seed {seed}, outcome {i}: impl {got} != model {want}"


# =========================================================================== override points


class BumpOnFailedCas(impl_capacity.EtcdCoordinator):
    def _cas_failed(self, op: str, tenant: bytes, run: int, shard: int) -> None:
        rs = self._runs.get((tenant, run))
        if rs is not None:
            rs.available += 1


class DecrementOnRevoke(impl_capacity.EtcdCoordinator):
    def _lease_revoked(self, tenant: bytes, run: int, shard: int, lease_id: int,
                       prior: bool, ok: bool) -> None:
        rs = self._runs.get((tenant, run))
        if rs is not None and prior:
            rs.deadlines.pop(shard, None)
            rs.available += 1


class NeverDetectsExpiry(impl_capacity.EtcdCoordinator):
    def _detect_expired(self, rs: Any, now: int) -> None:
        pass

    def _detect_vanished_owners(self) -> None:
        pass


class SplitAddsNoChildren(impl_capacity.EtcdCoordinator):
    def _committed_split_replace(self, tenant: bytes, run: int, parent: int,
                                 children: tuple[int, ...]) -> None:
        rs = self._runs.get((tenant, run))
        if rs is not None:
            self._drop(rs, parent)


class TerminalKeepsDeadline(impl_capacity.EtcdCoordinator):
    def _committed_terminal(self, tenant: bytes, run: int, shard: int) -> None:
        pass


class LightweightCount(impl_capacity.EtcdCoordinator):
    """count_available_lightweight: a present owner key counts as owned, no deadline."""

    def _detect_expired(self, rs: Any, now: int) -> None:
        pass

    def _earliest(self, rs: Any) -> None:
        return None


class OwnerGuardWithoutLeaseId(impl_capacity.EtcdCoordinator):
    def _owner_compares(self, owner_key: bytes, owner: Any) -> list[Any]:
        return super()._owner_compares(owner_key, owner)[:2]


def scenario_failed_cas(env: Env) -> Any:
    env.setup_run(2)
    env.interfere.append(rewrite_same_record(env, {0}))
    return env.coord.acquire_and_restore_into(TENANT, RUN, 1, 9).capacity


def scenario_reacquire(env: Env) -> Any:
    env.setup_run(2)
    env.acquire(1)
    env.clock.advance(DURATION)
    return env.coord.acquire_and_restore_into(TENANT, RUN, 1, 10).capacity


def scenario_time_passes(env: Env) -> Any:
    env.setup_run(2)
    env.acquire(1)
    env.clock.advance(DURATION)
    return env.hint()


def scenario_split(env: Env) -> Any:
    env.setup_run(1)
    env.coord.split_replace(TENANT, env.acquire(1), halves(spec(1)), 1)
    return env.hint()


def scenario_complete(env: Env) -> Any:
    env.setup_run(2)
    env.coord.complete(TENANT, env.acquire(1), Cursor(spec(1).key_range_start), 1)
    return env.hint()


def scenario_swapped_owner_lease(env: Env) -> Any:
    env.setup_run(1)
    lease = env.acquire(1)
    env.clock.advance(DURATION)

    def swap(op: str, key: bytes, attempt: int) -> None:
        if attempt == 0:
            owner = env.kv.get(key + b"/owner").kvs[0]
            env.kv.put(owner.key, owner.value, env.kv.lease_grant(TTL_S).id)
    env.interfere.append(swap)
    env.coord.acquire_and_restore_into(TENANT, RUN, 1, 10)
    return (lease.fence, env.coord.abstract().leases)


@pytest.mark.parametrize("broken, scenario", [
    (BumpOnFailedCas, scenario_failed_cas),
    (DecrementOnRevoke, scenario_reacquire),
    (NeverDetectsExpiry, scenario_time_passes),
    (SplitAddsNoChildren, scenario_split),
    (TerminalKeepsDeadline, scenario_complete),
    (LightweightCount, scenario_time_passes),
    (OwnerGuardWithoutLeaseId, scenario_swapped_owner_lease),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_each_known_counter_bug_is_visible_against_the_model(broken: type, scenario: Any) -> None:
    want = scenario(next(make_env(model_capacity.EtcdCoordinator)))
    assert scenario(next(make_env(impl_capacity.EtcdCoordinator))) == want
    assert scenario(next(make_env(broken))) != want


# =========================================================================== on a real etcd


@pytest.mark.etcd
def test_impl_on_a_real_etcd_matches_the_model_on_the_in_memory_kv(
        etcd_gateway: Any, etcd_prefix: bytes) -> None:
    root = etcd_prefix.decode().rstrip("/")
    lease_base = unique_lease_id() * 1000  # grants base+1, base+2, ...: ids no one else uses
    clock_m, clock_i = FakeClock(10_000), FakeClock(10_000)
    model = model_capacity.EtcdCoordinator(EtcdModel(), clock=clock_m,
                                           options=CoordinatorOptions(root_prefix=root))
    impl = impl_capacity.EtcdCoordinator(etcd_gateway, clock=clock_i, options=CoordinatorOptions(
        root_prefix=root, lease_id_base=lease_base))
    for coord, clock in ((model, clock_m), (impl, clock_i)):
        coord.create_run(TENANT, RUN, RunConfig(DURATION))
        coord.register_shards(TENANT, RUN, [ShardManifestEntry(i, spec(i)) for i in (1, 2, 3)], 1)
    steps: list[Callable[[Any, FakeClock], Any]] = [
        lambda c, k: c.acquire_and_restore_into(TENANT, RUN, 2, 9).capacity,
        lambda c, k: c.claim_next_available(TENANT, RUN, 5).lease,
        lambda c, k: k.advance(DURATION),
        lambda c, k: c.capacity_hint(TENANT, RUN),
        lambda c, k: c.claim_next_available(TENANT, RUN, 2).capacity,
    ]
    for step in steps:
        assert step(impl, clock_i) == step(model, clock_m)
        impl.check_invariants()
    assert impl.abstract() == model.abstract()
    for lease_id in etcd_gateway.lease_leases().leases:
        if lease_base < lease_id <= lease_base + 1000:
            etcd_gateway.lease_revoke(lease_id)
