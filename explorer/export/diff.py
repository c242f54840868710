"""Render a diff of two sources (explorer.kernel.diff): text for people, JSON for scripts.

JSON (``pci-explorer/diff/1``, docs/json.md)::

    {"format": <pci-explorer/diff/1>, "source": {"kind": "diff", "location": ..., "old": {...}, "new": {...}},
     "differs": bool, "sections": [...],
     "context": [{"what", "old", "new"}],
     "devices": {"added": [BDF], "removed": [BDF], "moved": [{"from", "to", "by"}],
                 "changed": [{"bdf", "what", "old", "new"}], "matched": {"<how>": count}},
     "groups": [{"devices": [BDF], "old": label|null, "new": label|null, "change", "why", "old_group", "new_group"}],
     "group_labels": [{"devices", "old", "new"}], "group_basis": "reported"|"predicted",
     "resources": [{"bdf", "what": "io"|"mem"|"pref"|"bar N"|"rom"|"vf-bar N"|"bus", "old": [start, end]|null,
                    "new": [start, end]|null, "change"}],
     "drivers": [{"bdf", "what": "driver"|"driver_override", "old", "new"}],
     "links": [{"bdf", "old", "new", "max_old", "max_new", "below_capability"}],
     "sriov": [{"bdf", "what", "old", "new"}],
     "unknown": [{"section", "bdf", "what", "unknown_in"}], "notes": [...]}
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from ..kernel.diff import SECTIONS, Change, Diff, diff_topologies
from ..model import Address, Capabilities, Function, SourceInfo, SriovCap, Topology
from .envelope import envelope, format_id

FORMAT = format_id("diff")

_TITLES = {
    "context": "context", "devices": "devices", "groups": "IOMMU groups", "resources": "resources",
    "drivers": "drivers", "links": "links", "sriov": "SR-IOV",
}


def parse_only(text: str | None) -> tuple[str, ...]:
    """``--only devices,groups``: the sections to report (ValueError names a bad one)."""
    if not text:
        return SECTIONS
    out = []
    for word in text.replace(" ", ",").split(","):
        if not word:
            continue
        if word not in SECTIONS:
            raise ValueError(f"--only: unknown section {word!r} (expected {', '.join(SECTIONS)})")
        out.append(word)
    return tuple(s for s in SECTIONS if s in out)


def selected(diff: Diff, sections: Iterable[str] = SECTIONS) -> list[Change]:
    want = set(sections)
    return [c for c in diff.changes if c.section in want]


def differs(diff: Diff, sections: Iterable[str] = SECTIONS) -> bool:
    return bool(selected(diff, sections))


def _source(t: Topology) -> dict[str, Any]:
    s = t.source
    return {
        "kind": s.kind, "location": s.location, "description": s.description,
        "kernel_release": s.kernel_release, "kernel_cmdline": s.kernel_cmdline, "iommu_present": s.iommu_present,
        "firmware": dict(s.firmware), "warnings": list(s.warnings),
    }


def diff_json(diff: Diff, sections: Iterable[str] = SECTIONS) -> dict[str, Any]:
    sections = tuple(sections)
    changes = selected(diff, sections)
    source = {
        "kind": "diff",
        "location": f"{diff.old.source.location} -> {diff.new.source.location}",
        "old": _source(diff.old),
        "new": _source(diff.new),
    }
    doc: dict[str, Any] = {
        "differs": bool(changes),
        "sections": list(sections),
    }
    for sec in sections:
        items = [c.data for c in changes if c.section == sec]
        if sec == "devices":
            doc["devices"] = {
                "added": [d["bdf"] for d in items if d["change"] == "added"],
                "removed": [d["bdf"] for d in items if d["change"] == "removed"],
                "moved": [{"from": d["from"], "to": d["to"], "by": d["by"]} for d in items if d["change"] == "moved"],
                "changed": [{k: v for k, v in d.items() if k != "change"} for d in items if d["change"] == "changed"],
                "matched": dict(Counter(m.by for m in diff.matches)),
            }
        elif sec == "groups":
            # Membership changes; a group whose devices stayed together under a new number is
            # listed apart (the same partition, another label).
            doc["groups"] = [d for d in items if d["change"] != "renumbered"]
            doc["group_labels"] = [{k: d[k] for k in ("devices", "old", "new")} for d in items if d["change"] == "renumbered"]
            doc["group_basis"] = diff.group_basis
        else:
            doc[sec] = items
    doc["unknown"] = [u.to_json() for u in diff.unknowns if u.section in sections]
    doc["notes"] = list(diff.notes)
    return envelope("diff", source, doc)


def _side(t: Topology) -> str:
    s = t.source
    bits = [s.kind]
    if s.kernel_release:
        bits.append(f"kernel {s.kernel_release}")
    fw = dict(s.firmware)
    if fw.get("bios_version"):
        bits.append(f"BIOS {fw['bios_version']}")
    return f"{s.location} ({', '.join(bits)})"


def diff_text(diff: Diff, sections: Iterable[str] = SECTIONS) -> str:
    sections = tuple(sections)
    changes = selected(diff, sections)
    lines = [f"old: {_side(diff.old)}", f"new: {_side(diff.new)}"]
    by = Counter(m.by for m in diff.matches)
    how = ", ".join(f"{n} by {k}" for k, n in sorted(by.items(), key=lambda kv: -kv[1]))
    lines.append(f"{len(diff.matches)} devices on both sides ({how or 'none'}), {len(diff.added)} added, "
                 f"{len(diff.removed)} removed")
    for note in diff.notes:
        lines.append(f"note: {note}")
    for sec in sections:
        items = [c for c in changes if c.section == sec]
        if not items:
            continue
        title = _TITLES[sec]
        if sec == "groups":
            title += f" (as {'the kernel reported them' if diff.group_basis == 'reported' else 'predicted from the hardware'})"
        lines.append("")
        lines.append(f"{title}:")
        lines.extend(f"  {c.text}" for c in items)
    unknown = [u for u in diff.unknowns if u.section in sections]
    if unknown:
        lines.append("")
        counts = Counter((u.section, u.what, u.missing_on) for u in unknown)
        shown = "; ".join(f"{what} ({n}, unknown in {side})" if n > 1 else f"{what} (unknown in {side})"
                          for (_, what, side), n in list(counts.items())[:12])
        more = f"; and {len(counts) - 12} more" if len(counts) > 12 else ""
        lines.append(f"not compared, one side does not say: {shown}{more}")
    lines.append("")
    if changes:
        n = Counter(c.section for c in changes)
        lines.append("differences: " + ", ".join(f"{n[s]} {_TITLES[s]}" for s in sections if n[s]))
    else:
        lines.append("no differences" + (" in " + ", ".join(sections) if sections != SECTIONS else ""))
    return "\n".join(lines)


def changes_inline(changes: list[Change], limit: int = 12) -> str:
    """Changes on one line, ``; ``-separated (a finding's message)."""
    parts = []
    for c in changes[:limit]:
        head, _, why = c.text.partition("\n    why: ")
        causes = why.split(". before: ")[0].split(". now: ")[0]
        parts.append(f"{head}, because {causes}" if causes else head)
    if len(changes) > limit:
        parts.append(f"and {len(changes) - limit} more")
    return "; ".join(parts)


def changes_text(changes: list[Change], limit: int = 20) -> str:
    """A few changes as short lines (the drift message of ``check``)."""
    out = [f"  {c.section}: {c.text}" for c in changes[:limit]]
    if len(changes) > limit:
        out.append(f"  and {len(changes) - limit} more")
    return "\n".join(out)


# ---- a plan against a changed machine ---------------------------------------------------------
def plan_addresses(plan: Any, topology: Topology | None = None) -> set[Address]:
    """The devices a plan's actions name (with their IOMMU groups in ``topology`` for
    ``--group`` actions); every fingerprinted device when the plan has no actions."""
    out: set[Address] = set()
    for a in plan.actions:
        for name in ("device", "pf", "parent", "port"):
            v = getattr(a, name, None)
            if isinstance(v, Address):
                out.add(v)
        dev = getattr(a, "device", None)
        if getattr(a, "group", False) and topology is not None and dev is not None:
            fn = topology.get(dev)
            if fn is not None and isinstance(fn.iommu_group, str):
                out.update(topology.reported_groups.get(fn.iommu_group, ()))
    if not plan.actions:
        out.update(d.address for d in plan.devices)
    return out


def fingerprint_topology(plan: Any) -> Topology:
    """The machine as the plan recorded it (identity, driver, override, VF count of each
    device; everything else unknown), to compare a changed machine with."""
    fns = []
    for d in plan.devices:
        vendor = device = sub_v = sub_d = None
        if d.vendor_device:
            vendor, device = (int(x, 16) for x in d.vendor_device.split(":"))
        if d.subsystem:
            sub_v, sub_d = (int(x, 16) for x in d.subsystem.split(":"))
        caps = Capabilities(dsn=d.serial, sriov=SriovCap(num_vfs=d.num_vfs) if d.num_vfs is not None else None)
        fns.append(Function(
            address=d.address, vendor_id=vendor, device_id=device, subsystem_vendor_id=sub_v,
            subsystem_device_id=sub_d, class_code=int(d.class_code, 16) if d.class_code else None, caps=caps,
            driver=d.driver, driver_override=d.override, is_virtfn=d.is_vf or None,
        ))
    src = plan.source
    info = SourceInfo("plan", plan.path or src.spec or "<plan>", kernel_release=src.kernel_release,
                      kernel_cmdline=src.kernel_cmdline)
    return Topology.build(fns, (), info)


def plan_drift_changes(plan: Any, new: Topology, old: Topology | None = None) -> tuple[Diff, list[Change]]:
    """What changed for the plan's devices between the machine the plan was made for and
    ``new``. ``old`` is the plan's own source when it still loads and still matches the
    plan; else the plan's fingerprint stands for it (devices, drivers and SR-IOV only)."""
    if old is None:
        base = fingerprint_topology(plan)
        sections: tuple[str, ...] = ("devices", "drivers", "sriov")
    else:
        base = old
        sections = SECTIONS
    d = diff_topologies(base, new)
    want = plan_addresses(plan, base)
    # the plan names the addresses of the machine it was made for (OLD)
    touched = [c for c in d.touching(want, "old") if c.section in sections and c.section != "context"]
    return d, touched


__all__ = [
    "FORMAT", "changes_inline", "changes_text", "diff_json", "diff_text", "differs", "fingerprint_topology", "parse_only",
    "plan_addresses", "plan_drift_changes", "selected",
]
