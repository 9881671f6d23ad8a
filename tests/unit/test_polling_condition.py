"""polling_condition as upstream's: its two interval spellings, wait()'s two timeout spellings,
the entry count that keeps a condition from re-checking itself, and the log texts of a check.

The driver has no machines here: a condition that "runs a machine command" calls
``driver.check_polling_conditions()``, which is what a machine command does first.
"""

from __future__ import annotations

import datetime
import io

import pytest

from test_driver.driver import Driver
from test_driver.errors import RequestedAssertionFailed
from test_driver.logger import CompositeLogger, TerminalLogger
from test_driver.polling_condition import PollingCondition, PollingConditionError


@pytest.fixture
def log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def driver(tmp_path, log):
    driver = Driver([], [], "", tmp_path, CompositeLogger([TerminalLogger(log, colour=False)]))
    yield driver
    driver.cleanup()


def interval_of(poll) -> datetime.timedelta:
    return poll.condition.interval


def test_interval_is_a_timedelta_and_seconds_interval_its_older_name(driver):
    def ok() -> bool:
        return True

    assert interval_of(driver.polling_condition(ok)) == datetime.timedelta(seconds=2)
    assert interval_of(driver.polling_condition(interval=datetime.timedelta(seconds=5))(ok)) \
        == datetime.timedelta(seconds=5)
    assert interval_of(driver.polling_condition(ok, seconds_interval=3)) == datetime.timedelta(seconds=3)
    assert interval_of(driver.polling_condition(ok, seconds_interval=datetime.timedelta(milliseconds=500))) \
        == datetime.timedelta(milliseconds=500)
    with pytest.raises(TypeError, match="interval"):
        driver.polling_condition(ok, seconds_interval=1, interval=datetime.timedelta(seconds=1))
    with pytest.raises(TypeError, match="interval"):
        PollingCondition(ok, driver.logger, 1, interval=datetime.timedelta(seconds=1))
    assert PollingCondition(ok, driver.logger, 4).seconds_interval == 4.0


def test_a_condition_running_machine_commands_does_not_recurse_even_with_interval_zero(driver):
    calls = []

    @driver.polling_condition(seconds_interval=0)
    def service_up() -> bool:
        calls.append(1)
        driver.check_polling_conditions()  # the condition's own machine command
        return True

    with service_up:
        driver.check_polling_conditions()  # a command of the script
        assert calls == [1]
        driver.check_polling_conditions()  # interval 0: every command checks again
        assert calls == [1, 1]


def test_a_failing_condition_raises_with_upstreams_text_and_logs_upstreams_lines(driver, log):
    @driver.polling_condition(description="echo answers")
    def echo() -> bool:
        return False

    with echo:
        with pytest.raises(PollingConditionError, match="^Polling condition failed: echo answers$"):
            driver.check_polling_conditions()
        driver.check_polling_conditions()  # within the interval: not checked again
    assert not issubclass(PollingConditionError, RequestedAssertionFailed)  # a plain Exception, as upstream's
    text = log.getvalue()
    assert "Checking polling condition 'echo answers'" in text
    assert "(not called yet)" in text
    assert text.count("Polling condition failed: echo answers") == 1


def test_a_condition_that_raises_fails_and_one_returning_none_holds(driver, log):
    @driver.polling_condition
    def broken() -> None:
        """the broken one"""
        raise RuntimeError("boom")

    @driver.polling_condition(seconds_interval=0)
    def silent() -> None:
        pass

    assert not broken.condition.check() and broken.condition.description == "the broken one"
    assert silent.condition.check() and silent.condition.check()
    assert "Polling condition succeeded: silent" in log.getvalue()
    assert "Time since last: " in log.getvalue()


def test_wait_takes_timeout_or_timeout_seconds(driver, log):
    attempts = []

    @driver.polling_condition(description="third time lucky")
    def lucky() -> bool:
        attempts.append(1)
        return len(attempts) >= 3

    lucky.wait(timeout=datetime.timedelta(seconds=30))
    assert len(attempts) == 3
    assert "(third time lucky failure not fatal yet)" in log.getvalue()
    attempts.clear()
    lucky.wait(timeout_seconds=30)
    lucky.wait(datetime.timedelta(seconds=30))
    with pytest.raises(TypeError, match="timeout"):
        lucky.wait(timeout_seconds=1, timeout=datetime.timedelta(seconds=1))


def test_wait_checks_within_its_timeout_then_fails(driver, log):
    checks = 0

    @driver.polling_condition(description="never")
    def never() -> bool:
        nonlocal checks
        checks += 1
        return False

    with pytest.raises(RequestedAssertionFailed):
        never.wait(timeout=datetime.timedelta(seconds=1.5))
    assert checks == 2 and log.getvalue().count("(never failure not fatal yet)") == 2
    with pytest.raises(RequestedAssertionFailed):  # as nixpkgs' retry: a zero timeout checks nothing
        never.wait(timeout=datetime.timedelta(0))
    assert checks == 2
