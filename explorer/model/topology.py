"""A whole machine's PCI tree, as one source described it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

from .address import Address
from .device import ABSENT, Function, HostBridge, present
from .thunderbolt import ThunderboltDevice
from .mdev import MdevInfo

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Where a topology came from, and what was true of that machine."""

    kind: str  # "sysfs", "snapshot", "yaml", "lspci", ...
    location: str
    description: str | None = None
    kernel_release: str | None = None
    kernel_cmdline: str | None = None
    #: Whether an IOMMU driver grouped devices (None: the source does not say).
    iommu_present: bool | None = None
    #: Default domain type per reported group label (sysfs ``type`` file).
    group_types: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    #: ``/sys/bus/thunderbolt/devices`` (model/thunderbolt.py); None: the source does not show it.
    thunderbolt: tuple[ThunderboltDevice, ...] | None = None
    #: Firmware facts as (name, value), e.g. ("bios_version", "1.16.3"): the DMI
    #: ``/sys/class/dmi/id/bios_*`` files; () when the source does not say.
    firmware: tuple[tuple[str, str], ...] = ()
    #: IOMMU units the kernel registered (``/sys/class/iommu`` names: dmar0, ivhd0, ...);
    #: () known to be none, None unknown.
    iommu_units: tuple[str, ...] | None = None
    #: Where each context fact was read: (fact, file), e.g. ("kernel_cmdline", "proc/cmdline").
    provenance: tuple[tuple[str, str], ...] = ()
    #: Slot hotplug drivers read per bridge (also on ports' SlotInfo.hotplug_driver; this one
    #: holds them for bridges with no slot capability of their own, e.g. a PCI bridge's slots).
    slot_drivers: tuple[tuple[Address, str], ...] = ()


class TopologyError(ValueError):
    """The topology is inconsistent (two functions with one address, ...)."""


@dataclass(frozen=True)
class Topology:
    functions: Mapping[Address, Function]
    host_bridges: tuple[HostBridge, ...] = ()
    source: SourceInfo = field(default_factory=lambda: SourceInfo("memory", "<memory>"))
    #: Mediated-device parents, types and instances (model/mdev.py); None: the source cannot show them.
    mdev: MdevInfo | None = None

    @classmethod
    def build(
        cls,
        functions: Iterable[Function],
        host_bridges: Iterable[HostBridge] = (),
        source: SourceInfo | None = None,
        mdev: MdevInfo | None = None,
    ) -> "Topology":
        by_addr: dict[Address, Function] = {}
        for fn in functions:
            if fn.address in by_addr:
                raise TopologyError(f"two functions at {fn.address}")
            by_addr[fn.address] = fn
        # A tuple key sorts far faster than Address.__lt__ (100k functions: ~10x).
        ordered = {a: by_addr[a] for a in sorted(by_addr, key=lambda a: (a.domain, a.bus, a.device, a.function))}
        hbs = tuple(sorted(host_bridges, key=lambda h: (h.domain, h.root_bus)))
        return cls(ordered, hbs, source or SourceInfo("memory", "<memory>"), mdev)

    def memo(self, name: str, compute: Callable[[], _T]) -> _T:
        """``compute()`` once per topology, kept with it under ``name`` (derived facts that
        layers below the model compute: the kernel context, its text lines)."""
        try:  # looked up by the name itself (a literal: its hash is kept), no key built per call
            return self.__dict__["_memos"][name]
        except KeyError:
            value = self.__dict__.setdefault("_memos", {})[name] = compute()
            return value

    # ---- lookups ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.functions)

    def __iter__(self) -> Iterator[Function]:
        return iter(self.functions.values())

    def __contains__(self, addr: object) -> bool:
        return addr in self.functions

    def get(self, addr: Address | str) -> Function | None:
        if isinstance(addr, str):
            addr = Address.parse(addr)
        return self.functions.get(addr)

    def __getitem__(self, addr: Address | str) -> Function:
        fn = self.get(addr)
        if fn is None:
            raise KeyError(str(addr))
        return fn

    @cached_property
    def _children(self) -> dict[Address | None, tuple[Address, ...]]:
        kids: dict[Address | None, list[Address]] = {}
        for fn in self.functions.values():
            kids.setdefault(fn.parent, []).append(fn.address)
        return {k: tuple(v) for k, v in kids.items()}

    def children(self, addr: Address | None) -> tuple[Address, ...]:
        """Functions whose upstream bridge is ``addr`` (None: root-bus functions)."""
        return self._children.get(addr, ())

    def roots(self) -> tuple[Address, ...]:
        """Functions on a root bus (no upstream bridge)."""
        return self.children(None)

    def path_to_root(self, addr: Address) -> list[Address]:
        """The function, then each upstream bridge, up to the root bus."""
        path = []
        cur: Address | None = addr
        seen = set()
        while cur is not None and cur not in seen:
            seen.add(cur)
            path.append(cur)
            fn = self.functions.get(cur)
            cur = fn.parent if fn else None
        return path

    @cached_property
    def domains(self) -> tuple[int, ...]:
        return tuple(sorted({a.domain for a in self.functions} | {h.domain for h in self.host_bridges}))

    @cached_property
    def vmd_domains(self) -> dict[int, Address]:
        """PCI domain -> the VMD endpoint that owns it."""
        owners = {fn.vmd_domain: fn.address for fn in self.functions.values() if fn.vmd_domain is not None}
        for hb in self.host_bridges:
            if hb.vmd_owner is not None:
                owners.setdefault(hb.domain, hb.vmd_owner)
        return owners

    def host_bridge(self, domain: int, bus: int | None = None) -> HostBridge | None:
        for hb in self.host_bridges:
            if hb.domain != domain:
                continue
            if bus is None or hb.root_bus == bus:
                return hb
            if hb.bus_range and hb.bus_range[0] <= bus <= hb.bus_range[1]:
                return hb
        return None

    @cached_property
    def reported_groups(self) -> dict[str, tuple[Address, ...]]:
        """Groups as the kernel reported them: label -> members."""
        groups: dict[str, list[Address]] = {}
        for fn in self.functions.values():
            if present(fn.iommu_group):
                groups.setdefault(fn.iommu_group, []).append(fn.address)  # type: ignore[arg-type]
        return {k: tuple(v) for k, v in sorted(groups.items(), key=lambda kv: _group_sort_key(kv[0]))}

    def slot_siblings(self, addr: Address) -> tuple[Address, ...]:
        """Other functions in the same slot (same domain, bus and device number)."""
        return tuple(a for a in self._by_slot.get(addr.slot, ()) if a != addr)

    @cached_property
    def _by_slot(self) -> dict[tuple[int, int, int], tuple[Address, ...]]:
        slots: dict[tuple[int, int, int], list[Address]] = {}
        for a in self.functions:
            slots.setdefault(a.slot, []).append(a)
        return {k: tuple(v) for k, v in slots.items()}

    def bridge_for_bus(self, domain: int, bus: int) -> Function | None:
        """The bridge whose secondary bus is ``bus`` (None for a root bus)."""
        return self._bridge_by_secondary.get((domain, bus))

    @cached_property
    def _bridge_by_secondary(self) -> dict[tuple[int, int], Function]:
        out: dict[tuple[int, int], Function] = {}
        for fn in self.functions.values():
            br = fn.bridge
            if present(br) and br.secondary is not None and br.secondary > 0:  # type: ignore[union-attr]
                out.setdefault((fn.address.domain, br.secondary), fn)  # type: ignore[union-attr]
        return out


def _group_sort_key(label: str) -> tuple[int, int | str]:
    return (0, int(label)) if label.isdigit() else (1, label)


__all__ = ["Topology", "SourceInfo", "TopologyError", "ABSENT"]
