"""nixpkgs' nixos-test-driver/x11.py (common.py first): one VM ``x11`` (as ``machine``) from
machines.nix: NixOS's X server, the "auto" display manager (lightdm logging root in) and
IceWM, with ``xwininfo`` for the driver's window queries.  Our X11 guest
(``tests/guests/x11.py``) imitates it: the Debian systemd guest with Xorg on QEMU's std VGA,
lightdm logging root in to IceWM, a session that brings root's user manager to
``graphical-session.target`` (what ``wait_for_x`` looks for in the journal), xterm and
x11-utils.

What it asserts: ``wait_for_x`` returns (then the guest sleeps 3 s); with ``time.sleep``
doing nothing, ``wait_for_window("foobar", timeout=10)`` fails with "action timed out";
after ``xterm`` is started in the background (and 3 s in the guest), ``wait_for_window``
finds a window matching ``xterm``, and ``get_window_names()`` holds one named exactly
``xterm``; ``screenshot("foo")`` writes ``foo.png`` into the output directory, and a name
with a ``/`` (upstream: ``/tmp/bar.png``; here a file in the test's own directory) is
written where it says.

Ours on top, so that a driver that does not look cannot pass: right after ``wait_for_x``
the X server takes connections; the failing window wait lasted its 10 s, no less and not
much more; and the screenshot is the X display (1024x768, the xterm's white background on
part of it), not an empty picture.
"""

from __future__ import annotations

from pathlib import Path

from nixos_tests import Node

SCRIPT = r'''
import time

out = driver.out_dir
host_dir = Path(os.environ["CONFORMANCE_HOST_DIR"])

with subtest("wait_for_x"):
    machine.wait_for_x()
    # ours: it returned because X runs, not by accident
    machine.succeed("xwininfo -root >/dev/null")
    machine.sleep(3)

with subtest("wait_for_window"):
    with subtest("failure"):
        began = time.monotonic()
        with no_sleep(), must_raise("action timed out"):
            machine.wait_for_window("foobar", timeout=10)
        waited = time.monotonic() - began
        assert 10 <= waited < 20, f"the 10 s window wait took {waited:.1f} s"
    with subtest("success"):
        machine.succeed("xterm >&2 &")
        machine.sleep(3)
        machine.wait_for_window("xterm")

with subtest("get_window_names"):
    names = machine.get_window_names()
    assert "xterm" in names, names

with subtest("screenshot"):
    machine.screenshot("foo")
    assert (out / "foo.png").exists(), sorted(out.iterdir())
    elsewhere = host_dir / "bar.png"
    machine.screenshot(str(elsewhere))
    assert elsewhere.exists()
    assert not (out / "bar.png").exists()
print("X11 PASSED")
'''


def test_x11_py(nixos_test, tmp_path: Path):
    from PIL import Image

    run = nixos_test(SCRIPT, {"x11": Node("x11")}, common=True).check()
    assert "X11 PASSED" in run.stdout
    with Image.open(run.out / "foo.png") as shot:
        assert shot.format == "PNG" and shot.size == (1024, 768), (shot.format, shot.size)
        grey = shot.convert("L")
        white = sum(grey.histogram()[240:])
        assert white > 0.05 * 1024 * 768, f"{white} white pixels: no xterm on the screenshot"
    assert (tmp_path / "bar.png").exists()
