"""meshspec.testing.lockstep_test: a broken user class fails the generated test with the
lockstep finding; a class lacking operations is refused when the test module is imported."""
from __future__ import annotations

import unittest

import pytest
from hypothesis import Phase, settings

from meshspec import registry
from meshspec.testing import active_settings, lockstep_test

QUICK = settings(max_examples=60, stateful_step_count=40, deadline=None, database=None,
                 phases=[Phase.generate])


def run_case(cls: type[unittest.TestCase]) -> unittest.TestResult:
    result = unittest.TestResult()
    cls("runTest").run(result)
    return result


def test_a_broken_user_class_fails_with_the_lockstep_finding():
    broken = next(m.cls for m in registry.get_component("shard_mapper").mutants
                  if m.name == "activate_returns_unit")
    result = run_case(lockstep_test("shard_mapper", broken, settings=QUICK))
    assert len(result.failures) == 1, result.errors
    assert "meshspec.lockstep.LockstepFailure: [" in result.failures[0][1], result.failures[0][1][-3000:]


def test_the_unchanged_impl_passes_the_same_budget():
    comp = registry.get_component("shard_mapper")
    result = run_case(lockstep_test("shard_mapper", comp.impl_cls, settings=QUICK))
    assert result.wasSuccessful(), result.failures + result.errors


def test_a_class_lacking_operations_is_refused_naming_them():
    class Half:
        def select_shard(self):  # noqa: D401 - a user class missing most of the API
            return 0

    with pytest.raises(TypeError, match="lacks the shard_mapper operations: .*scale_up"):
        lockstep_test("shard_mapper", Half)


def test_an_unknown_component_lists_the_known_ones():
    with pytest.raises(registry.UnknownComponent):
        lockstep_test("no_such_component", object)


def test_the_active_profile_is_meshspec_s_when_hypothesis_profile_names_it(monkeypatch):
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "nightly")
    assert active_settings().max_examples == settings.get_profile("nightly").max_examples
    assert active_settings().deadline is None


def test_a_progress_printer_of_an_earlier_fuzz_run_is_not_called_afterwards():
    """A `meshspec fuzz` earlier in the same process (its output captured and then closed) must
    leave no progress hook behind for a later lockstep_test: the test fails with the lockstep
    finding, not with 'I/O operation on closed file'."""
    import io

    from meshspec.fuzz import run_fuzz
    from meshspec.progress import PlainProgress

    comp = registry.get_component("shard_mapper")
    out = io.StringIO()
    printer = PlainProgress(out, interval=0.0)
    printer.start("shard_mapper")
    run_fuzz(comp, comp.impl_cls, profile="dev", seed=1, max_examples=2, use_database=False,
             progress=printer.update)
    assert "examples" in out.getvalue()  # the hook did run during the fuzz run
    out.close()
    broken = next(m.cls for m in comp.mutants if m.name == "activate_returns_unit")
    result = run_case(lockstep_test("shard_mapper", broken, settings=QUICK))
    assert result.errors == [] and len(result.failures) == 1
