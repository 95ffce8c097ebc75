"""Curated mutants of daemon_host: the historical bugs of semantics.md §2.6 items 33-40, and the caches done wrong.

The Component in `properties/daemon_host.py` gets `MUTANTS` from here through `meshspec.registry`.
"""
from __future__ import annotations

import struct
from typing import Any

import xxhash

from impl.daemon_host import CausalChainBuilder as ImplChain
from impl.daemon_host import DaemonHost as ImplHost
from impl.daemon_host import ObservedHorizon as ImplHorizon
from meshspec.lockstep import mutant
from model import daemon_host as M
from model.daemon_host import CausalEvent, CausalLink, DaemonSnapshot, WriteCausalEventsResult


class _NeverInvalidated(ImplHorizon):
    def _origins_changed(self) -> None:
        pass


class HorizonEncodedTooRarely(ImplHost):
    """Horizon cache done wrong: the encoding is never invalidated when an origin is added."""

    _horizon_cls = _NeverInvalidated


class _DropsPartialBlock(ImplChain):
    def _parent_hash(self, link: CausalLink, payload: bytes) -> int:
        hasher = xxhash.xxh3_64()
        hasher.update(self._link_bytes(link))
        whole = len(payload) - len(payload) % 32
        for i in range(0, whole, 32):
            hasher.update(payload[i:i + 32])
        return hasher.intdigest()


class StreamingHashWrongBytes(ImplHost):
    """#154 done wrong: the streaming hash feeds the payload in 32-byte blocks and drops a partial last block."""

    _chain_cls = _DropsPartialBlock


class LinkWireSize28(ImplHost):
    """§2.6 item 35: the link written as 28 bytes (u32 horizon) while the length prefix says 32 + payload."""

    def _frame_link_bytes(self, link: CausalLink) -> bytes:
        return struct.pack("<QIQQ", link.origin_hash, link.horizon_encoded & 0xFFFF_FFFF,
                           link.sequence, link.parent_hash)


class _Bloom16(ImplHorizon):
    @classmethod
    def _bloom_bits(cls, origin_hash: int) -> int:
        h = xxhash.xxh3_64_intdigest(M.check_u64("origin_hash", origin_hash).to_bytes(8, "little"))
        h1, h2 = h & 0xFFFF_FFFF, (h >> 32) | 1
        return (1 << h1 % 16) | (1 << (h1 + h2) % 16) | (1 << (h1 + 2 * h2) % 16)


class Bloom16Bit(ImplHost):
    """#130 (§2.6 item 36): the 16-bit bloom that saturated at 6-8 origins."""

    _horizon_cls = _Bloom16


class _NonSaturatingTime(ImplHorizon):
    def _tick(self, logical_time: int) -> int:
        return logical_time + 1


class LogicalTimeNotSaturating(ImplHost):
    """#140 (§2.6 item 37): logical_time += 1 overflows past u64::MAX."""

    _horizon_cls = _NonSaturatingTime


class RestoreUsesStateAsHeadPayload(ImplHost):
    """§2.6 item 38: from_snapshot continued the chain from the state bytes, not the head payload."""

    def _head_payload_for(self, snapshot: DaemonSnapshot) -> bytes:
        return snapshot.state


class FramingSkipsMalformed(ImplHost):
    """Framing done wrong: a too-short entry is skipped silently and reading goes on past it."""

    def _parse_frame(self, view: memoryview, pos: int) -> Any:
        parsed = super()._parse_frame(view, pos)
        if parsed is not None or len(view) - pos < 4:
            return parsed
        total_len, body = int.from_bytes(view[pos:pos + 4], "little"), pos + 4
        if total_len < 32 and len(view) - body >= total_len:
            return (None, body + total_len)
        return None


class WriteCountHidesSkips(ImplHost):
    """§2.6 item 40: skipped oversized events are reported as written, desyncing the framing count."""

    def _write_result(self, bytes_written: int, written: int, skipped: int) -> WriteCausalEventsResult:
        return WriteCausalEventsResult(bytes_written, written + skipped, 0)


class NoOutputSkipsProcessedCounter(ImplHost):
    """#153 done wrong: the no-output early return comes before events_processed is counted."""

    def deliver(self, event: CausalEvent) -> list[CausalEvent]:
        self._horizon.observe(event.link.origin_hash, event.link.sequence)
        outputs = self._run_daemon(event)
        if not outputs:
            return []
        self._processed += 1
        return self._emit(outputs, self._horizon.encode(), self._clock())


class ForkOriginUnchecked(ImplHost):
    """§2.6 item 39: from_fork does not refuse a chain of another origin (it used to assert)."""

    @classmethod
    def from_fork(cls, origin_hash: int, daemon: Any, chain: Any, *, clock: Any = None) -> ImplHost:
        host = cls(origin_hash, daemon, clock=clock)
        host._chain = cls._chain_cls.from_head(chain.head(), chain.head_payload(), clock=clock)
        return host


HORIZON = ("bloom_has_no_false_negatives", "cached_encoding_equals_fresh", "check_invariants", "*result",
           "horizon observation")
MUTANTS = (
    mutant("horizon_encoded_too_rarely", HorizonEncodedTooRarely,
           "horizon cache done wrong: not invalidated when observe/merge/from_state add an origin", HORIZON),
    mutant("streaming_hash_wrong_bytes", StreamingHashWrongBytes,
           "#154 (§2.6 item 34) done wrong: streaming hash over the wrong bytes",
           ("streaming_and_oneshot_hashes_agree", "appended_events_validate", "*result")),
    mutant("link_wire_size_28", LinkWireSize28, "§2.6 item 35: the 28-byte CausalLink on the wire",
           ("framing_round_trips", "reading_stops_at_first_malformed", "*result")),
    mutant("bloom_16_bit", Bloom16Bit, "#130 (§2.6 item 36): 16-bit bloom", HORIZON),
    mutant("logical_time_not_saturating", LogicalTimeNotSaturating,
           "#140 (§2.6 item 37): non-saturating logical time",
           ("logical_time_saturates", "check_invariants", "impl raised")),
    mutant("restore_uses_state_as_head_payload", RestoreUsesStateAsHeadPayload,
           "§2.6 item 38: wrong head payload after restore",
           ("restored_head_matches_snapshot", "appended_events_validate", "abstract state")),
    mutant("framing_skips_malformed", FramingSkipsMalformed,
           "§2.5 framing: reading skipped a malformed entry silently instead of stopping",
           ("reading_stops_at_first_malformed", "*result")),
    mutant("write_count_hides_skips", WriteCountHidesSkips,
           "§2.6 item 40: oversized events skipped without being counted",
           ("framing_round_trips", "*result")),
    mutant("no_output_skips_processed_counter", NoOutputSkipsProcessedCounter,
           "#153 (§2.6 item 33) done wrong: the early return skips events_processed",
           ("counters_match", "abstract state")),
    mutant("fork_origin_unchecked", ForkOriginUnchecked,
           "§2.6 item 39: from_fork accepted a chain of another origin", ("fork result", "*result")),
)
