"""What changed between two sources of the same machine, and why.

``diff_topologies(old, new)`` matches the devices of the two sides, then compares what the
kernel showed on each: devices added, removed or moved; identity and ACS changes; drivers
and overrides; IOMMU groups (as set partitions, with the cause taken from both sides'
``pci_device_group`` replays and ACS verdicts); bus numbers, bridge windows, BARs, ROMs and
VF BARs; links; SR-IOV counts; and the source's context (kernel release, command line,
IOMMU, firmware).

**Unknown is not a change.** A fact one side does not give (``None`` in the model) is
recorded in ``Diff.unknowns``, never as a change; ``ABSENT`` (known not to exist: a closed
window, no driver) is a value and compares like one.

**Matching** (each match says how it was made, ``Match.by``):

1. ``serial``: the same Device Serial Number (and function number and vendor:device) on
   both sides, unique on each. Zeroed serials (snapshots leave them out by default) are
   not serials.
2. ``address``: the same address and the same place in the tree, with identities that do
   not disagree (vendor:device, class, subsystem where both sides give them).
3. ``subsystem and position`` (``position`` when a side does not give the subsystem): the
   same vendor:device and subsystem at the same place in the tree, that is the same chain
   of device and function numbers from the root bus, so a device whose bus number changed
   (another card took a lower bus) is found again.
4. ``address`` again, for a device whose place in the tree differs but whose address and
   identity agree.
5. ``vendor, device and class``: what is left, when exactly one device on each side has
   those IDs (a card moved to another slot).

Everything else is added (only in NEW) or removed (only in OLD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

from ..model import ABSENT, Address, Bar, Function, Topology, Window, acs_flags_str, present
from ..model.device import WindowKind
from .acs import verdicts
from .groups import GroupPrediction, acs_override_in_cmdline, predict_groups

__all__ = [
    "SECTIONS", "Change", "Diff", "Match", "Unknown", "diff_topologies", "match_devices", "source_context",
]

#: The sections of a diff, in report order (``--only`` takes these names).
SECTIONS = ("context", "devices", "groups", "resources", "drivers", "links", "sriov")

BY_SERIAL = "serial"
BY_ADDRESS = "address"
BY_POSITION = "subsystem and position"
BY_POSITION_ONLY = "position"
BY_IDS = "vendor, device and class"


# ---- results ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Match:
    """One device found on both sides: its OLD and NEW address and how it was matched."""

    old: Address
    new: Address
    by: str

    @property
    def moved(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True)
class Change:
    """One difference. ``data`` is its JSON object (the section's list item); ``text`` one
    line for people; ``old_addresses`` and ``new_addresses`` the devices it touches on
    each side."""

    section: str
    data: dict[str, Any]
    text: str
    old_addresses: tuple[Address, ...] = ()
    new_addresses: tuple[Address, ...] = ()

    @property
    def addresses(self) -> tuple[Address, ...]:
        return tuple(dict.fromkeys(self.old_addresses + self.new_addresses))


@dataclass(frozen=True, slots=True)
class Unknown:
    """A fact one side gives and the other does not: not compared."""

    section: str
    what: str
    #: The side that does not say: "old" or "new".
    missing_on: str
    bdf: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"section": self.section, "bdf": self.bdf, "what": self.what, "unknown_in": self.missing_on}


@dataclass
class Diff:
    old: Topology
    new: Topology
    matches: list[Match]
    added: list[Address]
    removed: list[Address]
    changes: list[Change]
    unknowns: list[Unknown]
    #: "reported" when both sides report IOMMU groups, else "predicted" (from the hardware).
    group_basis: str
    notes: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(self.changes)

    def section(self, name: str) -> list[Change]:
        return [c for c in self.changes if c.section == name]

    @property
    def new_of(self) -> dict[Address, Address]:
        return {m.old: m.new for m in self.matches}

    @property
    def old_of(self) -> dict[Address, Address]:
        return {m.new: m.old for m in self.matches}

    def touching(self, addrs: Iterable[Address], side: str = "old") -> list[Change]:
        """The changes that touch any of ``addrs`` (addresses of ``side``: "old" or "new"),
        context changes included. A matched device counts on both sides."""
        want = set(addrs)
        other = self.new_of if side == "old" else self.old_of
        want_other = {other[a] for a in want if a in other}
        mine = (lambda c: c.old_addresses) if side == "old" else (lambda c: c.new_addresses)
        theirs = (lambda c: c.new_addresses) if side == "old" else (lambda c: c.old_addresses)
        return [c for c in self.changes
                if c.section == "context" or want.intersection(mine(c)) or want_other.intersection(theirs(c))]

    def statuses(self, side: str = "new") -> dict[Address, str]:
        """Device -> 'added', 'removed', 'moved' or 'changed', for the devices of one side
        ("new" or "old") that any change names (context changes aside)."""
        out: dict[Address, str] = {}
        if side == "new":
            out.update((a, "added") for a in self.added)
        else:
            out.update((a, "removed") for a in self.removed)
        touched_old: set[Address] = set()
        touched_new: set[Address] = set()
        for c in self.changes:
            if c.section != "context":
                touched_old.update(c.old_addresses)
                touched_new.update(c.new_addresses)
        for m in self.matches:
            here = m.new if side == "new" else m.old
            if m.moved:
                out[here] = "moved"
            elif m.old in touched_old or m.new in touched_new:
                out[here] = "changed"
        return out


# ---- context ----------------------------------------------------------------------------------
def source_context(t: Topology) -> dict[str, str | None]:
    """The facts about the machine's software and firmware a source gives (None: not given).

    One place reads them, so a richer per-source context can replace this function alone.
    """
    s = t.source
    fw = dict(s.firmware)
    if s.iommu_present is None:
        iommu = None
    else:
        iommu = "on" if s.iommu_present else "off"
    types = sorted({kind for _, kind in s.group_types})
    return {
        "kernel_release": s.kernel_release,
        "kernel_cmdline": s.kernel_cmdline,
        "iommu": iommu,
        "iommu_domain_type": ", ".join(types) if types else None,
        "bios_vendor": fw.get("bios_vendor"),
        "bios_version": fw.get("bios_version"),
        "bios_date": fw.get("bios_date"),
    }


_CONTEXT_NAMES = {
    "kernel_release": "kernel release", "kernel_cmdline": "kernel command line", "iommu": "IOMMU",
    "iommu_domain_type": "IOMMU default domain type", "bios_vendor": "BIOS vendor", "bios_version": "BIOS version",
    "bios_date": "BIOS date",
}


# ---- matching -----------------------------------------------------------------------------------
def _serial(fn: Function) -> str | None:
    dsn = fn.caps.dsn
    if not present(dsn):
        return None
    digits = str(dsn).replace("-", "")
    return str(dsn) if digits.strip("0") else None  # zeroed by a snapshot: no serial


def _subsystem(fn: Function) -> str | None:
    if fn.subsystem_vendor_id is None or fn.subsystem_device_id is None:
        return None
    return f"{fn.subsystem_vendor_id:04x}:{fn.subsystem_device_id:04x}"


def _position(t: Topology, fn: Function) -> tuple:
    """Domain, root bus and the chain of device.function numbers down to ``fn``."""
    chain = []
    seen = set()
    cur: Function | None = fn
    top = fn
    while cur is not None and cur.address not in seen:
        seen.add(cur.address)
        chain.append(cur.address.devfn)
        top = cur
        cur = t.functions.get(cur.parent) if cur.parent is not None else None
    return (top.address.domain, top.address.bus, tuple(reversed(chain)))


def _agree(a: Any, b: Any) -> bool:
    return a is None or b is None or a == b


def _compatible(o: Function, n: Function) -> bool:
    """Identities that do not disagree where both sides give them."""
    so, sn = _serial(o), _serial(n)
    return (_agree(o.vendor_device, n.vendor_device) and _agree(o.class_code, n.class_code)
            and _agree(_subsystem(o), _subsystem(n)) and _agree(so, sn))


def match_devices(old: Topology, new: Topology) -> list[Match]:
    """Pair the devices of ``old`` and ``new`` (see the module doc for the order of the rules)."""
    left = dict(old.functions)
    right = dict(new.functions)
    out: list[Match] = []

    def take(o: Address, n: Address, by: str) -> None:
        out.append(Match(o, n, by))
        del left[o]
        del right[n]

    def unique(items: Iterable[tuple[Any, Address]]) -> dict[Any, Address]:
        seen: dict[Any, Address | None] = {}
        for key, addr in items:
            seen[key] = None if key in seen else addr
        return {k: v for k, v in seen.items() if v is not None}

    # 1. serial numbers
    ko = unique(((s, a.function, f.vendor_device), a) for a, f in left.items() if (s := _serial(f)))
    kn = unique(((s, a.function, f.vendor_device), a) for a, f in right.items() if (s := _serial(f)))
    for key in ko.keys() & kn.keys():
        o, n = ko[key], kn[key]
        take(o, n, BY_ADDRESS if o == n else BY_SERIAL)
    # 2. same address and place in the tree
    for a in [a for a in old.functions if a in left and a in right]:  # address order
        o, n = left[a], right[a]
        if _compatible(o, n) and _position(old, o) == _position(new, n):
            take(a, a, BY_ADDRESS)
    # 3. the same IDs and subsystem at the same place in the tree
    def pos_key(t: Topology, f: Function) -> tuple:
        return (_position(t, f), f.vendor_device, f.class_code)

    po = unique((pos_key(old, f), a) for a, f in left.items() if f.vendor_device)
    pn = unique((pos_key(new, f), a) for a, f in right.items() if f.vendor_device)
    for key in sorted(po.keys() & pn.keys(), key=lambda k: _akey(po[k])):
        o, n = po[key], pn[key]
        so, sn = _subsystem(left[o]), _subsystem(right[n])
        if not _agree(so, sn) or not _agree(_serial(left[o]), _serial(right[n])):
            continue
        take(o, n, BY_POSITION if so is not None and sn is not None else BY_POSITION_ONLY)
    # 4. the same address, another place in the tree
    for a in [a for a in old.functions if a in left and a in right]:
        if _compatible(left[a], right[a]) and (left[a].vendor_device or right[a].vendor_device):
            take(a, a, BY_ADDRESS)
    # 5. vendor, device and class, unique on both sides
    def id_key(f: Function) -> tuple:
        return (f.vendor_device, f.class_code, _subsystem(f), bool(f.is_virtfn))

    io = unique((id_key(f), a) for a, f in left.items() if f.vendor_device and f.class_code is not None)
    inn = unique((id_key(f), a) for a, f in right.items() if f.vendor_device and f.class_code is not None)
    for key in sorted(io.keys() & inn.keys(), key=lambda k: _akey(io[k])):
        if _agree(_serial(left[io[key]]), _serial(right[inn[key]])):
            take(io[key], inn[key], BY_IDS)
    out.sort(key=lambda m: _akey(m.new))
    return out


def _akey(a: Address) -> tuple[int, int, int, int]:
    return (a.domain, a.bus, a.device, a.function)


# ---- helpers ------------------------------------------------------------------------------------
def _rng(start: int | None, end: int | None) -> list[int] | None:
    return None if start is None or end is None else [start, end]


def _hexr(r: list[int] | None) -> str:
    return "none" if r is None else f"[{r[0]:#x}-{r[1]:#x}]"


def _size(r: list[int] | None) -> int:
    return 0 if r is None else r[1] - r[0] + 1


_UNKNOWN = object()


def _window(br: Any, kind: WindowKind) -> Any:
    """A bridge window as [start, end], None for a closed one, _UNKNOWN when not given."""
    if br is None:
        return _UNKNOWN
    if br is ABSENT:
        return None
    w = br.window(kind)
    if w is None:
        return _UNKNOWN
    if w is ABSENT:
        return None
    assert isinstance(w, Window)
    return [w.start, w.end]


def _bar_state(b: Bar | None) -> Any:
    """[start, end], "unassigned", None (no such BAR) or _UNKNOWN."""
    if b is None:
        return None
    if b.unassigned:
        return "unassigned"
    if b.start is None:
        return _UNKNOWN
    size = b.total_size if b.total_size is not None else b.size
    if size is None:
        return _UNKNOWN
    return [b.start, b.start + size - 1]


def _bars(fn: Function, vf: bool = False) -> dict[int, Bar] | None:
    bars = fn.vf_bars if vf else fn.bars
    if bars is None:
        return None
    return {b.index: b for b in bars}


def _resource_items(fn: Function) -> dict[str, Any]:
    """Every resource fact of one function: what -> state (see _window, _bar_state)."""
    out: dict[str, Any] = {}
    br = fn.bridge
    if present(br):
        rng = br.bus_range  # type: ignore[union-attr]
        out["bus"] = list(rng) if rng is not None else _UNKNOWN
        for kind in WindowKind:
            out[kind.value] = _window(br, kind)
    elif br is None and fn.is_bridge:
        out["bus"] = _UNKNOWN
    bars = _bars(fn)
    if bars is not None:
        for i, b in bars.items():
            out[f"bar {i}"] = _bar_state(b)
    if present(fn.rom):
        out["rom"] = _bar_state(fn.rom)  # type: ignore[arg-type]
    vfb = _bars(fn, vf=True)
    if vfb is not None:
        for i, b in vfb.items():
            out[f"vf-bar {i}"] = _bar_state(b)
    return out


def _describe_range_change(what: str, old: Any, new: Any) -> str:
    if what == "bus":
        f = lambda r: "none" if r is None else f"{r[0]:02x}-{r[1]:02x}"  # noqa: E731
        return f"bus range {f(old)} -> {f(new)}"
    o = old if isinstance(old, list) else None
    n = new if isinstance(new, list) else None
    label = {"io": "I/O window", "mem": "memory window", "pref": "prefetchable window"}.get(what, what.upper() if what == "rom" else what.replace("bar", "BAR").replace("vf-BAR", "VF BAR"))
    if old == "unassigned" or new == "unassigned":
        if new == "unassigned":
            return f"{label} {_hexr(o)} -> unassigned" if o else f"{label} unassigned"
        return f"{label} unassigned -> {_hexr(n)}"
    if o is None:
        return f"{label} new {_hexr(n)}"
    if n is None:
        return f"{label} {_hexr(o)} gone"
    if _size(o) != _size(n):
        verb = "grew" if _size(n) > _size(o) else "shrank"
        return f"{label} {verb} {_hexr(o)} -> {_hexr(n)} ({_size(o):#x} -> {_size(n):#x} bytes)"
    return f"{label} moved {_hexr(o)} -> {_hexr(n)}"


def _kind_of_change(old: Any, new: Any) -> str:
    if new == "unassigned":
        return "unassigned"
    if old == "unassigned":
        return "assigned"
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if isinstance(old, list) and isinstance(new, list):
        if _size(old) != _size(new):
            return "grown" if _size(new) > _size(old) else "shrunk"
        return "moved"
    return "changed"


def _maybe_text(v: Any) -> str | None:
    """Maybe[str] for JSON: the value, None for ABSENT (known none)."""
    return None if v is ABSENT else v


def _link_text(speed: str | None, width: int | None) -> str:
    return f"{speed or '?'} x{width if width is not None else '?'}"


# ---- the comparison -------------------------------------------------------------------------------
class _Differ:
    def __init__(self, old: Topology, new: Topology) -> None:
        self.old = old
        self.new = new
        self.matches = match_devices(old, new)
        self.new_of = {m.old: m.new for m in self.matches}
        self.old_of = {m.new: m.old for m in self.matches}
        self.added = [a for a in new.functions if a not in self.old_of]  # address order
        self.removed = [a for a in old.functions if a not in self.new_of]
        self.changes: list[Change] = []
        self.unknowns: list[Unknown] = []
        self.notes: list[str] = []
        self.basis = "reported"
        self.ctx_changed: list[str] = []

    def add(self, section: str, data: dict[str, Any], text: str, old: Iterable[Address | None] = (),
            new: Iterable[Address | None] = ()) -> None:
        self.changes.append(Change(section, data, text, tuple(dict.fromkeys(a for a in old if a is not None)),
                                   tuple(dict.fromkeys(a for a in new if a is not None))))

    def unknown(self, section: str, what: str, old_v: Any, bdf: str | None = None) -> None:
        self.unknowns.append(Unknown(section, what, "old" if old_v is None or old_v is _UNKNOWN else "new", bdf))

    # ---- context
    def context(self) -> None:
        co, cn = source_context(self.old), source_context(self.new)
        for key in co:
            a, b = co[key], cn[key]
            if a is None and b is None:
                continue
            if a is None or b is None:
                self.unknown("context", key, a)
                continue
            if a != b:
                self.ctx_changed.append(key)
                text = f"{_CONTEXT_NAMES[key]}: {a} -> {b}"
                if key == "kernel_cmdline":
                    ta, tb = a.split(), b.split()
                    gone = [w for w in ta if w not in tb]
                    new = [w for w in tb if w not in ta]
                    text = f"{_CONTEXT_NAMES[key]}: " + "; ".join(
                        x for x in (f"removed {' '.join(gone)}" if gone else "", f"added {' '.join(new)}" if new else "") if x)
                self.add("context", {"what": key, "old": a, "new": b}, text)

    # ---- devices
    def devices(self) -> None:
        o, n = self.old.functions, self.new.functions
        for a in self.added:
            self.add("devices", {"change": "added", "bdf": str(a)}, f"added {self._describe(self.new, a)}", new=[a])
        for a in self.removed:
            self.add("devices", {"change": "removed", "bdf": str(a)}, f"removed {self._describe(self.old, a)}", old=[a])
        for m in self.matches:
            if m.moved:
                self.add("devices", {"change": "moved", "from": str(m.old), "to": str(m.new), "by": m.by},
                         f"moved {m.old} -> {m.new} ({n[m.new].vendor_device or 'unknown IDs'}; matched by {m.by})",
                         [m.old], [m.new])
            self._identity(o[m.old], n[m.new], m)

    def _describe(self, t: Topology, a: Address) -> str:
        fn = t.functions[a]
        parts = [str(a), f"[{fn.vendor_device}]" if fn.vendor_device else "(unknown IDs)"]
        if fn.class_hex:
            parts.append(f"class {fn.class_hex}")
        if fn.is_virtfn and fn.physfn is not None:
            parts.append(f"(VF of {fn.physfn})")
        elif fn.parent is not None:
            p = t.functions.get(fn.parent)
            slot = p.slot if p is not None and present(p.slot) else None
            where = f"below {fn.parent}"
            if slot is not None and (slot.physical_slot or slot.number is not None):  # type: ignore[union-attr]
                where += f" (slot {slot.physical_slot or slot.number})"  # type: ignore[union-attr]
            parts.append(where)
        else:
            parts.append("on the root bus")
        return " ".join(parts)

    def _identity(self, fo: Function, fn: Function, m: Match) -> None:
        facts = (
            ("vendor_device", fo.vendor_device, fn.vendor_device),
            ("subsystem", _subsystem(fo), _subsystem(fn)),
            ("class", fo.class_hex, fn.class_hex),
            ("revision", None if fo.revision is None else f"{fo.revision:02x}",
             None if fn.revision is None else f"{fn.revision:02x}"),
            ("pcie_type", fo.pcie_type.value if fo.pcie_type else None, fn.pcie_type.value if fn.pcie_type else None),
        )
        for what, a, b in facts:
            self._fact("devices", what, a, b, m)
        ao, an = fo.caps.acs, fn.caps.acs
        if ao is None or an is None:
            if (ao is None) != (an is None):
                self.unknown("devices", "acs", ao, str(m.new))
        else:
            fa = "none" if ao is ABSENT else f"cap {acs_flags_str(ao.cap)} ctrl {acs_flags_str(ao.ctrl)}"  # type: ignore[union-attr]
            fb = "none" if an is ABSENT else f"cap {acs_flags_str(an.cap)} ctrl {acs_flags_str(an.ctrl)}"  # type: ignore[union-attr]
            if fa != fb:
                text = f"{m.new}: ACS {fa} -> {fb}"
                if ao is not ABSENT and an is not ABSENT:
                    lost = ao.ctrl & ~an.ctrl  # type: ignore[union-attr]
                    got = an.ctrl & ~ao.ctrl  # type: ignore[union-attr]
                    bits = []
                    if lost:
                        bits.append(f"its ACS control now lacks {acs_flags_str(lost)}")
                    if got:
                        bits.append(f"now also enables {acs_flags_str(got)}")
                    if bits:
                        text += f" ({'; '.join(bits)})"
                self.add("devices", {"change": "changed", "bdf": str(m.new), "what": "acs", "old": fa, "new": fb},
                         text, [m.old], [m.new])

    def _fact(self, section: str, what: str, a: Any, b: Any, m: Match, label: str | None = None) -> None:
        if a is None or b is None:
            if (a is None) != (b is None):
                self.unknown(section, what, a, str(m.new))
            return
        if a != b:
            data = {"bdf": str(m.new), "what": what, "old": _maybe_text(a), "new": _maybe_text(b)}
            if section == "devices":
                data = {"change": "changed", **data}
            sa = "none" if a is ABSENT else a
            sb = "none" if b is ABSENT else b
            self.add(section, data, f"{m.new}: {label or what} {sa} -> {sb}", [m.old], [m.new])

    # ---- drivers
    def drivers(self) -> None:
        o, n = self.old.functions, self.new.functions
        for m in self.matches:
            fo, fn = o[m.old], n[m.new]
            self._fact("drivers", "driver", fo.driver, fn.driver, m)
            self._fact("drivers", "driver_override", fo.driver_override, fn.driver_override, m, "driver_override")

    # ---- resources
    def resources(self) -> None:
        o, n = self.old.functions, self.new.functions
        for m in self.matches:
            ro, rn = _resource_items(o[m.old]), _resource_items(n[m.new])
            for what in sorted(ro.keys() | rn.keys(), key=_res_order):
                a = ro.get(what)
                b = rn.get(what)
                if (a is None and b == "unassigned") or (a == "unassigned" and b is None):
                    # A source that lists only assigned BARs (lspci text, the kernel's summaries)
                    # cannot tell an unassigned BAR from none: unknown, not a change.
                    self.unknown("resources", what, a if a == "unassigned" else None, str(m.new))
                    continue
                if a is _UNKNOWN or b is _UNKNOWN:
                    if not (a is _UNKNOWN and b is _UNKNOWN) and not (a is None and b is _UNKNOWN) and not (a is _UNKNOWN and b is None):
                        self.unknown("resources", what, a, str(m.new))
                    continue
                if a == b:
                    continue
                self._resource(m.new, what, a, b, m.old, m.new)
        for side, addrs, t in (("added", self.added, self.new), ("removed", self.removed, self.old)):
            for a in addrs:
                for what, state in sorted(_resource_items(t.functions[a]).items(), key=lambda kv: _res_order(kv[0])):
                    if state is _UNKNOWN or state is None:
                        continue
                    if side == "added":
                        self._resource(a, what, None, state, None, a, device=side)
                    else:
                        self._resource(a, what, state, None, a, None, device=side)
        self._host_bridges()

    def _resource(self, bdf: Address, what: str, a: Any, b: Any, old: Address | None, new: Address | None,
                  device: str | None = None) -> None:
        data: dict[str, Any] = {
            "bdf": str(bdf), "what": what,
            "old": a if isinstance(a, list) else None, "new": b if isinstance(b, list) else None,
            "change": _kind_of_change(a, b),
        }
        if device:
            data["device"] = device
        text = f"{bdf}: {_describe_range_change(what, a, b)}" + (f" ({device} device)" if device else "")
        self.add("resources", data, text, [old], [new])

    def _host_bridges(self) -> None:
        hn = {(h.domain, h.root_bus): h for h in self.new.host_bridges}
        for ho in self.old.host_bridges:
            h = hn.get((ho.domain, ho.root_bus))
            if h is None:
                continue
            if ho.bus_range is not None and h.bus_range is not None and ho.bus_range != h.bus_range:
                self.add("resources", {"bdf": None, "host_bridge": ho.name, "what": "bus", "old": list(ho.bus_range),
                                       "new": list(h.bus_range), "change": "changed"},
                         f"{ho.name}: root bus range {ho.bus_range[0]:02x}-{ho.bus_range[1]:02x} -> "
                         f"{h.bus_range[0]:02x}-{h.bus_range[1]:02x}")
            if ho.windows is None or h.windows is None:
                if (ho.windows is None) != (h.windows is None):
                    self.unknown("resources", f"{ho.name} windows", ho.windows)
                continue
            wo = {(w.kind.value, w.start, w.end) for w in ho.windows}
            wn = {(w.kind.value, w.start, w.end) for w in h.windows}
            for k, s, e in sorted(wo - wn):
                self.add("resources", {"bdf": None, "host_bridge": ho.name, "what": k, "old": [s, e], "new": None,
                                       "change": "removed"}, f"{ho.name}: host bridge {k} window {_hexr([s, e])} gone")
            for k, s, e in sorted(wn - wo):
                self.add("resources", {"bdf": None, "host_bridge": ho.name, "what": k, "old": None, "new": [s, e],
                                       "change": "added"}, f"{ho.name}: host bridge {k} window {_hexr([s, e])} new")

    # ---- links
    def links(self) -> None:
        o, n = self.old.functions, self.new.functions
        for m in self.matches:
            lo, ln = o[m.old].link, n[m.new].link
            if lo is None or ln is None:
                if (lo is None) != (ln is None):
                    self.unknown("links", "link", lo, str(m.new))
                continue
            co, cn = (lo.current_speed, lo.current_width), (ln.current_speed, ln.current_width)
            mo, mn = (lo.max_speed, lo.max_width), (ln.max_speed, ln.max_width)
            if None in co or None in cn:
                if co != cn:
                    self.unknown("links", "link", None if None in co else co, str(m.new))
                continue
            if co == cn and (None in mo or None in mn or mo == mn):
                continue
            below = None if None in mn else (cn != mn)
            data = {"bdf": str(m.new), "old": _link_text(*co), "new": _link_text(*cn),
                    "max_old": None if None in mo else _link_text(*mo), "max_new": None if None in mn else _link_text(*mn),
                    "below_capability": below}
            text = f"{m.new}: link {_link_text(*co)} -> {_link_text(*cn)}"
            if below:
                text += f" (trained below what it can: {_link_text(*mn)})"
            if mo != mn and None not in mo and None not in mn:
                text += f"; capability {_link_text(*mo)} -> {_link_text(*mn)}"
            self.add("links", data, text, [m.old], [m.new])

    # ---- SR-IOV
    def sriov(self) -> None:
        o, n = self.old.functions, self.new.functions
        for m in self.matches:
            so, sn = o[m.old].caps.sriov, n[m.new].caps.sriov
            if so is None or sn is None or so is ABSENT or sn is ABSENT:
                if (so is None) != (sn is None) and (present(so) or present(sn)):
                    self.unknown("sriov", "sriov", so, str(m.new))
                continue
            for what in ("num_vfs", "total_vfs", "driver_total_vfs"):
                a, b = getattr(so, what), getattr(sn, what)
                label = {"num_vfs": "VFs enabled", "total_vfs": "TotalVFs", "driver_total_vfs": "sriov_totalvfs"}[what]
                self._fact("sriov", what, a, b, m, label)
        # VFs that came or went are devices; name them with their PF in the text.

    # ---- IOMMU groups
    @cached_property
    def pred_old(self) -> GroupPrediction:
        return predict_groups(self.old)

    @cached_property
    def pred_new(self) -> GroupPrediction:
        return predict_groups(self.new)

    def groups(self) -> None:
        old, new = self.old, self.new
        ro, rn = old.reported_groups, new.reported_groups
        if ro and rn:
            self.basis = "reported"
            go, gn = dict(ro), dict(rn)
        else:
            self.basis = "predicted"
            go, gn = dict(self.pred_old.groups), dict(self.pred_new.groups)
            if ro or rn:
                side = "old" if not ro else "new"
                self.unknowns.append(Unknown("groups", "reported IOMMU groups", side))
                self.notes.append(f"the {side} source reports no IOMMU groups: groups are compared as predicted "
                                  "from the hardware on both sides")
        # Devices: matched ones by their NEW address, the others tagged with their side.
        def key_old(a: Address) -> tuple[str, Address]:
            return ("m", self.new_of[a]) if a in self.new_of else ("o", a)

        def key_new(a: Address) -> tuple[str, Address]:
            return ("m", a) if a in self.old_of else ("n", a)

        # A matched device grouped on one side and unknown on the other is left out of both.
        if self.basis == "reported":
            skip: set[tuple[str, Address]] = set()
            for m in self.matches:
                go_ = old.functions[m.old].iommu_group
                gn_ = new.functions[m.new].iommu_group
                if (go_ is None) != (gn_ is None):
                    skip.add(("m", m.new))
                    self.unknown("groups", "iommu_group", go_, str(m.new))
        else:
            skip = set()
        so = {lab: frozenset(k for a in mem if (k := key_old(a)) not in skip) for lab, mem in go.items()}
        sn = {lab: frozenset(k for a in mem if (k := key_new(a)) not in skip) for lab, mem in gn.items()}
        so = {k: v for k, v in so.items() if v}
        sn = {k: v for k, v in sn.items() if v}
        of_o = {k: lab for lab, v in so.items() for k in v}
        of_n = {k: lab for lab, v in sn.items() for k in v}
        # A matched device is listed when the matched devices it shares its group with changed
        # (devices added or removed alongside it are listed themselves, not it).
        listed: dict[tuple[str | None, str | None], list[tuple[str, Address]]] = {}
        renumbered: dict[str, str] = {}
        for k in sorted(set(of_o) | set(of_n), key=lambda k: (_akey(k[1]), k[0])):
            lo, ln = of_o.get(k), of_n.get(k)
            if k[0] == "m" and lo is not None and ln is not None:
                mo = frozenset(x for x in so[lo] if x[0] == "m")
                mn = frozenset(x for x in sn[ln] if x[0] == "m")
                if mo == mn:
                    if lo != ln and self.basis == "reported":
                        renumbered[lo] = ln
                    continue
            listed.setdefault((lo, ln), []).append(k)
        for (lo, ln), ks in listed.items():
            self._group_entry(ks, lo, ln, so, sn)
        for lo, ln in renumbered.items():
            addrs = sorted(k[1] for k in sn[ln])
            self.add("groups", {"devices": [str(a) for a in addrs], "old": lo, "new": ln, "change": "renumbered",
                                "why": "the same devices; the kernel numbers groups in the order it creates them",
                                "old_group": sorted(str(self._old_addr(k)) for k in so[lo]),
                                "new_group": [str(a) for a in addrs]},
                     f"group {lo} is now group {ln}: the same devices ({_names(addrs)}), renumbered",
                     [self.old_of.get(a) for a in addrs], addrs)

    def _group_entry(self, ks, lo, ln, so, sn) -> None:
        new_addrs = [k[1] for k in ks if k[0] != "o"]
        shown = [k[1] for k in ks]
        old_addrs = [self.old_of[k[1]] if k[0] == "m" else k[1] for k in ks if k[0] != "n"]
        if lo is None:
            change = "joined" if ln is not None and len(sn[ln]) > len(ks) else "new"
        elif ln is None:
            change = "left"
        else:
            change = "regrouped"
        why = self._why(ks, lo, ln, so, sn)
        data = {"devices": [str(a) for a in shown], "old": lo, "new": ln, "change": change, "why": why,
                "old_group": sorted(str(self._old_addr(k)) for k in so[lo]) if lo else None,
                "new_group": sorted(str(k[1]) for k in sn[ln]) if ln else None}
        others_o = _names(sorted(self._old_addr(k) for k in so[lo] if k not in ks)) if lo else ""
        others_n = _names(sorted(k[1] for k in sn[ln] if k not in ks)) if ln else ""
        if change == "new":
            what = f"in a new group {ln}" + (f" with {others_n}" if others_n else ", alone")
        elif change == "joined":
            what = f"joined group {ln}, with {others_n}"
        elif change == "left":
            what = f"left group {lo}" + (f" (with {others_o})" if others_o else "") + " and has no group now"
        else:
            what = (f"group {lo}" + (f" (with {others_o})" if others_o else " (alone)") + f" -> group {ln}"
                    + (f" (with {others_n})" if others_n else " (alone)"))
        tags = {"n": " (added)", "o": " (removed)"}
        text = f"{_names(shown)}{tags.get(ks[0][0], '') if len({k[0] for k in ks}) == 1 else ''}: {what}\n    why: {why}"
        self.add("groups", data, text, old_addrs, new_addrs)

    def _old_addr(self, k: tuple[str, Address]) -> Address:
        return self.old_of[k[1]] if k[0] == "m" else k[1]

    def _why(self, ks, lo, ln, so, sn) -> str:
        """Causes, from both sides' facts: devices added or removed, ACS verdicts that
        changed on the path to the root or in the slot, parents that changed; then each
        side's own explanation of the group."""
        old, new = self.old, self.new
        causes: list[str] = []
        # Every device of the old and new groups involved: where the cause may be.
        everyone = set(ks)
        if lo:
            everyone |= so[lo]
        if ln:
            everyone |= sn[ln]
        for k in sorted(everyone, key=lambda k: k[1]):
            if k[0] == "n" and k in ks:
                causes.append(f"{k[1]} was added ({self._describe(new, k[1]).split(' ', 1)[1]})")
            elif k[0] == "o" and k in ks:
                causes.append(f"{k[1]} was removed")
        # Bridges and slot peers whose isolation decides: on both sides, matched ones only.
        cand_new: set[Address] = set()
        for k in everyone:
            if k[0] == "o":
                a = self.new_of.get(k[1])
            else:
                a = k[1]
            if a is None or a not in new.functions:
                continue
            for p in new.path_to_root(a):
                cand_new.add(p)
                cand_new.update(new.slot_siblings(p))
        for k in everyone:
            a_old = self._old_addr(k) if k[0] != "n" else None
            if a_old is None or a_old not in old.functions:
                continue
            for p in old.path_to_root(a_old):
                if p in self.new_of:
                    cand_new.add(self.new_of[p])
                for s in old.slot_siblings(p):
                    if s in self.new_of:
                        cand_new.add(self.new_of[s])
        pairs = sorted((self.old_of[a], a) for a in cand_new if a in self.old_of)
        vo = verdicts(old, [p[0] for p in pairs])
        vn = verdicts(new, [p[1] for p in pairs])
        for a_o, a_n in pairs:
            x, y = vo[a_o], vn[a_n]
            if x.isolated == y.isolated and x.quirk == y.quirk:
                continue
            if x.isolated and not y.isolated:
                head = f"{a_n} lost ACS isolation"
            elif y.isolated and not x.isolated:
                head = f"{a_n} now isolates with ACS"
            else:
                head = f"{a_n}'s ACS verdict changed"
            detail = self._acs_detail(old.functions[a_o], new.functions[a_n])
            quirk = ""
            if x.quirk != y.quirk:
                quirk = (f"; the kernel now applies the ACS quirk {y.quirk}" if y.quirk else
                         f"; the ACS quirk {x.quirk} no longer applies")
            causes.append(f"{head}: {detail or f'it {y.reason} (was: it {x.reason})'}{quirk}")
        # Moves: a device below another bridge now.
        for k in ks:
            if k[0] != "m":
                continue
            fo, fn = old.functions[self.old_of[k[1]]], new.functions[k[1]]
            po = self.new_of.get(fo.parent) if fo.parent is not None else None
            if po != fn.parent and not (fo.parent is None and fn.parent is None):
                causes.append(f"{k[1]} is now below {fn.parent or 'the root bus'} (was below {fo.parent or 'the root bus'})")
        ovr_o = acs_override_in_cmdline(old.source.kernel_cmdline)
        ovr_n = acs_override_in_cmdline(new.source.kernel_cmdline)
        if ovr_o != ovr_n and old.source.kernel_cmdline is not None and new.source.kernel_cmdline is not None:
            causes.append(f"the kernel now runs with pcie_acs_override={ovr_n} (an out-of-tree patch)" if ovr_n else
                          f"the kernel no longer runs with pcie_acs_override={ovr_o}")
        if not causes:
            pred_same = self._predicted_same(ks)
            if pred_same and self.basis == "reported":
                ctx = [c for c in self.ctx_changed if c in ("kernel_release", "kernel_cmdline", "iommu", "iommu_domain_type")]
                causes.append("the hardware facts both sources show put these devices in the same groups; the kernel grouped "
                              "them differently" + (f" after a change of {', '.join(_CONTEXT_NAMES[c] for c in ctx)}" if ctx else ""))
            else:
                causes.append("no single changed fact found")
        # Each side's own explanation (from pci_device_group's replay).
        eo = self._explain(self.pred_old, [self._old_addr(k) for k in ks if k[0] != "n"])
        en = self._explain(self.pred_new, [k[1] for k in ks if k[0] != "o"])
        tail = []
        if eo:
            tail.append(f"before: {eo}")
        if en:
            tail.append(f"now: {en}")
        return "; ".join(causes) + (". " + ". ".join(tail) if tail else "")

    def _acs_detail(self, fo: Function, fn: Function) -> str:
        ao, an = fo.caps.acs, fn.caps.acs
        if present(ao) and present(an):
            lost = ao.ctrl & ~an.ctrl  # type: ignore[union-attr]
            got = an.ctrl & ~ao.ctrl  # type: ignore[union-attr]
            parts = []
            if lost:
                parts.append(f"its ACS control now lacks {acs_flags_str(lost)}")
            if got:
                parts.append(f"its ACS control now enables {acs_flags_str(got)}")
            return "; ".join(parts)
        if present(ao) and an is ABSENT:
            return "it no longer shows an ACS capability"
        if ao is ABSENT and present(an):
            return f"it now has an ACS capability (control {acs_flags_str(an.ctrl)})"  # type: ignore[union-attr]
        return ""

    def _predicted_same(self, ks) -> bool:
        po, pn = self.pred_old, self.pred_new
        for k in ks:
            if k[0] != "m":
                return False
            a_o, a_n = self.old_of[k[1]], k[1]
            lo, ln = po.group_of.get(a_o), pn.group_of.get(a_n)
            if lo is None or ln is None:
                return False
            mo = {self.new_of.get(x) for x in po.groups[lo]}
            if mo != set(pn.groups[ln]):
                return False
        return True

    @staticmethod
    def _explain(pred: GroupPrediction, addrs: list[Address]) -> str:
        """The lines of the group's explanation that name these devices (else its first)."""
        names = [str(a) for a in addrs]
        out: list[str] = []
        for lab in dict.fromkeys(pred.group_of.get(a) for a in addrs):
            if lab is None:
                continue
            lines = pred.explanations.get(lab) or []
            hit = [ln for ln in lines if any(n in ln for n in names)] or lines[:1]
            out.extend(x for x in hit if x not in out)
        return "; ".join(out[:3])


def _res_order(what: str) -> tuple[int, int]:
    order = {"bus": 0, "io": 1, "mem": 2, "pref": 3, "rom": 5}
    if what.startswith("bar "):
        return (4, int(what[4:]))
    if what.startswith("vf-bar "):
        return (6, int(what[7:]))
    return (order.get(what, 9), 0)


def _names(addrs: Iterable[Address], limit: int = 6) -> str:
    items = [str(a) for a in addrs]
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    return ", ".join(items)


def diff_topologies(old: Topology, new: Topology) -> Diff:
    """Everything that differs between ``old`` and ``new`` (see the module doc)."""
    d = _Differ(old, new)
    d.context()
    d.devices()
    d.groups()
    d.resources()
    d.drivers()
    d.links()
    d.sriov()
    order = {s: i for i, s in enumerate(SECTIONS)}
    changes = sorted(d.changes, key=lambda c: order[c.section])  # stable: each section keeps its own order
    return Diff(old, new, d.matches, d.added, d.removed, changes, d.unknowns, d.basis, d.notes)
