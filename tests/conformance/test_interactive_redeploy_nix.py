"""nixpkgs' nixos-test-driver/interactive-redeploy.nix: ``rebuild(cmd)`` in the interactive shell.

What the nixpkgs test does: it builds two complete tests and uses only their
``driverInteractive``.  test0 has ``machine`` (``/etc/custom-test-marker`` = ``test-0``,
``getent``, VLANs 1 and 2) and an empty ``dud`` (VLAN 1), which sorts first, so dud is
192.168.1.1 and machine 192.168.1.2.  test1 has only ``machine`` (marker ``test-1``, VLANs 1
and 3), so it is 192.168.1.1.  Each test script checks its own configuration: the marker
(``[[ $(cat /etc/custom-test-marker | tee /dev/stderr) == test-N ]]``), ``getent ahostsv4 dud``
(succeeds in test0, fails in test1), ``ping`` to machine's own address on VLAN 1, and
which of 192.168.2.x / 192.168.3.x answers.  ``result`` links to test0's driver, ``test1``
to test1's; an expect session, 60 s per step, spawns ``./result/bin/nixos-test-driver``
and asserts, with no ``Traceback`` anywhere:

1. the prompt comes; ``test_script()`` ends with ``finished: run the VM test script``;
2. ``rebuild("rm result; mv test1 result")`` ends with ``finished: updating machines``;
3. ``test_script()`` now runs test1's script (``== test-1`` is logged) and passes: dud
   is gone, machine was replaced by test1's (new marker, address .1), VLAN 3 exists and
   VLAN 2 is gone;
4. ``exit`` ends the driver (EOF).

Ours: the same session through a pty (pexpect), each step within 60 s.  The tiny guest
stands in for the NixOS nodes: its start scripts put it on the VLANs with
192.168.VLAN.N, its /etc/hosts and hostname come from td.* kernel parameters, and the
marker is the kernel parameter ``td.marker=test-N`` (read from /proc/cmdline, where the
machine's configuration put it).  Busybox has no ``getent``: dud's presence is a grep of
/etc/hosts; the tiny guest has no systemd, so there is no ``wait_for_unit``; one ping
(``-c 1``) stands for three (the tiny guest has no default route through QEMU's user
network, which would answer pings to any address, as nix's sandbox does not), and test0 also pings dud, which shows VLAN 1 carries frames.  Two ways the driver gets its configuration, one build each:

- ``config``: ``result/bin/nixos-test-driver`` starts the driver with
  ``--config result/bin/../driver-configuration.json`` (nixpkgs' driver-configuration
  shape, as its newest framework writes it); ``rebuild`` reads that path again, through
  the repointed ``result``;
- ``env``: the wrapper sets ``startScripts``, ``vlans`` and ``testScript`` as the older
  framework's ``makeWrapper --set`` did, and ``rebuildExe`` to itself; ``rebuild`` asks
  the rebuilt wrapper (``--print-config``) for the new configuration.

We also check what upstream's session leaves implicit: the old QEMUs and vlan 2's switch
have ended once ``rebuild`` returns, the shell's names follow (no ``dud``), and after
``exit`` no process, switch or directory of the run is left.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pexpect  # type: ignore[import-untyped]
import pytest
import tiny

from conftest_shared import wait_no_processes

STEP = 60  # seconds, as the expect script's `set timeout 60`
PROMPT = r"In \[|>>>"  # IPython's prompt, coloured (upstream's expect waits for ptpython's ">>>")
MARKER = r"tr ' ' '\n' < /proc/cmdline | sed -n 's/^td.marker=//p'"

TEST0 = r'''
start_all()
machine.succeed("[[ $(MARKER | tee /dev/stderr) == test-0 ]]")
with subtest("dud initially known"):
    machine.succeed("grep -qw dud /etc/hosts")
    machine.succeed("ping -c 1 -W 10 dud")
with subtest("'machine' is on IP x.x.x.2 because 'dud' comes first"):
    machine.succeed("ping -c 1 -W 2 192.168.1.2")
with subtest("vlans initially configured"):
    machine.succeed("ping -c 1 -W 2 192.168.2.2")
    machine.fail("ping -c 1 -W 2 192.168.3.2")
'''.replace("MARKER", MARKER)

TEST1 = r'''
start_all()
machine.succeed("[[ $(MARKER | tee /dev/stderr) == test-1 ]]")
with subtest("dud removed from config"):
    machine.fail("grep -qw dud /etc/hosts")
with subtest("'machine' changes to IP x.x.x.1 due to 'dud' being removed"):
    machine.succeed("ping -c 1 -W 2 192.168.1.1")
with subtest("vlans reconfigured"):
    machine.fail("ping -c 1 -W 2 192.168.2.1")
    machine.succeed("ping -c 1 -W 2 192.168.3.1")
'''.replace("MARKER", MARKER)

DRIVER = [sys.executable, "-m", "test_driver.cli_main"]


def build(out: Path, guest: tiny.Guest, marker: str, nodes: dict[str, dict[int, int]], hosts: dict[str, str],
          script: str, style: str) -> Path:
    """One test's driverInteractive: start scripts, test script, configuration JSON and the
    ``bin/nixos-test-driver`` wrapper (``style``: ``config`` or ``env``)."""
    out.mkdir()
    vms = {}
    for name, vlans in nodes.items():
        append = f"td.marker={marker}" if name == "machine" else ""
        path = tiny.write_start_script(out, name, guest, append, vlans=vlans, hosts=hosts)
        vms[name] = {"name": name, "start_script": str(path)}
    vlan_numbers = sorted({vlan for vlans in nodes.values() for vlan in vlans})
    (out / "test-script").write_text(script)
    (out / "driver-configuration.json").write_text(json.dumps({
        "vms": vms, "containers": {}, "vlans": vlan_numbers, "global_timeout": 3600,
        "enable_ssh_backdoor": False, "test_script": str(out / "test-script")}, indent=2))
    driver = " ".join(map(shlex.quote, DRIVER))
    if style == "config":
        body = f'exec {driver} --interactive --config "$(dirname "$0")/../driver-configuration.json" "$@"\n'
    else:
        scripts = " ".join(vm["start_script"] for vm in vms.values())
        body = (f"export startScripts={shlex.quote(scripts)} vlans={shlex.quote(' '.join(map(str, vlan_numbers)))}"
                f" testScript={shlex.quote(str(out / 'test-script'))} rebuildExe=\"$0\"\n"
                f'exec {driver} --interactive "$@"\n')
    (out / "bin").mkdir()
    tiny.write_executable(out / "bin" / "nixos-test-driver", "#!/bin/sh\n" + body)
    return out


def expect(child: pexpect.spawn, pattern: str, what: str) -> re.Match[str]:
    """Wait (at most STEP seconds) for ``pattern``; a Traceback, EOF or the timeout first fails."""
    index = child.expect([pattern, "Traceback", pexpect.EOF, pexpect.TIMEOUT], timeout=STEP)
    assert index == 0, f"{['', 'Traceback', 'EOF', 'timeout'][index]} while waiting for {what}:\n" \
                       f"{child.before[-5000:]}{child.after if isinstance(child.after, str) else ''}"
    return child.match


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.parametrize("style", ["config", "env"])
def test_interactive_redeploy_nix(style: str, tmp_path: Path, tiny_guest: tiny.Guest, private_tmp: Path) -> None:
    work = tmp_path / "build"
    work.mkdir()
    build(work / "test0-driver", tiny_guest, "test-0", {"dud": {1: 1}, "machine": {1: 2, 2: 2}},
          {"dud": "192.168.1.1", "machine": "192.168.1.2"}, TEST0, style)
    build(work / "test1-driver", tiny_guest, "test-1", {"machine": {1: 1, 3: 1}}, {"machine": "192.168.1.1"},
          TEST1, style)
    (work / "result").symlink_to("test0-driver")  # as upstream's build directory: result and test1
    (work / "test1").symlink_to("test1-driver")

    env = {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    # (through sh: pexpect looks the command up from its own working directory)
    child = pexpect.spawn("/bin/sh", ["-c", "exec ./result/bin/nixos-test-driver"], env=env, encoding="utf-8",
                          timeout=STEP, dimensions=(50, 250), cwd=str(work))
    transcript = open(tmp_path / "session.log", "w")  # the whole session, for a failure's reader
    child.logfile_read = transcript
    try:
        expect(child, PROMPT, "the prompt")
        child.send("test_script()\r")
        expect(child, "finished: run the VM test script", "test0's test_script()")
        expect(child, PROMPT, "the prompt")
        child.send('print("PIDS", dud.pid, machine.pid, vlan2.pid, vlan1.pid)\r')
        old = [int(pid) for pid in expect(child, r"PIDS (\d+) (\d+) (\d+) (\d+)", "the pids").groups()]

        child.send('rebuild("rm result; mv test1 result")\r')
        expect(child, "finished: updating machines", "rebuild()")
        expect(child, PROMPT, "the prompt")
        assert not any(alive(pid) for pid in old[:3]), "the old machines and vlan 2's switch must have ended"
        assert alive(old[3]), "vlan 1 is still in the test: its switch runs on"
        child.send('print("NOW", sorted(m.name for m in machines), [v.nr for v in vlans], "dud" in dir())\r')
        expect(child, re.escape("NOW ['machine'] [1, 3] False"), "the new machines and VLANs")
        expect(child, PROMPT, "the prompt")
        child.send('print("DIRS", driver.tmp_dir, driver.socket_root)\r')
        dirs = [Path(d) for d in expect(child, r"DIRS (\S+) (\S+)", "the driver's directories").groups()]

        child.send("test_script()\r")
        expect(child, "== test-1", "test1's script")
        expect(child, "finished: run the VM test script", "test1's test_script()")
        expect(child, PROMPT, "the prompt")

        child.send("exit\r")
        index = child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=STEP)
        assert index == 0, f"the driver did not end after exit:\n{child.before[-3000:]}"
    finally:
        if child.isalive():
            child.kill(9)
        child.close()
        transcript.close()
    assert child.exitstatus == 0, child.before[-3000:]
    assert not any(alive(pid) for pid in old)
    assert wait_no_processes(str(private_tmp)) == [] and wait_no_processes(str(work)) == []
    assert list(private_tmp.iterdir()) == [], "the driver's private directory must be gone"
    assert not any(d.exists() for d in dirs), f"left behind: {dirs}"
