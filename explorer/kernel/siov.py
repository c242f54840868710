"""Scalable IOV: is a device shown as SIOV-capable? Only what the model can know.

A Scalable-IOV device shares itself through PASID-tagged DMA from mediated devices its
own driver creates. So it needs all three of:

* PASID that the kernel can enable (drivers/pci/ats.c ``pci_enable_pasid``: the capability,
  and End-End TLP prefixes on the path; see kernel/ats.py ``pasid``);
* an IOMMU in scalable mode (drivers/iommu/intel/iommu.h ``sm_supported``:
  ``intel_iommu_sm && ecap_smts``; the model's ``MdevInfo.iommu_scalable_mode``);
* a driver that registered the device as an mdev parent with types
  (drivers/vfio/mdev/mdev_core.c ``mdev_register_parent``).

The verdict is False when any is known missing, True when all are known, else None.
"""

from __future__ import annotations

from ..model import Address, Topology
from . import ats


def siov_status(t: Topology, addr: Address) -> tuple[bool | None, list[str]]:
    fn = t.functions.get(addr)
    if fn is None:
        return None, ["not a PCI function of this source"]
    reasons: list[str] = []
    known: list[bool | None] = []
    p = ats.pasid(t, addr)
    known.append(p.supported)
    reasons.append(f"PASID: {p.reason}")
    info = t.mdev
    sm = info.iommu_scalable_mode if info is not None else None
    known.append(sm)
    reasons.append({True: "IOMMU in scalable mode", False: "IOMMU not in scalable mode (ECAP.SMTS or intel_iommu=sm_off)",
                    None: "IOMMU scalable mode unknown"}[sm])
    if info is None:
        known.append(None)
        reasons.append("mdev types unknown (the source does not show them)")
    else:
        parent = info.parent(addr)
        has = None if parent is not None and parent.types is None else bool(parent is not None and parent.types)
        known.append(has)
        reasons.append({True: "its driver exposes mdev types", False: "its driver exposes no mdev types",
                        None: "mdev types unknown"}[has])
    if any(k is False for k in known):
        return False, reasons
    if all(k is True for k in known):
        return True, reasons
    return None, reasons


__all__ = ["siov_status"]
