"""nixpkgs' nixos-test-driver/files.py (common.py first; one minimal VM ``basic`` as
``machine``).  Our tiny guest stands in for it (the shared directory is 9p, as NixOS's).

What it asserts: a byte-exact round trip of every byte value through ``copy_from_host``
and ``copy_from_host_via_shell`` (a ``Path`` as source) and back with ``copy_from_vm``
into an absolute host directory; a directory copied both ways; ``copy_from_vm`` with no
target lands in ``driver.out_dir`` (a ``Path``); a background job that keeps stdout does
not hang ``succeed``; ``wait_for_file`` sees a file that appears 5 s later, and fails with
"action timed out" after a 10 s timeout given as a plain number, even while ``time.sleep``
does nothing.
"""

from __future__ import annotations

from nixos_tests import Node

SCRIPT = r'''
import tempfile

out = driver.out_dir
with subtest("File copy methods"):
    for method in [machine.copy_from_host, machine.copy_from_host_via_shell]:
        with subtest(f"{method.__name__}/copy_from_vm (file)"), tempfile.TemporaryDirectory() as tmpdir:
            method(exampleFile, "/tmp/file")
            machine.copy_from_vm("/tmp/file", tmpdir)
            host_files_same(exampleFile, Path(tmpdir, "file"))
            machine.succeed("rm /tmp/file")

    with subtest("copy_from_host/copy_from_vm (dir)"), tempfile.TemporaryDirectory() as tmpdir:
        machine.copy_from_host(exampleDir, "/tmp/dir")
        machine.copy_from_vm("/tmp/dir", tmpdir)
        host_files_same(exampleFile, Path(tmpdir, "dir", "exampleFile"))
        machine.succeed("rm -r /tmp/dir")

    with subtest("copy_from_vm"):
        machine.succeed("touch /tmp/file")
        machine.copy_from_vm("/tmp/file")
        assert (out / "file").exists()
        (out / "file").unlink()
        machine.succeed("rm /tmp/file")

    with subtest("wait_for_file"):
        machine.succeed("(sleep 5 && echo hello > /tmp/file) &")
        machine.wait_for_file("/tmp/file")
        machine.succeed("rm /tmp/file")

with subtest("wait_for_file"):
    with subtest("success"):
        machine.succeed("(sleep 5 && echo hello > /tmp/file) >&2 &")
        machine.wait_for_file("/tmp/file")
        machine.succeed("rm /tmp/file")
    with subtest("failure"):
        with no_sleep(), must_raise("action timed out"):
            machine.wait_for_file("/will/never/exist", timeout=10)
print("FILES PASSED")
'''


def test_files_py(nixos_test):
    run = nixos_test(SCRIPT, {"basic": Node("tiny")}, common=True).check()
    assert "FILES PASSED" in run.stdout
