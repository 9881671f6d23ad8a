"""The pytest-testinfra bridge (test_driver/machine/testinfra.py): a machine is usable as a
testinfra Host whose commands all run through ``execute``, checked against fake machines:
one answering from a table of commands, one running a real local bash as ``execute`` would
run the command in the guest."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fake_machine import FakeMachine

from test_driver import typecheck
from test_driver.machine import testinfra as bridge

ROOT = Path(__file__).resolve().parents[2]
WRAPPER_HEAD = "( set +e +u +o pipefail\n"
MARKER = re.compile(r"printf '%s%s' (__td_stderr_[0-9a-f]+__)")

GUEST = {
    # what testinfra asks to tell the system and its init
    "uname -s": (0, "Linux\n", ""),
    "uname -m": (0, "x86_64\n", ""),
    "cat /etc/os-release": (0, 'ID=nixos\nVERSION_ID="25.11"\n', ""),
    "test -d /run/systemd/system/": (0, "", ""),
    # the facts nixpkgs' testinfra.nix reads
    "id root": (0, "uid=0(root) gid=0(root) groups=0(root)\n", ""),
    "test -e /etc/passwd": (0, "", ""),
    "test -f /etc/passwd": (0, "", ""),
    "echo hello": (0, "hello\n", ""),
    'systemctl list-unit-files | grep -q "^multi-user.target"': (0, "", ""),
    "systemctl show multi-user.target": (0, "Id=multi-user.target\nBefore=shutdown.target\n"
                                            "Description=Multi-User System\nExecMainStatus=0\n", ""),
    "echo partial; echo complaint >&2; exit 3": (3, "partial\n", "complaint\n"),
}


class Fake(FakeMachine):
    """A machine whose ``_execute`` is ``answer``; records each command and its timeout."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, name="fake")


class Scripted(Fake):
    """Answers the command inside the bridge's wrapper from ``GUEST``, with stdout, the
    wrapper's marker and stderr, as the wrapper prints them; 127 for anything else."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.inner: list[str] = []

    def answer(self, command: str) -> tuple[int, str]:
        start = command.index(WRAPPER_HEAD) + len(WRAPPER_HEAD)
        inner = command[start:command.rindex("\n) 2>&1 1>&9")]
        self.inner.append(inner)
        status, out, err = GUEST.get(inner, (127, "", f"bash: {inner.split()[0]}: command not found\n"))
        marker = MARKER.search(command)
        assert marker is not None, command
        return status, out + marker[1] + err


class LocalBash(Fake):
    """Runs each command in a local bash as the guest's backdoor does (``set -euo
    pipefail``, stderr not in the output), so, for the bridge, as ``execute`` runs it."""

    def answer(self, command: str) -> tuple[int, str]:
        done = subprocess.run(["bash", "-c", "set -euo pipefail; " + command], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=60)
        return done.returncode, done.stdout


def test_nixpkgs_steps_on_a_machine_answer_through_execute(tmp_path: Path):
    pytest.importorskip("testinfra")
    machine = Scripted(tmp_path)
    assert machine.user("root").exists
    passwd = machine.file("/etc/passwd")
    assert passwd.exists and passwd.is_file
    cmd = machine.run("echo hello")
    assert not isinstance(cmd, tuple)
    assert (cmd.rc, cmd.stdout.strip(), cmd.stderr, cmd.succeeded) == (0, "hello", "", True)
    service = machine.service("multi-user.target")
    assert service.exists
    assert service.systemd_properties["Before"] == "shutdown.target"
    # every command went through execute, with its default time limit
    assert machine.inner == [inner for inner in machine.inner if inner in GUEST]
    assert len(machine.asked) == len(machine.inner) and {t for _, t in machine.asked} == {dt.timedelta(minutes=15)}


def test_run_is_testinfra_run_with_both_streams(tmp_path: Path):
    pytest.importorskip("testinfra")
    machine = Scripted(tmp_path)
    broken = machine.run("echo partial; echo complaint >&2; exit 3")  # a failure does not raise
    assert (broken.rc, broken.stdout, broken.stderr, broken.failed) == (3, "partial\n", "complaint\n", True)
    missing = machine.run("ls -- %s", "/;echo inject")
    assert machine.inner[-1] == "ls -- '/;echo inject'"  # testinfra's quoting of the arguments
    assert missing.rc == 127 and missing.stderr == "bash: ls: command not found\n"
    machine.run("echo hello", timeout=dt.timedelta(seconds=5))
    assert machine.asked[-1][1] == dt.timedelta(seconds=5)
    with pytest.raises(AssertionError, match="Unexpected exit code 3"):
        getattr(machine, "check_output")("echo partial; echo complaint >&2; exit 3")  # the Host's


def test_one_host_per_machine_and_its_other_names(tmp_path: Path):
    testinfra = pytest.importorskip("testinfra")
    machine = Scripted(tmp_path)
    assert isinstance(machine.testinfra, testinfra.host.Host)
    assert machine.testinfra is machine.testinfra
    # the Host's other names, on the machine at run time (for a type checker: machine.testinfra.NAME)
    backend = getattr(machine, "backend")
    assert backend.machine is machine and backend.get_pytest_id() == "nixos-test-driver://fake"
    assert getattr(machine, "check_output")("echo hello") == "hello"
    assert getattr(machine, "run_test")("echo hello").rc == 0
    assert Scripted(tmp_path).testinfra is not machine.testinfra
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        getattr(machine, "no_such_thing")


def test_the_wrapper_in_a_real_shell(tmp_path: Path):
    pytest.importorskip("testinfra")
    machine = LocalBash(tmp_path)
    cases = {
        "echo out; echo err >&2; exit 4": (4, "out\n", "err\n"),
        # as testinfra's sh -c: not under execute's set -euo pipefail
        "false; echo reached": (0, "reached\n", ""),
        "echo \"[$no_such_variable]\"": (0, "[]\n", ""),
        "true | false": (1, "", ""),
        "false | true": (0, "", ""),
        "yes | head -n 1": (0, "y\n", ""),  # yes dies of SIGPIPE; under pipefail: 141
        "printf 'no newline'; printf 'a\\n\\nb\\n' >&2": (0, "no newline", "a\n\nb\n"),
        "cat <<EOF\nhere $((6 * 7))\nEOF": (0, "here 42\n", ""),
        "# only a comment": (0, "", ""),
        "": (0, "", ""),
        "(sleep 0.5; echo late) & echo early; wait": (0, "early\nlate\n", ""),  # (no race on a busy host)
    }
    for command, want in cases.items():
        got = machine.run(command)
        assert (got.rc, got.stdout, got.stderr) == want, command
    (tmp_path / "here").write_text("x\n")
    assert machine.file(str(tmp_path / "here")).is_file
    assert not machine.file(str(tmp_path / "there")).exists
    assert machine.user("root").exists
    assert bridge.split_streams("no marker: killed at its time limit", "__m__") == (
        "no marker: killed at its time limit", "")


def test_without_testinfra_the_package_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in [n for n in sys.modules if n == "testinfra" or n.startswith("testinfra.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "testinfra", None)  # import testinfra: ModuleNotFoundError
    machine = Scripted(tmp_path)
    assert not bridge.available()
    for call in (lambda: machine.user("root"), lambda: machine.run("true"), lambda: machine.testinfra):
        with pytest.raises(bridge.TestinfraMissing, match="pytest-testinfra") as caught:
            call()
        assert isinstance(caught.value, ModuleNotFoundError) and caught.value.name == "testinfra"
    with pytest.raises(AttributeError, match="'package' is testinfra's.*pytest-testinfra"):
        getattr(machine, "package")
    assert not hasattr(machine, "socket")
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        getattr(machine, "no_such_thing")
    assert machine.asked == []


NIXPKGS_SHAPED = """\
start_all()
machine.wait_for_unit("multi-user.target")
assert machine.user('root').exists
passwd = machine.file("/etc/passwd")
assert passwd.exists and passwd.is_file
cmd = machine.run("echo hello")
assert cmd.rc == 0 and cmd.stdout.strip() == 'hello'
service = machine.service("multi-user.target")
assert service.exists and service.systemd_properties['Before'] == "shutdown.target"
"""


def test_a_testinfra_script_type_checks(tmp_path: Path):
    pytest.importorskip("mypy")
    status, messages = typecheck.check(NIXPKGS_SHAPED, ["machine"], cache_dir=tmp_path / "cache")
    assert status == 0, messages
    status, messages = typecheck.check("machine.run(1)\nmachine.file()\n", ["machine"],
                                       cache_dir=tmp_path / "cache")
    assert 'testScript:1: error: Argument 1 to "run" of "BaseMachine" has incompatible type "int"' in messages
    assert 'testScript:2: error: Missing positional argument "path"' in messages


def test_the_new_methods_are_in_the_machine_reference():
    done = subprocess.run([sys.executable, str(ROOT / "extract-docstrings.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("run", "user", "file", "service"):
        assert f"## `{name}(" in done.stdout
