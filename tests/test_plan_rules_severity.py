"""Plan rules as a person meets them in the app: one finding per cause, drivers as the plan leaves
them, and severities that follow what the kernel will do to the device."""

from __future__ import annotations

import json
from pathlib import Path

from explorer.model import Address
from explorer.plan import add_action, check, new_plan
from explorer.plan.rules import ERROR, WARNING
from explorer.sources import load_source
from explorer.sources.sysfs import load_sysfs

A = Address.parse
QEMU = Path(__file__).parent / "fixtures" / "qemu"


def plan_of(t, *actions):
    p = new_plan(t, "test")
    for words in actions:
        p = add_action(p, words)
    return p


def test_vmd_child_is_reported_once_per_device():
    t = load_source("builtin:vmd-nvme-laptop")
    f = check(plan_of(t, ["assign", "10000:e1:00.0", "--vm", "storage"]), t)
    vmd = [x for x in f if x.code == "VMD-CHILD"]
    assert len(vmd) == 1 and vmd[0].severity == ERROR
    # A bind and an assign of the same drive: still one finding for the one device.
    f = check(plan_of(t, ["bind", "10000:e1:00.0", "--driver", "vfio-pci"], ["assign", "10000:e1:00.0", "--vm", "storage"]), t)
    assert sum(1 for x in f if x.code == "VMD-CHILD") == 1


def test_assigning_the_same_device_twice_is_flagged():
    t = load_source("builtin:amd-laptop-dgpu-usb4")
    gpu = "0000:03:00.0"
    f = check(plan_of(t, ["assign", gpu, "--vm", "vm1"], ["assign", gpu, "--vm", "vm1", "--group"]), t)
    twice = [x for x in f if x.code == "ASSIGN-TWICE"]
    assert len(twice) == 1 and twice[0].severity == WARNING and A(gpu) in twice[0].devices
    assert "(1, 2)" in twice[0].message
    # Once is not flagged.
    f = check(plan_of(t, ["assign", gpu, "--vm", "vm1", "--group"]), t)
    assert "ASSIGN-TWICE" not in [x.code for x in f]
    # Two different VMs stay the error they were.
    f = check(plan_of(t, ["assign", gpu, "--vm", "vm1"], ["assign", gpu, "--vm", "vm2"]), t)
    assert "DOUBLE-ASSIGN" in [x.code for x in f if x.severity == ERROR]


def test_hot_remove_names_the_driver_the_plan_left():
    t = load_source("builtin:amd-laptop-dgpu-usb4")
    gpu, audio = "0000:03:00.0", "0000:03:00.1"
    host_driver = t[A(gpu)].driver
    assert isinstance(host_driver, str) and host_driver != "vfio-pci"
    # Before: the GPU keeps its host driver, so the warning names it.
    f = check(plan_of(t, ["hot-remove", gpu]), t)
    w = [x for x in f if x.code == "HOTREMOVE-IN-USE" and x.severity == WARNING]
    assert w and f"{gpu} ({host_driver})" in w[0].message
    # The plan gave the GPU to vfio-pci first: the removal no longer takes a host driver from it.
    f = check(plan_of(t, ["bind", gpu, "--driver", "vfio-pci"], ["hot-remove", gpu]), t)
    w = [x for x in f if x.code == "HOTREMOVE-IN-USE" and x.severity == WARNING]
    assert not any(host_driver in x.message for x in w), [x.message for x in w]
    # Given to a VM first: an error (the VM loses it), and no host driver named for it.
    f = check(plan_of(t, ["assign", gpu, "--vm", "vm1"], ["hot-remove", gpu]), t)
    assert "HOTREMOVE-IN-USE" in [x.code for x in f if x.severity == ERROR]
    assert not any(f"{gpu} ({host_driver})" in x.message for x in f)
    assert audio  # the audio function is a separate device, not below the GPU


def test_a_bar_the_kernel_cannot_place_is_an_error_unless_optional(unpacked):
    """hotplug-acpi-default-1g: the real kernel (acpiphp) left the 1 GiB BAR unassigned.

    Without --hotplug the plan is checked in both modes; that it would fit with pciehp does not
    make the acpiphp failure harmless: the device's driver cannot enable it."""
    outcome = json.loads((QEMU / "hotplug-acpi-default-1g.outcome.json").read_text())
    assert outcome["result"] != "assigned"
    t = load_sysfs(unpacked("hotplug-acpi-default-1g.pre"))
    bars = [f"{b['type']}:{b['size']}" for b in outcome["device"]["bars"]]
    words = ["hot-add", outcome["port"]]
    for b in bars:
        words += ["--bar", b]
    f = [x for x in check(plan_of(t, words), t) if x.code == "HOTADD-FIT"]
    assert f and all(x.severity == ERROR for x in f)
    # The user marks the BAR that does not fit as optional: a warning, and the plan can export.
    big = max(outcome["device"]["bars"], key=lambda b: b["size"])
    words = ["hot-add", outcome["port"]]
    for b in outcome["device"]["bars"]:
        words += ["--bar", f"{b['type']}:{b['size']}" + (":optional" if b is big else "")]
    p = plan_of(t, words)
    assert "--bar" in p.actions[0].words() and any(w.endswith(":optional") for w in p.actions[0].words())
    f = [x for x in check(p, t) if x.code == "HOTADD-FIT"]
    assert f and all(x.severity == WARNING for x in f), [str(x) for x in f]
    assert "optional" in f[0].message


def test_optional_bar_round_trips_through_the_plan_file(tmp_path):
    from explorer.plan import load_plan, save_plan

    t = load_source("builtin:hotplug-chassis-small-window")
    p = plan_of(t, ["hot-add", "0000:02:01.0", "--bar", "mem32:1M", "--bar", "pref64:1G:optional"])
    save_plan(p, tmp_path / "p.yaml")
    back = load_plan(tmp_path / "p.yaml")
    assert back.actions == p.actions
    assert [b.optional for b in back.actions[0].bars] == [False, True]
