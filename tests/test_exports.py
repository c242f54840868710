"""Plan exports, each checked with the tool that consumes it: bash + shellcheck against a writable
copy of a real capture's sysfs, virt-xml-validate for libvirt, mdevctl for its JSON."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from explorer.export.plan_exports import TARGETS, ExportError, PlanHasErrors, export, export_files
from explorer.model import ABSENT, Address, Function, HostBridge, PcieType, SourceInfo, Topology
from explorer.plan import add_action, new_plan
from explorer.sources.sysfs import load_sysfs

A = Address.parse
SHELLCHECK = shutil.which("shellcheck")
VIRT_XML_VALIDATE = shutil.which("virt-xml-validate")
MDEVCTL = shutil.which("mdevctl")
BASH = shutil.which("bash")


def plan_of(t, *actions, spec="test"):
    p = new_plan(t, spec)
    for words in actions:
        p = add_action(p, words)
    return p


@pytest.fixture(scope="module")
def noacs(unpacked):
    return load_sysfs(unpacked("rp-noacs"))


@pytest.fixture(scope="module")
def group_plan(noacs):
    """The whole shared group (three endpoints behind non-ACS root ports) given to one VM."""
    label, members = next((k, v) for k, v in noacs.reported_groups.items() if sum(noacs[a].header_type == 0 for a in v) > 1)
    endpoints = [a for a in members if noacs[a].header_type == 0]
    assert [str(a) for a in endpoints] == ["0000:01:00.0", "0000:02:00.0", "0000:04:00.0"]
    return plan_of(noacs, ["assign", str(endpoints[0]), "--vm", "win", "--group"])


# ---- a writable copy of a capture's sysfs ---------------------------------------------------------


def fake_sysfs(unpacked, name, tmp_path, drivers=("vfio-pci",)) -> Path:
    root = tmp_path / "fake"
    shutil.copytree(unpacked(name) / "sys", root / "sys", symlinks=True)
    for d in drivers:
        (root / "sys" / "bus" / "pci" / "drivers" / d).mkdir(exist_ok=True)  # "module loaded"
    return root / "sys"


def files(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if not p.is_symlink():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def changes(before: dict[str, bytes], after: dict[str, bytes]) -> dict[str, str]:
    return {k: v.decode() for k, v in after.items() if before.get(k) != v}


def run_script(script: str, sysfs: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "script.sh"
    path.write_text(script)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SYSFS_ROOT": str(sysfs)}
    return subprocess.run([BASH, str(path), *args], env=env, capture_output=True, text=True, timeout=60)


def dev_dir(sysfs: Path, bdf: str) -> str:
    """The real (not linked) directory of a device, relative to the sysfs root."""
    return str((sysfs / "bus" / "pci" / "devices" / bdf).resolve().relative_to(sysfs.resolve()))


def rebind(sysfs: Path, bdf: str, driver: str | None) -> None:
    """What the kernel would do after the writes: point the device's driver link elsewhere."""
    link = sysfs / "bus" / "pci" / "devices" / bdf / "driver"
    target = Path(os.readlink(link)) if link.is_symlink() else None
    if link.is_symlink():
        link.unlink()
    if driver:
        rel = target.parent / driver if target else Path("../../../../bus/pci/drivers") / driver
        link.symlink_to(rel)


# ---- shell --------------------------------------------------------------------------------------


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_shell_writes_exactly_the_expected_files(unpacked, tmp_path, noacs, group_plan):
    script = export(group_plan, noacs, "shell")
    sysfs = fake_sysfs(unpacked, "rp-noacs", tmp_path)
    before = files(sysfs)

    dry = run_script(script, sysfs, tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    writes = [line for line in dry.stdout.splitlines() if line.startswith("write ")]
    pci = f"{sysfs}/bus/pci"
    expected = []
    for bdf, drv in (("0000:01:00.0", "e1000e"), ("0000:02:00.0", "nvme"), ("0000:04:00.0", "e1000e")):
        expected += [f"write {pci}/devices/{bdf}/driver_override <- vfio-pci",
                     f"write {pci}/devices/{bdf}/driver/unbind <- {bdf}",
                     f"write {pci}/drivers_probe <- {bdf}"]
    assert writes == expected
    assert files(sysfs) == before  # a dry run writes nothing

    res = run_script(script, sysfs, tmp_path)
    assert res.returncode == 0, res.stderr
    assert changes(before, files(sysfs)) == {
        f"{dev_dir(sysfs, '0000:01:00.0')}/driver_override": "vfio-pci\n",
        f"{dev_dir(sysfs, '0000:02:00.0')}/driver_override": "vfio-pci\n",
        f"{dev_dir(sysfs, '0000:04:00.0')}/driver_override": "vfio-pci\n",
        "bus/pci/drivers/e1000e/unbind": "0000:04:00.0\n",  # 01:00.0 first, then 04:00.0
        "bus/pci/drivers/nvme/unbind": "0000:02:00.0\n",
        "bus/pci/drivers_probe": "0000:04:00.0\n",
    }

    # Idempotent: once the kernel has bound them, running again writes nothing...
    for bdf in ("0000:01:00.0", "0000:02:00.0", "0000:04:00.0"):
        rebind(sysfs, bdf, "vfio-pci")
    # ...but the preflight now sees vfio-pci where the plan recorded e1000e and stops first.
    again = run_script(script, sysfs, tmp_path, "--dry-run")
    assert again.returncode != 0 and "preflight" in again.stderr


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_preflight_stops_before_touching_anything(unpacked, tmp_path, noacs, group_plan):
    script = export(group_plan, noacs, "shell")
    sysfs = fake_sysfs(unpacked, "rp-noacs", tmp_path)
    # The last device of the group has another driver on "this machine".
    rebind(sysfs, "0000:04:00.0", "ahci")
    before = files(sysfs)
    res = run_script(script, sysfs, tmp_path)
    assert res.returncode == 1
    assert "preflight: 0000:04:00.0 has driver 'ahci', the plan was made with 'e1000e'" in res.stderr
    assert files(sysfs) == before
    # A different device at that address (vendor changed) stops it too.
    rebind(sysfs, "0000:04:00.0", "e1000e")
    (sysfs / "bus" / "pci" / "devices" / "0000:02:00.0" / "device").write_text("0x0011\n")
    before = files(sysfs)
    res = run_script(script, sysfs, tmp_path)
    assert res.returncode == 1 and "0000:02:00.0 device is '0x0011'" in res.stderr
    assert files(sysfs) == before


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_undo_restores_the_recorded_drivers(unpacked, tmp_path, noacs, group_plan):
    sysfs = fake_sysfs(unpacked, "rp-noacs", tmp_path)
    for bdf in ("0000:01:00.0", "0000:02:00.0", "0000:04:00.0"):
        rebind(sysfs, bdf, "vfio-pci")
    before = files(sysfs)
    res = run_script(export(group_plan, noacs, "undo"), sysfs, tmp_path)
    assert res.returncode == 0, res.stderr
    # Actions are undone last-first; inside one action devices go in address order.
    assert changes(before, files(sysfs)) == {
        f"{dev_dir(sysfs, '0000:01:00.0')}/driver_override": "\n",
        f"{dev_dir(sysfs, '0000:02:00.0')}/driver_override": "\n",
        f"{dev_dir(sysfs, '0000:04:00.0')}/driver_override": "\n",
        "bus/pci/drivers/vfio-pci/unbind": "0000:04:00.0\n",
        "bus/pci/drivers/e1000e/bind": "0000:04:00.0\n",
        "bus/pci/drivers/nvme/bind": "0000:02:00.0\n",
    }


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_shell_sriov_writes_zero_first_and_binds_the_vfs(unpacked, tmp_path):
    t = load_sysfs(unpacked("sriov-nvme"))
    p = plan_of(t, ["sriov", "0000:01:00.0", "--vfs", "2", "--driver", "vfio-pci"])
    script = export(p, t, "shell")
    sysfs = fake_sysfs(unpacked, "sriov-nvme", tmp_path)
    before = files(sysfs)
    dry = run_script(script, sysfs, tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    pci = f"{sysfs}/bus/pci"
    assert [x for x in dry.stdout.splitlines() if x.startswith("write ")] == [
        f"write {pci}/devices/0000:01:00.0/sriov_numvfs <- 0",
        f"write {pci}/devices/0000:01:00.0/sriov_numvfs <- 2",
        f"write {pci}/devices/0000:01:00.1/driver_override <- vfio-pci",
        f"write {pci}/drivers_probe <- 0000:01:00.1",
        f"write {pci}/devices/0000:01:00.2/driver_override <- vfio-pci",
        f"write {pci}/drivers_probe <- 0000:01:00.2",
    ]
    res = run_script(script, sysfs, tmp_path)
    assert res.returncode == 0, res.stderr
    pf = dev_dir(sysfs, "0000:01:00.0")
    assert changes(before, files(sysfs)) == {
        f"{pf}/sriov_numvfs": "2\n",
        f"{dev_dir(sysfs, '0000:01:00.1')}/driver_override": "vfio-pci\n",
        f"{dev_dir(sysfs, '0000:01:00.2')}/driver_override": "vfio-pci\n",
        "bus/pci/drivers_probe": "0000:01:00.2\n",
    }
    # Undo: back to the 3 VFs recorded at plan time (0 first, since 2 are enabled now).
    undo = run_script(export(p, t, "undo"), sysfs, tmp_path, "--dry-run")
    assert [x for x in undo.stdout.splitlines() if x.startswith("write ")] == [
        f"write {pci}/devices/0000:01:00.0/sriov_numvfs <- 0",
        f"write {pci}/devices/0000:01:00.0/sriov_numvfs <- 3",
    ]


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_shell_mdev_checks_available_instances(unpacked, tmp_path, noacs):
    p = plan_of(noacs, ["mdev", "0000:03:00.0", "--type", "nvidia-155", "--count", "2", "--vm", "win"])
    script = export(p, noacs, "shell")
    sysfs = fake_sysfs(unpacked, "rp-noacs", tmp_path)
    tdir = sysfs / dev_dir(sysfs, "0000:03:00.0") / "mdev_supported_types" / "nvidia-155"
    tdir.mkdir(parents=True)
    (tdir / "available_instances").write_text("1\n")
    before = files(sysfs)
    res = run_script(script, sysfs, tmp_path)
    assert res.returncode == 1 and "has 1 available instances, the plan needs 2" in res.stderr
    assert files(sysfs) == before
    (tdir / "available_instances").write_text("4\n")
    before = files(sysfs)
    res = run_script(script, sysfs, tmp_path, "--dry-run")
    uuids = p.actions[0].uuids
    assert [x for x in res.stdout.splitlines() if x.startswith("write ")] == [
        f"write {sysfs}/bus/pci/devices/0000:03:00.0/mdev_supported_types/nvidia-155/create <- {u}" for u in uuids]
    res = run_script(script, sysfs, tmp_path)
    assert res.returncode == 0, res.stderr
    assert changes(before, files(sysfs)) == {f"{dev_dir(sysfs, '0000:03:00.0')}/mdev_supported_types/nvidia-155/create": uuids[1] + "\n"}


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck missing (apt-get install -y shellcheck)")
def test_scripts_pass_shellcheck(tmp_path, noacs, group_plan, unpacked):
    t = load_sysfs(unpacked("sriov-nvme"))
    plans = [
        (group_plan, noacs),
        (plan_of(noacs, ["unbind", "0000:03:00.0"], ["hot-remove", "0000:00:02.2"], ["kernel-param", "iommu=pt"],
                 spec='hostile "$(touch /tmp/pwned)" `x`\nname'), noacs),
        (plan_of(t, ["sriov", "0000:01:00.0", "--vfs", "4", "--driver", "vfio-pci"], ["assign", "0000:01:00.3", "--vm", "v"]), t),
        (plan_of(noacs, ["mdev", "0000:03:00.0", "--type", "nvidia-155", "--count", "2"]), noacs),
    ]
    for n, (p, topo) in enumerate(plans):
        for target in ("shell", "undo", "driverctl"):
            path = tmp_path / f"{n}-{target}.sh"
            path.write_text(export(p, topo, target))
            res = subprocess.run([SHELLCHECK, "--severity=style", str(path)], capture_output=True, text=True)
            assert res.returncode == 0, f"{target}:\n{res.stdout}"
    mfiles = export_files(plans[3][0], noacs, "mdevctl")
    path = tmp_path / "mdevctl-define.sh"
    path.write_text(mfiles["mdevctl-define.sh"])
    assert subprocess.run([SHELLCHECK, str(path)], capture_output=True).returncode == 0


@pytest.mark.skipif(BASH is None, reason="bash missing")
def test_source_strings_cannot_escape_into_the_script(unpacked, tmp_path, noacs):
    marker = tmp_path / "pwned"
    p = plan_of(noacs, ["unbind", "0000:03:00.0"], spec=f'x"; touch {marker}; echo "\n$(touch {marker})')
    sysfs = fake_sysfs(unpacked, "rp-noacs", tmp_path)
    res = run_script(export(p, noacs, "shell"), sysfs, tmp_path, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert not marker.exists()


# ---- libvirt ----------------------------------------------------------------------------------------


@pytest.mark.skipif(VIRT_XML_VALIDATE is None, reason="virt-xml-validate missing (apt-get install -y libvirt-clients)")
def test_libvirt_xml_validates(tmp_path, noacs, group_plan):
    p = add_action(group_plan, ["mdev", "0000:03:00.0", "--type", "nvidia-155", "--vm", "win"])
    p = add_action(p, ["kernel-param", "iommu=pt"])
    docs = export_files(p, noacs, "libvirt")
    assert list(docs) == ["win.xml"]
    xml = docs["win.xml"]
    assert xml.count("<hostdev mode='subsystem' type='pci' managed='yes'>") == 3
    assert "bus=\"0x02\" slot=\"0x00\" function=\"0x0\"" in xml
    assert f"uuid=\"{p.actions[1].uuids[0]}\"" in xml and "type='mdev'" in xml
    path = tmp_path / "win.xml"
    path.write_text(xml)
    res = subprocess.run([VIRT_XML_VALIDATE, str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert export(p, noacs, "libvirt") == xml


def test_libvirt_one_document_per_vm(unpacked):
    t = load_sysfs(unpacked("rp-endpoints"))
    nvme = next(fn.bdf for fn in t if fn.driver == "nvme")
    virtio = next(fn.bdf for fn in t if fn.driver == "virtio-pci")
    p = plan_of(t, ["assign", nvme, "--vm", "a"], ["assign", virtio, "--vm", "b"])
    docs = export_files(p, t, "libvirt")
    assert sorted(docs) == ["a.xml", "b.xml"]
    with pytest.raises(ExportError, match="pick one"):
        export(p, t, "libvirt")
    b = export(p, t, "libvirt", item="b")
    assert b.count("<hostdev") == 1 and f"bus=\"0x{A(virtio).bus:02x}\"" in b and "<name>b</name>" in b
    with pytest.raises(ExportError, match="no VM 'c'"):
        export(p, t, "libvirt", item="c")


# ---- mdevctl ------------------------------------------------------------------------------------------


def test_mdevctl_json(noacs):
    p = plan_of(noacs, ["mdev", "0000:03:00.0", "--type", "nvidia-155", "--count", "2"])
    out = export_files(p, noacs, "mdevctl")
    u1, u2 = p.actions[0].uuids
    assert json.loads(out[f"0000:03:00.0-{u1}.json"]) == {"mdev_type": "nvidia-155", "start": "auto", "attrs": []}
    assert f"mdevctl define --uuid {u2} --parent 0000:03:00.0 --jsonfile 0000:03:00.0-{u2}.json" in out["mdevctl-define.sh"]
    with pytest.raises(ExportError, match="pick one"):
        export(p, noacs, "mdevctl")
    assert json.loads(export(p, noacs, "mdevctl", item=u2))["mdev_type"] == "nvidia-155"


UNSHARE = shutil.which("unshare")


@pytest.mark.skipif(MDEVCTL is None or UNSHARE is None, reason="mdevctl or unshare missing (apt-get install -y mdevctl)")
def test_mdevctl_accepts_the_json(tmp_path, noacs):
    """Runs the exported `mdevctl define` commands for real, in a private mount namespace with a
    tmpfs over /etc/mdevctl.d (mdevctl 1.2 has no other way to point it elsewhere)."""
    if not os.path.isdir("/etc/mdevctl.d"):
        pytest.skip("/etc/mdevctl.d missing")
    p = plan_of(noacs, ["mdev", "0000:03:00.0", "--type", "nvidia-155", "--count", "2"])
    out = export_files(p, noacs, "mdevctl")
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
    defined = {uuid: cfg for parent in listed for items in parent.values() for item in items for uuid, cfg in item.items()}
    assert set(defined) == set(p.actions[0].uuids)
    assert all(cfg["mdev_type"] == "nvidia-155" and cfg["start"] == "auto" and cfg["attrs"] == [] for cfg in defined.values())
    assert list(listed[0]) == ["0000:03:00.0"]


# ---- proxmox, qemu, driverctl, cmdline, json ----------------------------------------------------------------


def gpu_machine() -> Topology:
    def fn(bdf, cls, driver, **kw):
        return Function(address=A(bdf), parent=A("0000:00:01.0"), vendor_id=0x1002, device_id=0x73BF, class_code=cls,
                        header_type=0, multifunction=True, pcie_type=PcieType.ENDPOINT, driver=driver, iommu_group="9",
                        reset_methods=("flr",), **kw)
    port = Function(address=A("0000:00:01.0"), vendor_id=0x8086, device_id=0x1901, class_code=0x060400, header_type=1,
                    pcie_type=PcieType.ROOT_PORT, driver="pcieport", iommu_group="2", multifunction=False)
    nic = Function(address=A("0000:00:1f.6"), vendor_id=0x8086, device_id=0x15BC, class_code=0x020000, header_type=0,
                   driver="e1000e", iommu_group="3", multifunction=False)
    return Topology.build([port, fn("0000:01:00.0", 0x030000, "amdgpu", boot_vga=False), fn("0000:01:00.1", 0x040300, "snd_hda_intel"), nic],
                          [HostBridge(0, 0, (0, 0xFF))], SourceInfo("memory", "gpu", iommu_present=True, kernel_cmdline="quiet splash"))


def test_proxmox_qemu_cmdline_for_a_gpu():
    t = gpu_machine()
    p = plan_of(t, ["assign", "0000:01:00.0", "--vm", "100", "--group"], ["kernel-param", "pci=realloc"])
    prox = export(p, t, "proxmox")
    assert "hostpci0: 0000:01:00,pcie=1,x-vga=1" in prox.splitlines()
    assert "hostpci1" not in prox  # both functions are one entry
    assert "/etc/pve/qemu-server/100.conf" in prox
    qemu = export(p, t, "qemu")
    args = shlex.split(" ".join(line.rstrip("\\") for line in qemu.splitlines() if not line.startswith("#")))
    assert args == ["-device", "vfio-pci,host=0000:01:00.0,addr=0x10.0,multifunction=on",
                    "-device", "vfio-pci,host=0000:01:00.1,addr=0x10.1"]
    cmd = export(p, t, "cmdline")
    lines = [x for x in cmd.splitlines() if not x.startswith("#")]
    assert lines == ["vfio-pci.ids=1002:73bf pci=realloc"]
    assert "softdep amdgpu pre: vfio-pci" in cmd and "softdep snd_hda_intel pre: vfio-pci" in cmd
    assert "quiet splash vfio-pci.ids=1002:73bf pci=realloc" in cmd
    drv = export(p, t, "driverctl")
    assert "driverctl set-override 0000:01:00.0 vfio-pci" in drv and "driverctl set-override 0000:01:00.1 vfio-pci" in drv


def test_proxmox_splits_a_partly_assigned_device():
    t = gpu_machine()
    fns = [replace(f, iommu_group="8") if f.bdf == "0000:01:00.1" else f for f in t]
    t = Topology.build(fns, t.host_bridges, t.source)
    p = plan_of(t, ["assign", "0000:01:00.1", "--vm", "101"])
    assert "hostpci0: 0000:01:00.1,pcie=1" in export(p, t, "proxmox").splitlines()


def test_cmdline_notes_devices_sharing_an_id(noacs):
    p = plan_of(noacs, ["bind", "0000:01:00.0", "--driver", "vfio-pci"], ["bind", "0000:02:00.0", "--driver", "vfio-pci"],
                ["bind", "0000:04:00.0", "--driver", "pci-stub"])
    cmd = export(p, noacs, "cmdline")
    assert "vfio-pci.ids=8086:10d3,1b36:0010 pci-stub.ids=8086:10d3" in cmd
    assert "vfio-pci.ids also takes 0000:04:00.0" in cmd


def test_json_export(noacs, group_plan):
    doc = json.loads(export(group_plan, noacs, "json"))
    assert doc["vms"] == {"win": ["0000:01:00.0", "0000:02:00.0", "0000:04:00.0"]}
    dev = {d["bdf"]: d for d in doc["devices"]}
    assert dev["0000:02:00.0"]["driver_before"] == "nvme" and dev["0000:02:00.0"]["driver_after"] == "vfio-pci"
    assert doc["check"]["ok"] is True and doc["check"]["warnings"] >= 1


def test_driverctl_unbind_and_new_devices(unpacked):
    t = load_sysfs(unpacked("sriov-nvme"))
    p = plan_of(t, ["sriov", "0000:01:00.0", "--vfs", "4", "--driver", "vfio-pci"], ["unbind", "0000:01:00.1"])
    out = export(p, t, "driverctl")
    assert "driverctl set-override 0000:01:00.1 none" in out
    assert "# driverctl set-override 0000:01:00.4 vfio-pci" in out  # the 4th VF exists only after the plan


# ---- refusal ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_export_refuses_a_plan_with_errors(noacs, target):
    p = plan_of(noacs, ["assign", "0000:01:00.0", "--vm", "win"])  # GROUP-SPLIT
    with pytest.raises(PlanHasErrors) as e:
        export(p, noacs, target)
    assert "GROUP-SPLIT" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(PlanHasErrors):
        export_files(p, noacs, target)


def test_exports_refuse_on_drift(noacs, unpacked, group_plan):
    other = load_sysfs(unpacked("vfio"))
    with pytest.raises(PlanHasErrors, match="DRIFT"):
        export(group_plan, other, "shell")


def test_unknown_target(noacs, group_plan):
    with pytest.raises(ExportError, match="unknown export target"):
        export(group_plan, noacs, "ansible")


def test_exports_are_deterministic(noacs, group_plan):
    for target in TARGETS:
        assert export_files(group_plan, noacs, target) == export_files(group_plan, noacs, target)
    assert ABSENT is not None
