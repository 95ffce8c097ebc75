"""The capacity component's faster paths read exactly what the plain ones did.

- The etcd model's ranges, read from a sorted key list by bisection, select exactly the
  keys a full scan with `in_range` selects (single keys, half-open ranges, "every key
  from here" with `b"\\x00"`, empty and inverted ranges, keys ending in 0xff), after any
  mix of puts, deletes, range deletes and lease revocations.
- The coordinator's revision-keyed decoding (`_read_decoded`: a run's scan and
  `abstract()`) shows a write made by someone else at once, and the lockstep subject's KV
  view does too: a variant that keeps its decoded form past a revision change is caught.
- The memoized decoders raise on an undecodable value every time (an error is never
  cached) and return the value a fresh decode returns.

Each check is shown to fail on a known-bad variant.
"""
from __future__ import annotations

import bisect
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import impl.capacity as impl_capacity
import model.capacity as M
import properties.capacity as P
from meshspec.clock import FakeClock
from model.etcd import ALL_KEYS_END, EtcdModel, KeyValue, in_range

KEYS = [b"a", b"a\x00", b"a\xff", b"ab", b"b", b"\xff", b"\xff\xff", b"c/1", b"c/2"]
BOUNDS = KEYS + [b"", b"\x00", b"a\xff\xff", b"d"]


def full_scan(kv: EtcdModel, key: bytes, range_end: bytes) -> list[KeyValue]:
    """The plain selection: every stored key, in order, that `in_range` admits."""
    return [kv._kvs[k] for k in sorted(kv._kvs) if in_range(k, key, range_end)]


def ranges_match_full_scan(kv: EtcdModel) -> None:
    """Every (start, end) pair of the alphabet reads what a full scan selects."""
    for start in BOUNDS[:-4] + [b"d"]:
        for end in BOUNDS:
            got = kv.range(start, end)
            want = full_scan(kv, start, end)
            assert list(got.kvs) == want, f"range({start!r}, {end!r}): {got.kvs} != {want}"
            assert got.count == len(want)
    assert kv._sorted == sorted(kv._kvs), "the sorted key list drifted from the keys"


OPS = st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.sampled_from(BOUNDS)),
    st.tuples(st.just("revoke"), st.none(), st.none())), max_size=25)


def apply_ops(kv: EtcdModel, ops: list[tuple[Any, Any, Any]]) -> None:
    lease = kv.lease_grant(60).id
    for op, key, arg in ops:
        if op == "put":
            kv.put(key, b"v" + key, lease if arg else 0)
        elif op == "delete":
            kv.delete(key, arg)
        else:
            kv.lease_revoke(lease)
            lease = kv.lease_grant(60).id


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_bisected_ranges_select_what_a_full_scan_selects(ops: list[tuple[Any, Any, Any]]) -> None:
    kv = EtcdModel(clock=FakeClock(0))
    apply_ops(kv, ops)
    ranges_match_full_scan(kv)


class EndInclusiveKV(EtcdModel):
    """Known-bad: the end bisection admits the range end itself."""

    def _select(self, key: bytes, range_end: bytes) -> list[KeyValue]:
        if range_end in (b"", ALL_KEYS_END):
            return super()._select(key, range_end)
        lo = bisect.bisect_left(self._sorted, key)
        return [self._kvs[k] for k in self._sorted[lo:bisect.bisect_right(self._sorted, range_end)]]


def test_a_range_that_includes_its_end_key_is_caught() -> None:
    kv = EndInclusiveKV(clock=FakeClock(0))
    apply_ops(kv, [("put", k, False) for k in KEYS])
    with pytest.raises(AssertionError, match="range"):
        ranges_match_full_scan(kv)


# --------------------------------------------------------------------------- revision-keyed decoding

TENANT = P.TENANT


class NeverRedecodes(impl_capacity.EtcdCoordinator):
    """Known-bad: keeps the first decoded form of each prefix read, whatever the revision."""

    def _read_decoded(self, prefix: bytes, decode: Any) -> Any:
        where = (prefix, decode.__name__)
        if where not in self._decoded_reads:
            self._decoded_reads[where] = (0, decode(self._kv.get_prefix(prefix).kvs))
        return self._decoded_reads[where][1]


def foreign_writes_show(cls: type) -> None:
    """A record rewritten behind the coordinator's back shows in its scan and abstract()."""
    kv = EtcdModel(clock=FakeClock(0))
    coord = cls(kv, clock=FakeClock(5), options=M.CoordinatorOptions(owner_lease_ttl_secs=60))
    coord.create_run(TENANT, 1, M.RunConfig(1_000))
    coord.register_shards(TENANT, 1, [M.ShardManifestEntry(1, P.root_spec(1))], op_id=1)
    before = coord.abstract()
    assert coord._scan_run(TENANT, 1)[0][0].status is M.ShardStatus.ACTIVE
    key = coord._keys.shard_key(TENANT, 1, 1)
    parked = M.decode_shard(kv.get(key).kvs[0].value)
    kv.put(key, M.encode_shard(attrs.evolve(parked, status=M.ShardStatus.PARKED)))
    assert coord._scan_run(TENANT, 1)[0][0].status is M.ShardStatus.PARKED, "stale scan"
    after = coord.abstract()
    assert after.shards[0].status is M.ShardStatus.PARKED, "stale abstract()"
    if cls is M.EtcdCoordinator:  # the full-scan hint; the impl's counters ignore such edits
        assert (before.hints[0][2].available_count, after.hints[0][2].available_count) == (1, 0)


@pytest.mark.parametrize("cls", [M.EtcdCoordinator, impl_capacity.EtcdCoordinator],
                         ids=["model", "impl"])
def test_a_foreign_write_shows_in_the_next_scan_and_abstract(cls: type) -> None:
    foreign_writes_show(cls)


def test_decoding_kept_past_a_revision_change_is_caught() -> None:
    with pytest.raises(AssertionError, match="stale"):
        foreign_writes_show(NeverRedecodes)


class ViewKeptAcrossSteps(P.CapacitySubject):
    """Known-bad: keeps its KV view across steps without looking at the revision."""

    def view(self) -> P.KVView:
        if self._view is None:
            self._view = self._decode_view(self.kv.get_prefix(self.keys.tenants_prefix()).kvs)
        return self._view


def step(s: P.CapacitySubject, rule: str, *args: Any) -> Any:
    """One rule on one subject, then `last` moves on, as the lockstep core does it."""
    out = getattr(s, rule)(*args)
    s.last = (rule, args, object())
    return out


def view_follows_the_kv(cls: type) -> None:
    """After a step that wrote, the view shows the write; after one that did not, it is the
    same decoded object (nothing decoded again)."""
    s = cls(M.EtcdCoordinator, "model")
    step(s, "init", 3, 8, 2, 1_000, False)
    first = s.view()
    step(s, "capacity_hint", 1)  # writes nothing
    assert s.view() is first
    step(s, "acquire", 1, 1, 7, "own", "")
    v = s.view().shards[(1, 1)]
    assert v.owner is not None and v.record.lease is not None, "stale view after an acquire"


def test_the_subject_view_follows_every_write_and_survives_steps_that_wrote_nothing() -> None:
    view_follows_the_kv(P.CapacitySubject)


def test_a_view_kept_past_a_revision_change_is_caught() -> None:
    with pytest.raises(AssertionError, match="stale view"):
        view_follows_the_kv(ViewKeptAcrossSteps)


# --------------------------------------------------------------------------- memoized decoders


@pytest.mark.parametrize("decode", [M.decode_shard, M.decode_run, M.decode_owner])
def test_an_undecodable_value_raises_every_time(decode: Any) -> None:
    for _ in range(2):
        with pytest.raises(M.BackendError, match="corruption"):
            decode(b"{not json")


def test_a_memoized_decode_equals_a_fresh_decode() -> None:
    rec = M.new_shard(TENANT, 1, 5, P.root_spec(5), None)
    data = M.encode_shard(rec)
    assert M.decode_shard(data) == rec
    assert M.decode_shard(bytes(bytearray(data))) == M.decode_shard.__wrapped__(data) == rec
