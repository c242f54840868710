"""Render a topology: JSON (documented in docs/json.md) and plain text for the CLI."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from enum import Enum
from functools import lru_cache
from typing import Any

from ..model import ABSENT, Address, Bar, BarKind, Function, PcieType, HostBridge, Topology, Window, acs_flags_str, present
from ..model import names
from ..model.units import human_size
from ..model.display import DisplayTree, NodeKey, RootBusKey
from . import mdev as _mdev
from . import trust as _trust
from .envelope import envelope, format_id

JSON_FORMAT = format_id("tree")


@lru_cache(maxsize=65536)  # IDs repeat across a machine's functions: each text is made once
def _hex(v: int | None, width: int) -> str | None:
    return None if v is None else f"{v:0{width}x}"


def _maybe(v: Any) -> Any:
    """Unknown -> None, absent -> False, present -> JSON of it."""
    if v is None:
        return None
    if v is ABSENT:
        return False
    return _plain(v)


#: Exact types returned as they are, and field names per dataclass (fields() is slow).
_SCALARS = frozenset({int, str, bool, float, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(v: Any) -> Any:
    if v is ABSENT:
        return False
    if type(v) in _SCALARS:
        return v
    names = _FIELD_NAMES.get(type(v))
    if names is not None:
        return {n: _plain(getattr(v, n)) for n in names}
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, Address):
        return str(v)
    if is_dataclass(v) and not isinstance(v, type):
        names = _FIELD_NAMES.setdefault(type(v), tuple(f.name for f in fields(v)))
        return {n: _plain(getattr(v, n)) for n in names}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def _window(w: Any) -> list[int] | None:
    return [w.start, w.end] if isinstance(w, Window) else None


#: Each enum member's value (a dict lookup is cheaper than the ``value`` property).
_VALUE: dict[Any, str] = {m: m.value for e in (BarKind, PcieType) for m in e}


def _value(member: Any) -> str:
    return _VALUE.get(member) or member.value


def bar_json(b: Bar) -> dict[str, Any]:
    d: dict[str, Any] = {"index": b.index, "start": b.start, "size": b.size, "kind": _value(b.kind)}
    if b.total_size is not None:
        d["total_size"] = b.total_size
    if b.disabled:
        d["disabled"] = True
    return d


def _caps_json(caps: Any) -> dict[str, Any]:
    acs = None
    if caps.acs is ABSENT:
        acs = False
    elif caps.acs is not None:
        acs = {"cap": acs_flags_str(caps.acs.cap), "ctrl": acs_flags_str(caps.acs.ctrl)}
    return {
        "acs": acs,
        "ats": _maybe(caps.ats),
        "pri": _maybe(caps.pri),
        "pasid": _maybe(caps.pasid),
        "sriov": _maybe(caps.sriov),
        "ari": _maybe(caps.ari),
        "aer": _maybe(caps.aer),
        "rcec": None if caps.rcec is None else (False if caps.rcec is ABSENT else {**_plain(caps.rcec), "devices": list(caps.rcec.devices)}),
        "dsn": _maybe(caps.dsn),
        "eetlp_prefix": caps.eetlp_prefix,
        "ari_forwarding": caps.ari_forwarding,
    }


def _names_json(fn: Function) -> dict[str, Any]:
    return {
        "vendor": names.vendor_name(fn),
        "device": names.device_name(fn),
        "subsystem": names.subsystem_name(fn),
        "class": names.class_name(fn),
    }


def _same_part(parts: dict | None, obj: Any, build: Any) -> Any:
    """``build(obj)``, or what it gave before for this very object in one document.

    A big machine's functions share most values (the loaders keep equal capabilities,
    links and slots once), so each is turned into JSON once per document; the parts are
    read, never changed."""
    if parts is None:
        return build(obj)
    got = parts.get(id(obj))
    if got is not None and got[0] is obj:
        return got[1]
    value = build(obj)
    parts[id(obj)] = (obj, value)  # the object is kept, so its id is not reused meanwhile
    return value


def _names_part(parts: dict | None, fn: Function) -> dict[str, Any]:
    """The names of ``fn``, shared by the functions with the same IDs and source names."""
    if parts is None:
        return _names_json(fn)
    key = (fn.vendor_id, fn.device_id, fn.subsystem_vendor_id, fn.subsystem_device_id, fn.class_code,
           fn.vendor_name, fn.device_name, fn.subsystem_name, fn.class_name)
    try:
        return parts[key]
    except KeyError:
        value = parts[key] = _names_json(fn)
        return value


#: The windows of a function that is not a bridge (shared: the document's parts are read, never changed).
_NO_WINDOWS = {"io": None, "mem": None, "pref": None}


def device_json(t: Topology, fn: Function, trust_memo: dict | None = None, parts: dict | None = None) -> dict[str, Any]:
    """Every model fact of one function (the keys tree --json promises come first).

    ``parts`` (a dict kept for one document) lets equal values share one JSON object."""
    br = fn.bridge
    if br is None or br is ABSENT:
        br = None
        windows: dict[str, Any] = _NO_WINDOWS if parts is not None else dict(_NO_WINDOWS)
        bus_range = pref64 = primary = None
    else:
        windows = {"io": _window(br.io_window), "mem": _window(br.mem_window), "pref": _window(br.pref_window)}  # type: ignore[union-attr]
        bus_range = list(br.bus_range) if br.bus_range else None  # type: ignore[union-attr]
        pref = br.pref_window  # type: ignore[union-attr]
        pref64 = pref.is_64bit if isinstance(pref, Window) else None
        primary = br.primary  # type: ignore[union-attr]
    bars = fn.bars or ()
    owner = None
    parent = fn.parent
    if parent is None:
        owner_addr = t.vmd_domains.get(fn.address.domain)
        owner = str(owner_addr) if owner_addr else None
    rom = fn.rom
    driver = fn.driver
    group = fn.iommu_group
    vf_bars = fn.vf_bars
    reset = fn.reset_methods
    return {
        "bdf": str(fn.address),
        "parent": str(parent) if parent else None,
        "vendor": _hex(fn.vendor_id, 4),
        "device": _hex(fn.device_id, 4),
        "class": _hex(fn.class_code, 6),
        "type": _value(fn.pcie_type) if fn.pcie_type else None,
        "driver": driver if present(driver) else None,
        "iommu_group": group if present(group) else None,
        "bus_range": bus_range,
        "windows": windows,
        "pref_window_64bit": pref64,
        "bars": [bar_json(b) for b in bars if b.assigned] if bars else [],
        "unassigned_bars": [{"index": b.index, "kind": _value(b.kind), "size": b.size} for b in bars if not b.assigned] if bars else [],
        "rom": _maybe(bar_json(rom) if isinstance(rom, Bar) else rom),
        "vf_bars": None if vf_bars is None else [bar_json(b) for b in vf_bars],
        "names": _names_part(parts, fn),
        "subsystem_vendor": _hex(fn.subsystem_vendor_id, 4),
        "subsystem_device": _hex(fn.subsystem_device_id, 4),
        "revision": _hex(fn.revision, 2),
        "header_type": fn.header_type,
        "multifunction": fn.multifunction,
        "config_size": fn.config_size,
        "primary_bus": primary,
        "caps": _same_part(parts, fn.caps, _caps_json),
        "slot": _same_part(parts, fn.slot, _maybe),
        "link": _same_part(parts, fn.link, _plain),
        "driver_override": _maybe(fn.driver_override),
        "numa_node": fn.numa_node,
        "physfn": str(fn.physfn) if fn.physfn else None,
        "virtfns": [str(a) for a in fn.virtfns],
        "is_virtfn": fn.is_virtfn,
        "boot_vga": fn.boot_vga,
        "reset_methods": list(reset) if reset is not None else None,
        "external_facing": fn.external_facing,
        "removable": fn.removable,
        "vmd_domain": _hex(fn.vmd_domain, 4),
        "domain_owner": owner,
        "trust": _trust.device_trust_json(t, fn, trust_memo, parts),
        **_mdev.device_keys(t, fn.address),
    }


def host_bridge_json(hb: HostBridge) -> dict[str, Any]:
    return {
        "name": hb.name,
        "domain": _hex(hb.domain, 4),
        "root_bus": _hex(hb.root_bus, 2),
        "bus_range": list(hb.bus_range) if hb.bus_range else None,
        "windows": None if hb.windows is None else [{"kind": w.kind.value, "start": w.start, "end": w.end} for w in hb.windows],
        "vmd_owner": str(hb.vmd_owner) if hb.vmd_owner else None,
    }


def topology_json(t: Topology, *, stream: bool = False) -> dict[str, Any]:
    """``tree --json``: the envelope (format, source, context), the host bridges and every
    device. With ``stream``, ``devices`` is an iterator that builds each device's object on
    demand (for explorer.jsonout.write_json: a big machine's document is never whole in
    memory)."""
    memo: dict = {}
    parts: dict = {}
    devices = (device_json(t, fn, memo, parts) for fn in t)
    return envelope("tree", t, {
        "host_bridges": [host_bridge_json(h) for h in t.host_bridges],
        "devices": devices if stream else list(devices),
        **_mdev.topology_keys(t),
    })


def show_json(t: Topology, fn: Function) -> dict[str, Any]:
    """``show --json``: the envelope and one device object, as in ``tree --json``."""
    return envelope("device", t, {"device": device_json(t, fn), "context": device_context_json(t, fn)})


def context_json(t: Topology) -> dict[str, Any]:
    """The kernel context the source gives (explorer.kernel.context), each fact with its provenance."""
    from ..kernel.context import source_context

    return source_context(t).to_dict()


def device_context_json(t: Topology, fn: Function) -> dict[str, Any]:
    """``show --json``'s context: the source's, plus this port's slot hotplug driver."""
    from ..kernel.context import source_context

    ctx = source_context(t)
    d = ctx.to_dict()
    del d["slot_hotplug_drivers"]
    d["slot_hotplug_driver"] = ctx.slot_driver(fn.address).to_dict() if fn.is_bridge and present(fn.slot) else None
    return d


def context_summary(t: Topology) -> str:
    """One short line for a header: the kernel rules and where they came from, the IOMMU."""
    from ..kernel.context import source_context

    ctx = source_context(t)
    if ctx.rules.known:
        rel = f"Linux {ctx.release.value}" if ctx.release.known else "kernel"
        kern = f"{rel}, {ctx.rules.value} rules ({ctx.rules.how})"
    else:
        kern = "kernel unknown (6.1 and 6.12 rules both computed)"
    iommu = {True: f"IOMMU {ctx.iommu_vendor.value or 'present'}", False: "no IOMMU"}.get(ctx.iommu.value, "IOMMU unknown")
    known = sum(1 for _, f in ctx.slot_drivers if f.known)
    slots = f"slot drivers {known}/{len(ctx.slot_drivers)} known" if ctx.slot_drivers else ""
    return ", ".join(x for x in (kern, iommu, slots) if x)


def context_lines(t: Topology, fn: Function | None = None) -> list[str]:
    """The context as short text lines: kernel and rules, command line, IOMMU; a port's slot driver."""
    from ..kernel.context import source_context

    ctx = source_context(t)
    out = []
    if fn is not None and fn.is_bridge and present(fn.slot):
        out.append(f"hotplug driver: {ctx.slot_driver(fn.address).describe()}")
    # Machine-wide, and shown for every row the cursor lands on: counted once per topology.
    out += t.memo("context_lines", lambda: tuple(ln for ln in ctx.lines() if not ln.startswith("slot hotplug at ")))
    return out


# ---- text ---------------------------------------------------------------------------


_size = human_size


def format_window(w: Any) -> str:
    if w is None:
        return "unknown"
    if w is ABSENT:
        return "none"
    extra = ", 64-bit" if w.is_64bit else ""
    return f"[{w.start:#x}-{w.end:#x}] ({_size(w.size)}{extra})"


def device_badges(fn: Function) -> list[tuple[str, str]]:
    """The facts people scan a tree row for, as (kind, value), in display order; each
    surface (text tree, app) words them its own way."""
    out: list[tuple[str, str]] = []
    if present(fn.iommu_group):
        out.append(("group", str(fn.iommu_group)))
    if present(fn.driver):
        out.append(("driver", str(fn.driver)))
    sr = fn.caps.sriov
    if present(sr) and sr.total_vfs:  # type: ignore[union-attr]
        out.append(("vfs", f"{sr.num_vfs or 0}/{sr.total_vfs}"))  # type: ignore[union-attr]
    if fn.is_virtfn:
        out.append(("vf", ""))
    if present(fn.slot) and fn.slot.hotplug:  # type: ignore[union-attr]
        num = fn.slot.number  # type: ignore[union-attr]
        out.append(("hotplug", "" if num is None else str(num)))
    if fn.removable:
        out.append(("removable", ""))
    if fn.external_facing:
        out.append(("external-facing", ""))
    if fn.vmd_domain is not None:
        out.append(("vmd", f"{fn.vmd_domain:04x}"))
    return out


def device_line(t: Topology, fn: Function) -> str:
    """One line for a function: address, name, IDs, type and the badges people look for."""
    parts = [fn.bdf, names.short_name(fn)]
    ids = fn.vendor_device
    if ids:
        parts.append(f"[{ids}]")
    if fn.pcie_type and fn.pcie_type.is_port or (fn.pcie_type and fn.pcie_type.value.startswith("pci")):
        parts.append(fn.pcie_type.label)  # type: ignore[union-attr]
    br = fn.bridge if present(fn.bridge) else None
    if br and br.bus_range:  # type: ignore[union-attr]
        s, e = br.bus_range  # type: ignore[union-attr]
        parts.append(f"bus {s:02x}-{e:02x}")
    text = {
        "group": "group {}", "driver": "driver {}", "vfs": "VFs {}", "vf": "VF", "removable": "removable",
        "external-facing": "external-facing", "vmd": "VMD domain {}",
    }
    badges = []
    for kind, value in device_badges(fn):
        if kind == "hotplug":
            badges.append(f"hotplug slot {value}" if value else "hotplug")
        else:
            badges.append(text[kind].format(value))
    mdev_badge = _mdev.tree_badge(t, fn.address)
    if mdev_badge:
        badges.append(mdev_badge)
    if badges:
        parts.append("(" + ", ".join(badges) + ")")
    return "  ".join(parts)


def root_bus_line(t: Topology, key: RootBusKey) -> str:
    hb = t.host_bridge(key.domain, key.bus)
    text = f"{key}"
    owner = t.vmd_domains.get(key.domain)
    if owner is not None:
        text += f"  VMD domain of {owner}"
    else:
        text += "  root bus"
    if hb and hb.bus_range:
        text += f"  buses {hb.bus_range[0]:02x}-{hb.bus_range[1]:02x}"
    if hb and hb.windows:
        text += "  windows " + " ".join(f"{w.kind.value}[{w.start:#x}-{w.end:#x}]" for w in hb.windows)
    elif hb is None or hb.windows is None:
        if owner is None:
            text += "  windows unknown"
    return text


def render_tree(t: Topology) -> str:
    tree = DisplayTree(t)
    lines: list[str] = []

    def walk(key: NodeKey, prefix: str, last: bool, top: bool) -> None:
        label = root_bus_line(t, key) if isinstance(key, RootBusKey) else device_line(t, t.functions[key])
        if top:
            lines.append(label)
            child_prefix = ""
        else:
            lines.append(prefix + ("└── " if last else "├── ") + label)
            child_prefix = prefix + ("    " if last else "│   ")
        kids = tree.children(key)
        mdevs = [] if isinstance(key, RootBusKey) else _mdev.tree_children(t, key)
        for n, m in enumerate(mdevs):
            lines.append(child_prefix + ("└── " if n == len(mdevs) - 1 and not kids else "├── ") + m)
        for i, k in enumerate(kids):
            walk(k, child_prefix, i == len(kids) - 1, False)

    for k in tree.children(None):
        walk(k, "", True, True)
    if not lines:
        return f"(no PCI functions in {t.source.location})" + "\n".join(_mdev.other_parents_text(t))
    return "\n".join(lines + _mdev.other_parents_text(t))


def _fmt(v: Any) -> str:
    if v is None:
        return "unknown"
    if v is ABSENT:
        return "none"
    if v is True:
        return "yes"
    if v is False:
        return "no"
    return str(v)


def render_device(t: Topology, fn: Function) -> str:
    """Every fact about one function, readable; unknowns say so."""
    out: list[str] = []
    add = out.append
    add(f"{fn.bdf}  {names.short_name(fn)}")
    add(f"  vendor:device      {_fmt(fn.vendor_device)}  ({_fmt(names.vendor_name(fn))} / {_fmt(names.device_name(fn))})")
    sub = None
    if fn.subsystem_vendor_id is not None and fn.subsystem_device_id is not None:
        sub = f"{fn.subsystem_vendor_id:04x}:{fn.subsystem_device_id:04x}"
    add(f"  subsystem          {_fmt(sub)}  ({_fmt(names.subsystem_name(fn))})")
    add(f"  class              {_fmt(fn.class_hex)}  ({_fmt(names.class_name(fn))})")
    add(f"  revision           {_fmt(_hex(fn.revision, 2))}")
    add(f"  header type        {_fmt(fn.header_type)}   multifunction {_fmt(fn.multifunction)}")
    add(f"  PCIe type          {_fmt(fn.pcie_type.label if fn.pcie_type else None)}")
    add(f"  upstream bridge    {_fmt(fn.parent) if fn.parent else 'none (root bus)'}")
    if fn.parent is None and fn.address.domain in t.vmd_domains:
        add(f"  VMD domain owner   {t.vmd_domains[fn.address.domain]}")
    add(f"  driver             {_fmt(fn.driver)}   override {_fmt(fn.driver_override)}")
    if fn.iommu_group is None:
        add("  IOMMU group        unknown (the source does not say)")
    elif fn.iommu_group is ABSENT:
        add("  IOMMU group        none (the kernel put it in no group)")
    else:
        add(f"  IOMMU group        {fn.iommu_group} (as the kernel reported it)")
    add(f"  NUMA node          {_fmt(fn.numa_node)}")
    if fn.bars is None:
        add("  BARs               unknown")
    elif not fn.bars:
        add("  BARs               none")
    for b in fn.bars or ():
        where = f"{b.start:#x}-{b.end:#x}" if b.assigned and b.end is not None else "unassigned"
        add(f"  BAR {b.index}              {b.kind.value:6} {where} size {_size(b.size)}")
    if isinstance(fn.rom, Bar):
        where = f"{fn.rom.start:#x}" if fn.rom.assigned else "unassigned"
        add(f"  expansion ROM      {where} size {_size(fn.rom.size)}")
    else:
        add(f"  expansion ROM      {_fmt(fn.rom)}")
    for b in fn.vf_bars or ():
        where = f"{b.start:#x}" if b.assigned else "unassigned"
        add(f"  VF BAR {b.index}           {b.kind.value:6} {where} size {_size(b.size)} per VF (all VFs: {_size(b.total_size)})")
    if present(fn.bridge):
        br = fn.bridge
        add(f"  buses              primary {_fmt(br.primary)} secondary {_fmt(br.secondary)} subordinate {_fmt(br.subordinate)}")  # type: ignore[union-attr]
        add(f"  I/O window         {format_window(br.io_window)}")  # type: ignore[union-attr]
        add(f"  memory window      {format_window(br.mem_window)}")  # type: ignore[union-attr]
        add(f"  prefetch window    {format_window(br.pref_window)}")  # type: ignore[union-attr]
    c = fn.caps
    if c.acs is None:
        add("  ACS                unknown")
    elif c.acs is ABSENT:
        add("  ACS                no capability")
    else:
        add(f"  ACS                cap {acs_flags_str(c.acs.cap)}  ctrl {acs_flags_str(c.acs.ctrl)}")  # type: ignore[union-attr]
    for label, v in (("ATS", c.ats), ("PRI", c.pri), ("PASID", c.pasid), ("ARI", c.ari), ("AER", c.aer)):
        add(f"  {label:<18} {_fmt_cap(v)}")
    sr = c.sriov
    if present(sr):
        add(
            f"  SR-IOV             VFs {_fmt(sr.num_vfs)}/{_fmt(sr.total_vfs)} (initial {_fmt(sr.initial_vfs)}), "  # type: ignore[union-attr]
            f"offset {_fmt(sr.vf_offset)} stride {_fmt(sr.vf_stride)} VF device {_fmt(_hex(sr.vf_device, 4))}"  # type: ignore[union-attr]
        )
    else:
        add(f"  SR-IOV             {_fmt_cap(sr)}")
    if present(c.rcec):
        devs = ", ".join(f"{d:02x}" for d in c.rcec.devices) or "none"  # type: ignore[union-attr]
        add(f"  RCEC endpoints     devices {devs} on bus {fn.address.bus:02x}; buses {_fmt(c.rcec.next_bus)}-{_fmt(c.rcec.last_bus)}")  # type: ignore[union-attr]
    add(f"  serial number      {_fmt(c.dsn)}")
    if present(fn.slot):
        s = fn.slot
        add(f"  slot               number {_fmt(s.number)}, physical slot name {_fmt(s.physical_slot)}, hotplug {_fmt(s.hotplug)}, surprise removal {_fmt(s.surprise)}")  # type: ignore[union-attr]
    else:
        add(f"  slot               {_fmt(fn.slot)}")
    if fn.link:
        lk = fn.link
        add(f"  link               {_fmt(lk.current_speed)} x{_fmt(lk.current_width)} (max {_fmt(lk.max_speed)} x{_fmt(lk.max_width)})")
    if fn.physfn:
        add(f"  physical function  {fn.physfn}")
    if fn.virtfns:
        add(f"  virtual functions  {', '.join(str(a) for a in fn.virtfns)}")
    add(f"  boot VGA           {_fmt(fn.boot_vga)}")
    add(f"  reset methods      {_fmt(' '.join(fn.reset_methods) if fn.reset_methods else (None if fn.reset_methods is None else 'none'))}")
    from .trust import device_trust_lines

    out.extend(device_trust_lines(t, fn))
    if fn.vmd_domain is not None:
        add(f"  VMD                owns domain {fn.vmd_domain:04x}")
    out.extend(_mdev.show_lines(t, fn.address))
    add("  kernel context")
    for line in context_lines(t, fn):
        add(f"    {line}")
    return "\n".join(out)


def _fmt_cap(v: Any) -> str:
    if v is None:
        return "unknown"
    if v is ABSENT:
        return "no capability"
    items = [f"{f.name}={_fmt(getattr(v, f.name))}" for f in fields(v) if getattr(v, f.name) is not None]
    return "present" + (" (" + ", ".join(items) + ")" if items else "")
