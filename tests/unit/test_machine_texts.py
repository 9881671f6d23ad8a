"""BaseMachine methods built on execute(): the commands they run, their arguments and their
errors, as upstream's, checked against a machine whose execute() answers from a script."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import pytest
from fake_machine import FakeMachine

from test_driver.errors import RequestedAssertionFailed, WaitTimeout
from test_driver.machine.base import retry


class Scripted(FakeMachine):
    """Answers each command with ``answer(command)``; records what it was asked."""


def test_sleep_takes_a_duration_or_the_older_secs(tmp_path: Path):
    m = Scripted(tmp_path, lambda command: (0, ""))
    m.sleep(duration=dt.timedelta(seconds=1.5))
    m.sleep(2)
    assert [command for command, _ in m.asked] == ["sleep 1.5", "sleep 2.0"]
    with pytest.raises(TypeError):
        m.sleep(1, duration=dt.timedelta(seconds=1))
    with pytest.raises(TypeError):
        m.sleep()


def test_require_unit_state_says_what_upstream_says(tmp_path: Path):
    m = Scripted(tmp_path, lambda command: (0, "Id=x.service\nActiveState=inactive\n"))
    with pytest.raises(RequestedAssertionFailed) as caught:
        m.require_unit_state("x.service")
    assert str(caught.value) == ("Expected unit 'x.service' to to be in state 'active' "
                                 "but it is in state 'inactive'")


def test_get_unit_property_failures_as_upstream(tmp_path: Path):
    m = Scripted(tmp_path, lambda command: (1, ""))
    with pytest.raises(RequestedAssertionFailed, match='^retrieving systemctl property "ActiveState" for unit '
                                                      '"x.service" under user "alice" failed with exit code 1$'):
        m.get_unit_property("x.service", "ActiveState", "alice")
    garbled = Scripted(tmp_path, lambda command: (0, "nonsense\n"))
    with pytest.raises(AssertionError, match="produced invalid output"):
        garbled.get_unit_property("x.service", "ActiveState")


def test_an_attempt_of_wait_until_succeeds_gets_what_is_left_or_attempt_timeout(tmp_path: Path):
    results = iter([(1, "no"), (0, "yes\n")])
    m = Scripted(tmp_path, lambda command: next(results))
    assert m.wait_until_succeeds("probe", timeout=dt.timedelta(seconds=30)) == "yes\n"
    (first, bound1), (second, bound2) = m.asked
    assert first == second == "probe"
    assert isinstance(bound1, dt.timedelta) and isinstance(bound2, dt.timedelta)
    assert 29 < bound1.total_seconds() <= 30 and 28 < bound2.total_seconds() < 29.5, m.asked
    m.asked.clear()
    results = iter([(0, "yes\n")])
    m.wait_until_succeeds("probe", timeout=dt.timedelta(seconds=30), attempt_timeout=dt.timedelta(seconds=2))
    assert m.asked == [("probe", dt.timedelta(seconds=2))]
    m.asked.clear()
    results = iter([(0, "yes\n")])
    m.wait_until_succeeds("probe", timeout=None)
    assert m.asked == [("probe", None)]  # no limit at all


def test_a_probe_is_bounded_by_what_is_left_of_the_wait(tmp_path: Path):
    m = Scripted(tmp_path, lambda command: (0, "ActiveState=active\n"))
    m.wait_for_open_port(80, timeout=dt.timedelta(seconds=5))
    m.wait_for_file("/x", timeout=dt.timedelta(seconds=5))
    m.wait_for_unit("x", timeout=dt.timedelta(seconds=5))
    m.wait_until_tty_matches(1, "Active", timeout=dt.timedelta(seconds=5))
    bounds = [timeout for _, timeout in m.asked]
    assert len(bounds) == 4 and all(isinstance(b, dt.timedelta) and 4 < b.total_seconds() <= 5 for b in bounds), bounds


def test_a_zero_timeout_makes_no_probe(tmp_path: Path):
    m = Scripted(tmp_path, lambda command: (0, ""))
    with pytest.raises(RequestedAssertionFailed):
        m.wait_for_file("/x", timeout=dt.timedelta(0))
    assert m.asked == []


DEPRECATED = "(): passing a bare int/float as a duration is deprecated. Use datetime.timedelta instead."


def test_numbers_as_durations_warn_as_upstreams_and_defaults_do_not(tmp_path: Path):
    m = Scripted(tmp_path, lambda command: (0, "ActiveState=active\n"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.execute("true")
        m.succeed("true")
        m.wait_for_unit("x")
        m.wait_until_succeeds("true")
        m.wait_for_file("/f", timeout=dt.timedelta(seconds=1))
        m.sleep(duration=dt.timedelta(seconds=1))
    assert [str(w.message) for w in caught] == []  # timedelta defaults and arguments: quiet
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.execute("true", timeout=5)
        m.succeed("true", timeout=5)
        m.wait_for_unit("x", timeout=5)
        m.wait_until_succeeds("true", timeout=5)
        m.wait_for_open_port(80, timeout=5)
        m.sleep(1)
        retry(lambda _remaining: True, timeout_seconds=5)
    texts = [str(w.message) for w in caught]
    assert all(w.category is UserWarning for w in caught)
    assert texts == [
        "execute" + DEPRECATED,
        "succeed" + DEPRECATED, "execute" + DEPRECATED,
        "wait_for_unit" + DEPRECATED,
        "wait_until_succeeds" + DEPRECATED,  # its attempts get what is left, a timedelta
        "wait_for_open_port" + DEPRECATED,
        "sleep(): The 'secs' argument is deprecated. Use 'duration' instead.",
        "retry(): The 'timeout_seconds' argument is deprecated. Use 'timeout' instead.",
    ]


def test_window_names_are_cut_out_as_upstreams_sed_does():
    """get_window_names' sed program, run here on xwininfo-shaped lines: as upstream's, a name
    holding a backslash is left out (its bracket expression excludes backslashes too)."""
    import subprocess

    from test_driver.machine.x11 import SED_WINDOW_NAMES

    lines = ('     0x1e00007 "xterm": ("xterm" "XTerm")  484x316+0+0\n'
             '  0x2 "a\\b": ("x" "y")\n     0x3 (has no name)\n')
    names = subprocess.run("sed " + SED_WINDOW_NAMES, shell=True, input=lines, capture_output=True, text=True)
    assert names.stdout == "xterm\n"


def test_a_probe_cut_by_the_waits_deadline_ends_in_the_waits_timeout(tmp_path: Path):
    """The last probe of a wait gets what is left, and may be stopped (status 124): the wait
    must then fail as a wait ("action timed out"), not as a failed command."""
    m = Scripted(tmp_path, lambda command: (124, ""))
    with pytest.raises(WaitTimeout, match="action timed out"):
        m.wait_for_unit("x", timeout=dt.timedelta(seconds=0.3))
    with pytest.raises(WaitTimeout, match="action timed out"):
        m.wait_for_unit_active_state("x", "active", timeout=dt.timedelta(seconds=0.3))
