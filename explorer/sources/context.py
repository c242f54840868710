"""The kernel's context read from a sysfs tree (live or a snapshot), with where each fact
was read.

* **Slot hotplug driver.** Linux 6.1 links ``sys/bus/pci/slots/N/module`` to the driver
  that registered the slot (``pci_hp_create_module_link``, drivers/pci/slot.c):
  ``acpiphp``, ``pciehp`` or ``shpchp``. Linux 6.12 has no such link; there a port whose
  hotplug is native has a PCIe port service device ``sys/bus/pci_express/devices/BDF:pcieNNN``
  whose ``driver`` link is ``pciehp`` (drivers/pci/pcie/portdrv.c ``pcie_device_init``,
  bound by pciehp's ``pcie_port_service_driver``). A PCIe port with a slot but no port service
  bound to pciehp (in a tree that has ``sys/bus/pci_express``) has ACPI hotplug (acpiphp registers the slot: it does so only
  where pciehp does not, ``acpiphp_glue.c`` ``acpiphp_add_context`` / ``pciehp_is_native``).
  A slot's address ``dddd:bb:dd`` is on the port's secondary bus.
* **IOMMU units**: the names in ``sys/class/iommu`` (``dmar*`` Intel VT-d, ``ivhd*`` AMD-Vi,
  SMMUs by their device names).
* **Kernel release and command line**: ``proc/sys/kernel/osrelease`` (or ``meta/uname.txt``,
  ``proc/version``) and ``proc/cmdline``.

Read only, links resolved inside the root (:class:`explorer.sources.sysfs._Root`).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import replace

from ..model import Address, Function, PcieType, SlotInfo, is_address, present

SLOTS_DIR = "sys/bus/pci/slots"
SERVICES_DIR = "sys/bus/pci_express/devices"
IOMMU_CLASS_DIR = "sys/class/iommu"
_DRIVERS = ("acpiphp", "pciehp", "shpchp")


def _listdir(root: str, rel: str) -> list[str] | None:
    try:
        return sorted(os.listdir(os.path.join(root, rel)))
    except OSError:
        return None


def _link_name(root: str, rel: str) -> str | None:
    try:
        return posixpath.basename(os.readlink(os.path.join(root, rel)).rstrip("/")) or None
    except OSError:
        return None


def read_slots(root: str) -> list[tuple[str, tuple[int, int, int] | None, str | None]]:
    """(slot name, (domain, bus, device) or None, module link name or None) per slot."""
    out = []
    for name in _listdir(root, SLOTS_DIR) or []:
        try:
            with open(os.path.join(root, SLOTS_DIR, name, "address"), "rb") as f:
                addr = f.read(256).decode("ascii", "replace").strip()
        except OSError:
            addr = ""
        parts = addr.split(":")
        key = None
        if len(parts) == 3:
            try:
                key = (int(parts[0], 16), int(parts[1], 16), int(parts[2], 16))
            except ValueError:
                key = None
        out.append((name, key, _link_name(root, f"{SLOTS_DIR}/{name}/module")))
    return out


def read_port_services(root: str, resolve) -> dict[str, list[tuple[str, str | None]]] | None:
    """Port BDF -> [(service device name, driver or None)]; None when the bus is not there."""
    names = _listdir(root, SERVICES_DIR)
    if names is None:
        return None
    out: dict[str, list[tuple[str, str | None]]] = {}
    for name in names:
        bdf, sep, svc = name.rpartition(":")
        if not sep or not svc.startswith("pcie") or not is_address(bdf):
            continue
        rel = resolve(f"{SERVICES_DIR}/{name}")
        drv = _link_name(root, f"{rel}/driver") if rel else None
        out.setdefault(str(Address.parse(bdf)), []).append((name, drv))
    return out




def read_sysfs_context(root: str, functions: list[Function], resolve) -> tuple[list[Function], dict]:
    """Slot drivers onto the ports' SlotInfo, and the SourceInfo fields this module reads
    (``slot_drivers`` also for bridges without a slot capability of their own).

    ``resolve(rel_link)`` resolves a link inside the root. Returns the functions (ports with
    a known slot driver replaced) and keyword arguments for :class:`SourceInfo`
    (``iommu_units``, ``provenance``, ``slot_drivers``).
    """
    provenance: list[tuple[str, str]] = []
    slots = read_slots(root)
    services = read_port_services(root, resolve)
    by_bus: dict[tuple[int, int], list[tuple[str, tuple[int, int, int] | None, str | None]]] = {}
    for s in slots:
        if s[1] is not None:
            by_bus.setdefault((s[1][0], s[1][1]), []).append(s)
    out: list[Function] = []
    drivers: list[tuple[Address, str]] = []
    for fn in functions:
        br = fn.bridge
        sec = br.secondary if present(br) else None  # type: ignore[union-attr]
        driver, where = None, ""
        if sec:
            port = str(fn.address)
            mine = by_bus.get((fn.address.domain, sec), [])
            svcs = services.get(port, []) if services is not None else []
            hp = [n for n, d in svcs if d == "pciehp"]
            linked = [(n, m) for n, _, m in mine if m in _DRIVERS]
            if hp:
                driver, where = "pciehp", f"{SERVICES_DIR}/{hp[0]}/driver -> pciehp"
            elif linked:
                driver, where = linked[0][1], f"{SLOTS_DIR}/{linked[0][0]}/module -> {linked[0][1]}"
            elif mine and services is not None and fn.pcie_type in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM):
                # pciehp drives a slot only through a port service device of its port
                driver = "acpiphp"
                where = (f"{SLOTS_DIR}/{mine[0][0]} exists and no port service of {port} in {SERVICES_DIR} "
                         "is bound to pciehp")
        if driver is not None:
            if isinstance(fn.slot, SlotInfo):
                fn = replace(fn, slot=replace(fn.slot, hotplug_driver=driver))
            drivers.append((fn.address, driver))
            provenance.append((f"slot_driver {fn.address}", where))
        out.append(fn)
    units_list = _listdir(root, IOMMU_CLASS_DIR)
    units = tuple(units_list) if units_list is not None else None
    if units is not None:
        provenance.append(("iommu_units", IOMMU_CLASS_DIR))
    return out, {"iommu_units": units, "provenance": tuple(provenance), "slot_drivers": tuple(drivers)}


def release_file(root: str) -> str | None:
    """Which file gives the kernel release (the order sysfs.kernel_release reads them)."""
    for rel in ("proc/sys/kernel/osrelease", "meta/uname.txt", "proc/version"):
        if os.path.isfile(os.path.join(root, rel)):
            return rel
    return None
