"""Optimized daemon host and causal chain: the behaviour of `model.daemon_host`, with

- `compute_parent_hash` streaming the link bytes and the payload through one
  `xxhash.xxh3_64()` hasher instead of hashing a concatenated copy (#154; the digest
  is identical);
- `ObservedHorizon.encode` cached, and the cache invalidated only when `observe` or
  `merge` adds an origin (a sequence bump leaves the bloom unchanged);
- `DaemonHost.deliver` returning early when the daemon produced no output, before the
  horizon is encoded (#153), and reading the injected clock once per deliver for all
  output timestamps (#162; under a fake clock this is the model's per-event stamp);
- framing reads stamping every event of one batch with one clock read.

Override points (one behaviour each, for mutants):
- `CausalChainBuilder._link_bytes` (the 32-byte encoding fed to the hash),
  `_parent_hash` (the streaming hash), `_next_sequence` (u64 checked increment);
- `ObservedHorizon._bloom_bits` (64-bit, three positions), `_tick` (saturating
  logical time), `_origins_changed` (cache invalidation), `_encode_fresh`;
- `DaemonHost._head_payload_for` (head payload after restore), `_run_daemon`,
  `_emit`, and the class attributes `_chain_cls` / `_horizon_cls`;
- framing (`DaemonHost` inherits it): `_encode_frame`, `_frame_link_bytes`,
  `_write_result`, `_parse_frame` (returns None to stop; `(None, pos)` would skip).

Left out: what the model leaves out (see its docstring).
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Union

import xxhash

from meshspec.clock import Clock, monotonic_clock
from model.daemon_host import (
    BLOOM_BITS,
    CAUSAL_LINK_SIZE,
    LENGTH_PREFIX_SIZE,
    SEQUENCE_OVERFLOW,
    U32_MAX,
    U64_MAX,
    CausalEvent,
    CausalLink,
    DaemonError,
    DaemonSnapshot,
    DaemonStats,
    HorizonState,
    OriginMismatch,
    ParentHashMismatch,
    ProcessFailed,
    RestoreFailed,
    SequenceGap,
    WriteCausalEventsResult,
    check_u16,
    check_u64,
    daemon_restore,
    daemon_snapshot,
    run_process,
    snapshot_head_payload,
)


def compute_parent_hash(prev_link: CausalLink, prev_payload: bytes) -> int:
    """Streaming xxh3-64 over the link bytes, then the payload (no concatenation)."""
    hasher = xxhash.xxh3_64()
    hasher.update(prev_link.to_bytes())
    hasher.update(prev_payload)
    return hasher.intdigest()


def validate_chain_link(prev_link: CausalLink, prev_payload: bytes, new_link: CausalLink) -> None:
    if new_link.origin_hash != prev_link.origin_hash:
        raise OriginMismatch(prev_link.origin_hash, new_link.origin_hash)
    if prev_link.sequence == U64_MAX:
        raise SequenceGap(U64_MAX, new_link.sequence)
    if new_link.sequence != prev_link.sequence + 1:
        raise SequenceGap(prev_link.sequence + 1, new_link.sequence)
    expected_parent = compute_parent_hash(prev_link, prev_payload)
    if new_link.parent_hash != expected_parent:
        raise ParentHashMismatch(expected_parent, new_link.parent_hash)


# --------------------------------------------------------------------------- chain

class CausalChainBuilder:
    """Chain head and head payload; parent hashes streamed."""

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
        return self._append_at(payload, horizon_encoded, self._clock())

    def _append_at(self, payload: bytes, horizon_encoded: int, now: int) -> Optional[CausalEvent]:
        sequence = self._next_sequence()
        if sequence is None:
            return None
        parent = self._parent_hash(self._head, self._head_payload)
        link = CausalLink(self._head.origin_hash, horizon_encoded, sequence, parent)
        event = CausalEvent(link, payload, now)
        self._head, self._head_payload = link, event.payload
        return event

    def _next_sequence(self) -> Optional[int]:
        return None if self._head.sequence == U64_MAX else self._head.sequence + 1

    def _parent_hash(self, link: CausalLink, payload: bytes) -> int:
        hasher = xxhash.xxh3_64()
        hasher.update(self._link_bytes(link))
        hasher.update(payload)
        return hasher.intdigest()

    def _link_bytes(self, link: CausalLink) -> bytes:
        return link.to_bytes()

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
        if len(self._link_bytes(self._head)) != CAUSAL_LINK_SIZE:
            raise AssertionError(f"link encoding is {len(self._link_bytes(self._head))} bytes, not 32")
        if self._head.origin_hash != self._origin_hash:
            raise AssertionError(f"head origin {self._head.origin_hash:#x} != chain origin {self._origin_hash:#x}")


# --------------------------------------------------------------------------- horizon

class ObservedHorizon:
    """Horizon with the bloom encoding cached until the set of origins changes."""

    def __init__(self) -> None:
        self._entries: dict[int, int] = {}
        self._logical_time = 0
        self._encoded: Optional[int] = 0

    @classmethod
    def from_state(cls, state: HorizonState) -> ObservedHorizon:
        horizon = cls()
        horizon._entries = dict(state.entries)
        horizon._logical_time = state.logical_time
        horizon._origins_changed()
        return horizon

    def observe(self, origin_hash: int, sequence: int) -> None:
        check_u64("origin_hash", origin_hash)
        check_u64("sequence", sequence)
        stored = self._entries.get(origin_hash)
        if stored is None:
            stored = self._entries[origin_hash] = 0
            self._origins_changed()
        if sequence > stored:
            self._entries[origin_hash] = sequence
            self._logical_time = self._tick(self._logical_time)

    def merge(self, other: Union[HorizonState, Any]) -> None:
        state = other if isinstance(other, HorizonState) else other.state()
        added = False
        for origin, sequence in state.entries:
            stored = self._entries.get(origin)
            added = added or stored is None
            if stored is None or sequence > stored:
                self._entries[origin] = sequence
        if added:
            self._origins_changed()
        self._logical_time = self._tick(max(self._logical_time, state.logical_time))

    def _tick(self, logical_time: int) -> int:
        """Saturating `+ 1` (#140)."""
        return logical_time + 1 if logical_time < U64_MAX else U64_MAX

    def _origins_changed(self) -> None:
        self._encoded = None

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
        if self._encoded is None:
            self._encoded = self._encode_fresh()
        return self._encoded

    def _encode_fresh(self) -> int:
        encoded = 0
        for origin in self._entries:
            encoded |= self._bloom_bits(origin)
        return encoded

    @classmethod
    def _bloom_bits(cls, origin_hash: int) -> int:
        h = xxhash.xxh3_64_intdigest(check_u64("origin_hash", origin_hash).to_bytes(8, "little"))
        h1 = h & 0xFFFF_FFFF
        h2 = (h >> 32) | 1
        return (1 << h1 % BLOOM_BITS) | (1 << (h1 + h2) % BLOOM_BITS) | (1 << (h1 + 2 * h2) % BLOOM_BITS)

    @classmethod
    def might_contain(cls, encoded: int, origin_hash: int) -> bool:
        bits = cls._bloom_bits(origin_hash)
        return encoded & bits == bits

    @classmethod
    def potentially_concurrent(cls, horizon_a: int, origin_b: int, horizon_b: int, origin_a: int) -> bool:
        return not cls.might_contain(horizon_a, origin_b) and not cls.might_contain(horizon_b, origin_a)

    def state(self) -> HorizonState:
        return HorizonState(self._entries, self._logical_time)

    def abstract(self) -> HorizonState:
        return self.state()

    def check_invariants(self) -> None:
        if self._encoded is not None and self._encoded != self._encode_fresh():
            raise AssertionError(f"cached horizon encoding {self._encoded:#x} != fresh "
                                 f"{self._encode_fresh():#x} over {len(self._entries)} origins")
        if not 0 <= self._logical_time <= U64_MAX:
            raise AssertionError(f"logical time {self._logical_time} outside u64")


# --------------------------------------------------------------------------- framing

class _Framing:
    """The causal framing; a mixin of DaemonHost so one subclass can alter one step."""

    _clock: Clock

    def write_causal_events(self, events: Iterable[CausalEvent], buf: bytearray, *,
                            max_total_len: int = U32_MAX) -> WriteCausalEventsResult:
        if not 0 <= max_total_len <= U32_MAX:
            raise ValueError(f"max_total_len must fit a u32, got {max_total_len!r}")
        start = len(buf)
        written = skipped = 0
        for event in events:
            frame = self._encode_frame(event, max_total_len)
            if frame is None:
                skipped += 1
                continue
            buf += frame
            written += 1
        return self._write_result(len(buf) - start, written, skipped)

    def _encode_frame(self, event: CausalEvent, max_total_len: int) -> Optional[bytes]:
        total_len = CAUSAL_LINK_SIZE + len(event.payload)
        if total_len > max_total_len:
            return None
        return b"".join((total_len.to_bytes(LENGTH_PREFIX_SIZE, "little"),
                         self._frame_link_bytes(event.link), event.payload))

    def _frame_link_bytes(self, link: CausalLink) -> bytes:
        return link.to_bytes()

    def _write_result(self, bytes_written: int, written: int, skipped: int) -> WriteCausalEventsResult:
        return WriteCausalEventsResult(bytes_written, written, skipped)

    def read_causal_events(self, data: bytes, count: int) -> list[CausalEvent]:
        check_u16("count", count)
        view = memoryview(bytes(data))
        now = self._clock()
        events: list[CausalEvent] = []
        pos = 0
        for _ in range(count):
            parsed = self._parse_frame(view, pos)
            if parsed is None:
                break
            entry, pos = parsed
            if entry is not None:
                events.append(CausalEvent(entry[0], entry[1], now))
        return events

    def _parse_frame(self, view: memoryview, pos: int) -> Optional[tuple[Optional[tuple[CausalLink, bytes]], int]]:
        """The entry at `pos` and the position after it; None at a malformed entry."""
        if len(view) - pos < LENGTH_PREFIX_SIZE:
            return None
        total_len = int.from_bytes(view[pos:pos + LENGTH_PREFIX_SIZE], "little")
        body = pos + LENGTH_PREFIX_SIZE
        if len(view) - body < total_len or total_len < CAUSAL_LINK_SIZE:
            return None
        link = CausalLink.from_bytes(view[body:body + CAUSAL_LINK_SIZE])
        payload = bytes(view[body + CAUSAL_LINK_SIZE:body + total_len])
        return (link, payload), body + total_len


class _StandaloneFraming(_Framing):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock


def write_causal_events(events: Iterable[CausalEvent], buf: bytearray, *,
                        max_total_len: int = U32_MAX) -> WriteCausalEventsResult:
    return _StandaloneFraming(monotonic_clock).write_causal_events(events, buf, max_total_len=max_total_len)


def read_causal_events(data: bytes, count: int, *, clock: Clock = monotonic_clock) -> list[CausalEvent]:
    return _StandaloneFraming(clock).read_causal_events(data, count)


# --------------------------------------------------------------------------- daemon host

class DaemonHost(_Framing):
    """Daemon host with the no-output early return and a cached horizon encoding."""

    _chain_cls = CausalChainBuilder
    _horizon_cls = ObservedHorizon

    def __init__(self, origin_hash: int, daemon: Any, *, clock: Clock = monotonic_clock) -> None:
        self._origin_hash = check_u64("origin_hash", origin_hash)
        self._daemon = daemon
        self._clock = clock
        self._chain = self._chain_cls(origin_hash, clock=clock)
        self._horizon = self._horizon_cls()
        self._processed = self._emitted = self._errors = 0

    @classmethod
    def from_fork(cls, origin_hash: int, daemon: Any, chain: Any, *,
                  clock: Clock = monotonic_clock) -> DaemonHost:
        if chain.origin_hash() != origin_hash:
            raise RestoreFailed(f"fork chain origin {chain.origin_hash():#x} does not match "
                                f"keypair origin {origin_hash:#x}")
        host = cls(origin_hash, daemon, clock=clock)
        host._chain = cls._chain_cls.from_head(chain.head(), chain.head_payload(), clock=clock)
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
        outputs = self._run_daemon(event)
        self._processed += 1
        if not outputs:
            return []
        return self._emit(outputs, self._horizon.encode(), self._clock())

    def _run_daemon(self, event: CausalEvent) -> list[bytes]:
        try:
            return run_process(self._daemon, event)
        except DaemonError:
            self._errors += 1
            raise

    def _emit(self, outputs: list[bytes], horizon_encoded: int, now: int) -> list[CausalEvent]:
        emitted = []
        for payload in outputs:
            out = self._chain._append_at(payload, horizon_encoded, now)
            if out is None:
                raise ProcessFailed(SEQUENCE_OVERFLOW)
            self._emitted += 1
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
        self._chain = self._chain_cls.from_head(
            snapshot.chain_link, self._head_payload_for(snapshot), clock=self._clock)
        self._horizon = self._horizon_cls.from_state(snapshot.horizon)

    def _head_payload_for(self, snapshot: DaemonSnapshot) -> bytes:
        return snapshot_head_payload(snapshot)

    def stats(self) -> DaemonStats:
        return DaemonStats(self._processed, self._emitted, self._errors)

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
                self._horizon.state(), self.stats())

    def check_invariants(self) -> None:
        self._horizon.check_invariants()
        self._chain.check_invariants()
        if min(self._processed, self._emitted, self._errors) < 0:
            raise AssertionError(f"negative counter in {self.stats()}")
