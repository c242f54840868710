"""Would the kernel enable ATS, PRI and PASID on a device? (drivers/pci/ats.c, probe.c)

* ATS: ``pci_ats_supported`` needs the ATS capability and a device that is not
  untrusted; a VF takes its PF's answer. The IOMMU driver then enables it on attach.
* PRI: only where ATS is supported (and the IOMMU does I/O page faults).
* PASID: ``pci_enable_pasid`` needs the PASID capability and ``eetlp_prefix_path``: End-End
  TLP Prefix support on the device and on every bridge up to the root port
  (``pci_configure_eetlp_prefix``), or an RCiEP / root port itself; 6.12 also requires ACS
  RR and UF on the whole path. A VF uses its PF's PASID. VMD subdevices get none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..model import ABSENT, Address, PcieType, Topology, present
from .trust import Trust


@dataclass(frozen=True)
class Feature:
    name: str
    supported: bool | None
    reason: str


@lru_cache(maxsize=None)
def _cap_feature(name: str, absent: bool) -> Feature:
    """The answer for an unknown or missing capability, made once per name (immutable)."""
    if absent:
        return Feature(name, False, f"no {name} capability")
    return Feature(name, None, f"{name} capability unknown (config space not readable)")


def _cap_state(value: object, name: str) -> Feature | None:
    if value is None or value is ABSENT:
        return _cap_feature(name, value is ABSENT)
    return None


def ats(t: Topology, addr: Address, trust: Trust | None) -> Feature:
    fn = t.functions[addr]
    if fn.is_virtfn and fn.physfn in t.functions:
        pf = ats(t, fn.physfn, trust)  # type: ignore[arg-type]
        return Feature("ATS", pf.supported, f"a VF takes its PF's answer: {pf.reason}")
    early = _cap_state(fn.caps.ats, "ATS")
    if early:
        return early
    if trust is not None and trust.untrusted:
        return Feature("ATS", False, "untrusted device: pci_ats_supported() refuses it (drivers/pci/ats.c)")
    if addr.domain in t.vmd_domains and fn.address != t.vmd_domains[addr.domain]:
        return Feature("ATS", False, "behind VMD: the IOMMU sees only the VMD endpoint (real DMA subdevice)")
    return Feature("ATS", True, "supported: the IOMMU driver enables it when a domain is attached (pci_ats_supported)")


def pri(t: Topology, addr: Address, trust: Trust | None) -> Feature:
    fn = t.functions[addr]
    early = _cap_state(fn.caps.pri, "PRI")
    if early and not fn.is_virtfn:
        return early
    a = ats(t, addr, trust)
    if not a.supported:
        return Feature("PRI", a.supported and None, f"needs ATS: {a.reason}")
    return Feature("PRI", True, "possible: enabled only for I/O page faults (SVA), after ATS (pci_enable_pri)")


def pasid(t: Topology, addr: Address) -> Feature:
    # Kept with the topology: a VF asks its PF, and every device below a port walks the
    # same path to the root.
    cache: dict[Address, Feature] = t.memo("pasid", dict)
    got = cache.get(addr)  # (a miss is the rule the first time round: no KeyError raised for it)
    if got is None:
        got = cache[addr] = _pasid(t, addr)
    return got


def _pasid(t: Topology, addr: Address) -> Feature:
    fn = t.functions[addr]
    if fn.is_virtfn and fn.physfn in t.functions:
        # One answer object for all VFs of a PF (the same words for each).
        vf_cache: dict[Address, Feature] = t.memo("pasid_vf", dict)
        got = vf_cache.get(fn.physfn)  # type: ignore[arg-type]
        if got is None:
            pf = pasid(t, fn.physfn)  # type: ignore[arg-type]
            got = vf_cache[fn.physfn] = Feature("PASID", pf.supported, f"a VF uses its PF's PASID: {pf.reason}")  # type: ignore[index]
        return got
    early = _cap_state(fn.caps.pasid, "PASID")
    if early:
        return early
    if addr.domain in t.vmd_domains:
        return Feature("PASID", False, "behind VMD: subdevices get no PASID table (intel/iommu.c)")
    if fn.pcie_type in (PcieType.RC_INTEGRATED_ENDPOINT, PcieType.ROOT_PORT):
        return Feature("PASID", True, "an RCiEP or root port needs no TLP-prefix path (pci_configure_eetlp_prefix)")
    missing = []
    unknown = []
    for a in t.path_to_root(addr):
        f = t.functions[a]
        if f.caps.eetlp_prefix is None:
            unknown.append(a)
        elif not f.caps.eetlp_prefix:
            missing.append(a)
        if f.pcie_type is PcieType.ROOT_PORT:
            break
    if missing:
        names = ", ".join(str(a) for a in missing)
        return Feature("PASID", False, f"no End-End TLP Prefix support on {names}: eetlp_prefix_path is not set, pci_enable_pasid() fails")
    if unknown:
        return Feature("PASID", None, "End-End TLP Prefix support unknown on the path to the root port")
    return Feature("PASID", True, "the path carries TLP prefixes: pci_enable_pasid() can succeed (6.12 also needs ACS RR and UF on the path)")


def features(t: Topology, addr: Address, trust: Trust | None) -> list[Feature]:
    return [ats(t, addr, trust), pri(t, addr, trust), pasid(t, addr)]


__all__ = ["Feature", "ats", "pri", "pasid", "features", "present"]
