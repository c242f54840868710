"""Mediated devices in the app: tree rows under their parent, their details, and the type
picker the ``m`` key opens (a self-contained dialog: types with their free instances, then
how many and for which VM).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ..export.mdev import instance_line, type_summary
from ..model import Address, MdevParent, Topology
from .dialogs import Dialog


@dataclass(frozen=True, slots=True)
class MdevKey:
    """A tree node for one active mdev (below its parent function)."""

    uuid: str

    def __str__(self) -> str:
        return f"mdev {self.uuid}"


def mdev_keys(t: Topology, addr: object) -> list[MdevKey]:
    if t.mdev is None or not isinstance(addr, Address):
        return []
    return [MdevKey(i.uuid) for i in t.mdev.instances_of(addr)]


def mdev_label(t: Topology, key: MdevKey) -> Text:
    i = t.mdev.instance(key.uuid) if t.mdev else None
    label = Text()
    label.append("mdev ", style="bold cyan")
    if i is None:
        label.append(key.uuid)
        return label
    label.append(i.uuid, style="bold")
    if isinstance(i.iommu_group, str):
        label.append(f" g{i.iommu_group}", style="magenta")
    if isinstance(i.driver, str):
        label.append(f" {i.driver}", style="green")
    label.append(f"  {i.type or 'type unknown'}")
    return label


def mdev_details(t: Topology, key: MdevKey) -> Text:
    i = t.mdev.instance(key.uuid) if t.mdev else None
    if i is None:
        return Text(f"mdev {key.uuid}: not in this source")
    out = Text()
    out.append(instance_line(i) + "\n", style="bold")
    out.append(f"  parent             {i.parent}\n")
    p = t.mdev.parent(i.parent) if t.mdev else None
    mt = p.type(i.type) if p is not None and i.type else None
    if mt is not None:
        out.append(f"  type               {type_summary(mt)}\n")
        if isinstance(mt.description, str):
            for line in mt.description.splitlines():
                out.append(f"                     {line}\n")
    group = i.iommu_group if isinstance(i.iommu_group, str) else ("none" if i.iommu_group is not None else "unknown")
    out.append(f"  IOMMU group        {group} (vfio's own group for it: drivers/vfio/group.c, VFIO_EMULATED_IOMMU)\n")
    out.append(f"  sysfs              /sys/bus/mdev/devices/{i.uuid}\n")
    out.append("\n  a gives it to a VM; x removes it (its remove file)\n", style="dim")
    return out


class MdevTypeDialog(Dialog):
    """Pick one of a parent's mdev types (with its free instances), then COUNT [VM].

    Dismisses with the ``plan add`` words, or None when cancelled. A ``Dialog``: it fits the
    terminal (80x24 up), the list scrolls inside it, the buttons stay on screen.
    """

    BUTTONS = (("Cancel", "cancel", "default"), ("Add", "ok", "primary"))
    DEFAULT_CSS = "MdevTypeDialog OptionList { height: auto; max-height: 12; }\n"

    def __init__(self, parent: MdevParent, address: Address, vm: str = "") -> None:
        super().__init__(f"Mediated devices on {address}")
        self.parent_info = parent
        self.address = address
        self.vm = vm
        self.chosen: str | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(Text("Pick a type (free instances in brackets), then COUNT [VM]."), classes="hint")
        options = []
        for mt in self.parent_info.types or ():
            free = "?" if mt.available_instances is None else str(mt.available_instances)
            text = Text(f"[{free:>3}] ")
            text.append(mt.id, style="bold" if mt.available_instances else "dim")
            if mt.name and mt.name != mt.id:
                text.append(f"  {mt.name}")
            options.append(Option(text, id=mt.id))
        yield OptionList(*options, id="types")
        yield Input(value=f"1 {self.vm}".strip(), placeholder="COUNT [VM]", id="count")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(OptionList).focus()

    def on_button(self, button_id: str) -> None:
        if button_id != "ok":
            self.dismiss(None)
            return
        self._accept(self.query_one("#count", Input).value)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.chosen = event.option.id
        self.query_one("#count", Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self._accept(event.value)

    def _accept(self, answer: str) -> None:
        if self.chosen is None:
            ol = self.query_one(OptionList)
            if ol.highlighted is None:
                return
            self.chosen = ol.get_option_at_index(ol.highlighted).id
        self.dismiss(self.words(answer))

    def words(self, answer: str) -> list[str]:
        parts = answer.split()
        words = ["mdev", str(self.address), "--type", str(self.chosen)]
        if parts:
            words += ["--count", parts[0]]
        if len(parts) > 1:
            words += ["--vm", parts[1]]
        return words


__all__ = ["MdevKey", "MdevTypeDialog", "mdev_details", "mdev_keys", "mdev_label"]
