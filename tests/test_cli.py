"""The command line: outputs, exit codes, one-line errors, and this machine's /sys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.sources import load_source
from explorer.sources.sysfs import has_pci
from conftest import QEMU as QEMU_DIR

REPO = Path(__file__).resolve().parent.parent
LIVE = has_pci("/")


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, env=env, **kw)


@pytest.mark.skipif(not LIVE, reason="this machine shows no PCI devices")
def test_tree_lists_every_live_device():
    p = run("tree")
    assert p.returncode == 0, p.stderr
    for name in os.listdir("/sys/bus/pci/devices"):
        assert name in p.stdout


@pytest.mark.skipif(not LIVE, reason="this machine shows no PCI devices")
def test_live_json_matches_sysfs_attributes():
    p = run("tree", "--json")
    assert p.returncode == 0, p.stderr
    devices = {d["bdf"]: d for d in json.loads(p.stdout)["devices"]}
    assert set(devices) == set(os.listdir("/sys/bus/pci/devices"))
    for bdf, d in devices.items():
        base = Path("/sys/bus/pci/devices") / bdf
        assert d["vendor"] == (base / "vendor").read_text().strip()[2:]
        assert d["device"] == (base / "device").read_text().strip()[2:]
        assert d["class"] == (base / "class").read_text().strip()[2:]
        drv = base / "driver"
        assert d["driver"] == (os.path.basename(os.readlink(drv)) if drv.exists() else None)
        grp = base / "iommu_group"
        assert d["iommu_group"] == (os.path.basename(os.readlink(grp)) if grp.exists() else None)


def test_show_json_and_text(unpacked, capsys):
    root = str(unpacked("sriov-nvme"))
    assert main(["show", root, "01:00.0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "pci-explorer/device/1" and doc["source"]["kind"] == "sysfs"
    d = doc["device"]
    assert d["bdf"] == "0000:01:00.0" and d["caps"]["sriov"]["total_vfs"] == 4
    assert d["virtfns"] == ["0000:01:00.1", "0000:01:00.2", "0000:01:00.3"]
    assert main(["show", root, "0000:01:00.0"]) == 0
    text = capsys.readouterr().out
    assert "SR-IOV" in text and "VFs 3/4" in text


def test_show_unknown_device_exit_1(unpacked, capsys):
    assert main(["show", str(unpacked("base")), "0000:09:00.0"]) == 1
    assert "no such device" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["tree", "/nonexistent/place"], "/nonexistent/place: no such file or directory"),
        (["show", "/nonexistent", "zz:00.0"], "not a PCI address"),
        (["tree", "builtin:no-such-machine"], "no bundled topology 'no-such-machine'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle):
    p = run(*args)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr


def test_garbage_file_is_one_line_exit_2(tmp_path):
    f = tmp_path / "junk.bin"
    f.write_bytes(b"\x00\x01\x02 not anything")
    p = run("tree", str(f))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert str(f) in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_directory_without_sysfs_is_rejected(tmp_path):
    p = run("tree", str(tmp_path))
    assert p.returncode == 2 and "no sys/bus/pci" in p.stderr


def test_tui_without_terminal_prints_tree(unpacked):
    p = run("tui", str(unpacked("switch")), stdin=subprocess.DEVNULL)
    assert p.returncode == 0
    assert "0000:02:01.0" in p.stdout and "not a terminal" in p.stderr


def test_unconfigured_pci_falls_back_to_bundled_topology(tmp_path):
    """With no PCI devices under the root, the app opens a bundled topology and says so."""
    (tmp_path / "sys/bus/pci/devices").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PCI_EXPLORER_ROOT": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "explorer"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert "no PCI devices" in p.stderr and "bundled topology" in p.stderr
    assert p.stdout.strip()


def test_layers_import_only_upwards():
    """model < sources < kernel < plan < export < ui; nothing below ui imports textual."""
    order = ["model", "sources", "kernel", "plan", "export", "ui"]
    allowed = {
        "model": set(),
        "sources": {"model"},
        "kernel": {"model"},
        "plan": {"model", "kernel"},
        "export": {"model", "sources", "kernel", "plan"},
        "ui": set(order),
    }
    import re

    pat = re.compile(r"^\s*(?:from|import)\s+(\.\.?[\w.]*|explorer[\w.]*|textual|rich)", re.M)
    for layer in order:
        for py in (REPO / "explorer" / layer).rglob("*.py"):
            for target in pat.findall(py.read_text()):
                if target in ("textual", "rich"):
                    assert layer == "ui", f"{py} imports {target}"
                    continue
                if target.startswith("explorer."):
                    top = target.split(".")[1]
                elif target.startswith(".."):
                    top = target[2:].split(".")[0]
                else:
                    continue  # same package
                if top in order and top != layer:
                    assert top in allowed[layer], f"{py.relative_to(REPO)} imports {top}"


def test_scripted_commands_do_not_load_textual(unpacked):
    code = (
        "import sys; from explorer.cli import main; "
        f"main(['tree', {str(unpacked('base'))!r}, '--json']); "
        "assert 'textual' not in sys.modules, 'textual loaded'"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr


def _devices(capsys, source: str) -> dict:
    """tree --json devices by BDF; trust facts kept, where each came from left out (that names the source's kind)."""
    assert main(["tree", source, "--json"]) == 0
    out = {}
    for d in json.loads(capsys.readouterr().out)["devices"]:
        d["trust"] = {k: v for k, v in d["trust"].items() if k != "external_facing_from"}
        out[d["bdf"]] = d
    return out


def test_snapshot_then_tree_anywhere(unpacked, tmp_path, capsys):
    root = str(unpacked("switch"))
    out = tmp_path / "host.tar.gz"
    assert main(["snapshot", "--root", root, "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    original, restored = _devices(capsys, root), _devices(capsys, str(out))
    for d in (*original.values(), *restored.values()):
        d["caps"]["dsn"] = None  # serials are left out of snapshots by default
    assert restored == original
    # Never over an existing file without --force.
    assert main(["snapshot", "--root", root, "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["snapshot", "--root", root, "-o", str(out), "--force"]) == 0


def test_convert_to_yaml_round_trips_through_the_cli(unpacked, tmp_path, capsys):
    root = str(unpacked("sriov-nvme"))
    out = tmp_path / "machine.yaml"
    assert main(["convert", root, "-o", str(out)]) == 0
    capsys.readouterr()
    a, b = _devices(capsys, root), _devices(capsys, str(out))
    assert a == b
    before = out.read_bytes()
    assert main(["convert", root, "-o", str(out)]) == 2
    assert out.read_bytes() == before


def test_groups_json_matches_kernel_on_capture(unpacked, capsys):
    root = str(unpacked("rp-noacs"))
    # Default: the reported groups, each with the reason the prediction gives.
    assert main(["groups", root, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["view"] == "reported" and doc["matches_reported"] is True and doc["hypothetical"] is False
    shared = [g for g in doc["groups"] if "0000:00:02.0" in g["devices"]]
    assert len(shared) == 1 and len(shared[0]["devices"]) == 6 and "no ACS capability" in shared[0]["reason"]
    assert main(["groups", root, "--predict", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["view"] == "predicted"
    assert {frozenset(g["devices"]) for g in pred["groups"]} == {frozenset(g["devices"]) for g in doc["groups"]}
    assert {g["id"] for g in pred["groups"]} == {g["id"] for g in doc["groups"]}  # the kernel's labels
    # --compare: 0 equal; 2 when the source reports no groups.
    assert main(["groups", root, "--compare"]) == 0
    assert "equal" in capsys.readouterr().out
    assert main(["groups", "builtin:intel-ich10-desktop", "--compare"]) == 2
    assert main(["groups", "builtin:intel-ich10-desktop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["view"] == "predicted"


def test_groups_compare_exits_1_on_a_difference(unpacked, tmp_path, capsys):
    """A reported partition the hardware cannot give (an edited YAML) is a difference."""
    src = tmp_path / "m.yaml"
    assert main(["convert", str(unpacked("rp-endpoints")), "-o", str(src)]) == 0
    text = src.read_text()
    # Put two endpoints behind different ACS root ports in one reported group.
    e1, e2 = (load_source(str(src))[a].iommu_group for a in ("0000:01:00.0", "0000:02:00.0"))
    assert e1 != e2 and f'iommu-group: "{e2}"' in text
    src.write_text(text.replace(f'iommu-group: "{e2}"', f'iommu-group: "{e1}"'))
    capsys.readouterr()
    assert main(["groups", str(src), "--compare"]) == 1
    assert "difference" in capsys.readouterr().out


def test_groups_what_if_is_labelled_hypothetical(unpacked, capsys):
    assert main(["groups", str(unpacked("rp-noacs")), "--assume-acs", "00:02.0"]) == 0
    out = capsys.readouterr().out
    assert "HYPOTHETICAL" in out
    assert main(["groups", str(unpacked("rp-noacs")), "--assume-acs", "00:09.0"]) == 2


def test_fit_exit_codes_and_json(unpacked, capsys):
    """The real kernel could not place a 1 GiB BAR under ACPI hotplug here (outcome.json)."""
    pre = str(unpacked("hotplug-acpi-default-1g.pre"))
    args = ["fit", pre, "--port", "00:02.0", "--bar", "0:mem32:256", "--bar", "2:pref64:1G"]
    assert main([*args, "--hotplug", "acpi", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["fits"] is False and set(doc) >= {"fits", "bars", "remedies"}
    bars = {b["index"]: b for b in doc["bars"]}
    outcome = json.loads((QEMU_DIR / "hotplug-acpi-default-1g.outcome.json").read_text())
    for o in outcome["outcome"]:
        b = bars[o["index"]]
        assert b["assigned"] == o["assigned"]
        assert b["start"] == (int(o["start"], 16) if o["start"] else None)
    assert doc["remedies"]
    assert main([*args, "--bar", "pref99:1G"]) == 2
    assert "--bar" in capsys.readouterr().err


def test_fit_sriov_and_resources(unpacked, capsys):
    root = str(unpacked("sriov-nvme"))
    assert main(["fit", root, "--sriov", "01:00.0", "--vfs", "4"]) == 0
    capsys.readouterr()
    assert main(["fit", root, "--sriov", "01:00.0", "--vfs", "5"]) == 1
    capsys.readouterr()
    assert main(["resources", root, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc


def test_plan_check_export_from_the_command_line(unpacked, tmp_path, capsys):
    """A VM given one device of a shared group is refused; the whole group passes and exports."""
    src = str(unpacked("rp-noacs"))
    plan = str(tmp_path / "p.yaml")
    assert main(["plan", "new", src, "-o", plan]) == 0
    assert main(["plan", "add", plan, "assign", "0000:02:00.0", "--vm", "win10"]) == 0
    capsys.readouterr()
    assert main(["check", plan]) == 1
    out = capsys.readouterr().out
    assert "GROUP-SPLIT" in out and "0000:01:00.0" in out and "0000:04:00.0" in out
    assert main(["export", plan, "--to", "shell"]) == 1
    assert "refusing to export" in capsys.readouterr().err

    whole = str(tmp_path / "q.yaml")
    assert main(["plan", "new", src, "-o", whole]) == 0
    assert main(["plan", "add", whole, "assign", "0000:02:00.0", "--vm", "win10", "--group"]) == 0
    capsys.readouterr()
    assert main(["check", whole, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    script = tmp_path / "apply.sh"
    assert main(["export", whole, "--to", "shell", "-o", str(script)]) == 0
    assert script.read_text().startswith("#!") and os.access(script, os.X_OK)
    assert main(["export", whole, "--to", "shell", "-o", str(script)]) == 2  # never overwrites silently
    assert main(["export", whole, "--to", "libvirt"]) == 0
    assert "<hostdev mode='subsystem' type='pci' managed='yes'>" in capsys.readouterr().out
    # Checked against another machine: drift.
    assert main(["check", whole, "--source", str(unpacked("switch"))]) == 1
    assert "DRIFT" in capsys.readouterr().out


def test_bad_plan_action_is_one_line(unpacked, tmp_path):
    plan = tmp_path / "p.yaml"
    assert main(["plan", "new", str(unpacked("base")), "-o", str(plan)]) == 0
    p = run("plan", "add", str(plan), "assign", "0000:00:1f.2")
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    plan.write_text("pci-explorer: plan/1\nactions: [1, 2\n")
    p = run("check", str(plan))
    assert p.returncode == 2 and str(plan) in p.stderr and "Traceback" not in p.stderr


def test_generate_yaml_and_sysfs_load_back(tmp_path, capsys):
    y = tmp_path / "m.yaml"
    assert main(["generate", "--functions", "300", "--seed", "7", "-o", str(y)]) == 0
    d = tmp_path / "sysfs"
    assert main(["generate", "--functions", "300", "--seed", "7", "--format", "sysfs", "-o", str(d)]) == 0
    capsys.readouterr()
    a, b = _devices(capsys, str(y)), _devices(capsys, str(d))
    assert len(a) == 300 and set(a) == set(b)
    assert {k: v["iommu_group"] for k, v in a.items()} == {k: v["iommu_group"] for k, v in b.items()}
    assert main(["generate", "--functions", "300", "-o", str(y)]) == 2  # no silent overwrite


def test_groups_what_if_move_to_another_slot(unpacked, capsys):
    """Moving the e1000e from one non-ACS switch port to the empty one: it joins that port's group."""
    root = str(unpacked("switch"))
    assert main(["groups", root, "--json", "--move", "0000:03:00.0=0000:02:02.0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["view"] == "predicted"
    assert doc["hypothetical"] is True and any("03:00.0 -> 0000:05:00.0" in a for a in doc["assumptions"])
    groups = {frozenset(g["members"]): g for g in doc["predicted"]}
    assert frozenset({"0000:02:02.0", "0000:05:00.0"}) in groups
    assert frozenset({"0000:02:00.0"}) in groups  # the port it left is alone now
    # Groups the move leaves alone keep the kernel's labels.
    assert groups[frozenset({"0000:02:01.0", "0000:04:00.0"})]["reported_as"] == "5"
    assert main(["groups", root, "--move", "0000:03:00.0=0000:02:01.0"]) == 2  # occupied slot
    assert "occupied" in capsys.readouterr().err


def test_plan_hot_add_from_a_yaml_subtree(tmp_path, capsys):
    """A planned card described in YAML (a switch needing two buses) hot-added at a port with one."""
    card = tmp_path / "card.yaml"
    card.write_text(
        "pci-explorer: topology/1\n"
        "devices:\n"
        '  - address: "0000:05:00.0"\n'
        '    ids: "104c:8232"\n'
        '    class: "060400"\n'
        "    header-type: 1\n"
        "    pcie-type: switch-upstream\n"
        "    bars:\n"
        "      0: {kind: mem32, size: 16K}\n"
        "    bridge:\n"
        '      bus-range: "06-07"\n'
    )
    plan = tmp_path / "p.yaml"
    assert main(["plan", "new", "builtin:hotplug-chassis-small-window", "-o", str(plan)]) == 0
    assert main(["plan", "add", str(plan), "hot-add", "0000:02:01.0", "--from", str(card), "--hotplug", "native"]) == 0
    # the card is a switch: its upstream port is the bridge kind fit and check follow
    assert "hot-add 0000:02:01.0 --bar 0:mem32:16K --buses 2 --bridge switch --hotplug native" in capsys.readouterr().out
    assert main(["check", str(plan)]) == 1
    assert "HOTADD-BUS" in capsys.readouterr().out
    assert main(["plan", "add", str(plan), "hot-add", "0000:02:01.0", "--from", str(card) + "#0000:09:00.0"]) == 2
