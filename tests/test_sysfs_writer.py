"""write_sysfs_tree: load_sysfs reads back what it wrote, and pciutils reads it like the kernel's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import fields

import pytest

from conftest import FIXTURES, capture_names
from explorer.model import ABSENT, Address, PcieType, present
from explorer.sources.synthetic import generate
from explorer.sources.sysfs import load_sysfs
from explorer.sources.sysfs_writer import resource_rows, write_sysfs_tree

CAPTURES = capture_names()
LSPCI = shutil.which("lspci")
#: hwloc's captures with 64-byte configs: a 32-bit domain; a bridge missing from the device list.
HWLOC = [FIXTURES / "hwloc" / f"{n}.tar.bz2" for n in ("2pa-pcidomain32bits", "32intel64-2p8co2t+8ve")]
_PCI_PARTS = ("/sys/bus/pci/", "/sys/devices/pci", "/sys/kernel/iommu_groups", "/proc/")


def _differences(a, b) -> list[str]:
    out = []
    if list(a.functions) != list(b.functions):
        return [f"address sets differ: {sorted(set(a.functions) ^ set(b.functions))[:5]}"]
    for addr, fa in a.functions.items():
        fb = b.functions[addr]
        if fa != fb:
            out += [f"{addr} {f.name}: {getattr(fa, f.name)!r} != {getattr(fb, f.name)!r}"
                    for f in fields(fa) if getattr(fa, f.name) != getattr(fb, f.name)]
    if a.host_bridges != b.host_bridges:
        out.append(f"host bridges: {a.host_bridges} != {b.host_bridges}")
    for k in ("kernel_release", "kernel_cmdline", "iommu_present", "group_types"):
        if getattr(a.source, k) != getattr(b.source, k):
            out.append(f"source {k}: {getattr(a.source, k)!r} != {getattr(b.source, k)!r}")
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_round_trips(name, unpacked, tmp_path):
    original = load_sysfs(unpacked(name))
    again = load_sysfs(write_sysfs_tree(original, tmp_path / "tree"))
    assert _differences(original, again) == []
    assert again.source.warnings == original.source.warnings == ()


@pytest.mark.parametrize("archive", HWLOC, ids=[p.name for p in HWLOC])
def test_trees_read_without_root_round_trip(archive, tmp_path):
    """Trees read without root (64-byte config files) round-trip too."""
    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if any(p in f"/{m.name}" for p in _PCI_PARTS)]
        tf.extractall(tmp_path / "in", members=members, filter="tar")
    (top,) = [p for p in (tmp_path / "in").iterdir() if p.is_dir()]
    original = load_sysfs(top)
    again = load_sysfs(write_sysfs_tree(original, tmp_path / "out"))
    assert _differences(original, again) == []


@pytest.fixture(scope="module")
def synthetic_tree(tmp_path_factory):
    t = generate(160, seed=11)
    return t, write_sysfs_tree(t, tmp_path_factory.mktemp("synthetic") / "tree")


def test_synthetic_machine_round_trips(synthetic_tree):
    t, root = synthetic_tree
    assert _differences(t, load_sysfs(root)) == []


def test_layout_is_the_kernels(synthetic_tree, unpacked):
    t, root = synthetic_tree
    for fn in t:
        rows = resource_rows(fn)
        assert len(rows) == (17 if fn.header_type == 1 else 13)
    vmd = next(fn for fn in t if fn.vmd_domain is not None)
    vdir = os.path.realpath(root / "sys/bus/pci/devices" / str(vmd.address))
    assert os.readlink(os.path.join(vdir, "domain")) == f"pci{vmd.vmd_domain:04x}:00"
    inside = [a for a in t.functions if a.domain == vmd.vmd_domain]
    assert inside and all(os.path.realpath(root / "sys/bus/pci/devices" / str(a)).startswith(vdir + "/") for a in inside)
    pf = next(fn for fn in t if fn.virtfns)
    pdir = os.path.realpath(root / "sys/bus/pci/devices" / str(pf.address))
    assert os.readlink(os.path.join(pdir, "virtfn0")) == f"../{pf.virtfns[0]}"
    vf0 = os.path.realpath(root / "sys/bus/pci/devices" / str(pf.virtfns[0]))
    assert os.readlink(os.path.join(vf0, "physfn")) == f"../{pf.address}"
    # Identical to the kernel's own files where the facts are the same: resource, IDs, bus numbers.
    cap = unpacked("switch")
    original = load_sysfs(cap)
    out = root.parent / "switch"
    write_sysfs_tree(original, out)
    for rel in ("0000:00:02.0", "0000:01:00.0", "0000:03:00.0"):
        for name in ("resource", "vendor", "device", "class", "subsystem_vendor", "secondary_bus_number",
                     "subordinate_bus_number", "current_link_speed", "max_link_width", "numa_node", "driver_override"):
            a = os.path.join(os.path.realpath(cap / "sys/bus/pci/devices" / rel), name)
            b = os.path.join(os.path.realpath(out / "sys/bus/pci/devices" / rel), name)
            if os.path.exists(a):
                with open(a, "rb") as fa, open(b, "rb") as fb:
                    assert fa.read() == fb.read(), f"{rel}/{name}"
        a = os.path.realpath(cap / "sys/bus/pci/devices" / rel)
        b = os.path.realpath(out / "sys/bus/pci/devices" / rel)
        assert os.path.relpath(a, cap) == os.path.relpath(b, out)
        assert os.readlink(os.path.join(a, "iommu_group")) == os.readlink(os.path.join(b, "iommu_group"))


def test_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_sysfs_tree(generate(3), tmp_path)
    assert (tmp_path / "x").read_text() == "keep me"


# ---- pciutils ----------------------------------------------------------------------------------------
_HEAD = re.compile(r"^([0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) .*?\[([0-9a-f]{4})\]: .*\[([0-9a-f]{4}):([0-9a-f]{4})\]")
_CAP = re.compile(r"^\tCapabilities: \[[0-9a-f]+(?: v\d+)?\] (.*)$")
_KNOWN_CAPS = (
    "Express", "Access Control Services", "Advanced Error Reporting", "Device Serial Number",
    "Single Root I/O Virtualization", "Alternative Routing-ID Interpretation", "Address Translation Service",
    "Page Request Interface", "Process Address Space ID", "Root Complex Event Collector",
)
_EXPRESS = {
    PcieType.ENDPOINT: "Endpoint", PcieType.ROOT_PORT: "Root Port", PcieType.SWITCH_UPSTREAM: "Upstream Port",
    PcieType.SWITCH_DOWNSTREAM: "Downstream Port", PcieType.PCIE_TO_PCI_BRIDGE: "PCI-Express to PCI/PCI-X Bridge",
    PcieType.RC_INTEGRATED_ENDPOINT: "Root Complex Integrated Endpoint",
    PcieType.RC_EVENT_COLLECTOR: "Root Complex Event Collector",
}


def lspci(root) -> dict[str, dict]:
    out = subprocess.run(
        [LSPCI, "-A", "linux-sysfs", "-O", f"sysfs.path={root}/sys/bus/pci", "-vvv", "-nn", "-D"],
        capture_output=True, text=True, check=True,
    ).stdout
    devs: dict[str, dict] = {}
    cur: dict | None = None
    for line in out.splitlines():
        m = _HEAD.match(line)
        if m:
            cur = devs[m.group(1)] = {"class": int(m.group(2), 16), "ids": (int(m.group(3), 16), int(m.group(4), 16)),
                                      "caps": [], "lines": []}
            continue
        if cur is None:
            continue
        cur["lines"].append(line.strip())
        c = _CAP.match(line)
        if c and c.group(1).startswith(_KNOWN_CAPS):
            cur["caps"].append(c.group(1))
        if line.startswith("\tBus: "):
            cur["bus"] = tuple(int(x, 16) for x in re.findall(r"=([0-9a-f]{2})", line)[:3])
    return devs


def _expected_caps(fn) -> set[str]:
    caps = fn.caps
    want = set()
    if fn.pcie_type not in (None, PcieType.CONVENTIONAL):
        want.add("Express")
    for key, label in (("acs", "Access Control Services"), ("aer", "Advanced Error Reporting"),
                       ("sriov", "Single Root I/O Virtualization"), ("ari", "Alternative Routing-ID Interpretation"),
                       ("ats", "Address Translation Service"), ("pri", "Page Request Interface"),
                       ("pasid", "Process Address Space ID"), ("rcec", "Root Complex Event Collector"),
                       ("dsn", "Device Serial Number")):
        if present(getattr(caps, key)):
            want.add(label)
    return want


def _check_lspci_agrees(t, devs: dict[str, dict]) -> None:
    assert set(devs) == {str(a) for a in t.functions}
    for fn in t:
        d = devs[str(fn.address)]
        where = str(fn.address)
        assert d["ids"] == (fn.vendor_id, fn.device_id), where
        assert d["class"] == fn.class_code >> 8, where
        names = {c.split(" (")[0].split(" Number")[0] if not c.startswith("Express") else "Express" for c in d["caps"]}
        got = {k for k in _KNOWN_CAPS if any(c.startswith(k) for c in d["caps"])}
        assert got == _expected_caps(fn), (where, names)
        if present(fn.bridge):
            br = fn.bridge
            assert d["bus"] == (br.primary, br.secondary, br.subordinate), where  # type: ignore[union-attr]
        if fn.pcie_type in _EXPRESS:
            exp = next(c for c in d["caps"] if c.startswith("Express"))
            assert f" {_EXPRESS[fn.pcie_type]}" in exp, (where, exp)
            if present(fn.slot) and fn.slot.number is not None:  # type: ignore[union-attr]
                assert "(Slot+)" in exp, where
        if present(fn.caps.dsn):
            assert f"Device Serial Number {fn.caps.dsn}" in d["caps"], where
        if isinstance(fn.iommu_group, str):
            assert f"IOMMU group: {fn.iommu_group}" in d["lines"], where
        if isinstance(fn.driver, str):
            assert f"Kernel driver in use: {fn.driver}" in d["lines"], where
        if present(fn.caps.sriov):
            sr = fn.caps.sriov
            assert f"VF offset: {sr.vf_offset}, stride: {sr.vf_stride}, Device ID: {sr.vf_device:04x}" in d["lines"], where  # type: ignore[union-attr]
        for b in fn.bars or ():
            if b.assigned and not fn.is_virtfn:
                assert any(line.startswith(f"Region {b.index}: ") and f"{b.start:x} " in line for line in d["lines"]), (where, b)


@pytest.mark.skipif(LSPCI is None, reason="needs pciutils (lspci)")
def test_lspci_reads_the_synthetic_tree(synthetic_tree):
    t, root = synthetic_tree
    _check_lspci_agrees(t, lspci(root))


@pytest.mark.skipif(LSPCI is None, reason="needs pciutils (lspci)")
@pytest.mark.parametrize("name", ["switch", "sriov-nvme", "pcie-pci-bridge", "rc-integrated", "rp-noacs", "vfio"])
def test_lspci_sees_the_written_capture_as_the_original(name, unpacked, tmp_path):
    cap = unpacked(name)
    t = load_sysfs(cap)
    out = write_sysfs_tree(t, tmp_path / "tree")
    ours, theirs = lspci(out), lspci(cap)
    _check_lspci_agrees(t, ours)
    keep = ("Region ", "Expansion ROM", "Bus: ", "I/O behind", "Memory behind", "Prefetchable memory behind",
            "IOMMU group", "Kernel driver", "NUMA node", "Physical Slot", "Subsystem: ")
    for bdf, d in theirs.items():
        assert ours[bdf]["ids"] == d["ids"] and ours[bdf]["class"] == d["class"], bdf
        assert [x for x in ours[bdf]["lines"] if x.startswith(keep)] == [x for x in d["lines"] if x.startswith(keep)], bdf
        assert sorted(ours[bdf]["caps"]) == sorted(d["caps"]), bdf


def test_unknown_and_absent_facts_are_written_as_the_kernel_shows_them(tmp_path):
    t = generate(40, seed=5)
    root = write_sysfs_tree(t, tmp_path / "t")
    fn = t[Address(0, 0, 0, 0)]
    d = root / "sys/bus/pci/devices" / str(fn.address)
    assert (d / "driver_override").read_text() == "(null)\n"
    assert fn.driver is ABSENT and not (d / "driver").exists()
    assert not (d / "reset_method").exists()  # 6.1 shows it only when there is a method
    assert (root / "proc/sys/kernel/osrelease").read_text().strip() == t.source.kernel_release
    assert "root bus resource [bus 00-7f]" in (root / "dmesg.txt").read_text()
