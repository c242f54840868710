"""Modal dialogs: one base class that fits any terminal (down to 80x24), scrolls inside
itself and keeps its buttons on screen; ask, confirm, choose, pick, help and export.

Every dialog is a ``Dialog``: a title, a scrolling body the subclass fills
(``compose_body``) and a row of buttons (``BUTTONS``) that stays visible. The frame is
at most ``MAX_WIDTH`` columns and never wider or taller than the screen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option


class Dialog(ModalScreen[Any]):
    """Base of every dialog: title, scrolling body, buttons that stay on screen.

    Subclasses set ``BUTTONS`` ((label, id, variant) tuples), implement
    ``compose_body`` and handle ``on_button(id)``; escape closes with ``None``.
    """

    MAX_WIDTH: ClassVar[int] = 96
    BUTTONS: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    BINDINGS = [Binding("escape", "cancel", "Close")]
    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > #frame {
        width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    Dialog #dialog-title { text-style: bold; height: auto; }
    Dialog #body { height: auto; }
    Dialog #buttons { height: auto; align-horizontal: right; }
    Dialog #buttons Button { margin-left: 1; }
    Dialog .hint { color: $text-muted; }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="frame"):
            yield Static(Text(self.title_text, style="bold"), id="dialog-title")
            with VerticalScroll(id="body"):
                yield from self.compose_body()
            if self.BUTTONS:
                with Horizontal(id="buttons"):
                    for label, bid, variant in self.BUTTONS:
                        yield Button(label, id=bid, variant=variant, compact=True)  # type: ignore[arg-type]

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """Never wider or taller than the screen: the body scrolls, the buttons stay."""
        width = min(self.MAX_WIDTH, max(20, self.size.width))
        self.query_one("#frame").styles.max_width = width
        inner = max(10, width - 4)
        title_rows = max(1, -(-len(self.title_text) // inner))
        chrome = 2 + title_rows + (1 if self.BUTTONS else 0)  # border, title, one row of compact buttons
        self.query_one("#body").styles.max_height = max(3, self.size.height - chrome)

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        event.stop()
        self.on_button(event.button.id or "")

    def on_button(self, button_id: str) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class AskDialog(Dialog):
    """One line of input; enter accepts, escape cancels."""

    BUTTONS = (("Cancel", "cancel", "default"), ("OK", "ok", "primary"))

    def __init__(self, title: str, hint: str = "", value: str = "", placeholder: str = "",
                 suggester: Suggester | None = None) -> None:
        super().__init__(title)
        self.hint = hint
        self.value = value
        self.placeholder = placeholder
        self.suggester = suggester

    def compose_body(self) -> ComposeResult:
        if self.hint:
            yield Static(Text(self.hint), classes="hint")
        yield Input(value=self.value, placeholder=self.placeholder, id="answer", suggester=self.suggester)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def on_button(self, button_id: str) -> None:
        self.dismiss(self.query_one(Input).value.strip() or None if button_id == "ok" else None)


class ConfirmDialog(Dialog):
    """A yes/no question; y and n answer, escape says no."""

    BINDINGS = [Binding("escape,n", "no", "No"), Binding("y", "yes", "Yes")]
    MAX_WIDTH = 72

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__("Please confirm")
        self.question = question
        self.BUTTONS = ((no, "no", "default"), (yes, "yes", "warning"))  # type: ignore[misc]

    def compose_body(self) -> ComposeResult:
        yield Static(Text(self.question))

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#no", Button).focus()

    def on_button(self, button_id: str) -> None:
        self.dismiss(button_id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ChoiceDialog(Dialog):
    """A question with several answers; each answer's key is shown on its button.

    ``choices`` are (label, result, key) tuples; escape answers ``None``.
    """

    MAX_WIDTH = 76

    def __init__(self, title: str, question: str, choices: Iterable[tuple[str, str, str]]) -> None:
        super().__init__(title)
        self.question = question
        self.choices = tuple(choices)
        self.BUTTONS = tuple((f"{label} ({key})", f"c-{res}", "primary" if i == 0 else "default")  # type: ignore[misc]
                             for i, (label, res, key) in enumerate(self.choices))

    def compose_body(self) -> ComposeResult:
        yield Static(Text(self.question))

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#buttons Button", Button).focus()

    def on_key(self, event: Any) -> None:
        for _, res, key in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(res)
                return

    def on_button(self, button_id: str) -> None:
        self.dismiss(button_id[2:] if button_id.startswith("c-") else None)


class SourceSuggester(Suggester):
    """Completes ``builtin:NAME`` and file paths."""

    def __init__(self, builtins: Iterable[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.builtins = sorted(f"builtin:{n}" for n in builtins)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        for b in self.builtins:
            if b.startswith(value) and b != value:
                return b
        if value.startswith("builtin:"):
            return None
        p = Path(os.path.expanduser(value))
        folder, stem = (p, "") if value.endswith("/") else (p.parent, p.name)
        try:
            names = sorted(x.name for x in folder.iterdir() if x.name.startswith(stem) and not x.name.startswith("."))
        except OSError:
            return None
        if not names or (stem and names == [stem]):
            return None
        best = names[0]
        full = value + best[len(stem):]
        return full + ("/" if (folder / best).is_dir() else "")


class PickDialog(Dialog):
    """Pick one of a list, or type: the input filters the list and completes; enter takes the
    highlighted entry (or what was typed, when ``free_text``); down moves into the list."""

    BUTTONS = (("Cancel", "cancel", "default"), ("Open", "ok", "primary"))

    def __init__(self, title: str, hint: str, options: Iterable[tuple[str, str]], *, free_text: bool = True,
                 suggester: Suggester | None = None, placeholder: str = "type to filter") -> None:
        super().__init__(title)
        self.hint = hint
        #: (value, description) pairs.
        self.options = tuple(options)
        self.free_text = free_text
        self.suggester = suggester
        self.placeholder = placeholder
        self.shown: list[str] = []

    def compose_body(self) -> ComposeResult:
        if self.hint:
            yield Static(Text(self.hint), classes="hint")
        yield Input(placeholder=self.placeholder, id="answer", suggester=self.suggester)
        yield OptionList(id="choices")

    DEFAULT_CSS = """
    PickDialog #choices { height: auto; max-height: 12; }
    """

    def on_mount(self) -> None:
        super().on_mount()
        self._filter("")
        self.query_one(Input).focus()

    def _filter(self, text: str) -> None:
        box = self.query_one("#choices", OptionList)
        box.clear_options()
        q = text.strip().lower()
        self.shown = []
        for value, desc in self.options:
            if q and q not in value.lower() and q not in desc.lower():
                continue
            line = Text(value, style="bold")
            if desc:
                line.append(f"  {desc}", style="dim")
            box.add_option(Option(line, id=f"o{len(self.shown)}"))
            self.shown.append(value)
        if self.shown:
            box.highlighted = 0

    @on(Input.Changed, "#answer")
    def _changed(self, event: Input.Changed) -> None:
        self._filter(event.value)

    def on_key(self, event: Any) -> None:
        if event.key == "down" and isinstance(self.focused, Input) and self.shown:
            event.stop()
            self.query_one("#choices", OptionList).focus()

    def _answer(self) -> str | None:
        typed = self.query_one(Input).value.strip()
        box = self.query_one("#choices", OptionList)
        if self.shown and box.highlighted is not None:
            chosen = self.shown[box.highlighted]
            if not (self.free_text and typed and typed not in self.shown and not isinstance(self.focused, OptionList)
                    and (os.path.exists(os.path.expanduser(typed)) or typed.startswith("builtin:"))):
                return chosen
        return typed if (self.free_text and typed) else None

    @on(Input.Submitted, "#answer")
    def _submit(self) -> None:
        self.dismiss(self._answer())

    @on(OptionList.OptionSelected, "#choices")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        i = int(event.option.id[1:]) if event.option.id else -1
        self.dismiss(self.shown[i] if 0 <= i < len(self.shown) else None)

    def on_button(self, button_id: str) -> None:
        self.dismiss(self._answer() if button_id == "ok" else None)


class HelpDialog(Dialog):
    """The keys, scrolling inside the dialog."""

    BINDINGS = [Binding("escape,q,question_mark", "cancel", "Close")]
    BUTTONS = (("Close", "close", "primary"),)
    MAX_WIDTH = 90

    def __init__(self, text: str) -> None:
        super().__init__("pci-explorer: keys (escape closes; up/down scroll)")
        self.text = text

    def compose_body(self) -> ComposeResult:
        yield Static(Text(self.text), id="help")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#body").focus()


class ExportDialog(Dialog):
    """Pick a target, name the file, preview it, write it. Refuses while the plan has errors.

    The file name follows the chosen target until the user edits it.
    """

    BINDINGS = [Binding("escape", "cancel", "Close"), Binding("ctrl+w", "write", "Write")]
    BUTTONS = (("Close", "close", "default"), ("Write (ctrl+w)", "write", "primary"))
    MAX_WIDTH = 110
    DEFAULT_CSS = """
    ExportDialog #top { height: auto; }
    ExportDialog #targets { height: auto; max-height: 11; width: 16; }
    ExportDialog #side { height: auto; width: 1fr; padding-left: 1; }
    ExportDialog #preview { border-top: solid $secondary; }
    """

    def __init__(self, plan, topology, targets: tuple[str, ...]) -> None:
        super().__init__("Export the plan")
        self.plan = plan
        self.topology = topology
        self.targets = targets
        self.files: dict[str, str] = {}
        self.target = targets[0]
        self.blocked = False
        #: The file name this dialog last filled in; while the box still holds it, it
        #: follows the target.
        self._auto_path: str | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield OptionList(*[Option(t, id=t) for t in self.targets], id="targets")
            with Vertical(id="side"):
                yield Static(Text(""), id="status")
                yield Static(Text("Write to (a file, or a folder for several files):"), classes="hint")
                yield Input(placeholder="file name", id="path")
        yield Static(Text(""), id="preview")

    def on_mount(self) -> None:
        super().on_mount()
        self._render_target(self.target)
        self.query_one("#targets", OptionList).focus()

    @on(OptionList.OptionHighlighted, "#targets")
    def _target(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id and event.option.id != self.target:
            self._render_target(event.option.id)

    @on(OptionList.OptionSelected, "#targets")
    def _target_chosen(self) -> None:
        self.query_one("#path", Input).focus()

    def default_path(self) -> str:
        return next(iter(self.files)) if len(self.files) == 1 else f"export-{self.target}"

    def _render_target(self, target: str) -> None:
        from ..export.plan_exports import PlanHasErrors, export_files

        self.target = target
        box = self.query_one("#targets", OptionList)
        if target in self.targets and box.highlighted != self.targets.index(target):
            box.highlighted = self.targets.index(target)
        status = self.query_one("#status", Static)
        preview = self.query_one("#preview", Static)
        path = self.query_one("#path", Input)
        try:
            self.files = export_files(self.plan, self.topology, target)
        except PlanHasErrors as e:
            self.blocked = True
            self.files = {}
            errors = [f for f in e.findings if f.severity == "error"]
            status.update(Text(f"Refused: the plan has {len(errors)} error(s). Fix them first.", style="bold red"))
            preview.update(Text("\n".join(f"{f.code}: {f.message}" for f in errors)))
            self.query_one("#write", Button).disabled = True
            return
        self.blocked = False
        self.query_one("#write", Button).disabled = False
        names = ", ".join(self.files)
        status.update(Text(f"{target}: {names}", style="bold"))
        preview.update(Text("\n\n".join(f"# --- {n} ---\n{t}" if len(self.files) > 1 else t for n, t in self.files.items())))
        if not path.value or path.value == self._auto_path:
            self._auto_path = self.default_path()
            path.value = self._auto_path

    def on_button(self, button_id: str) -> None:
        if button_id == "write":
            self.action_write()
        else:
            self.dismiss(None)

    @on(Input.Submitted, "#path")
    def _path_submitted(self) -> None:
        self.action_write()

    def _targets_on_disk(self, path: str) -> list[str]:
        if len(self.files) == 1 and not os.path.isdir(path):
            return [path]
        return [os.path.join(path, n) for n in self.files]

    def action_write(self) -> None:
        if self.blocked or not self.files:
            self.app.notify("The plan has errors: nothing was written.", severity="error", markup=False)
            return
        path = self.query_one("#path", Input).value.strip()
        if not path:
            self.app.notify("Give a file name to write to.", severity="warning", markup=False)
            return
        existing = [p for p in self._targets_on_disk(path) if os.path.exists(p)]
        if existing:
            def answer(yes: bool | None) -> None:
                if yes:
                    self._write(path, overwrite=True)

            self.app.push_screen(ConfirmDialog(f"Replace {', '.join(existing)} with the {self.target} export?", yes="Replace"), answer)
            return
        self._write(path, overwrite=False)

    def _write(self, path: str, *, overwrite: bool) -> None:
        from ..fileio import OutputExists, write_many_atomic

        written = []
        try:
            items = []
            for p, (name, text) in zip(self._targets_on_disk(path), self.files.items()):
                d = os.path.dirname(p)
                if d:
                    os.makedirs(d, exist_ok=True)
                items.append((p, text, name.endswith(".sh") or self.target in ("shell", "undo")))
                written.append(p)
            # All or nothing: every target is checked before any is written.
            write_many_atomic(items, overwrite=overwrite)
        except (OSError, OutputExists) as e:
            self.app.notify(f"Not written: {e}", severity="error", markup=False)
            return
        self.app.notify(f"Wrote {', '.join(written)}", markup=False)
        note = getattr(self.app, "note_export", None)
        if note is not None:
            note(self.target)
        self.dismiss(None)
