"""Start and stop a private, loopback-only etcd server, and resolve `MESHSPEC_ETCD`.

Used by `meshspec fuzz --etcd auto` (through `properties/capacity.py`) and by the test
fixtures of `tests/etcd_server.py`. The server is Debian's `etcd-server` (3.4), started
with the fast single-node flags of `reference/tooling-notes.md` on a free client port and
a free peer port of 127.0.0.1, with a temporary data directory; it listens on loopback
only. It is stopped by pid (SIGTERM, then SIGKILL after a bounded wait) and its directory
removed. Readiness uses `time.monotonic` and polls `/health` with short sleeps: this is
process plumbing, not code under test.

`MESHSPEC_ETCD` (set by `meshspec fuzz --etcd URL|auto`) selects the KV of components
that have one: unset → the embedded in-memory etcd model; a URL → that server (it must
be `http://127.0.0.1:PORT`); `auto` → one server per process, started lazily by
`etcd_url()` on first use and stopped at interpreter exit (atexit). The binary is
`/usr/bin/etcd` unless `MESHSPEC_ETCD_BINARY` names another one.
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import IO, Optional

ETCD_ENV = "MESHSPEC_ETCD"
BINARY_ENV = "MESHSPEC_ETCD_BINARY"
ETCD_BINARY = os.environ.get(BINARY_ENV, "/usr/bin/etcd")
INSTALL_HINT = "apt-get install -y etcd-server"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
POLL_SLEEP_S = 0.02


def etcd_available(binary: str = ETCD_BINARY) -> bool:
    """Whether the etcd binary exists and is executable."""
    return os.path.isfile(binary) and os.access(binary, os.X_OK)


def missing_etcd_message(binary: str = ETCD_BINARY) -> str:
    """The message shown when the binary is missing."""
    return f"etcd binary not found at {binary}: install it with `{INSTALL_HINT}`"


def free_port() -> int:
    """A currently unused TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if the starting process dies without stopping it."""
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

    @property
    def pid(self) -> Optional[int]:
        return None if self._proc is None else self._proc.pid

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
        if not etcd_available(self.binary):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise FileNotFoundError(missing_etcd_message(self.binary))
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


# --------------------------------------------------------------------------- MESHSPEC_ETCD

_auto_server: Optional[EtcdServer] = None
_auto_pid: Optional[int] = None
_auto_lock = threading.Lock()


def _stop_auto_server() -> None:
    global _auto_server
    server, _auto_server = _auto_server, None
    if server is not None and _auto_pid == os.getpid():  # never stop a parent's server
        server.stop()


def auto_server_url() -> str:
    """The URL of this process's own etcd, started on first call, stopped at exit."""
    global _auto_server, _auto_pid
    with _auto_lock:
        if _auto_server is None or _auto_pid != os.getpid():
            server = EtcdServer()
            server.start()
            _auto_server, _auto_pid = server, os.getpid()
            atexit.register(_stop_auto_server)
        return _auto_server.url


def etcd_url() -> Optional[str]:
    """What `MESHSPEC_ETCD` asks for: None (embedded model), a URL, or the auto server's URL."""
    raw = os.environ.get(ETCD_ENV, "").strip()
    if not raw:
        return None
    if raw.lower() == "auto":
        return auto_server_url()
    return raw
