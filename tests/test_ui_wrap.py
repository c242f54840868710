"""The details pane's lines (ui/selection.py): split_lines is Rich's Text.split("\\n"), and
hang_wrap_lines the lines of hang_wrap, on the details every view shows for real machines."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.text import Text

from explorer.sources import load_source
from explorer.ui.selection import hang_wrap, hang_wrap_lines, split_lines
from explorer.ui.views import VIEW_TYPES, Analysis

MACHINES = ["builtin:amd-laptop-dgpu-usb4", "builtin:switch-no-acs", "tests/fixtures/qemu-boot/6.1/boot-busnum-none.tar.gz"]


def details_texts(spec: str, per_view: int = 12) -> list[Text]:
    a = Analysis(load_source(spec))
    out = []
    for view_type in VIEW_TYPES.values():
        view = view_type(a)
        todo = list(view.children(None))
        while todo and len(out) < per_view * len(VIEW_TYPES):
            key = todo.pop(0)
            todo.extend(view.children(key))
            out.append(view.details(key))
    return out


def lines(texts) -> list[tuple[str, list]]:
    return [(t.plain, list(t.spans)) for t in texts]


@pytest.mark.parametrize("spec", MACHINES)
def test_split_lines_and_hang_wrap_lines_agree_with_rich(spec, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)
    texts = details_texts(spec)
    assert texts
    for text in texts + [Text(""), Text("a\n"), Text.assemble(("ab", "bold"), "\n", ("cd\nef", "red"), "\n")]:
        assert lines(split_lines(text)) == lines(text.split("\n", include_separator=False))
        for width in (12, 20, 27, 40):
            wrapped = hang_wrap(text, width)
            assert lines(hang_wrap_lines(text, width)) == lines(wrapped.split("\n", include_separator=False))
            if width >= 20:
                assert all(len(line.plain) <= width for line in hang_wrap_lines(text, width))
