"""Location versus trust: which devices the kernel treats as untrusted, and what that costs.

Follows drivers/pci/probe.c ``set_pcie_untrusted`` / ``pci_set_removable`` and
arch/x86/pci/acpi.c ``arch_pci_dev_is_removable`` (Linux 6.1.192 and 6.12.117):

* both flags are inherited from the upstream bridge;
* otherwise a device is untrusted/removable when its root port is
  ``external_facing`` and either its parent is a tunnelled (USB4 / integrated
  Thunderbolt) port, or it is not part of a PCIe switch directly below that root
  port (a discrete Thunderbolt controller's own ports stay trusted);
* an ``external_facing`` port itself is internal: only what is below it is external.

Where the source reported the kernel's own decision (sysfs ``removable``) that wins.
Costs (drivers/pci/ats.c ``pci_ats_supported``, drivers/iommu/dma-iommu.c
``dev_use_swiotlb``, drivers/iommu/iommu.c ``iommu_get_default_domain_type``): no ATS,
bounce buffers for unaligned DMA, and a strict DMA domain for the whole IOMMU group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Address, Function, PcieType, Topology

#: Integrated Thunderbolt 3/4 root ports whose children are tunnelled (arch/x86/pci/acpi.c).
TUNNELED_ROOT_PORTS = {
    (0x8086, d)
    for d in (0x8A1D, 0x8A1F, 0x8A21, 0x8A23, 0x9A23, 0x9A25, 0x9A27, 0x9A29, 0x9A2B, 0x9A2D, 0x9A2F, 0x9A31)
}

COSTS = (
    "no ATS: pci_ats_supported() refuses untrusted devices (drivers/pci/ats.c)",
    "bounce buffers: DMA not aligned to the IOMMU granule goes through swiotlb (drivers/iommu/dma-iommu.c dev_use_swiotlb)",
    "strict invalidation: the whole IOMMU group gets a strict DMA domain, never DMA-FQ or identity (drivers/iommu/iommu.c iommu_get_default_domain_type)",
)


@dataclass(frozen=True)
class Trust:
    untrusted: bool | None
    reason: str
    #: True when the answer is the kernel's own (sysfs ``removable``), not our prediction.
    reported: bool = False
    costs: tuple[str, ...] = field(default=())


#: The kernel's own answers (sysfs ``removable``), one object each.
_REMOVABLE = Trust(True, "the kernel marked it removable (untrusted)", reported=True, costs=COSTS)
_NOT_REMOVABLE = Trust(False, "the kernel did not mark it removable", reported=True)


def _root_port(t: Topology, addr: Address) -> Function | None:
    path = t.path_to_root(addr)
    top = t.functions.get(path[-1]) if path else None
    if top is not None and top.pcie_type is PcieType.ROOT_PORT:
        return top
    return None


def _predict(t: Topology, fn: Function, memo: dict[Address, Trust]) -> Trust:
    parent = t.functions.get(fn.parent) if fn.parent else None
    if parent is None:
        return Trust(False, "on a root bus: internal")
    up = assess(t, parent.address, memo)
    if up.untrusted:
        return Trust(True, f"below untrusted {parent.bdf}: inherited (set_pcie_untrusted)", costs=COSTS)
    rp = _root_port(t, fn.address)
    if rp is None:
        return Trust(False, "no root port above it")
    if rp.external_facing is None:
        return Trust(None, f"root port {rp.bdf}: the source does not say whether it is external-facing")
    if not rp.external_facing:
        return Trust(False, f"root port {rp.bdf} is internal")
    pid = (parent.vendor_id, parent.device_id)
    if pid in TUNNELED_ROOT_PORTS:
        return Trust(True, f"tunnelled below integrated Thunderbolt port {parent.bdf} (arch_pci_dev_is_removable)", costs=COSTS)
    # Part of a PCIe switch directly below the external-facing root port: a discrete
    # Thunderbolt controller's own ports and endpoint stay trusted (pcie_switch_directly_under).
    if _in_switch_directly_under(t, rp, fn):
        return Trust(False, f"part of the switch directly below external-facing {rp.bdf} (the Thunderbolt controller itself)")
    return Trust(True, f"behind external-facing root port {rp.bdf} (arch_pci_dev_is_removable)", costs=COSTS)


def _in_switch_directly_under(t: Topology, rp: Function, fn: Function) -> bool:
    """arch/x86/pci/acpi.c pcie_switch_directly_under(bridge=rp, pdev=fn)."""
    parent = t.functions.get(fn.parent) if fn.parent else None
    if parent is None:
        return False
    if fn.pcie_type is PcieType.SWITCH_UPSTREAM:
        return parent.address == rp.address
    if fn.pcie_type is PcieType.SWITCH_DOWNSTREAM:
        return parent.pcie_type is PcieType.SWITCH_UPSTREAM and parent.parent == rp.address
    if fn.pcie_type is PcieType.ENDPOINT:
        if parent.pcie_type is not PcieType.SWITCH_DOWNSTREAM:
            return False
        usp = t.functions.get(parent.parent) if parent.parent else None
        return usp is not None and usp.pcie_type is PcieType.SWITCH_UPSTREAM and usp.parent == rp.address
    return False


def assess(t: Topology, addr: Address, memo: dict[Address, Trust] | None = None) -> Trust:
    """Trust of one function: the kernel's report where the source has it, else predicted."""
    memo = {} if memo is None else memo
    if addr in memo:
        return memo[addr]
    fn = t.functions[addr]
    if fn.removable is not None:
        tr = _REMOVABLE if fn.removable else _NOT_REMOVABLE
    else:
        tr = _predict(t, fn, memo)
    memo[addr] = tr
    return tr


def assess_all(t: Topology) -> dict[Address, Trust]:
    memo: dict[Address, Trust] = {}
    for a in t.functions:
        assess(t, a, memo)
    return memo


def external_facing_ports(t: Topology) -> list[Address]:
    return [fn.address for fn in t if fn.external_facing]
