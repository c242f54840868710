"""What each view mode puts in the tree: children, labels and details, from the model.

A view is a small object with ``children(key)``, ``has_children(key)``, ``label(key)``
and ``details(key)``. The tree widget asks only for the children of nodes a person
expands, so a 100k-function machine costs what is on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from rich.text import Text

from ..export.topology import render_device, root_bus_line
from ..kernel import trust as trust_rules
from ..model import Address, Topology, names, present
from ..model.display import DisplayTree, NodeKey, RootBusKey


@dataclass(frozen=True, slots=True)
class GroupKey:
    label: str

    def __str__(self) -> str:
        return f"group {self.label}"


@dataclass(frozen=True, slots=True)
class WindowKey:
    owner: Any  # Address of a bridge, or RootBusKey of a host bridge
    index: int

    def __str__(self) -> str:
        return f"{self.owner} window {self.index}"


class Analysis:
    """Kernel predictions for one topology, computed once and shared by the views."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    @cached_property
    def display(self) -> DisplayTree:
        return DisplayTree(self.topology)

    @cached_property
    def trust(self) -> dict[Address, trust_rules.Trust]:
        return trust_rules.assess_all(self.topology)

    @cached_property
    def groups(self):  # GroupPrediction
        from ..kernel.groups import predict_groups

        return predict_groups(self.topology)

    @cached_property
    def resources(self):  # ResourceReport
        from ..kernel.resources import account

        return account(self.topology)


def device_label(topology: Topology, addr: Address, analysis: Analysis | None = None, *, trust: bool = False) -> Text:
    """A tree row: address, short name, badges. Plain Text: device names contain brackets."""
    fn = topology.functions[addr]
    label = Text()
    label.append(fn.bdf, style="bold")
    label.append("  ")
    label.append(names.short_name(fn))
    if fn.vendor_device:
        label.append(f"  {fn.vendor_device}", style="dim")
    if fn.pcie_type and fn.pcie_type.is_port:
        label.append(f"  {fn.pcie_type.label}", style="italic")
    if present(fn.iommu_group):
        label.append(f"  g{fn.iommu_group}", style="magenta")
    if present(fn.driver):
        label.append(f"  {fn.driver}", style="green")
    sr = fn.caps.sriov
    if present(sr) and sr.total_vfs:  # type: ignore[union-attr]
        label.append(f"  VFs {sr.num_vfs or 0}/{sr.total_vfs}", style="blue")  # type: ignore[union-attr]
    if fn.is_virtfn:
        label.append("  VF", style="blue")
    if present(fn.slot) and fn.slot.hotplug:  # type: ignore[union-attr]
        label.append("  hotplug", style="yellow")
    if fn.external_facing:
        label.append("  external-facing", style="bold yellow")
    if analysis is not None and (trust or fn.removable):
        tr = analysis.trust.get(addr)
        if tr is not None and tr.untrusted:
            label.append("  UNTRUSTED", style="bold red")
    return label


class TopologyView:
    name = "topology"
    title = "Topology"

    def __init__(self, analysis: Analysis) -> None:
        self.a = analysis
        self.t = analysis.topology

    def children(self, key: Any) -> list[Any]:
        return list(self.a.display.children(key))

    def has_children(self, key: Any) -> bool:
        return self.a.display.has_children(key)

    def label(self, key: Any) -> Text:
        if isinstance(key, RootBusKey):
            return Text(root_bus_line(self.t, key), style="bold")
        return device_label(self.t, key, self.a)

    def details(self, key: Any) -> Text:
        if isinstance(key, RootBusKey):
            return Text(root_bus_line(self.t, key))
        return device_details(self.a, key)

    def path_to(self, addr: Address) -> list[Any]:
        return self.a.display.path_to(addr)


class TrustView(TopologyView):
    name = "trust"
    title = "Trust and location"

    def label(self, key: Any) -> Text:
        if isinstance(key, RootBusKey):
            return Text(root_bus_line(self.t, key), style="bold")
        return device_label(self.t, key, self.a, trust=True)


class GroupsView:
    name = "groups"
    title = "IOMMU groups"

    def __init__(self, analysis: Analysis) -> None:
        self.a = analysis
        self.t = analysis.topology

    @cached_property
    def _rows(self) -> dict[str, tuple[Address, ...]]:
        pred = self.a.groups.groups
        reported = self.t.reported_groups
        return dict(pred) if pred else dict(reported)

    @cached_property
    def mismatched(self) -> set[Address]:
        pred = self.a.groups
        reported = self.t.reported_groups
        if not reported:
            return set()
        bad: set[Address] = set()
        rep_of = {a: frozenset(ms) for ms in reported.values() for a in ms}
        for members in pred.groups.values():
            s = frozenset(members)
            for a in members:
                if a in rep_of and rep_of[a] != s:
                    bad.add(a)
        return bad

    def children(self, key: Any) -> list[Any]:
        if key is None:
            return [GroupKey(label) for label in self._rows]
        if isinstance(key, GroupKey):
            return list(self._rows.get(key.label, ()))
        return []

    def has_children(self, key: Any) -> bool:
        return isinstance(key, GroupKey)

    def label(self, key: Any) -> Text:
        if isinstance(key, GroupKey):
            members = self._rows.get(key.label, ())
            txt = Text()
            txt.append(f"group {key.label}", style="bold magenta")
            txt.append(f"  {len(members)} device{'s' if len(members) != 1 else ''}")
            rep = self.t.reported_groups
            if rep:
                if any(a in self.mismatched for a in members):
                    txt.append("  ≠ kernel", style="bold red")
                else:
                    txt.append("  = kernel", style="green")
            else:
                txt.append("  (predicted)", style="dim")
            return txt
        lab = device_label(self.t, key, self.a)
        if key in self.mismatched:
            lab.append("  reported elsewhere", style="bold red")
        return lab

    def details(self, key: Any) -> Text:
        if isinstance(key, GroupKey):
            return group_details(self.a, key.label)
        return device_details(self.a, key)

    def path_to(self, addr: Address) -> list[Any]:
        label = self.a.groups.group_of.get(addr)
        return [GroupKey(label), addr] if label is not None else []


def group_details(a: Analysis, label: str) -> Text:
    pred = a.groups
    members = pred.groups.get(label, ())
    out = Text()
    out.append(f"IOMMU group {label}", style="bold")
    out.append(" (predicted from the hardware)\n" if not a.topology.reported_groups else "\n")
    for m in members:
        out.append(f"  {m}  {names.short_name(a.topology.functions[m])}\n")
    out.append("\nWhy\n", style="bold")
    for line in pred.explanations.get(label, []):
        out.append(f"  {line}\n")
    rep = a.topology.reported_groups
    if rep:
        rep_sets = {frozenset(v): k for k, v in rep.items()}
        k = rep_sets.get(frozenset(members))
        if k is not None:
            out.append(f"\nThe kernel reported the same group (as group {k}).\n", style="green")
        else:
            out.append("\nThe kernel reported a different grouping for these devices:\n", style="bold red")
            for m in members:
                fn = a.topology.functions[m]
                out.append(f"  {m} in kernel group {fn.iommu_group if present(fn.iommu_group) else 'none'}\n")
    for w in pred.warnings:
        out.append(f"\nnote: {w}", style="yellow")
    return out


def device_details(a: Analysis, addr: Address) -> Text:
    t = a.topology
    out = Text(render_device(t, t.functions[addr]))
    # Why the group is what it is.
    try:
        pred = a.groups
    except ImportError:
        pred = None
    if pred is not None:
        label = pred.group_of.get(addr)
        if label is not None:
            out.append("\n\nIOMMU group (predicted) ", style="bold")
            out.append(f"{label}: {len(pred.groups[label])} device(s)\n")
            for line in pred.explanations.get(label, []):
                out.append(f"  {line}\n")
    tr = a.trust.get(addr)
    if tr is not None:
        out.append("\nTrust ", style="bold")
        state = "untrusted" if tr.untrusted else ("trusted" if tr.untrusted is False else "unknown")
        out.append(f"{state}: {tr.reason}\n", style="bold red" if tr.untrusted else "")
        for c in tr.costs:
            out.append(f"  costs: {c}\n", style="red")
    fn = t.functions[addr]
    # RCEC association, both directions (drivers/pci/pcie/rcec.c).
    if present(fn.caps.rcec):
        served = [x for x in t.functions if x.domain == addr.domain and x.bus == addr.bus and x.device in fn.caps.rcec.devices]  # type: ignore[union-attr]
        out.append(f"\nRCEC: collects errors of {', '.join(map(str, served)) or 'no endpoint on its bus'}\n")
    if fn.pcie_type is not None and fn.pcie_type.value == "rc-integrated-endpoint":
        for other in t:
            rc = other.caps.rcec
            if present(rc) and other.address.domain == addr.domain and other.address.bus == addr.bus and addr.device in rc.devices:  # type: ignore[union-attr]
                out.append(f"\nRCEC {other.bdf} collects this endpoint's errors\n")
    if fn.vmd_domain is not None:
        behind = [x for x in t if x.address.domain == fn.vmd_domain]
        out.append(f"\nVMD: {len(behind)} device(s) behind it in domain {fn.vmd_domain:04x}; all share this device's IOMMU group\n")
    return out


VIEW_TYPES = {"topology": TopologyView, "groups": GroupsView, "trust": TrustView}
