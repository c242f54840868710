"""Reboot what-if: what the kernel assigns at the next boot, with other kernel parameters.

``predict_boot(topology, firmware, kernel_params=, kernel=)`` replays a boot on the firmware's
state (from the kernel log, :mod:`explorer.sources.dmesg`), with the same firmware and the
given command line, and returns the machine as the kernel would leave it:

1. **Bus numbers** (drivers/pci/probe.c ``pci_scan_child_bus_extend`` and
   ``pci_scan_bridge_extend``): a bridge the firmware configured sensibly keeps its bus
   numbers (pass 0) unless ``pci=assign-busses``; the others ("bridge configuration invalid")
   are numbered in pass 1 from ``max + 1``, extra buses being shared among hotplug bridges,
   and a hotplug bridge's bus reaching at least ``hpbussize`` buses.
2. **Claiming** (arch/x86/pci/i386.c ``pcibios_resource_survey``): bridge windows depth first
   (``pcibios_allocate_bus_resources``: a window at 0 or that cannot be claimed is dropped),
   then BARs and IOV BARs (``pcibios_allocate_resources``: one that cannot be claimed keeps
   its size and is assigned later), then ROMs (``pcibios_allocate_rom_resources``).
3. **Assignment** (drivers/pci/setup-bus.c ``pci_assign_unassigned_root_bus_resources``):
   ``pci=realloc`` (or unassigned IOV BARs, automatically) allows ``max bus depth + 1``
   tries; every try but the last sizes bridges with the hotplug reserves (``hpiosize``,
   ``hpmmiosize``, ``hpmmioprefsize``) as required, the last as optional; after a failed
   try the failed type's windows are released (leaf bridges first, then whole subtrees).
   Sizing, distribution of spare space and assignment are the hot-add simulator's
   (:class:`explorer.kernel.setup.simulator.Sim`): one model of setup-bus.c, not two.

Without the firmware's state (no kernel log, or a log that wrapped before the enumeration)
nothing is predicted: :attr:`BootResult.firmware_known` is False and the reason is given.

Both modelled kernels (Debian's 6.1 has the fix backported) distribute a hotplug bridge's
spare space at the root-bus step from the bridge whose child windows are unassigned
(``pci_root_bus_distribute_available_resources`` passing ``dev``); 6.12's relaxed-alignment
retry in ``pbus_size_mem`` follows :mod:`.versions`.

Layer rule: imports :mod:`explorer.model` (the firmware facts are
:mod:`explorer.model.firmware`, read by :mod:`explorer.sources.dmesg`) and sibling kernel modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ...model import (
    ABSENT,
    Address,
    Bar,
    BarKind,
    BridgeInfo,
    Function,
    Topology,
    Window,
    WindowKind,
    present,
)
from .simulator import (
    BRIDGE_IO,
    BRIDGE_MEM,
    BRIDGE_PREF,
    IO,
    IOV_FIRST,
    IOV_LAST,
    MEM,
    MEM_64,
    PCI_RES_TYPE_MASK,
    PREFETCH,
    READONLY,
    ROM_RESOURCE,
    SIZEALIGN,
    STARTALIGN,
    UNSET,
    WINDOW,
    DevRes,
    KBus,
    KDev,
    KRes,
    Sim,
    pr,
    res_name,
)
from .specs import KernelParams, parse_kernel_params
from .versions import RULES, rules_for_release

from ...model.firmware import DmesgBoot, FwDevice, FwResource

__all__ = ["BootResult", "BootDiff", "predict_boot", "KERNELS", "compare_layouts"]

KERNELS = tuple(RULES)


# =============================================================================================
# Results
# =============================================================================================


@dataclass(frozen=True, slots=True)
class BootDiff:
    """What the next boot changes, per function (addresses as they are now)."""

    #: "0000:00:03.0 bus 02-04 -> 09-12"
    buses: tuple[str, ...] = ()
    #: "0000:00:03.0 mem window [0xfe600000-0xfe7fffff] -> [0x44000000-0x47ffffff] (grown, moved)"
    windows: tuple[str, ...] = ()
    #: "0000:04:00.0 BAR 0 [0xfe640000-0xfe65ffff] -> unassigned"
    bars: tuple[str, ...] = ()
    #: functions that get another address: ("0000:04:00.0", "0000:0b:00.0")
    renamed: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.buses or self.windows or self.bars or self.renamed)

    def lines(self) -> list[str]:
        out = [f"{a} becomes {b}" for a, b in self.renamed]
        return out + list(self.buses) + list(self.windows) + list(self.bars)


@dataclass(frozen=True)
class BootResult:
    source: Topology
    kernel: str
    params: KernelParams
    cmdline: str
    firmware_known: bool
    #: the predicted machine (None when the firmware's state is unknown)
    predicted: Topology | None
    #: the kernel's messages of the replayed boot, in order
    messages: tuple[str, ...]
    #: resources the kernel leaves unassigned ("0000:04:00.0 ROM (size 0x40000)")
    unassigned: tuple[str, ...]
    diff: BootDiff
    warnings: tuple[str, ...] = ()
    #: old address -> new address (functions renumbered by the new bus numbers)
    address_map: tuple[tuple[Address, Address], ...] = ()


# =============================================================================================
# The machine as the firmware left it
# =============================================================================================


@dataclass
class _Node:
    """A function as the firmware left it: its facts and the functions physically below it."""

    address: Address  # in the boot the log comes from
    fw: "FwDevice"
    fn: Function | None
    children: list["_Node"] = field(default_factory=list)
    primary: int | None = None  # the firmware's primary bus number (None: never matches)
    dev: KDev | None = None
    #: secondary and subordinate bus number registers during the scan
    regs: list[int] | None = None


def _flags_of(r: "FwResource", rom: bool = False) -> int:
    if r.kind == "io":
        return IO | SIZEALIGN
    f = MEM | SIZEALIGN
    if rom:
        return f | PREFETCH | READONLY
    if r.prefetchable:
        f |= PREFETCH
    if r.is_64bit:
        f |= MEM_64
    return f


def _fw_res(r: "FwResource", flags: int, name: str, dev: KDev, idx: int) -> KRes:
    if r.unset or r.start == 0:
        k = KRes(0, r.size - 1, flags, name, dev, idx)
    else:
        k = KRes(r.start, r.end, flags, name, dev, idx)
    return k


class _Boot:
    def __init__(self, topology: Topology, fw: "DmesgBoot", kp: KernelParams, kernel: str, cmdline: str = "") -> None:
        self.t = topology
        self.cmdline = cmdline
        self.fw = fw
        self.kp = kp
        self.kernel = kernel
        self.sim = Sim(skip_isa_align=kp.skip_isa_align)
        self.sim.hp_io, self.sim.hp_mmio, self.sim.hp_pref, self.sim.hp_bus = (
            kp.hpiosize, kp.hpmmiosize, kp.hpmmioprefsize, kp.hpbussize)
        self.sim.relaxed_alignment_retry = RULES[kernel].relaxed_alignment_retry
        if fw.pci_mem_start is not None:
            self.sim.min_mem = fw.pci_mem_start  # PCIBIOS_MIN_MEM (x86: pci_mem_start)
        self.warnings: list[str] = []
        self.roots: list[KBus] = []
        self.nodes: dict[Address, _Node] = {}
        self.by_dev: dict[int, _Node] = {}
        self.buses: dict[tuple[int, int], KBus] = {}
        #: two bridges decode one bus number (a firmware fault): what is behind them is not known
        self.shared_bus = False

    # ---- the physical tree ---------------------------------------------------------------
    def tree(self) -> dict[tuple[int, int], list[_Node]]:
        """Root bus -> the nodes on it; children from the source's parent links."""
        tops: dict[tuple[int, int], list[_Node]] = {}
        for addr, fd in self.fw.devices.items():
            fn = self.t.get(addr)
            self.nodes[addr] = _Node(addr, fd, fn)
        for addr, node in self.nodes.items():
            fn = node.fn
            parent = fn.parent if fn is not None else None
            if fn is None:
                self.warnings.append(f"{addr} is in the kernel log but not in the source; placed by its address")
                parent = self._parent_by_bus(addr)
            if parent is not None and parent in self.nodes:
                self.nodes[parent].children.append(node)
            elif parent is None:
                tops.setdefault(self._root_of(addr), []).append(node)
            else:
                self.warnings.append(f"{addr}: its bridge {parent} is not in the kernel log; left out")
        for fn in self.t:
            if fn.address not in self.nodes and not fn.is_virtfn:
                self.warnings.append(f"{fn.address} is in the source but not in the kernel log's enumeration; left out")
        for node in self.nodes.values():
            node.children.sort(key=lambda n: n.address.devfn)
            node.primary = self._fw_primary(node)
        for lst in tops.values():
            lst.sort(key=lambda n: n.address.devfn)
        return tops

    def _parent_by_bus(self, addr: Address) -> Address | None:
        for a, n in self.nodes.items():
            fn = n.fn
            if fn is not None and present(fn.bridge) and fn.bridge.secondary == addr.bus and a.domain == addr.domain:  # type: ignore[union-attr]
                return a
        return None

    def _root_of(self, addr: Address) -> tuple[int, int]:
        """The host bridge whose root bus is the nearest at or below the function's bus."""
        cands = [r for r in self.fw.roots if r.domain == addr.domain and r.bus <= addr.bus
                 and (r.bus_range is None or addr.bus <= r.bus_range[1])]
        if cands:
            best = max(cands, key=lambda r: r.bus)
            return (best.domain, best.bus)
        return (addr.domain, addr.bus)

    def _fw_primary(self, node: _Node) -> int | None:
        fd = node.fw
        if not fd.is_bridge:
            return None
        here = node.address.bus
        sec, sub = fd.fw_secondary or 0, fd.fw_subordinate or 0
        if not fd.fw_bus_invalid:
            return here
        if sec <= here or sec > sub:
            return here  # the firmware's numbers explain the verdict
        return None  # the primary bus number disagreed: invalid whatever the bus is numbered

    # ---- devices and their firmware resources ---------------------------------------------
    def _make_dev(self, node: _Node, bus: KBus) -> KDev:
        a = node.address
        name = f"{bus.domain:04x}:{bus.number:02x}:{a.device:02x}.{a.function}"
        fn, fd = node.fn, node.fw
        slot = fn.slot if fn is not None else None
        dev = KDev(name=name, bus=bus, devfn=a.devfn, class_code=fd.class_code,
                   driver=None, is_bridge=fd.is_bridge,
                   is_hotplug_bridge=bool(present(slot) and slot.hotplug),  # type: ignore[union-attr]
                   enabled=False)
        for i, r in sorted(fd.bars.items()):
            dev.res[i] = _fw_res(r, _flags_of(r), name, dev, i)
        if fd.rom is not None:
            dev.res[ROM_RESOURCE] = _fw_res(fd.rom, _flags_of(fd.rom, rom=True), name, dev, ROM_RESOURCE)
        vf_sizes = {vb.index: vb.size for vb in (fn.vf_bars or ())} if fn is not None else {}
        total_vfs = None
        if fn is not None and present(fn.caps.sriov):
            total_vfs = fn.caps.sriov.total_vfs  # type: ignore[union-attr]
        for i, r in sorted(fd.vf_bars.items()):
            idx = IOV_FIRST + i
            k = _fw_res(r, _flags_of(r), name, dev, idx)
            per = vf_sizes.get(i) or (r.size // total_vfs if total_vfs else r.size)
            k.iov_align = per
            dev.res[idx] = k
        if fd.is_bridge:
            binfo = fn.bridge if fn is not None and present(fn.bridge) else None
            for idx, kind in ((BRIDGE_IO, "io"), (BRIDGE_MEM, "mem"), (BRIDGE_PREF, "pref")):
                w = fd.windows.get(kind)
                if w is None:
                    dev.res[idx] = KRes(0, 0, 0, name, dev, idx)
                    continue
                flags = IO if kind == "io" else MEM
                if kind == "pref":
                    flags |= PREFETCH | (MEM_64 if w.is_64bit else 0)
                    dev.pref_64_window = w.is_64bit
                dev.res[idx] = KRes(w.start, w.end, flags, name, dev, idx)
            if binfo is not None:
                pw = binfo.pref_window
                if present(pw) and pw.is_64bit is not None and "pref" not in fd.windows:  # type: ignore[union-attr]
                    dev.pref_64_window = bool(pw.is_64bit)  # type: ignore[union-attr]
        self._fixup_device_resources(dev)
        node.dev = dev
        self.by_dev[id(dev)] = node
        return dev

    def _fixup_device_resources(self, dev: KDev) -> None:
        """arch/x86/pci/common.c pcibios_fixup_device_resources(): pci=nobar, pci=norom."""
        if "nobar" in self.kp.options:
            for i in range(6):
                r = dev.res.get(i)
                if r is not None and r.start == 0 and r.end != 0:
                    del dev.res[i]
        rom = dev.res.get(ROM_RESOURCE)
        if "norom" in self.kp.options and rom is not None and rom.parent is None and not rom.start:
            del dev.res[ROM_RESOURCE]

    # ---- 1. bus numbers (probe.c) ------------------------------------------------------------
    def scan_root(self, key: tuple[int, int], nodes: list[_Node]) -> KBus:
        fr = next((r for r in self.fw.roots if (r.domain, r.bus) == key), None)
        lo, hi = fr.bus_range if fr is not None and fr.bus_range is not None else (key[1], 0xFF)
        bus = KBus(key[1], lo, hi, None, None, key[0])
        if fr is not None:
            for w in fr.windows:
                flags = (IO if w.kind == "io" else MEM) | WINDOW
                if w.prefetchable:
                    flags |= PREFETCH
                r = KRes(w.start, w.end, flags, f"pci{key[0]:04x}:{key[1]:02x}")
                bus.root_resources.append(r)
                if self.fw.pci_mem_start is None and flags & MEM and w.start >= 0x100000 and not self.sim.min_mem:
                    self.sim.min_mem = w.start  # no e820 gap line: the lowest host window above 1 MiB
        else:
            bus.windows_unknown = True
        self.buses[key] = bus
        self.roots.append(bus)
        self.scan_child_bus(bus, nodes, 0)
        return bus

    def scan_child_bus(self, bus: KBus, nodes: list[_Node], available: int) -> int:
        start = bus.busn_start
        mx = start
        for n in nodes:
            bus.devices.append(self._make_dev(n, bus))
        used = self._iov_bus_range(bus, nodes)  # pci_iov_bus_range(): buses the VFs will need
        mx += used
        bridges = [d for d in bus.devices if d.is_bridge]
        hp = sum(1 for d in bridges if d.is_hotplug_bridge)
        normal = len(bridges) - hp
        for d in bridges:
            cmax = mx
            mx = self.scan_bridge(bus, d, mx, 0, 0)
            used += 1
            if mx - cmax > 1:
                used += mx - cmax - 1
        for d in bridges:
            buses = 0
            if not hp and normal == 1:
                buses = available
            elif d.is_hotplug_bridge:
                buses = available // hp
                buses = min(buses, (available - used + 1) & 0xFFFFFFFF)
            cmax = mx
            mx = self.scan_bridge(bus, d, cmax, buses, 1)
            if mx - cmax > 1:
                used += mx - cmax - 1
        if bus.self_dev is not None and bus.self_dev.is_hotplug_bridge:
            want = max(available, self.kp.hpbussize - 1)
            if mx - start < want:
                mx = min(start + want, bus.busn_end)
        return mx

    @staticmethod
    def _iov_bus_range(bus: KBus, nodes: list[_Node]) -> int:
        """drivers/pci/iov.c pci_iov_bus_range(): the bus of the last VF of any PF here."""
        top = 0
        for n in nodes:
            sr = n.fn.caps.sriov if n.fn is not None else None
            if not present(sr) or not sr.total_vfs or sr.vf_offset is None or sr.vf_stride is None:  # type: ignore[union-attr]
                continue
            last = bus.number + ((n.address.devfn + sr.vf_offset + sr.vf_stride * (sr.total_vfs - 1)) >> 8)  # type: ignore[union-attr]
            top = max(top, last)
        return top - bus.number if top else 0

    @staticmethod
    def _fw_regs(node: _Node) -> list[int]:
        fd, fn = node.fw, node.fn
        if fd.fw_secondary is None and not fd.fw_bus_invalid and fn is not None and present(fn.bridge) \
                and fn.bridge.secondary:  # type: ignore[union-attr]
            # No "PCI bridge to" line: pci_scan_bridge_extend() found its secondary bus already
            # reached through another bridge (pci_find_bus()) and added none, so nothing read
            # its windows; it never rewrote the registers either, and the source shows them.
            return [fn.bridge.secondary, fn.bridge.subordinate]  # type: ignore[union-attr, list-item]
        return [fd.fw_secondary or 0, fd.fw_subordinate or 0]

    def _shared_bus_numbers(self) -> bool:
        """Two bridges whose firmware bus ranges start at the same secondary bus."""
        seen: set[tuple[int, int]] = set()
        for node in self.nodes.values():
            if not node.fw.is_bridge:
                continue
            sec, sub = self._fw_regs(node)
            if not sec or sec > sub or sec <= node.address.bus:
                continue
            key = (node.address.domain, sec)
            if key in seen:
                return True
            seen.add(key)
        return False

    def scan_bridge(self, bus: KBus, dev: KDev, mx: int, available: int, pass_: int) -> int:
        node = self.by_dev[id(dev)]
        fd = node.fw
        if node.regs is None:  # the bridge's bus number registers as the firmware left them
            node.regs = self._fw_regs(node)
        sec, sub = node.regs
        broken = False
        if not pass_ and (node.primary != bus.number or sec <= bus.number or sec > sub):
            self.sim.info(dev, f"bridge configuration invalid ([bus {sec:02x}-{sub:02x}]), reconfiguring")
            broken = True
        if (sec or sub) and not self.kp.assign_busses and not broken:
            if pass_:
                return mx
            if (bus.domain, sec) in self.buses:
                # probe.c: "If we already got to this bus through a different bridge, don't re-add it":
                # the bridge gets no subordinate bus; its registers stay as they are
                self.warnings.append(f"{dev.name}: the firmware's bus {sec:02x} is already reached through another "
                                     "bridge; the kernel would reuse it")
                if sub > mx:
                    mx = sub
                return mx
            child = KBus(sec, sec, sub, dev, bus, bus.domain)
            dev.subordinate = child
            bus.children.append(child)
            self.buses[(bus.domain, sec)] = child
            cmax = self.scan_child_bus(child, node.children, sub - sec)
            if cmax > sub:
                self.sim.info(dev, f"bridge has subordinate {sub:02x} but max busn {cmax:02x}")
            if sub > mx:
                mx = sub
            return mx
        if not pass_:
            if self.kp.assign_busses or broken:  # "temporarily disable forwarding": zeroed for pass 1
                node.regs = [0, 0]
            return mx
        nxt = mx + 1
        if (bus.domain, nxt) in self.buses or nxt > 0xFF:
            self.warnings.append(f"{dev.name}: no bus number {nxt:02x} left for it; nothing behind it is usable")
            return mx
        child = KBus(nxt, nxt, bus.busn_end, dev, bus, bus.domain)
        dev.subordinate = child
        bus.children.append(child)
        self.buses[(bus.domain, nxt)] = child
        mx += 1
        self.sim.info(dev, f"PCI bridge to {child.busn_str()}")
        mx = self.scan_child_bus(child, node.children, available)
        child.busn_end = mx
        if child.busn_end > bus.busn_end or child.number > bus.busn_end:
            self.sim.info(dev, f"devices behind bridge are unusable because {child.busn_str()} cannot be assigned "
                               "for them")
        return mx

    # ---- 2. claiming (arch/x86/pci/i386.c) -----------------------------------------------------
    def claim(self, dev: KDev, res: KRes) -> bool:
        """pci_claim_resource()"""
        name = res_name(res.idx)  # type: ignore[arg-type]
        root = None
        for r in dev.bus.resources:
            if r is None or not r.flags:
                continue
            if (r.flags & (IO | MEM)) != (res.flags & (IO | MEM)) or (r.flags & UNSET):
                continue
            if r.start <= res.start and res.end <= r.end:
                if (r.flags & PREFETCH) and not (res.flags & PREFETCH):
                    root = None
                else:
                    root = r
                break
        if dev.bus.is_root and dev.bus.windows_unknown:
            self.sim.unknown_root_used = True
        if root is None:
            self.sim.info(dev, f"{name} {pr(res)}: can't claim; no compatible bridge window")
            return False
        conflict = self.sim.request(root, res)
        if conflict is not None:
            what = conflict.name if conflict.dev is not None else (conflict.label or conflict.name)
            self.sim.info(dev, f"{name} {pr(res)}: can't claim; address conflict with {what} {pr(conflict)}")
            return False
        return True

    def claim_bridge_window(self, dev: KDev, res: KRes) -> bool:
        """pci_claim_bridge_resource(): claim, else clip to the parent's window and claim that."""
        if self.claim(dev, res):
            return True
        if not dev.is_pci_bridge_class:
            return True
        for r in dev.bus.resources:  # pci_bus_clip_resource()
            if r is None or not r.flags or (r.flags & (IO | MEM)) != (res.flags & (IO | MEM)):
                continue
            start, end = max(r.start, res.start), min(r.end, res.end)
            if start > end:
                continue
            if (start, end) == (res.start, res.end):
                return False
            was = pr(res)
            res.start, res.end = start, end
            self.sim.info(dev, f"{was} clipped to {pr(res)}")
            return self.claim(dev, res)
        return False

    def allocate_bus_resources(self, bus: KBus) -> None:
        br = bus.self_dev
        if br is not None:
            for idx in (BRIDGE_IO, BRIDGE_MEM, BRIDGE_PREF):
                r = br.res[idx]
                if not r.flags or r.parent is not None:
                    continue
                if not r.start or not self.claim_bridge_window(br, r):
                    r.start = r.end = 0
                    r.flags = 0
        for child in bus.children:
            self.allocate_bus_resources(child)

    def allocate_resources(self, bus: KBus) -> None:
        for dev in bus.devices:
            for idx in sorted(dev.res):
                if not (idx <= 5 or IOV_FIRST <= idx <= IOV_LAST):
                    continue
                r = dev.res[idx]
                if r.parent is not None or not r.start or not r.flags:
                    continue
                if not self.claim(dev, r):
                    self.sim.fw_addr[id(r)] = r.start  # pcibios_save_fw_addr(): "we'll assign a new address later"
                    r.end -= r.start
                    r.start = 0
            if dev.subordinate is not None:
                self.allocate_resources(dev.subordinate)

    def allocate_rom_resources(self, bus: KBus) -> None:
        for dev in bus.devices:
            r = dev.res.get(ROM_RESOURCE)
            if r is not None and r.flags and r.start and r.parent is None:
                if not self.claim(dev, r):
                    r.end -= r.start
                    r.start = 0
            if dev.subordinate is not None:
                self.allocate_rom_resources(dev.subordinate)

    # ---- 3. assignment (setup-bus.c) -----------------------------------------------------------
    @staticmethod
    def depth(bus: KBus) -> int:
        d = 0
        for c in bus.children:
            d = max(d, _Boot.depth(c) + 1)
        return d

    def iov_unassigned(self, bus: KBus) -> bool:
        for dev in bus.devices:
            for idx in range(IOV_FIRST, IOV_LAST + 1):
                r = dev.res.get(idx)
                if r is not None and r.flags and not r.start:
                    return True
            if dev.subordinate is not None and self.iov_unassigned(dev.subordinate):
                return True
        return False

    @staticmethod
    def _not_assigned(dev: KDev) -> bool:
        for idx in (BRIDGE_IO, BRIDGE_MEM, BRIDGE_PREF):
            r = dev.res[idx]
            if r.flags and not (r.flags & STARTALIGN):
                return False
        return True

    def root_distribute(self, bus: KBus, add: list[DevRes] | None) -> None:
        bridge = bus.self_dev
        for dev in bus.devices:
            b = dev.subordinate
            if not dev.is_bridge or b is None:
                continue
            if bridge is not None and self._not_assigned(dev):
                self.sim.bridge_distribute(dev, add)
            else:
                self.root_distribute(b, add)

    def assign_root(self, bus: KBus) -> None:
        sim = self.sim
        realloc = self.kp.realloc
        if realloc is None:
            enable = "auto_enabled" if self.iov_unassigned(bus) else "undefined"
        else:
            enable = "user_enabled" if realloc == "on" else "user_disabled"
        try_num = 1
        if enable in ("user_enabled", "auto_enabled"):
            depth = self.depth(bus)
            try_num = depth + 1
            sim.log.append(f"pci_bus {bus.domain:04x}:{bus.number:02x}: max bus depth: {depth} pci_try_num: {try_num}")
        tried = 0
        whole = False
        while True:
            add: list[DevRes] | None = [] if tried + 1 == try_num else None
            sim.bus_size_bridges(bus, add)
            self.root_distribute(bus, add)
            fail: list[DevRes] = []
            sim.bus_assign_resources(bus, add, fail)
            tried += 1
            if not fail:
                return
            if tried >= try_num:
                if enable == "undefined":
                    sim.log.append(f"pci_bus {bus.domain:04x}:{bus.number:02x}: Some PCI device resources are "
                                   "unassigned, try booting with pci=realloc")
                elif enable == "auto_enabled":
                    sim.log.append(f"pci_bus {bus.domain:04x}:{bus.number:02x}: Automatically enabled pci realloc, "
                                   "if you have problem, try booting with pci=realloc=off")
                return
            sim.log.append(f"pci_bus {bus.domain:04x}:{bus.number:02x}: No. {tried + 1} try to assign unassigned res")
            if tried + 1 > 2:
                whole = True
            for f in fail:
                sim.bus_release_bridge_resources(f.dev.bus, f.flags & PCI_RES_TYPE_MASK, whole)
            for f in fail:
                f.res.start, f.res.end, f.res.flags = f.start, f.end, f.flags
                if f.dev.is_bridge and f.res.idx in (BRIDGE_IO, BRIDGE_MEM, BRIDGE_PREF):
                    f.res.flags = 0

    # ---- run -----------------------------------------------------------------------------------
    def run(self) -> None:
        tops = self.tree()
        self.shared_bus = self._shared_bus_numbers()
        keys = sorted(set(tops) | {(r.domain, r.bus) for r in self.fw.roots})
        for key in keys:
            self.scan_root(key, tops.get(key, []))
        for bus in self.roots:
            self.allocate_bus_resources(bus)
        for bus in self.roots:
            self.allocate_resources(bus)
        if "rom" not in self.kp.options:  # pci=rom: firmware ROM addresses are not kept
            for bus in self.roots:
                self.allocate_rom_resources(bus)
        else:
            for node in self.nodes.values():
                r = node.dev.res.get(ROM_RESOURCE) if node.dev is not None else None
                if r is not None and r.parent is None and r.start:
                    r.end -= r.start
                    r.start = 0
        for bus in self.roots:
            self.assign_root(bus)
        self.sim.fw_addr.clear()  # pcibios_fw_addr_list_del()


# =============================================================================================
# From the replayed boot to a Topology
# =============================================================================================


def _bar_from(idx: int, r: KRes | None, old: Bar | None) -> Bar | None:
    if r is None:
        return None
    if not r.flags:
        if old is None:
            return None
        size = old.size
        return replace(old, start=None, unassigned=True, size=size)
    kind = BarKind.of(bool(r.flags & IO), bool(r.flags & MEM_64), bool(r.flags & PREFETCH))
    assigned = r.parent is not None and not (r.flags & UNSET)
    size = r.size
    if old is not None:
        kind = old.kind
    return Bar(idx, kind, r.start if assigned else None, size, not assigned,
               old.disabled if old is not None else None)


def _window_from(kind: WindowKind, r: KRes) -> Window | object:
    if not r.flags or r.parent is None:
        return ABSENT
    return Window(kind, r.start, r.end, bool(r.flags & MEM_64) if kind is WindowKind.PREF else None)


def _to_topology(b: _Boot, source: Topology) -> tuple[Topology, dict[Address, Address]]:
    amap: dict[Address, Address] = {}
    for addr, node in b.nodes.items():
        if node.dev is not None:
            amap[addr] = Address.parse(node.dev.name)
    fns: list[Function] = []
    for addr, node in b.nodes.items():
        dev = node.dev
        if dev is None:
            continue
        fn = node.fn
        fd = node.fw
        if fn is None:
            fn = Function(address=addr, vendor_id=fd.vendor_id, device_id=fd.device_id, class_code=fd.class_code,
                          header_type=fd.header_type)
        old_bars = {x.index: x for x in (fn.bars or ())}
        bars = []
        for idx in sorted(set(old_bars) | {i for i in dev.res if i <= 5}):
            nb = _bar_from(idx, dev.res.get(idx), old_bars.get(idx))
            if nb is not None:
                bars.append(nb)
        old_rom = fn.rom if present(fn.rom) else None
        rom: object = fn.rom
        if ROM_RESOURCE in dev.res:
            rom = _bar_from(ROM_RESOURCE, dev.res[ROM_RESOURCE], old_rom) or ABSENT  # type: ignore[arg-type]
            if isinstance(rom, Bar):
                rom = replace(rom, index=old_rom.index if old_rom is not None else rom.index, kind=BarKind.PREF32
                              if old_rom is None else old_rom.kind)
        elif old_rom is not None:
            rom = replace(old_rom, start=None, unassigned=True)
        vf_bars = None
        if fn.vf_bars is not None:
            vbs = []
            for vb in fn.vf_bars:
                r = dev.res.get(IOV_FIRST + vb.index)
                if r is None:
                    vbs.append(vb)
                    continue
                ok = bool(r.flags) and r.parent is not None
                vbs.append(replace(vb, start=r.start if ok else None, unassigned=not ok))
            vf_bars = tuple(vbs)
        bridge = fn.bridge
        if dev.is_bridge:
            sub = dev.subordinate
            pbus = dev.bus.number
            regs = node.regs or [0, 0]  # no bus of its own: the registers as left (sysfs reads config space)
            bridge = BridgeInfo(
                primary=pbus,
                secondary=sub.busn_start if sub is not None else regs[0],
                subordinate=sub.busn_end if sub is not None else regs[1],
                io_window=_window_from(WindowKind.IO, dev.res[BRIDGE_IO]),  # type: ignore[arg-type]
                mem_window=_window_from(WindowKind.MEM, dev.res[BRIDGE_MEM]),  # type: ignore[arg-type]
                pref_window=_window_from(WindowKind.PREF, dev.res[BRIDGE_PREF]),  # type: ignore[arg-type]
            )
        new_addr = amap[addr]
        parent = amap.get(fn.parent) if fn.parent is not None else None
        fns.append(replace(fn, address=new_addr, parent=parent, bars=tuple(bars) if fn.bars is not None or bars else None,
                           rom=rom, vf_bars=vf_bars, bridge=bridge, virtfns=(), physfn=None))
    kept = [w for w in (source.source.kernel_cmdline or "").split() if not w.startswith("pci=")]
    prov = tuple((k, v) for k, v in source.source.provenance if k != "kernel_cmdline") + \
        (("kernel_cmdline", "the predicted next boot's command line"),)
    info = replace(source.source, kind="boot-prediction", location=f"{source.source.location} (next boot)",
                   kernel_cmdline=" ".join(kept + b.cmdline.split()) or None, provenance=prov)
    return Topology.build(fns, source.host_bridges, info), amap


# =============================================================================================
# Diff and comparison
# =============================================================================================


def _wins(fn: Function) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    if not present(fn.bridge):
        return out
    br = fn.bridge
    for k in WindowKind:
        w = br.window(k)  # type: ignore[union-attr]
        out[k.value] = (w.start, w.end) if present(w) else None  # type: ignore[union-attr]
    return out


def _bars(fn: Function) -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for b in fn.bars or ():
        out[f"BAR {b.index}"] = (b.start, b.end) if b.assigned and b.size else None  # type: ignore[assignment]
    if present(fn.rom):
        rb = fn.rom
        out["ROM"] = (rb.start, rb.end) if rb.assigned and rb.size else None  # type: ignore[union-attr, assignment]
    for vb in fn.vf_bars or ():
        out[f"VF BAR {vb.index}"] = (vb.start, vb.start + (vb.total_size or vb.size or 0) - 1) if vb.assigned else None  # type: ignore[operator]
    return out


def _fmt(r: tuple[int, int] | None) -> str:
    return "unassigned" if r is None else f"[{r[0]:#x}-{r[1]:#x}]"


def _change(a: tuple[int, int] | None, b: tuple[int, int] | None) -> str:
    if a is None:
        return "assigned"
    if b is None:
        return "lost"
    parts = []
    sa, sb = a[1] - a[0], b[1] - b[0]
    if sb > sa:
        parts.append("grown")
    elif sb < sa:
        parts.append("shrunk")
    if a[0] != b[0]:
        parts.append("moved")
    return ", ".join(parts)


def _diff(source: Topology, predicted: Topology, amap: dict[Address, Address]) -> BootDiff:
    buses, windows, bars, renamed = [], [], [], []
    for old, new in sorted(amap.items()):
        a, b = source.get(old), predicted.get(new)
        if a is None or b is None:
            continue
        if old != new:
            renamed.append((str(old), str(new)))
        if present(a.bridge) and present(b.bridge):
            ra, rb = a.bridge.bus_range, b.bridge.bus_range  # type: ignore[union-attr]
            if ra != rb:
                fa = "unknown" if ra is None else f"{ra[0]:02x}-{ra[1]:02x}"
                fb = "unknown" if rb is None else f"{rb[0]:02x}-{rb[1]:02x}"
                buses.append(f"{old} bus {fa} -> {fb}")
        wa, wb = _wins(a), _wins(b)
        for k in ("io", "mem", "pref"):
            if k in wa and wa.get(k) != wb.get(k):
                windows.append(f"{old} {k} window {_fmt(wa[k])} -> {_fmt(wb.get(k))} ({_change(wa[k], wb.get(k))})")
        ba, bb = _bars(a), _bars(b)
        for k in sorted(set(ba) | set(bb)):
            if ba.get(k) != bb.get(k):
                bars.append(f"{old} {k} {_fmt(ba.get(k))} -> {_fmt(bb.get(k))}")
    return BootDiff(tuple(buses), tuple(windows), tuple(bars), tuple(renamed))


def compare_layouts(predicted: Topology, actual: Topology) -> dict[str, tuple[int, int, list[str]]]:
    """Share of windows, BARs and bus ranges of ``actual`` that ``predicted`` has equal.

    Functions are matched by address (both are numbered by the same kernel rules). Returns
    ``{"windows": (equal, total, mismatches), "bars": ..., "buses": ...}``.
    """
    equal = {"windows": 0, "bars": 0, "buses": 0}
    total = dict(equal)
    misses: dict[str, list[str]] = {k: [] for k in equal}

    def tally(kind: str, want: object, got: object, what: str) -> None:
        total[kind] += 1
        if got == want:
            equal[kind] += 1
        else:
            misses[kind].append(f"{what} {_fmt(want)} predicted {_fmt(got)}")

    for fn in actual:
        if fn.is_virtfn:
            continue
        p = predicted.get(fn.address)
        if present(fn.bridge):
            got = p.bridge.bus_range if p is not None and present(p.bridge) else None  # type: ignore[union-attr]
            tally("buses", fn.bridge.bus_range, got, f"{fn.address} bus")  # type: ignore[union-attr]
            wp = _wins(p) if p is not None else {}
            for k, v in _wins(fn).items():
                tally("windows", v, wp.get(k), f"{fn.address} {k} window")
        bp = _bars(p) if p is not None else {}
        for k, v in _bars(fn).items():
            tally("bars", v, bp.get(k), f"{fn.address} {k}")
    return {k: (equal[k], total[k], misses[k]) for k in equal}


# =============================================================================================
# Public entry point
# =============================================================================================


#: drivers/pci/pci.c pci_setup() and arch/x86/pci/common.c pcibios_setup() (prefixes as matched there)
_KNOWN_PCI_OPTIONS = frozenset("""
    nomsi noats noaer earlydump realloc nodomains noari cbiosize cbmemsize resource_alignment ecrc hpiosize
    hpmmiosize hpmmioprefsize hpmemsize hpbussize pcie_bus_tune_off pcie_bus_safe pcie_bus_perf
    pcie_bus_peer2peer pcie_scan_all disable_acs_redir config_acs off bios nobios conf1 conf2 nommconf
    check_enable_amd_mmconf noacpi noearly usepirqmask irqmask lastbus rom norom nobar assign-busses use_crs
    nocrs use_e820 no_e820 routeirq skip_isa_align noioapicquirk ioapicreroute noioapicreroute bfsort nobfsort
    big_root_window""".split())


def _kernel_of(release: str | None) -> str:
    got = rules_for_release(release) if release else None
    return got[0] if got is not None else "6.1"


def predict_boot(topology: Topology, firmware: "DmesgBoot | None", *, kernel_params: str | None = None,
                 kernel: str | None = None) -> BootResult:
    """The machine at the next boot with ``kernel_params`` (only ``pci=`` options matter).

    ``firmware``: the kernel log of the boot the source was taken from (its enumeration lines
    are the firmware's state). ``kernel``: "6.1" or "6.12" (default: the source's kernel).
    """
    if kernel is not None and kernel not in KERNELS:
        raise ValueError(f"kernel {kernel!r}: expected one of {', '.join(KERNELS)}")
    rel = topology.source.kernel_release or (firmware.kernel_release if firmware is not None else None)
    kern = kernel or _kernel_of(rel)
    cmdline = kernel_params or ""
    kp = parse_kernel_params(cmdline)
    if firmware is None or not firmware.firmware_known:
        why = ("the source keeps no kernel log" if firmware is None
               else "; ".join(firmware.notes) or "the kernel log has no PCI enumeration")
        return BootResult(topology, kern, kp, cmdline, False, None, (), (), BootDiff(),
                          (f"the firmware's assignment is unknown ({why}): nothing is predicted",))
    b = _Boot(topology, firmware, kp, kern, cmdline)
    b.run()
    predicted, amap = _to_topology(b, topology)
    unassigned: list[str] = []
    for node in b.nodes.values():
        dev = node.dev
        if dev is None:
            continue
        for idx in sorted(dev.res):
            r = dev.res[idx]
            if idx in (BRIDGE_IO, BRIDGE_MEM, BRIDGE_PREF):
                continue
            if r.flags and r.parent is not None:
                continue
            fd = node.fw
            had = (idx <= 5 and idx in fd.bars) or (idx == ROM_RESOURCE and fd.rom is not None) or \
                (IOV_FIRST <= idx <= IOV_LAST and (idx - IOV_FIRST) in fd.vf_bars)
            if had:
                size = r.size if r.flags else None
                unassigned.append(f"{dev.name} {res_name(idx)}" + (f" (size {size:#x})" if size else ""))
    warnings = list(b.warnings) + list(firmware.notes)
    vfs = sum(1 for f in topology if f.is_virtfn)
    if vfs:
        warnings.append(f"the source has {vfs} SR-IOV VFs: the kernel creates none at boot (a driver or "
                        "sriov_numvfs does later), so they are left out of the prediction")
    if b.shared_bus and kp.assign_busses:
        warnings.append("two bridges decode the same bus number in the firmware's numbering, so the devices seen "
                        "there may sit behind either, and a device behind the other is hidden; once the kernel "
                        "numbers the buses itself they are where they physically are: not predicted exactly")
    if b.sim.unknown_root_used:
        warnings.append("the host bridge windows are unknown to the kernel log: assignments on the root bus are "
                        "not predicted exactly")
    for word in cmdline.split():
        if not word.startswith("pci="):
            warnings.append(f"{word!r} is not a pci= option: it does not change the PCI layout and is ignored")
    for opt in kp.options:
        name = opt.split("=", 1)[0]
        if opt in ("nocrs", "use_e820", "noearly", "conf1", "conf2", "bfsort", "nobfsort") or \
                opt.startswith(("resource_alignment=", "lastbus=")):
            warnings.append(f"pci={opt} is not modelled: the prediction ignores it")
        elif name not in _KNOWN_PCI_OPTIONS:
            warnings.append(f"pci={opt}: the kernel does not know this option (\"PCI: Unknown option\") and ignores it")
    return BootResult(topology, kern, kp, cmdline, True, predicted, tuple(b.sim.log), tuple(unassigned),
                      _diff(topology, predicted, amap), tuple(warnings), tuple(sorted(amap.items())))
