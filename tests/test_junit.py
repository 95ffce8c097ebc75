"""`--junit FILE` on fuzz, mutants, explore and campaign: read back with a JUnit XML parser
(ElementTree), one testcase per component or mutant, a failing one carrying the finding and
the exported trace's path (a trace that replays)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from meshspec.cli import main


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example database and traces land here, not in the repo


def cases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    found = {tc.get("name"): tc for tc in suite.iter("testcase")}
    assert int(suite.get("tests")) == len(found)
    assert int(suite.get("failures")) == sum(tc.find("failure") is not None for tc in found.values())
    return found


def trace_path_of(tc: ET.Element) -> Path:
    lines = [x for x in tc.find("failure").text.splitlines() if x.startswith("trace: ")]
    return Path(lines[0].removeprefix("trace: "))


def test_fuzz_junit_has_one_passing_case_per_component(tmp_path, capsys):
    out = tmp_path / "fuzz.xml"
    code = main(["fuzz", "shard_mapper", "scheduler", "--profile", "dev", "--max-examples", "5",
                 "--junit", str(out)])
    assert code == 0, capsys.readouterr().out
    found = cases(out)
    assert set(found) == {"shard_mapper", "scheduler"}
    assert all(tc.find("failure") is None for tc in found.values())
    assert "steps" in found["shard_mapper"].find("system-out").text


def test_fuzz_junit_failure_names_the_finding_and_a_trace_that_replays(tmp_path, capsys):
    out = tmp_path / "fuzz.xml"
    code = main(["fuzz", "shard_mapper", "--impl", "properties.shard_mapper:IdReuseMapper",
                 "--profile", "ci", "--export", str(tmp_path / "traces"), "--junit", str(out)])
    assert code == 1
    tc = cases(out)["shard_mapper"]
    failure = tc.find("failure")
    assert failure.get("message").startswith("divergence ")
    trace = trace_path_of(tc)
    assert trace.is_file() and trace.parent == tmp_path / "traces"
    capsys.readouterr()
    assert main(["replay", str(trace)]) == 1
    assert "reproduces the recorded failure" in capsys.readouterr().out


def test_mutants_junit_has_one_case_per_mutant_and_fails_a_survivor(tmp_path, capsys, monkeypatch):
    from meshspec import registry
    import attrs

    from meshspec.lockstep import mutant

    comp = registry.get_component("shard_mapper")
    survivor = mutant("not_a_bug", comp.impl_cls, "the impl itself: nothing to catch", "anything")
    caught = next(m for m in comp.mutants if m.name == "drain_only_flips_flag")
    patched = attrs.evolve(comp, mutants=(caught, survivor))
    monkeypatch.setattr(registry, "get_component", lambda name: patched)
    out = tmp_path / "mutants.xml"
    code = main(["mutants", "shard_mapper", "--max-examples", "40", "--no-shrink", "--junit", str(out)])
    assert code == 1
    found = cases(out)
    assert set(found) == {caught.name, "not_a_bug"}
    assert found[caught.name].find("failure") is None
    assert "caught by" in found[caught.name].find("system-out").text
    assert "survived" in found["not_a_bug"].find("failure").get("message")


def test_explore_junit_names_the_bound_and_the_shortest_trace(tmp_path, capsys):
    ok, bad = tmp_path / "ok.xml", tmp_path / "bad.xml"
    assert main(["explore", "shard_mapper", "--junit", str(ok)]) == 0
    assert cases(ok)["bound small"].find("failure") is None
    code = main(["explore", "shard_mapper", "--impl", "properties.shard_mapper:IdReuseMapper",
                 "--export", str(tmp_path / "traces"), "--junit", str(bad)])
    assert code == 1
    tc = cases(bad)["bound small"]
    assert trace_path_of(tc).is_file()


def test_campaign_junit_has_one_case_per_component(tmp_path, capsys):
    out = tmp_path / "campaign.xml"
    code = main(["campaign", "shard_mapper", "--impl", "properties.shard_mapper:ScaleUpZeroSideEffects",
                 "--max-examples", "60", "--job-examples", "30", "--workers", "1",
                 "--database", str(tmp_path / "db"), "--export", str(tmp_path / "traces"),
                 "--junit", str(out)])
    assert code == 1
    tc = cases(out)["shard_mapper"]
    assert trace_path_of(tc).is_file()


def test_junit_into_a_missing_directory_is_refused_before_running(tmp_path, capsys):
    code = main(["fuzz", "shard_mapper", "--junit", str(tmp_path / "nope" / "x.xml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--junit" in err
