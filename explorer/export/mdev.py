"""Mediated devices in the tree, show, groups and JSON renderings (model/mdev.py).

Unknown stays unknown: when the source cannot show mdevs (``Topology.mdev is None``) the
JSON keys are ``null`` and the text says so; ``[]`` means known to be none.
"""

from __future__ import annotations

from typing import Any

from ..kernel.ats import pasid
from ..kernel.siov import siov_status
from ..model import ABSENT, Address, MdevInstance, MdevParent, MdevType, Topology

#: Said wherever a source cannot show mdevs.
UNKNOWN_NOTE = "unknown (this source does not show mediated devices)"


def type_json(mt: MdevType) -> dict[str, Any]:
    return {
        "id": mt.id,
        "name": mt.name,
        "description": None if mt.description is None else (False if mt.description is ABSENT else mt.description),
        "device_api": mt.device_api,
        "available_instances": mt.available_instances,
    }


def instance_json(i: MdevInstance) -> dict[str, Any]:
    return {
        "uuid": i.uuid,
        "type": i.type,
        "parent": i.parent,
        "iommu_group": i.iommu_group if isinstance(i.iommu_group, str) else (False if i.iommu_group is ABSENT else None),
        "driver": i.driver if isinstance(i.driver, str) else (False if i.driver is ABSENT else None),
    }


def parent_json(t: Topology, p: MdevParent) -> dict[str, Any]:
    return {
        "name": p.name,
        "bus": p.bus,
        "driver": p.driver if isinstance(p.driver, str) else (False if p.driver is ABSENT else None),
        "path": p.path,
        "mdev_types": None if p.types is None else [type_json(mt) for mt in p.types],
        "mdevs": [instance_json(i) for i in t.mdev.instances_of(p.name)] if t.mdev else [],
    }


def device_keys(t: Topology, addr: Address) -> dict[str, Any]:
    """The keys ``tree --json`` adds to each device: ``mdev_types`` (its supported types;
    ``[]`` none, ``null`` unknown or a parent whose types the source did not show),
    ``mdevs`` (its active mdevs) and ``siov`` (Scalable IOV verdict and reasons)."""
    if t.mdev is None:
        return {"mdev_types": None, "mdevs": None, "siov": _siov_json(t, addr)}
    p = t.mdev.parent(addr)
    types = [] if p is None else (None if p.types is None else [type_json(mt) for mt in p.types])
    return {
        "mdev_types": types,
        "mdevs": [instance_json(i) for i in t.mdev.instances_of(addr)],
        "siov": _siov_json(t, addr),
    }


def _siov_json(t: Topology, addr: Address) -> dict[str, Any]:
    """The ``siov`` key of a device: Scalable IOV verdict and reasons (read it, never change it)."""
    if t.mdev is None and addr in t.functions:
        # Without mdev facts the verdict follows from the PASID answer alone: one object
        # per answer (VFs of a PF share theirs; the object is read, never changed).
        p = pasid(t, addr)
        cache: dict[tuple[bool | None, str], dict[str, Any]] = t.memo("siov_json", dict)
        got = cache.get((p.supported, p.reason))
        if got is None:
            verdict, reasons = siov_status(t, addr)
            got = cache[(p.supported, p.reason)] = {"capable": verdict, "reasons": reasons}
        return got
    verdict, reasons = siov_status(t, addr)
    return {"capable": verdict, "reasons": reasons}


def topology_keys(t: Topology) -> dict[str, Any]:
    """Top-level keys: every parent (PCI or not) and every active mdev."""
    if t.mdev is None:
        return {"mdev_parents": None, "mdevs": None, "iommu_scalable_mode": None}
    return {
        "mdev_parents": [parent_json(t, p) for p in t.mdev.parents],
        "mdevs": [instance_json(i) for i in t.mdev.instances],
        "iommu_scalable_mode": t.mdev.iommu_scalable_mode,
    }


# ---- text -------------------------------------------------------------------------------------


def _fmt(v: object) -> str:
    if v is None:
        return "unknown"
    if v is ABSENT:
        return "none"
    return str(v)


def instance_line(i: MdevInstance) -> str:
    group = i.iommu_group if isinstance(i.iommu_group, str) else ("no group" if i.iommu_group is ABSENT else None)
    parts = [f"mdev {i.uuid}", _fmt(i.type)]
    badges = []
    if group:
        badges.append(f"group {group}" if group != "no group" else group)
    if isinstance(i.driver, str):
        badges.append(f"driver {i.driver}")
    if badges:
        parts.append("(" + ", ".join(badges) + ")")
    return "  ".join(parts)


def type_summary(mt: MdevType) -> str:
    free = "unknown" if mt.available_instances is None else str(mt.available_instances)
    name = f"  {mt.name}" if mt.name and mt.name != mt.id else ""
    return f"{mt.id}{name}  ({mt.device_api or 'device API unknown'}, {free} available)"


def tree_children(t: Topology, addr: Address) -> list[str]:
    """Lines shown under a function in the text tree: its active mdevs."""
    if t.mdev is None:
        return []
    return [instance_line(i) for i in t.mdev.instances_of(addr)]


def tree_badge(t: Topology, addr: Address) -> str | None:
    if t.mdev is None:
        return None
    p = t.mdev.parent(addr)
    if p is None:
        return None
    if p.types is None:
        return "mdev parent"
    free = sum(1 for mt in p.types if mt.available_instances)
    return f"mdev types {len(p.types)} ({free} with free instances)"


def other_parents_text(t: Topology) -> list[str]:
    """Parents that are not PCI functions of this topology (mtty, vfio-ap, vfio-ccw, ...)."""
    if t.mdev is None:
        return []
    others = [p for p in t.mdev.parents if p.address is None or p.address not in t.functions]
    if not others:
        return []
    out = ["", "mediated-device parents outside the PCI tree:"]
    for p in others:
        out.append(f"{p.name}  ({p.bus or 'bus unknown'}, driver {_fmt(p.driver)}){'  ' + p.path if p.path else ''}")
        for mt in p.types or ():
            out.append(f"    type {type_summary(mt)}")
        if p.types is None:
            out.append("    types unknown")
        for i in t.mdev.instances_of(p.name):
            out.append(f"└── {instance_line(i)}")
    return out


def show_lines(t: Topology, addr: Address) -> list[str]:
    """The ``show`` section: the parent's types with free instances, each mdev, SIOV."""
    out = []
    verdict, reasons = siov_status(t, addr)
    word = {True: "yes", False: "no", None: "unknown"}[verdict]
    out.append(f"  Scalable IOV       {word}: {'; '.join(reasons)}")
    if t.mdev is None:
        out.append(f"  mdev types         {UNKNOWN_NOTE}")
        return out
    p = t.mdev.parent(addr)
    if p is None:
        out.append("  mdev types         none (not an mdev parent)")
        return out
    if p.types is None:
        out.append("  mdev types         unknown (the source lists the parent but not its types)")
    elif not p.types:
        out.append("  mdev types         none listed")
    for mt in p.types or ():
        out.append(f"  mdev type          {type_summary(mt)}")
        if isinstance(mt.description, str):
            out.append(f"                       {' | '.join(x.strip() for x in mt.description.splitlines() if x.strip())}")
    for i in t.mdev.instances_of(addr):
        out.append(f"  active mdev        {instance_line(i)[5:]}")
    return out


def group_rows(t: Topology) -> list[tuple[str, tuple[str, ...], str]]:
    """Reported groups that hold mdevs: (label, UUIDs, why) — vfio's own group per mdev."""
    if t.mdev is None:
        return []
    out = []
    for label, uuids in sorted(t.mdev.group_members().items(), key=lambda kv: (0, int(kv[0])) if kv[0].isdigit() else (1, 0)):
        descr = []
        for u in uuids:
            i = t.mdev.instance(u)
            descr.append(f"mdev {u} (type {_fmt(i.type if i else None)} on {i.parent if i else '?'})")
        why = ("vfio gives each mediated device its own group (drivers/vfio/group.c vfio_noiommu_group_alloc, "
               "VFIO_EMULATED_IOMMU): its DMA goes through the parent's driver, not an IOMMU; " + ", ".join(descr))
        out.append((label, uuids, why))
    return out


def groups_text(t: Topology) -> list[str]:
    rows = group_rows(t)
    if not rows:
        return []
    out: list[str] = []
    for label, uuids, why in rows:
        out.append(f"group {label}: {len(uuids)} mediated device{'s' if len(uuids) != 1 else ''} (no PCI function)")
        for u in uuids:
            i = t.mdev.instance(u) if t.mdev else None
            out.append(f"  {u}  mdev {_fmt(i.type if i else None)} on {i.parent if i else '?'}")
        out.append(f"    why: {why}")
        out.append("")
    return out


__all__ = [
    "UNKNOWN_NOTE", "device_keys", "group_rows", "groups_text", "instance_json", "instance_line", "other_parents_text",
    "parent_json", "show_lines", "topology_keys", "tree_badge", "tree_children", "type_json", "type_summary",
]
