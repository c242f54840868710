"""Reboot what-if: from the capture booted without parameters, the next boot with a parameter set
must equal the kernel's own boot with that set (tests/fixtures/qemu-boot, Linux 6.1 and 6.12).

Every expectation is read from the other capture (its sysfs, its kernel log); nothing is written
down by hand.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.kernel.setup import fit_hotadd
from explorer.kernel.setup.boot import compare_layouts, predict_boot
from explorer.sources import load_source
from explorer.sources.dmesg import load_dmesg, parse_dmesg
from conftest import FIXTURES, QEMU

BOOT = FIXTURES / "qemu-boot"
KERNELS = ("6.1", "6.12")


def _pairs() -> list[tuple[str, str, str]]:
    out = []
    for k in KERNELS:
        for base in sorted(BOOT.glob(f"{k}/boot-*-none.tar.gz")):
            machine = base.name[len("boot-"):-len("-none.tar.gz")]
            for other in sorted(BOOT.glob(f"{k}/boot-{machine}-*.tar.gz")):
                out.append((k, machine, other.name[len(f"boot-{machine}-"):-len(".tar.gz")]))
    return out


PAIRS = _pairs()
_cache: dict[str, object] = {}


def _load(path: Path):
    key = str(path)
    if key not in _cache:
        _cache[key] = (load_source(key), load_dmesg(key))
    return _cache[key]


def _pci_words(cmdline: str | None) -> str:
    return " ".join(w for w in (cmdline or "").split() if w.startswith("pci="))


def _log_text(path: Path) -> str:
    with tarfile.open(path) as tf:
        return tf.extractfile("./dmesg.txt").read().decode()  # type: ignore[union-attr]


def test_the_data_has_pairs_for_both_kernels():
    assert {k for k, _, _ in PAIRS} == set(KERNELS)
    assert len({m for _, m, _ in PAIRS}) >= 2
    assert len(PAIRS) >= 20


@pytest.mark.parametrize("kernel,machine,pset", PAIRS, ids=[f"{k}-{m}-{s}" for k, m, s in PAIRS])
def test_boot_with_the_set_equals_the_kernels_own_boot(kernel, machine, pset):
    src, fw = _load(BOOT / kernel / f"boot-{machine}-none.tar.gz")
    actual, actual_log = _load(BOOT / kernel / f"boot-{machine}-{pset}.tar.gz")
    params = _pci_words(actual.source.kernel_cmdline)
    assert (pset == "none") == (params == "")
    res = predict_boot(src, fw, kernel_params=params, kernel=kernel)
    assert res.firmware_known and res.predicted is not None
    cmp = compare_layouts(res.predicted, actual)
    for what in ("windows", "bars", "buses"):
        equal, total, misses = cmp[what]
        assert total > 0
        assert equal == total, f"{what}: {equal}/{total}; " + "; ".join(misses)
    # the same functions, at the same addresses
    assert {f.address for f in res.predicted} == {f.address for f in actual if not f.is_virtfn}
    # and the kernel's own lines about what it changed, in its order
    keep = re.compile(r"add_size|: assigned|can't assign|failed to assign|try to assign|max bus depth|released|"
                      r"reassigned|failed to expand|failed to add|Some PCI device|Automatically enabled|relaxed alignment|cannot fit")
    want = [re.sub(r"^\[\s*\d+\.\d+\]\s*", "", ln) for ln in actual_log.changes if keep.search(ln)]
    got = [m for m in res.messages if keep.search(m)]
    assert got == want


@pytest.mark.parametrize("kernel,machine", sorted({(k, m) for k, m, _ in PAIRS}))
def test_no_parameters_reproduce_the_source(kernel, machine):
    src, fw = _load(BOOT / kernel / f"boot-{machine}-none.tar.gz")
    res = predict_boot(src, fw, kernel_params="", kernel=kernel)
    assert res.diff.empty, res.diff.lines()
    assert all(v[0] == v[1] for v in compare_layouts(res.predicted, src).values())


@pytest.mark.parametrize("tree", ["qemu", "qemu-6.12"])
def test_hot_add_pair_default_vs_hpsize(tree):
    """hotplug-native-default-1g and -hpsize-1g differ only by the kernel parameters: the boot
    predicted from the first's capture with the second's parameters, then the same hot-add,
    gives the second's outcome."""
    base = FIXTURES / tree / "hotplug-native-default-1g.pre.tar.gz"
    other = FIXTURES / tree / "hotplug-native-hpsize-1g.pre.tar.gz"
    outcome = json.loads((FIXTURES / tree / "hotplug-native-hpsize-1g.outcome.json").read_text())
    src, fw = _load(base)
    actual, _ = _load(other)
    params = _pci_words(outcome["kernel_cmdline"])
    assert params
    res = predict_boot(src, fw, kernel_params=params)
    assert all(v[0] == v[1] for v in compare_layouts(res.predicted, actual).values())
    bars = [f"{b['index']}:{b['type']}:{b['size']}" for b in outcome["device"]["bars"]]
    fit = fit_hotadd(res.predicted, outcome["port"], bars, hotplug=outcome["hotplug"])
    got = {o.index: (o.assigned, o.start, o.end) for o in fit.bars}
    for o in outcome["outcome"]:
        want = (o["assigned"], int(o["start"], 16) if o["assigned"] else None, int(o["end"], 16) if o["assigned"] else None)
        assert got[o["index"]] == want
    after = outcome["port_windows_after"]
    for k in ("io", "mem", "pref"):
        want_w = tuple(int(x, 16) for x in after[k]) if after.get(k) else None
        assert fit.port_windows_after[k] == want_w


# ---- the kernel log ------------------------------------------------------------------------------


def test_firmware_state_agrees_with_sysfs_where_the_kernel_changed_nothing():
    """The enumeration lines are the firmware's values: every BAR the kernel did not touch is
    where sysfs shows it after the boot."""
    checked = 0
    for path in sorted(BOOT.glob("*/boot-*-none.tar.gz")):
        t, fw = _load(path)
        touched = " ".join(fw.changes)
        for addr, dev in fw.devices.items():
            fn = t.get(addr)
            assert fn is not None, f"{path.name}: {addr} in the log but not in sysfs"
            for b in fn.bars or ():
                r = dev.bars.get(b.index)
                assert r is not None and r.size == b.size
                if f"{addr}: BAR {b.index}" not in touched and r.start:
                    assert r.start == b.start
                    checked += 1
    assert checked > 20


def test_old_reg_form_reads_the_same():
    text = _log_text(BOOT / "6.1" / "boot-tbdock-none.tar.gz")
    old = re.sub(r": BAR (\d) \[", lambda m: f": reg 0x{0x10 + 4 * int(m.group(1)):x}: [", text)
    old = old.replace(": ROM [", ": reg 0x30: [")
    assert old != text
    a, b = parse_dmesg(text), parse_dmesg(old)
    assert [(d.address, d.bars, d.rom, d.windows) for d in a.devices.values()] == \
        [(d.address, d.bars, d.rom, d.windows) for d in b.devices.values()]


def test_wrapped_log_says_so_and_nothing_is_predicted(tmp_path, capsys):
    path = BOOT / "6.12" / "boot-busnum-none.tar.gz"
    lines = _log_text(path).splitlines()
    first_dev = next(i for i, ln in enumerate(lines) if "PCI host bridge to bus" in ln)
    late = parse_dmesg("\n".join(lines[first_dev + 40:]), "wrapped")
    assert not late.complete and not late.firmware_known
    assert any("wrapped" in n for n in late.notes)
    early = parse_dmesg("\n".join(lines[5:]), "wrapped")
    assert not early.complete and early.firmware_known  # wrapped, but the enumeration survived
    t, _ = _load(path)
    res = predict_boot(t, late, kernel_params="pci=realloc")
    assert not res.firmware_known and res.predicted is None
    log = tmp_path / "dmesg.txt"
    log.write_text("\n".join(lines[first_dev + 40:]) + "\n")
    assert main(["boot", str(path), "--dmesg", str(log), "--kernel-param", "pci=realloc"]) == 1
    out = capsys.readouterr().out
    assert "FIRMWARE STATE UNKNOWN" in out and "wrapped" in out


# ---- the command ---------------------------------------------------------------------------------


def test_boot_command_json(capsys):
    base = BOOT / "6.1" / "boot-busnum-none.tar.gz"
    target, _ = _load(BOOT / "6.1" / "boot-busnum-hpbus.tar.gz")
    params = _pci_words(target.source.kernel_cmdline)
    assert main(["boot", str(base), "--kernel-param", params, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "pci-explorer/boot/1"
    assert doc["firmware_known"] is True
    assert {d["bdf"] for d in doc["topology"]["devices"]} == {str(f.address) for f in target}
    assert doc["diff"]["renamed"] and doc["diff"]["buses"]
    assert main(["tree", str(BOOT / "6.1" / "boot-busnum-hpbus.tar.gz"), "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert set(doc["topology"]) == set(tree)


def test_boot_command_without_parameters_reproduces_the_source(capsys):
    base = BOOT / "6.12" / "boot-tbdock-none.tar.gz"
    assert main(["boot", str(base), "-q"]) == 0
    out = capsys.readouterr().out
    assert "changes against the source: none" in out


def test_boot_command_without_a_kernel_log(capsys):
    assert main(["boot", "builtin:tb4-laptop-egpu", "--kernel-param", "pci=realloc"]) == 1
    assert "FIRMWARE STATE UNKNOWN" in capsys.readouterr().out


def test_boot_command_bad_kernel_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["boot", str(BOOT / "6.1" / "boot-busnum-none.tar.gz"), "--kernel", "5.4"])
    assert e.value.code == 2


# ---- fit after a reboot, and the remedies ---------------------------------------------------------

_PROBES = (["2:pref64:1G"], ["0:mem32:16M"], ["2:io:32"])


def _empty_hotplug_ports(t):
    for fn in t:
        if fn.is_bridge and fn.slot and getattr(fn.slot, "hotplug", False) and not t.children(fn.address):
            yield fn.address


@pytest.mark.parametrize("kernel,machine,pset", PAIRS, ids=[f"{k}-{m}-{s}" for k, m, s in PAIRS])
def test_hot_add_after_the_predicted_boot_equals_after_the_kernels_boot(kernel, machine, pset):
    src, fw = _load(BOOT / kernel / f"boot-{machine}-none.tar.gz")
    actual, _ = _load(BOOT / kernel / f"boot-{machine}-{pset}.tar.gz")
    res = predict_boot(src, fw, kernel_params=_pci_words(actual.source.kernel_cmdline), kernel=kernel)
    ports = list(_empty_hotplug_ports(actual))
    assert ports
    for port in ports:
        for mode in ("acpi", "native"):
            for bars in _PROBES:
                a = fit_hotadd(actual, port, bars, hotplug=mode, remedies=False)
                p = fit_hotadd(res.predicted, port, bars, hotplug=mode, remedies=False)
                assert (p.fits, [(o.assigned, o.start) for o in p.bars]) == \
                    (a.fits, [(o.assigned, o.start) for o in a.bars]), (port, mode, bars)


def _size(text: str) -> int:
    from explorer.model.units import parse_size
    return parse_size(text)


@pytest.mark.parametrize("kernel", KERNELS)
def test_reboot_remedy_is_the_smallest_that_works_on_the_kernels_own_boots(kernel, capsys):
    """A remedy ``fits after a reboot with pci=...hpmmioprefsize=V`` is checked against the kernel's
    real boots of the same machine: every capture booted with at least V gives a layout where the
    device fits, every capture booted with less one where it does not."""
    base = BOOT / kernel / "boot-busnum-none.tar.gz"
    src, fw = _load(base)
    port = next(iter(_empty_hotplug_ports(src)))
    bars = ["2:pref64:1G"]
    assert main(["fit", str(base), "--port", str(port), "--bar", bars[0], "--hotplug", "acpi", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    offered = [r for r in doc["remedies"] if r.startswith("fits after a reboot with pci=")]
    assert len(offered) == 1 and not any(r.startswith("boot with pci=") for r in doc["remedies"])
    m = re.search(r"hpmmioprefsize=(\w+)", offered[0])
    assert m, offered[0]
    v = _size(m.group(1))
    seen = set()
    for other in sorted(BOOT.glob(f"{kernel}/boot-busnum-*.tar.gz")):
        t, _ = _load(other)
        kp = re.search(r"hpmmioprefsize=(\w+)", t.source.kernel_cmdline or "")
        if not kp:
            continue
        got = fit_hotadd(t, port, bars, hotplug="acpi", remedies=False).fits
        assert got == (_size(kp.group(1)) >= v), other.name
        seen.add(got)
    assert seen == {True, False}


def test_fit_after_boot_renumbers_and_reports(capsys):
    base = BOOT / "6.12" / "boot-busnum-none.tar.gz"
    target, _ = _load(BOOT / "6.12" / "boot-busnum-assign-busses.tar.gz")
    params = _pci_words(target.source.kernel_cmdline)
    port = next(iter(_empty_hotplug_ports(target)))
    rc = main(["fit", str(base), "--port", str(port), "--bar", "0:mem32:4K", "--after-boot", params, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["after_boot"]["kernel_params"] == params
    assert any("becomes" in c for c in doc["after_boot"]["changes"])
    want = fit_hotadd(target, port, ["0:mem32:4K"], remedies=False)
    assert rc == (0 if want.fits else 1)
    assert [(b["assigned"], b["start"]) for b in doc["bars"]] == [(o.assigned, o.start) for o in want.bars]


def test_fit_without_a_kernel_log_does_not_offer_unsimulated_reboots(capsys):
    assert main(["fit", "builtin:hotplug-chassis-small-window", "--port", "0000:02:01.0", "--bar", "pref64:1G",
                 "--hotplug", "acpi", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert not any(r.startswith(("fits after a reboot", "boot with pci=")) for r in doc["remedies"])
    assert any("firmware's assignment is unknown" in r for r in doc["remedies"])


def _boot_captures() -> list[Path]:
    """Every capture taken right after a boot (not after a hot-add): meta/capture-kind.txt is
    empty (a plain boot) or "pre1" (before the first hot-add)."""
    out = []
    for f in sorted(FIXTURES.glob("qemu*/*.tar.gz")):
        if f.parent.name == "qemu-boot":
            continue
        with tarfile.open(f) as tf:
            try:
                kind = tf.extractfile("./meta/capture-kind.txt").read().decode().strip()  # type: ignore[union-attr]
            except KeyError:
                kind = ""
        if kind in ("", "pre1", "boot"):
            out.append(f)
    return out


BOOT_CAPTURES = _boot_captures()


@pytest.mark.parametrize("path", BOOT_CAPTURES, ids=[f"{p.parent.name}/{p.name}" for p in BOOT_CAPTURES])
def test_every_boot_capture_is_reproduced_from_its_own_kernel_log(path, unpacked):
    if path.parent == QEMU:  # unpacked once per session, shared with the other capture tests
        t = load_source(str(unpacked(path.name[: -len(".tar.gz")])))
        fw = load_dmesg(str(unpacked(path.name[: -len(".tar.gz")])))
    else:
        t, fw = _load(path)
    assert fw is not None and fw.firmware_known and fw.complete
    res = predict_boot(t, fw, kernel_params=_pci_words(t.source.kernel_cmdline))
    for what, (equal, total, misses) in compare_layouts(res.predicted, t).items():
        assert equal == total, f"{what}: " + "; ".join(misses)


def test_a_log_of_only_host_bridge_lines_is_an_extract_not_the_firmware_state():
    text = _log_text(BOOT / "6.1" / "boot-tbdock-none.tar.gz")
    extract = "\n".join(ln for ln in text.splitlines() if "root bus resource" in ln)
    b = parse_dmesg(extract)
    assert b.roots and not b.firmware_known
    assert any("only the host bridges' lines" in n for n in b.notes)


def test_plan_findings_carry_the_simulated_reboot_remedy():
    """The app's findings panel shows the plan check's findings: a hot-add that does not fit
    names the reboot that makes it fit, with its outcome."""
    from explorer.plan import add_action, check, new_plan

    base = BOOT / "6.1" / "boot-busnum-none.tar.gz"
    t = load_source(str(base))  # loaded as a SOURCE: its kernel log comes with it
    port = next(iter(_empty_hotplug_ports(t)))
    p = add_action(new_plan(t, "test"), ["hot-add", str(port), "--bar", "2:pref64:1G", "--hotplug", "acpi"])
    texts = [f.message for f in check(p, t) if f.code == "HOTADD-FIT"]
    assert texts and "fits after a reboot with pci=hpmmioprefsize=" in texts[0]


def test_journalctl_form_reads_the_same():
    text = _log_text(BOOT / "6.12" / "boot-busnum-none.tar.gz")
    journal = "\n".join("Dec 07 05:50:23 host kernel: " + re.sub(r"^\[\s*\d+\.\d+\]\s*", "", ln)
                        for ln in text.splitlines())
    a, b = parse_dmesg(text), parse_dmesg(journal)
    assert b.complete and b.firmware_known
    assert [(d.address, d.bars, d.rom, d.windows, d.fw_secondary, d.fw_bus_invalid) for d in a.devices.values()] == \
        [(d.address, d.bars, d.rom, d.windows, d.fw_secondary, d.fw_bus_invalid) for d in b.devices.values()]
    assert a.roots == b.roots


def test_firmware_window_beyond_the_host_window_is_clipped():
    """pci_claim_bridge_resource(): a window reaching past its parent's is clipped, then claimed.
    The real log with one firmware window stretched past the host bridge window's end."""
    path = BOOT / "6.12" / "boot-tbdock-none.tar.gz"
    t, fw = _load(path)
    text = _log_text(path)
    # the last host memory window below 4 GiB and a bridge window ending at its end
    host_end = max(r.end for r in fw.roots[0].windows if r.kind == "mem" and r.end < (1 << 32))
    victim = next(d for d in fw.devices.values() if "pref" in d.windows and d.windows["pref"].end == host_end)
    w = victim.windows["pref"]
    old = f"{victim.address}:   bridge window [mem {w.start:#010x}-{w.end:#010x} 64bit pref]"
    assert old in text
    stretched = text.replace(old, f"{victim.address}:   bridge window [mem {w.start:#010x}-{host_end + 0x200000:#010x} 64bit pref]", 1)
    res = predict_boot(t, parse_dmesg(stretched), kernel_params="")
    assert any("clipped to" in m and str(victim.address) in m for m in res.messages)
    assert res.diff.empty, res.diff.lines()
