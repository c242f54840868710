"""Free resources: bus numbers and bridge windows, as the kernel sees them.

``account(topology)`` reports, for every bridge and every host bridge (root bus):

* the bus-number range with the numbers in use (the secondary bus itself, the
  ranges of bridges below, buses SR-IOV VFs sit on) and the free ones;
* every window (I/O, non-prefetchable memory, prefetchable memory and its
  64-bitness) with what occupies it -- the BARs, expansion ROMs and SR-IOV IOV
  resources of the functions directly below, and the windows of bridges below --
  the free gaps, and for each power-of-two size the first naturally aligned free
  block (first fit: what the kernel's ``allocate_resource`` would take for a
  BAR of that size) and how many such blocks there are.

Where a source cannot know something (``HostBridge.windows`` is None: /proc/iomem
was not readable as root, or the source has no such file) the report says so
instead of guessing. A VF's BARs live inside its PF's IOV resource, so they are
not counted again at window level.

Layer rule: imports :mod:`explorer.model` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..model.units import human_size, parse_size
from ..model import (
    ABSENT,
    Address,
    Bar,
    BarKind,
    Function,
    HostBridge,
    Topology,
    Window,
    WindowKind,
    present,
)

__all__ = [
    "AlignedBlock",
    "BridgeReport",
    "BusReport",
    "BusUse",
    "ResourceReport",
    "UsedRange",
    "WindowReport",
    "account",
    "aligned_blocks",
    "fmt_size",
    "free_gaps",
    "parse_size",
]

# Smallest block size listed per window type: I/O BARs go down to 4 bytes, but
# listing every size below 16 bytes (I/O) or 4 KiB (memory) only adds noise.
MIN_LISTED_BLOCK = {WindowKind.IO: 0x10, WindowKind.MEM: 0x1000, WindowKind.PREF: 0x1000}



def fmt_size(n: int | None) -> str:
    """Bytes for people: ``256 B``, ``16 KiB``, ``1 GiB``, ``3.75 KiB`` (model.units.human_size)."""
    return human_size(n)


# ---- range arithmetic ---------------------------------------------------------------------


def free_gaps(start: int, end: int, used: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of inclusive ``[start, end]`` not covered by any inclusive used range."""
    gaps: list[tuple[int, int]] = []
    cur = start
    for s, e in sorted(used):
        if e < cur:
            continue
        if s > end:
            break
        if s > cur:
            gaps.append((cur, s - 1))
        cur = max(cur, e + 1)
        if cur > end:
            break
    if cur <= end:
        gaps.append((cur, end))
    return gaps


def _count_aligned(gs: int, ge: int, size: int) -> tuple[int, int | None]:
    first = -(-gs // size) * size
    if first + size - 1 > ge:
        return 0, None
    last = ((ge + 1) // size) * size - size
    return (last - first) // size + 1, first


@dataclass(frozen=True, slots=True)
class AlignedBlock:
    """Naturally aligned free blocks of one power-of-two size in a window."""

    size: int
    #: The lowest such block (first fit), inclusive start.
    start: int
    #: How many disjoint blocks of this size are free.
    count: int

    @property
    def end(self) -> int:
        return self.start + self.size - 1


def aligned_blocks(gaps: Iterable[tuple[int, int]], min_size: int = 1) -> list[AlignedBlock]:
    """For each power-of-two size from ``min_size`` up, the first aligned free block and the count."""
    gl = list(gaps)
    out: list[AlignedBlock] = []
    if not gl:
        return out
    size = 1
    while size < min_size:
        size <<= 1
    biggest = max(e - s + 1 for s, e in gl)
    while size <= biggest:
        count = 0
        first: int | None = None
        for s, e in gl:
            c, f = _count_aligned(s, e, size)
            if c:
                count += c
                if first is None or (f is not None and f < first):
                    first = f
        if not count:
            break
        out.append(AlignedBlock(size, first, count))  # type: ignore[arg-type]
        size <<= 1
    return out


# ---- report types -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsedRange:
    """One thing occupying part of a window, inclusive ``[start, end]``."""

    start: int
    end: int
    #: "bar", "rom", "iov" (an SR-IOV IOV resource: all VFs' copies of one VF BAR), "window".
    what: str
    owner: Address | None
    #: BAR / VF BAR number; for "window" the kind of the child window ("io", "mem", "pref").
    index: int | str | None = None
    label: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class WindowReport:
    kind: WindowKind
    start: int
    end: int
    #: For prefetchable windows: 64-bit capable; None when the source did not say.
    is_64bit: bool | None
    used: tuple[UsedRange, ...]
    free: tuple[tuple[int, int], ...]
    blocks: tuple[AlignedBlock, ...]
    #: Which bridge or host bridge owns it ("0000:00:02.0" or "pci0000:00").
    owner: str = ""

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def used_bytes(self) -> int:
        return sum(u.size for u in _merge([(u.start, u.end) for u in self.used], self.start, self.end))

    @property
    def free_bytes(self) -> int:
        return sum(e - s + 1 for s, e in self.free)

    @property
    def largest_block(self) -> AlignedBlock | None:
        return self.blocks[-1] if self.blocks else None

    def first_fit(self, size: int) -> int | None:
        """Lowest start of a free block of ``size`` aligned to ``size`` (a BAR's own alignment)."""
        for s, e in self.free:
            c, f = _count_aligned(s, e, _pow2_ceil(size))
            if c:
                return f
        return None


def _pow2_ceil(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


def _merge(ranges: list[tuple[int, int]], lo: int, hi: int) -> list[UsedRange]:
    out: list[list[int]] = []
    for s, e in sorted(ranges):
        s, e = max(s, lo), min(e, hi)
        if s > e:
            continue
        if out and s <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [UsedRange(s, e, "merged", None) for s, e in out]


@dataclass(frozen=True, slots=True)
class BusUse:
    start: int
    end: int
    #: "secondary" (the bridge's own secondary bus / the root bus), "bridge", "vf".
    what: str
    owner: Address | None = None


@dataclass(frozen=True, slots=True)
class BusReport:
    start: int
    end: int
    used: tuple[BusUse, ...]
    free: tuple[tuple[int, int], ...]

    @property
    def free_count(self) -> int:
        return sum(e - s + 1 for s, e in self.free)

    @property
    def first_free(self) -> int | None:
        return self.free[0][0] if self.free else None


@dataclass(frozen=True, slots=True)
class UnassignedRes:
    """A resource of a function directly below the bridge that the kernel left unassigned."""

    owner: Address
    what: str  # "bar", "rom", "iov"
    index: int
    kind: BarKind | None
    size: int | None


@dataclass(frozen=True, slots=True)
class BridgeReport:
    #: The bridge; None for a host bridge (root bus).
    address: Address | None
    #: "pci0000:00" for a host bridge, else the bridge's address as text.
    name: str
    is_host: bool
    buses: BusReport | None
    windows: tuple[WindowReport, ...]
    #: Window kinds the bridge does not forward (closed / never assigned).
    closed: tuple[WindowKind, ...] = ()
    #: Whether its slot is hotplug capable (SltCap HotPlug+); None when unknown / not a port.
    hotplug: bool | None = None
    unassigned: tuple[UnassignedRes, ...] = ()
    notes: tuple[str, ...] = ()
    domain: int = 0


@dataclass(frozen=True, slots=True)
class ResourceReport:
    bridges: tuple[BridgeReport, ...]
    warnings: tuple[str, ...] = ()
    #: The ``port`` filter, when one was given.
    port: Address | None = None

    def bridge(self, key: Address | str) -> BridgeReport | None:
        name = str(key)
        for b in self.bridges:
            if b.name == name or (b.address is not None and str(b.address) == name):
                return b
        return None


# ---- building ------------------------------------------------------------------------------


def _is_io(k: WindowKind) -> bool:
    return k is WindowKind.IO


@dataclass
class _Item:
    start: int
    end: int
    is_io: bool
    what: str
    owner: Address
    index: int | str | None
    label: str


def _function_items(fn: Function) -> tuple[list[_Item], list[UnassignedRes]]:
    """Resources of one function that occupy its upstream bridge's windows."""
    items: list[_Item] = []
    unassigned: list[UnassignedRes] = []
    a = fn.address
    if not fn.is_virtfn:  # a VF's BARs sit inside its PF's IOV resource
        for b in fn.bars or ():
            if b.assigned and b.size:
                items.append(_Item(b.start, b.start + b.size - 1, b.kind.is_io, "bar", a, b.index,  # type: ignore[operator]
                                   f"{a} BAR {b.index} ({b.kind.value}, {fmt_size(b.size)})"))
            elif b.unassigned:
                unassigned.append(UnassignedRes(a, "bar", b.index, b.kind, b.size))
    rom = fn.rom
    if present(rom):
        assert isinstance(rom, Bar)
        if rom.assigned and rom.size:
            items.append(_Item(rom.start, rom.start + rom.size - 1, False, "rom", a, None,  # type: ignore[operator]
                               f"{a} ROM ({fmt_size(rom.size)})"))
    for vb in fn.vf_bars or ():
        total = vb.total_size
        if vb.assigned and total:
            items.append(_Item(vb.start, vb.start + total - 1, vb.kind.is_io, "iov", a, vb.index,  # type: ignore[operator]
                               f"{a} VF BAR {vb.index} ({vb.kind.value}, {fmt_size(vb.size)} x VFs = {fmt_size(total)})"))
        elif vb.unassigned or (vb.start is None and total):
            unassigned.append(UnassignedRes(a, "iov", vb.index, vb.kind, total))
    br = fn.bridge
    if present(br):
        for w in (br.io_window, br.mem_window, br.pref_window):  # type: ignore[union-attr]
            if present(w):
                assert isinstance(w, Window)
                bits = " 64-bit" if w.is_64bit else ""
                items.append(_Item(w.start, w.end, w.kind is WindowKind.IO, "window", a, w.kind.value,
                                   f"{a} {w.kind.value}{bits} window ({fmt_size(w.size)})"))
    return items, unassigned


def _place(items: list[_Item], windows: list[tuple[WindowKind, int, int]]) -> tuple[dict[int, list[_Item]], list[_Item]]:
    """Put each item in the first window of the right space (I/O or memory) that contains it."""
    placed: dict[int, list[_Item]] = {i: [] for i in range(len(windows))}
    orphans: list[_Item] = []
    for it in items:
        for i, (k, s, e) in enumerate(windows):
            if _is_io(k) != it.is_io:
                continue
            if s <= it.start and it.end <= e:
                # a non-prefetchable BAR never lives in a prefetchable window
                # (pci_find_parent_resource); a window of a child bridge may.
                placed[i].append(it)
                break
        else:
            orphans.append(it)
    return placed, orphans


def _window_report(owner: str, kind: WindowKind, start: int, end: int, is64: bool | None,
                   items: list[_Item], warnings: list[str]) -> WindowReport:
    used = tuple(UsedRange(it.start, it.end, it.what, it.owner, it.index, it.label)
                 for it in sorted(items, key=lambda x: (x.start, x.end)))
    prev: UsedRange | None = None
    for u in used:
        if prev is not None and u.start <= prev.end:
            warnings.append(f"{owner} {kind.value} window: {u.label} overlaps {prev.label}")
        if prev is None or u.end > prev.end:
            prev = u
    gaps = tuple(free_gaps(start, end, [(u.start, u.end) for u in used]))
    blocks = tuple(aligned_blocks(gaps, MIN_LISTED_BLOCK[kind]))
    return WindowReport(kind, start, end, is64, used, gaps, blocks, owner)


def _children_of(topology: Topology, parent: Address | None, hb: HostBridge | None) -> list[Function]:
    if parent is not None:
        return [topology.functions[a] for a in topology.children(parent) if a in topology.functions]
    assert hb is not None
    out = []
    for a in topology.roots():
        fn = topology.functions[a]
        if a.domain != hb.domain:
            continue
        owner = topology.host_bridge(a.domain, a.bus)
        if owner is hb or (owner is None and a.bus == hb.root_bus):
            out.append(fn)
    return out


def _bus_report(start: int, end: int, own: int | None, kids: list[Function], warnings: list[str], name: str) -> BusReport:
    used: list[BusUse] = []
    if own is not None:
        used.append(BusUse(own, own, "secondary"))
    vf_buses: set[int] = set()
    for fn in kids:
        br = fn.bridge
        if present(br) and br.secondary is not None and br.subordinate is not None and br.secondary > 0:  # type: ignore[union-attr]
            s, e = br.secondary, br.subordinate  # type: ignore[union-attr]
            used.append(BusUse(s, e, "bridge", fn.address))
            if s < start or e > end:
                warnings.append(f"{name}: {fn.address} bus range [{s:02x}-{e:02x}] is outside [{start:02x}-{end:02x}]")
        if fn.is_virtfn and own is not None and fn.address.bus != own:
            vf_buses.add(fn.address.bus)
    for b in sorted(vf_buses):
        used.append(BusUse(b, b, "vf"))
    used.sort(key=lambda u: (u.start, u.end))
    free = tuple(free_gaps(start, end, [(u.start, u.end) for u in used]))
    return BusReport(start, end, tuple(used), free)


def account(topology: Topology, port: Address | str | None = None) -> ResourceReport:
    """Bus numbers and windows of every bridge and host bridge, with what is used and free.

    With ``port``, only that bridge and the bridges above it (each window a
    native hot-add could grow into), up to its host bridge.
    """
    if isinstance(port, str):
        port = Address.parse(port)
    warnings: list[str] = []
    reports: list[BridgeReport] = []
    wanted: set[Address] | None = None
    wanted_hb: set[tuple[int, int]] | None = None
    if port is not None:
        fn = topology.get(port)
        if fn is None:
            raise KeyError(f"no function {port} in this topology")
        if not present(fn.bridge):
            raise ValueError(f"{port} is not a bridge")
        wanted = set(topology.path_to_root(port))
        top = topology.functions[topology.path_to_root(port)[-1]]
        hb0 = topology.host_bridge(top.address.domain, top.address.bus)
        wanted_hb = {(hb0.domain, hb0.root_bus)} if hb0 is not None else set()

    for hb in topology.host_bridges:
        if wanted_hb is not None and (hb.domain, hb.root_bus) not in wanted_hb:
            continue
        reports.append(_host_report(topology, hb, warnings))
    for fn in topology:
        if not present(fn.bridge):
            continue
        if wanted is not None and fn.address not in wanted:
            continue
        reports.append(_bridge_report(topology, fn, warnings))
    if wanted is not None:
        # host bridge first, then from the top down to the port
        order = {a: i for i, a in enumerate(reversed(topology.path_to_root(port)))}  # type: ignore[arg-type]
        reports.sort(key=lambda r: -1 if r.is_host else order.get(r.address, 0))  # type: ignore[arg-type]
    return ResourceReport(tuple(reports), tuple(dict.fromkeys(warnings)), port)  # type: ignore[arg-type]


def _host_report(topology: Topology, hb: HostBridge, warnings: list[str]) -> BridgeReport:
    kids = _children_of(topology, None, hb)
    notes: list[str] = []
    buses = None
    if hb.bus_range is not None:
        buses = _bus_report(hb.bus_range[0], hb.bus_range[1], hb.root_bus, kids, warnings, hb.name)
    else:
        notes.append("bus range unknown (the source does not give the root bus's [bus xx-yy] resource)")
    windows: list[WindowReport] = []
    if hb.windows is None:
        notes.append("host bridge windows unknown: this source does not show them (/proc/iomem and "
                     "/proc/ioports need root); free space above the root ports cannot be computed")
    else:
        items: list[_Item] = []
        unassigned: list[UnassignedRes] = []
        for fn in kids:
            it, un = _function_items(fn)
            items += it
            unassigned += un
        wins = [(w.kind if w.kind is WindowKind.IO else WindowKind.MEM, w.start, w.end) for w in hb.windows]
        placed, orphans = _place(items, wins)
        for i, w in enumerate(hb.windows):
            windows.append(_window_report(hb.name, wins[i][0], w.start, w.end, w.is_64bit, placed[i], warnings))
        for o in orphans:
            if o.what == "window" or o.start >= 0x100000:
                warnings.append(f"{hb.name}: {o.label} [{o.start:#x}-{o.end:#x}] lies in no host bridge window")
        if not any(w.kind is not WindowKind.IO for w in hb.windows):
            notes.append("no memory window listed for this host bridge")
    unassigned_t: tuple[UnassignedRes, ...] = ()
    if hb.windows is not None:
        unassigned_t = tuple(unassigned)
    return BridgeReport(None, hb.name, True, buses, tuple(windows), (), None, unassigned_t, tuple(notes), hb.domain)


def _bridge_report(topology: Topology, fn: Function, warnings: list[str]) -> BridgeReport:
    br = fn.bridge
    assert present(br)
    name = str(fn.address)
    kids = _children_of(topology, fn.address, None)
    notes: list[str] = []
    buses = None
    if br.secondary is not None and br.subordinate is not None:  # type: ignore[union-attr]
        if br.secondary == 0 and br.subordinate == 0:  # type: ignore[union-attr]
            notes.append("bridge has no bus numbers (left unconfigured)")
        else:
            buses = _bus_report(br.secondary, br.subordinate, br.secondary, kids, warnings, name)  # type: ignore[union-attr, arg-type]
    else:
        notes.append("bus numbers unknown")
    items: list[_Item] = []
    unassigned: list[UnassignedRes] = []
    for k in kids:
        it, un = _function_items(k)
        items += it
        unassigned += un
    wins: list[tuple[WindowKind, int, int]] = []
    objs: list[Window] = []
    closed: list[WindowKind] = []
    unknown: list[WindowKind] = []
    for kind in (WindowKind.IO, WindowKind.MEM, WindowKind.PREF):
        w = br.window(kind)  # type: ignore[union-attr]
        if present(w):
            assert isinstance(w, Window)
            wins.append((kind, w.start, w.end))
            objs.append(w)
        elif w is ABSENT:
            closed.append(kind)
        else:
            unknown.append(kind)
    # containment: prefer the pref window for prefetchable things, as the kernel sized them
    placed, orphans = _place(items, [(k if k is WindowKind.IO else WindowKind.MEM, s, e) for k, s, e in wins])
    windows = [_window_report(name, wins[i][0], objs[i].start, objs[i].end, objs[i].is_64bit, placed[i], warnings)
               for i in range(len(wins))]
    for o in orphans:
        warnings.append(f"{name}: {o.label} [{o.start:#x}-{o.end:#x}] lies in none of the bridge's windows")
    if unknown:
        notes.append("windows unknown: " + ", ".join(k.value for k in unknown))
    slot = fn.slot
    hotplug = slot.hotplug if present(slot) else None  # type: ignore[union-attr]
    return BridgeReport(fn.address, name, False, buses, tuple(windows), tuple(closed), hotplug,
                        tuple(unassigned), tuple(notes), fn.address.domain)
