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

from ..export.topology import device_badges, render_device, root_bus_line
from ..kernel import trust as trust_rules
from ..model import Address, Topology, names, present
from ..model.display import DisplayTree, RootBusKey
from .mdev import MdevKey, mdev_details, mdev_keys, mdev_label


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
        #: ``tui --compare OLD``: a ui.compare.Comparison of OLD with this topology.
        self.comparison: Any = None
        #: Hot-add what-ifs asked for in the resources view, per port (ui/hotfit.py HotFit).
        self.hot_fits: dict[Address, Any] = {}

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


_PORT_TAGS = {
    "root-port": "root port",
    "switch-upstream": "switch up",
    "switch-downstream": "switch down",
    "pcie-to-pci-bridge": "PCIe-to-PCI",
    "pci-to-pcie-bridge": "PCI-to-PCIe",
    "rc-event-collector": "RCEC",
    "rc-integrated-endpoint": "RCiEP",
}


def device_label(topology: Topology, addr: Address, analysis: Analysis | None = None, *, trust: bool = False) -> Text:
    """A tree row: address, then the badges people scan for, then the name.

    Plain Text always: device names contain brackets, which markup would eat.
    """
    fn = topology.functions[addr]
    label = Text()
    label.append(fn.bdf, style="bold")
    if analysis is not None:  # right after the address, where a narrow pane still shows it
        tr = analysis.trust.get(addr)
        if tr is not None and tr.untrusted:
            label.append(" UNTRUSTED", style="bold red")
    if fn.pcie_type is not None and fn.pcie_type.value in _PORT_TAGS:
        label.append(f" {_PORT_TAGS[fn.pcie_type.value]}", style="italic")
    shown = {
        "group": (" g{}", "magenta"), "driver": (" {}", "green"), "vfs": (" VFs {}", "blue"), "vf": (" VF", "blue"),
        "hotplug": (" hotplug", "yellow"), "external-facing": (" external-facing", "bold yellow"),
    }
    for kind, value in device_badges(fn):
        if kind in shown:  # removable shows as UNTRUSTED below; the VMD domain hangs under the device
            fmt, style = shown[kind]
            label.append(fmt.format(value), style=style)
    if analysis is not None and analysis.comparison is not None:
        label.append_text(analysis.comparison.device_badge(addr))
    label.append("  ")
    label.append(names.device_name(fn) or names.class_name(fn) or "PCI function")
    if fn.vendor_device:
        label.append(f"  {fn.vendor_device}", style="dim")
    return label


class TopologyView:
    name = "topology"
    title = "Topology"

    def __init__(self, analysis: Analysis) -> None:
        self.a = analysis
        self.t = analysis.topology

    def children(self, key: Any) -> list[Any]:
        # Active mdevs hang under their parent function in the topology view (ui/mdev.py).
        return list(self.a.display.children(key)) + (mdev_keys(self.t, key) if self.name == "topology" else [])

    def has_children(self, key: Any) -> bool:
        return self.a.display.has_children(key) or (self.name == "topology" and bool(mdev_keys(self.t, key)))

    def label(self, key: Any) -> Text:
        if isinstance(key, RootBusKey):
            return Text(root_bus_line(self.t, key), style="bold")
        if isinstance(key, MdevKey):
            return mdev_label(self.t, key)
        return device_label(self.t, key, self.a)

    def details(self, key: Any) -> Text:
        if isinstance(key, RootBusKey):
            out = Text(root_bus_line(self.t, key))
            if self.a.comparison is not None:
                out.append("\n\n")
                out.append_text(self.a.comparison.root_section())
            return out
        if isinstance(key, MdevKey):
            return mdev_details(self.t, key)
        return device_details(self.a, key)

    def path_to(self, addr: Address) -> list[Any]:
        if isinstance(addr, MdevKey):
            i = self.t.mdev.instance(addr.uuid) if self.t.mdev else None
            parent = Address.parse(i.parent) if i is not None and i.parent in {str(a) for a in self.t.functions} else None
            return self.a.display.path_to(parent) + [addr] if parent is not None else []
        return self.a.display.path_to(addr)

    def device_of(self, key: Any) -> Address | None:
        """The device a row stands for (what keys act on), or None."""
        return key if isinstance(key, Address) else None


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
        rows = dict(pred) if pred else dict(reported)
        # In number order, as /sys/kernel/iommu_groups lists them.
        return dict(sorted(rows.items(), key=lambda kv: (0, int(kv[0]), "") if kv[0].isdigit() else (1, 0, kv[0])))

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
            verdict, style = group_verdict(self.a, members)
            txt.append(f"  {verdict}", style=style)
            rep = self.t.reported_groups
            if rep:
                if any(a in self.mismatched for a in members):
                    txt.append("  (the kernel reported it differently)", style="bold red")
            else:
                txt.append("  (predicted)", style="dim")
            if self.a.comparison is not None:
                txt.append_text(self.a.comparison.group_badge(key.label))
            return txt
        lab = member_label(self.t, key)
        if key in self.mismatched:
            lab.append("  reported elsewhere", style="bold red")
        return lab

    def device_of(self, key: Any) -> Address | None:
        return key if isinstance(key, Address) else None

    def group_members(self, key: Any) -> tuple[Address, ...]:
        return self._rows.get(key.label, ()) if isinstance(key, GroupKey) else ()

    def details(self, key: Any) -> Text:
        if isinstance(key, GroupKey):
            return group_details(self.a, key.label)
        return device_details(self.a, key)

    def path_to(self, addr: Address) -> list[Any]:
        label = self.a.groups.group_of.get(addr)
        return [GroupKey(label), addr] if label is not None else []


def member_label(t: Topology, addr: Address) -> Text:
    """A group member as ls-iommu users know it: address, [vendor:device], driver, name."""
    fn = t.functions[addr]
    txt = Text()
    txt.append(fn.bdf, style="bold")
    if fn.vendor_device:
        txt.append(f" [{fn.vendor_device}]", style="dim")
    drv = fn.driver
    txt.append(f" {drv if isinstance(drv, str) else ('no driver' if drv is not None else 'driver unknown')}", style="green")
    txt.append(f"  {names.short_name(fn)}")
    cls = names.class_name(fn)
    if cls and cls not in names.short_name(fn):
        txt.append(f" ({cls})", style="dim")
    return txt


def _what(t: Topology, addr: Address) -> str:
    fn = t.functions[addr]
    return f"{addr.bus:02x}:{addr.device:02x}.{addr.function} {names.class_name(fn) or names.short_name(fn)}"


def group_verdict(a: Analysis, members: tuple[Address, ...], *, subject: Address | None = None) -> tuple[str, str]:
    """Plain words: can the group (or ``subject``'s group) go to a VM, and with what.

    Bridges on pcieport may stay in the host with their group given away (their driver
    manages no DMA: drivers/pci/pcie/portdrv.c driver_managed_dma), so only endpoints count.
    """
    t = a.topology
    if a.groups.reported_override:
        return "not isolated by the hardware: the kernel ran with pcie_acs_override", "bold red"
    endpoints = [m for m in members if m in t.functions and t.functions[m].is_bridge is not True]
    if not endpoints:
        return "bridges only: nothing to pass through", "dim"
    host = [m for m in endpoints if t.functions[m].class_code is not None and (t.functions[m].class_code >> 8) in (0x0600, 0x0601)]
    if host:
        return f"holds the {'host bridge' if (t.functions[host[0]].class_code >> 8) == 0x0600 else 'ISA/LPC bridge'} {_what(t, host[0]).split()[0]}: stays with the host", "red"
    if subject is not None:
        others = [m for m in endpoints if m != subject]
        if not others:
            return "can be passed through alone", "green"
        return "shares with " + ", ".join(_what(t, m) for m in others[:4]) + (" and more" if len(others) > 4 else "") + ": they go together", "yellow"
    if len(endpoints) <= 1:
        return "can be passed through alone", "green"
    return f"{len(endpoints)} devices, only together: " + ", ".join(_what(t, m) for m in endpoints[:3]) + (" and more" if len(endpoints) > 3 else ""), "yellow"


def group_details(a: Analysis, label: str) -> Text:
    pred = a.groups
    members = pred.groups.get(label, ())
    out = Text()
    out.append(f"IOMMU group {label}", style="bold")
    out.append(" (predicted from the hardware)\n" if not a.topology.reported_groups else "\n")
    verdict, style = group_verdict(a, members)
    out.append(f"{verdict}\n", style=style)
    for m in members:
        out.append("  ")
        out.append_text(member_label(a.topology, m))
        out.append("\n")
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
    if pred.reported_override:
        out.append(
            f"\nThe kernel that reported these groups ran with pcie_acs_override={pred.reported_override} "
            "(an out-of-tree patch): its groups are not a stock kernel's.\n",
            style="bold red",
        )
    for w in pred.warnings:
        out.append(f"\nnote: {w}", style="yellow")
    if a.comparison is not None:
        out.append_text(a.comparison.group_section(label))
    return out


def _rcec_serves(rcec: Any, ep: Address) -> bool:
    rc = rcec.caps.rcec
    if ep.domain != rcec.address.domain:
        return False
    if ep.bus == rcec.address.bus:
        return ep.device in rc.devices
    return rc.next_bus is not None and rc.last_bus is not None and rc.next_bus <= ep.bus <= rc.last_bus


def fn_removable(t: Topology, addr: Address) -> bool:
    return bool(t.functions[addr].removable)


def device_details(a: Analysis, addr: Address) -> Text:
    t = a.topology
    out = Text(render_device(t, t.functions[addr]))
    # Why the group is what it is.
    pred = a.groups
    label = pred.group_of.get(addr)
    if label is not None:
        out.append("\n\nIOMMU group (predicted) ", style="bold")
        out.append(f"{label}: {len(pred.groups[label])} device(s)\n")
        verdict, style = group_verdict(a, pred.groups[label], subject=addr)
        out.append(f"  {verdict}\n", style=style)
        for line in pred.explanations.get(label, []):
            out.append(f"  {line}\n")
    # Trust, where it came from and its costs are part of render_device (as `show` prints them).
    tr = a.trust.get(addr)
    fn = t.functions[addr]
    from ..kernel.ats import features

    out.append("\nATS, PRI, PASID (would the kernel enable them?)\n", style="bold")
    for feat in features(t, addr, tr):
        mark = {True: "yes", False: "no", None: "unknown"}[feat.supported]
        out.append(f"  {feat.name:5} {mark}: {feat.reason}\n")
    # RCEC association, both directions (drivers/pci/pcie/rcec.c rcec_assoc_rciep): an RCiEP
    # on the RCEC's own bus is served when its device number is in the bitmap; one on another
    # bus when that bus is inside the Associated Bus Numbers range (capability version 2).
    if present(fn.caps.rcec):
        served = [x.address for x in t if x.pcie_type is not None and x.pcie_type.value == "rc-integrated-endpoint" and _rcec_serves(fn, x.address)]
        out.append(f"\nRCEC: collects errors of {', '.join(map(str, served)) or 'no RC integrated endpoint here'}\n")
    if fn.pcie_type is not None and fn.pcie_type.value == "rc-integrated-endpoint":
        for other in t:
            if present(other.caps.rcec) and _rcec_serves(other, addr):
                out.append(f"\nRCEC {other.bdf} collects this endpoint's errors\n")
    if fn.vmd_domain is not None:
        behind = [x for x in t if x.address.domain == fn.vmd_domain]
        drives = [x for x in behind if x.class_code is not None and (x.class_code >> 8) in (0x0108, 0x0106, 0x0104)]
        out.append(f"\nVMD: {len(behind)} device(s) behind it in domain {fn.vmd_domain:04x}; all share this device's IOMMU group\n")
        for x in drives:
            out.append(f"  drive {x.bdf}  {names.short_name(x)}\n")
    if a.comparison is not None:
        out.append_text(a.comparison.device_section(addr))
    return out


VIEW_TYPES = {"topology": TopologyView, "groups": GroupsView, "trust": TrustView}


@dataclass(frozen=True, slots=True)
class BridgeResKey:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class SriovKey:
    pf: Address | None  # None: the "SR-IOV headroom" heading

    def __str__(self) -> str:
        return f"SR-IOV {self.pf}" if self.pf else "SR-IOV headroom"


def _fmt_size(n: int | None) -> str:
    from ..kernel.resources import fmt_size

    return fmt_size(n)


def usage_bar(used: int, total: int, width: int = 20) -> Text:
    """A usage bar: filled for used space, empty for free."""
    filled = 0 if total <= 0 else min(width, round(width * used / total))
    bar = Text()
    bar.append("█" * filled, style="red" if filled > width * 0.9 else "yellow")
    bar.append("░" * (width - filled), style="green")
    return bar


class ResourcesView:
    """Bridges with their bus ranges and windows (used, free, largest aligned block); PF headroom."""

    name = "resources"
    title = "Resources"

    def __init__(self, analysis: Analysis) -> None:
        self.a = analysis
        self.t = analysis.topology

    @cached_property
    def _bridges(self) -> dict[str, Any]:
        return {b.name: b for b in self.a.resources.bridges}

    @cached_property
    def _pfs(self) -> list[Address]:
        return [fn.address for fn in self.t if present(fn.caps.sriov) and (fn.caps.sriov.total_vfs or 0) > 0]  # type: ignore[union-attr]

    def _below(self, name: str) -> list[Address]:
        """The functions directly below a bridge (or on a host bridge's root bus)."""
        b = self._bridges[name]
        if b.address is not None:
            return [a for a in self.a.display.children(b.address) if isinstance(a, Address)]
        out: list[Address] = []
        for k in self.a.display.children(None):
            if str(k) == name:
                out = [a for a in self.a.display.children(k) if isinstance(a, Address)]
        return out

    def _device_row(self, addr: Address) -> Text:
        fn = self.t.functions[addr]
        txt = Text()
        txt.append(fn.bdf, style="bold")
        bars = [b for b in (fn.bars or ()) if b.size]
        if bars:
            txt.append("  " + ", ".join(f"{_fmt_size(b.size)} {b.kind.value}" for b in bars), style="cyan")
        elif fn.is_bridge:
            txt.append("  bridge", style="italic")
        txt.append(f"  {names.short_name(fn)}")
        return txt

    def children(self, key: Any) -> list[Any]:
        if key is None:
            keys: list[Any] = [BridgeResKey(n) for n in self._bridges]
            if self._pfs:
                keys.append(SriovKey(None))
            return keys
        if isinstance(key, BridgeResKey):
            b = self._bridges[key.name]
            return [WindowKey(key.name, i) for i in range(len(b.windows))] + self._below(key.name)
        if isinstance(key, SriovKey) and key.pf is None:
            return [SriovKey(pf) for pf in self._pfs]
        return []

    def has_children(self, key: Any) -> bool:
        if isinstance(key, BridgeResKey):
            return bool(self._bridges[key.name].windows) or bool(self._below(key.name))
        return isinstance(key, SriovKey) and key.pf is None

    def label(self, key: Any) -> Text:
        if isinstance(key, BridgeResKey):
            b = self._bridges[key.name]
            txt = Text()
            txt.append(b.name, style="bold")
            # hotplug and the bus range right after the address, where a narrow pane still
            # shows them (F works on the hotplug rows); the name last
            if b.hotplug:
                txt.append(" hotplug", style="yellow")
            if b.buses is not None:
                txt.append(f"  buses {b.buses.start:02x}-{b.buses.end:02x}, {b.buses.free_count} free", style="cyan")
            if b.closed:
                txt.append("  no " + "/".join(k.value for k in b.closed) + " window", style="dim")
            if b.address is not None and b.address in self.t.functions:
                txt.append(f"  {names.short_name(self.t.functions[b.address])}")
            return txt
        if isinstance(key, WindowKey):
            w = self._bridges[key.owner].windows[key.index]
            txt = Text()
            kind = w.kind.value + ("64" if getattr(w, "is_64bit", None) else "")
            lb = w.largest_block
            # Size, free and the largest aligned free block first: they are what people look
            # for, and must not be cut at the pane's edge; the address range last.
            txt.append(f"{kind:6} {_fmt_size(w.size)} ")
            txt.append(f"free {_fmt_size(w.free_bytes)} largest {_fmt_size(lb.size) if lb else '0'} ", style="cyan")
            txt.append_text(usage_bar(w.used_bytes, w.size, 12))
            txt.append(f" [{w.start:#x}-{w.end:#x}]", style="dim")
            return txt
        if isinstance(key, Address):
            return self._device_row(key)
        if isinstance(key, SriovKey):
            if key.pf is None:
                return Text(f"SR-IOV headroom ({len(self._pfs)} PF)", style="bold")
            fn = self.t.functions[key.pf]
            sr = fn.caps.sriov
            return Text(f"{key.pf}  {names.short_name(fn)}  VFs {sr.num_vfs or 0}/{sr.total_vfs}  {self._sriov_line(key.pf)}")  # type: ignore[union-attr]
        return Text(str(key))

    def _sriov_line(self, pf: Address) -> str:
        from ..kernel.setup import fit_sriov

        fn = self.t.functions[pf]
        total = fn.caps.sriov.total_vfs or 0  # type: ignore[union-attr]
        try:
            res = fit_sriov(self.t, pf, total)
        except (ValueError, KeyError) as e:
            return f"({e})"
        if res.fits:
            return f"all {total} VFs fit"
        why = res.messages[-1] if res.messages else (res.errno or "see details")
        return f"{total} VFs would fail: {why}"

    def details(self, key: Any) -> Text:
        from ..export.resources import report_text, sriov_text
        from ..kernel.setup import fit_sriov

        if isinstance(key, BridgeResKey):
            b = self._bridges[key.name]
            from ..kernel.resources import ResourceReport

            return self._with_hot_add(b.address, Text(report_text(ResourceReport((b,)), verbose=True)))
        if isinstance(key, WindowKey):
            return self.details(BridgeResKey(key.owner))
        if isinstance(key, Address):
            return self._with_hot_add(key, device_details(self.a, key))
        if isinstance(key, SriovKey) and key.pf is not None:
            fn = self.t.functions[key.pf]
            try:
                return Text(sriov_text(fit_sriov(self.t, key.pf, fn.caps.sriov.total_vfs or 0)))  # type: ignore[union-attr]
            except (ValueError, KeyError) as e:
                return Text(str(e))
        return Text("Bridges and host bridges: bus numbers and windows, with what is used and what is free.")

    def _with_hot_add(self, addr: Address | None, text: Text) -> Text:
        """A hotplug port's details (or a port a device was tried below) start with what fits
        there: the room it has now, and what ``F`` asked for, as ``fit`` prints it (ui/hotfit.py)."""
        b = self._bridges.get(str(addr)) if addr is not None else None
        if b is None or not (b.hotplug or addr in self.a.hot_fits):
            return text
        from .hotfit import port_section

        out = port_section(self.a, b)
        out.append("\n")
        out.append_text(text)
        return out

    def path_to(self, addr: Address) -> list[Any]:
        if str(addr) in self._bridges:
            return [BridgeResKey(str(addr))]
        for name in self._bridges:
            b = self._bridges[name]
            fn = self.t.functions.get(addr)
            if fn is None:
                return []
            if (b.address is not None and fn.parent == b.address) or (b.address is None and addr in self._below(name)):
                return [BridgeResKey(name), addr]
        return []

    def device_of(self, key: Any) -> Address | None:
        if isinstance(key, Address):
            return key
        if isinstance(key, BridgeResKey):
            return self._bridges[key.name].address
        if isinstance(key, WindowKey):
            return self._bridges[key.owner].address
        if isinstance(key, SriovKey):
            return key.pf
        return None


VIEW_TYPES["resources"] = ResourcesView
