"""What a hot-add is asked about and what it answers: BAR specs, the kernel
command line's ``pci=`` options, and the result types of ``fit_hotadd``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Union

from ...model import Address, BarKind
from ...model.units import format_size
from ..resources import parse_size
from .simulator import (
    DEFAULT_HOTPLUG_BUS_SIZE,
    DEFAULT_HOTPLUG_IO_SIZE,
    DEFAULT_HOTPLUG_MMIO_PREF_SIZE,
    DEFAULT_HOTPLUG_MMIO_SIZE,
)

_size_arg = format_size



@dataclass(frozen=True, slots=True)
class BarSpec:
    """One BAR of a device to hot-add: its kind and size, and optionally its BAR number."""

    kind: str  # "io", "mem32", "mem64", "pref32", "pref64" or "rom"
    size: int
    index: int | None = None

    def __str__(self) -> str:
        pre = f"{self.index}:" if self.index is not None else ""
        return f"{pre}{self.kind}:{_size_arg(self.size)}"


_BAR_KINDS = ("io", "mem32", "mem64", "pref32", "pref64", "rom")
_KIND_ALIASES = {"mem": "mem32", "pref": "pref64", "prefetchable": "pref64", "i/o": "io", "port": "io"}


def parse_bar_spec(text: str) -> BarSpec:
    """``"pref64:1G"`` or ``"2:pref64:1G"`` (BAR 2) -> BarSpec.

    Kinds: io, mem32, mem64, pref32, pref64, rom (the expansion ROM, a 32-bit
    memory BAR); ``mem`` means mem32 and ``pref`` pref64. Sizes: 256, 0x1000,
    16M, 4G, 2GiB (binary units); a BAR size must be a power of two, at least
    4 bytes for I/O and 16 bytes for memory (2 KiB for a ROM), I/O at most 256
    bytes, 32-bit memory at most 2 GiB. Raises ValueError with a clear message.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty BAR spec (expected KIND:SIZE or INDEX:KIND:SIZE, e.g. pref64:1G or 2:pref64:1G)")
    parts = [p.strip() for p in text.strip().split(":")]
    index: int | None = None
    if len(parts) == 3:
        if not parts[0].isdigit():
            raise ValueError(f"bad BAR spec {text!r}: the BAR number {parts[0]!r} is not 0-5")
        index = int(parts[0])
        parts = parts[1:]
    if len(parts) != 2:
        raise ValueError(f"bad BAR spec {text!r} (expected KIND:SIZE or INDEX:KIND:SIZE, e.g. pref64:1G or 2:pref64:1G)")
    kind = _KIND_ALIASES.get(parts[0].lower(), parts[0].lower())
    if kind not in _BAR_KINDS:
        raise ValueError(f"bad BAR spec {text!r}: unknown kind {parts[0]!r} (expected one of {', '.join(_BAR_KINDS)})")
    try:
        size = parse_size(parts[1])
    except ValueError as e:
        raise ValueError(f"bad BAR spec {text!r}: {e}") from None
    spec = BarSpec(kind, size, index)
    _check_spec(spec, text)
    return spec


def _check_spec(spec: BarSpec, text: str | None = None) -> None:
    what = repr(text) if text is not None else str(spec)
    if spec.kind not in _BAR_KINDS:
        raise ValueError(f"bad BAR {what}: unknown kind {spec.kind!r} (expected one of {', '.join(_BAR_KINDS)})")
    size = spec.size
    if size <= 0 or size & (size - 1):
        raise ValueError(f"bad BAR {what}: size {size:#x} is not a power of two (a BAR's size always is)")
    if spec.kind == "io" and not 4 <= size <= 256:
        raise ValueError(f"bad BAR {what}: an I/O BAR is 4 to 256 bytes")
    if spec.kind == "rom" and size < 2048:
        raise ValueError(f"bad BAR {what}: an expansion ROM is at least 2 KiB")
    if spec.kind != "io" and size < 16:
        raise ValueError(f"bad BAR {what}: a memory BAR is at least 16 bytes")
    if spec.kind in ("mem32", "pref32", "rom") and size > (1 << 31):
        raise ValueError(f"bad BAR {what}: a 32-bit BAR is at most 2 GiB")
    if spec.index is not None:
        if spec.kind == "rom":
            if spec.index != 6:
                raise ValueError(f"bad BAR {what}: the expansion ROM has no BAR number (use rom:SIZE)")
        elif not 0 <= spec.index <= 5:
            raise ValueError(f"bad BAR {what}: BAR number {spec.index} is not 0-5")
        elif spec.kind in ("mem64", "pref64") and spec.index == 5:
            raise ValueError(f"bad BAR {what}: a 64-bit BAR takes two registers, so it cannot be BAR 5")


BarLike = Union[BarSpec, str, tuple]


def normalize_bars(bars: Iterable[BarLike]) -> list[BarSpec]:
    """BAR specs as text, (kind, size), (index, kind, size) or BarSpec -> BarSpecs with BAR numbers.

    BARs without a number take the next free one in the order listed (a 64-bit
    BAR uses two registers); the ROM is resource 6.
    """
    specs: list[BarSpec] = []
    for b in bars:
        if isinstance(b, BarSpec):
            s = b
        elif isinstance(b, str):
            s = parse_bar_spec(b)
        elif isinstance(b, tuple) and len(b) in (2, 3):
            idx = b[0] if len(b) == 3 else None
            kind, size = (b[1], b[2]) if len(b) == 3 else (b[0], b[1])
            kind = kind.value if isinstance(kind, BarKind) else str(kind).lower()
            kind = _KIND_ALIASES.get(kind, kind)
            size = parse_size(size) if isinstance(size, str) else int(size)
            s = BarSpec(kind, size, idx)
            _check_spec(s)
        else:
            raise ValueError(f"bad BAR {b!r} (expected 'KIND:SIZE', (kind, size) or (index, kind, size))")
        specs.append(s)
    used: set[int] = set()
    out: list[BarSpec] = []
    for s in specs:
        if s.kind == "rom":
            if 6 in used:
                raise ValueError("two expansion ROMs given")
            used.add(6)
            out.append(BarSpec("rom", s.size, 6))
            continue
        if s.index is not None:
            regs = {s.index, s.index + 1} if s.kind in ("mem64", "pref64") else {s.index}
            if regs & used:
                raise ValueError(f"BAR {s.index} ({s}) overlaps another BAR's registers")
            used |= regs
            out.append(s)
    nxt = 0
    for s in specs:
        if s.kind == "rom" or s.index is not None:
            continue
        wide = s.kind in ("mem64", "pref64")
        while nxt in used or (wide and (nxt + 1 in used or nxt + 1 > 5)):
            nxt += 1
        if nxt > 5:
            raise ValueError(f"too many BARs: no BAR register left for {s}")
        out.append(BarSpec(s.kind, s.size, nxt))
        used |= {nxt, nxt + 1} if wide else {nxt}
        nxt += 2 if wide else 1
    order = {id(s): i for i, s in enumerate(out)}
    return sorted(out, key=lambda s: (s.index if s.index is not None else 99, order[id(s)]))


@dataclass(frozen=True, slots=True)
class KernelParams:
    """What of the kernel command line matters at a hot-add."""

    hpiosize: int = DEFAULT_HOTPLUG_IO_SIZE
    hpmmiosize: int = DEFAULT_HOTPLUG_MMIO_SIZE
    hpmmioprefsize: int = DEFAULT_HOTPLUG_MMIO_PREF_SIZE
    hpbussize: int = DEFAULT_HOTPLUG_BUS_SIZE
    #: "on", "off" or None (auto). Only boot-time assignment uses it; a hot-add never does.
    realloc: str | None = None
    skip_isa_align: bool = False
    assign_busses: bool = False
    noari: bool = False
    #: pci= options seen, in order.
    options: tuple[str, ...] = ()


def _memparse(text: str) -> int:
    """lib/cmdline.c memparse(): a C integer (0x hex, 0 octal) with K/M/G/T/P/E."""
    m = re.match(r"^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([kKmMgGtTpPeE]?)", text)
    if not m:
        return 0
    num = m.group(1)
    v = int(num, 16) if num[:2].lower() == "0x" else (int(num, 8) if num.startswith("0") and len(num) > 1 else int(num))
    return v * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}[m.group(2).lower()]


def parse_kernel_params(cmdline: str | None) -> KernelParams:
    """Read the ``pci=`` options (drivers/pci/pci.c pci_setup, arch/x86/pci/common.c pcibios_setup)."""
    kw: dict[str, object] = {}
    opts: list[str] = []
    for word in (cmdline or "").split():
        if not word.startswith("pci="):
            continue
        for opt in word[4:].split(","):
            if not opt:
                continue
            opts.append(opt)
            if opt == "skip_isa_align":
                kw["skip_isa_align"] = True
            elif opt == "assign-busses":
                kw["assign_busses"] = True
            elif opt.startswith("realloc="):
                v = opt[8:]
                if v.startswith("off"):
                    kw["realloc"] = "off"
                elif v.startswith("on"):
                    kw["realloc"] = "on"
            elif opt.startswith("realloc"):
                kw["realloc"] = "on"
            elif opt.startswith("noari"):
                kw["noari"] = True
            elif opt.startswith("hpiosize="):
                kw["hpiosize"] = _memparse(opt[9:])
            elif opt.startswith("hpmmiosize="):
                kw["hpmmiosize"] = _memparse(opt[11:])
            elif opt.startswith("hpmmioprefsize="):
                kw["hpmmioprefsize"] = _memparse(opt[15:])
            elif opt.startswith("hpmemsize="):
                kw["hpmmiosize"] = kw["hpmmioprefsize"] = _memparse(opt[10:])
            elif opt.startswith("hpbussize="):
                try:
                    v = int(opt[10:], 0)
                except ValueError:
                    v = 0
                kw["hpbussize"] = v if v <= 0xFF else DEFAULT_HOTPLUG_BUS_SIZE
    return KernelParams(options=tuple(opts), **kw)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class BarOutcome:
    """What the kernel does with one BAR of the hot-added device."""

    index: int
    kind: str
    size: int
    assigned: bool
    start: int | None
    end: int | None
    reason: str
    #: Which window it landed in ("0000:00:02.0 pref window"), when assigned.
    window: str | None = None


@dataclass(frozen=True, slots=True)
class NewBridge:
    """A hot-added bridge: the bus numbers it gets and its windows."""

    secondary: int | None
    subordinate: int | None
    #: The numbers are inside the port's range and usable.
    bus_assigned: bool
    #: kind ("io", "mem", "pref") -> (start, end), or None when it has none.
    windows: dict[str, tuple[int, int] | None]
    pref_64bit: bool | None
    reason: str


@dataclass(frozen=True, slots=True)
class FitResult:
    """The prediction for one hot-add."""

    fits: bool
    bars: tuple[BarOutcome, ...]
    remedies: tuple[str, ...]
    port: Address
    hotplug: str
    #: The kernel's own log lines this hot-add would print (setup-bus.c / setup-res.c / probe.c strings).
    messages: tuple[str, ...] = ()
    #: kind -> (start, end) | None, plus "pref_64bit".
    port_windows_before: dict = field(default_factory=dict)
    port_windows_after: dict = field(default_factory=dict)
    port_bus: tuple[int, int] | None = None
    new_bridge: NewBridge | None = None
    #: False when the answer depends on facts the source lacks (e.g. unknown host bridge windows).
    certain: bool = True
    warnings: tuple[str, ...] = ()
    #: Windows of other bridges the kernel would release (code reading: native failure of the port's own window).
    collateral: tuple[str, ...] = ()
    kernel_oops: str | None = None
    kernel_params: KernelParams = field(default_factory=KernelParams)
    #: The kernel rule set this was computed with ("6.1", "6.12").
    kernel: str | None = None
    #: What this result assumed that the source does not say: (fact, value), e.g. ("hotplug", "acpi").
    assuming: tuple[tuple[str, str], ...] = ()
    #: When the outcome depends on unknown facts: one result per possibility (side by side);
    #: this result is then the worst of them, with ``certain`` False.
    possibilities: tuple["FitResult", ...] = ()
    #: The kernel context the prediction resolved (explorer.model.context.KernelContext).
    context: object = None


HOTPLUG_MODES = ("native", "acpi")
