"""test_driver.duration: the names upstream's module offers to code outside the driver."""

from __future__ import annotations

import datetime

import pytest

from test_driver import deadline, duration
from test_driver.duration import Duration, as_seconds, as_timedelta


def test_as_timedelta_takes_a_timedelta_or_seconds():
    five = datetime.timedelta(seconds=5)
    assert as_timedelta(five) is five
    assert as_timedelta(5) == five
    assert as_timedelta(0.25) == datetime.timedelta(milliseconds=250)
    assert as_timedelta(-1) == datetime.timedelta(seconds=-1)


@pytest.mark.parametrize("wrong", [True, False, None, "5", [5]])
def test_as_timedelta_refuses_bools_and_other_types(wrong):
    with pytest.raises(TypeError, match="duration"):
        as_timedelta(wrong)


def test_as_seconds_is_a_float_through_a_timedelta():
    assert as_seconds(datetime.timedelta(minutes=2)) == 120.0
    assert as_seconds(3) == 3.0 and isinstance(as_seconds(3), float)
    assert as_seconds(1 / 3) == 0.333333  # a timedelta keeps microseconds, as upstream's does
    with pytest.raises(TypeError):
        as_seconds(True)


def test_duration_is_the_union_of_its_forms():
    for value in (1, 1.5, datetime.timedelta(seconds=1)):
        assert isinstance(value, Duration)
    assert not isinstance("1", Duration)


def test_one_definition_shared_with_deadline():
    assert deadline.Duration is duration.Duration
    assert deadline.seconds is duration.seconds
    assert duration.seconds(None) is None and duration.seconds(datetime.timedelta(seconds=2)) == 2.0
