"""The firmware's PCI assignment as one boot's kernel found it (read from its log by
:mod:`explorer.sources.dmesg`; replayed by :mod:`explorer.kernel.setup.boot`)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from .address import Address

__all__ = ["DmesgBoot", "FwDevice", "FwResource", "FwRoot", "attach_firmware", "attached_firmware"]


@dataclass(frozen=True, slots=True)
class FwResource:
    """One resource as the kernel printed it (``%pR``): I/O or memory, start and end, flags."""

    kind: str  # "io" | "mem"
    start: int
    end: int
    is_64bit: bool = False
    prefetchable: bool = False
    #: printed as ``[mem size 0x...]``: no address (IORESOURCE_UNSET)
    unset: bool = False
    disabled: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass(slots=True)
class FwDevice:
    """A function as the firmware left it, under the address the kernel gave it in this boot."""

    address: Address
    line: int
    vendor_id: int | None = None
    device_id: int | None = None
    header_type: int | None = None
    class_code: int | None = None
    #: BAR number -> resource (0-5)
    bars: dict[int, FwResource] = field(default_factory=dict)
    rom: FwResource | None = None
    #: VF BAR number -> resource (the whole VF BAR area, all VFs)
    vf_bars: dict[int, FwResource] = field(default_factory=dict)
    #: the firmware's secondary and subordinate bus numbers (bridges)
    fw_secondary: int | None = None
    fw_subordinate: int | None = None
    #: "bridge configuration invalid": the kernel renumbered this bridge
    fw_bus_invalid: bool = False
    #: "io" / "mem" / "pref" -> the firmware's window (only the windows the kernel printed as open)
    windows: dict[str, FwResource] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        return self.header_type in (1, 2) or (self.class_code is not None and self.class_code >> 8 == 0x0604)


@dataclass(frozen=True, slots=True)
class FwRoot:
    """A host bridge: its root bus, bus range and windows (``root bus resource`` lines)."""

    domain: int
    bus: int
    bus_range: tuple[int, int] | None
    windows: tuple[FwResource, ...]


@dataclass
class DmesgBoot:
    """What one boot's kernel log says about PCI."""

    path: str
    #: The log begins with the kernel's first line (nothing lost to wrapping).
    complete: bool
    #: The enumeration lines are there (host bridge, devices).
    firmware_known: bool
    kernel_release: str | None = None
    cmdline: str | None = None
    roots: list[FwRoot] = field(default_factory=list)
    #: x86 e820__setup_pci_gap(): "[mem 0x40000000-0xafffffff] available for PCI devices";
    #: its start is PCIBIOS_MIN_MEM, the lowest address a memory BAR or window is given
    pci_mem_start: int | None = None
    #: in the order the kernel found them
    devices: dict[Address, FwDevice] = field(default_factory=dict)
    #: the kernel's PCI lines after the enumeration (assigned, can't assign, released, ...)
    changes: list[str] = field(default_factory=list)
    #: why the firmware state is unknown or partial
    notes: list[str] = field(default_factory=list)


# ---- the kernel log that goes with a loaded topology ------------------------------------------
# A Topology is immutable and compared by value, so the log is kept beside it, keyed by identity.

_ATTACHED: dict[int, tuple["weakref.ref[object]", DmesgBoot]] = {}


def attach_firmware(topology: object, boot: DmesgBoot) -> None:
    """Remember the kernel log of the boot ``topology`` was read from."""
    key = id(topology)
    _ATTACHED[key] = (weakref.ref(topology, lambda _r, k=key: _ATTACHED.pop(k, None)), boot)


def attached_firmware(topology: object) -> DmesgBoot | None:
    """The kernel log attached to ``topology`` (None when its source kept none)."""
    got = _ATTACHED.get(id(topology))
    if got is None or got[0]() is not topology:
        return None
    return got[1]
