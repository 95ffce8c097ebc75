"""Hypothesis profiles, registered in one place, and the seed policy.

- `dev`: quick local feedback.
- `ci`: a fixed budget sized so the whole CI stays well under 25 minutes with all six
  components and their mutant tiers; no deadline; a fixed, printed seed (override with
  `--seed N`, or `--seed random` / `MESHSPEC_SEED=random` to rotate it between CI runs).
- `nightly`: a large budget for long fuzzing outside CI.

The profile is chosen by `--profile` or the `HYPOTHESIS_PROFILE` environment variable
(default `dev`). The backend (`--backend`) is Hypothesis' own random generation
(`hypothesis`, the default) or `crosshair` (the optional extra `meshspec[crosshair]`, i.e.
hypothesis-crosshair): symbolic execution that solves for branch conditions, a few machine
steps/s while symbolic (the default backend: about a thousand). On the lockstep machines
CrossHair discards most symbolic test cases (non-determinism it detects at the end of a long
path, path timeouts) and after 11 discards Hypothesis silently generates the rest itself,
2-3x slower than under the default backend: a budget costs about 10-20 s more per
component, and the run says how many cases were symbolic. `--max-examples` bounds any budget. Hypothesis' own built-in `ci` profile (loaded when `CI` is set) would
derandomize and drop the database; meshspec registers its own `ci` over it on purpose.
"""
from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterable, Iterator

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILES = ("dev", "ci", "nightly")
BACKENDS = ("hypothesis", "crosshair")
DEFAULT_BACKEND = "hypothesis"
#: How to get each optional backend, for the error when it is missing.
BACKEND_INSTALL = {"crosshair": "pip install 'meshspec[crosshair]' (or pip install hypothesis-crosshair)"}
DEFAULT_SEED = 20261123
DATABASE_ROOT = Path(".meshspec") / "examples"

_COMMON = dict(
    deadline=None,
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
    print_blob=False,
    derandomize=False,
)

settings.register_profile("dev", max_examples=40, stateful_step_count=40, **_COMMON)
settings.register_profile("ci", max_examples=300, stateful_step_count=80, **_COMMON)
settings.register_profile("nightly", max_examples=5000, stateful_step_count=120, **_COMMON)


#: The most examples one Hypothesis run gets. A longer budget (nightly) is split into runs
#: of this many examples with derived seeds, sharing the example database: Hypothesis keeps
#: every example's choices of a run (its data cache, up to 10,000 results of about 0.4 MB
#: each for a 120-step machine, and its DataTree) until the run ends: measured at 0.5-0.6 MB
#: of RSS per nightly example in all six components, so an unsplit nightly run grew by
#: several MB/s. A chunk peaks near 350 MB. dev and ci budgets fit in one run, unchanged.
CHUNK_EXAMPLES = 500


def chunk_seed(seed: int, index: int) -> int:
    """The seed of the `index`-th run of a split budget: the seed itself first, then derived ones."""
    if index == 0:
        return seed
    digest = hashlib.sha256(f"meshspec-chunk:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def chunk_sizes(total: int, chunk: int = CHUNK_EXAMPLES) -> list[int]:
    """How a budget of `total` examples is split: full chunks, then the remainder."""
    full, rest = divmod(total, chunk)
    return [chunk] * full + ([rest] if rest else [])


def witnesses_required(profile: str) -> bool:
    """Whether an unreached sometimes-witness fails the run: not under the short dev budget."""
    return profile_name(profile) != "dev"


#: Wall-clock cap on shrinking one failure, per profile. Hypothesis' own cap is 300 s,
#: which would let a handful of mutants eat the CI budget; this lowers it (an internal
#: knob of hypothesis.internal.conjecture.engine, set only for the duration of a run).
SHRINK_SECONDS = {"dev": 10, "ci": 10, "nightly": 300}


class ProfileError(ValueError):
    """An unknown profile name or a malformed seed."""


def profile_name(requested: str | None = None) -> str:
    name = requested or os.environ.get("HYPOTHESIS_PROFILE") or "dev"
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})")
    return name


def backend_name(requested: str | None = None) -> str:
    """A known backend whose package is installed, or ProfileError saying how to install it."""
    from hypothesis.internal.conjecture.providers import AVAILABLE_PROVIDERS

    name = requested or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise ProfileError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    if name not in AVAILABLE_PROVIDERS:
        raise ProfileError(f"backend {name!r} is not installed: {BACKEND_INSTALL[name]}")
    return name


def resolve_seed(requested: str | int | None = None) -> int:
    """`None` → MESHSPEC_SEED or the fixed default; "random" → a fresh seed (printed by callers)."""
    raw = requested if requested is not None else os.environ.get("MESHSPEC_SEED")
    if raw is None or raw == "":
        return DEFAULT_SEED
    if str(raw).lower() == "random":
        return random.SystemRandom().randrange(2**32)
    try:
        return int(raw)
    except ValueError:
        raise ProfileError(f"seed must be an integer or 'random', not {raw!r}") from None


def settings_for(profile: str, *, database_key: str | None = None, quiet: bool = True,
                 max_examples: int | None = None, shrink: bool = True,
                 backend: str = DEFAULT_BACKEND, database_root: Any = None) -> settings:
    """The profile's settings, with a per-(component, impl) example database when asked,
    generating with `backend` (see `backend_name`). `database_root` (a campaign's shared
    database, see meshspec.campaign) replaces the local `.meshspec/examples/` directory: a
    callable from the key to an ExampleDatabase."""
    base = settings.get_profile(profile_name(profile))
    database = None
    if database_key is not None and database_root is not None:
        database = database_root(database_key)
    elif database_key is not None:
        database = DirectoryBasedExampleDatabase(str(DATABASE_ROOT / database_key))
    extra: dict = {"database": database}
    if quiet:
        extra["verbosity"] = Verbosity.quiet
    if max_examples is not None:
        extra["max_examples"] = max_examples
    if backend != DEFAULT_BACKEND:
        extra["backend"] = backend_name(backend)
    if not shrink:
        extra["phases"] = [p for p in base.phases if p != Phase.shrink]
    return settings(base, **extra)


@contextmanager
def shrink_budget(profile: str) -> Iterator[None]:
    """Cap Hypothesis' shrinking time to the profile's SHRINK_SECONDS while the block runs."""
    from hypothesis.internal.conjecture import engine

    saved = engine.MAX_SHRINKING_SECONDS
    engine.MAX_SHRINKING_SECONDS = SHRINK_SECONDS[profile_name(profile)]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = saved


@contextmanager
def fixed_constants(modules: Iterable[ModuleType]) -> Iterator[None]:
    """Make Hypothesis' pool of "local constants" the constants of `modules` while the block runs.

    Hypothesis (since about 6.131; checked on 6.150-6.170) sometimes draws a constant found
    in the source of every *local* module in `sys.modules` (not site-packages, not tests).
    That pool depends on how meshspec was installed (`pip install -e .` makes the engine
    and the components local, `pip install .` makes them site-packages) and on what else was
    imported before (other components, the user's script), so the same seed explored
    different inputs. There is no public setting for it: this replaces the one internal
    hook, `providers._get_local_constants`, by a fixed pool (the component's own modules),
    and clears the cache of constants filtered per draw on entry and exit.
    """
    from hypothesis.internal.conjecture import providers
    from hypothesis.internal.constants_ast import Constants, constants_from_module

    saved = getattr(providers, "_get_local_constants", None)
    if saved is None:  # a Hypothesis without the harvesting: nothing to pin
        yield
        return
    pool = Constants()
    for module in sorted(set(modules), key=lambda m: m.__name__):
        pool |= constants_from_module(module)
    providers.CONSTANTS_CACHE.cache.clear()
    providers._get_local_constants = lambda: pool
    try:
        yield
    finally:
        providers._get_local_constants = saved
        providers.CONSTANTS_CACHE.cache.clear()
