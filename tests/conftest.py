"""Shared pytest configuration: the Hypothesis profile and seed every machine test uses.

The profile comes from HYPOTHESIS_PROFILE (CI sets `ci`); the seed from MESHSPEC_SEED
(`random` rotates it; unset means the fixed default). Both are printed in the header so
a failing CI run can be reproduced locally.
"""
from __future__ import annotations

import os

import pytest

from meshspec.profiles import profile_name, resolve_seed

PROFILE = profile_name()
SEED = resolve_seed()
# Pin a rotated seed in the environment so pytest-xdist workers share it.
os.environ["MESHSPEC_SEED"] = str(SEED)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from meshspec.etcd_server import find_etcd_binary

    return [f"meshspec: hypothesis profile {PROFILE}, seed {SEED} (set MESHSPEC_SEED to change)",
            f"meshspec: etcd binary {find_etcd_binary() or 'not found (real-etcd tests skip)'}"]


@pytest.fixture(scope="session")
def fuzz_profile() -> str:
    return PROFILE


@pytest.fixture(scope="session")
def fuzz_seed() -> int:
    return SEED

# --- etcd fixtures (tests/etcd_server.py) are registered below this line ---
try:  # tests/ is on sys.path (rootdir-relative import mode, no tests/__init__.py)
    from etcd_server import (  # noqa: E402,F401
        etcd_gateway, etcd_prefix, etcd_server, fresh_etcd_server)
except ImportError:  # tests/ became a package
    from tests.etcd_server import (  # noqa: E402,F401
        etcd_gateway, etcd_prefix, etcd_server, fresh_etcd_server)
