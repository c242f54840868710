"""Render IOMMU group predictions: text for people, JSON for scripts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..kernel.groups import GroupPrediction
from ..model import Topology, names
from .envelope import envelope, format_id
from . import mdev as _mdev

JSON_FORMAT = format_id("groups")


def _reported_label(t: Topology, members: tuple, by_set: dict | None = None) -> str | None:
    if by_set is None:
        by_set = _reported_by_set(t)
    return by_set.get(frozenset(members))


def _reported_by_set(t: Topology) -> dict[frozenset, str]:
    """Reported group label by member set (built once per report: per group it was quadratic)."""
    return {frozenset(v): k for k, v in t.reported_groups.items()}


def _reason(pred: GroupPrediction, members: tuple) -> str:
    """The prediction's chain of causes for the predicted group equal to ``members``."""
    label = pred.group_of.get(members[0]) if members else None
    if label is None or frozenset(pred.groups.get(label, ())) != frozenset(members):
        return "the prediction groups these devices differently (see --compare)"
    return " ".join(pred.explanations.get(label, []))


def groups_json(t: Topology, pred: GroupPrediction, *, which: str = "predicted", equal: bool | None = None,
                stream: bool = False) -> dict[str, Any]:
    """The envelope and ``{"view": "predicted"|"reported"|"compare", "groups": [{"id", "devices", "reason"}], ...}``.

    ``equal`` (for ``--compare``) says whether prediction and report agree; the view is then
    ``compare`` and ``groups`` are the predicted ones. With ``stream``, ``groups`` and
    ``predicted`` are iterators that build each row as it is written (explorer.jsonout), so
    a machine with 100,000 groups never holds its document whole."""
    reported = t.reported_groups
    mismatches = pred.compare(reported) if reported else []
    by_set = _reported_by_set(t) if reported else {}

    def group_rows() -> Iterator[dict[str, Any]]:
        if which == "reported":
            for k, v in reported.items():
                yield {"id": k, "devices": [str(a) for a in v], "reason": _reason(pred, v)}
            # vfio's own groups for mediated devices: UUIDs, not PCI functions (export/mdev.py).
            for k, u, why in _mdev.group_rows(t):
                yield {"id": k, "devices": list(u), "reason": why, "mdev": True}
        else:
            for k, v in pred.groups.items():
                yield {"id": k, "devices": [str(a) for a in v], "reason": " ".join(pred.explanations.get(k, []))}

    def predicted_rows() -> Iterator[dict[str, Any]]:
        for label, members in pred.groups.items():
            yield {
                "label": label,
                "members": [str(a) for a in members],
                "reasons": list(pred.explanations.get(label, [])),
                "reported_as": _reported_label(t, members, by_set) if reported else None,
            }

    payload: dict[str, Any] = {
        "view": "compare" if equal is not None else which,
        "groups": group_rows() if stream else list(group_rows()),
        "location": t.source.location,
        "hypothetical": pred.hypothetical,
        "assumptions": list(pred.assumptions),
        "warnings": list(pred.warnings),
        "reported_override": pred.reported_override,
        "predicted": predicted_rows() if stream else list(predicted_rows()),
        "no_group": {str(a): why for a, why in pred.no_group.items()},
        "matches_reported": (not mismatches) if reported else None,
        "mismatches": [m.message for m in mismatches],
        "mdev_groups": [{"id": k, "mdevs": list(u), "reason": why} for k, u, why in _mdev.group_rows(t)],
    }
    if equal is not None:
        payload["equal"] = equal
    return envelope("groups", t, payload)


def compare_text(t: Topology, pred: GroupPrediction) -> str:
    mism = pred.compare(t.reported_groups)
    if not mism:
        return f"{t.source.location}: the predicted groups equal the kernel's reported groups ({len(t.reported_groups)} groups)."
    out = [f"{t.source.location}: {len(mism)} difference(s) between the predicted and the reported groups:"]
    for m in mism:
        out.append(f"  - {m.message}")
        for side, groups in (("reported", m.reported), ("predicted", m.predicted)):
            for label, members in groups.items():
                out.append(f"      {side} {label}: {', '.join(str(a) for a in members)}")
        for label in m.predicted:
            for r in pred.explanations.get(label, []):
                out.append(f"      why predicted {label}: {r}")
    return "\n".join(out)


def _is_bridge(fn) -> bool:
    """Members a VM need not take: PCI bridges and ports (pcieport manages no DMA) and host
    bridges without a driver (an unbound device never blocks vfio's DMA ownership claim)."""
    from ..plan.apply import is_host_driver

    sub = None if fn.class_code is None else fn.class_code >> 8
    if sub in (0x0604, 0x0609) or bool(fn.pcie_type and fn.pcie_type.is_port):
        return True
    return sub == 0x0600 and not is_host_driver(fn.driver)


def host_critical(fn) -> str | None:
    """Why the host needs this function (None: nothing known). Words for the verdict."""
    from ..plan.apply import is_host_driver

    sub = None if fn.class_code is None else fn.class_code >> 8
    if sub == 0x0600:
        return "the host bridge"
    if sub == 0x0601:
        return "the chipset's ISA/LPC bridge"
    if fn.boot_vga:
        return "the boot display"
    if not is_host_driver(fn.driver):
        return None
    if sub == 0x0c03:
        return "a USB controller the host drives"
    if sub is not None and (sub >> 8) == 0x02:
        return "a host network interface"
    if sub is not None and (sub >> 8) == 0x01:
        return "host storage"
    return None


def function_line(t: Topology, label: str | None, fn, *, verbose: bool = False) -> str:
    """``group 22  0000:04:00.0  VGA compatible controller: AMD Ellesmere [1002:67df]  driver amdgpu``."""
    cls = names.class_name(fn) or "unknown class"
    parts = [f"group {label if label is not None else '-':<3}", fn.bdf, f"{cls}: {names.short_name(fn)}"]
    if fn.vendor_device:
        parts[-1] += f" [{fn.vendor_device}]"
    drv = fn.driver
    parts.append(f"driver {drv}" if isinstance(drv, str) else ("no driver" if drv is not None else "driver unknown"))
    if verbose:
        rm = fn.reset_methods
        parts.append("reset " + (",".join(rm) if rm else ("none" if rm is not None else "unknown")))
    return "  ".join(parts)


def group_verdict(t: Topology, members: tuple, stock: GroupPrediction | None = None, hypothetical_override: bool = False) -> str:
    """Plain words: can this group be passed through, and at what price."""
    fns = [t.functions[a] for a in members if a in t.functions]
    bridges = [f for f in fns if _is_bridge(f)]
    ends = [f for f in fns if not _is_bridge(f)]
    devices = sorted({(f.address.domain, f.address.bus, f.address.device) for f in ends})
    prefix = ""
    if stock is not None and members:
        lab = stock.group_of.get(members[0])
        stock_members = set(stock.groups.get(lab, ())) if lab is not None else set()
        if stock_members > set(members):
            extra = sorted(stock_members - set(members))
            prefix = ("needs the ACS override (not isolated by hardware): a stock kernel groups it with "
                      + ", ".join(_short(t, a) for a in extra[:4]) + (" ..." if len(extra) > 4 else "") + "; ")
    bridge_note = ""
    if bridges:
        bridge_note = (f" (bridge{'s' if len(bridges) > 1 else ''} {', '.join(_addr_short(b.address) for b in bridges)} "
                       f"stay{'' if len(bridges) > 1 else 's'} with the host)")
    if not ends:
        if all(f.class_code is not None and (f.class_code >> 8) == 0x0600 for f in bridges):
            return prefix + ("the host bridge" if len(bridges) == 1 else "host bridges") + ": nothing to pass through"
        return prefix + "bridges only: nothing to pass through"
    crit = [(f, host_critical(f)) for f in ends]
    crit = [(f, why) for f, why in crit if why]
    chipset = [f for f, _ in crit if f.class_code is not None and (f.class_code >> 8) in (0x0600, 0x0601)]
    if chipset:
        return (f"{prefix}keep on the host: {', '.join(_short(t, f.address) for f in chipset)} is the chipset"
                + (f" (the group also holds {', '.join(_short(t, f.address) for f in ends if f not in chipset)})" if len(ends) > len(chipset) else ""))
    crit_note = ""
    if crit:
        by_why: dict[str, list[str]] = {}
        for f, why in crit:
            by_why.setdefault(why, []).append(_addr_short(f.address))
        crit_note = "; host-critical: " + "; ".join(
            f"{addrs[0]} is {why}" if len(addrs) == 1 else f"{', '.join(addrs)} are each {why}" for why, addrs in by_why.items())
    if len(devices) == 1:
        what = "alone" if len(ends) == 1 else f"one device ({len(ends)} functions, passed through together)"
        return f"{prefix}{what}: can be passed through{bridge_note}{crit_note}"
    others = ends[1:]
    shares = ", ".join(_short(t, f.address, mark=host_critical(f) is not None) for f in others)
    return f"{prefix}{_addr_short(ends[0].address)} shares with {shares}: all of them go to one VM or stay off host drivers{bridge_note}"


def _addr_short(a) -> str:
    s = str(a)
    return s[5:] if s.startswith("0000:") else s


def _short(t: Topology, a, *, mark: bool = False) -> str:
    fn = t.functions.get(a)
    if fn is None:
        return _addr_short(a)
    cls = names.class_name(fn) or names.short_name(fn)
    return f"{_addr_short(a)} {cls}" + (" (host-critical)" if mark else "")


def _stock(t: Topology, pred: GroupPrediction) -> GroupPrediction | None:
    """The stock kernel's groups when the shown ones rest on an ACS override (reported or what-if)."""
    if not (pred.reported_override or any("pcie_acs_override" in a for a in pred.assumptions)):
        return None
    from dataclasses import replace

    from ..kernel.groups import predict_groups

    cmd = t.source.kernel_cmdline
    if cmd and pred.reported_override:
        cmd = " ".join(w for w in cmd.split() if not w.startswith("pcie_acs_override="))
        t = Topology.build(t.functions.values(), t.host_bridges, replace(t.source, kernel_cmdline=cmd))
    return predict_groups(t)


def list_text(t: Topology, pred: GroupPrediction, *, which: str, explain: bool = False, verbose: bool = False) -> str:
    """The default ``groups`` output: one line per function, then a verdict per group."""
    groups = t.reported_groups if which == "reported" else pred.groups
    how = "as the kernel reported them" if which == "reported" else "predicted from the hardware (drivers/iommu/iommu.c pci_device_group)"
    out = [f"IOMMU groups of {t.source.location}, {how}"]
    if pred.hypothetical and which != "reported":
        out.append("HYPOTHETICAL: " + "; ".join(pred.assumptions))
    if pred.reported_override:
        out.append(f"note: this kernel ran with pcie_acs_override={pred.reported_override} (an out-of-tree patch): "
                   "the kernel's groups are not a stock kernel's")
    if which != "reported" and not t.reported_groups:
        out.append("The source reports no groups to compare with.")
    out.append("")
    stock = _stock(t, pred)
    for label, members in groups.items():
        for a in members:
            fn = t.functions.get(a)
            if fn is not None:
                out.append(function_line(t, label, fn, verbose=verbose))
        out.append(f"  => {group_verdict(t, members, stock)}")
        if explain:
            if which == "reported":
                lab = pred.group_of.get(members[0])
                if lab is not None and frozenset(pred.groups.get(lab, ())) == frozenset(members):
                    out.extend(f"     why: {r}" for r in pred.explanations.get(lab, []))
                else:
                    out.append("     why: the prediction groups these devices differently; run with --compare")
            else:
                out.extend(f"     why: {r}" for r in pred.explanations.get(label, []))
    if which == "reported":
        # vfio's own groups of mediated devices: a UUID each, no PCI function (export/mdev.py)
        mdev_lines = _mdev.groups_text(t)
        if mdev_lines:
            out.append("")
            out.extend(mdev_lines)
    if which != "reported":
        if pred.no_group:
            out.append("")
            out.append("Devices the kernel gave no group:")
            out.extend(f"  {a}: {why}" for a, why in pred.no_group.items())
        if t.reported_groups:
            mism = pred.compare(t.reported_groups)
            out.append("")
            if mism:
                out.append(f"{len(mism)} difference(s) from the kernel's groups (run with --compare):")
                out.extend(f"  - {m.message}" for m in mism)
            else:
                out.append("The prediction matches the kernel's reported groups exactly.")
    if which != "reported" or not pred.reported_override:
        for w in pred.warnings:
            out.append(f"warning: {w}")
    return "\n".join(out).rstrip()


def no_iommu_text(t: Topology) -> str:
    """Why a source shows no groups, and what to set (as ``check``'s NO-IOMMU says)."""
    from .plan_exports import iommu_vendor

    vendor, _how = iommu_vendor(t)
    param = {"intel": "intel_iommu=on", "amd": "amd_iommu=on (on by default when the firmware has an IVRS table)"}.get(vendor or "", "intel_iommu=on (Intel) or amd_iommu=on (AMD)")
    cmd = t.source.kernel_cmdline
    lines = [
        f"{t.source.location}: the kernel formed no IOMMU groups (/sys/kernel/iommu_groups is empty), so no device can be given to a VM.",
        "Why: no IOMMU driver took the devices: the IOMMU (VT-d / AMD-Vi) is off in the firmware, or the kernel was booted without it"
        + (f" (command line: {cmd})" if cmd else "") + ".",
        f"What to set: enable VT-d / AMD-Vi (\"IOMMU\") in the firmware setup, and boot with {param}; iommu=pt keeps host devices fast.",
        "Then the groups appear; meanwhile `pci-explorer groups --predict` shows what the kernel will form.",
    ]
    return "\n".join(lines)


def vfio_ids_text(t: Topology, label: str, members: tuple) -> str:
    """``--vfio-ids``: the ``vfio-pci.ids=`` value and driverctl lines for one group."""
    fns = [t.functions[a] for a in members if a in t.functions]
    ends = [f for f in fns if not _is_bridge(f)]
    ids: list[str] = []
    for f in ends:
        if f.vendor_device and f.vendor_device not in ids:
            ids.append(f.vendor_device)
    out = [f"# IOMMU group {label}: {len(ends)} function(s) to bind to vfio-pci" + (f"; bridges {', '.join(b.bdf for b in fns if _is_bridge(b))} stay on pcieport" if len(ends) < len(fns) else "")]
    unknown = [f.bdf for f in ends if not f.vendor_device]
    if unknown:
        out.append(f"# IDs unknown for {', '.join(unknown)}: bind those by address (driverctl below)")
    shared = sorted({o.bdf for o in t if o.vendor_device in ids and o.address not in members})
    if shared:
        out.append(f"# note: vfio-pci.ids= binds by ID, so it also takes {', '.join(shared)} (same vendor:device); use the driverctl lines instead")
    if ids:
        out.append("vfio-pci.ids=" + ",".join(ids))
    for f in ends:
        out.append(f"driverctl set-override {f.bdf} vfio-pci")
    return "\n".join(out)
