"""``tui NEW --compare OLD``: what changed, marked in the views and told in the details pane.

One ``Comparison`` per loaded topology (built from ``explorer.kernel.diff``) answers, per
device of NEW and per IOMMU group label of NEW, the badge for its row and the changes for
its details; devices only in OLD are listed under their parent (or the root bus).
"""

from __future__ import annotations

from functools import cached_property

from rich.text import Text

from ..kernel.diff import Change, Diff, diff_topologies
from ..model import Address, Topology

_BADGES = {"added": ("+added", "bold green"), "removed": ("-removed", "bold red"),
           "moved": ("~moved", "bold yellow"), "changed": ("~changed", "yellow")}


class Comparison:
    def __init__(self, old: Topology, new: Topology) -> None:
        self.old = old
        self.new = new
        self.diff: Diff = diff_topologies(old, new)

    @cached_property
    def status(self) -> dict[Address, str]:
        return self.diff.statuses("new")

    @cached_property
    def by_device(self) -> dict[Address, list[Change]]:
        out: dict[Address, list[Change]] = {}
        for c in self.diff.changes:
            for a in c.new_addresses:
                out.setdefault(a, []).append(c)
        return out

    @cached_property
    def removed_under(self) -> dict[Address | None, list[Address]]:
        """NEW parent (None: a root bus) -> OLD addresses of devices removed below it."""
        new_of = self.diff.new_of
        out: dict[Address | None, list[Address]] = {}
        for a in self.diff.removed:
            p = self.old.functions[a].parent
            while p is not None and p not in new_of:  # removed with its bridge: the nearest kept one
                p = self.old.functions[p].parent if p in self.old.functions else None
            out.setdefault(new_of.get(p) if p is not None else None, []).append(a)
        return out

    @cached_property
    def by_group(self) -> dict[str, list[Change]]:
        out: dict[str, list[Change]] = {}
        for c in self.diff.section("groups"):
            if c.data.get("new") is not None:
                out.setdefault(c.data["new"], []).append(c)
        return out

    def device_badge(self, addr: Address) -> Text:
        out = Text()
        st = self.status.get(addr)
        if st:
            text, style = _BADGES[st]
            out.append(f" {text}", style=style)
        gone = self.removed_under.get(addr)
        if gone:
            out.append(f" -{len(gone)} removed below", style="bold red")
        return out

    def group_badge(self, label: str) -> Text:
        changes = self.by_group.get(label)
        if not changes:
            return Text()
        kinds = {c.data["change"] for c in changes}
        word = "new" if kinds == {"new"} else ("renumbered" if kinds == {"renumbered"} else "changed")
        return Text(f"  ~{word} since OLD", style="bold yellow")

    def device_section(self, addr: Address) -> Text:
        out = Text()
        changes = self.by_device.get(addr, [])
        gone = self.removed_under.get(addr, [])
        out.append(f"\n\nCompared with {self.old.source.location}\n", style="bold")
        if not changes and not gone:
            out.append("  no change to this device\n", style="green")
        for c in changes:
            out.append(f"  {c.section}: {c.text}\n")
        for a in gone:
            fn = self.old.functions[a]
            out.append(f"  removed below it: {a} [{fn.vendor_device or 'unknown IDs'}]\n", style="red")
        return out

    def group_section(self, label: str) -> Text:
        out = Text()
        changes = self.by_group.get(label, [])
        out.append(f"\n\nCompared with {self.old.source.location}\n", style="bold")
        if not changes:
            out.append("  the same devices share this group\n", style="green")
        for c in changes:
            out.append(f"  {c.text}\n")
        return out

    def summary(self) -> str:
        d = self.diff
        n = len(d.changes)
        return (f"compared with {self.old.source.location}: {len(d.added)} added, {len(d.removed)} removed, "
                f"{sum(1 for m in d.matches if m.moved)} moved, {n} change(s) in all")

    def root_section(self) -> Text:
        """Context changes and devices removed from a root bus."""
        out = Text()
        for c in self.diff.section("context"):
            out.append(f"  {c.text}\n")
        for a in self.removed_under.get(None, []):
            out.append(f"  removed from a root bus: {a}\n", style="red")
        return out
