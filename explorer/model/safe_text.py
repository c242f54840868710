"""Text from sources made safe for a terminal: control characters shown, never obeyed.

Device, vendor and driver names, file names and warnings come from files anyone can
write; printed raw, ``\\x1b]0;...\\x07\\x1b[2J`` retitles and clears the terminal and a
``\\r`` rewrites the line. :func:`clean` replaces every C0 and C1 control character (but
tab and newline), DEL, the Unicode line/paragraph separators and the bidirectional
overrides by a visible escape (``\\x1b``, ``\\u202e``). :func:`one_line` also escapes
newlines, for messages that must stay one line.
"""

from __future__ import annotations

import re

__all__ = ["clean", "one_line", "has_control"]


def _esc(c: int) -> str:
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


_BAD = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
        0x200E, 0x200F, 0x061C, 0xFEFF]
_TABLE = {c: _esc(c) for c in _BAD if c not in (0x09, 0x0A)}
_TABLE_ONE = {**_TABLE, 0x0A: "\\n", 0x09: " "}
_BAD_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _BAD if c not in (0x09, 0x0A)) + "]")


def has_control(text: str) -> bool:
    """True when ``text`` holds a character :func:`clean` would escape (tab and newline aside)."""
    return _BAD_RE.search(text) is not None


def clean(text: str) -> str:
    """``text`` with control characters (but tab and newline) escaped visibly."""
    if text.isprintable() or not has_control(text):
        return text
    return text.translate(_TABLE)


def one_line(text: str) -> str:
    """``text`` as one line: control characters and newlines escaped visibly."""
    if text.isprintable():
        return text
    return text.translate(_TABLE_ONE)
