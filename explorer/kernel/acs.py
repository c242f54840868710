"""``pci_acs_enabled`` and friends (drivers/pci/pci.c), re-implemented faithfully.

Each answer is an :class:`AcsVerdict`: the kernel's boolean plus a short reason
that names what decided it (a quirk, the port type, the ACS registers). When a
fact the kernel would read is unknown (``None`` in the model), the verdict takes
the kernel's conservative answer, *not isolated*, and says which fact was
missing (``known=False``).

:func:`acs_device` builds the :class:`~explorer.kernel.quirks.AcsDevice` view of
a model ``Function``: the ``multifunction`` flag as the kernel sets it, and the
few register states the kernel changes itself when an IOMMU asks for ACS (which
a dump can therefore get wrong), each recorded as an assumption.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable

from ..model import ABSENT, AcsCap, Address, Function, Maybe, PcieType, Topology, acs_flags_str
from .quirks import (
    ACS_QUIRKS,
    PCI_ACS_CR,
    PCI_ACS_EC,
    PCI_ACS_RR,
    PCI_ACS_SV,
    PCI_ACS_UF,
    PCI_VENDOR_ID_AMD,
    PCI_VENDOR_ID_ATI,
    AcsDevice,
    AcsQuirk,
    pci_dev_specific_acs_enabled,
    pci_quirk_intel_pch_acs_match,
    pci_quirk_intel_spt_pch_acs_match,
    UnknownFact,
)

#: drivers/iommu/iommu.c: what "isolated" means for IOMMU grouping.
REQ_ACS_FLAGS = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF


def _flag_names(flags: int) -> str:
    names = acs_flags_str(flags).split("+")
    if len(names) <= 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True, slots=True)
class AcsVerdict:
    """``pci_acs_enabled(dev, flags)``: ``isolated`` is the kernel's answer (or the
    conservative False when ``known`` is False)."""

    isolated: bool
    #: Completes "<device> ...", e.g. "is a root port with no ACS capability".
    reason: str
    known: bool = True
    #: The quirk table entry that decided, if any.
    quirk: str | None = None
    #: An assumption the answer rests on (a register the kernel itself programs).
    assumption: str | None = None
    #: A what-if answer (assume_acs, pcie_acs_override).
    hypothetical: bool = False
    #: A short noun phrase for the cause, e.g. "no ACS capability".
    cause: str = ""


def pci_acs_flags_enabled(acs: Maybe[AcsCap], acs_flags: int) -> bool | None:
    """pci.c: no ACS capability -> False; flags the device does not implement count
    as hard-wired on (masked with cap | EC); every remaining flag must be set in ctrl.
    None when the capability is unknown."""
    if acs is None:
        return None
    if acs is ABSENT:
        return False
    assert isinstance(acs, AcsCap)
    acs_flags &= acs.cap | PCI_ACS_EC
    return (acs.ctrl & acs_flags) == acs_flags


NO_ACS = "no ACS capability"


def _flags_verdict(dev: AcsDevice, acs_flags: int, what: str, unknown_reason: str) -> AcsVerdict:
    ok = pci_acs_flags_enabled(dev.acs, acs_flags)
    if ok is None:
        return AcsVerdict(False, f"{what} whose ACS capability is unknown ({unknown_reason}), so it is taken as "
                                 "not isolated", known=False, cause="ACS unknown")
    if dev.acs is ABSENT:
        return AcsVerdict(False, f"{what} with {NO_ACS}", cause=NO_ACS)
    acs = dev.acs
    assert isinstance(acs, AcsCap)
    need = acs_flags & (acs.cap | PCI_ACS_EC)
    missing = need & ~acs.ctrl
    if ok:
        if need == acs_flags:
            return AcsVerdict(True, f"{what} with ACS {_flag_names(acs_flags)} enabled", cause="ACS enabled")
        return AcsVerdict(True, f"{what} with ACS enabled ({_flag_names(need) if need else 'no flag'} enabled; "
                                f"{_flag_names(acs_flags & ~need)} not implemented, so not required)",
                          cause="ACS enabled")
    return AcsVerdict(False, f"{what} whose ACS does not enable {_flag_names(missing)}",
                      cause=f"ACS {_flag_names(missing)} not enabled")


_TYPE_WHAT = {
    PcieType.ROOT_PORT: "is a root port",
    PcieType.SWITCH_DOWNSTREAM: "is a switch downstream port",
    PcieType.SWITCH_UPSTREAM: "is a switch upstream port",
    PcieType.ENDPOINT: "is a PCIe endpoint",
    PcieType.LEGACY_ENDPOINT: "is a legacy PCIe endpoint",
    PcieType.RC_INTEGRATED_ENDPOINT: "is a root complex integrated endpoint",
}


def pci_acs_enabled(
    dev: AcsDevice,
    acs_flags: int = REQ_ACS_FLAGS,
    table: tuple[AcsQuirk, ...] = ACS_QUIRKS,
    *,
    unknown_reason: str = "the source did not show it",
) -> AcsVerdict:
    """pci.c ``pci_acs_enabled``: quirks first, then by PCIe type."""
    q = pci_dev_specific_acs_enabled(dev, acs_flags, table)
    if q.ret is None:
        name = q.quirk.name if q.quirk else "?"
        return AcsVerdict(False, f"may match the kernel quirk {name} but {q.unknown} is unknown, so it is taken "
                                 "as not isolated", known=False, quirk=name, cause=f"{q.unknown} unknown")
    if q.ret >= 0:
        assert q.quirk is not None
        name = q.quirk.name
        hyp = name == "pcie_acs_overrides"
        note = f" ({q.quirk.comment})" if q.quirk.comment else ""
        if q.ret > 0:
            return AcsVerdict(True, f"is isolated by the kernel quirk {name}{note}", quirk=name, hypothetical=hyp,
                              cause=f"quirk {name}")
        return AcsVerdict(False, f"is declared not isolated by the kernel quirk {name}{note}", quirk=name,
                          hypothetical=hyp, cause=f"quirk {name} says not isolated")
    t = dev.pcie_type
    if t is None:
        return AcsVerdict(False, f"has an unknown PCIe type ({unknown_reason}), so it is taken as not isolated",
                          known=False, cause="PCIe type unknown")
    if t is PcieType.CONVENTIONAL:
        return AcsVerdict(False, "is a conventional PCI device, never isolated (a shared bus)",
                          cause="conventional PCI")
    if t is PcieType.PCI_TO_PCIE_BRIDGE:
        return AcsVerdict(False, "is a PCI/PCI-X-to-PCIe bridge, never isolated", cause="PCI-to-PCIe bridge")
    if t is PcieType.PCIE_TO_PCI_BRIDGE:
        return AcsVerdict(False, "is a PCIe-to-PCI/PCI-X bridge, never isolated", cause="PCIe-to-PCI bridge")
    if t is PcieType.RC_EVENT_COLLECTOR:
        return AcsVerdict(False, "is a root complex event collector, never isolated", cause="RCEC")
    if t in (PcieType.SWITCH_DOWNSTREAM, PcieType.ROOT_PORT):
        return _flags_verdict(dev, acs_flags, _TYPE_WHAT[t], unknown_reason)
    if t in (PcieType.ENDPOINT, PcieType.SWITCH_UPSTREAM, PcieType.LEGACY_ENDPOINT, PcieType.RC_INTEGRATED_ENDPOINT):
        if dev.multifunction is None:
            return AcsVerdict(False, f"{_TYPE_WHAT[t]} and whether it is multifunction is unknown, so it is taken "
                                     "as not isolated", known=False, cause="multifunction unknown")
        if not dev.multifunction:
            return AcsVerdict(True, f"{_TYPE_WHAT[t]} and is single-function, so it needs no ACS",
                              cause="single-function")
        return _flags_verdict(dev, acs_flags, f"{_TYPE_WHAT[t]} in a multifunction device", unknown_reason)
    return AcsVerdict(True, "needs no ACS", cause="needs no ACS")


def pci_acs_path_enabled(
    start: Address,
    end: Address | None,
    acs_flags: int,
    *,
    enabled: Callable[[Address, int], bool],
    parent: Callable[[Address], Address | None],
) -> bool:
    """pci.c ``pci_acs_path_enabled``: test ``start`` then each ``bus->self`` above it;
    on reaching a device on the root bus return ``end is None``."""
    pdev: Address | None = start
    while True:
        assert pdev is not None
        if not enabled(pdev, acs_flags):
            return False
        up = parent(pdev)
        if up is None:
            return end is None
        if pdev == end:
            return True
        pdev = up


# ---- building the kernel's view of a Function ---------------------------------------------------
def is_virtfn(fn: Function) -> bool:
    return bool(fn.is_virtfn) or fn.physfn is not None


def kernel_multifunction(fn: Function, topology: Topology) -> bool:
    """``dev->multifunction``: 0 for VFs (iov.c); 1 for every function found after
    function 0 by ``pci_scan_slot`` (probe.c); else the header's bit 7 (when the
    source does not show it: whether other functions exist in the slot)."""
    if is_virtfn(fn):
        return False
    if fn.address.function > 0:
        return True
    if fn.address.device > 0 and fn.parent is not None:
        up = topology.get(fn.parent)
        if up is not None and up.pcie_type in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM):
            return True  # only reachable by an ARI scan, where every devfn > 0 is "fn > 0"
    if fn.multifunction is not None:
        return fn.multifunction
    if any(not is_virtfn(topology[s]) for s in topology.slot_siblings(fn.address)):
        return True  # pci_scan_slot only goes past function 0 when it is multifunction
    # Header type not shown (lspci text): no other function in the slot, so single-function.
    # The bit could in principle be set with no other function present; see MF_ASSUMED.
    return False


#: Wording of the assumption kernel_multifunction makes when the header type is unknown.
MF_ASSUMED = ("the source does not show its header type; it is taken as single-function because no other "
              "function exists in its slot")


def multifunction_assumed(fn: Function, topology: Topology) -> bool:
    """True when kernel_multifunction's answer for ``fn`` rests on MF_ASSUMED."""
    return (fn.multifunction is None and not is_virtfn(fn) and fn.address.function == 0
            and kernel_multifunction(fn, topology) is False)


def unknown_reason(fn: Function) -> str:
    """Why the ACS/type facts of ``fn`` may be unknown, in words."""
    if fn.config_size is not None and fn.config_size < 256:
        return f"the source showed only {fn.config_size} bytes of config space"
    if fn.config_size is not None and fn.config_size < 4096:
        return f"the source showed only {fn.config_size} bytes of config space (no extended capabilities)"
    if fn.caps.acs is None and fn.caps.aer is None and fn.caps.sriov is None:
        return "the source showed no extended capabilities for it"
    return "the source did not show it"


@dataclass(frozen=True, slots=True)
class AcsEnvironment:
    """Machine-wide facts the ACS code depends on, with what was assumed about them."""

    #: The topology shows an IOMMU at work (groups reported, or the source says so).
    iommu_present: bool | None
    #: ACPI IVRS exists (AMD IOMMU); only pci_quirk_amd_sb_acs reads it.
    ivrs: bool
    ivrs_note: str

    @classmethod
    def of(cls, topology: Topology) -> "AcsEnvironment":
        present = topology.source.iommu_present
        if any(isinstance(fn.iommu_group, str) for fn in topology):
            present = True
        amd = any(
            fn.vendor_id in (PCI_VENDOR_ID_AMD, PCI_VENDOR_ID_ATI)
            and fn.class_code is not None
            and (fn.class_code >> 8) in (0x0600, 0x0806)
            for fn in topology
            if fn.parent is None
        )
        if amd:
            note = ("an ACPI IVRS table (AMD IOMMU) is assumed to exist: this is an AMD machine"
                    + (" and the kernel formed IOMMU groups" if present else " and groups are predicted for an enabled IOMMU"))
        else:
            note = "no ACPI IVRS table is assumed: the root buses show no AMD host bridge or IOMMU"
        return cls(present, amd, note)


_COMPUTE = object()


def acs_device(
    fn: Function, topology: Topology, env: AcsEnvironment, *,
    multifunction: object = _COMPUTE, on_root_bus: object = _COMPUTE,
) -> tuple[AcsDevice, dict[str, str]]:
    """The kernel's view of ``fn`` for the ACS code, and the assumptions it rests on.

    * With no IOMMU shown at work, the ACS control registers are taken as the
      kernel would program them once an IOMMU asks for ACS (``pci_std_enable_acs``
      sets each of SV, RR, CR and UF that the capability advertises).
    * Intel PCH root ports (``pci_quirk_intel_pch_acs``) count as isolated only when
      the enable quirk succeeded; it runs when an IOMMU requests ACS and reads the
      LPC's RCBA, which no dump shows: it is assumed to have succeeded.
    * Sunrise/Union Point root ports keep ACS control as a dword at cap+8, which
      lspci and the config dump do not decode; the enable quirk sets SV, RR, CR and
      UF there (as advertised): assumed done.
    """
    notes: dict[str, str] = {}
    acs = fn.caps.acs
    if env.iommu_present is not True and isinstance(acs, AcsCap):
        want = acs.cap & REQ_ACS_FLAGS
        if acs.ctrl & want != want:
            acs = AcsCap(acs.cap, acs.ctrl | want)
            notes["std"] = (f"{fn.address}: ACS control taken as the kernel sets it once an IOMMU requests ACS "
                            f"(pci_std_enable_acs turns on {_flag_names(want)}), not as dumped")
    pt = fn.pcie_type
    mf = kernel_multifunction(fn, topology) if multifunction is _COMPUTE else multifunction
    root = (fn.parent is None and not _on_virtual_bus(fn, topology)) if on_root_bus is _COMPUTE else on_root_bus
    probe = AcsDevice(fn.address, fn.vendor_id, fn.device_id, pt, mf, bool(root), acs)  # type: ignore[arg-type]
    pch = spt_ctrl = None
    try:
        if fn.vendor_id == 0x8086 and pci_quirk_intel_pch_acs_match(probe):
            pch = True
            notes["pci_quirk_intel_pch_acs"] = (
                f"{fn.address}: Intel PCH root port; the ACS enable quirk (pci_quirk_enable_intel_pch_acs) "
                "is assumed to have succeeded"
                + (" because the topology shows an IOMMU at work" if env.iommu_present else
                   " as it would once an IOMMU requests ACS"))
        if fn.vendor_id == 0x8086 and pci_quirk_intel_spt_pch_acs_match(probe) and isinstance(fn.caps.acs, AcsCap):
            spt_ctrl = fn.caps.acs.cap & REQ_ACS_FLAGS
            notes["pci_quirk_intel_spt_pch_acs"] = (
                f"{fn.address}: Sunrise/Union Point root port; its real ACS control (a dword at cap+8, "
                "which lspci shows wrongly) is assumed set by pci_quirk_enable_intel_spt_pch_acs")
    except UnknownFact:
        pass
    if fn.vendor_id in (PCI_VENDOR_ID_AMD, PCI_VENDOR_ID_ATI) and probe.multifunction and probe.on_root_bus:
        notes["pci_quirk_amd_sb_acs"] = f"{fn.address}: {env.ivrs_note} (pci_quirk_amd_sb_acs needs it)"
    dev = AcsDevice(fn.address, fn.vendor_id, fn.device_id, pt, probe.multifunction, probe.on_root_bus, acs,
                    acs_enabled_quirk=pch, spt_ctrl=spt_ctrl, ivrs=env.ivrs)
    return dev, notes


def acs_verdict(
    fn: Function, topology: Topology, env: AcsEnvironment, acs_flags: int = REQ_ACS_FLAGS,
    table: tuple[AcsQuirk, ...] = ACS_QUIRKS, *,
    multifunction: object = _COMPUTE, on_root_bus: object = _COMPUTE,
) -> AcsVerdict:
    """``pci_acs_enabled`` for a model Function, carrying the assumption it rests on (if any)."""
    dev, notes = acs_device(fn, topology, env, multifunction=multifunction, on_root_bus=on_root_bus)
    v = pci_acs_enabled(dev, acs_flags, table, unknown_reason=unknown_reason(fn))
    note = notes.get(v.quirk) if v.quirk else (notes.get("std") if v.known and dev.acs is not ABSENT else None)
    if v.quirk is None and "pci_quirk_amd_sb_acs" in notes and dev.vendor in (PCI_VENDOR_ID_AMD, PCI_VENDOR_ID_ATI):
        if any(q.name == "pci_quirk_amd_sb_acs" and q.matches(dev.vendor, dev.device) for q in table):
            note = notes["pci_quirk_amd_sb_acs"]
    if note:
        return replace(v, assumption=note)
    return v


def _on_virtual_bus(fn: Function, topology: Topology) -> bool:
    """A VF on a bus of its own (no bridge above it) is not on the root bus."""
    if fn.physfn is None:
        return False
    pf = topology.get(fn.physfn)
    return pf is not None and pf.address.bus != fn.address.bus


def verdicts(
    topology: Topology, addrs: Iterable[Address], acs_flags: int = REQ_ACS_FLAGS,
    table: tuple[AcsQuirk, ...] = ACS_QUIRKS,
) -> dict[Address, AcsVerdict]:
    """``pci_acs_enabled`` for several functions of one topology (a convenience)."""
    env = AcsEnvironment.of(topology)
    return {a: acs_verdict(topology[a], topology, env, acs_flags, table) for a in addrs}


__all__ = [
    "AcsEnvironment", "AcsVerdict", "MF_ASSUMED", "REQ_ACS_FLAGS", "acs_device", "acs_verdict", "is_virtfn",
    "kernel_multifunction", "multifunction_assumed",
    "pci_acs_enabled", "pci_acs_flags_enabled", "pci_acs_path_enabled", "unknown_reason", "verdicts",
]
