"""Synthetic machines: exact sizes, deterministic by seed, and consistent like a real kernel's tree."""

from __future__ import annotations

import collections

import pytest

from explorer.model import ABSENT, Address, BarKind, PcieType, Topology, Window, WindowKind, present
from explorer.sources.synthetic import MEM32_LIMIT, generate

try:  # layer 3; the generator itself never imports it (it takes a labelling function)
    from explorer.kernel.groups import predict_groups
except ImportError:  # pragma: no cover - until the kernel layer has it
    predict_groups = None


@pytest.fixture(scope="module")
def machine() -> Topology:
    return generate(2500, seed=7)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7, 12, 33, 100, 257, 999, 4000])
def test_exactly_n_functions(n):
    t = generate(n, seed=n)
    assert len(t) == n
    assert len(set(t.functions)) == n


def test_deterministic_by_seed():
    a, b = generate(800, seed=42), generate(800, seed=42)
    assert a.functions == b.functions and a.host_bridges == b.host_bridges
    c = generate(800, seed=43)
    assert c.functions != a.functions
    with pytest.raises(ValueError):
        generate(-1)


def _resources(fn) -> list[tuple[bool, int, int, str]]:
    """(is I/O, start, end, what) of everything a function decodes from its upstream window."""
    out = []
    for b in fn.bars or ():
        if b.start is not None:
            out.append((b.kind is BarKind.IO, b.start, b.end, f"{fn.address} BAR{b.index}"))
    if present(fn.rom):
        out.append((False, fn.rom.start, fn.rom.end, f"{fn.address} ROM"))
    for b in fn.vf_bars or ():
        out.append((b.kind is BarKind.IO, b.start, b.start + b.total_size - 1, f"{fn.address} IOV BAR{b.index}"))
    if present(fn.bridge):
        for w in (fn.bridge.io_window, fn.bridge.mem_window, fn.bridge.pref_window):
            if isinstance(w, Window):
                out.append((w.kind is WindowKind.IO, w.start, w.end, f"{fn.address} {w.kind.value} window"))
    return out


def _upstream_windows(t: Topology, fn) -> list[tuple[bool, int, int]]:
    if fn.parent is not None:
        br = t[fn.parent].bridge
        return [(w.kind is WindowKind.IO, w.start, w.end) for w in (br.io_window, br.mem_window, br.pref_window)
                if isinstance(w, Window)]
    hb = t.host_bridge(fn.address.domain, fn.address.bus)
    if hb.vmd_owner is not None:  # a VMD domain decodes through its endpoint's memory BARs
        return [(False, b.start, b.end) for b in t[hb.vmd_owner].bars if b.kind is not BarKind.IO]
    return [(w.kind is WindowKind.IO, w.start, w.end) for w in hb.windows]


def test_structural_invariants(machine):
    t = machine
    siblings: dict[object, list] = collections.defaultdict(list)
    for fn in t:
        a = fn.address
        hb = t.host_bridge(a.domain, a.bus)
        assert hb is not None and hb.bus_range[0] <= a.bus <= hb.bus_range[1], a
        if fn.parent is not None:
            up = t[fn.parent]
            assert up.bridge.secondary <= a.bus <= up.bridge.subordinate, f"{a} outside {up.address}'s buses"
            if not fn.is_virtfn:
                assert a.bus == up.bridge.secondary, a
            if present(fn.bridge):
                assert up.bridge.secondary < fn.bridge.secondary <= fn.bridge.subordinate <= up.bridge.subordinate, a
        else:
            assert fn.is_virtfn or a.bus == hb.root_bus, a
        # every resource inside a window of the upstream bridge (host bridge, VMD BAR)
        wins = _upstream_windows(t, fn)
        for io, s, e, what in _resources(fn):
            assert any(wio == io and ws <= s and e <= we for wio, ws, we in wins), what
        if not fn.is_virtfn:
            siblings[fn.parent or ("root", a.domain, hb.root_bus)] += _resources(fn)
    for key, rs in siblings.items():
        for io in (True, False):
            spans = sorted((s, e, what) for rio, s, e, what in rs if rio == io)
            for (s1, e1, w1), (s2, e2, w2) in zip(spans, spans[1:]):
                assert s2 > e1, f"{w1} overlaps {w2}"
    # sibling bridges' bus ranges are disjoint; host bridges' windows and bus ranges too
    ranges = collections.defaultdict(list)
    for fn in t:
        if present(fn.bridge):
            ranges[(fn.address.domain, fn.parent)].append((fn.bridge.secondary, fn.bridge.subordinate))
    for rs in ranges.values():
        rs.sort()
        assert all(b[0] > a[1] for a, b in zip(rs, rs[1:]))
    mem = sorted((w.start, w.end) for hb in t.host_bridges if hb.windows for w in hb.windows if w.kind is WindowKind.MEM)
    assert all(b[0] > a[1] for a, b in zip(mem, mem[1:]))
    assert all(e < MEM32_LIMIT or s >= 1 << 32 for s, e in mem)
    per_domain = collections.defaultdict(list)
    for hb in t.host_bridges:
        per_domain[hb.domain].append(hb.bus_range)
    for rs in per_domain.values():
        rs.sort()
        assert all(b[0] > a[1] for a, b in zip(rs, rs[1:])) and rs[-1][1] <= 0xFF


def test_vfs_follow_offset_and_stride(machine):
    seen = 0
    beyond = 0
    for pf in machine:
        sr = pf.caps.sriov
        if not present(sr) or not pf.virtfns:
            continue
        rid = (pf.address.bus << 8) | pf.address.devfn
        assert len(pf.virtfns) == sr.num_vfs and sr.num_vfs <= sr.total_vfs
        for j, va in enumerate(pf.virtfns):
            assert (va.bus << 8) | va.devfn == rid + sr.vf_offset + j * sr.vf_stride
            vf = machine[va]
            assert vf.is_virtfn and vf.physfn == pf.address and vf.parent == pf.parent
            assert vf.device_id == sr.vf_device and vf.vendor_id == pf.vendor_id
            for b in vf.bars:
                iov = next(v for v in pf.vf_bars if v.index == b.index)
                assert b.start == iov.start + j * iov.size and b.size == iov.size
            beyond += va.bus != pf.address.bus
            seen += 1
        # the port's range reserves the buses TotalVFs would reach
        last = rid + sr.vf_offset + (sr.total_vfs - 1) * sr.vf_stride
        assert last >> 8 <= machine[pf.parent].bridge.subordinate
    assert seen > 100 and beyond > 0


def test_every_feature_is_there(machine):
    t = machine
    by_type = collections.Counter(fn.pcie_type for fn in t)
    for kind in PcieType:
        if kind not in (PcieType.LEGACY_ENDPOINT, PcieType.PCI_TO_PCIE_BRIDGE):
            assert by_type[kind] > 0, kind
    rps = [fn for fn in t if fn.pcie_type is PcieType.ROOT_PORT]
    assert any(fn.caps.acs is ABSENT for fn in rps) and any(present(fn.caps.acs) for fn in rps)
    assert any(present(fn.slot) and fn.slot.hotplug for fn in rps)
    assert any(present(fn.slot) and fn.slot.hotplug is False for fn in rps)
    dsps = [fn for fn in t if fn.pcie_type is PcieType.SWITCH_DOWNSTREAM]
    assert any(fn.caps.acs is ABSENT for fn in dsps) and any(present(fn.caps.acs) for fn in dsps)
    assert any(not t.children(fn.address) for fn in dsps)  # empty hot-plug downstream ports
    assert any(fn.multifunction and fn.pcie_type is PcieType.ENDPOINT for fn in t)
    assert any(fn.multifunction is False and fn.pcie_type is PcieType.ENDPOINT and not fn.is_virtfn for fn in t)
    # conventional devices behind PCIe-to-PCI bridges
    p2p = [fn for fn in t if fn.pcie_type is PcieType.PCIE_TO_PCI_BRIDGE]
    assert any(t[c].pcie_type is PcieType.CONVENTIONAL for b in p2p for c in t.children(b.address))
    # an RCEC naming the RCiEPs on its bus
    rcec = next(fn for fn in t if fn.pcie_type is PcieType.RC_EVENT_COLLECTOR)
    for d in rcec.caps.rcec.devices:
        assert t[Address(rcec.address.domain, rcec.address.bus, d, 0)].pcie_type is PcieType.RC_INTEGRATED_ENDPOINT
    # VMD: 8086:28c0 owning a domain >= 0x10000 with NVMe behind root ports
    assert t.vmd_domains and min(t.vmd_domains) >= 0x10000
    for dom, owner in t.vmd_domains.items():
        assert t[owner].vendor_device == "8086:28c0" and t[owner].vmd_domain == dom
        inside = [fn for fn in t if fn.address.domain == dom]
        assert any(fn.class_code == 0x010802 and t[fn.parent].pcie_type is PcieType.ROOT_PORT for fn in inside)
        hb = t.host_bridge(dom)
        assert hb.vmd_owner == owner and hb.windows is None
    assert len({hb.domain for hb in t.host_bridges if hb.vmd_owner is None}) >= 2
    assert len(t.host_bridges) >= 3


def test_big_machines_add_domains():
    t = generate(30000, seed=1)
    assert len(t) == 30000
    domains = {a.domain for a in t.functions if a.domain < 0x10000}
    assert len(domains) >= 3
    mem = [w for hb in t.host_bridges if hb.windows for w in hb.windows if w.kind is WindowKind.MEM and w.end < 1 << 32]
    assert max(w.end for w in mem) < MEM32_LIMIT


def test_group_labels_from_a_labelling_function():
    t = generate(300, seed=2, label_groups=lambda topo: {a: f"g{a.bus}" for a in topo.functions})
    labels = [fn.iommu_group for fn in t]
    assert all(isinstance(x, str) and x.isdigit() for x in labels)
    firsts = {}
    for fn in t:
        firsts.setdefault(fn.iommu_group, fn.address)
    assert [int(k) for k in firsts] == list(range(len(firsts)))  # numbered in address order
    for fn in t:  # one label per (domain, bus) as the labelling function said
        mates = [g for g in t if (g.address.domain, g.address.bus) == (fn.address.domain, fn.address.bus)]
        assert {g.iommu_group for g in mates} == {fn.iommu_group}
    assert t.source.iommu_present and len(t.source.group_types) == len(firsts)


@pytest.mark.skipif(predict_groups is None, reason="explorer.kernel.groups not available")
def test_groups_labelled_by_the_kernel_rules_are_what_the_kernel_would_form():
    t = generate(1200, seed=4, label_groups=lambda topo: predict_groups(topo).group_of)
    assert all(isinstance(fn.iommu_group, str) for fn in t)
    assert predict_groups(t).matches(t.reported_groups)
    # VFs behind an ACS root port are isolated; a VMD domain shares its endpoint's group
    for dom, owner in t.vmd_domains.items():
        assert {fn.iommu_group for fn in t if fn.address.domain == dom} == {t[owner].iommu_group}
