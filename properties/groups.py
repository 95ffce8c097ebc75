"""Properties of the replica, fork and standby groups: subject, invariants, machine, exploration.

The harness (`GroupsSubject`) holds one group (model or impl, spawned again by the
`spawn` rule), a scheduler of the same side over nodes 1-4, 1-5 or 1-16 (the local node
is 1), and one `DaemonRegistry` with its failure-injection hook. Nodes fail (`fail_node`:
the scheduler forgets the node, then the group's `on_node_failure`) and come back
(`recover_node`). Registry rules act on foreign origins (daemons outside the group)
and read member snapshots; a member origin is never unregistered by the harness, so
a stranded slot is the group's doing.

Delivery order: upstream `on_event_delivered` buffers whatever event it is given, so
besides fresh increasing sequences the harness delivers out of order: a retransmission
of an event this group was given (`deliver_again`; back 0 is a duplicate of the last),
a later event first (`deliver_ahead`, leaving holes) and a skipped one late
(`deliver_late`), also in a five-step rule around a sync and a promote.

Ghost state (independent of the group's own bookkeeping): for a standby group, what
each standby daemon must hold (`holds`: set by a sync that reached it, emptied by a
re-placement), the sync point it holds (`through`: the snapshot's highest sequence, as
read from the registry) and what the active must hold (`active_expected`: every
delivered event, and after a promote the new active's holdings plus the buffered events
strictly above its sync point: upstream's documented filter, so an event buffered at or
below that point that the snapshot did not cover is skipped, witness
`replay_skipped_event_below_sync_point`). A daemon may hold an event as often as it was
delivered, never more (`copies`). The checks around each rule are recorded as violation
messages the invariants read.

Boundaries (drawn with `meshspec.strategies.around`, one sometimes-witness each, see
BOUNDARY_WITNESSES): member counts (u8) 0-2, 4-6 and 254-255; a bulk failure of 4-6
member nodes with every re-placement refused, then a try_recover tick (its cap of 4
slots per tick, with free nodes to spare); the term re-seated near u64::MAX (the
documented `_term` hook) so it saturates; event sequences jumping near u64::MAX. The
groups have no deadline of their own: the clock only reaches the coordinator's
balancer, whose breakers never trip here (routing records no failures), so there is no
clock rule.

What the machine reaches: all three kinds with 1-16 members, spawns with reused seeds
(RegistryFailed), spread exhaustion (PlacementFailed), injected placement, restore and
deliver failures at chosen positions, partial syncs, promotes with and without a
healthy standby, fallback promotes of never-synced standbys, recoveries, unordered
buffers replayed.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

import impl.scheduler as impl_scheduler
import model.scheduler as model_scheduler
from impl.groups import Group as ImplGroup
from meshspec.explore import Bound, Exploration
from meshspec.lockstep import BenchCase, Component, Subject, always, ghost_flag, sometimes
from meshspec.machine import LockstepMachine
from meshspec.strategies import U64, around
from model import groups as M
from model.group_coordinator import GroupError, NoHealthyMember, PlacementFailed, RegistryFailed
from model.load_balancer import RequestContext, Strategy
from model.scheduler import CapabilityFilter, ScoreTable, TieBreakContext

LOCAL = 1
#: the cluster: 4, 5 or all 16 nodes at init (16: room to re-place a backlog of 5 slots at once)
NODES = tuple(range(1, 17))
U8_MAX = 255
SCHEDULERS = {"model": model_scheduler.Scheduler, "impl": impl_scheduler.Scheduler}
STRATEGIES = ("round_robin", "random", "consistent_hash", "least_connections")
#: score tables for the *_with_placement variants (None = veto)
TABLES = {0: ((), 0.5), 1: (((1, 0.1), (2, 0.9), (3, 0.5), (4, 0.7)), 0.2), 2: (((2, None), (3, None)), 1.0)}


def seed_of(b: int) -> bytes:
    return bytes([b]) * 32


def foreign_origin(k: int) -> int:
    return 0xF0F0_0000 + k


def table(t: int) -> tuple[ScoreTable, TieBreakContext]:
    scores, default = TABLES[t]
    return ScoreTable(scores, default), TieBreakContext()


def context(key: str) -> RequestContext:
    return RequestContext(routing_key=key) if key else RequestContext()


class GroupsSubject(Subject):
    """One group, a scheduler of the same side, the daemon registry and ghost state."""

    def init(self, kind: str, count: int, seed: int, strategy: str, node_count: int) -> None:
        self.scheduler = SCHEDULERS[self.side](LOCAL, (), {n: () for n in NODES[:node_count]})
        self.registry = M.DaemonRegistry()
        self.strategy = strategy
        self.next_seq = 1
        #: every sequence delivered to this group with success (in order), and how often any
        #: daemon was given it: redelivery draws from `sent`; a daemon may hold a sequence at
        #: most `copies[seq]` times
        self.sent: list[int] = []
        self.copies: Counter[int] = Counter()
        #: sequences skipped by an out-of-order delivery, to be delivered late
        self.holes: list[int] = []
        self.violations: dict[str, str] = {}
        self.flags: set[str] = set()
        self.sut = None
        self.spawn(kind, count, seed, -1)

    def abstract(self) -> Any:
        return (self.sut.abstract(), self.registry.abstract(), self.scheduler.abstract())

    def observations(self) -> dict[str, Any]:
        s = self.sut
        return {"counts": (s.member_count(), s.healthy_count(), s.health(), s.term(), s.group_id()),
                "standby": tuple((s.synced_through(i), s.ever_synced(i)) for i in range(len(s.members())))}

    # -- helpers --------------------------------------------------------------------------------
    def _violate(self, name: str, message: str) -> None:
        self.violations.setdefault(name, message)

    def _standby(self) -> bool:
        return self.sut.kind() == "standby"

    def _placer_args(self, t: int) -> tuple:
        return table(t) if t >= 0 else ()

    def _reset_ghost(self) -> None:
        n = len(self.sut.members())
        #: multisets as sorted tuples (a redelivered event is held twice)
        self.holds: dict[int, tuple[int, ...]] = {i: () for i in range(n)}
        self.through: dict[int, int] = {i: 0 for i in range(n)}  # the sync point each one holds
        self.active_expected: tuple[int, ...] = ()
        self.sent = []  # a redelivery retransmits an event this group was given

    def _active(self) -> Optional[int]:
        return self.sut.active_index() if self._standby() else None

    def _state(self, origin: int) -> tuple[int, ...]:
        return self.registry.state_of(origin) or ()

    # -- spawning and scaling -------------------------------------------------------------------
    def spawn(self, kind: str, count: int, seed: int, placed: int) -> int:
        if count == U8_MAX:
            self.flags.add("member_count_at_u8_limit")
        options = dict(strategy=Strategy(self.strategy), clock=self.clock, rng=self.rng)
        if placed >= 0:
            group = self.cls.spawn_with_placement(kind, count, seed_of(seed), self.scheduler, self.registry,
                                                  *table(placed), **options)
        else:
            group = self.cls.spawn(kind, count, seed_of(seed), self.scheduler, self.registry, **options)
        self._check_spread([], group.members(), "spawn")
        self.sut = group
        self._reset_ghost()
        return group.group_id()

    def _check_spread(self, before: list, after: list, op: str) -> None:
        new = after[len(before):]
        old_nodes = {m.node_id for m in before}
        nodes = [m.node_id for m in new]
        if len(set(nodes)) != len(nodes) or old_nodes & set(nodes):
            self._violate("no_colocated_replicas", f"{op} placed new members on {nodes} (others on {sorted(old_nodes)})")

    def _refused_placement(self, exc: Exception) -> None:
        if isinstance(exc, PlacementFailed):
            self.flags.add("placement_refused_when_nodes_ran_out")

    def scale_to(self, n: int, placed: int) -> None:
        if n == U8_MAX:
            self.flags.add("member_count_at_u8_limit")
        before = self.sut.members()
        try:
            if placed >= 0:
                self.sut.scale_to_with_placement(n, self.scheduler, self.registry, *table(placed))
            else:
                self.sut.scale_to(n, self.scheduler, self.registry)
        except GroupError as exc:
            self._refused_placement(exc)
            raise
        finally:
            self._check_spread(before, self.sut.members(), "scale_to")

    # -- routing and delivery -------------------------------------------------------------------
    def route_event(self, key: str) -> int:
        members = self.sut.members()
        try:
            origin = self.sut.route_event(context(key))
        except NoHealthyMember:
            if any(m.healthy for m in members):
                self._violate("routes_only_to_healthy_members", "NoHealthyMember with healthy members")
            self.flags.add("route_refused_dead_group")
            raise
        self._check_route(members, origin)
        return origin

    def _check_route(self, members: list, origin: int) -> None:
        if self._standby():
            if origin != members[self.sut.active_index()].origin_hash:
                self._violate("routes_only_to_healthy_members", f"standby routed to {origin:#x}, not the active")
        elif not any(m.origin_hash == origin and m.healthy for m in members):
            self._violate("routes_only_to_healthy_members", f"routed to {origin:#x}, no healthy member")

    def _fresh(self, gap: int = 0) -> Optional[int]:
        """The next sequence, `gap` of them skipped (kept as holes); None past u64::MAX."""
        seq = self.next_seq + gap
        if seq > M.U64_MAX:
            return None
        self.holes.extend(range(self.next_seq, seq))
        self.next_seq = seq + 1
        return seq

    def deliver(self, key: str, seq: Optional[int] = None) -> Optional[int]:
        """Deliver event `seq` (by default the next fresh sequence) through the group."""
        seq = self._fresh() if seq is None else seq
        if seq is None:
            return None  # the sequence space is used up: nothing new to deliver
        members, buffered = self.sut.members(), self.sut.buffered_events()
        origin = self.sut.deliver(self.registry, seq, context(key))
        self._check_route(members, origin)
        self.sent.append(seq)
        self.copies[seq] += 1
        if self._standby():
            self.active_expected = tuple(sorted(self.active_expected + (seq,)))
            if buffered and seq <= buffered[-1]:
                self.flags.add("buffered_out_of_order")
        if seq == M.U64_MAX:
            self.flags.add("sequence_at_u64_max_delivered")
        return origin

    def deliver_again(self, back: int, key: str) -> Optional[int]:
        """Redeliver the `back`-th latest delivered event (0: the last one, a duplicate):
        at-least-once delivery; the group buffers whatever it is given (upstream
        `on_event_delivered` takes any event)."""
        if not self.sent:
            return self.deliver(key)
        return self.deliver(key, self.sent[-1 - back % len(self.sent)])

    def deliver_ahead(self, gap: int, key: str) -> Optional[int]:
        """Deliver a later event first, skipping `gap` sequences (holes, delivered late)."""
        seq = self._fresh(gap)
        return None if seq is None else self.deliver(key, seq)

    def deliver_late(self, pick: int, key: str) -> Optional[int]:
        """Deliver a skipped sequence, below the last one delivered (maybe below a sync point,
        where a promote's replay skips it by design: see `_promoted`)."""
        if not self.holes:
            return self.deliver(key)
        return self.deliver(key, self.holes.pop(pick % len(self.holes)))

    def jump_sequence(self, to: int) -> None:
        """Later events start at `to` (never backwards): sequences near u64::MAX."""
        self.next_seq = max(self.next_seq, to)

    # -- failures and recovery ------------------------------------------------------------------
    def _around_promotion(self, op: Any, may_promote: bool) -> Any:
        """Run `op`; check the term and the active's events across a promote it may make."""
        term, active, buffer = self.sut.term(), self._active(), self.sut.buffered_events()
        faults = self.registry.pending_faults("deliver")
        out = op()
        promoted = self._standby() and self.sut.active_index() != active
        if promoted:
            new = self.sut.active_index()
            self._promoted(active, new, buffer)
            if faults:  # a replayed delivery may have been dropped (upstream ignores the error)
                self.active_expected = tuple(sorted(self._state(self.sut.members()[new].origin_hash)))
                self.flags.add("replay_delivery_failed")
            if buffer:
                self.flags.add("promote_replayed_events")
            if any(a >= b for a, b in zip(buffer, buffer[1:])):
                self.flags.add("promote_replayed_unordered_buffer")
        bump = int(promoted) + int(bool(out) and isinstance(out, list) and may_promote is None)
        if bump and term == M.U64_MAX:
            self.flags.add("term_saturated_at_u64_max")
        if self.sut.term() != min(term + bump, M.U64_MAX):
            self._violate("term_bumps_on_promote_and_recovery",
                          f"term {term} -> {self.sut.term()} (promoted: {promoted}, recovered: {out})")
        return out

    def _promoted(self, old: int, new: int, buffer: list[int]) -> None:
        """Ghost of a promote (upstream contract): the old active keeps what it holds; the new
        one holds what it held plus every buffered event strictly above its sync point. An
        event buffered at or below that point (delivered late or redelivered) is skipped: a
        snapshot is assumed to cover it."""
        self.holds[old] = self.active_expected
        floor = self.through[new]
        self.active_expected = tuple(sorted(self.holds[new] + tuple(s for s in buffer if s > floor)))
        if any(s <= floor and s not in self.holds[new] for s in buffer):
            self.flags.add("replay_skipped_event_below_sync_point")
        origin = self.sut.members()[new].origin_hash
        if origin in self.registry:
            self.through[new] = max(self._state(origin), default=0)

    def _fresh_daemon(self, index: int) -> None:
        self.holds[index], self.through[index] = (), 0

    def fail_node(self, node: int, placed: int) -> list[int]:
        self.scheduler.remove_node(node)
        before = self.sut.members()

        def op() -> list[int]:
            if placed >= 0:
                return self.sut.on_node_failure_with_placement(node, self.scheduler, self.registry, *table(placed))
            return self.sut.on_node_failure(node, self.scheduler, self.registry)

        try:
            replaced = self._around_promotion(op, True)
        except NoHealthyMember:
            self.flags.add("active_failed_without_standby")
            raise
        affected = [m.index for m in before if m.node_id == node]
        if set(affected) - set(replaced) - {self._active()}:
            self.flags.add("failed_placement_left_slot_registered")
        for i in replaced:
            if i != self._active():
                self._fresh_daemon(i)
        return replaced

    def fail_nodes_unplaced(self, k: int) -> list[int]:
        """Fail the first k nodes that host members, one by one, each with its re-placement
        refused (an injected place fault): a bulk rule for a backlog of unhealthy slots."""
        nodes = sorted({m.node_id for m in self.sut.members()})[:k]
        replaced = []
        for node in nodes:
            self.registry.fail_next("place")
            replaced += self.fail_node(node, -1)
        return replaced

    def seat_term(self, value: int) -> None:
        """The term is re-seated (the documented `_term` hook, both sides): terms near u64::MAX."""
        self.sut._term = value

    def recover_node(self, node: int) -> None:
        self.scheduler.add_node(node, ())
        self.sut.on_node_recovery(node, self.registry)

    def try_recover(self) -> list[int]:
        members, active = self.sut.members(), self._active()
        eligible = [m.index for m in members if not m.healthy and m.index != active]
        healthy_nodes = {m.node_id for m in members if m.healthy}
        up = set(self.scheduler.query_candidates(CapabilityFilter()))
        free = [n for n in up | {LOCAL} if n not in healthy_nodes]
        room = len(up - healthy_nodes)  # nodes a re-placement can surely use
        no_fault = not self.registry.pending_faults("place")
        out = self._around_promotion(lambda: self.sut.try_recover(self.scheduler, self.registry), None)
        after = {m.index: m.healthy for m in self.sut.members()}
        if len(out) > M.MAX_RECOVERIES_PER_TICK or any(i not in eligible or not after[i] for i in out):
            self._violate("try_recover_is_bounded_and_makes_progress", f"recovered {out} of eligible {eligible}")
        if eligible and free and no_fault and not out:
            self._violate("try_recover_is_bounded_and_makes_progress",
                          f"nothing recovered of {eligible} although nodes {free} were free")
        for i in out:
            if i != active:
                self._fresh_daemon(i)
        if out:
            self.flags.add("try_recover_replaced_slot")
        if len(eligible) > M.MAX_RECOVERIES_PER_TICK < room and len(out) == M.MAX_RECOVERIES_PER_TICK:
            self.flags.add("try_recover_stopped_at_its_cap")
        return out

    # -- standby: sync and promote --------------------------------------------------------------
    def sync_standbys(self) -> int:
        active = self.sut.active_index()
        standbys = [i for i in range(len(self.sut.members())) if i != active]
        skips = self.registry.pending_faults("restore")
        reach = min([s for s in skips if s < len(standbys)], default=len(standbys))
        active_origin = self.sut.members()[active].origin_hash
        registered = active_origin in self.registry
        try:
            through = self.sut.sync_standbys(self.registry)
        finally:
            if registered:
                self._after_sync(standbys[:reach], active_origin)
        if through == M.U64_MAX:
            self.flags.add("synced_through_u64_max")
        return through

    def _after_sync(self, reached: list[int], active_origin: int) -> None:
        state = self._state(active_origin)
        through = max(state, default=0)
        members = self.sut.members()
        active = self.sut.active_index()
        if self.sut.synced_through(active) != through:
            self._violate("sync_records_per_standby_progress",
                          f"the active's snapshot covers {through}, recorded {self.sut.synced_through(active)}")
        self.through[active] = through  # upstream records the active's too
        for i in reached:
            self.holds[i], self.through[i] = self.active_expected, through
            if self._state(members[i].origin_hash) != state:
                self._violate("sync_restores_standbys", f"standby {i} holds {self._state(members[i].origin_hash)}, "
                                                        f"the active {state}")
            if self.sut.synced_through(i) != through or not self.sut.ever_synced(i):
                self._violate("sync_records_per_standby_progress",
                              f"standby {i} restored through {through}, recorded {self.sut.synced_through(i)}")
        if len(reached) < len(members) - 1:
            self.flags.add("sync_partially_failed")

    def promote(self, placed: int) -> int:
        before = self.abstract()
        members = self.sut.members()
        active = self.sut.active_index()
        cands = [i for i in range(len(members)) if i != active and members[i].healthy]
        synced = [i for i in cands if self.sut.ever_synced(i)]
        progress = {i: self.sut.synced_through(i) for i in cands}

        def op() -> int:
            if placed >= 0:
                return self.sut.promote_with_placement(self.registry, self.scheduler, *table(placed))
            return self.sut.promote(self.registry, self.scheduler)

        try:
            origin = self._around_promotion(op, True)
        except GroupError:
            if self.abstract() != before:
                self._violate("promote_is_all_or_nothing", "a failed promote changed the group or the registry")
            self.flags.add("promote_refused_without_healthy_standby")
            raise
        chosen = self.sut.active_index()
        top = max((progress[i] for i in synced), default=None)
        if chosen not in cands or (synced and (chosen not in synced or progress[chosen] != top)):
            self._violate("promote_prefers_synced_standby",
                          f"promoted {chosen}; healthy standbys {cands}, synced {synced}")
        if not synced:
            self.flags.add("promoted_never_synced_standby")
        return origin

    # -- the registry on its own (foreign daemons) and the fault hook --------------------------
    def inject(self, op: str, skip: int) -> None:
        self.registry.fail_next(op, skip)

    def registry_register(self, k: int, member: bool) -> None:
        members = self.sut.members()
        origin = members[k % len(members)].origin_hash if member else foreign_origin(k)
        try:
            self.registry.register(origin)
        except RegistryFailed:
            self.flags.add("duplicate_registration_refused")
            raise

    def registry_unregister(self, k: int) -> bool:
        return self.registry.unregister(foreign_origin(k))

    def registry_replace(self, k: int) -> None:
        self.registry.replace(foreign_origin(k))

    def registry_deliver(self, k: int) -> None:
        seq = self._fresh()
        if seq is not None:
            self.registry.deliver(foreign_origin(k), seq)
            self.copies[seq] += 1

    def registry_restore(self, k: int, member: int) -> None:
        members = self.sut.members()
        snap = self.registry.snapshot(members[member % len(members)].origin_hash)
        self.registry.restore(foreign_origin(k), snap)

    def registry_snapshot(self, k: int, member: bool) -> M.Snapshot:
        members = self.sut.members()
        return self.registry.snapshot(members[k % len(members)].origin_hash if member else foreign_origin(k))

    # -- queries --------------------------------------------------------------------------------
    def queries(self) -> tuple:
        s = self.sut
        lineage = s.verify_lineage() if s.kind() == "fork" else None
        if lineage:
            self.flags.add("fork_lineage_verified")
        active = s.active_index() if self._standby() else None
        return (s.kind(), s.group_id(), s.term(), s.members(), s.health(), s.member_count(),
                s.healthy_count(), lineage, active, s.buffered_events(), s.synced_through(0))


# -- invariants -----------------------------------------------------------------------------------

def _flag(name: str, doc: str) -> Any:
    """A reachability witness: the harness set flag `name` at some step."""
    return ghost_flag("flags", name, doc[0].upper() + doc[1:] + ".")


def _ghost(name: str, doc: str) -> Any:
    """A safety invariant over the verdict the harness recorded around the rules that can break it."""
    def check(s: GroupsSubject) -> None:
        assert name not in s.violations, s.violations[name]
    check.__name__, check.__doc__ = name, doc[0].upper() + doc[1:] + "."
    return check
    return check


no_colocated_replicas = _ghost(
    "no_colocated_replicas",
    "spawn / scale_to never put two members of a group on one node (§2.6 item 28); short of nodes they fail")
sync_restores_standbys = _ghost(
    "sync_restores_standbys", "every standby a sync reached holds the active's state afterwards (§2.6 item 31)")
sync_records_per_standby_progress = _ghost(
    "sync_records_per_standby_progress",
    "every standby a sync reached records synced_through = the snapshot's, even when a later one failed (§2.6 31)")
promote_is_all_or_nothing = _ghost(
    "promote_is_all_or_nothing", "a promote that fails changes nothing (§2.6 item 30)")
promote_prefers_synced_standby = _ghost(
    "promote_prefers_synced_standby",
    "promote picks a healthy standby, a synced one (highest synced_through) when any has synced (§2.6 31)")
term_bumps_on_promote_and_recovery = _ghost(
    "term_bumps_on_promote_and_recovery",
    "the term rises by one on every promote and every try_recover that recovered a slot, else stays (§2.6 32)")
routes_only_to_healthy_members = _ghost(
    "routes_only_to_healthy_members",
    "routing answers a healthy member (standby: the active); NoHealthyMember only when none is healthy")
try_recover_is_bounded_and_makes_progress = _ghost(
    "try_recover_is_bounded_and_makes_progress",
    "try_recover re-places at most 4 unhealthy non-active slots, and at least one when a node is free")


def every_slot_registered(s: GroupsSubject) -> None:
    """Every member's origin is registered: no slot is ever stranded (§2.6 item 29)."""
    for m in s.sut.members():
        assert m.origin_hash in s.registry, f"member {m.index} ({m.origin_hash:#x}) is not registered"


def no_event_applied_twice(s: GroupsSubject) -> None:
    """No daemon applied an event more often than delivered, a standby active no more than expected (§2.6 31)."""
    for origin, state in s.registry.abstract()[0]:
        if len(set(state)) == len(state):
            continue  # every event at most once, and each was delivered at least once
        for seq, n in Counter(state).items():
            assert n <= s.copies[seq], f"daemon {origin:#x} applied {seq} {n} times of {s.copies[seq]}: {state}"
    if s.sut.kind() == "standby":
        active = s.sut.members()[s.sut.active_index()]
        held = s._state(active.origin_hash)
        if len(set(held)) != len(held) or not set(held) <= set(s.active_expected):
            extra = Counter(held) - Counter(s.active_expected)
            assert not extra, f"active {active.index} applied {sorted(extra.elements())} once more than expected"


def no_event_lost_after_promote(s: GroupsSubject) -> None:
    """The standby group's active holds exactly the events delivered to it and those a promote keeps."""
    if s.sut.kind() != "standby":
        return
    active = s.sut.members()[s.sut.active_index()]
    held = tuple(sorted(s._state(active.origin_hash)))
    assert held == s.active_expected, f"active {active.index} holds {list(held)}, expected {list(s.active_expected)}"


WITNESSES = {
    "placement_refused_when_nodes_ran_out": "spawn or scale_to answered PlacementFailed: too few nodes for the spread",
    "failed_placement_left_slot_registered": "on_node_failure could not re-place a slot; it stayed registered, unhealthy",
    "active_failed_without_standby": "the standby active's node failed with no healthy standby (NoHealthyMember)",
    "promote_refused_without_healthy_standby": "promote answered an error (no healthy standby)",
    "promote_replayed_events": "a promote ran with buffered events to replay",
    "promoted_never_synced_standby": "promote fell back to a standby that never synced",
    "sync_partially_failed": "sync_standbys restored some standbys and then met an injected restore failure",
    "try_recover_replaced_slot": "try_recover re-placed at least one slot",
    "route_refused_dead_group": "routing answered NoHealthyMember (every member down)",
    "duplicate_registration_refused": "the registry refused to register an origin twice",
    "fork_lineage_verified": "a fork group's lineage verified",
    "buffered_out_of_order": "a standby group buffered an event at or below the last buffered sequence",
    "promote_replayed_unordered_buffer": "a promote replayed a buffer that was not strictly increasing",
    "replay_skipped_event_below_sync_point": "a promote skipped a buffered event at or below the new active's "
                                             "sync point that its snapshot did not cover (upstream's filter)",
}

#: Boundary classes (the rules' `around` draws), each reached exactly within the ci budget.
BOUNDARY_WITNESSES = {
    "member_count_at_u8_limit": "spawn or scale_to asked for 255 members, the u8 limit",
    "try_recover_stopped_at_its_cap": "try_recover had more than 4 eligible slots and free nodes, and re-placed 4",
    "term_saturated_at_u64_max": "a promote or recovery bumped a term already at u64::MAX (it saturates)",
    "sequence_at_u64_max_delivered": "an event with sequence u64::MAX was delivered",
    "synced_through_u64_max": "sync_standbys answered through_seq u64::MAX",
}
WITNESSES.update(BOUNDARY_WITNESSES)

#: The boundary and out-of-order witnesses aim at fuzz-only rules; the explorer's alphabet has none.
FUZZ_ONLY_WITNESSES = ("buffered_out_of_order", "promote_replayed_unordered_buffer",
                       "replay_skipped_event_below_sync_point", *BOUNDARY_WITNESSES)

INVARIANTS = (
    always(every_slot_registered), always(routes_only_to_healthy_members), always(sync_restores_standbys), always(sync_records_per_standby_progress),
    always(promote_is_all_or_nothing), always(promote_prefers_synced_standby), always(no_event_applied_twice),
    always(no_event_lost_after_promote), always(no_colocated_replicas),
    always(term_bumps_on_promote_and_recovery),
    always(try_recover_is_bounded_and_makes_progress),
    *(sometimes(_flag(name, doc)) for name, doc in WITNESSES.items()),
)


# -- the machine ----------------------------------------------------------------------------------

KINDS = st.sampled_from(M.KINDS)
#: member counts (u8): 0 and 1 (refused; a standby needs 2), one past try_recover's cap of 4
#: per tick, and the u8 limit 255, each exactly and +-1
COUNTS = around([0, 2, M.MAX_RECOVERIES_PER_TICK + 1, U8_MAX], st.integers(0, 6), lo=0, hi=U8_MAX, share=20)
NEAR_U64_MAX = around([M.U64_MAX - 1], st.integers(M.U64_MAX - 8, M.U64_MAX), lo=U64[0], hi=U64[1], share=50)
INIT_COUNTS = around([M.MAX_RECOVERIES_PER_TICK + 1], st.integers(2, 4), lo=2, hi=6, share=50)
PLACED = st.sampled_from([-1, -1, -1, 0, 1, 2])
KEYS = st.sampled_from(["", "", "a", "b"])


class GroupsMachine(LockstepMachine):
    """Model and impl groups in lockstep over their own schedulers and one registry each."""

    @initialize(kind=st.sampled_from(M.KINDS + ("standby",)), count=INIT_COUNTS, seed=st.integers(0, 3),
                strategy=st.sampled_from(STRATEGIES), node_count=st.sampled_from([4, 5, len(NODES)]))
    def init(self, kind: str, count: int, seed: int, strategy: str, node_count: int) -> None:
        self.step("init", kind, min(count, node_count), seed, strategy, node_count)  # spread: one node each

    @rule(kind=KINDS, count=COUNTS, seed=st.integers(0, 5), placed=PLACED)
    def spawn(self, kind: str, count: int, seed: int, placed: int) -> None:
        self.step("spawn", kind, count, seed, placed)

    @rule(n=COUNTS, placed=PLACED)
    def scale_to(self, n: int, placed: int) -> None:
        self.step("scale_to", n, placed)

    @rule(key=KEYS)
    def route_event(self, key: str) -> None:
        self.step("route_event", key)

    @rule(key=KEYS)
    def deliver(self, key: str) -> None:
        self.step("deliver", key)

    @rule(key=KEYS)
    def deliver_more(self, key: str) -> None:
        self.step("deliver", key)

    @rule(how=st.sampled_from(["again", "again", "ahead", "late"]), n=st.integers(0, 3), key=KEYS)
    def deliver_out_of_order(self, how: str, n: int, key: str) -> None:
        """Redeliveries (n = 0: a duplicate of the last event), later events first, skipped ones late."""
        if how == "again":
            self.step("deliver_again", n, key)
        elif how == "ahead":
            self.step("deliver_ahead", n + 1, key)
        else:
            self.step("deliver_late", n, key)

    @rule(back=st.integers(0, 3))
    def sync_unordered_promote(self, back: int) -> None:
        """An event ahead of a skipped one, a sync, a new event, then a retransmission of an
        older one (back > 0) or the skipped one, late, below the sync point (back = 0), and a
        promote: the replay filter meets a buffer out of sequence order (as five steps)."""
        self.step("deliver_ahead", 1, "")
        self.step("sync_standbys")
        self.step("deliver", "")
        if back:
            self.step("deliver_again", back, "")
        else:
            self.step("deliver_late", 0, "")
        self.step("promote", -1)

    @rule(data=st.data())
    def near_u64_max(self, data: Any) -> None:
        """Re-seat the next event sequence or the term (the documented `_term` hook) near u64::MAX."""
        value = data.draw(NEAR_U64_MAX, label="value")
        if data.draw(st.booleans(), label="term"):
            self.step("seat_term", value)
        else:
            self.step("jump_sequence", value)

    @rule(k=around([M.MAX_RECOVERIES_PER_TICK + 1], st.integers(1, 3), lo=1, hi=8, share=60))
    def fail_nodes_then_recover(self, k: int) -> None:
        """Fail k member nodes at once, each re-placement refused, then one recovery tick: a
        backlog around try_recover's cap of 4 slots per tick (as two steps)."""
        self.step("fail_nodes_unplaced", k)
        self.step("try_recover")

    @rule(data=st.data(), placed=PLACED)
    def fail_node(self, data: Any, placed: int) -> None:
        nodes = sorted({m.node_id for m in self.ls.model.sut.members()}) or list(NODES)
        self.step("fail_node", data.draw(st.sampled_from(nodes), label="node"), placed)

    @rule(data=st.data())
    def recover_node(self, data: Any) -> None:
        """A node relative to the cluster as it stands: one hosting a member (maybe a demoted
        active) or one that failed; any node when there is none."""
        subject = self.ls.model
        up = set(subject.scheduler.query_candidates(CapabilityFilter())) | {LOCAL}
        nodes = sorted({m.node_id for m in subject.sut.members()} | (set(NODES) - up)) or list(NODES)
        self.step("recover_node", data.draw(st.sampled_from(nodes), label="node"))

    @rule()
    def try_recover(self) -> None:
        self.step("try_recover")

    @rule()
    def sync_standbys(self) -> None:
        self.step("sync_standbys")

    @rule(placed=PLACED)
    def promote(self, placed: int) -> None:
        self.step("promote", placed)

    @rule()
    def sync_then_promote(self) -> None:
        """A sync followed at once by a promote (the upstream tests' order), as two steps."""
        self.step("sync_standbys")
        self.step("promote", -1)

    @rule(op=st.sampled_from(M.FAULT_OPS + ("restore", "restore")), skip=st.integers(0, 2))
    def inject(self, op: str, skip: int) -> None:
        self.step("inject", op, skip)

    @rule(op=st.sampled_from(["register", "unregister", "replace", "deliver", "restore", "snapshot"]),
          k=st.integers(0, 3), member=st.integers(0, 3))
    def registry(self, op: str, k: int, member: int) -> None:
        """The registry on its own: one rule, so its six operations do not crowd out the groups."""
        if op == "register":
            self.step("registry_register", k, member >= 2)
        elif op == "snapshot":
            self.step("registry_snapshot", k, member >= 2)
        elif op == "restore":
            self.step("registry_restore", k, member)
        elif op == "unregister":
            self.step("registry_unregister", k)
        elif op == "replace":
            self.step("registry_replace", k)
        else:
            self.step("registry_deliver", k)

    @rule()
    def queries(self) -> None:
        self.step("queries")


OPERATIONS = (
    "spawn", "spawn_with_placement", "scale_to", "scale_to_with_placement", "route_event", "deliver",
    "on_node_failure", "on_node_failure_with_placement", "on_node_recovery", "try_recover",
    "sync_standbys", "promote", "promote_with_placement", "verify_lineage", "kind", "group_id", "term",
    "members", "health", "member_count", "healthy_count", "active_index", "synced_through",
    "ever_synced", "buffered_events", "abstract",
)


# The curated mutants live in mutants/groups.py; the registry reads them lazily.
from meshspec.registry import mutants_of  # noqa: E402


# -- benchmarks: routing an event through a replica group -----------------------------------------

def _bench_route(cls: type, size: int) -> Any:
    import random

    from meshspec.clock import FakeClock
    from model.load_balancer import LoadBalancerConfig

    side = "impl" if issubclass(cls, ImplGroup) else "model"
    scheduler = SCHEDULERS[side](0, ("none",), {n: () for n in range(1, size + 1)})
    config = LoadBalancerConfig(max_connections_per_endpoint=2**32 - 1)
    group = cls.spawn("replica", size, seed_of(7), scheduler, M.DaemonRegistry(), clock=FakeClock(0),
                      rng=random.Random(1), lb_config=config)
    ctx = RequestContext()
    return lambda: group.route_event(ctx)


BENCH = (BenchCase("route_event through a replica group", (8, 64, 255), _bench_route),)


# -- the bounded exploration ------------------------------------------------------------------------

def explore_view(s: GroupsSubject) -> tuple:
    """Abstract state, RNG, the next sequence and the ghost holdings (violations and flags left out)."""
    return (s.abstract(), s.rng.getstate(), s.next_seq, tuple(sorted(s.holds.items())), s.active_expected)


def groups_init(kind: str = "standby", count: int = 3, node_count: int = 4) -> tuple:
    return (kind, count, 0, "round_robin", node_count)


ACTIONS = (
    ("deliver", ("",)), ("sync_standbys", ()), ("promote", (-1,)), ("try_recover", ()),
    ("fail_node", (2, -1)), ("fail_node", (1, -1)), ("recover_node", (2,)),
    ("inject", ("restore", 1)), ("inject", ("place", 0)),
    ("scale_to", (4, -1)), ("route_event", ("",)), ("queries", ()),
)

STANDBY2, STANDBY3 = groups_init("standby", 2), groups_init("standby", 3)
PARTIAL_SYNC = (("deliver", ("",)), ("inject", ("restore", 1)), ("sync_standbys", ()), ("promote", (-1,)))

EXPLORATION = Exploration(
    inits=(groups_init(), groups_init("replica", 2)),
    actions=ACTIONS,
    bounds={
        "small": Bound(2),
        "large": Bound(4),
        # the upstream tests' scenarios, each a few actions deep
        "no_standby": Bound(3, inits=(STANDBY2,), actions=(("inject", ("place", 0)), ("fail_node", (2, -1)),
                                                          ("promote", (-1,)))),
        "fresh_standby": Bound(3, inits=(STANDBY3,), actions=(("sync_standbys", ()), ("fail_node", (3, -1)),
                                                             ("promote", (-1,)))),
        "partial_sync": Bound(4, inits=(STANDBY3,), actions=PARTIAL_SYNC),
        "active_down": Bound(5, inits=(STANDBY2,), actions=(("deliver", ("",)), ("inject", ("place", 0)),
                                                           ("fail_node", (2, -1)), ("fail_node", (1, -1)),
                                                           ("try_recover", ()))),
    },
    view=explore_view,
    mutant_bounds={
        "scale_to_colocates": "small", "unregister_before_placing": "small",
        "promote_demotes_first": "no_standby", "sync_only_bookkeeping": "small",
        "partial_sync_skips_bookkeeping": "small", "promote_ignores_sync_history": "fresh_standby",
        "promote_replays_whole_buffer": "partial_sync", "promote_without_term": "small",
        "recover_without_term": "small", "recover_wipes_active": "active_down",
        "nodes_stale_on_replace": "small", "standby_routes_to_any_healthy": "small", "replay_bisect_left": "partial_sync",
        "recover_early_exit_on_any_healthy": "small",
    },
)


COMPONENT = Component(
    name="groups",
    summary="net-mesh 0.25.0 replica, fork and standby groups over the coordinator, scheduler and "
            "load balancer, with the daemon registry and its injected faults.",
    model_cls=M.Group, impl_cls=ImplGroup, subject_cls=GroupsSubject, machine_cls=GroupsMachine,
    invariants=INVARIANTS, mutants=mutants_of("groups"), errors=(GroupError,), operations=OPERATIONS, bench=BENCH,
    exploration=EXPLORATION,
)
