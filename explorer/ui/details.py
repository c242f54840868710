"""The details pane: text already wrapped to the pane, shown through Textual's line API.

A Static inside a scrolling container changes height with every device's text (about 100
lines, a different count for nearly every row), and a height change makes Textual lay out
and repaint the whole screen, twice. This pane keeps the text as lines and paints the
ones on screen: a cursor move costs the lines shown, not a layout. A layout happens only
when the scrollbar appears or goes (the text starts or stops fitting the pane).
"""

from __future__ import annotations

from rich.text import Text
from textual._segment_tools import line_pad
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget

from .selection import split_lines


class DetailsPane(ScrollView, can_focus=True):
    """Scrollable lines of text (the caller wraps them to the pane's width)."""

    DEFAULT_CSS = """
    DetailsPane { overflow-x: hidden; overflow-y: auto; }
    """

    def __init__(self, text: Text | None = None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._text: Text | None = Text("")
        self._lines: list[Text] = []
        #: Rendered lines by index, for one width and style (cleared when either changes).
        self._strips: dict[int, Strip] = {}
        self._strips_for: tuple[int, object] | None = None
        self.set_text(text if text is not None else Text(""))

    @property
    def text(self) -> Text:
        """The text shown (as wrapped by the caller)."""
        if self._text is None:
            self._text = Text("\n").join(self._lines)
        return self._text

    def set_text(self, text: Text) -> None:
        self.set_lines(split_lines(text))
        self._text = text

    def set_lines(self, lines: list[Text]) -> None:
        """Show these lines (each already fits the pane: ``selection.hang_wrap_lines``)."""
        self._text = None
        self._lines = lines or [Text("")]
        self._strips.clear()
        size = Size(self.virtual_size.width, len(self._lines))
        if not self.is_mounted:
            self.virtual_size = size
            return
        # A new virtual size without a layout: scrollbars are updated here (a scrollbar that
        # appears or goes asks for the layout itself), the lines are repainted.
        self.set_reactive(Widget.virtual_size, size)
        self._scroll_update(size)
        self.scroll_y = self.validate_scroll_y(self.scroll_y)
        self.refresh()

    def notify_style_update(self) -> None:
        self._strips.clear()
        super().notify_style_update()

    #: Blank cells left and right of the text (inside the scrollbar, as a Static's padding
    #: inside a scrolling container sits).
    PAD = 1

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        style = self.visual_style
        if self._strips_for != (width, style):
            self._strips.clear()
            self._strips_for = (width, style)
        index = round(self.scroll_y) + y
        strip = self._strips.get(index)
        if strip is None:
            if 0 <= index < len(self._lines):
                self._render_from(index, max(self.size.height - y, 1), width, style)
                strip = self._strips[index]
            else:
                strip = Strip.blank(width, self._styles_cache.get_inner_outer(*self.background_colors)[0].rich_style)
        return strip.apply_offsets(0, index)

    def _render_from(self, start: int, count: int, width: int, style: object) -> None:
        """Render lines ``start`` .. ``start + count`` (the rest of the screen) in one pass, as
        a Static inside a scrolling container is drawn: Content from the Rich Text, strips at
        the width inside the padding, padded with the background."""
        block = self._lines[start:start + count]
        inner = max(width - self.PAD, 1)  # the text and the right padding, filled as one run
        back = self._styles_cache.get_inner_outer(*self.background_colors)[0].rich_style
        strips = Visual.to_strips(self, visualize(self, Text("\n").join(block), markup=False), inner, None, style, pad=True)
        if len(strips) != len(block):  # a line wider than the pane wrapped: one line at a time
            strips = []
            for line in block:
                one = Visual.to_strips(self, visualize(self, line, markup=False), inner, 1, style, pad=True)
                strips.append(one[0] if one else Strip.blank(inner, back))
        for i, strip in enumerate(strips):
            padded = line_pad(strip.adjust_cell_length(inner, back), self.PAD, 0, back)
            self._strips[start + i] = Strip(padded).crop_extend(0, width, back)
