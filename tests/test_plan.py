"""Plans: action words, the YAML plan file (round trip, atomic save, one-line errors), applying."""

from __future__ import annotations

import os
import re

import pytest

from explorer.fileio import OutputExists
from explorer.model import ABSENT, Address, BarKind
from explorer.plan import (
    ActionError,
    PlanFileError,
    add_action,
    apply_plan,
    dump_plan,
    load_plan,
    new_plan,
    parse_plan,
    remove_action,
    render_plan,
    save_plan,
)
from explorer.plan.actions import Assign, Bind, HotAdd, KernelParam, Mdev, Sriov, Trust, parse_action
from explorer.plan.apply import merged_cmdline
from explorer.sources.sysfs import load_sysfs

A = Address.parse


@pytest.fixture(scope="module")
def noacs(unpacked):
    return load_sysfs(unpacked("rp-noacs"))


@pytest.fixture(scope="module")
def sriov(unpacked):
    return load_sysfs(unpacked("sriov-nvme"))


# ---- action words ---------------------------------------------------------------------------


def test_parse_every_form():
    assert parse_action(["bind", "01:00.0", "--driver", "vfio-pci"]) == Bind(A("0000:01:00.0"), "vfio-pci")
    assert parse_action(["bind", "0000:01:00.0", "--driver", "pci-stub", "--group"]).group
    assert parse_action(["unbind", "0000:01:00.0"]).kind == "unbind"
    assert parse_action(["assign", "0000:01:00.0", "--vm", "win11", "--group"]) == Assign(A("0000:01:00.0"), "win11", True)
    assert parse_action(["sriov", "0000:01:00.0", "--vfs", "4"]) == Sriov(A("0000:01:00.0"), 4)
    m = parse_action(["mdev", "0000:00:02.0", "--type", "i915-GVTg_V5_4", "--count", "2"])
    assert isinstance(m, Mdev) and m.count == 2 and len(set(m.uuids)) == 2
    h = parse_action(["hot-add", "0000:00:02.0", "--bar", "pref64:1G", "--bar", "mem32:1M", "--buses", "2"])
    assert isinstance(h, HotAdd) and h.buses == 2
    assert [(b.kind, b.size) for b in h.bars] == [(BarKind.PREF64, 1 << 30), (BarKind.MEM32, 1 << 20)]
    assert parse_action(["hot-remove", "0000:01:00.0"]).kind == "hot-remove"
    assert parse_action(["trust", "0000:00:02.0", "--external"]) == Trust(A("0000:00:02.0"), True)
    assert parse_action(["trust", "0000:00:02.0", "--internal"]) == Trust(A("0000:00:02.0"), False)
    assert parse_action(["kernel-param", "pci=hpmmioprefsize=2G"]) == KernelParam("pci", "hpmmioprefsize=2G")


@pytest.mark.parametrize(
    "words, needle",
    [
        ([], "no action"),
        (["frobnicate", "0000:01:00.0"], "unknown action"),
        (["bind", "0000:01:00.0"], "--driver is required"),
        (["bind", "01:00", "--driver", "vfio-pci"], "not a PCI address"),
        (["assign", "0000:01:00.0", "--vm", "bad name"], "not a VM name"),
        (["sriov", "0000:01:00.0", "--vfs", "-1"], "whole number"),
        (["sriov", "0000:01:00.0", "--vfs"], "--vfs needs a value"),
        (["sriov", "0000:01:00.0", "--vfs", "many"], "whole number"),
        (["hot-add", "0000:00:02.0", "--bar", "pref64:3M"], "power of two"),
        (["hot-add", "0000:00:02.0", "--bar", "weird:1M"], "unknown BAR kind"),
        (["hot-add", "0000:00:02.0"], "BARs"),
        (["trust", "0000:00:02.0"], "exactly one"),
        (["trust", "0000:00:02.0", "--external", "--internal"], "exactly one"),
        (["kernel-param", "a b"], "NAME=VALUE"),
        (["unbind", "0000:01:00.0", "--vm", "x"], "takes no --vm"),
        (["mdev", "0000:00:02.0", "--type", "t", "--uuid", "NOT-A-UUID"], "UUID"),
    ],
)
def test_bad_words_are_one_line_errors(words, needle):
    with pytest.raises(ActionError) as e:
        parse_action(words)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_words_round_trip():
    for words in (["bind", "0000:01:00.0", "--driver", "vfio-pci", "--group"], ["sriov", "0000:01:00.0", "--vfs", "2", "--driver", "vfio-pci"],
                  ["hot-add", "0000:00:02.0", "--bar", "pref64:1G", "--buses", "1"], ["kernel-param", "iommu=pt"]):
        a = parse_action(words)
        assert a.words() == words
        assert parse_action(a.words()) == a


# ---- the plan and its file --------------------------------------------------------------------


def _full_plan(t):
    p = new_plan(t, "rp-noacs capture")
    for words in (
        ["assign", "0000:01:00.0", "--vm", "win", "--group"],
        ["bind", "0000:03:00.0", "--driver", "pci-stub"],
        ["unbind", "0000:03:00.0"],
        ["mdev", "0000:03:00.0", "--type", "nvidia-155", "--count", "2", "--vm", "win"],
        ["hot-add", "0000:00:02.2", "--bar", "pref64:1G", "--bar", "io:32"],
        ["hot-remove", "0000:04:00.0"],
        ["trust", "0000:00:02.2", "--external"],
        ["sriov", "0000:02:00.0", "--vfs", "0"],
        ["kernel-param", "pci=realloc,hpmmioprefsize=2G"],
    ):
        p = add_action(p, words)
    return p


def test_new_plan_fingerprints_every_device(noacs):
    p = new_plan(noacs, "rp-noacs")
    assert len(p.devices) == len(noacs)
    rec = p.recorded(A("0000:01:00.0"))
    assert rec.vendor_device == "8086:10d3" and rec.class_code == "020000" and rec.subsystem == "8086:0000"
    assert rec.serial == "52-54-00-ff-ff-12-34-56" and rec.driver == "e1000e"
    assert p.recorded(A("0000:00:00.0")).driver is ABSENT
    assert "no actions yet" in render_plan(p)


def test_save_load_round_trip(noacs, tmp_path):
    p = _full_plan(noacs)
    path = tmp_path / "plan.yaml"
    save_plan(p, path)
    q = load_plan(path)
    assert q == p
    assert q.path == str(path)
    assert dump_plan(q) == dump_plan(p)
    assert q.where(1) == f"{path}:{q.action_lines[1]}"
    text = render_plan(q)
    assert "1. assign 0000:01:00.0 --vm win --group" in text and "9. kernel-param pci=realloc,hpmmioprefsize=2G" in text


def test_source_strings_stay_data(noacs, tmp_path):
    p = new_plan(noacs, 'odd "name"\nwith: newline # and: yaml')
    path = tmp_path / "p.yaml"
    save_plan(p, path)
    assert load_plan(path).source.spec == 'odd "name"\nwith: newline # and: yaml'


def test_save_refuses_to_overwrite_and_is_atomic(noacs, tmp_path, monkeypatch):
    p = _full_plan(noacs)
    path = tmp_path / "plan.yaml"
    save_plan(p, path)
    before = path.read_bytes()
    with pytest.raises(OutputExists):
        save_plan(p, path)
    # A failure half-way through writing leaves the old file whole and no temporary behind.
    import explorer.fileio as fileio

    real_fsync = os.fsync

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", boom)
    with pytest.raises(OSError):
        save_plan(add_action(p, ["kernel-param", "iommu=pt"]), path, overwrite=True)
    monkeypatch.setattr(fileio.os, "fsync", real_fsync)
    assert path.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["plan.yaml"]
    with pytest.raises(OSError):
        monkeypatch.setattr(fileio.os, "fsync", boom)
        save_plan(p, tmp_path / "new.yaml")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["plan.yaml"]


def test_remove_action(noacs):
    p = _full_plan(noacs)
    q = remove_action(p, 0)
    assert q.actions == p.actions[1:]
    with pytest.raises(ActionError):
        remove_action(p, 99)


GOOD_HEAD = 'pci-explorer-plan: 1\nsource:\n  spec: "x"\ndevices:\n  - {bdf: "0000:01:00.0", id: "8086:10d3"}\nactions:\n'


@pytest.mark.parametrize(
    "text, line, field, needle",
    [
        ("", None, None, "empty"),
        ("just: text\n", 1, "pci-explorer-plan", "not a pci-explorer plan"),
        ("pci-explorer-plan: 7\nsource: {spec: x}\n", 1, "pci-explorer-plan", "unsupported plan format version"),
        ("pci-explorer-plan: 1\nsource: {spec: x}\nextra: 1\n", 3, "extra", "unknown key"),
        ("pci-explorer-plan: 1\nsource: [1, 2]\n", 2, "source", "expected a mapping"),
        ("pci-explorer-plan: 1\nsource: {spec: x}\ndevices:\n  - {bdf: 0000:zz:00.0}\n", 4, "devices[0].bdf", "not a PCI address"),
        ("pci-explorer-plan: 1\nsource: {spec: x}\ndevices:\n  - {bdf: '0000:01:00.0', id: 'nope'}\n", 4, "devices[0].id", "vendor:device"),
        (GOOD_HEAD + "  - action: bind\n    device: 0000:01:00.0\n", 7, "actions[0].driver", "missing"),
        (GOOD_HEAD + "  - action: sriov\n    pf: 0000:01:00.0\n    vfs: lots\n", 9, "actions[0].vfs", "whole number"),
        (GOOD_HEAD + "  - action: assign\n    device: 0000:01:00.0\n    vm: win\n    group: maybe\n", 10, "actions[0].group", "true or false"),
        (GOOD_HEAD + "  - action: launch\n", 7, "actions[0].action", "unknown action"),
        (GOOD_HEAD + "  - action: hot-add\n    port: 0000:00:02.0\n    bars: [pref64:1G, mem32:3K]\n", 9, "actions[0].bars[1]", "power of two"),
        (GOOD_HEAD + "  - action: mdev\n    parent: 0000:00:02.0\n    type: t\n    uuids: [xyz]\n", 10, "actions[0].uuids[0]", "UUID"),
        (GOOD_HEAD + "  - action: unbind\n    device: 0000:01:00.0\n    device: 0000:02:00.0\n", 9, "actions[0].device", "given twice"),
        ("pci-explorer-plan: 1\nsource: {spec: x\n", 3, None, "not valid YAML"),
    ],
)
def test_bad_plan_files_give_one_line_errors(tmp_path, text, line, field, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PlanFileError) as e:
        load_plan(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert needle in msg
    assert msg.startswith(str(path))
    if line is not None:
        assert e.value.line == line, msg
        assert re.match(rf"^{re.escape(str(path))}:{line}(:\d+)?", msg)
    if field is not None:
        assert e.value.field == field and f"[{field}]" in msg


def test_unreadable_plan(tmp_path):
    with pytest.raises(PlanFileError) as e:
        load_plan(tmp_path / "missing.yaml")
    assert "cannot read" in str(e.value)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PlanFileError):
        load_plan(tmp_path / "bin.yaml")


# ---- applying ------------------------------------------------------------------------------------


def test_apply_changes_drivers_and_records_params(noacs):
    p = new_plan(noacs, "x")
    p = add_action(p, ["assign", "0000:01:00.0", "--vm", "win", "--group"])
    p = add_action(p, ["unbind", "0000:03:00.0"])
    p = add_action(p, ["kernel-param", "pci=hpmmioprefsize=2G"])
    p = add_action(p, ["kernel-param", "iommu=pt"])
    t = apply_plan(noacs, p)
    for bdf in ("0000:01:00.0", "0000:02:00.0", "0000:04:00.0"):
        assert t[bdf].driver == "vfio-pci" and t[bdf].driver_override == "vfio-pci"
    for bdf in ("0000:00:02.0", "0000:00:02.1", "0000:00:02.3"):
        assert t[bdf].driver == "pcieport"  # bridges stay on pcieport
    assert t["0000:03:00.0"].driver is ABSENT
    assert "pci=hpmmioprefsize=2G" in t.source.kernel_cmdline.split()
    assert "iommu=pt" in t.source.kernel_cmdline.split() and "iommu=nopt" not in t.source.kernel_cmdline.split()
    assert noacs["0000:01:00.0"].driver == "e1000e"  # the source is untouched


def test_apply_sriov_adds_vfs_as_functions(sriov):
    p = add_action(new_plan(sriov, "x"), ["sriov", "0000:01:00.0", "--vfs", "4", "--driver", "vfio-pci"])
    t = apply_plan(sriov, p)
    pf = t["0000:01:00.0"]
    vfs = [A(f"0000:01:00.{i}") for i in range(1, 5)]
    assert pf.caps.sriov.num_vfs == 4 and pf.virtfns == tuple(vfs)
    for n, a in enumerate(vfs):
        vf = t[a]
        assert vf.is_virtfn and vf.physfn == pf.address and vf.driver == "vfio-pci"
        assert vf.device_id == 0x0010 and vf.class_code == pf.class_code
        assert vf.bars[0].size == 0x4000 and vf.bars[0].start == pf.vf_bars[0].start + n * 0x4000
        # VFs are never multifunction and the root port has ACS: each VF gets its own group.
        assert vf.iommu_group not in (None, pf.iommu_group)
    assert len({t[a].iommu_group for a in vfs}) == 4
    # Fewer VFs: the extra ones disappear; 0 removes them all.
    t2 = apply_plan(sriov, add_action(new_plan(sriov, "x"), ["sriov", "0000:01:00.0", "--vfs", "0"]))
    assert not any(fn.is_virtfn for fn in t2) and t2["0000:01:00.0"].virtfns == ()


def test_apply_hot_add_and_hot_remove(unpacked):
    t = load_sysfs(unpacked("switch"))
    ports = [fn for fn in t if fn.pcie_type is not None and fn.pcie_type.value == "switch-downstream" and not t.children(fn.address)]
    assert ports, "the switch capture has an empty downstream port"
    port = ports[0]
    p = add_action(new_plan(t, "x"), ["hot-add", str(port.address), "--bar", "mem32:1M"])
    t2 = apply_plan(t, p)
    new = A(f"{port.address.domain:04x}:{port.bridge.secondary:02x}:00.0")
    assert t2[new].parent == port.address and t2[new].bars[0].size == 1 << 20
    usp = next(fn for fn in t if fn.pcie_type is not None and fn.pcie_type.value == "switch-upstream")
    t3 = apply_plan(t, add_action(new_plan(t, "x"), ["hot-remove", str(usp.address)]))
    below = [a for a in t.functions if a == usp.address or usp.address in t.path_to_root(a)]
    assert len(below) >= 4
    assert not any(a in t3.functions for a in below)
    assert len(t3) == len(t) - len(below)


def test_merged_cmdline():
    base = "quiet pci=noaer iommu=nopt"
    out = merged_cmdline(base, [KernelParam("pci", "hpmmioprefsize=2G"), KernelParam("iommu", "pt"), KernelParam("pci", "hpmmioprefsize=4G")])
    assert out.split() == ["quiet", "iommu=pt", "pci=noaer,hpmmioprefsize=4G"]


def test_new_functions_join_the_kernel_group(noacs, unpacked):
    # Below a root port without ACS the new device lands in the port's group (pci_device_group step 2)...
    p = new_plan(noacs, "x")
    p = add_action(p, ["hot-remove", "0000:01:00.0"])
    p = add_action(p, ["hot-add", "0000:00:02.0", "--bar", "mem32:16K"])
    t = apply_plan(noacs, p)
    assert t["0000:01:00.0"].bars[0].size == 16 << 10 and t["0000:01:00.0"].iommu_group == noacs["0000:00:02.0"].iommu_group
    # ...below a root port with ACS it gets a group of its own.
    pre = load_sysfs(unpacked("hotplug-acpi-default-small.pre"))
    port = next(fn for fn in pre if fn.pcie_type is not None and fn.pcie_type.value == "root-port" and not pre.children(fn.address))
    t = apply_plan(pre, add_action(new_plan(pre, "x"), ["hot-add", str(port.address), "--bar", "pref64:1M"]))
    new = t[f"0000:{port.bridge.secondary:02x}:00.0"]
    assert new.iommu_group not in (None, port.iommu_group)
    assert new.iommu_group not in pre.reported_groups
