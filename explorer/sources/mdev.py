"""Read mediated devices from a sysfs tree (the live ``/`` or an unpacked snapshot).

The kernel's layout (Documentation/driver-api/vfio-mediated-device.rst;
drivers/vfio/mdev/mdev_core.c, mdev_sysfs.c; drivers/vfio/group.c), relative to the root:

* ``sys/class/mdev_bus/<parent>`` -> the parent's device directory
  (``class_compat_create_link`` in ``mdev_register_parent``), PCI or not;
* ``<parent dir>/mdev_supported_types/<type-id>/{name, description, device_api,
  available_instances, create, devices/<uuid>}`` (``description`` only when the driver
  shows one; ``create`` is write-only);
* ``sys/bus/mdev/devices/<uuid>`` -> ``<parent dir>/<uuid>``, which holds ``mdev_type`` (a
  link to its type directory), ``remove``, and when a vfio driver is bound ``driver`` and
  ``iommu_group``: vfio gives every mdev its own emulated-IOMMU group
  (``vfio_noiommu_group_alloc(dev, VFIO_EMULATED_IOMMU)``), which lists the UUID and no PCI
  address;
* Intel VT-d units: ``sys/class/iommu/<unit>/intel-iommu/ecap`` (hex): scalable mode is
  ``intel_iommu_sm && ecap_smts`` (drivers/iommu/intel/iommu.h ``sm_supported``), and
  ``intel_iommu_sm`` comes from ``intel_iommu=sm_on|sm_off`` or the kernel's build default.

Links are resolved by string arithmetic inside the root; nothing is written.
"""

from __future__ import annotations

import os
import stat
import posixpath
from dataclasses import replace
from typing import Callable, Iterable

from ..model import ABSENT, MdevInfo, MdevInstance, MdevParent, MdevType, is_address, is_uuid

CLASS_DIR = "sys/class/mdev_bus"
BUS_DIR = "sys/bus/mdev/devices"
IOMMU_CLASS = "sys/class/iommu"
GROUPS_DIR = "sys/kernel/iommu_groups"
TYPES = "mdev_supported_types"
#: Files of a type directory that are read (``create`` is write-only: never read).
TYPE_FILES = ("name", "description", "device_api", "available_instances")
#: Links of an mdev's directory that are read.
INSTANCE_LINKS = ("mdev_type", "iommu_group", "driver", "subsystem")
#: Intel VT-d extended capability: Scalable Mode Translation Support.
ECAP_SMTS = 1 << 43


def _inside(path: str, root: str) -> bool:
    """The root is a jail: a path whose links lead out of it is read as absent."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return top == os.sep or real == top or real.startswith(top + os.sep)


def _listdir(path: str, root: str) -> list[str] | None:
    if not _inside(path, root):
        return None
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def _read(path: str, root: str) -> str | None:
    if not _inside(path, root):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 65536).decode("utf-8", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _link_name(path: str) -> str | None:
    try:
        return posixpath.basename(os.readlink(path).rstrip("/"))
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text, 10) if text else None
    except ValueError:
        return None


def parent_dirs(root: str, resolve: Callable[[str], str | None], pci_parents: Iterable[str] = ()) -> dict[str, str]:
    """Parent device directories (root-relative) by name, from every place the kernel shows them."""
    found: dict[str, str] = {}
    for name in _listdir(os.path.join(root, CLASS_DIR), root) or []:
        rel = resolve(f"{CLASS_DIR}/{name}")
        if rel is not None:
            found.setdefault(name, rel)
    for rel in pci_parents:
        found.setdefault(posixpath.basename(rel), rel)
    for uuid in _listdir(os.path.join(root, BUS_DIR), root) or []:
        rel = resolve(f"{BUS_DIR}/{uuid}")
        if rel is not None:
            parent = posixpath.dirname(rel)
            found.setdefault(posixpath.basename(parent), parent)
    return found


def _types(root: str, rel: str) -> tuple[MdevType, ...] | None:
    tdir = os.path.join(root, rel, TYPES)
    ids = _listdir(tdir, root)
    if ids is None:
        return None
    out = []
    for tid in ids:
        base = os.path.join(tdir, tid)
        if not _inside(base, root) or not os.path.isdir(base):
            continue
        files = set(_listdir(base, root) or [])
        desc = _read(os.path.join(base, "description"), root) if "description" in files else ABSENT
        out.append(MdevType(
            id=tid,
            name=_read(os.path.join(base, "name"), root),
            description=desc,
            device_api=_read(os.path.join(base, "device_api"), root),
            available_instances=_int(_read(os.path.join(base, "available_instances"), root)),
        ))
    return tuple(out)


def _instance(root: str, rel: str, parent: str, groups_exist: bool) -> MdevInstance:
    d = os.path.join(root, rel)
    names = set(_listdir(d, root) or [])
    mtype = _link_name(os.path.join(d, "mdev_type")) if "mdev_type" in names else None
    group = _link_name(os.path.join(d, "iommu_group")) if "iommu_group" in names else (ABSENT if groups_exist else None)
    drv = _link_name(os.path.join(d, "driver")) if "driver" in names else ABSENT
    return MdevInstance(posixpath.basename(rel), parent, mtype, group, drv)  # type: ignore[arg-type]


def scalable_mode(root: str, cmdline: str | None) -> bool | None:
    """Intel VT-d scalable mode: every unit's ECAP.SMTS and ``intel_iommu=sm_on|sm_off``."""
    units = []
    for unit in _listdir(os.path.join(root, IOMMU_CLASS), root) or []:
        text = _read(os.path.join(root, IOMMU_CLASS, unit, "intel-iommu", "ecap"), root)
        if text:
            try:
                units.append(int(text, 16))
            except ValueError:
                continue
    if not units:
        return None
    if not all(e & ECAP_SMTS for e in units):
        return False
    sm: bool | None = None
    for word in (cmdline or "").split():
        if word.startswith("intel_iommu="):
            for opt in word.split("=", 1)[1].split(","):
                if opt.startswith("sm_on"):
                    sm = True
                elif opt.startswith("sm_off"):
                    sm = False
    return sm


def shows_mdev(root: str, live: bool, pci_parents: Iterable[str]) -> bool:
    """Whether this tree can tell mdevs apart from their absence: a live /sys always can
    (no ``mdev_bus`` class means the mdev core is not loaded, so there are none); a copied
    tree only when it holds the mdev core's own directories or a parent's types."""
    if live:
        return True
    return (any(True for _ in pci_parents) or os.path.isdir(os.path.join(root, CLASS_DIR))
            or os.path.isdir(os.path.join(root, "sys/bus/mdev")))


def read_mdev(
    root: str,
    resolve: Callable[[str], str | None],
    *,
    pci_parents: Iterable[str] = (),
    live: bool = False,
    groups_exist: bool = False,
    cmdline: str | None = None,
) -> MdevInfo | None:
    """Every mdev parent, its types and active mdevs under ``root``; None when the tree
    cannot show them. ``pci_parents``: PCI device directories holding ``mdev_supported_types``
    (the PCI loader sees them in its listing); ``resolve`` turns a root-relative link into
    the root-relative path it leads to (None outside the root)."""
    pci_parents = list(pci_parents)
    if not shows_mdev(root, live, pci_parents):
        return None
    parents = []
    instances: list[MdevInstance] = []
    seen: set[str] = set()
    for name, rel in sorted(parent_dirs(root, resolve, pci_parents).items()):
        d = os.path.join(root, rel)
        bus = _link_name(os.path.join(d, "subsystem"))
        if bus is None and is_address(name) and "/pci" in "/" + rel:
            bus = "pci"
        drv = _link_name(os.path.join(d, "driver"))
        parents.append(MdevParent(
            name=name,
            bus=bus,
            driver=drv if drv else (ABSENT if os.path.isdir(d) else None),
            path=None if bus == "pci" else rel,
            types=_types(root, rel),
        ))
        for entry in _listdir(d, root) or []:
            if is_uuid(entry) and os.path.lexists(os.path.join(d, entry, "mdev_type")):
                instances.append(_instance(root, f"{rel}/{entry}", name, groups_exist))
                seen.add(entry)
    # Instances on the mdev bus whose parent directory did not list them (partial copies).
    for uuid in _listdir(os.path.join(root, BUS_DIR), root) or []:
        if uuid in seen or not is_uuid(uuid):
            continue
        rel = resolve(f"{BUS_DIR}/{uuid}")
        if rel is not None:
            seen.add(uuid)
            instances.append(_instance(root, rel, posixpath.basename(posixpath.dirname(rel)), groups_exist))
    # The groups name their members too: an mdev's group holds its UUID (and no PCI address).
    in_group: dict[str, str] = {}
    for label in _listdir(os.path.join(root, GROUPS_DIR), root) or []:
        for member in _listdir(os.path.join(root, GROUPS_DIR, label, "devices"), root) or []:
            if not is_uuid(member):
                continue
            in_group.setdefault(member, label)
            if member not in seen:
                rel = resolve(f"{GROUPS_DIR}/{label}/devices/{member}")
                if rel is not None and os.path.isdir(os.path.join(root, rel)):
                    seen.add(member)
                    instances.append(_instance(root, rel, posixpath.basename(posixpath.dirname(rel)), groups_exist))
    instances = [replace(i, iommu_group=in_group[i.uuid]) if not isinstance(i.iommu_group, str) and i.uuid in in_group else i
                 for i in instances]
    instances.sort(key=lambda i: (i.parent, i.uuid))
    return MdevInfo(tuple(parents), tuple(instances), scalable_mode(root, cmdline))


def unexplained_groups(root: str, labels: Iterable[str], explained: set[str]) -> list[str]:
    """Warnings for reported groups that hold neither a PCI function nor an mdev the source
    shows (e.g. an mdev whose directory was not captured, a platform device): said, not dropped."""
    out = []
    for label in labels:
        if label in explained:
            continue
        members = _listdir(os.path.join(root, GROUPS_DIR, label, "devices"), root) or []
        if members:
            what = ", ".join(members[:4]) + (f" and {len(members) - 4} more" if len(members) > 4 else "")
            out.append(f"IOMMU group {label} holds {what}: neither a PCI function nor a mediated device this source shows")
    return out


# ---- snapshots --------------------------------------------------------------------------------


def capture_mdev(col, live: bool) -> bool:  # noqa: ANN001 - snapshot._Collector
    """Add to a snapshot being collected everything :func:`read_mdev` reads: the
    ``mdev_bus`` class links, each parent's type directories (all but the write-only
    ``create``), each mdev's directory and links, the mdev bus links, and the Intel VT-d
    units' ``ecap``. The groups' own links are copied with the other IOMMU groups.
    Returns whether the tree could show mdevs (see :func:`shows_mdev`), which the snapshot
    records so that "none captured" means none."""
    t = col.tree
    parents: dict[str, str] = {}
    for name in t.listdir(CLASS_DIR) or []:
        rel = f"{CLASS_DIR}/{name}"
        target = t.resolve(rel)
        if target is not None and t.is_dir(target) and col.copy_link(rel):
            parents.setdefault(name, target)
    for bdf in t.listdir("sys/bus/pci/devices") or []:
        target = t.resolve(f"sys/bus/pci/devices/{bdf}")
        if target is not None and t.is_dir(f"{target}/{TYPES}"):
            parents.setdefault(bdf, target)
    for uuid in t.listdir(BUS_DIR) or []:
        rel = f"{BUS_DIR}/{uuid}"
        target = t.resolve(rel)
        if target is not None and t.is_dir(target) and col.copy_link(rel):
            parents.setdefault(posixpath.basename(posixpath.dirname(target)), posixpath.dirname(target))
    for _name, rel in sorted(parents.items()):
        col.add_dir(rel)
        entries = t.listdir(rel) or []
        for link in ("subsystem", "driver"):
            if link in entries:
                col.copy_link(f"{rel}/{link}")
        for tid in t.listdir(f"{rel}/{TYPES}") or []:
            tdir = f"{rel}/{TYPES}/{tid}"
            if not t.is_dir(tdir):
                continue
            col.add_dir(f"{tdir}/devices")
            files = t.listdir(tdir) or []
            for f in TYPE_FILES:
                if f in files:
                    col.copy_file(f"{tdir}/{f}")
            for u in t.listdir(f"{tdir}/devices") or []:
                col.copy_link(f"{tdir}/devices/{u}")
        for entry in entries:
            mdir = f"{rel}/{entry}"
            if is_uuid(entry) and t.is_dir(mdir):
                col.add_dir(mdir)
                names = t.listdir(mdir) or []
                for link in INSTANCE_LINKS:
                    if link in names:
                        col.copy_link(f"{mdir}/{link}")
    for unit in t.listdir(IOMMU_CLASS) or []:
        rel = f"{IOMMU_CLASS}/{unit}"
        target = t.resolve(rel)
        if target is not None and col.copy_link(rel):
            col.add_dir(target)
            col.copy_file(f"{target}/intel-iommu/ecap")
    return live or bool(parents) or t.is_dir(CLASS_DIR) or t.is_dir("sys/bus/mdev")


__all__ = ["BUS_DIR", "CLASS_DIR", "INSTANCE_LINKS", "TYPES", "TYPE_FILES", "capture_mdev", "read_mdev", "scalable_mode", "shows_mdev", "unexplained_groups"]
