"""Mediated devices end to end: sysfs, snapshot and YAML sources, tree/show/groups/JSON,
plan checks, and the exports checked by the tools that consume them.

No real machine here has an mdev parent, so the trees are a real Linux 6.12 capture
(tests/fixtures/qemu-6.12, hotplug-native-mem64m-qxl128m: a QXL display function at
01:00.0) with an mdev parent written into it exactly as the kernel lays one out
(tests/mdev_sysfs.py names the kernel functions that make each file and link). The type
names and descriptions are the i915 GVT-g driver's (drivers/gpu/drm/i915/gvt/vgpu.c
``intel_vgpu_configs``, kvmgt.c ``intel_vgpu_show_description``); the available_instances
are what ``intel_vgpu_get_available`` gives with a 256 MB aperture (GGTT 4 GB, 32 fences)
and one GVTg_V5_8 vGPU active: V5_8 min(64/64, 3072/384, 24/4) = 1, V5_4 64/128 = 0.
The mtty parent is samples/vfio-mdev/mtty.c's (class device ``mtty``, types ``1`` "Single
port serial" and ``2`` "Dual port serial", 24 ports).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.export.plan_exports import export, export_files
from explorer.kernel.siov import siov_status
from explorer.model import ABSENT, Address, MdevInfo, MdevParent, MdevType
from explorer.plan import add_action, check, has_errors, new_plan
from explorer.sources import SourceError, load_source
from explorer.sources.snapshot import capture, load_snapshot
from explorer.sources.yaml_topology import dump_yaml, load_yaml_text
from mdev_sysfs import MdevSpec, ParentSpec, TypeSpec, add_parent, pci_dir

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURE = FIXTURES / "qemu-6.12" / "hotplug-native-mem64m-qxl128m.tar.gz"
GPU = "0000:01:00.0"
ACTIVE = "5b7c0a3e-6f1d-4c2a-9e8b-3d4f5a6b7c8d"
BASH = shutil.which("bash")
MDEVCTL = shutil.which("mdevctl")
UNSHARE = shutil.which("unshare")
VIRT_XML_VALIDATE = shutil.which("virt-xml-validate")


def gvt_description(low: int, high: int, res: str, weight: int) -> str:
    """kvmgt.c intel_vgpu_show_description, for one intel_vgpu_configs row."""
    return f"low_gm_size: {low}MB\nhigh_gm_size: {high}MB\nfence: 4\nresolution: {res}\nweight: {weight}\n"


def build_tree(dest: Path, *, with_mtty: bool = True) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(CAPTURE) as tf:
        tf.extractall(dest, filter="tar")
    add_parent(dest, ParentSpec(
        pci_dir(dest, GPU), "i915",
        types=[
            TypeSpec("GVTg_V5_4", description=gvt_description(128, 512, "1920x1200", 4), available=0),
            TypeSpec("GVTg_V5_8", description=gvt_description(64, 384, "1024x768", 2), available=1),
        ],
        mdevs=[MdevSpec(ACTIVE, "GVTg_V5_8", "intel_vgpu_mdev")],
    ))
    if with_mtty:
        add_parent(dest, ParentSpec(
            "sys/devices/virtual/mtty/mtty", "mtty", bound=False, subsystem="sys/class/mtty",
            types=[TypeSpec("1", name="Single port serial", available=24), TypeSpec("2", name="Dual port serial", available=12)],
        ))
    return dest


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp("mdev") / "root")


@pytest.fixture(scope="module")
def topo(tree):
    return load_source(str(tree))


def plan_of(t, *actions, spec="test"):
    p = new_plan(t, spec)
    for words in actions:
        p = add_action(p, words)
    return p


# ---- sources ------------------------------------------------------------------------------------


def test_sysfs_reads_types_instances_and_groups(topo):
    info = topo.mdev
    gpu = info.parent(GPU)
    assert gpu.address == Address.parse(GPU) and gpu.bus == "pci" and gpu.driver == "i915"
    v54, v58 = gpu.types
    assert (v54.id, v54.name, v54.device_api, v54.available_instances) == ("i915-GVTg_V5_4", "GVTg_V5_4", "vfio-pci", 0)
    assert v58.description.splitlines() == ["low_gm_size: 64MB", "high_gm_size: 384MB", "fence: 4", "resolution: 1024x768", "weight: 2"]
    (inst,) = info.instances_of(GPU)
    # iommu_group_alloc gives the lowest free id: the capture has groups 0-3.
    assert (inst.uuid, inst.type, inst.parent, inst.iommu_group, inst.driver) == (ACTIVE, "i915-GVTg_V5_8", GPU, "4", "intel_vgpu_mdev")
    # The mdev's group holds a UUID, not a PCI function: not a function, and not dropped.
    assert "4" not in topo.reported_groups and len(topo) == 6
    assert info.group_members() == {"4": (ACTIVE,)}


def test_a_group_of_something_else_is_said_not_dropped(tmp_path):
    root = build_tree(tmp_path / "root", with_mtty=False)
    # A group whose member is neither a PCI function nor an mdev the tree shows (a platform device).
    (root / "sys/kernel/iommu_groups/9/devices").mkdir(parents=True)
    (root / "sys/devices/platform/vfio-platform.0").mkdir(parents=True)
    (root / "sys/kernel/iommu_groups/9/devices/vfio-platform.0").symlink_to("../../../../devices/platform/vfio-platform.0")
    t = load_source(str(root))
    assert t.source.warnings == ("IOMMU group 9 holds vfio-platform.0: neither a PCI function nor a mediated device this source shows",)
    assert t.mdev.group_members() == {"4": (ACTIVE,)}


def test_non_pci_parent_is_listed(topo, capsys):
    mtty = topo.mdev.parent("mtty")
    assert mtty.address is None and mtty.bus == "mtty" and mtty.driver is ABSENT
    assert [(t.id, t.name, t.available_instances, t.description) for t in mtty.types] == [
        ("mtty-1", "Single port serial", 24, ABSENT), ("mtty-2", "Dual port serial", 12, ABSENT)]
    assert main(["tree", str(Path(topo.source.location))]) == 0
    out = capsys.readouterr().out
    assert "mediated-device parents outside the PCI tree:" in out and "type mtty-2  Dual port serial  (vfio-pci, 12 available)" in out
    assert f"mdev {ACTIVE}  i915-GVTg_V5_8  (group 4, driver intel_vgpu_mdev)" in out


def test_tree_json_lists_types_and_the_instance(tree, capsys):
    assert main(["tree", str(tree), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    dev = {d["bdf"]: d for d in doc["devices"]}
    assert [(t["id"], t["available_instances"]) for t in dev[GPU]["mdev_types"]] == [("i915-GVTg_V5_4", 0), ("i915-GVTg_V5_8", 1)]
    assert set(dev[GPU]["mdev_types"][0]) == {"id", "name", "description", "device_api", "available_instances"}
    assert dev["0000:00:1f.2"]["mdev_types"] == [] and dev["0000:00:1f.2"]["mdevs"] == []
    want = {"uuid": ACTIVE, "type": "i915-GVTg_V5_8", "parent": GPU, "iommu_group": "4", "driver": "intel_vgpu_mdev"}
    assert dev[GPU]["mdevs"] == [want] and doc["mdevs"] == [want]
    assert [p["name"] for p in doc["mdev_parents"]] == [GPU, "mtty"]


def test_show_and_groups(tree, capsys):
    assert main(["show", str(tree), GPU]) == 0
    out = capsys.readouterr().out
    assert "mdev type          i915-GVTg_V5_4  GVTg_V5_4  (vfio-pci, 0 available)" in out
    assert f"active mdev        {ACTIVE}" in out
    assert main(["groups", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "group 4: 1 mediated device (no PCI function)" in out and "vfio_noiommu_group_alloc" in out
    assert main(["groups", str(tree), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["groups"]
    assert {"id": "4", "devices": [ACTIVE]} == {k: v for k, v in rows[-1].items() if k in ("id", "devices")}
    # The PCI prediction still equals the kernel's PCI groups.
    assert main(["groups", str(tree), "--compare"]) == 0
    capsys.readouterr()


def test_sources_that_cannot_show_mdevs_say_so(capsys):
    lspci = load_source(str(FIXTURES / "qemu-6.12" / "hotplug-native-mem64m-qxl128m.lspci.txt"))
    assert lspci.mdev is None
    assert main(["show", str(FIXTURES / "qemu-6.12" / "hotplug-native-mem64m-qxl128m.lspci.txt"), GPU]) == 0
    assert "mdev types         unknown (this source does not show mediated devices)" in capsys.readouterr().out
    # A capture made before mdevs were captured cannot tell "none" from "not looked at".
    assert load_snapshot(CAPTURE).mdev is None
    t = plan_of(lspci, ["mdev", GPU, "--type", "i915-GVTg_V5_4"])
    assert "MDEV-TYPE-UNKNOWN" in {f.code for f in check(t, lspci)}


def test_snapshot_keeps_mdevs(tree, topo, tmp_path):
    out = tmp_path / "snap.tar.gz"
    capture(tree, out)
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
    gpu_dir = pci_dir(tree, GPU)
    assert f"./{gpu_dir}/mdev_supported_types/i915-GVTg_V5_8/available_instances" in names
    assert f"./{gpu_dir}/mdev_supported_types/i915-GVTg_V5_8/create" not in names  # write-only
    assert f"./sys/bus/mdev/devices/{ACTIVE}" in names and "./sys/class/mdev_bus/mtty" in names
    assert load_snapshot(out).mdev == topo.mdev
    # A copied tree that does not show the mdev core stays unknown through a snapshot ...
    plain = tmp_path / "plain"
    with tarfile.open(CAPTURE) as tf:
        tf.extractall(plain, filter="tar")
    capture(plain, tmp_path / "plain.tar.gz")
    assert load_snapshot(tmp_path / "plain.tar.gz").mdev is None
    # ... one with the mdev core loaded and no parent says so: known none, not unknown.
    (plain / "sys/class/mdev_bus").mkdir(parents=True)
    capture(plain, tmp_path / "none.tar.gz")
    none = load_snapshot(tmp_path / "none.tar.gz").mdev
    assert none is not None and none.parents == () and none.instances == ()


def test_yaml_round_trip_and_errors(topo, tree, tmp_path):
    text = dump_yaml(topo)
    again = load_yaml_text(text, "x.yaml")
    assert again.mdev == topo.mdev and dump_yaml(again) == text
    assert main(["convert", str(tree), "-o", str(tmp_path / "c.yaml")]) == 0
    assert load_source(str(tmp_path / "c.yaml")).mdev == topo.mdev
    bad = text.replace(f'uuid: "{ACTIVE}"', 'uuid: "NOT-A-UUID"')
    with pytest.raises(SourceError) as e:
        load_yaml_text(bad, "x.yaml")
    assert "[mdev.mdevs[0].uuid]" in str(e.value) and "x.yaml:" in str(e.value)
    bad = text.replace('type: "i915-GVTg_V5_8"', 'type: "i915-GVTg_V5_9"')
    with pytest.raises(SourceError, match="has no type"):
        load_yaml_text(bad, "x.yaml")


# ---- plans ----------------------------------------------------------------------------------------


def codes(findings, severity="error"):
    return {f.code for f in findings if f.severity == severity}


def test_check_against_available_instances(tree, tmp_path, capsys):
    plan = tmp_path / "p.yaml"
    assert main(["plan", "new", str(tree), "-o", str(plan)]) == 0
    assert main(["plan", "add", str(plan), "mdev", GPU, "--type", "i915-GVTg_V5_2"]) == 2  # refused: no such type
    assert main(["plan", "add", str(plan), "mdev", GPU, "--type", "i915-GVTg_V5_4"]) == 0
    capsys.readouterr()
    assert main(["check", str(plan)]) == 1
    assert "MDEV-INSTANCES" in capsys.readouterr().out
    plan2 = tmp_path / "p2.yaml"
    assert main(["plan", "new", str(tree), "-o", str(plan2)]) == 0
    assert main(["plan", "add", str(plan2), "mdev", GPU, "--type", "i915-GVTg_V5_8", "--vm", "win"]) == 0
    assert main(["check", str(plan2)]) == 0
    assert main(["export", str(plan2), "--to", "mdevctl", "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "mdevctl-define.sh").is_file()
    capsys.readouterr()


def test_plan_rules(topo):
    assert codes(check(plan_of(topo, ["mdev", GPU, "--type", "i915-GVTg_V5_8", "--count", "2"]), topo)) == {"MDEV-INSTANCES"}
    # Removing the active V5_8 frees its instance.
    p = plan_of(topo, ["mdev-remove", ACTIVE], ["mdev", GPU, "--type", "i915-GVTg_V5_8", "--count", "2"])
    assert not has_errors(check(p, topo))
    # ... but only a removal that comes first in the plan (the kernel sees the writes in order).
    late = plan_of(topo, ["mdev", GPU, "--type", "i915-GVTg_V5_8", "--count", "2"], ["mdev-remove", ACTIVE])
    assert codes(check(late, topo)) == {"MDEV-INSTANCES"}
    assert not has_errors(check(plan_of(topo, ["mdev", GPU, "--type", "i915-GVTg_V5_8"]), topo))
    # Two types on one parent: each counted alone, with a warning that they share resources.
    mixed = plan_of(topo, ["mdev-remove", ACTIVE], ["mdev", GPU, "--type", "i915-GVTg_V5_8"], ["mdev", GPU, "--type", "i915-GVTg_V5_4"])
    f = check(mixed, topo)
    assert codes(f) == {"MDEV-INSTANCES"} and "MDEV-INSTANCES" in codes(f, "warning")  # V5_4 is full; the types share
    assert codes(check(plan_of(topo, ["mdev", "0000:00:1f.2", "--type", "x"]), topo)) == {"MDEV-TYPE-MISSING"}
    assert codes(check(plan_of(topo, ["assign", GPU, "--vm", "w"]), topo)) == {"MDEV-PARENT-ASSIGNED"}
    assert codes(check(plan_of(topo, ["bind", GPU, "--driver", "vfio-pci"]), topo)) == {"MDEV-PARENT-ASSIGNED"}
    # With its mdevs removed first, the parent may go (GVT-d: the whole iGPU to one VM).
    assert not has_errors(check(plan_of(topo, ["mdev-remove", ACTIVE], ["assign", GPU, "--vm", "w"]), topo))
    assert codes(check(plan_of(topo, ["unbind", GPU], ["mdev", GPU, "--type", "i915-GVTg_V5_8"]), topo)) == {"MDEV-PARENT"}
    assert not has_errors(check(plan_of(topo, ["assign", ACTIVE, "--vm", "w"]), topo))
    gone = plan_of(topo, ["mdev-remove", ACTIVE], ["assign", ACTIVE, "--vm", "w"])
    assert codes(check(gone, topo)) == {"MDEV-MISSING"}
    u = plan_of(topo, ["mdev", GPU, "--type", "i915-GVTg_V5_8", "--uuid", ACTIVE])
    assert "MDEV-UUID" in codes(check(u, topo))


def test_plan_file_keeps_the_mdev_actions(topo, tmp_path):
    from explorer.plan import load_plan, save_plan
    from explorer.plan.planfile import PlanFileError

    p = plan_of(topo, ["mdev-remove", ACTIVE], ["assign", ACTIVE.upper(), "--vm", "w"], ["mdev", GPU, "--type", "i915-GVTg_V5_8"])
    save_plan(p, tmp_path / "p.yaml")
    again = load_plan(tmp_path / "p.yaml")
    assert [a.words() for a in again.actions] == [a.words() for a in p.actions]
    assert again.actions[1].to_dict() == {"action": "assign", "mdev": ACTIVE, "vm": "w"}
    text = (tmp_path / "p.yaml").read_text().replace(f'uuid: "{ACTIVE}"', 'uuid: "nope"')
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(PlanFileError, match=r"actions\[0\]\.uuid"):
        load_plan(tmp_path / "bad.yaml")


# ---- exports --------------------------------------------------------------------------------------


def _run(script: str, tree: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "script.sh"
    path.write_text(script)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SYSFS_ROOT": str(tree / "sys")}
    return subprocess.run([BASH, str(path), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_shell_and_undo_against_the_tree(tmp_path):
    root = build_tree(tmp_path / "root", with_mtty=False)
    t = load_source(str(root))
    p = plan_of(t, ["mdev-remove", ACTIVE], ["mdev", GPU, "--type", "i915-GVTg_V5_8", "--count", "2", "--vm", "win"])
    new = p.actions[1].uuids
    sysfs = root / "sys"
    types = sysfs / "bus/pci/devices" / GPU / "mdev_supported_types"
    res = _run(export(p, t, "shell"), root, tmp_path, "--dry-run")
    assert res.returncode == 1 and "available instances, the plan needs 2" in res.stderr  # the sysfs still says 1
    (types / "i915-GVTg_V5_8/available_instances").write_text("2\n")  # as after the removal
    res = _run(export(p, t, "shell"), root, tmp_path, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert [x for x in res.stdout.splitlines() if x.startswith("write ")] == [
        f"write {sysfs}/bus/mdev/devices/{ACTIVE}/remove <- 1"] + [
        f"write {sysfs}/bus/pci/devices/{GPU}/mdev_supported_types/i915-GVTg_V5_8/create <- {u}" for u in new]
    # What the kernel does on the write to remove: the mdev leaves the mdev bus.
    os.unlink(sysfs / "bus/mdev/devices" / ACTIVE)
    undo = _run(export(p, t, "undo"), root, tmp_path, "--dry-run")
    assert undo.returncode == 0, undo.stderr
    assert [x for x in undo.stdout.splitlines() if x.startswith("write ")] == [
        f"write {sysfs}/bus/pci/devices/{GPU}/mdev_supported_types/i915-GVTg_V5_8/create <- {ACTIVE}"]
    assert all(f"mdev {u}: already gone" in undo.stdout for u in new)
    # A preflight that finds the mdev gone (or of another type) stops before any write.
    before = {p: p.read_bytes() for p in sysfs.rglob("*") if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK)}
    res = _run(export(p, t, "shell"), root, tmp_path)
    assert res.returncode == 1 and f"mdev {ACTIVE} is not on this machine" in res.stderr
    assert before == {p: p.read_bytes() for p in sysfs.rglob("*") if p.is_file() and not p.is_symlink() and os.access(p, os.R_OK)}


def test_qemu_and_libvirt(topo, tmp_path):
    p = plan_of(topo, ["assign", ACTIVE, "--vm", "desk"])
    q = export(p, topo, "qemu")
    assert f"-device vfio-pci,sysfsdev=/sys/bus/mdev/devices/{ACTIVE}" in q.splitlines()
    xml = export(p, topo, "libvirt")
    assert f"<address uuid=\"{ACTIVE}\"/>" in xml and "type='mdev' model=\"vfio-pci\"" in xml
    if VIRT_XML_VALIDATE:
        path = tmp_path / "desk.xml"
        path.write_text(xml)
        res = subprocess.run([VIRT_XML_VALIDATE, str(path), "domain"], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
    assert "exists already" in export(p, topo, "proxmox")


@pytest.mark.skipif(MDEVCTL is None or UNSHARE is None, reason="mdevctl or unshare missing (apt-get install -y mdevctl)")
def test_mdevctl_defines_the_plans_mdevs(topo, tmp_path):
    """The exported define script run for real by mdevctl, in a private mount namespace with
    a tmpfs over /etc/mdevctl.d (mdevctl 1.2 has no other way to point it elsewhere)."""
    if not os.path.isdir("/etc/mdevctl.d"):
        pytest.skip("/etc/mdevctl.d missing")
    p = plan_of(topo, ["mdev", GPU, "--type", "i915-GVTg_V5_8"])
    out = export_files(p, topo, "mdevctl")
    assert set(out) == {f"{GPU}-{p.actions[0].uuids[0]}.json", "mdevctl-define.sh", "mdevctl-start.sh"}
    assert f"mdevctl start --uuid {p.actions[0].uuids[0]}" in out["mdevctl-start.sh"]
    work = tmp_path / "work"
    work.mkdir()
    for name, text in out.items():
        (work / name).write_text(text)
    inner = ("mount -t tmpfs none /etc/mdevctl.d || exit 99; "
             "mkdir -p /etc/mdevctl.d/scripts.d/callouts /etc/mdevctl.d/scripts.d/notifiers; "
             "sh ./mdevctl-define.sh >&2 || exit 98; mdevctl list --defined --dumpjson")
    res = subprocess.run([UNSHARE, "--mount", "sh", "-c", inner], cwd=work, capture_output=True, text=True, timeout=60)
    if res.returncode == 99 or (res.returncode != 0 and "unshare" in res.stderr):
        pytest.skip(f"no private mount namespace here: {res.stderr.strip()}")
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    assert listed == [{GPU: [{p.actions[0].uuids[0]: {"mdev_type": "i915-GVTg_V5_8", "start": "auto", "attrs": []}}]}]


# ---- Scalable IOV ----------------------------------------------------------------------------------


def test_siov_needs_pasid_scalable_mode_and_mdev_types(topo):
    verdict, reasons = siov_status(topo, Address.parse(GPU))
    assert verdict is False and "PASID: no PASID capability" in reasons
    dsa = load_source("builtin:dsa-siov")
    addr = next(a for a, fn in dsa.functions.items() if fn.driver == "idxd")
    assert siov_status(dsa, addr)[0] is None  # the YAML shows no mdevs: unknown, never guessed
    parent = MdevParent(str(addr), "pci", "idxd", None, (MdevType("idxd-wq", "wq", ABSENT, "vfio-pci", 8),))
    known = replace(dsa, mdev=MdevInfo((parent,), (), True))
    verdict, reasons = siov_status(known, addr)
    assert verdict is True, reasons
    assert siov_status(replace(dsa, mdev=MdevInfo((parent,), (), False)), addr)[0] is False


def test_mdev_files_are_read_inside_the_root_only(tmp_path):
    """A sysfs root is a jail for the mdev reader too: a type's file or directory whose link
    leads out of the root is read as absent, never followed (the secret never shows)."""
    root = build_tree(tmp_path / "root", with_mtty=False)
    outside = tmp_path / "outside"
    (outside / "t").mkdir(parents=True)
    (outside / "secret").write_text("SECRET-OUTSIDE-THE-ROOT\n")
    (outside / "t" / "name").write_text("SECRET-TYPE\n")
    types = root / pci_dir(root, GPU) / "mdev_supported_types"
    name = types / "i915-GVTg_V5_8" / "name"
    name.unlink()
    name.symlink_to(outside / "secret")  # an absolute link out of the root
    (types / "i915-evil").symlink_to(outside / "t")
    t = load_source(str(root))
    gpu = t.mdev.parent(GPU)
    assert {mt.id for mt in gpu.types} == {"i915-GVTg_V5_4", "i915-GVTg_V5_8"}
    v58 = next(mt for mt in gpu.types if mt.id == "i915-GVTg_V5_8")
    assert v58.name is None  # not the file outside the root
    assert "SECRET" not in repr(t.mdev)
