"""The kernel context read from the source, and predictions that use it as a user runs them.

The "done when" of the context work: ``fit PRE --port P --bar ...`` with no ``--hotplug``
and no ``--kernel-param`` equals what the kernel did on every hot-add captured on Linux 6.1
(tests/fixtures/qemu) and Linux 6.12 (tests/fixtures/qemu-6.12): the verdict, every BAR's
address, a new bridge's bus numbers and windows. ``check`` on a plan with that hot-add
(no ``--hotplug``) reports an error exactly when the kernel failed.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.kernel.context import hotadd_cases, resolve_context
from explorer.kernel.setup import fit_hotadd
from explorer.kernel.setup.versions import rules_for_release
from explorer.model import Address
from explorer.sources import load_source
from explorer.sources.snapshot import capture, load_snapshot
from explorer.sources.sysfs import load_sysfs
from explorer.sources.yaml_topology import dump_yaml, load_yaml_text

FIXTURES = Path(__file__).parent / "fixtures"
FOLDERS = ("qemu", "qemu-6.12")
CASES = [f"{d}/{p.name[: -len('.outcome.json')]}" for d in FOLDERS
         for p in sorted((FIXTURES / d).glob("hotplug-*.outcome.json"))]


def _outcome(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.outcome.json").read_text())


def _pre(unpacked, case: str) -> Path:
    folder = case.split("/")[0]
    return unpacked(f"{folder}/" + _outcome(case)["pre_capture"][: -len(".tar.gz")])


def _hex(v):
    return int(v, 16) if v is not None else None


def _device_args(o: dict) -> list[str]:
    """The device as a user describes it to fit: its BARs, and what kind of bridge it is."""
    dev = o["device"]
    args = []
    for b in dev["bars"]:
        args += ["--bar", f"{b['index']}:{b['type']}:{b['size']}"]
    if dev["class"].startswith("0x0604"):
        kind = {"x3130-upstream": "switch", "pcie-pci-bridge": "shpc"}.get(dev["driver"], "pci")
        args += ["--bridge", kind]
    return args


def test_cases_cover_both_kernels():
    assert len([c for c in CASES if c.startswith("qemu/")]) >= 18
    assert len([c for c in CASES if c.startswith("qemu-6.12/")]) == len([c for c in CASES if c.startswith("qemu/")])


@pytest.mark.parametrize("case", CASES)
def test_fit_without_flags_equals_the_kernel(unpacked, capsys, case):
    o = _outcome(case)
    pre = str(_pre(unpacked, case))
    rc = main(["fit", pre, "--port", o["port"], *_device_args(o), "--json"])
    doc = json.loads(capsys.readouterr().out)
    kernel_ok = o["result"] == "assigned"
    assert rc == (0 if kernel_ok else 1)
    assert doc["fits"] is kernel_ok
    assert doc["certain"] is True and doc["possibilities"] == []
    # the context was read, not given or assumed
    ctx = doc["context"]
    drv = ctx["slot_hotplug_drivers"][str(Address.parse(o["port"]))]
    assert drv["how"] == "read" and drv["value"] == {"acpi": "acpiphp", "native": "pciehp"}[o["hotplug"]]
    assert ctx["rules"]["value"] == ("6.12" if case.startswith("qemu-6.12/") else "6.1")
    assert ctx["overrides"] == []
    got = [(b["index"], b["assigned"], b["start"], b["end"]) for b in doc["bars"]]
    assert got == [(b["index"], b["assigned"], _hex(b["start"]), _hex(b["end"])) for b in o["outcome"]]
    if "new_bridge" in o:
        nb = doc["new_bridge"]
        assert nb["bus"] == o["new_bridge"]["bus"]
        assert nb["bus_assigned"] == o["new_bridge"]["bus_assigned"]
        want = {k: (None if v is None else [_hex(v[0]), _hex(v[1])]) for k, v in o["new_bridge"]["windows"].items()
                if k in ("io", "mem", "pref")}
        assert {k: nb["windows"][k] for k in want} == want


@pytest.mark.parametrize("case", CASES)
def test_check_without_hotplug_flag_agrees_with_the_kernel(unpacked, capsys, tmp_path, case):
    o = _outcome(case)
    pre = str(_pre(unpacked, case))
    plan = tmp_path / "p.yaml"
    assert main(["plan", "new", pre, "-o", str(plan)]) == 0
    words = ["hot-add", o["port"]]
    for b in o["device"]["bars"]:
        words += ["--bar", f"{b['index']}:{b['type']}:{b['size']}"]
    if o["device"]["class"].startswith("0x0604"):
        words += ["--bridge", {"x3130-upstream": "switch", "pcie-pci-bridge": "shpc"}.get(o["device"]["driver"], "pci")]
    assert main(["plan", "add", str(plan), *words]) == 0
    capsys.readouterr()
    rc = main(["check", str(plan), "--source", pre, "--json"])
    doc = json.loads(capsys.readouterr().out)
    hot = [f for f in doc["findings"] if f["code"] in ("HOTADD-FIT", "HOTADD-BUS") and f["severity"] == "error"]
    assert bool(hot) == (o["result"] != "assigned"), hot
    if o["result"] != "assigned":
        assert rc == 1
        # the driver read from the source names the path
        drv = {"acpi": "acpiphp", "native": "pciehp"}[o["hotplug"]]
        assert f"with {drv} on Linux" in hot[0]["message"]


def test_lspci_leaves_the_slot_driver_unknown_and_computes_both(capsys):
    lspci = str(FIXTURES / "qemu" / "hotplug-native-default-1g.pre.lspci.txt")
    t = load_source(lspci)
    ctx = resolve_context(t)
    port = Address.parse("00:02.0")
    assert ctx.slot_driver(port).value is None and ctx.slot_driver(port).how == "unknown"
    assert not ctx.rules.known
    assert {(c["hotplug"], c["kernel"]) for c in hotadd_cases(ctx, port)} == {
        ("acpi", "6.1"), ("native", "6.1"), ("acpi", "6.12"), ("native", "6.12")}
    rc = main(["fit", lspci, "--port", "00:02.0", "--bar", "0:mem32:256", "--bar", "2:pref64:1G", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["certain"] is False and len(doc["possibilities"]) >= 2
    assert rc == 1  # the worst case: acpiphp cannot place the 1 GiB BAR
    hp = {p["assuming"].get("hotplug") for p in doc["possibilities"]}
    assert {"acpi", "native"} <= {x for v in hp if v for x in v.split("|")}


def test_flags_override_and_say_so(unpacked, capsys):
    pre = str(unpacked("qemu/hotplug-acpi-default-1g.pre"))
    args = ["fit", pre, "--port", "00:02.0", "--bar", "0:mem32:256", "--bar", "2:pref64:1G", "--json"]
    assert main(args) == 1
    assert main([*args, "--hotplug", "native"]) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[1])  # compact JSON: one document a line
    assert doc["context"]["slot_hotplug_drivers"]["0000:00:02.0"] == {
        "value": "pciehp", "how": "given", "where": "--hotplug native"}
    assert any("overrides" in o and "acpiphp" in o for o in doc["context"]["overrides"])
    assert main([*args, "--kernel", "6.12", "--kernel-param", "pci=hpmmioprefsize=1G"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["context"]["rules"]["how"] == "given"
    assert doc["context"]["kernel_cmdline"]["how"] == "given"
    assert "pci" in doc["context"]["kernel_params"]
    text_rc = main(["fit", pre, "--port", "00:02.0", "--bar", "2:pref64:1G", "--hotplug", "pciehp"])
    out = capsys.readouterr().out
    assert text_rc == 0 and "override: --hotplug pciehp overrides" in out


def test_linux_612_acpi_bridge_gets_no_windows_where_61_does(unpacked):
    """The measured difference: an ACPI hot-add of a switch upstream port (acpiphp_glue.c
    check_hotplug_bridge exempts upstream ports on 6.12)."""
    t = load_sysfs(unpacked("qemu-6.12/hotplug-acpi-bridge-bus3.pre"))
    r612 = fit_hotadd(t, "00:02.0", [], bridge="switch")
    r61 = fit_hotadd(t, "00:02.0", [], bridge="switch", kernel="6.1")
    assert r612.kernel == "6.12" and all(v is None for v in r612.new_bridge.windows.values())
    assert r61.kernel == "6.1" and all(v is not None for v in r61.new_bridge.windows.values())
    # a PCIe-to-PCI bridge is still a hotplug bridge under acpiphp on 6.12
    assert all(v is not None for v in fit_hotadd(t, "00:02.0", [], bridge="pci").new_bridge.windows.values())
    # not saying what the bridge is: both, side by side
    both = fit_hotadd(t, "00:02.0", [], buses=1)
    assert not both.certain and len(both.possibilities) == 2


def test_nearest_modelled_kernel():
    assert rules_for_release("6.1.0-56-amd64") == ("6.1", True)
    assert rules_for_release("6.12.118+deb12-amd64") == ("6.12", True)
    assert rules_for_release("5.15.0-91-generic") == ("6.1", False)
    assert rules_for_release("6.8.0-40-generic") == ("6.12", False)
    assert rules_for_release("6.17.1") == ("6.12", False)
    assert rules_for_release("garbage") is None


def test_unmodelled_release_is_assumed_and_named(unpacked):
    t = load_sysfs(unpacked("qemu/hotplug-native-default-1g.pre"))
    import dataclasses

    t2 = dataclasses.replace(t, source=dataclasses.replace(t.source, kernel_release="5.15.0-91-generic"))
    ctx = resolve_context(t2)
    assert ctx.rules.value == "6.1" and ctx.rules.how == "assumed" and "5.15.0-91-generic" in ctx.rules.where


def test_context_facts_from_sysfs(unpacked):
    for folder in FOLDERS:
        t = load_sysfs(unpacked(f"{folder}/switch"))
        ctx = resolve_context(t)
        assert ctx.iommu.value is True and ctx.iommu_vendor.value == "intel"
        assert "sys/class/iommu" in ctx.iommu.where
        assert ctx.cmdline.how == "read" and ctx.cmdline.where == "proc/cmdline"
        assert ctx.param("intel_iommu").value == "on" and ctx.param("iommu").value == "nopt"
        assert ctx.group_types and all(f.how == "read" for _, f in ctx.group_types)
        drivers = {str(a): f.value for a, f in ctx.slot_drivers if f.known}
        assert drivers and set(drivers.values()) == {"acpiphp"}


def test_yaml_states_the_facts_and_round_trips(unpacked):
    t = load_sysfs(unpacked("qemu-6.12/hotplug-native-default-1g.pre"))
    text = dump_yaml(t)
    assert "hotplug-driver: pciehp" in text
    t2 = load_yaml_text(text)
    ctx = resolve_context(t2)
    f = ctx.slot_driver(Address.parse("00:02.0"))
    assert f.value == "pciehp" and f.how == "read" and "YAML" in f.where
    assert ctx.rules.value == "6.12" and ctx.release.how == "read"
    r = fit_hotadd(t2, "00:02.0", ["0:mem32:256", "2:pref64:1G"])
    assert r.fits and r.hotplug == "native" and r.kernel == "6.12"


def test_yaml_rejects_an_unknown_hotplug_driver():
    from explorer.sources import SourceError

    bad = """pci-explorer: topology/1
host-bridges:
  - root-bus: "0000:00"
    devices:
      - address: "00:02.0"
        ids: "1b36:000c"
        class: "060400"
        bridge: {bus-range: "01-01"}
        slot: {hotplug: true, hotplug-driver: pcihp}
"""
    with pytest.raises(SourceError) as e:
        load_yaml_text(bad)
    assert "[slot.hotplug-driver]" in str(e.value) and ":9:" in str(e.value)


def test_snapshot_keeps_what_the_context_needs(unpacked, tmp_path):
    """A capture of a Linux 6.12 tree keeps the port services, the slots, /sys/class/iommu and
    the whole kernel log; of a 6.1 tree the slot module links."""
    for folder in FOLDERS:
        root = unpacked(f"{folder}/hotplug-native-default-1g.pre")
        out = tmp_path / f"{folder}.tar.gz"
        capture(root, out)
        with tarfile.open(out) as tf:
            names = set(tf.getnames())
            dmesg = tf.extractfile("./dmesg.txt").read().decode()
        assert any(n.startswith("./sys/class/iommu/dmar") for n in names)
        if folder == "qemu-6.12":
            assert any(n.startswith("./sys/bus/pci_express/devices/0000:00:02.0:pcie") for n in names)
        else:
            assert any(n.endswith("/module") and "/slots/" in n for n in names)
        assert dmesg == (Path(root) / "dmesg.txt").read_text()
        t = load_snapshot(out)
        ctx = resolve_context(t)
        assert ctx.slot_driver(Address.parse("00:02.0")).value == "pciehp"
        assert ctx.iommu_vendor.value == "intel"


def test_show_and_tree_json_carry_the_context(unpacked, capsys):
    pre = str(unpacked("qemu-6.12/hotplug-acpi-default-1g.pre"))
    assert main(["tree", pre, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["context"]["rules"]["value"] == "6.12"
    assert doc["context"]["slot_hotplug_drivers"]["0000:00:02.0"]["value"] == "acpiphp"
    assert main(["show", pre, "00:02.0"]) == 0
    out = capsys.readouterr().out
    assert "hotplug driver: acpiphp (read:" in out
    assert main(["show", pre, "00:02.0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["context"]["slot_hotplug_driver"]["value"] == "acpiphp"
