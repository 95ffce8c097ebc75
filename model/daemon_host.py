"""Reference model of the net-mesh 0.25.0 daemon host and causal chain
(`compute/host.rs`, `state/causal.rs`, `state/horizon.rs`).

What is modelled
- `CausalLink` (32 bytes, little-endian origin/horizon/sequence/parent, all u64),
  `compute_parent_hash` = xxh3-64 (seed 0) over link bytes ++ payload, computed here
  over the concatenated bytes; `CausalEvent`; `CausalChainBuilder`;
  `validate_chain_link` (origin, then sequence, then parent hash).
- `ObservedHorizon`: origin -> highest sequence, saturating logical time, `merge`,
  and `encode` as the 64-bit bloom with three Kirsch-Mitzenmacher positions from
  xxh3-64 of the origin's 8 LE bytes; `might_contain`, `potentially_concurrent`.
- The framing `[u32 LE total_len = 32 + payload_len][link][payload]`.
  Writing skips (and counts) events whose total length does not fit a u32. Reading
  follows 0.25.0's `read_causal_events(data, count: u16)`: it parses at most `count`
  entries and STOPS at the first malformed one (fewer than 4 bytes left for the
  length, `total_len < 32`, or fewer than `total_len` bytes left), returning the
  entries parsed before it; trailing bytes after `count` entries are ignored. The
  Rust warning log is not modelled. Each parsed event is stamped `received_at` from
  the clock, as Rust stamps `current_timestamp()`.
- `DaemonHost` with an injected daemon: `deliver` observes the inbound link first
  (even when processing then fails), counts errors / processed / emitted, encodes the
  horizon on EVERY deliver (the pre-#153 shape; encoding is pure, so this is not
  observable) and appends one chained event per output. Snapshots carry the head
  link, head payload, daemon state and horizon; restore rebuilds the chain from them.

u64 edges (as 0.25.0): the next sequence after u64::MAX does not exist, so `append`
returns None and `deliver` raises `ProcessFailed("causal sequence overflow")`, keeping
the outputs appended before the overflow in the chain and in `events_emitted` but not
returning them. `validate_chain_link` with a predecessor at u64::MAX reports
`SequenceGap(expected=u64::MAX)`. Logical time saturates at u64::MAX in `observe` and
`merge`.

Semantic decisions where the sources are silent
- The entity identity is the origin hash (u64); the keypair/entity id is not modelled,
  so the RestoreFailed texts name origin hashes where Rust prints entity ids.
- `take_snapshot` fills `head_payload` with the chain's head payload (what production
  callers do with `with_head_payload`); a snapshot built with `head_payload=None`
  exercises the fallback to the state bytes (a warning in Rust, not modelled).
- `from_fork` raises `RestoreFailed` on an origin mismatch (0.25.0's fix of bug 39 made
  it an error; the text is the old assertion's).
- The injected daemon is either a callable `event -> list[bytes] | DaemonError` or an
  object with `process(event)` and, optionally, `snapshot() -> bytes | None` and
  `restore(state) -> None | DaemonError` (Rust's trait defaults: stateless, accept).
  A returned DaemonError is treated like a raised one; other exceptions propagate
  uncounted (Rust's `process` cannot fail any other way).
- `write_causal_events` takes `max_total_len` (default u32::MAX): the u32 limit made
  adjustable so the skip path can be tested without 4 GiB payloads.
- DaemonHost exposes the framing as methods too, stamping reads with its own clock.

Left out: keypairs and entity ids, the subscription ledger and bindings bytes, the
config (auto-snapshot is never read by deliver), `snapshots_taken`, fork sentinels.
"""
from __future__ import annotations

import struct
from typing import Any, Iterable, Mapping, Optional, Union

import attrs
import xxhash

from meshspec.clock import Clock, monotonic_clock

U16_MAX = 0xFFFF
U32_MAX = 0xFFFF_FFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
CAUSAL_LINK_SIZE = 32
LENGTH_PREFIX_SIZE = 4
SUBPROTOCOL_CAUSAL = 0x0400
SUBPROTOCOL_SNAPSHOT = 0x0401
BLOOM_BITS = 64

_LINK_FORMAT = "<QQQQ"


def check_u64(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U64_MAX:
        raise ValueError(f"{name} must be a u64, got {value!r}")
    return value


def check_u16(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U16_MAX:
        raise ValueError(f"{name} must be a u16, got {value!r}")
    return value


def u64_checked_add(a: int, b: int) -> Optional[int]:
    """Rust `checked_add` on u64: None instead of wrapping.

    pre: 0 <= a <= U64_MAX and 0 <= b <= U64_MAX
    post: (__return__ is None) == (a + b > U64_MAX)
    post: __return__ is None or __return__ == a + b
    """
    total = a + b
    return total if total <= U64_MAX else None


def u64_saturating_add(a: int, b: int) -> int:
    """u64 saturating addition.

    pre: 0 <= a <= U64_MAX and 0 <= b <= U64_MAX
    post: max(a, b) <= __return__ <= U64_MAX
    post: __return__ == (u64_checked_add(a, b) if u64_checked_add(a, b) is not None else U64_MAX)
    """
    return min(a + b, U64_MAX)


def _u64_field(instance: object, attribute: attrs.Attribute, value: int) -> None:
    check_u64(attribute.name, value)


# --------------------------------------------------------------------------- errors

class _RustError(Exception):
    """Errors compare by type and fields, so lockstep comparison can use ==."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == other.args  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.args))


class ChainError(_RustError):
    def __init__(self, expected: int, got: int) -> None:
        super().__init__(expected, got)
        self.expected = expected
        self.got = got


class OriginMismatch(ChainError):
    def __str__(self) -> str:
        return f"origin mismatch: expected {self.expected:#x}, got {self.got:#x}"


class SequenceGap(ChainError):
    def __str__(self) -> str:
        return f"sequence gap: expected {self.expected}, got {self.got}"


class ParentHashMismatch(ChainError):
    def __str__(self) -> str:
        return f"parent hash mismatch: expected {self.expected:#x}, got {self.got:#x}"


class DaemonError(_RustError):
    """Base of the daemon errors; `str()` is the Rust Display text."""


class ProcessFailed(DaemonError):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return f"daemon process failed: {self.msg}"


class SnapshotFailed(DaemonError):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return f"snapshot failed: {self.msg}"


class RestoreFailed(DaemonError):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg

    def __str__(self) -> str:
        return f"restore failed: {self.msg}"


class NotFound(DaemonError):
    def __init__(self, origin_hash: int) -> None:
        super().__init__(origin_hash)
        self.origin_hash = origin_hash

    def __str__(self) -> str:
        return f"daemon not found: {self.origin_hash:#x}"


class Stale(DaemonError):
    def __init__(self, origin_hash: int) -> None:
        super().__init__(origin_hash)
        self.origin_hash = origin_hash

    def __str__(self) -> str:
        return f"daemon {self.origin_hash:#x} was swapped or unregistered concurrently; mutation did not land"


SEQUENCE_OVERFLOW = "causal sequence overflow"


# --------------------------------------------------------------------------- causal link

@attrs.frozen
class CausalLink:
    origin_hash: int = attrs.field(validator=_u64_field)
    horizon_encoded: int = attrs.field(validator=_u64_field)
    sequence: int = attrs.field(validator=_u64_field)
    parent_hash: int = attrs.field(validator=_u64_field)

    @classmethod
    def genesis(cls, origin_hash: int, horizon_encoded: int = 0) -> CausalLink:
        return cls(origin_hash, horizon_encoded, 0, 0)

    def is_genesis(self) -> bool:
        return self.sequence == 0 and self.parent_hash == 0

    def to_bytes(self) -> bytes:
        return struct.pack(_LINK_FORMAT, self.origin_hash, self.horizon_encoded,
                           self.sequence, self.parent_hash)

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview]) -> Optional[CausalLink]:
        """The first 32 bytes as a link; None when fewer are given."""
        if len(data) < CAUSAL_LINK_SIZE:
            return None
        return cls(*struct.unpack_from(_LINK_FORMAT, data))

    def next(self, payload: bytes, horizon_encoded: int) -> Optional[CausalLink]:
        """The link after this one, whose event carries `payload`; None past u64::MAX."""
        sequence = u64_checked_add(self.sequence, 1)
        if sequence is None:
            return None
        return CausalLink(self.origin_hash, horizon_encoded, sequence,
                          compute_parent_hash(self, payload))


def compute_parent_hash(prev_link: CausalLink, prev_payload: bytes) -> int:
    """xxh3-64 (seed 0) of the previous link's 32 bytes followed by its payload."""
    return xxhash.xxh3_64_intdigest(prev_link.to_bytes() + bytes(prev_payload))


@attrs.frozen
class CausalEvent:
    link: CausalLink
    payload: bytes = attrs.field(converter=bytes)
    received_at: int = 0


def validate_chain_link(prev_link: CausalLink, prev_payload: bytes, new_link: CausalLink) -> None:
    """Raise the first ChainError of: origin, sequence (prev + 1), parent hash."""
    if new_link.origin_hash != prev_link.origin_hash:
        raise OriginMismatch(prev_link.origin_hash, new_link.origin_hash)
    expected_seq = u64_checked_add(prev_link.sequence, 1)
    if expected_seq is None:
        raise SequenceGap(U64_MAX, new_link.sequence)
    if new_link.sequence != expected_seq:
        raise SequenceGap(expected_seq, new_link.sequence)
    expected_parent = compute_parent_hash(prev_link, prev_payload)
    if new_link.parent_hash != expected_parent:
        raise ParentHashMismatch(expected_parent, new_link.parent_hash)


class CausalChainBuilder:
    """The head of one entity's chain and the payload of the head event."""

    def __init__(self, origin_hash: int, *, clock: Clock = monotonic_clock) -> None:
        self._origin_hash = check_u64("origin_hash", origin_hash)
        self._head = CausalLink.genesis(origin_hash, 0)
        self._head_payload = b""
        self._clock = clock

    @classmethod
    def from_head(cls, head: CausalLink, head_payload: bytes, *,
                  clock: Clock = monotonic_clock) -> CausalChainBuilder:
        builder = cls(head.origin_hash, clock=clock)
        builder._head = head
        builder._head_payload = bytes(head_payload)
        return builder

    def append(self, payload: bytes, horizon_encoded: int) -> Optional[CausalEvent]:
        next_link = self._head.next(self._head_payload, horizon_encoded)
        if next_link is None:
            return None
        event = CausalEvent(next_link, payload, self._clock())
        self._head, self._head_payload = next_link, event.payload
        return event

    def head(self) -> CausalLink:
        return self._head

    def head_payload(self) -> bytes:
        return self._head_payload

    def sequence(self) -> int:
        return self._head.sequence

    def origin_hash(self) -> int:
        return self._origin_hash

    def abstract(self) -> tuple:
        return (self._origin_hash, self._head, self._head_payload)

    def check_invariants(self) -> None:
        """The model keeps no derived state."""


# --------------------------------------------------------------------------- horizon

def _sorted_entries(entries: Union[Mapping[int, int], Iterable[tuple[int, int]]]) -> tuple:
    items = entries.items() if isinstance(entries, Mapping) else entries
    return tuple(sorted(dict(items).items()))


@attrs.frozen
class HorizonState:
    """A horizon's value: (origin, highest sequence) pairs by origin, and logical time."""

    entries: tuple[tuple[int, int], ...] = attrs.field(default=(), converter=_sorted_entries)
    logical_time: int = attrs.field(default=0, validator=_u64_field)


def bloom_bits_for_origin(origin_hash: int) -> int:
    """The three bloom bits of an origin: h1, h1 + h2, h1 + 2*h2 (mod 64), h2 forced odd.

    pre: 0 <= origin_hash <= U64_MAX
    post: 0 < __return__ < 2**BLOOM_BITS
    post: bin(__return__).count("1") == 3
    post: might_contain(__return__, origin_hash)
    """
    h = xxhash.xxh3_64_intdigest(check_u64("origin_hash", origin_hash).to_bytes(8, "little"))
    h1 = h & 0xFFFF_FFFF
    h2 = (h >> 32) | 1
    return (1 << h1 % BLOOM_BITS) | (1 << (h1 + h2) % BLOOM_BITS) | (1 << (h1 + 2 * h2) % BLOOM_BITS)


def might_contain(encoded: int, origin_hash: int) -> bool:
    bits = bloom_bits_for_origin(origin_hash)
    return encoded & bits == bits


def potentially_concurrent(horizon_a: int, origin_b: int, horizon_b: int, origin_a: int) -> bool:
    """Neither horizon might contain the other's origin."""
    return not might_contain(horizon_a, origin_b) and not might_contain(horizon_b, origin_a)


class ObservedHorizon:
    """What one entity has observed: origin -> highest sequence, plus logical time."""

    def __init__(self) -> None:
        self._entries: dict[int, int] = {}
        self._logical_time = 0

    @classmethod
    def from_state(cls, state: HorizonState) -> ObservedHorizon:
        horizon = cls()
        horizon._entries = dict(state.entries)
        horizon._logical_time = state.logical_time
        return horizon

    def observe(self, origin_hash: int, sequence: int) -> None:
        check_u64("origin_hash", origin_hash)
        check_u64("sequence", sequence)
        stored = self._entries.setdefault(origin_hash, 0)
        if sequence > stored:
            self._entries[origin_hash] = sequence
            self._logical_time = u64_saturating_add(self._logical_time, 1)

    def merge(self, other: Union[HorizonState, Any]) -> None:
        """Per-origin max; logical time = max of both + 1 (saturating)."""
        state = other if isinstance(other, HorizonState) else other.state()
        for origin, sequence in state.entries:
            self._entries[origin] = max(self._entries.get(origin, 0), sequence)
        self._logical_time = u64_saturating_add(max(self._logical_time, state.logical_time), 1)

    def get(self, origin_hash: int) -> Optional[int]:
        return self._entries.get(origin_hash)

    def has_observed(self, origin_hash: int, sequence: int) -> bool:
        stored = self._entries.get(origin_hash)
        return stored is not None and stored >= sequence

    def contains_origin(self, origin_hash: int) -> bool:
        return origin_hash in self._entries

    def entity_count(self) -> int:
        return len(self._entries)

    def logical_time(self) -> int:
        return self._logical_time

    def encode(self) -> int:
        encoded = 0
        for origin in self._entries:
            encoded |= bloom_bits_for_origin(origin)
        return encoded

    @staticmethod
    def might_contain(encoded: int, origin_hash: int) -> bool:
        return might_contain(encoded, origin_hash)

    @staticmethod
    def potentially_concurrent(horizon_a: int, origin_b: int, horizon_b: int, origin_a: int) -> bool:
        return potentially_concurrent(horizon_a, origin_b, horizon_b, origin_a)

    def state(self) -> HorizonState:
        return HorizonState(self._entries, self._logical_time)

    def abstract(self) -> HorizonState:
        return self.state()

    def check_invariants(self) -> None:
        """The model keeps no derived state."""


# --------------------------------------------------------------------------- framing

@attrs.frozen
class WriteCausalEventsResult:
    bytes_written: int
    events_written: int
    events_skipped: int


def write_causal_events(events: Iterable[CausalEvent], buf: bytearray, *,
                        max_total_len: int = U32_MAX) -> WriteCausalEventsResult:
    """Append `[u32 LE 32 + len][link][payload]` per event; skip (and count) events
    whose total length exceeds `max_total_len` (u32::MAX in Rust)."""
    if not 0 <= max_total_len <= U32_MAX:
        raise ValueError(f"max_total_len must fit a u32, got {max_total_len!r}")
    start = len(buf)
    written = skipped = 0
    for event in events:
        total_len = CAUSAL_LINK_SIZE + len(event.payload)
        if total_len > max_total_len:
            skipped += 1
            continue
        buf += total_len.to_bytes(LENGTH_PREFIX_SIZE, "little") + event.link.to_bytes() + event.payload
        written += 1
    return WriteCausalEventsResult(len(buf) - start, written, skipped)


def read_causal_events(data: bytes, count: int, *, clock: Clock = monotonic_clock) -> list[CausalEvent]:
    """Parse up to `count` (u16) entries, stopping at the first malformed one."""
    check_u16("count", count)
    data = bytes(data)
    events: list[CausalEvent] = []
    pos = 0
    for _ in range(count):
        if len(data) - pos < LENGTH_PREFIX_SIZE:
            break
        total_len = int.from_bytes(data[pos:pos + LENGTH_PREFIX_SIZE], "little")
        pos += LENGTH_PREFIX_SIZE
        if len(data) - pos < total_len or total_len < CAUSAL_LINK_SIZE:
            break
        link = CausalLink.from_bytes(data[pos:pos + CAUSAL_LINK_SIZE])
        payload = data[pos + CAUSAL_LINK_SIZE:pos + total_len]
        pos += total_len
        events.append(CausalEvent(link, payload, clock()))
    return events


# --------------------------------------------------------------------------- daemon host

@attrs.frozen
class DaemonStats:
    events_processed: int = 0
    events_emitted: int = 0
    errors: int = 0


@attrs.frozen
class DaemonSnapshot:
    """The parts of a 0.25.0 `StateSnapshot` that touch the chain."""

    origin_hash: int
    chain_link: CausalLink
    state: bytes = attrs.field(converter=bytes)
    horizon: HorizonState = HorizonState()
    head_payload: Optional[bytes] = attrs.field(
        default=None, converter=attrs.converters.optional(bytes))

    @property
    def through_seq(self) -> int:
        return self.chain_link.sequence


def run_process(daemon: Any, event: CausalEvent) -> list[bytes]:
    """Call the injected daemon; a returned DaemonError is raised."""
    process = getattr(daemon, "process", daemon)
    outputs = process(event)
    if isinstance(outputs, DaemonError):
        raise outputs
    return [bytes(p) for p in outputs]


def daemon_snapshot(daemon: Any) -> Optional[bytes]:
    """The daemon's state bytes, or None for a stateless daemon (Rust's default)."""
    snapshot = getattr(daemon, "snapshot", None)
    state = snapshot() if snapshot is not None else None
    return None if state is None else bytes(state)


def daemon_restore(daemon: Any, state: bytes) -> None:
    """Hand state to the daemon; a returned DaemonError is raised (default: accept)."""
    restore = getattr(daemon, "restore", None)
    result = restore(state) if restore is not None else None
    if isinstance(result, DaemonError):
        raise result


def snapshot_head_payload(snapshot: DaemonSnapshot) -> bytes:
    """The payload the restored chain continues from: `head_payload`, else the state."""
    return snapshot.head_payload if snapshot.head_payload is not None else snapshot.state


class DaemonHost:
    """Runs one daemon: observes inbound links, chains the daemon's outputs."""

    def __init__(self, origin_hash: int, daemon: Any, *, clock: Clock = monotonic_clock) -> None:
        self._origin_hash = check_u64("origin_hash", origin_hash)
        self._daemon = daemon
        self._clock = clock
        self._chain = CausalChainBuilder(origin_hash, clock=clock)
        self._horizon = ObservedHorizon()
        self._stats = DaemonStats()

    @classmethod
    def from_fork(cls, origin_hash: int, daemon: Any, chain: Any, *,
                  clock: Clock = monotonic_clock) -> DaemonHost:
        if chain.origin_hash() != origin_hash:
            raise RestoreFailed(f"fork chain origin {chain.origin_hash():#x} does not match "
                                f"keypair origin {origin_hash:#x}")
        host = cls(origin_hash, daemon, clock=clock)
        host._chain = CausalChainBuilder.from_head(chain.head(), chain.head_payload(), clock=clock)
        return host

    @classmethod
    def from_snapshot(cls, origin_hash: int, daemon: Any, snapshot: DaemonSnapshot, *,
                      clock: Clock = monotonic_clock) -> DaemonHost:
        if snapshot.origin_hash != origin_hash:
            raise RestoreFailed(f"snapshot entity {snapshot.origin_hash:#x} does not match "
                                f"keypair entity {origin_hash:#x}")
        host = cls(origin_hash, daemon, clock=clock)
        host.restore_from_snapshot(snapshot)
        return host

    def deliver(self, event: CausalEvent) -> list[CausalEvent]:
        self._horizon.observe(event.link.origin_hash, event.link.sequence)
        try:
            outputs = run_process(self._daemon, event)
        except DaemonError:
            self._stats = attrs.evolve(self._stats, errors=self._stats.errors + 1)
            raise
        self._stats = attrs.evolve(self._stats, events_processed=self._stats.events_processed + 1)
        horizon_encoded = self._horizon.encode()
        emitted = []
        for payload in outputs:
            out = self._chain.append(payload, horizon_encoded)
            if out is None:
                raise ProcessFailed(SEQUENCE_OVERFLOW)
            self._stats = attrs.evolve(self._stats, events_emitted=self._stats.events_emitted + 1)
            emitted.append(out)
        return emitted

    def take_snapshot(self) -> Optional[DaemonSnapshot]:
        state = daemon_snapshot(self._daemon)
        if state is None:
            return None
        return DaemonSnapshot(self._origin_hash, self._chain.head(), state,
                              self._horizon.state(), self._chain.head_payload())

    def restore_from_snapshot(self, snapshot: DaemonSnapshot) -> None:
        daemon_restore(self._daemon, snapshot.state)
        self._chain = CausalChainBuilder.from_head(
            snapshot.chain_link, snapshot_head_payload(snapshot), clock=self._clock)
        self._horizon = ObservedHorizon.from_state(snapshot.horizon)

    def write_causal_events(self, events: Iterable[CausalEvent], buf: bytearray, *,
                            max_total_len: int = U32_MAX) -> WriteCausalEventsResult:
        return write_causal_events(events, buf, max_total_len=max_total_len)

    def read_causal_events(self, data: bytes, count: int) -> list[CausalEvent]:
        return read_causal_events(data, count, clock=self._clock)

    def stats(self) -> DaemonStats:
        return self._stats

    def origin_hash(self) -> int:
        return self._origin_hash

    def head_link(self) -> CausalLink:
        return self._chain.head()

    def head_payload(self) -> bytes:
        return self._chain.head_payload()

    def sequence(self) -> int:
        return self._chain.sequence()

    def horizon(self) -> HorizonState:
        return self._horizon.state()

    def abstract(self) -> tuple:
        return (self._origin_hash, self._chain.head(), self._chain.head_payload(),
                self._horizon.state(), self._stats)

    def check_invariants(self) -> None:
        """The model keeps no derived state."""
