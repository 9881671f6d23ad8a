"""Steps documents and parallel calls on real guests, through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import tiny


def run_driver(guest, tmp_path, script: str, names=("alpha", "beta"), args=()):
    scripts = [str(tiny.write_start_script(tmp_path, name, guest)) for name in names]
    test = tmp_path / "test-script"
    test.write_text(script)
    return subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts", *scripts,
                           "-o", str(tmp_path), *args, "--", str(test)],
                          capture_output=True, text=True, timeout=300)


STEPS = {"steps": [
    {"action": "start_all"},
    {"name": "greeting", "action": "succeed", "machine": "alpha", "command": "echo hello from $(hostname)",
     "expect": "^hello from alpha$"},
    {"action": "succeed", "machine": "beta", "command": "(sleep 1; touch /tmp/ready) >/dev/null 2>&1 &"},
    {"action": "wait_until_succeeds", "machine": "beta", "command": "test -e /tmp/ready", "timeout": 30},
    {"name": "both at once", "parallel": [
        {"action": "succeed", "machine": "alpha", "commands": ["sleep 1", "echo a > /tmp/a"]},
        {"action": "execute", "machine": "beta", "command": "sleep 1; echo b", "expect": "^b$"},
    ]},
    {"action": "succeed", "machine": "alpha", "command": "cat /tmp/a", "expect": "a"},
    {"parallel": [{"action": "shutdown", "machine": "alpha"}, {"action": "shutdown", "machine": "beta"}]},
]}


def test_a_steps_document_runs(guest, tmp_path, private_tmp):
    result = run_driver(guest, tmp_path, json.dumps(STEPS, indent=2), args=["--junit-xml", "junit.xml"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "subtest: both at once" in result.stderr and "running 2 calls in parallel" in result.stderr
    assert "alpha: QEMU exited" in result.stderr and "beta: QEMU exited" in result.stderr  # shut down
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert [case.get("name") for case in suite.findall("testcase")] == ["greeting", "both at once"]


def test_a_failing_expect_names_the_step(guest, tmp_path, private_tmp):
    document = {"steps": [{"action": "succeed", "machine": "alpha", "command": "echo nope", "expect": "yes"}]}
    result = run_driver(guest, tmp_path, json.dumps(document), names=["alpha"])
    assert result.returncode == 1
    assert "steps[0] (succeed on alpha): the output does not match /yes/: 'nope\\n'" in result.stderr


def test_a_bad_step_is_refused_before_any_vm(guest, tmp_path, private_tmp):
    document = {"steps": [{"action": "start_all"}, {"action": "wait_for_unit", "machine": "gamma", "unit": "x"}]}
    result = run_driver(guest, tmp_path, json.dumps(document))
    assert result.returncode == 2
    assert "steps[1]: unknown machine 'gamma' for wait_for_unit (machines: alpha, beta)" in result.stderr
    assert "starting vm" not in result.stderr


def test_parallel_failure_names_the_machine_and_reports_the_rest(guest, tmp_path, private_tmp):
    # both up before the race: which call fails first must not hang on which machine booted first
    script = ("start_all()\nalpha.succeed('true')\nbeta.succeed('true')\n"
              "parallel(lambda: beta.succeed('sleep 2; echo fine'), lambda: alpha.succeed('exit 3'))\n")
    result = run_driver(guest, tmp_path, script)
    assert result.returncode == 1
    assert "command `exit 3` failed (exit code 3)" in result.stderr
    assert "in parallel: call 2 (machine alpha) failed first; call 1 succeeded" in result.stderr
    assert "beta: must succeed: sleep 2; echo fine" in result.stderr  # it ran to its end


def test_parallel_steps_failure(guest, tmp_path, private_tmp):
    # both up before the race (on a loaded host beta booted over 1 s after alpha, and alpha failed first)
    document = {"steps": [{"action": "start_all"},
                          {"action": "succeed", "machine": "alpha", "command": "true"},
                          {"action": "succeed", "machine": "beta", "command": "true"}, {"parallel": [
        {"action": "succeed", "machine": "alpha", "command": "sleep 2; false"},
        {"action": "fail", "machine": "beta", "command": "true"},
    ]}]}
    result = run_driver(guest, tmp_path, json.dumps(document))
    assert result.returncode == 1
    assert "(machine beta) failed first" in result.stderr  # `fail` of a succeeding command, at once
    assert "call 1 (machine alpha) failed too" in result.stderr
