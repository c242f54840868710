"""The tree people look at: root buses, then bridges and devices below them.

It differs from the kernel's parent links in two ways that match how people
think of a machine: SR-IOV VFs hang under their PF, and a VMD domain's root bus
hangs under the VMD endpoint that owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Union

from .address import Address
from .device import HostBridge
from .topology import Topology


@dataclass(frozen=True, slots=True)
class RootBusKey:
    domain: int
    bus: int

    def __str__(self) -> str:
        return f"pci{self.domain:04x}:{self.bus:02x}"


NodeKey = Union[RootBusKey, Address]


class DisplayTree:
    """Children lookups for the displayed tree; built once per topology, O(n)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    @cached_property
    def _index(self) -> dict[NodeKey | None, list[NodeKey]]:
        t = self.topology
        kids: dict[NodeKey | None, list[NodeKey]] = {}
        vmd = t.vmd_domains
        roots: set[RootBusKey] = {RootBusKey(h.domain, h.root_bus) for h in t.host_bridges}
        for fn in t:
            a = fn.address
            if fn.physfn is not None and fn.physfn in t.functions:
                kids.setdefault(fn.physfn, []).append(a)
            elif fn.parent is not None and fn.parent in t.functions:
                kids.setdefault(fn.parent, []).append(a)
            else:
                rk = RootBusKey(a.domain, a.bus)
                roots.add(rk)
                kids.setdefault(rk, []).append(a)
        for rk in sorted(roots, key=lambda k: (k.domain, k.bus)):
            owner = vmd.get(rk.domain)
            if owner is not None and owner in t.functions:
                kids.setdefault(owner, []).append(rk)
            else:
                kids.setdefault(None, []).append(rk)
        for k, v in kids.items():
            v.sort(key=_sort_key)
        return kids

    def children(self, key: NodeKey | None) -> list[NodeKey]:
        """Children of ``key``; ``None`` gives the top-level root buses."""
        return self._index.get(key, [])

    def has_children(self, key: NodeKey) -> bool:
        return bool(self._index.get(key))

    @cached_property
    def _parent(self) -> dict[NodeKey, NodeKey | None]:
        return {c: p for p, cs in self._index.items() for c in cs}

    def path_to(self, key: NodeKey) -> list[NodeKey]:
        """Keys from the top level down to ``key`` (inclusive)."""
        path = [key]
        seen = {key}
        cur = self._parent.get(key)
        while cur is not None and cur not in seen:
            path.append(cur)
            seen.add(cur)
            cur = self._parent.get(cur)
        return list(reversed(path))

    def host_bridge(self, key: RootBusKey) -> HostBridge | None:
        return self.topology.host_bridge(key.domain, key.bus)


def _sort_key(k: NodeKey) -> tuple:
    if isinstance(k, RootBusKey):
        return (1, k.domain, k.bus, 0, 0)
    return (0, k.domain, k.bus, k.device, k.function)
