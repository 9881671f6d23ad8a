"""nixpkgs' nixos-test-driver/ocr.py (common.py first; ``enableOCR = true``): the same VM
``x11`` (as ``machine``) as x11.py -- NixOS's X server, lightdm logging root in, IceWM --
with tesseract on the driver's side.  Our X11 guest (``tests/guests/x11.py``) imitates it,
and the host's tesseract reads the screen.

What it asserts: after ``wait_for_x``, an ``xterm`` started in the background shows root's
prompt, and ``wait_for_text("root@", timeout=10)`` reads it (in some OCR variant of a
screenshot taken through QEMU) within 10 s.

Ours on top, so that a ``wait_for_text`` that does not read the screen cannot pass: before
the xterm exists, the same wait with a 3 s timeout fails with "action timed out" (nothing
else on IceWM's screen says ``root@``).
"""

from __future__ import annotations

import pytest

from nixos_tests import Node

# Alone on the host: nixpkgs gives the xterm 10 s to show, and under TCG, with another
# test's VM and tesseract's readings taking the two cores, it did not in 2 of 3 suite runs
# (the guest's boot took twice its usual time in those); alone, it shows well within that.
pytestmark = pytest.mark.serial

SCRIPT = r'''
machine.wait_for_x()
# ours: no prompt on the screen yet, so the same wait must time out
with must_raise("action timed out"):
    machine.wait_for_text("root@", timeout=3)
machine.succeed("xterm >&2 &")
machine.wait_for_text("root@", timeout=10)
print("OCR PASSED")
'''


def test_ocr_py(nixos_test) -> None:
    run = nixos_test(SCRIPT, {"x11": Node("x11")}, common=True).check()
    assert "OCR PASSED" in run.stdout
