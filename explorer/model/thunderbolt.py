"""Thunderbolt / USB4 devices as the kernel's thunderbolt bus shows them.

``/sys/bus/thunderbolt/devices/*`` (drivers/thunderbolt/domain.c, switch.c; Documentation/
admin-guide/thunderbolt.rst): a *domain* (``domainN``, one per host router, below its NHI PCI
function) carries the ``security`` level and ``iommu_dma_protection``; every *router*
(``N-R...``) carries ``authorized`` (0: its PCIe tunnels are not set up; 1: authorized;
2: authorized with a challenge key), and its ``vendor_name`` / ``device_name``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .address import Address

#: The domain ``security`` levels (domain.c tb_security_names) and what each means.
SECURITY_LEVELS = {
    "none": "no security: every device is connected and its PCIe tunnels set up automatically",
    "user": "user approval: a device's PCIe tunnels are set up only after something writes 1 to its authorized",
    "secure": "secure connect: like user, plus a challenge key stored in the device",
    "dponly": "DisplayPort only: no PCIe tunnels at all",
    "usbonly": "USB only: only the first-level dock's USB controller is tunnelled",
    "nopcie": "PCIe tunnelling is disabled",
}


@dataclass(frozen=True, slots=True)
class ThunderboltDevice:
    """One entry of ``/sys/bus/thunderbolt/devices`` (None: the file was not there)."""

    name: str
    authorized: int | None = None
    security: str | None = None
    iommu_dma_protection: bool | None = None
    vendor_name: str | None = None
    device_name: str | None = None
    #: For a domain: the PCI function (NHI) it belongs to, when the link shows it.
    pci_device: Address | None = None

    @property
    def is_domain(self) -> bool:
        return self.name.startswith("domain")

    @property
    def is_router(self) -> bool:
        """A router (``0-0`` is the host's own, ``0-1``, ``0-301`` ... are connected devices)."""
        head, sep, tail = self.name.partition("-")
        return bool(sep) and head.isdigit() and tail.isdigit()

    @property
    def is_host_router(self) -> bool:
        return self.is_router and self.name.split("-", 1)[1] == "0"
