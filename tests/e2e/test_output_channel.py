"""Replies travel on a virtio serial port with flow control, streamed: nothing lost however large
or however late the driver reads, guest memory bounded, and a backdoor shell that dies is noticed
at once (tiny guest)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import tiny

from test_driver.protocol.guest_helpers import SENT_HELPERS

# The guest's backdoor shell, found from inside a command: the one process whose stdin is hvc0.
BACKDOOR = "$(for f in /proc/[0-9]*/fd/0; do [[ $f -ef /dev/hvc0 ]] && { f=${f%/fd/0}; echo ${f#/proc/}; }; done)"
# 100 MB of varied text: one random megabyte (base64), 100 times (as fast as the guest's cat goes).
HUNDRED_MB = "for i in $(seq 100); do cat /tmp/mb; done"


def test_100_mb_of_output_from_a_256_mb_guest_arrives_whole(run):
    script = ("import hashlib, resource\n"
              "machine.succeed('head -c 750000 /dev/urandom | base64 -w0 > /tmp/mb')\n"
              f"want = machine.succeed('{HUNDRED_MB} | md5sum').split()[0]\n"
              f"out = machine.succeed('{HUNDRED_MB}')\n"
              "print('GOT', len(out), hashlib.md5(out.encode()).hexdigest() == want)\n"
              "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, 'MB')\n")
    result = run(script, env={"QEMU_OPTS": "-m 256"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GOT 100000000 True" in result.stdout, result.stdout
    assert "out of memory" not in result.stderr.lower()
    assert "still holds its stdout open" not in result.stdout + result.stderr  # no false alarm
    # The driver's own peak (RUSAGE_SELF): the output held once as bytes and once as str (as
    # upstream, succeed returns it), plus the interpreter; never a multiple of it from copying.
    peak = int(result.stdout.split("peak ")[1].split()[0])
    assert peak < 320, f"peak RSS {peak} MB for 100 MB of output"


STOPPED = r'''
import hashlib
print(f"UID {os.geteuid()} CAPS {open('/proc/self/status').read().split('CapEff:')[1].split()[0]}", flush=True)
machine.succeed("head -c 30000000 /dev/urandom | base64 > /tmp/blob")
want = machine.succeed("md5sum < /tmp/blob").split()[0]
for run in range(int(os.environ["RUNS"])):
    print(f"BEGIN {run}", flush=True)
    out = machine.succeed("cat /tmp/blob")
    got = hashlib.md5(out.encode()).hexdigest()
    print(f"RUN {run} {'WHOLE' if got == want else 'DAMAGED'} {len(out)}", flush=True)
'''


FIND_LIBRARIES = """
import sys, sysconfig, test_driver.cli_main
site = sysconfig.get_paths()["purelib"]
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None) or ""
    if path.startswith(site + "/") and "." not in module.__name__:
        print(path[len(site) + 1:].split("/")[0])
"""


def as_nobody(work: Path, env: dict[str, str]) -> list[str]:
    """The command that runs the driver as the user nobody, without any capability, as Nix's
    build users run it (no CAP_NET_ADMIN: socket buffers capped by net.core.wmem_max).  This
    Python may live where nobody cannot read it (/root): the system's Python of the same
    version then runs it, with the few libraries the driver imports copied into WORK."""
    nobody = pwd.getpwnam("nobody")
    prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
              "--inh-caps=-all", "--bounding-set=-all"]
    python = sys.executable
    if subprocess.run([*prefix, python, "-c", "import test_driver.cli_main"], env=env,
                      capture_output=True).returncode != 0:
        python = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
        assert os.path.exists(python), f"nobody cannot run {sys.executable}, and there is no {python}"
        site = Path(__import__("sysconfig").get_paths()["purelib"])
        names = subprocess.run([sys.executable, "-c", FIND_LIBRARIES], env=env, capture_output=True,
                               text=True, check=True).stdout.split()
        lib = work / "lib"
        lib.mkdir()
        for name in set(names):
            copy = shutil.copytree if (site / name).is_dir() else shutil.copy
            copy(site / name, lib / name)
        env["PYTHONPATH"] = f"{lib}:{env['PYTHONPATH']}"
    for path in [work, *work.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
    return [*prefix, python]


def stop_now_and_then(proc: subprocess.Popen[str], done: threading.Event) -> None:
    """Stop the driver for 5 s, let it run for 1 s, and so on until the reply is done: some
    stop falls while the reply flows, however long the guest takes to start sending it."""
    while not done.wait(0.5):
        proc.send_signal(signal.SIGSTOP)
        time.sleep(5)
        proc.send_signal(signal.SIGCONT)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the unprivileged user")
def test_an_unprivileged_driver_stopped_in_the_middle_of_a_reply_loses_nothing(guest):
    """As Nix's build user (default socket buffer limits), the driver is stopped for 5 s again
    and again while 40 MB come in: QEMU holds the guest back instead of dropping bytes.  RUNS=10 for the
    10-of-10 check; the suite runs it twice."""
    runs = int(os.environ.get("TD_STOPPED_RUNS", "2"))
    work = Path(tempfile.mkdtemp(prefix="td-unpriv-"))
    try:
        work.chmod(0o777)
        copy = tiny.Guest(work / "guest")
        shutil.copytree(guest.directory, copy.directory)
        script = tiny.write_start_script(work, "machine", copy)
        (work / "t.py").write_text(STOPPED)
        (work / "out").mkdir()
        env = {**os.environ, "TMPDIR": str(work), "HOME": str(work), "RUNS": str(runs),
               "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = subprocess.Popen(
            [*as_nobody(work, env), "-m", "test_driver.cli_main", "--start-scripts",
             str(script), "-o", str(work / "out"), "--", str(work / "t.py")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=work)
        assert proc.stdout is not None
        results: list[str] = []
        identity: list[str] = []
        try:
            for line in proc.stdout:
                if line.startswith("BEGIN"):
                    reply_done = threading.Event()
                    stopper = threading.Thread(target=stop_now_and_then, args=(proc, reply_done))
                    stopper.start()
                elif line.startswith("RUN"):
                    reply_done.set()
                    stopper.join()
                    results.append(line.split()[2])
                elif line.startswith("UID"):
                    identity = line.split()
            stderr = proc.communicate(timeout=600)[1]
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == 0, stderr[-3000:]
        assert results == ["WHOLE"] * runs, results
        assert identity == ["UID", str(pwd.getpwnam("nobody").pw_uid), "CAPS", "0000000000000000"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


DEATHS = f'''
import time
from test_driver.errors import BackdoorError

def fails_at_once(command):
    tic = time.monotonic()
    try:
        machine.execute(command)
    except BackdoorError as exc:
        now = time.monotonic()
        print("FAILED-IN", round(now - tic, 3), round(now - machine.backdoor_died_at, 3),
              str(exc).splitlines()[0], flush=True)
    else:
        raise AssertionError("the call should have failed")
    assert machine.succeed("echo back") == "back\\n"
    print("NEXT-WORKS", flush=True)

# the command outlives the shell it killed: the call fails when the shell dies, not when it ends
shell = machine.succeed("echo {BACKDOOR}").strip()
fails_at_once(f"kill -9 {{shell}}; sleep 30")
# the shell is the OOM killer's first choice; the command eats the guest's memory (and is killed
# next), then goes on for 30 s more
shell = machine.succeed("echo {BACKDOOR}").strip()
fails_at_once(f"echo 1000 > /proc/{{shell}}/oom_score_adj; "
              "(x=$(head -c 400000000 /dev/zero | tr '\\\\0' a)) || true; sleep 30")
'''


def test_a_backdoor_shell_that_dies_fails_the_call_at_once_and_the_next_command_works(run):
    result = run(DEATHS, env={"QEMU_OPTS": "-m 256"}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    failures = [line.split() for line in result.stdout.splitlines() if line.startswith("FAILED-IN")]
    assert len(failures) == 2 and result.stdout.count("NEXT-WORKS") == 2, result.stdout
    (killed, killed_lag), (oom, oom_lag) = ((float(f[1]), float(f[2])) for f in failures)
    assert killed < 1.0 and killed_lag < 1.0, result.stdout  # the kill is the command's first act
    # Filling the memory takes a while under TCG (40 to 80 s, as busy as the host is), so the call
    # is timed from the death: it failed then, not once the command's 30 s sleep had ended.
    assert oom_lag < 1.0, result.stdout
    assert "died while running" in result.stdout
    assert "Out of memory: Killed process" in result.stderr or "oom" in result.stderr.lower()


def test_the_helpers_come_through_the_reply_port_in_a_few_reads(run):
    """bash reads its commands from hvc0 a byte at a time (a read(2) each, about 30 ms for the
    helpers under TCG); the helpers come through the reply port instead, which it reads in blocks:
    the shell makes fewer reads in all than the helpers have bytes."""
    result = run(f"print('READS', machine.succeed('grep syscr /proc/{BACKDOOR}/io').split()[1])\n")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    reads = int(result.stdout.split("READS ")[1].split()[0])
    assert reads < len(SENT_HELPERS), f"{reads} reads for {len(SENT_HELPERS)} bytes of helpers"


JUNK = f'''
from test_driver.errors import BackdoorError
send = machine.shell.send_port
# what a shell that died left unread in the port: it comes before the next shell's helpers
machine.shell.send_port = lambda data: send(b"touch /tmp/ran-junk\\n" + data)
shell = machine.succeed("echo {BACKDOOR}").strip()
try:
    machine.execute(f"kill -9 {{shell}}")
except BackdoorError:
    pass
print("NEXT", machine.succeed("test ! -e /tmp/ran-junk && echo clean"), flush=True)
print("READS", machine.succeed("grep syscr /proc/{BACKDOOR}/io").split()[1], flush=True)
'''


def test_bytes_before_the_helpers_in_the_port_are_never_run(run):
    """The shell runs what it read from the reply port only if it ends with this install's check
    line; otherwise the helpers come on hvc0, as without a port."""
    result = run(JUNK, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "NEXT clean" in result.stdout, result.stdout
    reads = int(result.stdout.split("READS ")[1].split()[0])
    assert reads > len(SENT_HELPERS), "the helpers should have come on hvc0, a byte a read"
