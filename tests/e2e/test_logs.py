"""Logs and reports of real runs: log.xml, JUnit XML, JSON events, failure summary, colours."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import tiny

from e2e_support import driver_running, wait_no_processes
from test_driver.logger import machine_colour

NESTED = """\
machine.start()
with subtest("boot"):
    machine.succeed("echo booted")
with subtest("outer"):
    with subtest("inner ok"):
        machine.succeed("true")
    with subtest("inner bad"):
        machine.succeed("echo about to fail >&2; exit 3")
with subtest("never reached"):
    pass
"""


def nest(root: ET.Element, head: str) -> ET.Element:
    found = [n for n in root.iter("nest") if n.findtext("head") == head]
    assert len(found) == 1, f"{head!r}: {[n.findtext('head') for n in root.iter('nest')]}"
    return found[0]


def junit_cases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "NixOS integration test"
    return {case.get("name") or "": case for case in suite.findall("testcase")}


def test_reports_of_a_failing_nested_subtest(run, tmp_path):
    result = run(NESTED, args=["--junit-xml", "junit.xml", "--json-log", "events.jsonl"],
                 env={"LOGFILE": str(tmp_path / "log.xml")})
    assert result.returncode == 1, result.stderr

    log = ET.parse(tmp_path / "log.xml").getroot()
    outer = nest(log, "subtest: outer")
    assert [n.findtext("head") for n in outer.findall("nest")] == ["subtest: inner ok", "subtest: inner bad"]
    assert not [n for n in log.iter("nest") if n.findtext("head") == "subtest: never reached"]
    assert any(line.get("type") == "serial" and line.get("machine") == "machine" for line in log.iter("line"))

    cases = junit_cases(tmp_path / "junit.xml")
    assert list(cases) == ["boot", "outer"]  # no "main": the script has subtests and failed in one
    assert cases["boot"].find("failure") is None
    assert "must succeed: echo booted" in (cases["boot"].findtext("system-out") or "")
    failure = cases["outer"].find("failure")
    assert failure is not None
    assert "outer › inner bad" in failure.get("message", "")
    assert "exit code 3" in failure.get("message", "")
    assert "script.py" in (failure.text or "") and "line 8" in (failure.text or "")
    assert "subtest: inner bad" in (cases["outer"].findtext("system-out") or "")

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    ends = {tuple(e["path"]): e for e in events if e["kind"] == "subtest-end"}
    assert {path: e["status"] for path, e in ends.items()} == {
        ("boot",): "passed", ("outer", "inner ok"): "passed",
        ("outer", "inner bad"): "failed", ("outer",): "failed"}
    assert "exit code 3" in ends[("outer", "inner bad")]["error"]
    commands = {e["command"]: e for e in events if e["kind"] == "command"}
    assert commands["echo booted"]["status"] == 0 and commands["echo booted"]["machine"] == "machine"
    assert commands["echo booted"]["seconds"] > 0
    assert commands["echo about to fail >&2; exit 3"]["status"] == 3
    assert [e["machine"] for e in events if e["kind"] == "connected"] == ["machine"]

    summary = [line for line in result.stderr.splitlines() if line.startswith("!!! ")]
    assert '!!! File "' + str(tmp_path / "script.py") + '", line 8, in <module>' in summary
    assert "!!! in subtest: outer › inner bad" in summary
    assert any("serial lines of machine:" in line for line in summary)
    assert "!!!     machine # about to fail" in summary


@pytest.mark.parametrize("script, cases, failed", [
    ("log.info('no subtests')\n", ["main"], None),
    ("assert False, 'broken'\n", ["main"], "main"),
    ("with subtest('a'):\n  pass\nwith subtest('b'):\n  pass\n", ["a", "b"], None),
    ("with subtest('a'):\n  pass\nassert False, 'after the subtests'\n", ["a", "main"], "main"),
    ("import sys\nwith subtest('a'):\n  sys.exit(0)\n", ["a"], None),  # as upstream: no failure
])
def test_junit_shape(tmp_path, private_tmp, script, cases, failed):
    path = tmp_path / "t.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "-o", str(tmp_path),
                             "--junit-xml", "j.xml", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == (1 if failed else 0), result.stderr
    found = junit_cases(tmp_path / "j.xml")
    assert list(found) == cases
    assert [name for name, case in found.items() if case.find("failure") is not None] == ([failed] if failed else [])
    if cases == ["main"]:
        assert "no subtests" in (found["main"].findtext("system-out") or "") or failed


def test_logs_are_complete_after_sigterm(guest, tmp_path, private_tmp):
    script = ("with subtest('outer'):\n  with subtest('inner'):\n"
              "    victim.succeed('sleep 600')\n")
    args = ["--junit-xml", "junit.xml", "--json-log", "events.jsonl"]
    with driver_running(guest, tmp_path, "victim", script, "must succeed: sleep 600", args,
                        {"LOGFILE": str(tmp_path / "log.xml")}) as proc:
        # The terminal shows the line first; the XML log writes it right after.
        deadline = time.monotonic() + 10
        while "must succeed: sleep 600" not in (tmp_path / "log.xml").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == -signal.SIGTERM
    assert wait_no_processes(str(private_tmp)) == []

    text = (tmp_path / "log.xml").read_text()
    log = ET.fromstring(text)  # well formed
    assert text.rstrip().endswith("</logfile>")
    inner = nest(log, "subtest: inner")
    assert "must succeed: sleep 600" in [n.findtext("head") for n in inner.iter("nest")]
    failure = junit_cases(tmp_path / "junit.xml")["outer"].find("failure")
    assert failure is not None and "SIGTERM" in failure.get("message", "")
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["status"] for e in events if e["kind"] == "subtest-end"] == ["failed", "failed"]


def run_on_pty(command: list[str], env: dict[str, str], tty: bool) -> str:
    """Run ``command`` with stdout and stderr on a pseudo-terminal (or a pipe); return what it wrote."""
    if not tty:
        return subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=120).stdout
    master, slave = pty.openpty()
    proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(30) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("tty, no_color, coloured", [(True, False, True), (True, True, False),
                                                      (False, False, False)])
def test_colour_only_on_a_tty_and_not_with_no_color(guest, tmp_path, private_tmp, tty, no_color, coloured):
    start_script = tiny.write_start_script(tmp_path, "alpha", guest)
    test = tmp_path / "t.py"
    test.write_text("alpha.succeed('echo serial line >&2')\nwith subtest('s'):\n  log.warning('careful')\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color:
        env["NO_COLOR"] = "1"
    out = run_on_pty([sys.executable, "-m", "test_driver.cli_main", "--start-scripts", str(start_script),
                      "-o", str(tmp_path), str(test)], env, tty)
    assert "alpha # serial line" in out
    # colour is SGR sequences; a terminal also gets the live status line's erasures (\x1b[K)
    assert bool(re.search(r"\x1b\[[0-9;]*m", out)) == coloured
    if coloured:
        assert machine_colour("alpha") + "alpha # serial line" in out  # the machine's own colour
        assert machine_colour("alpha") + "alpha\x1b[0m: " in out  # its name on its log lines


def test_serial_stdout_off_hides_serial_lines_from_the_terminal_only(run, tmp_path):
    script = ("machine.succeed('true')\nserial_stdout_off()\n"
              "machine.succeed('echo hidden-line >&2')\nmachine.wait_for_console_text('hidden-line')\n"
              "serial_stdout_on()\n"
              "machine.succeed('echo shown-line >&2')\nmachine.wait_for_console_text('shown-line')\n")
    result = run(script, env={"LOGFILE": str(tmp_path / "log.xml")})
    assert result.returncode == 0, result.stderr
    assert "machine # shown-line" in result.stderr
    assert "machine # hidden-line" not in result.stderr
    serial = [line.text for line in ET.parse(tmp_path / "log.xml").getroot().iter("line")
              if line.get("type") == "serial"]
    assert "hidden-line" in serial and "shown-line" in serial


def test_json_log_format_on_stderr_records_crash_and_restart(run):
    script = ("import time\nmachine.supervise(restart=True, max_restarts=1, backoff=0.2)\n"
              "machine.succeed('true')\nos.kill(machine.pid, 9)\ntime.sleep(1)\n"
              "with subtest('after the restart'):\n  machine.succeed('echo back')\n")
    result = run(script, args=["--log-format", "json"])
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line is a JSON object
    kinds = [e["kind"] for e in events]
    assert kinds.index("crash") < kinds.index("restart") < kinds.index("subtest-end")
    crash = events[kinds.index("crash")]
    assert crash["machine"] == "machine" and "SIGKILL" in crash["exit"]
    assert [e["machine"] for e in events if e["kind"] == "connected"] == ["machine", "machine"]
    assert any(e["kind"] == "serial" and e["machine"] == "machine" for e in events)
    assert {"command": "echo back", "status": 0}.items() <= next(
        e for e in events if e["kind"] == "command" and e["command"] == "echo back").items()
