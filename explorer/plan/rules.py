"""The validation rules. Each is independent, has stable codes, and names the kernel code behind it.

A rule is a function ``rule(ctx) -> Iterable[Finding]`` registered with ``@rule(...)``.
It looks only at what the plan touches (the ``Simulation`` overlay) plus per-topology
indexes computed once, so running every rule costs time proportional to the plan, not
to the machine. ``RULES`` lists them; docs/plan-format.md has the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from ..model import ABSENT, Address, Function, PcieType, present
from ..model.units import human_size
from .actions import DMA_MANAGED_DRIVERS, VFIO_DRIVERS, Assign, Bind, HotAdd, Sriov, Unbind
from .apply import Simulation, class_base, class_sub, is_host_driver, merged_cmdline

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of validation: a stable code, a severity, a message naming the devices,
    and the kernel behaviour behind it (file and function)."""

    code: str
    severity: str
    message: str
    devices: tuple[Address, ...] = ()
    kernel: str = ""
    #: Index of the plan action it is about (None: the plan as a whole).
    action: int | None = None
    #: ``file:line`` of that action when the plan came from a file.
    where: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "devices": [str(a) for a in self.devices],
            "kernel": self.kernel,
            "action": None if self.action is None else self.action + 1,
            "where": self.where,
        }

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else (f"action {self.action + 1}: " if self.action is not None else "")
        kern = f" [{self.kernel}]" if self.kernel else ""
        return f"{self.severity}: {self.code}: {where}{self.message}{kern}"


@dataclass
class Context:
    sim: Simulation
    _untrusted: dict[Address, bool | None] = field(default_factory=dict)

    @property
    def plan(self):  # noqa: ANN201 - Plan
        return self.sim.plan

    def finding(self, code: str, severity: str, message: str, devices: Iterable[Address] = (),
                kernel: str = "", action: int | None = None) -> Finding:
        where = self.plan.where(action) if action is not None else None
        return Finding(code, severity, message, tuple(devices), kernel, action, where)

    def label(self, addr: Address) -> str:
        """``0000:01:00.0 (e1000e)``: an address with what it is doing."""
        fn = self.sim.get(addr) or self.sim.base.functions.get(addr)
        if fn is None:
            return str(addr)
        drv = fn.driver
        what = drv if isinstance(drv, str) else ("no driver" if drv is ABSENT else "driver unknown")
        return f"{addr} ({what})"

    def final_cmdline(self) -> str:
        return merged_cmdline(self.sim.base.source.kernel_cmdline, [p for p, _ in self.sim.kernel_params])


@dataclass(frozen=True)
class Rule:
    name: str
    codes: tuple[str, ...]
    summary: str
    kernel: str
    check: Callable[[Context], Iterable[Finding]]


RULES: list[Rule] = []


def rule(name: str, codes: tuple[str, ...], summary: str, kernel: str) -> Callable[[Callable[[Context], Iterable[Finding]]], Callable[[Context], Iterable[Finding]]]:
    def deco(fn: Callable[[Context], Iterable[Finding]]) -> Callable[[Context], Iterable[Finding]]:
        RULES.append(Rule(name, codes, summary, kernel, fn))
        return fn

    return deco


def _devs(addrs: Iterable[Address]) -> str:
    return ", ".join(str(a) for a in addrs)


# ---- what could not be applied at all ----------------------------------------------------------

_ISSUE_SEVERITY = {
    "TARGET-MISSING": (ERROR, "the device must exist (drivers/pci/pci-sysfs.c: no such sysfs directory)"),
    "GROUP-UNKNOWN": (WARNING, "drivers/iommu/iommu.c pci_device_group"),
    "SRIOV-LAYOUT": (WARNING, "drivers/pci/iov.c pci_iov_virtfn_bus, pci_iov_virtfn_devfn"),
    "SRIOV-ADDRESS": (ERROR, "drivers/pci/iov.c pci_iov_add_virtfn"),
    "HOTADD-NOT-PORT": (ERROR, "drivers/pci/probe.c pci_scan_slot"),
    "HOTADD-OCCUPIED": (ERROR, "drivers/pci/probe.c pci_scan_slot"),
}


@rule("apply", tuple(_ISSUE_SEVERITY), "actions that cannot be applied (missing devices, occupied slots)", "")
def rule_apply_issues(ctx: Context) -> Iterator[Finding]:
    for issue in ctx.sim.issues:
        sev, kern = _ISSUE_SEVERITY.get(issue.code, (ERROR, ""))
        yield ctx.finding(issue.code, sev, issue.message, issue.devices, kern, issue.action)


# ---- IOMMU group viability ---------------------------------------------------------------------

KERNEL_GROUP = (
    "drivers/iommu/iommu.c iommu_group_claim_dma_owner / iommu_device_claim_dma_owner (-EPERM while any "
    "group member has a DMA-API driver); drivers/pci/pci-driver.c pci_dma_configure"
)


@rule("group-viability", ("GROUP-SPLIT", "GROUP-DRIVER-UNKNOWN", "GROUP-UNKNOWN", "NO-IOMMU"),
      "every device of a group a VM uses goes to that VM, or is bound to vfio-pci/pci-stub, unbound, or a bridge on pcieport",
      KERNEL_GROUP)
def rule_group_viability(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    if not sim.assignments:
        return
    if sim.index.iommu_present is False:
        devs = sorted(sim.assignments)
        yield ctx.finding(
            "NO-IOMMU", ERROR,
            f"the source shows no IOMMU groups, so no device can be given to a VM ({_devs(devs)}): "
            "enable the IOMMU (intel_iommu=on / amd_iommu) first",
            devs, "drivers/vfio/group.c vfio_group_find_or_alloc (no iommu_group: only vfio.enable_unsafe_noiommu_mode)",
            sim.assignments[devs[0]][0][1])
        return
    # (vm, group) -> first action index
    used: dict[tuple[str, str], int] = {}
    for addr, lst in sim.assignments.items():
        if not sim.exists(addr):
            continue
        label = sim.group_of(addr)
        fn = sim.get(addr)
        if label is None:
            if fn is not None and fn.iommu_group is ABSENT:
                yield ctx.finding("NO-IOMMU", ERROR, f"{addr} is in no IOMMU group: vfio-pci cannot use it",
                                  [addr], "drivers/vfio/group.c vfio_group_find_or_alloc", lst[0][1])
            else:
                yield ctx.finding("GROUP-UNKNOWN", WARNING,
                                  f"the source gives no IOMMU group for {addr}: whether the rest of its group can stay on the host is not checked",
                                  [addr], "drivers/iommu/iommu.c pci_device_group", lst[0][1])
            continue
        vm = lst[-1][0]
        key = (vm, label)
        if key not in used:
            used[key] = lst[-1][1]
    for (vm, label), index in used.items():
        split: list[str] = []
        bad: list[Address] = []
        unknown: list[Address] = []
        for m in sim.group_members(label):
            fn = sim.get(m)
            if fn is None:
                continue
            other_vm = sim.vm_of(m)
            if other_vm == vm:
                continue
            if other_vm is not None:
                split.append(f"{m} (given to VM {other_vm!r})")
                bad.append(m)
                continue
            drv = fn.driver
            if drv is ABSENT or (isinstance(drv, str) and drv in DMA_MANAGED_DRIVERS):
                continue
            if drv is None:
                unknown.append(m)
                continue
            split.append(f"{m} (host driver {drv})")
            bad.append(m)
        if bad:
            yield ctx.finding(
                "GROUP-SPLIT", ERROR,
                f"VM {vm!r} uses IOMMU group {label}, which also holds {', '.join(split)}: the kernel gives a group "
                f"to one owner only; give them to {vm!r}, bind them to vfio-pci or pci-stub, or unbind them",
                bad, KERNEL_GROUP, index)
        if unknown:
            yield ctx.finding(
                "GROUP-DRIVER-UNKNOWN", WARNING,
                f"VM {vm!r} uses IOMMU group {label}; the source does not say which driver {_devs(unknown)} "
                "has: any DMA-API driver there would make the group unusable",
                unknown, KERNEL_GROUP, index)


# ---- the assigned device itself ----------------------------------------------------------------


def _vfio_targets(sim: Simulation) -> Iterator[tuple[Address, Function, int]]:
    """Devices the plan puts on a VFIO driver (bind or assign), with the action that did it."""
    for addr, index in sim.driver_action.items():
        fn = sim.get(addr)
        if fn is not None and isinstance(fn.driver, str) and fn.driver in VFIO_DRIVERS:
            yield addr, fn, index


@rule("assign-driver", ("ASSIGN-DRIVER", "DOUBLE-ASSIGN", "ASSIGN-TWICE"),
      "a device given to a VM ends on vfio-pci, and is given to one VM only",
      "drivers/vfio/pci/vfio_pci.c vfio_pci_probe; drivers/iommu/iommu.c iommu_device_claim_dma_owner (one owner)")
def rule_assign(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    for addr, lst in sim.assignments.items():
        fn = sim.get(addr)
        if fn is None:
            continue
        vms = []
        for vm, _ in lst:
            if vm not in vms:
                vms.append(vm)
        if len(vms) > 1:
            yield ctx.finding("DOUBLE-ASSIGN", ERROR, f"{addr} is given to {len(vms)} VMs: {', '.join(repr(v) for v in vms)}",
                              [addr], "drivers/iommu/iommu.c iommu_device_claim_dma_owner (a second owner gets -EPERM)",
                              lst[-1][1])
        elif len({j for _, j in lst}) > 1:
            steps = sorted({j + 1 for _, j in lst})
            yield ctx.finding("ASSIGN-TWICE", WARNING,
                              f"{addr} is given to VM {vms[0]!r} by {len(steps)} actions ({', '.join(map(str, steps))}): "
                              "one is enough (an assign with --group also covers each member)",
                              [addr], "", lst[-1][1])
        if not (isinstance(fn.driver, str) and fn.driver in VFIO_DRIVERS):
            yield ctx.finding("ASSIGN-DRIVER", ERROR,
                              f"{addr} is given to VM {lst[-1][0]!r} but the plan leaves it on {fn.driver if isinstance(fn.driver, str) else 'no driver'}: "
                              "a VM reaches a PCI device only through vfio-pci",
                              [addr], "drivers/vfio/pci/vfio_pci.c vfio_pci_probe", sim.driver_action.get(addr, lst[-1][1]))


@rule("bridge", ("BRIDGE-ASSIGN", "HEADER-UNKNOWN"), "vfio-pci binds only normal (type 0) headers",
      "drivers/vfio/pci/vfio_pci_core.c vfio_pci_core_register_device (-EINVAL unless PCI_HEADER_TYPE_NORMAL)")
def rule_bridge(ctx: Context) -> Iterator[Finding]:
    kern = "drivers/vfio/pci/vfio_pci_core.c vfio_pci_core_register_device (-EINVAL unless PCI_HEADER_TYPE_NORMAL)"
    for addr, fn, index in _vfio_targets(ctx.sim):
        if fn.header_type is None:
            if fn.is_bridge:
                yield ctx.finding("BRIDGE-ASSIGN", ERROR, f"{addr} is a bridge: vfio-pci refuses bridges", [addr], kern, index)
            elif fn.is_bridge is None:
                yield ctx.finding("HEADER-UNKNOWN", WARNING, f"the source does not give {addr}'s header type: vfio-pci binds only type 0",
                                  [addr], kern, index)
        elif fn.header_type != 0:
            what = {1: "a PCI-to-PCI bridge (header type 1)", 2: "a CardBus bridge (header type 2)"}.get(fn.header_type, f"header type {fn.header_type}")
            yield ctx.finding("BRIDGE-ASSIGN", ERROR, f"{addr} is {what}: vfio-pci refuses anything but a normal header",
                              [addr], kern, index)


#: drivers/vfio/pci/vfio_pci.c vfio_pci_dev_in_denylist: Intel QAT C3XXX, C62X, DH895XCC (PF and VF), DSA_SPR0, IAX_SPR0.
VFIO_DENYLIST = {(0x8086, d) for d in (0x19E2, 0x19E3, 0x37C8, 0x37C9, 0x0435, 0x0443, 0x0B25, 0x0CFE)}


@rule("denylist", ("VFIO-DENYLIST",), "vfio-pci refuses devices on its denylist unless disable_denylist=1",
      "drivers/vfio/pci/vfio_pci.c vfio_pci_dev_in_denylist")
def rule_denylist(ctx: Context) -> Iterator[Finding]:
    if "vfio-pci.disable_denylist=1" in ctx.final_cmdline().split():
        return
    for addr, fn, index in _vfio_targets(ctx.sim):
        if fn.driver == "vfio-pci" and (fn.vendor_id, fn.device_id) in VFIO_DENYLIST:
            yield ctx.finding("VFIO-DENYLIST", ERROR,
                              f"{addr} ({fn.vendor_device}) is on vfio-pci's denylist: it will not bind without vfio-pci.disable_denylist=1",
                              [addr], "drivers/vfio/pci/vfio_pci.c vfio_pci_dev_in_denylist", index)


@rule("vmd", ("VMD-CHILD",), "devices behind a VMD endpoint DMA as the VMD endpoint: only the whole VMD device can be assigned",
      "arch/x86/pci/common.c pci_real_dma_dev; drivers/pci/controller/vmd.c")
def rule_vmd(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    owners = sim.index.vmd_owner
    if not owners:
        return
    seen: set[Address] = set()  # one finding per device, whether a bind or an assign put it on vfio
    for addr, index in list(sim.driver_action.items()) + [(a, lst[-1][1]) for a, lst in sim.assignments.items()]:
        if addr in seen:
            continue
        owner = owners.get(addr.domain)
        if owner is None:
            continue
        fn = sim.get(addr)
        if fn is None:
            continue
        if sim.vm_of(addr) is not None or (isinstance(fn.driver, str) and fn.driver in VFIO_DRIVERS):
            ovm = sim.vm_of(owner)
            if ovm is None or ovm != sim.vm_of(addr):
                seen.add(addr)
                yield ctx.finding(
                    "VMD-CHILD", ERROR,
                    f"{addr} sits in VMD domain {addr.domain:04x} owned by {owner}: its DMA carries {owner}'s requester ID, "
                    f"so it cannot be given away apart from {owner}",
                    [addr, owner], "arch/x86/pci/common.c pci_real_dma_dev; drivers/pci/controller/vmd.c vmd_enable_domain", index)


@rule("gpu-functions", ("GPU-SPLIT",), "a GPU's display and audio functions go to the same place",
      "drivers/vfio/pci/vfio_pci_core.c (each function is its own VFIO device; the guest driver expects both)")
def rule_gpu(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    seen: set[tuple[int, int, int]] = set()
    for addr in list(sim.assignments):
        fn = sim.get(addr)
        if fn is None or addr.slot in seen:
            continue
        seen.add(addr.slot)
        funcs = [addr] + [a for a in sim.base.slot_siblings(addr) if sim.exists(a)]
        display = [a for a in funcs if class_base(sim.get(a)) == 0x03]  # type: ignore[arg-type]
        audio = [a for a in funcs if class_sub(sim.get(a)) == 0x0403]  # type: ignore[arg-type]
        if not display or not audio:
            continue
        homes = {a: sim.vm_of(a) for a in display + audio}
        if len(set(homes.values())) > 1:
            desc = ", ".join(f"{a} ({'VM ' + repr(v) if v else 'host'})" for a, v in homes.items())
            yield ctx.finding("GPU-SPLIT", WARNING, f"a GPU's display and audio functions are split: {desc}",
                              list(homes), "drivers/vfio/pci/vfio_pci_core.c", sim.assignments[addr][-1][1])


# ---- host-critical devices -------------------------------------------------------------------------


def _taken(sim: Simulation) -> dict[Address, int]:
    """Devices the plan takes from the host (assigned, bound away, unbound, removed): addr -> action."""
    out: dict[Address, int] = {}
    for addr, index in sim.driver_action.items():
        fn = sim.get(addr)
        if fn is not None and not is_host_driver(fn.driver):
            out[addr] = index
    for addr, lst in sim.assignments.items():
        out.setdefault(addr, lst[-1][1])
    for index, _dev, sub in sim.hot_removed:
        for a in sub:
            out.setdefault(a, index)
    return out


@rule("host-critical", ("HOST-CRITICAL", "HOST-CONSOLE", "HOST-STORAGE"),
      "the host keeps its chipset, its last network interface and last storage controller, and (warning) its boot display",
      "drivers/vfio/pci/vfio_pci_core.c vfio_pci_vga_init (aperture_remove_conflicting_pci_devices drops the boot framebuffer)")
def rule_host_critical(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    taken = _taken(sim)
    if not taken:
        return
    idx = sim.index
    # Cost proportional to what the plan takes, not to the machine's device count.
    nics_gone = sorted(a for a in taken if a in idx.host_nics)
    storage_gone = sorted(a for a in taken if a in idx.host_storage)
    storage_left = len(idx.host_storage) > len(storage_gone)
    for pool, gone, what, loss in ((idx.host_nics, nics_gone, "network controller", "no network"),
                                   (idx.host_storage, storage_gone, "storage controller", "no disks")):
        if gone and len(pool) == len(gone):
            yield ctx.finding("HOST-CRITICAL", ERROR,
                              f"the plan takes every {what} the host drives ({', '.join(ctx.label(a) for a in gone)}): "
                              f"the host would have {loss}",
                              gone, "drivers/pci/pci-driver.c (unbinding the driver removes what it provides)", taken[gone[-1]])
    for addr, index in sorted(taken.items()):
        base = sim.base.functions.get(addr)
        if base is None:
            continue
        sub = class_sub(base)
        if sub in (0x0600, 0x0601):
            yield ctx.finding("HOST-CRITICAL", ERROR, f"{addr} is the host's {'host bridge' if sub == 0x0600 else 'ISA/LPC bridge'}: the host cannot give it away",
                              [addr], "drivers/pci (chipset devices carry the platform)", index)
        if base.boot_vga:
            yield ctx.finding("HOST-CONSOLE", WARNING,
                              f"{addr} is the boot display: vfio-pci removes its firmware framebuffer, so the host loses its console",
                              [addr], "drivers/vfio/pci/vfio_pci_core.c vfio_pci_vga_init (aperture_remove_conflicting_pci_devices)", index)
        if addr in idx.host_storage and storage_left:
            yield ctx.finding("HOST-STORAGE", WARNING,
                              f"{addr} is a storage controller the host uses ({base.driver}): the source does not say whether the host boots from it",
                              [addr], "drivers/pci/pci-driver.c", index)


# ---- SR-IOV ------------------------------------------------------------------------------------------

KERNEL_NUMVFS = "drivers/pci/iov.c sriov_numvfs_store"


@rule("sriov", ("SRIOV-NO-CAP", "SRIOV-TOTALVFS", "SRIOV-NO-DRIVER", "SRIOV-BUS", "SRIOV-BARS", "SRIOV-ZERO-FIRST",
                "SRIOV-AUTOPROBE", "SRIOV-VFIO-PF"),
      "VF counts the kernel accepts: TotalVFs, a PF driver, bus numbers and VF BAR space",
      KERNEL_NUMVFS)
def rule_sriov(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    for i, action in enumerate(sim.plan.actions):
        if not isinstance(action, Sriov):
            continue
        pf0 = sim.base.functions.get(action.pf)
        pf = sim.get(action.pf)
        if pf0 is None or pf is None:
            continue
        sr = pf0.caps.sriov
        if sr is ABSENT:
            yield ctx.finding("SRIOV-NO-CAP", ERROR, f"{action.pf} has no SR-IOV capability", [action.pf],
                              "drivers/pci/iov.c sriov_init (no sriov_* files without the capability)", i)
            continue
        if sr is None:
            yield ctx.finding("SRIOV-NO-CAP", WARNING, f"the source does not say whether {action.pf} can do SR-IOV", [action.pf],
                              "drivers/pci/iov.c sriov_init", i)
            continue
        total = sr.driver_total_vfs if sr.driver_total_vfs is not None else sr.total_vfs  # type: ignore[union-attr]
        if total is not None and action.vfs > total:
            yield ctx.finding("SRIOV-TOTALVFS", ERROR,
                              f"{action.pf} takes at most {total} VFs (sriov_totalvfs); writing {action.vfs} fails with -ERANGE",
                              [action.pf], KERNEL_NUMVFS + " (-ERANGE); pci_sriov_get_totalvfs", i)
            continue
        # the PF driver at this point of the plan
        drv = _driver_before(sim, action.pf, i)
        if action.vfs and drv is ABSENT:
            yield ctx.finding("SRIOV-NO-DRIVER", ERROR,
                              f"{action.pf} has no driver bound: sriov_numvfs needs a PF driver with sriov_configure (-ENOENT)",
                              [action.pf], KERNEL_NUMVFS + " (-ENOENT, \"no driver bound to device\")", i)
        elif action.vfs and drv is None:
            yield ctx.finding("SRIOV-NO-DRIVER", WARNING, f"the source does not say which driver {action.pf} has: sriov_numvfs needs one with sriov_configure",
                              [action.pf], KERNEL_NUMVFS, i)
        elif action.vfs and isinstance(drv, str) and drv in VFIO_DRIVERS and "vfio-pci.enable_sriov=1" not in ctx.final_cmdline().split():
            yield ctx.finding("SRIOV-VFIO-PF", ERROR,
                              f"{action.pf} is on {drv}: it creates VFs only with vfio-pci.enable_sriov=1",
                              [action.pf], "drivers/vfio/pci/vfio_pci_core.c vfio_pci_core_sriov_configure (enable_sriov)", i)
        before = _numvfs_before(sim, action.pf, i)
        if before and action.vfs and before != action.vfs:
            yield ctx.finding("SRIOV-ZERO-FIRST", INFO,
                              f"{action.pf} has {before} VFs: the change to {action.vfs} writes 0 first (non-zero to non-zero gives -EBUSY)",
                              [action.pf], KERNEL_NUMVFS + " (-EBUSY)", i)
        if action.vfs and not action.driver and sr.drivers_autoprobe is False:  # type: ignore[union-attr]
            yield ctx.finding("SRIOV-AUTOPROBE", INFO,
                              f"{action.pf} has sriov_drivers_autoprobe=0 and the plan names no VF driver: the VFs stay unbound",
                              [action.pf], "drivers/pci/pci-driver.c pci_device_can_probe", i)
        if not action.vfs:
            continue
        yield from _sriov_space(ctx, pf0, action, i)


def _driver_before(sim: Simulation, addr: Address, index: int) -> object:
    fn = sim.base.functions.get(addr)
    drv: object = fn.driver if fn is not None else None
    for a in sim.plan.actions[:index]:
        if isinstance(a, Bind) and a.device == addr:
            drv = a.driver
        elif isinstance(a, Assign) and a.device == addr:
            drv = "vfio-pci"
        elif isinstance(a, Unbind) and a.device == addr:
            drv = ABSENT
    return drv


def _numvfs_before(sim: Simulation, addr: Address, index: int) -> int | None:
    fn = sim.base.functions.get(addr)
    n = fn.caps.sriov.num_vfs if fn is not None and present(fn.caps.sriov) else None  # type: ignore[union-attr]
    for a in sim.plan.actions[:index]:
        if isinstance(a, Sriov) and a.pf == addr:
            n = a.vfs
    return n


def _hotplug_fit(name: str) -> Callable[..., Any] | None:
    """HOOK: explorer.kernel.setup.fit_hotadd / fit_sriov when that module exists."""
    try:
        from ..kernel import setup as hotplug
    except Exception:  # noqa: BLE001 - optional module, written in parallel
        return None
    return getattr(hotplug, name, None)


#: (name, id(topology), args) -> (topology ref, result): fits are simulations of the whole
#: domain, so each is computed once per topology and reused while a plan is edited.
_FIT_CACHE: dict[tuple[Any, ...], tuple[Any, Any]] = {}
_FIT_CACHE_MAX = 64


def _cached_fit(name: str, topology: Any, *args: Any, **kw: Any) -> Any:
    import weakref

    key = (name, id(topology), args, tuple(sorted(kw.items())))
    hit = _FIT_CACHE.get(key)
    if hit is not None and hit[0]() is topology:
        return hit[1]
    fn = _hotplug_fit(name)
    if fn is None:
        return None
    try:
        result = fn(topology, *args, **kw)
    except Exception as e:  # noqa: BLE001 - a fit that cannot run is reported, never fatal
        result = e
    if len(_FIT_CACHE) >= _FIT_CACHE_MAX:
        _FIT_CACHE.pop(next(iter(_FIT_CACHE)))
    _FIT_CACHE[key] = (weakref.ref(topology), result)
    return result


def _sriov_space(ctx: Context, pf: Function, action: Sriov, i: int) -> Iterator[Finding]:
    sim = ctx.sim
    res = _cached_fit("fit_sriov", sim.base, action.pf, action.vfs)
    if res is not None and not isinstance(res, Exception):
        errno = getattr(res, "errno", None)
        if errno in ("ENOMEM", "EIO"):
            # The export writes 0 first, so the "already enabled" (-EBUSY) part does not apply.
            msgs = [m for m in (getattr(res, "messages", ()) or ()) if "already enabled" not in m]
            why = "; ".join(msgs) or getattr(res, "error", None) or "the kernel refuses"
            bus = any(not v.bus_ok for v in (getattr(res, "vfs", ()) or ())) or "out of range" in why
            code = "SRIOV-BUS" if bus else "SRIOV-BARS"
            fix = "; ".join(r for r in (getattr(res, "remedies", ()) or ()) if "echo 0" not in r)
            yield ctx.finding(code, ERROR, f"{action.vfs} VFs of {action.pf}: {why}" + (f" (remedies: {fix})" if fix else ""),
                              [action.pf], "drivers/pci/iov.c sriov_enable (explorer.kernel.setup.fit_sriov)", i)
            return
        if getattr(res, "fits", False) and getattr(res, "certain", True):
            return
        # EBUSY (the export writes 0 first), ENOENT, ERANGE: other rules say it; check space here.
    sr = pf.caps.sriov
    # Bus numbers: the last VF's bus must be within the PF bus's range (sriov_enable, -ENOMEM).
    if sr.vf_offset is not None and sr.vf_stride is not None:  # type: ignore[union-attr]
        last_rid = pf.address.devfn + sr.vf_offset + sr.vf_stride * (action.vfs - 1)  # type: ignore[union-attr]
        last_bus = pf.address.bus + (last_rid >> 8)
        end = _bus_end(sim, pf)
        if last_bus > 0xFF or (end is not None and last_bus > end):
            yield ctx.finding("SRIOV-BUS", ERROR,
                              f"VF {action.vfs - 1} of {action.pf} would sit on bus {last_bus:02x}, outside the bus range "
                              f"(ends at {end:02x})" if end is not None else f"VF {action.vfs - 1} of {action.pf} would need bus {last_bus:#x}",
                              [action.pf], "drivers/pci/iov.c sriov_enable (\"can't enable %d VFs (bus %02x out of range\")", i)
    # VF BARs: the IOV resources must be assigned (sriov_enable: "not enough MMIO resources for SR-IOV").
    if pf.vf_bars is None:
        yield ctx.finding("SRIOV-BARS", WARNING, f"the source does not give {action.pf}'s VF BARs: whether {action.vfs} VFs get MMIO space is not checked",
                          [action.pf], "drivers/pci/iov.c sriov_enable", i)
        return
    missing = [b for b in pf.vf_bars if b.unassigned or b.start is None]
    if missing:
        yield ctx.finding("SRIOV-BARS", ERROR,
                          f"{action.pf}'s VF BAR {', '.join(str(b.index) for b in missing)} has no address: the kernel refuses with "
                          "\"not enough MMIO resources for SR-IOV\" (try pci=realloc)",
                          [action.pf], "drivers/pci/iov.c sriov_enable (-ENOMEM); drivers/pci/setup-bus.c pbus_size_mem (IOV BARs are optional)", i)
        return
    for b in pf.vf_bars:
        if b.size and b.total_size is not None and b.size * action.vfs > b.total_size:
            yield ctx.finding("SRIOV-BARS", ERROR,
                              f"{action.pf}'s VF BAR {b.index} holds {b.total_size // b.size} VFs of {human_size(b.size)}, not {action.vfs}",
                              [action.pf], "drivers/pci/iov.c sriov_init (IOV resource = VF BAR size x TotalVFs)", i)


def _bus_end(sim: Simulation, fn: Function) -> int | None:
    if fn.parent is not None:
        br = sim.get(fn.parent)
        if br is not None and present(br.bridge):
            return br.bridge.subordinate  # type: ignore[union-attr]
        return None
    hb = sim.base.host_bridge(fn.address.domain, fn.address.bus)
    if hb is not None and hb.bus_range is not None:
        return hb.bus_range[1]
    return None


@rule("pf-vfs", ("PF-VFS-ENABLED",), "vfio-pci refuses a PF whose VFs are enabled",
      "drivers/vfio/pci/vfio_pci_core.c vfio_pci_core_register_device (\"Cannot bind to PF with SR-IOV enabled\", -EBUSY)")
def rule_pf_vfs(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    for addr, fn, index in _vfio_targets(sim):
        n = _numvfs_before(sim, addr, index)
        if n:
            yield ctx.finding("PF-VFS-ENABLED", ERROR,
                              f"{addr} has {n} VFs enabled when the plan puts it on {fn.driver}: vfio-pci refuses a PF with SR-IOV enabled "
                              "(set its VFs to 0 first)",
                              [addr] + list(fn.virtfns), "drivers/vfio/pci/vfio_pci_core.c vfio_pci_core_register_device (-EBUSY)", index)


# ---- mediated devices ----------------------------------------------------------------------------------


@rule("mdev", ("MDEV-TYPE-UNKNOWN", "MDEV-TYPE-MISSING", "MDEV-INSTANCES", "MDEV-PARENT", "MDEV-PARENT-ASSIGNED",
               "MDEV-UUID", "MDEV-MISSING", "MDEV-SIOV"),
      "mdev types exist with enough available_instances; the parent stays on its own driver and is not given away; "
      "removed and assigned mdevs exist; Scalable IOV needs PASID",
      "drivers/vfio/mdev/mdev_sysfs.c (create, available_instances); mdev_core.c mdev_device_create, "
      "mdev_unregister_parent; drivers/pci/ats.c pci_enable_pasid")
def rule_mdev(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    if not sim.mdevs and not sim.mdev_removed and not sim.mdev_assigned and not _mdev_parents_given_away(sim):
        return
    info = sim.base.mdev
    active = {i.uuid: i for i in info.instances} if info is not None else {}
    # Replay creations, removals and assignments in plan order: what exists at each step.
    events = sorted([(m.action, 0, m) for m in sim.mdevs] + [(i, 1, u) for u, i in sim.mdev_removed]
                    + [(i, 2, (u, vm)) for u, vm, i in sim.mdev_assigned], key=lambda e: (e[0], e[1]))
    alive = set(active)
    created: set[str] = set()
    removed_types: dict[tuple[str, str | None], int] = {}
    for index, what, item in events:
        if what == 0:
            m = item
            if m.uuid in alive:
                yield ctx.finding("MDEV-UUID", ERROR,
                                  f"mdev UUID {m.uuid} " + ("is created twice" if m.uuid in created else "already exists on this machine"),
                                  [m.parent], "drivers/vfio/mdev/mdev_core.c mdev_device_create (-EEXIST)", m.action)
            alive.add(m.uuid)
            created.add(m.uuid)
        elif what == 1:
            uuid = item
            if uuid not in alive:
                if info is None and uuid not in created:
                    yield ctx.finding("MDEV-MISSING", WARNING,
                                      f"the source does not show mediated devices: that mdev {uuid} exists is not checked", [],
                                      "drivers/vfio/mdev/mdev_sysfs.c remove_store", index)
                else:
                    yield ctx.finding("MDEV-MISSING", ERROR, f"mdev {uuid} does not exist (here, or any more at this step of the plan)",
                                      [], "drivers/vfio/mdev/mdev_sysfs.c remove_store (no /sys/bus/mdev/devices/UUID)", index)
                continue
            alive.discard(uuid)
            if uuid in active:
                key = (active[uuid].parent, active[uuid].type)
                removed_types[key] = removed_types.get(key, 0) + 1
        else:
            uuid, vm = item
            if uuid not in alive:
                if info is None and uuid not in created:
                    yield ctx.finding("MDEV-MISSING", WARNING,
                                      f"the source does not show mediated devices: that mdev {uuid} exists is not checked", [],
                                      "drivers/vfio/mdev/mdev_core.c", index)
                else:
                    yield ctx.finding("MDEV-MISSING", ERROR, f"VM {vm} is given mdev {uuid}, which does not exist at this step of the plan",
                                      [], "drivers/vfio/mdev/mdev_core.c (no /sys/bus/mdev/devices/UUID)", index)
    # Creations per parent and type, against the source's types and available_instances.
    by_type: dict[tuple[Address, str], list[int]] = {}
    for m in sim.mdevs:
        by_type.setdefault((m.parent, m.mdev_type), []).append(m.action)
    for (parent, mtype), actions in by_type.items():
        fn = sim.get(parent)
        if fn is None:
            continue
        mparent = info.parent(parent) if info is not None else None
        if info is None or (mparent is not None and mparent.types is None):
            yield ctx.finding("MDEV-TYPE-UNKNOWN", WARNING,
                              f"the source does not list {parent}'s mdev types: that {mtype!r} exists and has {len(actions)} "
                              "available_instances is not checked",
                              [parent], "drivers/vfio/mdev/mdev_sysfs.c mdev_type_add (mdev_supported_types/<type>/available_instances)",
                              actions[0])
        elif mparent is None:
            yield ctx.finding("MDEV-TYPE-MISSING", ERROR,
                              f"{parent} is not an mdev parent in the source (no mdev_supported_types: its driver registered no mdev types)",
                              [parent], "drivers/vfio/mdev/mdev_core.c mdev_register_parent; mdev_sysfs.c parent_create_sysfs_files",
                              actions[0])
        else:
            mt = mparent.type(mtype)
            if mt is None:
                have = ", ".join(t.id for t in mparent.types or ()) or "none"
                yield ctx.finding("MDEV-TYPE-MISSING", ERROR,
                                  f"{parent} has no mdev type {mtype!r} (its types: {have})",
                                  [parent], "drivers/vfio/mdev/mdev_sysfs.c mdev_type_add (mdev_supported_types/<type>/create)",
                                  actions[0])
            elif mt.available_instances is not None:
                # In plan order: a removal of an active mdev of this type before a creation frees one.
                free = mt.available_instances
                freed = 0
                over = None
                steps = sorted([(m.action, 1, 0) for m in sim.mdevs if m.parent == parent and m.mdev_type == mtype]
                               + [(i, 0, 0) for u, i in sim.mdev_removed
                                  if u in active and active[u].parent == str(parent) and active[u].type == mtype])
                for idx, is_create, _ in steps:
                    if not is_create:
                        free += 1
                        freed += 1
                    elif free > 0:
                        free -= 1
                    elif over is None:
                        over = idx
                if over is not None:
                    more = f" (+{freed} freed by earlier removals in the plan)" if freed else ""
                    yield ctx.finding("MDEV-INSTANCES", ERROR,
                                      f"the plan creates {len(actions)} mdev(s) of {mtype} on {parent}; its available_instances is "
                                      f"{mt.available_instances}{more}",
                                      [parent], "drivers/vfio/mdev/mdev_core.c mdev_device_create (-EUSERS), the vendor driver's get_available",
                                      over)
    mixed: dict[Address, list[str]] = {}
    for parent, mtype in by_type:
        mixed.setdefault(parent, []).append(mtype)
    for parent, mtypes in mixed.items():
        if len(mtypes) > 1 and info is not None and info.parent(parent) is not None:
            yield ctx.finding("MDEV-INSTANCES", WARNING,
                              f"the plan creates mdevs of {len(mtypes)} types on {parent} ({', '.join(mtypes)}): each type's "
                              "available_instances is counted alone, but types of one parent share its resources "
                              "(creating one lowers the others' count)",
                              [parent], "drivers/vfio/mdev/mdev_sysfs.c available_instances_show (the vendor driver's get_available)",
                              by_type[(parent, mtypes[1])][0])
    # The parent keeps its own driver: not unbound, not given to vfio-pci or a VM.
    for parent, index in _mdev_parents_at_stake(sim, info).items():
        fn = sim.get(parent)
        if fn is None:
            continue
        if parent in sim.assignments or (parent in sim.driver_action and isinstance(fn.driver, str)
                                         and (fn.driver in VFIO_DRIVERS or fn.driver in DMA_MANAGED_DRIVERS)):
            act = sim.assignments[parent][0][1] if parent in sim.assignments else sim.driver_action[parent]
            how = f"given to VM {sim.assignments[parent][0][0]}" if parent in sim.assignments else f"bound to {fn.driver}"
            yield ctx.finding("MDEV-PARENT-ASSIGNED", ERROR,
                              f"mdev parent {parent} is {how}: its own driver unregisters the parent, and every mdev on it is removed "
                              "(give the VM an mdev instead, or remove the mdevs first)",
                              [parent], "drivers/vfio/mdev/mdev_core.c mdev_unregister_parent (device_for_each_child mdev_device_remove_cb)", act)
        elif (fn.driver is ABSENT or (isinstance(fn.driver, str) and (fn.driver in VFIO_DRIVERS or fn.driver in DMA_MANAGED_DRIVERS))) and (
                parent in sim.driver_action or not (info is not None and (mp := info.parent(parent)) is not None and mp.types)):
            # (A parent the source lists with types has its mdev driver bound whatever its
            # driver link says: only the driver registers the types. The plan's own changes count.)
            yield ctx.finding("MDEV-PARENT", ERROR,
                              f"mdev parent {parent} is left on {fn.driver if isinstance(fn.driver, str) else 'no driver'}: "
                              "mdevs exist only while the parent's own (mdev-capable) driver is bound",
                              [parent], "drivers/vfio/mdev/mdev_core.c mdev_register_parent", index)
    for (parent, _mtype), actions in by_type.items():
        fn = sim.get(parent)
        if fn is None:
            continue
        pasid = fn.caps.pasid
        if pasid is ABSENT:
            yield ctx.finding("MDEV-SIOV", INFO,
                              f"{parent} has no PASID capability: only mdev types that do not use Scalable IOV (PASID-tagged DMA) can work",
                              [parent], "drivers/pci/ats.c pci_enable_pasid", actions[0])
        elif present(pasid):
            path_bad = [a for a in sim.base.path_to_root(parent) if (f := sim.get(a)) is not None and f.caps.eetlp_prefix is False]
            if path_bad:
                yield ctx.finding("MDEV-SIOV", WARNING,
                                  f"PASID on {parent} needs End-End TLP prefixes on the whole path; {_devs(path_bad)} lack them",
                                  [parent] + path_bad, "drivers/pci/probe.c pci_configure_eetlp_prefix; drivers/pci/ats.c pci_enable_pasid", actions[0])


def _mdev_parents_given_away(sim: Simulation) -> bool:
    info = sim.base.mdev
    if info is None or not info.instances:
        return False
    at_stake = {i.parent for i in info.instances}
    return any(str(a) in at_stake for a in list(sim.assignments) + list(sim.driver_action))


def _mdev_parents_at_stake(sim: Simulation, info: Any) -> dict[Address, int]:
    """PCI parents whose mdevs the plan needs: ones it creates mdevs on or gives mdevs of to
    VMs, and ones with active mdevs it does not remove. Value: the first action involved."""
    out: dict[Address, int] = {}
    for m in sim.mdevs:
        out.setdefault(m.parent, m.action)
    if info is None:
        return out
    gone = {u for u, _ in sim.mdev_removed}
    for i in info.instances:
        a = _addr_of(i.parent)
        if a is None or a not in sim.base.functions:
            continue
        given = [idx for u, _vm, idx in sim.mdev_assigned if u == i.uuid]
        if given:
            out.setdefault(a, given[0])
        elif i.uuid not in gone:
            touched = [idx for idx in (sim.driver_action.get(a),) if idx is not None] + [idx for _vm, idx in sim.assignments.get(a, [])]
            if touched:
                out.setdefault(a, min(touched))
    return out


def _addr_of(name: str) -> Address | None:
    try:
        return Address.parse(name)
    except ValueError:
        return None


# ---- trust: untrusted devices lose ATS -------------------------------------------------------------------


def _tunneled_ports() -> set[tuple[int, int]]:
    try:
        from ..kernel.trust import TUNNELED_ROOT_PORTS
    except Exception:  # noqa: BLE001
        return set()
    return set(TUNNELED_ROOT_PORTS)


def untrusted(ctx: Context, addr: Address) -> bool | None:
    """drivers/pci/probe.c set_pcie_untrusted + arch/x86/pci/acpi.c arch_pci_dev_is_removable, on the overlay."""
    memo = ctx._untrusted
    if addr in memo:
        return memo[addr]
    sim = ctx.sim
    fn = sim.get(addr)
    result: bool | None
    if fn is None:
        result = None
    elif fn.removable is not None:
        result = fn.removable
    elif fn.is_virtfn and fn.physfn is not None:
        result = untrusted(ctx, fn.physfn)
    elif fn.parent is None:
        result = False
    else:
        up = untrusted(ctx, fn.parent)
        parent = sim.get(fn.parent)
        path = sim.base.path_to_root(fn.parent) if fn.parent in sim.base.functions else [fn.parent]
        top = sim.get(path[-1]) if path else None
        if up:
            result = True
        elif top is None or top.pcie_type is not PcieType.ROOT_PORT:
            result = False
        elif top.external_facing is None:
            result = None
        elif not top.external_facing:
            result = False
        elif parent is not None and (parent.vendor_id, parent.device_id) in _tunneled_ports():
            result = True
        elif _switch_directly_under(sim, top, fn):
            result = False
        else:
            result = True
    memo[addr] = result
    return result


def _switch_directly_under(sim: Simulation, rp: Function, fn: Function) -> bool:
    parent = sim.get(fn.parent) if fn.parent else None
    if parent is None:
        return False
    if fn.pcie_type is PcieType.SWITCH_UPSTREAM:
        return parent.address == rp.address
    if fn.pcie_type is PcieType.SWITCH_DOWNSTREAM:
        return parent.pcie_type is PcieType.SWITCH_UPSTREAM and parent.parent == rp.address
    if fn.pcie_type is PcieType.ENDPOINT and parent.pcie_type is PcieType.SWITCH_DOWNSTREAM:
        usp = sim.get(parent.parent) if parent.parent else None
        return usp is not None and usp.pcie_type is PcieType.SWITCH_UPSTREAM and usp.parent == rp.address
    return False


@rule("untrusted", ("UNTRUSTED-NO-ATS", "UNTRUSTED-STRICT"),
      "devices behind an external-facing port are untrusted: no ATS (so no PRI/PASID use), strict DMA for their group",
      "drivers/pci/ats.c pci_ats_supported; drivers/iommu/iommu.c iommu_get_default_domain_type")
def rule_untrusted(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    affected: list[tuple[Address, int]] = []
    for port, (external, index) in sim.trust.items():
        if not external:
            continue
        stack = list(sim.children(port))
        while stack:
            a = stack.pop()
            affected.append((a, index))
            stack.extend(sim.children(a))
    for index, _port, addr in sim.hot_added:
        if addr is not None:
            affected.append((addr, index))
    seen: set[Address] = set()
    groups: dict[str, tuple[list[Address], int]] = {}
    for addr, index in affected:
        if addr in seen:
            continue
        seen.add(addr)
        if untrusted(ctx, addr) is not True:
            continue
        fn = sim.get(addr)
        if fn is None:
            continue
        if present(fn.caps.ats):
            lost = ["ATS"] + [n for n, c in (("PRI", fn.caps.pri), ("PASID", fn.caps.pasid)) if present(c)]
            yield ctx.finding("UNTRUSTED-NO-ATS", WARNING,
                              f"{addr} becomes untrusted (behind an external-facing port): the kernel will not enable {', '.join(lost)}",
                              [addr], "drivers/pci/ats.c pci_ats_supported (untrusted => false)", index)
        label = sim.group_of(addr)
        if label is not None:
            groups.setdefault(label, ([], index))[0].append(addr)
    for label, (members, index) in groups.items():
        others = [a for a in sim.group_members(label) if a not in members]
        tail = f"; that also applies to {_devs(others)}" if others else ""
        yield ctx.finding("UNTRUSTED-STRICT", INFO,
                          f"IOMMU group {label} holds untrusted {_devs(members)}: the whole group gets a strict DMA domain "
                          f"(no flush queue, no identity){tail}",
                          members + others, "drivers/iommu/iommu.c iommu_get_default_domain_type", index)


# ---- hot-add / hot-remove ----------------------------------------------------------------------------------


@rule("hot-add", ("HOTADD-NOT-HOTPLUG", "HOTADD-FIT", "HOTADD-BUS"),
      "hot-add needs a hotplug-capable port with room for the device's BARs and buses",
      "drivers/pci/probe.c set_pcie_hotplug_bridge; drivers/pci/setup-bus.c; drivers/pci/hotplug/acpiphp_glue.c enable_slot")
def rule_hot_add(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    for i, action in enumerate(sim.plan.actions):
        if not isinstance(action, HotAdd):
            continue
        port = sim.get(action.port)
        if port is None:
            continue
        slot = port.slot
        if slot is ABSENT or (present(slot) and slot.hotplug is False):  # type: ignore[union-attr]
            yield ctx.finding("HOTADD-NOT-HOTPLUG", ERROR, f"{action.port} is not a hotplug-capable port (no HotPlug+ slot)",
                              [action.port], "drivers/pci/probe.c set_pcie_hotplug_bridge (SltCap HotPlug)", i)
            continue
        if slot is None or slot.hotplug is None:  # type: ignore[union-attr]
            yield ctx.finding("HOTADD-NOT-HOTPLUG", WARNING, f"the source does not say whether {action.port} is hotplug-capable",
                              [action.port], "drivers/pci/probe.c set_pcie_hotplug_bridge", i)
        yield from _hot_add_fit(ctx, port, action, i)


def _case_label(r: Any, single: bool) -> str:
    """"with acpiphp on Linux 6.12": the hotplug path and kernel a hot-add result assumed or read."""
    drv = {"acpi": "acpiphp", "native": "pciehp"}.get(r.hotplug, r.hotplug)
    assumed = dict(r.assuming)
    if "hotplug" in assumed:
        drv = " or ".join({"acpi": "acpiphp", "native": "pciehp"}.get(m, m) for m in assumed["hotplug"].split("|"))
    kern = f" on Linux {r.kernel.replace('|', ' or ')}" if r.kernel else ""
    extra = ""
    if "bridge" in assumed:
        extra = " as " + " or ".join({"switch": "a switch upstream port", "pci": "a PCIe-to-PCI bridge"}.get(b, b)
                                     for b in assumed["bridge"].split("|"))
    return f"with {drv}{kern}{extra}"


def _hot_add_fit(ctx: Context, port: Function, action: Any, i: int) -> Iterator[Finding]:
    sim = ctx.sim
    br = port.bridge
    if not present(br):
        return
    bars = tuple(b.engine_spec() for b in action.bars)
    optional = [(b.kind.value, b.size) for b in action.bars if b.optional]
    res = None
    try:
        from ..kernel.context import resolve_context

        # the one context resolver fit, check and the app share; with kernel-param actions
        # the command line is the source's with the plan's parameters merged in
        kctx = resolve_context(sim.base, hotplug=action.hotplug, port=action.port,
                               cmdline=ctx.final_cmdline() if sim.kernel_params else None)
        res = _cached_fit("fit_hotadd", sim.base, action.port, bars, buses=action.buses,
                          bridge=getattr(action, "bridge", None), context=kctx)
    except ImportError:  # pragma: no cover - the engine is part of the package
        res = None
    if res is not None and not isinstance(res, Exception):
        kern = "drivers/pci/setup-bus.c, setup-res.c; drivers/pci/hotplug (explorer.kernel.setup.fit_hotadd)"
        if res.fits:
            return
        cases = res.possibilities or (res,)
        failed = [r for r in cases if not r.fits]
        texts = []
        bus_fail = False
        severe = False
        for r in cases:
            label = _case_label(r, single=len(cases) == 1)
            if r.fits:
                where = ", ".join(f"BAR {o.index} at {o.start:#x}" for o in r.bars if o.start is not None)
                texts.append(f"{label}: fits" + (f" ({where})" if where else ""))
                continue
            unplaced = [b for b in r.bars if not b.assigned]
            bad = [b.reason for b in unplaced]
            # What the kernel does to the device decides the severity: a BAR it cannot place
            # stays unassigned and the driver's probe fails on it (pci_enable_resources:
            # "not claimed; can't enable device"), so that is an error, in whichever hotplug
            # mode it happens, unless the user marked that BAR optional.
            left = list(optional)
            required = []
            for b in unplaced:
                if (b.kind, b.size) in left:
                    left.remove((b.kind, b.size))
                else:
                    required.append(b)
            nb = r.new_bridge
            bus_fail = bus_fail or (nb is not None and not nb.bus_assigned)
            why = "; ".join(bad + ([nb.reason] if nb is not None and not nb.bus_assigned else [])) or "; ".join(r.messages)
            fix = "; ".join(r.remedies)
            case_bus_fail = nb is not None and not nb.bus_assigned
            severe = severe or bool(required) or case_bus_fail or not unplaced
            texts.append(f"{label}: {why}" + (f" (remedies: {fix})" if fix else ""))
        text = f"hot-add at {action.port}: " + " | ".join(texts)
        if res.possibilities:
            text += (" -- the outcome depends on what the source does not say; the worst case counts "
                     "(say which with plan add hot-add ... --hotplug acpi|native)")
        if failed and not severe:
            text += "; only BARs marked optional are left unplaced"
        yield ctx.finding("HOTADD-BUS" if bus_fail else "HOTADD-FIT", ERROR if failed and severe else WARNING, text,
                          [action.port], kern, i)
        return
    # Fallback: ACPI hotplug never resizes a window: each BAR needs a free aligned hole in the
    # port's window of its kind (drivers/pci/hotplug/acpiphp_glue.c enable_slot).
    if action.buses:
        sec, sub = br.secondary, br.subordinate  # type: ignore[union-attr]
        if sec is not None and sub is not None and sub - sec < action.buses:
            yield ctx.finding("HOTADD-BUS", ERROR,
                              f"{action.port} has buses {sec:02x}-{sub:02x}: {sub - sec} spare below its secondary bus, the device needs {action.buses}",
                              [action.port], "drivers/pci/probe.c pci_hp_add_bridge (\"No bus number available for hot-added bridge\")", i)
    used: dict[str, list[tuple[int, int]]] = {}
    stack = list(sim.children(action.port))
    while stack:
        a = stack.pop()
        fn = sim.get(a)
        if fn is None:
            continue
        for b in fn.bars or ():
            if b.start is not None and b.size:
                used.setdefault("io" if b.kind.is_io else "mem", []).append((b.start, b.start + b.size - 1))
        if present(fn.bridge):
            for w in (fn.bridge.io_window, fn.bridge.mem_window, fn.bridge.pref_window):  # type: ignore[union-attr]
                if present(w):
                    used.setdefault("io" if w.kind.value == "io" else "mem", []).append((w.start, w.end))  # type: ignore[union-attr]
        stack.extend(sim.children(a))
    short: list[str] = []
    for spec in sorted(action.bars, key=lambda s: -s.size):
        windows = []
        if spec.kind.is_io:
            windows = [br.io_window]  # type: ignore[union-attr]
        elif spec.kind.prefetchable:
            # 64-bit pref BARs go in a 64-bit pref window, 32-bit ones in a 32-bit one; either falls
            # back to the mem window (drivers/pci/setup-bus.c __pci_bus_size_bridges, __pci_assign_resource).
            windows = [br.pref_window, br.mem_window]  # type: ignore[union-attr]
        else:
            windows = [br.mem_window]  # type: ignore[union-attr]
        placed = False
        unknown = False
        for w in windows:
            if w is None:
                unknown = True
                continue
            if w is ABSENT:
                continue
            if spec.kind.prefetchable and spec.kind.is_64bit is False and w is br.pref_window and w.is_64bit:  # type: ignore[union-attr]
                continue  # a 32-bit prefetchable BAR never goes in a 64-bit window
            start = _first_fit(w.start, w.end, spec.size, used.setdefault("io" if spec.kind.is_io else "mem", []))  # type: ignore[union-attr]
            if start is not None:
                used["io" if spec.kind.is_io else "mem"].append((start, start + spec.size - 1))
                placed = True
                break
        if not placed:
            short.append(f"{spec} ({'window unknown' if unknown else 'no free aligned space'})")
    if short:
        yield ctx.finding("HOTADD-FIT", ERROR,
                          f"at {action.port} these BARs find no room in the port's windows: {', '.join(short)} (ACPI hotplug never resizes a "
                          "window; native pciehp may grow an empty port's window from free space above it)",
                          [action.port], "drivers/pci/hotplug/acpiphp_glue.c enable_slot; drivers/pci/setup-res.c (\"can't assign; no space\")", i)


def _first_fit(start: int, end: int, size: int, used: list[tuple[int, int]]) -> int | None:
    cand = (start + size - 1) // size * size
    for s, e in sorted(used):
        if e < cand:
            continue
        if s > cand + size - 1:
            break
        cand = (e + 1 + size - 1) // size * size
    return cand if cand + size - 1 <= end else None


@rule("hot-remove", ("HOTREMOVE-CRITICAL", "HOTREMOVE-IN-USE"),
      "hot-removing takes the whole subtree away: not host-critical devices, not devices the plan uses",
      "drivers/pci/remove.c pci_stop_and_remove_bus_device")
def rule_hot_remove(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    kern = "drivers/pci/remove.c pci_stop_and_remove_bus_device (removes the subtree, unbinding every driver)"
    idx = sim.index
    for index, dev, sub in sim.hot_removed:
        all_storage = len(idx.host_storage) > 0 and sum(1 for a in sub if a in idx.host_storage) == len(idx.host_storage)
        all_nics = len(idx.host_nics) > 0 and sum(1 for a in sub if a in idx.host_nics) == len(idx.host_nics)
        for a in sub:
            fn = sim.base.functions.get(a)
            if fn is None:
                continue
            sc = class_sub(fn)
            if sc in (0x0600, 0x0601) or fn.boot_vga or (all_storage and a in idx.host_storage) or (all_nics and a in idx.host_nics):
                yield ctx.finding("HOTREMOVE-CRITICAL", ERROR, f"hot-removing {dev} takes {a} ({fn.driver if isinstance(fn.driver, str) else 'no driver'}), which the host needs",
                                  [dev, a], kern, index)
        used_later = [a for a in sub if any(j > index for _, j in sim.assignments.get(a, []))]
        used_before = [a for a in sub if any(j < index for _, j in sim.assignments.get(a, []))]
        if used_later or used_before:
            yield ctx.finding("HOTREMOVE-IN-USE", ERROR, f"hot-removing {dev} takes {_devs(used_later + used_before)}, which the plan gives to a VM",
                              [dev] + used_later + used_before, kern, index)
        # The driver each device has when the removal runs: earlier actions of the plan may
        # already have given it to vfio-pci (bind, assign, or a whole group assigned).
        def driver_then(a: Address) -> object:
            if a in used_before:
                return "vfio-pci"
            return _driver_before(sim, a, index)

        drivers = [a for a in sub if sim.base.functions.get(a) is not None and is_host_driver(driver_then(a))]
        if drivers:
            yield ctx.finding("HOTREMOVE-IN-USE", WARNING,
                              f"hot-removing {dev} unbinds host drivers from "
                              f"{', '.join(f'{a} ({driver_then(a)})' for a in drivers)}",
                              [dev] + drivers, kern, index)


# ---- reset ---------------------------------------------------------------------------------------------------

FUNCTION_RESETS = {"flr", "af_flr", "pm", "acpi", "device_specific", "cxl_bus"}


@rule("reset", ("RESET-NONE", "RESET-BUS", "RESET-UNKNOWN"),
      "a device given to a VM should have a function reset; a bus reset also resets everything else below the bridge",
      "drivers/pci/pci.c pci_reset_function, pci_parent_bus_reset; drivers/vfio/pci/vfio_pci_core.c (device set, hot reset)")
def rule_reset(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    for addr, lst in sim.assignments.items():
        fn = sim.get(addr)
        if fn is None:
            continue
        index = lst[-1][1]
        vm = lst[-1][0]
        methods = fn.reset_methods
        if methods is None:
            yield ctx.finding("RESET-UNKNOWN", INFO, f"the source does not list {addr}'s reset methods", [addr],
                              "drivers/pci/pci.c pci_init_reset_methods (sysfs reset_method)", index)
            continue
        if set(methods) & FUNCTION_RESETS:
            continue
        others = _bus_scope(sim, fn)
        foreign = [a for a in others if sim.vm_of(a) != vm]
        bridge = f"bridge {fn.parent}" if fn.parent else "the root bus"
        if not methods:
            tail = (f"; a VFIO hot reset of the bus below {bridge} would also reset {_devs(others)}" if others and fn.parent else "")
            yield ctx.finding("RESET-NONE", WARNING,
                              f"{addr} has no reset method: VM {vm!r} may find it in a stale state after a restart{tail}",
                              [addr] + others, "drivers/pci/pci.c pci_reset_function (-ENOTTY)", index)
        elif foreign:
            yield ctx.finding("RESET-BUS", WARNING,
                              f"{addr} resets only with a secondary bus reset at {bridge}, which also resets {_devs(foreign)}",
                              [addr] + foreign, "drivers/pci/pci.c pci_bridge_secondary_bus_reset; drivers/vfio/pci/vfio_pci_core.c vfio_pci_dev_set_hot_reset", index)


def _bus_scope(sim: Simulation, fn: Function) -> list[Address]:
    """Every other function a reset of fn's bus reaches: its bus and everything below it."""
    if fn.parent is None:
        return []
    key = (fn.address.domain, fn.address.bus)
    out: list[Address] = []
    stack = [a for a in sim.index.bus_members.get(key, ()) if a != fn.address and sim.exists(a)]
    stack += [a for a, f in sim.added.items() if (a.domain, a.bus) == key and a != fn.address]
    seen: set[Address] = set()
    while stack:
        a = stack.pop()
        if a in seen:
            continue
        seen.add(a)
        out.append(a)
        stack.extend(sim.children(a))
    return sorted(out)


# ---- kernel parameters ----------------------------------------------------------------------------------------

_SIZE = re.compile(r"^\d+[KMGTkmgt]?\Z")
#: Parameters this tool knows, with a check of the value (None: any value).
_PCI_OPTS = {
    "hpiosize": _SIZE, "hpmmiosize": _SIZE, "hpmmioprefsize": _SIZE, "hpmemsize": _SIZE, "hpbussize": re.compile(r"^(0x)?[0-9a-fA-F]+\Z"),
    "realloc": re.compile(r"^(on|off)\Z"), "noats": None, "noari": None, "assign-busses": None, "nocrs": None, "use_crs": None,
    "disable_acs_redir": re.compile(r"^.+\Z"), "config_acs": re.compile(r"^.+\Z"), "resource_alignment": re.compile(r"^.+\Z"),
    "pcie_bus_perf": None, "pcie_bus_safe": None, "pcie_bus_peer2peer": None, "pcie_bus_tune_off": None, "nomsi": None,
    "noaer": None, "nommconf": None, "hpmemprefsize": _SIZE, "bfsort": None, "nobfsort": None, "ecrc": re.compile(r"^(on|off|bios)\Z"),
}
_PARAMS: dict[str, re.Pattern[str] | None] = {
    "iommu": re.compile(r"^(pt|nopt|strict|off|on|force|noforce|soft|nomerge|merge|calgary|usedac)\Z"),
    "iommu.passthrough": re.compile(r"^[01]\Z|^(on|off|y|n)\Z"),
    "iommu.strict": re.compile(r"^[01]\Z|^(on|off|y|n)\Z"),
    "intel_iommu": re.compile(r"^(on|off|igfx_off|intgpu_off|forcedac|strict|sp_off|sm_on|sm_off|tboot_noforce)(,(on|off|igfx_off|intgpu_off|forcedac|strict|sp_off|sm_on|sm_off|tboot_noforce))*\Z"),
    "amd_iommu": re.compile(r"^(fullflush|off|force_isolation|force_enable|pgtbl_v1|pgtbl_v2|irtcachedis|nohugepages|v2_pgsizes_only)(,\w+)*\Z"),
    "vfio-pci.ids": re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}(:[0-9a-fA-F:]*)?(,[0-9a-fA-F]{4}:[0-9a-fA-F]{4}(:[0-9a-fA-F:]*)?)*\Z"),
    "pci-stub.ids": re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}(:[0-9a-fA-F:]*)?(,[0-9a-fA-F]{4}:[0-9a-fA-F]{4}(:[0-9a-fA-F:]*)?)*\Z"),
    "vfio-pci.disable_vga": re.compile(r"^[01YNyn]\Z"),
    "vfio-pci.disable_denylist": re.compile(r"^[01YNyn]\Z"),
    "vfio-pci.enable_sriov": re.compile(r"^[01YNyn]\Z"),
    "vfio-pci.disable_idle_d3": re.compile(r"^[01YNyn]\Z"),
    "vfio-pci.nointxmask": re.compile(r"^[01YNyn]\Z"),
    "vfio_iommu_type1.allow_unsafe_interrupts": re.compile(r"^[01YNyn]\Z"),
    "vfio.enable_unsafe_noiommu_mode": re.compile(r"^[01YNyn]\Z"),
    "pcie_acs_override": re.compile(r"^(downstream|multifunction|id:[0-9a-fA-F]{4}:[0-9a-fA-F]{4})(,(downstream|multifunction|id:[0-9a-fA-F]{4}:[0-9a-fA-F]{4}))*\Z"),
    "pcie_aspm": re.compile(r"^(off|force)\Z"),
    "pcie_ports": re.compile(r"^(auto|native|compat|dpc-native)\Z"),
    "video": None,
    "modprobe.blacklist": None,
    "initcall_blacklist": None,
    "rd.driver.pre": None,
    "rd.driver.blacklist": None,
    "pci": None,
}


@rule("kernel-params", ("KPARAM-UNKNOWN", "KPARAM-VALUE", "ACS-OVERRIDE", "IOMMU-OFF"),
      "kernel parameters this tool knows, with values the kernel accepts",
      "drivers/pci/pci.c pci_setup; drivers/iommu/iommu.c iommu_setup; Documentation/admin-guide/kernel-parameters.txt")
def rule_kernel_params(ctx: Context) -> Iterator[Finding]:
    sim = ctx.sim
    for param, index in sim.kernel_params:
        if param.name == "pci":
            if not param.value:
                yield ctx.finding("KPARAM-VALUE", ERROR, "pci= needs options (e.g. pci=realloc,hpmmioprefsize=2G)", [], "drivers/pci/pci.c pci_setup", index)
                continue
            for opt in param.value.split(","):
                key, sep, val = opt.partition("=")
                if key not in _PCI_OPTS:
                    yield ctx.finding("KPARAM-UNKNOWN", WARNING, f"pci={opt}: not a pci= option this tool knows", [], "drivers/pci/pci.c pci_setup", index)
                    continue
                pat = _PCI_OPTS[key]
                if key == "realloc" and not sep:
                    continue
                if pat is not None and not (sep and pat.match(val)):
                    yield ctx.finding("KPARAM-VALUE", ERROR, f"pci={opt}: bad value for {key}", [], "drivers/pci/pci.c pci_setup (memparse)", index)
            continue
        if param.name not in _PARAMS:
            yield ctx.finding("KPARAM-UNKNOWN", WARNING, f"{param.text}: not a kernel parameter this tool knows (kept as given)", [],
                              "Documentation/admin-guide/kernel-parameters.txt", index)
            continue
        pat = _PARAMS[param.name]
        if pat is not None and (param.value is None or not pat.match(param.value)):
            yield ctx.finding("KPARAM-VALUE", ERROR, f"{param.text}: not a value {param.name} takes", [],
                              "Documentation/admin-guide/kernel-parameters.txt", index)
            continue
        if param.name == "pcie_acs_override":
            yield ctx.finding("ACS-OVERRIDE", WARNING,
                              f"{param.text} comes from an out-of-tree patch: a mainline kernel ignores it, and where it works it claims isolation "
                              "the hardware does not give (devices can still reach each other by peer-to-peer DMA)",
                              [], "out-of-tree pcie_acs_overrides in drivers/pci/quirks.c pci_dev_acs_enabled[]", index)
        if (param.name in ("iommu", "intel_iommu") and param.value == "off") or (param.name == "amd_iommu" and param.value == "off"):
            if sim.assignments:
                yield ctx.finding("IOMMU-OFF", ERROR, f"{param.text} turns the IOMMU off, but the plan gives devices to VMs", sorted(sim.assignments),
                                  "drivers/iommu/iommu.c; drivers/vfio/group.c vfio_group_find_or_alloc", index)


def run_rules(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    for r in RULES:
        out.extend(r.check(ctx))
    return out


def rule_codes() -> dict[str, tuple[str, str, str]]:
    """code -> (rule name, summary, kernel reference); DRIFT included."""
    out = {"DRIFT": ("drift", "the plan's device fingerprint matches the loaded source", "(the plan was made for another machine or state)")}
    for r in RULES:
        for c in r.codes:
            out.setdefault(c, (r.name, r.summary, r.kernel))
    return out


__all__ = ["Context", "ERROR", "Finding", "INFO", "RULES", "Rule", "SEVERITIES", "WARNING", "rule_codes", "run_rules", "untrusted"]
