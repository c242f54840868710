"""Reboot what-if reports: the predicted layout, the diff against the source, the kernel's messages.

JSON (``boot --json``)::

    {"format": <pci-explorer/boot/1>, "source": {...the envelope's...}, "context": {...},
     "firmware_state": "kernel log" | "unknown", "kernel_log": path | null,
     "kernel": "6.1" | "6.12", "kernel_params": {...}, "firmware_known": bool,
     "topology": <tree --json of the predicted machine, or null when the firmware state is unknown>,
     "diff": {"renamed": [[old, new]], "buses": [...], "windows": [...], "bars": [...]},
     "unassigned": [...], "messages": [...], "warnings": [...]}
"""

from __future__ import annotations

from typing import Any

from ..kernel.setup.boot import BootResult
from ..model import Topology, WindowKind, present
from ..model.units import format_size
from .envelope import envelope, format_id
from .topology import topology_json

__all__ = ["BOOT_FORMAT", "boot_json", "boot_text", "layout_lines"]

BOOT_FORMAT = format_id("boot")


def _params(result: BootResult) -> dict[str, Any]:
    kp = result.params
    return {
        "cmdline": result.cmdline,
        "options": list(kp.options),
        "realloc": kp.realloc,
        "assign_busses": kp.assign_busses,
        "hpiosize": kp.hpiosize,
        "hpmmiosize": kp.hpmmiosize,
        "hpmmioprefsize": kp.hpmmioprefsize,
        "hpbussize": kp.hpbussize,
    }


def boot_json(result: BootResult, kernel_log: str | None = None) -> dict[str, Any]:
    d = result.diff
    return envelope("boot", result.source, {
        "firmware_state": "kernel log" if result.firmware_known else "unknown",
        "kernel_log": kernel_log,
        "kernel": result.kernel,
        "kernel_params": _params(result),
        "firmware_known": result.firmware_known,
        "topology": topology_json(result.predicted) if result.predicted is not None else None,
        "diff": {
            "renamed": [list(x) for x in d.renamed],
            "buses": list(d.buses),
            "windows": list(d.windows),
            "bars": list(d.bars),
        },
        "unassigned": list(result.unassigned),
        "messages": list(result.messages),
        "warnings": list(result.warnings),
    })


def _win(w: Any, kind: WindowKind) -> str:
    if w is None:
        return "unknown"
    if not present(w):
        return "none"
    width = 4 if kind is WindowKind.IO else 8
    bits = " 64-bit" if kind is WindowKind.PREF and w.is_64bit else ""
    return f"[{w.start:#0{width + 2}x}-{w.end:#0{width + 2}x}]{bits} ({format_size(w.size)})"


def layout_lines(t: Topology) -> list[str]:
    """Every bridge's bus range and windows, every BAR, ROM and VF BAR, in address order."""
    lines: list[str] = []
    for fn in t:
        if fn.is_virtfn:
            continue
        head = f"{fn.address}"
        if present(fn.bridge):
            br = fn.bridge
            rng = br.bus_range  # type: ignore[union-attr]
            bus = "unknown" if rng is None else (f"{rng[0]:02x}" if rng[0] == rng[1] else f"{rng[0]:02x}-{rng[1]:02x}")
            lines.append(f"{head} bridge: bus {bus}")
            for k in WindowKind:
                lines.append(f"    {k.value:<4} window {_win(br.window(k), k)}")  # type: ignore[union-attr]
        else:
            lines.append(head)
        for b in fn.bars or ():
            where = f"[{b.start:#x}-{b.end:#x}]" if b.assigned and b.size else "UNASSIGNED"
            lines.append(f"    BAR {b.index} {b.kind.value} {format_size(b.size) if b.size else '?'} {where}")
        if present(fn.rom):
            rb = fn.rom
            where = f"[{rb.start:#x}-{rb.end:#x}]" if rb.assigned and rb.size else "UNASSIGNED"  # type: ignore[union-attr]
            lines.append(f"    ROM {format_size(rb.size) if rb.size else '?'} {where}")  # type: ignore[union-attr]
        for vb in fn.vf_bars or ():
            total = vb.total_size or vb.size
            where = f"[{vb.start:#x}-{vb.start + total - 1:#x}]" if vb.assigned and total else "UNASSIGNED"  # type: ignore[operator]
            lines.append(f"    VF BAR {vb.index} {vb.kind.value} {format_size(total) if total else '?'} {where}")
    return lines


def boot_text(result: BootResult, kernel_log: str | None = None, *, messages: bool = True) -> str:
    s = result.source.source
    params = result.cmdline or "no pci= parameters"
    lines = [f"next boot of {s.location} on Linux {result.kernel} with {params}"]
    if not result.firmware_known:
        lines.append("  FIRMWARE STATE UNKNOWN: nothing is predicted")
        for w in result.warnings:
            lines.append(f"  {w}")
        lines.append("  (the firmware's assignment is read from the kernel log of the boot the source was taken "
                     "from: a snapshot keeps it as dmesg.txt; or give --dmesg FILE)")
        return "\n".join(lines) + "\n"
    lines.append(f"  firmware state: the kernel log {kernel_log or ''}".rstrip())
    d = result.diff
    lines.append("")
    lines.append("changes against the source:" if not d.empty else "changes against the source: none (the same layout)")
    for ln in d.lines():
        lines.append(f"  {ln}")
    if result.unassigned:
        lines.append("")
        lines.append("left unassigned by the kernel:")
        for u in result.unassigned:
            lines.append(f"  {u}")
    lines.append("")
    lines.append("predicted layout:")
    assert result.predicted is not None
    for ln in layout_lines(result.predicted):
        lines.append(f"  {ln}")
    for w in result.warnings:
        lines.append(f"warning: {w}")
    if messages and result.messages:
        lines.append("")
        lines.append("kernel log (predicted):")
        for m in result.messages:
            lines.append(f"  {m}")
    return "\n".join(lines) + "\n"
