"""Trust and location for people and scripts: ``pci-explorer trust``, and the trust facts
``show`` and ``tree --json`` carry for every device.

The kernel rules are explorer.kernel.trust's (set_pcie_untrusted, pci_set_removable,
arch_pci_dev_is_removable); this module says where each fact came from and what the
kernel then does differently (drivers/pci/ats.c, drivers/iommu/dma-iommu.c, iommu.c).
"""

from __future__ import annotations

from typing import Any

from ..kernel.ats import ats
from ..kernel.trust import COSTS, Trust, assess, assess_all
from ..model import Address, Function, PcieType, Topology, names, present
from ..model.thunderbolt import SECURITY_LEVELS, ThunderboltDevice
from .envelope import envelope

#: What untrusted costs, as short keys (JSON) with the sentences of kernel.trust.COSTS.
COST_KEYS = ("no-ats", "swiotlb-bounce", "strict-iotlb")

DMA_RESTRICTION = (
    "always translated: whatever the command line says (iommu=pt), its group gets a DMA domain, and a driver "
    "asking for an identity domain is refused (drivers/iommu/iommu.c iommu_get_default_domain_type: "
    "'Device is not trusted ... refusing to probe')"
)


def external_facing_fact(t: Topology, fn: Function) -> tuple[bool | None, str]:
    """(value, where it came from) for ``external_facing``.

    Only a root port carries the firmware's ExternalFacingPort property (drivers/pci/
    pci-acpi.c pci_acpi_set_external_facing; DT "external-facing" the same), so any other
    function is not external-facing itself: what is below such a port is *untrusted*."""
    if fn.pcie_type is not None and fn.pcie_type is not PcieType.ROOT_PORT:
        return False, "only a root port carries the firmware's ExternalFacingPort property"
    if fn.external_facing is None:
        if fn.pcie_type is None:
            return None, "the source does not give the PCIe type"
        return None, _unknown_why(t)
    where = {
        "yaml": "stated in the YAML topology",
        "plan": "stated by the plan (trust action)",
    }.get(t.source.kind, f"from the {t.source.kind} source")
    return fn.external_facing, where


def _unknown_why(t: Topology) -> str:
    if t.source.kind in ("sysfs", "snapshot"):
        return ("sysfs does not export the firmware's ExternalFacingPort property; "
                "the removable attribute of the devices below shows its effect")
    if t.source.kind == "lspci":
        return "lspci does not show the firmware's ExternalFacingPort property"
    return "the source does not say"


def _source_of(tr: Trust) -> str:
    return "the kernel (sysfs removable)" if tr.reported else "predicted (arch_pci_dev_is_removable)"


def device_trust_json(t: Topology, fn: Function, memo: dict[Address, Trust] | None = None,
                      parts: dict | None = None) -> dict[str, Any]:
    """The trust facts of one function (``trust`` key of tree/show JSON, ``devices`` of trust JSON).

    ``parts`` (a dict kept for one document) lets functions with equal facts share one
    object, read and never changed: all but the untrusted, whose costs are their own."""
    tr = assess(t, fn.address, memo)
    ef, ef_from = external_facing_fact(t, fn)
    if parts is not None and not tr.untrusted:
        key = ("trust", tr, fn.removable, ef, ef_from)
        got = parts.get(key)
        if got is None:
            got = parts[key] = _trust_json(tr, fn, ef, ef_from, [])
        return got
    return _trust_json(tr, fn, ef, ef_from, _costs(t, fn, tr) if tr.untrusted else [])


def _trust_json(tr: Trust, fn: Function, ef: bool | None, ef_from: str, costs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "untrusted": tr.untrusted,
        "removable": tr.untrusted if fn.removable is None else fn.removable,
        "reason": tr.reason,
        "from": "kernel" if tr.reported else ("predicted" if tr.untrusted is not None else "unknown"),
        "external_facing": ef,
        "external_facing_from": ef_from,
        "costs": costs,
    }


def _costs(t: Topology, fn: Function, tr: Trust) -> list[dict[str, Any]]:
    out = []
    at = ats(t, fn.address, tr)
    has_ats = present(fn.caps.ats)
    note = {
        "no-ats": at.reason if has_ats else ("it has no ATS capability anyway" if fn.caps.ats is not None else "ATS capability unknown"),
        "swiotlb-bounce": "DMA buffers not aligned to the IOMMU page size are copied through swiotlb",
        "strict-iotlb": "unmaps wait for the IOTLB invalidation (no flush queue)",
    }
    for key, text in zip(COST_KEYS, COSTS):
        out.append({"cost": key, "what": text, "here": note[key]})
    out.append({"cost": "dma-restricted", "what": DMA_RESTRICTION, "here": "its whole IOMMU group is affected"})
    return out


def _tb_json(d: ThunderboltDevice) -> dict[str, Any]:
    return {
        "name": d.name,
        "kind": "domain" if d.is_domain else ("host-router" if d.is_host_router else ("router" if d.is_router else "other")),
        "authorized": d.authorized,
        "security": d.security,
        "security_means": SECURITY_LEVELS.get(d.security or ""),
        "iommu_dma_protection": d.iommu_dma_protection,
        "vendor_name": d.vendor_name,
        "device_name": d.device_name,
        "pci_device": str(d.pci_device) if d.pci_device else None,
    }


def _authorized_text(v: int | None) -> str:
    return {None: "authorization unknown", 0: "NOT authorized (no PCIe tunnels)", 1: "authorized", 2: "authorized with a key"}.get(v, f"authorized={v}")


def trust_json(t: Topology) -> dict[str, Any]:
    """``trust --json``: external-facing ports, untrusted/removable devices, costs, Thunderbolt."""
    memo = assess_all(t)
    ports = []
    unknown_ports = []
    for fn in t:
        if fn.pcie_type is not PcieType.ROOT_PORT:
            continue
        ef, where = external_facing_fact(t, fn)
        if ef:
            below = [str(a) for a in t.functions if a != fn.address and fn.address in t.path_to_root(a)]
            ports.append({"bdf": fn.bdf, "name": names.short_name(fn), "from": where, "below": below})
        elif ef is None:
            unknown_ports.append({"bdf": fn.bdf, "why": where})
    devices = []
    for fn in t:
        tr = memo[fn.address]
        if tr.untrusted or fn.removable:
            devices.append({"bdf": fn.bdf, "name": names.short_name(fn), **device_trust_json(t, fn, memo)})
    unknown_devices = [str(a) for a, tr in memo.items() if tr.untrusted is None]
    tb = t.source.thunderbolt
    return envelope("trust", t, {
        "external_facing_ports": ports,
        "ports_unknown": unknown_ports,
        "untrusted": devices,
        "unknown": unknown_devices,
        "thunderbolt": None if tb is None else [_tb_json(d) for d in tb],
        "costs": [{"cost": k, "what": c} for k, c in zip(COST_KEYS, COSTS)] + [{"cost": "dma-restricted", "what": DMA_RESTRICTION}],
    })


def trust_text(t: Topology) -> str:
    doc = trust_json(t)
    out = [f"Trust and location of {t.source.location}", ""]
    if doc["external_facing_ports"]:
        out.append("External-facing ports (internal themselves; everything below them is external):")
        for p in doc["external_facing_ports"]:
            out.append(f"  {p['bdf']}  {p['name']}  ({p['from']}; {len(p['below'])} device(s) below)")
    else:
        out.append("External-facing ports: none known.")
    if doc["ports_unknown"]:
        out.append(f"  {len(doc['ports_unknown'])} root port(s) not known either way: {doc['ports_unknown'][0]['why']}")
        out.append("    " + ", ".join(p["bdf"] for p in doc["ports_unknown"]))
    out.append("")
    if doc["untrusted"]:
        out.append("Untrusted (and removable) devices:")
        for d in doc["untrusted"]:
            src = "kernel" if d["from"] == "kernel" else "predicted"
            out.append(f"  {d['bdf']}  {d['name']}")
            out.append(f"      {src}: {d['reason']}")
        out.append("")
        out.append("What the kernel does differently for them:")
        for c in doc["costs"]:
            out.append(f"  - {c['what']}")
    else:
        out.append("Untrusted devices: none" + (" known" if doc["unknown"] else "") + ".")
    if doc["unknown"]:
        out.append(f"Trust unknown for {len(doc['unknown'])} device(s) (the source does not say whether the root port above is external-facing).")
    out.append("")
    tb = t.source.thunderbolt
    if tb is None:
        out.append("Thunderbolt/USB4 authorization: unknown (the source does not show /sys/bus/thunderbolt).")
    elif not tb:
        out.append("Thunderbolt/USB4: the thunderbolt bus lists no devices.")
    else:
        out.append("Thunderbolt/USB4 (/sys/bus/thunderbolt/devices):")
        for d in tb:
            if d.is_domain:
                sec = d.security or "unknown"
                dma = {True: "on", False: "off", None: "unknown"}[d.iommu_dma_protection]
                nhi = f" (NHI {d.pci_device})" if d.pci_device else ""
                out.append(f"  {d.name}{nhi}: security {sec}, IOMMU DMA protection {dma}")
                if d.security in SECURITY_LEVELS:
                    out.append(f"      {SECURITY_LEVELS[d.security]}")
            elif d.is_router:
                who = " ".join(x for x in (d.vendor_name, d.device_name) if x) or "unnamed"
                role = "host router" if d.is_host_router else who
                out.append(f"  {d.name}  {role}: {_authorized_text(d.authorized)}")
    return "\n".join(out).rstrip()


def device_trust_lines(t: Topology, fn: Function) -> list[str]:
    """The trust lines of ``show``: external-facing, untrusted/removable and why, the costs."""
    d = device_trust_json(t, fn)
    ef = {True: "yes", False: "no", None: "unknown"}[d["external_facing"]]
    lines = [f"  external-facing    {ef} ({d['external_facing_from']})"]
    state = {True: "untrusted and removable", False: "trusted", None: "unknown"}[d["untrusted"]]
    src = {"kernel": "as the kernel reported it", "predicted": "predicted", "unknown": "not known"}[d["from"]]
    lines.append(f"  trust              {state} ({src}): {d['reason']}")
    for c in d["costs"]:
        lines.append(f"    costs: {c['what']}")
    for tb in t.source.thunderbolt or ():
        if tb.is_domain and tb.pci_device == fn.address:
            dma = {True: "on", False: "off", None: "unknown"}[tb.iommu_dma_protection]
            lines.append(f"  Thunderbolt        {tb.name}: security {tb.security or 'unknown'}, IOMMU DMA protection {dma}")
    if d["untrusted"] or fn.removable:
        routers = [tb for tb in t.source.thunderbolt or () if not tb.is_domain]
        if t.source.thunderbolt is None:
            lines.append("  Thunderbolt authorization: not in this source (on the machine: boltctl list, "
                         "or /sys/bus/thunderbolt/devices/*/authorized)")
        elif routers:
            auth = {0: "not authorized", 1: "authorized", 2: "authorized (secure key)", None: "unknown"}
            lines.append("  Thunderbolt authorization: " + ", ".join(
                f"{tb.name} {tb.device_name or ''} {auth.get(tb.authorized, str(tb.authorized))}".replace("  ", " ")
                for tb in routers))
    return lines


__all__ = ["device_trust_json", "device_trust_lines", "external_facing_fact", "trust_json", "trust_text"]
