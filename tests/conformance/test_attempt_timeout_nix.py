"""nixpkgs' nixos-test-driver/attempt-timeout.nix: one VM with iptables.  Our Debian
systemd guest (iptables installed, its netfilter modules loaded on demand).

What it asserts: ``wait_until_succeeds`` of a command that blocks, with ``timeout`` 20 s
and ``attempt_timeout`` 2 s (timedeltas), gives up (any exception) after at least 4
attempts and within 40 s; with SYNs to 127.0.0.1:1234 dropped, ``wait_for_open_port(1234,
timeout=5 s)`` gives up well within 60 s (each probe bounded by the caller's budget).
Ours, more tightly: 8 or more attempts, and the port wait ends within 15 s.
"""

from __future__ import annotations

import re

from nixos_tests import Node

SCRIPT = r'''
import datetime as dt
import time

start_all()
machine.wait_for_unit("multi-user.target")

with subtest("a blocking command is retried within the budget"):
    command = "echo attempt >> /tmp/attempts; exec sleep 600 > /dev/null"
    started = time.monotonic()
    try:
        machine.wait_until_succeeds(command, timeout=dt.timedelta(seconds=20), attempt_timeout=dt.timedelta(seconds=2))
    except Exception:
        pass
    else:
        raise Exception("wait_until_succeeds should have timed out")
    elapsed = time.monotonic() - started
    attempts = int(machine.succeed("wc -l < /tmp/attempts"))
    print(f"ATTEMPTS {attempts} IN {elapsed:.1f}")
    assert attempts >= 4, f"command was tried {attempts} times"
    assert elapsed < 40, f"wait_until_succeeds took {elapsed:.1f}s"

with subtest("a blocking probe is bounded by the caller's budget"):
    machine.succeed("iptables -A OUTPUT -p tcp -d 127.0.0.1 --dport 1234 -j DROP")
    started = time.monotonic()
    try:
        machine.wait_for_open_port(1234, addr="127.0.0.1", timeout=dt.timedelta(seconds=5))
    except Exception:
        pass
    else:
        raise Exception("wait_for_open_port should have timed out")
    elapsed = time.monotonic() - started
    print(f"PORT WAIT {elapsed:.1f}")
    assert elapsed < 60, f"wait_for_open_port took {elapsed:.1f}s"
print("ATTEMPT-TIMEOUT PASSED")
'''


def test_attempt_timeout_nix(nixos_test):
    run = nixos_test(SCRIPT, {"machine": Node("debian")}).check()
    assert "ATTEMPT-TIMEOUT PASSED" in run.stdout
    attempts, elapsed = re.search(r"ATTEMPTS (\d+) IN ([\d.]+)", run.stdout).groups()
    assert int(attempts) >= 8 and float(elapsed) < 24, (attempts, elapsed)
    assert float(re.search(r"PORT WAIT ([\d.]+)", run.stdout).group(1)) < 15
