"""Applying a plan to a topology: what the machine would look like afterwards.

Two levels:

* ``TopologyIndex`` — per-topology lookups computed once (IOMMU groups, buses, host NICs
  and storage, VMD owners). Building it is O(n); everything after is cheap.
* ``simulate(topology, plan, index)`` — an overlay (``Simulation``) holding only what the
  plan changes: drivers, VM assignments, VFs added and removed, hot-added and hot-removed
  devices, mdevs, trust and kernel parameters. Its cost is proportional to the plan, not to
  the topology, which is what keeps revalidation fast.
* ``apply_plan(topology, plan)`` — the full new ``Topology`` (for exports and the UI).

Kernel behaviour followed: VF routing IDs (drivers/pci/iov.c ``pci_iov_virtfn_bus``,
``pci_iov_virtfn_devfn``: ``rid = PF devfn + offset + stride * n``), VF BARs
(``pci_iov_add_virtfn``: ``iov start + n * size``), VF autoprobe
(drivers/pci/pci-driver.c ``pci_device_can_probe``), hot-remove takes the subtree
(drivers/pci/remove.c ``pci_stop_and_remove_bus_device``), trust is inherited
(drivers/pci/probe.c ``set_pcie_untrusted``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from ..model import (
    ABSENT,
    Address,
    AddressError,
    Bar,
    BridgeInfo,
    Capabilities,
    Function,
    MdevInfo,
    MdevInstance,
    PcieType,
    SriovCap,
    Topology,
    present,
)
from .actions import (
    DMA_MANAGED_DRIVERS,
    Action,
    Assign,
    AssignMdev,
    Bind,
    HotAdd,
    HotRemove,
    KernelParam,
    Mdev,
    MdevRemove,
    Sriov,
    Trust,
    Unbind,
)
from .planfile import Plan

#: PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF: REQ_ACS_FLAGS in drivers/iommu/iommu.c.
REQ_ACS_FLAGS = 0x01 | 0x04 | 0x08 | 0x10
PCI_ACS_EC = 0x20


def _group_predictor() -> Callable[[Topology], object] | None:
    """HOOK: explorer.kernel.groups.predict_groups when that module exists, else None."""
    try:
        from ..kernel.groups import predict_groups  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - the module is optional (being written in parallel)
        return None
    return predict_groups


def is_host_driver(driver: object) -> bool:
    """A bound driver that uses the DMA API (not driver_managed_dma): it owns the group's DMA."""
    return isinstance(driver, str) and driver not in DMA_MANAGED_DRIVERS


def class_base(fn: Function) -> int | None:
    return None if fn.class_code is None else fn.class_code >> 16


def class_sub(fn: Function) -> int | None:
    return None if fn.class_code is None else fn.class_code >> 8


class TopologyIndex:
    """Lookups over one topology, computed once and shared by every validation of it."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        t = topology
        groups: dict[str, tuple[Address, ...]] = dict(t.reported_groups)
        self.group_source: str | None = "reported" if groups else None
        if not groups:
            predictor = _group_predictor()
            if predictor is not None and len(t):
                try:
                    pred = predictor(t)
                    groups = {str(k): tuple(v) for k, v in getattr(pred, "groups").items()}
                    self.group_source = "predicted" if groups else None
                except Exception:  # noqa: BLE001 - a predictor failure must not break planning
                    groups = {}
        self.groups = groups
        self.group_of: dict[Address, str] = {a: label for label, members in groups.items() for a in members}
        bus: dict[tuple[int, int], list[Address]] = {}
        nics: list[Address] = []
        storage: list[Address] = []
        for fn in t:
            bus.setdefault((fn.address.domain, fn.address.bus), []).append(fn.address)
            base = class_base(fn)
            if base == 0x02 and is_host_driver(fn.driver):
                nics.append(fn.address)
            elif base == 0x01 and is_host_driver(fn.driver):
                storage.append(fn.address)
        self.bus_members = {k: tuple(v) for k, v in bus.items()}
        self.host_nics = frozenset(nics)
        self.host_storage = frozenset(storage)
        self.vmd_owner: dict[int, Address] = dict(t.vmd_domains)
        self.iommu_present = t.source.iommu_present
        self._acs_env: object = None
        self._acs_memo: dict[Address, bool | None] = {}

    def isolated(self, fn: Function) -> bool | None:
        """pci_acs_enabled(fn, REQ_ACS_FLAGS): explorer.kernel.acs (quirks included) for the
        source's own functions when that module is there, else the plain register check."""
        if fn.address in self._acs_memo:
            return self._acs_memo[fn.address]
        result = None
        if self.topology.functions.get(fn.address) is fn:
            try:
                from ..kernel.acs import AcsEnvironment, acs_verdict

                if self._acs_env is None:
                    self._acs_env = AcsEnvironment.of(self.topology)
                v = acs_verdict(fn, self.topology, self._acs_env)  # type: ignore[arg-type]
                result = v.isolated if v.known else None
            except Exception:  # noqa: BLE001 - fall back to the register check below
                result = acs_isolated(fn)
        else:
            result = acs_isolated(fn)
        self._acs_memo[fn.address] = result
        return result

    def subtree(self, addr: Address) -> list[Address]:
        """``addr`` and every function below it (VFs of PFs inside included)."""
        out: list[Address] = []
        stack = [addr]
        seen: set[Address] = set()
        while stack:
            a = stack.pop()
            if a in seen:
                continue
            seen.add(a)
            out.append(a)
            stack.extend(self.topology.children(a))
            fn = self.topology.functions.get(a)
            if fn is not None:
                stack.extend(fn.virtfns)
        return out


# ---- ACS (drivers/pci/pci.c pci_acs_enabled / pci_acs_flags_enabled) --------------------------


def acs_isolated(fn: Function) -> bool | None:
    """pci_acs_enabled(fn, REQ_ACS_FLAGS) without device quirks; None when the source cannot tell."""
    pt = fn.pcie_type
    if pt is None:
        return None
    if pt is PcieType.CONVENTIONAL or pt in (PcieType.PCIE_TO_PCI_BRIDGE, PcieType.PCI_TO_PCIE_BRIDGE,
                                              PcieType.RC_EVENT_COLLECTOR):
        return False
    if pt in (PcieType.ENDPOINT, PcieType.SWITCH_UPSTREAM, PcieType.LEGACY_ENDPOINT, PcieType.RC_INTEGRATED_ENDPOINT):
        if fn.multifunction is False:
            return True
        if fn.multifunction is None:
            return None
    acs = fn.caps.acs
    if acs is None:
        return None
    if acs is ABSENT:
        return False
    req = REQ_ACS_FLAGS & (acs.cap | PCI_ACS_EC)  # type: ignore[union-attr]
    return (acs.ctrl & req) == req  # type: ignore[union-attr]


# ---- the overlay ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedMdev:
    parent: Address
    mdev_type: str
    uuid: str
    vm: str | None
    action: int


@dataclass(frozen=True, slots=True)
class ApplyIssue:
    """Something the plan asks that cannot even be applied (a missing device, ...)."""

    action: int
    code: str
    message: str
    devices: tuple[Address, ...] = ()


@dataclass
class Simulation:
    index: TopologyIndex
    plan: Plan
    changed: dict[Address, Function] = field(default_factory=dict)
    added: dict[Address, Function] = field(default_factory=dict)
    removed: set[Address] = field(default_factory=set)
    #: device -> [(vm, action index)] in plan order
    assignments: dict[Address, list[tuple[str, int]]] = field(default_factory=dict)
    #: device -> index of the last action that set its driver
    driver_action: dict[Address, int] = field(default_factory=dict)
    #: pf -> (vfs, driver, action index, VF addresses)
    sriov: dict[Address, tuple[int, str | None, int, tuple[Address, ...]]] = field(default_factory=dict)
    mdevs: list[PlannedMdev] = field(default_factory=list)
    #: (uuid, action index) of mdevs the plan removes, in plan order
    mdev_removed: list[tuple[str, int]] = field(default_factory=list)
    #: (uuid, vm, action index) of existing mdevs the plan gives to VMs
    mdev_assigned: list[tuple[str, str, int]] = field(default_factory=list)
    #: (action index, port, new device address or None)
    hot_added: list[tuple[int, Address, Address | None]] = field(default_factory=list)
    #: (action index, device, subtree)
    hot_removed: list[tuple[int, Address, tuple[Address, ...]]] = field(default_factory=list)
    trust: dict[Address, tuple[bool, int]] = field(default_factory=dict)
    kernel_params: list[tuple[KernelParam, int]] = field(default_factory=list)
    issues: list[ApplyIssue] = field(default_factory=list)
    #: group label -> functions added to it by the plan
    group_extra: dict[str, list[Address]] = field(default_factory=dict)
    #: function -> group label for functions the plan added
    added_group: dict[Address, str] = field(default_factory=dict)

    # -- lookups through the overlay
    @property
    def base(self) -> Topology:
        return self.index.topology

    def get(self, addr: Address) -> Function | None:
        if addr in self.removed:
            return None
        fn = self.changed.get(addr)
        if fn is not None:
            return fn
        fn = self.added.get(addr)
        if fn is not None:
            return fn
        return self.index.topology.functions.get(addr)

    def exists(self, addr: Address) -> bool:
        return self.get(addr) is not None

    def group_of(self, addr: Address) -> str | None:
        if addr in self.added_group:
            return self.added_group[addr]
        return self.index.group_of.get(addr)

    def group_members(self, label: str) -> list[Address]:
        moved = self.added_group
        members = [a for a in self.index.groups.get(label, ())
                   if a not in self.removed and (a not in moved or moved[a] == label)]
        members += [a for a in self.group_extra.get(label, ()) if a not in self.removed]
        return members

    def vms_of(self, addr: Address) -> list[tuple[str, int]]:
        return self.assignments.get(addr, [])

    def vm_of(self, addr: Address) -> str | None:
        lst = self.assignments.get(addr)
        return lst[-1][0] if lst else None

    def children(self, addr: Address) -> list[Address]:
        kids = [a for a in self.index.topology.children(addr) if a not in self.removed]
        kids += [a for a, fn in self.added.items() if fn.parent == addr and a not in self.removed and a not in kids]
        return kids

    def touched(self) -> set[Address]:
        return set(self.changed) | set(self.added) | set(self.assignments)

    def vm_names(self) -> list[str]:
        names: list[str] = []
        for lst in self.assignments.values():
            for vm, _ in lst:
                if vm not in names:
                    names.append(vm)
        for m in self.mdevs:
            if m.vm and m.vm not in names:
                names.append(m.vm)
        for _u, vm, _i in self.mdev_assigned:
            if vm not in names:
                names.append(vm)
        return names

    # -- mutation helpers (used while simulating)
    def _set(self, fn: Function) -> None:
        if fn.address in self.added:
            self.added[fn.address] = fn
        else:
            self.changed[fn.address] = fn

    def _issue(self, index: int, code: str, message: str, devices: Iterable[Address] = ()) -> None:
        self.issues.append(ApplyIssue(index, code, message, tuple(devices)))

    @staticmethod
    def _new_label(hint: str) -> str:
        """A label for a group the plan creates (unique: the hint names the new function)."""
        return f"planned:{hint}"


def _targets(sim: Simulation, index: int, device: Address, group: bool, what: str) -> list[Address]:
    fn = sim.get(device)
    if fn is None:
        sim._issue(index, "TARGET-MISSING", f"{what}: {device} is not in the source (or was removed earlier in the plan)", [device])
        return []
    if not group:
        return [device]
    label = sim.group_of(device)
    if label is None:
        sim._issue(index, "GROUP-UNKNOWN", f"{what} --group: the source gives no IOMMU group for {device}", [device])
        return [device]
    out = []
    for a in sim.group_members(label):
        m = sim.get(a)
        if m is None:
            continue
        if m.is_bridge and a != device:
            continue  # bridges stay on pcieport: vfio-pci refuses them (vfio_pci_core_register_device)
        out.append(a)
    return out


def _set_driver(sim: Simulation, addr: Address, driver: object, index: int) -> None:
    fn = sim.get(addr)
    if fn is None:
        return
    sim._set(replace(fn, driver=driver, driver_override=driver if isinstance(driver, str) else ABSENT))
    sim.driver_action[addr] = index


def _vf_addresses(pf: Function, n: int) -> list[Address] | None:
    sr = pf.caps.sriov
    if not present(sr) or sr.vf_offset is None or sr.vf_stride is None:  # type: ignore[union-attr]
        return None
    out = []
    for i in range(n):
        rid = pf.address.devfn + sr.vf_offset + sr.vf_stride * i  # type: ignore[union-attr]
        bus = pf.address.bus + (rid >> 8)
        if bus > 0xFF:
            return out  # the rest do not exist; the SRIOV-BUS rule reports it
        try:
            out.append(Address.from_rid(pf.address.domain, bus, rid & 0xFF))
        except AddressError:
            return out
    return out


def group_for_new_function(sim: Simulation, upstream: Address | None, hint: str) -> str | None:
    """HOOK: the IOMMU group a function added below ``upstream`` would join.

    Follows drivers/iommu/iommu.c ``pci_device_group`` step 2 locally: the new function
    joins the group of the highest bridge above it whose path to the root is not ACS
    isolated; with every bridge isolated it gets a group of its own. A function on a root
    bus (``upstream`` None) gets its own group. DMA aliases and quirks are not modelled
    here; when explorer.kernel.groups exists, ``apply_plan`` uses its prediction instead.
    Returns None when the source cannot tell (ACS unknown on the path).
    """
    path: list[Function] = []
    cur = upstream
    while cur is not None:
        fn = sim.get(cur)
        if fn is None:
            break
        path.append(fn)
        cur = fn.parent
    # Evidence from the kernel itself: an existing function below ``upstream`` sharing its group.
    if upstream is not None:
        ulabel = sim.group_of(upstream)
        if ulabel is not None:
            for kid in sim.index.topology.children(upstream):
                if sim.index.group_of.get(kid) == ulabel:
                    return ulabel
    anchor: Function | None = None
    for i, fn in enumerate(path):
        above_ok = True
        for up in path[i:]:
            iso = sim.index.isolated(up)
            if iso is None:
                return None
            if not iso:
                above_ok = False
                break
        if not above_ok:
            anchor = fn
    if anchor is not None:
        return sim.group_of(anchor.address)
    return sim._new_label(hint)


def _add_function(sim: Simulation, fn: Function, group_hint: str) -> None:
    label = group_for_new_function(sim, fn.parent, group_hint)
    if label is not None:
        sim.added_group[fn.address] = label
        sim.group_extra.setdefault(label, []).append(fn.address)
    fn = replace(fn, iommu_group=label)
    if fn.address in sim.index.topology.functions:
        # Re-created at an address the plan emptied (new VFs where the old ones were).
        sim.removed.discard(fn.address)
        sim.changed[fn.address] = fn
    else:
        sim.added[fn.address] = fn


def _drop_function(sim: Simulation, a: Address) -> None:
    if a in sim.added:
        del sim.added[a]
    elif a in sim.index.topology.functions:
        sim.removed.add(a)
        sim.changed.pop(a, None)
    label = sim.added_group.pop(a, None)
    if label is not None and a in sim.group_extra.get(label, []):
        sim.group_extra[label].remove(a)


def _remove_vfs(sim: Simulation, pf: Function) -> None:
    old = list(pf.virtfns)
    if pf.address in sim.sriov:
        old += list(sim.sriov[pf.address][3])
    for a in old:
        _drop_function(sim, a)
        sim.assignments.pop(a, None)
        sim.driver_action.pop(a, None)


def _apply_sriov(sim: Simulation, action: Sriov, index: int) -> None:
    pf = sim.get(action.pf)
    if pf is None:
        sim._issue(index, "TARGET-MISSING", f"sriov: {action.pf} is not in the source (or was removed earlier in the plan)", [action.pf])
        return
    sr = pf.caps.sriov
    _remove_vfs(sim, pf)
    base_sr = sr if present(sr) else SriovCap()
    new_pf = replace(pf, caps=replace(pf.caps, sriov=replace(base_sr, num_vfs=action.vfs, enabled=action.vfs > 0)), virtfns=())  # type: ignore[arg-type]
    addrs = _vf_addresses(pf, action.vfs) if action.vfs else []
    vfs: list[Address] = []
    if addrs:
        template = next((sim.index.topology.functions[a] for a in pf.virtfns if a in sim.index.topology.functions), None)
        autoprobe = base_sr.drivers_autoprobe  # type: ignore[union-attr]
        for n, a in enumerate(addrs):
            existing = sim.get(a)
            if existing is not None:
                sim._issue(index, "SRIOV-ADDRESS", f"sriov: VF {n} of {pf.address} would be at {a}, where {a} already is", [pf.address, a])
                continue
            if action.driver:
                driver: object = action.driver
            elif autoprobe is False:
                driver = ABSENT
            else:
                driver = template.driver if template is not None else None
            bars = None
            if pf.vf_bars is not None:
                bars = tuple(
                    Bar(b.index, b.kind, (b.start + n * b.size) if (b.start is not None and b.size) else None, b.size,
                        unassigned=b.unassigned)
                    for b in pf.vf_bars
                )
            vf = Function(
                address=a,
                parent=pf.parent,
                vendor_id=pf.vendor_id,
                device_id=base_sr.vf_device,  # type: ignore[union-attr]
                subsystem_vendor_id=pf.subsystem_vendor_id,
                subsystem_device_id=pf.subsystem_device_id,
                class_code=pf.class_code,
                revision=pf.revision,
                header_type=0,
                multifunction=False,  # pci_iov_add_virtfn: VFs are never multifunction
                pcie_type=pf.pcie_type,
                bars=bars,
                rom=ABSENT,
                vf_bars=(),
                bridge=ABSENT,
                caps=Capabilities(sriov=ABSENT, acs=ABSENT, ats=pf.caps.ats, pri=pf.caps.pri, pasid=ABSENT),
                slot=pf.slot,
                driver=driver,  # type: ignore[arg-type]
                driver_override=action.driver if action.driver else ABSENT,
                numa_node=pf.numa_node,
                physfn=pf.address,
                is_virtfn=True,
                boot_vga=False,
                reset_methods=template.reset_methods if template is not None else None,
                removable=pf.removable,
            )
            _add_function(sim, vf, f"vf{n}-of-{pf.address}")
            if action.driver:
                sim.driver_action[a] = index
            vfs.append(a)
    elif action.vfs:
        sim._issue(index, "SRIOV-LAYOUT", f"sriov: the source gives no VF offset/stride for {pf.address}: the VFs' addresses are unknown", [pf.address])
    sim._set(replace(new_pf, virtfns=tuple(vfs)))
    sim.sriov[pf.address] = (action.vfs, action.driver, index, tuple(vfs))


def _apply_hot_add(sim: Simulation, action: HotAdd, index: int) -> None:
    port = sim.get(action.port)
    if port is None:
        sim._issue(index, "TARGET-MISSING", f"hot-add: port {action.port} is not in the source", [action.port])
        sim.hot_added.append((index, action.port, None))
        return
    br = port.bridge
    if not present(br) or br.secondary is None:  # type: ignore[union-attr]
        sim._issue(index, "HOTADD-NOT-PORT", f"hot-add: {action.port} is not a bridge with a known secondary bus", [action.port])
        sim.hot_added.append((index, action.port, None))
        return
    addr = Address(action.port.domain, br.secondary, 0, 0)  # type: ignore[union-attr]
    if sim.get(addr) is not None:
        sim._issue(index, "HOTADD-OCCUPIED", f"hot-add: {action.port}'s slot already holds {addr}", [action.port, addr])
        sim.hot_added.append((index, action.port, None))
        return
    bars = []
    i = 0
    for spec in action.bars:
        if spec.index is not None:
            i = spec.index
        bars.append(Bar(i, spec.kind, None, spec.size, unassigned=True))
        i += 2 if spec.kind.is_64bit else 1
    is_bridge = action.buses > 0
    fn = Function(
        address=addr,
        parent=action.port,
        header_type=1 if is_bridge else 0,
        multifunction=False,
        pcie_type=PcieType.SWITCH_UPSTREAM if is_bridge else PcieType.ENDPOINT,
        bars=tuple(bars),
        bridge=BridgeInfo() if is_bridge else ABSENT,
        driver=None,
        removable=None,
    )
    _add_function(sim, fn, f"hot-add-{addr}")
    sim.hot_added.append((index, action.port, addr))


def _apply_hot_remove(sim: Simulation, action: HotRemove, index: int) -> None:
    if sim.get(action.device) is None:
        sim._issue(index, "TARGET-MISSING", f"hot-remove: {action.device} is not in the source (or was removed earlier in the plan)", [action.device])
        return
    sub: list[Address] = []
    stack = [action.device]
    while stack:
        a = stack.pop()
        fn = sim.get(a)
        if fn is None or a in sub:
            continue
        sub.append(a)
        stack.extend(sim.children(a))
        stack.extend(fn.virtfns)
    for a in sub:
        _drop_function(sim, a)
    sim.hot_removed.append((index, action.device, tuple(sub)))


def _apply_trust(sim: Simulation, action: Trust, index: int) -> None:
    port = sim.get(action.port)
    if port is None:
        sim._issue(index, "TARGET-MISSING", f"trust: port {action.port} is not in the source", [action.port])
        return
    sim._set(replace(port, external_facing=action.external))
    sim.trust[action.port] = (action.external, index)
    # Below the port the kernel decides again (set_pcie_untrusted): drop the old report.
    stack = list(sim.children(action.port))
    while stack:
        a = stack.pop()
        fn = sim.get(a)
        if fn is None:
            continue
        if fn.removable is not None:
            sim._set(replace(fn, removable=None))
        stack.extend(sim.children(a))


def apply_action(sim: Simulation, action: Action, index: int) -> None:
    """Apply one action to the overlay (in plan order)."""
    if isinstance(action, Bind):
        for a in _targets(sim, index, action.device, action.group, "bind"):
            _set_driver(sim, a, action.driver, index)
    elif isinstance(action, Unbind):
        for a in _targets(sim, index, action.device, False, "unbind"):
            _set_driver(sim, a, ABSENT, index)
    elif isinstance(action, Assign):
        for a in _targets(sim, index, action.device, action.group, "assign"):
            sim.assignments.setdefault(a, []).append((action.vm, index))
            fn = sim.get(a)
            if fn is not None and fn.driver != "vfio-pci" and not (a in sim.driver_action and isinstance(fn.driver, str) and "vfio" in fn.driver):
                # A VM reaches a PCI device through vfio-pci (libvirt managed='yes' binds it too).
                _set_driver(sim, a, "vfio-pci", index)
    elif isinstance(action, Sriov):
        _apply_sriov(sim, action, index)
    elif isinstance(action, Mdev):
        if sim.get(action.parent) is None:
            sim._issue(index, "TARGET-MISSING", f"mdev: parent {action.parent} is not in the source", [action.parent])
        for u in action.uuids:
            sim.mdevs.append(PlannedMdev(action.parent, action.mdev_type, u, action.vm, index))
    elif isinstance(action, MdevRemove):
        sim.mdev_removed.append((action.uuid, index))
    elif isinstance(action, AssignMdev):
        sim.mdev_assigned.append((action.uuid, action.vm, index))
    elif isinstance(action, HotAdd):
        _apply_hot_add(sim, action, index)
    elif isinstance(action, HotRemove):
        _apply_hot_remove(sim, action, index)
    elif isinstance(action, Trust):
        _apply_trust(sim, action, index)
    elif isinstance(action, KernelParam):
        sim.kernel_params.append((action, index))


def simulate(topology: Topology, plan: Plan, index: TopologyIndex | None = None) -> Simulation:
    sim = Simulation(index or TopologyIndex(topology), plan)
    for i, action in enumerate(plan.actions):
        apply_action(sim, action, i)
    return sim


# ---- kernel command line ----------------------------------------------------------------------


def merged_cmdline(base: str | None, params: Iterable[KernelParam]) -> str:
    """The command line after the plan: same-name parameters replaced, ``pci=`` options merged.

    A later parameter replaces every earlier word of the same name and goes to the end; the
    options of every ``pci=`` word are merged into one ``pci=`` word at the end, a later
    option replacing the same-key ones. Linear in the number of words and options.
    """
    words: dict[int, str | None] = {}  # id -> word; None: the merged pci= word, rendered last
    by_name: dict[str, list[int]] = {}
    opts: dict[int, str] = {}
    opt_keys: dict[str, list[int]] = {}
    merged_id: int | None = None
    count = 0

    def add(word: str | None, name: str) -> int:
        nonlocal count
        count += 1
        words[count] = word
        by_name.setdefault(name, []).append(count)
        return count

    def add_opt(opt: str) -> None:
        nonlocal count
        count += 1
        opts[count] = opt
        opt_keys.setdefault(opt.split("=", 1)[0], []).append(count)

    for w in (base or "").split():
        add(w, w.split("=", 1)[0])
    for p in params:
        if p.name == "pci" and p.value:
            keep = []
            for i in by_name.pop("pci", []):
                w = words.get(i, "")
                if i not in words:
                    continue
                if w is None:  # the merged word: its options are already in opts
                    del words[i]
                elif w.startswith("pci="):
                    del words[i]
                    for o in w[4:].split(","):
                        if o:
                            add_opt(o)
                else:
                    keep.append(i)
            if keep:
                by_name["pci"] = keep
            for new in p.value.split(","):
                for j in opt_keys.pop(new.split("=", 1)[0], []):
                    opts.pop(j, None)
                add_opt(new)
            merged_id = add(None, "pci")
        else:
            for i in by_name.pop(p.name, []):
                if i == merged_id:
                    opts.clear()
                    opt_keys.clear()
                    merged_id = None
                words.pop(i, None)
            add(p.text, p.name)
    return " ".join("pci=" + ",".join(opts.values()) if w is None else w for w in words.values())


# ---- the full new topology ----------------------------------------------------------------------


def materialize(sim: Simulation) -> Topology:
    base = sim.base
    fns = []
    for a, fn in base.functions.items():
        if a in sim.removed:
            continue
        fns.append(sim.changed.get(a, fn))
    fns.extend(sim.added.values())
    # Children lists (virtfns) of PFs whose VFs were removed with a hot-remove stay consistent:
    fns = [replace(f, virtfns=tuple(v for v in f.virtfns if v not in sim.removed)) if f.virtfns else f for f in fns]
    src = base.source
    if sim.kernel_params:
        src = replace(src, kernel_cmdline=merged_cmdline(src.kernel_cmdline, [p for p, _ in sim.kernel_params]))
    src = replace(src, description=(src.description or "") + (" (after plan)" if src.description else "after plan"))
    return Topology.build(fns, base.host_bridges, src, _mdev_after(sim))


def _mdev_after(sim: Simulation) -> MdevInfo | None:
    """The mdevs after the plan: removed ones gone, created ones added (their group is
    given by vfio when a VM opens them: unknown until then)."""
    info = sim.base.mdev
    if info is None:
        return None
    gone = {u for u, _ in sim.mdev_removed}
    inst = [i for i in info.instances if i.uuid not in gone]
    have = {i.uuid for i in inst}
    inst += [MdevInstance(m.uuid, str(m.parent), m.mdev_type) for m in sim.mdevs if m.uuid not in gone and m.uuid not in have]
    return replace(info, instances=tuple(inst))


def apply_plan(topology: Topology, plan: Plan) -> Topology:
    """The topology after every action of ``plan`` (drivers, VFs, hot-add/remove, trust, cmdline)."""
    return materialize(simulate(topology, plan))


__all__ = [
    "ApplyIssue", "PlannedMdev", "Simulation", "TopologyIndex", "acs_isolated", "apply_action", "apply_plan",
    "class_base", "class_sub", "group_for_new_function", "is_host_driver", "materialize", "merged_cmdline", "simulate",
]
