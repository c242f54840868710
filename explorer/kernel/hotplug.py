"""Hot-add fit and SR-IOV fit: what Linux 6.1 does, predicted from a topology.

``fit_hotadd(topology, port, bars, buses=, hotplug=, kernel_params=)`` replays on a
copy of the machine what the kernel runs when a device appears below a hotplug
port (kernel-rules.md section 6a):

* ``acpi`` (acpiphp ``enable_slot``): ``pci_scan_slot``, the two ``pci_scan_bridge``
  passes for a new bridge (bus number ``acpiphp_max_busnr()+1``, unchecked), that
  bridge's ``__pci_bus_size_bridges`` as a hotplug bridge, then
  ``__pci_bus_assign_resources(bus, &add_list, NULL)``: no fail list, so no
  release and no retry; a BAR fits only in a free aligned hole of one of the
  port's existing windows.
* ``native`` (pciehp ``pciehp_configure_device``): ``pci_hp_add_bridge`` (first free
  bus in the port's range) then ``pci_assign_unassigned_bridge_resources(port)``:
  size, distribute spare space, assign; on a failure one release of the failed
  type's window (``whole_subtree``), then a second and last try that re-sizes the
  port's window (``pbus_size_mem``: old size kept as a minimum, hotplug reserve
  as an optional add-on) and places it first fit in the parent's resources
  (``pci_high`` first for 64-bit windows). A failure leaves the port without it.

Both place BARs largest alignment first, each first fit (``allocate_resource``)
in the window of its type, a prefetchable BAR falling back to the memory window.
The kernel's log lines are reproduced verbatim (``BAR 2 [mem size 0x40000000
64bit pref]: can't assign; no space``). ``pci=hp*size`` matter only for windows
the kernel sizes at the hot-add (native, or a new bridge under ACPI); a
firmware-programmed window keeps its size (rule 6a.5).

``fit_sriov(topology, pf, num_vfs)`` follows ``sriov_numvfs_store`` and
``sriov_enable`` (drivers/pci/iov.c): -ERANGE above TotalVFs, "not enough MMIO
resources for SR-IOV", "can't enable %d VFs (bus %02x out of range of %pR)", and
where each VF and its BARs land.

The simulator below mirrors kernel/resource.c (``__find_resource``,
``allocate_resource``), drivers/pci/bus.c (``pci_bus_alloc_resource``),
setup-res.c (``pci_assign_resource``) and setup-bus.c (sizing, sorted assignment,
release, distribution) function by function, read from Debian's linux-source-6.1
(6.1.192); 6.12.117 differs on these paths only in ``pbus_size_mem``'s
relaxed-alignment retry.

Layer rule: imports :mod:`explorer.model` (and the sibling accounting module) only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Union

from ..model.units import format_size
from ..model import (
    ABSENT,
    Address,
    Bar,
    BarKind,
    Function,
    SriovCap,
    Topology,
    Window,
    WindowKind,
    present,
)
from .resources import fmt_size, free_gaps, parse_size

__all__ = [
    "BarOutcome",
    "BarSpec",
    "FitResult",
    "HOTPLUG_MODES",
    "KernelParams",
    "NewBridge",
    "SriovFitResult",
    "VfBarPlacement",
    "VfPlan",
    "fit_hotadd",
    "fit_sriov",
    "normalize_bars",
    "parse_bar_spec",
    "parse_kernel_params",
]

# =============================================================================================
# The simulator: a literal model of the kernel's resource code
# =============================================================================================

# include/linux/ioport.h
IO = 0x00000100
MEM = 0x00000200
TYPE_BITS = 0x00001F00
PREFETCH = 0x00002000
READONLY = 0x00004000
SIZEALIGN = 0x00040000
STARTALIGN = 0x00080000
MEM_64 = 0x00100000
WINDOW = 0x00200000
DISABLED = 0x10000000
UNSET = 0x20000000
PCI_FIXED = 0x00000010  # IORESOURCE_PCI_FIXED (bus-specific bit)
ROM_ENABLE = 0x00000001
PCI_RES_TYPE_MASK = IO | MEM | PREFETCH | MEM_64

# include/linux/pci.h resource numbers
ROM_RESOURCE = 6
IOV_FIRST = 7
IOV_LAST = 12
BRIDGE_IO = 13
BRIDGE_MEM = 14
BRIDGE_PREF = 15

PCI_CLASS_BRIDGE_PCI = 0x0604

# arch/x86
PCIBIOS_MIN_IO = 0x1000
BIOS_END = 0x100000
BIOS_ROM_BASE = 0xFFE00000
BIOS_ROM_END = 0xFFFFFFFF

PCI_32_BIT = (0, 0xFFFFFFFF)
PCI_64_BIT = (0, 0xFFFFFFFFFFFFFFFF)
PCI_HIGH = (0x100000000, 0xFFFFFFFFFFFFFFFF)

DEFAULT_HOTPLUG_IO_SIZE = 256
DEFAULT_HOTPLUG_MMIO_SIZE = 2 << 20
DEFAULT_HOTPLUG_MMIO_PREF_SIZE = 2 << 20
DEFAULT_HOTPLUG_BUS_SIZE = 1


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a if a > 0 else x


def align_down(x: int, a: int) -> int:
    return x // a * a if a > 0 else x


def ffs0(x: int) -> int:
    """__ffs: index of the lowest set bit."""
    return (x & -x).bit_length() - 1


class KRes:
    """struct resource."""

    __slots__ = ("name", "start", "end", "flags", "parent", "children", "dev", "idx", "iov_align", "label")

    def __init__(self, start: int, end: int, flags: int, name: str = "", dev: "KDev | None" = None,
                 idx: int | None = None) -> None:
        self.name = name
        self.start = start
        self.end = end
        self.flags = flags
        self.parent: KRes | None = None
        self.children: list[KRes] = []
        self.dev = dev
        self.idx = idx
        self.iov_align = 0
        self.label = ""

    @property
    def size(self) -> int:  # resource_size()
        return self.end - self.start + 1

    def __repr__(self) -> str:
        return f"KRes({self.label or self.name} {self.start:#x}-{self.end:#x} flags={self.flags:#x} parent={'y' if self.parent else 'n'})"


@dataclass
class KDev:
    """struct pci_dev (the facts the resource code uses)."""

    name: str  # "0000:01:00.0"
    bus: "KBus"
    devfn: int
    class_code: int | None = None  # 24-bit
    driver: str | None = None
    res: dict[int, KRes] = field(default_factory=dict)
    subordinate: "KBus | None" = None
    is_bridge: bool = False
    is_hotplug_bridge: bool = False
    io_window: bool = True
    pref_window: bool = True
    pref_64_window: bool = True
    enabled: bool = True
    is_virtfn: bool = False
    new: bool = False

    @property
    def prefix(self) -> str:
        return f"{self.driver or 'pci'} {self.name}"

    @property
    def is_pci_bridge_class(self) -> bool:
        if self.class_code is None:
            return self.is_bridge
        return (self.class_code >> 8) == PCI_CLASS_BRIDGE_PCI


@dataclass
class KBus:
    """struct pci_bus."""

    number: int
    busn_start: int
    busn_end: int
    self_dev: KDev | None
    parent: "KBus | None"
    domain: int = 0
    devices: list[KDev] = field(default_factory=list)
    #: for a root bus: the host bridge windows in _CRS order; else the bridge's three windows
    root_resources: list[KRes] = field(default_factory=list)
    children: list["KBus"] = field(default_factory=list)
    #: True when the windows of this root bus are not known (only for root buses)
    windows_unknown: bool = False

    @property
    def resources(self) -> list[KRes | None]:
        if self.self_dev is None:
            return list(self.root_resources)
        d = self.self_dev
        return [d.res.get(BRIDGE_IO), d.res.get(BRIDGE_MEM), d.res.get(BRIDGE_PREF)]

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def busn_str(self) -> str:
        if self.busn_start == self.busn_end:
            return f"[bus {self.busn_start:02x}]"
        return f"[bus {self.busn_start:02x}-{self.busn_end:02x}]"


# ---- printing (%pR, lib/vsprintf.c resource_string) ----------------------------------------


def pr(res: KRes) -> str:
    f = res.flags
    if f & IO:
        t, width = "io  ", 6
    elif f & MEM:
        t, width = "mem ", 10
    else:
        t, width = "??? ", 10

    def num(v: int) -> str:
        s = f"{v:#x}"
        if len(s) < width:
            s = "0x" + s[2:].rjust(width - 2, "0")
        return s

    if (f & (IO | MEM)) and f & UNSET:
        body = "size " + num(res.size)
    else:
        body = num(res.start)
        if res.start != res.end:
            body += "-" + num(res.end)
    if f & (IO | MEM):
        if f & MEM_64:
            body += " 64bit"
        if f & PREFETCH:
            body += " pref"
        if f & WINDOW:
            body += " window"
        if f & DISABLED:
            body += " disabled"
    else:
        body += f" flags {f:#x}"
    return f"[{t}{body}]"


def res_name(idx: int) -> str:
    """pci_resource_name()"""
    if idx <= 5:
        return f"BAR {idx}"
    if idx == ROM_RESOURCE:
        return "ROM"
    if IOV_FIRST <= idx <= IOV_LAST:
        return f"VF BAR {idx - IOV_FIRST}"
    return "bridge window"


# ---- kernel/resource.c -----------------------------------------------------------------------


def _clip_keep_larger(start: int, end: int, cs: int, ce: int) -> tuple[int, int]:
    """arch/x86/kernel/resource.c resource_clip()"""
    if end < cs or start > ce:
        return start, end
    low = cs - start if start < cs else 0
    high = end - ce if end > ce else 0
    if low > high:
        return start, cs - 1
    return ce + 1, end


class Sim:
    """The allocator and the setup-bus.c algorithms, with a log of the kernel's messages."""

    def __init__(self, skip_isa_align: bool = False, min_mem: int = 0) -> None:
        self.log: list[str] = []
        self.skip_isa_align = skip_isa_align
        self.min_mem = min_mem
        #: set when an allocation needed a root bus whose windows are unknown
        self.unknown_root_used = False
        self.hp_io = DEFAULT_HOTPLUG_IO_SIZE
        self.hp_mmio = DEFAULT_HOTPLUG_MMIO_SIZE
        self.hp_pref = DEFAULT_HOTPLUG_MMIO_PREF_SIZE
        self.hp_bus = DEFAULT_HOTPLUG_BUS_SIZE

    def info(self, dev: KDev | None, msg: str) -> None:
        self.log.append(f"{dev.prefix}: {msg}" if dev is not None else msg)

    # -- resource tree --
    @staticmethod
    def request(root: KRes, new: KRes) -> KRes | None:
        """__request_resource(): insert ``new`` as a child of ``root``; return a conflict."""
        if new.end < new.start or new.start < root.start or new.end > root.end:
            return root
        for c in root.children:
            if not (new.end < c.start or new.start > c.end):
                return c
        root.children.append(new)
        root.children.sort(key=lambda r: r.start)
        new.parent = root
        return None

    @staticmethod
    def release(res: KRes) -> None:
        """release_resource(): detach from the parent; children stay with ``res``."""
        if res.parent is not None:
            try:
                res.parent.children.remove(res)
            except ValueError:
                pass
        res.parent = None

    def release_child_resources(self, r: KRes) -> None:
        """__release_child_resources(): unassign every descendant, keeping sizes and flags."""
        kids = r.children
        r.children = []
        for tmp in kids:
            tmp.parent = None
            self.release_child_resources(tmp)
            size = tmp.size
            tmp.start = 0
            tmp.end = size - 1

    def _alignf(self, flags: int, start: int) -> int:
        """arch/x86/pci/i386.c pcibios_align_resource()"""
        if flags & IO:
            if self.skip_isa_align:
                return start
            if start & 0x300:
                start = (start + 0x3FF) & ~0x3FF
        elif flags & MEM:
            if start < BIOS_END:
                start = BIOS_END
        return start

    def find_resource(self, root: KRes, new_flags: int, size: int, cmin: int, cmax: int, align: int,
                      old: KRes | None = None) -> tuple[int, int] | None:
        """__find_resource(): the lowest aligned gap among ``root``'s children."""
        kids = root.children
        i = 0
        tmp_start = root.start
        if kids and kids[0].start == root.start:
            tmp_start = old.start if kids[0] is old else kids[0].end + 1
            i = 1
        while True:
            this = kids[i] if i < len(kids) else None
            if this is not None:
                tmp_end = this.end if this is old else this.start - 1
            else:
                tmp_end = root.end
            if tmp_end >= tmp_start:
                s, e = max(tmp_start, cmin), min(tmp_end, cmax)
                if new_flags & MEM:
                    s, e = _clip_keep_larger(s, e, BIOS_ROM_BASE, BIOS_ROM_END)
                avail_start = align_up(s, align) if align else s
                if avail_start >= s:
                    a_start = self._alignf(new_flags, avail_start)
                    a_end = a_start + size - 1
                    if a_start <= a_end and a_start >= avail_start and a_end <= e:
                        return a_start, a_end
            if this is None or this.end == root.end:
                break
            if this is not old:
                tmp_start = this.end + 1
            i += 1
        return None

    def allocate_resource(self, root: KRes, new: KRes, size: int, cmin: int, cmax: int, align: int) -> bool:
        """allocate_resource() / reallocate_resource()"""
        if new.parent is not None:
            old_in_root = new in root.children
            found = self.find_resource(root, new.flags, size, cmin, cmax, align, new if old_in_root else None)
            if found is None:
                return False
            ns, ne = found
            if ns <= new.start and new.end <= ne:
                new.start, new.end = ns, ne
                return True
            if new.children:
                return False
            if new.start <= ns and ne <= new.end:
                new.start, new.end = ns, ne
                return True
            self.release(new)
            new.start, new.end = ns, ne
            return self.request(root, new) is None
        found = self.find_resource(root, new.flags, size, cmin, cmax, align)
        if found is None:
            return False
        ns, ne = found
        os_, oe = new.start, new.end
        new.start, new.end = ns, ne
        if self.request(root, new) is not None:
            new.start, new.end = os_, oe
            return False
        return True

    # -- drivers/pci/bus.c --
    def bus_alloc_from_region(self, bus: KBus, res: KRes, size: int, align: int, cmin: int, type_mask: int,
                              region: tuple[int, int]) -> bool:
        type_mask |= TYPE_BITS
        if bus.is_root and bus.windows_unknown:
            self.unknown_root_used = True
        for r in bus.resources:
            if r is None:
                continue
            if (res.flags ^ r.flags) & type_mask:
                continue
            if (r.flags & PREFETCH) and not (res.flags & PREFETCH):
                continue
            a_start, a_end = max(r.start, region[0]), min(r.end, region[1])
            if a_end < a_start:
                a_end = a_start - 1
            min_used = a_start if a_start else cmin
            if self.allocate_resource(r, res, size, min_used, a_end, align):
                return True
        return False

    def bus_alloc_resource(self, bus: KBus, res: KRes, size: int, align: int, cmin: int, type_mask: int) -> bool:
        """pci_bus_alloc_resource()"""
        if res.flags & MEM_64:
            if self.bus_alloc_from_region(bus, res, size, align, cmin, type_mask, PCI_HIGH):
                return True
            return self.bus_alloc_from_region(bus, res, size, align, cmin, type_mask, PCI_64_BIT)
        return self.bus_alloc_from_region(bus, res, size, align, cmin, type_mask, PCI_32_BIT)

    # -- drivers/pci/setup-res.c --
    @staticmethod
    def resource_alignment(dev: KDev | None, res: KRes) -> int:
        """pci_resource_alignment()"""
        if res.idx is not None and IOV_FIRST <= res.idx <= IOV_LAST:
            return res.iov_align
        f = res.flags & (SIZEALIGN | STARTALIGN)
        if f == SIZEALIGN:
            return res.size
        if f == STARTALIGN:
            return res.start
        return 0

    def __assign(self, bus: KBus, dev: KDev, res: KRes, size: int, align: int) -> bool:
        """__pci_assign_resource()"""
        cmin = PCIBIOS_MIN_IO if res.flags & IO else self.min_mem
        if self.bus_alloc_resource(bus, res, size, align, cmin, PREFETCH | MEM_64):
            return True
        if (res.flags & (PREFETCH | MEM_64)) == (PREFETCH | MEM_64):
            if self.bus_alloc_resource(bus, res, size, align, cmin, PREFETCH):
                return True
        if res.flags & (PREFETCH | MEM_64):
            return self.bus_alloc_resource(bus, res, size, align, cmin, 0)
        return False

    def assign_resource(self, dev: KDev, res: KRes) -> bool:
        """pci_assign_resource()"""
        if res.flags & PCI_FIXED:
            return True
        res.flags |= UNSET
        align = self.resource_alignment(dev, res)
        name = res_name(res.idx)  # type: ignore[arg-type]
        if not align:
            self.info(dev, f"{name} {pr(res)}: can't assign; bogus alignment")
            return False
        size = res.size
        ok = self.__assign(dev.bus, dev, res, size, align)
        if not ok:
            self.info(dev, f"{name} {pr(res)}: can't assign; no space")
            # pci_revert_fw_address(): a hot-added device has no firmware address
            self.info(dev, f"{name} {pr(res)}: failed to assign")
            return False
        res.flags &= ~UNSET
        res.flags &= ~STARTALIGN
        self.info(dev, f"{name} {pr(res)}: assigned")
        return True

    def reassign_resource(self, dev: KDev, res: KRes, addsize: int, min_align: int) -> bool:
        """pci_reassign_resource()"""
        if res.flags & PCI_FIXED:
            return True
        flags = res.flags
        res.flags |= UNSET
        name = res_name(res.idx)  # type: ignore[arg-type]
        if res.parent is None:
            self.info(dev, f"{name} {pr(res)}: can't reassign; unassigned resource")
            return False
        new_size = res.size + addsize
        if not self.__assign(dev.bus, dev, res, new_size, min_align):
            res.flags = flags
            self.info(dev, f"{name} {pr(res)}: failed to expand by {addsize:#x}")
            return False
        res.flags &= ~UNSET
        res.flags &= ~STARTALIGN
        self.info(dev, f"{name} {pr(res)}: reassigned; expanded by {addsize:#x}")
        return True

    # -- drivers/pci/setup-bus.c: lists --
    @staticmethod
    def _add_to_list(head: list["DevRes"], dev: KDev, res: KRes, add_size: int, min_align: int) -> None:
        head.insert(0, DevRes(res, dev, res.start, res.end, res.flags, add_size, min_align))  # list_add: at head

    @staticmethod
    def _remove_from_list(head: list["DevRes"], res: KRes) -> None:
        for i, d in enumerate(head):
            if d.res is res:
                del head[i]
                return

    @staticmethod
    def _find(head: list["DevRes"], res: KRes) -> "DevRes | None":
        for d in head:
            if d.res is res:
                return d
        return None

    def pdev_sort_resources(self, dev: KDev, head: list["DevRes"]) -> None:
        for idx in sorted(dev.res):
            r = dev.res[idx]
            if r.flags & PCI_FIXED:
                continue
            if not r.flags or r.parent is not None:
                continue
            r_align = self.resource_alignment(dev, r)
            if not r_align:
                self.info(dev, f"BAR {idx}: {pr(r)} has bogus alignment")
                continue
            pos = len(head)
            for i, d in enumerate(head):
                if r_align > self.resource_alignment(d.dev, d.res):
                    pos = i
                    break
            head.insert(pos, DevRes(r, dev))

    def dev_sort_resources(self, dev: KDev, head: list["DevRes"]) -> None:
        """__dev_sort_resources()"""
        if dev.class_code is not None and (dev.class_code >> 8) in (0x0000, 0x0600):
            return
        self.pdev_sort_resources(dev, head)

    def reassign_resources_sorted(self, realloc: list["DevRes"], head: list["DevRes"]) -> None:
        for add_res in list(realloc):
            res = add_res.res
            if res.flags:
                if self._find(head, res) is None:
                    continue
                add_size = add_res.add_size
                align = add_res.min_align
                if res.size == 0:
                    res.start = align
                    res.end = res.start + add_size - 1
                    if not self.assign_resource(add_res.dev, res):
                        reset_resource(res)
                else:
                    res.flags |= add_res.flags & (STARTALIGN | SIZEALIGN)
                    if not self.reassign_resource(add_res.dev, res, add_size, align):
                        self.info(add_res.dev, f"{res_name(res.idx)} {pr(res)}: failed to add {add_size:x}")  # type: ignore[arg-type]
            realloc.remove(add_res)

    def assign_requested_resources_sorted(self, head: list["DevRes"], fail: list["DevRes"] | None) -> None:
        for d in head:
            res = d.res
            if res_size_nonzero(res) and not self.assign_resource(d.dev, res):
                if fail is not None:
                    if not (res.idx == ROM_RESOURCE and not (res.flags & ROM_ENABLE)):
                        self._add_to_list(fail, d.dev, res, 0, 0)
                reset_resource(res)

    @staticmethod
    def fail_res_type_mask(fail: list["DevRes"]) -> int:
        mask = 0
        for f in fail:
            mask |= f.flags
        return mask & (IO | MEM | PREFETCH)

    @staticmethod
    def need_to_release(mask: int, res: KRes) -> bool:
        if res.flags & IO:
            return bool(mask & IO)
        if res.flags & PREFETCH:
            if mask & PREFETCH:
                return True
            if (mask & MEM) and res.parent is not None and not (res.parent.flags & PREFETCH):
                return True
            return False
        if res.flags & MEM:
            return bool(mask & MEM)
        return False

    def assign_resources_sorted(self, head: list["DevRes"], realloc: list["DevRes"] | None,
                                fail: list["DevRes"] | None) -> None:
        """__assign_resources_sorted()"""
        if realloc:
            save = [DevRes(d.res, d.dev, d.res.start, d.res.end, d.res.flags) for d in head]
            # add the optional sizes, fix bridge alignment (and re-sort by it)
            for d in list(head):
                add = self._find(realloc, d.res)
                d.res.end += add.add_size if add else 0
                if not (d.res.flags & STARTALIGN):
                    continue
                add_align = add.min_align if add else 0
                if add_align > d.res.start:
                    r_size = d.res.size
                    d.res.start = add_align
                    d.res.end = add_align + r_size - 1
                    for j, d2 in enumerate(head):
                        if add_align > self.resource_alignment(d2.dev, d2.res):
                            head.remove(d)
                            k = head.index(d2)
                            head.insert(k, d)  # list_move_tail(&dev_res->list, &dev_res2->list)
                            break
            local_fail: list[DevRes] = []
            self.assign_requested_resources_sorted(head, local_fail)
            if not local_fail:
                for d in head:
                    self._remove_from_list(realloc, d.res)
                head.clear()
                return
            fail_type = self.fail_res_type_mask(local_fail)
            for d in list(head):
                if d.res.parent is not None and not self.need_to_release(fail_type, d.res):
                    self._remove_from_list(realloc, d.res)
                    save = [s for s in save if s.res is not d.res]
                    head.remove(d)
            for d in head:
                if d.res.parent is not None:
                    self.release(d.res)
            for s in save:
                s.res.start, s.res.end, s.res.flags = s.start, s.end, s.flags
        # requested_and_reassign:
        self.assign_requested_resources_sorted(head, fail)
        if realloc is not None:
            self.reassign_resources_sorted(realloc, head)
        head.clear()

    def pbus_assign_resources_sorted(self, bus: KBus, realloc: list["DevRes"] | None, fail: list["DevRes"] | None) -> None:
        head: list[DevRes] = []
        for dev in bus.devices:
            self.dev_sort_resources(dev, head)
        self.assign_resources_sorted(head, realloc, fail)

    def pdev_assign_resources_sorted(self, dev: KDev, realloc: list["DevRes"] | None, fail: list["DevRes"] | None) -> None:
        head: list[DevRes] = []
        self.dev_sort_resources(dev, head)
        self.assign_resources_sorted(head, realloc, fail)

    def setup_bridge(self, bus: KBus, types: int = IO | MEM | PREFETCH) -> None:
        """__pci_setup_bridge(): only the log lines."""
        br = bus.self_dev
        if br is None:
            return
        self.info(br, f"PCI bridge to {bus.busn_str()}")
        for idx, t in ((BRIDGE_IO, IO), (BRIDGE_MEM, MEM), (BRIDGE_PREF, PREFETCH)):
            if not (types & t):
                continue
            r = br.res.get(idx)
            if r is not None and r.flags & t:
                self.info(br, f"  bridge window {pr(r)}")

    def bus_assign_resources(self, bus: KBus, realloc: list["DevRes"] | None, fail: list["DevRes"] | None) -> None:
        """__pci_bus_assign_resources()"""
        self.pbus_assign_resources_sorted(bus, realloc, fail)
        for dev in bus.devices:
            b = dev.subordinate
            if b is None:
                continue
            self.bus_assign_resources(b, realloc, fail)
            if dev.is_bridge and not dev.enabled:
                self.setup_bridge(b)

    def bridge_assign_resources(self, bridge: KDev, realloc: list["DevRes"] | None, fail: list["DevRes"] | None) -> None:
        """__pci_bridge_assign_resources()"""
        self.pdev_assign_resources_sorted(bridge, realloc, fail)
        b = bridge.subordinate
        if b is None:
            return
        self.bus_assign_resources(b, realloc, fail)
        self.setup_bridge(b)

    # -- sizing --
    @staticmethod
    def check_ranges(bus: KBus) -> None:
        """pci_bridge_check_ranges()"""
        br = bus.self_dev
        assert br is not None
        br.res[BRIDGE_MEM].flags |= MEM
        if br.io_window:
            br.res[BRIDGE_IO].flags |= IO
        if br.pref_window:
            br.res[BRIDGE_PREF].flags |= MEM | PREFETCH
            if br.pref_64_window:
                br.res[BRIDGE_PREF].flags |= MEM_64

    @staticmethod
    def find_bus_resource_of_type(bus: KBus, type_mask: int, typ: int) -> KRes | None:
        assigned = None
        for r in bus.resources:
            if r is None:
                continue
            if (r.flags & type_mask) == typ and r.parent is None:
                return r
            if (r.flags & type_mask) == typ and assigned is None:
                assigned = r
        return assigned

    def pbus_size_io(self, bus: KBus, min_size: int, add_size: int, realloc: list["DevRes"] | None) -> None:
        b_res = self.find_bus_resource_of_type(bus, IO, IO)
        if b_res is None or b_res.parent is not None:
            return
        min_align = 0x1000
        size = size1 = 0
        children_add = 0
        for dev in bus.devices:
            for idx in sorted(dev.res):
                r = dev.res[idx]
                if r.parent is not None or not (r.flags & IO):
                    continue
                r_size = r.size
                if r_size < 0x400:
                    size += r_size
                else:
                    size1 += r_size
                align = self.resource_alignment(dev, r)
                if align > min_align:
                    min_align = align
                if realloc is not None:
                    a = self._find(realloc, r)
                    children_add += a.add_size if a else 0
        old = b_res.size
        size0 = calculate_iosize(size, min_size, size1, 0, 0, old, min_align)
        if realloc is None or (not add_size and not children_add):
            s1 = size0
        else:
            s1 = calculate_iosize(size, min_size, size1, add_size, children_add, old, min_align)
        if not size0 and not s1:
            if bus.self_dev is not None and (b_res.start or b_res.end):
                self.info(bus.self_dev, f"disabling bridge window {pr(b_res)} to {bus.busn_str()} (unused)")
            b_res.flags = 0
            return
        b_res.start = min_align
        b_res.end = b_res.start + size0 - 1
        b_res.flags |= STARTALIGN
        if bus.self_dev is not None and s1 > size0 and realloc is not None:
            self._add_to_list(realloc, bus.self_dev, b_res, s1 - size0, min_align)
            self.info(bus.self_dev, f"bridge window {pr(b_res)} to {bus.busn_str()} add_size {s1 - size0:x}")

    def pbus_size_mem(self, bus: KBus, mask: int, typ: int, type2: int, type3: int, min_size: int, add_size: int,
                      realloc: list["DevRes"] | None) -> bool:
        b_res = self.find_bus_resource_of_type(bus, mask | PREFETCH, typ)
        if b_res is None:
            return False
        if b_res.parent is not None:
            return True
        aligns = [0] * 24
        max_order = 0
        size = 0
        children_add = 0
        add_align = 0
        for dev in bus.devices:
            for idx in sorted(dev.res):
                r = dev.res[idx]
                if r.parent is not None or (r.flags & PCI_FIXED):
                    continue
                fm = r.flags & mask
                if fm != typ and fm != type2 and fm != type3:
                    continue
                r_size = r.size
                if realloc is not None and IOV_FIRST <= idx <= IOV_LAST:
                    add_align = max(self.resource_alignment(dev, r), add_align)
                    r.end = r.start - 1
                    self._add_to_list(realloc, dev, r, r_size, 0)
                    children_add += r_size
                    continue
                align = self.resource_alignment(dev, r)
                order = ffs0(align) - 20 if align else 0
                if order < 0:
                    order = 0
                if order >= 24:
                    self.info(dev, f"{res_name(idx)} {pr(r)}: disabling; bad alignment {align:#x}")
                    r.flags = 0
                    continue
                size += max(r_size, align)
                if r_size <= align:
                    aligns[order] += align
                if order > max_order:
                    max_order = order
                if realloc is not None:
                    a = self._find(realloc, r)
                    children_add += a.add_size if a else 0
                    add_align = max(add_align, a.min_align if a else 0)
        min_align = calculate_mem_align(aligns, max_order)
        min_align = max(min_align, 0x100000)
        old = b_res.size
        size0 = calculate_memsize(size, min_size, 0, 0, old, min_align)
        add_align = max(min_align, add_align)
        if realloc is None or (not add_size and not children_add):
            s1 = size0
        else:
            s1 = calculate_memsize(size, min_size, add_size, children_add, old, add_align)
        if not size0 and not s1:
            if bus.self_dev is not None and (b_res.start or b_res.end):
                self.info(bus.self_dev, f"disabling bridge window {pr(b_res)} to {bus.busn_str()} (unused)")
            b_res.flags = 0
            return True
        b_res.start = min_align
        b_res.end = size0 + min_align - 1
        b_res.flags |= STARTALIGN
        if bus.self_dev is not None and s1 > size0 and realloc is not None:
            self._add_to_list(realloc, bus.self_dev, b_res, s1 - size0, add_align)
            self.info(bus.self_dev, f"bridge window {pr(b_res)} to {bus.busn_str()} add_size {s1 - size0:x} "
                                    f"add_align {add_align:x}")
        return True

    def bus_size_bridges(self, bus: KBus, realloc: list["DevRes"] | None) -> None:
        """__pci_bus_size_bridges()"""
        for dev in bus.devices:
            if dev.subordinate is not None:
                self.bus_size_bridges(dev.subordinate, realloc)
        if bus.is_root:
            return  # host->size_windows is off on x86
        self.check_ranges(bus)
        br = bus.self_dev
        assert br is not None
        add_io = add_mmio = add_pref = 0
        if br.is_hotplug_bridge:
            add_io, add_mmio, add_pref = self.hp_io, self.hp_mmio, self.hp_pref
        self.pbus_size_io(bus, 0 if realloc is not None else add_io, add_io, realloc)
        pref = br.res[BRIDGE_PREF]
        mask = MEM
        prefmask = MEM | PREFETCH
        type2 = type3 = 0
        if pref.flags & MEM_64:
            prefmask |= MEM_64
            ok = self.pbus_size_mem(bus, prefmask, prefmask, prefmask, prefmask,
                                    0 if realloc is not None else add_pref, add_pref, realloc)
            if ok:
                mask = prefmask
                type2 = prefmask & ~MEM_64
                type3 = prefmask & ~PREFETCH
        if not type2:
            prefmask &= ~MEM_64
            ok = self.pbus_size_mem(bus, prefmask, prefmask, prefmask, prefmask,
                                    0 if realloc is not None else add_pref, add_pref, realloc)
            if ok:
                mask = prefmask
            else:
                add_mmio += add_pref
            type2 = type3 = MEM
        self.pbus_size_mem(bus, mask, MEM, type2, type3, 0 if realloc is not None else add_mmio, add_mmio, realloc)

    # -- release --
    def bridge_release_resources(self, bus: KBus, typ: int) -> None:
        """pci_bridge_release_resources()"""
        dev = bus.self_dev
        assert dev is not None
        b2 = dev.res[BRIDGE_PREF]
        if typ & IO:
            idx = BRIDGE_IO
        elif not (typ & PREFETCH):
            idx = BRIDGE_MEM
        elif (typ & MEM_64) and (b2.flags & MEM_64):
            idx = BRIDGE_PREF
        elif not (b2.flags & MEM_64) and (b2.flags & PREFETCH):
            idx = BRIDGE_PREF
        else:
            idx = BRIDGE_MEM
        r = dev.res[idx]
        if r.parent is None:
            return
        self.release_child_resources(r)
        self.release(r)
        old_flags = r.flags & PCI_RES_TYPE_MASK
        self.info(dev, f"resource {idx} {pr(r)} released")
        size = r.size
        r.end = size - 1
        r.start = 0
        r.flags = 0
        t = PREFETCH if old_flags & PREFETCH else old_flags
        self.setup_bridge(bus, t)
        r.flags = old_flags

    def bus_release_bridge_resources(self, bus: KBus, typ: int, whole_subtree: bool) -> None:
        """pci_bus_release_bridge_resources()"""
        is_leaf = True
        for dev in bus.devices:
            b = dev.subordinate
            if b is None:
                continue
            is_leaf = False
            if not dev.is_pci_bridge_class:
                continue
            if whole_subtree:
                self.bus_release_bridge_resources(b, typ, True)
        if bus.is_root:
            return
        assert bus.self_dev is not None
        if not bus.self_dev.is_pci_bridge_class:
            return
        if whole_subtree or is_leaf:
            self.bridge_release_resources(bus, typ)

    # -- distribution of spare space (pci_bus_distribute_available_resources) --
    def _adjust_bridge_window(self, bridge: KDev, res: KRes, realloc: list["DevRes"] | None, new_size: int) -> None:
        if res.parent is not None or not new_size:
            return
        if new_size == res.size:
            return
        res.end = res.start + new_size - 1
        if realloc is not None:
            self._remove_from_list(realloc, res)

    def _remove_dev_resource(self, avail: list[int], dev: KDev, res: KRes) -> None:
        size = res.size
        if size <= 0:
            return
        align = self.resource_alignment(dev, res)
        align = (align_up(avail[0], align) - avail[0]) if align else 0
        avail[0] = min(avail[0] + align + size, avail[1] + 1)

    def _remove_dev_resources(self, dev: KDev, io: list[int], mmio: list[int], pref: list[int], pref_flags: int) -> None:
        for idx in sorted(dev.res):
            r = dev.res[idx]
            t = r.flags & TYPE_BITS
            if t == IO:
                self._remove_dev_resource(io, dev, r)
            elif t == MEM:
                if (r.flags & PREFETCH) and (r.flags & MEM_64) == (pref_flags & MEM_64):
                    self._remove_dev_resource(pref, dev, r)
                else:
                    self._remove_dev_resource(mmio, dev, r)

    def distribute(self, bus: KBus, realloc: list["DevRes"] | None, io: list[int], mmio: list[int], pref: list[int],
                   pref_flags: int) -> None:
        bridge = bus.self_dev
        assert bridge is not None
        io_res, mmio_res, pref_res = bridge.res[BRIDGE_IO], bridge.res[BRIDGE_MEM], bridge.res[BRIDGE_PREF]
        for avail, r in ((io, io_res), (mmio, mmio_res), (pref, pref_res)):
            a = self.resource_alignment(bridge, r)
            if r.parent is None and a:
                avail[0] = min(align_up(avail[0], a), avail[1] + 1)
        self._adjust_bridge_window(bridge, io_res, realloc, io[1] - io[0] + 1)
        self._adjust_bridge_window(bridge, mmio_res, realloc, mmio[1] - mmio[0] + 1)
        self._adjust_bridge_window(bridge, pref_res, realloc, pref[1] - pref[0] + 1)
        bridges = [d for d in bus.devices if d.is_bridge]
        hotplug = sum(1 for d in bridges if d.is_hotplug_bridge)
        normal = len(bridges) - hotplug
        if not bridges:
            return
        for dev in bus.devices:
            if not dev.is_virtfn:
                self._remove_dev_resources(dev, io, mmio, pref, pref_flags)
        n = hotplug or normal
        io_per = max(io[1] - io[0] + 1, 0) // n
        mmio_per = max(mmio[1] - mmio[0] + 1, 0) // n
        pref_per = max(pref[1] - pref[0] + 1, 0) // n
        for dev in bridges:
            b = dev.subordinate
            if b is None:
                continue
            if hotplug and not dev.is_hotplug_bridge:
                continue
            for avail, per, idx in ((io, io_per, BRIDGE_IO), (mmio, mmio_per, BRIDGE_MEM), (pref, pref_per, BRIDGE_PREF)):
                r = dev.res[idx]
                a = self.resource_alignment(dev, r)
                avail[1] = avail[0] + (align_down(per, a) if a else per) - 1
                avail[0] -= r.size
            self.distribute(b, realloc, list(io), list(mmio), list(pref), pref_flags)
            io[0] += io[1] + 1
            mmio[0] += mmio[1] + 1
            pref[0] += pref[1] + 1

    def bridge_distribute(self, bridge: KDev, realloc: list["DevRes"] | None) -> None:
        """pci_bridge_distribute_available_resources()"""
        if not bridge.is_hotplug_bridge or bridge.subordinate is None:
            return
        io_r, mm_r, pf_r = bridge.res[BRIDGE_IO], bridge.res[BRIDGE_MEM], bridge.res[BRIDGE_PREF]
        self.distribute(bridge.subordinate, realloc, [io_r.start, io_r.end], [mm_r.start, mm_r.end],
                        [pf_r.start, pf_r.end], pf_r.flags)


@dataclass
class DevRes:
    """struct pci_dev_resource"""

    res: KRes
    dev: KDev
    start: int = 0
    end: int = 0
    flags: int = 0
    add_size: int = 0
    min_align: int = 0


def reset_resource(res: KRes) -> None:
    res.start = 0
    res.end = 0
    res.flags = 0


def res_size_nonzero(res: KRes) -> bool:
    return res.end - res.start + 1 != 0


def calculate_iosize(size: int, min_size: int, size1: int, add_size: int, children_add: int, old: int,
                     align: int) -> int:
    if size < min_size:
        size = min_size
    if old == 1:
        old = 0
    size = size + size1
    size = max(size, add_size) + children_add
    return align_up(max(size, old), align)


def calculate_memsize(size: int, min_size: int, add_size: int, children_add: int, old: int, align: int) -> int:
    if size < min_size:
        size = min_size
    if old == 1:
        old = 0
    size = max(size, add_size) + children_add
    return align_up(max(size, old), align)


def calculate_mem_align(aligns: list[int], max_order: int) -> int:
    align = 0
    min_align = 0
    for order in range(max_order + 1):
        align1 = 1 << (order + 20)
        if not align:
            min_align = align1
        elif align_up(align + min_align, min_align) < align1:
            min_align = align1 >> 1
        align += aligns[order]
    return min_align



# =============================================================================================
# Building the simulated machine from a Topology
# =============================================================================================

_KIND_FLAGS = {
    BarKind.IO: IO,
    BarKind.MEM32: MEM,
    BarKind.MEM64: MEM | MEM_64,
    BarKind.PREF32: MEM | PREFETCH,
    BarKind.PREF64: MEM | PREFETCH | MEM_64,
}


@dataclass
class _Machine:
    sim: Sim
    buses: dict[int, KBus]
    devs: dict[Address, KDev]
    warnings: list[str]


def _contains(r: KRes, s: int, e: int) -> bool:
    return r.start <= s and e <= r.end


#: Parent of claimed resources that lie in no known window (unknown host windows, odd firmware):
#: they stay assigned, but nothing is ever allocated from it.
_OUTSIDE = KRes(0, (1 << 64) - 1, IO | MEM, "outside")


def _claim(sim: Sim, bus: KBus, res: KRes) -> bool:
    """Claim an assigned resource; one that fits no window still counts as assigned."""
    if _insert(sim, bus, res):
        return True
    res.parent = _OUTSIDE
    return False


def _insert(sim: Sim, bus: KBus, res: KRes) -> bool:
    """Claim an assigned resource: the deepest resource of the bus that contains it
    (pci_find_parent_resource, then insert_resource-like descent for VF BARs in an IOV resource)."""
    for r in bus.resources:
        if r is None or not (r.flags & (IO | MEM)):
            continue
        if r.parent is None and not bus.is_root:
            continue
        if (r.flags & IO) != (res.flags & IO):
            continue
        if not _contains(r, res.start, res.end):
            continue
        if (r.flags & PREFETCH) and not (res.flags & PREFETCH) and not res.idx in (BRIDGE_IO, BRIDGE_MEM, BRIDGE_PREF):
            return False
        node = r
        while True:
            inner = [c for c in node.children if _contains(c, res.start, res.end) and c is not res]
            if not inner:
                break
            node = inner[0]
        return sim.request(node, res) is None
    return False


def _build(topology: Topology, domain: int, sim: Sim) -> _Machine:
    warnings: list[str] = []
    buses: dict[int, KBus] = {}
    devs: dict[Address, KDev] = {}
    mem_starts: list[int] = []
    for hb in topology.host_bridges:
        if hb.domain != domain:
            continue
        lo, hi = hb.bus_range if hb.bus_range is not None else (hb.root_bus, 0xFF)
        bus = KBus(hb.root_bus, lo, hi, None, None, domain)
        if hb.windows is None:
            bus.windows_unknown = True
        else:
            for w in hb.windows:
                flags = (IO if w.kind is WindowKind.IO else MEM) | WINDOW
                if w.kind is WindowKind.PREF:
                    flags |= PREFETCH
                r = KRes(w.start, w.end, flags, hb.name)
                r.label = f"{hb.name} window {pr(r)}"
                bus.root_resources.append(r)
                if flags & MEM and w.start >= BIOS_END:
                    mem_starts.append(w.start)
        buses[hb.root_bus] = bus
    sim.min_mem = min(mem_starts) if mem_starts else 0

    fns = [f for f in topology if f.address.domain == domain]
    depth = {f.address: len(topology.path_to_root(f.address)) for f in fns}
    fns.sort(key=lambda f: (depth[f.address], bool(f.is_virtfn), f.address))

    def bus_of(fn: Function) -> KBus | None:
        if fn.parent is None:
            b = buses.get(fn.address.bus)
            if b is None:
                hb = topology.host_bridge(domain, fn.address.bus)
                if hb is not None:
                    b = buses.get(hb.root_bus)
            if b is None:
                b = KBus(fn.address.bus, fn.address.bus, 0xFF, None, None, domain, windows_unknown=True)
                buses[fn.address.bus] = b
            return b
        pd = devs.get(fn.parent)
        if pd is None or pd.subordinate is None:
            return None
        return pd.subordinate

    for fn in fns:
        bus = bus_of(fn)
        if bus is None:
            warnings.append(f"{fn.address}: its upstream bridge has no bus; left out of the simulation")
            continue
        br = fn.bridge
        is_bridge = bool(fn.is_bridge)
        slot = fn.slot
        dev = KDev(
            name=str(fn.address),
            bus=bus,
            devfn=fn.address.devfn,
            class_code=fn.class_code,
            driver=fn.driver if isinstance(fn.driver, str) else None,
            is_bridge=is_bridge,
            is_hotplug_bridge=bool(present(slot) and slot.hotplug),  # type: ignore[union-attr]
            is_virtfn=bool(fn.is_virtfn),
        )
        bus.devices.append(dev)
        devs[fn.address] = dev
        # bridge windows first: the BARs of devices below are claimed inside them
        if is_bridge:
            binfo = br if present(br) else None
            for idx, kind in ((BRIDGE_IO, WindowKind.IO), (BRIDGE_MEM, WindowKind.MEM), (BRIDGE_PREF, WindowKind.PREF)):
                w = binfo.window(kind) if binfo is not None else None  # type: ignore[union-attr]
                if present(w):
                    assert isinstance(w, Window)
                    flags = IO if kind is WindowKind.IO else MEM
                    if kind is WindowKind.PREF:
                        flags |= PREFETCH | (MEM_64 if w.is_64bit is not False else 0)
                        dev.pref_64_window = w.is_64bit is not False
                    r = KRes(w.start, w.end, flags, str(fn.address), dev, idx)
                    dev.res[idx] = r
                    if not _claim(sim, bus, r) and not (bus.is_root and bus.windows_unknown):
                        warnings.append(f"{fn.address}: {kind.value} window {pr(r)} lies in no window of its parent")
                else:
                    dev.res[idx] = KRes(0, 0, 0, str(fn.address), dev, idx)
                    if w is None and binfo is not None:
                        warnings.append(f"{fn.address}: {kind.value} window unknown to the source; taken as closed")
            if binfo is not None and binfo.secondary is not None and binfo.subordinate is not None and binfo.secondary > 0:  # type: ignore[union-attr]
                child = KBus(binfo.secondary, binfo.secondary, binfo.subordinate, dev, bus, domain)  # type: ignore[union-attr, arg-type]
                dev.subordinate = child
                bus.children.append(child)
                buses.setdefault(binfo.secondary, child)  # type: ignore[union-attr]
        for b in fn.bars or ():
            flags = _KIND_FLAGS[b.kind] | SIZEALIGN
            if b.assigned and b.size:
                r = KRes(b.start, b.start + b.size - 1, flags, str(fn.address), dev, b.index)  # type: ignore[operator]
                dev.res[b.index] = r
                if not _claim(sim, bus, r) and not fn.is_virtfn:
                    if bus.is_root and bus.windows_unknown:
                        continue
                    if b.start >= BIOS_END or b.kind is not BarKind.IO:  # type: ignore[operator]
                        warnings.append(f"{fn.address}: BAR {b.index} {pr(r)} lies in no window of its bus")
            elif b.size:
                dev.res[b.index] = KRes(0, b.size - 1, flags, str(fn.address), dev, b.index)
            elif b.unassigned and not fn.is_virtfn:
                warnings.append(f"{fn.address}: BAR {b.index} is unassigned and its size is unknown; "
                                "the kernel would try to assign it again")
        rom = fn.rom
        if present(rom):
            assert isinstance(rom, Bar)
            flags = MEM | PREFETCH | READONLY | SIZEALIGN
            if rom.assigned and rom.size:
                r = KRes(rom.start, rom.start + rom.size - 1, flags, str(fn.address), dev, ROM_RESOURCE)  # type: ignore[operator]
                dev.res[ROM_RESOURCE] = r
                _claim(sim, bus, r)
            elif rom.size:
                dev.res[ROM_RESOURCE] = KRes(0, rom.size - 1, flags, str(fn.address), dev, ROM_RESOURCE)
        for vb in fn.vf_bars or ():
            flags = _KIND_FLAGS[vb.kind] | SIZEALIGN
            idx = IOV_FIRST + vb.index
            total = vb.total_size
            if total:
                if vb.assigned:
                    r = KRes(vb.start, vb.start + total - 1, flags, str(fn.address), dev, idx)  # type: ignore[operator]
                    dev.res[idx] = r
                    _claim(sim, bus, r)
                else:
                    r = KRes(0, total - 1, flags, str(fn.address), dev, idx)
                    dev.res[idx] = r
                r.iov_align = vb.size or total
    # VFs on buses of their own ("virtual" buses) exist as buses for pci_find_bus()
    for fn in fns:
        if fn.is_virtfn and fn.address.bus not in buses:
            buses[fn.address.bus] = KBus(fn.address.bus, fn.address.bus, fn.address.bus, None, None, domain)
    return _Machine(sim, buses, devs, warnings)


# =============================================================================================
# Public API: BAR specs, kernel parameters, results
# =============================================================================================


@dataclass(frozen=True, slots=True)
class BarSpec:
    """One BAR of a device to hot-add: its kind and size, and optionally its BAR number."""

    kind: str  # "io", "mem32", "mem64", "pref32", "pref64" or "rom"
    size: int
    index: int | None = None

    def __str__(self) -> str:
        pre = f"{self.index}:" if self.index is not None else ""
        return f"{pre}{self.kind}:{_size_arg(self.size)}"


_BAR_KINDS = ("io", "mem32", "mem64", "pref32", "pref64", "rom")
_KIND_ALIASES = {"mem": "mem32", "pref": "pref64", "prefetchable": "pref64", "i/o": "io", "port": "io"}


def parse_bar_spec(text: str) -> BarSpec:
    """``"pref64:1G"`` or ``"2:pref64:1G"`` (BAR 2) -> BarSpec.

    Kinds: io, mem32, mem64, pref32, pref64, rom (the expansion ROM, a 32-bit
    memory BAR); ``mem`` means mem32 and ``pref`` pref64. Sizes: 256, 0x1000,
    16M, 4G, 2GiB (binary units); a BAR size must be a power of two, at least
    4 bytes for I/O and 16 bytes for memory (2 KiB for a ROM), I/O at most 256
    bytes, 32-bit memory at most 2 GiB. Raises ValueError with a clear message.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty BAR spec (expected KIND:SIZE or INDEX:KIND:SIZE, e.g. pref64:1G or 2:pref64:1G)")
    parts = [p.strip() for p in text.strip().split(":")]
    index: int | None = None
    if len(parts) == 3:
        if not parts[0].isdigit():
            raise ValueError(f"bad BAR spec {text!r}: the BAR number {parts[0]!r} is not 0-5")
        index = int(parts[0])
        parts = parts[1:]
    if len(parts) != 2:
        raise ValueError(f"bad BAR spec {text!r} (expected KIND:SIZE or INDEX:KIND:SIZE, e.g. pref64:1G or 2:pref64:1G)")
    kind = _KIND_ALIASES.get(parts[0].lower(), parts[0].lower())
    if kind not in _BAR_KINDS:
        raise ValueError(f"bad BAR spec {text!r}: unknown kind {parts[0]!r} (expected one of {', '.join(_BAR_KINDS)})")
    try:
        size = parse_size(parts[1])
    except ValueError as e:
        raise ValueError(f"bad BAR spec {text!r}: {e}") from None
    spec = BarSpec(kind, size, index)
    _check_spec(spec, text)
    return spec


def _check_spec(spec: BarSpec, text: str | None = None) -> None:
    what = repr(text) if text is not None else str(spec)
    if spec.kind not in _BAR_KINDS:
        raise ValueError(f"bad BAR {what}: unknown kind {spec.kind!r} (expected one of {', '.join(_BAR_KINDS)})")
    size = spec.size
    if size <= 0 or size & (size - 1):
        raise ValueError(f"bad BAR {what}: size {size:#x} is not a power of two (a BAR's size always is)")
    if spec.kind == "io" and not 4 <= size <= 256:
        raise ValueError(f"bad BAR {what}: an I/O BAR is 4 to 256 bytes")
    if spec.kind == "rom" and size < 2048:
        raise ValueError(f"bad BAR {what}: an expansion ROM is at least 2 KiB")
    if spec.kind != "io" and size < 16:
        raise ValueError(f"bad BAR {what}: a memory BAR is at least 16 bytes")
    if spec.kind in ("mem32", "pref32", "rom") and size > (1 << 31):
        raise ValueError(f"bad BAR {what}: a 32-bit BAR is at most 2 GiB")
    if spec.index is not None:
        if spec.kind == "rom":
            if spec.index != 6:
                raise ValueError(f"bad BAR {what}: the expansion ROM has no BAR number (use rom:SIZE)")
        elif not 0 <= spec.index <= 5:
            raise ValueError(f"bad BAR {what}: BAR number {spec.index} is not 0-5")
        elif spec.kind in ("mem64", "pref64") and spec.index == 5:
            raise ValueError(f"bad BAR {what}: a 64-bit BAR takes two registers, so it cannot be BAR 5")


BarLike = Union[BarSpec, str, tuple]


def normalize_bars(bars: Iterable[BarLike]) -> list[BarSpec]:
    """BAR specs as text, (kind, size), (index, kind, size) or BarSpec -> BarSpecs with BAR numbers.

    BARs without a number take the next free one in the order listed (a 64-bit
    BAR uses two registers); the ROM is resource 6.
    """
    specs: list[BarSpec] = []
    for b in bars:
        if isinstance(b, BarSpec):
            s = b
        elif isinstance(b, str):
            s = parse_bar_spec(b)
        elif isinstance(b, tuple) and len(b) in (2, 3):
            idx = b[0] if len(b) == 3 else None
            kind, size = (b[1], b[2]) if len(b) == 3 else (b[0], b[1])
            kind = kind.value if isinstance(kind, BarKind) else str(kind).lower()
            kind = _KIND_ALIASES.get(kind, kind)
            size = parse_size(size) if isinstance(size, str) else int(size)
            s = BarSpec(kind, size, idx)
            _check_spec(s)
        else:
            raise ValueError(f"bad BAR {b!r} (expected 'KIND:SIZE', (kind, size) or (index, kind, size))")
        specs.append(s)
    used: set[int] = set()
    out: list[BarSpec] = []
    for s in specs:
        if s.kind == "rom":
            if 6 in used:
                raise ValueError("two expansion ROMs given")
            used.add(6)
            out.append(BarSpec("rom", s.size, 6))
            continue
        if s.index is not None:
            regs = {s.index, s.index + 1} if s.kind in ("mem64", "pref64") else {s.index}
            if regs & used:
                raise ValueError(f"BAR {s.index} ({s}) overlaps another BAR's registers")
            used |= regs
            out.append(s)
    nxt = 0
    for s in specs:
        if s.kind == "rom" or s.index is not None:
            continue
        wide = s.kind in ("mem64", "pref64")
        while nxt in used or (wide and (nxt + 1 in used or nxt + 1 > 5)):
            nxt += 1
        if nxt > 5:
            raise ValueError(f"too many BARs: no BAR register left for {s}")
        out.append(BarSpec(s.kind, s.size, nxt))
        used |= {nxt, nxt + 1} if wide else {nxt}
        nxt += 2 if wide else 1
    order = {id(s): i for i, s in enumerate(out)}
    return sorted(out, key=lambda s: (s.index if s.index is not None else 99, order[id(s)]))


@dataclass(frozen=True, slots=True)
class KernelParams:
    """What of the kernel command line matters at a hot-add."""

    hpiosize: int = DEFAULT_HOTPLUG_IO_SIZE
    hpmmiosize: int = DEFAULT_HOTPLUG_MMIO_SIZE
    hpmmioprefsize: int = DEFAULT_HOTPLUG_MMIO_PREF_SIZE
    hpbussize: int = DEFAULT_HOTPLUG_BUS_SIZE
    #: "on", "off" or None (auto). Only boot-time assignment uses it; a hot-add never does.
    realloc: str | None = None
    skip_isa_align: bool = False
    assign_busses: bool = False
    noari: bool = False
    #: pci= options seen, in order.
    options: tuple[str, ...] = ()


def _memparse(text: str) -> int:
    """lib/cmdline.c memparse(): a C integer (0x hex, 0 octal) with K/M/G/T/P/E."""
    m = re.match(r"^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([kKmMgGtTpPeE]?)", text)
    if not m:
        return 0
    num = m.group(1)
    v = int(num, 16) if num[:2].lower() == "0x" else (int(num, 8) if num.startswith("0") and len(num) > 1 else int(num))
    return v * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}[m.group(2).lower()]


def parse_kernel_params(cmdline: str | None) -> KernelParams:
    """Read the ``pci=`` options (drivers/pci/pci.c pci_setup, arch/x86/pci/common.c pcibios_setup)."""
    kw: dict[str, object] = {}
    opts: list[str] = []
    for word in (cmdline or "").split():
        if not word.startswith("pci="):
            continue
        for opt in word[4:].split(","):
            if not opt:
                continue
            opts.append(opt)
            if opt == "skip_isa_align":
                kw["skip_isa_align"] = True
            elif opt == "assign-busses":
                kw["assign_busses"] = True
            elif opt.startswith("realloc="):
                v = opt[8:]
                if v.startswith("off"):
                    kw["realloc"] = "off"
                elif v.startswith("on"):
                    kw["realloc"] = "on"
            elif opt.startswith("realloc"):
                kw["realloc"] = "on"
            elif opt.startswith("noari"):
                kw["noari"] = True
            elif opt.startswith("hpiosize="):
                kw["hpiosize"] = _memparse(opt[9:])
            elif opt.startswith("hpmmiosize="):
                kw["hpmmiosize"] = _memparse(opt[11:])
            elif opt.startswith("hpmmioprefsize="):
                kw["hpmmioprefsize"] = _memparse(opt[15:])
            elif opt.startswith("hpmemsize="):
                kw["hpmmiosize"] = kw["hpmmioprefsize"] = _memparse(opt[10:])
            elif opt.startswith("hpbussize="):
                try:
                    v = int(opt[10:], 0)
                except ValueError:
                    v = 0
                kw["hpbussize"] = v if v <= 0xFF else DEFAULT_HOTPLUG_BUS_SIZE
    return KernelParams(options=tuple(opts), **kw)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class BarOutcome:
    """What the kernel does with one BAR of the hot-added device."""

    index: int
    kind: str
    size: int
    assigned: bool
    start: int | None
    end: int | None
    reason: str
    #: Which window it landed in ("0000:00:02.0 pref window"), when assigned.
    window: str | None = None


@dataclass(frozen=True, slots=True)
class NewBridge:
    """A hot-added bridge: the bus numbers it gets and its windows."""

    secondary: int | None
    subordinate: int | None
    #: The numbers are inside the port's range and usable.
    bus_assigned: bool
    #: kind ("io", "mem", "pref") -> (start, end), or None when it has none.
    windows: dict[str, tuple[int, int] | None]
    pref_64bit: bool | None
    reason: str


@dataclass(frozen=True, slots=True)
class FitResult:
    """The prediction for one hot-add."""

    fits: bool
    bars: tuple[BarOutcome, ...]
    remedies: tuple[str, ...]
    port: Address
    hotplug: str
    #: The kernel's own log lines this hot-add would print (setup-bus.c / setup-res.c / probe.c strings).
    messages: tuple[str, ...] = ()
    #: kind -> (start, end) | None, plus "pref_64bit".
    port_windows_before: dict = field(default_factory=dict)
    port_windows_after: dict = field(default_factory=dict)
    port_bus: tuple[int, int] | None = None
    new_bridge: NewBridge | None = None
    #: False when the answer depends on facts the source lacks (e.g. unknown host bridge windows).
    certain: bool = True
    warnings: tuple[str, ...] = ()
    #: Windows of other bridges the kernel would release (code reading: native failure of the port's own window).
    collateral: tuple[str, ...] = ()
    kernel_oops: str | None = None
    kernel_params: KernelParams = field(default_factory=KernelParams)


HOTPLUG_MODES = ("native", "acpi")


# =============================================================================================
# The hot-add
# =============================================================================================

_WIN_IDX = {"io": BRIDGE_IO, "mem": BRIDGE_MEM, "pref": BRIDGE_PREF}
_WIN_NAME = {BRIDGE_IO: "I/O", BRIDGE_MEM: "non-prefetchable memory", BRIDGE_PREF: "prefetchable memory"}
_WIN_SHORT = {BRIDGE_IO: "io", BRIDGE_MEM: "mem", BRIDGE_PREF: "pref"}
_WIN_FLAG = {BRIDGE_IO: IO, BRIDGE_MEM: MEM, BRIDGE_PREF: PREFETCH}


def _win_state(dev: KDev, live: bool = True) -> dict:
    out: dict = {}
    for name, idx in _WIN_IDX.items():
        r = dev.res.get(idx)
        ok = r is not None and bool(r.flags & _WIN_FLAG[idx]) and (r.parent is not None or not live)
        out[name] = (r.start, r.end) if ok else None  # type: ignore[union-attr]
    pref = dev.res.get(BRIDGE_PREF)
    out["pref_64bit"] = bool(pref.flags & MEM_64) if out["pref"] is not None and pref is not None else None
    return out


def _gaps(r: KRes) -> list[tuple[int, int]]:
    return free_gaps(r.start, r.end, [(c.start, c.end) for c in r.children])


def _largest_aligned(r: KRes, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    best = 0
    for s, e in _gaps(r):
        s, e = max(s, lo), min(e, hi)
        if s > e:
            continue
        size = 1 << ((e - s + 1).bit_length() - 1)
        while size:
            first = align_up(s, size)
            if first + size - 1 <= e:
                best = max(best, size)
                break
            size >>= 1
    return best


def _res_desc(r: KRes) -> str:
    if r.dev is not None and r.idx in _WIN_SHORT:
        return f"{r.dev.name} {_WIN_SHORT[r.idx]} window {pr(r)}"  # type: ignore[index]
    return r.label or f"{r.name} window {pr(r)}"


def _bus_name(n: int, m: int) -> str:
    return f"[bus {n:02x}]" if n == m else f"[bus {n:02x}-{m:02x}]"


def _max_busnr(bus: KBus) -> int:
    """pci_bus_max_busnr()"""
    mx = bus.busn_end
    for c in bus.children:
        mx = max(mx, _max_busnr(c))
    return mx


def _acpiphp_max_busnr(bus: KBus) -> int:
    mx = bus.busn_start
    for c in bus.children:
        mx = max(mx, _max_busnr(c))
    return mx


def fit_hotadd(
    topology: Topology,
    port: Address | str,
    bars: Iterable[BarLike],
    *,
    buses: int = 0,
    hotplug: str = "native",
    kernel_params: str | None = None,
    shpc: bool = False,
    remedies: bool = True,
) -> FitResult:
    """Predict what Linux 6.1 does when a device with ``bars`` is hot-added below ``port``.

    ``bars``: BAR specs (``"pref64:1G"``, ``"2:pref64:1G"``, ``("pref64", 1 << 30)``,
    ``(2, "pref64", 1 << 30)`` or :class:`BarSpec`); unnumbered BARs take BAR numbers
    in the order listed. ``buses``: bus numbers the device needs below itself
    (0 for an endpoint; 1 for a bridge such as a switch upstream port or a
    PCIe-to-PCI bridge, with I/O, memory and 64-bit prefetchable windows).
    ``hotplug``: "native" (pciehp) or "acpi" (acpiphp). ``kernel_params``: the
    kernel command line (only its ``pci=`` options matter); None means the
    command line the source recorded. ``shpc``: the hot-added bridge has an
    SHPC capability (a PCI-X/PCI bridge with standard hotplug), which matters
    when it gets no bus number (rule 6a.9). ``remedies``: look for remedies
    when it does not fit (simulates the alternatives).
    """
    if isinstance(port, str):
        port = Address.parse(port)
    if hotplug not in HOTPLUG_MODES:
        raise ValueError(f"hotplug mode {hotplug!r}: expected 'native' (pciehp) or 'acpi' (acpiphp)")
    if not isinstance(buses, int) or buses < 0 or buses > 255:
        raise ValueError(f"buses={buses!r}: expected 0 (an endpoint) to 255")
    specs = normalize_bars(bars)
    fn = topology.get(port)
    if fn is None:
        raise KeyError(f"no function {port} in this topology")
    if not fn.is_bridge:
        raise ValueError(f"{port} is not a bridge: devices are hot-added below a hotplug port")
    cmdline = kernel_params if kernel_params is not None else topology.source.kernel_cmdline
    kp = parse_kernel_params(cmdline)
    result = _simulate(topology, port, specs, buses, hotplug, kp, shpc)
    if remedies and not result.fits:
        result = replace(result, remedies=tuple(_remedies(topology, port, specs, buses, hotplug, kp, shpc, result)))
    return result


def _simulate(topology: Topology, port: Address, specs: list[BarSpec], buses: int, mode: str, kp: KernelParams,
              shpc: bool) -> FitResult:
    sim = Sim(skip_isa_align=kp.skip_isa_align)
    sim.hp_io, sim.hp_mmio, sim.hp_pref, sim.hp_bus = kp.hpiosize, kp.hpmmiosize, kp.hpmmioprefsize, kp.hpbussize
    m = _build(topology, port.domain, sim)
    sim.log.clear()
    pdev = m.devs.get(port)
    warnings: list[str] = []
    relevant = set(topology.path_to_root(port)) | set(topology.children(port))
    for w in m.warnings:
        if any(w.startswith(str(a)) for a in relevant):
            warnings.append(w)
    assert pdev is not None
    before = _win_state(pdev)
    pbus = pdev.subordinate
    if pbus is None:
        reason = f"{port} has no secondary bus (bus numbers unknown or unassigned): nothing can be hot-added below it"
        return FitResult(False, tuple(BarOutcome(s.index, s.kind, s.size, False, None, None, reason) for s in specs),  # type: ignore[arg-type]
                         (), port, mode, (), before, before, None, None, True, tuple(warnings), (), None, kp)
    port_bus = (pbus.busn_start, pbus.busn_end)
    pslot = topology.functions[port].slot
    if not pdev.is_hotplug_bridge and (pslot is None or (present(pslot) and pslot.hotplug is None)):  # type: ignore[union-attr]
        pdev.is_hotplug_bridge = True
        warnings.append(f"the source does not say whether {port}'s slot is hotplug capable; assumed it is "
                        "(is_hotplug_bridge: the hotplug reserves apply to its windows)")
    if not pdev.is_hotplug_bridge:
        if mode == "native":
            warnings.append(f"{port} has no hotplug-capable slot (SltCap HotPlug-): pciehp does not manage it, "
                            "so a native hot-add happens only by a manual rescan; predicted as if it did")
        else:
            warnings.append(f"{port} has no hotplug-capable slot (SltCap HotPlug-): acpiphp manages it only if the "
                            "firmware describes the slot in ACPI")
    if any(d.devfn == 0 for d in pbus.devices):
        occupant = next(d for d in pbus.devices if d.devfn == 0)
        reason = f"slot occupied: {occupant.name} is already below {port}"
        msgs = []
        if mode == "native":
            msgs.append(f"pcieport {port}: Device {occupant.name} already exists at {port.domain:04x}:{pbus.number:02x}:00, "
                        "skipping hot-add")
        return FitResult(False, tuple(BarOutcome(s.index, s.kind, s.size, False, None, None, reason) for s in specs),  # type: ignore[arg-type]
                         (), port, mode, tuple(msgs), before, before, port_bus, None, True, tuple(warnings), (), None, kp)

    existing = {(d.name, idx): (r.start, r.end, r.parent is not None)
                for d in m.devs.values() for idx, r in d.res.items() if r.flags and r.parent is not None}

    # --- the new device (pci_scan_slot) ---
    new = KDev(name=f"{port.domain:04x}:{pbus.number:02x}:00.0", bus=pbus, devfn=0,
               class_code=0x060400 if buses else None, is_bridge=buses > 0, enabled=False, new=True)
    for s in specs:
        idx = s.index if s.index is not None else 0
        if s.kind == "rom":
            flags = MEM | PREFETCH | READONLY | SIZEALIGN
        else:
            flags = _KIND_FLAGS[BarKind(s.kind)] | SIZEALIGN
        r = KRes(0, s.size - 1, flags, new.name, new, idx)
        new.res[idx] = r
        sim.info(new, f"{res_name(idx)} {pr(r)}")
    if buses:
        for idx in (BRIDGE_IO, BRIDGE_MEM, BRIDGE_PREF):
            new.res[idx] = KRes(0, 0, 0, new.name, new, idx)
    pbus.devices.append(new)

    # --- bus numbers for a bridge (rule 7) ---
    nb_sec: int | None = None
    nb_sub: int | None = None
    bus_ok = True
    bus_reason = ""
    oops: str | None = None
    child: KBus | None = None
    if buses:
        if mode == "acpi":
            sim.info(new, "bridge configuration invalid ([bus 00-00]), reconfiguring")
        if mode == "native":
            busnr = next((b for b in range(pbus.busn_start, pbus.busn_end + 1) if b not in m.buses), None)
            if busnr is None:
                sim.info(new, "No bus number available for hot-added bridge")
                bus_ok = False
                nb_sec = nb_sub = 0
                bus_reason = (f"no free bus number in the port's range {_bus_name(*port_bus)}: the bridge stays "
                              "unconfigured (bus 00-00, no windows) and nothing behind it is scanned")
                if shpc:
                    oops = ("BUG: kernel NULL pointer dereference, address: 00000000000000da; RIP: shpc_init.cold "
                            "(shpchp probes the bridge although it has no secondary bus; the irq/NN-pciehp thread dies "
                            "holding the bridge's device lock and pci_lock_rescan_remove(): later hotplug and rescan block)")
            else:
                nb_sec = busnr
                sim.info(new, "bridge configuration invalid ([bus 00-00]), reconfiguring")
        else:
            nb_sec = _acpiphp_max_busnr(pbus) + 1
        if nb_sec:
            nb_sub = nb_sec + buses - 1
            if nb_sub > 0xFF:
                nb_sub = 0xFF
            clash = [b for b in range(nb_sec, nb_sub + 1) if b in m.buses]
            child = KBus(nb_sec, nb_sec, nb_sub, new, pbus, port.domain)
            new.subordinate = child
            pbus.children.append(child)
            if mode == "native":
                new.res[BRIDGE_IO] = KRes(0, 0xFFF, IO, new.name, new, BRIDGE_IO)
                new.res[BRIDGE_MEM] = KRes(0, 0xFFFFF, MEM, new.name, new, BRIDGE_MEM)
                new.res[BRIDGE_PREF] = KRes(0, 0xFFFFF, MEM | PREFETCH | MEM_64, new.name, new, BRIDGE_PREF)
            sim.info(new, f"PCI bridge to {_bus_name(nb_sec, pbus.busn_end)}")
            if clash:
                bus_ok = False
                bus_reason = (f"bus {clash[0]:02x} already exists elsewhere in domain {port.domain:04x}: "
                              "pci_find_bus() makes the kernel reuse it, so the bridge's buses are unusable")
            if nb_sub > pbus.busn_end or nb_sec > pbus.busn_end:
                bus_ok = False
                sim.info(new, f"devices behind bridge are unusable because {_bus_name(nb_sec, nb_sub)} cannot be "
                              "assigned for them")
                bus_reason = (f"the bridge gets {_bus_name(nb_sec, nb_sub)} "
                              + ("(acpiphp numbers it max+1 without checking the port's range) " if mode == "acpi" else "")
                              + f"outside the port's {_bus_name(*port_bus)}: devices behind it are unusable")
            if bus_ok:
                bus_reason = f"bus numbers {_bus_name(nb_sec, nb_sub)} inside the port's {_bus_name(*port_bus)}"

    # --- resources ---
    released: list[str] = []
    tried = 1
    if mode == "acpi":
        add: list[DevRes] = []
        if child is not None:
            new.is_hotplug_bridge = True  # check_hotplug_bridge(): a function of the ACPI slot
            sim.bus_size_bridges(child, add)
        sim.bus_assign_resources(pbus, add, None)
    else:
        while True:
            add = []
            sim.bus_size_bridges(pbus, add)
            sim.bridge_distribute(pdev, add)
            fail: list[DevRes] = []
            sim.bridge_assign_resources(pdev, add, fail)
            if not fail or tried >= 2:
                break
            tried += 1
            sim.log.append(f"PCI: No. {tried} try to assign unassigned res")
            mark = len(sim.log)
            for f in fail:
                sim.bus_release_bridge_resources(f.dev.bus, f.flags & PCI_RES_TYPE_MASK, True)
            for line in sim.log[mark:]:
                if " released" in line:
                    released.append(line)
            for f in fail:
                f.res.start, f.res.end, f.res.flags = f.start, f.end, f.flags
                if f.dev.is_bridge and f.res.idx in (BRIDGE_IO, BRIDGE_MEM, BRIDGE_PREF):
                    f.res.flags = 0

    after = _win_state(pdev)
    certain = True
    if sim.unknown_root_used:
        certain = False
        warnings.append("the host bridge windows are unknown to this source (no /proc/iomem read as root): "
                        "whether the parent has room for a re-sized window cannot be predicted")

    # collateral: windows of bridges other than the port (and the new bridge) that were released
    collateral = tuple(line for line in released if not line.split(": ", 1)[0].endswith(str(port)))

    outcomes: list[BarOutcome] = []
    for s in specs:
        r = new.res[s.index]  # type: ignore[index]
        ok = r.parent is not None and bool(r.flags)
        window = _res_desc(r.parent) if ok and r.parent is not None else None
        reason = _bar_reason(sim, s, r, ok, pdev, before, after, mode, tried, certain)
        outcomes.append(BarOutcome(s.index, s.kind, s.size, ok, r.start if ok else None, r.end if ok else None,  # type: ignore[arg-type]
                                   reason, window))
    nb: NewBridge | None = None
    if buses:
        wins = _win_state(new) if (child is not None or mode == "native") else {"io": None, "mem": None, "pref": None,
                                                                               "pref_64bit": None}
        nb = NewBridge(nb_sec, nb_sub, bus_ok, {k: wins[k] for k in ("io", "mem", "pref")}, wins["pref_64bit"],
                       bus_reason)
    fits = all(o.assigned for o in outcomes) and (nb is None or nb.bus_assigned) and oops is None and certain
    for k in ("io", "mem", "pref"):
        if before[k] is not None and after[k] is None:
            lead = f"{port} loses" if certain else f"if the parent has no room, {port} loses"
            warnings.append(f"{lead} its {k} window {before[k][0]:#x}-{before[k][1]:#x}: a failed native re-size "
                            "leaves the port without it (until the device is removed and the port re-sized, or reboot)")
    moved = []
    for d in m.devs.values():
        if d is pdev:
            continue
        for idx, r in d.res.items():
            was = existing.get((d.name, idx))
            if was is None:
                continue
            now = (r.start, r.end, r.parent is not None and bool(r.flags))
            if now != was:
                what = f"{d.name} {res_name(idx)}" + (f" {_WIN_SHORT[idx]}" if idx in _WIN_SHORT else "")
                moved.append(f"{what} [{was[0]:#x}-{was[1]:#x}] -> "
                             + (f"[{now[0]:#x}-{now[1]:#x}]" if now[2] else "unassigned"))
    if moved:
        warnings.append("resources of devices already present move or are lost (the kernel does not check whether "
                        "they are in use): " + "; ".join(moved))
    if collateral:
        warnings.append("the kernel also releases windows of other bridges (the port's own window failed in the first "
                        "try, so the release starts at its parent bus): " + "; ".join(collateral))
    return FitResult(fits, tuple(outcomes), (), port, mode, tuple(sim.log), before, after, port_bus, nb, certain,
                     tuple(warnings), collateral, oops, kp)


def _bar_reason(sim: Sim, s: BarSpec, r: KRes, ok: bool, pdev: KDev, before: dict, after: dict, mode: str,
                tried: int, certain: bool) -> str:
    name = res_name(s.index)  # type: ignore[arg-type]
    if ok:
        parent = r.parent
        assert parent is not None
        where = _res_desc(parent)
        if parent.dev is pdev and parent.idx in _WIN_SHORT:
            k = _WIN_SHORT[parent.idx]  # type: ignore[index]
            b = before.get(k)
            if b is None:
                return f"{name} assigned in the {k} window the kernel opened on the port ({where})"
            if b != (parent.start, parent.end):
                return (f"{name} assigned after native hotplug released the port's {k} window "
                        f"[{b[0]:#x}-{b[1]:#x}] and re-sized it ({where})")
            return f"{name} assigned in the port's existing {k} window ({where})"
        return f"{name} assigned in {where}"
    failed = [ln.split(": ", 1)[1] for ln in sim.log if ln.startswith(f"pci {r.name}: {name} ") and "can't assign" in ln]
    head = failed[-1] if failed else f"{name} not assigned"
    if not certain:
        return head + " (the host bridge windows are unknown, so a re-sized port window cannot be placed reliably)"
    want = "a naturally aligned free block of " + fmt_size(s.size)
    if mode == "acpi":
        parts = []
        for k, idx in (("pref", BRIDGE_PREF), ("mem", BRIDGE_MEM), ("io", BRIDGE_IO)):
            if s.kind == "io" and k != "io":
                continue
            if s.kind != "io" and k == "io":
                continue
            if s.kind in ("mem32", "mem64") and k == "pref":
                continue
            w = pdev.res.get(idx)
            if before.get(k) is None or w is None or w.parent is None:
                parts.append(f"no {k} window")
            else:
                parts.append(f"{k} window {fmt_size(w.size)}, largest aligned free block {fmt_size(_largest_aligned(w))}")
        return (f"{head}: ACPI hotplug (acpiphp) never re-sizes, moves or opens the port's windows and the port has "
                f"no room for {want} (" + "; ".join(parts) + ")")
    lost = [k for k in ("io", "mem", "pref") if before.get(k) is not None and after.get(k) is None]
    if lost:
        return (f"{head}: native hotplug released the port's {'/'.join(lost)} window and could not place a window big "
                f"enough in the parent's free space; the port is left without it")
    if tried < 2:
        return f"{head} (in the port's existing windows; a retry was not needed for the other BARs)"
    return f"{head}: even after native hotplug re-sized the port's window there was no room for {want}"


# =============================================================================================
# Remedies
# =============================================================================================

_QEMU_ROOT_PORTS = {(0x1B36, 0x000C), (0x1B36, 0x000D)}  # pcie-root-port, cxl... (gen root port / pxb root)


def _need_window(specs: list[BarSpec], kinds: tuple[str, ...]) -> int:
    """The window pbus_size_mem() would compute for these BARs alone (size0)."""
    sel = [s for s in specs if s.kind in kinds]
    if not sel:
        return 0
    aligns = [0] * 24
    max_order = 0
    size = 0
    for s in sel:
        order = max(ffs0(s.size) - 20, 0)
        size += s.size
        aligns[min(order, 23)] += s.size
        # aligns[] has 24 orders (1 MiB .. 8 TiB), as in the kernel; pbus_size_mem disables
        # a BAR aligned beyond them ("bad alignment"), so 16 TiB and up is capped here.
        max_order = max(max_order, min(order, 23))
    min_align = max(calculate_mem_align(aligns, max_order), 0x100000)
    return align_up(size, min_align)


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


_size_arg = format_size


def _remedies(topology: Topology, port: Address, specs: list[BarSpec], buses: int, mode: str, kp: KernelParams,
              shpc: bool, result: FitResult) -> list[str]:
    out: list[str] = []
    failed = [o for o in result.bars if not o.assigned]
    failed_specs = [s for s in specs if any(o.index == s.index for o in failed)]
    bus_problem = result.new_bridge is not None and not result.new_bridge.bus_assigned

    # 1. another hotplug port with room, same mode and kernel
    others: list[str] = []
    for fn in topology:
        if fn.address == port or not fn.is_bridge or not present(fn.slot) or not fn.slot.hotplug:  # type: ignore[union-attr]
            continue
        if any(topology.functions[a].address.devfn == 0 for a in topology.children(fn.address)):
            continue
        try:
            alt = _simulate(topology, fn.address, specs, buses, mode, kp, shpc)
        except (KeyError, ValueError, AssertionError):
            continue
        if alt.fits:
            where = ", ".join(f"{res_name(o.index)} at {o.start:#x}" for o in alt.bars if o.start is not None)
            slot = fn.slot.number if present(fn.slot) else None  # type: ignore[union-attr]
            others.append(f"hot-add it into {fn.address}" + (f" (slot {slot})" if slot is not None else "")
                          + f" instead: it fits there with {mode} hotplug" + (f" ({where})" if where else ""))
    out += others[:3]

    # 2. boot parameters (honest about what they can change)
    pfn = topology.get(port)
    if failed_specs and mode == "acpi":
        hints = []
        for kinds, param, win, key in ((("pref64", "pref32"), "hpmmioprefsize", "prefetchable", "pref"),
                                       (("mem32", "mem64", "rom"), "hpmmiosize", "non-prefetchable", "mem"),
                                       (("io",), "hpiosize", "I/O", "io")):
            need = _need_window(failed_specs, kinds) if kinds[0] != "io" else (4096 if any(s.kind == "io" for s in failed_specs) else 0)
            if need:
                hints.append((param, _pow2(need), win, key))
        for param, val, win, key in hints:
            current = {"hpmmioprefsize": kp.hpmmioprefsize, "hpmmiosize": kp.hpmmiosize, "hpiosize": kp.hpiosize}[param]
            if result.port_windows_before.get(key) is None:
                out.append(f"boot with pci={param}={_size_arg(val)}: {port} has no {win} window, so the firmware left "
                           f"it unprogrammed and the kernel sizes it at boot from this reserve (now {_size_arg(current)})"
                           + ("" if key == "io" else "; such a window is only 1 MiB aligned, so a BAR that needs "
                              "natural alignment may need a bigger reserve (the boot-time layout decides)"))
            else:
                out.append(f"boot with pci={param}={_size_arg(val)}: this helps only if the firmware leaves {port}'s "
                           f"{win} window unprogrammed at boot (e.g. QEMU {('pref64' if key == 'pref' else key)}-reserve=0), "
                           "so that the kernel sizes it; a window the firmware programmed keeps its size, whatever "
                           "the parameter says")
    if bus_problem:
        out.append(f"boot with pci=assign-busses,hpbussize={max(buses, 1) + 1}: the kernel then numbers all buses itself "
                   f"and leaves hpbussize-1 spare bus numbers below each hotplug port (x86 only)")

    # 3. a firmware reservation on the port
    is_qemu_port = pfn is not None and (pfn.vendor_id, pfn.device_id) in _QEMU_ROOT_PORTS
    res_hints = []
    if failed_specs:
        pref_need = _need_window(failed_specs, ("pref64",))
        pref32_need = _need_window(failed_specs, ("pref32",))
        mem_need = _need_window(failed_specs, ("mem32", "mem64", "rom"))
        if pref_need:
            res_hints.append(("pref64-reserve", _pow2(pref_need)))
        if pref32_need:
            res_hints.append(("pref32-reserve", _pow2(pref32_need)))
        if mem_need:
            res_hints.append(("mem-reserve", _pow2(mem_need)))
        if any(s.kind == "io" for s in failed_specs):
            res_hints.append(("io-reserve", 4096))
    if bus_problem:
        res_hints.append(("bus-reserve", max(buses, 1) + 1))
    if res_hints:
        props = ",".join(f"{k}={_size_arg(v) if 'bus' not in k else v}" for k, v in res_hints)
        if is_qemu_port:
            out.append(f"reserve it in firmware: QEMU -device pcie-root-port,...,{props} for {port} (SeaBIOS/OVMF "
                       "honour the resource-reserve capability; Linux itself never reads it)")
        else:
            out.append(f"have the firmware reserve more for {port} ({props.replace('-reserve', '')}): a BIOS setting "
                       "for PCIe hotplug resource padding, or a port your firmware pads more")

    # 4. native hotplug instead of ACPI
    if mode == "acpi" and (failed_specs or bus_problem):
        try:
            nat = _simulate(topology, port, specs, buses, "native", kp, shpc)
        except (KeyError, ValueError, AssertionError):
            nat = None
        if nat is not None and nat.fits:
            out.append("use native PCIe hotplug (pciehp) instead of ACPI hotplug: it re-sizes the port's window from "
                       "the parent's free space and the device fits"
                       + (" (QEMU q35: -global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off)" if is_qemu_port else
                          " (the firmware must grant the OS native hotplug control via _OSC)"))
        elif nat is not None and nat.kernel_oops is None and not bus_problem:
            out.append("native PCIe hotplug would not help: the parent has no room for a window that big either "
                       "(and a failed native re-size leaves the port without that window)")
    if result.kernel_oops:
        out.append("do not hot-add an SHPC-capable bridge into a port with no spare bus number under native hotplug: "
                   "Linux 6.1 (and 6.12) oops in shpc_init; give the port spare bus numbers first")
    if mode == "native" and failed_specs and not others:
        out.append("free address space above the port (remove or move devices below the same parent) or cold-plug "
                   "the device so firmware sizes the windows at boot")
    return out


# =============================================================================================
# SR-IOV
# =============================================================================================


@dataclass(frozen=True, slots=True)
class VfBarPlacement:
    index: int
    kind: str
    size: int | None
    start: int | None
    end: int | None


@dataclass(frozen=True, slots=True)
class VfPlan:
    vf: int
    address: Address | None
    bus_ok: bool
    bars: tuple[VfBarPlacement, ...]


@dataclass(frozen=True, slots=True)
class SriovFitResult:
    """Would ``echo N > sriov_numvfs`` on this PF work (drivers/pci/iov.c)?"""

    fits: bool
    pf: Address
    num_vfs: int
    total_vfs: int | None
    #: The error the write would fail with ("ERANGE", "ENOMEM", "ENOENT", "EBUSY", "EIO"), else None.
    errno: str | None
    #: The kernel's own log lines for it.
    messages: tuple[str, ...]
    #: Per VF BAR: the IOV resource and whether it is assigned (the ``bars`` of the JSON).
    bars: tuple[BarOutcome, ...]
    vfs: tuple[VfPlan, ...]
    remedies: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    certain: bool = True
    #: Bus range the VFs must fit in (the PF's bus: its upstream bridge's [secondary-subordinate]).
    bus_range: tuple[int, int] | None = None
    currently_enabled: int | None = None
    #: What the write to sriov_numvfs returns, in words, when it fails.
    error: str | None = None


def fit_sriov(topology: Topology, pf: Address | str, num_vfs: int) -> SriovFitResult:
    """Predict ``echo num_vfs > /sys/bus/pci/devices/PF/sriov_numvfs`` (Linux 6.1 iov.c)."""
    if isinstance(pf, str):
        pf = Address.parse(pf)
    if not isinstance(num_vfs, int) or num_vfs < 0 or num_vfs > 0xFFFF:
        raise ValueError(f"num_vfs={num_vfs!r}: expected 0 to 65535")
    fn = topology.get(pf)
    if fn is None:
        raise KeyError(f"no function {pf} in this topology")
    cap = fn.caps.sriov
    if cap is ABSENT:
        raise ValueError(f"{pf} has no SR-IOV capability")
    if cap is None:
        raise ValueError(f"{pf}: this source does not say whether it has SR-IOV")
    assert isinstance(cap, SriovCap)
    notes: list[str] = []
    msgs: list[str] = []
    remedies: list[str] = []
    certain = True
    total = cap.driver_total_vfs if cap.driver_total_vfs is not None else cap.total_vfs
    current = cap.num_vfs
    drv = fn.driver if isinstance(fn.driver, str) else None
    prefix = f"{drv or 'pci'} {pf}"
    errno: str | None = None

    # the bus range VFs must stay in: dev->bus->busn_res
    if fn.parent is not None:
        up = topology.get(fn.parent)
        br = up.bridge if up is not None else None
        rng = (br.secondary, br.subordinate) if present(br) and br.secondary is not None and br.subordinate is not None else None  # type: ignore[union-attr]
    else:
        hb = topology.host_bridge(pf.domain, pf.bus)
        rng = (pf.bus, hb.bus_range[1]) if hb is not None and hb.bus_range is not None else None

    # VF BARs / IOV resources
    iov = [vb for vb in (fn.vf_bars or ()) if vb.total_size or vb.size]
    bar_out: list[BarOutcome] = []
    for vb in iov:
        per = vb.size
        ok = vb.assigned
        total_size = vb.total_size
        start = vb.start if ok else None
        end = (vb.start + total_size - 1) if ok and total_size else None  # type: ignore[operator]
        reason = (f"VF BAR {vb.index}: IOV resource {fmt_size(total_size)} ({fmt_size(per)} per VF) assigned"
                  if ok else f"VF BAR {vb.index}: IOV resource not assigned at boot (no room in the upstream window)")
        bar_out.append(BarOutcome(vb.index, vb.kind.value, per or 0, ok, start, end, reason))

    error: str | None = None
    if total is not None and num_vfs > total:
        # sriov_numvfs_store() returns before anything else is checked or logged
        error = (f"echo {num_vfs} > sriov_numvfs fails with -ERANGE (Numerical result out of range): "
                 f"{num_vfs} > sriov_totalvfs = {total}")
        return SriovFitResult(False, pf, num_vfs, total, "ERANGE", (), tuple(bar_out), (),
                              (f"ask for at most {total} VFs (sriov_totalvfs)",), tuple(notes), True, rng, current,
                              error)
    if total is None:
        certain = False
        notes.append("TotalVFs unknown to this source")
    if current is not None and num_vfs == current:
        notes.append(f"{current} VFs are already enabled: writing the same number is a no-op")
    if num_vfs == 0:
        notes.append("0 disables SR-IOV")
    if errno is None and num_vfs and current != num_vfs:
        if fn.driver is ABSENT:
            errno = "ENOENT"
            error = f"echo {num_vfs} > sriov_numvfs fails with -ENOENT: no PF driver bound"
            msgs.append(f"{prefix}: no driver bound to device; cannot configure SR-IOV")
            remedies.append(f"bind a PF driver with sriov_configure to {pf} (its own driver, or pci-pf-stub / vfio-pci)")
        elif drv is None:
            notes.append("whether a PF driver is bound is unknown: sriov_numvfs needs one with .sriov_configure")
    if current and num_vfs and current != num_vfs:
        msgs.append(f"{prefix}: {current} VFs already enabled. Disable before enabling {num_vfs} VFs")
        notes.append(f"-EBUSY unless 0 is written first: {current} VFs are enabled now; the rest of this answer is for "
                     "writing 0 and then the new number")
        remedies.append("echo 0 > sriov_numvfs first, then the new number")

    # sriov_enable() checks, in order
    if num_vfs and errno in (None,):
        if cap.initial_vfs is not None and cap.total_vfs is not None and num_vfs > cap.initial_vfs:
            notes.append(f"InitialVFs is {cap.initial_vfs}: without VF Migration support the kernel refuses more "
                         "than InitialVFs (-EINVAL); whether the PF has it is not known here")
        unassigned = [b for b in bar_out if not b.assigned]
        if unassigned:
            errno = "ENOMEM"
            error = f"echo {num_vfs} > sriov_numvfs fails with -ENOMEM"
            msgs.append(f"{prefix}: not enough MMIO resources for SR-IOV")
            remedies.append("make room for the IOV BARs at boot: enable SR-IOV / large BAR support in the firmware, or "
                            "a bigger window on the upstream port; pci=realloc is already automatic when an IOV BAR "
                            "is unassigned (CONFIG_PCI_REALLOC_ENABLE_AUTO) unless the firmware asks to preserve "
                            "its setup")
    vfs: list[VfPlan] = []
    off, stride = cap.vf_offset, cap.vf_stride
    if num_vfs and (off is None or stride is None):
        certain = False
        notes.append("VF offset/stride unknown: VF bus numbers cannot be checked")
    elif num_vfs:
        if not off or (num_vfs > 1 and not stride):
            if errno is None:
                errno = "EIO"
                error = "SR-IOV was not set up at boot (-EIO): First VF Offset 0, or VF Stride 0 with more than one VF"
            notes.append("First VF Offset 0, or VF Stride 0 with more than one VF: SR-IOV is not set up (-EIO)")
        for i in range(num_vfs):
            rid = pf.devfn + off + stride * i  # type: ignore[operator]
            bus = pf.bus + (rid >> 8)
            ok = bus <= 0xFF and (rng is None or bus <= rng[1])
            addr = Address.from_rid(pf.domain, bus, rid & 0xFF) if bus <= 0xFF else None
            places = []
            for vb in iov:
                if vb.assigned and vb.size:
                    s = vb.start + i * vb.size  # type: ignore[operator]
                    places.append(VfBarPlacement(vb.index, vb.kind.value, vb.size, s, s + vb.size - 1))
                else:
                    places.append(VfBarPlacement(vb.index, vb.kind.value, vb.size, None, None))
            vfs.append(VfPlan(i, addr, ok, tuple(places)))
            if addr is not None and addr in topology.functions and addr not in fn.virtfns:
                notes.append(f"VF {i} would be {addr}, where another function already is")
        last_bus = pf.bus + ((pf.devfn + off + stride * (num_vfs - 1)) >> 8)  # type: ignore[operator]
        if rng is not None and last_bus > rng[1] and errno is None:
            errno = "ENOMEM"
            error = f"echo {num_vfs} > sriov_numvfs fails with -ENOMEM"
            msgs.append(f"{prefix}: can't enable {num_vfs} VFs (bus {last_bus:02x} out of range of "
                        f"{_bus_name(rng[0], rng[1])})")
            remedies.append("more bus numbers below the upstream bridge (firmware bus reservation, e.g. QEMU "
                            "bus-reserve=N; or pci=assign-busses so the kernel reserves VF buses), or ARI so VFs "
                            "pack on the PF's bus")
        elif rng is None:
            certain = False
            notes.append("the PF's bus range is unknown: VF bus numbers cannot be checked")
        if cap.ari_hierarchy:
            notes.append("ARI Capable Hierarchy is set: offset and stride are the ARI values")
    if current and current == num_vfs:
        vfs_present = tuple(fn.virtfns)
        if vfs_present:
            notes.append("VFs now: " + ", ".join(str(a) for a in vfs_present))
    fits = errno is None and certain
    return SriovFitResult(fits, pf, num_vfs, total, errno, tuple(msgs), tuple(bar_out), tuple(vfs), tuple(remedies),
                          tuple(notes), certain, rng, current, error)
