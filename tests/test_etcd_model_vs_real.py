"""model/etcd.py on its own (fast unit tests), then against a real etcd (marked `etcd`).

The lockstep machine runs random operation sequences on `EtcdModel` and on a real
server through `EtcdGateway`, each machine run under a fresh key prefix, and compares
every response and raised error. Revisions are compared relatively: the real server's
counter starts wherever earlier tests left it, so the offset between the two at machine
start is subtracted from every real revision (header, create and mod revision) and
added to every revision operand of a compare. Leases are granted with explicit ids so
the ids match too; TTLs are long enough never to run out during a run.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import attrs
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from impl.etcd_client import EtcdGateway
from meshspec.clock import NS_PER_SEC, FakeClock
from model.etcd import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteOp,
    DeleteResponse,
    DuplicateKey,
    EtcdError,
    EtcdModel,
    KeyNotProvided,
    KeyValue,
    LeaseExists,
    LeaseNotFound,
    LeaseTTLTooLarge,
    PutOp,
    RangeOp,
    RangeResponse,
    TooManyOps,
    prefix_range_end,
)

try:
    from etcd_server import unique_lease_id, unique_prefix
except ImportError:  # tests/ became a package
    from tests.etcd_server import unique_lease_id, unique_prefix

EQ, NE, LT, GT = (CompareResult.EQUAL, CompareResult.NOT_EQUAL, CompareResult.LESS,
                  CompareResult.GREATER)


def version_is(key: bytes, n: int, result: CompareResult = EQ) -> Compare:
    return Compare(key, CompareTarget.VERSION, result, n)


# =========================================================================== unit tests


def test_fresh_store_is_at_revision_one_and_reads_do_not_advance_it() -> None:
    kv = EtcdModel()
    assert kv.get(b"a") == RangeResponse(1, (), 0)
    assert kv.get_prefix(b"a").revision == 1


def test_put_creates_then_bumps_version_and_mod_revision_keeping_create_revision() -> None:
    kv = EtcdModel()
    assert kv.put(b"k", b"1").revision == 2
    assert kv.put(b"k", b"2").revision == 3
    assert kv.get(b"k").kvs == (KeyValue(b"k", b"2", 2, 3, 2, 0),)


def test_delete_resets_version_and_a_delete_of_nothing_takes_no_revision() -> None:
    kv = EtcdModel()
    kv.put(b"k", b"1")
    kv.put(b"k", b"2")
    assert kv.delete(b"k") == DeleteResponse(4, 1)
    assert kv.delete(b"k") == DeleteResponse(4, 0)
    kv.put(b"k", b"3")
    assert kv.get(b"k").kvs == (KeyValue(b"k", b"3", 5, 5, 1, 0),)


def test_prefix_range_is_sorted_and_keys_only_and_count_only_shape_the_answer() -> None:
    kv = EtcdModel()
    for key in (b"p/b", b"p/a", b"q", b"p"):
        kv.put(key, b"v")
    full = kv.get_prefix(b"p/")
    assert [x.key for x in full.kvs] == [b"p/a", b"p/b"] and full.count == 2
    assert all(x.value == b"" and x.version == 1 for x in kv.get_prefix(b"p/", keys_only=True).kvs)
    assert kv.get_prefix(b"p/", count_only=True) == RangeResponse(5, (), 2)


def test_prefix_range_end_handles_trailing_ff_and_all_ff() -> None:
    assert prefix_range_end(b"ab") == b"ac"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\x00"


def test_range_end_zero_byte_means_every_key_from_start() -> None:
    kv = EtcdModel()
    for key in (b"a", b"b", b"c"):
        kv.put(key, b"")
    assert [x.key for x in kv.range(b"b", b"\x00").kvs] == [b"b", b"c"]


def test_txn_applies_the_success_branch_under_one_revision_and_reads_its_own_writes() -> None:
    kv = EtcdModel()
    resp = kv.txn([version_is(b"a", 0)], [RangeOp(b"a"), PutOp(b"a", b"1"), PutOp(b"b", b"2"),
                                          RangeOp(b"a")])
    assert resp.succeeded and resp.revision == 2
    revisions = [r.revision for r in resp.responses]
    assert revisions == [1, 2, 2, 2]  # the first read precedes the txn's first write
    last = resp.responses[3]
    assert isinstance(last, RangeResponse) and last.kvs[0].mod_revision == 2
    assert kv.get(b"b").kvs[0].create_revision == 2


def test_failed_compare_runs_the_failure_branch_only() -> None:
    kv = EtcdModel()
    kv.put(b"a", b"1")
    resp = kv.txn([version_is(b"a", 0)], [PutOp(b"a", b"x")], [RangeOp(b"a")])
    assert not resp.succeeded and resp.revision == 2
    assert kv.get(b"a").kvs[0].value == b"1"


def test_value_compare_on_a_missing_key_is_always_false_even_not_equal() -> None:
    kv = EtcdModel()
    for result in CompareResult:
        assert not kv.txn([Compare(b"nope", CompareTarget.VALUE, result, b"a")]).succeeded


def test_missing_key_compares_as_zero_for_version_create_mod_and_lease() -> None:
    kv = EtcdModel()
    for target in (CompareTarget.VERSION, CompareTarget.CREATE, CompareTarget.MOD,
                   CompareTarget.LEASE):
        assert kv.txn([Compare(b"nope", target, EQ, 0)]).succeeded


def test_value_and_revision_compares_order_like_etcd() -> None:
    kv = EtcdModel()
    kv.put(b"a", b"m")
    assert kv.txn([Compare(b"a", CompareTarget.VALUE, LT, b"n")]).succeeded
    assert kv.txn([Compare(b"a", CompareTarget.VALUE, GT, b"l")]).succeeded
    assert kv.txn([Compare(b"a", CompareTarget.MOD, NE, 3)]).succeeded
    assert not kv.txn([Compare(b"a", CompareTarget.CREATE, GT, 2)]).succeeded


def test_txn_refuses_duplicate_puts_and_puts_inside_a_delete_range_in_either_branch() -> None:
    kv = EtcdModel()
    with pytest.raises(DuplicateKey):
        kv.txn([], [PutOp(b"a", b"1"), PutOp(b"a", b"2")])
    with pytest.raises(DuplicateKey):
        kv.txn([], [], [DeleteOp(b"a", b"c"), PutOp(b"b", b"1")])
    resp = kv.txn([], [DeleteOp(b"a"), DeleteOp(b"a", b"c")])  # overlapping deletes are fine
    assert resp.succeeded and resp.revision == 1


def test_txn_with_a_missing_lease_fails_only_when_its_branch_is_taken() -> None:
    kv = EtcdModel()
    with pytest.raises(LeaseNotFound):
        kv.txn([], [PutOp(b"a", b"1", lease=9)])
    resp = kv.txn([version_is(b"a", 1)], [PutOp(b"a", b"1", lease=9)], [PutOp(b"b", b"2")])
    assert not resp.succeeded and kv.get(b"a").count == 0 and kv.get(b"b").count == 1


def test_too_many_ops_and_empty_keys_are_refused_before_anything_happens() -> None:
    kv = EtcdModel()
    with pytest.raises(TooManyOps):
        kv.txn([], [PutOp(bytes([i]) + b"k", b"") for i in range(129)])
    with pytest.raises(KeyNotProvided):
        kv.put(b"", b"v")
    with pytest.raises(KeyNotProvided):
        kv.txn([version_is(b"", 0)])
    assert kv.get_prefix(b"\x00", count_only=True).revision == 1


def test_revoke_deletes_attached_keys_under_one_revision_and_detached_keys_survive() -> None:
    kv = EtcdModel()
    lease = kv.lease_grant(10).id
    kv.put(b"a", b"1", lease)
    kv.put(b"b", b"1", lease)
    kv.put(b"b", b"2")  # a put without a lease detaches
    assert kv.lease_time_to_live(lease, keys=True).keys == (b"a",)
    assert kv.lease_revoke(lease).revision == 5
    assert kv.get(b"a").count == 0 and kv.get(b"b").count == 1
    with pytest.raises(LeaseNotFound):
        kv.lease_revoke(lease)


def test_revoking_a_lease_without_keys_takes_no_revision() -> None:
    kv = EtcdModel()
    lease = kv.lease_grant(10).id
    assert kv.lease_revoke(lease).revision == 1


def test_lease_grant_raises_ttl_to_the_minimum_and_refuses_reused_ids_and_huge_ttls() -> None:
    kv = EtcdModel(min_ttl_s=2)
    assert kv.lease_grant(0, lease_id=7).ttl == 2
    with pytest.raises(LeaseExists):
        kv.lease_grant(5, lease_id=7)
    with pytest.raises(LeaseTTLTooLarge):
        kv.lease_grant(9_000_000_001)
    assert kv.lease_grant(5).id == 1 and kv.lease_leases().leases == (1, 7)


def test_lease_expires_lazily_when_the_clock_reaches_its_deadline() -> None:
    clock = FakeClock()
    kv = EtcdModel(clock=clock)
    lease = kv.lease_grant(2).id
    kv.put(b"a", b"1", lease)
    clock.advance(2 * NS_PER_SEC - 1)
    assert kv.get(b"a").count == 1
    clock.advance(1)
    assert kv.get(b"a") == RangeResponse(3, (), 0)
    assert kv.lease_keep_alive(lease).ttl == 0 and kv.lease_time_to_live(lease).ttl == -1


def test_keep_alive_restarts_the_ttl_from_now() -> None:
    clock = FakeClock()
    kv = EtcdModel(clock=clock)
    lease = kv.lease_grant(2).id
    kv.put(b"a", b"1", lease)
    clock.advance(NS_PER_SEC)
    assert kv.lease_keep_alive(lease).ttl == 2
    clock.advance(NS_PER_SEC + NS_PER_SEC // 2)
    assert kv.get(b"a").count == 1
    clock.advance(NS_PER_SEC)
    assert kv.get(b"a").count == 0


def test_leases_due_together_expire_in_deadline_order_one_revision_each() -> None:
    clock = FakeClock()
    kv = EtcdModel(clock=clock)
    first, second = kv.lease_grant(3, 11).id, kv.lease_grant(2, 12).id
    kv.put(b"a", b"", first)
    kv.put(b"b", b"", second)
    clock.advance(5 * NS_PER_SEC)
    assert kv.get(b"a").revision == 5 and kv.lease_leases().leases == ()


def test_put_with_a_lease_that_expired_is_refused() -> None:
    clock = FakeClock()
    kv = EtcdModel(clock=clock)
    lease = kv.lease_grant(1).id
    clock.advance(NS_PER_SEC)
    with pytest.raises(LeaseNotFound):
        kv.put(b"a", b"", lease)


# =========================================================================== lockstep machine

KEY_SUFFIXES = (b"a", b"ab", b"b", b"b/c", b"b/d", b"c\xff", b"\xff")
SUB_PREFIXES = (b"", b"a", b"b", b"b/", b"c", b"\xff")
VALUES = (b"", b"0", b"1", b"x", b"\xff")
TTLS = (30, 60, 600)


def normalize(value: Any, offset: int) -> Any:
    """Subtract `offset` from every revision in a response value (0 stays 0)."""
    if isinstance(value, tuple):
        return tuple(normalize(v, offset) for v in value)
    if isinstance(value, KeyValue):
        return attrs.evolve(value, create_revision=value.create_revision - offset,
                            mod_revision=value.mod_revision - offset)
    if attrs.has(type(value)):
        changes = {f.name: normalize(getattr(value, f.name), offset)
                   for f in attrs.fields(type(value)) if f.name in ("kvs", "responses")}
        if hasattr(value, "revision"):
            changes["revision"] = value.revision - offset
        return attrs.evolve(value, **changes)
    return value


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except EtcdError as exc:
        return ("error", type(exc).__name__, str(exc))


def _label(result: Any) -> str:
    if result[0] == "error":
        return str(result[1])
    if hasattr(result[1], "succeeded"):
        return "succeeded" if result[1].succeeded else "failure branch"
    return "ok"


class EtcdLockstep(RuleBasedStateMachine):
    """Random sequences on the model and a real server; every answer must match."""

    real: Any = None  # set by the test before the run

    def __init__(self) -> None:
        super().__init__()
        self.model = EtcdModel()
        self.prefix = unique_prefix("machine")
        self.offset = 0
        self.granted: list[int] = []
        self.revoked: list[int] = []

    @initialize()
    def measure_offset(self) -> None:
        self.offset = self.real.get(self.prefix).revision - self.model.get(self.prefix).revision

    # -- helpers ------------------------------------------------------------------------

    def key(self, suffix: bytes) -> bytes:
        return self.prefix + suffix

    def both(self, name: str, *args: Any, real_args: tuple[Any, ...] | None = None,
             **kwargs: Any) -> Any:
        expected = outcome(lambda: getattr(self.model, name)(*args, **kwargs))
        got = outcome(lambda: getattr(self.real, name)(*(real_args or args), **kwargs))
        if got[0] == "ok":
            got = ("ok", normalize(got[1], self.offset))
        assert got == expected, f"{name}{args}: real {got} != model {expected}"
        event(f"{name}: {_label(expected)}")
        return expected

    def real_compare(self, cmp: Compare) -> Compare:
        if cmp.target in (CompareTarget.CREATE, CompareTarget.MOD) and int(cmp.operand) > 0:
            return attrs.evolve(cmp, operand=int(cmp.operand) + self.offset)
        return cmp

    def lease_choice(self, data: st.DataObject) -> int:
        pool = [0] + self.granted + self.revoked[-2:]
        return data.draw(st.sampled_from(pool), label="lease")

    def op(self, data: st.DataObject) -> Any:
        kind = data.draw(st.sampled_from(["range", "prefix", "put", "delete", "delete_prefix"]))
        key = self.key(data.draw(st.sampled_from(KEY_SUFFIXES)))
        if kind == "range":
            return RangeOp(key, keys_only=data.draw(st.booleans()))
        if kind == "prefix":
            sub = self.key(data.draw(st.sampled_from(SUB_PREFIXES)))
            return RangeOp(sub, prefix_range_end(sub), data.draw(st.booleans()),
                           data.draw(st.booleans()))
        if kind == "put":
            return PutOp(key, data.draw(st.sampled_from(VALUES)), self.lease_choice(data))
        if kind == "delete":
            return DeleteOp(key)
        sub = self.key(data.draw(st.sampled_from(SUB_PREFIXES)))
        return DeleteOp(sub, prefix_range_end(sub))

    def compare(self, data: st.DataObject) -> Compare:
        key = self.key(data.draw(st.sampled_from(KEY_SUFFIXES)))
        target = data.draw(st.sampled_from(list(CompareTarget)))
        result = data.draw(st.sampled_from(list(CompareResult)))
        current = self.model.get(key).kvs
        operand: int | bytes
        if target is CompareTarget.VALUE:
            operand = data.draw(st.sampled_from(VALUES + tuple(kv.value for kv in current)))
        elif target is CompareTarget.LEASE:
            operand = self.lease_choice(data)
        elif target is CompareTarget.VERSION:
            operand = data.draw(st.integers(0, 3))
        else:
            head = self.model.get(self.prefix).revision
            seen = [kv.mod_revision for kv in current] + [kv.create_revision for kv in current]
            operand = data.draw(st.sampled_from([0, 1, head, head + 1] + seen))
        return Compare(key, target, result, operand)

    # -- rules --------------------------------------------------------------------------

    @rule(suffix=st.sampled_from(KEY_SUFFIXES), value=st.sampled_from(VALUES), data=st.data())
    def put(self, suffix: bytes, value: bytes, data: st.DataObject) -> None:
        self.both("put", self.key(suffix), value, self.lease_choice(data))

    @rule(suffix=st.sampled_from(KEY_SUFFIXES))
    def delete_key(self, suffix: bytes) -> None:
        self.both("delete", self.key(suffix))

    @rule(sub=st.sampled_from(SUB_PREFIXES))
    def delete_prefix(self, sub: bytes) -> None:
        self.both("delete_prefix", self.key(sub))

    @rule(suffix=st.sampled_from(KEY_SUFFIXES), keys_only=st.booleans())
    def get_key(self, suffix: bytes, keys_only: bool) -> None:
        self.both("range", self.key(suffix), b"", keys_only=keys_only)

    @rule(sub=st.sampled_from(SUB_PREFIXES), keys_only=st.booleans(), count_only=st.booleans())
    def get_prefix(self, sub: bytes, keys_only: bool, count_only: bool) -> None:
        start = self.key(sub)
        self.both("range", start, prefix_range_end(start), keys_only=keys_only,
                  count_only=count_only)

    @rule(data=st.data(), n_cmp=st.integers(0, 3), n_ok=st.integers(0, 3), n_bad=st.integers(0, 2))
    def txn(self, data: st.DataObject, n_cmp: int, n_ok: int, n_bad: int) -> None:
        compares = [self.compare(data) for _ in range(n_cmp)]
        success = [self.op(data) for _ in range(n_ok)]
        failure = [self.op(data) for _ in range(n_bad)]
        real_compares = [self.real_compare(c) for c in compares]
        self.both("txn", compares, success, failure,
                  real_args=(real_compares, success, failure))

    @rule(suffix=st.sampled_from(KEY_SUFFIXES), value=st.sampled_from(VALUES))
    def cas_on_mod_revision(self, suffix: bytes, value: bytes) -> None:
        """The coordinator's pattern: read, then put guarded by mod_revision ==."""
        key = self.key(suffix)
        kvs = self.model.get(key).kvs
        mod = kvs[0].mod_revision if kvs else 0
        cmp = Compare(key, CompareTarget.MOD, EQ, mod)
        self.both("txn", [cmp], [PutOp(key, value)], [RangeOp(key)],
                  real_args=([self.real_compare(cmp)], [PutOp(key, value)], [RangeOp(key)]))

    @rule(data=st.data(), suffixes=st.lists(st.sampled_from(KEY_SUFFIXES), min_size=1, max_size=4))
    def put_batch(self, data: st.DataObject, suffixes: list[bytes]) -> None:
        for suffix in suffixes:
            self.both("put", self.key(suffix), data.draw(st.sampled_from(VALUES)),
                      self.lease_choice(data))

    @rule(suffix=st.sampled_from(KEY_SUFFIXES), other=st.sampled_from(KEY_SUFFIXES),
          data=st.data(), tamper=st.booleans())
    def owner_guard_txn(self, suffix: bytes, other: bytes, data: st.DataObject,
                        tamper: bool) -> None:
        """The coordinator's 4-compare guard (mod revision + version/value/lease of a key)."""
        key, owner = self.key(suffix), self.key(other)
        kvs, owner_kvs = self.model.get(key).kvs, self.model.get(owner).kvs
        mod = kvs[0].mod_revision if kvs else 0
        held = owner_kvs[0] if owner_kvs else KeyValue(owner, b"", 0, 0, 0, 0)
        lease = self.lease_choice(data) if tamper else held.lease
        compares = [Compare(key, CompareTarget.MOD, EQ, mod),
                    version_is(owner, 0, GT), Compare(owner, CompareTarget.VALUE, EQ, held.value),
                    Compare(owner, CompareTarget.LEASE, EQ, lease)]
        success = [PutOp(key, b"rec"), PutOp(owner, b"own", self.lease_choice(data))]
        if key == owner:
            success = success[1:]
        self.both("txn", compares, success, [RangeOp(key)],
                  real_args=([self.real_compare(c) for c in compares], success, [RangeOp(key)]))

    @rule(ttl=st.sampled_from(TTLS))
    def lease_grant(self, ttl: int) -> None:
        lease_id = unique_lease_id()
        if self.both("lease_grant", ttl, lease_id)[0] == "ok":
            self.granted.append(lease_id)

    @precondition(lambda self: bool(self.granted))
    @rule(data=st.data())
    def lease_grant_existing_id(self, data: st.DataObject) -> None:
        self.both("lease_grant", 30, data.draw(st.sampled_from(self.granted)))

    @rule(data=st.data())
    def lease_revoke(self, data: st.DataObject) -> None:
        lease_id = self.lease_choice(data) or unique_lease_id()
        if self.both("lease_revoke", lease_id)[0] == "ok":
            self.granted.remove(lease_id)
            self.revoked.append(lease_id)

    @rule(data=st.data())
    def lease_keep_alive(self, data: st.DataObject) -> None:
        self.both("lease_keep_alive", self.lease_choice(data) or unique_lease_id())

    @rule(data=st.data())
    def lease_time_to_live(self, data: st.DataObject) -> None:
        lease_id = self.lease_choice(data) or unique_lease_id()
        model = self.model.lease_time_to_live(lease_id, True)
        real = normalize(self.real.lease_time_to_live(lease_id, True), self.offset)
        # remaining TTL runs on the server's wall clock: compare all but that number
        assert attrs.evolve(real, ttl=model.ttl) == model
        assert (real.ttl == -1) == (model.ttl == -1)

    def teardown(self) -> None:
        for lease_id in self.granted:  # no lease of this run may run out during a later one
            self.real.lease_revoke(lease_id)

    @invariant()
    def same_contents_and_leases(self) -> None:
        self.both("get_prefix", self.prefix)
        ours = set(self.granted) | set(self.revoked)
        model = self.model.lease_leases().leases
        real = tuple(i for i in self.real.lease_leases().leases if i in ours)
        assert real == model


@pytest.mark.etcd
def test_etcd_model_matches_a_real_server_on_random_operation_sequences(
        fresh_etcd_server: str) -> None:
    EtcdLockstep.real = EtcdGateway(fresh_etcd_server)
    try:
        run_state_machine_as_test(EtcdLockstep, settings=settings(
            max_examples=30, stateful_step_count=30, deadline=None, database=None,
            suppress_health_check=list(HealthCheck)))
    finally:
        EtcdLockstep.real.close()
        EtcdLockstep.real = None


# =========================================================================== real-server specifics


@pytest.mark.etcd
def test_real_lease_ttl_runs_out_and_its_keys_vanish_like_the_model(
        fresh_etcd_server: str, etcd_prefix: bytes) -> None:
    real, clock = EtcdGateway(fresh_etcd_server), FakeClock()
    model = EtcdModel(clock=clock)
    key = etcd_prefix + b"ephemeral"
    lease = unique_lease_id()
    start = real.get(key).revision
    for kv in (real, model):
        kv.lease_grant(2, lease)
        kv.put(key, b"v", lease)
    deadline = time.monotonic() + 8.0  # the one wall-clock wait of the suite: a real TTL
    while real.get(key).count and time.monotonic() < deadline:
        time.sleep(0.05)
    clock.advance(2 * NS_PER_SEC)
    assert real.get(key).count == 0 and model.get(key).count == 0
    assert real.get(key).revision - start == model.get(key).revision - 1 == 2
    assert real.lease_keep_alive(lease).ttl == 0 == model.lease_keep_alive(lease).ttl
    real.close()


@pytest.mark.etcd
def test_real_server_refuses_what_the_model_refuses(etcd_gateway: Any, etcd_prefix: bytes) -> None:
    real, model = etcd_gateway, EtcdModel()
    key = etcd_prefix + b"k"
    cases: list[Callable[[Any], Any]] = [
        lambda kv: kv.put(b"", b"v"),
        lambda kv: kv.txn([], [PutOp(key, b"1"), PutOp(key, b"2")]),
        lambda kv: kv.txn([], [PutOp(key + bytes([i]), b"") for i in range(129)]),
        lambda kv: kv.put(key, b"v", unique_lease_id()),
        lambda kv: kv.lease_grant(9_000_000_001),
    ]
    for case in cases:
        assert outcome(lambda: case(real))[:2] == outcome(lambda: case(model))[:2]
