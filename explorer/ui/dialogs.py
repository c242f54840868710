"""Modal dialogs: ask for a line of text, confirm, and export a plan."""

from __future__ import annotations

import os

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 96; height: auto; max-height: 90%; border: round $accent; background: $surface; padding: 1 2; }}
{name} .buttons {{ height: auto; align-horizontal: right; margin-top: 1; }}
{name} Button {{ margin-left: 2; }}
{name} .hint {{ color: $text-muted; }}
"""


class AskDialog(ModalScreen[str | None]):
    """One line of input; enter accepts, escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="AskDialog")

    def __init__(self, title: str, hint: str = "", value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.hint = hint
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(self.title_text, style="bold"))
            if self.hint:
                yield Static(Text(self.hint), classes="hint")
            yield Input(value=self.value, placeholder=self.placeholder, id="answer")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "no", "No"), Binding("y", "yes", "Yes")]
    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.question))
            with Horizontal(classes="buttons"):
                yield Button(self.no, id="no")
                yield Button(self.yes, id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ExportDialog(ModalScreen[None]):
    """Pick a target, preview it, write it. Refuses while the plan has errors."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("ctrl+w", "write", "Write")]
    DEFAULT_CSS = DIALOG_CSS.format(name="ExportDialog") + """
    ExportDialog #targets { height: 11; width: 24; }
    ExportDialog #preview-box { height: 20; border: round $secondary; }
    ExportDialog #top { height: auto; }
    """

    def __init__(self, plan, topology, targets: tuple[str, ...]) -> None:
        super().__init__()
        self.plan = plan
        self.topology = topology
        self.targets = targets
        self.files: dict[str, str] = {}
        self.target = targets[0]
        self.blocked = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Export the plan", style="bold"))
            with Horizontal(id="top"):
                yield OptionList(*[Option(t, id=t) for t in self.targets], id="targets")
                yield Static(Text(""), id="status")
            with VerticalScroll(id="preview-box"):
                yield Static(Text(""), id="preview")
            yield Input(placeholder="write to: a file, or a directory for several documents", id="path")
            with Horizontal(classes="buttons"):
                yield Button("Close", id="close")
                yield Button("Write", id="write", variant="primary")

    def on_mount(self) -> None:
        self._render_target(self.target)
        self.query_one("#targets", OptionList).focus()

    @on(OptionList.OptionHighlighted, "#targets")
    def _target(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self._render_target(event.option.id)

    def _render_target(self, target: str) -> None:
        from ..export.plan_exports import PlanHasErrors, export_files

        self.target = target
        status = self.query_one("#status", Static)
        preview = self.query_one("#preview", Static)
        try:
            self.files = export_files(self.plan, self.topology, target)
        except PlanHasErrors as e:
            self.blocked = True
            self.files = {}
            errors = [f for f in e.findings if f.severity == "error"]
            status.update(Text(f"  Refused: the plan has {len(errors)} error(s). Fix them first.", style="bold red"))
            preview.update(Text("\n".join(f"{f.code}: {f.message}" for f in errors)))
            self.query_one("#write", Button).disabled = True
            return
        self.blocked = False
        self.query_one("#write", Button).disabled = False
        names = ", ".join(self.files)
        status.update(Text(f"  {target}: {names}"))
        preview.update(Text("\n\n".join(f"# --- {n} ---\n{t}" if len(self.files) > 1 else t for n, t in self.files.items())))
        path = self.query_one("#path", Input)
        if not path.value:
            path.value = next(iter(self.files)) if len(self.files) == 1 else f"export-{target}"

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#write")
    def _write_pressed(self) -> None:
        self.action_write()

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

            self.app.push_screen(ConfirmDialog(f"Replace {', '.join(existing)}?", yes="Replace"), answer)
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
