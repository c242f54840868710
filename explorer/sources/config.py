"""Decode PCI configuration space bytes into model facts.

One decoder for every source that has raw config space: sysfs ``config`` files
(full 4096 bytes as root, 256 for devices without extended space, only the first
64 bytes otherwise) and ``lspci -x/-xxx/-xxxx`` hex dumps. What the bytes do not
cover stays unknown (None); what they show to be missing is ABSENT.
"""

from __future__ import annotations

import struct
from dataclasses import MISSING, dataclass, field, fields

from ..model import (
    ABSENT,
    AcsCap,
    AerCap,
    AriCap,
    AtsCap,
    Bar,
    BarKind,
    BridgeInfo,
    Capabilities,
    LinkInfo,
    PasidCap,
    PcieType,
    PriCap,
    RcecCap,
    SriovCap,
    Window,
    WindowKind,
)
from ..model.device import PCIE_TYPE_FROM_FIELD

# Capability IDs (include/uapi/linux/pci_regs.h)
CAP_ID_VNDR = 0x09
CAP_ID_SSVID = 0x0D
CAP_ID_EXP = 0x10
ECAP_AER = 0x0001
ECAP_RCEC_EA = 0x0007
ECAP_DSN = 0x0003
ECAP_ACS = 0x000D
ECAP_ARI = 0x000E
ECAP_ATS = 0x000F
ECAP_SRIOV = 0x0010
ECAP_PRI = 0x0013
ECAP_PASID = 0x001B

LINK_SPEEDS = {1: "2.5 GT/s", 2: "5.0 GT/s", 3: "8.0 GT/s", 4: "16.0 GT/s", 5: "32.0 GT/s", 6: "64.0 GT/s"}


@dataclass(frozen=True)
class RawBar:
    """A BAR register as config space shows it (no size: that needs probing)."""

    index: int
    kind: BarKind
    base: int

    def to_bar(self, size: int | None = None) -> Bar:
        return Bar(self.index, self.kind, start=self.base or None, size=size, unassigned=self.base == 0)


@dataclass(frozen=True)
class QemuReserve:
    """QEMU/Red Hat resource-reserve vendor capability (firmware-only hints)."""

    bus: int | None
    io: int | None
    mem: int | None
    pref32: int | None
    pref64: int | None


#: Nothing known about the capabilities (immutable, so one instance serves every decode).
_UNKNOWN_CAPS = Capabilities()


@dataclass
class ConfigFacts:
    """Everything decoded from one function's config space."""

    length: int
    vendor_id: int | None = None
    device_id: int | None = None
    command: int | None = None
    status: int | None = None
    revision: int | None = None
    class_code: int | None = None
    header_type: int | None = None
    multifunction: bool | None = None
    subsystem_vendor_id: int | None = None
    subsystem_device_id: int | None = None
    bars: list[RawBar] = field(default_factory=list)
    rom_base: int | None = None
    rom_enabled: bool | None = None
    bridge: BridgeInfo | None = None
    pcie_type: PcieType | None = None
    pcie_version: int | None = None
    slot_implemented: bool | None = None
    slot_hotplug: bool | None = None
    slot_surprise: bool | None = None
    slot_number: int | None = None
    link: LinkInfo | None = None
    #: The four link attributes exactly as sysfs computes them for any PCIe function
    #: (pci-sysfs.c current_link_*, pcie_get_speed_cap, pcie_get_width_cap).
    sysfs_link: LinkInfo | None = None
    caps: Capabilities = _UNKNOWN_CAPS
    vf_bars: list[RawBar] = field(default_factory=list)
    qemu_reserve: QemuReserve | None = None
    #: Standard capability IDs seen, and extended ones (for display).
    cap_ids: list[int] = field(default_factory=list)
    ecap_ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def io_enabled(self) -> bool | None:
        return None if self.command is None else bool(self.command & 0x1)

    @property
    def mem_enabled(self) -> bool | None:
        return None if self.command is None else bool(self.command & 0x2)


_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from


class _Reader:
    """Little-endian reads that give None past the end of what was readable."""

    __slots__ = ("data", "n")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)

    def has(self, off: int, size: int) -> bool:
        return off + size <= self.n

    def u8(self, off: int) -> int | None:
        return self.data[off] if off < self.n else None

    def u16(self, off: int) -> int | None:
        return _U16(self.data, off)[0] if off + 2 <= self.n else None

    def u32(self, off: int) -> int | None:
        return _U32(self.data, off)[0] if off + 4 <= self.n else None

    def u64(self, off: int) -> int | None:
        return _U64(self.data, off)[0] if off + 8 <= self.n else None


def _decode_bar_regs(r: _Reader, start: int, count: int, first_index: int = 0) -> list[RawBar]:
    bars: list[RawBar] = []
    i = 0
    while i < count:
        off = start + 4 * i
        val = r.u32(off)
        if val is None:
            break
        index = first_index + i
        if val & 0x1:
            base = val & ~0x3 & 0xFFFFFFFF
            if val not in (0, 0x1) or base:
                bars.append(RawBar(index, BarKind.IO, base))
            elif val == 0x1:
                bars.append(RawBar(index, BarKind.IO, 0))
            i += 1
            continue
        mem_type = (val >> 1) & 0x3
        pref = bool(val & 0x8)
        base = val & ~0xF & 0xFFFFFFFF
        is64 = mem_type == 0x2
        if is64 and i + 1 < count:
            hi = r.u32(off + 4) or 0
            base |= hi << 32
            if val != 0 or hi != 0:
                bars.append(RawBar(index, BarKind.of(False, True, pref), base))
            i += 2
            continue
        if val != 0:
            bars.append(RawBar(index, BarKind.of(False, False, pref), base))
        i += 1
    return bars


def _decode_bridge(r: _Reader) -> BridgeInfo:
    primary, secondary, subordinate = r.u8(0x18), r.u8(0x19), r.u8(0x1A)
    io_window = mem_window = pref_window = None
    io_base, io_limit = r.u8(0x1C), r.u8(0x1D)
    if io_base is not None and io_limit is not None:
        if io_base == 0 and io_limit == 0:
            # Either not implemented or base 0 / limit 0xfff: lspci treats base<=limit as enabled.
            pass
        base = (io_base & 0xF0) << 8
        limit = ((io_limit & 0xF0) << 8) | 0xFFF
        if (io_base & 0xF) == 0x1:
            base |= (r.u16(0x30) or 0) << 16
            limit |= (r.u16(0x32) or 0) << 16
        io_window = Window(WindowKind.IO, base, limit) if base <= limit and (io_base or io_limit) else ABSENT
    mem_base, mem_limit = r.u16(0x20), r.u16(0x22)
    if mem_base is not None and mem_limit is not None:
        base = (mem_base & 0xFFF0) << 16
        limit = ((mem_limit & 0xFFF0) << 16) | 0xFFFFF
        mem_window = Window(WindowKind.MEM, base, limit, False) if base <= limit else ABSENT
    pref_base, pref_limit = r.u16(0x24), r.u16(0x26)
    if pref_base is not None and pref_limit is not None:
        is64 = (pref_base & 0xF) == 0x1
        base = (pref_base & 0xFFF0) << 16
        limit = ((pref_limit & 0xFFF0) << 16) | 0xFFFFF
        if is64:
            base |= (r.u32(0x28) or 0) << 32
            limit |= (r.u32(0x2C) or 0) << 32
        pref_window = Window(WindowKind.PREF, base, limit, is64) if base <= limit else ABSENT
    return BridgeInfo(primary, secondary, subordinate, io_window, mem_window, pref_window)


#: ConfigFacts fields that depend only on the capability lists (the pointer at 0x34, the
#: bytes from 0x40 on) and the header fields the walks read (status, header type, vendor):
#: what ``decode_config`` may take from an earlier function with the same bytes there.
_CAP_FIELDS = (
    "pcie_type", "pcie_version", "slot_implemented", "slot_hotplug", "slot_surprise", "slot_number",
    "link", "sysfs_link", "caps", "vf_bars", "qemu_reserve", "cap_ids", "ecap_ids", "warnings",
)
#: A memo holds at most this many entries (config spaces and capability regions, 4 KiB
#: each) before it starts over.
MEMO_MAX = 2048


def decode_config(data: bytes, file_size: int | None = None, memo: dict | None = None) -> ConfigFacts:
    """Decode ``data``, the readable prefix of a function's config space.

    ``file_size`` is the size of the whole space when the source knows it (the
    sysfs ``config`` file's size). When all of it was read and it is 256 bytes,
    the function has no extended config space, so extended capabilities are
    known to be absent; when only a prefix was read they stay unknown.

    ``memo`` (a dict the caller keeps for one load) lets functions whose capability
    regions are byte-for-byte equal share one decode of them, and functions whose whole
    config spaces are equal (a PF's VFs, most often one after another) share one
    ConfigFacts. The facts and their lists (``cap_ids``, ``vf_bars``, ``warnings``...) are
    then shared: read them, never change them.
    """
    if memo is not None:
        last = memo.get(_LAST)
        if last is not None and last[0] == data and last[1] == file_size:
            return last[2]
        whole = (data, file_size)
        f = memo.get(whole)
        if f is None:
            if len(memo) >= MEMO_MAX:
                memo.clear()
            f = memo[whole] = _decode_config(data, file_size, memo)
        memo[_LAST] = (data, file_size, f)
        return f
    return _decode_config(data, file_size, None)


#: decode_config's memo key of the last space decoded (compared before any hashing).
_LAST = object()


def _decode_config(data: bytes, file_size: int | None, memo: dict | None) -> ConfigFacts:
    r = _Reader(data)
    f = _new_facts(len(data))
    if len(data) >= 64 and data[0x0E] & 0x7F == 0:
        _decode_type0(data, f)
    else:
        _decode_header(r, data, f)
    if memo is None:
        _decode_caps(r, f, file_size)
        return f
    key = (data[0x40:], data[0x34:0x35], file_size, f.status is None or f.status & 0x10, f.header_type, f.vendor_id == 0x1B36)
    got = memo.get(key)
    if got is None:
        _decode_caps(r, f, file_size)
        got = {name: getattr(f, name) for name in _CAP_FIELDS}
        if f.header_type != 0:  # a bridge's subsystem IDs come from its SSVID capability
            got["subsystem_vendor_id"], got["subsystem_device_id"] = f.subsystem_vendor_id, f.subsystem_device_id
        if len(memo) >= MEMO_MAX:
            memo.clear()
        memo[key] = got
    else:
        f.__dict__.update(got)
    return f


#: ConfigFacts' fields in order with their plain defaults (None where there is none), and the
#: factories of the rest (its lists), for _new_facts.
_FACT_DEFAULTS = {f.name: None if f.default is MISSING else f.default for f in fields(ConfigFacts)}
_FACT_FACTORIES = tuple((f.name, f.default_factory) for f in fields(ConfigFacts) if f.default_factory is not MISSING)


def _new_facts(length: int) -> ConfigFacts:
    """``ConfigFacts(length=length)``, without the dataclass __init__'s thirty assignments."""
    f = object.__new__(ConfigFacts)
    d = f.__dict__
    d.update(_FACT_DEFAULTS)
    d["length"] = length
    for name, make in _FACT_FACTORIES:
        d[name] = make()
    return f


_TYPE0 = struct.Struct("<HHHHB3xxxBx6I4xHHI").unpack_from


def _decode_type0(data: bytes, f: ConfigFacts) -> None:
    """A whole type 0 header, in one unpack (most functions of a big machine)."""
    (f.vendor_id, f.device_id, f.command, f.status, f.revision, ht,
     b0, b1, b2, b3, b4, b5, f.subsystem_vendor_id, f.subsystem_device_id, rom) = _TYPE0(data)
    f.class_code = (data[0x0B] << 16) | (data[0x0A] << 8) | data[0x09]
    f.header_type = ht & 0x7F
    f.multifunction = bool(ht & 0x80)
    if b0 | b1 | b2 | b3 | b4 | b5:
        f.bars = _decode_bar_regs(_Reader(data), 0x10, 6)
    f.rom_base = rom & 0xFFFFF800
    f.rom_enabled = bool(rom & 0x1)


def _decode_header(r: _Reader, data: bytes, f: ConfigFacts) -> None:
    if len(data) < 4:
        return
    f.vendor_id, f.device_id = r.u16(0), r.u16(2)
    f.command, f.status = r.u16(4), r.u16(6)
    f.revision = r.u8(8)
    if r.has(9, 3):
        f.class_code = (data[0x0B] << 16) | (data[0x0A] << 8) | data[0x09]
    ht = r.u8(0x0E)
    if ht is not None:
        f.header_type = ht & 0x7F
        f.multifunction = bool(ht & 0x80)
    if f.header_type == 0:
        f.bars = _decode_bar_regs(r, 0x10, 6)
        f.subsystem_vendor_id, f.subsystem_device_id = r.u16(0x2C), r.u16(0x2E)
        rom = r.u32(0x30)
    elif f.header_type == 1:
        f.bars = _decode_bar_regs(r, 0x10, 2)
        f.bridge = _decode_bridge(r)
        rom = r.u32(0x38)
    else:
        rom = None
    if rom is not None:
        f.rom_base = rom & 0xFFFFF800
        f.rom_enabled = bool(rom & 0x1)


def _decode_caps(r: _Reader, f: ConfigFacts, file_size: int | None) -> None:
    """The capability lists: Express (type, link, slot), the standard and extended ones."""
    std_known = r.n >= 256
    has_cap_list = f.status is not None and bool(f.status & 0x10)
    if f.status is not None and not has_cap_list:
        # No capability list at all: every capability is known to be absent.
        f.pcie_type = PcieType.CONVENTIONAL
        f.caps = _all_absent()
        return
    if not std_known:
        return

    exp_off = _walk_std_caps(r, f)
    if exp_off is None:
        f.pcie_type = PcieType.CONVENTIONAL
        # Without an Express capability there is no extended config space.
        f.caps = _all_absent()
        return

    ext_known = r.n >= 4096 or (file_size is not None and r.n >= file_size)
    devcap2 = r.u32(exp_off + 0x24) if (f.pcie_version or 0) >= 2 else None
    eetlp = bool(devcap2 & (1 << 21)) if devcap2 is not None else None
    arifwd = bool(devcap2 & (1 << 5)) if devcap2 is not None else None
    if r.n <= 256 and ext_known:
        f.caps = _all_absent(eetlp_prefix=eetlp, ari_forwarding=arifwd)
    elif ext_known:
        f.caps = _walk_ext_caps(r, f, eetlp_prefix=eetlp, ari_forwarding=arifwd)
    else:
        f.caps = Capabilities(eetlp_prefix=eetlp, ari_forwarding=arifwd)


def _all_absent(eetlp_prefix: bool | None = False, ari_forwarding: bool | None = False) -> Capabilities:
    return Capabilities(
        acs=ABSENT, ats=ABSENT, pri=ABSENT, pasid=ABSENT, sriov=ABSENT, ari=ABSENT, aer=ABSENT, rcec=ABSENT,
        dsn=ABSENT, eetlp_prefix=eetlp_prefix, ari_forwarding=ari_forwarding,
    )


def _walk_std_caps(r: _Reader, f: ConfigFacts) -> int | None:
    """Walk the standard capability list; returns the Express capability offset."""
    ptr = (r.u8(0x34) or 0) & 0xFC
    seen: set[int] = set()
    exp_off = None
    while ptr and ptr not in seen and 0x40 <= ptr < 0x100 and r.has(ptr, 2):
        seen.add(ptr)
        cap_id = r.u8(ptr)
        f.cap_ids.append(cap_id or 0)
        if cap_id == CAP_ID_EXP and exp_off is None:
            exp_off = ptr
            _decode_express(r, f, ptr)
        elif cap_id == CAP_ID_SSVID and f.header_type == 1:
            f.subsystem_vendor_id, f.subsystem_device_id = r.u16(ptr + 4), r.u16(ptr + 6)
        elif cap_id == CAP_ID_VNDR and f.vendor_id == 0x1B36 and r.u8(ptr + 3) == 1 and (r.u8(ptr + 2) or 0) >= 32:
            f.qemu_reserve = _decode_qemu_reserve(r, ptr)
        ptr = (r.u8(ptr + 1) or 0) & 0xFC
    if len(seen) > 48:
        f.warnings.append("capability list loops")
    return exp_off


def _decode_qemu_reserve(r: _Reader, ptr: int) -> QemuReserve:
    def val(v: int | None, unset: int) -> int | None:
        return None if v is None or v == unset else v

    return QemuReserve(
        bus=val(r.u32(ptr + 4), 0xFFFFFFFF),
        io=val(r.u64(ptr + 8), 0xFFFFFFFFFFFFFFFF),
        mem=val(r.u32(ptr + 16), 0xFFFFFFFF),
        pref32=val(r.u32(ptr + 20), 0xFFFFFFFF),
        pref64=val(r.u64(ptr + 24), 0xFFFFFFFFFFFFFFFF),
    )


def _decode_express(r: _Reader, f: ConfigFacts, off: int) -> None:
    flags = r.u16(off + 2)
    if flags is None:
        return
    f.pcie_version = flags & 0xF
    f.pcie_type = PCIE_TYPE_FROM_FIELD.get((flags >> 4) & 0xF)
    if f.pcie_type is None:
        f.warnings.append(f"unknown PCIe device/port type {(flags >> 4) & 0xF:#x}")
    f.slot_implemented = bool(flags & 0x100)
    lnkcap, lnksta = r.u32(off + 0x0C), r.u16(off + 0x12)
    has_link = f.pcie_type not in (PcieType.RC_INTEGRATED_ENDPOINT, PcieType.RC_EVENT_COLLECTOR)
    if has_link and lnkcap is not None:
        f.link = LinkInfo(
            current_speed=LINK_SPEEDS.get(lnksta & 0xF) if lnksta is not None else None,
            current_width=((lnksta >> 4) & 0x3F) if lnksta is not None else None,
            max_speed=LINK_SPEEDS.get(lnkcap & 0xF),
            max_width=(lnkcap >> 4) & 0x3F,
        )
    f.sysfs_link = _sysfs_link(r, off, f)
    if f.slot_implemented and f.pcie_type in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM):
        sltcap = r.u32(off + 0x14)
        if sltcap is not None:
            f.slot_hotplug = bool(sltcap & 0x40)
            f.slot_surprise = bool(sltcap & 0x20)
            f.slot_number = sltcap >> 19
    elif f.pcie_type in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM):
        f.slot_hotplug = False
        f.slot_surprise = False


def _sysfs_link(r: _Reader, off: int, f: ConfigFacts) -> LinkInfo:
    """What sysfs prints: registers a port type does not implement read as 0
    (pcie_capability_read_*), an unknown speed is "Unknown" (None here), an unknown
    maximum width 255 (PCIE_LNK_WIDTH_UNKNOWN)."""
    has_link = f.pcie_type not in (PcieType.RC_INTEGRATED_ENDPOINT, PcieType.RC_EVENT_COLLECTOR, None)
    lnksta = (r.u16(off + 0x12) or 0) if has_link else 0
    lnkcap = (r.u32(off + 0x0C) or 0) if has_link else 0
    lnkcap2 = (r.u32(off + 0x2C) or 0) if (f.pcie_version or 0) > 1 else 0
    max_speed = None
    vector = (lnkcap2 >> 1) & 0x7F  # Supported Link Speeds vector: bit 0 = 2.5 GT/s
    if vector:
        max_speed = LINK_SPEEDS.get(vector.bit_length())
    elif lnkcap:
        max_speed = LINK_SPEEDS.get(lnkcap & 0xF)
    return LinkInfo(
        current_speed=LINK_SPEEDS.get(lnksta & 0xF),
        current_width=(lnksta >> 4) & 0x3F,
        max_speed=max_speed,
        max_width=((lnkcap >> 4) & 0x3F) if lnkcap else 255,
    )


def _walk_ext_caps(r: _Reader, f: ConfigFacts, *, eetlp_prefix: bool | None = None, ari_forwarding: bool | None = None) -> Capabilities:
    found: dict[str, object] = {}
    off = 0x100
    seen: set[int] = set()
    while off and off not in seen and 0x100 <= off < 0x1000 and r.has(off, 4):
        seen.add(off)
        hdr = r.u32(off) or 0
        if hdr in (0, 0xFFFFFFFF):
            break
        cap_id, version, nxt = hdr & 0xFFFF, (hdr >> 16) & 0xF, (hdr >> 20) & 0xFFC
        f.ecap_ids.append(cap_id)
        key = _ECAP_DECODERS.get(cap_id)
        if key and key[0] not in found:
            found[key[0]] = key[1](r, off, version, f)
        off = nxt
    return Capabilities(
        acs=found.get("acs", ABSENT),  # type: ignore[arg-type]
        ats=found.get("ats", ABSENT),  # type: ignore[arg-type]
        pri=found.get("pri", ABSENT),  # type: ignore[arg-type]
        pasid=found.get("pasid", ABSENT),  # type: ignore[arg-type]
        sriov=found.get("sriov", ABSENT),  # type: ignore[arg-type]
        ari=found.get("ari", ABSENT),  # type: ignore[arg-type]
        aer=found.get("aer", ABSENT),  # type: ignore[arg-type]
        rcec=found.get("rcec", ABSENT),  # type: ignore[arg-type]
        dsn=found.get("dsn", ABSENT),  # type: ignore[arg-type]
        eetlp_prefix=eetlp_prefix,
        ari_forwarding=ari_forwarding,
    )


def _acs(r: _Reader, off: int, ver: int, f: ConfigFacts) -> AcsCap:
    return AcsCap(cap=(r.u16(off + 4) or 0) & 0x7F, ctrl=(r.u16(off + 6) or 0) & 0x7F)


def _ats(r: _Reader, off: int, ver: int, f: ConfigFacts) -> AtsCap:
    cap, ctrl = r.u16(off + 4), r.u16(off + 6)
    return AtsCap(
        queue_depth=None if cap is None else ((cap & 0x1F) or 32),
        enabled=None if ctrl is None else bool(ctrl & 0x8000),
        stu=None if ctrl is None else ctrl & 0x1F,
    )


def _pri(r: _Reader, off: int, ver: int, f: ConfigFacts) -> PriCap:
    ctrl = r.u16(off + 4)
    return PriCap(enabled=None if ctrl is None else bool(ctrl & 1), capacity=r.u32(off + 8), allocation=r.u32(off + 12))


def _pasid(r: _Reader, off: int, ver: int, f: ConfigFacts) -> PasidCap:
    cap, ctrl = r.u16(off + 4), r.u16(off + 6)
    return PasidCap(
        exec_supported=None if cap is None else bool(cap & 0x2),
        priv_supported=None if cap is None else bool(cap & 0x4),
        max_width=None if cap is None else (cap >> 8) & 0x1F,
        enabled=None if ctrl is None else bool(ctrl & 0x1),
    )


def _sriov(r: _Reader, off: int, ver: int, f: ConfigFacts) -> SriovCap:
    ctrl = r.u16(off + 8)
    f.vf_bars = _decode_bar_regs(r, off + 0x24, 6)
    return SriovCap(
        initial_vfs=r.u16(off + 0x0C),
        total_vfs=r.u16(off + 0x0E),
        num_vfs=r.u16(off + 0x10),
        vf_offset=r.u16(off + 0x14),
        vf_stride=r.u16(off + 0x16),
        vf_device=r.u16(off + 0x1A),
        ari_hierarchy=None if ctrl is None else bool(ctrl & 0x10),
        enabled=None if ctrl is None else bool(ctrl & 0x1),
    )


def _ari(r: _Reader, off: int, ver: int, f: ConfigFacts) -> AriCap:
    cap = r.u16(off + 4)
    return AriCap(next_function=None if cap is None else (cap >> 8) & 0xFF)


def _aer(r: _Reader, off: int, ver: int, f: ConfigFacts) -> AerCap:
    return AerCap(version=ver)


def _rcec(r: _Reader, off: int, ver: int, f: ConfigFacts) -> RcecCap:
    bitmap = r.u32(off + 4) or 0
    next_bus = last_bus = None
    if ver >= 2:
        busn = r.u32(off + 8)
        if busn is not None:
            next_bus, last_bus = (busn >> 8) & 0xFF, (busn >> 16) & 0xFF
    return RcecCap(bitmap=bitmap, next_bus=next_bus, last_bus=last_bus)


def _dsn(r: _Reader, off: int, ver: int, f: ConfigFacts) -> str | None:
    lo, hi = r.u32(off + 4), r.u32(off + 8)
    if lo is None or hi is None:
        return None
    return format_serial((hi << 32) | lo)


def format_serial(value: int) -> str:
    """Serial number in lspci's form: eight bytes, most significant first, dash-separated."""
    return "-".join(f"{(value >> (8 * i)) & 0xFF:02x}" for i in range(7, -1, -1))


_ECAP_DECODERS = {
    ECAP_ACS: ("acs", _acs),
    ECAP_ATS: ("ats", _ats),
    ECAP_PRI: ("pri", _pri),
    ECAP_PASID: ("pasid", _pasid),
    ECAP_SRIOV: ("sriov", _sriov),
    ECAP_ARI: ("ari", _ari),
    ECAP_AER: ("aer", _aer),
    ECAP_RCEC_EA: ("rcec", _rcec),
    ECAP_DSN: ("dsn", _dsn),
}


def find_ext_cap(data: bytes, cap_id: int) -> int | None:
    """Offset of the first extended capability ``cap_id`` in ``data``, or None."""
    r = _Reader(data)
    off = 0x100
    seen: set[int] = set()
    while off and off not in seen and 0x100 <= off < 0x1000 and r.has(off, 4):
        seen.add(off)
        hdr = r.u32(off) or 0
        if hdr in (0, 0xFFFFFFFF):
            return None
        if hdr & 0xFFFF == cap_id:
            return off
        off = (hdr >> 20) & 0xFFC
    return None
