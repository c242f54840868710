"""Render IOMMU group predictions: text for people, JSON for scripts."""

from __future__ import annotations

from typing import Any

from ..kernel.groups import GroupPrediction
from ..model import Topology, names

JSON_FORMAT = "pci-explorer/groups/1"


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


def groups_json(t: Topology, pred: GroupPrediction, *, which: str = "predicted") -> dict[str, Any]:
    """``{"source": "predicted"|"reported", "groups": [{"id", "devices", "reason"}], ...}``."""
    reported = t.reported_groups
    mismatches = pred.compare(reported) if reported else []
    by_set = _reported_by_set(t) if reported else {}
    if which == "reported":
        rows = [{"id": k, "devices": [str(a) for a in v], "reason": _reason(pred, v)} for k, v in reported.items()]
    else:
        rows = [
            {"id": k, "devices": [str(a) for a in v], "reason": " ".join(pred.explanations.get(k, []))}
            for k, v in pred.groups.items()
        ]
    return {
        "source": which,
        "groups": rows,
        "format": JSON_FORMAT,
        "location": t.source.location,
        "hypothetical": pred.hypothetical,
        "assumptions": list(pred.assumptions),
        "warnings": list(pred.warnings),
        "reported_override": pred.reported_override,
        "predicted": [
            {
                "label": label,
                "members": [str(a) for a in members],
                "reasons": list(pred.explanations.get(label, [])),
                "reported_as": _reported_label(t, members, by_set) if reported else None,
            }
            for label, members in pred.groups.items()
        ],
        "no_group": {str(a): why for a, why in pred.no_group.items()},
        "matches_reported": (not mismatches) if reported else None,
        "mismatches": [m.message for m in mismatches],
    }


def reported_text(t: Topology, pred: GroupPrediction, *, explain: bool = False) -> str:
    """The groups as the kernel reported them; with ``explain``, why (from the prediction)."""
    out = [f"IOMMU groups of {t.source.location}, as the kernel reported them"]
    if pred.reported_override:
        out.append(
            f"note: this kernel ran with pcie_acs_override={pred.reported_override} (an out-of-tree patch): "
            "these groups are not a stock kernel's"
        )
    out.append("")
    for label, members in t.reported_groups.items():
        out.append(f"group {label}: {len(members)} device{'s' if len(members) != 1 else ''}")
        for a in members:
            fn = t.functions[a]
            kind = f"  {fn.pcie_type.label}" if fn.pcie_type else ""
            out.append(f"  {a}  {names.short_name(fn)}{kind}")
        if explain:
            lab = pred.group_of.get(members[0])
            if lab is not None and frozenset(pred.groups.get(lab, ())) == frozenset(members):
                out.extend(f"    why: {r}" for r in pred.explanations.get(lab, []))
            else:
                out.append("    why: the prediction groups these devices differently; run with --compare")
        out.append("")
    return "\n".join(out).rstrip()


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


def groups_text(t: Topology, pred: GroupPrediction, *, explain: bool = True) -> str:
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
        if explain:
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
