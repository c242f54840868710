"""Predict IOMMU groups exactly as the kernel forms them, and explain each one.

This replays ``pci_device_group()`` (drivers/iommu/iommu.c) for every function,
in the order the kernel probes them, with the same "does this device already
have a group?" tests. Probe order only matters in rare corners (a multifunction
flag set on one function of a slot but not another), but replaying it is what
makes the result the kernel's and not an approximation of it:

1. DMA alias walk (``pci_for_each_dma_alias``): the device, or for a device in a
   VMD domain the VMD endpoint (``pci_real_dma_dev``); then each bridge up to the
   root bus that takes over the requester ID (PCIe-to-PCI bridges as (secondary
   bus, 00.0), conventional PCI bridges, PCI-to-PCIe bridges), stopping at a
   ``PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT`` bridge. The first visited device that has a
   group decides; otherwise the last visited one is the anchor.
2. Up the tree from the anchor: at each bridge, stop when ``pci_acs_path_enabled``
   holds (REQ_ACS_FLAGS = SV|RR|CR|UF); otherwise the bridge becomes the anchor
   and, if it has a group, that is the answer.
3. ``get_pci_alias_group``: DMA aliases (alias quirks) on the anchor's bus.
4. ``get_pci_function_alias_group``: when the anchor is multifunction and not
   isolated, the other non-isolated functions of its slot.
5. Otherwise a new group.

Devices the kernel gave no group (no ``iommu_group`` while others have one) are
never probed, so no device can join them; their own would-be group is still
worked out, and reported in ``no_group``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, NamedTuple

from .. import gcpause
from ..model import ABSENT, Address, Function, PcieType, Topology, present
from .acs import MF_ASSUMED, NO_ACS, REQ_ACS_FLAGS, AcsEnvironment, AcsVerdict, acs_verdict
from .quirks import (
    NO_ALIASES,
    AcsOverride,
    AliasDevice,
    AliasInfo,
    acs_override_in_cmdline,
    acs_table,
    dma_alias_fixups,
    has_dma_alias_quirk,
)

__all__ = ["GroupPrediction", "Mismatch", "acs_override_in_cmdline", "predict_groups"]


# ---- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mismatch:
    """One connected difference between two set partitions.

    ``reported`` and ``predicted`` hold every group (label -> members) of either
    side that overlaps the difference; a side may be empty (a device one side
    groups and the other does not).
    """

    reported: dict[str, tuple[Address, ...]]
    predicted: dict[str, tuple[Address, ...]]
    message: str

    def __str__(self) -> str:
        return self.message


class _Join(NamedTuple):
    """How one device got its group (one step of pci_device_group)."""

    kind: str  # "new", "vmd", "alias-bridge", "below", "dma-alias", "function"
    #: Device index: the anchor (new), the VMD endpoint, the aliasing bridge, the
    #: anchoring bridge, or the device whose alias/function scan found the group.
    via: int
    #: For dma-alias/function: the device whose existing group was found.
    found: int | None = None


class _LazyExplanations(dict):
    """label -> reasons, each worked out the first time it is asked for.

    Writing the reasons costs about as much as forming the groups; a 100k-function
    machine has ~100k groups and a person reads a handful, so they are made on demand.
    It behaves as a plain dict of every label (iteration, ``in``, ``get``, ``items``).
    """

    def __init__(self, labels: list[str], make) -> None:
        super().__init__()
        self._labels = labels
        self._known = set(labels)
        self._make = make

    def __missing__(self, label: str) -> list[str]:
        if label not in self._known:
            raise KeyError(label)
        value = self._make(label)
        dict.__setitem__(self, label, value)
        return value

    def _fill(self) -> None:
        for label in self._labels:
            if not dict.__contains__(self, label):
                self[label]

    def get(self, label, default=None):  # type: ignore[override]
        return self[label] if label in self._known else default

    def __contains__(self, label: object) -> bool:
        return label in self._known

    def __iter__(self):
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def keys(self):  # type: ignore[override]
        self._fill()
        return dict.keys(self)

    def values(self):  # type: ignore[override]
        self._fill()
        return dict.values(self)

    def items(self):  # type: ignore[override]
        self._fill()
        return dict.items(self)

    def __eq__(self, other: object) -> bool:
        self._fill()
        if isinstance(other, _LazyExplanations):
            other._fill()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._fill()
        return dict.__repr__(self)


@dataclass
class GroupPrediction:
    #: label -> members (sorted), labels in address order of each group's lowest member.
    groups: dict[str, tuple[Address, ...]]
    group_of: dict[Address, str]
    #: label -> a short chain of causes, each naming devices (made on first access).
    explanations: dict[str, list[str]]
    #: True when the prediction rests on a what-if (assume_acs, acs_override).
    hypothetical: bool = False
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Devices the kernel gave no group (the topology shows none while others have one):
    #: address -> what pci_device_group would have done with them.
    no_group: dict[Address, str] = field(default_factory=dict)
    #: The pcie_acs_override value the reported groups were formed with, if any.
    reported_override: str | None = None
    _sim: "_Simulator | None" = field(default=None, repr=False, compare=False)

    def why(self, addr: Address) -> str | None:
        """One line: how the kernel puts ``addr`` in its group (None: not grouped or unknown)."""
        sim = self._sim
        if sim is None or addr not in sim.idx:
            return None
        i = sim.idx[addr]
        j = sim.joins[i]
        return _why_line(sim, i, j) if j is not None else None

    def compare(self, reported: Mapping[str, Iterable[Address]]) -> list[Mismatch]:
        """Differences from ``reported`` (label -> members) as set partitions.

        Group numbers are labels only: two partitions match when they hold the
        same sets. Devices in ``no_group`` count only if ``reported`` groups them.
        """
        rep = {k: tuple(sorted(v)) for k, v in reported.items()}
        rep_of = {a: k for k, v in rep.items() for a in v}
        pred = self.groups
        pred_of = self.group_of
        # Groups identical on both sides are fine; everything else is linked through shared devices.
        rep_sets = {frozenset(v) for v in rep.values()}
        pred_sets = {frozenset(v) for v in pred.values()}
        starts = [("r", k) for k, v in rep.items() if frozenset(v) not in pred_sets]
        starts += [("p", k) for k, v in pred.items() if frozenset(v) not in rep_sets]
        starts.sort(key=lambda sk: ((rep if sk[0] == "r" else pred)[sk[1]][:1], sk))
        out: list[Mismatch] = []
        seen: set[tuple[str, str]] = set()
        for first in starts:
            if first in seen:
                continue
            comp: set[tuple[str, str]] = set()
            stack = [first]
            while stack:
                node = stack.pop()
                if node in comp:
                    continue
                comp.add(node)
                side, label = node
                if side == "r":
                    stack.extend(("p", pred_of[a]) for a in rep[label] if a in pred_of)
                else:
                    stack.extend(("r", rep_of[a]) for a in pred[label] if a in rep_of)
            seen |= comp
            r = {k: rep[k] for k in sorted((k for sd, k in comp if sd == "r"), key=_label_key)}
            p = {k: pred[k] for k in sorted((k for sd, k in comp if sd == "p"), key=_label_key)}
            out.append(Mismatch(r, p, _mismatch_message(r, p)))
        return out

    def matches(self, reported: Mapping[str, Iterable[Address]]) -> bool:
        return not self.compare(reported)


def _label_key(label: str) -> tuple[int, int | str]:
    return (0, int(label)) if label.isdigit() else (1, label)


def _mismatch_message(r: dict[str, tuple[Address, ...]], p: dict[str, tuple[Address, ...]]) -> str:
    rs = "; ".join(f"{k}: {_list(v)}" for k, v in r.items()) or "none"
    ps = "; ".join(f"{k}: {_list(v)}" for k, v in p.items()) or "none"
    if not r:
        return f"predicted {ps}, but the kernel reported no group for these devices"
    if not p:
        return f"the kernel reported {rs}, but the prediction groups none of these devices"
    if len(r) == 1 and len(p) > 1:
        return f"the kernel formed one group ({rs}) that the prediction splits ({ps})"
    if len(p) == 1 and len(r) > 1:
        return f"the prediction merges ({ps}) what the kernel kept apart ({rs})"
    return f"the kernel reported {rs}; the prediction has {ps}"


# ---- helpers ----------------------------------------------------------------------------------
def _list(addrs: Iterable[Address], limit: int = 6) -> str:
    return _list_str([str(a) for a in addrs], limit)


def _slot_name(a: Address) -> str:
    return f"{a.domain:04x}:{a.bus:02x}:{a.device:02x}"


def _kind(fn: Function | None) -> str:
    if fn is None:
        return "device"
    if fn.pcie_type is None:
        return "device of unknown PCIe type"
    if fn.pcie_type is PcieType.CONVENTIONAL:
        return "conventional PCI bridge" if fn.is_bridge else "conventional PCI device"
    return fn.pcie_type.label


class _Simulator:
    """pci_device_group over integer device indices (Address hashing is the hot path otherwise)."""

    def __init__(self, topology: Topology, assume: frozenset[Address], override: AcsOverride | None) -> None:
        self.t = topology
        fns = topology.functions
        self.addrs: list[Address] = list(fns)
        self.fnl: list[Function] = list(fns.values())
        self.idx: dict[Address, int] = {a: i for i, a in enumerate(self.addrs)}
        n = len(self.addrs)
        self.env = AcsEnvironment.of(topology)
        self.table = acs_table(override)
        self.assume = {self.idx[a] for a in assume if a in self.idx}
        self.override = override
        self.warnings: dict[str, None] = {}
        self.assumptions: dict[str, None] = {}
        idx = self.idx
        parent = [-1] * n
        self.vf = [False] * n
        slots: dict[tuple[int, int, int], list[int]] = {}
        masked: dict[tuple[int, int], list[int]] = {}
        self._alias: list[AliasInfo | None] = [None] * n
        quirked: list[int] = []
        for i, fn in enumerate(self.fnl):
            p = fn.parent
            if p is not None:
                j = idx.get(p)
                if j is None:
                    self.warnings[f"{self.addrs[i]}: its upstream bridge {p} is not in the topology; "
                                  "treated as on a root bus"] = None
                else:
                    parent[i] = j
            if fn.is_virtfn or fn.physfn is not None:
                self.vf[i] = True
            a = self.addrs[i]
            key = (a.domain, a.bus, a.device)
            lst = slots.get(key)
            if lst is None:
                slots[key] = [i]
            else:
                lst.append(i)
            if has_dma_alias_quirk(fn.vendor_id, fn.device_id):
                quirked.append(i)
        self.parent = parent
        #: slot -> its functions, only for slots with more than one function.
        self.slot_members = {k: v for k, v in slots.items() if len(v) > 1}
        for i in quirked:
            if self.alias_info(i).devfns:
                a = self.addrs[i]
                masked.setdefault((a.domain, a.bus), []).append(i)
        self.masked = masked
        self.vmd: dict[int, int] = {d: idx[o] for d, o in topology.vmd_domains.items() if o in idx}
        self._verdict: list[AcsVerdict | None] = [None] * n
        self._vcache: dict[tuple, AcsVerdict] = {}
        self._path_ok: list[int] = [-1] * n
        self._first_alias: list[int] = [-2] * n  # -2: not computed; -1: none
        self._top_bad: list[int] = [-2] * n
        self._mf: list[object] = [_UNSET] * n
        self._mf_assumed: set[int] = set()
        self.gid: list[int] = [-1] * n
        self.members: list[list[int]] = []
        self.joins: list[_Join | None] = [None] * n
        self.order: list[int] = [0] * n
        #: bridge -> the non-VF functions below it (filled by probe_order)
        self.kids: dict[int, list[int]] = {}
        self._str: list[str | None] = [None] * n

    def name(self, i: int) -> str:
        s = self._str[i]
        if s is None:
            a = self.addrs[i]  # str(Address), formatted the same way, a little faster
            s = self._str[i] = "%04x:%02x:%02x.%x" % (a.domain, a.bus, a.device, a.function)
        return s

    def siblings(self, i: int) -> list[int]:
        a = self.addrs[i]
        m = self.slot_members.get((a.domain, a.bus, a.device))
        return [j for j in m if j != i] if m else []

    # ---- kernel facts --------------------------------------------------------------------
    def mf(self, i: int) -> bool | None:
        """``dev->multifunction`` (see acs.kernel_multifunction)."""
        v = self._mf[i]
        if v is not _UNSET:
            return v  # type: ignore[return-value]
        fn = self.fnl[i]
        a = self.addrs[i]
        r: bool | None
        if self.vf[i]:
            r = False
        elif a.function > 0:
            r = True
        elif a.device > 0 and self.parent[i] >= 0 and self.fnl[self.parent[i]].pcie_type in (
                PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM):
            r = True
        elif fn.multifunction is not None:
            r = fn.multifunction
        elif any(not self.vf[j] for j in self.siblings(i)):
            r = True
        else:
            r = False  # header not shown, no other function in the slot: see MF_ASSUMED
            self._mf_assumed.add(i)
        self._mf[i] = r
        return r

    def on_root_bus(self, i: int) -> bool:
        if self.parent[i] >= 0:
            return False
        fn = self.fnl[i]
        if self.vf[i] and fn.physfn is not None:
            pf = self.idx.get(fn.physfn)
            if pf is not None and self.addrs[pf].bus != self.addrs[i].bus:
                return False  # a VF bus of its own below the root bus
        return True

    def acs(self, i: int) -> AcsVerdict:
        """``pci_acs_enabled(dev, REQ_ACS_FLAGS)``, memoised, noting unknowns and assumptions."""
        v = self._verdict[i]
        if v is not None:
            return v
        if i in self.assume:
            v = AcsVerdict(True, "is assumed to isolate with ACS SV, RR, CR and UF enabled (what-if)",
                           hypothetical=True, cause="assumed ACS (what-if)")
        else:
            fn = self.fnl[i]
            mf = self.mf(i)
            root = self.on_root_bus(i)
            key = (fn.vendor_id, fn.device_id, fn.pcie_type, mf, root, fn.caps.acs, fn.config_size)
            v = self._vcache.get(key)
            if v is None:
                v = acs_verdict(fn, self.t, self.env, REQ_ACS_FLAGS, self.table, multifunction=mf, on_root_bus=root)
                if v.assumption is None:
                    self._vcache[key] = v
            if not v.known:
                self.warnings[f"{self.name(i)} {v.reason}"] = None
            if v.cause == "single-function" and i in self._mf_assumed:
                self.assumptions[f"{self.name(i)}: {MF_ASSUMED}"] = None
            if v.assumption:
                self.assumptions[v.assumption] = None
            if v.hypothetical and self.override is not None:
                self.assumptions[f"{self.name(i)} counts as isolated only because of pcie_acs_override="
                                 f"{self.override.text} (out-of-tree patch; what-if)"] = None
        self._verdict[i] = v
        return v

    def alias_info(self, i: int) -> AliasInfo:
        info = self._alias[i]
        if info is not None:
            return info
        fn = self.fnl[i]
        if not has_dma_alias_quirk(fn.vendor_id, fn.device_id):
            info = NO_ALIASES
        else:
            p = self.parent[i]
            dev = AliasDevice(self.addrs[i], fn.vendor_id, fn.device_id, fn.subsystem_vendor_id,
                              fn.subsystem_device_id, fn.class_code, fn.header_type, fn.pcie_type, p < 0,
                              self.fnl[p].pcie_type if p >= 0 else None)
            info = dma_alias_fixups(dev)
            for u in info.unknown:
                self.warnings[f"{self.name(i)}: DMA alias quirk {u} is unknown; no alias assumed"] = None
        self._alias[i] = info
        return info

    def bridge_alias(self, t: int) -> str | None:
        """How bridge ``t`` takes over DMA from below in pci_for_each_dma_alias, or None."""
        pt = self.fnl[t].pcie_type
        if pt in (PcieType.ROOT_PORT, PcieType.SWITCH_UPSTREAM, PcieType.SWITCH_DOWNSTREAM):
            return None
        if pt is PcieType.PCIE_TO_PCI_BRIDGE:
            return "pcie-to-pci"
        if pt is PcieType.PCI_TO_PCIE_BRIDGE:
            return "pci-to-pcie"
        if pt is PcieType.CONVENTIONAL:
            return "pcie-bridge-alias" if self.alias_info(t).pcie_bridge_alias else "conventional"
        if pt is None:
            self.warnings[f"{self.name(t)}: PCIe type unknown, so it is assumed to take over the requester ID of "
                          "the devices below it (as a conventional PCI bridge would): they share its group"] = None
            return "unknown"
        return None  # other PCIe types: no case in the kernel's switch, no alias

    def first_alias(self, b: int) -> int:
        """The first bridge at or above ``b`` that pci_for_each_dma_alias visits (-1: none before an
        XLATE_ROOT bridge or the root bus)."""
        memo = self._first_alias
        chain: list[int] = []
        cur = b
        result = -1
        while cur >= 0:
            m = memo[cur]
            if m != -2:
                result = m
                break
            if self.alias_info(cur).xlate_root:
                memo[cur] = result = -1
                break
            if self.bridge_alias(cur) is not None:
                memo[cur] = result = cur
                break
            chain.append(cur)
            cur = self.parent[cur]
        for c in chain:
            memo[c] = result
        return result

    def path_ok(self, a: int) -> bool:
        """``pci_acs_path_enabled(a, NULL, REQ_ACS_FLAGS)``, memoised per bridge (bottom-up, as the
        kernel evaluates it, so only the devices it would test are consulted)."""
        memo = self._path_ok
        r = memo[a]
        if r >= 0:
            return bool(r)
        chain: list[int] = []
        cur = a
        while True:
            m = memo[cur]
            if m >= 0:
                result = m
                break
            chain.append(cur)
            if not self.acs(cur).isolated:
                result = 0
                break
            up = self.parent[cur]
            if up < 0:
                result = 1
                break
            cur = up
        for c in chain:
            memo[c] = result
        return bool(result)

    def top_bad(self, a: int) -> int:
        """The highest bridge at or above ``a`` that is not isolated (-1: none)."""
        memo = self._top_bad
        if memo[a] != -2:
            return memo[a]
        chain: list[int] = []
        cur = a
        above = -1
        while cur >= 0:
            if memo[cur] != -2:
                above = memo[cur]
                break
            chain.append(cur)
            cur = self.parent[cur]
        for c in reversed(chain):
            if above < 0 and not self.acs(c).isolated:
                above = c
            memo[c] = above
        return memo[a]

    # ---- pci_device_group ----------------------------------------------------------------
    def device_group(self, d: int) -> tuple[int, _Join]:
        gid = self.gid
        parent = self.parent
        real = d
        if self.vmd:
            owner = self.vmd.get(self.addrs[d].domain)
            if owner is not None and owner != d:
                real = owner
                if gid[real] >= 0:
                    return gid[real], _Join("vmd", real)
        last = real
        b = parent[real]
        fa = self._first_alias
        while b >= 0:
            t = fa[b]
            if t == -2:
                t = self.first_alias(b)
            if t < 0:
                break
            last = t
            if gid[t] >= 0:
                return gid[t], _Join("alias-bridge", t)
            b = parent[t]
        pdev = last
        a = parent[pdev]
        po = self._path_ok
        while a >= 0:
            ok = po[a]
            if ok == 1 or (ok < 0 and self.path_ok(a)):
                break
            pdev = a
            if gid[a] >= 0:
                return gid[a], _Join("below", a)
            a = parent[a]
        # pdev has no group here (else the walk above returned it), so get_pci_alias_group can
        # only find one through aliases, and get_pci_function_alias_group only through siblings.
        pa = self.addrs[pdev]
        has_masked = bool(self.masked) and (pa.domain, pa.bus) in self.masked
        if not has_masked and (pa.domain, pa.bus, pa.device) not in self.slot_members:
            return -1, _Join("new", pdev)
        devfns: set[int] = set()
        if has_masked:
            hit = self.alias_group(pdev, devfns)
            if hit is not None:
                return hit[0], _Join("dma-alias", pdev, hit[1])
        else:
            devfns.add(pa.devfn)
        hit = self.function_alias_group(pdev, devfns)
        if hit is not None:
            return hit[0], _Join("function", pdev, hit[1])
        return -1, _Join("new", pdev)

    def alias_peers(self, i: int) -> list[int]:
        """Devices on ``i``'s bus that it aliases or that alias it (pci_devs_are_dma_aliases)."""
        a = self.addrs[i]
        masked = self.masked.get((a.domain, a.bus))
        if not masked:
            return []
        mine = self.alias_info(i).devfns
        out: set[int] = set()
        for devfn in mine:
            o = self.idx.get(Address.from_rid(a.domain, a.bus, devfn))
            if o is not None and o != i:
                out.add(o)
        for o in masked:
            if o != i and a.devfn in self.alias_info(o).devfns:
                out.add(o)
        return sorted(out, key=self.order.__getitem__)

    def alias_group(self, i: int, devfns: set[int]) -> tuple[int, int] | None:
        """get_pci_alias_group: (group, device that has it)."""
        devfn = self.addrs[i].devfn
        if devfn in devfns:
            return None
        devfns.add(devfn)
        if self.gid[i] >= 0:
            return self.gid[i], i
        for tmp in self.alias_peers(i):
            hit = self.alias_group(tmp, devfns)
            if hit is not None:
                return hit
            hit = self.function_alias_group(tmp, devfns)
            if hit is not None:
                return hit
        return None

    def function_alias_group(self, i: int, devfns: set[int]) -> tuple[int, int] | None:
        """get_pci_function_alias_group (for_each_pci_dev order: slot lists are in probe order)."""
        a = self.addrs[i]
        slot = self.slot_members.get((a.domain, a.bus, a.device))
        if not slot:
            return None  # nothing to scan: NULL either way
        if self.mf(i) is False or self.acs(i).isolated:
            return None
        plain = (a.domain, a.bus) not in self.masked  # no alias quirk on this bus
        gid = self.gid
        for tmp in slot:
            if tmp == i or self.acs(tmp).isolated:
                continue
            if plain:  # get_pci_alias_group(tmp) without aliases: the devfn bitmap, then tmp's group
                devfn = self.addrs[tmp].devfn
                if devfn in devfns:
                    continue
                devfns.add(devfn)
                if gid[tmp] >= 0:
                    return gid[tmp], tmp
                continue
            hit = self.alias_group(tmp, devfns)
            if hit is not None:
                return hit
        return None

    # ---- probe order -----------------------------------------------------------------------
    def probe_order(self) -> list[int]:
        """Bus scan order: each bus's devices, then each bridge's subtree; VMD domains after the
        rest (the vmd driver binds later); VFs last, after their PFs (SR-IOV is enabled later)."""
        n = len(self.addrs)
        kids: dict[int, list[int]] = {}
        roots: list[int] = []
        vfs: list[int] = []
        for i in range(n):  # address order
            if self.vf[i]:
                vfs.append(i)
            elif self.parent[i] < 0:
                roots.append(i)
            else:
                kids.setdefault(self.parent[i], []).append(i)
        self.kids = kids
        out: list[int] = []
        emitted = [False] * n

        def visit(bus_devs: list[int]) -> None:
            out.extend(bus_devs)
            for x in bus_devs:
                emitted[x] = True
            stack: list[Iterator[int]] = [iter(bus_devs)]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    stack.pop()
                    continue
                ch = kids.get(nxt)
                if not ch:
                    continue
                below = [c for c in ch if not emitted[c]]
                if below:
                    out.extend(below)
                    for x in below:
                        emitted[x] = True
                    stack.append(iter(below))

        buses: dict[tuple[int, int], list[int]] = {}
        for i in roots:
            a = self.addrs[i]
            buses.setdefault((a.domain, a.bus), []).append(i)
        for key in sorted(buses, key=lambda k: (k[0] in self.vmd, k)):
            visit(buses[key])
        if len(out) + len(vfs) < n:
            for i in range(n):  # anything unreachable (a parent cycle): address order
                if not emitted[i] and not self.vf[i]:
                    out.append(i)
                    emitted[i] = True
        if not vfs:
            return out
        rank = {i: r for r, i in enumerate(out)}

        def vf_key(v: int) -> tuple[int, int]:
            pf = self.fnl[v].physfn
            j = self.idx.get(pf) if pf is not None else None
            return (rank.get(j, n) if j is not None else n, v)

        vfs.sort(key=vf_key)
        out.extend(vfs)
        return out

    # ---- run -------------------------------------------------------------------------------
    def run(self, no_group: set[int]) -> dict[int, tuple[int, _Join]]:
        order = self.probe_order()
        for r, i in enumerate(order):
            self.order[i] = r
        for lst in self.slot_members.values():
            lst.sort(key=self.order.__getitem__)
        gid = self.gid
        members = self.members
        joins = self.joins
        for d in order:
            if d in no_group:
                continue
            g, j = self.device_group(d)
            if g < 0:
                g = len(members)
                members.append([])
            gid[d] = g
            members[g].append(d)
            joins[d] = j
        return {d: self.device_group(d) for d in order if d in no_group}


_UNSET = object()


# ---- explanations ---------------------------------------------------------------------------
class _Explainer:
    def __init__(self, sim: _Simulator) -> None:
        self.s = sim
        self._isolating: dict[int, str] = {}
        self._dp_ports: dict[int, list[int]] = {}

    def kind(self, i: int) -> str:
        return _kind(self.s.fnl[i])

    def names(self, items: list[int], limit: int = 6) -> str:
        more = len(items) - limit
        if more > 0:
            return ", ".join(self.s.name(i) for i in items[:limit]) + f" and {more} more"
        return _list_str([self.s.name(i) for i in items], limit)

    def isolating_chain(self, i: int) -> str:
        """'0000:00:02.0 is a root port with ACS ... enabled; ...' for every bridge above ``i``."""
        s = self.s
        p = s.parent[i]
        if p < 0:
            return ""
        text = self._isolating.get(p)
        if text is None:
            parts = []
            cur = p
            while cur >= 0:
                parts.append(f"{s.name(cur)} {s.acs(cur).reason}")
                cur = s.parent[cur]
            text = "; ".join(parts)
            self._isolating[p] = text
        return text

    def group(self, members: list[int], would_join: list[int]) -> list[str]:
        s = self.s
        out: list[str] = []
        seed = members[0]
        j = s.joins[seed]
        assert j is not None
        sn = s.name(seed)
        # 1. how the group starts
        if j.via != seed:
            out.append(f"{sn} is below {s.name(j.via)}, whose path to the root is not isolated and which has no "
                       f"IOMMU group of its own, so the kernel started a group for {sn}")
        elif s.parent[seed] < 0:
            dom = s.addrs[seed].domain
            where = f"the root bus of VMD domain {dom:04x}" if dom in s.vmd else "a root bus"
            out.append(f"{sn} is a {self.kind(seed)} on {where}: no bridge above it, so only DMA aliases "
                       "and non-isolated functions of its own slot can share its group")
        elif len(members) == 1:
            out.append(f"{sn} is isolated: every bridge above it isolates it ({self.isolating_chain(seed)})")
        else:
            out.append(f"the path above {sn} is isolated ({self.isolating_chain(seed)})")
        joins = [s.joins[m] for m in members]
        sibs = s.siblings(seed)
        if sibs and not any(jm.kind == "function" for jm in joins):  # type: ignore[union-attr]
            g = s.gid[seed]
            others = [x for x in sibs if s.gid[x] != g]
            if others:
                slot = _slot_name(s.addrs[seed])
                if s.vf[seed]:
                    out.append(f"{sn} is an SR-IOV VF, never multifunction for the kernel, so it is not merged "
                               f"with {self.names(others)} in slot {slot}")
                elif s.mf(seed) is False:
                    out.append(f"{sn} is not a multifunction device, so the kernel does not merge it with the "
                               f"other functions of slot {slot} ({self.names(others)})")
                elif s.acs(seed).isolated:
                    out.append(f"{sn} {s.acs(seed).reason}, so the kernel keeps it out of the group of its slot "
                               f"siblings {self.names(others)}")
                else:
                    iso = [x for x in others if s.acs(x).isolated]
                    if iso:
                        out.append(f"its slot siblings {self.names(iso)} are isolated, so they stay out")
        # 2. joins, by cause
        below: dict[int, list[int]] = {}
        func: dict[tuple[int, int, int], list[int]] = {}
        bridged: dict[int, list[int]] = {}
        vmd: dict[int, list[int]] = {}
        aliased: list[tuple[int, _Join]] = []
        for m, jm in zip(members[1:], joins[1:]):
            assert jm is not None
            if jm.kind == "below":
                below.setdefault(s.top_bad(jm.via), []).append(m)
            elif jm.kind == "function":
                func.setdefault(s.addrs[jm.via].slot, []).append(m)
            elif jm.kind == "alias-bridge":
                bridged.setdefault(jm.via, []).append(m)
            elif jm.kind == "vmd":
                vmd.setdefault(jm.via, []).append(m)
            elif jm.kind == "dma-alias":
                aliased.append((m, jm))
        for owner, devs in vmd.items():
            out.append(f"{self.names(sorted(devs))} {'are' if len(devs) > 1 else 'is'} in VMD domain "
                       f"{s.addrs[devs[0]].domain:04x}: the kernel issues their DMA as the VMD endpoint "
                       f"{s.name(owner)} (pci_real_dma_dev), so they share its group")
        for br, devs in bridged.items():
            out.append(self.bridged_text(br, sorted(devs)))
        for slot in func:
            out.append(self.function_text(slot, members))
        for top, devs in below.items():
            out.append(self.below_text(top, sorted(devs)))
        for m, jm in aliased:
            found = jm.found if jm.found is not None else m
            names = ", ".join(s.alias_info(m).quirks + s.alias_info(found).quirks) or "a DMA alias quirk"
            out.append(f"{s.name(m)} and {s.name(found)} are DMA aliases of each other on one bus ({names}): "
                       "one group")
        for w in would_join:
            out.append(f"{s.name(w)} would belong here by pci_device_group, but the kernel gave it no IOMMU group")
        return out

    def bridged_text(self, br: int, devs: list[int]) -> str:
        s = self.s
        kind = s.bridge_alias(br)
        bi = s.fnl[br].bridge
        sec = bi.secondary if bi is not None and bi is not ABSENT else None  # type: ignore[union-attr]
        rid = f"{sec:02x}:00.0" if sec is not None else "(its secondary bus, 00.0)"
        many = len(devs) > 1
        if kind == "pcie-to-pci":
            how = (f"a PCIe-to-PCI bridge, which issues their DMA with requester ID {rid} (its secondary bus, "
                   "device 0 function 0), so the kernel aliases them to the bridge")
        elif kind == "pcie-bridge-alias":
            how = (f"a conventional bridge the kernel treats as PCIe-to-PCI (quirk_use_pcie_bridge_dma_alias): "
                   f"it issues their DMA as {rid}")
        elif kind == "pci-to-pcie":
            how = "a PCI/PCI-X-to-PCIe bridge, which issues their DMA under its own requester ID"
        elif kind == "conventional":
            how = "a conventional PCI bridge, which issues their DMA under its own requester ID"
        else:
            how = "a bridge of unknown PCIe type, assumed to take over their requester ID"
        return (f"{self.names(devs)} {'sit' if many else 'sits'} behind {s.name(br)}, {how}: "
                f"{'they share' if many else 'it shares'} its group")

    def function_text(self, slot: tuple[int, int, int], members: list[int]) -> str:
        s = self.s
        in_group = [m for m in members if s.addrs[m].slot == slot]
        in_group.sort()
        first, rest = in_group[0], in_group[1:]
        v0 = s.acs(first)
        causes = {s.acs(r).cause for r in rest}
        many = len(rest) > 1
        if causes == {NO_ACS}:
            why_rest = f"which {'lack' if many else 'lacks'} ACS too"
        elif len(causes) == 1:
            why_rest = f"which {'are' if many else 'is'} not isolated either ({causes.pop()})"
        else:
            why_rest = ("which are not isolated either ("
                        + "; ".join(f"{s.name(r)}: {s.acs(r).cause}" for r in rest) + ")")
        ports = all(s.fnl[m].pcie_type in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM) for m in in_group)
        what = ("both ports" if len(in_group) == 2 else "these ports") if ports else (
            "both functions" if len(in_group) == 2 else "these functions")
        below = any(m in s.kids for m in in_group)
        text = (f"{s.name(first)} {v0.reason} and is a function of slot {_slot_name(s.addrs[first])} together "
                f"with {self.names(rest)}, {why_rest}: "
                + (f"{what} and everything below them form one group" if below else f"{what} share one group")
                + " (get_pci_function_alias_group)")
        for x in s.siblings(first):
            if x not in in_group and s.acs(x).isolated:
                text += f"; {s.name(x)} {s.acs(x).reason}, so it stays out"
        return text

    def below_text(self, top: int, devs: list[int]) -> str:
        s = self.s
        many = len(devs) > 1
        if top < 0:  # cannot happen: a "below" join needs a non-isolated bridge
            return f"{self.names(devs)} {'share' if many else 'shares'} the group of the bridge above them"
        text = (f"{s.name(top)} {s.acs(top).reason}, so it does not isolate what is below it: "
                f"{self.names(devs)} {'share' if many else 'shares'} its group")
        return text + self.downstream_note(top)

    def downstream_note(self, top: int) -> str:
        s = self.s
        up = s.parent[top]
        if not (s.fnl[top].pcie_type is PcieType.SWITCH_DOWNSTREAM and up >= 0 and s.path_ok(up)
                and s.mf(top) is False):
            return ""
        ports = self._dp_ports.get(up)
        if ports is None:
            ports = self._dp_ports[up] = [c for c in s.kids.get(up, ())
                                          if s.fnl[c].pcie_type is PcieType.SWITCH_DOWNSTREAM]
        sibs = [c for c in ports[:8] if c != top][:6]
        more = len(ports) - 1 - len(sibs)
        names = _list_str([s.name(c) for c in sibs], 6) + (f" and {more} more" if more > 0 else "")
        return (f". Each switch downstream port without ACS still gets a group of its own: pci_device_group "
                f"stops at the first bridge whose path to the root is isolated ({s.name(up)}), and "
                f"{s.name(top)} is not multifunction, so nothing merges it with its sibling ports"
                + (f" ({names})" if sibs else "")
                + " (a proposed kernel rework would merge them; current kernels do not)")


def _list_str(items: list[str], limit: int = 6) -> str:
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    if len(items) >= 2:
        return ", ".join(items[:-1]) + " and " + items[-1]
    return items[0] if items else ""


def _why_line(sim: _Simulator, i: int, j: _Join) -> str:
    n = sim.name
    if j.kind == "new":
        return f"{n(i)} starts its group" + (f" (anchored at {n(j.via)})" if j.via != i else "")
    if j.kind == "vmd":
        return f"{n(i)} issues DMA as the VMD endpoint {n(j.via)} and joins its group"
    if j.kind == "alias-bridge":
        return f"{n(i)} is behind {n(j.via)}, which takes over its requester ID, and joins its group"
    if j.kind == "below":
        return f"{n(i)} is below {n(j.via)}, whose path to the root is not ACS-isolated, and joins its group"
    found = n(j.found) if j.found is not None else "?"
    if j.kind == "dma-alias":
        return f"{n(i)} joins the group of its DMA alias {found}"
    return f"{n(i)} joins the group of {found}, a non-isolated function in the same slot as {n(j.via)}"


# ---- entry point ---------------------------------------------------------------------------
def predict_groups(
    topology: Topology,
    *,
    assume_acs: Iterable[Address] = (),
    acs_override: str | None = None,
) -> GroupPrediction:
    """Predict the IOMMU groups the kernel forms for ``topology``.

    ``assume_acs``: bridges (or functions) to treat as ACS-isolated (what-if).
    ``acs_override``: a ``pcie_acs_override=`` value, modelling the out-of-tree patch
    appended last to the quirk table (what-if).
    """
    # The work allocates many small objects and no reference cycles: the cyclic collector's
    # passes over a large topology would cost more than the prediction itself.
    with gcpause.paused():
        return _predict(topology, assume_acs, acs_override)


def _predict(topology: Topology, assume_acs: Iterable[Address], acs_override: str | None) -> GroupPrediction:
    assume = frozenset(Address.parse(a) if isinstance(a, str) else a for a in assume_acs)
    override = AcsOverride.parse(acs_override) if acs_override else None
    sim = _Simulator(topology, assume, override)
    assumptions: list[str] = []
    warnings: list[str] = []
    for a in sorted(assume):
        if a not in topology.functions:
            warnings.append(f"assume_acs: {a} is not in the topology; ignored")
        else:
            assumptions.append(f"what-if: {a} is assumed to have ACS SV, RR, CR and UF enabled")
    if override is not None and not override.active:
        warnings.append(f"pcie_acs_override={acs_override} names no downstream, multifunction or id: option; "
                        "it overrides nothing")
    if override is not None:
        assumptions.append(f"what-if: pcie_acs_override={acs_override} (out-of-tree patch, appended last to the "
                           "ACS quirk table; never applies to non-PCIe devices or ones with an ACS capability)")

    any_reported = any(isinstance(fn.iommu_group, str) for fn in sim.fnl)
    no_group = ({i for i, fn in enumerate(sim.fnl) if not isinstance(fn.iommu_group, str)}
                if any_reported else set())
    if not any_reported:
        assumptions.append("the source shows no IOMMU groups: predicted for an IOMMU that requests ACS")
    would = sim.run(no_group)

    # Labels: the reported label where the predicted group equals a reported one, else p0, p1, ...
    reported = topology.reported_groups if any_reported else {}
    rep_by_set = {frozenset(v): k for k, v in reported.items()}
    addrs = sim.addrs
    for m in sim.members:
        m.sort()  # indices are in address order
    order = sorted(range(len(sim.members)), key=lambda g: sim.members[g][0])
    used = set(reported)
    groups: dict[str, tuple[Address, ...]] = {}
    gid_label: list[str] = [""] * len(sim.members)
    n = 0
    for g in order:
        members = tuple(addrs[i] for i in sim.members[g])
        label = rep_by_set.get(frozenset(members)) if rep_by_set else None
        if label is None:
            while f"p{n}" in used:
                n += 1
            label = f"p{n}"
            used.add(label)
        groups[label] = members
        gid_label[g] = label
    group_of = {addrs[i]: gid_label[g] for i, g in enumerate(sim.gid) if g >= 0}

    # no-group devices: what the kernel would have done.
    no_group_text: dict[Address, str] = {}
    would_join: dict[int, list[int]] = {}
    for i in sorted(no_group):
        g, _ = would[i]
        head = (f"the kernel gave {sim.name(i)} no IOMMU group (the topology shows none while other devices "
                "have one); pci_device_group would ")
        if g >= 0:
            would_join.setdefault(g, []).append(i)
            no_group_text[addrs[i]] = head + f"put it in group {gid_label[g]}"
        else:
            no_group_text[addrs[i]] = head + "give it a group of its own"
    if no_group:
        warnings.append(f"{len(no_group)} device(s) have no IOMMU group in the source while others have one "
                        f"({_list([addrs[i] for i in sorted(no_group)], 4)}): the IOMMU driver did not take "
                        "them (e.g. host bridges, the AMD IOMMU itself); they are left out of the groups")

    exp = _Explainer(sim)
    label_gid = {gid_label[g]: g for g in order}
    explanations = _LazyExplanations(
        [gid_label[g] for g in order],
        lambda label: exp.group(sim.members[label_gid[label]], would_join.get(label_gid[label], [])),
    )

    reported_override = acs_override_in_cmdline(topology.source.kernel_cmdline)
    if reported_override is not None:
        warnings.append(f"the reported groups come from a kernel booted with pcie_acs_override={reported_override} "
                        "(an out-of-tree patch): they are not what a stock kernel forms")
    warnings.extend(sim.warnings)
    assumptions.extend(sim.assumptions)
    return GroupPrediction(
        groups=groups,
        group_of=group_of,
        explanations=explanations,
        hypothetical=bool(assume) or override is not None,
        assumptions=assumptions,
        warnings=warnings,
        no_group=no_group_text,
        reported_override=reported_override,
        _sim=sim,
    )


def move_device(topology: Topology, device: Address, port: Address) -> tuple[Topology, dict[Address, Address]]:
    """What-if: ``device`` (its whole slot's functions, with everything below them) plugged
    into ``port``'s slot instead of where it is.

    The functions get the port's secondary bus and device number 0 (a PCIe port has one
    slot), keep their function numbers, and take the port as their upstream bridge; a
    bridge among them keeps its bus range. Returns the new topology and the old -> new
    address map. Moved devices carry the reported group label "moved" (the kernel has not
    seen them there), so predict_groups keeps the kernel's labels for every group the move
    leaves alone and gives new labels to the groups it changes.
    """
    from dataclasses import replace

    fns = topology.functions
    if device not in fns:
        raise ValueError(f"{device}: no such device")
    p = fns.get(port)
    if p is None or not present(p.bridge) or p.bridge.secondary is None:  # type: ignore[union-attr]
        raise ValueError(f"{port}: not a bridge with a secondary bus")
    sec = p.bridge.secondary  # type: ignore[union-attr]
    if any(f.parent == port for f in fns.values()):
        raise ValueError(f"{port}: its slot is occupied")
    slot = [a for a in fns if a.slot == device.slot and fns[a].physfn is None]
    moving: set[Address] = set()
    todo = list(slot)
    while todo:
        a = todo.pop()
        if a in moving:
            continue
        moving.add(a)
        todo.extend(c for c in topology.children(a))
        todo.extend(fns[a].virtfns)
    if port in moving or any(a in moving for a in topology.path_to_root(port)):
        raise ValueError(f"{port} is below {device}: it cannot move under itself")
    mapping: dict[Address, Address] = {}
    for a in slot:
        mapping[a] = Address(port.domain, sec, 0, a.function)
    for a in moving - set(slot):
        mapping[a] = a  # below a moved bridge: same buses, same addresses
    out = []
    for f in fns.values():
        if f.address not in moving:
            out.append(f)
            continue
        new_addr = mapping[f.address]
        parent = port if f.address in slot else f.parent
        out.append(replace(
            f,
            address=new_addr,
            parent=parent,
            iommu_group="moved" if present(f.iommu_group) else f.iommu_group,
            physfn=mapping.get(f.physfn, f.physfn) if f.physfn else None,
            virtfns=tuple(mapping.get(v, v) for v in f.virtfns),
        ))
    new_topology = Topology.build(out, topology.host_bridges, topology.source)
    return new_topology, mapping
