"""Render resource accounting, hot-add fits and SR-IOV fits: JSON-ready dicts and plain text.

Pure functions: each takes a result from :mod:`explorer.kernel.resources` or
:mod:`explorer.kernel.setup` and returns a ``dict`` (for ``json.dumps``) or a
``str``. Addresses and sizes in JSON are integers; text shows them in hex.

Fit JSON (``fit_json``)::

    {"format": "pci-explorer/fit/1", "fits": bool,
     "bars": [{"index": n, "kind": "...", "size": n, "assigned": bool,
               "start": n | null, "end": n | null, "reason": "...", "window": "..." | null}],
     "remedies": ["..."],
     "port": "0000:00:02.0", "hotplug": "native" | "acpi", "certain": bool,
     "messages": ["<the kernel's log lines>"],
     "port_windows_before": {"io": [s, e] | null, "mem": ..., "pref": ..., "pref_64bit": bool | null},
     "port_windows_after": {...}, "port_bus": [sec, sub] | null,
     "new_bridge": {"bus": [sec, sub], "bus_assigned": bool, "windows": {...}, "reason": "..."} | null,
     "warnings": [...], "kernel_oops": "..." | null, "collateral": [...],
     "kernel_params": {"hpiosize": n, "hpmmiosize": n, "hpmmioprefsize": n, "hpbussize": n, "realloc": ...}}
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..kernel.setup import BarOutcome, FitResult, KernelParams, NewBridge, SriovFitResult
from ..kernel.resources import BridgeReport, ResourceReport, WindowReport, fmt_size
from ..model import WindowKind

REPORT_FORMAT = "pci-explorer/resources/1"
FIT_FORMAT = "pci-explorer/fit/1"
SRIOV_FORMAT = "pci-explorer/sriov-fit/1"

__all__ = [
    "FIT_FORMAT",
    "REPORT_FORMAT",
    "SRIOV_FORMAT",
    "fit_json",
    "fit_text",
    "report_json",
    "report_text",
    "sriov_json",
    "sriov_text",
]


# ---- accounting ------------------------------------------------------------------------------


def _window_json(w: WindowReport) -> dict[str, Any]:
    largest = w.largest_block
    return {
        "kind": w.kind.value,
        "start": w.start,
        "end": w.end,
        "size": w.size,
        "is_64bit": w.is_64bit,
        "used": [
            {"start": u.start, "end": u.end, "size": u.size, "what": u.what,
             "owner": str(u.owner) if u.owner is not None else None, "index": u.index, "label": u.label}
            for u in w.used
        ],
        "free": [{"start": s, "end": e, "size": e - s + 1} for s, e in w.free],
        "free_bytes": w.free_bytes,
        "largest_aligned_free": (
            {"size": largest.size, "start": largest.start, "end": largest.end} if largest is not None else None
        ),
        "aligned_free": [{"size": b.size, "first_start": b.start, "count": b.count} for b in w.blocks],
    }


def _bridge_json(b: BridgeReport) -> dict[str, Any]:
    buses = None
    if b.buses is not None:
        buses = {
            "start": b.buses.start,
            "end": b.buses.end,
            "used": [{"start": u.start, "end": u.end, "what": u.what,
                      "owner": str(u.owner) if u.owner is not None else None} for u in b.buses.used],
            "free": [{"start": s, "end": e} for s, e in b.buses.free],
            "free_count": b.buses.free_count,
            "first_free": b.buses.first_free,
        }
    return {
        "name": b.name,
        "address": str(b.address) if b.address is not None else None,
        "host_bridge": b.is_host,
        "hotplug": b.hotplug,
        "buses": buses,
        "windows": [_window_json(w) for w in b.windows],
        "windows_known": not (b.is_host and not b.windows and any("windows unknown" in n for n in b.notes)),
        "closed": [k.value for k in b.closed],
        "unassigned": [
            {"owner": str(u.owner), "what": u.what, "index": u.index, "kind": u.kind.value if u.kind else None,
             "size": u.size}
            for u in b.unassigned
        ],
        "notes": list(b.notes),
    }


def report_json(report: ResourceReport) -> dict[str, Any]:
    """The accounting as a JSON-ready dict."""
    return {
        "format": REPORT_FORMAT,
        "port": str(report.port) if report.port is not None else None,
        "bridges": [_bridge_json(b) for b in report.bridges],
        "warnings": list(report.warnings),
    }


def _hx(v: int, width: int = 0) -> str:
    return f"{v:#0{width + 2}x}" if width else f"{v:#x}"


def _range(s: int, e: int, kind: WindowKind | None = None) -> str:
    w = 4 if kind is WindowKind.IO else 8
    return f"{_hx(s, w)}-{_hx(e, w)}"


def _bus_list(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{s:02x}" if s == e else f"{s:02x}-{e:02x}" for s, e in ranges) or "none"


def report_text(report: ResourceReport, *, verbose: bool = False) -> str:
    """Plain text: per bridge its buses and windows, what is used and what is free.

    ``verbose`` also lists every free gap and every aligned block size.
    """
    lines: list[str] = []
    for b in report.bridges:
        head = b.name + ("  (host bridge)" if b.is_host else "")
        if b.hotplug:
            head += "  [hotplug slot]"
        lines.append(head)
        if b.buses is not None:
            used = []
            for u in b.buses.used:
                r = f"{u.start:02x}" if u.start == u.end else f"{u.start:02x}-{u.end:02x}"
                what = {"secondary": "own bus", "bridge": str(u.owner), "vf": "VFs"}.get(u.what, u.what)
                used.append(f"{r} {what}")
            lines.append(f"  buses {b.buses.start:02x}-{b.buses.end:02x}: used {', '.join(used) or 'none'}; "
                         f"free {_bus_list(list(b.buses.free))} ({b.buses.free_count})")
        for w in b.windows:
            bits = ""
            if w.kind is WindowKind.PREF:
                bits = " 64-bit" if w.is_64bit else (" 32-bit" if w.is_64bit is False else "")
            largest = w.largest_block
            lg = f"largest aligned free {fmt_size(largest.size)} at {_hx(largest.start)}" if largest else "full"
            lines.append(f"  {w.kind.value:<4} {_range(w.start, w.end, w.kind)}{bits}  size {fmt_size(w.size)}, "
                         f"free {fmt_size(w.free_bytes)}, {lg}")
            for u in w.used:
                lines.append(f"      used {_range(u.start, u.end, w.kind)}  {u.label}")
            gaps = list(w.free)
            shown = gaps if verbose else gaps[:4]
            for s, e in shown:
                lines.append(f"      free {_range(s, e, w.kind)}  {fmt_size(e - s + 1)}")
            if len(gaps) > len(shown):
                lines.append(f"      ... {len(gaps) - len(shown)} more free gaps")
            if verbose:
                for blk in w.blocks:
                    lines.append(f"      aligned {fmt_size(blk.size):>9}: first at {_hx(blk.start)}, {blk.count} free")
        if b.closed:
            lines.append("  no window: " + ", ".join(k.value for k in b.closed))
        for u in b.unassigned:
            what = {"bar": f"BAR {u.index}", "iov": f"VF BAR {u.index}", "rom": "ROM"}.get(u.what, u.what)
            size = fmt_size(u.size) if u.size else "size unknown"
            lines.append(f"  unassigned: {u.owner} {what} ({u.kind.value if u.kind else '?'}, {size})")
        for n in b.notes:
            lines.append(f"  note: {n}")
    for w in report.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines) + ("\n" if lines else "")


# ---- hot-add fit -----------------------------------------------------------------------------


def _bar_json(o: BarOutcome) -> dict[str, Any]:
    return {
        "index": o.index,
        "kind": o.kind,
        "size": o.size,
        "assigned": o.assigned,
        "start": o.start,
        "end": o.end,
        "reason": o.reason,
        "window": o.window,
    }


def _wins_json(d: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in ("io", "mem", "pref"):
        v = d.get(k)
        out[k] = [v[0], v[1]] if v is not None else None
    out["pref_64bit"] = d.get("pref_64bit")
    return out


def _params_json(kp: KernelParams) -> dict[str, Any]:
    return {
        "hpiosize": kp.hpiosize,
        "hpmmiosize": kp.hpmmiosize,
        "hpmmioprefsize": kp.hpmmioprefsize,
        "hpbussize": kp.hpbussize,
        "realloc": kp.realloc,
        "options": list(kp.options),
    }


def _new_bridge_json(nb: NewBridge | None) -> dict[str, Any] | None:
    if nb is None:
        return None
    return {
        "bus": [nb.secondary, nb.subordinate] if nb.secondary is not None else None,
        "bus_assigned": nb.bus_assigned,
        "windows": {k: ([v[0], v[1]] if v is not None else None) for k, v in nb.windows.items()},
        "pref_64bit": nb.pref_64bit,
        "reason": nb.reason,
    }


def _context_lines(result: FitResult) -> list[str]:
    ctx = result.context
    if ctx is None or not hasattr(ctx, "slot_driver"):
        return []
    f = ctx.slot_driver(result.port)
    out = [f"  slot driver: {f.describe()}", f"  kernel rules: {ctx.rules.describe()}",
           f"  command line: {ctx.cmdline.describe()}"]
    out += [f"  override: {o}" for o in ctx.overrides]
    return out


def fit_json(result: FitResult) -> dict[str, Any]:
    """A hot-add prediction as a JSON-ready dict (``fits``, ``bars``, ``remedies`` first)."""
    return {
        "fits": result.fits,
        "bars": [_bar_json(o) for o in result.bars],
        "remedies": list(result.remedies),
        "format": FIT_FORMAT,
        "port": str(result.port),
        "hotplug": result.hotplug,
        "certain": result.certain,
        "messages": list(result.messages),
        "port_windows_before": _wins_json(result.port_windows_before),
        "port_windows_after": _wins_json(result.port_windows_after),
        "port_bus": list(result.port_bus) if result.port_bus is not None else None,
        "new_bridge": _new_bridge_json(result.new_bridge),
        "warnings": list(result.warnings),
        "kernel_oops": result.kernel_oops,
        "collateral": list(result.collateral),
        "kernel_params": _params_json(result.kernel_params),
        "kernel": result.kernel,
        "assuming": dict(result.assuming),
        "possibilities": [_possibility_json(p) for p in result.possibilities],
        "context": _context_json(result.context),
    }


def _context_json(ctx: Any) -> dict[str, Any] | None:
    return ctx.to_dict() if ctx is not None and hasattr(ctx, "to_dict") else None


def _possibility_json(r: FitResult) -> dict[str, Any]:
    """One possibility of a hot-add whose outcome depends on unknown facts."""
    return {
        "assuming": dict(r.assuming),
        "kernel": r.kernel,
        "hotplug": r.hotplug,
        "fits": r.fits,
        "bars": [_bar_json(o) for o in r.bars],
        "new_bridge": _new_bridge_json(r.new_bridge),
        "port_windows_after": _wins_json(r.port_windows_after),
        "kernel_oops": r.kernel_oops,
        "remedies": list(r.remedies),
        "messages": list(r.messages),
    }


def _win_line(d: dict) -> str:
    parts = []
    for k in ("io", "mem", "pref"):
        v = d.get(k)
        if v is None:
            parts.append(f"{k} none")
        else:
            kind = WindowKind.IO if k == "io" else WindowKind.MEM
            bits = (" 64-bit" if d.get("pref_64bit") else "") if k == "pref" else ""
            parts.append(f"{k} {_range(v[0], v[1], kind)}{bits} ({fmt_size(v[1] - v[0] + 1)})")
    return ", ".join(parts)


_MODE_WORDS = {"native": "native PCIe hotplug (pciehp)", "acpi": "ACPI hotplug (acpiphp)"}


def _assuming_words(r: FitResult) -> str:
    words = {"hotplug": lambda v: " or ".join(_MODE_WORDS.get(x, x).split(" (")[1].rstrip(")") for x in v.split("|")),
             "kernel": lambda v: "Linux " + " or ".join(v.split("|")),
             "bridge": lambda v: " or ".join({"switch": "a switch upstream port", "pci": "a PCIe-to-PCI bridge"}.get(x, x)
                                              for x in v.split("|"))}
    return ", ".join(words.get(k, str)(v) for k, v in r.assuming) or "any"


def _outcome_words(r: FitResult) -> str:
    parts = []
    for o in r.bars:
        name = "ROM" if o.kind == "rom" else f"BAR {o.index}"
        parts.append(f"{name} at {o.start:#x}" if o.assigned else f"{name} NOT assigned")
    nb = r.new_bridge
    if nb is not None:
        wins = [k for k in ("io", "mem", "pref") if nb.windows.get(k) is not None]
        parts.append(f"new bridge bus {nb.secondary if nb.secondary is not None else 'none'}"
                     + (f" with {'/'.join(wins)} windows" if wins else " with no windows")
                     + ("" if nb.bus_assigned else " (unusable)"))
    if r.kernel_oops:
        parts.append("kernel oops")
    return ("fits: " if r.fits else "does not fit: ") + ("; ".join(parts) or "nothing to assign")


def fit_text(result: FitResult, *, messages: bool = True) -> str:
    """Plain text for a hot-add prediction."""
    if result.possibilities:
        lines = [f"hot-add below {result.port}: DEPENDS on what the source does not say (exit status: the worst case, "
                 f"{'fits' if result.fits else 'does not fit'})"]
        for p in result.possibilities:
            lines.append(f"  with {_assuming_words(p)}: {_outcome_words(p)}")
        lines += _context_lines(result)
        lines.append("  worst case in detail:")
        detail = fit_text(replace(result, possibilities=(), warnings=result.warnings[1:], context=None),
                          messages=messages)
        return "\n".join(lines) + "\n" + "\n".join("  " + ln for ln in detail.splitlines()) + "\n"
    mode = _MODE_WORDS.get(result.hotplug, result.hotplug)
    verdict = "FITS" if result.fits else ("DOES NOT FIT" if result.certain else "UNCERTAIN")
    kern = f" on Linux {result.kernel}" if result.kernel else ""
    lines = [f"hot-add below {result.port} with {mode}{kern}: {verdict}"]
    lines += _context_lines(result)
    if not result.certain:
        lines.append("  (the answer depends on facts this source does not have; see warnings)")
    for o in result.bars:
        name = "ROM" if o.kind == "rom" else f"BAR {o.index}"
        head = f"  {name} {o.kind} {fmt_size(o.size)}: "
        if o.assigned:
            head += f"assigned {o.start:#x}-{o.end:#x}"
        else:
            head += "NOT assigned"
        lines.append(head)
        lines.append(f"      {o.reason}")
    nb = result.new_bridge
    if nb is not None:
        bus = (f"{nb.secondary:02x}" if nb.secondary == nb.subordinate else f"{nb.secondary:02x}-{nb.subordinate:02x}") \
            if nb.secondary is not None else "none"
        lines.append(f"  new bridge: bus {bus} ({'usable' if nb.bus_assigned else 'NOT usable'}): {nb.reason}")
        lines.append("      windows: " + _win_line({**nb.windows, "pref_64bit": nb.pref_64bit}))
    lines.append(f"  port windows before: {_win_line(result.port_windows_before)}")
    if result.port_windows_after != result.port_windows_before:
        lines.append(f"  port windows after:  {_win_line(result.port_windows_after)}")
    if result.kernel_oops:
        lines.append(f"  KERNEL OOPS: {result.kernel_oops}")
    for w in result.warnings:
        lines.append(f"  warning: {w}")
    if result.remedies:
        lines.append("  remedies (least change first):")
        for i, r in enumerate(result.remedies, 1):
            lines.append(f"    {i}. {r}")
    if messages and result.messages:
        lines.append("  kernel log:")
        for m in result.messages:
            lines.append(f"    {m}")
    return "\n".join(lines) + "\n"


# ---- SR-IOV fit ------------------------------------------------------------------------------


def sriov_json(result: SriovFitResult) -> dict[str, Any]:
    """An SR-IOV prediction as a JSON-ready dict (``fits``, ``bars``, ``remedies`` first)."""
    return {
        "fits": result.fits,
        "bars": [_bar_json(o) for o in result.bars],
        "remedies": list(result.remedies),
        "format": SRIOV_FORMAT,
        "pf": str(result.pf),
        "num_vfs": result.num_vfs,
        "total_vfs": result.total_vfs,
        "currently_enabled": result.currently_enabled,
        "errno": result.errno,
        "error": result.error,
        "certain": result.certain,
        "messages": list(result.messages),
        "bus_range": list(result.bus_range) if result.bus_range is not None else None,
        "vfs": [
            {
                "vf": v.vf,
                "address": str(v.address) if v.address is not None else None,
                "bus_ok": v.bus_ok,
                "bars": [{"index": b.index, "kind": b.kind, "size": b.size, "start": b.start, "end": b.end}
                         for b in v.bars],
            }
            for v in result.vfs
        ],
        "notes": list(result.notes),
    }


def sriov_text(result: SriovFitResult) -> str:
    """Plain text for an SR-IOV prediction."""
    verdict = "FITS" if result.fits else ("DOES NOT FIT" if result.certain or result.errno else "UNCERTAIN")
    total = result.total_vfs if result.total_vfs is not None else "?"
    lines = [f"enable {result.num_vfs} VFs on {result.pf} (TotalVFs {total}): {verdict}"
             + (f" (-{result.errno})" if result.errno else "")]
    if result.error:
        lines.append(f"  error: {result.error}")
    for m in result.messages:
        lines.append(f"  kernel: {m}")
    for o in result.bars:
        lines.append(f"  {o.reason}" + (f" at {o.start:#x}-{o.end:#x}" if o.assigned and o.start is not None else ""))
    for v in result.vfs:
        where = ", ".join(f"BAR {b.index} {b.start:#x}-{b.end:#x}" if b.start is not None else f"BAR {b.index} unassigned"
                          for b in v.bars)
        lines.append(f"  VF {v.vf}: {v.address if v.address is not None else '?'}"
                     + ("" if v.bus_ok else " (bus out of range)") + (f"  {where}" if where else ""))
    for n in result.notes:
        lines.append(f"  note: {n}")
    if result.remedies:
        lines.append("  remedies:")
        for i, r in enumerate(result.remedies, 1):
            lines.append(f"    {i}. {r}")
    return "\n".join(lines) + "\n"
