"""Reference model of net-mesh 0.25.0's replica, fork and standby groups and the DaemonRegistry.

What is modelled
----------------
semantics.md §2.3 "Groups", over the reference models of the group coordinator
(`model.group_coordinator`, which routes through `model.load_balancer`) and the
scheduler (`model.scheduler`):

- `DaemonRegistry`: the daemons the groups talk to, keyed by origin hash. A daemon's
  state is the tuple of event sequences it has applied (what the upstream tests'
  `StatefulDaemon` counts), so "applied twice" and "lost" are visible. Operations:
  `register` (duplicate → RegistryFailed), `unregister`, atomic `replace` (upsert of a
  fresh daemon), `snapshot` (state + `through_seq`), `restore`, `deliver`. The
  failure-injection hook `fail_next(op, skip)` makes the (skip+1)-th next `place`,
  `restore` or `deliver` fail once (a placement failure is asked of the registry's
  hook by the group, so one object carries every injected fault).
- `Group`: one group of kind "replica", "fork" or "standby" (upstream: three structs
  sharing a `GroupCoordinator`; here one class with a `kind`, so that one lockstep
  machine drives all three; kind-specific operations on the wrong kind raise
  InvalidConfig). Operations: `spawn` / `spawn_with_placement`, `scale_to` /
  `scale_to_with_placement` (replica and fork), `route_event`, `deliver`,
  `on_node_failure` / `on_node_failure_with_placement`, `on_node_recovery`,
  `try_recover` (at most 4 slots per tick), `sync_standbys`, `promote` /
  `promote_with_placement` (standby), `term`, `verify_lineage` (fork) and queries.

Decisions (where semantics.md is silent, the upstream source followed)
---------------------------------------------------------------------
Read for this model: net-mesh `compute/standby_group.rs` (spawn, sync_standbys,
promote, promote_with_placement, on_node_failure(_with_placement), try_recover_inner,
and its tests) and `compute/replica_group.rs` (spawn, scale_to, on_node_failure,
derive_replica_keypair), as found with the code search.

- Identities: group id = low 32 bits of xxh3_64(group_seed). A replica/standby
  member's secret = BLAKE2s-MAC keyed b"net-replica-v1" over seed‖index
  (`hashlib.blake2s(key=...)`, upstream `derive_replica_keypair`). Upstream derives an
  ed25519 keypair from the secret; here the entity id is BLAKE2s-MAC keyed
  b"net-entity-v1" over the secret and the origin hash is xxh3_64 of the entity id (a
  stand-in: deterministic, distinct per secret). ForkGroup secrets are 32 bytes from
  the injected rng (`getrandbits(256)`, one draw per fork, in index order) and each fork
  carries a ForkRecord (parent origin, fork index) that `verify_lineage` checks.
- `through_seq` of a snapshot is the highest event sequence the daemon has applied
  (upstream: the host's chain head, which equals it for the one-output-per-event
  daemon the upstream tests use).
- `spawn` / `scale_to`: each member placed with `place_with_spread` (or `place_member`
  for the *_with_placement variants) against the nodes already used, the chosen node
  inserted into the exclusion set inside the loop (§2.6 item 28); then
  `registry.register` and `add_member`. Errors propagate with `?` semantics: members
  registered before the failure stay registered and added (upstream). Scale-down pops
  from the top and unregisters. Standby groups do not scale.
- `on_node_failure(node)`: members on the node marked unhealthy; standby: if the active
  was there, `promote` first (its error propagates); then each affected slot (never
  the active) is placed BEFORE touching the registry (§2.6 item 29): a failed placement
  leaves the slot registered and unhealthy, a success `registry.replace`s a fresh
  daemon and calls `update_member_placement`; standby slots restart at
  synced_through 0, never synced. Returns the re-placed indices (upstream standby
  returns the new active instead; it is visible through `active_index`). The exclusion
  set is the failed node plus the nodes chosen in this call only (upstream), so a
  re-placed member MAY land on a node that hosts another member: the no-colocation
  guarantee (§2.6 item 28) is the spawn / scale_to loops', not a state invariant.
- `try_recover`: the first 4 unhealthy slots (standby: never the active — a fresh
  daemon would wipe its state, upstream `try_recover_skips_unhealthy_active…`),
  exclusion = nodes of healthy members plus every node chosen in this tick; `term` +1
  when any slot was recovered (X-1, §2.6 item 32).
- `deliver(registry, seq, ctx)`: route, then `registry.deliver`; a standby group
  buffers the event (upstream `on_event_delivered`) only when the delivery succeeded.
- `sync_standbys`: snapshot the active, restore every standby in index order, stop at
  the first failure; record `synced_through` for those that succeeded, the active's
  too; clear the buffer only if all succeeded (§2.6 item 31).
- `promote`: search first (§2.6 item 30): healthy standbys; prefer those that synced at
  least once, the highest `synced_through` (ties: the LAST such member, Rust
  `max_by_key`); none → NoHealthyMember with nothing changed. Then demote the old active
  (mark unhealthy), `term` +1 (saturating), replay buffered events with sequence >
  the new active's synced_through (delivery errors ignored, upstream `let _ =`), clear
  the buffer, set the new active's synced_through from its snapshot.
  `promote_with_placement` keeps the same roster (synced at the max, else all healthy)
  and lets `scheduler.select_promotion_target` choose among their nodes.

Hook: `_term` (both here and in the impl) may be re-seated by a harness, e.g. near
u64::MAX to reach the saturation; nothing else caches it.

Injected time and randomness: `clock` and `rng` go to the coordinator's load balancer;
ForkGroup keypairs draw from the same rng (draw protocol: one `getrandbits(256)` per fork
created, before its placement; the balancer's draws are the group coordinator's).

Left out: DaemonHost internals (chains, horizons: the daemon_host component), the
daemon factory (every daemon is the same stateful counter with empty requirements
unless `requirements` says otherwise), `last_sync` instants (a bool: synced at least
once), the Debug formatting, cross-node term fencing (upstream deferred it too).
"""
from __future__ import annotations

import hashlib
import random
from typing import Any, Callable, Optional

import attrs
import xxhash

from meshspec.clock import Clock, monotonic_clock
from model.group_coordinator import (
    GroupCoordinator,
    GroupHealth,
    InvalidConfig,
    MemberInfo,
    NoHealthyMember,
    PlacementFailed,
    RegistryFailed,
    check_u8,
    check_u64,
)
from model.load_balancer import LoadBalancerConfig, RequestContext, Strategy
from model.scheduler import Artifact, CapabilityFilter, PlacementFilter, TieBreakContext

U32_MASK = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
REPLICA_KEY = b"net-replica-v1"
ENTITY_KEY = b"net-entity-v1"
KINDS = ("replica", "fork", "standby")
FAULT_OPS = ("place", "restore", "deliver")
MAX_RECOVERIES_PER_TICK = 4
INJECTED = "injected failure"


# ---------------------------------------------------------------- identities


def group_id_of(seed: bytes) -> int:
    """Low 32 bits of xxh3_64(group_seed)."""
    return xxhash.xxh3_64_intdigest(seed) & U32_MASK


def derive_replica_secret(seed: bytes, index: int) -> bytes:
    """BLAKE2s-MAC keyed "net-replica-v1" over seed‖index (upstream `derive_replica_keypair`)."""
    return hashlib.blake2s(seed + bytes([check_u8("index", index)]), key=REPLICA_KEY).digest()


def entity_id_of(secret: bytes) -> bytes:
    """The 32-byte entity id of a secret (stand-in for the ed25519 public key)."""
    return hashlib.blake2s(secret, key=ENTITY_KEY).digest()


def origin_hash_of(secret: bytes) -> int:
    return xxhash.xxh3_64_intdigest(entity_id_of(secret))


def check_seed(seed: bytes) -> bytes:
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise ValueError(f"group seed must be 32 bytes, got {seed!r}")
    return seed


# ---------------------------------------------------------------- the daemon registry


@attrs.frozen
class Snapshot:
    """A daemon's state (applied event sequences) and the sequence it covers through."""

    origin_hash: int
    state: tuple[int, ...]
    through_seq: int


@attrs.frozen
class ForkRecord:
    """The lineage sentinel of a fork: the parent origin and the fork's index."""

    parent_origin: int
    fork_index: int


def not_registered(origin: int) -> RegistryFailed:
    return RegistryFailed(f"daemon {origin:#x} not registered")


class DaemonRegistry:
    """origin hash → daemon state; every fault the groups can meet is injected here."""

    def __init__(self) -> None:
        self._daemons: dict[int, tuple[int, ...]] = {}
        self._faults: dict[str, list[int]] = {op: [] for op in FAULT_OPS}  # skips before each failure

    # ---- failure injection
    def fail_next(self, op: str, skip: int = 0) -> None:
        """Make the (skip+1)-th next `op` ("place", "restore", "deliver") fail once."""
        if op not in FAULT_OPS or skip < 0:
            raise ValueError(f"unknown fault {op!r} (known: {', '.join(FAULT_OPS)}) or negative skip")
        self._faults[op].append(skip)

    def take_fault(self, op: str) -> bool:
        """One `op` call: True when an injected fault fires now; every other pending fault
        counts down (two faults due at once fire on two successive calls)."""
        pending = self._faults[op]
        fires = 0 in pending
        if fires:
            pending.remove(0)
        self._faults[op] = [s - 1 if s > 0 else s for s in pending]
        return fires

    def pending_faults(self, op: str) -> tuple[int, ...]:
        """The skips of the pending `op` faults (how many calls each still lets through)."""
        return tuple(sorted(self._faults[op]))

    # ---- daemons
    def register(self, origin: int) -> None:
        check_u64("origin", origin)
        if origin in self._daemons:
            raise RegistryFailed(f"daemon {origin:#x} already registered")
        self._daemons[origin] = ()

    def unregister(self, origin: int) -> bool:
        return self._daemons.pop(origin, None) is not None

    def replace(self, origin: int) -> None:
        """Atomic upsert of a fresh daemon: the slot is never empty."""
        self._daemons[check_u64("origin", origin)] = ()

    def snapshot(self, origin: int) -> Snapshot:
        if origin not in self._daemons:
            raise not_registered(origin)
        state = self._daemons[origin]
        return Snapshot(origin, state, max(state, default=0))

    def restore(self, origin: int, snapshot: Snapshot) -> None:
        if origin not in self._daemons:
            raise not_registered(origin)
        if self.take_fault("restore"):
            raise RegistryFailed(f"restore onto {origin:#x}: {INJECTED}")
        self._daemons[origin] = snapshot.state

    def deliver(self, origin: int, seq: int) -> None:
        check_u64("seq", seq)
        if origin not in self._daemons:
            raise not_registered(origin)
        if self.take_fault("deliver"):
            raise RegistryFailed(f"deliver to {origin:#x}: {INJECTED}")
        self._daemons[origin] = self._daemons[origin] + (seq,)

    def __contains__(self, origin: object) -> bool:
        return origin in self._daemons

    def count(self) -> int:
        return len(self._daemons)

    def state_of(self, origin: int) -> Optional[tuple[int, ...]]:
        return self._daemons.get(origin)

    def abstract(self) -> tuple:
        return (tuple(sorted(self._daemons.items())),
                tuple((op, tuple(sorted(self._faults[op]))) for op in FAULT_OPS))


# ---------------------------------------------------------------- placement


@attrs.frozen
class Placer:
    """How a group places a member: spread over the scheduler, or scored (`*_with_placement`)."""

    placement: Optional[PlacementFilter] = None
    tie_break: TieBreakContext = TieBreakContext()

    def place(self, coord_cls: Any, scheduler: Any, registry: DaemonRegistry,
              requirements: CapabilityFilter, exclude: set[int]) -> int:
        if registry.take_fault("place"):
            raise PlacementFailed(INJECTED)
        if self.placement is None:
            return coord_cls.place_with_spread(scheduler, requirements, frozenset(exclude)).node_id
        return coord_cls.place_member(scheduler, Artifact(), requirements, frozenset(exclude),
                                      self.placement, self.tie_break).node_id


SPREAD = Placer()


def last_max(items: list[int], key: Callable[[int], int]) -> Optional[int]:
    """Rust `max_by_key`: the LAST item with the greatest key, None when empty."""
    best: Optional[int] = None
    for item in items:
        if best is None or key(item) >= key(best):
            best = item
    return best


# ---------------------------------------------------------------- the group


class Group:
    """One replica, fork or standby group; every lookup is a scan of its members."""

    COORDINATOR: type = GroupCoordinator

    def __init__(self, kind: str, seed: bytes, *, strategy: Strategy = Strategy.ROUND_ROBIN,
                 requirements: CapabilityFilter = CapabilityFilter(), clock: Clock = monotonic_clock,
                 rng: Optional[random.Random] = None, lb_config: Optional[LoadBalancerConfig] = None,
                 parent_origin: int = 0) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown group kind {kind!r} (known: {', '.join(KINDS)})")
        self._kind = kind
        self._seed = check_seed(seed)
        self._group_id = group_id_of(seed)
        self._rng = rng if rng is not None else random.Random()
        # a standby group routes to its active only: the balancer is unused (round robin)
        lb_strategy = Strategy.ROUND_ROBIN if kind == "standby" else strategy
        self._coord = self.COORDINATOR(lb_strategy, clock=clock, rng=self._rng, lb_config=lb_config)
        self._requirements = requirements
        self._parent = check_u64("parent_origin", parent_origin)
        self._term = 1
        self._secrets: list[bytes] = []
        self._lineage: list[ForkRecord] = []
        self._active = 0
        self._synced_through: list[int] = []
        self._ever_synced: list[bool] = []
        self._buffer: list[int] = []

    # ---- construction
    @classmethod
    def spawn(cls, kind: str, count: int, seed: bytes, scheduler: Any, registry: DaemonRegistry,
              **options: Any) -> "Group":
        return cls._spawn(kind, count, seed, scheduler, registry, SPREAD, options)

    @classmethod
    def spawn_with_placement(cls, kind: str, count: int, seed: bytes, scheduler: Any,
                             registry: DaemonRegistry, placement: PlacementFilter,
                             tie_break: TieBreakContext, **options: Any) -> "Group":
        return cls._spawn(kind, count, seed, scheduler, registry, Placer(placement, tie_break), options)

    @classmethod
    def _spawn(cls, kind: str, count: int, seed: bytes, scheduler: Any, registry: DaemonRegistry,
               placer: Placer, options: dict) -> "Group":
        group = cls(kind, seed, **options)
        check_u8("count", count)
        if kind == "standby" and count < 2:
            raise InvalidConfig("standby group requires at least 2 members")
        if count == 0:
            raise InvalidConfig("replica_count must be > 0")
        group._grow(count, scheduler, registry, placer)
        return group

    def _used_nodes(self) -> set[int]:
        return {m.node_id for m in self._coord.members()}

    def _new_secret(self, index: int) -> bytes:
        if self._kind == "fork":
            return self._rng.getrandbits(256).to_bytes(32, "big")
        return derive_replica_secret(self._seed, index)

    def _grow(self, n: int, scheduler: Any, registry: DaemonRegistry, placer: Placer) -> None:
        used = self._used_nodes()
        for index in range(len(self._coord.members()), n):
            secret = self._new_secret(index)
            node = placer.place(self.COORDINATOR, scheduler, registry, self._requirements, used)
            used.add(node)
            origin = origin_hash_of(secret)
            registry.register(origin)
            self._coord.add_member(MemberInfo(index, origin, node, entity_id_of(secret), True))
            self._secrets.append(secret)
            self._lineage.append(ForkRecord(self._parent, index))
            self._synced_through.append(0)
            self._ever_synced.append(False)

    # ---- scaling (replica and fork)
    def scale_to(self, n: int, scheduler: Any, registry: DaemonRegistry) -> None:
        self._scale(n, scheduler, registry, SPREAD)

    def scale_to_with_placement(self, n: int, scheduler: Any, registry: DaemonRegistry,
                                placement: PlacementFilter, tie_break: TieBreakContext) -> None:
        self._scale(n, scheduler, registry, Placer(placement, tie_break))

    def _scale(self, n: int, scheduler: Any, registry: DaemonRegistry, placer: Placer) -> None:
        self._require("replica", "fork", op="scale_to")
        check_u8("n", n)
        if n == 0:
            raise InvalidConfig("replica_count must be > 0")
        if n > len(self._coord.members()):
            self._grow(n, scheduler, registry, placer)
        while len(self._coord.members()) > n:
            info = self._coord.remove_last()
            assert info is not None
            registry.unregister(info.origin_hash)
            for column in (self._secrets, self._lineage, self._synced_through, self._ever_synced):
                column.pop()

    def _require(self, *kinds: str, op: str) -> None:
        if self._kind not in kinds:
            raise InvalidConfig(f"{op} is not an operation of a {self._kind} group")

    # ---- routing and delivery
    def route_event(self, ctx: RequestContext) -> int:
        if self._kind == "standby":
            return self._coord.members()[self._active].origin_hash
        return self._coord.route_event(ctx)

    def deliver(self, registry: DaemonRegistry, seq: int, ctx: RequestContext = RequestContext()) -> int:
        origin = self.route_event(ctx)
        registry.deliver(origin, seq)
        if self._kind == "standby":
            self._buffer.append(seq)
        return origin

    # ---- failures and recovery
    def on_node_failure(self, node: int, scheduler: Any, registry: DaemonRegistry) -> list[int]:
        return self._on_failure(node, scheduler, registry, SPREAD)

    def on_node_failure_with_placement(self, node: int, scheduler: Any, registry: DaemonRegistry,
                                       placement: PlacementFilter, tie_break: TieBreakContext) -> list[int]:
        return self._on_failure(node, scheduler, registry, Placer(placement, tie_break))

    def _on_failure(self, node: int, scheduler: Any, registry: DaemonRegistry, placer: Placer) -> list[int]:
        check_u64("node", node)
        affected = self._coord.members_on_node(node)
        for index in affected:
            self._coord.mark_unhealthy(index)
        if self._kind == "standby" and self._active in affected:
            self._promote(registry, scheduler, placer)
        exclude, replaced = {node}, []
        for index in affected:
            if self._kind == "standby" and index == self._active:
                continue
            try:
                new_node = placer.place(self.COORDINATOR, scheduler, registry, self._requirements, exclude)
            except PlacementFailed:
                continue  # the slot stays registered and unhealthy, for later recovery
            self._replace_slot(index, new_node, registry)
            exclude.add(new_node)
            replaced.append(index)
        return replaced

    def _replace_slot(self, index: int, node: int, registry: DaemonRegistry) -> None:
        secret = self._secrets[index]
        registry.replace(origin_hash_of(secret))
        self._coord.update_member_placement(index, node, entity_id_of(secret))
        self._synced_through[index] = 0
        self._ever_synced[index] = False

    def on_node_recovery(self, node: int, registry: DaemonRegistry) -> None:
        self._coord.on_node_recovery(node, registry)

    def try_recover(self, scheduler: Any, registry: DaemonRegistry) -> list[int]:
        unhealthy = [m.index for m in self._coord.members()
                     if not m.healthy and not (self._kind == "standby" and m.index == self._active)]
        unhealthy = unhealthy[:MAX_RECOVERIES_PER_TICK]
        exclude = {m.node_id for m in self._coord.members() if m.healthy}
        recovered = []
        for index in unhealthy:
            try:
                node = SPREAD.place(self.COORDINATOR, scheduler, registry, self._requirements, exclude)
            except PlacementFailed:
                continue
            self._replace_slot(index, node, registry)
            exclude.add(node)
            recovered.append(index)
        if recovered:
            self._bump_term()
        return recovered

    def _bump_term(self) -> None:
        self._term = min(self._term + 1, U64_MAX)

    # ---- standby: sync and promote
    def sync_standbys(self, registry: DaemonRegistry) -> int:
        self._require("standby", op="sync_standbys")
        members = self._coord.members()
        snapshot = registry.snapshot(members[self._active].origin_hash)
        succeeded: list[int] = []
        error: Optional[RegistryFailed] = None
        for index in range(len(members)):
            if index == self._active:
                continue
            try:
                registry.restore(members[index].origin_hash, snapshot)
            except RegistryFailed as exc:
                error = exc
                break
            succeeded.append(index)
        for index in succeeded + [self._active]:
            self._synced_through[index] = snapshot.through_seq
        for index in succeeded:
            self._ever_synced[index] = True
        if error is not None:
            raise error
        self._buffer.clear()
        return snapshot.through_seq

    def promote(self, registry: DaemonRegistry, scheduler: Any = None) -> int:
        self._require("standby", op="promote")
        return self._promote(registry, scheduler, SPREAD)

    def promote_with_placement(self, registry: DaemonRegistry, scheduler: Any,
                               placement: PlacementFilter, tie_break: TieBreakContext) -> int:
        self._require("standby", op="promote")
        return self._promote(registry, scheduler, Placer(placement, tie_break))

    def _roster(self) -> list[int]:
        """Healthy standbys; those synced at least once if any (at their highest synced_through)."""
        members = self._coord.members()
        healthy = [i for i in range(len(members)) if i != self._active and members[i].healthy]
        synced = [i for i in healthy if self._ever_synced[i]]
        return synced or healthy

    def _promote(self, registry: DaemonRegistry, scheduler: Any, placer: Placer) -> int:
        roster = self._roster()
        if placer.placement is None:
            best = last_max(roster, lambda i: self._synced_through[i])
        else:
            best = self._scored_pick(roster, scheduler, placer)
        if best is None:
            raise NoHealthyMember()
        self._coord.mark_unhealthy(self._active)
        self._active = best
        self._bump_term()
        origin = self._coord.members()[best].origin_hash
        for seq in self._to_replay(self._synced_through[best]):
            try:
                registry.deliver(origin, seq)
            except RegistryFailed:
                pass  # upstream `let _ = registry.deliver(..)`
        self._buffer.clear()
        try:
            self._synced_through[best] = registry.snapshot(origin).through_seq
        except RegistryFailed:
            pass  # upstream `if let Ok(Some(snapshot))`
        return origin

    def _to_replay(self, synced_through: int) -> list[int]:
        """Buffered events strictly past `synced_through`, in buffer order."""
        return [seq for seq in self._buffer if seq > synced_through]

    def _scored_pick(self, roster: list[int], scheduler: Any, placer: Placer) -> Optional[int]:
        if not roster:
            return None
        top = max(self._synced_through[i] for i in roster)
        if self._ever_synced[roster[0]]:
            roster = [i for i in roster if self._synced_through[i] == top]
        members = self._coord.members()
        node = scheduler.select_promotion_target([members[i].node_id for i in roster], Artifact(),
                                                 placer.placement, placer.tie_break)
        return next((i for i in roster if members[i].node_id == node), None)

    # ---- fork lineage
    def verify_lineage(self) -> bool:
        self._require("fork", op="verify_lineage")
        return all(r == ForkRecord(self._parent, i) for i, r in enumerate(self._lineage))

    # ---- queries
    def kind(self) -> str:
        return self._kind

    def group_id(self) -> int:
        return self._group_id

    def term(self) -> int:
        return self._term

    def members(self) -> list[MemberInfo]:
        return self._coord.members()

    def health(self) -> GroupHealth:
        return self._coord.health()

    def member_count(self) -> int:
        return self._coord.member_count()

    def healthy_count(self) -> int:
        return self._coord.healthy_count()

    def active_index(self) -> int:
        self._require("standby", op="active_index")
        return self._active

    def synced_through(self, index: int) -> Optional[int]:
        return self._synced_through[index] if 0 <= index < len(self._synced_through) else None

    def ever_synced(self, index: int) -> Optional[bool]:
        return self._ever_synced[index] if 0 <= index < len(self._ever_synced) else None

    def buffered_events(self) -> list[int]:
        return list(self._buffer)

    # ---- observation
    def abstract(self) -> tuple:
        return (self._kind, self._group_id, self._term, self._coord.abstract(), tuple(self._secrets),
                tuple(self._lineage), self._active, tuple(self._synced_through),
                tuple(self._ever_synced), tuple(self._buffer))

    def check_invariants(self) -> None:
        """The model keeps no derived state."""
