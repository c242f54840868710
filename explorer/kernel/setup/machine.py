"""A Topology turned into the simulator's buses, devices and claimed resources.

Host bridge windows become the root bus resources; every bridge window, BAR, ROM
and IOV resource the source shows assigned is claimed where the kernel's
``pci_claim_resource`` would put it (the deepest containing resource).
"""

from __future__ import annotations

from bisect import bisect_right

from dataclasses import dataclass

from ...model import Address, Bar, BarKind, Function, Topology, Window, WindowKind, present
from .simulator import (
    BIOS_END,
    BRIDGE_IO,
    BRIDGE_MEM,
    BRIDGE_PREF,
    IO,
    IOV_FIRST,
    MEM,
    MEM_64,
    PREFETCH,
    READONLY,
    ROM_RESOURCE,
    SIZEALIGN,
    WINDOW,
    KBus,
    KDev,
    KRes,
    Sim,
    _start,
    pr,
)


KIND_FLAGS = {
    BarKind.IO: IO,
    BarKind.MEM32: MEM,
    BarKind.MEM64: MEM | MEM_64,
    BarKind.PREF32: MEM | PREFETCH,
    BarKind.PREF64: MEM | PREFETCH | MEM_64,
}


@dataclass
class Machine:
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
            # Children are in address order and never overlap: only the last one starting
            # at or below ``res`` can hold it.
            kids = node.children
            j = bisect_right(kids, res.start, key=_start) - 1
            while j >= 0 and kids[j] is res:
                j -= 1
            if j < 0 or not _contains(kids[j], res.start, res.end):
                break
            node = kids[j]
        return sim.request(node, res) is None
    return False


def build_machine(topology: Topology, domain: int, sim: Sim) -> Machine:
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
            flags = KIND_FLAGS[b.kind] | SIZEALIGN
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
            flags = KIND_FLAGS[vb.kind] | SIZEALIGN
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
    return Machine(sim, buses, devs, warnings)
