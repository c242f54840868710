"""Render IOMMU group predictions: text for people, JSON for scripts."""

from __future__ import annotations

from typing import Any

from ..kernel.groups import GroupPrediction
from ..model import Topology, names

JSON_FORMAT = "pci-explorer/groups/1"


def _reported_label(t: Topology, members: tuple) -> str | None:
    by_set = {frozenset(v): k for k, v in t.reported_groups.items()}
    return by_set.get(frozenset(members))


def groups_json(t: Topology, pred: GroupPrediction) -> dict[str, Any]:
    reported = t.reported_groups
    mismatches = pred.compare(reported) if reported else []
    return {
        "format": JSON_FORMAT,
        "source": t.source.location,
        "hypothetical": pred.hypothetical,
        "assumptions": list(pred.assumptions),
        "warnings": list(pred.warnings),
        "reported_override": pred.reported_override,
        "groups": [
            {
                "label": label,
                "members": [str(a) for a in members],
                "reasons": list(pred.explanations.get(label, [])),
                "reported_as": _reported_label(t, members) if reported else None,
            }
            for label, members in pred.groups.items()
        ],
        "no_group": {str(a): why for a, why in pred.no_group.items()},
        "matches_reported": (not mismatches) if reported else None,
        "mismatches": [m.message for m in mismatches],
    }


def groups_text(t: Topology, pred: GroupPrediction) -> str:
    out: list[str] = []
    reported = t.reported_groups
    head = f"IOMMU groups of {t.source.location}, predicted from the hardware (drivers/iommu/iommu.c pci_device_group)"
    out.append(head)
    if pred.hypothetical:
        out.append("HYPOTHETICAL: " + "; ".join(pred.assumptions))
    if pred.reported_override:
        out.append(
            f"note: this kernel ran with pcie_acs_override={pred.reported_override} (an out-of-tree patch): "
            "its reported groups are not a stock kernel's"
        )
    if not reported:
        out.append("The source reports no groups to compare with.")
    out.append("")
    for label, members in pred.groups.items():
        rep = _reported_label(t, members) if reported else None
        tag = ""
        if reported:
            tag = f" (= kernel group {rep})" if rep is not None else " (the kernel grouped these differently)"
        out.append(f"group {label}{tag}: {len(members)} device{'s' if len(members) != 1 else ''}")
        for a in members:
            fn = t.functions[a]
            kind = f"  {fn.pcie_type.label}" if fn.pcie_type else ""
            out.append(f"  {a}  {names.short_name(fn)}{kind}")
        for reason in pred.explanations.get(label, []):
            out.append(f"    why: {reason}")
        out.append("")
    if pred.no_group:
        out.append("Devices the kernel gave no group:")
        for a, why in pred.no_group.items():
            out.append(f"  {a}: {why}")
        out.append("")
    if reported:
        mism = pred.compare(reported)
        if mism:
            out.append(f"{len(mism)} difference(s) from the kernel's groups:")
            out.extend(f"  - {m.message}" for m in mism)
        else:
            out.append("The prediction matches the kernel's reported groups exactly.")
    for w in pred.warnings:
        out.append(f"warning: {w}")
    return "\n".join(out).rstrip()
