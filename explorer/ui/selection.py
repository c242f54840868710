"""One selection shared by every view, and text wrapping that keeps the details' columns.

``Selection`` is what the user sees selected: the tree row under the cursor (``key``)
and the device that row stands for (``device``; a bridge's resources row stands for the
bridge, a group row for no single device). Every key acts on it, every view restores
it, and the details pane shows it; nothing else keeps a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text

from ..model import Address


@dataclass
class Selection:
    #: The row under the tree's cursor (an Address, a GroupKey, a BridgeResKey, ...).
    key: Any = None
    #: The device that row stands for, or None (a root bus, a group heading).
    device: Address | None = None
    #: The view the row belongs to.
    view: str = ""

    def set(self, key: Any, device: Address | None, view: str) -> bool:
        """Record a new selection; True when it changed."""
        changed = (key, device, view) != (self.key, self.device, self.view)
        self.key, self.device, self.view = key, device, view
        return changed


def _value_column(line: str) -> int:
    """Where a "  label      value" line's value starts (its continuation indent)."""
    lead = len(line) - len(line.lstrip(" "))
    i = line.find("  ", lead)
    while 0 <= i < len(line) and line[i] == " ":
        i += 1
    if lead < i < len(line) and i - lead <= 24:
        return i
    return lead + 2


def hang_wrap(text: Text, width: int) -> Text:
    """Wrap each line at word boundaries to ``width`` cells; continuation lines start under the
    line's value column, so two-column "label  value" lines stay aligned."""
    if width < 20:
        return text
    out = Text()
    lines = text.split("\n", include_separator=False)
    for n, line in enumerate(lines):
        if n:
            out.append("\n")
        plain = line.plain
        if len(plain) <= width:
            out.append_text(line)
            continue
        col = _value_column(plain)
        if width - col < 12:  # a narrow pane: a small indent leaves room for the value
            lead = len(plain) - len(plain.lstrip(" "))
            col = min(col, lead + 4)
        rest = line
        first = True
        while True:
            avail = width if first else width - col
            if len(rest.plain) <= avail:
                if not first:
                    out.append("\n" + " " * col)
                out.append_text(rest)
                break
            cut = rest.plain.rfind(" ", 0, avail + 1)
            if cut <= 0:
                cut = avail
            piece = rest[:cut]
            piece.rstrip()
            if not first:
                out.append("\n" + " " * col)
            out.append_text(piece)
            rest = rest[cut:]
            stripped = len(rest.plain) - len(rest.plain.lstrip(" "))
            rest = rest[stripped:]
            first = False
            if not rest.plain:
                break
    return out
