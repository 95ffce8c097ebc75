"""Unit tests of the daemon host and causal chain, run against the model and the impl.

Tests named after 0.25.0 pinning tests reproduce them (section 2.6 items 33-40)."""
from __future__ import annotations

import random
import struct

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import impl.daemon_host as impl_mod
import model.daemon_host as model_mod
from meshspec.clock import FakeClock
from model.daemon_host import (
    CAUSAL_LINK_SIZE,
    U64_MAX,
    CausalEvent,
    CausalLink,
    DaemonError,
    DaemonSnapshot,
    DaemonStats,
    HorizonState,
    NotFound,
    OriginMismatch,
    ParentHashMismatch,
    ProcessFailed,
    RestoreFailed,
    SequenceGap,
    SnapshotFailed,
    Stale,
    WriteCausalEventsResult,
)

ORIGIN = 0xABCD_0000_1234


@pytest.fixture(params=[model_mod, impl_mod], ids=["model", "impl"])
def mod(request):
    return request.param


def inbound(origin=0xAAAA, seq=1, payload=b"in"):
    return CausalEvent(CausalLink(origin, 0, seq, 0), payload, 0)


class Scripted:
    """Stateful test daemon: the first payload byte says how many outputs to emit;
    0xFF returns an error, 0xFE raises one. Its state is the number of calls."""

    def __init__(self, stateful=True, restore_error=None):
        self.calls = 0
        self.stateful = stateful
        self.restore_error = restore_error

    def process(self, event):
        self.calls += 1
        first = event.payload[:1]
        if first == b"\xff":
            return ProcessFailed("returned")
        if first == b"\xfe":
            raise ProcessFailed("raised")
        n = first[0] if first else 0
        return [event.payload + bytes([i]) for i in range(n)]

    def snapshot(self):
        return self.calls.to_bytes(8, "little") if self.stateful else None

    def restore(self, state):
        if self.restore_error is not None:
            return self.restore_error
        self.calls = int.from_bytes(state, "little")
        return None


def host(mod, daemon=None, clock=None, origin=ORIGIN):
    return mod.DaemonHost(origin, daemon or Scripted(), clock=clock or FakeClock(1_000))


def checked(obj):
    obj.check_invariants()
    return obj


# --------------------------------------------------------------------------- errors

def test_errors_display_the_rust_text():
    assert str(OriginMismatch(0xAB, 0xCD)) == "origin mismatch: expected 0xab, got 0xcd"
    assert str(SequenceGap(5, 7)) == "sequence gap: expected 5, got 7"
    assert str(ParentHashMismatch(0x1, 0xff)) == "parent hash mismatch: expected 0x1, got 0xff"
    assert str(ProcessFailed("x")) == "daemon process failed: x"
    assert str(SnapshotFailed("x")) == "snapshot failed: x"
    assert str(RestoreFailed("x")) == "restore failed: x"
    assert str(NotFound(0x2a)) == "daemon not found: 0x2a"
    assert str(Stale(0x2a)) == "daemon 0x2a was swapped or unregistered concurrently; mutation did not land"
    assert ProcessFailed("x") == ProcessFailed("x") != RestoreFailed("x")
    assert isinstance(Stale(1), DaemonError)


# --------------------------------------------------------------------------- causal link

def test_regression_causal_link_wire_size_is_32():
    """Item 35: 32 bytes, little-endian origin, horizon, sequence, parent."""
    link = CausalLink(0x0102030405060708, 0x1112131415161718, 0x2122232425262728, 0x3132333435363738)
    raw = link.to_bytes()
    assert len(raw) == CAUSAL_LINK_SIZE == 32
    assert raw == struct.pack("<QQQQ", link.origin_hash, link.horizon_encoded, link.sequence, link.parent_hash)
    assert raw[:8] == bytes([8, 7, 6, 5, 4, 3, 2, 1])


def test_causal_link_round_trips_and_rejects_short_input():
    link = CausalLink(U64_MAX, 0xCAFE, 42, 0x1234567890ABCDEF)
    assert CausalLink.from_bytes(link.to_bytes()) == link
    assert CausalLink.from_bytes(link.to_bytes() + b"tail") == link
    assert CausalLink.from_bytes(link.to_bytes()[:31]) is None


def test_causal_link_fields_are_u64():
    with pytest.raises(ValueError):
        CausalLink(-1, 0, 0, 0)
    with pytest.raises(ValueError):
        CausalLink(0, 0, U64_MAX + 1, 0)


def test_genesis_has_sequence_and_parent_zero():
    g = CausalLink.genesis(0xABCD)
    assert g.is_genesis() and g.sequence == 0 and g.parent_hash == 0 and g.horizon_encoded == 0
    assert not CausalLink(0xABCD, 0, 1, 0).is_genesis()
    assert not CausalLink(0xABCD, 0, 0, 5).is_genesis()


def test_next_link_increments_sequence_and_hashes_the_previous_payload():
    g = CausalLink.genesis(0xABCD)
    nxt = g.next(b"hello", 7)
    assert (nxt.origin_hash, nxt.horizon_encoded, nxt.sequence) == (0xABCD, 7, 1)
    assert nxt.parent_hash == xxhash.xxh3_64_intdigest(g.to_bytes() + b"hello") != 0
    assert CausalLink(1, 0, U64_MAX, 0).next(b"", 0) is None


# --------------------------------------------------------------------------- parent hash

@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 63, 64, 65, 1024, 8192])
def test_compute_parent_hash_streaming_matches_concatenated_oneshot(size):
    """Item 34 (#154)."""
    payload = random.Random(size).randbytes(size)
    link = CausalLink(0xDEAD_BEEF, 0xCAFE, size, 0x1234)
    oneshot = xxhash.xxh3_64_intdigest(link.to_bytes() + payload)
    assert model_mod.compute_parent_hash(link, payload) == oneshot
    assert impl_mod.compute_parent_hash(link, payload) == oneshot
    builder = impl_mod.CausalChainBuilder(link.origin_hash)
    assert builder._parent_hash(link, payload) == oneshot


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(0, U64_MAX), st.integers(0, U64_MAX))
def test_streaming_and_oneshot_parent_hashes_agree_on_any_payload(payload, origin, seq):
    link = CausalLink(origin, 0, seq, 0)
    assert impl_mod.compute_parent_hash(link, payload) == model_mod.compute_parent_hash(link, payload)


# --------------------------------------------------------------------------- chain builder and validation

def test_first_appended_event_chains_to_the_genesis_link(mod):
    clock = FakeClock(55)
    b = mod.CausalChainBuilder(0xABCD, clock=clock)
    assert b.sequence() == 0 and b.head() == CausalLink.genesis(0xABCD) and b.head_payload() == b""
    e1 = b.append(b"event1", 3)
    assert e1.link == CausalLink(0xABCD, 3, 1, xxhash.xxh3_64_intdigest(CausalLink.genesis(0xABCD).to_bytes()))
    assert e1.received_at == 55 and e1.payload == b"event1"
    clock.advance(5)
    e2 = b.append(b"event2", 0)
    assert e2.link.sequence == 2 and e2.received_at == 60
    assert e2.link.parent_hash == model_mod.compute_parent_hash(e1.link, e1.payload)
    assert (b.head(), b.head_payload(), b.origin_hash()) == (e2.link, b"event2", 0xABCD)
    checked(b)


def test_chain_builder_from_head_continues_the_chain(mod):
    head = CausalLink(7, 0, 41, 99)
    b = mod.CausalChainBuilder.from_head(head, b"prev", clock=FakeClock())
    e = b.append(b"next", 0)
    assert e.link.sequence == 42 and e.link.parent_hash == model_mod.compute_parent_hash(head, b"prev")
    assert b.origin_hash() == 7


def test_append_at_u64_max_returns_none_and_leaves_the_head(mod):
    head = CausalLink(7, 0, U64_MAX, 1)
    b = mod.CausalChainBuilder.from_head(head, b"p", clock=FakeClock())
    assert b.append(b"x", 0) is None
    assert (b.head(), b.head_payload()) == (head, b"p")


def test_validate_chain_link_accepts_a_correct_successor(mod):
    b = mod.CausalChainBuilder(0xABCD, clock=FakeClock())
    e1, e2 = b.append(b"event1", 0), b.append(b"event2", 0)
    assert mod.validate_chain_link(e1.link, e1.payload, e2.link) is None


def test_validate_chain_link_reports_origin_before_sequence_before_parent(mod):
    prev = CausalLink(1, 0, 5, 0)
    good_parent = model_mod.compute_parent_hash(prev, b"p")
    with pytest.raises(OriginMismatch) as e:
        mod.validate_chain_link(prev, b"p", CausalLink(2, 0, 9, 0))
    assert e.value == OriginMismatch(1, 2)
    with pytest.raises(SequenceGap) as e:
        mod.validate_chain_link(prev, b"p", CausalLink(1, 0, 7, 0))
    assert e.value == SequenceGap(6, 7)
    with pytest.raises(ParentHashMismatch) as e:
        mod.validate_chain_link(prev, b"p", CausalLink(1, 0, 6, good_parent ^ 1))
    assert e.value == ParentHashMismatch(good_parent, good_parent ^ 1)


def test_validate_chain_link_after_u64_max_expects_u64_max(mod):
    prev = CausalLink(1, 0, U64_MAX, 0)
    with pytest.raises(SequenceGap) as e:
        mod.validate_chain_link(prev, b"", CausalLink(1, 0, 0, 0))
    assert e.value == SequenceGap(U64_MAX, 0)


# --------------------------------------------------------------------------- horizon

def expected_bits(origin):
    h = xxhash.xxh3_64_intdigest(origin.to_bytes(8, "little"))
    h1, h2 = h & 0xFFFFFFFF, ((h >> 32) & 0xFFFFFFFF) | 1
    p = [h1 % 64, ((h1 + h2) & 0xFFFFFFFF) % 64, ((h1 + ((h2 * 2) & 0xFFFFFFFF)) & 0xFFFFFFFF) % 64]
    return sum(1 << x for x in set(p))


def test_observe_keeps_the_highest_sequence_and_ticks_only_on_increase(mod):
    h = mod.ObservedHorizon()
    h.observe(0xAAAA, 10)
    h.observe(0xBBBB, 20)
    h.observe(0xAAAA, 5)
    assert (h.get(0xAAAA), h.get(0xBBBB), h.get(0xCCCC)) == (10, 20, None)
    assert h.logical_time() == 2
    assert h.has_observed(0xAAAA, 10) and not h.has_observed(0xAAAA, 11) and not h.has_observed(0xCCCC, 0)
    checked(h)


def test_observe_of_sequence_zero_adds_the_origin_to_the_bloom(mod):
    h = mod.ObservedHorizon()
    h.observe(0x77, 0)
    assert h.contains_origin(0x77) and h.entity_count() == 1 and h.logical_time() == 0
    assert h.encode() == expected_bits(0x77)
    assert h.has_observed(0x77, 0)
    checked(h)


def test_encode_is_the_64_bit_three_position_bloom(mod):
    h = mod.ObservedHorizon()
    assert h.encode() == 0
    origins = [0xAAAA, 0xBBBB, U64_MAX, 0]
    for o in origins:
        h.observe(o, 1)
    want = 0
    for o in origins:
        want |= expected_bits(o)
    assert h.encode() == want
    checked(h)


def test_bloom_sets_exactly_three_bits_per_origin():
    """Item 36: h2 is forced odd, so the three positions are distinct."""
    for o in range(2000):
        assert bin(model_mod.bloom_bits_for_origin(o)).count("1") == 3
        assert impl_mod.ObservedHorizon._bloom_bits(o) == model_mod.bloom_bits_for_origin(o)


def test_might_contain_has_no_false_negatives_for_inserted_origins(mod):
    """Item 36 (#130)."""
    h = mod.ObservedHorizon()
    origins = [0xDEAD_0000 ^ ((i * 0x9E37_79B1) & U64_MAX) for i in range(50)]
    for o in origins:
        h.observe(o, 1)
    enc = h.encode()
    assert all(mod.ObservedHorizon.might_contain(enc, o) for o in origins)
    assert not mod.ObservedHorizon.might_contain(0, 0xAAAA)


def test_might_contain_fpr_at_n_8_is_well_below_pre_fix_saturation(mod):
    h = mod.ObservedHorizon()
    for i in range(8):
        h.observe((0x1000_0000 + i * 0xC0FF_EEAB) & U64_MAX, 1)
    enc = h.encode()
    rng = random.Random(8)
    probes = [rng.getrandbits(64) for _ in range(1000)]
    false_positives = sum(mod.ObservedHorizon.might_contain(enc, o) for o in probes)
    assert false_positives < 250


def test_potentially_concurrent_until_one_side_observes_the_other(mod):
    a, b = mod.ObservedHorizon(), mod.ObservedHorizon()
    a.observe(0xAAAA, 10)
    b.observe(0xBBBB, 10)
    assert mod.ObservedHorizon.potentially_concurrent(a.encode(), 0xBBBB, b.encode(), 0xAAAA)
    a.observe(0xBBBB, 10)
    assert not mod.ObservedHorizon.potentially_concurrent(a.encode(), 0xBBBB, b.encode(), 0xAAAA)
    assert model_mod.potentially_concurrent(b.encode(), 0xAAAA, a.encode(), 0xBBBB) is False
    checked(a)


def test_merge_takes_per_origin_max_and_max_time_plus_one(mod):
    h1, h2 = mod.ObservedHorizon(), mod.ObservedHorizon()
    h1.observe(0xAAAA, 10); h1.observe(0xBBBB, 5)
    h2.observe(0xAAAA, 8); h2.observe(0xCCCC, 20); h2.observe(0xCCCC, 21); h2.observe(0xDDDD, 1)
    h1.merge(h2)
    assert h1.state() == HorizonState({0xAAAA: 10, 0xBBBB: 5, 0xCCCC: 21, 0xDDDD: 1}, 5)
    assert h1.encode() == model_mod.ObservedHorizon.from_state(h1.state()).encode()
    h1.merge(HorizonState({0xEEEE: 0}, 0))
    assert h1.contains_origin(0xEEEE) and h1.logical_time() == 6
    checked(h1)


def test_observe_saturates_logical_time_at_u64_max(mod):
    """Item 37 (#140)."""
    h = mod.ObservedHorizon.from_state(HorizonState({}, U64_MAX))
    h.observe(0xAAAA, 1)
    assert h.logical_time() == U64_MAX and h.get(0xAAAA) == 1
    h.merge(HorizonState({0xBBBB: 2}, U64_MAX))
    assert h.logical_time() == U64_MAX
    checked(h)


def test_observe_rejects_values_outside_u64(mod):
    h = mod.ObservedHorizon()
    with pytest.raises(ValueError):
        h.observe(-1, 0)
    with pytest.raises(ValueError):
        h.observe(1, U64_MAX + 1)


def test_impl_horizon_reencodes_only_when_the_origin_set_changes():
    class Counting(impl_mod.ObservedHorizon):
        fresh = 0

        def _encode_fresh(self):
            type(self).fresh += 1
            return super()._encode_fresh()

    h = Counting()
    h.observe(1, 1); h.encode(); h.observe(1, 5); h.observe(1, 2); h.encode()
    assert Counting.fresh == 1
    h.observe(2, 0); h.encode()
    assert Counting.fresh == 2
    h.merge(HorizonState({1: 9, 2: 9}, 0)); h.encode()
    assert Counting.fresh == 2
    h.merge(HorizonState({3: 1}, 0)); h.encode()
    assert Counting.fresh == 3
    h.check_invariants()


def test_impl_check_invariants_detects_a_stale_horizon_encoding():
    h = impl_mod.ObservedHorizon()
    h.observe(1, 1)
    h.encode()
    h._entries[2] = 0
    with pytest.raises(AssertionError, match="cached horizon encoding"):
        h.check_invariants()


# --------------------------------------------------------------------------- framing

def three_events():
    b = model_mod.CausalChainBuilder(0xABCD, clock=FakeClock(9))
    return [b.append(p, 5) for p in (b"", b"x" * 31, b"hello")]


def test_framing_round_trips(mod):
    events = three_events()
    buf = bytearray(b"prefix")
    result = mod.write_causal_events(events, buf)
    assert result == WriteCausalEventsResult(3 * 36 + 31 + 5, 3, 0)
    assert buf[6:10] == (32).to_bytes(4, "little") and buf[10:42] == events[0].link.to_bytes()
    assert mod.read_causal_events(bytes(buf[6:]), 3, clock=FakeClock(9)) == events
    assert mod.read_causal_events(bytes(buf[6:]), 2, clock=FakeClock(9)) == events[:2]
    assert mod.read_causal_events(bytes(buf[6:]) + b"trailing", 3, clock=FakeClock(9)) == events


def test_read_stamps_events_with_the_clock(mod):
    buf = bytearray()
    mod.write_causal_events(three_events(), buf)
    assert {e.received_at for e in mod.read_causal_events(bytes(buf), 3, clock=FakeClock(77))} == {77}


@pytest.mark.parametrize("cut", ["short_prefix", "zero_length", "total_below_32", "truncated_body",
                                 "count_beyond_data"])
def test_reading_stops_at_the_first_malformed_entry(mod, cut):
    events = three_events()
    buf = bytearray()
    mod.write_causal_events(events[:2], buf)
    good = bytes(buf)
    bad = {
        "short_prefix": b"\x05\x00",
        "zero_length": bytes(4),
        "total_below_32": (31).to_bytes(4, "little") + bytes(31),
        "truncated_body": (40).to_bytes(4, "little") + bytes(39),
        "count_beyond_data": b"",
    }[cut]
    tail = bytearray()
    mod.write_causal_events(events[2:], tail)
    # A too-small length is detectable mid-stream, so a valid entry follows it there;
    # the other cuts end the data. Nothing after the malformed entry may be returned.
    mid_stream = cut in ("zero_length", "total_below_32")
    data = good + bad + (bytes(tail) if mid_stream else b"")
    assert mod.read_causal_events(data, 10, clock=FakeClock(9)) == events[:2]


def test_reading_zero_entries_or_empty_data_answers_nothing(mod):
    assert mod.read_causal_events(b"", 5) == []
    assert mod.read_causal_events(b"\x20\x00\x00\x00" + bytes(32), 0) == []


def test_read_count_is_a_u16_and_write_limit_a_u32(mod):
    with pytest.raises(ValueError):
        mod.read_causal_events(b"", 0x10000)
    with pytest.raises(ValueError):
        mod.write_causal_events([], bytearray(), max_total_len=1 << 32)


def test_write_causal_events_counts_skipped_oversized_events(mod):
    """Item 40: oversized events are skipped AND reported, so the framing count is right."""
    events = three_events()
    buf = bytearray()
    result = mod.write_causal_events(events, buf, max_total_len=32 + 30)
    assert result == WriteCausalEventsResult(36 + 41, 2, 1)
    assert mod.read_causal_events(bytes(buf), result.events_written, clock=FakeClock(9)) == [events[0], events[2]]


# --------------------------------------------------------------------------- daemon host

def test_deliver_chains_each_output_and_counts_it(mod):
    h = host(mod)
    outs = h.deliver(inbound(payload=b"\x03abc"))
    assert [o.payload for o in outs] == [b"\x03abc\x00", b"\x03abc\x01", b"\x03abc\x02"]
    assert [o.link.sequence for o in outs] == [1, 2, 3]
    assert all(o.link.origin_hash == ORIGIN and o.received_at == 1_000 for o in outs)
    assert h.stats() == DaemonStats(1, 3, 0)
    assert (h.head_link(), h.head_payload(), h.sequence()) == (outs[-1].link, outs[-1].payload, 3)
    prev_link, prev_payload = CausalLink.genesis(ORIGIN), b""
    for o in outs:
        mod.validate_chain_link(prev_link, prev_payload, o.link)
        prev_link, prev_payload = o.link, o.payload
    checked(h)


def test_outputs_carry_the_horizon_including_the_inbound_origin(mod):
    h = host(mod)
    outs = h.deliver(inbound(origin=0xEEEE, seq=42, payload=b"\x01"))
    assert outs[0].link.horizon_encoded == expected_bits(0xEEEE)
    assert mod.ObservedHorizon.might_contain(outs[0].link.horizon_encoded, 0xEEEE)
    assert h.horizon() == HorizonState({0xEEEE: 42}, 1)


def test_deliver_skips_horizon_encode_when_daemon_returns_no_outputs(mod):
    """Item 33 (#153)."""
    h = host(mod)
    head = h.head_link()
    assert h.deliver(inbound(payload=b"\x00")) == []
    assert h.stats() == DaemonStats(1, 0, 0)
    assert h.head_link() == head and h.head_payload() == b""
    assert h.horizon() == HorizonState({0xAAAA: 1}, 1)
    checked(h)


def test_impl_deliver_without_outputs_never_encodes_the_horizon():
    class NoEncode(impl_mod.ObservedHorizon):
        def encode(self):
            raise AssertionError("encoded on the no-output path")

    class Host(impl_mod.DaemonHost):
        _horizon_cls = NoEncode

    h = Host(ORIGIN, Scripted(), clock=FakeClock())
    assert h.deliver(inbound(payload=b"")) == []


@pytest.mark.parametrize("payload,msg", [(b"\xff", "returned"), (b"\xfe", "raised")])
def test_daemon_errors_are_counted_after_the_horizon_observes_the_event(mod, payload, msg):
    h = host(mod)
    with pytest.raises(ProcessFailed) as e:
        h.deliver(inbound(origin=0x5, seq=9, payload=payload))
    assert e.value == ProcessFailed(msg)
    assert h.stats() == DaemonStats(0, 0, 1)
    assert h.horizon() == HorizonState({0x5: 9}, 1)
    assert h.head_link() == CausalLink.genesis(ORIGIN)


def test_plain_callable_daemons_are_accepted(mod):
    h = mod.DaemonHost(1, lambda e: [e.payload], clock=FakeClock())
    assert [o.payload for o in h.deliver(inbound(payload=b"hi"))] == [b"hi"]
    assert h.take_snapshot() is None


def test_sequence_overflow_keeps_earlier_outputs_in_the_chain_but_raises(mod):
    h = host(mod)
    near_max = CausalLink(ORIGIN, 0, U64_MAX - 1, 0)
    h.restore_from_snapshot(DaemonSnapshot(ORIGIN, near_max, (0).to_bytes(8, "little"), HorizonState(), b"p"))
    with pytest.raises(ProcessFailed) as e:
        h.deliver(inbound(payload=b"\x03"))
    assert str(e.value) == "daemon process failed: causal sequence overflow"
    assert h.stats() == DaemonStats(1, 1, 0)
    assert h.sequence() == U64_MAX and h.head_payload() == b"\x03\x00"
    assert h.head_link().parent_hash == model_mod.compute_parent_hash(near_max, b"p")
    with pytest.raises(ProcessFailed):
        h.deliver(inbound(payload=b"\x01"))
    assert h.stats() == DaemonStats(2, 1, 0)
    checked(h)


def test_stateless_snapshot_is_none(mod):
    assert host(mod, Scripted(stateful=False)).take_snapshot() is None


def test_snapshot_carries_head_link_head_payload_state_and_horizon(mod):
    h = host(mod)
    for i in range(3):
        h.deliver(inbound(seq=i + 1, payload=b"\x01t"))
    snap = h.take_snapshot()
    assert snap == DaemonSnapshot(ORIGIN, h.head_link(), (3).to_bytes(8, "little"), h.horizon(), b"\x01t\x00")
    assert snap.through_seq == 3


def test_restore_continues_the_chain_with_a_validating_parent_hash(mod):
    src = host(mod)
    for i in range(3):
        src.deliver(inbound(seq=i + 1, payload=b"\x01t"))
    snap = src.take_snapshot()
    restored = mod.DaemonHost.from_snapshot(ORIGIN, Scripted(), snap, clock=FakeClock())
    assert restored.stats() == DaemonStats() and restored.horizon() == snap.horizon
    out = restored.deliver(inbound(seq=4, payload=b"\x01u"))[0]
    mod.validate_chain_link(snap.chain_link, snap.head_payload, out.link)
    assert restored._daemon.calls == 4
    checked(restored)


def test_restore_uses_head_payload_not_the_state_bytes(mod):
    """Item 38: the state bytes as head payload broke the next parent hash."""
    link = CausalLink(ORIGIN, 0, 10, 0x55)
    snap = DaemonSnapshot(ORIGIN, link, (7).to_bytes(8, "little"), HorizonState(), b"head-event")
    h = host(mod)
    h.restore_from_snapshot(snap)
    assert h.head_payload() == b"head-event"
    out = h.deliver(inbound(payload=b"\x01"))[0]
    assert out.link.parent_hash == model_mod.compute_parent_hash(link, b"head-event")


def test_restore_without_head_payload_falls_back_to_the_state_bytes(mod):
    for seq in (0, 10):
        snap = DaemonSnapshot(ORIGIN, CausalLink(ORIGIN, 0, seq, 0), (7).to_bytes(8, "little"), HorizonState())
        h = host(mod)
        h.restore_from_snapshot(snap)
        assert h.head_payload() == (7).to_bytes(8, "little")


def test_failed_daemon_restore_leaves_the_host_unchanged(mod):
    h = host(mod, Scripted(restore_error=RestoreFailed("bad state size")))
    h.deliver(inbound(payload=b"\x01"))
    before = h.abstract()
    snap = DaemonSnapshot(ORIGIN, CausalLink(ORIGIN, 0, 9, 9), b"x", HorizonState({1: 1}, 1), b"y")
    with pytest.raises(RestoreFailed):
        h.restore_from_snapshot(snap)
    assert h.abstract() == before


def test_from_snapshot_rejects_a_snapshot_of_another_entity(mod):
    snap = DaemonSnapshot(0xA, CausalLink.genesis(0xA), b"state")
    with pytest.raises(RestoreFailed, match="does not match"):
        mod.DaemonHost.from_snapshot(0xB, Scripted(), snap, clock=FakeClock())


def test_from_fork_rejects_a_mismatched_chain_origin_with_an_error(mod):
    """Item 39: an error, not a panic."""
    with pytest.raises(RestoreFailed, match="fork chain origin 0xa does not match keypair origin 0xb"):
        mod.DaemonHost.from_fork(0xB, Scripted(), mod.CausalChainBuilder(0xA), clock=FakeClock())


def test_from_fork_starts_from_the_fork_chain_head(mod):
    chain = mod.CausalChainBuilder.from_head(CausalLink(0xA, 0, 0, 0xF0F0), b"", clock=FakeClock())
    h = mod.DaemonHost.from_fork(0xA, Scripted(), chain, clock=FakeClock())
    assert h.head_link() == CausalLink(0xA, 0, 0, 0xF0F0) and h.stats() == DaemonStats()


def test_host_framing_round_trips_its_outputs(mod):
    h = host(mod, clock=FakeClock(3))
    outs = h.deliver(inbound(payload=b"\x02zz"))
    buf = bytearray()
    assert h.write_causal_events(outs, buf).events_written == 2
    assert h.read_causal_events(bytes(buf), 2) == outs


def test_model_and_impl_hosts_agree_after_the_same_history():
    clocks = [FakeClock(10), FakeClock(10)]
    hosts = [m.DaemonHost(ORIGIN, Scripted(), clock=c) for m, c in zip((model_mod, impl_mod), clocks)]
    script = [(0x1, 1, b"\x02a"), (0x2, 0, b""), (0x1, 1, b"\xff"), (0x3, 7, b"\x01"), (0x1, 3, b"\x00")]
    for origin, seq, payload in script:
        results = []
        for h, c in zip(hosts, clocks):
            c.advance(5)
            try:
                results.append(h.deliver(inbound(origin, seq, payload)))
            except DaemonError as e:
                results.append(e)
        assert results[0] == results[1]
        assert hosts[0].abstract() == hosts[1].abstract()
        hosts[1].check_invariants()
    snaps = [h.take_snapshot() for h in hosts]
    assert snaps[0] == snaps[1]
