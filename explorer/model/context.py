"""The kernel's context of a source: facts every prediction depends on, each with where it
came from.

A :class:`Fact` is *read* (from a file of the source, named in ``where``), *given* (by a
flag, named in ``where``) or *assumed* (``where`` says why), or *unknown* (``value`` is
None). The context itself is resolved once per source and set of flags by
:func:`explorer.kernel.context.resolve_context`; this module holds only the types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .address import Address

READ = "read"
GIVEN = "given"
ASSUMED = "assumed"
UNKNOWN = "unknown"

#: Slot hotplug drivers and the hot-add path each takes in the fit engine.
HOTPLUG_DRIVERS = ("acpiphp", "pciehp", "shpchp")
DRIVER_MODE = {"acpiphp": "acpi", "pciehp": "native", "shpchp": "native"}
MODE_DRIVER = {"acpi": "acpiphp", "native": "pciehp"}


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact of the context: its value (None: unknown) and where it came from."""

    value: Any
    how: str = UNKNOWN
    where: str = ""

    @property
    def known(self) -> bool:
        return self.value is not None

    def describe(self) -> str:
        v = "unknown" if self.value is None else (", ".join(self.value) if isinstance(self.value, tuple) else str(self.value))
        if self.how == UNKNOWN:
            return v + (f" ({self.where})" if self.where else "")
        return f"{v} ({self.how}{': ' + self.where if self.where else ''})"

    def to_dict(self) -> dict[str, Any]:
        v = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"value": v, "how": self.how, "where": self.where or None}


def read(value: Any, where: str) -> Fact:
    return Fact(value, READ if value is not None else UNKNOWN, where)


def given(value: Any, flag: str) -> Fact:
    return Fact(value, GIVEN, flag)


def assumed(value: Any, why: str) -> Fact:
    return Fact(value, ASSUMED, why)


def unknown(why: str = "") -> Fact:
    return Fact(None, UNKNOWN, why)


@dataclass(frozen=True, slots=True)
class KernelContext:
    """Everything a prediction reads about the running kernel, resolved once."""

    #: The kernel release string ("6.12.118+deb12-amd64").
    release: Fact
    #: Which of our rule sets applies ("6.1" or "6.12"); None: unknown, each is computed.
    rules: Fact
    #: The whole kernel command line.
    cmdline: Fact
    #: The parameters that matter (pci=, iommu=, intel_iommu=, amd_iommu=,
    #: pcie_acs_override=, vfio-pci.ids=), name -> Fact.
    params: tuple[tuple[str, Fact], ...]
    #: Whether an IOMMU is present, and which (intel, amd, arm-smmu, ...).
    iommu: Fact
    iommu_vendor: Fact
    #: Per IOMMU group label: its default domain type.
    group_types: tuple[tuple[str, Fact], ...]
    #: Per hotplug port (a bridge with a slot): the slot's hotplug driver.
    slot_drivers: tuple[tuple[Address, Fact], ...]
    #: Overrides applied, in words ("--hotplug native overrides pciehp read from ...").
    overrides: tuple[str, ...] = ()

    def slot_driver(self, port: Address) -> Fact:
        for a, f in self.slot_drivers:
            if a == port:
                return f
        return unknown("no hotplug slot known at this port")

    def param(self, name: str) -> Fact:
        for n, f in self.params:
            if n == name:
                return f
        return unknown()

    @property
    def certain(self) -> bool:
        """True when every fact a hot-add prediction needs is known."""
        return self.rules.known and self.cmdline.known

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel_release": self.release.to_dict(),
            "rules": self.rules.to_dict(),
            "kernel_cmdline": self.cmdline.to_dict(),
            "kernel_params": {n: f.to_dict() for n, f in self.params},
            "iommu": self.iommu.to_dict(),
            "iommu_vendor": self.iommu_vendor.to_dict(),
            "group_default_domains": {g: f.to_dict() for g, f in self.group_types},
            "slot_hotplug_drivers": {str(a): f.to_dict() for a, f in self.slot_drivers},
            "overrides": list(self.overrides),
        }

    def lines(self) -> list[str]:
        """The context as text lines (for show, the app's details and fit reports)."""
        out = [f"kernel: {self.release.describe()}; rules: {self.rules.describe()}",
               f"command line: {self.cmdline.describe()}"]
        ps = [f"{n}={f.value}" for n, f in self.params if f.known]
        if ps:
            out.append("parameters that matter: " + " ".join(ps))
        iommu = self.iommu.describe()
        if isinstance(self.iommu.value, bool):
            iommu = ("present" if self.iommu.value else "none") + iommu[len(str(self.iommu.value)):]
        out.append(f"IOMMU: {iommu}" + (f", {self.iommu_vendor.describe()}" if self.iommu_vendor.known else ""))
        if self.group_types:
            kinds: dict[str, int] = {}
            for _, f in self.group_types:
                kinds[str(f.value)] = kinds.get(str(f.value), 0) + 1
            out.append("default domain types: " + ", ".join(f"{k} ({n} groups)" for k, n in sorted(kinds.items())))
        for a, f in self.slot_drivers:
            out.append(f"slot hotplug at {a}: {f.describe()}")
        out += [f"override: {o}" for o in self.overrides]
        return out


def iommu_vendor(units: tuple[str, ...]) -> str | None:
    """The IOMMU's maker from its unit names in /sys/class/iommu."""
    for u in units:
        if u.startswith("dmar"):
            return "intel"
        if u.startswith("ivhd"):
            return "amd"
        if "smmu" in u:
            return "arm-smmu"
        if "viommu" in u or "virtio" in u:
            return "virtio-iommu"
    return units[0] if units else None
