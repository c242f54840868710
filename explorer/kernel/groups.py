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
from typing import Iterable, Iterator, Mapping

from ..model import ABSENT, Address, Function, PcieType, Topology
from .acs import NO_ACS, REQ_ACS_FLAGS, AcsEnvironment, AcsVerdict, acs_verdict, is_virtfn, kernel_multifunction
from .quirks import (
    NO_ALIASES,
    AcsOverride,
    AliasDevice,
    AliasInfo,
    acs_override_in_cmdline,
    acs_table,
    devfn_str,
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


@dataclass(frozen=True, slots=True)
class _Join:
    """How one device got its group (one step of pci_device_group)."""

    kind: str  # "new", "vmd", "alias-bridge", "below", "dma-alias", "function"
    #: The anchor (new), the VMD endpoint, the aliasing bridge, the anchoring bridge,
    #: or the device whose alias/function scan found the group.
    via: Address
    #: For dma-alias/function: the device whose existing group was found.
    found: Address | None = None


@dataclass
class GroupPrediction:
    #: label -> members (sorted), labels in address order of each group's lowest member.
    groups: dict[str, tuple[Address, ...]]
    group_of: dict[Address, str]
    #: label -> a short chain of causes, each naming devices.
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
    _why: dict[Address, str] = field(default_factory=dict, repr=False)

    def why(self, addr: Address) -> str | None:
        """One line: how the kernel puts ``addr`` in its group."""
        return self._why.get(addr)

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
        rep_sets = {frozenset(v): k for k, v in rep.items()}
        bad_rep = {k for k, v in rep.items() if frozenset(v) not in {frozenset(p) for p in pred.values()}}
        bad_pred = {k for k, v in pred.items() if frozenset(v) not in rep_sets}
        out: list[Mismatch] = []
        seen_rep: set[str] = set()
        seen_pred: set[str] = set()
        for start in sorted(bad_rep | {f"\0{k}" for k in bad_pred}, key=_mismatch_key(rep, pred)):
            side, label = ("p", start[1:]) if start.startswith("\0") else ("r", start)
            if (side == "r" and label in seen_rep) or (side == "p" and label in seen_pred):
                continue
            comp_rep: set[str] = set()
            comp_pred: set[str] = set()
            stack = [(side, label)]
            while stack:
                s, lab = stack.pop()
                if s == "r":
                    if lab in comp_rep:
                        continue
                    comp_rep.add(lab)
                    for a in rep[lab]:
                        if a in pred_of:
                            stack.append(("p", pred_of[a]))
                else:
                    if lab in comp_pred:
                        continue
                    comp_pred.add(lab)
                    for a in pred[lab]:
                        if a in rep_of:
                            stack.append(("r", rep_of[a]))
            seen_rep |= comp_rep
            seen_pred |= comp_pred
            r = {k: rep[k] for k in sorted(comp_rep, key=_label_key)}
            p = {k: pred[k] for k in sorted(comp_pred, key=_label_key)}
            out.append(Mismatch(r, p, _mismatch_message(r, p, self.no_group)))
        # Devices the kernel grouped that the prediction says it would not (no_group).
        for a, k in sorted(rep_of.items()):
            if a not in pred_of and k not in seen_rep:
                seen_rep.add(k)
                out.append(Mismatch({k: rep[k]}, {}, f"reported group {k} ({_list(rep[k])}) holds devices "
                                                     "the prediction does not group"))
        return out

    def matches(self, reported: Mapping[str, Iterable[Address]]) -> bool:
        return not self.compare(reported)


def _label_key(label: str) -> tuple[int, int | str]:
    return (0, int(label)) if label.isdigit() else (1, label)


def _mismatch_key(rep: dict[str, tuple[Address, ...]], pred: dict[str, tuple[Address, ...]]):
    def key(s: str) -> tuple:
        members = pred[s[1:]] if s.startswith("\0") else rep[s]
        return (members[0] if members else Address(0, 0, 0, 0), s)
    return key


def _mismatch_message(r: dict[str, tuple[Address, ...]], p: dict[str, tuple[Address, ...]],
                      no_group: dict[Address, str]) -> str:
    rs = "; ".join(f"{k}: {_list(v)}" for k, v in r.items()) or "none"
    ps = "; ".join(f"{k}: {_list(v)}" for k, v in p.items()) or "none"
    if not r:
        return f"predicted {ps}, but the kernel reported no group for these devices"
    if len(r) == 1 and len(p) > 1:
        return f"the kernel formed one group ({rs}) that the prediction splits ({ps})"
    if len(p) == 1 and len(r) > 1:
        return f"the prediction merges ({ps}) what the kernel kept apart ({rs})"
    return f"the kernel reported {rs}; the prediction has {ps}"


# ---- helpers ----------------------------------------------------------------------------------
def _list(addrs: Iterable[Address], limit: int = 6) -> str:
    items = [str(a) for a in addrs]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    if len(items) >= 2:
        return ", ".join(items[:-1]) + " and " + items[-1]
    return items[0] if items else ""


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
    def __init__(self, topology: Topology, assume: frozenset[Address], override: AcsOverride | None) -> None:
        self.t = topology
        self.fns = topology.functions
        self.env = AcsEnvironment.of(topology)
        self.table = acs_table(override)
        self.assume = assume
        self.override = override
        self._verdict: dict[Address, AcsVerdict] = {}
        self._path_ok: dict[Address, bool] = {}
        self._first_alias: dict[Address, Address | None] = {}
        self._top_bad: dict[Address, Address | None] = {}
        self._alias: dict[Address, AliasInfo] = {}
        self._mf: dict[Address, bool | None] = {}
        self._parent: dict[Address, Address | None] = {}
        self.gid: dict[Address, int] = {}
        self.members: list[list[Address]] = []
        self.joins: dict[Address, _Join] = {}
        self.warnings: dict[str, None] = {}
        self.assumptions: dict[str, None] = {}
        self.order: dict[Address, int] = {}
        self.vmd = {d: o for d, o in topology.vmd_domains.items() if o in self.fns}
        # Devices with a DMA alias mask, per bus (the only ones pci_devs_are_dma_aliases can link).
        self.masked: dict[tuple[int, int], list[Address]] = {}
        for a, fn in self.fns.items():
            if has_dma_alias_quirk(fn.vendor_id, fn.device_id):
                info = self.alias_info(a)
                if info.devfns:
                    self.masked.setdefault((a.domain, a.bus), []).append(a)

    # ---- kernel facts --------------------------------------------------------------------
    def kparent(self, a: Address) -> Address | None:
        """``bus->self`` of the device's bus, skipping virtual buses; None on a root bus."""
        try:
            return self._parent[a]
        except KeyError:
            pass
        fn = self.fns[a]
        p = fn.parent
        if p is not None and p not in self.fns:
            self.warnings[f"{a}: its upstream bridge {p} is not in the topology; treated as on a root bus"] = None
            p = None
        self._parent[a] = p
        return p

    def mf(self, a: Address) -> bool | None:
        try:
            return self._mf[a]
        except KeyError:
            v = self._mf[a] = kernel_multifunction(self.fns[a], self.t)
            return v

    def acs(self, a: Address) -> AcsVerdict:
        """``pci_acs_enabled(dev, REQ_ACS_FLAGS)``, memoised, noting unknowns and assumptions."""
        v = self._verdict.get(a)
        if v is not None:
            return v
        if a in self.assume:
            v = AcsVerdict(True, "is assumed to isolate with ACS SV, RR, CR and UF enabled (what-if)",
                           hypothetical=True, cause="assumed ACS (what-if)")
        else:
            v = acs_verdict(self.fns[a], self.t, self.env, REQ_ACS_FLAGS, self.table)
            if not v.known:
                self.warnings[f"{a} {v.reason}"] = None
            if v.assumption:
                self.assumptions[v.assumption] = None
            if v.hypothetical and self.override is not None:
                self.assumptions[f"{a} counts as isolated only because of pcie_acs_override={self.override.text} "
                                 "(out-of-tree patch; what-if)"] = None
        self._verdict[a] = v
        return v

    def alias_info(self, a: Address) -> AliasInfo:
        info = self._alias.get(a)
        if info is not None:
            return info
        fn = self.fns[a]
        if not has_dma_alias_quirk(fn.vendor_id, fn.device_id):
            info = NO_ALIASES
        else:
            p = fn.parent
            pfn = self.fns.get(p) if p is not None else None
            dev = AliasDevice(a, fn.vendor_id, fn.device_id, fn.subsystem_vendor_id, fn.subsystem_device_id,
                              fn.class_code, fn.header_type, fn.pcie_type, p is None,
                              pfn.pcie_type if pfn is not None else None)
            info = dma_alias_fixups(dev)
            for u in info.unknown:
                self.warnings[f"{a}: DMA alias quirk {u} is unknown; no alias assumed"] = None
        self._alias[a] = info
        return info

    def bridge_alias(self, t: Address) -> str | None:
        """How bridge ``t`` takes over DMA from below in pci_for_each_dma_alias, or None."""
        fn = self.fns[t]
        pt = fn.pcie_type
        if pt in (PcieType.ROOT_PORT, PcieType.SWITCH_UPSTREAM, PcieType.SWITCH_DOWNSTREAM):
            return None
        if pt is PcieType.PCIE_TO_PCI_BRIDGE:
            return "pcie-to-pci"
        if pt is PcieType.PCI_TO_PCIE_BRIDGE:
            return "pci-to-pcie"
        if pt is PcieType.CONVENTIONAL:
            return "pcie-bridge-alias" if self.alias_info(t).pcie_bridge_alias else "conventional"
        if pt is None:
            self.warnings[f"{t}: PCIe type unknown, so it is assumed to take over the requester ID of the "
                          "devices below it (as a conventional PCI bridge would): they share its group"] = None
            return "unknown"
        return None  # other PCIe types: no case in the switch, no alias

    def first_alias(self, b: Address) -> Address | None:
        """The first bridge at or above ``b`` that pci_for_each_dma_alias visits (None: none before
        an XLATE_ROOT bridge or the root bus)."""
        memo = self._first_alias
        chain: list[Address] = []
        cur: Address | None = b
        result: Address | None = None
        while cur is not None:
            if cur in memo:
                result = memo[cur]
                break
            if self.alias_info(cur).xlate_root:
                memo[cur] = None
                result = None
                break
            if self.bridge_alias(cur) is not None:
                memo[cur] = cur
                result = cur
                break
            chain.append(cur)
            cur = self.kparent(cur)
        for c in chain:
            memo[c] = result
        return result

    def path_ok(self, a: Address) -> bool:
        """``pci_acs_path_enabled(a, NULL, REQ_ACS_FLAGS)``, memoised per bridge."""
        memo = self._path_ok
        r = memo.get(a)
        if r is not None:
            return r
        chain: list[Address] = []
        cur = a
        while True:
            if cur in memo:
                result = memo[cur]
                break
            chain.append(cur)
            if not self.acs(cur).isolated:
                result = False
                break
            up = self.kparent(cur)
            if up is None:
                result = True
                break
            cur = up
        for c in chain:
            memo[c] = result
        return result

    def top_bad(self, a: Address | None) -> Address | None:
        """The highest bridge at or above ``a`` that is not isolated (None: the path is clean)."""
        if a is None:
            return None
        memo = self._top_bad
        if a in memo:
            return memo[a]
        chain: list[Address] = []
        cur: Address | None = a
        above: Address | None = None
        while cur is not None:
            if cur in memo:
                above = memo[cur]
                break
            chain.append(cur)
            cur = self.kparent(cur)
        for c in reversed(chain):
            if above is None and not self.acs(c).isolated:
                above = c
            memo[c] = above
        return memo[a]

    def real_dma_dev(self, a: Address) -> Address:
        owner = self.vmd.get(a.domain)
        return owner if owner is not None and owner != a else a

    # ---- pci_device_group ----------------------------------------------------------------
    def device_group(self, d: Address) -> tuple[int | None, _Join]:
        gid = self.gid
        real = self.real_dma_dev(d)
        if real != d:
            g = gid.get(real)
            if g is not None:
                return g, _Join("vmd", real)
        last = real
        b = self.kparent(real)
        while b is not None:
            t = self.first_alias(b)
            if t is None:
                break
            last = t
            g = gid.get(t)
            if g is not None:
                return g, _Join("alias-bridge", t)
            b = self.kparent(t)
        pdev = last
        a = self.kparent(pdev)
        while a is not None:
            if self.path_ok(a):
                break
            pdev = a
            g = gid.get(a)
            if g is not None:
                return g, _Join("below", a)
            a = self.kparent(a)
        devfns: set[int] = set()
        hit = self.alias_group(pdev, devfns)
        if hit is not None:
            return hit[0], _Join("dma-alias", pdev, hit[1])
        hit = self.function_alias_group(pdev, devfns)
        if hit is not None:
            return hit[0], _Join("function", pdev, hit[1])
        return None, _Join("new", pdev)

    def alias_peers(self, a: Address) -> list[Address]:
        """Devices on ``a``'s bus that ``a`` aliases or that alias ``a`` (pci_devs_are_dma_aliases)."""
        key = (a.domain, a.bus)
        masked = self.masked.get(key)
        mine = self.alias_info(a).devfns
        if not masked and not mine:
            return []
        out: set[Address] = set()
        for devfn in mine:
            o = Address.from_rid(a.domain, a.bus, devfn)
            if o != a and o in self.fns:
                out.add(o)
        for o in masked or ():
            if o != a and a.devfn in self.alias_info(o).devfns:
                out.add(o)
        return sorted(out, key=lambda x: self.order.get(x, 1 << 30))

    def alias_group(self, a: Address, devfns: set[int]) -> tuple[int, Address] | None:
        """get_pci_alias_group: (group, device that has it)."""
        if a.devfn in devfns:
            return None
        devfns.add(a.devfn)
        g = self.gid.get(a)
        if g is not None:
            return g, a
        for tmp in self.alias_peers(a):
            hit = self.alias_group(tmp, devfns)
            if hit is not None:
                return hit
            hit = self.function_alias_group(tmp, devfns)
            if hit is not None:
                return hit
        return None

    def function_alias_group(self, a: Address, devfns: set[int]) -> tuple[int, Address] | None:
        """get_pci_function_alias_group."""
        sibs = self.t.slot_siblings(a)
        if not sibs:
            # Nothing to scan; still evaluate nothing (the kernel's result is NULL either way).
            return None
        if self.mf(a) is False or self.acs(a).isolated:
            return None
        for tmp in sorted(sibs, key=lambda x: self.order.get(x, 1 << 30)):
            if self.acs(tmp).isolated:
                continue
            hit = self.alias_group(tmp, devfns)
            if hit is not None:
                return hit
        return None

    # ---- probe order -----------------------------------------------------------------------
    def probe_order(self, devices: Iterable[Address]) -> list[Address]:
        """Bus scan order: each bus's devices, then each bridge's subtree; VMD domains after the
        rest (the vmd driver binds later); VFs last, after their PFs (SR-IOV is enabled later)."""
        wanted = set(devices)
        kids: dict[Address | None, list[Address]] = {}
        vfs: list[Address] = []
        for a, fn in self.fns.items():  # address order
            if is_virtfn(fn):
                vfs.append(a)
                continue
            kids.setdefault(self.kparent(a), []).append(a)
        out: list[Address] = []
        emitted: set[Address] = set()

        def visit(bus_devs: list[Address]) -> None:
            stack: list[Iterator[Address]] = []
            out.extend(bus_devs)
            emitted.update(bus_devs)
            stack.append(iter(bus_devs))
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    stack.pop()
                    continue
                below = [c for c in kids.get(nxt, ()) if c not in emitted]
                if below:
                    out.extend(below)
                    emitted.update(below)
                    stack.append(iter(below))

        roots = kids.get(None, [])
        buses: dict[tuple[int, int], list[Address]] = {}
        for a in roots:
            buses.setdefault((a.domain, a.bus), []).append(a)
        for key in sorted(buses, key=lambda k: (k[0] in self.vmd, k)):
            visit(buses[key])
        # Anything unreachable (a cycle or a dangling parent): address order.
        for a in self.fns:
            if a not in emitted and not is_virtfn(self.fns[a]):
                out.append(a)
                emitted.add(a)
        pf_rank = {a: i for i, a in enumerate(out)}
        vfs.sort(key=lambda v: (pf_rank.get(self.fns[v].physfn, 1 << 30) if self.fns[v].physfn else 1 << 30, v))
        out.extend(vfs)
        return [a for a in out if a in wanted]

    # ---- run -------------------------------------------------------------------------------
    def run(self, no_group: set[Address]) -> dict[Address, tuple[int | None, _Join]]:
        order = self.probe_order(self.fns)
        self.order = {a: i for i, a in enumerate(order)}
        for d in order:
            if d in no_group:
                continue
            g, j = self.device_group(d)
            if g is None:
                g = len(self.members)
                self.members.append([])
            self.gid[d] = g
            self.members[g].append(d)
            self.joins[d] = j
        would: dict[Address, tuple[int | None, _Join]] = {}
        for d in order:
            if d in no_group:
                would[d] = self.device_group(d)
        return would


# ---- explanations ---------------------------------------------------------------------------
class _Explainer:
    def __init__(self, sim: _Simulator) -> None:
        self.s = sim
        self._isolating: dict[Address, str] = {}

    def kind(self, a: Address) -> str:
        return _kind(self.s.fns.get(a))

    def isolating_chain(self, a: Address) -> str:
        """'0000:00:02.0 is a root port with ACS ... enabled; ...' for every bridge above ``a``."""
        p = self.s.kparent(a)
        if p is None:
            return ""
        text = self._isolating.get(p)
        if text is None:
            parts = []
            cur: Address | None = p
            while cur is not None:
                parts.append(f"{cur} {self.s.acs(cur).reason}")
                cur = self.s.kparent(cur)
            text = "; ".join(parts)
            self._isolating[p] = text
        return text

    def group(self, members: list[Address], would_join: list[Address]) -> list[str]:
        s = self.s
        out: list[str] = []
        seed = members[0]
        j = s.joins[seed]
        fn = s.fns[seed]
        # 1. how the group starts
        if j.via != seed:
            out.append(f"{seed} is below {j.via}, whose path to the root is not isolated and which has no "
                       f"IOMMU group of its own, so the kernel started a group for {seed}")
        elif s.kparent(seed) is None:
            where = f"the root bus of VMD domain {seed.domain:04x}" if seed.domain in s.vmd else "a root bus"
            out.append(f"{seed} is a {self.kind(seed)} on {where}: no bridge above it, so only DMA aliases "
                       "and non-isolated functions of its own slot can share its group")
        else:
            if len(members) == 1:
                out.append(f"{seed} is isolated: every bridge above it isolates it ({self.isolating_chain(seed)})")
            else:
                out.append(f"the path above {seed} is isolated ({self.isolating_chain(seed)})")
        sibs = s.t.slot_siblings(seed)
        if sibs and not any(s.joins[m].kind == "function" for m in members if m in s.joins):
            v = s.acs(seed)
            others = [x for x in sibs if s.gid.get(x) != s.gid[seed]]
            if others:
                if s.mf(seed) is False and not is_virtfn(fn):
                    out.append(f"{seed} is not a multifunction device, so the kernel does not merge it with the other "
                               f"functions of slot {_slot_name(seed)} ({_list(others)})")
                elif is_virtfn(fn):
                    out.append(f"{seed} is an SR-IOV VF, never multifunction for the kernel, so it is not merged with "
                               f"{_list(others)} in slot {_slot_name(seed)}")
                elif v.isolated:
                    out.append(f"{seed} {v.reason}, so the kernel keeps it out of the group of its slot siblings "
                               f"{_list(others)}")
                else:
                    iso = [x for x in others if s.acs(x).isolated]
                    if iso:
                        out.append(f"its slot siblings {_list(iso)} are isolated, so they stay out")
        # 2. joins, by cause
        below: dict[Address | None, list[Address]] = {}
        func: dict[tuple[int, int, int], list[Address]] = {}
        bridged: dict[Address, list[Address]] = {}
        vmd: dict[Address, list[Address]] = {}
        aliased: list[tuple[Address, _Join]] = []
        for m in members[1:]:
            jm = s.joins[m]
            if jm.kind == "below":
                below.setdefault(s.top_bad(jm.via), []).append(m)
            elif jm.kind == "function":
                func.setdefault(jm.via.slot, []).append(m)
            elif jm.kind == "alias-bridge":
                bridged.setdefault(jm.via, []).append(m)
            elif jm.kind == "vmd":
                vmd.setdefault(jm.via, []).append(m)
            elif jm.kind == "dma-alias":
                aliased.append((m, jm))
        for owner, devs in vmd.items():
            out.append(f"{_list(sorted(devs))} {'are' if len(devs) > 1 else 'is'} in VMD domain {devs[0].domain:04x}: "
                       f"the kernel issues their DMA as the VMD endpoint {owner} (pci_real_dma_dev), so they share its group")
        for br, devs in bridged.items():
            out.append(self.bridged_text(br, sorted(devs)))
        for slot, devs in func.items():
            out.append(self.function_text(slot, members))
        for top, devs in below.items():
            out.append(self.below_text(top, sorted(devs)))
        for m, jm in aliased:
            names = ", ".join(s.alias_info(m).quirks + s.alias_info(jm.found or m).quirks) or "DMA alias quirk"
            out.append(f"{m} and {jm.found} are DMA aliases of each other on one bus ({names}): one group")
        for w in would_join:
            out.append(f"{w} would belong here by pci_device_group, but the kernel gave it no IOMMU group")
        return out

    def bridged_text(self, br: Address, devs: list[Address]) -> str:
        s = self.s
        kind = s.bridge_alias(br)
        fn = s.fns[br]
        sec = fn.bridge.secondary if fn.bridge not in (None, ABSENT) else None  # type: ignore[union-attr]
        rid = f"{sec:02x}:00.0" if sec is not None else "(its secondary bus, 00.0)"
        verb = "sit" if len(devs) > 1 else "sits"
        if kind == "pcie-to-pci":
            how = (f"a PCIe-to-PCI bridge, which issues their DMA with requester ID {rid} (secondary bus, "
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
        return f"{_list(devs)} {verb} behind {br}, {how}: {'they share' if len(devs) > 1 else 'it shares'} its group"

    def function_text(self, slot: tuple[int, int, int], members: list[Address]) -> str:
        s = self.s
        in_group = [m for m in members if m.slot == slot]
        first = in_group[0]
        rest = in_group[1:]
        v0 = s.acs(first)
        causes = {s.acs(r).cause for r in rest}
        many = len(rest) > 1
        if causes == {NO_ACS}:
            why_rest = f"which {'lack' if many else 'lacks'} ACS too"
        elif len(causes) == 1:
            why_rest = f"which {'are' if many else 'is'} not isolated either ({causes.pop()})"
        else:
            why_rest = "which are not isolated either (" + "; ".join(f"{r}: {s.acs(r).cause}" for r in rest) + ")"
        ports = all(s.fns[m].pcie_type in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM) for m in in_group)
        what = ("both ports" if len(in_group) == 2 else "these ports") if ports else (
            "both functions" if len(in_group) == 2 else "these functions")
        text = (f"{first} {v0.reason} and is a function of slot {_slot_name(first)} together with {_list(rest)}, "
                f"{why_rest}: {what} and everything below them form one group (get_pci_function_alias_group)")
        iso = [x for x in s.t.slot_siblings(first) if x not in in_group and s.acs(x).isolated]
        for x in iso:
            text += f"; {x} {s.acs(x).reason}, so it stays out"
        return text

    def below_text(self, top: Address | None, devs: list[Address]) -> str:
        s = self.s
        if top is None:  # cannot happen: a "below" join needs a non-isolated bridge
            return f"{_list(devs)} share the group of the bridge above them"
        v = s.acs(top)
        verb = "share" if len(devs) > 1 else "shares"
        text = (f"{top} {v.reason}, so it does not isolate what is below it: {_list(devs)} {verb} its group")
        fn = s.fns[top]
        up = s.kparent(top)
        if (fn.pcie_type is PcieType.SWITCH_DOWNSTREAM and up is not None and s.path_ok(up)
                and s.mf(top) is False):
            sibs = [c for c in s.t.children(up) if c != top and s.fns[c].pcie_type is PcieType.SWITCH_DOWNSTREAM]
            text += (f". Each switch downstream port without ACS still gets a group of its own: pci_device_group "
                     f"stops at the first bridge whose path to the root is isolated ({up}), and {top} is not "
                     "multifunction, so nothing merges it with its sibling ports"
                     + (f" ({_list(sibs)})" if sibs else "")
                     + " (a proposed kernel rework would merge them; current kernels do not)")
        return text


def _why_line(sim: _Simulator, a: Address, j: _Join) -> str:
    if j.kind == "new":
        return f"{a} starts its group" + (f" (anchored at {j.via})" if j.via != a else "")
    if j.kind == "vmd":
        return f"{a} issues DMA as the VMD endpoint {j.via} and joins its group"
    if j.kind == "alias-bridge":
        return f"{a} is behind {j.via}, which takes over its requester ID, and joins its group"
    if j.kind == "below":
        return f"{a} is below {j.via}, whose path to the root is not ACS-isolated, and joins its group"
    if j.kind == "dma-alias":
        return f"{a} joins the group of its DMA alias {j.found}"
    return f"{a} joins the group of {j.found}, a non-isolated function in the same slot as {j.via}"


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
    if override is not None:
        assumptions.append(f"what-if: pcie_acs_override={acs_override} (out-of-tree patch, appended last to the "
                           "ACS quirk table; never applies to non-PCIe devices or ones with an ACS capability)")

    any_reported = any(isinstance(fn.iommu_group, str) for fn in topology)
    no_group = {a for a, fn in topology.functions.items() if any_reported and not isinstance(fn.iommu_group, str)}
    if not any_reported:
        assumptions.append("the source shows no IOMMU groups: predicted for an IOMMU that requests ACS")
    would = sim.run(no_group)

    # Labels: the reported label where the predicted group equals a reported one, else p0, p1, ...
    reported = topology.reported_groups if any_reported else {}
    rep_by_set = {frozenset(v): k for k, v in reported.items()}
    groups_sorted = sorted((sorted(m) for m in sim.members), key=lambda m: m[0])
    used = set(reported)
    groups: dict[str, tuple[Address, ...]] = {}
    gid_label: dict[int, str] = {}
    n = 0
    for members in groups_sorted:
        label = rep_by_set.get(frozenset(members))
        if label is None:
            while f"p{n}" in used:
                n += 1
            label = f"p{n}"
            used.add(label)
        groups[label] = tuple(members)
        gid_label[sim.gid[members[0]]] = label
    group_of = {a: gid_label[g] for a, g in sim.gid.items()}

    # no-group devices: what the kernel would have done.
    no_group_text: dict[Address, str] = {}
    would_join: dict[int, list[Address]] = {}
    for a in sorted(no_group):
        g, j = would[a]
        if g is not None:
            would_join.setdefault(g, []).append(a)
            no_group_text[a] = (f"the kernel gave {a} no IOMMU group (the topology shows none while other devices "
                                f"have one); pci_device_group would put it in group {gid_label[g]}")
        else:
            no_group_text[a] = (f"the kernel gave {a} no IOMMU group (the topology shows none while other devices "
                                "have one); pci_device_group would give it a group of its own")
    if no_group:
        warnings.append(f"{len(no_group)} device(s) have no IOMMU group in the source while others have one "
                        f"({_list(sorted(no_group), 4)}): the IOMMU driver did not take them (e.g. host bridges, "
                        "the AMD IOMMU itself); they are left out of the groups")

    exp = _Explainer(sim)
    explanations: dict[str, list[str]] = {}
    for g, members in enumerate(sim.members):
        explanations[gid_label[g]] = exp.group(members, would_join.get(g, []))
    explanations = {k: explanations[k] for k in groups}

    reported_override = acs_override_in_cmdline(topology.source.kernel_cmdline)
    if reported_override is not None:
        warnings.append(f"the reported groups come from a kernel booted with pcie_acs_override={reported_override} "
                        "(an out-of-tree patch): they are not what a stock kernel forms")
    warnings.extend(sim.warnings)
    assumptions.extend(sim.assumptions)
    why = {a: _why_line(sim, a, j) for a, j in sim.joins.items()}
    return GroupPrediction(
        groups=groups,
        group_of=group_of,
        explanations=explanations,
        hypothetical=bool(assume) or override is not None,
        assumptions=assumptions,
        warnings=warnings,
        no_group=no_group_text,
        reported_override=reported_override,
        _why=why,
    )
