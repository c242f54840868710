"""Resource accounting on every real capture: free + used = the window, blocks really free and aligned."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import capture_names
from explorer.export.resources import report_json, report_text
from explorer.kernel.resources import account, aligned_blocks, fmt_size, free_gaps, parse_size
from explorer.model import Address, Topology, WindowKind
from explorer.sources.sysfs import load_sysfs

CAPTURES = capture_names()


def _merged(ranges):
    out = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_windows_add_up(unpacked, name):
    rep = account(load_sysfs(unpacked(name)))
    assert rep.bridges
    for b in rep.bridges:
        for w in b.windows:
            used = _merged([(max(u.start, w.start), min(u.end, w.end)) for u in w.used])
            used_bytes = sum(e - s + 1 for s, e in used)
            assert used_bytes + w.free_bytes == w.size, (b.name, w)
            # gaps are sorted, disjoint, inside the window and touch no used range
            prev_end = w.start - 1
            for s, e in w.free:
                assert prev_end < s <= e <= w.end
                prev_end = e
                for us, ue in used:
                    assert ue < s or us > e
            for u in w.used:
                assert w.start <= u.start <= u.end <= w.end


@pytest.mark.parametrize("name", CAPTURES)
def test_aligned_blocks_are_free_and_aligned(unpacked, name):
    rep = account(load_sysfs(unpacked(name)))
    for b in rep.bridges:
        for w in b.windows:
            prev = None
            for blk in w.blocks:
                assert blk.size & (blk.size - 1) == 0
                assert blk.start % blk.size == 0
                assert any(s <= blk.start and blk.end <= e for s, e in w.free), (b.name, blk)
                assert all(blk.end < u.start or blk.start > u.end for u in w.used)
                assert blk.count >= 1
                if prev is not None:
                    assert blk.size == prev.size * 2
                prev = blk
            largest = w.largest_block
            if largest is not None:
                # nothing twice as big is free and aligned
                double = largest.size * 2
                for s, e in w.free:
                    first = -(-s // double) * double
                    assert first + double - 1 > e
                assert w.first_fit(largest.size) == largest.start


@pytest.mark.parametrize("name", CAPTURES)
def test_bus_numbers_add_up(unpacked, name):
    rep = account(load_sysfs(unpacked(name)))
    for b in rep.bridges:
        if b.buses is None:
            continue
        covered = set()
        for u in b.buses.used:
            covered |= set(range(max(u.start, b.buses.start), min(u.end, b.buses.end) + 1))
        free = set()
        for s, e in b.buses.free:
            free |= set(range(s, e + 1))
        assert not covered & free
        assert covered | free == set(range(b.buses.start, b.buses.end + 1))


def test_switch_capture_numbers(unpacked):
    rep = account(load_sysfs(unpacked("hotplug-acpi-switch-upstream-spare.pre")))
    up = rep.bridge("0000:01:00.0")
    pref = next(w for w in up.windows if w.kind is WindowKind.PREF)
    assert pref.free == ((0xE0200000, 0xEFFFFFFF),)
    assert pref.largest_block.size == 128 << 20 and pref.largest_block.start == 0xE8000000
    assert pref.first_fit(128 << 20) == 0xE8000000
    assert up.buses.free == ()
    host = rep.bridge("pci0000:00")
    assert host.is_host and host.buses.free == ((5, 0xFF),)
    hi = next(w for w in host.windows if w.start == 0x100000000)
    assert hi.free_bytes == 32 << 30


def test_sriov_iov_resource_counted_once(unpacked):
    rep = account(load_sysfs(unpacked("sriov-nvme")))
    rp = rep.bridge("0000:00:02.0")
    mem = next(w for w in rp.windows if w.kind is WindowKind.MEM)
    whats = [(u.what, u.start, u.end) for u in mem.used]
    assert ("iov", 0xFE604000, 0xFE613FFF) in whats
    assert ("bar", 0xFE600000, 0xFE603FFF) in whats
    assert len(whats) == 2  # the VFs' BARs sit inside the IOV resource


def test_unassigned_bar_is_reported(unpacked):
    rep = account(load_sysfs(unpacked("hotplug-acpi-default-1g")))
    rp = rep.bridge("0000:00:02.0")
    assert any(u.owner == Address.parse("01:00.0") and u.index == 2 for u in rp.unassigned)


def test_port_filter(unpacked):
    t = load_sysfs(unpacked("hotplug-acpi-switch-dp.pre"))
    rep = account(t, "02:01.0")
    assert [b.name for b in rep.bridges] == ["pci0000:00", "0000:00:02.0", "0000:01:00.0", "0000:02:01.0"]
    with pytest.raises(ValueError):
        account(t, "00:1f.2")
    with pytest.raises(KeyError):
        account(t, "00:09.0")


def test_unknown_host_windows_are_said(unpacked):
    t = load_sysfs(unpacked("base"))
    t2 = Topology.build(t.functions.values(), [dataclasses.replace(h, windows=None) for h in t.host_bridges], t.source)
    host = account(t2).bridges[0]
    assert host.is_host and host.windows == ()
    assert any("unknown" in n for n in host.notes)
    d = report_json(account(t2))
    assert d["bridges"][0]["windows_known"] is False
    assert "windows unknown" in report_text(account(t2))


def test_renderers(unpacked):
    rep = account(load_sysfs(unpacked("switch")))
    d = report_json(rep)
    json.dumps(d)
    assert d["format"] == "pci-explorer/resources/1"
    assert any(b["windows"] for b in d["bridges"])
    text = report_text(rep)
    assert "largest aligned free" in text and "buses" in text
    assert len(report_text(rep, verbose=True)) > len(text)


def test_range_helpers():
    assert free_gaps(0, 99, [(10, 19), (15, 29), (50, 59)]) == [(0, 9), (30, 49), (60, 99)]
    assert free_gaps(0, 9, [(0, 9)]) == []
    blocks = aligned_blocks([(0x1000, 0x3FFF)], 0x1000)
    assert [(b.size, b.start, b.count) for b in blocks] == [(0x1000, 0x1000, 3), (0x2000, 0x2000, 1)]


@pytest.mark.parametrize("text,value", [("256", 256), ("0x1000", 4096), ("16M", 16 << 20), ("4G", 4 << 30),
                                        ("2GiB", 2 << 30), ("64k", 64 << 10), ("1T", 1 << 40)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.5G", "0xzz", "-1", "4 X"])
def test_parse_size_errors(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_fmt_size():
    assert fmt_size(256) == "256 B" and fmt_size(1 << 30) == "1 GiB" and fmt_size(0x1800) == "6 KiB"
    assert fmt_size(0x1001) == "~4 KiB" and fmt_size(0xf00) == "3.75 KiB" and fmt_size(1023992 << 10) == "~999.99 MiB"
