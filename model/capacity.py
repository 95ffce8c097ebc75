"""Reference model of the etcd-backed shard-lease coordinator (gossip-coordination-etcd)
and of its capacity hint, over any KV with the interface of `model.etcd.EtcdKV`.

What is modelled (reference/semantics.md §1, split-module "B" semantics)
- The key layout of §1.2 under a validated root prefix; records as compact JSON bytes.
- `create_run`, `register_shards`, `acquire_and_restore_into`, `renew`, `checkpoint`,
  `complete`, `park_shard`, `unpark_shard`, `split_replace`, `split_residual`,
  `claim_next_available` and the capacity read `capacity_hint`.
- Every mutation reads the record (and its owner key) with its mod_revision, validates
  locally, and commits with a txn guarded by `mod_revision == read` plus the owner
  compares of §1.5 (owner present: version > 0, value == read, lease == read lease id;
  or owner absent: version == 0). A failed compare retries, at most
  `optimistic_txn_retries` attempts; on exhaustion the op re-reads once and raises the
  domain error, or `ContentionNotConverged` when every precondition still holds.
- Two clocks (§1.4): the logical deadline (`clock()` + the run's lease duration, u64
  saturating) written in the record, and an etcd lease (TTL `owner_lease_ttl_secs`) on
  the owner key. A shard's owner is live iff the owner key exists, the record holds a
  lease and `now < deadline`.
- The capacity hint of §1.7 (`count_available_for_run`): a full scan of the run's
  records after every committed acquire and renew, and for `capacity_hint`: Active shards
  without a live owner are available; the earliest deadline is the minimum over Active
  shards with a live owner.

Semantic decisions where the sources are silent
- Time: each public call reads `clock()` once; `claim_next_available` passes that `now`
  to its acquires. Op-log `executed_at` is `max(now, 1)` (the codec requires > 0).
- `complete` / `park_shard` (unimplemented upstream) follow §1.6 and §1.9 by analogy
  with `split_replace`: Active → Done / Parked, lease None, owner key and `shards_active`
  marker deleted in the guarded txn. Like `split_replace`, they do not revoke the etcd
  lease (it has no keys left and runs out by TTL).
- Claiming follows gossip-coordination's `default_claim_next_available`: candidates are
  the full-scan available shards sorted by id (the `00b9fead` full-scan variant, so that
  claims and the hint agree), iteration starts at `worker % len`, AlreadyLeased /
  ShardTerminal / ShardNotFound move on to the next candidate, and `NoneAvailable`
  carries the earliest deadline seen. No per-worker cooldown (Throttled) is modelled.
- Renew, checkpoint, complete, park and splits load the shard named by the lease token,
  then validate in the order tenant → terminal → fence (a record holding a different
  worker, or no lease, at an equal fence is a StaleFence too) → expiry → owner binding.
- Child ids are derived from (run, parent, op_id, role, index) with xxh3_64 and bit 63
  set (upstream uses BLAKE3, which the standard library lacks); same role as upstream.
- Key ranges are `[start, end)` with `end == b""` meaning unbounded. Cursor keys and
  tokens are limited to 4096 bytes (upstream's limits were not found).
- `register_shards` whose compare keeps failing because a shard key already exists
  raises a corruption `BackendError` (upstream would report non-convergence).
- Errors from the KV itself (`model.etcd.EtcdError`) propagate unchanged.
- Lease ids: with `lease_id_base > 0` the coordinator grants explicit ids base+1,
  base+2, … (etcd accepts client-chosen ids), else the KV picks them. `abstract()`
  reports lease ids relative to the base so that runs on different KVs compare equal.
- Backoff between attempts is a wall-clock sleep upstream; it is left out (no sleeping).

Left out: complete/fail/cancel run, run listing and GC, get_run_progress, shard limits,
the spawn cap, cursor semantics flags, the binary v1 codec (JSON stands in for it).

Decoding: record, run and owner values and key kinds are decoded by pure functions,
memoized on their bytes; a prefix read (a run's scan, `abstract()`) is decoded again only
when the KV's revision changed since the same read last decoded it (every change to a key
adds a revision, so equal revisions mean equal contents). Both leave every read in place.

Test hooks: `interferer(op, shard_key, attempt)` is called between each attempt's read
and its txn; `revoke_fault(lease_id) -> bool` makes a best-effort revocation fail.

Override points (no-ops here, used by the optimized impl and its mutants):
`_capacity`, `_claim_candidates` (the two full scans) and the commit notifications
`_committed_register`, `_committed_acquire`, `_committed_renew`, `_committed_terminal`,
`_committed_split_replace`, `_committed_split_residual`, `_committed_unpark`, plus
`_cas_failed` (a failed compare) and `_lease_revoked` (a best-effort revocation).
`_owner_compares` builds the owner guard.
"""
from __future__ import annotations

import enum
import functools
import json
import struct
from typing import Any, Callable, Iterable, Optional, Sequence

import attrs
import xxhash

from meshspec.clock import Clock, monotonic_clock
from model.etcd import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteOp,
    EtcdError,
    EtcdKV,
    KeyValue,
    Op,
    PutOp,
    RangeOp,
    RangeResponse,
)

U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
INITIAL_FENCE = 1
OP_LOG_CAPACITY = 16
MAX_SHARDS_PER_ETCD_TXN = 41
MAX_CHILDREN_PER_SPLIT_TXN = 40
MAX_CURSOR_KEY_SIZE = 4096
MAX_CURSOR_TOKEN_SIZE = 4096
TENANT_ID_LEN = 32
CHILD_ID_BIT = 1 << 63
DECODE_CACHE_SIZE = 4096


def sat_add_u64(a: int, b: int) -> int:
    """u64 saturating addition.

    pre: 0 <= a <= U64_MAX and 0 <= b <= U64_MAX
    post: max(a, b) <= __return__ <= U64_MAX
    post: __return__ == a + b or __return__ == U64_MAX
    """
    return min(a + b, U64_MAX)


def sat_u32(n: int) -> int:
    """Clamp a count to u32.

    pre: n >= 0
    post: 0 <= __return__ <= U32_MAX
    post: __return__ == n or (n > U32_MAX and __return__ == U32_MAX)
    """
    return min(n, U32_MAX)


def check_u64(name: str, value: int) -> int:
    """Reject values a Rust u64 could not hold."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U64_MAX:
        raise ValueError(f"{name} must be a u64, got {value!r}")
    return value


# =========================================================================== enums


class ShardStatus(enum.Enum):
    ACTIVE = 0
    DONE = 1
    SPLIT = 2
    PARKED = 3

    @property
    def is_terminal(self) -> bool:
        return self is not ShardStatus.ACTIVE

    def __str__(self) -> str:
        return self.name.capitalize()


class ParkReason(enum.Enum):
    PERMISSION_DENIED = 0
    NOT_FOUND = 1
    POISONED = 2
    TOO_MANY_ERRORS = 3
    OTHER = 4


class OpKind(enum.Enum):
    CHECKPOINT = 0
    COMPLETE = 1
    PARK = 2
    SPLIT_REPLACE = 3
    SPLIT_RESIDUAL = 4
    UNPARK = 5
    REGISTER = 6  # run op-log


class OpResult(enum.Enum):
    COMPLETED = 0
    ERROR = 1
    SUPERSEDED = 2


class RunStatus(enum.Enum):
    INITIALIZING = 0
    ACTIVE = 1
    DONE = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED)

    def __str__(self) -> str:
        return self.name.capitalize()


# =========================================================================== values


@attrs.frozen
class ShardSpec:
    """Key range `[key_range_start, key_range_end)`; an empty end is unbounded."""

    key_range_start: bytes
    key_range_end: bytes
    metadata: bytes = b""


@attrs.frozen
class Cursor:
    last_key: Optional[bytes] = None
    token: Optional[bytes] = None


@attrs.frozen
class LeaseHolder:
    owner: int
    deadline: int


@attrs.frozen
class OpLogEntry:
    op_id: int
    kind: OpKind
    result: OpResult
    payload_hash: int
    executed_at: int


@attrs.frozen
class ShardRecord:
    tenant: bytes
    run: int
    shard: int
    status: ShardStatus
    park_reason: Optional[ParkReason]
    spec: ShardSpec
    cursor: Cursor
    lease: Optional[LeaseHolder]
    fence_epoch: int
    parent: Optional[int]
    spawned: tuple[int, ...]
    op_log: tuple[OpLogEntry, ...]


@attrs.frozen
class RunConfig:
    lease_duration_ns: int


@attrs.frozen
class RunRecord:
    tenant: bytes
    run: int
    config: RunConfig
    status: RunStatus
    created_at: int
    completed_at: Optional[int]
    root_shards: tuple[int, ...]
    op_log: tuple[OpLogEntry, ...]


@attrs.frozen
class ShardManifestEntry:
    shard: int
    spec: ShardSpec


@attrs.frozen
class SplitResidualPlan:
    parent_new_spec: ShardSpec
    residual_spec: ShardSpec


@attrs.frozen
class Lease:
    """The worker-side token returned by acquire."""

    tenant: bytes
    run: int
    shard: int
    owner: int
    fence: int
    deadline: int


@attrs.frozen
class CapacityHint:
    available_count: int
    earliest_deadline: Optional[int]

    @property
    def is_saturated(self) -> bool:
        return self.available_count == 0


CAPACITY_ZERO = CapacityHint(0, None)


@attrs.frozen
class ShardSnapshot:
    spec: ShardSpec
    cursor: Cursor
    spawned: tuple[int, ...]
    status: ShardStatus
    parent: Optional[int]


@attrs.frozen
class AcquireResult:
    lease: Lease
    snapshot: ShardSnapshot
    capacity: CapacityHint


@attrs.frozen
class RenewResult:
    new_deadline: int
    capacity: CapacityHint


@attrs.frozen
class IdempotentOutcome:
    """Executed (replayed=False) or Replayed (replayed=True), with the op's value."""

    replayed: bool
    value: Any = None


@attrs.frozen
class OwnerRecord:
    """An owner key as `abstract()` shows it (lease id relative to the lease id base)."""

    tenant: bytes
    run: int
    shard: int
    worker: int
    fence: int
    lease: int


@attrs.frozen
class CapacityAbstract:
    runs: tuple[RunRecord, ...]
    shards: tuple[ShardRecord, ...]
    owners: tuple[OwnerRecord, ...]
    shard_markers: tuple[tuple[bytes, int, int], ...]
    run_markers: tuple[tuple[bytes, int], ...]
    other_keys: tuple[tuple[bytes, bytes], ...]
    hints: tuple[tuple[bytes, int, CapacityHint], ...]
    leases: tuple[int, ...]


@attrs.frozen
class CoordinatorOptions:
    root_prefix: str = "/gossip/v1"
    owner_lease_ttl_secs: int = 60
    optimistic_txn_retries: int = 8
    max_children_per_op: int = 8
    lease_id_base: int = 0

    def validate(self) -> "CoordinatorOptions":
        validate_root_prefix(self.root_prefix)
        if self.optimistic_txn_retries < 1:
            raise ValueError("optimistic_txn_retries must be >= 1")
        if not 1 <= self.max_children_per_op <= MAX_CHILDREN_PER_SPLIT_TXN:
            raise ValueError(f"max_children_per_op must be in 1..={MAX_CHILDREN_PER_SPLIT_TXN}")
        if self.owner_lease_ttl_secs < 1 or self.lease_id_base < 0:
            raise ValueError("owner_lease_ttl_secs must be >= 1 and lease_id_base >= 0")
        return self


# =========================================================================== errors


def _tenant_text(tenant: bytes) -> str:
    return f"TenantId({tenant.hex()})"


def _shard_text(run: int, shard: int) -> str:
    return f"ShardKey {{ run: RunId({run}), shard: ShardId({shard}) }}"


class CoordinationError(Exception):
    """Base of every domain error of the coordinator; `str()` is the Rust Display text."""


class ShardNotFound(CoordinationError):
    def __init__(self, run: int, shard: int) -> None:
        super().__init__(f"shard not found: {_shard_text(run, shard)}")


class TenantMismatch(CoordinationError):
    def __init__(self, expected: bytes) -> None:
        super().__init__(f"tenant mismatch (expected {_tenant_text(expected)})")


class StaleFence(CoordinationError):
    def __init__(self, presented: int, current: int) -> None:
        super().__init__(f"stale fence epoch: presented FenceEpoch({presented}), "
                         f"current FenceEpoch({current})")


class LeaseExpired(CoordinationError):
    def __init__(self, deadline: int, now: int) -> None:
        super().__init__(f"lease expired: deadline LogicalTime({deadline}), now LogicalTime({now})")


class ShardTerminal(CoordinationError):
    def __init__(self, run: int, shard: int, status: ShardStatus) -> None:
        super().__init__(f"shard {_shard_text(run, shard)} is terminal ({status})")


class AlreadyLeased(CoordinationError):
    def __init__(self, current_owner: int, lease_deadline: int) -> None:
        super().__init__(f"shard already leased (deadline LogicalTime({lease_deadline}))")
        self.current_owner = current_owner
        self.lease_deadline = lease_deadline


class OpIdConflict(CoordinationError):
    def __init__(self, op_id: int) -> None:
        super().__init__(f"op-id conflict: OpId({op_id}) reused with different payload")


class CursorRegression(CoordinationError):
    def __init__(self) -> None:
        super().__init__("cursor regression: new key < old key")


class CursorOutOfBounds(CoordinationError):
    def __init__(self, key_len: int) -> None:
        super().__init__(f"cursor out of bounds: key ({key_len} bytes) outside shard range")


class CursorKeyTooLarge(CoordinationError):
    def __init__(self, size: int) -> None:
        super().__init__(f"cursor key too large ({size} bytes, max {MAX_CURSOR_KEY_SIZE})")


class CursorTokenTooLarge(CoordinationError):
    def __init__(self, size: int) -> None:
        super().__init__(f"cursor token too large ({size} bytes, max {MAX_CURSOR_TOKEN_SIZE})")


class CheckpointMissingKey(CoordinationError):
    def __init__(self, op: str = "checkpoint") -> None:
        super().__init__(f"{op} requires a last_key")


class SplitInvalid(CoordinationError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"split invalid: {reason}")


class BackendChildLimitExceeded(CoordinationError):
    def __init__(self, requested: int, limit: int) -> None:
        super().__init__(f"split child limit exceeded: {requested} children, max {limit}")


class DerivedIdCollision(CoordinationError):
    def __init__(self, shard: int) -> None:
        super().__init__(f"derived child id collision: ShardId({shard}) already exists")


class RunNotFound(CoordinationError):
    def __init__(self) -> None:
        super().__init__("run not found")


class RunAlreadyExists(CoordinationError):
    def __init__(self, run: int) -> None:
        super().__init__(f"run already exists: RunId({run})")


class WrongRunStatus(CoordinationError):
    def __init__(self, status: RunStatus) -> None:
        super().__init__(f"run status is {status}, expected Initializing")


class RunTerminal(CoordinationError):
    def __init__(self, status: RunStatus) -> None:
        super().__init__(f"run is terminal ({status})")


class NotParked(CoordinationError):
    def __init__(self, status: ShardStatus) -> None:
        super().__init__(f"shard is not parked ({status})")


class InvalidManifest(CoordinationError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid shard manifest: {reason}")


class ResourceExhausted(CoordinationError):
    def __init__(self, resource: str) -> None:
        super().__init__(f"resource exhausted: {resource}")


class NoneAvailable(CoordinationError):
    def __init__(self, earliest_deadline: Optional[int]) -> None:
        if earliest_deadline is None:
            text = "no available shards for this run (no active leases)"
        else:
            text = ("no available shards for this run "
                    f"(earliest lease expiry: LogicalTime({earliest_deadline}))")
        super().__init__(text)
        self.earliest_deadline = earliest_deadline


class BackendError(CoordinationError):
    """InfraError: kind is "transient" or "corruption"."""

    def __init__(self, kind: str, operation: str, message: str) -> None:
        super().__init__(f"coordination backend error: [{kind}] {operation}: {message}")
        self.kind = kind


class ContentionNotConverged(BackendError):
    """The retry budget ran out although every precondition still holds (a panic upstream)."""

    def __init__(self, operation: str) -> None:
        super().__init__("transient", operation, "compare contention did not converge")


def corruption(operation: str, message: str) -> BackendError:
    return BackendError("corruption", operation, message)


# =========================================================================== keyspace


def validate_root_prefix(root: str) -> str:
    """§1.2: trimmed, non-empty, starts with '/', no trailing '/' (unless '/'), no '//'."""
    ok = (root == root.strip() and root.startswith("/") and "//" not in root
          and (root == "/" or not root.endswith("/")))
    if not ok:
        raise ValueError(f"invalid root prefix {root!r}")
    return root


def id_hex(value: int) -> str:
    return f"{check_u64('id', value):016x}"


def tenant_hex(tenant: bytes) -> str:
    if not isinstance(tenant, bytes) or len(tenant) != TENANT_ID_LEN:
        raise ValueError(f"tenant must be {TENANT_ID_LEN} bytes, got {tenant!r}")
    return tenant.hex()


def _memoized_key(method: Callable[..., bytes]) -> Callable[..., bytes]:
    """A key-layout method memoized on (root, arguments): every key is a pure function of
    them, and the same few keys are built hundreds of thousands of times a run. Only exact
    `bytes` / `int` arguments use the memo (True == 1 with the same hash, but a bool must be
    refused; an unhashable tenant must raise the method's own error); a call that raises
    stores nothing. The memo is cleared when full."""
    memo: dict[tuple[Any, ...], bytes] = {}

    @functools.wraps(method)
    def memoized(self: Keyspace, *args: Any) -> bytes:
        for arg in args:
            if type(arg) is not bytes and type(arg) is not int:
                return method(self, *args)
        where = (self.root, *args)
        hit = memo.get(where)
        if hit is None:
            if len(memo) >= DECODE_CACHE_SIZE:
                memo.clear()
            hit = memo[where] = method(self, *args)
        return hit
    memoized.memo = memo  # type: ignore[attr-defined]
    return memoized


@attrs.frozen
class Keyspace:
    """The key layout of §1.2."""

    root: str

    def _base(self) -> str:
        return "" if self.root == "/" else self.root

    def tenants_prefix(self) -> bytes:
        return f"{self._base()}/tenants/".encode()

    @_memoized_key
    def run_key(self, tenant: bytes, run: int) -> bytes:
        return f"{self._base()}/tenants/{tenant_hex(tenant)}/runs/{id_hex(run)}".encode()

    @_memoized_key
    def shards_prefix(self, tenant: bytes, run: int) -> bytes:
        return self.run_key(tenant, run) + b"/shards/"

    @_memoized_key
    def shard_key(self, tenant: bytes, run: int, shard: int) -> bytes:
        return self.shards_prefix(tenant, run) + id_hex(shard).encode()

    @_memoized_key
    def owner_key(self, tenant: bytes, run: int, shard: int) -> bytes:
        return self.shard_key(tenant, run, shard) + b"/owner"

    @_memoized_key
    def shard_marker_key(self, tenant: bytes, run: int, shard: int) -> bytes:
        return self.run_key(tenant, run) + b"/shards_active/" + id_hex(shard).encode()

    @_memoized_key
    def run_marker_key(self, tenant: bytes, run: int) -> bytes:
        return f"{self._base()}/tenants/{tenant_hex(tenant)}/runs_active/{id_hex(run)}".encode()

    def classify(self, key: bytes) -> tuple[str, tuple[Any, ...]]:
        """Which kind of key this is: run, shard, owner, shard_marker, run_marker, other."""
        return _classify(self.root, key)


@functools.lru_cache(maxsize=DECODE_CACHE_SIZE)
def _classify(root: str, key: bytes) -> tuple[str, tuple[Any, ...]]:
    """`Keyspace(root).classify(key)`: a pure function of its arguments, memoized."""
    prefix = Keyspace(root).tenants_prefix()
    if not key.startswith(prefix):
        return "other", ()
    rest = key[len(prefix):].decode(errors="replace").split("/")
    if len(rest) < 3 or len(rest[0]) != 2 * TENANT_ID_LEN:
        return "other", ()
    try:
        tenant = bytes.fromhex(rest[0])
        parts = rest[1:]
        if parts[0] == "runs_active" and len(parts) == 2:
            return "run_marker", (tenant, int(parts[1], 16))
        if parts[0] != "runs":
            return "other", ()
        run = int(parts[1], 16)
        return _classify_under_run(tenant, run, parts[2:])
    except ValueError:
        return "other", ()


def _classify_under_run(tenant: bytes, run: int, parts: list[str]) -> tuple[str, tuple[Any, ...]]:
    if not parts:
        return "run", (tenant, run)
    if len(parts) == 2 and parts[0] == "shards_active":
        return "shard_marker", (tenant, run, int(parts[1], 16))
    if parts[0] == "shards" and len(parts) == 2:
        return "shard", (tenant, run, int(parts[1], 16))
    if parts[0] == "shards" and len(parts) == 3 and parts[2] == "owner":
        return "owner", (tenant, run, int(parts[1], 16))
    return "other", ()


# =========================================================================== codec (JSON)
#
# Decoding is a pure function from immutable bytes to frozen values, so each decoder is
# memoized on the bytes it is given (a value that does not decode raises every time: an
# exception is never cached).


def _hex_or_none(data: Optional[bytes]) -> Optional[str]:
    return None if data is None else data.hex()


def _bytes_or_none(text: Optional[str]) -> Optional[bytes]:
    return None if text is None else bytes.fromhex(text)


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _spec_json(spec: ShardSpec) -> list[str]:
    return [spec.key_range_start.hex(), spec.key_range_end.hex(), spec.metadata.hex()]


def _spec_from(items: list[str]) -> ShardSpec:
    return ShardSpec(bytes.fromhex(items[0]), bytes.fromhex(items[1]), bytes.fromhex(items[2]))


def _oplog_json(log: tuple[OpLogEntry, ...]) -> list[list[int]]:
    return [[e.op_id, e.kind.value, e.result.value, e.payload_hash, e.executed_at] for e in log]


def _oplog_from(items: list[list[int]]) -> tuple[OpLogEntry, ...]:
    return tuple(OpLogEntry(i, OpKind(k), OpResult(r), h, t) for i, k, r, h, t in items)


def encode_shard(rec: ShardRecord) -> bytes:
    return _dump({
        "v": 1, "kind": "shard", "tenant": rec.tenant.hex(), "run": rec.run, "shard": rec.shard,
        "status": rec.status.value,
        "park": None if rec.park_reason is None else rec.park_reason.value,
        "spec": _spec_json(rec.spec),
        "cursor": [_hex_or_none(rec.cursor.last_key), _hex_or_none(rec.cursor.token)],
        "lease": None if rec.lease is None else [rec.lease.owner, rec.lease.deadline],
        "fence": rec.fence_epoch, "parent": rec.parent, "spawned": list(rec.spawned),
        "op_log": _oplog_json(rec.op_log),
    })


@functools.lru_cache(maxsize=DECODE_CACHE_SIZE)
def decode_shard(data: bytes) -> ShardRecord:
    d = _load(data, "shard")
    lease = None if d["lease"] is None else LeaseHolder(*d["lease"])
    park = None if d["park"] is None else ParkReason(d["park"])
    cursor = Cursor(_bytes_or_none(d["cursor"][0]), _bytes_or_none(d["cursor"][1]))
    return ShardRecord(bytes.fromhex(d["tenant"]), d["run"], d["shard"], ShardStatus(d["status"]),
                       park, _spec_from(d["spec"]), cursor, lease, d["fence"], d["parent"],
                       tuple(d["spawned"]), _oplog_from(d["op_log"]))


def encode_run(rec: RunRecord) -> bytes:
    return _dump({
        "v": 1, "kind": "run", "tenant": rec.tenant.hex(), "run": rec.run,
        "lease_duration_ns": rec.config.lease_duration_ns, "status": rec.status.value,
        "created_at": rec.created_at, "completed_at": rec.completed_at,
        "root_shards": list(rec.root_shards), "op_log": _oplog_json(rec.op_log),
    })


@functools.lru_cache(maxsize=DECODE_CACHE_SIZE)
def decode_run(data: bytes) -> RunRecord:
    d = _load(data, "run")
    return RunRecord(bytes.fromhex(d["tenant"]), d["run"], RunConfig(d["lease_duration_ns"]),
                     RunStatus(d["status"]), d["created_at"], d["completed_at"],
                     tuple(d["root_shards"]), _oplog_from(d["op_log"]))


def encode_owner(worker: int, fence: int) -> bytes:
    return _dump({"v": 1, "kind": "owner", "worker": worker, "fence": fence})


@functools.lru_cache(maxsize=DECODE_CACHE_SIZE)
def decode_owner(data: bytes) -> tuple[int, int]:
    d = _load(data, "owner")
    if d["fence"] < INITIAL_FENCE:
        raise ValueError(f"owner fence {d['fence']} below the initial fence")
    return int(d["worker"]), int(d["fence"])


def _load(data: bytes, kind: str) -> dict[str, Any]:
    try:
        d = json.loads(data)
    except ValueError as exc:
        raise corruption("decode", f"not a {kind} record: {exc}") from exc
    if not isinstance(d, dict) or d.get("v") != 1 or d.get("kind") != kind:
        raise corruption("decode", f"not a v1 {kind} record")
    return d


# =========================================================================== pure rules


def payload_hash(kind: OpKind, payload: Any) -> int:
    """xxh3_64 of the op kind and its canonical payload, never 0."""
    text = json.dumps([kind.value, _canonical(payload)], separators=(",", ":")).encode()
    return xxhash.xxh3_64_intdigest(text) or 1


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.value
    if attrs.has(type(value)):
        return [_canonical(getattr(value, f.name)) for f in attrs.fields(type(value))]
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def derive_child_id(run: int, parent: int, op_id: int, role: str, index: int) -> int:
    """Deterministic child id (bit 63 set) from (run, parent, op_id, role, index)."""
    data = struct.pack("<QQQQ", run, parent, op_id, index) + role.encode()
    return xxhash.xxh3_64_intdigest(data) | CHILD_ID_BIT


def find_op(log: Iterable[OpLogEntry], op_id: int, digest: int) -> Optional[OpLogEntry]:
    """The replay rule: same id + same hash → the entry; same id, other hash → conflict."""
    for entry in log:
        if entry.op_id == op_id:
            if entry.payload_hash != digest:
                raise OpIdConflict(op_id)
            return entry
    return None


def push_op(log: tuple[OpLogEntry, ...], entry: OpLogEntry) -> tuple[OpLogEntry, ...]:
    """Append to the 16-entry ring (the oldest entry falls out).

    post: len(__return__) == min(len(log) + 1, OP_LOG_CAPACITY)
    post: __return__[-1] is entry
    post: __return__[:-1] == log[len(log) + 1 - len(__return__):]
    """
    return (log + (entry,))[-OP_LOG_CAPACITY:]


def range_contains(spec: ShardSpec, key: bytes) -> bool:
    return spec.key_range_start <= key and (spec.key_range_end == b"" or key < spec.key_range_end)


def spec_is_valid(spec: ShardSpec) -> bool:
    return spec.key_range_end == b"" or spec.key_range_start < spec.key_range_end


def tiling_error(parent: ShardSpec, children: Sequence[ShardSpec]) -> Optional[str]:
    """Why `children` (sorted by start) do not exactly tile `parent`, or None."""
    if len(children) < 2:
        return "at least two children required"
    ordered = sorted(children, key=lambda c: c.key_range_start)
    if any(not spec_is_valid(c) for c in ordered):
        return "inverted or empty child range"
    if ordered[0].key_range_start != parent.key_range_start:
        return "children do not start at the parent's start"
    if ordered[-1].key_range_end != parent.key_range_end:
        return "children do not end at the parent's end"
    for left, right in zip(ordered, ordered[1:]):
        if left.key_range_end == b"" or left.key_range_end != right.key_range_start:
            return "gap or overlap between children"
    return None


def validate_cursor(spec: ShardSpec, old: Cursor, new: Cursor, op: str) -> None:
    """Size limits, a last_key present, monotonic, inside the shard's range."""
    if new.last_key is not None and len(new.last_key) > MAX_CURSOR_KEY_SIZE:
        raise CursorKeyTooLarge(len(new.last_key))
    if new.token is not None and len(new.token) > MAX_CURSOR_TOKEN_SIZE:
        raise CursorTokenTooLarge(len(new.token))
    if new.last_key is None:
        raise CheckpointMissingKey(op)
    if old.last_key is not None and new.last_key < old.last_key:
        raise CursorRegression()
    if not range_contains(spec, new.last_key):
        raise CursorOutOfBounds(len(new.last_key))


def is_owner_live(record: ShardRecord, owner_present: bool, now: int) -> bool:
    """§1.4 owner_is_live_at: owner key present, record leased, now < deadline.

    post: not __return__ or (owner_present and record.lease is not None)
    post: not __return__ or is_owner_live(record, owner_present, now - 1)
    """
    return owner_present and record.lease is not None and now < record.lease.deadline


def hint_from_scan(entries: Iterable[tuple[ShardRecord, bool]], now: int) -> CapacityHint:
    """count_available_for_run over (record, owner key present) pairs.

    post: 0 <= __return__.available_count <= U32_MAX
    post: __return__.earliest_deadline is None or __return__.earliest_deadline > now
    """
    available, earliest = 0, None
    for record, owner_present in entries:
        if record.status is not ShardStatus.ACTIVE:
            continue
        if is_owner_live(record, owner_present, now):
            assert record.lease is not None
            deadline = record.lease.deadline
            earliest = deadline if earliest is None else min(earliest, deadline)
        else:
            available += 1
    return CapacityHint(sat_u32(available), earliest)


# =========================================================================== the coordinator


@attrs.frozen
class OwnerKey:
    """An owner key as read: decoded value, raw value, the etcd lease it is bound to."""

    worker: int
    fence: int
    value: bytes
    lease_id: int


@attrs.frozen
class LoadedShard:
    record: ShardRecord
    mod_revision: int
    owner: Optional[OwnerKey]


@attrs.frozen
class LoadedRun:
    record: RunRecord
    mod_revision: int


Interferer = Callable[[str, bytes, int], None]


class EtcdCoordinator:
    """The shard-lease coordinator over an etcd KV; capacity hints by full scan."""

    def __init__(self, kv: EtcdKV, *, clock: Clock = monotonic_clock,
                 options: CoordinatorOptions = CoordinatorOptions(),
                 interferer: Optional[Interferer] = None,
                 revoke_fault: Optional[Callable[[int], bool]] = None) -> None:
        self._kv = kv
        self._clock = clock
        self._options = options.validate()
        self._keys = Keyspace(options.root_prefix)
        self.interferer = interferer
        self.revoke_fault = revoke_fault
        self._lease_ordinal = 0
        self._decoded_reads: dict[tuple[bytes, str], tuple[int, Any]] = {}

    # ------------------------------------------------------------------ reads

    def _load_shard(self, tenant: bytes, run: int, shard: int) -> Optional[LoadedShard]:
        """Record + owner key in one read-only txn (one atomic snapshot)."""
        rec_key, owner_key = self._keys.shard_key(tenant, run, shard), self._keys.owner_key(
            tenant, run, shard)
        resp = self._kv.txn([], [RangeOp(rec_key), RangeOp(owner_key)])
        rec_kvs, owner_kvs = (_kvs(r) for r in resp.responses)
        if not rec_kvs:
            if owner_kvs:
                raise corruption("load_shard", "owner key without a shard record")
            return None
        record = self._decode_shard_at(rec_kvs[0], tenant, run, shard)
        owner = _owner_from(owner_kvs[0]) if owner_kvs else None
        check_owner_binding(record, owner)
        return LoadedShard(record, rec_kvs[0].mod_revision, owner)

    def _decode_shard_at(self, kv: KeyValue, tenant: bytes, run: int, shard: int) -> ShardRecord:
        record = decode_shard(kv.value)
        if (record.tenant, record.run, record.shard) != (tenant, run, shard):
            raise corruption("decode", "shard record identity does not match its key")
        return record

    def _load_run(self, tenant: bytes, run: int) -> Optional[LoadedRun]:
        kvs = self._kv.get(self._keys.run_key(tenant, run)).kvs
        if not kvs:
            return None
        record = decode_run(kvs[0].value)
        if (record.tenant, record.run) != (tenant, run):
            raise corruption("decode", "run record identity does not match its key")
        return LoadedRun(record, kvs[0].mod_revision)

    def _require_run(self, tenant: bytes, run: int) -> LoadedRun:
        loaded = self._load_run(tenant, run)
        if loaded is None:
            raise RunNotFound()
        return loaded

    def _read_decoded(self, prefix: bytes, decode: Callable[[tuple[KeyValue, ...]], Any]) -> Any:
        """`decode(every key-value under prefix)`, with one prefix read. `decode` is a pure
        function of the keys and values read, and every change to a key adds a revision,
        so the decoded form is kept and decoded again only when the revision changed."""
        resp = self._kv.get_prefix(prefix)
        where = (prefix, decode.__name__)
        hit = self._decoded_reads.get(where)
        if hit is None or hit[0] != resp.revision:
            hit = self._decoded_reads[where] = (resp.revision, decode(resp.kvs))
        return hit[1]

    def _scan_run(self, tenant: bytes, run: int) -> list[tuple[ShardRecord, Optional[OwnerKey]]]:
        """Every shard record of the run with its owner key (one prefix read, values)."""
        def shard_entries(kvs: tuple[KeyValue, ...]) -> tuple[tuple[ShardRecord, Optional[OwnerKey]], ...]:
            return tuple(self._shard_entries(tenant, run, kvs))
        return list(self._read_decoded(self._keys.shards_prefix(tenant, run), shard_entries))

    def _shard_entries(self, tenant: bytes, run: int, kvs: tuple[KeyValue, ...]
                       ) -> list[tuple[ShardRecord, Optional[OwnerKey]]]:
        records: dict[int, ShardRecord] = {}
        owners: dict[int, OwnerKey] = {}
        for kv in kvs:
            kind, ident = self._keys.classify(kv.key)
            if kind == "shard":
                records[ident[2]] = self._decode_shard_at(kv, tenant, run, ident[2])
            elif kind == "owner":
                owners[ident[2]] = _owner_from(kv)
        if set(owners) - set(records):
            raise corruption("scan_run", "owner key without a shard record")
        for shard, record in records.items():
            check_owner_binding(record, owners.get(shard))
        return [(records[s], owners.get(s)) for s in sorted(records)]

    # ------------------------------------------------------------------ the two full scans

    def _capacity(self, tenant: bytes, run: int, now: int) -> CapacityHint:
        """count_available_for_run: a full scan of the run, read after the operation."""
        return hint_from_scan(((r, o is not None) for r, o in self._scan_run(tenant, run)), now)

    def _claim_candidates(self, tenant: bytes, run: int, now: int) -> tuple[list[int], Optional[int]]:
        """Active shards without a live owner (sorted), and the earliest live deadline."""
        entries = self._scan_run(tenant, run)
        candidates = [r.shard for r, o in entries
                      if r.status is ShardStatus.ACTIVE and not is_owner_live(r, o is not None, now)]
        return candidates, hint_from_scan(((r, o is not None) for r, o in entries),
                                          now).earliest_deadline

    # ------------------------------------------------------------------ override points (no-ops)

    def _committed_register(self, tenant: bytes, run: int, shards: tuple[int, ...]) -> None:
        """A register_shards txn committed."""

    def _committed_acquire(self, tenant: bytes, run: int, shard: int, deadline: int) -> None:
        """An acquire txn committed (new logical deadline)."""

    def _committed_renew(self, tenant: bytes, run: int, shard: int, deadline: int) -> None:
        """A renew txn committed (new logical deadline)."""

    def _committed_terminal(self, tenant: bytes, run: int, shard: int) -> None:
        """A complete or park txn committed (leased Active → terminal)."""

    def _committed_split_replace(self, tenant: bytes, run: int, parent: int,
                                 children: tuple[int, ...]) -> None:
        """A split_replace txn committed."""

    def _committed_split_residual(self, tenant: bytes, run: int, parent: int, residual: int) -> None:
        """A split_residual txn committed."""

    def _committed_unpark(self, tenant: bytes, run: int, shard: int) -> None:
        """An unpark txn committed (Parked → Active, unleased)."""

    def _cas_failed(self, op: str, tenant: bytes, run: int, shard: int) -> None:
        """A guarded txn's compare failed (nothing was applied)."""

    def _lease_revoked(self, tenant: bytes, run: int, shard: int, lease_id: int,
                       prior: bool, ok: bool) -> None:
        """A best-effort revocation ran: of the prior owner's lease after a committed
        acquire (prior=True) or of a just-granted lease after a failed compare."""

    # ------------------------------------------------------------------ helpers

    def _owner_compares(self, owner_key: bytes, owner: Optional[OwnerKey]) -> list[Compare]:
        """§1.5: owner present (version > 0, value ==, lease ==) or owner absent."""
        if owner is None:
            return [Compare(owner_key, CompareTarget.VERSION, CompareResult.EQUAL, 0)]
        return [Compare(owner_key, CompareTarget.VERSION, CompareResult.GREATER, 0),
                Compare(owner_key, CompareTarget.VALUE, CompareResult.EQUAL, owner.value),
                Compare(owner_key, CompareTarget.LEASE, CompareResult.EQUAL, owner.lease_id)]

    def _guard(self, tenant: bytes, run: int, loaded: LoadedShard) -> list[Compare]:
        """The 4-compare lease guard: shard mod_revision + the owner compares."""
        shard = loaded.record.shard
        rev = Compare(self._keys.shard_key(tenant, run, shard), CompareTarget.MOD,
                      CompareResult.EQUAL, loaded.mod_revision)
        return [rev] + self._owner_compares(self._keys.owner_key(tenant, run, shard), loaded.owner)

    def _grant_lease(self) -> int:
        self._lease_ordinal += 1
        base = self._options.lease_id_base
        explicit = base + self._lease_ordinal if base else 0
        return self._kv.lease_grant(self._options.owner_lease_ttl_secs, explicit).id

    def _revoke_best_effort(self, tenant: bytes, run: int, shard: int, lease_id: int,
                            prior: bool) -> None:
        if lease_id <= 0:
            return
        ok = not (self.revoke_fault is not None and self.revoke_fault(lease_id))
        if ok:
            try:
                self._kv.lease_revoke(lease_id)
            except EtcdError:
                ok = False  # "will expire via TTL"
        self._lease_revoked(tenant, run, shard, lease_id, prior, ok)

    def _keep_alive_best_effort(self, lease_id: int) -> None:
        try:
            self._kv.lease_keep_alive(lease_id)  # a TTL <= 0 answer is a logged failure
        except EtcdError:
            pass

    def _interfere(self, op: str, key: bytes, attempt: int) -> None:
        if self.interferer is not None:
            self.interferer(op, key, attempt)

    def _attempts(self) -> range:
        return range(self._options.optimistic_txn_retries)

    def _put_shard(self, rec: ShardRecord) -> PutOp:
        return PutOp(self._keys.shard_key(rec.tenant, rec.run, rec.shard), encode_shard(rec))

    def _marker(self, tenant: bytes, run: int, shard: int) -> PutOp:
        return PutOp(self._keys.shard_marker_key(tenant, run, shard), b"")

    def _absent(self, key: bytes) -> Compare:
        return Compare(key, CompareTarget.VERSION, CompareResult.EQUAL, 0)

    def _op_entry(self, op_id: int, kind: OpKind, digest: int, now: int) -> OpLogEntry:
        return OpLogEntry(op_id, kind, OpResult.COMPLETED, digest, max(now, 1))

    # ------------------------------------------------------------------ runs

    def create_run(self, tenant: bytes, run: int, config: RunConfig) -> RunRecord:
        """Create an Initializing run; RunAlreadyExists when the run key exists."""
        check_u64("lease_duration_ns", config.lease_duration_ns)
        now = self._clock()
        key = self._keys.run_key(tenant, run)
        rec = RunRecord(tenant, run, config, RunStatus.INITIALIZING, now, None, (), ())
        resp = self._kv.txn([self._absent(key)], [PutOp(key, encode_run(rec))])
        if not resp.succeeded:
            raise RunAlreadyExists(run)
        return rec

    def register_shards(self, tenant: bytes, run: int, shards: Sequence[ShardManifestEntry],
                        op_id: int) -> IdempotentOutcome:
        """Register the run's root shards (all Active, unleased); run → Active."""
        if len(shards) > MAX_SHARDS_PER_ETCD_TXN:
            raise ResourceExhausted("etcd_txn_ops")
        shards = tuple(shards)
        digest = payload_hash(OpKind.REGISTER, shards)
        now = self._clock()
        for attempt in self._attempts():
            loaded = self._check_register(tenant, run, shards, op_id, digest)
            if isinstance(loaded, IdempotentOutcome):
                return loaded
            compares, ops = self._register_txn(loaded, shards, op_id, digest, now)
            self._interfere("register_shards", self._keys.run_key(tenant, run), attempt)
            if self._kv.txn(compares, ops).succeeded:
                ids = tuple(e.shard for e in shards)
                self._committed_register(tenant, run, ids)
                return IdempotentOutcome(False, ids)
            self._cas_failed("register_shards", tenant, run, 0)
        loaded = self._check_register(tenant, run, shards, op_id, digest)
        if isinstance(loaded, IdempotentOutcome):
            return loaded
        for entry in shards:
            if self._kv.get(self._keys.shard_key(tenant, run, entry.shard)).count:
                raise corruption("register_shards", f"shard key {entry.shard:016x} already exists")
        raise ContentionNotConverged("register_shards")

    def _check_register(self, tenant: bytes, run: int, shards: tuple[ShardManifestEntry, ...],
                        op_id: int, digest: int) -> LoadedRun | IdempotentOutcome:
        loaded = self._require_run(tenant, run)
        if find_op(loaded.record.op_log, op_id, digest) is not None:
            return IdempotentOutcome(True, loaded.record.root_shards)
        if loaded.record.status is not RunStatus.INITIALIZING:
            raise WrongRunStatus(loaded.record.status)
        reason = manifest_error(shards)
        if reason is not None:
            raise InvalidManifest(reason)
        return loaded

    def _register_txn(self, loaded: LoadedRun, shards: tuple[ShardManifestEntry, ...],
                      op_id: int, digest: int, now: int) -> tuple[list[Compare], list[Op]]:
        run_rec = loaded.record
        tenant, run = run_rec.tenant, run_rec.run
        new_run = attrs.evolve(run_rec, status=RunStatus.ACTIVE,
                               root_shards=tuple(e.shard for e in shards),
                               op_log=push_op(run_rec.op_log,
                                              self._op_entry(op_id, OpKind.REGISTER, digest, now)))
        run_key = self._keys.run_key(tenant, run)
        compares = [Compare(run_key, CompareTarget.MOD, CompareResult.EQUAL, loaded.mod_revision)]
        compares += [self._absent(self._keys.shard_key(tenant, run, e.shard)) for e in shards]
        ops: list[Op] = [PutOp(run_key, encode_run(new_run))]
        for e in shards:
            ops += [self._put_shard(new_shard(tenant, run, e.shard, e.spec, None)),
                    self._marker(tenant, run, e.shard)]
        ops.append(PutOp(self._keys.run_marker_key(tenant, run), b""))
        return compares, ops

    # ------------------------------------------------------------------ acquire / claim

    def acquire_and_restore_into(self, tenant: bytes, run: int, shard: int,
                                 worker: int) -> AcquireResult:
        """Take the lease of an Active shard without a live owner (fence + 1)."""
        check_u64("worker", worker)
        return self._acquire(self._clock(), tenant, run, shard, worker)

    def _acquire(self, now: int, tenant: bytes, run: int, shard: int, worker: int) -> AcquireResult:
        for attempt in self._attempts():
            loaded = self._check_acquire(now, tenant, run, shard)
            run_rec = self._load_run(tenant, run)
            if run_rec is None:
                raise corruption("acquire.load_run", "shard exists but its run record is missing")
            deadline = sat_add_u64(now, run_rec.record.config.lease_duration_ns)
            new_lease = self._grant_lease()
            record = attrs.evolve(loaded.record, fence_epoch=loaded.record.fence_epoch + 1,
                                  lease=LeaseHolder(worker, deadline))
            ops = [self._put_shard(record),
                   PutOp(self._keys.owner_key(tenant, run, shard),
                         encode_owner(worker, record.fence_epoch), new_lease)]
            self._interfere("acquire", self._keys.shard_key(tenant, run, shard), attempt)
            if self._kv.txn(self._guard(tenant, run, loaded), ops).succeeded:
                return self._after_acquire(now, loaded, record, deadline)
            self._revoke_best_effort(tenant, run, shard, new_lease, prior=False)
            self._cas_failed("acquire", tenant, run, shard)
        self._check_acquire(now, tenant, run, shard)
        raise ContentionNotConverged("acquire")

    def _check_acquire(self, now: int, tenant: bytes, run: int, shard: int) -> LoadedShard:
        loaded = self._load_shard(tenant, run, shard)
        if loaded is None:
            raise ShardNotFound(run, shard)
        rec = loaded.record
        if rec.tenant != tenant:
            raise TenantMismatch(tenant)
        if rec.status is not ShardStatus.ACTIVE:
            raise ShardTerminal(run, shard, rec.status)
        if is_owner_live(rec, loaded.owner is not None, now):
            assert rec.lease is not None
            raise AlreadyLeased(rec.lease.owner, rec.lease.deadline)
        return loaded

    def _after_acquire(self, now: int, loaded: LoadedShard, record: ShardRecord,
                       deadline: int) -> AcquireResult:
        tenant, run, shard = record.tenant, record.run, record.shard
        self._committed_acquire(tenant, run, shard, deadline)
        if loaded.owner is not None:
            self._revoke_best_effort(tenant, run, shard, loaded.owner.lease_id, prior=True)
        assert record.lease is not None
        lease = Lease(tenant, run, shard, record.lease.owner, record.fence_epoch, deadline)
        snapshot = ShardSnapshot(record.spec, record.cursor, record.spawned, record.status,
                                 record.parent)
        return AcquireResult(lease, snapshot, self._capacity(tenant, run, now))

    def claim_next_available(self, tenant: bytes, run: int, worker: int) -> AcquireResult:
        """Acquire some available shard of the run (default_claim_next_available)."""
        check_u64("worker", worker)
        now = self._clock()
        self._require_run(tenant, run)
        candidates, earliest = self._claim_candidates(tenant, run, now)
        for i in range(len(candidates)):
            shard = candidates[(worker % len(candidates) + i) % len(candidates)]
            try:
                return self._acquire(now, tenant, run, shard, worker)
            except AlreadyLeased as exc:
                earliest = exc.lease_deadline if earliest is None else min(earliest,
                                                                           exc.lease_deadline)
            except (ShardTerminal, ShardNotFound):
                continue
        raise NoneAvailable(earliest)

    def capacity_hint(self, tenant: bytes, run: int) -> CapacityHint:
        """The run's CapacityHint now (RunNotFound when the run does not exist)."""
        now = self._clock()
        self._require_run(tenant, run)
        return self._capacity(tenant, run, now)

    # ------------------------------------------------------------------ lease-gated ops

    def _validate_lease(self, now: int, tenant: bytes, lease: Lease, loaded: LoadedShard) -> None:
        """tenant → terminal → fence → expiry → owner binding."""
        rec = loaded.record
        if lease.tenant != tenant or rec.tenant != tenant:
            raise TenantMismatch(tenant)
        if rec.status is not ShardStatus.ACTIVE:
            raise ShardTerminal(rec.run, rec.shard, rec.status)
        holder = rec.lease
        if lease.fence != rec.fence_epoch or holder is None or holder.owner != lease.owner:
            raise StaleFence(lease.fence, rec.fence_epoch)
        if now >= holder.deadline:
            raise LeaseExpired(holder.deadline, now)
        owner = loaded.owner
        if owner is None or (owner.worker, owner.fence) != (lease.owner, lease.fence):
            raise StaleFence(lease.fence, rec.fence_epoch)

    def _load_for_lease(self, lease: Lease) -> LoadedShard:
        loaded = self._load_shard(lease.tenant, lease.run, lease.shard)
        if loaded is None:
            raise ShardNotFound(lease.run, lease.shard)
        return loaded

    def renew(self, tenant: bytes, lease: Lease) -> RenewResult:
        """Extend the logical deadline (fence and owner key unchanged), keep-alive after."""
        now = self._clock()
        for attempt in self._attempts():
            loaded = self._load_for_lease(lease)
            self._validate_lease(now, tenant, lease, loaded)
            run_rec = self._require_run_for(lease, "renew.load_run")
            deadline = sat_add_u64(now, run_rec.config.lease_duration_ns)
            record = attrs.evolve(loaded.record, lease=LeaseHolder(lease.owner, deadline))
            self._interfere("renew", self._shard_key_of(lease), attempt)
            if self._kv.txn(self._guard(lease.tenant, lease.run, loaded),
                            [self._put_shard(record)]).succeeded:
                self._committed_renew(lease.tenant, lease.run, lease.shard, deadline)
                assert loaded.owner is not None
                self._keep_alive_best_effort(loaded.owner.lease_id)
                return RenewResult(deadline, self._capacity(lease.tenant, lease.run, now))
            self._cas_failed("renew", lease.tenant, lease.run, lease.shard)
        self._validate_lease(now, tenant, lease, self._load_for_lease(lease))
        raise ContentionNotConverged("renew")

    def _require_run_for(self, lease: Lease, operation: str) -> RunRecord:
        loaded = self._load_run(lease.tenant, lease.run)
        if loaded is None:
            raise corruption(operation, "shard exists but its run record is missing")
        return loaded.record

    def _shard_key_of(self, lease: Lease) -> bytes:
        return self._keys.shard_key(lease.tenant, lease.run, lease.shard)

    def _lease_gated(self, op: str, tenant: bytes, lease: Lease, kind: OpKind, payload: Any,
                     op_id: int, build: Callable[[int, LoadedShard, OpLogEntry], tuple[
                         list[Compare], list[Op], Any]],
                     on_commit: Callable[[Any], None], replay: Callable[[LoadedShard], Any],
                     probe: Callable[[LoadedShard], None] = lambda _: None
                     ) -> IdempotentOutcome:
        """The shared loop of checkpoint / complete / park / splits: replay, validate, CAS."""
        digest = payload_hash(kind, payload)
        now = self._clock()
        for attempt in self._attempts():
            loaded = self._load_for_lease(lease)
            if find_op(loaded.record.op_log, op_id, digest) is not None:
                return IdempotentOutcome(True, replay(loaded))
            self._validate_lease(now, tenant, lease, loaded)
            entry = self._op_entry(op_id, kind, digest, now)
            extra_compares, ops, value = build(now, loaded, entry)
            self._interfere(op, self._shard_key_of(lease), attempt)
            compares = self._guard(lease.tenant, lease.run, loaded) + extra_compares
            if self._kv.txn(compares, ops).succeeded:
                on_commit(value)
                return IdempotentOutcome(False, value)
            self._cas_failed(op, lease.tenant, lease.run, lease.shard)
        loaded = self._load_for_lease(lease)
        if find_op(loaded.record.op_log, op_id, digest) is not None:
            return IdempotentOutcome(True, replay(loaded))
        self._validate_lease(now, tenant, lease, loaded)
        build(now, loaded, self._op_entry(op_id, kind, digest, now))  # re-raises validation errors
        probe(loaded)
        raise ContentionNotConverged(op)

    def _probe_children(self, lease: Lease, ids: Iterable[int]) -> None:
        """The exhaustion path of the splits: a derived child key that exists is a collision."""
        for child in ids:
            if self._kv.get(self._keys.shard_key(lease.tenant, lease.run, child)).count:
                raise DerivedIdCollision(child)

    def checkpoint(self, tenant: bytes, lease: Lease, cursor: Cursor, op_id: int) -> IdempotentOutcome:
        """Advance the cursor (monotonic, in range) under the lease guard."""
        def build(now: int, loaded: LoadedShard, entry: OpLogEntry) -> tuple[list[Compare], list[Op], Any]:
            rec = loaded.record
            validate_cursor(rec.spec, rec.cursor, cursor, "checkpoint")
            new = attrs.evolve(rec, cursor=cursor, op_log=push_op(rec.op_log, entry))
            return [], [self._put_shard(new)], None

        return self._lease_gated("checkpoint", tenant, lease, OpKind.CHECKPOINT, cursor, op_id,
                                 build, lambda _: None, lambda _: None)

    def complete(self, tenant: bytes, lease: Lease, final_cursor: Cursor,
                 op_id: int) -> IdempotentOutcome:
        """Active → Done with the final cursor; lease released (owner key, marker deleted)."""
        def build(now: int, loaded: LoadedShard, entry: OpLogEntry) -> tuple[list[Compare], list[Op], Any]:
            rec = loaded.record
            validate_cursor(rec.spec, rec.cursor, final_cursor, "complete")
            new = attrs.evolve(rec, status=ShardStatus.DONE, lease=None, cursor=final_cursor,
                               op_log=push_op(rec.op_log, entry))
            return [], self._terminal_ops(new), None

        return self._lease_gated(
            "complete", tenant, lease, OpKind.COMPLETE, final_cursor, op_id, build,
            lambda _: self._committed_terminal(lease.tenant, lease.run, lease.shard),
            lambda _: None)

    def park_shard(self, tenant: bytes, lease: Lease, reason: ParkReason,
                   op_id: int) -> IdempotentOutcome:
        """Active → Parked with a reason; lease released (owner key, marker deleted)."""
        def build(now: int, loaded: LoadedShard, entry: OpLogEntry) -> tuple[list[Compare], list[Op], Any]:
            rec = loaded.record
            new = attrs.evolve(rec, status=ShardStatus.PARKED, park_reason=reason, lease=None,
                               op_log=push_op(rec.op_log, entry))
            return [], self._terminal_ops(new), None

        return self._lease_gated(
            "park_shard", tenant, lease, OpKind.PARK, reason, op_id, build,
            lambda _: self._committed_terminal(lease.tenant, lease.run, lease.shard),
            lambda _: None)

    def _terminal_ops(self, rec: ShardRecord) -> list[Op]:
        tenant, run, shard = rec.tenant, rec.run, rec.shard
        return [self._put_shard(rec), DeleteOp(self._keys.owner_key(tenant, run, shard)),
                DeleteOp(self._keys.shard_marker_key(tenant, run, shard))]

    def split_replace(self, tenant: bytes, lease: Lease, children: Sequence[ShardSpec],
                      op_id: int) -> IdempotentOutcome:
        """Parent → Split, replaced by N ≥ 2 Active unleased children tiling its range."""
        children = tuple(children)

        def build(now: int, loaded: LoadedShard, entry: OpLogEntry) -> tuple[list[Compare], list[Op], Any]:
            rec = loaded.record
            limit = self._options.max_children_per_op
            if len(children) > limit:
                raise BackendChildLimitExceeded(len(children), limit)
            reason = tiling_error(rec.spec, children)
            if reason is not None:
                raise SplitInvalid(reason)
            ordered = sorted(children, key=lambda c: c.key_range_start)
            ids = tuple(derive_child_id(rec.run, rec.shard, op_id, "child", len(rec.spawned) + i)
                        for i in range(len(ordered)))
            parent = attrs.evolve(rec, status=ShardStatus.SPLIT, lease=None,
                                  spawned=rec.spawned + ids, op_log=push_op(rec.op_log, entry))
            compares = [self._absent(self._keys.shard_key(rec.tenant, rec.run, c)) for c in ids]
            ops = self._terminal_ops(parent)
            for child, spec in zip(ids, ordered):
                ops += [self._put_shard(new_shard(rec.tenant, rec.run, child, spec, rec.shard)),
                        self._marker(rec.tenant, rec.run, child)]
            return compares, ops, ids

        return self._lease_gated(
            "split_replace", tenant, lease, OpKind.SPLIT_REPLACE, children, op_id, build,
            lambda ids: self._committed_split_replace(lease.tenant, lease.run, lease.shard, ids),
            lambda loaded: loaded.record.spawned[len(loaded.record.spawned) - len(children):],
            lambda loaded: self._probe_children(lease, (
                derive_child_id(lease.run, lease.shard, op_id, "child",
                                len(loaded.record.spawned) + i) for i in range(len(children)))))

    def split_residual(self, tenant: bytes, lease: Lease, plan: SplitResidualPlan,
                       op_id: int) -> IdempotentOutcome:
        """Narrow the parent (still Active, still leased) and create one residual shard."""
        def build(now: int, loaded: LoadedShard, entry: OpLogEntry) -> tuple[list[Compare], list[Op], Any]:
            rec = loaded.record
            reason = residual_error(rec, plan)
            if reason is not None:
                raise SplitInvalid(reason)
            rid = derive_child_id(rec.run, rec.shard, op_id, "residual", len(rec.spawned))
            parent = attrs.evolve(rec, spec=plan.parent_new_spec, spawned=rec.spawned + (rid,),
                                  op_log=push_op(rec.op_log, entry))
            ops: list[Op] = [self._put_shard(parent),
                             self._put_shard(new_shard(rec.tenant, rec.run, rid, plan.residual_spec,
                                                       rec.shard)),
                             self._marker(rec.tenant, rec.run, rid)]
            return [self._absent(self._keys.shard_key(rec.tenant, rec.run, rid))], ops, rid

        def replay(loaded: LoadedShard) -> Optional[int]:
            rec = loaded.record
            for i in range(len(rec.spawned)):
                rid = derive_child_id(rec.run, rec.shard, op_id, "residual", i)
                if rid in rec.spawned:
                    return rid
            return None

        return self._lease_gated(
            "split_residual", tenant, lease, OpKind.SPLIT_RESIDUAL, plan, op_id, build,
            lambda rid: self._committed_split_residual(lease.tenant, lease.run, lease.shard, rid),
            replay,
            lambda loaded: self._probe_children(lease, [derive_child_id(
                lease.run, lease.shard, op_id, "residual", len(loaded.record.spawned))]))

    # ------------------------------------------------------------------ admin

    def unpark_shard(self, tenant: bytes, run: int, shard: int, op_id: int) -> IdempotentOutcome:
        """Admin: Parked → Active, unleased, fence + 1 (run must be Active)."""
        digest = payload_hash(OpKind.UNPARK, shard)
        now = self._clock()
        for attempt in self._attempts():
            checked = self._check_unpark(tenant, run, shard, op_id, digest)
            if isinstance(checked, IdempotentOutcome):
                return checked
            run_loaded, loaded = checked
            rec = loaded.record
            new = attrs.evolve(rec, fence_epoch=rec.fence_epoch + 1, park_reason=None,
                               status=ShardStatus.ACTIVE, lease=None,
                               op_log=push_op(rec.op_log, self._op_entry(op_id, OpKind.UNPARK,
                                                                         digest, now)))
            compares = [
                Compare(self._keys.shard_key(tenant, run, shard), CompareTarget.MOD,
                        CompareResult.EQUAL, loaded.mod_revision),
                Compare(self._keys.run_key(tenant, run), CompareTarget.MOD, CompareResult.EQUAL,
                        run_loaded.mod_revision),
                Compare(self._keys.run_marker_key(tenant, run), CompareTarget.VERSION,
                        CompareResult.GREATER, 0),
                self._absent(self._keys.owner_key(tenant, run, shard))]
            self._interfere("unpark_shard", self._keys.shard_key(tenant, run, shard), attempt)
            if self._kv.txn(compares, [self._put_shard(new),
                                       self._marker(tenant, run, shard)]).succeeded:
                self._committed_unpark(tenant, run, shard)
                return IdempotentOutcome(False, None)
            self._cas_failed("unpark_shard", tenant, run, shard)
        checked = self._check_unpark(tenant, run, shard, op_id, digest)
        if isinstance(checked, IdempotentOutcome):
            return checked
        raise BackendError("transient", "unpark_shard", "compare contention did not converge")

    def _check_unpark(self, tenant: bytes, run: int, shard: int, op_id: int, digest: int
                      ) -> tuple[LoadedRun, LoadedShard] | IdempotentOutcome:
        run_loaded = self._require_run(tenant, run)
        status = run_loaded.record.status
        if status.is_terminal:
            raise RunTerminal(status)
        if status is not RunStatus.ACTIVE:
            raise corruption("unpark_shard", f"run is {status}, expected Active")
        loaded = self._load_shard(tenant, run, shard)
        if loaded is None:
            raise ShardNotFound(run, shard)
        if find_op(loaded.record.op_log, op_id, digest) is not None:
            return IdempotentOutcome(True, None)
        if loaded.record.status is not ShardStatus.PARKED:
            raise NotParked(loaded.record.status)
        return run_loaded, loaded

    # ------------------------------------------------------------------ observation

    def abstract(self) -> CapacityAbstract:
        """The decoded KV contents under the root prefix, plus every run's hint now."""
        now = self._clock()
        runs, shards, owners, shard_markers, run_markers, other = self._read_decoded(
            self._keys.tenants_prefix(), self._abstract_contents)
        hints = tuple((r.tenant, r.run, self._capacity(r.tenant, r.run, now)) for r in runs)
        return CapacityAbstract(runs, shards, owners, shard_markers, run_markers, other, hints,
                                self._live_leases())

    def _abstract_contents(self, kvs: tuple[KeyValue, ...]) -> tuple[tuple[Any, ...], ...]:
        """Runs, shards, owners, shard markers, run markers and other keys, each sorted."""
        parts: dict[str, list[Any]] = {k: [] for k in
                                       ("run", "shard", "owner", "shard_marker", "run_marker", "other")}
        for kv in kvs:
            kind, ident = self._keys.classify(kv.key)
            parts[kind].append(self._abstract_item(kind, ident, kv))
        return (tuple(sorted(parts["run"], key=lambda r: (r.tenant, r.run))),
                tuple(sorted(parts["shard"], key=lambda s: (s.tenant, s.run, s.shard))),
                tuple(sorted(parts["owner"], key=lambda o: (o.tenant, o.run, o.shard))),
                tuple(sorted(parts["shard_marker"])), tuple(sorted(parts["run_marker"])),
                tuple(sorted(parts["other"])))

    def _abstract_item(self, kind: str, ident: tuple[Any, ...], kv: KeyValue) -> Any:
        if kind == "run":
            return decode_run(kv.value)
        if kind == "shard":
            return decode_shard(kv.value)
        if kind == "owner":
            worker, fence = decode_owner(kv.value)
            return OwnerRecord(*ident, worker, fence, self._relative_lease(kv.lease))
        if kind in ("shard_marker", "run_marker"):
            return ident
        return (kv.key, kv.value)

    def _relative_lease(self, lease_id: int) -> int:
        base = self._options.lease_id_base
        return lease_id - base if base and lease_id > base else lease_id

    def _live_leases(self) -> tuple[int, ...]:
        """Leases this coordinator granted that are still alive (relative ids)."""
        base, granted = self._options.lease_id_base, self._lease_ordinal
        ids = self._kv.lease_leases().leases
        if base:
            return tuple(i - base for i in ids if base < i <= base + granted)
        return tuple(ids)

    def check_invariants(self) -> None:
        """The model has no caches to check."""


# =========================================================================== record helpers


def new_shard(tenant: bytes, run: int, shard: int, spec: ShardSpec,
              parent: Optional[int]) -> ShardRecord:
    """A fresh Active, unleased shard at the initial fence."""
    return ShardRecord(tenant, run, shard, ShardStatus.ACTIVE, None, spec, Cursor(), None,
                       INITIAL_FENCE, parent, (), ())


def manifest_error(shards: Sequence[ShardManifestEntry]) -> Optional[str]:
    """Why a register_shards manifest is invalid, or None."""
    if not shards:
        return "empty manifest"
    ids = [e.shard for e in shards]
    if len(set(ids)) != len(ids):
        return "duplicate shard id"
    if any(not spec_is_valid(e.spec) for e in shards):
        return "inverted or empty key range"
    for shard in ids:
        check_u64("shard", shard)
    return None


def residual_error(rec: ShardRecord, plan: SplitResidualPlan) -> Optional[str]:
    """Why a split_residual plan does not split the parent's range in two, or None."""
    new, res = plan.parent_new_spec, plan.residual_spec
    if not (spec_is_valid(new) and spec_is_valid(res)) or new.key_range_end == b"":
        return "inverted or empty range"
    if new.key_range_start != rec.spec.key_range_start or res.key_range_end != rec.spec.key_range_end:
        return "plan does not cover the parent range"
    if new.key_range_end != res.key_range_start:
        return "gap or overlap between parent and residual"
    if rec.cursor.last_key is not None and not range_contains(new, rec.cursor.last_key):
        return "parent cursor outside the new parent range"
    return None


def check_owner_binding(record: ShardRecord, owner: Optional[OwnerKey]) -> None:
    """§1.4: an owner key requires a record lease with the same worker and fence."""
    if owner is None:
        return
    holder = record.lease
    if holder is None or holder.owner != owner.worker or record.fence_epoch != owner.fence:
        raise corruption("owner_binding", "owner key does not match the shard record")


def _kvs(resp: Any) -> tuple[KeyValue, ...]:
    assert isinstance(resp, RangeResponse)
    return resp.kvs


def _owner_from(kv: KeyValue) -> OwnerKey:
    try:
        worker, fence = decode_owner(kv.value)
    except (ValueError, KeyError, TypeError) as exc:
        raise corruption("owner", f"undecodable owner key: {exc}") from exc
    if kv.lease == 0:
        raise corruption("owner", "owner key without an etcd lease")
    return OwnerKey(worker, fence, kv.value, kv.lease)
