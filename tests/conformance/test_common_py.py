"""nixpkgs' nixos-test-driver/common.py: the prelude its default.nix puts before each of its
scripts (``COMMON`` in conftest.py is ours, in our words).  No machine of its own.

What it sets up and relies on: a host file with every byte value, a ``diff`` of host files,
a ``no_sleep()`` that does not put ``time.sleep`` back when its block raises (low_level.py
leaves it so), and ``start_all()``, which with no machine must do nothing.  Asserted here:
the prelude runs through our driver with no machine; the file holds the 256 bytes; and our
waits still end on their deadline with ``time.sleep`` doing nothing (``retry`` then spins
on the clock, as nixpkgs' newest does, and stops).
"""

from __future__ import annotations

SCRIPT = r'''
import datetime as dt
assert exampleFile.read_bytes() == bytes(range(256))
assert host_files_same(exampleFile, exampleFile) == 0
try:
    with no_sleep():
        raise RuntimeError("inside no_sleep")
except RuntimeError:
    pass
tic = time.monotonic()
with must_raise("action timed out"):
    retry(lambda remaining: False, timeout=dt.timedelta(seconds=1))
assert 1 <= time.monotonic() - tic < 3
print("COMMON PASSED")
'''


def test_common_py(nixos_test):
    run = nixos_test(SCRIPT, common=True).check()
    assert "COMMON PASSED" in run.stdout
