"""Immutable facts about one PCI function, as a source reported them.

"Unknown" is a value: every fact a source may not give is ``None`` when unknown.
Facts that can also be *known to be missing* (a capability the device does not
have, a window a bridge does not decode, no driver bound) use the ``ABSENT``
sentinel for that case, so ``None`` always means "the source did not say".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TypeVar, Union

from .address import Address


class _Absent:
    """Known not to exist (a capability the device lacks, a closed window)."""

    __slots__ = ()
    _instance: "_Absent | None" = None

    def __new__(cls) -> "_Absent":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ABSENT"

    def __copy__(self) -> "_Absent":
        return self

    def __deepcopy__(self, memo: object) -> "_Absent":
        return self


ABSENT = _Absent()
T = TypeVar("T")
#: ``T`` when present, ``ABSENT`` when known to be missing, ``None`` when unknown.
Maybe = Union[T, _Absent, None]


def known(value: object) -> bool:
    """True when the source gave this fact (present or known absent)."""
    return value is not None


def present(value: object) -> bool:
    """True when the fact is known and not ABSENT."""
    return value is not None and value is not ABSENT


class PcieType(str, Enum):
    """PCIe device/port type (Express capability), or conventional PCI."""

    ENDPOINT = "endpoint"
    LEGACY_ENDPOINT = "legacy-endpoint"
    RC_INTEGRATED_ENDPOINT = "rc-integrated-endpoint"
    RC_EVENT_COLLECTOR = "rc-event-collector"
    ROOT_PORT = "root-port"
    SWITCH_UPSTREAM = "switch-upstream"
    SWITCH_DOWNSTREAM = "switch-downstream"
    PCIE_TO_PCI_BRIDGE = "pcie-to-pci-bridge"
    PCI_TO_PCIE_BRIDGE = "pci-to-pcie-bridge"
    CONVENTIONAL = "conventional-pci"

    @property
    def label(self) -> str:
        return _PCIE_TYPE_LABELS[self]

    @property
    def is_port(self) -> bool:
        return self in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM, PcieType.SWITCH_UPSTREAM)


_PCIE_TYPE_LABELS = {
    PcieType.ENDPOINT: "PCIe endpoint",
    PcieType.LEGACY_ENDPOINT: "legacy PCIe endpoint",
    PcieType.RC_INTEGRATED_ENDPOINT: "root complex integrated endpoint",
    PcieType.RC_EVENT_COLLECTOR: "root complex event collector",
    PcieType.ROOT_PORT: "root port",
    PcieType.SWITCH_UPSTREAM: "switch upstream port",
    PcieType.SWITCH_DOWNSTREAM: "switch downstream port",
    PcieType.PCIE_TO_PCI_BRIDGE: "PCIe-to-PCI/PCI-X bridge",
    PcieType.PCI_TO_PCIE_BRIDGE: "PCI/PCI-X-to-PCIe bridge",
    PcieType.CONVENTIONAL: "conventional PCI",
}

#: Express capability "Device/Port Type" field (PCI_EXP_FLAGS_TYPE >> 4) to PcieType.
PCIE_TYPE_FROM_FIELD = {
    0x0: PcieType.ENDPOINT,
    0x1: PcieType.LEGACY_ENDPOINT,
    0x4: PcieType.ROOT_PORT,
    0x5: PcieType.SWITCH_UPSTREAM,
    0x6: PcieType.SWITCH_DOWNSTREAM,
    0x7: PcieType.PCIE_TO_PCI_BRIDGE,
    0x8: PcieType.PCI_TO_PCIE_BRIDGE,
    0x9: PcieType.RC_INTEGRATED_ENDPOINT,
    0xA: PcieType.RC_EVENT_COLLECTOR,
}


class BarKind(str, Enum):
    """Where a BAR or window lives: the kinds the resource accounting uses."""

    IO = "io"
    MEM32 = "mem32"
    MEM64 = "mem64"
    PREF32 = "pref32"
    PREF64 = "pref64"

    @classmethod
    def of(cls, io: bool, is_64bit: bool, prefetchable: bool) -> "BarKind":
        if io:
            return cls.IO
        if prefetchable:
            return cls.PREF64 if is_64bit else cls.PREF32
        return cls.MEM64 if is_64bit else cls.MEM32

    @property
    def is_io(self) -> bool:
        return self is BarKind.IO

    @property
    def is_64bit(self) -> bool:
        return self in (BarKind.MEM64, BarKind.PREF64)

    @property
    def prefetchable(self) -> bool:
        return self in (BarKind.PREF32, BarKind.PREF64)


@dataclass(frozen=True, slots=True)
class Bar:
    """A base address register (or the expansion ROM, or an SR-IOV VF BAR).

    ``start`` is None when the BAR is unassigned (or the source did not say);
    ``size`` is None when unknown. For VF BARs ``size`` is the size of *one* VF's
    BAR and ``total_size`` the IOV resource (size x TotalVFs) where known.
    """

    index: int
    kind: BarKind
    start: int | None = None
    size: int | None = None
    unassigned: bool = False
    disabled: bool | None = None
    total_size: int | None = None

    @property
    def end(self) -> int | None:
        if self.start is None or self.size is None:
            return None
        return self.start + self.size - 1

    @property
    def assigned(self) -> bool:
        return not self.unassigned and self.start is not None


class WindowKind(str, Enum):
    IO = "io"
    MEM = "mem"
    PREF = "pref"


@dataclass(frozen=True, slots=True)
class Window:
    """A bridge (or host bridge) address window, inclusive ``[start, end]``."""

    kind: WindowKind
    start: int
    end: int
    is_64bit: bool | None = None

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """Type 1 header facts: bus numbers and the three forwarding windows."""

    primary: int | None = None
    secondary: int | None = None
    subordinate: int | None = None
    io_window: Maybe[Window] = None
    mem_window: Maybe[Window] = None
    pref_window: Maybe[Window] = None

    @property
    def bus_range(self) -> tuple[int, int] | None:
        if self.secondary is None or self.subordinate is None:
            return None
        return (self.secondary, self.subordinate)

    def window(self, kind: WindowKind) -> Maybe[Window]:
        return {WindowKind.IO: self.io_window, WindowKind.MEM: self.mem_window, WindowKind.PREF: self.pref_window}[kind]


# ACS bits, include/uapi/linux/pci_regs.h
ACS_BITS = (("SV", 0x01), ("TB", 0x02), ("RR", 0x04), ("CR", 0x08), ("UF", 0x10), ("EC", 0x20), ("DT", 0x40))
ACS_BIT = dict(ACS_BITS)


def acs_flags_str(value: int) -> str:
    names = [name for name, bit in ACS_BITS if value & bit]
    return "+".join(names) if names else "-"


def acs_flags_parse(names: "list[str] | tuple[str, ...] | str") -> int:
    if isinstance(names, str):
        names = [n for n in names.replace(",", "+").replace(" ", "+").split("+") if n and n != "-"]
    value = 0
    for n in names:
        try:
            value |= ACS_BIT[n.upper()]
        except KeyError:
            raise ValueError(f"unknown ACS flag {n!r} (expected {', '.join(b for b, _ in ACS_BITS)})") from None
    return value


@dataclass(frozen=True, slots=True)
class AcsCap:
    """ACS capability and control registers (low 7 bits)."""

    cap: int
    ctrl: int


@dataclass(frozen=True, slots=True)
class AtsCap:
    queue_depth: int | None = None
    enabled: bool | None = None
    stu: int | None = None


@dataclass(frozen=True, slots=True)
class PriCap:
    enabled: bool | None = None
    capacity: int | None = None
    allocation: int | None = None


@dataclass(frozen=True, slots=True)
class PasidCap:
    exec_supported: bool | None = None
    priv_supported: bool | None = None
    max_width: int | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class SriovCap:
    initial_vfs: int | None = None
    total_vfs: int | None = None
    num_vfs: int | None = None
    vf_offset: int | None = None
    vf_stride: int | None = None
    vf_device: int | None = None
    #: "ARI Capable Hierarchy" bit in the SR-IOV control register.
    ari_hierarchy: bool | None = None
    enabled: bool | None = None
    #: driver_max_VFs as sysfs sriov_totalvfs reports it (may be below TotalVFs).
    driver_total_vfs: int | None = None
    drivers_autoprobe: bool | None = None


@dataclass(frozen=True, slots=True)
class AriCap:
    next_function: int | None = None


@dataclass(frozen=True, slots=True)
class AerCap:
    version: int | None = None


@dataclass(frozen=True, slots=True)
class RcecCap:
    """RCEC Endpoint Association: RCiEP device numbers on the RCEC's bus, and extra buses."""

    bitmap: int = 0
    next_bus: int | None = None
    last_bus: int | None = None

    @property
    def devices(self) -> tuple[int, ...]:
        return tuple(d for d in range(32) if self.bitmap & (1 << d))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The capabilities that matter here; each is Maybe[...] (None = unknown)."""

    acs: Maybe[AcsCap] = None
    ats: Maybe[AtsCap] = None
    pri: Maybe[PriCap] = None
    pasid: Maybe[PasidCap] = None
    sriov: Maybe[SriovCap] = None
    ari: Maybe[AriCap] = None
    aer: Maybe[AerCap] = None
    rcec: Maybe[RcecCap] = None
    #: Device Serial Number, as 16 lowercase hex digits grouped like lspci (xx-xx-...).
    dsn: Maybe[str] = None
    #: DevCap2 End-End TLP Prefix supported (PASID prerequisite).
    eetlp_prefix: bool | None = None
    #: DevCap2 ARI Forwarding Supported (ports only).
    ari_forwarding: bool | None = None


@dataclass(frozen=True, slots=True)
class SlotInfo:
    physical_slot: str | None = None
    number: int | None = None
    hotplug: bool | None = None
    surprise: bool | None = None
    #: The driver that owns the slot's hotplug: "acpiphp", "pciehp" or "shpchp" (None: unknown).
    hotplug_driver: str | None = None


@dataclass(frozen=True, slots=True)
class LinkInfo:
    current_speed: str | None = None
    current_width: int | None = None
    max_speed: str | None = None
    max_width: int | None = None


@dataclass(frozen=True, slots=True)
class Function:
    """One PCI function with every fact the model has a place for."""

    address: Address
    #: Upstream bridge, or None on a root bus (including a VMD domain's root bus).
    parent: Address | None = None

    vendor_id: int | None = None
    device_id: int | None = None
    subsystem_vendor_id: int | None = None
    subsystem_device_id: int | None = None
    #: Names the source itself gave (lspci text, YAML); pci.ids lookups are done by names.py.
    vendor_name: str | None = None
    device_name: str | None = None
    subsystem_name: str | None = None
    class_code: int | None = None
    class_name: str | None = None
    revision: int | None = None
    header_type: int | None = None
    multifunction: bool | None = None

    pcie_type: PcieType | None = None
    #: Which part of config space the source could read: None unknown, else 64, 256 or 4096.
    config_size: int | None = None

    bars: tuple[Bar, ...] | None = None
    rom: Maybe[Bar] = None
    vf_bars: tuple[Bar, ...] | None = None
    bridge: Maybe[BridgeInfo] = None
    caps: Capabilities = field(default_factory=Capabilities)
    slot: Maybe[SlotInfo] = None
    link: LinkInfo | None = None

    driver: Maybe[str] = None
    driver_override: Maybe[str] = None
    iommu_group: Maybe[str] = None
    numa_node: int | None = None
    #: For a VF, its PF; for a PF, its VFs.
    physfn: Address | None = None
    virtfns: tuple[Address, ...] = ()
    is_virtfn: bool | None = None
    boot_vga: bool | None = None
    reset_methods: tuple[str, ...] | None = None
    external_facing: bool | None = None
    removable: bool | None = None
    #: For a VMD endpoint: the PCI domain it owns.
    vmd_domain: int | None = None

    # ---- convenient derived facts -------------------------------------------------
    @property
    def bdf(self) -> str:
        return str(self.address)

    @property
    def is_bridge(self) -> bool | None:
        if self.header_type is not None:
            return self.header_type in (1, 2)
        if present(self.bridge):
            return True
        if self.class_code is not None:
            return (self.class_code >> 8) in (0x0604, 0x0609)
        return None

    @property
    def vendor_device(self) -> str | None:
        if self.vendor_id is None or self.device_id is None:
            return None
        return f"{self.vendor_id:04x}:{self.device_id:04x}"

    @property
    def class_hex(self) -> str | None:
        return None if self.class_code is None else f"{self.class_code:06x}"


@dataclass(frozen=True, slots=True)
class HostBridge:
    """A PCI root bus: its domain, bus range and address windows (from /proc/iomem)."""

    domain: int
    root_bus: int
    bus_range: tuple[int, int] | None = None
    windows: tuple[Window, ...] | None = None
    #: Set for the virtual root bus of a VMD domain.
    vmd_owner: Address | None = None

    @property
    def name(self) -> str:
        return f"pci{self.domain:04x}:{self.root_bus:02x}"
