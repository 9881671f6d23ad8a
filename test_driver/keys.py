"""Characters to QEMU ``sendkey`` names (US keyboard layout, QEMU qcode names)."""

from __future__ import annotations

import string

_UNSHIFTED = {"-": "minus", "=": "equal", "[": "bracket_left", "]": "bracket_right",
              ";": "semicolon", "'": "apostrophe", "`": "grave_accent", "\\": "backslash",
              ",": "comma", ".": "dot", "/": "slash", " ": "spc", "\n": "ret", "\t": "tab"}
# A shifted character is the shift of the key beneath it on a US keyboard.
_SHIFTED = dict(zip('_+{}:"~|<>?!@#$%^&*()', "-=[];'`\\,./1234567890"))


def key_for(char: str) -> str:
    """The sendkey name for one character; other strings (e.g. "ctrl-alt-delete") pass through."""
    if len(char) != 1:
        return char
    if char in string.ascii_lowercase or char in string.digits:
        return char
    if char in string.ascii_uppercase:
        return f"shift-{char.lower()}"
    if char in _UNSHIFTED:
        return _UNSHIFTED[char]
    if char in _SHIFTED:
        return f"shift-{key_for(_SHIFTED[char])}"
    return char
