"""Config-space hex dumps (``lspci -x/-xxx/-xxxx``): decoded by the one config decoder.

pciutils' own test dumps hold both the verbose text and the hex of the same config
space, so each is a check of the other: the text part alone and the hex part alone
must say the same wherever both say something.
"""

from __future__ import annotations

import csv
import re
import struct

import pytest

from conftest import PCIUTILS
from explorer.model import ABSENT, AcsCap, Address, BarKind, PcieType, RcecCap, SriovCap
from explorer.model import names
from explorer.sources.config import decode_config
from explorer.sources.lspci import load_lspci, load_lspci_text
from explorer.sources.lspci_hex import HEX_LINE_RE, assemble, config_fields, decode_dump, is_hex_line

DUMPS = sorted(p.name for p in PCIUTILS.iterdir() if p.name not in ("INDEX.tsv",))
_HDR = re.compile(r"^(?:[0-9a-f]{4,8}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7] ")

#: Where the text part of a pciutils dump disagrees with its own hex part.
KNOWN_DISAGREEMENTS = {
    # The text shows an RCEC association (devices 1, 6, 8-10, 12, 15; buses 02-08) that
    # the dumped bytes do not hold (bitmap 0, bus numbers ff-00 = "[none]").
    ("cap-rcec", "0000:6a:00.4"): {"caps.rcec"},
    # Old lspci printed the Device Serial Number bytes in the opposite order.
    ("cap-address-xlation", "0000:02:00.0"): {"caps.dsn"},
    ("cap-pcie-2", "0000:01:00.0"): {"caps.dsn"},
}

FIELDS = ("vendor_id", "device_id", "subsystem_vendor_id", "subsystem_device_id", "class_code", "revision",
          "header_type", "pcie_type", "link", "slot")
CAP_FIELDS = ("acs", "ats", "pri", "pasid", "sriov", "ari", "aer", "rcec", "dsn", "eetlp_prefix", "ari_forwarding")


@pytest.fixture(autouse=True)
def _no_system_pci_ids(monkeypatch):
    monkeypatch.setenv("PCI_EXPLORER_PCI_IDS", "")
    names.reset_cache()
    yield
    names.reset_cache()


def _index() -> dict[str, dict[str, str]]:
    with open(PCIUTILS / "INDEX.tsv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def _text_only(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not is_hex_line(ln)) + "\n\n"


def _hex_only(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if is_hex_line(ln) or _HDR.match(ln) or not ln.strip()) + "\n\n"


def _agree(a, b) -> bool:
    if a is None or b is None:
        return True
    if type(a) is type(b) and hasattr(a, "__dataclass_fields__"):
        return all(_agree(getattr(a, n), getattr(b, n)) for n in a.__dataclass_fields__)
    return a == b


def _win(w):
    """Windows compare by range; ABSENT and unknown stay what they are."""
    return (w.start, w.end) if hasattr(w, "start") else ("absent" if w is ABSENT else w)


def _slot(s):
    """A slot known only by its name (text) says nothing config space could confirm."""
    if s is not None and s is not ABSENT and s.number is None and s.hotplug is None and s.surprise is None:
        return None
    return s


def _dump_bytes(text: str) -> dict[Address, bytes]:
    """Independent reading of the hex: bytes per device, in file order."""
    out: dict[Address, bytearray] = {}
    cur = None
    for ln in text.splitlines():
        if _HDR.match(ln):
            cur = Address.parse(ln.split()[0])
            out.setdefault(cur, bytearray())
        elif cur is not None and re.match(r"^[0-9a-f]{2,3}: ", ln):
            out[cur] += bytes(int(x, 16) for x in ln.split(":", 1)[1].split())
    return {a: bytes(b) for a, b in out.items()}


def _hexdump(data: bytes) -> str:
    return "".join(f"{i:02x}: " + " ".join(f"{b:02x}" for b in data[i:i + 16]) + "\n" for i in range(0, len(data), 16))


# =====================================================================================
# pciutils' dumps
# =====================================================================================

@pytest.mark.parametrize("name", DUMPS)
def test_dump_loads_with_one_decoder(name):
    text = (PCIUTILS / name).read_text()
    t = load_lspci(PCIUTILS / name)
    raw = _dump_bytes(text)
    assert set(t.functions) == set(raw)
    for addr, data in raw.items():
        fn = t[addr]
        assert fn.config_size == len(data) and len(data) in (64, 256, 4096), addr
        facts = decode_config(data)
        assert (fn.vendor_id, fn.device_id, fn.class_code, fn.header_type) == (
            facts.vendor_id, facts.device_id, facts.class_code, facts.header_type), addr
        assert fn.pcie_type == facts.pcie_type and fn.multifunction == facts.multifunction, addr
        for fld in CAP_FIELDS:
            hv = getattr(facts.caps, fld)
            if hv is not None:
                assert getattr(fn.caps, fld) == hv, f"{addr} {fld}"
    expected_warnings = {a for (f, a) in KNOWN_DISAGREEMENTS if f == name}
    warned = {w.split(": ", 1)[0] for w in t.source.warnings if "disagree" in w}
    assert warned == expected_warnings
    assert all("disagree" in w for w in t.source.warnings), t.source.warnings


@pytest.mark.parametrize("name", DUMPS)
def test_text_part_agrees_with_hex_part(name):
    text = (PCIUTILS / name).read_text()
    by_text = load_lspci_text(_text_only(text), path=name)
    by_hex = load_lspci_text(_hex_only(text), path=name)
    assert set(by_text.functions) == set(by_hex.functions)
    known = 0
    for addr, t in by_text.functions.items():
        h = by_hex[addr]
        bad = {f for f in FIELDS if f != "slot" and not _agree(getattr(t, f), getattr(h, f))}
        if not _agree(_slot(t.slot), _slot(h.slot)):
            bad.add("slot")
        bad |= {f"caps.{f}" for f in CAP_FIELDS if not _agree(getattr(t.caps, f), getattr(h.caps, f))}
        if t.bridge and h.bridge:
            for f in ("primary", "secondary", "subordinate", "io_window", "mem_window", "pref_window"):
                if not _agree(_win(getattr(t.bridge, f)), _win(getattr(h.bridge, f))):
                    bad.add(f"bridge.{f}")
        hb = {b.index: b for b in h.bars or ()}
        for b in t.bars or ():
            if b.index in hb and b.start is not None and hb[b.index].start is not None:
                if (b.kind, b.start) != (hb[b.index].kind, hb[b.index].start):
                    bad.add(f"BAR{b.index}")
        assert bad == KNOWN_DISAGREEMENTS.get((name, str(addr)), set()), f"{name} {addr}: {bad}"
        known += sum(getattr(t.caps, f) is not None for f in CAP_FIELDS) + (t.pcie_type is not None)
    if any(ln[:1].isspace() and ln.strip() for ln in _text_only(text).splitlines()):
        assert known > 0, "the text part said nothing the hex part could confirm"


@pytest.mark.parametrize("name", [n for n, row in _index().items() if row["has_acs"] == "1"])
def test_acs_from_text_and_hex(name):
    text = (PCIUTILS / name).read_text()
    by_text = load_lspci_text(_text_only(text))
    t = load_lspci(PCIUTILS / name)
    acs = {a: f.caps.acs for a, f in t.functions.items() if isinstance(f.caps.acs, AcsCap)}
    assert acs, "INDEX says this dump has an ACS capability"
    for addr, cap in acs.items():
        assert by_text[addr].caps.acs == cap


def test_sriov_totals_from_text_and_hex():
    seen = 0
    for name in DUMPS:
        text = (PCIUTILS / name).read_text()
        if "SR-IOV" not in text:
            continue
        by_text = load_lspci_text(_text_only(text))
        for addr, fn in load_lspci(PCIUTILS / name).functions.items():
            if isinstance(fn.caps.sriov, SriovCap):
                seen += 1
                assert fn.caps.sriov == by_text[addr].caps.sriov, f"{name} {addr}"
                assert all(b.size is None for b in fn.vf_bars)  # no VF present to size them
    assert seen >= 3
    ea = load_lspci(PCIUTILS / "cap-ea-1")["0002:01:00.0"].caps.sriov
    assert (ea.initial_vfs, ea.total_vfs, ea.num_vfs, ea.vf_offset, ea.vf_stride, ea.vf_device, ea.ari_hierarchy) == (
        128, 128, 128, 1, 1, 0xA034, True)


def test_cap_rcec_text_and_hex_differ_and_hex_wins():
    text = (PCIUTILS / "cap-rcec").read_text()
    by_text = load_lspci_text(_text_only(text))["0000:6a:00.4"]
    assert by_text.caps.rcec.devices == (1, 6, 8, 9, 10, 12, 15)
    assert (by_text.caps.rcec.next_bus, by_text.caps.rcec.last_bus) == (2, 8)
    t = load_lspci(PCIUTILS / "cap-rcec")
    fn = t["0000:6a:00.4"]
    assert fn.pcie_type is PcieType.RC_EVENT_COLLECTOR
    assert fn.caps.rcec == RcecCap(bitmap=0, next_bus=0xFF, last_bus=0x00)
    assert fn.caps.aer.version == 1 and fn.caps.acs is ABSENT
    assert fn.numa_node == 0  # from the text
    (w,) = t.source.warnings
    assert w.startswith("0000:6a:00.4: lspci text and hex dump disagree on rcec")


def test_text_adds_what_config_cannot_say():
    t = load_lspci(PCIUTILS / "cap-dvsec-cxl")
    fn = t["0000:6b:00.0"]
    assert fn.slot is not None and fn.slot.physical_slot == "3"  # "Physical Slot: 3"
    assert fn.config_size == 4096 and fn.pcie_type is not None


def test_enhanced_allocation_bars_come_from_the_text():
    """EA BARs are not in the BAR registers: the hex shows none, the text shows them."""
    fn = load_lspci(PCIUTILS / "cap-ea-1")["0002:01:00.0"]
    starts = {b.index: b.start for b in fn.bars}
    assert starts[0] == 0x843000000000 and starts[4] == 0x843060000000


def test_upper_half_of_64bit_bar_is_not_a_bar():
    fn = load_lspci(PCIUTILS / "cap-ide")["0000:e1:00.0"]
    assert [(b.index, b.kind) for b in fn.bars] == [(0, BarKind.PREF64), (2, BarKind.PREF64)]


def test_old_slot_number_format_is_hex():
    """pciutils 2.x printed ``Slot # 40`` (hex); the config bytes agree: slot 64."""
    text = (PCIUTILS / "cap-pcie-1").read_text()
    assert "Slot # 40," in text
    assert load_lspci_text(_text_only(text))["0000:00:01.0"].slot.number == 0x40
    assert load_lspci(PCIUTILS / "cap-pcie-1")["0000:00:01.0"].slot.number == 0x40


def test_hex_only_trees_derive_parents():
    t = load_lspci(PCIUTILS / "tree-asus-p6t6")
    assert t["0000:04:00.0"].parent == Address.parse("0000:03:00.0")
    assert t["0000:03:00.0"].parent == Address.parse("0000:02:00.0")
    assert t["0000:02:00.0"].parent == Address.parse("0000:00:03.0")
    t = load_lspci(PCIUTILS / "PCI-X-bridges-and-domains")
    assert t["0001:62:00.0"].parent == Address.parse("0001:61:01.0")
    assert t["0001:61:01.0"].parent == Address.parse("0001:00:02.6")
    assert t.domains == (0, 1, 2, 3, 4)


# =====================================================================================
# Dump sizes and merging with text (synthetic config space)
# =====================================================================================

def _endpoint_config(size: int, bar0: int = 0xFE600004, with_acs: bool = True) -> bytes:
    """A PCIe endpoint: BAR0 64-bit at 0xfe600000, Express cap at 0x40, ACS at 0x100."""
    c = bytearray(size)
    struct.pack_into("<HHHH", c, 0, 0x1B36, 0x0010, 0x0006, 0x0010)  # status: cap list
    c[0x08], c[0x09], c[0x0A], c[0x0B], c[0x0E] = 2, 0x02, 0x08, 0x01, 0x00
    struct.pack_into("<II", c, 0x10, bar0, 0)
    struct.pack_into("<HH", c, 0x2C, 0x1AF4, 0x1100)
    c[0x34] = 0x40
    if size > 0x40:
        c[0x40], c[0x41] = 0x10, 0x00
        struct.pack_into("<H", c, 0x42, 0x0002)  # v2, endpoint
        struct.pack_into("<I", c, 0x4C, 0x11)  # LnkCap 2.5GT/s x1
        struct.pack_into("<H", c, 0x52, 0x11)
        struct.pack_into("<I", c, 0x64, 1 << 21)  # DevCap2 EETLPPrefix
    if size > 0x100 and with_acs:
        struct.pack_into("<IHH", c, 0x100, (1 << 16) | 0x000D, 0x1F, 0x0F)
    return bytes(c)


def _block(head: str, data: bytes, text: str = "") -> str:
    return head + "\n" + text + _hexdump(data) + "\n"


def test_64_byte_dump_leaves_capabilities_unknown():
    t = load_lspci_text(_block("01:00.0 Class 0108: 1b36:0010", _endpoint_config(64)))
    fn = t["0000:01:00.0"]
    assert fn.config_size == 64 and (fn.vendor_id, fn.device_id, fn.revision) == (0x1B36, 0x0010, 2)
    assert fn.caps.acs is None and fn.pcie_type is None and fn.link is None
    assert [(b.index, b.kind, b.start, b.size) for b in fn.bars] == [(0, BarKind.MEM64, 0xFE600000, None)]
    assert fn.driver is None and fn.iommu_group is None


def test_256_byte_dump_leaves_extended_capabilities_unknown():
    fn = load_lspci_text(_block("01:00.0 Class 0108: 1b36:0010", _endpoint_config(256)))["0000:01:00.0"]
    assert fn.pcie_type is PcieType.ENDPOINT and fn.caps.eetlp_prefix is True
    assert fn.caps.acs is None and fn.caps.sriov is None  # the dump stops at 0x100
    assert fn.link.max_speed == "2.5 GT/s"


def test_4096_byte_dump_knows_extended_capabilities():
    fn = load_lspci_text(_block("01:00.0 Class 0108: 1b36:0010", _endpoint_config(4096)))["0000:01:00.0"]
    assert fn.caps.acs == AcsCap(0x1F, 0x0F) and fn.caps.sriov is ABSENT and fn.caps.aer is ABSENT


def test_text_sizes_names_and_kernel_facts_join_the_hex():
    text = ("\tSubsystem: Red Hat, Inc. Device [1af4:1100]\n\tIOMMU group: 4\n"
            "\tRegion 0: Memory at fe600000 (64-bit, non-prefetchable) [size=16K]\n"
            "\tCapabilities: [40] Express (v2) Endpoint, MSI 00\n\tKernel driver in use: nvme\n")
    t = load_lspci_text(_block("01:00.0 Non-Volatile memory controller [0108]: Red Hat, Inc. QEMU NVM Express Controller [1b36:0010] (rev 02) (prog-if 02 [NVM Express])",
                               _endpoint_config(4096), text))
    fn = t["0000:01:00.0"]
    assert (fn.bars[0].start, fn.bars[0].size, fn.bars[0].kind) == (0xFE600000, 16 << 10, BarKind.MEM64)
    assert fn.driver == "nvme" and fn.iommu_group == "4" and fn.subsystem_name == "Red Hat, Inc. Device"
    assert fn.config_size == 4096 and fn.caps.acs == AcsCap(0x1F, 0x0F)
    assert t.source.warnings == ()


def test_virtual_bar_address_comes_from_the_text():
    """A VF's BAR registers read 0; lspci shows the OS's address as [virtual]."""
    text = "\tRegion 0: Memory at fe604000 (64-bit, non-prefetchable) [virtual] [size=16K]\n"
    fn = load_lspci_text(_block("01:00.1 Class 0108: 1b36:0010", _endpoint_config(256, bar0=0x4), text))["0000:01:00.1"]
    assert (fn.bars[0].start, fn.bars[0].size, fn.bars[0].assigned) == (0xFE604000, 16 << 10, True)


def test_text_and_hex_disagreement_is_reported():
    head = "01:00.0 Non-Volatile memory controller [0108]: Red Hat, Inc. Device [1b36:0011] (rev 02)"
    t = load_lspci_text(_block(head, _endpoint_config(64)))
    fn = t["0000:01:00.0"]
    assert fn.device_id == 0x0010  # the dump wins
    assert any("disagree on device_id (text 0x11, hex 0x10)" in w for w in t.source.warnings)


def test_separate_text_and_hex_runs_merge():
    """``lspci -vv`` followed by ``lspci -xxx`` of the same machine: one device each."""
    head = "01:00.0 Non-Volatile memory controller [0108]: Red Hat, Inc. Device [1b36:0010] (rev 02)"
    verbose = head + "\n\tIOMMU group: 3\n\tKernel driver in use: nvme\n\n"
    dump = head + "\n" + _hexdump(_endpoint_config(256)) + "\n"
    t = load_lspci_text(verbose + dump)
    fn = t["0000:01:00.0"]
    assert fn.iommu_group == "3" and fn.driver == "nvme" and fn.config_size == 256
    assert any("appears again" in w for w in t.source.warnings)


# =====================================================================================
# Reassembling the bytes
# =====================================================================================

def test_assemble_contiguous_prefix():
    data = bytes(range(256))
    lines = [(i + 1, ln) for i, ln in enumerate(_hexdump(data).splitlines())]
    d = assemble(lines)
    assert d.data == data and d.warnings == [] and d.first_line == 1


def test_assemble_gap_duplicate_misaligned_and_short_lines():
    data = bytes(range(64))
    lines = [(i + 1, ln) for i, ln in enumerate(_hexdump(data).splitlines())]
    gap = assemble([lines[0], lines[1], lines[3]], "00:00.0")
    assert gap.data == data[:32]
    assert gap.warnings == ["00:00.0: line 4: hex dump has no line for offset 0x20; 1 line(s) after the gap ignored"]
    dup = assemble([lines[0], lines[0], lines[1]])
    assert dup.data == data[:32] and "given twice" in dup.warnings[0]
    odd = assemble([lines[0], (9, "18: 00 01 02")])
    assert odd.data == data[:16] and "not a multiple of 16" in odd.warnings[0]
    short = assemble([lines[0], (2, "10: 00 01 02"), lines[2]])
    assert short.data == data[:16] + bytes([0, 1, 2]) and "short hex line" in short.warnings[0]
    nostart = assemble([lines[1]])
    assert nostart.data == b"" and "does not start at offset 0" in nostart.warnings[-1]
    junk = assemble([(5, "zz: 00")])
    assert junk.data == b"" and junk.warnings == ["line 5: not a hex dump line; skipped"]


def test_hex_line_pattern():
    assert is_hex_line("00: 86 80 29 c0 07 00 10 00 00 00 00 06 00 00 00 00")
    assert is_hex_line("ff0: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
    assert is_hex_line("\t10: 00 01")
    assert not is_hex_line("00:00.0 Host bridge: Intel")
    assert not is_hex_line("Capabilities: [40] Express")
    assert not is_hex_line("00: 86 80 29 c0 07 00 10 00 00 00 00 06 00 00 00 00 11")  # 17 bytes
    assert HEX_LINE_RE.match("000: 00")


def test_config_fields_for_bridge_and_cardbus():
    bridge = bytearray(64)
    struct.pack_into("<HHHH", bridge, 0, 0x8086, 0x1234, 0, 0)
    bridge[0x0E], bridge[0x0B], bridge[0x0A] = 0x81, 0x06, 0x04
    bridge[0x18:0x1B] = bytes([0, 2, 5])
    struct.pack_into("<HH", bridge, 0x20, 0xFE60, 0xFE70)
    f = config_fields(decode_dump(bytes(bridge)), bytes(bridge))
    assert f["header_type"] == 1 and f["multifunction"] is True
    br = f["bridge"]
    assert br.bus_range == (2, 5) and (br.mem_window.start, br.mem_window.end) == (0xFE600000, 0xFE7FFFFF)
    cardbus = bytearray(64)
    cardbus[0x0E], cardbus[0x0B], cardbus[0x0A] = 0x02, 0x06, 0x07
    cardbus[0x18:0x1B] = bytes([2, 3, 4])
    f = config_fields(decode_dump(bytes(cardbus)), bytes(cardbus))
    assert f["bridge"].bus_range == (3, 4) and f["bridge"].mem_window is None
