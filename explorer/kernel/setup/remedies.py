"""Remedies when a hot-add does not fit: another port, boot parameters, a firmware
reservation, native hotplug instead of ACPI -- each one simulated, not guessed."""

from __future__ import annotations

from ...model import Address, Topology, present
from ...model.units import format_size
from .hotadd import simulate_hotadd
from .simulator import align_up, calculate_mem_align, ffs0, res_name
from .specs import BarSpec, FitResult, KernelParams
from .versions import KernelRules

_QEMU_ROOT_PORTS = {(0x1B36, 0x000C), (0x1B36, 0x000D)}  # pcie-root-port, cxl... (gen root port / pxb root)


def _need_window(specs: list[BarSpec], kinds: tuple[str, ...]) -> int:
    """The window pbus_size_mem() would compute for these BARs alone (size0)."""
    sel = [s for s in specs if s.kind in kinds]
    if not sel:
        return 0
    aligns = [0] * 24
    max_order = 0
    size = 0
    for s in sel:
        order = max(ffs0(s.size) - 20, 0)
        size += s.size
        aligns[min(order, 23)] += s.size
        max_order = max(max_order, order)
    min_align = max(calculate_mem_align(aligns, max_order), 0x100000)
    return align_up(size, min_align)


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


_size_arg = format_size


def find_remedies(topology: Topology, port: Address, specs: list[BarSpec], buses: int, mode: str, kp: KernelParams,
                   shpc: bool, result: FitResult, rules: KernelRules | None = None,
                   upstream: bool = False) -> list[str]:
    out: list[str] = []
    failed = [o for o in result.bars if not o.assigned]
    failed_specs = [s for s in specs if any(o.index == s.index for o in failed)]
    bus_problem = result.new_bridge is not None and not result.new_bridge.bus_assigned

    # 1. another hotplug port with room, same mode and kernel
    others: list[str] = []
    for fn in topology:
        if fn.address == port or not fn.is_bridge or not present(fn.slot) or not fn.slot.hotplug:  # type: ignore[union-attr]
            continue
        if any(topology.functions[a].address.devfn == 0 for a in topology.children(fn.address)):
            continue
        try:
            alt = simulate_hotadd(topology, fn.address, specs, buses, mode, kp, shpc, rules, upstream)
        except (KeyError, ValueError, AssertionError):
            continue
        if alt.fits:
            where = ", ".join(f"{res_name(o.index)} at {o.start:#x}" for o in alt.bars if o.start is not None)
            slot = fn.slot.number if present(fn.slot) else None  # type: ignore[union-attr]
            others.append(f"hot-add it into {fn.address}" + (f" (slot {slot})" if slot is not None else "")
                          + f" instead: it fits there with {mode} hotplug" + (f" ({where})" if where else ""))
    out += others[:3]

    # 2. boot parameters (honest about what they can change)
    pfn = topology.get(port)
    if failed_specs and mode == "acpi":
        hints = []
        for kinds, param, win, key in ((("pref64", "pref32"), "hpmmioprefsize", "prefetchable", "pref"),
                                       (("mem32", "mem64", "rom"), "hpmmiosize", "non-prefetchable", "mem"),
                                       (("io",), "hpiosize", "I/O", "io")):
            need = _need_window(failed_specs, kinds) if kinds[0] != "io" else (4096 if any(s.kind == "io" for s in failed_specs) else 0)
            if need:
                hints.append((param, _pow2(need), win, key))
        for param, val, win, key in hints:
            current = {"hpmmioprefsize": kp.hpmmioprefsize, "hpmmiosize": kp.hpmmiosize, "hpiosize": kp.hpiosize}[param]
            if result.port_windows_before.get(key) is None:
                out.append(f"boot with pci={param}={_size_arg(val)}: {port} has no {win} window, so the firmware left "
                           f"it unprogrammed and the kernel sizes it at boot from this reserve (now {_size_arg(current)})"
                           + ("" if key == "io" else "; such a window is only 1 MiB aligned, so a BAR that needs "
                              "natural alignment may need a bigger reserve (the boot-time layout decides)"))
            else:
                out.append(f"boot with pci={param}={_size_arg(val)}: this helps only if the firmware leaves {port}'s "
                           f"{win} window unprogrammed at boot (e.g. QEMU {('pref64' if key == 'pref' else key)}-reserve=0), "
                           "so that the kernel sizes it; a window the firmware programmed keeps its size, whatever "
                           "the parameter says")
    if bus_problem:
        out.append(f"boot with pci=assign-busses,hpbussize={max(buses, 1) + 1}: the kernel then numbers all buses itself "
                   f"and leaves hpbussize-1 spare bus numbers below each hotplug port (x86 only)")

    # 3. a firmware reservation on the port
    is_qemu_port = pfn is not None and (pfn.vendor_id, pfn.device_id) in _QEMU_ROOT_PORTS
    res_hints = []
    if failed_specs:
        pref_need = _need_window(failed_specs, ("pref64",))
        pref32_need = _need_window(failed_specs, ("pref32",))
        mem_need = _need_window(failed_specs, ("mem32", "mem64", "rom"))
        if pref_need:
            res_hints.append(("pref64-reserve", _pow2(pref_need)))
        if pref32_need:
            res_hints.append(("pref32-reserve", _pow2(pref32_need)))
        if mem_need:
            res_hints.append(("mem-reserve", _pow2(mem_need)))
        if any(s.kind == "io" for s in failed_specs):
            res_hints.append(("io-reserve", 4096))
    if bus_problem:
        res_hints.append(("bus-reserve", max(buses, 1) + 1))
    if res_hints:
        props = ",".join(f"{k}={_size_arg(v) if 'bus' not in k else v}" for k, v in res_hints)
        if is_qemu_port:
            out.append(f"reserve it in firmware: QEMU -device pcie-root-port,...,{props} for {port} (SeaBIOS/OVMF "
                       "honour the resource-reserve capability; Linux itself never reads it)")
        else:
            out.append(f"have the firmware reserve more for {port} ({props.replace('-reserve', '')}): a BIOS setting "
                       "for PCIe hotplug resource padding, or a port your firmware pads more")

    # 4. native hotplug instead of ACPI
    if mode == "acpi" and (failed_specs or bus_problem):
        try:
            nat = simulate_hotadd(topology, port, specs, buses, "native", kp, shpc, rules, upstream)
        except (KeyError, ValueError, AssertionError):
            nat = None
        if nat is not None and nat.fits:
            out.append("use native PCIe hotplug (pciehp) instead of ACPI hotplug: it re-sizes the port's window from "
                       "the parent's free space and the device fits"
                       + (" (QEMU q35: -global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off)" if is_qemu_port else
                          " (the firmware must grant the OS native hotplug control via _OSC)"))
        elif nat is not None and nat.kernel_oops is None and not bus_problem:
            out.append("native PCIe hotplug would not help: the parent has no room for a window that big either "
                       "(and a failed native re-size leaves the port without that window)")
    if result.kernel_oops:
        out.append("do not hot-add an SHPC-capable bridge into a port with no spare bus number under native hotplug: "
                   "Linux 6.1 (and 6.12) oops in shpc_init; give the port spare bus numbers first")
    if mode == "native" and failed_specs and not others:
        out.append("free address space above the port (remove or move devices below the same parent) or cold-plug "
                   "the device so firmware sizes the windows at boot")
    return out
