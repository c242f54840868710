"""Boot-parameter remedies for a hot-add that does not fit, each one shown to work.

A remedy such as ``pci=realloc=on,hpmmioprefsize=1G`` changes what the kernel assigns at the next
boot; whether the device then fits depends on that layout. So every candidate is simulated in
two steps: the next boot with the parameters (:func:`explorer.kernel.setup.boot.predict_boot`,
from the firmware's state in the kernel log), then the same hot-add on the machine that boot
leaves. A remedy is offered only with its outcome ("fits after a reboot with ...: BAR 2 at 0x...");
otherwise it is listed as tried and not enough, with the kernel's reason.

Values come from a ladder of powers of two: from the window the failed BARs need, up to the
largest host bridge window of that type (what any parent could give); the smallest that works
is offered, first without and then with ``pci=realloc=on`` (which lets the kernel release
windows the firmware programmed, when something fails to fit at boot).

Layer rule: imports :mod:`explorer.model` and sibling kernel modules only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...model import Address, Topology, WindowKind
from ...model.firmware import DmesgBoot, attached_firmware
from ...model.units import format_size
from .boot import BootResult, predict_boot
from .hotadd import simulate_hotadd
from .remedies import _need_window, _pow2
from .simulator import res_name
from .specs import BarSpec, FitResult, normalize_bars, parse_kernel_params
from .versions import RULES

__all__ = ["RebootTry", "reboot_remedies", "with_reboot_remedies", "BOOT_REMEDY_PREFIX"]

#: The unsimulated boot-parameter hints of remedies.find_remedies start with this.
BOOT_REMEDY_PREFIX = "boot with pci="
#: ... and the lines this module writes with these.
_OWN_PREFIXES = ("fits after a reboot with ", "tried at reboot, not enough", "boot parameters not simulated")

_MAX_STEPS = 24


@dataclass(frozen=True)
class RebootTry:
    """One simulated reboot-then-hot-add."""

    params: str
    fits: bool
    boot: BootResult
    result: FitResult | None
    why: str


def _pci_options(cmdline: str | None, drop: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for w in (cmdline or "").split():
        if w.startswith("pci="):
            out += [o for o in w[4:].split(",") if o and not o.startswith(drop)]
    return out


def _join(opts: list[str]) -> str:
    return "pci=" + ",".join(opts) if opts else ""


def _root_max(topology: Topology, kinds: tuple[str, ...]) -> int:
    """The largest host bridge window a window of these BAR kinds could come from."""
    best = 0
    for hb in topology.host_bridges:
        for w in hb.windows or ():
            if "io" in kinds:
                if w.kind is WindowKind.IO:
                    best = max(best, w.size)
                continue
            if w.kind is WindowKind.IO:
                continue
            if any(k.endswith("64") for k in kinds) or w.end < (1 << 32):
                best = max(best, w.size)
    return _pow2(best) if best else 0


def _outcome_text(fit: FitResult) -> str:
    parts = [f"{res_name(o.index)} at {o.start:#x}" for o in fit.bars if o.assigned and o.start is not None]
    nb = fit.new_bridge
    if nb is not None and nb.secondary is not None:
        parts.append(f"bus {nb.secondary:02x}-{nb.subordinate:02x}")
    return ", ".join(parts)


def _failure_text(fit: FitResult | None, boot: BootResult) -> str:
    if fit is None:
        return "the port is gone or has no bus after that boot"
    bad = [o for o in fit.bars if not o.assigned]
    wins = ", ".join(f"{k} {format_size(v[1] - v[0] + 1)}" if v is not None else f"{k} none"
                     for k, v in ((k, fit.port_windows_before.get(k)) for k in ("io", "mem", "pref")))
    if bad:
        return f"{bad[0].reason} (the port's windows after that boot: {wins})"
    if fit.new_bridge is not None and not fit.new_bridge.bus_assigned:
        return fit.new_bridge.reason
    return "; ".join(fit.warnings[:1]) or "it still does not fit"


def _try(topology: Topology, firmware: DmesgBoot, port: Address, specs: list[BarSpec], buses: int, mode: str,
         shpc: bool, params: str, kernel: str | None) -> RebootTry:
    boot = predict_boot(topology, firmware, kernel_params=params, kernel=kernel)
    if boot.predicted is None:
        return RebootTry(params, False, boot, None, "the firmware's state is unknown")
    new_port = dict(boot.address_map).get(port)
    if new_port is None or new_port not in boot.predicted.functions:
        return RebootTry(params, False, boot, None, f"{port} is not found after that boot")
    kp = parse_kernel_params(boot.predicted.source.kernel_cmdline)
    try:
        fit = simulate_hotadd(boot.predicted, new_port, specs, buses, mode, kp, shpc, RULES[boot.kernel])
    except (KeyError, ValueError, AssertionError) as e:
        return RebootTry(params, False, boot, None, str(e))
    ok = fit.fits
    return RebootTry(params, ok, boot, fit, _outcome_text(fit) if ok else _failure_text(fit, boot))


def _lost(boot: BootResult) -> list[str]:
    """Resources assigned now that this boot would leave unassigned."""
    return [d for d in boot.diff.bars + boot.diff.windows if d.endswith("-> unassigned") or "(lost)" in d]


def reboot_remedies(topology: Topology, firmware: DmesgBoot | None, port: Address | str, bars, *, buses: int = 0,
                    hotplug: str = "native", kernel: str | None = None, shpc: bool = False,
                    result: FitResult | None = None, base_params: str | None = None) -> tuple[list[str], list[RebootTry]]:
    """Boot-parameter remedies, simulated: (lines to offer, every try made).

    ``topology`` and ``port`` are the machine as it is now (the firmware's state is that boot's);
    ``result`` the hot-add that failed (on this machine or after ``base_params``); ``base_params``
    the ``pci=`` options the ladders add to (default: the source's own).
    """
    if isinstance(port, str):
        port = Address.parse(port)
    specs = normalize_bars(bars)
    if result is None:
        result = simulate_hotadd(topology, port, specs, buses, hotplug, parse_kernel_params(topology.source.kernel_cmdline),
                                 shpc, RULES.get(kernel or "6.1"))
    if result.fits:
        return [], []
    if firmware is None or not firmware.firmware_known:
        why = "no kernel log" if firmware is None else ("; ".join(firmware.notes) or "no PCI enumeration in the kernel log")
        return ([f"boot parameters not simulated: the firmware's assignment is unknown ({why}); a snapshot keeps the "
                 "kernel log as dmesg.txt"], [])
    # only failures to place a BAR are about window sizes (not an occupied slot, a port without a bus)
    failed = [s for s in specs if any(o.index == s.index and not o.assigned and "can't assign" in o.reason
                                      for o in result.bars)]
    bus_problem = result.new_bridge is not None and not result.new_bridge.bus_assigned
    ladders: list[tuple[str, list[int]]] = []
    for kinds, param in ((("pref64", "pref32"), "hpmmioprefsize"), (("mem32", "mem64", "rom"), "hpmmiosize"),
                         (("io",), "hpiosize")):
        sel = [s for s in failed if s.kind in kinds]
        if not sel:
            continue
        need = 0x1000 if kinds == ("io",) else _need_window(sel, kinds)
        top = _root_max(topology, kinds) or need
        vals = []
        v = _pow2(need)
        while v <= max(top, _pow2(need)) and len(vals) < _MAX_STEPS:
            vals.append(v)
            v <<= 1
        ladders.append((param, vals))
    bus_vals = list(range(max(buses, 1) + 1, 33)) if bus_problem else []
    base = _pci_options(base_params if base_params is not None else (topology.source.kernel_cmdline or firmware.cmdline),
                        ("hpmmioprefsize=", "hpmmiosize=", "hpmemsize=", "hpiosize=", "hpbussize="))
    realloc_on = parse_kernel_params(_join(base)).realloc == "on"
    steps = max([len(v) for _, v in ladders] + [len(bus_vals)] + [0])
    tries: list[RebootTry] = []
    first_ok: RebootTry | None = None
    for i in range(steps):
        opts = list(base)
        for param, vals in ladders:
            opts.append(f"{param}={format_size(vals[min(i, len(vals) - 1)])}")
        variants = [opts]
        if bus_vals:
            nb = bus_vals[min(i, len(bus_vals) - 1)]
            variants = [opts + [f"hpbussize={nb}"]]
            if "assign-busses" not in opts:
                variants.append(opts + ["assign-busses", f"hpbussize={nb}"])
        if not realloc_on:
            variants += [[o for o in v if not o.startswith("realloc")] + ["realloc=on"] for v in variants]
        for v in variants:
            t = _try(topology, firmware, port, specs, buses, hotplug, shpc, _join(v), kernel)
            tries.append(t)
            if t.fits:
                first_ok = t
                break
        if first_ok is not None:
            break
    lines: list[str] = []
    if first_ok is not None:
        note = ""
        lost = _lost(first_ok.boot)
        if lost:
            note = "; but that boot also changes: " + "; ".join(lost[:4])
        renamed = dict(first_ok.boot.address_map).get(port)
        at = f" (the port is then {renamed})" if renamed is not None and renamed != port else ""
        lines.append(f"fits after a reboot with {first_ok.params}{at}: {first_ok.why} "
                     f"(simulated: the next boot, then this hot-add){note}")
    if tries and first_ok is None:
        last = tries[-1]
        ranges = ", ".join(f"{p}={format_size(v[0])}..{format_size(v[-1])}" for p, v in ladders)
        if bus_vals:
            ranges += (", " if ranges else "") + f"hpbussize={bus_vals[0]}..{bus_vals[-1]} (also with assign-busses)"
        lines.append(f"tried at reboot, not enough: pci={ranges}" + ("" if realloc_on else " (each also with realloc=on)")
                     + f": {last.why}")
    return lines, tries


def with_reboot_remedies(result: FitResult, topology: Topology, firmware: DmesgBoot | None, bars, *, buses: int = 0,
                         kernel: str | None = None, shpc: bool = False, port: Address | None = None,
                         base_params: str | None = None) -> FitResult:
    """``result`` with its unsimulated boot-parameter hints replaced by simulated reboots.

    ``port``: the port's address on ``topology`` when ``result`` was computed after a reboot
    that renumbered it."""
    if result.fits:
        return result
    if firmware is None:
        firmware = attached_firmware(topology)
    lines, _ = reboot_remedies(topology, firmware, port or result.port, bars, buses=buses, hotplug=result.hotplug,
                               kernel=kernel, shpc=shpc, result=result, base_params=base_params)
    ours = (BOOT_REMEDY_PREFIX,) + _OWN_PREFIXES
    kept = [r for r in result.remedies if not r.startswith(ours)]
    pos = next((i for i, r in enumerate(result.remedies) if r.startswith(ours)), len(kept))
    pos = min(pos, len(kept))
    return replace(result, remedies=tuple(kept[:pos] + lines + kept[pos:]))
