"""Live progress (issue 21): on a terminal, the wait under way is shown and updated in place
(that a pipe never gets it: e2e/test_cli.py::test_passing_script_exits_zero)."""

from __future__ import annotations

import os
import re
import sys

import pexpect  # type: ignore[import-untyped]
import tiny

SCRIPT = r"""
machine.succeed("(sleep 4; touch /tmp/ready) >/dev/null 2>&1 &")
machine.wait_until_succeeds("test -e /tmp/ready")
"""
STATUS = r"\r\x1b\[Kmachine: waiting for `test -e /tmp/ready` to succeed, [1-9] s, exit status 1"


def on_terminal(guest, tmp_path, env: dict[str, str]) -> str:
    script = tiny.write_start_script(tmp_path, "machine", guest)
    test = tmp_path / "t.py"
    test.write_text(SCRIPT)
    child = pexpect.spawn(sys.executable, ["-m", "test_driver.cli_main", "--start-scripts", str(script),
                                           "-o", str(tmp_path), "--", str(test)],
                          env={**os.environ, **env}, encoding="utf-8", timeout=180, dimensions=(40, 200))
    child.expect(r"\r\x1b\[Kmachine: booting, \d+ s, last console line: ")
    seen = child.before + child.after
    child.expect(STATUS)
    seen += child.before + child.after
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return seen + child.before


def test_a_wait_shows_what_it_waits_for_and_for_how_long(guest, tmp_path, private_tmp):
    # NO_COLOR drops the colours, not the status line
    seen = on_terminal(guest, tmp_path, {"NO_COLOR": "1"})
    assert "\x1b[1m" not in seen and "\x1b[3" not in seen
    # a log line never shares a line with the status: the status is erased before it
    assert re.search(r"\r\x1b\[K *machine: \(finished: waiting for success: test -e /tmp/ready", seen)
