"""The CLI read as a new user reads it: ls-iommu style groups with verdicts, --vfio-ids, the
trust command (and the same facts in show and tree --json), Thunderbolt authorization from
sysfs, help and "did you mean", one way of printing sizes, and groups without an IOMMU."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from explorer.cli import build_parser, main
from explorer.cli_parser import subparsers_action
from explorer.export.trust import trust_json
from explorer.kernel.groups import predict_groups
from explorer.model.units import human_size
from explorer.sources import load_source
from explorer.sources.snapshot import capture, load_snapshot
from explorer.sources.sysfs import load_sysfs


def run(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ---- groups ----------------------------------------------------------------------------------------


def test_groups_one_line_per_function_with_a_verdict(capsys):
    src = "builtin:tb4-laptop-egpu"
    t = load_source(src)
    rc, out, _ = run(capsys, "groups", src, "-v")
    assert rc == 0
    lines = out.splitlines()
    for fn in t:
        if fn.iommu_group is None:
            continue
        mine = [ln for ln in lines if f"  {fn.bdf}  " in ln and ln.startswith("group ")]
        assert len(mine) == 1, fn.bdf
        ln = mine[0]
        assert ln.split()[1] == str(fn.iommu_group)
        assert f"[{fn.vendor_device}]" in ln
        assert (f"driver {fn.driver}" if isinstance(fn.driver, str) else "driver") in ln
        assert " reset " in ln  # -v
    # One verdict per reported group.
    assert sum(1 for ln in lines if ln.startswith("  => ")) == len(t.reported_groups)
    # The eGPU and its HDMI audio are one device behind a bridge that stays with the host.
    gpu_group = next(k for k, v in t.reported_groups.items() if any(a.bus == 4 for a in v))
    idx = max(i for i, ln in enumerate(lines) if ln.startswith(f"group {gpu_group} "))
    assert lines[idx + 1].startswith("  => one device (2 functions") and "can be passed through" in lines[idx + 1]
    # Without -v, no reset methods.
    _, out, _ = run(capsys, "groups", src)
    assert " reset " not in out


def test_groups_verdict_names_what_a_device_shares_with(unpacked, capsys):
    root = str(unpacked("rp-noacs"))
    t = load_sysfs(root)
    label, members = next((k, v) for k, v in t.reported_groups.items() if sum(t[a].header_type == 0 for a in v) > 1)
    rc, out, _ = run(capsys, "groups", root)
    assert rc == 0
    lines = out.splitlines()
    idx = max(i for i, ln in enumerate(lines) if ln.startswith(f"group {label} "))
    verdict = lines[idx + 1]
    endpoints = [a for a in members if t[a].header_type == 0]
    assert " shares with " in verdict
    for a in endpoints[1:]:
        assert str(a)[5:] in verdict
    storage = [a for a in endpoints if t[a].class_code >> 16 == 0x01 and isinstance(t[a].driver, str)]
    assert storage and "(host-critical)" in verdict


def test_groups_verdict_says_when_only_the_acs_override_isolates(capsys):
    src = "builtin:switch-no-acs"
    stock = predict_groups(load_source(src))
    shared = [v for v in stock.groups.values() if len(v) > 1]
    assert shared
    rc, out, _ = run(capsys, "groups", src, "--acs-override", "downstream,multifunction")
    assert rc == 0
    assert "needs the ACS override (not isolated by hardware)" in out


def test_vfio_ids_for_a_group_and_for_a_device(unpacked, capsys):
    root = str(unpacked("rp-noacs"))
    t = load_sysfs(root)
    label, members = next((k, v) for k, v in t.reported_groups.items() if sum(t[a].header_type == 0 for a in v) > 1)
    endpoints = [t[a] for a in members if t[a].header_type == 0]
    ids = list(dict.fromkeys(f.vendor_device for f in endpoints))
    for spec in (label, str(endpoints[-1].address)[5:]):
        rc, out, _ = run(capsys, "groups", root, "--vfio-ids", spec)
        assert rc == 0
        assert f"vfio-pci.ids={','.join(ids)}" in out.splitlines()
        for f in endpoints:
            assert f"driverctl set-override {f.bdf} vfio-pci" in out
        for a in members:
            if t[a].header_type == 1:
                assert f"driverctl set-override {a} " not in out  # bridges stay on pcieport
    rc, _, err = run(capsys, "groups", root, "--vfio-ids", "77")
    assert rc == 2 and "no IOMMU group '77'" in err


def test_groups_without_an_iommu_says_why_and_what_to_set(unpacked, tmp_path, capsys):
    root = tmp_path / "noiommu"
    shutil.copytree(unpacked("base"), root, symlinks=True)
    groups = root / "sys" / "kernel" / "iommu_groups"
    shutil.rmtree(groups)
    groups.mkdir()
    # Also drop each device's iommu_group link: the kernel makes none without an IOMMU driver.
    for dev in (root / "sys" / "bus" / "pci" / "devices").iterdir():
        link = Path(os.path.realpath(dev)) / "iommu_group"
        if link.is_symlink():
            link.unlink()
    t = load_sysfs(root)
    assert t.source.iommu_present is False
    rc, out, _ = run(capsys, "groups", str(root))
    assert rc == 0
    assert "formed no IOMMU groups" in out and "What to set" in out
    hb = t.functions.get(next(iter(t.functions)))
    if hb.vendor_id == 0x8086:
        assert "intel_iommu=on" in out


# ---- trust -----------------------------------------------------------------------------------------


def test_show_says_untrusted_on_the_thunderbolt_egpu(capsys):
    """The eGPU is behind an external-facing port: show says so in words, with the costs."""
    src = "builtin:tb4-laptop-egpu"
    t = load_source(src)
    egpu = next(fn for fn in t if fn.class_code and fn.class_code >> 16 == 0x03 and fn.address.bus != 0)
    rc, out, _ = run(capsys, "show", src, egpu.bdf)
    assert rc == 0
    assert "external-facing unknown" not in out and "external-facing    unknown" not in out
    assert re.search(r"external-facing +no \(only a root port", out)
    assert re.search(r"trust +untrusted and removable \(predicted\)", out)
    assert "no ATS" in out and "swiotlb" in out and "strict" in out
    # tree --json carries the same facts.
    rc, out, _ = run(capsys, "tree", src, "--json")
    dev = next(d for d in json.loads(out)["devices"] if d["bdf"] == egpu.bdf)
    assert dev["trust"]["untrusted"] is True and dev["trust"]["from"] == "predicted"
    assert {c["cost"] for c in dev["trust"]["costs"]} >= {"no-ats", "swiotlb-bounce", "strict-iotlb"}
    rc, out, _ = run(capsys, "show", src, egpu.bdf, "--json")
    assert json.loads(out)["device"]["trust"] == dev["trust"]


def test_trust_command_lists_ports_devices_and_where_each_fact_came_from(capsys):
    src = "builtin:tb4-laptop-egpu"
    t = load_source(src)
    rc, out, _ = run(capsys, "trust", src, "--json")
    assert rc == 0
    doc = json.loads(out)
    ports = {p["bdf"]: p for p in doc["external_facing_ports"]}
    assert set(ports) == {fn.bdf for fn in t if fn.external_facing}
    assert all(p["from"] == "stated in the YAML topology" for p in ports.values())
    below = {b for p in ports.values() for b in p["below"]}
    untrusted = {d["bdf"] for d in doc["untrusted"]}
    assert untrusted and untrusted <= below
    assert doc["thunderbolt"] is None
    rc, text, _ = run(capsys, "trust", src)
    assert "External-facing ports" in text and "Thunderbolt/USB4 authorization: unknown" in text
    for b in untrusted:
        assert b in text


def test_trust_on_a_capture_says_sysfs_hides_external_facing(unpacked, capsys):
    t = load_sysfs(unpacked("rp-noacs"))
    doc = trust_json(t)
    rps = [fn.bdf for fn in t if fn.pcie_type is not None and fn.pcie_type.value == "root-port"]
    assert rps and {p["bdf"] for p in doc["ports_unknown"]} == set(rps)
    assert all("sysfs does not export" in p["why"] for p in doc["ports_unknown"])
    # The kernel said removable for none of them (sysfs removable): trusted, as reported.
    assert doc["untrusted"] == [] and all(fn.removable is False for fn in t)


def _add_thunderbolt(root: Path, nhi: str) -> None:
    """A thunderbolt bus laid out as the kernel does (drivers/thunderbolt/domain.c, switch.c):
    domainN below the NHI's PCI device, routers N-0 (host) and N-R below it, and the bus links."""
    nhi_dir = Path(os.path.realpath(root / "sys" / "bus" / "pci" / "devices" / nhi))
    dom = nhi_dir / "domain0"
    host = dom / "0-0"
    dev = host / "0-1"
    dev.mkdir(parents=True)
    (dom / "security").write_text("user\n")
    (dom / "iommu_dma_protection").write_text("1\n")
    (host / "authorized").write_text("1\n")
    (host / "vendor_name").write_text("Intel\n")
    (host / "device_name").write_text("Tiger Lake\n")
    (dev / "authorized").write_text("0\n")
    (dev / "vendor_name").write_text("Razer\n")
    (dev / "device_name").write_text("Core X\n")
    bus = root / "sys" / "bus" / "thunderbolt" / "devices"
    bus.mkdir(parents=True)
    for p in (dom, host, dev):
        os.symlink(os.path.relpath(p, bus), bus / p.name)


def test_thunderbolt_authorization_read_from_sysfs_and_kept_by_snapshots(unpacked, tmp_path, capsys):
    root = tmp_path / "tb"
    shutil.copytree(unpacked("base"), root, symlinks=True)
    nhi = sorted(os.listdir(root / "sys" / "bus" / "pci" / "devices"))[-1]
    _add_thunderbolt(root, nhi)
    t = load_sysfs(root)
    tb = {d.name: d for d in t.source.thunderbolt}
    assert set(tb) == {"domain0", "0-0", "0-1"}
    assert tb["domain0"].security == "user" and tb["domain0"].iommu_dma_protection is True
    assert str(tb["domain0"].pci_device) == nhi
    assert tb["0-1"].authorized == 0 and tb["0-0"].is_host_router and tb["0-1"].device_name == "Core X"
    rc, out, _ = run(capsys, "trust", str(root))
    assert "0-1  Razer Core X: NOT authorized" in out and "security user" in out
    rc, out, _ = run(capsys, "show", str(root), nhi)
    assert "domain0: security user, IOMMU DMA protection on" in out
    # A snapshot keeps them.
    snap = tmp_path / "tb.tar.gz"
    capture(str(root), str(snap))
    t2 = load_snapshot(snap)
    assert t2.source.thunderbolt == t.source.thunderbolt
    # No thunderbolt bus: unknown, not "none".
    assert load_sysfs(unpacked("base")).source.thunderbolt is None


# ---- help, errors, sizes, phrases ------------------------------------------------------------------------


def _parsers(p, path=()):
    yield path, p
    sub = subparsers_action(p)
    if sub is not None:
        for name, sp in sub.choices.items():
            yield from _parsers(sp, path + (name,))


def test_every_option_has_help():
    for path, p in _parsers(build_parser()):
        for a in p._actions:
            if a.option_strings and a.dest != "help":
                assert a.help and a.help.strip(), (path, a.option_strings)
            elif not a.option_strings and path and path[-1] != "__complete" and not isinstance(a, argparse._SubParsersAction):
                assert a.help, (path, a.dest)
    serve = dict(_parsers(build_parser()))[("serve",)]
    port = next(a for a in serve._actions if "--port" in a.option_strings)
    assert port.default == 8000 and "8000" in port.help


@pytest.mark.parametrize("argv, usage, hint", [
    (["groups", "builtin:example-small", "--compre"], "pci-explorer groups: error:", "did you mean --compare?"),
    (["trsut", "builtin:example-small"], "pci-explorer: error:", "did you mean 'trust'?"),
    (["export", "p.yaml", "--to", "libvrit"], "pci-explorer export: error:", "did you mean 'libvirt'?"),
    (["plan", "shwo", "p.yaml"], "pci-explorer plan: error:", "did you mean 'show'?"),
])
def test_mistyped_option_or_subcommand_gets_did_you_mean(capsys, argv, usage, hint):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    # one line naming the (sub)command, the correction, and where the usage is
    assert usage in err and hint in err and "--help" in err
    assert err.count("\n") == 1
    assert "__complete" not in err


def test_sizes_print_one_way():
    assert human_size(4096) == "4 KiB" and human_size(1 << 20) == "1 MiB" and human_size(3 << 29) == "1.5 GiB"
    assert human_size(0xF00) == "3.75 KiB" and human_size(200) == "200 B" and human_size(4097) == "~4 KiB"
    assert human_size(1023992 << 10) == "~999.99 MiB"


@pytest.mark.parametrize("src", ["builtin:tb4-laptop-egpu", "builtin:hotplug-chassis-small-window", "builtin:sriov-nic-server"])
def test_no_hex_sizes_or_oversized_units_in_text(capsys, src):
    t = load_source(src)
    texts = [run(capsys, "resources", src, "-v")[1]]
    for fn in list(t)[:12]:
        texts.append(run(capsys, "show", src, fn.bdf)[1])
    for text in texts:
        assert not re.search(r"0x[0-9a-f]+ B\b", text)
        for m in re.finditer(r"\b(\d+) (KiB|MiB|GiB)\b", text):
            assert int(m.group(1)) < 1024 or int(m.group(1)) % 1024, m.group(0)
        assert not re.search(r"size \d+[KMGT]\b", text)  # not the command-line form
        assert "(as the kernel reported it)" not in text or "unknown (as the kernel" not in text
        assert "physical unknown number" not in text and "Trust untrusted:" not in text


def test_reported_groups_of_an_override_kernel_say_they_need_it():
    """A kernel booted with pcie_acs_override reported smaller groups than a stock kernel forms."""
    from dataclasses import replace

    from explorer.export.groups import list_text
    from explorer.model import Topology

    t = load_source("builtin:switch-no-acs")
    over = predict_groups(t, acs_override="downstream,multifunction")
    fns = [replace(fn, iommu_group=over.group_of.get(fn.address, fn.iommu_group)) for fn in t]
    src = replace(t.source, kernel_cmdline="quiet pcie_acs_override=downstream,multifunction")
    booted = Topology.build(fns, t.host_bridges, src)
    pred = predict_groups(booted)
    assert pred.reported_override == "downstream,multifunction"
    text = list_text(booted, pred, which="reported")
    stock = predict_groups(t)
    split = [m for m in booted.reported_groups.values() if len(stock.groups[stock.group_of[m[0]]]) > len(m)]
    assert split
    verdicts = [ln for ln in text.splitlines() if ln.startswith("  => ")]
    assert sum("needs the ACS override (not isolated by hardware)" in v for v in verdicts) == len(split)


def test_thunderbolt_facts_round_trip_through_yaml(unpacked, tmp_path):
    from explorer.sources.yaml_topology import dump_yaml, load_yaml_text

    root = tmp_path / "tb"
    shutil.copytree(unpacked("base"), root, symlinks=True)
    _add_thunderbolt(root, sorted(os.listdir(root / "sys" / "bus" / "pci" / "devices"))[-1])
    t = load_sysfs(root)
    text = dump_yaml(t)
    assert "thunderbolt:" in text
    assert load_yaml_text(text).source.thunderbolt == t.source.thunderbolt
    assert "thunderbolt:" not in dump_yaml(load_sysfs(unpacked("base")))
