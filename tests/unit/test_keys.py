"""Characters and key names to QEMU sendkey names."""

import pytest

from test_driver.keys import key_for


@pytest.mark.parametrize("given, sent", [
    ("a", "a"), ("7", "7"), ("A", "shift-a"), ("\n", "ret"), (" ", "spc"), ("-", "minus"),
    ("_", "shift-minus"), ("?", "shift-slash"), ("!", "shift-1"), ('"', "shift-apostrophe"),
    ("ctrl-alt-delete", "ctrl-alt-delete"), ("0x0C", "0x0C"), ("shift-0x0C", "shift-0x0C"),
    ("enter", "ret"), ("ctrl-Enter", "ctrl-ret"), ("space", "spc"), ("alt-f2", "alt-f2"),
])
def test_key_for(given, sent):
    assert key_for(given) == sent
