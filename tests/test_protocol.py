"""The subject protocol: the codec, the schema, `--impl-cmd` against the reference server
(`meshspec serve`) and against misbehaving servers (tests/protocol_servers/faulty.py).

Every fault of the external process is shown to become a counterexample (exit 1, the
fault named in the failure) or, before the run, a configuration error (exit 2, one line).
The round trip through `meshspec serve` must give the verdicts, example and step counts
and rule hits of the in-process run; a served mutant must be caught through the pipe.
"""
from __future__ import annotations

import enum
import json
import math
import random
import subprocess
import sys
from pathlib import Path

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshspec import codec as C
from meshspec import registry
from meshspec.fuzz import run_fuzz
from meshspec.lockstep import impl_path
from meshspec.protocol import _PROCESSES, command_impl, describe_schema, schema_of
from meshspec.protocol_cli import run_served_mutants
from meshspec.serve import TapeRandom

ROOT = Path(__file__).resolve().parent.parent
FAULTY = f"{sys.executable} {ROOT / 'tests' / 'protocol_servers' / 'faulty.py'}"
#: the light entry point (no CLI, no Hypothesis in the server) and the CLI verb: both serve
SERVE = f"{sys.executable} -m meshspec.serve"
SERVE_CLI = f"{sys.executable} -m meshspec serve"
#: Every component (load_balancer's harness reaches into private hooks of the balancer: the
#: Python server answers those through the protocol's get/set/delete/call and init hooks).
PROTOCOL_COMPONENTS = registry.names()
ROUND_TRIP_EXAMPLES = 4
MUTANT_EXAMPLES = 10

TRACE = {"format": "meshspec-trace", "version": 2, "component": "shard_mapper",
         "impl": "impl.shard_mapper:ShardMapper", "seed": None, "profile": None, "failure": None,
         "steps": [{"rule": "init", "args": {"initial": 1, "ring_capacity": 4, "preset": "default",
                                             "cpus": 4, "min_shards": 1, "max_shards": 8,
                                             "cooldown_ns": 1000, "auto_scale": False, "first_id": 0,
                                             "reentrant": True}},
                   {"rule": "select_shard", "args": {"event_hash": 7}},
                   {"rule": "scale_up", "args": {"count": 1}},
                   {"rule": "select_shard", "args": {"event_hash": 9}}]}


def meshspec(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshspec", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


# -- the codec ----------------------------------------------------------------------------------
class Colour(enum.Enum):
    RED = "r"
    BLUE = "b"


@attrs.frozen
class Point:
    x: float
    label: bytes
    colour: Colour
    tags: tuple[int, ...] = ()


CODEC = C.Codec({"Point": Point, "Colour": Colour})


@pytest.mark.parametrize("value,tp", [
    (2**64 - 1, int), (-0.0, float), (math.inf, float), (-math.inf, float), (5e-324, float),
    (0.1 + 0.2, float), (b"\x00\xff", bytes), (Colour.BLUE, Colour), (None, Point | None),
    (Point(-0.0, b"ab", Colour.RED, (1, 2**63)), Point), ([1, 2], list[int]),
    ((1, "a"), tuple[int, str]), ({3: Colour.RED}, dict[int, Colour]),
    ((Point(math.inf, b"", Colour.BLUE), -0.0, {1, 2}, b"z", {"k": (1,)}), tuple),
])
def test_values_round_trip_bit_exact_through_json(value, tp):
    text = json.dumps(CODEC.encode(value, tp), allow_nan=False)
    back = CODEC.decode(json.loads(text), tp)
    assert type(back) is type(value)
    assert repr(back) == repr(value)  # repr tells -0.0 from 0.0 and keeps every float bit


@pytest.mark.parametrize("bits", [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001,
                                  0xFFFFFFFFFFFFFFFF])
def test_nan_travels_with_its_sign_and_payload(bits):
    nan = C.struct.unpack("<d", C.struct.pack("<Q", bits))[0]
    for back in (CODEC.decode(json.loads(json.dumps(CODEC.encode(nan, float))), float),
                 CODEC.untag(json.loads(json.dumps(CODEC.tagged(nan))))):
        assert C.float_bits(back) == bits  # a lossy "nan" would turn -nan into nan


@pytest.mark.parametrize("raw,tp,says", [
    ("three", list[int], "expected an array"), (1.5, int, "expected int"), (True, int, "expected int"),
    ("PURPLE", Colour, "expected a Colour name"), ({"x": 1.0, "nope": 1}, Point, "no field 'nope'"),
    ("%%%", bytes, "invalid base64"), ([1, 2, 3], tuple[int, int], "expected 2 items"),
    ({"$enum": ["Colour"], "name": "RED"}, Any, "unknown enum"), ({"$attrs": [1], "fields": {}}, Any, "unknown class"),
    ({"$enum": "Colour", "name": "PURPLE"}, Any, "expected a Colour name"),
])
def test_a_value_of_the_wrong_type_is_refused_with_where(raw, tp, says):
    with pytest.raises(C.CodecError, match=says):
        CODEC.decode(raw, tp, "result")


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4)
    | st.binary(max_size=4) | st.sampled_from(Colour)
    | st.builds(Point, st.floats(), st.binary(max_size=3), st.sampled_from(Colour),
                st.lists(st.integers(0, 2**64 - 1), max_size=3).map(tuple)),
    lambda inner: st.lists(inner, max_size=3) | st.lists(inner, max_size=3).map(tuple)
    | st.frozensets(st.integers(-3, 3), max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=2),
    max_leaves=8)
TYPED = [(int, st.integers(-2**70, 2**70) | st.booleans() | st.floats()), (float, st.floats() | st.integers()),
         (str, st.text(max_size=3)), (bool, st.booleans() | st.integers(0, 1)), (Colour, st.sampled_from(Colour)),
         (Point, st.builds(Point, st.floats(), st.binary(max_size=3), st.sampled_from(Colour))),
         (Point | None, st.none() | st.builds(Point, st.floats(), st.binary(max_size=2), st.sampled_from(Colour))),
         (list[int], st.lists(st.integers(-2**65, 2**65), max_size=4)), (type(None), st.none() | st.integers()),
         (Colour | None, st.none() | st.sampled_from(Colour) | st.integers() | st.text(max_size=2)),
         (list[float], st.lists(st.floats(), max_size=4)), (tuple[int, ...], st.lists(st.integers(), max_size=3).map(tuple)),
         (tuple[Colour, float], st.tuples(st.sampled_from(Colour), st.floats())),
         (list[Point], st.lists(st.builds(Point, st.floats(), st.just(b""), st.sampled_from(Colour)), max_size=2))]


def agrees(codec: C.Codec, value, tp) -> bool:
    """The compiled encoder and decoder give exactly what the general path gives (repr of
    the JSON text and of the value: 1, 1.0 and True, -0.0 and 0.0 and every NaN differ)."""
    def text(v):
        return json.dumps(v, allow_nan=False, sort_keys=True)

    def outcome(fn, *args, show=repr):
        try:
            return "ok", show(fn(*args))
        except C.CodecError as exc:  # both refuse, with the same words
            return "refused", str(exc)
    fast, slow = outcome(codec.encode, value, tp, show=text), outcome(codec._encode, value, tp, show=text)
    if fast != slow:
        return False
    if fast[0] != "ok":
        return True
    raw = json.loads(fast[1])
    return outcome(codec.decode, raw, tp) == outcome(codec._decode, raw, tp)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_compiled_codec_gives_what_the_general_path_gives(data):
    tp, values = data.draw(st.sampled_from(TYPED + [(Any, VALUES), (tuple, VALUES.map(lambda v: (v,)))]))
    assert agrees(CODEC, data.draw(values), tp)


def test_a_compiled_codec_that_drifts_from_the_general_path_is_caught():
    """The check above can fail: a float encoder that skips the non-finite test writes NaN
    where the general path writes "nan"; an enum decoder that accepts values, not names."""
    class Drifting(C.Codec):
        def _compile_encoder(self, tp):
            if tp is float:
                self._encoders[tp] = lambda v, where: v
                return self._encoders[tp]
            return super()._compile_encoder(tp)

        def _compile_decoder(self, tp):
            if tp is Colour:
                self._decoders[tp] = lambda v, where: Colour(v) if v in ("r", "b") else Colour[v]
                return self._decoders[tp]
            return super()._compile_decoder(tp)
    drifting = Drifting({"Point": Point, "Colour": Colour})
    assert agrees(drifting, 1.5, float) and agrees(drifting, Colour.RED, Colour)
    with pytest.raises(ValueError):  # NaN reaches the JSON layer raw
        agrees(drifting, math.nan, float)
    with pytest.raises(C.CodecError):
        CODEC.decode("r", Colour)
    assert drifting.decode("r", Colour) is Colour.RED  # accepted where the general path refuses


@pytest.mark.parametrize("line", [b'{"a":18446744073709551615,"b":-9223372036854775808}',
                                  b'[18446744073709551616,-9223372036854775809,1e400]', b'[NaN,-Infinity]',
                                  b'[9223372036854775807,18446744073709551615,-9223372036854775808]',
                                  b'{"a":"x-99999999999999999999","b":[1,-18446744073709551615]}',
                                  b'{"s":"1234567890123456789012345","f":0.30000000000000004,"z":-0.0}',
                                  b'{"$tuple":[1,{"$float":"nan"},{"$bytes":"AP8="}]}', b'nope'])
def test_json_lines_read_the_same_with_and_without_orjson(line):
    """orjson (when installed) reads an integer beyond 64 bits as a float and refuses the NaN
    token: such lines go to the standard library, so every line reads as json.loads reads it."""
    from meshspec import protocol as P
    try:
        expected = json.loads(line)
    except ValueError:
        with pytest.raises(ValueError):
            P.loads(line)
        return
    assert repr(P.loads(line)) == repr(expected) == repr(P._std_loads(line))
    if "NaN" not in line.decode() and "e400" not in line.decode():  # (the codec never writes those)
        assert repr(json.loads(P.dumps(expected))) == repr(expected)  # big ints written exactly too


def test_without_orjson_the_standard_library_writes_and_reads():
    code = ("import sys; sys.modules['orjson'] = None; import meshspec.protocol as P; "
            "assert P.dumps is P._std_dumps and P.loads is P._std_loads; print(P.dumps({'a': 2**70}).decode())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == '{"a":1180591620717411303424}', proc.stderr


def test_tape_random_draws_exactly_what_random_random_draws_from_the_same_words():
    source = random.Random(1234)
    state = source.getstate()
    words = [source.getrandbits(32) for _ in range(64)]
    source.setstate(state)
    tape = TapeRandom()
    tape.load(words)
    for n in (1, 2, 3, 7, 100, 2**20 + 1):
        assert tape.randrange(n) == source.randrange(n)
    assert tape.random() == source.random()
    assert tape.getrandbits(40) == source.getrandbits(40)
    assert tape.choice("abcdef") == source.choice("abcdef")
    # "rng_used" is right: Python's generator, after the same draws, sits exactly that many
    # 32-bit words further along its stream (so the harness can advance its own by it)
    assert source.getstate() == tape_state_after(state, tape.used)


def tape_state_after(state: tuple, words: int) -> tuple:
    rng = random.Random()
    rng.setstate(state)
    for _ in range(words):
        rng.getrandbits(32)
    return rng.getstate()


# -- the schema ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", registry.names())
def test_schema_lists_every_operation_with_argument_and_return_types(name):
    comp = registry.get_component(name)
    doc = describe_schema(schema_of(comp))
    main = doc["objects"][doc["main"]]
    assert "init" in main
    for op in comp.operations:
        assert op in main, f"{op} missing from the {name} schema"
    assert doc["errors"] and all(isinstance(e, str) for e in doc["errors"])
    assert all(isinstance(t, str) for spec in main.values() for t in spec["args"].values())


def test_meshspec_protocol_prints_the_schema_as_json():
    proc = meshspec("protocol", "shard_mapper")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["objects"]["ShardMapper"]["scale_up"] == {"kind": "method", "args": {"count": "int"},
                                                         "returns": "list[int]"}
    assert doc["objects"]["ShardMapper"]["select_shard"]["kind"] == "query"
    assert doc["types"]["ShardState"] == {"enum": ["PROVISIONING", "ACTIVE", "DRAINING", "STOPPED"]}
    assert "AtMaxShards" in doc["errors"] and doc["injected"] == ["clock"]
    assert "ShardMetricsCollector" in doc["objects"]  # handed out by metrics_collector()
    assert set(doc["capabilities"]) == {"batch", "chain"}


def test_a_factory_takes_the_constructor_options_and_harness_objects_are_references():
    """groups' `Group.spawn(kind, count, seed, scheduler, registry, **options)` passes its
    options on to `Group(...)`: the schema lists the constructor's keyword arguments (the
    clock and rng stay injected), and the registry the harness passes is a reference."""
    doc = describe_schema(schema_of(registry.get_component("groups")))
    spawn = doc["objects"]["Group"]["spawn"]
    assert spawn["kind"] == "static" and spawn["returns"] == "object Group"
    assert list(spawn["args"]) == ["kind", "count", "seed", "scheduler", "registry", "strategy",
                                   "requirements", "lb_config", "parent_origin"]
    assert doc["injected"] == ["clock", "rng"]
    assert {"deliver", "register", "take_fault", "__contains__"} <= set(doc["types"]["DaemonRegistry"]["ref"])


# -- faults of the external process -------------------------------------------------------------
@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(TRACE))
    return path


@pytest.mark.parametrize("mode,says", [
    ("crash", "impl process exited with code 3 during 'scale_up'"),
    ("hang", "impl process did not answer 'scale_up' within 0.5 s (--impl-timeout)"),
    ("garbage", "answered 'scale_up' with a line that is not JSON: 'this is not json'"),
    ("wrongtype", "answered 'scale_up' with a wrong type: scale_up result: expected an array"),
    ("twolines", "wrong number of lines"),
])
def test_a_misbehaving_impl_process_is_a_counterexample_at_its_step(trace_file, mode, says):
    proc = meshspec("replay", str(trace_file), "--impl-cmd", f"{FAULTY} {mode}", "--impl-timeout", "0.5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED: exception 'impl raised' at step 2" in proc.stdout
    assert says in proc.stdout


@pytest.mark.parametrize("mode,says", [
    ("batchcrash", "impl process exited with code 3 during 'scale_up'"),
    ("batchshort", "requests answered with"),
    ("batchwrongtype", "answered 'scale_up' with a wrong type: scale_up result: expected an array"),
])
def test_a_fault_in_a_batched_answer_is_a_counterexample_at_its_step(tmp_path, mode, says):
    """The second scale_up travels in one `batch` line with the queries that followed the
    first: a crash, a short batch or a wrong type there is a finding at that step too."""
    trace = dict(TRACE, steps=TRACE["steps"][:3] + [{"rule": "scale_up", "args": {"count": 1}}])
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace))
    proc = meshspec("replay", str(path), "--impl-cmd", f"{FAULTY} {mode}", "--impl-timeout", "5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED: exception 'impl raised' at step 3" in proc.stdout and says in proc.stdout, proc.stdout


def test_the_same_server_behaving_passes_the_same_trace(trace_file):
    proc = meshspec("replay", str(trace_file), "--impl-cmd", f"{FAULTY} none", "--impl-timeout", "0.5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no failure" in proc.stdout


@pytest.mark.parametrize("command,says", [
    ("/nonexistent/impl-server", "cannot start"),
    (f"{FAULTY} silent", "handshake failed: impl process exited with code 4 during 'handshake'"),
    (f"{FAULTY} badhello", "handshake failed: protocol version 99, this meshspec speaks 1"),
    (f"{SERVE} scheduler", "handshake failed: it serves component 'scheduler', not shard_mapper"),
    (f"{SERVE_CLI} scheduler", "handshake failed: it serves component 'scheduler', not shard_mapper"),
])
def test_a_command_that_cannot_start_or_handshake_is_exit_2_with_one_line(command, says):
    proc = meshspec("fuzz", "shard_mapper", "--impl-cmd", command, "--max-examples", "1")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_impl_timeout_must_be_positive_and_needs_impl_cmd():
    assert meshspec("fuzz", "shard_mapper", "--impl-cmd", SERVE, "--impl-timeout", "0").returncode == 2
    proc = meshspec("fuzz", "shard_mapper", "--impl-timeout", "3")
    assert proc.returncode == 2 and "--impl-timeout needs --impl-cmd" in proc.stderr


def test_fuzz_exports_a_trace_naming_the_command_and_replay_and_pytest_rerun_it(tmp_path):
    out = tmp_path / "traces"
    proc = meshspec("fuzz", "shard_mapper", "--profile", "ci", "--max-examples", "10",
                    "--impl-cmd", f"{FAULTY} crash", "--export", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "impl process exited with code 3 during 'scale_up'" in proc.stdout
    [trace] = out.glob("*.json")
    doc = json.loads(trace.read_text())
    assert doc["impl"] == f"cmd:{FAULTY} crash"
    assert doc["steps"][-1]["rule"] == "scale_up" and len(doc["steps"]) == 2  # shrunk
    again = meshspec("replay", str(trace))
    assert again.returncode == 1 and "reproduces the recorded failure" in again.stdout, again.stdout
    [exported] = out.glob("test_*.py")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                          str(exported)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "exited with code 3" in run.stdout, run.stdout[-2000:]


def test_without_abstract_the_header_says_so_and_results_are_still_compared(tmp_path):
    proc = meshspec("fuzz", "shard_mapper", "--profile", "dev", "--seed", "1", "--max-examples", "2",
                    "--impl-cmd", f"{FAULTY} noabstract", "--export", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "does not serve \"abstract\": abstract state is not compared" in proc.stdout
    bad = meshspec("fuzz", "shard_mapper", "--profile", "dev", "--seed", "1", "--max-examples", "5",
                   "--impl-cmd", f"{FAULTY} noabstract --impl mutants.shard_mapper:ActivateReturnsUnit",
                   "--export", str(tmp_path))
    # the served class's activate returns None where the model's API says bool
    assert bad.returncode == 1 and "FAILED" in bad.stdout and "activate" in bad.stdout, bad.stdout


# -- the round trip through the reference server ------------------------------------------------
def summary(result) -> tuple:
    fail = result.trace.failure if result.trace else None
    return (result.examples, result.steps, result.rule_hits, result.reached,
            (fail.kind, fail.name, fail.step) if fail else None, result.error)


@pytest.mark.parametrize("name", PROTOCOL_COMPONENTS)
def test_fuzz_through_meshspec_serve_gives_the_in_process_run(name, fuzz_seed):
    comp = registry.get_component(name)
    served = command_impl(f"{SERVE} {name}", comp)
    assert impl_path(served) == f"cmd:{SERVE} {name}"
    here = run_fuzz(comp, comp.impl_cls, profile="ci", seed=fuzz_seed, use_database=False,
                    max_examples=ROUND_TRIP_EXAMPLES)
    there = run_fuzz(comp, served, profile="ci", seed=fuzz_seed, use_database=False,
                     max_examples=ROUND_TRIP_EXAMPLES)
    assert summary(there) == summary(here)


def test_one_proxy_per_impl_object_and_its_answers_are_cached_until_a_drop():
    """The server names one object by one id: `metrics_collector(0)` asked twice is the same
    proxy (as in-process), the second answer comes from the cache; the next `init` drops
    the last example's objects and the server hands out fresh ids for them."""
    from meshspec.clock import FakeClock
    from model.shard_mapper import ScalingPolicy
    comp = registry.get_component("shard_mapper")
    cls = command_impl(f"{SERVE} shard_mapper", comp)
    process = cls._process
    mapper = cls(2, 16, ScalingPolicy.default_for_cpus(4), clock=FakeClock())
    first = mapper.metrics_collector(0)
    sent = process.seq
    assert mapper.metrics_collector(0) is first and process.seq == sent  # no request: cached
    mapper.scale_up(1)  # an update: the cache is cleared, the id stays
    assert mapper.metrics_collector(0) is first
    handle = first._handle
    del first
    other = cls(2, 16, ScalingPolicy.default_for_cpus(4), clock=FakeClock())  # a new example
    assert process.proxies == {} and not process.drops  # the drop travelled with init
    again = mapper.metrics_collector(0)
    assert again._handle != handle  # the server forgot the id and names the object anew
    assert other.metrics_collector(0)._handle not in (handle, again._handle)


#: A covering subset in CI: one curated mutant per component, plus one whose bug is in
#: a value class the served class brings along (shard_mapper's SCALING_POLICY: the server
#: builds the policy it is sent as its own type, so its validation runs). Each needs its own
#: server process and is caught within a few examples; all 114 take minutes per component
#: through the pipe, so every curated mutant runs in the nightly test.
CI_MUTANTS = [("shard_mapper", "activate_returns_unit"), ("scheduler", "nan_score_wins"),
              ("load_balancer", "least_load_nan_panics"),
              ("group_coordinator", "index_stale_after_remove"),
              ("daemon_host", "horizon_encoded_too_rarely"), ("capacity", "expiry_never_detected"),
              ("groups", "scale_to_colocates"), ("shard_mapper", "validate_without_finiteness")]
#: A mutant whose bug runs on the harness side: shard_mapper's `preset` rule asks the impl
#: class's SCALING_POLICY for a preset, and a command has no Python class to ask.
HARNESS_SIDE = {("shard_mapper", "high_throughput_overflow")}
ALL_MUTANTS = [pytest.param(name, m.name, marks=[pytest.mark.xfail(
                   strict=True, reason="the mutant swaps a harness-side class")]
                   if (name, m.name) in HARNESS_SIDE else [])
               for name in PROTOCOL_COMPONENTS for m in registry.get_component(name).mutants]


def caught_through_the_pipe(name: str, mutant_name: str, seed: int, examples: int | None):
    """The mutant served by `meshspec serve --impl` (callbacks as calls: re-entrant, as
    in-process), fuzzed through the protocol without shrinking, as `mutants --via-serve` does."""
    comp = registry.get_component(name)
    [result] = run_served_mutants(comp, profile="ci", seed=seed, only=[mutant_name], shrink=False,
                                  max_examples=examples)
    assert result.mutant.name == mutant_name
    return result.result


@pytest.mark.parametrize("name,mutant", CI_MUTANTS, ids=[f"{n}-{m}" for n, m in CI_MUTANTS])
def test_a_curated_mutant_served_by_meshspec_serve_is_caught_through_the_protocol(name, mutant, fuzz_seed):
    result = caught_through_the_pipe(name, mutant, fuzz_seed, MUTANT_EXAMPLES)
    assert result.trace is not None, f"{name}.{mutant} survived through the protocol: {result.error}"


@pytest.mark.nightly
@pytest.mark.parametrize("name,mutant", ALL_MUTANTS)
def test_every_curated_mutant_is_caught_through_the_protocol(name, mutant, fuzz_seed):
    result = caught_through_the_pipe(name, mutant, fuzz_seed, None)
    assert result.trace is not None, f"{name}.{mutant} survived through the protocol: {result.error}"


def test_mutants_via_serve_catches_a_served_mutant_and_closes_its_server(tmp_path):
    before = dict(_PROCESSES)
    proc = meshspec("mutants", "shard_mapper", "--via-serve", "--only", "modulo_bias", "--no-shrink",
                    "--max-examples", "20", "--junit", str(tmp_path / "j.xml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "modulo_bias: select_shard observation" in proc.stdout and "1/1 mutants caught" in proc.stdout
    comp = registry.get_component("shard_mapper")
    run_served_mutants(comp, profile="ci", seed=1, only=["modulo_bias"], shrink=False, max_examples=20)
    assert _PROCESSES == before  # the mutant's server process is gone after its run


@pytest.mark.parametrize("args,says", [
    (("mutants", "shard_mapper", "--impl-cmd", SERVE), "use `meshspec mutants C --via-serve`"),
    (("mutants", "shard_mapper", "--impl-timeout", "2"), "--impl-timeout needs --via-serve"),
    (("explore", "shard_mapper", "--impl-cmd", SERVE), "explore takes no --impl-cmd"),
    (("protocol", "nosuch"), "unknown component 'nosuch'"),
    (("serve", "shard_mapper", "--impl", "nosuch:X"), "cannot import 'nosuch'"),
    (("fuzz", "--impl-cmd", SERVE), "--impl-cmd needs exactly one COMPONENT"),
    (("fuzz", "shard_mapper", "--impl", "impl.shard_mapper:ShardMapper", "--impl-cmd", SERVE),
     "give --impl or --impl-cmd, not both"),
])
def test_bad_protocol_input_is_exit_2_with_one_line(args, says):
    proc = meshspec(*args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_callbacks_as_calls_let_a_reentrant_callback_see_the_state_mid_operation(fuzz_seed):
    """Events are replayed after the answer; `serve --callbacks calls` calls back at once, so a
    callback fired before the mapper's state is consistent is caught as in-process."""
    comp = registry.get_component("shard_mapper")
    served = command_impl(f"{SERVE} shard_mapper --callbacks calls --impl "
                          "mutants.shard_mapper:CreatedCallbackFiresEarly", comp)
    result = run_fuzz(comp, served, profile="ci", seed=fuzz_seed, use_database=False, shrink=False,
                      max_examples=MUTANT_EXAMPLES)
    assert result.trace is not None and result.trace.failure.name == "callbacks_once_per_transition"


def test_protocol_bench_runs_both_ways_and_records_for_the_report(tmp_path):
    """`meshspec protocol C --bench`: the same run in-process and through `meshspec serve`
    (the figures are measured, not asserted: only that both runs agree and are recorded)."""
    from meshspec.protocol_cli import load_pipe, pipe_bench, record_pipe, report_section
    comp = registry.get_component("shard_mapper")
    record = pipe_bench(comp, "ci", 1, max_examples=3)
    assert record["same_run"] and record["steps"] > 0 and record["round_trips_per_step"] > 0
    path = tmp_path / "pipe-results.json"
    record_pipe("shard_mapper", record, path)
    record_pipe("scheduler", dict(record, steps=7), path)
    assert set(load_pipe(path)) == {"shard_mapper", "scheduler"}  # merged per component
    section = report_section(path)
    assert "| `shard_mapper`" in section and "pipe steps/s" in section
    assert "nothing recorded" in report_section(tmp_path / "none.json")


def test_bench_flags_need_bench():
    proc = meshspec("protocol", "shard_mapper", "--record")
    assert proc.returncode == 2 and "go with --bench" in proc.stderr


def test_the_server_profiles_itself_when_asked(tmp_path):
    import os
    import pstats
    out = tmp_path / "serve.prof"
    proc = subprocess.run([sys.executable, "-m", "meshspec", "serve", "shard_mapper"], cwd=ROOT,
                          input='{"op":"handshake","protocol":1,"seq":1}\n', capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MESHSPEC_SERVE_PROFILE": str(out)})
    assert proc.returncode == 0 and '"protocol":1' in proc.stdout
    assert any("answer" in fn for _, _, fn in pstats.Stats(str(out)).stats)


# -- the light entry point and the server's reading -----------------------------------------------
def test_the_light_server_table_names_the_registered_classes():
    from meshspec.serve import SERVED, served_component
    assert list(SERVED) == registry.names()
    for name in SERVED:
        comp, light = registry.get_component(name), served_component(name)
        assert (light.model_cls, light.impl_cls, light.errors) == (comp.model_cls, comp.impl_cls, comp.errors)


def test_the_light_server_imports_neither_hypothesis_nor_the_cli():
    code = ("import sys, io; sys.stdin = io.TextIOWrapper(io.BytesIO(b'')); import meshspec.serve as S; "
            "S.served_component('shard_mapper'); from meshspec.protocol import schema_of; "
            "schema_of(S.served_component('groups')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('hypothesis', 'properties') "
            "or m == 'meshspec.cli'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.mark.parametrize("args,says", [(["nosuch"], "unknown component 'nosuch'"),
                                       (["shard_mapper", "--impl", "nosuch:X"], "cannot import 'nosuch'")])
def test_the_light_server_refuses_bad_input_with_one_line(args, says):
    proc = subprocess.run([sys.executable, "-m", "meshspec.serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_the_server_reads_lines_however_the_pipe_splits_them():
    """Requests that arrive several to a read, or one split over reads, are each answered once
    and in order (the server reads with os.read and splits lines itself)."""
    import io
    import os
    import threading

    from meshspec.serve import Server
    comp = registry.get_component("shard_mapper")
    r, w = os.pipe()
    out = io.BytesIO()
    server = Server(comp, comp.impl_cls, os.fdopen(r, "rb", buffering=0), out)
    policy = {"fill_ratio_threshold": 0.7, "push_latency_threshold_ns": 5, "flush_latency_threshold_us": 1000,
              "min_shards": 1, "max_shards": 8, "cooldown_ns": 1000, "scale_down_delay_ns": 10, "underutilized_threshold": 0.1,
              "metrics_window_ns": 100, "auto_scale": False}
    lines = [{"op": "handshake", "protocol": 1, "seq": 1},
             {"op": "init", "args": {"initial_shards": 2, "ring_buffer_capacity": 4, "policy": policy}, "now_ns": 0, "seq": 2},
             {"op": "active_shard_count", "obj": 1, "args": {}, "now_ns": 0, "seq": 3},
             {"op": "select_shard", "obj": 1, "args": {"event_hash": 2**64 - 1}, "now_ns": 0, "seq": 4},
             {"op": "scale_up", "obj": 1, "args": {"count": 1}, "now_ns": 5000, "seq": 5}]
    data = b"".join(json.dumps(m).encode() + b"\n" for m in lines) + b"\n"
    thread = threading.Thread(target=server.run)
    thread.start()
    for cut in (3, 70, 71, 200, len(data)):  # pieces of every size, one of them mid-line
        os.write(w, data[:cut])
        data = data[cut:]
    os.close(w)
    thread.join(timeout=30)
    answers = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [a["seq"] for a in answers] == [1, 2, 3, 4, 5]
    assert answers[2]["ok"] == 2 and answers[3]["ok"] in (0, 1) and answers[4]["ok"] == [2]


def test_an_answer_decoded_before_is_reused_only_for_the_same_json_text():
    """An answer asked early whose JSON is byte for byte one decoded before is handed out
    from the table of decoded values; 1, 1.0 and true (equal in Python) or 0.0 and -0.0 are
    different texts and are decoded anew, so a type that changes is still seen."""
    from meshspec.protocol import _LAZY, ImplProcess
    process = ImplProcess("unused", registry.get_component("shard_mapper"))
    assert process._check_hello({"ok": {"protocol": 1, "component": "shard_mapper",
                                        "operations": {"ShardMapper": ["init", "abstract"]}}}) is None
    op = process.schema.op("ShardMapper", "abstract")
    spec = (op, process.codec._decoder_of(op.returns), "abstract result")

    def first_use(ok, now):
        key = (1, "abstract", (), now)
        hit = process.hits[key] = ({}, _LAZY, {"ok": ok, "seq": now}, spec)
        return process.decode_hit(key, hit)
    a = first_use({"$tuple": [1, {"$tuple": [0.0, "x"]}]}, 1)
    assert first_use({"$tuple": [1, {"$tuple": [0.0, "x"]}]}, 2) is a  # the same text: reused
    for n, (first, inner) in enumerate([(1.0, 0.0), (True, 0.0), (1, -0.0)]):
        again = first_use({"$tuple": [first, {"$tuple": [inner, "x"]}]}, 3 + n)
        assert again == a and again is not a and repr(again) == repr((first, (inner, "x")))


def test_a_question_never_asked_of_an_object_is_predicted_from_another_of_its_class():
    """A collector just handed out has no history: what followed the same question on
    another collector is asked early for it (read as this one); an object of another
    class gets no such prediction."""
    from meshspec.protocol import ImplProcess, _positions
    from model.shard_mapper import ShardMetricsCollector
    process = ImplProcess("unused", registry.get_component("shard_mapper"))
    assert process._check_hello({"ok": {"protocol": 1, "component": "shard_mapper", "operations": {
        "ShardMapper": ["init"], "ShardMetricsCollector": ["current_len", "pushes_since_drain_start"]}}}) is None
    process.main, process.epoch = 1, (1, "record_push", 5)
    old, new = process.proxy_for(7, ShardMetricsCollector), process.proxy_for(9, ShardMetricsCollector)
    run = [(7, "get", {"name": "capacity"}), (7, "current_len", {}), ("main", "shard_state", {"shard_id": 3}),
           (7, "pushes_since_drain_start", {})]
    process.history = [(1, run, _positions(run))]
    assert process._successors(7, "get", {"name": "capacity"}) == [(7, "current_len", {}), (1, "shard_state", {"shard_id": 3}),
                                                                    (7, "pushes_since_drain_start", {})]
    assert process._successors(9, "get", {"name": "capacity"}) == [(9, "current_len", {}), (1, "shard_state", {"shard_id": 3}),
                                                                    (9, "pushes_since_drain_start", {})]
    assert process._successors(1, "get", {"name": "capacity"}) == []  # the mapper is no collector
    assert process._successors(9, "get", {"name": "other"}) == []
    assert old is not new


def test_a_server_without_the_chain_capability_gives_the_same_run_in_more_round_trips(fuzz_seed):
    """`"chain": true` in the handshake lets a batch name the object an earlier request
    answers; a server that does not announce it (faulty.py nochain exits if it gets one)
    is never sent one and gives the same run, in more round trips."""
    comp = registry.get_component("shard_mapper")
    runs, trips = [], []
    for command in (f"{FAULTY} none", f"{FAULTY} nochain"):
        served = command_impl(command, comp)
        runs.append(summary(run_fuzz(comp, served, profile="ci", seed=fuzz_seed, use_database=False,
                                     max_examples=15)))
        trips.append(served._process.round_trips)
        assert served._process.chain == (command.endswith("none"))
    assert runs[0] == runs[1] and runs[0][4] is None
    assert trips[0] < trips[1], trips


def test_a_chained_request_names_the_object_an_earlier_request_of_its_batch_answered():
    import io

    from meshspec.serve import Server
    comp = registry.get_component("shard_mapper")
    server = Server(comp, comp.impl_cls, io.BytesIO(b""), io.BytesIO())
    policy = {"fill_ratio_threshold": 0.7, "push_latency_threshold_ns": 5, "flush_latency_threshold_us": 1000,
              "min_shards": 1, "max_shards": 8, "cooldown_ns": 1000, "scale_down_delay_ns": 10,
              "underutilized_threshold": 0.1, "metrics_window_ns": 100, "auto_scale": False}
    assert server.answer(json.dumps({"op": "handshake", "protocol": 1, "seq": 1}).encode())["ok"]["chain"] is True
    init = {"op": "init", "args": {"initial_shards": 2, "ring_buffer_capacity": 4, "policy": policy}, "seq": 2}
    assert server.answer(json.dumps(init).encode())["ok"] == {"$obj": 1}
    requests = [{"op": "metrics_collector", "obj": 1, "args": {"shard_id": 0}, "seq": 3},
                {"op": "current_len", "obj": {"$result": 0}, "args": {}, "seq": 4},
                {"op": "metrics_collector", "obj": 1, "args": {"shard_id": 99}, "seq": 5},
                {"op": "current_len", "obj": {"$result": 2}, "args": {}, "seq": 6},
                {"op": "current_len", "obj": {"$result": 9}, "args": {}, "seq": 7}]
    answers = server.answer(json.dumps({"op": "batch", "requests": requests, "seq": 8}).encode())["ok"]
    assert [a["seq"] for a in answers] == [3, 4, 5, 6, 7]
    assert answers[0]["ok"] == {"$obj": 2} and answers[1]["ok"] == 0 and answers[2]["ok"] is None
    assert answers[3]["err"]["msg"] == "request 2 of the batch answered no object"
    assert answers[4]["err"]["type"] == "ProtocolError"
