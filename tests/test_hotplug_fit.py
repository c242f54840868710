"""Hot-add fit and SR-IOV fit against real Linux 6.1 captures (tests/fixtures/qemu).

For every ``hotplug-*.outcome.json`` (and its ``.step2`` case) the prediction on the
pre-hot-add capture must equal what the kernel did: every BAR's assigned/start/end,
the new bridge's bus numbers and windows, the port's windows afterwards, and every
assignment line we print must be one the kernel printed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from explorer.export.resources import fit_json, fit_text, sriov_json, sriov_text
from explorer.kernel.setup import (
    BarSpec,
    fit_hotadd,
    fit_sriov,
    normalize_bars,
    parse_bar_spec,
    parse_kernel_params,
)
from explorer.model import Address, Bar, BarKind, Function, Topology, Window, WindowKind
from explorer.sources import load_source
from explorer.sources.sysfs import load_sysfs

FIXTURES = Path(__file__).parent / "fixtures"
QEMU = FIXTURES / "qemu"
#: The same machines on Linux 6.1 (qemu/) and Linux 6.12 (qemu-6.12/).
FOLDERS = ("qemu", "qemu-6.12")
OUTCOMES = sorted(p.name[: -len(".outcome.json")] for p in QEMU.glob("hotplug-*.outcome.json"))
CASES = [f"{d}/{p.name[: -len('.outcome.json')]}" for d in FOLDERS
         for p in sorted((FIXTURES / d).glob("hotplug-*.outcome.json"))]


def _split(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    return folder or "qemu", base


def _outcome(name: str) -> dict:
    folder, base = _split(name)
    return json.loads((FIXTURES / folder / f"{base}.outcome.json").read_text())


def _pre(unpacked, o: dict, folder: str = "qemu") -> Topology:
    return load_sysfs(unpacked(f"{folder}/" + o["pre_capture"][: -len(".tar.gz")]))


def bridge_kind(device: dict) -> str | None:
    """What the hot-added device is, as fit's ``bridge`` says it (QEMU's device models)."""
    if not device["class"].startswith("0x0604"):
        return None
    return {"x3130-upstream": "switch", "pcie-pci-bridge": "shpc"}.get(device["driver"], "pci")


def _hex(v: str | None) -> int | None:
    return int(v, 16) if v is not None else None


def _wins(d: dict) -> dict:
    return {k: (None if d[k] is None else [_hex(d[k][0]), _hex(d[k][1])]) for k in ("io", "mem", "pref")}


def _predict(unpacked, name: str):
    o = _outcome(name)
    dev = o["device"]
    bars = [(b["index"], b["type"], b["size"]) for b in dev["bars"]]
    buses = 1 if dev["class"].startswith("0x0604") else 0
    r = fit_hotadd(_pre(unpacked, o, _split(name)[0]), o["port"], bars, buses=buses, hotplug=o["hotplug"],
                   kernel_params=o["kernel_cmdline"], bridge=bridge_kind(dev))
    return o, r


def test_every_hotplug_case_is_covered():
    assert len(OUTCOMES) >= 18
    assert "hotplug-acpi-siblings-hole64-2g.step2" in OUTCOMES
    assert len(CASES) == 2 * len(OUTCOMES)


@pytest.mark.parametrize("name", CASES)
def test_hotadd_prediction_matches_kernel(unpacked, name):
    o, r = _predict(unpacked, name)
    expected = [(b["index"], b["assigned"], _hex(b["start"]), _hex(b["end"])) for b in o["outcome"]]
    got = [(b.index, b.assigned, b.start, b.end) for b in r.bars]
    assert got == expected, "\n".join(r.messages)


@pytest.mark.parametrize("name", CASES)
def test_port_windows_after_match_kernel(unpacked, name):
    o, r = _predict(unpacked, name)
    got = {k: (None if v is None else list(v)) for k, v in r.port_windows_after.items() if k != "pref_64bit"}
    assert got == _wins(o["port_windows_after"])
    assert [r.port_bus[0], r.port_bus[1]] == o["port_bus_after"]


@pytest.mark.parametrize("name", [n for n in CASES if "new_bridge" in _outcome(n)])
def test_new_bridge_bus_numbers_and_windows(unpacked, name):
    o, r = _predict(unpacked, name)
    nb = o["new_bridge"]
    assert r.new_bridge is not None
    assert [r.new_bridge.secondary, r.new_bridge.subordinate] == nb["bus"]
    assert r.new_bridge.bus_assigned == nb["bus_assigned"]
    got = {k: (None if v is None else list(v)) for k, v in r.new_bridge.windows.items()}
    assert got == _wins(nb["windows"])
    if "kernel_says" in nb:
        assert nb["kernel_says"] in [m for m in r.messages] or any(nb["kernel_says"].endswith(m.split(": ", 1)[1])
                                                                  for m in r.messages)


@pytest.mark.parametrize("name", CASES)
def test_kernel_lines_are_the_kernels(unpacked, name):
    """Every assignment / failure / release line predicted is one the kernel printed."""
    o, r = _predict(unpacked, name)
    logged = set(o["kernel_messages"])
    keys = ("assigned", "can't assign", "failed to assign", "released", "No. 2 try", "add_size", "unusable",
            "No bus number")
    for m in r.messages:
        if any(k in m for k in keys):
            assert m in logged, m
    # and the kernel's failure lines are all predicted
    for m in o["kernel_messages"]:
        if "can't assign" in m or "No bus number" in m or "released" in m:
            assert m in r.messages, m


@pytest.mark.parametrize("name", CASES)
def test_fits_agrees_with_result(unpacked, name):
    o, r = _predict(unpacked, name)
    assert r.fits == (o["result"] == "assigned")
    assert r.certain


def test_fit_json_shape(unpacked):
    _, r = _predict(unpacked, "hotplug-acpi-default-1g")
    d = fit_json(r)
    assert list(d)[:3] == ["fits", "bars", "remedies"]
    assert d["fits"] is False
    assert d["bars"][1] == {**d["bars"][1], "index": 2, "kind": "pref64", "size": 1 << 30, "assigned": False,
                            "start": None, "end": None}
    assert set(d["bars"][0]) >= {"index", "kind", "size", "assigned", "start", "end", "reason"}
    assert d["bars"][0]["start"] == 0xFE600000 and d["bars"][0]["end"] == 0xFE6000FF
    assert "can't assign; no space" in d["bars"][1]["reason"]
    assert all(isinstance(x, str) for x in d["remedies"])
    json.dumps(d)
    assert "NOT assigned" in fit_text(r)


def test_acpi_failure_remedies_are_ranked_and_truthful(unpacked):
    o = _outcome("hotplug-acpi-default-1g")
    # loaded as a SOURCE, so the capture's kernel log (the firmware's assignment) comes with it
    t = load_source(str(unpacked(o["pre_capture"][: -len(".tar.gz")])))
    bars = [(b["index"], b["type"], b["size"]) for b in o["device"]["bars"]]
    r = fit_hotadd(t, o["port"], bars, hotplug=o["hotplug"], kernel_params=o["kernel_cmdline"])
    rem = r.remedies
    # the firmware programmed the port's window, so no boot parameter helps: simulated, and said so
    assert any(x.startswith("tried at reboot, not enough: pci=hpmmioprefsize=1G..") for x in rem)
    assert not any(x.startswith(("boot with", "fits after a reboot")) for x in rem)
    assert any("pref64-reserve=1G" in x for x in rem)
    native = [i for i, x in enumerate(rem) if "native PCIe hotplug" in x]
    boot = [i for i, x in enumerate(rem) if x.startswith("tried at reboot")]
    firmware = [i for i, x in enumerate(rem) if "reserve it in firmware" in x]
    assert native and boot and firmware and boot[0] < firmware[0] < native[0]


def test_remedy_names_another_port_with_room(unpacked):
    o = _outcome("hotplug-acpi-siblings-hole64-2g.step2")
    t = _pre(unpacked, o)
    # 1 MiB + 2 MiB pref BARs into rp2: the 2 MiB one takes the pref window, the 1 MiB one falls
    # back into the mem window (__pci_assign_resource's last try)
    r2 = fit_hotadd(t, "00:03.0", ["mem32:4K", "pref64:1M", "pref64:2M"], hotplug="acpi", kernel_params="")
    assert r2.fits
    assert r2.bars[2].start == 0xFE800000 and r2.bars[1].start == 0xFE200000 and r2.bars[0].start == 0xFE300000
    r3 = fit_hotadd(t, "00:02.0", ["mem32:4K", "pref64:2M"], hotplug="acpi", kernel_params="")
    # rp1 already holds a device in its slot: the slot is occupied
    assert not r3.fits and "occupied" in r3.bars[0].reason
    assert any("0000:00:03.0" in x for x in r3.remedies)


def test_native_failure_loses_the_window(unpacked):
    _, r = _predict(unpacked, "hotplug-native-nofit-64g")
    assert r.port_windows_before["pref"] is not None and r.port_windows_after["pref"] is None
    assert any("loses its pref window" in w for w in r.warnings)
    assert "left without" in r.bars[2].reason


def test_rule3_switch_port_grows_in_upstream_spare(unpacked):
    t = load_sysfs(unpacked("hotplug-acpi-switch-upstream-spare.pre"))
    r = fit_hotadd(t, "02:01.0", ["mem32:256", "2:pref64:128M"], hotplug="native", kernel_params="")
    assert r.fits
    assert r.bars[1].start == 0xE0000000
    assert r.port_windows_after["pref"] == (0xE0000000, 0xE7FFFFFF)


def test_rule6_sibling_order(unpacked):
    t = load_sysfs(unpacked("hotplug-acpi-siblings-hole64-2g.pre"))
    bars1 = ["mem32:4K", "io:256", "pref64:1G"]
    bars2 = ["mem32:4K", "io:256", "pref64:2G"]
    first = fit_hotadd(t, "00:02.0", bars1, hotplug="native", kernel_params="")
    assert first.fits and first.bars[2].start == 0x100000000
    alone = fit_hotadd(t, "00:03.0", bars2, hotplug="native", kernel_params="")
    assert alone.fits and alone.bars[2].start == 0x100000000
    # the machine after the first hot-add: rp1's pref window is 1 GiB at 4 GiB, with the BAR in it
    fns = dict(t.functions)
    rp1 = fns[Address.parse("00:02.0")]
    fns[rp1.address] = dataclasses.replace(
        rp1, bridge=dataclasses.replace(rp1.bridge, pref_window=Window(WindowKind.PREF, 0x100000000, 0x13FFFFFFF, True)))
    dev = Function(Address(0, 1, 0, 0), parent=rp1.address, header_type=0, class_code=0xFF00,
                   bars=(Bar(0, BarKind.MEM32, 0xFE400000, 0x1000), Bar(1, BarKind.IO, 0x1000, 0x100),
                         Bar(2, BarKind.PREF64, 0x100000000, 0x40000000)))
    fns[dev.address] = dev
    t2 = Topology.build(fns.values(), t.host_bridges, t.source)
    second = fit_hotadd(t2, "00:03.0", bars2, hotplug="native", kernel_params="")
    assert not second.fits
    assert second.port_windows_after["pref"] is None
    assert "pcieport 0000:00:03.0: bridge window [mem size 0x80000000 64bit pref]: can't assign; no space" in second.messages


def test_rule8_native_bridge_gets_the_rest_of_the_port(unpacked):
    t = load_sysfs(unpacked("hotplug-acpi-bridge-bus3.pre"))
    r = fit_hotadd(t, "00:02.0", ["mem64:256"], buses=1, hotplug="native", kernel_params="")
    assert r.fits
    assert r.bars[0].start == 0xFE700000
    assert r.new_bridge.windows["mem"] == (0xFE600000, 0xFE6FFFFF)
    assert (r.new_bridge.secondary, r.new_bridge.subordinate) == (2, 2)
    a = fit_hotadd(t, "00:02.0", ["mem64:256"], buses=1, hotplug="acpi", kernel_params="")
    assert a.bars[0].start == 0xFE600000 and a.new_bridge.windows["mem"] is None


def test_rule9_native_shpc_bridge_without_bus_oopses(unpacked):
    t = load_sysfs(unpacked("hotplug-acpi-shpc-bridge-bus0.pre"))
    r = fit_hotadd(t, "00:02.0", ["mem64:256"], buses=1, hotplug="native", kernel_params="", shpc=True)
    assert not r.fits
    assert r.kernel_oops and "shpc_init" in r.kernel_oops
    assert (r.new_bridge.secondary, r.new_bridge.subordinate) == (0, 0)
    assert r.bars[0].assigned  # the bridge's own BAR is still assigned
    assert "pci 0000:01:00.0: No bus number available for hot-added bridge" in r.messages


def test_hp_sizes_only_matter_where_the_kernel_sizes(unpacked):
    o = _outcome("hotplug-acpi-default-1g")
    t = _pre(unpacked, o)
    bars = ["mem32:256", "2:pref64:1G"]
    acpi = fit_hotadd(t, "00:02.0", bars, hotplug="acpi", kernel_params="pci=realloc=on,hpmmioprefsize=2G")
    assert not acpi.fits  # a firmware window keeps its size
    native = fit_hotadd(t, "00:02.0", bars, hotplug="native", kernel_params="pci=realloc=on,hpmmioprefsize=2G")
    assert native.fits and native.port_windows_after["pref"] == (0x100000000, 0x17FFFFFFF)


def test_unknown_host_windows_are_not_guessed(unpacked):
    o = _outcome("hotplug-native-default-1g")
    t = _pre(unpacked, o)
    hbs = [dataclasses.replace(h, windows=None) for h in t.host_bridges]
    t2 = Topology.build(t.functions.values(), hbs, t.source)
    r = fit_hotadd(t2, "00:02.0", ["mem32:256", "2:pref64:1G"], hotplug="native", kernel_params="")
    assert not r.certain and not r.fits
    assert any("unknown" in w for w in r.warnings)
    # what stays inside the port's existing windows is still known
    small = fit_hotadd(t2, "00:02.0", ["mem32:256", "2:pref64:1M"], hotplug="native", kernel_params="")
    assert small.certain and small.fits


def test_default_kernel_params_come_from_the_source(unpacked):
    o = _outcome("hotplug-native-hpsize-1g")
    t = _pre(unpacked, o)
    r = fit_hotadd(t, o["port"], ["mem32:256", "2:pref64:1G"], hotplug="native")
    assert r.kernel_params.hpmmioprefsize == 2 << 30
    assert r.port_windows_after["pref"] == (0x100000000, 0x17FFFFFFF)


def test_errors(unpacked):
    t = load_sysfs(unpacked("hotplug-acpi-default-1g.pre"))
    with pytest.raises(ValueError):
        fit_hotadd(t, "00:1f.2", ["mem32:4K"])
    with pytest.raises(KeyError):
        fit_hotadd(t, "00:09.0", ["mem32:4K"])
    with pytest.raises(ValueError):
        fit_hotadd(t, "00:02.0", ["mem32:4K"], hotplug="shpc")


# ---- BAR specs and kernel parameters --------------------------------------------------------


@pytest.mark.parametrize("text,spec", [
    ("pref64:1G", BarSpec("pref64", 1 << 30, None)),
    ("2:pref64:1G", BarSpec("pref64", 1 << 30, 2)),
    ("io:256", BarSpec("io", 256, None)),
    ("mem32:16M", BarSpec("mem32", 16 << 20, None)),
    ("mem64:4G", BarSpec("mem64", 4 << 30, None)),
    ("mem32:0x1000", BarSpec("mem32", 0x1000, None)),
    ("MEM:64k", BarSpec("mem32", 64 << 10, None)),
    ("pref:2GiB", BarSpec("pref64", 2 << 30, None)),
    ("rom:256K", BarSpec("rom", 256 << 10, None)),
])
def test_parse_bar_spec(text, spec):
    assert parse_bar_spec(text) == spec


@pytest.mark.parametrize("text,needle", [
    ("", "empty"),
    ("pref64", "expected KIND:SIZE"),
    ("foo:1G", "unknown kind"),
    ("pref64:3M", "power of two"),
    ("pref64:lots", "bad size"),
    ("io:4K", "I/O BAR"),
    ("7:mem32:4K", "not 0-5"),
    ("5:mem64:4K", "cannot be BAR 5"),
    ("x:mem32:4K", "BAR number"),
    ("mem32:4G", "32-bit BAR"),
    ("mem32:8", "at least 16"),
])
def test_parse_bar_spec_errors(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_bar_spec(text)


def test_bar_spec_text_round_trips():
    for text in ("pref64:1G", "2:pref64:1G", "io:32", "mem32:256", "mem64:4K", "rom:64K"):
        assert str(parse_bar_spec(text)) == text
        assert parse_bar_spec(str(parse_bar_spec(text))) == parse_bar_spec(text)


def test_bar_numbers_follow_listing_order_and_64bit_width():
    specs = normalize_bars(["mem32:256", "pref64:1G", "io:32", "rom:64K"])
    assert [(s.index, s.kind) for s in specs] == [(0, "mem32"), (1, "pref64"), (3, "io"), (6, "rom")]
    specs = normalize_bars(["2:pref64:1G", "mem32:256", ("mem32", 4096), (4, BarKind.IO, 32)])
    assert [(s.index, s.kind) for s in specs] == [(0, "mem32"), (1, "mem32"), (2, "pref64"), (4, "io")]
    with pytest.raises(ValueError, match="overlaps"):
        normalize_bars(["2:pref64:1G", "3:mem32:4K"])


def test_parse_kernel_params():
    kp = parse_kernel_params("quiet pci=realloc=on,hpmmioprefsize=2G,hpmmiosize=64M pci=hpiosize=0x800 foo=bar")
    assert kp.hpmmioprefsize == 2 << 30 and kp.hpmmiosize == 64 << 20 and kp.hpiosize == 0x800
    assert kp.realloc == "on"
    kp = parse_kernel_params("pci=hpmemsize=8M,hpbussize=300,realloc")
    assert kp.hpmmiosize == kp.hpmmioprefsize == 8 << 20 and kp.hpbussize == 1 and kp.realloc == "on"
    assert parse_kernel_params(None).hpmmioprefsize == 2 << 20


# ---- SR-IOV ----------------------------------------------------------------------------------


@pytest.fixture
def nvme(unpacked):
    return load_sysfs(unpacked("sriov-nvme"))


def test_sriov_three_and_four_fit(nvme):
    three = fit_sriov(nvme, "01:00.0", 3)
    assert three.fits and three.errno is None
    assert [str(v.address) for v in three.vfs] == ["0000:01:00.1", "0000:01:00.2", "0000:01:00.3"]
    # the kernel placed VF n's BAR 0 at the IOV resource + n * 16 KiB
    for v in three.vfs:
        got = v.bars[0].start
        assert got == 0xFE604000 + v.vf * 0x4000
        assert nvme[v.address].bars[0].start == got
    four = fit_sriov(nvme, "01:00.0", 4)
    assert four.fits
    assert four.vfs[3].address == Address.parse("01:00.4")
    assert four.vfs[3].bars[0].end == 0xFE613FFF  # the last 16 KiB of the 64 KiB IOV resource
    assert any("Disable before enabling 4 VFs" in m for m in four.messages)
    assert any("echo 0" in x for x in four.remedies)


def test_sriov_five_is_erange(nvme):
    r = fit_sriov(nvme, "01:00.0", 5)
    assert not r.fits and r.errno == "ERANGE"
    assert "sriov_totalvfs = 4" in r.error
    assert not r.vfs and r.messages == ()
    d = sriov_json(r)
    assert list(d)[:3] == ["fits", "bars", "remedies"] and d["errno"] == "ERANGE"
    assert "ERANGE" in sriov_text(r)


def _pf(nvme, **cap) -> Topology:
    fns = dict(nvme.functions)
    pf = fns[Address.parse("01:00.0")]
    fns[pf.address] = dataclasses.replace(pf, caps=dataclasses.replace(pf.caps, sriov=dataclasses.replace(pf.caps.sriov, **cap)))
    return Topology.build(fns.values(), nvme.host_bridges, nvme.source)


def test_sriov_bus_out_of_range(nvme):
    t = _pf(nvme, vf_offset=0x100, num_vfs=0)
    r = fit_sriov(t, "01:00.0", 2)
    assert not r.fits and r.errno == "ENOMEM"
    assert "nvme 0000:01:00.0: can't enable 2 VFs (bus 02 out of range of [bus 01])" in r.messages


def test_sriov_iov_resource_unassigned(nvme):
    fns = dict(nvme.functions)
    pf = fns[Address.parse("01:00.0")]
    vb = pf.vf_bars[0]
    fns[pf.address] = dataclasses.replace(pf, vf_bars=(dataclasses.replace(vb, start=None, unassigned=True),),
                                          caps=dataclasses.replace(pf.caps, sriov=dataclasses.replace(pf.caps.sriov, num_vfs=0)))
    t = Topology.build(fns.values(), nvme.host_bridges, nvme.source)
    r = fit_sriov(t, "01:00.0", 2)
    assert not r.fits and r.errno == "ENOMEM"
    assert "nvme 0000:01:00.0: not enough MMIO resources for SR-IOV" in r.messages


def test_sriov_needs_a_driver(nvme):
    from explorer.model import ABSENT

    fns = dict(nvme.functions)
    pf = fns[Address.parse("01:00.0")]
    fns[pf.address] = dataclasses.replace(pf, driver=ABSENT,
                                          caps=dataclasses.replace(pf.caps, sriov=dataclasses.replace(pf.caps.sriov, num_vfs=0)))
    t = Topology.build(fns.values(), nvme.host_bridges, nvme.source)
    r = fit_sriov(t, "01:00.0", 1)
    assert r.errno == "ENOENT" and "pci 0000:01:00.0: no driver bound to device; cannot configure SR-IOV" in r.messages


def test_sriov_rejects_a_non_pf(nvme):
    with pytest.raises(ValueError):
        fit_sriov(nvme, "00:1f.2", 1)
