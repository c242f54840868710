"""Write mediated-device parents and mdevs into a sysfs tree, as the kernel lays them out.

No machine these tests can use has an mdev parent, so the tests add one to a real capture's
tree (or build a non-PCI one from nothing) with exactly the files and links the kernel makes:

* drivers/vfio/mdev/mdev_sysfs.c ``parent_create_sysfs_files`` / ``mdev_type_add``:
  ``<parent>/mdev_supported_types/<driver>-<type>/`` with ``create`` (write-only, mode 0200),
  ``device_api``, ``name``, ``available_instances``, ``description`` (only when the driver
  shows one) and the ``devices/`` directory;
* drivers/vfio/mdev/mdev_core.c ``mdev_register_parent``: the ``sys/class/mdev_bus/<parent>``
  link (``class_compat_create_link``); ``mdev_device_create``: the device ``<parent>/<uuid>``
  on the mdev bus (``sys/bus/mdev/devices/<uuid>``), with ``subsystem``;
* mdev_sysfs.c ``mdev_create_sysfs_files``: ``<uuid>/mdev_type`` -> its type directory and
  ``<type>/devices/<uuid>`` -> the device; ``remove`` (write-only);
* drivers/vfio/group.c ``vfio_noiommu_group_alloc(dev, VFIO_EMULATED_IOMMU)``: a new IOMMU
  group (``iommu_group_alloc``: the lowest free id) holding the mdev, so
  ``sys/kernel/iommu_groups/<n>/devices/<uuid>`` and ``<uuid>/iommu_group`` links, and the
  group's ``type`` (drivers/iommu/iommu.c ``iommu_group_show_type``: ``unknown`` without a
  default domain); the vfio mdev driver's ``driver`` link.

The same layout is what mdevctl's own tests and libvirt's nodedev tests describe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TypeSpec:
    sysfs_name: str
    name: str | None = None  # None: the kernel prints sysfs_name (no pretty_name)
    description: str | None = None  # None: no description attribute
    available: int = 1
    device_api: str = "vfio-pci"


@dataclass
class MdevSpec:
    uuid: str
    type_name: str  # the TypeSpec.sysfs_name
    driver: str | None  # the mdev driver bound (6.x: the vendor's, e.g. intel_vgpu_mdev); None: no vfio group


@dataclass
class ParentSpec:
    device_dir: str  # root-relative, e.g. sys/devices/pci0000:00/0000:00:02.0
    driver: str  # dev_driver_string(parent): the driver's name (else the bus's or class's): the type ids' prefix
    types: list[TypeSpec] = field(default_factory=list)
    mdevs: list[MdevSpec] = field(default_factory=list)
    #: False for a parent with no driver bound (mtty: a class device; its prefix is the class name)
    bound: bool = True
    #: root-relative target of the device's ``subsystem`` link (None: leave as it is)
    subsystem: str | None = None


def _rel_link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _lowest_free_group(root: Path) -> str:
    groups = root / "sys/kernel/iommu_groups"
    used = {int(n) for n in os.listdir(groups) if n.isdigit()} if groups.is_dir() else set()
    n = 0
    while n in used:
        n += 1
    return str(n)


def add_parent(root: Path, spec: ParentSpec) -> dict[str, str]:
    """Write ``spec`` below ``root`` (a directory holding ``sys/``); returns uuid -> group."""
    dev = root / spec.device_dir
    dev.mkdir(parents=True, exist_ok=True)
    name = dev.name
    _rel_link(root / "sys/class/mdev_bus" / name, dev)
    if spec.subsystem and not (dev / "subsystem").is_symlink():
        (root / spec.subsystem).mkdir(parents=True, exist_ok=True)
        _rel_link(dev / "subsystem", root / spec.subsystem)
    if spec.bound and not (dev / "driver").is_symlink():
        drv = root / "sys/bus" / ("pci" if "/pci" in "/" + spec.device_dir else "platform") / "drivers" / spec.driver
        drv.mkdir(parents=True, exist_ok=True)
        _rel_link(dev / "driver", drv)
    types_dir = dev / "mdev_supported_types"
    for t in spec.types:
        tdir = types_dir / f"{spec.driver}-{t.sysfs_name}"
        (tdir / "devices").mkdir(parents=True)
        create = tdir / "create"
        create.write_text("")
        create.chmod(0o200)
        (tdir / "device_api").write_text(t.device_api + "\n")
        (tdir / "name").write_text((t.name or t.sysfs_name) + "\n")
        (tdir / "available_instances").write_text(f"{t.available}\n")
        if t.description is not None:
            (tdir / "description").write_text(t.description + ("" if t.description.endswith("\n") else "\n"))
    groups: dict[str, str] = {}
    mdev_bus = root / "sys/bus/mdev"
    for m in spec.mdevs:
        mdir = dev / m.uuid
        mdir.mkdir()
        tdir = types_dir / f"{spec.driver}-{m.type_name}"
        _rel_link(mdir / "mdev_type", tdir)
        _rel_link(tdir / "devices" / m.uuid, mdir)
        _rel_link(mdir / "subsystem", mdev_bus)
        remove = mdir / "remove"
        remove.write_text("")
        remove.chmod(0o200)
        _rel_link(mdev_bus / "devices" / m.uuid, mdir)
        if m.driver:
            drv = mdev_bus / "drivers" / m.driver
            drv.mkdir(parents=True, exist_ok=True)
            _rel_link(mdir / "driver", drv)
            _rel_link(drv / m.uuid, mdir)
            label = _lowest_free_group(root)
            gdir = root / "sys/kernel/iommu_groups" / label
            (gdir / "devices").mkdir(parents=True)
            (gdir / "type").write_text("unknown\n")
            _rel_link(gdir / "devices" / m.uuid, mdir)
            _rel_link(mdir / "iommu_group", gdir)
            groups[m.uuid] = label
    return groups


def pci_dir(root: Path, bdf: str) -> str:
    """The device directory (root-relative) the ``sys/bus/pci/devices/BDF`` link leads to."""
    return str((root / "sys/bus/pci/devices" / bdf).resolve().relative_to(root.resolve()))
