"""encode_config is the inverse of decode_config: on every function of every real capture,
on synthetic machines, and byte for byte against the kernel's own config files."""

from __future__ import annotations

import os
import struct
import tarfile
from dataclasses import replace

import pytest

from conftest import capture_names
from explorer.model import (
    ABSENT,
    AcsCap,
    Address,
    AerCap,
    AriCap,
    AtsCap,
    Bar,
    BarKind,
    BridgeInfo,
    Capabilities,
    Function,
    LinkInfo,
    PasidCap,
    PcieType,
    PriCap,
    RcecCap,
    SlotInfo,
    SriovCap,
    Window,
    WindowKind,
    present,
)
from explorer.sources.config import RawBar, decode_config, find_ext_cap
from explorer.sources.config_encode import CONFIG_SIZE, encode_config, serial_value, speed_code
from explorer.sources.synthetic import generate
from explorer.sources.sysfs import load_sysfs

CAPTURES = capture_names()
_NO_LINK = (PcieType.RC_INTEGRATED_ENDPOINT, PcieType.RC_EVENT_COLLECTOR, PcieType.CONVENTIONAL)


def _expected_raw_bars(bars: tuple[Bar, ...] | None) -> list[RawBar]:
    """What the BAR registers of these BARs decode to (unassigned ones read as their type bits)."""
    out = []
    for b in bars or ():
        start = b.start if b.start is not None and not b.unassigned else 0
        if start or b.kind is BarKind.IO or b.kind.is_64bit or b.kind.prefetchable:
            out.append(RawBar(b.index, b.kind, start))
    return out


def _expected_link(fn: Function) -> LinkInfo | None:
    if fn.pcie_type in _NO_LINK or fn.pcie_type is None or fn.link is None:
        return None if fn.pcie_type in _NO_LINK or fn.pcie_type is None else LinkInfo(None, 0, None, 0)
    ln = fn.link
    return LinkInfo(ln.current_speed, ln.current_width or 0, ln.max_speed, ln.max_width or 0)


def _expected_caps(fn: Function) -> Capabilities:
    c = fn.caps
    if fn.pcie_type in (PcieType.CONVENTIONAL, None):
        return Capabilities(acs=ABSENT, ats=ABSENT, pri=ABSENT, pasid=ABSENT, sriov=ABSENT, ari=ABSENT, aer=ABSENT,
                            rcec=ABSENT, dsn=ABSENT, eetlp_prefix=False, ari_forwarding=False)
    ext = {k: (v if present(v) else ABSENT) for k, v in (
        ("acs", c.acs), ("ats", c.ats), ("pri", c.pri), ("pasid", c.pasid), ("ari", c.ari), ("aer", c.aer),
        ("rcec", c.rcec), ("dsn", c.dsn))}
    sr = c.sriov
    if present(sr):
        sr = replace(sr, driver_total_vfs=None, drivers_autoprobe=None)  # sysfs-only facts
    if (fn.config_size or CONFIG_SIZE) <= 256:
        ext = dict.fromkeys(ext, ABSENT)
        sr = ABSENT
    return Capabilities(sriov=sr if present(sr) else ABSENT, eetlp_prefix=c.eetlp_prefix,  # type: ignore[arg-type]
                        ari_forwarding=c.ari_forwarding, **ext)  # type: ignore[arg-type]


def _expected_bridge(fn: Function) -> BridgeInfo | None:
    if fn.header_type != 1:
        return None
    br = fn.bridge if isinstance(fn.bridge, BridgeInfo) else BridgeInfo()
    return BridgeInfo(br.primary or 0, br.secondary or 0, br.subordinate or 0,
                      br.io_window if isinstance(br.io_window, Window) else ABSENT,
                      br.mem_window if isinstance(br.mem_window, Window) else ABSENT,
                      br.pref_window if isinstance(br.pref_window, Window) else ABSENT)


def _check_round_trip(fn: Function) -> None:
    """decode_config(encode_config(fn)) gives back fn's config-derived facts."""
    size = fn.config_size or CONFIG_SIZE
    data = encode_config(fn)
    assert len(data) == CONFIG_SIZE
    f = decode_config(data[:size], size)
    where = str(fn.address)
    vf = bool(fn.is_virtfn)
    assert (f.vendor_id, f.device_id) == ((0xFFFF, 0xFFFF) if vf else (fn.vendor_id, fn.device_id)), where
    assert (f.revision, f.class_code, f.header_type, f.multifunction) == (
        fn.revision, fn.class_code, fn.header_type, fn.multifunction), where
    if fn.header_type == 0:
        assert (f.subsystem_vendor_id, f.subsystem_device_id) == (fn.subsystem_vendor_id, fn.subsystem_device_id), where
    elif fn.subsystem_vendor_id or fn.subsystem_device_id:
        assert (f.subsystem_vendor_id, f.subsystem_device_id) == (fn.subsystem_vendor_id, fn.subsystem_device_id), where
    assert f.bars == ([] if vf else _expected_raw_bars(fn.bars)), where
    rom = fn.rom if present(fn.rom) and fn.rom.start and not fn.rom.unassigned else None  # type: ignore[union-attr]
    assert f.rom_base == (rom.start if rom else 0), where  # type: ignore[union-attr]
    assert f.bridge == _expected_bridge(fn), where
    assert f.pcie_type == fn.pcie_type, where
    assert f.link == _expected_link(fn), where
    assert f.caps == _expected_caps(fn), where
    if present(fn.caps.sriov) and size > 256:
        assert f.vf_bars == _expected_raw_bars(fn.vf_bars), where
    if fn.pcie_type in (PcieType.ROOT_PORT, PcieType.SWITCH_DOWNSTREAM):
        slot = fn.slot
        if present(slot) and slot.number is not None:  # type: ignore[union-attr]
            assert f.slot_implemented, where
            assert (f.slot_number, f.slot_hotplug, f.slot_surprise) == (
                slot.number, slot.hotplug, slot.surprise), where  # type: ignore[union-attr]
        else:
            assert not f.slot_implemented and f.slot_hotplug is False, where


def _config_file(root, addr: Address) -> bytes:
    path = os.path.realpath(os.path.join(root, "sys/bus/pci/devices", str(addr)))
    with open(os.path.join(path, "config"), "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("name", CAPTURES)
def test_round_trip_on_every_captured_function(name, unpacked):
    t = load_sysfs(unpacked(name))
    assert len(t) > 0
    for fn in t:
        _check_round_trip(fn)


@pytest.mark.parametrize("name", CAPTURES)
def test_agrees_with_the_kernels_config_bytes(name, unpacked):
    """Header, BAR and bridge registers byte for byte; decoded capabilities fact for fact."""
    root = unpacked(name)
    t = load_sysfs(root)
    for fn in t:
        real = _config_file(root, fn.address)
        ours = encode_config(fn)[: len(real)]
        where = str(fn.address)
        assert ours[0x00:0x04] == real[0x00:0x04], where  # vendor, device (0xffff on VFs, like the hardware)
        assert ours[0x08:0x0C] == real[0x08:0x0C], where  # revision, class
        assert ours[0x0E] == real[0x0E], where  # header type, multifunction bit
        a, b = decode_config(real, len(real)), decode_config(ours, len(real))
        if fn.header_type == 0:
            assert ours[0x10:0x28] == real[0x10:0x28], where  # all six BAR registers
            assert ours[0x2C:0x30] == real[0x2C:0x30], where  # subsystem IDs
            assert ours[0x30:0x34] == real[0x30:0x34], where  # expansion ROM
        else:
            assert ours[0x10:0x1B] == real[0x10:0x1B], where  # BARs, primary/secondary/subordinate
            assert ours[0x38:0x3C] == real[0x38:0x3C], where  # expansion ROM
            for kind, regs in (("io", ((0x1C, 0x1E), (0x30, 0x34))), ("mem", ((0x20, 0x24),)),
                               ("pref", ((0x24, 0x30),))):
                theirs, mine = getattr(a.bridge, f"{kind}_window"), getattr(fn.bridge, f"{kind}_window")
                if theirs == mine and isinstance(mine, Window):  # (closed windows have many encodings)
                    for lo, hi in regs:
                        assert ours[lo:hi] == real[lo:hi], f"{where} {kind} window"
                else:  # the kernel's resource file wins over stale or unconfigured registers
                    assert getattr(b.bridge, f"{kind}_window") == mine, where
        assert (b.pcie_type, b.pcie_version, b.link, b.caps, b.vf_bars) == (
            a.pcie_type, a.pcie_version, a.link, a.caps, a.vf_bars), where
        assert (b.slot_implemented, b.slot_hotplug, b.slot_surprise, b.slot_number) == (
            a.slot_implemented, a.slot_hotplug, a.slot_surprise, a.slot_number), where
        if a.header_type == 1 and a.subsystem_vendor_id:
            assert (b.subsystem_vendor_id, b.subsystem_device_id) == (a.subsystem_vendor_id, a.subsystem_device_id)


def test_round_trip_on_a_synthetic_machine():
    t = generate(1500, seed=3)
    kinds = set()
    for fn in t:
        _check_round_trip(fn)
        kinds.update(k for k in ("acs", "ats", "pri", "pasid", "sriov", "ari", "aer", "rcec", "dsn")
                     if present(getattr(fn.caps, k)))
    assert kinds == {"acs", "ats", "pri", "pasid", "sriov", "ari", "aer", "rcec", "dsn"}


def _fn(**kw) -> Function:
    base = dict(address=Address(0, 1, 0, 0), vendor_id=0x8086, device_id=0x1234, subsystem_vendor_id=0x1028,
                subsystem_device_id=0x0001, class_code=0x020000, revision=1, header_type=0, multifunction=False,
                pcie_type=PcieType.ENDPOINT, config_size=4096, bars=(), rom=ABSENT, vf_bars=(), bridge=ABSENT,
                caps=Capabilities(acs=ABSENT, ats=ABSENT, pri=ABSENT, pasid=ABSENT, sriov=ABSENT, ari=ABSENT,
                                  aer=ABSENT, rcec=ABSENT, dsn=ABSENT, eetlp_prefix=False, ari_forwarding=False),
                slot=ABSENT, link=LinkInfo("8.0 GT/s", 4, "16.0 GT/s", 8))
    base.update(kw)
    return Function(**base)  # type: ignore[arg-type]


def test_every_extended_capability_field():
    caps = Capabilities(
        acs=AcsCap(cap=0x7F, ctrl=0x1D), ats=AtsCap(queue_depth=7, enabled=True, stu=3),
        pri=PriCap(enabled=True, capacity=0x1234, allocation=0x20),
        pasid=PasidCap(exec_supported=True, priv_supported=False, max_width=17, enabled=True),
        sriov=SriovCap(initial_vfs=200, total_vfs=256, num_vfs=250, vf_offset=3, vf_stride=2, vf_device=0xABCD,
                       ari_hierarchy=True, enabled=True),
        ari=AriCap(next_function=0x42), aer=AerCap(version=1), rcec=RcecCap(bitmap=0x8001_0010, next_bus=5, last_bus=9),
        dsn="01-23-45-67-89-ab-cd-ef", eetlp_prefix=True, ari_forwarding=False)
    vf_bars = (Bar(0, BarKind.PREF64, 0x40_0000_0000, 0x10000, total_size=0x10000 * 256),
               Bar(2, BarKind.MEM32, 0xE000_0000, 0x4000, total_size=0x4000 * 256), Bar(4, BarKind.IO, 0x2000, 0x20))
    fn = _fn(caps=caps, vf_bars=vf_bars, bars=(Bar(0, BarKind.PREF64, 0x1_2345_0000, 0x10000),
                                               Bar(2, BarKind.IO, 0x3000, 0x100), Bar(3, BarKind.MEM32, 0xFE00_0000, 0x1000),
                                               Bar(4, BarKind.MEM64, None, 0x4000, unassigned=True)),
             rom=Bar(6, BarKind.PREF32, 0xFE10_0000, 0x40000))
    _check_round_trip(fn)
    data = encode_config(fn)
    assert find_ext_cap(data, 0x0010) is not None
    f = decode_config(data)
    assert f.caps.rcec == RcecCap(bitmap=0x8001_0010, next_bus=5, last_bus=9)
    assert f.caps.dsn == "01-23-45-67-89-ab-cd-ef" and serial_value(f.caps.dsn) == 0x0123456789ABCDEF
    # The same without bus numbers: an RCEC association capability version 1.
    f1 = decode_config(encode_config(_fn(caps=replace(caps, rcec=RcecCap(bitmap=0x6)))))
    assert f1.caps.rcec == RcecCap(bitmap=0x6, next_bus=None, last_bus=None)


def test_bridge_registers_and_window_widths():
    br = BridgeInfo(primary=3, secondary=4, subordinate=0x17,
                    io_window=Window(WindowKind.IO, 0x1_2000, 0x1_2FFF),  # 32-bit I/O
                    mem_window=Window(WindowKind.MEM, 0xC010_0000, 0xC02F_FFFF, False),
                    pref_window=Window(WindowKind.PREF, 0x38_0000_0000, 0x38_3FFF_FFFF, True))
    port = _fn(class_code=0x060400, header_type=1, pcie_type=PcieType.SWITCH_DOWNSTREAM, bridge=br,
               bars=(Bar(0, BarKind.MEM32, 0xC000_0000, 0x4000),),
               slot=SlotInfo(physical_slot="7", number=300, hotplug=True, surprise=False),
               caps=replace(_fn().caps, acs=AcsCap(cap=0x5F, ctrl=0x1D), ari_forwarding=True))
    _check_round_trip(port)
    data = encode_config(port)
    assert data[0x18:0x1B] == bytes((3, 4, 0x17))
    assert data[0x1C] & 0xF == 1 and struct.unpack_from("<HH", data, 0x30) == (1, 1)
    closed = replace(port, bridge=BridgeInfo(3, 4, 4, ABSENT, ABSENT, ABSENT), slot=ABSENT)
    _check_round_trip(closed)
    f = decode_config(encode_config(closed))
    assert (f.bridge.io_window, f.bridge.mem_window, f.bridge.pref_window) == (ABSENT, ABSENT, ABSENT)


def test_prefixes_say_only_what_they_cover():
    """64 bytes (a non-root reader): a PCIe function's type is unknown, a conventional one's is not."""
    pcie = _fn(config_size=64)
    f = decode_config(encode_config(pcie)[:64], 64)
    assert f.pcie_type is None and f.caps == Capabilities() and f.vendor_id == 0x8086
    conv = _fn(config_size=64, pcie_type=PcieType.CONVENTIONAL, link=None)
    assert decode_config(encode_config(conv)[:64], 64).pcie_type is PcieType.CONVENTIONAL
    # 256 bytes: no extended space, so extended capabilities are known absent.
    short = _fn(config_size=256, caps=replace(_fn().caps, acs=AcsCap(1, 1)))
    assert decode_config(encode_config(short)[:256], 256).caps.acs is ABSENT


def test_express_version_1_leaves_devcap2_unknown():
    fn = _fn(caps=replace(_fn().caps, eetlp_prefix=None, ari_forwarding=None))
    f = decode_config(encode_config(fn))
    assert f.pcie_version == 1 and f.caps.eetlp_prefix is None and f.caps.ari_forwarding is None


def test_helpers():
    assert speed_code("16.0 GT/s") == 4 and speed_code("2.5 GT/s PCIe") == 1 and speed_code(None) == 0
    assert speed_code("Unknown") == 0


def test_the_decode_memo_changes_no_fact():
    """decode_config with one memo across every function of every capture (as the sysfs
    loader keeps it) gives every fact the plain decode gives; functions whose capability
    regions are equal but whose headers differ keep their own header facts."""
    from dataclasses import fields as dc_fields

    from conftest import QEMU

    memo: dict = {}
    shared = 0
    configs = []
    for tarball in sorted(QEMU.glob("*.tar.gz")):
        with tarfile.open(tarball) as tf:
            for m in tf.getmembers():
                if m.isfile() and m.name.endswith("/config") and "/devices/pci" in m.name:
                    configs.append(tf.extractfile(m).read())  # type: ignore[union-attr]
    assert len(configs) > 250
    # The same capability regions under other headers: other IDs, BARs, subsystem IDs.
    for data in configs[:200]:
        if len(data) >= 64:
            other = bytearray(data)
            other[0x00:0x04] = b"\x86\x80\x34\x12"
            other[0x10:0x14] = b"\x00\x00\xa0\xfe"
            other[0x2C:0x30] = b"\xaa\xaa\xbb\xbb"
            configs.append(bytes(other))
    for data in configs:
        before = len(memo)
        a, b = decode_config(data, len(data)), decode_config(data, len(data), memo)
        shared += len(memo) == before
        for f in dc_fields(a):
            assert getattr(a, f.name) == getattr(b, f.name), f.name
    assert shared > 150  # the memo was used, not only filled


def test_new_facts_are_the_dataclass_defaults():
    """The decoder's quick constructor gives what ConfigFacts(length=n) gives, fields in the
    same order, and lists of its own for each function (the decoder appends to them)."""
    from explorer.sources.config import ConfigFacts, _new_facts

    a, b = _new_facts(4096), ConfigFacts(length=4096)
    assert a == b
    assert list(vars(a)) == list(vars(b))
    c = _new_facts(256)
    assert c.length == 256
    for name in ("bars", "vf_bars", "cap_ids", "ecap_ids", "warnings"):
        assert getattr(a, name) == [] and getattr(a, name) is not getattr(c, name)
