"""Encode a Function as PCI configuration space: the inverse of ``config.decode_config``.

``encode_config(fn)`` returns the 4096 bytes a kernel would expose as the sysfs
``config`` file of a function with ``fn``'s facts, laid out so that
``decode_config(encode_config(fn))`` gives back every fact the decoder reads:

* header: vendor, device, command, status, revision, class, header type and the
  multifunction bit, subsystem IDs (type 0 header; the SSVID capability for
  bridges), the BAR registers (I/O, 32- and 64-bit memory, prefetchable bit),
  the expansion ROM register;
* type 1 header: primary/secondary/subordinate bus numbers and the I/O, memory
  and prefetchable windows (16/32-bit I/O, 32/64-bit prefetchable) — a window
  that is ABSENT is written closed (base above limit) as the kernel does;
* capability list (none for a conventional function without subsystem IDs to
  carry, so even a 64-byte prefix says "conventional"): power management,
  SSVID (bridges with non-zero subsystem IDs), PCI Express with the device/port
  type, slot capabilities (hot-plug, surprise, physical slot number) when a
  slot is implemented, link capabilities and status, and for version 2 (the
  model knows DevCap2) DevCap2 (ARI forwarding, End-End TLP prefix) and LnkCap2;
  a VF's vendor/device registers read 0xffff and its BARs 0, as on real VFs;
* extended capabilities from 0x100: AER, ACS (capability and control), ARI,
  ATS, PRI, PASID, SR-IOV (counts, offset, stride, VF device ID, control bits
  and the VF BAR registers), RCEC endpoint association (v2 with bus range when
  known) and the device serial number.

Facts the model leaves unknown are written as the hardware's "nothing" (zero,
closed, missing capability): bytes cannot say "unknown", so those facts decode
as zero/ABSENT. The caller truncates to ``fn.config_size`` where a prefix is
wanted (64 bytes as a non-root reader sees it, 256 for conventional devices).
"""

from __future__ import annotations

import struct

from ..model import Bar, BarKind, Function, PcieType, present
from ..model.device import PCIE_TYPE_FROM_FIELD, AcsCap, BridgeInfo, Window
from .config import (
    CAP_ID_EXP,
    CAP_ID_SSVID,
    ECAP_ACS,
    ECAP_AER,
    ECAP_ARI,
    ECAP_ATS,
    ECAP_DSN,
    ECAP_PASID,
    ECAP_PRI,
    ECAP_RCEC_EA,
    ECAP_SRIOV,
    LINK_SPEEDS,
)

__all__ = ["CONFIG_SIZE", "encode_config", "speed_code", "serial_value"]

CONFIG_SIZE = 4096
CAP_ID_PM = 0x01

_TYPE_FIELD = {t: code for code, t in PCIE_TYPE_FROM_FIELD.items()}
_SPEED_CODE = {s: code for code, s in LINK_SPEEDS.items()}

# Fixed places for the standard capabilities (any valid layout decodes the same).
_OFF_PM = 0x40
_OFF_SSVID = 0x48
_OFF_EXP = 0x60


def speed_code(speed: str | None) -> int:
    """Link speed text ("8.0 GT/s", also with a " PCIe" suffix) to the LnkCap/LnkSta code; 0 unknown."""
    if not speed:
        return 0
    return _SPEED_CODE.get(speed.replace(" PCIe", "").strip(), 0)


def serial_value(dsn: str) -> int:
    """``xx-xx-..-xx`` (most significant byte first, as lspci prints it) to a 64-bit integer."""
    return int(dsn.replace("-", "").replace(":", ""), 16) & 0xFFFFFFFFFFFFFFFF


class _Buf:
    def __init__(self) -> None:
        self.b = bytearray(CONFIG_SIZE)

    def u8(self, off: int, v: int) -> None:
        self.b[off] = v & 0xFF

    def u16(self, off: int, v: int) -> None:
        struct.pack_into("<H", self.b, off, v & 0xFFFF)

    def u32(self, off: int, v: int) -> None:
        struct.pack_into("<I", self.b, off, v & 0xFFFFFFFF)


def _bar_register(bar: Bar) -> tuple[int, int | None]:
    """(low dword, high dword for 64-bit BARs) of a BAR register."""
    base = bar.start if bar.start is not None and not bar.unassigned else 0
    if bar.kind is BarKind.IO:
        return (base & 0xFFFFFFFC) | 0x1, None
    low = base & 0xFFFFFFF0
    if bar.kind.is_64bit:
        low |= 0x4
    if bar.kind.prefetchable:
        low |= 0x8
    return low, ((base >> 32) & 0xFFFFFFFF) if bar.kind.is_64bit else None


def _write_bars(w: _Buf, bars: tuple[Bar, ...] | None, off: int, count: int) -> None:
    for bar in bars or ():
        if not 0 <= bar.index < count:
            continue
        low, high = _bar_register(bar)
        w.u32(off + 4 * bar.index, low)
        if high is not None and bar.index + 1 < count:
            w.u32(off + 4 * (bar.index + 1), high)


def _header_type(fn: Function) -> int:
    if fn.header_type is not None:
        return fn.header_type
    return 1 if present(fn.bridge) else 0


def _is_pcie(fn: Function) -> bool:
    """Whether the function gets an Express capability (unknown type: none)."""
    return fn.pcie_type is not None and fn.pcie_type is not PcieType.CONVENTIONAL


def _write_bridge(w: _Buf, br: BridgeInfo | None, pcie: bool) -> None:
    br = br if isinstance(br, BridgeInfo) else BridgeInfo()
    w.u8(0x18, br.primary or 0)
    w.u8(0x19, br.secondary or 0)
    w.u8(0x1A, br.subordinate or 0)
    io = br.io_window
    if isinstance(io, Window):
        wide = io.end > 0xFFFF
        t = 0x1 if wide else 0x0
        w.u8(0x1C, ((io.start >> 8) & 0xF0) | t)
        w.u8(0x1D, ((io.end >> 8) & 0xF0) | t)
        if wide:
            w.u16(0x30, io.start >> 16)
            w.u16(0x32, io.end >> 16)
    else:  # closed: base 0xf000 above limit 0x0fff (what the kernel writes)
        w.u8(0x1C, 0xF0)
        w.u8(0x1D, 0x00)
    mem = br.mem_window
    if isinstance(mem, Window):
        w.u16(0x20, (mem.start >> 16) & 0xFFF0)
        w.u16(0x22, (mem.end >> 16) & 0xFFF0)
    else:
        w.u16(0x20, 0xFFF0)
        w.u16(0x22, 0x0000)
    pref = br.pref_window
    if isinstance(pref, Window):
        is64 = pref.is_64bit if pref.is_64bit is not None else pref.end > 0xFFFFFFFF
        t = 0x1 if is64 else 0x0
        w.u16(0x24, ((pref.start >> 16) & 0xFFF0) | t)
        w.u16(0x26, ((pref.end >> 16) & 0xFFF0) | t)
        if is64:
            w.u32(0x28, pref.start >> 32)
            w.u32(0x2C, pref.end >> 32)
    else:
        t = 0x1 if pcie else 0x0
        w.u16(0x24, 0xFFF0 | t)
        w.u16(0x26, 0x0000 | t)


def _command(fn: Function, bridge: bool) -> int:
    cmd = 0
    bars = fn.bars or ()
    if bridge or any(b.kind is BarKind.IO and b.assigned for b in bars):
        cmd |= 0x1
    if bridge or any(b.kind is not BarKind.IO and b.assigned for b in bars):
        cmd |= 0x2
    if bridge or present(fn.driver):
        cmd |= 0x4  # bus master
    if fn.is_virtfn:
        cmd &= ~0x3  # VFs decode through the PF's VF MSE bit
    return cmd


def _write_express(w: _Buf, fn: Function, off: int, nxt: int) -> None:
    t = fn.pcie_type
    assert t is not None
    w.u8(off, CAP_ID_EXP)
    w.u8(off + 1, nxt)
    slot = fn.slot
    is_dsp = t in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM)
    slot_impl = (
        is_dsp
        and present(slot)
        and any(v is not None for v in (slot.number, slot.hotplug, slot.surprise))  # type: ignore[union-attr]
    )
    # Version 1 capabilities end before DevCap2: that is how the model's "unknown" DevCap2 bits
    # (eetlp_prefix/ari_forwarding None) arise from real v1 devices.
    v2 = fn.caps.eetlp_prefix is not None or fn.caps.ari_forwarding is not None
    flags = (0x2 if v2 else 0x1) | (_TYPE_FIELD.get(t, 0) << 4) | (0x100 if slot_impl else 0)
    w.u16(off + 0x02, flags)
    devcap = 0x8000  # role-based error reporting
    if fn.reset_methods and "flr" in fn.reset_methods and t in (PcieType.ENDPOINT, PcieType.LEGACY_ENDPOINT,
                                                                  PcieType.RC_INTEGRATED_ENDPOINT):
        devcap |= 1 << 28
    w.u32(off + 0x04, devcap)
    w.u16(off + 0x08, 0x2810 if not fn.is_virtfn else 0)  # DevCtl: MPS 128, MRRS 512, RlxdOrd
    link = fn.link
    if link is not None:
        max_code = speed_code(link.max_speed)
        port = fn.address.device if is_dsp else 0
        lnkcap = max_code | ((link.max_width or 0) & 0x3F) << 4 | (port & 0xFF) << 24
        if is_dsp:
            lnkcap |= 1 << 20  # data link layer link active reporting
        w.u32(off + 0x0C, lnkcap)
        lnksta = speed_code(link.current_speed) | ((link.current_width or 0) & 0x3F) << 4
        if is_dsp and link.current_width:
            lnksta |= 1 << 13  # DLL link active
        w.u16(off + 0x12, lnksta)
        if max_code and v2:
            w.u32(off + 0x2C, ((1 << max_code) - 1) << 1)  # LnkCap2 supported speeds vector
            w.u16(off + 0x30, max_code)  # LnkCtl2 target speed
    if slot_impl:
        hot = bool(slot.hotplug)  # type: ignore[union-attr]
        sltcap = ((slot.number or 0) & 0x1FFF) << 19  # type: ignore[union-attr]
        if hot:
            sltcap |= 0x40 | 0x1 | 0x2 | 0x8 | 0x10  # HotPlug, AttnBtn, PwrCtrl, AttnInd, PwrInd
        if slot.surprise:  # type: ignore[union-attr]
            sltcap |= 0x20
        w.u32(off + 0x14, sltcap)
        w.u16(off + 0x1A, 0x40 if present(fn.bridge) and fn.bridge.secondary else 0)  # type: ignore[union-attr]
    if v2:
        devcap2 = 0x10  # completion timeout disable supported
        if fn.caps.ari_forwarding:
            devcap2 |= 1 << 5
        if fn.caps.eetlp_prefix:
            devcap2 |= 1 << 21
        w.u32(off + 0x24, devcap2)


# ---- extended capabilities ------------------------------------------------------------------


def _ext_caps(fn: Function) -> list[tuple[int, int, bytes]]:
    """(id, version, body after the 4-byte header) for each extended capability the function has."""
    caps = fn.caps
    out: list[tuple[int, int, bytes]] = []
    if present(caps.aer):
        ver = caps.aer.version if caps.aer.version is not None else 2  # type: ignore[union-attr]
        root = fn.pcie_type in (PcieType.ROOT_PORT, PcieType.RC_EVENT_COLLECTOR)
        body = bytearray(0x44 if root else 0x34)
        struct.pack_into("<I", body, 0x08, 0x00462030)  # UESvrt: the spec's default severities
        struct.pack_into("<I", body, 0x10, 0x00002000)  # CEMsk: advisory non-fatal masked
        struct.pack_into("<I", body, 0x14, 0x000000A0)  # AERCap: ECRC generation/check capable
        out.append((ECAP_AER, ver, bytes(body)))
    if present(caps.acs):
        acs: AcsCap = caps.acs  # type: ignore[assignment]
        body = bytearray(4)
        struct.pack_into("<HH", body, 0, acs.cap & 0x7F, acs.ctrl & 0x7F)
        if acs.cap & 0x20:  # egress control: an egress control vector follows (size 0 = 256 bits)
            body += bytes(32)
        out.append((ECAP_ACS, 1, bytes(body)))
    if present(caps.ari):
        nxt = caps.ari.next_function or 0  # type: ignore[union-attr]
        out.append((ECAP_ARI, 1, struct.pack("<HH", (nxt & 0xFF) << 8, 0)))
    if present(caps.ats):
        ats = caps.ats
        qd = ats.queue_depth or 0  # type: ignore[union-attr]
        cap = (qd & 0x1F) | 0x20  # 32 is encoded as 0; page aligned requests
        ctrl = ((ats.stu or 0) & 0x1F) | (0x8000 if ats.enabled else 0)  # type: ignore[union-attr]
        out.append((ECAP_ATS, 1, struct.pack("<HH", cap, ctrl)))
    if present(caps.pri):
        pri = caps.pri
        ctrl = 0x1 if pri.enabled else 0  # type: ignore[union-attr]
        status = 0x100  # stopped
        out.append((ECAP_PRI, 1, struct.pack("<HHII", ctrl, status, (pri.capacity or 0) & 0xFFFFFFFF,  # type: ignore[union-attr]
                                              (pri.allocation or 0) & 0xFFFFFFFF)))  # type: ignore[union-attr]
    if present(caps.pasid):
        p = caps.pasid
        cap = (0x2 if p.exec_supported else 0) | (0x4 if p.priv_supported else 0) | (((p.max_width or 0) & 0x1F) << 8)  # type: ignore[union-attr]
        out.append((ECAP_PASID, 1, struct.pack("<HH", cap, 0x1 if p.enabled else 0)))  # type: ignore[union-attr]
    if present(caps.sriov):
        s = caps.sriov
        body = bytearray(0x3C)
        struct.pack_into("<I", body, 0x00, 0x2 if s.ari_hierarchy else 0)  # SR-IOV cap: ARI capable hierarchy preserved  # type: ignore[union-attr]
        ctrl = (0x1 | 0x8 if s.enabled else 0) | (0x10 if s.ari_hierarchy else 0)  # type: ignore[union-attr]
        struct.pack_into("<H", body, 0x04, ctrl)
        struct.pack_into("<HHH", body, 0x08, s.initial_vfs or 0, s.total_vfs or 0, s.num_vfs or 0)  # type: ignore[union-attr]
        struct.pack_into("<HH", body, 0x10, s.vf_offset or 0, s.vf_stride or 0)  # type: ignore[union-attr]
        struct.pack_into("<H", body, 0x16, s.vf_device or 0)  # type: ignore[union-attr]
        struct.pack_into("<II", body, 0x18, 0x553, 0x1)  # supported page sizes, system page size 4K
        regs = _Buf()
        _write_bars(regs, fn.vf_bars, 0, 6)
        body[0x20:0x38] = regs.b[0:0x18]
        out.append((ECAP_SRIOV, 1, bytes(body)))
    if present(caps.rcec):
        r = caps.rcec
        if r.next_bus is not None or r.last_bus is not None:  # type: ignore[union-attr]
            busn = ((r.next_bus or 0) & 0xFF) << 8 | ((r.last_bus or 0) & 0xFF) << 16  # type: ignore[union-attr]
            out.append((ECAP_RCEC_EA, 2, struct.pack("<II", r.bitmap & 0xFFFFFFFF, busn)))  # type: ignore[union-attr]
        else:
            out.append((ECAP_RCEC_EA, 1, struct.pack("<I", r.bitmap & 0xFFFFFFFF)))  # type: ignore[union-attr]
    if present(caps.dsn) and isinstance(caps.dsn, str):
        v = serial_value(caps.dsn)
        out.append((ECAP_DSN, 1, struct.pack("<II", v & 0xFFFFFFFF, v >> 32)))
    return out


def _write_ext_caps(w: _Buf, fn: Function) -> None:
    caps = _ext_caps(fn)
    off = 0x100
    places = []
    for cap_id, ver, body in caps:
        places.append(off)
        off = (off + 4 + len(body) + 3) & ~3
    if off > CONFIG_SIZE:
        raise ValueError(f"{fn.address}: extended capabilities do not fit in config space")
    for n, (cap_id, ver, body) in enumerate(caps):
        at = places[n]
        nxt = places[n + 1] if n + 1 < len(places) else 0
        w.u32(at, cap_id | (ver & 0xF) << 16 | nxt << 20)
        w.b[at + 4: at + 4 + len(body)] = body


# ---- entry point ----------------------------------------------------------------------------


def encode_config(fn: Function) -> bytes:
    """The 4096 bytes of ``fn``'s configuration space (see the module docstring)."""
    w = _Buf()
    vf = bool(fn.is_virtfn)
    # A VF's vendor and device ID registers read 0xffff and its BARs 0 (SR-IOV spec; its
    # resources live in the PF's SR-IOV capability): the kernel's sysfs files say the rest.
    w.u16(0x00, fn.vendor_id if fn.vendor_id is not None and not vf else 0xFFFF)
    w.u16(0x02, fn.device_id if fn.device_id is not None and not vf else 0xFFFF)
    ht = _header_type(fn)
    bridge = ht == 1
    pcie = _is_pcie(fn)
    w.u16(0x04, _command(fn, bridge))
    # A capability list (power management, [SSVID], [Express]) for every function but a
    # conventional one without subsystem IDs to carry: "no capability list" is what makes a
    # 64-byte prefix say "conventional", "a list without Express" what makes a full space say it.
    conventional = fn.pcie_type is PcieType.CONVENTIONAL
    ssvid = ht == 1 and bool(fn.subsystem_vendor_id or fn.subsystem_device_id)
    has_caps = not conventional or ssvid
    w.u16(0x06, 0x0010 if has_caps else 0x0000)
    w.u8(0x08, fn.revision or 0)
    cc = fn.class_code or 0
    w.u8(0x09, cc)
    w.u8(0x0A, cc >> 8)
    w.u8(0x0B, cc >> 16)
    w.u8(0x0E, (ht & 0x7F) | (0x80 if fn.multifunction else 0))
    pin = 0 if fn.is_virtfn else 1
    if ht == 0:
        if not vf:
            _write_bars(w, fn.bars, 0x10, 6)
        w.u16(0x2C, fn.subsystem_vendor_id or 0)
        w.u16(0x2E, fn.subsystem_device_id or 0)
        if present(fn.rom) and fn.rom.start is not None and not fn.rom.unassigned:  # type: ignore[union-attr]
            w.u32(0x30, fn.rom.start & 0xFFFFF800)  # type: ignore[union-attr]
        w.u8(0x3D, pin)
    elif ht == 1:
        _write_bars(w, fn.bars, 0x10, 2)
        _write_bridge(w, fn.bridge if present(fn.bridge) else None, pcie)  # type: ignore[arg-type]
        if present(fn.rom) and fn.rom.start is not None and not fn.rom.unassigned:  # type: ignore[union-attr]
            w.u32(0x38, fn.rom.start & 0xFFFFF800)  # type: ignore[union-attr]
        w.u8(0x3D, pin)
        w.u16(0x3E, 0x0002)  # bridge control: SERR# enable
    if not has_caps:
        return bytes(w.b)
    # Standard capability list: PM -> [SSVID] -> [Express]
    chain: list[tuple[int, int]] = [(_OFF_PM, CAP_ID_PM)]
    if ssvid:
        chain.append((_OFF_SSVID, CAP_ID_SSVID))
    if pcie:
        chain.append((_OFF_EXP, CAP_ID_EXP))
    w.u8(0x34, chain[0][0])
    for n, (off, cap_id) in enumerate(chain):
        nxt = chain[n + 1][0] if n + 1 < len(chain) else 0
        if cap_id == CAP_ID_PM:
            w.u8(off, CAP_ID_PM)
            w.u8(off + 1, nxt)
            w.u16(off + 2, 0x0003)  # PM version 3
            w.u16(off + 4, 0x0008)  # D0, no soft reset
        elif cap_id == CAP_ID_SSVID:
            w.u8(off, CAP_ID_SSVID)
            w.u8(off + 1, nxt)
            w.u16(off + 4, fn.subsystem_vendor_id or 0)
            w.u16(off + 6, fn.subsystem_device_id or 0)
        else:
            _write_express(w, fn, off, nxt)
    if pcie:
        _write_ext_caps(w, fn)
    return bytes(w.b)


#: For callers that want to know which facts bytes cannot carry (see the module docstring).
UNENCODABLE = (
    "None (unknown) facts: written as zero/closed/missing, so they decode as 0 or ABSENT",
    "AerCap.version None: written as version 2",
    "a bridge's subsystem IDs 0000:0000: no SSVID capability (decoded as None)",
    "a VF's vendor/device IDs and BARs: 0xffff and 0 as real VFs read (sysfs files carry them)",
    "ATS queue depth 32 and 0 share the encoding 0 (decoded as 32)",
)
