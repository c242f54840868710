"""The resource simulator: a literal model of the kernel's resource code.

Mirrors kernel/resource.c (``__find_resource``, ``allocate_resource``),
drivers/pci/bus.c (``pci_bus_alloc_resource``), setup-res.c
(``pci_assign_resource``) and setup-bus.c (sizing, sorted assignment, release,
distribution of spare space) function by function, read from Debian's
linux-source-6.1 (6.1.192) and linux-source-6.12 (6.12.117); where they differ a flag on
``Sim`` selects the release's code (set from :mod:`.versions`). Everything here works on ``KRes``/``KDev``/``KBus``
(struct resource, pci_dev, pci_bus); :mod:`.machine` builds them from a Topology.

Layer rule: stdlib only.
"""

from __future__ import annotations

from bisect import bisect_right

from dataclasses import dataclass, field


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


def _start(r: "KRes") -> int:
    return r.start


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
        #: 6.12 pbus_size_mem(): retry with relaxed alignment when the upstream window is too
        #: small (versions.KernelRules.relaxed_alignment_retry)
        self.relaxed_alignment_retry = False
        #: arch/x86/pci/i386.c pcibios_save_fw_addr(): the firmware's address of a BAR or IOV BAR
        #: that could not be claimed at boot (id(KRes) -> address); emptied after the boot's
        #: assignment (pcibios_fw_addr_list_del), so a hot-added device has none
        self.fw_addr: dict[int, int] = {}
        #: ioport_resource / iomem_resource: what a root-bus device's firmware address is
        #: requested from when no host bridge window holds it (built on first use)
        self._spaces: dict[int, KRes] = {}

    def info(self, dev: KDev | None, msg: str) -> None:
        self.log.append(f"{dev.prefix}: {msg}" if dev is not None else msg)

    # -- resource tree --
    @staticmethod
    def request(root: KRes, new: KRes) -> KRes | None:
        """__request_resource(): insert ``new`` as a child of ``root``; return a conflict."""
        if new.end < new.start or new.start < root.start or new.end > root.end:
            return root
        # Children never overlap and are kept in address order, so the first one in the
        # list that conflicts is the one just below ``new`` or the one just above it.
        kids = root.children
        i = bisect_right(kids, new.start, key=_start)
        if i and kids[i - 1].end >= new.start:
            return kids[i - 1]
        if i < len(kids) and kids[i].start <= new.end:
            return kids[i]
        kids.insert(i, new)
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
            ok = self.revert_fw_address(dev, res, size)
        if not ok:
            self.info(dev, f"{name} {pr(res)}: failed to assign")
            return False
        res.flags &= ~UNSET
        res.flags &= ~STARTALIGN
        self.info(dev, f"{name} {pr(res)}: assigned")
        return True

    @staticmethod
    def find_parent_resource(dev: KDev, res: KRes) -> KRes | None:
        """pci_find_parent_resource(): the first window of the device's bus that contains ``res``
        (same type, neither unset); a prefetchable window holding a non-prefetchable BAR is none."""
        for r in dev.bus.resources:
            if r is None or not r.flags or (r.flags & (IO | MEM)) != (res.flags & (IO | MEM)):
                continue
            if (r.flags | res.flags) & UNSET:
                continue
            if r.start <= res.start and res.end <= r.end:
                if (r.flags & PREFETCH) and not (res.flags & PREFETCH):
                    return None
                return r
        return None

    def _space(self, dev: KDev, res: KRes) -> KRes:
        """ioport_resource or iomem_resource, holding the host bridge windows of the device's
        root bus (what a request there can conflict with; other firmware ranges are not known)."""
        io = bool(res.flags & IO)
        key = IO if io else MEM
        sp = self._spaces.get(key)
        if sp is None:
            sp = KRes(0, 0xFFFF if io else (1 << 64) - 1, key, "PCI IO" if io else "PCI mem")
            bus = dev.bus
            for r in bus.root_resources:
                if r.flags & key:
                    win = KRes(r.start, r.end, r.flags, f"PCI Bus {bus.domain:04x}:{bus.number:02x}")
                    if self.request(sp, win) is not None:
                        continue
            self._spaces[key] = sp
        return sp

    def revert_fw_address(self, dev: KDev, res: KRes, size: int) -> bool:
        """drivers/pci/setup-res.c pci_revert_fw_address(): after "can't assign; no space", try
        the address the firmware had given (saved only when claiming it failed at boot)."""
        fw = self.fw_addr.get(id(res))
        if not fw:
            return False
        name = res_name(res.idx)  # type: ignore[arg-type]
        start, end = res.start, res.end
        res.start, res.end = fw, fw + size - 1
        res.flags &= ~UNSET
        root = self.find_parent_resource(dev, res)
        if root is None:
            if dev.bus.self_dev is not None:
                return False  # -ENXIO: behind a bridge only its windows reach the device
            root = self._space(dev, res)  # "on the root bus, assume the host bridge will forward everything"
        self.info(dev, f"{name}: trying firmware assignment {pr(res)}")
        conflict = self.request(root, res)
        if conflict is not None:
            self.info(dev, f"{name} {pr(res)}: conflicts with {conflict.name} {pr(conflict)}")
            res.start, res.end = start, end
            res.flags |= UNSET
            return False
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
        if (self.relaxed_alignment_retry and bus.self_dev is not None and size0
                and not self.upstream_space_available(bus, mask | PREFETCH, typ, size0, add_align)):
            min_align = max(1 << (max_order + 20), 0x100000)
            size0 = calculate_memsize(size, min_size, 0, 0, old, 0x100000)
            self.info(bus.self_dev, f"bridge window {pr(b_res)} to {bus.busn_str()} requires relaxed alignment rules")
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

    def upstream_space_available(self, bus: KBus, mask: int, typ: int, size: int, align: int) -> bool:
        """pbus_upstream_space_available() (6.12): the first assigned window of this type
        above ``bus`` (root bus excluded) has an aligned free block of ``size``."""
        downstream = bus
        up = bus.parent
        while up is not None and not up.is_root:
            for r in up.resources:
                if r is None or r.parent is None or (r.flags & mask) != typ:
                    continue
                if r.size >= size and self.find_resource(r, 0, size, 0, (1 << 64) - 1, align) is not None:
                    return True
                if up.self_dev is not None and downstream.self_dev is not None:
                    self.info(up.self_dev, f"Assigned bridge window {pr(r)} to {up.busn_str()} cannot fit {size:#x} "
                                           f"required for {downstream.self_dev.name} bridging to {downstream.busn_str()}")
                return False
            up = up.parent
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


# ---- bus numbers (drivers/pci/probe.c) -------------------------------------------------------


def bus_name(n: int, m: int) -> str:
    return f"[bus {n:02x}]" if n == m else f"[bus {n:02x}-{m:02x}]"


def max_busnr(bus: KBus) -> int:
    """pci_bus_max_busnr()"""
    mx = bus.busn_end
    for c in bus.children:
        mx = max(mx, max_busnr(c))
    return mx
