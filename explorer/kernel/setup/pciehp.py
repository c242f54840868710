"""The native PCIe hotplug path (pciehp ``pciehp_configure_device``).

``pci_hp_add_bridge`` gives a new bridge the first free bus number in the port's
range; ``pci_assign_unassigned_bridge_resources(port)`` sizes, distributes the
port's spare space, assigns; on a failure one release of the failed type's window
(``whole_subtree``), then a second and last try that re-sizes the port's window
(``pbus_size_mem``: old size kept as a minimum, hotplug reserve as an optional
add-on) and places it first fit in the parent's resources (``pci_high`` first for
64-bit windows). A failure leaves the port without it.
"""

from __future__ import annotations

from .simulator import (
    BRIDGE_IO,
    BRIDGE_MEM,
    BRIDGE_PREF,
    IO,
    MEM,
    MEM_64,
    PCI_RES_TYPE_MASK,
    PREFETCH,
    DevRes,
    KBus,
    KDev,
    KRes,
    Sim,
)


def bridge_bus_number(sim: Sim, new: KDev, pbus: KBus, used: dict[int, KBus]) -> int | None:
    """pci_hp_add_bridge(): the first bus number in the port's range that no bus has, else None."""
    busnr = next((b for b in range(pbus.busn_start, pbus.busn_end + 1) if b not in used), None)
    if busnr is None:
        sim.info(new, "No bus number available for hot-added bridge")
        return None
    sim.info(new, "bridge configuration invalid ([bus 00-00]), reconfiguring")
    return busnr


def read_new_bridge_bases(new: KDev) -> None:
    """The windows a new bridge starts with on this path (its base/limit registers read as 0)."""
    new.res[BRIDGE_IO] = KRes(0, 0xFFF, IO, new.name, new, BRIDGE_IO)
    new.res[BRIDGE_MEM] = KRes(0, 0xFFFFF, MEM, new.name, new, BRIDGE_MEM)
    new.res[BRIDGE_PREF] = KRes(0, 0xFFFFF, MEM | PREFETCH | MEM_64, new.name, new, BRIDGE_PREF)


def assign_resources(sim: Sim, pdev: KDev) -> tuple[int, list[str]]:
    """pci_assign_unassigned_bridge_resources(port): returns (tries, the "released" log lines)."""
    released: list[str] = []
    tried = 1
    while True:
        add: list[DevRes] = []
        sim.bus_size_bridges(pdev.subordinate, add)  # type: ignore[arg-type]
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
    return tried, released
