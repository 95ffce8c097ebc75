"""docs/ci/github-actions.yml, the workflow a team copies: it parses, every meshspec command
it runs is accepted by meshspec's own argument parser (verbs and flags exist), the pull
request job fuzzes the ci profile with a fixed seed, the nightly job runs a random-seed
campaign for a time budget and saves its example database, which the pull request job
restores, and traces are uploaded on failure."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from meshspec.cli import UsageError, build_parser

WORKFLOW = Path(__file__).resolve().parent.parent / "docs" / "ci" / "github-actions.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def meshspec_commands(job: dict) -> list[list[str]]:
    commands = []
    for step in job["steps"]:
        for line in step.get("run", "").replace("\\\n", " ").splitlines():
            words = shlex.split(line)
            if words and words[0] == "meshspec":
                commands.append(words[1:])
    return commands


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(action)]


def parses(argv: list[str]) -> bool:
    try:
        build_parser().parse_args(argv)
    except (UsageError, SystemExit):
        return False
    return True


def test_the_workflow_runs_on_pull_requests_and_nightly(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "pull_request" in triggers and triggers["schedule"][0]["cron"]
    assert set(workflow["jobs"]) == {"pull-request", "nightly"}


def test_every_meshspec_command_is_accepted_by_the_cli_parser(workflow):
    commands = [c for job in workflow["jobs"].values() for c in meshspec_commands(job)]
    assert len(commands) == 2
    for argv in commands:
        assert parses(argv), argv


def test_the_check_catches_a_flag_meshspec_does_not_have(workflow):
    argv = meshspec_commands(workflow["jobs"]["pull-request"])[0]
    assert not parses(argv + ["--no-such-flag"])
    assert not parses(["fuzzz"] + argv[1:])


def test_the_pull_request_job_fuzzes_the_ci_profile_with_a_fixed_seed(workflow):
    job = workflow["jobs"]["pull-request"]
    args = build_parser().parse_args(meshspec_commands(job)[0])
    assert args.verb == "fuzz" and args.profile == "ci" and args.seed.isdigit()
    assert args.junit and args.fail_under_coverage
    restore = uses(job, "dawidd6/action-download-artifact")
    assert restore and restore[0]["with"]["path"] == ".meshspec/examples"


def test_the_nightly_job_runs_a_random_seed_campaign_and_saves_its_database(workflow):
    job = workflow["jobs"]["nightly"]
    args = build_parser().parse_args(meshspec_commands(job)[0])
    assert args.verb == "campaign" and args.seed == "random" and args.budget
    saved = [s for s in uses(job, "actions/upload-artifact") if s["with"]["name"] == "meshspec-examples"]
    assert saved and saved[0]["if"] == "always()"
    assert saved[0]["with"]["path"].rstrip("/") == args.database
    assert uses(job, "dawidd6/action-download-artifact")[0]["with"]["name"] == "meshspec-examples"


def test_traces_are_uploaded_when_a_job_fails(workflow):
    for name, job in workflow["jobs"].items():
        argv = meshspec_commands(job)[0]
        export = build_parser().parse_args(argv).export
        uploads = [s for s in uses(job, "actions/upload-artifact") if s.get("if") == "failure()"]
        assert any(s["with"]["path"].rstrip("/") == export for s in uploads), name
