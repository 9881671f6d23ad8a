"""Durations as the driver's API takes them: seconds (an int or a float) or a ``timedelta``.

Upstream's driver offers these names as ``test_driver.duration``, and code outside
the driver (machine subclasses, helper libraries of a test) imports them from there:

- ``Duration``: the type of a duration argument;
- ``as_timedelta(d)``: ``d`` as a ``datetime.timedelta`` (a number is seconds);
- ``as_seconds(d)``: ``d`` as a float number of seconds.

Both refuse a ``bool`` and anything that is not a number or a ``timedelta`` with a
``TypeError``, as upstream's do.  ``seconds()`` is the driver's own, more lenient
conversion (``None`` stays ``None``, meaning no limit); ``test_driver.deadline``
re-exports it together with ``Duration``.
"""

from __future__ import annotations

import datetime
import warnings
from typing import Union

Duration = Union[datetime.timedelta, int, float]
"""A duration: a ``datetime.timedelta``, or a number of seconds."""

__all__ = ["Duration", "as_seconds", "as_timedelta", "seconds"]

FIFTEEN_MINUTES = datetime.timedelta(minutes=15)
"""The default timeout of commands and waits, as upstream's."""


def seconds(timeout: Duration | None) -> float | None:
    """Timeouts are seconds (int/float) or a ``datetime.timedelta``; None (no limit) stays None."""
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    return float(timeout)


def as_timedelta(duration: Duration) -> datetime.timedelta:
    """``duration`` as a ``datetime.timedelta``: a timedelta is returned as it is, a number
    is taken as seconds.  A ``bool``, ``None`` or any other type raises ``TypeError``."""
    if isinstance(duration, datetime.timedelta):
        return duration
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        raise TypeError(f"a duration is a datetime.timedelta or a number of seconds, "
                        f"not {type(duration).__name__} {duration!r}")
    return datetime.timedelta(seconds=duration)


def warn_if_number(duration: Duration | None, caller: str) -> None:
    """Upstream's deprecation warning (a ``UserWarning``) for a bare number given as a
    duration to ``caller``; Python shows each text once, as upstream's."""
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        warnings.warn(f"{caller}(): passing a bare int/float as a duration is deprecated. "
                      "Use datetime.timedelta instead.")


def warn_old_argument(value: Duration, caller: str, old: str, new: str) -> None:
    """Upstream's deprecation warning for an argument's older name given a number (a
    timedelta there is quiet)."""
    if not isinstance(value, datetime.timedelta):
        warnings.warn(f"{caller}(): The '{old}' argument is deprecated. Use '{new}' instead.")


def as_seconds(duration: Duration) -> float:
    """``duration`` as a float number of seconds, through ``as_timedelta`` (so with its
    checks, and rounded to the microsecond as a ``timedelta`` is)."""
    converted = seconds(as_timedelta(duration))
    assert converted is not None  # only None gives None
    return converted
