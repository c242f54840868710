"""Hostile input: no hang, no runaway memory, no damaged file, no injection, one-line errors.

Every case of the hostile-input report is here as a regression test, with inputs made at
test time (tests/hostile.py: small bombs that still show reading is capped and linear), and
property tests explore each source kind and the plan file with a fixed budget (derandomized
in CI: tests/conftest.py). Subprocess timeouts only catch hangs; nothing here is timed.
Nothing is written under /dev or /sys.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile as H
from explorer.model.safe_text import clean, one_line
from explorer.plan.actions import ActionError, KernelParam, parse_action, parse_kernel_param
from explorer.plan.apply import merged_cmdline
from explorer.plan.planfile import PlanFileError, parse_plan
from explorer.sources import SourceError, load_source
from explorer.sources.yaml_topology import load_yaml_text

PROPS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---- 1. --force never replaces what is not a regular file -----------------------------------------


def _special_targets(tmp: Path) -> dict[str, Path]:
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    target = tmp / "kept.txt"
    target.write_text("keep me\n")
    link = tmp / "link"
    link.symlink_to(target)
    dangling = tmp / "dangling"
    dangling.symlink_to(tmp / "nowhere")
    folder = tmp / "folder"
    folder.mkdir()
    sock = tmp / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.close()
    return {"fifo": fifo, "link": link, "dangling": dangling, "folder": folder, "socket": sock}


@pytest.mark.parametrize("command", [
    ["convert", "builtin:example-small", "-o"],
    ["generate", "--functions", "3", "-o"],
    ["plan", "new", "builtin:example-small", "-o"],
    ["snapshot", "--root", "ROOT", "-o"],
])
def test_force_never_replaces_a_special_file(tmp_path, command):
    targets = _special_targets(tmp_path)
    root = H.sysfs_tree(tmp_path)
    for kind, target in targets.items():
        before = os.lstat(target)
        args = [str(root) if a == "ROOT" else a for a in command] + [str(target), "--force"]
        line = H.one_line_error(H.run_cli(args))
        assert str(target) in line and ("not a regular file" in line or "not empty" in line or "exists" in line), (kind, line)
        after = os.lstat(target)
        assert (stat.S_IFMT(after.st_mode), after.st_ino) == (stat.S_IFMT(before.st_mode), before.st_ino), kind
    assert (tmp_path / "kept.txt").read_text() == "keep me\n"
    assert not (tmp_path / "nowhere").exists()


def test_output_dash_is_stdout_and_new_files_get_the_umask(tmp_path):
    p = H.run_cli(["convert", "builtin:example-small", "-o", "-"], cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.startswith(b"# PCI topology") and not (tmp_path / "-").exists()
    root = H.sysfs_tree(tmp_path)
    p = H.run_cli(["snapshot", "--root", str(root), "-o", "-"], cwd=tmp_path)
    assert p.returncode == 0 and p.stdout[:2] == b"\x1f\x8b" and not (tmp_path / "-").exists()
    p = H.run_cli(["convert", "builtin:example-small", "-o", "new.yaml"], cwd=tmp_path, umask=0o027)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "new.yaml").st_mode) == 0o640


def test_missing_output_folder_names_the_target(tmp_path):
    target = tmp_path / "no" / "such" / "x.yaml"
    line = H.one_line_error(H.run_cli(["convert", "builtin:example-small", "-o", str(target)]))
    assert str(target) in line and ".tmp" not in line


# ---- 2. bounded cost ----------------------------------------------------------------------------


def test_yaml_merge_and_alias_bombs_are_refused(tmp_path):
    (tmp_path / "merge.yaml").write_text(H.merge_bomb())
    line = H.one_line_error(H.run_cli(["tree", str(tmp_path / "merge.yaml")]))
    assert "merge.yaml" in line and "alias bomb" in line
    (tmp_path / "laughs.yaml").write_text(H.laughs_bomb(plan=True))
    line = H.one_line_error(H.run_cli(["plan", "show", str(tmp_path / "laughs.yaml")]))
    assert "laughs.yaml" in line and "alias bomb" in line
    with pytest.raises(SourceError, match="recursive alias|alias bomb"):
        load_yaml_text("pci-explorer: topology/1\nx: &a [*a, *a]\ndevices: []\n")


@pytest.mark.parametrize("maker,expect", [
    (H.config_bomb, "config"),
    (H.iomem_bomb, "proc/iomem"),
    (H.entries_bomb, "never reads"),
    (H.links_bomb, "same device directory"),
])
def test_snapshot_bombs_are_refused(tmp_path, maker, expect):
    archive = maker(tmp_path)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    line = H.one_line_error(H.run_cli(["tree", str(archive)], env={"TMPDIR": str(tmpdir)}))
    assert str(archive) in line and expect in line
    assert list(tmpdir.iterdir()) == []  # the private unpack folder is gone


def test_sysfs_files_are_read_with_caps(tmp_path):
    root = H.sysfs_tree(tmp_path)
    cfg = root / "sys/devices/pci0000:00/0000:00:1f.2/config"
    cfg.unlink()
    with open(cfg, "wb") as f:
        f.truncate(4 << 20)  # sparse: 4 MiB of zeros, more than any config space
    line = H.one_line_error(H.run_cli(["tree", str(root)]))
    assert "config" in line and "4096" in line
    cfg.unlink()
    cfg.write_bytes(bytes(256))
    iomem = root / "proc/iomem"
    iomem.unlink()
    with open(iomem, "wb") as f:
        f.truncate(64 << 20)
    line = H.one_line_error(H.run_cli(["tree", str(root)]))
    assert "proc/iomem" in line


def test_special_files_as_source_are_refused(tmp_path):
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    line = H.one_line_error(H.run_cli(["tree", str(fifo)], timeout=30))
    assert str(fifo) in line and "regular file" in line
    plan = tmp_path / "p.yaml"
    assert H.run_cli(["plan", "new", "builtin:example-small", "-o", str(plan)]).returncode == 0
    plan.write_text(plan.read_text().replace('spec: "builtin:example-small"', f"spec: {json.dumps(str(fifo))}"))
    line = H.one_line_error(H.run_cli(["check", str(plan)], timeout=30))
    assert str(fifo) in line
    line = H.one_line_error(H.run_cli(["plan", "show", str(fifo)], timeout=30))
    assert str(fifo) in line


def test_generate_has_an_upper_bound(tmp_path):
    line = H.one_line_error(H.run_cli(["generate", "--functions", str(10**12), "-o", str(tmp_path / "g.yaml")]))
    assert "--functions" in line
    assert not (tmp_path / "g.yaml").exists()


def _reference_merged_cmdline(base, params):
    """The former (quadratic) definition: the linear one must agree with it."""
    words = (base or "").split()
    for p in params:
        if p.name == "pci" and p.value:
            opts, rest = [], []
            for w in words:
                if w.startswith("pci="):
                    opts += [o for o in w[4:].split(",") if o]
                else:
                    rest.append(w)
            for new in p.value.split(","):
                key = new.split("=", 1)[0]
                opts = [o for o in opts if o.split("=", 1)[0] != key]
                opts.append(new)
            words = rest + ["pci=" + ",".join(opts)]
        else:
            words = [w for w in words if w.split("=", 1)[0] != p.name] + [p.text]
    return " ".join(words)


_word = st.sampled_from(["pci", "quiet", "iommu", "vfio-pci.ids", "a", "b"])
_opt = st.builds(lambda k, v: f"{k}={v}" if v else k, st.sampled_from(["realloc", "hpmemsize", "noats", "x", ""]),
                 st.sampled_from(["", "1", "2", "on"]))
_param = st.one_of(
    st.builds(lambda v: KernelParam("pci", ",".join(v)), st.lists(_opt, min_size=0, max_size=4)),
    st.builds(lambda n, v: KernelParam(n, v), _word, st.one_of(st.none(), st.sampled_from(["1", "x", "a=b"]))),
)


@PROPS
@given(base=st.lists(st.one_of(_word, st.builds(lambda w, o: f"{w}={o}", _word, _opt)), max_size=8).map(" ".join),
       params=st.lists(_param, max_size=8))
def test_merged_cmdline_is_the_same_function_linearly(base, params):
    assert merged_cmdline(base, params) == _reference_merged_cmdline(base, params)


def test_many_kernel_parameters_export(tmp_path):
    plan = tmp_path / "p.yaml"
    assert H.run_cli(["plan", "new", "builtin:example-small", "-o", str(plan)]).returncode == 0
    text = plan.read_text().replace("actions: []", "actions:")
    text += "".join(f"  - action: kernel-param\n    param: \"x{i}=1\"\n" for i in range(3000))
    plan.write_text(text)
    p = H.run_cli(["export", str(plan), "--to", "cmdline"], timeout=120)
    assert p.returncode == 0, p.stderr[-500:]
    assert b"x2999=1" in p.stdout


# ---- 3. topology consistency --------------------------------------------------------------------


@pytest.mark.parametrize("p1,p2,r1,r2,expect", [
    ("0000:02:00.0", "0000:01:00.0", "02-02", "01-01", "parent cycle"),
    ("0000:01:00.0", "null", "02-02", "02-02", "its own parent"),
    ("0000:09:00.0", "null", "02-02", "03-03", "not in the source"),
    ("null", "0000:01:00.0", "05-06", "03-03", "outside its parent bridge"),
])
def test_inconsistent_topologies_are_refused(tmp_path, p1, p2, r1, r2, expect):
    f = tmp_path / "t.yaml"
    f.write_text(H.TOPOLOGY_TWO_BRIDGES.format(p1=p1, p2=p2, r1=r1, r2=r2))
    for cmd in (["tree"], ["groups"], ["resources"]):
        line = H.one_line_error(H.run_cli([*cmd, str(f)]))
        assert "t.yaml" in line and expect in line, line


def test_physfn_cycle_is_refused(tmp_path):
    f = tmp_path / "vf.yaml"
    f.write_text("pci-explorer: topology/1\ndevices:\n"
                 "  - {address: 0000:01:00.0, ids: 8086:1234, class: 020000, physfn: 0000:01:00.1}\n"
                 "  - {address: 0000:01:00.1, ids: 8086:1234, class: 020000, physfn: 0000:01:00.0}\n")
    line = H.one_line_error(H.run_cli(["tree", str(f)]))
    assert "0000:01:00.0" in line and "0000:01:00.1" in line


@PROPS
@given(parents=st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=1, max_size=6))
def test_any_parent_map_loads_acyclic_or_is_refused(parents):
    lines = ["pci-explorer: topology/1", "devices:"]
    for i, p in enumerate(parents):
        par = f"0000:0{p}:00.0" if p is not None else "null"
        lines.append(f"  - {{address: 0000:0{i}:00.0, parent: {par}, ids: 8086:1234, class: 060400, bridge: {{bus-range: 00-ff}}}}")
    try:
        t = load_yaml_text("\n".join(lines) + "\n")
        from explorer.sources.consistency import check_topology

        check_topology(t)
    except SourceError as e:
        assert "\n" not in str(e)
        return
    for a in t.functions:
        assert len(t.path_to_root(a)) <= len(t.functions)
        assert t.path_to_root(a)[-1] in t.roots()


# ---- 4. injection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [s for s in H.INJECTIONS if not all(c.isalnum() or c in "./_-" for c in s)])
def test_kernel_param_values_with_shell_meaning_are_refused(tmp_path, bad):
    with pytest.raises(ActionError):
        parse_kernel_param(f"foo={bad}")


@PROPS
@given(text=st.text(min_size=1, max_size=40))
def test_accepted_kernel_params_are_inert_in_a_shell(text):
    try:
        p = parse_kernel_param(text)
    except ActionError:
        return
    assert shlex.split(f"x {p.text} y") == ["x", p.text, "y"]
    assert not any(c in p.text for c in "$`\\\"';&|<>(){}[]*?!~\n")


@pytest.mark.parametrize("words", [
    ["assign", "0000:00:02.0", "--vm", "win11\n"],
    ["bind", "0000:00:02.0", "--driver", "vfio-pci\n"],
    ["mdev", "0000:00:02.0", "--type", "i915-GVTg_V5_4\n"],
    ["mdev", "0000:00:02.0", "--type", "t", "--uuid", "7f3c3c2e-3f6b-4f2a-9d7e-1a2b3c4d5e6f\n"],
    ["kernel-param", "foo\n=1"],
])
def test_names_are_matched_whole(words):
    with pytest.raises(ActionError):
        parse_action(words)


def test_plan_file_names_are_matched_whole(tmp_path):
    plan = tmp_path / "p.yaml"
    assert H.run_cli(["plan", "new", "builtin:example-small", "-o", str(plan)]).returncode == 0
    plan.write_text(plan.read_text().replace("actions: []", 'actions:\n  - {action: assign, device: "0000:00:02.0", vm: "win11\\n"}'))
    line = H.one_line_error(H.run_cli(["plan", "show", str(plan)]))
    assert "p.yaml" in line and "vm" in line


def test_control_characters_never_reach_the_terminal(tmp_path):
    f = tmp_path / "evil.lspci.txt"
    name = "Evil\x1b]0;owned\x07\x1b[2J\x9b31m\r Corp"
    f.write_text(f"00:00.0 Host bridge [0600]: {name} Device [1ee7:1237] (rev 02)\n"
                 "\tKernel driver in use: dr\x1b[31mv\n", encoding="utf-8")
    for cmd in (["tree", str(f)], ["show", str(f), "00:00.0"], ["groups", str(f)], ["resources", str(f), "-v"]):
        p = H.run_cli(cmd)
        assert p.returncode in (0, 1), p.stderr
        assert not H.has_control(p.stdout.replace(b"\n", b"")), (cmd, p.stdout[:500])
        assert not H.has_control(p.stderr.replace(b"\n", b""))
    p = H.run_cli(["tree", str(f)])
    assert b"Evil" in p.stdout
    t = load_source(str(f))
    assert all(fn.device_name is None or fn.device_name.isprintable() for fn in t)


@PROPS
@given(text=st.text(max_size=60))
def test_clean_leaves_no_control_character(text):
    assert not any(c in clean(text).replace("\n", "") for c in H.CONTROL)
    assert "\n" not in one_line(text) and not any(c in one_line(text) for c in H.CONTROL)


def _plan_with(tmp_path: Path, actions: str, spec: str = "builtin:example-small") -> Path:
    plan = tmp_path / "p.yaml"
    assert H.run_cli(["plan", "new", "builtin:example-small", "-o", str(plan), "--force"]).returncode == 0
    text = plan.read_text().replace("actions: []", "actions:\n" + actions)
    text = text.replace('spec: "builtin:example-small"', f"spec: {json.dumps(spec)}")
    plan.write_text(text)
    return plan


def _assignable(n: int) -> list[str]:
    """Endpoints of example-small that a plan can give to VMs without errors."""
    t = load_source("builtin:example-small")
    from explorer.plan import add_action, check, has_errors, new_plan

    out = []
    for fn in t:
        if fn.is_virtfn or (fn.class_code is not None and fn.class_code >> 16 == 0x06):
            continue
        plan = add_action(new_plan(t, "builtin:example-small"), ["assign", str(fn.address), "--vm", "v", "--group"])
        if not has_errors(check(plan, t)):
            out.append(str(fn.address))
    if len(out) < n:
        pytest.skip("example-small has too few devices a plan can assign")
    return out[:n]


def test_libvirt_names_never_collide(tmp_path):
    a, b = _assignable(2)
    plan = _plan_with(tmp_path, f'  - {{action: assign, device: "{a}", vm: "a+b", group: true}}\n'
                                f'  - {{action: assign, device: "{b}", vm: "a_b", group: true}}\n')
    out = tmp_path / "xml"
    p = H.run_cli(["export", str(plan), "--to", "libvirt", "-o", str(out)])
    if p.returncode == 1:
        pytest.skip("the two devices share a group on this topology")
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(out)) == ["a+b.xml", "a_b.xml"]


def test_xml_invalid_characters_are_refused(tmp_path):
    (a,) = _assignable(1)
    plan = _plan_with(tmp_path, f'  - {{action: assign, device: "{a}", vm: "vm1", group: true}}\n', spec="src\u0001path")
    plan.write_text(plan.read_text().replace('spec: "src\\u0001path"', 'spec: "src\\x01path"'))
    out = tmp_path / "vm1.xml"
    line = H.one_line_error(H.run_cli(["export", str(plan), "--to", "libvirt", "--source", "builtin:example-small", "-o", str(out)]))
    assert "XML" in line and not out.exists()


def test_cmdline_export_quotes_for_grub_and_kernelstub(tmp_path):
    plan = _plan_with(tmp_path, '  - {action: kernel-param, param: "pci=realloc,hpmmioprefsize=2G"}\n'
                                '  - {action: kernel-param, param: "video=efifb:off"}\n')
    p = H.run_cli(["export", str(plan), "--to", "cmdline"])
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    stub = next(line for line in text.splitlines() if "kernelstub" in line)
    assert shlex.split(stub.split("kernelstub (Pop!_OS): ", 1)[1])[1:] == ["-a", "pci=realloc,hpmmioprefsize=2G", "-a", "video=efifb:off"]
    plan.write_text(plan.read_text().replace("video=efifb:off", "foo=$(touch${IFS}/tmp/x)"))
    line = H.one_line_error(H.run_cli(["export", str(plan), "--to", "cmdline"]))
    assert "p.yaml" in line


# ---- 5. one-line errors everywhere -----------------------------------------------------------------


def test_former_tracebacks_are_one_line(tmp_path):
    plan = _plan_with(tmp_path, "  - {action: kernel-param, param: quiet}\n")
    H.one_line_error(H.run_cli(["export", str(plan), "--to", "mdevctl"]))
    for bar in ("pref64:16T", "pref64:8E", "mem64:16T"):
        p = H.run_cli(["fit", "builtin:hotplug-chassis-small-window", "--port", "0000:02:01.0", "--bar", bar])
        assert p.returncode in (0, 1) and b"Traceback" not in p.stderr, p.stderr
    H.one_line_error(H.run_cli(["fit", "builtin:hotplug-chassis-small-window", "--port", "0000:02:01.0", "--bar", f"mem32:{2**200}"]))
    cases = {
        "pyname.yaml": "pci-explorer-plan: 1\nsource: {spec: x}\nactions:\n  - {action: kernel-param, param: !!python/name:os.system quiet}\n",
        "deep.yaml": "pci-explorer-plan: 1\nsource: {spec: x}\nactions: " + "[" * 900 + "\n",
        "int.yaml": 'pci-explorer-plan: !!int "zz"\nsource: {spec: x}\n',
        "ts.yaml": 'pci-explorer-plan: 1\nsource: {spec: x}\ndevices:\n  - {bdf: "0000:00:00.0", numvfs: !!timestamp "2020-13-45"}\n',
        "ctl.yaml": 'pci-explorer-plan: 1\nsource: {spec: "a\x01b"}\n',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        line = H.one_line_error(H.run_cli(["plan", "show", str(tmp_path / name)]))
        assert name in line, line
    for name in ("int.yaml", "ts.yaml", "ctl.yaml"):
        assert f"{name}:" in H.one_line_error(H.run_cli(["plan", "show", str(tmp_path / name)])).split(": error: ")[1]


def test_huge_numbers_name_the_file_and_stay_short(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("pci-explorer: topology/1\ndevices:\n  - address: 0000:00:02.0\n    ids: 8086:1234\n    class: 020000\n"
                 f"    bars:\n      0: {{kind: mem64, start: {'1' * 100_000}, size: 4096}}\n")
    line = H.one_line_error(H.run_cli(["tree", str(f)]))
    assert line.startswith("pci-explorer: error: " + str(f) + ":7") and len(line) < 400
    f.write_text(f.read_text().replace("1" * 100_000, "0x1000").replace("kind: mem64", "kind: mem32").replace("size: 4096", f"size: {2**200}"))
    assert "big.yaml:7" in H.one_line_error(H.run_cli(["tree", str(f)]))


def test_proc_iomem_linked_to_dev_zero_is_not_followed(tmp_path):
    root = H.sysfs_tree(tmp_path)
    (root / "proc/iomem").unlink()
    (root / "proc/iomem").symlink_to("/dev/zero")
    p = H.run_cli(["tree", str(root)])
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr


def test_cr_only_lspci_reads_every_device_and_warns(tmp_path):
    text = (H.REPO / "tests/fixtures/qemu/base.lspci.txt").read_text()
    f = tmp_path / "cr.txt"
    f.write_bytes(text.replace("\n", "\r").encode())
    p = H.run_cli(["tree", str(f)])
    assert p.returncode == 0
    assert p.stdout.count(b"0000:00:") == H.run_cli(["tree", str(H.REPO / "tests/fixtures/qemu/base.lspci.txt")]).stdout.count(b"0000:00:")
    assert b"CR" in p.stderr


# ---- 6. atomic, all-or-nothing writes -----------------------------------------------------------


def test_killed_generate_leaves_no_tree_at_the_target(tmp_path):
    target = tmp_path / "tree"
    proc = subprocess.Popen([sys.executable, "-m", "explorer", "generate", "--functions", "3000", "--format", "sysfs", "-o", str(target)],
                            env={**os.environ, "PYTHONPATH": str(H.REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Wait for the build to start beside the target, then kill it outright.
    for _ in range(600):
        if any(p.name.startswith(".tree.") for p in tmp_path.iterdir()) or proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    proc.wait(timeout=30)
    if target.exists():  # it finished first: then it is whole
        assert len(load_source(str(target))) == 3000
    else:
        assert not target.exists()


def test_multi_file_export_is_all_or_nothing(tmp_path):
    a, b = _assignable(2)
    plan = _plan_with(tmp_path, f'  - {{action: assign, device: "{a}", vm: "one", group: true}}\n'
                                f'  - {{action: assign, device: "{b}", vm: "two", group: true}}\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "two.xml").write_text("mine\n")
    p = H.run_cli(["export", str(plan), "--to", "libvirt", "-o", str(out)])
    if p.returncode == 1:
        pytest.skip("the two devices share a group on this topology")
    H.one_line_error(p)
    assert sorted(os.listdir(out)) == ["two.xml"] and (out / "two.xml").read_text() == "mine\n"


def test_empty_libvirt_export_refuses_and_makes_no_folder(tmp_path):
    plan = _plan_with(tmp_path, "  - {action: kernel-param, param: quiet}\n")
    out = tmp_path / "vms"
    H.one_line_error(H.run_cli(["export", str(plan), "--to", "libvirt", "-o", str(out)]))
    assert not out.exists()


def test_plan_new_never_writes_a_plan_plan_show_rejects(tmp_path):
    root = H.sysfs_tree(tmp_path)
    drv = root / "sys/devices/pci0000:00/0000:00:1f.2/driver"
    drv.unlink()
    drv.symlink_to("../../../bus/pci/drivers/bad name\n")
    out = tmp_path / "p.yaml"
    p = H.run_cli(["plan", "new", str(root), "-o", str(out)])
    if p.returncode == 0:
        assert H.run_cli(["plan", "show", str(out)]).returncode == 0
    else:
        H.one_line_error(p)
        assert not out.exists()


def test_snapshot_load_cleans_up_on_sigterm(tmp_path):
    archive = H.snapshot(tmp_path / "big.tar.gz", [(f"./sys/devices/pci0000:00/0000:00:1f.2/x{i}/vendor", "file", b"0x8086\n")
                                                   for i in range(12_000)])
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "explorer", "tree", str(archive)],
                            env={**os.environ, "PYTHONPATH": str(H.REPO), "TMPDIR": str(tmpdir)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        if any(tmpdir.iterdir()) or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert b"Traceback" not in proc.stderr.read()
    proc.stderr.close()
    assert list(tmpdir.iterdir()) == []
    for p in tmpdir.parent.glob("pci-explorer-snapshot-*"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700


# ---- 7. a sysfs root is a jail ----------------------------------------------------------------------


def test_links_out_of_a_sysfs_root_are_not_followed(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root=/dev/sda1 secret-token\n")
    root = H.sysfs_tree(tmp_path)
    (root / "proc/cmdline").unlink()
    (root / "proc/cmdline").symlink_to(secret)  # absolute: the root's own tmp/.../secret.txt
    (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/osrelease").unlink(missing_ok=True)
    (root / "proc/sys/kernel/osrelease").symlink_to("../../../../secret.txt")  # relative, out of the root
    out = tmp_path / "plan.yaml"
    assert H.run_cli(["plan", "new", str(root), "-o", str(out)]).returncode == 0
    assert "secret-token" not in out.read_text()
    assert b"secret-token" not in H.run_cli(["tree", str(root), "--json"]).stdout
    # A whole sys/ that leads out of the root reads as no device list, not as this machine.
    other = tmp_path / "other"
    (other / "proc").mkdir(parents=True)
    (other / "sys").symlink_to(root / "sys")
    p = H.run_cli(["tree", str(other)])
    assert p.returncode in (0, 2)
    if p.returncode == 0:  # a link inside a jail to the absolute path of another tree reads as missing
        assert b"0000:00:1f.2" not in p.stdout


# ---- 8. property tests: each source kind and the plan file ------------------------------------------


_TOPO = (H.REPO / "topologies/example-small.yaml").read_text()
_LSPCI = (H.REPO / "tests/fixtures/qemu/base.lspci.txt").read_text()


def _mutate(text: str, rng_data: st.DataObject) -> str:
    n = rng_data.draw(st.integers(1, 6))
    for _ in range(n):
        pos = rng_data.draw(st.integers(0, max(0, len(text) - 1)))
        what = rng_data.draw(st.sampled_from(["insert", "delete", "swap"]))
        piece = rng_data.draw(st.sampled_from(H.INJECTIONS + ["&a ", "*a", "<<: *a", "[", "{", "\n  - ", ": ", "!!int ", "0x" + "f" * 30]))
        if what == "insert":
            text = text[:pos] + piece + text[pos:]
        elif what == "delete":
            text = text[:pos] + text[pos + len(piece):]
        else:
            text = text[:pos] + piece + text[pos + len(piece):]
    return text


@PROPS
@given(data=st.data())
def test_mutated_yaml_topologies_load_or_fail_in_one_line(data):
    text = _mutate(_TOPO, data)
    try:
        load_yaml_text(text, "t.yaml")
    except SourceError as e:
        assert "\n" not in str(e) and str(e).startswith("t.yaml")


@PROPS
@given(data=st.data())
def test_mutated_lspci_text_loads_or_fails_in_one_line(data):
    from explorer.sources.lspci import load_lspci_text

    try:
        t = load_lspci_text(_mutate(_LSPCI, data), "l.txt")
    except SourceError as e:
        assert "\n" not in str(e)
        return
    from explorer.sources.consistency import check_topology, scrub_text

    try:
        scrub_text(check_topology(t))
    except SourceError as e:
        assert "\n" not in str(e)


@PROPS
@given(data=st.data())
def test_mutated_plan_files_parse_or_fail_in_one_line(data):
    base = ('pci-explorer-plan: 1\nsource: {spec: "builtin:example-small"}\ndevices:\n  - {bdf: "0000:00:02.0", id: "8086:1234"}\n'
            'actions:\n  - {action: assign, device: "0000:00:02.0", vm: "win11"}\n  - {action: kernel-param, param: "quiet"}\n')
    try:
        parse_plan(_mutate(base, data), "p.yaml")
    except PlanFileError as e:
        assert "\n" not in str(e) and str(e).startswith("p.yaml")


_sysfs_files = st.sampled_from(["config", "resource", "vendor", "class", "driver_override", "sriov_totalvfs", "numa_node"])
_sysfs_content = st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"\xff" * 5000, b"0x" + b"f" * 50 + b"\n"]))


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(_sysfs_files, _sysfs_content), max_size=5),
       links=st.lists(st.tuples(st.sampled_from(["driver", "iommu_group", "physfn", "virtfn0", "config", "resource"]),
                                st.sampled_from(["/etc/passwd", "../../../../../..", "/dev/zero", "driver", "../0000:00:1f.2",
                                                 "/sys/bus/pci/devices/0000:00:00.0", "x" * 300])), max_size=3))
def test_mutated_sysfs_trees_load_or_fail_in_one_line(tmp_path_factory, changes, links):
    from explorer.sources.sysfs import load_sysfs

    root = H.sysfs_tree(tmp_path_factory.mktemp("sysfs"))
    dev = root / "sys/devices/pci0000:00/0000:00:1f.2"
    for name, content in changes:
        (dev / name).unlink(missing_ok=True)
        (dev / name).write_bytes(content)
    for name, target in links:
        p = dev / name
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to(target)
    try:
        t = load_sysfs(root)
    except SourceError as e:
        assert "\n" not in str(e)
        return
    # Links are read as names (their last component), never followed out of the root.
    assert len(t) >= 1


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(extra=st.lists(st.tuples(
    st.sampled_from(["./sys/bus/pci/devices/0000:00:05.0", "./sys/devices/pci0000:00/0000:00:1f.2/config", "./proc/iomem",
                     "./sys/devices/pci0000:00/0000:00:1f.2/driver", "./sys/x/../../etc", "/abs", "./sys/devices/pci0000:00/y"]),
    st.sampled_from(["file", "link", "dir", "zeros"]),
    st.sampled_from(["../../../devices/pci0000:00/0000:00:1f.2", "/etc", "..", "a/b/c", "", "x" * 200])), max_size=4))
def test_hostile_snapshots_load_or_fail_in_one_line(tmp_path_factory, extra):
    from explorer.sources.snapshot import load_snapshot

    d = tmp_path_factory.mktemp("snap")
    members = []
    for name, kind, val in extra:
        members.append((name, kind, val.encode() if kind == "file" else (70_000 if kind == "zeros" else val)))
    try:
        archive = H.snapshot(d / "s.tar.gz", members)
    except (ValueError, OSError):
        return
    try:
        load_snapshot(archive)
    except SourceError as e:
        assert "\n" not in str(e) and str(archive) in str(e)
