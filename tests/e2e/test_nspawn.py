"""systemd-nspawn containers as test nodes, next to a tiny VM (tests/guests/nspawn.py)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nspawn
import pytest
import tiny

from e2e_support import kill_later, processes_mentioning, wait_no_processes
from conftest_shared import Leftovers
from test_driver.driver import Driver
from test_driver.errors import MachineCrashed, MachineError, RequestedAssertionFailed, WaitTimeout
from test_driver.machine import NspawnMachine

pytestmark = [pytest.mark.serial,  # (the kernel-wide leftover check)
              pytest.mark.skipif(os.geteuid() != 0, reason="systemd-nspawn needs root")]


def leftovers(private_tmp: Path) -> list[str]:
    """Processes, mounts and veth links the run left behind."""
    left = wait_no_processes(str(private_tmp))
    left += [line for line in Path("/proc/mounts").read_text().splitlines() if str(private_tmp) in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left += [line for line in links.splitlines() if " ve-" in line or " vb-" in line]
    return left


@pytest.fixture
def mixed(guest, debian_guest, tmp_path, private_tmp, log):
    """A Driver with a tiny VM "vm1" and a container "box"; checks that nothing is left after it."""
    vm = tiny.write_start_script(tmp_path, "vm1", guest)
    box = nspawn.write_start_script(tmp_path, "box", debian_guest)
    out = tmp_path / "out"
    out.mkdir()
    with Driver([str(vm)], [], "", out, log, container_start_scripts=[str(box)]) as driver:
        yield driver
    assert leftovers(private_tmp) == []


def test_container_and_vm_share_the_machine_api(mixed, tmp_path):
    driver = mixed
    box = driver.machines_nspawn[0]
    assert isinstance(box, NspawnMachine) and driver.machines_qemu[0].name == "vm1"
    assert {"box", "vm1", "machines_nspawn", "machines_qemu", "NspawnMachine"} <= set(driver.test_symbols())
    driver.start_all()
    box.wait_for_unit("multi-user.target", timeout=120)
    box.wait_for_open_port(8000, timeout=60)  # the echo service, inside the container's network
    assert box.succeed("echo hi | nc -N localhost 8000") == "hi\n"
    assert box.succeed("systemctl is-system-running --wait || true").strip() in ("running", "degraded")
    assert box.execute("exit 3") == (3, "")
    assert box.execute("false | true")[0] == 1  # pipefail, as in the VMs
    with pytest.raises(subprocess.TimeoutExpired):  # as upstream's containers (a VM's command: 124)
        box.execute("sleep 30", timeout=1)
    host_file = tmp_path / "from-host.txt"
    host_file.write_text("payload")
    box.copy_from_host(str(host_file), "/root/payload.txt")
    assert box.succeed("cat /root/payload.txt") == "payload"
    box.copy_from_machine("/etc/debian_version")
    assert (driver.out_dir / "debian_version").read_text().startswith("12")
    box.start_job("failing.service")
    start = time.monotonic()
    with pytest.raises(RequestedAssertionFailed, match='unit "failing.service" reached state "failed"'):
        box.wait_for_unit("failing.service", timeout=60)
    assert time.monotonic() - start < 10
    with pytest.raises(MachineError, match="screenshot\\(\\) needs a QEMU machine: 'box' is a container"):
        box.screenshot("nope")
    assert driver.machines_qemu[0].succeed("echo vm") == "vm\n"
    box.shutdown()
    assert not box.is_up()
    assert box.succeed("echo again") == "again\n"  # the next command starts it again


def test_killing_the_containers_init_is_detected_within_a_second(mixed):
    box = mixed.machines_nspawn[0]
    box.succeed("true")
    assert box.init_pid is not None
    killed: dict[str, float] = {}
    kill_later(box.init_pid, 1.0, killed)
    with pytest.raises(MachineCrashed) as info:
        box.succeed("sleep 60")
    assert time.monotonic() - killed["killed"] < 1.0
    assert "'box'" in str(info.value) and "init died" in str(info.value)
    assert info.value.post_mortem.running_command == "sleep 60"
    assert info.value.post_mortem.serial_tail  # its last console lines
    assert (mixed.out_dir / "box-post-mortem.txt").read_text().startswith("post-mortem of machine 'box'")
    assert [p.machine for p in mixed.crashes] == ["box"]
    with pytest.raises(MachineCrashed):
        box.succeed("true")


def test_a_post_mortem_that_cannot_be_written_still_tells_the_crash(box, log):
    """The file could not be written (here: a directory stands in its way): the crash is
    told all the same, and said so, instead of leaving the machine looking alive."""
    (box.out_dir / "box-post-mortem.txt").mkdir()
    box.succeed("true")
    killed: dict[str, float] = {}
    kill_later(box.init_pid, 1.0, killed)
    with pytest.raises(MachineCrashed, match="init died"):
        box.succeed("sleep 60")
    assert "cannot write the post-mortem" in log.text
    assert not box.is_up()
    with pytest.raises(MachineCrashed):
        box.succeed("true")


def test_containers_from_the_command_line_and_config(guest, debian_guest, tmp_path, private_tmp):
    vm = tiny.write_start_script(tmp_path, "zzz", guest)
    box = nspawn.write_start_script(tmp_path, "yyy", debian_guest)
    test = tmp_path / "t.py"
    test.write_text("start_all()\nassert [m.name for m in machines_nspawn] == ['box']\n"
                    "box.wait_for_unit('multi-user.target', timeout=120)\nvm1.succeed('true')\n"
                    "assert isinstance(box, NspawnMachine)\n")
    flags = subprocess.run(
        [sys.executable, "-m", "test_driver.cli_main", "--vm-names", "vm1", "--vm-start-scripts", str(vm),
         "--container-names", "box", "--container-start-scripts", str(box), "-o", str(tmp_path), str(test)],
        capture_output=True, text=True, timeout=300)
    assert flags.returncode == 0, flags.stderr[-3000:]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "vms": {"vm1": {"name": "vm1", "start_script": str(vm)}},
        "containers": {"box": {"name": "box", "start_script": str(box)}},
        "vlans": [], "global_timeout": 600, "enable_ssh_backdoor": False, "test_script": str(test)}))
    from_config = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--config", str(config),
                                  "-o", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert from_config.returncode == 0, from_config.stderr[-3000:]
    assert leftovers(private_tmp) == []


def test_sigterm_to_the_driver_stops_containers_too(guest, debian_guest, tmp_path, private_tmp):
    box = nspawn.write_start_script(tmp_path, "box", debian_guest)
    test = tmp_path / "t.py"
    test.write_text("box.succeed('true')\nbox.succeed('sleep 600')\n")
    trace = Leftovers(private_tmp)  # as the kernel counts: every PID namespace, stopped and zombie processes
    proc = subprocess.Popen([sys.executable, "-m", "test_driver.cli_main", "--container-start-scripts", str(box),
                             "-o", str(tmp_path), str(test)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=trace.enter)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "must succeed: sleep 600" in line:
                break
        assert processes_mentioning(str(private_tmp))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
    assert trace.wait(10) == []
    assert leftovers(private_tmp) == []


# The test script makes the signal come at the worst moment: just after the command's nsenter
# started, before the driver noted it (when its stderr reader starts).
SIGTERM_AS_THE_COMMAND_STARTS = """\
import os, signal, threading
start = threading.Thread.start
def start_and_signal(thread):
    if thread.name.startswith("stderr-"):
        os.kill(os.getpid(), signal.SIGTERM)
    start(thread)
threading.Thread.start = start_and_signal
box.succeed("sleep 600")
"""


def test_sigterm_as_a_command_starts_leaves_none_of_it(debian_guest, tmp_path, private_tmp):
    """CI once found a stopped nsenter (and its zombie) after a SIGTERM: the signal had come
    between the command's start and the moment the driver noted it, so nobody killed it; the
    container's halt then stopped nsenter for good.  A signal is held back over that stretch."""
    box = nspawn.write_start_script(tmp_path, "box", debian_guest)
    test = tmp_path / "t.py"
    test.write_text("box.succeed('true')\n" + SIGTERM_AS_THE_COMMAND_STARTS)
    trace = Leftovers(private_tmp)
    proc = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--container-start-scripts", str(box),
                           "-o", str(tmp_path), str(test)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, preexec_fn=trace.enter, timeout=120)
    assert proc.returncode == -signal.SIGTERM, proc.stdout
    assert trace.wait(10) == []
    assert leftovers(private_tmp) == []


@pytest.mark.parametrize("notify_socket", [True, False], ids=["notify", "no-notify-socket"])
def test_the_first_command_waits_for_the_containers_manager(debian_guest, tmp_path, private_tmp, log,
                                                           notify_socket):
    """As nixpkgs' containers test does: start(), then at once a command that needs systemd's bus.
    With the notify socket the first command waits for READY=1 (here: systemd has started up);
    from a start script that keeps the socket from systemd-nspawn, until systemd answers."""
    box = nspawn.write_start_script(tmp_path, "box", debian_guest, notify_socket=notify_socket)
    out = tmp_path / "out"
    out.mkdir()
    for run in range(5):
        with Driver([], [], "", out, log, container_start_scripts=[str(box)]) as driver:
            container = driver.machines[0]
            container.start()
            container.succeed("systemctl start echo-tcp.service")
            assert container.succeed("pwd") == "/\n"
    assert "error retrieving current directory" not in log.text
    assert ("nothing came on NOTIFY_SOCKET" in log.text) == (not notify_socket)
    assert leftovers(private_tmp) == []


@pytest.fixture
def box(debian_guest, tmp_path, private_tmp, log):
    """A Driver with one container "box" (not started: its first command starts it); nothing may be
    left after it."""
    script = nspawn.write_start_script(tmp_path, "box", debian_guest)
    out = tmp_path / "out"
    out.mkdir()
    with Driver([], [], "", out, log, container_start_scripts=[str(script)]) as driver:
        yield driver.machines[0]
    assert leftovers(private_tmp) == []


def test_commands_run_as_upstreams(box):
    """/bin/sh -c 'set -eo pipefail; export USER=root HOME=/root DISPLAY=:0.0; source /etc/profile;
    set -u; CMD' with an empty environment, in the container's /; check_return and check_output
    change nothing; the output is read in text mode (universal newlines)."""
    box.succeed("echo 'export FROM_PROFILE=yes' > /etc/profile.d/td-test.sh")
    env = dict(line.split("=", 1) for line in box.succeed("env").splitlines() if "=" in line)
    assert env["FROM_PROFILE"] == "yes"  # /etc/profile (and what it sources) is read by every command
    assert (env["USER"], env["HOME"], env["DISPLAY"]) == ("root", "/root", ":0.0")
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's profile
    assert not {"TERM", "NOTIFY_SOCKET", "RUN_NSPAWN_ROOT_DIR", "PYTEST_CURRENT_TEST"} & set(env)
    assert box.succeed('echo "$0"') == "/bin/sh\n"
    assert box.succeed("pwd") == "/\n"
    assert box.execute("false; echo not reached") == (1, "")  # set -e
    assert box.execute("false | true")[0] == 1  # pipefail
    assert box.execute("echo $UNSET_VARIABLE")[0] != 0  # set -u, after /etc/profile
    assert box.execute("echo hi; exit 3", check_return=False) == (3, "hi\n")
    assert box.execute("echo hi; exit 4", check_output=False) == (4, "hi\n")
    assert box.execute(r"printf 'a\r\nb\rc'") == (0, "a\nb\nc")


def test_a_commands_timeout_raises_timeout_expired(box):
    """As upstream's subprocess.run: TimeoutExpired (timeout, output so far); the command's
    processes are gone afterwards."""
    tic = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as info:
        box.execute("echo started; sleep 61; echo late", timeout=2)
    assert 2 <= time.monotonic() - tic < 6
    assert info.value.timeout == 2.0 and info.value.output == b"started\n"
    with pytest.raises(subprocess.TimeoutExpired):
        box.succeed("sleep 62", timeout=datetime.timedelta(seconds=1))
    assert box.execute("pgrep -f 'sleep 6[12]'") == (1, "")  # nothing left behind
    script = ("import subprocess\n"
              "try:\n    box.execute('sleep 63', timeout=1)\n"
              "except subprocess.TimeoutExpired as e:\n    caught = e.timeout\n")
    symbols: dict = {"box": box}
    exec(script, symbols)
    assert symbols["caught"] == 1.0


def test_stdin_is_the_drivers(box):
    """As upstream (subprocess.run without stdin=): a command reads what the driver's stdin has."""
    reader, writer = os.pipe()
    os.write(writer, b"from-the-driver")
    os.close(writer)
    saved = os.dup(0)
    os.dup2(reader, 0)
    os.close(reader)
    try:
        assert box.execute("head -c 15") == (0, "from-the-driver")
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_stderr_is_logged_and_not_awaited(box, log):
    """Upstream passes the driver's stderr: a command returns when its stdout is closed and it
    has exited, whoever still holds its stderr."""
    tic = time.monotonic()
    assert box.execute("sleep 64 >&2 &", timeout=20) == (0, "")  # upstream's way to detach
    assert time.monotonic() - tic < 5
    box.succeed("pkill -f 'sleep 6[4]'")
    box.succeed("echo to-the-log >&2")
    assert "box # to-the-log" in log.text


def test_is_up_from_start_until_the_end(box):
    assert not box.is_up()
    box.start()
    assert box.is_up()  # at once, as upstream's (process is not None)
    box.succeed("true")
    assert box.is_up()
    box.shutdown()
    assert not box.is_up()


def test_the_start_script_gets_three_variables(debian_guest, tmp_path, private_tmp, log):
    """RUN_NSPAWN_ROOT_DIR, RUN_NSPAWN_SHARED_DIR and NOTIFY_SOCKET (a socket in the driver's
    private directory), nothing else, as upstream."""
    (tmp_path / "real").mkdir()
    real = nspawn.write_start_script(tmp_path / "real", "box", debian_guest)
    recorded = tmp_path / "environ"
    wrapper = tiny.write_executable(tmp_path / "run-box-nspawn", f"#!/bin/sh\n"
                                    f"/usr/bin/tr '\\0' '\\n' < /proc/$$/environ > {recorded}\nexec {real}\n")
    out = tmp_path / "out"
    out.mkdir()
    with Driver([], [], "", out, log, container_start_scripts=[str(wrapper)]) as driver:
        box = driver.machines[0]
        box.succeed("true")
        env = dict(line.split("=", 1) for line in recorded.read_text().splitlines())
        assert set(env) == {"RUN_NSPAWN_ROOT_DIR", "RUN_NSPAWN_SHARED_DIR", "NOTIFY_SOCKET"}
        assert env["RUN_NSPAWN_ROOT_DIR"] == str(box.state_dir)
        assert env["RUN_NSPAWN_SHARED_DIR"] == str(box.shared_dir)
        notify = Path(env["NOTIFY_SOCKET"])
        assert notify == box.notify_socket_path and notify.is_socket()
        # upstream's path, or (TMPDIR too long for a socket) the run's short socket directory,
        # which the run's reaper removes however the run ends
        assert notify.parent in (driver.tmp_dir, driver.socket_root / box.name)
        assert notify.parent.stat().st_mode & 0o077 == 0  # a private directory
        box.shutdown()
    assert not notify.exists()
    assert "nothing came on NOTIFY_SOCKET" not in log.text
    assert leftovers(private_tmp) == []


def test_the_first_command_waits_for_the_containers_ready_1(box):
    """With --notify-ready=yes systemd-nspawn passes on READY=1 once the container's systemd
    has started up: the first command comes after that."""
    box.start()
    status, state = box.execute("systemctl is-system-running")
    assert state.strip() in ("running", "degraded"), state


FAKE_NSPAWN = r"""#!/bin/bash
# Says what systemd-nspawn says, but READY=1 only 3 s after its "init" (a sleep in a mount
# namespace where /bin/sh is bash) runs and the console has said "Welcome to".
echo "systemd-nspawn's PID is $$"
/usr/bin/unshare --mount --propagation private /bin/sh -c 'mount --bind /bin/bash /bin/sh && exec sleep 600' &
init=$!
/usr/bin/systemd-notify "X_NSPAWN_LEADER_PID=$init"
echo "Welcome to the fake container!"
read -t 3 -u 0 || true  # no child meanwhile (stdin: a pipe nobody writes)
/usr/bin/systemd-notify READY=1
wait
"""


def test_the_first_command_waits_for_ready_1(tmp_path, private_tmp, log):
    """Not a boot line, not the init: READY=1 on the notify socket, as upstream."""
    script = tiny.write_executable(tmp_path / "run-box-nspawn", FAKE_NSPAWN)
    out = tmp_path / "out"
    out.mkdir()
    with Driver([], [], "", out, log, container_start_scripts=[str(script)]) as driver:
        box = driver.machines[0]
        tic = time.monotonic()
        box.start()
        assert box.succeed("echo ready") == "ready\n"
        assert time.monotonic() - tic >= 2.5
        assert box.init_pid == box.leader_pid


def test_the_wait_is_bounded_and_fails_at_once_when_the_container_dies(tmp_path, private_tmp, log):
    """Start scripts that never get ready: one prints a line and sleeps (the wait ends after its
    timeout with the last console lines, saying it is still waiting every 10 s), one dies."""
    out = tmp_path / "out"
    for directory in (out, tmp_path / "a", tmp_path / "b"):
        directory.mkdir()
    sleeper = tiny.write_executable(tmp_path / "a" / "run-box-nspawn",
                                    "#!/bin/sh\necho console says hello\nexec /bin/sleep 60\n")
    with Driver([], [], "", out, log, container_start_scripts=[str(sleeper)]) as driver:
        tic = time.monotonic()
        with pytest.raises(WaitTimeout, match="READY=1.*console says hello"):
            driver.machines[0].connect(timeout=11)
        assert 11 <= time.monotonic() - tic < 14
    assert "still waiting for container 'box' to reach ready state..." in log.text
    dying = tiny.write_executable(tmp_path / "b" / "run-box-nspawn",
                                  "#!/bin/sh\necho about to die\nsleep 1\nexit 3\n")
    with Driver([], [], "", out, log, container_start_scripts=[str(dying)]) as driver:
        tic = time.monotonic()
        with pytest.raises(MachineCrashed) as info:
            driver.machines[0].succeed("true")
        assert time.monotonic() - tic < 5
        assert "about to die" in info.value.post_mortem.serial_tail
