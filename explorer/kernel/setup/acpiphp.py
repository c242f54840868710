"""The ACPI hotplug path (acpiphp ``enable_slot``, drivers/pci/hotplug/acpiphp_glue.c).

``pci_scan_slot``, the two ``pci_scan_bridge`` passes for a new bridge (bus number
``acpiphp_max_busnr()+1``, unchecked), that bridge's ``__pci_bus_size_bridges`` as a
hotplug bridge, then ``__pci_bus_assign_resources(bus, &add_list, NULL)``: no fail
list, so no release and no retry; a BAR fits only in a free aligned hole of one of
the port's existing windows.
"""

from __future__ import annotations

from .simulator import DevRes, KBus, KDev, Sim, max_busnr
from .versions import KernelRules


def _acpiphp_max_busnr(bus: KBus) -> int:
    mx = bus.busn_start
    for c in bus.children:
        mx = max(mx, max_busnr(c))
    return mx


def bridge_bus_number(sim: Sim, new: KDev, pbus: KBus) -> int:
    """A new bridge below the slot is numbered acpiphp_max_busnr() + 1, without checking the port's range."""
    sim.info(new, "bridge configuration invalid ([bus 00-00]), reconfiguring")
    return _acpiphp_max_busnr(pbus) + 1


def assign_resources(sim: Sim, pbus: KBus, new: KDev, child: KBus | None, rules: KernelRules,
                     upstream: bool = False) -> None:
    """enable_slot(): size a new bridge (as a hotplug bridge: check_hotplug_bridge), then
    assign with no fail list."""
    add: list[DevRes] = []
    if child is not None:
        # check_hotplug_bridge(): a function of the ACPI slot is a hotplug bridge; 6.12 exempts
        # PCIe switch upstream ports (versions.KernelRules.acpiphp_marks_upstream_port)
        if not upstream or rules.acpiphp_marks_upstream_port:
            new.is_hotplug_bridge = True
        sim.bus_size_bridges(child, add)
    sim.bus_assign_resources(pbus, add, None)
