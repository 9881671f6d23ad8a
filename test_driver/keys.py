"""Characters to QEMU ``sendkey`` names (US keyboard layout, QEMU qcode names)."""

from __future__ import annotations

import string

_UNSHIFTED = {"-": "minus", "=": "equal", "[": "bracket_left", "]": "bracket_right",
              ";": "semicolon", "'": "apostrophe", "`": "grave_accent", "\\": "backslash",
              ",": "comma", ".": "dot", "/": "slash", " ": "spc", "\n": "ret", "\t": "tab"}
# A shifted character is the shift of the key beneath it on a US keyboard.
_SHIFTED = dict(zip('_+{}:"~|<>?!@#$%^&*()', "-=[];'`\\,./1234567890"))


# Names people type for keys QEMU spells otherwise (in combinations too: "ctrl-enter").
ALIASES = {"enter": "ret", "return": "ret", "space": "spc", "escape": "esc", "del": "delete",
           "ins": "insert", "pageup": "pgup", "pagedown": "pgdn", "control": "ctrl", "win": "meta_l",
           "super": "meta_l", "bksp": "backspace"}


def key_for(char: str) -> str:
    """The sendkey name for one character; a key name or combination (``ctrl-alt-delete``,
    ``0x0C``) passes through, with common aliases (``enter``, ``space``...) translated."""
    if len(char) != 1:
        return "-".join(ALIASES.get(part.lower(), part) for part in char.split("-"))
    if char in string.ascii_lowercase or char in string.digits:
        return char
    if char in string.ascii_uppercase:
        return f"shift-{char.lower()}"
    if char in _UNSHIFTED:
        return _UNSHIFTED[char]
    if char in _SHIFTED:
        return f"shift-{key_for(_SHIFTED[char])}"
    return char
