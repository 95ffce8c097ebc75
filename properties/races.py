"""The seeds' races as protocol models, fixed (net-mesh 0.25.0) and historical (before the fix).

Each race is a small program for `meshspec.interleave`: the shared state of the Rust
code (atomics, locks, etcd) and 2–3 threads whose yields mirror its atomic and lock
operations as semantics.md describes them. The two variants run over the same shared
state and differ exactly in the window the fix closed:

- `packed_latency` (§3.5 #3, #108): `record_push` vs a metrics tick. Historical: sum and
  count are two atomics, added one after the other, and the tick swaps both; a tick
  between the two adds sees a sum without its count. Fixed: one packed word
  `(count << 32) | sum` updated by a CAS loop (fetch_update), swapped by the tick.
- `set_draining` (§3.5 #4, #33): `set_draining(true)` vs `record_push`. Historical:
  publish `draining`, then zero `pushes_since_drain_start`: a push in between is erased.
  Fixed: store zero, then publish.
- `activate_increment` (§3.5 #6, #83): two `activate` calls on two Provisioning shards
  with one slot under max. Historical: `active_count += 1` after the lock is dropped, so
  the second caller's budget re-check reads the old count. Fixed: inside the lock.
- `cooldown_gate` (§3.5 #7): two `scale_up(1)` at the same instant (one cooldown
  window). Historical: the cooldown is checked under a read lock released before the
  write lock is taken. Fixed: lock-free pre-check, then re-check under the write lock.
- `lb_connection_cap` (§2.6 #5): three selectors and a cap of 2. Historical: load the
  count, compare with the cap, then fetch_add. Fixed: CAS-increment only while below.
- `probe_slot_scan` (§2.6 #7, #101): two selectors over two endpoints whose circuits are
  open with the recovery time elapsed. Historical: the filter scan's `is_circuit_open`
  claims the probe slot of every endpoint it looks at, and only the selected one is ever
  used. Fixed: a pure predicate, the claim on the selected endpoint only, released when
  the reservation fails.
- `strict_half_open` (§2.6 #8): two selectors, one recovering endpoint. Historical: the
  loser of the probe-claim CAS still reserves a connection. Fixed: the loser's attempt
  fails; the next attempt's scan sees the probe in flight.
- `etcd_cas_acquire` (§1.5, upstream `tests/concurrent_cas_contention.rs`): two capacity
  coordinators (`impl.capacity.EtcdCoordinator`, counters and all) over one
  `model.etcd.EtcdModel` acquire the same shard. Each attempt is the coordinator's own
  read (`_check_acquire`, one read-only txn), run-record read, lease grant and guarded
  txn (`_guard`: the shard's `mod_revision` and the owner compares), one etcd request
  per step. Historical: the txn carries no guard (a blind write after the read). Dropping
  only the `mod_revision` compare is not enough to break it: the owner compares (owner
  absent, or the same value and lease) fail for the second txn too
  (`OwnerOnlyCoordinator` passes every schedule; a test pins that). The postcondition
  also asks both coordinators' counters to equal the full scan: the loser never commits,
  so its counters must notice the winner's acquire as a foreign write.

Left out: the rest of each operation (what happens before the racing accesses and after
them is sequential and covered by the components' lockstep machines), memory orderings
weaker than sequential consistency (the fixes are about atomicity windows, not
reordering), and wall-clock time (the instants are constants: every racing call happens
at the same `now`).
"""
from __future__ import annotations

from typing import Any, Callable, Generator, Optional

import attrs

from meshspec.interleave import (Access, Program, Shared, acquire, atomic, cas, fetch_add, load,
                                 read_acquire, read_release, release, store, swap)

Gen = Generator[Access, Any, None]
U32 = 0xFFFF_FFFF


@attrs.frozen
class Race:
    """One race: its fixed and historical programs and where the bug came from."""

    name: str
    summary: str
    origin: str
    fixed: Callable[[], Program]
    historical: Callable[[], Program]
    caught_by: str
    fixed_schedules: int  # complete schedules the reduced exhaustive search explores (pinned)

    def program(self, variant: str) -> Program:
        if variant not in VARIANTS:
            raise KeyError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
        return self.fixed() if variant == "fixed" else self.historical()


VARIANTS = ("fixed", "historical")


# =========================================================================== §3.5 #3 (#108)

LATENCY = 7  # ns of every push


def _packed_setup() -> Shared:
    return Shared({"push_latency": 0, "push_sum": 0, "push_count": 0})


def _unpack(word: int) -> tuple[int, int]:
    return word >> 32, word & U32


def _push_packed(s: Shared) -> Gen:
    """record_push: fetch_update on the packed word (count and sum saturate at u32::MAX)."""
    while True:
        word = yield load("push_latency")
        count, total = _unpack(word)
        new = (min(count + 1, U32) << 32) | min(total + LATENCY, U32)
        ok, _ = yield cas("push_latency", word, new)
        if ok:
            return


def _tick_packed(s: Shared) -> Gen:
    """collect_and_reset: one swap of the packed word."""
    word = yield swap("push_latency", 0)
    s.ghost.setdefault("windows", []).append(_unpack(word))


def _push_split(s: Shared) -> Gen:
    yield fetch_add("push_sum", LATENCY)
    yield fetch_add("push_count", 1)


def _tick_split(s: Shared) -> Gen:
    total = yield swap("push_sum", 0)
    count = yield swap("push_count", 0)
    s.ghost.setdefault("windows", []).append((count, total))


def windows_consistent(s: Shared) -> None:
    """Every collected window, and what is left, has sum == count × latency (no zeroed average)."""
    count, total = _unpack(s.mem["push_latency"])
    left = [(count + s.mem["push_count"], total + s.mem["push_sum"])]
    for count, total in s.ghost.get("windows", []) + left:
        assert total == count * LATENCY, (f"a window saw {count} pushes with sum {total}: "
                                          f"average {total // count if count else 0}, not {LATENCY}")


def packed_fixed() -> Program:
    return Program("packed_latency/fixed", _packed_setup, (_push_packed, _push_packed, _tick_packed),
                   postcondition=windows_consistent)


def packed_historical() -> Program:
    return Program("packed_latency/historical", _packed_setup, (_push_split, _push_split, _tick_split),
                   postcondition=windows_consistent)


# =========================================================================== §3.5 #4 (#33)

def _drain_setup() -> Shared:
    return Shared({"pushes_since_drain_start": 3, "draining": False})


def _record_push(s: Shared) -> Gen:
    yield fetch_add("pushes_since_drain_start", 1)


def _set_draining_fixed(s: Shared) -> Gen:
    yield store("pushes_since_drain_start", 0)
    yield store("draining", True)


def _set_draining_historical(s: Shared) -> Gen:
    yield store("draining", True)
    yield store("pushes_since_drain_start", 0)


def pushes_after_drain_counted(s: Shared) -> None:
    """pushes_since_drain_start counts at least every push made after draining was published."""
    published = [i for i, (_, a, _) in enumerate(s.log) if a.loc == "draining" and a.op == "store"]
    if not published:
        return
    after = sum(1 for _, a, _ in s.log[published[0]:] if a.op == "fetch_add")
    counted = s.mem["pushes_since_drain_start"]
    assert counted >= after, (f"{after} push(es) after draining was published, "
                              f"pushes_since_drain_start is {counted}: finalize may stop the shard")


# the check depends on the order of pushes relative to the flag: both are visible
DRAIN_VISIBLE = frozenset({"draining", "pushes_since_drain_start"})


def drain_fixed() -> Program:
    return Program("set_draining/fixed", _drain_setup,
                   (_set_draining_fixed, _record_push, _record_push),
                   postcondition=pushes_after_drain_counted, visible=DRAIN_VISIBLE)


def drain_historical() -> Program:
    return Program("set_draining/historical", _drain_setup,
                   (_set_draining_historical, _record_push, _record_push),
                   postcondition=pushes_after_drain_counted, visible=DRAIN_VISIBLE)


# =========================================================================== §3.5 #6 (#83)

MAX_SHARDS = 2


def _activate_setup() -> Shared:
    # one Active shard (0), two Provisioning (1, 2); max_shards 2: one slot left
    return Shared({"active_count": 1, "state1": "Provisioning", "state2": "Provisioning"})


def _activate(shard: int, inside: bool) -> Callable[[Shared], Gen]:
    def activate(s: Shared) -> Gen:
        yield acquire("shards")
        state = yield load(f"state{shard}")
        if state != "Provisioning":
            yield release("shards")
            return
        count = yield load("active_count")
        if count >= MAX_SHARDS:
            s.ghost.setdefault("refused", []).append(shard)  # AtMaxShards, stays Provisioning
            yield release("shards")
            return
        yield store(f"state{shard}", "Active")
        if inside:
            yield fetch_add("active_count", 1)
        yield release("shards")
        if not inside:
            yield fetch_add("active_count", 1)
    activate.__name__ = f"activate_{shard}"
    return activate


def active_within_max(s: Shared) -> None:
    """At most max_shards shards are Active, and active_count never exceeds max_shards."""
    active = 1 + sum(s.mem[f"state{i}"] == "Active" for i in (1, 2))
    assert active <= MAX_SHARDS, f"{active} Active shards, max_shards {MAX_SHARDS}"
    assert s.mem["active_count"] <= MAX_SHARDS, f"active_count {s.mem['active_count']} > {MAX_SHARDS}"


def active_count_matches(s: Shared) -> None:
    """After the calls, active_count equals the number of Active shards."""
    active = 1 + sum(s.mem[f"state{i}"] == "Active" for i in (1, 2))
    assert s.mem["active_count"] == active, f"active_count {s.mem['active_count']}, {active} Active"


def activate_fixed() -> Program:
    return Program("activate_increment/fixed", _activate_setup,
                   (_activate(1, True), _activate(2, True)), invariant=active_within_max,
                   postcondition=active_count_matches,
                   visible=frozenset({"active_count", "state1", "state2"}))


def activate_historical() -> Program:
    return Program("activate_increment/historical", _activate_setup,
                   (_activate(1, False), _activate(2, False)), invariant=active_within_max,
                   postcondition=active_count_matches,
                   visible=frozenset({"active_count", "state1", "state2"}))


# =========================================================================== §3.5 #7

NOW, COOLDOWN, SCALE_MAX = 1_000, 500, 8


def _cooldown_setup() -> Shared:
    # the last scaling happened a full cooldown ago: the gate is open for exactly one call
    return Shared({"last_scaling": NOW - COOLDOWN, "active_count": 2, "shard_count": 2})


def _gate_open(last: Optional[int], active: int) -> bool:
    in_cooldown = last is not None and NOW - last < COOLDOWN
    return not in_cooldown and active + 1 <= SCALE_MAX


def _scale_up_mutate(s: Shared) -> Gen:
    """Under the write lock: push one Active shard, active_count += 1, stamp last_scaling."""
    n = yield load("shard_count")
    yield store("shard_count", n + 1)
    yield fetch_add("active_count", 1)
    yield store("last_scaling", NOW)


def _scale_up_fixed(s: Shared) -> Gen:
    last = yield load("last_scaling")  # check_scale_up_budget: lock-free pre-check
    active = yield load("active_count")
    if not _gate_open(last, active):
        return
    yield acquire("shards")
    last = yield load("last_scaling")  # re-checked under the write lock
    active = yield load("active_count")
    if _gate_open(last, active):
        yield from _scale_up_mutate(s)
    yield release("shards")


def _scale_up_historical(s: Shared) -> Gen:
    yield read_acquire("shards")
    last = yield load("last_scaling")
    active = yield load("active_count")
    yield read_release("shards")
    if not _gate_open(last, active):
        return
    yield acquire("shards")
    yield from _scale_up_mutate(s)
    yield release("shards")


def one_scale_up_per_cooldown(s: Shared) -> None:
    """All calls happen within one cooldown window: at most one scale_up adds a shard."""
    added = s.mem["shard_count"] - 2
    assert added <= 1, f"{added} scale-ups within one cooldown window"


def cooldown_fixed() -> Program:
    return Program("cooldown_gate/fixed", _cooldown_setup, (_scale_up_fixed, _scale_up_fixed),
                   invariant=one_scale_up_per_cooldown, visible=frozenset({"shard_count"}))


def cooldown_historical() -> Program:
    return Program("cooldown_gate/historical", _cooldown_setup,
                   (_scale_up_historical, _scale_up_historical),
                   invariant=one_scale_up_per_cooldown, visible=frozenset({"shard_count"}))


# =========================================================================== §2.6 #5

CAP = 2


def _cap_setup() -> Shared:
    return Shared({"connections": 0})


def _reserve_fixed(s: Shared) -> Gen:
    """try_record_request: CAS-increment connections only while below the cap."""
    while True:
        current = yield load("connections")
        if current >= CAP:
            return
        ok, _ = yield cas("connections", current, current + 1)
        if ok:
            return


def _reserve_historical(s: Shared) -> Gen:
    current = yield load("connections")  # the filter's `connections >= max` check
    if current >= CAP:
        return
    yield fetch_add("connections", 1)


def connections_within_cap(s: Shared) -> None:
    """connections never exceeds max_connections_per_endpoint."""
    assert s.mem["connections"] <= CAP, f"connections {s.mem['connections']} > cap {CAP}"


def cap_fixed() -> Program:
    return Program("lb_connection_cap/fixed", _cap_setup, (_reserve_fixed,) * 3,
                   invariant=connections_within_cap, visible=frozenset({"connections"}))


def cap_historical() -> Program:
    return Program("lb_connection_cap/historical", _cap_setup, (_reserve_historical,) * 3,
                   invariant=connections_within_cap, visible=frozenset({"connections"}))


# =========================================================================== §2.6 #7, #8: the breaker

ATTEMPTS = 4  # MAX_RESERVATION_RETRIES


@attrs.frozen
class Breaker:
    endpoints: int
    cap: int  # max_connections_per_endpoint


def _breaker_setup(endpoints: int, cap: int) -> Callable[[], Shared]:
    def setup() -> Shared:
        mem: dict[str, Any] = {}
        for e in range(endpoints):
            # circuit open, recovery time elapsed (the open instant is far in the past)
            mem.update({f"open{e}": True, f"probe{e}": False, f"conns{e}": 0})
        return Shared(mem, ext=Breaker(endpoints, cap))
    return setup


def _available_pure(s: Shared) -> Generator[Access, Any, list[int]]:
    """The 0.25.0 filter: open + elapsed is "closed" only when no probe is in flight."""
    out = []
    for e in range(s.ext.endpoints):
        is_open = yield load(f"open{e}")
        if is_open:
            in_flight = yield load(f"probe{e}")
            if in_flight:
                continue
        conns = yield load(f"conns{e}")
        if conns < s.ext.cap:
            out.append(e)
    return out


def _available_claiming(s: Shared, me: int) -> Generator[Access, Any, list[int]]:
    """The pre-#101 filter: `is_circuit_open` claims the probe slot of every endpoint it scans."""
    out = []
    for e in range(s.ext.endpoints):
        is_open = yield load(f"open{e}")
        if is_open:
            claimed, _ = yield cas(f"probe{e}", False, True)
            if not claimed:
                continue
            s.ghost.setdefault("claims", {})[e] = me
        conns = yield load(f"conns{e}")
        if conns < s.ext.cap:
            out.append(e)
    return out


def _try_record_request(s: Shared, e: int) -> Generator[Access, Any, bool]:
    while True:
        current = yield load(f"conns{e}")
        if current >= s.ext.cap:
            return False
        ok, _ = yield cas(f"conns{e}", current, current + 1)
        if ok:
            return True


def _selector(me: int, claim_in_scan: bool, strict: bool) -> Callable[[Shared], Gen]:
    """select(): up to ATTEMPTS attempts; round-robin offset `me + attempt` over the filtered list."""
    def select(s: Shared) -> Gen:
        for attempt in range(ATTEMPTS):
            if claim_in_scan:
                available = yield from _available_claiming(s, me)
            else:
                available = yield from _available_pure(s)
            if not available:
                return  # NoEndpointsAvailable
            e = available[(me + attempt) % len(available)]
            claimed = False
            is_open = yield load(f"open{e}")
            if is_open and not claim_in_scan:
                claimed, _ = yield cas(f"probe{e}", False, True)
                if not claimed and strict:
                    continue
            if claim_in_scan:
                claimed = s.ghost.get("claims", {}).get(e) == me
            if (yield from _try_record_request(s, e)):
                s.ghost.setdefault("selected", []).append((me, e, claimed))
                return
            if claimed:
                yield store(f"probe{e}", False)
    select.__name__ = f"select_{me}"
    return select


def no_stranded_probe(s: Shared) -> None:
    """Every claimed probe slot belongs to a selection that holds the endpoint's probe."""
    held = {e for _, e, claimed in s.ghost.get("selected", []) if claimed}
    stranded = [e for e in range(s.ext.endpoints) if s.mem[f"probe{e}"] and e not in held]
    assert not stranded, f"probe slot of endpoint(s) {stranded} claimed by no selection: stranded"


def exactly_one_probe(s: Shared) -> None:
    """A recovering endpoint admits exactly one probe request."""
    sent = len(s.ghost.get("selected", []))
    assert sent == 1, f"{sent} requests admitted to the half-open endpoint"


def probe_scan_fixed() -> Program:
    return Program("probe_slot_scan/fixed", _breaker_setup(2, 1),
                   (_selector(0, False, True), _selector(1, False, True)),
                   postcondition=no_stranded_probe)


def probe_scan_historical() -> Program:
    return Program("probe_slot_scan/historical", _breaker_setup(2, 1),
                   (_selector(0, True, True), _selector(1, True, True)),
                   postcondition=no_stranded_probe)


def half_open_fixed() -> Program:
    return Program("strict_half_open/fixed", _breaker_setup(1, 10),
                   (_selector(0, False, True), _selector(1, False, True)),
                   postcondition=exactly_one_probe)


def half_open_historical() -> Program:
    return Program("strict_half_open/historical", _breaker_setup(1, 10),
                   (_selector(0, False, False), _selector(1, False, False)),
                   postcondition=exactly_one_probe)


# =========================================================================== §1.5: etcd CAS acquire

from meshspec.clock import FakeClock  # noqa: E402
import impl.capacity as impl_capacity  # noqa: E402
import model.capacity as model_capacity  # noqa: E402
from model.etcd import EtcdModel  # noqa: E402

TENANT, RUN, SHARD = bytes(range(32)), 1, 1
ETCD = "etcd"  # every request of the race goes to one location: all of them conflict


class UnguardedCoordinator(impl_capacity.EtcdCoordinator):
    """Historical: the acquire txn writes after the read without any compare."""

    def _guard(self, tenant: bytes, run: int, loaded: model_capacity.LoadedShard) -> list:
        return []


class OwnerOnlyCoordinator(impl_capacity.EtcdCoordinator):
    """The guard without its `mod_revision` compare (owner compares kept)."""

    def _guard(self, tenant: bytes, run: int, loaded: model_capacity.LoadedShard) -> list:
        return super()._guard(tenant, run, loaded)[1:]


@attrs.define
class EtcdWorld:
    kv: EtcdModel
    clock: FakeClock
    coords: list
    reference: model_capacity.EtcdCoordinator


def _etcd_setup(cls: type, takeover: bool) -> Callable[[], Shared]:
    """One run with one shard; with `takeover`, a worker 7 held it and its lease ran out
    logically while its owner key still exists (etcd's TTL has not expired it)."""
    def setup() -> Shared:
        clock, kv = FakeClock(10_000), EtcdModel(clock=FakeClock())
        options = model_capacity.CoordinatorOptions(owner_lease_ttl_secs=60)
        admin = model_capacity.EtcdCoordinator(kv, clock=clock, options=options)
        admin.create_run(TENANT, RUN, model_capacity.RunConfig(1_000))
        spec = model_capacity.ShardSpec(b"\x00", b"\x10")
        admin.register_shards(TENANT, RUN, [model_capacity.ShardManifestEntry(SHARD, spec)], op_id=1)
        if takeover:
            admin.acquire_and_restore_into(TENANT, RUN, SHARD, 7)
            clock.advance(5_000)
        coords = [cls(kv, clock=clock, options=options) for _ in range(2)]
        for c in coords:  # each coordinator has seen the run before the race (adopted its counters)
            c.capacity_hint(TENANT, RUN)
        return Shared({}, ext=EtcdWorld(kv, clock, coords, admin))
    return setup


def _acquirer(index: int) -> Callable[[Shared], Gen]:
    """acquire_and_restore_into, split at every etcd request (EtcdCoordinator._acquire)."""
    def acquire_shard(s: Shared) -> Gen:
        world: EtcdWorld = s.ext
        c = world.coords[index]
        worker, now = 100 + index, world.clock()
        try:
            for attempt in c._attempts():
                loaded = yield atomic(ETCD, lambda _: c._check_acquire(now, TENANT, RUN, SHARD),
                                      "read shard record + owner", writes=False, brief=_loaded_text)
                run_rec = yield atomic(ETCD, lambda _: c._load_run(TENANT, RUN), "read run record",
                                       writes=False, brief=lambda r: f"mod_revision {r.mod_revision}")
                deadline = model_capacity.sat_add_u64(now, run_rec.record.config.lease_duration_ns)
                lease_id = yield atomic(ETCD, lambda _: c._grant_lease(), "lease grant")
                record = attrs.evolve(loaded.record, fence_epoch=loaded.record.fence_epoch + 1,
                                      lease=model_capacity.LeaseHolder(worker, deadline))
                ops = [c._put_shard(record),
                       model_capacity.PutOp(c._keys.owner_key(TENANT, RUN, SHARD),
                                            model_capacity.encode_owner(worker, record.fence_epoch),
                                            lease_id)]
                guard = c._guard(TENANT, RUN, loaded)
                ok = yield atomic(ETCD, lambda _: c._kv.txn(guard, ops).succeeded,
                                  f"guarded txn ({len(guard)} compares)")
                if ok:
                    yield atomic(ETCD, lambda _: c._after_acquire(now, loaded, record, deadline),
                                 "committed: counters + capacity read",
                                 brief=lambda r: f"fence {r.lease.fence}, {r.capacity}")
                    s.ghost.setdefault("winners", []).append(index)
                    return
                yield atomic(ETCD, lambda _: (c._revoke_best_effort(TENANT, RUN, SHARD, lease_id,
                                                                    prior=False),
                                              c._cas_failed("acquire", TENANT, RUN, SHARD)),
                             "revoke the unused lease")
        except model_capacity.CoordinationError as exc:
            s.ghost.setdefault("losers", []).append((index, type(exc).__name__))
    acquire_shard.__name__ = f"coordinator_{index}"
    return acquire_shard


def _loaded_text(loaded: model_capacity.LoadedShard) -> str:
    owner = "absent" if loaded.owner is None else f"lease {loaded.owner.lease_id}"
    return (f"mod_revision {loaded.mod_revision}, fence {loaded.record.fence_epoch}, "
            f"owner key {owner}")


def one_winner_and_counters_match(s: Shared) -> None:
    """Exactly one coordinator wins, and both coordinators' capacity counters equal the full scan."""
    world: EtcdWorld = s.ext
    winners = s.ghost.get("winners", [])
    assert len(winners) == 1, f"{len(winners)} coordinators acquired shard {SHARD}: {winners}"
    scan = world.reference.capacity_hint(TENANT, RUN)
    for i, c in enumerate(world.coords):
        hint = c.capacity_hint(TENANT, RUN)
        assert hint == scan, f"coordinator {i}'s counters say {hint}, the full scan {scan}"
        c.check_invariants()


def _etcd_final(s: Shared) -> Any:
    return s.ext.kv.abstract() if hasattr(s.ext.kv, "abstract") else None


def etcd_program(cls: type, variant: str, takeover: bool = False) -> Program:
    return Program(f"etcd_cas_acquire/{variant}", _etcd_setup(cls, takeover),
                   (_acquirer(0), _acquirer(1)),
                   postcondition=one_winner_and_counters_match, final_state=_etcd_final)


# =========================================================================== the registry

RACES: tuple[Race, ...] = (
    Race("packed_latency", "record_push vs the metrics tick: (sum, count) as one packed word",
         "semantics.md §3.5 #3 (#108); test record_push_collect_no_sum_count_desync",
         packed_fixed, packed_historical, "windows_consistent", 26),
    Race("set_draining", "set_draining(true) vs record_push: store zero, then publish",
         "semantics.md §3.5 #4 (#33); test set_draining_resets_counter_under_concurrent_pushes",
         drain_fixed, drain_historical, "pushes_after_drain_counted", 12),
    Race("activate_increment", "two activate calls: active_count += 1 inside the shards lock",
         "semantics.md §3.5 #6 (#83); test concurrent_activate_never_exceeds_max_shards",
         activate_fixed, activate_historical, "active_within_max", 2),
    Race("cooldown_gate", "two scale_up calls: the cooldown re-checked under the write lock",
         "semantics.md §3.5 #7; tests cooldown_is_enforced_under_concurrent_scale_up, "
         "test_scale_up_max_shards_concurrent",
         cooldown_fixed, cooldown_historical, "one_scale_up_per_cooldown", 6),
    Race("lb_connection_cap", "three selectors: connections reserved by CAS below the cap",
         "semantics.md §2.6 #5; test test_regression_max_connections_cap_enforced_concurrently",
         cap_fixed, cap_historical, "connections_within_cap", 108),
    Race("probe_slot_scan", "two selectors, two recovering endpoints: the scan claims no probe slot",
         "semantics.md §2.6 #7 (#101); test "
         "circuit_breaker_does_not_leak_probe_slot_on_multi_endpoint_scan",
         probe_scan_fixed, probe_scan_historical, "no_stranded_probe", 5),
    Race("strict_half_open", "two selectors, one recovering endpoint: exactly one probe",
         "semantics.md §2.6 #8; test "
         "select_strict_half_open_admits_exactly_one_probe_under_concurrent_selectors",
         half_open_fixed, half_open_historical, "exactly_one_probe", 6),
    Race("etcd_cas_acquire", "two coordinators acquire one shard over model.etcd: one wins",
         "semantics.md §1.5 CAS/retry; upstream tests/concurrent_cas_contention.rs",
         lambda: etcd_program(impl_capacity.EtcdCoordinator, "fixed"),
         lambda: etcd_program(UnguardedCoordinator, "historical"),
         "one_winner_and_counters_match", 106),
)


def names() -> list[str]:
    return [r.name for r in RACES]


def get(name: str) -> Race:
    for race in RACES:
        if race.name == name:
            return race
    raise KeyError(f"unknown race {name!r} (known: {', '.join(names())})")
