"""JUnit XML for CI dashboards: one testcase per component (or per mutant).

`fuzz`, `mutants`, `explore` and `campaign` take `--junit FILE`. A testcase that failed
carries a `<failure>` whose message is the finding (kind, name, message) and whose text
names the exported trace, so a CI page links a red row to the file that replays it.
The file is written atomically.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import attrs

from meshspec.traces import atomic_write


@attrs.frozen
class Case:
    """One testcase: `classname.name`, its seconds, and a failure message (None: passed)."""

    classname: str
    name: str
    seconds: float
    failure: str | None = None
    detail: str = ""  # the failure's text: trace path, state diff, replay command
    output: str = ""  # system-out: steps, examples, steps/s


def render(suite: str, cases: Sequence[Case]) -> str:
    """A `<testsuites>` document with one `<testsuite>` holding `cases`."""
    root = ET.Element("testsuites")
    failures = sum(c.failure is not None for c in cases)
    seconds = sum(c.seconds for c in cases)
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                         failures=str(failures), errors="0", skipped="0", time=f"{seconds:.3f}")
    for case in cases:
        tc = ET.SubElement(node, "testcase", classname=case.classname, name=case.name,
                           time=f"{case.seconds:.3f}")
        if case.failure is not None:
            fail = ET.SubElement(tc, "failure", message=case.failure, type="meshspec")
            fail.text = case.detail
        if case.output:
            ET.SubElement(tc, "system-out").text = case.output
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write(path: str | Path, suite: str, cases: Sequence[Case]) -> Path:
    target = Path(path)
    atomic_write(target, render(suite, cases))
    return target


def check_path(path: str | None) -> None:
    """Raise OSError unless `path`'s directory exists and is writable (checked before a run)."""
    import os

    if path is None:
        return
    parent = Path(path).parent
    if not parent.is_dir():
        raise FileNotFoundError(f"directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"directory {str(parent)!r} is not writable")
    if Path(path).is_dir():
        raise IsADirectoryError(f"{path!r} is a directory")


def fuzz_case(result: object, problem: str | None, trace_path: str | None) -> Case:
    """A component's fuzz run: failed when the verdict names a problem; the trace path."""
    r = result  # a meshspec.fuzz.FuzzResult
    detail = ""
    if trace_path is not None:
        fail = r.trace.failure  # type: ignore[attr-defined]
        detail = "\n".join([f"{fail.kind} {fail.name!r} at step {fail.step}: {fail.message}",
                            *(f"state differs: {line}" for line in fail.state_diff),
                            f"trace: {trace_path}", f"replay with: meshspec replay {trace_path}"])
    return Case(f"meshspec.fuzz.{r.profile}", r.component, r.seconds, problem, detail,  # type: ignore[attr-defined]
                f"impl {r.impl}, seed {r.seed}, examples {r.examples}, steps {r.steps}, "  # type: ignore[attr-defined]
                f"{r.steps_per_second:.0f} steps/s")  # type: ignore[attr-defined]


def mutant_case(result: object) -> Case:
    """One mutant: failed when it survived (no check caught the known bug)."""
    m, r = result.mutant, result.result  # type: ignore[attr-defined]
    problem = None if result.caught else f"mutant survived: {m.origin}"  # type: ignore[attr-defined]
    if hasattr(r, "first_failure_examples"):  # a lockstep mutant
        note = (f"caught by {result.caught_by!r} (registered: {', '.join(m.caught_by)}) after "  # type: ignore[attr-defined]
                f"{r.first_failure_examples} examples, shrunk trace {len(r.trace.steps) if r.trace else '-'} steps")
        detail = f"examples {r.examples}, steps {r.steps}"
    else:  # a historical race protocol, explored exhaustively
        note = f"caught by {result.caught_by!r} (registered: {', '.join(m.caught_by)})"  # type: ignore[attr-defined]
        detail = "every schedule passed"
    return Case(f"meshspec.mutants.{r.component}", m.name, r.seconds, problem,
                "" if result.caught else detail, note)  # type: ignore[attr-defined]


def explore_case(component: str, name: str, seconds: float, problem: str | None,
                 trace_path: str | None, output: str) -> Case:
    detail = f"trace: {trace_path}\nreplay with: meshspec replay {trace_path}" if trace_path else ""
    return Case(f"meshspec.explore.{component}", name, seconds, problem, detail, output)
