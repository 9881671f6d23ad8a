"""Nothing of a run remains, however it ends: processes in every PID namespace (stopped and
zombie ones too), mounts, network interfaces and namespaces, the run's directories.

The matrix: each way a run ends, for a VM, a container, and both on a VLAN.  The check
counts what the kernel shows (``Leftovers``), not names in command lines: a container's
processes do not carry our paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nspawn
import pytest
import tiny

from conftest_shared import Leftovers

pytestmark = [pytest.mark.serial,  # (the kernel-wide leftover check)
              pytest.mark.skipif(os.geteuid() != 0, reason="systemd-nspawn needs root")]

READY = "READY-FOR-THE-END"
ENDINGS = {
    "pass": "",
    "failure": "raise Exception('the script fails')",
    "global-timeout": "import time\ntime.sleep(600)",
    "sigint": "import time\ntime.sleep(600)",
    "sigterm": "import time\ntime.sleep(600)",
    "sighup": "import time\ntime.sleep(600)",
    "sigkill-driver": "import time\ntime.sleep(600)",
    "kill-nspawn": "import time\ntime.sleep(600)",
    "kill-qemu": "import time\ntime.sleep(600)",
}
SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sighup": signal.SIGHUP,
           "sigkill-driver": signal.SIGKILL}
SETUPS = {
    # the container runs a service whose stop takes a minute: its halt outlasts the grace period
    "vm": "vm.succeed('sleep 600 >/dev/null 2>&1 &')",
    "container": "box.succeed(\"systemd-run --unit=slowstop -p ExecStop='/bin/sleep 60' /bin/sleep infinity\")",
    "both-vlan": ("box.succeed(\"systemd-run --unit=slowstop -p ExecStop='/bin/sleep 60' /bin/sleep infinity\")\n"
                  "vm.succeed('ping -c 1 -W 5 192.168.1.2')"),
}


def cases() -> list[tuple[str, str]]:
    return [(setup, ending) for setup in SETUPS for ending in ENDINGS
            if not (ending == "kill-nspawn" and setup == "vm") and not (ending == "kill-qemu" and setup == "container")]


def child_named(root: int, name: str) -> int | None:
    """The first process called ``name`` below ``root`` (by the kernel's parent links)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith(name):
                return pid
        except OSError:
            continue
        todo += children.get(pid, [])
    return None


@pytest.mark.parametrize("setup,ending", cases(), ids=[f"{s}-{e}" for s, e in cases()])
def test_nothing_remains(guest, debian_guest, tmp_path, private_tmp, setup, ending):
    hosts = {"vm": "192.168.1.1", "box": "192.168.1.2"}
    args = []
    if setup in ("vm", "both-vlan"):
        vlans = {1: 1} if setup == "both-vlan" else {}
        args += ["--start-scripts", str(tiny.write_start_script(tmp_path, "vm", guest, vlans=vlans, hosts=hosts))]
    if setup in ("container", "both-vlan"):
        vlans = {1: 2} if setup == "both-vlan" else {}
        args += ["--container-start-scripts",
                 str(nspawn.write_start_script(tmp_path, "box", debian_guest, vlans=vlans, hosts=hosts))]
    if setup == "both-vlan":
        args += ["--vlans", "1"]
    if ending == "global-timeout":
        args += ["--global-timeout", "20"]
    script = tmp_path / "t.py"
    script.write_text(f"start_all()\n{SETUPS[setup]}\nprint({READY!r}, flush=True)\n{ENDINGS[ending]}\n")
    trace = Leftovers(private_tmp)
    private_dirs = set(Path("/tmp").glob("td-*"))  # (a socket's short private directory, when TMPDIR is long)
    proc = subprocess.Popen([sys.executable, "-m", "test_driver.cli_main", "-o", str(tmp_path), *args, "--", str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=trace.enter)
    output = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if READY in line:
                break
        if ending in SIGNALS:
            proc.send_signal(SIGNALS[ending])
        elif ending in ("kill-nspawn", "kill-qemu"):
            victim = child_named(proc.pid, "systemd-nspawn" if ending == "kill-nspawn" else "qemu-system")
            assert victim is not None, "".join(output)
            os.kill(victim, signal.SIGKILL)
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
        output.append(proc.communicate(timeout=60)[0])
    finally:
        proc.kill()
        proc.wait()
    log = "".join(output)
    assert READY in log, log[-4000:]
    if ending == "pass":
        assert proc.returncode == 0, log[-4000:]
    left = trace.wait(10) + [f"file {d}" for d in sorted(set(Path("/tmp").glob("td-*")) - private_dirs)]
    assert left == [], f"{setup}, {ending}: left behind {left}\n{log[-3000:]}"
    if "container" in setup or setup == "both-vlan":
        if ending not in ("sigkill-driver", "kill-nspawn"):
            assert "did not halt within" in log and "killed its" in log, log[-3000:]


def test_the_reaper_killed_alone_leaves_nothing(private_tmp):
    """The run's reaper SIGKILLed on its own (as a harness kills what names the run's
    directories) has no child left to outlive it."""
    run_dir = private_tmp / "run"
    run_dir.mkdir()
    trace = Leftovers(private_tmp)
    code = ("import sys, time\nfrom pathlib import Path\nfrom test_driver.sandbox import Sandbox\n"
            "from test_driver.logger import CompositeLogger\n"
            "box = Sandbox([Path(sys.argv[1])], CompositeLogger([]))\nbox.start(isolated=False)\n"
            "print(box.process.pid, flush=True)\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            preexec_fn=trace.enter)
    try:
        assert proc.stdout is not None
        os.kill(int(proc.stdout.readline()), signal.SIGKILL)
        time.sleep(1)
    finally:
        proc.kill()
        proc.wait()
    assert trace.wait(5) == []

