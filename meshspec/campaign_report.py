"""REPORT.md's "Fuzzing throughput and campaigns" section, from docs/campaign-results.json.

That file is written by `python -m meshspec.campaign_cli` (`--record-fuzz`,
`--measure-scaling SECONDS`, `--record-rss LOG`; see meshspec.campaign_cli) on the 2-core
development machine, which other people's work shares: each figure carries the load
average around it, and the CPU-time rate (steps per CPU-second of the fuzzing process),
which that load disturbs much less than the wall-clock rate.
"""
from __future__ import annotations

from typing import Any

from tabulate import tabulate

#: The throughput the ci profile is expected to reach per component on an unloaded machine.
TARGET_STEPS_PER_SECOND = 2000


def load(values: Any) -> str:
    return " / ".join(f"{x:g}" for x in values) if values else "?"


def fuzz_table(fuzz: dict[str, Any]) -> str:
    rows = [[f"`{name}`", f"{r['steps']:,}", r["seconds"], f"{r['steps_per_second']:,}",
             f"{r['steps_per_cpu_second']:,}" if r.get("steps_per_cpu_second") else "?",
             split_text(r.get("time_split")), load(r.get("load_before")),
             "pass" if r.get("passed") else "FAIL"]
            for name, r in fuzz.items()]
    return tabulate(rows, headers=["component", "steps", "seconds", "steps/s (wall)",
                                   "steps per CPU-second", "generation / operations / checks",
                                   "load average before (1/5/15 min)", "run"], tablefmt="github")


def split_text(split: dict[str, float] | None) -> str:
    """`48% / 9% / 43%`: the run's time in generation, operations and checks (FuzzResult.time_split)."""
    if not split:
        return "?"
    return " / ".join(f"{split[k]:.0%}" for k in ("generation", "operations", "checks"))


def fuzz_verdict(fuzz: dict[str, Any]) -> str:
    """Which components reach the target (wall clock), and the recording's note."""
    met = [n for n, r in fuzz.items() if r["steps_per_second"] >= TARGET_STEPS_PER_SECOND]
    notes = sorted({r.get("note", "") for r in fuzz.values()} - {""})
    return (f"{len(met)} of {len(fuzz)} components reach {TARGET_STEPS_PER_SECOND:,} steps/s in this "
            f"recording" + (f" ({', '.join(met)})" if met else "") + ". " + " ".join(n[:1].upper() + n[1:] + "."
                                                                          for n in notes)) + split_note(fuzz)


def split_note(fuzz: dict[str, Any]) -> str:
    """What the time-split columns mean, and where checks took less time than generation."""
    split = {n: r["time_split"] for n, r in fuzz.items() if r.get("time_split")}
    if not split:
        return ""
    heavier = sorted(n for n, t in split.items() if t["checks"] >= t["generation"])
    return (" Time split: *generation* is Hypothesis choosing examples and rules plus the rules' "
            "own draws, *operations* the rule applied to model and impl, *checks* the engine's "
            "comparisons of results, abstract states and observations, the invariants, the "
            "impl's self-check and the witnesses; checks take less time than generation in "
            f"{len(split) - len(heavier)} of {len(split)} components"
            + (f" (not in {', '.join(heavier)})" if heavier else "") + ".")


def precondition_table(fuzz: dict[str, Any]) -> str:
    rows = [[f"`{name}`", f"`{rule}`", f"{held / total:.0%}" if total else "never evaluated",
             f"{held:,} of {total:,}"]
            for name, r in fuzz.items() for rule, (held, total) in sorted(r.get("preconditions", {}).items())]
    if not rows:
        return "No rule has a precondition."
    return tabulate(rows, headers=["component", "rule", "precondition held", "evaluations"],
                    tablefmt="github")


def scaling_text(s: dict[str, Any]) -> str:
    runs = s["runs"]
    rows = [[w, f"{r['steps']:,}", r["wall_seconds"], f"{r['steps_per_second']:,}",
             r.get("cpu_share", "?"), load(r.get("load_before")), load(r.get("load_after"))]
            for w, r in sorted(runs.items())]
    table = tabulate(rows, headers=["workers", "steps", "wall s", "total steps/s",
                                    "CPU-seconds per second the workers got",
                                    "load before", "load after"], tablefmt="github")
    return (f"`meshspec campaign` of all {len(s['components'])} components, ci profile, "
            f"{s['budget_seconds']:g} s budget each, on {s['cores']} cores: 2 workers make "
            f"**{s['speedup']}x** the total steps/s of 1. {s.get('note', '')}\n\n{table}")


def rss_text(r: dict[str, Any]) -> str:
    samples = ", ".join(f"{t / 60:.0f} min: {mb:.0f}" for t, mb in r.get("samples", []))
    return (f"One local campaign worker process over {r['seconds'] / 60:.0f} minutes "
            f"({r['jobs']} jobs, {r['steps']:,} steps, {r['workers']} worker process(es)): "
            f"RSS {r['rss_mb_first']:.0f} MiB after the first job, at most {r['rss_mb_max']:.0f} MiB, "
            f"{r['rss_mb_last']:.0f} MiB after the last (peak {r['peak_rss_mb']:.0f} MiB; "
            f"bound: 1,024 MiB). {r.get('note', '')}\n\nRSS (MiB) after the job ending at: {samples}.")


def section(results: dict[str, Any]) -> str:
    parts = ["## Fuzzing throughput and campaigns",
             "Recorded by `python -m meshspec.campaign_cli` in `docs/campaign-results.json` on the "
             "shared 2-core development machine; the load average says how busy it was."]
    fuzz = results.get("fuzz")
    if fuzz:
        parts += [f"### `meshspec fuzz` under the ci profile (target: {TARGET_STEPS_PER_SECOND:,} "
                  "steps/s per component)", fuzz_table(fuzz), fuzz_verdict(fuzz),
                  "### Precondition pass rate per rule (ci profile)",
                  "How often a guarded rule's precondition held when Hypothesis evaluated it "
                  "(`fuzz --fail-under-coverage` fails a run where one never holds).",
                  precondition_table(fuzz)]
    if results.get("scaling"):
        parts += ["### Campaign scaling", scaling_text(results["scaling"])]
    if results.get("worker_rss"):
        parts += ["### Campaign worker memory", rss_text(results["worker_rss"])]
    if len(parts) == 2:
        parts.append("Not recorded yet.")
    return "\n\n".join(parts)
