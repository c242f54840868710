"""Mediated devices (mdev): parents, their supported types, and active instances.

The kernel's layout (Documentation/driver-api/vfio-mediated-device.rst,
drivers/vfio/mdev/mdev_sysfs.c and mdev_core.c):

* a parent is any device whose driver registered with ``mdev_register_parent``: a PCI
  function (Intel GVT-g, NVIDIA vGPU, Scalable IOV devices) or not (``mtty``, the vfio-ap
  ``matrix`` device, vfio-ccw subchannels). It is linked from ``/sys/class/mdev_bus/<name>``
  and holds ``mdev_supported_types/<type-id>/{name, description, device_api,
  available_instances, create, devices/}``; ``<type-id>`` is ``<parent driver>-<type>``.
  ``description`` is optional (hidden when the driver has no ``show_description``).
* an instance is a device named by its UUID under its parent, on ``/sys/bus/mdev``, with an
  ``mdev_type`` link to its type; vfio gives each one its own IOMMU group (an emulated-IOMMU
  group, drivers/vfio/group.c ``vfio_create_group``), which holds the UUID and no PCI address.

Unknown stays unknown: a ``Topology`` whose source cannot show mdevs (lspci text) has
``mdev is None``; a field a source did not give is ``None``; ``ABSENT`` means known missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from .address import Address, is_address
from .device import Maybe

#: The kernel names an mdev "%pUl": a lowercase UUID.
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def is_uuid(text: str) -> bool:
    return bool(UUID_RE.match(text))


@dataclass(frozen=True, slots=True)
class MdevType:
    """One ``mdev_supported_types/<id>`` directory."""

    id: str
    name: str | None = None
    #: ABSENT: the driver shows no description (the kernel hides the attribute).
    description: Maybe[str] = None
    device_api: str | None = None
    available_instances: int | None = None


@dataclass(frozen=True, slots=True)
class MdevInstance:
    """One active mediated device."""

    uuid: str
    #: The parent's device name (a BDF for a PCI parent, else e.g. ``mtty`` or ``matrix``).
    parent: str
    #: The type id its ``mdev_type`` link names; None when unknown.
    type: str | None = None
    #: The group vfio gave it (ABSENT: none, e.g. no vfio driver bound).
    iommu_group: Maybe[str] = None
    driver: Maybe[str] = None


@dataclass(frozen=True, slots=True)
class MdevParent:
    """A device that can create mdevs."""

    #: Its device name, as in ``/sys/class/mdev_bus``.
    name: str
    #: ``pci``, ``platform``, ``ap``, ``css``, ... (the ``subsystem`` link); None unknown.
    bus: str | None = None
    #: Its driver (the prefix of its type ids).
    driver: Maybe[str] = None
    #: Its device directory below ``sys/devices`` (non-PCI parents), when known.
    path: str | None = None
    #: None: the source does not show its types.
    types: tuple[MdevType, ...] | None = None

    @property
    def address(self) -> Address | None:
        """The PCI function, for a PCI parent."""
        if self.bus not in (None, "pci") or not is_address(self.name):
            return None
        return Address.parse(self.name)

    def type(self, type_id: str) -> MdevType | None:
        for t in self.types or ():
            if t.id == type_id:
                return t
        return None


@dataclass(frozen=True)
class MdevInfo:
    """Every mdev parent and active mdev a source showed (empty: known to be none)."""

    parents: tuple[MdevParent, ...] = ()
    instances: tuple[MdevInstance, ...] = ()
    #: Whether the IOMMU runs in scalable mode (Intel VT-d ECAP.SMTS and the kernel's
    #: ``intel_iommu=sm_on``/``sm_off``); None: not known.
    iommu_scalable_mode: bool | None = None

    @cached_property
    def _by_name(self) -> dict[str, MdevParent]:
        return {p.name: p for p in self.parents}

    def parent(self, name: str | Address) -> MdevParent | None:
        return self._by_name.get(str(name))

    def instance(self, uuid: str) -> MdevInstance | None:
        for i in self.instances:
            if i.uuid == uuid:
                return i
        return None

    def instances_of(self, parent: str | Address) -> tuple[MdevInstance, ...]:
        name = str(parent)
        return tuple(i for i in self.instances if i.parent == name)

    def group_members(self) -> dict[str, tuple[str, ...]]:
        """Group label -> the UUIDs vfio put in it."""
        out: dict[str, list[str]] = {}
        for i in self.instances:
            if isinstance(i.iommu_group, str):
                out.setdefault(i.iommu_group, []).append(i.uuid)
        return {k: tuple(v) for k, v in out.items()}


__all__ = ["MdevInfo", "MdevInstance", "MdevParent", "MdevType", "UUID_RE", "is_uuid"]
