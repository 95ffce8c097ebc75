"""Reviewed equivalent mutants of `meshspec mutate`, per component: mutant id → why no
observable behaviour changes. A listed survivor leaves the score's denominator.

Ids are `operator:change|stripped line text|#ordinal` (see meshspec.mutate), so they stay
valid when unrelated lines move. Add an entry only after reading the diff and the code
around it; a mutant that changes behaviour the spec does not observe is a weakness of the
spec, not an equivalent mutant: leave it out of this list and report it.
"""
from __future__ import annotations

EQUIVALENT: dict[str, dict[str, str]] = {
    "scheduler": {
        "const:1→0|pool = postings[0].intersection(*postings[1:])|#0":
            "also intersecting the first posting set with itself: A ∩ A ∩ B = A ∩ B",
        "const:0.0→-1.0|best_score = 0.0|#0":
            "the initial best_score is never read: it is compared only once best is set, together with it",
        "compare:<=→<|if best is None or self._max_order(best, best_score, node, score, rtt, tie_break) <= 0:|#0":
            "_max_order is 0 only for the same node with an equal score (_tie is 0 only for a == b): "
            "replacing best with itself changes nothing",
        "const:0→-1|if best is None or self._max_order(best, best_score, node, score, rtt, tie_break) <= 0:|#0":
            "_max_order is -1, 0 or 1, so `<= -1` is `< 0`; see the `<` mutant above",
        "const:1→2|return 1 if sx > sy else (-1 if sx < sy else 0)|#0":
            "_score_order's only caller tests the sign of the result (`or`, then `<= 0`)",
        "const:1→2|return 1 if sx > sy else (-1 if sx < sy else 0)|#1":
            "the -1 becomes -2: same sign, and only the sign is read",
        "const:1→0|return -1 if a_free > b_free else 1|#1":
            "dead branch: free_resource_for is the 0.25.0 stub (0 for every node), so a_free == b_free",
    },
    "capacity": {
        "arith:+→-|if self.seen is not None and revision != self.seen + own_writes:|#0":
            "only marks more responses dirty (every own write): the extra owner-key rescan finds "
            "nothing to correct and changes no result, counter or KV state, it costs reads",
        "const:0→1|def put(self, key: bytes, value: bytes, lease: int = 0) -> PutResponse:|#0":
            "the coordinator never calls put (it writes through txn), and no caller relies on the default",
        "drop_cache:delete|self._watch.saw(resp.revision, 1)|#0":
            "in the watched KV's put, which the coordinator never calls (it writes through txn)",
        "const:1→0|self._watch.saw(resp.revision, 1)|#0":
            "in the watched KV's put, which the coordinator never calls (it writes through txn)",
        "drop_cache:delete|self._watch.saw(resp.revision, 1 if resp.deleted else 0)|#0":
            "a delete left unseen makes the next revision mismatch (revisions only grow): one spurious "
            "dirty flag, i.e. a rescan that finds nothing to correct, never a missed foreign write",
        "bool:or→and|wrote = any(isinstance(op, PutOp) for op in branch) or any(|#0":
            "counts fewer own writes, so own txns look foreign: extra dirty flags and rescans only; "
            "a write is never counted that did not happen, so no foreign write is missed",
        "const:1→0|self._watch.saw(resp.revision, 1 if wrote else 0)|#0":
            "an own txn write counted as none only makes the watch flag it dirty: a spurious rescan",
        "const:0→-1|def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResponse:|#0":
            "the coordinator always passes lease_id explicitly (model/capacity.py); the default is unused",
        "arith:+→-|if len(rs.heap) > 2 * len(rs.deadlines) + 64:  # too many stale entries: compact|#0":
            "only compacts sooner: compaction rebuilds the heap from the deadlines (the truth) and "
            "drops nothing but stale entries, so no counter or answer changes",
        "arith:*→//|if len(rs.heap) > 2 * len(rs.deadlines) + 64:  # too many stale entries: compact|#0":
            "only changes when the heap is compacted (see the `-` mutant): same deadlines, same answers",
        "const:2→1|if len(rs.heap) > 2 * len(rs.deadlines) + 64:  # too many stale entries: compact|#0":
            "only changes when the heap is compacted (see the `-` mutant): same deadlines, same answers",
        "compare:>→>=|if len(rs.heap) > 2 * len(rs.deadlines) + 64:  # too many stale entries: compact|#0":
            "compacts one push sooner (at equality; see the `-` mutant): same deadlines, same answers",
        "drop_cache:delete|self._watch.saw(resp.revision, 0)|#1":
            "lease_grant writes nothing and is always followed by its attempt's txn before the dirty "
            "flag is read; revisions only grow and own writes are counted exactly, so the txn's check "
            "against the older revision flags every foreign write the grant's would have (f1>0 or f2>0 "
            "iff f1+f2>0)",
        "drop_cache:delete|self._watch.saw(resp.revision, 0)|#4":
            "lease_leases writes nothing and is only called last in abstract(); the dirty flag is read "
            "only in _counters and the self-check, and every entry point makes a KV call before either, "
            "whose check against the older revision flags every foreign write this one would have",
        "arith:&→||for shard in sorted((rs.available_ids & owned.keys()) | changed):|#0":
            "the extra re-reads are of available shards without an owner key (no change) and of leased "
            "shards whose owner key is unchanged, whose record deadline the counters already hold",
        "const:8→9|where = f\"run {tenant.hex()[:8]}…/{run}\"|#0":
            "only the text of a self-check failure message (one more hex digit of the tenant)",
    },
    "load_balancer": {
        "const:0→-1|if sign > 0:|#0":
            "_Stratum._count is only called with sign 1 or -1, and 1 > -1, -1 > -1 read as 1 > 0, -1 > 0",
        "const:0→1|self._next_seq = 0|#0":
            "insertion sequence numbers are only compared with each other (stratum order, bisection)",
        "const:1→2|self._next_seq += 1|#0":
            "insertion sequence numbers stay strictly increasing; only their order is used",
        "bool:or→and|if len(tags) == 1 or not base.eps:|#0":
            "one tag then takes the multi-tag path, filtering by no further tags: a fresh stratum with "
            "the same endpoints in the same order, used read-only like every multi-tag stratum",
        "const:1→0|if len(tags) == 1 or not base.eps:|#0":
            "same as the `and` mutant: a single tag is filtered by no further tags, an equal copy",
        "const:2→1|self.n_odd += sign * (q % 2 != 0)|#0":
            "a stratum counts only listed endpoints, which receive traffic (Healthy x4 or Degraded x2 "
            "quarters): their quarter weights are always even, so n_odd is 0 either way",
        "compare:>→>=|if release is not None and release > now:|#0":
            "an endpoint whose release time is exactly now stays pending: the next select re-syncs it "
            "(_sync is idempotent), which only repeats what the snapshot already says",
        "bool:and→or|if type(vnodes) is tuple and vnodes is ep.vnodes_checked:|#0":
            "self-check code (_check_ring, a part of check_invariants): it can only skip a comparison "
            "that never fails on this impl; no behaviour of the balancer changes",
        "compare:is→is not|ep.vnodes_checked = vnodes if type(vnodes) is tuple else None|#0":
            "self-check code (_check_ring): the impl's vnode lists are tuples, so the mutant never "
            "memoizes one and compares every list on every check, comparisons that never fail on this "
            "impl; no behaviour of the balancer changes",
        "const:128→129|_RING_MEMO_LIMIT = 128|#0":
            "the size of the self-check's memo of fresh rings: it only decides when the memo is cleared",
        "compare:>=→>|if len(_RING_MEMO) >= _RING_MEMO_LIMIT:|#0":
            "the memo of fresh rings is cleared one entry later: the self-check compares the same rings",
    },
    "daemon_host": {
        "compare:<→<=|if len(view) - pos < LENGTH_PREFIX_SIZE:|#0":
            "with exactly 4 bytes left the next check returns None anyway (0 bytes of body < "
            "CAUSAL_LINK_SIZE or < total_len): the same None one check earlier",
        "arith:-→+|if len(view) - pos < LENGTH_PREFIX_SIZE:|#0":
            "with fewer than 4 bytes left, body lies past the end, so len(view) - body < 0 <= "
            "total_len and the next check returns the same None",
    },
    "shard_mapper": {
        "const:0→-1|last_needed = first_id + max(count - 1, 0)|#0":
            "_allocate_ids is reached only with count >= 1 (scale_up, scale_up_provisioning and "
            "scale_up_provisioning_force each return [] for count 0 first), so count - 1 >= 0 and "
            "the max never reads its second argument",
    },
    "groups": {
        "drop_cache:delete|self._monotone = True  # the buffer is empty again|#0":
            "a flag left False only sends replay through the model's full scan, which returns the "
            "same list for any buffer; check_invariants asserts only monotone -> increasing",
        "drop_cache:delete|self._monotone = True|#0":
            "same as above (sync_standbys): a stale False flag costs a scan, never a different replay",
    },
}


def for_component(name: str) -> dict[str, str]:
    return dict(EQUIVALENT.get(name, {}))
