"""Properties of the daemon host and causal chain: subject harness, invariants, lockstep machine, exploration.

The harness (`DaemonHostSubject`) wraps one DaemonHost (model or impl) with its own
FakeClock and RNG, an injected scripted daemon, and the chain, horizon and framing code
of the same side: `CausalChainBuilder` and `ObservedHorizon` are the host class's
`_chain_cls` / `_horizon_cls` when it has them (the impl's override points, which is where
the mutants put their bugs), else the classes of the module the host comes from;
`compute_parent_hash` and `validate_chain_link` are that module's.

Everything a rule needs is built from primitives: the daemon's next answer is a tuple of
output payload sizes (payload bytes drawn from the subject's RNG, the same draws on both
sides), "error" (the daemon returns a DaemonError) or "raise" (it raises one); links are
drawn from the RNG; snapshots are kept by the subject and named by index.

Ghost state: the expected chain head (`pred`: the link and payload the next appended event
must chain to, moved by the events a deliver returns and re-anchored by restores and
forks), the counters the scripted daemon implies, the events the last deliver appended
with their predecessors, the horizon encoding the last outputs carried and the origins the
host had observed then, and the last hash / framing / malformed-read / restore records.

What the machine reaches: delivers with 0..4 outputs of sizes 0, 1, 31, 32, 33, 63, 64, 65,
1024 and 8192 bytes, daemon errors returned and raised, chains started (forked) or
restored near u64::MAX so a deliver overflows after appending some outputs, snapshots of
stateful and stateless daemons, restores with and without a head payload, rejected by the
daemon, of another entity, horizons of up to 20 origins and logical time at u64::MAX,
framing with write limits around 32 + payload size, counts past the data and malformed
entries (short prefix, zero length, total < 32, truncated, u32::MAX length) mid-stream.
Boundaries (`meshspec.strategies.around`, one witness each in BOUNDARY_WITNESSES): write
limits at 0, u32::MAX and each frame's 32 + payload bytes (±1, so -1 and u32::MAX + 1 too),
read counts at 0, u16::MAX and the frames written (±1), inbound sequences at the one the
horizon stores for the origin (±1), and near u64::MAX as many outputs as the sequence room
(±1). The clock only stamps events (no timeout, deadline or interval), so there is no time
boundary to advance to.

Left out: origins and sequences outside u64 (both sides refuse them with the same
ValueError; pinned by the unit tests — a read count past u16 and a write limit past u32
are fuzzed and answered as `("ValueError", message)`); the standalone framing functions
(DaemonHost's framing methods are the same code); mutants of `validate_chain_link` (a
module function, not an override point; the machine still compares it model vs impl).
"""
from __future__ import annotations

import contextlib
import functools
import random
import struct
import sys
from types import ModuleType
from typing import Any, Callable, Iterator, Optional

import attrs
import xxhash
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from meshspec.clock import FakeClock
from meshspec.explore import Bound, Exploration
from meshspec.lockstep import BenchCase, Component, Subject, always, ghost_flag, sometimes
from meshspec.machine import LockstepMachine
from meshspec.strategies import around
from model import daemon_host as M
from model.daemon_host import (
    U16_MAX,
    U32_MAX,
    U64_MAX,
    CausalEvent,
    CausalLink,
    DaemonSnapshot,
    DaemonStats,
    HorizonState,
    WriteCausalEventsResult,
)

SIZES = (0, 1, 31, 32, 33, 63, 64, 65, 1024, 8192)
ORIGINS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 0xAAAA, 0xBBBB, 0xCCCC, 0xDEAD, 0xBEEF,
           0xFFFF_FFFF, 2**63, U64_MAX - 1, U64_MAX)
PROBE_ORIGINS = ORIGINS[::3] + (0x1234_5678, 0x9E37_79B9_7F4A_7C15)
UNSEEN_ORIGINS = tuple((0x5EED_0000 + i * 0x9E37_79B9_7F4A_7C15) % 2**64 for i in range(16))  # never observed
MALFORMED = {
    "short_prefix": b"\x05\x00",
    "zero_length": bytes(4),
    "below_32": (31).to_bytes(4, "little") + bytes(31),
    "truncated": (40).to_bytes(4, "little") + bytes(39),
    "huge_length": U32_MAX.to_bytes(4, "little") + bytes(8),
}
MID_STREAM = ("zero_length", "below_32", "huge_length")  # detectable with valid frames after them
RESTORES = ("restore", "restore_crafted", "from_snapshot")
OVERFLOW_ERROR = ("ProcessFailed", str(M.ProcessFailed(M.SEQUENCE_OVERFLOW)))


@functools.lru_cache(maxsize=None)
def side_module(cls: type) -> ModuleType:
    """The module whose chain / horizon / hash / validation code goes with a host class."""
    names = ("CausalChainBuilder", "ObservedHorizon", "compute_parent_hash", "validate_chain_link")
    for klass in cls.__mro__:
        mod = sys.modules.get(klass.__module__)
        if mod is not None and all(hasattr(mod, n) for n in names):
            return mod
    return M


def oneshot_parent_hash(link: CausalLink, payload: bytes) -> int:
    """The specification: xxh3-64 of the 32 link bytes concatenated with the payload."""
    return xxhash.xxh3_64_intdigest(struct.pack("<QQQQ", link.origin_hash, link.horizon_encoded,
                                                link.sequence, link.parent_hash) + payload)


@functools.lru_cache(maxsize=None)
def _bits(origin: int) -> int:
    return M.bloom_bits_for_origin(origin)


def spec_encoding(origins: Any) -> int:
    """The 64-bit, three-position bloom of a set of origins, recomputed from scratch."""
    encoded = 0
    for origin in origins:
        encoded |= _bits(origin)
    return encoded


class ScriptedDaemon:
    """The injected daemon: the subject sets `script` before each deliver.

    State is the number of process calls (8 LE bytes) when `stateful`, else None.
    `reject` makes the next restore return RestoreFailed."""

    def __init__(self, stateful: bool) -> None:
        self.stateful = stateful
        self.calls = 0
        self.script: Any = ()
        self.reject = False

    def process(self, event: CausalEvent) -> Any:
        self.calls += 1
        if self.script == "error":
            return M.ProcessFailed("scripted error")
        if self.script == "raise":
            raise M.ProcessFailed("scripted raise")
        return list(self.script)

    def snapshot(self) -> Optional[bytes]:
        return self.calls.to_bytes(8, "little") if self.stateful else None

    def restore(self, state: bytes) -> Any:
        if self.reject:
            return M.RestoreFailed("scripted rejection")
        self.calls = int.from_bytes(state[:8], "little")
        return None


def _or_value_error(call: Callable[[], Any]) -> Any:
    """A value outside u16/u32/u64 (ValueError on both sides) is answered, not raised."""
    try:
        return call()
    except ValueError as exc:
        return ("ValueError", str(exc))


class DaemonHostSubject(Subject):
    """One daemon host, a standalone horizon of the same side, and the ghost chain.

    Deepcopy-safe (the explorer snapshots a state by copying the model and impl subjects
    with one memo): it stores no module object (`mod` is computed) and no lambda; the
    host's clock and daemon are this subject's own `FakeClock` and `ScriptedDaemon`.
    """

    @property
    def mod(self) -> ModuleType:
        """The module of this side's chain / horizon / hash / validation code."""
        return side_module(self.cls)

    def init(self, origin: int, start_seq: Optional[int], head_size: int, stateful: bool) -> None:
        self.chain_cls = getattr(self.cls, "_chain_cls", self.mod.CausalChainBuilder)
        self.horizon_cls = getattr(self.cls, "_horizon_cls", self.mod.ObservedHorizon)
        self.origin = origin
        self.daemon = ScriptedDaemon(stateful)
        self.horizon = self.horizon_cls()
        self.snapshots: list[DaemonSnapshot] = []
        self.appended: list[tuple[CausalLink, bytes, CausalEvent]] = []  # (predecessor link, payload, event)
        self.overflow: Optional[tuple[int, CausalLink, bytes]] = None  # (outputs kept, expected head)
        self.no_output: Optional[tuple[tuple, tuple]] = None  # (head before, head after)
        self.emitted_horizon: Optional[tuple[int, tuple]] = None  # (encoding carried, origins observed)
        self.restored: Optional[tuple[CausalLink, bytes, HorizonState, bool]] = None
        self.hash_check: Optional[tuple] = None
        self.frame: Optional[tuple] = None
        self.malformed: Optional[tuple] = None
        self.probe: Optional[tuple[bool, bool]] = None
        #: boundary classes reached exactly (their witnesses: BOUNDARY_WITNESSES)
        self.edges: set[str] = set()
        if start_seq is None:
            self.sut = self.cls(origin, self.daemon, clock=self.clock)
            self._reset((CausalLink.genesis(origin), b""))
        else:
            self.fork(start_seq, head_size, False)

    def _reset(self, pred: tuple[CausalLink, bytes]) -> None:
        """A new host: counters from zero, the chain continuing from `pred`."""
        self.pred = pred
        self.expected = [0, 0, 0]
        self._forget_deliver()

    def _forget_deliver(self) -> None:
        """The last deliver's records describe a chain head that a restore or fork replaced."""
        self.appended, self.overflow, self.no_output, self.emitted_horizon = [], None, None, None

    def observations(self) -> dict[str, Any]:
        """The standalone horizon as a caller sees it: entries, encoding, bloom probes."""
        h = self.horizon
        enc = h.encode()
        return {"horizon": (h.entity_count(), h.logical_time(), enc,
                            tuple(self.horizon_cls.might_contain(enc, o) for o in PROBE_ORIGINS),
                            tuple(h.get(o) for o in PROBE_ORIGINS))}

    def _payload(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def _link(self, origin: Optional[int] = None, sequence: Optional[int] = None) -> CausalLink:
        r = self.rng.getrandbits
        return CausalLink(r(64) if origin is None else origin, r(64), r(64) if sequence is None else sequence, r(64))

    def _host_horizon(self) -> Optional[HorizonState]:
        """The host's horizon, or None when it no longer fits a HorizonState (logical time past u64)."""
        try:
            return self.sut.horizon()
        except ValueError:
            return None

    # -- the host --------------------------------------------------------------------------
    def deliver(self, origin: int, sequence: int, outputs: Any) -> list[CausalEvent]:
        payloads = outputs if isinstance(outputs, str) else tuple(self._payload(n) for n in outputs)
        self.daemon.script = payloads
        before = (self.sut.head_link(), self.sut.head_payload())
        horizon = self._host_horizon()
        if horizon is not None and dict(horizon.entries).get(origin) == sequence:
            self.edges.add("deliver_at_stored_sequence")
        self._forget_deliver()
        event = CausalEvent(CausalLink(origin, 0, sequence, 0), b"inbound", self.clock())
        try:
            events = self.sut.deliver(event)
        except M.DaemonError:
            self._count_failure(payloads)
            raise
        self.expected[0] += 1
        self.expected[1] += len(events)
        prev = self.pred
        for e in events:
            self.appended.append((prev[0], prev[1], e))
            prev = (e.link, e.payload)
        self.pred = prev
        if events and events[-1].link.sequence == U64_MAX:
            self.edges.add("chain_filled_to_u64_max")
        horizon = self._host_horizon()
        if events and horizon is not None:
            self.emitted_horizon = (events[0].link.horizon_encoded, tuple(o for o, _ in horizon.entries))
        if not payloads:
            self.no_output = (before, (self.sut.head_link(), self.sut.head_payload()))
        return events

    def _count_failure(self, payloads: Any) -> None:
        if isinstance(payloads, str):
            self.expected[2] += 1
            return
        kept = min(len(payloads), U64_MAX - self.pred[0].sequence)  # outputs that fit before the overflow
        self.expected[0] += 1
        self.expected[1] += kept
        if not kept:
            return
        carried = self.sut.head_link().horizon_encoded  # the chaining is checked here, the bloom below
        link, payload = self.pred
        for p in payloads[:kept]:
            link, payload = link.next(payload, carried), p
        self.overflow = (kept, link, payload)
        self.pred = (link, payload)
        horizon = self._host_horizon()
        if horizon is not None:
            self.emitted_horizon = (carried, tuple(o for o, _ in horizon.entries))

    def advance_time(self, ns: int) -> int:
        return self.clock.advance(ns)

    def inspect(self) -> tuple:
        s = self.sut
        try:
            horizon = s.horizon()
        except ValueError:  # logical time past u64: logical_time_saturates reports it
            return (s.stats(), s.origin_hash(), s.head_link(), s.head_payload(), s.sequence(), None)
        return (s.stats(), s.origin_hash(), s.head_link(), s.head_payload(), s.sequence(), horizon, s.abstract())

    def take_snapshot(self) -> Optional[DaemonSnapshot]:
        snap = self.sut.take_snapshot()
        if snap is not None:
            self.snapshots.append(snap)
        return snap

    @contextlib.contextmanager
    def _daemon_rejects(self, reject: bool) -> Iterator[None]:
        self.restored = None
        self.daemon.reject = reject
        try:
            yield
        finally:
            self.daemon.reject = False

    def _anchor(self, snap: DaemonSnapshot) -> tuple:
        """After a successful restore: the chain continues from the snapshot's head."""
        fallback = snap.head_payload is None
        head_payload = snap.state if fallback else snap.head_payload
        self.pred = (snap.chain_link, head_payload)
        self.restored = (snap.chain_link, head_payload, snap.horizon, fallback)
        self._forget_deliver()
        return (self.sut.head_link(), self.sut.head_payload())

    def restore(self, index: int, drop_head_payload: bool, reject: bool) -> Any:
        if not self.snapshots:
            return None
        snap = self.snapshots[index % len(self.snapshots)]
        if drop_head_payload:
            snap = attrs.evolve(snap, head_payload=None)
        with self._daemon_rejects(reject):
            self.sut.restore_from_snapshot(snap)
        return self._anchor(snap)

    def restore_crafted(self, sequence: int, head_size: int, state_size: int, with_head_payload: bool,
                        entries: tuple[tuple[int, int], ...], logical_time: int, reject: bool) -> tuple:
        link = self._link(self.origin, sequence)
        head, state = self._payload(head_size), self._payload(state_size)
        snap = DaemonSnapshot(self.origin, link, state, HorizonState(entries, logical_time),
                              head if with_head_payload else None)
        self.snapshots.append(snap)
        with self._daemon_rejects(reject):
            self.sut.restore_from_snapshot(snap)
        return self._anchor(snap)

    def from_snapshot(self, index: int, foreign: bool) -> Any:
        if not self.snapshots:
            return None
        snap = self.snapshots[index % len(self.snapshots)]
        self.restored = None
        origin = self.origin ^ 1 if foreign else self.origin
        self.sut = self.cls.from_snapshot(origin, self.daemon, snap, clock=self.clock)
        self.expected = [0, 0, 0]
        return self._anchor(snap) + (self.sut.stats(),)

    def fork(self, sequence: int, head_size: int, foreign: bool) -> tuple:
        """A host forked from a chain head (how init starts a chain high, too)."""
        chain_origin = self.origin ^ 1 if foreign else self.origin
        head = self._link(chain_origin, sequence)
        payload = self._payload(head_size)
        chain = self.chain_cls.from_head(head, payload, clock=self.clock)
        self.sut = self.cls.from_fork(self.origin, self.daemon, chain, clock=self.clock)
        self._reset((head, payload))
        return (self.sut.head_link(), self.sut.head_payload(), self.sut.stats())

    # -- the chain: hashing and validation --------------------------------------------------
    def parent_hash(self, size: int, sequence: int) -> tuple:
        link, payload = self._link(sequence=sequence), self._payload(size)
        module_hash = self.mod.compute_parent_hash(link, payload)
        chain = self.chain_cls.from_head(link, payload, clock=self.clock)
        nxt = chain.append(b"", 0)
        chained = None if nxt is None else nxt.link.parent_hash
        self.hash_check = (link, payload, module_hash, chained)
        return (module_hash, chained, chain.sequence(), chain.origin_hash(), chain.head(), chain.head_payload())

    def validate(self, tamper: str) -> Any:
        """validate_chain_link of a successor of the ghost chain head, tampered one way."""
        prev, payload = self.pred
        seq = prev.sequence + 1 if prev.sequence < U64_MAX else 0
        new = attrs.evolve(prev, sequence=seq, parent_hash=oneshot_parent_hash(prev, payload))
        if tamper == "origin":
            new = attrs.evolve(new, origin_hash=prev.origin_hash ^ 1)
        elif tamper == "sequence_repeated":
            new = attrs.evolve(new, sequence=prev.sequence)
        elif tamper == "parent":
            new = attrs.evolve(new, parent_hash=new.parent_hash ^ 1)
        elif tamper == "payload":
            payload = payload + b"x"
        return self.mod.validate_chain_link(prev, payload, new)

    # -- the standalone horizon --------------------------------------------------------------
    def horizon_observe(self, origin: int, sequence: int) -> int:
        if self.horizon.get(origin) == sequence:
            self.edges.add("observed_at_stored_sequence")
        self.horizon.observe(origin, sequence)
        return self.horizon.logical_time()

    def horizon_merge(self, entries: tuple[tuple[int, int], ...], logical_time: int) -> int:
        self.horizon.merge(HorizonState(entries, logical_time))
        return self.horizon.logical_time()

    def horizon_from_state(self, entries: tuple[tuple[int, int], ...], logical_time: int) -> int:
        self.horizon = self.horizon_cls.from_state(HorizonState(entries, logical_time))
        return self.horizon.entity_count()

    def horizon_query(self, origin: int, sequence: int) -> tuple:
        h = self.horizon
        enc = h.encode()
        might = self.horizon_cls.might_contain(enc, origin)
        self.probe = (h.contains_origin(origin), might)
        return (h.get(origin), h.has_observed(origin, sequence), h.contains_origin(origin),
                h.entity_count(), h.logical_time(), enc, might)

    def potentially_concurrent(self, origin_a: int, origin_b: int,
                               entries_b: tuple[tuple[int, int], ...]) -> bool:
        other = self.horizon_cls.from_state(HorizonState(entries_b, 0))
        return self.horizon_cls.potentially_concurrent(self.horizon.encode(), origin_b, other.encode(), origin_a)

    # -- framing -----------------------------------------------------------------------------
    def _events(self, sizes: tuple) -> list[CausalEvent]:
        return [CausalEvent(self._link(), self._payload(n), 0) for n in sizes]

    def write_read(self, sizes: tuple[int, ...], limit: int, count: int, prefix_size: int) -> Any:
        events = self._events(sizes)
        prefix = self._payload(prefix_size)
        buf = bytearray(prefix)
        result = _or_value_error(lambda: self.sut.write_causal_events(events, buf, max_total_len=limit))
        if isinstance(result, tuple):
            if limit < 0:
                self.edges.add("write_limit_minus_one_refused")
            return result
        read = _or_value_error(lambda: self.sut.read_causal_events(bytes(buf[prefix_size:]), count))
        self.frame = (events, limit, prefix, bytes(buf), result, count, read, self.clock())
        self._note_frame_edges(events, limit, count, result)
        return (result, bytes(buf), read)

    def _note_frame_edges(self, events: list[CausalEvent], limit: int, count: int,
                          result: WriteCausalEventsResult) -> None:
        """Ghost: a frame exactly at the write limit; a read count exactly the frames written."""
        if any(M.CAUSAL_LINK_SIZE + len(e.payload) == limit for e in events):
            self.edges.add("frame_fits_limit_exactly")
        if count == result.events_written > 0:
            self.edges.add("read_count_equals_frames_written")

    def read_malformed(self, sizes: tuple[int, ...], cut: str,
                       tail_sizes: tuple[int, ...]) -> list[CausalEvent]:
        good, tail = self._events(sizes), self._events(tail_sizes) if cut in MID_STREAM else []
        head_buf, tail_buf = bytearray(), bytearray()
        self.sut.write_causal_events(good, head_buf)
        self.sut.write_causal_events(tail, tail_buf)
        read = self.sut.read_causal_events(bytes(head_buf) + MALFORMED[cut] + bytes(tail_buf), U16_MAX)
        self.malformed = (good, tail, read, self.clock())
        return read


# -- invariants -----------------------------------------------------------------------------

def logical_time_saturates(s: DaemonHostSubject) -> None:
    """Logical time (standalone and host horizon) stays within u64: it saturates at u64::MAX."""
    t = s.horizon.logical_time()
    assert 0 <= t <= U64_MAX, f"standalone horizon logical time {t} outside u64"
    assert s._host_horizon() is not None, "the host horizon's logical time no longer fits a u64"


def appended_events_validate(s: DaemonHostSubject) -> None:
    """Every appended event validates against its predecessor; an overflow keeps the outputs that fit."""
    for prev_link, prev_payload, event in s.appended:
        try:
            M.validate_chain_link(prev_link, prev_payload, event.link)
        except M.ChainError as exc:
            raise AssertionError(f"event seq {event.link.sequence} does not chain: {exc}") from None
        assert event.link.origin_hash == s.origin, f"event origin {event.link.origin_hash:#x} is not the host's"
    if s.appended:
        last = s.appended[-1][2]
        assert (s.sut.head_link(), s.sut.head_payload()) == (last.link, last.payload), \
            "the chain head is not the last returned event"
    if s.overflow is not None:
        kept, link, payload = s.overflow
        assert (s.sut.head_link(), s.sut.head_payload()) == (link, payload), \
            f"after an overflow that kept {kept} outputs the head is {s.sut.head_link()}, expected {link}"


def counters_match(s: DaemonHostSubject) -> None:
    """stats() equals what the scripted daemon implies: processed, emitted (incl. before an overflow), errors."""
    want = DaemonStats(*s.expected)
    assert s.sut.stats() == want, f"stats() {s.sut.stats()} but the script implies {want}"


def no_output_deliver_keeps_head(s: DaemonHostSubject) -> None:
    """A deliver whose daemon produced no output leaves the chain head link and payload unchanged."""
    if s.no_output is not None:
        before, after = s.no_output
        assert before == after, f"no-output deliver moved the head from {before[0]} to {after[0]}"


def restored_head_matches_snapshot(s: DaemonHostSubject) -> None:
    """After a restore the head is the snapshot's link and head payload (state bytes only as fallback)."""
    if s.last is None or s.last[0] not in RESTORES or s.last[2].error or s.restored is None:
        return
    link, payload, horizon, _ = s.restored
    assert s.sut.head_link() == link, f"restored head {s.sut.head_link()} != snapshot link {link}"
    assert s.sut.head_payload() == payload, \
        f"restored head payload {s.sut.head_payload()[:16]!r}... != {payload[:16]!r}..."
    assert s._host_horizon() == horizon, "restored horizon differs from the snapshot's"


def bloom_has_no_false_negatives(s: DaemonHostSubject) -> None:
    """Every observed origin might be contained: in the standalone encoding and in emitted events' horizons."""
    enc = s.horizon.encode()
    for origin, _ in s.horizon.state().entries:
        assert s.horizon_cls.might_contain(enc, origin), f"bloom {enc:#x} misses observed origin {origin:#x}"
    if s.emitted_horizon is not None:
        carried, origins = s.emitted_horizon
        for origin in origins:
            assert s.horizon_cls.might_contain(carried, origin), \
                f"emitted horizon {carried:#x} misses observed origin {origin:#x}"


def cached_encoding_equals_fresh(s: DaemonHostSubject) -> None:
    """encode() (cached or not) equals the 64-bit bloom recomputed from the current origin set."""
    origins = [o for o, _ in s.horizon.state().entries]
    got, fresh = s.horizon.encode(), spec_encoding(origins)
    assert got == fresh, f"encode() {got:#x} != fresh {fresh:#x} over {len(origins)} origins"
    if s.emitted_horizon is not None:
        carried, origins = s.emitted_horizon
        assert carried == spec_encoding(origins), \
            f"outputs carried horizon {carried:#x}, fresh is {spec_encoding(origins):#x}"


def streaming_and_oneshot_hashes_agree(s: DaemonHostSubject) -> None:
    """compute_parent_hash and the chain's (streaming) parent hash equal xxh3 of link bytes ++ payload."""
    if s.hash_check is None:
        return
    link, payload, module_hash, chained = s.hash_check
    want = oneshot_parent_hash(link, payload)
    assert module_hash == want, f"compute_parent_hash over {len(payload)} bytes {module_hash:#x} != {want:#x}"
    assert chained in (None, want), f"chained parent hash over {len(payload)} bytes {chained:#x} != {want:#x}"


def framing_round_trips(s: DaemonHostSubject) -> None:
    """write counts written/skipped events and bytes truly; reading back returns the kept events, up to count."""
    if s.frame is None:
        return
    events, limit, prefix, buf, result, count, read, now = s.frame
    kept = [e for e in events if 32 + len(e.payload) <= limit]
    size = sum(36 + len(e.payload) for e in kept)
    want = WriteCausalEventsResult(size, len(kept), len(events) - len(kept))
    assert result == want, f"write answered {result}, expected {want}"
    assert buf[:len(prefix)] == prefix and len(buf) == len(prefix) + size, "write touched the prefix or mis-sized"
    if isinstance(read, list):
        back = [CausalEvent(e.link, e.payload, now) for e in kept][:count]
        assert read == back, f"read {len(read)} events back, expected {len(back)} equal to the kept ones"


def reading_stops_at_first_malformed(s: DaemonHostSubject) -> None:
    """read_causal_events returns exactly the entries before the first malformed one, nothing after it."""
    if s.malformed is None:
        return
    good, _, read, now = s.malformed
    want = [CausalEvent(e.link, e.payload, now) for e in good]
    assert read == want, f"read {len(read)} events, expected the {len(want)} before the malformed entry"


def overflow_kept_earlier_outputs(s: DaemonHostSubject) -> bool:
    """A deliver overflowed the sequence after appending at least one output."""
    return bool(s.overflow and s.overflow[0] and s.last and s.last[2].error == OVERFLOW_ERROR)


def no_output_deliver(s: DaemonHostSubject) -> bool:
    """A daemon produced no output and deliver returned []."""
    return s.no_output is not None and s.last is not None and s.last[0] == "deliver"


def daemon_error_counted(s: DaemonHostSubject) -> bool:
    """A daemon error (returned or raised) was counted."""
    return s.expected[2] > 0


def restore_fell_back_to_state_bytes(s: DaemonHostSubject) -> bool:
    """A snapshot without a head payload was restored (the chain continues from the state bytes)."""
    return bool(s.last and s.last[0] in RESTORES and not s.last[2].error and s.restored and s.restored[3])


def malformed_entry_stopped_read(s: DaemonHostSubject) -> bool:
    """A read stopped at a malformed entry with valid frames after it."""
    return bool(s.malformed and s.malformed[1])


def oversized_event_skipped(s: DaemonHostSubject) -> bool:
    """write_causal_events skipped (and counted) an event over the length limit."""
    return bool(s.frame and s.frame[4].events_skipped)


def logical_time_saturated(s: DaemonHostSubject) -> bool:
    """The standalone horizon's logical time sits at u64::MAX."""
    return s.horizon.logical_time() == U64_MAX


def bloom_false_positive(s: DaemonHostSubject) -> bool:
    """The standalone horizon's bloom might contain an origin it never observed (a false positive)."""
    if s.probe and s.probe[1] and not s.probe[0]:
        return True
    enc = s.horizon.encode()
    return any(s.horizon_cls.might_contain(enc, o) for o in UNSEEN_ORIGINS)


def sixteen_origin_horizon_emitted(s: DaemonHostSubject) -> bool:
    """Outputs were chained with a horizon of at least 16 origins."""
    return bool(s.emitted_horizon and len(s.emitted_horizon[1]) >= 16)


def tampered_link_rejected(s: DaemonHostSubject) -> bool:
    """validate_chain_link rejected a tampered successor."""
    return bool(s.last and s.last[0] == "validate" and s.last[2].error)


def _edge(name: str, doc: str) -> Callable[[DaemonHostSubject], bool]:
    return ghost_flag("edges", name, doc)


#: One witness per boundary class the machine aims at (meshspec.strategies.around).
BOUNDARY_WITNESSES = (
    _edge("frame_fits_limit_exactly", "A write whose limit was exactly 32 + an event's payload size."),
    _edge("write_limit_minus_one_refused", "A write limit of -1 (just below u32) was refused."),
    _edge("read_count_equals_frames_written", "A read asked for exactly as many events as were written."),
    _edge("observed_at_stored_sequence", "The horizon observed an origin at exactly its stored sequence."),
    _edge("deliver_at_stored_sequence", "deliver brought an origin at exactly its stored sequence."),
    _edge("chain_filled_to_u64_max", "A deliver's last output took the chain exactly to sequence u64::MAX."),
)

#: The boundary witnesses aim at the fuzzer's generators; the explorer's fixed alphabet is
#: not asked to reach them.
FUZZ_ONLY_WITNESSES = tuple(w.__name__ for w in BOUNDARY_WITNESSES)


INVARIANTS = (
    always(logical_time_saturates), always(appended_events_validate), always(counters_match),
    always(no_output_deliver_keeps_head), always(restored_head_matches_snapshot),
    always(bloom_has_no_false_negatives), always(cached_encoding_equals_fresh),
    always(streaming_and_oneshot_hashes_agree), always(framing_round_trips),
    always(reading_stops_at_first_malformed),
    sometimes(overflow_kept_earlier_outputs), sometimes(no_output_deliver),
    sometimes(daemon_error_counted), sometimes(restore_fell_back_to_state_bytes),
    sometimes(malformed_entry_stopped_read), sometimes(oversized_event_skipped),
    sometimes(logical_time_saturated), sometimes(bloom_false_positive),
    sometimes(sixteen_origin_horizon_emitted), sometimes(tampered_link_rejected),
    *map(sometimes, BOUNDARY_WITNESSES),
)


# -- the machine ----------------------------------------------------------------------------

ORIGIN = st.sampled_from(ORIGINS)
HIGH_SEQ = st.sampled_from([0, 5, 2**32, U64_MAX - 3, U64_MAX - 1, U64_MAX])
SIZE = st.sampled_from(SIZES)
OUTPUTS = st.sampled_from(["error", "raise", (), (), (0,), (33,), (1024,), (31, 32), (0, 63, 64),
                          (1, 65, 8192, 32), (64, 64, 64, 64)]) | st.lists(SIZE, max_size=4).map(tuple)
SEQS = (0, 1, 2, 3, 7, 2**32, U64_MAX - 1, U64_MAX)
SEQ = st.sampled_from(SEQS)


def _entry_sets() -> list[tuple]:
    """Horizon entry lists of 0..20 origins with mixed sequences (one draw each, fast to shrink)."""
    rng = random.Random(0x6E74)
    return [tuple((o, rng.choice(SEQS)) for o in rng.sample(ORIGINS, n))
            for n in (0, 0, 1, 2, 3, 4, 6, 8, 12, 16, 16, 17, 18, 20, 20)]


ENTRIES = st.sampled_from(_entry_sets())
LOGICAL = st.sampled_from([0, 1, 5, U64_MAX - 1, U64_MAX])
COUNTS = st.sampled_from([0, 1, 2, 3, 4, 5, U16_MAX, U16_MAX + 1])
LIMITS = st.sampled_from([U32_MAX, U32_MAX, 0, 31, 32, 33, 63, 64, 65, 95, 96, 97, 1055, 1056, 1057,
                          8224, U32_MAX + 1])


class DaemonHostMachine(LockstepMachine):
    """Model and impl daemon host in lockstep; every rule is one `self.step`."""

    @initialize(origin=st.sampled_from([0xABCD_0000_1234, 0, U64_MAX]),
                start_seq=st.sampled_from([None, None, 5, U64_MAX - 3, U64_MAX - 1, U64_MAX]),
                head_size=SIZE, stateful=st.sampled_from([True, True, False]))
    def init(self, origin: int, start_seq: Optional[int], head_size: int, stateful: bool) -> None:
        self.step("init", origin, start_seq, head_size, stateful)

    # -- boundaries (meshspec.strategies.around) ----------------------------------------------
    # The host has no timeout, cooldown or deadline (the clock only stamps events), so its
    # boundaries are integer limits and sizes relative to the state as it stands: the u32 write
    # limit against 0, u32::MAX and each frame's 32 + payload bytes; the u16 read count against
    # 0, u16::MAX and the frames written; an inbound sequence against the one the horizon
    # stores for that origin; the outputs of a deliver against the sequence room left below
    # u64::MAX. Unclipped where the type's edge is the boundary, so -1 and max + 1 are drawn
    # (both sides refuse them with the same ValueError).

    def _sequence(self, data: Any, stored: Optional[int]) -> int:
        """An inbound sequence: the one stored for the origin, one below or above it, or any."""
        return data.draw(around([stored], SEQ, lo=0, hi=U64_MAX), label="sequence")

    def _outputs(self, data: Any) -> Any:
        """The daemon's answer; near u64::MAX, as many outputs as the sequence room (±1)."""
        room = U64_MAX - self.ls.model.sut.sequence()
        n = data.draw(around([room], st.none(), lo=0), label="aimed outputs") if room < 5 else None
        if n is None:
            return data.draw(OUTPUTS, label="outputs")
        return tuple(data.draw(st.lists(SIZE, min_size=n, max_size=n), label="outputs"))

    @rule(data=st.data(), origin=ORIGIN)
    def deliver(self, data: Any, origin: int) -> None:
        horizon = self.ls.model._host_horizon()
        stored = None if horizon is None else dict(horizon.entries).get(origin)
        self.step("deliver", origin, self._sequence(data, stored), self._outputs(data))

    @rule(ns=st.sampled_from([0, 1, 1_000_000_000]))
    def advance_time(self, ns: int) -> None:
        self.step("advance_time", ns)

    @rule()
    def inspect(self) -> None:
        self.step("inspect")

    @rule()
    def take_snapshot(self) -> None:
        self.step("take_snapshot")

    @rule(index=st.integers(0, 3), drop_head_payload=st.booleans(), reject=st.sampled_from([False, False, True]))
    def restore(self, index: int, drop_head_payload: bool, reject: bool) -> None:
        self.step("restore", index, drop_head_payload, reject)

    @rule(sequence=HIGH_SEQ, head_size=SIZE, state_size=st.sampled_from([0, 3, 8, 33]),
          with_head_payload=st.booleans(), entries=ENTRIES, logical_time=LOGICAL,
          reject=st.sampled_from([False, False, True]))
    def restore_crafted(self, sequence: int, head_size: int, state_size: int, with_head_payload: bool,
                        entries: tuple, logical_time: int, reject: bool) -> None:
        self.step("restore_crafted", sequence, head_size, state_size, with_head_payload, entries,
                  logical_time, reject)

    @rule(index=st.integers(0, 3), foreign=st.sampled_from([False, False, True]))
    def from_snapshot(self, index: int, foreign: bool) -> None:
        self.step("from_snapshot", index, foreign)

    @rule(sequence=HIGH_SEQ, head_size=SIZE, foreign=st.sampled_from([False, False, True]))
    def fork(self, sequence: int, head_size: int, foreign: bool) -> None:
        self.step("fork", sequence, head_size, foreign)

    @rule(size=SIZE, sequence=SEQ)
    def parent_hash(self, size: int, sequence: int) -> None:
        self.step("parent_hash", size, sequence)

    @rule(tamper=st.sampled_from(["none", "origin", "sequence_repeated", "parent", "payload"]))
    def validate(self, tamper: str) -> None:
        self.step("validate", tamper)

    @rule(data=st.data(), origin=ORIGIN)
    def horizon_observe(self, data: Any, origin: int) -> None:
        stored = self.ls.model.horizon.get(origin)
        self.step("horizon_observe", origin, self._sequence(data, stored))

    @rule(entries=ENTRIES, logical_time=LOGICAL)
    def horizon_merge(self, entries: tuple, logical_time: int) -> None:
        self.step("horizon_merge", entries, logical_time)

    @rule(entries=ENTRIES, logical_time=LOGICAL)
    def horizon_from_state(self, entries: tuple, logical_time: int) -> None:
        self.step("horizon_from_state", entries, logical_time)

    @rule(origin=ORIGIN, sequence=SEQ)
    def horizon_query(self, origin: int, sequence: int) -> None:
        self.step("horizon_query", origin, sequence)

    @rule(origin_a=ORIGIN, origin_b=ORIGIN, entries_b=ENTRIES)
    def potentially_concurrent(self, origin_a: int, origin_b: int, entries_b: tuple) -> None:
        self.step("potentially_concurrent", origin_a, origin_b, entries_b)

    @rule(data=st.data(), sizes=st.lists(SIZE, max_size=4).map(tuple), prefix_size=st.sampled_from([0, 0, 3]))
    def write_read(self, data: Any, sizes: tuple, prefix_size: int) -> None:
        frames = [M.CAUSAL_LINK_SIZE + n for n in sizes]
        limit = data.draw(around([0, U32_MAX, *frames], LIMITS), label="limit")
        count = data.draw(around([0, U16_MAX, len(sizes)], COUNTS), label="count")
        self.step("write_read", sizes, limit, count, prefix_size)

    @rule(sizes=st.lists(SIZE, max_size=3).map(tuple), cut=st.sampled_from(sorted(MALFORMED)),
          tail_sizes=st.lists(SIZE, min_size=1, max_size=2).map(tuple))
    def read_malformed(self, sizes: tuple, cut: str, tail_sizes: tuple) -> None:
        self.step("read_malformed", sizes, cut, tail_sizes)


OPERATIONS = (
    "deliver", "take_snapshot", "restore_from_snapshot", "from_snapshot", "from_fork",
    "write_causal_events", "read_causal_events", "stats", "origin_hash", "head_link",
    "head_payload", "sequence", "horizon", "abstract",
)


# The curated mutants live in mutants/daemon_host.py; the registry reads them lazily.
from meshspec.registry import mutant_bounds_of, mutants_of  # noqa: E402
from impl.daemon_host import DaemonHost as ImplHost  # noqa: E402


# -- benchmarks -----------------------------------------------------------------------------

BENCH_ORIGIN = 0xABCD_0000_1234


def _bench_deliver_no_output(cls: type, origins: int) -> Callable[[], Any]:
    host = cls(BENCH_ORIGIN, lambda event: [], clock=FakeClock(0))
    for i in range(origins):
        host.deliver(CausalEvent(CausalLink(1000 + i, 0, 1, 0), b"", 0))
    event = CausalEvent(CausalLink(1000, 0, 1, 0), b"", 0)
    return lambda: host.deliver(event)


def _bench_parent_hash(cls: type, size: int) -> Callable[[], Any]:
    fn = side_module(cls).compute_parent_hash
    link, payload = CausalLink(BENCH_ORIGIN, 0xCAFE, 41, 0x1234), bytes(range(256)) * (size // 256) + bytes(size % 256)
    return lambda: fn(link, payload)


BENCH = (
    BenchCase("deliver, no output (horizon origins)", (1, 4, 16), _bench_deliver_no_output),
    BenchCase("compute_parent_hash (payload bytes)", (64, 1024), _bench_parent_hash),
)

# -- exploration (meshspec explore) ---------------------------------------------------------

def daemon_host_view(s: DaemonHostSubject) -> tuple:
    """What decides a state's future (TLC's VIEW): no clock, no timestamps, no last-step records.

    Sound, because:
    - the clock only stamps events (`received_at` of deliver outputs and of reads); the
      abstract state, the chain head, snapshots and horizons hold no timestamp, and every
      invariant compares a stamp only with the clock read in the same step (framing,
      malformed reads), so no invariant or later step observes the absolute time;
    - the last-step records (`appended`, `overflow`, `no_output`, `emitted_horizon`,
      `restored`, `hash_check`, `frame`, `malformed`, `probe`, `last`) are checked on the
      edge that writes them; the invariants that keep reading one in later states pair it
      only with itself, the chain head (unchanged until the next deliver, restore or fork
      replaces the record) or the standalone horizon (in the view);
    - what steers the future stays: the model's abstract state, the standalone horizon,
      the ghost chain head `pred`, the expected counters, the snapshots restores pick
      from, the scripted daemon's state, and the RNG state (a hash of its 624 words):
      the payload and link bytes later steps draw; so equal views have equal successors
      and the counts do not depend on the order states are explored in.
    """
    daemon = s.daemon
    return (s.sut.abstract(), s.horizon.state(), s.pred, tuple(s.expected), tuple(s.snapshots),
            daemon.stateful, daemon.calls, hash(s.rng.getstate()[1]))


_E = _entry_sets()
_E1, _E4, _E16, _E20 = _E[2], _E[5], _E[9], _E[13]
_HOST_ORIGIN = 0xABCD_0000_1234

DAEMON_HOST_ACTIONS: tuple[tuple[str, tuple], ...] = (
    ("deliver", (0xAAAA, 1, ())), ("deliver", (0xAAAA, 0, (0,))), ("deliver", (U64_MAX, U64_MAX, (31, 32, 33))),
    ("deliver", (0xBBBB, 7, (8192,))), ("deliver", (1, 2, "error")), ("deliver", (2, 3, "raise")),
    ("advance_time", (1,)), ("inspect", ()), ("take_snapshot", ()),
    ("restore", (0, False, False)), ("restore", (1, True, False)), ("restore", (0, False, True)),
    ("restore_crafted", (U64_MAX - 1, 33, 8, True, _E16, U64_MAX, False)),  # then a deliver of 3 overflows
    ("restore_crafted", (5, 0, 3, False, (), 0, False)),
    ("restore_crafted", (U64_MAX, 1, 0, True, _E20, U64_MAX - 1, True)),
    ("from_snapshot", (0, False)), ("from_snapshot", (0, True)),
    ("fork", (U64_MAX - 1, 1, False)), ("fork", (5, 0, True)),
    ("parent_hash", (0, 0)), ("parent_hash", (31, 1)), ("parent_hash", (32, U64_MAX)),
    ("parent_hash", (33, U64_MAX - 1)), ("parent_hash", (65, 2**32)),
    *(("validate", (t,)) for t in ("none", "origin", "sequence_repeated", "parent", "payload")),
    ("horizon_observe", (0xAAAA, 1)), ("horizon_observe", (0xCCCC, 0)), ("horizon_observe", (U64_MAX, U64_MAX)),
    ("horizon_merge", (_E16, U64_MAX)), ("horizon_merge", (_E1, U64_MAX - 1)),
    ("horizon_from_state", (_E20, U64_MAX)), ("horizon_from_state", ((), 0)),
    ("horizon_query", (0xAAAA, 1)), ("horizon_query", (UNSEEN_ORIGINS[0], 0)),
    ("potentially_concurrent", (0xAAAA, 0xBBBB, _E4)),
    # framing limits: 32 + 33 = 65 fits exactly, 64 is one below, 66 one above; counts and limits past u16/u32
    ("write_read", ((0, 33), 65, 2, 0)), ("write_read", ((33,), 64, 1, 3)), ("write_read", ((33, 1), 66, 1, 0)),
    ("write_read", ((1,), U32_MAX, U16_MAX, 0)), ("write_read", ((1,), U32_MAX + 1, 1, 0)),
    ("write_read", ((0,), 31, U16_MAX + 1, 0)),
    *(("read_malformed", ((0, 33), cut, (1,))) for cut in sorted(MALFORMED)),
)

EXPLORATION = Exploration(
    # a fresh chain with a stateful daemon; origin u64::MAX one below the last sequence, stateless
    inits=((_HOST_ORIGIN, None, 0, True), (U64_MAX, U64_MAX - 1, 33, False)),
    actions=DAEMON_HOST_ACTIONS,
    bounds={"small": Bound(2), "large": Bound(3)},
    view=daemon_host_view,
    mutant_bounds=mutant_bounds_of("daemon_host", "small"),
)

COMPONENT = Component(
    name="daemon_host",
    summary="net-mesh 0.25.0 compute/host.rs, state/causal.rs and state/horizon.rs: deliver, the "
            "causal chain and its framing, the observed horizon bloom, snapshots and restores.",
    model_cls=M.DaemonHost, impl_cls=ImplHost, subject_cls=DaemonHostSubject,
    machine_cls=DaemonHostMachine, invariants=INVARIANTS, mutants=mutants_of("daemon_host"),
    errors=(M.DaemonError, M.ChainError), operations=OPERATIONS, bench=BENCH, exploration=EXPLORATION,
)
