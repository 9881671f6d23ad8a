"""The HTML run report (issue 21) from real runs on the tiny guest, read back through a real
browser: Debian's chromium, headless, offline, its rendered DOM and a screenshot of the page
(kept in $TD_ARTIFACT_DIR when set)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pexpect
import pytest
import tiny

from e2e_support import driver_running, spawned

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (scripts/setup.sh installs it)")


def browse(page: Path, work: Path, screenshot: str, fragment: str = "") -> str:
    """The DOM chromium renders from ``page`` with no network, and a screenshot of it."""
    # a short TMPDIR: chromium's singleton socket path must fit a unix socket address
    profile = Path(tempfile.mkdtemp(prefix="td-chromium-", dir="/tmp"))
    flags = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
             "--window-size=1200,1600"]
    env = {**os.environ, "TMPDIR": str(profile)}
    try:
        browsed = subprocess.run([*flags, "--dump-dom", page.as_uri() + fragment], capture_output=True, text=True,
                                 timeout=120, env=env)
        assert browsed.returncode == 0, browsed.stderr[-2000:]
        shots = Path(os.environ.get("TD_ARTIFACT_DIR", work))
        shots.mkdir(parents=True, exist_ok=True)
        subprocess.run([*flags, f"--screenshot={shots / screenshot}", page.as_uri()], capture_output=True,
                       timeout=120, check=True, env=env)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert (shots / screenshot).stat().st_size > 10_000
    return browsed.stdout


def text_of(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', dom, re.S)
    assert match, f"no element {element_id}"
    return match.group(1)


PASSING = r"""
start_all()
alpha.succeed("echo '<script>alert(1)</script>'")
beta.wait_until_succeeds("true")
with subtest("pictures"):
    alpha.screenshot("screen")
"""


def test_a_passing_run_with_two_machines_a_screenshot_and_hostile_output(run, tmp_path):
    result = run(PASSING, names=["alpha", "beta"], args=["--html-report", "report.html", "--json-log", "ev.jsonl"])
    assert result.returncode == 0, result.stderr[-2000:]
    dom = browse(tmp_path / "report.html", tmp_path, "report-passing.png")
    assert text_of(dom, "verdict") == "PASSED"
    assert re.findall(r'<g class="lane" data-lane="([^"]+)"', dom) == ["script", "alpha", "beta"]
    assert re.search(r'<img class="screenshot" [^>]*src="data:image/png;base64,', dom)
    # first a one-look summary of the subtests; the run's files listed as links
    summary = dom.split('id="subtests"')[1].split("</table>")[0]
    assert re.search(r'<td><a href="#ev-\d+">pictures</a></td><td>passed</td><td>[0-9.]+</td>', summary)
    files = dom.split('id="files"')[1].split("</ul>")[0]
    assert '<a href="screen.png">screen.png</a>' in files
    assert "report.html" not in files and ".jsonl" not in files.replace("ev.jsonl", "")
    # the guest's <script> is text: escaped, and the page's own script is the only one
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert dom.count("<script") == 1
    assert "http://" not in dom.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    # a wait starts folded; following a timeline bar's link to it opens it
    wait = re.search(r'<details id="(ev-\d+)" class="nest">\s*<summary>waiting for success: true', dom)
    assert wait, "the wait is not folded"
    opened = browse(tmp_path / "report.html", tmp_path, "report-link.png", "#" + wait.group(1))
    assert f'<details id="{wait.group(1)}" class="nest" open="">' in opened
    assert f'href="#{wait.group(1)}"' in dom  # its bar on the timeline leads there
    # the renderer command on the saved event log makes the same page
    again = tmp_path / "again.html"
    subprocess.run([sys.executable, "-c", "from test_driver.html_report import main; main()",
                    str(tmp_path / "ev.jsonl"), "-o", str(again)], check=True, timeout=60)
    def without_files(page: str) -> str:  # the list of files is read when the page is made
        return re.sub(r'<ul id="files">.*?</ul>', "", page, flags=re.S)
    assert without_files(again.read_text()) == without_files((tmp_path / "report.html").read_text())


KILLED = r"""
import os, signal
start_all()
machine.succeed("true")
with subtest("the machine goes away"):
    os.kill(machine.pid, signal.SIGKILL)
    machine.succeed("echo never")
"""


def test_a_vm_killed_in_a_subtest(run, tmp_path):
    # as in a Nix build whose output is the output directory: the page is a Hydra build product
    result = run(KILLED, args=["--html-report", "report.html"],
                 env={"NIX_BUILD_TOP": str(tmp_path), "out": str(tmp_path)})
    assert result.returncode == 1
    products = (tmp_path / "nix-support" / "hydra-build-products").read_text()
    assert products == f"report test-report {tmp_path / 'report.html'}\n"
    dom = browse(tmp_path / "report.html", tmp_path, "report-killed.png")
    assert text_of(dom, "verdict") == "FAILED"
    assert text_of(dom, "failed-subtest") == "the machine goes away"
    assert 'machine.succeed("echo never")' in dom.split('id="failing-line"')[1].split("</pre>")[0]
    assert "post-mortem of machine" in dom and 'class="crash"' in dom
    assert re.search(r'<tr class="sub-failed"><td><a href="#ev-\d+">the machine goes away</a></td><td>failed</td>', dom)
    assert '<a href="machine-post-mortem.txt">machine-post-mortem.txt</a>' in dom
    assert not list(tmp_path.glob(".*.events.jsonl"))  # the report's own event file is gone


def test_the_global_timeout(run, tmp_path):
    result = run("start_all()\nmachine.succeed('sleep 120')\n",
                 args=["--html-report", "report.html", "--global-timeout", "4"])
    assert result.returncode == -signal.SIGTERM
    dom = browse(tmp_path / "report.html", tmp_path, "report-timeout.png")
    assert text_of(dom, "verdict") == "TIMED OUT"
    assert "sleep 120" in dom


def test_ctrl_c(guest, tmp_path, private_tmp):
    # asked for through the environment, as the nix package's wrapper does
    with driver_running(guest, tmp_path, "machine", "machine.succeed('sleep 120')\n", "must succeed: sleep 120",
                        env={"htmlReport": "report.html"}) as proc:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == -signal.SIGINT
    dom = browse(tmp_path / "report.html", tmp_path, "report-interrupted.png")
    assert text_of(dom, "verdict") == "INTERRUPTED"


def test_bad_input_before_any_vm(run, tmp_path):
    result = run("start_all()\nmachine.succeed('true'\n", args=["--html-report", "report.html"])
    assert result.returncode == 2
    dom = browse(tmp_path / "report.html", tmp_path, "report-bad-input.png")
    assert text_of(dom, "verdict") == "ERROR"
    assert "syntax error" in text_of(dom, "exception")


def test_bad_event_log_is_named(tmp_path):
    result = subprocess.run([sys.executable, "-c", "from test_driver.html_report import main; main()",
                             str(tmp_path / "missing.jsonl")], capture_output=True, text=True)
    assert result.returncode == 2 and "no event log at" in result.stderr


def test_each_run_of_watch_has_its_page(guest, tmp_path, private_tmp):
    """--watch writes the report (and the JUnit XML) anew for each run; the page says which run."""
    start = tiny.write_start_script(tmp_path, "machine", guest)
    test = tmp_path / "t.py"
    test.write_text("machine.succeed('true')\nassert False, 'first'\n")
    command = [sys.executable, "-m", "test_driver.cli_main", "--watch", "--start-scripts", str(start),
               "-o", str(tmp_path), "--html-report", "report.html", "--junit-xml", "junit.xml", str(test)]
    with spawned(command) as child:
        child.expect("watch: run 1 failed")
        child.expect("watch: waiting for changes")
        assert text_of(browse(tmp_path / "report.html", tmp_path, "report-watch-1.png"), "verdict") == "FAILED"
        assert "first" in (tmp_path / "junit.xml").read_text()
        test.write_text("with subtest('second'):\n    machine.succeed('true')\n")
        child.expect("watch: run 2 passed")
        child.expect("watch: waiting for changes")
        child.kill(signal.SIGINT)
        child.expect(pexpect.EOF)
    dom = browse(tmp_path / "report.html", tmp_path, "report-watch-2.png")
    assert text_of(dom, "verdict") == "PASSED"
    assert text_of(dom, "watch-run") == "watch run 2"
    junit = (tmp_path / "junit.xml").read_text()
    assert "second" in junit and "first" not in junit


def test_console_lines_are_shown_without_control_sequences(guest, tmp_path, private_tmp):
    """SeaBIOS clears the screen and a guest program colours its output: the terminal's log
    and the report show the text alone."""
    start = tiny.write_start_script(tmp_path, "machine", guest, seabios=True)
    test = tmp_path / "t.py"
    test.write_text("machine.succeed(r\"printf '\\033[1;31mred-%d\\033[0m done\\n' $((6*7)) >&2\")\n")
    result = subprocess.run([sys.executable, "-m", "test_driver.cli_main", "--start-scripts", str(start),
                             "-o", str(tmp_path), "--html-report", "report.html", str(test)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    serial = [line for line in result.stderr.splitlines() if line.startswith("machine # ")]
    assert any("SeaBIOS" in line for line in serial), serial[:5]
    assert "machine # red-42 done" in serial
    assert not [line for line in serial if "\x1b" in line or "[2J" in line]
    dom = browse(tmp_path / "report.html", tmp_path, "report-console.png")
    console = dom.split('id="serial-machine"')[1].split("</pre>")[0]
    assert "SeaBIOS" in console and "red-42 done" in console
    assert "\x1b" not in console and "[2J" not in console and "[1;31m" not in console
