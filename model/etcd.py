"""An executable in-memory model of the etcd v3 KV and lease semantics the coordinator uses.

Modelled (checked against a real etcd 3.4 by tests/test_etcd_model_vs_real.py):

- One global revision, 1 on a fresh store. A put, a delete that removes at least one
  key, a txn whose taken branch changes anything, and a lease revoke / expiry that
  deletes at least one key each add exactly one revision; everything else leaves it.
- Per key: value, create_revision, mod_revision, version (1 on create, +1 per put, reset
  by delete) and lease (0 = none; a put without a lease detaches the key).
- `range` over one key (`range_end == b""`), a half-open range `[key, range_end)`, or
  every key `>= key` (`range_end == b"\\x00"`); results sorted by key; `keys_only` blanks
  the values, `count_only` returns no kvs; `count` is the number of keys in range.
- `txn(compares, success, failure)`: compares on VERSION / CREATE / MOD / VALUE / LEASE with
  EQUAL / NOT_EQUAL / LESS / GREATER; a missing key compares as zeros, except that a VALUE
  compare on a missing key is always false (etcd's rule). The taken branch's ops run in
  order, later ops see earlier writes, and the whole txn gets one revision. Each inner
  response carries the revision as seen at that point (the old revision until the txn
  first changes something, the new one after), as etcd 3.4 reports it.
- Request validation in etcd's order: more than 128 compares or ops in a branch →
  TooManyOps; an empty key → KeyNotProvided; a put to a key that is put twice or lies in a
  delete range of the same branch → DuplicateKey (checked for both branches); then, for the
  taken branch only, a put naming a missing lease → LeaseNotFound. A failed request
  changes nothing.
- Leases: `lease_grant(ttl, lease_id=0)` (ttl raised to `min_ttl_s`, TTLs above 9e9 s
  refused, an explicit id that exists refused, id 0 = the store picks the next free
  sequential id, never reused), `lease_revoke` (deletes every attached key), `lease_keep_alive` (resets
  the deadline; ttl 0 when the lease is unknown), `lease_time_to_live`, `lease_leases`.

Time and expiry. The model's lease clock is the injected `clock` (integer ns), a logical
clock; the real server uses its own wall clock, so tests compare everything except when a
TTL runs out. A lease is expired once `clock() >= deadline` (deadline = grant or last
keep-alive + ttl). Expiry is applied lazily at the START of every public call: every due
lease is revoked in (deadline, id) order, each one that deletes keys taking one revision,
exactly as if the server's lessor had revoked it just before the call.

Left out, because the coordinator never uses them: watches, history (reads at an old
revision, compaction), limit/sort/min-max filters on ranges, prev_kv, nested txns,
compares over ranges, auth, cluster membership. Lease ids the store picks are sequential
here and random on a real server: tests that compare the two pass explicit ids.
"""
from __future__ import annotations

import bisect
import enum
import heapq
from typing import Callable, Protocol, Sequence, Union

import attrs

from meshspec.clock import NS_PER_SEC, Clock

MAX_TXN_OPS = 128
MAX_LEASE_TTL_S = 9_000_000_000
DEFAULT_MIN_TTL_S = 1
ALL_KEYS_END = b"\x00"


# --------------------------------------------------------------------------- errors


class EtcdError(Exception):
    """A request the server refused; `str()` is etcd's message."""

    MESSAGE = "etcdserver: request failed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.MESSAGE)


class KeyNotProvided(EtcdError):
    """An op or a compare with an empty key."""

    MESSAGE = "etcdserver: key is not provided"


class DuplicateKey(EtcdError):
    """A txn branch writes one key twice (put twice, or put inside a delete range)."""

    MESSAGE = "etcdserver: duplicate key given in txn request"


class TooManyOps(EtcdError):
    """More than 128 compares or ops in one txn branch."""

    MESSAGE = "etcdserver: too many operations in txn request"


class LeaseNotFound(EtcdError):
    """A put, revoke or other lease request naming a lease that does not exist."""

    MESSAGE = "etcdserver: requested lease not found"


class LeaseExists(EtcdError):
    """A grant with an explicit id that is already in use."""

    MESSAGE = "etcdserver: lease already exists"


class LeaseTTLTooLarge(EtcdError):
    """A grant with a TTL above 9,000,000,000 s."""

    MESSAGE = "etcdserver: too large lease TTL"


class EtcdUnavailable(EtcdError):
    """Transport failure talking to a real server (never raised by the model)."""

    MESSAGE = "etcd unavailable"


# --------------------------------------------------------------------------- requests


class CompareTarget(enum.Enum):
    VERSION = "VERSION"
    CREATE = "CREATE"
    MOD = "MOD"
    VALUE = "VALUE"
    LEASE = "LEASE"


class CompareResult(enum.Enum):
    EQUAL = "EQUAL"
    NOT_EQUAL = "NOT_EQUAL"
    LESS = "LESS"
    GREATER = "GREATER"


@attrs.frozen
class Compare:
    """`target(key) <result> operand`; operand is bytes for VALUE, an int otherwise."""

    key: bytes
    target: CompareTarget
    result: CompareResult
    operand: Union[int, bytes]


@attrs.frozen
class RangeOp:
    """Read `key` (range_end b""), `[key, range_end)`, or every key >= key (b"\\x00")."""

    key: bytes
    range_end: bytes = b""
    keys_only: bool = False
    count_only: bool = False


@attrs.frozen
class PutOp:
    key: bytes
    value: bytes
    lease: int = 0


@attrs.frozen
class DeleteOp:
    key: bytes
    range_end: bytes = b""


Op = Union[RangeOp, PutOp, DeleteOp]


# --------------------------------------------------------------------------- responses


@attrs.frozen
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@attrs.frozen
class RangeResponse:
    revision: int
    kvs: tuple[KeyValue, ...]
    count: int


@attrs.frozen
class PutResponse:
    revision: int


@attrs.frozen
class DeleteResponse:
    revision: int
    deleted: int


OpResponse = Union[RangeResponse, PutResponse, DeleteResponse]


@attrs.frozen
class TxnResponse:
    revision: int
    succeeded: bool
    responses: tuple[OpResponse, ...]


@attrs.frozen
class LeaseGrantResponse:
    revision: int
    id: int
    ttl: int


@attrs.frozen
class LeaseRevokeResponse:
    revision: int


@attrs.frozen
class LeaseKeepAliveResponse:
    """`ttl` is 0 when the lease does not exist (etcd leaves the field out)."""

    revision: int
    id: int
    ttl: int


@attrs.frozen
class LeaseTimeToLiveResponse:
    """`ttl` is the remaining whole seconds, -1 (and granted_ttl 0) for an unknown lease."""

    revision: int
    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...]


@attrs.frozen
class LeaseLeasesResponse:
    revision: int
    leases: tuple[int, ...]


# --------------------------------------------------------------------------- helpers


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's range end for a prefix: drop trailing 0xff bytes, increment the last one.

    pre: len(prefix) <= 4
    post: __return__ == ALL_KEYS_END or prefix < __return__
    post: __return__ == ALL_KEYS_END or not __return__.startswith(prefix)
    post: __return__ == ALL_KEYS_END or in_range(prefix, prefix, __return__)
    """
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return ALL_KEYS_END
    end[-1] += 1
    return bytes(end)


def in_range(key: bytes, start: bytes, range_end: bytes) -> bool:
    """Whether `key` is selected by a request on `(start, range_end)`."""
    if range_end == b"":
        return key == start
    if range_end == ALL_KEYS_END:
        return key >= start
    return start <= key < range_end


def compare_holds(kv: KeyValue | None, cmp: Compare) -> bool:
    """Evaluate one compare against the current kv of its key (None = missing)."""
    if kv is None and cmp.target is CompareTarget.VALUE:
        return False
    actual: int | bytes
    if cmp.target is CompareTarget.VALUE:
        assert kv is not None
        actual = kv.value
    else:
        actual = _int_field(kv, cmp.target)
    return _apply_result(actual, cmp.operand, cmp.result)


def _int_field(kv: KeyValue | None, target: CompareTarget) -> int:
    if kv is None:
        return 0
    return {
        CompareTarget.VERSION: kv.version,
        CompareTarget.CREATE: kv.create_revision,
        CompareTarget.MOD: kv.mod_revision,
        CompareTarget.LEASE: kv.lease,
    }[target]


def _apply_result(actual: int | bytes, operand: int | bytes, result: CompareResult) -> bool:
    if result is CompareResult.EQUAL:
        return actual == operand
    if result is CompareResult.NOT_EQUAL:
        return actual != operand
    if result is CompareResult.LESS:
        return actual < operand  # type: ignore[operator]
    return actual > operand  # type: ignore[operator]


def validate_txn(compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> None:
    """etcd's request checks, done before anything is evaluated."""
    if max(len(compares), len(success), len(failure)) > MAX_TXN_OPS:
        raise TooManyOps()
    if any(c.key == b"" for c in compares) or any(op.key == b"" for op in (*success, *failure)):
        raise KeyNotProvided()
    _check_duplicates(success)
    _check_duplicates(failure)


def _check_duplicates(ops: Sequence[Op]) -> None:
    deletes = [op for op in ops if isinstance(op, DeleteOp)]
    seen: set[bytes] = set()
    for op in ops:
        if not isinstance(op, PutOp):
            continue
        hit_delete = any(_delete_interval_contains(d, op.key) for d in deletes)
        if op.key in seen or hit_delete:
            raise DuplicateKey()
        seen.add(op.key)


def _delete_interval_contains(op: DeleteOp, key: bytes) -> bool:
    # etcd checks puts against delete intervals as plain byte-string intervals: an
    # end of b"\x00" makes an empty interval there (unlike in the delete itself).
    if op.range_end == b"":
        return key == op.key
    return op.key <= key < op.range_end


# --------------------------------------------------------------------------- the KV protocol


class EtcdKV(Protocol):
    """What both backends (this model and impl.etcd_client.EtcdGateway) offer."""

    def range(self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False,
              count_only: bool = False) -> RangeResponse: ...

    def get(self, key: bytes) -> RangeResponse: ...

    def get_prefix(self, prefix: bytes, *, keys_only: bool = False,
                   count_only: bool = False) -> RangeResponse: ...

    def put(self, key: bytes, value: bytes, lease: int = 0) -> PutResponse: ...

    def delete(self, key: bytes, range_end: bytes = b"") -> DeleteResponse: ...

    def delete_prefix(self, prefix: bytes) -> DeleteResponse: ...

    def txn(self, compares: Sequence[Compare], success: Sequence[Op] = (),
            failure: Sequence[Op] = ()) -> TxnResponse: ...

    def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResponse: ...

    def lease_revoke(self, lease_id: int) -> LeaseRevokeResponse: ...

    def lease_keep_alive(self, lease_id: int) -> LeaseKeepAliveResponse: ...

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> LeaseTimeToLiveResponse: ...

    def lease_leases(self) -> LeaseLeasesResponse: ...


class KVConveniences:
    """`get`, `get_prefix`, `delete_prefix` in terms of `range` and `delete`."""

    def range(self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False,
              count_only: bool = False) -> RangeResponse:
        raise NotImplementedError

    def delete(self, key: bytes, range_end: bytes = b"") -> DeleteResponse:
        raise NotImplementedError

    def get(self, key: bytes) -> RangeResponse:
        """Read one key."""
        return self.range(key)

    def get_prefix(self, prefix: bytes, *, keys_only: bool = False,
                   count_only: bool = False) -> RangeResponse:
        """Read every key starting with `prefix` (range end computed here, not by etcd3gw)."""
        return self.range(prefix, prefix_range_end(prefix), keys_only=keys_only,
                          count_only=count_only)

    def delete_prefix(self, prefix: bytes) -> DeleteResponse:
        """Delete every key starting with `prefix`."""
        return self.delete(prefix, prefix_range_end(prefix))


# --------------------------------------------------------------------------- the model


@attrs.define
class _Lease:
    id: int
    ttl: int
    deadline_ns: int
    keys: set[bytes] = attrs.Factory(set)  # attached keys, as etcd's lessor keeps them


class EtcdModel(KVConveniences):
    """The in-memory etcd. Keys in a dict (single-key reads are lookups) and in a sorted
    list (a range is the slice between the bisection points of its two ends).

    Each lease keeps the set of its attached keys and due leases are found through a
    min-heap of (deadline, id) with stale entries skipped, so that the coordinator's
    single-key hot path stays O(1) here and benchmarks measure the coordinator.

    A range's selection is kept until the next change of any key (`_ranges`, emptied by
    `_write` and `_delete_key`, the only two places `_kvs` changes): the same prefixes are
    read many times between two writes.
    """

    def __init__(self, *, clock: Clock | None = None, min_ttl_s: int = DEFAULT_MIN_TTL_S) -> None:
        self._clock: Callable[[], int] = clock if clock is not None else (lambda: 0)
        self._min_ttl_s = min_ttl_s
        self._revision = 1
        self._kvs: dict[bytes, KeyValue] = {}
        self._sorted: list[bytes] = []  # the keys of _kvs, in order
        self._ranges: dict[tuple[bytes, bytes], tuple[KeyValue, ...]] = {}  # since the last change
        self._leases: dict[int, _Lease] = {}
        self._expiry_heap: list[tuple[int, int]] = []
        self._last_lease_id = 0

    # -- reads ------------------------------------------------------------------------

    def range(self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False,
              count_only: bool = False) -> RangeResponse:
        """Read a key or a range (see the module docstring)."""
        self._expire_due()
        _require_key(key)
        return self._range(key, range_end, keys_only, count_only, self._revision)

    def _range(self, key: bytes, range_end: bytes, keys_only: bool, count_only: bool,
               revision: int) -> RangeResponse:
        hits = self._select(key, range_end)
        if count_only:
            return RangeResponse(revision, (), len(hits))
        if keys_only:
            hits = tuple(KeyValue(kv.key, b"", kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                         for kv in hits)
        return RangeResponse(revision, hits, len(hits))

    def _select(self, key: bytes, range_end: bytes) -> tuple[KeyValue, ...]:
        if range_end == b"":
            kv = self._kvs.get(key)
            return () if kv is None else (kv,)
        hits = self._ranges.get((key, range_end))
        if hits is None:
            lo = bisect.bisect_left(self._sorted, key)
            hi = len(self._sorted) if range_end == ALL_KEYS_END else bisect.bisect_left(self._sorted, range_end)
            hits = self._ranges[(key, range_end)] = tuple(self._kvs[k] for k in self._sorted[lo:hi])
        return hits

    # -- writes -----------------------------------------------------------------------

    def put(self, key: bytes, value: bytes, lease: int = 0) -> PutResponse:
        """Write one key (creating it, or bumping its version); one new revision."""
        self._expire_due()
        _require_key(key)
        self._require_lease(lease)
        self._revision += 1
        self._write(key, value, lease, self._revision)
        return PutResponse(self._revision)

    def delete(self, key: bytes, range_end: bytes = b"") -> DeleteResponse:
        """Delete a key or a range; a new revision only when something was deleted."""
        self._expire_due()
        _require_key(key)
        if self._select(key, range_end):
            self._revision += 1
        deleted = self._remove(key, range_end)
        return DeleteResponse(self._revision, deleted)

    def _require_lease(self, lease: int) -> None:
        if lease != 0 and lease not in self._leases:
            raise LeaseNotFound()

    def _write(self, key: bytes, value: bytes, lease: int, revision: int) -> None:
        self._ranges.clear()
        old = self._kvs.get(key)
        created = revision if old is None else old.create_revision
        version = 1 if old is None else old.version + 1
        if old is not None:
            self._detach(old)
        else:
            bisect.insort(self._sorted, key)
        self._kvs[key] = KeyValue(key, value, created, revision, version, lease)
        if lease:
            self._leases[lease].keys.add(key)

    def _remove(self, key: bytes, range_end: bytes) -> int:
        doomed = self._select(key, range_end)
        for kv in doomed:
            self._detach(kv)
            self._delete_key(kv.key)
        return len(doomed)

    def _delete_key(self, key: bytes) -> None:
        self._ranges.clear()
        del self._kvs[key]
        del self._sorted[bisect.bisect_left(self._sorted, key)]

    def _detach(self, kv: KeyValue) -> None:
        lease = self._leases.get(kv.lease)
        if lease is not None:
            lease.keys.discard(kv.key)

    # -- txn --------------------------------------------------------------------------

    def txn(self, compares: Sequence[Compare], success: Sequence[Op] = (),
            failure: Sequence[Op] = ()) -> TxnResponse:
        """Evaluate the compares, then apply one branch atomically under one revision."""
        self._expire_due()
        validate_txn(compares, success, failure)
        succeeded = all(compare_holds(self._kvs.get(c.key), c) for c in compares)
        branch = success if succeeded else failure
        for op in branch:
            if isinstance(op, PutOp):
                self._require_lease(op.lease)
        base = self._revision
        responses = tuple(self._apply_op(op, base) for op in branch)
        return TxnResponse(self._revision, succeeded, responses)

    def _apply_op(self, op: Op, base: int) -> OpResponse:
        # self._revision is base until the txn first changes something, then base + 1.
        if isinstance(op, RangeOp):
            return self._range(op.key, op.range_end, op.keys_only, op.count_only, self._revision)
        if isinstance(op, PutOp):
            self._revision = base + 1
            self._write(op.key, op.value, op.lease, base + 1)
            return PutResponse(self._revision)
        if self._select(op.key, op.range_end):
            self._revision = base + 1
        return DeleteResponse(self._revision, self._remove(op.key, op.range_end))

    # -- leases -----------------------------------------------------------------------

    def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResponse:
        """Create a lease; ttl below the minimum is raised to it."""
        self._expire_due()
        if ttl > MAX_LEASE_TTL_S:
            raise LeaseTTLTooLarge()
        if lease_id in self._leases:
            raise LeaseExists()
        lease_id = lease_id if lease_id != 0 else self._next_free_lease_id()
        ttl = max(ttl, self._min_ttl_s)
        self._leases[lease_id] = _Lease(lease_id, ttl, self._clock() + ttl * NS_PER_SEC)
        heapq.heappush(self._expiry_heap, (self._leases[lease_id].deadline_ns, lease_id))
        return LeaseGrantResponse(self._revision, lease_id, ttl)

    def _next_free_lease_id(self) -> int:
        # Never hands out an id again, even after a revoke (a real server's ids are random).
        self._last_lease_id += 1
        while self._last_lease_id in self._leases:
            self._last_lease_id += 1
        return self._last_lease_id

    def lease_revoke(self, lease_id: int) -> LeaseRevokeResponse:
        """Drop a lease and delete every key attached to it (one revision if any)."""
        self._expire_due()
        if lease_id not in self._leases:
            raise LeaseNotFound()
        self._revoke(lease_id)
        return LeaseRevokeResponse(self._revision)

    def _revoke(self, lease_id: int) -> None:
        attached = self._attached_keys(lease_id)
        del self._leases[lease_id]
        if attached:
            self._revision += 1
        for key in attached:
            self._delete_key(key)

    def _attached_keys(self, lease_id: int) -> list[bytes]:
        return sorted(self._leases[lease_id].keys)

    def lease_keep_alive(self, lease_id: int) -> LeaseKeepAliveResponse:
        """Restart the lease's TTL; ttl 0 in the answer when the lease is unknown."""
        self._expire_due()
        lease = self._leases.get(lease_id)
        if lease is None:
            return LeaseKeepAliveResponse(self._revision, lease_id, 0)
        lease.deadline_ns = self._clock() + lease.ttl * NS_PER_SEC
        heapq.heappush(self._expiry_heap, (lease.deadline_ns, lease_id))
        return LeaseKeepAliveResponse(self._revision, lease_id, lease.ttl)

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> LeaseTimeToLiveResponse:
        """Remaining whole seconds (truncated), granted TTL and optionally attached keys."""
        self._expire_due()
        lease = self._leases.get(lease_id)
        if lease is None:
            return LeaseTimeToLiveResponse(self._revision, lease_id, -1, 0, ())
        remaining = (lease.deadline_ns - self._clock()) // NS_PER_SEC
        attached = tuple(self._attached_keys(lease_id)) if keys else ()
        return LeaseTimeToLiveResponse(self._revision, lease_id, remaining, lease.ttl, attached)

    def lease_leases(self) -> LeaseLeasesResponse:
        """Every live lease id, sorted."""
        self._expire_due()
        return LeaseLeasesResponse(self._revision, tuple(sorted(self._leases)))

    def _expire_due(self) -> None:
        """Revoke every lease with deadline <= now, in (deadline, id) order."""
        now = self._clock()
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            deadline, lease_id = heapq.heappop(heap)
            lease = self._leases.get(lease_id)
            if lease is not None and lease.deadline_ns == deadline:  # else a stale entry
                self._revoke(lease_id)

    # -- test conveniences ------------------------------------------------------------

    def close(self) -> None:
        """Nothing to release (the real client closes its HTTP session)."""

    def expire_lease_now(self, lease_id: int) -> None:
        """Run a lease out at once, as if its TTL had elapsed (a test stand-in for time)."""
        self._expire_due()
        if lease_id in self._leases:
            self._revoke(lease_id)


def _require_key(key: bytes) -> None:
    if key == b"":
        raise KeyNotProvided()
