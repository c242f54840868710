"""The kernel's device quirks that decide IOMMU grouping, as data.

Two tables from drivers/pci/quirks.c (Linux 6.12.117; 6.1.192 is identical):

* ``ACS_QUIRKS``: ``pci_dev_acs_enabled[]``, in the kernel's order, each entry
  naming the kernel function it stands for. ``pci_dev_specific_acs_enabled``
  walks it exactly as the kernel does: the first entry whose vendor and device
  match *and* whose function returns >= 0 decides; ``-ENOTTY`` (or any other
  negative value) means "no opinion", 0 "not isolated", > 0 "isolated".
* ``DMA_ALIAS_QUIRKS``: the ``DECLARE_PCI_FIXUP_*`` header fixups that add DMA
  requester-ID aliases (``pci_add_dma_alias``) or set the alias-related
  ``dev_flags`` (``PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS``,
  ``PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT``).

A quirk function receives an :class:`AcsDevice`: the facts the kernel reads
from ``struct pci_dev``. A fact the source did not give is ``None``; a quirk
that needs it raises :class:`UnknownFact`, and the caller decides what to
assume (the kernel's conservative answer: not isolated).

The out-of-tree ``pcie_acs_override`` patch is modelled by :class:`AcsOverride`;
:func:`acs_table` appends it *last*, as the patch does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from ..model import ABSENT, AcsCap, Address, Maybe, PcieType

# ---- constants (include/uapi/linux/pci_regs.h, include/linux/pci_ids.h, errno) --------------
PCI_ACS_SV = 0x01
PCI_ACS_TB = 0x02
PCI_ACS_RR = 0x04
PCI_ACS_CR = 0x08
PCI_ACS_UF = 0x10
PCI_ACS_EC = 0x20
PCI_ACS_DT = 0x40

ENOTTY = 25
ENODEV = 19
EINVAL = 22

PCI_ANY_ID = None  # matches any vendor or device in a table entry

PCI_VENDOR_ID_LOONGSON = 0x0014
PCI_VENDOR_ID_ATI = 0x1002
PCI_VENDOR_ID_AMD = 0x1022
PCI_VENDOR_ID_EFAR = 0x1055
PCI_VENDOR_ID_PLX = 0x10B5
PCI_VENDOR_ID_AMCC = 0x10E8
PCI_VENDOR_ID_TTI = 0x1103
PCI_VENDOR_ID_RICOH = 0x1180
PCI_VENDOR_ID_MICROSEMI = 0x11F8
PCI_VENDOR_ID_ITE = 0x1283
PCI_VENDOR_ID_BROADCOM = 0x14E4
PCI_VENDOR_ID_CAVIUM = 0x177D
PCI_VENDOR_ID_QCOM = 0x17CB
PCI_VENDOR_ID_SOLARFLARE = 0x1924
PCI_VENDOR_ID_NXP = 0x1957
PCI_VENDOR_ID_JMICRON = 0x197B
PCI_VENDOR_ID_EMULEX_BE3R = 0x19A2  # table writes the number, not a name
PCI_VENDOR_ID_EMULEX = 0x10DF
PCI_VENDOR_ID_MARVELL_EXT = 0x1B4B
PCI_VENDOR_ID_ASMEDIA = 0x1B21
PCI_VENDOR_ID_LITEON = 0x1C28
PCI_VENDOR_ID_AMAZON_ANNAPURNA_LABS = 0x1C36
PCI_VENDOR_ID_ZHAOXIN = 0x1D17
PCI_VENDOR_ID_HXT = 0x1DBF
PCI_VENDOR_ID_AMPERE = 0x1DEF
PCI_VENDOR_ID_TUNDRA = 0x10E3
PCI_VENDOR_ID_GLENFLY = 0x6766
PCI_VENDOR_ID_INTEL = 0x8086
PCI_VENDOR_ID_WANGXUN = 0x8088
PCI_VENDOR_ID_ADAPTEC2 = 0x9005

PCI_CLASS_BRIDGE_OTHER = 0x0680

VENDOR_NAMES = {
    PCI_VENDOR_ID_LOONGSON: "Loongson", PCI_VENDOR_ID_ATI: "ATI", PCI_VENDOR_ID_AMD: "AMD",
    PCI_VENDOR_ID_AMCC: "AMCC", PCI_VENDOR_ID_BROADCOM: "Broadcom", PCI_VENDOR_ID_CAVIUM: "Cavium",
    PCI_VENDOR_ID_QCOM: "Qualcomm", PCI_VENDOR_ID_SOLARFLARE: "Solarflare", PCI_VENDOR_ID_NXP: "NXP",
    PCI_VENDOR_ID_AMAZON_ANNAPURNA_LABS: "Amazon Annapurna Labs", PCI_VENDOR_ID_ZHAOXIN: "Zhaoxin",
    PCI_VENDOR_ID_HXT: "HXT", PCI_VENDOR_ID_AMPERE: "Ampere", PCI_VENDOR_ID_INTEL: "Intel",
    PCI_VENDOR_ID_WANGXUN: "Wangxun", PCI_VENDOR_ID_EMULEX: "Emulex", PCI_VENDOR_ID_EMULEX_BE3R: "Emulex",
}


class UnknownFact(Exception):
    """A quirk needs a fact the source did not give (e.g. the PCIe type)."""

    def __init__(self, fact: str) -> None:
        super().__init__(fact)
        self.fact = fact


@dataclass(frozen=True, slots=True)
class AcsDevice:
    """What the kernel's ACS code reads from ``struct pci_dev``; ``None`` is unknown."""

    address: Address
    vendor: int | None
    device: int | None
    #: PcieType.CONVENTIONAL for a device that is not PCIe (``!pci_is_pcie``).
    pcie_type: PcieType | None
    #: ``dev->multifunction`` as the kernel sets it (header bit, or function > 0; 0 for VFs).
    multifunction: bool | None
    #: ``pci_is_root_bus(dev->bus)``.
    on_root_bus: bool
    #: The standard ACS capability (cap word, ctrl word) as read; ABSENT: no ACS capability.
    acs: Maybe[AcsCap] = None
    #: ``PCI_DEV_FLAGS_ACS_ENABLED_QUIRK``: the Intel PCH enable quirk succeeded.
    acs_enabled_quirk: bool | None = None
    #: Sunrise/Union Point root ports: the real ACS control dword at cap+8.
    spt_ctrl: int | None = None
    #: An ACPI IVRS table (AMD IOMMU) exists.
    ivrs: bool | None = None

    def type_(self) -> PcieType:
        if self.pcie_type is None:
            raise UnknownFact("PCIe type")
        return self.pcie_type

    def is_pcie(self) -> bool:
        return self.type_() is not PcieType.CONVENTIONAL


def pci_acs_ctrl_enabled(acs_ctrl_req: int, acs_ctrl_ena: int) -> int:
    """quirks.c: 1 when every required control is in ``acs_ctrl_ena``, else 0."""
    return 1 if (acs_ctrl_req & acs_ctrl_ena) == acs_ctrl_req else 0


_SV_RR_CR_UF = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF


# ---- the quirk functions (drivers/pci/quirks.c) -------------------------------------------------
def pci_quirk_amd_sb_acs(dev: AcsDevice, acs_flags: int) -> int:
    """AMD/ATI southbridge multifunction devices on the root bus, only with an IVRS table."""
    if dev.multifunction is None:
        raise UnknownFact("whether the device is multifunction")
    if not dev.multifunction or not dev.on_root_bus:
        return -ENODEV
    if dev.ivrs is None:
        raise UnknownFact("whether an ACPI IVRS table (AMD IOMMU) exists")
    if not dev.ivrs:
        return -ENODEV
    acs_flags &= PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC | PCI_ACS_DT
    return pci_acs_ctrl_enabled(acs_flags, PCI_ACS_RR | PCI_ACS_CR)


def pci_quirk_cavium_acs_match(dev: AcsDevice) -> bool:
    if not dev.is_pcie() or dev.type_() is not PcieType.ROOT_PORT:
        return False
    d = dev.device
    return d is not None and (0xA000 <= d <= 0xA7FF or d in (0xAF84, 0xB884))


def pci_quirk_cavium_acs(dev: AcsDevice, acs_flags: int) -> int:
    if not pci_quirk_cavium_acs_match(dev):
        return -ENOTTY
    return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)


def pci_quirk_xgene_acs(dev: AcsDevice, acs_flags: int) -> int:
    return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)


def pci_quirk_zhaoxin_pcie_ports_acs(dev: AcsDevice, acs_flags: int) -> int:
    """Zhaoxin root/downstream ports: listed IDs isolated, every other one *not* isolated (0)."""
    if not dev.is_pcie() or dev.type_() not in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM):
        return -ENOTTY
    d = dev.device
    if d is not None and (0x0710 <= d <= 0x071E or d == 0x0721 or 0x0723 <= d <= 0x0752):
        return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)
    return 0  # "return false": even a port with a real ACS capability


PCI_QUIRK_INTEL_PCH_ACS_IDS: frozenset[int] = frozenset(
    list(range(0x3B42, 0x3B52))  # Ibexpeak
    + list(range(0x1C10, 0x1C20))  # Cougarpoint
    + list(range(0x1E10, 0x1E20))  # Pantherpoint
    + list(range(0x8C10, 0x8C20))  # Lynxpoint-H
    + list(range(0x9C10, 0x9C1C))  # Lynxpoint-LP
    + list(range(0x9C90, 0x9C9C))  # Wildcat
    + list(range(0x1D10, 0x1D1F, 2))  # Patsburg (X79)
    + list(range(0x8D10, 0x8D1F))  # Wellsburg (X99)
    + list(range(0x8C90, 0x8C9F, 2))  # Lynx Point (9 series)
)


def pci_quirk_intel_pch_acs_match(dev: AcsDevice) -> bool:
    if not dev.is_pcie() or dev.type_() is not PcieType.ROOT_PORT:
        return False
    return dev.device in PCI_QUIRK_INTEL_PCH_ACS_IDS


def pci_quirk_intel_pch_acs(dev: AcsDevice, acs_flags: int) -> int:
    if not pci_quirk_intel_pch_acs_match(dev):
        return -ENOTTY
    if dev.acs_enabled_quirk is None:
        raise UnknownFact("whether the Intel PCH ACS enable quirk succeeded")
    if dev.acs_enabled_quirk:
        return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)
    return pci_acs_ctrl_enabled(acs_flags, 0)


def pci_quirk_qcom_rp_acs(dev: AcsDevice, acs_flags: int) -> int:
    return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)


def pci_quirk_nxp_rp_acs(dev: AcsDevice, acs_flags: int) -> int:
    return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)


def pci_quirk_al_acs(dev: AcsDevice, acs_flags: int) -> int:
    # No pci_is_pcie() test here in the kernel: pci_pcie_type() of a non-PCIe device is 0.
    if dev.type_() is not PcieType.ROOT_PORT:
        return -ENOTTY
    acs_flags &= ~_SV_RR_CR_UF
    return 0 if acs_flags else 1


def pci_quirk_intel_spt_pch_acs_match(dev: AcsDevice) -> bool:
    if not dev.is_pcie() or dev.type_() is not PcieType.ROOT_PORT:
        return False
    d = dev.device
    return d is not None and (
        0xA110 <= d <= 0xA11F or 0xA167 <= d <= 0xA16A  # Sunrise Point
        or 0xA290 <= d <= 0xA29F or 0xA2E7 <= d <= 0xA2EE  # Union Point
        or 0x9D10 <= d <= 0x9D1B  # 7th & 8th gen mobile
    )


def pci_quirk_intel_spt_pch_acs(dev: AcsDevice, acs_flags: int) -> int:
    """Real ACS, but the control register is a dword at cap+8 (lspci shows the wrong ACSCtl)."""
    if not pci_quirk_intel_spt_pch_acs_match(dev):
        return -ENOTTY
    if dev.acs is None:
        raise UnknownFact("the ACS capability")
    if dev.acs is ABSENT:
        return -ENOTTY
    assert isinstance(dev.acs, AcsCap)
    acs_flags &= dev.acs.cap | PCI_ACS_EC
    if dev.spt_ctrl is None:
        raise UnknownFact("the ACS control dword at cap+8 (Sunrise/Union Point erratum)")
    return pci_acs_ctrl_enabled(acs_flags, dev.spt_ctrl)


def pci_quirk_mf_endpoint_acs(dev: AcsDevice, acs_flags: int) -> int:
    """Multifunction devices the vendor says do no peer-to-peer between functions."""
    return pci_acs_ctrl_enabled(
        acs_flags, PCI_ACS_SV | PCI_ACS_TB | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF | PCI_ACS_DT
    )


def pci_quirk_rciep_acs(dev: AcsDevice, acs_flags: int) -> int:
    """Intel RCiEPs allow p2p only on translated addresses (VT-d r3.1 sec 3.16)."""
    if dev.type_() is not PcieType.RC_INTEGRATED_ENDPOINT:
        return -ENOTTY
    return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)


def pci_quirk_brcm_acs(dev: AcsDevice, acs_flags: int) -> int:
    return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)


def pci_quirk_loongson_acs(dev: AcsDevice, acs_flags: int) -> int:
    return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)


def pci_quirk_wangxun_nic_acs(dev: AcsDevice, acs_flags: int) -> int:
    """Wangxun NICs: listed IDs isolated, every other Wangxun device *not* isolated (0)."""
    d = dev.device
    if d is not None and (
        0x0100 <= d <= 0x010F or d in (0x1001, 0x2001, 0x5010, 0x5025, 0x5040, 0x5110, 0x5125, 0x5140)
    ):
        return pci_acs_ctrl_enabled(acs_flags, _SV_RR_CR_UF)
    return 0


AcsQuirkFn = Callable[[AcsDevice, int], int]


@dataclass(frozen=True, slots=True)
class AcsQuirk:
    """One ``pci_dev_acs_enabled[]`` entry: vendor, device (None = PCI_ANY_ID), function."""

    vendor: int | None
    device: int | None
    fn: AcsQuirkFn = field(compare=False)
    name: str
    comment: str = ""

    def matches(self, vendor: int | None, device: int | None) -> bool:
        return (self.vendor is None or self.vendor == vendor) and (self.device is None or self.device == device)


def _q(vendor: int | None, device: int | None, fn: AcsQuirkFn, comment: str = "") -> AcsQuirk:
    return AcsQuirk(vendor, device, fn, fn.__name__, comment)


_mf = pci_quirk_mf_endpoint_acs
_I = PCI_VENDOR_ID_INTEL

#: ``pci_dev_acs_enabled[]`` (drivers/pci/quirks.c, 6.12.117 == 6.1.192), in the kernel's order.
ACS_QUIRKS: tuple[AcsQuirk, ...] = (
    *(_q(PCI_VENDOR_ID_ATI, d, pci_quirk_amd_sb_acs, "ATI SBx00") for d in (0x4385, 0x439C, 0x4383, 0x439D, 0x4384, 0x4399)),
    _q(PCI_VENDOR_ID_AMD, 0x780F, pci_quirk_amd_sb_acs, "AMD FCH PCI bridge"),
    _q(PCI_VENDOR_ID_AMD, 0x7809, pci_quirk_amd_sb_acs, "AMD FCH USB OHCI"),
    *(_q(PCI_VENDOR_ID_SOLARFLARE, d, _mf) for d in (0x0903, 0x0923, 0x0A03)),
    *(_q(_I, d, _mf) for d in (0x10C6, 0x10DB, 0x10DD, 0x10E1, 0x10F1, 0x10F7, 0x10F8, 0x10F9, 0x10FA,
                               0x10FB, 0x10FC, 0x1507, 0x1514, 0x151C, 0x1529, 0x152A, 0x154D, 0x154F,
                               0x1551, 0x1558)),
    *(_q(_I, d, _mf, "82580") for d in (0x1509, 0x150E, 0x150F, 0x1510, 0x1511, 0x1516, 0x1527)),
    *(_q(_I, d, _mf, "82576") for d in (0x10C9, 0x10E6, 0x10E7, 0x10E8, 0x150A, 0x150D, 0x1518, 0x1526)),
    *(_q(_I, d, _mf, "82575") for d in (0x10A7, 0x10A9, 0x10D6)),
    *(_q(_I, d, _mf, "I350") for d in (0x1521, 0x1522, 0x1523, 0x1524)),
    *(_q(_I, d, _mf, "82571 (quads omitted: non-ACS switch)") for d in (0x105E, 0x105F, 0x1060, 0x10D9)),
    *(_q(_I, d, _mf, "I219") for d in (0x15B7, 0x15B8)),
    _q(_I, PCI_ANY_ID, pci_quirk_rciep_acs, "Intel RCiEPs"),
    *(_q(PCI_VENDOR_ID_QCOM, d, pci_quirk_qcom_rp_acs, c) for d, c in (
        (0x0400, "QDF2xxx"), (0x0401, "QDF2xxx"), (0x0115, "SA8775P"), (0x0111, "Hamoa"), (0x0120, "Glymur"))),
    _q(PCI_VENDOR_ID_HXT, 0x0401, pci_quirk_qcom_rp_acs, "HXT SD4800"),
    _q(_I, PCI_ANY_ID, pci_quirk_intel_pch_acs, "Intel PCH root ports"),
    _q(_I, PCI_ANY_ID, pci_quirk_intel_spt_pch_acs, "Intel Sunrise/Union Point root ports"),
    _q(PCI_VENDOR_ID_EMULEX_BE3R, 0x0710, _mf, "Emulex BE3-R"),
    _q(PCI_VENDOR_ID_EMULEX, 0x0720, _mf, "Emulex Skyhawk-R"),
    _q(PCI_VENDOR_ID_CAVIUM, PCI_ANY_ID, pci_quirk_cavium_acs, "Cavium ThunderX"),
    *(_q(PCI_VENDOR_ID_CAVIUM, d, _mf, "Cavium multi-function") for d in (0xA026, 0xA059, 0xA060)),
    _q(PCI_VENDOR_ID_AMCC, 0xE004, pci_quirk_xgene_acs, "APM X-Gene"),
    *(_q(PCI_VENDOR_ID_AMPERE, d, pci_quirk_xgene_acs, "Ampere") for d in range(0xE005, 0xE00D)),
    *(_q(PCI_VENDOR_ID_BROADCOM, d, _mf, "Broadcom multi-function")
      for d in (0x16D7, 0x1750, 0x1751, 0x1752, 0x1760, 0x1761, 0x1762, 0x1763)),
    _q(PCI_VENDOR_ID_BROADCOM, 0xD714, pci_quirk_brcm_acs, "Broadcom iProc PAXB"),
    *(_q(PCI_VENDOR_ID_LOONGSON, d, pci_quirk_loongson_acs, "Loongson root ports")
      for d in (0x3C09, 0x3C19, 0x3C29, 0x7A09, 0x7A19, 0x7A29, 0x7A39, 0x7A49, 0x7A59, 0x7A69)),
    _q(PCI_VENDOR_ID_AMAZON_ANNAPURNA_LABS, 0x0031, pci_quirk_al_acs, "Amazon Annapurna Labs"),
    *(_q(PCI_VENDOR_ID_ZHAOXIN, d, _mf, "Zhaoxin multi-function") for d in (0x3038, 0x3104, 0x9083)),
    *(_q(PCI_VENDOR_ID_NXP, d, pci_quirk_nxp_rp_acs, "NXP LX2xx0/LX2xx2 root ports") for d in (
        0x8D81, 0x8DA1, 0x8D83, 0x8D80, 0x8DA0, 0x8D82, 0x8D90, 0x8DB0, 0x8D92, 0x8D91, 0x8DB1, 0x8D93,
        0x8D89, 0x8DA9, 0x8D8B, 0x8D88, 0x8DA8, 0x8D8A, 0x8D98, 0x8DB8, 0x8D9A, 0x8D99, 0x8DB9, 0x8D9B)),
    _q(PCI_VENDOR_ID_ZHAOXIN, PCI_ANY_ID, pci_quirk_zhaoxin_pcie_ports_acs, "Zhaoxin root/downstream ports"),
    _q(PCI_VENDOR_ID_WANGXUN, PCI_ANY_ID, pci_quirk_wangxun_nic_acs, "Wangxun NICs"),
)


# ---- the out-of-tree pcie_acs_override patch ------------------------------------------------------
NUM_ACS_IDS = 16


@dataclass(frozen=True, slots=True)
class AcsOverride:
    """``pcie_acs_override=downstream,multifunction,id:vvvv:dddd`` (acso.patch, out of tree)."""

    downstream: bool = False
    multifunction: bool = False
    ids: tuple[tuple[int, int], ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> "AcsOverride":
        """Parse as ``pcie_acs_override_setup`` does: comma-separated, prefix matches."""
        ds = mf = False
        ids: list[tuple[int, int]] = []
        for tok in text.split(","):
            if tok.startswith("downstream"):
                ds = True
            if tok.startswith("multifunction"):
                mf = True
            if tok.startswith("id:"):
                if len(ids) >= NUM_ACS_IDS - 1:
                    continue  # "Out of PCIe ACS override slots"
                rest = tok[3:]
                ven_s, sep, dev_s = rest.partition(":")
                try:
                    ven = int(ven_s[:4], 16)
                    dev = int(dev_s[:4], 16) if sep else None
                except ValueError:
                    continue  # "PCIe ACS ID parse error"
                if dev is None:
                    continue  # "PCIe ACS invalid ID"
                ids.append((ven, dev))
        return cls(ds, mf, tuple(ids), text)

    @property
    def active(self) -> bool:
        return self.downstream or self.multifunction or bool(self.ids)

    def pcie_acs_overrides(self, dev: AcsDevice, acs_flags: int) -> int:
        """The patch's table function: never for non-PCIe devices or ones with an ACS capability."""
        if not dev.is_pcie():
            return -ENOTTY
        if dev.acs is None:
            raise UnknownFact("whether the device has an ACS capability")
        if dev.acs is not ABSENT:
            return -ENOTTY
        if (dev.vendor, dev.device) in self.ids:
            return 1
        t = dev.type_()
        if t in (PcieType.SWITCH_DOWNSTREAM, PcieType.ROOT_PORT):
            if self.downstream:
                return 1
        elif t in (PcieType.ENDPOINT, PcieType.SWITCH_UPSTREAM, PcieType.LEGACY_ENDPOINT,
                   PcieType.RC_INTEGRATED_ENDPOINT):
            if self.multifunction:
                if dev.multifunction is None:
                    raise UnknownFact("whether the device is multifunction")
                if dev.multifunction:
                    return 1
        return -ENOTTY

    def quirk(self) -> AcsQuirk:
        return AcsQuirk(None, None, self.pcie_acs_overrides, "pcie_acs_overrides",
                        f"out-of-tree pcie_acs_override={self.text}")


def acs_table(override: AcsOverride | None = None) -> tuple[AcsQuirk, ...]:
    """The quirk table, with the override patch's catch-all appended last when given."""
    if override is None or not override.active:
        return ACS_QUIRKS
    return ACS_QUIRKS + (override.quirk(),)


_CMDLINE_OVERRIDE_RE = re.compile(r"(?:^|\s)pcie_acs_override=(\S*)")


def acs_override_in_cmdline(cmdline: str | None) -> str | None:
    """The ``pcie_acs_override=`` value(s) on a kernel command line, or None.

    Several occurrences accumulate in the patch, so they are joined with commas.
    An empty value overrides nothing and gives None.
    """
    if not cmdline:
        return None
    values = [v for v in _CMDLINE_OVERRIDE_RE.findall(cmdline) if v]
    return ",".join(values) if values else None


_VENDOR_INDEX: dict[int, tuple[tuple[AcsQuirk, ...], dict[int | None, tuple[AcsQuirk, ...]]]] = {}


def _entries_for_vendor(table: tuple[AcsQuirk, ...], vendor: int | None) -> tuple[AcsQuirk, ...]:
    """The entries of ``table`` that can match ``vendor``, in table order (memoised per table)."""
    cached = _VENDOR_INDEX.get(id(table))
    if cached is None or cached[0] is not table:
        cached = (table, {})
        if len(_VENDOR_INDEX) > 64:
            _VENDOR_INDEX.clear()
        _VENDOR_INDEX[id(table)] = cached
    per = cached[1]
    entries = per.get(vendor)
    if entries is None:
        entries = per[vendor] = tuple(q for q in table if q.vendor is None or q.vendor == vendor)
    return entries


@dataclass(frozen=True, slots=True)
class QuirkAnswer:
    """``pci_dev_specific_acs_enabled``: ``ret`` is -ENOTTY, 0 or 1 (None: could not tell)."""

    ret: int | None
    quirk: AcsQuirk | None = None
    unknown: str | None = None


def pci_dev_specific_acs_enabled(
    dev: AcsDevice, acs_flags: int, table: tuple[AcsQuirk, ...] = ACS_QUIRKS
) -> QuirkAnswer:
    """Walk the table in order; the first matching entry returning >= 0 decides."""
    for q in _entries_for_vendor(table, dev.vendor):
        if q.device is not None and q.device != dev.device:
            continue
        try:
            ret = q.fn(dev, acs_flags)
        except UnknownFact as e:
            return QuirkAnswer(None, q, e.fact)
        if ret >= 0:
            return QuirkAnswer(ret, q)
    return QuirkAnswer(-ENOTTY)


# ---- DMA alias quirks (DECLARE_PCI_FIXUP_HEADER / _CLASS_FINAL) -----------------------------------
@dataclass(frozen=True, slots=True)
class AliasDevice:
    """What the alias fixups read: IDs, devfn, header, PCIe-ness and the upstream bridge's type."""

    address: Address
    vendor: int | None
    device: int | None
    subsystem_vendor: int | None
    subsystem_device: int | None
    class_code: int | None
    header_type: int | None
    pcie_type: PcieType | None
    on_root_bus: bool
    #: The upstream bridge's PCIe type (``pdev->bus->self``); None when unknown or on a root bus.
    parent_type: PcieType | None


@dataclass(frozen=True, slots=True)
class AliasEffect:
    """What a fixup did: devfns added to ``dma_alias_mask`` and ``dev_flags`` set."""

    devfns: frozenset[int] = frozenset()
    pcie_bridge_alias: bool = False
    xlate_root: bool = False
    #: The fixup reads MMIO the source cannot show (Switchtec NTB).
    unknown: str | None = None


def _alias_range(devfn_from: int, nr: int) -> frozenset[int]:
    nr = min(nr, 256 - devfn_from)  # pci_add_dma_alias clips to MAX_NR_DEVFNS
    return frozenset(range(devfn_from, devfn_from + nr))


def quirk_dma_func0_alias(dev: AliasDevice) -> AliasEffect:
    if dev.address.function != 0:
        return AliasEffect(_alias_range(dev.address.device << 3, 1))
    return AliasEffect()


def quirk_dma_func1_alias(dev: AliasDevice) -> AliasEffect:
    if dev.address.function != 1:
        return AliasEffect(_alias_range((dev.address.device << 3) | 1, 1))
    return AliasEffect()


#: fixed_dma_alias_tbl: (vendor, device, subvendor, subdevice) -> devfn
FIXED_DMA_ALIAS_TBL = {
    (PCI_VENDOR_ID_ADAPTEC2, 0x0285, PCI_VENDOR_ID_ADAPTEC2, 0x02BB): (1 << 3) | 0,  # Adaptec 3405
    (PCI_VENDOR_ID_ADAPTEC2, 0x0285, PCI_VENDOR_ID_ADAPTEC2, 0x02BC): (1 << 3) | 0,  # Adaptec 3805
}


def quirk_fixed_dma_alias(dev: AliasDevice) -> AliasEffect:
    key = (dev.vendor, dev.device, dev.subsystem_vendor, dev.subsystem_device)
    devfn = FIXED_DMA_ALIAS_TBL.get(key)  # type: ignore[arg-type]
    if devfn is None:
        if dev.subsystem_vendor is None or dev.subsystem_device is None:
            return AliasEffect(unknown="subsystem IDs (fixed_dma_alias_tbl matches on them)")
        return AliasEffect()
    return AliasEffect(_alias_range(devfn, 1))


def quirk_use_pcie_bridge_dma_alias(dev: AliasDevice) -> AliasEffect:
    """A non-PCIe bridge below a PCIe port that is really a PCIe-to-PCI bridge."""
    if dev.on_root_bus or dev.header_type != 1:
        return AliasEffect()
    if dev.pcie_type is None or dev.parent_type is None:
        return AliasEffect(unknown="the PCIe type of the bridge or of its upstream port")
    if (
        dev.pcie_type is PcieType.CONVENTIONAL
        and dev.parent_type is not PcieType.CONVENTIONAL
        and dev.parent_type is not PcieType.PCIE_TO_PCI_BRIDGE
    ):
        return AliasEffect(pcie_bridge_alias=True)
    return AliasEffect()


def quirk_mic_x200_dma_alias(dev: AliasDevice) -> AliasEffect:
    return AliasEffect(frozenset({(0x10 << 3) | 0, (0x11 << 3) | 0, (0x12 << 3) | 3}))


def quirk_pex_vca_alias(dev: AliasDevice) -> AliasEffect:
    out: set[int] = set()
    for slot in range(0x20):
        out |= _alias_range(slot << 3, 5)
    return AliasEffect(frozenset(out))


def quirk_bridge_cavm_thrx2_pcie_root(dev: AliasDevice) -> AliasEffect:
    return AliasEffect(xlate_root=True)


def quirk_switchtec_ntb_dma_alias(dev: AliasDevice) -> AliasEffect:
    # Class match: DECLARE_PCI_FIXUP_CLASS_FINAL(..., PCI_CLASS_BRIDGE_OTHER, 8, ...)
    if dev.class_code is None:
        return AliasEffect(unknown="the class code (the Switchtec NTB fixup matches on it)")
    if dev.class_code >> 8 != PCI_CLASS_BRIDGE_OTHER:
        return AliasEffect()
    return AliasEffect(unknown="the Switchtec NTB requester-ID table (read from MMIO at boot)")


def quirk_plx_ntb_dma_alias(dev: AliasDevice) -> AliasEffect:
    return AliasEffect(_alias_range(0, 256))


AliasFixupFn = Callable[[AliasDevice], AliasEffect]


@dataclass(frozen=True, slots=True)
class AliasQuirk:
    vendor: int
    device: int
    fn: AliasFixupFn = field(compare=False)
    name: str
    comment: str = ""


def _a(vendor: int, device: int, fn: AliasFixupFn, comment: str = "") -> AliasQuirk:
    return AliasQuirk(vendor, device, fn, fn.__name__, comment)


_SWITCHTEC_IDS = (
    0x8531, 0x8532, 0x8533, 0x8534, 0x8535, 0x8536, 0x8541, 0x8542, 0x8543, 0x8544, 0x8545, 0x8546,
    0x8551, 0x8552, 0x8553, 0x8554, 0x8555, 0x8556, 0x8561, 0x8562, 0x8563, 0x8564, 0x8565, 0x8566,
    0x8571, 0x8572, 0x8573, 0x8574, 0x8575, 0x8576, 0x4000, 0x4084, 0x4068, 0x4052, 0x4036, 0x4028,
    0x4100, 0x4184, 0x4168, 0x4152, 0x4136, 0x4128, 0x4200, 0x4284, 0x4268, 0x4252, 0x4236, 0x4228,
    0x4352, 0x4336, 0x4328, 0x4452, 0x4436, 0x4428, 0x4552, 0x4536, 0x4528, 0x5000, 0x5084, 0x5068,
    0x5052, 0x5036, 0x5028, 0x5100, 0x5184, 0x5168, 0x5152, 0x5136, 0x5128, 0x5200, 0x5284, 0x5268,
    0x5252, 0x5236, 0x5228, 0x5300, 0x5384, 0x5368, 0x5352, 0x5336, 0x5328, 0x5400, 0x5484, 0x5468,
    0x5452, 0x5436, 0x5428, 0x5500, 0x5584, 0x5568, 0x5552, 0x5536, 0x5528,
)
_SWITCHTEC_PCI100X_IDS = (0x1001, 0x1002, 0x1003, 0x1004, 0x1005, 0x1006, 0x1008)

#: The DMA-alias fixups of drivers/pci/quirks.c (same list in 6.1 and 6.12).
DMA_ALIAS_QUIRKS: tuple[AliasQuirk, ...] = (
    _a(PCI_VENDOR_ID_RICOH, 0xE832, quirk_dma_func0_alias, "Ricoh"),
    _a(PCI_VENDOR_ID_RICOH, 0xE476, quirk_dma_func0_alias, "Ricoh"),
    _a(PCI_VENDOR_ID_GLENFLY, 0x3D40, quirk_dma_func0_alias, "Glenfly"),
    _a(PCI_VENDOR_ID_GLENFLY, 0x3D41, quirk_dma_func0_alias, "Glenfly"),
    *(_a(PCI_VENDOR_ID_MARVELL_EXT, d, quirk_dma_func1_alias, "Marvell")
      for d in (0x9120, 0x9123, 0x9125, 0x9128, 0x9130, 0x9170, 0x9172, 0x917A, 0x9182, 0x9183, 0x91A0,
                0x9215, 0x9220, 0x9230, 0x9235)),
    _a(PCI_VENDOR_ID_TTI, 0x0642, quirk_dma_func1_alias, "TTI"),
    _a(PCI_VENDOR_ID_TTI, 0x0645, quirk_dma_func1_alias, "TTI"),
    _a(PCI_VENDOR_ID_JMICRON, 0x2392, quirk_dma_func1_alias, "JMicron JMB388_ESD"),
    _a(PCI_VENDOR_ID_LITEON, 0x0122, quirk_dma_func1_alias, "Lite-On/Plextor M6E"),
    _a(PCI_VENDOR_ID_ADAPTEC2, 0x0285, quirk_fixed_dma_alias, "Adaptec 3405/3805"),
    _a(PCI_VENDOR_ID_ASMEDIA, 0x1080, quirk_use_pcie_bridge_dma_alias, "ASM1083/1085"),
    _a(PCI_VENDOR_ID_TUNDRA, 0x8113, quirk_use_pcie_bridge_dma_alias, "Tundra 8113"),
    _a(PCI_VENDOR_ID_ITE, 0x8892, quirk_use_pcie_bridge_dma_alias, "ITE 8892"),
    _a(PCI_VENDOR_ID_ITE, 0x8893, quirk_use_pcie_bridge_dma_alias, "ITE 8893"),
    _a(PCI_VENDOR_ID_INTEL, 0x244E, quirk_use_pcie_bridge_dma_alias, "Intel 82801"),
    _a(PCI_VENDOR_ID_INTEL, 0x2260, quirk_mic_x200_dma_alias, "MIC x200 NTB"),
    _a(PCI_VENDOR_ID_INTEL, 0x2264, quirk_mic_x200_dma_alias, "MIC x200 NTB"),
    *(_a(PCI_VENDOR_ID_INTEL, d, quirk_pex_vca_alias, "Intel VCA")
      for d in (0x2954, 0x2955, 0x2956, 0x2958, 0x2959, 0x295A)),
    _a(PCI_VENDOR_ID_BROADCOM, 0x9000, quirk_bridge_cavm_thrx2_pcie_root, "Broadcom Vulcan/ThunderX2"),
    _a(PCI_VENDOR_ID_BROADCOM, 0x9084, quirk_bridge_cavm_thrx2_pcie_root, "Broadcom Vulcan/ThunderX2"),
    *(_a(PCI_VENDOR_ID_MICROSEMI, d, quirk_switchtec_ntb_dma_alias, "Switchtec") for d in _SWITCHTEC_IDS),
    *(_a(PCI_VENDOR_ID_EFAR, d, quirk_switchtec_ntb_dma_alias, "Switchtec PCI100x")
      for d in _SWITCHTEC_PCI100X_IDS),
    _a(PCI_VENDOR_ID_PLX, 0x87B0, quirk_plx_ntb_dma_alias, "PLX NTB"),
    _a(PCI_VENDOR_ID_PLX, 0x87B1, quirk_plx_ntb_dma_alias, "PLX NTB"),
)

_ALIAS_INDEX: dict[tuple[int, int], tuple[AliasQuirk, ...]] = {}
for _aq in DMA_ALIAS_QUIRKS:
    _ALIAS_INDEX[(_aq.vendor, _aq.device)] = _ALIAS_INDEX.get((_aq.vendor, _aq.device), ()) + (_aq,)


@dataclass(frozen=True, slots=True)
class AliasInfo:
    """The combined result of every alias fixup that matched one device."""

    devfns: frozenset[int] = frozenset()
    pcie_bridge_alias: bool = False
    xlate_root: bool = False
    quirks: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


NO_ALIASES = AliasInfo()


_ALIAS_VENDORS = frozenset(v for v, _ in _ALIAS_INDEX)


def has_dma_alias_quirk(vendor: int | None, device: int | None) -> bool:
    """Whether any alias fixup is declared for this vendor/device (cheap pre-check)."""
    return vendor in _ALIAS_VENDORS and (vendor, device) in _ALIAS_INDEX


def dma_alias_fixups(dev: AliasDevice) -> AliasInfo:
    """Run the alias fixups that match ``dev`` (by vendor and device ID)."""
    if dev.vendor is None or dev.device is None:
        return NO_ALIASES
    entries = _ALIAS_INDEX.get((dev.vendor, dev.device))
    if not entries:
        return NO_ALIASES
    devfns: set[int] = set()
    pba = xr = False
    names: list[str] = []
    unknown: list[str] = []
    for q in entries:
        eff = q.fn(dev)
        if eff.unknown:
            unknown.append(f"{q.name}: {eff.unknown}")
        if eff.devfns or eff.pcie_bridge_alias or eff.xlate_root:
            names.append(q.name)
        devfns |= eff.devfns
        pba |= eff.pcie_bridge_alias
        xr |= eff.xlate_root
    if not (devfns or pba or xr or unknown):
        return NO_ALIASES
    return AliasInfo(frozenset(devfns), pba, xr, tuple(names), tuple(unknown))


def devfn_str(devfn: int) -> str:
    return f"{devfn >> 3:02x}.{devfn & 7}"


__all__ = [
    "ACS_QUIRKS", "AcsDevice", "AcsOverride", "AcsQuirk", "AliasDevice", "AliasEffect", "AliasInfo",
    "AliasQuirk", "DMA_ALIAS_QUIRKS", "ENODEV", "ENOTTY", "NO_ALIASES", "PCI_ACS_CR", "PCI_ACS_DT",
    "PCI_ACS_EC", "PCI_ACS_RR", "PCI_ACS_SV", "PCI_ACS_TB", "PCI_ACS_UF", "QuirkAnswer", "UnknownFact",
    "acs_override_in_cmdline", "acs_table", "devfn_str", "dma_alias_fixups", "has_dma_alias_quirk", "pci_acs_ctrl_enabled",
    "pci_dev_specific_acs_enabled",
]
