"""lspci text as a source: real files load, and what they say matches what the kernel said.

Ground truth: each ``tests/fixtures/qemu/NAME.lspci.txt`` is ``lspci -vvvnn`` of the very
sysfs tree captured in ``NAME.tar.gz`` (loaded with ``load_sysfs``) and summarised in
``NAME.txt``; the ``tests/fixtures/lspci`` files are real machines' ``lspci -vvnn``
with the kernel's own ``IOMMU group:`` lines (``INDEX.tsv`` counts them).
"""

from __future__ import annotations

import csv
import re
from dataclasses import replace

import pytest

from conftest import LSPCI, QEMU
from explorer.model import (
    ABSENT,
    AcsCap,
    Address,
    BarKind,
    PcieType,
    RcecCap,
    SlotInfo,
    SriovCap,
    Topology,
    Window,
    WindowKind,
    acs_flags_str,
    present,
)
from explorer.model import names
from explorer.sources import SourceError, detect_kind
from explorer.sources.lspci import load_lspci, load_lspci_text, looks_like_lspci
from explorer.sources.sysfs import load_sysfs
from summary import bar_kind, expected_parent, parse_summary

LSPCI_CAPTURES = sorted(p.name[: -len(".lspci.txt")] for p in QEMU.glob("*.lspci.txt"))
LSPCI_FILES = sorted(p.name for p in LSPCI.glob("*.txt"))
_HEADER = re.compile(r"^(?:([0-9a-f]{4,8}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7]) ")


def A(text: str) -> Address:
    return Address.parse(text)


@pytest.fixture(autouse=True)
def _no_system_pci_ids(monkeypatch):
    """Names split without the machine's pci.ids, so results do not depend on it."""
    monkeypatch.setenv("PCI_EXPLORER_PCI_IDS", "")
    names.reset_cache()
    yield
    names.reset_cache()


def _index() -> dict[str, dict[str, str]]:
    with open(LSPCI / "INDEX.tsv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def _window(w):
    return (w.start, w.end) if isinstance(w, Window) else w


# =====================================================================================
# Real kernels: lspci of a captured tree says what sysfs of the same tree says
# =====================================================================================

@pytest.mark.parametrize("name", LSPCI_CAPTURES)
def test_lspci_matches_sysfs_of_same_capture(name, unpacked):
    sysfs = load_sysfs(unpacked(name))
    lsp = load_lspci(QEMU / f"{name}.lspci.txt")
    assert lsp.source.kind == "lspci"
    assert lsp.source.warnings == ()
    assert set(lsp.functions) == set(sysfs.functions), "device set"
    for addr, k in sysfs.functions.items():
        t = lsp[addr]
        where = f"{name} {addr}"
        assert t.parent == k.parent, f"{where} parent"
        assert t.driver == k.driver, f"{where} driver"
        assert t.iommu_group == k.iommu_group, f"{where} iommu group"
        assert t.pcie_type == k.pcie_type, f"{where} PCIe type"
        assert (t.vendor_id, t.device_id, t.class_code, t.revision) == (k.vendor_id, k.device_id, k.class_code, k.revision), where
        assert t.header_type == k.header_type, f"{where} header type"
        # Bus ranges and windows
        if present(k.bridge):
            assert present(t.bridge), where
            assert t.bridge.bus_range == k.bridge.bus_range, f"{where} bus range"
            assert t.bridge.primary == k.bridge.primary, f"{where} primary bus"
            for kind in WindowKind:
                assert _window(t.bridge.window(kind)) == _window(k.bridge.window(kind)), f"{where} {kind.value} window"
        else:
            assert t.bridge is ABSENT, where
        # Assigned BARs: index, start, size, kind
        kb = {b.index: (b.start, b.size, b.kind) for b in k.bars if b.assigned}
        tb = {b.index: (b.start, b.size, b.kind) for b in t.bars if b.assigned}
        assert tb == kb, f"{where} BARs"
        if present(k.rom):
            assert (t.rom.start, t.rom.size) == (k.rom.start, k.rom.size), f"{where} ROM"
        else:
            assert t.rom is ABSENT, f"{where} ROM"
        # ACS, and every capability lspci knows
        assert t.caps.acs == k.caps.acs, f"{where} ACS"
        for fld in ("acs", "ats", "pri", "pasid", "ari", "aer", "rcec", "dsn", "eetlp_prefix", "ari_forwarding"):
            tv = getattr(t.caps, fld)
            if tv is not None:
                assert tv == getattr(k.caps, fld), f"{where} caps.{fld}"
        if present(k.caps.sriov):
            sysfs_only = dict(driver_total_vfs=None, drivers_autoprobe=None)
            assert t.caps.sriov == replace(k.caps.sriov, **sysfs_only), f"{where} SR-IOV"
        else:
            assert t.caps.sriov == k.caps.sriov, f"{where} SR-IOV"
        # Slots, links, VF links, multifunction (where lspci can know)
        # lspci cannot show which driver owns a slot's hotplug: it stays unknown
        want_slot = replace(k.slot, hotplug_driver=None) if isinstance(k.slot, SlotInfo) else k.slot
        assert t.slot == want_slot, f"{where} slot"
        if t.link is not None:
            assert t.link == k.link, f"{where} link"
        assert (t.physfn, t.virtfns, t.is_virtfn) == (k.physfn, k.virtfns, k.is_virtfn), f"{where} VF links"
        if t.multifunction is not None:
            assert t.multifunction == k.multifunction, f"{where} multifunction"
        if t.subsystem_vendor_id is not None:
            assert (t.subsystem_vendor_id, t.subsystem_device_id) == (k.subsystem_vendor_id, k.subsystem_device_id), where
    assert {(h.domain, h.root_bus) for h in lsp.host_bridges} == {(h.domain, h.root_bus) for h in sysfs.host_bridges}
    assert all(h.windows is None for h in lsp.host_bridges)


@pytest.mark.parametrize("name", LSPCI_CAPTURES)
def test_lspci_matches_kernel_summary(name):
    """The same comparison against the plain-text summary written at capture time."""
    expected = parse_summary(QEMU / f"{name}.txt")
    t = load_lspci(QEMU / f"{name}.lspci.txt")
    assert {f.bdf for f in t} == set(expected)
    for bdf, exp in expected.items():
        fn = t[bdf]
        assert (fn.parent and str(fn.parent)) == expected_parent(expected, bdf), bdf
        assert (present(fn.driver) and fn.driver or None) == exp.driver, bdf
        assert (present(fn.iommu_group) and fn.iommu_group or None) == exp.group, bdf
        assert fn.pcie_type.value == exp.pcie_type, bdf
        assert fn.class_hex == exp.klass and fn.vendor_device == f"{exp.vendor}:{exp.device}", bdf
        for idx, (start, end, flags) in exp.bars.items():
            bar = {b.index: b for b in fn.bars}[idx]
            assert (bar.start, bar.size, bar.kind.value) == (start, end - start + 1, bar_kind(flags)), f"{bdf} BAR{idx}"
        if exp.acs is None:
            assert fn.caps.acs is ABSENT, bdf
        else:
            assert (acs_flags_str(fn.caps.acs.cap), acs_flags_str(fn.caps.acs.ctrl)) == exp.acs, bdf
        if exp.bus_range is not None:
            assert fn.bridge.bus_range == exp.bus_range, bdf
            for kind, w in exp.windows.items():
                assert _window(fn.bridge.window(WindowKind(kind))) == (w if w else ABSENT), f"{bdf} {kind}"
        for idx, (start, end, _flags) in exp.vf_bars.items():
            vb = {b.index: b for b in fn.vf_bars}[idx]
            assert (vb.start, vb.total_size) == (start, end - start + 1), f"{bdf} VF BAR{idx}"


def test_sriov_vfs_linked_by_routing_id():
    t = load_lspci(QEMU / "sriov-nvme.lspci.txt")
    pf = t["0000:01:00.0"]
    assert [str(a) for a in pf.virtfns] == ["0000:01:00.1", "0000:01:00.2", "0000:01:00.3"]
    assert pf.caps.sriov == SriovCap(initial_vfs=4, total_vfs=4, num_vfs=3, vf_offset=1, vf_stride=1,
                                     vf_device=0x0010, ari_hierarchy=True, enabled=True)
    for vf in pf.virtfns:
        assert t[vf].physfn == pf.address and t[vf].is_virtfn and t[vf].multifunction is False
    assert pf.is_virtfn is False and pf.multifunction is None
    # One VF's BAR is 16K ([virtual] in each VF's block); the IOV resource is that x TotalVFs.
    (vb,) = pf.vf_bars
    assert (vb.index, vb.kind, vb.start, vb.size, vb.total_size) == (0, BarKind.MEM64, 0xFE604000, 16 << 10, 64 << 10)
    assert t["0000:01:00.1"].bars[0].start == 0xFE604000


def test_slot_and_link_from_express_capability():
    t = load_lspci(QEMU / "sriov-nvme.lspci.txt")
    rp = t["0000:00:02.0"]
    assert rp.slot == SlotInfo(physical_slot=None, number=1, hotplug=True, surprise=True)
    assert (rp.link.max_speed, rp.link.max_width, rp.link.current_speed, rp.link.current_width) == ("16.0 GT/s", 32, "2.5 GT/s", 1)
    assert rp.caps.eetlp_prefix is True and rp.caps.ari_forwarding is True
    assert t["0000:01:00.0"].slot == SlotInfo(physical_slot="0")
    assert t["0000:00:1f.2"].slot is ABSENT and t["0000:00:1f.2"].pcie_type is PcieType.CONVENTIONAL


# =====================================================================================
# Real machines (linuxhw corpus)
# =====================================================================================

@pytest.mark.parametrize("fname", LSPCI_FILES)
def test_real_file_every_header_is_a_device(fname):
    row = _index()[fname]
    text = (LSPCI / fname).read_text()
    headers, groups = {}, {}
    cur = None
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            cur = Address(int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))
            headers[cur] = line
        elif cur is not None and line.startswith("\tIOMMU group: "):
            groups[cur] = line.split(": ", 1)[1].strip()
    t = load_lspci(LSPCI / fname)
    assert set(t.functions) == set(headers)
    assert len(t) == int(row["n_devices"])
    assert len(t.reported_groups) == int(row["n_groups"])
    for addr, fn in t.functions.items():
        assert fn.iommu_group == groups.get(addr, ABSENT), addr
        assert fn.vendor_id is not None and fn.device_id is not None and fn.class_code is not None, addr
        assert fn.pcie_type is not None, addr
        assert fn.driver is not None, addr  # the file has kernel lines: a name or ABSENT
    assert t.source.iommu_present is True


@pytest.mark.parametrize("fname", LSPCI_FILES)
def test_real_file_drivers_and_tree(fname):
    text = (LSPCI / fname).read_text()
    drivers, cur = {}, None
    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            cur = Address(int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))
        elif cur is not None and line.startswith("\tKernel driver in use: "):
            drivers[cur] = line.split(": ", 1)[1].strip()
    t = load_lspci(LSPCI / fname)
    for addr, fn in t.functions.items():
        assert fn.driver == drivers.get(addr, ABSENT), addr
        if fn.parent is not None:
            parent = t[fn.parent]
            lo, hi = parent.bridge.bus_range
            assert lo <= addr.bus <= hi and parent.address.domain == addr.domain
        else:
            assert any(h.domain == addr.domain and h.root_bus == addr.bus for h in t.host_bridges)


def test_vmd_domain_hangs_under_vmd_endpoint():
    t = load_lspci(LSPCI / "laptop-intel-zenbook-ux425-tgl-tb4-vmd-debian11-01.txt")
    vmd = A("0000:00:0e.0")
    assert t[vmd].device_id == 0x9A0B and t[vmd].vmd_domain == 0x10000
    assert t.vmd_domains == {0x10000: vmd}
    hb = t.host_bridge(0x10000, 0xE0)
    assert hb is not None and hb.vmd_owner == vmd and hb.windows is None
    rp, nvme = t["10000:e0:1d.0"], t["10000:e1:00.0"]
    assert rp.parent is None and rp.pcie_type is PcieType.ROOT_PORT
    assert nvme.parent == rp.address and nvme.driver == "nvme"
    # The kernel puts every device behind VMD into the VMD endpoint's group.
    assert rp.iommu_group == nvme.iommu_group == t[vmd].iommu_group
    domain_devices = [f for f in t if f.address.domain == 0x10000]
    assert len(domain_devices) == 2


def test_stderr_interleaved_mid_line_is_removed():
    t = load_lspci(LSPCI / "laptop-amd-framework13-7040-usb4-debian12-01.txt")
    (w,) = t.source.warnings
    assert w.startswith("line 338: stderr message removed: pcilib: Error reading")
    br = t["0000:00:08.2"].bridge
    assert br.io_window is ABSENT  # "I/O behind bridge: <stderr>\n[disabled] [32-bit]"
    assert _window(br.mem_window) == (0x90900000, 0x909FFFFF)
    assert br.bus_range == (0xC2, 0xC2)


def test_stderr_interleaved_mid_word_is_removed():
    t = load_lspci(LSPCI / "laptop-amd-framework16-7040-dgpu-switch-usb4-fedora41-01.txt")
    assert t.source.warnings[0].startswith("line 549: stderr message removed")
    fn = t["0000:00:08.2"]
    # "FRS- LN System CLS Not Sup<stderr>\nported, TPHComp- ExtTPHComp- ARIFwd-"
    assert fn.caps.ari_forwarding is False and fn.caps.eetlp_prefix is True


def test_arm_server_domains():
    t = load_lspci(LSPCI / "server-arm64-ampere-altra-2xnvgpu-astbridge-ubuntu2204-01.txt")
    assert t.domains == (0x0, 0x2, 0x4, 0x5, 0xC, 0xD)
    assert {(h.domain, h.root_bus) for h in t.host_bridges} == {(d, 0) for d in t.domains}
    assert t.vmd_domains == {}


def test_sriov_capable_igpu_without_vfs():
    t = load_lspci(LSPCI / "server-intel-w680-adl-igpu-sriov-debian11-01.txt")
    gpu = t["0000:00:02.0"]
    sr = gpu.caps.sriov
    assert (sr.initial_vfs, sr.total_vfs, sr.num_vfs, sr.vf_offset, sr.vf_stride, sr.vf_device) == (7, 7, 0, 1, 1, 0xA780)
    assert sr.enabled is False and gpu.virtfns == ()
    assert [(b.index, b.kind, b.start, b.size) for b in gpu.vf_bars] == [
        (0, BarKind.MEM64, 0x4010000000, None), (2, BarKind.PREF64, 0x4020000000, None)]
    # "Region 3: Memory at <ignored>": a BAR the OS ignored is known but unassigned.
    host = t["0000:00:00.0"]
    assert [(b.index, b.assigned) for b in host.bars] == [(3, False)]


def test_no_ext_caps_visible_leaves_them_unknown():
    """Framework 13 on Debian 12 shows no extended capability at all: ACS is unknown, not absent."""
    t = load_lspci(LSPCI / "laptop-amd-framework13-7040-usb4-debian12-01.txt")
    express = [f for f in t if f.pcie_type not in (None, PcieType.CONVENTIONAL)]
    assert express and all(f.caps.acs is None and f.caps.aer is None for f in express)


# =====================================================================================
# Forms of lspci output (small texts written like lspci writes them)
# =====================================================================================

RP = """\
00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:a33c] (rev f0) (prog-if 00 [Normal decode])
\tSubsystem: ASRock Incorporation Device [1849:a33c]
\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-
\tLatency: 0, Cache Line Size: 64 bytes
\tInterrupt: pin A routed to IRQ 120
\tNUMA node: 1
\tIOMMU group: 7
\tBus: primary=00, secondary=02, subordinate=03, sec-latency=0
\tI/O behind bridge: 0000e000-0000efff [size=4K]
\tMemory behind bridge: 6000-9fff [size=16K]
\tPrefetchable memory behind bridge: [disabled] [64-bit]
\tSecondary status: 66MHz- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- <SERR- <PERR-
\tBridgeCtl: Parity- SERR+ NoISA- VGA- VGA16- MAbort- >Reset- FastB2B-
\t\tPriDiscTmr- SecDiscTmr- DiscTmrStat- DiscTmrSERREn-
\tCapabilities: [40] Express (v2) Root Port (Slot+), MSI 00
\t\tDevCap:\tMaxPayload 256 bytes, PhantFunc 0
\t\t\tExtTag- RBE+
\t\tLnkCap:\tPort #5, Speed 8GT/s, Width x4, ASPM L0s L1, Exit Latency L0s <1us, L1 <16us
\t\t\tClockPM- Surprise- LLActRep+ BwNot+ ASPMOptComp+
\t\tLnkSta:\tSpeed 5GT/s (downgraded), Width x2 (downgraded)
\t\t\tTrErr- Train- SlotClk+ DLActive+ BWMgmt+ ABWMgmt-
\t\tSltCap:\tAttnBtn- PwrCtrl- MRL- AttnInd- PwrInd- HotPlug+ Surprise-
\t\t\tSlot #12, PowerLimit 25.000W; Interlock- NoCompl+
\t\tDevCap2: Completion Timeout: Range ABC, TimeoutDis+ NROPrPrP- LTR+
\t\t\t 10BitTagComp- 10BitTagReq- OBFF Not Supported, ExtFmt- EETLPPrefix-
\t\t\t FRS- LN System CLS Not Supported, TPHComp- ExtTPHComp- ARIFwd+
\t\t\t AtomicOpsCap: Routing- 32bit- 64bit- 128bitCAS-
\t\tDevCtl2: Completion Timeout: 50us to 50ms, TimeoutDis- LTR+ 10BitTagReq- OBFF Disabled, ARIFwd-
\t\t\t AtomicOpsCtl: ReqEn- EgressBlck-
\tCapabilities: [80] MSI: Enable+ Count=1/1 Maskable- 64bit-
\t\tAddress: fee00298  Data: 0000
\tCapabilities: [100 v1] Advanced Error Reporting
\t\tUESta:\tDLP- SDES- TLP- FCP- CmpltTO- CmpltAbrt- UnxCmplt- RxOF- MalfTLP- ECRC- UnsupReq- ACSViol-
\tCapabilities: [140 v1] Access Control Services
\t\tACSCap:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-
\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-
\tKernel driver in use: pcieport

02:00.0 Ethernet controller [0200]: Intel Corporation I210 Gigabit Network Connection [8086:1533] (rev 03)
\tSubsystem: ASRock Incorporation Device [1849:1533]
\tPhysical Slot: 12
\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-
\tIOMMU group: 8
\tRegion 0: Memory at a1200000 (32-bit, non-prefetchable) [size=128K]
\tRegion 2: I/O ports at e000 [disabled] [size=32]
\tRegion 3: Memory at a1220000 (32-bit, non-prefetchable) [size=16K]
\tExpansion ROM at a1100000 [disabled] [size=1M]
\tCapabilities: [a0] Express (v2) Endpoint, MSI 00
\t\tDevCap2: Completion Timeout: Range ABCD, TimeoutDis+ NROPrPrP- LTR+
\t\t\t 10BitTagComp- 10BitTagReq- OBFF Not Supported, ExtFmt- EETLPPrefix-
\tCapabilities: [100 v2] Advanced Error Reporting
\tCapabilities: [140 v1] Device Serial Number A8-A1-59-FF-FF-3D-A9-23
\tCapabilities: [1a0 v1] Transaction Processing Hints
\tKernel driver in use: igb
\tKernel modules: igb

03:00.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd NVMe SSD Controller SM981/PM981/PM983 [144d:a808] (prog-if 02 [NVM Express])
\tSubsystem: Samsung Electronics Co Ltd SSD 970 EVO/PM983 [144d:a801]
\tControl: I/O- Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-
\tIOMMU group: 9
\tRegion 0: Memory at 6000000000 (64-bit, prefetchable) [size=16K]
\tCapabilities: <access denied>

"""


def test_root_port_facts():
    t = load_lspci_text(RP, path="rp.txt")
    rp = t["0000:00:1c.0"]
    assert (rp.vendor_id, rp.device_id, rp.revision, rp.class_code) == (0x8086, 0xA33C, 0xF0, 0x060400)
    assert (rp.subsystem_vendor_id, rp.subsystem_device_id) == (0x1849, 0xA33C)
    assert rp.vendor_name == "Intel Corporation" and rp.device_name is None and rp.class_name == "PCI bridge"
    assert rp.header_type == 1 and rp.numa_node == 1 and rp.iommu_group == "7" and rp.driver == "pcieport"
    br = rp.bridge
    assert (br.primary, br.secondary, br.subordinate) == (0, 2, 3)
    assert br.io_window == Window(WindowKind.IO, 0xE000, 0xEFFF, None)
    assert br.mem_window == Window(WindowKind.MEM, 0x6000, 0x9FFF, False)
    assert br.pref_window is ABSENT
    assert rp.pcie_type is PcieType.ROOT_PORT
    assert rp.slot == SlotInfo(number=12, hotplug=True, surprise=False)
    assert (rp.link.max_speed, rp.link.max_width, rp.link.current_speed, rp.link.current_width) == ("8.0 GT/s", 4, "5.0 GT/s", 2)
    # DevCap2, not DevCtl2 (which says ARIFwd-).
    assert rp.caps.ari_forwarding is True and rp.caps.eetlp_prefix is False
    assert rp.caps.acs == AcsCap(0x1D, 0x1D)
    assert rp.caps.aer.version == 1
    assert rp.caps.sriov is ABSENT and rp.caps.dsn is ABSENT and rp.caps.ats is ABSENT
    assert rp.bars == () and rp.rom is ABSENT
    assert rp.multifunction is None


def test_endpoint_facts():
    t = load_lspci_text(RP)
    nic = t["0000:02:00.0"]
    assert nic.parent == A("0000:00:1c.0")
    assert nic.slot == SlotInfo(physical_slot="12")
    bars = {b.index: b for b in nic.bars}
    assert (bars[0].kind, bars[0].start, bars[0].size) == (BarKind.MEM32, 0xA1200000, 128 << 10)
    assert (bars[2].kind, bars[2].start, bars[2].size, bars[2].disabled) == (BarKind.IO, 0xE000, 32, True)
    assert nic.rom.start == 0xA1100000 and nic.rom.size == 1 << 20 and nic.rom.disabled
    assert nic.caps.dsn == "a8-a1-59-ff-ff-3d-a9-23"
    assert nic.caps.ari_forwarding is False  # reserved for endpoints
    assert nic.caps.acs is ABSENT and nic.caps.aer.version == 2
    assert nic.bridge is ABSENT and nic.header_type == 0
    assert nic.vendor_name is None and nic.device_name == "Intel Corporation I210 Gigabit Network Connection"


def test_access_denied_caps_are_unknown_not_absent():
    nvme = load_lspci_text(RP)["0000:03:00.0"]
    assert nvme.caps.acs is None and nvme.caps.sriov is None and nvme.pcie_type is None
    assert nvme.slot is None
    assert nvme.revision == 0  # no "(rev xx)": lspci omits a zero revision
    assert nvme.class_code == 0x010802
    assert nvme.driver is ABSENT  # the file has kernel lines for other devices
    assert nvme.parent == A("0000:00:1c.0")  # bus 3 is inside 02-03
    assert nvme.bars[0].kind is BarKind.PREF64 and nvme.bars[0].start == 0x6000000000


def test_file_forms_all_give_the_same_facts():
    base = load_lspci_text(RP)
    crlf = load_lspci_text(RP.replace("\n", "\r\n"))
    spaces = load_lspci_text(RP.replace("\t", "        "))
    quoted = load_lspci_text("".join("> " + ln + "\n" for ln in RP.splitlines()))
    nested = load_lspci_text("".join(">> " + ln + "\n" for ln in RP.splitlines()))
    domains = load_lspci_text(re.sub(r"^(?=[0-9a-f]{2}:)", "0000:", RP, flags=re.M))
    for other in (crlf, spaces, quoted, nested, domains):
        assert other.functions == base.functions
        assert other.source.warnings == base.source.warnings == ()


def test_stderr_anywhere_is_removed():
    msg = "pcilib: Error reading /sys/bus/pci/devices/0000:00:1c.0/label: Operation not permitted\n"
    i = RP.index("ARIFwd+")
    mid_word = RP[: i + 3] + msg + RP[i + 3:]
    t = load_lspci_text(mid_word)
    assert t.functions == load_lspci_text(RP).functions
    assert len(t.source.warnings) == 1 and "stderr message removed" in t.source.warnings[0]
    assert t.source.warnings[0].startswith("line 27:")
    # A whole stderr line between two lines, and one at the very start.
    j = RP.index("\tIOMMU group: 8")
    t2 = load_lspci_text("lspci: Unable to load libkmod resources: error -2\n" + RP[:j] + msg + RP[j:])
    assert t2.functions == load_lspci_text(RP).functions
    assert len(t2.source.warnings) == 2


def test_no_kernel_lines_anywhere_means_driver_unknown():
    text = "".join(ln + "\n" for ln in RP.splitlines() if not ln.startswith("\tKernel"))
    t = load_lspci_text(text)
    assert all(f.driver is None for f in t)


def test_no_group_lines_anywhere_means_group_unknown():
    text = "".join(ln + "\n" for ln in RP.splitlines() if "IOMMU group" not in ln)
    t = load_lspci_text(text)
    assert all(f.iommu_group is None for f in t) and t.source.iommu_present is None


def test_plain_lspci_nn_leaves_everything_else_unknown():
    text = (
        "00:00.0 Host bridge [0600]: Intel Corporation Device [8086:a700] (rev 01)\n"
        "00:02.0 VGA compatible controller [0300]: Intel Corporation Device [8086:a780] (rev 04)\n"
        "00:14.0 USB controller [0c03]: Intel Corporation Device [8086:7ae0] (rev 11)\n"
        "00:14.2 RAM memory [0500]: Intel Corporation Device [8086:7aa7] (rev 11)\n"
        "01:00.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd Device [144d:a80a]\n"
    )
    t = load_lspci_text(text)
    assert len(t) == 5
    fn = t["0000:00:14.0"]
    assert (fn.vendor_id, fn.device_id, fn.revision) == (0x8086, 0x7AE0, 0x11)
    assert fn.class_code is None and fn.class_name == "USB controller"  # prog-if is not shown
    for f in t:
        assert f.caps.acs is None and f.pcie_type is None and f.bars is None and f.bridge is None
        assert f.driver is None and f.iommu_group is None and f.header_type is None
    assert t["0000:00:14.0"].multifunction is True and t["0000:00:14.2"].multifunction is None
    assert t["0000:01:00.0"].parent is None  # no bridge says where bus 1 is: a root bus as far as we know
    assert {(h.domain, h.root_bus) for h in t.host_bridges} == {(0, 0), (0, 1)}


def test_kernel_only_output():
    """``lspci -k``: no blank lines between devices, kernel lines only."""
    text = (
        "00:14.0 USB controller: Intel Corporation Device 7ae0 (rev 11)\n"
        "\tSubsystem: ASRock Incorporation Device 7ae0\n"
        "\tKernel driver in use: xhci_hcd\n"
        "\tKernel modules: xhci_pci\n"
        "00:14.2 RAM memory: Intel Corporation Device 7aa7 (rev 11)\n"
        "\tSubsystem: ASRock Incorporation Device 7aa7\n"
        "00:16.0 Communication controller: Intel Corporation Device 7ae8 (rev 11)\n"
        "\tKernel modules: mei_me\n"
    )
    t = load_lspci_text(text)
    assert [f.driver for f in t] == ["xhci_hcd", ABSENT, ABSENT]
    assert t["0000:00:14.0"].device_id == 0x7AE0 and t["0000:00:14.0"].subsystem_device_id == 0x7AE0
    assert t.source.warnings == ()


def test_many_damaged_lines_keep_a_bounded_warning_list():
    bad = "".join(f"0{i % 10}:1f.9 Broken device\n\tRegion 0: Memory at zz\n" for i in range(500))
    t = load_lspci_text(RP + bad)
    assert len(t) == 3
    assert len(t.source.warnings) == 51 and t.source.warnings[-1].startswith("... and 450 more")


def test_numeric_forms():
    text = (
        "00:00.0 0600: 8086:29c0\n"
        "00:1f.2 0106: 8086:2922 (rev 02) (prog-if 01 [AHCI 1.0])\n"
        "00:1f.3 Class 0c05: Device 8086:2930 (rev 02)\n"
        "6a:00.4 Generic system peripheral [0807]: Intel Corporation Device 0b23\n"
        "00:01.0 Co-processor: IBM: Unknown device 00e0 (rev 01)\n"
    )
    t = load_lspci_text(text)
    assert (t["0000:00:00.0"].vendor_id, t["0000:00:00.0"].device_id, t["0000:00:00.0"].revision) == (0x8086, 0x29C0, 0)
    assert t["0000:00:1f.2"].class_code == 0x010601
    assert (t["0000:00:1f.3"].vendor_id, t["0000:00:1f.3"].device_id) == (0x8086, 0x2930)
    rcec = t["0000:6a:00.4"]
    assert (rcec.vendor_id, rcec.device_id, rcec.vendor_name) == (None, 0x0B23, "Intel Corporation")
    ibm = t["0000:00:01.0"]
    assert (ibm.device_id, ibm.vendor_name, ibm.revision) == (0x00E0, "IBM", 1)


def test_verbose_one_output():
    """``lspci -v``: no Region N, flags line, caps without register lines."""
    text = """\
00:1f.6 Ethernet controller: Intel Corporation Ethernet Connection (7) I219-V (rev 10)
\tSubsystem: ASRock Incorporation Device 15bc
\tFlags: bus master, fast devsel, latency 0, IRQ 129, NUMA node 0, IOMMU group 13
\tMemory at a1300000 (32-bit, non-prefetchable) [size=128K]
\tMemory at 6000000000 (64-bit, prefetchable) [size=16K]
\tI/O ports at 3000 [size=32]
\tCapabilities: [c8] Power Management version 3
\tCapabilities: [d0] MSI: Enable+ Count=1/1 Maskable- 64bit+
\tCapabilities: [e0] PCI Advanced Features
\tKernel driver in use: e1000e
\tKernel modules: e1000e

"""
    t = load_lspci_text(text)
    fn = t["0000:00:1f.6"]
    assert fn.iommu_group == "13" and fn.numa_node == 0 and fn.driver == "e1000e"
    assert [(b.index, b.kind) for b in fn.bars] == [(0, BarKind.MEM32), (1, BarKind.PREF64), (3, BarKind.IO)]
    assert any("BAR indices inferred" in w for w in t.source.warnings)
    assert fn.pcie_type is PcieType.CONVENTIONAL and fn.caps.acs is ABSENT
    assert fn.subsystem_device_id == 0x15BC and fn.subsystem_vendor_id is None
    assert fn.vendor_id is None and fn.device_name == "Intel Corporation Ethernet Connection (7) I219-V"


def test_cap_minus_means_no_capabilities():
    text = """\
00:1f.0 ISA bridge [0601]: Intel Corporation 82801IB (ICH9) LPC Interface Controller [8086:2918] (rev 02)
\tControl: I/O+ Mem+ BusMaster- SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR+ FastB2B- DisINTx-
\tStatus: Cap- 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-
"""
    fn = load_lspci_text(text)["0000:00:1f.0"]
    assert fn.pcie_type is PcieType.CONVENTIONAL
    assert fn.caps.acs is ABSENT and fn.caps.sriov is ABSENT and fn.caps.eetlp_prefix is False
    assert fn.vf_bars == () and fn.bars == ()


def test_truncated_last_block_keeps_unshown_caps_unknown():
    cut = RP[: RP.index("\tCapabilities: [80] MSI")]
    t = load_lspci_text(cut)
    rp = t["0000:00:1c.0"]
    assert rp.pcie_type is PcieType.ROOT_PORT
    assert rp.caps.acs is None and rp.caps.aer is None  # not shown, and the block was cut
    assert rp.driver is None  # no kernel lines seen at all


def test_window_forms():
    def windows(lines: str):
        text = ("00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:1901] (prog-if 00 [Normal decode])\n"
                "\tControl: I/O+ Mem+ BusMaster+\n\tBus: primary=00, secondary=01, subordinate=01, sec-latency=0\n"
                + lines + "\n\n")
        br = load_lspci_text(text)["0000:00:01.0"].bridge
        return br.io_window, br.mem_window, br.pref_window

    io, mem, pref = windows("\tI/O behind bridge: None\n\tMemory behind bridge: None\n\tPrefetchable memory behind bridge: None")
    assert io is mem is pref is ABSENT
    io, mem, pref = windows("\tI/O behind bridge: 0000f000-00000fff [disabled] [16-bit]\n"
                            "\tMemory behind bridge: fff00000-000fffff [disabled] [32-bit]\n"
                            "\tPrefetchable memory behind bridge: 00000000fff00000-00000000000fffff")
    assert io is mem is pref is ABSENT
    io, mem, pref = windows("\tI/O behind bridge: 0000e000-0000efff\n"
                            "\tMemory behind bridge: de000000-df0fffff\n"
                            "\tPrefetchable memory behind bridge: 00000000c0000000-00000000d1ffffff")
    assert (io.start, io.end, mem.start, mem.end) == (0xE000, 0xEFFF, 0xDE000000, 0xDF0FFFFF)
    assert (pref.start, pref.end, pref.is_64bit) == (0xC0000000, 0xD1FFFFFF, True)
    io, mem, pref = windows("\tMemory behind bridge: 90900000-909fffff [size=1M] [32-bit]\n"
                            "\tPrefetchable memory behind bridge: 8810800000-88108fffff [size=1M] [32-bit]")
    assert io is ABSENT  # not printed by lspci: the bridge has no I/O window
    assert pref.start == 0x8810800000 and pref.is_64bit is True  # above 4 GiB whatever the label says
    io, mem, pref = windows("\tPrefetchable memory behind bridge: 80000000-801fffff [size=2M] [32-bit]")
    assert pref.is_64bit is None  # newer lspci labels sysfs windows [32-bit] whatever they are


def test_unconfigured_bridge_forwards_nothing():
    t = load_lspci(QEMU / "hotplug-native-bridge-bus0.lspci.txt")
    br = t["0000:01:00.0"].bridge
    assert br.bus_range == (0, 0)
    assert br.io_window is br.mem_window is br.pref_window is ABSENT


def test_region_forms():
    text = """\
00:02.0 VGA compatible controller [0300]: Intel Corporation Device [8086:a780] (rev 04) (prog-if 00 [VGA controller])
\tControl: I/O+ Mem+ BusMaster+
\tStatus: Cap- 66MHz-
\tRegion 0: Memory at 6002000000 (64-bit, non-prefetchable) [size=16M]
\tRegion 2: [virtual] Memory at 4000000000 (64-bit, prefetchable) [size=256M]
\tRegion 4: I/O ports at <unassigned> [disabled]
\tRegion 5: Memory at <ignored> (32-bit, non-prefetchable)
\t[virtual] Expansion ROM at 000c0000 [disabled] [size=128K]

"""
    fn = load_lspci_text(text)["0000:00:02.0"]
    got = [(b.index, b.kind, b.start, b.size, b.assigned) for b in fn.bars]
    assert got == [
        (0, BarKind.MEM64, 0x6002000000, 16 << 20, True),
        (2, BarKind.PREF64, 0x4000000000, 256 << 20, True),
        (4, BarKind.IO, None, None, False),
        (5, BarKind.MEM32, None, None, False),
    ]
    assert fn.rom.start == 0xC0000 and fn.rom.size == 128 << 10


def test_express_types():
    types = {
        "Endpoint": PcieType.ENDPOINT, "Legacy Endpoint": PcieType.LEGACY_ENDPOINT,
        "Root Port (Slot-)": PcieType.ROOT_PORT, "Upstream Port": PcieType.SWITCH_UPSTREAM,
        "Downstream Port (Slot+)": PcieType.SWITCH_DOWNSTREAM,
        "PCI-Express to PCI/PCI-X Bridge": PcieType.PCIE_TO_PCI_BRIDGE,
        "PCI/PCI-X to PCI-Express Bridge (Slot-)": PcieType.PCI_TO_PCIE_BRIDGE,
        "Root Complex Integrated Endpoint": PcieType.RC_INTEGRATED_ENDPOINT,
        "Root Complex Event Collector": PcieType.RC_EVENT_COLLECTOR,
    }
    lines = []
    for i, label in enumerate(types):
        lines.append(f"00:{i + 1:02x}.0 Class [0880]: Vendor Device [8086:{i:04x}]\n"
                     f"\tStatus: Cap+ 66MHz-\n\tCapabilities: [40] Express (v2) {label}, IntMsgNum 0\n\n")
    t = load_lspci_text("".join(lines))
    for i, (label, want) in enumerate(types.items()):
        fn = t[f"0000:00:{i + 1:02x}.0"]
        assert fn.pcie_type is want, label
        # No extended capability anywhere in this file: they stay unknown.
        assert fn.caps.acs is None
    assert t["0000:00:05.0"].slot == SlotInfo()  # Slot+ but no SltCap lines (lspci -v)
    assert t["0000:00:03.0"].slot is ABSENT


def test_extended_capabilities_text():
    text = """\
00:02.0 Display controller [0380]: Vendor Device [8086:0001]
\tControl: I/O+ Mem+
\tStatus: Cap+ 66MHz-
\tCapabilities: [40] Express (v2) Root Complex Integrated Endpoint, MSI 00
\tCapabilities: [100 v1] Alternative Routing-ID Interpretation (ARI)
\t\tARICap:\tMFVC- ACS-, Next Function: 5
\t\tARICtl:\tMFVC- ACS-, Function Group: 0
\tCapabilities: [200 v1] Address Translation Service (ATS)
\t\tATSCap:\tInvalidate Queue Depth: 00
\t\tATSCtl:\tEnable+, Smallest Translation Unit: 00
\tCapabilities: [210 v1] Page Request Interface (PRI)
\t\tPRICtl: Enable- Reset-
\t\tPRISta: RF- UPRGI- Stopped+ PASID+
\t\tPage Request Capacity: 00008000, Page Request Allocation: 00000000
\tCapabilities: [220 v1] Process Address Space ID (PASID)
\t\tPASIDCap: Exec- Priv-, Max PASID Width: 14
\t\tPASIDCtl: Enable- Exec- Priv-
\tCapabilities: [230 v2] Root Complex Event Collector Endpoint Association
\t\tRCiEPBitmap: RCiEP at Device(s): 1, 6, 8-10, 12, 15
\t\tAssociatedBusNumbers: 02-08
\tCapabilities: [240 v1] Null

"""
    fn = load_lspci_text(text)["0000:00:02.0"]
    c = fn.caps
    assert c.ari.next_function == 5
    assert (c.ats.queue_depth, c.ats.enabled, c.ats.stu) == (32, True, 0)
    assert (c.pri.enabled, c.pri.capacity, c.pri.allocation) == (False, 0x8000, 0)
    assert (c.pasid.exec_supported, c.pasid.priv_supported, c.pasid.max_width, c.pasid.enabled) == (False, False, 0x14, False)
    assert c.rcec == RcecCap(bitmap=(1 << 1) | (1 << 6) | (0b111 << 8) | (1 << 12) | (1 << 15), next_bus=2, last_bus=8)
    assert c.rcec.devices == (1, 6, 8, 9, 10, 12, 15)
    assert c.acs is ABSENT and c.sriov is ABSENT and c.aer is ABSENT and c.dsn is ABSENT
    assert fn.link is None


def test_rcec_none_forms():
    text = ("00:00.4 Generic system peripheral [0807]: Intel Corporation Device [8086:0b23]\n"
            "\tStatus: Cap+\n\tCapabilities: [40] Express (v2) Root Complex Event Collector, MSI 00\n"
            "\tCapabilities: [160 v2] Root Complex Event Collector Endpoint Association\n"
            "\t\tRCiEPBitmap: 00000000 [none]\n\t\tAssociatedBusNumbers: ff-00 [none]\n\n")
    assert load_lspci_text(text)["0000:00:00.4"].caps.rcec == RcecCap(0, 0xFF, 0x00)


def test_vf_detection_needs_matching_id_and_routing_id():
    pf = """\
3b:00.0 Ethernet controller [0200]: Intel Corporation Ethernet Controller X710 [8086:1572] (rev 02)
\tControl: I/O- Mem+ BusMaster+
\tStatus: Cap+ 66MHz-
\tRegion 0: Memory at 38bffe000000 (64-bit, prefetchable) [size=16M]
\tCapabilities: [40] Express (v2) Endpoint, MSI 00
\tCapabilities: [e0] Single Root I/O Virtualization (SR-IOV)
\t\tIOVCap:\tMigration-, Interrupt Message Number: 000
\t\tIOVCtl:\tEnable+ Migration- Interrupt- MSE+ ARIHierarchy+
\t\tIOVSta:\tMigration-
\t\tInitial VFs: 64, Total VFs: 64, Number of VFs: 3, Function Dependency Link: 00
\t\tVF offset: 16, stride: 2, Device ID: 154c
\t\tSupported Page Size: 00000553, System Page Size: 00000001
\t\tRegion 0: Memory at 000038bfff800000 (64-bit, prefetchable)
\t\tRegion 3: Memory at 000038bfff900000 (64-bit, prefetchable)

"""

    def vf(addr: str, dev: str) -> str:
        return (f"{addr} Ethernet controller [0200]: Intel Corporation Ethernet Virtual Function [8086:{dev}] (rev 02)\n"
                "\tControl: I/O- Mem- BusMaster-\n\tStatus: Cap+ 66MHz-\n"
                "\tRegion 0: Memory at 38bfff800000 (64-bit, prefetchable) [virtual] [size=64K]\n"
                "\tRegion 3: Memory at 38bfff900000 (64-bit, prefetchable) [virtual] [size=16K]\n"
                "\tCapabilities: [70] Express (v2) Endpoint, MSI 00\n\n")

    # rid = devfn(3b:00.0)=0 + 16 + 2*i -> 3b:02.0, 3b:02.2, 3b:02.4
    text = pf + vf("3b:02.0", "154c") + vf("3b:02.2", "154c") + vf("3b:02.4", "1572") + vf("3b:02.1", "154c")
    t = load_lspci_text(text)
    p = t["0000:3b:00.0"]
    assert p.virtfns == (A("0000:3b:02.0"), A("0000:3b:02.2"))
    assert t["0000:3b:02.4"].physfn is None  # wrong device ID
    assert t["0000:3b:02.1"].physfn is None  # not a routing ID of this PF
    assert [(b.index, b.size, b.total_size) for b in p.vf_bars] == [(0, 64 << 10, 64 * (64 << 10)), (3, 16 << 10, 64 * (16 << 10))]
    assert t["0000:3b:02.0"].multifunction is False
    assert p.multifunction is None  # alone in its slot: the header bit is not in the text
    # 02.1 is no VF, so slot 02 holds a non-VF function besides VFs; only function 0 can be known.
    assert t["0000:3b:02.1"].multifunction is None


def test_vmd_synthetic_domain_owner():
    text = """\
0000:00:0e.0 RAID bus controller [0104]: Intel Corporation Volume Management Device NVMe RAID Controller [8086:467f]
\tControl: I/O- Mem+
\tStatus: Cap+
\tIOMMU group: 9

10000:e0:06.0 PCI bridge [0604]: Intel Corporation 12th Gen Core Processor PCI Express x4 Controller #0 [8086:464d] (rev 02) (prog-if 00 [Normal decode])
\tControl: I/O- Mem+
\tIOMMU group: 9
\tBus: primary=00, secondary=e1, subordinate=e1, sec-latency=0

10000:e1:00.0 Non-Volatile memory controller [0108]: Sandisk Corp Device [15b7:5017] (rev 01) (prog-if 02 [NVM Express])
\tControl: I/O- Mem+
\tIOMMU group: 9

"""
    t = load_lspci_text(text)
    assert t.vmd_domains == {0x10000: A("0000:00:0e.0")}
    assert t["0000:00:0e.0"].vmd_domain == 0x10000
    assert t["10000:e1:00.0"].parent == A("10000:e0:06.0") and t["10000:e0:06.0"].parent is None
    assert [(h.domain, h.root_bus, h.vmd_owner) for h in t.host_bridges] == [(0, 0, None), (0x10000, 0xE0, A("0000:00:0e.0"))]


def test_innermost_bridge_is_the_parent():
    def bridge(addr: str, sec: int, sub: int) -> str:
        return (f"{addr} PCI bridge [0604]: V D [1234:5678]\n\tControl: I/O+\n"
                f"\tBus: primary=00, secondary={sec:02x}, subordinate={sub:02x}, sec-latency=0\n\n")
    text = (bridge("00:01.0", 1, 9) + bridge("01:00.0", 2, 9) + bridge("02:00.0", 3, 3) + bridge("02:01.0", 4, 9)
            + "03:00.0 Ethernet controller [0200]: V D [1234:0001]\n\n"
            + "05:00.0 Ethernet controller [0200]: V D [1234:0001]\n\n"
            + "0001:05:00.0 Ethernet controller [0200]: V D [1234:0001]\n\n")
    t = load_lspci_text(text)
    assert t["0000:01:00.0"].parent == A("0000:00:01.0")
    assert t["0000:02:01.0"].parent == A("0000:01:00.0")
    assert t["0000:03:00.0"].parent == A("0000:02:00.0")
    assert t["0000:05:00.0"].parent == A("0000:02:01.0")
    assert t["0001:05:00.0"].parent is None  # other domain


# =====================================================================================
# Damaged input and auto-detection
# =====================================================================================

def test_not_lspci_is_a_source_error():
    for text in ("", "hello\nworld\n", "# a comment\n  - foo: bar\n"):
        with pytest.raises(SourceError) as e:
            load_lspci_text(text, path="x.txt")
        assert str(e.value).startswith("x.txt:1 [device]: no lspci device lines found")


def test_unreadable_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError) as e:
        load_lspci(tmp_path / "missing.txt")
    assert "cannot read" in str(e.value)


def test_bad_lines_are_skipped_with_warnings():
    text = ("some junk before\n" + RP.replace("00:1c.0 PCI bridge", "00:2c.0 PCI bridge", 1)
            .replace("\tRegion 2: I/O ports at e000 [disabled] [size=32]", "\tRegion 9: I/O ports at e000")
            .replace("\tRegion 3: Memory at a1220000", "\tRegion 3: Memory at zz")
            .replace("\tBus: primary=00, secondary=02, subordinate=03, sec-latency=0", "\tBus: what"))
    t = load_lspci_text(text, path="bad.txt")
    assert A("0000:02:00.0") in t and len(t) == 2
    w = "\n".join(t.source.warnings)
    assert "line 1: not lspci output; skipped" in w
    assert "line 2: bad device address" in w
    assert "BAR index 9 out of range" in w and "unreadable BAR" in w
    assert [b.index for b in t["0000:02:00.0"].bars] == [0]


def test_duplicate_blocks_are_merged():
    text = RP + "02:00.0 Ethernet controller [0200]: Intel Corporation I210 [8086:1533] (rev 03)\n\tNUMA node: 3\n\n"
    t = load_lspci_text(text)
    assert t["0000:02:00.0"].numa_node == 3 and t["0000:02:00.0"].iommu_group == "8"
    assert any("appears again" in w for w in t.source.warnings)


def test_looks_like_lspci():
    assert looks_like_lspci(RP)
    assert looks_like_lspci("> " + RP.replace("\n", "\n> "))
    assert looks_like_lspci("00:00.0 0600: 8086:29c0\n")
    assert looks_like_lspci("00: 86 80 29 c0 07 00 10 00 00 00 00 06 00 00 00 00\n"
                            "10: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n")
    assert not looks_like_lspci("topology:\n  name: x\n  devices: []\n")
    assert not looks_like_lspci("hello world\n")
    for p in list(LSPCI.glob("*.txt")) + list(QEMU.glob("*.lspci.txt")):
        assert looks_like_lspci(p.read_text()[:65536]), p.name
        assert detect_kind(str(p)) == "lspci", p.name


def test_load_source_dispatches_to_lspci():
    from explorer.sources import load_source

    t = load_source(str(QEMU / "base.lspci.txt"))
    assert isinstance(t, Topology) and t.source.kind == "lspci" and len(t) == 4


def test_big_file_is_fast():
    """Many functions (every block of a real file, renumbered) parse in linear time."""
    import time

    blocks = [b for b in (LSPCI / "laptop-intel-xps13-9310-tgl-tb4-lmde6-01.txt").read_text().split("\n\n") if b.strip()]
    out = []
    n = 0
    while n < 20000:
        for b in blocks:
            rest = b.split(" ", 1)[1]
            out.append(f"{n >> 16:04x}:{(n >> 8) & 0xFF:02x}:{(n >> 3) & 0x1F:02x}.{n & 7} {rest}")
            n += 1
    text = "\n\n".join(out) + "\n"
    t0 = time.process_time()
    t = load_lspci_text(text)
    spent = time.process_time() - t0
    assert len(t) == n
    assert spent < 20, f"{n} functions took {spent:.1f}s"


def test_hundred_thousand_functions_plain_lspci_is_fast():
    import time

    text = "".join(
        f"{n >> 16:04x}:{(n >> 8) & 0xFF:02x}:{(n >> 3) & 0x1F:02x}.{n & 7} Ethernet controller [0200]: "
        f"Intel Corporation Ethernet Virtual Function 700 Series [8086:154c] (rev 02)\n"
        for n in range(100_000)
    )
    t0 = time.process_time()
    t = load_lspci_text(text)
    spent = time.process_time() - t0
    assert len(t) == 100_000 and len(t.host_bridges) == -(-100_000 // 256)  # one root bus per 256 functions
    assert spent < 20, f"100k functions took {spent:.1f}s"
