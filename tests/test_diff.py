"""diff OLD NEW on real pairs: what the kernel's own views differ by, and nothing else.

Expectations come from the plain summaries written beside each real-kernel capture
(NAME.txt: devices, groups, bridges' bus ranges and windows, BARs, as the kernel reported
them) and from each hot-add's outcome.json, never from the loaders this diff uses.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

import functools

from explorer.cli import main
from explorer.export.diff import diff_json, diff_text, parse_only
from explorer.kernel.diff import SECTIONS, diff_topologies, source_context
from explorer.model import Address
from explorer.sources import load_source
from explorer.sources.yaml_topology import dump_yaml, load_yaml_text

from conftest import FIXTURES, LSPCI, QEMU
from summary import parse_summary

QEMU612 = FIXTURES / "qemu-6.12"
BOOT = FIXTURES / "qemu-boot"


def _summary_of(capture: Path) -> Path:
    return capture.with_name(capture.name[: -len(".tar.gz")] + ".txt")


def _hot_adds() -> list[tuple[Path, Path, Path]]:
    """(pre capture, post capture, outcome.json) of every hot-add step, both kernels."""
    out = []
    for d in (QEMU, QEMU612):
        for oc in sorted(d.glob("*.outcome.json")):
            doc = json.loads(oc.read_text())
            pre, post = d / doc["pre_capture"], d / doc["post_capture"]
            if pre.exists() and post.exists() and _summary_of(pre).exists() and _summary_of(post).exists():
                out.append((pre, post, oc))
    return out


HOT_ADDS = _hot_adds()


@functools.lru_cache(maxsize=None)
def _load(path: str):
    return load_source(path)


@functools.lru_cache(maxsize=8)
def _diff(old: str, new: str):
    return diff_topologies(_load(old), _load(new))


def _expected(old_txt: Path, new_txt: Path):
    """What the two kernel summaries differ by: added and removed devices, bus ranges,
    windows and assigned BARs/ROMs/VF BARs, and devices whose group companions changed."""
    a, b = parse_summary(old_txt), parse_summary(new_txt)
    added = sorted(set(b) - set(a))
    removed = sorted(set(a) - set(b))
    res: set[tuple[str, str, tuple | None, tuple | None]] = set()
    for bdf in set(a) | set(b):
        da, db = a.get(bdf), b.get(bdf)
        bus_a = da.bus_range if da else None
        bus_b = db.bus_range if db else None
        if bus_a != bus_b:
            res.add((bdf, "bus", bus_a, bus_b))
        for kind in ("io", "mem", "pref"):
            wa = da.windows[kind] if da else None
            wb = db.windows[kind] if db else None
            if wa != wb:
                res.add((bdf, kind, wa, wb))
        for name, get in (("bar", lambda d: d.bars), ("vf-bar", lambda d: d.vf_bars)):
            ba = get(da) if da else {}
            bb = get(db) if db else {}
            for i in set(ba) | set(bb):
                ra = ba[i][:2] if i in ba else None
                rb = bb[i][:2] if i in bb else None
                if ra != rb:
                    res.add((bdf, f"{name} {i}", ra, rb))
        ra = da.rom[:2] if da and da.rom else None
        rb = db.rom[:2] if db and db.rom else None
        if ra != rb:
            res.add((bdf, "rom", ra, rb))
    groups: set[str] = set()
    both = set(a) & set(b)
    for bdf in set(a) | set(b):
        da, db = a.get(bdf), b.get(bdf)
        if bdf not in both:
            if (da or db).group is not None:
                groups.add(bdf)
            continue
        if (da.group is None) != (db.group is None):
            groups.add(bdf)
            continue
        if da.group is None:
            continue
        ca = {x for x in both if a[x].group == da.group}
        cb = {x for x in both if b[x].group == db.group}
        if ca != cb:
            groups.add(bdf)
    return added, removed, res, groups


def _ours(d):
    res = set()
    unassigned = []
    for c in d.section("resources"):
        x = c.data
        if x["bdf"] is None:
            continue  # host bridge windows: the summaries do not list them
        if x["old"] is None and x["new"] is None:
            unassigned.append(x)
            continue
        res.add((x["bdf"], x["what"], tuple(x["old"]) if x["old"] else None, tuple(x["new"]) if x["new"] else None))
    groups = {b for c in d.section("groups") if c.data["change"] != "renumbered" for b in c.data["devices"]}
    return res, unassigned, groups


# ---- hot-adds: before and after ---------------------------------------------------------------
@pytest.mark.parametrize("pre,post,outcome", HOT_ADDS, ids=[f"{p[0].parent.name}/{p[2].name[:-13]}" for p in HOT_ADDS])
def test_hot_add_pairs_differ_exactly_where_the_kernel_changed(pre, post, outcome):
    d = _diff(str(pre), str(post))
    added, removed, res, groups = _expected(_summary_of(pre), _summary_of(post))
    doc = json.loads(outcome.read_text())
    assert added, "a hot-add adds a device"
    assert [str(a) for a in d.added] == added
    assert [str(a) for a in d.removed] == removed
    assert all(not m.moved and m.by == "address" for m in d.matches)
    # the port the device went into is the parent of what was added
    port = Address.parse(doc["port"])
    assert any(d.new.functions[a].parent == port for a in d.added)
    ours, unassigned, our_groups = _ours(d)
    assert ours == res
    # BARs the kernel left unassigned on the new device: reported as such, and only those
    want_unassigned = sorted(doc.get("unassigned_bars", []))
    got_unassigned = sorted(int(x["what"][4:]) for x in unassigned if x["what"].startswith("bar ") and x["change"] == "unassigned")
    if doc["device"].get("bars") and not doc.get("new_bridge"):
        assert got_unassigned == want_unassigned
    assert our_groups == groups
    assert not d.section("drivers") or all(c.data["bdf"] in added for c in d.section("drivers"))
    j = diff_json(d)
    assert j["format"] == "pci-explorer/diff/1" and j["differs"] is True
    assert j["devices"]["added"] == added


def test_hot_add_port_window_change_matches_outcome():
    """The port's windows before and after, as outcome.json recorded them."""
    for pre, post, oc in HOT_ADDS:
        doc = json.loads(oc.read_text())
        before, after = doc.get("port_windows_before") or {}, doc.get("port_windows_after") or {}
        d = _diff(str(pre), str(post))
        changed = {c.data["what"]: c.data for c in d.section("resources") if c.data["bdf"] == doc["port"]}
        for kind in ("io", "mem", "pref"):
            b = [int(x, 16) for x in before[kind]] if before.get(kind) else None
            a = [int(x, 16) for x in after[kind]] if after.get(kind) else None
            if a == b:
                assert kind not in changed, (oc.name, kind)
            else:
                assert changed[kind]["old"] == b and changed[kind]["new"] == a, (oc.name, kind)


# ---- one machine, two kernels ---------------------------------------------------------------------
TWO_KERNELS = sorted(p.name for p in QEMU612.glob("*.tar.gz") if (QEMU / p.name).exists() and ".pre." not in p.name)


@pytest.mark.parametrize("name", TWO_KERNELS)
def test_same_machine_on_61_and_612(name):
    d = _diff(str(QEMU / name), str(QEMU612 / name))
    ctx = {c.data["what"]: c.data for c in d.section("context")}
    assert ctx["kernel_release"]["old"].startswith("6.1.") and ctx["kernel_release"]["new"].startswith("6.12.")
    assert not d.added and not d.removed and all(m.by == "address" for m in d.matches)
    added, removed, res, groups = _expected(_summary_of(QEMU / name), _summary_of(QEMU612 / name))
    ours, unassigned, our_groups = _ours(d)
    assert ours == res and not unassigned
    assert our_groups == groups == set()
    assert not d.section("drivers")


def test_kernel_release_is_the_only_boot_change_of_an_unchanged_machine():
    d = diff_topologies(load_source(str(QEMU / "switch.tar.gz")), load_source(str(QEMU612 / "switch.tar.gz")))
    assert [c.section for c in d.changes] == ["context"]
    assert "kernel release: 6.1.0-56-amd64 -> 6.12.118+deb12-amd64" in diff_text(d)


# ---- the same state from two kinds of source --------------------------------------------------------
LSPCI_FILES = sorted(LSPCI.glob("*.txt")) + sorted(QEMU.glob("*.lspci.txt"))[:6]


@pytest.mark.parametrize("path", LSPCI_FILES, ids=[p.name for p in LSPCI_FILES])
def test_lspci_against_its_own_yaml_conversion(path):
    t = load_source(str(path))
    y = load_yaml_text(dump_yaml(t), "conv.yaml")
    d = diff_topologies(t, y)
    assert d.changes == []
    assert d.unknowns == []
    assert all(m.by == "address" for m in d.matches) and len(d.matches) == len(t)
    assert diff_text(d).endswith("no differences")


# The machines without a hot-add, and hot-adds that left a BAR unassigned (lspci does not list it).
SNAP_LSPCI = sorted(
    n for p in QEMU.glob("*.lspci.txt")
    if (QEMU / ((n := p.name[: -len(".lspci.txt")]) + ".tar.gz")).exists()
    and (not n.startswith("hotplug-") or n in ("hotplug-acpi-default-1g", "hotplug-native-nofit-64g", "hotplug-acpi-switch-dp"))
)


@pytest.mark.parametrize("name", SNAP_LSPCI)
def test_snapshot_against_lspci_of_the_same_state_differs_only_in_unknowns(name):
    """lspci text leaves out what sysfs shows (kernel release, driver_override, ...): unknown, not a change."""
    d = _diff(str(QEMU / f"{name}.tar.gz"), str(QEMU / f"{name}.lspci.txt"))
    assert [c.text for c in d.changes] == []
    assert d.unknowns and all(u.missing_on == "new" for u in d.unknowns)


# ---- a port's ACS turned off (constructed) -----------------------------------------------------------
def test_constructed_acs_change_is_explained(tmp_path):
    """CONSTRUCTED pair: rp-endpoints as captured, against its YAML conversion with root port
    00:02.1's ACS control lacking RR and the reported groups left out (a kernel did not boot
    it; groups are then compared as predicted from the hardware on both sides)."""
    y = dump_yaml(load_source(str(QEMU / "rp-endpoints.tar.gz")))
    lines = y.splitlines()
    start = lines.index('      - address: "0000:00:02.1"')
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("      - address:"))
    out = []
    for i, line in enumerate(lines):
        if "iommu-group:" in line:
            continue
        if start <= i < end and line.strip().startswith("acs:"):
            assert "ctrl: SV+RR+CR+UF" in line
            line = line.replace("ctrl: SV+RR+CR+UF", "ctrl: SV+CR+UF")
        out.append(line)
    new = load_yaml_text("\n".join(out) + "\n", "rp-endpoints-rr-off.yaml")
    old = load_source(str(QEMU / "rp-endpoints.tar.gz"))
    d = diff_topologies(old, new)
    assert d.group_basis == "predicted"
    assert [(c.data["bdf"], c.data["what"]) for c in d.section("devices")] == [("0000:00:02.1", "acs")]
    moved = {b: c.data for c in d.section("groups") for b in c.data["devices"]}
    # the port and the endpoint below it now share a group; nothing else moved
    assert set(moved) == {"0000:00:02.1", "0000:02:00.0"}
    assert moved["0000:00:02.1"]["new"] == moved["0000:02:00.0"]["new"]
    assert moved["0000:00:02.1"]["new_group"] == ["0000:00:02.1", "0000:02:00.0"]
    for g in moved.values():
        assert "0000:00:02.1 lost ACS isolation: its ACS control now lacks RR" in g["why"]
    assert any(u.what == "reported IOMMU groups" for u in d.unknowns)


# ---- bus numbers renumbered: devices found again ----------------------------------------------------
@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_renumbered_buses_match_devices_by_position(kernel):
    old_p = BOOT / kernel / "boot-busnum-none.tar.gz"
    new_p = BOOT / kernel / "boot-busnum-assign-busses.tar.gz"
    d = diff_topologies(load_source(str(old_p)), load_source(str(new_p)))
    a, b = parse_summary(_summary_of(old_p)), parse_summary(_summary_of(new_p))
    # independent pairing: by vendor:device where one device has it; the two root ports
    # (one ID, on the root bus, whose number no boot parameter changes) by address
    def by_ids(s):
        out: dict = {}
        for x in s.values():
            out.setdefault((x.vendor, x.device), []).append(x.bdf)
        return out

    ids_a, ids_b = by_ids(a), by_ids(b)
    assert ids_a.keys() == ids_b.keys()
    want_moves = set()
    for k, olds in ids_a.items():
        news = ids_b[k]
        if len(olds) == 1 and len(news) == 1:
            if olds != news:
                want_moves.add((olds[0], news[0]))
        else:
            assert sorted(olds) == sorted(news) and all(x.startswith("0000:00:") for x in olds)
    assert want_moves
    got = {(str(m.old), str(m.new)) for m in d.matches if m.moved}
    assert got == want_moves
    assert not d.added and not d.removed
    assert all(m.by in ("subsystem and position", "serial") for m in d.matches if m.moved)
    j = diff_json(d)
    assert {(x["from"], x["to"]) for x in j["devices"]["moved"]} == want_moves
    # groups kept their members (the summaries agree) and so are not reported
    assert not [c for c in d.section("groups") if c.data["change"] != "renumbered"]
    assert {c.data["what"] for c in d.section("context")} == {"kernel_cmdline"}


# ---- firmware (DMI) ----------------------------------------------------------------------------------
def test_firmware_read_from_a_real_sysfs_tree_and_kept_by_snapshots(tmp_path):
    from explorer.sources.snapshot import capture

    with tarfile.open(FIXTURES / "hwloc" / "2pa-pcidomain32bits.tar.bz2") as tf:
        tf.extractall(tmp_path, filter="tar")
    root = next(p for p in tmp_path.iterdir() if p.is_dir())
    dmi = root / "sys" / "class" / "dmi" / "id"
    want = {n: (dmi / n).read_text().strip() for n in ("bios_vendor", "bios_version", "bios_date") if (dmi / n).exists()}
    assert want
    t = load_source(str(root))
    assert dict(t.source.firmware) == want
    snap = tmp_path / "snap.tar.gz"
    capture(root, snap)
    t2 = load_source(str(snap))
    assert t2.source.firmware == t.source.firmware
    assert load_yaml_text(dump_yaml(t2)).source.firmware == t.source.firmware
    # a BIOS update: only the firmware context differs
    (dmi / "bios_version").write_text("9.99\n")
    d = diff_topologies(t, load_source(str(root)))
    assert [(c.data["what"], c.data["old"], c.data["new"]) for c in d.changes] == [("bios_version", want["bios_version"], "9.99")]
    assert source_context(t)["bios_version"] == want["bios_version"]


def test_context_unknown_on_one_side_is_not_a_change():
    snap = load_source(str(QEMU / "base.tar.gz"))
    lspci = load_source(str(QEMU / "base.lspci.txt"))
    d = diff_topologies(snap, lspci)
    assert d.section("context") == []
    assert {u.what for u in d.unknowns if u.section == "context"} >= {"kernel_release", "kernel_cmdline"}
    j = diff_json(d)
    assert j["differs"] is False and j["context"] == [] and j["groups"] == [] and j["resources"] == []
    assert {"section": "context", "bdf": None, "what": "kernel_release", "unknown_in": "new"} in j["unknown"]
    assert "not compared, one side does not say" in diff_text(d)


# ---- the command --------------------------------------------------------------------------------------
def test_cli_exit_codes_and_only(capsys, tmp_path):
    pre = str(QEMU / "hotplug-native-default-1g.pre.tar.gz")
    post = str(QEMU / "hotplug-native-default-1g.tar.gz")
    assert main(["diff", pre, pre]) == 0
    assert "no differences" in capsys.readouterr().out
    assert main(["diff", pre, post, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "pci-explorer/diff/1" and doc["source"]["old"]["location"] == pre
    assert doc["devices"]["added"] == ["0000:01:00.0"]
    assert {"groups", "resources", "drivers", "links", "context", "sriov"} <= set(doc)
    # only the drivers: none changed, so exit 0 even though devices were added
    assert main(["diff", pre, post, "--only", "drivers,context"]) == 0
    capsys.readouterr()
    assert main(["diff", pre, post, "--only", "drivers", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) & set(SECTIONS) == {"drivers"}
    assert main(["diff", pre, post, "--only", "bogus"]) == 2
    assert "unknown section 'bogus'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("pci-explorer: topology/1\ndevices: 3\n")
    assert main(["diff", pre, str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_parse_only():
    assert parse_only(None) == SECTIONS
    assert parse_only("groups,devices") == ("devices", "groups")
    with pytest.raises(ValueError):
        parse_only("devices,nope")


# ---- check PLAN --source NEW: the drift lists what changed for the plan's devices ----------------------
def test_check_drift_lists_the_changes_to_the_plans_devices(tmp_path, capsys):
    old_p = BOOT / "6.1" / "boot-busnum-none.tar.gz"
    new_p = BOOT / "6.1" / "boot-busnum-assign-busses.tar.gz"
    nic = "8086", "10d3"
    old_nic = next(x.bdf for x in parse_summary(_summary_of(old_p)).values() if (x.vendor, x.device) == nic)
    new_nic = next(x.bdf for x in parse_summary(_summary_of(new_p)).values() if (x.vendor, x.device) == nic)
    assert old_nic != new_nic
    copy = tmp_path / "machine.tar.gz"
    shutil.copy(old_p, copy)
    plan = tmp_path / "plan.yaml"
    assert main(["plan", "new", str(copy), "-o", str(plan)]) == 0
    assert main(["plan", "add", str(plan), "assign", old_nic, "--vm", "vm1"]) == 0
    capsys.readouterr()
    assert main(["check", str(plan), "--source", str(new_p)]) == 1
    out = capsys.readouterr().out
    assert "DRIFT" in out and f"moved {old_nic} -> {new_nic}" in out
    assert main(["check", str(plan), "--source", str(new_p), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["drift"] is True
    moved = [c for c in doc["changes"] if c.get("change") == "moved"]
    assert [(c["from"], c["to"]) for c in moved] == [(old_nic, new_nic)]
    # only the plan's device: the switch ports that moved too are not listed
    assert all(old_nic in json.dumps(c) or new_nic in json.dumps(c) for c in doc["changes"])
    # without the plan's own source, its fingerprint stands for the old machine
    copy.unlink()
    assert main(["check", str(plan), "--source", str(new_p)]) == 1
    assert f"moved {old_nic} -> {new_nic}" in capsys.readouterr().out


def test_tui_compare_outside_a_terminal_prints_tree_and_diff(capsys, tmp_path):
    pre = str(QEMU / "hotplug-native-default-1g.pre.tar.gz")
    post = str(QEMU / "hotplug-native-default-1g.tar.gz")
    assert main(["tui", post, "--compare", pre]) == 0
    out = capsys.readouterr().out
    assert "added 0000:01:00.0" in out and "prefetchable window grew" in out
    missing = tmp_path / "nope.tar.gz"
    assert main(["tui", post, "--compare", str(missing)]) == 2
    assert "nope.tar.gz" in capsys.readouterr().err
