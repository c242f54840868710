"""One selection shared by every view, and text wrapping that keeps the details' columns.

``Selection`` is what the user sees selected: the tree row under the cursor (``key``)
and the device that row stands for (``device``; a bridge's resources row stands for the
bridge, a group row for no single device). Every key acts on it, every view restores
it, and the details pane shows it; nothing else keeps a copy.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from rich.text import Span, Text

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


def split_lines(text: Text) -> list[Text]:
    """``text.split("\\n")`` with one pass over the styled spans (Rich's walks every span for
    every line: a 100-line details text is split on each cursor move)."""
    plain = text.plain
    lines = plain.split("\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # as Rich does: no blank line after a final newline
    out = [Text(line, style=text.style, justify=text.justify, overflow=text.overflow, no_wrap=text.no_wrap,
                end=text.end, tab_size=text.tab_size) for line in lines]
    starts = []
    pos = 0
    for line in lines:
        starts.append(pos)
        pos += len(line) + 1
    for span in text.spans:
        i = bisect_right(starts, span.start) - 1
        while i < len(lines) and starts[i] < span.end:
            a = max(span.start, starts[i]) - starts[i]
            b = min(span.end, starts[i] + len(lines[i])) - starts[i]
            if b > a:
                out[i].spans.append(Span(a, b, span.style))
            i += 1
    return out


def hang_wrap_lines(text: Text, width: int) -> list[Text]:
    """The lines of ``hang_wrap(text, width)``."""
    lines = split_lines(text)
    if width < 20:
        return lines
    out: list[Text] = []
    for line in lines:
        plain = line.plain
        if len(plain) <= width:
            out.append(line)
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
                out.append(rest if first else Text(" " * col).append_text(rest))
                break
            cut = rest.plain.rfind(" ", 0, avail + 1)
            if cut <= 0:
                cut = avail
            piece = rest[:cut]
            piece.rstrip()
            out.append(piece if first else Text(" " * col).append_text(piece))
            rest = rest[cut:]
            stripped = len(rest.plain) - len(rest.plain.lstrip(" "))
            rest = rest[stripped:]
            first = False
            if not rest.plain:
                break
    return out


def hang_wrap(text: Text, width: int) -> Text:
    """Wrap each line at word boundaries to ``width`` cells; continuation lines start under the
    line's value column, so two-column "label  value" lines stay aligned."""
    if width < 20:
        return text
    return Text("\n").join(hang_wrap_lines(text, width))
