"""Assertion helpers a test script gets as symbols: ``t`` (unittest's assertions) and
``must_raise`` (the one nixpkgs' own driver tests use)."""

from __future__ import annotations

import re
import unittest
from contextlib import contextmanager
from typing import Iterator

from .errors import RequestedAssertionFailed


class AssertionTester(unittest.TestCase):
    """The test symbol ``t``: unittest's assertions (``t.assertEqual(a, b)``...) whose failures
    are ``RequestedAssertionFailed``, reported like a failed ``succeed``."""

    failureException = RequestedAssertionFailed

    def __init__(self) -> None:
        super().__init__(methodName="runTest")

    def runTest(self) -> None:  # noqa: N802  (unittest's name) a TestCase needs one to exist
        """Not a test of its own."""


@contextmanager
def must_raise(pattern: str, exception_class: type[BaseException] = Exception) -> Iterator[None]:
    """The block must raise an ``exception_class`` whose text matches the regular
    expression ``pattern`` (searched anywhere in it); the exception is then swallowed.
    Otherwise ``RequestedAssertionFailed`` says what went wrong: no exception, one of
    another class (chained to it), or a text that does not match."""
    try:
        yield
    except BaseException as exc:  # noqa: B036  (a class the caller names may be any)
        if not isinstance(exc, exception_class):
            raise RequestedAssertionFailed(
                f"{type(exc).__name__}({str(exc)!r}) is not an instance of {exception_class.__name__}") from exc
        if re.search(pattern, str(exc)) is None:
            raise RequestedAssertionFailed(
                f"the exception's string {str(exc)!r} did not match {pattern!r}") from exc
        return
    raise RequestedAssertionFailed(f"no exception was raised (expected {exception_class.__name__} "
                                   f"matching {pattern!r})")
