"""nixpkgs' nixos-test-driver/networking.py (common.py first): a ``server`` that runs
``python -m http.server 8080`` and a ``client`` with curl, on VLAN 1, each with its
user-mode NIC first.  Our tiny guests stand in: busybox ``httpd`` serves the same file and
busybox ``wget`` fetches it (the tiny guest has neither python nor curl); the steps and
assertions are the test's.

What it asserts: ``wait_for_closed_port(8080)`` before the server runs and
``wait_for_open_port(8080)`` after; the client fetches the file by the server's name over
the VLAN (``wait_until_succeeds``); after ``server.block()`` a fetch with a 5 s limit
fails, after ``unblock()`` one succeeds at once; ``forward_port(HOST, 8080)`` makes the
host read exactly ``b"Hello\\n"`` from ``localhost:HOST``.  (nixpkgs forwards host port
8888; a free port is taken here, as many runs share this host.)
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
import socket
from urllib.request import urlopen

client.succeed("true")
server.succeed("true")

with subtest("wait_for_closed_port"):
    server.wait_for_closed_port(8080)

server.succeed("mkdir -p /srv && echo Hello > /srv/file")
server.succeed("httpd -p 8080 -h /srv >&2 &")

with subtest("wait_for_open_port"):
    server.wait_for_open_port(8080)

with subtest("simple"):
    client.wait_until_succeeds("wget -qO- http://server:8080/file | grep Hello")

with subtest("block"):
    server.block()
    client.fail("timeout 5 wget -qO- http://server:8080/file")

with subtest("unblock"):
    server.unblock()
    client.succeed("wget -qO- http://server:8080/file")

with subtest("forward_port"):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server.forward_port(port, 8080)
    answer = urlopen(f"http://localhost:{port}/file").read()
    assert answer == b"Hello\n", f"unexpected response {answer!r}"
print("NETWORKING PASSED")
'''


def test_networking_py(nixos_test):
    hosts = {"client": "192.168.1.1", "server": "192.168.1.2"}
    nodes = {"client": Node("tiny", vlans={1: 1}, hosts=hosts), "server": Node("tiny", vlans={1: 2}, hosts=hosts)}
    run = nixos_test(SCRIPT, nodes, vlans=[1], common=True, timeout=180).check()
    assert "NETWORKING PASSED" in run.stdout
