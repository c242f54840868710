"""The bundled topologies (topologies/*.yaml, ``builtin:NAME``): each loads cleanly, says where
it comes from, predicts the groups its kernel reported, and really shows the case it is for."""

from __future__ import annotations

import re
from functools import lru_cache

import pytest

from explorer.cli import main
from explorer.kernel.acs import verdicts
from explorer.kernel.groups import predict_groups
from explorer.kernel.setup import fit_hotadd, fit_sriov
from explorer.kernel.quirks import acs_table
from explorer.kernel.trust import assess_all
from explorer.model import ABSENT, AcsCap, Address, PasidCap, PcieType, RcecCap, SriovCap, Topology
from explorer.sources import builtin_dir, builtin_names, load_source

#: name -> the case it is for (the issue "Bundled machines and teaching walkthroughs").
CASES = {
    "intel-ich10-desktop": "chipset root ports without ACS or quirk",
    "amd-laptop-shared-gpu-group": "GPU group holding USB and audio",
    "amd-desktop-gpu": "AMD desktop, GPU and audio in clean groups",
    "amd-laptop-dgpu-usb4": "dGPU behind a switch, USB4 tunnel ports",
    "intel-w680-igpu-sriov": "SR-IOV-capable iGPU, merged chipset groups",
    "tb4-laptop-egpu": "external-facing port, untrusted eGPU dock",
    "vmd-nvme-laptop": "NVMe behind Intel VMD",
    "sriov-nic-server": "VFs on the bus after the PF",
    "pcie-pci-bridge": "PCIe-to-PCI bridge aliasing",
    "switch-no-acs": "switch without ACS",
    "rcec-platform": "RCEC with an RCiEP bitmap",
    "dsa-siov": "PASID/ATS/PRI accelerator",
    "ampere-altra": "Arm server, Ampere quirk entries vs real ACS",
    "hotplug-chassis-small-window": "hot-plug window too small",
    "large-server": "thousands of functions",
}
#: Machines whose source reported IOMMU groups (the YAML keeps them).
REPORTED = [n for n in CASES if n not in ("intel-ich10-desktop", "sriov-nic-server", "large-server")]
NAMES = sorted(n for n in builtin_names())


@lru_cache(maxsize=None)
def topo(name: str) -> Topology:
    return load_source(f"builtin:{name}")


@lru_cache(maxsize=None)
def groups(name: str):
    return predict_groups(topo(name))


def text(name: str) -> str:
    return (builtin_dir() / f"{name}.yaml").read_text(encoding="utf-8")


def header(name: str) -> str:
    """The leading comment block of a file."""
    lines = []
    for line in text(name).splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def A(s: str) -> Address:
    return Address.parse(s)


def group_members(name: str, addr: str) -> set[Address]:
    p = groups(name)
    return set(p.groups[p.group_of[A(addr)]])


# ---- every bundled file --------------------------------------------------------------------------
def test_at_least_twelve_bundled_machines_besides_the_example():
    assert set(CASES) <= set(NAMES)
    assert len([n for n in NAMES if n != "example-small"]) >= 12


@pytest.mark.parametrize("name", NAMES)
def test_loads_without_warnings_and_has_a_description(name):
    t = topo(name)
    assert len(t) > 0
    assert t.source.warnings == ()
    assert t.source.description and len(t.source.description) > 20
    # `pci-explorer topologies` reads the first top-level description line: it must be the key.
    first = next(line for line in text(name).splitlines() if line.strip().startswith("description:"))
    assert first.startswith("description:")
    assert "''" not in first  # an apostrophe would show doubled in the listing


@pytest.mark.parametrize("name", sorted(CASES))
def test_header_names_its_origin_and_no_local_path(name):
    h = header(name)
    if name == "large-server":
        assert "SYNTHETIC" in h and "seed" in h
    else:
        # repository, commit and path of each source
        assert re.search(r"(github\.com/\S+|this repository \(pci-explorer\))[^\n]*, commit [0-9a-f]{12,40}", h), h[:400]
        assert "path" in h
    assert "What it" in h
    body = text(name)
    # No absolute path of the machine a file was made on.
    assert not re.search(r"""(^|[\s"'(])/(home|root|tmp|srv|mnt|opt|work)/""", body, re.M)
    assert "C:\\" not in body


@pytest.mark.parametrize("name", REPORTED)
def test_predicted_groups_equal_reported_groups(name):
    t = topo(name)
    reported = t.reported_groups
    assert reported, f"{name} should keep the groups its kernel reported"
    p = groups(name)
    mismatches = p.compare(reported)
    assert not mismatches, "\n".join(str(m) for m in mismatches)


@pytest.mark.parametrize("name", ["intel-ich10-desktop", "sriov-nic-server", "large-server"])
def test_machines_without_reported_groups_still_group_every_function(name):
    t = topo(name)
    assert not t.reported_groups
    p = groups(name)
    assert set(p.group_of) == set(t.functions)


def test_topologies_command_lists_each_name_with_its_description(capsys):
    assert main(["topologies"]) == 0
    out = capsys.readouterr().out
    listed = {}
    for line in out.splitlines():
        name, _, desc = line.partition(" ")
        listed[name] = desc.strip()
    for name in NAMES:
        assert listed.get(name) == topo(name).source.description, name


# ---- the case each file is for ---------------------------------------------------------------------
def test_intel_ich10_chipset_root_ports_lack_acs_and_quirk_so_nics_share_a_group():
    name = "intel-ich10-desktop"
    t = topo(name)
    ports = [A("00:1c.0"), A("00:1c.1"), A("00:1c.2")]
    v = verdicts(t, ports)
    for a in ports:
        assert t[a].vendor_id == 0x8086 and t[a].pcie_type is PcieType.ROOT_PORT
        assert t[a].caps.acs is ABSENT
        assert not v[a].isolated and v[a].quirk is None
    nics = {A("07:00.0"), A("08:00.0")}
    assert all(t[a].class_code >> 8 == 0x0200 for a in nics)
    assert set(ports) | nics <= group_members(name, "00:1c.0")
    # the CPU-side IOH port has ACS: its GPU and audio are a group of two
    assert group_members(name, "06:00.0") == {A("06:00.0"), A("06:00.1")}


def test_gpu_group_holds_usb_and_audio_when_the_kernel_saw_no_acs():
    name = "amd-laptop-shared-gpu-group"
    t = topo(name)
    gpu = A("c1:00.0")
    assert t[gpu].class_code >> 16 == 0x03
    members = group_members(name, "c1:00.0")
    classes = {t[a].class_code >> 8 for a in members}
    assert 0x0c03 in classes  # USB controllers
    assert 0x0403 in classes  # audio
    assert t[gpu].iommu_group == t[A("c1:00.3")].iommu_group  # as the kernel reported it


def test_amd_desktop_gpu_and_its_audio_are_in_clean_separate_groups():
    name = "amd-desktop-gpu"
    t = topo(name)
    gpu, audio = A("0d:00.0"), A("0d:00.1")
    assert t[gpu].class_code >> 16 == 0x03 and t[audio].class_code >> 8 == 0x0403
    assert group_members(name, "0d:00.0") == {gpu}
    assert group_members(name, "0d:00.1") == {audio}
    assert t[gpu].iommu_group != t[audio].iommu_group


def test_dgpu_behind_its_own_switch_and_usb4_ports_grouped_with_dummy_host_bridges():
    name = "amd-laptop-dgpu-usb4"
    t = topo(name)
    assert group_members(name, "03:00.0") == {A("03:00.0")}
    assert t[A("01:00.0")].pcie_type is PcieType.SWITCH_UPSTREAM
    assert group_members(name, "00:03.1") == {A("00:03.0"), A("00:03.1")}


def test_w680_igpu_is_sriov_capable_and_chipset_functions_merge():
    name = "intel-w680-igpu-sriov"
    t = topo(name)
    sriov = t[A("00:02.0")].caps.sriov
    assert isinstance(sriov, SriovCap) and sriov.total_vfs == 7 and sriov.vf_offset == 1
    assert group_members(name, "00:1f.0") >= {A("00:1f.0"), A("00:1f.3"), A("00:1f.4")}


def test_tb4_dock_below_external_facing_port_is_untrusted():
    name = "tb4-laptop-egpu"
    t = topo(name)
    port = A("00:07.0")
    assert t[port].external_facing is True
    trust = assess_all(t)
    assert trust[port].untrusted is False  # the port itself is internal
    dock = [a for a in t.functions if a.domain == 0 and 0x02 <= a.bus <= 0x05]
    assert len(dock) == 6
    assert all(trust[a].untrusted is True for a in dock)
    gpu = A("04:00.0")
    assert t[gpu].class_code >> 16 == 0x03 and trust[gpu].untrusted and trust[gpu].costs
    # nothing inside the laptop is untrusted
    assert not any(trust[a].untrusted for a in t.functions if a not in dock)


def test_vmd_domain_devices_share_the_vmd_endpoint_group():
    name = "vmd-nvme-laptop"
    t = topo(name)
    assert t.vmd_domains
    p = groups(name)
    for domain, owner in t.vmd_domains.items():
        inside = [a for a in t.functions if a.domain == domain]
        assert any(t[a].class_code == 0x010802 for a in inside)  # an NVMe drive
        assert all(p.group_of[a] == p.group_of[owner] for a in inside)
        assert t[owner].device_id == 0x9A0B and t[owner].vmd_domain == domain == 0x10000


def test_sriov_vfs_on_the_bus_after_the_pf_need_the_subordinate_bus():
    name = "sriov-nic-server"
    t = topo(name)
    vfs = [fn for fn in t if fn.is_virtfn]
    assert vfs
    for vf in vfs:
        pf = t[vf.physfn]
        assert vf.address.bus == pf.address.bus + 1
        s = pf.caps.sriov
        rid = (pf.address.bus << 8 | pf.address.device << 3 | pf.address.function) + s.vf_offset
        assert (vf.address.bus << 8 | vf.address.device << 3 | vf.address.function) == rid  # VF 0
        up = t[pf.parent].bridge
        assert up.subordinate >= vf.address.bus
    assert fit_sriov(t, A("01:00.0"), 8).fits
    res = fit_sriov(t, A("03:00.0"), 1)
    assert not res.fits
    assert t[A("00:02.0")].bridge.subordinate == 0x03


def test_pcie_to_pci_bridge_shares_its_group_with_everything_behind_it():
    name = "pcie-pci-bridge"
    t = topo(name)
    bridge = A("01:00.0")
    assert t[bridge].pcie_type is PcieType.PCIE_TO_PCI_BRIDGE
    behind = [a for a in t.functions if t[a].parent == bridge]
    assert len(behind) == 3 and all(t[a].pcie_type is PcieType.CONVENTIONAL for a in behind)
    assert group_members(name, "01:00.0") == {bridge, *behind}


def test_switch_without_acs_groups_each_downstream_port_with_its_endpoint():
    name = "switch-no-acs"
    t = topo(name)
    dsps = [fn for fn in t if fn.pcie_type is PcieType.SWITCH_DOWNSTREAM]
    assert len(dsps) == 3 and all(fn.caps.acs is ABSENT for fn in dsps)
    assert group_members(name, "02:00.0") == {A("02:00.0"), A("03:00.0")}
    assert group_members(name, "02:01.0") == {A("02:01.0"), A("04:00.0")}
    assert groups(name).group_of[A("02:00.0")] != groups(name).group_of[A("02:01.0")]


def test_rcec_bitmap_names_an_rciep_on_its_bus():
    t = topo("rcec-platform")
    rcecs = [fn for fn in t if isinstance(fn.caps.rcec, RcecCap)]
    assert len(rcecs) == 1
    rcec = rcecs[0]
    assert rcec.pcie_type is PcieType.RC_EVENT_COLLECTOR and rcec.class_code >> 8 == 0x0807
    cap = rcec.caps.rcec
    assert cap.bitmap and cap.devices == (1, 6, 8, 9, 10, 12, 15)
    linked = [fn for fn in t if fn.address.bus == rcec.address.bus and fn.address.device in cap.devices
              and fn.pcie_type is PcieType.RC_INTEGRATED_ENDPOINT]
    assert [fn.address for fn in linked] == [A("6a:01.0")]


def test_dsa_has_pasid_ats_and_pri():
    t = topo("dsa-siov")
    dsa = t[A("6a:01.0")]
    assert (dsa.vendor_id, dsa.device_id) == (0x8086, 0x0B25)
    assert isinstance(dsa.caps.pasid, PasidCap) and dsa.caps.pasid.max_width == 20 and dsa.caps.pasid.enabled
    assert dsa.caps.ats not in (None, ABSENT) and dsa.caps.pri not in (None, ABSENT)
    assert dsa.caps.eetlp_prefix is True
    assert "mdev" in header("dsa-siov")  # the model has no mdev-type field: the file says so


def test_ampere_altra_root_ports_are_isolated_by_real_acs_not_by_a_quirk():
    t = topo("ampere-altra")
    table = acs_table()
    ampere_quirks = [q for q in table if q.vendor == 0x1DEF]
    assert ampere_quirks  # the kernel has Ampere entries (eMAG, 1def:e005-e00c) ...
    ports = [fn.address for fn in t if fn.pcie_type is PcieType.ROOT_PORT]
    assert len(ports) == 12 and all(t[a].vendor_id == 0x1DEF for a in ports)
    # ... but none matches an Altra root port
    assert not any(q.matches(t[a].vendor_id, t[a].device_id) for q in table for a in ports)
    v = verdicts(t, ports)
    for a in ports:
        acs = t[a].caps.acs
        assert isinstance(acs, AcsCap)
        assert v[a].isolated and v[a].quirk is None
    assert len({a.domain for a in t.functions}) == 6


def test_hotplug_port_window_too_small_for_a_1g_bar_under_acpi():
    t = topo("hotplug-chassis-small-window")
    port = A("02:01.0")
    assert t[port].slot.hotplug is True
    assert t[port].bridge.pref_window.size == 2 << 20
    res = fit_hotadd(t, port, ["pref64:1G"], hotplug="acpi", remedies=False)
    assert not res.fits
    assert fit_hotadd(t, port, ["pref64:1M"], hotplug="acpi", remedies=False).fits


def test_large_server_is_the_synthetic_machine_its_header_names():
    from explorer.sources.synthetic import generate

    t = topo("large-server")
    assert len(t) >= 3000
    assert (builtin_dir() / "large-server.yaml").stat().st_size < 4 * 1024 * 1024
    m = re.search(r"generate\((\d+), seed=(\d+)\)", header("large-server"))
    assert m
    n, seed = int(m.group(1)), int(m.group(2))
    assert len(t) == n
    assert t.functions == generate(n, seed).functions
    assert sum(1 for fn in t if fn.is_virtfn) > 1000
