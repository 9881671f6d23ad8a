"""nixpkgs' nixos-test-driver/nspawn-interactive.nix: a container's X display in an interactive run.

nixpkgs: one container ``machine`` importing common/x11.nix (an X session), no VLANs.  The
script starts Xvfb on the host, then a second driver of its own, built from the test's
interactive driver configuration (``load_driver_configuration`` from ``test_driver.driver``,
an empty test script), as ``Driver(config=..., out_dir=driver.out_dir, logger=driver.logger,
interactive=True)`` in a ``with``.  It starts that driver's container and asserts:

- a TigerVNC window named "machine (nspawn)" appears on the host display (xdotool
  ``search --sync``), while no x11vnc listens on a TCP port in the container (``ss -lntp``);
- an xterm started in the container (``wait_for_window`` on a container) gets what xdotool
  types into the viewer: ``echo viewer-input > /tmp/viewer-input`` then Return, and the file
  appears in the container (``wait_until_succeeds``, 30 s);
- closing the viewer window (``xdotool windowclose``) stops x11vnc (``wait_until_fails("pgrep
  -x x11vnc")``) and leaves the container running (the file is still there).

Ours: the container is the X11 guest's tree under systemd-nspawn (``Node("x11-container")``:
lightdm logs root in, Xvfb as its X server, x11vnc in the tree); the interactive
configuration names x11vnc and TigerVNC's viewer by their Debian paths; the host's Xvfb
takes a free display (``-displayfd``) rather than :99, as many runs share a host.  On top,
so that a driver that does nothing cannot pass: x11vnc runs and listens on its unix
socket before the viewer is closed (the later ``pgrep`` failing then means something), the
container still answers after, and after the run the viewer process is gone.  The run's
TMPDIR is long (pytest's), so the viewer reaches the socket through a short link.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from nixos_tests import Node

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="systemd-nspawn needs root")

SCRIPT = r'''
import datetime as dt
import subprocess
import time
from pathlib import Path

from test_driver.driver import Driver, load_driver_configuration

host_dir = Path(os.environ["CONFORMANCE_HOST_DIR"])


def xdotool(*args):
    return subprocess.check_output(["xdotool", *args], text=True, timeout=30).strip()


def host_display_answers(_remaining):
    return subprocess.call(["xdotool", "getdisplaygeometry"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


def viewer_window():
    return xdotool("search", "--sync", "--onlyvisible", "--name", r"machine \(nspawn\)")


def type_in(window, text):
    xdotool("windowraise", window)
    xdotool("windowfocus", "--sync", window)
    xdotool("mousemove", "--window", window, "150", "200")
    xdotool("click", "1")
    time.sleep(1)
    xdotool("type", "--delay", "50", text)
    xdotool("key", "Return")


read_end, write_end = os.pipe()
with subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-ac"],
                      pass_fds=[write_end]) as xvfb:
    os.close(write_end)
    os.environ["DISPLAY"] = ":" + os.read(read_end, 16).decode().strip()
    try:
        retry(host_display_answers, timeout=dt.timedelta(seconds=30))
        config = load_driver_configuration(str(host_dir / "interactive-driver-config.json"))
        with Driver(config=config, out_dir=driver.out_dir, logger=driver.logger, interactive=True) as nested:
            box = nested.machines_nspawn[0]
            box.start()

            with subtest("typing in the viewer reaches the container"):
                window = viewer_window()
                box.fail("ss -H -lntp | grep -w x11vnc")
                box.succeed("pgrep -x x11vnc")  # ours
                box.succeed("ss -H -lxp | grep -w x11vnc | grep -q vnc.sock")  # ours
                box.execute("xterm -title input-test -e bash --noprofile --norc >&2 &")
                box.wait_for_window("input-test", timeout=dt.timedelta(seconds=30))
                type_in(window, "echo viewer-input > /tmp/viewer-input")
                box.wait_until_succeeds("grep -qx viewer-input /tmp/viewer-input",
                                        timeout=dt.timedelta(seconds=30))

            with subtest("closing the viewer stops x11vnc, not the container"):
                xdotool("windowclose", window)
                box.wait_until_fails("pgrep -x x11vnc")
                box.succeed("test -s /tmp/viewer-input")
                assert box.is_up()  # ours
    finally:
        xvfb.terminate()
print("NSPAWN INTERACTIVE PASSED")
'''


def test_nspawn_interactive_nix(nixos_test, tmp_path: Path) -> None:
    empty = tmp_path / "empty-test-script"
    empty.write_text("")
    (tmp_path / "interactive-driver-config.json").write_text(json.dumps({
        "vms": {},
        "containers": {"machine": {"name": "machine", "start_script": str(tmp_path / "run-machine-nspawn"),
                                   "vnc": {"x11vnc": "/usr/bin/x11vnc", "tigervnc": "/usr/bin/vncviewer"}}},
        "vlans": [], "global_timeout": 600, "enable_ssh_backdoor": False, "test_script": str(empty)}))
    run = nixos_test(SCRIPT, {"machine": Node("x11-container")}, timeout=240).check()
    assert "NSPAWN INTERACTIVE PASSED" in run.stdout
    viewers = [int(pid) for pid in re.findall(r"VNC viewer running \(pid (\d+)\)", run.log)]
    assert viewers, run.log[-3000:]
    for pid in viewers:  # gone with the run (not a zombie of ours either: the driver has exited)
        assert not os.path.exists(f"/proc/{pid}"), f"the viewer {pid} outlived the run"
