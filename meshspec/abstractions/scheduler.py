"""A counter abstraction of the scheduler's capability index, for one tag: the migration tag.

State: how many nodes are indexed (`nodes`), how many of them carry the migration tag
`subprotocol:0x0500` in a full scan of their capability sets (`capable`), and how many
node ids the optimized scheduler's inverted index keeps in that tag's posting list
(`posting`; the model keeps no index and is its own scan); whether the local node's own
capabilities carry the tag (`local_match`, what `can_run_locally` answers for it) and the
recorded drain flag (`drained`); and two monitor flags set false when an operation
breaks a promise: `mig_ok` (a migration-target query answered a different number of
nodes than a scan of the capable nodes other than the source) and `drain_ok` (a
placement answered the local node while the effective drain flag was set).

Transitions: adding a node (new, or replacing one: with or without the tag before and
after), removing one, adding or removing the tag on an indexed node, setting the local
capabilities and the drain flag, placing with the tag as filter (`place`, or
`place_with_locality` with an explicit flag or the recorded one), asking for migration
targets (`find_migration_targets` with an empty daemon filter, its source a capable node
or not), and `stutter` (every query, other tags, refused ids, unknown nodes).

Invariants, named after the machine's (properties/scheduler.py):
- `index_matches_scan`: the posting list holds as many nodes as carry the tag
  (`queries_match_a_scan` at the level of counts; the index mutants break it);
- `migration_answers_the_scan`: every migration query answers exactly the capable nodes
  other than the source, counted (`migration_source_never_a_target` and the migration
  line of `queries_match_a_scan`);
- `drained_local_never_chosen`: the machine invariant of that name.

Abstracted away: which node is which (ids, their order, so which candidate a placement
picks first: the abstraction lets a placement answer local whenever the effective drain
flag is clear), every tag but the migration tag, and all of scoring: scores, vetoes,
NaN, the f32 boundary, the RTT tie-break and the local fast path. The scoring mutants
(NanScoreWins, MaxTieBreakNotInverted, NoLocalFastPath, FastPathIgnoresVeto) change which
*scored* candidate wins, a choice among node identities that a count cannot express;
they are left to the lockstep machine, the explorer and the `tie_break_compare` /
`_cmp` contracts.
"""
from __future__ import annotations

from typing import Any, Mapping

import z3

from meshspec.prove import Abstraction, State, Transition, inductive_over

VARIABLES = (("nodes", "int"), ("capable", "int"), ("posting", "int"),
             ("local_match", "bool"), ("drained", "bool"), ("mig_ok", "bool"), ("drain_ok", "bool"))
TRUE = z3.BoolVal(True)
NONE, DRAINED, NOT_DRAINED = 0, 1, 2   # place_with_locality's explicit flag: None, True, False


def _bit(*xs: Any) -> z3.BoolRef:
    return z3.And(*[z3.And(0 <= x, x <= 1) for x in xs])


def initial(s: State, p: State) -> z3.BoolRef:
    """A scheduler with an empty index, local capabilities without the tag, not drained."""
    return z3.And(s.nodes == 0, s.capable == 0, s.posting == 0, z3.Not(s.local_match), z3.Not(s.drained),
                  s.mig_ok, s.drain_ok)


def add_node(unindexes_old: bool = True) -> Transition:
    """add_node: a new node (`new` = 1) or a replaced one that carried the tag (`old_up`);
    the new capability set carries it or not (`up`). `unindexes_old=False` is
    IndexStaleOnReplace: the old tags stay in the posting lists (a set: re-adding is a no-op)."""
    def guard(s: State, p: State) -> z3.BoolRef:
        replaced_plain = s.nodes - s.capable >= 1
        return z3.And(_bit(p.new, p.old_up, p.up), z3.Implies(p.new == 1, p.old_up == 0),
                      z3.Implies(z3.And(p.new == 0, p.old_up == 1), s.capable >= 1),
                      z3.Implies(z3.And(p.new == 0, p.old_up == 0), replaced_plain))

    def update(s: State, p: State) -> dict[str, Any]:
        posting = s.posting + p.up - p.old_up if unindexes_old else \
            s.posting + z3.If(z3.And(p.up == 1, p.old_up == 0), 1, 0)
        return {"nodes": s.nodes + p.new, "capable": s.capable + p.up - p.old_up, "posting": posting}

    return Transition("add_node", guard, update, ("new", "old_up", "up"))


def remove_node(unindexes: bool = True) -> Transition:
    """remove_node of an indexed node that carries the tag (`up` = 1) or not.
    `unindexes=False` is IndexStaleOnNodeRemoval: its posting lists keep it."""
    return Transition("remove_node", lambda s, p: z3.And(
        _bit(p.up), s.nodes >= 1, z3.Implies(p.up == 1, s.capable >= 1),
        z3.Implies(p.up == 0, s.nodes - s.capable >= 1)), lambda s, p: {
        "nodes": s.nodes - 1, "capable": s.capable - p.up,
        **({"posting": s.posting - p.up} if unindexes else {})}, ("up",))


def remove_tag(unindexes: bool = True) -> Transition:
    """remove_tag of the migration tag from a node that carries it. `unindexes=False` is
    IndexStaleOnTagRemoval."""
    return Transition("remove_tag", lambda s, p: s.capable >= 1, lambda s, p: {
        "capable": s.capable - 1, **({"posting": s.posting - 1} if unindexes else {})})


def place(honours_drain: bool = True) -> Transition:
    """place / place_with_locality with the migration tag as filter. `flag` is the explicit
    drain flag (NONE: the recorded one); `local` = 1 when the local node is answered. The
    effective flag set keeps the local node out (LocalPreferred is skipped, the candidates
    exclude it); `honours_drain=False` is LocalityIgnoresDrain: LocalPreferred whenever the
    local capabilities match."""
    def effective(s: State, p: State) -> z3.BoolRef:
        return z3.If(p.flag == NONE, s.drained, p.flag == DRAINED)

    def guard(s: State, p: State) -> z3.BoolRef:
        may_answer_local = z3.Not(effective(s, p)) if honours_drain else \
            z3.Or(z3.Not(effective(s, p)), s.local_match)
        return z3.And(0 <= p.flag, p.flag <= 2, _bit(p.local), z3.Implies(p.local == 1, may_answer_local))

    return Transition("place", guard, lambda s, p: {
        "drain_ok": z3.And(s.drain_ok, z3.Not(z3.And(effective(s, p), p.local == 1)))}, ("flag", "local"))


EXCLUDES, IGNORES_EXCLUDE, UNPADDED_TAG = "excludes", "ignores_exclude", "unpadded_tag"


def migration_query(answer: str = EXCLUDES) -> Transition:
    """find_migration_targets(any filter, source): `src` = 1 when the source carries the tag.
    The index answers its posting list without the source; QueryExcludingIgnoresExclude keeps
    the source, MigrationTagUnpadded reads the posting list of a tag no node carries."""
    def update(s: State, p: State) -> dict[str, Any]:
        answered = {EXCLUDES: s.posting - p.src, IGNORES_EXCLUDE: s.posting, UNPADDED_TAG: 0}[answer]
        return {"mig_ok": z3.And(s.mig_ok, answered == s.capable - p.src)}

    return Transition("migration_query", lambda s, p: z3.And(_bit(p.src), s.capable >= p.src), update, ("src",))


TRANSITIONS = (
    Transition("stutter", lambda s, p: TRUE, lambda s, p: {}),
    add_node(),
    remove_node(),
    Transition("add_tag", lambda s, p: s.nodes - s.capable >= 1,
               lambda s, p: {"capable": s.capable + 1, "posting": s.posting + 1}),
    remove_tag(),
    Transition("set_local_caps", lambda s, p: _bit(p.match), lambda s, p: {"local_match": p.match == 1},
               ("match",)),
    Transition("set_drained", lambda s, p: _bit(p.d), lambda s, p: {"drained": p.d == 1}, ("d",)),
    place(),
    migration_query(),
)

INVARIANTS: Mapping[str, Any] = {
    "index_matches_scan": lambda s: s.posting == s.capable,
    "migration_answers_the_scan": lambda s: s.mig_ok,
    "drained_local_never_chosen": lambda s: s.drain_ok,
}

ABSTRACTION = Abstraction("scheduler", VARIABLES, initial, (), TRANSITIONS, INVARIANTS)


inductive = inductive_over(ABSTRACTION)


PROOFS = (
    inductive("scheduler.index_matches_scan",
              "the migration tag's posting list holds as many nodes as a scan finds carrying the tag",
              "index_matches_scan"),
    inductive("scheduler.migration_answers_the_scan",
              "find_migration_targets answers the capable nodes other than the source (counted)",
              "migration_answers_the_scan", "index_matches_scan"),
    inductive("scheduler.drained_local_never_chosen",
              "place / place_with_locality never answer the local node while the effective drain flag is set",
              "drained_local_never_chosen"),
)

#: The machine invariants a replayed refutation of each abstract invariant may fail on
#: (the index mutants also fail the impl's own check_invariants, and a changed answer
#: shows as a result difference between model and impl first).
MACHINE_INVARIANT = {
    "index_matches_scan": "queries_match_a_scan",
    "migration_answers_the_scan": "queries_match_a_scan",
    "drained_local_never_chosen": "drained_local_never_chosen",
}

MUTANTS = "mutants.scheduler"
VARIANTS = (
    (inductive("index_stale_on_tag_removal", "posting list = scan (remove_tag leaves the node indexed)",
               "index_matches_scan", abstraction=ABSTRACTION.variant(remove_tag(unindexes=False))),
     f"{MUTANTS}:IndexStaleOnTagRemoval"),
    (inductive("index_stale_on_node_removal", "posting list = scan (remove_node leaves the node indexed)",
               "index_matches_scan", abstraction=ABSTRACTION.variant(remove_node(unindexes=False))),
     f"{MUTANTS}:IndexStaleOnNodeRemoval"),
    (inductive("index_stale_on_replace", "posting list = scan (add_node over a node keeps its old tags)",
               "index_matches_scan", abstraction=ABSTRACTION.variant(add_node(unindexes_old=False))),
     f"{MUTANTS}:IndexStaleOnReplace"),
    (inductive("query_excluding_ignores_exclude", "migration answers the scan (the source is not excluded)",
               "migration_answers_the_scan", "index_matches_scan",
               abstraction=ABSTRACTION.variant(migration_query(IGNORES_EXCLUDE))),
     f"{MUTANTS}:QueryExcludingIgnoresExclude"),
    (inductive("migration_tag_unpadded", "migration answers the scan (the query's tag is subprotocol:0x500)",
               "migration_answers_the_scan", "index_matches_scan",
               abstraction=ABSTRACTION.variant(migration_query(UNPADDED_TAG))),
     f"{MUTANTS}:MigrationTagUnpadded"),
    (inductive("locality_ignores_drain", "drained local never chosen (LocalPreferred ignores the flag)",
               "drained_local_never_chosen", abstraction=ABSTRACTION.variant(place(honours_drain=False))),
     f"{MUTANTS}:LocalityIgnoresDrain"),
)
