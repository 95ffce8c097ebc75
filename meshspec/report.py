"""`meshspec report`: REPORT.md, generated from the registry with tabulate.

Only stable fields go in: components, operations and the rules that cover them,
invariants (kind, one-line meaning), mutants (origin, the check that catches them).
No live timings, so the staleness test can compare the file byte for byte. Whether each
mutant really is caught by the check named here is asserted by the mutant tier
(`tests/test_quality_mutants.py`), not by this file.

The "explore" column of each mutant comes from `docs/explore-results.json`, a committed
file that `meshspec explore C --mutants --record` rewrites atomically: the bound that
finds the mutant and the seconds it took when recorded (or why no finite bound can).
Re-record, then re-run `meshspec report`; the two files are committed together.
The "Exhaustive exploration" table of each component comes the same way from
`docs/explore-bounds.json`, written by `meshspec explore C --bound B --coverage --record`:
distinct states, edges, states/s, bytes per visited state, peak RSS and fuzz coverage as
measured when recorded (on the 2-core development machine).
"""
from __future__ import annotations

import inspect
import re

from tabulate import tabulate

from meshspec.explore import BOUNDS_PATH, load_results
from meshspec.lockstep import Component
from meshspec.registry import all_components


def mutation_section() -> str:
    from meshspec.mutate import report_section

    return report_section()


def races_section() -> str:
    from meshspec.races_cli import report_section

    return report_section()


def operation_coverage(component: Component) -> dict[str, list[str]]:
    """Public operation → the Subject rules whose bodies call it."""
    rules = {
        name: inspect.getsource(fn)
        for name, fn in inspect.getmembers(component.subject_cls, inspect.isfunction)
        if not name.startswith("_") and name not in ("abstract", "observations", "self_check")
    }
    rules["observations (every step)"] = inspect.getsource(component.subject_cls.observations)
    coverage = {}
    for op in component.operations:
        pattern = re.compile(rf"\.{re.escape(op)}\(")
        coverage[op] = sorted(r for r, src in rules.items() if pattern.search(src))
        if op == "abstract":
            coverage[op] = ["every step (lockstep comparison)"]
    return coverage


def explore_cell(run: dict | None) -> str:
    """A recorded explore run of one mutant: `bound` and seconds, or why it is not found."""
    if run is None:
        return "not recorded"
    verdict = str(run.get("verdict", ""))
    if verdict.startswith("found"):
        return f"`{run.get('bound')}`, {run.get('seconds')} s"
    return verdict


def exploration_table(c: Component) -> str:
    """Every declared bound with its recorded figures (or "not recorded")."""
    if c.exploration is None:
        return "No bounded exploration configured."
    recorded = load_results(BOUNDS_PATH).get(c.name, {})
    rows = []
    for name in c.exploration.bounds:
        r = recorded.get(name)
        depth = c.exploration.depth(name)
        if r is None:
            rows.append([f"`{name}`", depth] + ["not recorded"] + [""] * 6)
            continue
        coverage = "-" if r.get("coverage") is None else f"{r['coverage']:.1%}"
        rows.append([f"`{name}`", depth, f"{r['states']:,}", f"{r['edges']:,}",
                     f"{r['states_per_second']:,} ({r['workers']} proc.)", r["bytes_per_state"],
                     r["peak_rss_mib"], coverage, ", ".join(f"`{w}`" for w in r["unreachable"]) or "-"])
    return tabulate(rows, headers=["bound", "depth", "distinct states", "edges", "states/s",
                                   "bytes/state", "peak RSS MiB", "fuzz coverage",
                                   "witnesses unreachable at this bound"], tablefmt="github")


def component_section(c: Component) -> str:
    cov = operation_coverage(c)
    ops = tabulate([[f"`{op}`", ", ".join(r) or "**not covered**"] for op, r in cov.items()],
                   headers=["operation", "rules that exercise it"], tablefmt="github")
    invs = tabulate([[f"`{i.name}`", i.kind, i.doc] for i in c.invariants],
                    headers=["invariant", "kind", "meaning"], tablefmt="github")
    explored = load_results().get(c.name, {})
    muts = tabulate([[f"`{m.name}`", m.origin, ", ".join(f"`{x}`" for x in m.caught_by),
                      explore_cell(explored.get(m.name))] for m in c.mutants],
                    headers=["mutant", "origin", "caught by", "explore (bound, seconds)"],
                    tablefmt="github")
    return "\n\n".join([
        f"## `{c.name}`", c.summary,
        f"Model `{c.model_cls.__module__}.{c.model_cls.__qualname__}`, impl "
        f"`{c.impl_cls.__module__}.{c.impl_cls.__qualname__}`.",
        "### Operations covered", ops, "### Invariants", invs, "### Mutants", muts,
        "### Exhaustive exploration", exploration_table(c),
    ])


def render() -> str:
    comps = all_components()
    summary = tabulate(
        [[f"`{c.name}`", len(c.operations),
          sum(i.kind == "always" for i in c.invariants),
          sum(i.kind == "sometimes" for i in c.invariants), len(c.mutants)] for c in comps],
        headers=["component", "operations", "always invariants", "sometimes witnesses", "mutants"],
        tablefmt="github")
    head = ("# meshspec report\n\nGenerated by `meshspec report` from the registry; do not edit. "
            "A test fails when this file is stale.\n\n## Components\n\n" + summary)
    return (head + "\n\n" + "\n\n".join(component_section(c) for c in comps)
            + "\n\n" + backends_section() + "\n\n" + proofs_section()
            + "\n\n" + contracts_section() + "\n\n" + races_section() + "\n\n" + linearize_section()
            + "\n\n" + campaign_section() + "\n\n" + mutation_section()
            + "\n\n" + coverage_section() + "\n\n" + pipe_section() + "\n")


def pipe_section() -> str:
    """"The subject protocol's speed": docs/pipe-results.json (meshspec.protocol_cli)."""
    from meshspec.protocol_cli import report_section

    return report_section()


def campaign_section() -> str:
    from meshspec.campaign_cli import load_results
    from meshspec.campaign_report import section

    return section(load_results())


def backend_cell(cell: dict | None) -> str:
    """One mutant under one backend: the check that caught it (and, under crosshair, whether a
    symbolic test case did), or not caught; and the seconds."""
    if cell is None:
        return "not recorded"
    if not cell["caught"]:
        return f"not caught, {cell['seconds']} s"
    how = {True: ", symbolically", False: ", after the fallback"}.get(cell.get("solver_found"), "")
    return f"caught (`{cell['caught_by']}`{how}), {cell['seconds']} s"


def symbolic_cell(cell: dict | None) -> str:
    """How many test cases crosshair ran symbolically, and how many of those it discarded."""
    if not cell or "solver_cases" not in cell:
        return "-"
    discarded = sum(n for text, n in cell["solver_outcomes"].items() if text.startswith("discarded"))
    return f"{cell['solver_cases']} of {cell['examples']} ({discarded} discarded)"


BACKENDS_INTRO = (
    "Each of the first {per} curated mutants of each component (registry order; rows sorted by "
    "name) runs under both backends with the same budget: {examples} examples of the dev "
    "profile's length, seed {seed}, no minimising. Seconds are as measured when recorded, on "
    "the 2-core development machine (`python -m meshspec.fuzz --compare-backends --record`). "
    "Under crosshair, Hypothesis silently switches to its own generation once the backend has "
    "discarded more than 10 test cases (and over 20% of them): \"symbolic cases\" says how many "
    "it ran before that, and \"symbolically\" marks a mutant caught in one of them.")


def backends_section() -> str:
    """"Hypothesis backends": the curated mutants under the default and the crosshair backend
    with the same budget, from docs/backend-results.json."""
    from meshspec.fuzz import load_backend_results

    recorded = load_backend_results()
    if not recorded.get("components"):
        return "## Hypothesis backends\n\nNot recorded."
    rows = [[f"`{comp}`", f"`{name}`", backend_cell(cells.get("hypothesis")),
             backend_cell(cells.get("crosshair")), symbolic_cell(cells.get("crosshair"))]
            for comp, mutants in recorded["components"].items() for name, cells in mutants.items()]
    table = tabulate(rows, headers=["component", "mutant", "`hypothesis` (default)", "`crosshair`",
                                    "crosshair: symbolic cases"], tablefmt="github")
    intro = BACKENDS_INTRO.format(examples=recorded["examples"], seed=recorded["seed"],
                                  per=recorded["mutants_per_component"])
    return "\n\n".join(["## Hypothesis backends", intro, table, backends_summary(recorded)])


def backends_summary(recorded: dict) -> str:
    """Totals per backend, and the mutants only one backend caught."""
    cells = [c for mutants in recorded["components"].values() for c in mutants.values()]
    totals = []
    for b in ("hypothesis", "crosshair"):
        caught = sum(bool(c.get(b, {}).get("caught")) for c in cells)
        secs = sum(c.get(b, {}).get("seconds", 0.0) for c in cells)
        totals.append(f"`{b}` caught {caught} of {len(cells)} in {secs:.0f} s")
    symbolic = sum(bool(c.get("crosshair", {}).get("solver_found")) for c in cells)
    return (f"In total: {'; '.join(totals)} ({symbolic} of them in a symbolic test case). "
            + only_one(recorded))


def only_one(recorded: dict) -> str:
    """Which mutants one backend caught and the other did not (or that there are none)."""
    found: dict[str, list[str]] = {"hypothesis": [], "crosshair": []}
    for comp, mutants in recorded["components"].items():
        for name, cells in mutants.items():
            caught = {b for b in found if cells.get(b, {}).get("caught")}
            if len(caught) == 1:
                found[caught.pop()].append(f"`{comp}.{name}`")
    return " ".join(f"Caught only by `{b}`: {', '.join(names) or 'none'}." for b, names in found.items())


def proofs_section() -> str:
    """"Proofs": every z3 proof of `meshspec prove` with its method and claim, and each broken
    variant it refutes. The results are those the prove tests assert; the seconds are those
    `meshspec prove --variants --record` stored in docs/prove-results.json."""
    from meshspec.prove_cli import catalogue

    table = tabulate(catalogue(), headers=["property", "method", "claim", "result (asserted by tests)",
                                           "seconds (recorded)"], tablefmt="github", disable_numparse=True)
    intro = ("Arithmetic lemmas, and inductive invariants of counter abstractions "
             "(`meshspec/abstractions/`), proved by k-induction with the lemmas named. A broken "
             "variant applies a curated mutant's change to the abstraction; its refutation is "
             "exported as a trace that replays on the mutant class (`meshspec prove --variants`). "
             "Seconds as recorded by `meshspec prove --variants --record` (every proof has a 30 s budget).")
    limits = ("What a counter abstraction cannot express, left to the lockstep machines and the explorer: "
              "*which* earliest deadline a capacity hint reports (the abstraction counts deadlines behind, "
              "at and ahead of now, so it checks that one is reported exactly when a lease is live, not its "
              "value), and *which* scored candidate the scheduler picks (NanScoreWins, MaxTieBreakNotInverted, "
              "NoLocalFastPath, FastPathIgnoresVeto choose among node identities, not counts).")
    return "\n\n".join(["## Proofs", intro, table, limits])


def coverage_section() -> str:
    """"Branch coverage of impl/ from fuzzing alone": docs/coverage-results.json with the reasons
    of docs/coverage-exemptions.json (meshspec.coverage_report)."""
    from meshspec.coverage_report import report_section

    return report_section()


def linearize_section() -> str:
    """"Linearizability": the runs `meshspec linearize --record` stored in
    docs/linearize-results.json."""
    from meshspec.linearize_cli import report_section

    return report_section()


def contracts_section() -> str:
    """"Contracts": every PEP-316 contract of the models and every model/impl pair that
    `crosshair diffbehavior` compares, with the result recorded by `meshspec contracts
    --record` in docs/contracts-results.json (no seconds here: the file stays byte-stable)."""
    from meshspec.contracts import CONTRACT_MODULES, contract_targets, diff_pairs, load_recorded

    recorded = load_recorded()
    rows = [[f"`{t}`", "; ".join(f"`{c}`" for c in text.split("; ")), recorded.get(("contract", t), {}).get("status", "not recorded")]
            for t, text in contract_targets(list(CONTRACT_MODULES))]
    pairs = [p for comp in CONTRACT_MODULES for p in diff_pairs(comp)]
    for m, i, shared in pairs:
        if not shared:
            result = recorded.get(("diffbehavior", f"{m} ↔ {i}"), {}).get("status", "not recorded")
            rows.append([f"`{m}` ↔ `{i}`", "same behaviour (diffbehavior)", result])
    table = tabulate(rows, headers=["function", "contract (post)", "result"], tablefmt="github")
    intro = ("CrossHair (`meshspec contracts`): the `post:` lines of each model function, checked "
             "symbolically under its `pre:` lines: confirmed over all paths, refuted (with a "
             "counterexample), or unknown when the per-condition limit ran out; then "
             "`diffbehavior` on every function that model and impl define separately. "
             f"{sum(s for _, _, s in pairs)} further same-named functions are the model's own, "
             "imported by the impl (shared, nothing to compare). A broken copy of every "
             "contracted function is refuted by `tests/test_contracts.py`.")
    return "\n\n".join(["## Contracts", intro, table])
