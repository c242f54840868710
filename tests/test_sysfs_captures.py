"""Every real-kernel capture loads, and `tree --json` says what the kernel said."""

from __future__ import annotations

import json

import pytest

from conftest import QEMU, capture_names
from explorer.cli import main
from summary import bar_kind, expected_parent, parse_summary

CAPTURES = capture_names()


def _summary_path(name: str):
    return QEMU / f"{name}.txt"


def tree_json(capsys, source: str) -> dict:
    assert main(["tree", source, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", CAPTURES)
def test_tree_json_matches_kernel_summary(name, unpacked, capsys):
    root = unpacked(name)
    expected = parse_summary(_summary_path(name))
    doc = tree_json(capsys, str(root))
    got = {d["bdf"]: d for d in doc["devices"]}
    assert set(got) == set(expected), "device set differs from the kernel's"
    for bdf, exp in expected.items():
        d = got[bdf]
        assert (d["vendor"], d["device"], d["class"]) == (exp.vendor, exp.device, exp.klass), bdf
        assert d["driver"] == exp.driver, bdf
        assert d["iommu_group"] == exp.group, bdf
        assert d["parent"] == expected_parent(expected, bdf), bdf
        assert d["type"] == exp.pcie_type, bdf
        if exp.bus_range is not None:
            assert tuple(d["bus_range"]) == exp.bus_range, bdf
            for kind in ("io", "mem", "pref"):
                win = d["windows"][kind]
                assert (tuple(win) if win else None) == exp.windows[kind], f"{bdf} {kind} window"
        else:
            assert d["bus_range"] is None
        bars = {b["index"]: b for b in d["bars"]}
        assert set(bars) == set(exp.bars), f"{bdf} BAR indices"
        for idx, (start, end, flags) in exp.bars.items():
            b = bars[idx]
            assert (b["start"], b["size"], b["kind"]) == (start, end - start + 1, bar_kind(flags)), f"{bdf} BAR{idx}"
        if exp.rom:
            assert d["rom"]["start"] == exp.rom[0] and d["rom"]["size"] == exp.rom[1] - exp.rom[0] + 1
        for idx, (start, end, flags) in exp.vf_bars.items():
            vb = {b["index"]: b for b in d["vf_bars"]}[idx]
            assert vb["start"] == start and vb["total_size"] == end - start + 1
        acs = d["caps"]["acs"]
        if exp.acs is None:
            assert acs is False, bdf
        else:
            assert (acs["cap"], acs["ctrl"]) == exp.acs, bdf


@pytest.mark.parametrize("name", CAPTURES)
def test_reported_groups_are_a_partition(name, unpacked):
    from explorer.sources.sysfs import load_sysfs

    t = load_sysfs(unpacked(name))
    members = [a for group in t.reported_groups.values() for a in group]
    assert len(members) == len(set(members))
    assert set(members) == {fn.address for fn in t if fn.iommu_group}


def test_sriov_capture_links_vfs_to_pf(unpacked):
    from explorer.model import Address
    from explorer.sources.sysfs import load_sysfs

    t = load_sysfs(unpacked("sriov-nvme"))
    pf = t[Address.parse("0000:01:00.0")]
    assert [str(a) for a in pf.virtfns] == ["0000:01:00.1", "0000:01:00.2", "0000:01:00.3"]
    sr = pf.caps.sriov
    assert (sr.total_vfs, sr.num_vfs, sr.vf_offset, sr.vf_stride, sr.vf_device) == (4, 3, 1, 1, 0x0010)
    for vf in pf.virtfns:
        assert t[vf].physfn == pf.address and t[vf].is_virtfn
    # One VF BAR is the IOV resource (64 KiB) divided by TotalVFs (4).
    (vfbar,) = pf.vf_bars
    assert (vfbar.size, vfbar.total_size, vfbar.kind.value) == (16 * 1024, 64 * 1024, "mem64")


def test_failed_hot_add_bar_is_known_but_unassigned(unpacked):
    """The kernel could not place BAR 2 (1 GiB): resource reads 0, config still shows the BAR."""
    from explorer.model import Address
    from explorer.sources.sysfs import load_sysfs

    t = load_sysfs(unpacked("hotplug-acpi-default-1g"))
    fn = t[Address.parse("0000:01:00.0")]
    bars = {b.index: b for b in fn.bars}
    assert bars[0].assigned and bars[0].size == 256
    assert not bars[2].assigned and bars[2].kind.value == "pref64" and bars[2].size is None


def test_host_bridge_windows_from_iomem(unpacked):
    from explorer.sources.sysfs import load_sysfs

    t = load_sysfs(unpacked("base"))
    (hb,) = t.host_bridges
    mem = [(w.start, w.end) for w in hb.windows if w.kind.value == "mem"]
    assert (0xC0000000, 0xFEBFFFFF) in mem and (0x100000000, 0x8FFFFFFFF) in mem
    assert hb.bus_range == (0, 0xFF)
