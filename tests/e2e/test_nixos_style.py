"""testScripts written like nixpkgs' nixos/tests, run unchanged through the CLI on the systemd guest."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r'''
import datetime
import json

start_all()
machine.wait_for_unit("multi-user.target")

@polling_condition
def echo_service_running():
    "echo-tcp keeps running"
    machine.succeed("systemctl is-active echo-tcp.service")

with subtest("services come up"):
    machine.wait_for_unit("echo-tcp.service")
    machine.wait_for_open_port(8000)
    machine.wait_for_open_unix_socket("/run/echo.sock")

with subtest("talking to them"), echo_service_running:
    assert machine.succeed("echo hello | nc -N localhost 8000").strip() == "hello"
    machine.succeed(
        "echo over-unix | socat - UNIX-CONNECT:/run/echo.sock | grep -q over-unix",
        "test -d /tmp/shared",
    )
    props = machine.get_unit_info("echo-unix.service")
    assert props["ActiveState"] == "active", props

with subtest("a unit that fails is reported"):
    machine.systemctl("start failing.service")
    try:
        machine.wait_for_unit("failing.service")
    except Exception as e:
        machine.log(f"expected failure: {e}")
    else:
        raise Exception("failing.service should not become active")

with subtest("power failure and restart"):
    machine.succeed("echo survived > /root/state; sync")
    machine.crash()
    machine.start()
    machine.wait_for_unit("multi-user.target")
    assert machine.succeed("cat /root/state") == "survived\n"

with subtest("wait_for_x reads the whole journal, as upstream's"):
    # the target's line with a lot logged after it: a reader that stops at the match (grep -q)
    # leaves journalctl writing to a closed pipe, which fails the probe under pipefail
    machine.succeed("logger -t systemd 'Reached target Current graphical Interface.'; "
                    "seq 4000 | sed 's/^/later line /' | logger -t systemd")
    machine.succeed("mkdir -p /tmp/.X11-unix && touch /tmp/.X11-unix/X0")
    machine.wait_for_x(timeout=datetime.timedelta(seconds=60))

with subtest("results"):
    machine.succeed("systemctl list-units --output=json > /tmp/units.json")
    machine.copy_from_vm("/tmp/units.json")
    units = json.loads(open(os.path.join(driver.out_dir, "units.json")).read())
    assert any(u["unit"] == "echo-tcp.service" for u in units)
'''


def test_nixpkgs_style_script_through_cli(debian_guest, tmp_path, private_tmp):
    import debian

    script = debian.write_start_script(tmp_path, "machine", debian_guest)
    test = tmp_path / "test.py"
    test.write_text(SCRIPT)
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts", str(script),
                             "-o", str(tmp_path), "--", str(test)], capture_output=True, text=True,
                            timeout=400, env={**os.environ, "LOGFILE": str(tmp_path / "log.xml")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "subtest: power failure and restart" in result.stderr
    assert "expected failure" in result.stderr
    assert (tmp_path / "units.json").exists()
