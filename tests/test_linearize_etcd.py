"""Linearizability of the etcd-backed coordinator: the sequential spec on hand-written
histories, then real concurrent clients against a real etcd with faults, and the two
deliberately broken clients flagged with their minimal non-linearizable sub-history."""
from __future__ import annotations

from typing import Any

import pytest

from meshspec.cli import main
from meshspec.linearize import Operation, check, number
from meshspec.linearize_etcd import (
    WorkloadConfig,
    coordinator_model,
    lost_acquires,
    run_workload,
)
from model.capacity import StaleFence

try:  # tests/ is on sys.path (rootdir-relative import mode, no tests/__init__.py)
    from etcd_server import _require_etcd
except ImportError:  # tests/ became a package
    from tests.etcd_server import _require_etcd

FREE = ("ok", "ACTIVE", 1, None, None)


def ops(*items: tuple) -> list[Operation]:
    return number(Operation(c, o, a, call, ret, res, *rest) for c, o, a, call, ret, res, *rest in items)


# --------------------------------------------------------------------------- the spec, no etcd


def test_one_acquire_then_a_read_of_its_owner_is_linearizable() -> None:
    h = ops((0, "acquire", (0, 1), 0, 10, ("ok", 1, 2)),
            (1, "read", (0,), 20, 30, ("ok", "ACTIVE", 2, 1, (1, 2))),
            (1, "acquire", (0, 2), 40, 50, ("AlreadyLeased", 1)))
    assert check(h, coordinator_model(2)).linearizable


def test_two_winners_of_one_shard_at_the_same_fence_are_not_linearizable() -> None:
    h = ops((0, "acquire", (0, 1), 0, 10, ("ok", 1, 2)), (1, "acquire", (0, 2), 0, 10, ("ok", 2, 2)))
    result = check(h, coordinator_model(2))
    assert not result.linearizable and len(result.minimal) == 2


def test_acquires_of_different_shards_are_checked_as_separate_histories() -> None:
    h = ops((0, "acquire", (0, 1), 0, 10, ("ok", 1, 2)), (1, "acquire", (1, 2), 0, 10, ("ok", 2, 2)))
    result = check(h, coordinator_model(2))
    assert result.linearizable and result.partitions == 2


def test_an_expired_lease_frees_the_shard_for_another_worker() -> None:
    h = ops((0, "acquire", (0, 1), 0, 10, ("ok", 1, 2)), (9, "expire", (0, 2), 20, 30, ("ok",)),
            (1, "acquire", (0, 2), 40, 50, ("ok", 2, 3)),
            (0, "renew", (0, 1, 2), 60, 70, ("StaleFence", str(StaleFence(2, 3)))))
    result = check(h, coordinator_model(1))
    assert result.linearizable, result.explain()


def test_a_read_that_misses_an_acknowledged_release_is_not_linearizable() -> None:
    h = ops((0, "acquire", (0, 1), 0, 10, ("ok", 1, 2)),
            (0, "release", (0, 1, 2, 7), 20, 30, ("ok", False)),
            (1, "read", (0,), 40, 50, ("ok", "ACTIVE", 2, 1, (1, 2))))
    result = check(h, coordinator_model(1))
    assert not result.linearizable
    assert [op.op for op in result.minimal] == ["acquire", "release", "read"]


def test_an_indeterminate_acquire_may_explain_a_later_owner() -> None:
    h = ops((0, "acquire", (0, 1), 0, None, None, "info"),
            (1, "read", (0,), 40, 50, ("ok", "ACTIVE", 2, 1, (1, 2))))
    assert check(h, coordinator_model(1)).linearizable
    h = ops((0, "acquire", (0, 1), 0, 10, None, "fail"),
            (1, "read", (0,), 40, 50, ("ok", "ACTIVE", 2, 1, (1, 2))))
    assert not check(h, coordinator_model(1)).linearizable


def test_an_acknowledged_acquire_missing_from_the_final_read_is_lost() -> None:
    h = ops((0, "acquire", (0, 1), 0, 10, ("ok", 1, 2)), (5, "read", (0,), 40, 50, FREE))
    assert lost_acquires(h, 5) == (1, ("shard 0 fence 2 (final fence 1)",))
    h = ops((0, "acquire", (0, 1), 0, 10, ("ok", 1, 2)),
            (5, "read", (0,), 40, 50, ("ok", "ACTIVE", 2, 1, (1, 2))))
    assert lost_acquires(h, 5) == (1, ())
    h = ops((0, "acquire", (0, 1), 0, 10, ("ok", 1, 2)), (5, "read", (0,), 40, 50, None, "fail"))
    assert "final read failed" in lost_acquires(h, 5)[1][0]


def test_bad_arguments_are_one_line_and_exit_2(capsys: Any) -> None:
    for argv in (["--clients", "1"], ["--faults", "kill,boom"], ["--broken", "sloppy"],
                 ["--etcd", "http://10.1.2.3:2379"], ["--etcd", "http://127.0.0.1:9", "--faults", "kill"]):
        assert main(["linearize", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- a real etcd


def test_concurrent_clients_with_kill_pause_and_expire_faults_are_linearizable() -> None:
    _require_etcd()
    report = run_workload(WorkloadConfig(clients=4, ops=300, shards=3,
                                       faults=("kill", "pause", "expire"), seed=11))
    assert report.result.linearizable, report.text()
    assert report.faults_injected["kill"] == 1 and report.faults_injected["pause"] == 1
    assert report.faults_injected["expire"] >= 2
    assert report.acknowledged_acquires > 0 and report.lost_acquires == ()
    assert report.ok


def test_a_server_of_the_users_gets_expire_faults_and_is_left_clean(etcd_server: str) -> None:
    from impl.etcd_client import EtcdGateway

    report = run_workload(WorkloadConfig(clients=2, ops=80, shards=2, faults=("expire",)),
                          etcd_server)
    assert report.ok, report.text()
    gateway = EtcdGateway(etcd_server)
    try:
        assert gateway.get_prefix(b"/meshspec-linearize/").count == 0
    finally:
        gateway.close()


def flagged(broken: str) -> Any:
    """The first of three seeded runs that is flagged (one is almost always enough)."""
    _require_etcd()
    for seed in range(3):
        report = run_workload(WorkloadConfig(clients=4, ops=150, shards=1, faults=("expire",),
                                           broken=broken, seed=seed))
        if not report.result.linearizable:
            return report
    pytest.fail(f"the {broken} client was never flagged: {report.text()}")


def test_a_client_without_the_mod_revision_guard_is_flagged_with_two_winners() -> None:
    report = flagged("guardless")
    minimal = report.result.minimal
    assert 1 <= len(minimal) <= 6, report.text()
    # an unguarded write that was acknowledged (two acquire winners, or a renew/release that
    # overwrote a shard someone had changed since its read), or the corruption such writes
    # leave behind (a record and an owner key that disagree), which the model never shows
    assert any(op.op in ("acquire", "renew", "release") and op.result[0] == "ok"
               or "corruption" in str(op.result) for op in minimal), report.text()
    assert "minimal non-linearizable sub-history" in report.text()


def test_a_client_that_caches_reads_is_flagged_with_a_stale_observation() -> None:
    report = flagged("cached-read")
    culprit = sorted(report.result.minimal, key=lambda o: o.call)[-1]
    assert culprit.client < report.config.clients  # a client's stale answer, not the nemesis
    assert "NOT linearizable" in report.text()


def test_an_exception_raised_by_the_impl_is_flagged_not_swallowed(monkeypatch: Any) -> None:
    _require_etcd()
    from impl.capacity import EtcdCoordinator

    class RaisesInRenew(EtcdCoordinator):
        def renew(self, tenant: bytes, lease: Any) -> Any:
            raise ZeroDivisionError("renew broke")

    monkeypatch.setattr("meshspec.linearize_etcd.client_class", lambda broken: RaisesInRenew)
    report = run_workload(WorkloadConfig(clients=2, ops=60, shards=1, seed=0))
    assert not report.result.linearizable
    assert any(op.result == ("exception", "ZeroDivisionError", "renew broke")
               for op in report.result.minimal), report.text()


def test_the_verb_prints_the_report_exits_1_for_a_broken_client_and_its_history_rechecks(
        capsys: Any, tmp_path: Any, monkeypatch: Any) -> None:
    _require_etcd()
    monkeypatch.setattr("meshspec.linearize_cli.RESULTS_PATH", tmp_path / "results.json")
    saved = tmp_path / "history.json"
    codes = [main(["linearize", "--clients", "3", "--ops", "120", "--shards", "1", "--broken",
                   "guardless", "--seed", str(seed), "--save", str(saved), "--record"])
             for seed in range(2)]
    out = capsys.readouterr().out
    assert codes[-1] == 1 or codes[0] == 1
    for needle in ("operations:", "faults injected:", "histories checked:", "search time:",
                   "verdict: NOT linearizable", "history saved in"):
        assert needle in out
    last = out.split("history saved in")[-2]  # the last run's report
    assert main(["linearize", "--check", str(saved)]) == codes[-1]
    rechecked = capsys.readouterr().out
    assert rechecked.split("verdict:")[1] == last.split("verdict:")[1]
    assert "minimal non-linearizable" not in last or rechecked.split("minimal")[1] == last.split("minimal")[1]
    from meshspec.linearize_cli import report_section

    section = report_section(tmp_path / "results.json")
    assert section.count("guardless") == 2 and "## Linearizability" in section


def test_a_malformed_saved_history_is_one_line_and_exit_2(capsys: Any, tmp_path: Any) -> None:
    for text in ("{}", "not json", '{"format": "meshspec-linearize-history/1", "config": {}}'):
        (tmp_path / "h.json").write_text(text)
        assert main(["linearize", "--check", str(tmp_path / "h.json")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.nightly
@pytest.mark.parametrize("clients", [2, 8])
def test_long_histories_with_every_fault_are_linearizable(clients: int) -> None:
    _require_etcd()
    report = run_workload(WorkloadConfig(clients=clients, ops=3000, shards=4,
                                       faults=("kill", "pause", "expire"), seed=clients))
    assert report.ok, report.text()
    assert report.faults_injected["kill"] >= 3 and report.faults_injected["pause"] >= 3
