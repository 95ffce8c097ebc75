"""CrossHair has teeth: every model contract refutes a broken copy of its function.

Each broken variant is the model function's own source (docstring contract included) with
one small change to the body, written to a module in tmp_path that first takes every
global of the model module. `crosshair check` must report a counterexample for it. The
real functions are checked by `meshspec contracts` (the full run); here only a few fast
ones, to keep CI short.
"""
from __future__ import annotations

import importlib
import inspect
import textwrap
from pathlib import Path

import pytest

from meshspec import cli, contracts
from meshspec.contracts import CheckResult

TIMEOUT = 10.0

# (model module, function, text in its body, the broken replacement, the postcondition
# it breaks: the broken copy keeps its `pre:` lines and that one `post:` line, so CrossHair
# stops at the first counterexample instead of running the other conditions to the limit)
BROKEN = [
    ("model.shard_mapper", "saturating_add_u32", "min(a + b, U32_MAX)", "min(a + b, U32_MAX + 1)",
     '__return__ <= U32_MAX'),
    ("model.shard_mapper", "saturating_mul_u16", "min(a * b, U16_MAX)", "min(a * b, U16_MAX + 1)",
     '0 <= __return__ <= U16_MAX'),
    ("model.shard_mapper", "lemire_index", "(event_hash * n) >> 64", "((event_hash + 1) * n) >> 64",
     '0 <= __return__ < n'),
    ("model.shard_mapper", "compute_weight", "m.fill_ratio * 100.0 +", "m.fill_ratio * 10.0 +",
     'm.fill_ratio * 100.0'),
    ("model.shard_mapper", "fill_ratio_of", "return 0.0", "return 1.0",
     '(__return__ == 0.0)'),
    ("model.shard_mapper", "_packed_add", "min(sample, U32_MAX))", "min(sample, U32_MAX)) - 1",
     '_packed_average(__return__)'),
    ("model.shard_mapper", "_packed_average", "total // count", "(total + 1) // count",
     '__return__ <= word'),
    ("model.load_balancer", "wrapping_add_u64", "(a + b) & U64_MAX", "(a + b) & U32_MAX",
     'a + b - 2**64'),
    ("model.load_balancer", "saturating_sub_u32", "max(a - b, 0)", "max(a - b, 1)",
     '0 <= __return__ <= a'),
    ("model.load_balancer", "fnv1a_64", "for byte in data:", "for byte in data + b'\\x00':",
     'len(data) > 0'),
    ("model.load_balancer", "recovery_elapsed", "now - since >= recovery_ns", "now - since >= 0",
     'since != now'),
    ("model.load_balancer", "wheel_scale", "return 2", "return 4",
     '__return__ // 2'),
    ("model.load_balancer", "first_at_or_after", "entry[0] >= h:", "entry[0] > h:",
     'all(entry[0] < h'),
    ("model.scheduler", "_cmp", "(a > b) - (a < b)", "(a > b) - (a <= b)",
     '_cmp(b, a)'),
    ("model.scheduler", "rtt_step", "return -1", "return 1",
     '__return__ == -1'),
    ("model.scheduler", "tie_break_compare", "if a == b:\n        return 0", "if a == b:\n        return 1",
     '(__return__ == 0)'),
    ("model.capacity", "sat_add_u64", "min(a + b, U64_MAX)", "min(a + b, U64_MAX + 1)",
     'max(a, b) <= __return__'),
    ("model.capacity", "sat_u32", "min(n, U32_MAX)", "min(n, U32_MAX + 1)",
     '0 <= __return__ <= U32_MAX'),
    ("model.capacity", "push_op", "(log + (entry,))", "((entry,) + log)",
     '__return__[-1] is entry'),
    ("model.capacity", "is_owner_live", "now < record.lease.deadline", "now >= record.lease.deadline",
     'now - 1'),
    ("model.capacity", "hint_from_scan", "available += 1", "available -= 1",
     'available_count'),
    ("model.etcd", "prefix_range_end", "end[-1] += 1", "end[-1] += 0",
     'prefix < __return__'),
    ("model.daemon_host", "u64_checked_add", "total <= U64_MAX", "total < U64_MAX",
     '(__return__ is None) =='),
    ("model.daemon_host", "u64_saturating_add", "min(a + b, U64_MAX)", "min(a + b, U64_MAX - 1)",
     'max(a, b) <= __return__'),
    ("model.daemon_host", "bloom_bits_for_origin", "(1 << (h1 + h2) %", "(1 << (h1 + 64) %",
     'count("1") == 3'),
    ("model.group_coordinator", "saturating_u8", "min(count, U8_MAX)", "min(count, U8_MAX + 1)",
     '0 <= __return__ <= U8_MAX'),
]


def write_broken(tmp_path: Path, module: str, func: str, old: str, new: str, post: str = "") -> str:
    """A module `broken_<func>` holding the model's globals and the mutated function
    (with only the `post:` line containing `post`, when given)."""
    source = textwrap.dedent(inspect.getsource(getattr(importlib.import_module(module), func)))
    assert source.count(old) == 1, f"{module}.{func} no longer contains {old!r}"
    if post:
        source = keep_one_post(source, post)
    name = f"broken_{func.strip('_')}"
    header = f"import importlib\nglobals().update(vars(importlib.import_module({module!r})))\n\n"
    (tmp_path / f"{name}.py").write_text(header + source.replace(old, new), encoding="utf-8")
    return f"{name}.{func}"


def keep_one_post(source: str, fragment: str) -> str:
    """The source without the `post:` lines that do not contain `fragment`."""
    kept = [line for line in source.splitlines()
            if not line.strip().startswith("post:") or fragment in line]
    assert sum(line.strip().startswith("post:") for line in kept) == 1, fragment
    return "\n".join(kept) + "\n"


def test_every_contracted_model_function_has_a_broken_variant_here():
    contracted = {t.rsplit(".", 1)[1] for t, _ in contracts.contract_targets(list(contracts.CONTRACT_MODULES))}
    assert contracted == {func for _, func, _, _, _ in BROKEN}


@pytest.mark.parametrize("module, func, old, new, post", BROKEN, ids=[b[1] for b in BROKEN])
def test_crosshair_refutes_the_broken_variant_of_each_contract(tmp_path, module, func, old, new, post):
    target = write_broken(tmp_path, module, func, old, new, post)
    result = contracts.check_contract(target, TIMEOUT, path=tmp_path)
    assert result.status == "refuted", result
    assert f"{func}(" in result.detail


@pytest.mark.parametrize("target", ["model.shard_mapper.lemire_index",
                                    "model.group_coordinator.saturating_u8"])
def test_real_model_contracts_are_confirmed_over_all_paths(target):
    assert contracts.check_contract(target, TIMEOUT).status == "confirmed"


def test_diffbehavior_reports_the_input_where_a_broken_copy_differs(tmp_path):
    broken = write_broken(tmp_path, "model.daemon_host", "u64_checked_add",
                          "total <= U64_MAX", "total < U64_MAX")
    result = contracts.check_diff("model.daemon_host.u64_checked_add", broken, TIMEOUT, path=tmp_path)
    assert result.status == "differ", result
    assert "Given:" in result.detail


def test_impl_functions_imported_from_the_model_are_shared_not_compared():
    pairs = {m.rsplit(".", 1)[1]: shared for m, _, shared in contracts.diff_pairs("daemon_host")}
    assert pairs["check_u64"] is True
    assert pairs["compute_parent_hash"] is False
    result = contracts.check_diff("model.daemon_host.check_u64", "impl.daemon_host.check_u64", shared=True)
    assert result.status == "shared (same function)"


def test_crosshair_output_is_classified_as_refuted_unknown_or_confirmed():
    assert contracts.classify_check(1, "m.py:5: error: false when calling f(1) (which returns 2)") \
        == ("refuted", "false when calling f(1) (which returns 2)")
    assert contracts.classify_check(0, "m.py:5: info: Not confirmed.")[0] == "unknown"
    assert contracts.classify_check(-1, "")[0] == "unknown"
    assert contracts.classify_check(0, "m.py:5: info: Confirmed over all paths.")[0] == "confirmed"
    assert contracts.classify_diff(0, "No differences found. (attempted 4 iterations)\n"
                                      "All paths exhausted, functions are likely the same!\n")[0] == "equivalent"


def test_contracts_exits_1_on_a_refutation(monkeypatch, capsys):
    refuted = CheckResult("contract", "m.f", "__return__ > 0", "refuted", "false when calling f(0)", 0.1)
    monkeypatch.setattr(contracts, "run_component", lambda name, timeout, on_result: [refuted])
    assert cli.main(["contracts", "scheduler"]) == 1
    assert "FAILED: m.f: refuted: false when calling f(0)" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["contracts", "nope"], ["contracts", "--timeout", "0"],
                                  ["contracts", "--timeout", "x"]])
def test_contracts_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("meshspec: error:") and err.count("\n") == 1


def test_record_merges_rows_and_drops_checks_that_no_longer_exist(tmp_path):
    path = tmp_path / "contracts-results.json"
    stale = CheckResult("contract", "model.load_balancer.gone", "x", "confirmed", "", 1.0)
    live = CheckResult("contract", "model.shard_mapper.lemire_index", "y", "confirmed", "all paths", 0.34)
    contracts.record([stale, live], path)
    assert set(contracts.load_recorded(path)) == {("contract", "model.shard_mapper.lemire_index")}
    assert contracts.load_recorded(path)[("contract", "model.shard_mapper.lemire_index")]["seconds"] == 0.3


def test_a_difference_that_vanishes_on_plain_values_is_only_symbolic(tmp_path):
    broken = write_broken(tmp_path, "model.daemon_host", "u64_checked_add",
                          "total <= U64_MAX", "total < U64_MAX")
    given = "Given: (a=18446744073709551615, b=0),\n  x : returns 1\n  y : returns None"
    real = "model.daemon_host.u64_checked_add"
    assert contracts.concretely_same(real, real, given, None)
    assert not contracts.concretely_same(real, broken, given, tmp_path)
