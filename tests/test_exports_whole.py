"""Exports that keep a device whole: libvirt puts a multi-function device's functions in one
guest slot (checked with virt-xml-validate and by reading the XML), the proxmox lines parse
the way Proxmox's hostpci option is parsed, and the cmdline export adds the IOMMU switches."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from explorer.export.plan_exports import export, iommu_vendor
from explorer.model import Address
from explorer.plan import add_action, new_plan
from explorer.sources import load_source
from explorer.sources.sysfs import load_sysfs

VIRT_XML_VALIDATE = shutil.which("virt-xml-validate")


def plan_of(t, *actions):
    p = new_plan(t, "test")
    for words in actions:
        p = add_action(p, words)
    return p


def whole_device(t, fn, vm):
    """Actions giving every function of fn's device (each with its group) to one VM."""
    done, out = set(), []
    for a in sorted([fn.address, *t.slot_siblings(fn.address)]):
        if a in done:
            continue
        out.append(["assign", str(a), "--vm", vm, "--group"])
        done.update(t.reported_groups.get(str(t[a].iommu_group), (a,)))
    return out


def multifunction_gpu(t):
    """A display function whose device has more than one function (GPU + HDMI audio)."""
    for fn in t:
        if fn.class_code and fn.class_code >> 16 == 0x03 and len(t.slot_siblings(fn.address)) >= 1:
            return fn
    raise AssertionError("no multi-function GPU")


@pytest.mark.parametrize("src", ["builtin:tb4-laptop-egpu", "builtin:ampere-altra", "builtin:amd-desktop-gpu"])
def test_libvirt_gives_a_multifunction_device_one_guest_slot(tmp_path, src):
    t = load_source(src)
    gpu = multifunction_gpu(t)
    p = plan_of(t, *whole_device(t, gpu, "win"))
    xml = export(p, t, "libvirt")
    hostdevs = ET.fromstring(xml[xml.index("<domain"):]).findall("./devices/hostdev")
    by_host: dict[tuple, list[tuple]] = {}
    for h in hostdevs:
        s = h.find("./source/address").attrib
        host = Address(int(s["domain"], 16), int(s["bus"], 16), int(s["slot"], 16), int(s["function"], 16))
        g = h.find("./address")
        by_host.setdefault(host.slot, []).append((host, None if g is None else g.attrib))
    mine = by_host[gpu.address.slot]
    assert len(mine) == len(t.slot_siblings(gpu.address)) + 1
    guests = [g for _, g in mine]
    assert all(g is not None and g["type"] == "pci" for g in guests)
    assert len({(g["domain"], g["bus"], g["slot"]) for g in guests}) == 1  # one guest slot
    for host, g in mine:
        assert int(g["function"], 16) == host.function
        assert (g.get("multifunction") == "on") == (host.function == min(h.function for h, _ in mine))
    # Devices given alone keep libvirt's own addressing.
    for slot, lst in by_host.items():
        if len(lst) == 1:
            assert lst[0][1] is None
    if VIRT_XML_VALIDATE:
        path = tmp_path / "win.xml"
        path.write_text(xml)
        res = subprocess.run([VIRT_XML_VALIDATE, str(path)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


# ---- proxmox: a parser that follows PVE::QemuServer::PCI's hostpci rules -----------------------------------
#
# The hostpci option is a property string (PVE::JSONSchema::parse_property_string): comma-separated
# key=value items, the default key (host) may be given without "host="; unknown or repeated keys
# are errors; each value must match its key's format over the whole value. host is one or more
# PCI IDs joined by ';', each "[domain:]bus:dev[.func]" in lowercase hex (an ID without .func means
# every function of that device, which Proxmox passes as one multi-function device); the booleans
# (pcie, x-vga, rombar, legacy-igd) take 0/1/yes/no/on/off/true/false; mdev is a type name without
# '/', '.' or ':' and applies to a single device only; hostpci0 to hostpci15 exist.

PCIRE = r"(?:[a-f0-9]{4,}:)?[a-f0-9]{2}:[a-f0-9]{2}(?:\.[a-f0-9])?"
BOOL = r"(?:1|0|yes|no|on|off|true|false)"
FORMAT = {
    "host": rf"{PCIRE}(?:;{PCIRE})*",
    "pcie": BOOL, "x-vga": BOOL, "rombar": BOOL, "legacy-igd": BOOL,
    "romfile": r"[^,;]+",
    "mdev": r"[^/.:]+",
    "mapping": r"[a-zA-Z][a-zA-Z0-9_-]*",
}
MAX_HOSTPCI = 16


class HostpciError(ValueError):
    pass


def parse_hostpci(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(","):
        m = re.fullmatch(r"([a-z][a-z_-]*)=(.*)", part)
        if m:
            key, val = m.group(1), m.group(2)
        elif "host" not in out:
            key, val = "host", part
        else:
            raise HostpciError(f"value without key: {part!r}")
        if key not in FORMAT:
            raise HostpciError(f"unknown key {key!r}")
        if key in out:
            raise HostpciError(f"duplicate key {key!r}")
        if not re.fullmatch(FORMAT[key], val):
            raise HostpciError(f"{key}: {val!r} does not match {FORMAT[key]}")
        out[key] = val
    if "host" not in out and "mapping" not in out:
        raise HostpciError("neither host nor mapping")
    return out


def resolve(t, host: str) -> list[Address]:
    """Every function an ID names (PVE::SysFSTools::lspci: an ID without .func is all functions)."""
    found = []
    for one in host.split(";"):
        full = one if one.count(":") == 2 else f"0000:{one}"
        found += [fn.address for fn in t if fn.bdf == full or (("." not in one) and fn.bdf.startswith(full + "."))]
    if not found:
        raise HostpciError(f"no PCI device found for {host!r}")
    return found


def parse_proxmox_export(t, text: str) -> list[tuple[int, dict, list[Address]]]:
    entries = []
    seen = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"hostpci(\d+): (.+)", line)
        assert m, line
        n = int(m.group(1))
        assert 0 <= n < MAX_HOSTPCI and n not in seen, line
        seen.add(n)
        opts = parse_hostpci(m.group(2))
        devs = resolve(t, opts["host"]) if "host" in opts else []
        if "mdev" in opts:
            assert len(devs) == 1, "Proxmox ignores mdev on a multi-function entry"
        entries.append((n, opts, devs))
    return entries


def test_the_parser_refuses_what_proxmox_refuses():
    for bad in ("0000:01:00.0,pcie=2", "01:00.0,foo=1", "01:00.0,pcie=1,pcie=1", "01:00.0,01:00.1",
                "0000:01:0.0", "0000:01:00.0,mdev=nvidia.1", "0000:01:00.0,x-vga=maybe", "0000:0A:00.0"):
        with pytest.raises(HostpciError):
            parse_hostpci(bad)
    assert parse_hostpci("0000:01:00,pcie=1,x-vga=1") == {"host": "0000:01:00", "pcie": "1", "x-vga": "1"}
    assert parse_hostpci("01:00.0;01:00.1,rombar=0")["host"] == "01:00.0;01:00.1"


@pytest.mark.parametrize("src", ["builtin:tb4-laptop-egpu", "builtin:ampere-altra", "builtin:amd-desktop-gpu"])
def test_proxmox_export_parses_as_proxmox_does_and_keeps_devices_whole(src):
    t = load_source(src)
    gpu = multifunction_gpu(t)
    p = plan_of(t, *whole_device(t, gpu, "100"))
    entries = parse_proxmox_export(t, export(p, t, "proxmox"))
    given = [a for _, _, devs in entries for a in devs]
    assert len(given) == len(set(given))  # no function twice
    groups = {str(t[a].iommu_group) for a in [gpu.address, *t.slot_siblings(gpu.address)]}
    vm_devices = {a for g in groups for a in t.reported_groups.get(g, ()) if t[a].header_type == 0}
    assert set(given) == vm_devices
    whole = [devs for _, _, devs in entries if gpu.address in devs][0]
    assert set(whole) == {gpu.address, *t.slot_siblings(gpu.address)}  # one entry, every function
    vga = [opts for _, opts, _ in entries if opts.get("x-vga") == "1"]
    assert len(vga) == 1


def vm_sections(text: str) -> dict[str, str]:
    """The export's lines per VM (each VM's config has its own hostpci0..15)."""
    out: dict[str, list[str]] = {}
    vm = None
    for line in text.splitlines():
        m = re.match(r"# VM (\S+):", line)
        if m:
            vm = m.group(1)
            out[vm] = []
        elif vm is not None:
            out[vm].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def test_proxmox_export_with_vfs_in_two_vms():
    t = load_source("builtin:sriov-nic-server")
    vf = next(fn for fn in t if fn.is_virtfn)
    other = next(fn for fn in t if fn.caps.sriov and not fn.is_virtfn and fn.address != vf.physfn)
    p = plan_of(t, ["assign", vf.bdf, "--vm", "101"], ["assign", other.bdf, "--vm", "102", "--group"])
    sections = vm_sections(export(p, t, "proxmox"))
    assert set(sections) == {"101", "102"}
    entries = parse_proxmox_export(t, sections["101"])
    assert [devs for _, _, devs in entries] == [[vf.address]]  # a VF is never widened to its device
    entries = parse_proxmox_export(t, sections["102"])
    assert {a for _, _, devs in entries for a in devs} == {other.address, *t.slot_siblings(other.address)}


# ---- cmdline ---------------------------------------------------------------------------------------


def cmd_params(text: str) -> list[str]:
    return [w for ln in text.splitlines() if not ln.startswith("#") for w in ln.split()]


def test_cmdline_adds_intel_iommu_and_pt_when_the_vendor_is_known():
    t = load_source("builtin:tb4-laptop-egpu")
    assert iommu_vendor(t)[0] == "intel" and t.source.kernel_cmdline is None
    gpu = multifunction_gpu(t)
    text = export(plan_of(t, ["assign", gpu.bdf, "--vm", "win", "--group"]), t, "cmdline")
    words = cmd_params(text)
    assert "intel_iommu=on" in words and "iommu=pt" in words
    assert "whole command line afterwards" not in text and "does not show the machine's current command line" in text


def test_cmdline_on_amd_adds_no_unknown_option():
    """amd_iommu=on is not an option of drivers/iommu/amd/init.c (it logs 'Unknown option')."""
    t = load_source("builtin:amd-desktop-gpu")
    assert iommu_vendor(t)[0] == "amd"
    gpu = multifunction_gpu(t)
    text = export(plan_of(t, ["assign", gpu.bdf, "--vm", "win", "--group"]), t, "cmdline")
    words = cmd_params(text)
    assert "iommu=pt" in words and not any(w.startswith("amd_iommu") for w in words)


def test_cmdline_keeps_what_the_machine_already_says(unpacked):
    t = load_sysfs(unpacked("rp-noacs"))
    cmdline = t.source.kernel_cmdline.split()
    assert "intel_iommu=on" in cmdline and any(w.startswith("iommu=") for w in cmdline)
    ep = next(fn for fn in t if fn.header_type == 0 and fn.driver == "nvme")
    label = str(ep.iommu_group)
    members = t.reported_groups[label]
    p = plan_of(t, ["assign", ep.bdf, "--vm", "win", "--group"])
    text = export(p, t, "cmdline")
    words = cmd_params(text)
    assert "intel_iommu=on" not in words and "iommu=pt" not in words  # already set / chosen otherwise
    assert "whole command line afterwards: " + t.source.kernel_cmdline in text
    assert members
