"""Properties of the group coordinator: the subject harness, invariants, lockstep machine, exploration.

The harness (`GroupCoordinatorSubject`) wraps one coordinator (model or impl) with its
own FakeClock and rng, plus a scheduler of the same side (`model.scheduler` for the
model, `impl.scheduler` for the impl) for the two placement helpers, and the ghost state
the invariants need: the registry of live origins handed to `on_node_recovery`, every
entity id ever used, the events routed to each live LB endpoint, and the verdicts of
the checks made around `route_event`, the health updates, `on_node_recovery` and the
placements.

The route_event connection slot (semantics.md §2.3). The model keeps 0.25.0's
behaviour: a routed event's LB slot is never released. `route_slots_never_released`
states it (every member's LB connection count equals the events routed to its current
endpoint), `route_event_answers_routable_origin` states that routing fails only when no
member has a free slot, and the witness `slot_leak_starves_healthy_group` shows the
consequence: a group whose members are all flagged healthy answers NoHealthyMember.
The fixed behaviour (release after routing) is the mutant `route_releases_slot`.

What the machine reaches: every operation; strategies of all eleven kinds; connection
caps 1, 2, 3 and the default 10 000; groups prefilled to 257 members, the first one
possibly added unhealthy (u8 saturation, Degraded{255, 255}); members added unhealthy;
member indices that break the dense-index invariant; health flips in range, on a slot
whose index differs, and out of range (99, 255); duplicate, own, retired and fresh
entity ids on add and re-placement; origins registered and unregistered before a node
recovery; route contexts with keys, zones and unsatisfiable tags; spread placements
whose exclusion set covers none, some or all candidates; member placements over score
tables with vetoes, NaN, ±inf and RTT tables with gaps. Boundaries (`meshspec.strategies.around`,
one witness each in BOUNDARY_WITNESSES): bursts of routes as many as the free LB slots
(exactly, one fewer, one more), so members reach the connection cap exactly; groups of 257
members shrunk to 256, 255 or 254 (u8::MAX and its neighbours). No rule moves the
clock and route_event never records a completion (the breaker never opens), so there is no
time boundary.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

import impl.scheduler as impl_scheduler
import model.scheduler as model_scheduler
from meshspec.explore import Bound, Exploration
from meshspec.lockstep import Component, Subject, always, sometimes
from meshspec.machine import LockstepMachine
from meshspec.strategies import around, boundary_values, pick
from model import group_coordinator as M
from model.load_balancer import HealthStatus, LoadBalancerConfig, RequestContext, Strategy
from model.scheduler import Artifact, CapabilityFilter, ScoreTable, TieBreakContext, to_f32

U8_MAX = 255
U64_MAX = 2**64 - 1
LOCAL = 1
NODES = (1, 2, 3, 4, 5)
DEAD_NODE = 0xDEAD
TAGS = ("gpu", "ssd")
SCHEDULERS = {"model": model_scheduler.Scheduler, "impl": impl_scheduler.Scheduler}
STRATEGIES = tuple(s.value for s in Strategy)
STRANGER = 0xFFFF_FFFF  # an entity seed never handed out
CONTEXTS = ("plain", "routing_key", "session", "request", "zoned", "tagged")
BURST_MAX = 24  # the most events one route_burst sends (kept small: each is a lockstep step)


def entity_id(seed: int) -> bytes:
    """The 32-byte entity id of an entity seed (what rule arguments carry)."""
    return b"\xe1" + seed.to_bytes(4, "big") + bytes(27)


STRANGER_ID = entity_id(STRANGER)


def origin_of(k: int) -> int:
    """The k-th origin hash handed out (an odd multiplier: distinct k, distinct origins)."""
    return (0x9E3779B97F4A7C15 * (k + 1)) & U64_MAX


def tags_of(mask: int) -> tuple[str, ...]:
    return tuple(t for i, t in enumerate(TAGS) if mask >> i & 1)


def requirements(mask: int) -> CapabilityFilter:
    return CapabilityFilter(frozenset(tags_of(mask)))


def context(kind: str, key: str) -> RequestContext:
    return {"plain": RequestContext(), "routing_key": RequestContext(routing_key=key),
            "session": RequestContext(session_id=key), "request": RequestContext(request_id=key),
            "zoned": RequestContext(client_zone="eu-1"),
            "tagged": RequestContext(required_tags=("gpu",))}[kind]


def lb_view(abstract: tuple) -> dict[bytes, tuple[HealthStatus, int]]:
    """entity id -> (LB health, LB connections), read from a coordinator's abstract state
    (members, LB abstract); the LB endpoint abstracts start (endpoint fields, connections)."""
    return {ep[0][0]: (ep[0][2], ep[1]) for ep in abstract[1][4]}


def routable(view: dict[bytes, tuple[HealthStatus, int]], cap: int) -> set[bytes]:
    return {e for e, (health, conns) in view.items() if health.can_receive_traffic() and conns < cap}


class GroupCoordinatorSubject(Subject):
    """One coordinator, a scheduler of the same side, and ghost state; one method per rule."""

    def init(self, strategy: str, max_connections: int, prefill: int, prefill_down: int,
             node_masks: tuple[int, ...], local_mask: int) -> None:
        self.cap = max_connections
        config = LoadBalancerConfig(max_connections_per_endpoint=max_connections)
        self.sut = self.cls(Strategy(strategy), clock=self.clock, rng=self.rng, lb_config=config)
        nodes = {n: tags_of(m) for n, m in zip(NODES, node_masks) if m >= 0}
        self.scheduler = SCHEDULERS[self.side](LOCAL, tags_of(local_mask), nodes)
        self.registry: set[int] = set()
        self.next_origin = 0
        self.next_entity = 0
        self.entities_seen: list[int] = []
        self.seen_ids: list[bytes] = []  # entity_id(seed) of entities_seen, same order
        self.routes: dict[bytes, int] = {}
        self.unsynced: set[bytes] = set()  # added with healthy=False, LB still Healthy
        self.route_violation: Optional[str] = None
        self.guard_violation: Optional[str] = None
        self.recovery_violation: Optional[str] = None
        self.spread_violation: Optional[str] = None
        self.flags: set[str] = set()
        self._memo: tuple[Any, Any] = (None, None)
        for k in range(prefill):  # dense indices (the last ones repeat 255 past 256 members)
            node, healthy = NODES[k % len(NODES)], k >= prefill_down
            member = self._new_member(min(k, U8_MAX), node, self.next_entity, healthy)
            self.sut.add_member(member)
            self._added(self.next_entity, member.healthy)

    def abstract(self) -> Any:
        return (self._step_state()[0], self.scheduler.abstract())

    def observations(self) -> dict[str, Any]:
        """What a cache or index could get wrong while the members agree."""
        s = self.sut
        sample = self.seen_ids[:4] + self.seen_ids[-12:] + [STRANGER_ID]
        health = s.health()
        return {"counts": (s.member_count(), s.healthy_count(), health.kind, health.healthy, health.total),
                "members_on_node": tuple(tuple(s.members_on_node(n)) for n in NODES + (DEAD_NODE,)),
                "origin lookups": tuple(s.origin_hash_for_entity_id(e) for e in sample)}

    # -- ghost helpers -----------------------------------------------------------------------
    def _new_member(self, index: int, node: int, entity: int, healthy: bool) -> M.MemberInfo:
        return M.MemberInfo(index, origin_of(self.next_origin), node, entity_id(entity), healthy)

    def _added(self, entity: int, healthy: bool) -> None:
        """After a successful add: the origin is registered, the endpoint has routed nothing
        and is LB-Healthy whatever the member's flag says."""
        self.registry.add(origin_of(self.next_origin))
        self.next_origin += 1
        self._saw(entity)
        self.routes[entity_id(entity)] = 0
        if not healthy:
            self.unsynced.add(entity_id(entity))

    def _saw(self, entity: int) -> None:
        if entity not in self.entities_seen:
            self.entities_seen.append(entity)
            self.seen_ids.append(entity_id(entity))
        self.next_entity = max(self.next_entity, entity + 1)

    def _step_state(self) -> tuple[Any, list[M.MemberInfo], dict[bytes, tuple[HealthStatus, int]]]:
        """abstract(), members and LB view after the current step, computed once per step.

        Keyed on `self.last`, which the lockstep core replaces after every step (and which
        the memo keeps alive, so its identity cannot be reused)."""
        if self._memo[0] is not self.last:
            abstract = self.sut.abstract()
            self._memo = (self.last, (abstract, self.sut.members(), lb_view(abstract)))
        return self._memo[1]

    def view(self) -> tuple[list[M.MemberInfo], dict[bytes, tuple[HealthStatus, int]]]:
        """Members and LB view after the current step (for the invariants)."""
        _, members, view = self._step_state()
        return members, view

    # -- membership --------------------------------------------------------------------------
    def add_member(self, index: int, node: int, entity: int, healthy: bool) -> None:
        before = len(self._step_state()[1])
        self.sut.add_member(self._new_member(index, node, entity, healthy))
        self._added(entity, healthy)
        if before == U8_MAX:
            self.flags.add("members_cross_u8_saturation")

    def remove_last(self) -> Optional[M.MemberInfo]:
        if len(self._step_state()[1]) == U8_MAX + 1:
            self.flags.add("members_cross_u8_saturation")
        info = self.sut.remove_last()
        if info is not None:
            self.routes.pop(info.entity_id_bytes, None)
            self.unsynced.discard(info.entity_id_bytes)
        return info

    # -- routing -----------------------------------------------------------------------------
    def route_event(self, kind: str, key: str) -> int:
        _, members, before = self._step_state()  # still the state the previous step left
        open_slots = routable(before, self.cap)
        try:
            origin = self.sut.route_event(context(kind, key))
        except M.NoHealthyMember:
            self._route_failed(kind, open_slots)
            raise
        chosen = [m for m in members if m.origin_hash == origin]
        if len(chosen) != 1 or chosen[0].entity_id_bytes not in open_slots:
            self.route_violation = (f"route_event answered {origin:#x}, not the origin of a routable "
                                    f"member ({len(open_slots)} routable of {len(members)})")
            return origin
        entity = chosen[0].entity_id_bytes
        self.routes[entity] = self.routes.get(entity, 0) + 1
        if open_slots == {entity} and before[entity][1] == self.cap - 1:
            self.flags.add("last_free_slot_taken")
        if not chosen[0].healthy:
            self.flags.add("unhealthy_flagged_member_routed")
        return origin

    def _route_failed(self, kind: str, open_slots: set[bytes]) -> None:
        if kind != "tagged" and open_slots:
            self.route_violation = f"NoHealthyMember although {len(open_slots)} members had a free slot"
        if kind != "tagged" and self.sut.healthy_count() > 0:
            self.flags.add("slot_leak_starves_healthy_group")

    def origin_hash_for_entity_id(self, entity: int) -> Optional[int]:
        return self.sut.origin_hash_for_entity_id(entity_id(entity))

    # -- health ------------------------------------------------------------------------------
    def _guarded(self, op: str, index: int, call: Callable[[], None],
                 before_view: Optional[dict] = None) -> tuple[list[tuple[bytes, bytes]], dict]:
        """Call a guarded operation; only members[index] (if its index is `index`) may change,
        in the member list or in the LB.

        `before_view` defaults to the state the previous step left (valid at a rule's start).
        Returns (old, new) entity ids of the members the call may have re-placed (the changed
        ones, plus members[index] when the guard lets the call act) and the LB view after."""
        before = self.sut.members()
        before_view = self._step_state()[2] if before_view is None else before_view
        call()
        after, after_view = self.sut.members(), lb_view(self.sut.abstract())
        acts = index < len(before) and before[index].index == index
        if index >= len(before):
            self.flags.add("health_flip_out_of_range")
        elif not acts:
            self.flags.add("health_flip_refused_by_guard")
        changed = [i for i, (a, b) in enumerate(zip(before, after))
                   if a != b or before_view.get(a.entity_id_bytes) != after_view.get(b.entity_id_bytes)]
        if len(before) != len(after) or any(i != index or not acts for i in changed):
            slot = before[index].index if index < len(before) else None
            self.guard_violation = f"{op}({index}) changed members at {changed} (slot index field {slot})"
        touched = sorted(set(changed) | ({index} if acts else set()))
        pairs = [(before[i].entity_id_bytes, after[i].entity_id_bytes) for i in touched if i < len(after)]
        self.unsynced.difference_update(e for pair in pairs for e in pair)  # LB health now set
        return pairs, after_view

    def mark_healthy(self, index: int) -> None:
        self._guarded("mark_healthy", index, lambda: self.sut.mark_healthy(index))

    def mark_unhealthy(self, index: int) -> None:
        self._guarded("mark_unhealthy", index, lambda: self.sut.mark_unhealthy(index))

    def update_member_placement(self, index: int, node: int, entity: int) -> None:
        replaced, _ = self._guarded("update_member_placement", index,
                                    lambda: self.sut.update_member_placement(index, node, entity_id(entity)))
        for old, new in replaced:  # a re-created endpoint has routed nothing yet
            self.routes.pop(old, None)
            self.routes[new] = 0
        if replaced:
            self._saw(entity)

    def on_node_recovery(self, node: int) -> None:
        before = self.sut.members()
        self.sut.on_node_recovery(node, frozenset(self.registry))
        after = self.sut.members()
        due = [i for i, m in enumerate(before)
               if m.node_id == node and not m.healthy and m.origin_hash in self.registry]
        skipped = [i for i, m in enumerate(before)
                   if m.node_id == node and not m.healthy and m.origin_hash not in self.registry]
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        self.unsynced.difference_update(after[i].entity_id_bytes for i in changed)
        revived_ok = all(after[i].healthy for i in due)  # lb_mirrors_members checks the LB side
        if changed != due or not revived_ok:
            self.recovery_violation = (f"on_node_recovery({node}) changed members {changed}, "
                                       f"expected the registered unhealthy ones {due}")
        self.flags |= {"recovery_revived_member"} if due else set()
        self.flags |= {"recovery_skipped_unregistered"} if skipped else set()

    def node_failure(self, node: int, unregister: bool) -> list[int]:
        """A group's on_node_failure: mark every member on the node down; with `unregister`,
        the re-placement failed after the origins were unregistered (the pre-§2.6-29 order)."""
        indices, view = self.sut.members_on_node(node), None
        for index in indices:
            _, view = self._guarded("mark_unhealthy", index, lambda i=index: self.sut.mark_unhealthy(i), view)
        if unregister:
            self.registry.difference_update(m.origin_hash for m in self.sut.members() if m.node_id == node)
        return indices

    def register_origin(self, origin: int) -> bool:
        """The DaemonRegistry learns an origin (ghost only)."""
        fresh = origin not in self.registry
        self.registry.add(origin)
        return fresh

    def unregister_origin(self, origin: int) -> bool:
        """The DaemonRegistry forgets an origin (ghost only; e.g. a failed re-placement)."""
        known = origin in self.registry
        self.registry.discard(origin)
        return known

    # -- queries -----------------------------------------------------------------------------
    def health(self) -> M.GroupHealth:
        return self.sut.health()

    def healthy_count(self) -> int:
        return self.sut.healthy_count()

    def member_count(self) -> int:
        return self.sut.member_count()

    def members_on_node(self, node: int) -> list[int]:
        return self.sut.members_on_node(node)

    def members(self) -> list[M.MemberInfo]:
        return self.sut.members()

    # -- placement over the scheduler --------------------------------------------------------
    def place_with_spread(self, req_mask: int, exclude: tuple[int, ...]) -> M.SpreadPlacement:
        excluded = frozenset(exclude)
        try:
            got = self.sut.place_with_spread(self.scheduler, requirements(req_mask), excluded)
        except M.PlacementFailed as exc:
            self._spread_failed(req_mask, excluded, exc)
            raise
        if got.node_id in excluded:
            self.spread_violation = f"place_with_spread returned excluded node {got.node_id}"
        if got.narrowed_by_exclusion:
            self.flags.add("spread_narrowed_by_exclusion")
        return got

    def _spread_failed(self, req_mask: int, excluded: frozenset, exc: M.PlacementFailed) -> None:
        if exc.msg != M.ALL_EXCLUDED:
            return
        self.flags.add("spread_all_excluded")
        left = [n for n in self.scheduler.query_candidates(requirements(req_mask)) if n not in excluded]
        if left:
            self.spread_violation = f"PlacementFailed(all excluded) although {left} are not excluded"

    def place_member(self, req_mask: int, exclude: tuple[int, ...],
                     scores: tuple[tuple[int, Optional[float]], ...], default: Optional[float],
                     rtt: Optional[tuple[tuple[int, int], ...]]) -> Any:
        table = ScoreTable(scores, default)
        got = self.sut.place_member(self.scheduler, Artifact(), requirements(req_mask),
                                    frozenset(exclude), table, TieBreakContext(rtt))
        score = table(got.node_id, Artifact())
        if got.node_id in exclude or score is None or not math.isfinite(to_f32(score)):
            self.spread_violation = f"place_member returned {got.node_id} (excluded or scored {score})"
        return got

    # -- the scheduler the placements run over (ghost: not coordinator operations) -----------
    def set_node(self, node: int, mask: int) -> bool:
        return self.scheduler.add_node(node, tags_of(mask))

    def remove_node(self, node: int) -> bool:
        return self.scheduler.remove_node(node)

    def set_local_caps(self, mask: int) -> None:
        self.scheduler.set_local_caps(tags_of(mask))


# -- invariants -----------------------------------------------------------------------------

def reverse_index_matches_members(s: GroupCoordinatorSubject) -> None:
    """Every member's entity id resolves to its origin hash; every other entity id to None."""
    members, _ = s.view()
    held = {m.entity_id_bytes: m.origin_hash for m in members}
    retired = [e for e in s.seen_ids if e not in held]
    for e in _sample(list(held)) + retired + [STRANGER_ID]:
        got = s.sut.origin_hash_for_entity_id(e)
        assert got == held.get(e), \
            f"origin_hash_for_entity_id({e[1:5].hex()}) = {got}, members say {held.get(e)}"


def _sample(xs: list) -> list:
    """All of a small group; the ends and the middle of a large one (the model's lookup is a scan)."""
    if len(xs) <= 32:
        return xs
    mid = len(xs) // 2
    return xs[:10] + xs[mid - 4:mid + 4] + xs[-10:]


def counts_agree_with_a_scan(s: GroupCoordinatorSubject) -> None:
    """healthy_count, member_count (u8, saturating) and health() agree with a scan of the members."""
    members, _ = s.view()
    healthy, total = sum(m.healthy for m in members), len(members)
    got = s.sut.healthy_count()
    assert got == min(healthy, U8_MAX), f"healthy_count {got}, scan {healthy}"
    assert s.sut.member_count() == min(total, U8_MAX), f"member_count {s.sut.member_count()}, scan {total}"
    if healthy == 0:
        want = M.GroupHealth.dead()
    elif healthy == total:
        want = M.GroupHealth.healthy_group()
    else:
        want = M.GroupHealth.degraded(min(healthy, U8_MAX), min(total, U8_MAX))
    assert s.sut.health() == want, f"health() {s.sut.health()}, scan of {healthy}/{total} says {want}"


def route_event_answers_routable_origin(s: GroupCoordinatorSubject) -> None:
    """route_event answers the origin of a member with a free LB slot; fails only when none has one."""
    assert s.route_violation is None, s.route_violation


def route_slots_never_released(s: GroupCoordinatorSubject) -> None:
    """0.25.0: each member's LB connections equal the events routed to its endpoint (never released)."""
    _, view = s.view()
    for e, (_, conns) in view.items():
        assert conns == s.routes.get(e, 0), \
            f"entity {e[1:5].hex()}: {conns} LB connections but {s.routes.get(e, 0)} events routed to it"
        assert conns <= s.cap, f"entity {e[1:5].hex()}: {conns} connections above the cap {s.cap}"


def lb_mirrors_members(s: GroupCoordinatorSubject) -> None:
    """One LB endpoint per member, LB health = flag (a member added unhealthy stays LB-Healthy until touched)."""
    members, view = s.view()
    ids = [m.entity_id_bytes for m in members]
    assert sorted(ids) == sorted(view), f"{len(view)} LB endpoints for {len(ids)} members (or other ids)"
    for m in members:
        health = view[m.entity_id_bytes][0]
        if m.entity_id_bytes in s.unsynced:
            assert not m.healthy and health == HealthStatus.HEALTHY, \
                f"member {m.index} added unhealthy and never updated: flag {m.healthy}, LB {health}"
        else:
            want = HealthStatus.HEALTHY if m.healthy else HealthStatus.UNHEALTHY
            assert health == want, f"member {m.index}: healthy={m.healthy} but LB health {health}"


def health_updates_respect_the_dense_index_guard(s: GroupCoordinatorSubject) -> None:
    """mark_healthy / mark_unhealthy / update_member_placement(i) touch only members[i], only if its index is i."""
    assert s.guard_violation is None, s.guard_violation


def recovery_revives_only_registered_members(s: GroupCoordinatorSubject) -> None:
    """on_node_recovery revives exactly the unhealthy members on that node whose origin is registered."""
    assert s.recovery_violation is None, s.recovery_violation


def spread_never_returns_excluded(s: GroupCoordinatorSubject) -> None:
    """place_with_spread / place_member never answer an excluded (or vetoed) node; all excluded ⇒ PlacementFailed."""
    assert s.spread_violation is None, s.spread_violation


def _last_error(s: GroupCoordinatorSubject, rule: str) -> Optional[tuple[str, str]]:
    return s.last[2].error if s.last is not None and s.last[0] == rule else None


def group_degraded(s: GroupCoordinatorSubject) -> bool:
    """health() is Degraded."""
    return s.sut.health().kind == "degraded"


def group_dead_with_members(s: GroupCoordinatorSubject) -> bool:
    """health() is Dead although the group has members."""
    return s.sut.health().kind == "dead" and s.sut.member_count() > 0


def counts_saturated(s: GroupCoordinatorSubject) -> bool:
    """More than 255 healthy members: healthy_count saturates at 255."""
    members, _ = s.view()
    return sum(m.healthy for m in members) > U8_MAX


def degraded_at_saturation(s: GroupCoordinatorSubject) -> bool:
    """Degraded{255, 255}: 256+ members, not all healthy (full counts compared before saturating)."""
    return s.sut.health() == M.GroupHealth.degraded(U8_MAX, U8_MAX)


def slot_leak_starves_healthy_group(s: GroupCoordinatorSubject) -> bool:
    """route_event failed although members are flagged healthy: every healthy slot leaked away."""
    return "slot_leak_starves_healthy_group" in s.flags


def unhealthy_flagged_member_routed(s: GroupCoordinatorSubject) -> bool:
    """An event was routed to a member added with healthy=False (its LB endpoint starts Healthy)."""
    return "unhealthy_flagged_member_routed" in s.flags


def health_flip_out_of_range(s: GroupCoordinatorSubject) -> bool:
    """A health update named an index past the end (a no-op)."""
    return "health_flip_out_of_range" in s.flags


def health_flip_refused_by_guard(s: GroupCoordinatorSubject) -> bool:
    """A health update named an in-range slot whose member carries another index (a no-op)."""
    return "health_flip_refused_by_guard" in s.flags


def recovery_revived_member(s: GroupCoordinatorSubject) -> bool:
    """on_node_recovery revived a member."""
    return "recovery_revived_member" in s.flags


def recovery_skipped_unregistered(s: GroupCoordinatorSubject) -> bool:
    """on_node_recovery left an unhealthy member on the node down because its origin was unregistered."""
    return "recovery_skipped_unregistered" in s.flags


def spread_narrowed_by_exclusion(s: GroupCoordinatorSubject) -> bool:
    """place_with_spread fell back past an excluded primary choice (#166)."""
    return "spread_narrowed_by_exclusion" in s.flags


def spread_all_excluded(s: GroupCoordinatorSubject) -> bool:
    """place_with_spread answered PlacementFailed because every candidate was excluded."""
    return "spread_all_excluded" in s.flags


def duplicate_entity_refused(s: GroupCoordinatorSubject) -> bool:
    """add_member or update_member_placement refused an entity id another member holds."""
    return any(_last_error(s, r) is not None and _last_error(s, r)[0] == "InvalidConfig"
               for r in ("add_member", "update_member_placement"))


def last_free_slot_taken(s: GroupCoordinatorSubject) -> bool:
    """A route took the group's last free LB slot: its member reached the connection cap exactly."""
    return "last_free_slot_taken" in s.flags


def members_at_u8_max(s: GroupCoordinatorSubject) -> bool:
    """The group holds exactly 255 members: the counts are at u8::MAX, not yet saturated."""
    return len(s.view()[0]) == U8_MAX


def members_cross_u8_saturation(s: GroupCoordinatorSubject) -> bool:
    """add_member took the group from 255 to 256 members, or remove_last from 256 to 255."""
    return "members_cross_u8_saturation" in s.flags


#: One witness per boundary class the machine aims at (meshspec.strategies.around). The
#: coordinator has no timeout, cooldown or deadline (no rule moves the clock, and route_event
#: never records a completion, so the balancer's breaker never opens): its boundaries are the
#: connection cap and the u8 counts.
BOUNDARY_WITNESSES = (last_free_slot_taken, members_at_u8_max, members_cross_u8_saturation)

#: The boundary witnesses aim at the fuzzer's generators; the explorer's fixed alphabet is
#: not asked to reach them.
FUZZ_ONLY_WITNESSES = tuple(w.__name__ for w in BOUNDARY_WITNESSES)


def place_member_failed(s: GroupCoordinatorSubject) -> bool:
    """place_member answered PlacementFailed (every candidate excluded or vetoed)."""
    err = _last_error(s, "place_member")
    return err is not None and err[0] == "PlacementFailed"


INVARIANTS = (
    always(reverse_index_matches_members), always(counts_agree_with_a_scan),
    always(route_event_answers_routable_origin), always(route_slots_never_released),
    always(lb_mirrors_members), always(health_updates_respect_the_dense_index_guard),
    always(recovery_revives_only_registered_members), always(spread_never_returns_excluded),
    sometimes(group_degraded), sometimes(group_dead_with_members), sometimes(counts_saturated),
    sometimes(degraded_at_saturation), sometimes(slot_leak_starves_healthy_group),
    sometimes(unhealthy_flagged_member_routed), sometimes(health_flip_out_of_range),
    sometimes(health_flip_refused_by_guard), sometimes(recovery_revived_member),
    sometimes(recovery_skipped_unregistered), sometimes(spread_narrowed_by_exclusion),
    sometimes(spread_all_excluded), sometimes(duplicate_entity_refused),
    sometimes(place_member_failed), *map(sometimes, BOUNDARY_WITNESSES),
)


# -- the machine ----------------------------------------------------------------------------

MASKS = st.integers(0, (1 << len(TAGS)) - 1)
INDICES = st.integers(0, 6) | st.sampled_from([99, 254, 255])
EXCLUDABLE = NODES + (DEAD_NODE,)
EXCLUDES = st.integers(0, 2 ** len(EXCLUDABLE) - 1).map(
    lambda mask: tuple(n for i, n in enumerate(EXCLUDABLE) if mask >> i & 1))
SCORES = st.sampled_from([None, 0.0, 0.25, 0.5, 1.0, 1.0, math.nan, math.inf, -math.inf, 1e300])
# Score tables (node -> score, None = veto; other nodes get the drawn default): ties, the
# highest score over lex order, NaN, every node vetoed, ±inf, f32 overflow and rounding.
SCORE_TABLES = st.sampled_from([
    (), ((1, 1.0), (2, 1.0), (3, 1.0)), ((1, 0.1), (2, 0.9), (3, 0.5)), ((2, math.nan), (3, 0.2)),
    tuple((n, None) for n in NODES), ((1, math.inf), (2, -math.inf), (4, 0.5)),
    ((3, 1e300), (5, 0.75)), ((4, 0.5), (5, 0.5000001)), ((1, None), (2, 0.3), (5, 0.3)),
])
RTT_TABLES = st.sampled_from([None, (), ((1, 1), (2, 1)), ((2, 0), (3, 2)), ((1, 3), (4, 0), (5, 0)),
                              ((5, 1),)])
KEYS = st.sampled_from(["a", "b", "c", "", "user-7"])
# Mostly small groups; a few examples start with 257 members (u8 saturation; with the first
# one down also Degraded{255, 255}) or 256 (the first saturating count); `shrink_to_u8_edge`
# takes such a group to 256, 255 or 254 members. A big group costs ~15x a small one per step
# (and its 256 LB endpoints ~0.3 s to build), so they stay rare: four weights in fifty-two.
PREFILL = st.sampled_from([0, 1, 2, 3, 4, 5] * 8 + [256, 257, 256, 257])
ROUTE_KINDS = tuple(k for k in CONTEXTS if k != "tagged")


class GroupCoordinatorMachine(LockstepMachine):
    """Model and impl coordinator in lockstep; every rule is one `self.step`."""

    @initialize(strategy=st.sampled_from(STRATEGIES), max_connections=st.sampled_from([1, 2, 3, 10000]),
                prefill=PREFILL, prefill_down=st.sampled_from([0, 1, 1]),
                node_masks=st.tuples(*[st.integers(-1, 3)] * len(NODES)), local_mask=MASKS)
    def init(self, strategy: str, max_connections: int, prefill: int, prefill_down: int,
             node_masks: tuple, local_mask: int) -> None:
        self.step("init", strategy, max_connections, prefill, prefill_down, node_masks, local_mask)

    def _index(self, data: Any) -> int:
        """Mostly the dense next index; sometimes one that breaks the dense-index invariant."""
        n = len(self.ls.model.sut.members())
        return min(pick(data, [n, n, n, n, n + 1, 0, max(n - 1, 0)], label="index"), U8_MAX)

    def _entity(self, data: Any) -> int:
        """A fresh entity seed, or one seen before (held by a member, or retired)."""
        subject = self.ls.model
        pools = [[subject.next_entity]] * 3 + ([subject.entities_seen] if subject.entities_seen else [])
        return pick(data, pick(data, pools, label="pool"), label="entity")

    def _origin(self, data: Any) -> int:
        """Mostly the origin of a member marked down (what a failed re-placement unregisters)."""
        members = self.ls.model.sut.members()
        down = [m.origin_hash for m in members if not m.healthy][:8]
        pools = [down] * 2 if down else []
        pools += [[m.origin_hash for m in members[:8]]] if members else [[origin_of(0)]]
        return pick(data, pick(data, pools, label="pool"), label="origin")

    def _recovered_node(self, data: Any) -> int:
        """Mostly a node hosting a member marked down."""
        down = sorted({m.node_id for m in self.ls.model.sut.members() if not m.healthy})
        pool = pick(data, [down, down, list(EXCLUDABLE)] if down else [list(EXCLUDABLE)], label="pool")
        return pick(data, pool, label="node")

    @rule(data=st.data(), node=st.sampled_from(NODES), healthy=st.sampled_from([True, True, True, False]))
    def add_member(self, data: Any, node: int, healthy: bool) -> None:
        self.step("add_member", self._index(data), node, self._entity(data), healthy)

    @rule()
    def remove_last(self) -> None:
        self.step("remove_last")

    @rule(kind=st.sampled_from(CONTEXTS), key=KEYS)
    def route_event(self, kind: str, key: str) -> None:
        self.step("route_event", kind, key)

    @rule(data=st.data())
    def shrink_to_u8_edge(self, data: Any) -> None:
        """A big group loses members until it holds exactly u8::MAX + 1, u8::MAX or u8::MAX - 1:
        the counts' saturation edge, crossed one member at a time (nothing for a small group)."""
        target = data.draw(st.sampled_from(boundary_values([U8_MAX])), label="members")
        for _ in range(min(max(len(self.ls.model.view()[0]) - target, 0), 3)):
            self.step("remove_last")

    @rule(data=st.data(), kind=st.sampled_from(ROUTE_KINDS), key=KEYS)
    def route_burst(self, data: Any, kind: str, key: str) -> None:
        """Events routed back to back, as many as the free LB slots (exactly, one fewer, one
        more) when they are few: each member's connection count reaches the cap exactly."""
        subject = self.ls.model
        cap = subject.cap
        free = sum(cap - conns for health, conns in subject.view()[1].values()
                   if health.can_receive_traffic() and conns < cap)
        count = data.draw(around([free], st.integers(1, 3), lo=1, hi=BURST_MAX), label="count")
        for _ in range(count):
            self.step("route_event", kind, key)

    @rule(data=st.data())
    def origin_hash_for_entity_id(self, data: Any) -> None:
        self.step("origin_hash_for_entity_id", self._entity(data))

    def _flip_index(self, data: Any) -> int:
        """A member index for a guarded update, aimed at the dense-index guard as the group
        stands: the index field of a member that sits elsewhere (the guard must refuse it, a
        scan would find it), or one below or above it."""
        members = self.ls.model.view()[0]
        misplaced = [m.index for pos, m in enumerate(members) if m.index != pos][:8]
        return data.draw(around(misplaced, INDICES, lo=0, hi=U8_MAX, share=50), label="index")

    @rule(data=st.data())
    def mark_healthy(self, data: Any) -> None:
        self.step("mark_healthy", self._flip_index(data))

    @rule(data=st.data())
    def mark_unhealthy(self, data: Any) -> None:
        self.step("mark_unhealthy", self._flip_index(data))

    @rule(data=st.data(), node=st.sampled_from(NODES))
    def update_member_placement(self, data: Any, node: int) -> None:
        self.step("update_member_placement", self._flip_index(data), node, self._entity(data))

    @rule(data=st.data())
    def on_node_recovery(self, data: Any) -> None:
        self.step("on_node_recovery", self._recovered_node(data))

    @rule(node=st.sampled_from(NODES), unregister=st.booleans())
    def node_failure(self, node: int, unregister: bool) -> None:
        self.step("node_failure", node, unregister)

    @rule(data=st.data())
    def register_origin(self, data: Any) -> None:
        self.step("register_origin", self._origin(data))

    @rule(data=st.data())
    def unregister_origin(self, data: Any) -> None:
        self.step("unregister_origin", self._origin(data))

    @rule()
    def health(self) -> None:
        self.step("health")

    @rule()
    def healthy_count(self) -> None:
        self.step("healthy_count")

    @rule()
    def member_count(self) -> None:
        self.step("member_count")

    @rule(node=st.sampled_from(NODES + (DEAD_NODE,)))
    def members_on_node(self, node: int) -> None:
        self.step("members_on_node", node)

    @rule()
    def members(self) -> None:
        self.step("members")

    @rule(req_mask=MASKS, exclude=EXCLUDES)
    def place_with_spread(self, req_mask: int, exclude: tuple) -> None:
        self.step("place_with_spread", req_mask, exclude)

    @rule(req_mask=MASKS, exclude=EXCLUDES, scores=SCORE_TABLES, default=SCORES, rtt=RTT_TABLES)
    def place_member(self, req_mask: int, exclude: tuple, scores: tuple, default: Optional[float],
                     rtt: Optional[tuple]) -> None:
        self.step("place_member", req_mask, exclude, scores, default, rtt)

    @rule(node=st.sampled_from(NODES), mask=MASKS)
    def set_node(self, node: int, mask: int) -> None:
        self.step("set_node", node, mask)

    @rule(node=st.sampled_from(NODES))
    def remove_node(self, node: int) -> None:
        self.step("remove_node", node)

    @rule(mask=MASKS)
    def set_local_caps(self, mask: int) -> None:
        self.step("set_local_caps", mask)


OPERATIONS = (
    "add_member", "remove_last", "route_event", "origin_hash_for_entity_id", "mark_healthy",
    "mark_unhealthy", "update_member_placement", "on_node_recovery", "health", "members",
    "member_count", "healthy_count", "members_on_node", "place_with_spread", "place_member",
    "abstract",
)


# The curated mutants live in mutants/group_coordinator.py; the registry reads them lazily.
from meshspec.registry import mutants_of  # noqa: E402
from impl.group_coordinator import GroupCoordinator as ImplCoordinator  # noqa: E402


# -- benchmarks -----------------------------------------------------------------------------

def _bench_group(cls: type, size: int) -> Any:
    from meshspec.clock import FakeClock

    config = LoadBalancerConfig(max_connections_per_endpoint=2**32 - 1)
    coord = cls(Strategy.ROUND_ROBIN, clock=FakeClock(0), lb_config=config)
    for i in range(size):
        coord.add_member(M.MemberInfo(i, origin_of(i), NODES[i % len(NODES)], entity_id(i), i % 3 != 0))
    return coord


def _bench_origin_lookup(cls: type, size: int) -> Any:
    coord = _bench_group(cls, size)
    ids = [entity_id(i * size // 16) for i in range(16)]
    lookup = coord.origin_hash_for_entity_id
    return lambda: [lookup(e) for e in ids]


def _bench_healthy_count(cls: type, size: int) -> Any:
    return _bench_group(cls, size).healthy_count


def _bench_health(cls: type, size: int) -> Any:
    return _bench_group(cls, size).health


def _bench_route(cls: type, size: int) -> Any:
    coord = _bench_group(cls, size)
    ctx = RequestContext()
    return lambda: coord.route_event(ctx)


from meshspec.lockstep import BenchCase  # noqa: E402

BENCH = (
    BenchCase("origin_hash_for_entity_id x16", (10, 100, 255), _bench_origin_lookup),
    BenchCase("healthy_count", (10, 100, 255), _bench_healthy_count),
    BenchCase("health", (10, 100, 255), _bench_health),
    BenchCase("route_event (round robin)", (10, 100, 255), _bench_route),
)

# -- the bounded exploration (meshspec explore) ---------------------------------------------
#
# State identity (the view).  No rule moves the clock (the coordinator's LB breaker never
# sees time pass), so the clock needs no abstraction.  The view is the abstract state
# (coordinator, LB, scheduler), the RNG (the random strategies draw from it) and the ghost
# state a later step reads: the registry, the next origin and entity seeds, the entities
# seen (in order: the observation samples by position), the members added unhealthy whose
# LB endpoint is still Healthy, the cap.  Left out: `routes` (equal to the LB connection
# counts in every state that passed route_slots_never_released), the violation messages
# (None in every state that passed the invariants), `flags` (witnesses only, evaluated on
# every edge before deduplication) and the per-step memo.

def explore_view(s: GroupCoordinatorSubject) -> tuple:
    """The explorer's state identity: abstract state, RNG and the ghost state later steps read."""
    # plain sorted tuples, no canon(): the explorer fingerprints the repr
    return (s.abstract(), s.rng.getstate(), tuple(sorted(s.registry)), s.next_origin, s.next_entity,
            tuple(s.entities_seen), tuple(sorted(s.unsynced)), s.cap)


ALL_NODES = NODES + (DEAD_NODE,)
VETO_ALL = tuple((n, None) for n in NODES)


def gc_init(strategy: str = "round_robin", cap: int = 2, prefill: int = 2, down: int = 1) -> tuple:
    """Init arguments: `prefill` members (the first `down` unhealthy) over nodes 1-4 with tags."""
    return (strategy, cap, prefill, down, (3, 1, 2, 0, -1), 1)


ACTIONS = (
    ("add_member", (2, 3, 2, True)), ("add_member", (5, 1, 3, False)),  # dense; index gap, unhealthy
    ("add_member", (2, 1, 0, True)),                                    # duplicate entity: refused
    ("remove_last", ()),
    ("route_event", ("plain", "a")), ("route_event", ("tagged", "a")),  # no member has the tag
    ("origin_hash_for_entity_id", (0,)), ("origin_hash_for_entity_id", (STRANGER,)),
    ("mark_healthy", (0,)), ("mark_unhealthy", (1,)), ("mark_healthy", (2,)),  # (2: past a gap)
    ("mark_healthy", (99,)), ("mark_unhealthy", (255,)),                     # out of range
    ("update_member_placement", (0, 3, 4)), ("update_member_placement", (1, 2, 0)),  # fresh; duplicate
    ("on_node_recovery", (1,)), ("on_node_recovery", (DEAD_NODE,)),
    ("node_failure", (2, True)), ("node_failure", (1, False)),
    ("register_origin", (origin_of(0),)), ("unregister_origin", (origin_of(0),)),
    ("health", ()), ("healthy_count", ()), ("member_count", ()), ("members_on_node", (1,)),
    ("members", ()),
    ("place_with_spread", (0, ())), ("place_with_spread", (0, (1,))), ("place_with_spread", (0, ALL_NODES)),
    ("place_member", (0, (2,), ((1, 0.1), (2, 0.9), (3, 0.5)), 0.5, None)),  # the best excluded
    ("place_member", (0, (), VETO_ALL, None, None)),                    # every node vetoed
    ("set_node", (4, 3)), ("remove_node", (2,)), ("set_local_caps", (3,)),
)

EXPLORATION = Exploration(
    inits=(gc_init(),),
    actions=ACTIONS,
    bounds={"small": Bound(2),
            "large": Bound(3, inits=(gc_init(), gc_init("random", cap=1), gc_init(prefill=4, down=2))),
            # 257 members (u8 saturation); the 256 LB endpoints make each state costly
            "saturated": Bound(1, inits=(gc_init(prefill=257, down=0), gc_init(prefill=257, down=1)),
                               actions=(("health", ()), ("member_count", ()), ("mark_unhealthy", (0,))))},
    view=explore_view,
    mutant_bounds={
        "spread_fallback_to_excluded": "small", "index_drift_after_update": "small",
        "index_stale_after_remove": "small", "health_by_index_scan": "small",
        "health_without_guard": "small", "healthy_count_drift_on_placement": "small",
        "healthy_count_drift_on_repeated_mark": "small", "counts_wrap_u8": "saturated",
        "health_compares_saturated_counts": "saturated", "route_releases_slot": "small",
        "health_flag_without_lb": "small", "recovery_ignores_registry": "small",
        "spread_reason_not_narrowed": "small", "place_member_ignores_exclusion": "small",
    },
)


COMPONENT = Component(
    name="group_coordinator",
    summary="net-mesh 0.25.0 compute/group_coord.rs: group members routed through the load "
            "balancer, health, placement updates, node recovery, spread placement.",
    model_cls=M.GroupCoordinator, impl_cls=ImplCoordinator, subject_cls=GroupCoordinatorSubject,
    machine_cls=GroupCoordinatorMachine, invariants=INVARIANTS, mutants=mutants_of("group_coordinator"),
    errors=(M.GroupError,), operations=OPERATIONS, bench=BENCH, exploration=EXPLORATION,
)
