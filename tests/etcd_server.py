"""Start and stop a private, loopback-only etcd server for the real-etcd tests.

This is fixture plumbing, not a test of behaviour: it reads `time.monotonic` for its
readiness deadline and polls `/health` with sleeps of at most 0.02 s. The server is
Debian's `etcd-server` (3.4), started with the fast single-node flags of
`reference/tooling-notes.md` on a free client port and a free peer port of 127.0.0.1,
with a temporary data directory. It is stopped by pid (SIGTERM, then SIGKILL after a
bounded wait) and its directory removed.

Fixtures (imported by `conftest.py`): `etcd_server` (session: one server, yields its
URL), `fresh_etcd_server` (a server of the test's own, for tests that compare absolute
revision deltas), `etcd_gateway` (an `impl.etcd_client.EtcdGateway` on the session
server) and `etcd_prefix` (a key prefix unique to the test, so that tests never see
each other's keys). `unique_lease_id()` hands out lease ids no other test uses. When the
binary is missing they skip with the install command, or fail when `CI` is set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import IO, Iterator

import pytest

ETCD_BINARY = os.environ.get("MESHSPEC_ETCD", "/usr/bin/etcd")
INSTALL_HINT = "apt-get install -y etcd-server"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
POLL_SLEEP_S = 0.02

_prefix_counter = itertools.count(1)


def etcd_available() -> bool:
    """Whether the etcd binary exists and is executable."""
    return os.path.isfile(ETCD_BINARY) and os.access(ETCD_BINARY, os.X_OK)


def missing_etcd_message() -> str:
    """The message shown when the binary is missing."""
    return f"etcd binary not found at {ETCD_BINARY}: install it with `{INSTALL_HINT}`"


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_prefix(label: str = "t") -> bytes:
    """A key prefix no other test in this process uses (pid + counter)."""
    return f"/meshspec-test/{os.getpid()}/{next(_prefix_counter)}-{label}/".encode()


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the test process dies without its teardown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class EtcdServer:
    """One etcd process: `start()` waits until healthy, `stop()` ends it by pid."""

    def __init__(self, binary: str = ETCD_BINARY) -> None:
        self.binary = binary
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="meshspec-etcd-")
        self.url = f"http://127.0.0.1:{self.client_port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        """The etcd command line (fast elections, loopback only)."""
        client = self.url
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            self.binary, "--name", "t", "--data-dir", self.data_dir,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"t={peer}", "--initial-cluster-state", "new",
            "--heartbeat-interval", "10", "--election-timeout", "100",
            "--logger=zap", "--log-outputs=stderr",
        ]

    def start(self) -> str:
        """Start the process and return its URL once `/health` says healthy."""
        self._log = open(os.path.join(self.data_dir, "etcd.log"), "wb")
        self._proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=self._log,
            cwd=self.data_dir, start_new_session=True, preexec_fn=_die_with_parent,
        )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"etcd exited early with {self._proc.returncode}: {self.log_tail()}")
            if self._healthy():
                return
            time.sleep(POLL_SLEEP_S)
        raise RuntimeError(f"etcd not healthy after {READY_TIMEOUT_S} s: {self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=0.5) as resp:
                return bool(json.loads(resp.read().decode()).get("health") == "true")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def log_tail(self, n: int = 2000) -> str:
        """The last `n` characters of the server's stderr log."""
        try:
            with open(os.path.join(self.data_dir, "etcd.log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after a bounded wait, then remove the data dir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- fixtures
# Imported by tests/conftest.py; kept here so that conftest stays a list of imports.

_lease_counter = itertools.count(1)


def unique_lease_id() -> int:
    """A lease id no other test of this process uses (explicit ids make model == real)."""
    return (os.getpid() % 100_000) * 10_000_000_000 + next(_lease_counter)


def _require_etcd() -> None:
    """Skip (or, when `CI` is set, fail) when the etcd binary is missing."""
    if not etcd_available():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {missing_etcd_message()}")
        pytest.skip(missing_etcd_message())


def _serve() -> Iterator[str]:
    _require_etcd()
    server = EtcdServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[str]:
    """A private etcd on 127.0.0.1 for the whole session; yields its URL.

    Missing binary: skip with the install command, or fail when `CI` is set.
    """
    yield from _serve()


@pytest.fixture
def fresh_etcd_server() -> Iterator[str]:
    """An etcd of this test's own (about 0.1 s to start), for tests that compare
    absolute revision deltas and must not see other tests' leases run out."""
    yield from _serve()


@pytest.fixture
def etcd_prefix(request: pytest.FixtureRequest) -> bytes:
    """A key prefix unique to this test."""
    return unique_prefix(request.node.name[:40].replace("/", "_"))


@pytest.fixture
def etcd_gateway(etcd_server: str) -> Iterator[object]:
    """An `impl.etcd_client.EtcdGateway` on the session server, closed afterwards."""
    from impl.etcd_client import EtcdGateway

    gateway = EtcdGateway(etcd_server)
    try:
        yield gateway
    finally:
        gateway.close()
