"""Write a topology as a sysfs tree in the kernel's layout (the inverse of ``sysfs.py``).

``write_sysfs_tree(topology, root)`` creates, under ``root``:

* ``sys/devices/pciDDDD:BB/.../DDDD:BB:DD.F/`` per function, nested under its upstream
  bridge (a VF beside its PF, a VMD domain's root bus ``pciDDDDD:BB`` inside the VMD
  endpoint's directory), with ``vendor``, ``device``, ``subsystem_vendor``,
  ``subsystem_device``, ``class``, ``revision``, ``irq``, ``modalias``, ``config``
  (binary, ``config_encode.encode_config`` cut to ``config_size``), ``resource`` (17
  lines for bridges, 13 for other functions, with the kernel's IORESOURCE_* flags and
  the BAR register's low bits), ``secondary_bus_number``/``subordinate_bus_number``,
  ``current_link_*``/``max_link_*``, ``numa_node``, ``driver_override``,
  ``reset_method``, ``boot_vga``, ``removable``, ``sriov_*``, and the links ``driver``,
  ``iommu_group``, ``physfn``, ``virtfnN`` and ``domain`` (VMD);
* ``sys/bus/pci/devices/BDF`` links, ``sys/bus/pci/drivers/NAME/BDF`` back-links,
  ``sys/bus/pci/slots/NAME/address`` (and ``module``, the slot's hotplug driver), ``sys/kernel/iommu_groups/N/{devices/BDF,type}``;
* ``proc/iomem`` and ``proc/ioports`` with the host bridges' windows, ``proc/cmdline``,
  ``proc/sys/kernel/osrelease``, and ``dmesg.txt`` with the root buses' bus ranges.

``load_sysfs(write_sysfs_tree(load_sysfs(root), out))`` gives back the same functions and
host bridges for every tree ``load_sysfs`` reads. Facts a sysfs tree cannot carry (see
``NOT_ROUND_TRIPPED``) come back as the loader's defaults. pciutils reads the tree too:
``lspci -A linux-sysfs -O sysfs.path=ROOT/sys/bus/pci -vvv``.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from ..model import ABSENT, Address, Bar, BarKind, Function, HostBridge, Topology, Window, WindowKind, present
from ..model.device import BridgeInfo
from .config_encode import encode_config

__all__ = ["NOT_ROUND_TRIPPED", "resource_rows", "write_sysfs_tree"]

# include/linux/ioport.h
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_READONLY = 0x4000
IORESOURCE_SIZEALIGN = 0x40000
IORESOURCE_MEM_64 = 0x100000
IORESOURCE_DISABLED = 0x10000000
IORESOURCE_UNSET = 0x20000000

#: BAR resource flags as drivers/pci/probe.c sets them: kind bits | SIZEALIGN | the
#: register's low bits (I/O space, 64-bit type, prefetchable), which lspci shows.
_BAR_FLAGS = {
    BarKind.IO: IORESOURCE_IO | IORESOURCE_SIZEALIGN | 0x1,
    BarKind.MEM32: IORESOURCE_MEM | IORESOURCE_SIZEALIGN,
    BarKind.MEM64: IORESOURCE_MEM | IORESOURCE_MEM_64 | IORESOURCE_SIZEALIGN | 0x4,
    BarKind.PREF32: IORESOURCE_MEM | IORESOURCE_PREFETCH | IORESOURCE_SIZEALIGN | 0x8,
    BarKind.PREF64: IORESOURCE_MEM | IORESOURCE_PREFETCH | IORESOURCE_MEM_64 | IORESOURCE_SIZEALIGN | 0xC,
}
_ZERO = (0, 0, 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)

#: What a sysfs tree cannot say, so what comes back as the loader's default.
NOT_ROUND_TRIPPED = (
    "vendor_name/device_name/subsystem_name/class_name: sysfs has no names (None)",
    "external_facing: the loader never reads it (None)",
    "is_virtfn None: no physfn link reads as False",
    "driver None (unknown): no driver link reads as ABSENT",
    "Bar.disabled False: the kernel has only a DISABLED flag (None)",
    "bars/vf_bars None: a resource file is always written, so they read as () ",
    "bridge windows None (unknown): the resource rows read as ABSENT",
    "a prefetchable window's is_64bit None: the MEM_64 flag reads as False",
    "a Bar with a start but no size: written as a one-byte range",
    "boot_vga None on a non-VGA function reads as False; removable/reset_methods None read as "
    "False/() when the kernel release is new enough to show them",
    "host bridge windows: only io and mem kinds (proc/ioports, proc/iomem), is_64bit None, "
    "in address order; a VMD domain with no function is not seen",
    "vendor/device/class/revision/subsystem None: no file, so the config space value is read",
)


def _hex(v: int, digits: int) -> str:
    return f"0x{v:0{digits}x}\n"


def bar_row(bar: Bar | None, *, rom: bool = False, total: int | None = None) -> tuple[int, int, int]:
    """One ``resource`` line (start, end, flags) for a BAR, the ROM or an IOV BAR (``total`` bytes)."""
    if bar is None:
        return _ZERO
    if rom:
        flags = IORESOURCE_MEM | IORESOURCE_PREFETCH | IORESOURCE_READONLY | IORESOURCE_SIZEALIGN
        if bar.kind.is_64bit:
            flags |= IORESOURCE_MEM_64
        if not bar.kind.prefetchable:
            flags &= ~IORESOURCE_PREFETCH
    else:
        flags = _BAR_FLAGS[bar.kind]
    if bar.disabled:
        flags |= IORESOURCE_DISABLED
    size = total if total is not None else bar.size
    if bar.start is not None and not bar.unassigned:
        return (bar.start, bar.start + max(size or 1, 1) - 1, flags)
    if size:
        return (0, size - 1, flags | IORESOURCE_UNSET)
    return (0, 0, flags)


def _window_row(win: object, kind: WindowKind) -> tuple[int, int, int]:
    if not isinstance(win, Window):
        return _ZERO
    if kind is WindowKind.IO:
        flags = IORESOURCE_IO | (0x1 if win.end > 0xFFFF else 0)
    elif kind is WindowKind.MEM:
        flags = IORESOURCE_MEM
    else:
        flags = IORESOURCE_MEM | IORESOURCE_PREFETCH
        if win.is_64bit:
            flags |= IORESOURCE_MEM_64 | 0x1
    return (win.start, win.end, flags)


def _is_bridge_header(fn: Function) -> bool:
    if fn.header_type is not None:
        return fn.header_type in (1, 2)
    return present(fn.bridge)


def resource_rows(fn: Function) -> list[tuple[int, int, int]]:
    """The ``resource`` file of ``fn``: 6 BARs, ROM, 6 IOV BARs [, 4 bridge windows]."""
    bridge = _is_bridge_header(fn)
    rows = [_ZERO] * (17 if bridge else 13)
    nbars = 2 if bridge else 6
    for bar in fn.bars or ():
        if 0 <= bar.index < nbars:
            rows[bar.index] = bar_row(bar)
    if present(fn.rom):
        rows[6] = bar_row(fn.rom, rom=True)  # type: ignore[arg-type]
    sr = fn.caps.sriov
    total_vfs = sr.total_vfs if present(sr) else None  # type: ignore[union-attr]
    for bar in fn.vf_bars or ():
        if 0 <= bar.index < 6:
            total = bar.total_size
            if total is None and bar.size is not None and total_vfs:
                total = bar.size * total_vfs
            rows[7 + bar.index] = bar_row(bar, total=total)
    if bridge:
        br = fn.bridge if isinstance(fn.bridge, BridgeInfo) else BridgeInfo()
        rows[13] = _window_row(br.io_window, WindowKind.IO)
        rows[14] = _window_row(br.mem_window, WindowKind.MEM)
        rows[15] = _window_row(br.pref_window, WindowKind.PREF)
    return rows


def _format_resource(rows: list[tuple[int, int, int]]) -> str:
    return "".join(f"0x{s:016x} 0x{e:016x} 0x{f:016x}\n" for s, e, f in rows)


def _release_at_least(release: str | None, want: tuple[int, int]) -> bool | None:
    if not release:
        return None
    parts = release.split(".")
    try:
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) >= want
    except (ValueError, IndexError):
        return None


def _speed_text(speed: str | None) -> str:
    return f"{speed} PCIe" if speed else "Unknown"


class _Writer:
    def __init__(self, topology: Topology, root: str) -> None:
        self.t = topology
        self.root = root
        self.dirs: dict[Address, str] = {}
        self.hb_by_key: dict[tuple[int, int], HostBridge] = {(h.domain, h.root_bus): h for h in topology.host_bridges}
        self.hb_by_domain: dict[int, list[HostBridge]] = {}
        for h in topology.host_bridges:
            self.hb_by_domain.setdefault(h.domain, []).append(h)
        self.vmd = topology.vmd_domains
        rel = topology.source.kernel_release
        self.removable_known = _release_at_least(rel, (5, 13))
        self.reset_known = _release_at_least(rel, (5, 15))
        self.made: set[str] = set()

    # ---- paths -------------------------------------------------------------------------------
    def abs(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def mkdir(self, rel: str) -> None:
        if rel not in self.made:
            os.makedirs(self.abs(rel), exist_ok=True)
            self.made.add(rel)

    def root_bus(self, domain: int, bus: int) -> int:
        if (domain, bus) in self.hb_by_key:
            return bus
        for h in self.hb_by_domain.get(domain, ()):
            if h.bus_range and h.bus_range[0] <= bus <= h.bus_range[1]:
                return h.root_bus
        return bus

    def hb_dir(self, domain: int, root_bus: int) -> str:
        name = f"pci{domain:04x}:{root_bus:02x}"
        owner = self.vmd.get(domain)
        if owner is not None and owner in self.t.functions:
            return f"{self.dir_of(owner)}/{name}"
        return f"sys/devices/{name}"

    def dir_of(self, addr: Address, _seen: frozenset[Address] = frozenset()) -> str:
        d = self.dirs.get(addr)
        if d is not None:
            return d
        fn = self.t.functions.get(addr)
        if fn is not None:
            parent = fn.parent
        else:  # a bridge the source did not list (a parent's directory): under the bridge to its bus
            up = self.t.bridge_for_bus(addr.domain, addr.bus)
            parent = up.address if up is not None else None
        if parent is not None and parent not in _seen and parent != addr:
            d = f"{self.dir_of(parent, _seen | {addr})}/{addr}"
        else:
            anchor = addr
            if fn is not None and fn.physfn is not None and fn.physfn in self.t.functions and fn.physfn not in _seen:
                anchor = fn.physfn  # a VF on a root bus sits beside its PF
            d = f"{self.hb_dir(addr.domain, self.root_bus(anchor.domain, anchor.bus))}/{addr}"
        self.dirs[addr] = d
        return d

    def text(self, rel: str, content: str) -> None:
        self.data(rel, content.encode())

    def data(self, rel: str, content: bytes) -> None:
        fd = os.open(os.path.join(self.root, rel), _CREATE, 0o644)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)

    def link(self, rel_link: str, rel_target: str) -> None:
        target = posixpath.relpath(rel_target, posixpath.dirname(rel_link))
        os.symlink(target, self.abs(rel_link))

    # ---- the tree ----------------------------------------------------------------------------
    def write(self) -> None:
        t = self.t
        for sub in ("sys/devices", "sys/bus/pci/devices", "sys/bus/pci/drivers", "proc/sys/kernel"):
            self.mkdir(sub)
        for h in t.host_bridges:
            if h.vmd_owner is None or h.vmd_owner in t.functions:
                self.mkdir(self.hb_dir(h.domain, h.root_bus))
        groups_known = any(fn.iommu_group is not None for fn in t) or t.source.iommu_present is not None
        if groups_known:
            self.mkdir("sys/kernel/iommu_groups")
            for label, kind in t.source.group_types:
                self.mkdir(f"sys/kernel/iommu_groups/{label}/devices")
                self.text(f"sys/kernel/iommu_groups/{label}/type", kind + "\n")
        slot_names: dict[str, tuple[int, int, int]] = {}
        slots_wanted = False
        for fn in t:
            self.function(fn)
            if present(fn.slot):
                phys = fn.slot.physical_slot  # type: ignore[union-attr]
                if phys is not None:
                    slot_names.setdefault(phys, fn.address.slot)
            if fn.slot is not None:
                slots_wanted = True
        drivers = self.slot_drivers()
        if slots_wanted or slot_names or drivers:
            self.mkdir("sys/bus/pci/slots")
            by_addr = {v: k for k, v in slot_names.items()}
            for name, (dom, bus, dev) in sorted(slot_names.items()):
                self.mkdir(f"sys/bus/pci/slots/{name}")
                self.text(f"sys/bus/pci/slots/{name}/address", f"{dom:04x}:{bus:02x}:{dev:02x}\n")
            # the slot's hotplug driver as Linux 6.1 links it (slots/N/module)
            for key, (name, driver) in sorted(drivers.items()):
                name = by_addr.get(key, name)
                if key not in by_addr:
                    if self.t.get(Address(key[0], key[1], key[2], 0)) is not None or name in slot_names:
                        continue  # a new slot here would name the device in it
                    self.mkdir(f"sys/bus/pci/slots/{name}")
                    self.text(f"sys/bus/pci/slots/{name}/address", f"{key[0]:04x}:{key[1]:02x}:{key[2]:02x}\n")
                self.link(f"sys/bus/pci/slots/{name}/module", f"sys/module/{driver}")
        self.proc()

    def slot_drivers(self) -> dict[tuple[int, int, int], tuple[str, str]]:
        """(domain, secondary bus, 0) -> (slot name, driver) for every bridge whose slot's
        hotplug driver is known."""
        known = dict(self.t.source.slot_drivers)
        out: dict[tuple[int, int, int], tuple[str, str]] = {}
        used: set[str] = set()
        for fn in self.t:
            slot = fn.slot if present(fn.slot) else None
            drv = (slot.hotplug_driver if slot is not None else None) or known.get(fn.address)  # type: ignore[union-attr]
            br = fn.bridge if present(fn.bridge) else None
            if drv is None or br is None or not br.secondary:  # type: ignore[union-attr]
                continue
            number = slot.number if slot is not None else None  # type: ignore[union-attr]
            name = str(number) if number is not None else ""
            if not name or name in used:
                name = f"hp-{fn.address}".replace(":", "-")
            used.add(name)
            out[(fn.address.domain, br.secondary, 0)] = (name, drv)  # type: ignore[union-attr]
        return out

    def function(self, fn: Function) -> None:
        a = fn.address
        d = self.dir_of(a)
        self.mkdir(d)
        bdf = str(a)
        w = self.text
        if fn.vendor_id is not None:
            w(f"{d}/vendor", _hex(fn.vendor_id, 4))
        if fn.device_id is not None:
            w(f"{d}/device", _hex(fn.device_id, 4))
        if fn.subsystem_vendor_id is not None:
            w(f"{d}/subsystem_vendor", _hex(fn.subsystem_vendor_id, 4))
        if fn.subsystem_device_id is not None:
            w(f"{d}/subsystem_device", _hex(fn.subsystem_device_id, 4))
        if fn.class_code is not None:
            w(f"{d}/class", _hex(fn.class_code, 6))
        if fn.revision is not None:
            w(f"{d}/revision", _hex(fn.revision, 2))
        w(f"{d}/irq", "0\n" if fn.is_virtfn else f"{16 + (a.device + a.function) % 8}\n")
        if None not in (fn.vendor_id, fn.device_id, fn.class_code):
            w(f"{d}/modalias", "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X\n" % (
                fn.vendor_id, fn.device_id, fn.subsystem_vendor_id or 0, fn.subsystem_device_id or 0,
                fn.class_code >> 16, (fn.class_code >> 8) & 0xFF, fn.class_code & 0xFF))  # type: ignore[operator]
        if fn.config_size is not None:
            self.data(f"{d}/config", encode_config(fn)[: fn.config_size])
        w(f"{d}/resource", _format_resource(resource_rows(fn)))
        if fn.numa_node is not None:
            w(f"{d}/numa_node", f"{fn.numa_node}\n")
        br = fn.bridge
        if isinstance(br, BridgeInfo):
            if br.secondary is not None:
                w(f"{d}/secondary_bus_number", f"{br.secondary}\n")
            if br.subordinate is not None:
                w(f"{d}/subordinate_bus_number", f"{br.subordinate}\n")
        if fn.link is not None:
            ln = fn.link
            w(f"{d}/current_link_speed", _speed_text(ln.current_speed) + "\n")
            w(f"{d}/max_link_speed", _speed_text(ln.max_speed) + "\n")
            if ln.current_width is not None:
                w(f"{d}/current_link_width", f"{ln.current_width}\n")
            if ln.max_width is not None:
                w(f"{d}/max_link_width", f"{ln.max_width}\n")
        if fn.driver_override is not None:
            w(f"{d}/driver_override", ("(null)" if fn.driver_override is ABSENT else str(fn.driver_override)) + "\n")
        rm = fn.reset_methods
        if rm:
            w(f"{d}/reset_method", " ".join(rm) + "\n")
        elif rm is not None and not self.reset_known:
            w(f"{d}/reset_method", "\n")
        vga = fn.class_code is not None and (fn.class_code >> 8) == 0x0300
        if fn.boot_vga or (fn.boot_vga is False and vga):
            w(f"{d}/boot_vga", "1\n" if fn.boot_vga else "0\n")
        if fn.removable:
            w(f"{d}/removable", "removable\n")
        elif fn.removable is False and not self.removable_known:
            w(f"{d}/removable", "fixed\n")
        sr = fn.caps.sriov
        if present(sr) and sr.driver_total_vfs is not None:  # type: ignore[union-attr]
            w(f"{d}/sriov_totalvfs", f"{sr.driver_total_vfs}\n")  # type: ignore[union-attr]
            for name, val, fmt in (("sriov_numvfs", sr.num_vfs, "d"), ("sriov_offset", sr.vf_offset, "d"),  # type: ignore[union-attr]
                                   ("sriov_stride", sr.vf_stride, "d"), ("sriov_vf_device", sr.vf_device, "x")):  # type: ignore[union-attr]
                if val is not None:
                    w(f"{d}/{name}", f"{val:{fmt}}\n")
            if sr.drivers_autoprobe is not None:  # type: ignore[union-attr]
                w(f"{d}/sriov_drivers_autoprobe", "1\n" if sr.drivers_autoprobe else "0\n")  # type: ignore[union-attr]
        # links
        self.link(f"sys/bus/pci/devices/{bdf}", d)
        if isinstance(fn.driver, str) and fn.driver:
            drv = f"sys/bus/pci/drivers/{fn.driver}"
            self.mkdir(drv)
            self.link(f"{d}/driver", drv)
            self.link(f"{drv}/{bdf}", d)
        if isinstance(fn.iommu_group, str) and fn.iommu_group:
            g = f"sys/kernel/iommu_groups/{fn.iommu_group}"
            self.mkdir(f"{g}/devices")
            self.link(f"{d}/iommu_group", g)
            self.link(f"{g}/devices/{bdf}", d)
        if fn.physfn is not None:
            self.link(f"{d}/physfn", self.dir_of(fn.physfn))
        for n, vf in enumerate(fn.virtfns):
            self.link(f"{d}/virtfn{n}", self.dir_of(vf))
        if fn.vmd_domain is not None:
            root_bus = 0
            for h in self.hb_by_domain.get(fn.vmd_domain, ()):
                root_bus = h.root_bus
                break
            hb = f"{d}/pci{fn.vmd_domain:04x}:{root_bus:02x}"
            self.mkdir(hb)
            self.link(f"{d}/domain", hb)

    def proc(self) -> None:
        t = self.t
        src = t.source
        if src.kernel_release:
            self.text("proc/sys/kernel/osrelease", src.kernel_release + "\n")
        if src.kernel_cmdline is not None:
            self.text("proc/cmdline", src.kernel_cmdline + "\n")
        mem: list[tuple[int, int, str]] = []
        io: list[tuple[int, int, str]] = []
        any_windows = False
        for h in t.host_bridges:
            if h.windows is None or h.vmd_owner is not None:
                continue
            any_windows = True
            for win in h.windows:
                (io if win.kind is WindowKind.IO else mem).append((win.start, win.end, f"PCI Bus {h.domain:04x}:{h.root_bus:02x}"))
        if any_windows:
            self.text("proc/iomem", _resource_tree(mem, 8, (0x0, 0xFFF, "Reserved")))
            self.text("proc/ioports", _resource_tree(io, 4, (0xCF8, 0xCFF, "PCI conf1")))
        lines = []
        for n, h in enumerate(t.host_bridges):
            if h.bus_range is not None:
                lines.append(f"[    0.{n:06d}] pci_bus {h.domain:04x}:{h.root_bus:02x}: root bus resource "
                             f"[bus {h.bus_range[0]:02x}-{h.bus_range[1]:02x}]\n")
        if lines:
            self.text("dmesg.txt", "".join(lines))


def _resource_tree(entries: list[tuple[int, int, str]], width: int, filler: tuple[int, int, str]) -> str:
    """A proc/iomem-style listing of top-level ranges in address order.

    ``filler`` (a non-PCI range) is added where it overlaps nothing, as real files have
    such lines, and so the file never reads as the all-zero listing a non-root reader gets.
    """
    if not any(s <= filler[1] and filler[0] <= e for s, e, _ in entries):
        entries = entries + [filler]
    return "".join(f"{s:0{width}x}-{e:0{width}x} : {name}\n" for s, e, name in sorted(entries))


def write_sysfs_tree(topology: Topology, root_dir: str | Path) -> Path:
    """Write ``topology`` as a sysfs tree under ``root_dir`` (created; must be empty) and return it."""
    root = Path(root_dir)
    if root.exists():
        if not root.is_dir():
            raise FileExistsError(f"{root}: exists and is not a directory")
        if any(root.iterdir()):
            raise FileExistsError(f"{root}: directory is not empty")
    root.mkdir(parents=True, exist_ok=True)
    _Writer(topology, os.path.abspath(str(root))).write()
    return root
