"""test_script() reads the script file again; local modules it imports come afresh when changed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from test_driver.driver import Driver
from test_driver.errors import DriverError
from test_driver.logger import CompositeLogger


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A script beside its helper module; it appends what it saw to ``seen``."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "td_helper_mod.py").write_text("value = 1\n")
    test = work / "t.py"
    test.write_text("from td_helper_mod import value\nseen.append(('first', value))\n")
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr("builtins.seen", seen, raising=False)
    yield test, seen
    sys.modules.pop("td_helper_mod", None)
    if str(work) in sys.path:
        sys.path.remove(str(work))


def make_driver(test: Path, text: str | None = None) -> Driver:
    return Driver([], [], text if text is not None else test.read_text(), test.parent, CompositeLogger([]),
                  test_script_path=str(test))


def test_the_current_text_runs_and_changed_helpers_are_imported_afresh(script) -> None:
    test, seen = script
    with make_driver(test) as driver:
        driver.test_script()
        driver.test_script()
        (test.parent / "td_helper_mod.py").write_text("value = 2\n")
        driver.test_script()
        test.write_text("from td_helper_mod import value\nseen.append(('second', value))\n")
        driver.test_script()
    assert seen == [("first", 1), ("first", 1), ("first", 2), ("second", 2)]


def test_a_syntax_error_in_the_edit_keeps_nothing_half_read(script) -> None:
    test, seen = script
    with make_driver(test) as driver:
        test.write_text("seen.append(('broken'\n")
        with pytest.raises(DriverError, match="line 1"):
            driver.test_script()
        with pytest.raises(DriverError, match="line 1"):  # read again, not the old text run silently
            driver.test_script()
        test.write_text("seen.append(('fixed', 0))\n")
        driver.test_script()
    assert seen == [("fixed", 0)]


def test_a_script_given_as_text_is_run_as_given(script) -> None:
    test, seen = script
    with make_driver(test, "seen.append(('text', 0))\n") as driver:
        assert driver.script_file is None  # the file says something else
        test.write_text("seen.append(('file', 0))\n")
        driver.test_script()
    assert seen == [("text", 0)]
