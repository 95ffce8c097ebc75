"""Reference model of net-mesh 0.25.0 `compute/group_coord.rs` (the `GroupCoordinator`).

What is modelled
----------------
The coordinator that replica and fork groups share (semantics.md §2.3): the member list
(`MemberInfo`), the load balancer it routes events through (the load balancer
component, `model.load_balancer.LoadBalancer`, one endpoint per member keyed by the
member's 32-byte entity id, default settings: weight 100, Healthy, no zone, no tags),
health flags and the aggregate `GroupHealth`, placement updates after a failure, node
recovery against a registry of live origins, and the two placement helpers over the
scheduler component (`place_with_spread`, `place_member`).

The model is the specification: every lookup and every count is a linear scan over the
members, nothing is cached.

Decisions (where the sources are silent, or where this spec chooses)
--------------------------------------------------------------------
- `route_event` never releases its connection slot (0.25.0, still true at HEAD; §2.3 and
  §4 "connections leak on route_event"). This model keeps it FAITHFULLY: every routed
  event permanently consumes one LB connection slot of the chosen member, so a member
  serves at most `max_connections_per_endpoint` events per endpoint lifetime (until
  `update_member_placement` re-creates its endpoint), after which it is filtered out and
  a group whose healthy members are all saturated answers `NoHealthyMember` while
  `health()` still says Healthy. The properties expose this with the invariant
  `route_slots_never_released` and the witness `slot_leak_starves_healthy_group`; the
  fixed behaviour (releasing the slot) is a mutant there. Why faithful: the spec
  describes what 0.25.0 does, the leak is an observation of the real code (not a
  documented bug with an upstream fix to adopt), and a caller that depends on it being
  fixed must see that it is not.
- The LB is constructed as `LoadBalancerConfig(strategy=strategy)` (Rust
  `LoadBalancer::with_strategy`); `lb_config` lets a caller shrink
  `max_connections_per_endpoint` so the leak is reachable in a short run (its `strategy`
  is replaced by the `strategy` argument).
- `add_member` registers the LB endpoint as Healthy whatever `info.healthy` says (as
  0.25.0: `Endpoint::new`); a member added with `healthy=False` is therefore routable
  until `mark_unhealthy`. Faithful; the properties witness it.
- Entity ids must be unique among the members (they are public keys of distinct
  keypairs in every group). 0.25.0 does not check: a duplicate silently overwrites the
  LB endpoint and the reverse-index entry, and removing either holder drops both, which
  no scan over the members can reproduce. Here `add_member` and
  `update_member_placement` raise `InvalidConfig` for an entity id held by ANOTHER
  member (a deliberate, documented deviation; re-placing a member onto its own entity
  id is allowed and re-creates its endpoint).
- `mark_healthy` / `mark_unhealthy` / `update_member_placement` act on the member at
  position `index` only if that member's `index` field equals it (#158's dense-index
  guard); any other index is a silent no-op. Duplicate or out-of-order `index` fields
  are accepted by `add_member` (as in Rust) and simply make those members unreachable
  by index.
- `origin_hash_for_entity_id` is private in Rust (`fn`); it is public here so that the
  lookup the reverse index (#152) accelerates can be checked and benchmarked.
- `place_with_spread` returns a `SpreadPlacement`: a `PlacementDecision` with the
  0.25.0 `node_id` and `reason` plus `narrowed_by_exclusion` (#166): True exactly when
  the scheduler's primary choice was excluded and the first non-excluded candidate was
  taken (reason FirstMatch). Scheduler errors become `PlacementFailed(their text)`.
- Integer widths: `index` u8, `origin_hash` / `node_id` u64 (values outside raise
  `ValueError`, Rust's types make them unrepresentable); `member_count`,
  `healthy_count` and the `Degraded` fields saturate at 255; `health()` compares the
  full counts before saturating (a 256-member group with 255 healthy is
  `Degraded{255, 255}`, not Healthy).

Injected time and randomness: `clock` and `rng` are handed to the load balancer, which
is the only consumer. Draw protocol: the coordinator draws nothing itself; the only
draws are the balancer's, inside `route_event` (see `model.load_balancer`: Random and
WeightedRandom one draw, PowerOfTwo two draws, per select).

Left out: the groups themselves (ReplicaGroup, ForkGroup, StandbyGroup: terms, keypair
derivation, scale_to's exclusion loop, on_node_failure, promote, sync); the
DaemonRegistry beyond `origin in registry`; `RegistryFailed` is defined but never raised
(no daemon errors here); the Debug formatting of the coordinator.
"""
from __future__ import annotations

import random
from typing import Any, Collection, Container, Optional

import attrs

from meshspec.clock import Clock, monotonic_clock
from model.load_balancer import (
    Endpoint,
    HealthStatus,
    LoadBalancer,
    LoadBalancerConfig,
    LoadBalancerError,
    RequestContext,
    Strategy,
    node_id_debug,
)
from model.scheduler import (
    Artifact,
    CapabilityFilter,
    PlacementDecision,
    PlacementFilter,
    PlacementReason,
    SchedulerError,
    TieBreakContext,
)

U8_MAX = 0xFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
ALL_EXCLUDED = "all candidate nodes are excluded by spread constraint"
NONE_SATISFIED = "no candidate satisfied placement filter (every node excluded or vetoed)"


# ---------------------------------------------------------------- integer widths


def saturating_u8(count: int) -> int:
    """`usize::min(u8::MAX) as u8`.

    pre: count >= 0
    post: 0 <= __return__ <= U8_MAX
    post: __return__ == count or (count > U8_MAX and __return__ == U8_MAX)
    """
    return min(count, U8_MAX)


def check_u8(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U8_MAX:
        raise ValueError(f"{name} must be a u8, got {value!r}")
    return value


def check_u64(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise ValueError(f"{name} must be a u64, got {value!r}")
    return value


def check_entity_id(value: bytes) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"entity id must be 32 bytes, got {value!r}")
    return value


def _u8(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    check_u8(attribute.name, value)


def _u64(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    check_u64(attribute.name, value)


def _entity(_inst: object, _attribute: attrs.Attribute, value: bytes) -> None:
    check_entity_id(value)


# ---------------------------------------------------------------- values


@attrs.frozen
class MemberInfo:
    """One member: its slot index, origin hash, hosting node, LB entity id and health flag."""

    index: int = attrs.field(validator=_u8)
    origin_hash: int = attrs.field(validator=_u64)
    node_id: int = attrs.field(validator=_u64)
    entity_id_bytes: bytes = attrs.field(validator=_entity)
    healthy: bool = attrs.field(default=True, converter=bool)


@attrs.frozen
class GroupHealth:
    """Rust `GroupHealth`: Healthy | Degraded { healthy: u8, total: u8 } | Dead."""

    kind: str = attrs.field(validator=attrs.validators.in_(("healthy", "degraded", "dead")))
    healthy: int = 0
    total: int = 0

    @classmethod
    def healthy_group(cls) -> GroupHealth:
        return cls("healthy")

    @classmethod
    def degraded(cls, healthy: int, total: int) -> GroupHealth:
        return cls("degraded", healthy, total)

    @classmethod
    def dead(cls) -> GroupHealth:
        return cls("dead")

    def __str__(self) -> str:
        if self.kind == "degraded":
            return f"Degraded {{ healthy: {self.healthy}, total: {self.total} }}"
        return self.kind.title()


@attrs.frozen
class SpreadPlacement(PlacementDecision):
    """`place_with_spread`'s answer: the 0.25.0 decision plus #166's narrowing flag."""

    narrowed_by_exclusion: bool = False


# ---------------------------------------------------------------- errors


class GroupError(Exception):
    """Rust `GroupError`; `str()` is its Display text."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == other.args  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.args))


class NoHealthyMember(GroupError):
    def __str__(self) -> str:
        return "no healthy member available"


class _MessageError(GroupError):
    _prefix = ""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return f"{self._prefix}: {self.msg}"


class PlacementFailed(_MessageError):
    _prefix = "placement failed"


class RegistryFailed(_MessageError):
    _prefix = "registry operation failed"


class InvalidConfig(_MessageError):
    _prefix = "invalid config"


def placement_failed_from(exc: SchedulerError) -> PlacementFailed:
    """`impl From<SchedulerError> for GroupError`."""
    return PlacementFailed(str(exc))


def duplicate_entity(entity_id: bytes) -> InvalidConfig:
    return InvalidConfig(f"entity id {node_id_debug(entity_id)} already belongs to a member")


def lb_config_for(strategy: Strategy, lb_config: Optional[LoadBalancerConfig]) -> LoadBalancerConfig:
    """`LoadBalancer::with_strategy(strategy)`, over `lb_config`'s other settings if given."""
    if lb_config is None:
        return LoadBalancerConfig(strategy=strategy)
    return attrs.evolve(lb_config, strategy=strategy)


# ---------------------------------------------------------------- the coordinator


class GroupCoordinator:
    """Members, their load balancer, health; every lookup and count scans the members."""

    def __init__(
        self,
        strategy: Strategy = Strategy.ROUND_ROBIN,
        *,
        clock: Clock = monotonic_clock,
        rng: Optional[random.Random] = None,
        lb_config: Optional[LoadBalancerConfig] = None,
    ) -> None:
        self._members: list[MemberInfo] = []
        self._lb = LoadBalancer(lb_config_for(strategy, lb_config), clock=clock,
                                rng=rng if rng is not None else random.Random())

    # ---- membership

    def add_member(self, info: MemberInfo) -> None:
        if self._holder(info.entity_id_bytes) is not None:
            raise duplicate_entity(info.entity_id_bytes)
        self._lb.add_endpoint(Endpoint(info.entity_id_bytes))
        self._members.append(info)

    def remove_last(self) -> Optional[MemberInfo]:
        if not self._members:
            return None
        info = self._members.pop()
        self._lb.remove_endpoint(info.entity_id_bytes)
        return info

    # ---- routing

    def route_event(self, ctx: RequestContext) -> int:
        """The origin hash of the member the LB selects; the LB slot is never released."""
        try:
            selection = self._lb.select(ctx)
        except LoadBalancerError:
            raise NoHealthyMember() from None
        origin = self.origin_hash_for_entity_id(selection.node_id)
        if origin is None:
            raise NoHealthyMember()
        return origin

    def origin_hash_for_entity_id(self, entity_id: bytes) -> Optional[int]:
        holder = self._holder(entity_id)
        return None if holder is None else self._members[holder].origin_hash

    def _holder(self, entity_id: bytes) -> Optional[int]:
        """Position of the member holding `entity_id`, by a scan."""
        for pos, member in enumerate(self._members):
            if member.entity_id_bytes == entity_id:
                return pos
        return None

    # ---- health

    def _slot(self, index: int) -> Optional[int]:
        """The position `index` if the member there carries that index (#158's guard)."""
        check_u8("index", index)
        for pos, member in enumerate(self._members):
            if pos == index and member.index == index:
                return pos
        return None

    def _set_health(self, pos: int, healthy: bool) -> None:
        member = self._members[pos]
        self._members[pos] = attrs.evolve(member, healthy=healthy)
        status = HealthStatus.HEALTHY if healthy else HealthStatus.UNHEALTHY
        self._lb.update_health(member.entity_id_bytes, status)

    def mark_unhealthy(self, index: int) -> None:
        pos = self._slot(index)
        if pos is not None:
            self._set_health(pos, False)

    def mark_healthy(self, index: int) -> None:
        pos = self._slot(index)
        if pos is not None:
            self._set_health(pos, True)

    def update_member_placement(self, index: int, new_node_id: int, new_entity_id: bytes) -> None:
        check_u64("new_node_id", new_node_id)
        check_entity_id(new_entity_id)
        pos = self._slot(index)
        if pos is None:
            return
        holder = self._holder(new_entity_id)
        if holder is not None and holder != pos:
            raise duplicate_entity(new_entity_id)
        member = self._members[pos]
        self._lb.remove_endpoint(member.entity_id_bytes)
        self._members[pos] = attrs.evolve(member, node_id=new_node_id,
                                          entity_id_bytes=new_entity_id, healthy=True)
        self._lb.add_endpoint(Endpoint(new_entity_id))

    def on_node_recovery(self, recovered_node_id: int, registry: Container[int]) -> None:
        """Unhealthy members on that node whose origin is still registered become healthy."""
        check_u64("recovered_node_id", recovered_node_id)
        for pos, member in enumerate(self._members):
            if (member.node_id == recovered_node_id and not member.healthy
                    and member.origin_hash in registry):
                self._set_health(pos, True)

    # ---- queries

    def health(self) -> GroupHealth:
        healthy = sum(1 for m in self._members if m.healthy)
        total = len(self._members)
        if healthy == 0:
            return GroupHealth.dead()
        if healthy == total:
            return GroupHealth.healthy_group()
        return GroupHealth.degraded(saturating_u8(healthy), saturating_u8(total))

    def members(self) -> list[MemberInfo]:
        return list(self._members)

    def member_count(self) -> int:
        return saturating_u8(len(self._members))

    def healthy_count(self) -> int:
        return saturating_u8(sum(1 for m in self._members if m.healthy))

    def members_on_node(self, node_id: int) -> list[int]:
        return [m.index for m in self._members if m.node_id == node_id]

    # ---- placement (associated functions in Rust: no coordinator state)

    @staticmethod
    def place_with_spread(scheduler: Any, requirements: CapabilityFilter,
                          exclude: Collection[int]) -> SpreadPlacement:
        try:
            primary = scheduler.place(requirements)
        except SchedulerError as exc:
            raise placement_failed_from(exc) from None
        if primary.node_id not in exclude:
            return SpreadPlacement(primary.node_id, primary.reason, False)
        for node_id in scheduler.query_candidates(requirements):
            if node_id not in exclude:
                return SpreadPlacement(node_id, PlacementReason.FIRST_MATCH, True)
        raise PlacementFailed(ALL_EXCLUDED)

    @staticmethod
    def place_member(scheduler: Any, artifact: Artifact, requirements: CapabilityFilter,
                     exclude: Collection[int], placement: PlacementFilter,
                     tie_break: TieBreakContext) -> PlacementDecision:
        node_id = scheduler.select_member_node(artifact, requirements, exclude, placement, tie_break)
        if node_id is None:
            raise PlacementFailed(NONE_SATISFIED)
        return PlacementDecision(node_id, PlacementReason.BEST_SCORE)

    # ---- observation

    def abstract(self) -> tuple:
        return (tuple(self._members), self._lb.abstract())

    def check_invariants(self) -> None:
        """The model keeps no derived state."""
