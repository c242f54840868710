"""The hot-add itself: a device appears below a hotplug port (kernel-rules.md 6a).

``simulate_hotadd`` replays on a copy of the machine what the kernel runs:
``pci_scan_slot``, bus numbers for a new bridge, and the resource path of the
port's hotplug driver (:mod:`.pciehp` or :mod:`.acpiphp`). Both place BARs
largest alignment first, each first fit (``allocate_resource``) in the window of
its type, a prefetchable BAR falling back to the memory window. The kernel's log
lines are reproduced verbatim (``BAR 2 [mem size 0x40000000 64bit pref]: can't
assign; no space``).
"""

from __future__ import annotations

from ...model import Address, BarKind, Topology, present
from ..resources import fmt_size, free_gaps
from . import acpiphp, pciehp
from .machine import KIND_FLAGS, build_machine
from .simulator import (
    BRIDGE_IO,
    BRIDGE_MEM,
    BRIDGE_PREF,
    IO,
    MEM,
    MEM_64,
    PREFETCH,
    READONLY,
    SIZEALIGN,
    KBus,
    KDev,
    KRes,
    Sim,
    align_up,
    bus_name,
    pr,
    res_name,
)
from .specs import BarOutcome, BarSpec, FitResult, KernelParams, NewBridge
from .versions import RULES, KernelRules

_WIN_IDX = {"io": BRIDGE_IO, "mem": BRIDGE_MEM, "pref": BRIDGE_PREF}
_WIN_NAME = {BRIDGE_IO: "I/O", BRIDGE_MEM: "non-prefetchable memory", BRIDGE_PREF: "prefetchable memory"}
_WIN_SHORT = {BRIDGE_IO: "io", BRIDGE_MEM: "mem", BRIDGE_PREF: "pref"}
_WIN_FLAG = {BRIDGE_IO: IO, BRIDGE_MEM: MEM, BRIDGE_PREF: PREFETCH}


def _win_state(dev: KDev, live: bool = True) -> dict:
    out: dict = {}
    for name, idx in _WIN_IDX.items():
        r = dev.res.get(idx)
        ok = r is not None and bool(r.flags & _WIN_FLAG[idx]) and (r.parent is not None or not live)
        out[name] = (r.start, r.end) if ok else None  # type: ignore[union-attr]
    pref = dev.res.get(BRIDGE_PREF)
    out["pref_64bit"] = bool(pref.flags & MEM_64) if out["pref"] is not None and pref is not None else None
    return out


def _gaps(r: KRes) -> list[tuple[int, int]]:
    return free_gaps(r.start, r.end, [(c.start, c.end) for c in r.children])


def _largest_aligned(r: KRes, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    best = 0
    for s, e in _gaps(r):
        s, e = max(s, lo), min(e, hi)
        if s > e:
            continue
        size = 1 << ((e - s + 1).bit_length() - 1)
        while size:
            first = align_up(s, size)
            if first + size - 1 <= e:
                best = max(best, size)
                break
            size >>= 1
    return best


def _res_desc(r: KRes) -> str:
    if r.dev is not None and r.idx in _WIN_SHORT:
        return f"{r.dev.name} {_WIN_SHORT[r.idx]} window {pr(r)}"  # type: ignore[index]
    return r.label or f"{r.name} window {pr(r)}"


def simulate_hotadd(topology: Topology, port: Address, specs: list[BarSpec], buses: int, mode: str, kp: KernelParams,
                    shpc: bool, rules: KernelRules | None = None, upstream: bool = False) -> FitResult:
    """One hot-add under one hotplug path (``mode``) and one kernel (``rules``, default 6.1).
    ``upstream``: the new bridge is a PCIe switch upstream port (a 6.12 acpiphp difference)."""
    rules = rules or RULES["6.1"]
    sim = Sim(skip_isa_align=kp.skip_isa_align)
    sim.relaxed_alignment_retry = rules.relaxed_alignment_retry
    sim.hp_io, sim.hp_mmio, sim.hp_pref, sim.hp_bus = kp.hpiosize, kp.hpmmiosize, kp.hpmmioprefsize, kp.hpbussize
    m = build_machine(topology, port.domain, sim)
    sim.log.clear()
    pdev = m.devs.get(port)
    warnings: list[str] = []
    relevant = set(topology.path_to_root(port)) | set(topology.children(port))
    for w in m.warnings:
        if any(w.startswith(str(a)) for a in relevant):
            warnings.append(w)
    assert pdev is not None
    before = _win_state(pdev)
    pbus = pdev.subordinate
    if pbus is None:
        reason = f"{port} has no secondary bus (bus numbers unknown or unassigned): nothing can be hot-added below it"
        return FitResult(False, tuple(BarOutcome(s.index, s.kind, s.size, False, None, None, reason) for s in specs),  # type: ignore[arg-type]
                         (), port, mode, (), before, before, None, None, True, tuple(warnings), (), None, kp)
    port_bus = (pbus.busn_start, pbus.busn_end)
    pslot = topology.functions[port].slot
    if not pdev.is_hotplug_bridge and (pslot is None or (present(pslot) and pslot.hotplug is None)):  # type: ignore[union-attr]
        pdev.is_hotplug_bridge = True
        warnings.append(f"the source does not say whether {port}'s slot is hotplug capable; assumed it is "
                        "(is_hotplug_bridge: the hotplug reserves apply to its windows)")
    if not pdev.is_hotplug_bridge:
        if mode == "native":
            warnings.append(f"{port} has no hotplug-capable slot (SltCap HotPlug-): pciehp does not manage it, "
                            "so a native hot-add happens only by a manual rescan; predicted as if it did")
        else:
            warnings.append(f"{port} has no hotplug-capable slot (SltCap HotPlug-): acpiphp manages it only if the "
                            "firmware describes the slot in ACPI")
    if any(d.devfn == 0 for d in pbus.devices):
        occupant = next(d for d in pbus.devices if d.devfn == 0)
        reason = f"slot occupied: {occupant.name} is already below {port}"
        msgs = []
        if mode == "native":
            msgs.append(f"pcieport {port}: Device {occupant.name} already exists at {port.domain:04x}:{pbus.number:02x}:00, "
                        "skipping hot-add")
        return FitResult(False, tuple(BarOutcome(s.index, s.kind, s.size, False, None, None, reason) for s in specs),  # type: ignore[arg-type]
                         (), port, mode, tuple(msgs), before, before, port_bus, None, True, tuple(warnings), (), None, kp)

    existing = {(d.name, idx): (r.start, r.end, r.parent is not None)
                for d in m.devs.values() for idx, r in d.res.items() if r.flags and r.parent is not None}

    # --- the new device (pci_scan_slot) ---
    new = KDev(name=f"{port.domain:04x}:{pbus.number:02x}:00.0", bus=pbus, devfn=0,
               class_code=0x060400 if buses else None, is_bridge=buses > 0, enabled=False, new=True)
    for s in specs:
        idx = s.index if s.index is not None else 0
        if s.kind == "rom":
            flags = MEM | PREFETCH | READONLY | SIZEALIGN
        else:
            flags = KIND_FLAGS[BarKind(s.kind)] | SIZEALIGN
        r = KRes(0, s.size - 1, flags, new.name, new, idx)
        new.res[idx] = r
        sim.info(new, f"{res_name(idx)} {pr(r)}")
    if buses:
        for idx in (BRIDGE_IO, BRIDGE_MEM, BRIDGE_PREF):
            new.res[idx] = KRes(0, 0, 0, new.name, new, idx)
    pbus.devices.append(new)

    # --- bus numbers for a bridge (rule 7) ---
    nb_sec: int | None = None
    nb_sub: int | None = None
    bus_ok = True
    bus_reason = ""
    oops: str | None = None
    child: KBus | None = None
    if buses:
        if mode == "native":
            busnr = pciehp.bridge_bus_number(sim, new, pbus, m.buses)
            if busnr is None:
                bus_ok = False
                nb_sec = nb_sub = 0
                bus_reason = (f"no free bus number in the port's range {bus_name(*port_bus)}: the bridge stays "
                              "unconfigured (bus 00-00, no windows) and nothing behind it is scanned")
                if shpc:
                    oops = ("BUG: kernel NULL pointer dereference, address: 00000000000000da; RIP: shpc_init.cold "
                            "(shpchp probes the bridge although it has no secondary bus; the irq/NN-pciehp thread dies "
                            "holding the bridge's device lock and pci_lock_rescan_remove(): later hotplug and rescan block)")
            else:
                nb_sec = busnr
        else:
            nb_sec = acpiphp.bridge_bus_number(sim, new, pbus)
        if nb_sec:
            nb_sub = nb_sec + buses - 1
            if nb_sub > 0xFF:
                nb_sub = 0xFF
            clash = [b for b in range(nb_sec, nb_sub + 1) if b in m.buses]
            child = KBus(nb_sec, nb_sec, nb_sub, new, pbus, port.domain)
            new.subordinate = child
            pbus.children.append(child)
            if mode == "native":
                pciehp.read_new_bridge_bases(new)
            sim.info(new, f"PCI bridge to {bus_name(nb_sec, pbus.busn_end)}")
            if clash:
                bus_ok = False
                bus_reason = (f"bus {clash[0]:02x} already exists elsewhere in domain {port.domain:04x}: "
                              "pci_find_bus() makes the kernel reuse it, so the bridge's buses are unusable")
            if nb_sub > pbus.busn_end or nb_sec > pbus.busn_end:
                bus_ok = False
                sim.info(new, f"devices behind bridge are unusable because {bus_name(nb_sec, nb_sub)} cannot be "
                              "assigned for them")
                bus_reason = (f"the bridge gets {bus_name(nb_sec, nb_sub)} "
                              + ("(acpiphp numbers it max+1 without checking the port's range) " if mode == "acpi" else "")
                              + f"outside the port's {bus_name(*port_bus)}: devices behind it are unusable")
            if bus_ok:
                bus_reason = f"bus numbers {bus_name(nb_sec, nb_sub)} inside the port's {bus_name(*port_bus)}"

    # --- resources ---
    released: list[str] = []
    tried = 1
    if mode == "acpi":
        acpiphp.assign_resources(sim, pbus, new, child, rules, upstream)
    else:
        tried, released = pciehp.assign_resources(sim, pdev)

    after = _win_state(pdev)
    certain = True
    if sim.unknown_root_used:
        certain = False
        warnings.append("the host bridge windows are unknown to this source (no /proc/iomem read as root): "
                        "whether the parent has room for a re-sized window cannot be predicted")

    # collateral: windows of bridges other than the port (and the new bridge) that were released
    collateral = tuple(line for line in released if not line.split(": ", 1)[0].endswith(str(port)))

    outcomes: list[BarOutcome] = []
    for s in specs:
        r = new.res[s.index]  # type: ignore[index]
        ok = r.parent is not None and bool(r.flags)
        window = _res_desc(r.parent) if ok and r.parent is not None else None
        reason = _bar_reason(sim, s, r, ok, pdev, before, after, mode, tried, certain)
        outcomes.append(BarOutcome(s.index, s.kind, s.size, ok, r.start if ok else None, r.end if ok else None,  # type: ignore[arg-type]
                                   reason, window))
    nb: NewBridge | None = None
    if buses:
        wins = _win_state(new) if (child is not None or mode == "native") else {"io": None, "mem": None, "pref": None,
                                                                               "pref_64bit": None}
        nb = NewBridge(nb_sec, nb_sub, bus_ok, {k: wins[k] for k in ("io", "mem", "pref")}, wins["pref_64bit"],
                       bus_reason)
    fits = all(o.assigned for o in outcomes) and (nb is None or nb.bus_assigned) and oops is None and certain
    for k in ("io", "mem", "pref"):
        if before[k] is not None and after[k] is None:
            lead = f"{port} loses" if certain else f"if the parent has no room, {port} loses"
            warnings.append(f"{lead} its {k} window {before[k][0]:#x}-{before[k][1]:#x}: a failed native re-size "
                            "leaves the port without it (until the device is removed and the port re-sized, or reboot)")
    moved = []
    for d in m.devs.values():
        if d is pdev:
            continue
        for idx, r in d.res.items():
            was = existing.get((d.name, idx))
            if was is None:
                continue
            now = (r.start, r.end, r.parent is not None and bool(r.flags))
            if now != was:
                what = f"{d.name} {res_name(idx)}" + (f" {_WIN_SHORT[idx]}" if idx in _WIN_SHORT else "")
                moved.append(f"{what} [{was[0]:#x}-{was[1]:#x}] -> "
                             + (f"[{now[0]:#x}-{now[1]:#x}]" if now[2] else "unassigned"))
    if moved:
        warnings.append("resources of devices already present move or are lost (the kernel does not check whether "
                        "they are in use): " + "; ".join(moved))
    if collateral:
        warnings.append("the kernel also releases windows of other bridges (the port's own window failed in the first "
                        "try, so the release starts at its parent bus): " + "; ".join(collateral))
    return FitResult(fits, tuple(outcomes), (), port, mode, tuple(sim.log), before, after, port_bus, nb, certain,
                     tuple(warnings), collateral, oops, kp)


def _bar_reason(sim: Sim, s: BarSpec, r: KRes, ok: bool, pdev: KDev, before: dict, after: dict, mode: str,
                tried: int, certain: bool) -> str:
    name = res_name(s.index)  # type: ignore[arg-type]
    if ok:
        parent = r.parent
        assert parent is not None
        where = _res_desc(parent)
        if parent.dev is pdev and parent.idx in _WIN_SHORT:
            k = _WIN_SHORT[parent.idx]  # type: ignore[index]
            b = before.get(k)
            if b is None:
                return f"{name} assigned in the {k} window the kernel opened on the port ({where})"
            if b != (parent.start, parent.end):
                return (f"{name} assigned after native hotplug released the port's {k} window "
                        f"[{b[0]:#x}-{b[1]:#x}] and re-sized it ({where})")
            return f"{name} assigned in the port's existing {k} window ({where})"
        return f"{name} assigned in {where}"
    failed = [ln.split(": ", 1)[1] for ln in sim.log if ln.startswith(f"pci {r.name}: {name} ") and "can't assign" in ln]
    head = failed[-1] if failed else f"{name} not assigned"
    if not certain:
        return head + " (the host bridge windows are unknown, so a re-sized port window cannot be placed reliably)"
    want = "a naturally aligned free block of " + fmt_size(s.size)
    if mode == "acpi":
        parts = []
        for k, idx in (("pref", BRIDGE_PREF), ("mem", BRIDGE_MEM), ("io", BRIDGE_IO)):
            if s.kind == "io" and k != "io":
                continue
            if s.kind != "io" and k == "io":
                continue
            if s.kind in ("mem32", "mem64") and k == "pref":
                continue
            w = pdev.res.get(idx)
            if before.get(k) is None or w is None or w.parent is None:
                parts.append(f"no {k} window")
            else:
                parts.append(f"{k} window {fmt_size(w.size)}, largest aligned free block {fmt_size(_largest_aligned(w))}")
        return (f"{head}: ACPI hotplug (acpiphp) never re-sizes, moves or opens the port's windows and the port has "
                f"no room for {want} (" + "; ".join(parts) + ")")
    lost = [k for k in ("io", "mem", "pref") if before.get(k) is not None and after.get(k) is None]
    if lost:
        return (f"{head}: native hotplug released the port's {'/'.join(lost)} window and could not place a window big "
                f"enough in the parent's free space; the port is left without it")
    if tried < 2:
        return f"{head} (in the port's existing windows; a retry was not needed for the other BARs)"
    return f"{head}: even after native hotplug re-sized the port's window there was no room for {want}"
