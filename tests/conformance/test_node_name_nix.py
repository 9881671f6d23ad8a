"""nixpkgs' nixos-test-driver/node-name.nix: three machines named ``ok``, ``one_two`` and
``a-b``, whose host names nix derives from those (``ok``, ``onetwo``, ``a-b``: a host name
has no underscore).  Our tiny guests, given those host names as nix would.

What it asserts: each is reachable from the script under its Python name (``a-b`` is
``a_b``) and its backdoor works; each guest has its host name.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
start_all()
with subtest("python vars exist and machines are reachable through test backdoor"):
    ok.succeed("true")
    one_two.succeed("true")
    a_b.succeed("true")
with subtest("hostname is derived from the node name"):
    ok.succeed("hostname | tee /dev/stderr | grep '^ok$'")
    one_two.succeed("hostname | tee /dev/stderr | grep '^onetwo$'")
    a_b.succeed("hostname | tee /dev/stderr | grep '^a-b$'")
assert "machine" not in globals()
print("NODE-NAME PASSED")
'''


def test_node_name_nix(nixos_test):
    nodes = {"ok": Node("tiny"), "one_two": Node("tiny", append="td.hostname=onetwo"), "a-b": Node("tiny")}
    run = nixos_test(SCRIPT, nodes).check()
    assert "NODE-NAME PASSED" in run.stdout
