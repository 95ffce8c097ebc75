"""The capacity component's memos answer what a fresh computation answers, after every write.

- The key layout (`Keyspace.run_key`, `shard_key`, ...) is memoized on (root, arguments): it
  answers what the plain method builds for every root, and raises the plain method's error
  (a bool id, a tenant of the wrong type or length, an id out of u64 range) every time.
- The etcd model keeps a range's selection until the next change of any key: reads after
  every kind of write (put, delete, range delete, txn ops, a read inside a txn after its own
  put, lease revocation, TTL expiry) select what a full scan selects.
- The harness shares one full-scan hint pass per (KV view, clock) and one pass of lease
  deadlines per KV view (for the deadline witnesses), and skips the owner, tiling, marker and
  owner-key invariants when their inputs (KV view, clock, issued tokens, registered roots,
  recorded expiries) are the ones they last passed on: a change of any one input is seen.

Each check is shown to fail on a known-bad variant (a memo ignoring the root or the argument
types, a range selection kept across a write, a memo that looks at the KV view alone or never
runs again).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import attrs
import pytest

import model.capacity as M
import properties.capacity as P
from meshspec.clock import FakeClock
from model.etcd import ALL_KEYS_END, DeleteOp, EtcdModel, KeyValue, PutOp, RangeOp, in_range

# --------------------------------------------------------------------------- the key layout

LAYOUT = ("run_key", "shards_prefix", "shard_key", "owner_key", "shard_marker_key", "run_marker_key")
ROOTS = ("/gossip/v1", "/", "/other")
TENANTS = (P.TENANT, P.OTHER_TENANT, bytearray(P.TENANT), b"short")
IDS = (1, 0, 2**64 - 1, True, 2**64, -1, 7)


def outcome(fn: Callable[..., bytes], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the error type is the answer
        return type(exc).__name__


def layout_matches_plain(memoize: Callable[[Callable[..., bytes]], Callable[..., bytes]]) -> None:
    """Every layout method, memoized by `memoize`, answers (twice) what the plain one does."""
    for name in LAYOUT:
        plain = getattr(M.Keyspace, name).__wrapped__
        memo = memoize(plain)
        width = 2 if name in ("run_key", "shards_prefix", "run_marker_key") else 3
        for root in ROOTS:
            ks = M.Keyspace(root)
            for tenant in TENANTS:
                for ident in IDS:
                    args = (tenant, ident) if width == 2 else (tenant, 1, ident)
                    want = outcome(plain, ks, *args)
                    for _ in range(2):
                        got = outcome(memo, ks, *args)
                        assert got == want, f"{name}{(root, *args)}: {got!r}, plainly {want!r}"


def test_the_key_layout_in_use_is_memoized() -> None:
    for name in LAYOUT:
        assert hasattr(getattr(M.Keyspace, name), "memo"), name
    ks = M.Keyspace("/gossip/v1")
    assert ks.owner_key(P.TENANT, 1, 2) is ks.owner_key(P.TENANT, 1, 2)


def test_memoized_key_layout_equals_the_plain_layout_and_raises_its_errors() -> None:
    layout_matches_plain(M._memoized_key)


def memo_ignoring_root(method: Callable[..., bytes]) -> Callable[..., bytes]:
    """Known-bad: keyed on the arguments alone (two roots share their keys)."""
    memo: dict[Any, bytes] = {}

    def memoized(self: M.Keyspace, *args: Any) -> bytes:
        if args not in memo:
            memo[args] = method(self, *args)
        return memo[args]
    return memoized


def memo_untyped(method: Callable[..., bytes]) -> Callable[..., bytes]:
    """Known-bad: a plain lru_cache (True hits 1's entry; an unhashable tenant raises TypeError)."""
    return functools.lru_cache(maxsize=None)(method)


@pytest.mark.parametrize("memoize", [memo_ignoring_root, memo_untyped], ids=["no root", "untyped"])
def test_a_key_memo_that_ignores_the_root_or_the_types_is_caught(memoize: Any) -> None:
    with pytest.raises(AssertionError):
        layout_matches_plain(memoize)


# --------------------------------------------------------------------------- etcd range selections

KEYS = (b"a", b"a\x00", b"a/1", b"a/2", b"ab", b"b", b"\xff")
RANGES = ((b"a", b"b"), (b"a/", b"a0"), (b"a", ALL_KEYS_END), (b"\x00", ALL_KEYS_END), (b"ab", b"ab\x00"))


def full_scan(kv: EtcdModel, key: bytes, range_end: bytes) -> list[KeyValue]:
    return [kv._kvs[k] for k in sorted(kv._kvs) if in_range(k, key, range_end)]


def reads_are_fresh(kv: EtcdModel, when: str) -> None:
    for key, end in RANGES:
        got = kv.range(key, end)
        assert list(got.kvs) == full_scan(kv, key, end), f"stale range {key!r}..{end!r} after {when}"
        assert kv.range(key, end, count_only=True).count == got.count
        assert [k.key for k in kv.range(key, end, keys_only=True).kvs] == [k.key for k in got.kvs]


def ranges_follow_every_write(cls: type) -> None:
    clock = FakeClock(0)
    kv = cls(clock=clock)
    short, long_ = kv.lease_grant(5).id, kv.lease_grant(60).id
    reads_are_fresh(kv, "nothing")
    writes: list[tuple[str, Callable[[], Any]]] = [
        ("a put", lambda: kv.put(b"a/1", b"1")),
        ("a put with a lease", lambda: kv.put(b"a/2", b"2", short)),
        ("a rewrite", lambda: kv.put(b"a/1", b"1b", long_)),
        ("more puts", lambda: [kv.put(k, k) for k in KEYS[4:]]),
        ("a delete", lambda: kv.delete(b"ab")),
        ("a range delete", lambda: kv.delete(b"b", ALL_KEYS_END)),
        ("a txn", lambda: kv.txn([], [PutOp(b"a\x00", b"z"), DeleteOp(b"a/1")])),
        ("a lease revocation", lambda: kv.lease_revoke(long_)),
        ("a TTL expiry", lambda: clock.advance(5 * 10**9)),
        ("puts again", lambda: [kv.put(k, b"v") for k in KEYS]),
        ("expire_lease_now", lambda: (kv.put(b"a", b"x", kv.lease_grant(9).id),
                                      kv.expire_lease_now(kv.range(b"a").kvs[0].lease))),
    ]
    for what, write in writes:
        write()
        reads_are_fresh(kv, what)
    # inside one txn, a read after the txn's own put sees it (same revision, new contents)
    kv.range(b"a/", b"a0")
    resp = kv.txn([], [RangeOp(b"a/", b"a0"), PutOp(b"a/3", b"3"), RangeOp(b"a/", b"a0"),
                       PutOp(b"a/4", b"4"), RangeOp(b"a/", b"a0")])
    counts = [r.count for r in resp.responses if hasattr(r, "count")]
    assert counts == [counts[0], counts[0] + 1, counts[0] + 2], f"stale range inside a txn: {counts}"
    reads_are_fresh(kv, "a txn with reads between its puts")


def test_range_selections_follow_every_write() -> None:
    ranges_follow_every_write(EtcdModel)


class KeepsRangesAcrossPuts(EtcdModel):
    """Known-bad: a put leaves the kept range selections in place."""

    def _write(self, key: bytes, value: bytes, lease: int, revision: int) -> None:
        kept = dict(self._ranges)
        super()._write(key, value, lease, revision)
        self._ranges.update(kept)


class KeepsRangesAcrossDeletes(EtcdModel):
    """Known-bad: a deleted key (delete, revocation, expiry) leaves the selections in place."""

    def _delete_key(self, key: bytes) -> None:
        kept = dict(self._ranges)
        super()._delete_key(key)
        self._ranges.update(kept)


@pytest.mark.parametrize("cls", [KeepsRangesAcrossPuts, KeepsRangesAcrossDeletes],
                         ids=["puts", "deletes"])
def test_range_selections_kept_across_a_write_are_caught(cls: type) -> None:
    with pytest.raises(AssertionError, match="stale"):
        ranges_follow_every_write(cls)


# --------------------------------------------------------------------------- the harness's scans

def step(s: P.CapacitySubject, rule: str, *args: Any) -> Any:
    """One rule on one subject, then `last` moves on, as the lockstep core does it."""
    out = getattr(s, rule)(*args)
    s.last = (rule, args, object())
    return out


def plain_hint(s: P.CapacitySubject, run: int) -> M.CapacityHint:
    """count_available_for_run of one run by its own scan, nothing kept."""
    now, available, deadlines = s.clock(), 0, []
    for (r, _), v in s.view().shards.items():
        if r == run and v.record.status is M.ShardStatus.ACTIVE:
            if s.live(v):
                deadlines.append(v.record.lease.deadline)  # type: ignore[union-attr]
            else:
                available += 1
    return M.CapacityHint(available, min(deadlines, default=None))


def leased_subject() -> P.CapacitySubject:
    """Run 1 with three shards; shard 1 leased (the lease runs out at the clock's 1,000)."""
    s = P.CapacitySubject(M.EtcdCoordinator, "model")
    step(s, "init", 3, 8, 3, 1_000, False)
    step(s, "acquire", 1, 1, 7, "own", "")
    return s


def scan_follows_the_clock_and_the_kv() -> None:
    s = leased_subject()
    assert P.full_scan_hint(s, 1) == plain_hint(s, 1) == M.CapacityHint(2, s.leases[0].deadline)
    step(s, "advance_clock", 1_000)  # no write: the lease of shard 1 runs out on the clock alone
    assert P.full_scan_hint(s, 1) == plain_hint(s, 1) == M.CapacityHint(3, None), (
        f"stale full-scan hint after the clock moved: {P.full_scan_hint(s, 1)}")
    step(s, "acquire", 1, 2, 7, "own", "")
    assert P.full_scan_hint(s, 1) == plain_hint(s, 1), "stale full-scan hint after a write"


def expect_violation(check: Callable[[P.CapacitySubject], Any], s: P.CapacitySubject, text: str,
                     stale: str) -> None:
    """`check(s)` fails naming `text`; passing means a memo kept an answer it should not have
    (an AssertionError with `stale`, which is what a stale variant must produce)."""
    try:
        check(s)
    except AssertionError as exc:
        assert text in str(exc)
    else:
        raise AssertionError(stale)


def owner_check_follows_the_tokens() -> None:
    s = leased_subject()
    P.at_most_one_live_owner(s)
    lease = s.leases[-1]
    s.leases.append(attrs.evolve(lease, deadline=lease.deadline + 1))  # a second live token
    expect_violation(P.at_most_one_live_owner, s, "several live tokens",
                     "stale owner check: a second live token of shard 1 was not seen")


def tiling_check_follows_the_roots() -> None:
    s = leased_subject()
    P.split_children_tile_parent(s)
    s.roots[(1, 2)] = P.root_spec(5)  # the ghost roots alone change: shard 2 no longer matches
    expect_violation(P.split_children_tile_parent, s, "root shard 1/2",
                     "stale tiling check: the changed root of shard 2 was not seen")


def witness_deadlines_follow_the_kv() -> None:
    s = leased_subject()
    step(s, "advance_clock", s.leases[0].deadline - 1 - s.clock())
    assert P.lease_one_before_its_deadline(s) and not P.ttl_expiry_made_shard_available(s)
    step(s, "expire_lease", 1, 1)  # the owner key runs out: the shard's lease is orphaned
    assert P.ttl_expiry_made_shard_available(s), "stale deadlines: the owner key that ran out was not seen"
    assert not P.lease_one_before_its_deadline(s), "stale deadlines: a gone owner key still counted"


def terminal_check_follows_the_kv() -> None:
    s = leased_subject()
    P.terminal_shards_hold_no_lease(s)
    s.kv.delete(s.keys.shard_marker_key(P.TENANT, 1, 2))  # an Active shard loses its marker
    step(s, "capacity_hint", 1)
    expect_violation(P.terminal_shards_hold_no_lease, s, "shards_active marker",
                     "stale marker check: the deleted marker of shard 2 was not seen")


def orphan_check_follows_the_ghost_state() -> None:
    s = leased_subject()
    step(s, "expire_lease", 1, 1)
    P.owner_key_matches_record_lease(s)
    s.orphaned[(1, 1)] += 5  # the ghost record of the expiry alone changes
    expect_violation(P.owner_key_matches_record_lease, s, "no etcd lease of that fence ran out",
                     "stale owner-key check: the changed expiry record was not seen")


def view_only(last: tuple, now: tuple) -> bool:
    """Known-bad: the KV view alone decides (the clock and the ghost state are ignored)."""
    return bool(last) and last[0] is now[0]


def kept_forever(last: tuple, now: tuple) -> bool:
    """Known-bad: whatever ran once is never run again."""
    return bool(last)


SCENARIOS = [scan_follows_the_clock_and_the_kv, owner_check_follows_the_tokens,
             tiling_check_follows_the_roots, witness_deadlines_follow_the_kv,
             terminal_check_follows_the_kv, orphan_check_follows_the_ghost_state]
STALE = [(scan_follows_the_clock_and_the_kv, view_only), (owner_check_follows_the_tokens, view_only),
         (tiling_check_follows_the_roots, view_only), (witness_deadlines_follow_the_kv, kept_forever),
         (terminal_check_follows_the_kv, kept_forever), (orphan_check_follows_the_ghost_state, view_only)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_the_harness_scan_and_invariant_memos_follow_the_clock_the_kv_and_the_ghost_state(
        scenario: Callable[[], None]) -> None:
    scenario()


@pytest.mark.parametrize("scenario,variant", STALE, ids=lambda f: f.__name__)
def test_memos_that_miss_an_input_are_caught(scenario: Callable[[], None], variant: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "same_inputs", variant)
    with pytest.raises(AssertionError, match="stale"):
        scenario()
